/* vi __vmm-run NAME: the process of a VM whose VMM is vi itself. 'vi start'
 * re-executes vi with this internal verb, detached, with fd 3 as the pipe on
 * which the backend says whether the guest started ("1", or "0" + message). */
#include "cmd.h"
#include "error.h"
#include "machine.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

const struct vi_option vmm_run_options[] = {
	OPT_HV,
	VI_OPT_TABLE_END,
};

int cmd_vmm_run(int argc, char **argv)
{
	struct vi_machine m;
	int notify = fcntl(3, F_GETFD) >= 0 ? 3 : -1;
	int rc;
	(void)argc;

	rc = vi_machine_open(&ctx.store, &ctx.plugins, argv[0], NULL, true, &m);
	if (rc == 0 && ctx.hv && strcmp(ctx.hv, m.def.hv)) {
		rc = vi_error(VI_EUSAGE, "VM '%s' uses backend '%s', not '%s'", argv[0], m.def.hv,
			      ctx.hv);
		vi_machine_release(&m);
	}
	if (rc < 0) {
		/* The backend never ran: tell the waiting 'vi start' why. */
		if (notify >= 0) {
			dprintf(notify, "0%s", vi_error_message());
			close(notify);
		}
		return rc;
	}
	rc = vi_hv_run(m.hv, &m.view.vm, notify);
	vi_machine_release(&m);
	return rc;
}
