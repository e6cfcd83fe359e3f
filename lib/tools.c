/* Finding and loading vi-tools.so, the image tools module, on first use (see
 * tools.h for why it is a module), and what the callers of its diff share
 * without needing it: the entries' release and their virt-diff text. */
#include "tools.h"
#include "error.h"
#include "util.h"

#include <dlfcn.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#ifndef VI_VERSION
#define VI_VERSION "0"
#endif
/* Where `make install` puts the module: relative to the binary's directory
 * (which also holds for a staged install under DESTDIR), and absolute. */
#ifndef VI_TOOLS_DIR_FROM_BIN
#define VI_TOOLS_DIR_FROM_BIN "../lib/vi"
#endif
#ifndef VI_TOOLS_DIR_DEFAULT
#define VI_TOOLS_DIR_DEFAULT "/usr/local/lib/vi"
#endif

#define LOAD_ERROR "cannot load the image tools module '%s'"

/* The first candidate that exists, as a canonical path the caller frees. */
static int tools_find(char **path)
{
	char *candidates[] = {
		vi_self_relative(VI_TOOLS_FILE),
		vi_self_relative(VI_TOOLS_DIR_FROM_BIN "/" VI_TOOLS_FILE),
		xstrdup(VI_TOOLS_DIR_DEFAULT "/" VI_TOOLS_FILE),
	};

	*path = NULL;
	for (size_t i = 0; i < ARRAY_SIZE(candidates); i++) {
		if (!*path)
			*path = realpath(candidates[i], NULL);
		free(candidates[i]);
	}
	if (!*path)
		return vi_error_errno(VI_EFAIL, ENOENT, LOAD_ERROR,
				      VI_TOOLS_DIR_DEFAULT "/" VI_TOOLS_FILE);
	return 0;
}

int vi_tools_load(const struct vi_tools **tools)
{
	static const struct vi_tools *loaded;
	const struct vi_tools *t = NULL;
	const char *why = NULL;
	char mismatch[128];
	char *path;
	void *h;
	int rc;

	if (loaded) {
		*tools = loaded;
		return 0;
	}
	if ((rc = tools_find(&path)) < 0)
		return rc;
	if (!(h = dlopen(path, RTLD_NOW | RTLD_LOCAL))) {
		/* dlerror() starts with the path, which the message has already. */
		size_t n = strlen(path);
		why = dlerror();
		if (!strncmp(why, path, n) && !strncmp(why + n, ": ", 2))
			why += n + 2;
	} else if (!(t = dlsym(h, VI_TOOLS_SYMBOL))) {
		why = "it has no symbol '" VI_TOOLS_SYMBOL "'";
	} else if (strcmp(t->version, VI_VERSION)) {
		snprintf(mismatch, sizeof(mismatch), "it is from vi %s, not %s", t->version,
			 VI_VERSION);
		why = mismatch;
	}
	if (why) {
		rc = vi_error(VI_EFAIL, LOAD_ERROR ": %s", path, why);
		if (h)
			dlclose(h);
	} else {
		loaded = *tools = t;
	}
	free(path);
	return rc;
}

/* --- diffs ---------------------------------------------------------------- */

int vi_tools_diff(const struct vi_diff_opts *opts, struct vi_diff *diff)
{
	const struct vi_tools *tools;
	int rc;

	memset(diff, 0, sizeof(*diff));
	rc = vi_tools_load(&tools);
	return rc < 0 ? rc : tools->diff(opts, diff);
}

int vi_growfs_offline(const char *path, const char *format, struct vi_fs_grow *out)
{
	const struct vi_tools *tools;
	int rc;

	memset(out, 0, sizeof(*out));
	rc = vi_tools_load(&tools);
	return rc < 0 ? rc : tools->grow_fs(path, format, out);
}

void vi_diff_release(struct vi_diff *diff)
{
	for (size_t i = 0; i < diff->n; i++) {
		free(diff->v[i].path);
		free(diff->v[i].a.link);
		free(diff->v[i].b.link);
		free(diff->v[i].content);
	}
	free(diff->v);
	memset(diff, 0, sizeof(*diff));
}

const char *vi_diff_attr_name(enum vi_diff_attr attr)
{
	static const char *const names[VI_DIFF_NATTRS] = {
		"st_dev",  "st_ino",     "st_mode",   "st_nlink",     "st_uid",
		"st_gid",  "st_rdev",    "st_size",   "st_blksize",   "st_blocks",
		"st_atime_sec", "st_mtime_sec", "st_ctime_sec", "xattrs",
	};

	return (unsigned)attr < VI_DIFF_NATTRS ? names[attr] : NULL;
}

/* virt-diff's columns for one side: "+ - 0644       1234 /etc/motd". */
static void print_file(FILE *out, char kind, const char *path, const struct vi_diff_file *f)
{
	fprintf(out, "%c %c %04o %10" PRId64 " %s", kind, f->type, f->mode, f->size, path);
	if (f->link)
		fprintf(out, " -> %s", f->link);
	fputc('\n', out);
}

void vi_diff_print(const struct vi_diff *diff, FILE *out)
{
	for (size_t i = 0; i < diff->n; i++) {
		const struct vi_diff_entry *e = &diff->v[i];

		switch (e->kind) {
		case VI_DIFF_ADDED:
			print_file(out, '+', e->path, &e->b);
			break;
		case VI_DIFF_REMOVED:
			print_file(out, '-', e->path, &e->a);
			break;
		case VI_DIFF_CHANGED:
			print_file(out, '=', e->path, &e->a);
			if (e->content)
				fprintf(out, "%s@@ End of diff @@\n", e->content);
			break;
		case VI_DIFF_ATTRS:
			print_file(out, '-', e->path, &e->a);
			print_file(out, '+', e->path, &e->b);
			fputs("# changed:", out);
			for (unsigned a = 0; a < VI_DIFF_NATTRS; a++)
				if (e->changed & (1u << a))
					fprintf(out, " %s", vi_diff_attr_name(a));
			fputc('\n', out);
			break;
		}
	}
}
