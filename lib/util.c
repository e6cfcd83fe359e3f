/* Small helpers shared by every module. */
#include "util.h"
#include "error.h"
#include "log.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static void *oom(size_t n)
{
	vi_log(VI_LOG_ERROR, "out of memory allocating %zu bytes", n);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	return p ? p : oom(n);
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	return p ? p : oom(n * size);
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	return q ? q : oom(n);
}

char *xstrdup(const char *s)
{
	if (!s)
		return NULL;
	char *d = strdup(s);
	return d ? d : oom(strlen(s) + 1);
}

char *xstrndup(const char *s, size_t n)
{
	char *d = strndup(s, n);
	return d ? d : oom(n + 1);
}

char *xvasprintf(const char *fmt, va_list ap)
{
	char *s;
	int n = vasprintf(&s, fmt, ap);

	return n < 0 ? oom(strlen(fmt)) : s;
}

char *xasprintf(const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	s = xvasprintf(fmt, ap);
	va_end(ap);
	return s;
}

int vi_parse_size(const char *s, const char *what, uint64_t *out)
{
	static const char units[] = "KMGTPE";
	char *end;
	long double v;

	if (!s || !*s || !(isdigit((unsigned char)*s) || *s == '.'))
		goto bad;
	errno = 0;
	v = strtold(s, &end);
	if (errno || v < 0)
		goto bad;
	if (*end) {
		const char *u = strchr(units, toupper((unsigned char)*end));
		if (!u)
			goto bad;
		for (int i = 0; i <= u - units; i++)
			v *= 1024;
		end++;
		if (*end == 'i' && end[1] == 'B')
			end += 2;
		else if (*end == 'B' || *end == 'b')
			end++;
		if (*end)
			goto bad;
	}
	if (v > (long double)UINT64_MAX || v != (long double)(uint64_t)v)
		goto bad;
	*out = (uint64_t)v;
	return 0;
bad:
	return vi_error(VI_EUSAGE, "invalid %s '%s': expected a size such as 512M or 2G", what,
			s ? s : "");
}

int vi_parse_size_in(const char *s, const char *what, uint64_t min, uint64_t max, uint64_t *out)
{
	char lo[32], hi[32];
	int rc = vi_parse_size(s, what, out);

	if (rc == 0 && (*out < min || *out > max))
		return vi_error(VI_EUSAGE, "invalid %s '%s': must be from %s to %s", what, s,
				vi_format_size(min, lo, sizeof(lo)),
				vi_format_size(max, hi, sizeof(hi)));
	return rc;
}

int vi_parse_uint(const char *s, const char *what, uint64_t min, uint64_t max, uint64_t *out)
{
	char *end;
	unsigned long long v;

	if (!s || !isdigit((unsigned char)*s))
		goto bad;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno || *end)
		goto bad;
	if (v < min || v > max)
		return vi_error(VI_EUSAGE, "invalid %s '%s': must be from %llu to %llu", what, s,
				(unsigned long long)min, (unsigned long long)max);
	*out = v;
	return 0;
bad:
	return vi_error(VI_EUSAGE, "invalid %s '%s': expected a whole number", what, s ? s : "");
}

int vi_parse_seconds(const char *s, const char *what, double *out)
{
	char *end;
	double v;

	if (!s || !(isdigit((unsigned char)*s) || *s == '.'))
		goto bad;
	errno = 0;
	v = strtod(s, &end);
	if (errno || *end)
		goto bad;
	if (v < 0.1 || v > 86400)
		return vi_error(VI_EUSAGE, "invalid %s '%s': must be from 0.1 to 86400 seconds",
				what, s);
	*out = v;
	return 0;
bad:
	return vi_error(VI_EUSAGE, "invalid %s '%s': expected seconds such as 2 or 0.5", what,
			s ? s : "");
}

const char *vi_format_size(uint64_t bytes, char *buf, size_t len)
{
	static const char units[] = "KMGTPE";
	int u = -1;
	uint64_t v = bytes;

	while (v >= 1024 && v % 1024 == 0 && u < 5) {
		v /= 1024;
		u++;
	}
	if (u < 0 && bytes >= 1024) {
		/* Not a whole number of KiB: show one decimal of the largest unit. */
		long double f = bytes;
		while (f >= 1024 && u < 5) {
			f /= 1024;
			u++;
		}
		snprintf(buf, len, "%.1Lf%c", f, units[u]);
		return buf;
	}
	if (u < 0)
		snprintf(buf, len, "%llu", (unsigned long long)v);
	else
		snprintf(buf, len, "%llu%c", (unsigned long long)v, units[u]);
	return buf;
}

const char *vi_format_human(uint64_t bytes, char *buf, size_t len)
{
	static const char units[] = "KMGTPE";
	double v = (double)bytes;
	int u = -1;

	while (v >= 1024 && u < 5) {
		v /= 1024;
		u++;
	}
	if (u < 0)
		snprintf(buf, len, "%lluB", (unsigned long long)bytes);
	else
		snprintf(buf, len, "%.1f%c", v, units[u]);
	return buf;
}

void vi_strv_add(char ***v, size_t *n, const char *s)
{
	for (size_t i = 0; i < *n; i++)
		if (!strcmp((*v)[i], s))
			return;
	*v = xrealloc(*v, (*n + 1) * sizeof(char *));
	(*v)[(*n)++] = xstrdup(s);
}

unsigned vi_edit_distance(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 64 || lb > 64)
		return UINT_MAX;
	unsigned d[65][65];

	for (size_t i = 0; i <= la; i++)
		d[i][0] = i;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++) {
		for (size_t j = 1; j <= lb; j++) {
			unsigned cost = a[i - 1] != b[j - 1];
			unsigned best = d[i - 1][j] + 1;
			if (d[i][j - 1] + 1 < best)
				best = d[i][j - 1] + 1;
			if (d[i - 1][j - 1] + cost < best)
				best = d[i - 1][j - 1] + cost;
			if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] &&
			    d[i - 2][j - 2] + 1 < best)
				best = d[i - 2][j - 2] + 1;
			d[i][j] = best;
		}
	}
	return d[la][lb];
}

const char *vi_suggest(const char *word, const char *const *candidates, size_t n)
{
	const char *best = NULL;
	unsigned best_d = UINT_MAX;
	size_t wl = strlen(word);

	for (size_t i = 0; i < n; i++) {
		unsigned d = vi_edit_distance(word, candidates[i]);
		/* A prefix of three or more letters counts as close. */
		if (wl >= 3 && !strncmp(word, candidates[i], wl))
			d = 1;
		if (d < best_d) {
			best_d = d;
			best = candidates[i];
		}
	}
	/* Allow one edit for short words, two for longer ones. */
	unsigned limit = wl <= 4 ? 1 : 2;
	return best_d <= limit ? best : NULL;
}

bool vi_parse_cidr24(const char *cidr, unsigned p[3])
{
	unsigned last, bits;
	char tail;

	return sscanf(cidr, "%u.%u.%u.%u/%u%c", &p[0], &p[1], &p[2], &last, &bits, &tail) == 5 &&
	       p[0] < 256 && p[1] < 256 && p[2] < 256 && last == 0 && bits == 24;
}

int vi_check_name(const char *name, const char *what)
{
	size_t n = strlen(name);

	if (n == 0)
		return vi_error(VI_EUSAGE, "invalid %s name '': it is empty", what);
	if (n > 63)
		return vi_error(VI_EUSAGE, "invalid %s name '%s': longer than 63 characters", what,
				name);
	if (!isalnum((unsigned char)name[0]))
		return vi_error(VI_EUSAGE,
				"invalid %s name '%s': it must start with a letter or digit", what,
				name);
	for (size_t i = 0; i < n; i++) {
		unsigned char c = name[i];
		if (!isalnum(c) && c != '.' && c != '_' && c != '-')
			return vi_error(VI_EUSAGE,
					"invalid %s name '%s': only letters, digits, '.', '_' and '-' are allowed",
					what, name);
	}
	return 0;
}

int vi_mkdir_p(const char *path, unsigned mode)
{
	struct stat st;

	/* Mostly it is there: one call, not one for each level. */
	if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
		return 0;
	char *p = xstrdup(path);
	int rc = 0;

	for (char *s = p + 1;; s++) {
		if (*s != '/' && *s)
			continue;
		char c = *s;
		*s = '\0';
		if (mkdir(p, mode) == 0) {
			if (chmod(p, mode) < 0) {
				rc = vi_error_errno(VI_EFAIL, errno, "cannot set the mode of '%s'", p);
				break;
			}
		} else if (errno != EEXIST) {
			rc = vi_error_errno(VI_EFAIL, errno, "cannot create directory '%s'", p);
			break;
		}
		*s = c;
		if (!c)
			break;
	}
	free(p);
	return rc;
}

int vi_rm_rf(const char *path)
{
	struct stat st;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : vi_error_errno(VI_EFAIL, errno, "cannot remove '%s'", path);
	if (S_ISDIR(st.st_mode)) {
		DIR *d = opendir(path);
		struct dirent *e;
		if (!d)
			return vi_error_errno(VI_EFAIL, errno, "cannot open directory '%s'", path);
		while ((e = readdir(d))) {
			if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
				continue;
			char *child = xasprintf("%s/%s", path, e->d_name);
			int rc = vi_rm_rf(child);
			free(child);
			if (rc < 0) {
				closedir(d);
				return rc;
			}
		}
		closedir(d);
		if (rmdir(path) < 0)
			return vi_error_errno(VI_EFAIL, errno, "cannot remove '%s'", path);
	} else if (unlink(path) < 0) {
		return vi_error_errno(VI_EFAIL, errno, "cannot remove '%s'", path);
	}
	return 0;
}

/* Reads fd to its end, at most max bytes (0: no limit). */
static int read_fd(int fd, const char *path, size_t max, char **buf, size_t *len)
{
	size_t cap = 4096, n = 0;
	char *b = xmalloc(cap);

	for (;;) {
		if (n + 1 >= cap)
			b = xrealloc(b, cap *= 2);
		ssize_t r = read(fd, b + n, cap - n - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			int e = errno;
			free(b);
			return vi_error_errno(VI_EFAIL, e, "cannot read '%s'", path);
		}
		if (r == 0)
			break;
		n += r;
		if (max && n > max) {
			char size[32];
			free(b);
			return vi_error(VI_EUSAGE, "cannot read '%s': larger than %s", path,
					vi_format_size(max, size, sizeof(size)));
		}
	}
	b[n] = '\0';
	*buf = b;
	if (len)
		*len = n;
	return 0;
}

static int open_file(const char *path, int flags)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC | flags);

	if (fd < 0)
		return vi_error_errno(errno == ENOENT ? VI_ENOTFOUND : VI_EFAIL, errno,
				      "cannot open '%s'", path);
	return fd;
}

int vi_read_file(const char *path, char **buf, size_t *len)
{
	int fd = open_file(path, 0), rc;

	if (fd < 0)
		return fd;
	rc = read_fd(fd, path, 0, buf, len);
	close(fd);
	return rc;
}

int vi_read_regular_file(const char *path, size_t max, char **buf, size_t *len)
{
	/* O_NONBLOCK: opening a FIFO must not wait for a writer. */
	int fd = open_file(path, O_NONBLOCK), rc;
	struct stat st;

	if (fd < 0)
		return fd;
	if (fstat(fd, &st) < 0)
		rc = vi_error_errno(VI_EFAIL, errno, "cannot read '%s'", path);
	else if (!S_ISREG(st.st_mode))
		rc = vi_error(VI_EUSAGE, "cannot read '%s': not a regular file", path);
	else
		rc = read_fd(fd, path, max, buf, len);
	close(fd);
	return rc;
}

double vi_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

double vi_ms_since(double start)
{
	return vi_now_ms() - start;
}

int vi_write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EAGAIN) {
			struct pollfd pfd = { .fd = fd, .events = POLLOUT };
			poll(&pfd, 1, -1);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (n == 0)
				errno = EIO;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int vi_fsync_path(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;

	if (fd < 0 || fsync(fd) < 0)
		rc = vi_error_errno(VI_EFAIL, errno, "cannot sync '%s'", path);
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Files (and the directories that name them) whose sync vi_sync_defer() put off. */
static bool sync_deferred;
static char **sync_pending;
static size_t nsync_pending;

void vi_sync_defer(void)
{
	sync_deferred = true;
}

static void sync_later(const char *path)
{
	for (size_t i = 0; i < nsync_pending; i++)
		if (!strcmp(sync_pending[i], path))
			return;
	sync_pending = xrealloc(sync_pending, (nsync_pending + 1) * sizeof(*sync_pending));
	sync_pending[nsync_pending++] = xstrdup(path);
}

int vi_sync_flush(void)
{
	int rc = 0;

	for (size_t i = 0; i < nsync_pending; i++) {
		int fd = open(sync_pending[i], O_RDONLY | O_CLOEXEC);
		/* A file replaced or removed since is not ours to sync any more. */
		if (fd < 0 && errno != ENOENT && rc == 0)
			rc = vi_error_errno(VI_EFAIL, errno, "cannot sync '%s'", sync_pending[i]);
		if (fd >= 0 && fsync(fd) < 0 && rc == 0)
			rc = vi_error_errno(VI_EFAIL, errno, "cannot sync '%s'", sync_pending[i]);
		if (fd >= 0)
			close(fd);
		free(sync_pending[i]);
	}
	free(sync_pending);
	sync_pending = NULL;
	nsync_pending = 0;
	sync_deferred = false;
	return rc;
}

static int write_file_atomic(const char *path, const void *data, size_t len, unsigned mode,
			     bool durable)
{
	bool later = durable && sync_deferred;
	char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
	char *dir = xstrdup(path);
	char *slash = strrchr(dir, '/');
	int fd, rc = 0;

	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot create '%s'", tmp);
		goto cleanup;
	}
	if (later)
		durable = false;
	if (vi_write_all(fd, data, len) < 0 || (durable && fsync(fd) < 0)) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot write '%s'", tmp);
		close(fd);
		unlink(tmp);
		goto cleanup;
	}
	close(fd);
	if (rename(tmp, path) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot rename '%s' to '%s'", tmp, path);
		unlink(tmp);
		goto cleanup;
	}
	if (later) {
		sync_later(path);
		if (slash) {
			*slash = '\0';
			sync_later(*dir ? dir : "/");
		}
	} else if (durable && slash) {
		*slash = '\0';
		int dfd = open(*dir ? dir : "/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
		if (dfd >= 0) {
			fsync(dfd);
			close(dfd);
		}
	}
cleanup:
	free(tmp);
	free(dir);
	return rc;
}

int vi_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode)
{
	return write_file_atomic(path, data, len, mode, true);
}

int vi_write_file_replace(const char *path, const void *data, size_t len, unsigned mode)
{
	return write_file_atomic(path, data, len, mode, false);
}

bool vi_file_exists(const char *path)
{
	return access(path, F_OK) == 0;
}

int vi_run(char *const argv[], const char *log)
{
	int fd = -1, rc;

	if (log && (fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot write '%s'", log);
	rc = vi_run_fds(argv, -1, fd, fd);
	if (fd >= 0)
		close(fd);
	return rc;
}

const char *vi_self_exe(void)
{
	static char path[PATH_MAX];

	if (!path[0]) {
		ssize_t n = readlink("/proc/self/exe", path, sizeof(path) - 1);
		if (n <= 0)
			strcpy(path, "vi");
		else
			path[n] = '\0';
	}
	return path;
}

char *vi_self_relative(const char *rel)
{
	const char *exe = vi_self_exe(), *slash = strrchr(exe, '/');
	char *joined = xasprintf("%.*s/%s", slash ? (int)(slash - exe) : 1, slash ? exe : ".", rel);
	char *real = realpath(joined, NULL); /* plain paths in messages, where it exists */

	if (!real)
		return joined;
	free(joined);
	return real;
}

static void random_bytes(unsigned char *buf, size_t n)
{
	while (n) {
		ssize_t r = getrandom(buf, n, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			vi_log(VI_LOG_ERROR, "cannot read random bytes: %s", strerror(errno));
			abort();
		}
		buf += r;
		n -= r;
	}
}

void vi_uuid_generate(char *buf)
{
	unsigned char u[16];

	random_bytes(u, sizeof(u));
	u[6] = (u[6] & 0x0f) | 0x40;
	u[8] = (u[8] & 0x3f) | 0x80;
	sprintf(buf,
		"%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
		u[13], u[14], u[15]);
}

void vi_random_hex(char *buf, size_t nbytes)
{
	unsigned char b[64];

	while (nbytes) {
		size_t n = nbytes < sizeof(b) ? nbytes : sizeof(b);
		random_bytes(b, n);
		for (size_t i = 0; i < n; i++)
			buf += sprintf(buf, "%02x", b[i]);
		nbytes -= n;
	}
	*buf = '\0';
}

/* qemu.conf's `group = "NAME"`, else libvirt's default for Debian. */
static char *guest_group_name(void)
{
	char *text = NULL, *name = NULL;
	size_t len;

	if (vi_read_file("/etc/libvirt/qemu.conf", &text, &len) == 0) {
		char *save = NULL;
		for (char *line = strtok_r(text, "\n", &save); line;
		     line = strtok_r(NULL, "\n", &save)) {
			char value[256];
			if (sscanf(line, " group = \"%255[^\"]\"", value) == 1) {
				free(name);
				name = xstrdup(value);
			}
		}
	}
	vi_error_clear();
	free(text);
	return name ? name : xstrdup("libvirt-qemu");
}

long vi_guest_gid(void)
{
	static long gid = -2;

	if (gid == -2) {
		char *name = guest_group_name();
		struct group *g = name[0] == '+' ? NULL : getgrnam(name);
		gid = g ? (long)g->gr_gid : name[0] == '+' ? strtol(name + 1, NULL, 10) : -1;
		free(name);
	}
	return gid;
}

int vi_walk(const char *path, int (*fn)(const char *path, const struct stat *st, void *arg),
	    void *arg)
{
	struct stat st;
	int rc;

	if (lstat(path, &st) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot read '%s'", path);
	if (S_ISLNK(st.st_mode))
		return 0;
	if ((rc = fn(path, &st, arg)) < 0 || !S_ISDIR(st.st_mode))
		return rc;
	DIR *d = opendir(path);
	struct dirent *e;
	if (!d)
		return vi_error_errno(VI_EFAIL, errno, "cannot read '%s'", path);
	while (rc == 0 && (e = readdir(d))) {
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char *sub = xasprintf("%s/%s", path, e->d_name);
		rc = vi_walk(sub, fn, arg);
		free(sub);
	}
	closedir(d);
	return rc;
}

static int share_one(const char *path, const struct stat *st, void *arg)
{
	(void)arg;
	long gid = vi_guest_gid();
	bool dir = S_ISDIR(st->st_mode);
	mode_t mode = dir ? 0711 : gid >= 0 ? 0440 : 0400;

	if ((st->st_uid != 0 || (gid >= 0 && st->st_gid != (gid_t)gid)) &&
	    lchown(path, 0, gid >= 0 ? (gid_t)gid : (gid_t)-1) < 0 && geteuid() == 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot give '%s' to root", path);
	if ((st->st_mode & 07777) != mode && chmod(path, mode) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot set the mode of '%s'", path);
	return 0;
}

int vi_share_ro(const char *path)
{
	return vi_walk(path, share_one, NULL);
}

bool vi_pid_gone(long pid)
{
	return pid > 0 && pid <= INT_MAX && kill((pid_t)pid, 0) < 0 && errno == ESRCH;
}

bool vi_pid_suffix_gone(const char *name)
{
	const char *dot = strrchr(name, '.');
	char *end;
	long pid;

	if (!dot || !dot[1])
		return false;
	pid = strtol(dot + 1, &end, 10);
	return !*end && vi_pid_gone(pid);
}

void vi_clear_dead(const char *dir, const char *prefix)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	while (d && (e = readdir(d))) {
		if (strncmp(e->d_name, prefix, strlen(prefix)) || !vi_pid_suffix_gone(e->d_name))
			continue;
		char *p = xasprintf("%s/%s", dir, e->d_name);
		vi_rm_rf(p);
		free(p);
	}
	if (d)
		closedir(d);
	vi_error_clear();
}

int vi_run_fds(char *const argv[], int in_fd, int out_fd, int err_fd)
{
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t pipe_default;
	int fds[3] = { in_fd, out_fd, err_fd }, status, err;
	pid_t pid;

	/* vi ignores SIGPIPE; the programs it runs expect the default. */
	sigemptyset(&pipe_default);
	sigaddset(&pipe_default, SIGPIPE);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setsigdefault(&attr, &pipe_default);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF);
	posix_spawn_file_actions_init(&fa);
	for (int i = 0; i < 3; i++) {
		if (fds[i] < 0)
			posix_spawn_file_actions_addopen(&fa, i, "/dev/null", i ? O_WRONLY : O_RDONLY, 0);
		else if (fds[i] != i)
			posix_spawn_file_actions_adddup2(&fa, fds[i], i);
	}
	err = posix_spawnp(&pid, argv[0], &fa, &attr, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&attr);
	if (err)
		return vi_error_errno(err == ENOENT ? VI_ENOTFOUND : VI_EFAIL, err,
				      "cannot run '%s'", argv[0]);
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return vi_error_errno(VI_EFAIL, errno, "cannot wait for '%s'", argv[0]);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

char *vi_shell_quote(const char *s)
{
	size_t n = 3;
	char *q, *p;

	if (*s && strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
			    "0123456789_-+=.,/:@%") == strlen(s))
		return xstrdup(s);
	for (const char *c = s; *c; c++)
		n += *c == '\'' ? 4 : 1;
	p = q = xmalloc(n);
	*p++ = '\'';
	for (; *s; s++) {
		if (*s == '\'') {
			memcpy(p, "'\\''", 4);
			p += 4;
		} else {
			*p++ = *s;
		}
	}
	*p++ = '\'';
	*p = 0;
	return q;
}
