/* vi stop NAME: ask the guest to power off; after --timeout, or at once with
 * --force, pull the plug. */
#include "cmd.h"
#include "error.h"
#include "log.h"
#include "ops.h"
#include "output.h"

#include <stdio.h>

static int force;
static uint64_t timeout = 30;

const struct vi_option stop_options[] = {
	{ "force", 'f', VI_OPT_FLAG, &force, NULL, "stop at once, as pulling the plug" },
	{ "timeout", 't', VI_OPT_UINT, &timeout, "SECONDS",
	  "wait this long for a graceful stop before forcing it (default 30)", .max = 86400 },
	OPT_CONNECT,
	OPT_JSON,
	VI_OPT_TABLE_END,
};

int cmd_stop(int argc, char **argv)
{
	struct vi_machine m;
	int rc;
	(void)argc;

	if ((rc = vi_machine_open(&ctx.store, &ctx.plugins, argv[0], ctx.connect, true, &m)) < 0)
		return rc;
	if ((rc = vi_op_stop(&m, force, (unsigned)timeout * 1000)) == 0)
		cmd_report_state(argv[0], "stopped", "stopped");
	vi_machine_release(&m);
	return rc;
}
