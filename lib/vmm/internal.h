/* What the files of lib/vmm share among themselves: the VM structure, the I/O buses
 * devices register on, and the guest-physical layout. Not for plugins or tests. */
#ifndef VI_VMM_INTERNAL_H
#define VI_VMM_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "state.h"
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
/* Maps [offset, offset+len) of the file fd privately over guest memory at gpa, which
 * must lie in one region: the pages are the file's until the guest writes them. */
int vmm_memory_map_file(struct vmm *vm, uint64_t gpa, uint64_t len, int fd, uint64_t offset);
/* Where the memory beyond boot RAM goes, up to cfg->max_memory: the virtio-mem device's
 * region above the boot RAM and the hole below 4 GiB, aligned to and a multiple of
 * VMM_HOTPLUG_ALIGN (Linux onlines memory in blocks of its section size). *size is 0
 * when max_memory leaves no room. */
#define VMM_HOTPLUG_ALIGN (128ull << 20)
#define VMM_HOTPLUG_BLOCK (2ull << 20) /* what the guest plugs at a time */
void vmm_hotplug_region(const struct vmm_config *cfg, uint64_t *gpa, uint64_t *size);
/* Makes all guest memory zero pages again, as vmm_new() made it. */
int vmm_memory_reset(struct vmm *vm);
/* The VMM's own writes into guest memory, which KVM's dirty log does not see: a device
 * that writes the guest's buffers or rings marks [gpa, gpa+len) once it has written it.
 * Nothing but a load when no dirty log runs (vmm_memory_set_dirty_log()). Any thread. */
void vmm_mark_dirty(struct vmm *vm, uint64_t gpa, uint64_t len);

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

/* --- devices: the registry ------------------------------------------------------ */

/* Section ids of the VM state (lib/state.h): numbers in files, never to be reused. */
enum vmm_section_id {
	VMM_SECTION_VCPU = 0x100,
	VMM_SECTION_KVM = 0x101,
	VMM_SECTION_SERIAL = 0x102,
	VMM_SECTION_I8042 = 0x103,
	VMM_SECTION_PCI = 0x104,
	VMM_SECTION_ACPI = 0x105,
	VMM_SECTION_VIRTIO = 0x106,
	VMM_SECTION_VIRTIO_BLK = 0x107,
	VMM_SECTION_VIRTIO_BALLOON = 0x108,
	VMM_SECTION_VIRTIO_MODERN = 0x109,
	VMM_SECTION_VIRTIO_MEM = 0x10a,
	VMM_SECTION_CPU_HOTPLUG = 0x10b,
};

/* One section of a device's state: `desc` read from and written to `obj`. Its instance
 * tells apart the sections of one id (a PCI slot, say). */
struct vmm_section {
	const struct vi_state_desc *desc;
	void *obj;
	uint32_t instance;
};

/* A device as its constructor registers it. Lookups go by kind and instance, the how-
 * manieth device of that kind, in creation order. */
struct vmm_device {
	const char *kind;      /* "serial", "virtio-blk" */
	const char *name;      /* in messages; NULL: kind and instance, "virtio-blk0" */
	unsigned instance;     /* set by vmm_device_add() */
	void *dev;
	pthread_mutex_t *lock; /* held while its sections are read or written; may be NULL */
	/* Stops (on) or lets go on the work the device does away from the vCPUs, while a
	 * saved state must not change; may be NULL. */
	void (*hold)(void *dev, bool on);
	void (*free)(void *dev);
	/* Makes the device what vmm_new() made, for a state written before the device
	 * existed, which has none of its sections: with it, they may be absent. Called
	 * while the device is held (or before anything runs), without its lock. May be
	 * NULL (every section must come). */
	void (*reset)(void *dev);
	struct vmm_section sections[2]; /* unused ones have no desc */
};

/* Stops (on) or lets go on every device's work away from the vCPUs (its I/O thread):
 * while on, the devices write neither guest memory nor disks. */
void vmm_devices_hold(struct vmm *vm, bool on);
/* Writes the paused VM's vCPU and device sections, then the end section. */
int vmm_save_machine(struct vmm *vm, struct vi_state_writer *w);
/* A migration's incoming stream as vmm_restore() reads a pipe, but for its disk data
 * sections, each handed to disk_data() as it comes; before_apply() runs once the whole
 * stream has come and been checked, before the VM changes. */
struct vmm_stream_hooks {
	int (*disk_data)(void *opaque, const struct vi_state_section *sec);
	int (*before_apply)(void *opaque);
	void *opaque;
};
int vmm_restore_stream(struct vmm *vm, int fd, const struct vmm_stream_hooks *hooks);
/* Disk i's image (NULL when it has none open). */
struct image *virtio_blk_image(struct vmm *vm, size_t i);

/* Registers a device; the VM frees it with device->free. Returns its name (the VM's). */
const char *vmm_device_add(struct vmm *vm, const struct vmm_device *device);
/* The dev of instance `instance` of `kind`, or NULL. */
void *vmm_device_get(struct vmm *vm, const char *kind, unsigned instance);
/* Raises or lowers a GSI line of the in-kernel interrupt controllers. */
void vmm_irq_line(struct vmm *vm, unsigned gsi, bool level);

/* Device constructors: the table in vm.c calls each once in vmm_new(), in order; each
 * looks at vm->cfg for what to make and registers what it made. */
int vmm_kvm_state_init(struct vmm *vm); /* the in-kernel irqchip, PIT and clock */
int serial_init(struct vmm *vm);
int i8042_init(struct vmm *vm);
int pci_init(struct vmm *vm);
int acpi_init(struct vmm *vm);
int virtio_blk_init(struct vmm *vm);
/* Puts every disk i on disks[i] (n must be the number of disks) where it differs from
 * what the disk uses now: the old images flushed and closed, the new opened. The
 * caller holds every device (the guest's requests wait). On failure every disk is back
 * on its old image, or the message says which could not be. */
int virtio_blk_replace(struct vmm *vm, const struct vmm_disk *disks, size_t n);
int virtio_net_init(struct vmm *vm);
/* Adds the traffic of every disk, or every NIC, of this run of the VM to *st. */
void virtio_blk_add_stats(struct vmm *vm, struct vmm_stats *st);
void virtio_net_add_stats(struct vmm *vm, struct vmm_stats *st);
int virtio_rng_init(struct vmm *vm);
int virtio_balloon_init(struct vmm *vm);
int virtio_mem_init(struct vmm *vm);
int cpu_hotplug_init(struct vmm *vm);

/* --- PCI (pci.c) ------------------------------------------------------------------ */

#define PCI_IO_BASE      0xc000u /* I/O BARs, handed out upwards */
#define PCI_MMIO_BASE    VMM_MMIO_HOLE
#define PCI_MMIO_END     0xfebfffffull
#define PCI_GSI_BASE     16      /* INTA of slot s is GSI 16 + s % 8: the _PRT says so */
#define PCI_GSI_COUNT    8
#define PCI_MAX_SLOTS    32

/* A function on bus 0. The device fills the identity and BAR sizes of `config` and
 * `bar_size`; pci_device_add() assigns the slot, BAR addresses and INTA's GSI, as
 * firmware would, and the guest keeps them: BAR writes other than the size probe are
 * ignored. */
struct pci_device {
	uint8_t config[256];
	uint32_t bar_size[6]; /* 0: no BAR; I/O BARs have bit 0 set in config first */
	unsigned slot, gsi;
	bool irq_level;
	struct pci *bus;
};

int pci_device_add(struct vmm *vm, struct pci_device *dev);
uint32_t pci_bar_address(const struct pci_device *dev, unsigned bar);
/* INTA of dev: GSIs shared by several devices stay raised while any of them is. */
void pci_irq_set(struct pci_device *dev, bool level);
/* What the guest may change in a function's configuration space, for its device's
 * section: a struct pci_device described. */
extern const struct vi_state_desc pci_function_state;

/* --- ACPI (acpi.c) ---------------------------------------------------------------- */

#define ACPI_TABLES_ADDR 0xf0000ull /* the RSDP, then every table: 64 KiB of BIOS area */
#define ACPI_SCI_GSI     9
#define ACPI_PM_BASE     0x600u     /* PM1a event (4), PM1a control (2), PM timer (4) */

/* CPU hotplug (cpu-hotplug.c): a register block the DSDT's processor methods use,
 * and a GED (ACPI0013) whose level-triggered interrupt says that some CPU waits for
 * the guest to bring it up or to eject it. */
#define CPU_HOTPLUG_BASE 0x0cd8u
#define CPU_HOTPLUG_LEN  8
#define CPU_HOTPLUG_GSI  5
/* Offsets and bits of the register block. */
#define CPU_HOTPLUG_SEL    0      /* 32 bits: the CPU the status byte is about */
#define CPU_HOTPLUG_STATUS 4      /* 8 bits, below */
#define CPU_HP_PRESENT (1u << 0)  /* read: the CPU is there (_STA) */
#define CPU_HP_INSERT  (1u << 1)  /* read: plugged in, not yet seen; write 1: seen */
#define CPU_HP_REMOVE  (1u << 2)  /* read: asked to go; write 1: request seen */
#define CPU_HP_EJECT   (1u << 3)  /* write 1: the guest let the CPU go (_EJ0) */

/* Present CPUs are i < cpus, none pending: what a state without the hotplug section
 * says, before a restore applies the section of one that has it. */
void cpu_hotplug_reset(struct vmm *vm, unsigned cpus);
/* After a restore: each vCPU runs or parks as its CPU is present or not, and the
 * interrupt line is set again. */
void cpu_hotplug_sync(struct vmm *vm);

/* Writes RSDP, XSDT, FADT, FACS, MADT and DSDT into guest memory; after every device
 * is on the PCI bus. Returns the RSDP's address in *rsdp. */
int acpi_tables_write(struct vmm *vm, uint64_t *rsdp);

/* --- I/O threads (iothread.c) ----------------------------------------------------- */

/* One thread and its own epoll: device work that blocks (disk I/O, the TAP device)
 * runs there, woken by ioeventfds, and never on a vCPU thread. */
struct iothread;
typedef void (*iothread_cb)(void *opaque, int fd);
struct iothread *iothread_new(const char *name);
/* Calls cb(opaque, fd) on the thread when fd is readable; re-arming replaces. */
int iothread_watch(struct iothread *t, int fd, iothread_cb cb, void *opaque);
/* Stops (on=false) or resumes delivering fd's events. */
void iothread_enable(struct iothread *t, int fd, bool on);
/* A device with an event loop of its own (libslirp's: sockets that come and go, timers)
 * shares the thread: before each wait, fill adds its fds to the set (the thread's epoll
 * fd is entry 0) and may lower *timeout_ms (-1: none); after it, dispatch looks at their
 * revents (error: poll failed). Set before the thread waits on its own, or followed by
 * an event on a watched fd. */
struct pollfd;
struct iothread_pollset {
	struct pollfd *fds;
	size_t n, cap;
};
/* Appends fd; returns its index in the set. */
int iothread_pollset_add(struct iothread_pollset *set, int fd, short events);
struct iothread_poller {
	void (*fill)(void *opaque, struct iothread_pollset *set, int *timeout_ms);
	void (*dispatch)(void *opaque, const struct iothread_pollset *set, bool error);
};
void iothread_set_poller(struct iothread *t, const struct iothread_poller *p, void *opaque);
int iothread_start(struct iothread *t);
/* Ends the thread (waiting for the callback in progress) and frees it. NULL is fine. */
void iothread_free(struct iothread *t);

/* --- virtio over PCI (virtio-pci.c) ----------------------------------------------- */

#define VIRTIO_QUEUE_SIZE 256
#define VIRTIO_MAX_QUEUES 2

struct iovec;

/* One split virtqueue in guest memory. `lock` is held while the device works on it. */
struct virtio_queue {
	struct virtio_pci *vp;
	unsigned index;
	pthread_mutex_t lock;
	uint32_t pfn;        /* legacy: the ring's guest page; 0: not set up */
	uint16_t last_avail; /* the next available entry the device takes */
	int notify_fd;       /* the ioeventfd the guest's notify writes signal */
	/* Where the ring is: from pfn (legacy), or as the guest set it (modern). */
	uint16_t enabled;    /* the device may use the ring */
	uint16_t size;       /* entries, a power of 2 up to VIRTIO_QUEUE_SIZE */
	uint64_t desc, avail, used;
};

/* A descriptor chain: buffers the device reads (out) and writes (in), in guest memory. */
struct virtio_chain {
	uint16_t head;
	unsigned nout, nin;
	struct iovec *out, *in; /* VIRTIO_QUEUE_SIZE entries each, owned by the caller */
};

/* What a virtio device adds to the transport. */
struct virtio_ops {
	const char *kind;    /* in the device registry: "virtio-blk" */
	uint16_t type;       /* virtio device ID: 1 net, 2 blk, 4 rng, 5 balloon */
	uint16_t pci_id;     /* its legacy PCI device ID: 0x1000 net, 0x1001 blk... */
	/* A modern-only device (virtio 1.0): its registers are in a memory BAR that
	 * vendor capabilities point to, its PCI device ID is 0x1040 + type (pci_id is
	 * unused) and VIRTIO_F_VERSION_1 is offered and required. */
	bool modern;
	uint32_t pci_class;  /* class, subclass, interface */
	unsigned nqueues;    /* at most VIRTIO_MAX_QUEUES */
	uint64_t features;   /* offered to the guest (a legacy device: the low 32 bits) */
	unsigned config_size;
	/* Device configuration space accesses, with the transport's lock held; NULL when
	 * config_size is 0 (or, for writes, when the guest may not write). */
	void (*config_read)(void *dev, unsigned offset, uint8_t *data, unsigned len);
	void (*config_write)(void *dev, unsigned offset, const uint8_t *data, unsigned len);
	/* The guest notified queue q: runs on the device's I/O thread, q->lock held. */
	void (*notify)(void *dev, struct virtio_queue *q);
	/* Device state beyond the transport's, a section of dev under the transport's lock
	 * (may be NULL). */
	const struct vi_state_desc *state;
	/* Makes dev what it was when added, for a saved state that lacks the device
	 * (written before it existed); the transport is reset too. NULL: every saved
	 * state must have the device's sections. */
	void (*reset)(void *dev);
	void (*free)(void *dev);
};

/* Puts a virtio device (legacy, or modern with ops->modern) on the PCI bus with its own
 * I/O thread and registers it as a device of kind ops->kind; dev belongs to the
 * transport from then on (ops->free frees it). *out (may be NULL) gets the transport.
 * With reset, the device may be missing from a saved state (see struct vmm_device):
 * the transport is reset, then reset(dev). */
int virtio_pci_add(struct vmm *vm, const struct virtio_ops *ops, void *dev,
		   struct virtio_pci **out);
/* Holds (on) every queue of vp: none of its requests runs until it is let go. */
void virtio_pci_hold(void *vp, bool on);
struct iothread *virtio_pci_iothread(struct virtio_pci *vp);
struct virtio_queue *virtio_pci_queue(struct virtio_pci *vp, unsigned index);
struct vmm *virtio_pci_vm(struct virtio_pci *vp);
void *virtio_pci_dev(struct virtio_pci *vp);
/* Takes the next chain the guest made available; false when there is none. A chain
 * pointing outside guest memory or looping is dropped (used with length 0). */
bool virtio_queue_pop(struct virtio_queue *q, struct virtio_chain *c);
/* Hands a chain back with `len` bytes written, and interrupts the guest unless it
 * asked not to be. */
void virtio_queue_push(struct virtio_queue *q, uint16_t head, uint32_t len);
/* Copy between a chain's buffers (skipping `skip` bytes of them) and buf; return how
 * many bytes moved. */
size_t virtio_iov_read(const struct iovec *iov, unsigned n, size_t skip, void *buf, size_t len);
size_t virtio_iov_write(const struct iovec *iov, unsigned n, size_t skip, const void *buf,
			size_t len);
/* The device's configuration changed: a configuration interrupt. */
void virtio_pci_config_changed(struct virtio_pci *vp);
/* Lock of the transport: held around config_read/config_write. */
void virtio_pci_lock(struct virtio_pci *vp);
void virtio_pci_unlock(struct virtio_pci *vp);

/* An interface brought up or down, through sock (an AF_INET socket); -1 with errno set
 * on failure (net-bridge.c). */
int vmm_link_set(int sock, const char *ifname, bool up);

/* --- DHCP on vi's private networks (net-dhcp.c) -------------------------------------- */

/* DHCP for a card on one of vi's private networks (net-dhcp.c), the network's directory
 * dir. net_dhcp_input() looks at a frame the guest sends: *taken when it is a DHCP
 * request, which goes no further; returns the length of the answer for the guest it wrote
 * to reply (NET_DHCP_REPLY_MAX bytes), 0 for none. */
#define NET_DHCP_REPLY_MAX 400
struct net_dhcp;
/* What net_dhcp_parse() found in a DHCP message: its UDP header and BOOTP part, and the
 * options that matter here (NULL or 0 when absent). */
struct dhcp_msg {
	const uint8_t *udp, *bootp;
	uint8_t type;                      /* option 53 */
	const uint8_t *requested, *server; /* options 50 and 54, four bytes each */
};
/* The DHCP message in Ethernet frame f: -1 when f is no IPv4 UDP datagram to port (67 a
 * server's, 68 a client's) long enough for a BOOTP message, 0 when it is one but not a
 * whole DHCP message (no magic cookie, options past its end), 1 when it is. */
int net_dhcp_parse(const uint8_t *f, size_t len, uint16_t port, struct dhcp_msg *m);
int net_dhcp_new(const char *dir, const uint8_t mac[6], struct net_dhcp **out);
size_t net_dhcp_input(struct net_dhcp *d, const uint8_t *frame, size_t len, uint8_t *reply,
		      bool *taken);
int net_dhcp_address(const struct net_dhcp *d, char *buf, size_t len);
void net_dhcp_free(struct net_dhcp *d);

/* --- user-mode networking (net-slirp.c) --------------------------------------------- */

/* A libslirp stack behind one card. Created and its forwards made on the VMM's thread;
 * once attached to the card's I/O thread, it lives there: net_slirp_input() and the
 * deliver callback run on that thread only. */
struct net_slirp;
/* A frame from the network for the guest; on the I/O thread. */
typedef void (*net_slirp_deliver)(void *opaque, const uint8_t *frame, size_t len);
/* The stack with nic's forwards; -VI_ESTATE naming a host port that cannot be bound. */
int net_slirp_new(const struct vmm_nic *nic, net_slirp_deliver deliver, void *opaque,
		  struct net_slirp **out);
int net_slirp_attach(struct net_slirp *s, struct iothread *io);
/* A frame from the guest; on the I/O thread. */
void net_slirp_input(struct net_slirp *s, const uint8_t *frame, size_t len);
/* As vmm_nic_forward(); from any thread but the I/O thread, one at a time. */
int net_slirp_forward(struct net_slirp *s, const struct vmm_forward *f, bool add);
int net_slirp_address(struct net_slirp *s, char *buf, size_t len);
/* After the I/O thread has ended. NULL is fine. */
void net_slirp_free(struct net_slirp *s);

/* The COM1 receiver the console feeds, and the keyboard Ctrl-Alt-Del goes to. */
struct serial;
struct i8042;
struct pci;
struct virtio_pci;
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
	atomic_bool active;   /* present in the guest: its thread runs it, else parks */
	atomic_uint_fast64_t exits;
	clockid_t clock;      /* the thread's CPU clock */
	uint64_t cpu_time_ns; /* its last reading, once the thread has ended */
};

/* A struct vmm_vcpu_state described, for the vCPU sections. */
extern const struct vi_state_desc vmm_vcpu_state_desc;

/* Creates every vCPU the VM may have (cfg.max_cpus), those from cfg.cpus on absent:
 * KVM has no way to destroy one, so an ejected vCPU is parked and used again when it
 * comes back. */
int vmm_vcpus_create(struct vmm *vm);
int vmm_vcpus_start(struct vmm *vm);
/* Lets vCPU i run the guest or parks it. */
void vmm_vcpu_activate(struct vmm *vm, unsigned i, bool on);
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
/* What vmm_check_config() checks of the boot image: kernel, memory it needs, command
 * line, initrd. */
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
	/* While dirty logging runs: the pages the VMM wrote, a bitmap a region (allocated
	 * when logging first starts, freed with the memory). */
	atomic_bool dirty_tracking;
	_Atomic uint64_t **vmm_dirty;
	/* A migration that slows the guest down: vCPUs do not enter the guest before this
	 * CLOCK_MONOTONIC time (ns). */
	_Atomic uint64_t throttle_until;
	/* An incoming migration's disk files that it made, removed if the source never
	 * says commit (ndisks entries, NULL outside one). */
	bool *incoming_made;
	/* The cgroup of the process's CPU quota (lib/vmm/cgroup.c), NULL before one is set:
	 * its directory, the mount it was made under, which version, the quota. */
	char *cgroup, *cgroup_home;
	bool cgroup_v2;
	unsigned cpu_quota;

	struct vmm_bus buses[2];
	struct vmm_device *devices; /* the registry, in creation order */
	size_t ndevices;
	struct vmm_console console;

	struct vmm_vcpu *vcpus;
	unsigned nvcpus;

	bool loaded; /* booted or restored: there is a guest to run */

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
