/* A test backend with an invalid ABI version (0): rejected. */
#include <vi/hv-plugin.h>

static const struct vi_hv_ops ops = {
	.struct_size = sizeof(struct vi_hv_ops),
	.abi_version = 0,
	.name = "badabi",
};

VI_HV_EXPORT const struct vi_hv_ops *vi_hv_plugin_init(const struct vi_host *host)
{
	(void)host;
	return &ops;
}
