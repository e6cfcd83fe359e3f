/* Helpers for the image unit tests: a scratch directory, running qemu-img
 * and reading its verdicts, a seeded random generator, file comparison. */
#ifndef VI_IMAGE_TEST_H
#define VI_IMAGE_TEST_H

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "error.h"
#include "image/image.h"
#include "util.h"

static char test_dir[64];

static void test_dir_remove(void)
{
	if (test_dir[0])
		vi_rm_rf(test_dir);
}

/* A scratch directory removed at exit; returns its path. */
static inline const char *test_dir_make(void)
{
	snprintf(test_dir, sizeof(test_dir), "/tmp/vi-image-test-XXXXXX");
	if (!mkdtemp(test_dir)) {
		perror("mkdtemp");
		exit(1);
	}
	atexit(test_dir_remove);
	return test_dir;
}

/* "dir/name" in the scratch directory, in a static ring of buffers. */
static inline const char *tpath(const char *fmt, ...)
{
	static char ring[8][256];
	static unsigned next;
	char name[128];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(name, sizeof(name), fmt, ap);
	va_end(ap);
	char *out = ring[next++ % 8];
	snprintf(out, sizeof(ring[0]), "%s/%s", test_dir, name);
	return out;
}

/* Runs a shell command; its output goes to *out (caller frees) or is
 * dropped. Returns the exit status, or -1 when it did not exit. */
static inline int __attribute__((format(printf, 2, 3))) sh(char **out, const char *fmt, ...)
{
	char *cmd, *buf = NULL;
	size_t len = 0, cap = 0;
	va_list ap;
	FILE *p;

	va_start(ap, fmt);
	if (vasprintf(&cmd, fmt, ap) < 0)
		abort();
	va_end(ap);
	char *full = xasprintf("%s 2>&1", cmd);
	p = popen(full, "r");
	free(full);
	if (!p) {
		free(cmd);
		return -1;
	}
	for (;;) {
		if (len + 4096 + 1 > cap)
			buf = xrealloc(buf, cap = (cap + 4096) * 2);
		size_t n = fread(buf + len, 1, 4096, p);
		if (!n)
			break;
		len += n;
	}
	buf[len] = 0;
	int status = pclose(p);
	if (out)
		*out = buf;
	else
		free(buf);
	free(cmd);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Runs a command that must succeed; prints its output when it fails. */
static inline int __attribute__((format(printf, 1, 2))) must(const char *fmt, ...)
{
	char *cmd, *out;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&cmd, fmt, ap) < 0)
		abort();
	va_end(ap);
	int rc = sh(&out, "%s", cmd);
	if (rc != 0) {
		printf("# command failed (%d): %s\n", rc, cmd);
		for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n"))
			printf("#   %s\n", line);
	}
	free(out);
	free(cmd);
	return rc;
}

struct qemu_check {
	int status;     /* qemu-img check's exit status */
	long long leaks, corruptions, check_errors;
	long long allocated, image_end;
};

/* `qemu-img check --output=json`, parsed. */
static inline int qemu_check(const char *path, struct qemu_check *c)
{
	char *out;
	struct json_object *doc, *v;

	memset(c, 0, sizeof(*c));
	c->status = sh(&out, "qemu-img check --output=json -f qcow2 '%s'", path);
	const char *brace = strchr(out, '{');
	doc = brace ? json_tokener_parse(brace) : NULL;
	if (!doc) {
		printf("# qemu-img check said: %s\n", out);
		free(out);
		return -1;
	}
	if (json_object_object_get_ex(doc, "leaks", &v))
		c->leaks = json_object_get_int64(v);
	if (json_object_object_get_ex(doc, "corruptions", &v))
		c->corruptions = json_object_get_int64(v);
	if (json_object_object_get_ex(doc, "check-errors", &v))
		c->check_errors = json_object_get_int64(v);
	if (json_object_object_get_ex(doc, "allocated-clusters", &v))
		c->allocated = json_object_get_int64(v);
	if (json_object_object_get_ex(doc, "image-end-offset", &v))
		c->image_end = json_object_get_int64(v);
	json_object_put(doc);
	free(out);
	return 0;
}

/* True when qemu-img check finds neither errors nor leaks; says why not. */
static inline bool qemu_clean(const char *path)
{
	struct qemu_check c;
	if (qemu_check(path, &c) < 0)
		return false;
	if (c.status || c.leaks || c.corruptions || c.check_errors) {
		printf("# qemu-img check '%s': status %d, %lld leaks, %lld corruptions, %lld check "
		       "errors\n", path, c.status, c.leaks, c.corruptions, c.check_errors);
		char *out;
		sh(&out, "qemu-img check '%s' | head -20 | sed 's/^/# /'", path);
		fputs(out, stdout);
		free(out);
		return false;
	}
	return true;
}

/* xorshift64*: reproducible per seed. */
static inline uint64_t rnd_next(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545F4914F6CDD1Dull;
}

static inline uint64_t rnd(uint64_t *s, uint64_t n)
{
	return n ? rnd_next(s) % n : 0;
}

static inline void rnd_fill(uint64_t *s, void *buf, size_t len)
{
	unsigned char *p = buf;
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = rnd_next(s);
		memcpy(p + i, &v, len - i < 8 ? len - i : 8);
	}
}

/* Reads the whole image through the library and compares it with a raw
 * file; says where they first differ. */
static inline bool image_matches_file(struct image *img, const char *raw)
{
	int fd = open(raw, O_RDONLY);
	size_t chunk = 1 << 20;
	char *a = xmalloc(chunk), *b = xmalloc(chunk);
	uint64_t size = image_size(img);
	bool same = fd >= 0;
	struct stat st;

	if (same && (fstat(fd, &st) < 0 || (uint64_t)st.st_size != size)) {
		printf("# '%s' has %lld bytes, the image %llu\n", raw, (long long)st.st_size,
		       (unsigned long long)size);
		same = false;
	}
	for (uint64_t off = 0; same && off < size; off += chunk) {
		size_t n = size - off < chunk ? size - off : chunk;
		if (image_pread(img, a, n, off) < 0) {
			printf("# read failed: %s\n", vi_error_message());
			same = false;
		} else if (pread(fd, b, n, (off_t)off) != (ssize_t)n) {
			same = false;
		} else if (memcmp(a, b, n)) {
			size_t i = 0;
			while (a[i] == b[i])
				i++;
			printf("# first difference at offset %llu: image %02x, file %02x\n",
			       (unsigned long long)(off + i), (unsigned char)a[i], (unsigned char)b[i]);
			same = false;
		}
	}
	if (fd >= 0)
		close(fd);
	free(a);
	free(b);
	return same;
}

/* Opens path read-only and compares it with raw. */
static inline bool image_file_matches(const char *path, const char *raw)
{
	struct image *img;
	if (image_open(path, IMAGE_PROBE, 0, &img) < 0) {
		printf("# cannot open: %s\n", vi_error_message());
		return false;
	}
	bool same = image_matches_file(img, raw);
	image_close(img);
	return same;
}

#endif
