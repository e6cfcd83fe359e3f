/* Plays the guest's part of ACPI CPU hotplug as Linux does it, on the register block
 * the DSDT's processor methods use: when the GED's line (IRQ 5, level-triggered) rises,
 * it looks at each CPU; one plugged in is woken with INIT-SIPI-SIPI and says
 * "hotplug: cpu N online", then "hotplug: cpu N alive K" now and then; one asked to go
 * is taken offline and ejected ("hotplug: cpu N ejected"). "max_cpus=N" says how many
 * CPUs there may be. The line is read in the 8259's IRR, set level-triggered in its
 * ELCR: the kernel runs with interrupts off. With "burn" on the command line every
 * online CPU, the hot-added ones too, computes instead of pausing between its checks
 * ("burn: cpu N" once), so that the VM uses all of its vCPUs, as a policy's test wants. */
#include "guest.h"

REALMODE_BANNER("cpu-hotplug: boot me through the 64-bit entry\n");

#define HP_MAX_CPUS 16
#define HP_SEL 0x0cd8
#define HP_STATUS 0x0cdc
#define HP_INSERT (1u << 1)
#define HP_REMOVE (1u << 2)
#define HP_EJECT (1u << 3)
#define GED_IRQ 5
#define PIC1_CMD 0x20
#define PIC1_ELCR 0x4d0
#define OCW3_READ_IRR 0x0a
#define ALIVE_TSC (1ull << 31) /* about a second between "alive" lines */
#define WAIT_TSC 40000000000ull
#define BURN_STEPS 4096 /* between two checks: a few ms of guest time under software KVM */

uint8_t ap_stacks[HP_MAX_CPUS][AP_STACK] __attribute__((section(".stack"), aligned(16)));
static volatile bool online[HP_MAX_CPUS], leave[HP_MAX_CPUS];
static bool burn;

/* What a CPU does between two looks at its work: pause, or burn some arithmetic,
 * which neither halts nor exits to the VMM. */
static void idle_step(void)
{
	uint64_t x = rdtsc();

	if (!burn) {
		cpu_relax();
		return;
	}
	for (unsigned i = 0; i < BURN_STEPS; i++)
		x = x * 6364136223846793005ull + 1442695040888963407ull;
	__asm__ volatile("" : : "r"(x));
}

static void say_burning(unsigned id)
{
	if (!burn)
		return;
	guest_lock();
	guest_printf("burn: cpu %u\n", id);
	guest_unlock();
}

void ap_main(void)
{
	unsigned id = apic_id(), alive = 0;
	uint64_t next = rdtsc() + ALIVE_TSC;

	guest_lock();
	guest_printf("hotplug: cpu %u online\n", id);
	guest_unlock();
	__atomic_store_n(&online[id], true, __ATOMIC_RELEASE);
	say_burning(id);
	while (!__atomic_load_n(&leave[id], __ATOMIC_ACQUIRE)) {
		if (rdtsc() >= next) {
			next += ALIVE_TSC;
			guest_lock();
			guest_printf("hotplug: cpu %u alive %u\n", id, ++alive);
			guest_unlock();
		}
		idle_step();
	}
	/* Offline, as Linux's play_dead: nothing but an INIT brings it back. */
	__atomic_store_n(&online[id], false, __ATOMIC_RELEASE);
	for (;;)
		__asm__ volatile("cli; hlt");
}

static bool ged_line(void)
{
	outb(PIC1_CMD, OCW3_READ_IRR);
	return inb(PIC1_CMD) & (1u << GED_IRQ);
}

static bool wait_online(unsigned cpu, bool want)
{
	uint64_t deadline = rdtsc() + WAIT_TSC;

	while (__atomic_load_n(&online[cpu], __ATOMIC_ACQUIRE) != want)
		if (rdtsc() > deadline)
			return false;
	return true;
}

static uint8_t cpu_status(unsigned cpu)
{
	outl(HP_SEL, cpu);
	return inb(HP_STATUS);
}

/* What the GED's _EVT does: every CPU with an event is notified and acknowledged. */
static void scan(unsigned max_cpus)
{
	for (unsigned cpu = 1; cpu < max_cpus; cpu++) {
		uint8_t st = cpu_status(cpu);

		if (st & HP_INSERT) {
			outb(HP_STATUS, HP_INSERT);
			leave[cpu] = false;
			smp_wake(0, cpu);
			if (!wait_online(cpu, true))
				guest_printf("hotplug: FAIL cpu %u did not come up\n", cpu);
		}
		if (st & HP_REMOVE) {
			outb(HP_STATUS, HP_REMOVE);
			__atomic_store_n(&leave[cpu], true, __ATOMIC_RELEASE);
			if (!wait_online(cpu, false))
				guest_printf("hotplug: FAIL cpu %u did not go offline\n", cpu);
			outl(HP_SEL, cpu);
			outb(HP_STATUS, HP_EJECT);
			guest_lock();
			guest_printf("hotplug: cpu %u ejected\n", cpu);
			guest_unlock();
		}
	}
}

void kernel_main(struct boot_params *bp)
{
	char arg[16] = "1", flag[4];
	unsigned max_cpus;

	burn = guest_cmdline_get(bp, "burn", flag, sizeof(flag));
	guest_cmdline_get(bp, "max_cpus", arg, sizeof(arg));
	max_cpus = (unsigned)guest_parse_u64(arg);
	if (max_cpus > HP_MAX_CPUS)
		max_cpus = HP_MAX_CPUS;
	smp_init();
	outb(PIC1_ELCR, inb(PIC1_ELCR) | 1u << GED_IRQ);
	guest_printf("hotplug: ready for %u cpus\n", max_cpus);
	say_burning(0);
	for (;;) {
		if (ged_line())
			scan(max_cpus);
		idle_step();
	}
}
