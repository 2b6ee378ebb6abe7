/* demo: the program "make demo" probes. It "serves requests" forever:
 * handle_request() is called a few hundred times a second with a growing
 * request id. The probe is put on the symbol handle_request; nothing here
 * knows about it. */
#include <stdio.h>
#include <time.h>

volatile unsigned long served;

__attribute__((noinline)) void handle_request(unsigned long id)
{
	served += id & 1;
}

int main(void)
{
	struct timespec pause = {0, 3 * 1000 * 1000}; /* 3 ms */
	for (unsigned long id = 0;; id++) {
		handle_request(id);
		nanosleep(&pause, NULL);
	}
}
