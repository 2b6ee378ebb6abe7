/* guard: the fixture of the daemon-death test (issue 14 item 7).
 *
 *   guard busy   call hot() as fast as it can for ever; a heartbeat byte
 *                "." every 256 calls
 *   guard idle   print "." once, wait for a line on stdin, then call hot()
 *                1000 times and print "idle 1000 sum S"
 */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

volatile unsigned long counter;

__attribute__((noinline)) unsigned long hot(unsigned long x) {
	counter += x;
	return counter;
}

int main(int argc, char **argv) {
	if (argc > 1 && !strcmp(argv[1], "busy")) {
		for (unsigned long i = 0;; i++) {
			hot(i);
			if (i % 256 == 0 && write(1, ".", 1) != 1)
				return 1;
		}
	}
	if (write(1, ".", 1) != 1)
		return 1;
	char line[16];
	if (!fgets(line, sizeof line, stdin))
		return 2;
	unsigned long s = 0;
	for (unsigned long i = 0; i < 1000; i++)
		s = hot(i);
	printf("idle 1000 sum %lu\n", s);
	return 0;
}
