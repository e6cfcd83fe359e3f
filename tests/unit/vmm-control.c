/* The control socket against a real VM: status, stats, pause and resume, the console
 * stream both ways, graceful and forced stop, socket mode and long paths. */
#include <errno.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "tap.h"
#include "util.h"
#include "vmm/control.h"
#include "vmm/vmm.h"
#include "vmm-test.h"

static char tmpdir[] = "/tmp/vmm-control-XXXXXX";

/* Reads from fd until `want` shows up in what came; false on EOF or timeout. */
static bool read_until(int fd, const char *want)
{
	char buf[8192];
	size_t len = 0;

	while (len < sizeof(buf) - 1) {
		ssize_t n = read(fd, buf + len, sizeof(buf) - 1 - len);

		if (n <= 0)
			return false;
		len += (size_t)n;
		buf[len] = '\0';
		if (strstr(buf, want))
			return true;
	}
	return false;
}

static bool wait_eof(int fd)
{
	char c;

	for (;;) {
		ssize_t n = read(fd, &c, 1);

		if (n == 0)
			return true;
		if (n < 0)
			return false;
	}
}

struct session {
	const char *path;
	bool force;
};

static void *client(void *arg)
{
	struct session *s = arg;
	struct json_object *reply = NULL, *args;
	int fd = connect_to(s->path), con, stopper;

	ok(fd >= 0, "a client connects");
	/* First the console, so the guest has run a while when we look at it. */
	con = connect_to(s->path);
	is_int(vmm_control_call(con, "console", NULL, NULL), 0, "console answers");
	ok(read_until(con, "reset: waiting for 'q' or Ctrl-Alt-Del"),
	   "the console shows what the guest printed");
	is_int(vmm_control_call(fd, "status", NULL, &reply), 0, "status answers");
	is_str(str_member(reply, "state"), "running", "the VM is running");
	is_str(str_member(reply, "backend"), "test", "status names the backend");
	is_int(int_member(reply, "pid"), getpid(), "status gives the VMM's pid");
	is_int(int_member(reply, "vcpus"), 1, "status counts the vCPUs");
	json_object_put(reply);

	is_int(vmm_control_call(fd, "pause", NULL, &reply), 0, "pause answers");
	is_str(str_member(reply, "state"), "paused", "the VM is paused");
	json_object_put(reply);
	is_int(vmm_control_call(fd, "stats", NULL, &reply), 0, "stats answers");
	ok(int_member(reply, "exits") > 0 && int_member(reply, "memory") == 64 << 20,
	   "stats count exits and memory");
	json_object_put(reply);
	is_int(vmm_control_call(fd, "resume", NULL, &reply), 0, "resume answers");
	is_str(str_member(reply, "state"), "running", "the VM runs again");
	json_object_put(reply);
	is_int(vmm_control_call(fd, "reboot", NULL, NULL), -VI_EFAIL, "an unknown command fails");
	is_str(vi_error_message(), "the VMM refused 'reboot': unknown command 'reboot'",
	       "and says which");

	ok(send(con, "typed", 5, MSG_NOSIGNAL) == 5 && read_until(con, "typed"),
	   "keys typed on the console come back as the guest's echo");

	stopper = connect_to(s->path);
	args = json_object_new_object();
	json_object_object_add(args, "force", json_object_new_boolean(s->force));
	is_int(vmm_control_call(stopper, "stop", args, NULL), 0, "%s stop answers",
	       s->force ? "forced" : "graceful");
	if (!s->force)
		ok(read_until(con, "reset: ctrl-alt-del"), "a graceful stop presses Ctrl-Alt-Del");
	ok(wait_eof(stopper) && wait_eof(con) && wait_eof(fd),
	   "every connection sees the end of the VM");
	ok(!vi_file_exists(s->path), "the socket is gone by then");
	close(stopper);
	close(con);
	close(fd);
	return NULL;
}

static void session(const char *dir, bool force)
{
	struct vmm_config cfg = { .cpus = 1, .memory = 64 << 20, .console_fd = -1,
				  .cmdline = "reset=wait" };
	struct session s = { .force = force };
	struct vmm_control *ctl = NULL;
	struct vmm *vm = NULL;
	struct stat st;
	pthread_t thread;
	char *kernel = guest("reset");
	char *path = xasprintf("%s/control.sock", dir);
	int ret;

	cfg.kernel = kernel;
	s.path = path;
	ret = boot_vm(&cfg, &vm);
	is_int(ret, 0, "VM created%s%s", ret ? ": " : "", vi_error_message());
	if (ret < 0)
		goto out;
	ret = vmm_control_open(vm, path, "test", &ctl);
	is_int(ret, 0, "control socket open%s%s", ret ? ": " : "", vi_error_message());
	if (ret < 0)
		goto out;
	ok(stat(path, &st) == 0 && S_ISSOCK(st.st_mode) && (st.st_mode & 0777) == 0600,
	   "the socket has mode 0600");
	is_int(vmm_start(vm), 0, "VM started");
	pthread_create(&thread, NULL, client, &s);
	is_int(vmm_wait(vm), force ? VMM_EXIT_STOPPED : VMM_EXIT_RESET, "the VM ends as %s",
	       force ? "stopped" : "a reset");
	vmm_control_close(ctl);
	pthread_join(thread, NULL);
out:
	vmm_free(vm);
	free(kernel);
	free(path);
}

int main(void)
{
	struct vmm_kvm_info info;
	char *deep, *sock;
	int fd;

	if (!mkdtemp(tmpdir)) {
		ok(0, "cannot make a temporary directory: %s", strerror(errno));
		return done();
	}
	if (vmm_kvm_probe(&info) < 0) {
		skip("no usable KVM: %s", vi_error_message());
		rmdir(tmpdir);
		return done();
	}
	session(tmpdir, false);
	/* Past the 108 bytes of sun_path. */
	deep = xasprintf("%s/%0120d", tmpdir, 0);
	ok(mkdir(deep, 0700) == 0, "a directory with a long path");
	session(deep, true);
	sock = xasprintf("%s/control.sock", deep);
	is_int(vmm_control_connect(sock, &fd), -VI_ESTATE, "nobody listens once the VM is gone");
	rmdir(deep);
	free(sock);
	free(deep);
	rmdir(tmpdir);
	return done();
}
