/* /dev/kvm itself: what the kernel module offers, which module backs it, and the
 * VM-wide KVM objects every x86 guest needs (in-kernel PIC/IOAPIC/LAPIC, PIT, TSS). */
#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "util.h"
#include "vmm/internal.h"

void vmm_cpu_vendor(char *buf)
{
	unsigned eax, ebx, ecx, edx;

	__cpuid(0, eax, ebx, ecx, edx);
	memcpy(buf, &ebx, 4);
	memcpy(buf + 4, &edx, 4);
	memcpy(buf + 8, &ecx, 4);
	buf[12] = '\0';
}

/* The module behind /dev/kvm: the vendor modules by name, else any other kvm_* module
 * (software implementations such as kvm_pvm), else plain "kvm". */
static void kvm_module(char *buf, size_t len)
{
	static const char *const known[] = { "kvm_intel", "kvm_amd", "kvm_pvm" };

	for (size_t i = 0; i < ARRAY_SIZE(known); i++) {
		char path[64];

		snprintf(path, sizeof(path), "/sys/module/%s", known[i]);
		if (access(path, F_OK) == 0) {
			snprintf(buf, len, "%s", known[i]);
			return;
		}
	}
	snprintf(buf, len, "kvm");
}

/* /dev/kvm is there but not for this user: say whose it is and the fix. */
static int kvm_denied(int err)
{
	struct passwd *pw = getpwuid(geteuid());
	struct group *gr;
	struct stat st;

	if (stat("/dev/kvm", &st) < 0 || !(gr = getgrgid(st.st_gid)) || !pw)
		return vi_error_errno(VI_EFAIL, err, "cannot open '/dev/kvm'");
	return vi_error(VI_EFAIL,
			"'/dev/kvm' is not open to user '%s' (mode %04o, group '%s'): add the user to group '%s' and log in again",
			pw->pw_name, st.st_mode & 07777, gr->gr_name, gr->gr_name);
}

/* Opens /dev/kvm and checks the API version; returns the fd or a negative VI_E*. */
int vmm_kvm_open(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	int version;

	if (fd < 0) {
		if (errno == ENOENT)
			return vi_error(VI_EUNSUPPORTED,
					"'/dev/kvm' does not exist: no KVM on this host");
		if (errno == EACCES || errno == EPERM)
			return kvm_denied(errno);
		return vi_error_errno(VI_EFAIL, errno, "cannot open '/dev/kvm'");
	}
	version = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (version != KVM_API_VERSION) {
		close(fd);
		return vi_error(VI_EUNSUPPORTED, "'/dev/kvm' speaks KVM API %d, not %d", version,
				KVM_API_VERSION);
	}
	return fd;
}

static unsigned kvm_cap(int fd, long cap, unsigned fallback)
{
	int r = ioctl(fd, KVM_CHECK_EXTENSION, cap);

	return r > 0 ? (unsigned)r : fallback;
}

bool vmm_kvm_hardware(char *module, size_t len)
{
	kvm_module(module, len);
	return !strcmp(module, "kvm_intel") || !strcmp(module, "kvm_amd");
}

unsigned vmm_kvm_max_vcpus(int kvm_fd)
{
	/* api.rst: without KVM_CAP_MAX_VCPUS the limit is KVM_CAP_NR_VCPUS, or else 4. */
	unsigned max = kvm_cap(kvm_fd, KVM_CAP_MAX_VCPUS, kvm_cap(kvm_fd, KVM_CAP_NR_VCPUS, 4));

	return max < VMM_MAX_VCPUS ? max : VMM_MAX_VCPUS;
}

int vmm_kvm_probe(struct vmm_kvm_info *info)
{
	int fd = vmm_kvm_open();

	if (fd < 0)
		return fd;
	memset(info, 0, sizeof(*info));
	info->max_vcpus = vmm_kvm_max_vcpus(fd);
	info->hardware = vmm_kvm_hardware(info->module, sizeof(info->module));
	close(fd);
	return 0;
}

int vmm_kvm_create_vm(struct vmm *vm)
{
	uint64_t identity_map = VMM_IDENTITY_MAP;

	do
		vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	while (vm->vm_fd < 0 && errno == EINTR);
	if (vm->vm_fd < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot create a KVM virtual machine");
	vm->vcpu_mmap_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->vcpu_mmap_size < (int)sizeof(struct kvm_run))
		return vi_error_errno(VI_EFAIL, errno, "cannot get the KVM vCPU area size");
	/* VT-x needs these two to run real-mode code; SVM ignores them. Both lie in the
	 * hole below 4 GiB, away from RAM. */
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)VMM_TSS_ADDR) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot set the KVM TSS address");
	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &identity_map) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot set the KVM identity map address");
	return 0;
}

int vmm_kvm_create_irqchip(struct vmm *vm)
{
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };

	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot create the in-kernel irqchip");
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot create the in-kernel PIT");
	return 0;
}

/* The in-kernel devices' state: both PICs, the IOAPIC, the PIT and the clock. */
struct kvm_chips {
	struct vmm *vm;
	struct kvm_irqchip chips[3]; /* KVM_IRQCHIP_PIC_MASTER, _PIC_SLAVE, _IOAPIC */
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
};

static int kvm_chips_get(void *obj)
{
	struct kvm_chips *k = obj;
	int fd = k->vm->vm_fd;

	for (unsigned i = 0; i < ARRAY_SIZE(k->chips); i++) {
		k->chips[i] = (struct kvm_irqchip){ .chip_id = i };
		if (ioctl(fd, KVM_GET_IRQCHIP, &k->chips[i]) < 0)
			return vi_error_errno(VI_EFAIL, errno, "cannot read interrupt chip %u", i);
	}
	if (ioctl(fd, KVM_GET_PIT2, &k->pit) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot read the PIT");
	if (ioctl(fd, KVM_GET_CLOCK, &k->clock) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot read the VM's clock");
	return 0;
}

static int kvm_chips_set(void *obj)
{
	struct kvm_chips *k = obj;
	int fd = k->vm->vm_fd;

	for (unsigned i = 0; i < ARRAY_SIZE(k->chips); i++) {
		if (k->chips[i].chip_id != i)
			return vi_error(VI_EUSAGE, "interrupt chip %u says it is chip %u", i,
					k->chips[i].chip_id);
		if (ioctl(fd, KVM_SET_IRQCHIP, &k->chips[i]) < 0)
			return vi_error_errno(VI_EFAIL, errno, "cannot set interrupt chip %u", i);
	}
	if (ioctl(fd, KVM_SET_PIT2, &k->pit) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot set the PIT");
	/* The guest's clock goes on from where it stood: no flags, so KVM adds neither the
	 * real time nor the host TSC that passed while the VM was saved. */
	k->clock.flags = 0;
	if (ioctl(fd, KVM_SET_CLOCK, &k->clock) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot set the VM's clock");
	return 0;
}

static const struct vi_state_field kvm_chips_fields[] = {
	VI_STATE_ARRAY(struct kvm_chips, chips),
	VI_STATE_FIELD(struct kvm_chips, pit),
	VI_STATE_FIELD(struct kvm_chips, clock),
	VI_STATE_FIELDS_END,
};

static const struct vi_state_desc kvm_chips_state = {
	.name = "kvm", .id = VMM_SECTION_KVM, .version = 1, .oldest = 1,
	.fields = kvm_chips_fields, .pre_save = kvm_chips_get, .post_load = kvm_chips_set,
};

int vmm_kvm_state_init(struct vmm *vm)
{
	struct kvm_chips *k = xcalloc(1, sizeof(*k));

	k->vm = vm;
	vmm_device_add(vm, &(struct vmm_device){ .kind = "kvm", .name = "kvm", .dev = k,
						 .free = free,
						 .sections = { { &kvm_chips_state, k, 0 } } });
	return 0;
}

void vmm_irq_line(struct vmm *vm, unsigned gsi, bool level)
{
	struct kvm_irq_level irq = { .irq = gsi, .level = level };

	/* Only fails for a GSI out of range, which is a bug in the device. */
	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &irq) < 0)
		vmm_fail(vm, "cannot set interrupt line %u: %s", gsi, strerror(errno));
}
