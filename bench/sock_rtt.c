/* sock_rtt: the floor under broker mode on this machine — one round trip
 * of a small message between two processes over a UNIX stream socket
 * (write, the other side wakes, reads and writes back, we wake and read),
 * with no work on either side. bench/broker.sh prints it beside its
 * figures: a signature through the broker costs at least one of these
 * more than in process.
 *
 *   sock_rtt [ROUND_TRIPS]     (default 100000)
 * Prints "round_trip_us=N". */
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
}

int
main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 100000;
	char buf[128] = {0};
	int sv[2];
	pid_t pid;
	double t0;

	if (n <= 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0)
		return 1;
	pid = fork();
	if (pid < 0)
		return 1;
	if (pid == 0) {
		ssize_t r;

		close(sv[0]);
		while ((r = read(sv[1], buf, sizeof(buf))) > 0)
			if (write(sv[1], buf, (size_t)r) != r)
				break;
		_exit(0);
	}
	close(sv[1]);
	t0 = now_us();
	for (long i = 0; i < n; i++)
		if (write(sv[0], buf, sizeof(buf)) != (ssize_t)sizeof(buf) ||
		    read(sv[0], buf, sizeof(buf)) <= 0)
			return 1;
	printf("round_trip_us=%.1f\n", (now_us() - t0) / (double)n);
	close(sv[0]);
	waitpid(pid, NULL, 0);
	return 0;
}
