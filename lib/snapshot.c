/* Snapshots of machines: the DAG in the store, over the layer store. */
#include "snapshot.h"
#include "error.h"
#include "image/image.h"
#include "layers.h"
#include "log.h"
#include "ops.h"
#include "progress.h"
#include "util.h"
#include "yaml-doc.h"

#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SNAPSHOT_SCHEMA 1
#define MEMORY_FILE "memory.state"

static char *snap_dir(const struct vi_store *s, const char *vm, const char *name)
{
	return vi_store_path(s, "vms/%s/snapshots/%s", vm, name);
}

static char *snap_file(const struct vi_store *s, const char *vm, const char *name,
		       const char *file)
{
	return vi_store_path(s, "vms/%s/snapshots/%s/%s", vm, name, file);
}

static char *snap_ref(const char *vm, const char *name)
{
	return xasprintf("snapshot:%s/%s", vm, name);
}

void vi_snapshot_ref_split(const char *ref, char **vm, char **snap)
{
	const char *at = strchr(ref, '@');

	*vm = at ? xstrndup(ref, (size_t)(at - ref)) : xstrdup(ref);
	*snap = at ? xstrdup(at + 1) : NULL;
}

/* --- meta.yaml ------------------------------------------------------------------ */

/* What tells the memory file at path from any other, or from itself changed: its
 * inode, size and change time, which every write moves on and no tool sets back.
 * NULL when it cannot be read. */
static char *memory_id(const char *path)
{
	struct stat st;

	if (stat(path, &st) < 0)
		return NULL;
	return xasprintf("%llu %lld %lld.%09ld", (unsigned long long)st.st_ino,
			 (long long)st.st_size, (long long)st.st_ctim.tv_sec, st.st_ctim.tv_nsec);
}

/* Whether the memory of snap is the file that was written for it: then its
 * pages need not be read to check them before the guest runs. */
static bool memory_unchanged(const struct vi_snapshot *snap, const char *path)
{
	char *now = snap->memory_id ? memory_id(path) : NULL;
	bool same = now && !strcmp(now, snap->memory_id);

	free(now);
	return same;
}

static int meta_save(const char *path, const struct vi_snapshot *snap)
{
	struct vi_yaml_out o;

	vi_yaml_out_init(&o);
	vi_yaml_out_map_start(&o);
	vi_yaml_out_uint(&o, "schema", SNAPSHOT_SCHEMA);
	vi_yaml_out_str(&o, "name", snap->name);
	vi_yaml_out_str(&o, "parent", snap->parent);
	vi_yaml_out_uint(&o, "created", (uint64_t)snap->created);
	vi_yaml_out_str(&o, "message", snap->message);
	vi_yaml_out_str(&o, "state", snap->state);
	vi_yaml_out_bool(&o, "memory", snap->memory);
	if (snap->memory_id)
		vi_yaml_out_str(&o, "memory_id", snap->memory_id);
	if (snap->automatic)
		vi_yaml_out_bool(&o, "automatic", true);
	vi_yaml_out_scalar(&o, "disks");
	vi_yaml_out_seq_start(&o);
	for (size_t i = 0; i < snap->ndisks; i++) {
		const struct vi_snapshot_disk *d = &snap->disks[i];
		vi_yaml_out_map_start(&o);
		vi_yaml_out_str(&o, "backing", d->backing);
		vi_yaml_out_str(&o, "layer", d->layer);
		vi_yaml_out_str(&o, "format", vi_disk_format_name(d->format));
		if (d->readonly)
			vi_yaml_out_bool(&o, "readonly", true);
		vi_yaml_out_end(&o);
	}
	vi_yaml_out_end(&o);
	vi_yaml_out_end(&o);
	return vi_yaml_out_save(&o, path, 0600);
}

static int meta_disks(struct vi_yaml *y, yaml_node_t *list, struct vi_snapshot *snap)
{
	static const char *const keys[] = { "backing", "layer", "format", "readonly" };
	yaml_node_t *item;
	int rc;

	if (list->type != YAML_SEQUENCE_NODE)
		return vi_yaml_error(y, list, VI_EUSAGE, "'disks' must be a list");
	snap->disks = xcalloc((size_t)(list->data.sequence.items.top -
				       list->data.sequence.items.start) + 1,
			      sizeof(*snap->disks));
	vi_yaml_seq_foreach(y, list, item)
	{
		struct vi_snapshot_disk *d = &snap->disks[snap->ndisks++];
		char *format = NULL;
		if ((rc = vi_yaml_expect_map(y, item, "a snapshot disk")) < 0 ||
		    (rc = vi_yaml_check_keys(y, item, keys, ARRAY_SIZE(keys))) < 0 ||
		    (rc = vi_yaml_dup_str(y, item, "backing", true, &d->backing)) < 0 ||
		    (rc = vi_yaml_dup_str(y, item, "layer", false, &d->layer)) < 0 ||
		    (rc = vi_yaml_dup_str(y, item, "format", false, &format)) < 0 ||
		    (rc = vi_yaml_get_bool(y, item, "readonly", false, &d->readonly)) < 0)
			return rc;
		d->format = VI_DISK_QCOW2;
		rc = format ? vi_disk_format_parse(format, &d->format) : 0;
		free(format);
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int meta_load(const char *path, struct vi_snapshot *snap)
{
	static const char *const keys[] = { "schema", "name",  "parent", "created",  "message",
					    "state",  "memory", "disks",  "automatic", "memory_id" };
	struct vi_yaml y;
	yaml_node_t *root, *n;
	uint64_t created = 0;
	int rc;

	if ((rc = vi_yaml_load_file(&y, path)) < 0)
		return rc;
	root = vi_yaml_root(&y);
	if ((rc = vi_yaml_expect_map(&y, root, "a snapshot")) < 0 ||
	    (rc = vi_yaml_check_keys(&y, root, keys, ARRAY_SIZE(keys))) < 0 ||
	    (rc = vi_yaml_check_schema(&y, root, SNAPSHOT_SCHEMA)) < 0 ||
	    (rc = vi_yaml_dup_str(&y, root, "parent", false, &snap->parent)) < 0 ||
	    (rc = vi_yaml_dup_str(&y, root, "message", false, &snap->message)) < 0 ||
	    (rc = vi_yaml_dup_str(&y, root, "state", true, &snap->state)) < 0 ||
	    (rc = vi_yaml_get_bool(&y, root, "memory", false, &snap->memory)) < 0 ||
	    (rc = vi_yaml_dup_str(&y, root, "memory_id", false, &snap->memory_id)) < 0 ||
	    (rc = vi_yaml_get_bool(&y, root, "automatic", false, &snap->automatic)) < 0 ||
	    (rc = vi_yaml_get_uint(&y, root, "created", false, 0, INT64_MAX, &created)) < 0)
		goto out;
	snap->created = (time_t)created;
	rc = (n = vi_yaml_get(&y, root, "disks")) ? meta_disks(&y, n, snap) : 0;
out:
	vi_yaml_release(&y);
	return rc < 0 ? rc : 0;
}

void vi_snapshot_release(struct vi_snapshot *snap)
{
	free(snap->memory_id);
	for (size_t i = 0; i < snap->ndisks; i++) {
		free(snap->disks[i].backing);
		free(snap->disks[i].layer);
	}
	free(snap->disks);
	free(snap->vm);
	free(snap->name);
	free(snap->parent);
	free(snap->message);
	free(snap->state);
	vi_vm_release(&snap->def);
	memset(snap, 0, sizeof(*snap));
}

void vi_snapshots_free(struct vi_snapshot *snaps, size_t n)
{
	for (size_t i = 0; i < n; i++)
		vi_snapshot_release(&snaps[i]);
	free(snaps);
}

static uint64_t disk_usage(const char *path)
{
	struct stat st;

	return path && stat(path, &st) == 0 ? (uint64_t)st.st_blocks * 512 : 0;
}

int vi_snapshot_load(const struct vi_store *s, const char *vm, const char *name,
		     struct vi_snapshot *snap)
{
	char *dir = snap_dir(s, vm, name), *meta = NULL, *def = NULL, *mem = NULL;
	int rc;

	memset(snap, 0, sizeof(*snap));
	if (vi_check_name(name, "snapshot") < 0 || !vi_file_exists(dir)) {
		vi_error_clear();
		rc = vi_error(VI_ENOTFOUND, "VM '%s' has no snapshot '%s'", vm, name);
		goto out;
	}
	meta = xasprintf("%s/meta.yaml", dir);
	def = xasprintf("%s/vm.yaml", dir);
	snap->vm = xstrdup(vm);
	snap->name = xstrdup(name);
	if ((rc = meta_load(meta, snap)) < 0 || (rc = vi_vm_load(def, &snap->def)) < 0)
		goto out;
	mem = xasprintf("%s/%s", dir, MEMORY_FILE);
	if (snap->memory && !vi_file_exists(mem)) {
		rc = vi_error(VI_EFAIL, "snapshot '%s' of VM '%s' has lost its memory state '%s'",
			      name, vm, mem);
		goto out;
	}
	/* What it alone holds: the layers it froze (not those it shares with
	 * its parent) and its memory. */
	struct vi_snapshot parent = { 0 };
	bool have_parent = false;
	if (snap->parent) {
		char *pmeta = snap_file(s, vm, snap->parent, "meta.yaml");
		have_parent = meta_load(pmeta, &parent) == 0;
		free(pmeta);
		vi_error_clear();
	}
	snap->size = snap->memory ? disk_usage(mem) : 0;
	for (size_t i = 0; i < snap->ndisks; i++) {
		const struct vi_snapshot_disk *d = &snap->disks[i];
		bool shared = !d->layer || d->readonly;
		for (size_t j = 0; have_parent && !shared && j < parent.ndisks; j++)
			shared = parent.disks[j].layer && !strcmp(parent.disks[j].layer, d->layer);
		if (!shared)
			snap->size += disk_usage(d->backing);
	}
	vi_snapshot_release(&parent);
out:
	if (rc < 0)
		vi_snapshot_release(snap);
	free(dir);
	free(meta);
	free(def);
	free(mem);
	return rc;
}

static int cmp_created(const void *a, const void *b)
{
	const struct vi_snapshot *x = a, *y = b;

	if (x->created != y->created)
		return x->created < y->created ? -1 : 1;
	return strcmp(x->name, y->name);
}

int vi_snapshot_list(const struct vi_store *s, const char *vm, struct vi_snapshot **snaps,
		     size_t *n)
{
	char *dir = vi_store_path(s, "vms/%s/snapshots", vm);
	DIR *d = opendir(dir);
	struct dirent *e;
	int rc = 0;

	*snaps = NULL;
	*n = 0;
	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		*snaps = xrealloc(*snaps, (*n + 1) * sizeof(**snaps));
		if ((rc = vi_snapshot_load(s, vm, e->d_name, &(*snaps)[*n])) < 0)
			break;
		(*n)++;
	}
	if (d)
		closedir(d);
	free(dir);
	if (rc < 0) {
		vi_snapshots_free(*snaps, *n);
		*snaps = NULL;
		*n = 0;
		return rc;
	}
	if (*n)
		qsort(*snaps, *n, sizeof(**snaps), cmp_created);
	return 0;
}

/* What a killed create or delete of VM vm's snapshots left: .NAME.PID being
 * written, .NAME.deleted.PID being removed, of commands no longer running. */
static void clear_dead(const struct vi_store *s, const char *vm)
{
	char *dir = vi_store_path(s, "vms/%s/snapshots", vm);

	vi_clear_dead(dir, ".");
	free(dir);
}

/* --- create --------------------------------------------------------------------- */

/* Progress of a memory save on a terminal, from the size of the file as the
 * backend writes it: whatever the backend, nothing to ask it. The watcher is
 * woken the moment the save ends: the guest may still be waiting to resume. */
struct save_watch {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t wake;
	bool stop;
	const char *path;
	struct vi_progress progress;
};

static void *save_watch_run(void *opaque)
{
	struct save_watch *w = opaque;

	pthread_mutex_lock(&w->lock);
	while (!w->stop) {
		struct timespec until;
		struct stat st;
		pthread_mutex_unlock(&w->lock);
		if (stat(w->path, &st) == 0)
			vi_progress_update(&w->progress, (uint64_t)st.st_size);
		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_nsec += 50000000;
		if (until.tv_nsec >= 1000000000) {
			until.tv_sec++;
			until.tv_nsec -= 1000000000;
		}
		pthread_mutex_lock(&w->lock);
		if (!w->stop)
			pthread_cond_timedwait(&w->wake, &w->lock, &until);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

static int save_memory(struct vi_machine *m, const char *path)
{
	struct save_watch w = { .path = path, .lock = PTHREAD_MUTEX_INITIALIZER,
				.wake = PTHREAD_COND_INITIALIZER };
	bool watching;
	int rc;

	vi_progress_start(&w.progress, 0, "saving the memory of VM '%s'", m->def.name);
	/* Nothing to draw off a terminal: no watcher. */
	watching = w.progress.shown && pthread_create(&w.thread, NULL, save_watch_run, &w) == 0;
	rc = vi_hv_save(m->hv, &m->view.vm, path, VI_HV_SAVE_LIVE | VI_HV_SAVE_NOSYNC);
	if (watching) {
		pthread_mutex_lock(&w.lock);
		w.stop = true;
		pthread_cond_signal(&w.wake);
		pthread_mutex_unlock(&w.lock);
		pthread_join(w.thread, NULL);
	}
	vi_progress_end(&w.progress);
	return rc;
}

static char *generate_name(const struct vi_store *s, const char *vm)
{
	for (;;) {
		char hex[8];
		vi_random_hex(hex, 3);
		char *name = xasprintf("s%s", hex);
		char *dir = snap_dir(s, vm, name);
		bool taken = vi_file_exists(dir);
		free(dir);
		if (!taken)
			return name;
		free(name);
	}
}

/* What disk i of m now reads frozen, as the snapshot records it. */
static void record_disk(const struct vi_store *s, const struct vi_vm_disk *d, const char *backing,
			struct vi_snapshot_disk *out)
{
	out->backing = xstrdup(backing);
	out->layer = vi_layer_id_of(s, backing);
	out->readonly = d->readonly;
	out->format = d->readonly ? d->format : VI_DISK_QCOW2;
	if (!d->readonly && !out->layer) {
		int format = IMAGE_PROBE;
		out->format = image_probe(backing, &format) == 0 && format == IMAGE_RAW
				      ? VI_DISK_RAW
				      : VI_DISK_QCOW2;
		vi_error_clear();
	}
}

static const char *state_word(int state)
{
	return state == VI_HV_RUNNING ? "running" : state == VI_HV_PAUSED ? "paused" : "stopped";
}

int vi_snapshot_create(const struct vi_store *s, struct vi_machine *m,
		       struct vi_snapshot_spec *sp, char **name_out)
{
	struct vi_snapshot snap = { 0 };
	struct vi_layer_index idx;
	struct vi_hv_state st;
	char *name, *final = NULL, *tmp = NULL, **layers = NULL, *ref = NULL;
	bool paused_here = false, refs_written = false;
	double paused_at = 0;
	int rc;

	*name_out = NULL;
	sp->paused_ms = 0;
	clear_dead(s, m->def.name);
	if (sp->name) {
		if ((rc = vi_check_name(sp->name, "snapshot")) < 0)
			return rc;
		char *dir = snap_dir(s, m->def.name, sp->name);
		bool taken = vi_file_exists(dir);
		free(dir);
		if (taken)
			return vi_error(VI_ESTATE, "VM '%s' already has a snapshot '%s'", m->def.name,
					sp->name);
	}
	if (!m->hv)
		return vi_error(VI_EUNSUPPORTED, "VM '%s' cannot be snapshotted: %s", m->def.name,
				m->hv_problem ? m->hv_problem : "no backend");
	int state = vi_machine_state(m, &st);
	bool active = vi_hv_state_active(state);
	bool memory = active && !sp->disk_only;
	if (state == VI_HV_UNKNOWN || state == VI_HV_SHUTTING_DOWN || state == VI_HV_CRASHED)
		return vi_error(VI_ESTATE, "VM '%s' is %s: stop it first", m->def.name,
				vi_hv_state_name(state));
	/* Refused before anything is written. */
	if (memory && !m->hv->ops.save)
		return vi_error(VI_EUNSUPPORTED,
				"backend '%s' does not support saving VM state: take a disk-only snapshot "
				"(--disk-only) or stop VM '%s' first",
				m->hv->ops.name, m->def.name);
	if (active && !m->hv->ops.switch_disks)
		return vi_error(VI_EUNSUPPORTED,
				"backend '%s' cannot snapshot the disks of a running VM: stop VM '%s' first",
				m->hv->ops.name, m->def.name);
	if ((rc = vi_layers_open(s, &idx)) < 0)
		return rc;
	name = sp->name ? xstrdup(sp->name) : generate_name(s, m->def.name);
	final = snap_dir(s, m->def.name, name);
	tmp = vi_store_path(s, "vms/%s/snapshots/.%s.%d", m->def.name, name, (int)getpid());
	ref = snap_ref(m->def.name, name);
	vi_rm_rf(tmp);
	if ((rc = vi_mkdir_p(tmp, 0711)) < 0)
		goto fail;

	/* One instant for disks and memory: the guest waits while both are taken,
	 * from just before its disks move. */
	layers = xcalloc(m->def.ndisks + 1, sizeof(char *));
	if ((rc = vi_op_freeze(s, m, &idx, layers, memory ? &paused_at : NULL, "snapshot")) < 0)
		goto fail;
	paused_here = memory && state == VI_HV_RUNNING;
	vi_vm_hv_release(&m->view);
	vi_vm_hv_init(&m->view, &m->def, m->dir);
	char *mem = xasprintf("%s/%s", tmp, MEMORY_FILE);
	if (memory && (rc = save_memory(m, mem)) < 0)
		vi_error_wrap("cannot save the memory of VM '%s'", m->def.name);
	if (rc == 0 && paused_here) {
		paused_here = false;
		rc = vi_hv_resume(m->hv, &m->view.vm);
		sp->paused_ms = vi_ms_since(paused_at);
	}
	/* On disk once the guest goes on: the snapshot is not there before. */
	if (rc == 0 && memory)
		rc = vi_fsync_path(mem);
	if (rc == 0 && memory)
		snap.memory_id = memory_id(mem);
	free(mem);
	if (rc < 0)
		goto fail;

	snap.name = name;
	snap.parent = m->def.snapshot;
	snap.message = (char *)sp->message;
	snap.state = (char *)state_word(state);
	snap.memory = memory;
	snap.automatic = sp->automatic;
	snap.created = time(NULL);
	snap.disks = xcalloc(m->def.ndisks + 1, sizeof(*snap.disks));
	for (size_t i = 0; i < m->def.ndisks; i++)
		record_disk(s, &m->def.disks[i], layers[i], &snap.disks[snap.ndisks++]);
	/* The index knows the snapshot reads its layers before it exists. */
	for (size_t i = 0; i < snap.ndisks; i++)
		if (snap.disks[i].layer)
			vi_layer_ref(&idx, snap.disks[i].layer, ref);
	refs_written = true;
	if ((rc = vi_layers_write(s, &idx)) < 0)
		goto fail;
	{
		char *meta = xasprintf("%s/meta.yaml", tmp), *def = xasprintf("%s/vm.yaml", tmp);
		struct vi_vm then = m->def;
		then.snapshot = NULL;
		rc = meta_save(meta, &snap);
		if (rc == 0)
			rc = vi_vm_save(def, &then);
		free(meta);
		free(def);
	}
	if (rc < 0)
		goto fail;
	if (rename(tmp, final) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot make snapshot '%s'", final);
		goto fail;
	}
	/* HEAD moves to it. */
	free(m->def.snapshot);
	m->def.snapshot = xstrdup(name);
	if ((rc = vi_store_save_vm(s, &m->def)) < 0)
		goto done;
	rc = vi_layers_commit(s, &idx);
	*name_out = name;
	name = NULL;
	goto out;
fail:
	if (paused_here) {
		struct vi_error_saved e;
		vi_error_save(&e);
		vi_hv_resume(m->hv, &m->view.vm);
		vi_error_restore(&e);
	}
	vi_rm_rf(tmp);
	if (refs_written)
		for (size_t i = 0; i < snap.ndisks; i++)
			if (snap.disks[i].layer)
				vi_layer_unref(&idx, snap.disks[i].layer, ref);
done:
	vi_layers_commit_anyway(s, &idx);
out:
	for (size_t i = 0; i < snap.ndisks; i++) {
		free(snap.disks[i].backing);
		free(snap.disks[i].layer);
	}
	free(snap.disks);
	free(snap.memory_id);
	for (size_t i = 0; layers && i < m->def.ndisks; i++)
		free(layers[i]);
	free(layers);
	free(name);
	free(final);
	free(tmp);
	free(ref);
	return rc;
}

/* --- checkout ------------------------------------------------------------------- */

/* Whether m's current state holds nothing its snapshot lacks: stopped, on
 * its snapshot, and no disk written since. */
static bool nothing_to_keep(const struct vi_machine *m)
{
	if (!m->def.snapshot)
		return false;
	for (size_t i = 0; i < m->def.ndisks; i++)
		if (!m->def.disks[i].readonly &&
		    vi_image_unwritten(m->view.disks[i].path, IMAGE_OPEN_SHARED, NULL) != 1) {
			vi_error_clear();
			return false;
		}
	return true;
}

/* The definition m takes on at checkout: the snapshot's, the same VM, its
 * disks new overlays (made here) on the snapshot's images. */
static int checkout_definition(const struct vi_machine *m, struct vi_snapshot *snap,
			       struct vi_vm *out, char ***made, size_t *nmade)
{
	int rc = 0;

	*out = snap->def;
	memset(&snap->def, 0, sizeof(snap->def));
	free(out->snapshot);
	out->snapshot = xstrdup(snap->name);
	*made = xcalloc(out->ndisks + 1, sizeof(char *));
	*nmade = 0;
	for (size_t i = 0; rc == 0 && i < out->ndisks && i < snap->ndisks; i++) {
		struct vi_vm_disk *d = &out->disks[i];
		const struct vi_snapshot_disk *sd = &snap->disks[i];
		free(d->layer);
		d->layer = NULL;
		if (sd->readonly) {
			free(d->path);
			d->path = xstrdup(sd->backing);
			d->format = sd->format;
			d->readonly = true;
			continue;
		}
		char *path = vi_layer_overlay_name(m->dir, d->path);
		if ((rc = vi_layer_overlay(path, sd->backing)) < 0) {
			free(path);
			break;
		}
		(*made)[(*nmade)++] = xstrdup(path);
		free(d->path);
		d->path = xasprintf("disks/%s", path + strlen(m->dir) + strlen("/disks/"));
		d->format = VI_DISK_QCOW2;
		d->layer = sd->layer ? xstrdup(sd->layer) : NULL;
		free(path);
	}
	return rc;
}

/* Drops the references vm's disks hold (its snapshots' stay). */
static void unref_disks(struct vi_layer_index *idx, const struct vi_vm *vm)
{
	char *ref = xasprintf("vm:%s", vm->name);

	for (size_t i = 0; i < vm->ndisks; i++)
		if (vm->disks[i].layer)
			vi_layer_unref(idx, vm->disks[i].layer, ref);
	free(ref);
}

/* Takes back a checkout before vm.yaml names its disks (or once it names the
 * old ones again): the new overlays go, m's disks keep their references. */
static void undo_checkout(const struct vi_store *s, struct vi_layer_index *idx,
			  const struct vi_machine *m, const struct vi_vm *def, char **made,
			  size_t nmade)
{
	for (size_t i = 0; i < nmade; i++)
		unlink(made[i]);
	unref_disks(idx, def);
	vi_layers_ref_vm(idx, &m->def);
	vi_layers_commit_anyway(s, idx);
}

/* Resumes VM vm from the automatic snapshot *saved (its disks are the VM's
 * again) and deletes that snapshot; *saved becomes NULL once it is gone. */
static void resume_kept(const struct vi_store *s, struct vi_hv_set *plugins, const char *vm,
			char **saved)
{
	struct vi_snapshot kept;
	struct vi_machine now;

	if (vi_snapshot_load(s, vm, *saved, &kept) < 0)
		return;
	if (vi_machine_open(s, plugins, vm, NULL, true, &now) == 0) {
		char *mem = snap_file(s, vm, *saved, MEMORY_FILE);
		if (kept.memory)
			vi_hv_restore(now.hv, &now.view.vm, mem,
				      !strcmp(kept.state, "paused") ? VI_HV_RUN_PAUSED : 0);
		if (vi_snapshot_delete(s, &now, *saved) == 0) {
			free(*saved);
			*saved = NULL;
		}
		free(mem);
		vi_machine_release(&now);
	}
	vi_snapshot_release(&kept);
}

/* The syncs vi_sync_defer() put off: a failure is told, not returned, as what
 * was written is in place and the error (rc < 0) or the guest goes on. */
static void flush_synced(int rc)
{
	struct vi_error_saved e;

	if (rc < 0)
		vi_error_save(&e);
	if (vi_sync_flush() < 0)
		vi_warn("%s", vi_error_message());
	if (rc < 0)
		vi_error_restore(&e);
}

int vi_snapshot_checkout(const struct vi_store *s, struct vi_hv_set *plugins,
			 struct vi_machine *m, const char *name, bool discard, char **saved)
{
	struct vi_snapshot snap;
	struct vi_layer_index idx;
	struct vi_hv_state st;
	struct vi_vm def = { 0 }, old = { 0 };
	char **made = NULL, *mem = NULL, *vm_name = xstrdup(m->def.name);
	size_t nmade = 0;
	bool switched = false, replace = false;
	int rc;

	*saved = NULL;
	clear_dead(s, m->def.name);
	if ((rc = vi_snapshot_load(s, m->def.name, name, &snap)) < 0)
		goto out_name;
	if (!m->hv) {
		rc = vi_error(VI_EUNSUPPORTED, "VM '%s' cannot be checked out: %s", m->def.name,
			      m->hv_problem ? m->hv_problem : "no backend");
		goto out_snap;
	}
	if (snap.memory && !m->hv->ops.restore) {
		rc = vi_error(VI_EUNSUPPORTED,
			      "backend '%s' does not support restoring VM state: snapshot '%s' "
			      "holds memory",
			      m->hv->ops.name, name);
		goto out_snap;
	}
	if (snap.ndisks != snap.def.ndisks) {
		rc = vi_error(VI_EFAIL, "snapshot '%s' of VM '%s' records %zu disks for %zu", name,
			      m->def.name, snap.ndisks, snap.def.ndisks);
		goto out_snap;
	}
	/* A backend that can puts the snapshot's guest in place of the running one
	 * (or starts it, when none runs); others start afresh. What is there need
	 * not be known when it is discarded anyway. */
	bool in_place = snap.memory && (m->hv->ops.features & VI_HV_F_RESTORE_RUNNING);
	int state = discard && in_place ? VI_HV_UNKNOWN : vi_machine_state(m, &st);
	/* What would be lost becomes a snapshot first. */
	if (!discard && (vi_hv_state_active(state) || !nothing_to_keep(m))) {
		struct vi_snapshot_spec keep = { .automatic = true };
		char *msg = xasprintf("state before checkout of %s", name);
		keep.message = msg;
		rc = vi_snapshot_create(s, m, &keep, saved);
		free(msg);
		if (rc < 0) {
			vi_error_wrap("cannot keep the current state of VM '%s'", m->def.name);
			goto out_snap;
		}
		state = vi_machine_state(m, &st);
	}
	replace = in_place && (discard || vi_hv_state_active(state));
	if (vi_hv_state_active(state) && !replace &&
	    (rc = vi_hv_stop(m->hv, &m->view.vm, VI_HV_STOP_FORCE, 0)) < 0)
		goto out_snap;
	/* The guest waits for the new definition to be written: synced once it runs. */
	if (replace)
		vi_sync_defer();
	if ((rc = vi_layers_open(s, &idx)) < 0)
		goto out_snap;
	if ((rc = checkout_definition(m, &snap, &def, &made, &nmade)) < 0)
		goto fail;
	/* The index knows what the VM reads before vm.yaml says so. */
	vi_layers_ref_vm(&idx, &def);
	if ((rc = vi_layers_write(s, &idx)) < 0)
		goto fail;
	{
		struct vi_vm_hv view;
		vi_vm_hv_init(&view, &def, m->dir);
		rc = vi_hv_define(m->hv, &view.vm);
		vi_vm_hv_release(&view);
	}
	if (rc < 0 || (rc = vi_store_save_vm(s, &def)) < 0)
		goto fail;
	switched = true;
	/* The guest resumes before the state it replaces is forgotten: if it
	 * cannot, the VM goes back to that state. */
	if (snap.memory) {
		struct vi_machine now;
		mem = snap_file(s, vm_name, name, MEMORY_FILE);
		if ((rc = vi_machine_open(s, plugins, vm_name, NULL, true, &now)) == 0) {
			unsigned flags = (!strcmp(snap.state, "paused") ? VI_HV_RUN_PAUSED : 0) |
					 (replace ? VI_HV_RUN_REPLACE : 0) |
					 (memory_unchanged(&snap, mem) ? VI_HV_RUN_UNCHECKED : 0);
			rc = vi_hv_restore(now.hv, &now.view.vm, mem, flags);
			vi_machine_release(&now);
		}
		if (replace)
			flush_synced(rc);
		if (rc < 0) {
			vi_error_wrap("cannot resume VM '%s' from snapshot '%s'", vm_name, name);
			goto back;
		}
	}
	/* The old overlays: their data is in the automatic snapshot, or discarded. */
	old = m->def;
	m->def = def;
	memset(&def, 0, sizeof(def));
	unref_disks(&idx, &old);
	vi_layers_ref_vm(&idx, &m->def);
	for (size_t i = 0; i < old.ndisks; i++) {
		if (old.disks[i].readonly || strncmp(old.disks[i].path, "disks/", 6))
			continue;
		bool kept = false;
		for (size_t j = 0; j < m->def.ndisks && !kept; j++)
			kept = !strcmp(m->def.disks[j].path, old.disks[i].path);
		if (!kept) {
			char *p = xasprintf("%s/%s", m->dir, old.disks[i].path);
			unlink(p);
			free(p);
		}
	}
	rc = vi_layers_commit(s, &idx);
	goto reopen;
back: {
	/* The definition and disks it had, and the guest as the automatic
	 * snapshot kept it. */
	struct vi_error_saved e;
	struct vi_vm_hv view;
	vi_error_save(&e);
	vi_vm_hv_init(&view, &m->def, m->dir);
	if (vi_hv_define(m->hv, &view.vm) == 0 && vi_store_save_vm(s, &m->def) == 0)
		switched = false;
	vi_vm_hv_release(&view);
	vi_error_restore(&e);
}
	if (switched) {
		/* The VM is on the snapshot, stopped: say why. */
		vi_layers_commit_anyway(s, &idx);
		goto reopen;
	}
	undo_checkout(s, &idx, m, &def, made, nmade);
	/* The state the automatic snapshot kept runs again, and the snapshot,
	 * made for nothing, goes. */
	if (*saved) {
		struct vi_error_saved e;
		vi_error_save(&e);
		resume_kept(s, plugins, vm_name, saved);
		vi_error_restore(&e);
	}
reopen:
	/* The machine as it is now, for the caller. */
	vi_machine_release(m);
	{
		struct vi_error_saved e;
		vi_error_save(&e);
		int orc = vi_machine_open(s, plugins, vm_name, NULL, true, m);
		if (rc == 0)
			rc = orc;
		else
			vi_error_restore(&e);
	}
	goto out_snap;
fail:
	undo_checkout(s, &idx, m, &def, made, nmade);
out_snap:
	if (replace)
		flush_synced(rc);
	for (size_t i = 0; i < nmade; i++)
		free(made[i]);
	free(made);
	free(mem);
	vi_vm_release(&def);
	vi_vm_release(&old);
	vi_snapshot_release(&snap);
out_name:
	free(vm_name);
	return rc;
}

/* --- delete --------------------------------------------------------------------- */

/* The clone (another VM) that reads layer id, or NULL. */
static const char *reader_clone(struct vi_layer_index *idx, const char *id, const char *vm)
{
	struct vi_layer *l = vi_layer_find(idx, id);

	for (size_t i = 0; l && i < l->nrefs; i++)
		if (!strncmp(l->refs[i], "vm:", 3) && strcmp(l->refs[i] + 3, vm))
			return l->refs[i] + 3;
	for (size_t k = 0; k < idx->n; k++)
		if (idx->layers[k].parent && !strcmp(idx->layers[k].parent, id)) {
			const char *c = reader_clone(idx, idx->layers[k].id, vm);
			if (c)
				return c;
		}
	return NULL;
}

/* Merges layer id, which only its one child reads now, into that child:
 * the child (a layer, or the stopped VM's overlay on it) takes the data it
 * read through the layer and reads the layer's own backing from then on;
 * the layer then goes at commit. Anything else keeps the layer as it is. */
static int merge_layer(const struct vi_store *s, struct vi_layer_index *idx, struct vi_machine *m,
		       bool running, const char *id)
{
	struct vi_layer *l = vi_layer_find(idx, id), *child = NULL;
	struct vi_vm_disk *disk = NULL;
	size_t children = 0;
	char vmref[300];

	if (!l)
		return 0;
	snprintf(vmref, sizeof(vmref), "vm:%s", m->def.name);
	for (size_t i = 0; i < l->nrefs; i++)
		if (strcmp(l->refs[i], vmref))
			return 0; /* another snapshot reads it */
	for (size_t k = 0; k < idx->n; k++)
		if (idx->layers[k].parent && !strcmp(idx->layers[k].parent, id)) {
			child = &idx->layers[k];
			children++;
		}
	for (size_t i = 0; i < m->def.ndisks; i++)
		if (m->def.disks[i].layer && !strcmp(m->def.disks[i].layer, id)) {
			disk = &m->def.disks[i];
			children++;
		}
	if (children != 1 || (disk && running))
		return 0;
	char *below = l->parent ? vi_layer_path(s, l->parent) : xstrdup(l->backing);
	char *path = disk ? xasprintf("%s/%s", m->dir, disk->path) : vi_layer_path(s, child->id);
	struct image *img;
	int rc = below ? image_open(path, IMAGE_QCOW2, IMAGE_OPEN_WRITE, &img) : 0;

	if (below && rc == 0) {
		rc = image_rebase(img, below, IMAGE_PROBE, NULL, NULL);
		int crc = image_close(img);
		if (rc == 0)
			rc = crc;
	}
	if (rc == 0 && below) {
		if (disk) {
			free(disk->layer);
			disk->layer = l->parent ? xstrdup(l->parent) : NULL;
			vi_layer_unref(idx, id, vmref);
			if (l->parent)
				vi_layer_ref(idx, l->parent, vmref);
		} else {
			free(child->parent);
			child->parent = l->parent ? xstrdup(l->parent) : NULL;
			free(child->backing);
			child->backing = l->backing ? xstrdup(l->backing) : NULL;
		}
		vi_debug("merged layer '%s' into '%s'", id, path);
	}
	free(below);
	free(path);
	return rc;
}

int vi_snapshot_delete(const struct vi_store *s, struct vi_machine *m, const char *name)
{
	struct vi_snapshot snap, *all = NULL;
	struct vi_layer_index idx;
	struct vi_hv_state st;
	size_t n = 0;
	char *ref = NULL, *dir = NULL, *gone = NULL;
	int rc;

	clear_dead(s, m->def.name);
	if ((rc = vi_snapshot_load(s, m->def.name, name, &snap)) < 0)
		return rc;
	if ((rc = vi_layers_open(s, &idx)) < 0)
		goto out;
	for (size_t i = 0; i < snap.ndisks; i++) {
		const char *clone = snap.disks[i].layer && !snap.disks[i].readonly
					    ? reader_clone(&idx, snap.disks[i].layer, m->def.name)
					    : NULL;
		if (clone) {
			rc = vi_error(VI_ESTATE,
				      "snapshot '%s' of VM '%s' is read by clone '%s': destroy it first",
				      name, m->def.name, clone);
			vi_layers_release(&idx);
			goto out;
		}
	}
	if ((rc = vi_snapshot_list(s, m->def.name, &all, &n)) < 0) {
		vi_layers_release(&idx);
		goto out;
	}
	/* Its children take its parent; so does HEAD. */
	for (size_t i = 0; rc == 0 && i < n; i++) {
		if (!all[i].parent || strcmp(all[i].parent, name))
			continue;
		free(all[i].parent);
		all[i].parent = snap.parent ? xstrdup(snap.parent) : NULL;
		char *meta = snap_file(s, m->def.name, all[i].name, "meta.yaml");
		rc = meta_save(meta, &all[i]);
		free(meta);
	}
	if (rc == 0 && m->def.snapshot && !strcmp(m->def.snapshot, name)) {
		free(m->def.snapshot);
		m->def.snapshot = snap.parent ? xstrdup(snap.parent) : NULL;
		rc = vi_store_save_vm(s, &m->def);
	}
	if (rc < 0) {
		vi_layers_release(&idx);
		goto out;
	}
	/* It is gone once its directory is: then its references, then its data. */
	dir = snap_dir(s, m->def.name, name);
	gone = vi_store_path(s, "vms/%s/snapshots/.%s.deleted.%d", m->def.name, name,
			     (int)getpid());
	if (rename(dir, gone) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot delete snapshot '%s'", dir);
		vi_layers_release(&idx);
		goto out;
	}
	ref = snap_ref(m->def.name, name);
	bool running = vi_hv_state_active(vi_machine_state(m, &st));
	for (size_t i = 0; i < snap.ndisks; i++) {
		if (!snap.disks[i].layer)
			continue;
		vi_layer_unref(&idx, snap.disks[i].layer, ref);
		/* A layer kept whole costs space, nothing else: go on. */
		if (merge_layer(s, &idx, m, running, snap.disks[i].layer) < 0) {
			vi_warn("%s; its layer stays", vi_error_message());
			vi_error_clear();
		}
	}
	if ((rc = vi_store_save_vm(s, &m->def)) == 0)
		rc = vi_layers_commit(s, &idx);
	else
		vi_layers_release(&idx);
	vi_rm_rf(gone);
out:
	vi_snapshots_free(all, n);
	vi_snapshot_release(&snap);
	free(ref);
	free(dir);
	free(gone);
	return rc;
}
