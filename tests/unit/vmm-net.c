/* lib/vmm's user-mode networking in this process (so that the sanitizers see libslirp's
 * side too): the net test kernel leases its address and serves port 80 through
 * forwards made by vmm_new() and live; forwards that cannot be made fail as promised. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "error.h"
#include "tap.h"
#include "util.h"
#include "vmm/vmm.h"
#include "vmm-test.h"

struct session {
	struct vmm *vm;
	int console;
	unsigned port;
};

/* Another thread's view of the running VM: the lease, the forwards. Ends the VM. */
static void *session_run(void *arg)
{
	struct session *s = arg;
	unsigned live = free_port();
	struct vmm_forward f = { .host_port = live, .guest_port = 80 };
	char addr[64] = "", *got, *want, *console = xasprintf("/proc/self/fd/%d", s->console);

	ok(wait_log(console, "net: listening on port 80"), "the guest leases an address");
	free(console);
	is_int(vmm_nic_address(s->vm, 0, addr, sizeof(addr)), 0, "vmm_nic_address answers");
	is_str(addr, "10.0.2.15", "with the leased address");
	got = tcp_read_line(s->port);
	is_str(got, "hello from the guest\n", "a forward made at start reaches port 80");
	free(got);
	is_int(vmm_nic_forward(s->vm, 0, &f, true), 0, "a forward added live");
	got = tcp_read_line(live);
	is_str(got, "hello from the guest\n", "reaches it too");
	free(got);
	is_int(vmm_nic_forward(s->vm, 0, &f, true), -VI_ESTATE, "the same port twice: state error");
	want = xasprintf("host port %u is in use", live);
	is_str(vi_error_message(), want, "naming the port");
	free(want);
	is_int(vmm_nic_forward(s->vm, 0, &f, false), 0, "removed");
	ok(!port_in_use(live), "its port is free");
	is_int(vmm_nic_forward(s->vm, 0, &f, false), -VI_ESTATE, "removed again: state error");
	is_int(vmm_nic_forward(s->vm, 1, &f, true), -VI_ENOTFOUND, "a NIC that is not there");
	vmm_request_exit(s->vm, VMM_EXIT_STOPPED);
	return NULL;
}

/* vmm_new() with one user NIC forwarding f; returns its error, with no VM left. */
static int new_with_forward(const char *kernel, const struct vmm_forward *f)
{
	struct vmm_nic nic = { .mac = { 0x52, 0x54, 0, 1, 2, 3 }, .user = true, .forwards = f,
			       .nforwards = 1 };
	struct vmm_config cfg = { .kernel = kernel, .cpus = 1, .memory = 64 << 20,
				  .console_fd = -1, .nics = &nic, .nnics = 1 };
	struct vmm *vm = NULL;
	int ret = vmm_new(&cfg, &vm);

	vmm_free(vm);
	return ret;
}

static void test_refused(const char *kernel)
{
	unsigned taken;
	int busy = tcp_bound(true, &taken);
	struct vmm_forward f = { .host_port = taken, .guest_port = 80 };
	char *want;

	is_int(new_with_forward(kernel, &f), -VI_ESTATE, "a forward of a port in use: state error");
	want = xasprintf("network card 0: host port %u is in use", taken);
	is_str(vi_error_message(), want, "naming the port");
	free(want);
	f.host_addr = "0.0.0.0";
	is_int(new_with_forward(kernel, &f), -VI_ESTATE, "on every address: state error too");
	want = xasprintf("network card 0: host port 0.0.0.0:%u is in use", taken);
	is_str(vi_error_message(), want, "naming the address and port");
	free(want);
	f.host_addr = "localhost";
	is_int(new_with_forward(kernel, &f), -VI_EUSAGE, "a name where an address goes");
	is_str(vi_error_message(), "network card 0: 'localhost' is not an IPv4 address",
	       "which says so");
	close(busy);
}

int main(void)
{
	char *kernel = guest("net");
	struct session s = { .console = memfd_create("console", MFD_CLOEXEC), .port = free_port() };
	struct vmm_forward f = { .host_addr = "127.0.0.1", .host_port = s.port, .guest_port = 80 };
	struct vmm_nic nic = { .mac = { 0x52, 0x54, 0, 1, 2, 3 }, .user = true, .forwards = &f,
			       .nforwards = 1 };
	struct vmm_config cfg = { .kernel = kernel, .cpus = 1, .memory = 64 << 20,
				  .console_fd = s.console, .nics = &nic, .nnics = 1 };
	struct vmm_kvm_info info;
	pthread_t thread;
	int ret;

	if (vmm_kvm_probe(&info) < 0) {
		skip("no usable KVM: %s", vi_error_message());
		return done();
	}
	test_refused(kernel);
	ret = boot_vm(&cfg, &s.vm);
	if (ret == 0)
		ret = vmm_start(s.vm);
	is_int(ret, 0, "the net kernel runs%s%s", ret ? ": " : "", ret ? vi_error_message() : "");
	if (ret == 0) {
		pthread_create(&thread, NULL, session_run, &s);
		is_int(vmm_wait(s.vm), VMM_EXIT_STOPPED, "until it is stopped");
		pthread_join(thread, NULL);
	}
	ok(port_in_use(s.port), "its forward listens while the VM is there");
	vmm_free(s.vm);
	ok(!port_in_use(s.port), "and is gone with it");
	close(s.console);
	free(kernel);
	return done();
}
