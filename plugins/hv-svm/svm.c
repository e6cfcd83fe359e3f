/* hv-svm: the native VMM on KVM for AMD CPUs (kvm_amd). What differs from Intel is the
 * topology CPUID leaves; everything else is lib/vmm. */
#include "vmm/plugin.h"

#define CPUID_CMP_LEGACY (1u << 1) /* 0x80000001 ECX: HTT counts cores */

static unsigned bits_for(unsigned count)
{
	unsigned bits = 0;

	while ((1u << bits) < count)
		bits++;
	return bits;
}

/* One socket of `count` single-threaded cores, each its own compute unit. */
static void svm_cpuid_filter(struct kvm_cpuid2 *cpuid, unsigned index, unsigned count)
{
	for (uint32_t i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];

		switch (e->function) {
		case 0x80000001:
			if (count > 1)
				e->ecx |= CPUID_CMP_LEGACY;
			else
				e->ecx &= ~CPUID_CMP_LEGACY;
			break;
		case 0x80000008:
			e->ecx = (e->ecx & ~0xf0ffu) | (bits_for(count) << 12) | (count - 1);
			break;
		case 0x8000001e:
			e->eax = index;
			e->ebx = index & 0xff;
			e->ecx = 0;
			break;
		}
	}
}

static const struct vmm_vendor svm_vendor = {
	.cpuid_filter = svm_cpuid_filter,
};

static const struct vmm_backend svm_backend = {
	.name = "svm",
	.description = "native VMM on KVM with AMD SVM (kvm_amd)",
	.cpu_vendor = "AuthenticAMD",
	.technology = "AMD SVM",
	.kvm_module = "kvm_amd",
	.vendor = &svm_vendor,
};

VI_HV_EXPORT const struct vi_hv_ops *vi_hv_plugin_init(const struct vi_host *host)
{
	return vmm_plugin_init(host, &svm_backend);
}
