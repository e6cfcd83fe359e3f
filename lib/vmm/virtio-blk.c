/* virtio-blk: one PCI device per disk, backed by lib/image (raw, or qcow2 with its
 * backing chain). Requests run on the disk's I/O thread. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "error.h"
#include "log.h"
#include "image.h"
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
	struct image *img;
	struct virtio_ops ops; /* features differ between read-only and writable disks */
	struct virtio_blk_config config;
	char id[VIRTIO_BLK_ID_BYTES];
	struct iovec out[VIRTIO_QUEUE_SIZE], in[VIRTIO_QUEUE_SIZE];
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
	uint64_t size = image_size(blk->img), offset;
	size_t len;

	*written = 0;
	if (virtio_iov_read(c->out, c->nout, 0, &req, sizeof(req)) != sizeof(req))
		return VIRTIO_BLK_S_IOERR;
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

static const struct virtio_ops virtio_blk_ops = {
	.type = VIRTIO_ID_BLOCK,
	.pci_id = 0x1001,
	.pci_class = 0x018000, /* mass storage, other */
	.nqueues = 1,
	.features = 1u << VIRTIO_BLK_F_SEG_MAX | 1u << VIRTIO_BLK_F_FLUSH,
	.config_size = sizeof(struct virtio_blk_config),
	.config_read = virtio_blk_config_read,
	.notify = virtio_blk_notify,
	.free = virtio_blk_free,
};

int virtio_blk_init(struct vmm *vm)
{
	for (size_t i = 0; i < vm->cfg.ndisks; i++) {
		const struct vmm_disk *d = &vm->cfg.disks[i];
		struct virtio_blk *blk = xcalloc(1, sizeof(*blk));
		char name[32];
		int ret;

		ret = image_open(d->path, d->format, d->readonly ? 0 : IMAGE_OPEN_WRITE, &blk->img);
		if (ret < 0) {
			free(blk);
			return vi_error_wrap("disk %zu", i);
		}
		blk->ops = virtio_blk_ops;
		if (d->readonly)
			blk->ops.features |= 1u << VIRTIO_BLK_F_RO;
		blk->config.capacity = image_size(blk->img) / SECTOR;
		blk->config.seg_max = VIRTIO_QUEUE_SIZE - 2;
		blk->config.blk_size = SECTOR;
		snprintf(blk->id, sizeof(blk->id), "vi-disk%u", (unsigned)i % 1000);
		snprintf(name, sizeof(name), "virtio-blk%zu", i);
		ret = virtio_pci_add(vm, name, &blk->ops, blk, NULL);
		if (ret < 0)
			return ret;
	}
	return 0;
}
