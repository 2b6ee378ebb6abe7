// ret: the fixture of the return-probe tests. Each probed function is
// noinline and probed at its entry; a mode prints what it computed.
//
// usage: ret MODE N     (waits for a line on stdin, then runs)
//
//   calls N     N calls of leaf(i): "calls N sum S"
//   recurse N   N times rec(10): 11 nested calls each: "recurse N sum S"
//   longjmp N   N times jumper(), which calls thrower(), which longjmps
//               back into jumper's caller (thrower and jumper never
//               return), then leaf(i) (which returns): "longjmp N sum S"
//   tail N      N calls of tailer(i), which tail-calls leaf (a jmp): "tail N sum S"
//   block 1     blocker() reads a line from stdin inside the probed
//               function, then returns: "block 1 got LINE"
//   sleep N     N times napper(1100) and N times napper(20000) (sleeps of
//               1.1 ms and 20 ms in the probed function): "sleep N"
//   fork N      N times forker(): it forks inside the probed function;
//               both return through it; the child exits 0 after printing
//               nothing: "fork N bad B"
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "fixture.h"

static jmp_buf env;
static volatile long sink;

__attribute__((noinline)) long leaf(long x) {
	sink += x;
	return x * 2;
}

__attribute__((noinline, noipa)) long rec(long d) {
	if (d == 0)
		return 1;
	long r = rec(d - 1);
	__asm__ volatile("" : "+r"(r)); // a real recursion, not a loop
	return r + 1;
}

__attribute__((noinline)) void thrower(long x) {
	sink += x;
	longjmp(env, 1);
}

__attribute__((noinline)) void jumper(long x) {
	thrower(x);
	sink -= x;
}

// tailer(x): jmp leaf (a tail call, written in assembly so that it is one).
__asm__(".text\n.globl tailer\n.type tailer,@function\ntailer:\n\tjmp leaf\n.size tailer, .-tailer\n");
long tailer(long x);

__attribute__((noinline)) long blocker(char *buf, int n) {
	if (!fgets(buf, n, stdin))
		return -1;
	return (long)strlen(buf);
}

__attribute__((noinline)) void napper(long us) {
	struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
	nanosleep(&ts, NULL);
}

__attribute__((noinline)) int forker(void) {
	pid_t p = fork();
	if (p == 0)
		return 0;
	int st;
	waitpid(p, &st, 0);
	return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 1 : 2;
}

int main(int argc, char **argv) {
	if (argc < 3)
		return 2;
	const char *mode = argv[1];
	long n = atol(argv[2]);
	await_go();
	long sum = 0;
	if (!strcmp(mode, "calls")) {
		for (long i = 0; i < n; i++)
			sum += leaf(i);
	} else if (!strcmp(mode, "recurse")) {
		for (long i = 0; i < n; i++)
			sum += rec(10);
	} else if (!strcmp(mode, "longjmp")) {
		for (long i = 0; i < n; i++) {
			if (setjmp(env) == 0)
				jumper(i);
			sum += leaf(i);
		}
	} else if (!strcmp(mode, "tail")) {
		for (long i = 0; i < n; i++)
			sum += tailer(i);
	} else if (!strcmp(mode, "block")) {
		char buf[64];
		long l = blocker(buf, sizeof buf);
		printf("block 1 got %ld %s", l, buf);
		return 0;
	} else if (!strcmp(mode, "sleep")) {
		for (long i = 0; i < n; i++) {
			napper(1100);
			napper(20000);
		}
		printf("sleep %ld\n", n);
		return 0;
	} else if (!strcmp(mode, "fork")) {
		int bad = 0;
		for (long i = 0; i < n; i++) {
			int r = forker();
			if (r == 0)
				_exit(0); // the child, back from forker
			if (r != 1)
				bad++;
		}
		printf("fork %ld bad %d\n", n, bad);
		return 0;
	} else {
		return 2;
	}
	printf("%s %ld sum %ld\n", mode, n, sum);
	return 0;
}
