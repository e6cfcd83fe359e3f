/* A test backend whose initialisation fails with a message: rejected. */
#include <vi/hv-plugin.h>

VI_HV_EXPORT const struct vi_hv_ops *vi_hv_plugin_init(const struct vi_host *host)
{
	host->error(VI_EFAIL, "fixture refuses to initialise");
	return 0;
}
