/* Brings up the other vCPUs with INIT-SIPI-SIPI through a real-mode trampoline; each
 * reports its APIC ID on COM1. "cpus=N" says how many to expect; the kernel ends with
 * "smp: ok" or "smp: FAIL ..." and resets. */
#include "guest.h"

REALMODE_BANNER("smp: boot me through the 64-bit entry\n");

#define SMP_MAX_CPUS 64
#define WAIT_TSC 20000000000ull /* several seconds at any clock rate KVM shows */

uint8_t ap_stacks[SMP_MAX_CPUS][AP_STACK] __attribute__((section(".stack"), aligned(16)));
static volatile unsigned cpus_up = 1;

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
		smp_init();
		smp_wake(ICR_ALL_BUT_SELF, 0);
	}
	deadline = rdtsc() + WAIT_TSC;
	while (__atomic_load_n(&cpus_up, __ATOMIC_ACQUIRE) < want && rdtsc() < deadline)
		cpu_relax();
	guest_lock();
	guest_printf("smp: %u of %u cpus up\n", cpus_up, want);
	guest_printf(cpus_up == want ? "smp: ok\n" : "smp: FAIL\n");
	guest_unlock();
}
