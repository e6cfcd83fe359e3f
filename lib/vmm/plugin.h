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

#endif
