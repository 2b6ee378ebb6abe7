// exc: a C++ program whose exceptions unwind through the probed functions
// middle and thrower (issue 13: return probes across C++ exceptions).
// usage: exc N   (waits for a line on stdin): "exc N caught C sum S"
#include <cstdio>
#include <stdexcept>
#include <cstring>
#include <cstdlib>
__attribute__((noinline)) int thrower(int i) { if (i % 2) throw std::runtime_error("odd"); return i; }
__attribute__((noinline)) int middle(int i) { int r = thrower(i); return r + 1; }
int main(int argc, char **argv) {
	char line[8]; if (!fgets(line, sizeof line, stdin)) return 3;
	int n = atoi(argv[1]), caught = 0, sum = 0;
	for (int i = 0; i < n; i++) { try { sum += middle(i); } catch (const std::exception &) { caught++; } }
	printf("exc %d caught %d sum %d\n", n, caught, sum);
	return 0;
}
