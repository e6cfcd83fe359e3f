/* CPUID and MSRs at boot: what KVM supports, with each vCPU's APIC ID and a flat
 * topology (one package, one thread per core) filled in, then the vendor layer's turn. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "error.h"
#include "util.h"
#include "vmm/internal.h"

#define CPUID_FEAT_CX16       (1u << 13) /* leaf 1 ECX */
#define CPUID_FEAT_HTT        (1u << 28) /* leaf 1 EDX */
#define CPUID_FEAT_HYPERVISOR (1u << 31) /* leaf 1 ECX */

int vmm_cpuid_supported(struct vmm *vm)
{
	for (unsigned n = 128;; n *= 2) {
		struct kvm_cpuid2 *c = xcalloc(1, sizeof(*c) + n * sizeof(c->entries[0]));

		c->nent = n;
		if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c) == 0) {
			vm->supported_cpuid = c;
			return 0;
		}
		free(c);
		if (errno != E2BIG || n >= 4096)
			return vi_error_errno(VI_EFAIL, errno,
					      "cannot read the CPUID KVM supports");
	}
}

/* Bits needed to number `count` things. */
static unsigned cpuid_bits(unsigned count)
{
	unsigned bits = 0;

	while ((1u << bits) < count)
		bits++;
	return bits;
}

static void cpuid_filter(struct kvm_cpuid2 *c, unsigned index, unsigned count, bool emulated)
{
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];

		switch (e->function) {
		case 1:
			e->ebx =
				(e->ebx & 0xffff) | (index << 24) | ((count > 1 ? count : 0) << 16);
			e->ecx |= CPUID_FEAT_HYPERVISOR;
			/* Software KVM offers cmpxchg16b but its instruction emulator fails
			 * on it (Linux's SLUB uses it when offered): hide it there. */
			if (emulated)
				e->ecx &= ~CPUID_FEAT_CX16;
			if (count > 1)
				e->edx |= CPUID_FEAT_HTT;
			else
				e->edx &= ~CPUID_FEAT_HTT;
			break;
		case 0xb:
		case 0x1f:
			/* Level 0: one thread per core; level 1: all cores in one package. */
			e->edx = index;
			if (e->index == 0) {
				e->eax = 0;
				e->ebx = 1;
				e->ecx = (1u << 8);
			} else if (e->index == 1) {
				e->eax = cpuid_bits(count);
				e->ebx = count;
				e->ecx = (2u << 8) | 1;
			} else {
				e->eax = e->ebx = 0;
				e->ecx = e->index;
			}
			break;
		}
	}
}

int vmm_cpuid_setup(struct vmm *vm, struct vmm_vcpu *vcpu)
{
	const struct kvm_cpuid2 *sup = vm->supported_cpuid;
	size_t size = sizeof(*sup) + sup->nent * sizeof(sup->entries[0]);
	struct kvm_cpuid2 *c = xmalloc(size);
	int ret = 0;

	memcpy(c, sup, size);
	cpuid_filter(c, vcpu->index, vm->cfg.max_cpus, vm->emulated);
	if (vm->cfg.vendor && vm->cfg.vendor->cpuid_filter)
		vm->cfg.vendor->cpuid_filter(c, vcpu->index, vm->cfg.max_cpus);
	if (ioctl(vcpu->fd, KVM_SET_CPUID2, c) < 0)
		ret = vi_error_errno(VI_EFAIL, errno, "cannot set the CPUID of vCPU %u",
				     vcpu->index);
	free(c);
	return ret;
}

#define MSR_IA32_SYSENTER_CS  0x174
#define MSR_IA32_SYSENTER_ESP 0x175
#define MSR_IA32_SYSENTER_EIP 0x176
#define MSR_MTRR_DEF_TYPE     0x2ff
#define MSR_STAR              0xc0000081
#define MSR_LSTAR             0xc0000082
#define MSR_CSTAR             0xc0000083
#define MSR_SYSCALL_MASK      0xc0000084
#define MSR_KERNEL_GS_BASE    0xc0000102

#define MTRR_ENABLE       (1u << 11)
#define MTRR_TYPE_WB      6

#define VCPU_BOOT_MSRS 32

int vmm_msrs_setup(struct vmm *vm, struct vmm_vcpu *vcpu)
{
	static const struct kvm_msr_entry generic[] = {
		{ .index = MSR_IA32_SYSENTER_CS }, { .index = MSR_IA32_SYSENTER_ESP },
		{ .index = MSR_IA32_SYSENTER_EIP }, { .index = MSR_STAR },
		{ .index = MSR_LSTAR }, { .index = MSR_CSTAR },
		{ .index = MSR_SYSCALL_MASK }, { .index = MSR_KERNEL_GS_BASE },
		/* Memory is write-back unless the guest says otherwise. */
		{ .index = MSR_MTRR_DEF_TYPE, .data = MTRR_ENABLE | MTRR_TYPE_WB },
	};
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry entries[VCPU_BOOT_MSRS];
	} msrs = { .hdr.nmsrs = ARRAY_SIZE(generic) };
	int n;

	memcpy(msrs.entries, generic, sizeof(generic));
	if (vm->cfg.vendor && vm->cfg.vendor->boot_msrs)
		msrs.hdr.nmsrs += vm->cfg.vendor->boot_msrs(msrs.entries + ARRAY_SIZE(generic),
							     VCPU_BOOT_MSRS - ARRAY_SIZE(generic));
	n = ioctl(vcpu->fd, KVM_SET_MSRS, &msrs);
	if (n < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot set the MSRs of vCPU %u",
				      vcpu->index);
	if ((unsigned)n != msrs.hdr.nmsrs)
		return vi_error(VI_EFAIL, "KVM refused MSR 0x%x on vCPU %u", msrs.entries[n].index,
				vcpu->index);
	return 0;
}
