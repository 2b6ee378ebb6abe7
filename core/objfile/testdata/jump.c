/* jump: fixture of the jump-site rules (objfile's TestJumpAt). The asm
 * functions are laid out by hand so that a branch lands where the test
 * says; every symbol has a size (.size). */
#include <stdio.h>
#include <stdlib.h>

__asm__(".text\n"
	/* a loop back to offset 2, inside the first 5 bytes */
	".globl loop_back\n.type loop_back,@function\n"
	"loop_back:\n"
	"xor %eax,%eax\n"      /* 31 c0 */
	"1: add $1,%eax\n"     /* +2: 83 c0 01 */
	"cmp $10,%eax\n"       /* +5 */
	"jne 1b\n"             /* +8 */
	"ret\n"
	".size loop_back,.-loop_back\n"
	/* a function another one branches into (victim+1) */
	".globl victim\n.type victim,@function\n"
	"victim:\n"
	"push %rbp\n"
	"mov %rsp,%rbp\n"      /* +1 */
	"mov $7,%eax\n"
	"pop %rbp\n"
	"ret\n"
	".size victim,.-victim\n"
	".globl intruder\n.type intruder,@function\n"
	"intruder:\n"
	"push %rbp\n"
	"nop\nnop\n"
	"jmp victim+1\n"           /* +3: eb rel8, ends at +5 */
	".size intruder,.-intruder\n"
	/* plain: push; mov; mov; add; ... */
	".globl plain\n.type plain,@function\n"
	"plain:\n"
	"push %rbp\n"
	"mov %rsp,%rbp\n"
	"mov %edi,%eax\n"
	"add $1,%eax\n"
	"pop %rbp\n"
	"ret\n"
	".size plain,.-plain\n"
	/* too short: 3 bytes */
	".globl short_fn\n.type short_fn,@function\n"
	"short_fn:\n"
	"xor %eax,%eax\n"
	"ret\n"
	".size short_fn,.-short_fn\n"
	/* a syscall in the first 5 bytes (getpid) */
	".globl sys_fn\n.type sys_fn,@function\n"
	"sys_fn:\n"
	"xor %eax,%eax\n"
	"mov $39,%al\n"
	"syscall\n"           /* +4 */
	"ret\n"
	".size sys_fn,.-sys_fn\n");

int loop_back(void);
int victim(void);
int intruder(void);
int plain(int);
int short_fn(void);
int sys_fn(void);

__attribute__((noinline)) int c0(int x) { return x * 3; }
__attribute__((noinline)) int c1(int x) { return x + 7; }
__attribute__((noinline)) int c2(int x) { return x ^ 0x55; }
__attribute__((noinline)) int c3(int x) { return x << 2; }
__attribute__((noinline)) int c4(int x) { return x - 9; }
__attribute__((noinline)) int c5(int x) { return x / 3; }
__attribute__((noinline)) int c6(int x) { return x % 5; }
__attribute__((noinline)) int c7(int x) { return ~x; }

/* A dense switch: gcc -O2 compiles it to a jump table (jmp *%rax). */
__attribute__((noinline)) int with_switch(int x)
{
	switch (x) {
	case 0: return c0(x) + 1;
	case 1: return c1(x) + 2;
	case 2: return c2(x) + 3;
	case 3: return c3(x) + 4;
	case 4: return c4(x) + 5;
	case 5: return c5(x) + 6;
	case 6: return c6(x) + 7;
	case 7: return c7(x) + 8;
	}
	return -1;
}

int main(int argc, char **argv)
{
	int x = argc > 1 ? atoi(argv[1]) : 3;
	printf("%d %d %d %d %d %d %d\n", loop_back(), victim(), intruder(), plain(x), short_fn(), with_switch(x), sys_fn() > 0);
	return 0;
}
