/* What the files of vi-tools.so share: the functions behind its table (see
 * tools.h) and the steps of the build. */
#ifndef VI_TOOLS_INTERNAL_H
#define VI_TOOLS_INTERNAL_H

#include "template-internal.h"

/* The methods of struct vi_tools, documented there. */
int template_build_image(struct vi_store *s, struct template *t,
			 const struct template_build_opts *opts, char digest[SHA256_HEX_SIZE]);
int template_export_archive(const struct vi_store *s, const char *digest, const char *path,
			    enum template_compression compression, template_progress_fn progress,
			    void *opaque);
int template_import_archive(struct vi_store *s, const char *path,
			    const struct template_import_opts *opts, struct template_strv *digests);

/* Writes the root file system of disk d (busybox, tarball or debootstrap)
 * as a plain tar file; stage is a scratch directory. extra_package, when not
 * NULL, joins a debootstrap's packages (the template's kernel package). */
int template_rootfs(const struct template *t, const struct template_disk *d, const char *stage,
		    const char *tar, const char *extra_package);

#endif
