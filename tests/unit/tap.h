/* A tiny TAP producer for C unit tests: ok(), is(), skip(), done().
 * Each test program prints "ok N - what" lines and a plan at the end; the
 * runner (tests/run) counts them. Header-only, included once per program. */
#ifndef VI_TAP_H
#define VI_TAP_H

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static int tap_n, tap_failed;

static inline int tap_result(int pass, const char *fmt, va_list ap)
{
	printf("%s %d - ", pass ? "ok" : "not ok", ++tap_n);
	vprintf(fmt, ap);
	putchar('\n');
	fflush(stdout);
	if (!pass)
		tap_failed++;
	return pass;
}

static inline __attribute__((format(printf, 2, 3))) int ok(int pass, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	tap_result(pass, fmt, ap);
	va_end(ap);
	return pass;
}

/* Compare strings; print both on failure. */
#define is_str(got, want, ...)                                                                 \
	do {                                                                                   \
		const char *g_ = (got), *w_ = (want);                                          \
		if (!ok(g_ && w_ ? !strcmp(g_, w_) : g_ == w_, __VA_ARGS__))                   \
			printf("#   got:  '%s'\n#   want: '%s'\n", g_ ? g_ : "(null)",         \
			       w_ ? w_ : "(null)");                                            \
	} while (0)

/* Compare integers; print both on failure. */
#define is_int(got, want, ...)                                                                 \
	do {                                                                                   \
		long long g_ = (long long)(got), w_ = (long long)(want);                       \
		if (!ok(g_ == w_, __VA_ARGS__))                                                \
			printf("#   got:  %lld\n#   want: %lld\n", g_, w_);                        \
	} while (0)

static inline __attribute__((format(printf, 1, 2))) void skip(const char *fmt, ...)
{
	va_list ap;
	printf("ok %d # skip ", ++tap_n);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static inline int done(void)
{
	printf("1..%d\n", tap_n);
	return tap_failed ? 1 : 0;
}

#endif
