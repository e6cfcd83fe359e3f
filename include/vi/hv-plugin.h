/* The hypervisor plugin ABI, version 2: the one header a backend includes from the host.
 *
 * A plugin is a shared object named hv-NAME.so that exports exactly one symbol,
 * vi_hv_plugin_init(). The host calls it once and gets back a table of
 * operations. The table starts with its own size and ABI version; fields are
 * only ever appended, so the host copies min(sizes) into a zeroed table and an
 * older plugin keeps working (its missing methods read as NULL). A plugin whose
 * abi_version is newer than the host's is rejected.
 *
 * A NULL method means "this backend does not support that". The host reports it
 * with one typed error (exit code 4); plugins never carry stubs. Two exceptions,
 * said where they are declared: define and undefine may be NULL for a backend
 * that keeps no definition of its own (the VM is vi's alone).
 *
 * The snapshot DAG, the disk layers and the store are vi's, for every backend;
 * a backend gives mechanisms only: moving disks onto overlays (switch_disks),
 * saving and restoring RAM and device state, sending and receiving a running
 * VM, and live capacity.
 *
 * Version 2 (no plugin outside vi's tree used version 1): snapshot methods gone,
 * save() takes flags, run() takes a sized options struct, disks and NICs come as
 * arrays of pointers, probe() may answer VI_HV_PROBE_EXPLICIT. The host refuses
 * a plugin of another major version with one line naming the file and the version.
 *
 * Ownership: every pointer the host passes in stays valid for the duration of
 * the call only, unless said otherwise. Strings a plugin returns through
 * `reason` pointers are owned by the plugin and must stay valid until the next
 * call on the same context.
 *
 * Return values: methods return 0 on success or a negative VI_E* code after
 * recording a message with host->error().
 */
#ifndef VI_HV_PLUGIN_H
#define VI_HV_PLUGIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define VI_HV_ABI_VERSION 2

#define VI_HV_EXPORT __attribute__((visibility("default")))

/* Error codes, negated in return values; each is also the command's exit code. */
enum vi_err {
	VI_EFAIL = 1,        /* failure */
	VI_EUSAGE = 2,       /* bad usage or input */
	VI_ENOTFOUND = 3,    /* no such VM, image, template, plugin... */
	VI_EUNSUPPORTED = 4, /* the backend cannot do that */
	VI_ESTATE = 5,       /* wrong state, or a conflict (busy, exists) */
	VI_ETIMEOUT = 6,     /* a wait ran out */
};

enum vi_log_level {
	VI_LOG_ERROR,
	VI_LOG_WARN,
	VI_LOG_INFO,  /* silenced by -q */
	VI_LOG_DEBUG, /* shown with -v */
};

/* What the host offers a plugin. Appended to, like the ops table. */
struct vi_host {
	size_t struct_size;
	unsigned abi_version;
	const char *version; /* the vi release, e.g. "0.1.0" */
	const char *home;    /* the state store root ($VI_HOME) */
	/* Records an error message for the command's caller; returns -code. */
	int (*error)(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
	void (*log)(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
	/* The path of the running vi binary, for backends that re-exec it. */
	const char *self_exe;
	/* The error recorded last on this thread, its code, and forgetting it. */
	const char *(*error_message)(void);
	int (*error_code)(void);
	void (*error_clear)(void);
};

/* One connection to a backend: made by the host per command, one per URI. */
struct vi_hv_ctx {
	size_t struct_size;
	const struct vi_host *host;
	const char *uri; /* --connect URI, the VM's recorded URI, or NULL for the default */
	void *priv;      /* the plugin's own: set by open(), released by close() */
};

enum vi_hv_probe {
	VI_HV_PROBE_OK,       /* usable here */
	VI_HV_PROBE_DECLINED, /* not usable here; reason says why in one line */
	VI_HV_PROBE_ERROR,    /* the probe itself failed; the error is recorded */
	VI_HV_PROBE_EXPLICIT, /* usable when named (--hv, a VM's hv:), never picked
			       * automatically: e.g. guest code emulated by software KVM */
};

/* Feature bits: what the methods alone do not say. The host reads each one. */
#define VI_HV_F_DIRECT_BOOT   (1u << 0) /* boots kernel + initrd + cmdline */
#define VI_HV_F_FIRMWARE_BOOT (1u << 1) /* boots whole-disk images through firmware */
#define VI_HV_F_REMOTE        (1u << 2) /* reaches other hosts by URI (--connect) */
#define VI_HV_F_USER_NET      (1u << 3) /* "user" NICs: outbound access, port forwards */
#define VI_HV_F_RESTORE_RUNNING (1u << 4) /* restore() takes VI_HV_RUN_REPLACE */
/* migrate_send() hands the guest to the hypervisor that dest_uri names, which
 * receives it itself (libvirt's peer-to-peer migration): no stream, no
 * migrate_recv(); the destination host only makes the writable disks, empty,
 * on the same backing files, before. */
#define VI_HV_F_MIGRATE_URI (1u << 5)

enum vi_disk_format {
	VI_DISK_RAW,
	VI_DISK_QCOW2,
};

struct vi_hv_disk {
	size_t struct_size;
	const char *path;   /* the image the VM writes (an overlay, usually) */
	int format;         /* enum vi_disk_format */
	int readonly;
	uint64_t size;      /* virtual size in bytes, 0 when unknown */
};

enum vi_hv_proto {
	VI_HV_TCP,
	VI_HV_UDP,
};

/* A port forward of a "user" NIC: connections to host_addr:host_port on the
 * host reach guest_port of the guest's address on that NIC. */
struct vi_hv_forward {
	size_t struct_size;
	int proto;             /* enum vi_hv_proto */
	const char *host_addr; /* numeric IPv4, "127.0.0.1" unless the user said */
	unsigned host_port;
	unsigned guest_port;
};

/* The guest on a "user" NIC gets this address by DHCP, behind this gateway
 * (which is also its DNS server): the same on every backend. */
#define VI_HV_USER_NET      "10.0.2.0/24"
#define VI_HV_USER_GUEST_IP "10.0.2.15"
#define VI_HV_USER_HOST_IP  "10.0.2.2"
#define VI_HV_USER_DNS_IP   "10.0.2.3"

struct vi_hv_nic {
	size_t struct_size;
	const char *mac;     /* "52:54:00:xx:xx:xx" */
	/* "user": user-mode networking (VI_HV_F_USER_NET); "nat": a private routed
	 * network with DHCP (source: the libvirt network, "default" when NULL);
	 * "tap", "bridge", "network" as named by source. */
	const char *mode;
	const char *source;  /* TAP device, bridge or libvirt network name; may be NULL */
	/* "user" NICs: what start() sets up before the guest runs. A host port
	 * that cannot be bound fails start() with VI_ESTATE and a message naming
	 * the port ("host port 8080 is in use"). */
	const struct vi_hv_forward *const *forwards;
	size_t nforwards;
};

/* A VM as the backend sees it: built by the host from vm.yaml. */
struct vi_hv_vm {
	size_t struct_size;
	const char *name;
	const char *uuid;        /* canonical 36-character form */
	const char *dir;         /* vms/<name> in the store */
	const char *run_dir;     /* vms/<name>/run: pid, control.sock, console.log */
	const char *console_log; /* run_dir/console.log */
	unsigned cpus, max_cpus;
	uint64_t memory, max_memory; /* bytes */
	const char *kernel;      /* NULL for firmware boot */
	const char *initrd;      /* may be NULL */
	const char *cmdline;     /* may be NULL */
	/* Arrays of pointers, so that a field appended to a disk or NIC moves
	 * nothing a plugin built earlier reads. */
	const struct vi_hv_disk *const *disks;
	size_t ndisks;
	const struct vi_hv_nic *const *nics;
	size_t nnics;
	const char *hostname;
	const char *machine_id;  /* 32 hex digits, handed to the guest */
	const char *guest_type;  /* backend-specific flavour: "pv", "pvh", "hvm"; may be NULL */
};

enum vi_hv_run_state {
	VI_HV_UNKNOWN,
	VI_HV_STOPPED,  /* known to the backend but not running */
	VI_HV_RUNNING,
	VI_HV_PAUSED,
	VI_HV_SHUTTING_DOWN,
	VI_HV_CRASHED,
	VI_HV_UNDEFINED, /* the backend does not know this VM */
};

/* Whether a VM in `state` has a process (or a domain) running it: what must
 * be stopped before it is undefined, and cannot be started again. */
static inline bool vi_hv_state_active(int state)
{
	return state == VI_HV_RUNNING || state == VI_HV_PAUSED || state == VI_HV_SHUTTING_DOWN;
}

struct vi_hv_state {
	size_t struct_size;
	int state;          /* enum vi_hv_run_state */
	pid_t pid;          /* process that runs the VM, 0 when none or remote */
	int64_t started_at; /* seconds since the epoch, 0 when unknown */
};

struct vi_hv_stats {
	size_t struct_size;
	unsigned vcpus;            /* online vCPUs */
	uint64_t cpu_time_ns;      /* guest CPU time, all vCPUs */
	uint64_t memory;           /* current guest memory, bytes */
	uint64_t memory_used;      /* as the guest reports it, 0 when unknown */
	uint64_t exits;            /* VM exits so far, 0 when unknown */
	uint64_t disk_rd_bytes, disk_wr_bytes;
	uint64_t net_rx_bytes, net_tx_bytes;
	/* Whether the guest drives what live growth needs, as VI_HV_DRIVER_*: its CPU
	 * hotplug, its memory hotplug (virtio-mem or DIMMs), its balloon. */
	int cpu_hotplug_driver, memory_driver, balloon_driver;
	/* Disk requests read and written so far, all disks; the memory the guest could
	 * still use without swapping (its MemAvailable), bytes, 0 when it does not say. */
	uint64_t disk_rd_ops, disk_wr_ops;
	uint64_t mem_available;
};

enum vi_hv_driver {
	VI_HV_DRIVER_UNKNOWN,   /* the backend cannot tell */
	VI_HV_DRIVER_NO_DEVICE, /* the VM has no such device */
	VI_HV_DRIVER_NONE,      /* the device is there, no driver of the guest's drives it */
	VI_HV_DRIVER_ACTIVE,
};

#define VI_HV_STOP_FORCE (1u << 0)

/* save(): keep the guest running once its state is written (a live snapshot:
 * the state is that of one instant, the guest goes on from it). Without it the
 * VM is stopped once its state is safely written. */
#define VI_HV_SAVE_LIVE   (1u << 0)
#define VI_HV_SAVE_NOSYNC (1u << 1) /* the host syncs the file itself, once the guest goes
				       on: writing it to the page cache is enough */

/* How run() starts the VM: booted afresh, from a state file save() wrote, or
 * from an incoming migration stream. */
struct vi_hv_run_opts {
	size_t struct_size;
	int notify_fd;          /* see run(); -1 for none */
	const char *state_path; /* restore this state instead of booting; NULL: boot */
	int incoming_fd;        /* read the state from this stream instead; -1: none */
	unsigned flags;         /* VI_HV_RUN_* */
};
#define VI_HV_RUN_PAUSED (1u << 0) /* restored or received: stay paused until resume() */
/* restore() of a VM that may be running or paused: its guest is given up for the
 * saved one (the process and KVM VM kept where the backend can). */
#define VI_HV_RUN_REPLACE (1u << 1)
/* The state file is the one save() wrote, unchanged since (the host has checked): its
 * memory need not be read before the guest runs to check it. */
#define VI_HV_RUN_UNCHECKED (1u << 2)

/* What a running migration reports, from migrate_send(), several times a second. */
struct vi_hv_migrate_progress {
	size_t struct_size;
	unsigned iteration;     /* 1: all of memory; 2...: what was dirtied since */
	uint64_t sent;          /* bytes sent so far, memory and disks */
	uint64_t remaining;     /* bytes known to be still to send (dirty memory and disk) */
	uint64_t dirty_rate;    /* bytes/s the guest dirtied over the last iteration */
	uint64_t bandwidth;     /* bytes/s the link carried, as measured */
	const char *phase;      /* "memory", "disks", "downtime" (the guest paused) or
				 * "commit" (waiting for the peer); static storage */
};

/* How a migration went, filled by migrate_send() and migrate_recv() on success and,
 * as far as it got, on failure. */
struct vi_hv_migrate_result {
	size_t struct_size;
	double total_ms;        /* from the call until the guest ran on the destination */
	double downtime_ms;     /* from the guest's pause here to its resumption there */
	uint64_t bytes;         /* bytes sent (or received), disks included */
	uint64_t disk_bytes;    /* of them, disk file data */
	unsigned iterations;    /* memory iterations, the last one in the downtime */
	int unconfirmed;        /* 1: "commit" was sent but "running" never came back:
				 * the guest may run there, so it stays paused here */
};

/* A running guest's file system as grow_fs() found it and left it. */
struct vi_hv_fs_info {
	size_t struct_size;
	char type[16];        /* as the guest names it: "ext4", "xfs"... */
	char device[64];      /* the guest's device: "/dev/vda1" */
	char mountpoint[128]; /* where the guest mounts it: "/" */
	unsigned partition;   /* its partition number on the disk, 0 for the whole disk */
	uint64_t size_before; /* bytes it held before, as the guest counts them */
	uint64_t size_after;  /* and after (the same with VI_HV_GROW_FS_CHECK) */
};
/* grow_fs(): only read what would grow, and whether the guest answers. */
#define VI_HV_GROW_FS_CHECK (1u << 0)

/* converge: what migrate_send() does when the guest dirties memory faster than the
 * link carries it. */
enum vi_hv_converge {
	VI_HV_CONVERGE_AUTO,    /* slows the vCPUs down, more and more, until it converges */
	VI_HV_CONVERGE_PAUSE,   /* pauses the guest and sends the rest: a long downtime */
	VI_HV_CONVERGE_ABORT,   /* gives up (VI_ETIMEOUT); the guest runs on here */
};

/* A migration of a running VM between two hosts of the same backend: migrate_send()
 * on the source, migrate_recv() on the destination, both given an open stream (fd)
 * that the host connected and authenticated. Disk layers that are only read (the
 * backing chain, read-only disks) are the host's to bring to the destination first;
 * writable disks are sent unless in shared_disks. The destination does not resume the
 * guest before the source says commit, and the source gives its VM up only once the
 * destination says it runs: a guest never runs on both. Every other failure leaves
 * the guest running on the source and nothing on the destination. */
struct vi_hv_migrate {
	size_t struct_size;
	const char *dest_uri;   /* the peer: a libvirt URI or host:port for the native VMM */
	int fd;                 /* an open stream to the peer, or -1 */
	int live;
	uint64_t bandwidth;     /* bytes per second, 0 for unlimited */
	unsigned downtime_ms;   /* the longest the guest may be paused; 0: 300 ms */
	unsigned timeout_s;     /* give up after this long (the guest runs on here); 0: never */
	int converge;           /* enum vi_hv_converge */
	uint64_t shared_disks;  /* bit i: disk i is on storage both hosts see at the same
				 * path; it is not sent */
	/* migrate_recv() only, may be NULL: for disk i, the path its backing file has on
	 * this host, written into the received overlay in place of the name it was sent
	 * with; a NULL entry leaves that name. */
	const char *const *backing;
	/* migrate_send() only, may be NULL: called on the calling thread, at least a few
	 * times a second, while the migration runs. */
	void (*progress)(void *opaque, const struct vi_hv_migrate_progress *p);
	void *opaque;
	struct vi_hv_migrate_result *result; /* may be NULL; filled on return */
	/* VI_HV_F_MIGRATE_URI: the destination's store. Every path under this host's
	 * store (host->home) is at the same place under it there. */
	const char *dest_home;
};

/* One line of migrate_check(): ok or not, what ("cpu", "link"...), what it found. */
typedef void (*vi_hv_check_fn)(void *opaque, int ok, const char *what, const char *detail);

struct vi_hv_ops {
	size_t struct_size;
	unsigned abi_version;
	const char *name;        /* "qemu", "vtx"...: the plugin file is hv-<name>.so */
	const char *description; /* one line */
	uint32_t features;       /* VI_HV_F_* */

	/* Connection lifetime; both optional. close() releases ctx->priv. */
	int (*open)(struct vi_hv_ctx *ctx);
	void (*close)(struct vi_hv_ctx *ctx);

	/* Is this backend usable here? *reason gets one line either way (may be NULL on OK). */
	int (*probe)(struct vi_hv_ctx *ctx, const char **reason);

	/* Records the VM with the backend (and checks it can run it); forgets it.
	 * NULL for a backend that keeps no definition: then defining checks
	 * nothing and undefining has nothing to forget. */
	int (*define)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm);
	int (*undefine)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm);
	int (*start)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm);
	/* For backends whose VMM is vi itself: run the VM in this process until it
	 * stops. start() re-executes host->self_exe as
	 *   vi --home HOME __vmm-run --hv NAME VMNAME   (with fd 3 = notify_fd)
	 * and that internal verb calls run(). run() writes one byte '1' to
	 * opts->notify_fd (when >= 0) once the guest is running, or "0<message>" and
	 * returns an error if it cannot start; then it closes notify_fd. Fields of
	 * opts beyond its struct_size read as zero (-1 for the fds). */
	int (*run)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm,
		   const struct vi_hv_run_opts *opts);
	/* Graceful unless VI_HV_STOP_FORCE; a graceful stop that has not finished
	 * after timeout_ms is forced. */
	int (*stop)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, unsigned flags,
		    unsigned timeout_ms);
	int (*pause)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm);
	int (*resume)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm);
	int (*state)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, struct vi_hv_state *out);
	/* Attach the terminal: bytes from in_fd go to the guest, guest output to out_fd,
	 * until the guest stops or the escape byte arrives on in_fd. */
	int (*console)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, int in_fd, int out_fd,
		       int escape);
	int (*stats)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, struct vi_hv_stats *out);

	/* Writes the running or paused VM's RAM and device state to path (a new
	 * file; the host renames it into place), then stops the VM, or with
	 * VI_HV_SAVE_LIVE lets it go on. On failure the VM is as it was. */
	int (*save)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, const char *path,
		    unsigned flags);
	/* Starts the stopped VM from a state save() wrote: it goes on from that
	 * instant (paused with VI_HV_RUN_PAUSED in flags). Its disks must be as they
	 * were at that instant: the host sees to it. With VI_HV_RUN_REPLACE (for a
	 * backend with VI_HV_F_RESTORE_RUNNING) the VM may be running or paused
	 * under its old guest, which is given up, and vm is the definition the
	 * host has just recorded; on failure the VM is left stopped. */
	int (*restore)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, const char *path,
		       unsigned flags);
	int (*migrate_send)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm,
			    const struct vi_hv_migrate *m);
	int (*migrate_recv)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm,
			    const struct vi_hv_migrate *m);
	/* Live capacity: online vCPUs (up to max_cpus), memory (up to max_memory),
	 * and the virtual size of disk number `disk`. */
	int (*set_vcpus)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, unsigned n);
	int (*set_memory)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, uint64_t bytes);
	int (*resize_disk)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, size_t disk,
			   uint64_t bytes);
	/* Live layering: the running (or paused) VM moves each writable disk i
	 * onto overlays[i], a qcow2 image the host made whose backing file is
	 * the image disk i uses now; NULL leaves disk i alone. All disks move at
	 * one instant of guest time and no write is lost; afterwards the old
	 * images are only read, so the host may share them as the layers of
	 * linked clones or keep them as a disk snapshot. On failure every disk
	 * stays on its old image. */
	int (*switch_disks)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm,
			    const char *const *overlays);

	/* Port forwards of the running VM's "user" NIC number `nic`, added or
	 * removed live (VI_ESTATE naming the port when it cannot be bound, or
	 * when no such forward is there to remove). The host keeps vm.yaml. */
	int (*forward_add)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, size_t nic,
			   const struct vi_hv_forward *f);
	int (*forward_remove)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, size_t nic,
			      const struct vi_hv_forward *f);
	/* The IPv4 address the running guest has on NIC `nic`, as text in buf
	 * (len >= 46): from a DHCP lease, a guest agent, or what the backend
	 * itself handed out. VI_ENOTFOUND when it is not known (yet). */
	int (*nic_address)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, size_t nic,
			   char *buf, size_t len);
	/* The states of n VMs at once, out[i] as state() would give it for
	 * vms[i] (VI_HV_UNKNOWN for one it could not read), in as few requests
	 * as the backend can make: `vi list` asks each backend once. An error
	 * means none was read. Optional: without it the host calls state(). */
	int (*states)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *const *vms, size_t n,
		      struct vi_hv_state *out);
	/* How fast the running guest dirties its memory: the bytes of the pages it wrote
	 * over `ms` milliseconds (those the backend wrote for it included), per second,
	 * in *bytes_per_s. What `vi migrate --check` weighs against the link. Optional. */
	int (*dirty_rate)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, unsigned ms,
			  uint64_t *bytes_per_s);
	/* The share of host CPU time the running VM may use, in percent of one CPU (50:
	 * half of one, 200: two), 0 for no limit. Optional. */
	int (*set_cpu_quota)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, unsigned percent);

	/* The running guest's file system on disk `disk` (the one mounted at "/"
	 * when it is there, else the first mounted from it) grown, while mounted,
	 * into the rest of the disk: its partition first, when it is one and
	 * the disk has room after it, then the file system (ext2/3/4, xfs;
	 * another type VI_EUNSUPPORTED naming it). *out says what it is and its
	 * size before and after. With VI_HV_GROW_FS_CHECK nothing changes: *out
	 * says what would grow. VI_ESTATE when the VM is not running or nothing
	 * in the guest answers (its agent), VI_ENOTFOUND when no file system is
	 * mounted from the disk. Optional. */
	int (*grow_fs)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, size_t disk,
		       unsigned flags, struct vi_hv_fs_info *out);
	/* VI_HV_F_MIGRATE_URI: what the backend itself checks before moving the running
	 * VM to dest_uri, one call of line each (the hypervisor there answers, the
	 * guest's CPU runs there). Returns an error only when it cannot check at all.
	 * Optional. */
	int (*migrate_check)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, const char *dest_uri,
			     vi_hv_check_fn line, void *opaque);
	/* A private network VMs of this backend join with a "network" NIC whose source
	 * is name: isolated (no route to the host's LAN or beyond), addresses by DHCP
	 * from cidr ("10.250.3.0/24"), kept across restarts of the host. net_up makes
	 * and starts it (nothing when it is there and running; VI_ESTATE when the name
	 * is taken by another range, or the range by another network); net_down
	 * stops and removes it (nothing when it is not there). Optional. */
	int (*net_up)(struct vi_hv_ctx *ctx, const char *name, const char *cidr);
	int (*net_down)(struct vi_hv_ctx *ctx, const char *name);
};

/* The one exported symbol. Returns NULL (after host->error()) if the plugin
 * cannot initialise at all; "not usable here" is probe()'s job. */
typedef const struct vi_hv_ops *(*vi_hv_plugin_init_fn)(const struct vi_host *host);
VI_HV_EXPORT const struct vi_hv_ops *vi_hv_plugin_init(const struct vi_host *host);

#define VI_HV_PLUGIN_INIT_SYMBOL "vi_hv_plugin_init"

#endif
