/* A test backend that claims a newer plugin ABI than the host: rejected. */
#include <vi/hv-plugin.h>

static const struct vi_hv_ops ops = {
	.struct_size = sizeof(struct vi_hv_ops) + 64,
	.abi_version = VI_HV_ABI_VERSION + 1,
	.name = "newer",
	.description = "test fixture from the future",
};

VI_HV_EXPORT const struct vi_hv_ops *vi_hv_plugin_init(const struct vi_host *host)
{
	(void)host;
	return &ops;
}
