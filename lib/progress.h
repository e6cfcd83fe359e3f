/* Progress of long work (template builds, image conversion, export and
 * import, migration, snapshot saves) on a terminal: one line on stderr with
 * the time spent so far, redrawn at most ten times a second. Nothing at all
 * when stderr is not a terminal or with -q. */
#ifndef VI_PROGRESS_H
#define VI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

struct vi_progress {
	char what[256];  /* "converting", "writing FILE" */
	char step[128];  /* the current step of it ("installing packages"), or "" */
	uint64_t total;  /* bytes to do; 0 when unknown */
	uint64_t done;
	int percent;     /* of the step, -1 when unknown */
	bool shown;      /* drawing on a terminal */
	double start;    /* vi_now_ms() at the start */
	double last;     /* ... at the last drawing */
};

/* Starts showing what the formatted text says is being done, out of `total`
 * bytes (0 when not counted in bytes). */
void vi_progress_start(struct vi_progress *p, uint64_t total, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Bytes done out of p->total. */
void vi_progress_update(struct vi_progress *p, uint64_t done);
/* For work that reports a step (NULL: still the same) and how far it is
 * (percent, -1 when unknown), as template builds, exports and imports do
 * (template_progress_fn): opaque is the struct vi_progress. */
void vi_progress_report(void *opaque, const char *step, int percent);
/* Clears the line. */
void vi_progress_end(struct vi_progress *p);

#endif
