/* hv-qemu against the real libvirtd, through the plugin ABI as the host calls
 * it: errors for bad URIs and conflicts, then two guests booting Debian's
 * kernel with a busybox initramfs under QEMU to a console marker, the console,
 * statistics, live vCPUs and memory, pause, graceful and forced stops; port
 * forwards added and removed live on a user NIC, and a guest on libvirt's
 * default network with the address its lease gives. */
#include "tap.h"
#include "hv-virt-host.h"
#include "hv-virt-guest.h"

#include <poll.h>
#include <pthread.h>

/* Errors that need no guest: every one names its subject and has its code. */
static void test_connection_errors(void)
{
	struct guest g;
	struct vi_hv_ctx bad;
	const char *reason = NULL;

	guest_init(&g, "conn", "console=ttyS0");

	ctx_open(ops, &bad, "not a uri");
	is_int(ops->probe(&bad, &reason), VI_HV_PROBE_DECLINED, "malformed URI: probe declines");
	is_str(reason, "no QEMU host: invalid libvirt URI 'not a uri'", "... saying why");
	is_int(ops->define(&bad, &g.vm), -VI_EUSAGE, "malformed URI: usage error");
	ok(error_has("invalid libvirt URI 'not a uri'"), "... naming the URI");
	ops->close(&bad);

	ctx_open(ops, &bad, "bogus:///system");
	is_int(ops->start(&bad, &g.vm), -VI_EFAIL, "URI without a driver: failure");
	ok(error_has("cannot connect to 'bogus:///system': no connection driver available"),
	   "... naming the URI and the cause");
	ops->close(&bad);

	ctx_open(ops, &bad, "qemu:///system?socket=/nonexistent/libvirt-sock");
	is_int(ops->probe(&bad, &reason), VI_HV_PROBE_DECLINED, "libvirtd unreachable: declined");
	ok(reason && strstr(reason, "no QEMU host: cannot connect to "
				    "'qemu:///system?socket=/nonexistent/libvirt-sock'"),
	   "... naming the URI: %s", reason ? reason : "(null)");
	is_int(ops->state(&bad, &g.vm, &(struct vi_hv_state){ sizeof(struct vi_hv_state) }),
	       -VI_EFAIL, "libvirtd unreachable: state fails");
	ok(error_has("cannot connect to 'qemu:///system?socket=/nonexistent/libvirt-sock': "
		     "failed to connect socket to '/nonexistent/libvirt-sock': "
		     "No such file or directory"),
	   "... with libvirt's reason");
	ops->close(&bad);

	ctx_open(ops, &bad, "test:///default");
	is_int(ops->probe(&bad, &reason), VI_HV_PROBE_DECLINED, "another driver: declined");
	is_str(reason, "no QEMU host: 'test:///default' is a TEST host", "... saying which");
	ops->close(&bad);
}

/* A domain that must not be made: conflicts and missing files. */
static void test_define_errors(struct guest *a)
{
	struct guest dup, taken, nokernel;

	guest_init(&dup, "dup", "console=ttyS0");
	snprintf(dup.name, sizeof(dup.name), "%s", a->name);
	is_int(ops->define(&ctx, &dup.vm), -VI_ESTATE, "duplicate name: conflict");
	ok(error_has("a domain named 'vi-test-") && error_has("-a' already exists on "
							       "'qemu:///system' (uuid "),
	   "... naming the domain and the URI");
	is_int(state_of(&dup), VI_HV_UNDEFINED, "... and nothing is defined under its UUID");

	guest_init(&taken, "taken", "console=ttyS0");
	snprintf(taken.uuid, sizeof(taken.uuid), "%s", a->uuid);
	is_int(ops->define(&ctx, &taken.vm), -VI_ESTATE, "duplicate UUID: conflict");
	ok(error_has("is taken by domain 'vi-test-"), "... naming the holder");

	guest_init(&nokernel, "nokernel", "console=ttyS0");
	char missing[4200];
	snprintf(missing, sizeof(missing), "%s/no-such-vmlinuz", work);
	nokernel.vm.kernel = missing;
	/* A new VM's files are still being staged when it is defined: they are
	 * checked when it starts. Start writes the definition afresh, so a VM
	 * libvirt lost is defined again. */
	is_int(ops->define(&ctx, &nokernel.vm), 0, "a missing kernel is defined");
	is_int(ops->undefine(&ctx, &nokernel.vm), 0, "... and undefined");
	is_int(ops->start(&ctx, &nokernel.vm), -VI_ENOTFOUND, "... and does not start: not found");
	ok(error_has("cannot find kernel '") && error_has("/no-such-vmlinuz' of 'vi-test-") &&
		   error_has("No such file or directory"),
	   "... naming the kernel and the VM");
	is_int(state_of(&nokernel), VI_HV_STOPPED, "... and it stays stopped");
	/* Not `taken`: its UUID finds a. */
	forget(&dup);
	forget(&nokernel);
}

struct console_io {
	int to_guest, from_guest;
	char out[1 << 16];
	size_t len;
	bool answered;
};

/* Types a command like a user, waits for the answer, then the escape byte. */
static void *console_user(void *arg)
{
	static const char cmd[] = "cat /sys/block/vda/size; echo CONSOLE-$((6*7))\r";
	struct console_io *io = arg;
	double end = now() + 30;
	bool escaped = false;

	if (write(io->to_guest, cmd, strlen(cmd)) < 0)
		return NULL;
	for (;;) {
		struct pollfd p = { .fd = io->from_guest, .events = POLLIN };
		if (!escaped && (io->answered || now() > end)) {
			if (write(io->to_guest, "\x1d", 1) < 0)
				return NULL;
			escaped = true;
		}
		if (poll(&p, 1, 100) <= 0)
			continue;
		ssize_t n = read(io->from_guest, io->out + io->len, sizeof(io->out) - io->len);
		if (n <= 0)
			break;
		io->len += (size_t)n;
		io->answered = io->answered || memmem(io->out, io->len, "CONSOLE-42", 10);
	}
	return NULL;
}

static void test_console(struct guest *g)
{
	struct console_io io = { 0 };
	int in[2], out[2];
	pthread_t t;

	if (pipe(in) || pipe(out)) {
		ok(0, "console: pipes");
		return;
	}
	io.to_guest = in[1];
	io.from_guest = out[0];
	pthread_create(&t, NULL, console_user, &io);
	is_int(ops->console(&ctx, &g->vm, in[0], out[1], 0x1d), 0,
	       "console: attached until the escape byte");
	close(out[1]);
	pthread_join(t, NULL);
	close(in[0]);
	close(in[1]);
	close(out[0]);
	ok(io.answered, "console: the guest's shell answered");
	ok(memmem(io.out, io.len, "131072", 6) != NULL,
	   "console: the guest sees the 64 MiB virtio disk");
	is_int(state_of(g), VI_HV_RUNNING, "console: detaching leaves the guest running");
}

/* Polls stats until check() holds; the balloon and hot-plug settle in the guest. */
static bool stats_until(struct guest *g, bool (*check)(const struct vi_hv_stats *, uint64_t),
			uint64_t want, struct vi_hv_stats *st)
{
	double end = now() + 30;

	do {
		*st = (struct vi_hv_stats){ .struct_size = sizeof(*st) };
		if (ops->stats(&ctx, &g->vm, st))
			return false;
		if (check(st, want))
			return true;
		usleep(100000);
	} while (now() < end);
	return false;
}

static bool memory_is(const struct vi_hv_stats *st, uint64_t want)
{
	return st->memory == want;
}

static bool vcpus_are(const struct vi_hv_stats *st, uint64_t want)
{
	return st->vcpus == want;
}

/* The virtual size qemu-img reads from a running guest's image, 0 if it cannot. */
static uint64_t image_bytes(const char *path)
{
	char cmd[4400], line[256];
	unsigned long long size = 0;
	FILE *f;

	snprintf(cmd, sizeof(cmd), "qemu-img info -U --output=json '%s'", path);
	if (!(f = popen(cmd, "r")))
		return 0;
	while (fgets(line, sizeof(line), f))
		sscanf(line, " \"virtual-size\": %llu", &size);
	pclose(f);
	return size;
}

static void test_running(struct guest *g)
{
	uint64_t disk;

	struct vi_hv_stats st;

	ok(stats_until(g, vcpus_are, 1, &st), "stats: one vCPU online");
	ok(st.cpu_time_ns > 0, "stats: guest CPU time %llu ns",
	   (unsigned long long)st.cpu_time_ns);
	ok(stats_until(g, memory_is, 256 * MiB, &st),
	   "stats: the balloon holds the guest at 256 MiB (of 384)");
	ok(st.disk_rd_bytes > 0, "stats: disk bytes read %llu",
	   (unsigned long long)st.disk_rd_bytes);

	is_int(ops->set_memory(&ctx, &g->vm, 320 * MiB), 0, "set_memory: grow to 320 MiB live");
	ok(stats_until(g, memory_is, 320 * MiB, &st), "stats: the guest has 320 MiB");
	is_int(ops->set_vcpus(&ctx, &g->vm, 2), 0, "set_vcpus: add a vCPU live");
	ok(stats_until(g, vcpus_are, 2, &st), "stats: two vCPUs online");
	is_int(ops->set_vcpus(&ctx, &g->vm, 3), -VI_EUSAGE, "set_vcpus: beyond the maximum");
	ok(error_has("cannot set 'vi-test-"), "... says so: %s", host_error_text);

	disk = image_bytes(g->overlay);
	ok(disk > 0, "the disk has %llu bytes", (unsigned long long)disk);
	is_int(ops->resize_disk(&ctx, &g->vm, 0, disk + MiB - 100), 0,
	       "resize_disk: grow by 1 MiB live");
	is_int(image_bytes(g->overlay), disk + MiB, "the image has grown, to whole sectors");
	is_int(ops->resize_disk(&ctx, &g->vm, 0, disk), -VI_EUSAGE, "resize_disk: shrinking");
	ok(error_has("disk 0 has ") && error_has(": it does not shrink to "), "... is refused: %s",
	   host_error_text);
	is_int(image_bytes(g->overlay), disk + MiB, "... and changes nothing");
	is_int(ops->set_cpu_quota(&ctx, &g->vm, 50), 0, "set_cpu_quota: half a CPU");
	is_int(run("virsh -c qemu:///system schedinfo '%s' | grep -q '^global_quota *: 50000$'",
		   g->name), 0, "libvirt holds a global quota of 50 ms a period");
	is_int(ops->set_cpu_quota(&ctx, &g->vm, 0), 0, "set_cpu_quota: no limit");
	is_int(run("virsh -c qemu:///system schedinfo '%s' | "
		   "grep -Eq '^global_quota *: (-1|17592186044415)$'", g->name), 0,
	       "libvirt's quota is gone");

	is_int(ops->pause(&ctx, &g->vm), 0, "pause");
	is_int(state_of(g), VI_HV_PAUSED, "state: paused");
	is_int(ops->pause(&ctx, &g->vm), -VI_ESTATE, "pause again: wrong state");
	ok(error_has("' is already paused"), "... says so");
	is_int(ops->resume(&ctx, &g->vm), 0, "resume");
	is_int(state_of(g), VI_HV_RUNNING, "state: running");
	is_int(ops->resume(&ctx, &g->vm), -VI_ESTATE, "resume a running guest: wrong state");
	ok(error_has("' is not paused"), "... says so");
	is_int(ops->start(&ctx, &g->vm), -VI_ESTATE, "start a running guest: wrong state");
	ok(error_has("' is already running"), "... says so");
	is_int(ops->undefine(&ctx, &g->vm), -VI_ESTATE, "undefine a running guest: wrong state");
	ok(error_has("' is running: stop it first"), "... says so");
}

static void test_forwards(struct guest *g)
{
	struct vi_hv_forward web = { sizeof(web), VI_HV_TCP, "127.0.0.1", free_port(), 80 };
	char addr[64] = "", want[64];
	unsigned held_port;

	ok(ops->features & VI_HV_F_USER_NET, "user NICs are a feature");
	ok(file_has(g->log, "init: eth0 has 10.0.2.15"), "the guest leased 10.0.2.15");
	is_int(ops->nic_address(&ctx, &g->vm, 0, addr, sizeof(addr)), 0, "nic_address");
	is_str(addr, VI_HV_USER_GUEST_IP, "... the user network's guest address");
	is_int(ops->nic_address(&ctx, &g->vm, 1, addr, sizeof(addr)), -VI_EUSAGE,
	       "nic_address of a NIC it lacks: usage error");
	ok(error_has("' has no NIC 1"), "... says so");

	ok(!reaches_guest(web.host_port), "port %u leads nowhere yet", web.host_port);
	is_int(ops->forward_add(&ctx, &g->vm, 0, &web), 0, "forward_add %u to 80, live",
	       web.host_port);
	ok(reaches_guest(web.host_port), "the host reaches the guest's server through it");
	snprintf(want, sizeof(want), "host port %u is in use", web.host_port);
	is_int(ops->forward_add(&ctx, &g->vm, 0, &web), -VI_ESTATE, "the same forward again: "
								      "conflict");
	ok(error_has(want), "... naming the port");
	is_int(ops->forward_remove(&ctx, &g->vm, 0, &web), 0, "forward_remove, live");
	ok(!reaches_guest(web.host_port), "the port leads nowhere again");
	is_int(ops->forward_remove(&ctx, &g->vm, 0, &web), -VI_ESTATE,
	       "removing it again: wrong state");
	ok(error_has("' has no forward of host port "), "... says so");

	int held = loopback_socket(true, &held_port);
	struct vi_hv_forward busy = { sizeof(busy), VI_HV_TCP, "127.0.0.1", held_port, 80 };
	is_int(ops->forward_add(&ctx, &g->vm, 0, &busy), -VI_ESTATE,
	       "a host port another socket holds: conflict");
	snprintf(want, sizeof(want), "host port %u is in use", held_port);
	ok(error_has(want), "... naming the port: %s", host_error_text);
	if (held >= 0)
		close(held);
}

/* virsh's word on libvirt's default network: "Active" or "Autostart". */
static bool default_net_is(const char *what)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "virsh -q net-info default 2>/dev/null | grep -q '^%s: *yes'",
		 what);
	return system(cmd) == 0;
}

/* A guest on a nat NIC: libvirt's default network is started for it (and
 * left as it was found afterwards), and its lease gives its address. */
static void test_nat(void)
{
	static struct guest c;
	bool existed = system("virsh -q net-info default >/dev/null 2>&1") == 0;
	bool active = default_net_is("Active"), autostart = default_net_is("Autostart");
	char addr[64] = "", line[96];
	int rc = -VI_ENOTFOUND;

	guest_init(&c, "nat", "console=ttyS0 quiet");
	c.nic.mode = "nat";
	is_int(ops->start(&ctx, &c.vm), 0, "start a guest on a nat NIC");
	ok(default_net_is("Active") && default_net_is("Autostart"),
	   "libvirt's default network is active, and starts with libvirtd");
	if (ok(wait_for_text(c.log, MARKER, BOOT_TIMEOUT_S), "it boots to the marker")) {
		for (double end = now() + 30; rc == -VI_ENOTFOUND && now() < end; usleep(200000))
			rc = ops->nic_address(&ctx, &c.vm, 0, addr, sizeof(addr));
		is_int(rc, 0, "nic_address finds its lease");
		ok(!strncmp(addr, "192.168.122.", 12), "... on 192.168.122.0/24: %s", addr);
		snprintf(line, sizeof(line), "init: eth0 has %s\r", addr);
		ok(file_has(c.log, line), "... the address the guest has");
	}
	forget(&c);
	if (!existed)
		run("virsh -q net-destroy default >/dev/null; virsh -q net-undefine default >/dev/null");
	else if (!active)
		run("virsh -q net-destroy default >/dev/null");
	if (existed && !autostart)
		run("virsh -q net-autostart --disable default >/dev/null");
}

int main(void)
{
	static struct guest a, b;
	const char *reason = NULL;
	int probe;

	ops = load_plugin("qemu");
	if (!ok(ops != NULL, "hv-qemu loads"))
		return done();
	is_str(ops->name, "qemu", "its name");
	ok(ops->run == NULL && ops->define && ops->console && ops->stats, "libvirt runs the VM");

	/* QEMU runs as another user: every directory on the way must let it pass. */
	snprintf(work, sizeof(work), "/var/tmp/vi-test-XXXXXX");
	if (!mkdtemp(work) || chmod(work, 0711) || prepare_artifacts("")) {
		ok(0, "test kernel, initramfs and disk prepared");
		return done();
	}
	test_connection_errors();

	ctx_open(ops, &ctx, NULL);
	probe = ops->probe(&ctx, &reason);
	if (probe != VI_HV_PROBE_OK) {
		skip("libvirtd is not reachable (scripts/setup starts it): %s",
		     reason ? reason : host_error_text);
		run("rm -rf '%s'", work);
		return done();
	}
	bool hw = !access("/sys/module/kvm_intel", F_OK) || !access("/sys/module/kvm_amd", F_OK);
	ok(strstr(reason, "qemu:///system, libvirt ") && strstr(reason, ", QEMU ") &&
		   strstr(reason, hw ? "domain type kvm (hardware virtualization)"
				     : "domain type qemu (TCG: no hardware virtualization)"),
	   "probe: %s", reason);

	/* b ignores the power button: no ACPI. */
	guest_init(&a, "a", "console=ttyS0 quiet");
	guest_init(&b, "b", "console=ttyS0 quiet acpi=off");
	is_int(state_of(&a), VI_HV_UNDEFINED, "state before define: undefined");
	is_int(ops->define(&ctx, &a.vm), 0, "define a");
	is_int(state_of(&a), VI_HV_STOPPED, "state after define: stopped");
	is_int(ops->define(&ctx, &a.vm), 0, "define a again: redefined in place");
	is_int(ops->define(&ctx, &b.vm), 0, "define b");
	test_define_errors(&a);

	double t0 = now();
	is_int(ops->start(&ctx, &a.vm), 0, "start a");
	is_int(ops->start(&ctx, &b.vm), 0, "start b");
	is_int(state_of(&a), VI_HV_RUNNING, "state after start: running");
	bool up = ok(wait_for_text(a.log, MARKER, BOOT_TIMEOUT_S),
		     "a boots to the marker in its console log");
	printf("# a: %.1f s from start to the marker\n", now() - t0);
	up = ok(wait_for_text(b.log, MARKER, BOOT_TIMEOUT_S), "b boots to the marker") && up;
	if (up) {
		test_console(&a);
		test_running(&a);
		test_forwards(&a);

		host_warning_text[0] = '\0';
		is_int(ops->stop(&ctx, &a.vm, 0, 60000), 0, "graceful stop of a");
		is_int(state_of(&a), VI_HV_STOPPED, "a is stopped");
		ok(file_has(a.log, "init: powering off"), "a's init powered off on the button");
		is_str(host_warning_text, "", "a was not forced");

		is_int(ops->stop(&ctx, &b.vm, 0, 2000), 0, "graceful stop of b, 2 s timeout");
		is_int(state_of(&b), VI_HV_STOPPED, "b is stopped");
		ok(!file_has(b.log, "init: powering off"), "b never saw the button");
		ok(strstr(host_warning_text, "did not shut down within 2000 ms: forcing it off") !=
			   NULL,
		   "b was forced off after the timeout, with a warning");
	}
	is_int(ops->stop(&ctx, &a.vm, 0, 1000), -VI_ESTATE, "stop a stopped guest: wrong state");
	ok(error_has("' is not running"), "... says so");
	struct vi_hv_forward f = { sizeof(f), VI_HV_TCP, "127.0.0.1", free_port(), 80 };
	is_int(ops->forward_add(&ctx, &a.vm, 0, &f), -VI_ESTATE, "forward_add on a stopped "
								  "guest: wrong state");
	ok(error_has("' is not running"), "... says so");
	test_nat();

	is_int(ops->start(&ctx, &a.vm), 0, "start a again");
	is_int(ops->stop(&ctx, &a.vm, VI_HV_STOP_FORCE, 0), 0, "forced stop");
	is_int(state_of(&a), VI_HV_STOPPED, "a is stopped at once");

	is_int(ops->undefine(&ctx, &a.vm), 0, "undefine a");
	is_int(ops->undefine(&ctx, &b.vm), 0, "undefine b");
	is_int(state_of(&a), VI_HV_UNDEFINED, "a is gone");
	is_int(ops->undefine(&ctx, &a.vm), -VI_ENOTFOUND, "undefine again: not found");
	is_int(ops->console(&ctx, &a.vm, 0, 1, 0x1d), -VI_ENOTFOUND, "console: not found");

	forget(&a);
	forget(&b);
	run("rm -rf '%s'", work);
	ops->close(&ctx);
	return done();
}
