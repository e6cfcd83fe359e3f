/* vi destroy NAME: stop the VM if it runs, forget it on its backend, and
 * remove its definition, disks and state. */
#include "cmd.h"
#include "error.h"
#include "log.h"
#include "ops.h"
#include "output.h"

#include <stdio.h>
#include <string.h>

static int force;

const struct vi_option destroy_options[] = {
	{ "force", 'f', VI_OPT_FLAG, &force, NULL,
	  "destroy it even when its backend is missing or fails" },
	OPT_CONNECT,
	OPT_JSON,
	VI_OPT_TABLE_END,
};

int cmd_destroy(int argc, char **argv)
{
	struct vi_machine m;
	int rc;
	(void)argc;

	if ((rc = vi_machine_open(&ctx.store, &ctx.plugins, argv[0], ctx.connect, !force, &m)) < 0) {
		/* A definition nobody can read still goes with --force. */
		if (!force || rc == -VI_ENOTFOUND || vi_store_vm_exists(&ctx.store, argv[0]) < 0)
			return rc;
		vi_warn("%s; removing VM '%s' anyway", vi_error_message(), argv[0]);
		if ((rc = vi_op_forget(&ctx.store, argv[0])) == 0)
			cmd_report_state(argv[0], "destroyed", "destroyed");
		return rc;
	}
	if ((rc = vi_op_destroy(&ctx.store, &m, force ? VI_OP_FORCE : 0)) == 0)
		cmd_report_state(argv[0], "destroyed", "destroyed");
	vi_machine_release(&m);
	return rc;
}
