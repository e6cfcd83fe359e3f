/* Watches the first virtio-blk disk grow while it runs: prints its capacity at start,
 * then, on each configuration interrupt (the ISR's bit 1, polled), the capacity it
 * reads again, and proves the new end usable by writing its last sector and reading it
 * back:
 *   "blk-resize: capacity N sectors"
 *   "blk-resize: resized to N sectors, last sector written and read"
 * Beats "blk-resize: tick N" now and then, so the host sees it runs. */
#include "virtio.h"

REALMODE_BANNER("blk-resize: boot me through the 64-bit entry\n");

#define SECTOR 512
#define ISR_CONFIG 0x2

static uint8_t buf[SECTOR], back[SECTOR];
static struct vq q;

static uint64_t capacity(uint16_t io)
{
	return (uint64_t)inl(io + VP_CONFIG) | (uint64_t)inl(io + VP_CONFIG + 4) << 32;
}

/* Writes the last sector with a pattern of its number and reads it back. */
static bool last_sector_works(uint64_t sectors)
{
	uint64_t s = sectors - 1;

	for (unsigned i = 0; i < SECTOR; i++)
		buf[i] = (uint8_t)(s + i);
	if (blk_rw(&q, BLK_OUT, s, buf, SECTOR) != 0)
		return false;
	memset(back, 0, sizeof(back));
	if (blk_rw(&q, BLK_IN, s, back, SECTOR) != 0)
		return false;
	for (unsigned i = 0; i < SECTOR; i++)
		if (buf[i] != back[i])
			return false;
	return true;
}

void kernel_main(struct boot_params *bp)
{
	uint16_t io = 0;
	uint64_t sectors;

	(void)bp;
	for (unsigned slot = 0; slot < 32 && !io; slot++)
		if (pci_read(slot, 0) == (0x1001u << 16 | 0x1af4))
			io = (uint16_t)(pci_read(slot, 0x10) & ~3u);
	if (!io || !vp_setup(io, 0, &q, 1)) {
		guest_printf("blk-resize: FAIL no virtio-blk disk\n");
		guest_reset();
	}
	sectors = capacity(io);
	guest_printf("blk-resize: capacity %llu sectors\n", (unsigned long long)sectors);
	for (uint64_t n = 0;; n++) {
		if (inb(io + VP_ISR) & ISR_CONFIG) {
			uint64_t now = capacity(io);
			bool ok = now > sectors && last_sector_works(now);

			guest_printf("blk-resize: resized to %llu sectors, %s\n",
				     (unsigned long long)now,
				     ok ? "last sector written and read" : "FAIL");
			sectors = now;
		}
		if (n % 65536 == 0)
			guest_printf("blk-resize: tick %llu\n", (unsigned long long)(n / 65536));
		cpu_relax();
	}
}
