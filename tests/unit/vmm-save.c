/* Saving a running VM through the control socket and restoring it into a new one: the
 * counter test kernel goes on from the count it was at. A save into a FIFO whose reader
 * holds back shows the job in status meanwhile, refuses a second job, and its stream
 * restores a VM from a pipe. */
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "tap.h"
#include "util.h"
#include "vmm/control.h"
#include "vmm/vmm.h"
#include "vmm-test.h"

#define MiB (1024ull * 1024)

static char tmpdir[] = "/tmp/vmm-save-XXXXXX";

struct session {
	struct vmm_config cfg;
	char *sock;
	void *(*client)(void *);
	int reason;
	char *output;
};

/* Waits (up to 30 s) until the guest has counted to `n`. */
static bool wait_count(int console, unsigned n)
{
	return console_wait(console, "count ", "", n, 600);
}

static bool wait_eof(int fd)
{
	char c;

	while (read(fd, &c, 1) > 0)
		;
	return true;
}

static struct session *current;

/* Boots cfg with a control socket, runs s->client beside it, and keeps the console. */
static void run_session(struct session *s)
{
	struct vmm_control *ctl = NULL;
	struct vmm *vm = NULL;
	pthread_t thread;
	int ret;

	s->cfg.console_fd = memfd_create("console", MFD_CLOEXEC);
	current = s;
	ret = boot_vm(&s->cfg, &vm);
	if (ret == 0)
		ret = vmm_control_open(vm, s->sock, "test", &ctl);
	if (ret == 0)
		ret = vmm_start(vm);
	is_int(ret, 0, "a counter VM runs%s%s", ret ? ": " : "", ret ? vi_error_message() : "");
	if (ret == 0) {
		pthread_create(&thread, NULL, s->client, s);
		s->reason = vmm_wait(vm);
		vmm_control_close(ctl);
		pthread_join(thread, NULL);
	}
	vmm_free(vm);
	s->output = read_fd(s->cfg.console_fd);
	close(s->cfg.console_fd);
}

/* Restores the state in fd into a new VM of cfg and runs it to its end. */
static int restore_and_run(const struct vmm_config *base, int fd, char **output, int *reason)
{
	struct vmm_config cfg = *base;
	struct vmm *vm = NULL;
	int ret;

	cfg.console_fd = memfd_create("console", MFD_CLOEXEC);
	ret = vmm_new(&cfg, &vm);
	if (ret == 0)
		ret = vmm_restore(vm, fd, 0);
	if (ret == 0)
		ret = vmm_start(vm);
	if (ret == 0)
		*reason = vmm_wait(vm);
	if (*reason == VMM_EXIT_ERROR)
		printf("# vmm: %s\n", vmm_exit_message(vm));
	vmm_free(vm);
	*output = read_fd(cfg.console_fd);
	close(cfg.console_fd);
	return ret;
}

/* --- a save that stops the VM -------------------------------------------------------- */

static void *save_client(void *arg)
{
	struct session *s = arg;
	struct json_object *args = json_object_new_object(), *reply = NULL;
	char *path = xasprintf("%s/state", tmpdir);
	int fd = connect_to(s->sock), ret;

	ok(wait_count(s->cfg.console_fd, 5), "the guest counts to 5");
	json_object_object_add(args, "path", json_object_new_string(path));
	json_object_object_add(args, "live", json_object_new_boolean(false));
	ret = vmm_control_call(fd, "save", args, &reply);
	is_int(ret, 0, "save answers when it is done%s%s", ret ? ": " : "",
	       ret ? vi_error_message() : "");
	ok(int_member(reply, "written") > 4096, "having written %lld bytes",
	   (long long)int_member(reply, "written"));
	ok(wait_eof(fd), "then the VM stops");
	json_object_put(reply);
	close(fd);
	free(path);
	return NULL;
}

static void test_save_restore(void)
{
	struct session s = {
		.cfg = { .kernel = guest("counter"), .cmdline = "stop=40", .cpus = 1,
			 .memory = 64 * MiB },
		.sock = xasprintf("%s/control.sock", tmpdir),
		.client = save_client,
	};
	char *path = xasprintf("%s/state", tmpdir), *after = NULL;
	int fd, reason = 0, ret;
	struct stat st;

	run_session(&s);
	is_int(s.reason, VMM_EXIT_STOPPED, "the saved VM ends as stopped");
	ok(stat(path, &st) == 0 && st.st_size > 0 && (st.st_mode & 0777) == 0600,
	   "the state file is there, mode 0600");
	ok(!has_line(s.output, "counter: done at 40"), "the first VM did not count to the end");
	fd = open(path, O_RDONLY | O_CLOEXEC);
	ret = restore_and_run(&s.cfg, fd, &after, &reason);
	is_int(ret, 0, "vmm_new and vmm_restore make a new VM of it%s%s", ret ? ": " : "",
	       ret ? vi_error_message() : "");
	is_int(reason, VMM_EXIT_RESET, "which runs to the guest's end");
	ok(!strstr(after, "counter: start"), "the restored guest does not start again");
	ok(has_line(after, "counter: done at 40"), "it counts to 40");
	ok(counts_in_order(s.output, after, 40),
	   "from where it was: both consoles together count 1 to 40, each once");
	if (!counts_in_order(s.output, after, 40))
		printf("# before:\n%s\n# after:\n%s\n", s.output, after);
	close(fd);

	/* A state is only for a VM of the same shape. */
	s.cfg.memory = 128 * MiB;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	free(after);
	ret = restore_and_run(&s.cfg, fd, &after, &reason);
	is_int(ret, -VI_EUSAGE, "a VM with other memory refuses the state");
	is_str(vi_error_message(),
	       "the state is of a VM with 1 vCPUs (1 at most) and 64M of memory (64M at most); "
	       "this one has 1 (1) and 128M (128M)",
	       "and says why");
	close(fd);
	free(after);
	free(s.output);
	free((char *)s.cfg.kernel);
	free(s.sock);
	free(path);
}

/* --- a live save into a FIFO ----------------------------------------------------------- */

static int fifo_copy = -1; /* what the FIFO carried */

static void *fifo_client(void *arg)
{
	struct session *s = arg;
	struct json_object *args = json_object_new_object(), *reply = NULL, *job;
	char *fifo = xasprintf("%s/fifo", tmpdir), buf[65536];
	int saver = connect_to(s->sock), asker = connect_to(s->sock), reader;
	ssize_t n;

	ok(wait_count(s->cfg.console_fd, 3), "the guest counts to 3");
	mkfifo(fifo, 0600);
	/* The reader first, with the smallest pipe: the job fills it and waits. */
	reader = open(fifo, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
	fcntl(reader, F_SETPIPE_SZ, 4096);
	json_object_object_add(args, "path", json_object_new_string(fifo));
	json_object_object_add(args, "live", json_object_new_boolean(true));
	json_object_object_add(args, "cmd", json_object_new_string("save"));
	is_int(vmm_control_send(saver, args), 0, "a live save into a FIFO is asked for");
	json_object_put(args);
	for (int i = 0; i < 100; i++) {
		json_object_put(reply);
		reply = NULL;
		if (vmm_control_call(asker, "status", NULL, &reply) == 0 &&
		    json_object_object_get_ex(reply, "job", &job) &&
		    int_member(job, "written") > 0)
			break;
		usleep(20000);
	}
	ok(reply && json_object_object_get_ex(reply, "job", &job),
	   "status answers while the save runs, and shows the job");
	if (reply && json_object_object_get_ex(reply, "job", &job)) {
		is_str(str_member(job, "name"), "save", "the job is the save");
		is_str(str_member(job, "path"), fifo, "into the FIFO");
		ok(int_member(job, "written") > 0 && int_member(job, "total") == 64 << 20 &&
			   int_member(job, "done") <= int_member(job, "total"),
		   "with its progress: %lld bytes written, %lld of %lld bytes of memory",
		   (long long)int_member(job, "written"), (long long)int_member(job, "done"),
		   (long long)int_member(job, "total"));
		is_str(str_member(reply, "state"), "paused", "the VM is paused meanwhile");
	}
	json_object_put(reply);
	args = json_object_new_object();
	json_object_object_add(args, "path", json_object_new_string(fifo));
	is_int(vmm_control_call(asker, "save", args, NULL), -VI_EFAIL,
	       "a second save meanwhile is refused");
	is_str(vi_error_message(),
	       "the VMM refused 'save': cannot 'save' while the 'save' job runs",
	       "and the message says why");
	is_int(vmm_control_call(asker, "resume", NULL, NULL), -VI_EFAIL, "so is resume");

	/* Now read it all: the job ends, closing its end. */
	fcntl(reader, F_SETFL, 0);
	while ((n = read(reader, buf, sizeof(buf))) > 0)
		if (write(fifo_copy, buf, (size_t)n) != n)
			break;
	close(reader);
	is_int(vmm_control_recv(saver, &reply), 0, "the save's reply comes");
	ok(json_object_object_get_ex(reply, "ok", &job) && json_object_get_boolean(job) &&
		   int_member(reply, "written") == lseek(fifo_copy, 0, SEEK_END),
	   "it succeeded, having written what the FIFO carried (%lld bytes)",
	   (long long)int_member(reply, "written"));
	json_object_put(reply);
	is_int(vmm_control_call(asker, "status", NULL, &reply), 0, "status answers after it");
	ok(!json_object_object_get_ex(reply, "job", NULL) &&
		   !strcmp(str_member(reply, "state"), "running"),
	   "with no job, and the VM running on: the save was live");
	json_object_put(reply);
	ok(wait_eof(asker), "the VM counts on to its end");
	close(asker);
	close(saver);
	unlink(fifo);
	free(fifo);
	return NULL;
}

struct feeder {
	int from, to;
};

static void *feed(void *arg)
{
	struct feeder *f = arg;
	char buf[65536];
	ssize_t n;
	off_t at = 0;

	while ((n = pread(f->from, buf, sizeof(buf), at)) > 0 && write(f->to, buf, (size_t)n) == n)
		at += n;
	close(f->to);
	return NULL;
}

static void test_live_fifo(void)
{
	struct session s = {
		.cfg = { .kernel = guest("counter"), .cmdline = "stop=30", .cpus = 1,
			 .memory = 64 * MiB },
		.sock = xasprintf("%s/control.sock", tmpdir),
		.client = fifo_client,
	};
	char *after = NULL;
	int pipefd[2], reason = 0, ret;
	struct feeder f;
	pthread_t th;

	fifo_copy = memfd_create("fifo-copy", MFD_CLOEXEC);
	run_session(&s);
	is_int(s.reason, VMM_EXIT_RESET, "the VM saved live ran on to its end");
	ok(has_line(s.output, "counter: done at 30"), "counting to 30");
	/* The stream as it came out of the FIFO, into a new VM through a pipe. */
	if (pipe2(pipefd, O_CLOEXEC) == 0) {
		f = (struct feeder){ fifo_copy, pipefd[1] };
		pthread_create(&th, NULL, feed, &f);
		ret = restore_and_run(&s.cfg, pipefd[0], &after, &reason);
		pthread_join(th, NULL);
		close(pipefd[0]);
		is_int(ret, 0, "the FIFO's stream restores a new VM from a pipe%s%s",
		       ret ? ": " : "", ret ? vi_error_message() : "");
		is_int(reason, VMM_EXIT_RESET, "which runs to the guest's end");
		ok(!strstr(after, "counter: start") && has_line(after, "counter: done at 30") &&
			   !has_line(after, "count 1") && !has_line(after, "count 2"),
		   "going on from the count it was saved at");
		free(after);
	}
	close(fifo_copy);
	free(s.output);
	free((char *)s.cfg.kernel);
	free(s.sock);
}

int main(void)
{
	struct vmm_kvm_info info;

	if (!mkdtemp(tmpdir)) {
		ok(0, "cannot make a temporary directory: %s", strerror(errno));
		return done();
	}
	if (vmm_kvm_probe(&info) < 0) {
		skip("no usable KVM: %s", vi_error_message());
		rmdir(tmpdir);
		return done();
	}
	test_save_restore();
	test_live_fifo();
	sh("rm -rf %s", tmpdir);
	return done();
}
