/* The DHCP server of a card on one of vi's private networks (net-bridge.c): the VMM
 * answers its own guest's requests, before they reach the bridge, with the address the
 * network's lease file gives the card's MAC, or the lowest free one of .10-.250 (the
 * range libvirt's networks hand out). The lease is for ever and names no router and no
 * DNS server: the network leads nowhere. The server is the network's .1, which nobody
 * holds. RFC 2131, RFC 2132. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

#include "error.h"
#include "util.h"
#include "vmm/internal.h"

#define ETH_LEN    14
#define IP_LEN     20
#define UDP_LEN    8
#define BOOTP_LEN  236
#define DHCP_MAGIC 0x63825363u

enum { DHCP_DISCOVER = 1, DHCP_OFFER, DHCP_REQUEST, DHCP_DECLINE, DHCP_ACK, DHCP_NAK };

struct net_dhcp {
	char *dir;        /* the network's directory */
	uint8_t mac[6];   /* the card's */
	uint8_t net[3];   /* the /24 */
	uint8_t lease;    /* the last part of the guest's address; 0 until it asks */
};

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)(v >> 8);
	p[1] = (uint8_t)v;
}

/* The card's address from the lease file ("MAC LAST" lines), with take one taken there
 * if it has none: under the file's lock, as every VMM on the network writes it. 0 when
 * it has none, the range is full or the file cannot be written. */
static uint8_t lease_find(const struct net_dhcp *d, bool take)
{
	char *path = xasprintf("%s/leases", d->dir), mac[18], line[64];
	bool used[256] = { false };
	unsigned last;
	uint8_t got = 0;
	int fd = open(path, take ? O_RDWR | O_CREAT | O_CLOEXEC : O_RDONLY | O_CLOEXEC, 0644);
	FILE *f = fd >= 0 ? fdopen(fd, take ? "r+" : "r") : NULL;

	free(path);
	if (!f) {
		if (fd >= 0)
			close(fd);
		return 0;
	}
	snprintf(mac, sizeof(mac), "%02x:%02x:%02x:%02x:%02x:%02x", d->mac[0], d->mac[1],
		 d->mac[2], d->mac[3], d->mac[4], d->mac[5]);
	flock(fd, take ? LOCK_EX : LOCK_SH);
	while (!got && fgets(line, sizeof(line), f)) {
		char m[18];

		if (sscanf(line, "%17s %u", m, &last) != 2 || last > 255)
			continue;
		if (!strcmp(m, mac))
			got = (uint8_t)last;
		used[last] = true;
	}
	for (last = 10; take && !got && last <= 250; last++) {
		if (used[last])
			continue;
		if (fseek(f, 0, SEEK_END) == 0 && fprintf(f, "%s %u\n", mac, last) > 0 &&
		    fflush(f) == 0)
			got = (uint8_t)last;
		break;
	}
	flock(fd, LOCK_UN);
	fclose(f);
	return got;
}

int net_dhcp_new(const char *dir, const uint8_t mac[6], struct net_dhcp **out)
{
	char *path = xasprintf("%s/cidr", dir), *text = NULL;
	unsigned p[3];
	int ret = vi_read_file(path, &text, NULL);

	if (ret == 0)
		text[strcspn(text, "\n")] = 0;
	if (ret == 0 && !vi_parse_cidr24(text, p))
		ret = vi_error(VI_EFAIL, "'%s' holds no /24", path);
	free(text);
	free(path);
	if (ret < 0)
		return ret;
	*out = xcalloc(1, sizeof(**out));
	(*out)->dir = xstrdup(dir);
	memcpy((*out)->mac, mac, 6);
	for (int i = 0; i < 3; i++)
		(*out)->net[i] = (uint8_t)p[i];
	/* A guest that has its address from before (a restored state) asks no more. */
	(*out)->lease = lease_find(*out, false);
	return 0;
}

void net_dhcp_free(struct net_dhcp *d)
{
	if (!d)
		return;
	free(d->dir);
	free(d);
}

static uint16_t ip_checksum(const uint8_t *p, size_t len)
{
	uint32_t sum = 0;

	for (size_t i = 0; i + 1 < len; i += 2)
		sum += get16(p + i);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

/* The answer of type `type` to the request at b (its BOOTP part) into reply. */
static size_t dhcp_answer(const struct net_dhcp *d, const uint8_t *b, uint8_t type,
			  uint8_t *reply)
{
	static const uint8_t server_mac[6] = { 0x02, 'v', 'i', 0, 0, 1 };
	uint8_t *ip = reply + ETH_LEN, *udp = ip + IP_LEN, *r = udp + UDP_LEN, *o = r + BOOTP_LEN;
	const uint8_t server[4] = { d->net[0], d->net[1], d->net[2], 1 };
	size_t blen;

	memset(reply, 0, NET_DHCP_REPLY_MAX);
	memcpy(reply, d->mac, 6);
	memcpy(reply + 6, server_mac, 6);
	put16(reply + 12, 0x0800);
	r[0] = 2, r[1] = 1, r[2] = 6;
	memcpy(r + 4, b + 4, 4);   /* xid */
	memcpy(r + 10, b + 10, 2); /* flags */
	if (type != DHCP_NAK) {
		memcpy(r + 16, d->net, 3);
		r[19] = d->lease;
	}
	memcpy(r + 28, b + 28, 16); /* chaddr */
	put16(o, DHCP_MAGIC >> 16);
	put16(o + 2, DHCP_MAGIC & 0xffff);
	o += 4;
	*o++ = 53, *o++ = 1, *o++ = type;
	*o++ = 54, *o++ = 4;
	memcpy(o, server, 4), o += 4;
	if (type != DHCP_NAK) {
		*o++ = 51, *o++ = 4;
		memset(o, 0xff, 4), o += 4; /* infinite */
		*o++ = 1, *o++ = 4;
		*o++ = 255, *o++ = 255, *o++ = 255, *o++ = 0;
	}
	*o++ = 255;
	/* A BOOTP message is 300 bytes at least; some clients take nothing shorter. */
	blen = (size_t)(o - r) < 300 ? 300 : (size_t)(o - r);
	put16(udp, 67);
	put16(udp + 2, 68);
	put16(udp + 4, (uint16_t)(UDP_LEN + blen));
	ip[0] = 0x45;
	put16(ip + 2, (uint16_t)(IP_LEN + UDP_LEN + blen));
	ip[8] = 64;
	ip[9] = 17;
	memcpy(ip + 12, server, 4);
	/* Broadcast when the client asked for it or has no address of ours to take. */
	if ((b[10] & 0x80) || type == DHCP_NAK)
		memset(ip + 16, 0xff, 4);
	else
		memcpy(ip + 16, r + 16, 4);
	put16(ip + 10, ip_checksum(ip, IP_LEN));
	return ETH_LEN + IP_LEN + UDP_LEN + blen;
}

int net_dhcp_parse(const uint8_t *f, size_t len, uint16_t port, struct dhcp_msg *m)
{
	const uint8_t *ip = f + ETH_LEN, *o, *end = f + len;
	size_t ihl;

	memset(m, 0, sizeof(*m));
	if (len < ETH_LEN + IP_LEN || get16(f + 12) != 0x0800 || (ip[0] >> 4) != 4 || ip[9] != 17)
		return -1;
	ihl = (size_t)(ip[0] & 15) * 4;
	m->udp = ip + ihl;
	m->bootp = m->udp + UDP_LEN;
	if (ihl < IP_LEN || m->bootp + BOOTP_LEN + 4 > end || get16(m->udp + 2) != port)
		return -1;
	if (get16(m->bootp + BOOTP_LEN) != DHCP_MAGIC >> 16 ||
	    get16(m->bootp + BOOTP_LEN + 2) != (DHCP_MAGIC & 0xffff))
		return 0;
	for (o = m->bootp + BOOTP_LEN + 4; o < end && *o != 255; o += *o ? 2 + o[1] : 1) {
		if (*o == 0)
			continue;
		if (o + 2 > end || o + 2 + o[1] > end)
			return 0;
		if (o[0] == 53 && o[1] == 1)
			m->type = o[2];
		else if (o[0] == 50 && o[1] == 4)
			m->requested = o + 2;
		else if (o[0] == 54 && o[1] == 4)
			m->server = o + 2;
	}
	return 1;
}

size_t net_dhcp_input(struct net_dhcp *d, const uint8_t *f, size_t len, uint8_t *reply,
		      bool *taken)
{
	struct dhcp_msg m;
	uint8_t requested[4];
	int rc = net_dhcp_parse(f, len, 67, &m);

	/* A DHCP message to a server: this card's and nobody else's to answer. */
	*taken = rc >= 0;
	if (rc < 1 || m.bootp[0] != 1 || memcmp(m.bootp + 28, d->mac, 6))
		return 0;
	if (m.type != DHCP_DISCOVER && m.type != DHCP_REQUEST)
		return 0;
	if (!d->lease && !(d->lease = lease_find(d, true)))
		return 0; /* no address to give: the client keeps asking */
	if (m.type == DHCP_DISCOVER)
		return dhcp_answer(d, m.bootp, DHCP_OFFER, reply);
	/* A request: to us (or renewing, with no server named), for the address it has. */
	if (m.server && (memcmp(m.server, d->net, 3) || m.server[3] != 1))
		return 0;
	/* Without option 50, the address it has: ciaddr. */
	memcpy(requested, m.requested ? m.requested : m.bootp + 12, 4);
	if (memcmp(requested, d->net, 3) || requested[3] != d->lease)
		return dhcp_answer(d, m.bootp, DHCP_NAK, reply);
	return dhcp_answer(d, m.bootp, DHCP_ACK, reply);
}

int net_dhcp_address(const struct net_dhcp *d, char *buf, size_t len)
{
	if (!d->lease)
		return vi_error(VI_ESTATE, "the guest has not asked for an address yet");
	snprintf(buf, len, "%u.%u.%u.%u", d->net[0], d->net[1], d->net[2], d->lease);
	return 0;
}
