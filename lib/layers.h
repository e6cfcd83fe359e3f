/* Disk layers: how linked clones share data. Freezing a VM's disk turns what
 * it holds into a read-only layer and gives the VM a fresh qcow2 overlay on
 * it; clones get overlays on the same layer. Nothing is copied, so a clone
 * costs the same whatever the disk's size.
 *
 * Each step is ordered so that an interrupted command leaves every VM with a
 * valid disk: the current file is first linked to its frozen name, the new
 * overlay is written under a temporary name, and only then renamed over the
 * old one. Strings returned are the caller's. */
#ifndef VI_LAYERS_H
#define VI_LAYERS_H

#include <stdbool.h>
#include <stddef.h>

#include "store.h"
#include "vm.h"

/* Freezes disk d of the VM in vm_dir (d->path may be changed to the VM's new
 * overlay; the caller saves the definition). *layer gets the absolute path of
 * the read-only layer clones should use as backing. A disk that holds no data
 * of its own over a backing image is not frozen again: its backing is the
 * layer. Read-only disks are their own layer. */
int vi_layer_freeze(const char *vm_dir, struct vi_vm_disk *d, char **layer);

/* For a running VM, whose image stays open in the hypervisor: makes the
 * overlay disk d is to move onto, at a fresh name in the VM's disks/, backed by
 * the image d uses now, which becomes the layer. *overlay and *layer get
 * absolute paths; *overlay is NULL for a read-only disk (its own layer). Once
 * the backend has moved the disk (vi_hv_switch_disks()), vi_layer_live_done()
 * records the move in d; if it could not, the caller unlinks *overlay. */
int vi_layer_live(const char *vm_dir, const struct vi_vm_disk *d, char **overlay, char **layer);
void vi_layer_live_done(struct vi_vm_disk *d, const char *overlay, const char *layer);

/* Creates a qcow2 overlay at path on layer (instant), readable by the
 * hypervisor's user; the layer is recorded relative to path's directory when
 * relative, else as given. */
int vi_layer_overlay(const char *path, const char *layer, bool relative);

/* The VMs (other than name) whose disks read through files in name's
 * directory: sorted names in *users (free with vi_store_names_free()). */
int vi_layer_users(const struct vi_store *s, const char *name, char ***users, size_t *n);

/* Before VM name is removed while others read its layers: moves its disks/
 * directory to images/layers/<uuid>/ and points the others' images at the
 * moved files, so no clone loses data. */
int vi_layer_adopt(const struct vi_store *s, const struct vi_vm *vm, char **users, size_t n);

#endif
