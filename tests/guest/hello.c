/* The smallest guest: says hello on COM1 and triple-faults, through either entry, so
 * the start-up benchmark can run the same image on any VMM. */
#include "guest.h"

REALMODE_BANNER("hello\n");

void kernel_main(struct boot_params *bp)
{
	(void)bp;
	guest_printf("hello\n");
	guest_triple_fault();
}
