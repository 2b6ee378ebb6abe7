/* fixture: a program the integration tests probe. It loops forever calling
 * tick() (and tock() every other round), and writes one heartbeat byte to
 * stdout every 10 rounds, so a test can see it keeps running.
 *
 * Built with -O0 -fcf-protection=none: tick starts "push %rbp; mov
 * %rsp,%rbp", so tick+1 is an instruction boundary and tick+2 is not.
 * never_called() is never called: its event stream stays empty. */
#include <time.h>
#include <unistd.h>

volatile unsigned long counter;
int data_word = 42;

__attribute__((noinline)) void tick(void) { counter++; }

__attribute__((noinline)) void tock(void) { counter += 2; }

__attribute__((noinline)) void never_called(void) { counter = 0; }

int main(int argc, char **argv)
{
	struct timespec pause = {0, 2 * 1000 * 1000}; /* 2 ms */
	(void)argv;
	if (argc > 5)
		never_called();
	for (unsigned long i = 0;; i++) {
		tick();
		if (i % 2 == 0)
			tock();
		if (i % 10 == 0 && write(1, ".", 1) != 1)
			return 1;
		nanosleep(&pause, NULL);
	}
}
