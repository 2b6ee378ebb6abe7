/* target: the program the manager, fs and integration tests probe (the
 * manager and fs tests only resolve and analyse it; the integration tests
 * run it traced).
 *
 *   target        loop for ever: tick() every round, tock() every other
 *                 round, one heartbeat byte "." on stdout every 10 rounds,
 *                 2 ms apart (so a test sees it keeps running)
 *   target wait   map the file and pause() (permission tests)
 *
 * Built with -O0 -fcf-protection=none (testfix.Target): tick starts
 * "push %rbp; mov %rsp,%rbp", so tick+1 is an instruction boundary and
 * tick+2 is not. never_called() is never called: its event stream stays
 * empty. data_word is data, not code. */
#include <string.h>
#include <time.h>
#include <unistd.h>

volatile unsigned long counter;
int data_word = 42;

__attribute__((noinline)) void tick(void) { counter++; }

__attribute__((noinline)) void tock(void) { counter += 2; }

__attribute__((noinline)) void never_called(void) { counter = 0; }

int main(int argc, char **argv)
{
	struct timespec pause_2ms = {0, 2 * 1000 * 1000};
	if (argc > 1 && strcmp(argv[1], "wait") == 0)
		pause();
	if (argc > 5)
		never_called();
	for (unsigned long i = 0;; i++) {
		tick();
		if (i % 2 == 0)
			tock();
		if (i % 10 == 0 && write(1, ".", 1) != 1)
			return 1;
		nanosleep(&pause_2ms, NULL);
	}
}
