/* vCPU hotplug through ACPI: which of the max_cpus CPUs are present, which wait for the
 * guest to see them come or to let them go, the register block the DSDT's processor
 * methods read and write, and the GED interrupt that sends the guest to look.
 *
 * The register block (CPU_HOTPLUG_BASE, 8 bytes of I/O space):
 *   +0  selector, 32 bits: the CPU the status byte is about; any width, any byte of it
 *   +4  status, 8 bits: CPU_HP_PRESENT, CPU_HP_INSERT and CPU_HP_REMOVE read as they
 *       stand; writing INSERT or REMOVE as 1 acknowledges that event, EJECT as 1 ejects
 *       a CPU that was asked to go. Other bits read as zero, writes of zero change
 *       nothing.
 * The interrupt (CPU_HOTPLUG_GSI) is level-triggered, active high: raised while any
 * CPU has an event the guest has not acknowledged. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "util.h"
#include "vmm/internal.h"

struct cpu_hotplug {
	struct vmm *vm;
	pthread_mutex_t lock;
	uint32_t selector;
	uint8_t cpus[VMM_MAX_VCPUS]; /* CPU_HP_PRESENT | CPU_HP_INSERT | CPU_HP_REMOVE */
	bool line;
	bool used; /* the guest has touched the register block: its ACPI driver runs */
};

/* Sets the interrupt line where it changed, or always (force) after a restore. */
static void hotplug_update_line(struct cpu_hotplug *hp, bool force)
{
	bool line = false;

	for (unsigned i = 0; i < hp->vm->cfg.max_cpus; i++)
		line |= (hp->cpus[i] & (CPU_HP_INSERT | CPU_HP_REMOVE)) != 0;
	if (force || line != hp->line) {
		hp->line = line;
		vmm_irq_line(hp->vm, CPU_HOTPLUG_GSI, line);
	}
}

static void hotplug_read(void *opaque, uint64_t offset, uint8_t *data, unsigned len)
{
	struct cpu_hotplug *hp = opaque;
	uint8_t regs[CPU_HOTPLUG_LEN] = { 0 };

	pthread_mutex_lock(&hp->lock);
	hp->used = true;
	memcpy(&regs[CPU_HOTPLUG_SEL], &hp->selector, 4);
	if (hp->selector < hp->vm->cfg.max_cpus)
		regs[CPU_HOTPLUG_STATUS] = hp->cpus[hp->selector];
	pthread_mutex_unlock(&hp->lock);
	for (unsigned i = 0; i < len; i++)
		data[i] = offset + i < CPU_HOTPLUG_LEN ? regs[offset + i] : 0;
}

static void hotplug_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned len)
{
	struct cpu_hotplug *hp = opaque;
	unsigned eject = VMM_MAX_VCPUS;

	pthread_mutex_lock(&hp->lock);
	for (unsigned i = 0; i < len; i++) {
		uint64_t at = offset + i;
		uint8_t *cpu, v = data[i];

		if (at < CPU_HOTPLUG_SEL + 4) {
			hp->selector &= ~(0xffu << 8 * at);
			hp->selector |= (uint32_t)v << 8 * at;
			continue;
		}
		if (at != CPU_HOTPLUG_STATUS || hp->selector >= hp->vm->cfg.max_cpus)
			continue;
		cpu = &hp->cpus[hp->selector];
		*cpu &= (uint8_t)~(v & (CPU_HP_INSERT | CPU_HP_REMOVE));
		/* The boot CPU never goes: nothing asks it to. */
		if ((v & CPU_HP_EJECT) && hp->selector > 0 && (*cpu & CPU_HP_PRESENT)) {
			*cpu = 0;
			eject = hp->selector;
		}
	}
	hotplug_update_line(hp, false);
	pthread_mutex_unlock(&hp->lock);
	if (eject < VMM_MAX_VCPUS)
		vmm_vcpu_activate(hp->vm, eject, false);
}

static const struct vmm_io_ops hotplug_ops = { hotplug_read, hotplug_write };

static struct cpu_hotplug *hotplug_get(struct vmm *vm)
{
	return vmm_device_get(vm, "cpu-hotplug", 0);
}

void vmm_get_vcpus(struct vmm *vm, struct vmm_vcpus_info *out)
{
	struct cpu_hotplug *hp = hotplug_get(vm);

	*out = (struct vmm_vcpus_info){ .max = vm->cfg.max_cpus };
	pthread_mutex_lock(&hp->lock);
	for (unsigned i = 0; i < vm->cfg.max_cpus; i++) {
		out->present += (hp->cpus[i] & CPU_HP_PRESENT) != 0;
		out->removing += (hp->cpus[i] & CPU_HP_REMOVE) != 0;
	}
	pthread_mutex_unlock(&hp->lock);
}

int vmm_set_vcpus(struct vmm *vm, unsigned n)
{
	struct cpu_hotplug *hp = hotplug_get(vm);
	unsigned staying = 0, highest = 0;

	if (n == 0 || n > vm->cfg.max_cpus)
		return vi_error(VI_EUSAGE, "%u vCPUs asked for; this VM has at most %u (its maximum "
				"is set when it is made)", n, vm->cfg.max_cpus);
	pthread_mutex_lock(&hp->lock);
	for (unsigned i = 0; i < vm->cfg.max_cpus; i++)
		if ((hp->cpus[i] & CPU_HP_PRESENT) && !(hp->cpus[i] & CPU_HP_REMOVE)) {
			staying++;
			highest = i + 1;
		}
	/* Growing: CPUs asked to go stay after all, then the lowest absent ones come. */
	for (unsigned i = 0; i < vm->cfg.max_cpus && staying < n; i++) {
		uint8_t *cpu = &hp->cpus[i];

		if ((*cpu & CPU_HP_PRESENT) && !(*cpu & CPU_HP_REMOVE))
			continue;
		if (*cpu & CPU_HP_REMOVE) {
			*cpu &= (uint8_t)~CPU_HP_REMOVE;
		} else {
			/* Its thread waits in KVM for the guest's INIT and SIPI. */
			*cpu = CPU_HP_PRESENT | CPU_HP_INSERT;
			vmm_vcpu_activate(vm, i, true);
		}
		staying++;
	}
	/* Shrinking: the highest ones are asked to go. */
	for (unsigned i = highest; i-- > 1 && staying > n;) {
		uint8_t *cpu = &hp->cpus[i];

		if ((*cpu & CPU_HP_PRESENT) && !(*cpu & CPU_HP_REMOVE)) {
			*cpu = (uint8_t)((*cpu & ~CPU_HP_INSERT) | CPU_HP_REMOVE);
			staying--;
		}
	}
	hotplug_update_line(hp, false);
	pthread_mutex_unlock(&hp->lock);
	return 0;
}

void cpu_hotplug_reset(struct vmm *vm, unsigned cpus)
{
	struct cpu_hotplug *hp = hotplug_get(vm);

	pthread_mutex_lock(&hp->lock);
	for (unsigned i = 0; i < vm->cfg.max_cpus; i++)
		hp->cpus[i] = i < cpus ? CPU_HP_PRESENT : 0;
	pthread_mutex_unlock(&hp->lock);
}

void cpu_hotplug_sync(struct vmm *vm)
{
	struct cpu_hotplug *hp = hotplug_get(vm);

	pthread_mutex_lock(&hp->lock);
	for (unsigned i = 0; i < vm->nvcpus; i++)
		vmm_vcpu_activate(vm, i, hp->cpus[i] & CPU_HP_PRESENT);
	hotplug_update_line(hp, true);
	pthread_mutex_unlock(&hp->lock);
}

static int hotplug_post_load(void *obj)
{
	struct cpu_hotplug *hp = obj;

	for (unsigned i = hp->vm->cfg.max_cpus; i < VMM_MAX_VCPUS; i++)
		if (hp->cpus[i])
			return vi_error(VI_EUSAGE, "the state has CPU %u; this VM has %u at most", i,
					hp->vm->cfg.max_cpus);
	return 0;
}

static const struct vi_state_field hotplug_fields[] = {
	VI_STATE_FIELD(struct cpu_hotplug, selector),
	VI_STATE_ARRAY(struct cpu_hotplug, cpus),
	VI_STATE_FIELDS_END,
};

static const struct vi_state_desc hotplug_state = {
	/* Optional: states written before CPUs could come and go have none. */
	.name = "cpu-hotplug", .id = VMM_SECTION_CPU_HOTPLUG, .version = 1, .oldest = 1,
	.flags = VI_STATE_F_OPTIONAL, .fields = hotplug_fields, .post_load = hotplug_post_load,
};

static void hotplug_free(void *opaque)
{
	struct cpu_hotplug *hp = opaque;

	pthread_mutex_destroy(&hp->lock);
	free(hp);
}

int cpu_hotplug_init(struct vmm *vm)
{
	struct cpu_hotplug *hp = xcalloc(1, sizeof(*hp));
	struct vmm_device device = { .kind = "cpu-hotplug", .name = "cpu-hotplug", .dev = hp,
				     .lock = &hp->lock, .free = hotplug_free,
				     .sections = { { &hotplug_state, hp, 0 } } };

	hp->vm = vm;
	pthread_mutex_init(&hp->lock, NULL);
	for (unsigned i = 0; i < vm->cfg.cpus; i++)
		hp->cpus[i] = CPU_HP_PRESENT;
	vmm_device_add(vm, &device);
	return vmm_bus_register(vm, VMM_BUS_PIO, CPU_HOTPLUG_BASE, CPU_HOTPLUG_LEN, &hotplug_ops,
				hp);
}

int vmm_cpu_hotplug_driver(struct vmm *vm)
{
	struct cpu_hotplug *hp = vmm_device_get(vm, "cpu-hotplug", 0);
	bool used;

	if (!hp)
		return VMM_DRIVER_NO_DEVICE;
	pthread_mutex_lock(&hp->lock);
	used = hp->used;
	pthread_mutex_unlock(&hp->lock);
	return used ? VMM_DRIVER_ACTIVE : VMM_DRIVER_NONE;
}
