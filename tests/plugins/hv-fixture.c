/* A test backend "fixture": loads and probes OK, keeps VM state in a file in
 * the VM's run directory, and leaves most methods NULL so the host's
 * "unsupported" path can be tested. */
#include <vi/hv-plugin.h>

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

static int fixture_probe(struct vi_hv_ctx *ctx, const char **reason)
{
	*reason = ctx->uri ? ctx->uri : "fixture backend for tests";
	return VI_HV_PROBE_OK;
}

static int fixture_state(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, struct vi_hv_state *out)
{
	char path[4096], word[32] = "";
	FILE *f;

	snprintf(path, sizeof(path), "%s/fixture-state", vm->run_dir);
	f = fopen(path, "r");
	if (!f) {
		out->state = VI_HV_STOPPED;
		return 0;
	}
	if (!fgets(word, sizeof(word), f))
		word[0] = '\0';
	fclose(f);
	if (!strncmp(word, "running", 7))
		out->state = VI_HV_RUNNING;
	else if (!strncmp(word, "error", 5))
		return ctx->host->error(VI_EFAIL, "fixture state of '%s' is broken", vm->name);
	else
		out->state = VI_HV_STOPPED;
	return 0;
}

static const struct vi_hv_ops ops = {
	.struct_size = sizeof(struct vi_hv_ops),
	.abi_version = VI_HV_ABI_VERSION,
	.name = "fixture",
	.description = "test fixture backend",
	.features = VI_HV_F_DIRECT_BOOT,
	.probe = fixture_probe,
	.state = fixture_state,
};

VI_HV_EXPORT const struct vi_hv_ops *vi_hv_plugin_init(const struct vi_host *host)
{
	(void)host;
	return &ops;
}
