/* What the generic image layer (image.c) and the format drivers (raw, qcow2)
 * share: the image object and the driver operations. Not for other modules. */
#ifndef VI_IMAGE_DRIVER_H
#define VI_IMAGE_DRIVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "image.h"

/* Internal image_open() flag: open a qcow2 image for image_check(), which
 * must see images other opens refuse (dirty, marked corrupt). */
#define IMAGE_OPEN_CHECK (1u << 16)

/* How one layer maps a range, before the backing chain is consulted. */
enum image_status {
	IMAGE_STATUS_DATA,
	IMAGE_STATUS_ZERO,
	IMAGE_STATUS_UNALLOCATED, /* read from the backing chain */
};

/* How much of a file's start the drivers' probe() get to see. */
#define IMAGE_PROBE_BYTES 512

struct image_driver {
	int format;
	/* Does a file starting with head hold this format? len is less than
	 * IMAGE_PROBE_BYTES only for a shorter file. NULL for raw, which takes
	 * whatever no other driver claims. */
	bool (*probe)(const unsigned char *head, size_t len);
	/* Parses the already opened img->fd: sets img->size, img->cluster_size,
	 * img->backing_file and img->backing_format, img->priv. */
	int (*open)(struct image *img, unsigned flags);
	void (*close)(struct image *img); /* frees img->priv; no I/O */
	/* Ranges are checked against img->size by image.c. */
	int (*read)(struct image *img, void *buf, size_t len, uint64_t offset);
	int (*write)(struct image *img, const void *buf, size_t len, uint64_t offset);
	/* exact: the range must read as zeros afterwards (write zeroes); otherwise
	 * it is a discard and partial clusters are left alone. */
	int (*zero)(struct image *img, uint64_t offset, uint64_t len, bool exact);
	int (*flush)(struct image *img);
	int (*resize)(struct image *img, uint64_t size);
	/* The layer's own status of the run starting at offset, at most len bytes. */
	int (*status)(struct image *img, uint64_t offset, uint64_t len, int *status,
		      uint64_t *run);
	/* Sets the metadata cache budget; NULL when there is no cache. */
	int (*set_cache)(struct image *img, uint64_t bytes);
	/* Fills the format-specific fields of info. */
	int (*info)(struct image *img, struct image_info *info);
	/* Writes a new empty image of `size` into the empty file fd. */
	int (*create)(const char *path, int fd, const struct image_create_opts *opts,
		      uint64_t size);
	/* image_check() on an image opened with IMAGE_OPEN_CHECK (and for
	 * writing when repairing); NULL when the format has no metadata. */
	int (*check)(struct image *img, unsigned flags, struct image_check_result *res);
	/* Rewrites the backing file (NULL: none) recorded in a writable image's
	 * header; NULL when the format cannot have one. */
	int (*set_backing)(struct image *img, const char *backing, int backing_format);
};

struct image {
	char *path;
	int fd;
	int format;
	bool writable;
	uint64_t size;
	uint32_t cluster_size;
	char *backing_file; /* as recorded, or NULL */
	int backing_format; /* as recorded, IMAGE_PROBE when not recorded */
	struct image *backing;
	const struct image_driver *drv;
	void *priv;
	/* image_watch_writes(): told of every change to the file. */
	void (*written)(void *opaque, uint64_t offset, uint64_t len);
	void *written_opaque;
};

/* The file changed at [offset, offset+len): whoever watches is told. */
void image_file_changed(const struct image *img, uint64_t offset, uint64_t len);

extern const struct image_driver image_raw_driver;
extern const struct image_driver image_qcow2_driver;

/* Reads what lies beneath img at offset: the backing chain's data, zeros
 * past its end or without one. */
int image_read_below(struct image *img, void *buf, size_t len, uint64_t offset);
/* True when everything beneath img from offset on reads as zeros without
 * having to look: no backing image, or offset is past its end. */
bool image_below_is_zero(const struct image *img, uint64_t offset);

/* Runs image_check()'s check on img (repairing as flags ask, then img must
 * be open for writing) and refuses img, as corrupt, when corruptions remain.
 * Formats without metadata always pass. */
int image_refuse_corrupt(struct image *img, unsigned flags);

/* pread/pwrite until done, retrying on EINTR. image_file_read() returns the
 * bytes read (fewer only at the end of the file) or a negative code after
 * recording "cannot read 'path'". */
ssize_t image_file_read(const struct image *img, void *buf, size_t len, uint64_t offset);
int image_file_write(const struct image *img, const void *buf, size_t len, uint64_t offset);
int image_file_writev(const struct image *img, struct iovec *iov, int iovcnt, uint64_t offset);
/* fdatasync with the message "cannot flush 'path'". */
int image_file_sync(const struct image *img);

#endif
