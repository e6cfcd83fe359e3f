/* Legacy virtio over PCI for the test kernels, driven by polling: PCI configuration
 * space, device set-up, split virtqueues and virtio-blk requests. */
#ifndef VI_GUEST_VIRTIO_H
#define VI_GUEST_VIRTIO_H

#include "guest.h"

#define WAIT_TSC 20000000000ull /* several seconds at any clock rate KVM shows */

/* The legacy virtio register block in BAR 0. */
#define VP_FEATURES       0x00
#define VP_GUEST_FEATURES 0x04
#define VP_QUEUE_PFN      0x08
#define VP_QUEUE_NUM      0x0c
#define VP_QUEUE_SEL      0x0e
#define VP_NOTIFY         0x10
#define VP_STATUS         0x12
#define VP_ISR            0x13
#define VP_CONFIG         0x14

#define QSIZE 256

/* virtio-blk request types and feature bits. */
#define BLK_IN     0
#define BLK_OUT    1
#define BLK_FLUSH  4
#define BLK_GET_ID 8
#define BLK_F_RO    (1u << 5)
#define BLK_F_FLUSH (1u << 9)

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

struct vq {
	struct desc *desc;
	volatile uint16_t *avail, *used;
	uint16_t io, index, last_used;
};

uint32_t pci_read(unsigned slot, unsigned reg);
void pci_write(unsigned slot, unsigned reg, uint32_t v);

/* Resets the device at I/O port `io`, accepts `features` and sets up `n` queues; false
 * when a queue does not have QSIZE entries. */
bool vp_setup(uint16_t io, uint32_t features, struct vq *qs, unsigned n);
/* Describes buffer i of a chain; device-writable when `write`. */
void vq_buf(struct vq *q, uint16_t i, const void *p, uint32_t len, bool write);
/* Makes a chain of `n` buffers available starting at descriptor `first`. */
void vq_add(struct vq *q, uint16_t first, unsigned n);
/* Waits for the device to use an entry; its length, or -1 on timeout. */
int64_t vq_wait(struct vq *q);
/* Notifies the device of the queue, then waits as vq_wait(). */
int64_t vq_kick_wait(struct vq *q);

/* One virtio-blk request of `type` at `sector` with a data buffer of len bytes (none
 * when 0); the device's status byte, or 0xfe when it does not answer. */
uint8_t blk_rw(struct vq *q, uint32_t type, uint64_t sector, void *buf, uint32_t len);

#endif
