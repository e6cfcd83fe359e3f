/* The layer store: frozen disk layers, how linked clones (and snapshots)
 * share data. Freezing a VM's disk turns what it holds into a read-only
 * layer, images/layers/<id>.qcow2, and gives the VM a fresh qcow2 overlay on
 * it; clones get overlays on the same layer. Nothing is copied, so a clone
 * costs the same whatever the disk's size.
 *
 * images/layers/index.yaml records every layer: its parent layer (or the
 * image it is backed by when that is no layer: a golden image, a user's
 * file), and who references it ("vm:NAME", and "snapshot:NAME/ID"). A VM's
 * vm.yaml records, per disk, the layer its overlay sits on. References may
 * over-count after a crash (a layer is kept too long), never under-count (a
 * layer is never removed while read). A layer goes when nothing references
 * it and no layer is backed by it.
 *
 * Every step is ordered so that an interrupted command leaves every VM with
 * a valid disk: the index learns of a layer before the layer exists, the
 * current file is linked to its layer name before the VM's new overlay is
 * renamed over it, and files are removed only after the index forgot them.
 *
 * A store written before layers had their own place (frozen files beside the
 * VMs' overlays, adopted ones under images/layers/<uuid>/) is moved to this
 * layout the first time the index is read, under the index's lock.
 *
 * Strings returned are the caller's. */
#ifndef VI_LAYERS_H
#define VI_LAYERS_H

#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "store.h"
#include "vm.h"

struct vi_layer {
	char *id;
	char *parent;  /* the layer it is backed by, or NULL */
	char *backing; /* the image it is backed by when that is not a layer, or NULL */
	char **refs;   /* "vm:NAME", "snapshot:NAME/ID" */
	size_t nrefs;
	char **aliases; /* older names of its file that images still point at (migration) */
	size_t naliases;
	time_t created;
};

struct vi_layer_index {
	struct vi_layer *layers;
	size_t n;
	int lock_fd;
	char *on_disk; /* the index as last read or written: a write of the same is none */
};

/* Takes the store's layer lock (waiting for other commands), reads the index
 * and, for a store of the previous layout, moves its layers here first. */
int vi_layers_open(const struct vi_store *s, struct vi_layer_index *idx);
/* Moves a store of the previous layout to this one, once: a stat when done. */
int vi_layers_upgrade(const struct vi_store *s);
/* Writes the index atomically, removes the files of layers nothing needs any
 * more, and releases the lock. Without commit (on an error path) release
 * only unlocks and frees. */
int vi_layers_commit(const struct vi_store *s, struct vi_layer_index *idx);
void vi_layers_release(struct vi_layer_index *idx);
/* On an error path: commits what happened all the same (layers made for
 * nothing go), keeping the error being reported. */
void vi_layers_commit_anyway(const struct vi_store *s, struct vi_layer_index *idx);
/* Writes the index now (unless it is as last read or written), keeping the lock:
 * before files that rely on what it records (a clone's overlay on a layer) are
 * made. */
int vi_layers_write(const struct vi_store *s, struct vi_layer_index *idx);

struct vi_layer *vi_layer_find(struct vi_layer_index *idx, const char *id);
/* The layer id, added with parent and backing (copied, either may be NULL)
 * when the index does not know it: for a layer file brought from another
 * store. Its references are the caller's to add. */
struct vi_layer *vi_layer_import(struct vi_layer_index *idx, const char *id, const char *parent,
				 const char *backing);
/* The absolute path of layer id's file. */
char *vi_layer_path(const struct vi_store *s, const char *id);
/* The id of the layer at path (an absolute path under images/layers/), or NULL. */
char *vi_layer_id_of(const struct vi_store *s, const char *path);

/* Adds or drops a reference; adding one twice keeps one. */
void vi_layer_ref(struct vi_layer_index *idx, const char *id, const char *ref);
void vi_layer_unref(struct vi_layer_index *idx, const char *id, const char *ref);
/* Drops every reference VM name holds, its snapshots' included. */
void vi_layer_unref_vm(struct vi_layer_index *idx, const char *name);

/* Whether the image at path holds no data of its own over a backing file: a
 * qcow2 overlay nothing has written since it was made. 1, with *backing (when
 * not NULL) the backing file as an absolute path; 0 when it holds data or is
 * no overlay; a negative code when it cannot be read. open_flags are added to
 * image_open()'s IMAGE_OPEN_NO_BACKING. */
int vi_image_unwritten(const char *path, unsigned open_flags, char **backing);

/* Freezes disk d of the stopped VM `vm` (in vm_dir): d->path may change to
 * the VM's new overlay and d->layer names the new layer (the caller saves
 * the definition). *backing gets the absolute path clones should use as
 * their backing file. A disk that holds no data of its own over a backing
 * image is not frozen again: its backing is the layer. Read-only disks are
 * their own layer. */
int vi_layer_freeze(const struct vi_store *s, struct vi_layer_index *idx, const struct vi_vm *vm,
		    const char *vm_dir, struct vi_vm_disk *d, char **backing);

/* For a running VM, whose image stays open in the hypervisor: links the image
 * disk d uses now to a new layer and makes the overlay the disk is to move
 * onto, at a fresh name in the VM's disks/, backed by the layer. *overlay and
 * *backing get absolute paths; *overlay is NULL for a read-only disk (its own
 * layer). Once the backend has moved the disk (vi_hv_switch_disks()),
 * vi_layer_live_done() records the move in d; if it could not,
 * vi_layer_live_undo() takes the overlay and the layer away again. */
int vi_layer_live(const struct vi_store *s, struct vi_layer_index *idx, const struct vi_vm *vm,
		  const char *vm_dir, const struct vi_vm_disk *d, char **overlay, char **backing);
void vi_layer_live_done(const struct vi_store *s, struct vi_layer_index *idx, const char *vm_name,
			const char *vm_dir, struct vi_vm_disk *d, const char *overlay,
			const char *backing);
void vi_layer_live_undo(const struct vi_store *s, struct vi_layer_index *idx, const char *overlay,
			const char *backing);

/* Creates a qcow2 overlay at path on backing (instant), readable by the
 * hypervisor's user, backing recorded as given. */
int vi_layer_overlay(const char *path, const char *backing);

/* A name for a new overlay of the image at path in the VM's disks/ that no
 * file has yet (absolute; the caller frees it). */
char *vi_layer_overlay_name(const char *vm_dir, const char *path);

/* Records the references of VM vm's disks to their layers. */
void vi_layers_ref_vm(struct vi_layer_index *idx, const struct vi_vm *vm);

/* Before VM vm's directory is removed: every image that still reaches a
 * layer through an older name inside it is pointed at the layer's own name.
 * -VI_ESTATE naming the image when one is in use. */
int vi_layers_release_dir(const struct vi_store *s, struct vi_layer_index *idx,
			  const struct vi_vm *vm);

#endif
