// workload.c: the benchmark workloads of `make bench` (see bench/main.go).
//
//   workload hit FUNC N T   print "ready", wait for a line on stdin, run T
//                           threads that each call FUNC N times, print
//                           "ns=ELAPSED calls=T*N sum=CHECKSUM", exit
//   workload idle ITERS     print "ready"; then for every line read, run a
//                           syscall- and page-fault-heavy loop ITERS times
//                           and print "ns=ELAPSED cpu=CPUTIME"; exit at EOF
//   workload fleet K        fork K-1 children (K processes in all) that
//                           sleep; print "ready"; on EOF of stdin kill them
//   workload execer TARGET  execv TARGET "stamp" NOW (CLOCK_MONOTONIC ns)
//   workload stamp T0       print "ns=" (now - T0): exec to main
//
// The probed functions are written in assembly so that the probed
// instruction is exactly the one the figure names:
//   emul_push  push %rbp            (the kernel and uprobefs emulate it)
//   emul_nop   5-byte nopl          (the kernel and uprobefs emulate it)
//   slot_load  mov bias(%rip),%rax  (the kernel single-steps it out of
//                                    line; uprobefs runs it in a slot)
//   never_called                    (probed for the idle figure, never hit)
//   many_0 .. many_999              (1,000 probe sites for the RSS figure)
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include "../../internal/testfix/testdata/manyfn.h"

__asm__(
    ".data\n"
    ".p2align 3\n"
    "bias: .quad 1\n"
    ".text\n"
    ".p2align 4\n"
    ".globl emul_push\n.type emul_push,@function\n"
    "emul_push:\n"
    "  push %rbp\n"
    "  mov %rsp,%rbp\n"
    "  addq $1,(%rdi)\n"
    "  pop %rbp\n"
    "  ret\n"
    ".size emul_push,.-emul_push\n"
    ".p2align 4\n"
    ".globl emul_nop\n.type emul_nop,@function\n"
    "emul_nop:\n"
    "  nopl 0x0(%rax,%rax,1)\n"
    "  addq $1,(%rdi)\n"
    "  ret\n"
    ".size emul_nop,.-emul_nop\n"
    ".p2align 4\n"
    ".globl slot_load\n.type slot_load,@function\n"
    "slot_load:\n"
    "  mov bias(%rip),%rax\n"
    "  add %rax,(%rdi)\n"
    "  ret\n"
    ".size slot_load,.-slot_load\n"
    ".p2align 4\n"
    ".globl never_called\n.type never_called,@function\n"
    "never_called:\n"
    "  push %rbp\n"
    "  pop %rbp\n"
    "  ret\n"
    ".size never_called,.-never_called\n"
    MANY_FNS);

void emul_push(uint64_t *);
void emul_nop(uint64_t *);
void slot_load(uint64_t *);
void never_called(void);

static int64_t now(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int64_t cpunow(void) {
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void waitgo(void) {
	char line[64];
	printf("ready\n");
	fflush(stdout);
	if (!fgets(line, sizeof line, stdin))
		exit(3);
}

// One cache line each: threads counting into one line would measure the
// line's bouncing between CPUs, not the probe's cost.
struct job {
	void (*fn)(uint64_t *);
	long n;
	uint64_t count;
	pthread_barrier_t *bar;
} __attribute__((aligned(64)));

// pace_ns, when not 0, paces each thread's calls: bursts of 1000, call i
// not before start + i*pace_ns (sleeping in between, so that the pacing
// leaves the CPUs to the reader), for a steady hit rate.
static long pace_ns;

static void *run(void *arg) {
	struct job *j = arg;
	void (*volatile fn)(uint64_t *) = j->fn;
	pthread_barrier_wait(j->bar);
	if (pace_ns > 0) {
		int64_t start = now();
		for (long i = 0; i < j->n; i++) {
			if (i % 1000 == 0) {
				int64_t due = start + i * pace_ns;
				struct timespec ts = {due / 1000000000, due % 1000000000};
				while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR) {
				}
			}
			fn(&j->count);
		}
		return NULL;
	}
	for (long i = 0; i < j->n; i++)
		fn(&j->count);
	return NULL;
}

static int hit(const char *name, long n, int t) {
	void (*fn)(uint64_t *);
	if (!strcmp(name, "emul_push"))
		fn = emul_push;
	else if (!strcmp(name, "emul_nop"))
		fn = emul_nop;
	else if (!strcmp(name, "slot_load"))
		fn = slot_load;
	else {
		fprintf(stderr, "unknown function %s\n", name);
		return 2;
	}
	if (t < 1 || t > 64)
		return 2;
	struct job jobs[64];
	pthread_t th[64];
	pthread_barrier_t bar;
	pthread_barrier_init(&bar, NULL, t + 1);
	waitgo();
	for (int i = 0; i < t; i++) {
		jobs[i] = (struct job){fn, n, 0, &bar};
		if (pthread_create(&th[i], NULL, run, &jobs[i]))
			return 4;
	}
	int64_t t0 = now();
	pthread_barrier_wait(&bar);
	uint64_t sum = 0;
	for (int i = 0; i < t; i++) {
		pthread_join(th[i], NULL);
		sum += jobs[i].count;
	}
	int64_t el = now() - t0;
	printf("ns=%lld calls=%lld sum=%llu\n", (long long)el, (long long)n * t, (unsigned long long)sum);
	return sum == (uint64_t)n * t ? 0 : 1;
}

static int idle(long iters) {
	char line[64];
	printf("ready\n");
	fflush(stdout);
	while (fgets(line, sizeof line, stdin)) {
		int64_t t0 = now(), c0 = cpunow();
		uint64_t sum = 0;
		for (long i = 0; i < iters; i++) {
			sum += (uint64_t)getppid();
			size_t len = 16 * 4096;
			volatile char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (p == MAP_FAILED)
				return 4;
			for (size_t o = 0; o < len; o += 4096)
				p[o] = (char)i;
			sum += (uint64_t)p[4096];
			munmap((void *)p, len);
		}
		int64_t t1 = now(), c1 = cpunow();
		printf("ns=%lld cpu=%lld sum=%llu\n", (long long)(t1 - t0), (long long)(c1 - c0), (unsigned long long)sum);
	}
	return 0;
}

static int fleet(int k) {
	pid_t parent = getpid();
	static pid_t kids[4096];
	if (k < 1 || k > 4096)
		return 2;
	for (int i = 0; i < k - 1; i++) {
		pid_t c = fork();
		if (c < 0)
			return 4;
		if (c == 0) {
			prctl(PR_SET_PDEATHSIG, SIGKILL);
			if (getppid() != parent)
				_exit(0);
			for (;;)
				pause();
		}
		kids[i] = c;
	}
	printf("ready\n");
	fflush(stdout);
	char buf[64];
	while (fgets(buf, sizeof buf, stdin))
		;
	for (int i = 0; i < k - 1; i++)
		kill(kids[i], SIGKILL);
	for (int i = 0; i < k - 1; i++)
		waitpid(kids[i], NULL, 0);
	return 0;
}

int main(int argc, char **argv) {
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 3 && !strcmp(argv[1], "stamp")) {
		int64_t t = now();
		printf("ns=%lld\n", (long long)(t - atoll(argv[2])));
		return 0;
	}
	if ((argc == 5 || argc == 6) && !strcmp(argv[1], "hit")) {
		if (argc == 6)
			pace_ns = atol(argv[5]);
		return hit(argv[2], atol(argv[3]), atoi(argv[4]));
	}
	if (argc == 3 && !strcmp(argv[1], "idle"))
		return idle(atol(argv[2]));
	if (argc == 3 && !strcmp(argv[1], "fleet"))
		return fleet(atoi(argv[2]));
	if (argc == 3 && !strcmp(argv[1], "execer")) {
		char t0[32];
		snprintf(t0, sizeof t0, "%lld", (long long)now());
		char *args[] = {argv[2], "stamp", t0, NULL};
		execv(argv[2], args);
		perror("execv");
		return 127;
	}
	if (argc == 2 && !strcmp(argv[1], "never"))
		never_called();
	fprintf(stderr, "usage: workload hit FUNC N T [PACE_NS] | idle ITERS | fleet K | execer TARGET | stamp T0\n");
	return 2;
}
