/* lib/vmm: the native VMM on the Linux KVM API, shared by the hv-vtx and hv-svm plugins.
 * One struct vmm is one virtual machine in this process: guest memory, vCPU threads, devices.
 *
 * Life of a VM: vmm_new() (KVM set-up, memory, devices, vCPUs: nothing loaded), then
 * either vmm_boot() (kernel, initrd, command line, ACPI tables, boot registers) or
 * vmm_restore() (memory, vCPUs and devices from a saved state), vmm_start() (vCPU threads
 * run), vmm_wait() (the event loop, until the guest resets, shuts down, triple-faults or
 * vmm_request_exit() is called), vmm_free(). Between start and the end of wait,
 * vmm_pause()/vmm_resume()/vmm_inject_ctrl_alt_del() may be called from the thread that
 * runs vmm_wait() (the control socket's handlers do), and vmm_save() from one other thread
 * while the VM is paused. Every function returns 0 or a negative VI_E* code after
 * vi_error().
 */
#ifndef VI_VMM_H
#define VI_VMM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <stdatomic.h>

#include <linux/kvm.h>

struct vmm;
struct vi_state_writer;

/* The vendor layer (Intel or AMD), supplied by the plugin. Methods may be NULL. */
struct vmm_vendor {
	/* Adjusts the CPUID table of vCPU `index` of `count` after the generic filtering. */
	void (*cpuid_filter)(struct kvm_cpuid2 *cpuid, unsigned index, unsigned count);
	/* Vendor MSRs for a vCPU at boot: fills up to `max` entries, returns how many. */
	size_t (*boot_msrs)(struct kvm_msr_entry *msrs, size_t max);
};

/* A disk on virtio-blk, backed by lib/image. */
struct vmm_disk {
	const char *path;
	int format;    /* enum vi_disk_format */
	bool readonly;
};

/* A host port forwarded to the guest of a user-mode NIC. */
struct vmm_forward {
	bool udp;
	const char *host_addr; /* numeric IPv4; NULL: 127.0.0.1 */
	unsigned host_port, guest_port;
};

/* A network card on virtio-net, backed by a TAP device or by user-mode networking
 * (libslirp: 10.0.2.0/24, the guest gets .15 by DHCP, .2 is the host, .3 DNS). */
struct vmm_nic {
	uint8_t mac[6];
	bool user;       /* user-mode networking rather than a TAP device */
	const char *tap; /* an existing TAP device to attach to; NULL: the VMM makes one */
	const char *bridge; /* the bridge the TAP the VMM makes joins; may be NULL */
	const char *network; /* the directory of vi's network on bridge: the VMM answers DHCP */
	const struct vmm_forward *forwards; /* user: set up by vmm_new(), copied */
	size_t nforwards;
};

struct vmm_config {
	const char *kernel;  /* bzImage (boot protocol >= 2.12, 64-bit entry) or ELF vmlinux */
	const char *initrd;  /* may be NULL */
	const char *cmdline; /* may be NULL */
	const char *uuid;    /* the VM's, canonical form, for its saved state; may be NULL */
	unsigned cpus;
	unsigned max_cpus;   /* vCPUs the guest is told may come (ACPI MADT); 0: cpus */
	uint64_t memory;     /* bytes of guest RAM */
	uint64_t max_memory; /* what memory may grow to; 0: memory */
	const struct vmm_vendor *vendor; /* NULL: no vendor adjustments */
	int console_fd;      /* guest COM1 output is also written here; -1 for none */
	const struct vmm_disk *disks; /* copied by vmm_new() */
	size_t ndisks;
	const struct vmm_nic *nics;
	size_t nnics;
	bool disks_later;    /* disk images are opened by vmm_open_disks(), not vmm_new():
			      * a migration's destination writes them first */
	bool rng;            /* a virtio-rng device */
	bool balloon;        /* a virtio-balloon device */
};

/* Why a VM stopped, as vmm_wait() returns it. */
enum vmm_exit_reason {
	VMM_EXIT_RESET = 1, /* the guest asked for a reset (i8042 or system event) */
	VMM_EXIT_SHUTDOWN,  /* triple fault */
	VMM_EXIT_POWEROFF,  /* the guest powered off (system event) */
	VMM_EXIT_STOPPED,   /* the host asked: vmm_request_exit() */
	VMM_EXIT_ERROR,     /* KVM could not run the guest; vmm_exit_message() says why */
};

const char *vmm_exit_reason_name(int reason); /* "reset", "shutdown"...: static strings */

/* What the kernel module offers. */
struct vmm_kvm_info {
	unsigned max_vcpus; /* KVM_CAP_MAX_VCPUS, capped at what lib/vmm supports */
	char module[32];    /* "kvm_intel", "kvm_amd", "kvm_pvm"... or "kvm" */
	bool hardware;      /* guest code runs on VT-x/SVM (kvm_intel or kvm_amd) */
};

/* Opens /dev/kvm and fills *info. /dev/kvm missing: -VI_EUNSUPPORTED; not permitted:
 * -VI_EFAIL; wrong API version: -VI_EUNSUPPORTED. */
int vmm_kvm_probe(struct vmm_kvm_info *info);

/* The CPU's vendor string from CPUID leaf 0 ("GenuineIntel", "AuthenticAMD"); buf >= 13. */
void vmm_cpu_vendor(char *buf);

/* Checks a configuration without creating anything: the kernel is a bootable image, memory
 * covers what its header demands, the initrd exists and fits, the vCPU counts are within
 * what KVM allows and max_memory is not below memory. Missing files: -VI_ENOTFOUND; bad
 * values: -VI_EUSAGE; an image of a kind this VMM cannot boot: -VI_EUNSUPPORTED. */
int vmm_check_config(const struct vmm_config *cfg);

/* Creates the VM described by cfg (copied; the vendor table must outlive the VM), with
 * its memory, devices and vCPUs, and nothing in them yet. The caller owns *out. */
int vmm_new(const struct vmm_config *cfg, struct vmm **out);
/* What of cfg a saved state depends on, as text (the caller frees it): two configurations
 * with one shape make the same machine, whatever their kernel, command line and disk
 * files. */
char *vmm_config_shape(const struct vmm_config *cfg);
/* Loads the kernel, initrd and command line, writes the ACPI tables and sets the boot
 * vCPU up at the kernel's 64-bit entry. On failure the VM is only fit for vmm_free(). */
int vmm_boot(struct vmm *vm);
/* Makes the VM what a state vmm_save() wrote says (lib/state.h), read from fd: a regular
 * file is mapped MAP_PRIVATE where its pages hold data, so it must stay unchanged while
 * the VM lives (replace it by rename, never in place); a pipe or socket is read into
 * memory. The configuration must match the saved VM's (memory, vCPUs, devices, disk
 * sizes). Every section's checksum is checked before the VM changes; with
 * VMM_RESTORE_UNCHECKED_PAGES, those of a file's page runs are not, and its pages are
 * not read at all: for a file the caller knows to be as it was written. On failure the
 * VM is only fit for vmm_free(). */
int vmm_restore(struct vmm *vm, int fd, unsigned flags);
#define VMM_RESTORE_UNCHECKED_PAGES (1u << 0)
/* Replaces the state of the paused VM by the one in the regular file fd, as vmm_restore()
 * would make it (flags as there), in the same process and KVM VM: the whole state is read and checked
 * first, then the disks move to disks[] (n the number of disks; those that name what the
 * disk uses stay open), memory becomes the file's pages and zero pages, and every vCPU
 * and device takes its saved state. The VM stays paused. On failure *changed says
 * whether the guest had been touched (then it is only fit to be stopped). From the
 * thread that runs vmm_wait(). */
int vmm_replace(struct vmm *vm, int fd, unsigned flags, const struct vmm_disk *disks,
		size_t ndisks, bool *changed);
/* Starts the console log afresh: the file at path, made anew, takes the place of the one
 * cfg.console_fd writes to, and the output kept for late clients is forgotten, as for a
 * VM that has just started. */
int vmm_console_restart_log(struct vmm *vm, const char *path);
/* Writes the paused VM's whole state to fd through w (zeroed by the caller, who may read
 * its progress and cancel it from another thread): memory, vCPUs, devices. The devices'
 * background work waits meanwhile. fd is not synced. */
int vmm_save(struct vmm *vm, int fd, struct vi_state_writer *w);
int vmm_start(struct vmm *vm);
/* Runs the event loop until the VM stops; returns an enum vmm_exit_reason. */
int vmm_wait(struct vmm *vm);
/* Stops the vCPU threads and releases everything. NULL is fine. */
void vmm_free(struct vmm *vm);
/* Stops the vCPU threads and frees the devices, letting go of what they hold on the host
 * (disk images, TAP devices, forwarded ports); the event loop and console stay until
 * vmm_free(). */
void vmm_release_devices(struct vmm *vm);

/* Ends vmm_wait() with `reason` unless another reason came first. Any thread. */
void vmm_request_exit(struct vmm *vm, int reason);
const char *vmm_exit_message(const struct vmm *vm); /* "" unless VMM_EXIT_ERROR */

/* All vCPUs parked outside KVM_RUN on return; idempotent. */
int vmm_pause(struct vmm *vm);
int vmm_resume(struct vmm *vm);
bool vmm_paused(const struct vmm *vm);
/* Presses Ctrl-Alt-Del on the i8042 keyboard: a guest's request to reboot. */
void vmm_inject_ctrl_alt_del(struct vmm *vm);
/* Presses the ACPI power button (an SCI when the guest enabled it). */
void vmm_press_power_button(struct vmm *vm);
/* Asks the guest to shut down: the power button when the guest armed it (ACPI mode and
 * the button's enable bit set), Ctrl-Alt-Del otherwise. */
void vmm_request_shutdown(struct vmm *vm);
/* Asks the guest's balloon driver to hold `pages` 4 KiB pages; -VI_ENOTFOUND without a
 * balloon. *actual (may be NULL) gets what the driver reports it holds now. */
int vmm_balloon_set(struct vmm *vm, uint32_t pages);
int vmm_balloon_get(struct vmm *vm, uint32_t *target, uint32_t *actual);
/* Makes the guest's memory `bytes` in all: above the boot memory, virtio-mem is asked
 * to plug the rest (in whole blocks) and the balloon to give everything back; below
 * it, virtio-mem to unplug everything and the balloon to hold the difference. The
 * guest's drivers do it in their own time: vmm_memory_size() tells how far they got.
 * 0, or past max_memory: -VI_EUSAGE naming the maximum; below the boot memory without
 * a balloon: -VI_EUNSUPPORTED. From any one thread at a time. */
int vmm_set_memory(struct vmm *vm, uint64_t bytes);
/* The guest's memory now, in bytes: boot and max_memory, what virtio-mem was asked for
 * and has plugged, what the balloon was asked for and holds. */
struct vmm_memory_size {
	uint64_t boot, max, requested, plugged, balloon_target, balloon_actual;
};
void vmm_memory_size(struct vmm *vm, struct vmm_memory_size *out);
/* Live layering: moves each disk i with a non-NULL overlays[i] (n must be the number of
 * disks) onto that qcow2 image, which must have the disk's virtual size and be backed by
 * the file the disk uses now. Every overlay is checked before any disk moves; the disks'
 * requests wait while they move, all together, so the old images keep exactly the writes
 * made before that instant and are only read afterwards. On failure every disk stays on
 * its old image (should one not even reopen, the message says so and that disk fails its
 * requests). Paths are copied. Called from the thread that runs vmm_wait(), or before
 * vmm_start(). */
int vmm_switch_disks(struct vmm *vm, const char *const *overlays, size_t n);
/* Live resize: disk i's image grows to `bytes` (rounded up to whole 512-byte sectors)
 * and the guest is told by a configuration interrupt; shrinking is refused
 * (VI_EUSAGE), a read-only disk too. vmm_disk_size(): its size now, 0 for none. */
int vmm_resize_disk(struct vmm *vm, size_t i, uint64_t bytes);
/* The share of host CPU time this process (the VM) may use, in percent of one CPU, 0
 * for no limit: the process moves into a cgroup of its own (named after `name`) the
 * first time, which vmm_free() removes. VI_EUNSUPPORTED where no cgroup has the cpu
 * controller. */
int vmm_set_cpu_quota(struct vmm *vm, const char *name, unsigned percent);
/* Leaves and removes the quota's cgroup, if there is one (vmm_free() does too). */
void vmm_cgroup_leave(struct vmm *vm);
uint64_t vmm_disk_size(struct vmm *vm, size_t i);

/* Opens the disk images of a VM made with cfg.disks_later, before it is loaded. */
int vmm_open_disks(struct vmm *vm);

/* Adds or removes a port forward of user-mode NIC `nic` of the running VM. A port that
 * cannot be bound: -VI_ESTATE "host port N is in use"; a forward that is not there to
 * remove: -VI_ESTATE; a NIC that is not user-mode: -VI_EUSAGE. From any one thread at a
 * time, while vmm_wait() runs or before. */
int vmm_nic_forward(struct vmm *vm, size_t nic, const struct vmm_forward *f, bool add);
/* The IPv4 address DHCP gave the guest on user-mode NIC `nic`, as text in buf (len >= 16);
 * -VI_ENOTFOUND before the guest took a lease. Any thread. */
int vmm_nic_address(struct vmm *vm, size_t nic, char *buf, size_t len);

/* A host-side access to the device buses, as a vCPU would make it: for tests and
 * benchmarks that drive devices without a guest. */
void vmm_io(struct vmm *vm, bool mmio, uint64_t addr, void *data, unsigned len, bool write);

struct vmm_stats {
	unsigned vcpus;
	uint64_t exits;       /* KVM_RUN returns, all vCPUs */
	uint64_t cpu_time_ns; /* CPU time of the vCPU threads */
	uint64_t memory;      /* guest RAM, bytes: boot memory and what virtio-mem plugged */
	uint64_t disk_rd_bytes, disk_wr_bytes, disk_rd_ops, disk_wr_ops; /* all disks, so far */
	uint64_t net_rx_bytes, net_tx_bytes; /* frames to and from the guest, all NICs */
};
void vmm_get_stats(struct vmm *vm, struct vmm_stats *out);

/* Whether the guest drives a device: its virtio driver said DRIVER_OK (kind
 * "virtio-mem", "virtio-balloon"...), or its ACPI code has used the CPU hotplug
 * registers (Linux reads them at boot). */
enum { VMM_DRIVER_NO_DEVICE, VMM_DRIVER_NONE, VMM_DRIVER_ACTIVE };
int vmm_virtio_driver(struct vmm *vm, const char *kind);
int vmm_cpu_hotplug_driver(struct vmm *vm);

/* --- vCPU hotplug (cpu-hotplug.c) --------------------------------------------------- */

/* The guest's CPUs as ACPI hotplug sees them: present ones (those asked to go among
 * them) and those asked to go that the guest has not ejected yet. */
struct vmm_vcpus_info {
	unsigned present, removing, max;
};

/* Makes n vCPUs present (1 to max_cpus; -VI_EUSAGE naming the maximum past it): new
 * ones are created and wait for the guest's INIT-SIPI, the highest ones beyond n are
 * asked to go and stop once the guest ejects them. The guest hears of it through the
 * GED interrupt. Any thread. */
int vmm_set_vcpus(struct vmm *vm, unsigned n);
void vmm_get_vcpus(struct vmm *vm, struct vmm_vcpus_info *out);

/* --- live migration (migrate.c) ---------------------------------------------------- */

/* The stream is the state format (lib/state.h) over a connected socket: page runs of
 * every iteration and disk file data, then with the guest paused the last of them, the
 * vCPU and device sections and the end section. Then the hand-over, lines of text:
 * the destination answers "ready" (or "error MESSAGE"), the source says "commit", the
 * destination resumes the guest and answers "running". */

enum vmm_converge {
	VMM_CONVERGE_AUTO,  /* slow the vCPUs down more and more */
	VMM_CONVERGE_PAUSE, /* pause the guest and send the rest */
	VMM_CONVERGE_ABORT, /* give up: -VI_ETIMEOUT */
};

struct vmm_migrate_opts {
	uint64_t bandwidth;    /* bytes/s, 0: unlimited */
	unsigned downtime_ms;  /* the longest pause aimed at; 0: 300 */
	unsigned timeout_s;    /* 0: none */
	int converge;          /* enum vmm_converge */
	uint64_t shared_disks; /* bit i: disk i is not sent (both hosts see its file) */
};

enum vmm_migrate_phase {
	VMM_MIGRATE_MEMORY,
	VMM_MIGRATE_DISKS,
	VMM_MIGRATE_DOWNTIME,
	VMM_MIGRATE_COMMIT,
};
const char *vmm_migrate_phase_name(int phase); /* "memory"...: static strings */

/* A migration's progress, read by other threads while it runs, and its outcome. */
struct vmm_migration {
	struct vi_state_writer *w;    /* the stream: w->offset is what has been sent, and
				       * w->cancel, set, makes the migration fail soon */
	_Atomic unsigned iteration, phase, throttle; /* throttle: % of vCPU time taken */
	_Atomic uint64_t remaining, dirty_rate, bandwidth, disk_bytes;
	/* Set on return: */
	double total_ms, downtime_ms;
	bool unconfirmed; /* "commit" went out, "running" never came: the VM stays paused */
};

/* Sends the running (or paused) VM over fd, a connected stream to a receiver, through
 * m (zeroed by the caller but for m->w, a zeroed writer the caller may cancel). 0 once
 * the destination says its guest runs: the VM here is paused for good and must end.
 * Any other return leaves the VM as it was (running unless it was paused) unless
 * m->unconfirmed. From one thread other than the event loop's. */
int vmm_migrate_send(struct vmm *vm, int fd, const struct vmm_migrate_opts *o,
		     struct vmm_migration *m);

/* The receiving side: vm is made by vmm_new() with cfg.disks_later, its disks' paths where
 * the files sent are made anew (disks in shared_disks and read-only ones are opened as
 * they are); backing (may be NULL) gives each sent disk's overlay its backing file name
 * on this host. Reads the whole stream, loads the VM and answers "ready"; on failure the
 * files it made are gone and the source is told why when it can be. Then the caller
 * makes ready what else the VM needs (its control socket) and waits for the source's
 * "commit" with vmm_migrate_commit(), which removes the disks made if it never comes,
 * starts the VM and calls vmm_migrate_running(). */
int vmm_migrate_recv(struct vmm *vm, int fd, uint64_t shared_disks, const char *const *backing);
int vmm_migrate_commit(struct vmm *vm, int fd);
int vmm_migrate_running(int fd);
/* How fast the running guest and its devices dirty memory: the bytes of the pages
 * written over `ms` ms, per second. Dirty logging runs meanwhile, then stops. */
int vmm_dirty_rate(struct vmm *vm, unsigned ms, uint64_t *bytes_per_s);
/* Removes the disk files a migration received (when the guest did not start after all). */
void vmm_migrate_discard(struct vmm *vm, uint64_t shared_disks);

/* --- guest memory ------------------------------------------------------------------ */

/* A region of guest-physical memory backed by a host mapping. Anonymous regions are
 * MAP_PRIVATE|MAP_ANONYMOUS; a file-backed region maps `fd` at `offset` (MAP_PRIVATE when
 * VMM_MEM_PRIVATE, e.g. restoring from a snapshot, else MAP_SHARED). */
struct vmm_mem_region {
	uint64_t gpa, size;
	uint8_t *hva;
	uint32_t slot;
	unsigned flags; /* VMM_MEM_* */
};
#define VMM_MEM_PRIVATE   (1u << 0)
#define VMM_MEM_DIRTY_LOG (1u << 1)
#define VMM_MEM_ANON      (1u << 2) /* anonymous, with no file mapped over any of it */

/* Adds a region; fd -1 for anonymous memory. */
int vmm_memory_add(struct vmm *vm, uint64_t gpa, uint64_t size, int fd, uint64_t offset,
		   unsigned flags);
size_t vmm_memory_count(const struct vmm *vm);
/* For an anonymous region: one byte per page, set for a page the host never gave
 * memory to (never written: it reads as zero), from /proc/self/pagemap. NULL when
 * that cannot be told (a file mapped over the region, no pagemap). The caller frees. */
uint8_t *vmm_memory_untouched(const struct vmm *vm, size_t index);
const struct vmm_mem_region *vmm_memory_region(const struct vmm *vm, size_t index);
/* Host address of [gpa, gpa+len) when it lies in one region, else NULL. */
void *vmm_gpa_to_hva(struct vmm *vm, uint64_t gpa, uint64_t len);
/* Turns dirty-page logging on or off for every region: KVM's log of the guest's writes
 * and the VMM's own of what its devices write into guest memory. */
int vmm_memory_set_dirty_log(struct vmm *vm, bool on);
/* Fetches and clears region `index`'s dirty bitmap, the guest's and the devices'
 * writes: one bit per 4 KiB page, `bitmap` holds (size / 4096 + 63) / 64 words. */
int vmm_memory_get_dirty(struct vmm *vm, size_t index, uint64_t *bitmap);

/* --- vCPU state, for save and restore -------------------------------------------- */

/* Everything KVM holds for one vCPU. Read and written only while the VM is paused. */
struct vmm_vcpu_state {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_fpu fpu;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp_state;
	struct kvm_debugregs debugregs;
	unsigned nmsrs;
	struct kvm_msr_entry msrs[32];
};
unsigned vmm_vcpu_count(const struct vmm *vm);
int vmm_vcpu_get_state(struct vmm *vm, unsigned index, struct vmm_vcpu_state *out);
int vmm_vcpu_set_state(struct vmm *vm, unsigned index, const struct vmm_vcpu_state *state);

/* --- console ------------------------------------------------------------------------ */

/* Sends `len` bytes to the guest's COM1 receiver (dropped when its FIFO is full). */
void vmm_console_input(struct vmm *vm, const uint8_t *buf, size_t len);
/* Also writes guest output to `fd` from now on (a log file, a console client); the
 * recent output still in the ring buffer is written first when `replay`. */
int vmm_console_attach(struct vmm *vm, int fd, bool replay);
void vmm_console_detach(struct vmm *vm, int fd);

/* --- the event loop ---------------------------------------------------------------- */

/* Calls cb(vm, fd, opaque) from vmm_wait() whenever fd is readable (or hung up). */
typedef void (*vmm_fd_cb)(struct vmm *vm, int fd, void *opaque);
int vmm_watch_fd(struct vmm *vm, int fd, vmm_fd_cb cb, void *opaque);
void vmm_unwatch_fd(struct vmm *vm, int fd);

#endif
