/* Checks what the loader handed over through the 64-bit boot protocol (entry state, zero
 * page, E820 map, command line, initrd, CPUID) and reports each fact on COM1, ending
 * with "bootinfo: ok" or "bootinfo: FAIL ...", then resets. */
#include "guest.h"

REALMODE_BANNER("bootinfo: boot me through the 64-bit entry\n");

#define E820_RAM 1
#define BOOT_CS 0x10
#define BOOT_DS 0x18
#define RFLAGS_IF (1u << 9)
#define CR0_PG (1ull << 31)
#define EFER_LMA (1ull << 10)

extern char _end[];

static unsigned failures;

static void check(bool ok, const char *what)
{
	if (!ok) {
		guest_printf("bootinfo: FAIL %s\n", what);
		failures++;
	}
}

static void check_entry_state(void)
{
	uint64_t cr0;

	__asm__ volatile("mov %%cr0, %0" : "=r"(cr0));
	guest_printf("entry: cs 0x%x ds 0x%x ss 0x%x rflags 0x%lx\n", boot_cs, boot_ds, boot_ss,
		     boot_rflags);
	check(boot_cs == BOOT_CS, "cs is __BOOT_CS");
	check(boot_ds == BOOT_DS && boot_ss == BOOT_DS, "ds and ss are __BOOT_DS");
	check(!(boot_rflags & RFLAGS_IF), "interrupts are off");
	check(cr0 & CR0_PG, "paging is on");
	check(rdmsr(0xc0000080) & EFER_LMA, "long mode is active");
}

static void check_header(const struct boot_params *bp)
{
	const struct setup_header *h = &bp->hdr;

	guest_printf("header: version 0x%x loader 0x%x loadflags 0x%x\n", h->version,
		     h->type_of_loader, h->loadflags);
	check(h->boot_flag == 0xaa55, "boot_flag is 0xaa55");
	check(h->header == 0x53726448, "header is HdrS");
	check(h->version == 0x020f, "version is the kernel's");
	check(h->type_of_loader != 0, "type_of_loader is set");
	check(h->code32_start == 0x100000, "code32_start is the load address");
}

/* Sorted, disjoint, RAM below 640 KiB, RAM holding this kernel; returns the end of
 * the RAM the kernel sits in. */
static uint64_t check_e820(const struct boot_params *bp)
{
	uint64_t ram = 0, prev_end = 0, kernel_ram_end = 0;
	bool low = false;

	guest_printf("e820: %u entries\n", bp->e820_entries);
	check(bp->e820_entries > 0 && bp->e820_entries <= 128, "e820 has entries");
	for (unsigned i = 0; i < bp->e820_entries && i < 128; i++) {
		const struct boot_e820_entry *e = &bp->e820_table[i];

		guest_printf("e820: %016llx-%016llx %s\n", e->addr, e->addr + e->size - 1,
			     e->type == E820_RAM ? "ram" : "reserved");
		check(e->addr >= prev_end && e->size, "e820 is sorted and disjoint");
		prev_end = e->addr + e->size;
		if (e->type != E820_RAM)
			continue;
		ram += e->size;
		if (e->addr == 0 && e->size >= 0x80000)
			low = true;
		if (e->addr <= 0x100000 && e->addr + e->size >= (uintptr_t)_end)
			kernel_ram_end = e->addr + e->size;
	}
	check(low, "e820 has conventional memory");
	check(kernel_ram_end != 0, "e820 holds the kernel");
	guest_printf("e820: ram %lu KiB\n", ram >> 10);
	return kernel_ram_end;
}

static void check_cmdline(const struct boot_params *bp)
{
	const char *cmdline = (const char *)(uintptr_t)bp->hdr.cmd_line_ptr;

	check(cmdline != 0, "cmd_line_ptr is set");
	if (cmdline) {
		check(guest_strlen(cmdline) <= bp->hdr.cmdline_size, "command line fits");
		guest_printf("cmdline: %s\n", cmdline);
	}
}

static void check_initrd(const struct boot_params *bp, uint64_t ram_end)
{
	uint64_t addr = bp->hdr.ramdisk_image | ((uint64_t)bp->ext_ramdisk_image << 32);
	uint64_t size = bp->hdr.ramdisk_size | ((uint64_t)bp->ext_ramdisk_size << 32);
	const uint8_t *p = (const uint8_t *)(uintptr_t)addr;
	uint32_t hash = 2166136261u;

	if (!size) {
		guest_printf("initrd: none\n");
		return;
	}
	check(!(addr & 0xfff), "initrd is page-aligned");
	check(addr >= (uintptr_t)_end, "initrd is above the kernel");
	check(addr + size <= ram_end && addr + size <= bp->hdr.initrd_addr_max + 1ull,
	      "initrd is in memory the kernel may use");
	for (uint64_t i = 0; i < size; i++)
		hash = (hash ^ p[i]) * 16777619u;
	guest_printf("initrd: %lu bytes fnv1a %08x\n", size, hash);
}

static void check_cpuid(void)
{
	uint32_t r[4];
	char sig[13];

	cpuid(1, 0, r);
	check(r[2] & (1u << 31), "cpuid has the hypervisor bit");
	check((r[1] >> 24) == 0, "the boot cpu has APIC ID 0");
	guest_printf("cpuid: cx16 %s\n", r[2] & (1u << 13) ? "yes" : "no");
	cpuid(0x40000000, 0, r);
	memcpy(sig, &r[1], 4);
	memcpy(sig + 4, &r[2], 4);
	memcpy(sig + 8, &r[3], 4);
	sig[12] = '\0';
	guest_printf("cpuid: hypervisor '%s'\n", sig);
}

void kernel_main(struct boot_params *bp)
{
	uint64_t ram_end;

	guest_printf("bootinfo: zero page at 0x%lx\n", (uint64_t)(uintptr_t)bp);
	check_entry_state();
	check_header(bp);
	check_cmdline(bp);
	ram_end = check_e820(bp);
	check_initrd(bp, ram_end);
	check_cpuid();
	if (failures)
		guest_printf("bootinfo: FAIL %u checks\n", failures);
	else
		guest_printf("bootinfo: ok\n");
}
