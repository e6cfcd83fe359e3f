/* Finding and loading vi-tools.so, the image tools module, on first use (see
 * tools.h for why it is a module). */
#include "tools.h"
#include "error.h"
#include "util.h"

#include <dlfcn.h>
#include <errno.h>
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
