/* jumplib: the shared library of TestJumpDlopen (jump_test.go). l_func is
 * jump.c's j_func; l_other(x) = 3x starts the same way (push, mov, a
 * 4-byte lea). Built twice: plain, l_func then l_other, and with -DSWAP,
 * l_other then l_func, each 16-byte aligned and shorter than 16 bytes: where
 * one build has l_func, the other, mapped at the same address, has l_other.
 */
#define L_FUNC                                                                 \
	".p2align 4\n.globl l_func\n.type l_func,@function\nl_func:\n"         \
	"  push %rbp\n  mov %rsp, %rbp\n  lea 1(%rdi), %rax\n"                 \
	"  xor $0x5a, %rax\n  pop %rbp\n  ret\n.size l_func, .-l_func\n"
#define L_OTHER                                                                \
	".p2align 4\n.globl l_other\n.type l_other,@function\nl_other:\n"      \
	"  push %rbp\n  mov %rsp, %rbp\n  lea (%rdi,%rdi,2), %rax\n"           \
	"  nop\n  nop\n  nop\n  nop\n  pop %rbp\n  ret\n.size l_other, .-l_other\n"
#ifdef SWAP
__asm__(".text\n" L_OTHER L_FUNC);
#else
__asm__(".text\n" L_FUNC L_OTHER);
#endif
