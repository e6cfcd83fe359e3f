/* Disk layers: freezing, overlays for clones, and who depends on whom. */
#include "layers.h"
#include "error.h"
#include "image/image.h"
#include "util.h"

#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char *absolute(const char *dir, const char *path)
{
	return path[0] == '/' ? xstrdup(path) : xasprintf("%s/%s", dir, path);
}

/* "disks/root.qcow2" -> "disks/root.N.qcow2" with the first unused N. */
static char *frozen_name(const char *path)
{
	const char *dot = strrchr(path, '.');
	const char *slash = strrchr(path, '/');
	size_t stem = dot && (!slash || dot > slash) ? (size_t)(dot - path) : strlen(path);

	for (unsigned n = 0;; n++) {
		char *name = xasprintf("%.*s.%u%s", (int)stem, path, n, path + stem);
		if (!vi_file_exists(name))
			return name;
		free(name);
	}
}

int vi_layer_overlay(const char *path, const char *layer, bool relative)
{
	int rc = image_create_overlay(path, layer, relative);
	/* QEMU under libvirt runs as its own user and must read the file. */
	if (rc == 0 && chmod(path, 0644) < 0)
		rc = vi_error_errno(VI_EFAIL, errno, "cannot make '%s' readable", path);
	return rc;
}

/* The new overlay's name for a disk at path: disks/<stem>.qcow2, where the stem
 * drops the extension and any ".N" an earlier freeze added, or the first
 * unused disks/<stem>.N.qcow2 when that is taken. */
static char *overlay_name(const char *vm_dir, const char *path)
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
	char *fresh = frozen_name(candidate);
	free(candidate);
	return fresh;
}

int vi_layer_live(const char *vm_dir, const struct vi_vm_disk *d, char **overlay, char **layer)
{
	char *path = absolute(vm_dir, d->path), *next;
	int rc;

	*overlay = NULL;
	*layer = path;
	if (d->readonly)
		return 0;
	next = overlay_name(vm_dir, path);
	/* Relative within the VM's own directory, so that it can move whole. */
	if ((rc = vi_layer_overlay(next, path, !strncmp(d->path, "disks/", 6))) < 0) {
		free(next);
		free(path);
		*layer = NULL;
		return rc;
	}
	*overlay = next;
	return 0;
}

void vi_layer_live_done(struct vi_vm_disk *d, const char *overlay, const char *layer)
{
	char *base = xstrdup(overlay);

	/* Nothing writes the VM's own layer any more: keep it that way. */
	if (!strncmp(d->path, "disks/", 6))
		chmod(layer, 0444);
	free(d->path);
	d->path = xasprintf("disks/%s", basename(base));
	d->format = VI_DISK_QCOW2;
	free(base);
}

int vi_layer_freeze(const char *vm_dir, struct vi_vm_disk *d, char **layer)
{
	char *path = absolute(vm_dir, d->path), *frozen = NULL, *tmp = NULL;
	struct image *img = NULL;
	struct image_info info;
	int rc;

	if (d->readonly) {
		*layer = path;
		return 0;
	}
	if ((rc = image_open(path, IMAGE_PROBE, IMAGE_OPEN_NO_BACKING, &img)) < 0)
		goto cleanup;
	rc = image_get_info(img, false, &info);
	image_close(img);
	if (rc < 0)
		goto cleanup;
	if (info.format == IMAGE_QCOW2 && info.allocated == 0 && info.backing_file) {
		/* Nothing written since the last freeze: share the same layer. */
		char *dir = xstrdup(path);
		*layer = absolute(dirname(dir), info.backing_file);
		free(dir);
		image_info_release(&info);
		free(path);
		return 0;
	}
	image_info_release(&info);

	if (strncmp(d->path, "disks/", 6)) {
		/* A disk vi does not own stays where it is and becomes the layer;
		 * the VM writes to a new overlay in its own directory from now on. */
		char *base = xstrdup(path), *name = basename(base), *dot = strrchr(name, '.');
		if (dot && dot != name)
			*dot = '\0';
		char *rel = xasprintf("disks/%s.qcow2", name);
		char *overlay = absolute(vm_dir, rel);
		free(base);
		if (vi_file_exists(overlay)) {
			rc = vi_error(VI_ESTATE, "'%s' is in the way", overlay);
		} else if ((rc = vi_layer_overlay(overlay, path, false)) == 0) {
			free(d->path);
			d->path = rel;
			rel = NULL;
			d->format = VI_DISK_QCOW2;
			*layer = path;
			path = NULL;
		}
		free(rel);
		free(overlay);
		goto cleanup;
	}

	frozen = frozen_name(path);
	tmp = xasprintf("%s.new", path);
	unlink(tmp);
	if (link(path, frozen) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot keep '%s' as '%s'", path, frozen);
		goto cleanup;
	}
	chmod(frozen, 0444);
	/* The layer is named relative to the overlay beside it, so a VM's
	 * directory can move as a whole. */
	if ((rc = vi_layer_overlay(tmp, frozen, true)) < 0) {
		unlink(frozen);
		goto cleanup;
	}
	if (rename(tmp, path) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot replace '%s'", path);
		unlink(tmp);
		unlink(frozen);
		goto cleanup;
	}
	d->format = VI_DISK_QCOW2;
	*layer = frozen;
	frozen = NULL;
cleanup:
	free(path);
	free(frozen);
	free(tmp);
	return rc;
}

/* Does any image in path's backing chain live under prefix? */
static bool chain_under(const char *path, const char *prefix)
{
	struct image *img;
	bool found = false;

	/* Only metadata is read: a running VM's disk opens too. */
	if (image_open(path, IMAGE_PROBE, IMAGE_OPEN_SHARED, &img) < 0) {
		vi_error_clear();
		return false;
	}
	for (struct image *b = image_backing(img); b && !found; b = image_backing(b)) {
		char real[PATH_MAX];
		found = realpath(image_path(b), real) && !strncmp(real, prefix, strlen(prefix));
	}
	image_close(img);
	return found;
}

int vi_layer_users(const struct vi_store *s, const char *name, char ***users, size_t *n)
{
	char **names, real[PATH_MAX];
	size_t count;
	int rc;

	*users = NULL;
	*n = 0;
	char *dir = vi_store_path(s, "vms/%s", name);
	if (!realpath(dir, real)) {
		free(dir);
		return 0;
	}
	free(dir);
	char *prefix = xasprintf("%s/", real);
	if ((rc = vi_store_list_vms(s, &names, &count)) < 0)
		goto cleanup;
	for (size_t i = 0; i < count; i++) {
		struct vi_vm vm;
		if (!strcmp(names[i], name) || vi_store_load_vm(s, names[i], &vm) < 0) {
			vi_error_clear();
			continue;
		}
		char *vm_dir = vi_store_path(s, "vms/%s", names[i]);
		bool uses = false;
		for (size_t k = 0; k < vm.ndisks && !uses; k++) {
			char *p = absolute(vm_dir, vm.disks[k].path);
			uses = chain_under(p, prefix);
			free(p);
		}
		free(vm_dir);
		vi_vm_release(&vm);
		if (uses) {
			*users = xrealloc(*users, (*n + 1) * sizeof(char *));
			(*users)[(*n)++] = xstrdup(names[i]);
		}
	}
	vi_store_names_free(names, count);
cleanup:
	free(prefix);
	return rc;
}

/* The fixes adopting a VM's layers needs: images whose backing lies under
 * from/, and the same backing's path under to/. */
struct repoint {
	char **image, **backing, **was;
	size_t n;
};

static void repoint_find(const char *path, const char *from, const char *to, struct repoint *r)
{
	struct image *img;

	if (image_open(path, IMAGE_PROBE, IMAGE_OPEN_SHARED, &img) < 0) {
		vi_error_clear();
		return;
	}
	for (struct image *up = img, *b = image_backing(img); b; up = b, b = image_backing(b)) {
		char real[PATH_MAX];
		if (realpath(image_path(b), real) && !strncmp(real, from, strlen(from))) {
			r->image = xrealloc(r->image, (r->n + 1) * sizeof(char *));
			r->backing = xrealloc(r->backing, (r->n + 1) * sizeof(char *));
			r->was = xrealloc(r->was, (r->n + 1) * sizeof(char *));
			r->image[r->n] = xstrdup(image_path(up));
			r->was[r->n] = xstrdup(real);
			r->backing[r->n++] = xasprintf("%s%s", to, real + strlen(from));
			break;
		}
	}
	image_close(img);
}

int vi_layer_adopt(const struct vi_store *s, const struct vi_vm *vm, char **users, size_t n)
{
	char real[PATH_MAX];
	char *disks = vi_store_path(s, "vms/%s/disks", vm->name);
	char *parent = vi_store_path(s, "images/layers");
	char *dest = vi_store_path(s, "images/layers/%s", vm->uuid);
	char *from = NULL, *to = xasprintf("%s/", dest);
	struct repoint r = { 0 };
	int rc = 0;

	if (!realpath(disks, real)) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot resolve '%s'", disks);
		goto cleanup;
	}
	from = xasprintf("%s/", real);
	for (size_t i = 0; i < n; i++) {
		struct vi_vm user;
		if (vi_store_load_vm(s, users[i], &user) < 0) {
			vi_error_clear();
			continue;
		}
		char *dir = vi_store_path(s, "vms/%s", users[i]);
		for (size_t k = 0; k < user.ndisks; k++) {
			char *p = absolute(dir, user.disks[k].path);
			repoint_find(p, from, to, &r);
			free(p);
		}
		free(dir);
		vi_vm_release(&user);
	}
	/* Every image to repoint must be writable now (no running VM holds
	 * it), so that the move is not left half done. */
	for (size_t i = 0; i < r.n && rc == 0; i++) {
		struct image *img;
		if ((rc = image_open(r.image[i], IMAGE_PROBE,
				     IMAGE_OPEN_WRITE | IMAGE_OPEN_NO_BACKING, &img)) == 0)
			image_close(img);
		else
			vi_error_wrap("cannot keep the layers of '%s' for the VMs that read them",
				      vm->name);
	}
	if (rc < 0 || (rc = vi_mkdir_p(parent, 0711)) < 0)
		goto cleanup;
	if (rename(disks, dest) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot move '%s' to '%s'", disks, dest);
		goto cleanup;
	}
	size_t done = 0;
	for (; done < r.n && rc == 0; done++)
		rc = image_set_backing(r.image[done], r.backing[done], IMAGE_QCOW2);
	if (rc < 0) {
		/* Put everything back where it was. */
		for (size_t i = 0; i + 1 < done; i++)
			image_set_backing(r.image[i], r.was[i], IMAGE_QCOW2);
		rename(dest, disks);
		goto cleanup;
	}
	/* The VM's own overlays are nobody's layer: only they go. */
	for (size_t k = 0; k < vm->ndisks && rc == 0; k++) {
		if (strncmp(vm->disks[k].path, "disks/", 6))
			continue;
		char *own = xasprintf("%s/%s", dest, vm->disks[k].path + 6);
		unlink(own);
		free(own);
	}
cleanup:
	for (size_t i = 0; i < r.n; i++) {
		free(r.image[i]);
		free(r.backing[i]);
		free(r.was[i]);
	}
	free(r.image);
	free(r.backing);
	free(r.was);
	free(disks);
	free(parent);
	free(dest);
	free(from);
	free(to);
	return rc;
}
