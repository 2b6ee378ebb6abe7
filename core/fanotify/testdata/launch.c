/*
 * launch waits for one byte on stdin, then execs argv[1] with argv[1..].
 * The tests start it (unheld) and then trigger the exec of a marked file:
 * the held process is not a vfork child of the test process, which would
 * pin one of the test's Go Ps while held.
 */
#include <stdio.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char c;

	if (argc < 2)
		return 2;
	if (read(0, &c, 1) != 1)
		return 3;
	execv(argv[1], argv + 1);
	perror("execv");
	return 127;
}
