/* Raw images: the file is the disk. Zeroing punches holes; the status of a
 * range comes from the file system's holes. */
#include "driver.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "util.h"

static int raw_open(struct image *img, unsigned flags)
{
	struct stat st;
	(void)flags;

	if (fstat(img->fd, &st) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot open '%s'", img->path);
	if (S_ISBLK(st.st_mode)) {
		off_t end = lseek(img->fd, 0, SEEK_END);
		if (end < 0)
			return vi_error_errno(VI_EFAIL, errno, "cannot open '%s'", img->path);
		img->size = (uint64_t)end;
	} else {
		img->size = (uint64_t)st.st_size;
	}
	return 0;
}

static void raw_close(struct image *img)
{
	(void)img;
}

static int raw_read(struct image *img, void *buf, size_t len, uint64_t offset)
{
	ssize_t n = image_file_read(img, buf, len, offset);
	if (n < 0)
		return (int)n;
	/* Someone shortened the file under us: what is gone reads as zeros. */
	memset((char *)buf + n, 0, len - (size_t)n);
	return 0;
}

static int raw_write(struct image *img, const void *buf, size_t len, uint64_t offset)
{
	return image_file_write(img, buf, len, offset);
}

static int raw_write_zero_buffer(struct image *img, uint64_t offset, uint64_t len)
{
	size_t chunk = len < (1u << 20) ? (size_t)len : (1u << 20);
	char *zeros = xcalloc(1, chunk);
	int rc = 0;

	while (len && !rc) {
		size_t n = len < chunk ? (size_t)len : chunk;
		rc = image_file_write(img, zeros, n, offset);
		offset += n;
		len -= n;
	}
	free(zeros);
	return rc;
}

static int raw_zero(struct image *img, uint64_t offset, uint64_t len, bool exact)
{
	if (fallocate(img->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)offset,
		      (off_t)len) == 0) {
		image_file_changed(img, offset, len);
		return 0;
	}
	if (!exact)
		return 0; /* a discard is only a hint */
	if (fallocate(img->fd, FALLOC_FL_ZERO_RANGE, (off_t)offset, (off_t)len) == 0) {
		image_file_changed(img, offset, len);
		return 0;
	}
	return raw_write_zero_buffer(img, offset, len);
}

static int raw_flush(struct image *img)
{
	return image_file_sync(img);
}

static int raw_resize(struct image *img, uint64_t size)
{
	if (ftruncate(img->fd, (off_t)size) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot resize '%s'", img->path);
	image_file_changed(img, size < img->size ? size : img->size,
			   size < img->size ? img->size - size : size - img->size);
	img->size = size;
	return 0;
}

static int raw_status(struct image *img, uint64_t offset, uint64_t len, int *status,
		      uint64_t *run)
{
	off_t data = lseek(img->fd, (off_t)offset, SEEK_DATA);

	*status = IMAGE_STATUS_DATA;
	*run = len;
	if (data < 0) {
		/* ENXIO: nothing but a hole up to the end; other errors: no hole
		 * information, so everything is data. */
		if (errno == ENXIO)
			*status = IMAGE_STATUS_ZERO;
		return 0;
	}
	if ((uint64_t)data > offset) {
		*status = IMAGE_STATUS_ZERO;
		if ((uint64_t)data - offset < len)
			*run = (uint64_t)data - offset;
		return 0;
	}
	off_t hole = lseek(img->fd, (off_t)offset, SEEK_HOLE);
	if (hole > 0 && (uint64_t)hole > offset && (uint64_t)hole - offset < len)
		*run = (uint64_t)hole - offset;
	return 0;
}

static int raw_info(struct image *img, struct image_info *info)
{
	uint64_t off = 0, run;
	int status;

	info->allocated = 0;
	for (off = 0; off < img->size; off += run) {
		int rc = raw_status(img, off, img->size - off, &status, &run);
		if (rc < 0)
			return rc;
		if (status == IMAGE_STATUS_DATA)
			info->allocated += run;
	}
	return 0;
}

static int raw_create(const char *path, int fd, const struct image_create_opts *opts,
		      uint64_t size)
{
	(void)opts;
	if (ftruncate(fd, (off_t)size) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot create '%s'", path);
	return 0;
}

const struct image_driver image_raw_driver = {
	.format = IMAGE_RAW,
	.open = raw_open,
	.close = raw_close,
	.read = raw_read,
	.write = raw_write,
	.zero = raw_zero,
	.flush = raw_flush,
	.resize = raw_resize,
	.status = raw_status,
	.info = raw_info,
	.create = raw_create,
};
