/* libvi's error recording and logging for code running inside a plugin:
 * everything goes to the host that loaded it. */
#include "host.h"
#include "../error.h"
#include "../log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct vi_host *host;

/* Read by code shared with the host (progress lines); the host filters. */
int vi_log_level = VI_LOG_DEBUG;

void vi_plugin_set_host(const struct vi_host *h)
{
	host = h;
}

static const struct vi_host *the_host(void)
{
	if (!host) {
		fprintf(stderr, "vi: plugin used before vi_plugin_set_host()\n");
		abort();
	}
	return host;
}

int vi_error(int code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return the_host()->error(code, "%s", msg);
}

int vi_error_errno(int code, int errnum, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return the_host()->error(code, "%s: %s", msg, strerror(errnum));
}

int vi_error_wrap(const char *fmt, ...)
{
	char prefix[512], old[1024];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	snprintf(old, sizeof(old), "%s", the_host()->error_message());
	return host->error(host->error_code(), "%s: %s", prefix, old);
}

const char *vi_error_message(void)
{
	return the_host()->error_message();
}

int vi_error_code(void)
{
	return the_host()->error_code();
}

void vi_error_clear(void)
{
	the_host()->error_clear();
}

void vi_log(int level, const char *fmt, ...)
{
	char line[2048];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	the_host()->log(level, "%s", line);
}
