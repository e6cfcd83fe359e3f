/* vi's own private networks for native VMs: a Linux bridge each, with the host at the
 * range's .1 (so that vi reaches its guests over SSH, as on libvirt's isolated networks)
 * and nothing routed for them: forwarding off on the bridge, no IPv6, its frames kept from
 * the host's packet filter. Its guests reach each other and this host, nothing beyond.
 * Each guest's VMM answers its DHCP from the network's leases (net-dhcp.c). A network lives in the store, nets/NAME/: "cidr" (its
 * range), "bridge" (the bridge's name) and "leases"; the bridge itself is made again when
 * the host has lost it (a reboot), so the network is kept as long as the store has it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "sha256.h"
#include "util.h"
#include "vmm/internal.h"
#include "vmm/plugin.h"

static char *net_dir(const char *home, const char *name)
{
	return xasprintf("%s/nets/%s", home, name);
}

/* A file of the network's directory, its first line without the newline; NULL if none. */
static char *net_read(const char *dir, const char *file)
{
	char *path = xasprintf("%s/%s", dir, file), *buf = NULL;

	if (vi_read_file(path, &buf, NULL) == 0)
		buf[strcspn(buf, "\n")] = 0;
	free(path);
	return buf;
}

static int net_write(const char *dir, const char *file, const char *text)
{
	char *path = xasprintf("%s/%s", dir, file), *line = xasprintf("%s\n", text);
	int ret = vi_write_file_atomic(path, line, strlen(line), 0644);

	free(line);
	free(path);
	return ret;
}

/* "vi-" and twelve hex digits of a hash of the store and the network's name: fits
 * IFNAMSIZ whatever the name, and two stores' networks of one name are two bridges. */
static char *bridge_name(const char *home, const char *name)
{
	char hex[SHA256_HEX_SIZE], *key = xasprintf("%s/nets/%s", home, name);

	sha256_hex(key, strlen(key), hex);
	free(key);
	return xasprintf("vi-%.12s", hex);
}

/* Writes value to a file of /proc or /sys made from fmt and the bridge's name. Absent
 * (no IPv6, no bridge netfilter on this host) is nothing to turn off. */
static int sysfs_set(const char *fmt, const char *bridge, const char *value)
{
	char *path = xasprintf(fmt, bridge);
	int fd = open(path, O_WRONLY | O_CLOEXEC), ret = 0;

	if (fd >= 0 && write(fd, value, strlen(value)) < 0)
		ret = vi_error_errno(VI_EFAIL, errno, "cannot write '%s'", path);
	if (fd >= 0)
		close(fd);
	free(path);
	return ret;
}

int vmm_link_set(int sock, const char *ifname, bool up)
{
	struct ifreq ifr = { 0 };

	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", ifname);
	if (ioctl(sock, SIOCGIFFLAGS, &ifr) < 0)
		return -1;
	if (up)
		ifr.ifr_flags |= IFF_UP;
	else
		ifr.ifr_flags &= ~IFF_UP;
	return ioctl(sock, SIOCSIFFLAGS, &ifr);
}

/* Makes the bridge unless it is there, and brings it up at the range's .1: before that,
 * no link-local address of the host's on it, nothing routed from it, and its frames not
 * through the host's packet filter. Done again at each start of a guest on it, as a
 * write of the host's ip_forward turns forwarding on for every interface. */
static int bridge_up(const char *bridge, const char *cidr)
{
	static const char *const settings[][2] = {
		{ "/proc/sys/net/ipv6/conf/%s/disable_ipv6", "1" },
		{ "/proc/sys/net/ipv4/conf/%s/forwarding", "0" },
		{ "/sys/class/net/%s/bridge/nf_call_iptables", "0" },
		{ "/sys/class/net/%s/bridge/nf_call_ip6tables", "0" },
		{ "/sys/class/net/%s/bridge/nf_call_arptables", "0" },
	};
	struct ifreq ifr = { 0 };
	struct sockaddr_in *sin = (struct sockaddr_in *)&ifr.ifr_addr;
	unsigned p[3];
	int sock, ret = 0;

	if (!vi_parse_cidr24(cidr, p))
		return vi_error(VI_EFAIL, "bridge '%s': '%s' is not a /24", bridge, cidr);
	if ((sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0)) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot open a socket");
	if (ioctl(sock, SIOCBRADDBR, bridge) < 0 && errno != EEXIST)
		ret = vi_error_errno(VI_EFAIL, errno, "cannot make bridge '%s'", bridge);
	for (size_t i = 0; ret == 0 && i < sizeof(settings) / sizeof(settings[0]); i++)
		ret = sysfs_set(settings[i][0], bridge, settings[i][1]);
	snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "%s", bridge);
	sin->sin_family = AF_INET;
	sin->sin_addr.s_addr = htonl(p[0] << 24 | p[1] << 16 | p[2] << 8 | 1);
	if (ret == 0 && ioctl(sock, SIOCSIFADDR, &ifr) < 0)
		ret = vi_error_errno(VI_EFAIL, errno, "cannot give bridge '%s' its address", bridge);
	sin->sin_addr.s_addr = htonl(0xffffff00);
	if (ret == 0 && ioctl(sock, SIOCSIFNETMASK, &ifr) < 0)
		ret = vi_error_errno(VI_EFAIL, errno, "cannot give bridge '%s' its netmask", bridge);
	if (ret == 0 && vmm_link_set(sock, bridge, true) < 0)
		ret = vi_error_errno(VI_EFAIL, errno, "cannot bring bridge '%s' up", bridge);
	close(sock);
	return ret;
}

static int bridge_down(const char *bridge)
{
	int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0), ret = 0;

	if (sock < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot open a socket");
	if (vmm_link_set(sock, bridge, false) < 0 && errno != ENODEV)
		ret = vi_error_errno(VI_EFAIL, errno, "cannot take bridge '%s' down", bridge);
	if (ret == 0 && ioctl(sock, SIOCBRDELBR, bridge) < 0 && errno != ENXIO && errno != ENODEV)
		ret = vi_error_errno(VI_EFAIL, errno, "cannot remove bridge '%s'", bridge);
	close(sock);
	return ret;
}

/* Another network of the store on the same range: its name, else NULL. */
static char *range_taken(const char *home, const char *name, const char *cidr)
{
	char *nets = xasprintf("%s/nets", home), *taken = NULL;
	struct dirent **list = NULL;
	int n = scandir(nets, &list, NULL, alphasort);

	for (int i = 0; i < n; i++) {
		char *dir = net_dir(home, list[i]->d_name), *other;

		if (!taken && list[i]->d_name[0] != '.' && strcmp(list[i]->d_name, name) &&
		    (other = net_read(dir, "cidr"))) {
			if (!strcmp(other, cidr))
				taken = xstrdup(list[i]->d_name);
			free(other);
		}
		free(dir);
		free(list[i]);
	}
	free(list);
	free(nets);
	return taken;
}

int vmm_net_up(const char *home, const char *name, const char *cidr)
{
	char *dir = net_dir(home, name), *had = net_read(dir, "cidr"), *bridge = NULL, *taken;
	unsigned p[3];
	int ret = 0;

	if (!vi_parse_cidr24(cidr, p))
		ret = vi_error(VI_EUSAGE, "network '%s': '%s' is not a /24 such as 10.250.3.0/24",
			       name, cidr);
	else if (had && strcmp(had, cidr))
		ret = vi_error(VI_ESTATE, "network '%s' has another range than %s: %s", name, cidr,
			       had);
	else if ((taken = range_taken(home, name, cidr))) {
		ret = vi_error(VI_ESTATE, "network '%s' has range %s already", taken, cidr);
		free(taken);
	}
	if (ret == 0 && !had) {
		bridge = bridge_name(home, name);
		if ((ret = vi_mkdir_p(dir, 0755)) == 0 && (ret = net_write(dir, "bridge", bridge)) == 0)
			ret = net_write(dir, "cidr", cidr);
	} else if (ret == 0 && !(bridge = net_read(dir, "bridge"))) {
		ret = vi_error(VI_EFAIL, "network '%s' names no bridge in '%s'", name, dir);
	}
	if (ret == 0)
		ret = bridge_up(bridge, cidr);
	free(bridge);
	free(had);
	free(dir);
	return ret;
}

int vmm_net_down(const char *home, const char *name)
{
	char *dir = net_dir(home, name), *bridge = net_read(dir, "bridge");
	int ret = 0;

	if (bridge)
		ret = bridge_down(bridge);
	if (ret == 0 && vi_file_exists(dir))
		ret = vi_rm_rf(dir);
	free(bridge);
	free(dir);
	return ret;
}

int vmm_net_find(const char *home, const char *name, char **bridge, char **dir)
{
	*dir = net_dir(home, name);
	*bridge = net_read(*dir, "bridge");
	if (*bridge)
		return 0;
	free(*dir);
	*dir = NULL;
	return 1;
}

int vmm_net_start(const char *dir)
{
	char *bridge = net_read(dir, "bridge"), *cidr = net_read(dir, "cidr");
	int ret = bridge && cidr ? bridge_up(bridge, cidr)
				 : vi_error(VI_EFAIL, "'%s' names no bridge or range", dir);

	free(bridge);
	free(cidr);
	return ret;
}
