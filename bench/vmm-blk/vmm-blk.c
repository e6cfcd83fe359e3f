/* Requests per second through lib/vmm's virtio-blk back end, with the host playing the
 * guest driver: a legacy virtqueue in the (never started) VM's memory, `depth` 4 KiB
 * reads made available per notify, the notify written to the device's port as a vCPU
 * would, completion seen in the used ring. The same sequence `qemu-img bench` runs:
 * request i at offset i * step, wrapping at the image size.
 *
 *   vmm-blk KERNEL IMAGE COUNT DEPTH STEP
 *
 * Prints "Run completed in S seconds." as qemu-img bench does. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "util.h"
#include "vmm/vmm.h"

#define QSIZE     256
#define RING_GPA  0x200000ull /* desc, avail, used: 3 pages */
#define REQ_GPA   0x300000ull /* headers and status bytes */
#define DATA_GPA  0x400000ull /* 4 KiB per request slot */
#define BLK_IO    0xc000      /* the first PCI I/O BAR: the only disk */
#define SECTOR    512
#define BLOCK     4096

struct desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

struct req {
	uint32_t type, reserved;
	uint64_t sector;
};

int main(int argc, char **argv)
{
	struct vmm_disk disk;
	struct vmm_config cfg = { .cpus = 1, .memory = 64 << 20, .console_fd = -1,
				  .disks = &disk, .ndisks = 1 };
	uint64_t count, step, size, done = 0, issued = 0, pfn = RING_GPA >> 12;
	unsigned depth;
	double t0;
	struct vmm *vm;
	uint8_t *mem, status;
	struct desc *desc;
	volatile uint16_t *avail, *used;
	uint16_t last_used = 0, sel = 0, notify = 0;

	if (argc != 6) {
		fprintf(stderr, "usage: vmm-blk KERNEL IMAGE COUNT DEPTH STEP\n");
		return 2;
	}
	cfg.kernel = argv[1];
	disk = (struct vmm_disk){ argv[2], VI_DISK_QCOW2, true };
	count = strtoull(argv[3], NULL, 0);
	depth = (unsigned)strtoul(argv[4], NULL, 0);
	step = strtoull(argv[5], NULL, 0);
	if (depth == 0 || depth > QSIZE / 3) {
		fprintf(stderr, "vmm-blk: depth must be 1 to %d\n", QSIZE / 3);
		return 2;
	}
	if (vmm_new(&cfg, &vm) < 0) {
		fprintf(stderr, "vmm-blk: %s\n", vi_error_message());
		return 1;
	}
	mem = vmm_memory_region(vm, 0)->hva;
	desc = (struct desc *)(mem + RING_GPA);
	avail = (uint16_t *)(mem + RING_GPA + 4096);
	used = (uint16_t *)(mem + RING_GPA + 8192);
	status = 2; /* ACK | DRIVER, then the queue, then DRIVER_OK */
	vmm_io(vm, false, BLK_IO + 0x12, &status, 1, true);
	vmm_io(vm, false, BLK_IO + 0x0e, &sel, 2, true);
	vmm_io(vm, false, BLK_IO + 0x08, &pfn, 4, true);
	status = 7;
	vmm_io(vm, false, BLK_IO + 0x12, &status, 1, true);
	vmm_io(vm, false, BLK_IO + 0x14, &size, 8, false);
	size *= SECTOR;

	t0 = vi_now_ms();
	while (done < count) {
		unsigned batch = 0;

		/* Keep `depth` requests in flight: refill the slots that completed. */
		while (issued - done < depth && issued < count) {
			unsigned slot = (unsigned)(issued % depth), d = slot * 3;
			struct req *r = (struct req *)(mem + REQ_GPA) + slot;
			uint16_t idx = avail[1];

			r->type = 0;
			r->sector = (issued * step) % (size - BLOCK + 1) / SECTOR;
			desc[d] = (struct desc){ REQ_GPA + slot * sizeof(*r), sizeof(*r), 1,
						 (uint16_t)(d + 1) };
			desc[d + 1] = (struct desc){ DATA_GPA + (uint64_t)slot * BLOCK, BLOCK, 3,
						     (uint16_t)(d + 2) };
			desc[d + 2] = (struct desc){ REQ_GPA + 0x10000 + slot, 1, 2, 0 };
			avail[2 + idx % QSIZE] = (uint16_t)d;
			__atomic_store_n(&avail[1], (uint16_t)(idx + 1), __ATOMIC_RELEASE);
			issued++;
			batch++;
		}
		if (batch)
			vmm_io(vm, false, BLK_IO + 0x10, &notify, 2, true);
		while (__atomic_load_n(&used[1], __ATOMIC_ACQUIRE) == last_used)
			;
		while (last_used != __atomic_load_n(&used[1], __ATOMIC_ACQUIRE)) {
			uint32_t id = *(volatile uint32_t *)((uint8_t *)used + 4 +
							     8 * (last_used % QSIZE));

			if (mem[REQ_GPA + 0x10000 + id / 3] != 0) {
				fprintf(stderr, "vmm-blk: request failed\n");
				return 1;
			}
			last_used++;
			done++;
		}
	}
	printf("Run completed in %.3f seconds.\n", vi_ms_since(t0) / 1e3);
	vmm_free(vm);
	return 0;
}
