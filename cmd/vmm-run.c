/* vi __vmm-run NAME: the process of a VM whose VMM is vi itself. 'vi start'
 * re-executes vi with this internal verb, detached, with fd 3 as the pipe on
 * which the backend says whether the guest started ("1", or "0" + message).
 * --restore FILE starts the guest from a saved state instead of booting it,
 * --incoming FD from a migration stream; --paused leaves it paused; --unchecked maps
 * a saved state's memory without reading it to check it. */
#include "cmd.h"
#include "error.h"
#include "machine.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static const char *restore_path;
static uint64_t incoming_fd;
static int paused, unchecked;

const struct vi_option vmm_run_options[] = {
	OPT_HV,
	{ "restore", 0, VI_OPT_STRING, &restore_path, "FILE", "start from this saved state",
	  VI_COMPLETE_FILE },
	{ "incoming", 0, VI_OPT_UINT, &incoming_fd, "FD", "start from a migration stream on FD",
	  .min = 3, .max = 65535 },
	{ "paused", 0, VI_OPT_FLAG, &paused, NULL, "leave a restored guest paused" },
	{ "unchecked", 0, VI_OPT_FLAG, &unchecked, NULL,
	  "the saved state is as it was written: map its memory unread" },
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
	struct vi_hv_run_opts opts = {
		.struct_size = sizeof(opts),
		.notify_fd = notify,
		.state_path = restore_path,
		.incoming_fd = incoming_fd ? (int)incoming_fd : -1,
		.flags = (paused ? VI_HV_RUN_PAUSED : 0) | (unchecked ? VI_HV_RUN_UNCHECKED : 0),
	};
	rc = vi_hv_run(m.hv, &m.view.vm, &opts);
	vi_machine_release(&m);
	return rc;
}
