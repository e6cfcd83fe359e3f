/* What the unit tests that boot the test kernels of tests/guest share: their
 * paths, the console output they leave, the control socket, host TCP ports, and shell
 * commands.
 * Header-only, included once per test program. */
#ifndef VI_TEST_VMM_TEST_H
#define VI_TEST_VMM_TEST_H

#include <arpa/inet.h>
#include <errno.h>
#include <json-c/json.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "error.h"
#include "tap.h"
#include "util.h"
#include "vmm/control.h"
#include "vmm/vmm.h"

/* $VI_BUILD/tests/guest/NAME.bzImage (the caller frees it). */
static inline char *guest(const char *name)
{
	const char *build = getenv("VI_BUILD");

	return xasprintf("%s/tests/guest/%s.bzImage", build ? build : "build", name);
}

/* All of the file behind fd, NUL-terminated (the caller frees it). */
static inline char *read_fd(int fd)
{
	off_t len = lseek(fd, 0, SEEK_END);
	char *buf = xcalloc(1, (size_t)len + 1);

	if (pread(fd, buf, (size_t)len, 0) != len)
		buf[0] = '\0';
	return buf;
}

/* The highest N of the console's "WORD N" lines (WORD with its space, N followed by
 * suffix, "" for anything), 0 for none: how far a counting guest has got. */
static inline unsigned console_last(int console, const char *word, const char *suffix)
{
	char *out = read_fd(console), *p = out, *end;
	unsigned last = 0;

	while ((p = strstr(p, word))) {
		unsigned long n = strtoul(p += strlen(word), &end, 10);
		if (end > p && !strncmp(end, suffix, strlen(suffix)) && n > last)
			last = (unsigned)n;
	}
	free(out);
	return last;
}

/* Waits up to tries * 50 ms until console_last() reaches n. */
static inline bool console_wait(int console, const char *word, const char *suffix, unsigned n,
				unsigned tries)
{
	for (unsigned i = 0; i < tries; i++) {
		if (console_last(console, word, suffix) >= n)
			return true;
		usleep(50000);
	}
	return false;
}

/* The text of a file, "" when it cannot be read (the caller frees it). */
static inline char *slurp(const char *path)
{
	char *buf = NULL;

	if (vi_read_file(path, &buf, NULL) < 0)
		return xstrdup("");
	return buf;
}

/* Waits (up to 30 s) until the console log holds `text`. */
static inline bool wait_log(const char *log, const char *text)
{
	for (int i = 0; i < 600; i++) {
		char *got = slurp(log);
		bool found = strstr(got, text) != NULL;

		free(got);
		if (found)
			return true;
		usleep(50000);
	}
	return false;
}

/* Whether the counter kernel's output a then b shows "count 1" to "count n", each once
 * and in order: a guest saved while it printed a and restored to print b went on from
 * where it was. */
static inline bool counts_in_order(const char *a, const char *b, unsigned n)
{
	char *all = xasprintf("%s%s", a, b), *p = all;
	unsigned want = 1, got;
	bool good = true;

	while (good && (p = strstr(p, "count ")))
		good = sscanf(p += 6, "%u", &got) == 1 && got == want++;
	free(all);
	return good && want == n + 1;
}

/* Is `line` a whole line of output (ended by CR or LF)? */
static inline bool has_line(const char *output, const char *line)
{
	size_t n = strlen(line);

	for (const char *p = output; (p = strstr(p, line)); p += n)
		if ((p == output || p[-1] == '\n') && (p[n] == '\r' || p[n] == '\n'))
			return true;
	return false;
}

/* Makes the test's temporary directory from its template and looks for KVM: false,
 * with the reason said and nothing left behind, when the test cannot run. */
static inline bool vmm_test_ready(char *tmpdir)
{
	struct vmm_kvm_info info;

	if (!mkdtemp(tmpdir)) {
		ok(0, "cannot make a temporary directory: %s", strerror(errno));
		return false;
	}
	if (vmm_kvm_probe(&info) < 0) {
		skip("no usable KVM: %s", vi_error_message());
		rmdir(tmpdir);
		return false;
	}
	return true;
}

/* A VM booted from cfg, as vi starts one: 0, or the error with no VM left. */
static inline int boot_vm(const struct vmm_config *cfg, struct vmm **out)
{
	struct vmm *vm = NULL;
	int ret = vmm_new(cfg, &vm);

	if (ret == 0 && (ret = vmm_boot(vm)) < 0) {
		vmm_free(vm);
		vm = NULL;
	}
	*out = vm;
	return ret;
}

/* Members of a control reply: "" and -1 when absent. */
static inline const char *str_member(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_string(v) : "";
}

static inline int64_t int_member(struct json_object *o, const char *key)
{
	struct json_object *v;

	return json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : -1;
}

/* A connection to a control socket whose reads give up after a minute; -1 on failure. */
static inline int connect_to(const char *path)
{
	struct timeval tv = { .tv_sec = 60 };
	int fd = -1;

	if (vmm_control_connect(path, &fd) < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return fd;
}

/* A TCP socket bound to a free port of 127.0.0.1 (listening when `listening`). */
static inline int tcp_bound(bool listening, unsigned *port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) < 0 || (listening && listen(fd, 1) < 0))
		abort();
	*port = ntohs(a.sin_port);
	return fd;
}

static inline unsigned free_port(void)
{
	unsigned port;

	close(tcp_bound(false, &port));
	return port;
}

/* What a connection to 127.0.0.1:port reads in up to 30 s, up to a newline; NULL when
 * the connection is refused. */
static inline char *tcp_read_line(unsigned port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	char *buf = xcalloc(1, 256);
	size_t len = 0;

	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		free(buf);
		return NULL;
	}
	while (len < 255 && !strchr(buf, '\n')) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		ssize_t n;

		if (poll(&p, 1, 30000) <= 0 || (n = read(fd, buf + len, 255 - len)) <= 0)
			break;
		len += (size_t)n;
	}
	close(fd);
	return buf;
}

/* Whether something listens on 127.0.0.1:port. */
static inline bool port_in_use(unsigned port)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), one = 1;
	bool used;

	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	used = bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 && errno == EADDRINUSE;
	close(fd);
	return used;
}

/* system() on a formatted command line. */
static inline __attribute__((format(printf, 1, 2))) int sh(const char *fmt, ...)
{
	va_list ap;
	char *cmd;
	int ret;

	va_start(ap, fmt);
	if (vasprintf(&cmd, fmt, ap) < 0)
		abort();
	va_end(ap);
	ret = system(cmd);
	free(cmd);
	return ret;
}

#endif
