// loop: calls f N times (argv[1]) and prints the sum.
#include <stdio.h>
#include <stdlib.h>

__attribute__((noinline)) long f(long x) {
	__asm__ volatile("");
	return x * 3 + 1;
}

int main(int argc, char **argv) {
	long n = argc > 1 ? atol(argv[1]) : 1000, s = 0;
	for (long i = 0; i < n; i++)
		s += f(i);
	printf("%ld\n", s);
	return 0;
}
