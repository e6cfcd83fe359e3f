/* What the template modules (template.c, template-store.c, and those of
 * vi-tools.so: tools/template-build.c, template-rootfs.c, template-archive.c)
 * share and nobody else needs. */
#ifndef VI_TEMPLATE_INTERNAL_H
#define VI_TEMPLATE_INTERNAL_H

#include "template.h"

/* The static busybox a `source: busybox` disk is made from (busybox-static). */
#define TEMPLATE_BUSYBOX "/bin/busybox"

/* The digest of a host file's contents, remembered for the life of the
 * process (keyed by device, inode, size and modification time). */
int template_input_hash(const char *path, char hex[SHA256_HEX_SIZE]);

/* Whether ref is a template file path or a name on the search path. */
bool template_exists(const char *home, const char *ref);

/* The file name of disk i in an image directory: disk.qcow2, disk1.qcow2...
 * The caller frees it. */
char *template_disk_file(size_t i);

/* Serialises the commands that make or remove the image `digest`: an
 * exclusive flock on images/.locks/<digest>, so builds of different images
 * run side by side. Whoever holds it first clears what an interrupted run
 * left behind (images/.new-<digest>-*). Returns a descriptor for
 * vi_store_unlock(). */
int template_lock(const struct vi_store *s, const char *digest);

/* manifest.yaml: written atomically into dir, and read back. */
int template_manifest_save(const char *dir, const struct template_image *img);
int template_manifest_load(const char *path, const char *dir, struct template_image *img);

/* Removes what interrupted work left in images/: every entry stale(name,
 * arg) picks. Failing to remove one is no error (the next run tries again). */
typedef bool (*template_stale_fn)(const char *name, const void *arg);
void template_clear_staged(const struct vi_store *s, template_stale_fn stale, const void *arg);

/* A staging directory images/<prefix>XXXXXX (mode 0711), at the same depth
 * as the images so relative backing names stay valid when it is renamed.
 * The caller frees the path. */
int template_stage_dir(const struct vi_store *s, const char *prefix, char **dir);

#endif
