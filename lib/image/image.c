/* The generic image layer: probing, backing chains, range checks, creation,
 * information, checking and conversion on top of the raw and qcow2 drivers. */
#include "driver.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "util.h"

static const struct image_driver *const drivers[] = {
	[IMAGE_RAW] = &image_raw_driver,
	[IMAGE_QCOW2] = &image_qcow2_driver,
};

static const char *const format_names[] = {
	[IMAGE_RAW] = "raw",
	[IMAGE_QCOW2] = "qcow2",
};

const char *image_format_name(int format)
{
	if (format >= 0 && (size_t)format < ARRAY_SIZE(format_names))
		return format_names[format];
	return "probe";
}

int image_format_parse(const char *name, int *format)
{
	for (size_t i = 0; i < ARRAY_SIZE(format_names); i++) {
		if (!strcmp(name, format_names[i])) {
			*format = (int)i;
			return 0;
		}
	}
	return vi_error(VI_EUSAGE, "unknown image format '%s' (raw, qcow2)", name);
}

ssize_t image_file_read(const struct image *img, void *buf, size_t len, uint64_t offset)
{
	size_t done = 0;

	while (done < len) {
		ssize_t n = pread(img->fd, (char *)buf + done, len - done, (off_t)(offset + done));
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return vi_error_errno(VI_EFAIL, errno, "cannot read '%s'", img->path);
		if (n == 0)
			break;
		done += (size_t)n;
	}
	return (ssize_t)done;
}

void image_watch_writes(struct image *img, void (*written)(void *opaque, uint64_t offset,
							   uint64_t len),
			void *opaque)
{
	img->written_opaque = opaque;
	img->written = written;
}

void image_file_changed(const struct image *img, uint64_t offset, uint64_t len)
{
	if (img->written && len)
		img->written(img->written_opaque, offset, len);
}

int image_file_writev(const struct image *img, struct iovec *iov, int iovcnt, uint64_t offset)
{
	uint64_t start = offset;

	while (iovcnt > 0) {
		ssize_t n = pwritev(img->fd, iov, iovcnt, (off_t)offset);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			image_file_changed(img, start, offset - start);
			return vi_error_errno(VI_EFAIL, n < 0 ? errno : EIO, "cannot write '%s'",
					      img->path);
		}
		offset += (uint64_t)n;
		while (iovcnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			iovcnt--;
		}
		if (iovcnt > 0) {
			iov->iov_base = (char *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
	image_file_changed(img, start, offset - start);
	return 0;
}

int image_file_write(const struct image *img, const void *buf, size_t len, uint64_t offset)
{
	struct iovec iov = {(void *)buf, len};
	return image_file_writev(img, &iov, 1, offset);
}

int image_file_sync(const struct image *img)
{
	if (fdatasync(img->fd) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot flush '%s'", img->path);
	return 0;
}

static int probe(int fd, const char *path, int *format)
{
	unsigned char head[IMAGE_PROBE_BYTES];
	ssize_t n;

	do
		n = pread(fd, head, sizeof(head), 0);
	while (n < 0 && errno == EINTR);
	if (n < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot read '%s'", path);
	*format = IMAGE_RAW;
	for (size_t i = 0; i < ARRAY_SIZE(drivers); i++)
		if (drivers[i]->probe && drivers[i]->probe(head, (size_t)n))
			*format = (int)i;
	return 0;
}

/* Opens path (O_RDONLY or O_RDWR) if it is a regular file or a block device:
 * a FIFO would block the open, or the first read, for ever. Returns the fd. */
static int open_file(const char *path, int mode)
{
	struct stat st;
	int fd = open(path, mode | O_NONBLOCK | O_CLOEXEC), rc;

	if (fd < 0)
		return vi_error_errno(errno == ENOENT ? VI_ENOTFOUND : VI_EFAIL, errno,
				      "cannot open '%s'", path);
	if (fstat(fd, &st) < 0 || fcntl(fd, F_SETFL, 0) < 0)
		rc = vi_error_errno(VI_EFAIL, errno, "cannot open '%s'", path);
	else if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		rc = vi_error(VI_EUSAGE, "cannot open '%s': it is not a regular file or block "
			      "device", path);
	else
		return fd;
	close(fd);
	return rc;
}

int image_probe(const char *path, int *format)
{
	int fd = open_file(path, O_RDONLY), rc;

	if (fd < 0)
		return fd;
	rc = probe(fd, path, format);
	close(fd);
	return rc;
}

/* qemu's image locks, so that neither it nor we open an image another
 * process writes: byte 100 + p is locked (shared) by a user holding
 * permission p, byte 200 + p by a user that lets no one else have it.
 * Permissions: 0 read, 1 write, 2 write without changes, 3 resize. Writers
 * hold all four and share neither write nor resize; readers hold read and
 * share neither either. */
#define LOCK_PERM 100
#define LOCK_UNSHARED 200

static bool byte_locked(int fd, off_t at)
{
	struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = at, .l_len = 1};
	return fcntl(fd, F_OFD_GETLK, &fl) == 0 && fl.l_type != F_UNLCK;
}

static int lock_image(int fd, const char *path, bool writable)
{
	static const unsigned writer[] = {0, 1, 2, 3}, reader[] = {0}, unshared[] = {1, 3};
	const unsigned *perms = writable ? writer : reader;
	size_t nperms = writable ? ARRAY_SIZE(writer) : ARRAY_SIZE(reader);
	bool busy = false;

	for (size_t i = 0; i < nperms; i++)
		busy |= byte_locked(fd, LOCK_UNSHARED + perms[i]);
	for (size_t i = 0; i < ARRAY_SIZE(unshared); i++)
		busy |= byte_locked(fd, LOCK_PERM + unshared[i]);
	if (busy && writable)
		return vi_error(VI_ESTATE, "cannot open '%s' for writing: another process is using "
				"it", path);
	if (busy)
		return vi_error(VI_ESTATE, "cannot open '%s': another process is writing to it",
				path);
	for (size_t i = 0; i < nperms + ARRAY_SIZE(unshared); i++) {
		off_t at = i < nperms ? LOCK_PERM + perms[i] : LOCK_UNSHARED + unshared[i - nperms];
		struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = at,
				   .l_len = 1};
		/* File systems without locks: nothing to coordinate with. */
		if (fcntl(fd, F_OFD_SETLK, &fl) < 0 && errno != ENOLCK && errno != EOPNOTSUPP &&
		    errno != EINVAL)
			return vi_error(VI_ESTATE, "cannot open '%s': another process is using it",
					path);
	}
	return 0;
}

static void image_free(struct image *img)
{
	if (img->drv)
		img->drv->close(img);
	if (img->fd >= 0)
		close(img->fd);
	free(img->path);
	free(img->backing_file);
	free(img);
}

/* Opens one layer, without its backing chain. */
static int open_layer(const char *path, int format, bool writable, unsigned flags,
		      struct image **out)
{
	struct image *img;
	int fd, rc;

	*out = NULL;
	if (format != IMAGE_PROBE && (format < 0 || (size_t)format >= ARRAY_SIZE(drivers)))
		return vi_error(VI_EUSAGE, "cannot open '%s': unknown format %d", path, format);
	if ((fd = open_file(path, writable ? O_RDWR : O_RDONLY)) < 0)
		return fd;
	if ((!(flags & IMAGE_OPEN_SHARED) && (rc = lock_image(fd, path, writable)) < 0) ||
	    (format == IMAGE_PROBE && (rc = probe(fd, path, &format)) < 0)) {
		close(fd);
		return rc;
	}
	img = xcalloc(1, sizeof(*img));
	img->path = xstrdup(path);
	img->fd = fd;
	img->format = format;
	img->writable = writable;
	img->backing_format = IMAGE_PROBE;
	img->drv = drivers[format];
	rc = img->drv->open(img, flags);
	if (rc < 0) {
		image_free(img);
		return rc;
	}
	*out = img;
	return 0;
}

/* A backing name as recorded in the image at `path`, as a path to open. */
static int resolve_backing(const char *path, const char *name, char **out)
{
	const char *slash = strrchr(path, '/');

	*out = NULL;
	if (!strncmp(name, "json:", 5) || strstr(name, "://"))
		return vi_error(VI_EUNSUPPORTED, "'%s' has a backing file '%s' that is not a local "
				"file, which is not supported", path, name);
	if (name[0] == '/' || !slash)
		*out = xstrdup(name);
	else
		*out = xasprintf("%.*s/%s", (int)(slash - path), path, name);
	return 0;
}

int image_open(const char *path, int format, unsigned flags, struct image **out)
{
	struct image *top, *cur;
	struct stat chain[IMAGE_MAX_CHAIN];
	size_t depth = 1;
	int rc;

	*out = NULL;
	if ((flags & IMAGE_OPEN_SHARED) && (flags & IMAGE_OPEN_WRITE))
		return vi_error(VI_EUSAGE, "cannot open '%s' for writing without locking it", path);
	rc = open_layer(path, format, flags & IMAGE_OPEN_WRITE, flags, &top);
	if (rc < 0)
		return rc;
	if (fstat(top->fd, &chain[0]) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot open '%s'", path);
		goto fail;
	}
	for (cur = top; !(flags & IMAGE_OPEN_NO_BACKING) && cur->backing_file; cur = cur->backing) {
		struct image *b;
		char *name;
		struct stat st;

		if (depth == IMAGE_MAX_CHAIN) {
			rc = vi_error(VI_EUNSUPPORTED, "cannot open '%s': its backing chain is deeper "
				      "than %d images", path, IMAGE_MAX_CHAIN);
			goto fail;
		}
		if ((rc = resolve_backing(cur->path, cur->backing_file, &name)) < 0)
			goto fail;
		rc = open_layer(name, cur->backing_format, false, flags & IMAGE_OPEN_SHARED, &b);
		if (rc < 0) {
			vi_error_wrap("cannot open the backing file of '%s'", cur->path);
			free(name);
			goto fail;
		}
		if (fstat(b->fd, &st) < 0)
			rc = vi_error_errno(VI_EFAIL, errno, "cannot open '%s'", name);
		for (size_t i = 0; rc == 0 && i < depth; i++)
			if (chain[i].st_dev == st.st_dev && chain[i].st_ino == st.st_ino)
				rc = vi_error(VI_EFAIL, "cannot open '%s': its backing chain loops "
					      "back to '%s'", path, name);
		if (rc < 0) {
			image_free(b);
			free(name);
			goto fail;
		}
		free(name);
		chain[depth++] = st;
		cur->backing = b;
	}
	*out = top;
	return 0;
fail:
	image_close(top);
	return rc;
}

int image_close(struct image *img)
{
	int rc = 0;

	while (img) {
		struct image *next = img->backing;
		if (img->writable) {
			int frc = img->drv->flush(img);
			if (rc == 0)
				rc = frc;
		}
		image_free(img);
		img = next;
	}
	return rc;
}

const char *image_path(const struct image *img)
{
	return img->path;
}

int image_format(const struct image *img)
{
	return img->format;
}

uint64_t image_size(const struct image *img)
{
	return img->size;
}

uint32_t image_cluster_size(const struct image *img)
{
	return img->cluster_size;
}

bool image_writable(const struct image *img)
{
	return img->writable;
}

struct image *image_backing(const struct image *img)
{
	return img->backing;
}

/* Reads b from offset, zeros past its end (or for all of it without b). */
static int read_or_zero(struct image *b, void *buf, size_t len, uint64_t offset)
{
	size_t n = 0;
	int rc = 0;

	if (b && offset < b->size) {
		n = b->size - offset < len ? (size_t)(b->size - offset) : len;
		rc = b->drv->read(b, buf, n, offset);
	}
	memset((char *)buf + n, 0, len - n);
	return rc;
}

int image_read_below(struct image *img, void *buf, size_t len, uint64_t offset)
{
	return read_or_zero(img->backing, buf, len, offset);
}

bool image_below_is_zero(const struct image *img, uint64_t offset)
{
	return !img->backing || offset >= img->backing->size;
}

static int check_range(struct image *img, const char *verb, uint64_t offset, uint64_t len,
		       bool write)
{
	if (write && !img->writable)
		return vi_error(VI_EUSAGE, "cannot %s '%s': it is open read-only", verb, img->path);
	if (offset > img->size || len > img->size - offset)
		return vi_error(VI_EUSAGE, "cannot %s '%s': %llu bytes at offset %llu go past its "
				"end (%llu bytes)", verb, img->path, (unsigned long long)len,
				(unsigned long long)offset, (unsigned long long)img->size);
	return 0;
}

int image_pread(struct image *img, void *buf, size_t len, uint64_t offset)
{
	int rc = check_range(img, "read", offset, len, false);
	return rc < 0 || !len ? rc : img->drv->read(img, buf, len, offset);
}

int image_pwrite(struct image *img, const void *buf, size_t len, uint64_t offset)
{
	int rc = check_range(img, "write", offset, len, true);
	return rc < 0 || !len ? rc : img->drv->write(img, buf, len, offset);
}

int image_write_zeroes(struct image *img, uint64_t offset, uint64_t len)
{
	int rc = check_range(img, "write", offset, len, true);
	return rc < 0 || !len ? rc : img->drv->zero(img, offset, len, true);
}

int image_discard(struct image *img, uint64_t offset, uint64_t len)
{
	int rc = check_range(img, "discard", offset, len, true);
	return rc < 0 || !len ? rc : img->drv->zero(img, offset, len, false);
}

int image_flush(struct image *img)
{
	return img->writable ? img->drv->flush(img) : 0;
}

int image_virtual_size(const char *path, uint64_t *size)
{
	struct image *img;
	int rc = image_open(path, IMAGE_PROBE, IMAGE_OPEN_SHARED | IMAGE_OPEN_NO_BACKING, &img);

	if (rc < 0)
		return rc;
	*size = image_size(img);
	return image_close(img);
}

int image_unlock(struct image *img)
{
	struct flock fl = { .l_type = F_UNLCK, .l_whence = SEEK_SET, .l_start = LOCK_PERM,
			    .l_len = LOCK_UNSHARED + 100 - LOCK_PERM };
	int rc = image_flush(img);

	if (rc == 0 && fcntl(img->fd, F_OFD_SETLK, &fl) < 0 && errno != ENOLCK &&
	    errno != EOPNOTSUPP && errno != EINVAL)
		rc = vi_error_errno(VI_EFAIL, errno, "cannot unlock '%s'", img->path);
	return rc;
}

int image_relock(struct image *img)
{
	return lock_image(img->fd, img->path, img->writable);
}

int image_set_cache_size(struct image *img, uint64_t bytes)
{
	return img->drv->set_cache ? img->drv->set_cache(img, bytes) : 0;
}

int image_resize(struct image *img, uint64_t size)
{
	if (!img->writable)
		return vi_error(VI_EUSAGE, "cannot resize '%s': it is open read-only", img->path);
	if (size < img->size)
		return vi_error(VI_EUSAGE, "cannot resize '%s': shrinking is not supported",
				img->path);
	if (img->format == IMAGE_QCOW2 && size % 512)
		return vi_error(VI_EUSAGE, "cannot resize '%s': the size must be a multiple of "
				"512 bytes", img->path);
	return size == img->size ? 0 : img->drv->resize(img, size);
}

int image_block_status(struct image *img, uint64_t offset, uint64_t len,
		       struct image_extent *ext)
{
	int status, rc = check_range(img, "inspect", offset, len, false);
	uint64_t run;

	if (rc < 0)
		return rc;
	if (!len)
		return vi_error(VI_EUSAGE, "cannot inspect '%s': empty range", img->path);
	if ((rc = img->drv->status(img, offset, len, &status, &run)) < 0)
		return rc;
	ext->length = run;
	ext->allocated = status != IMAGE_STATUS_UNALLOCATED;
	ext->zero = status == IMAGE_STATUS_ZERO;
	if (status == IMAGE_STATUS_UNALLOCATED) {
		struct image *b = img->backing;
		struct image_extent below;
		if (!b || offset >= b->size) {
			ext->zero = true;
			return 0;
		}
		if (run > b->size - offset)
			run = b->size - offset;
		if ((rc = image_block_status(b, offset, run, &below)) < 0)
			return rc;
		ext->zero = below.zero;
		ext->length = below.length;
	}
	return 0;
}

/* Refuses to `verb` path over `below` when that would make a chain deeper
 * than image_open() accepts. */
static int refuse_deeper(const char *verb, const char *path, const struct image *below)
{
	size_t depth = 1;

	for (const struct image *b = below; b; b = b->backing)
		depth++;
	if (depth > IMAGE_MAX_CHAIN)
		return vi_error(VI_EUNSUPPORTED, "cannot %s '%s': its backing chain would be "
				"deeper than %d images", verb, path, IMAGE_MAX_CHAIN);
	return 0;
}

/* path's directory and last component, as dirname(3) and basename(3) see
 * them; the caller frees both. */
static void split_path(const char *path, char **dir, char **base)
{
	char *copy = xstrdup(path);

	*base = xstrdup(basename(copy));
	strcpy(copy, path);
	*dir = xstrdup(dirname(copy));
	free(copy);
}

/* Images are made under a hidden name beside their own, ".NAME.PID.N", and
 * renamed into place once complete and durable: a process killed meanwhile
 * leaves no half-made image under the name, only a hidden file, which the
 * next image made under that name removes. */
static char *aside_name(const char *dir, const char *base, long pid, unsigned n)
{
	return xasprintf("%s/.%s.%ld.%u", dir, base, pid, n);
}

/* Is `name` in dir what a process, now dead, left making an image named
 * base? Its write lock is free too: a process in another PID namespace may
 * only look dead. */
static bool left_by_dead(const char *dir, const char *base, const char *name)
{
	size_t len = strlen(base);
	long pid;
	unsigned n;
	bool dead;
	int fd;

	if (name[0] != '.' || strncmp(name + 1, base, len) || name[len + 1] != '.' ||
	    sscanf(name + len + 2, "%ld.%u", &pid, &n) != 2 || pid <= 0 || pid > INT_MAX ||
	    pid == getpid())
		return false;
	char *full = aside_name(dir, base, pid, n);
	dead = !strcmp(strrchr(full, '/') + 1, name) && vi_pid_gone(pid);
	if (dead && (fd = open(full, O_RDONLY | O_NONBLOCK | O_CLOEXEC)) >= 0) {
		dead = !byte_locked(fd, LOCK_PERM + 1);
		close(fd);
	}
	free(full);
	return dead;
}

static void remove_left_by_dead(const char *dir, const char *base)
{
	DIR *d = opendir(dir);
	struct dirent *e;

	while (d && (e = readdir(d))) {
		if (left_by_dead(dir, base, e->d_name)) {
			char *full = xasprintf("%s/%s", dir, e->d_name);
			unlink(full);
			free(full);
		}
	}
	if (d)
		closedir(d);
}

/* Makes the image image_create() makes at path, but under a hidden name
 * beside it, returned in *aside (the caller's to free, and to rename with
 * put_in_place() or unlink). */
static int create_aside(const char *path, const struct image_create_opts *opts, char **aside)
{
	struct image_create_opts o = *opts;
	struct image *backing = NULL;
	char *name = NULL, *dir, *base;
	struct stat st;
	int fd = -1, rc;

	*aside = NULL;
	if (o.format != IMAGE_RAW && o.format != IMAGE_QCOW2)
		return vi_error(VI_EUSAGE, "cannot create '%s': unknown format %d", path, o.format);
	if (o.backing) {
		if (o.format == IMAGE_RAW)
			return vi_error(VI_EUSAGE, "cannot create '%s': raw images cannot have a "
					"backing file", path);
		if ((rc = resolve_backing(path, o.backing, &name)) < 0)
			return rc;
		rc = image_open(name, o.backing_format, IMAGE_OPEN_SHARED, &backing);
		free(name);
		if (rc < 0)
			return vi_error_wrap("cannot create '%s'", path);
		o.backing_format = backing->format;
		if (!o.size)
			o.size = (backing->size + 511) & ~511ull;
		rc = refuse_deeper("create", path, backing);
		image_close(backing);
		if (rc < 0)
			return rc;
	}
	if (o.format == IMAGE_QCOW2 && o.size % 512)
		return vi_error(VI_EUSAGE, "cannot create '%s': the size must be a multiple of 512 "
				"bytes", path);
	if (lstat(path, &st) == 0)
		return vi_error_errno(VI_ESTATE, EEXIST, "cannot create '%s'", path);
	split_path(path, &dir, &base);
	remove_left_by_dead(dir, base);
	for (unsigned n = 0; fd < 0 && n < 100; n++) {
		free(*aside);
		*aside = aside_name(dir, base, (long)getpid(), n);
		fd = open(*aside, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
		if (fd < 0 && errno != EEXIST)
			break;
	}
	if (fd < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot create '%s'", path);
	} else {
		rc = drivers[o.format]->create(path, fd, &o, o.size);
		if (rc == 0 && fsync(fd) < 0)
			rc = vi_error_errno(VI_EFAIL, errno, "cannot create '%s'", path);
		close(fd);
		if (rc < 0)
			unlink(*aside);
	}
	if (rc < 0) {
		free(*aside);
		*aside = NULL;
	}
	free(dir);
	free(base);
	return rc;
}

/* Renames the complete image aside to path, which must not exist, and
 * makes that durable; aside is gone afterwards either way. */
static int put_in_place(const char *aside, const char *path)
{
	char *dir, *base;
	int rc = 0, fd;

	if (renameat2(AT_FDCWD, aside, AT_FDCWD, path, RENAME_NOREPLACE) < 0) {
		/* Without RENAME_NOREPLACE in the file system, link() does not
		 * replace either. */
		if ((errno != EINVAL && errno != ENOSYS) || link(aside, path) < 0)
			rc = vi_error_errno(errno == EEXIST ? VI_ESTATE : VI_EFAIL, errno,
					    "cannot create '%s'", path);
		unlink(aside);
	}
	split_path(path, &dir, &base);
	if (rc == 0 && (fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
		fsync(fd);
		close(fd);
	}
	free(dir);
	free(base);
	return rc;
}

int image_create(const char *path, const struct image_create_opts *opts)
{
	char *aside;
	int rc = create_aside(path, opts, &aside);

	if (rc == 0)
		rc = put_in_place(aside, path);
	free(aside);
	return rc;
}

/* The path of `target` relative to the directory `dir` (both absolute and
 * canonical). */
static char *relative_path(const char *dir, const char *target)
{
	size_t i = 0, common = 0, ups = 0;
	const char *rest;
	char *out, *p;

	while (dir[i] && dir[i] == target[i])
		if (dir[i++] == '/')
			common = i;
	if (!dir[i] && target[i] == '/') {
		common = i + 1;
		rest = "";
	} else {
		rest = dir + common;
	}
	for (const char *s = rest; *s; s = strchr(s, '/') ? strchr(s, '/') + 1 : "")
		ups++;
	out = p = xmalloc(ups * 3 + strlen(target + common) + 1);
	for (size_t n = 0; n < ups; n++, p += 3)
		memcpy(p, "../", 3);
	strcpy(p, target + common);
	return out;
}

int image_create_overlay(const char *path, const char *backing, bool relative)
{
	struct image_create_opts o = {.format = IMAGE_QCOW2, .version = 3};
	struct image *b = NULL;
	char *recorded = NULL, *dir_copy = NULL, dir[PATH_MAX], target[PATH_MAX];
	int rc;

	/* Open as the new overlay will: relative to its directory; only its
	 * header is read, so a backing file a running VM writes will do. */
	if ((rc = resolve_backing(path, backing, &recorded)) < 0)
		return rc;
	rc = image_open(recorded, IMAGE_PROBE, IMAGE_OPEN_SHARED, &b);
	if (rc < 0) {
		vi_error_wrap("cannot create '%s'", path);
		goto cleanup;
	}
	o.size = (b->size + 511) & ~511ull;
	o.backing_format = b->format;
	o.cluster_size = b->format == IMAGE_QCOW2 ? b->cluster_size : 0;
	if (o.cluster_size < 4096)
		o.cluster_size = 0;
	free(recorded);
	recorded = NULL;
	if (relative) {
		dir_copy = xstrdup(path);
		if (!realpath(dirname(dir_copy), dir) || !realpath(b->path, target)) {
			rc = vi_error_errno(VI_EFAIL, errno, "cannot create '%s'", path);
			goto cleanup;
		}
		recorded = relative_path(dir, target);
	}
	o.backing = recorded ? recorded : backing;
	rc = image_create(path, &o);
cleanup:
	image_close(b);
	free(recorded);
	free(dir_copy);
	return rc;
}

int image_set_backing(const char *path, const char *backing, int backing_format)
{
	struct image *img = NULL, *b = NULL;
	char *name = NULL;
	int rc = image_open(path, IMAGE_PROBE, IMAGE_OPEN_WRITE | IMAGE_OPEN_NO_BACKING |
			    IMAGE_OPEN_CHECK, &img);

	if (rc < 0)
		return rc;
	if (!img->drv->set_backing) {
		rc = vi_error(VI_EUSAGE, "cannot change the backing file of '%s': it is a %s image",
			      path, image_format_name(img->format));
		goto cleanup;
	}
	/* Record the format we find when none is given and the file opens. */
	if (backing && backing_format == IMAGE_PROBE &&
	    resolve_backing(path, backing, &name) == 0 &&
	    image_open(name, IMAGE_PROBE, IMAGE_OPEN_NO_BACKING, &b) == 0)
		backing_format = b->format;
	rc = img->drv->set_backing(img, backing, backing_format);
cleanup:
	image_close(b);
	free(name);
	int crc = image_close(img);
	return rc < 0 ? rc : crc;
}

int image_get_info(struct image *img, bool chain, struct image_info *info)
{
	struct stat st;
	int rc = 0;

	*info = (struct image_info){0};
	info->path = xstrdup(img->path);
	info->format = img->format;
	info->virtual_size = img->size;
	info->cluster_size = img->cluster_size;
	info->backing_file = xstrdup(img->backing_file);
	info->backing_format = img->backing_format;
	if (fstat(img->fd, &st) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot inspect '%s'", img->path);
		goto cleanup;
	}
	info->file_size = (uint64_t)st.st_size;
	info->disk_size = (uint64_t)st.st_blocks * 512;
	if ((rc = img->drv->info(img, info)) < 0)
		goto cleanup;
	if (chain && img->backing) {
		info->backing = xcalloc(1, sizeof(*info->backing));
		rc = image_get_info(img->backing, true, info->backing);
	}
cleanup:
	if (rc < 0)
		image_info_release(info);
	return rc;
}

void image_info_release(struct image_info *info)
{
	struct image_info *below = info->backing;

	free(info->path);
	free(info->backing_file);
	*info = (struct image_info){0};
	if (below) {
		image_info_release(below);
		free(below);
	}
}

int image_check(const char *path, int format, unsigned flags, struct image_check_result *res)
{
	struct image *img;
	unsigned open_flags = IMAGE_OPEN_NO_BACKING | IMAGE_OPEN_CHECK;
	int rc;

	*res = (struct image_check_result){0};
	if (flags)
		open_flags |= IMAGE_OPEN_WRITE;
	if ((rc = image_open(path, format, open_flags, &img)) < 0)
		return rc;
	if (img->drv->check)
		rc = img->drv->check(img, flags, res);
	else
		rc = vi_error(VI_EUNSUPPORTED, "cannot check '%s': %s images have no metadata to "
			      "check", path, image_format_name(img->format));
	image_close(img);
	return rc;
}

int image_refuse_corrupt(struct image *img, unsigned flags)
{
	struct image_check_result res;
	int rc;

	if (!img->drv->check)
		return 0;
	if ((rc = img->drv->check(img, flags, &res)) < 0)
		return rc;
	if (res.corruptions)
		rc = vi_error(VI_EFAIL, "'%s' is corrupt: vi image check finds %llu error%s",
			      img->path, (unsigned long long)res.corruptions,
			      res.corruptions == 1 ? "" : "s");
	image_check_result_release(&res);
	return rc;
}

static bool all_zero(const unsigned char *p, size_t len)
{
	return !len || (p[0] == 0 && !memcmp(p, p + 1, len - 1));
}

/* Writes buf[0, n) at offset of out piece by piece: pieces that already read
 * the same through out's backing (or as zeros, without one) are skipped,
 * zero pieces over backing data become zero clusters. */
static int convert_chunk(struct image *out, unsigned char *buf, unsigned char *below,
			 uint64_t n, uint64_t offset, uint64_t piece)
{
	bool have_below = out->backing && !image_below_is_zero(out, offset);
	int rc = 0;

	if (have_below && (rc = image_read_below(out, below, n, offset)) < 0)
		return rc;
	for (uint64_t at = 0; at < n && rc == 0;) {
		uint64_t len = n - at < piece ? n - at : piece;
		bool zero = all_zero(buf + at, len);
		if (have_below ? !memcmp(buf + at, below + at, len) : zero) {
			at += len;
			continue;
		}
		/* Extend over the following pieces of the same kind. */
		uint64_t end = at + len;
		while (end < n) {
			uint64_t l = n - end < piece ? n - end : piece;
			bool z = all_zero(buf + end, l);
			if (z != zero || (have_below ? !memcmp(buf + end, below + end, l) : z))
				break;
			end += l;
		}
		rc = zero ? image_write_zeroes(out, offset + at, end - at)
			  : image_pwrite(out, buf + at, end - at, offset + at);
		at = end;
	}
	return rc;
}

int image_convert(struct image *src, const char *dst, const struct image_convert_opts *opts)
{
	struct image_create_opts c = opts->create;
	const uint64_t chunk = 2u << 20;
	unsigned char *buf = NULL, *below = NULL;
	struct image *out = NULL;
	char *aside = NULL;
	uint64_t size = src->size, n, piece;
	int rc;

	/* A copy would pass off what a damaged image reads as sound data. */
	for (struct image *layer = src; layer; layer = layer->backing)
		if ((rc = image_refuse_corrupt(layer, 0)) < 0)
			return rc;
	c.size = c.format == IMAGE_QCOW2 ? (size + 511) & ~511ull : size;
	if ((rc = create_aside(dst, &c, &aside)) < 0)
		return rc;
	if ((rc = image_open(aside, c.format, IMAGE_OPEN_WRITE, &out)) < 0)
		goto cleanup;
	/* Named as it will be: from the same directory, relative backing names
	 * resolve the same, and messages name what the user asked for. */
	free(out->path);
	out->path = xstrdup(dst);
	piece = out->cluster_size ? out->cluster_size : 65536;
	buf = xmalloc(chunk);
	below = xmalloc(chunk);
	for (uint64_t offset = 0; offset < size && rc == 0; offset += n) {
		struct image_extent ext;
		n = size - offset < chunk ? size - offset : chunk;
		if ((rc = image_block_status(src, offset, n, &ext)) < 0)
			break;
		if (ext.zero && !out->backing && ext.length >= piece) {
			/* Nothing to write: skip whole pieces of the hole at once. */
			n = ext.length - ext.length % piece;
		} else {
			if (ext.zero && ext.length < n)
				n = ext.length;
			if (ext.zero)
				memset(buf, 0, n);
			else if ((rc = image_pread(src, buf, n, offset)) < 0)
				break;
			rc = convert_chunk(out, buf, below, n, offset, piece);
		}
		if (opts->progress)
			opts->progress(offset + n, size, opts->opaque);
	}
cleanup:
	free(buf);
	free(below);
	if (out) {
		int crc = image_close(out);
		if (rc == 0)
			rc = crc;
	}
	if (rc == 0)
		rc = put_in_place(aside, dst);
	else
		unlink(aside);
	free(aside);
	return rc;
}

int image_rebase(struct image *img, const char *backing, int backing_format,
		 void (*progress)(uint64_t done, uint64_t total, void *opaque), void *opaque)
{
	const uint64_t chunk = 2u << 20;
	struct image *nb = NULL, *old;
	unsigned char *mine = NULL, *theirs = NULL;
	char *name = NULL;
	uint64_t n;
	int rc;

	if (!img->drv->set_backing || !img->writable)
		return vi_error(VI_EUSAGE, "cannot rebase '%s': it is not a qcow2 image open for "
				"writing", img->path);
	if (backing) {
		if ((rc = resolve_backing(img->path, backing, &name)) < 0)
			return rc;
		if ((rc = image_open(name, backing_format, 0, &nb)) < 0) {
			vi_error_wrap("cannot rebase '%s'", img->path);
			goto cleanup;
		}
		if ((rc = refuse_deeper("rebase", img->path, nb)) < 0)
			goto cleanup;
	}
	mine = xmalloc(chunk);
	theirs = xmalloc(chunk);
	/* Wherever img reads through its chain, keep what it reads. */
	for (uint64_t offset = 0; offset < img->size; offset += n) {
		struct image_extent ext;
		n = img->size - offset < chunk ? img->size - offset : chunk;
		if ((rc = image_block_status(img, offset, n, &ext)) < 0)
			goto cleanup;
		n = ext.length;
		if (!ext.allocated) {
			if ((rc = image_read_below(img, mine, n, offset)) < 0 ||
			    (rc = read_or_zero(nb, theirs, n, offset)) < 0)
				goto cleanup;
			for (uint64_t at = 0; at < n && rc == 0; at += img->cluster_size) {
				uint64_t len = n - at < img->cluster_size ? n - at : img->cluster_size;
				if (memcmp(mine + at, theirs + at, len))
					rc = image_pwrite(img, mine + at, len, offset + at);
			}
			if (rc < 0)
				goto cleanup;
		}
		if (progress)
			progress(offset + n, img->size, opaque);
	}
	if ((rc = image_flush(img)) < 0 ||
	    (rc = img->drv->set_backing(img, backing, nb ? nb->format : IMAGE_PROBE)) < 0)
		goto cleanup;
	old = img->backing;
	img->backing = nb;
	nb = old;
	free(img->backing_file);
	img->backing_file = xstrdup(backing);
	img->backing_format = img->backing ? img->backing->format : IMAGE_PROBE;
cleanup:
	image_close(nb);
	free(name);
	free(mine);
	free(theirs);
	return rc;
}
