/* Disk images: qcow2 (versions 2 and 3) and raw behind one interface, with
 * backing chains, so that clones are instant overlays that qemu-img accepts.
 *
 * lib/image/ owns everything about image files: this interface (image.c, the
 * format-independent layer), the driver table the formats fill in (driver.h),
 * raw.c, and qcow2 in qcow2*.c. Other modules include only this header.
 *
 * Ownership: image_open() returns an image that the caller frees with
 * image_close(), which also closes the backing chain the image opened.
 * image_backing() borrows: the backing image belongs to its overlay. Strings
 * given to these functions are copied. struct image_info and struct
 * image_check_result own their strings and are emptied by their *_release().
 *
 * Threads: image_pread(), image_pwrite(), image_write_zeroes(),
 * image_discard(), image_block_status() and image_flush() may run on several
 * threads at once on one image (one per virtio queue, say). A lock guards
 * the metadata only; data moves without it, and writers that would allocate
 * the same clusters wait for each other. Everything else on an image (close,
 * resize, info, convert, cache size) needs the image to itself.
 *
 * Processes: images are locked the way qemu locks them, so neither qemu nor
 * another vi opens an image that one of them writes, and no one writes an
 * image (a backing file, say) that another has open.
 *
 * Durability: a write is durable once image_flush() returns. Metadata stays
 * in memory until then (or until the cache is full) and is written back in
 * the order data, refcounts, L2 tables, L1 table, with a barrier between each
 * step; clusters are only reused once the tables that released them are on
 * disk. So a process killed or a machine losing power at any point leaves an
 * image whose flushed data is intact and whose only defect can be leaked
 * clusters: refcounts on disk are never lower than the truth, and the qcow2
 * dirty bit is not needed (images left dirty by qemu are repaired on open).
 *
 * Errors: every function returning int returns 0 or a negative VI_E* code
 * after recording a message (see error.h).
 */
#ifndef VI_IMAGE_H
#define VI_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <vi/hv-plugin.h>

enum image_format {
	IMAGE_PROBE = -1, /* find out from the file: qcow2 by its magic, raw otherwise */
	IMAGE_RAW = VI_DISK_RAW,
	IMAGE_QCOW2 = VI_DISK_QCOW2,
};

/* The format of the file at path, as image_open() finds it for IMAGE_PROBE. */
int image_probe(const char *path, int *format);
/* "raw", "qcow2"; "probe" for IMAGE_PROBE. */
const char *image_format_name(int format);
/* The format named `name` ("raw", "qcow2"); -VI_EUSAGE for any other name. */
int image_format_parse(const char *name, int *format);

struct image;

/* The deepest backing chain, counting the top image: reads recurse once per
 * layer. image_create() and image_rebase() refuse to make a deeper one. */
#define IMAGE_MAX_CHAIN 256

/* image_open() flags. */
#define IMAGE_OPEN_WRITE      (1u << 0) /* read-write; backing images stay read-only */
#define IMAGE_OPEN_NO_BACKING (1u << 1) /* leave the backing chain closed: clusters not
					   allocated in this image read as zeros */
#define IMAGE_OPEN_SHARED     (1u << 2) /* read-only and unlocked, like qemu-img -U: for
					   the metadata of images a running VM writes */

/* Opens path as `format` (or IMAGE_PROBE) and, unless IMAGE_OPEN_NO_BACKING,
 * its whole backing chain, of at most IMAGE_MAX_CHAIN images. A relative
 * backing name is resolved against the directory of the image that records
 * it. Opens regular files and block devices only (a FIFO would block).
 * Refuses loops in the chain, encryption, external data files, unknown
 * incompatible features, absurd sizes and tables past the end of the file.
 * Opening a qcow2 image for writing repairs it first if another program left
 * it dirty, then checks it as image_check() does and refuses it (-VI_EFAIL)
 * when marked or found corrupt, before writing anything. */
int image_open(const char *path, int format, unsigned flags, struct image **img);
/* Flushes (when writable) and frees img and its backing chain. The image is
 * freed even when the flush fails, whose error is returned. NULL is a no-op. */
int image_close(struct image *img);

const char *image_path(const struct image *img); /* as given to image_open() */
int image_format(const struct image *img);
uint64_t image_size(const struct image *img);        /* virtual size in bytes */
/* The virtual size of the image at path, read without a lock (as qemu-img -U
 * does): a running VM's disk too. */
int image_virtual_size(const char *path, uint64_t *size);
uint32_t image_cluster_size(const struct image *img); /* 0 for raw images */
bool image_writable(const struct image *img);
/* The image this one reads unallocated clusters from, or NULL. */
struct image *image_backing(const struct image *img);

/* Guest I/O at any offset and length within the virtual size; a range past
 * the end is -VI_EUSAGE. Writes to a qcow2 image copy partly written clusters
 * up from the backing chain. */
int image_pread(struct image *img, void *buf, size_t len, uint64_t offset);
int image_pwrite(struct image *img, const void *buf, size_t len, uint64_t offset);
/* The range reads as zeros afterwards; whole qcow2 clusters become zero
 * clusters (or unallocated ones when nothing lies beneath) and release their
 * space. */
int image_write_zeroes(struct image *img, uint64_t offset, uint64_t len);
/* The range's contents no longer matter: whole clusters release their space
 * and read afterwards as zeros or as the backing chain's data. */
int image_discard(struct image *img, uint64_t offset, uint64_t len);
/* Makes every write so far durable. */
int image_flush(struct image *img);
/* Shared storage changing hands: image_unlock() makes the image durable and drops
 * its locks, so that a process on another host may open it for writing while this
 * one neither reads nor writes it; image_relock() takes them back, refusing
 * (-VI_ESTATE) if that process has it now. */
int image_unlock(struct image *img);
int image_relock(struct image *img);
/* The memory a qcow2 image may keep its L2 tables and refcount blocks in
 * (32 MiB by default, a few tables at least); writes back what no longer
 * fits. No other call may run on the image meanwhile. */
int image_set_cache_size(struct image *img, uint64_t bytes);
/* Grows the virtual size (qcow2: to a multiple of 512); the new area reads
 * as zeros, even over a larger backing image. Shrinking is -VI_EUSAGE. */
int image_resize(struct image *img, uint64_t size);

/* What a range of the virtual disk holds, from `offset` for `length` bytes. */
struct image_extent {
	uint64_t length;
	bool zero;      /* reads as zeros, known without reading the data */
	bool allocated; /* held by this image, not read through from its backing */
};
/* Describes the longest run from offset (at most len bytes) that has one
 * status; len must be > 0 and the range within the virtual size. */
int image_block_status(struct image *img, uint64_t offset, uint64_t len,
		       struct image_extent *ext);

struct image_create_opts {
	int format;              /* IMAGE_QCOW2 or IMAGE_RAW */
	uint64_t size;           /* virtual size (qcow2: a multiple of 512); 0 takes the
				    backing image's size */
	unsigned version;        /* qcow2 version 2 or 3; 0 means 3 */
	uint32_t cluster_size;   /* qcow2: a power of two from 4 KiB to 2 MiB; 0 means 64 KiB */
	const char *backing;     /* qcow2: the backing file as recorded, or NULL; a relative
				    name is relative to the new image's directory */
	int backing_format;      /* IMAGE_RAW, IMAGE_QCOW2 or IMAGE_PROBE (then recorded as found) */
};

/* Creates a new image file at path (-VI_ESTATE if it exists). The backing
 * image must open (only its metadata is read, unlocked: one a running VM
 * writes will do); creating with one only writes metadata, so it is instant
 * whatever the size. The image is made under a hidden name in path's
 * directory, ".NAME.PID.N", and renamed to path, never over another file,
 * once complete and durable: a failed create leaves nothing, a killed one
 * only that hidden file, which the next create of path removes. */
int image_create(const char *path, const struct image_create_opts *opts);
/* A qcow2 version 3 overlay on backing, with backing's size and format: what
 * a clone or a snapshot freezes its disk with. The backing name is recorded
 * relative to the overlay's directory when `relative`, else as given. */
int image_create_overlay(const char *path, const char *backing, bool relative);
/* Calls written(opaque, offset, len) after each change the image makes to its own file
 * (data, metadata, a hole punched, a new size: [old size, new size) either way), on the
 * thread that made it: what a migration mirroring the file sends again. NULL stops it;
 * a change in progress may still call the old one, so the caller must not free its
 * opaque before the image's writers have stopped. */
void image_watch_writes(struct image *img, void (*written)(void *opaque, uint64_t offset,
							   uint64_t len),
			void *opaque);

/* Records another backing file (NULL for none) in a qcow2 image's header
 * without copying data, for when the backing file moved or was renamed; the
 * new backing must hold the same data. Like `qemu-img rebase -u`. Refuses an
 * image marked or found corrupt, as image_open() does for writing. */
int image_set_backing(const char *path, const char *backing, int backing_format);

/* Makes a writable qcow2 image read the same over another backing file
 * (NULL for none): what it read from its old chain and the new one lacks is
 * copied into it first, then the header names the new file (relative names
 * are relative to img's directory), which img then reads through. Deleting
 * a snapshot between two layers rebases the upper onto the lower's backing.
 * Like `qemu-img rebase`. progress may be NULL. */
int image_rebase(struct image *img, const char *backing, int backing_format,
		 void (*progress)(uint64_t done, uint64_t total, void *opaque), void *opaque);

struct image_info {
	char *path;              /* as opened */
	int format;
	uint64_t virtual_size;
	uint64_t file_size;      /* length of the file */
	uint64_t disk_size;      /* space the file takes on disk */
	uint64_t allocated;      /* virtual bytes this layer holds (data, zero or compressed) */
	uint32_t cluster_size;   /* 0 for raw */
	unsigned version;        /* qcow2 version, 0 for raw */
	unsigned refcount_bits;  /* 0 for raw */
	bool dirty;              /* qcow2 v3: refcounts need rebuilding (not closed cleanly) */
	bool corrupt;            /* qcow2 v3: marked corrupt */
	bool lazy_refcounts;
	uint32_t snapshots;      /* internal snapshots */
	char *backing_file;      /* as recorded in the image, or NULL */
	int backing_format;      /* as recorded, IMAGE_PROBE when not recorded */
	struct image_info *backing; /* the next layer, filled when asked for the chain */
};

/* Describes img and, when `chain`, every image below it (info->backing).
 * On failure info is left empty. */
int image_get_info(struct image *img, bool chain, struct image_info *info);
void image_info_release(struct image_info *info);

/* image_check() flags. */
#define IMAGE_CHECK_REPAIR_LEAKS (1u << 0) /* drop refcounts nothing uses */
#define IMAGE_CHECK_REPAIR_ALL   (1u << 1) /* also raise refcounts that are too low */

#define IMAGE_CHECK_MAX_MESSAGES 100

struct image_check_result {
	uint64_t corruptions;       /* errors: refcounts too low, bad pointers, bad flags */
	uint64_t leaks;             /* clusters with a refcount but no user */
	uint64_t corruptions_fixed;
	uint64_t leaks_fixed;
	uint64_t total_clusters;    /* virtual size in clusters */
	uint64_t allocated_clusters;
	uint64_t fragmented_clusters;
	uint64_t compressed_clusters;
	uint64_t image_end_offset;  /* end of the last cluster in use */
	char **messages;            /* one line per problem, the first IMAGE_CHECK_MAX_MESSAGES */
	size_t nmessages;
};

/* Checks the qcow2 image at path as `qemu-img check` does: rebuilds the
 * refcounts from the L1/L2 tables (and snapshots, bitmaps) and compares.
 * Returns 0 when the check ran, whatever it found; repairs when asked and
 * reports what remains. Raw images are -VI_EUNSUPPORTED. On failure res is
 * left empty. */
int image_check(const char *path, int format, unsigned flags, struct image_check_result *res);
void image_check_result_release(struct image_check_result *res);

struct image_convert_opts {
	struct image_create_opts create; /* the target; create.size is ignored */
	/* Called now and then with the bytes done so far; may be NULL. */
	void (*progress)(uint64_t done, uint64_t total, void *opaque);
	void *opaque;
};

/* Copies what src reads (through its chain) into a new image at dst. With a
 * target backing file only what differs from it is written; without one,
 * zeros are left unallocated. A source any layer of which the check finds
 * corrupt is refused (-VI_EFAIL). dst appears only once complete, as
 * image_create() makes it: a failed or killed convert leaves nothing there. */
int image_convert(struct image *src, const char *dst, const struct image_convert_opts *opts);

#endif
