/* Live layering on the real /dev/kvm: the disk-writer test kernel writes to a qcow2 and a
 * raw disk without pause while they move onto qcow2 overlays, asked through the control
 * socket and through hv-vtx's switch_disks. The old images must keep exactly a prefix of
 * the guest's writes, the same instant for both disks; the overlays, read through their
 * chains, everything; overlays that do not fit must leave the VM on its disks. */
#include <fcntl.h>
#include <json-c/json.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "error.h"
#include "image/image.h"
#include "tap.h"
#include "hv-virt-host.h"
#include "util.h"
#include "vmm/control.h"
#include "vmm/vmm.h"
#include "vmm-test.h"

#define MiB (1024ull * 1024)

/* The disk-writer kernel's layout, in 512-byte sectors (see tests/guest/disk-writer.c). */
#define SECTOR 512
#define FIRST 0
#define LATER 4096
#define REGION 16
#define STREAM 8192
#define STREAM_SLOTS 16
#define STREAM_STRIDE 64
#define PROGRESS 64

static char tmpdir[] = "/tmp/vmm-switch-XXXXXX";

static char *tmp(const char *name)
{
	return xasprintf("%s/%s", tmpdir, name);
}

/* --- the guest's console, read through the control socket ---------------------------- */

struct console {
	int fd;
	char *text;
	size_t len;
};

/* Reads what the guest printed next; false on EOF or after a minute of silence. */
static bool console_more(struct console *c)
{
	char chunk[4096];
	ssize_t n = read(c->fd, chunk, sizeof(chunk));

	if (n <= 0)
		return false;
	c->text = xrealloc(c->text, c->len + (size_t)n + 1);
	memcpy(c->text + c->len, chunk, (size_t)n);
	c->len += (size_t)n;
	c->text[c->len] = '\0';
	return true;
}

static bool console_wait_text(struct console *c, const char *want)
{
	while (!c->text || !strstr(c->text, want))
		if (!console_more(c))
			return false;
	return true;
}

/* The step count of the last progress line. */
static unsigned console_writes(const struct console *c)
{
	static const char tag[] = "disk-writer: ";
	unsigned last = 0, n;
	char word[8];

	for (const char *p = c->text; p && (p = strstr(p, tag)); p += sizeof(tag) - 1)
		if (sscanf(p + sizeof(tag) - 1, "%u %7s", &n, word) == 2 && !strcmp(word, "writes"))
			last = n;
	return last;
}

/* Sends 'm' and waits for the step count it brings back. */
static bool console_mark(struct console *c, unsigned *steps)
{
	static const char tag[] = "disk-writer: mark after ";
	const char *p, *last;

	if (send(c->fd, "m", 1, MSG_NOSIGNAL) != 1)
		return false;
	for (;;) {
		for (p = c->text, last = NULL; p && (p = strstr(p, tag)); p += sizeof(tag) - 1)
			last = p;
		if (last && strchr(last, '\n'))
			return sscanf(last + sizeof(tag) - 1, "%u", steps) == 1;
		if (!console_more(c))
			return false;
	}
}

/* Waits until the guest has made at least `steps` steps. */
static bool console_wait_writes(struct console *c, unsigned steps)
{
	while (console_writes(c) < steps)
		if (!console_more(c))
			return false;
	return true;
}

/* --- the session on the control socket ------------------------------------------------ */

struct session {
	char *sock;
	const struct vi_hv_ops *ops;
	struct vi_hv_vm *hv_vm;
	char *disk0, *disk1, *ro, *ov0, *ov1, *big, *other, *missing;
	struct console con;
	unsigned mark; /* the guest's step count when it heard of the switch */
};

/* switch_disks with a JSON array of paths (NULL entries as null), on its own connection. */
static int switch_raw(struct session *s, struct json_object *overlays)
{
	struct json_object *args = json_object_new_object();
	int fd = connect_to(s->sock), ret;

	json_object_object_add(args, "overlays", overlays);
	if (fd < 0) {
		json_object_put(args);
		return -VI_ESTATE;
	}
	ret = vmm_control_call(fd, "switch_disks", args, NULL);
	close(fd);
	return ret;
}

static int switch_paths(struct session *s, size_t n, ...)
{
	struct json_object *list = json_object_new_array();
	va_list ap;

	va_start(ap, n);
	for (size_t i = 0; i < n; i++) {
		const char *p = va_arg(ap, const char *);

		json_object_array_add(list, p ? json_object_new_string(p) : NULL);
	}
	va_end(ap);
	return switch_raw(s, list);
}

static bool vm_running(struct session *s)
{
	struct json_object *reply = NULL, *v;
	int fd = connect_to(s->sock);
	bool running = false;

	if (fd >= 0 && vmm_control_call(fd, "status", NULL, &reply) == 0)
		running = json_object_object_get_ex(reply, "state", &v) &&
			  !strcmp(json_object_get_string(v), "running");
	json_object_put(reply);
	if (fd >= 0)
		close(fd);
	return running;
}

/* A refused switch: its exact message, and the VM still running on its disks. */
static void refused(struct session *s, int ret, const char *what, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void refused(struct session *s, int ret, const char *what, const char *fmt, ...)
{
	char *want, *full;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&want, fmt, ap) < 0)
		abort();
	va_end(ap);
	full = xasprintf("the VMM refused 'switch_disks': %s", want);
	is_int(ret, -VI_EFAIL, "%s: refused", what);
	is_str(vi_error_message(), full, "%s: the message says why", what);
	ok(vm_running(s), "%s: the VM runs on", what);
	free(want);
	free(full);
}

static void refusals(struct session *s)
{
	struct image *hold = NULL;
	struct json_object *bad;
	int ret;

	refused(s, switch_paths(s, 2, s->ov0, s->ov1), "two overlays for three disks",
		"2 overlays given for 3 disks");
	refused(s, switch_paths(s, 3, s->missing, NULL, NULL), "a missing overlay",
		"disk 0: cannot open '%s': No such file or directory", s->missing);
	refused(s, switch_paths(s, 3, s->big, NULL, NULL), "an overlay of another size",
		"disk 0: the overlay '%s' is 16M but the disk is 8M", s->big);
	refused(s, switch_paths(s, 3, s->other, NULL, NULL), "an overlay of another image",
		"disk 0: the overlay '%s' is not backed by '%s'", s->other, s->disk0);
	refused(s, switch_paths(s, 3, s->ro, NULL, NULL), "a raw image as overlay",
		"disk 0: '%s' is a raw image, not a qcow2 overlay", s->ro);
	refused(s, switch_paths(s, 3, NULL, NULL, s->ov0), "an overlay for a read-only disk",
		"disk 2 is read-only and takes no overlay");
	refused(s, switch_paths(s, 3, s->ov0, s->missing, NULL), "one bad overlay of two",
		"disk 1: cannot open '%s': No such file or directory", s->missing);
	bad = json_object_new_object();
	refused(s, switch_raw(s, bad), "overlays that are not an array",
		"'switch_disks' needs an array of overlays");
	bad = json_object_new_array();
	json_object_array_add(bad, json_object_new_int(1));
	refused(s, switch_raw(s, bad), "an overlay that is a number",
		"overlay 0 is neither a path nor null");
	/* Both overlays pass the checks, but ov1 cannot open for writing while this process
	 * reads it: disk 0 has moved by then and must come back. */
	ret = image_open(s->ov1, IMAGE_QCOW2, IMAGE_OPEN_NO_BACKING, &hold);
	is_int(ret, 0, "the test holds ov1 open for reading%s%s", ret ? ": " : "",
	       ret ? vi_error_message() : "");
	refused(s, switch_paths(s, 3, s->ov0, s->ov1, NULL), "a second disk that cannot move",
		"disk 1: cannot open '%s' for writing: another process is using it", s->ov1);
	image_close(hold);
}

static void *session_run(void *arg)
{
	struct session *s = arg;
	struct vi_hv_ctx ctx = { .struct_size = sizeof(ctx), .host = &test_host };
	const char *overlays[] = { s->ov0, s->ov1, NULL };
	unsigned before;
	char *again;
	int ret;

	s->con.fd = connect_to(s->sock);
	ok(s->con.fd >= 0 && vmm_control_call(s->con.fd, "console", NULL, NULL) == 0,
	   "the console attaches");
	ok(console_wait_writes(&s->con, PROGRESS), "the guest streams writes to its disks");
	refusals(s);
	before = console_writes(&s->con);
	ok(console_wait_writes(&s->con, before + PROGRESS),
	   "the guest went on writing after the refusals (%u steps, then more)", before);

	ret = s->ops->switch_disks(&ctx, s->hv_vm, overlays);
	is_int(ret, 0, "hv-vtx's switch_disks moves disks 0 and 1%s%s", ret ? ": " : "",
	       ret ? host_error_text : "");
	ret = console_mark(&s->con, &s->mark);
	ok(ret, "the guest was at step %u when it heard of the switch", s->mark);
	ret = s->ops->switch_disks(&ctx, s->hv_vm, overlays);
	is_int(ret, -VI_EFAIL, "the same switch again is refused");
	again = xasprintf("the VMM refused 'switch_disks': disk 0 already uses '%s'", s->ov0);
	is_str(host_error_text, again, "since disk 0 is on that overlay now");
	free(again);
	ok(console_wait_writes(&s->con, s->mark + 2 * PROGRESS),
	   "the guest goes on writing on the overlays");

	ok(send(s->con.fd, "q", 1, MSG_NOSIGNAL) == 1, "q ends the stream");
	if (!console_wait_text(&s->con, "disk-writer: stream ended")) {
		struct json_object *args = json_object_new_object();
		int fd = connect_to(s->sock);

		/* A guest that does not listen is stopped, or the test would hang. */
		json_object_object_add(args, "force", json_object_new_boolean(true));
		if (fd >= 0)
			vmm_control_call(fd, "stop", args, NULL);
		else
			json_object_put(args);
		if (fd >= 0)
			close(fd);
	}
	while (console_more(&s->con))
		;
	close(s->con.fd);
	return NULL;
}

/* --- what the images hold ------------------------------------------------------------- */

static void record(uint8_t *p, unsigned disk, uint32_t step)
{
	uint32_t n = disk;

	memcpy(p, "vistream", 8);
	memcpy(p + 8, &n, 4);
	memcpy(p + 12, &step, 4);
	memset(p + 16, (uint8_t)(step + disk), SECTOR - 16);
}

static bool all(const uint8_t *p, size_t len, uint8_t v)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != v)
			return false;
	return true;
}

/* Reads the stream slots of `disk` from img: true when they hold exactly the first
 * *steps steps, *steps being found from the highest record there. */
static bool stream_prefix(struct image *img, unsigned disk, uint32_t *steps)
{
	uint8_t got[STREAM_SLOTS][SECTOR], want[SECTOR];
	uint32_t step;
	bool any = false;

	*steps = 0;
	for (uint32_t slot = 0; slot < STREAM_SLOTS; slot++) {
		uint64_t at = (STREAM + (uint64_t)slot * STREAM_STRIDE) * SECTOR;

		if (image_pread(img, got[slot], SECTOR, at) < 0)
			return false;
		memcpy(&step, got[slot] + 12, 4);
		if (!memcmp(got[slot], "vistream", 8) && (!any || step + 1 > *steps)) {
			*steps = step + 1;
			any = true;
		}
	}
	for (uint32_t slot = 0; slot < STREAM_SLOTS; slot++) {
		memset(want, 0, sizeof(want));
		if (*steps > slot)
			record(want, disk, slot + STREAM_SLOTS * ((*steps - 1 - slot) / STREAM_SLOTS));
		if (memcmp(got[slot], want, SECTOR))
			return false;
	}
	return true;
}

/* Checks one layer of disk `disk`: the old image (after == false) or its overlay. */
static void check_image(const char *path, int format, unsigned disk, bool after,
			uint32_t mark, uint32_t total, uint32_t *steps)
{
	static uint8_t buf[REGION * SECTOR];
	const uint8_t first = (uint8_t)(0x10 + disk), later = (uint8_t)(0x30 + disk);
	const char *what = after ? "overlay" : "old image";
	struct image *img;
	int ret = image_open(path, format, 0, &img);

	is_int(ret, 0, "disk %u: the %s opens%s%s", disk, what, ret ? ": " : "",
	       ret ? vi_error_message() : "");
	if (ret < 0)
		return;
	ok(image_pread(img, buf, sizeof(buf), FIRST * SECTOR) == 0 &&
		   all(buf, sizeof(buf) / 2, first) &&
		   all(buf + sizeof(buf) / 2, sizeof(buf) / 2, after ? later : first),
	   "disk %u: the %s holds %s", disk, what,
	   after ? "phase 1's writes and phase 3's over them" : "phase 1's writes, no later ones");
	ok(image_pread(img, buf, sizeof(buf), LATER * SECTOR) == 0 &&
		   all(buf, sizeof(buf), after ? later : 0),
	   "disk %u: the %s %s phase 3's new writes", disk, what, after ? "holds" : "lacks");
	ret = stream_prefix(img, disk, steps);
	ok(ret, "disk %u: the %s holds exactly the first %u stream steps", disk, what, *steps);
	if (after)
		is_int(*steps, total, "disk %u: that is every step the guest made", disk);
	else
		ok(*steps >= PROGRESS && *steps <= mark && mark < total,
		   "disk %u: the old image stopped at the switch (%u steps; %u at the mark, "
		   "%u in all)",
		   disk, *steps, mark, total);
	image_close(img);
}

/* --- the test ------------------------------------------------------------------------ */

static bool make_images(struct session *s)
{
	int fd = open(s->disk1, O_RDWR | O_CREAT | O_TRUNC, 0644), ro;
	bool made;

	ro = open(s->ro, O_RDWR | O_CREAT | O_TRUNC, 0644);
	made = fd >= 0 && ro >= 0 && ftruncate(fd, (off_t)(8 * MiB)) == 0 &&
	       ftruncate(ro, (off_t)(8 * MiB)) == 0;
	if (fd >= 0)
		close(fd);
	if (ro >= 0)
		close(ro);
	/* ov0 reads disk0 under a second name, as a host freezing the image links it. */
	return made && sh("cd %s && qemu-img create -q -f qcow2 disk0.qcow2 8M && "
			  "ln disk0.qcow2 frozen0.qcow2 && "
			  "qemu-img create -q -f qcow2 -b frozen0.qcow2 -F qcow2 ov0.qcow2 && "
			  "qemu-img create -q -f qcow2 -b %s -F raw ov1.qcow2 && "
			  "qemu-img create -q -f qcow2 -b disk0.qcow2 -F qcow2 big.qcow2 16M && "
			  "qemu-img create -q -f qcow2 -b disk1.raw -F raw other.qcow2",
			  tmpdir, s->disk1) == 0;
}

static void test_switch(const struct vi_hv_ops *ops)
{
	struct session s = { 0 };
	char *kernel = guest("disk-writer"), *run_dir = tmp("run");
	struct vmm_disk disks[3];
	struct vi_hv_vm hv_vm = { .struct_size = sizeof(hv_vm), .name = "switch", .dir = tmpdir,
				  .run_dir = run_dir, .ndisks = 3 };
	struct vmm_config cfg = { .kernel = kernel, .cpus = 1, .memory = 64 * MiB,
				  .console_fd = -1, .disks = disks, .ndisks = 3 };
	struct vi_hv_ctx ctx = { .struct_size = sizeof(ctx), .host = &test_host };
	const char *overlays[] = { NULL, NULL, NULL };
	struct vmm_control *ctl = NULL;
	struct vmm *vm = NULL;
	uint32_t old_steps[2] = { 0 }, new_steps[2] = { 0 }, total = 0;
	const char *end;
	pthread_t thread;
	int reason = 0, ret;

	s.sock = xasprintf("%s/control.sock", run_dir);
	s.ops = ops;
	s.hv_vm = &hv_vm;
	s.disk0 = tmp("disk0.qcow2");
	s.disk1 = tmp("disk1.raw");
	s.ro = tmp("ro.raw");
	s.ov0 = tmp("ov0.qcow2");
	s.ov1 = tmp("ov1.qcow2");
	s.big = tmp("big.qcow2");
	s.other = tmp("other.qcow2");
	s.missing = tmp("missing.qcow2");
	ok(make_images(&s) && vi_mkdir_p(run_dir, 0700) == 0, "the disks and overlays are made");
	disks[0] = (struct vmm_disk){ s.disk0, VI_DISK_QCOW2, false };
	disks[1] = (struct vmm_disk){ s.disk1, VI_DISK_RAW, false };
	disks[2] = (struct vmm_disk){ s.ro, VI_DISK_RAW, true };
	ret = boot_vm(&cfg, &vm);
	if (ret == 0)
		ret = vmm_control_open(vm, s.sock, "vtx", &ctl);
	if (ret == 0)
		ret = vmm_start(vm);
	is_int(ret, 0, "the VM starts%s%s", ret ? ": " : "", ret ? vi_error_message() : "");
	if (ret < 0)
		goto out;
	pthread_create(&thread, NULL, session_run, &s);
	reason = vmm_wait(vm);
	vmm_control_close(ctl);
	pthread_join(thread, NULL);
	is_int(reason, VMM_EXIT_RESET, "the guest ran to its end");
	if (reason == VMM_EXIT_ERROR)
		printf("# vmm: %s\n", vmm_exit_message(vm));
	vmm_free(vm);

	printf("# %s", s.con.text ? s.con.text : "(no console output)\n");
	end = s.con.text ? strstr(s.con.text, "stream ended after ") : NULL;
	ret = end && sscanf(end, "stream ended after %u", &total) == 1;
	ok(ret, "the guest made %u steps", total);
	ok(s.con.text && strstr(s.con.text, "disk-writer: ok\r\n") &&
		   !strstr(s.con.text, "FAIL"),
	   "the guest saw no I/O error and read back all it wrote");
	check_image(s.disk0, IMAGE_QCOW2, 0, false, s.mark, total, &old_steps[0]);
	check_image(s.disk1, IMAGE_RAW, 1, false, s.mark, total, &old_steps[1]);
	ok(old_steps[1] == old_steps[0] || old_steps[1] + 1 == old_steps[0],
	   "both disks moved at one instant: disk 0 stopped after step %u, disk 1 after %u",
	   old_steps[0], old_steps[1]);
	check_image(s.ov0, IMAGE_QCOW2, 0, true, s.mark, total, &new_steps[0]);
	check_image(s.ov1, IMAGE_QCOW2, 1, true, s.mark, total, &new_steps[1]);
	is_int(sh("qemu-img check -q %s && qemu-img check -q %s && qemu-img check -q %s",
		  s.disk0, s.ov0, s.ov1),
	       0, "qemu-img check accepts the old qcow2 image and both overlays");
	/* qemu-io as a second reader: phase 1 below, phase 3 above, through the chain. */
	ok(sh("out=$(qemu-io -r -f qcow2 -c 'read -P 0x10 0 4096' -c 'read -P 0x30 4096 4096' "
	      "-c 'read -P 0x30 2M 8192' %s && "
	      "qemu-io -r -f qcow2 -c 'read -P 0x11 0 4096' -c 'read -P 0x31 4096 4096' "
	      "-c 'read -P 0x31 2M 8192' %s && "
	      "qemu-io -r -f qcow2 -c 'read -P 0x10 0 8192' -c 'read -P 0 2M 8192' %s) && "
	      "! echo \"$out\" | grep -q -i 'fail\\|mismatch'",
	      s.ov0, s.ov1, s.disk0) == 0,
	   "qemu-io reads the same through the overlays and from the old image");

	ret = ops->switch_disks(&ctx, &hv_vm, overlays);
	is_int(ret, -VI_ESTATE, "switch_disks on a stopped VM is refused");
	is_str(host_error_text, "VM 'switch' is not running", "and says why");
out:
	free(s.con.text);
	free(s.sock);
	free(kernel);
	free(run_dir);
	free(s.disk0);
	free(s.disk1);
	free(s.ro);
	free(s.ov0);
	free(s.ov1);
	free(s.big);
	free(s.other);
	free(s.missing);
}

int main(void)
{
	struct vmm_kvm_info info;
	const struct vi_hv_ops *ops;

	if (vmm_kvm_probe(&info) < 0) {
		skip("no usable KVM: %s", vi_error_message());
		return done();
	}
	ops = load_plugin("vtx");
	ok(ops && ops->switch_disks, "hv-vtx offers switch_disks");
	if (!ops || !ops->switch_disks || !mkdtemp(tmpdir))
		return done();
	test_switch(ops);
	/* VMM_SWITCH_KEEP=1 keeps the images. */
	if (getenv("VMM_SWITCH_KEEP"))
		printf("# kept %s\n", tmpdir);
	else
		sh("rm -rf %s", tmpdir);
	return done();
}
