/* harness: runs one x86-64 snippet natively per request, for the tests that
 * check emulation and out-of-line slots for meaning.
 *
 * Request on stdin (struct in): the registers to start with (rip is where to
 * start), and the contents of five pages mapped at fixed addresses: CODE (the
 * probed instruction's page), SLOT (a slot page 1.1 GiB away), DATA, STACK and
 * FAR (code and data out of rel32 reach of the others, for trampolines).
 * The snippet runs until it executes an int3 (the pages are filled with 0xcc
 * around it) or faults; the reply on stdout (struct out) holds the signal
 * (SIGTRAP for an int3), the registers at that point (rip is the address of
 * the int3, or the faulting instruction) and the DATA, STACK and FAR pages.
 * The signal handler runs on an alternate stack so the STACK page is only
 * what the snippet wrote. EOF on stdin ends the program. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#define CODE 0x10000000UL
#define DATA 0x10100000UL
#define STACK 0x10200000UL
#define SLOT 0x58000000UL
#define FAR 0x300000000000UL /* out of rel32 reach of the others */
#define PAGE 4096

/* r: rax rcx rdx rbx rsp rbp rsi rdi r8..r15 (encoding order) */
struct regs {
	uint64_t r[16], rflags, rip;
};
struct in {
	struct regs regs;
	uint8_t code[PAGE], slot[PAGE], data[PAGE], stack[PAGE], far[PAGE];
};
struct out {
	uint64_t sig;
	struct regs regs;
	uint8_t data[PAGE], stack[PAGE], far[PAGE];
};

static struct in in;
static struct out out;
static sigjmp_buf env;
uint64_t run_target;

void run_regs(struct regs *r); /* never returns: ends in the signal handler */
__asm__(".text\n"
	".globl run_regs\n"
	"run_regs:\n"
	"mov %rdi, %rax\n"
	"mov 136(%rax), %rcx\n"
	"mov %rcx, run_target(%rip)\n"
	"push 128(%rax)\n"
	"popfq\n"
	"mov 8(%rax), %rcx\n"
	"mov 16(%rax), %rdx\n"
	"mov 24(%rax), %rbx\n"
	"mov 32(%rax), %rsp\n"
	"mov 40(%rax), %rbp\n"
	"mov 48(%rax), %rsi\n"
	"mov 56(%rax), %rdi\n"
	"mov 64(%rax), %r8\n"
	"mov 72(%rax), %r9\n"
	"mov 80(%rax), %r10\n"
	"mov 88(%rax), %r11\n"
	"mov 96(%rax), %r12\n"
	"mov 104(%rax), %r13\n"
	"mov 112(%rax), %r14\n"
	"mov 120(%rax), %r15\n"
	"mov 0(%rax), %rax\n"
	"jmp *run_target(%rip)\n");

/* clear_ac clears the alignment-check flag. A case run with AC set (the
 * trampoline must keep it) reaches the handler with it still set on
 * kernels that do not clear it at signal delivery, and siglongjmp does not
 * restore the flags: the harness's own unaligned accesses (memcpy, stdio)
 * would then fault. */
static inline void clear_ac(void)
{
	__asm__ volatile("pushfq\n\tandq $~0x40000, (%%rsp)\n\tpopfq" ::: "memory", "cc");
}

static void handler(int sig, siginfo_t *si, void *ctx)
{
	clear_ac();
	(void)si;
	greg_t *g = ((ucontext_t *)ctx)->uc_mcontext.gregs;
	static const int map[16] = {REG_RAX, REG_RCX, REG_RDX, REG_RBX, REG_RSP, REG_RBP, REG_RSI, REG_RDI,
				    REG_R8,  REG_R9,  REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15};
	for (int i = 0; i < 16; i++)
		out.regs.r[i] = (uint64_t)g[map[i]];
	out.regs.rflags = (uint64_t)g[REG_EFL];
	out.regs.rip = (uint64_t)g[REG_RIP];
	if (sig == SIGTRAP)
		out.regs.rip--; /* int3 reports the address after it */
	out.sig = (uint64_t)sig;
	siglongjmp(env, 1);
}

static void *map_at(uint64_t addr, int prot)
{
	void *p = mmap((void *)addr, PAGE, prot, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (p != (void *)addr) {
		fprintf(stderr, "harness: cannot map %#lx\n", (unsigned long)addr);
		exit(2);
	}
	return p;
}

int main(void)
{
	alarm(60); /* never outlive a stuck test (re-armed for each case) */
	map_at(CODE, PROT_READ | PROT_WRITE | PROT_EXEC);
	map_at(SLOT, PROT_READ | PROT_WRITE | PROT_EXEC);
	map_at(DATA, PROT_READ | PROT_WRITE);
	map_at(STACK, PROT_READ | PROT_WRITE);
	map_at(FAR, PROT_READ | PROT_WRITE | PROT_EXEC);

	static char altstack[1 << 16];
	stack_t ss = {.ss_sp = altstack, .ss_size = sizeof altstack};
	if (sigaltstack(&ss, NULL) != 0)
		return 2;
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_sigaction = handler;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
	sigemptyset(&sa.sa_mask);
	int sigs[] = {SIGTRAP, SIGSEGV, SIGBUS, SIGILL, SIGFPE};
	for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
		sigaction(sigs[i], &sa, NULL);

	while (fread(&in, sizeof in, 1, stdin) == 1) {
		alarm(60); /* a minute for each case, not for the whole test */
		memcpy((void *)CODE, in.code, PAGE);
		memcpy((void *)SLOT, in.slot, PAGE);
		memcpy((void *)DATA, in.data, PAGE);
		memcpy((void *)STACK, in.stack, PAGE);
		memcpy((void *)FAR, in.far, PAGE);
		memset(&out, 0, sizeof out);
		if (sigsetjmp(env, 1) == 0)
			run_regs(&in.regs);
		clear_ac();
		memcpy(out.data, (void *)DATA, PAGE);
		memcpy(out.stack, (void *)STACK, PAGE);
		memcpy(out.far, (void *)FAR, PAGE);
		if (fwrite(&out, sizeof out, 1, stdout) != 1 || fflush(stdout) != 0)
			return 2;
	}
	return 0;
}
