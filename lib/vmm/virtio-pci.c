/* virtio over PCI, legacy flavour (virtio 0.9.5, "virtio-pci legacy") for most devices,
 * the modern one (virtio 1.0) for those that exist only there, and the split virtqueue
 * they share.
 *
 * Why legacy: one I/O-port BAR holds every register, so the guest drives a device with
 * port I/O alone. Port I/O is what a software KVM decodes cheapest (no instruction
 * emulation to find an MMIO operand), the notify register is a single port an
 * ioeventfd can match on, and interrupts are PCI INTA lines the ACPI _PRT describes,
 * so no MSI-X table is needed. Linux drives it (Debian builds
 * CONFIG_VIRTIO_PCI_LEGACY), and the test kernels need no MMIO mappings. The costs:
 * one interrupt per device (no per-queue vectors), rings below 16 TiB, 4 KiB ring
 * alignment, and no VIRTIO_F_VERSION_1 features. The device IDs stay 0x1000-0x103f,
 * so a later transitional device can add the modern capabilities beside this BAR.
 *
 * Modern: a device that virtio 1.0 defined (virtio-mem) has no legacy interface. Its
 * registers sit in one memory BAR, found through vendor-specific PCI capabilities:
 * common configuration, ISR, device configuration and one notify word a queue, which
 * an ioeventfd matches. Interrupts are still INTA (no MSI-X capability), and the queues
 * keep the split layout, but at the three 64-bit addresses the guest chooses. */
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

#define VIRTIO_STATUS_FEATURES_OK 0x8
#define VIRTIO_F_VERSION_1        32

/* The modern memory BAR: each structure in its own page. */
#define VIRTIO_MODERN_COMMON     0x0000
#define VIRTIO_MODERN_ISR        0x1000
#define VIRTIO_MODERN_DEVICE     0x2000
#define VIRTIO_MODERN_NOTIFY     0x3000
#define VIRTIO_MODERN_NOTIFY_MUL 4 /* bytes between two queues' notify words */
#define VIRTIO_MODERN_BAR_SIZE   0x4000

/* The common configuration structure (virtio 1.0, 4.1.4.3). */
#define VIRTIO_COMMON_DFSELECT   0x00
#define VIRTIO_COMMON_DF         0x04
#define VIRTIO_COMMON_GFSELECT   0x08
#define VIRTIO_COMMON_GF         0x0c
#define VIRTIO_COMMON_MSIX       0x10
#define VIRTIO_COMMON_NUMQ       0x12
#define VIRTIO_COMMON_STATUS     0x14
#define VIRTIO_COMMON_CFGGEN     0x15
#define VIRTIO_COMMON_Q_SELECT   0x16
#define VIRTIO_COMMON_Q_SIZE     0x18
#define VIRTIO_COMMON_Q_MSIX     0x1a
#define VIRTIO_COMMON_Q_ENABLE   0x1c
#define VIRTIO_COMMON_Q_NOFF     0x1e
#define VIRTIO_COMMON_Q_DESC     0x20
#define VIRTIO_COMMON_Q_AVAIL    0x28
#define VIRTIO_COMMON_Q_USED     0x30
#define VIRTIO_COMMON_SIZE       0x38
#define VIRTIO_MSI_NO_VECTOR     0xffff

/* Vendor-specific capability types (virtio 1.0, 4.1.4). */
#define VIRTIO_CAP_COMMON 1
#define VIRTIO_CAP_NOTIFY 2
#define VIRTIO_CAP_ISR    3
#define VIRTIO_CAP_DEVICE 4
#define PCI_CAP_VENDOR    0x09
#define PCI_CAP_FIRST     0x40

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
	uint32_t guest_features; /* legacy */
	uint16_t queue_sel;
	uint8_t status;
	/* Modern: the feature words selected, what the driver accepted, and the count of
	 * configuration changes the guest reads to see that one came under its reads. */
	uint32_t device_feature_select, driver_feature_select;
	uint64_t driver_features;
	uint8_t config_generation;
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

/* A legacy queue's ring at page q->pfn: VIRTIO_QUEUE_SIZE entries, the used ring on
 * the next page boundary after the available one. */
static void virtio_queue_legacy_layout(struct virtio_queue *q)
{
	uint64_t n = VIRTIO_QUEUE_SIZE;

	q->size = VIRTIO_QUEUE_SIZE;
	q->enabled = q->pfn != 0;
	q->desc = (uint64_t)q->pfn * VRING_ALIGN;
	q->avail = q->desc + 16 * n;
	q->used = (q->avail + 6 + 2 * n + VRING_ALIGN - 1) & ~(uint64_t)(VRING_ALIGN - 1);
}

/* The three parts of q's ring; false when the queue is off or they are not all in
 * guest memory. */
static bool virtio_ring(struct virtio_queue *q, struct vring_desc **desc, uint16_t **avail,
			uint16_t **used)
{
	uint64_t n = q->size;

	if (!q->enabled || !n)
		return false;
	*desc = vmm_gpa_to_hva(q->vp->vm, q->desc, 16 * n);
	*avail = vmm_gpa_to_hva(q->vp->vm, q->avail, 6 + 2 * n);
	*used = vmm_gpa_to_hva(q->vp->vm, q->used, 6 + 8 * n);
	return *desc && *avail && *used;
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
		c->head = avail[2 + q->last_avail % q->size];
		q->last_avail++;
		c->nout = c->nin = 0;
		for (i = c->head; i < q->size && steps++ < q->size; i = desc[i].next) {
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

	for (unsigned i = head; i < q->size && steps++ < q->size; i = desc[i].next) {
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
	elem = (uint32_t *)(used + 2) + 2 * (idx % q->size);
	elem[0] = head;
	elem[1] = len;
	__atomic_store_n(&used[1], (uint16_t)(idx + 1), __ATOMIC_RELEASE);
	vmm_mark_dirty(q->vp->vm, q->used, 4 + 8 * (uint64_t)q->size);
	/* The used index must be visible before we read whether the guest wants to know. */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!(__atomic_load_n(&avail[0], __ATOMIC_RELAXED) & VRING_AVAIL_F_NO_INTERRUPT))
		virtio_interrupt(q->vp, VIRTIO_ISR_QUEUE);
}

void virtio_pci_config_changed(struct virtio_pci *vp)
{
	pthread_mutex_lock(&vp->lock);
	vp->config_generation++;
	pthread_mutex_unlock(&vp->lock);
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
	if (q->enabled)
		q->vp->ops->notify(q->vp->dev, q);
	pthread_mutex_unlock(&q->lock);
}

/* Status 0: the guest resets the device. Waits for the queues' work in progress, unless
 * the caller holds the queues already (virtio_pci_hold()). */
static void virtio_reset(struct virtio_pci *vp, bool queues_held)
{
	for (unsigned i = 0; i < vp->ops->nqueues; i++) {
		struct virtio_queue *q = &vp->queues[i];

		if (!queues_held)
			pthread_mutex_lock(&q->lock);
		q->pfn = 0;
		q->last_avail = 0;
		virtio_queue_legacy_layout(q);
		q->desc = q->avail = q->used = 0;
		if (!queues_held)
			pthread_mutex_unlock(&q->lock);
	}
	vp->guest_features = 0;
	vp->driver_features = 0;
	vp->device_feature_select = vp->driver_feature_select = 0;
	vp->queue_sel = 0;
	vp->status = 0;
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
		uint32_t features = (uint32_t)vp->ops->features;

		memset(regs, 0, sizeof(regs));
		memcpy(&regs[VIRTIO_PCI_HOST_FEATURES], &features, 4);
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
			virtio_queue_legacy_layout(q);
			pthread_mutex_unlock(&q->lock);
		}
	} else if (offset == VIRTIO_PCI_QUEUE_SEL && len == 2) {
		vp->queue_sel = (uint16_t)v;
	} else if (offset == VIRTIO_PCI_STATUS && len == 1) {
		vp->status = (uint8_t)v;
		if (!v)
			virtio_reset(vp, false);
	}
	pthread_mutex_unlock(&vp->lock);
}

static const struct vmm_io_ops virtio_pci_ops = { virtio_pci_read, virtio_pci_write };

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)get16(p) | (uint32_t)get16(p + 2) << 16;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)v);
	put16(p + 2, (uint16_t)(v >> 16));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

/* The selected queue, or NULL when the guest selected none there is. */
static struct virtio_queue *virtio_selected(struct virtio_pci *vp)
{
	return vp->queue_sel < vp->ops->nqueues ? &vp->queues[vp->queue_sel] : NULL;
}

/* The common configuration structure as the guest reads it now; vp->lock held. */
static void virtio_common_image(struct virtio_pci *vp, uint8_t *r)
{
	struct virtio_queue *q = virtio_selected(vp);
	uint32_t sel = vp->device_feature_select;

	memset(r, 0, VIRTIO_COMMON_SIZE);
	put32(r + VIRTIO_COMMON_DFSELECT, sel);
	put32(r + VIRTIO_COMMON_DF, sel < 2 ? (uint32_t)(vp->ops->features >> (32 * sel)) : 0);
	put32(r + VIRTIO_COMMON_GFSELECT, vp->driver_feature_select);
	put32(r + VIRTIO_COMMON_GF, vp->driver_feature_select < 2
					   ? (uint32_t)(vp->driver_features >>
							(32 * vp->driver_feature_select))
					   : 0);
	put16(r + VIRTIO_COMMON_MSIX, VIRTIO_MSI_NO_VECTOR);
	put16(r + VIRTIO_COMMON_NUMQ, (uint16_t)vp->ops->nqueues);
	r[VIRTIO_COMMON_STATUS] = vp->status;
	r[VIRTIO_COMMON_CFGGEN] = vp->config_generation;
	put16(r + VIRTIO_COMMON_Q_SELECT, vp->queue_sel);
	put16(r + VIRTIO_COMMON_Q_MSIX, VIRTIO_MSI_NO_VECTOR);
	if (!q)
		return;
	pthread_mutex_lock(&q->lock);
	put16(r + VIRTIO_COMMON_Q_SIZE, q->size);
	put16(r + VIRTIO_COMMON_Q_ENABLE, q->enabled);
	put16(r + VIRTIO_COMMON_Q_NOFF, (uint16_t)q->index);
	put64(r + VIRTIO_COMMON_Q_DESC, q->desc);
	put64(r + VIRTIO_COMMON_Q_AVAIL, q->avail);
	put64(r + VIRTIO_COMMON_Q_USED, q->used);
	pthread_mutex_unlock(&q->lock);
}

/* Whether a write to [off, off+len) touched the register [reg, reg+size). */
static bool touched(uint64_t off, unsigned len, unsigned reg, unsigned size)
{
	return off < reg + size && off + len > reg;
}

/* A write to the common configuration: the registers it touched take their new value
 * from the structure with the written bytes in it (64-bit addresses come in halves). */
static void virtio_common_write(struct virtio_pci *vp, uint64_t off, const uint8_t *data,
				unsigned len)
{
	uint8_t r[VIRTIO_COMMON_SIZE];
	struct virtio_queue *q;

	virtio_common_image(vp, r);
	memcpy(r + off, data, len);
	if (touched(off, len, VIRTIO_COMMON_DFSELECT, 4))
		vp->device_feature_select = get32(r + VIRTIO_COMMON_DFSELECT);
	if (touched(off, len, VIRTIO_COMMON_GFSELECT, 4))
		vp->driver_feature_select = get32(r + VIRTIO_COMMON_GFSELECT);
	if (touched(off, len, VIRTIO_COMMON_GF, 4) && vp->driver_feature_select < 2) {
		unsigned shift = 32 * vp->driver_feature_select;

		vp->driver_features &= ~(0xffffffffull << shift);
		vp->driver_features |= (uint64_t)get32(r + VIRTIO_COMMON_GF) << shift &
				       vp->ops->features;
	}
	if (touched(off, len, VIRTIO_COMMON_STATUS, 1)) {
		uint8_t status = r[VIRTIO_COMMON_STATUS];

		/* A driver that is not a virtio 1.0 one cannot have this device. */
		if (!(vp->driver_features & (1ull << VIRTIO_F_VERSION_1)))
			status &= (uint8_t)~VIRTIO_STATUS_FEATURES_OK;
		vp->status = status;
		if (!status)
			virtio_reset(vp, false);
	}
	if (touched(off, len, VIRTIO_COMMON_Q_SELECT, 2))
		vp->queue_sel = get16(r + VIRTIO_COMMON_Q_SELECT);
	q = virtio_selected(vp);
	if (!q || off < VIRTIO_COMMON_Q_SIZE)
		return;
	pthread_mutex_lock(&q->lock);
	/* The ring is the guest's to move only while the queue is off. */
	if (!q->enabled) {
		uint16_t size = get16(r + VIRTIO_COMMON_Q_SIZE);

		if (size && size <= VIRTIO_QUEUE_SIZE && !(size & (size - 1)))
			q->size = size;
		q->desc = get64(r + VIRTIO_COMMON_Q_DESC);
		q->avail = get64(r + VIRTIO_COMMON_Q_AVAIL);
		q->used = get64(r + VIRTIO_COMMON_Q_USED);
		if (touched(off, len, VIRTIO_COMMON_Q_ENABLE, 2) &&
		    get16(r + VIRTIO_COMMON_Q_ENABLE) == 1) {
			q->last_avail = 0;
			q->enabled = 1;
		}
	}
	pthread_mutex_unlock(&q->lock);
}

static void virtio_modern_read(void *opaque, uint64_t offset, uint8_t *data, unsigned len)
{
	struct virtio_pci *vp = opaque;

	memset(data, 0, len);
	pthread_mutex_lock(&vp->lock);
	if (offset + len <= VIRTIO_MODERN_COMMON + VIRTIO_COMMON_SIZE) {
		uint8_t r[VIRTIO_COMMON_SIZE];

		virtio_common_image(vp, r);
		memcpy(data, r + offset, len);
	} else if (offset == VIRTIO_MODERN_ISR) {
		/* Reading the ISR acknowledges the interrupt. */
		pthread_mutex_lock(&vp->irq_lock);
		data[0] = vp->isr;
		vp->isr = 0;
		pci_irq_set(&vp->pci, false);
		pthread_mutex_unlock(&vp->irq_lock);
	} else if (offset >= VIRTIO_MODERN_DEVICE && offset < VIRTIO_MODERN_NOTIFY) {
		unsigned off = (unsigned)(offset - VIRTIO_MODERN_DEVICE);

		if (off + len <= vp->ops->config_size && vp->ops->config_read)
			vp->ops->config_read(vp->dev, off, data, len);
	}
	pthread_mutex_unlock(&vp->lock);
}

static void virtio_modern_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned len)
{
	struct virtio_pci *vp = opaque;

	if (offset >= VIRTIO_MODERN_NOTIFY) {
		uint64_t q = (offset - VIRTIO_MODERN_NOTIFY) / VIRTIO_MODERN_NOTIFY_MUL;

		/* Without an ioeventfd (or from vmm_io()): as KVM would. */
		if (q < vp->ops->nqueues && eventfd_write(vp->queues[q].notify_fd, 1) < 0)
			vmm_fail(vp->vm, "%s: cannot signal queue %u", vp->name, (unsigned)q);
		return;
	}
	pthread_mutex_lock(&vp->lock);
	if (offset + len <= VIRTIO_MODERN_COMMON + VIRTIO_COMMON_SIZE) {
		virtio_common_write(vp, offset, data, len);
	} else if (offset >= VIRTIO_MODERN_DEVICE) {
		unsigned off = (unsigned)(offset - VIRTIO_MODERN_DEVICE);

		if (off + len <= vp->ops->config_size && vp->ops->config_write)
			vp->ops->config_write(vp->dev, off, data, len);
	}
	pthread_mutex_unlock(&vp->lock);
}

static const struct vmm_io_ops virtio_modern_ops = { virtio_modern_read, virtio_modern_write };

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
	for (unsigned i = 0; i < vp->ops->nqueues; i++) {
		struct virtio_queue *q = &vp->queues[i];

		if (!vp->ops->modern)
			virtio_queue_legacy_layout(q);
		else if (!q->size || q->size > VIRTIO_QUEUE_SIZE || (q->size & (q->size - 1)))
			return vi_error(VI_EUSAGE, "queue %u has %u entries", i, q->size);
		if (q->enabled && eventfd_write(q->notify_fd, 1) < 0)
			return vi_error_errno(VI_EFAIL, errno, "cannot wake queue %u", i);
	}
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

/* The transport of any legacy virtio device, one section per device (its instance is
 * the device's PCI slot); what the device adds is a section of its own. */
static const struct vi_state_desc virtio_pci_state = {
	.name = "virtio-pci", .id = VMM_SECTION_VIRTIO, .version = 1, .oldest = 1,
	.fields = virtio_pci_fields, .post_load = virtio_pci_post_load,
};

static const struct vi_state_field virtio_modern_queue_fields[] = {
	VI_STATE_FIELD(struct virtio_queue, enabled),
	VI_STATE_FIELD(struct virtio_queue, size),
	VI_STATE_FIELD(struct virtio_queue, last_avail),
	VI_STATE_FIELD(struct virtio_queue, desc),
	VI_STATE_FIELD(struct virtio_queue, avail),
	VI_STATE_FIELD(struct virtio_queue, used),
	VI_STATE_FIELDS_END,
};

static const struct vi_state_desc virtio_modern_queue_state = {
	.name = "virtqueue-modern", .fields = virtio_modern_queue_fields,
};

static const struct vi_state_field virtio_modern_fields[] = {
	VI_STATE_FIELD(struct virtio_pci, driver_features),
	VI_STATE_FIELD(struct virtio_pci, device_feature_select),
	VI_STATE_FIELD(struct virtio_pci, driver_feature_select),
	VI_STATE_FIELD(struct virtio_pci, queue_sel),
	VI_STATE_FIELD(struct virtio_pci, status),
	VI_STATE_FIELD(struct virtio_pci, isr),
	VI_STATE_FIELD(struct virtio_pci, config_generation),
	VI_STATE_NESTED(struct virtio_pci, pci, struct pci_device, pci_function_state),
	VI_STATE_NESTED(struct virtio_pci, queues, struct virtio_queue, virtio_modern_queue_state),
	VI_STATE_FIELDS_END,
};

/* The modern transport's section: its rings are anywhere, of any size. */
static const struct vi_state_desc virtio_modern_state = {
	.name = "virtio-pci-modern", .id = VMM_SECTION_VIRTIO_MODERN, .version = 1, .oldest = 1,
	.fields = virtio_modern_fields, .post_load = virtio_pci_post_load,
};

/* For a saved state without the device: as the guest's reset leaves it, then the
 * device's own. Its queues are held, or no thread works on them yet. */
static void virtio_pci_reset(void *opaque)
{
	struct virtio_pci *vp = opaque;

	pthread_mutex_lock(&vp->lock);
	virtio_reset(vp, true);
	vp->config_generation = 0;
	pthread_mutex_unlock(&vp->lock);
	vp->pci.config[0x04] = vp->pci.config[0x05] = 0; /* the command register */
	vp->ops->reset(vp->dev);
}

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
 * KVM that refuses leaves the write to virtio_pci_write() or virtio_modern_write(),
 * which do the same. */
static void virtio_ioeventfd(struct virtio_pci *vp, struct virtio_queue *q)
{
	struct kvm_ioeventfd ev = {
		.datamatch = q->index,
		.addr = pci_bar_address(&vp->pci, 0) + VIRTIO_PCI_QUEUE_NOTIFY,
		.len = 2,
		.fd = q->notify_fd,
		.flags = KVM_IOEVENTFD_FLAG_DATAMATCH | KVM_IOEVENTFD_FLAG_PIO,
	};

	if (vp->ops->modern) {
		ev.addr = pci_bar_address(&vp->pci, 0) + VIRTIO_MODERN_NOTIFY +
			  VIRTIO_MODERN_NOTIFY_MUL * q->index;
		ev.flags = KVM_IOEVENTFD_FLAG_DATAMATCH;
	}

	if (ioctl(vp->vm->vm_fd, KVM_IOEVENTFD, &ev) < 0)
		vi_debug("%s: no ioeventfd for queue %u: %s", vp->name, q->index,
			 strerror(errno));
}

/* A vendor-specific capability at config[at] pointing at [offset, offset+len) of BAR 0;
 * returns where the next one goes. */
static unsigned virtio_cap(uint8_t *config, unsigned at, uint8_t type, uint32_t offset,
			   uint32_t len, bool last)
{
	unsigned size = type == VIRTIO_CAP_NOTIFY ? 20 : 16;

	config[at] = PCI_CAP_VENDOR;
	config[at + 1] = last ? 0 : (uint8_t)(at + size);
	config[at + 2] = (uint8_t)size;
	config[at + 3] = type;
	config[at + 4] = 0; /* BAR 0 */
	put32(&config[at + 8], offset);
	put32(&config[at + 12], len);
	if (type == VIRTIO_CAP_NOTIFY)
		put32(&config[at + 16], VIRTIO_MODERN_NOTIFY_MUL);
	return at + size;
}

/* The modern device's identity and its capabilities, BAR 0 a 32-bit memory BAR in the
 * PCI window. */
static void virtio_modern_config(struct virtio_pci *vp)
{
	uint8_t *c = vp->pci.config;
	uint16_t id = (uint16_t)(0x1040 + vp->ops->type);
	unsigned at = PCI_CAP_FIRST;

	put16(&c[2], id);
	c[0x06] = 0x10; /* status: a capabilities list */
	c[0x08] = 1;    /* revision 1: no legacy interface */
	c[0x10] = 0;    /* BAR 0: memory, 32-bit */
	put16(&c[0x2e], id);
	c[0x34] = PCI_CAP_FIRST;
	at = virtio_cap(c, at, VIRTIO_CAP_COMMON, VIRTIO_MODERN_COMMON, VIRTIO_COMMON_SIZE, false);
	at = virtio_cap(c, at, VIRTIO_CAP_ISR, VIRTIO_MODERN_ISR, 1, false);
	at = virtio_cap(c, at, VIRTIO_CAP_DEVICE, VIRTIO_MODERN_DEVICE, vp->ops->config_size,
			false);
	virtio_cap(c, at, VIRTIO_CAP_NOTIFY, VIRTIO_MODERN_NOTIFY,
		   VIRTIO_MODERN_NOTIFY_MUL * vp->ops->nqueues, true);
	vp->pci.bar_size[0] = VIRTIO_MODERN_BAR_SIZE;
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
		virtio_queue_legacy_layout(&vp->queues[i]);
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
	if (ops->modern)
		virtio_modern_config(vp);
	/* The slot names the device's sections: it must be known before registering. */
	ret = pci_device_add(vm, &vp->pci);
	if (ret < 0) {
		virtio_pci_free(vp);
		return ret;
	}
	vp->name = vmm_device_add(vm, &(struct vmm_device){
		.kind = ops->kind, .dev = vp, .lock = &vp->lock, .hold = virtio_pci_hold,
		.free = virtio_pci_free, .reset = ops->reset ? virtio_pci_reset : NULL,
		.sections = { { ops->modern ? &virtio_modern_state : &virtio_pci_state, vp,
				vp->pci.slot },
			      { ops->state, dev, vp->pci.slot } } });
	vp->io = iothread_new(vp->name);
	if (ops->modern)
		ret = vmm_bus_register(vm, VMM_BUS_MMIO, pci_bar_address(&vp->pci, 0),
				       VIRTIO_MODERN_BAR_SIZE, &virtio_modern_ops, vp);
	else
		ret = vmm_bus_register(vm, VMM_BUS_PIO, pci_bar_address(&vp->pci, 0),
				       VIRTIO_PCI_BAR_SIZE, &virtio_pci_ops, vp);
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

#define VIRTIO_STATUS_DRIVER_OK 0x04

int vmm_virtio_driver(struct vmm *vm, const char *kind)
{
	struct virtio_pci *vp = vmm_device_get(vm, kind, 0);
	uint8_t status;

	if (!vp)
		return VMM_DRIVER_NO_DEVICE;
	pthread_mutex_lock(&vp->lock);
	status = vp->status;
	pthread_mutex_unlock(&vp->lock);
	return status & VIRTIO_STATUS_DRIVER_OK ? VMM_DRIVER_ACTIVE : VMM_DRIVER_NONE;
}
