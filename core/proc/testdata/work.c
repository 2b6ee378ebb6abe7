// work: the probed fixture. Each probed instruction is at a known place in
// a function written in assembly, so that the instruction kind is exact:
//
//   f_endbr  endbr64                      emulated (endbr64)
//   f_push   push %rbp                    emulated (push)
//   f_load   mov counter(%rip), %rax      slot, RIP-relative load
//   f_store  mov %rdi, last(%rip)         slot, RIP-relative store
//   f_call   call helper                  emulated (call)
//   f_jmp    jmp 1f                       emulated (jmp)
//   f_jcc+3  jz 1f (after test)           emulated (jcc)
//   f_imul   imul $7, %rdi, %rax          slot (not RIP-relative)
//
// usage: work N THREADS FUNCS [mode]
//   modes: usr1, trap (below), hold (after printing, wait for a second line
//   on stdin before exiting), fork (a forked child also runs the work),
//   forkexec (a forked child execs /bin/true), time (print "ns NANOS", the
//   duration of the work, before the sum).
//   FUNCS is a string of letters: e=endbr p=push l=load s=store c=call
//   j=jmp k=jcc i=imul (each called N times per thread, in that order per
//   iteration). It waits for a line on stdin, runs, prints "sum HEX" and
//   exits 0. mode "usr1": also handles SIGUSR1 and, after the work, waits
//   until it has handled at least one more SIGUSR1 than it had when the
//   work ended... (see below). mode "trap": executes its own int3 under a
//   SIGTRAP handler after the work and prints "own trap N".
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "fixture.h"

uint64_t counter = 5;
uint64_t last;

__asm__(
    ".text\n"
    ".p2align 4\n"
    ".globl helper\n.type helper,@function\n"
    "helper:\n"
    "  lea 3(%rdi,%rdi,2), %rax\n"
    "  ret\n"
    ".size helper, .-helper\n"

    ".p2align 4\n"
    ".globl f_endbr\n.type f_endbr,@function\n"
    "f_endbr:\n"
    "  endbr64\n"
    "  lea 1(%rdi), %rax\n"
    "  ret\n"
    ".size f_endbr, .-f_endbr\n"

    ".p2align 4\n"
    ".globl f_push\n.type f_push,@function\n"
    "f_push:\n"
    "  push %rbp\n"
    "  mov %rsp, %rbp\n"
    "  lea 2(%rdi), %rax\n"
    "  pop %rbp\n"
    "  ret\n"
    ".size f_push, .-f_push\n"

    ".p2align 4\n"
    ".globl f_load\n.type f_load,@function\n"
    "f_load:\n"
    "  mov counter(%rip), %rax\n"
    "  add %rdi, %rax\n"
    "  ret\n"
    ".size f_load, .-f_load\n"

    ".p2align 4\n"
    ".globl f_store\n.type f_store,@function\n"
    "f_store:\n"
    "  mov %rdi, last(%rip)\n"
    "  lea 4(%rdi), %rax\n"
    "  ret\n"
    ".size f_store, .-f_store\n"

    ".p2align 4\n"
    ".globl f_call\n.type f_call,@function\n"
    "f_call:\n"
    "  call helper\n"
    "  add $5, %rax\n"
    "  ret\n"
    ".size f_call, .-f_call\n"

    ".p2align 4\n"
    ".globl f_jmp\n.type f_jmp,@function\n"
    "f_jmp:\n"
    "  jmp 1f\n"
    "  ud2\n"
    "1:\n"
    "  lea 6(%rdi), %rax\n"
    "  ret\n"
    ".size f_jmp, .-f_jmp\n"

    ".p2align 4\n"
    ".globl f_jcc\n.type f_jcc,@function\n"
    "f_jcc:\n"
    "  test $1, %dil\n"
    "  jz 1f\n"
    "  lea 7(%rdi), %rax\n"
    "  ret\n"
    "1:\n"
    "  lea 8(%rdi), %rax\n"
    "  ret\n"
    ".size f_jcc, .-f_jcc\n"

    ".p2align 4\n"
    ".globl f_imul\n.type f_imul,@function\n"
    "f_imul:\n"
    "  imul $7, %rdi, %rax\n"
    "  ret\n"
    ".size f_imul, .-f_imul\n");

uint64_t helper(uint64_t);
uint64_t f_endbr(uint64_t), f_push(uint64_t), f_load(uint64_t), f_store(uint64_t);
uint64_t f_call(uint64_t), f_jmp(uint64_t), f_jcc(uint64_t), f_imul(uint64_t);

static long n;
static const char *funcs;

static uint64_t (*fn(char c))(uint64_t) {
	switch (c) {
	case 'e': return f_endbr;
	case 'p': return f_push;
	case 'l': return f_load;
	case 's': return f_store;
	case 'c': return f_call;
	case 'j': return f_jmp;
	case 'k': return f_jcc;
	case 'i': return f_imul;
	}
	fprintf(stderr, "bad func %c\n", c);
	exit(2);
}

static void *work(void *arg) {
	uint64_t (*fs[16])(uint64_t);
	int nf = strlen(funcs);
	for (int k = 0; k < nf; k++)
		fs[k] = fn(funcs[k]);
	uint64_t sum = (uintptr_t)arg;
	for (long i = 0; i < n; i++)
		for (int k = 0; k < nf; k++)
			sum = sum * 31 + fs[k](i);
	return (void *)(uintptr_t)sum;
}

static volatile sig_atomic_t usr1, traps;
static void on_usr1(int s) { (void)s; usr1++; }
static void on_trap(int s) { (void)s; traps++; }

int main(int argc, char **argv) {
	if (argc < 4) {
		fprintf(stderr, "usage: work N THREADS FUNCS [usr1|trap]\n");
		return 2;
	}
	n = atol(argv[1]);
	int nt = atoi(argv[2]);
	funcs = argv[3];
	const char *mode = argc > 4 ? argv[4] : "";
	if (!strcmp(mode, "usr1")) {
		signal(SIGUSR1, on_usr1);
		printf("ready\n"); // the test sends SIGUSR1 only after this
		fflush(stdout);
	}
	if (!strcmp(mode, "trap"))
		signal(SIGTRAP, on_trap);
	await_go();
	uint64_t total = 0;
	pid_t child = -1;
	if (!strcmp(mode, "fork") || !strcmp(mode, "forkexec")) {
		child = fork();
		if (child == 0) {
			if (!strcmp(mode, "forkexec")) {
				execl("/bin/true", "true", (char *)0);
				_exit(127);
			}
			work((void *)7);
			_exit(0);
		}
	}
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	if (nt <= 1) {
		total = (uintptr_t)work((void *)1);
	} else {
		pthread_t th[64];
		for (int t = 0; t < nt; t++)
			pthread_create(&th[t], 0, work, (void *)(uintptr_t)(t + 1));
		for (int t = 0; t < nt; t++) {
			void *r;
			pthread_join(th[t], &r);
			total += (uintptr_t)r;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &t1);
	if (!strcmp(mode, "time"))
		printf("ns %lld\n", (long long)(t1.tv_sec - t0.tv_sec) * 1000000000LL + (t1.tv_nsec - t0.tv_nsec));
	if (child > 0) {
		printf("child %d\n", wait_exit(child));
	}
	if (!strcmp(mode, "usr1")) {
		// The test keeps sending SIGUSR1 until we exit: wait for one
		// that arrives after the work, so the handler surely ran.
		sig_atomic_t seen = usr1;
		while (usr1 == seen)
			usleep(1000);
		printf("usr1 ok\n");
	}
	if (!strcmp(mode, "trap")) {
		for (int i = 0; i < 3; i++)
			__asm__ volatile("int3");
		printf("own trap %d\n", (int)traps);
	}
	printf("sum %016llx\n", (unsigned long long)total);
	fflush(stdout);
	if (!strcmp(mode, "hold")) {
		// Stay alive until told to exit (the test inspects us).
		char buf[64];
		if (!fgets(buf, sizeof buf, stdin))
			return 4;
	}
	return 0;
}
