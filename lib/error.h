/* Error recording: library code records one message and returns a negative
 * VI_E* code; only the dispatcher prints it and picks the exit code.
 * The message lives in thread-local storage until the next vi_error() on the
 * same thread. */
#ifndef VI_ERROR_H
#define VI_ERROR_H

#include <vi/hv-plugin.h>

/* Records "fmt" as the current error with `code` (a VI_E* value); returns -code. */
int vi_error(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Like vi_error(), appending ": strerror(errnum)". */
int vi_error_errno(int code, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Prefixes the current message with "fmt: ", keeping its code; returns -code. */
int vi_error_wrap(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

const char *vi_error_message(void); /* "" when none */
int vi_error_code(void);            /* VI_E* of the last error, VI_EFAIL if none */
void vi_error_clear(void);

/* Keeps the current error across clean-up that may record others:
 * vi_error_save(&e); ...; return vi_error_restore(&e); */
struct vi_error_saved {
	int code;
	char message[1024];
};
void vi_error_save(struct vi_error_saved *e);
int vi_error_restore(const struct vi_error_saved *e); /* returns -code */

#endif
