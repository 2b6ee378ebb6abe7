// throw: a C++ fixture with exception landing pads (objfile's
// TestJumpAtExceptions): main catches what thrower throws.
#include <cstdio>
#include <cstdlib>
#include <stdexcept>
__attribute__((noinline)) int thrower(int i)
{
	if (i % 2)
		throw std::runtime_error("odd");
	return i;
}
int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 4, caught = 0, sum = 0;
	for (int i = 0; i < n; i++) {
		try {
			sum += thrower(i);
		} catch (const std::exception &) {
			caught++;
		}
	}
	printf("caught %d sum %d\n", caught, sum);
	return 0;
}
