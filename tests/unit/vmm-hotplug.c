/* vCPU hotplug on the real /dev/kvm: the cpu-hotplug test kernel, booted with one vCPU
 * of three at most, sees CPUs added and removed through the control socket as Linux's
 * ACPI driver would; more than the maximum is refused naming it; a saved state brings
 * the added CPU back, the CPU ejected before the save can come again, and a migration
 * takes all three along; a state without the hotplug section still restores. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "error.h"
#include "state.h"
#include "tap.h"
#include "util.h"
#include "vmm/control.h"
#include "vmm/vmm.h"
#include "vmm-test.h"

#define MiB (1024ull * 1024)

static char tmpdir[] = "/tmp/vmm-hotplug-XXXXXX";

struct session {
	struct vmm_config cfg;
	int state_fd; /* restore from it; -1: boot */
	char *sock;
	void *(*client)(void *);
	struct vmm *vm;
	int reason;
};

/* Waits (up to 60 s) until the console holds `text`. */
static bool console_has(int console, const char *text)
{
	for (int i = 0; i < 1200; i++) {
		char *out = read_fd(console);
		bool found = strstr(out, text) != NULL;

		free(out);
		if (found)
			return true;
		usleep(50000);
	}
	return false;
}

/* set_vcpus over a new connection; the reply in *reply (the caller puts it). */
static int set_vcpus(const struct session *s, unsigned n, struct json_object **reply)
{
	struct json_object *args = json_object_new_object();
	int fd = connect_to(s->sock), ret;

	json_object_object_add(args, "vcpus", json_object_new_int64(n));
	ret = vmm_control_call(fd, "set_vcpus", args, reply);
	close(fd);
	return ret;
}

static int64_t stats_vcpus(const struct session *s)
{
	struct json_object *reply = NULL;
	int fd = connect_to(s->sock);
	int64_t n = vmm_control_call(fd, "stats", NULL, &reply) == 0
			    ? int_member(reply, "vcpus") : -1;

	json_object_put(reply);
	close(fd);
	return n;
}

/* Grows to n vCPUs and waits for CPU `cpu` to say it is online. */
static void plug(const struct session *s, unsigned n, unsigned cpu)
{
	struct json_object *reply = NULL;
	char *online = xasprintf("hotplug: cpu %u online", cpu);
	int ret = set_vcpus(s, n, &reply);

	is_int(ret, 0, "set_vcpus %u%s%s", n, ret ? ": " : "", ret ? vi_error_message() : "");
	is_int(int_member(reply, "vcpus"), n, "the reply says %u present", n);
	is_int(int_member(reply, "max_vcpus"), 3, "of 3 at most");
	ok(console_has(s->cfg.console_fd, online), "the guest brings CPU %u online", cpu);
	json_object_put(reply);
	free(online);
}

static void command(const struct session *s, const char *cmd, struct json_object *args)
{
	int fd = connect_to(s->sock), ret = vmm_control_call(fd, cmd, args, NULL);

	is_int(ret, 0, "%s%s%s", cmd, ret ? ": " : "", ret ? vi_error_message() : "");
	close(fd);
}

static void *grow_client(void *arg)
{
	struct session *s = arg;
	struct json_object *reply = NULL, *args = json_object_new_object();
	char *path = xasprintf("%s/state", tmpdir);
	int ret;

	ok(console_has(s->cfg.console_fd, "hotplug: ready for 3 cpus"), "the guest is up");
	is_int(stats_vcpus(s), 1, "one vCPU at first");
	plug(s, 2, 1);
	ok(console_has(s->cfg.console_fd, "hotplug: cpu 1 alive 1"), "CPU 1 runs and reports");
	plug(s, 3, 2);

	ret = set_vcpus(s, 2, &reply);
	is_int(ret, 0, "set_vcpus 2");
	is_int(int_member(reply, "vcpus") - int_member(reply, "removing"), 2,
	       "the reply counts the CPU leaving apart");
	json_object_put(reply);
	ok(console_has(s->cfg.console_fd, "hotplug: cpu 2 ejected"), "the guest ejects CPU 2");
	is_int(stats_vcpus(s), 2, "two vCPUs then");

	reply = NULL;
	ret = set_vcpus(s, 4, &reply);
	is_int(ret, -VI_EUSAGE, "four vCPUs are refused");
	ok(strstr(vi_error_message(), "at most 3") != NULL, "naming the maximum: %s",
	   vi_error_message());
	is_int(stats_vcpus(s), 2, "and nothing changed");

	json_object_object_add(args, "path", json_object_new_string(path));
	command(s, "save", args);
	free(path);
	return NULL;
}

/* The receiving end of a migration: the VM it gets runs until the CPUs it has are
 * checked. */
struct receiver {
	struct vmm_config cfg;
	int fd;
	unsigned present;
	bool cpu2_alive;
};

static void *receiver_thread(void *arg)
{
	struct receiver *r = arg;
	struct vmm_vcpus_info info = { 0 };
	struct vmm *vm = NULL;
	int ret = vmm_new(&r->cfg, &vm);

	if (ret == 0)
		ret = vmm_migrate_recv(vm, r->fd, 0, NULL);
	if (ret == 0)
		ret = vmm_migrate_commit(vm, r->fd);
	if (ret == 0)
		ret = vmm_start(vm);
	if (ret == 0)
		ret = vmm_migrate_running(r->fd);
	if (ret == 0) {
		vmm_get_vcpus(vm, &info);
		r->present = info.present;
		r->cpu2_alive = console_has(r->cfg.console_fd, "hotplug: cpu 2 alive");
	} else {
		printf("# receiver: %s\n", vi_error_message());
	}
	close(r->fd);
	vmm_request_exit(vm, VMM_EXIT_STOPPED);
	vmm_free(vm);
	return NULL;
}

/* Migrates the session's VM to a new one of the same configuration. */
static void migrate(struct session *s)
{
	struct receiver r = { .cfg = s->cfg };
	struct vmm_migrate_opts opts = { 0 };
	struct vmm_migration m = { 0 };
	struct vi_state_writer w = { 0 };
	pthread_t thread;
	int fds[2], ret;

	r.cfg.console_fd = memfd_create("dst", MFD_CLOEXEC);
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds);
	r.fd = fds[1];
	pthread_create(&thread, NULL, receiver_thread, &r);
	m.w = &w;
	ret = vmm_migrate_send(s->vm, fds[0], &opts, &m);
	is_int(ret, 0, "the VM migrates%s%s", ret ? ": " : "", ret ? vi_error_message() : "");
	close(fds[0]);
	pthread_join(thread, NULL);
	is_int(r.present, 3, "the migrated VM has three vCPUs");
	ok(r.cpu2_alive, "and CPU 2 reports there");
	close(r.cfg.console_fd);
}

static void *restored_client(void *arg)
{
	struct session *s = arg;
	struct json_object *args = json_object_new_object();

	is_int(stats_vcpus(s), 2, "the restored VM has two vCPUs");
	ok(console_has(s->cfg.console_fd, "hotplug: cpu 1 alive"), "CPU 1 goes on reporting");
	plug(s, 3, 2);
	migrate(s);
	json_object_object_add(args, "force", json_object_new_boolean(true));
	command(s, "stop", args);
	return NULL;
}

/* A state as one written before the hotplug section existed: its section's id turned
 * into one no reader knows (optional, so skipped). False when there is no section. */
static bool hide_hotplug_section(const char *from, const char *to)
{
	/* id 0x10b, version 1, flags optional, instance 0, then the crc and length 260 */
	static const uint8_t head[12] = { 0x0b, 0x01, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0 };
	static const uint8_t length[8] = { 0x04, 0x01, 0, 0, 0, 0, 0, 0 };
	char *data = NULL;
	size_t len = 0, found = 0;

	if (vi_read_file(from, &data, &len) < 0)
		return false;
	for (size_t i = 0; i + 24 <= len; i++)
		if (!memcmp(data + i, head, sizeof(head)) && !memcmp(data + i + 16, length, 8)) {
			data[i + 1] = 0x01;
			data[i] = (char)0xff; /* 0x1ff */
			found++;
		}
	if (found == 1)
		vi_write_file_atomic(to, data, len, 0600);
	free(data);
	return found == 1;
}

static void *old_state_client(void *arg)
{
	struct session *s = arg;
	struct json_object *args = json_object_new_object();

	is_int(stats_vcpus(s), 3, "without the hotplug section every vCPU saved is present");
	json_object_object_add(args, "force", json_object_new_boolean(true));
	command(s, "stop", args);
	return NULL;
}

/* Boots (or restores) cfg with a control socket and runs s->client beside it. */
static void run_session(struct session *s)
{
	struct vmm_control *ctl = NULL;
	struct vmm *vm = NULL;
	pthread_t thread;
	int ret;

	s->cfg.console_fd = memfd_create("console", MFD_CLOEXEC);
	if (s->state_fd < 0) {
		ret = boot_vm(&s->cfg, &vm);
	} else {
		ret = vmm_new(&s->cfg, &vm);
		if (ret == 0)
			ret = vmm_restore(vm, s->state_fd, 0);
	}
	if (ret == 0)
		ret = vmm_control_open(vm, s->sock, "test", &ctl);
	if (ret == 0)
		ret = vmm_start(vm);
	is_int(ret, 0, "the VM runs%s%s", ret ? ": " : "", ret ? vi_error_message() : "");
	if (ret == 0) {
		s->vm = vm;
		pthread_create(&thread, NULL, s->client, s);
		s->reason = vmm_wait(vm);
		if (s->reason == VMM_EXIT_ERROR)
			printf("# vmm: %s\n", vmm_exit_message(vm));
		vmm_control_close(ctl);
		pthread_join(thread, NULL);
	}
	vmm_free(vm);
	close(s->cfg.console_fd);
}

int main(void)
{
	char *kernel = guest("cpu-hotplug"), *state, *old;
	struct session s = {
		.cfg = { .kernel = kernel, .cmdline = "max_cpus=3", .cpus = 1, .max_cpus = 3,
			 .memory = 64 * MiB },
		.state_fd = -1,
		.client = grow_client,
	};

	if (access("/dev/kvm", R_OK | W_OK) != 0) {
		skip("no /dev/kvm");
		return done();
	}
	if (!mkdtemp(tmpdir))
		return 1;
	s.sock = xasprintf("%s/control.sock", tmpdir);
	state = xasprintf("%s/state", tmpdir);
	old = xasprintf("%s/state-old", tmpdir);
	run_session(&s);
	is_int(s.reason, VMM_EXIT_STOPPED, "the save stops the VM");

	ok(hide_hotplug_section(state, old), "the state has one hotplug section");
	s.state_fd = open(state, O_RDONLY | O_CLOEXEC);
	ok(s.state_fd >= 0, "the state was written");
	s.client = restored_client;
	if (s.state_fd >= 0) {
		unlink(s.sock);
		run_session(&s);
		close(s.state_fd);
	}
	s.state_fd = open(old, O_RDONLY | O_CLOEXEC);
	s.client = old_state_client;
	if (s.state_fd >= 0) {
		unlink(s.sock);
		run_session(&s);
		close(s.state_fd);
	}
	sh("rm -rf %s", tmpdir);
	free(state);
	free(old);
	free(s.sock);
	free(kernel);
	return done();
}
