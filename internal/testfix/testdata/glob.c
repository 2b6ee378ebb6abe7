/* glob: the wildcard and batch fixture, a program with known function
 * symbols.
 *
 *   glob          for each line read on stdin: call alpha_one() once,
 *                 alpha_two() twice, alpha_three() 3 times, beta_one() 4
 *                 times, many_7() 5 times (do_calls()), then write "ok\n";
 *                 exit at EOF. A line "fork" first forks a child that
 *                 makes the same calls and exits, and waits for it.
 *   glob wait     write "ready\n", then pause() (batch benchmarks)
 *
 * Function symbols (STT_FUNC): main, do_calls, alpha_one, alpha_two, alpha_three,
 * beta_one, beta_two (never called), odd_ok ("push %rbp; pop %rbp; ret")
 * and odd_trap (starts with int3, which cannot be probed; both never
 * called) and many_0 .. many_999 (1,000 probe sites: "push %rbp; pop
 * %rbp; ret", 16-byte aligned). alpha_data is data (STT_OBJECT), not a
 * function: no pattern may register it. */
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "manyfn.h"

volatile unsigned long counter;
int alpha_data = 42;

__attribute__((noinline)) void alpha_one(void) { counter++; }
__attribute__((noinline)) void alpha_two(void) { counter += 2; }
__attribute__((noinline)) void alpha_three(void) { counter += 3; }
__attribute__((noinline)) void beta_one(void) { counter += 4; }
__attribute__((noinline)) void beta_two(void) { counter += 5; }

__asm__(
    ".text\n"
    ".p2align 4\n"
    ".globl odd_ok\n.type odd_ok,@function\n"
    "odd_ok:\n"
    "  push %rbp\n"
    "  pop %rbp\n"
    "  ret\n"
    ".size odd_ok,.-odd_ok\n"
    ".p2align 4\n"
    ".globl odd_trap\n.type odd_trap,@function\n"
    "odd_trap:\n"
    "  int3\n"
    "  ret\n"
    ".size odd_trap,.-odd_trap\n"
    MANY_FNS);

void many_7(void);

__attribute__((noinline)) void do_calls(void)
{
	alpha_one();
	for (int i = 0; i < 2; i++)
		alpha_two();
	for (int i = 0; i < 3; i++)
		alpha_three();
	for (int i = 0; i < 4; i++)
		beta_one();
	for (int i = 0; i < 5; i++)
		many_7();
}

int main(int argc, char **argv)
{
	char line[256];
	if (argc > 1 && strcmp(argv[1], "wait") == 0) {
		if (write(1, "ready\n", 6) != 6)
			return 1;
		for (;;)
			pause();
	}
	while (fgets(line, sizeof line, stdin)) {
		if (strcmp(line, "fork\n") == 0) {
			pid_t c = fork();
			if (c < 0)
				return 1;
			if (c == 0) {
				do_calls();
				_exit(0);
			}
			if (waitpid(c, NULL, 0) != c)
				return 1;
		}
		do_calls();
		if (write(1, "ok\n", 3) != 3)
			return 1;
	}
	if (argc > 5)
		beta_two();
	return 0;
}
