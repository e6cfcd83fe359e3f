/* Legacy virtio over PCI for the test kernels: see virtio.h. */
#include "virtio.h"

#define PCI_ADDR 0xcf8
#define PCI_DATA 0xcfc

#define STATUS_ACK       1
#define STATUS_DRIVER    2
#define STATUS_DRIVER_OK 4

#define DESC_NEXT  1
#define DESC_WRITE 2

#define MAX_QUEUES 12

/* desc (4 KiB), avail (one page), used (one page): the legacy layout for 256 entries. */
static uint8_t rings[MAX_QUEUES][3 * 4096] __attribute__((aligned(4096)));
static unsigned rings_used;

uint32_t pci_read(unsigned slot, unsigned reg)
{
	outl(PCI_ADDR, 0x80000000u | slot << 11 | reg);
	return inl(PCI_DATA);
}

void pci_write(unsigned slot, unsigned reg, uint32_t v)
{
	outl(PCI_ADDR, 0x80000000u | slot << 11 | reg);
	outl(PCI_DATA, v);
}

bool vp_setup(uint16_t io, uint32_t features, struct vq *qs, unsigned n)
{
	bool sized = true;

	outb(io + VP_STATUS, 0);
	outb(io + VP_STATUS, STATUS_ACK | STATUS_DRIVER);
	outl(io + VP_GUEST_FEATURES, inl(io + VP_FEATURES) & features);
	for (unsigned i = 0; i < n; i++) {
		uint8_t *ring = rings[rings_used++];

		memset(ring, 0, sizeof(rings[0]));
		outw(io + VP_QUEUE_SEL, (uint16_t)i);
		sized &= inw(io + VP_QUEUE_NUM) == QSIZE;
		qs[i] = (struct vq){ (struct desc *)ring, (uint16_t *)(ring + 4096),
				     (uint16_t *)(ring + 8192), io, (uint16_t)i, 0 };
		outl(io + VP_QUEUE_PFN, (uint32_t)((uintptr_t)ring >> 12));
	}
	outb(io + VP_STATUS, STATUS_ACK | STATUS_DRIVER | STATUS_DRIVER_OK);
	return sized;
}

void vq_add(struct vq *q, uint16_t first, unsigned n)
{
	uint16_t idx = q->avail[1];

	for (unsigned i = 0; i < n; i++)
		q->desc[first + i].next = (uint16_t)(first + i + 1);
	q->desc[first + n - 1].flags &= (uint16_t)~DESC_NEXT;
	q->avail[2 + idx % QSIZE] = first;
	__atomic_store_n(&q->avail[1], (uint16_t)(idx + 1), __ATOMIC_RELEASE);
}

void vq_buf(struct vq *q, uint16_t i, const void *p, uint32_t len, bool write)
{
	q->desc[i] = (struct desc){ (uint64_t)(uintptr_t)p, len,
				    (uint16_t)(DESC_NEXT | (write ? DESC_WRITE : 0)), 0 };
}

int64_t vq_wait(struct vq *q)
{
	uint64_t deadline = rdtsc() + WAIT_TSC;
	int64_t len;

	while (__atomic_load_n(&q->used[1], __ATOMIC_ACQUIRE) == q->last_used)
		if (rdtsc() > deadline)
			return -1;
	len = *(volatile uint32_t *)((uint8_t *)q->used + 4 + 8 * (q->last_used % QSIZE) + 4);
	q->last_used++;
	return len;
}

int64_t vq_kick_wait(struct vq *q)
{
	outw(q->io + VP_NOTIFY, q->index);
	return vq_wait(q);
}

struct blk_req {
	uint32_t type, reserved;
	uint64_t sector;
};

uint8_t blk_rw(struct vq *q, uint32_t type, uint64_t sector, void *buf, uint32_t len)
{
	static struct blk_req req;
	static volatile uint8_t status;

	req = (struct blk_req){ type, 0, sector };
	status = 0xff;
	vq_buf(q, 0, &req, sizeof(req), false);
	if (len) {
		vq_buf(q, 1, buf, len, type != BLK_OUT);
		vq_buf(q, 2, (const void *)&status, 1, true);
		vq_add(q, 0, 3);
	} else {
		vq_buf(q, 1, (const void *)&status, 1, true);
		vq_add(q, 0, 2);
	}
	if (vq_kick_wait(q) < 0)
		return 0xfe;
	return status;
}
