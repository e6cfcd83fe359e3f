/* lib/vmm's devices on the real /dev/kvm: the ACPI tables as iasl reads them, and the
 * devices test kernel driving virtio-blk (a qcow2 overlay on a raw base, and a read-only
 * raw disk), virtio-rng and virtio-balloon; qemu-img then checks what the guest wrote. */
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "error.h"
#include "state.h"
#include "tap.h"
#include "util.h"
#include "vmm/vmm.h"
#include "vmm-test.h"

#define MiB (1024ull * 1024)

static char tmpdir[] = "/tmp/vmm-devices-XXXXXX";

/* --- ACPI ---------------------------------------------------------------------------- */

static void write_table(const char *name, const uint8_t *p, size_t len)
{
	char *path = xasprintf("%s/%s.dat", tmpdir, name);

	vi_write_file_atomic(path, (const char *)p, len, 0644);
	free(path);
}

static uint32_t le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p)
{
	return le32(p) | (uint64_t)le32(p + 4) << 32;
}

/* Dumps the tables of a VM of 2 vCPUs that may have 4 and has iasl disassemble each. */
static void test_acpi_tables(void)
{
	char *kernel = guest("acpi");
	struct vmm_config cfg = { .kernel = kernel, .cpus = 2, .max_cpus = 4, .memory = 64 * MiB,
				  .console_fd = -1 };
	const char *names[] = { "facp", "apic", "dsdt", "facs", "xsdt" };
	struct vmm *vm;
	uint8_t *mem, *rsdp, *xsdt, *fadt = NULL;

	if (boot_vm(&cfg, &vm) < 0) {
		ok(false, "acpi: a VM: %s", vi_error_message());
		free(kernel);
		return;
	}
	mem = vmm_memory_region(vm, 0)->hva;
	rsdp = mem + 0xf0000;
	ok(!memcmp(rsdp, "RSD PTR ", 8), "acpi: the RSDP is at 0xf0000");
	xsdt = mem + le64(rsdp + 24);
	write_table("xsdt", xsdt, le32(xsdt + 4));
	for (uint32_t off = 36; off < le32(xsdt + 4); off += 8) {
		uint8_t *t = mem + le64(xsdt + off);
		char name[5] = { 0 };

		for (int i = 0; i < 4; i++)
			name[i] = (char)(t[i] | 0x20);
		if (!strcmp(name, "facp"))
			fadt = t;
		write_table(name, t, le32(t + 4));
	}
	ok(fadt != NULL, "acpi: the XSDT lists the FADT");
	if (fadt) {
		uint8_t *dsdt = mem + le64(fadt + 140), *facs = mem + le64(fadt + 132);

		write_table("dsdt", dsdt, le32(dsdt + 4));
		write_table("facs", facs, le32(facs + 4));
	}
	vmm_free(vm);
	for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
		/* iasl exits non-zero on errors; its summary names the count too. */
		int ret = sh("cd %s && iasl -d %s.dat >%s.log 2>&1 && "
			     "! grep -q '[1-9][0-9]* Error' %s.log",
			     tmpdir, names[i], names[i], names[i]);

		ok(ret == 0, "acpi: iasl -d disassembles the %s cleanly", names[i]);
		if (ret)
			sh("cat %s/%s.log | sed 's/^/# /'", tmpdir, names[i]);
	}
	ok(sh("grep -q 'PNP0A03' %s/dsdt.dsl && grep -q '_PRT' %s/dsdt.dsl && "
	      "grep -q '_S5' %s/dsdt.dsl",
	      tmpdir, tmpdir, tmpdir) == 0,
	   "acpi: the DSDT has the PCI root bridge, its _PRT and \\_S5");
	ok(sh("test $(grep -c 'Processor Local APIC' %s/apic.dsl) -eq 4", tmpdir) == 0,
	   "acpi: the MADT lists a local APIC for each of the four possible vCPUs");
	ok(sh("test $(grep -c 'Processor Enabled : 1' %s/apic.dsl) -eq 2 && "
	      "test $(grep -c 'Runtime Online Capable : 1' %s/apic.dsl) -eq 2",
	      tmpdir, tmpdir) == 0,
	   "acpi: two enabled, the two absent ones disabled but online capable");
	ok(sh("test $(grep -c 'ACPI0007' %s/dsdt.dsl) -eq 4 && grep -q 'ACPI0013' %s/dsdt.dsl && "
	      "grep -q 'Method (_EJ0' %s/dsdt.dsl && grep -q 'Method (_MAT' %s/dsdt.dsl && "
	      "grep -q 'Notify (C003, Arg1)' %s/dsdt.dsl && "
	      "grep -q 'SystemIO, 0x0CD8, 0x08' %s/dsdt.dsl && grep -q 'WriteAsZeros' %s/dsdt.dsl && "
	      "grep -q 'Interrupt (ResourceConsumer, Level, ActiveHigh, Exclusive' %s/dsdt.dsl",
	      tmpdir, tmpdir, tmpdir, tmpdir, tmpdir, tmpdir, tmpdir, tmpdir) == 0,
	   "acpi: the DSDT has four hotpluggable processors, their register block and the GED");
	ok(sh("grep -A5 'Source : 05' %s/apic.dsl | grep -q 'Trigger Mode : 3'",
	      tmpdir) == 0,
	   "acpi: the GED's IRQ 5 is level-triggered in the MADT as in the DSDT");
	free(kernel);
}

/* --- the devices kernel --------------------------------------------------------------- */

static void balloon_timer(struct vmm *vm, int fd, void *opaque)
{
	uint64_t ticks;

	(void)opaque;
	if (read(fd, &ticks, sizeof(ticks)) != sizeof(ticks))
		return;
	vmm_unwatch_fd(vm, fd);
	vmm_balloon_set(vm, 16);
}

/* A disk image file holding `text` at offset 0. */
static char *make_base(const char *name, const char *text)
{
	char *path = xasprintf("%s/%s", tmpdir, name);
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0644);

	if (fd < 0 || ftruncate(fd, (off_t)(8 * MiB)) < 0 ||
	    pwrite(fd, text, strlen(text), 0) != (ssize_t)strlen(text))
		ok(false, "cannot write '%s'", path);
	if (fd >= 0)
		close(fd);
	return path;
}

static void test_devices(void)
{
	char *kernel = guest("devices"), *base = make_base("base.raw", "vi-disk0 base sector"),
	     *ro = make_base("ro.raw", "vi-disk1 read-only"), *overlay, *output = NULL;
	struct itimerspec at = { .it_value.tv_nsec = 100 * 1000 * 1000 };
	struct vi_state_writer w = { 0 };
	struct vmm_disk disks[2];
	struct vmm_config cfg = { .kernel = kernel, .cmdline = "balloon=wait", .cpus = 1,
				  .memory = 64 * MiB, .disks = disks, .ndisks = 2, .rng = true,
				  .balloon = true };
	uint32_t target = 0, actual = 1;
	int timer, reason = 0, ret, state = memfd_create("state", MFD_CLOEXEC);
	struct vmm *vm, *again = NULL;

	overlay = xasprintf("%s/disk0.qcow2", tmpdir);
	if (sh("cd %s && qemu-img create -q -f qcow2 -b base.raw -F raw disk0.qcow2 8M",
	       tmpdir) != 0)
		ok(false, "cannot make the overlay");
	disks[0] = (struct vmm_disk){ overlay, VI_DISK_QCOW2, false };
	disks[1] = (struct vmm_disk){ ro, VI_DISK_RAW, true };
	cfg.console_fd = memfd_create("console", MFD_CLOEXEC);
	if (boot_vm(&cfg, &vm) < 0) {
		ok(false, "devices: a VM: %s", vi_error_message());
		goto out;
	}
	timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
	timerfd_settime(timer, 0, &at, NULL);
	vmm_watch_fd(vm, timer, balloon_timer, NULL);
	if (vmm_start(vm) == 0)
		reason = vmm_wait(vm);
	is_int(reason, VMM_EXIT_RESET, "devices: the kernel ran to its end");
	if (reason == VMM_EXIT_ERROR)
		printf("# vmm: %s\n", vmm_exit_message(vm));
	ret = vmm_balloon_get(vm, &target, &actual);
	ok(ret == 0 && target == 16 && actual == 0,
	   "devices: the balloon holds nothing once deflated (target %u, actual %u)", target,
	   actual);
	vmm_pause(vm);
	ret = vmm_save(vm, state, &w);
	is_int(ret, 0, "devices: every device's state is saved%s%s", ret ? ": " : "",
	       ret ? vi_error_message() : "");
	close(timer);
	vmm_free(vm);
	/* A new VM of the same configuration takes it: the balloon's target comes back. */
	lseek(state, 0, SEEK_SET);
	ret = vmm_new(&cfg, &again);
	if (ret == 0)
		ret = vmm_restore(again, state, 0);
	is_int(ret, 0, "devices: and restored into a new VM%s%s", ret ? ": " : "",
	       ret ? vi_error_message() : "");
	ok(ret == 0 && vmm_balloon_get(again, &target, &actual) == 0 && target == 16 &&
		   actual == 0,
	   "devices: with the balloon's target and size (%u, %u)", target, actual);
	vmm_free(again);
	close(state);
	output = read_fd(cfg.console_fd);
	printf("# %s", output);
	ok(strstr(output, "class 060000") != NULL, "devices: the host bridge is in slot 0");
	ok(has_line(output, "blk0: sector 0 'vi-disk0 base sector'\r"),
	   "devices: blk0 reads its backing file through the overlay");
	ok(has_line(output, "blk1: sector 0 'vi-disk1 read-only'\r"),
	   "devices: blk1 reads the read-only disk");
	ok(has_line(output, "blk0: id 'vi-disk0'\r"), "devices: blk0 names itself");
	ok(has_line(output, "blk0: wrote, flushed and read back\r"), "devices: blk0 writes");
	ok(has_line(output, "blk1: write refused\r"), "devices: blk1 refuses writes");
	ok(has_line(output, "rng: 64 random bytes\r"), "devices: rng");
	ok(has_line(output, "balloon: inflated 16 pages, 16 came back zeroed, deflated\r"),
	   "devices: the balloon frees the pages the guest gives");
	ok(has_line(output, "devices: ok\r"), "devices: the kernel is content");
	is_int(sh("qemu-img check -q %s", overlay), 0, "devices: qemu-img check finds no fault");
	/* "written by the guest" and the disk's digit, at sector 1 and at 2 MiB. */
	ok(sh("out=$(qemu-io -r -f qcow2 -c 'read -P 0x77 512 1' -c 'read -P 0x30 532 1' "
	      "-c 'read -P 0x30 2097172 1' %s) && ! echo \"$out\" | grep -q failed",
	      overlay) == 0,
	   "devices: qemu-io reads what the guest wrote");
	ok(sh("cmp -s -n 1024 %s/base.raw /dev/zero -i 512:0", tmpdir) == 0,
	   "devices: the backing file is untouched");
	ok(sh("cmp -s -n 512 %s /dev/zero -i 512:0", ro) == 0,
	   "devices: the read-only disk is untouched");
out:
	close(cfg.console_fd);
	free(output);
	free(kernel);
	free(base);
	free(ro);
	free(overlay);
}

static void test_bad_disk(void)
{
	char *kernel = guest("devices"), *missing = xasprintf("%s/missing.qcow2", tmpdir);
	struct vmm_disk disk = { missing, VI_DISK_QCOW2, false };
	struct vmm_config cfg = { .kernel = kernel, .cpus = 1, .memory = 64 * MiB,
				  .console_fd = -1, .disks = &disk, .ndisks = 1 };
	struct vmm *vm = NULL;
	int ret = boot_vm(&cfg, &vm);

	is_int(ret, -VI_ENOTFOUND, "a missing disk image fails the creation");
	ok(strstr(vi_error_message(), "missing.qcow2") != NULL, "and the message names it: %s",
	   vi_error_message());
	free(kernel);
	free(missing);
}

int main(void)
{
	if (access("/dev/kvm", R_OK | W_OK) != 0) {
		skip("/dev/kvm is not usable here");
		return done();
	}
	if (!mkdtemp(tmpdir))
		return 1;
	test_acpi_tables();
	test_devices();
	test_bad_disk();
	/* VMM_DEVICES_KEEP=1 keeps the tables, their disassembly and the images. */
	if (getenv("VMM_DEVICES_KEEP"))
		printf("# kept %s\n", tmpdir);
	else
		sh("rm -rf %s", tmpdir);
	return done();
}
