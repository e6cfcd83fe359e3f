/* Runs a command REPEAT times and reports, as medians: the time from fork+exec to the
 * first byte on the console (its stdout, or the FIFO given with --fifo), the whole run
 * until it exits, and its peak RSS.
 * Usage: measure [--repeat N] [--fifo PATH] -- COMMAND [ARG...]
 * Prints one line: "first_ms total_ms maxrss_kib". */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

/* One run: 0, or -1 when the command failed or printed nothing. */
static int measure_once(char **cmd, const char *fifo, double *first, double *total,
			double *rss)
{
	int out[2] = { -1, -1 }, in, status = -1;
	struct rusage ru;
	char buf[4096];
	double t0, t1 = 0;
	pid_t pid;

	if (fifo) {
		unlink(fifo);
		if (mkfifo(fifo, 0600) < 0 || (in = open(fifo, O_RDONLY | O_NONBLOCK)) < 0)
			return -1;
	} else {
		if (pipe(out) < 0)
			return -1;
		in = out[0];
	}
	t0 = now_ms();
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		dup2(fifo ? null : out[1], STDOUT_FILENO);
		dup2(null, STDIN_FILENO);
		execvp(cmd[0], cmd);
		_exit(127);
	}
	if (out[1] >= 0)
		close(out[1]);
	for (bool reaped = false; !reaped;) {
		struct pollfd p = { .fd = in, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 100) == 0) {
			/* A FIFO shows no EOF before its first writer: watch the child too. */
			reaped = wait4(pid, &status, WNOHANG, &ru) == pid;
			continue;
		}
		n = read(in, buf, sizeof(buf));
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n > 0 && !t1)
			t1 = now_ms();
		if (n <= 0) {
			wait4(pid, &status, 0, &ru);
			reaped = true;
		}
	}
	*total = now_ms() - t0;
	close(in);
	if (fifo)
		unlink(fifo);
	*first = t1 - t0;
	*rss = (double)ru.ru_maxrss;
	return t1 && WIFEXITED(status) ? 0 : -1;
}

int main(int argc, char **argv)
{
	int repeat = 10, i = 1;
	const char *fifo = NULL;
	double *first, *total, *rss;

	for (; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "--repeat") && i + 1 < argc)
			repeat = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--fifo") && i + 1 < argc)
			fifo = argv[++i];
	}
	if (i + 1 >= argc || repeat < 1) {
		fprintf(stderr, "usage: measure [--repeat N] [--fifo PATH] -- COMMAND [ARG...]\n");
		return 2;
	}
	first = calloc((size_t)repeat, sizeof(double));
	total = calloc((size_t)repeat, sizeof(double));
	rss = calloc((size_t)repeat, sizeof(double));
	for (int r = 0; r < repeat; r++) {
		if (measure_once(argv + i + 1, fifo, &first[r], &total[r], &rss[r]) < 0) {
			fprintf(stderr, "measure: '%s' failed or printed nothing\n", argv[i + 1]);
			return 1;
		}
	}
	printf("%.2f %.2f %.0f\n", median(first, repeat), median(total, repeat),
	       median(rss, repeat));
	free(first);
	free(total);
	free(rss);
	return 0;
}
