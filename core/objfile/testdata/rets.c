/* rets: the return-instruction fixture of TestReturns (built -O0).
 *
 * rets(n): every near return encoding, and c3 bytes that are not returns:
 *   +0  endbr64                 f3 0f 1e fa
 *   +4  mov $0xc3c3c3c3,%eax    b8 c3 c3 c3 c3
 *   +9  test %edi,%edi          85 ff
 *   +11 je +1                   74 01
 *   +13 ret                     c3
 *   +14 cmp $1,%edi             83 ff 01
 *   +17 je +3                   74 03
 *   +19 ret $8                  c2 08 00
 *   +22 rep ret                 f3 c3
 *   +24 (end)
 * tail(): ends in a jmp to rets (a tail call): no return.
 * nosize: a function symbol without a size. */
__asm__(".text\n"
	".globl rets\n.type rets,@function\nrets:\n"
	"\tendbr64\n"
	"\tmov $0xc3c3c3c3, %eax\n"
	"\ttest %edi, %edi\n"
	"\tje 1f\n"
	"\tret\n"
	"1:\tcmp $1, %edi\n"
	"\tje 2f\n"
	"\tret $8\n"
	"2:\trep ret\n"
	".size rets, .-rets\n"
	".globl tail\n.type tail,@function\ntail:\n"
	"\tmov $0xc3, %edi\n"
	"\tjmp rets\n"
	".size tail, .-tail\n"
	".globl nosize\n.type nosize,@function\nnosize:\n"
	"\tret\n");

int rets(int);
void tail(void);

int main(int argc, char **argv)
{
	(void)argv;
	return argc > 5 ? rets(argc) : 0;
}
