/* The image tools module, vi-tools.so: the golden-image build (libguestfs)
 * and export and import (libarchive). Those libraries and the dozens they
 * bring cost every command ~18 ms of dynamic loading, so they live in a module
 * that only the commands doing that work load. The module takes libvi from
 * the vi executable, which exports all of it, so there is one error state. */
#ifndef VI_TOOLS_H
#define VI_TOOLS_H

#include "template.h"

#define VI_TOOLS_FILE "vi-tools.so"
/* The one symbol the module exports: a const struct vi_tools. */
#define VI_TOOLS_SYMBOL "vi_tools"

/* The module shares libvi's structures, so it is only used by the vi of its
 * own version. The methods follow the libvi conventions (0 or a negative
 * VI_E* code with a message). */
struct vi_tools {
	const char *version; /* VI_VERSION of its build */
	/* Builds t into images/<digest>/, digest (the content's) going to the
	 * caller; its base is built already and the caller holds
	 * template_lock() of t->digest. */
	int (*build_image)(struct vi_store *s, struct template *t,
			   const struct template_build_opts *opts, char digest[SHA256_HEX_SIZE]);
	/* template_export() and template_import(). */
	int (*export_images)(const struct vi_store *s, const char *digest, const char *path,
			     enum template_compression compression, template_progress_fn progress,
			     void *opaque);
	int (*import_images)(struct vi_store *s, const char *path,
			     const struct template_import_opts *opts,
			     struct template_strv *digests);
};

/* The module's table in *tools, loaded on the first call and kept loaded.
 * It is looked for beside the vi binary (a build tree), then where `make
 * install` puts it relative to the binary, then in the installed directory.
 * Errors (VI_EFAIL) name the file. Not for concurrent first calls. */
int vi_tools_load(const struct vi_tools **tools);

#endif
