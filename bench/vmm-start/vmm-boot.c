/* Boots a kernel on lib/vmm with COM1 on stdout and exits when the guest stops: our VMM
 * with nothing around it, for the start-up benchmark.
 * Usage: vmm-boot KERNEL MEMORY_MIB [CMDLINE]. With VMM_BENCH_RSS set it reports on
 * stderr its peak RSS and how much of that is guest memory. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "error.h"
#include "util.h"
#include "vmm/vmm.h"

/* Resident pages of the guest's mappings, in KiB. */
static unsigned long guest_resident_kib(struct vmm *vm)
{
	unsigned long pages = 0;

	for (size_t i = 0; i < vmm_memory_count(vm); i++) {
		const struct vmm_mem_region *r = vmm_memory_region(vm, i);
		size_t n = r->size / 4096;
		unsigned char *vec = xmalloc(n);

		if (mincore(r->hva, r->size, vec) == 0)
			for (size_t j = 0; j < n; j++)
				pages += vec[j] & 1;
		free(vec);
	}
	return pages * 4;
}

int main(int argc, char **argv)
{
	struct vmm_config cfg = { .cpus = 1, .console_fd = STDOUT_FILENO };
	struct vmm *vm;
	struct rusage ru;
	int reason;

	if (argc < 3) {
		fprintf(stderr, "usage: vmm-boot KERNEL MEMORY_MIB [CMDLINE]\n");
		return 2;
	}
	cfg.kernel = argv[1];
	cfg.memory = strtoull(argv[2], NULL, 10) << 20;
	cfg.cmdline = argc > 3 ? argv[3] : NULL;
	if (vmm_new(&cfg, &vm) < 0 || vmm_boot(vm) < 0 || vmm_start(vm) < 0) {
		fprintf(stderr, "vmm-boot: %s\n", vi_error_message());
		return 1;
	}
	reason = vmm_wait(vm);
	if (getenv("VMM_BENCH_RSS")) {
		getrusage(RUSAGE_SELF, &ru);
		fprintf(stderr, "rss %ld guest %lu\n", ru.ru_maxrss, guest_resident_kib(vm));
	}
	if (reason == VMM_EXIT_ERROR)
		fprintf(stderr, "vmm-boot: %s\n", vmm_exit_message(vm));
	vmm_free(vm);
	return reason == VMM_EXIT_ERROR;
}
