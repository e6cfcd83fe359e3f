/* libFuzzer target: frames a guest sends on one of vi's private networks, which its
 * VMM reads as DHCP requests and answers, and frames slirp sends a guest, in which the
 * VMM looks for the DHCP ACK (lib/vmm/net-dhcp.c). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "vmm/internal.h"

static struct net_dhcp *dhcp;
static char dir[] = "/tmp/fuzz-dhcp.XXXXXX";

static void cleanup(void)
{
	vi_rm_rf(dir);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t mac[6] = { 0x52, 0x54, 0x00, 0x12, 0x34, 0x56 };
	uint8_t reply[NET_DHCP_REPLY_MAX];
	struct dhcp_msg m;
	bool taken;
	size_t len;

	if (!dhcp) {
		char *cidr;

		if (!mkdtemp(dir))
			abort();
		atexit(cleanup);
		cidr = xasprintf("%s/cidr", dir);
		if (vi_write_file_atomic(cidr, "10.250.9.0/24\n", 14, 0644) < 0 ||
		    net_dhcp_new(dir, mac, &dhcp) < 0)
			abort();
		free(cidr);
	}
	len = net_dhcp_input(dhcp, data, size, reply, &taken);
	if (len > NET_DHCP_REPLY_MAX || (len && !taken))
		abort();
	if (net_dhcp_parse(data, size, 68, &m) == 1 && m.bootp + 240 > data + size)
		abort();
	return 0;
}
