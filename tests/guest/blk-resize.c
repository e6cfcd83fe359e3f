/* The guest's side of a disk that grows while it runs: the first virtio-blk disk's
 * capacity at start ("blk: capacity N sectors"), sectors 0-7 written with 0x5a, then,
 * polling the legacy ISR, "blk: resized to N sectors" on each configuration interrupt,
 * after which the new last sector is written and read back ("blk: last sector ok").
 * 'q' on COM1 reads sectors 0-7 back ("blk: data ok" or "blk: FAIL ...") and resets. */
#include "virtio.h"

REALMODE_BANNER("blk-resize: boot me through the 64-bit entry\n");

#define COM1 0x3f8
#define SECTOR 512
#define ISR_CONFIG 2
#define FIRST 8

static uint8_t buf[FIRST * SECTOR];
static struct vq q;

static uint64_t capacity(uint16_t io)
{
	uint32_t lo, hi;

	/* The two halves are read twice over, in case a change falls between them. */
	do {
		hi = inl(io + VP_CONFIG + 4);
		lo = inl(io + VP_CONFIG);
	} while (hi != inl(io + VP_CONFIG + 4));
	return lo | (uint64_t)hi << 32;
}

static bool all(const uint8_t *p, size_t len, uint8_t v)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != v)
			return false;
	return true;
}

/* The last sector of a grown disk takes a write and gives it back. */
static bool last_sector(uint64_t sectors)
{
	memset(buf, 0xa5, SECTOR);
	if (blk_rw(&q, BLK_OUT, sectors - 1, buf, SECTOR) != 0)
		return false;
	memset(buf, 0, SECTOR);
	return blk_rw(&q, BLK_IN, sectors - 1, buf, SECTOR) == 0 && all(buf, SECTOR, 0xa5);
}

void kernel_main(struct boot_params *bp)
{
	uint16_t io = 0;

	(void)bp;
	for (unsigned slot = 0; slot < 32 && !io; slot++)
		if (pci_read(slot, 0) == (0x1001u << 16 | 0x1af4))
			io = (uint16_t)(pci_read(slot, 0x10) & ~3u);
	if (!io || !vp_setup(io, BLK_F_FLUSH, &q, 1)) {
		guest_printf("blk: FAIL no virtio-blk disk\n");
		guest_reset();
	}
	guest_printf("blk: capacity %llu sectors\n", (unsigned long long)capacity(io));
	memset(buf, 0x5a, sizeof(buf));
	if (blk_rw(&q, BLK_OUT, 0, buf, sizeof(buf)) != 0 ||
	    blk_rw(&q, BLK_FLUSH, 0, NULL, 0) != 0)
		guest_printf("blk: FAIL writing sectors 0-7\n");
	else
		guest_printf("blk: written\n");
	for (;;) {
		if ((inb(COM1 + 5) & 0x01) && inb(COM1) == 'q')
			break;
		/* Reading the ISR acknowledges it. */
		if (inb(io + VP_ISR) & ISR_CONFIG) {
			uint64_t sectors = capacity(io);

			guest_printf("blk: resized to %llu sectors\n", (unsigned long long)sectors);
			guest_printf(last_sector(sectors) ? "blk: last sector ok\n"
							  : "blk: FAIL last sector\n");
		}
	}
	memset(buf, 0, sizeof(buf));
	if (blk_rw(&q, BLK_IN, 0, buf, sizeof(buf)) == 0 && all(buf, sizeof(buf), 0x5a))
		guest_printf("blk: data ok\n");
	else
		guest_printf("blk: FAIL sectors 0-7 changed\n");
	guest_reset();
}
