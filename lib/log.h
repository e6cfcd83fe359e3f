/* Logging to stderr: "vi: warning: ...", info lines silenced by -q, debug
 * lines shown with -v. */
#ifndef VI_LOG_H
#define VI_LOG_H

#include <vi/hv-plugin.h>

extern int vi_log_level; /* the most verbose level shown; VI_LOG_INFO by default */

void vi_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define vi_warn(...) vi_log(VI_LOG_WARN, __VA_ARGS__)
#define vi_info(...) vi_log(VI_LOG_INFO, __VA_ARGS__)
#define vi_debug(...) vi_log(VI_LOG_DEBUG, __VA_ARGS__)

#endif
