/* What the files of vi-tools.so share: the functions behind its table (see
 * tools.h) and the steps of the build. */
#ifndef VI_TOOLS_INTERNAL_H
#define VI_TOOLS_INTERNAL_H

#include "template-internal.h"
#include "tools.h"

#include <guestfs.h>
#include <stdarg.h>

/* The methods of struct vi_tools, documented there. */
int template_build_image(struct vi_store *s, struct template *t,
			 const struct template_build_opts *opts, char digest[SHA256_HEX_SIZE]);
int template_export_archive(const struct vi_store *s, const char *digest, const char *path,
			    enum template_compression compression, template_progress_fn progress,
			    void *opaque);
int template_import_archive(struct vi_store *s, const char *path,
			    const struct template_import_opts *opts, struct template_strv *digests);
int tools_diff(const struct vi_diff_opts *opts, struct vi_diff *diff);
/* vi_growfs_offline(), in the module. */
int tools_grow_fs(const char *path, const char *format, struct vi_fs_grow *out);

/* A libguestfs handle with errors left to guestfs_last_error(), on the
 * direct backend and with TCG where the host has no hardware
 * virtualization, unless LIBGUESTFS_BACKEND(_SETTINGS) say otherwise; NULL
 * when libguestfs cannot make one. */
guestfs_h *tools_guestfs_create(void);
/* Records "cannot <fmt>: <libguestfs's last error>" (VI_EFAIL). */
int tools_guestfs_error(guestfs_h *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
int tools_guestfs_verror(guestfs_h *g, const char *fmt, va_list ap)
	__attribute__((format(printf, 2, 0)));
/* The mount points inspection found for the operating system at root, as
 * *n pairs of mount point and mountable in the order to mount them (parents
 * first); NULL on error (guestfs_last_error). Free with tools_strv_free(). */
char **tools_mountpoints(guestfs_h *g, const char *root, size_t *n);
/* Frees a NULL-terminated string list as libguestfs returns them. */
void tools_strv_free(char **v);

/* Writes the root file system of disk d (busybox, tarball or debootstrap)
 * as a plain tar file; stage is a scratch directory. extra_package, when not
 * NULL, joins a debootstrap's packages (the template's kernel package). */
int template_rootfs(const struct template *t, const struct template_disk *d, const char *stage,
		    const char *tar, const char *extra_package);

/* Writes the minimal initrd of t (`initrd: minimal`) to path. */
int template_initrd(const struct template *t, const char *path);

#endif
