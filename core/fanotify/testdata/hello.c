/* hello prints one line and exits: the output shows whether the exec ran. */
#include <stdio.h>

int main(void)
{
	fputs("hello\n", stdout);
	return 0;
}
