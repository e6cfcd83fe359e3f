/* Domain XML from lib/virt for every kind of guest: virt-xml-validate accepts
 * it, names and paths survive escaping, and what cannot be described fails. */
#include "tap.h"
#include "hv-virt-host.h"
#include "error.h"
#include "util.h"
#include "virt/virt.h"

#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define MiB (1024ull * 1024)

static const char weird_kernel[] = "/srv/vi/we&'rd \"<dir>\"/vmlinuz";
static const char weird_cmdline[] = "console=ttyS0 vi.note=\"a<b>&'c'\" ]]>";
static const char weird_disk[] = "/srv/vi/d&<>'\"isk.qcow2";

static struct vi_hv_disk disks[] = {
	{ sizeof(struct vi_hv_disk), weird_disk, VI_DISK_QCOW2, 0, 0 },
	{ sizeof(struct vi_hv_disk), "/srv/vi/seed.img", VI_DISK_RAW, 1, 0 },
};

static struct vi_hv_nic nics[] = {
	{ sizeof(struct vi_hv_nic), "52:54:00:12:34:56", "user", NULL },
	{ sizeof(struct vi_hv_nic), "52:54:00:12:34:57", "network", "default" },
	{ sizeof(struct vi_hv_nic), NULL, "bridge", "br0" },
	{ sizeof(struct vi_hv_nic), NULL, "tap", "vi-tap0" },
};

static const struct vi_hv_disk *const disk_ptrs[] = { &disks[0], &disks[1] };
static const struct vi_hv_nic *const nic_ptrs[] = { &nics[0], &nics[1], &nics[2], &nics[3] };

static struct vi_hv_vm base_vm(void)
{
	struct vi_hv_vm vm = {
		.struct_size = sizeof(vm),
		.name = "xml-test",
		.uuid = "0b0c9c5e-55b4-4b55-9d3c-2a3b8a6f6e01",
		.console_log = "/srv/vi/vms/xml-test/run/console.log",
		.cpus = 1, .max_cpus = 4,
		.memory = 256 * MiB, .max_memory = 1024 * MiB,
		.kernel = weird_kernel,
		.initrd = "/srv/vi/initrd.gz",
		.cmdline = weird_cmdline,
		.disks = disk_ptrs, .ndisks = 2,
		.nics = nic_ptrs, .nnics = 4,
	};
	return vm;
}

/* virt-xml-validate's verdict on xml against schema (its exit status). */
static int validate(const char *xml, const char *schema)
{
	char path[] = "/tmp/vi-xml-XXXXXX";
	char cmd[256];
	int fd = mkstemp(path), rc;

	if (fd < 0 || write(fd, xml, strlen(xml)) != (ssize_t)strlen(xml))
		return -1;
	close(fd);
	snprintf(cmd, sizeof(cmd), "virt-xml-validate %s %s >/dev/null 2>&1", path, schema);
	rc = system(cmd);
	if (rc)
		printf("# rejected XML:\n%s", xml);
	unlink(path);
	return rc == -1 ? -1 : WEXITSTATUS(rc);
}

/* The string value of an XPath expression over xml (owned by the caller). */
static char *xpath(const char *xml, const char *expr)
{
	xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL, XML_PARSE_NONET);
	xmlXPathContextPtr ctx = doc ? xmlXPathNewContext(doc) : NULL;
	xmlXPathObjectPtr v = ctx ? xmlXPathEvalExpression(BAD_CAST expr, ctx) : NULL;
	char *s = v ? (char *)xmlXPathCastToString(v) : NULL;
	char *out = strdup(s ? s : "(unparsable)");

	xmlFree(s);
	xmlXPathFreeObject(v);
	xmlXPathFreeContext(ctx);
	xmlFreeDoc(doc);
	return out;
}

#define is_xpath(xml, expr, want, ...)                                                         \
	do {                                                                                   \
		char *got_ = xpath(xml, expr);                                                 \
		is_str(got_, want, __VA_ARGS__);                                               \
		free(got_);                                                                    \
	} while (0)

static char *xml_for(const struct virt_guest *g, const struct vi_hv_vm *vm)
{
	char *xml = NULL;
	int rc = virt_domain_xml(g, vm, &xml);

	if (rc)
		printf("# %s: %s\n", g->name, vi_error_message());
	return xml;
}

static void check_guest(const struct virt_guest *g, const struct vi_hv_vm *vm, const char *bus,
			const char *first_disk)
{
	char *xml = xml_for(g, vm);
	char expr[128];

	ok(xml != NULL, "%s: XML written", g->name);
	if (!xml)
		return;
	is_int(validate(xml, "domain"), 0, "%s: virt-xml-validate accepts it", g->name);
	is_xpath(xml, "string(/domain/@type)", g->domain_type, "%s: domain type", g->name);
	is_xpath(xml, "string(/domain/os/type)", g->os_type, "%s: os type", g->name);
	is_xpath(xml, "string(/domain/os/kernel)", weird_kernel, "%s: kernel path intact",
		 g->name);
	if (g->dimm_hotplug) {
		/* Hot-added memory comes online by itself. */
		char *line = xasprintf("%s memhp_default_state=online", weird_cmdline);
		is_xpath(xml, "string(/domain/os/cmdline)", line,
			 "%s: cmdline intact, memory hotplug online", g->name);
		free(line);
	} else {
		is_xpath(xml, "string(/domain/os/cmdline)", weird_cmdline, "%s: cmdline intact",
			 g->name);
	}
	is_xpath(xml, "string(/domain/devices/disk[1]/source/@file)", weird_disk,
		 "%s: disk path intact", g->name);
	snprintf(expr, sizeof(expr), "string(/domain/devices/disk[target/@dev='%s']/target/@bus)",
		 first_disk);
	is_xpath(xml, expr, bus, "%s: first disk is %s on %s", g->name, first_disk, bus);
	is_xpath(xml, "string(/domain/devices/disk[1]/driver/@type)", "qcow2",
		 "%s: qcow2 overlay", g->name);
	is_xpath(xml, "count(/domain/devices/disk[2]/readonly)", "1", "%s: read-only disk",
		 g->name);
	is_xpath(xml, "string(/domain/vcpu)", "4", "%s: max vCPUs", g->name);
	is_xpath(xml, "string(/domain/vcpu/@current)", "1", "%s: current vCPUs", g->name);
	if (g->dimm_hotplug) {
		/* Boots with its memory; DIMMs bring it up to the maximum. */
		is_xpath(xml, "string(/domain/maxMemory)", "1048576", "%s: max memory in KiB",
			 g->name);
		is_xpath(xml, "string(/domain/maxMemory/@slots)", "16", "%s: DIMM slots", g->name);
		is_xpath(xml, "string(/domain/memory)", "262144", "%s: boot memory", g->name);
		is_xpath(xml, "string(/domain/cpu/numa/cell/@cpus)", "0-3",
			 "%s: one NUMA cell holds every vCPU", g->name);
		is_xpath(xml, "string(/domain/devices/channel[@type='unix']/target/@name)",
			 "org.qemu.guest_agent.0", "%s: the guest agent's channel", g->name);
	} else {
		is_xpath(xml, "string(/domain/memory)", "1048576", "%s: max memory in KiB",
			 g->name);
		is_xpath(xml, "count(/domain/maxMemory)", "0", "%s: no DIMM slots", g->name);
	}
	is_xpath(xml, "string(/domain/currentMemory)", "262144", "%s: current memory", g->name);
	is_xpath(xml, "string(//log/@file)", vm->console_log, "%s: console log", g->name);
	is_xpath(xml, "string(/domain/on_poweroff)", "destroy", "%s: on_poweroff", g->name);
	free(xml);
}

static void test_qemu(void)
{
	struct vi_hv_vm vm = base_vm();
	char *xml;

	check_guest(&virt_guest_qemu_tcg, &vm, "virtio", "vda");
	check_guest(&virt_guest_qemu_kvm, &vm, "virtio", "vda");

	xml = xml_for(&virt_guest_qemu_kvm, &vm);
	is_xpath(xml, "string(/domain/cpu/@mode)", "host-passthrough", "kvm: the host's CPU");
	is_xpath(xml, "string(/domain/devices/interface[1]/@type)", "user", "NIC mode user");
	is_xpath(xml, "string(/domain/devices/interface[1]/mac/@address)", "52:54:00:12:34:56",
		 "NIC MAC");
	is_xpath(xml, "string(/domain/devices/interface[2]/source/@network)", "default",
		 "NIC mode network");
	is_xpath(xml, "string(/domain/devices/interface[3]/source/@bridge)", "br0",
		 "NIC mode bridge");
	is_xpath(xml, "string(/domain/devices/interface[4]/@type)", "ethernet", "NIC mode tap");
	is_xpath(xml, "string(/domain/devices/interface[4]/target/@dev)", "vi-tap0", "TAP name");
	is_xpath(xml, "string(/domain/devices/interface[1]/model/@type)", "virtio", "virtio NIC");
	is_xpath(xml, "string(/domain/devices/serial/@type)", "pty",
		 "serial on a pty, so a terminal can attach");
	is_xpath(xml, "string(/domain/devices/console/target/@type)", "serial",
		 "console is the serial port");
	free(xml);
	xml = xml_for(&virt_guest_qemu_tcg, &vm);
	is_xpath(xml, "count(/domain/cpu/@mode)", "0", "tcg: the default CPU model");
	free(xml);
	/* No room to grow: the memory is all there at boot, nothing to plug. */
	vm.max_memory = vm.memory;
	xml = xml_for(&virt_guest_qemu_tcg, &vm);
	is_xpath(xml, "count(/domain/maxMemory)", "0", "no room to grow: no DIMM slots");
	is_xpath(xml, "count(/domain/cpu)", "0", "no room to grow: no NUMA cell");
	is_xpath(xml, "string(/domain/os/cmdline)", weird_cmdline,
		 "no room to grow: the cmdline as given");
	free(xml);
	vm.max_memory = 1024 * MiB;

	/* Firmware boot from the first disk. */
	vm.kernel = vm.initrd = vm.cmdline = NULL;
	xml = xml_for(&virt_guest_qemu_tcg, &vm);
	ok(xml != NULL, "firmware boot: XML written");
	if (xml) {
		is_int(validate(xml, "domain"), 0, "firmware boot: virt-xml-validate accepts it");
		is_xpath(xml, "string(/domain/os/boot/@dev)", "hd", "firmware boot: from disk");
		is_xpath(xml, "count(/domain/os/kernel)", "0", "firmware boot: no kernel");
	}
	free(xml);
}

static void test_xen(void)
{
	struct vi_hv_vm vm = base_vm();
	char *xml = NULL;

	vm.nics = nic_ptrs + 1;
	vm.nnics = 3;
	is_int(virt_guest_xen(NULL) == &virt_guest_xen_pv, 1, "xen: pv by default");
	is_int(virt_guest_xen("pvh") == &virt_guest_xen_pvh, 1, "xen: pvh");
	is_int(virt_guest_xen("hvm") == &virt_guest_xen_hvm, 1, "xen: hvm");
	ok(virt_guest_xen("bogus") == NULL && vi_error_code() == VI_EUSAGE &&
		   message_has(vi_error_message(), "unknown Xen guest type 'bogus'"),
	   "xen: unknown guest type is a usage error");

	check_guest(&virt_guest_xen_pv, &vm, "xen", "xvda");
	check_guest(&virt_guest_xen_pvh, &vm, "xen", "xvda");
	check_guest(&virt_guest_xen_hvm, &vm, "xen", "xvda");

	xml = xml_for(&virt_guest_xen_pv, &vm);
	is_xpath(xml, "string(/domain/os/type/@machine)", "xenpv", "pv: machine xenpv");
	is_xpath(xml, "string(/domain/devices/console/target/@type)", "xen", "pv: Xen console");
	is_xpath(xml, "count(/domain/devices/serial)", "0", "pv: no emulated serial port");
	free(xml);
	xml = xml_for(&virt_guest_xen_pvh, &vm);
	is_xpath(xml, "string(/domain/os/type/@machine)", "xenpvh", "pvh: machine xenpvh");
	free(xml);
	xml = xml_for(&virt_guest_xen_hvm, &vm);
	is_xpath(xml, "string(/domain/os/type/@machine)", "xenfv", "hvm: machine xenfv");
	is_xpath(xml, "count(/domain/features/pae)", "1", "hvm: pae");
	free(xml);

	vm.kernel = vm.initrd = vm.cmdline = NULL;
	xml = xml_for(&virt_guest_xen_pv, &vm);
	is_xpath(xml, "string(/domain/bootloader)", "pygrub", "pv firmware boot: pygrub");
	is_int(xml ? validate(xml, "domain") : -1, 0, "pv firmware boot: virt-xml-validate accepts it");
	free(xml);
	xml = xml_for(&virt_guest_xen_hvm, &vm);
	is_int(xml ? validate(xml, "domain") : -1, 0, "hvm firmware boot: virt-xml-validate accepts it");
	free(xml);
	xml = NULL;
	is_int(virt_domain_xml(&virt_guest_xen_pvh, &vm, &xml), -VI_EUNSUPPORTED,
	       "pvh without a kernel is unsupported");
	ok(message_has(vi_error_message(), "xen-pvh guests need a kernel: 'xml-test' has none"),
	   "... and says so");

	vm = base_vm();
	is_int(virt_domain_xml(&virt_guest_xen_pv, &vm, &xml), -VI_EUNSUPPORTED,
	       "xen has no user-mode networking");
	ok(message_has(vi_error_message(), "xen-pv guests have no user-mode networking: "
					   "give 'xml-test' a nat or bridge NIC"),
	   "... and says so");

	struct vi_hv_nic nat = { sizeof(nat), NULL, "nat", NULL };
	const struct vi_hv_nic *nat_ptr = &nat;
	vm.nics = &nat_ptr;
	vm.nnics = 1;
	xml = xml_for(&virt_guest_xen_pv, &vm);
	is_xpath(xml, "string(/domain/devices/interface/source/@network)", "default",
		 "xen: a nat NIC joins libvirt's default network");
	free(xml);
}

/* User NICs (forwards go through QEMU's monitor, not the XML) and nat NICs
 * on libvirt's networks. */
static void test_networking(void)
{
	static const struct vi_hv_forward web = { sizeof(web), VI_HV_TCP, "127.0.0.1", 8080, 80 };
	static const struct vi_hv_forward dns = { sizeof(dns), VI_HV_UDP, NULL, 5353, 53 };
	static const struct vi_hv_forward *const fwds[] = { &web, &dns };
	struct vi_hv_nic user = { sizeof(user), "52:54:00:00:00:01", "user", NULL, fwds, 2 };
	struct vi_hv_nic nat = { sizeof(nat), NULL, "nat", NULL };
	struct vi_hv_nic lab = { sizeof(lab), NULL, "nat", "vi-lab" };
	struct vi_hv_nic bridge = { sizeof(bridge), NULL, "bridge", "br0" };
	const struct vi_hv_nic *ptrs[] = { &user, &nat, &lab, &bridge };
	struct vi_hv_vm vm = base_vm();
	char *xml = NULL, *cmd;

	vm.nics = ptrs;
	vm.nnics = 4;
	xml = xml_for(&virt_guest_qemu_tcg, &vm);
	is_int(xml ? validate(xml, "domain") : -1, 0, "user and nat NICs: virt-xml-validate "
						       "accepts them");
	is_xpath(xml, "string(/domain/devices/interface[1]/@type)", "user", "user NIC");
	is_xpath(xml, "count(/domain/devices/interface[1]/source)", "0",
		 "... on QEMU's own user network");
	is_xpath(xml, "string(/domain/devices/interface[1]/model/@type)", "virtio",
		 "... a virtio NIC");
	is_xpath(xml, "string(/domain/devices/interface[2]/@type)", "network",
		 "nat NIC: a libvirt network");
	is_xpath(xml, "string(/domain/devices/interface[2]/source/@network)", "default",
		 "... 'default' unless named");
	is_xpath(xml, "string(/domain/devices/interface[3]/source/@network)", "vi-lab",
		 "... or the one named");
	free(xml);
	is_str(virt_nic_network(&nat), "default", "a nat NIC joins 'default'");
	is_str(virt_nic_network(&lab), "vi-lab", "... or its source");
	is_str(virt_nic_network(&user), NULL, "a user NIC joins no libvirt network");
	is_str(virt_nic_network(&bridge), NULL, "nor does a bridged one");

	cmd = virt_hostfwd_command("hostnet0", &web, true);
	is_str(cmd, "hostfwd_add hostnet0 tcp:127.0.0.1:8080-:80", "HMP: add a TCP forward");
	free(cmd);
	cmd = virt_hostfwd_command("hostnet1", &dns, true);
	is_str(cmd, "hostfwd_add hostnet1 udp:127.0.0.1:5353-:53",
	       "HMP: a UDP one, on loopback by default");
	free(cmd);
	cmd = virt_hostfwd_command("hostnet0", &web, false);
	is_str(cmd, "hostfwd_remove hostnet0 tcp:127.0.0.1:8080", "HMP: remove it");
	free(cmd);

	/* Forwards belong to user NICs, and go into a monitor command line. */
	const struct vi_hv_forward *one[] = { &web };
	nat.forwards = one;
	nat.nforwards = 1;
	xml = NULL;
	is_int(virt_domain_xml(&virt_guest_qemu_tcg, &vm, &xml), -VI_EUSAGE,
	       "a forward on a nat NIC is a usage error");
	ok(message_has(vi_error_message(), "NIC 1 of 'xml-test' is a nat NIC: only user NICs "
					   "forward ports"), "... saying why");
	nat.nforwards = 0;
	struct vi_hv_forward bad = web;
	const struct vi_hv_forward *bad_ptr = &bad;
	user.forwards = &bad_ptr;
	user.nforwards = 1;
	bad.host_addr = "127.0.0.1 -:22 x";
	is_int(virt_domain_xml(&virt_guest_qemu_tcg, &vm, &xml), -VI_EUSAGE,
	       "a forward from a non-numeric address is a usage error");
	ok(message_has(vi_error_message(), "'127.0.0.1 -:22 x' is not an IPv4 address to "
					   "forward from to 'xml-test'"), "... naming it");
	bad.host_addr = NULL;
	bad.host_port = 0;
	is_int(virt_domain_xml(&virt_guest_qemu_tcg, &vm, &xml), -VI_EUSAGE,
	       "a forward without a host port is a usage error");
	ok(message_has(vi_error_message(), "a forward of 'xml-test' needs host and guest ports "
					   "(1-65535): 0 to 80"), "... saying so");
	ok(xml == NULL, "no XML after errors");
}

static void test_errors(void)
{
	struct vi_hv_vm vm = base_vm();
	struct vi_hv_nic bad_nic = { sizeof(bad_nic), NULL, "carrier-pigeon", NULL };
	struct vi_hv_nic sourceless = { sizeof(sourceless), NULL, "bridge", NULL };
	char *xml = NULL;

	vm.memory = 0;
	is_int(virt_domain_xml(&virt_guest_qemu_tcg, &vm, &xml), -VI_EUSAGE,
	       "no memory is a usage error");
	vm = base_vm();
	const struct vi_hv_nic *bad_nic_ptr = &bad_nic, *sourceless_ptr = &sourceless;
	vm.nics = &bad_nic_ptr;
	vm.nnics = 1;
	is_int(virt_domain_xml(&virt_guest_qemu_tcg, &vm, &xml), -VI_EUSAGE,
	       "unknown NIC mode is a usage error");
	ok(message_has(vi_error_message(), "unknown NIC mode 'carrier-pigeon' for 'xml-test'"),
	   "... naming it");
	vm.nics = &sourceless_ptr;
	is_int(virt_domain_xml(&virt_guest_qemu_tcg, &vm, &xml), -VI_EUSAGE,
	       "a bridge NIC needs a bridge");
	vm = base_vm();
	vm.kernel = NULL;
	vm.ndisks = 0;
	is_int(virt_domain_xml(&virt_guest_qemu_tcg, &vm, &xml), -VI_EUSAGE,
	       "nothing to boot is a usage error");
	ok(xml == NULL, "no XML after errors");
}

static void test_disk_names(void)
{
	struct vi_hv_disk many[28];
	const struct vi_hv_disk *many_ptrs[ARRAY_SIZE(many)];
	struct vi_hv_vm vm = base_vm();
	char *xml;

	for (size_t i = 0; i < ARRAY_SIZE(many); i++) {
		many[i] = (struct vi_hv_disk){ sizeof(many[i]), "/srv/d.qcow2", VI_DISK_QCOW2 };
		many_ptrs[i] = &many[i];
	}
	vm.disks = many_ptrs;
	vm.ndisks = ARRAY_SIZE(many);
	xml = xml_for(&virt_guest_qemu_tcg, &vm);
	is_xpath(xml, "string(/domain/devices/disk[26]/target/@dev)", "vdz", "26th disk is vdz");
	is_xpath(xml, "string(/domain/devices/disk[27]/target/@dev)", "vdaa", "27th disk is vdaa");
	is_xpath(xml, "string(/domain/devices/disk[28]/target/@dev)", "vdab", "28th disk is vdab");
	free(xml);
}

/* The snapshot that moves a running VM's disks onto overlays: disks named by
 * their files, an overlay each where one is given. */
static void test_switch_xml(void)
{
	struct vi_hv_vm vm = base_vm();
	const char *overlays[] = { "/srv/vi/vms/xml-test/disks/d.1.qcow2", NULL };
	char *xml = NULL;

	is_int(virt_snapshot_xml(&vm, overlays, NULL, &xml), 0, "switch XML is written");
	is_int(validate(xml, "domainsnapshot"), 0, "virt-xml-validate accepts it");
	is_xpath(xml, "string(/domainsnapshot/disks/disk[1]/@name)", weird_disk,
		 "disk 1 is named by its file");
	is_xpath(xml, "string(/domainsnapshot/disks/disk[1]/@snapshot)", "external",
		 "disk 1 moves");
	is_xpath(xml, "string(/domainsnapshot/disks/disk[1]/source/@file)", overlays[0],
		 "onto its overlay");
	is_xpath(xml, "string(/domainsnapshot/disks/disk[1]/driver/@type)", "qcow2",
		 "which is qcow2");
	is_xpath(xml, "string(/domainsnapshot/disks/disk[2]/@snapshot)", "no",
		 "disk 2 stays");
	is_xpath(xml, "count(/domainsnapshot/memory)", "0", "no memory is saved");
	free(xml);
}

/* The snapshot that saves a VM's memory alone: every disk is named, and stays. */
static void test_memory_xml(void)
{
	struct vi_hv_vm vm = base_vm();
	const char *memory = "/srv/vi/vms/xml-test/snapshots/1/state";
	char *xml = NULL;

	is_int(virt_snapshot_xml(&vm, NULL, memory, &xml), 0, "memory snapshot XML is written");
	is_int(validate(xml, "domainsnapshot"), 0, "virt-xml-validate accepts it");
	is_xpath(xml, "string(/domainsnapshot/memory/@snapshot)", "external",
		 "the memory goes to a file");
	is_xpath(xml, "string(/domainsnapshot/memory/@file)", memory, "... the one given");
	is_xpath(xml, "count(/domainsnapshot/disks/disk)", "2", "both disks are named");
	is_xpath(xml, "string(/domainsnapshot/disks/disk[1]/@name)", weird_disk,
		 "disk 1 by its file");
	is_xpath(xml, "count(/domainsnapshot/disks/disk[@snapshot='no'])", "2",
		 "and neither moves");
	free(xml);
}

int main(void)
{
	if (system("command -v virt-xml-validate >/dev/null") != 0) {
		skip("virt-xml-validate is not installed (package libvirt-clients)");
		return done();
	}
	test_qemu();
	test_xen();
	test_networking();
	test_errors();
	test_disk_names();
	test_switch_xml();
	test_memory_xml();
	xmlCleanupParser();
	return done();
}
