/* libvirt glue shared by hv-qemu and hv-xen: connections, libvirt errors turned
 * into ours, domain XML, and the lifecycle methods both backends do alike.
 *
 * Errors and logs: as everywhere in libvi, vi_error() and vi_warn()/vi_debug();
 * inside a plugin they reach the host through lib/plugin/host.c. Functions
 * returning int return 0 or a negative VI_E* code after recording a message.
 */
#ifndef VI_VIRT_H
#define VI_VIRT_H

#include <stdbool.h>
#include <libvirt/libvirt.h>
#include <libvirt/virterror.h>
#include <vi/hv-plugin.h>

/* What differs between the kinds of guest we ask libvirt for. */
struct virt_guest {
	const char *name;        /* "qemu-kvm", "xen-pv"...: for messages */
	const char *domain_type; /* <domain type=...>: "kvm", "qemu", "xen" */
	const char *os_type;     /* <os><type>: "hvm", "linux", "xenpvh" */
	const char *machine;     /* its machine attribute: "q35", "xenpv"... */
	const char *cpu_mode;    /* <cpu mode=...>, NULL for the default model */
	const char *const *features; /* <features> children, NULL-terminated; may be NULL */
	const char *disk_bus;    /* "virtio", "xen" */
	const char *disk_prefix; /* target names: "vd" gives vda, vdb... */
	const char *nic_model;   /* <model type=...>, NULL for the hypervisor's default */
	const char *balloon;     /* <memballoon model=...> */
	bool serial_console;     /* console on an emulated 16550 (else the Xen PV console) */
	bool no_usb;             /* no USB controller: fewer devices, faster boot */
	bool user_net;           /* supports NIC mode "user" */
	bool dac_chain;          /* write disks' backing chains, kept from libvirt's relabelling */
	/* Firmware boot: from the first disk, or through this bootloader program;
	 * NULL for both means the guest cannot boot without a kernel. */
	bool disk_boot;
	const char *bootloader;
	/* Memory past the boot amount comes as DIMMs into slots the definition
	 * reserves (<maxMemory>, one NUMA cell); else the guest is defined at its
	 * maximum and ballooned down. */
	bool dimm_hotplug;
	/* A virtio-serial channel for qemu-guest-agent. */
	bool guest_agent;
	/* A virtio entropy device fed from the host's /dev/urandom. */
	bool rng;
};

extern const struct virt_guest virt_guest_qemu_kvm, virt_guest_qemu_tcg;
extern const struct virt_guest virt_guest_xen_pv, virt_guest_xen_pvh, virt_guest_xen_hvm;

/* The Xen guest for vm->guest_type ("pv" when NULL, "pvh", "hvm"); NULL after
 * vi_error(VI_EUSAGE) for anything else. */
const struct virt_guest *virt_guest_xen(const char *type);

/* Domain XML for `vm` as guest `g`: *xml is NUL-terminated, owned by the caller
 * (free()). Returns 0 or a negative VI_E* code: VI_EUSAGE for a VM that cannot
 * be described (no name, no memory, an unknown disk format), VI_EUNSUPPORTED
 * for what this kind of guest cannot have (a NIC mode, firmware boot). */
int virt_domain_xml(const struct virt_guest *g, const struct vi_hv_vm *vm, char **xml);

/* DIMM slots a QEMU guest that can grow its memory is defined with: each
 * growth past the memory it booted with takes one. */
#define VIRT_DIMM_SLOTS 16
/* The virtio-serial port qemu-guest-agent listens on in the guest. */
#define VIRT_AGENT_CHANNEL "org.qemu.guest_agent.0"

/* Disk index's target name with prefix ("vd"): vda..vdz, vdaa... */
void virt_disk_target(char *buf, size_t len, const char *prefix, size_t index);

/* The libvirt network a "nat" NIC joins when it names none. */
#define VIRT_NAT_NETWORK "default"

/* The libvirt network NIC n joins ("nat" and "network" NICs), or NULL. */
const char *virt_nic_network(const struct vi_hv_nic *n);

/* Checks a forward before it goes into domain XML or a monitor command:
 * VI_EUSAGE naming vm for a bad address, port or protocol. */
int virt_check_forward(const struct vi_hv_vm *vm, const struct vi_hv_forward *f);

/* The string value of XPath `expr` over xml in *value (the caller frees it);
 * VI_EFAIL "cannot read WHAT" when xml does not parse or expr is not a
 * string. */
int virt_xpath_string(const char *xml, const char *what, const char *expr, char **value);

/* The HMP command that adds (or removes) forward f on QEMU's user network
 * `netdev`; owned by the caller. f must have passed virt_check_forward(). */
char *virt_hostfwd_command(const char *netdev, const struct vi_hv_forward *f, bool add);

/* External snapshot XML moving vm's disk i onto overlays[i] (overlays or
 * overlays[i] NULL: left alone) and, when memory is not NULL, writing the
 * guest's memory and device state to that file; *xml as above. */
int virt_snapshot_xml(const struct vi_hv_vm *vm, const char *const *overlays, const char *memory,
		      char **xml);

/* --- connections --------------------------------------------------------- */

/* ctx->priv after virt_open(): the URI and a connection made on first use, so
 * that probe() can decline (with the reason) where other methods fail. */
int virt_open(struct vi_hv_ctx *ctx, const char *default_uri);
void virt_close(struct vi_hv_ctx *ctx);

/* Drops ctx's connection without closing it, so that the next use opens a
 * new one: for a forked child, which must not talk on its parent's. */
void virt_forget_connection(struct vi_hv_ctx *ctx);

/* ctx->uri, or the plugin's default. */
const char *virt_uri(const struct vi_hv_ctx *ctx);
/* Does the URI name this machine (no host part)? Local paths are only
 * checked, and local sysfs only consulted, when it does. */
bool virt_is_local(const struct vi_hv_ctx *ctx);
/* The connection, opened on first use and owned by ctx. Errors: VI_EUSAGE for
 * a malformed URI, VI_EFAIL with "cannot connect to 'URI': ...". */
int virt_connect(struct vi_hv_ctx *ctx, virConnectPtr *conn);

/* A new connection to ctx's URI on which stream events arrive, for a
 * console; the caller closes it. libvirt's event loop is registered first,
 * and only then: a connection opened after it asks libvirtd for keepalive
 * pings, and one whose process runs no loop to answer them is dropped after
 * 30 s, which ctx's connection must never be while a command waits. */
int virt_connect_streams(struct vi_hv_ctx *ctx, virConnectPtr *conn);

/* Connects and checks that the URI reaches a libvirt `driver` ("QEMU", "Xen").
 * OK: *reason is "URI, libvirt X.Y.Z, DRIVER X.Y.Z". DECLINED: *reason says
 * why in one line. Both strings are owned by ctx until the next probe or close. */
int virt_probe(struct vi_hv_ctx *ctx, const char *driver, const char **reason);
/* Replaces ctx's probe reason with `reason` (taking ownership); returns it. */
const char *virt_set_reason(struct vi_hv_ctx *ctx, char *reason);

/* Records "<fmt>: <libvirt's last error>" with the VI_E* code that error maps
 * to: no domain VI_ENOTFOUND; invalid operation (not running, already
 * running) or existing domain VI_ESTATE; invalid argument VI_EUSAGE;
 * unsupported function or configuration VI_EUNSUPPORTED; timeout VI_ETIMEOUT;
 * everything else VI_EFAIL. Returns the negative code. */
int virt_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* The domain of vm, by UUID (by name when it has none); the caller frees it.
 * VI_ENOTFOUND with "no domain 'NAME' on 'URI'" when there is none. */
int virt_lookup(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, virDomainPtr *dom);

/* --- the methods both backends share (signatures as in struct vi_hv_ops) --- */

/* Defines (or redefines: same name and UUID) the domain. VI_ESTATE when
 * another domain has the name or the UUID; VI_ENOTFOUND when a local kernel,
 * initrd or disk is missing. */
int virt_define(struct vi_hv_ctx *ctx, const struct virt_guest *g, const struct vi_hv_vm *vm);
/* Removes the definition of a stopped domain (VI_ESTATE while it runs), with
 * its managed save image and NVRAM file. */
int virt_undefine(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm);
/* The same with libvirt's VIR_DOMAIN_UNDEFINE_* `flags`: drivers reject flags
 * they do not know (libxl takes MANAGED_SAVE only). */
int virt_undefine_flags(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, unsigned flags);
int virt_start(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm);
/* Graceful: the hypervisor's shutdown request (ACPI power button for QEMU),
 * then destroy once timeout_ms have passed (logged as a warning). */
int virt_stop(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, unsigned flags,
	      unsigned timeout_ms);
int virt_pause(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm);
int virt_resume(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm);
/* An unknown domain is not an error: out->state is VI_HV_UNDEFINED. */
int virt_state(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, struct vi_hv_state *out);
/* Every VM's state from one request for all the domains (statistics, or the
 * domain list where the driver has none). */
int virt_states(struct vi_hv_ctx *ctx, const struct vi_hv_vm *const *vms, size_t n,
		struct vi_hv_state *out);
/* Pumps in_fd to the guest's first console and its output to out_fd until the
 * escape byte (negative: none) or end of file on in_fd, or the guest stops.
 * The caller puts a terminal into raw mode. */
int virt_console(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, int in_fd, int out_fd,
		 int escape);
/* Copies the guest's first console to vm->console_log until the guest stops,
 * from a detached process with its own connection: for drivers that ignore
 * the console's <log> (libxl). Returns once the logger holds the console, or
 * with libvirt's reason when it cannot. Nothing for remote URIs or without a
 * log. */
int virt_console_log(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm);

/* net_up() and net_down(): an isolated libvirt network with DHCP over cidr. */
int virt_net_up(struct vi_hv_ctx *ctx, const char *name, const char *cidr);
int virt_net_down(struct vi_hv_ctx *ctx, const char *name);

/* --- migration (migrate.c) ------------------------------------------------ */

/* migrate_send() of VI_HV_F_MIGRATE_URI: peer to peer to m->dest_uri, live,
 * persistent there, the writable disks that are not shared copied onto the
 * overlays the other host made, paths under host->home given under
 * m->dest_home. The domain here is left defined and shut off. */
int virt_migrate_send(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm,
		      const struct vi_hv_migrate *m);
/* migrate_check(): libvirt there answers; the guest's CPU compared there. */
int virt_migrate_check(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, const char *dest_uri,
		       vi_hv_check_fn line, void *opaque);
int virt_stats(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, struct vi_hv_stats *out);
/* Live (when running) and in the persistent definition; within the maxima the
 * domain was defined with. */
int virt_set_vcpus(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, unsigned n);
int virt_set_memory(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, uint64_t bytes);
/* The ABI's grow_fs, through qemu-guest-agent (QEMU guests only): VI_ESTATE
 * when the agent does not answer. */
int virt_grow_fs(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, size_t disk, unsigned flags,
		 struct vi_hv_fs_info *out);
/* After vCPUs were hot-added to dom: waits until its guest sees n of them and
 * has the agent bring them online; a guest without an agent is left to do it
 * itself (a warning). */
int virt_guest_vcpus_online(virDomainPtr dom, const struct vi_hv_vm *vm, unsigned n);
/* Disk number `disk` grows to `bytes` (whole sectors): live through libvirt when the
 * domain runs, else its image file through lib/image. Shrinking is VI_EUSAGE. */
int virt_resize_disk(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, size_t disk,
		     uint64_t bytes);
/* The domain may use `percent` of one host CPU (0: no limit), through libvirt's
 * scheduler parameters, live when running and in the persistent definition. */
int virt_set_cpu_quota(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, unsigned percent);
/* Makes sure the libvirt networks vm's NICs join exist and, with start, are
 * active: an inactive one is started and marked autostart; a missing
 * VIRT_NAT_NETWORK is defined as libvirt's usual default (192.168.122.0/24
 * on virbr0). VI_ENOTFOUND for another missing network; libvirt's reason
 * when one cannot start. */
int virt_networks_ready(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, bool start);
/* Sets up the forwards of vm's user NICs on dom, just started paused: the
 * first that cannot be bound fails with VI_ESTATE "host port N is in use". */
int virt_forwards_start(virDomainPtr dom, const struct vi_hv_vm *vm);
/* The ABI's forward_add, forward_remove and nic_address: forwards through
 * QEMU's monitor (QEMU guests only), addresses from libvirt's DHCP leases
 * (then the host's ARP table for bridged NICs) or, on a user NIC, the one
 * QEMU's DHCP server hands out. */
int virt_forward_add(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, size_t nic,
		     const struct vi_hv_forward *f);
int virt_forward_remove(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, size_t nic,
			const struct vi_hv_forward *f);
int virt_nic_address(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, size_t nic, char *buf,
		     size_t len);

/* The ABI's switch_disks: a disk-only external snapshot reusing the overlays,
 * kept in the persistent definition too, with no snapshot left in libvirt. */
int virt_switch_disks(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm,
		      const char *const *overlays);

/* The ABI's save and restore, for QEMU's driver (libxl has no snapshots, and
 * restores no other definition than the one in its image). save: an external
 * snapshot of the memory alone into path (the image format of
 * virDomainSaveFlags), with no snapshot left in libvirt; VI_ESTATE when vm is
 * not running or path exists, and no file at path after a failure (on this
 * host: a remote URI's path is the remote host's). restore: the stopped VM
 * from that file, defined afresh as guest g with vm's disks (running with the
 * image's machine type and current memory), and staying the same persistent
 * domain; libvirt refuses a definition that is not the saved machine's
 * (another maximum memory, a NIC without its MAC address). */
int virt_save(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, const char *path, unsigned flags);
int virt_restore(struct vi_hv_ctx *ctx, const struct virt_guest *g, const struct vi_hv_vm *vm,
		 const char *path, unsigned flags);

#endif
