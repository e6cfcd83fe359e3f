/* ACPI: the tables that describe the machine (RSDP, XSDT, FADT, FACS, MADT, and a DSDT
 * with the PCI root bridge, its _PRT and \_S5) and the fixed hardware they point to:
 * PM1 event and control registers with the power button, sleep to S5, the PM timer. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "error.h"
#include "util.h"
#include "vmm/internal.h"

#define PM1_EVT        (ACPI_PM_BASE + 0) /* status (2 bytes), enable (2 bytes) */
#define PM1_CNT        (ACPI_PM_BASE + 4)
#define PM_TMR         (ACPI_PM_BASE + 8)
#define ACPI_PM_LEN    12

#define PM1_PWRBTN     (1u << 8)  /* in status and enable */
#define PM1_CNT_SCI_EN (1u << 0)
#define PM1_CNT_SLP_EN (1u << 13)
#define PM1_SLP_TYP(v) (((v) >> 10) & 7)
#define SLP_TYP_S5     5          /* what \_S5 tells the guest to write */
#define PM_TIMER_HZ    3579545ull

#define IOAPIC_ADDR    0xfec00000u
#define LAPIC_ADDR     0xfee00000u

struct acpi {
	struct vmm *vm;
	pthread_mutex_t lock;
	uint16_t pm1_sts, pm1_en, pm1_cnt;
	bool sci_level;
};

/* --- fixed hardware ---------------------------------------------------------------- */

static void acpi_update_sci(struct acpi *a)
{
	bool level = (a->pm1_sts & a->pm1_en & PM1_PWRBTN) != 0;

	if (level != a->sci_level) {
		a->sci_level = level;
		vmm_irq_line(a->vm, ACPI_SCI_GSI, level);
	}
}

static void acpi_pm_read(void *opaque, uint64_t offset, uint8_t *data, unsigned len)
{
	struct acpi *a = opaque;
	uint8_t regs[ACPI_PM_LEN];
	struct timespec ts;
	uint32_t timer;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	timer = (uint32_t)(((uint64_t)ts.tv_sec * PM_TIMER_HZ +
			    (uint64_t)ts.tv_nsec * PM_TIMER_HZ / 1000000000ull) & 0xffffff);
	pthread_mutex_lock(&a->lock);
	memcpy(&regs[0], &a->pm1_sts, 2);
	memcpy(&regs[2], &a->pm1_en, 2);
	memcpy(&regs[4], &a->pm1_cnt, 2);
	regs[6] = regs[7] = 0;
	memcpy(&regs[8], &timer, 4);
	pthread_mutex_unlock(&a->lock);
	for (unsigned i = 0; i < len; i++)
		data[i] = offset + i < ACPI_PM_LEN ? regs[offset + i] : 0xff;
}

static void acpi_pm_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned len)
{
	struct acpi *a = opaque;
	uint16_t v = 0;

	memcpy(&v, data, len < 2 ? len : 2);
	pthread_mutex_lock(&a->lock);
	switch (offset) {
	case 0: /* status bits are cleared by writing ones */
		a->pm1_sts &= (uint16_t)~v;
		break;
	case 2:
		a->pm1_en = v;
		break;
	case 4:
		/* SCI_EN stays set: with no SMI command port the machine is always in ACPI
		 * mode. */
		a->pm1_cnt = (uint16_t)((v & ~PM1_CNT_SLP_EN) | PM1_CNT_SCI_EN);
		if ((v & PM1_CNT_SLP_EN) && PM1_SLP_TYP(v) == SLP_TYP_S5)
			vmm_request_exit(a->vm, VMM_EXIT_POWEROFF);
		break;
	}
	acpi_update_sci(a);
	pthread_mutex_unlock(&a->lock);
}

static const struct vmm_io_ops acpi_pm_ops = { acpi_pm_read, acpi_pm_write };

void vmm_press_power_button(struct vmm *vm)
{
	struct acpi *a = vmm_device_get(vm, "acpi", 0);

	pthread_mutex_lock(&a->lock);
	a->pm1_sts |= PM1_PWRBTN;
	acpi_update_sci(a);
	pthread_mutex_unlock(&a->lock);
}

void vmm_request_shutdown(struct vmm *vm)
{
	struct acpi *a = vmm_device_get(vm, "acpi", 0);
	bool armed;

	pthread_mutex_lock(&a->lock);
	armed = (a->pm1_cnt & PM1_CNT_SCI_EN) && (a->pm1_en & PM1_PWRBTN);
	pthread_mutex_unlock(&a->lock);
	if (armed)
		vmm_press_power_button(vm);
	else
		vmm_inject_ctrl_alt_del(vm);
}

static int acpi_post_load(void *obj)
{
	acpi_update_sci(obj);
	return 0;
}

static const struct vi_state_field acpi_fields[] = {
	VI_STATE_FIELD(struct acpi, pm1_sts),
	VI_STATE_FIELD(struct acpi, pm1_en),
	VI_STATE_FIELD(struct acpi, pm1_cnt),
	VI_STATE_FIELDS_END,
};

static const struct vi_state_desc acpi_state = {
	.name = "acpi", .id = VMM_SECTION_ACPI, .version = 1, .oldest = 1, .fields = acpi_fields,
	.post_load = acpi_post_load,
};

static void acpi_free(void *opaque)
{
	struct acpi *a = opaque;

	pthread_mutex_destroy(&a->lock);
	free(a);
}

int acpi_init(struct vmm *vm)
{
	struct acpi *a = xcalloc(1, sizeof(*a));
	struct vmm_device device = { .kind = "acpi", .name = "acpi", .dev = a, .lock = &a->lock,
				     .free = acpi_free, .sections = { { &acpi_state, a, 0 } } };

	a->vm = vm;
	pthread_mutex_init(&a->lock, NULL);
	a->pm1_cnt = PM1_CNT_SCI_EN;
	vmm_device_add(vm, &device);
	return vmm_bus_register(vm, VMM_BUS_PIO, ACPI_PM_BASE, ACPI_PM_LEN, &acpi_pm_ops, a);
}

/* --- tables ------------------------------------------------------------------------ */

struct acpi_header {
	char signature[4];
	uint32_t length;
	uint8_t revision, checksum;
	char oem_id[6], oem_table_id[8];
	uint32_t oem_revision;
	char creator_id[4];
	uint32_t creator_revision;
} __attribute__((packed));

struct acpi_gas {
	uint8_t space, bit_width, bit_offset, access_size;
	uint64_t address;
} __attribute__((packed));

struct acpi_rsdp {
	char signature[8];
	uint8_t checksum;
	char oem_id[6];
	uint8_t revision;
	uint32_t rsdt;
	uint32_t length;
	uint64_t xsdt;
	uint8_t ext_checksum, reserved[3];
} __attribute__((packed));

struct acpi_fadt {
	struct acpi_header h;
	uint32_t firmware_ctrl, dsdt;
	uint8_t reserved0, pm_profile;
	uint16_t sci_int;
	uint32_t smi_cmd;
	uint8_t acpi_enable, acpi_disable, s4bios_req, pstate_cnt;
	uint32_t pm1a_evt, pm1b_evt, pm1a_cnt, pm1b_cnt, pm2_cnt, pm_tmr, gpe0, gpe1;
	uint8_t pm1_evt_len, pm1_cnt_len, pm2_cnt_len, pm_tmr_len, gpe0_len, gpe1_len,
		gpe1_base, cst_cnt;
	uint16_t p_lvl2_lat, p_lvl3_lat, flush_size, flush_stride;
	uint8_t duty_offset, duty_width, day_alrm, mon_alrm, century;
	uint16_t iapc_boot_arch;
	uint8_t reserved1;
	uint32_t flags;
	struct acpi_gas reset_reg;
	uint8_t reset_value;
	uint16_t arm_boot_arch;
	uint8_t minor_version;
	uint64_t x_firmware_ctrl, x_dsdt;
	struct acpi_gas x_pm1a_evt, x_pm1b_evt, x_pm1a_cnt, x_pm1b_cnt, x_pm2_cnt, x_pm_tmr,
		x_gpe0, x_gpe1, sleep_control, sleep_status;
	char hypervisor_id[8];
} __attribute__((packed));

struct acpi_facs {
	char signature[4];
	uint32_t length, hardware_signature, waking_vector, global_lock, flags;
	uint64_t x_waking_vector;
	uint8_t version, reserved[3];
	uint32_t ospm_flags;
	uint8_t reserved2[24];
} __attribute__((packed));

#define FADT_WBINVD        (1u << 0)
#define FADT_PROC_C1       (1u << 2)
#define FADT_SLP_BUTTON    (1u << 5)  /* no fixed-feature sleep button */
#define FADT_RESET_REG_SUP (1u << 10)
#define BOOT_LEGACY        (1u << 0)
#define BOOT_8042          (1u << 1)
#define BOOT_NO_VGA        (1u << 2)
#define BOOT_NO_CMOS_RTC   (1u << 5)
#define GAS_IO             1
#define MADT_ENABLED        (1u << 0)
#define MADT_ONLINE_CAPABLE (1u << 1)

static uint8_t acpi_checksum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t sum = 0;

	while (len--)
		sum = (uint8_t)(sum + *b++);
	return (uint8_t)-sum;
}

static void acpi_header_init(struct acpi_header *h, const char *sig, uint32_t len,
			     uint8_t revision)
{
	memcpy(h->signature, sig, 4);
	h->length = len;
	h->revision = revision;
	memcpy(h->oem_id, "VI    ", 6);
	memcpy(h->oem_table_id, "VIVMM   ", 8);
	memcpy(h->oem_table_id, sig, 4);
	h->oem_revision = 1;
	memcpy(h->creator_id, "VI  ", 4);
	h->creator_revision = 1;
}

/* A growing byte buffer for tables of variable length. */
struct acpi_buf {
	uint8_t *p;
	size_t len;
	size_t open[8]; /* where the AML packages still open begin */
	unsigned depth;
};

static void buf_put(struct acpi_buf *b, const void *data, size_t len)
{
	b->p = xrealloc(b->p, b->len + len);
	memcpy(b->p + b->len, data, len);
	b->len += len;
}

static void buf_u8(struct acpi_buf *b, uint8_t v)
{
	buf_put(b, &v, 1);
}

static void buf_le(struct acpi_buf *b, uint64_t v, unsigned bytes)
{
	for (unsigned i = 0; i < bytes; i++)
		buf_u8(b, (uint8_t)(v >> (8 * i)));
}

/* AML: a package (Scope, Device, Package, Buffer) starts with its opcode; its PkgLength
 * goes in front of its contents once they are known. */
static void aml_open(struct acpi_buf *b, const char *op)
{
	buf_put(b, op, strlen(op));
	b->open[b->depth++] = b->len;
}

static void aml_close(struct acpi_buf *b)
{
	size_t start = b->open[--b->depth], body = b->len - start, total;
	uint8_t enc[4];
	unsigned n = 1;

	while (n < 4 && body + n >= (n == 1 ? 0x40u : 1u << (4 + 8 * (n - 1))))
		n++;
	total = body + n;
	if (n == 1) {
		enc[0] = (uint8_t)total;
	} else {
		enc[0] = (uint8_t)((n - 1) << 6 | (total & 0xf));
		for (unsigned i = 1; i < n; i++)
			enc[i] = (uint8_t)(total >> (4 + 8 * (i - 1)));
	}
	b->p = xrealloc(b->p, b->len + n);
	memmove(b->p + start + n, b->p + start, body);
	memcpy(b->p + start, enc, n);
	b->len += n;
}

static void aml_int(struct acpi_buf *b, uint64_t v)
{
	if (v <= 1) {
		buf_u8(b, (uint8_t)v); /* ZeroOp, OneOp */
	} else if (v <= 0xff) {
		buf_u8(b, 0x0a);
		buf_le(b, v, 1);
	} else if (v <= 0xffff) {
		buf_u8(b, 0x0b);
		buf_le(b, v, 2);
	} else if (v <= 0xffffffff) {
		buf_u8(b, 0x0c);
		buf_le(b, v, 4);
	} else {
		buf_u8(b, 0x0e);
		buf_le(b, v, 8);
	}
}

/* Name(seg, ...): the value follows. seg is a four-character name segment. */
static void aml_name(struct acpi_buf *b, const char *seg)
{
	buf_u8(b, 0x08);
	buf_put(b, seg, 4);
}

/* A compressed EISA ID such as "PNP0A03", as an integer. */
static uint32_t aml_eisa_id(const char *id)
{
	uint32_t v = (uint32_t)(id[0] - 0x40) << 26 | (uint32_t)(id[1] - 0x40) << 21 |
		     (uint32_t)(id[2] - 0x40) << 16 | (uint32_t)strtoul(id + 3, NULL, 16);

	return __builtin_bswap32(v);
}

/* Word and DWord address space descriptors: producer, fixed minimum and maximum. */
static void res_addr(struct acpi_buf *b, unsigned bytes, uint8_t type, uint8_t type_flags,
		     uint64_t min, uint64_t max)
{
	buf_u8(b, bytes == 2 ? 0x88 : 0x87);
	buf_le(b, 3 + 5 * bytes, 2);
	buf_u8(b, type);
	buf_u8(b, 0x0c);
	buf_u8(b, type_flags);
	buf_le(b, 0, bytes); /* granularity */
	buf_le(b, min, bytes);
	buf_le(b, max, bytes);
	buf_le(b, 0, bytes); /* translation */
	buf_le(b, max - min + 1, bytes);
}

/* The root bridge's resources: bus 0, the config ports, I/O around them, and the
 * memory hole below the IOAPIC. */
static void dsdt_pci_crs(struct acpi_buf *b)
{
	struct acpi_buf r = { 0 };

	res_addr(&r, 2, 2, 0, 0, 0);                    /* bus numbers */
	buf_put(&r, "\x47\x01\xf8\x0c\xf8\x0c\x01\x08", 8); /* IO(Decode16, 0xcf8, 8) */
	res_addr(&r, 2, 1, 3, 0, 0xcf7);                /* I/O, entire range */
	res_addr(&r, 2, 1, 3, 0xd00, 0xffff);
	res_addr(&r, 4, 0, 1, PCI_MMIO_BASE, PCI_MMIO_END); /* memory, read-write */
	buf_put(&r, "\x79\x00", 2);                     /* end tag */
	aml_name(b, "_CRS");
	aml_open(b, "\x11");
	aml_int(b, r.len);
	buf_put(b, r.p, r.len);
	aml_close(b);
	free(r.p);
}

/* Every slot's four pins, swizzled over the eight PCI GSIs the way pci.c wires INTA. */
static void dsdt_pci_prt(struct acpi_buf *b)
{
	aml_name(b, "_PRT");
	aml_open(b, "\x12");
	buf_u8(b, (PCI_MAX_SLOTS - 1) * 4);
	for (unsigned slot = 1; slot < PCI_MAX_SLOTS; slot++)
		for (unsigned pin = 0; pin < 4; pin++) {
			aml_open(b, "\x12");
			buf_u8(b, 4);
			aml_int(b, (uint64_t)slot << 16 | 0xffff);
			aml_int(b, pin);
			aml_int(b, 0);
			aml_int(b, PCI_GSI_BASE + (slot + pin) % PCI_GSI_COUNT);
			aml_close(b);
		}
	aml_close(b);
}

/* A string, as _HID "ACPI0007". */
static void aml_string(struct acpi_buf *b, const char *str)
{
	buf_u8(b, 0x0d);
	buf_put(b, str, strlen(str) + 1);
}

/* Method(seg, nargs): the body follows, then aml_close(). */
static void aml_method(struct acpi_buf *b, const char *seg, unsigned nargs)
{
	aml_open(b, "\x14");
	buf_put(b, seg, 4);
	buf_u8(b, (uint8_t)nargs);
}

/* Acquire(CPLK, 0xffff) and Release(CPLK): the register block's selector is shared. */
static void aml_lock(struct acpi_buf *b, bool on)
{
	buf_put(b, on ? "\x5b\x23" "CPLK" "\xff\xff" : "\x5b\x27" "CPLK", on ? 8 : 6);
}

#define AML_STORE  "\x70"
#define AML_ARG0   "\x68"
#define AML_ARG1   "\x69"
#define AML_LOCAL0 "\x60"
#define AML_RETURN "\xa4"

/* What the local APIC entry of CPU i says, enabled or not, for _MAT. */
static void aml_madt_lapic(struct acpi_buf *b, unsigned i, bool enabled)
{
	uint8_t lapic[8] = { 0, 8, (uint8_t)i, (uint8_t)i, enabled ? MADT_ENABLED : 0, 0, 0, 0 };

	buf_put(b, AML_RETURN, 1);
	aml_open(b, "\x11");
	aml_int(b, sizeof(lapic));
	buf_put(b, lapic, sizeof(lapic));
	aml_close(b);
}

/* Processor device i's name, "C000" to "C0FF". */
static void aml_cpu_name(char name[5], unsigned i)
{
	snprintf(name, 5, "C%03X", i & 0xfffu);
}

/* Device(CPUS): every CPU the VM may have as a processor device (ACPI0007) whose _STA,
 * _MAT and _EJ0 go through the hotplug register block, and CSCN, which the GED's _EVT
 * calls: it notifies each CPU with a pending event, device check (1) for one plugged
 * in and eject request (3) for one asked to go, and acknowledges the event. */
static void dsdt_cpus(struct acpi_buf *b, unsigned max_cpus)
{
	static const uint8_t fields[] = {
		'C', 'S', 'E', 'L', 32, 'C', 'P', 'E', 'N', 1, 'C', 'I', 'N', 'S', 1,
		'C', 'R', 'M', 'V', 1, 'C', 'E', 'J', 'F', 1,
	};
	char name[5];

	aml_open(b, "\x5b\x82");
	buf_put(b, "CPUS", 4);
	aml_name(b, "_HID");
	aml_string(b, "ACPI0010");
	aml_name(b, "_CID");
	aml_int(b, aml_eisa_id("PNP0A05"));
	buf_put(b, "\x5b\x80" "PRST" "\x01", 7); /* OperationRegion(PRST, SystemIO, ...) */
	aml_int(b, CPU_HOTPLUG_BASE);
	aml_int(b, CPU_HOTPLUG_LEN);
	/* Byte access; writes put zeros in the other bits, so that writing one of them
	 * touches no other event. */
	aml_open(b, "\x5b\x81");
	buf_put(b, "PRST\x41", 5);
	buf_put(b, fields, sizeof(fields));
	aml_close(b);
	buf_put(b, "\x5b\x01" "CPLK" "\x00", 7); /* Mutex(CPLK, 0) */

	aml_method(b, "CSTA", 1); /* 0xf when CPU Arg0 is present, else 0 */
	aml_lock(b, true);
	buf_put(b, AML_STORE AML_ARG0 "CSEL" AML_STORE "\x00" AML_LOCAL0, 9);
	aml_open(b, "\xa0");
	buf_put(b, "CPEN" AML_STORE, 5);
	aml_int(b, 0xf);
	buf_put(b, AML_LOCAL0, 1);
	aml_close(b);
	aml_lock(b, false);
	buf_put(b, AML_RETURN AML_LOCAL0, 2);
	aml_close(b);

	aml_method(b, "CEJ0", 1); /* ejects CPU Arg0 */
	aml_lock(b, true);
	buf_put(b, AML_STORE AML_ARG0 "CSEL" AML_STORE "\x01" "CEJF", 12);
	aml_lock(b, false);
	aml_close(b);

	aml_method(b, "CNTF", 2); /* Notify(CPU Arg0, Arg1) */
	for (unsigned i = 0; i < max_cpus; i++) {
		aml_cpu_name(name, i);
		aml_open(b, "\xa0");
		buf_put(b, "\x93" AML_ARG0, 2); /* LEqual */
		aml_int(b, i);
		buf_put(b, "\x86", 1);
		buf_put(b, name, 4);
		buf_put(b, AML_ARG1, 1);
		aml_close(b);
	}
	aml_close(b);

	aml_method(b, "CSCN", 0);
	aml_lock(b, true);
	buf_put(b, AML_STORE "\x00" AML_LOCAL0, 3);
	aml_open(b, "\xa2"); /* While (LLess(Local0, max_cpus)) */
	buf_put(b, "\x95" AML_LOCAL0, 2);
	aml_int(b, max_cpus);
	buf_put(b, AML_STORE AML_LOCAL0 "CSEL", 6);
	aml_open(b, "\xa0");
	buf_put(b, "CINS" "CNTF" AML_LOCAL0 "\x01" AML_STORE "\x01" "CINS", 16);
	aml_close(b);
	aml_open(b, "\xa0");
	buf_put(b, "CRMV" "CNTF" AML_LOCAL0, 9);
	aml_int(b, 3);
	buf_put(b, AML_STORE "\x01" "CRMV", 6);
	aml_close(b);
	buf_put(b, "\x75" AML_LOCAL0, 2); /* Increment */
	aml_close(b);
	aml_lock(b, false);
	aml_close(b);

	for (unsigned i = 0; i < max_cpus; i++) {
		aml_cpu_name(name, i);
		aml_open(b, "\x5b\x82");
		buf_put(b, name, 4);
		aml_name(b, "_HID");
		aml_string(b, "ACPI0007");
		aml_name(b, "_UID");
		aml_int(b, i);
		aml_method(b, "_STA", 0);
		buf_put(b, AML_RETURN "CSTA", 5);
		aml_int(b, i);
		aml_close(b);
		aml_method(b, "_MAT", 0);
		aml_open(b, "\xa0");
		buf_put(b, "CSTA", 4);
		aml_int(b, i);
		aml_madt_lapic(b, i, true);
		aml_close(b);
		aml_madt_lapic(b, i, false);
		aml_close(b);
		aml_method(b, "_EJ0", 1);
		buf_put(b, "CEJ0", 4);
		aml_int(b, i);
		aml_close(b);
		aml_close(b);
	}
	aml_close(b);
}

/* Device(GED0): the generic event device whose interrupt means "look at the CPUs". */
static void dsdt_ged(struct acpi_buf *b)
{
	/* Interrupt(ResourceConsumer, Level, ActiveHigh, Exclusive) { CPU_HOTPLUG_GSI } */
	uint8_t crs[11] = { 0x89, 6, 0, 0x01, 1, CPU_HOTPLUG_GSI, 0, 0, 0, 0x79, 0 };

	aml_open(b, "\x5b\x82");
	buf_put(b, "GED0", 4);
	aml_name(b, "_HID");
	aml_string(b, "ACPI0013");
	aml_name(b, "_UID");
	aml_int(b, 0);
	aml_name(b, "_CRS");
	aml_open(b, "\x11");
	aml_int(b, sizeof(crs));
	buf_put(b, crs, sizeof(crs));
	aml_close(b);
	aml_method(b, "_EVT", 1);
	buf_put(b, "\\\x2f\x03" "_SB_" "CPUS" "CSCN", 15);
	aml_close(b);
	aml_close(b);
}

static void dsdt_build(struct acpi_buf *b, unsigned max_cpus)
{
	struct acpi_header h = { 0 };

	buf_put(b, &h, sizeof(h));
	aml_name(b, "_S5_");
	aml_open(b, "\x12");
	buf_u8(b, 4);
	aml_int(b, SLP_TYP_S5);
	aml_int(b, SLP_TYP_S5);
	aml_int(b, 0);
	aml_int(b, 0);
	aml_close(b);
	aml_open(b, "\x10"); /* Scope (\_SB) */
	buf_put(b, "\\_SB_", 5);
	aml_open(b, "\x5b\x82"); /* Device (PCI0) */
	buf_put(b, "PCI0", 4);
	aml_name(b, "_HID");
	aml_int(b, aml_eisa_id("PNP0A03"));
	aml_name(b, "_UID");
	aml_int(b, 0);
	dsdt_pci_crs(b);
	dsdt_pci_prt(b);
	aml_close(b);
	dsdt_cpus(b, max_cpus);
	dsdt_ged(b);
	aml_close(b);
	acpi_header_init((struct acpi_header *)b->p, "DSDT", (uint32_t)b->len, 2);
}

/* Every vCPU the VM may have gets a local APIC entry; those not present yet are
 * disabled but online capable (ACPI 6.3, MADT revision 5), so the guest sizes its CPU
 * masks for them and brings them up when they are plugged in. */
static void madt_build(struct acpi_buf *b, unsigned cpus, unsigned max_cpus)
{
	static const uint8_t ged_override[10] = { 2, 10, 0, CPU_HOTPLUG_GSI, CPU_HOTPLUG_GSI,
						  0, 0, 0, 0x0d, 0 };
	struct acpi_header h = { 0 };

	buf_put(b, &h, sizeof(h));
	buf_le(b, LAPIC_ADDR, 4);
	buf_le(b, 1, 4); /* PCAT_COMPAT: there are 8259s too */
	for (unsigned i = 0; i < max_cpus; i++) {
		uint8_t flags = i < cpus ? MADT_ENABLED : MADT_ONLINE_CAPABLE;
		uint8_t lapic[8] = { 0, 8, (uint8_t)i, (uint8_t)i, flags, 0, 0, 0 };

		buf_put(b, lapic, sizeof(lapic));
	}
	buf_put(b, "\x01\x0c\x00\x00", 4); /* IOAPIC 0 at GSI 0 */
	buf_le(b, IOAPIC_ADDR, 4);
	buf_le(b, 0, 4);
	/* The PIT's IRQ 0 is on pin 2; the SCI and the CPU hotplug GED's IRQ
	 * (CPU_HOTPLUG_GSI) are level-triggered, active high. */
	buf_put(b, "\x02\x0a\x00\x00\x02\x00\x00\x00\x00\x00", 10);
	buf_put(b, "\x02\x0a\x00\x09\x09\x00\x00\x00\x0d\x00", 10);
	buf_put(b, ged_override, sizeof(ged_override));
	buf_put(b, "\x04\x06\xff\x00\x00\x01", 6); /* LINT1 of every CPU is the NMI */
	acpi_header_init((struct acpi_header *)b->p, "APIC", (uint32_t)b->len, 5);
}

static void fadt_build(struct acpi_fadt *f, uint64_t facs, uint64_t dsdt)
{
	static const struct acpi_gas pm1_evt = { GAS_IO, 32, 0, 0, PM1_EVT };
	static const struct acpi_gas pm1_cnt = { GAS_IO, 16, 0, 0, PM1_CNT };
	static const struct acpi_gas pm_tmr = { GAS_IO, 32, 0, 0, PM_TMR };
	/* The i8042 pulses reset when 0xfe is written to its command port. */
	static const struct acpi_gas reset = { GAS_IO, 8, 0, 1, 0x64 };

	memset(f, 0, sizeof(*f));
	acpi_header_init(&f->h, "FACP", sizeof(*f), 6);
	f->firmware_ctrl = (uint32_t)facs;
	f->dsdt = (uint32_t)dsdt;
	f->sci_int = ACPI_SCI_GSI;
	f->pm1a_evt = PM1_EVT;
	f->pm1a_cnt = PM1_CNT;
	f->pm_tmr = PM_TMR;
	f->pm1_evt_len = 4;
	f->pm1_cnt_len = 2;
	f->pm_tmr_len = 4;
	f->p_lvl2_lat = 101;  /* > 100: no C2 */
	f->p_lvl3_lat = 1001; /* > 1000: no C3 */
	f->iapc_boot_arch = BOOT_LEGACY | BOOT_8042 | BOOT_NO_VGA | BOOT_NO_CMOS_RTC;
	f->flags = FADT_WBINVD | FADT_PROC_C1 | FADT_SLP_BUTTON | FADT_RESET_REG_SUP;
	f->reset_reg = reset;
	f->reset_value = 0xfe;
	f->x_firmware_ctrl = facs;
	f->x_dsdt = dsdt;
	f->x_pm1a_evt = pm1_evt;
	f->x_pm1a_cnt = pm1_cnt;
	f->x_pm_tmr = pm_tmr;
	memcpy(f->hypervisor_id, "vi", 2);
	f->h.checksum = acpi_checksum(f, sizeof(*f));
}

/* Copies a table to guest memory at *at (aligned to `align`) and moves *at past it. */
static int acpi_place(struct vmm *vm, uint64_t *at, const void *table, size_t len,
		      unsigned align)
{
	uint64_t gpa = (*at + align - 1) & ~(uint64_t)(align - 1);
	void *dst = vmm_gpa_to_hva(vm, gpa, len);

	if (!dst || gpa + len > VMM_HIGH_MEMORY)
		return vi_error(VI_EUSAGE, "the ACPI tables do not fit below 1 MiB");
	memcpy(dst, table, len);
	*at = gpa;
	return 0;
}

int acpi_tables_write(struct vmm *vm, uint64_t *rsdp_addr)
{
	struct acpi_buf dsdt = { 0 }, madt = { 0 }, xsdt = { 0 };
	struct acpi_facs facs = { .signature = "FACS", .length = sizeof(facs), .version = 2 };
	struct acpi_rsdp rsdp = { .signature = "RSD PTR ", .oem_id = "VI    ", .revision = 2,
				  .length = sizeof(rsdp) };
	struct acpi_header xh = { 0 };
	struct vmm_vcpus_info cpus;
	struct acpi_fadt fadt;
	uint64_t at = ACPI_TABLES_ADDR + sizeof(rsdp), facs_at, dsdt_at, fadt_at, madt_at;
	int ret;

	dsdt_build(&dsdt, vm->cfg.max_cpus);
	((struct acpi_header *)dsdt.p)->checksum = acpi_checksum(dsdt.p, dsdt.len);
	vmm_get_vcpus(vm, &cpus);
	madt_build(&madt, cpus.present, cpus.max);
	((struct acpi_header *)madt.p)->checksum = acpi_checksum(madt.p, madt.len);

	ret = acpi_place(vm, &at, &facs, sizeof(facs), 64); /* the FACS must be aligned */
	facs_at = at;
	at += sizeof(facs);
	if (ret == 0)
		ret = acpi_place(vm, &at, dsdt.p, dsdt.len, 16);
	dsdt_at = at;
	at += dsdt.len;
	fadt_build(&fadt, facs_at, dsdt_at);
	if (ret == 0)
		ret = acpi_place(vm, &at, &fadt, sizeof(fadt), 16);
	fadt_at = at;
	at += sizeof(fadt);
	if (ret == 0)
		ret = acpi_place(vm, &at, madt.p, madt.len, 16);
	madt_at = at;
	at += madt.len;

	buf_put(&xsdt, &xh, sizeof(xh));
	buf_le(&xsdt, fadt_at, 8);
	buf_le(&xsdt, madt_at, 8);
	acpi_header_init((struct acpi_header *)xsdt.p, "XSDT", (uint32_t)xsdt.len, 1);
	((struct acpi_header *)xsdt.p)->checksum = acpi_checksum(xsdt.p, xsdt.len);
	if (ret == 0)
		ret = acpi_place(vm, &at, xsdt.p, xsdt.len, 16);
	rsdp.xsdt = at;
	rsdp.checksum = acpi_checksum(&rsdp, 20);
	rsdp.ext_checksum = acpi_checksum(&rsdp, sizeof(rsdp));
	at = ACPI_TABLES_ADDR;
	if (ret == 0)
		ret = acpi_place(vm, &at, &rsdp, sizeof(rsdp), 16);
	*rsdp_addr = ACPI_TABLES_ADDR;
	free(dsdt.p);
	free(madt.p);
	free(xsdt.p);
	return ret;
}
