/* target: the ELF file the fs unit tests probe through a fake world
 * (they never run it traced). Built with -O0 -fcf-protection=none so that
 * tick starts "push %rbp; mov %rsp,%rbp": tick+1 is an instruction
 * boundary, tick+2 is not. */
#include <unistd.h>

volatile unsigned long counter;
int data_word = 42;

__attribute__((noinline)) void tick(void) { counter++; }

__attribute__((noinline)) void tock(void) { counter += 2; }

int main(int argc, char **argv)
{
	(void)argv;
	if (argc > 1)
		pause(); /* "wait": just map the file, for the permission tests */
	for (;;) {
		tick();
		tock();
		usleep(1000);
	}
}
