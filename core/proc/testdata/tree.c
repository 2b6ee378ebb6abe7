// tree: the probed program of the new-process tests (issue 5). probed() is
// the probed function; each mode calls it a known number of times.
//
//   tree leaf N              call probed() N times at the start of main, then
//                            mixed() N times (exit 1 if one computes wrong),
//                            exit 0
//   tree tree N K OTHER      call probed() N times, then make K children, the
//                            i-th by kind i%5, and wait for them all:
//                              0 fork; the child calls probed() N times
//                              1 fork; the child calls probed() N times, then
//                                execs this program: "leaf N"
//                              2 fork; the child calls probed() N times, then
//                                execs OTHER "leaf N"
//                              3 vfork + exec this program "leaf N"
//                              4 posix_spawn this program "leaf N"
//                            prints "tree K bad B" (B children not exiting 0)
//   tree spawn COUNT PAR PROG N
//                            posix_spawn PROG "leaf N" COUNT times, at most
//                            PAR at a time; prints "spawn COUNT bad B"
//   tree dl LIBA LIBB N      probed() once; dlopen LIBA, call its lib_f N
//                            times, dlclose; dlopen LIBB, call its lib_f once;
//                            prints "dl SAME sum HEX" (SAME: 1 if LIBB's
//                            lib_f has LIBA's address), then waits for a
//                            line on stdin before exiting
//   tree churn ITER LIB N    the stress workload (see churn below)
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "fixture.h"

extern char **environ;

static volatile long sink;

__attribute__((noinline)) long probed(long x) {
	__asm__ volatile("" ::: "memory");
	sink += x;
	return sink;
}

// mixed: a function of many step-over classes (push, mov, imul, lea, test,
// jcc, add, rip-relative loads and stores, call, pop, ret), for the batch
// of probes in one function (issue 11 item 14): mixed(x) = 8x + 17, +3
// for odd x.
__asm__(".text\n"
	".globl mixed\n.type mixed,@function\nmixed:\n.cfi_startproc\n"
	"	push %rbx\n"
	"	mov %rdi,%rbx\n"
	"	imul $7,%rbx,%rax\n"
	"	lea 0x10(%rax),%rax\n"
	"	test $1,%dil\n"
	"	jz 1f\n"
	"	add $3,%rax\n"
	"1:	mov sinkm(%rip),%rcx\n"
	"	add %rax,%rcx\n"
	"	mov %rcx,sinkm(%rip)\n"
	"	call mixed_leaf\n"
	"	add %rbx,%rax\n"
	"	pop %rbx\n"
	"	ret\n"
	".cfi_endproc\n.size mixed, .-mixed\n"
	".type mixed_leaf,@function\nmixed_leaf:\n.cfi_startproc\n"
	"	lea 1(%rax),%rax\n"
	"	ret\n"
	".cfi_endproc\n.size mixed_leaf, .-mixed_leaf\n"
	".data\n.p2align 3\nsinkm: .quad 0\n.text\n");
long mixed(long x);

static char self[4096];

static void calls(long n) {
	for (long i = 0; i < n; i++)
		probed(i);
}

static int status_ok(int st) { return WIFEXITED(st) && WEXITSTATUS(st) == 0; }

static const char *nstr;

__attribute__((noreturn)) static void exec_leaf(const char *prog) {
	execl(prog, prog, "leaf", nstr, (char *)0);
	_exit(127);
}

static pid_t spawn_leaf(const char *prog) {
	pid_t pid;
	char *argv[] = {(char *)prog, "leaf", (char *)nstr, 0};
	int err = posix_spawn(&pid, prog, 0, 0, argv, environ);
	if (err) {
		fprintf(stderr, "posix_spawn: %s\n", strerror(err));
		return -1;
	}
	return pid;
}

// kinds remembers the kind of job of recent children (for messages).
static struct {
	pid_t pid;
	int kind;
} kinds[64];

static void setkind(pid_t pid, int kind) {
	kinds[pid % 64].pid = pid;
	kinds[pid % 64].kind = kind;
}

// reap waits for any child and returns 1 if it exited 0; the first bad
// status is kept in *firstbad and reported on stderr with the job's kind.
static int reap(int *firstbad) {
	int st;
	pid_t r;
	while ((r = wait(&st)) < 0 && errno == EINTR) {
	}
	if (r < 0)
		return 0;
	if (status_ok(st))
		return 1;
	int s = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	fprintf(stderr, "tree: child %d (kind %d) status %d\n", r, kinds[r % 64].pid == r ? kinds[r % 64].kind : -1, s);
	if (*firstbad == 0)
		*firstbad = s;
	return 0;
}

static int uselib(const char *lib, long n, int close);

// The kinds of child the tree and churn modes make (start_job).
enum job {
	FORK_CALLS,      // fork; the child calls probed() N times
	FORK_CALLS_EXEC, // fork; the child calls probed() N times, then execs PROG "leaf N"
	FORK_EXEC,       // fork + exec PROG "leaf N"
	VFORK_EXEC,      // vfork + exec PROG "leaf N"
	SPAWN,           // posix_spawn PROG "leaf N"
	FORK_DL,         // fork; the child dlopens LIB, calls its lib_f N times, dlcloses
	FORK_FORK,       // fork; the child forks one that calls probed() N times, waits for it
};

// start_job starts a child of kind j and returns its pid (-1 on failure).
static pid_t start_job(enum job j, long n, const char *prog, const char *lib) {
	pid_t pid;
	switch (j) {
	case SPAWN:
		return spawn_leaf(prog);
	case VFORK_EXEC:
		pid = vfork();
		if (pid == 0)
			exec_leaf(prog);
		return pid;
	default:
		break;
	}
	pid = fork();
	if (pid != 0)
		return pid;
	switch (j) {
	case FORK_CALLS:
		calls(n);
		_exit(0);
	case FORK_CALLS_EXEC:
		calls(n);
		exec_leaf(prog);
	case FORK_EXEC:
		exec_leaf(prog);
	case FORK_DL:
		_exit(uselib(lib, n, 1));
	case FORK_FORK: {
		pid_t g = fork();
		if (g == 0) {
			calls(n);
			_exit(0);
		}
		_exit(wait_exit(g) == 0 ? 0 : 6);
	}
	default:
		_exit(127);
	}
}

static const enum job tree_jobs[5] = {FORK_CALLS, FORK_CALLS_EXEC, FORK_CALLS_EXEC, VFORK_EXEC, SPAWN};

static int tree(long n, int k, const char *other) {
	calls(n);
	int bad = 0, firstbad = 0;
	for (int i = 0; i < k; i++) {
		pid_t pid = start_job(tree_jobs[i % 5], n, i % 5 == 2 ? other : self, NULL);
		if (pid < 0)
			bad++;
		else
			setkind(pid, i % 5);
	}
	for (int i = 0; i < k; i++)
		if (!reap(&firstbad))
			bad++;
	printf("tree %d bad %d first %d\n", k, bad, firstbad);
	return bad != 0;
}

static int spawn(long count, int par, const char *prog) {
	int bad = 0, firstbad = 0, inflight = 0;
	for (long i = 0; i < count; i++) {
		if (inflight >= par) {
			if (!reap(&firstbad))
				bad++;
			inflight--;
		}
		if (spawn_leaf(prog) < 0)
			bad++;
		else
			inflight++;
	}
	while (inflight-- > 0)
		if (!reap(&firstbad))
			bad++;
	printf("spawn %ld bad %d first %d\n", count, bad, firstbad);
	return bad != 0;
}

typedef long (*lib_f_t)(long);

// lib_f_of dlopens lib (RTLD_NOW; *h is the handle) and returns its lib_f,
// NULL if there is none or dlopen failed (then with a message).
static lib_f_t lib_f_of(const char *lib, void **h) {
	*h = dlopen(lib, RTLD_NOW);
	if (!*h) {
		fprintf(stderr, "dlopen: %s\n", dlerror());
		return NULL;
	}
	return (lib_f_t)dlsym(*h, "lib_f");
}

static int dl(const char *a, const char *b, long n) {
	probed(1);
	void *h, *h2;
	lib_f_t f = lib_f_of(a, &h);
	if (!f)
		return 1;
	uint64_t sum = 0;
	for (long i = 0; i < n; i++)
		sum = sum * 31 + f(i);
	dlclose(h);
	lib_f_t g = lib_f_of(b, &h2);
	if (!g)
		return 1;
	sum = sum * 31 + g(7);
	printf("dl %d sum %016llx\n", f == g, (unsigned long long)sum);
	fflush(stdout);
	char buf[64];
	if (!fgets(buf, sizeof buf, stdin))
		return 4;
	return 0;
}

// uselib dlopens lib, calls lib_f n times and checks the results.
static int uselib(const char *lib, long n, int close) {
	void *h;
	lib_f_t f = lib_f_of(lib, &h);
	if (!f)
		return 1;
	for (long i = 0; i < n; i++)
		if (f(i) != i * 3 + 1)
			return 2;
	if (close)
		dlclose(h);
	return 0;
}

static const enum job churn_jobs[6] = {FORK_CALLS, FORK_EXEC, VFORK_EXEC, SPAWN, FORK_DL, FORK_FORK};

// churn runs ITER jobs, at most 3 at a time, each a child of kind i%6:
// fork+calls, fork+exec self, vfork+exec self, posix_spawn self, fork +
// dlopen/call/dlclose LIB, fork+fork. Three holders (forked at the start, a
// third and two thirds of the way; each calls probed() and keeps LIB
// loaded) live until the end. Prints "holders P1 P2 P3" and "churn ITER bad
// B first S", then waits for a line on stdin, ends the holders and prints
// "holders bad B".
static int churn(long iter, const char *lib, long n) {
	int bad = 0, firstbad = 0, inflight = 0;
	int hp[2];
	if (pipe(hp) < 0)
		return 2;
	pid_t holders[3];
	int nh = 0;
	calls(n);
	for (long i = 0; i < iter; i++) {
		if (i == 0 || i == iter / 3 || i == 2 * iter / 3) {
			pid_t h = fork();
			if (h == 0) {
				close(hp[1]);
				calls(n);
				if (uselib(lib, n, 0))
					_exit(5);
				char c;
				while (read(hp[0], &c, 1) < 0 && errno == EINTR) {
				}
				calls(n);
				_exit(0);
			}
			holders[nh++] = h;
		}
		if (inflight >= 3) {
			if (!reap(&firstbad))
				bad++;
			inflight--;
		}
		pid_t pid = start_job(churn_jobs[i % 6], n, self, lib);
		if (pid < 0)
			bad++;
		else {
			setkind(pid, i % 6);
			inflight++;
		}
	}
	while (inflight-- > 0)
		if (!reap(&firstbad))
			bad++;
	printf("holders %d %d %d\n", holders[0], holders[1], holders[2]);
	printf("churn %ld bad %d first %d\n", iter, bad, firstbad);
	fflush(stdout);
	char buf[64];
	if (!fgets(buf, sizeof buf, stdin))
		return 4;
	close(hp[1]);
	close(hp[0]);
	int hbad = 0, hfirst = 0;
	for (int i = 0; i < nh; i++)
		if (!reap(&hfirst))
			hbad++;
	printf("holders bad %d first %d\n", hbad, hfirst);
	return bad != 0 || hbad != 0;
}

int main(int argc, char **argv) {
	ssize_t l = readlink("/proc/self/exe", self, sizeof self - 1);
	if (l < 0)
		return 2;
	self[l] = 0;
	if (argc >= 3 && !strcmp(argv[1], "leaf")) {
		long n = atol(argv[2]);
		calls(n);
		for (long i = 0; i < n; i++)
			if (mixed(i) != 8 * i + 17 + (i & 1 ? 3 : 0))
				return 1;
		return 0;
	}
	if (argc >= 5 && !strcmp(argv[1], "tree")) {
		nstr = argv[2];
		return tree(atol(argv[2]), atoi(argv[3]), argv[4]);
	}
	if (argc >= 6 && !strcmp(argv[1], "spawn")) {
		nstr = argv[5];
		return spawn(atol(argv[2]), atoi(argv[3]), argv[4]);
	}
	if (argc >= 5 && !strcmp(argv[1], "dl"))
		return dl(argv[2], argv[3], atol(argv[4]));
	if (argc >= 5 && !strcmp(argv[1], "churn")) {
		nstr = argv[4];
		return churn(atol(argv[2]), argv[3], atol(argv[4]));
	}
	fprintf(stderr, "usage: tree leaf|tree|spawn|dl|churn ...\n");
	return 2;
}
