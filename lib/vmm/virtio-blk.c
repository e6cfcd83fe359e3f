/* virtio-blk: one PCI device per disk, backed by lib/image (raw, or qcow2 with its
 * backing chain). Requests run on the disk's I/O thread; a running disk can move onto
 * an overlay of its image (live layering). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>

#include "error.h"
#include "log.h"
#include "image/image.h"
#include "util.h"
#include "vmm/internal.h"

#define VIRTIO_ID_BLOCK 2

#define VIRTIO_BLK_F_SEG_MAX 2
#define VIRTIO_BLK_F_RO      5
#define VIRTIO_BLK_F_FLUSH   9

#define VIRTIO_BLK_T_IN     0
#define VIRTIO_BLK_T_OUT    1
#define VIRTIO_BLK_T_FLUSH  4
#define VIRTIO_BLK_T_GET_ID 8

#define VIRTIO_BLK_S_OK     0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_ID_BYTES 20
#define SECTOR 512

struct virtio_blk_config {
	uint64_t capacity; /* in 512-byte sectors */
	uint32_t size_max, seg_max;
	uint8_t geometry[4];
	uint32_t blk_size;
} __attribute__((packed));

struct virtio_blk {
	struct image *img; /* NULL only when a failed switch could not restore it */
	struct virtio_ops ops; /* features differ between read-only and writable disks */
	struct virtio_blk_config config;
	char id[VIRTIO_BLK_ID_BYTES];
	struct iovec out[VIRTIO_QUEUE_SIZE], in[VIRTIO_QUEUE_SIZE];
	/* Requests done and their bytes, since the VMM started: read by any thread. */
	_Atomic uint64_t rd_bytes, wr_bytes, rd_ops, wr_ops;
};

struct virtio_blk_req {
	uint32_t type, reserved;
	uint64_t sector;
};

/* Moves `len` bytes between the disk at `offset` and the iov, skipping `skip` bytes
 * of it: reads fill the iov, writes drain it. */
static int virtio_blk_rw(struct image *img, const struct iovec *iov, unsigned n, size_t skip,
			 size_t len, uint64_t offset, bool write)
{
	for (unsigned i = 0; i < n && len; i++) {
		size_t take;
		int ret;

		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		take = iov[i].iov_len - skip;
		if (take > len)
			take = len;
		if (write)
			ret = image_pwrite(img, (uint8_t *)iov[i].iov_base + skip, take, offset);
		else
			ret = image_pread(img, (uint8_t *)iov[i].iov_base + skip, take, offset);
		if (ret < 0)
			return ret;
		offset += take;
		len -= take;
		skip = 0;
	}
	return 0;
}

static size_t iov_size(const struct iovec *iov, unsigned n)
{
	size_t len = 0;

	for (unsigned i = 0; i < n; i++)
		len += iov[i].iov_len;
	return len;
}

/* Runs one request; returns its status and sets *written to the data bytes it put in
 * the guest's buffers. */
static uint8_t virtio_blk_request(struct virtio_blk *blk, const struct virtio_chain *c,
				  size_t in_len, uint32_t *written)
{
	struct virtio_blk_req req;
	uint64_t size, offset;
	size_t len;

	*written = 0;
	if (!blk->img)
		return VIRTIO_BLK_S_IOERR;
	if (virtio_iov_read(c->out, c->nout, 0, &req, sizeof(req)) != sizeof(req))
		return VIRTIO_BLK_S_IOERR;
	size = image_size(blk->img);
	offset = req.sector * SECTOR;
	switch (req.type) {
	case VIRTIO_BLK_T_IN:
		len = in_len - 1;
		if (req.sector > size / SECTOR || len > size - offset)
			return VIRTIO_BLK_S_IOERR;
		if (virtio_blk_rw(blk->img, c->in, c->nin, 0, len, offset, false) < 0) {
			vi_warn("%s", vi_error_message());
			return VIRTIO_BLK_S_IOERR;
		}
		*written = (uint32_t)len;
		atomic_fetch_add(&blk->rd_bytes, len);
		atomic_fetch_add(&blk->rd_ops, 1);
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_OUT:
		len = iov_size(c->out, c->nout) - sizeof(req);
		if (!image_writable(blk->img) || req.sector > size / SECTOR ||
		    len > size - offset)
			return VIRTIO_BLK_S_IOERR;
		if (virtio_blk_rw(blk->img, c->out, c->nout, sizeof(req), len, offset, true) < 0) {
			vi_warn("%s", vi_error_message());
			return VIRTIO_BLK_S_IOERR;
		}
		atomic_fetch_add(&blk->wr_bytes, len);
		atomic_fetch_add(&blk->wr_ops, 1);
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_FLUSH:
		if (image_writable(blk->img) && image_flush(blk->img) < 0) {
			vi_warn("%s", vi_error_message());
			return VIRTIO_BLK_S_IOERR;
		}
		return VIRTIO_BLK_S_OK;
	case VIRTIO_BLK_T_GET_ID:
		len = in_len - 1 < VIRTIO_BLK_ID_BYTES ? in_len - 1 : VIRTIO_BLK_ID_BYTES;
		virtio_iov_write(c->in, c->nin, 0, blk->id, len);
		*written = (uint32_t)len;
		return VIRTIO_BLK_S_OK;
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
}

static void virtio_blk_notify(void *dev, struct virtio_queue *q)
{
	struct virtio_blk *blk = dev;
	struct virtio_chain c = { .out = blk->out, .in = blk->in };

	while (virtio_queue_pop(q, &c)) {
		size_t in_len = iov_size(c.in, c.nin);
		uint32_t written = 0;
		uint8_t status = VIRTIO_BLK_S_IOERR;

		if (in_len == 0) { /* nowhere to put the status */
			virtio_queue_push(q, c.head, 0);
			continue;
		}
		status = virtio_blk_request(blk, &c, in_len, &written);
		/* The status is the chain's last byte. */
		for (unsigned i = c.nin; i-- > 0;)
			if (c.in[i].iov_len) {
				((uint8_t *)c.in[i].iov_base)[c.in[i].iov_len - 1] = status;
				break;
			}
		virtio_queue_push(q, c.head, written + 1);
	}
}

static void virtio_blk_config_read(void *dev, unsigned offset, uint8_t *data, unsigned len)
{
	struct virtio_blk *blk = dev;

	memcpy(data, (uint8_t *)&blk->config + offset, len);
}

static void virtio_blk_free(void *dev)
{
	struct virtio_blk *blk = dev;

	if (image_close(blk->img) < 0)
		vi_warn("%s", vi_error_message());
	free(blk);
}

/* The disk must be the size it was when the state was saved: the guest knows it. */
static int virtio_blk_post_load(void *dev)
{
	struct virtio_blk *blk = dev;
	uint64_t sectors = image_size(blk->img) / SECTOR;

	if (blk->config.capacity != sectors)
		return vi_error(VI_EUSAGE, "the disk has %llu sectors, the saved state %llu",
				(unsigned long long)sectors,
				(unsigned long long)blk->config.capacity);
	return 0;
}

static const struct vi_state_field virtio_blk_fields[] = {
	{ "capacity", offsetof(struct virtio_blk, config.capacity), 8, 1, NULL, 0 },
	VI_STATE_FIELDS_END,
};

static const struct vi_state_desc virtio_blk_state = {
	.name = "virtio-blk", .id = VMM_SECTION_VIRTIO_BLK, .version = 1, .oldest = 1,
	.fields = virtio_blk_fields, .post_load = virtio_blk_post_load,
};

static const struct virtio_ops virtio_blk_ops = {
	.kind = "virtio-blk",
	.type = VIRTIO_ID_BLOCK,
	.pci_id = 0x1001,
	.pci_class = 0x018000, /* mass storage, other */
	.nqueues = 1,
	.features = 1u << VIRTIO_BLK_F_SEG_MAX | 1u << VIRTIO_BLK_F_FLUSH,
	.config_size = sizeof(struct virtio_blk_config),
	.config_read = virtio_blk_config_read,
	.notify = virtio_blk_notify,
	.state = &virtio_blk_state,
	.free = virtio_blk_free,
};

/* Opens the disk's image; the guest sees its size. */
static int blk_open(struct virtio_blk *blk, const struct vmm_disk *d)
{
	int ret = image_open(d->path, d->format, d->readonly ? 0 : IMAGE_OPEN_WRITE, &blk->img);

	if (ret == 0)
		blk->config.capacity = image_size(blk->img) / SECTOR;
	return ret;
}

int virtio_blk_init(struct vmm *vm)
{
	for (size_t i = 0; i < vm->cfg.ndisks; i++) {
		const struct vmm_disk *d = &vm->cfg.disks[i];
		struct virtio_blk *blk = xcalloc(1, sizeof(*blk));
		int ret;

		ret = vm->cfg.disks_later ? 0 : blk_open(blk, d);
		if (ret < 0) {
			free(blk);
			return vi_error_wrap("disk %zu", i);
		}
		blk->ops = virtio_blk_ops;
		if (d->readonly)
			blk->ops.features |= 1u << VIRTIO_BLK_F_RO;
		blk->config.seg_max = VIRTIO_QUEUE_SIZE - 2;
		blk->config.blk_size = SECTOR;
		snprintf(blk->id, sizeof(blk->id), "vi-disk%u", (unsigned)i % 1000);
		ret = virtio_pci_add(vm, &blk->ops, blk, NULL);
		if (ret < 0)
			return ret;
	}
	return 0;
}

void virtio_blk_add_stats(struct vmm *vm, struct vmm_stats *st)
{
	struct virtio_pci *vp;

	for (unsigned i = 0; (vp = vmm_device_get(vm, "virtio-blk", i)); i++) {
		struct virtio_blk *blk = virtio_pci_dev(vp);

		st->disk_rd_bytes += atomic_load(&blk->rd_bytes);
		st->disk_wr_bytes += atomic_load(&blk->wr_bytes);
		st->disk_rd_ops += atomic_load(&blk->rd_ops);
		st->disk_wr_ops += atomic_load(&blk->wr_ops);
	}
}

/* --- live layering --------------------------------------------------------------------- */

/* Disk i's transport and device: the i-th virtio-blk, as disks are made in order. */
static struct virtio_pci *blk_pci(struct vmm *vm, size_t i)
{
	return vmm_device_get(vm, "virtio-blk", (unsigned)i);
}

static struct virtio_blk *blk_of(struct vmm *vm, size_t i)
{
	return virtio_pci_dev(blk_pci(vm, i));
}

/* Whether both paths name one file (b may be NULL). */
static bool same_file(const char *a, const char *b)
{
	struct stat sa, sb;

	return b && stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
	       sa.st_ino == sb.st_ino;
}

/* Checks that disk i can move onto `path`: a qcow2 image of the disk's size whose backing
 * file is the very file (by inode: the host may have linked it under a new name) that
 * the disk has open, read in the disk's format. */
static int switch_check(struct vmm *vm, size_t i, const char *path)
{
	const struct vmm_disk *d = &vm->cfg.disks[i];
	const char *slash = strrchr(path, '/');
	struct image_info info = { 0 };
	struct image *img;
	char *backing = NULL, want[32], got[32];
	int ret;

	if (d->readonly)
		return vi_error(VI_EUSAGE, "disk %zu is read-only and takes no overlay", i);
	if (same_file(d->path, path))
		return vi_error(VI_EUSAGE, "disk %zu already uses '%s'", i, path);
	/* The backing file is ours, open for writing: its lock keeps it closed here. */
	ret = image_open(path, IMAGE_PROBE, IMAGE_OPEN_NO_BACKING, &img);
	if (ret == 0)
		ret = image_get_info(img, false, &info);
	if (ret < 0) {
		ret = vi_error_wrap("disk %zu", i);
		goto out;
	}
	if (info.backing_file && info.backing_file[0] != '/' && slash)
		backing = xasprintf("%.*s/%s", (int)(slash - path), path, info.backing_file);
	else
		backing = xstrdup(info.backing_file);
	if (info.format != IMAGE_QCOW2)
		ret = vi_error(VI_EUSAGE, "disk %zu: '%s' is a %s image, not a qcow2 overlay", i,
			       path, image_format_name(info.format));
	else if (info.virtual_size != image_size(blk_of(vm, i)->img))
		ret = vi_error(VI_EUSAGE, "disk %zu: the overlay '%s' is %s but the disk is %s", i,
			       path, vi_format_size(info.virtual_size, got, sizeof(got)),
			       vi_format_size(image_size(blk_of(vm, i)->img), want, sizeof(want)));
	else if (!same_file(d->path, backing))
		ret = vi_error(VI_EUSAGE, "disk %zu: the overlay '%s' is not backed by '%s'", i,
			       path, d->path);
	else if (info.backing_format != IMAGE_PROBE && info.backing_format != d->format)
		ret = vi_error(VI_EUSAGE, "disk %zu: the overlay '%s' reads '%s' as %s, not %s", i,
			       path, d->path, image_format_name(info.backing_format),
			       image_format_name(d->format));
out:
	free(backing);
	image_info_release(&info);
	if (image_close(img) < 0 && ret == 0)
		ret = vi_error_wrap("disk %zu", i);
	return ret;
}

/* Closes the disk's image and opens path in its place. The old image must be closed
 * first: its write lock keeps an overlay that reads it from opening. On failure the
 * disk has no image. */
static int blk_move(struct virtio_blk *blk, const struct vmm_disk *to)
{
	int ret = image_close(blk->img);

	blk->img = NULL;
	return ret < 0 ? ret
		       : image_open(to->path, to->format, to->readonly ? 0 : IMAGE_OPEN_WRITE,
				    &blk->img);
}

/* Puts the first n disks that were to move back on their old images after the move
 * failed with `err`, whose message leads the one returned. Nothing ran on the overlays
 * meanwhile, so nothing is lost. */
static int switch_back(struct vmm *vm, const char *const *overlays, size_t n, int err)
{
	char *why = xstrdup(vi_error_message());

	for (size_t i = 0; i < n; i++) {
		const struct vmm_disk *d = &vm->cfg.disks[i];
		char *more;

		if (!overlays[i] || blk_move(blk_of(vm, i), d) == 0)
			continue;
		more = xasprintf("%s; disk %zu could not go back to '%s' and fails every "
				 "request: %s", why, i, d->path, vi_error_message());
		free(why);
		why = more;
	}
	err = vi_error(-err, "%s", why);
	free(why);
	return err;
}

int vmm_switch_disks(struct vmm *vm, const char *const *overlays, size_t n)
{
	size_t i, moved;
	int ret = 0;

	if (n != vm->cfg.ndisks)
		return vi_error(VI_EUSAGE, "%zu overlays given for %zu disks", n, vm->cfg.ndisks);
	for (i = 0; i < n && ret == 0; i++)
		if (overlays[i])
			ret = switch_check(vm, i, overlays[i]);
	if (ret < 0)
		return ret;
	/* Every disk held at once: for the guest they all move at one instant. While held,
	 * none of a disk's requests runs, and the guest's notifications wait in the queues'
	 * eventfds. */
	for (i = 0; i < n; i++)
		if (overlays[i])
			virtio_pci_hold(blk_pci(vm, i), true);
	/* A flush that fails leaves the old images in place and still open. */
	for (i = 0; i < n && ret == 0; i++)
		if (overlays[i] && image_flush(blk_of(vm, i)->img) < 0)
			ret = vi_error_wrap("disk %zu", i);
	for (moved = 0; moved < n && ret == 0; moved++)
		if (overlays[moved] &&
		    blk_move(blk_of(vm, moved),
			     &(struct vmm_disk){ .path = overlays[moved], .format = IMAGE_QCOW2 }) < 0)
			ret = vi_error_wrap("disk %zu", moved);
	if (ret < 0)
		ret = switch_back(vm, overlays, moved, ret);
	for (i = 0; i < n; i++) {
		struct vmm_disk *d = (struct vmm_disk *)&vm->cfg.disks[i];

		if (!overlays[i])
			continue;
		if (ret == 0) {
			free((char *)d->path);
			d->path = xstrdup(overlays[i]);
			d->format = IMAGE_QCOW2;
		}
		virtio_pci_hold(blk_pci(vm, i), false);
	}
	return ret;
}

/* --- live resize ------------------------------------------------------------------------ */

int vmm_resize_disk(struct vmm *vm, size_t i, uint64_t bytes)
{
	struct virtio_blk *blk;
	uint64_t from;
	int ret;

	if (i >= vm->cfg.ndisks)
		return vi_error(VI_EUSAGE, "the VM has no disk %zu", i);
	blk = blk_of(vm, i);
	if (!blk || !blk->img)
		return vi_error(VI_ESTATE, "disk %zu is not open", i);
	if (vm->cfg.disks[i].readonly)
		return vi_error(VI_EUSAGE, "disk %zu is read-only", i);
	if (bytes > UINT64_MAX - (SECTOR - 1))
		return vi_error(VI_EUSAGE, "%llu bytes is too large for a disk",
				(unsigned long long)bytes);
	bytes = (bytes + SECTOR - 1) / SECTOR * SECTOR;
	from = image_size(blk->img);
	if (bytes < from)
		return vi_error(VI_EUSAGE, "disk %zu has %llu bytes: it does not shrink to %llu", i,
				(unsigned long long)from, (unsigned long long)bytes);
	if (bytes == from)
		return 0;
	/* No request of the disk's runs while its image grows; the guest's wait in the
	 * queue's eventfd. */
	virtio_pci_hold(blk_pci(vm, i), true);
	ret = image_resize(blk->img, bytes);
	if (ret == 0)
		ret = image_flush(blk->img);
	virtio_pci_hold(blk_pci(vm, i), false);
	if (ret < 0)
		return vi_error_wrap("disk %zu", i);
	/* The transport's lock is taken before a queue's on a vCPU: never inside the hold. */
	virtio_pci_lock(blk_pci(vm, i));
	blk->config.capacity = bytes / SECTOR;
	virtio_pci_unlock(blk_pci(vm, i));
	/* The guest re-reads the capacity on the configuration interrupt. */
	virtio_pci_config_changed(blk_pci(vm, i));
	return 0;
}

uint64_t vmm_disk_size(struct vmm *vm, size_t i)
{
	struct virtio_blk *blk = i < vm->cfg.ndisks ? blk_of(vm, i) : NULL;

	return blk && blk->img ? image_size(blk->img) : 0;
}

int virtio_blk_replace(struct vmm *vm, const struct vmm_disk *disks, size_t n)
{
	const char **moving = xcalloc(n + 1, sizeof(*moving));
	size_t i, moved;
	int ret = 0;

	if (n != vm->cfg.ndisks)
		ret = vi_error(VI_EUSAGE, "%zu disks given for %zu", n, vm->cfg.ndisks);
	for (i = 0; i < n && ret == 0; i++) {
		const struct vmm_disk *d = &vm->cfg.disks[i];

		if (!same_file(d->path, disks[i].path) || d->format != disks[i].format ||
		    d->readonly != disks[i].readonly)
			moving[i] = disks[i].path;
	}
	for (i = 0; i < n && ret == 0; i++)
		if (moving[i] && !vm->cfg.disks[i].readonly && image_flush(blk_of(vm, i)->img) < 0)
			ret = vi_error_wrap("disk %zu", i);
	for (moved = 0; moved < n && ret == 0; moved++)
		if (moving[moved] && blk_move(blk_of(vm, moved), &disks[moved]) < 0)
			ret = vi_error_wrap("disk %zu", moved);
	if (ret < 0 && n == vm->cfg.ndisks)
		ret = switch_back(vm, moving, moved, ret);
	for (i = 0; i < n && ret == 0; i++) {
		struct vmm_disk *d = (struct vmm_disk *)&vm->cfg.disks[i];

		if (!moving[i])
			continue;
		free((char *)d->path);
		d->path = xstrdup(disks[i].path);
		d->format = disks[i].format;
		d->readonly = disks[i].readonly;
	}
	free(moving);
	return ret;
}

int vmm_open_disks(struct vmm *vm)
{
	for (size_t i = 0; i < vm->cfg.ndisks; i++)
		if (!blk_of(vm, i)->img && blk_open(blk_of(vm, i), &vm->cfg.disks[i]) < 0)
			return vi_error_wrap("disk %zu", i);
	return 0;
}

struct image *virtio_blk_image(struct vmm *vm, size_t i)
{
	return i < vm->cfg.ndisks ? blk_of(vm, i)->img : NULL;
}
