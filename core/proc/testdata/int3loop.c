// int3loop: waits for a line on stdin, then executes int3 N times (argv[1])
// and prints "done". Under a tracer that swallows the SIGTRAPs it measures
// the raw trap round trip.
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
	long n = argc > 1 ? atol(argv[1]) : 1000;
	char buf[16];
	if (!fgets(buf, sizeof buf, stdin))
		return 3;
	for (long i = 0; i < n; i++)
		__asm__ volatile("int3");
	printf("done %ld\n", n);
	return 0;
}
