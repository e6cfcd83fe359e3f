/* The Linux x86 boot protocol, 64-bit entry: a bzImage (protocol 2.12 or later with
 * XLF_KERNEL_64) or an uncompressed ELF vmlinux entered at its 64-bit entry point, with
 * the zero page, E820 map, command line and initrd where boot.rst puts them, identity
 * page tables and a boot GDT. */
#include <asm/bootparam.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "util.h"
#include "vmm/internal.h"

#define BOOT_MIN_VERSION  0x020c /* 2.12: xloadflags and the 64-bit entry */
#define BOOT_HDR_MAGIC    0x53726448 /* "HdrS" */
#define BOOT_FLAG         0xaa55
#define BOOT_LOADER_UNDEF 0xff
#define BOOT_CS           0x10
#define BOOT_DS           0x18
#define BOOT_ENTRY_64     0x200 /* the 64-bit entry, from the start of the loaded kernel */
#define PAGE_SIZE         4096ull
#define PDE_2M_PAGES      4 /* page directories: 4 x 1 GiB of 2 MiB pages */

#define X86_CR0_PE   (1ull << 0)
#define X86_CR0_ET   (1ull << 4)
#define X86_CR0_NE   (1ull << 5)
#define X86_CR0_PG   (1ull << 31)
#define X86_CR4_PAE  (1ull << 5)
#define EFER_LME     (1ull << 8)
#define EFER_LMA     (1ull << 10)
#define PTE_PRESENT  (1ull << 0)
#define PTE_WRITE    (1ull << 1)
#define PTE_LARGE    (1ull << 7)
#define E820_RAM      1
#define E820_RESERVED 2

static int boot_open(const char *path, const char *what, struct stat *st)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0) {
		if (errno == ENOENT)
			return vi_error(VI_ENOTFOUND, "%s '%s' not found", what, path);
		return vi_error_errno(VI_EFAIL, errno, "cannot open %s '%s'", what, path);
	}
	if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
		close(fd);
		return vi_error(VI_EUSAGE, "%s '%s' is not a regular file", what, path);
	}
	return fd;
}

/* Reads exactly len bytes at off; short files are the caller's error to name. */
static int boot_pread(int fd, void *buf, size_t len, uint64_t off, const char *path)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = pread(fd, p, len, (off_t)off);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return vi_error_errno(VI_EFAIL, errno, "cannot read '%s'", path);
		if (n == 0)
			return vi_error(VI_EUSAGE, "'%s' is truncated", path);
		p += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

static int kernel_inspect_elf(int fd, const char *path, const Elf64_Ehdr *eh,
			      struct vmm_kernel *k)
{
	uint64_t lo = UINT64_MAX, hi = 0;
	bool entry_loaded = false;

	if (eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh->e_machine != EM_X86_64 || eh->e_type != ET_EXEC)
		return vi_error(VI_EUNSUPPORTED, "kernel '%s' is not an x86-64 ELF executable",
				path);
	if (eh->e_phentsize != sizeof(Elf64_Phdr) || eh->e_phnum == 0 || eh->e_phnum > 64)
		return vi_error(VI_EUSAGE, "kernel '%s' has a malformed ELF program header", path);
	for (unsigned i = 0; i < eh->e_phnum; i++) {
		Elf64_Phdr ph;
		int ret = boot_pread(fd, &ph, sizeof(ph), eh->e_phoff + i * sizeof(ph), path);

		if (ret < 0)
			return ret;
		if (ph.p_type != PT_LOAD || ph.p_memsz == 0)
			continue;
		if (ph.p_filesz > ph.p_memsz || ph.p_paddr < VMM_HIGH_MEMORY ||
		    ph.p_paddr + ph.p_memsz > VMM_MMIO_HOLE)
			return vi_error(VI_EUSAGE,
					"kernel '%s' has a segment outside low memory at 0x%llx",
					path, (unsigned long long)ph.p_paddr);
		if (ph.p_paddr < lo)
			lo = ph.p_paddr;
		if (ph.p_paddr + ph.p_memsz > hi)
			hi = ph.p_paddr + ph.p_memsz;
		if (eh->e_entry >= ph.p_paddr && eh->e_entry < ph.p_paddr + ph.p_memsz)
			entry_loaded = true;
	}
	if (!entry_loaded)
		return vi_error(VI_EUNSUPPORTED,
				"kernel '%s' has no 64-bit entry point at a physical address",
				path);
	k->elf = true;
	k->load_addr = lo;
	k->min_memory = hi;
	k->entry = eh->e_entry;
	k->initrd_max = 0x7fffffff;
	k->cmdline_max = 2047;
	return 0;
}

static int kernel_inspect_bzimage(const uint8_t *h, uint64_t file_size, const char *path,
				  struct vmm_kernel *k)
{
	const struct setup_header *hdr = (const void *)(h + 0x1f1);
	unsigned setup_sects = hdr->setup_sects ? hdr->setup_sects : 4;
	uint64_t payload = (setup_sects + 1) * 512ull;

	if (hdr->boot_flag != BOOT_FLAG || hdr->header != BOOT_HDR_MAGIC)
		return vi_error(VI_EUSAGE, "kernel '%s' is neither a bzImage nor an ELF vmlinux",
				path);
	if (hdr->version < BOOT_MIN_VERSION)
		return vi_error(VI_EUNSUPPORTED,
				"kernel '%s' speaks boot protocol %u.%02u; 2.12 or later is needed",
				path, hdr->version >> 8, hdr->version & 0xff);
	if (!(hdr->loadflags & LOADED_HIGH))
		return vi_error(VI_EUNSUPPORTED, "kernel '%s' is a zImage, not a bzImage", path);
	if (!(hdr->xloadflags & XLF_KERNEL_64))
		return vi_error(VI_EUNSUPPORTED, "kernel '%s' has no 64-bit entry point", path);
	if (payload >= file_size)
		return vi_error(VI_EUSAGE, "kernel '%s' is truncated", path);
	k->elf = false;
	k->load_addr = hdr->pref_address ? hdr->pref_address : VMM_HIGH_MEMORY;
	if (k->load_addr < VMM_HIGH_MEMORY || k->load_addr >= VMM_MMIO_HOLE)
		return vi_error(VI_EUSAGE, "kernel '%s' prefers load address 0x%llx, outside RAM",
				path, (unsigned long long)k->load_addr);
	/* init_size covers the decompressed kernel and its early work space. */
	k->min_memory = k->load_addr + (hdr->init_size > file_size - payload ?
					hdr->init_size : file_size - payload);
	k->entry = k->load_addr + BOOT_ENTRY_64;
	k->initrd_max = hdr->initrd_addr_max;
	k->cmdline_max = hdr->cmdline_size;
	return 0;
}

int vmm_kernel_inspect(const char *path, struct vmm_kernel *k)
{
	uint8_t head[1024] = { 0 };
	struct stat st;
	int fd, ret;

	memset(k, 0, sizeof(*k));
	fd = boot_open(path, "kernel", &st);
	if (fd < 0)
		return fd;
	if ((uint64_t)st.st_size < sizeof(head)) {
		ret = vi_error(VI_EUSAGE, "kernel '%s' is too small to be a kernel", path);
		goto out;
	}
	ret = boot_pread(fd, head, sizeof(head), 0, path);
	if (ret < 0)
		goto out;
	if (!memcmp(head, ELFMAG, SELFMAG))
		ret = kernel_inspect_elf(fd, path, (const Elf64_Ehdr *)head, k);
	else
		ret = kernel_inspect_bzimage(head, (uint64_t)st.st_size, path, k);
out:
	close(fd);
	return ret;
}

static uint64_t boot_low_ram(uint64_t memory)
{
	return memory < VMM_MMIO_HOLE ? memory : VMM_MMIO_HOLE;
}

/* The initrd goes as high as it may, page-aligned, above the kernel's working area. */
static int boot_place_initrd(const struct vmm_config *cfg, const struct vmm_kernel *k,
			     uint64_t size, uint64_t *addr)
{
	uint64_t top = boot_low_ram(cfg->memory);
	char need[32];

	if (k->initrd_max < top - 1)
		top = k->initrd_max + 1;
	if (size > top || ((top - size) & ~(PAGE_SIZE - 1)) < k->min_memory)
		return vi_error(VI_EUSAGE,
				"initrd '%s' (%s) does not fit below 0x%llx beside the kernel",
				cfg->initrd, vi_format_size(size, need, sizeof(need)),
				(unsigned long long)top);
	*addr = (top - size) & ~(PAGE_SIZE - 1);
	return 0;
}

/* The command line the kernel gets (the caller frees it): the configuration's, and
 * when memory may be plugged, Linux told to online it as it comes (movable, so that
 * it can go again), unless the line says how already. */
static char *boot_cmdline(const struct vmm_config *cfg)
{
	const char *line = cfg->cmdline ? cfg->cmdline : "";
	uint64_t gpa, size;

	vmm_hotplug_region(cfg, &gpa, &size);
	if (!size || strstr(line, "memhp_default_state="))
		return xstrdup(line);
	return xasprintf("%s%smemhp_default_state=online_movable", line, *line ? " " : "");
}

int vmm_boot_check(const struct vmm_config *cfg, struct vmm_kernel *k)
{
	char have[32], need[32], *cmdline = boot_cmdline(cfg);
	size_t cmdline_len = strlen(cmdline);
	int ret;

	free(cmdline);

	if (!cfg->kernel)
		return vi_error(VI_EUSAGE, "no kernel given");
	ret = vmm_kernel_inspect(cfg->kernel, k);
	if (ret < 0)
		return ret;
	if (cfg->memory < k->min_memory)
		return vi_error(VI_EUSAGE, "memory %s is below the %s kernel '%s' needs",
				vi_format_size(cfg->memory, have, sizeof(have)),
				vi_format_size((k->min_memory + 0xfffff) & ~0xfffffull, need,
					       sizeof(need)),
				cfg->kernel);
	if (cmdline_len > k->cmdline_max || cmdline_len >= VMM_CMDLINE_MAX)
		return vi_error(VI_EUSAGE,
				"command line is %zu bytes; kernel '%s' takes at most %u",
				cmdline_len, cfg->kernel, k->cmdline_max);
	if (cfg->initrd) {
		struct stat st;
		uint64_t addr;
		int fd = boot_open(cfg->initrd, "initrd", &st);

		if (fd < 0)
			return fd;
		close(fd);
		ret = boot_place_initrd(cfg, k, (uint64_t)st.st_size, &addr);
		if (ret < 0)
			return ret;
	}
	return 0;
}

/* Copies file bytes straight into guest memory: no second copy in the VMM's RSS. */
static int boot_load_file(struct vmm *vm, int fd, const char *path, uint64_t off, uint64_t len,
			  uint64_t gpa)
{
	void *dst = vmm_gpa_to_hva(vm, gpa, len);

	if (!dst)
		return vi_error(VI_EUSAGE, "'%s' does not fit in guest memory at 0x%llx", path,
				(unsigned long long)gpa);
	return boot_pread(fd, dst, len, off, path);
}

static int boot_load_kernel(struct vmm *vm, struct boot_params *zp)
{
	const struct vmm_kernel *k = &vm->kernel;
	const char *path = vm->cfg.kernel;
	struct stat st;
	int fd = boot_open(path, "kernel", &st), ret;

	if (fd < 0)
		return fd;
	if (k->elf) {
		Elf64_Ehdr eh;

		ret = boot_pread(fd, &eh, sizeof(eh), 0, path);
		for (unsigned i = 0; ret == 0 && i < eh.e_phnum; i++) {
			Elf64_Phdr ph;

			ret = boot_pread(fd, &ph, sizeof(ph), eh.e_phoff + i * sizeof(ph), path);
			if (ret == 0 && ph.p_type == PT_LOAD && ph.p_filesz)
				ret = boot_load_file(vm, fd, path, ph.p_offset, ph.p_filesz,
						     ph.p_paddr);
		}
		zp->hdr.boot_flag = BOOT_FLAG;
		zp->hdr.header = BOOT_HDR_MAGIC;
		zp->hdr.version = BOOT_MIN_VERSION;
		zp->hdr.kernel_alignment = 0x1000000;
		zp->hdr.cmdline_size = k->cmdline_max;
	} else {
		uint8_t head[0x300];
		unsigned hdr_end;
		uint64_t payload;

		ret = boot_pread(fd, head, sizeof(head), 0, path);
		if (ret < 0)
			goto out;
		/* The header runs from 0x1f1 to 0x202 plus the byte at 0x201. */
		hdr_end = 0x202 + head[0x201];
		if (hdr_end > sizeof(head))
			hdr_end = sizeof(head);
		memcpy((uint8_t *)zp + 0x1f1, head + 0x1f1, hdr_end - 0x1f1);
		payload = ((zp->hdr.setup_sects ? zp->hdr.setup_sects : 4) + 1) * 512ull;
		ret = boot_load_file(vm, fd, path, payload, (uint64_t)st.st_size - payload,
				     k->load_addr);
		zp->hdr.code32_start = (uint32_t)k->load_addr;
	}
	zp->hdr.type_of_loader = BOOT_LOADER_UNDEF;
	zp->hdr.vid_mode = 0xffff; /* "normal" */
out:
	close(fd);
	return ret;
}

static int boot_load_initrd(struct vmm *vm, struct boot_params *zp)
{
	struct stat st;
	uint64_t addr;
	int fd = boot_open(vm->cfg.initrd, "initrd", &st), ret;

	if (fd < 0)
		return fd;
	ret = boot_place_initrd(&vm->cfg, &vm->kernel, (uint64_t)st.st_size, &addr);
	if (ret == 0)
		ret = boot_load_file(vm, fd, vm->cfg.initrd, 0, (uint64_t)st.st_size, addr);
	close(fd);
	zp->hdr.ramdisk_image = (uint32_t)addr;
	zp->hdr.ramdisk_size = (uint32_t)st.st_size;
	zp->ext_ramdisk_image = (uint32_t)(addr >> 32);
	zp->ext_ramdisk_size = (uint32_t)((uint64_t)st.st_size >> 32);
	return ret;
}

static void boot_e820_add(struct boot_params *zp, uint64_t addr, uint64_t size, uint32_t type)
{
	struct boot_e820_entry *e = &zp->e820_table[zp->e820_entries++];

	e->addr = addr;
	e->size = size;
	e->type = type;
}

/* Conventional memory up to the EBDA, the BIOS area kept for firmware tables, RAM from
 * 1 MiB to the hole below 4 GiB and the rest above 4 GiB. virtio-mem's region, after
 * that, is not RAM here: its driver adds what it plugs. */
static void boot_e820(const struct vmm *vm, struct boot_params *zp)
{
	uint64_t low = boot_low_ram(vm->cfg.memory);

	boot_e820_add(zp, 0, VMM_EBDA_START, E820_RAM);
	boot_e820_add(zp, VMM_EBDA_START, 0xa0000 - VMM_EBDA_START, E820_RESERVED);
	boot_e820_add(zp, 0xf0000, VMM_HIGH_MEMORY - 0xf0000, E820_RESERVED);
	boot_e820_add(zp, VMM_HIGH_MEMORY, low - VMM_HIGH_MEMORY, E820_RAM);
	if (vm->cfg.memory > low)
		boot_e820_add(zp, VMM_4G, vm->cfg.memory - low, E820_RAM);
}

/* Identity-maps the first 4 GiB with 2 MiB pages: kernel, zero page, command line,
 * initrd and the local APIC are all reachable. */
static void boot_page_tables(struct vmm *vm)
{
	uint64_t *pml4 = vmm_gpa_to_hva(vm, VMM_PML4_ADDR, PAGE_SIZE * (2 + PDE_2M_PAGES));
	uint64_t *pdpt = pml4 + 512, *pd = pdpt + 512;

	memset(pml4, 0, PAGE_SIZE * (2 + PDE_2M_PAGES));
	pml4[0] = (VMM_PML4_ADDR + PAGE_SIZE) | PTE_PRESENT | PTE_WRITE;
	for (unsigned i = 0; i < PDE_2M_PAGES; i++)
		pdpt[i] = (VMM_PML4_ADDR + (2 + i) * PAGE_SIZE) | PTE_PRESENT | PTE_WRITE;
	for (unsigned i = 0; i < 512 * PDE_2M_PAGES; i++)
		pd[i] = ((uint64_t)i << 21) | PTE_PRESENT | PTE_WRITE | PTE_LARGE;
}

static void boot_segment(struct kvm_segment *seg, uint16_t selector, uint8_t type, bool code)
{
	*seg = (struct kvm_segment){
		.base = 0, .limit = 0xffffffff, .selector = selector, .type = type,
		.present = 1, .s = 1, .g = 1, .l = code, .db = !code,
	};
}

static int boot_cpu(struct vmm *vm, uint64_t entry)
{
	/* __BOOT_CS and __BOOT_DS at the selectors boot.rst names. */
	static const uint64_t gdt[] = { 0, 0, 0x00af9b000000ffffull, 0x00cf93000000ffffull };
	struct vmm_vcpu *bsp = &vm->vcpus[0];
	struct kvm_regs regs = { .rip = entry, .rsi = VMM_ZERO_PAGE, .rflags = 2 };
	struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };
	struct kvm_sregs sregs;

	memcpy(vmm_gpa_to_hva(vm, VMM_GDT_ADDR, sizeof(gdt)), gdt, sizeof(gdt));
	if (ioctl(bsp->fd, KVM_GET_SREGS, &sregs) < 0)
		return vi_error_errno(VI_EFAIL, errno,
				      "cannot read the system registers of vCPU 0");
	boot_segment(&sregs.cs, BOOT_CS, 0xb, true);
	boot_segment(&sregs.ds, BOOT_DS, 0x3, false);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.gdt.base = VMM_GDT_ADDR;
	sregs.gdt.limit = sizeof(gdt) - 1;
	sregs.cr3 = VMM_PML4_ADDR;
	sregs.cr4 = X86_CR4_PAE;
	sregs.cr0 = X86_CR0_PE | X86_CR0_ET | X86_CR0_NE | X86_CR0_PG;
	sregs.efer = EFER_LME | EFER_LMA;
	if (ioctl(bsp->fd, KVM_SET_SREGS, &sregs) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot enter long mode on vCPU 0");
	if (ioctl(bsp->fd, KVM_SET_REGS, &regs) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot set the registers of vCPU 0");
	if (ioctl(bsp->fd, KVM_SET_FPU, &fpu) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot set the FPU of vCPU 0");
	return 0;
}

int vmm_boot_setup(struct vmm *vm)
{
	struct boot_params *zp = vmm_gpa_to_hva(vm, VMM_ZERO_PAGE, sizeof(*zp));
	char *cmdline = vmm_gpa_to_hva(vm, VMM_CMDLINE_ADDR, VMM_CMDLINE_MAX), *line;
	uint64_t rsdp;
	int ret;

	memset(zp, 0, sizeof(*zp));
	ret = boot_load_kernel(vm, zp);
	if (ret == 0 && vm->cfg.initrd)
		ret = boot_load_initrd(vm, zp);
	if (ret < 0)
		return ret;
	line = boot_cmdline(&vm->cfg);
	snprintf(cmdline, VMM_CMDLINE_MAX, "%s", line);
	free(line);
	zp->hdr.cmd_line_ptr = VMM_CMDLINE_ADDR;
	boot_e820(vm, zp);
	ret = acpi_tables_write(vm, &rsdp);
	if (ret < 0)
		return ret;
	zp->acpi_rsdp_addr = rsdp;
	boot_page_tables(vm);
	return boot_cpu(vm, vm->kernel.entry);
}
