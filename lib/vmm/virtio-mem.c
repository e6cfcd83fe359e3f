/* virtio-mem (virtio 1.x, 5.15): memory beyond boot RAM, up to max_memory, that the
 * guest plugs block by block as the host asks, and the one call that sets a running
 * VM's memory, growing it here and shrinking it through the balloon.
 *
 * The device's region is one memory slot, mapped MAP_NORESERVE when the VM is made
 * (vmm_hotplug_region()): the host gives it memory only where the guest writes, which
 * it does to plugged blocks, and takes an unplugged block's memory back at once. So
 * dirty logging, saving and migration see plugged memory as any other, and nothing
 * changes KVM's slots while the guest runs. */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>

#include "error.h"
#include "util.h"
#include "vmm/internal.h"

#define VIRTIO_ID_MEM 24
#define VIRTIO_F_VERSION_1 32

/* Blocks the plugged map can tell apart: a larger region gets larger blocks. */
#define VIRTIO_MEM_MAP_WORDS 1024
#define VIRTIO_MEM_MAX_BLOCKS (64ull * VIRTIO_MEM_MAP_WORDS)

enum { MEM_REQ_PLUG, MEM_REQ_UNPLUG, MEM_REQ_UNPLUG_ALL, MEM_REQ_STATE };
enum { MEM_RESP_ACK, MEM_RESP_NACK, MEM_RESP_BUSY, MEM_RESP_ERROR };
enum { MEM_STATE_PLUGGED, MEM_STATE_UNPLUGGED, MEM_STATE_MIXED };

struct virtio_mem_config {
	uint64_t block_size;
	uint16_t node_id;
	uint8_t padding[6];
	uint64_t addr;
	uint64_t region_size;
	uint64_t usable_region_size;
	uint64_t plugged_size;
	uint64_t requested_size;
};

struct virtio_mem_req {
	uint16_t type;
	uint16_t padding[3];
	uint64_t addr;      /* PLUG, UNPLUG, STATE */
	uint16_t nb_blocks;
	uint16_t padding2[3];
};

struct virtio_mem_resp {
	uint16_t type;
	uint16_t padding[3];
	uint16_t state; /* STATE */
};

struct virtio_mem {
	struct vmm *vm;
	/* Guards config and plugged: taken inside the transport's lock (config reads)
	 * and a queue's (requests), never around either. */
	pthread_mutex_t lock;
	struct virtio_mem_config config;
	uint64_t plugged[VIRTIO_MEM_MAP_WORDS]; /* bit b: block b is plugged */
	struct iovec out[VIRTIO_QUEUE_SIZE], in[VIRTIO_QUEUE_SIZE];
};

static bool block_plugged(const struct virtio_mem *m, uint64_t b)
{
	return m->plugged[b / 64] >> (b % 64) & 1;
}

/* The guest loses the blocks' contents and the host gets their memory back; a
 * migration sends them again, as zeros. */
static void virtio_mem_discard(struct virtio_mem *m, uint64_t first, uint64_t n)
{
	uint64_t gpa = m->config.addr + first * m->config.block_size;
	uint64_t len = n * m->config.block_size;
	void *hva = vmm_gpa_to_hva(m->vm, gpa, len);

	if (hva)
		madvise(hva, len, MADV_DONTNEED);
	vmm_mark_dirty(m->vm, gpa, len);
}

/* Sets blocks [first, first+n) plugged or not; m->lock held. */
static void virtio_mem_set(struct virtio_mem *m, uint64_t first, uint64_t n, bool plug)
{
	for (uint64_t b = first; b < first + n; b++) {
		if (plug)
			m->plugged[b / 64] |= 1ull << (b % 64);
		else
			m->plugged[b / 64] &= ~(1ull << (b % 64));
	}
	if (plug) {
		m->config.plugged_size += n * m->config.block_size;
	} else {
		m->config.plugged_size -= n * m->config.block_size;
		virtio_mem_discard(m, first, n);
	}
}

/* One request: the response type, and for STATE the state in *state. */
static uint16_t virtio_mem_request(struct virtio_mem *m, const struct virtio_mem_req *req,
				   uint16_t *state)
{
	uint64_t bs = m->config.block_size, first, n = req->nb_blocks, plugged = 0;

	if (req->type == MEM_REQ_UNPLUG_ALL) {
		memset(m->plugged, 0, sizeof(m->plugged));
		if (m->config.plugged_size)
			virtio_mem_discard(m, 0, m->config.usable_region_size / bs);
		m->config.plugged_size = 0;
		return MEM_RESP_ACK;
	}
	if (req->type > MEM_REQ_STATE || !n || req->addr < m->config.addr ||
	    (req->addr - m->config.addr) % bs)
		return MEM_RESP_ERROR;
	first = (req->addr - m->config.addr) / bs;
	if (first > m->config.usable_region_size / bs ||
	    n > m->config.usable_region_size / bs - first)
		return MEM_RESP_ERROR;
	for (uint64_t b = first; b < first + n; b++)
		plugged += block_plugged(m, b);
	switch (req->type) {
	case MEM_REQ_PLUG:
		if (plugged)
			return MEM_RESP_ERROR;
		if (m->config.plugged_size + n * bs > m->config.requested_size)
			return MEM_RESP_NACK;
		virtio_mem_set(m, first, n, true);
		return MEM_RESP_ACK;
	case MEM_REQ_UNPLUG:
		if (plugged != n)
			return MEM_RESP_ERROR;
		virtio_mem_set(m, first, n, false);
		return MEM_RESP_ACK;
	default:
		*state = plugged == n ? MEM_STATE_PLUGGED
			 : plugged    ? MEM_STATE_MIXED
				      : MEM_STATE_UNPLUGGED;
		return MEM_RESP_ACK;
	}
}

static void virtio_mem_notify(void *dev, struct virtio_queue *q)
{
	struct virtio_mem *m = dev;
	struct virtio_chain c = { .out = m->out, .in = m->in };

	while (virtio_queue_pop(q, &c)) {
		struct virtio_mem_req req = { 0 };
		struct virtio_mem_resp resp = { .type = MEM_RESP_ERROR };
		size_t got = virtio_iov_read(c.out, c.nout, 0, &req, sizeof(req));

		if (got >= sizeof(req.type)) {
			pthread_mutex_lock(&m->lock);
			resp.type = virtio_mem_request(m, &req, &resp.state);
			pthread_mutex_unlock(&m->lock);
		}
		virtio_queue_push(q, c.head,
				  (uint32_t)virtio_iov_write(c.in, c.nin, 0, &resp, sizeof(resp)));
	}
}

static void virtio_mem_config_read(void *dev, unsigned offset, uint8_t *data, unsigned len)
{
	struct virtio_mem *m = dev;

	pthread_mutex_lock(&m->lock);
	memcpy(data, (uint8_t *)&m->config + offset, len);
	pthread_mutex_unlock(&m->lock);
}

/* Nothing plugged, nothing asked for: the device of a VM that has just been made. */
static void virtio_mem_reset(void *dev)
{
	struct virtio_mem *m = dev;

	pthread_mutex_lock(&m->lock);
	memset(m->plugged, 0, sizeof(m->plugged));
	m->config.plugged_size = m->config.requested_size = 0;
	pthread_mutex_unlock(&m->lock);
}

/* A saved map must say what the saved sizes say. */
static int virtio_mem_post_load(void *dev)
{
	struct virtio_mem *m = dev;
	uint64_t blocks = 0, usable = m->config.usable_region_size / m->config.block_size;

	for (uint64_t b = 0; b < VIRTIO_MEM_MAX_BLOCKS; b++)
		if (block_plugged(m, b) && b >= usable)
			return vi_error(VI_EUSAGE, "virtio-mem block %llu is past the region",
					(unsigned long long)b);
		else
			blocks += block_plugged(m, b);
	if (blocks * m->config.block_size != m->config.plugged_size ||
	    m->config.requested_size > m->config.usable_region_size)
		return vi_error(VI_EUSAGE, "virtio-mem's plugged blocks do not match its sizes");
	return 0;
}

/* The geometry is the configuration's and is not saved: a VM of the same shape has it. */
static const struct vi_state_field virtio_mem_fields[] = {
	{ "plugged_size", offsetof(struct virtio_mem, config.plugged_size), 8, 1, NULL, 0 },
	{ "requested_size", offsetof(struct virtio_mem, config.requested_size), 8, 1, NULL, 0 },
	VI_STATE_ARRAY(struct virtio_mem, plugged),
	VI_STATE_FIELDS_END,
};

static const struct vi_state_desc virtio_mem_state = {
	.name = "virtio-mem", .id = VMM_SECTION_VIRTIO_MEM, .version = 1, .oldest = 1,
	.fields = virtio_mem_fields, .post_load = virtio_mem_post_load,
};

static void virtio_mem_free(void *dev)
{
	struct virtio_mem *m = dev;

	pthread_mutex_destroy(&m->lock);
	free(m);
}

static const struct virtio_ops virtio_mem_ops = {
	.kind = "virtio-mem",
	.type = VIRTIO_ID_MEM,
	.modern = true,
	.pci_class = 0xff0000, /* unclassified */
	.nqueues = 1,
	.features = 1ull << VIRTIO_F_VERSION_1,
	.config_size = sizeof(struct virtio_mem_config),
	.config_read = virtio_mem_config_read,
	.notify = virtio_mem_notify,
	.state = &virtio_mem_state,
	.reset = virtio_mem_reset,
	.free = virtio_mem_free,
};

int virtio_mem_init(struct vmm *vm)
{
	struct virtio_mem *m;
	uint64_t gpa, size, block = VMM_HOTPLUG_BLOCK;

	vmm_hotplug_region(&vm->cfg, &gpa, &size);
	if (!size)
		return 0;
	while (size / block > VIRTIO_MEM_MAX_BLOCKS)
		block *= 2;
	m = xcalloc(1, sizeof(*m));
	m->vm = vm;
	pthread_mutex_init(&m->lock, NULL);
	m->config = (struct virtio_mem_config){ .block_size = block, .addr = gpa,
						.region_size = size, .usable_region_size = size };
	return virtio_pci_add(vm, &virtio_mem_ops, m, NULL);
}

void vmm_memory_size(struct vmm *vm, struct vmm_memory_size *out)
{
	struct virtio_pci *vp = vmm_device_get(vm, "virtio-mem", 0);
	uint32_t target = 0, actual = 0;

	*out = (struct vmm_memory_size){ .boot = vm->cfg.memory, .max = vm->cfg.max_memory };
	if (vp) {
		struct virtio_mem *m = virtio_pci_dev(vp);

		pthread_mutex_lock(&m->lock);
		out->requested = m->config.requested_size;
		out->plugged = m->config.plugged_size;
		pthread_mutex_unlock(&m->lock);
	}
	if (vmm_balloon_get(vm, &target, &actual) == 0) {
		out->balloon_target = (uint64_t)target * VI_STATE_PAGE;
		out->balloon_actual = (uint64_t)actual * VI_STATE_PAGE;
	}
}

int vmm_set_memory(struct vmm *vm, uint64_t bytes)
{
	struct virtio_pci *vp = vmm_device_get(vm, "virtio-mem", 0);
	uint64_t boot = vm->cfg.memory, requested = 0;
	char want[32], max[32], have[32];

	if (!bytes)
		return vi_error(VI_EUSAGE, "a VM cannot have no memory");
	if (bytes > vm->cfg.max_memory)
		return vi_error(VI_EUSAGE, "%s is past the VM's maximum memory, %s",
				vi_format_size(bytes, want, sizeof(want)),
				vi_format_size(vm->cfg.max_memory, max, sizeof(max)));
	if (bytes < boot && !vmm_device_get(vm, "virtio-balloon", 0))
		return vi_error(VI_EUNSUPPORTED, "%s is below the boot memory, %s, and the VM has "
				"no balloon to give memory back with",
				vi_format_size(bytes, want, sizeof(want)),
				vi_format_size(boot, have, sizeof(have)));
	if (vp) {
		struct virtio_mem *m = virtio_pci_dev(vp);
		uint64_t bs = m->config.block_size;

		/* Whole blocks, the last one only partly wanted. */
		if (bytes > boot)
			requested = (bytes - boot + bs - 1) / bs * bs;
		pthread_mutex_lock(&m->lock);
		if (requested > m->config.usable_region_size)
			requested = m->config.usable_region_size;
		m->config.requested_size = requested;
		pthread_mutex_unlock(&m->lock);
		virtio_pci_config_changed(vp);
	}
	if (!vmm_device_get(vm, "virtio-balloon", 0))
		return 0;
	return vmm_balloon_set(vm, bytes < boot ? (uint32_t)((boot - bytes) / VI_STATE_PAGE) : 0);
}
