/* Brings up the other vCPUs with INIT-SIPI-SIPI through a real-mode trampoline; each
 * reports its APIC ID on COM1. "cpus=N" says how many to expect; the kernel ends with
 * "smp: ok" or "smp: FAIL ..." and resets. */
#include "guest.h"

REALMODE_BANNER("smp: boot me through the 64-bit entry\n");

#define LAPIC_BASE 0xfee00000ul
#define LAPIC_SVR 0xf0
#define LAPIC_ICR_LOW 0x300
#define LAPIC_ICR_HIGH 0x310
#define ICR_PENDING (1u << 12)
#define ICR_ALL_BUT_SELF (3u << 18)
#define ICR_INIT 0x4500 /* INIT, level assert */
#define ICR_SIPI 0x4600
#define TRAMPOLINE 0x8000ul
#define SMP_MAX_CPUS 64
#define AP_STACK 4096
#define WAIT_TSC 20000000000ull /* several seconds at any clock rate KVM shows */

/* The trampoline (smp-ap.S) and the slots the boot CPU fills in its copy. */
extern char trampoline_start[], trampoline_end[], tr_cr3[], tr_entry[];
extern char ap_entry[];

uint8_t ap_stacks[SMP_MAX_CPUS][AP_STACK] __attribute__((section(".stack"), aligned(16)));
static volatile unsigned cpus_up = 1;

static void lapic_write(unsigned reg, uint32_t v)
{
	*(volatile uint32_t *)(LAPIC_BASE + reg) = v;
}

static uint32_t lapic_read(unsigned reg)
{
	return *(volatile uint32_t *)(LAPIC_BASE + reg);
}

static void lapic_ipi(uint32_t icr)
{
	lapic_write(LAPIC_ICR_HIGH, 0);
	lapic_write(LAPIC_ICR_LOW, icr);
	while (lapic_read(LAPIC_ICR_LOW) & ICR_PENDING)
		cpu_relax();
}

static unsigned apic_id(void)
{
	uint32_t r[4];

	cpuid(1, 0, r);
	return r[1] >> 24;
}

/* Called by ap_entry on the AP's own stack. */
void ap_main(void)
{
	guest_lock();
	guest_printf("smp: cpu %u up\n", apic_id());
	__atomic_add_fetch(&cpus_up, 1, __ATOMIC_RELEASE);
	guest_unlock();
	for (;;)
		__asm__ volatile("cli; hlt");
}

static void trampoline_install(void)
{
	uint8_t *dst = (uint8_t *)TRAMPOLINE;
	uint64_t cr3;

	memcpy(dst, trampoline_start, (size_t)(trampoline_end - trampoline_start));
	__asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
	*(uint32_t *)(dst + (tr_cr3 - trampoline_start)) = (uint32_t)cr3;
	*(uint64_t *)(dst + (tr_entry - trampoline_start)) = (uintptr_t)ap_entry;
}

void kernel_main(struct boot_params *bp)
{
	char arg[16] = "1";
	unsigned want;
	uint64_t deadline;

	guest_cmdline_get(bp, "cpus", arg, sizeof(arg));
	want = (unsigned)guest_parse_u64(arg);
	guest_printf("smp: cpu %u up (boot cpu), expecting %u\n", apic_id(), want);
	if (want > SMP_MAX_CPUS) {
		guest_printf("smp: FAIL at most %u cpus\n", SMP_MAX_CPUS);
		return;
	}
	if (want > 1) {
		trampoline_install();
		lapic_write(LAPIC_SVR, 0x1ff);
		lapic_ipi(ICR_ALL_BUT_SELF | ICR_INIT);
		lapic_ipi(ICR_ALL_BUT_SELF | ICR_SIPI | (TRAMPOLINE >> 12));
		lapic_ipi(ICR_ALL_BUT_SELF | ICR_SIPI | (TRAMPOLINE >> 12));
	}
	deadline = rdtsc() + WAIT_TSC;
	while (__atomic_load_n(&cpus_up, __ATOMIC_ACQUIRE) < want && rdtsc() < deadline)
		cpu_relax();
	guest_lock();
	guest_printf("smp: %u of %u cpus up\n", cpus_up, want);
	guest_printf(cpus_up == want ? "smp: ok\n" : "smp: FAIL\n");
	guest_unlock();
}
