/* A test backend built against plugin ABI version 1, whose methods have other
 * signatures: refused, with one line naming the file and the version. */
#include <vi/hv-plugin.h>

static const struct vi_hv_ops ops = {
	.struct_size = sizeof(struct vi_hv_ops),
	.abi_version = 1,
	.name = "abi1",
	.description = "test fixture from an older vi",
};

VI_HV_EXPORT const struct vi_hv_ops *vi_hv_plugin_init(const struct vi_host *host)
{
	(void)host;
	return &ops;
}
