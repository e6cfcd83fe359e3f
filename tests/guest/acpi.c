/* Finds the ACPI tables the way an OS does (the RSDP in the BIOS area, then the XSDT),
 * checks their checksums and what they say (FADT, MADT CPUs, DSDT with \_S5), arms the
 * power button, waits for it and powers off through PM1 control with \_S5's sleep type. */
#include "guest.h"

REALMODE_BANNER("acpi: boot me through the 64-bit entry\n");

#define PM1_PWRBTN (1u << 8)
#define SLP_EN     (1u << 13)

struct sdt {
	char sig[4];
	uint32_t len;
	uint8_t rev, checksum;
	char oem[6], table[8];
	uint32_t oem_rev, creator, creator_rev;
} __attribute__((packed));

static unsigned failures;

static void check(bool ok, const char *what)
{
	if (!ok) {
		guest_printf("acpi: FAIL %s\n", what);
		failures++;
	}
}

static uint8_t sum(const void *p, size_t len)
{
	const uint8_t *b = p;
	uint8_t s = 0;

	while (len--)
		s = (uint8_t)(s + *b++);
	return s;
}

static bool sig_is(const char *p, const char *sig, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != sig[i])
			return false;
	return true;
}

static const uint8_t *find_rsdp(void)
{
	for (uintptr_t p = 0xe0000; p < 0x100000; p += 16)
		if (sig_is((const char *)p, "RSD PTR ", 8))
			return (const uint8_t *)p;
	return NULL;
}

/* The sleep type \_S5 names: the first element of its package. */
static int s5_type(const struct sdt *dsdt)
{
	const uint8_t *p = (const uint8_t *)dsdt + sizeof(*dsdt), *end = p + dsdt->len;

	for (; p + 8 < end; p++)
		if (p[0] == 0x08 && sig_is((const char *)p + 1, "_S5_", 4) && p[5] == 0x12) {
			const uint8_t *e = p + 8; /* one-byte PkgLength, NumElements */

			return *e == 0x0a ? e[1] : *e;
		}
	return -1;
}

void kernel_main(struct boot_params *bp)
{
	const uint8_t *rsdp = find_rsdp();
	const struct sdt *xsdt, *fadt = NULL, *madt = NULL, *dsdt = NULL;
	unsigned cpus = 0;
	uint16_t pm1_evt = 0, pm1_cnt = 0;
	int s5;

	check(rsdp != NULL, "an RSDP in the BIOS area");
	if (!rsdp)
		guest_reset();
	check(bp->acpi_rsdp_addr == (uintptr_t)rsdp, "the zero page points at the RSDP");
	check(sum(rsdp, 20) == 0 && sum(rsdp, 36) == 0, "the RSDP checksums");
	xsdt = (const struct sdt *)(uintptr_t)*(const uint64_t *)(rsdp + 24);
	check(sig_is(xsdt->sig, "XSDT", 4) && sum(xsdt, xsdt->len) == 0, "the XSDT checksums");
	guest_printf("acpi: XSDT");
	for (uint32_t off = sizeof(*xsdt); off + 8 <= xsdt->len; off += 8) {
		const uint64_t *entry = (const uint64_t *)((const uint8_t *)xsdt + off);
		const struct sdt *t = (const struct sdt *)(uintptr_t)*entry;

		guest_printf(" %c%c%c%c", t->sig[0], t->sig[1], t->sig[2], t->sig[3]);
		check(sum(t, t->len) == 0, "every table checksums");
		if (sig_is(t->sig, "FACP", 4))
			fadt = t;
		if (sig_is(t->sig, "APIC", 4))
			madt = t;
	}
	guest_printf("\n");
	check(fadt && madt, "the XSDT lists FACP and APIC");
	if (!fadt || !madt)
		guest_reset();
	dsdt = (const struct sdt *)(uintptr_t)*(const uint64_t *)((const uint8_t *)fadt + 140);
	check(sig_is(dsdt->sig, "DSDT", 4) && sum(dsdt, dsdt->len) == 0, "the DSDT checksums");
	pm1_evt = (uint16_t)*(const uint32_t *)((const uint8_t *)fadt + 56);
	pm1_cnt = (uint16_t)*(const uint32_t *)((const uint8_t *)fadt + 64);
	for (uint32_t off = 44; off + 2 <= madt->len;) {
		const uint8_t *e = (const uint8_t *)madt + off;

		cpus += e[0] == 0 && (e[4] & 1);
		off += e[1] ? e[1] : madt->len;
	}
	s5 = s5_type(dsdt);
	guest_printf("acpi: %u cpus, sci %u, pm1 0x%x/0x%x, dsdt %u bytes, s5 %d\n", cpus,
		     *(const uint16_t *)((const uint8_t *)fadt + 46), pm1_evt, pm1_cnt, dsdt->len,
		     s5);
	check(s5 >= 0, "the DSDT names \\_S5");
	check(inw(pm1_cnt) & 1, "SCI_EN is set: the machine is in ACPI mode");
	if (failures) {
		guest_printf("acpi: FAIL (%u)\n", failures);
		guest_reset();
	}
	outw(pm1_evt + 2, PM1_PWRBTN);
	guest_printf("acpi: waiting for the power button\n");
	/* Polled, with interrupts off: a pause between reads keeps port exits rare. */
	while (!(inw(pm1_evt) & PM1_PWRBTN))
		for (unsigned i = 0; i < 20000; i++)
			cpu_relax();
	outw(pm1_evt, PM1_PWRBTN);
	guest_printf("acpi: power button\n");
	outw(pm1_cnt, (uint16_t)((unsigned)s5 << 10 | SLP_EN));
	guest_printf("acpi: FAIL still running after S5\n");
	guest_reset();
}
