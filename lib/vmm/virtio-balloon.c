/* virtio-balloon: the host asks the guest for pages (num_pages) and frees the memory
 * behind the ones the guest inflates; deflated pages come back, zeroed, on first touch.
 * The basis of growing and shrinking a running VM's memory. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>

#include "error.h"
#include "util.h"
#include "vmm/internal.h"

#define VIRTIO_ID_BALLOON 5
#define BALLOON_PAGE 4096u

struct virtio_balloon_config {
	uint32_t num_pages; /* what the host wants the balloon to hold */
	uint32_t actual;    /* what the guest says it holds */
};

struct virtio_balloon {
	struct virtio_balloon_config config;
	struct iovec out[VIRTIO_QUEUE_SIZE], in[VIRTIO_QUEUE_SIZE];
};

enum { BALLOON_INFLATE, BALLOON_DEFLATE };

static void virtio_balloon_notify(void *dev, struct virtio_queue *q)
{
	struct virtio_balloon *b = dev;
	struct virtio_chain c = { .out = b->out, .in = b->in };
	struct vmm *vm = virtio_pci_vm(q->vp);

	while (virtio_queue_pop(q, &c)) {
		for (unsigned i = 0; q->index == BALLOON_INFLATE && i < c.nout; i++) {
			const uint32_t *pfns = c.out[i].iov_base;

			for (size_t k = 0; k < c.out[i].iov_len / 4; k++) {
				void *page = vmm_gpa_to_hva(vm, (uint64_t)pfns[k] * BALLOON_PAGE,
							    BALLOON_PAGE);

				/* Private memory: the host gets the page back and the guest
				 * finds zeros there if it touches it again, or, for pages a
				 * restore mapped from a state file, what was saved (virtio
				 * promises nothing about a deflated page's contents). */
				if (page)
					madvise(page, BALLOON_PAGE, MADV_DONTNEED);
			}
		}
		virtio_queue_push(q, c.head, 0);
	}
}

static void virtio_balloon_config_read(void *dev, unsigned offset, uint8_t *data, unsigned len)
{
	struct virtio_balloon *b = dev;

	memcpy(data, (uint8_t *)&b->config + offset, len);
}

static void virtio_balloon_config_write(void *dev, unsigned offset, const uint8_t *data,
					unsigned len)
{
	struct virtio_balloon *b = dev;
	unsigned at = offsetof(struct virtio_balloon_config, actual);

	/* Only `actual` is the guest's to write. */
	for (unsigned i = 0; i < len; i++)
		if (offset + i >= at)
			((uint8_t *)&b->config)[offset + i] = data[i];
}

static const struct vi_state_field virtio_balloon_fields[] = {
	{ "num_pages", offsetof(struct virtio_balloon, config.num_pages), 4, 1, NULL, 0 },
	{ "actual", offsetof(struct virtio_balloon, config.actual), 4, 1, NULL, 0 },
	VI_STATE_FIELDS_END,
};

static const struct vi_state_desc virtio_balloon_state = {
	.name = "virtio-balloon", .id = VMM_SECTION_VIRTIO_BALLOON, .version = 1, .oldest = 1,
	.fields = virtio_balloon_fields,
};

static const struct virtio_ops virtio_balloon_ops = {
	.kind = "virtio-balloon",
	.type = VIRTIO_ID_BALLOON,
	.pci_id = 0x1002,
	.pci_class = 0xff0000, /* unclassified */
	.nqueues = 2,
	.config_size = sizeof(struct virtio_balloon_config),
	.config_read = virtio_balloon_config_read,
	.config_write = virtio_balloon_config_write,
	.notify = virtio_balloon_notify,
	.state = &virtio_balloon_state,
	.free = free,
};

int virtio_balloon_init(struct vmm *vm)
{
	if (!vm->cfg.balloon)
		return 0;
	return virtio_pci_add(vm, &virtio_balloon_ops, xcalloc(1, sizeof(struct virtio_balloon)),
			      NULL);
}

/* The VM's balloon transport, or an error. */
static int balloon_find(struct vmm *vm, struct virtio_pci **vp)
{
	*vp = vmm_device_get(vm, "virtio-balloon", 0);
	return *vp ? 0 : vi_error(VI_ENOTFOUND, "this VM has no balloon device");
}

int vmm_balloon_set(struct vmm *vm, uint32_t pages)
{
	struct virtio_pci *vp;
	int ret = balloon_find(vm, &vp);

	if (ret < 0)
		return ret;
	virtio_pci_lock(vp);
	((struct virtio_balloon *)virtio_pci_dev(vp))->config.num_pages = pages;
	virtio_pci_unlock(vp);
	virtio_pci_config_changed(vp);
	return 0;
}

int vmm_balloon_get(struct vmm *vm, uint32_t *target, uint32_t *actual)
{
	struct virtio_pci *vp;
	struct virtio_balloon *b;
	int ret = balloon_find(vm, &vp);

	if (ret < 0)
		return ret;
	b = virtio_pci_dev(vp);
	virtio_pci_lock(vp);
	*target = b->config.num_pages;
	*actual = b->config.actual;
	virtio_pci_unlock(vp);
	return 0;
}
