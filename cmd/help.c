/* vi help [VERB]: the manual page of vi or of one verb, from the build tree
 * when run from there, else from the installed manual. */
#include "cmd.h"
#include "error.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef VI_MAN_DIR_DEFAULT
#define VI_MAN_DIR_DEFAULT "/usr/local/share/man"
#endif
#ifndef VI_MAN_DIR_FROM_BIN
#define VI_MAN_DIR_FROM_BIN "../share/man"
#endif

const struct vi_option help_options[] = {
	VI_OPT_TABLE_END,
};

static char *find_page(const char *page)
{
	/* The source tree's man/, then an install's, staged or not. */
	char *in_tree = xasprintf("../man/%s.1", page);
	char *installed = xasprintf("%s/man1/%s.1", VI_MAN_DIR_FROM_BIN, page);
	char *candidates[] = {
		vi_self_relative(in_tree),
		vi_self_relative(installed),
		xasprintf("%s/man1/%s.1", VI_MAN_DIR_DEFAULT, page),
	};
	char *found = NULL;

	for (size_t i = 0; i < ARRAY_SIZE(candidates); i++) {
		if (!found && vi_file_exists(candidates[i]))
			found = candidates[i];
		else
			free(candidates[i]);
	}
	free(in_tree);
	free(installed);
	return found;
}

int cmd_help(int argc, char **argv)
{
	char page[96] = "vi";

	if (argc) {
		const struct cmd *c = NULL;
		const char *names[64];
		size_t n = 0;
		for (const struct cmd *t = commands; t->name; t++) {
			if (t->flags & HIDDEN)
				continue;
			if (!strcmp(t->name, argv[0]))
				c = t;
			names[n++] = t->name;
		}
		if (!c) {
			const char *s = vi_suggest(argv[0], names, n);
			if (s)
				return vi_error(VI_ENOTFOUND, "no verb '%s'; did you mean '%s'?", argv[0], s);
			return vi_error(VI_ENOTFOUND, "no verb '%s' (see 'vi --help')", argv[0]);
		}
		snprintf(page, sizeof(page), "vi-%s", c->name);
	}
	char *path = find_page(page);
	if (!path)
		return vi_error(VI_ENOTFOUND, "no manual page '%s' is installed", page);
	fflush(stdout);
	/* man formats for the terminal and pages; piped, it prints plain text. */
	execlp("man", "man", "-l", path, (char *)NULL);
	execlp("mandoc", "mandoc", "-a", path, (char *)NULL);
	int rc = vi_error_errno(VI_EFAIL, errno, "cannot run man or mandoc for '%s'", path);
	free(path);
	return rc;
}
