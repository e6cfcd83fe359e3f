/* What the files of lib/vmm share among themselves: the VM structure, the I/O buses
 * devices register on, and the guest-physical layout. Not for plugins or tests. */
#ifndef VI_VMM_INTERNAL_H
#define VI_VMM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "vmm/vmm.h"

/* Guest-physical layout below 4 GiB. The boot structures sit where Linux loaders put them,
 * in low RAM the kernel reclaims; the top 1 GiB is the hole for the LAPIC, IOAPIC and
 * (later) PCI windows. */
#define VMM_GDT_ADDR      0x500ull
#define VMM_ZERO_PAGE     0x7000ull
#define VMM_PML4_ADDR     0x9000ull /* then the PDPT and four page directories */
#define VMM_CMDLINE_ADDR  0x20000ull
#define VMM_CMDLINE_MAX   0x10000ull
#define VMM_EBDA_START    0x9fc00ull
#define VMM_HIGH_MEMORY   0x100000ull
#define VMM_MMIO_HOLE     0xc0000000ull
#define VMM_4G            0x100000000ull
#define VMM_IDENTITY_MAP  0xfeffc000ull /* one page; VT-x real mode needs it */
#define VMM_TSS_ADDR      0xfeffd000ull /* three pages */

#define VMM_MAX_VCPUS 256

/* --- KVM (kvm.c) ----------------------------------------------------------------- */

int vmm_kvm_open(void); /* the /dev/kvm fd, or a negative VI_E* */
unsigned vmm_kvm_max_vcpus(int kvm_fd); /* KVM's limit, capped at VMM_MAX_VCPUS */
/* Names the module behind /dev/kvm in module; true for the hardware ones. */
bool vmm_kvm_hardware(char *module, size_t len);
/* The VM fd with its TSS and identity map. */
int vmm_kvm_create_vm(struct vmm *vm);
/* The in-kernel PIC, IOAPIC, LAPICs and PIT. After the memory: with an irqchip, every
 * memory slot change waits for an SRCU grace period (milliseconds each). */
int vmm_kvm_create_irqchip(struct vmm *vm);
void vmm_memory_release(struct vmm *vm);

/* --- buses ---------------------------------------------------------------------- */

/* A device's window on a bus. Accesses arrive on vCPU threads: a device locks itself. */
struct vmm_io_ops {
	void (*read)(void *dev, uint64_t offset, uint8_t *data, unsigned len);
	void (*write)(void *dev, uint64_t offset, const uint8_t *data, unsigned len);
};

struct vmm_io_range {
	uint64_t base, len;
	const struct vmm_io_ops *ops;
	void *dev;
};

struct vmm_bus {
	struct vmm_io_range *ranges; /* sorted by base, never overlapping */
	size_t n;
};

enum vmm_bus_kind { VMM_BUS_PIO, VMM_BUS_MMIO };

/* Claims [base, base+len) on a bus; -VI_ESTATE when it overlaps another device. */
int vmm_bus_register(struct vmm *vm, int bus, uint64_t base, uint64_t len,
		     const struct vmm_io_ops *ops, void *dev);
/* Unclaimed reads see all ones; unclaimed writes are dropped, as on a real bus. */
void vmm_bus_access(struct vmm_bus *bus, uint64_t addr, uint8_t *data, unsigned len,
		    bool write);
void vmm_bus_release(struct vmm_bus *bus);

/* --- devices -------------------------------------------------------------------- */

/* A device with state to save: registered by the device's init function. */
struct vmm_device {
	const char *name;
	void *dev;
	int (*save)(void *dev, struct json_object **out);
	int (*restore)(void *dev, struct json_object *state);
	void (*free)(void *dev);
};

void vmm_device_add(struct vmm *vm, const struct vmm_device *device);
/* Raises or lowers a GSI line of the in-kernel interrupt controllers. */
void vmm_irq_line(struct vmm *vm, unsigned gsi, bool level);

/* Device constructors: the table in vm.c calls each once in vmm_create(). */
int serial_init(struct vmm *vm);
int i8042_init(struct vmm *vm);

/* The COM1 receiver the console feeds, and the keyboard Ctrl-Alt-Del goes to. */
struct serial;
struct i8042;
void serial_receive(struct serial *uart, const uint8_t *buf, size_t len);
void i8042_press_ctrl_alt_del(struct i8042 *kbd);

/* --- console -------------------------------------------------------------------- */

#define VMM_CONSOLE_RING 16384
#define VMM_CONSOLE_MAX_FDS 16

struct vmm_console {
	pthread_mutex_t lock;
	int fds[VMM_CONSOLE_MAX_FDS];
	size_t nfds;
	uint8_t ring[VMM_CONSOLE_RING];
	uint64_t written; /* bytes ever written; the ring holds the last ones */
};

void vmm_console_init(struct vmm_console *con);
void vmm_console_release(struct vmm_console *con);
/* Guest output from the UART: to every attached fd and the ring. */
void vmm_console_output(struct vmm *vm, const uint8_t *buf, size_t len);

/* --- vCPUs ---------------------------------------------------------------------- */

struct vmm_vcpu {
	struct vmm *vm;
	unsigned index;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
	atomic_uint_fast64_t exits;
	clockid_t clock;      /* the thread's CPU clock */
	uint64_t cpu_time_ns; /* its last reading, once the thread has ended */
};

int vmm_vcpus_create(struct vmm *vm);
int vmm_vcpus_start(struct vmm *vm);
/* Interrupts every vCPU's KVM_RUN so it looks at vm->pause and vm->stopping. */
void vmm_vcpus_kick(struct vmm *vm);
/* Ends the threads; the vCPUs and their statistics stay until vmm_vcpus_release(). */
void vmm_vcpus_stop(struct vmm *vm);
void vmm_vcpus_release(struct vmm *vm);
/* CPUID and boot MSRs of one vCPU (cpuid.c). */
int vmm_cpuid_supported(struct vmm *vm); /* fills vm->supported_cpuid */
int vmm_cpuid_setup(struct vmm *vm, struct vmm_vcpu *vcpu);
int vmm_msrs_setup(struct vmm *vm, struct vmm_vcpu *vcpu);

/* --- boot ----------------------------------------------------------------------- */

/* What the loader learnt from a kernel image. */
struct vmm_kernel {
	bool elf;             /* ELF vmlinux, else bzImage */
	uint64_t load_addr;   /* where the 64-bit kernel goes */
	uint64_t min_memory;  /* guest RAM the image needs, from its header */
	uint64_t entry;       /* 64-bit entry point */
	uint64_t initrd_max;  /* highest byte an initrd may use */
	uint32_t cmdline_max; /* longest command line, without the NUL */
};

int vmm_kernel_inspect(const char *path, struct vmm_kernel *out);
/* vmm_check_config() without the vCPU limit: kernel, memory, command line, initrd. */
int vmm_boot_check(const struct vmm_config *cfg, struct vmm_kernel *out);
/* Loads kernel, initrd and command line into guest memory and sets the BSP up for the
 * 64-bit entry. */
int vmm_boot_setup(struct vmm *vm);

/* --- the VM --------------------------------------------------------------------- */

struct vmm_watch {
	int fd;
	vmm_fd_cb cb;
	void *opaque;
};

struct vmm {
	struct vmm_config cfg; /* strings owned by the VM */
	int kvm_fd, vm_fd, epoll_fd, event_fd;
	int vcpu_mmap_size;
	bool emulated; /* software KVM: guest code runs in an emulator */
	struct kvm_cpuid2 *supported_cpuid;
	struct vmm_kernel kernel;

	struct vmm_mem_region *mem;
	size_t nmem;

	struct vmm_bus buses[2];
	struct vmm_device *devices;
	size_t ndevices;
	struct serial *uart;
	struct i8042 *kbd;
	struct vmm_console console;

	struct vmm_vcpu *vcpus;
	unsigned nvcpus;

	struct vmm_watch *watches;
	size_t nwatches;

	/* vCPU thread control: vm->lock guards parked and the condition variables. */
	pthread_mutex_t lock;
	pthread_cond_t parked_cond, resume_cond;
	unsigned parked;
	atomic_bool running, pause, stopping;
	atomic_int exit_reason; /* 0 while running */
	char exit_message[256];
};

/* Records a fatal vCPU error as the VM's exit (first one wins). */
void vmm_fail(struct vmm *vm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
