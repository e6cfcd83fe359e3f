/* Times commands that boot or resume a guest, interleaved round by round (A B C, A B C,
 * ...) so that drift on the machine falls on every side alike. Per command, over REPEAT
 * rounds after WARMUP unmeasured rounds (1 unless told): the median, minimum and maximum
 * of the time from fork+exec to the first console byte, to the command's own exit, and
 * until the run ended; and the median peak RSS of its largest process.
 * The console is the command's stdout (a pipe); or, with --fifo PATH, a FIFO made there
 * before each run, for a VMM that opens its console log itself; or, with --file PATH, a
 * file the command makes anew (as `vi start` does with a VM's console log), whose first
 * byte is seen through inotify: the file is removed before each run, so that what a
 * running VM still writes into the old one does not count. measure is a child
 * subreaper: the processes a command detaches become its children. A run ends when the
 * command and all it detached have ended (the VMM that `vi start` detaches), so that
 * each run leaves its VM stopped for the next; with --leave, when the command has
 * exited (it must succeed) and the console had its first byte, leaving what it detached
 * running for a later run to stop (as `vi snapshot checkout` stops the VM before it);
 * with --kill, at the first console byte, when measure kills the command and all it
 * detached.
 * Usage: measure [--repeat N] [--warmup N] RUN... with RUN: --run NAME [--fifo PATH |
 * --file PATH] [--leave | --kill] COMMAND [ARG...] ';'. Prints one line per command: NAME,
 * then first, exit and end, each as "median min max" in ms, then the peak RSS in KiB. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define RUN_TIMEOUT_MS 30000
#define MAX_CHILDREN 256

struct pids {
	int n;
	pid_t pid[MAX_CHILDREN];
};

enum console { CONSOLE_STDOUT, CONSOLE_FIFO, CONSOLE_FILE };

/* What ends a run: every process gone, the command's exit (--leave), the first byte (--kill). */
enum until { UNTIL_GONE, UNTIL_EXIT, UNTIL_FIRST };

struct command {
	const char *name;
	enum console console;
	const char *path; /* the FIFO or file of the console */
	enum until until;
	char **argv;
	double *first, *exit, *gone, *rss; /* one per measured round */
};

/* One run's results, in ms from fork and KiB. */
struct sample {
	double first, exit, gone, rss;
};

static sigset_t chld_mask, old_mask;
static int chld_fd;

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

/* Sorts v and returns its median. */
static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void print_spread(double *v, int n)
{
	double m = median(v, n);

	printf(" %.2f %.2f %.2f", m, v[0], v[n - 1]);
}

/* measure's children now: the commands, and the processes they detached. */
static void children_now(struct pids *p)
{
	char path[64];
	FILE *f;
	int pid;

	p->n = 0;
	snprintf(path, sizeof(path), "/proc/self/task/%d/children", (int)getpid());
	f = fopen(path, "r");
	if (!f)
		return;
	while (p->n < MAX_CHILDREN && fscanf(f, "%d", &pid) == 1)
		p->pid[p->n++] = pid;
	fclose(f);
}

static bool pids_have(const struct pids *p, pid_t pid)
{
	for (int i = 0; i < p->n; i++)
		if (p->pid[i] == pid)
			return true;
	return false;
}

/* Whether all of a run's processes have ended: measure has no child but those that
 * earlier runs left running (with --leave). */
static bool run_gone(const struct pids *earlier)
{
	struct pids now;

	children_now(&now);
	for (int i = 0; i < now.n; i++)
		if (!pids_have(earlier, now.pid[i]))
			return false;
	return true;
}

/* Kills what is left of a run: the command and the processes it detached, which are
 * our children now, but not what earlier runs left running. */
static void kill_run(pid_t pid, bool exited, const struct pids *earlier)
{
	struct pids now;

	if (!exited)
		kill(pid, SIGKILL);
	children_now(&now);
	for (int i = 0; i < now.n; i++)
		if (!pids_have(earlier, now.pid[i]))
			kill(now.pid[i], SIGKILL);
}

/* The console's read side, set up before the clock starts: a pipe whose write side
 * goes in *out, a FIFO, or an inotify watch on the file's directory. */
static int console_open(const struct command *c, int *out)
{
	int fds[2], fd;
	char dir[PATH_MAX], *slash;

	*out = -1;
	switch (c->console) {
	case CONSOLE_STDOUT:
		if (pipe2(fds, O_CLOEXEC) < 0)
			return -1;
		*out = fds[1];
		return fds[0];
	case CONSOLE_FIFO:
		/* Non-blocking, so that the writer's open does not wait for us. */
		unlink(c->path);
		if (mkfifo(c->path, 0600) < 0)
			return -1;
		return open(c->path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	case CONSOLE_FILE:
		if (unlink(c->path) < 0 && errno != ENOENT)
			return -1;
		snprintf(dir, sizeof(dir), "%s", c->path);
		slash = strrchr(dir, '/');
		if (slash)
			*slash = '\0';
		fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
		if (fd >= 0 && inotify_add_watch(fd, slash ? dir : ".", IN_MODIFY) < 0) {
			close(fd);
			fd = -1;
		}
		return fd;
	}
	return -1;
}

/* Reads what the console has: 1 when the first byte is there, 0 when not yet, -1 when
 * nothing more can come this way (the writer closed its end). */
static int console_read(const struct command *c, int fd, short revents)
{
	char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
	const char *base = strrchr(c->path ? c->path : "", '/');
	struct stat st;
	ssize_t n;

	n = read(fd, buf, sizeof(buf));
	if (n < 0)
		return errno == EAGAIN || errno == EINTR ? 0 : -1;
	if (c->console != CONSOLE_FILE)
		return n > 0 ? 1 : revents & POLLHUP ? -1 : 0;
	base = base ? base + 1 : c->path;
	for (char *p = buf; p < buf + n;) {
		struct inotify_event *ev = (struct inotify_event *)p;

		/* A write to the console log: the first when the file is no longer empty. */
		if (ev->len && !strcmp(ev->name, base) && stat(c->path, &st) == 0 && st.st_size > 0)
			return 1;
		p += sizeof(*ev) + ev->len;
	}
	return 0;
}

/* One run of c: 0, or -1 when it failed, printed nothing or took too long. */
static int run_once(const struct command *c, struct sample *s)
{
	int in, out, status = 0;
	bool exited = false, ended = false, late = false, killed = false;
	struct pids earlier;
	double t0, deadline;
	pid_t pid;

	in = console_open(c, &out);
	if (in < 0) {
		fprintf(stderr, "measure: cannot watch the console of %s: %s\n", c->name,
			strerror(errno));
		return -1;
	}
	*s = (struct sample){ 0 };
	children_now(&earlier);
	t0 = now_ms();
	deadline = t0 + RUN_TIMEOUT_MS;
	pid = fork();
	if (pid == 0) {
		int null = open("/dev/null", O_RDWR);

		sigprocmask(SIG_SETMASK, &old_mask, NULL);
		dup2(out >= 0 ? out : null, STDOUT_FILENO);
		dup2(null, STDIN_FILENO);
		execvp(c->argv[0], c->argv);
		_exit(127);
	}
	if (out >= 0)
		close(out);
	if (pid < 0) {
		close(in);
		return -1;
	}
	while (!ended) {
		struct pollfd p[2] = { { .fd = chld_fd, .events = POLLIN },
				       { .fd = in, .events = POLLIN } };
		double left = deadline - now_ms();
		struct signalfd_siginfo si;
		struct rusage ru;
		int ws;
		pid_t w;

		if (left <= 0) {
			fprintf(stderr, "measure: %s did not end within %d s\n", c->name,
				RUN_TIMEOUT_MS / 1000);
			kill_run(pid, exited, &earlier);
			deadline = now_ms() + RUN_TIMEOUT_MS;
			late = true;
			continue;
		}
		if (poll(p, in >= 0 ? 2 : 1, (int)left + 1) < 0 && errno != EINTR)
			break;
		/* The console first: a byte and an exit seen together count the byte first. */
		if (in >= 0 && p[1].revents) {
			int r = console_read(c, in, p[1].revents);

			if (r > 0 && !s->first)
				s->first = now_ms() - t0;
			if (r < 0 || (r > 0 && (c->console == CONSOLE_FILE || c->until == UNTIL_FIRST))) {
				close(in);
				in = -1;
			}
		}
		if (s->first && c->until == UNTIL_FIRST && !killed) {
			kill_run(pid, exited, &earlier);
			killed = true;
		}
		if (p[0].revents) {
			while (read(chld_fd, &si, sizeof(si)) > 0)
				;
			while ((w = wait4(-1, &ws, WNOHANG, &ru)) > 0) {
				if ((double)ru.ru_maxrss > s->rss)
					s->rss = (double)ru.ru_maxrss;
				if (w == pid) {
					s->exit = now_ms() - t0;
					exited = true;
					status = ws;
				}
			}
		}
		if ((p[0].revents && exited && run_gone(&earlier)) ||
		    (c->until == UNTIL_EXIT && exited && s->first)) {
			s->gone = now_ms() - t0;
			ended = true;
		}
	}
	/* Whatever the last writer left that no poll has reported yet. */
	if (in >= 0 && !s->first && console_read(c, in, 0) > 0)
		s->first = now_ms() - t0;
	if (in >= 0)
		close(in);
	if (c->console == CONSOLE_FIFO)
		unlink(c->path);
	if (late || !ended)
		return -1;
	if (!exited || (!killed && !WIFEXITED(status))) {
		fprintf(stderr, "measure: %s was killed by a signal\n", c->name);
		return -1;
	}
	if (c->until == UNTIL_EXIT && WEXITSTATUS(status)) {
		fprintf(stderr, "measure: %s failed (exit status %d)\n", c->name,
			WEXITSTATUS(status));
		return -1;
	}
	if (!s->first) {
		fprintf(stderr, "measure: %s printed nothing on its console (exit status %d)\n",
			c->name, WEXITSTATUS(status));
		return -1;
	}
	return 0;
}

/* Parses RUN... into cmds; the number of commands, or -1. */
static int parse(int argc, char **argv, int *repeat, int *warmup, struct command *cmds)
{
	int n = 0;

	for (int i = 1; i < argc; i++) {
		struct command *c = &cmds[n];

		if (!strcmp(argv[i], "--repeat") && i + 1 < argc) {
			*repeat = atoi(argv[++i]);
			continue;
		}
		if (!strcmp(argv[i], "--warmup") && i + 1 < argc) {
			*warmup = atoi(argv[++i]);
			continue;
		}
		if (strcmp(argv[i], "--run") || i + 1 >= argc)
			return -1;
		*c = (struct command){ .name = argv[++i] };
		for (;;) {
			if (i + 2 < argc &&
			    (!strcmp(argv[i + 1], "--fifo") || !strcmp(argv[i + 1], "--file"))) {
				c->console = !strcmp(argv[i + 1], "--fifo") ? CONSOLE_FIFO : CONSOLE_FILE;
				c->path = argv[i + 2];
				i += 2;
			} else if (i + 1 < argc && !strcmp(argv[i + 1], "--leave")) {
				c->until = UNTIL_EXIT;
				i++;
			} else if (i + 1 < argc && !strcmp(argv[i + 1], "--kill")) {
				c->until = UNTIL_FIRST;
				i++;
			} else {
				break;
			}
		}
		c->argv = &argv[++i];
		while (i < argc && strcmp(argv[i], ";"))
			i++;
		if (c->argv == &argv[i])
			return -1;
		if (i < argc)
			argv[i] = NULL;
		n++;
	}
	return n;
}

int main(int argc, char **argv)
{
	struct command *cmds = calloc((size_t)argc, sizeof(*cmds));
	int repeat = 10, warmup = 1, n = parse(argc, argv, &repeat, &warmup, cmds);
	struct sample s;

	if (n < 1 || repeat < 1 || warmup < 0) {
		fprintf(stderr, "usage: measure [--repeat N] [--warmup N] --run NAME [--fifo PATH | "
				"--file PATH] [--leave | --kill] COMMAND [ARG...] ';' ...\n");
		return 2;
	}
	sigemptyset(&chld_mask);
	sigaddset(&chld_mask, SIGCHLD);
	sigprocmask(SIG_BLOCK, &chld_mask, &old_mask);
	chld_fd = signalfd(-1, &chld_mask, SFD_NONBLOCK | SFD_CLOEXEC);
	if (chld_fd < 0 || prctl(PR_SET_CHILD_SUBREAPER, 1) < 0) {
		perror("measure");
		return 1;
	}
	for (int i = 0; i < n; i++) {
		cmds[i].first = calloc((size_t)repeat, sizeof(double));
		cmds[i].exit = calloc((size_t)repeat, sizeof(double));
		cmds[i].gone = calloc((size_t)repeat, sizeof(double));
		cmds[i].rss = calloc((size_t)repeat, sizeof(double));
	}
	/* The rounds before 0 warm the page cache and are not counted. */
	for (int r = -warmup; r < repeat; r++) {
		for (int i = 0; i < n; i++) {
			struct command *c = &cmds[i];

			if (run_once(c, &s) < 0) {
				fprintf(stderr, "measure: %s failed in round %d\n", c->name, r + warmup);
				return 1;
			}
			if (r < 0)
				continue;
			c->first[r] = s.first;
			c->exit[r] = s.exit;
			c->gone[r] = s.gone;
			c->rss[r] = s.rss;
		}
	}
	for (int i = 0; i < n; i++) {
		printf("%s", cmds[i].name);
		print_spread(cmds[i].first, repeat);
		print_spread(cmds[i].exit, repeat);
		print_spread(cmds[i].gone, repeat);
		printf(" %.0f\n", median(cmds[i].rss, repeat));
	}
	return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
}
