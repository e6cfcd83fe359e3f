/* Domain XML from a vi VM, written with libxml2's writer so that every name,
 * path and command line is escaped; and the kinds of guest we write it for. */
#include "virt.h"
#include "error.h"
#include "image/image.h"
#include "util.h"

#include <arpa/inet.h>
#include <libxml/parser.h>
#include <libxml/xmlwriter.h>
#include <libxml/xpath.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const qemu_features[] = { "acpi", "apic", NULL };
static const char *const xen_hvm_features[] = { "acpi", "apic", "pae", NULL };

/* The two QEMU guests differ only in who runs the vCPUs: KVM gives the guest
 * the host's CPU, TCG emulates its default model. */
#define QEMU_GUEST .os_type = "hvm", .machine = "q35", .features = qemu_features, \
	.disk_bus = "virtio", .disk_prefix = "vd", .nic_model = "virtio",        \
	.balloon = "virtio", .serial_console = true, .no_usb = true,              \
	.user_net = true, .disk_boot = true, .dac_chain = true,                     \
	.dimm_hotplug = true, .guest_agent = true, .rng = true

const struct virt_guest virt_guest_qemu_kvm = {
	.name = "qemu-kvm", .domain_type = "kvm", .cpu_mode = "host-passthrough", QEMU_GUEST,
};

const struct virt_guest virt_guest_qemu_tcg = {
	.name = "qemu-tcg", .domain_type = "qemu", QEMU_GUEST,
};

/* Xen's paravirtual devices serve all three; PV boots a disk through pygrub,
 * PVH only a kernel, HVM a disk through its emulated firmware. */
const struct virt_guest virt_guest_xen_pv = {
	.name = "xen-pv", .domain_type = "xen", .os_type = "linux", .machine = "xenpv",
	.disk_bus = "xen", .disk_prefix = "xvd", .balloon = "xen", .bootloader = "pygrub",
};

const struct virt_guest virt_guest_xen_pvh = {
	.name = "xen-pvh", .domain_type = "xen", .os_type = "xenpvh", .machine = "xenpvh",
	.disk_bus = "xen", .disk_prefix = "xvd", .balloon = "xen",
};

const struct virt_guest virt_guest_xen_hvm = {
	.name = "xen-hvm", .domain_type = "xen", .os_type = "hvm", .machine = "xenfv",
	.features = xen_hvm_features, .disk_bus = "xen", .disk_prefix = "xvd",
	.balloon = "xen", .serial_console = true, .disk_boot = true,
};

const struct virt_guest *virt_guest_xen(const char *type)
{
	static const struct {
		const char *type;
		const struct virt_guest *guest;
	} types[] = {
		{ "pv", &virt_guest_xen_pv },
		{ "pvh", &virt_guest_xen_pvh },
		{ "hvm", &virt_guest_xen_hvm },
	};

	if (!type)
		return &virt_guest_xen_pv;
	for (size_t i = 0; i < ARRAY_SIZE(types); i++)
		if (!strcmp(type, types[i].type))
			return types[i].guest;
	vi_error(VI_EUSAGE, "unknown Xen guest type '%s' (pv, pvh or hvm)", type);
	return NULL;
}

/* NIC modes: the libvirt interface type, and where the source name goes.
 * "user" is QEMU's own user-mode network (slirp): libvirt 9.0 knows no passt
 * backend, so its forwards go through the monitor (lib/virt/net.c). */
static const struct nic_mode {
	const char *mode, *type;
	const char *source_attr;    /* <source ATTR=source>; NULL: none */
	const char *default_source; /* when the NIC names none; NULL: it must */
	bool target_dev;            /* source names a TAP device: <target dev=source> */
} nic_modes[] = {
	{ "user", "user", NULL, NULL, false },
	{ "nat", "network", "network", VIRT_NAT_NETWORK, false },
	{ "network", "network", "network", NULL, false },
	{ "bridge", "bridge", "bridge", NULL, false },
	{ "tap", "ethernet", NULL, NULL, true },
};

static const struct nic_mode *nic_mode_find(const char *mode)
{
	for (size_t i = 0; mode && i < ARRAY_SIZE(nic_modes); i++)
		if (!strcmp(mode, nic_modes[i].mode))
			return &nic_modes[i];
	return NULL;
}

const char *virt_nic_network(const struct vi_hv_nic *n)
{
	const struct nic_mode *m = nic_mode_find(n->mode);

	if (!m || !m->source_attr || strcmp(m->type, "network"))
		return NULL;
	return n->source ? n->source : m->default_source;
}

int virt_xpath_string(const char *xml, const char *what, const char *expr, char **value)
{
	xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), what, NULL,
				      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	xmlXPathContextPtr xp = doc ? xmlXPathNewContext(doc) : NULL;
	xmlXPathObjectPtr found = xp ? xmlXPathEvalExpression(BAD_CAST expr, xp) : NULL;
	int rc = 0;

	if (found && found->type == XPATH_STRING)
		*value = xstrdup((const char *)found->stringval);
	else
		rc = vi_error(VI_EFAIL, "cannot read %s", what);
	xmlXPathFreeObject(found);
	xmlXPathFreeContext(xp);
	xmlFreeDoc(doc);
	return rc;
}

/* The writer records its first failure (memory, in practice) and goes on. */
struct writer {
	xmlTextWriterPtr w;
	bool failed;
};

/* A writer into a new buffer; false when there is no memory for one. */
static bool writer_begin(struct writer *x, xmlBufferPtr *buf)
{
	*buf = xmlBufferCreate();
	x->w = *buf ? xmlNewTextWriterMemory(*buf, 0) : NULL;
	return x->w != NULL;
}

/* Frees the writer and its buffer, copying the text to *xml (the caller's)
 * when all went well; false otherwise. */
static bool writer_end(struct writer *x, xmlBufferPtr buf, char **xml)
{
	bool ok = x->w && xmlTextWriterFlush(x->w) >= 0 && !x->failed;

	if (ok)
		*xml = xstrdup((const char *)xmlBufferContent(buf));
	if (x->w)
		xmlFreeTextWriter(x->w);
	if (buf)
		xmlBufferFree(buf);
	return ok;
}

static void open_el(struct writer *x, const char *name)
{
	if (xmlTextWriterStartElement(x->w, BAD_CAST name) < 0)
		x->failed = true;
}

static void close_el(struct writer *x)
{
	if (xmlTextWriterEndElement(x->w) < 0)
		x->failed = true;
}

static void attr(struct writer *x, const char *name, const char *value)
{
	if (xmlTextWriterWriteAttribute(x->w, BAD_CAST name, BAD_CAST value) < 0)
		x->failed = true;
}

/* <name>text</name> */
static void text_el(struct writer *x, const char *name, const char *text)
{
	if (xmlTextWriterWriteElement(x->w, BAD_CAST name, BAD_CAST text) < 0)
		x->failed = true;
}

/* <name a="v"/>, or <name/> when a is NULL */
static void empty_el(struct writer *x, const char *name, const char *a, const char *v)
{
	open_el(x, name);
	if (a)
		attr(x, a, v);
	close_el(x);
}

static void kib_el(struct writer *x, const char *name, uint64_t bytes)
{
	char num[32];

	snprintf(num, sizeof(num), "%llu", (unsigned long long)((bytes + 1023) / 1024));
	open_el(x, name);
	attr(x, "unit", "KiB");
	if (xmlTextWriterWriteString(x->w, BAD_CAST num) < 0)
		x->failed = true;
	close_el(x);
}

/* Linux-style disk names: vda..vdz, vdaa... */
void virt_disk_target(char *buf, size_t len, const char *prefix, size_t index)
{
	char letters[16];
	size_t n = 0;

	for (size_t i = index + 1; i > 0 && n < sizeof(letters); i = (i - 1) / 26)
		letters[n++] = (char)('a' + (i - 1) % 26);
	int at = snprintf(buf, len, "%s", prefix);
	while (n > 0 && at + 1 < (int)len)
		buf[at++] = letters[--n];
	buf[at] = '\0';
}

/* Does vm get memory past its boot amount as DIMMs? */
static bool dimm_memory(const struct virt_guest *g, const struct vi_hv_vm *vm)
{
	return g->dimm_hotplug && vm->max_memory > vm->memory;
}

/* Linux leaves hot-added memory offline unless told (or a udev rule does it):
 * a kernel booted directly is told, unless its command line says otherwise. */
#define MEMHP_ONLINE "memhp_default_state=online"

static void write_os(struct writer *x, const struct virt_guest *g, const struct vi_hv_vm *vm)
{
	if (!vm->kernel && g->bootloader)
		text_el(x, "bootloader", g->bootloader);
	open_el(x, "os");
	open_el(x, "type");
	attr(x, "arch", "x86_64");
	attr(x, "machine", g->machine);
	if (xmlTextWriterWriteString(x->w, BAD_CAST g->os_type) < 0)
		x->failed = true;
	close_el(x);
	if (vm->kernel) {
		text_el(x, "kernel", vm->kernel);
		if (vm->initrd)
			text_el(x, "initrd", vm->initrd);
		if (dimm_memory(g, vm) && (!vm->cmdline || !strstr(vm->cmdline, "memhp_default_state="))) {
			char *line = xasprintf("%s%s" MEMHP_ONLINE, vm->cmdline ? vm->cmdline : "",
					       vm->cmdline ? " " : "");
			text_el(x, "cmdline", line);
			free(line);
		} else if (vm->cmdline) {
			text_el(x, "cmdline", vm->cmdline);
		}
	} else if (g->disk_boot) {
		empty_el(x, "boot", "dev", "hd");
	}
	close_el(x);
}

/* A disk's backing chain, spelled out so that libvirt takes it as given and
 * leaves the images' owners alone (relabel='no'): a golden image or a frozen
 * layer stays root's, readable by QEMU through its group (lib/util.h), and
 * no guest can write it. Without it libvirt gives the whole chain to QEMU's
 * user at start and never takes the backing images back. A chain that
 * cannot be read here (a remote host's files) is left for libvirt to find. */
static void write_backing_chain(struct writer *x, const char *path)
{
	struct image *img;
	size_t depth = 0;

	if (image_open(path, IMAGE_PROBE, IMAGE_OPEN_SHARED, &img) < 0) {
		vi_error_clear();
		return;
	}
	for (struct image *b = image_backing(img); b; b = image_backing(b), depth++) {
		open_el(x, "backingStore");
		attr(x, "type", "file");
		empty_el(x, "format", "type", image_format(b) == IMAGE_QCOW2 ? "qcow2" : "raw");
		open_el(x, "source");
		attr(x, "file", image_path(b));
		open_el(x, "seclabel");
		attr(x, "model", "dac");
		attr(x, "relabel", "no");
		close_el(x);
		close_el(x); /* source */
	}
	empty_el(x, "backingStore", NULL, NULL);
	while (depth--)
		close_el(x);
	image_close(img);
}

static void write_disks(struct writer *x, const struct virt_guest *g, const struct vi_hv_vm *vm)
{
	char target[32];

	for (size_t i = 0; i < vm->ndisks; i++) {
		const struct vi_hv_disk *d = vm->disks[i];

		open_el(x, "disk");
		attr(x, "type", "file");
		attr(x, "device", "disk");
		open_el(x, "driver");
		attr(x, "name", "qemu");
		attr(x, "type", d->format == VI_DISK_QCOW2 ? "qcow2" : "raw");
		close_el(x);
		empty_el(x, "source", "file", d->path);
		if (g->dac_chain)
			write_backing_chain(x, d->path);
		virt_disk_target(target, sizeof(target), g->disk_prefix, i);
		open_el(x, "target");
		attr(x, "dev", target);
		attr(x, "bus", g->disk_bus);
		close_el(x);
		if (d->readonly)
			empty_el(x, "readonly", NULL, NULL);
		close_el(x);
	}
}

static void write_nics(struct writer *x, const struct virt_guest *g, const struct vi_hv_vm *vm)
{
	for (size_t i = 0; i < vm->nnics; i++) {
		const struct vi_hv_nic *n = vm->nics[i];
		const struct nic_mode *m = nic_mode_find(n->mode);

		open_el(x, "interface");
		attr(x, "type", m->type);
		if (n->mac)
			empty_el(x, "mac", "address", n->mac);
		if (m->source_attr)
			empty_el(x, "source", m->source_attr,
				 n->source ? n->source : m->default_source);
		if (m->target_dev && n->source) {
			open_el(x, "target");
			attr(x, "dev", n->source);
			attr(x, "managed", "no");
			close_el(x);
		}
		if (g->nic_model)
			empty_el(x, "model", "type", g->nic_model);
		close_el(x);
	}
}

/* The guest's first console, with its output kept in vm->console_log. A pty
 * (not a file) so that a terminal can still attach to it. */
static void write_console(struct writer *x, const struct virt_guest *g,
			  const struct vi_hv_vm *vm)
{
	open_el(x, g->serial_console ? "serial" : "console");
	attr(x, "type", "pty");
	if (vm->console_log) {
		open_el(x, "log");
		attr(x, "file", vm->console_log);
		attr(x, "append", "off");
		close_el(x);
	}
	open_el(x, "target");
	if (!g->serial_console)
		attr(x, "type", "xen");
	attr(x, "port", "0");
	close_el(x);
	close_el(x);
	if (g->serial_console) {
		open_el(x, "console");
		attr(x, "type", "pty");
		open_el(x, "target");
		attr(x, "type", "serial");
		attr(x, "port", "0");
		close_el(x);
		close_el(x);
	}
}

/* The guest agent's port (on a virtio-serial controller libvirt adds for
 * it), which libvirt connects to a socket of its own. */
static void write_agent_channel(struct writer *x)
{
	open_el(x, "channel");
	attr(x, "type", "unix");
	open_el(x, "target");
	attr(x, "type", "virtio");
	attr(x, "name", VIRT_AGENT_CHANNEL);
	close_el(x);
	close_el(x);
}

/* What the writer cannot be trusted to catch: a VM that makes no domain. */
static int check_vm(const struct virt_guest *g, const struct vi_hv_vm *vm)
{
	if (!vm->name || !*vm->name)
		return vi_error(VI_EUSAGE, "a domain needs a name");
	if (!vm->cpus || !vm->memory)
		return vi_error(VI_EUSAGE, "'%s' needs at least one vCPU and some memory",
				vm->name);
	if (!vm->kernel && !g->disk_boot && !g->bootloader)
		return vi_error(VI_EUNSUPPORTED, "%s guests need a kernel: '%s' has none",
				g->name, vm->name);
	if (!vm->kernel && !vm->ndisks)
		return vi_error(VI_EUSAGE, "'%s' has neither a kernel nor a disk to boot",
				vm->name);
	for (size_t i = 0; i < vm->ndisks; i++) {
		const struct vi_hv_disk *d = vm->disks[i];
		if (!d->path || (d->format != VI_DISK_RAW && d->format != VI_DISK_QCOW2))
			return vi_error(VI_EUSAGE, "disk %zu of '%s' has no path or format",
					i, vm->name);
	}
	for (size_t i = 0; i < vm->nnics; i++) {
		const struct vi_hv_nic *n = vm->nics[i];
		const struct nic_mode *m = nic_mode_find(n->mode);

		if (!m)
			return vi_error(VI_EUSAGE, "unknown NIC mode '%s' for '%s'",
					n->mode ? n->mode : "", vm->name);
		if (!strcmp(m->mode, "user") && !g->user_net)
			return vi_error(VI_EUNSUPPORTED,
					"%s guests have no user-mode networking: give '%s' a "
					"nat or bridge NIC", g->name, vm->name);
		if (m->source_attr && !n->source && !m->default_source)
			return vi_error(VI_EUSAGE, "NIC mode '%s' of '%s' needs a source",
					m->mode, vm->name);
		if (n->nforwards && strcmp(m->mode, "user"))
			return vi_error(VI_EUSAGE, "NIC %zu of '%s' is a %s NIC: only user "
					"NICs forward ports", i, vm->name, m->mode);
		for (size_t j = 0; j < n->nforwards; j++) {
			int rc = virt_check_forward(vm, n->forwards[j]);
			if (rc)
				return rc;
		}
	}
	return 0;
}

/* The address and ports go into a monitor command line: only numbers. */
int virt_check_forward(const struct vi_hv_vm *vm, const struct vi_hv_forward *f)
{
	struct in_addr a;

	if (f->host_addr && inet_pton(AF_INET, f->host_addr, &a) != 1)
		return vi_error(VI_EUSAGE, "'%s' is not an IPv4 address to forward from to '%s'",
				f->host_addr, vm->name);
	if (!f->host_port || f->host_port > 65535 || !f->guest_port || f->guest_port > 65535)
		return vi_error(VI_EUSAGE, "a forward of '%s' needs host and guest ports "
				"(1-65535): %u to %u", vm->name, f->host_port, f->guest_port);
	if (f->proto != VI_HV_TCP && f->proto != VI_HV_UDP)
		return vi_error(VI_EUSAGE, "a forward of '%s' must be tcp or udp", vm->name);
	return 0;
}

int virt_domain_xml(const struct virt_guest *g, const struct vi_hv_vm *vm, char **xml)
{
	struct writer x = { 0 };
	xmlBufferPtr buf = NULL;
	char num[32];
	int rc;

	rc = check_vm(g, vm);
	if (rc)
		return rc;
	if (!writer_begin(&x, &buf))
		goto done;
	xmlTextWriterSetIndent(x.w, 1);
	xmlTextWriterSetIndentString(x.w, BAD_CAST "  ");

	open_el(&x, "domain");
	attr(&x, "type", g->domain_type);
	text_el(&x, "name", vm->name);
	if (vm->uuid)
		text_el(&x, "uuid", vm->uuid);
	/* Memory and vCPUs can grow while the guest runs: vCPUs up to their
	 * maximum, defined with the current number below it; memory by DIMMs up
	 * to <maxMemory>, or by the balloon up to a maximum it was defined
	 * with. */
	if (dimm_memory(g, vm)) {
		open_el(&x, "maxMemory");
		snprintf(num, sizeof(num), "%u", VIRT_DIMM_SLOTS);
		attr(&x, "slots", num);
		attr(&x, "unit", "KiB");
		snprintf(num, sizeof(num), "%llu", (unsigned long long)((vm->max_memory + 1023) / 1024));
		if (xmlTextWriterWriteString(x.w, BAD_CAST num) < 0)
			x.failed = true;
		close_el(&x);
		kib_el(&x, "memory", vm->memory);
	} else {
		kib_el(&x, "memory", vm->max_memory > vm->memory ? vm->max_memory : vm->memory);
	}
	kib_el(&x, "currentMemory", vm->memory);
	open_el(&x, "vcpu");
	attr(&x, "placement", "static");
	snprintf(num, sizeof(num), "%u", vm->cpus);
	attr(&x, "current", num);
	snprintf(num, sizeof(num), "%u", vm->max_cpus > vm->cpus ? vm->max_cpus : vm->cpus);
	if (xmlTextWriterWriteString(x.w, BAD_CAST num) < 0)
		x.failed = true;
	close_el(&x);

	write_os(&x, g, vm);
	if (g->features) {
		open_el(&x, "features");
		for (const char *const *f = g->features; *f; f++)
			empty_el(&x, *f, NULL, NULL);
		close_el(&x);
	}
	if (g->cpu_mode || dimm_memory(g, vm)) {
		open_el(&x, "cpu");
		if (g->cpu_mode)
			attr(&x, "mode", g->cpu_mode);
		/* DIMMs go to a NUMA node: one that holds every vCPU. */
		if (dimm_memory(g, vm)) {
			unsigned max_cpus = vm->max_cpus > vm->cpus ? vm->max_cpus : vm->cpus;
			open_el(&x, "numa");
			open_el(&x, "cell");
			attr(&x, "id", "0");
			snprintf(num, sizeof(num), max_cpus > 1 ? "0-%u" : "0", max_cpus - 1);
			attr(&x, "cpus", num);
			snprintf(num, sizeof(num), "%llu",
				 (unsigned long long)((vm->memory + 1023) / 1024));
			attr(&x, "memory", num);
			attr(&x, "unit", "KiB");
			close_el(&x);
			close_el(&x);
		}
		close_el(&x);
	}
	empty_el(&x, "clock", "offset", "utc");
	text_el(&x, "on_poweroff", "destroy");
	text_el(&x, "on_reboot", "restart");
	text_el(&x, "on_crash", "destroy");

	open_el(&x, "devices");
	write_disks(&x, g, vm);
	write_nics(&x, g, vm);
	write_console(&x, g, vm);
	if (g->no_usb) {
		open_el(&x, "controller");
		attr(&x, "type", "usb");
		attr(&x, "model", "none");
		close_el(&x);
	}
	if (g->guest_agent)
		write_agent_channel(&x);
	/* Entropy from the host: a guest's kernel seeds its random numbers at
	 * once, and whatever waits on getrandom() at boot (an SSH server's
	 * keys) does not wait on interrupt timings. */
	if (g->rng) {
		open_el(&x, "rng");
		attr(&x, "model", "virtio");
		open_el(&x, "backend");
		attr(&x, "model", "random");
		if (xmlTextWriterWriteString(x.w, BAD_CAST "/dev/urandom") < 0)
			x.failed = true;
		close_el(&x);
		close_el(&x);
	}
	/* The guest's own figures of its memory (what vi stats shows), every 5 s. */
	open_el(&x, "memballoon");
	attr(&x, "model", g->balloon);
	if (!strcmp(g->balloon, "virtio"))
		empty_el(&x, "stats", "period", "5");
	close_el(&x);
	close_el(&x); /* devices */
	close_el(&x); /* domain */
done:
	if (!writer_end(&x, buf, xml))
		rc = vi_error(VI_EFAIL, "cannot write the domain XML of '%s'", vm->name);
	return rc;
}

/* An external snapshot of disks onto overlays the host made, or of the memory
 * alone into a file: disks are named by their files, so no target names are
 * needed, and every disk without an overlay is named with snapshot='no' (one
 * left out would get an overlay of libvirt's choosing). */
int virt_snapshot_xml(const struct vi_hv_vm *vm, const char *const *overlays, const char *memory,
		      char **xml)
{
	struct writer x = { 0 };
	xmlBufferPtr buf;

	if (!writer_begin(&x, &buf))
		goto done;
	open_el(&x, "domainsnapshot");
	if (memory) {
		open_el(&x, "memory");
		attr(&x, "snapshot", "external");
		attr(&x, "file", memory);
		close_el(&x);
	}
	open_el(&x, "disks");
	for (size_t i = 0; i < vm->ndisks; i++) {
		const char *overlay = overlays ? overlays[i] : NULL;

		open_el(&x, "disk");
		attr(&x, "name", vm->disks[i]->path);
		attr(&x, "snapshot", overlay ? "external" : "no");
		if (overlay) {
			attr(&x, "type", "file");
			empty_el(&x, "driver", "type", "qcow2");
			empty_el(&x, "source", "file", overlay);
		}
		close_el(&x);
	}
	close_el(&x); /* disks */
	close_el(&x); /* domainsnapshot */
done:
	if (!writer_end(&x, buf, xml))
		return vi_error(VI_EFAIL, "cannot write the snapshot XML of '%s'", vm->name);
	return 0;
}
