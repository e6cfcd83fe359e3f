/* The port-I/O and MMIO buses: devices claim address ranges, vCPU exits are routed to
 * them by address. Ranges are fixed before the vCPUs start. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "util.h"
#include "vmm/internal.h"

int vmm_bus_register(struct vmm *vm, int kind, uint64_t base, uint64_t len,
		     const struct vmm_io_ops *ops, void *dev)
{
	struct vmm_bus *bus = &vm->buses[kind];
	size_t at = 0;

	while (at < bus->n && bus->ranges[at].base < base)
		at++;
	if ((at > 0 && bus->ranges[at - 1].base + bus->ranges[at - 1].len > base) ||
	    (at < bus->n && base + len > bus->ranges[at].base))
		return vi_error(VI_ESTATE, "%s range 0x%llx+0x%llx is already claimed",
				kind == VMM_BUS_PIO ? "port" : "MMIO", (unsigned long long)base,
				(unsigned long long)len);
	bus->ranges = xrealloc(bus->ranges, (bus->n + 1) * sizeof(*bus->ranges));
	memmove(&bus->ranges[at + 1], &bus->ranges[at], (bus->n - at) * sizeof(*bus->ranges));
	bus->ranges[at] = (struct vmm_io_range){ base, len, ops, dev };
	bus->n++;
	return 0;
}

static const struct vmm_io_range *bus_find(const struct vmm_bus *bus, uint64_t addr)
{
	size_t lo = 0, hi = bus->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		const struct vmm_io_range *r = &bus->ranges[mid];

		if (addr < r->base)
			hi = mid;
		else if (addr - r->base >= r->len)
			lo = mid + 1;
		else
			return r;
	}
	return NULL;
}

void vmm_bus_access(struct vmm_bus *bus, uint64_t addr, uint8_t *data, unsigned len,
		    bool write)
{
	const struct vmm_io_range *r = bus_find(bus, addr);

	if (!r) {
		if (!write)
			memset(data, 0xff, len);
		return;
	}
	if (write)
		r->ops->write(r->dev, addr - r->base, data, len);
	else
		r->ops->read(r->dev, addr - r->base, data, len);
}

void vmm_bus_release(struct vmm_bus *bus)
{
	free(bus->ranges);
	bus->ranges = NULL;
	bus->n = 0;
}
