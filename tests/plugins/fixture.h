/* What the fixture backends share: a VM's state kept in one word in the file
 * run/fixture-state ("running", "paused", "stopped" or "error"), so that tests
 * can set it by hand and the backend's methods change it. */
#ifndef VI_TEST_FIXTURE_H
#define VI_TEST_FIXTURE_H

#include <vi/hv-plugin.h>

#include <stdio.h>
#include <string.h>

static void fixture_path(const struct vi_hv_vm *vm, const char *file, char *buf, size_t len)
{
	snprintf(buf, len, "%s/%s", vm->run_dir, file);
}

static int fixture_get(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm)
{
	char path[4096], word[32] = "";
	FILE *f;

	fixture_path(vm, "fixture-state", path, sizeof(path));
	if (!(f = fopen(path, "r")))
		return VI_HV_STOPPED;
	if (!fgets(word, sizeof(word), f))
		word[0] = '\0';
	fclose(f);
	if (!strncmp(word, "running", 7))
		return VI_HV_RUNNING;
	if (!strncmp(word, "paused", 6))
		return VI_HV_PAUSED;
	if (!strncmp(word, "error", 5))
		return ctx->host->error(VI_EFAIL, "fixture state of '%s' is broken", vm->name);
	return VI_HV_STOPPED;
}

static int fixture_state(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, struct vi_hv_state *out)
{
	int state = fixture_get(ctx, vm);

	if (state < 0)
		return state;
	out->state = state;
	return 0;
}

static int fixture_probe(struct vi_hv_ctx *ctx, const char **reason)
{
	*reason = ctx->uri ? ctx->uri : "fixture backend for tests";
	return VI_HV_PROBE_OK;
}

#endif
