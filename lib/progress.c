/* Progress lines on a terminal. */
#include "progress.h"
#include "log.h"
#include "util.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

void vi_progress_start(struct vi_progress *p, const char *what, uint64_t total)
{
	memset(p, 0, sizeof(*p));
	snprintf(p->what, sizeof(p->what), "%s", what);
	p->total = total;
	p->shown = vi_log_level >= VI_LOG_INFO && isatty(STDERR_FILENO);
}

static void draw(struct vi_progress *p, const char *step)
{
	char a[32], b[32];

	if (p->total)
		fprintf(stderr, "\r\033[K%s: %3u%% (%s of %s)", p->what,
			(unsigned)(p->done * 100 / p->total), vi_format_size(p->done, a, sizeof(a)),
			vi_format_size(p->total, b, sizeof(b)));
	else
		fprintf(stderr, "\r\033[K%s%s%s", p->what, step ? ": " : "", step ? step : "");
	fflush(stderr);
	clock_gettime(CLOCK_MONOTONIC, &p->last);
}

void vi_progress_step(struct vi_progress *p, const char *step)
{
	if (p->shown)
		draw(p, step);
}

void vi_progress_update(struct vi_progress *p, uint64_t done)
{
	struct timespec now;

	p->done = done;
	if (!p->shown)
		return;
	clock_gettime(CLOCK_MONOTONIC, &now);
	int64_t ms = (now.tv_sec - p->last.tv_sec) * 1000 + (now.tv_nsec - p->last.tv_nsec) / 1000000;
	if (ms >= 100 || done == p->total)
		draw(p, NULL);
}

void vi_progress_end(struct vi_progress *p)
{
	if (p->shown)
		fprintf(stderr, "\r\033[K");
	p->shown = false;
}
