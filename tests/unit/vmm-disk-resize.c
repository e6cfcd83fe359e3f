/* A running VM's disk grows live: the image (qcow2 and raw) grows, the guest sees the new
 * capacity on the configuration interrupt and can use the new last sector, its data
 * stays, qemu-img accepts the grown qcow2, a state saved after it restores onto the grown
 * image, and shrinking is refused with nothing changed. */
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
#include "image/image.h"
#include "tap.h"
#include "util.h"
#include "vmm/control.h"
#include "vmm/vmm.h"
#include "vmm-test.h"

#define MiB (1024 * 1024)

static char tmpdir[] = "/tmp/vmm-disk-resize-XXXXXX";

struct session {
	struct vmm *vm;
	const char *sock;
	char *log; /* the console, by its /proc path */
	char *state;
};

/* resize_disk on fd: its return, and the size it replied in *bytes. */
static int resize(int fd, int64_t disk, int64_t bytes, int64_t *size)
{
	struct json_object *args = json_object_new_object(), *reply = NULL;
	int ret;

	json_object_object_add(args, "disk", json_object_new_int64(disk));
	json_object_object_add(args, "bytes", json_object_new_int64(bytes));
	ret = vmm_control_call(fd, "resize_disk", args, &reply);
	*size = int_member(reply, "bytes");
	json_object_put(reply);
	return ret;
}

static void *client(void *arg)
{
	struct session *s = arg;
	int fd = connect_to(s->sock), con = connect_to(s->sock);
	struct json_object *args;
	int64_t size;
	int ret;

	ok(wait_log(s->log, "blk: capacity 2048 sectors"),
	   "the guest sees 2048 sectors at start");
	ok(wait_log(s->log, "blk: written"), "and writes its first sectors");
	is_int(resize(fd, 0, 3 * MiB - 100, &size), 0, "resize_disk answers%s%s", size < 0 ? ": " : "", size < 0 ? vi_error_message() : "");
	is_int(size, 3 * MiB, "and gives the size rounded up to whole sectors");
	ok(wait_log(s->log, "blk: resized to 6144 sectors"),
	   "the guest sees the new capacity on the configuration interrupt");
	ok(wait_log(s->log, "blk: last sector ok"),
	   "and writes and reads the new last sector");

	is_int(resize(fd, 0, 1 * MiB, &size), -VI_EUSAGE, "shrinking is refused");
	is_str(vi_error_message(),
	       "the VMM refused 'resize_disk': disk 0 has 3145728 bytes: it does not shrink to "
	       "1048576",
	       "and says why");
	is_int(vmm_disk_size(s->vm, 0), 3 * MiB, "the disk keeps its size");
	is_int(resize(fd, 1, 4 * MiB, &size), -VI_EUSAGE, "a disk the VM does not have is refused");
	is_str(vi_error_message(), "the VMM refused 'resize_disk': the VM has no disk 1",
	       "and named");
	is_int(resize(fd, 0, 3 * MiB, &size), 0, "the same size again is no change");
	args = json_object_new_object();
	json_object_object_add(args, "path", json_object_new_string(s->state));
	json_object_object_add(args, "live", json_object_new_boolean(true));
	ret = vmm_control_call(fd, "save", args, NULL);
	is_int(ret, 0, "a live save of the grown VM%s%s", ret ? ": " : "",
	       ret ? vi_error_message() : "");

	is_int(vmm_control_call(con, "console", NULL, NULL), 0, "the console answers");
	ok(send(con, "q", 1, MSG_NOSIGNAL) == 1, "'q' typed");
	ok(wait_log(s->log, "blk: data ok"), "the guest's data stayed");
	close(con);
	close(fd);
	return NULL;
}

static void session(int format, const char *name)
{
	char *disk = xasprintf("%s/disk.%s", tmpdir, name), *sock = xasprintf("%s/c.sock", tmpdir);
	char *kernel = guest("blk-resize"), *out;
	struct image_create_opts opts = { .format = format, .size = 1 * MiB };
	struct vmm_disk d = { disk, format, false };
	struct vmm_config cfg = { .kernel = kernel, .cpus = 1, .memory = 64 * MiB,
				  .disks = &d, .ndisks = 1 };
	struct session s = { .sock = sock };
	struct vmm_control *ctl = NULL;
	struct vmm *vm = NULL;
	pthread_t thread;
	uint64_t size = 0;
	int ret, fd = -1;

	cfg.console_fd = memfd_create("console", MFD_CLOEXEC);
	s.log = xasprintf("/proc/self/fd/%d", cfg.console_fd);
	s.state = xasprintf("%s/state", tmpdir);
	is_int(image_create(disk, &opts), 0, "a 1 MiB %s disk", name);
	ret = boot_vm(&cfg, &vm);
	is_int(ret, 0, "VM created%s%s", ret ? ": " : "", ret ? vi_error_message() : "");
	if (ret == 0)
		ret = vmm_control_open(vm, sock, "test", &ctl);
	if (ret == 0)
		ret = vmm_start(vm);
	is_int(ret, 0, "VM started%s%s", ret ? ": " : "", ret ? vi_error_message() : "");
	if (ret < 0)
		goto out;
	s.vm = vm;
	pthread_create(&thread, NULL, client, &s);
	is_int(vmm_wait(vm), VMM_EXIT_RESET, "the guest ends with a reset");
	pthread_join(thread, NULL);
	out = read_fd(cfg.console_fd);
	ok(strstr(out, "blk: resized") && !strstr(strstr(out, "blk: resized") + 1, "blk: resized"),
	   "one configuration interrupt: the same size again raised none");
	ok(!strstr(out, "FAIL"), "the guest found nothing wrong%s%s", strstr(out, "FAIL") ? ": " : "",
	   strstr(out, "FAIL") ? out : "");
	free(out);
	vmm_control_close(ctl);
	ctl = NULL;
	vmm_free(vm);
	vm = NULL;
	is_int(image_virtual_size(disk, &size), 0, "the image opens");
	is_int(size, 3 * MiB, "and has its new size");
	/* The saved capacity must match the image the state is restored on. */
	ret = vmm_new(&cfg, &vm);
	if (ret == 0)
		ret = vmm_restore(vm, (fd = open(s.state, O_RDONLY | O_CLOEXEC)), 0);
	is_int(ret, 0, "the state restores onto the grown image%s%s", ret ? ": " : "",
	       ret ? vi_error_message() : "");
	is_int(vmm_disk_size(vm, 0), 3 * MiB, "with the grown size");
	if (fd >= 0)
		close(fd);
	vmm_free(vm);
	vm = NULL;
	if (format == IMAGE_QCOW2)
		is_int(sh("qemu-img check -q '%s'", disk), 0, "qemu-img check accepts it");
	is_int(sh("qemu-img info -f %s --output=json '%s' | grep -q '\"virtual-size\": 3145728,'",
		  name, disk), 0, "qemu-img sees 3 MiB");
out:
	vmm_control_close(ctl);
	vmm_free(vm);
	close(cfg.console_fd);
	free(s.log);
	if (s.state)
		unlink(s.state);
	free(s.state);
	unlink(disk);
	free(disk);
	free(sock);
	free(kernel);
}

int main(void)
{
	if (!vmm_test_ready(tmpdir))
		return done();
	session(IMAGE_QCOW2, "qcow2");
	session(IMAGE_RAW, "raw");
	rmdir(tmpdir);
	return done();
}
