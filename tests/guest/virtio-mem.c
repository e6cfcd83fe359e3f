/* The guest side of virtio-mem over the modern virtio-pci transport: finds the device
 * through its vendor capabilities, negotiates VIRTIO_F_VERSION_1, then follows the
 * requested size for good: plugs blocks up to it, writes a pattern into each plugged
 * block and reads it back, and unplugs from the top when it drops. Prints
 *   virtio-mem: region 0xADDR N MiB, block N MiB
 *   virtio-mem: plugged N MiB, verified
 *   virtio-mem: unplugged to N MiB
 * The pattern of a block at guest-physical address A holds A ^ MEM_PATTERN in every
 * 64 KiB, so the host can check what a saved or migrated guest kept. */
#include "virtio.h"

REALMODE_BANNER("virtio-mem: boot me through the 64-bit entry\n");

#define VIRTIO_ID_MEM_PCI 0x1058
#define MEM_PATTERN       0x5649204d454d2121ull
#define PATTERN_STRIDE    0x10000u

#define CAP_COMMON 1
#define CAP_NOTIFY 2
#define CAP_ISR    3
#define CAP_DEVICE 4

/* The common configuration's registers. */
#define C_DFSELECT 0x00
#define C_DF       0x04
#define C_GFSELECT 0x08
#define C_GF       0x0c
#define C_STATUS   0x14
#define C_Q_SELECT 0x16
#define C_Q_SIZE   0x18
#define C_Q_ENABLE 0x1c
#define C_Q_NOFF   0x1e
#define C_Q_DESC   0x20
#define C_Q_AVAIL  0x28
#define C_Q_USED   0x30

#define S_ACK         1
#define S_DRIVER      2
#define S_DRIVER_OK   4
#define S_FEATURES_OK 8

/* The device configuration's fields. */
#define M_BLOCK_SIZE  0x00
#define M_ADDR        0x10
#define M_REGION_SIZE 0x18
#define M_USABLE      0x20
#define M_PLUGGED     0x28
#define M_REQUESTED   0x30

enum { REQ_PLUG, REQ_UNPLUG, REQ_UNPLUG_ALL, REQ_STATE };

struct mem_req {
	uint16_t type, pad[3];
	uint64_t addr;
	uint16_t nb_blocks, pad2[3];
};

struct mem_resp {
	uint16_t type, pad[3];
	uint16_t state;
};

static uint8_t ring[3][4096] __attribute__((aligned(4096)));
/* Page directories for the region above 4 GiB: the loader maps only the first 4. */
#define HIGH_GIB 8
static uint64_t high_pd[HIGH_GIB][512] __attribute__((aligned(4096)));

static volatile uint8_t *common, *isr, *config;
static volatile uint16_t *notify;

static uint64_t rd64(volatile uint8_t *p)
{
	return *(volatile uint32_t *)p | (uint64_t) * (volatile uint32_t *)(p + 4) << 32;
}

static void wr64(volatile uint8_t *p, uint64_t v)
{
	*(volatile uint32_t *)p = (uint32_t)v;
	*(volatile uint32_t *)(p + 4) = (uint32_t)(v >> 32);
}

/* The virtio-mem function's slot, or -1. */
static int find_device(void)
{
	for (unsigned slot = 0; slot < 32; slot++)
		if (pci_read(slot, 0) == (VIRTIO_ID_MEM_PCI << 16 | 0x1af4))
			return (int)slot;
	return -1;
}

/* Finds the four structures through the capability list; false when one is missing. */
static bool map_caps(unsigned slot)
{
	uint64_t bar = pci_read(slot, 0x10) & ~0xfu;
	unsigned at = pci_read(slot, 0x34) & 0xfc, n = 0;
	uint32_t mul = 0, notify_off = 0;

	pci_write(slot, 0x04, 0x2); /* memory space on */
	while (at && n++ < 48) {
		uint32_t head = pci_read(slot, at);
		uint8_t type = (uint8_t)(head >> 24);
		uint32_t off = pci_read(slot, at + 8);

		if ((head & 0xff) == 0x09 && (pci_read(slot, at + 4) & 0xff) == 0) {
			volatile uint8_t *p = (volatile uint8_t *)(uintptr_t)(bar + off);

			if (type == CAP_COMMON)
				common = p;
			else if (type == CAP_ISR)
				isr = p;
			else if (type == CAP_DEVICE)
				config = p;
			else if (type == CAP_NOTIFY) {
				notify_off = off;
				mul = pci_read(slot, at + 16);
			}
		}
		at = (head >> 8) & 0xfc;
	}
	if (!common || !isr || !config || !mul)
		return false;
	*(volatile uint16_t *)(common + C_Q_SELECT) = 0;
	notify = (volatile uint16_t *)(uintptr_t)(bar + notify_off +
						  mul * *(volatile uint16_t *)(common + C_Q_NOFF));
	return true;
}

/* Resets the device, takes VERSION_1 and nothing else, and sets queue 0 up. */
static bool device_setup(struct vq *q)
{
	uint32_t high;

	common[C_STATUS] = 0;
	while (common[C_STATUS])
		cpu_relax();
	common[C_STATUS] = S_ACK | S_DRIVER;
	*(volatile uint32_t *)(common + C_DFSELECT) = 1;
	high = *(volatile uint32_t *)(common + C_DF);
	if (!(high & 1))
		return false;
	*(volatile uint32_t *)(common + C_GFSELECT) = 0;
	*(volatile uint32_t *)(common + C_GF) = 0;
	*(volatile uint32_t *)(common + C_GFSELECT) = 1;
	*(volatile uint32_t *)(common + C_GF) = 1;
	common[C_STATUS] = S_ACK | S_DRIVER | S_FEATURES_OK;
	if (!(common[C_STATUS] & S_FEATURES_OK))
		return false;
	*(volatile uint16_t *)(common + C_Q_SELECT) = 0;
	if (*(volatile uint16_t *)(common + C_Q_SIZE) != QSIZE)
		return false;
	memset(ring, 0, sizeof(ring));
	wr64(common + C_Q_DESC, (uintptr_t)ring[0]);
	wr64(common + C_Q_AVAIL, (uintptr_t)ring[1]);
	wr64(common + C_Q_USED, (uintptr_t)ring[2]);
	*(volatile uint16_t *)(common + C_Q_ENABLE) = 1;
	*q = (struct vq){ (struct desc *)ring[0], (uint16_t *)ring[1], (uint16_t *)ring[2], 0, 0,
			  0 };
	common[C_STATUS] = S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK;
	return true;
}

/* One request; the response type, or 0xff when the device does not answer. */
static uint16_t mem_request(struct vq *q, uint16_t type, uint64_t addr, uint16_t blocks)
{
	static struct mem_req req;
	static volatile struct mem_resp resp;

	req = (struct mem_req){ .type = type, .addr = addr, .nb_blocks = blocks };
	resp.type = 0xff;
	vq_buf(q, 0, &req, sizeof(req), false);
	vq_buf(q, 1, (const void *)&resp, sizeof(resp), true);
	vq_add(q, 0, 2);
	*notify = 0;
	if (vq_wait(q) < 0)
		return 0xff;
	return resp.type;
}

/* Identity-maps [addr, addr+size) with 2 MiB pages, below 4 + HIGH_GIB GiB. */
static bool map_high(uint64_t addr, uint64_t size)
{
	uint64_t cr3, *pdpt;

	__asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
	pdpt = (uint64_t *)(uintptr_t)(((uint64_t *)(uintptr_t)(cr3 & ~0xfffull))[0] & ~0xfffull);
	for (uint64_t gib = addr >> 30; gib <= (addr + size - 1) >> 30; gib++) {
		if (gib < 4 || gib >= 4 + HIGH_GIB)
			return false;
		for (unsigned i = 0; i < 512; i++)
			high_pd[gib - 4][i] = ((gib << 30) + ((uint64_t)i << 21)) | 0x83;
		pdpt[gib] = (uintptr_t)high_pd[gib - 4] | 0x3;
	}
	__asm__ volatile("mov %0, %%cr3" : : "r"(cr3) : "memory");
	return true;
}

/* Writes the pattern into blocks [first, first+n) of the region, then reads it back. */
static bool pattern_check(uint64_t addr, uint64_t bs, uint64_t first, uint64_t n)
{
	for (uint64_t a = addr + first * bs; a < addr + (first + n) * bs; a += PATTERN_STRIDE)
		*(volatile uint64_t *)(uintptr_t)a = a ^ MEM_PATTERN;
	for (uint64_t a = addr + first * bs; a < addr + (first + n) * bs; a += PATTERN_STRIDE)
		if (*(volatile uint64_t *)(uintptr_t)a != (a ^ MEM_PATTERN))
			return false;
	return true;
}

void kernel_main(struct boot_params *bp)
{
	struct vq q;
	int slot = find_device();
	uint64_t bs, addr, region, plugged = 0; /* blocks [0, plugged) are ours */

	(void)bp;
	if (slot < 0 || !map_caps((unsigned)slot)) {
		guest_printf("virtio-mem: no device\n");
		guest_reset();
	}
	if (!device_setup(&q)) {
		guest_printf("virtio-mem: the device refused the set-up\n");
		guest_reset();
	}
	bs = rd64(config + M_BLOCK_SIZE);
	addr = rd64(config + M_ADDR);
	region = rd64(config + M_REGION_SIZE);
	guest_printf("virtio-mem: region 0x%llx %llu MiB, block %llu MiB\n",
		     (unsigned long long)addr, (unsigned long long)(region >> 20),
		     (unsigned long long)(bs >> 20));
	if (!map_high(addr, region) || mem_request(&q, REQ_UNPLUG_ALL, 0, 0) != 0) {
		guest_printf("virtio-mem: cannot start\n");
		guest_reset();
	}
	for (;;) {
		uint64_t want = rd64(config + M_REQUESTED) / bs;
		uint16_t type;

		if (want > plugged) {
			uint64_t n = want - plugged;

			type = mem_request(&q, REQ_PLUG, addr + plugged * bs, (uint16_t)n);
			if (type != 0) {
				guest_printf("virtio-mem: plug refused (%u)\n", type);
				guest_reset();
			}
			if (!pattern_check(addr, bs, plugged, n)) {
				guest_printf("virtio-mem: plugged memory does not keep a pattern\n");
				guest_reset();
			}
			plugged = want;
			guest_printf("virtio-mem: plugged %llu MiB, verified\n",
				     (unsigned long long)(plugged * bs >> 20));
		} else if (want < plugged) {
			type = mem_request(&q, REQ_UNPLUG, addr + want * bs,
					   (uint16_t)(plugged - want));
			if (type != 0) {
				guest_printf("virtio-mem: unplug refused (%u)\n", type);
				guest_reset();
			}
			plugged = want;
			guest_printf("virtio-mem: unplugged to %llu MiB\n",
				     (unsigned long long)(plugged * bs >> 20));
		}
		/* A configuration change sets ISR bit 1: wait for one (reading acks it). */
		while (!(*isr & 2))
			for (unsigned i = 0; i < 20000; i++)
				cpu_relax();
	}
}
