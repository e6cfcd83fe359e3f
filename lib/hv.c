/* Plugin loading, probing, backend choice and the method wrappers. */
#include "hv.h"
#include "error.h"
#include "log.h"
#include "util.h"

#include <dirent.h>
#include <dlfcn.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef VI_VERSION
#define VI_VERSION "0"
#endif
#ifndef VI_PLUGIN_DIR_DEFAULT
#define VI_PLUGIN_DIR_DEFAULT "/usr/local/lib/vi/plugins"
#endif
#ifndef VI_PLUGIN_DIR_FROM_BIN
#define VI_PLUGIN_DIR_FROM_BIN "../lib/vi/plugins"
#endif

static struct vi_host host = {
	.struct_size = sizeof(struct vi_host),
	.abi_version = VI_HV_ABI_VERSION,
	.version = VI_VERSION,
	.error = vi_error,
	.log = vi_log,
	.error_message = vi_error_message,
	.error_code = vi_error_code,
	.error_clear = vi_error_clear,
};

const struct vi_host *vi_hv_host(void)
{
	host.self_exe = vi_self_exe();
	return &host;
}

void vi_hv_set_home(const char *home)
{
	host.home = home;
}

const char *const *vi_hv_search_path(void)
{
	static const char *dirs[64];
	static char *owned[64];
	size_t n = 0;

	if (dirs[0])
		return dirs;
	const char *env = getenv("VI_PLUGIN_DIR");
	if (env && *env) {
		char *copy = xstrdup(env), *save = NULL;
		owned[n] = copy;
		for (char *d = strtok_r(copy, ":", &save); d && n < 60; d = strtok_r(NULL, ":", &save))
			dirs[n++] = d;
	}
	/* A build tree's plugins/, then an install's, staged or not. */
	owned[n] = vi_self_relative("plugins");
	dirs[n] = owned[n];
	n++;
	owned[n] = vi_self_relative(VI_PLUGIN_DIR_FROM_BIN);
	dirs[n] = owned[n];
	n++;
	dirs[n++] = VI_PLUGIN_DIR_DEFAULT;
	dirs[n] = NULL;
	return dirs;
}

static void load_error(struct vi_hv_set *set, const char *path, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void load_error(struct vi_hv_set *set, const char *path, const char *fmt, ...)
{
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	vi_warn("cannot load plugin '%s': %s", path, why);
	set->load_errors = xrealloc(set->load_errors, (set->nerrors + 1) * sizeof(char *));
	set->load_errors[set->nerrors++] = xasprintf("'%s': %s", path, why);
}

/* A plugin's table must hold at least the fields before the methods. */
#define OPS_MIN_SIZE offsetof(struct vi_hv_ops, open)

/* Loads the plugin at path, called name by its file: NULL when it cannot be
 * loaded (said once, as a warning and in load_errors). */
static struct vi_hv *load_one(struct vi_hv_set *set, const char *path, const char *name)
{
	void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (!h) {
		load_error(set, path, "%s", dlerror());
		return NULL;
	}
	vi_hv_plugin_init_fn init = (vi_hv_plugin_init_fn)dlsym(h, VI_HV_PLUGIN_INIT_SYMBOL);
	if (!init) {
		load_error(set, path, "no symbol '%s'", VI_HV_PLUGIN_INIT_SYMBOL);
		goto fail;
	}
	vi_error_clear();
	const struct vi_hv_ops *ops = init(vi_hv_host());
	if (!ops) {
		load_error(set, path, "initialisation failed%s%s", *vi_error_message() ? ": " : "",
			   vi_error_message());
		goto fail;
	}
	if (ops->abi_version == 0) {
		load_error(set, path, "invalid plugin ABI version 0");
		goto fail;
	}
	if (ops->abi_version > VI_HV_ABI_VERSION) {
		load_error(set, path, "plugin ABI version %u is newer than this vi supports (%u)",
			   ops->abi_version, VI_HV_ABI_VERSION);
		goto fail;
	}
	/* Each version changed signatures: an older table cannot be called. */
	if (ops->abi_version < VI_HV_ABI_VERSION) {
		load_error(set, path,
			   "plugin ABI version %u is older than this vi supports (%u): rebuild the plugin",
			   ops->abi_version, VI_HV_ABI_VERSION);
		goto fail;
	}
	if (ops->struct_size < OPS_MIN_SIZE) {
		load_error(set, path, "operations table too small (%zu bytes)", ops->struct_size);
		goto fail;
	}
	if (!ops->name || strcmp(ops->name, name)) {
		load_error(set, path, "plugin calls itself '%s', not '%s'",
			   ops->name ? ops->name : "(null)", name);
		goto fail;
	}
	/* Room for every file was made by the scan: pointers handed out stay valid. */
	struct vi_hv *hv = &set->hv[set->n++];
	memset(hv, 0, sizeof(*hv));
	memcpy(&hv->ops, ops,
	       ops->struct_size < sizeof(hv->ops) ? ops->struct_size : sizeof(hv->ops));
	hv->ops.struct_size = sizeof(hv->ops);
	hv->path = xstrdup(path);
	hv->handle = h;
	vi_debug("loaded plugin '%s' (ABI %u, %zu-byte table) from '%s'", ops->name,
		 ops->abi_version, ops->struct_size, path);
	return hv;
fail:
	dlclose(h);
	return NULL;
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

void vi_hv_scan(struct vi_hv_set *set)
{
	memset(set, 0, sizeof(*set));
	set->scanned = true;
	for (const char *const *dir = vi_hv_search_path(); *dir; dir++) {
		DIR *d = opendir(*dir);
		struct dirent *e;
		char *names[256];
		size_t n = 0;

		if (!d)
			continue;
		while ((e = readdir(d)) && n < ARRAY_SIZE(names)) {
			size_t len = strlen(e->d_name);
			if (len > 6 && !strncmp(e->d_name, "hv-", 3) &&
			    !strcmp(e->d_name + len - 3, ".so"))
				names[n++] = xstrdup(e->d_name);
		}
		closedir(d);
		qsort(names, n, sizeof(*names), cmp_str);
		set->files = xrealloc(set->files, (set->nfiles + n) * sizeof(*set->files));
		for (size_t i = 0; i < n; i++) {
			struct vi_hv_file *f = &set->files[set->nfiles++];
			f->path = xasprintf("%s/%s", *dir, names[i]);
			names[i][strlen(names[i]) - 3] = '\0';
			f->name = xstrdup(names[i] + 3);
			f->tried = false;
			free(names[i]);
		}
	}
	set->hv = xcalloc(set->nfiles ? set->nfiles : 1, sizeof(*set->hv));
}

static struct vi_hv *loaded(const struct vi_hv_set *set, const char *name)
{
	for (size_t i = 0; i < set->n; i++)
		if (!strcmp(set->hv[i].ops.name, name))
			return &set->hv[i];
	return NULL;
}

/* The plugin called name, loaded now if it was not: the first of its files
 * on the search path that loads. NULL, with nothing recorded, when none does. */
static struct vi_hv *get(struct vi_hv_set *set, const char *name)
{
	struct vi_hv *hv;

	if (!set->scanned)
		vi_hv_scan(set);
	if ((hv = loaded(set, name)))
		return hv;
	for (size_t i = 0; i < set->nfiles; i++) {
		struct vi_hv_file *f = &set->files[i];
		if (f->tried || strcmp(f->name, name))
			continue;
		f->tried = true;
		if ((hv = load_one(set, f->path, f->name)))
			return hv;
	}
	return NULL;
}

void vi_hv_load_all(struct vi_hv_set *set)
{
	if (!set->scanned)
		vi_hv_scan(set);
	for (size_t i = 0; i < set->nfiles; i++)
		get(set, set->files[i].name);
}

void vi_hv_set_release(struct vi_hv_set *set)
{
	for (size_t i = 0; i < set->n; i++) {
		struct vi_hv *hv = &set->hv[i];
		if (hv->opened && hv->ops.close)
			hv->ops.close(&hv->ctx);
		/* Plugins stay mapped: libraries they use (libvirt's threads) may
		 * still run code from them until exit. */
		free(hv->path);
		free(hv->uri);
		free(hv->reason);
	}
	for (size_t i = 0; i < set->nerrors; i++)
		free(set->load_errors[i]);
	for (size_t i = 0; i < set->nfiles; i++) {
		free(set->files[i].name);
		free(set->files[i].path);
	}
	free(set->files);
	free(set->load_errors);
	free(set->hv);
	memset(set, 0, sizeof(*set));
}

struct vi_hv *vi_hv_find(struct vi_hv_set *set, const char *name)
{
	const char *names[64];
	size_t n = 0;
	struct vi_hv *hv = get(set, name);

	if (hv)
		return hv;
	/* A file of that name that did not load has said why, as a warning. */
	for (size_t i = 0; i < set->nfiles && n < ARRAY_SIZE(names); i++)
		if (strcmp(set->files[i].name, name))
			names[n++] = set->files[i].name;
	const char *s = vi_suggest(name, names, n);
	if (s)
		vi_error(VI_ENOTFOUND, "no backend named '%s'; did you mean '%s'?", name, s);
	else
		vi_error(VI_ENOTFOUND, "no backend named '%s' (see 'vi hv list')", name);
	return NULL;
}

static void close_ctx(struct vi_hv *hv)
{
	if (!hv->opened)
		return;
	if (hv->ops.close)
		hv->ops.close(&hv->ctx);
	hv->opened = false;
	hv->probed = false;
	free(hv->uri);
	hv->uri = NULL;
}

static int open_ctx(struct vi_hv *hv, const char *uri)
{
	if (hv->opened) {
		bool same = (!uri && !hv->uri) || (uri && hv->uri && !strcmp(uri, hv->uri));
		if (same)
			return 0;
		close_ctx(hv);
	}
	hv->uri = xstrdup(uri);
	hv->ctx = (struct vi_hv_ctx){
		.struct_size = sizeof(struct vi_hv_ctx),
		.host = vi_hv_host(),
		.uri = hv->uri,
	};
	if (hv->ops.open) {
		int rc = hv->ops.open(&hv->ctx);
		if (rc < 0)
			return rc;
	}
	hv->opened = true;
	return 0;
}

int vi_hv_check_uri(const struct vi_hv *hv, const char *uri)
{
	if (uri && !(hv->ops.features & VI_HV_F_REMOTE))
		return vi_error(VI_EUSAGE,
				"backend '%s' runs VMs on this host only: --connect '%s' means nothing to it",
				hv->ops.name, uri);
	return 0;
}

int vi_hv_probe(struct vi_hv *hv, const char *uri)
{
	const char *reason = NULL;
	int rc;

	if (hv->probed && hv->opened &&
	    ((!uri && !hv->uri) || (uri && hv->uri && !strcmp(uri, hv->uri))))
		return hv->probe;
	free(hv->reason);
	hv->reason = NULL;
	hv->probed = true;
	vi_error_clear();
	if (uri && !(hv->ops.features & VI_HV_F_REMOTE)) {
		/* No context answers for this URI: the next probe starts afresh. */
		close_ctx(hv);
		hv->probed = true;
		hv->probe = VI_HV_PROBE_DECLINED;
		hv->reason = xstrdup("runs VMs on this host only: a connection means nothing to it");
		return hv->probe;
	}
	if ((rc = open_ctx(hv, uri)) < 0) {
		hv->probe = VI_HV_PROBE_ERROR;
		hv->reason = xstrdup(vi_error_message());
		return hv->probe;
	}
	if (!hv->ops.probe) {
		hv->probe = VI_HV_PROBE_OK;
		return hv->probe;
	}
	hv->probe = hv->ops.probe(&hv->ctx, &reason);
	if (hv->probe < VI_HV_PROBE_OK || hv->probe > VI_HV_PROBE_EXPLICIT) {
		vi_error(VI_EFAIL, "plugin '%s' gave an unknown probe answer %d", hv->ops.name,
			 hv->probe);
		hv->probe = VI_HV_PROBE_ERROR;
	}
	if (hv->probe == VI_HV_PROBE_ERROR)
		hv->reason = xstrdup(*vi_error_message() ? vi_error_message() : "probe failed");
	else
		hv->reason = xstrdup(reason);
	vi_debug("probe of '%s'%s%s: %s%s%s", hv->ops.name, uri ? " at " : "", uri ? uri : "",
		 vi_hv_probe_name(hv->probe), hv->reason ? ", " : "", hv->reason ? hv->reason : "");
	return hv->probe;
}

bool vi_hv_usable(const struct vi_hv *hv)
{
	return hv->probed && (hv->probe == VI_HV_PROBE_OK || hv->probe == VI_HV_PROBE_EXPLICIT);
}

/* Whether a connection URI names the backend by its scheme, as
 * "qemu+ssh://host/system" names qemu. */
static bool uri_names(const char *uri, const char *name)
{
	size_t n = strlen(name);

	return !strncmp(uri, name, n) && (uri[n] == '+' || uri[n] == ':');
}

int vi_hv_choose(struct vi_hv_set *set, const char *name, const char *uri, struct vi_hv **out)
{
	static const char *const order[] = { "vtx", "svm", "qemu", "xen" };
	char *why = NULL;

	if (!set->scanned)
		vi_hv_scan(set);
	if (!name && uri)
		for (size_t i = 0; i < set->nfiles && !name; i++)
			if (uri_names(uri, set->files[i].name))
				name = set->files[i].name;
	if (name) {
		struct vi_hv *hv = vi_hv_find(set, name);
		if (!hv)
			return -vi_error_code();
		int p = vi_hv_check_uri(hv, uri);
		if (p < 0)
			return p;
		p = vi_hv_probe(hv, uri);
		if (p == VI_HV_PROBE_ERROR)
			return vi_error(VI_EFAIL, "backend '%s' failed its probe: %s", name,
					hv->reason ? hv->reason : "unknown error");
		/* A backend that declines the connection the user named has failed
		 * to connect; one that declines this host is unsupported here. */
		if (p == VI_HV_PROBE_DECLINED && uri)
			return vi_error(VI_EFAIL, "backend '%s' at '%s': %s", name, uri,
					hv->reason ? hv->reason : "declined");
		if (p == VI_HV_PROBE_DECLINED)
			return vi_error(VI_EUNSUPPORTED, "backend '%s' is not usable here: %s", name,
					hv->reason ? hv->reason : "declined");
		*out = hv;
		return 0;
	}
	/* None will do: each candidate's answer is the reason. */
	for (size_t i = 0; i < ARRAY_SIZE(order); i++) {
		struct vi_hv *hv = get(set, order[i]);
		if (!hv || (uri && !(hv->ops.features & VI_HV_F_REMOTE)))
			continue;
		if (vi_hv_probe(hv, uri) == VI_HV_PROBE_OK) {
			free(why);
			*out = hv;
			return 0;
		}
		bool explicit = hv->probe == VI_HV_PROBE_EXPLICIT;
		char *more = xasprintf("%s%s%s: %s%s%s%s", why ? why : "", why ? "; " : "",
				       hv->ops.name, explicit ? "only with --hv " : "",
				       explicit ? hv->ops.name : "", explicit && hv->reason ? ", " : "",
				       hv->reason ? hv->reason : explicit ? "" : "declined");
		free(why);
		why = more;
	}
	int rc = vi_error(VI_EUNSUPPORTED, "no usable backend %s%s%s (%s; see 'vi caps')",
			  uri ? "at '" : "here", uri ? uri : "", uri ? "'" : "",
			  why ? why : "none of vtx, svm, qemu and xen is installed");
	free(why);
	return rc;
}

int vi_hv_check_boot(const struct vi_hv *hv, const struct vi_hv_vm *vm)
{
	if (vm->kernel && !(hv->ops.features & VI_HV_F_DIRECT_BOOT))
		return vi_error(VI_EUNSUPPORTED,
				"backend '%s' boots from disks through firmware: VM '%s' names a kernel",
				hv->ops.name, vm->name);
	if (!vm->kernel && !(hv->ops.features & VI_HV_F_FIRMWARE_BOOT))
		return vi_error(VI_EUNSUPPORTED, "backend '%s' boots a kernel directly: VM '%s' has none",
				hv->ops.name, vm->name);
	return 0;
}

size_t vi_hv_caps(const struct vi_hv *hv, const char **names, size_t max)
{
	const struct vi_hv_ops *o = &hv->ops;
	const struct {
		bool on;
		const char *name;
	} caps[] = {
		{ o->features & VI_HV_F_DIRECT_BOOT, "direct-boot" },
		{ o->features & VI_HV_F_FIRMWARE_BOOT, "firmware-boot" },
		{ o->features & VI_HV_F_REMOTE, "remote" },
		{ o->start || o->run, "lifecycle" },
		{ o->pause && o->resume, "pause" },
		{ o->console, "console" },
		{ o->stats, "stats" },
		{ o->save && o->restore, "save-restore" },
		{ o->migrate_send && (o->migrate_recv || o->features & VI_HV_F_MIGRATE_URI),
		  "migrate" },
		{ o->set_vcpus, "grow-cpus" },
		{ o->set_memory, "grow-memory" },
		{ o->resize_disk, "grow-disk" },
		{ o->set_cpu_quota, "cpu-quota" },
		{ o->grow_fs, "grow-fs" },
		{ o->switch_disks, "live-clone" },
	};
	size_t n = 0;

	for (size_t i = 0; i < ARRAY_SIZE(caps) && n < max; i++)
		if (caps[i].on)
			names[n++] = caps[i].name;
	return n;
}

static int unsupported(const struct vi_hv *hv, const char *what)
{
	return vi_error(VI_EUNSUPPORTED, "backend '%s' does not support %s", hv->ops.name, what);
}

/* Every wrapper: make sure the context is open, refuse a NULL method in one
 * place, call through. */
#define HV_CALL(hv, method, what, ...)                                                         \
	do {                                                                                   \
		if (!(hv)->ops.method)                                                         \
			return unsupported((hv), (what));                                      \
		if (!(hv)->opened) {                                                           \
			int rc_ = open_ctx((hv), NULL);                                        \
			if (rc_ < 0)                                                           \
				return rc_;                                                    \
		}                                                                              \
		return (hv)->ops.method(&(hv)->ctx, __VA_ARGS__);                              \
	} while (0)

/* define and undefine may be NULL: the backend keeps no definition of its own. */
int vi_hv_define(struct vi_hv *hv, const struct vi_hv_vm *vm)
{
	if (!hv->ops.define)
		return 0;
	HV_CALL(hv, define, "defining VMs", vm);
}

int vi_hv_undefine(struct vi_hv *hv, const struct vi_hv_vm *vm)
{
	if (!hv->ops.undefine)
		return 0;
	HV_CALL(hv, undefine, "undefining VMs", vm);
}

int vi_hv_start(struct vi_hv *hv, const struct vi_hv_vm *vm)
{
	HV_CALL(hv, start, "starting VMs", vm);
}

int vi_hv_run(struct vi_hv *hv, const struct vi_hv_vm *vm, const struct vi_hv_run_opts *opts)
{
	HV_CALL(hv, run, "running VMs in-process", vm, opts);
}

int vi_hv_stop(struct vi_hv *hv, const struct vi_hv_vm *vm, unsigned flags, unsigned timeout_ms)
{
	HV_CALL(hv, stop, "stopping VMs", vm, flags, timeout_ms);
}

int vi_hv_pause(struct vi_hv *hv, const struct vi_hv_vm *vm)
{
	HV_CALL(hv, pause, "pause", vm);
}

int vi_hv_resume(struct vi_hv *hv, const struct vi_hv_vm *vm)
{
	HV_CALL(hv, resume, "resume", vm);
}

int vi_hv_state(struct vi_hv *hv, const struct vi_hv_vm *vm, struct vi_hv_state *out)
{
	memset(out, 0, sizeof(*out));
	out->struct_size = sizeof(*out);
	HV_CALL(hv, state, "reading VM state", vm, out);
}

int vi_hv_states(struct vi_hv *hv, const struct vi_hv_vm *const *vms, size_t n,
		 struct vi_hv_state *out)
{
	for (size_t i = 0; i < n; i++) {
		memset(&out[i], 0, sizeof(out[i]));
		out[i].struct_size = sizeof(out[i]);
		out[i].state = VI_HV_UNKNOWN;
	}
	if (!n)
		return 0;
	if (hv->ops.states) {
		int rc = hv->opened ? 0 : open_ctx(hv, NULL);
		if (rc == 0)
			rc = hv->ops.states(&hv->ctx, vms, n, out);
		return rc < 0 ? rc : 0;
	}
	for (size_t i = 0; i < n; i++)
		if (vi_hv_state(hv, vms[i], &out[i]) < 0) {
			out[i].state = VI_HV_UNKNOWN;
			vi_error_clear();
		}
	return 0;
}

int vi_hv_console(struct vi_hv *hv, const struct vi_hv_vm *vm, int in_fd, int out_fd, int escape)
{
	HV_CALL(hv, console, "consoles", vm, in_fd, out_fd, escape);
}

int vi_hv_stats(struct vi_hv *hv, const struct vi_hv_vm *vm, struct vi_hv_stats *out)
{
	memset(out, 0, sizeof(*out));
	out->struct_size = sizeof(*out);
	HV_CALL(hv, stats, "statistics", vm, out);
}

int vi_hv_save(struct vi_hv *hv, const struct vi_hv_vm *vm, const char *path, unsigned flags)
{
	HV_CALL(hv, save, "saving VM state", vm, path, flags);
}

int vi_hv_restore(struct vi_hv *hv, const struct vi_hv_vm *vm, const char *path, unsigned flags)
{
	HV_CALL(hv, restore, "restoring VM state", vm, path, flags);
}

int vi_hv_migrate_send(struct vi_hv *hv, const struct vi_hv_vm *vm, const struct vi_hv_migrate *m)
{
	HV_CALL(hv, migrate_send, "migration", vm, m);
}

int vi_hv_migrate_recv(struct vi_hv *hv, const struct vi_hv_vm *vm, const struct vi_hv_migrate *m)
{
	HV_CALL(hv, migrate_recv, "migration", vm, m);
}

int vi_hv_net_up(struct vi_hv *hv, const char *name, const char *cidr)
{
	HV_CALL(hv, net_up, "private networks", name, cidr);
}

int vi_hv_net_down(struct vi_hv *hv, const char *name)
{
	HV_CALL(hv, net_down, "private networks", name);
}

int vi_hv_migrate_check(struct vi_hv *hv, const struct vi_hv_vm *vm, const char *dest_uri,
			vi_hv_check_fn line, void *opaque)
{
	if (!hv->ops.migrate_check)
		return 0;
	HV_CALL(hv, migrate_check, "migration checks", vm, dest_uri, line, opaque);
}

int vi_hv_set_vcpus(struct vi_hv *hv, const struct vi_hv_vm *vm, unsigned n)
{
	HV_CALL(hv, set_vcpus, "changing the number of vCPUs", vm, n);
}

int vi_hv_set_memory(struct vi_hv *hv, const struct vi_hv_vm *vm, uint64_t bytes)
{
	HV_CALL(hv, set_memory, "changing memory", vm, bytes);
}

int vi_hv_resize_disk(struct vi_hv *hv, const struct vi_hv_vm *vm, size_t disk, uint64_t bytes)
{
	HV_CALL(hv, resize_disk, "resizing disks", vm, disk, bytes);
}

int vi_hv_set_cpu_quota(struct vi_hv *hv, const struct vi_hv_vm *vm, unsigned percent)
{
	HV_CALL(hv, set_cpu_quota, "CPU quotas", vm, percent);
}

int vi_hv_grow_fs(struct vi_hv *hv, const struct vi_hv_vm *vm, size_t disk, unsigned flags,
		  struct vi_hv_fs_info *out)
{
	memset(out, 0, sizeof(*out));
	out->struct_size = sizeof(*out);
	HV_CALL(hv, grow_fs, "growing a running guest's file system", vm, disk, flags, out);
}

int vi_hv_switch_disks(struct vi_hv *hv, const struct vi_hv_vm *vm, const char *const *overlays)
{
	HV_CALL(hv, switch_disks, "moving a running VM's disks onto new overlays", vm, overlays);
}

int vi_hv_forward_add(struct vi_hv *hv, const struct vi_hv_vm *vm, size_t nic,
		      const struct vi_hv_forward *f)
{
	HV_CALL(hv, forward_add, "port forwards on a running VM", vm, nic, f);
}

int vi_hv_forward_remove(struct vi_hv *hv, const struct vi_hv_vm *vm, size_t nic,
			 const struct vi_hv_forward *f)
{
	HV_CALL(hv, forward_remove, "port forwards on a running VM", vm, nic, f);
}

int vi_hv_nic_address(struct vi_hv *hv, const struct vi_hv_vm *vm, size_t nic, char *buf,
		      size_t len)
{
	HV_CALL(hv, nic_address, "reading a guest's address", vm, nic, buf, len);
}

int vi_hv_dirty_rate(struct vi_hv *hv, const struct vi_hv_vm *vm, unsigned ms,
		     uint64_t *bytes_per_s)
{
	HV_CALL(hv, dirty_rate, "measuring how fast a guest dirties its memory", vm, ms,
		bytes_per_s);
}

const char *vi_hv_state_name(int state)
{
	switch (state) {
	case VI_HV_STOPPED:
		return "stopped";
	case VI_HV_RUNNING:
		return "running";
	case VI_HV_PAUSED:
		return "paused";
	case VI_HV_SHUTTING_DOWN:
		return "shutting-down";
	case VI_HV_CRASHED:
		return "crashed";
	case VI_HV_UNDEFINED:
		return "undefined";
	default:
		return "unknown";
	}
}

const char *vi_hv_probe_name(int probe)
{
	switch (probe) {
	case VI_HV_PROBE_OK:
		return "ok";
	case VI_HV_PROBE_EXPLICIT:
		return "explicit";
	case VI_HV_PROBE_DECLINED:
		return "declined";
	default:
		return "error";
	}
}
