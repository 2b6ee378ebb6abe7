// lib: the shared library of the dlopen tests. Built as liba (default,
// lib_f(x) = 3x+1) and with -DLIBB (lib_f(x) = 5x+2, same size).
#ifdef LIBB
#define MUL 5
#define ADD 2
#else
#define MUL 3
#define ADD 1
#endif

__attribute__((noinline)) long lib_f(long x) {
	__asm__ volatile("" ::: "memory");
	return x * MUL + ADD;
}
