/* hv-xen: Xen guests through libvirt's libxl driver: PV (the default), PVH or
 * HVM, chosen by the VM's guest type. libxl has no user-mode networking:
 * "user" NICs are refused, "nat" ones join libvirt's network. */
#include <vi/hv-plugin.h>

#include "plugin/host.h"
#include "virt/virt.h"

static int xen_open(struct vi_hv_ctx *ctx)
{
	return virt_open(ctx, "xen:///system");
}

static int xen_probe(struct vi_hv_ctx *ctx, const char **reason)
{
	return virt_probe(ctx, "Xen", reason);
}

static int xen_define(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm)
{
	const struct virt_guest *g = virt_guest_xen(vm->guest_type);

	return g ? virt_define(ctx, g, vm) : -VI_EUSAGE;
}

/* libxl ignores the console's <log>: a logger process keeps it instead. */
static int xen_start(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm)
{
	int rc = virt_start(ctx, vm);

	return rc ? rc : virt_console_log(ctx, vm);
}

/* libxl refuses VIR_DOMAIN_UNDEFINE_NVRAM (even for guests without NVRAM). */
static int xen_undefine(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm)
{
	return virt_undefine_flags(ctx, vm, VIR_DOMAIN_UNDEFINE_MANAGED_SAVE);
}

/* No save or restore: libxl refuses the definition virt_restore() restores
 * with (a checkout puts the disks on new overlays, where libxl would take the
 * image's own disks back), and has no snapshots for virt_save(). Found in
 * libvirt 9.0's libxl driver, not on a Xen host: none is at hand. */
static const struct vi_hv_ops xen_ops = {
	.struct_size = sizeof(struct vi_hv_ops),
	.abi_version = VI_HV_ABI_VERSION,
	.name = "xen",
	.description = "Xen through libvirt's libxl driver: PV, PVH and HVM guests",
	.features = VI_HV_F_DIRECT_BOOT | VI_HV_F_FIRMWARE_BOOT | VI_HV_F_REMOTE |
		    VI_HV_F_MIGRATE_URI,
	.open = xen_open,
	.close = virt_close,
	.probe = xen_probe,
	.define = xen_define,
	.undefine = xen_undefine,
	.start = xen_start,
	.stop = virt_stop,
	.pause = virt_pause,
	.resume = virt_resume,
	.state = virt_state,
	.states = virt_states,
	.console = virt_console,
	.stats = virt_stats,
	.set_vcpus = virt_set_vcpus,
	.set_memory = virt_set_memory,
	.resize_disk = virt_resize_disk,
	.set_cpu_quota = virt_set_cpu_quota,
	.nic_address = virt_nic_address,
	.migrate_send = virt_migrate_send,
	.migrate_check = virt_migrate_check,
	.net_up = virt_net_up,
	.net_down = virt_net_down,
};

VI_HV_EXPORT const struct vi_hv_ops *vi_hv_plugin_init(const struct vi_host *host)
{
	vi_plugin_set_host(host);
	return &xen_ops;
}
