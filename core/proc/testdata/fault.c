// fault: the fixture of the "a probed instruction faults, or a signal
// comes, exactly as natively" tests (issue 11 items 5 and 6). Each probed
// function is a global asm function whose first instruction is the one
// probed; a mode prints what the program observed, identical with and
// without probes when nothing is harmed.
//
// usage: fault MODE N     (waits for a line on stdin, then runs)
//
//   load N       N times f_load(bad pointer): mov (%rdi),%eax (a slot)
//                faults; a SA_SIGINFO handler records si_code, si_addr,
//                and from the signal context rip (as f_load+OFF), err,
//                trapno and cr2, then siglongjmps out; prints them.
//   callind N    the same with f_callind: call *(%rdi) (emulated).
//   retbad N     the same with f_retbad: ret with the stack pointer on an
//                unmapped page (emulated; the handler runs on an
//                alternate stack).
//   stackcall N  N times, with the stack pointer moved to a page further
//                down the main stack each time (never touched: the kernel
//                grows the stack on the first write), f_stackcall's
//                "call f_leaf" (probe f_stackcall+OFF) pushes its return
//                address there; prints "stackcall N sum S".
//   popf N       a counting SIGTRAP handler; N times f_popf, which sets TF
//                with a popf (probe it) and clears it six instructions
//                later: six traps per call natively; prints the count.
//   calls N      N times f_calls: a direct call, an indirect call through
//                a register, one through memory (RIP-relative), then ret
//                (probe each: under a shadow stack they run for real in
//                branch slots); prints "calls N sum S".
//   async N      SIGALRM every 50 us (setitimer) while f_slot (imul, a
//                slot) is called N times; the handler checks that the
//                interrupted rip is in the text of a loaded object (the
//                program, libc, the vdso...: dl_iterate_phdr); prints
//                "async N sum S outside O".
#define _GNU_SOURCE
#include <link.h>
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/time.h>
#include <ucontext.h>
#include <unistd.h>
#include "fixture.h"

__asm__(
    ".text\n"
    ".globl f_load\n.type f_load,@function\nf_load:\n"
    "	movl (%rdi),%eax\n"
    "	ret\n"
    ".size f_load, .-f_load\n"
    ".globl f_callind\n.type f_callind,@function\nf_callind:\n"
    "	call *(%rdi)\n"
    "	ret\n"
    ".size f_callind, .-f_callind\n"
    // f_retbad(sp): switch to the unmapped stack pointer sp and ret.
    ".globl f_retbad\n.type f_retbad,@function\nf_retbad:\n"
    "	mov %rdi,%rsp\n"
    ".globl f_retbad_ret\nf_retbad_ret:\n"
    "	ret\n"
    ".size f_retbad, .-f_retbad\n"
    // f_stackcall(sp): call f_leaf with the stack pointer at sp, back.
    ".globl f_stackcall\n.type f_stackcall,@function\nf_stackcall:\n"
    "	mov %rsp,%r11\n"
    "	mov %rdi,%rsp\n"
    "	call f_leaf\n"
    "	mov %r11,%rsp\n"
    "	ret\n"
    ".size f_stackcall, .-f_stackcall\n"
    ".globl f_leaf\n.type f_leaf,@function\nf_leaf:\n"
    "	mov $7,%eax\n"
    "	ret\n"
    ".size f_leaf, .-f_leaf\n"
    // f_popf: TF on at the popf; six single-step traps natively (after
    // the three nops, pushf, andq and the popf that clears TF).
    ".globl f_popf\n.type f_popf,@function\nf_popf:\n"
    "	pushfq\n"
    "	orq $0x100,(%rsp)\n"
    ".globl f_popf_set\nf_popf_set:\n"
    "	popfq\n"
    "	nop\n"
    "	nop\n"
    "	nop\n"
    "	pushfq\n"
    "	andq $~0x100,(%rsp)\n"
    "	popfq\n"
    "	ret\n"
    ".size f_popf, .-f_popf\n"
    ".globl f_calls\n.type f_calls,@function\nf_calls:\n"
    "	push %rbx\n"
    "	call f_leaf\n"
    "	mov %eax,%ebx\n"
    "	lea f_leaf(%rip),%rcx\n"
    "	call *%rcx\n"
    "	add %eax,%ebx\n"
    "	call *f_leafp(%rip)\n"
    "	add %ebx,%eax\n"
    "	pop %rbx\n"
    "	ret\n"
    ".size f_calls, .-f_calls\n"
    ".section .data.rel.ro,\"aw\"\n"
    ".p2align 3\n"
    "f_leafp: .quad f_leaf\n"
    ".text\n"
    ".globl f_slot\n.type f_slot,@function\nf_slot:\n"
    "	imul $3,%rdi,%rax\n"
    "	ret\n"
    ".size f_slot, .-f_slot\n");

int f_load(int *p);
void f_callind(void *p);
void f_retbad(void *sp);
long f_stackcall(void *sp);
void f_popf(void);
long f_slot(long x);
long f_calls(void);
extern char f_retbad_ret[];

static sigjmp_buf env;
static volatile int faults;
static volatile long s_code, s_addr, s_rip, s_err, s_trapno, s_cr2;
static uintptr_t base;

static void on_segv(int sig, siginfo_t *si, void *ctx) {
	(void)sig;
	ucontext_t *uc = ctx;
	faults++;
	s_code = si->si_code;
	s_addr = (long)si->si_addr;
	s_rip = (long)(uc->uc_mcontext.gregs[REG_RIP] - base);
	s_err = uc->uc_mcontext.gregs[REG_ERR];
	s_trapno = uc->uc_mcontext.gregs[REG_TRAPNO];
	s_cr2 = (long)uc->uc_mcontext.gregs[REG_CR2];
	siglongjmp(env, 1);
}

static volatile long traps, outside;

static void on_trap(int sig) {
	(void)sig;
	traps++;
}

// The executable segments of the loaded objects.
static struct {
	uintptr_t lo, hi;
} texts[64];
static int ntexts;

static int add_texts(struct dl_phdr_info *info, size_t size, void *arg) {
	(void)size;
	(void)arg;
	for (int i = 0; i < info->dlpi_phnum && ntexts < 64; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
			texts[ntexts].lo = info->dlpi_addr + ph->p_vaddr;
			texts[ntexts].hi = texts[ntexts].lo + ph->p_memsz;
			ntexts++;
		}
	}
	return 0;
}

static void on_alrm(int sig, siginfo_t *si, void *ctx) {
	(void)sig;
	(void)si;
	uintptr_t rip = ((ucontext_t *)ctx)->uc_mcontext.gregs[REG_RIP];
	for (int i = 0; i < ntexts; i++)
		if (rip >= texts[i].lo && rip < texts[i].hi)
			return;
	outside++;
}

static void segv_handler(void) {
	static char altstack[65536];
	stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
	sigaltstack(&ss, NULL);
	struct sigaction sa = {0};
	sa.sa_sigaction = on_segv;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
	sigaction(SIGSEGV, &sa, NULL);
}

static void report(const char *mode, long n) {
	printf("%s %ld faults %d code %ld addr %#lx rip %+ld err %ld trapno %ld cr2 %#lx\n",
	       mode, n, faults, s_code, s_addr, s_rip, s_err, s_trapno, s_cr2);
}

int main(int argc, char **argv) {
	if (argc < 3) {
		fprintf(stderr, "usage: fault MODE N\n");
		return 2;
	}
	const char *mode = argv[1];
	long n = atol(argv[2]);
	await_go();
	if (!strcmp(mode, "load") || !strcmp(mode, "callind")) {
		segv_handler();
		int load = !strcmp(mode, "load");
		base = load ? (uintptr_t)f_load : (uintptr_t)f_callind;
		for (long i = 0; i < n; i++) {
			void *bad = (void *)(uintptr_t)(0x10 + 8 * (i % 4));
			if (sigsetjmp(env, 1) == 0) {
				if (load)
					f_load(bad);
				else
					f_callind(bad);
			}
		}
		report(mode, n);
		return 0;
	}
	if (!strcmp(mode, "retbad")) {
		segv_handler();
		base = (uintptr_t)f_retbad;
		char *p = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		for (long i = 0; i < n; i++)
			if (sigsetjmp(env, 1) == 0)
				f_retbad(p + 8 * (i % 8));
		s_addr -= (long)p;
		s_cr2 -= (long)p;
		report(mode, n);
		return 0;
	}
	if (!strcmp(mode, "stackcall")) {
		char here;
		uintptr_t top = ((uintptr_t)&here & ~(uintptr_t)4095) - (256 << 10);
		long sum = 0;
		for (long i = 0; i < n; i++)
			sum += f_stackcall((void *)(top - (uintptr_t)i * 4096 - 4096 * 2));
		printf("stackcall %ld sum %ld\n", n, sum);
		return 0;
	}
	if (!strcmp(mode, "popf")) {
		signal(SIGTRAP, on_trap);
		for (long i = 0; i < n; i++)
			f_popf();
		printf("popf %ld traps %ld\n", n, traps);
		return 0;
	}
	if (!strcmp(mode, "calls")) {
		long sum = 0;
		for (long i = 0; i < n; i++)
			sum += f_calls();
		printf("calls %ld sum %ld\n", n, sum);
		return 0;
	}
	if (!strcmp(mode, "async")) {
		dl_iterate_phdr(add_texts, NULL);
		struct sigaction sa = {0};
		sa.sa_sigaction = on_alrm;
		sa.sa_flags = SA_SIGINFO | SA_RESTART;
		sigaction(SIGALRM, &sa, NULL);
		struct itimerval it = {{0, 50}, {0, 50}};
		setitimer(ITIMER_REAL, &it, NULL);
		long sum = 0;
		for (long i = 0; i < n; i++)
			sum += f_slot(i);
		struct itimerval off = {0};
		setitimer(ITIMER_REAL, &off, NULL);
		printf("async %ld sum %ld outside %ld\n", n, sum, outside);
		return 0;
	}
	fprintf(stderr, "fault: unknown mode %s\n", mode);
	return 2;
}
