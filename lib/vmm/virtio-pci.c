/* virtio over PCI, legacy flavour (virtio 0.9.5, "virtio-pci legacy"), and the split
 * virtqueue the devices share.
 *
 * Why legacy: one I/O-port BAR holds every register, so the guest drives a device with
 * port I/O alone. Port I/O is what a software KVM decodes cheapest (no instruction
 * emulation to find an MMIO operand), the notify register is a single port an
 * ioeventfd can match on, and interrupts are PCI INTA lines the ACPI _PRT describes,
 * so no MSI-X table is needed. Linux drives it (Debian builds
 * CONFIG_VIRTIO_PCI_LEGACY), and the test kernels need no MMIO mappings. The costs:
 * one interrupt per device (no per-queue vectors), rings below 16 TiB, 4 KiB ring
 * alignment, and no VIRTIO_F_VERSION_1 features. The device IDs stay 0x1000-0x103f,
 * so a later transitional device can add the modern capabilities beside this BAR. */
#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/uio.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "util.h"
#include "vmm/internal.h"

/* Legacy register block at the start of BAR 0. */
#define VIRTIO_PCI_HOST_FEATURES  0x00
#define VIRTIO_PCI_GUEST_FEATURES 0x04
#define VIRTIO_PCI_QUEUE_PFN      0x08
#define VIRTIO_PCI_QUEUE_NUM      0x0c
#define VIRTIO_PCI_QUEUE_SEL      0x0e
#define VIRTIO_PCI_QUEUE_NOTIFY   0x10
#define VIRTIO_PCI_STATUS         0x12
#define VIRTIO_PCI_ISR            0x13
#define VIRTIO_PCI_CONFIG         0x14
#define VIRTIO_PCI_BAR_SIZE       0x100

#define VIRTIO_ISR_QUEUE  0x1
#define VIRTIO_ISR_CONFIG 0x2

#define VRING_DESC_F_NEXT        1
#define VRING_DESC_F_WRITE       2
#define VRING_AVAIL_F_NO_INTERRUPT 1
#define VRING_ALIGN              4096

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

struct virtio_pci {
	struct vmm *vm;
	const char *name; /* the registry's */
	struct pci_device pci;
	const struct virtio_ops *ops;
	void *dev;
	struct iothread *io;
	pthread_mutex_t lock; /* the registers below but isr */
	uint32_t guest_features;
	uint16_t queue_sel;
	uint8_t status;
	/* The interrupt: I/O threads raise it holding a queue's lock, vCPUs take a
	 * queue's lock under `lock`, so this one is taken last and on its own. */
	pthread_mutex_t irq_lock;
	uint8_t isr;
	struct virtio_queue queues[VIRTIO_MAX_QUEUES];
};

void virtio_pci_lock(struct virtio_pci *vp)
{
	pthread_mutex_lock(&vp->lock);
}

void virtio_pci_unlock(struct virtio_pci *vp)
{
	pthread_mutex_unlock(&vp->lock);
}

struct iothread *virtio_pci_iothread(struct virtio_pci *vp)
{
	return vp->io;
}

struct virtio_queue *virtio_pci_queue(struct virtio_pci *vp, unsigned index)
{
	return &vp->queues[index];
}

struct vmm *virtio_pci_vm(struct virtio_pci *vp)
{
	return vp->vm;
}

void *virtio_pci_dev(struct virtio_pci *vp)
{
	return vp->dev;
}

/* The three parts of a ring at q->pfn; false when they are not all in guest memory. */
static bool virtio_ring(struct virtio_queue *q, struct vring_desc **desc, uint16_t **avail,
			uint16_t **used)
{
	uint64_t base = (uint64_t)q->pfn * VRING_ALIGN, n = VIRTIO_QUEUE_SIZE;
	uint64_t avail_off = 16 * n, used_off = (avail_off + 6 + 2 * n + VRING_ALIGN - 1) &
					       ~(uint64_t)(VRING_ALIGN - 1);
	uint8_t *ring;

	if (!q->pfn)
		return false;
	ring = vmm_gpa_to_hva(q->vp->vm, base, used_off + 6 + 8 * n);
	if (!ring)
		return false;
	*desc = (struct vring_desc *)ring;
	*avail = (uint16_t *)(ring + avail_off);
	*used = (uint16_t *)(ring + used_off);
	return true;
}

bool virtio_queue_pop(struct virtio_queue *q, struct virtio_chain *c)
{
	struct vring_desc *desc;
	uint16_t *avail, *used, idx;
	unsigned i, steps = 0;

	if (!virtio_ring(q, &desc, &avail, &used))
		return false;
	for (;;) {
		idx = __atomic_load_n(&avail[1], __ATOMIC_ACQUIRE);
		if (idx == q->last_avail)
			return false;
		c->head = avail[2 + q->last_avail % VIRTIO_QUEUE_SIZE];
		q->last_avail++;
		c->nout = c->nin = 0;
		for (i = c->head; i < VIRTIO_QUEUE_SIZE && steps++ < VIRTIO_QUEUE_SIZE;
		     i = desc[i].next) {
			struct vring_desc d = desc[i];
			void *p = vmm_gpa_to_hva(q->vp->vm, d.addr, d.len);

			if (!p && d.len)
				break;
			if (d.flags & VRING_DESC_F_WRITE)
				c->in[c->nin++] = (struct iovec){ p, d.len };
			else if (c->nin) /* readable after writable: malformed */
				break;
			else
				c->out[c->nout++] = (struct iovec){ p, d.len };
			if (!(d.flags & VRING_DESC_F_NEXT))
				return true;
		}
		/* A broken chain goes back unused rather than stall the queue. */
		virtio_queue_push(q, c->head, 0);
	}
}

/* Walks the iov from `skip`, handing each piece to copy(); returns the bytes done. */
static size_t virtio_iov_walk(const struct iovec *iov, unsigned n, size_t skip, uint8_t *buf,
			      size_t len, bool to_iov)
{
	size_t done = 0;

	for (unsigned i = 0; i < n && done < len; i++) {
		size_t take;

		if (skip >= iov[i].iov_len) {
			skip -= iov[i].iov_len;
			continue;
		}
		take = iov[i].iov_len - skip;
		if (take > len - done)
			take = len - done;
		if (to_iov)
			memcpy((uint8_t *)iov[i].iov_base + skip, buf + done, take);
		else
			memcpy(buf + done, (uint8_t *)iov[i].iov_base + skip, take);
		done += take;
		skip = 0;
	}
	return done;
}

size_t virtio_iov_read(const struct iovec *iov, unsigned n, size_t skip, void *buf, size_t len)
{
	return virtio_iov_walk(iov, n, skip, buf, len, false);
}

size_t virtio_iov_write(const struct iovec *iov, unsigned n, size_t skip, const void *buf,
			size_t len)
{
	return virtio_iov_walk(iov, n, skip, (uint8_t *)buf, len, true);
}

static void virtio_interrupt(struct virtio_pci *vp, uint8_t why)
{
	pthread_mutex_lock(&vp->irq_lock);
	vp->isr |= why;
	pci_irq_set(&vp->pci, true);
	pthread_mutex_unlock(&vp->irq_lock);
}

/* A chain handed back: the buffers it let the device write are dirty guest memory for
 * a migration (the guest does not touch a chain while the device holds it). */
static void virtio_chain_dirty(struct virtio_queue *q, const struct vring_desc *desc,
			       uint16_t head)
{
	unsigned steps = 0;

	for (unsigned i = head; i < VIRTIO_QUEUE_SIZE && steps++ < VIRTIO_QUEUE_SIZE;
	     i = desc[i].next) {
		if (desc[i].flags & VRING_DESC_F_WRITE)
			vmm_mark_dirty(q->vp->vm, desc[i].addr, desc[i].len);
		if (!(desc[i].flags & VRING_DESC_F_NEXT))
			break;
	}
}

void virtio_queue_push(struct virtio_queue *q, uint16_t head, uint32_t len)
{
	struct vring_desc *desc;
	uint16_t *avail, *used, idx;
	uint32_t *elem;

	if (!virtio_ring(q, &desc, &avail, &used))
		return;
	virtio_chain_dirty(q, desc, head);
	idx = used[1];
	elem = (uint32_t *)(used + 2) + 2 * (idx % VIRTIO_QUEUE_SIZE);
	elem[0] = head;
	elem[1] = len;
	__atomic_store_n(&used[1], (uint16_t)(idx + 1), __ATOMIC_RELEASE);
	/* The ring starts with the descriptor table. */
	vmm_mark_dirty(q->vp->vm,
		       (uint64_t)q->pfn * VRING_ALIGN + (uint64_t)((uint8_t *)used - (uint8_t *)desc),
		       4 + 8 * VIRTIO_QUEUE_SIZE);
	/* The used index must be visible before we read whether the guest wants to know. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!(__atomic_load_n(&avail[0], __ATOMIC_RELAXED) & VRING_AVAIL_F_NO_INTERRUPT))
		virtio_interrupt(q->vp, VIRTIO_ISR_QUEUE);
}

void virtio_pci_config_changed(struct virtio_pci *vp)
{
	virtio_interrupt(vp, VIRTIO_ISR_CONFIG);
}

/* On the I/O thread: the guest wrote the queue's notify register. */
static void virtio_queue_notified(void *opaque, int fd)
{
	struct virtio_queue *q = opaque;
	eventfd_t count;

	if (eventfd_read(fd, &count) < 0)
		return;
	pthread_mutex_lock(&q->lock);
	if (q->pfn)
		q->vp->ops->notify(q->vp->dev, q);
	pthread_mutex_unlock(&q->lock);
}

/* Status 0: the guest resets the device. Waits for the queues' work in progress. */
static void virtio_reset(struct virtio_pci *vp)
{
	for (unsigned i = 0; i < vp->ops->nqueues; i++) {
		struct virtio_queue *q = &vp->queues[i];

		pthread_mutex_lock(&q->lock);
		q->pfn = 0;
		q->last_avail = 0;
		pthread_mutex_unlock(&q->lock);
	}
	vp->guest_features = 0;
	vp->queue_sel = 0;
	pthread_mutex_lock(&vp->irq_lock);
	vp->isr = 0;
	pci_irq_set(&vp->pci, false);
	pthread_mutex_unlock(&vp->irq_lock);
}

static void virtio_pci_read(void *opaque, uint64_t offset, uint8_t *data, unsigned len)
{
	struct virtio_pci *vp = opaque;
	uint8_t regs[VIRTIO_PCI_CONFIG];

	memset(data, 0xff, len);
	pthread_mutex_lock(&vp->lock);
	if (offset >= VIRTIO_PCI_CONFIG) {
		unsigned off = (unsigned)offset - VIRTIO_PCI_CONFIG;

		if (off + len <= vp->ops->config_size && vp->ops->config_read)
			vp->ops->config_read(vp->dev, off, data, len);
	} else if (offset + len <= VIRTIO_PCI_CONFIG) {
		struct virtio_queue *q = vp->queue_sel < vp->ops->nqueues
						 ? &vp->queues[vp->queue_sel]
						 : NULL;
		uint32_t pfn = 0;
		uint16_t num = q ? VIRTIO_QUEUE_SIZE : 0;

		if (q) {
			pthread_mutex_lock(&q->lock);
			pfn = q->pfn;
			pthread_mutex_unlock(&q->lock);
		}
		memset(regs, 0, sizeof(regs));
		memcpy(&regs[VIRTIO_PCI_HOST_FEATURES], &vp->ops->features, 4);
		memcpy(&regs[VIRTIO_PCI_GUEST_FEATURES], &vp->guest_features, 4);
		memcpy(&regs[VIRTIO_PCI_QUEUE_PFN], &pfn, 4);
		memcpy(&regs[VIRTIO_PCI_QUEUE_NUM], &num, 2);
		memcpy(&regs[VIRTIO_PCI_QUEUE_SEL], &vp->queue_sel, 2);
		regs[VIRTIO_PCI_STATUS] = vp->status;
		pthread_mutex_lock(&vp->irq_lock);
		regs[VIRTIO_PCI_ISR] = vp->isr;
		/* Reading the ISR acknowledges the interrupt. */
		if (offset <= VIRTIO_PCI_ISR && offset + len > VIRTIO_PCI_ISR) {
			vp->isr = 0;
			pci_irq_set(&vp->pci, false);
		}
		pthread_mutex_unlock(&vp->irq_lock);
		memcpy(data, &regs[offset], len);
	}
	pthread_mutex_unlock(&vp->lock);
}

static void virtio_pci_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned len)
{
	struct virtio_pci *vp = opaque;
	uint32_t v = 0;

	memcpy(&v, data, len < 4 ? len : 4);
	if (offset == VIRTIO_PCI_QUEUE_NOTIFY && len == 2) {
		/* Reached only without an ioeventfd (or from vmm_io()): hand the work over
		 * as KVM would. */
		if (v < vp->ops->nqueues && eventfd_write(vp->queues[v].notify_fd, 1) < 0)
			vmm_fail(vp->vm, "%s: cannot signal queue %u", vp->name, v);
		return;
	}
	pthread_mutex_lock(&vp->lock);
	if (offset >= VIRTIO_PCI_CONFIG) {
		unsigned off = (unsigned)offset - VIRTIO_PCI_CONFIG;

		if (off + len <= vp->ops->config_size && vp->ops->config_write)
			vp->ops->config_write(vp->dev, off, data, len);
	} else if (offset == VIRTIO_PCI_GUEST_FEATURES && len == 4) {
		vp->guest_features = v & vp->ops->features;
	} else if (offset == VIRTIO_PCI_QUEUE_PFN && len == 4) {
		if (vp->queue_sel < vp->ops->nqueues) {
			struct virtio_queue *q = &vp->queues[vp->queue_sel];

			pthread_mutex_lock(&q->lock);
			q->pfn = v;
			q->last_avail = 0;
			pthread_mutex_unlock(&q->lock);
		}
	} else if (offset == VIRTIO_PCI_QUEUE_SEL && len == 2) {
		vp->queue_sel = (uint16_t)v;
	} else if (offset == VIRTIO_PCI_STATUS && len == 1) {
		vp->status = (uint8_t)v;
		if (!v)
			virtio_reset(vp);
	}
	pthread_mutex_unlock(&vp->lock);
}

static const struct vmm_io_ops virtio_pci_ops = { virtio_pci_read, virtio_pci_write };

void virtio_pci_hold(void *opaque, bool on)
{
	struct virtio_pci *vp = opaque;

	for (unsigned i = 0; i < vp->ops->nqueues; i++) {
		if (on)
			pthread_mutex_lock(&vp->queues[i].lock);
		else
			pthread_mutex_unlock(&vp->queues[i].lock);
	}
}

/* The interrupt follows the restored ISR, and each queue is looked at once: the guest
 * may have notified a request the saved device had not taken yet, and will not notify
 * it again. */
static int virtio_pci_post_load(void *opaque)
{
	struct virtio_pci *vp = opaque;

	pthread_mutex_lock(&vp->irq_lock);
	pci_irq_set(&vp->pci, vp->isr != 0);
	pthread_mutex_unlock(&vp->irq_lock);
	for (unsigned i = 0; i < vp->ops->nqueues; i++)
		if (vp->queues[i].pfn && eventfd_write(vp->queues[i].notify_fd, 1) < 0)
			return vi_error_errno(VI_EFAIL, errno, "cannot wake queue %u", i);
	return 0;
}

static const struct vi_state_field virtio_queue_fields[] = {
	VI_STATE_FIELD(struct virtio_queue, pfn),
	VI_STATE_FIELD(struct virtio_queue, last_avail),
	VI_STATE_FIELDS_END,
};

static const struct vi_state_desc virtio_queue_state = {
	.name = "virtqueue", .fields = virtio_queue_fields,
};

static const struct vi_state_field virtio_pci_fields[] = {
	VI_STATE_FIELD(struct virtio_pci, guest_features),
	VI_STATE_FIELD(struct virtio_pci, queue_sel),
	VI_STATE_FIELD(struct virtio_pci, status),
	VI_STATE_FIELD(struct virtio_pci, isr),
	VI_STATE_NESTED(struct virtio_pci, pci, struct pci_device, pci_function_state),
	VI_STATE_NESTED(struct virtio_pci, queues, struct virtio_queue, virtio_queue_state),
	VI_STATE_FIELDS_END,
};

/* The transport of any virtio device, one section per device (its instance is the
 * device's PCI slot); what the device adds is a section of its own. */
static const struct vi_state_desc virtio_pci_state = {
	.name = "virtio-pci", .id = VMM_SECTION_VIRTIO, .version = 1, .oldest = 1,
	.fields = virtio_pci_fields, .post_load = virtio_pci_post_load,
};

static void virtio_pci_free(void *opaque)
{
	struct virtio_pci *vp = opaque;

	/* The thread first: nothing may run on the queues while they go. */
	iothread_free(vp->io);
	for (unsigned i = 0; i < vp->ops->nqueues; i++) {
		if (vp->queues[i].notify_fd >= 0)
			close(vp->queues[i].notify_fd);
		pthread_mutex_destroy(&vp->queues[i].lock);
	}
	vp->ops->free(vp->dev);
	pthread_mutex_destroy(&vp->lock);
	pthread_mutex_destroy(&vp->irq_lock);
	free(vp);
}

/* The guest's notify writes signal the queue's eventfd inside KVM, without an exit. A
 * KVM that refuses leaves the write to virtio_pci_write(), which does the same. */
static void virtio_ioeventfd(struct virtio_pci *vp, struct virtio_queue *q)
{
	struct kvm_ioeventfd ev = {
		.datamatch = q->index,
		.addr = pci_bar_address(&vp->pci, 0) + VIRTIO_PCI_QUEUE_NOTIFY,
		.len = 2,
		.fd = q->notify_fd,
		.flags = KVM_IOEVENTFD_FLAG_DATAMATCH | KVM_IOEVENTFD_FLAG_PIO,
	};

	if (ioctl(vp->vm->vm_fd, KVM_IOEVENTFD, &ev) < 0)
		vi_debug("%s: no ioeventfd for queue %u: %s", vp->name, q->index,
			 strerror(errno));
}

int virtio_pci_add(struct vmm *vm, const struct virtio_ops *ops, void *dev,
		   struct virtio_pci **out)
{
	struct virtio_pci *vp = xcalloc(1, sizeof(*vp));
	uint8_t *c = vp->pci.config;
	int ret;

	vp->vm = vm;
	vp->ops = ops;
	vp->dev = dev;
	pthread_mutex_init(&vp->lock, NULL);
	pthread_mutex_init(&vp->irq_lock, NULL);
	for (unsigned i = 0; i < ops->nqueues; i++) {
		vp->queues[i] = (struct virtio_queue){ .vp = vp, .index = i };
		pthread_mutex_init(&vp->queues[i].lock, NULL);
		vp->queues[i].notify_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	}
	c[0] = 0xf4; /* vendor 0x1af4 */
	c[1] = 0x1a;
	c[2] = (uint8_t)ops->pci_id;
	c[3] = (uint8_t)(ops->pci_id >> 8);
	c[0x09] = (uint8_t)ops->pci_class;
	c[0x0a] = (uint8_t)(ops->pci_class >> 8);
	c[0x0b] = (uint8_t)(ops->pci_class >> 16);
	c[0x10] = 1; /* BAR 0: I/O */
	c[0x2c] = 0xf4;
	c[0x2d] = 0x1a;
	c[0x2e] = (uint8_t)ops->type;
	c[0x3d] = 1; /* INTA */
	vp->pci.bar_size[0] = VIRTIO_PCI_BAR_SIZE;
	/* The slot names the device's sections: it must be known before registering. */
	ret = pci_device_add(vm, &vp->pci);
	if (ret < 0) {
		virtio_pci_free(vp);
		return ret;
	}
	vp->name = vmm_device_add(vm, &(struct vmm_device){
		.kind = ops->kind, .dev = vp, .lock = &vp->lock, .hold = virtio_pci_hold,
		.free = virtio_pci_free,
		.sections = { { &virtio_pci_state, vp, vp->pci.slot },
			      { ops->state, dev, vp->pci.slot } } });
	vp->io = iothread_new(vp->name);
	ret = vmm_bus_register(vm, VMM_BUS_PIO, pci_bar_address(&vp->pci, 0), VIRTIO_PCI_BAR_SIZE,
			       &virtio_pci_ops, vp);
	for (unsigned i = 0; ret == 0 && i < ops->nqueues; i++) {
		struct virtio_queue *q = &vp->queues[i];

		if (q->notify_fd < 0)
			ret = vi_error_errno(VI_EFAIL, errno, "%s: cannot make an eventfd",
					     vp->name);
		else
			ret = iothread_watch(vp->io, q->notify_fd, virtio_queue_notified, q);
		if (ret == 0)
			virtio_ioeventfd(vp, q);
	}
	if (ret == 0)
		ret = iothread_start(vp->io);
	if (ret == 0 && out)
		*out = vp;
	return ret;
}
