/* Logging to stderr, one line per call, control characters escaped. */
#include "log.h"
#include "output.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

int vi_log_level = VI_LOG_INFO;

void vi_log(int level, const char *fmt, ...)
{
	static const char *const prefix[] = {
		[VI_LOG_ERROR] = "vi: error: ",
		[VI_LOG_WARN] = "vi: warning: ",
		[VI_LOG_INFO] = "",
		[VI_LOG_DEBUG] = "vi: debug: ",
	};
	va_list ap;
	char line[2048], *text;

	if (level > vi_log_level || level < 0)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	text = vi_escape_controls(line);
	/* One write per line, so lines from several threads do not interleave. */
	fprintf(stderr, "%s%s\n", prefix[level], text);
	free(text);
}
