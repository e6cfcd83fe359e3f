/* Inside a plugin, libvi's error and log functions forward to the host, so a
 * message recorded anywhere in a plugin is the host's to print, and plugins
 * carry no thread-local state of their own. Plugins link libvi-plugin.a
 * before libvi.a; each calls vi_plugin_set_host() from vi_hv_plugin_init(). */
#ifndef VI_PLUGIN_HOST_H
#define VI_PLUGIN_HOST_H

#include <vi/hv-plugin.h>

void vi_plugin_set_host(const struct vi_host *host);

#endif
