/* Small helpers shared by every module: allocation that never returns NULL,
 * sizes, names, files. */
#ifndef VI_UTIL_H
#define VI_UTIL_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

/* Allocation: abort with a message when memory is exhausted. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);   /* xstrdup(NULL) returns NULL */
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
char *xvasprintf(const char *fmt, va_list ap) __attribute__((format(printf, 1, 0)));

/* "512M", "2G", "1048576", "1.5G": binary units (K, M, G, T, with optional
 * "iB"/"B"). Returns 0 or -VI_EUSAGE with a message naming `what`. */
int vi_parse_size(const char *s, const char *what, uint64_t *out);
/* The same within [min, max]. */
int vi_parse_size_in(const char *s, const char *what, uint64_t min, uint64_t max,
		     uint64_t *out);
/* Decimal unsigned integer in [min, max]; -VI_EUSAGE on anything else. */
int vi_parse_uint(const char *s, const char *what, uint64_t min, uint64_t max, uint64_t *out);
/* A time in seconds, fractions allowed ("2", "0.5"), from 0.1 to a day. */
int vi_parse_seconds(const char *s, const char *what, double *out);
/* "256M", "1.5G", "4096": the shortest exact-ish binary form; buf >= 32 bytes. */
const char *vi_format_size(uint64_t bytes, char *buf, size_t len);
/* A size for people to read, rounded: "45.2M", "512B". Returns buf. */
const char *vi_format_human(uint64_t bytes, char *buf, size_t len);
/* Appends a copy of s to the list *v of *n strings, unless it is there already. */
void vi_strv_add(char ***v, size_t *n, const char *s);

/* Optimal-string-alignment distance, for "did you mean". */
unsigned vi_edit_distance(const char *a, const char *b);
/* The candidate closest to `word` if it is close enough to suggest, else NULL. */
const char *vi_suggest(const char *word, const char *const *candidates, size_t n);

/* Names of VMs, templates and snapshots: [A-Za-z0-9][A-Za-z0-9._-]{0,62}.
 * Returns 0 or -VI_EUSAGE with a message naming `what`. */
int vi_check_name(const char *name, const char *what);

/* "A.B.C.0/24" into its first three parts; false for anything else. */
bool vi_parse_cidr24(const char *cidr, unsigned p[3]);

/* Files. All return 0 or a negative VI_E* code with a message. */
/* Creates path and its missing parents with mode (exactly: vi runs with
 * umask 077, so the mode is set explicitly where it must let others in). */
int vi_mkdir_p(const char *path, unsigned mode);
int vi_rm_rf(const char *path);
/* Whether process pid no longer exists (what it left may be cleared). */
bool vi_pid_gone(long pid);
/* For files named after the process that made them: true when the number
 * after the last '.' of name is a process that no longer exists. */
bool vi_pid_suffix_gone(const char *name);
/* Removes what commands that no longer run left in dir: each entry (file or
 * directory) whose name starts with prefix and ends in .PID of such a command.
 * Errors are ignored: a later command tries again. */
void vi_clear_dead(const char *dir, const char *prefix);

/* Guests' access to the store. Everything vi writes is private to root
 * (umask 077); directories on the way to disks are 0711. Golden images and
 * frozen layers are shared: read-only for the group the hypervisor runs
 * guests as (QEMU under libvirt: qemu.conf's group, libvirt-qemu by
 * default), writable by no one but root. A VM's own overlays stay private:
 * libvirt hands them to QEMU while the guest runs and back when it stops.
 * vi_guest_gid() is that group, or -1 where there is none. */
long vi_guest_gid(void);
/* Calls fn for path and, in a directory, for everything below it (each
 * directory before what it holds; symbolic links are not followed nor
 * passed), stopping at the first negative return. */
struct stat;
int vi_walk(const char *path, int (*fn)(const char *path, const struct stat *st, void *arg),
	    void *arg);
/* Makes the file at path root's, the guest group's to read, mode 0440 (0400
 * with no guest group); a directory tree gets it for every file and 0711
 * for every directory. */
int vi_share_ro(const char *path);
/* Reads a whole file; *buf is NUL-terminated and owned by the caller. */
int vi_read_file(const char *path, char **buf, size_t *len);
/* The same for a regular file of at most max bytes; anything else (a device,
 * a FIFO, a larger file) is -VI_EUSAGE, without reading past max. */
int vi_read_regular_file(const char *path, size_t max, char **buf, size_t *len);
/* Writes all of buf to fd through short writes, EINTR and, on a non-blocking
 * fd, EAGAIN (waiting for room). Returns 0, or -1 with errno set (EIO when
 * the fd takes nothing), recording nothing: callers name what they write. */
int vi_write_all(int fd, const void *buf, size_t len);
/* Makes what was written to the file at path durable (fsync). */
int vi_fsync_path(const char *path);
/* Write temp, fsync, rename over path, fsync the directory. */
int vi_write_file_atomic(const char *path, const void *data, size_t len, unsigned mode);
/* The same without the fsyncs: readers see the old file or the new one, but
 * a crash of the machine may lose both. For run-time files (a pid file),
 * which mean nothing after a reboot. */
int vi_write_file_replace(const char *path, const void *data, size_t len, unsigned mode);
/* From vi_sync_defer() on, vi_write_file_atomic() writes and renames at once and leaves
 * the syncs, of the file and of its directory, to vi_sync_flush(), which does them all:
 * for work whose files must all be in place before something quick happens, and on disk
 * only before the command returns. Readers see whole files either way; a crash of the
 * machine before the flush may lose the writes. */
void vi_sync_defer(void);
int vi_sync_flush(void);
bool vi_file_exists(const char *path);
/* Runs argv (searched on PATH) with standard input from /dev/null and
 * standard output and error into log (NULL: discarded). Returns its exit
 * status (128 + signal when killed), or a negative code when it cannot run
 * (-VI_ENOTFOUND: no such program). */
int vi_run(char *const argv[], const char *log);

/* Runs argv (searched on PATH) with stdin, stdout and stderr on the fds given
 * (-1: /dev/null) and SIGPIPE at its default, and waits: its exit status, or
 * 128 + the signal that ended it; VI_ENOTFOUND when there is no such program. */
int vi_run_fds(char *const argv[], int in_fd, int out_fd, int err_fd);

/* s quoted for a POSIX shell, in single quotes where needed; malloc'd. */
char *vi_shell_quote(const char *s);

/* Milliseconds on the monotonic clock, for measuring how long work takes. */
double vi_now_ms(void);
/* Milliseconds since `start`, a vi_now_ms() value. */
double vi_ms_since(double start);

/* The running binary's path, resolved once; never NULL. */
const char *vi_self_exe(void);
/* rel (such as "../lib/vi/plugins") joined to the binary's directory, and
 * resolved when it exists: where a build tree or an install, staged or not,
 * keeps vi's files. The caller frees it. */
char *vi_self_relative(const char *rel);
/* A random version-4 UUID in canonical form; buf >= 37 bytes. */
void vi_uuid_generate(char *buf);
/* Random hex digits; buf >= 2*nbytes + 1. */
void vi_random_hex(char *buf, size_t nbytes);

#endif
