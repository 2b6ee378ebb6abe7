// harm: the fixture of the "never harm a traced process" tests (issue 11).
// Each mode is a shape of process that uprobefs once harmed. The probed
// function is h_func (push %rbp first: a one-byte instruction), called in a
// loop; a mode prints what it observed and exits 0 when all went well.
//
// usage: harm MODE N [ARG]     (waits for a line on stdin, then runs)
//
//   clonevm N    main + 3 clone(CLONE_VM|SIGCHLD) children, each calling
//                h_func N times; prints "clonevm CALLS" (4*N) and the
//                children's exit statuses ("children 0 0 0").
//   clonespin MS as clonevm, but every process calls h_func until MS
//                milliseconds have passed; prints "children 0 0 0".
//   vfork N      N times: vfork(), the child calls h_func and _exits;
//                prints "vfork N bad B".
//   vforkhold MS main vforks a child that prints "vforked" and sleeps MS ms
//                before it _exits (main cannot stop meanwhile), then prints
//                "back"; a thread calls h_func in a loop from a second line
//                on stdin; after a third, main stops it and prints
//                "calls N".
//   blocktrap N  a counting SIGTRAP handler; SIGTRAP blocked around N calls
//                of h_func; prints whether SIGTRAP was still blocked and the
//                handler still installed after them, then unblocks and runs
//                its own int3: "masked 1 handler 1 survived 1".
//   ontrap N     the SIGTRAP handler itself is h_trap (probe it); the
//                program executes N int3 of its own: "ontrap N".
//   blockall N   a SIGTRAP handler; every signal blocked; N calls; prints
//                "blockall masked 1 handler 1".
//   ignored N    SIGTRAP ignored (SIG_IGN); N calls; prints "ignored 1"
//                when SIGTRAP is still ignored after them.
//   execthread 0 [PROG]  a thread execs PROG (default: this program) as
//                "PROG exechello", main waits in pause(); the new image
//                prints "exechello 100 calls".
//   execloop K PROG  runs "PROG exechello 0" K times, one after another
//                (fork + exec, waits); prints "execloop K bad B".
//   exechello [T0] (run by execthread, execloop) 100 calls, then prints
//                "exechello 100 calls pid P start NS end NS" (CLOCK_MONOTONIC
//                at T0 if given (execloop: just before its execve), else
//                at main; and after the calls, ns).
//   mmap N FILE  maps FILE (a shared library copy: lib.c) with a plain
//                mmap(PROT_READ|PROT_EXEC) at the offset of its executable
//                segment and calls its lib_f through the mapping N times:
//                "mmap N sum S". FILE's lib_f is found with ARG offsets
//                given by the test: ARG is "FILEOFF:SEGOFF:SEGLEN".
//   orphanvm N   a clone(CLONE_VM|SIGCHLD) child outlives main, which
//                exits at once; once reparented, the child prints "orphan
//                ready PID", waits for a second line on stdin, calls h_two
//                (imul first: it runs in a slot) N times and prints
//                "orphan N sum S".
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <fcntl.h>
#include <unistd.h>
#include "fixture.h"

__asm__(
    ".text\n"
    ".p2align 4\n"
    ".globl h_func\n.type h_func,@function\n"
    "h_func:\n"
    "  push %rbp\n"
    "  mov %rsp, %rbp\n"
    "  lea 1(%rdi), %rax\n"
    "  pop %rbp\n"
    "  ret\n"
    ".size h_func, .-h_func\n");

uint64_t h_func(uint64_t);

__asm__(
    ".text\n"
    ".p2align 4\n"
    ".globl h_two\n.type h_two,@function\n"
    "h_two:\n"
    "  imul $3, %rdi, %rax\n"
    "  ret\n"
    ".size h_two, .-h_two\n");

uint64_t h_two(uint64_t);

static long n;
static pid_t orphan_parent;

// orphan_child runs mode orphanvm's child: in its parent's memory, alone
// once the parent has exited.
static int orphan_child(void *arg) {
	(void)arg;
	while (getppid() == orphan_parent)
		usleep(1000);
	printf("orphan ready %d\n", (int)getpid());
	fflush(stdout);
	char buf[64];
	if (!fgets(buf, sizeof buf, stdin))
		return 3;
	uint64_t s = 0;
	for (long i = 0; i < n; i++)
		s += h_two(i);
	printf("orphan %ld sum %llu\n", n, (unsigned long long)s);
	fflush(stdout);
	return 0;
}

static volatile int hold_stop;
static volatile long hold_calls;

// hold_thread runs mode vforkhold's calls.
static void *hold_thread(void *arg) {
	(void)arg;
	char line[64];
	if (!fgets(line, sizeof line, stdin))
		return NULL;
	for (long i = 0; !hold_stop; i++) {
		h_func(i);
		hold_calls++;
	}
	return NULL;
}

static volatile sig_atomic_t traps;

// h_trap is the SIGTRAP handler of mode ontrap (a probe goes on it).
__attribute__((noinline)) void h_trap(int s) {
	(void)s;
	traps++;
}

static void on_trap(int s) {
	(void)s;
	traps++;
}


static struct timespec spin_end;
static int spinning;

static int spin_done(void) {
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	return now.tv_sec > spin_end.tv_sec || (now.tv_sec == spin_end.tv_sec && now.tv_nsec >= spin_end.tv_nsec);
}

static int clone_child(void *arg) {
	(void)arg;
	uint64_t s = 0;
	if (spinning) {
		for (long i = 0; !spin_done(); i++)
			if (h_func(i) != (uint64_t)i + 1)
				return 1;
		return 0;
	}
	for (long i = 0; i < n; i++)
		s += h_func(i);
	return s == (uint64_t)(n * (n + 1) / 2) ? 0 : 1;
}

static int trap_blocked(void) {
	sigset_t cur;
	sigprocmask(SIG_BLOCK, NULL, &cur);
	return sigismember(&cur, SIGTRAP);
}

static int trap_handler_is(void (*h)(int)) {
	struct sigaction sa;
	sigaction(SIGTRAP, NULL, &sa);
	return sa.sa_handler == h;
}

static void *exec_thread(void *arg) {
	char *self = arg;
	execl(self, self, "exechello", "0", (char *)0);
	perror("execl");
	_exit(127);
}

int main(int argc, char **argv) {
	if (argc < 3) {
		fprintf(stderr, "usage: harm MODE N [ARG]\n");
		return 2;
	}
	const char *mode = argv[1];
	n = atol(argv[2]);
	if (!strcmp(mode, "exechello")) {
		struct timespec t0;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		if (argc > 3) { // the execve's start, from execloop
			long long ns = atoll(argv[3]);
			t0.tv_sec = ns / 1000000000LL;
			t0.tv_nsec = ns % 1000000000LL;
		}
		uint64_t s = 0;
		for (int i = 0; i < 100; i++)
			s += h_func(i);
		struct timespec t1;
		clock_gettime(CLOCK_MONOTONIC, &t1);
		printf("exechello %d calls pid %d start %lld end %lld\n", s == 5050 ? 100 : -1, (int)getpid(),
		       (long long)t0.tv_sec * 1000000000LL + t0.tv_nsec, (long long)t1.tv_sec * 1000000000LL + t1.tv_nsec);
		return 0;
	}
	await_go();
	if (!strcmp(mode, "clonespin")) {
		spinning = 1;
		clock_gettime(CLOCK_MONOTONIC, &spin_end);
		spin_end.tv_sec += n / 1000;
		spin_end.tv_nsec += (n % 1000) * 1000000;
		if (spin_end.tv_nsec >= 1000000000) {
			spin_end.tv_sec++;
			spin_end.tv_nsec -= 1000000000;
		}
		mode = "clonevm";
	}
	if (!strcmp(mode, "clonevm")) {
		int st[3] = {-1, -1, -1};
		pid_t pids[3];
		for (int k = 0; k < 3; k++) {
			char *stack = malloc(1 << 20);
			pids[k] = clone(clone_child, stack + (1 << 20), CLONE_VM | SIGCHLD, NULL);
			if (pids[k] < 0) {
				perror("clone");
				return 4;
			}
		}
		int mine = clone_child(NULL);
		for (int k = 0; k < 3; k++)
			st[k] = wait_exit(pids[k]);
		if (!spinning)
			printf("clonevm %ld\n", mine == 0 ? 4 * n : -1);
		printf("children %d %d %d\n", st[0], st[1], st[2]);
		return 0;
	}
	if (!strcmp(mode, "orphanvm")) {
		orphan_parent = getpid();
		char *stack = malloc(1 << 20);
		if (clone(orphan_child, stack + (1 << 20), CLONE_VM | SIGCHLD, NULL) < 0) {
			perror("clone");
			return 4;
		}
		_exit(0);
	}
	if (!strcmp(mode, "vforkhold")) {
		pthread_t t;
		pthread_create(&t, NULL, hold_thread, NULL);
		pid_t p = vfork();
		if (p == 0) {
			struct timespec d = {n / 1000, (n % 1000) * 1000000};
			write(1, "vforked\n", 8);
			nanosleep(&d, NULL);
			_exit(0);
		}
		if (wait_exit(p) != 0)
			return 1;
		printf("back\n");
		fflush(stdout);
		await_go();
		hold_stop = 1;
		pthread_join(t, NULL);
		printf("calls %ld\n", hold_calls);
		return 0;
	}
	if (!strcmp(mode, "vfork")) {
		int bad = 0;
		for (long i = 0; i < n; i++) {
			pid_t p = vfork();
			if (p == 0) {
				h_func(i);
				_exit(0);
			}
			if (wait_exit(p) != 0)
				bad++;
			h_func(i);
		}
		printf("vfork %ld bad %d\n", n, bad);
		return 0;
	}
	if (!strcmp(mode, "blocktrap") || !strcmp(mode, "blockall")) {
		signal(SIGTRAP, on_trap);
		sigset_t set, old;
		if (!strcmp(mode, "blockall"))
			sigfillset(&set);
		else {
			sigemptyset(&set);
			sigaddset(&set, SIGTRAP);
		}
		sigprocmask(SIG_BLOCK, &set, &old);
		for (long i = 0; i < n; i++)
			h_func(i);
		int masked = trap_blocked(), handler = trap_handler_is(on_trap);
		sigprocmask(SIG_SETMASK, &old, NULL);
		if (!strcmp(mode, "blockall")) {
			printf("blockall masked %d handler %d\n", masked, handler);
			return 0;
		}
		traps = 0;
		__asm__ volatile("int3");
		printf("masked %d handler %d survived %d\n", masked, handler, (int)traps);
		return 0;
	}
	if (!strcmp(mode, "ontrap")) {
		signal(SIGTRAP, h_trap);
		for (long i = 0; i < n; i++)
			__asm__ volatile("int3");
		printf("ontrap %d\n", (int)traps);
		return 0;
	}
	if (!strcmp(mode, "ignored")) {
		signal(SIGTRAP, SIG_IGN);
		for (long i = 0; i < n; i++)
			h_func(i);
		printf("ignored %d\n", trap_handler_is(SIG_IGN));
		return 0;
	}
	if (!strcmp(mode, "execthread")) {
		pthread_t t;
		pthread_create(&t, NULL, exec_thread, argc > 3 ? argv[3] : argv[0]);
		for (;;)
			pause();
	}
	if (!strcmp(mode, "execloop")) {
		int bad = 0;
		fflush(stdout);
		for (long i = 0; i < n; i++) {
			pid_t p = fork();
			if (p == 0) {
				struct timespec t;
				char ns[32];
				clock_gettime(CLOCK_MONOTONIC, &t);
				snprintf(ns, sizeof ns, "%lld", (long long)t.tv_sec * 1000000000LL + t.tv_nsec);
				execl(argv[3], argv[3], "exechello", "0", ns, (char *)0);
				_exit(127);
			}
			if (wait_exit(p) != 0)
				bad++;
		}
		printf("execloop %ld bad %d\n", n, bad);
		return 0;
	}
	if (!strcmp(mode, "mmap")) {
		if (argc < 5)
			return 2;
		unsigned long fnoff, segoff, seglen;
		if (sscanf(argv[4], "%lx:%lx:%lx", &fnoff, &segoff, &seglen) != 3)
			return 2;
		int fd = open(argv[3], O_RDONLY);
		if (fd < 0) {
			perror("open");
			return 5;
		}
		char *m = mmap(NULL, seglen, PROT_READ | PROT_EXEC, MAP_PRIVATE, fd, segoff);
		if (m == MAP_FAILED) {
			perror("mmap");
			return 5;
		}
		int (*f)(int) = (int (*)(int))(m + (fnoff - segoff));
		long s = 0;
		for (long i = 0; i < n; i++)
			s += f((int)i);
		printf("mmap %ld sum %ld\n", n, s);
		return 0;
	}
	fprintf(stderr, "harm: unknown mode %s\n", mode);
	return 2;
}
