/* Progress of long work (template builds, image conversion, migration,
 * snapshot saves) on a terminal: one line on stderr, redrawn at most ten
 * times a second. Nothing at all when stderr is not a terminal or with -q. */
#ifndef VI_PROGRESS_H
#define VI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

struct vi_progress {
	char what[64];
	uint64_t total;  /* 0 when unknown: only the step is shown */
	uint64_t done;
	bool shown;      /* drawing on a terminal */
	struct timespec last;
};

void vi_progress_start(struct vi_progress *p, const char *what, uint64_t total);
/* A new step's name (e.g. "installing packages"), drawn at once. */
void vi_progress_step(struct vi_progress *p, const char *step);
void vi_progress_update(struct vi_progress *p, uint64_t done);
/* Clears the line. */
void vi_progress_end(struct vi_progress *p);

#endif
