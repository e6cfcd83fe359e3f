/* The VMM's use of the state format (lib/state.h): a VM is its memory as page runs, one
 * section per vCPU, then its devices' sections in registry order, the in-kernel chips
 * first. A restore maps the saved pages privately into a VM that vmm_new() made. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"
#include "util.h"
#include "vmm/internal.h"

#define SECTIONS_PER_DEVICE ARRAY_SIZE(((struct vmm_device *)0)->sections)

void vmm_devices_hold(struct vmm *vm, bool on)
{
	for (size_t i = 0; i < vm->ndevices; i++)
		if (vm->devices[i].hold)
			vm->devices[i].hold(vm->devices[i].dev, on);
}

/* Writes (w) or loads (sec) one section of device d under the device's lock. */
static int device_section(struct vmm_device *d, const struct vmm_section *s,
			  struct vi_state_writer *w, const struct vi_state_section *sec)
{
	int ret;

	if (d->lock)
		pthread_mutex_lock(d->lock);
	ret = w ? vi_state_write(w, s->desc, s->instance, s->obj) : vi_state_load(sec, s->obj);
	if (d->lock)
		pthread_mutex_unlock(d->lock);
	return ret < 0 ? vi_error_wrap("device '%s'", d->name) : 0;
}

int vmm_save(struct vmm *vm, int fd, struct vi_state_writer *w)
{
	struct vi_state_header h = { .memory = vm->cfg.memory, .max_memory = vm->cfg.max_memory,
				     .cpus = vm->nvcpus, .max_cpus = vm->cfg.max_cpus };
	int ret;

	if (!vmm_paused(vm))
		return vi_error(VI_ESTATE, "the VM must be paused while its state is saved");
	snprintf(h.uuid, sizeof(h.uuid), "%s", vm->cfg.uuid ? vm->cfg.uuid : "");
	/* The devices' I/O threads would write guest memory behind the saved pages. */
	vmm_devices_hold(vm, true);
	ret = vi_state_writer_init(w, fd, &h);
	/* Pages the guest never wrote are known to be zero without reading them. */
	for (size_t i = 0; ret == 0 && i < vm->nmem; i++) {
		uint8_t *untouched = vmm_memory_untouched(vm, i);
		ret = vi_state_write_pages_known(w, vm->mem[i].gpa, vm->mem[i].hva,
						 vm->mem[i].size / VI_STATE_PAGE, untouched);
		free(untouched);
	}
	if (ret == 0)
		ret = vmm_save_machine(vm, w);
	vmm_devices_hold(vm, false);
	return ret;
}

int vmm_save_machine(struct vmm *vm, struct vi_state_writer *w)
{
	int ret = 0;

	for (unsigned i = 0; ret == 0 && i < vm->nvcpus; i++) {
		struct vmm_vcpu_state st;

		ret = vmm_vcpu_get_state(vm, i, &st);
		if (ret == 0)
			ret = vi_state_write(w, &vmm_vcpu_state_desc, i, &st);
	}
	for (size_t i = 0; ret == 0 && i < vm->ndevices; i++)
		for (size_t j = 0; ret == 0 && j < SECTIONS_PER_DEVICE; j++)
			if (vm->devices[i].sections[j].desc)
				ret = device_section(&vm->devices[i], &vm->devices[i].sections[j],
						     w, NULL);
	return ret == 0 ? vi_state_writer_finish(w) : ret;
}

/* --- restore ------------------------------------------------------------------------- */

/* A restore reads the whole state, checking every section against the VM, before it
 * changes anything: the page runs of a file are noted to be mapped, the other sections
 * kept to be loaded. Only a stream's pages, which cannot be read twice, go into guest
 * memory as they come. */
struct restore_run {
	uint64_t gpa, len, offset;
};

struct restore_item {
	struct vi_state_section sec; /* its payload is the item's own copy */
	struct vmm_device *device;   /* NULL: a vCPU, sec.instance */
	const struct vmm_section *section;
};

struct restore {
	struct vmm *vm;
	unsigned flags; /* VMM_RESTORE_* */
	const struct vmm_stream_hooks *hooks; /* a migration's; NULL for a saved state */
	struct vi_state_reader *reader;
	int fd;
	bool file;  /* a regular file: its pages are mapped, not read */
	unsigned cpus; /* the vCPUs the state has: all the VM may have, or (a state written
			* before CPUs could come and go) the present ones */
	bool *done; /* device sections (SECTIONS_PER_DEVICE a device), then vCPUs */
	struct restore_run *runs;
	size_t nruns;
	struct restore_item *items;
	size_t nitems;
};

/* The vCPU count may differ: a state written before CPUs could come and go has only
 * the present ones; the maximum must be the same. */
static int restore_check_header(struct vmm *vm, const struct vi_state_header *h)
{
	char mem[32], max_mem[32], want_mem[32], want_max[32];

	if (h->uuid[0] && vm->cfg.uuid && strcmp(h->uuid, vm->cfg.uuid))
		return vi_error(VI_EUSAGE, "the state is of VM %s, not %s", h->uuid, vm->cfg.uuid);
	if (h->cpus >= 1 && h->cpus <= h->max_cpus && h->max_cpus == vm->cfg.max_cpus &&
	    h->memory == vm->cfg.memory && h->max_memory == vm->cfg.max_memory)
		return 0;
	return vi_error(VI_EUSAGE,
			"the state is of a VM with %u vCPUs (%u at most) and %s of memory (%s at "
			"most); this one has %u (%u) and %s (%s)",
			h->cpus, h->max_cpus, vi_format_size(h->memory, mem, sizeof(mem)),
			vi_format_size(h->max_memory, max_mem, sizeof(max_mem)), vm->nvcpus,
			vm->cfg.max_cpus, vi_format_size(vm->cfg.memory, want_mem, sizeof(want_mem)),
			vi_format_size(vm->cfg.max_memory, want_max, sizeof(want_max)));
}

static int restore_memory(struct restore *r, const struct vi_state_section *sec)
{
	uint64_t len = sec->pages * VI_STATE_PAGE;
	void *hva = vmm_gpa_to_hva(r->vm, sec->gpa, len);

	if (!hva)
		return vi_error(VI_EUSAGE, "page run 0x%llx+0x%llx is not in guest memory",
				(unsigned long long)sec->gpa, (unsigned long long)len);
	/* The reader checks the pages' checksum when it moves past them. */
	if (!r->file)
		return vi_state_read_pages(r->reader, hva);
	r->runs = xrealloc(r->runs, (r->nruns + 1) * sizeof(*r->runs));
	r->runs[r->nruns++] = (struct restore_run){ sec->gpa, len, sec->data_offset };
	return 0;
}

static void restore_keep(struct restore *r, const struct vi_state_section *sec,
			 struct vmm_device *d, const struct vmm_section *s)
{
	struct restore_item *it;

	r->items = xrealloc(r->items, (r->nitems + 1) * sizeof(*r->items));
	it = &r->items[r->nitems++];
	*it = (struct restore_item){ .sec = *sec, .device = d, .section = s };
	it->sec.payload = xmalloc(sec->length + 1);
	memcpy((void *)it->sec.payload, sec->payload, sec->length);
}

static int restore_vcpu(struct restore *r, const struct vi_state_section *sec)
{
	bool *done = &r->done[r->vm->ndevices * SECTIONS_PER_DEVICE + sec->instance];

	if (sec->instance >= r->cpus)
		return vi_error(VI_EUSAGE, "the state has vCPU %u; its header says %u",
				sec->instance, r->cpus);
	if (*done)
		return vi_error(VI_EUSAGE, "the state has vCPU %u twice", sec->instance);
	*done = true;
	restore_keep(r, sec, NULL, NULL);
	return 0;
}

static int restore_device(struct restore *r, const struct vi_state_section *sec)
{
	for (size_t i = 0; i < r->vm->ndevices; i++) {
		struct vmm_device *d = &r->vm->devices[i];

		for (size_t j = 0; j < SECTIONS_PER_DEVICE; j++) {
			const struct vmm_section *s = &d->sections[j];

			if (!s->desc || s->desc->id != sec->id || s->instance != sec->instance)
				continue;
			if (r->done[i * SECTIONS_PER_DEVICE + j])
				return vi_error(VI_EUSAGE, "the state has section %s twice",
						vi_state_section_name(sec));
			r->done[i * SECTIONS_PER_DEVICE + j] = true;
			restore_keep(r, sec, d, s);
			return 0;
		}
	}
	return vi_error(VI_EUSAGE, "the state has section %s; this VM has no such device",
			vi_state_section_name(sec));
}

/* Whether none of device i's sections came. */
static bool restore_device_absent(const struct restore *r, size_t i)
{
	for (size_t j = 0; j < SECTIONS_PER_DEVICE; j++)
		if (r->done[i * SECTIONS_PER_DEVICE + j])
			return false;
	return true;
}

/* Every vCPU and every device section must have come, but an optional one (a state
 * written before there was such a section leaves the device as it was made), and for a
 * device the state may lack altogether (one with a reset, newer than the state). */
static int restore_check_done(const struct restore *r)
{
	for (size_t i = 0; i < r->vm->ndevices; i++)
		for (size_t j = 0; j < SECTIONS_PER_DEVICE; j++)
			if (r->vm->devices[i].sections[j].desc &&
			    !(r->vm->devices[i].sections[j].desc->flags & VI_STATE_F_OPTIONAL) &&
			    !r->done[i * SECTIONS_PER_DEVICE + j] &&
			    !(r->vm->devices[i].reset && restore_device_absent(r, i)))
				return vi_error(VI_EUSAGE, "the state has no %s section for '%s'",
						r->vm->devices[i].sections[j].desc->name,
						r->vm->devices[i].name);
	for (unsigned i = 0; i < r->cpus; i++)
		if (!r->done[r->vm->ndevices * SECTIONS_PER_DEVICE + i])
			return vi_error(VI_EUSAGE, "the state has no vCPU %u", i);
	return 0;
}

/* Reads and checks the whole state. */
static int restore_scan(struct restore *r)
{
	struct vmm *vm = r->vm;
	size_t nsections = vm->ndevices * SECTIONS_PER_DEVICE, nknown = 0;
	const struct vi_state_desc **known = xcalloc(nsections + 1, sizeof(*known));
	struct vi_state_section sec;
	struct vi_state_header h;
	struct stat st;
	int ret;

	known[nknown++] = &vmm_vcpu_state_desc;
	for (size_t i = 0; i < nsections; i++) {
		const struct vi_state_desc *d = vm->devices[i / SECTIONS_PER_DEVICE]
							.sections[i % SECTIONS_PER_DEVICE].desc;
		size_t k = 0;

		while (d && k < nknown && known[k] != d)
			k++;
		if (d && k == nknown)
			known[nknown++] = d;
	}
	r->done = xcalloc(nsections + vm->cfg.max_cpus, sizeof(*r->done));
	r->file = fstat(r->fd, &st) == 0 && S_ISREG(st.st_mode);
	ret = vi_state_reader_open(r->fd, known, nknown, &h, &r->reader);
	if (ret == 0 && r->file && (r->flags & VMM_RESTORE_UNCHECKED_PAGES))
		vi_state_reader_skip_pages(r->reader);
	if (ret == 0)
		ret = restore_check_header(vm, &h);
	if (ret == 0)
		r->cpus = h.cpus;
	while (ret == 0 && (ret = vi_state_next(r->reader, &sec)) == 1) {
		if (sec.id == VI_STATE_MEMORY)
			ret = restore_memory(r, &sec);
		else if (sec.id == VI_STATE_DISK_DATA && r->hooks)
			ret = r->hooks->disk_data(r->hooks->opaque, &sec);
		else if (sec.id == VI_STATE_DISK_DATA)
			ret = vi_error(VI_EUSAGE, "a saved state holds disk data: it is no VM's");
		else if (sec.id == VMM_SECTION_VCPU)
			ret = restore_vcpu(r, &sec);
		else
			ret = restore_device(r, &sec);
	}
	if (ret == 0)
		ret = restore_check_done(r);
	free(known);
	return ret;
}

/* Makes the VM what the scanned state says. */
static int restore_apply(struct restore *r)
{
	int ret = 0;

	/* A state without the hotplug section (written before there was one) has its
	 * vCPUs all present. */
	cpu_hotplug_reset(r->vm, r->cpus);
	for (size_t i = 0; ret == 0 && i < r->nruns; i++)
		ret = vmm_memory_map_file(r->vm, r->runs[i].gpa, r->runs[i].len, r->fd,
					  r->runs[i].offset);
	for (size_t i = 0; ret == 0 && i < r->vm->ndevices; i++)
		if (r->vm->devices[i].reset && restore_device_absent(r, i))
			r->vm->devices[i].reset(r->vm->devices[i].dev);
	for (size_t i = 0; ret == 0 && i < r->nitems; i++) {
		struct restore_item *it = &r->items[i];
		struct vmm_vcpu_state st = { 0 };

		if (it->device) {
			ret = device_section(it->device, it->section, NULL, &it->sec);
			continue;
		}
		ret = vi_state_load(&it->sec, &st);
		if (ret == 0)
			ret = vmm_vcpu_set_state(r->vm, it->sec.instance, &st);
	}
	if (ret == 0)
		cpu_hotplug_sync(r->vm);
	return ret;
}

static void restore_release(struct restore *r)
{
	vi_state_reader_free(r->reader);
	for (size_t i = 0; i < r->nitems; i++)
		free((void *)r->items[i].sec.payload);
	free(r->items);
	free(r->runs);
	free(r->done);
}

int vmm_restore(struct vmm *vm, int fd, unsigned flags)
{
	struct restore r = { .vm = vm, .fd = fd, .flags = flags };
	int ret;

	if (vm->loaded)
		return vi_error(VI_ESTATE, "the VM has been booted or restored already");
	ret = restore_scan(&r);
	if (ret == 0)
		ret = restore_apply(&r);
	vm->loaded = ret == 0;
	restore_release(&r);
	return ret;
}

int vmm_restore_stream(struct vmm *vm, int fd, const struct vmm_stream_hooks *hooks)
{
	struct restore r = { .vm = vm, .fd = fd, .hooks = hooks };
	int ret;

	if (vm->loaded)
		return vi_error(VI_ESTATE, "the VM has been booted or restored already");
	ret = restore_scan(&r);
	if (ret == 0 && r.file)
		ret = vi_error(VI_EUSAGE, "a migration comes on a stream, not from a file");
	if (ret == 0)
		ret = hooks->before_apply(hooks->opaque);
	if (ret == 0)
		ret = restore_apply(&r);
	vm->loaded = ret == 0;
	restore_release(&r);
	return ret;
}

int vmm_replace(struct vmm *vm, int fd, unsigned flags, const struct vmm_disk *disks,
		size_t ndisks, bool *changed)
{
	struct restore r = { .vm = vm, .fd = fd, .flags = flags };
	int ret;

	*changed = false;
	if (!vmm_paused(vm))
		return vi_error(VI_ESTATE, "the VM must be paused while its state is replaced");
	ret = restore_scan(&r);
	if (ret == 0 && !r.file)
		ret = vi_error(VI_EUSAGE, "a running VM's state is replaced from a file only");
	if (ret < 0)
		goto out;
	/* Nothing of the guest may move while it changes under the devices. */
	vmm_devices_hold(vm, true);
	ret = virtio_blk_replace(vm, disks, ndisks);
	if (ret == 0) {
		*changed = true;
		ret = vmm_memory_reset(vm);
	}
	if (ret == 0)
		ret = restore_apply(&r);
	vmm_devices_hold(vm, false);
out:
	restore_release(&r);
	return ret;
}
