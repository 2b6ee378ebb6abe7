// relay: runs a fixture as its child so that the fixture is not a child of
// the test process (a tracer must not trace its own children: their exit
// status would be stolen from os/exec). Once the fixture has exec'd, it
// writes the fixture's pid on a line to fd 3, then closes fd 3; it waits
// for the fixture and exits with its status: the exit code, or 128+signal.
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: relay prog [args]\n");
		return 2;
	}
	int ep[2];
	if (pipe2(ep, O_CLOEXEC) < 0) {
		perror("pipe2");
		return 2;
	}
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		return 2;
	}
	if (pid == 0) {
		close(ep[0]);
		close(3);
		execv(argv[1], argv + 1);
		perror("execv");
		char c = 1;
		write(ep[1], &c, 1);
		_exit(127);
	}
	close(ep[1]);
	char c;
	ssize_t r;
	while ((r = read(ep[0], &c, 1)) < 0) {
	}
	// r == 0: the exec closed the pipe; the fixture runs its program.
	dprintf(3, "%d\n", r == 0 ? (int)pid : -1);
	close(3);
	int st;
	while (waitpid(pid, &st, 0) < 0) {
	}
	if (WIFEXITED(st))
		return WEXITSTATUS(st);
	if (WIFSIGNALED(st))
		return 128 + WTERMSIG(st);
	return 2;
}
