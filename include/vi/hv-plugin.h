/* The hypervisor plugin ABI: the one header a backend includes from the host.
 *
 * A plugin is a shared object named hv-NAME.so that exports exactly one symbol,
 * vi_hv_plugin_init(). The host calls it once and gets back a table of
 * operations. The table starts with its own size and ABI version; fields are
 * only ever appended, so the host copies min(sizes) into a zeroed table and an
 * older plugin keeps working (its missing methods read as NULL). A plugin whose
 * abi_version is newer than the host's is rejected.
 *
 * A NULL method means "this backend does not support that". The host reports it
 * with one typed error (exit code 4); plugins never carry stubs.
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

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define VI_HV_ABI_VERSION 1

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
};

/* Feature bits beyond the methods themselves. */
#define VI_HV_F_DIRECT_BOOT   (1u << 0) /* kernel + initrd + cmdline */
#define VI_HV_F_FIRMWARE_BOOT (1u << 1) /* whole-disk images through firmware */
#define VI_HV_F_REMOTE        (1u << 2) /* reaches other hosts by URI */
#define VI_HV_F_LIVE_MIGRATE  (1u << 3)
#define VI_HV_F_CPU_HOTPLUG   (1u << 4)
#define VI_HV_F_MEM_HOTPLUG   (1u << 5)
#define VI_HV_F_MEM_SNAPSHOT  (1u << 6) /* snapshots that include RAM and devices */

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

struct vi_hv_nic {
	size_t struct_size;
	const char *mac;     /* "52:54:00:xx:xx:xx" */
	const char *mode;    /* "user", "tap", "bridge", "network" */
	const char *source;  /* TAP device, bridge or libvirt network name; may be NULL */
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
	const struct vi_hv_disk *disks;
	size_t ndisks;
	const struct vi_hv_nic *nics;
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
};

#define VI_HV_STOP_FORCE (1u << 0)

struct vi_hv_snapshot {
	size_t struct_size;
	const char *id;
	const char *dir;        /* snapshots/<id>: where the backend keeps what it saves */
	int with_memory;        /* save RAM and device state, not only disks */
};

struct vi_hv_migrate {
	size_t struct_size;
	const char *dest_uri;   /* the peer: a libvirt URI or host:port for the native VMM */
	int fd;                 /* an open stream to the peer, or -1 */
	int live;
	uint64_t bandwidth;     /* bytes per second, 0 for unlimited */
};

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

	int (*define)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm);
	int (*undefine)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm);
	int (*start)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm);
	/* For backends whose VMM is vi itself: run the VM in this process until it
	 * stops. start() re-executes host->self_exe as
	 *   vi --home HOME __vmm-run --hv NAME VMNAME   (with fd 3 = notify_fd)
	 * and that internal verb calls run(). run() writes one byte '1' to notify_fd
	 * (when >= 0) once the guest is running, or "0<message>" and returns an error
	 * if it cannot start; then it closes notify_fd. */
	int (*run)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, int notify_fd);
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

	int (*snapshot_create)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm,
			       const struct vi_hv_snapshot *snap);
	int (*snapshot_revert)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm,
			       const struct vi_hv_snapshot *snap);
	int (*snapshot_delete)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm,
			       const struct vi_hv_snapshot *snap);
	/* Save RAM and device state to path and stop; restore from it. */
	int (*save)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, const char *path);
	int (*restore)(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, const char *path);
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
};

/* The one exported symbol. Returns NULL (after host->error()) if the plugin
 * cannot initialise at all; "not usable here" is probe()'s job. */
typedef const struct vi_hv_ops *(*vi_hv_plugin_init_fn)(const struct vi_host *host);
VI_HV_EXPORT const struct vi_hv_ops *vi_hv_plugin_init(const struct vi_host *host);

#define VI_HV_PLUGIN_INIT_SYMBOL "vi_hv_plugin_init"

#endif
