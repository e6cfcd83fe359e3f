/* A test backend built against a shorter ops table of the same ABI version,
 * as a plugin built before methods were appended would be: the host must
 * load it and treat the missing methods as unsupported. */
#include <vi/hv-plugin.h>

#include <stddef.h>

static int older_probe(struct vi_hv_ctx *ctx, const char **reason)
{
	(void)ctx;
	*reason = "older ops table";
	return VI_HV_PROBE_DECLINED;
}

/* Filled with real methods past the table's declared size: the host must not
 * read them. */
static int must_not_be_called(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm)
{
	(void)vm;
	return ctx->host->error(VI_EFAIL, "method beyond struct_size was called");
}

static const struct vi_hv_ops ops = {
	.struct_size = offsetof(struct vi_hv_ops, define),
	.abi_version = VI_HV_ABI_VERSION,
	.name = "older",
	.description = "test fixture with a short table",
	.probe = older_probe,
	.define = must_not_be_called,
	.start = must_not_be_called,
};

VI_HV_EXPORT const struct vi_hv_ops *vi_hv_plugin_init(const struct vi_host *host)
{
	(void)host;
	return &ops;
}
