/* A guest on user-mode networking, by polling: finds the virtio-net card, leases an
 * address by DHCP ("net: lease A.B.C.D"), then serves TCP port 80 one connection at a
 * time: answers a SYN, sends one line and FIN, acknowledges what it receives. Answers
 * ARP for its address. Runs until the machine is stopped. */
#include "virtio.h"

REALMODE_BANNER("net: boot me through the 64-bit entry\n");

#define NET_HDR   10
#define RX_BUFS   16
#define FRAME_MAX 1514
#define ETH       14
#define IP_LEN    20
#define BOOTP_LEN 548 /* with the full 312 bytes of options a BOOTP server expects */

#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_PSH 0x08
#define TCP_ACK 0x10

static uint8_t rx_bufs[RX_BUFS][NET_HDR + FRAME_MAX], tx_buf[NET_HDR + FRAME_MAX];
static struct vq q[2];
static uint8_t mac[6], my_ip[4], server_ip[4];
static const uint8_t broadcast[6] = { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff };
static const char line[] = "hello from the guest\n";

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)get16(p) << 16 | get16(p + 2);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8), p[1] = (uint8_t)v;
}

static void put32(uint8_t *p, uint32_t v)
{
	put16(p, (uint16_t)(v >> 16));
	put16(p + 2, (uint16_t)v);
}

static bool bytes_eq(const uint8_t *a, const uint8_t *b, size_t n)
{
	while (n--)
		if (*a++ != *b++)
			return false;
	return true;
}

static uint32_t sum16(const uint8_t *p, size_t n, uint32_t s)
{
	for (; n > 1; p += 2, n -= 2)
		s += get16(p);
	if (n)
		s += (uint32_t)p[0] << 8;
	return s;
}

static uint16_t fold(uint32_t s)
{
	while (s >> 16)
		s = (s & 0xffff) + (s >> 16);
	return (uint16_t)~s;
}

/* The frame in tx_buf, with len bytes after the Ethernet header, out and done. */
static void send_frame(const uint8_t *dst, uint16_t type, size_t len)
{
	uint8_t *f = tx_buf + NET_HDR;

	memset(tx_buf, 0, NET_HDR);
	memcpy(f, dst, 6);
	memcpy(f + 6, mac, 6);
	put16(f + 12, type);
	vq_buf(&q[1], 0, tx_buf, (uint32_t)(NET_HDR + ETH + len), false);
	vq_add(&q[1], 0, 1);
	vq_kick_wait(&q[1]);
}

/* An IPv4 packet whose payload of len bytes is already in place. */
static void send_ip(const uint8_t *dst_mac, const uint8_t *src, const uint8_t *dst,
		    uint8_t proto, size_t len)
{
	uint8_t *ip = tx_buf + NET_HDR + ETH;

	memset(ip, 0, IP_LEN);
	ip[0] = 0x45;
	put16(ip + 2, (uint16_t)(IP_LEN + len));
	ip[8] = 64;
	ip[9] = proto;
	memcpy(ip + 12, src, 4);
	memcpy(ip + 16, dst, 4);
	put16(ip + 10, fold(sum16(ip, IP_LEN, 0)));
	send_frame(dst_mac, 0x0800, IP_LEN + len);
}

/* The next frame from the card, or NULL; release() hands its buffer back. */
static uint16_t rx_id;

static uint8_t *receive(size_t *len)
{
	uint16_t used = __atomic_load_n(&q[0].used[1], __ATOMIC_ACQUIRE);
	volatile uint32_t *e;

	if (q[0].last_used == used)
		return NULL;
	e = (volatile uint32_t *)((uint8_t *)q[0].used + 4 + 8 * (q[0].last_used % QSIZE));
	q[0].last_used++;
	rx_id = (uint16_t)e[0];
	*len = e[1] > NET_HDR ? e[1] - NET_HDR : 0;
	return rx_id < RX_BUFS ? rx_bufs[rx_id] + NET_HDR : NULL;
}

static void release(void)
{
	vq_buf(&q[0], rx_id, rx_bufs[rx_id], sizeof(rx_bufs[0]), true);
	vq_add(&q[0], rx_id, 1);
	outw(q[0].io + VP_NOTIFY, 0);
}

static void arp_answer(const uint8_t *f, size_t len)
{
	uint8_t *a = tx_buf + NET_HDR + ETH;

	if (len < ETH + 28 || get16(f + 12) != 0x0806 || get16(f + 20) != 1 ||
	    !bytes_eq(f + 38, my_ip, 4))
		return;
	memcpy(a, f + ETH, 8);
	put16(a + 6, 2);
	memcpy(a + 8, mac, 6);
	memcpy(a + 14, my_ip, 4);
	memcpy(a + 18, f + 22, 10); /* the asker's MAC and address */
	send_frame(f + 6, 0x0806, 28);
}

/* --- DHCP --------------------------------------------------------------------------- */

#define XID 0x76690001u

static void dhcp_send(uint8_t type)
{
	uint8_t *udp = tx_buf + NET_HDR + ETH + IP_LEN, *b = udp + 8, *o = b + 240;
	static const uint8_t none[4];

	memset(udp, 0, 8 + BOOTP_LEN);
	put16(udp, 68);
	put16(udp + 2, 67);
	put16(udp + 4, 8 + BOOTP_LEN);
	b[0] = 1, b[1] = 1, b[2] = 6;
	put32(b + 4, XID);
	put16(b + 10, 0x8000); /* answer by broadcast: we have no address yet */
	memcpy(b + 28, mac, 6);
	put32(b + 236, 0x63825363);
	*o++ = 53, *o++ = 1, *o++ = type;
	if (type == 3) {
		*o++ = 50, *o++ = 4;
		memcpy(o, my_ip, 4);
		o += 4;
		*o++ = 54, *o++ = 4;
		memcpy(o, server_ip, 4);
		o += 4;
	}
	*o = 255;
	/* From 0.0.0.0 until the lease. */
	send_ip(broadcast, none, broadcast, 17, 8 + BOOTP_LEN);
}

/* The type of a DHCP answer to us (2 offer, 5 ack), its yiaddr and server; 0 if not. */
static uint8_t dhcp_answer(const uint8_t *f, size_t len, uint8_t *yiaddr, uint8_t *server)
{
	const uint8_t *ip = f + ETH, *udp, *b, *o, *end = f + len;
	uint8_t type = 0;

	if (len < ETH + IP_LEN + 8 + 240 || get16(f + 12) != 0x0800 || ip[9] != 17)
		return 0;
	udp = ip + (ip[0] & 15) * 4;
	b = udp + 8;
	if (get16(udp) != 67 || get16(udp + 2) != 68 || b[0] != 2 || get32(b + 4) != XID)
		return 0;
	for (o = b + 240; o + 2 <= end && *o != 255; o += *o ? 2 + o[1] : 1) {
		if (o[0] == 53)
			type = o[2];
		else if (o[0] == 54 && o[1] == 4)
			memcpy(server, o + 2, 4);
	}
	memcpy(yiaddr, b + 16, 4);
	return type;
}

/* Sends `type` until an answer of `want` comes; false after ten tries. */
static bool dhcp_exchange(uint8_t type, uint8_t want)
{
	for (unsigned tries = 0; tries < 10; tries++) {
		uint64_t deadline = rdtsc() + WAIT_TSC / 10;

		dhcp_send(type);
		while (rdtsc() < deadline) {
			uint8_t yiaddr[4], server[4] = { 0 }, got;
			size_t len;
			uint8_t *f = receive(&len);

			if (!f)
				continue;
			got = dhcp_answer(f, len, yiaddr, server);
			release();
			if (got != want)
				continue;
			memcpy(my_ip, yiaddr, 4);
			memcpy(server_ip, server, 4);
			return true;
		}
	}
	return false;
}

/* --- TCP, port 80 ------------------------------------------------------------------- */

enum { LISTEN, SYN_RCVD, SENT };

static struct {
	int state;
	uint8_t mac[6], ip[4];
	uint16_t port;
	uint32_t snd_nxt, rcv_nxt;
} conn;

static void tcp_send(uint8_t flags, const char *data, size_t len)
{
	uint8_t *t = tx_buf + NET_HDR + ETH + IP_LEN;
	uint32_t s;

	memset(t, 0, 20);
	put16(t, 80);
	put16(t + 2, conn.port);
	put32(t + 4, conn.snd_nxt);
	put32(t + 8, conn.rcv_nxt);
	t[12] = 5 << 4;
	t[13] = flags;
	put16(t + 14, 8192);
	memcpy(t + 20, data, len);
	/* The pseudo-header: addresses, protocol, length. */
	s = sum16(my_ip, 4, 0);
	s = sum16(conn.ip, 4, s);
	s += 6 + 20 + (uint32_t)len;
	put16(t + 16, fold(sum16(t, 20 + len, s)));
	send_ip(conn.mac, my_ip, conn.ip, 6, 20 + len);
}

static void tcp_input(const uint8_t *f, size_t len)
{
	const uint8_t *ip = f + ETH, *t;
	size_t ihl, doff, dlen;
	uint8_t flags;
	uint32_t seq;

	if (len < ETH + IP_LEN + 20 || get16(f + 12) != 0x0800 || ip[9] != 6 ||
	    !bytes_eq(ip + 16, my_ip, 4))
		return;
	ihl = (size_t)(ip[0] & 15) * 4;
	t = ip + ihl;
	doff = (size_t)(t[12] >> 4) * 4;
	if (get16(t + 2) != 80 || get16(ip + 2) < ihl + doff)
		return;
	dlen = get16(ip + 2) - ihl - doff;
	flags = t[13];
	seq = get32(t + 4);
	if ((flags & (TCP_SYN | TCP_ACK)) == TCP_SYN) {
		memcpy(conn.mac, f + 6, 6);
		memcpy(conn.ip, ip + 12, 4);
		conn.port = get16(t);
		conn.rcv_nxt = seq + 1;
		conn.snd_nxt = (uint32_t)rdtsc();
		tcp_send(TCP_SYN | TCP_ACK, NULL, 0);
		conn.snd_nxt++;
		conn.state = SYN_RCVD;
		return;
	}
	if (conn.state == LISTEN || get16(t) != conn.port || !bytes_eq(ip + 12, conn.ip, 4))
		return;
	if (flags & TCP_RST) {
		conn.state = LISTEN;
		return;
	}
	if (conn.state == SYN_RCVD && (flags & TCP_ACK) && get32(t + 8) == conn.snd_nxt) {
		guest_printf("net: connection from %u.%u.%u.%u port %u\n", conn.ip[0], conn.ip[1],
			     conn.ip[2], conn.ip[3], conn.port);
		tcp_send(TCP_ACK | TCP_PSH | TCP_FIN, line, sizeof(line) - 1);
		conn.snd_nxt += sizeof(line) - 1 + 1;
		conn.state = SENT;
	}
	if (seq != conn.rcv_nxt || !(dlen || (flags & TCP_FIN)))
		return;
	conn.rcv_nxt += (uint32_t)dlen + (flags & TCP_FIN ? 1 : 0);
	tcp_send(TCP_ACK, NULL, 0);
	if (dlen)
		guest_printf("net: received %u bytes\n", (unsigned)dlen);
	if (flags & TCP_FIN) {
		guest_printf("net: connection closed\n");
		conn.state = LISTEN;
	}
}

static uint16_t find_card(void)
{
	for (unsigned slot = 0; slot < 32; slot++)
		if (pci_read(slot, 0) == 0x10001af4)
			return (uint16_t)(pci_read(slot, 0x10) & ~3u);
	return 0;
}

void kernel_main(struct boot_params *bp)
{
	uint16_t io = find_card();

	(void)bp;
	if (!io) {
		guest_printf("net: FAIL no virtio-net card\n");
		guest_reset();
	}
	for (unsigned i = 0; i < 6; i++)
		mac[i] = inb(io + VP_CONFIG + i);
	vp_setup(io, 1u << 5, q, 2);
	for (uint16_t i = 0; i < RX_BUFS; i++) {
		vq_buf(&q[0], i, rx_bufs[i], sizeof(rx_bufs[i]), true);
		vq_add(&q[0], i, 1);
	}
	outw(io + VP_NOTIFY, 0);
	if (!dhcp_exchange(1, 2) || !dhcp_exchange(3, 5)) {
		guest_printf("net: FAIL no DHCP lease\n");
		guest_reset();
	}
	guest_printf("net: lease %u.%u.%u.%u from %u.%u.%u.%u\n", my_ip[0], my_ip[1], my_ip[2],
		     my_ip[3], server_ip[0], server_ip[1], server_ip[2], server_ip[3]);
	guest_printf("net: listening on port 80\n");
	for (;;) {
		size_t len;
		uint8_t *f = receive(&len);

		if (!f)
			continue;
		arp_answer(f, len);
		tcp_input(f, len);
		release();
	}
}
