/* dl prints "start", dlopens argv[1], calls its answer() and prints the result. */
#include <dlfcn.h>
#include <stdio.h>

int main(int argc, char **argv)
{
	if (argc != 2)
		return 2;
	fputs("start\n", stdout);
	fflush(stdout);
	void *h = dlopen(argv[1], RTLD_NOW);
	if (!h) {
		fprintf(stderr, "dlopen: %s\n", dlerror());
		return 1;
	}
	int (*answer)(void) = (int (*)(void))dlsym(h, "answer");
	if (!answer) {
		fprintf(stderr, "dlsym: %s\n", dlerror());
		return 1;
	}
	printf("answer %d\n", answer());
	dlclose(h);
	return 0;
}
