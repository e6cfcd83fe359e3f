/* hv-qemu: QEMU guests through libvirt, on this host or any other by URI;
 * domain type kvm where the host has hardware virtualization, else qemu (TCG). */
#include <vi/hv-plugin.h>

#include "error.h"
#include "util.h"
#include "plugin/host.h"
#include "virt/virt.h"

#include <libxml/parser.h>
#include <libxml/xpath.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static int qemu_open(struct vi_hv_ctx *ctx)
{
	return virt_open(ctx, "qemu:///system");
}

/* Is KVM there for x86_64 guests, by the capabilities of a remote host? */
static int remote_kvm(struct vi_hv_ctx *ctx, bool *kvm)
{
	static const char query[] =
		"/capabilities/guest[arch/@name='x86_64']/arch/domain[@type='kvm']";
	xmlXPathContextPtr xp = NULL;
	xmlXPathObjectPtr found = NULL;
	xmlDocPtr doc = NULL;
	virConnectPtr conn;
	char *caps = NULL;
	int rc;

	rc = virt_connect(ctx, &conn);
	if (rc)
		return rc;
	caps = virConnectGetCapabilities(conn);
	if (!caps)
		return virt_error("cannot get the capabilities of '%s'", virt_uri(ctx));
	doc = xmlReadMemory(caps, (int)strlen(caps), "capabilities.xml", NULL,
			    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	xp = doc ? xmlXPathNewContext(doc) : NULL;
	found = xp ? xmlXPathEvalExpression(BAD_CAST query, xp) : NULL;
	if (!found) {
		rc = vi_error(VI_EFAIL, "cannot read the capabilities of '%s'", virt_uri(ctx));
		goto cleanup;
	}
	*kvm = found->nodesetval && found->nodesetval->nodeNr > 0;
cleanup:
	xmlXPathFreeObject(found);
	xmlXPathFreeContext(xp);
	xmlFreeDoc(doc);
	free(caps);
	return rc;
}

/* KVM or TCG for this connection; *why says on what grounds. A local /dev/kvm
 * proves nothing (a software KVM is far slower than TCG at running a whole
 * OS): only the VT-x or SVM module does. */
static int qemu_guest(struct vi_hv_ctx *ctx, const struct virt_guest **g, const char **why)
{
	bool kvm = false;
	int rc;

	if (virt_is_local(ctx)) {
		kvm = !access("/sys/module/kvm_intel", F_OK) ||
		      !access("/sys/module/kvm_amd", F_OK);
		*why = kvm ? "hardware virtualization" : "TCG: no hardware virtualization";
	} else {
		rc = remote_kvm(ctx, &kvm);
		if (rc)
			return rc;
		*why = kvm ? "the host offers KVM" : "TCG: the host offers no KVM";
	}
	*g = kvm ? &virt_guest_qemu_kvm : &virt_guest_qemu_tcg;
	return 0;
}

static int qemu_probe(struct vi_hv_ctx *ctx, const char **reason)
{
	const struct virt_guest *g;
	const char *why;
	int rc = virt_probe(ctx, "QEMU", reason);

	if (rc != VI_HV_PROBE_OK)
		return rc;
	if (qemu_guest(ctx, &g, &why))
		return VI_HV_PROBE_ERROR;
	*reason = virt_set_reason(ctx, xasprintf("%s, domain type %s (%s)", *reason,
						 g->domain_type, why));
	return VI_HV_PROBE_OK;
}

static int qemu_define(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm)
{
	const struct virt_guest *g;
	const char *why;
	int rc = qemu_guest(ctx, &g, &why);

	return rc ? rc : virt_define(ctx, g, vm);
}

/* The definition is written afresh at each start: the disks' backing chains
 * in it (lib/virt/domxml.c) are the ones on disk now, after any clone froze
 * a disk into a layer. */
static int qemu_start(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm)
{
	int rc = qemu_define(ctx, vm);

	return rc ? rc : virt_start(ctx, vm);
}

static const struct vi_hv_ops qemu_ops = {
	.struct_size = sizeof(struct vi_hv_ops),
	.abi_version = VI_HV_ABI_VERSION,
	.name = "qemu",
	.description = "QEMU through libvirt: KVM, or TCG without hardware virtualization",
	.features = VI_HV_F_DIRECT_BOOT | VI_HV_F_FIRMWARE_BOOT | VI_HV_F_REMOTE,
	.open = qemu_open,
	.close = virt_close,
	.probe = qemu_probe,
	.define = qemu_define,
	.undefine = virt_undefine,
	.start = qemu_start,
	.stop = virt_stop,
	.pause = virt_pause,
	.resume = virt_resume,
	.state = virt_state,
	.console = virt_console,
	.stats = virt_stats,
	.set_vcpus = virt_set_vcpus,
	.set_memory = virt_set_memory,
	.switch_disks = virt_switch_disks,
};

VI_HV_EXPORT const struct vi_hv_ops *vi_hv_plugin_init(const struct vi_host *host)
{
	vi_plugin_set_host(host);
	return &qemu_ops;
}
