/* The DHCP server a VMM runs for its guest on one of vi's private networks
 * (lib/vmm/net-dhcp.c): offers and acks from the network's range, one address a MAC
 * kept in the lease file, NAKs for another, and frames that are not its own to answer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "tap.h"
#include "util.h"
#include "vmm/internal.h"

static const uint8_t mac_a[6] = { 0x52, 0x54, 0, 0, 0, 0xa }, mac_b[6] = { 0x52, 0x54, 0, 0, 0, 0xb };

/* A DHCP message of type from mac: broadcast, from 0.0.0.0, with options opts. */
static size_t request(uint8_t *f, const uint8_t mac[6], const uint8_t *opts, size_t nopts)
{
	uint8_t *ip = f + 14, *udp = ip + 20, *b = udp + 8;
	size_t blen = 300;

	memset(f, 0, 14 + 20 + 8 + blen);
	memset(f, 0xff, 6);
	memcpy(f + 6, mac, 6);
	f[12] = 8;
	ip[0] = 0x45, ip[9] = 17;
	memset(ip + 16, 0xff, 4);
	udp[1] = 68, udp[3] = 67;
	b[0] = 1, b[1] = 1, b[2] = 6, b[4] = 0x76, b[10] = 0x80;
	memcpy(b + 28, mac, 6);
	b[236] = 0x63, b[237] = 0x82, b[238] = 0x53, b[239] = 0x63;
	memcpy(b + 240, opts, nopts);
	b[240 + nopts] = 255;
	return 14 + 20 + 8 + blen;
}

/* The type of the answer in r, with its yiaddr as "A.B.C.D" in addr. */
static int answer(const uint8_t *r, size_t len, char *addr, uint8_t server[4])
{
	const uint8_t *b = r + 14 + 20 + 8, *o = b + 240;
	int type = 0;

	snprintf(addr, 16, "%u.%u.%u.%u", b[16], b[17], b[18], b[19]);
	while (o < r + len && *o != 255) {
		if (o[0] == 53)
			type = o[2];
		if (o[0] == 54)
			memcpy(server, o + 2, 4);
		o += 2 + o[1];
	}
	return type;
}

int main(void)
{
	char dir[] = "/tmp/vmm-dhcp.XXXXXX", *path, addr[16], *leases;
	uint8_t f[400], r[NET_DHCP_REPLY_MAX], server[4] = { 0 };
	static const uint8_t discover[] = { 53, 1, 1 };
	static const uint8_t req10[] = { 53, 1, 3, 50, 4, 10, 250, 9, 10, 54, 4, 10, 250, 9, 1 };
	static const uint8_t req99[] = { 53, 1, 3, 50, 4, 10, 250, 9, 99 };
	static const uint8_t other[] = { 53, 1, 3, 50, 4, 10, 250, 9, 10, 54, 4, 10, 250, 9, 7 };
	struct net_dhcp *a, *b, *again;
	bool taken;
	size_t n;

	if (!mkdtemp(dir))
		return 1;
	path = xasprintf("%s/cidr", dir);
	vi_write_file_atomic(path, "10.250.9.0/24\n", 14, 0644);
	free(path);
	is_int(net_dhcp_new(dir, mac_a, &a), 0, "a card on the network");
	is_int(net_dhcp_new(dir, mac_b, &b), 0, "another");
	is_int(net_dhcp_address(a, addr, sizeof(addr)), -VI_ESTATE, "no address before it asks");

	n = net_dhcp_input(a, f, request(f, mac_a, discover, sizeof(discover)), r, &taken);
	ok(n >= 14 + 20 + 8 + 300 && taken, "a discover is answered and goes no further");
	is_int(answer(r, n, addr, server), 2, "with an offer");
	is_str(addr, "10.250.9.10", "of the range's first address");
	ok(server[0] == 10 && server[3] == 1, "from the network's .1");
	ok(!memcmp(r, mac_a, 6), "to the card's MAC");
	n = net_dhcp_input(b, f, request(f, mac_b, discover, sizeof(discover)), r, &taken);
	answer(r, n, addr, server);
	is_str(addr, "10.250.9.11", "the other card gets the next one");

	n = net_dhcp_input(a, f, request(f, mac_a, req10, sizeof(req10)), r, &taken);
	is_int(answer(r, n, addr, server), 5, "a request for its address: ack");
	is_str(addr, "10.250.9.10", "of it");
	n = net_dhcp_input(a, f, request(f, mac_a, req99, sizeof(req99)), r, &taken);
	is_int(answer(r, n, addr, server), 6, "a request for another: nak");
	n = net_dhcp_input(a, f, request(f, mac_a, other, sizeof(other)), r, &taken);
	ok(n == 0 && taken, "a request to another server: no answer, and dropped");
	n = net_dhcp_input(a, f, request(f, mac_b, discover, sizeof(discover)), r, &taken);
	ok(n == 0 && taken, "another card's MAC in the message: no answer");

	request(f, mac_a, discover, sizeof(discover));
	f[14 + 20 + 3] = 53;
	ok(net_dhcp_input(a, f, 342, r, &taken) == 0 && !taken, "a DNS query goes on its way");
	f[12] = 8, f[13] = 6;
	ok(net_dhcp_input(a, f, 342, r, &taken) == 0 && !taken, "an ARP frame too");
	ok(net_dhcp_input(a, f, 20, r, &taken) == 0 && !taken, "a short frame too");

	is_int(net_dhcp_new(dir, mac_a, &again), 0, "the card again (its VMM restarted)");
	is_int(net_dhcp_address(again, addr, sizeof(addr)), 0, "knows its address");
	is_str(addr, "10.250.9.10", "from the lease file");
	path = xasprintf("%s/leases", dir);
	vi_read_file(path, &leases, NULL);
	is_str(leases, "52:54:00:00:00:0a 10\n52:54:00:00:00:0b 11\n", "which has a line a card");
	free(leases);
	free(path);
	net_dhcp_free(a);
	net_dhcp_free(b);
	net_dhcp_free(again);
	vi_rm_rf(dir);
	return done();
}
