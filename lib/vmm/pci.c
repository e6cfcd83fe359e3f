/* The PCI host bridge: configuration mechanism #1 (ports 0xcf8/0xcfc) on one bus, with
 * BARs and INTA lines assigned at creation as firmware would leave them. */
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "util.h"
#include "vmm/internal.h"

#define PCI_CONFIG_ADDRESS 0xcf8
#define PCI_CONFIG_DATA    0xcfc
#define PCI_ENABLE         0x80000000u

#define PCI_COMMAND        0x04
#define PCI_BAR0           0x10
#define PCI_INTERRUPT_LINE 0x3c
#define PCI_INTERRUPT_PIN  0x3d

struct pci {
	struct vmm *vm;
	pthread_mutex_t lock;
	uint32_t address;
	struct pci_device bridge;
	struct pci_device *slots[PCI_MAX_SLOTS];
	uint32_t bar_sizing[PCI_MAX_SLOTS]; /* bit n: BAR n was written all ones */
	unsigned gsi_count[PCI_GSI_COUNT];  /* raised INTA lines per GSI */
	uint32_t next_io;
	uint64_t next_mmio;
};

static uint32_t pci_get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void pci_put32(uint8_t *p, uint32_t v)
{
	for (unsigned i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

uint32_t pci_bar_address(const struct pci_device *dev, unsigned bar)
{
	uint32_t v = pci_get32(&dev->config[PCI_BAR0 + 4 * bar]);

	return v & ((v & 1) ? ~3u : ~15u);
}

/* What a read of the dword at `reg` returns: BARs being sized show their size mask. */
static uint32_t pci_config_dword(struct pci *pci, unsigned slot, unsigned reg)
{
	struct pci_device *dev = pci->slots[slot];
	unsigned bar = (reg - PCI_BAR0) / 4;

	if (reg >= PCI_BAR0 && bar < 6 && (pci->bar_sizing[slot] & (1u << bar))) {
		uint32_t v = pci_get32(&dev->config[reg]);

		return ~(dev->bar_size[bar] - 1) | (v & ((v & 1) ? 3u : 15u));
	}
	return pci_get32(&dev->config[reg]);
}

/* Only the command register, the interrupt line and the BAR size probe are writable. */
static void pci_config_write(struct pci *pci, unsigned slot, unsigned reg, const uint8_t *data,
			     unsigned len)
{
	struct pci_device *dev = pci->slots[slot];
	unsigned bar = (reg - PCI_BAR0) / 4;

	if (reg >= PCI_BAR0 && bar < 6 && len == 4) {
		if (dev->bar_size[bar] && pci_get32(data) == ~0u)
			pci->bar_sizing[slot] |= 1u << bar;
		else
			pci->bar_sizing[slot] &= ~(1u << bar);
		return;
	}
	for (unsigned i = 0; i < len; i++) {
		unsigned r = reg + i;

		if (r == PCI_COMMAND || r == PCI_COMMAND + 1 || r == PCI_INTERRUPT_LINE)
			dev->config[r] = data[i];
	}
}

static void pci_address_read(void *opaque, uint64_t offset, uint8_t *data, unsigned len)
{
	struct pci *pci = opaque;
	uint32_t v;

	pthread_mutex_lock(&pci->lock);
	v = pci->address;
	pthread_mutex_unlock(&pci->lock);
	for (unsigned i = 0; i < len; i++)
		data[i] = offset + i < 4 ? (uint8_t)(v >> (8 * (offset + i))) : 0xff;
}

static void pci_address_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned len)
{
	struct pci *pci = opaque;

	/* Only whole-dword writes select: byte writes to 0xcf9 and friends are other
	 * chipset registers. */
	if (offset != 0 || len != 4)
		return;
	pthread_mutex_lock(&pci->lock);
	pci->address = pci_get32(data);
	pthread_mutex_unlock(&pci->lock);
}

/* The selected function's slot, or -1 when nothing answers there. */
static int pci_selected(const struct pci *pci)
{
	uint32_t a = pci->address;
	unsigned bus = (a >> 16) & 0xff, slot = (a >> 11) & 0x1f, fn = (a >> 8) & 7;

	if (!(a & PCI_ENABLE) || bus || fn || !pci->slots[slot])
		return -1;
	return (int)slot;
}

static void pci_data_read(void *opaque, uint64_t offset, uint8_t *data, unsigned len)
{
	struct pci *pci = opaque;
	int slot;

	memset(data, 0xff, len);
	pthread_mutex_lock(&pci->lock);
	slot = pci_selected(pci);
	if (slot >= 0) {
		unsigned reg = (pci->address & 0xfc) + (unsigned)offset;
		uint8_t dw[8];

		pci_put32(dw, pci_config_dword(pci, (unsigned)slot, reg & ~3u));
		pci_put32(dw + 4, (reg & ~3u) + 4 < 256
					  ? pci_config_dword(pci, (unsigned)slot, (reg & ~3u) + 4)
					  : ~0u);
		memcpy(data, dw + (reg & 3), len);
	}
	pthread_mutex_unlock(&pci->lock);
}

static void pci_data_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned len)
{
	struct pci *pci = opaque;
	int slot;

	pthread_mutex_lock(&pci->lock);
	slot = pci_selected(pci);
	if (slot >= 0 && (pci->address & 0xfc) + offset + len <= 256)
		pci_config_write(pci, (unsigned)slot, (pci->address & 0xfc) + (unsigned)offset,
				 data, len);
	pthread_mutex_unlock(&pci->lock);
}

static const struct vmm_io_ops pci_address_ops = { pci_address_read, pci_address_write };
static const struct vmm_io_ops pci_data_ops = { pci_data_read, pci_data_write };

int pci_device_add(struct vmm *vm, struct pci_device *dev)
{
	struct pci *pci = vmm_device_get(vm, "pci", 0);
	unsigned slot = 0;

	while (slot < PCI_MAX_SLOTS && pci->slots[slot])
		slot++;
	if (slot == PCI_MAX_SLOTS)
		return vi_error(VI_EUSAGE, "the PCI bus has no free slot");
	for (unsigned bar = 0; bar < 6; bar++) {
		uint8_t *reg = &dev->config[PCI_BAR0 + 4 * bar];
		uint32_t size = dev->bar_size[bar];

		if (!size)
			continue;
		if (reg[0] & 1) {
			pci->next_io = (pci->next_io + size - 1) & ~(size - 1);
			pci_put32(reg, pci->next_io | 1);
			pci->next_io += size;
		} else {
			pci->next_mmio = (pci->next_mmio + size - 1) & ~(uint64_t)(size - 1);
			pci_put32(reg, (uint32_t)pci->next_mmio);
			pci->next_mmio += size;
		}
	}
	dev->slot = slot;
	dev->bus = pci;
	dev->gsi = PCI_GSI_BASE + slot % PCI_GSI_COUNT;
	dev->config[PCI_INTERRUPT_LINE] = (uint8_t)dev->gsi;
	pci->slots[slot] = dev;
	return 0;
}

void pci_irq_set(struct pci_device *dev, bool level)
{
	struct pci *pci = dev->bus;
	unsigned *count = &pci->gsi_count[dev->gsi - PCI_GSI_BASE];

	pthread_mutex_lock(&pci->lock);
	if (level != dev->irq_level) {
		dev->irq_level = level;
		*count += level ? 1 : (unsigned)-1;
		if (*count == (level ? 1u : 0u))
			vmm_irq_line(pci->vm, dev->gsi, level);
	}
	pthread_mutex_unlock(&pci->lock);
}

/* The guest may change the command register and the interrupt line; the rest is fixed
 * at creation, the same for the same configuration. */
static const struct vi_state_field pci_function_fields[] = {
	{ "command", offsetof(struct pci_device, config) + PCI_COMMAND, 2, 1, NULL, 0 },
	{ "interrupt_line", offsetof(struct pci_device, config) + PCI_INTERRUPT_LINE, 1, 1, NULL,
	  0 },
	VI_STATE_FIELDS_END,
};

const struct vi_state_desc pci_function_state = {
	.name = "pci-function", .fields = pci_function_fields,
};

static const struct vi_state_field pci_fields[] = {
	VI_STATE_FIELD(struct pci, address),
	VI_STATE_ARRAY(struct pci, bar_sizing),
	VI_STATE_NESTED(struct pci, bridge, struct pci_device, pci_function_state),
	VI_STATE_FIELDS_END,
};

static const struct vi_state_desc pci_state = {
	.name = "pci", .id = VMM_SECTION_PCI, .version = 1, .oldest = 1, .fields = pci_fields,
};

static void pci_free(void *opaque)
{
	struct pci *pci = opaque;

	pthread_mutex_destroy(&pci->lock);
	free(pci);
}

int pci_init(struct vmm *vm)
{
	struct pci *pci = xcalloc(1, sizeof(*pci));
	struct vmm_device device = { .kind = "pci", .name = "pci", .dev = pci, .lock = &pci->lock,
				     .free = pci_free, .sections = { { &pci_state, pci, 0 } } };
	uint8_t *c = pci->bridge.config;
	int ret;

	pci->vm = vm;
	pthread_mutex_init(&pci->lock, NULL);
	pci->next_io = PCI_IO_BASE;
	pci->next_mmio = PCI_MMIO_BASE;
	vmm_device_add(vm, &device);
	/* Slot 0: an Intel 440FX host bridge, which every PC operating system knows. */
	pci_put32(c, 0x12378086);
	c[0x0a] = 0x00; /* subclass: host bridge */
	c[0x0b] = 0x06; /* class: bridge */
	pci->slots[0] = &pci->bridge;
	pci->bridge.gsi = PCI_GSI_BASE;
	ret = vmm_bus_register(vm, VMM_BUS_PIO, PCI_CONFIG_ADDRESS, 4, &pci_address_ops, pci);
	if (ret == 0)
		ret = vmm_bus_register(vm, VMM_BUS_PIO, PCI_CONFIG_DATA, 4, &pci_data_ops, pci);
	return ret;
}
