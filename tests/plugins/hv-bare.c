/* A test backend "bare": probes OK and reports the state tests write, and
 * has no other method, so that every "unsupported" path can be tested. */
#include "fixture.h"

static const struct vi_hv_ops ops = {
	.struct_size = sizeof(struct vi_hv_ops),
	.abi_version = VI_HV_ABI_VERSION,
	.name = "bare",
	.description = "test backend with state only",
	.features = VI_HV_F_DIRECT_BOOT,
	.probe = fixture_probe,
	.state = fixture_state,
};

VI_HV_EXPORT const struct vi_hv_ops *vi_hv_plugin_init(const struct vi_host *host)
{
	(void)host;
	return &ops;
}
