/* Enumerates PCI bus 0 and drives every legacy virtio device it finds, by polling: each
 * virtio-blk disk (reads sector 0, writes and flushes unless read-only), virtio-rng,
 * virtio-balloon (with "balloon=wait": waits for the host to ask for pages, inflates
 * them, checks they come back zeroed, deflates) and virtio-net (ARP for 10.0.2.2 from
 * 10.0.2.15, waits for the reply: the gateway of user-mode networking, or a peer on a
 * TAP device).
 * Ends with "devices: ok" or "devices: FAIL ..." and resets. */
#include "virtio.h"

REALMODE_BANNER("devices: boot me through the 64-bit entry\n");

static unsigned failures;

static void check(bool ok, const char *what)
{
	if (!ok) {
		guest_printf("devices: FAIL %s\n", what);
		failures++;
	}
}

/* --- virtio-blk --------------------------------------------------------------------- */

static uint8_t sector_buf[512], id_buf[20];

static void print_text(const char *prefix, const uint8_t *p, size_t max)
{
	guest_printf("%s'", prefix);
	for (size_t i = 0; i < max && p[i] >= 0x20 && p[i] < 0x7f; i++)
		guest_putc((char)p[i]);
	guest_printf("'\n");
}

static void blk_test(unsigned n, uint16_t io)
{
	struct vq q;
	uint32_t features = inl(io + VP_FEATURES);
	bool ro = features & (1u << 5);
	uint64_t sectors = inl(io + VP_CONFIG) | (uint64_t)inl(io + VP_CONFIG + 4) << 32;
	static const char text[] = "written by the guest";

	check(vp_setup(io, (1u << 5) | (1u << 9), &q, 1), "queue size is 256");
	guest_printf("blk%u: %lu sectors%s\n", n, sectors, ro ? ", read-only" : "");
	check(blk_rw(&q, 0, 0, sector_buf, sizeof(sector_buf)) == 0, "blk reads sector 0");
	guest_printf("blk%u: ", n);
	print_text("sector 0 ", sector_buf, 64);
	memset(id_buf, 0, sizeof(id_buf));
	check(blk_rw(&q, 8, 0, id_buf, sizeof(id_buf)) == 0, "blk gives its id");
	guest_printf("blk%u: ", n);
	print_text("id ", id_buf, sizeof(id_buf));
	check(blk_rw(&q, 0, sectors, sector_buf, 512) == 1, "a read past the end fails");
	memset(sector_buf, 0, sizeof(sector_buf));
	for (unsigned i = 0; i < sizeof(text) - 1; i++)
		sector_buf[i] = (uint8_t)text[i];
	sector_buf[sizeof(text) - 1] = (uint8_t)('0' + n);
	if (ro) {
		check(blk_rw(&q, 1, 1, sector_buf, 512) == 1, "writes to a read-only disk fail");
		guest_printf("blk%u: write refused\n", n);
		return;
	}
	/* Sector 1 and one 2 MiB in: in the first cluster and in a new one. */
	check(blk_rw(&q, 1, 1, sector_buf, 512) == 0, "blk writes sector 1");
	check(blk_rw(&q, 1, 4096, sector_buf, 512) == 0, "blk writes sector 4096");
	check(blk_rw(&q, 4, 0, NULL, 0) == 0, "blk flushes");
	memset(sector_buf, 0, sizeof(sector_buf));
	check(blk_rw(&q, 0, 4096, sector_buf, 512) == 0, "blk reads sector 4096 back");
	check(sector_buf[sizeof(text) - 1] == '0' + n, "the written data reads back");
	guest_printf("blk%u: wrote, flushed and read back\n", n);
}

/* --- virtio-rng --------------------------------------------------------------------- */

static void rng_test(uint16_t io)
{
	static uint8_t buf[64];
	struct vq q;
	unsigned nonzero = 0;
	int64_t len;

	check(vp_setup(io, 0, &q, 1), "queue size is 256");
	vq_buf(&q, 0, buf, sizeof(buf), true);
	vq_add(&q, 0, 1);
	len = vq_kick_wait(&q);
	for (unsigned i = 0; i < sizeof(buf); i++)
		nonzero += buf[i] != 0;
	check(len == sizeof(buf) && nonzero > 32, "rng fills the buffer");
	check(inb(io + VP_ISR) & 1, "rng raises its interrupt");
	guest_printf("rng: %d random bytes\n", (int)len);
}

/* --- virtio-balloon ----------------------------------------------------------------- */

#define BALLOON_MAX 64
static uint8_t balloon_pages[BALLOON_MAX][4096] __attribute__((aligned(4096)));
static uint32_t pfns[BALLOON_MAX];

static bool balloon_wait;

static void balloon_test(uint16_t io)
{
	struct vq q[2];
	uint64_t deadline = rdtsc() + WAIT_TSC;
	uint32_t want;
	unsigned zeroed = 0;
	bool waited;

	check(vp_setup(io, 0, q, 2), "queue size is 256");
	if (!balloon_wait) {
		check(inl(io + VP_CONFIG) == 0, "an idle balloon holds nothing");
		guest_printf("balloon: idle\n");
		return;
	}
	/* The reset in vp_setup() clears the interrupt of a request made before it. */
	waited = !inl(io + VP_CONFIG);
	while (!(want = inl(io + VP_CONFIG)) && rdtsc() < deadline)
		cpu_relax();
	check(want > 0, "the host asks the balloon for pages");
	check(!waited || (inb(io + VP_ISR) & 2), "a configuration interrupt announced it");
	if (want > BALLOON_MAX)
		want = BALLOON_MAX;
	for (unsigned i = 0; i < want; i++) {
		memset(balloon_pages[i], 0xab, 4096);
		pfns[i] = (uint32_t)((uintptr_t)balloon_pages[i] >> 12);
	}
	vq_buf(&q[0], 0, pfns, want * 4, false);
	vq_add(&q[0], 0, 1);
	check(vq_kick_wait(&q[0]) >= 0, "the host takes the inflated pages");
	outl(io + VP_CONFIG + 4, want);
	for (unsigned i = 0; i < want; i++)
		zeroed += *(volatile uint8_t *)&balloon_pages[i][100] == 0;
	check(zeroed == want, "the host freed the inflated pages");
	vq_buf(&q[1], 0, pfns, want * 4, false);
	vq_add(&q[1], 0, 1);
	check(vq_kick_wait(&q[1]) >= 0, "the host takes the deflated pages");
	outl(io + VP_CONFIG + 4, 0);
	guest_printf("balloon: inflated %u pages, %u came back zeroed, deflated\n", want, zeroed);
}

/* --- virtio-net --------------------------------------------------------------------- */

#define NET_HDR 10
#define RX_BUFS 16
static uint8_t rx_bufs[RX_BUFS][2048], tx_buf[NET_HDR + 64];
static const uint8_t my_ip[4] = { 10, 0, 2, 15 }, peer_ip[4] = { 10, 0, 2, 2 };

static void net_send_arp(struct vq *tx, const uint8_t *mac)
{
	uint8_t *f = tx_buf + NET_HDR;

	memset(tx_buf, 0, sizeof(tx_buf));
	memset(f, 0xff, 6);
	memcpy(f + 6, mac, 6);
	f[12] = 0x08, f[13] = 0x06;                    /* ARP */
	f[14] = 0, f[15] = 1, f[16] = 0x08, f[17] = 0; /* Ethernet, IPv4 */
	f[18] = 6, f[19] = 4, f[20] = 0, f[21] = 1;    /* request */
	memcpy(f + 22, mac, 6);
	memcpy(f + 28, my_ip, 4);
	memcpy(f + 38, peer_ip, 4);
	vq_buf(tx, 0, tx_buf, NET_HDR + 60, false);
	vq_add(tx, 0, 1);
	outw(tx->io + VP_NOTIFY, tx->index);
}

static bool bytes_eq(const uint8_t *a, const uint8_t *b, size_t n)
{
	while (n--)
		if (*a++ != *b++)
			return false;
	return true;
}

static bool net_is_reply(const uint8_t *f, const uint8_t *mac)
{
	return f[12] == 0x08 && f[13] == 0x06 && f[21] == 2 && bytes_eq(f + 28, peer_ip, 4) &&
	       bytes_eq(f + 32, mac, 6);
}

static void net_test(uint16_t io)
{
	struct vq q[2];
	uint8_t mac[6];
	bool replied = false;

	for (unsigned i = 0; i < 6; i++)
		mac[i] = inb(io + VP_CONFIG + i);
	check(vp_setup(io, 1u << 5, q, 2), "queue size is 256");
	for (uint16_t i = 0; i < RX_BUFS; i++) {
		vq_buf(&q[0], i, rx_bufs[i], sizeof(rx_bufs[i]), true);
		vq_add(&q[0], i, 1);
	}
	outw(io + VP_NOTIFY, 0);
	guest_printf("net: mac %02x:%02x:%02x:%02x:%02x:%02x\n", mac[0], mac[1], mac[2], mac[3],
		     mac[4], mac[5]);
	/* The peer's link may come up after us: ask a few times. */
	for (unsigned tries = 0; tries < 10 && !replied; tries++) {
		uint64_t deadline;

		net_send_arp(&q[1], mac);
		deadline = rdtsc() + WAIT_TSC / 10;
		while (!replied && rdtsc() < deadline) {
			uint16_t used = __atomic_load_n(&q[0].used[1], __ATOMIC_ACQUIRE);

			while (q[0].last_used != used && !replied) {
				uint32_t id = *(volatile uint32_t *)((uint8_t *)q[0].used + 4 +
								     8 * (q[0].last_used % QSIZE));

				replied = id < RX_BUFS && net_is_reply(rx_bufs[id] + NET_HDR, mac);
				q[0].last_used++;
			}
		}
	}
	check(replied, "an ARP reply from 10.0.2.2 arrives");
	if (replied)
		guest_printf("net: arp reply from 10.0.2.2\n");
}

void kernel_main(struct boot_params *bp)
{
	unsigned disks = 0;
	char arg[8];

	balloon_wait = guest_cmdline_get(bp, "balloon", arg, sizeof(arg)) &&
		       guest_streq(arg, "wait");
	for (unsigned slot = 0; slot < 32; slot++) {
		uint32_t id = pci_read(slot, 0), class, bar, size;
		uint16_t io;

		if (id == 0xffffffff)
			continue;
		class = pci_read(slot, 8) >> 8;
		bar = pci_read(slot, 0x10);
		pci_write(slot, 0x10, 0xffffffff);
		size = ~(pci_read(slot, 0x10) & ~3u) + 1;
		pci_write(slot, 0x10, bar);
		guest_printf("pci: 00:%02x.0 %04x:%04x class %06x irq %u", slot, id & 0xffff,
			     id >> 16, class, pci_read(slot, 0x3c) & 0xff);
		if (bar & 1)
			guest_printf(" io 0x%x+0x%x", bar & ~3u, size);
		guest_printf("\n");
		if ((id & 0xffff) != 0x1af4)
			continue;
		check(pci_read(slot, 0x10) == bar, "a BAR keeps its address after sizing");
		io = (uint16_t)(bar & ~3u);
		switch (id >> 16) {
		case 0x1000:
			net_test(io);
			break;
		case 0x1001:
			blk_test(disks++, io);
			break;
		case 0x1002:
			balloon_test(io);
			break;
		case 0x1005:
			rng_test(io);
			break;
		}
	}
	if (failures)
		guest_printf("devices: FAIL (%u)\n", failures);
	else
		guest_printf("devices: ok\n");
	guest_reset();
}
