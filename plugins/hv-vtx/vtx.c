/* hv-vtx: the native VMM on KVM for Intel CPUs (kvm_intel). What differs from AMD is
 * the cache-topology CPUID leaf and IA32_MISC_ENABLE; everything else is lib/vmm. */
#include "vmm/plugin.h"

#define MSR_IA32_MISC_ENABLE 0x1a0
#define MISC_ENABLE_FAST_STRING (1ull << 0)

/* Leaf 4: one package of `count` cores; L1 and L2 private, the last level shared. */
static void vtx_cpuid_filter(struct kvm_cpuid2 *cpuid, unsigned index, unsigned count)
{
	unsigned cores = count > 64 ? 64 : count;

	(void)index;
	for (uint32_t i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];
		unsigned level = (e->eax >> 5) & 7, sharing;

		if (e->function != 4 || !(e->eax & 0x1f))
			continue;
		sharing = level >= 3 ? cores - 1 : 0;
		e->eax = (e->eax & 0x3fff) | (sharing << 14) | ((cores - 1) << 26);
	}
}

/* Firmware turns fast string operations on; Linux expects to find them so. */
static size_t vtx_boot_msrs(struct kvm_msr_entry *msrs, size_t max)
{
	if (max < 1)
		return 0;
	msrs[0] = (struct kvm_msr_entry){ .index = MSR_IA32_MISC_ENABLE,
					  .data = MISC_ENABLE_FAST_STRING };
	return 1;
}

static const struct vmm_vendor vtx_vendor = {
	.cpuid_filter = vtx_cpuid_filter,
	.boot_msrs = vtx_boot_msrs,
};

static const struct vmm_backend vtx_backend = {
	.name = "vtx",
	.description = "native VMM on KVM with Intel VT-x (kvm_intel)",
	.cpu_vendor = "GenuineIntel",
	.technology = "Intel VT-x",
	.kvm_module = "kvm_intel",
	.vendor = &vtx_vendor,
};

VI_HV_EXPORT const struct vi_hv_ops *vi_hv_plugin_init(const struct vi_host *host)
{
	return vmm_plugin_init(host, &vtx_backend);
}
