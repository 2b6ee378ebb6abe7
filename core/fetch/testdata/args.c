/* args: the fixture of TestKernelValues. main calls probed() once with
 * known integers, pointers and strings, prints the addresses it passed and
 * what probed returned, then waits for a byte on stdin (so that a test can
 * read its memory, which is the same as at the call: nothing is written
 * after it), and exits 0.
 *
 *   probed(a=42, s=hello, r=&first, bad=(char *)16, neg=-3) returns a - 47
 *   stdout: "HELLO FIRST RET\n" (decimal) */
#include <stdio.h>
#include <unistd.h>

struct rec {
	unsigned int id;      /* +0 */
	int neg;              /* +4 */
	const char *name;     /* +8 */
	struct rec *next;     /* +16 */
	unsigned char b[8];   /* +24 */
};

static struct rec second = {7, -7, "second", 0, {1, 2, 3, 4, 5, 6, 7, 8}};
static struct rec first = {42, -42, "first record", &second, {0xa5, 0x80, 0x7f, 0, 0, 0, 0, 0}};
const char hello[] = "hello, world";

__attribute__((noinline)) long probed(long a, const char *s, struct rec *r, const char *bad, long neg)
{
	__asm__ volatile("" : : "r"(s), "r"(r), "r"(bad), "r"(neg) : "memory");
	return a - 47;
}

int main(void)
{
	long v = probed(42, hello, &first, (const char *)16, -3);
	char c;

	printf("%lu %lu %ld\n", (unsigned long)hello, (unsigned long)&first, v);
	fflush(stdout);
	return read(0, &c, 1) < 0;
}
