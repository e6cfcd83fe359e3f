/* The layer store: images/layers/<id>.qcow2 and the index that says who
 * needs each one. */
#include "layers.h"
#include "error.h"
#include "image/image.h"
#include "log.h"
#include "util.h"
#include "yaml-doc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define INDEX_SCHEMA 1

static char *absolute(const char *dir, const char *path)
{
	return path[0] == '/' ? xstrdup(path) : xasprintf("%s/%s", dir, path);
}

char *vi_layer_path(const struct vi_store *s, const char *id)
{
	return vi_store_path(s, "images/layers/%s.qcow2", id);
}

char *vi_layer_id_of(const struct vi_store *s, const char *path)
{
	char *dir = vi_store_path(s, "images/layers/"), real[PATH_MAX], *id = NULL;
	char dir_real[PATH_MAX];

	if (realpath(path, real) && realpath(dir, dir_real)) {
		size_t len = strlen(dir_real);
		if (!strncmp(real, dir_real, len) && real[len] == '/') {
			const char *name = real + len + 1;
			size_t n = strlen(name);
			if (!strchr(name, '/') && n > 6 && !strcmp(name + n - 6, ".qcow2"))
				id = xasprintf("%.*s", (int)(n - 6), name);
		}
	}
	free(dir);
	return id;
}

struct vi_layer *vi_layer_find(struct vi_layer_index *idx, const char *id)
{
	for (size_t i = 0; id && i < idx->n; i++)
		if (!strcmp(idx->layers[i].id, id))
			return &idx->layers[i];
	return NULL;
}

static struct vi_layer *layer_add(struct vi_layer_index *idx, const char *id)
{
	idx->layers = xrealloc(idx->layers, (idx->n + 1) * sizeof(*idx->layers));
	struct vi_layer *l = &idx->layers[idx->n++];
	memset(l, 0, sizeof(*l));
	l->id = xstrdup(id);
	l->created = time(NULL);
	return l;
}

struct vi_layer *vi_layer_import(struct vi_layer_index *idx, const char *id, const char *parent,
				 const char *backing)
{
	struct vi_layer *l = vi_layer_find(idx, id);

	if (l)
		return l;
	l = layer_add(idx, id);
	l->parent = xstrdup(parent);
	l->backing = xstrdup(backing);
	return l;
}

static void strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void vi_layer_ref(struct vi_layer_index *idx, const char *id, const char *ref)
{
	struct vi_layer *l = vi_layer_find(idx, id);
	if (l)
		vi_strv_add(&l->refs, &l->nrefs, ref);
}

void vi_layer_unref(struct vi_layer_index *idx, const char *id, const char *ref)
{
	struct vi_layer *l = vi_layer_find(idx, id);

	for (size_t i = 0; l && i < l->nrefs; i++) {
		if (strcmp(l->refs[i], ref))
			continue;
		free(l->refs[i]);
		l->refs[i] = l->refs[--l->nrefs];
		return;
	}
}

void vi_layer_unref_vm(struct vi_layer_index *idx, const char *name)
{
	char *vm = xasprintf("vm:%s", name), *snap = xasprintf("snapshot:%s/", name);

	for (size_t k = 0; k < idx->n; k++) {
		struct vi_layer *l = &idx->layers[k];
		for (size_t i = 0; i < l->nrefs;) {
			if (!strcmp(l->refs[i], vm) || !strncmp(l->refs[i], snap, strlen(snap))) {
				free(l->refs[i]);
				l->refs[i] = l->refs[--l->nrefs];
			} else {
				i++;
			}
		}
	}
	free(vm);
	free(snap);
}

void vi_layers_ref_vm(struct vi_layer_index *idx, const struct vi_vm *vm)
{
	char *ref = xasprintf("vm:%s", vm->name);

	for (size_t i = 0; i < vm->ndisks; i++)
		if (vm->disks[i].layer)
			vi_layer_ref(idx, vm->disks[i].layer, ref);
	free(ref);
}

/* --- the index file ------------------------------------------------------------- */

static void layer_free(struct vi_layer *l)
{
	free(l->id);
	free(l->parent);
	free(l->backing);
	strv_free(l->refs, l->nrefs);
	strv_free(l->aliases, l->naliases);
}

void vi_layers_commit_anyway(const struct vi_store *s, struct vi_layer_index *idx)
{
	struct vi_error_saved e;

	vi_error_save(&e);
	vi_layers_commit(s, idx);
	vi_error_restore(&e);
}

void vi_layers_release(struct vi_layer_index *idx)
{
	for (size_t i = 0; i < idx->n; i++)
		layer_free(&idx->layers[i]);
	free(idx->layers);
	free(idx->on_disk);
	if (idx->lock_fd >= 0)
		close(idx->lock_fd); /* and with it the lock */
	memset(idx, 0, sizeof(*idx));
	idx->lock_fd = -1;
}

static int load_strv(struct vi_yaml *y, yaml_node_t *map, const char *key, char ***v, size_t *n)
{
	yaml_node_t *seq = vi_yaml_get(y, map, key), *item;

	if (!seq)
		return 0;
	if (seq->type != YAML_SEQUENCE_NODE)
		return vi_yaml_error(y, seq, VI_EFAIL, "'%s' must be a list", key);
	vi_yaml_seq_foreach(y, seq, item)
	{
		const char *s = vi_yaml_scalar(item);
		if (!s)
			return vi_yaml_error(y, item, VI_EFAIL, "'%s' must list strings", key);
		vi_strv_add(v, n, s);
	}
	return 0;
}

static int index_load(const char *path, struct vi_layer_index *idx)
{
	static const char *const keys[] = { "schema", "layers" };
	static const char *const layer_keys[] = { "parent", "backing", "refs", "aliases",
						  "created" };
	struct vi_yaml y;
	yaml_node_t *root, *layers, *k, *v;
	uint64_t created;
	int rc;

	if ((rc = vi_yaml_load_file(&y, path)) < 0)
		return rc;
	root = vi_yaml_root(&y);
	if ((rc = vi_yaml_expect_map(&y, root, "a layer index")) < 0 ||
	    (rc = vi_yaml_check_keys(&y, root, keys, ARRAY_SIZE(keys))) < 0 ||
	    (rc = vi_yaml_check_schema(&y, root, INDEX_SCHEMA)) < 0)
		goto cleanup;
	layers = vi_yaml_get(&y, root, "layers");
	if (!layers)
		goto cleanup;
	if (layers->type != YAML_MAPPING_NODE) {
		rc = vi_yaml_error(&y, layers, VI_EFAIL, "'layers' must be a mapping");
		goto cleanup;
	}
	vi_yaml_map_foreach(&y, layers, k, v)
	{
		const char *id = vi_yaml_scalar(k), *s;
		if (!id || vi_check_name(id, "layer") < 0) {
			rc = vi_yaml_error(&y, k, VI_EFAIL, "invalid layer id");
			goto cleanup;
		}
		struct vi_layer *l = layer_add(idx, id);
		if ((rc = vi_yaml_expect_map(&y, v, "a layer")) < 0 ||
		    (rc = vi_yaml_check_keys(&y, v, layer_keys, ARRAY_SIZE(layer_keys))) < 0 ||
		    (rc = load_strv(&y, v, "refs", &l->refs, &l->nrefs)) < 0 ||
		    (rc = load_strv(&y, v, "aliases", &l->aliases, &l->naliases)) < 0 ||
		    (rc = vi_yaml_get_uint(&y, v, "created", false, 0, INT64_MAX, &created)) < 0)
			goto cleanup;
		l->created = (time_t)created;
		if (vi_yaml_get_str(&y, v, "parent", false, &s) == 0 && s)
			l->parent = xstrdup(s);
		if (vi_yaml_get_str(&y, v, "backing", false, &s) == 0 && s)
			l->backing = xstrdup(s);
	}
cleanup:
	if (rc < 0)
		vi_error_wrap("cannot read the layer index");
	vi_yaml_release(&y);
	return rc;
}

static void out_strv(struct vi_yaml_out *o, const char *key, char **v, size_t n)
{
	if (!n)
		return;
	vi_yaml_out_scalar(o, key);
	vi_yaml_out_seq_start(o);
	for (size_t i = 0; i < n; i++)
		vi_yaml_out_scalar(o, v[i]);
	vi_yaml_out_end(o);
}

static char *index_text(const struct vi_layer_index *idx)
{
	struct vi_yaml_out o;
	char *text;

	vi_yaml_out_init(&o);
	vi_yaml_out_map_start(&o);
	vi_yaml_out_uint(&o, "schema", INDEX_SCHEMA);
	vi_yaml_out_scalar(&o, "layers");
	vi_yaml_out_map_start(&o);
	for (size_t i = 0; i < idx->n; i++) {
		const struct vi_layer *l = &idx->layers[i];
		vi_yaml_out_scalar(&o, l->id);
		vi_yaml_out_map_start(&o);
		vi_yaml_out_str(&o, "parent", l->parent);
		vi_yaml_out_str(&o, "backing", l->backing);
		vi_yaml_out_uint(&o, "created", (uint64_t)l->created);
		out_strv(&o, "refs", l->refs, l->nrefs);
		out_strv(&o, "aliases", l->aliases, l->naliases);
		vi_yaml_out_end(&o);
	}
	vi_yaml_out_end(&o);
	vi_yaml_out_end(&o);
	return vi_yaml_out_finish(&o, &text, NULL) < 0 ? NULL : text;
}

int vi_layers_write(const struct vi_store *s, struct vi_layer_index *idx)
{
	char *dir, *path, *text = index_text(idx);
	int rc;

	if (!text)
		return -vi_error_code();
	if (idx->on_disk && !strcmp(text, idx->on_disk)) {
		free(text);
		return 0;
	}
	dir = vi_store_path(s, "images/layers");
	path = xasprintf("%s/index.yaml", dir);
	rc = vi_mkdir_p(dir, 0711);
	if (rc == 0)
		rc = vi_write_file_atomic(path, text, strlen(text), 0600);
	free(idx->on_disk);
	idx->on_disk = rc == 0 ? text : NULL;
	if (rc < 0)
		free(text);
	free(dir);
	free(path);
	return rc;
}

/* An index with no layer in a store with no VM records nothing: it goes, and
 * images/layers with it, so that removing the last VM and image leaves the
 * store as a new one. */
static bool index_useless(const struct vi_store *s, const struct vi_layer_index *idx)
{
	return idx->n == 0 && !vi_store_has_vms(s);
}

/* A layer nothing references: the next commit removes it. */
static void forget_layer(struct vi_layer_index *idx, const char *id)
{
	struct vi_layer *l = vi_layer_find(idx, id);

	if (l) {
		strv_free(l->refs, l->nrefs);
		l->refs = NULL;
		l->nrefs = 0;
	}
}

/* --- migration from the previous layout ------------------------------------------ */

/* A layer of the previous layout: a file some image is backed by that lives
 * in a VM's directory or in images/layers/<uuid>/. */
struct old_layer {
	char *real;   /* its resolved path */
	char *id;
	char *backing_real; /* what it is backed by, resolved, or NULL */
};

struct rewrite {
	char *image;   /* an image whose backing is an old layer's name */
	char *layer;   /* that layer's id */
};

struct migration {
	struct old_layer *old;
	size_t nold;
	struct rewrite *rw;
	size_t nrw;
	char *vms_prefix, *layers_prefix;
};

static bool is_old_layer(const struct migration *m, const char *real)
{
	size_t nv = strlen(m->vms_prefix), nl = strlen(m->layers_prefix);
	/* images/layers/<uuid>/file (an adopted directory), not images/layers/<id>.qcow2 */
	return !strncmp(real, m->vms_prefix, nv) ||
	       (!strncmp(real, m->layers_prefix, nl) && strchr(real + nl, '/'));
}

static struct old_layer *old_find(struct migration *m, const char *real)
{
	for (size_t i = 0; i < m->nold; i++)
		if (!strcmp(m->old[i].real, real))
			return &m->old[i];
	return NULL;
}

/* Walks the chain of one VM disk and notes every old layer in it, and every
 * image (the disk itself or a layer) backed by one. */
static void migrate_scan(struct migration *m, const char *path)
{
	struct image *img;

	if (image_open(path, IMAGE_PROBE, IMAGE_OPEN_SHARED, &img) < 0) {
		vi_error_clear();
		return;
	}
	for (struct image *up = img, *b = image_backing(img); b; up = b, b = image_backing(b)) {
		char real[PATH_MAX], up_real[PATH_MAX];
		if (!realpath(image_path(b), real) || !is_old_layer(m, real))
			continue;
		struct old_layer *o = old_find(m, real);
		if (!o) {
			char id[33];
			vi_random_hex(id, 8);
			m->old = xrealloc(m->old, (m->nold + 1) * sizeof(*m->old));
			o = &m->old[m->nold++];
			memset(o, 0, sizeof(*o));
			o->real = xstrdup(real);
			o->id = xstrdup(id);
			struct image *bb = image_backing(b);
			char bb_real[PATH_MAX];
			if (bb && realpath(image_path(bb), bb_real))
				o->backing_real = xstrdup(bb_real);
		}
		if (!realpath(image_path(up), up_real))
			continue;
		bool seen = false;
		for (size_t i = 0; i < m->nrw && !seen; i++)
			seen = !strcmp(m->rw[i].image, up_real);
		if (!seen) {
			m->rw = xrealloc(m->rw, (m->nrw + 1) * sizeof(*m->rw));
			m->rw[m->nrw].image = xstrdup(up_real);
			m->rw[m->nrw++].layer = xstrdup(o->id);
		}
	}
	image_close(img);
}

/* Points image at layer id's own file; false when the image is in use. */
static bool repoint(const struct vi_store *s, const char *image, const char *id)
{
	char *target = vi_layer_path(s, id);
	struct stat st;
	bool made_writable = false, ok;

	/* Layers are read-only files: writable for as long as the header changes. */
	if (stat(image, &st) == 0 && !(st.st_mode & S_IWUSR))
		made_writable = chmod(image, st.st_mode | S_IWUSR) == 0;
	ok = image_set_backing(image, target, IMAGE_QCOW2) == 0;
	if (made_writable)
		chmod(image, st.st_mode);
	if (!ok)
		vi_error_clear();
	free(target);
	return ok;
}

static void migration_release(struct migration *m)
{
	for (size_t i = 0; i < m->nold; i++) {
		free(m->old[i].real);
		free(m->old[i].id);
		free(m->old[i].backing_real);
	}
	for (size_t i = 0; i < m->nrw; i++) {
		free(m->rw[i].image);
		free(m->rw[i].layer);
	}
	free(m->old);
	free(m->rw);
	free(m->vms_prefix);
	free(m->layers_prefix);
}

/* Finds the layers of a store of the previous layout, gives each its place in
 * images/layers/ (a hard link: the old name keeps working until every image
 * that uses it is repointed), repoints the images that are not in use, and
 * builds the index. Images in use keep the old name, recorded as an alias,
 * until a later command can repoint them. */
static int migrate(const struct vi_store *s, struct vi_layer_index *idx)
{
	struct migration m = { 0 };
	char real[PATH_MAX], **names = NULL;
	size_t count = 0;
	int rc = 0;

	char *vms = vi_store_path(s, "vms"), *layers = vi_store_path(s, "images/layers");
	if (!realpath(vms, real)) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot resolve '%s'", vms);
		goto cleanup;
	}
	m.vms_prefix = xasprintf("%s/", real);
	m.layers_prefix = realpath(layers, real) ? xasprintf("%s/", real) : xstrdup("/nonexistent/");
	if ((rc = vi_store_list_vms(s, &names, &count)) < 0)
		goto cleanup;
	for (size_t i = 0; i < count; i++) {
		struct vi_vm vm;
		if (vi_store_load_vm(s, names[i], &vm) < 0) {
			vi_error_clear();
			continue;
		}
		char *dir = vi_store_path(s, "vms/%s", names[i]);
		for (size_t k = 0; k < vm.ndisks; k++) {
			char *p = absolute(dir, vm.disks[k].path);
			migrate_scan(&m, p);
			free(p);
		}
		free(dir);
		vi_vm_release(&vm);
	}
	/* The links and the index first: from then on every layer has its name. */
	for (size_t i = 0; i < m.nold && rc == 0; i++) {
		char *target = vi_layer_path(s, m.old[i].id);
		if (link(m.old[i].real, target) < 0 && errno != EEXIST)
			rc = vi_error_errno(VI_EFAIL, errno, "cannot link '%s' to '%s'", m.old[i].real,
					    target);
		free(target);
		struct vi_layer *l = layer_add(idx, m.old[i].id);
		struct old_layer *parent = m.old[i].backing_real ? old_find(&m, m.old[i].backing_real)
								 : NULL;
		if (parent)
			l->parent = xstrdup(parent->id);
		else if (m.old[i].backing_real)
			l->backing = xstrdup(m.old[i].backing_real);
		vi_strv_add(&l->aliases, &l->naliases, m.old[i].real);
	}
	if (rc < 0)
		goto cleanup;
	/* Which VM reads which layer directly: its disks' layer fields. */
	for (size_t i = 0; i < count; i++) {
		struct vi_vm vm;
		bool changed = false;
		if (vi_store_load_vm(s, names[i], &vm) < 0) {
			vi_error_clear();
			continue;
		}
		char *dir = vi_store_path(s, "vms/%s", names[i]);
		for (size_t k = 0; k < vm.ndisks; k++) {
			char *p = absolute(dir, vm.disks[k].path), *id = NULL;
			bool resolved = realpath(p, real) != NULL;
			for (size_t r = 0; r < m.nrw && resolved && !id; r++)
				if (!strcmp(m.rw[r].image, real))
					id = m.rw[r].layer;
			if (id && (!vm.disks[k].layer || strcmp(vm.disks[k].layer, id))) {
				free(vm.disks[k].layer);
				vm.disks[k].layer = xstrdup(id);
				changed = true;
			}
			free(p);
		}
		vi_layers_ref_vm(idx, &vm);
		if (changed)
			rc = vi_store_save_vm(s, &vm);
		free(dir);
		vi_vm_release(&vm);
		if (rc < 0)
			goto cleanup;
	}
	vi_debug("moved %zu layers of the previous store layout to images/layers", m.nold);
cleanup:
	free(vms);
	free(layers);
	migration_release(&m);
	vi_store_names_free(names, count);
	return rc;
}

/* --- aliases: older names of layers, kept while an image still uses them ---------- */

struct alias_use {
	struct vi_layer *layer;
	size_t alias;
	bool used;
};

/* Repoints every image a VM reaches that still reads a layer through an
 * alias, where it can, and removes the aliases nobody reads any more. Images
 * in use keep theirs until a later command. */
static void settle_aliases(const struct vi_store *s, struct vi_layer_index *idx)
{
	struct alias_use *uses = NULL;
	size_t nuses = 0, count = 0;
	char **names = NULL;

	for (size_t l = 0; l < idx->n; l++)
		for (size_t a = 0; a < idx->layers[l].naliases; a++) {
			uses = xrealloc(uses, (nuses + 1) * sizeof(*uses));
			uses[nuses++] = (struct alias_use){ &idx->layers[l], a, false };
		}
	if (!nuses || vi_store_list_vms(s, &names, &count) < 0)
		goto cleanup;
	for (size_t i = 0; i < count; i++) {
		struct vi_vm vm;
		if (vi_store_load_vm(s, names[i], &vm) < 0)
			continue;
		char *dir = vi_store_path(s, "vms/%s", names[i]);
		for (size_t k = 0; k < vm.ndisks; k++) {
			char *p = absolute(dir, vm.disks[k].path);
			struct image *img;
			if (image_open(p, IMAGE_PROBE, IMAGE_OPEN_SHARED, &img) == 0) {
				for (struct image *up = img, *b = image_backing(img); b;
				     up = b, b = image_backing(b)) {
					char real[PATH_MAX];
					if (!realpath(image_path(b), real))
						continue;
					for (size_t u = 0; u < nuses; u++) {
						struct alias_use *au = &uses[u];
						if (strcmp(au->layer->aliases[au->alias], real))
							continue;
						if (!repoint(s, image_path(up), au->layer->id))
							au->used = true;
					}
				}
				image_close(img);
			}
			free(p);
		}
		free(dir);
		vi_vm_release(&vm);
	}
	/* Unused aliases go, last first so that indices stay valid. */
	for (size_t u = nuses; u-- > 0;) {
		struct vi_layer *l = uses[u].layer;
		size_t a = uses[u].alias;
		if (uses[u].used)
			continue;
		unlink(l->aliases[a]);
		free(l->aliases[a]);
		memmove(&l->aliases[a], &l->aliases[a + 1], (l->naliases - a - 1) * sizeof(char *));
		l->naliases--;
	}
cleanup:
	vi_error_clear();
	vi_store_names_free(names, count);
	free(uses);
}

int vi_layers_release_dir(const struct vi_store *s, struct vi_layer_index *idx,
			  const struct vi_vm *vm)
{
	char *dir = vi_store_path(s, "vms/%s/", vm->name), real[PATH_MAX];
	int rc = 0;

	settle_aliases(s, idx);
	if (!realpath(dir, real))
		goto cleanup;
	strcat(real, "/");
	for (size_t l = 0; l < idx->n && rc == 0; l++)
		for (size_t a = 0; a < idx->layers[l].naliases && rc == 0; a++)
			if (!strncmp(idx->layers[l].aliases[a], real, strlen(real)))
				rc = vi_error(VI_ESTATE,
					      "layer '%s' of VM '%s' is still read as '%s' by a running VM: stop the VMs cloned from '%s' and try again",
					      idx->layers[l].id, vm->name, idx->layers[l].aliases[a],
					      vm->name);
cleanup:
	free(dir);
	return rc;
}

/* --- opening, committing, collecting ---------------------------------------------- */

static bool ref_live(const struct vi_store *s, const char *r)
{
	const char *slash;
	char *path = NULL;
	bool live;

	if (!strncmp(r, "vm:", 3))
		path = vi_store_path(s, "vms/%s/vm.yaml", r + 3);
	else if (!strncmp(r, "snapshot:", 9) && (slash = strchr(r + 9, '/')))
		path = vi_store_path(s, "vms/%.*s/snapshots/%s", (int)(slash - r - 9), r + 9,
				     slash + 1);
	live = !path || vi_file_exists(path);
	free(path);
	return live;
}

/* References a crashed command left behind: to VMs or snapshots that never
 * came to be or are gone. Only while holding the lock, when nobody is in the
 * middle of making one. A layer that one live reference keeps is kept
 * whatever the others are, so its references are read only as far as the
 * first live one: a command costs the same however many VMs share a layer,
 * and a stale reference goes with the last live one. */
static void drop_stale_refs(const struct vi_store *s, struct vi_layer_index *idx)
{
	for (size_t k = 0; k < idx->n; k++) {
		struct vi_layer *l = &idx->layers[k];
		bool live = false;
		for (size_t i = 0; i < l->nrefs && !live; i++)
			live = ref_live(s, l->refs[i]);
		if (live)
			continue;
		for (size_t i = 0; i < l->nrefs; i++)
			free(l->refs[i]);
		l->nrefs = 0;
	}
}

int vi_layers_open(const struct vi_store *s, struct vi_layer_index *idx)
{
	char *dir = vi_store_path(s, "images/.locks"), *lock = NULL, *path = NULL;
	int rc;

	memset(idx, 0, sizeof(*idx));
	idx->lock_fd = -1;
	/* The lock lives outside images/layers, which goes when it is empty. */
	if ((rc = vi_mkdir_p(dir, 0700)) < 0)
		goto cleanup;
	lock = xasprintf("%s/layers", dir);
	path = vi_store_path(s, "images/layers/index.yaml");
	idx->lock_fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (idx->lock_fd < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot open lock '%s'", lock);
		goto cleanup;
	}
	/* Index changes are short: wait for the command that holds it. */
	while (flock(idx->lock_fd, LOCK_EX) < 0)
		if (errno != EINTR) {
			rc = vi_error_errno(VI_EFAIL, errno, "cannot lock '%s'", lock);
			goto cleanup;
		}
	/* index.yaml.tmp.PID of a command killed while it wrote the index. */
	{
		char *layers = vi_store_path(s, "images/layers");
		vi_clear_dead(layers, "index.yaml.tmp.");
		free(layers);
	}
	if (vi_file_exists(path)) {
		rc = index_load(path, idx);
		if (rc == 0)
			idx->on_disk = index_text(idx);
		if (rc == 0) {
			drop_stale_refs(s, idx);
			settle_aliases(s, idx);
		}
	} else if ((rc = migrate(s, idx)) == 0) {
		settle_aliases(s, idx);
		rc = vi_layers_write(s, idx);
	}
cleanup:
	if (rc < 0)
		vi_layers_release(idx);
	free(dir);
	free(lock);
	free(path);
	return rc;
}

int vi_layers_upgrade(const struct vi_store *s)
{
	char *path = vi_store_path(s, "images/layers/index.yaml");
	struct vi_layer_index idx;
	bool done = vi_file_exists(path);
	int rc = 0;

	free(path);
	/* A store with no VM has nothing to move: leave it as it is. */
	if (!done)
		done = !vi_store_has_vms(s);
	if (!done && (rc = vi_layers_open(s, &idx)) == 0)
		rc = vi_layers_commit(s, &idx);
	return rc;
}

static bool has_children(const struct vi_layer_index *idx, const char *id)
{
	for (size_t i = 0; i < idx->n; i++)
		if (idx->layers[i].parent && !strcmp(idx->layers[i].parent, id))
			return true;
	return false;
}

int vi_layers_commit(const struct vi_store *s, struct vi_layer_index *idx)
{
	char *path = vi_store_path(s, "images/layers/index.yaml");
	char **doomed = NULL;
	size_t ndoomed = 0;
	bool useless;
	int rc = 0;

	/* Unreferenced layers nothing is backed by go, and then perhaps their
	 * parents: the index forgets them first, their files go after. */
	for (bool again = true; again;) {
		again = false;
		for (size_t i = 0; i < idx->n; i++) {
			struct vi_layer *l = &idx->layers[i];
			char *file = vi_layer_path(s, l->id);
			/* A layer whose file never came to be (a crash just after the
			 * index learnt of it) cannot be read by anybody either. */
			bool gone = !vi_file_exists(file);
			if ((l->nrefs && !gone) || has_children(idx, l->id)) {
				free(file);
				continue;
			}
			doomed = xrealloc(doomed, (ndoomed + 1) * sizeof(char *));
			doomed[ndoomed++] = file;
			for (size_t a = 0; a < l->naliases; a++)
				vi_strv_add(&doomed, &ndoomed, l->aliases[a]);
			layer_free(l);
			idx->layers[i] = idx->layers[--idx->n];
			again = true;
			break;
		}
	}
	useless = index_useless(s, idx);
	if (!useless)
		rc = vi_layers_write(s, idx);
	else if (unlink(path) < 0 && errno != ENOENT)
		rc = vi_error_errno(VI_EFAIL, errno, "cannot remove '%s'", path);
	for (size_t i = 0; rc == 0 && i < ndoomed; i++)
		unlink(doomed[i]);
	if (rc == 0 && useless) {
		char *dir = vi_store_path(s, "images/layers");
		rmdir(dir); /* kept if anything else is in it */
		free(dir);
	}
	strv_free(doomed, ndoomed);
	free(path);
	vi_layers_release(idx);
	return rc;
}

/* --- freezing ----------------------------------------------------------------------- */

int vi_layer_overlay(const char *path, const char *backing)
{
	/* Private: libvirt hands it to QEMU while the guest runs. */
	return image_create_overlay(path, backing, false);
}

/* A new layer in the index (before its file exists: a crash leaves an entry
 * without a file, which the next commit drops, never a file nobody knows),
 * backed by what disk d's image is backed by now. */
static struct vi_layer *new_layer(struct vi_layer_index *idx, const struct vi_vm *vm,
				  const struct vi_vm_disk *d, const char *image)
{
	char id[33], *ref = xasprintf("vm:%s", vm->name);
	struct image *img;
	struct vi_layer *l;

	do
		vi_random_hex(id, 8);
	while (vi_layer_find(idx, id));
	l = layer_add(idx, id);
	vi_layer_ref(idx, id, ref);
	if (d->layer && vi_layer_find(idx, d->layer)) {
		l = vi_layer_find(idx, id); /* layer_add may have moved the array */
		l->parent = xstrdup(d->layer);
	} else if (image_open(image, IMAGE_PROBE, IMAGE_OPEN_SHARED | IMAGE_OPEN_NO_BACKING,
			      &img) == 0) {
		struct image_info info;
		if (image_get_info(img, false, &info) == 0) {
			if (info.backing_file) {
				char *dir = xstrdup(image), *b = absolute(dirname(dir), info.backing_file);
				l->backing = b;
				free(dir);
			}
			image_info_release(&info);
		}
		image_close(img);
	}
	vi_error_clear();
	free(ref);
	return vi_layer_find(idx, id);
}

/* The VM stops referencing its old layer once its disk sits on the new one
 * (the new layer, the old one's child, keeps the old one). Each disk has a
 * chain of its own, so no other disk of the VM shares the old layer. */
static void moved_to(struct vi_layer_index *idx, const char *vm_name, struct vi_vm_disk *d,
		     const char *id)
{
	char *ref = xasprintf("vm:%s", vm_name);

	if (d->layer)
		vi_layer_unref(idx, d->layer, ref);
	free(d->layer);
	d->layer = xstrdup(id);
	free(ref);
}

/* "disks/root.qcow2" -> the first unused "disks/root.N.qcow2". */
static char *fresh_name(const char *path)
{
	const char *dot = strrchr(path, '.');
	const char *slash = strrchr(path, '/');
	size_t stem = dot && (!slash || dot > slash) ? (size_t)(dot - path) : strlen(path);

	for (unsigned n = 1;; n++) {
		char *name = xasprintf("%.*s.%u%s", (int)stem, path, n, path + stem);
		if (!vi_file_exists(name))
			return name;
		free(name);
	}
}

/* The VM's overlay name for a disk of its own: disks/<stem>.qcow2, the stem
 * without extension and without any ".N" an earlier freeze added, or the
 * first unused disks/<stem>.N.qcow2 when that is taken. */
char *vi_layer_overlay_name(const char *vm_dir, const char *path)
{
	char *base = xstrdup(path), *name = basename(base), *dot = strrchr(name, '.');

	if (dot && dot != name)
		*dot = '\0';
	dot = strrchr(name, '.');
	if (dot && dot != name && dot[1] && strspn(dot + 1, "0123456789") == strlen(dot + 1))
		*dot = '\0';
	char *candidate = xasprintf("%s/disks/%s.qcow2", vm_dir, name);
	free(base);
	if (!vi_file_exists(candidate))
		return candidate;
	char *fresh = fresh_name(candidate);
	free(candidate);
	return fresh;
}

int vi_image_unwritten(const char *path, unsigned open_flags, char **backing)
{
	struct image *img;
	struct image_info info;
	int rc = image_open(path, IMAGE_PROBE, IMAGE_OPEN_NO_BACKING | open_flags, &img);

	if (rc < 0)
		return rc;
	rc = image_get_info(img, false, &info);
	image_close(img);
	if (rc < 0)
		return rc;
	bool unwritten = info.format == IMAGE_QCOW2 && info.allocated == 0 && info.backing_file;
	if (unwritten && backing) {
		char *dir = xstrdup(path);
		*backing = absolute(dirname(dir), info.backing_file);
		free(dir);
	}
	image_info_release(&info);
	return unwritten;
}

int vi_layer_freeze(const struct vi_store *s, struct vi_layer_index *idx, const struct vi_vm *vm,
		    const char *vm_dir, struct vi_vm_disk *d, char **backing)
{
	char *path = absolute(vm_dir, d->path), *layer = NULL, *tmp = NULL, *id = NULL;
	struct vi_layer *l;
	int rc;

	*backing = NULL;
	if (d->readonly) {
		*backing = path;
		return 0;
	}
	/* Nothing written since it was made: share what it is backed by. */
	if ((rc = vi_image_unwritten(path, 0, backing)) != 0) {
		rc = rc < 0 ? rc : 0;
		goto cleanup;
	}

	if (strncmp(d->path, "disks/", 6)) {
		/* A disk vi does not own stays where it is and is shared as it is;
		 * the VM writes to a new overlay in its own directory from now on. */
		char *rel = NULL, *overlay = vi_layer_overlay_name(vm_dir, path);
		if ((rc = vi_layer_overlay(overlay, path)) == 0) {
			rel = xasprintf("disks/%s", overlay + strlen(vm_dir) + strlen("/disks/"));
			free(d->path);
			d->path = rel;
			d->format = VI_DISK_QCOW2;
			*backing = path;
			path = NULL;
		}
		free(overlay);
		goto cleanup;
	}

	l = new_layer(idx, vm, d, path);
	id = xstrdup(l->id);
	layer = vi_layer_path(s, id);
	tmp = xasprintf("%s.new", path);
	unlink(tmp);
	/* The index must know the layer before its file exists. */
	if ((rc = vi_layers_write(s, idx)) < 0)
		goto cleanup;
	if (link(path, layer) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot keep '%s' as '%s'", path, layer);
		goto cleanup;
	}
	if ((rc = vi_layer_overlay(tmp, layer)) < 0) {
		unlink(layer);
		goto cleanup;
	}
	if (rename(tmp, path) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot replace '%s'", path);
		unlink(tmp);
		unlink(layer);
		goto cleanup;
	}
	vi_share_ro(layer); /* frozen: no guest writes it again */
	d->format = VI_DISK_QCOW2;
	moved_to(idx, vm->name, d, id);
	*backing = layer;
	layer = NULL;
cleanup:
	if (rc < 0 && id)
		forget_layer(idx, id);
	free(id);
	free(path);
	free(layer);
	free(tmp);
	return rc;
}

int vi_layer_live(const struct vi_store *s, struct vi_layer_index *idx, const struct vi_vm *vm,
		  const char *vm_dir, const struct vi_vm_disk *d, char **overlay, char **backing)
{
	char *path = absolute(vm_dir, d->path), *next = NULL, *layer = NULL;
	struct vi_layer *l;
	int rc;

	*overlay = NULL;
	*backing = NULL;
	if (d->readonly) {
		*backing = path;
		return 0;
	}
	next = vi_layer_overlay_name(vm_dir, path);
	if (strncmp(d->path, "disks/", 6)) {
		/* Not vi's: it stays where it is, and clones share it as it is. */
		if ((rc = vi_layer_overlay(next, path)) == 0) {
			*overlay = next;
			*backing = path;
			return 0;
		}
		free(next);
		free(path);
		return rc;
	}
	l = new_layer(idx, vm, d, path);
	layer = vi_layer_path(s, l->id);
	if ((rc = vi_layers_write(s, idx)) < 0) {
		forget_layer(idx, l->id);
		goto fail;
	}
	if (link(path, layer) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot keep '%s' as '%s'", path, layer);
		forget_layer(idx, l->id);
		goto fail;
	}
	if ((rc = vi_layer_overlay(next, layer)) < 0) {
		forget_layer(idx, l->id);
		goto fail;
	}
	free(path);
	*overlay = next;
	*backing = layer;
	return 0;
fail:
	free(path);
	free(next);
	free(layer);
	return rc;
}

void vi_layer_live_done(const struct vi_store *s, struct vi_layer_index *idx, const char *vm_name,
			const char *vm_dir, struct vi_vm_disk *d, const char *overlay,
			const char *backing)
{
	char *id = vi_layer_id_of(s, backing), *base = xstrdup(overlay);

	if (id) {
		/* The image's old name goes: the layer's own is the one that counts. */
		char *old = absolute(vm_dir, d->path);
		unlink(old);
		free(old);
		vi_share_ro(backing);
		moved_to(idx, vm_name, d, id);
	}
	free(d->path);
	d->path = xasprintf("disks/%s", basename(base));
	d->format = VI_DISK_QCOW2;
	free(base);
	free(id);
}

void vi_layer_live_undo(const struct vi_store *s, struct vi_layer_index *idx, const char *overlay,
			const char *backing)
{
	char *id = vi_layer_id_of(s, backing);

	if (overlay)
		unlink(overlay);
	if (id)
		forget_layer(idx, id);
	free(id);
}
