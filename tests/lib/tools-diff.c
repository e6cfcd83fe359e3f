/* Runs vi_tools_diff() as `vi snapshot diff` will, for the tests of the
 * engine before the verb exists:
 *   tools-diff [--format FMT] [--content] A-DISK... -- B-DISK...
 * prints the entries as virt-diff does (vi_diff_print), progress on a
 * terminal, and errors as vi does: "tools-diff: MESSAGE", exit status the
 * VI_E* code. It loads vi-tools.so from beside itself. */
#include "error.h"
#include "progress.h"
#include "tools.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "format", required_argument, NULL, 'f' },
		{ "content", no_argument, NULL, 'c' },
		{ 0 },
	};
	struct vi_progress progress;
	struct vi_diff_opts o = { .progress = vi_progress_report, .opaque = &progress };
	struct vi_diff diff;
	int c, sep, rc;

	while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
		if (c == 'f')
			o.a.format = o.b.format = optarg;
		else if (c == 'c')
			o.flags |= VI_DIFF_CONTENT;
		else
			return 2;
	}
	for (sep = optind; sep < argc && strcmp(argv[sep], "--"); sep++)
		;
	if (sep == argc) {
		fprintf(stderr, "usage: tools-diff [--format FMT] [--content] A-DISK... -- B-DISK...\n");
		return 2;
	}
	o.a.paths = (const char *const *)argv + optind;
	o.a.n = sep - optind;
	o.b.paths = (const char *const *)argv + sep + 1;
	o.b.n = argc - sep - 1;
	vi_progress_start(&progress, 0, "diffing");
	rc = vi_tools_diff(&o, &diff);
	vi_progress_end(&progress);
	if (rc < 0) {
		fprintf(stderr, "tools-diff: %s\n", vi_error_message());
		return -rc;
	}
	vi_diff_print(&diff, stdout);
	vi_diff_release(&diff);
	if (fflush(stdout) || ferror(stdout)) {
		perror("tools-diff: stdout");
		return 1;
	}
	return 0;
}
