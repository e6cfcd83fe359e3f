/* A test backend that forgets to export vi_hv_plugin_init: rejected. */
#include <vi/hv-plugin.h>

int nosym_placeholder_symbol(void);
int nosym_placeholder_symbol(void)
{
	return 0;
}
