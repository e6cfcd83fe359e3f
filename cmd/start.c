/* vi start NAME: boot a defined VM. The console log starts afresh each boot. */
#include "cmd.h"
#include "error.h"
#include "log.h"
#include "machine.h"
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
	struct vi_hv_state st;
	int rc;
	(void)argc;

	if ((rc = vi_machine_open(&ctx.store, &ctx.plugins, argv[0], ctx.connect, true, &m)) < 0)
		return rc;
	vi_machine_state(&m, &st);
	if (st.state == VI_HV_RUNNING || st.state == VI_HV_PAUSED) {
		rc = vi_error(VI_ESTATE, "VM '%s' is already %s", argv[0], vi_hv_state_name(st.state));
		goto cleanup;
	}
	if ((rc = vi_mkdir_p(m.view.run_dir, 0711)) < 0)
		goto cleanup;
	if (unlink(m.view.console_log) < 0 && errno != ENOENT) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot reset '%s'", m.view.console_log);
		goto cleanup;
	}
	if ((rc = vi_hv_start(m.hv, &m.view.vm)) < 0)
		goto cleanup;
	cmd_report_state(argv[0], "running", "started");
cleanup:
	vi_machine_release(&m);
	return rc;
}
