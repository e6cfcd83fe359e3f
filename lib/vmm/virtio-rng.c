/* virtio-rng: the guest's entropy source, fed from the host's getrandom(). */
#include <stdlib.h>
#include <sys/random.h>
#include <sys/uio.h>

#include "util.h"
#include "vmm/internal.h"

#define VIRTIO_ID_RNG 4

struct virtio_rng {
	struct iovec out[VIRTIO_QUEUE_SIZE], in[VIRTIO_QUEUE_SIZE];
};

static void virtio_rng_notify(void *dev, struct virtio_queue *q)
{
	struct virtio_rng *rng = dev;
	struct virtio_chain c = { .out = rng->out, .in = rng->in };

	while (virtio_queue_pop(q, &c)) {
		uint32_t written = 0;

		for (unsigned i = 0; i < c.nin; i++) {
			ssize_t n = getrandom(c.in[i].iov_base, c.in[i].iov_len, GRND_NONBLOCK);

			if (n <= 0)
				break;
			written += (uint32_t)n;
			if ((size_t)n < c.in[i].iov_len)
				break;
		}
		virtio_queue_push(q, c.head, written);
	}
}

/* No section beyond the transport's: it keeps nothing between requests. */
static const struct virtio_ops virtio_rng_ops = {
	.kind = "virtio-rng",
	.type = VIRTIO_ID_RNG,
	.pci_id = 0x1005,
	.pci_class = 0xff0000, /* unclassified */
	.nqueues = 1,
	.notify = virtio_rng_notify,
	.free = free,
};

int virtio_rng_init(struct vmm *vm)
{
	if (!vm->cfg.rng)
		return 0;
	return virtio_pci_add(vm, &virtio_rng_ops, xcalloc(1, sizeof(struct virtio_rng)), NULL);
}
