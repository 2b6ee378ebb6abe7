/* prog: the fixture program. Built by the tests at -O0 and -O2, PIE and
 * -no-pie, and stripped; never run by the tests. */
#include <stdio.h>
#include <stdlib.h>
#include "classes.h"

int counter;

__attribute__((noinline)) int add(int a, int b) { return a + b; }

static __attribute__((noinline)) long fib(long n) { return n < 2 ? n : fib(n - 1) + fib(n - 2); }

__attribute__((noinline)) const char *name_of(int k)
{
	switch (k) {
	case 0: return "zero";
	case 1: return "one";
	case 2: return "two";
	case 3: return "three";
	case 4: return "four";
	case 5: return "five";
	default: return "many";
	}
}

__attribute__((noinline)) void bump(void) { counter++; }

int main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 10;
	for (int i = 0; i < 3; i++)
		bump();
	printf("%d %ld %s %d\n", add(argc, 2), fib(n), name_of(argc), counter);
	return 0;
}
