/* A VM's life: creation (KVM objects, memory, devices, vCPUs), boot, the device
 * registry, the event loop that runs beside the vCPU threads, pausing, stopping and
 * statistics. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "util.h"
#include "vmm/internal.h"

/* The devices of a VM, in this order: the in-kernel chips first (a restore sets them
 * before the devices raise their lines again), the PCI bus before the devices on it. A
 * new device adds its constructor here: an object file of a static library that nothing
 * names would not even be linked in, so the list cannot be gathered at link time. */
static int (*const vmm_device_inits[])(struct vmm *vm) = {
	vmm_kvm_state_init,
	serial_init,
	i8042_init,
	acpi_init,
	cpu_hotplug_init,
	pci_init,
	virtio_blk_init,
	virtio_net_init,
	virtio_rng_init,
	virtio_balloon_init,
	virtio_mem_init,
};

const char *vmm_exit_reason_name(int reason)
{
	static const char *const names[] = {
		[VMM_EXIT_RESET] = "reset",       [VMM_EXIT_SHUTDOWN] = "shutdown",
		[VMM_EXIT_POWEROFF] = "poweroff", [VMM_EXIT_STOPPED] = "stopped",
		[VMM_EXIT_ERROR] = "error",
	};

	if (reason < 0 || (size_t)reason >= ARRAY_SIZE(names) || !names[reason])
		return "running";
	return names[reason];
}

/* What the machine is, whatever runs in it: vCPUs and memory. */
static int vmm_check_machine(const struct vmm_config *cfg, int kvm_fd)
{
	unsigned max = vmm_kvm_max_vcpus(kvm_fd), max_cpus = cfg->max_cpus ? cfg->max_cpus
									   : cfg->cpus;
	char have[32], want[32];

	if (cfg->cpus == 0 || cfg->cpus > max)
		return vi_error(VI_EUSAGE, "%u vCPUs requested; this host allows 1 to %u",
				cfg->cpus, max);
	if (max_cpus < cfg->cpus || max_cpus > max)
		return vi_error(VI_EUSAGE, "%u max vCPUs requested for %u vCPUs; this host allows "
				"%u to %u", max_cpus, cfg->cpus, cfg->cpus, max);
	if (cfg->memory == 0 || cfg->memory % VI_STATE_PAGE)
		return vi_error(VI_EUSAGE, "memory %llu is not a multiple of 4 KiB",
				(unsigned long long)cfg->memory);
	if (cfg->max_memory && cfg->max_memory < cfg->memory)
		return vi_error(VI_EUSAGE, "max memory %s is below the memory, %s",
				vi_format_size(cfg->max_memory, have, sizeof(have)),
				vi_format_size(cfg->memory, want, sizeof(want)));
	return 0;
}

int vmm_check_config(const struct vmm_config *cfg)
{
	struct vmm_kernel k;
	int fd, ret;

	ret = vmm_boot_check(cfg, &k);
	if (ret < 0)
		return ret;
	fd = vmm_kvm_open();
	if (fd < 0)
		return fd;
	ret = vmm_check_machine(cfg, fd);
	close(fd);
	return ret;
}

const char *vmm_device_add(struct vmm *vm, const struct vmm_device *device)
{
	struct vmm_device *d;
	unsigned instance = 0;

	for (size_t i = 0; i < vm->ndevices; i++)
		instance += !strcmp(vm->devices[i].kind, device->kind);
	vm->devices = xrealloc(vm->devices, (vm->ndevices + 1) * sizeof(*vm->devices));
	d = &vm->devices[vm->ndevices++];
	*d = *device;
	d->instance = instance;
	d->name = device->name ? xstrdup(device->name)
			       : xasprintf("%s%u", device->kind, instance);
	return d->name;
}

void *vmm_device_get(struct vmm *vm, const char *kind, unsigned instance)
{
	for (size_t i = 0; i < vm->ndevices; i++)
		if (vm->devices[i].instance == instance && !strcmp(vm->devices[i].kind, kind))
			return vm->devices[i].dev;
	return NULL;
}

static int vmm_memory_setup(struct vmm *vm)
{
	uint64_t low = vm->cfg.memory < VMM_MMIO_HOLE ? vm->cfg.memory : VMM_MMIO_HOLE;
	int ret = vmm_memory_add(vm, 0, low, -1, 0, 0);

	uint64_t hotplug, hotplug_size;

	if (ret == 0 && vm->cfg.memory > low)
		ret = vmm_memory_add(vm, VMM_4G, vm->cfg.memory - low, -1, 0, 0);
	/* One slot for all that virtio-mem may plug: the host gives it memory as the
	 * guest writes plugged blocks, and takes it back when they are unplugged. */
	vmm_hotplug_region(&vm->cfg, &hotplug, &hotplug_size);
	if (ret == 0 && hotplug_size)
		ret = vmm_memory_add(vm, hotplug, hotplug_size, -1, 0, 0);
	return ret;
}

static int vmm_loop_setup(struct vmm *vm)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = -1 };

	vm->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	if (vm->epoll_fd < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot create the event loop");
	vm->event_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vm->event_fd < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot create the event loop's eventfd");
	ev.data.fd = vm->event_fd;
	if (epoll_ctl(vm->epoll_fd, EPOLL_CTL_ADD, vm->event_fd, &ev) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot watch the event loop's eventfd");
	return 0;
}

static struct vmm_disk *vmm_disks_copy(const struct vmm_disk *disks, size_t n)
{
	struct vmm_disk *copy = n ? xcalloc(n, sizeof(*copy)) : NULL;

	for (size_t i = 0; i < n; i++) {
		copy[i] = disks[i];
		copy[i].path = xstrdup(disks[i].path);
	}
	return copy;
}

static struct vmm_nic *vmm_nics_copy(const struct vmm_nic *nics, size_t n)
{
	struct vmm_nic *copy = n ? xcalloc(n, sizeof(*copy)) : NULL;

	for (size_t i = 0; i < n; i++) {
		struct vmm_forward *fwd = xcalloc(nics[i].nforwards + 1, sizeof(*fwd));

		copy[i] = nics[i];
		copy[i].tap = xstrdup(nics[i].tap);
		copy[i].bridge = xstrdup(nics[i].bridge);
		for (size_t j = 0; j < nics[i].nforwards; j++) {
			fwd[j] = nics[i].forwards[j];
			fwd[j].host_addr = xstrdup(nics[i].forwards[j].host_addr);
		}
		copy[i].forwards = fwd;
	}
	return copy;
}

char *vmm_config_shape(const struct vmm_config *cfg)
{
	char *shape = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&shape, &len);

	if (!f)
		abort(); /* out of memory, as xmalloc() would */
	fprintf(f, "cpus %u/%u memory %llu/%llu rng %d balloon %d disks %zu", cfg->cpus,
		cfg->max_cpus ? cfg->max_cpus : cfg->cpus, (unsigned long long)cfg->memory,
		(unsigned long long)(cfg->max_memory ? cfg->max_memory : cfg->memory), cfg->rng,
		cfg->balloon, cfg->ndisks);
	for (size_t i = 0; i < cfg->ndisks; i++)
		fprintf(f, " %s", cfg->disks[i].readonly ? "ro" : "rw");
	for (size_t i = 0; i < cfg->nnics; i++) {
		const struct vmm_nic *n = &cfg->nics[i];
		const uint8_t *m = n->mac;

		fprintf(f, " nic %02x:%02x:%02x:%02x:%02x:%02x %s %s %s", m[0], m[1], m[2], m[3],
			m[4], m[5], n->user ? "user" : "tap", n->tap ? n->tap : "-",
			n->bridge ? n->bridge : "-");
		for (size_t j = 0; j < n->nforwards; j++)
			fprintf(f, " %s:%s:%u:%u", n->forwards[j].udp ? "udp" : "tcp",
				n->forwards[j].host_addr ? n->forwards[j].host_addr : "",
				n->forwards[j].host_port, n->forwards[j].guest_port);
	}
	if (fclose(f) != 0)
		abort();
	return shape;
}

int vmm_new(const struct vmm_config *cfg, struct vmm **out)
{
	struct vmm *vm = xcalloc(1, sizeof(*vm));
	char module[32];
	int ret;

	vm->cfg = *cfg;
	vm->cfg.kernel = xstrdup(cfg->kernel);
	vm->cfg.initrd = xstrdup(cfg->initrd);
	vm->cfg.cmdline = xstrdup(cfg->cmdline);
	vm->cfg.uuid = xstrdup(cfg->uuid);
	vm->cfg.max_cpus = cfg->max_cpus ? cfg->max_cpus : cfg->cpus;
	vm->cfg.max_memory = cfg->max_memory ? cfg->max_memory : cfg->memory;
	vm->cfg.disks = vmm_disks_copy(cfg->disks, cfg->ndisks);
	vm->cfg.nics = vmm_nics_copy(cfg->nics, cfg->nnics);
	vm->kvm_fd = vm->vm_fd = vm->epoll_fd = vm->event_fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_cond_init(&vm->parked_cond, NULL);
	pthread_cond_init(&vm->resume_cond, NULL);
	vmm_console_init(&vm->console);

	vm->kvm_fd = vmm_kvm_open();
	if (vm->kvm_fd < 0) {
		ret = vm->kvm_fd;
		goto fail;
	}
	vm->emulated = !vmm_kvm_hardware(module, sizeof(module));
	ret = vmm_check_machine(&vm->cfg, vm->kvm_fd);
	if (ret == 0)
		ret = vmm_kvm_create_vm(vm);
	if (ret == 0)
		ret = vmm_memory_setup(vm);
	if (ret == 0)
		ret = vmm_kvm_create_irqchip(vm);
	for (size_t i = 0; ret == 0 && i < ARRAY_SIZE(vmm_device_inits); i++)
		ret = vmm_device_inits[i](vm);
	if (ret == 0)
		ret = vmm_cpuid_supported(vm);
	if (ret == 0)
		ret = vmm_vcpus_create(vm);
	if (ret == 0)
		ret = vmm_loop_setup(vm);
	if (ret == 0 && cfg->console_fd >= 0)
		ret = vmm_console_attach(vm, cfg->console_fd, false);
	if (ret < 0)
		goto fail;
	*out = vm;
	return 0;
fail:
	vmm_free(vm);
	return ret;
}

int vmm_boot(struct vmm *vm)
{
	int ret;

	if (vm->loaded)
		return vi_error(VI_ESTATE, "the VM has been booted or restored already");
	ret = vmm_boot_check(&vm->cfg, &vm->kernel);
	if (ret == 0)
		ret = vmm_boot_setup(vm);
	vm->loaded = ret == 0;
	return ret;
}

int vmm_start(struct vmm *vm)
{
	int ret;

	if (!vm->loaded)
		return vi_error(VI_ESTATE, "the VM has neither been booted nor restored");
	ret = vmm_vcpus_start(vm);

	atomic_store(&vm->running, ret == 0);
	return ret;
}

void vmm_fail(struct vmm *vm, const char *fmt, ...)
{
	int none = 0;
	va_list ap;

	/* The first failure is the one worth reporting; later ones are its echoes. */
	if (!atomic_compare_exchange_strong(&vm->exit_reason, &none, VMM_EXIT_ERROR))
		return;
	va_start(ap, fmt);
	vsnprintf(vm->exit_message, sizeof(vm->exit_message), fmt, ap);
	va_end(ap);
	if (vm->event_fd >= 0 && eventfd_write(vm->event_fd, 1) < 0)
		abort(); /* a full eventfd counter: cannot happen with +1 steps */
}

void vmm_request_exit(struct vmm *vm, int reason)
{
	int none = 0;

	if (atomic_compare_exchange_strong(&vm->exit_reason, &none, reason) &&
	    vm->event_fd >= 0 && eventfd_write(vm->event_fd, 1) < 0)
		abort();
}

const char *vmm_exit_message(const struct vmm *vm)
{
	return vm->exit_message;
}

static struct vmm_watch *vmm_find_watch(struct vmm *vm, int fd)
{
	for (size_t i = 0; i < vm->nwatches; i++)
		if (vm->watches[i].fd == fd)
			return &vm->watches[i];
	return NULL;
}

int vmm_watch_fd(struct vmm *vm, int fd, vmm_fd_cb cb, void *opaque)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };

	if (epoll_ctl(vm->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot watch fd %d", fd);
	vm->watches = xrealloc(vm->watches, (vm->nwatches + 1) * sizeof(*vm->watches));
	vm->watches[vm->nwatches++] = (struct vmm_watch){ fd, cb, opaque };
	return 0;
}

void vmm_unwatch_fd(struct vmm *vm, int fd)
{
	struct vmm_watch *w = vmm_find_watch(vm, fd);

	if (!w)
		return;
	epoll_ctl(vm->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
	*w = vm->watches[--vm->nwatches];
}

int vmm_wait(struct vmm *vm)
{
	while (!atomic_load(&vm->exit_reason)) {
		struct epoll_event evs[16];
		int n = epoll_wait(vm->epoll_fd, evs, ARRAY_SIZE(evs), -1);

		if (n < 0 && errno != EINTR) {
			vmm_fail(vm, "event loop failed: %s", strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			eventfd_t value;
			struct vmm_watch *w;

			if (evs[i].data.fd == vm->event_fd) {
				eventfd_read(vm->event_fd, &value);
				continue;
			}
			/* Looked up each time: an earlier callback may have removed it. */
			w = vmm_find_watch(vm, evs[i].data.fd);
			if (w)
				w->cb(vm, w->fd, w->opaque);
		}
	}
	vmm_vcpus_stop(vm);
	return atomic_load(&vm->exit_reason);
}

int vmm_pause(struct vmm *vm)
{
	/* Before vmm_start() the flag alone holds the vCPUs back. */
	if (atomic_exchange(&vm->pause, true) || !atomic_load(&vm->running))
		return 0;
	vmm_vcpus_kick(vm);
	pthread_mutex_lock(&vm->lock);
	while (vm->parked < vm->nvcpus)
		pthread_cond_wait(&vm->parked_cond, &vm->lock);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

int vmm_resume(struct vmm *vm)
{
	pthread_mutex_lock(&vm->lock);
	atomic_store(&vm->pause, false);
	pthread_cond_broadcast(&vm->resume_cond);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

bool vmm_paused(const struct vmm *vm)
{
	return atomic_load(&vm->pause);
}

void vmm_inject_ctrl_alt_del(struct vmm *vm)
{
	i8042_press_ctrl_alt_del(vmm_device_get(vm, "i8042", 0));
}

void vmm_io(struct vmm *vm, bool mmio, uint64_t addr, void *data, unsigned len, bool write)
{
	vmm_bus_access(&vm->buses[mmio ? VMM_BUS_MMIO : VMM_BUS_PIO], addr, data, len, write);
}

void vmm_get_stats(struct vmm *vm, struct vmm_stats *out)
{
	struct vmm_memory_size size;
	struct vmm_vcpus_info cpus;

	vmm_get_vcpus(vm, &cpus);
	memset(out, 0, sizeof(*out));
	out->vcpus = cpus.present;
	vmm_memory_size(vm, &size);
	out->memory = size.boot + size.plugged;
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct vmm_vcpu *vcpu = &vm->vcpus[i];
		struct timespec ts;

		out->exits += atomic_load(&vcpu->exits);
		if (!vcpu->started)
			out->cpu_time_ns += vcpu->cpu_time_ns;
		else if (clock_gettime(vcpu->clock, &ts) == 0)
			out->cpu_time_ns +=
				(uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	}
	virtio_blk_add_stats(vm, out);
	virtio_net_add_stats(vm, out);
}

void vmm_release_devices(struct vmm *vm)
{
	vmm_vcpus_release(vm);
	for (size_t i = 0; i < vm->ndevices; i++) {
		vm->devices[i].free(vm->devices[i].dev);
		free((char *)vm->devices[i].name);
	}
	free(vm->devices);
	vm->devices = NULL;
	vm->ndevices = 0;
	for (size_t i = 0; i < ARRAY_SIZE(vm->buses); i++)
		vmm_bus_release(&vm->buses[i]);
}

void vmm_free(struct vmm *vm)
{
	if (!vm)
		return;
	vmm_cgroup_leave(vm);
	vmm_release_devices(vm);
	vmm_memory_release(vm);
	free(vm->supported_cpuid);
	/* An incoming migration that never committed leaves no disks behind. */
	for (size_t i = 0; vm->incoming_made && i < vm->cfg.ndisks; i++)
		if (vm->incoming_made[i])
			unlink(vm->cfg.disks[i].path);
	free(vm->incoming_made);
	free(vm->watches);
	if (vm->epoll_fd >= 0)
		close(vm->epoll_fd);
	if (vm->event_fd >= 0)
		close(vm->event_fd);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	vmm_console_release(&vm->console);
	pthread_cond_destroy(&vm->parked_cond);
	pthread_cond_destroy(&vm->resume_cond);
	pthread_mutex_destroy(&vm->lock);
	free((char *)vm->cfg.kernel);
	free((char *)vm->cfg.initrd);
	free((char *)vm->cfg.cmdline);
	free((char *)vm->cfg.uuid);
	for (size_t i = 0; i < vm->cfg.ndisks; i++)
		free((char *)vm->cfg.disks[i].path);
	free((struct vmm_disk *)vm->cfg.disks);
	for (size_t i = 0; i < vm->cfg.nnics; i++) {
		free((char *)vm->cfg.nics[i].tap);
		free((char *)vm->cfg.nics[i].bridge);
		for (size_t j = 0; j < vm->cfg.nics[i].nforwards; j++)
			free((char *)vm->cfg.nics[i].forwards[j].host_addr);
		free((struct vmm_forward *)vm->cfg.nics[i].forwards);
	}
	free((struct vmm_nic *)vm->cfg.nics);
	free(vm);
}
