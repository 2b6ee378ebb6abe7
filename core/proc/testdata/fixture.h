// fixture.h: what the C fixtures of core/proc's tests share. Static inline
// functions only (each fixture is one translation unit). A fixture
// includes it as "fixture.h", which gcc finds beside the source file, so
// every fixture still builds with its own flags and nothing more.
#ifndef UPROBEFS_FIXTURE_H
#define UPROBEFS_FIXTURE_H

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/types.h>
#include <sys/wait.h>

// await_go blocks until the test writes a line on stdin: a fixture waits
// there while the test attaches and registers its probes. It exits 3 if
// stdin closes first. Call it from the main process only (exit runs the
// atexit handlers and flushes stdio).
static inline void await_go(void) {
	char line[64];
	if (!fgets(line, sizeof line, stdin))
		exit(3);
}

// wait_exit waits for the child pid, retrying on EINTR, and returns its
// exit status, 128 + the signal that killed it, or -1 if waitpid fails
// otherwise.
static inline int wait_exit(pid_t pid) {
	int st;
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
}

#endif
