/* Guest networking on libvirt: the networks "nat" NICs join, started when
 * needed; the port forwards of "user" NICs; the addresses guests get. */
#include "virt.h"
#include "error.h"
#include "log.h"
#include "util.h"

#include <libvirt/libvirt-qemu.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* libvirt's own default network, as its packages define it. */
static const char default_network_xml[] =
	"<network>"
	"<name>" VIRT_NAT_NETWORK "</name>"
	"<bridge name='virbr0'/>"
	"<forward/>"
	"<ip address='192.168.122.1' netmask='255.255.255.0'>"
	"<dhcp><range start='192.168.122.2' end='192.168.122.254'/></dhcp>"
	"</ip>"
	"</network>";

static int network_lookup(struct vi_hv_ctx *ctx, virConnectPtr conn, const struct vi_hv_vm *vm,
			  const char *name, virNetworkPtr *net)
{
	if ((*net = virNetworkLookupByName(conn, name)))
		return 0;
	virResetLastError();
	if (strcmp(name, VIRT_NAT_NETWORK))
		return vi_error(VI_ENOTFOUND, "no libvirt network '%s' on '%s' for '%s'", name,
				virt_uri(ctx), vm->name);
	if (!(*net = virNetworkDefineXML(conn, default_network_xml)))
		return virt_error("cannot define libvirt network '%s' on '%s' for '%s'", name,
				  virt_uri(ctx), vm->name);
	vi_info("defined libvirt network '%s' (192.168.122.0/24 on virbr0)", name);
	return 0;
}

/* Another VM starting at the same time may have started it first. */
static int network_start(virNetworkPtr net, const char *name, const struct vi_hv_vm *vm)
{
	if (virNetworkIsActive(net) == 1)
		return 0;
	if (virNetworkCreate(net) < 0 && virNetworkIsActive(net) != 1)
		return virt_error("cannot start libvirt network '%s' for '%s'", name, vm->name);
	virResetLastError();
	/* Guests defined on it cannot start without it: bring it back with libvirtd. */
	if (virNetworkSetAutostart(net, 1) < 0)
		return virt_error("cannot mark libvirt network '%s' autostart", name);
	vi_info("started libvirt network '%s'", name);
	return 0;
}

int virt_networks_ready(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, bool start)
{
	virConnectPtr conn;
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < vm->nnics; i++) {
		const char *name = virt_nic_network(vm->nics[i]);
		virNetworkPtr net;
		if (!name)
			continue;
		if ((rc = virt_connect(ctx, &conn)) || (rc = network_lookup(ctx, conn, vm, name, &net)))
			return rc;
		if (start)
			rc = network_start(net, name, vm);
		virNetworkFree(net);
	}
	return rc;
}

char *virt_hostfwd_command(const char *netdev, const struct vi_hv_forward *f, bool add)
{
	const char *proto = f->proto == VI_HV_UDP ? "udp" : "tcp";
	const char *addr = f->host_addr ? f->host_addr : "127.0.0.1";

	if (add)
		return xasprintf("hostfwd_add %s %s:%s:%u-:%u", netdev, proto, addr, f->host_port,
				 f->guest_port);
	return xasprintf("hostfwd_remove %s %s:%s:%u", netdev, proto, addr, f->host_port);
}

/* QEMU's id for the backend of NIC `nic` of the running dom: libvirt names
 * it "host" and the device's alias, which only the live XML tells. */
static int user_netdev(virDomainPtr dom, const struct vi_hv_vm *vm, size_t nic, char **id)
{
	char *xml = virDomainGetXMLDesc(dom, 0), *expr, *alias = NULL;
	int rc;

	if (!xml)
		return virt_error("cannot get the definition of '%s'", vm->name);
	expr = xasprintf("string(/domain/devices/interface[%zu][@type='user']/alias/@name)",
			 nic + 1);
	rc = virt_xpath_string(xml, "the live domain XML", expr, &alias);
	if (!rc && !*alias)
		rc = vi_error(VI_EUSAGE, "NIC %zu of running '%s' is not a user NIC: only those "
			      "forward ports", nic, vm->name);
	if (!rc)
		*id = xasprintf("host%s", alias);
	free(alias);
	free(expr);
	free(xml);
	return rc;
}

/* Runs a forward's HMP command; *reply (the caller's) is QEMU's answer,
 * empty when all went well. */
static int hostfwd(virDomainPtr dom, const struct vi_hv_vm *vm, size_t nic,
		   const struct vi_hv_forward *f, bool add, char **reply)
{
	char *netdev = NULL, *cmd;
	int rc = virt_check_forward(vm, f);

	if (rc || (rc = user_netdev(dom, vm, nic, &netdev)))
		return rc;
	cmd = virt_hostfwd_command(netdev, f, add);
	if (virDomainQemuMonitorCommand(dom, cmd, reply, VIR_DOMAIN_QEMU_MONITOR_COMMAND_HMP) < 0)
		rc = virt_error("cannot %s a port forward of '%s'", add ? "add" : "remove",
				vm->name);
	free(cmd);
	free(netdev);
	return rc;
}

/* QEMU answers a forward it cannot bind with "Could not set up host
 * forwarding rule ...": another socket holds the port (or this VM's own
 * forward does). */
static int forward_add(virDomainPtr dom, const struct vi_hv_vm *vm, size_t nic,
		       const struct vi_hv_forward *f)
{
	char *reply = NULL;
	int rc = hostfwd(dom, vm, nic, f, true, &reply);

	if (!rc && strstr(reply, "Could not set up host forwarding rule"))
		rc = vi_error(VI_ESTATE, "host port %u is in use: cannot forward it to port %u "
			      "of '%s'", f->host_port, f->guest_port, vm->name);
	else if (!rc && reply[strspn(reply, " \r\n")])
		rc = vi_error(VI_EFAIL, "cannot forward host port %u to '%s': %s", f->host_port,
			      vm->name, reply);
	free(reply);
	return rc;
}

int virt_forwards_start(virDomainPtr dom, const struct vi_hv_vm *vm)
{
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < vm->nnics; i++)
		for (size_t j = 0; rc == 0 && j < vm->nics[i]->nforwards; j++)
			rc = forward_add(dom, vm, i, vm->nics[i]->forwards[j]);
	return rc;
}

/* vm's domain, which must be running, and NIC `nic` of it. */
static int lookup_nic(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, size_t nic,
		      virDomainPtr *dom)
{
	int rc;

	if (nic >= vm->nnics)
		return vi_error(VI_EUSAGE, "'%s' has no NIC %zu", vm->name, nic);
	if ((rc = virt_lookup(ctx, vm, dom)))
		return rc;
	if (virDomainIsActive(*dom) == 1)
		return 0;
	virDomainFree(*dom);
	return vi_error(VI_ESTATE, "'%s' is not running", vm->name);
}

int virt_forward_add(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, size_t nic,
		     const struct vi_hv_forward *f)
{
	virDomainPtr dom;
	int rc = lookup_nic(ctx, vm, nic, &dom);

	if (rc)
		return rc;
	rc = forward_add(dom, vm, nic, f);
	virDomainFree(dom);
	return rc;
}

int virt_forward_remove(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, size_t nic,
			const struct vi_hv_forward *f)
{
	virDomainPtr dom;
	char *reply = NULL;
	int rc = lookup_nic(ctx, vm, nic, &dom);

	if (rc)
		return rc;
	rc = hostfwd(dom, vm, nic, f, false, &reply);
	if (!rc && strstr(reply, "not found"))
		rc = vi_error(VI_ESTATE, "'%s' has no forward of host port %u/%s", vm->name,
			      f->host_port, f->proto == VI_HV_UDP ? "udp" : "tcp");
	else if (!rc && !strstr(reply, "removed"))
		rc = vi_error(VI_EFAIL, "cannot remove the forward of host port %u of '%s': %s",
			      f->host_port, vm->name, reply);
	free(reply);
	virDomainFree(dom);
	return rc;
}

/* The first IPv4 address libvirt knows from `source` for the interface with
 * this MAC: 0 with buf, 1 when there is none. */
static int address_from(virDomainPtr dom, const struct vi_hv_vm *vm, unsigned source,
			const char *mac, char *buf, size_t len)
{
	virDomainInterfacePtr *ifaces = NULL;
	int n = virDomainInterfaceAddresses(dom, &ifaces, source, 0), rc = 1;

	if (n < 0)
		return virt_error("cannot get the addresses of '%s'", vm->name);
	for (int i = 0; i < n; i++) {
		for (unsigned j = 0; rc == 1 && j < ifaces[i]->naddrs; j++)
			if (ifaces[i]->hwaddr && !strcasecmp(ifaces[i]->hwaddr, mac) &&
			    ifaces[i]->addrs[j].type == VIR_IP_ADDR_TYPE_IPV4) {
				snprintf(buf, len, "%s", ifaces[i]->addrs[j].addr);
				rc = 0;
			}
		virDomainInterfaceFree(ifaces[i]);
	}
	free(ifaces);
	return rc;
}

int virt_nic_address(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, size_t nic, char *buf,
		     size_t len)
{
	const char *mode = nic < vm->nnics ? vm->nics[nic]->mode : NULL;
	char *xml = NULL, *expr = NULL, *mac = NULL;
	virDomainPtr dom;
	int rc = lookup_nic(ctx, vm, nic, &dom);

	if (rc)
		return rc;
	/* QEMU's DHCP server hands its first address to the one guest on
	 * each user network: there is no lease to ask for. */
	if (mode && !strcmp(mode, "user")) {
		snprintf(buf, len, "%s", VI_HV_USER_GUEST_IP);
		goto cleanup;
	}
	/* libvirt makes up the MAC of a NIC that has none. */
	if (!(xml = virDomainGetXMLDesc(dom, 0))) {
		rc = virt_error("cannot get the definition of '%s'", vm->name);
		goto cleanup;
	}
	expr = xasprintf("string(/domain/devices/interface[%zu]/mac/@address)", nic + 1);
	if ((rc = virt_xpath_string(xml, "the live domain XML", expr, &mac)))
		goto cleanup;
	rc = address_from(dom, vm, VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_LEASE, mac, buf, len);
	if (rc == 1 && mode && (!strcmp(mode, "bridge") || !strcmp(mode, "tap")))
		rc = address_from(dom, vm, VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_ARP, mac, buf, len);
	if (rc == 1)
		rc = vi_error(VI_ENOTFOUND, "no address known yet for NIC %zu of '%s' (%s)", nic,
			      vm->name, mac);
cleanup:
	free(mac);
	free(expr);
	free(xml);
	virDomainFree(dom);
	return rc;
}

/* --- private networks ----------------------------------------------------- */

int virt_net_up(struct vi_hv_ctx *ctx, const char *name, const char *cidr)
{
	virConnectPtr conn;
	virNetworkPtr net;
	unsigned p[3];
	int rc = virt_connect(ctx, &conn);

	if (rc)
		return rc;
	if (!vi_parse_cidr24(cidr, p))
		return vi_error(VI_EUSAGE, "network '%s': '%s' is not a /24 such as 10.250.3.0/24",
				name, cidr);
	if ((net = virNetworkLookupByName(conn, name))) {
		char *xml = virNetworkGetXMLDesc(net, 0);
		char *want = xasprintf("%u.%u.%u.1", p[0], p[1], p[2]);
		if (xml && !strstr(xml, want))
			rc = vi_error(VI_ESTATE, "libvirt network '%s' on '%s' has another range than %s",
				      name, virt_uri(ctx), cidr);
		free(xml);
		free(want);
	} else {
		virResetLastError();
		/* No <forward>: libvirt's isolated mode, the guests' traffic goes
		 * nowhere but between them and this host's bridge. No gateway is
		 * handed out, so a guest keeps its default route elsewhere. */
		char *xml = xasprintf("<network><name>%s</name><bridge stp='off' delay='0'/>"
				      "<dns enable='no'/>"
				      "<ip address='%u.%u.%u.1' netmask='255.255.255.0'>"
				      "<dhcp><range start='%u.%u.%u.10' end='%u.%u.%u.250'/></dhcp></ip>"
				      "</network>",
				      name, p[0], p[1], p[2], p[0], p[1], p[2], p[0], p[1], p[2]);
		net = virNetworkDefineXML(conn, xml);
		free(xml);
		if (!net)
			return virt_error("cannot define libvirt network '%s' on '%s'", name,
					  virt_uri(ctx));
	}
	if (rc == 0 && virNetworkIsActive(net) != 1 && virNetworkCreate(net) < 0 &&
	    virNetworkIsActive(net) != 1)
		rc = virt_error("cannot start libvirt network '%s' on '%s'", name, virt_uri(ctx));
	if (rc == 0 && virNetworkSetAutostart(net, 1) < 0)
		rc = virt_error("cannot mark libvirt network '%s' autostart", name);
	virResetLastError();
	virNetworkFree(net);
	return rc;
}

int virt_net_down(struct vi_hv_ctx *ctx, const char *name)
{
	virConnectPtr conn;
	virNetworkPtr net;
	int rc = virt_connect(ctx, &conn);

	if (rc)
		return rc;
	if (!(net = virNetworkLookupByName(conn, name))) {
		virResetLastError();
		return 0;
	}
	if (virNetworkIsActive(net) == 1 && virNetworkDestroy(net) < 0)
		rc = virt_error("cannot stop libvirt network '%s' on '%s'", name, virt_uri(ctx));
	if (rc == 0 && virNetworkIsPersistent(net) == 1 && virNetworkUndefine(net) < 0)
		rc = virt_error("cannot remove libvirt network '%s' on '%s'", name, virt_uri(ctx));
	virNetworkFree(net);
	return rc;
}
