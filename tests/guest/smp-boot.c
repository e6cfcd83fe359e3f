/* Waking other CPUs: the local APIC's INIT-SIPI-SIPI into a real-mode trampoline
 * (smp-ap.S) that brings each to ap_main() in long mode. */
#include "guest.h"

#define LAPIC_BASE 0xfee00000ul
#define LAPIC_SVR 0xf0
#define LAPIC_ICR_LOW 0x300
#define LAPIC_ICR_HIGH 0x310
#define ICR_PENDING (1u << 12)
#define ICR_INIT 0x4500 /* INIT, level assert */
#define ICR_SIPI 0x4600
#define TRAMPOLINE 0x8000ul

/* The trampoline and the slots the boot CPU fills in its copy. */
extern char trampoline_start[], trampoline_end[], tr_cr3[], tr_entry[];
extern char ap_entry[];

static void lapic_write(unsigned reg, uint32_t v)
{
	*(volatile uint32_t *)(LAPIC_BASE + reg) = v;
}

static uint32_t lapic_read(unsigned reg)
{
	return *(volatile uint32_t *)(LAPIC_BASE + reg);
}

static void lapic_ipi(unsigned dest, uint32_t icr)
{
	lapic_write(LAPIC_ICR_HIGH, dest << 24);
	lapic_write(LAPIC_ICR_LOW, icr);
	while (lapic_read(LAPIC_ICR_LOW) & ICR_PENDING)
		cpu_relax();
}

unsigned apic_id(void)
{
	uint32_t r[4];

	cpuid(1, 0, r);
	return r[1] >> 24;
}

void smp_init(void)
{
	uint8_t *dst = (uint8_t *)TRAMPOLINE;
	uint64_t cr3;

	memcpy(dst, trampoline_start, (size_t)(trampoline_end - trampoline_start));
	__asm__ volatile("mov %%cr3, %0" : "=r"(cr3));
	*(uint32_t *)(dst + (tr_cr3 - trampoline_start)) = (uint32_t)cr3;
	*(uint64_t *)(dst + (tr_entry - trampoline_start)) = (uintptr_t)ap_entry;
	lapic_write(LAPIC_SVR, 0x1ff);
}

void smp_wake(uint32_t shorthand, unsigned dest)
{
	lapic_ipi(dest, shorthand | ICR_INIT);
	lapic_ipi(dest, shorthand | ICR_SIPI | (TRAMPOLINE >> 12));
	lapic_ipi(dest, shorthand | ICR_SIPI | (TRAMPOLINE >> 12));
}
