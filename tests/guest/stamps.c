/* Rewrites a working set of pages with generation stamps, checking that every page
 * holds the previous generation before writing the next: a guest whose whole memory
 * must come back intact when a snapshot of it is checked out. Prints "stamps: gen N ok"
 * after each generation, "stamps: CORRUPT ..." and stops on the first bad page;
 * stop=N ends it (by a reset) at generation N. "stamps: start" is printed at boot only:
 * a guest resumed from a snapshot goes on without it.
 * Built with STAMPS_TICK=CYCLES (stamps-tick, for bench/snapshot) it also prints a '.'
 * whenever that many TSC cycles have passed, looked at after every page and every step
 * of the breath: a resumed guest shows on its console within that time, however long
 * its generations take (200 ms each on a nested-virtualization host we measured).
 * Entered through PVH (stamps-tick-pvh.elf) it has no boot_params: the command line it
 * looks up through a NULL one (cmd_line_ptr at address 0x228) is none under QEMU, whose
 * firmware leaves that word zero, so there is no stop=. */
#include "guest.h"

REALMODE_BANNER("stamps: boot me through the 64-bit entry\n");

#define BASE (32ull << 20) /* above the kernel; the VM needs 64 MiB */
#define PAGES 1024u        /* 4 MiB */
#define WORDS 512u

static volatile uint64_t gen;

#ifdef STAMPS_TICK
static uint64_t last_tick;

static void tick(void)
{
	uint64_t now = rdtsc();

	/* A TSC that went back (a VMM that does not restore it) ticks at once too. */
	if (now - last_tick >= STAMPS_TICK) {
		guest_putc('.');
		last_tick = now;
	}
}
#else
static inline void tick(void)
{
}
#endif

static uint64_t stamp(uint64_t g, unsigned page, unsigned word)
{
	return g * 0x9e3779b97f4a7c15ull ^ ((uint64_t)page << 16) ^ word;
}

void kernel_main(struct boot_params *bp)
{
	char arg[24];
	uint64_t stop = ~0ull;

	if (guest_cmdline_get(bp, "stop", arg, sizeof(arg)))
		stop = guest_parse_u64(arg);
	guest_printf("stamps: start, %u pages\n", PAGES);
	while (gen < stop) {
		uint64_t next = gen + 1;
		for (unsigned p = 0; p < PAGES; p++) {
			volatile uint64_t *page = (volatile uint64_t *)(BASE + (uint64_t)p * 4096);
			/* A few words of each page: the first, the last and one between. */
			static const unsigned words[] = { 0, 257, WORDS - 1 };
			for (unsigned i = 0; gen && i < 3; i++)
				if (page[words[i]] != stamp(gen, p, words[i])) {
					guest_printf("stamps: CORRUPT page %u word %u at gen %llu\n", p,
						     words[i], (unsigned long long)gen);
					for (;;)
						cpu_relax();
				}
			for (unsigned i = 0; i < 3; i++)
				page[words[i]] = stamp(next, p, words[i]);
			tick();
		}
		gen = next;
		guest_printf("stamps: gen %llu ok\n", (unsigned long long)gen);
		for (unsigned i = 0; i < 20000; i++) {
			cpu_relax();
			tick();
		}
	}
	guest_printf("stamps: done at %llu\n", (unsigned long long)gen);
	guest_reset();
}
