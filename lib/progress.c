/* Progress lines on a terminal. */
#include "progress.h"
#include "log.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define REDRAW_MS 100

void vi_progress_start(struct vi_progress *p, uint64_t total, const char *fmt, ...)
{
	va_list ap;

	memset(p, 0, sizeof(*p));
	va_start(ap, fmt);
	vsnprintf(p->what, sizeof(p->what), fmt, ap);
	va_end(ap);
	p->total = total;
	p->percent = -1;
	p->shown = vi_log_level >= VI_LOG_INFO && isatty(STDERR_FILENO);
	p->start = vi_now_ms();
}

static void draw(struct vi_progress *p)
{
	char a[32], b[32];

	p->last = vi_now_ms();
	fprintf(stderr, "\r\033[K[%5.1fs] %s", (p->last - p->start) / 1e3, p->what);
	if (p->total)
		fprintf(stderr, ": %3u%% (%s of %s)", (unsigned)(p->done * 100 / p->total),
			vi_format_size(p->done, a, sizeof(a)), vi_format_size(p->total, b, sizeof(b)));
	if (p->step[0])
		fprintf(stderr, ": %s", p->step);
	if (p->percent >= 0)
		fprintf(stderr, " %d%%", p->percent);
	else if (!p->total)
		fputs("...", stderr);
	fflush(stderr);
}

void vi_progress_update(struct vi_progress *p, uint64_t done)
{
	p->done = done;
	if (p->shown && (vi_ms_since(p->last) >= REDRAW_MS || done == p->total))
		draw(p);
}

void vi_progress_report(void *opaque, const char *step, int percent)
{
	struct vi_progress *p = opaque;

	if (step)
		snprintf(p->step, sizeof(p->step), "%s", step);
	p->percent = percent;
	if (p->shown && (step || percent == 100 || vi_ms_since(p->last) >= REDRAW_MS))
		draw(p);
}

void vi_progress_end(struct vi_progress *p)
{
	if (p->shown)
		fprintf(stderr, "\r\033[K");
	p->shown = false;
}
