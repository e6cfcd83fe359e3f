/* What the template modules (template.c, template-store.c, and those of
 * vi-tools.so: tools/template-build.c, template-rootfs.c, template-archive.c)
 * share and nobody else needs. */
#ifndef VI_TEMPLATE_INTERNAL_H
#define VI_TEMPLATE_INTERNAL_H

#include "template.h"

/* The static busybox a `source: busybox` disk is made from (busybox-static). */
#define TEMPLATE_BUSYBOX "/bin/busybox"

/* The minimal initrd's /init (tools/template-initrd.c): a shell script,
 * part of the digest of the templates that use it. */
extern const char template_initrd_init[];
/* The host kernel's modules the minimal initrd loads, in this order, with
 * what each depends on before it. */
#define TEMPLATE_INITRD_MODULES                                                        \
	{ "crc32c_generic", "virtio_pci", "virtio_blk", "ext4", "virtio_rng" }

/* The digest of a host file's contents, remembered for the life of the
 * process (keyed by device, inode, size and modification time). */
int template_input_hash(const char *path, char hex[SHA256_HEX_SIZE]);

/* Whether ref is a template file path or a name on the search path. */
bool template_exists(const char *home, const char *ref);

/* The file name of disk i in an image directory: disk.qcow2, disk1.qcow2...
 * The caller frees it. */
char *template_disk_file(size_t i);

/* Serialises the commands that make or remove the image `digest` (or build
 * the template of that digest): an exclusive flock on
 * images/.locks/<digest>, so builds of different images run side by side. Whoever holds it first clears what an interrupted run
 * left behind (images/.new-<digest>-*). Returns a descriptor for
 * vi_store_unlock(). */
int template_lock(const struct vi_store *s, const char *digest);

/* The files of an image: its manifest, disks, kernel and initrd, as paths
 * in img->dir (the caller releases them). */
void template_image_files(const struct template_image *img, struct template_strv *files);

/* An image's name: the SHA-256 of the lines "HEX  FILE\n" (sha256sum's), one
 * for each of its files, sorted by file name. The lines are sorted in
 * place. */
void template_sums_digest(struct template_strv *lines, char hex[SHA256_HEX_SIZE]);
/* The same from the files themselves (img->dir and the paths in img). */
int template_content_digest(const struct template_image *img, char hex[SHA256_HEX_SIZE]);

/* Moves a finished image directory into the store as images/<digest>,
 * under the image's lock; an image of that digest already there is the
 * same content, and the staged copy is dropped. */
int template_land(const struct vi_store *s, const char *stage, const char *digest);

/* The indexes beside the images: images/recipes/<template digest> (written
 * by builds) and images/names/<name> (by builds and imports), each holding
 * an image digest, replaced atomically. */
int template_index_set(const struct vi_store *s, const char *index, const char *key,
		       const char *digest);
/* The image an index entry names, or NULL when none or that image is gone. */
char *template_index_get(const struct vi_store *s, const char *index, const char *key);

/* manifest.yaml: written atomically into dir, and read back. */
int template_manifest_save(const char *dir, const struct template_image *img);
int template_manifest_load(const char *path, const char *dir, struct template_image *img);

/* A staging directory images/<prefix>XXXXXX (mode 0711), at the same depth
 * as the images so relative backing names stay valid when it is renamed.
 * Builds stage in .new-<template digest>-<pid>-, imports in .import-<pid>-.
 * The caller frees the path. */
int template_stage_dir(const struct vi_store *s, const char *prefix, char **dir);


#endif
