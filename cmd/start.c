/* vi start NAME: boot a defined VM. The console log starts afresh each boot. */
#include "cmd.h"
#include "error.h"
#include "log.h"
#include "ops.h"
#include "output.h"
#include "util.h"

#include <errno.h>
#include <stdio.h>
#include <unistd.h>

const struct vi_option start_options[] = {
	OPT_CONNECT,
	OPT_JSON,
	VI_OPT_TABLE_END,
};

int cmd_start(int argc, char **argv)
{
	struct vi_machine m;
	int rc;
	(void)argc;

	if ((rc = vi_machine_open(&ctx.store, &ctx.plugins, argv[0], ctx.connect, true, &m)) < 0)
		return rc;
	if ((rc = vi_op_start(&m)) == 0)
		cmd_report_state(argv[0], "running", "started");
	vi_machine_release(&m);
	return rc;
}
