/* Writes to every writable virtio-blk disk in three phases, for tests of disks that move
 * onto overlays while the guest runs (all offsets in 512-byte sectors):
 *   1. sectors 0-15 get 0x10 + the disk's number, then a flush;
 *   2. a stream of numbered steps until 'q' arrives on COM1: step w writes one record to
 *      each disk in turn, at sector 8192 + 64 * (w % 16) (two records per 64 KiB
 *      cluster), and every 64 steps "disk-writer: N writes" is printed; 'm' on COM1
 *      prints "disk-writer: mark after N writes", so the host learns which steps came
 *      after what it did before sending it. A record is "vistream", the disk's number
 *      and w (32-bit little-endian each), then the byte w + disk number up to the end
 *      of the sector;
 *   3. sectors 8-15 and 4096-4111 get 0x30 + the disk's number, then a flush, and
 *      everything is read back and compared with what the disk must hold.
 * Read-only disks are only read. Ends with "disk-writer: ok" or "disk-writer: FAIL ..."
 * and resets. */
#include "virtio.h"

REALMODE_BANNER("disk-writer: boot me through the 64-bit entry\n");

#define COM1 0x3f8
#define MAX_DISKS 4
#define SECTOR 512
#define FIRST 0             /* phase 1, and phase 3 over its second half */
#define LATER 4096          /* phase 3 only */
#define REGION 16
#define STREAM 8192
#define STREAM_SLOTS 16
#define STREAM_STRIDE 64
#define PROGRESS 64

struct disk {
	struct vq q;
	unsigned n;
	bool ro;
};

static struct disk disks[MAX_DISKS];
static unsigned ndisks, failures;
static uint8_t buf[REGION * SECTOR], want[SECTOR];

static void check(bool ok, const struct disk *d, const char *what)
{
	if (!ok) {
		guest_printf("disk-writer: FAIL disk %u: %s\n", d->n, what);
		failures++;
	}
}

static bool all(const uint8_t *p, size_t len, uint8_t v)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != v)
			return false;
	return true;
}

static bool same(const uint8_t *a, const uint8_t *b, size_t len)
{
	for (size_t i = 0; i < len; i++)
		if (a[i] != b[i])
			return false;
	return true;
}

static void record(uint8_t *p, unsigned disk, uint32_t step)
{
	uint32_t n = disk;

	memcpy(p, "vistream", 8);
	memcpy(p + 8, &n, 4);
	memcpy(p + 12, &step, 4);
	memset(p + 16, (uint8_t)(step + disk), SECTOR - 16);
}

static uint64_t slot_sector(uint32_t slot)
{
	return STREAM + (uint64_t)slot * STREAM_STRIDE;
}

/* The host's commands: true for 'q'. */
static bool stream_command(uint32_t steps)
{
	while (inb(COM1 + 5) & 0x01) {
		uint8_t c = inb(COM1);

		if (c == 'q')
			return true;
		if (c == 'm')
			guest_printf("disk-writer: mark after %u writes\n", steps);
	}
	return false;
}

static void find_disks(void)
{
	for (unsigned slot = 0; slot < 32 && ndisks < MAX_DISKS; slot++) {
		struct disk *d = &disks[ndisks];
		uint16_t io;

		if (pci_read(slot, 0) != (0x1001u << 16 | 0x1af4))
			continue;
		io = (uint16_t)(pci_read(slot, 0x10) & ~3u);
		d->n = ndisks++;
		d->ro = inl(io + VP_FEATURES) & BLK_F_RO;
		check(vp_setup(io, BLK_F_RO | BLK_F_FLUSH, &d->q, 1), d, "queue size is 256");
	}
}

static void fill(struct disk *d, uint64_t sector, unsigned count, uint8_t v)
{
	memset(buf, v, count * SECTOR);
	check(blk_rw(&d->q, BLK_OUT, sector, buf, count * SECTOR) == 0, d, "a write");
}

static void flush(struct disk *d)
{
	check(blk_rw(&d->q, BLK_FLUSH, 0, NULL, 0) == 0, d, "a flush");
}

static uint32_t stream(void)
{
	uint32_t steps = 0;

	do {
		for (unsigned i = 0; i < ndisks; i++) {
			if (disks[i].ro)
				continue;
			record(buf, disks[i].n, steps);
			check(blk_rw(&disks[i].q, BLK_OUT, slot_sector(steps % STREAM_SLOTS), buf,
				     SECTOR) == 0,
			      &disks[i], "a stream write");
		}
		if (++steps % PROGRESS == 0)
			guest_printf("disk-writer: %u writes\n", steps);
	} while (!failures && !stream_command(steps));
	return steps;
}

/* Everything a writable disk must hold after `steps` steps and phase 3. */
static void verify(struct disk *d, uint32_t steps)
{
	check(blk_rw(&d->q, BLK_IN, FIRST, buf, REGION * SECTOR) == 0, d, "a read");
	check(all(buf, REGION / 2 * SECTOR, (uint8_t)(0x10 + d->n)), d, "phase 1 data");
	check(all(buf + REGION / 2 * SECTOR, REGION / 2 * SECTOR, (uint8_t)(0x30 + d->n)), d,
	      "phase 3 data over phase 1");
	check(blk_rw(&d->q, BLK_IN, LATER, buf, REGION * SECTOR) == 0, d, "a read");
	check(all(buf, REGION * SECTOR, (uint8_t)(0x30 + d->n)), d, "phase 3 data");
	for (uint32_t slot = 0; slot < STREAM_SLOTS; slot++) {
		memset(want, 0, sizeof(want));
		if (steps > slot)
			record(want, d->n, slot + STREAM_SLOTS * ((steps - 1 - slot) / STREAM_SLOTS));
		check(blk_rw(&d->q, BLK_IN, slot_sector(slot), buf, SECTOR) == 0, d, "a read");
		check(same(buf, want, SECTOR), d, "the last record of a stream slot");
	}
}

void kernel_main(struct boot_params *bp)
{
	uint32_t steps = 0;

	(void)bp;
	find_disks();
	guest_printf("disk-writer: %u disks\n", ndisks);
	for (unsigned i = 0; i < ndisks; i++)
		if (!disks[i].ro) {
			fill(&disks[i], FIRST, REGION, (uint8_t)(0x10 + i));
			flush(&disks[i]);
		}
	guest_printf("disk-writer: phase 1 written\n");
	if (!failures)
		steps = stream();
	guest_printf("disk-writer: stream ended after %u writes\n", steps);
	for (unsigned i = 0; i < ndisks && !failures; i++) {
		struct disk *d = &disks[i];

		if (d->ro) {
			check(blk_rw(&d->q, BLK_IN, 0, buf, SECTOR) == 0, d, "a read");
			continue;
		}
		fill(d, FIRST + REGION / 2, REGION / 2, (uint8_t)(0x30 + i));
		fill(d, LATER, REGION, (uint8_t)(0x30 + i));
		flush(d);
		verify(d, steps);
	}
	if (failures)
		guest_printf("disk-writer: FAIL (%u)\n", failures);
	else
		guest_printf("disk-writer: ok\n");
	guest_reset();
}
