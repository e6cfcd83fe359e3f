/* vCPUs: one KVM vCPU and one thread each. A thread runs KVM_RUN, routes I/O exits to
 * the buses, and parks when the VM pauses; a signal kicks it out of the guest. */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "util.h"
#include "vmm/internal.h"

#define VCPU_KICK_SIGNAL SIGRTMIN

int vmm_vcpus_create(struct vmm *vm)
{
	/* Every vCPU the VM may have, those absent parked: under software KVM a vCPU
	 * created while the others run never leaves its wait for INIT and SIPI. Room for
	 * all of them at once, too: the threads hold their vCPU's address. */
	vm->vcpus = xcalloc(vm->cfg.max_cpus, sizeof(*vm->vcpus));
	for (unsigned i = 0; i < vm->cfg.max_cpus; i++) {
		struct vmm_vcpu *vcpu = &vm->vcpus[i];
		int ret;

		vcpu->vm = vm;
		vcpu->index = i;
		atomic_store(&vcpu->active, i < vm->cfg.cpus);
		vcpu->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
		if (vcpu->fd < 0)
			return vi_error_errno(VI_EFAIL, errno, "cannot create vCPU %u", i);
		vm->nvcpus++;
		vcpu->run = mmap(NULL, vm->vcpu_mmap_size, PROT_READ | PROT_WRITE, MAP_SHARED,
				 vcpu->fd, 0);
		if (vcpu->run == MAP_FAILED) {
			vcpu->run = NULL;
			return vi_error_errno(VI_EFAIL, errno, "cannot map the run area of vCPU %u",
					      i);
		}
		ret = vmm_cpuid_setup(vm, vcpu);
		if (ret == 0)
			ret = vmm_msrs_setup(vm, vcpu);
		if (ret < 0)
			return ret;
	}
	return 0;
}

static void vcpu_io(struct vmm_vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;

	for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size)
		vmm_bus_access(&vcpu->vm->buses[VMM_BUS_PIO], run->io.port, data, run->io.size,
			       run->io.direction == KVM_EXIT_IO_OUT);
}

static void vcpu_fail(struct vmm_vcpu *vcpu, const char *what, unsigned long long code)
{
	struct kvm_regs regs;

	if (ioctl(vcpu->fd, KVM_GET_REGS, &regs) < 0)
		regs.rip = 0;
	vmm_fail(vcpu->vm, "vCPU %u: %s %llu at rip 0x%llx", vcpu->index, what, code,
		 (unsigned long long)regs.rip);
}

/* Handles one exit; false ends the thread. */
static bool vcpu_exit(struct vmm_vcpu *vcpu)
{
	struct kvm_run *run = vcpu->run;
	struct vmm *vm = vcpu->vm;

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		vcpu_io(vcpu);
		return true;
	case KVM_EXIT_MMIO:
		vmm_bus_access(&vm->buses[VMM_BUS_MMIO], run->mmio.phys_addr, run->mmio.data,
			       run->mmio.len, run->mmio.is_write);
		return true;
	case KVM_EXIT_INTR:
		return true;
	case KVM_EXIT_SHUTDOWN:
		vmm_request_exit(vm, VMM_EXIT_SHUTDOWN);
		return false;
	case KVM_EXIT_SYSTEM_EVENT:
		switch (run->system_event.type) {
		case KVM_SYSTEM_EVENT_RESET:
			vmm_request_exit(vm, VMM_EXIT_RESET);
			return false;
		case KVM_SYSTEM_EVENT_SHUTDOWN:
			vmm_request_exit(vm, VMM_EXIT_POWEROFF);
			return false;
		default:
			vcpu_fail(vcpu, "system event", run->system_event.type);
			return false;
		}
	case KVM_EXIT_FAIL_ENTRY:
		vcpu_fail(vcpu, "VM entry failed with reason",
			  run->fail_entry.hardware_entry_failure_reason);
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		vcpu_fail(vcpu, "KVM internal error", run->internal.suberror);
		return false;
	default:
		vcpu_fail(vcpu, "unexpected exit", run->exit_reason);
		return false;
	}
}

/* Whether the vCPU must stay out of the guest: the VM pauses, or its CPU is absent. */
static bool vcpu_held(struct vmm_vcpu *vcpu)
{
	return atomic_load(&vcpu->vm->pause) || !atomic_load(&vcpu->active);
}

static void vcpu_park(struct vmm_vcpu *vcpu)
{
	struct vmm *vm = vcpu->vm;

	pthread_mutex_lock(&vm->lock);
	vm->parked++;
	pthread_cond_broadcast(&vm->parked_cond);
	while (vcpu_held(vcpu) && !atomic_load(&vm->stopping))
		pthread_cond_wait(&vm->resume_cond, &vm->lock);
	vm->parked--;
	pthread_mutex_unlock(&vm->lock);
}

/* A migration slows the guest down: no guest code until the time it set (a kick ends
 * the nap early, for a pause or a stop). */
static void vcpu_throttle(struct vmm *vm)
{
	uint64_t until = atomic_load(&vm->throttle_until);
	struct timespec ts = { (time_t)(until / 1000000000u), (long)(until % 1000000000u) };

	if (until)
		clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}

static void *vcpu_thread(void *arg)
{
	struct vmm_vcpu *vcpu = arg;
	struct vmm *vm = vcpu->vm;
	/* An I/O exit handled here that KVM has not completed yet: it does so (an IN's
	 * value into RAX, the instruction skipped) only at the next KVM_RUN. */
	bool io_pending = false;

	for (;;) {
		/* Clear the kick flag before looking at the requests: a kick that comes after
		 * the look sets it again and KVM_RUN returns at once. */
		vcpu->run->immediate_exit = 0;
		atomic_thread_fence(memory_order_seq_cst);
		if (atomic_load(&vm->stopping))
			break;
		if (vcpu_held(vcpu)) {
			if (!io_pending) {
				vcpu_park(vcpu);
				continue;
			}
			/* A parked vCPU's registers are whole, for a save or a restore
			 * over them: KVM completes the I/O and returns before the guest
			 * runs another instruction. */
			vcpu->run->immediate_exit = 1;
		}
		io_pending = false;
		if (atomic_load(&vm->throttle_until))
			vcpu_throttle(vm);
		if (ioctl(vcpu->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN)
				continue;
			vmm_fail(vm, "vCPU %u: KVM_RUN failed: %s", vcpu->index, strerror(errno));
			break;
		}
		atomic_fetch_add(&vcpu->exits, 1);
		io_pending = vcpu->run->exit_reason == KVM_EXIT_IO ||
			     vcpu->run->exit_reason == KVM_EXIT_MMIO;
		/* A write that ends the machine (S5, a reset) does not return to the
		 * guest, as on hardware: this vCPU stops here. */
		if (!vcpu_exit(vcpu) || atomic_load(&vm->exit_reason))
			break;
	}
	/* A finished thread counts as parked, so pausing never waits for it. */
	pthread_mutex_lock(&vm->lock);
	vm->parked++;
	pthread_cond_broadcast(&vm->parked_cond);
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

static void vcpu_kick_handler(int sig)
{
	(void)sig;
}

/* Takes a vCPU out of KVM_RUN; after a fence that publishes what it should look at. */
static void vcpu_kick(struct vmm_vcpu *vcpu)
{
	if (!vcpu->started)
		return;
	vcpu->run->immediate_exit = 1;
	pthread_kill(vcpu->thread, VCPU_KICK_SIGNAL);
}

int vmm_vcpus_start(struct vmm *vm)
{
	struct sigaction sa = { .sa_handler = vcpu_kick_handler };
	sigset_t block, old;
	int ret = 0;

	/* No SA_RESTART: the signal must interrupt KVM_RUN. */
	sigemptyset(&sa.sa_mask);
	if (sigaction(VCPU_KICK_SIGNAL, &sa, NULL) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot install the vCPU kick handler");
	/* vCPU threads take no process signals but the kick: SIGINT and friends go to the
	 * thread running the event loop. */
	sigfillset(&block);
	sigdelset(&block, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_SETMASK, &block, &old);
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct vmm_vcpu *vcpu = &vm->vcpus[i];
		int err = pthread_create(&vcpu->thread, NULL, vcpu_thread, vcpu);

		if (err) {
			ret = vi_error_errno(VI_EFAIL, err, "cannot start the thread of vCPU %u",
					     i);
			break;
		}
		vcpu->started = true;
		if (pthread_getcpuclockid(vcpu->thread, &vcpu->clock))
			vcpu->clock = -1;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	return ret;
}

void vmm_vcpu_activate(struct vmm *vm, unsigned i, bool on)
{
	struct vmm_vcpu *vcpu = &vm->vcpus[i];

	pthread_mutex_lock(&vm->lock);
	atomic_store(&vcpu->active, on);
	pthread_cond_broadcast(&vm->resume_cond);
	pthread_mutex_unlock(&vm->lock);
	if (!on) {
		atomic_thread_fence(memory_order_seq_cst);
		vcpu_kick(vcpu);
	}
}

void vmm_vcpus_kick(struct vmm *vm)
{
	atomic_thread_fence(memory_order_seq_cst);
	for (unsigned i = 0; i < vm->nvcpus; i++)
		vcpu_kick(&vm->vcpus[i]);
}

void vmm_vcpus_stop(struct vmm *vm)
{
	atomic_store(&vm->stopping, true);
	pthread_mutex_lock(&vm->lock);
	pthread_cond_broadcast(&vm->resume_cond);
	pthread_mutex_unlock(&vm->lock);
	vmm_vcpus_kick(vm);
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct vmm_vcpu *vcpu = &vm->vcpus[i];
		struct timespec ts;

		if (!vcpu->started)
			continue;
		/* The thread's CPU clock dies with it: keep its last reading. */
		if (clock_gettime(vcpu->clock, &ts) == 0)
			vcpu->cpu_time_ns =
				(uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
		pthread_join(vcpu->thread, NULL);
		vcpu->started = false;
	}
}

void vmm_vcpus_release(struct vmm *vm)
{
	vmm_vcpus_stop(vm);
	for (unsigned i = 0; i < vm->nvcpus; i++) {
		struct vmm_vcpu *vcpu = &vm->vcpus[i];

		if (vcpu->run)
			munmap(vcpu->run, vm->vcpu_mmap_size);
		close(vcpu->fd);
	}
	free(vm->vcpus);
	vm->vcpus = NULL;
	vm->nvcpus = 0;
}

unsigned vmm_vcpu_count(const struct vmm *vm)
{
	return vm->nvcpus;
}

static const struct vi_state_field vcpu_state_fields[] = {
	VI_STATE_FIELD(struct vmm_vcpu_state, regs),
	VI_STATE_FIELD(struct vmm_vcpu_state, sregs),
	VI_STATE_FIELD(struct vmm_vcpu_state, fpu),
	VI_STATE_FIELD(struct vmm_vcpu_state, xcrs),
	VI_STATE_FIELD(struct vmm_vcpu_state, lapic),
	VI_STATE_FIELD(struct vmm_vcpu_state, events),
	VI_STATE_FIELD(struct vmm_vcpu_state, mp_state),
	VI_STATE_FIELD(struct vmm_vcpu_state, debugregs),
	VI_STATE_FIELD(struct vmm_vcpu_state, nmsrs),
	VI_STATE_ARRAY(struct vmm_vcpu_state, msrs),
	VI_STATE_FIELDS_END,
};

/* The KVM structures as the kernel's ABI lays them out: fixed, so copied whole. */
const struct vi_state_desc vmm_vcpu_state_desc = {
	.name = "vcpu", .id = VMM_SECTION_VCPU, .version = 1, .oldest = 1,
	.fields = vcpu_state_fields,
};

/* The MSRs a saved vCPU carries: those Linux and our boot set-up touch. */
static const uint32_t vcpu_state_msrs[] = {
	0x174, 0x175, 0x176,                    /* SYSENTER_CS/ESP/EIP */
	0xc0000081, 0xc0000082, 0xc0000083,    /* STAR, LSTAR, CSTAR */
	0xc0000084, 0xc0000102,                /* SYSCALL_MASK, KERNEL_GS_BASE */
	0x10, 0x1a0, 0x277, 0x2ff,             /* TSC, MISC_ENABLE, PAT, MTRRdefType */
	0x4b564d00, 0x4b564d01, 0x4b564d02,    /* kvmclock: wall clock, system time, async PF */
	0x4b564d03, 0x4b564d04,                /* steal time, PV EOI */
};

struct vcpu_msrs {
	struct kvm_msrs hdr;
	struct kvm_msr_entry entries[ARRAY_SIZE(vcpu_state_msrs)];
};

#define VCPU_IOCTL(vcpu, req, arg, what)                                                     \
	do {                                                                                 \
		if (ioctl((vcpu)->fd, req, arg) < 0)                                         \
			return vi_error_errno(VI_EFAIL, errno, "cannot %s of vCPU %u", what, \
					      (vcpu)->index);                                \
	} while (0)

int vmm_vcpu_get_state(struct vmm *vm, unsigned index, struct vmm_vcpu_state *out)
{
	struct vcpu_msrs msrs = { .hdr.nmsrs = ARRAY_SIZE(vcpu_state_msrs) };
	struct vmm_vcpu *vcpu;
	int n;

	if (index >= vm->nvcpus)
		return vi_error(VI_EUSAGE, "no vCPU %u", index);
	vcpu = &vm->vcpus[index];
	memset(out, 0, sizeof(*out));
	VCPU_IOCTL(vcpu, KVM_GET_MP_STATE, &out->mp_state, "read the run state");
	VCPU_IOCTL(vcpu, KVM_GET_REGS, &out->regs, "read the registers");
	VCPU_IOCTL(vcpu, KVM_GET_SREGS, &out->sregs, "read the system registers");
	VCPU_IOCTL(vcpu, KVM_GET_FPU, &out->fpu, "read the FPU");
	VCPU_IOCTL(vcpu, KVM_GET_XCRS, &out->xcrs, "read the XCRs");
	VCPU_IOCTL(vcpu, KVM_GET_LAPIC, &out->lapic, "read the local APIC");
	VCPU_IOCTL(vcpu, KVM_GET_VCPU_EVENTS, &out->events, "read the pending events");
	VCPU_IOCTL(vcpu, KVM_GET_DEBUGREGS, &out->debugregs, "read the debug registers");
	for (size_t i = 0; i < ARRAY_SIZE(vcpu_state_msrs); i++)
		msrs.entries[i].index = vcpu_state_msrs[i];
	/* KVM stops at the first MSR it does not know: keep what it read. */
	n = ioctl(vcpu->fd, KVM_GET_MSRS, &msrs);
	if (n < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot read the MSRs of vCPU %u", index);
	out->nmsrs = (unsigned)n;
	memcpy(out->msrs, msrs.entries, (size_t)n * sizeof(msrs.entries[0]));
	return 0;
}

int vmm_vcpu_set_state(struct vmm *vm, unsigned index, const struct vmm_vcpu_state *state)
{
	struct vcpu_msrs msrs = { .hdr.nmsrs = state->nmsrs };
	struct vmm_vcpu_state s = *state;
	struct vmm_vcpu *vcpu;

	if (index >= vm->nvcpus)
		return vi_error(VI_EUSAGE, "no vCPU %u", index);
	vcpu = &vm->vcpus[index];
	if (state->nmsrs > ARRAY_SIZE(msrs.entries))
		return vi_error(VI_EUSAGE, "vCPU %u state has %u MSRs, at most %zu", index,
				state->nmsrs, ARRAY_SIZE(msrs.entries));
	memcpy(msrs.entries, state->msrs, state->nmsrs * sizeof(state->msrs[0]));
	/* The order matters: system registers before the registers that depend on the
	 * mode, MSRs before the local APIC, events last. */
	VCPU_IOCTL(vcpu, KVM_SET_SREGS, &s.sregs, "set the system registers");
	VCPU_IOCTL(vcpu, KVM_SET_REGS, &s.regs, "set the registers");
	VCPU_IOCTL(vcpu, KVM_SET_FPU, &s.fpu, "set the FPU");
	VCPU_IOCTL(vcpu, KVM_SET_XCRS, &s.xcrs, "set the XCRs");
	if (ioctl(vcpu->fd, KVM_SET_MSRS, &msrs) != (int)state->nmsrs)
		return vi_error(VI_EFAIL, "cannot set the MSRs of vCPU %u", index);
	VCPU_IOCTL(vcpu, KVM_SET_LAPIC, &s.lapic, "set the local APIC");
	VCPU_IOCTL(vcpu, KVM_SET_DEBUGREGS, &s.debugregs, "set the debug registers");
	VCPU_IOCTL(vcpu, KVM_SET_MP_STATE, &s.mp_state, "set the run state");
	VCPU_IOCTL(vcpu, KVM_SET_VCPU_EVENTS, &s.events, "set the pending events");
	return 0;
}
