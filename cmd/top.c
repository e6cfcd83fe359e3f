/* vi top: a live view of the VMs by load and of resource issues, in the manner of
 * top(1) and virt-top; with --batch, plain frames for scripts. */
#include "cmd.h"
#include "engine.h"
#include "error.h"
#include "metrics.h"
#include "output.h"
#include "util.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static const char *delay_arg;
static int batch;
static uint64_t iterations;

const struct vi_option top_options[] = {
	{ "delay", 'd', VI_OPT_STRING, &delay_arg, "S", "seconds between frames (2)",
	  VI_COMPLETE_NONE },
	{ "batch", 'b', VI_OPT_FLAG, &batch, NULL, "print plain frames to standard output" },
	{ "iterations", 'n', VI_OPT_UINT, &iterations, "N", "stop after N frames",
	  VI_COMPLETE_NONE, 1, 0 },
	OPT_CONNECT,
	VI_OPT_TABLE_END,
};

enum sort_key { SORT_CPU, SORT_MEMORY, SORT_NAME, SORT_DISK };
static const char *const sort_names[] = { "cpu", "memory", "name", "disk" };

/* What qsort's comparison reads. */
static const struct vi_metrics_view *sorting;
static enum sort_key sort_key;

static double sort_value(size_t i)
{
	const double *x = sorting->values[i];
	double v = sort_key == SORT_CPU	     ? x[VI_M_CPU_UTIL]
		   : sort_key == SORT_MEMORY ? x[VI_M_MEMORY]
					     : x[VI_M_DISK_RD_BYTES] + x[VI_M_DISK_WR_BYTES];
	return isnan(v) ? -1 : v;
}

/* Highest first, unknown last; names in order. */
static int compare(const void *pa, const void *pb)
{
	size_t a = *(const size_t *)pa, b = *(const size_t *)pb;
	const char *na = sorting->vms[a].def.name, *nb = sorting->vms[b].def.name;
	double va, vb;

	if (sort_key == SORT_NAME)
		return strcmp(na, nb);
	va = sort_value(a);
	vb = sort_value(b);
	return va > vb ? -1 : va < vb ? 1 : strcmp(na, nb);
}

/* The problems worth a look: a busy VM at its maximum, a crashed one, the host
 * short of memory. */
static void draw_issues(const struct vi_metrics_view *v)
{
	char a[32], b[32];
	unsigned n = 0;

	puts("RESOURCE ISSUES");
	for (size_t i = 0; i < v->n; i++) {
		const double *x = v->values[i];
		const char *name = v->vms[i].def.name;

		if (x[VI_M_STATE] == VI_HV_CRASHED && ++n)
			printf("  VM '%s' has crashed\n", name);
		if (x[VI_M_CPUS] >= x[VI_M_MAX_CPUS] && x[VI_M_CPU_UTIL] >= 90 && ++n)
			printf("  VM '%s' is busy (%s) at its maximum of %.0f vCPUs\n", name,
			       vi_metric_format(VI_M_CPU_UTIL, x[VI_M_CPU_UTIL], a, sizeof(a)),
			       x[VI_M_MAX_CPUS]);
		if (x[VI_M_MEMORY] >= x[VI_M_MAX_MEMORY] &&
		    x[VI_M_MEM_USED] >= 0.9 * x[VI_M_MEMORY] && ++n)
			printf("  VM '%s' uses %s of its maximum memory, %s\n", name,
			       vi_metric_format(VI_M_MEM_USED, x[VI_M_MEM_USED], a, sizeof(a)),
			       vi_metric_format(VI_M_MAX_MEMORY, x[VI_M_MAX_MEMORY], b, sizeof(b)));
	}
	if (v->host[VI_M_HOST_MEM_FREE] < 0.1 * v->host[VI_M_HOST_MEM_TOTAL] && ++n)
		printf("  the host is short of memory: %s free of %s\n",
		       vi_metric_format(VI_M_HOST_MEM_FREE, v->host[VI_M_HOST_MEM_FREE], a, sizeof(a)),
		       vi_metric_format(VI_M_HOST_MEM_TOTAL, v->host[VI_M_HOST_MEM_TOTAL], b,
					sizeof(b)));
	if (!n)
		puts("  none");
}

/* Each policy: enabled or not, the engine's latest decision on it where it came
 * nearest to acting, and its last action. */
static void draw_policies(void)
{
	static const char *const head[] = { "POLICY", "STATE", "NOW", "LAST ACTION" };
	struct vi_policy *p;
	bool *en;
	size_t n;
	long engine = vi_engine_running(&ctx.store);
	struct vi_table t;

	if (vi_policies_load(&ctx.store, &p, &en, &n) < 0) {
		printf("POLICIES\n  %s\n", vi_error_message());
		vi_error_clear();
		return;
	}
	if (engine > 0)
		printf("POLICIES (the engine runs, pid %ld)\n", engine);
	else
		printf("POLICIES (no engine runs)\n");
	if (!n) {
		puts("  none");
		vi_policies_free(p, en, n);
		return;
	}
	vi_table_init(&t, 4, head);
	for (size_t i = 0; i < n; i++) {
		struct vi_policy_last l;
		char now[400] = "-", last[520] = "-", when[16];

		if (vi_engine_last(&ctx.store, p[i].name, &l)) {
			if (l.decision[0])
				snprintf(now, sizeof(now), "%s %s: %s", l.decision, l.decided_vm,
					 l.why);
			if (l.time > 0) {
				time_t tt = (time_t)l.time;
				struct tm tm;
				strftime(when, sizeof(when), "%H:%M:%S", localtime_r(&tt, &tm));
				snprintf(last, sizeof(last), "%s %s %s: %s", when, l.vm, l.action,
					 l.result);
			}
		}
		const char *row[] = { p[i].name, en[i] ? "enabled" : "disabled", now, last };
		vi_table_add(&t, row);
	}
	vi_table_print(&t);
	vi_table_release(&t);
	vi_policies_free(p, en, n);
}

static void draw(const struct vi_metrics_view *v, size_t *order)
{
	char line[256], when[16];
	unsigned running = 0;
	struct vi_table t;
	struct tm tm;
	time_t now = time(NULL);

	for (size_t i = 0; i < v->n; i++) {
		order[i] = i;
		running += v->now[i].state == VI_HV_RUNNING;
	}
	sorting = v;
	qsort(order, v->n, sizeof(*order), compare);
	strftime(when, sizeof(when), "%H:%M:%S", localtime_r(&now, &tm));
	printf("vi top - %s, %zu VMs, %u running, sorted by %s\n", when, v->n, running,
	       sort_names[sort_key]);
	puts(vi_metrics_host_line(v->host, line, sizeof(line)));
	putchar('\n');
	if (v->n) {
		vi_metrics_table(v, order, &t);
		vi_table_print(&t);
		vi_table_release(&t);
	} else {
		puts("no VMs");
	}
	putchar('\n');
	draw_issues(v);
	putchar('\n');
	draw_policies();
}

static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
	stop_signal = sig;
}

static struct termios saved_tty;

static void tty_enter(void)
{
	struct termios raw = saved_tty;

	/* Keys come one at a time, unechoed; output keeps its \n -> \r\n. */
	raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
	raw.c_cc[VMIN] = 0;
	raw.c_cc[VTIME] = 0;
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &raw);
	/* The alternate screen, without a cursor. */
	fputs("\033[?1049h\033[?25l", stdout);
}

static void tty_leave(void)
{
	fputs("\033[?25h\033[?1049l", stdout);
	fflush(stdout);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &saved_tty);
}

/* Waits up to s seconds for a key (interactive) or a signal: the key, 0 for none. */
static int wait_key(double s)
{
	double until = vi_now_ms() + s * 1000;
	char c;

	for (;;) {
		double left = until - vi_now_ms();
		struct pollfd p = { .fd = STDIN_FILENO, .events = POLLIN };

		if (stop_signal || left <= 0)
			return 0;
		if (batch) {
			struct timespec ts = { .tv_sec = (time_t)(left / 1000),
					       .tv_nsec = (long)(fmod(left, 1000) * 1e6) };
			nanosleep(&ts, NULL);
			continue;
		}
		if (poll(&p, 1, (int)left + 1) > 0 && read(STDIN_FILENO, &c, 1) == 1)
			return (unsigned char)c;
	}
}

int cmd_top(int argc, char **argv)
{
	struct vi_metrics_view v;
	double delay = 2;
	size_t *order;
	int rc;
	(void)argc, (void)argv;

	if (ctx.json)
		return vi_error(VI_EUSAGE,
				"vi top has no --json: 'vi stats --json --watch S' gives the figures");
	if (delay_arg && (rc = vi_parse_seconds(delay_arg, "delay", &delay)) < 0)
		return rc;
	if (!batch && (!isatty(STDIN_FILENO) || !isatty(STDOUT_FILENO) ||
		       tcgetattr(STDIN_FILENO, &saved_tty) < 0))
		return vi_error(VI_EUSAGE, "vi top needs a terminal: use --batch");
	if ((rc = vi_metrics_view_open(&v, &ctx.store, &ctx.plugins, NULL, 0, ctx.connect)) < 0)
		return rc;
	order = xcalloc(v.n ? v.n : 1, sizeof(*order));
	struct sigaction sa = { .sa_handler = on_signal };
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (!batch)
		tty_enter();
	/* Rates need two samples: the first frame comes a second after the first. */
	vi_metrics_view_sample(&v);
	int key = wait_key(1);
	for (uint64_t frame = 1; !stop_signal && key != 'q'; frame++) {
		if (key == 0)
			vi_metrics_view_sample(&v);
		if (key == 'c' || key == 'm' || key == 'n' || key == 'd')
			sort_key = key == 'c' ? SORT_CPU : key == 'm' ? SORT_MEMORY
						: key == 'n' ? SORT_NAME : SORT_DISK;
		if (!batch)
			fputs("\033[H\033[J", stdout);
		else if (frame > 1)
			putchar('\n');
		draw(&v, order);
		if (!batch)
			printf("\nkeys: c cpu  m memory  n name  d disk  q quit");
		fflush(stdout);
		if ((iterations && frame >= iterations) || ferror(stdout))
			break;
		key = wait_key(delay);
	}
	if (!batch)
		tty_leave();
	signal(SIGINT, SIG_DFL);
	signal(SIGTERM, SIG_DFL);
	free(order);
	vi_metrics_view_release(&v);
	return 0;
}
