/* lib: the fixture shared library (-shared -fPIC). */
static int hidden_counter;

__attribute__((noinline)) static int helper(int x) { return x * 3 + hidden_counter++; }

int lib_add(int a, int b) { return helper(a) + b; }

long lib_sum(const long *p, int n)
{
	long s = 0;
	for (int i = 0; i < n; i++)
		s += p[i];
	return s;
}

__asm__(".text\n.globl lib_asm\n.type lib_asm,@function\nlib_asm:\npush %rbp\nmov %rsp,%rbp\npop %rbp\nret\n.size lib_asm, .-lib_asm\n");
