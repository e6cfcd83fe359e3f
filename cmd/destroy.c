/* vi destroy NAME: stop the VM if it runs, forget it on its backend, and
 * remove its definition, disks and state. */
#include "cmd.h"
#include "error.h"
#include "layers.h"
#include "log.h"
#include "machine.h"
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
	struct vi_hv_state st;
	struct vi_layer_index idx = { .lock_fd = -1 };
	int rc;
	(void)argc;

	if ((rc = vi_machine_open(&ctx.store, &ctx.plugins, argv[0], ctx.connect, !force, &m)) < 0)
		return rc;
	/* Layers its clones and snapshots read stay in the layer store; only
	 * older names of them inside its directory need care first. */
	if ((rc = vi_layers_open(&ctx.store, &idx)) < 0 ||
	    (rc = vi_layers_release_dir(&ctx.store, &idx, &m.def)) < 0)
		goto cleanup;
	if (m.hv) {
		vi_machine_state(&m, &st);
		if (st.state == VI_HV_RUNNING || st.state == VI_HV_PAUSED ||
		    st.state == VI_HV_SHUTTING_DOWN)
			rc = vi_hv_stop(m.hv, &m.view.vm, VI_HV_STOP_FORCE, 0);
		if (rc == 0)
			rc = vi_hv_undefine(m.hv, &m.view.vm);
		if (rc < 0 && !force)
			goto cleanup;
		if (rc < 0)
			vi_warn("%s; removing VM '%s' anyway", vi_error_message(), argv[0]);
	}
	if ((rc = vi_store_remove_vm(&ctx.store, argv[0])) < 0)
		goto cleanup;
	vi_layer_unref_vm(&idx, argv[0]);
	if ((rc = vi_layers_commit(&ctx.store, &idx)) < 0)
		goto cleanup;
	cmd_report_state(argv[0], "destroyed", "destroyed");
cleanup:
	vi_layers_release(&idx);
	vi_machine_release(&m);
	return rc;
}
