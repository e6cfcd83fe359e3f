/* Hypervisor plugins: finding and loading hv-*.so, probing, choosing a
 * backend, and the wrappers through which every method is called. A NULL
 * method is reported here, once, as "backend 'x' does not support y" (exit 4).
 *
 * The set owns its plugins; a plugin owns its connection context. */
#ifndef VI_HV_H
#define VI_HV_H

#include <stdbool.h>
#include <vi/hv-plugin.h>

struct vi_hv {
	struct vi_hv_ops ops;  /* min(sizes) of the plugin's table, the rest zeroed */
	char *path;
	void *handle;
	struct vi_hv_ctx ctx;
	char *uri;             /* the URI ctx was opened with */
	bool opened;
	bool probed;
	int probe;             /* enum vi_hv_probe, once probed */
	char *reason;          /* probe's line, or the error when probe failed */
};

/* A plugin file found on the search path, loaded only when asked for. */
struct vi_hv_file {
	char *name; /* "qemu" for hv-qemu.so */
	char *path;
	bool tried;
};

struct vi_hv_set {
	struct vi_hv *hv;      /* the plugins loaded so far, in the order asked for */
	size_t n;
	struct vi_hv_file *files; /* every hv-*.so found, search path order */
	size_t nfiles;
	bool scanned;
	char **load_errors;    /* one line each: "'file': reason" */
	size_t nerrors;
};

/* The directories searched, in order: $VI_PLUGIN_DIR (colon-separated), the
 * plugins/ directory next to the running binary, the installed one. */
const char *const *vi_hv_search_path(void);

/* Finds the hv-*.so files on the search path without loading any: a plugin
 * is loaded when first asked for by name (vi_hv_find(), vi_hv_choose()), so
 * a command maps only the backends it uses. Of files with the same name, the
 * first on the search path that loads wins. A plugin that fails to load is
 * skipped, with one warning line on stderr and an entry in load_errors. */
void vi_hv_scan(struct vi_hv_set *set);
/* Loads every plugin found (scanning first if need be), for the verbs that
 * show them all. Never fails as a whole. */
void vi_hv_load_all(struct vi_hv_set *set);
void vi_hv_set_release(struct vi_hv_set *set);

/* The plugin called name, loaded now if need be, or NULL after recording
 * "no backend named 'x'". */
struct vi_hv *vi_hv_find(struct vi_hv_set *set, const char *name);

/* Opens the plugin's context for uri (NULL: its default) and probes it,
 * once per command; the answer stays in hv->probe and hv->reason. A backend
 * without VI_HV_F_REMOTE declines any uri. */
int vi_hv_probe(struct vi_hv *hv, const char *uri);

/* -VI_EUSAGE when uri is given to a backend that runs VMs on this host only. */
int vi_hv_check_uri(const struct vi_hv *hv, const char *uri);

/* Picks the backend: `name` if given (a probe answer of OK or EXPLICIT will
 * do), else the first whose probe is OK in the order vtx, svm, qemu, xen,
 * loading and probing only as far as that one.
 * With a uri, only backends with VI_HV_F_REMOTE qualify, and a backend its
 * scheme names ("qemu+ssh://...") is the one chosen. When none will do, the
 * error gives each candidate's reason. */
int vi_hv_choose(struct vi_hv_set *set, const char *name, const char *uri, struct vi_hv **out);
/* Probed, and usable when named: OK or EXPLICIT. */
bool vi_hv_usable(const struct vi_hv *hv);

/* Can hv boot vm the way it asks (a kernel, or firmware from its disks)?
 * -VI_EUNSUPPORTED, saying why, when not. */
int vi_hv_check_boot(const struct vi_hv *hv, const struct vi_hv_vm *vm);

/* Capability names of a plugin (methods present and feature bits), for
 * `vi caps`: fills names (static strings) with at most max, returns how many. */
size_t vi_hv_caps(const struct vi_hv *hv, const char **names, size_t max);

/* The method wrappers: the only way a method is called. Each returns
 * -VI_EUNSUPPORTED for a NULL method, but for define and undefine, which
 * succeed doing nothing (see the ABI). */
int vi_hv_define(struct vi_hv *hv, const struct vi_hv_vm *vm);
int vi_hv_undefine(struct vi_hv *hv, const struct vi_hv_vm *vm);
int vi_hv_start(struct vi_hv *hv, const struct vi_hv_vm *vm);
int vi_hv_run(struct vi_hv *hv, const struct vi_hv_vm *vm, const struct vi_hv_run_opts *opts);
int vi_hv_stop(struct vi_hv *hv, const struct vi_hv_vm *vm, unsigned flags, unsigned timeout_ms);
int vi_hv_pause(struct vi_hv *hv, const struct vi_hv_vm *vm);
int vi_hv_resume(struct vi_hv *hv, const struct vi_hv_vm *vm);
int vi_hv_state(struct vi_hv *hv, const struct vi_hv_vm *vm, struct vi_hv_state *out);
/* The states of n VMs: one request where the backend has states(), else
 * state() for each; a VM whose state cannot be read is VI_HV_UNKNOWN. */
int vi_hv_states(struct vi_hv *hv, const struct vi_hv_vm *const *vms, size_t n,
		 struct vi_hv_state *out);
int vi_hv_console(struct vi_hv *hv, const struct vi_hv_vm *vm, int in_fd, int out_fd, int escape);
int vi_hv_stats(struct vi_hv *hv, const struct vi_hv_vm *vm, struct vi_hv_stats *out);
int vi_hv_save(struct vi_hv *hv, const struct vi_hv_vm *vm, const char *path, unsigned flags);
int vi_hv_restore(struct vi_hv *hv, const struct vi_hv_vm *vm, const char *path, unsigned flags);
int vi_hv_migrate_send(struct vi_hv *hv, const struct vi_hv_vm *vm, const struct vi_hv_migrate *m);
int vi_hv_migrate_recv(struct vi_hv *hv, const struct vi_hv_vm *vm, const struct vi_hv_migrate *m);
/* A private network of the backend made and started, or taken down. */
int vi_hv_net_up(struct vi_hv *hv, const char *name, const char *cidr);
int vi_hv_net_down(struct vi_hv *hv, const char *name);
/* The backend's own checks of a move to dest_uri (VI_HV_F_MIGRATE_URI); none
 * (0) when it has none. */
int vi_hv_migrate_check(struct vi_hv *hv, const struct vi_hv_vm *vm, const char *dest_uri,
			vi_hv_check_fn line, void *opaque);
int vi_hv_set_vcpus(struct vi_hv *hv, const struct vi_hv_vm *vm, unsigned n);
int vi_hv_set_memory(struct vi_hv *hv, const struct vi_hv_vm *vm, uint64_t bytes);
int vi_hv_resize_disk(struct vi_hv *hv, const struct vi_hv_vm *vm, size_t disk, uint64_t bytes);
int vi_hv_set_cpu_quota(struct vi_hv *hv, const struct vi_hv_vm *vm, unsigned percent);
/* The running guest's file system on disk `disk` grown into the disk (with
 * VI_HV_GROW_FS_CHECK only read); *out zeroed and sized first. */
int vi_hv_grow_fs(struct vi_hv *hv, const struct vi_hv_vm *vm, size_t disk, unsigned flags,
		  struct vi_hv_fs_info *out);
int vi_hv_switch_disks(struct vi_hv *hv, const struct vi_hv_vm *vm, const char *const *overlays);
int vi_hv_forward_add(struct vi_hv *hv, const struct vi_hv_vm *vm, size_t nic,
		      const struct vi_hv_forward *f);
int vi_hv_forward_remove(struct vi_hv *hv, const struct vi_hv_vm *vm, size_t nic,
			 const struct vi_hv_forward *f);
int vi_hv_nic_address(struct vi_hv *hv, const struct vi_hv_vm *vm, size_t nic, char *buf,
		      size_t len);
/* The running guest's dirty rate over ms milliseconds, bytes per second. */
int vi_hv_dirty_rate(struct vi_hv *hv, const struct vi_hv_vm *vm, unsigned ms,
		     uint64_t *bytes_per_s);

const char *vi_hv_state_name(int state);
const char *vi_hv_probe_name(int probe);

/* The host table handed to plugins. */
const struct vi_host *vi_hv_host(void);
/* Sets the home the host table reports (the store's root). */
void vi_hv_set_home(const char *home);

#endif
