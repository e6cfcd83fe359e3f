/* The KVM floor: only the calls any VMM must make to see a guest's first output (open
 * /dev/kvm, create a VM, one memory slot of the given size, one vCPU, run) with a
 * four-instruction real-mode guest that writes one byte to COM1.
 * Usage: kvm-floor MEMORY_MIB. The byte goes to stdout. */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define CODE_ADDR 0x1000

static int fail(const char *what)
{
	perror(what);
	return 1;
}

int main(int argc, char **argv)
{
	/* mov $0x3f8, %dx; mov $'h', %al; out %al, (%dx); hlt */
	static const unsigned char code[] = { 0xba, 0xf8, 0x03, 0xb0, 'h', 0xee, 0xf4 };
	size_t size = (argc > 1 ? strtoull(argv[1], NULL, 10) : 256) << 20;
	struct kvm_userspace_memory_region slot = { .memory_size = size };
	struct kvm_regs regs = { .rip = CODE_ADDR, .rflags = 2 };
	struct kvm_sregs sregs;
	struct kvm_run *run;
	int kvm, vm, cpu;
	unsigned char *mem;

	kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (kvm < 0)
		return fail("/dev/kvm");
	vm = ioctl(kvm, KVM_CREATE_VM, 0);
	if (vm < 0)
		return fail("KVM_CREATE_VM");
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		   -1, 0);
	if (mem == MAP_FAILED)
		return fail("mmap");
	memcpy(mem + CODE_ADDR, code, sizeof(code));
	slot.userspace_addr = (unsigned long)mem;
	if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
		return fail("KVM_SET_USER_MEMORY_REGION");
	cpu = ioctl(vm, KVM_CREATE_VCPU, 0);
	if (cpu < 0)
		return fail("KVM_CREATE_VCPU");
	run = mmap(NULL, (size_t)ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0), PROT_READ | PROT_WRITE,
		   MAP_SHARED, cpu, 0);
	if (run == MAP_FAILED)
		return fail("mmap kvm_run");
	/* Real mode from address 0: CS base 0 instead of the reset vector's. */
	if (ioctl(cpu, KVM_GET_SREGS, &sregs) < 0)
		return fail("KVM_GET_SREGS");
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	if (ioctl(cpu, KVM_SET_SREGS, &sregs) < 0 || ioctl(cpu, KVM_SET_REGS, &regs) < 0)
		return fail("KVM_SET_REGS");
	if (ioctl(cpu, KVM_RUN, 0) < 0)
		return fail("KVM_RUN");
	if (run->exit_reason != KVM_EXIT_IO || run->io.port != 0x3f8) {
		fprintf(stderr, "kvm-floor: unexpected exit %u\n", run->exit_reason);
		return 1;
	}
	if (write(STDOUT_FILENO, (char *)run + run->io.data_offset, 1) != 1)
		return fail("write");
	return 0;
}
