/* jump: the fixture of the jump-site tests (issue 12, jump_test.go).
 *
 * The probed function is j_func (push %rbp; mov %rsp,%rbp; lea; xor; pop;
 * ret: the first three instructions, 8 bytes, are displaced by a jump
 * site). The program prints "ready\n", then reads commands from stdin,
 * one a line, and answers each with one line:
 *
 *   T N     T threads each call j_func N times; prints "sum S" (S, the sum
 *           of every call's result, depends only on T and N)
 *   spin T  T threads call j_func until the next line ("stop") arrives;
 *           prints "ok 1" once they run, then at "stop" "spin C sum S
 *           want W": C calls in all, S the sum of their results, W what
 *           S must be (computed without calling j_func); "x" instead
 *           of "stop" execs argv[0] while the threads still call j_func;
 *           "f T N" lines before it run as below while they spin
 *   L T N   as "T N", calling j_loop(3) instead: "sum S" (S = 6*T*N)
 *   sig T US  as "spin T", and a SIGALRM every US microseconds
 *           (setitimer ITIMER_REAL), handled by the spinning threads
 *           only, whose handler calls j_func too (perhaps on top of a
 *           thread in j_func's trampoline); the line at "stop" ends with
 *           " sig K", K the handler's calls (counted in C)
 *   g N     N calls of j_load(&v), one j_load(NULL), whose SIGSEGV handler
 *           notes the context's rip and rsp and siglongjmps out, then N
 *           more: "fault ok" if every call returned v+1 and the fault was
 *           at j_load+1 with rsp 8 below the caller's (as natively),
 *           else "fault bad ..."
 *   F T N   fork a child that calls j_func once (checking its result),
 *           prints "child PID" and waits;
 *           at the next line ("k") the child runs "T N" and exits 0 if its
 *           sum is right, and the parent prints "child exit E"
 *   f T N   fork; parent and child each run "T N" at the same time; the
 *           child exits 0 if its sum is right (3 if not); the parent
 *           prints "fork sum S exit E" (its own sum, the child's status)
 *   o LIB   dlopen LIB (testdata/jumplib.c): "open F O", the addresses of
 *           its l_func and l_other
 *   c T N   T threads each call l_func(k) and l_other(k) for k < N:
 *           "calls sum S want W" (W computed without calling them)
 *   u       dlclose it: "closed"
 *   x       execs argv[0] (this program, its mode "ready" again)
 *
 * End of file on stdin: exit 0. Any failure: a message and exit 1.
 *
 * With JUMP_DIAG=FILE in the environment, stderr goes to FILE and a
 * SIGSEGV writes the thread's registers and the stack around rsp there,
 * then exits 139 (for TestJumpDaemonKilledChurn's report).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <setjmp.h>
#include <ucontext.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

__asm__(
    ".text\n"
    ".p2align 4\n"
    ".globl j_func\n.type j_func,@function\n"
    "j_func:\n"
    "  push %rbp\n"
    "  mov %rsp, %rbp\n"
    "  lea 1(%rdi), %rax\n"
    "  xor $0x5a, %rax\n"
    "  pop %rbp\n"
    "  ret\n"
    ".size j_func, .-j_func\n");

uint64_t j_func(uint64_t);

/* j_loop(x) = x + (x-1) + ... + 1 (x >= 1): its jnz goes back to +2, inside
 * the 8 bytes a jump at its entry would displace, so it gets none. */
__asm__(
    ".text\n"
    ".p2align 4\n"
    ".globl j_loop\n.type j_loop,@function\n"
    "j_loop:\n"
    "  xor %eax, %eax\n"
    "1:\n"
    "  add %rdi, %rax\n"
    "  dec %rdi\n"
    "  jnz 1b\n"
    "  ret\n"
    ".size j_loop, .-j_loop\n");

uint64_t j_loop(uint64_t);

/* j_load(p) = *p + 1; its mov, at +1, is among the 5 displaced bytes
 * (push, mov, pop). */
__asm__(
    ".text\n"
    ".p2align 4\n"
    ".globl j_load\n.type j_load,@function\n"
    "j_load:\n"
    "  push %rbp\n"
    "  mov (%rdi), %rax\n"
    "  pop %rbp\n"
    "  add $1, %rax\n"
    "  ret\n"
    ".size j_load, .-j_load\n");

uint64_t j_load(const uint64_t *);

static sigjmp_buf fault_jb;
static volatile uint64_t fault_rip, fault_rsp;

static void on_segv(int sig, siginfo_t *si, void *uc) {
	(void)sig;
	(void)si;
	fault_rip = ((ucontext_t *)uc)->uc_mcontext.gregs[REG_RIP];
	fault_rsp = ((ucontext_t *)uc)->uc_mcontext.gregs[REG_RSP];
	siglongjmp(fault_jb, 1);
}

/* j_want is what j_func returns, computed here. */
static uint64_t j_want(uint64_t x) { return (x + 1) ^ 0x5a; }

struct worker {
	pthread_t th;
	uint64_t base, n, sum, want;
	int loop; /* call j_loop(3) instead */
};

static uint64_t (*l_func)(uint64_t), (*l_other)(uint64_t);

static void *lib_calls(void *arg) {
	struct worker *w = arg;
	for (uint64_t k = 0; k < w->n; k++) {
		w->sum += l_func(k) + l_other(k);
		w->want += j_want(k) + 3 * k;
	}
	return NULL;
}

static volatile int stop;
static volatile int running;

/* The SIGALRM handler's tallies, per thread. */
static __thread uint64_t h_n, h_sum, h_want;
static uint64_t h_calls; /* every thread's h_n, added up at the end */

static void on_alrm(int sig) {
	(void)sig;
	h_sum += j_func(h_n + (1ul << 50));
	h_want += j_want(h_n + (1ul << 50));
	h_n++;
}

static void alrm_mask(int how) {
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGALRM);
	pthread_sigmask(how, &set, NULL);
}

static void *batch(void *arg) {
	struct worker *w = arg;
	for (uint64_t i = 0; i < w->n; i++)
		w->sum += w->loop ? j_loop(3) : j_func(w->base + i);
	return NULL;
}

static void *spin(void *arg) {
	struct worker *w = arg;
	if (w->loop)
		alrm_mask(SIG_UNBLOCK);
	__atomic_add_fetch(&running, 1, __ATOMIC_SEQ_CST);
	while (!__atomic_load_n(&stop, __ATOMIC_RELAXED)) {
		w->sum += j_func(w->base + w->n);
		w->want += j_want(w->base + w->n);
		w->n++;
	}
	if (w->loop) {
		alrm_mask(SIG_BLOCK);
		w->sum += h_sum;
		w->want += h_want;
		w->n += h_n;
		__atomic_add_fetch(&h_calls, h_n, __ATOMIC_SEQ_CST);
	}
	return NULL;
}

static void hexout(const char *name, uint64_t v) {
	char b[40];
	int n = 0;
	while (*name)
		b[n++] = *name++;
	b[n++] = '=';
	for (int i = 60; i >= 0; i -= 4)
		b[n++] = "0123456789abcdef"[(v >> i) & 15];
	b[n++] = ' ';
	write(2, b, n);
}

/* The registers on_segv_diag prints, in its order. */
static const struct {
	const char *name;
	int reg;
} diag_regs[] = {
	{"rip", REG_RIP}, {"rsp", REG_RSP}, {"rax", REG_RAX}, {"rdi", REG_RDI},
	{"rsi", REG_RSI}, {"rdx", REG_RDX}, {"r10", REG_R10}, {"r8", REG_R8},
	{"r9", REG_R9},   {"rcx", REG_RCX}, {"r11", REG_R11}, {"rbp", REG_RBP},
	{"fl", REG_EFL},
};

static void on_segv_diag(int sig, siginfo_t *si, void *ucv) {
	ucontext_t *uc = ucv;
	greg_t *g = uc->uc_mcontext.gregs;
	hexout("tid", gettid());
	for (size_t i = 0; i < sizeof diag_regs / sizeof diag_regs[0]; i++)
		hexout(diag_regs[i].name, g[diag_regs[i].reg]);
	uint64_t *sp = (uint64_t *)g[REG_RSP];
	for (int i = -4; i < 6; i++)
		hexout("s", sp[i]);
	hexout("j_func", (uint64_t)j_func);
	write(2, "\n", 1);
	_exit(139);
}

static void die(const char *what) {
	printf("error: %s\n", what);
	fflush(stdout);
	exit(1);
}

/* handle installs the handler of sig: fn (with SA_SIGINFO) if given, else
 * h; with flags. It dies if sigaction fails. */
static void handle(int sig, void (*h)(int), void (*fn)(int, siginfo_t *, void *), int flags) {
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	if (fn) {
		sa.sa_sigaction = fn;
		flags |= SA_SIGINFO;
	} else {
		sa.sa_handler = h;
	}
	sa.sa_flags = flags;
	if (sigaction(sig, &sa, NULL))
		die("sigaction");
}

/* run_batch runs T threads of N calls and returns the sum. */
static uint64_t run_batch(unsigned t, unsigned n, int loop) {
	if (t < 1 || t > 64)
		die("threads");
	struct worker w[64];
	memset(w, 0, sizeof w);
	for (unsigned i = 0; i < t; i++) {
		w[i].base = (uint64_t)i << 40;
		w[i].n = n;
		w[i].loop = loop;
		if (pthread_create(&w[i].th, NULL, batch, &w[i]))
			die("pthread_create");
	}
	uint64_t sum = 0;
	for (unsigned i = 0; i < t; i++) {
		pthread_join(w[i].th, NULL);
		sum += w[i].sum;
	}
	return sum;
}

/* batch_want is what run_batch must return. */
static uint64_t batch_want(unsigned t, unsigned n) {
	uint64_t s = 0;
	for (uint64_t i = 0; i < t; i++)
		for (uint64_t k = 0; k < n; k++)
			s += j_want((i << 40) + k);
	return s;
}

/* fork_batch forks; parent and child each run "T N"; the child exits 0 if
 * its sum is right; the parent prints "fork sum S exit E". The parent's
 * other threads, if any, go on meanwhile. */
static void fork_batch(unsigned t, unsigned n) {
	pid_t child = fork();
	if (child < 0)
		die("fork");
	if (child == 0)
		_exit(run_batch(t, n, 0) == batch_want(t, n) ? 0 : 3);
	uint64_t sum = run_batch(t, n, 0);
	int st;
	if (waitpid(child, &st, 0) != child)
		die("waitpid");
	printf("fork sum %lu exit %d\n", sum, WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

int main(int argc, char **argv) {
	(void)argc;
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (getenv("JUMP_DIAG")) {
		int fd = open(getenv("JUMP_DIAG"), O_WRONLY | O_CREAT | O_APPEND, 0644);
		dup2(fd, 2);
		static char altstack[65536];
		stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
		sigaltstack(&ss, NULL);
		handle(SIGSEGV, NULL, on_segv_diag, SA_ONSTACK);
	}
	printf("ready\n");
	char line[4096];
	void *lib = NULL;
	while (fgets(line, sizeof line, stdin)) {
		unsigned t, n;
		if (!strcmp(line, "x\n")) {
			char *args[] = {argv[0], NULL};
			execv(argv[0], args);
			die("execv");
		}
		if (sscanf(line, "g %u", &n) == 1) {
			static uint64_t v = 41;
			unsigned bad = 0;
			for (unsigned i = 0; i < n; i++)
				bad += j_load(&v) != 42;
			handle(SIGSEGV, NULL, on_segv, 0);
			volatile uint64_t rsp_before = 0;
			if (!sigsetjmp(fault_jb, 1)) {
				uint64_t *volatile null = NULL;
				__asm__ volatile("mov %%rsp, %0" : "=r"(rsp_before));
				j_load(null);
				die("no fault");
			}
			signal(SIGSEGV, SIG_DFL);
			for (unsigned i = 0; i < n; i++)
				bad += j_load(&v) != 42;
			/* at j_load+1: the return address and rbp are pushed */
			if (!bad && fault_rip == (uint64_t)j_load + 1 && fault_rsp == rsp_before - 16)
				printf("fault ok\n");
			else
				printf("fault bad %u rip %#lx want %#lx rsp %#lx want %#lx\n", bad, fault_rip,
				       (uint64_t)j_load + 1, fault_rsp, rsp_before - 16);
			continue;
		}
		if (!strncmp(line, "o ", 2)) {
			line[strcspn(line, "\n")] = 0;
			if (!(lib = dlopen(line + 2, RTLD_NOW | RTLD_LOCAL)))
				die(dlerror());
			l_func = (uint64_t(*)(uint64_t))dlsym(lib, "l_func");
			l_other = (uint64_t(*)(uint64_t))dlsym(lib, "l_other");
			if (!l_func || !l_other)
				die("dlsym");
			printf("open %p %p\n", (void *)l_func, (void *)l_other);
			continue;
		}
		if (!strcmp(line, "u\n")) {
			if (!lib || dlclose(lib))
				die("dlclose");
			lib = NULL;
			printf("closed\n");
			continue;
		}
		if (sscanf(line, "c %u %u", &t, &n) == 2) {
			if (t < 1 || t > 64 || !lib)
				die("threads or no library");
			struct worker w[64];
			memset(w, 0, sizeof w);
			for (unsigned i = 0; i < t; i++) {
				w[i].n = n;
				if (pthread_create(&w[i].th, NULL, lib_calls, &w[i]))
					die("pthread_create");
			}
			uint64_t sum = 0, want = 0;
			for (unsigned i = 0; i < t; i++) {
				pthread_join(w[i].th, NULL);
				sum += w[i].sum;
				want += w[i].want;
			}
			printf("calls sum %lu want %lu\n", sum, want);
			continue;
		}
		unsigned us = 0;
		if (sscanf(line, "spin %u", &t) == 1 || sscanf(line, "sig %u %u", &t, &us) == 2) {
			if (t < 1 || t > 64)
				die("threads");
			struct worker w[64];
			memset(w, 0, sizeof w);
			stop = 0;
			running = 0;
			if (us) {
				alrm_mask(SIG_BLOCK); /* main: never; the workers unblock it */
				handle(SIGALRM, on_alrm, NULL, SA_RESTART);
				struct itimerval it = {{0, us}, {0, us}};
				if (setitimer(ITIMER_REAL, &it, NULL))
					die("setitimer");
			}
			for (unsigned i = 0; i < t; i++) {
				w[i].base = (uint64_t)i << 40;
				w[i].loop = us != 0;
				if (pthread_create(&w[i].th, NULL, spin, &w[i]))
					die("pthread_create");
			}
			while (__atomic_load_n(&running, __ATOMIC_SEQ_CST) < (int)t)
				sched_yield();
			printf("ok 1\n");
			if (!fgets(line, sizeof line, stdin))
				die("no stop");
			if (!strcmp(line, "x\n")) {
				char *args[] = {argv[0], NULL};
				execv(argv[0], args);
				die("execv");
			}
			unsigned ft, fn;
			while (sscanf(line, "f %u %u", &ft, &fn) == 2) {
				fork_batch(ft, fn);
				if (!fgets(line, sizeof line, stdin))
					die("no stop");
			}
			if (strcmp(line, "stop\n"))
				die("no stop");
			__atomic_store_n(&stop, 1, __ATOMIC_SEQ_CST);
			uint64_t calls = 0, sum = 0, want = 0;
			for (unsigned i = 0; i < t; i++) {
				pthread_join(w[i].th, NULL);
				calls += w[i].n;
				sum += w[i].sum;
				want += w[i].want;
			}
			if (us) {
				struct itimerval off = {{0, 0}, {0, 0}};
				setitimer(ITIMER_REAL, &off, NULL);
				printf("spin %lu sum %lu want %lu sig %lu\n", calls, sum, want, h_calls);
			} else
				printf("spin %lu sum %lu want %lu\n", calls, sum, want);
			continue;
		}
		if (sscanf(line, "f %u %u", &t, &n) == 2) {
			fork_batch(t, n);
			continue;
		}
		if (sscanf(line, "F %u %u", &t, &n) == 2) {
			int p[2];
			if (pipe(p))
				die("pipe");
			pid_t child = fork();
			if (child < 0)
				die("fork");
			if (child == 0) {
				char c;
				close(p[1]);
				if (j_func(1) != j_want(1))
					_exit(5);
				printf("child %d\n", (int)getpid());
				if (read(p[0], &c, 1) != 1)
					_exit(4);
				_exit(run_batch(t, n, 0) == batch_want(t, n) ? 0 : 3);
			}
			close(p[0]);
			if (!fgets(line, sizeof line, stdin) || strcmp(line, "k\n"))
				die("no k");
			if (write(p[1], "k", 1) != 1)
				die("write");
			close(p[1]);
			int st;
			if (waitpid(child, &st, 0) != child)
				die("waitpid");
			printf("child exit %d\n", WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
			continue;
		}
		if (sscanf(line, "L %u %u", &t, &n) == 2) {
			printf("sum %lu\n", run_batch(t, n, 1));
			continue;
		}
		if (sscanf(line, "%u %u", &t, &n) == 2) {
			printf("sum %lu\n", run_batch(t, n, 0));
			continue;
		}
		die("bad command");
	}
	return 0;
}
