/* hv-xen through the plugin ABI on a host without Xen: the probe declines in
 * one line naming the URI, and every method fails with that reason. The XML
 * for its guests is checked in hv-virt-xml. */
#include "tap.h"
#include "hv-virt-host.h"

#include <unistd.h>

#define MiB (1024ull * 1024)

int main(void)
{
	const struct vi_hv_ops *ops = load_plugin("xen");
	struct vi_hv_ctx ctx;
	const char *reason = NULL;
	struct vi_hv_vm vm = {
		.struct_size = sizeof(vm),
		.name = "xen-test",
		.uuid = "6c1c2f4e-8f0e-4d8a-9a51-0d1f6c8b7a01",
		.cpus = 1, .max_cpus = 1,
		.memory = 128 * MiB,
		.kernel = "/boot/vmlinuz",
		.guest_type = "pvh",
	};

	if (!ok(ops != NULL, "hv-xen loads"))
		return done();
	is_str(ops->name, "xen", "its name");
	ok(ops->run == NULL && ops->define && ops->console, "libvirt runs the VM");
	ok(!(ops->features & VI_HV_F_USER_NET) && !ops->forward_add && !ops->forward_remove,
	   "no user-mode networking, so no forwards");
	ok(ops->nic_address != NULL, "guest addresses from libvirt's leases");

	if (!access("/proc/xen/capabilities", F_OK)) {
		skip("this host runs Xen: the declining probe cannot be checked here");
		return done();
	}
	ctx_open(ops, &ctx, NULL);
	is_int(ops->probe(&ctx, &reason), VI_HV_PROBE_DECLINED, "probe declines without Xen");
	ok(reason && !strncmp(reason, "no Xen host: cannot connect to 'xen:///system': ", 48),
	   "... naming the URI: %s", reason ? reason : "(null)");
	ok(reason && !strchr(reason, '\n'), "... in one line");

	is_int(ops->define(&ctx, &vm), -VI_EFAIL, "define fails");
	ok(error_has("cannot connect to 'xen:///system': "), "... naming the URI");
	is_int(ops->start(&ctx, &vm), -VI_EFAIL, "start fails the same way");
	ok(error_has("cannot connect to 'xen:///system': "), "... naming the URI");

	vm.guest_type = "hvm-ish";
	is_int(ops->define(&ctx, &vm), -VI_EUSAGE, "an unknown guest type is a usage error");
	ok(error_has("unknown Xen guest type 'hvm-ish' (pv, pvh or hvm)"), "... naming it");
	vm.guest_type = "pvh";
	vm.kernel = NULL;
	is_int(ops->define(&ctx, &vm), -VI_EUNSUPPORTED, "pvh without a kernel is unsupported");
	ok(error_has("xen-pvh guests need a kernel: 'xen-test' has none"), "... and says so");

	/* Refused before any connection: libxl has no user-mode networking. */
	struct vi_hv_nic user = { sizeof(user), NULL, "user", NULL };
	const struct vi_hv_nic *user_ptr = &user;
	vm.guest_type = NULL;
	vm.kernel = "/boot/vmlinuz";
	vm.nics = &user_ptr;
	vm.nnics = 1;
	is_int(ops->define(&ctx, &vm), -VI_EUNSUPPORTED, "a user NIC is unsupported");
	is_str(host_error_text, "xen-pv guests have no user-mode networking: give 'xen-test' a "
				"nat or bridge NIC", "... in one line");

	ops->close(&ctx);
	ctx_open(ops, &ctx, "qemu:///system");
	int probe = ops->probe(&ctx, &reason);
	if (probe == VI_HV_PROBE_DECLINED && reason && strstr(reason, "cannot connect"))
		skip("libvirtd is not reachable: %s", reason);
	else
		is_str(reason, "no Xen host: 'qemu:///system' is a QEMU host",
		       "a QEMU URI: declined, saying so");
	ops->close(&ctx);
	return done();
}
