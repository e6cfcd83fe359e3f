/* Guest memory: a table of regions, each a host mapping registered as one KVM memory
 * slot: anonymous, with parts mapped privately from a state file on restore, and dirty
 * logging for migration. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "error.h"
#include "util.h"
#include "vmm/internal.h"

void vmm_hotplug_region(const struct vmm_config *cfg, uint64_t *gpa, uint64_t *size)
{
	uint64_t max = cfg->max_memory > cfg->memory ? cfg->max_memory : cfg->memory;
	uint64_t low = cfg->memory < VMM_MMIO_HOLE ? cfg->memory : VMM_MMIO_HOLE;
	uint64_t align = VMM_HOTPLUG_ALIGN - 1;

	*gpa = (VMM_4G + (cfg->memory - low) + align) & ~align;
	*size = (max - cfg->memory + align) & ~align;
}

static int memory_set_slot(struct vmm *vm, const struct vmm_mem_region *r)
{
	struct kvm_userspace_memory_region slot = {
		.slot = r->slot,
		.flags = (r->flags & VMM_MEM_DIRTY_LOG) ? KVM_MEM_LOG_DIRTY_PAGES : 0,
		.guest_phys_addr = r->gpa,
		.memory_size = r->size,
		.userspace_addr = (uintptr_t)r->hva,
	};

	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &slot) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot register guest memory at 0x%llx",
				      (unsigned long long)r->gpa);
	return 0;
}

int vmm_memory_add(struct vmm *vm, uint64_t gpa, uint64_t size, int fd, uint64_t offset,
		   unsigned flags)
{
	struct vmm_mem_region r = { .gpa = gpa, .size = size, .slot = vm->nmem,
				    .flags = flags | (fd < 0 ? VMM_MEM_ANON : 0) };
	int mflags = MAP_NORESERVE;
	void *hva;
	int ret;

	if (fd < 0)
		mflags |= MAP_PRIVATE | MAP_ANONYMOUS;
	else
		mflags |= (flags & VMM_MEM_PRIVATE) ? MAP_PRIVATE : MAP_SHARED;
	hva = mmap(NULL, size, PROT_READ | PROT_WRITE, mflags, fd, fd < 0 ? 0 : (off_t)offset);
	if (hva == MAP_FAILED)
		return vi_error_errno(VI_EFAIL, errno, "cannot map %llu MiB of guest memory",
				      (unsigned long long)(size >> 20));
	/* Guest RAM is no use in a core dump and large: keep it out. */
	madvise(hva, size, MADV_DONTDUMP);
	r.hva = hva;
	ret = memory_set_slot(vm, &r);
	if (ret < 0) {
		munmap(hva, size);
		return ret;
	}
	vm->mem = xrealloc(vm->mem, (vm->nmem + 1) * sizeof(*vm->mem));
	vm->mem[vm->nmem++] = r;
	return 0;
}

size_t vmm_memory_count(const struct vmm *vm)
{
	return vm->nmem;
}

const struct vmm_mem_region *vmm_memory_region(const struct vmm *vm, size_t index)
{
	return index < vm->nmem ? &vm->mem[index] : NULL;
}

void *vmm_gpa_to_hva(struct vmm *vm, uint64_t gpa, uint64_t len)
{
	for (size_t i = 0; i < vm->nmem; i++) {
		const struct vmm_mem_region *r = &vm->mem[i];

		if (gpa >= r->gpa && len <= r->size && gpa - r->gpa <= r->size - len)
			return r->hva + (gpa - r->gpa);
	}
	return NULL;
}

static uint64_t bitmap_words(const struct vmm_mem_region *r)
{
	return (r->size / 4096 + 63) / 64;
}

void vmm_mark_dirty(struct vmm *vm, uint64_t gpa, uint64_t len)
{
	/* After the device's write: either logging was on by then and the page is marked,
	 * or it started later and its first pass reads the page as written. */
	atomic_thread_fence(memory_order_seq_cst);
	if (!len || !atomic_load(&vm->dirty_tracking))
		return;
	for (size_t i = 0; i < vm->nmem; i++) {
		const struct vmm_mem_region *r = &vm->mem[i];
		uint64_t first, last;

		if (gpa >= r->gpa + r->size || gpa + len <= r->gpa)
			continue;
		first = ((gpa > r->gpa ? gpa : r->gpa) - r->gpa) / 4096;
		last = ((gpa + len < r->gpa + r->size ? gpa + len : r->gpa + r->size) - 1 -
			r->gpa) / 4096;
		for (uint64_t p = first; p <= last; p++)
			atomic_fetch_or(&vm->vmm_dirty[i][p / 64], 1ull << (p % 64));
	}
}

int vmm_memory_set_dirty_log(struct vmm *vm, bool on)
{
	if (on && !vm->vmm_dirty) {
		vm->vmm_dirty = xcalloc(vm->nmem + 1, sizeof(*vm->vmm_dirty));
		for (size_t i = 0; i < vm->nmem; i++)
			vm->vmm_dirty[i] = xcalloc(bitmap_words(&vm->mem[i]) + 1,
						   sizeof(**vm->vmm_dirty));
	}
	if (!on)
		atomic_store(&vm->dirty_tracking, false);
	for (size_t i = 0; i < vm->nmem; i++) {
		struct vmm_mem_region *r = &vm->mem[i];
		unsigned old = r->flags;
		int ret;

		r->flags = on ? old | VMM_MEM_DIRTY_LOG : old & ~VMM_MEM_DIRTY_LOG;
		ret = memory_set_slot(vm, r);
		if (ret < 0) {
			r->flags = old;
			return ret;
		}
	}
	if (on)
		atomic_store(&vm->dirty_tracking, true);
	return 0;
}

int vmm_memory_get_dirty(struct vmm *vm, size_t index, uint64_t *bitmap)
{
	struct kvm_dirty_log log = { 0 };

	if (index >= vm->nmem || !(vm->mem[index].flags & VMM_MEM_DIRTY_LOG))
		return vi_error(VI_ESTATE, "memory region %zu is not logging dirty pages", index);
	log.slot = vm->mem[index].slot;
	log.dirty_bitmap = bitmap;
	if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot read the dirty log of region %zu",
				      index);
	for (uint64_t w = 0; w < bitmap_words(&vm->mem[index]); w++)
		bitmap[w] |= atomic_exchange(&vm->vmm_dirty[index][w], 0);
	return 0;
}

int vmm_memory_map_file(struct vmm *vm, uint64_t gpa, uint64_t len, int fd, uint64_t offset)
{
	uint8_t *hva = vmm_gpa_to_hva(vm, gpa, len);

	if (!hva)
		return vi_error(VI_EUSAGE, "0x%llx+0x%llx is not in guest memory",
				(unsigned long long)gpa, (unsigned long long)len);
	/* In place of the anonymous pages: KVM's slot follows the new mapping. */
	if (mmap(hva, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_NORESERVE, fd,
		 (off_t)offset) == MAP_FAILED)
		return vi_error_errno(VI_EFAIL, errno, "cannot map guest memory at 0x%llx",
				      (unsigned long long)gpa);
	for (size_t i = 0; i < vm->nmem; i++)
		if (gpa >= vm->mem[i].gpa && gpa < vm->mem[i].gpa + vm->mem[i].size)
			vm->mem[i].flags &= ~VMM_MEM_ANON;
	madvise(hva, len, MADV_DONTDUMP);
	return 0;
}

int vmm_memory_reset(struct vmm *vm)
{
	for (size_t i = 0; i < vm->nmem; i++) {
		struct vmm_mem_region *r = &vm->mem[i];

		/* Fresh zero pages over the old ones, which go back to the host; the
		 * address stays, so KVM's slot need not change. */
		if (mmap(r->hva, r->size, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1,
			 0) == MAP_FAILED)
			return vi_error_errno(VI_EFAIL, errno, "cannot clear guest memory at 0x%llx",
					      (unsigned long long)r->gpa);
		madvise(r->hva, r->size, MADV_DONTDUMP);
		r->flags |= VMM_MEM_ANON;
	}
	return 0;
}

uint8_t *vmm_memory_untouched(const struct vmm *vm, size_t index)
{
	const struct vmm_mem_region *r = &vm->mem[index];
	uint64_t pages = r->size / 4096, first = (uint64_t)(uintptr_t)r->hva / 4096;
	uint64_t entries[512];
	uint8_t *untouched;
	int fd;

	if (!(r->flags & VMM_MEM_ANON) || (fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC)) < 0)
		return NULL;
	untouched = xcalloc(pages ? pages : 1, 1);
	for (uint64_t i = 0; i < pages;) {
		uint64_t n = pages - i < 512 ? pages - i : 512;
		ssize_t got = pread(fd, entries, n * 8, (off_t)((first + i) * 8));
		if (got != (ssize_t)(n * 8)) {
			free(untouched);
			untouched = NULL;
			break;
		}
		/* Neither present (bit 63) nor swapped (bit 62): never written. */
		for (uint64_t j = 0; j < n; j++)
			untouched[i + j] = !(entries[j] >> 62);
		i += n;
	}
	close(fd);
	return untouched;
}

void vmm_memory_release(struct vmm *vm)
{
	for (size_t i = 0; i < vm->nmem; i++) {
		munmap(vm->mem[i].hva, vm->mem[i].size);
		if (vm->vmm_dirty)
			free((void *)vm->vmm_dirty[i]);
	}
	free(vm->vmm_dirty);
	vm->vmm_dirty = NULL;
	free(vm->mem);
	vm->mem = NULL;
	vm->nmem = 0;
}
