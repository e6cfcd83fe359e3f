/* The plugin methods hv-vtx and hv-svm share: everything but the vendor layer. A plugin
 * describes itself in a struct vmm_backend and returns vmm_plugin_init()'s table from
 * its vi_hv_plugin_init(). The VM process is the plugin's run(); the other methods talk
 * to it over run/control.sock. */
#ifndef VI_VMM_PLUGIN_H
#define VI_VMM_PLUGIN_H

#include <vi/hv-plugin.h>

#include "vmm/vmm.h"

struct vmm_backend {
	const char *name;        /* "svm": the plugin is hv-<name>.so */
	const char *description; /* one line */
	const char *cpu_vendor;  /* the CPUID vendor string it serves, "AuthenticAMD" */
	const char *technology;  /* "AMD SVM", for messages */
	const char *kvm_module;  /* the hardware module, "kvm_amd" */
	const struct vmm_vendor *vendor;
};

/* Both must outlive the plugin (static storage). Returns the ops table. */
const struct vi_hv_ops *vmm_plugin_init(const struct vi_host *host,
					const struct vmm_backend *backend);

/* vi's private networks for native VMs, in the store at home (net-bridge.c). net_up and
 * net_down as struct vi_hv_ops says. vmm_net_find(): the bridge and directory of network
 * name, 1 when the store has none (then it may be libvirt's). vmm_net_start(): the bridge
 * of the network in dir made again if the host lost it, and set up again. */
int vmm_net_up(const char *home, const char *name, const char *cidr);
int vmm_net_down(const char *home, const char *name);
int vmm_net_find(const char *home, const char *name, char **bridge, char **dir);
int vmm_net_start(const char *dir);

#endif
