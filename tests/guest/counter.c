/* Counts in memory and prints each count on COM1, up to stop=N, then resets: a guest
 * whose progress lives in its RAM and registers, for saving and restoring a running VM.
 * A VM restored from a save goes on from the count it was at, without a new start. */
#include "guest.h"

REALMODE_BANNER("counter: boot me through the 64-bit entry\n");

static volatile uint64_t count;

void kernel_main(struct boot_params *bp)
{
	char arg[24];
	uint64_t stop = 0;

	if (guest_cmdline_get(bp, "stop", arg, sizeof(arg)))
		stop = guest_parse_u64(arg);
	guest_printf("counter: start, stop at %llu\n", (unsigned long long)stop);
	while (count < stop) {
		count++;
		guest_printf("count %llu\n", (unsigned long long)count);
		/* A breath between counts, so a host watching the console sees them come. */
		for (unsigned i = 0; i < 2000; i++)
			cpu_relax();
	}
	guest_printf("counter: done at %llu\n", (unsigned long long)count);
	guest_reset();
}
