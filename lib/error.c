/* Error recording: one thread-local message and code per thread. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char message[1024];
static _Thread_local int last_code;

static int record(int code, int errnum, const char *fmt, va_list ap)
{
	int n = vsnprintf(message, sizeof(message), fmt, ap);
	if (errnum && n >= 0 && (size_t)n < sizeof(message))
		snprintf(message + n, sizeof(message) - n, ": %s", strerror(errnum));
	last_code = code > 0 ? code : VI_EFAIL;
	return -last_code;
}

int vi_error(int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = record(code, 0, fmt, ap);
	va_end(ap);
	return rc;
}

int vi_error_errno(int code, int errnum, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int rc = record(code, errnum, fmt, ap);
	va_end(ap);
	return rc;
}

int vi_error_wrap(const char *fmt, ...)
{
	char old[sizeof(message)], prefix[512];
	va_list ap;

	memcpy(old, message, sizeof(old));
	va_start(ap, fmt);
	vsnprintf(prefix, sizeof(prefix), fmt, ap);
	va_end(ap);
	/* Long messages are cut, never overflowed. */
	if (snprintf(message, sizeof(message), "%s: %s", prefix, old) >= (int)sizeof(message))
		message[sizeof(message) - 1] = '\0';
	if (!last_code)
		last_code = VI_EFAIL;
	return -last_code;
}

const char *vi_error_message(void)
{
	return message;
}

int vi_error_code(void)
{
	return last_code ? last_code : VI_EFAIL;
}

void vi_error_clear(void)
{
	message[0] = '\0';
	last_code = 0;
}

void vi_error_save(struct vi_error_saved *e)
{
	e->code = vi_error_code();
	memcpy(e->message, message, sizeof(e->message));
}

int vi_error_restore(const struct vi_error_saved *e)
{
	memcpy(message, e->message, sizeof(message));
	last_code = e->code;
	return -last_code;
}
