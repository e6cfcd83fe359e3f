/* lib/vmm on the real /dev/kvm: the test kernels boot through the 64-bit entry and report
 * on COM1; resets, triple faults, console input, Ctrl-Alt-Del, pause with state round
 * trips, dirty logging, and every kind of bad input. */
#include <errno.h>
#include <fcntl.h>
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

static char tmpdir[] = "/tmp/vmm-boot-XXXXXX";

struct run {
	const char *kernel, *initrd, *cmdline;
	unsigned cpus;
	uint64_t memory;
	/* Called from the event loop once, 100 ms after the start, when set. */
	void (*at_timer)(struct vmm *vm);
	int reason;
	char *output;
	struct vmm_stats stats;
	bool dirty;
};

static void run_timer(struct vmm *vm, int fd, void *opaque)
{
	struct run *r = opaque;
	uint64_t ticks;

	if (read(fd, &ticks, sizeof(ticks)) != sizeof(ticks))
		return;
	vmm_unwatch_fd(vm, fd);
	r->at_timer(vm);
}

/* Boots r->kernel to its end; 0 or the vmm error. */
static int run_guest(struct run *r)
{
	struct vmm_config cfg = {
		.kernel = r->kernel, .initrd = r->initrd, .cmdline = r->cmdline,
		.cpus = r->cpus ? r->cpus : 1, .memory = r->memory ? r->memory : 64 * MiB,
		.console_fd = memfd_create("console", MFD_CLOEXEC),
	};
	struct itimerspec at = { .it_value.tv_nsec = 100 * 1000 * 1000 };
	int timer = -1, ret;
	struct vmm *vm;

	ret = boot_vm(&cfg, &vm);
	if (ret < 0)
		goto out;
	if (r->dirty)
		vmm_memory_set_dirty_log(vm, true);
	if (r->at_timer) {
		timer = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
		timerfd_settime(timer, 0, &at, NULL);
		vmm_watch_fd(vm, timer, run_timer, r);
	}
	ret = vmm_start(vm);
	if (ret == 0)
		r->reason = vmm_wait(vm);
	if (r->reason == VMM_EXIT_ERROR)
		printf("# vmm: %s\n", vmm_exit_message(vm));
	vmm_get_stats(vm, &r->stats);
	if (r->dirty) {
		const struct vmm_mem_region *m = vmm_memory_region(vm, 0);
		size_t words = (m->size / 4096 + 63) / 64, pages = 0;
		uint64_t *bitmap = xcalloc(words, 8);

		if (vmm_memory_get_dirty(vm, 0, bitmap) == 0)
			for (size_t i = 0; i < words; i++)
				pages += (size_t)__builtin_popcountll(bitmap[i]);
		r->dirty = pages > 0;
		free(bitmap);
	}
	vmm_free(vm);
	if (timer >= 0)
		close(timer);
out:
	r->output = read_fd(cfg.console_fd);
	close(cfg.console_fd);
	return ret;
}

static uint32_t fnv1a(const uint8_t *p, size_t n)
{
	uint32_t h = 2166136261u;

	while (n--)
		h = (h ^ *p++) * 16777619u;
	return h;
}

static struct vmm_kvm_info kvm;

static void test_bootinfo(void)
{
	char *initrd = xasprintf("%s/initrd", tmpdir);
	size_t size = 100000;
	uint8_t *data = xmalloc(size);
	char *want;
	int fd;
	struct run r = {
		.kernel = guest("bootinfo"), .initrd = initrd,
		.cmdline = "console=ttyS0 vi.test=bootinfo", .memory = 64 * MiB, .dirty = true,
	};

	for (size_t i = 0; i < size; i++)
		data[i] = (uint8_t)(i * 7 + (i >> 8));
	fd = open(initrd, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	ok(fd >= 0 && write(fd, data, size) == (ssize_t)size, "initrd written");
	close(fd);

	is_int(run_guest(&r), 0, "bootinfo kernel boots");
	is_int(r.reason, VMM_EXIT_RESET, "it ends with an i8042 reset");
	ok(has_line(r.output, "bootinfo: ok"), "the kernel finds the boot protocol state right");
	ok(has_line(r.output, "cmdline: console=ttyS0 vi.test=bootinfo"),
	   "it sees the command line");
	ok(has_line(r.output, "entry: cs 0x10 ds 0x18 ss 0x18 rflags 0x2"),
	   "it starts with the boot segments and interrupts off");
	want = xasprintf("e820: ram %llu KiB", (0x9fc00 + 64 * MiB - MiB) >> 10);
	ok(has_line(r.output, want), "E820 RAM adds up to the memory size: %s", want);
	free(want);
	want = xasprintf("initrd: %zu bytes fnv1a %08x", size, fnv1a(data, size));
	ok(has_line(r.output, want), "the initrd arrives intact: %s", want);
	free(want);
	ok(has_line(r.output, "cpuid: hypervisor 'KVMKVMKVM'"), "CPUID shows KVM");
	if (!kvm.hardware)
		ok(has_line(r.output, "cpuid: cx16 no"),
		   "software KVM hides what its emulator cannot run");
	ok(r.stats.exits > 0 && r.stats.vcpus == 1 && r.stats.memory == 64 * MiB,
	   "stats count %llu exits on 1 vCPU", (unsigned long long)r.stats.exits);
	ok(r.dirty, "the dirty log records the pages the guest wrote");
	if (!has_line(r.output, "bootinfo: ok"))
		printf("# output:\n%s\n", r.output);
	free(r.output);
	free((char *)r.kernel);
	free(data);
	unlink(initrd);
	free(initrd);
}

static void test_high_memory(void)
{
	struct run r = { .kernel = guest("bootinfo"), .memory = 5 * 1024 * MiB };
	char *want = xasprintf("e820: ram %llu KiB",
			       (0x9fc00 + 3 * 1024 * MiB - MiB + 2 * 1024 * MiB) >> 10);

	is_int(run_guest(&r), 0, "bootinfo kernel boots with 5 GiB");
	ok(has_line(r.output, "bootinfo: ok"), "it checks out");
	ok(has_line(r.output, "e820: 0000000100000000-000000017fffffff ram"),
	   "RAM above the hole starts at 4 GiB");
	ok(has_line(r.output, want), "E820 RAM adds up: %s", want);
	free(want);
	free(r.output);
	free((char *)r.kernel);
}

static void test_smp(void)
{
	struct run r = { .kernel = guest("smp"), .cmdline = "cpus=4", .cpus = 4 };

	is_int(run_guest(&r), 0, "smp kernel boots on 4 vCPUs");
	is_int(r.reason, VMM_EXIT_RESET, "it ends with a reset");
	ok(has_line(r.output, "smp: cpu 0 up (boot cpu), expecting 4"), "the boot CPU reports");
	for (unsigned i = 1; i < 4; i++) {
		char *line = xasprintf("smp: cpu %u up", i);

		ok(has_line(r.output, line), "AP with APIC ID %u reports", i);
		free(line);
	}
	ok(has_line(r.output, "smp: ok"), "all four are up");
	is_int(r.stats.vcpus, 4, "stats count 4 vCPUs");
	if (!has_line(r.output, "smp: ok"))
		printf("# output:\n%s\n", r.output);
	free(r.output);
	free((char *)r.kernel);
}

static void test_resets(void)
{
	struct run r = { .kernel = guest("reset"), .cmdline = "reset=triple" };

	is_int(run_guest(&r), 0, "reset kernel boots");
	is_int(r.reason, VMM_EXIT_SHUTDOWN, "a triple fault ends the VM as a shutdown");
	ok(has_line(r.output, "reset: triple fault"), "after the kernel said so");
	free(r.output);

	r.cmdline = NULL;
	is_int(run_guest(&r), 0, "reset kernel boots with no command line");
	is_int(r.reason, VMM_EXIT_RESET, "the i8042 reset ends the VM as a reset");
	ok(has_line(r.output, "reset: i8042"), "after the kernel said so");
	free(r.output);
	free((char *)r.kernel);
}

static void type_keys(struct vmm *vm)
{
	vmm_console_input(vm, (const uint8_t *)"hi there\rq", 10);
}

static void press_ctrl_alt_del(struct vmm *vm)
{
	vmm_inject_ctrl_alt_del(vm);
}

/* Pauses, reads and writes back the vCPU state, saves the whole VM, resumes, types. */
static void pause_roundtrip(struct vmm *vm)
{
	struct vmm_vcpu_state st;
	struct vi_state_writer w = { 0 };
	struct vi_state_reader *r = NULL;
	struct vi_state_section sec;
	struct vi_state_header h;
	int ret, fd = memfd_create("state", MFD_CLOEXEC);
	uint64_t pages = 0;

	is_int(vmm_pause(vm), 0, "the VM pauses");
	ok(vmm_paused(vm), "and says so");
	ret = vmm_vcpu_get_state(vm, 0, &st);
	is_int(ret, 0, "vCPU 0 state reads back%s%s", ret ? ": " : "", ret ? vi_error_message() : "");
	ok(st.regs.rip >= 0x100000 && st.regs.rip < 0x200000 && (st.sregs.efer & 0x400),
	   "the guest sits in its kernel in long mode (rip 0x%llx)",
	   (unsigned long long)st.regs.rip);
	ok(st.nmsrs >= 9, "%u MSRs saved", st.nmsrs);
	ret = vmm_vcpu_set_state(vm, 0, &st);
	is_int(ret, 0, "and writes back%s%s", ret ? ": " : "", ret ? vi_error_message() : "");
	is_int(vmm_vcpu_get_state(vm, 7, &st), -VI_EUSAGE, "there is no vCPU 7");
	ret = vmm_save(vm, fd, &w);
	is_int(ret, 0, "the paused VM saves%s%s", ret ? ": " : "", ret ? vi_error_message() : "");
	lseek(fd, 0, SEEK_SET);
	/* Known to this reader: none; the sections of the VMM are not optional. */
	ok(vi_state_reader_open(fd, NULL, 0, &h, &r) == 0 && h.cpus == 1 && h.max_cpus == 1 &&
		   h.memory == 64 * MiB,
	   "its state's header tells 1 vCPU and 64 MiB");
	while (r && (ret = vi_state_next(r, &sec)) == 1)
		pages += sec.pages;
	ok(pages > 0 && pages < 64 * MiB / 4096, "%llu pages of memory come first, not the zero ones",
	   (unsigned long long)pages);
	ok(ret < 0 && strstr(vi_error_message(), "section 256 #0 (version 1)"),
	   "then the vCPU, which a reader that knows no VMM section refuses: %s",
	   vi_error_message());
	vi_state_reader_free(r);
	close(fd);
	is_int(vmm_resume(vm), 0, "the VM resumes");
	type_keys(vm);
}

static void test_input(void)
{
	struct run r = { .kernel = guest("reset"), .cmdline = "reset=wait", .at_timer = type_keys };

	is_int(run_guest(&r), 0, "reset=wait kernel boots");
	ok(has_line(r.output, "reset: waiting for 'q' or Ctrl-Alt-Del"), "it waits");
	ok(strstr(r.output, "hi there") != NULL, "COM1 input wakes it and comes back as echo");
	ok(has_line(r.output, "reset: q pressed"), "'q' ends the wait");
	is_int(r.reason, VMM_EXIT_RESET, "with a reset");
	free(r.output);

	r.at_timer = press_ctrl_alt_del;
	is_int(run_guest(&r), 0, "reset=wait kernel boots again");
	ok(has_line(r.output, "reset: ctrl-alt-del"), "Ctrl-Alt-Del reaches it through the i8042");
	is_int(r.reason, VMM_EXIT_RESET, "and it resets");
	free(r.output);

	r.at_timer = pause_roundtrip;
	is_int(run_guest(&r), 0, "reset=wait kernel boots a third time");
	ok(strstr(r.output, "hi there") != NULL && has_line(r.output, "reset: q pressed"),
	   "after the state round trip it still echoes and ends");
	free(r.output);
	free((char *)r.kernel);
}

static void expect_error(struct vmm_config *cfg, int code, const char *msg, const char *what)
{
	struct vmm *vm = NULL;
	int ret = vmm_check_config(cfg);

	is_int(ret, -code, "%s: checking fails with code %d", what, code);
	if (msg)
		is_str(vi_error_message(), msg, "%s: the message says why", what);
	ret = boot_vm(cfg, &vm);
	ok(ret == -code && vm == NULL, "%s: creating fails too", what);
}

static char *write_temp(const char *name, const void *data, size_t len)
{
	char *path = xasprintf("%s/%s", tmpdir, name);
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd < 0 || write(fd, data, len) != (ssize_t)len)
		printf("# cannot write %s\n", path);
	close(fd);
	return path;
}

static void test_bad_input(void)
{
	char *kernel = guest("bootinfo"), *text, *old, *no64, *msg, *buf;
	struct vmm_config cfg = { .kernel = "/nonexistent/bzImage", .cpus = 1, .memory = 64 * MiB,
				  .console_fd = -1 };
	char junk[4096], longline[3000];
	size_t len;
	uint32_t init_size;

	expect_error(&cfg, VI_ENOTFOUND, "kernel '/nonexistent/bzImage' not found",
		     "missing kernel");

	memset(junk, 'x', sizeof(junk));
	text = write_temp("text", junk, sizeof(junk));
	cfg.kernel = text;
	msg = xasprintf("kernel '%s' is neither a bzImage nor an ELF vmlinux", text);
	expect_error(&cfg, VI_EUSAGE, msg, "not a kernel");
	free(msg);

	if (vi_read_file(kernel, &buf, &len) < 0) {
		skip("cannot read %s", kernel);
		return;
	}
	buf[0x206] = 0x09; /* protocol 2.09 */
	old = write_temp("old", buf, len);
	cfg.kernel = old;
	msg = xasprintf("kernel '%s' speaks boot protocol 2.09; 2.12 or later is needed", old);
	expect_error(&cfg, VI_EUNSUPPORTED, msg, "old protocol");
	free(msg);
	buf[0x206] = 0x0f;
	buf[0x236] = 0; /* no XLF_KERNEL_64 */
	no64 = write_temp("no64", buf, len);
	cfg.kernel = no64;
	msg = xasprintf("kernel '%s' has no 64-bit entry point", no64);
	expect_error(&cfg, VI_EUNSUPPORTED, msg, "no 64-bit entry");
	free(msg);

	memcpy(&init_size, buf + 0x260, 4);
	cfg.kernel = kernel;
	cfg.memory = MiB;
	msg = xasprintf("memory 1M is below the %lluM kernel '%s' needs",
			(unsigned long long)((MiB + init_size + MiB - 1) / MiB), kernel);
	expect_error(&cfg, VI_EUSAGE, msg, "too little memory");
	free(msg);

	cfg.memory = 64 * MiB;
	cfg.cpus = 100000;
	expect_error(&cfg, VI_EUSAGE, NULL, "too many vCPUs");
	ok(strstr(vi_error_message(), "100000 vCPUs requested; this host allows 1 to ") != NULL,
	   "too many vCPUs: the message names the limit: %s", vi_error_message());
	cfg.cpus = 0;
	expect_error(&cfg, VI_EUSAGE, NULL, "no vCPUs");
	cfg.cpus = 2;
	cfg.max_cpus = 1;
	expect_error(&cfg, VI_EUSAGE, NULL, "max vCPUs below vCPUs");
	ok(strstr(vi_error_message(), "1 max vCPUs requested for 2 vCPUs; this host allows 2 to ") !=
		   NULL,
	   "max vCPUs below vCPUs: the message gives the range: %s", vi_error_message());
	cfg.max_cpus = 100000;
	expect_error(&cfg, VI_EUSAGE, NULL, "max vCPUs beyond KVM's limit");
	cfg.max_cpus = 0;
	cfg.max_memory = 32 * MiB;
	expect_error(&cfg, VI_EUSAGE, "max memory 32M is below the memory, 64M",
		     "max memory below memory");
	cfg.max_memory = 0;

	cfg.cpus = 1;
	cfg.initrd = "/nonexistent/initrd";
	expect_error(&cfg, VI_ENOTFOUND, "initrd '/nonexistent/initrd' not found",
		     "missing initrd");

	cfg.initrd = NULL;
	memset(longline, 'a', sizeof(longline) - 1);
	longline[sizeof(longline) - 1] = '\0';
	cfg.cmdline = longline;
	msg = xasprintf("command line is 2999 bytes; kernel '%s' takes at most 2047", kernel);
	expect_error(&cfg, VI_EUSAGE, msg, "long command line");
	free(msg);

	unlink(text);
	unlink(old);
	unlink(no64);
	free(text);
	free(old);
	free(no64);
	free(buf);
	free(kernel);
}

int main(void)
{

	if (!mkdtemp(tmpdir)) {
		ok(0, "cannot make a temporary directory: %s", strerror(errno));
		return done();
	}
	if (vmm_kvm_probe(&kvm) < 0) {
		skip("no usable KVM: %s", vi_error_message());
		rmdir(tmpdir);
		return done();
	}
	printf("# KVM module %s, up to %u vCPUs\n", kvm.module, kvm.max_vcpus);
	test_bootinfo();
	test_high_memory();
	test_smp();
	test_resets();
	test_input();
	test_bad_input();
	rmdir(tmpdir);
	return done();
}
