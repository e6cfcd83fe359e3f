/* hv-svm and hv-vtx through the plugin ABI: probe on this CPU, define's checks, and the
 * whole life of a VM (start, state, stats, pause, console, graceful and forced stop, save
 * and restore), and user-mode networking (forwards at start and live, the leased
 * address).
 * start() re-executes host->self_exe; here that is this program, which then plays
 * `vi __vmm-run` by calling the plugin's run(). */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "tap.h"
#include "hv-virt-host.h"
#include "util.h"
#include "vmm/vmm.h"
#include "vmm-test.h"

static char home[] = "/tmp/hv-native-XXXXXX";

struct vm_paths {
	char *dir, *run_dir, *console_log, *kernel;
	struct vi_hv_forward forward;
	const struct vi_hv_forward *forward_ptr;
	struct vi_hv_nic nic;
	const struct vi_hv_nic *nic_ptr;
};

/* HV_TEST_FORWARD=PORT: a user-mode NIC forwarding 127.0.0.1:PORT to the guest's 80. */
static void vm_user_nic(struct vi_hv_vm *vm, struct vm_paths *p)
{
	const char *port = getenv("HV_TEST_FORWARD");

	if (!port)
		return;
	p->forward = (struct vi_hv_forward){ .struct_size = sizeof(p->forward),
					     .proto = VI_HV_TCP, .host_addr = "127.0.0.1",
					     .host_port = (unsigned)atoi(port), .guest_port = 80 };
	p->forward_ptr = &p->forward;
	p->nic = (struct vi_hv_nic){ .struct_size = sizeof(p->nic), .mac = "52:54:00:12:34:56",
				     .mode = "user", .forwards = &p->forward_ptr, .nforwards = 1 };
	p->nic_ptr = &p->nic;
	vm->nics = &p->nic_ptr;
	vm->nnics = 1;
}

/* The VM the way the host would describe it; kernel, command line and NIC come from the
 * environment so that the re-executed VMM process sees the same. */
static void vm_init(struct vi_hv_vm *vm, struct vm_paths *p, const char *name)
{
	const char *cmdline = getenv("HV_TEST_CMDLINE");

	p->dir = xasprintf("%s/vms/%s", home, name);
	p->run_dir = xasprintf("%s/run", p->dir);
	p->console_log = xasprintf("%s/console.log", p->run_dir);
	p->kernel = xstrdup(getenv("HV_TEST_KERNEL"));
	*vm = (struct vi_hv_vm){
		.struct_size = sizeof(*vm), .name = name, .dir = p->dir, .run_dir = p->run_dir,
		.console_log = p->console_log, .cpus = 1, .max_cpus = 1, .memory = 64 << 20,
		.max_memory = 64 << 20, .kernel = p->kernel, .cmdline = cmdline,
	};
	vm_user_nic(vm, p);
}

static void vm_release(struct vm_paths *p)
{
	free(p->dir);
	free(p->run_dir);
	free(p->console_log);
	free(p->kernel);
}

/* argv: self --home HOME __vmm-run --hv NAME [--restore FILE] [--paused] VM */
static int vmm_run_main(int argc, char **argv)
{
	struct vi_hv_ctx ctx = { .struct_size = sizeof(ctx), .host = &test_host };
	struct vi_hv_run_opts opts = { .struct_size = sizeof(opts), .notify_fd = 3,
				       .incoming_fd = -1 };
	struct vi_hv_vm vm;
	struct vm_paths p;
	const struct vi_hv_ops *ops;
	int ret;

	snprintf(home, sizeof(home), "%s", argv[2]);
	test_host.home = home;
	ops = load_plugin(argv[5]);
	if (!ops)
		return 1;
	for (int i = 6; i < argc - 1; i++) {
		if (!strcmp(argv[i], "--restore") && i + 1 < argc - 1)
			opts.state_path = argv[++i];
		else if (!strcmp(argv[i], "--paused"))
			opts.flags |= VI_HV_RUN_PAUSED;
		else if (!strcmp(argv[i], "--incoming") && i + 1 < argc - 1)
			opts.incoming_fd = atoi(argv[++i]);
	}
	vm_init(&vm, &p, argv[argc - 1]);
	ret = ops->run(&ctx, &vm, &opts);
	vm_release(&p);
	return ret < 0 ? -ret : 0;
}

static void test_probe(const struct vi_hv_ops *mine, const struct vi_hv_ops *other,
		       const char *other_needs, const char *vendor)
{
	struct vi_hv_ctx ctx = { .struct_size = sizeof(ctx), .host = &test_host };
	struct vmm_kvm_info info;
	const char *reason = NULL;
	char *want;

	is_int(other->probe(&ctx, &reason), VI_HV_PROBE_DECLINED, "hv-%s declines on %s",
	       other->name, vendor);
	want = xasprintf("this CPU is %s: hv-%s needs %s", vendor, other->name, other_needs);
	is_str(reason, want, "with a one-line reason");
	free(want);
	vmm_kvm_probe(&info);
	if (info.hardware) {
		is_int(mine->probe(&ctx, &reason), VI_HV_PROBE_OK, "hv-%s is usable here",
		       mine->name);
		ok(strstr(reason, info.module) != NULL, "the reason names %s: %s", info.module,
		   reason);
	} else {
		is_int(mine->probe(&ctx, &reason), VI_HV_PROBE_EXPLICIT,
		       "hv-%s is usable when named, never chosen by itself", mine->name);
		ok(!strncmp(reason, "software KVM: guest code is emulated", 36),
		   "the reason says KVM is software: %s", reason);
	}
}

static void test_define(const struct vi_hv_ops *ops)
{
	struct vi_hv_ctx ctx = { .struct_size = sizeof(ctx), .host = &test_host };
	struct vi_hv_disk disk = { .struct_size = sizeof(disk), .path = "/dev/null" };
	struct vi_hv_nic nic = { .struct_size = sizeof(nic), .mac = "52:54:00:12:34:56",
				 .mode = "bridge", .source = "br0" };
	struct vi_hv_vm vm;
	struct vm_paths p;

	vm_init(&vm, &p, "def");
	is_int(ops->define(&ctx, &vm), 0, "define accepts a test kernel");
	vm.kernel = "/nonexistent";
	is_int(ops->define(&ctx, &vm), -3, "define: a missing kernel is 'not found'");
	is_str(host_error_text, "kernel '/nonexistent' not found", "and says so");
	vm.kernel = p.kernel;
	vm.memory = 1 << 20;
	is_int(ops->define(&ctx, &vm), -2, "define: too little memory is a usage error");
	ok(strstr(host_error_text, "memory 1M is below the 2M kernel") != NULL, "%s", host_error_text);
	vm.memory = 64 << 20;
	vm.cpus = 5000;
	is_int(ops->define(&ctx, &vm), -2, "define: too many vCPUs is a usage error");
	ok(strstr(host_error_text, "5000 vCPUs requested") != NULL, "%s", host_error_text);
	vm.cpus = 1;
	vm.kernel = NULL;
	is_int(ops->define(&ctx, &vm), -4, "define: no kernel is unsupported");
	vm.kernel = p.kernel;
	const struct vi_hv_disk *disk_ptr = &disk;
	const struct vi_hv_nic *nic_ptr = &nic;
	vm.disks = &disk_ptr;
	vm.ndisks = 1;
	is_int(ops->define(&ctx, &vm), 0, "define accepts a disk (opened at start)");
	vm.nics = &nic_ptr;
	vm.nnics = 1;
	is_int(ops->define(&ctx, &vm), 0, "define takes a bridged card (its bridge checked at start)");
	nic.mode = "macvtap";
	is_int(ops->define(&ctx, &vm), -4, "define: a card of another kind is unsupported");
	vm_release(&p);
}

struct console_run {
	const struct vi_hv_ops *ops;
	struct vi_hv_ctx *ctx;
	const struct vi_hv_vm *vm;
	int in, out, ret;
};

static void *console_thread(void *arg)
{
	struct console_run *c = arg;

	c->ret = c->ops->console(c->ctx, c->vm, c->in, c->out, 0x1d);
	return NULL;
}

static void test_lifecycle(const struct vi_hv_ops *ops)
{
	struct vi_hv_ctx ctx = { .struct_size = sizeof(ctx), .host = &test_host };
	struct vi_hv_state st = { .struct_size = sizeof(st) };
	struct vi_hv_stats stats = { .struct_size = sizeof(stats) };
	struct vi_hv_vm vm;
	struct vm_paths p;
	struct stat sb;
	int in[2], out = memfd_create("console", MFD_CLOEXEC);
	char *sock, *pid, *text;
	struct console_run con;
	pthread_t thread;
	bool echoed = false;

	setenv("HV_TEST_CMDLINE", "reset=wait", 1);
	vm_init(&vm, &p, "life");
	sock = xasprintf("%s/control.sock", p.run_dir);
	pid = xasprintf("%s/pid", p.run_dir);
	ops->state(&ctx, &vm, &st);
	is_int(st.state, VI_HV_STOPPED, "a VM never started is stopped");
	is_int(ops->stop(&ctx, &vm, 0, 1000), -5, "stopping it is a state error");
	is_str(host_error_text, "VM 'life' is not running", "which says so");

	host_error_code = 0;
	is_int(ops->start(&ctx, &vm), 0, "start returns once the guest runs%s%s",
	       host_error_code ? ": " : "", host_error_code ? host_error_text : "");
	ops->state(&ctx, &vm, &st);
	is_int(st.state, VI_HV_RUNNING, "state: running");
	ok(st.pid > 0 && st.pid != getpid() && st.started_at > 0, "with the VMM's pid %d",
	   (int)st.pid);
	ok(vi_file_exists(pid) && stat(sock, &sb) == 0 && (sb.st_mode & 0777) == 0600,
	   "run/pid and run/control.sock (0600) exist");
	is_int(ops->start(&ctx, &vm), -5, "starting it again is a state error");
	is_int(ops->stats(&ctx, &vm, &stats), 0, "stats answer");
	ok(stats.vcpus == 1 && stats.memory == 64 << 20, "1 vCPU, 64 MiB");
	is_int(ops->set_vcpus(&ctx, &vm, 2), -VI_EUSAGE, "set_vcpus past the maximum: usage error");
	ok(strstr(host_error_text, "at most 1") != NULL, "naming the maximum: %s", host_error_text);
	is_int(ops->pause(&ctx, &vm), 0, "pause");
	ops->state(&ctx, &vm, &st);
	is_int(st.state, VI_HV_PAUSED, "state: paused");
	is_int(ops->resume(&ctx, &vm), 0, "resume");
	ops->state(&ctx, &vm, &st);
	is_int(st.state, VI_HV_RUNNING, "state: running again");

	ok(pipe(in) == 0 && write(in[1], "hello", 5) == 5, "typed input ready");
	con = (struct console_run){ ops, &ctx, &vm, in[0], out };
	pthread_create(&thread, NULL, console_thread, &con);
	/* Detach only once the echo is in the log, so the console has shown it too. */
	for (int i = 0; i < 1000; i++) {
		text = slurp(p.console_log);
		echoed = strstr(text, "hello") != NULL;
		free(text);
		if (echoed)
			break;
		usleep(10000);
	}
	ok(echoed, "the guest echoes what was typed");
	ok(write(in[1], "\x1dignored", 8) == 8, "the escape key typed");
	pthread_join(thread, NULL);
	is_int(con.ret, 0, "the console detaches at the escape");
	close(in[0]);
	close(in[1]);
	is_int(ops->stop(&ctx, &vm, 0, 20000), 0, "a graceful stop ends the VM");
	ops->state(&ctx, &vm, &st);
	is_int(st.state, VI_HV_STOPPED, "state: stopped");
	ok(!vi_file_exists(pid) && !vi_file_exists(sock), "run/pid and the socket are gone");
	text = slurp(p.console_log);
	ok(strstr(text, "reset: waiting") && strstr(text, "hello") &&
	   strstr(text, "reset: ctrl-alt-del"),
	   "console.log has the boot, the typed echo and Ctrl-Alt-Del");
	ok(!strstr(text, "ignored"), "nothing after the escape reached the guest");
	free(text);
	text = xcalloc(1, 4096);
	ok(pread(out, text, 4095, 0) > 0 && strstr(text, "reset: waiting") && strstr(text, "hello"),
	   "the console showed the guest's output and echo");
	free(text);
	close(out);

	setenv("HV_TEST_CMDLINE", "reset=never", 1);
	vm.cmdline = "reset=never";
	is_int(ops->start(&ctx, &vm), 0, "a guest deaf to Ctrl-Alt-Del starts");
	is_int(ops->stop(&ctx, &vm, 0, 300), 0, "a graceful stop falls back to force");
	ops->state(&ctx, &vm, &st);
	is_int(st.state, VI_HV_STOPPED, "state: stopped");
	is_int(ops->start(&ctx, &vm), 0, "it starts again");
	is_int(ops->stop(&ctx, &vm, VI_HV_STOP_FORCE, 0), 0, "a forced stop ends it at once");

	/* The VMM finds the kernel gone and says so through the start pipe. */
	char *kernel = xstrdup(getenv("HV_TEST_KERNEL"));
	vm.kernel = "/nonexistent";
	setenv("HV_TEST_KERNEL", vm.kernel, 1);
	is_int(ops->start(&ctx, &vm), -3, "starting with a missing kernel: not found");
	is_str(host_error_text, "kernel '/nonexistent' not found", "in the VMM's own words");
	ops->state(&ctx, &vm, &st);
	is_int(st.state, VI_HV_STOPPED, "and nothing runs");
	setenv("HV_TEST_KERNEL", kernel, 1);
	free(kernel);

	vi_write_file_atomic(pid, "999999999\n", 10, 0644);
	ops->state(&ctx, &vm, &st);
	is_int(st.state, VI_HV_CRASHED, "a pid file without its process means crashed");
	unlink(pid);
	free(sock);
	free(pid);
	vm_release(&p);
}


static void set_forward_env(unsigned port)
{
	char text[16];

	snprintf(text, sizeof(text), "%u", port);
	setenv("HV_TEST_FORWARD", text, 1);
}

/* The counter kernel saved while it counts, then restored paused and resumed: it goes on
 * from its count. It has a user-mode NIC it never looks at, whose forward comes back with
 * the restored VM. */
/* --- live migration between two VMs of this home, over a socket pair ----------------- */

struct receiving {
	const struct vi_hv_ops *ops;
	struct vi_hv_vm *vm;
	int fd, ret;
	char *error;
};

static void *receive_thread(void *arg)
{
	struct receiving *r = arg;
	struct vi_hv_ctx ctx = { .struct_size = sizeof(ctx), .host = &test_host };
	struct vi_hv_migrate m = { .struct_size = sizeof(m), .fd = r->fd, .live = 1 };

	r->ret = r->ops->migrate_recv(&ctx, r->vm, &m);
	if (r->ret < 0)
		r->error = xstrdup(vi_error_message());
	return NULL;
}

static void count_progress(void *opaque, const struct vi_hv_migrate_progress *p)
{
	unsigned *calls = opaque;

	*calls += p->struct_size == sizeof(*p) && p->phase != NULL;
}

static void test_migrate(const struct vi_hv_ops *ops)
{
	struct vi_hv_ctx ctx = { .struct_size = sizeof(ctx), .host = &test_host };
	struct vi_hv_state st = { .struct_size = sizeof(st) };
	struct vi_hv_migrate_result res = { .struct_size = sizeof(res) };
	char *kernel = guest("stamps"), *old_kernel = xstrdup(getenv("HV_TEST_KERNEL")), *out;
	struct vi_hv_vm a, b;
	struct vm_paths pa, pb;
	struct receiving r = { .ops = ops, .vm = &b };
	unsigned calls = 0, gen = 0;
	uint64_t rate = 0;
	pthread_t thread;
	int sv[2], ret;

	setenv("HV_TEST_KERNEL", kernel, 1);
	unsetenv("HV_TEST_FORWARD");
	unsetenv("HV_TEST_CMDLINE");
	vm_init(&a, &pa, "mig-src");
	vm_init(&b, &pb, "mig-dst");
	ret = ops->start(&ctx, &a);
	is_int(ret, 0, "a stamps VM starts%s%s", ret ? ": " : "", ret ? vi_error_message() : "");
	ok(wait_log(pa.console_log, "stamps: gen 2 ok"), "its guest makes generations");
	ret = ops->dirty_rate(&ctx, &a, 200, &rate);
	ok(ret == 0 && rate > 0, "dirty_rate measures %llu bytes/s",
	   (unsigned long long)rate);
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv);
	r.fd = sv[1];
	pthread_create(&thread, NULL, receive_thread, &r);
	{
		struct vi_hv_migrate m = { .struct_size = sizeof(m), .fd = sv[0], .live = 1,
					   .bandwidth = 20 << 20, .progress = count_progress,
					   .opaque = &calls, .result = &res };

		ret = ops->migrate_send(&ctx, &a, &m);
	}
	is_int(ret, 0, "migrate_send returns once the guest runs there%s%s", ret ? ": " : "",
	       ret ? vi_error_message() : "");
	pthread_join(thread, NULL);
	close(sv[0]);
	close(sv[1]);
	is_int(r.ret, 0, "migrate_recv returns once it runs%s%s", r.error ? ": " : "",
	       r.error ? r.error : "");
	ok(calls > 0, "progress was reported %u times", calls);
	ok(res.iterations >= 2 && res.bytes > 0 && res.total_ms >= res.downtime_ms,
	   "the result: %u iterations, %llu bytes, total %.0f ms, downtime %.0f ms",
	   res.iterations, (unsigned long long)res.bytes, res.total_ms, res.downtime_ms);
	ops->state(&ctx, &a, &st);
	is_int(st.state, VI_HV_STOPPED, "the source VM is gone");
	ops->state(&ctx, &b, &st);
	is_int(st.state, VI_HV_RUNNING, "the destination VM runs");
	out = slurp(pa.console_log);
	for (char *p = out; (p = strstr(p, "gen ")); p += 4)
		if (sscanf(p + 4, "%u", &gen) != 1)
			gen = 0;
	free(out);
	out = xasprintf("stamps: gen %u ok", gen + 2);
	ok(wait_log(pb.console_log, out), "the guest goes on there to generation %u", gen + 2);
	free(out);
	out = slurp(pb.console_log);
	ok(!strstr(out, "CORRUPT") && !strstr(out, "stamps: start"),
	   "with its memory whole, not booted again");
	free(out);
	is_int(ops->stop(&ctx, &b, VI_HV_STOP_FORCE, 0), 0, "the destination VM stops");
	setenv("HV_TEST_KERNEL", old_kernel, 1);
	vm_release(&pa);
	vm_release(&pb);
	free(r.error);
	free(old_kernel);
	free(kernel);
}

static void test_save_restore(const struct vi_hv_ops *ops)
{
	struct vi_hv_ctx ctx = { .struct_size = sizeof(ctx), .host = &test_host };
	struct vi_hv_state st = { .struct_size = sizeof(st) };
	char *kernel = guest("counter"), *old_kernel = xstrdup(getenv("HV_TEST_KERNEL")), *state,
	     *before, *after;
	struct vi_hv_vm vm;
	struct vm_paths p;
	unsigned port = free_port();
	char addr[64];
	int ret;

	setenv("HV_TEST_KERNEL", kernel, 1);
	setenv("HV_TEST_CMDLINE", "stop=60", 1);
	set_forward_env(port);
	vm_init(&vm, &p, "saved");
	state = xasprintf("%s/state", p.dir);
	ret = ops->start(&ctx, &vm);
	is_int(ret, 0, "the counter kernel starts%s%s", ret ? ": " : "", ret ? host_error_text : "");
	ok(wait_log(p.console_log, "count 5"), "and counts to 5");
	ok(port_in_use(port), "its forward listens");
	is_int(ops->nic_address(&ctx, &vm, 0, addr, sizeof(addr)), -VI_ENOTFOUND,
	       "a guest that never asked DHCP has no address");
	is_str(host_error_text, "the VMM refused 'nic_address': the guest has not taken a DHCP "
				"lease yet", "which says so");
	ret = ops->save(&ctx, &vm, state, 0);
	is_int(ret, 0, "save writes its state%s%s", ret ? ": " : "", ret ? host_error_text : "");
	ops->state(&ctx, &vm, &st);
	is_int(st.state, VI_HV_STOPPED, "and the VM is stopped");
	ok(!port_in_use(port), "its forward gone");
	before = slurp(p.console_log);
	ok(!strstr(before, "counter: done"), "before the guest's end");
	ret = ops->restore(&ctx, &vm, state, VI_HV_RUN_PAUSED);
	is_int(ret, 0, "restore starts it from the state%s%s", ret ? ": " : "",
	       ret ? host_error_text : "");
	ops->state(&ctx, &vm, &st);
	is_int(st.state, VI_HV_PAUSED, "paused, as asked");
	ok(port_in_use(port), "with its forward made again");
	is_int(ops->resume(&ctx, &vm), 0, "resume");
	ok(wait_log(p.console_log, "counter: done at 60"), "the guest counts to its end");
	after = slurp(p.console_log);
	ok(!strstr(after, "counter: start") && counts_in_order(before, after, 60),
	   "from where it was saved: both logs together count 1 to 60, each once");
	is_int(ops->restore(&ctx, &vm, "/nonexistent/state", 0), -VI_ENOTFOUND,
	       "restoring a missing state: not found");
	for (int i = 0; i < 100 && st.state != VI_HV_STOPPED; i++) {
		usleep(50000);
		ops->state(&ctx, &vm, &st);
	}
	unsetenv("HV_TEST_FORWARD");
	setenv("HV_TEST_KERNEL", old_kernel, 1);
	free(before);
	free(after);
	free(state);
	free(kernel);
	free(old_kernel);
	vm_release(&p);
}

/* The net kernel on a user-mode NIC: DHCP, a forward made at start and one made live. */
static void test_user_net(const struct vi_hv_ops *ops)
{
	struct vi_hv_ctx ctx = { .struct_size = sizeof(ctx), .host = &test_host };
	struct vi_hv_state st = { .struct_size = sizeof(st) };
	char *kernel = guest("net"), *old_kernel = xstrdup(getenv("HV_TEST_KERNEL")), *got, *want;
	unsigned port = free_port(), live = free_port(), taken;
	int busy = tcp_bound(true, &taken);
	struct vi_hv_forward f = { .struct_size = sizeof(f), .proto = VI_HV_TCP,
				   .host_addr = "127.0.0.1", .host_port = live, .guest_port = 80 };
	char addr[64] = "";
	struct vi_hv_vm vm;
	struct vm_paths p;
	int ret;

	ok(ops->features & VI_HV_F_USER_NET, "hv-%s offers user-mode networking", ops->name);
	setenv("HV_TEST_KERNEL", kernel, 1);
	unsetenv("HV_TEST_CMDLINE");
	set_forward_env(taken);
	vm_init(&vm, &p, "net");
	is_int(ops->start(&ctx, &vm), -VI_ESTATE, "a forward of a port in use fails the start");
	want = xasprintf("network card 0: host port %u is in use", taken);
	is_str(host_error_text, want, "naming the port");
	free(want);
	ops->state(&ctx, &vm, &st);
	is_int(st.state, VI_HV_STOPPED, "and leaves the VM stopped");
	vm_release(&p);

	set_forward_env(port);
	vm_init(&vm, &p, "net");
	ret = ops->start(&ctx, &vm);
	is_int(ret, 0, "the net kernel starts%s%s", ret ? ": " : "", ret ? host_error_text : "");
	ok(wait_log(p.console_log, "net: listening on port 80"), "it leases an address by DHCP");
	is_int(ops->nic_address(&ctx, &vm, 0, addr, sizeof(addr)), 0, "nic_address answers");
	is_str(addr, VI_HV_USER_GUEST_IP, "with the address slirp leased");
	is_int(ops->nic_address(&ctx, &vm, 1, addr, sizeof(addr)), -VI_ENOTFOUND,
	       "a NIC the VM does not have: not found");
	got = tcp_read_line(port);
	is_str(got, "hello from the guest\n", "the forward made at start reaches the guest");
	free(got);

	is_int(ops->forward_add(&ctx, &vm, 0, &f), 0, "forward_add on the running VM");
	got = tcp_read_line(live);
	is_str(got, "hello from the guest\n", "the live forward reaches the guest");
	free(got);
	is_int(ops->forward_add(&ctx, &vm, 0, &f), -VI_ESTATE, "adding it again: state error");
	want = xasprintf("the VMM refused 'forward_add': host port %u is in use", live);
	is_str(host_error_text, want, "naming the port");
	free(want);
	is_int(ops->forward_remove(&ctx, &vm, 0, &f), 0, "forward_remove");
	ok(!tcp_read_line(live), "the port is closed again");
	is_int(ops->forward_remove(&ctx, &vm, 0, &f), -VI_ESTATE, "removing it again: state error");
	want = xasprintf("the VMM refused 'forward_remove': host port %u is not forwarded", live);
	is_str(host_error_text, want, "which says so");
	free(want);
	f.host_port = taken;
	is_int(ops->forward_add(&ctx, &vm, 0, &f), -VI_ESTATE, "a live forward of a port in use");
	is_int(ops->stop(&ctx, &vm, VI_HV_STOP_FORCE, 0), 0, "stop");
	ok(!tcp_read_line(port), "the VM's forwards end with it");
	is_int(ops->nic_address(&ctx, &vm, 0, addr, sizeof(addr)), -VI_ESTATE,
	       "nic_address of a stopped VM: state error");
	close(busy);
	unsetenv("HV_TEST_FORWARD");
	setenv("HV_TEST_KERNEL", old_kernel, 1);
	free(kernel);
	free(old_kernel);
	vm_release(&p);
}

int main(int argc, char **argv)
{
	const struct vi_hv_ops *svm, *vtx, *mine, *other;
	struct vmm_kvm_info info;
	char vendor[13], *kernel;
	int amd;

	if (argc >= 7 && !strcmp(argv[3], "__vmm-run"))
		return vmm_run_main(argc, argv);
	if (!mkdtemp(home)) {
		ok(0, "cannot make a temporary directory: %s", strerror(errno));
		return done();
	}
	test_host.home = home;
	test_host.self_exe = vi_self_exe();
	kernel = guest("reset");
	setenv("HV_TEST_KERNEL", kernel, 1);
	free(kernel);
	svm = load_plugin("svm");
	vtx = load_plugin("vtx");
	ok(svm && vtx, "both plugins load");
	if (!svm || !vtx)
		return done();
	is_str(svm->name, "svm", "hv-svm is named svm");
	is_str(vtx->name, "vtx", "hv-vtx is named vtx");
	ok(svm->abi_version == VI_HV_ABI_VERSION && svm->struct_size == sizeof(*svm) &&
	   (svm->features & VI_HV_F_DIRECT_BOOT), "ABI version, size and features");
	ok(svm->set_vcpus && vtx->set_vcpus, "both add and remove vCPUs live");
	vmm_cpu_vendor(vendor);
	amd = !strcmp(vendor, "AuthenticAMD");
	if (!amd && strcmp(vendor, "GenuineIntel")) {
		skip("CPU vendor %s is neither AMD nor Intel", vendor);
		return done();
	}
	mine = amd ? svm : vtx;
	other = amd ? vtx : svm;
	if (vmm_kvm_probe(&info) < 0) {
		skip("no usable KVM: %s", vi_error_message());
		return done();
	}
	test_probe(mine, other, amd ? "Intel VT-x" : "AMD SVM", vendor);
	test_define(mine);
	test_lifecycle(mine);
	test_save_restore(mine);
	test_migrate(mine);
	test_user_net(mine);
	vi_rm_rf(home);
	return done();
}
