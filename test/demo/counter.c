/* counter: the demo program. Prints 0, 1, 2, ... on standard output, one
 * number every 200 ms, until SIGTERM or SIGINT. Its count lives only in its
 * memory, so after a restore it goes on only if amber brought that back. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;

static void on_signal(int sig) { stop = sig; }

int main(void)
{
	struct sigaction sa = { .sa_handler = on_signal };
	struct timespec tick = { 0, 200 * 1000 * 1000 };
	unsigned long n = 0;

	/* Keep only stdin, stdout and stderr: descriptors the shell leaked to
	 * us are none of the demo's business (and would be dumped too). */
	close_range(3, ~0U, 0);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	while (!stop) {
		char line[32];
		int len = snprintf(line, sizeof(line), "%lu\n", n);

		if (write(STDOUT_FILENO, line, len) != len)
			return 1;
		n++;
		nanosleep(&tick, NULL);
	}
	dprintf(STDOUT_FILENO, "counter: stopped by signal %d after %lu\n", (int)stop, n);
	return 0;
}
