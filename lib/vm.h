/* The VM definition model: what vms/<name>/vm.yaml holds, loaded and saved
 * with file:line:column errors, and its view for backends (struct vi_hv_vm).
 * A struct vi_vm owns all its strings; vi_vm_release() frees them. */
#ifndef VI_VM_H
#define VI_VM_H

#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <vi/hv-plugin.h>

#define VI_VM_SCHEMA 1
/* The memory of a VM whose definition (or template) names none. */
#define VI_VM_DEFAULT_MEMORY (512ull << 20)
/* The range of memory a VM may have: the top is what x86-64's 4-level page
 * tables address, 64 TiB, so that a typo such as 1E is refused. */
#define VI_VM_MIN_MEMORY (16ull << 20)
#define VI_VM_MAX_MEMORY (64ull << 40)
/* A CPU quota is a percentage of one host CPU: 50 is half of one, 400 four. */
#define VI_VM_MAX_CPU_QUOTA (4096u * 100u)

struct vi_vm_disk {
	char *path;   /* relative to the VM's directory, or absolute */
	int format;   /* enum vi_disk_format */
	bool readonly;
	char *layer;  /* the layer (lib/layers.h) its overlay sits on, or NULL */
};

/* A port forward of a "user" NIC. An automatic one (the SSH port vi gives
 * every such NIC, or one a clone inherited) has a host port vi chose, and
 * chooses again at start when another program took it meanwhile. */
struct vi_vm_forward {
	int proto;        /* enum vi_hv_proto */
	char *host_addr;  /* numeric IPv4 */
	unsigned host_port, guest_port;
	bool auto_port;
};

struct vi_vm_nic {
	char *mac;
	char *mode;   /* user, nat, tap, bridge, network */
	char *source; /* may be NULL */
	struct vi_vm_forward *forwards;
	size_t nforwards;
};

struct vi_vm {
	char *name;
	char *uuid;
	char *hv;      /* backend name: vtx, svm, qemu, xen */
	char *connect; /* backend URI; NULL for the backend's default */
	unsigned cpus, max_cpus;
	uint64_t memory, max_memory;
	unsigned cpu_quota;    /* percent of one host CPU the VM may use, 0: no limit */
	char *kernel, *initrd, *cmdline;
	char *guest_type;
	struct vi_vm_disk *disks;
	size_t ndisks;
	struct vi_vm_nic *nics;
	size_t nnics;
	char *hostname;
	char *machine_id;
	char *template;        /* the template it came from, or NULL */
	char *template_digest; /* its golden image's digest */
	char *ready_marker;    /* console line that means "ready", or NULL */
	char *origin;          /* the VM it was cloned from, or NULL */
	char *user;            /* who `vi ssh` logs in as, or NULL: no SSH login */
	bool ready_ssh;        /* "ready" means SSH answers */
	char *snapshot;        /* the snapshot its current state comes from (git's HEAD), or NULL */
	char **labels;         /* "KEY=VALUE", sorted by key, keys unique */
	size_t nlabels;
	time_t created;
};

/* Labels, as Kubernetes' simple ones: a key is 1 to 63 of A-Z a-z 0-9 . _ -
 * beginning with a letter or a digit; a value is 0 to 63 of A-Z a-z 0-9 . _ -. */
#define VI_LABEL_MAX 63

/* Applies one change to vm's labels: "KEY=VALUE" sets KEY (a key set again
 * takes the last value), and with allow_remove "KEY-" removes KEY (absent:
 * nothing to do). A bad one is -VI_EUSAGE, "invalid label 'SPEC': why", and
 * changes nothing. */
int vi_vm_label_apply(struct vi_vm *vm, const char *spec, bool allow_remove);
/* The value of label key, or NULL. */
const char *vi_vm_label(const struct vi_vm *vm, const char *key);
/* Splits the valid "KEY=VALUE" spec at its '=' (-VI_EUSAGE as above):
 * *key_len is the key's length, *value points into spec. */
int vi_label_parse(const char *spec, size_t *key_len, const char **value);

/* The maximum a VM made without one may grow to while it runs: vCPUs up to
 * this host's (at most 32), memory up to four times its own (at most this
 * host's, in whole 128M blocks); never less than it has. */
unsigned vi_headroom_cpus(unsigned cpus);
uint64_t vi_headroom_memory(uint64_t memory);

/* Reads path into vm (zeroed first). Errors name path:line:column. */
int vi_vm_load(const char *path, struct vi_vm *vm);
/* Writes vm to path atomically. */
int vi_vm_save(const char *path, const struct vi_vm *vm);
void vi_vm_release(struct vi_vm *vm);

/* Fills fresh identity fields that are NULL: uuid, machine_id, hostname (the
 * name), and a locally administered MAC for NICs without one. */
void vi_vm_new_identity(struct vi_vm *vm);

/* "[ADDR:]HOST:GUEST[/tcp|/udp]" (HOST 0: a free port, chosen by vi) into f,
 * whose strings the caller frees with vi_vm_forward_release(). */
int vi_vm_forward_parse(const char *spec, struct vi_vm_forward *f);
/* "ADDR:HOST->GUEST/PROTO", malloc'd. */
char *vi_vm_forward_str(const struct vi_vm_forward *f);
void vi_vm_forward_release(struct vi_vm_forward *f);
/* The NIC's forward of guest TCP port `guest_port`, or NULL. */
struct vi_vm_forward *vi_vm_nic_forward(const struct vi_vm_nic *n, unsigned guest_port);

const char *vi_disk_format_name(int format);
int vi_disk_format_parse(const char *s, int *format); /* -VI_EUSAGE on unknown */

/* A backend's view of a VM, pointing into the vi_vm and into strings this
 * struct owns. Valid while both live; release with vi_vm_hv_release(). */
struct vi_vm_hv {
	struct vi_hv_vm vm;
	struct vi_hv_disk *disks;  /* what vm.disks points at, one by one */
	struct vi_hv_nic *nics;
	struct vi_hv_forward **forwards; /* per NIC: its forwards, one by one */
	const struct vi_hv_forward ***forward_ptrs;
	const struct vi_hv_disk **disk_ptrs;
	const struct vi_hv_nic **nic_ptrs;
	char *dir, *run_dir, *console_log, *cmdline;
	char **disk_paths;
};

/* A directly booted kernel gets the VM's identity on its command line,
 * "vi.hostname=NAME vi.machine_id=HEX", for the guest's first boot to take. */
void vi_vm_hv_init(struct vi_vm_hv *h, const struct vi_vm *vm, const char *vm_dir);
void vi_vm_hv_release(struct vi_vm_hv *h);

#endif
