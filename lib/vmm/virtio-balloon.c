/* virtio-balloon: the host asks the guest for pages (num_pages) and frees the memory
 * behind the ones the guest inflates; deflated pages come back, zeroed, on first touch.
 * The basis of growing and shrinking a running VM's memory. */
#include <json-c/json.h>
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

				/* Private anonymous memory: the host gets the page back and
				 * the guest finds zeros there if it touches it again. */
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

static int virtio_balloon_save(void *dev, struct json_object *into)
{
	struct virtio_balloon *b = dev;

	json_object_object_add(into, "num_pages", json_object_new_int64(b->config.num_pages));
	json_object_object_add(into, "actual", json_object_new_int64(b->config.actual));
	return 0;
}

static int virtio_balloon_restore(void *dev, struct json_object *from)
{
	struct virtio_balloon *b = dev;
	struct json_object *num, *actual;

	if (!json_object_object_get_ex(from, "num_pages", &num) ||
	    !json_object_object_get_ex(from, "actual", &actual))
		return vi_error(VI_EUSAGE, "saved balloon state has no page counts");
	b->config.num_pages = (uint32_t)json_object_get_int64(num);
	b->config.actual = (uint32_t)json_object_get_int64(actual);
	return 0;
}

static const struct virtio_ops virtio_balloon_ops = {
	.type = VIRTIO_ID_BALLOON,
	.pci_id = 0x1002,
	.pci_class = 0xff0000, /* unclassified */
	.nqueues = 2,
	.config_size = sizeof(struct virtio_balloon_config),
	.config_read = virtio_balloon_config_read,
	.config_write = virtio_balloon_config_write,
	.notify = virtio_balloon_notify,
	.save = virtio_balloon_save,
	.restore = virtio_balloon_restore,
	.free = free,
};

int virtio_balloon_init(struct vmm *vm)
{
	if (!vm->cfg.balloon)
		return 0;
	return virtio_pci_add(vm, "virtio-balloon", &virtio_balloon_ops,
			      xcalloc(1, sizeof(struct virtio_balloon)), &vm->balloon);
}

/* The balloon behind vm->balloon, or NULL. */
static struct virtio_balloon *balloon_of(struct vmm *vm)
{
	return vm->balloon ? virtio_pci_dev(vm->balloon) : NULL;
}

int vmm_balloon_set(struct vmm *vm, uint32_t pages)
{
	struct virtio_balloon *b = balloon_of(vm);

	if (!b)
		return vi_error(VI_ENOTFOUND, "this VM has no balloon device");
	virtio_pci_lock(vm->balloon);
	b->config.num_pages = pages;
	virtio_pci_unlock(vm->balloon);
	virtio_pci_config_changed(vm->balloon);
	return 0;
}

int vmm_balloon_get(struct vmm *vm, uint32_t *target, uint32_t *actual)
{
	struct virtio_balloon *b = balloon_of(vm);

	if (!b)
		return vi_error(VI_ENOTFOUND, "this VM has no balloon device");
	virtio_pci_lock(vm->balloon);
	*target = b->config.num_pages;
	*actual = b->config.actual;
	virtio_pci_unlock(vm->balloon);
	return 0;
}
