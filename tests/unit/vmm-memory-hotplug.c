/* Growing a running VM's memory: the virtio-mem test kernel finds the device on the
 * modern virtio-pci transport and plugs what set_memory asks for, written and read
 * back; a size past the maximum is refused naming it; a saved state and a migration
 * keep the plugged blocks, their contents and the device's sizes, and the guest goes
 * on following the requested size on the other side. */
#include <asm/bootparam.h>
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
#define GiB (1024 * MiB)
/* What the guest writes every 64 KiB of a plugged block at address A: A ^ this. */
#define MEM_PATTERN 0x5649204d454d2121ull
#define PATTERN_STRIDE 0x10000u

static char tmpdir[] = "/tmp/vmm-memory-hotplug-XXXXXX";

static const struct vmm_config base_cfg = {
	.cpus = 1, .memory = 64 * MiB, .max_memory = 512 * MiB, .balloon = true,
};

/* How many lines `text` the console has. */
static unsigned count_lines(int console, const char *text)
{
	char *out = read_fd(console), *p = out;
	size_t len = strlen(text);
	unsigned n = 0;

	for (; (p = strstr(p, text)); p += len)
		n += (p == out || p[-1] == '\n') && (p[len] == '\r' || p[len] == '\n');
	free(out);
	return n;
}

/* Waits (up to 30 s) until the console has `n` lines `text`. */
static bool wait_lines(int console, const char *text, unsigned n)
{
	for (int i = 0; i < 600; i++) {
		if (count_lines(console, text) >= n)
			return true;
		usleep(50000);
	}
	return false;
}

static bool wait_line(int console, const char *text)
{
	return wait_lines(console, text, 1);
}

/* The blocks the guest plugged, [4 GiB, 4 GiB + bytes), hold its pattern in vm. */
static bool pattern_kept(struct vmm *vm, uint64_t bytes)
{
	for (uint64_t a = 4 * GiB; a < 4 * GiB + bytes; a += PATTERN_STRIDE) {
		uint64_t *p = vmm_gpa_to_hva(vm, a, 8);

		if (!p || *p != (a ^ MEM_PATTERN)) {
			printf("# 0x%llx holds 0x%llx\n", (unsigned long long)a,
			       p ? (unsigned long long)*p : 0ull);
			return false;
		}
	}
	return true;
}

/* BAR 0 of the PCI function with device ID `id`, read as the guest would; 0: none. */
static uint32_t pci_bar0(struct vmm *vm, uint16_t id)
{
	for (uint32_t slot = 0; slot < 32; slot++) {
		uint32_t addr = 0x80000000u | slot << 11, v;

		vmm_io(vm, false, 0xcf8, &addr, 4, true);
		vmm_io(vm, false, 0xcfc, &v, 4, false);
		if (v != ((uint32_t)id << 16 | 0x1af4))
			continue;
		addr |= 0x10;
		vmm_io(vm, false, 0xcf8, &addr, 4, true);
		vmm_io(vm, false, 0xcfc, &v, 4, false);
		return v;
	}
	return 0;
}

/* What a freshly booted VM tells the guest: no RAM where virtio-mem's region is, the
 * device's registers in the PCI window, a command line that onlines what comes. */
static void check_layout(struct vmm *vm)
{
	struct boot_params *zp = vmm_gpa_to_hva(vm, 0x7000, sizeof(*zp));
	const char *cmdline = vmm_gpa_to_hva(vm, 0x20000, 4096);
	uint64_t top = 0;
	uint32_t bar = pci_bar0(vm, 0x1058);

	for (unsigned i = 0; i < zp->e820_entries; i++)
		if (zp->e820_table[i].type == 1 &&
		    zp->e820_table[i].addr + zp->e820_table[i].size > top)
			top = zp->e820_table[i].addr + zp->e820_table[i].size;
	is_int(top, 64 * MiB, "the E820 map's RAM ends at the boot memory");
	ok(bar >= 0xc0000000u && bar < 0xfec00000u && !(bar & 1),
	   "virtio-mem's memory BAR is in the PCI window: 0x%x", bar);
	ok(pci_bar0(vm, 0x1002) & 1, "the balloon keeps its legacy I/O BAR");
	ok(strstr(cmdline, "memhp_default_state=online_movable") != NULL,
	   "the command line onlines hotplugged memory: '%s'", cmdline);
}

static int set_memory(int fd, uint64_t bytes, struct json_object **reply)
{
	struct json_object *args = json_object_new_object();

	json_object_object_add(args, "bytes", json_object_new_int64((int64_t)bytes));
	return vmm_control_call(fd, "set_memory", args, reply);
}

struct session {
	struct vmm *vm;
	char *sock, *state;
	int console;
};

/* Grows the guest through the control socket, is refused past the maximum, saves the
 * grown guest and shrinks it. */
static void *grow_client(void *arg)
{
	struct session *s = arg;
	struct json_object *reply = NULL, *stats = NULL, *args;
	int fd = connect_to(s->sock), ret;

	ok(wait_line(s->console, "virtio-mem: region 0x100000000 512 MiB, block 2 MiB"),
	   "the guest finds virtio-mem's region above 4 GiB");
	ret = set_memory(fd, 320 * MiB, &reply);
	is_int(ret, 0, "set_memory 320 MiB%s%s", ret ? ": " : "", ret ? vi_error_message() : "");
	is_int(int_member(reply, "requested_size"), 256 * MiB, "asks virtio-mem for 256 MiB");
	is_int(int_member(reply, "balloon_bytes"), 0, "and the balloon for nothing");
	json_object_put(reply);
	ok(wait_line(s->console, "virtio-mem: plugged 256 MiB, verified"),
	   "the guest plugs 256 MiB and uses it");
	vmm_control_call(fd, "stats", NULL, &stats);
	is_int(int_member(stats, "memory"), 320 * MiB, "stats count the plugged memory");
	json_object_put(stats);

	reply = NULL;
	ret = set_memory(fd, 600 * MiB, &reply);
	is_int(ret, -VI_EUSAGE, "600 MiB is past the maximum");
	ok(strstr(vi_error_message(), "maximum memory, 512") != NULL, "named: %s",
	   vi_error_message());
	is_int(set_memory(fd, 0, NULL), -VI_EUSAGE, "no memory at all is refused");
	ret = set_memory(fd, 32 * MiB, &reply);
	is_int(ret, 0, "32 MiB asks the balloon");
	is_int(int_member(reply, "balloon_bytes"), 32 * MiB, "for 32 MiB");
	is_int(int_member(reply, "requested_size"), 0, "and virtio-mem for nothing");
	json_object_put(reply);
	ok(wait_line(s->console, "virtio-mem: unplugged to 0 MiB"), "the guest unplugs it all");
	ok(set_memory(fd, 320 * MiB, NULL) == 0 &&
		   wait_lines(s->console, "virtio-mem: plugged 256 MiB, verified", 2),
	   "and plugs it again when asked");

	args = json_object_new_object();
	json_object_object_add(args, "path", json_object_new_string(s->state));
	json_object_object_add(args, "live", json_object_new_boolean(true));
	ret = vmm_control_call(fd, "save", args, NULL);
	is_int(ret, 0, "a live save of the grown guest%s%s", ret ? ": " : "",
	       ret ? vi_error_message() : "");
	close(fd);
	vmm_request_exit(s->vm, VMM_EXIT_STOPPED);
	return NULL;
}

static void test_grow_and_save(struct vmm_config *cfg, const char *state)
{
	struct session s = { .sock = xasprintf("%s/control.sock", tmpdir),
			     .state = (char *)state };
	struct vmm_control *ctl = NULL;
	pthread_t thread;
	int ret;

	s.console = cfg->console_fd = memfd_create("console", MFD_CLOEXEC);
	ret = boot_vm(cfg, &s.vm);
	if (ret == 0)
		check_layout(s.vm);
	if (ret == 0)
		ret = vmm_control_open(s.vm, s.sock, "test", &ctl);
	if (ret == 0)
		ret = vmm_start(s.vm);
	is_int(ret, 0, "a VM of 64 MiB that may have 512 MiB runs%s%s", ret ? ": " : "",
	       ret ? vi_error_message() : "");
	if (ret == 0) {
		pthread_create(&thread, NULL, grow_client, &s);
		vmm_wait(s.vm);
		vmm_control_close(ctl);
		pthread_join(thread, NULL);
	}
	vmm_free(s.vm);
	close(s.console);
	free(s.sock);
}

/* --- the other side of a restore and a migration ------------------------------------- */

/* A VM that has the grown guest: its plugged memory and sizes are the saved ones, and
 * the guest follows a smaller requested size there. */
static void check_grown(struct vmm *vm, const char *where)
{
	struct vmm_memory_size size;

	vmm_memory_size(vm, &size);
	is_int(size.plugged, 256 * MiB, "%s: 256 MiB plugged", where);
	is_int(size.requested, 256 * MiB, "%s: 256 MiB requested", where);
	ok(pattern_kept(vm, 256 * MiB), "%s: the plugged blocks hold what the guest wrote", where);
}

static void check_goes_on(struct vmm *vm, int console, const char *where)
{
	is_int(vmm_set_memory(vm, 192 * MiB), 0, "%s: set_memory 192 MiB", where);
	ok(wait_line(console, "virtio-mem: unplugged to 128 MiB"),
	   "%s: the guest goes on and unplugs down to 128 MiB", where);
}

struct receiver {
	struct vmm_config cfg;
	int fd, ret;
};

static void *receiver_thread(void *opaque)
{
	struct receiver *r = opaque;
	struct vmm *dst = NULL;
	int ret;

	r->cfg.disks_later = true;
	ret = vmm_new(&r->cfg, &dst);
	if (ret == 0)
		ret = vmm_migrate_recv(dst, r->fd, 0, NULL);
	if (ret == 0)
		check_grown(dst, "migrated");
	if (ret == 0)
		ret = vmm_migrate_commit(dst, r->fd);
	if (ret == 0)
		ret = vmm_start(dst);
	if (ret == 0)
		ret = vmm_migrate_running(r->fd);
	r->ret = ret;
	if (ret < 0)
		printf("# destination: %s\n", vi_error_message());
	if (ret == 0)
		check_goes_on(dst, r->cfg.console_fd, "migrated");
	close(r->fd);
	vmm_request_exit(dst, VMM_EXIT_STOPPED);
	vmm_free(dst);
	return NULL;
}

/* Restores the saved guest, checks it, and migrates it to a third VM. */
static void test_restore_and_migrate(const struct vmm_config *base, const char *state)
{
	struct vmm_config cfg = *base;
	struct receiver r = { .cfg = *base };
	struct vmm_migrate_opts opts = { 0 };
	struct vi_state_writer w = { 0 };
	struct vmm_migration m = { .w = &w };
	struct vmm *vm = NULL;
	pthread_t receiver;
	int fd = open(state, O_RDONLY | O_CLOEXEC), pair[2], ret;

	cfg.console_fd = memfd_create("restored", MFD_CLOEXEC);
	ret = vmm_new(&cfg, &vm);
	if (ret == 0)
		ret = vmm_restore(vm, fd, 0);
	is_int(ret, 0, "the saved state restores%s%s", ret ? ": " : "",
	       ret ? vi_error_message() : "");
	if (ret == 0)
		check_grown(vm, "restored");
	if (ret == 0)
		ret = vmm_start(vm);
	if (ret < 0) {
		vmm_free(vm);
		close(fd);
		close(cfg.console_fd);
		return;
	}
	r.cfg.console_fd = memfd_create("migrated", MFD_CLOEXEC);
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair);
	r.fd = pair[1];
	pthread_create(&receiver, NULL, receiver_thread, &r);
	ret = vmm_migrate_send(vm, pair[0], &opts, &m);
	is_int(ret, 0, "the restored guest migrates%s%s", ret ? ": " : "",
	       ret ? vi_error_message() : "");
	close(pair[0]);
	pthread_join(receiver, NULL);
	is_int(r.ret, 0, "and runs on the destination");
	vmm_request_exit(vm, VMM_EXIT_STOPPED);
	vmm_free(vm);
	close(r.cfg.console_fd);

	/* The state again, this time to run on where it was saved. */
	close(fd);
	fd = open(state, O_RDONLY | O_CLOEXEC);
	cfg.console_fd = memfd_create("restored", MFD_CLOEXEC);
	vm = NULL;
	ret = vmm_new(&cfg, &vm);
	if (ret == 0)
		ret = vmm_restore(vm, fd, 0);
	if (ret == 0)
		ret = vmm_start(vm);
	is_int(ret, 0, "restored once more, it runs");
	if (ret == 0)
		check_goes_on(vm, cfg.console_fd, "restored");
	vmm_request_exit(vm, VMM_EXIT_STOPPED);
	vmm_free(vm);
	close(cfg.console_fd);
	close(fd);
}

/* --- a state from before virtio-mem ------------------------------------------------ */

/* Copies the state file `from` to `to` without its virtio-mem sections (the modern
 * transport's and the device's), as a VMM that had no virtio-mem wrote it. They follow
 * every page run, so nothing before them moves. */
static bool strip_virtio_mem(const char *from, const char *to)
{
	char *buf = NULL;
	size_t len = 0, out = 64, cut = 0;

	if (vi_read_file(from, &buf, &len) < 0 || len < 64)
		return false;
	for (size_t at = 64; at < len;) {
		uint32_t id = 0, crc = 0;
		uint16_t version = 0;
		uint64_t length = 0;

		if (at + 24 <= len) {
			memcpy(&id, buf + at, 4);
			memcpy(&version, buf + at + 4, 2);
			memcpy(&crc, buf + at + 12, 4);
			memcpy(&length, buf + at + 16, 8);
		}
		if ((id == 0x109 || id == 0x10a) && version == 1 && at + 24 <= len &&
		    length <= len - at - 24 && vi_crc32c(0, buf + at + 24, length) == crc) {
			at += 24 + length;
			cut++;
			continue;
		}
		buf[out++] = buf[at++];
	}
	vi_write_file_atomic(to, buf, out, 0644);
	free(buf);
	return cut == 2;
}

/* Stamps: how far the stamps guest has got. */
static unsigned last_gen(int console)
{
	return console_last(console, "stamps: gen ", " ok");
}

static bool wait_gen(int console, unsigned n)
{
	return console_wait(console, "stamps: gen ", " ok", n, 600);
}

/* A state written before the VM had virtio-mem restores, the device as new, both into
 * a new VM and in place of a running one's (whose device had been asked for memory). */
static void test_state_without_device(const struct vmm_config *base)
{
	struct vmm_config cfg = *base;
	struct vmm_memory_size size;
	struct vi_state_writer w = { 0 };
	char *saved = xasprintf("%s/stamps.state", tmpdir), *old = xasprintf("%s/old.state", tmpdir);
	struct vmm *vm = NULL;
	bool changed = false;
	unsigned gen;
	int fd, ret;

	cfg.kernel = guest("stamps");
	cfg.console_fd = memfd_create("stamps", MFD_CLOEXEC);
	ret = boot_vm(&cfg, &vm);
	if (ret == 0)
		ret = vmm_start(vm);
	is_int(ret, 0, "a stamps VM that may grow runs");
	if (ret < 0)
		goto out;
	ok(wait_gen(cfg.console_fd, 2), "and counts generations");
	fd = open(saved, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	ret = vmm_pause(vm);
	if (ret == 0)
		ret = vmm_save(vm, fd, &w);
	close(fd);
	is_int(ret, 0, "its state is saved");
	ok(strip_virtio_mem(saved, old), "and made one without virtio-mem");
	is_int(vmm_set_memory(vm, 320 * MiB), 0, "the device is asked for memory");
	fd = open(old, O_RDONLY | O_CLOEXEC);
	gen = last_gen(cfg.console_fd);
	ret = vmm_replace(vm, fd, 0, NULL, 0, &changed);
	is_int(ret, 0, "the old state takes the running VM's place%s%s", ret ? ": " : "",
	       ret ? vi_error_message() : "");
	vmm_memory_size(vm, &size);
	ok(size.requested == 0 && size.plugged == 0, "with virtio-mem as new");
	if (ret == 0)
		ret = vmm_resume(vm);
	ok(ret == 0 && wait_gen(cfg.console_fd, gen + 2), "and the guest goes on");
	close(fd);
	vmm_request_exit(vm, VMM_EXIT_STOPPED);
	vmm_free(vm);
	vm = NULL;

	fd = open(old, O_RDONLY | O_CLOEXEC);
	ret = vmm_new(&cfg, &vm);
	if (ret == 0)
		ret = vmm_restore(vm, fd, 0);
	is_int(ret, 0, "the old state restores into a new VM%s%s", ret ? ": " : "",
	       ret ? vi_error_message() : "");
	gen = last_gen(cfg.console_fd);
	if (ret == 0)
		ret = vmm_start(vm);
	ok(ret == 0 && wait_gen(cfg.console_fd, gen + 2), "which goes on counting");
	close(fd);
out:
	vmm_request_exit(vm, VMM_EXIT_STOPPED);
	vmm_free(vm);
	close(cfg.console_fd);
	free((char *)cfg.kernel);
	free(saved);
	free(old);
}

/* A VM whose maximum is its memory has no virtio-mem: nothing to grow. */
static void test_no_room(char *kernel)
{
	struct vmm_config cfg = { .kernel = kernel, .cpus = 1, .memory = 64 * MiB,
				  .console_fd = -1 };
	struct vmm *vm = NULL;
	int ret = vmm_new(&cfg, &vm);

	is_int(ret, 0, "a VM without room to grow");
	if (ret == 0) {
		is_int(vmm_set_memory(vm, 128 * MiB), -VI_EUSAGE, "refuses 128 MiB: %s",
		       vi_error_message());
		is_int(vmm_memory_count(vm), 1, "and has no memory region beyond its boot RAM");
	}
	vmm_free(vm);
}

int main(void)
{
	struct vmm_config cfg = base_cfg;
	char *state;

	if (!vmm_test_ready(tmpdir))
		return done();
	cfg.kernel = guest("virtio-mem");
	state = xasprintf("%s/state", tmpdir);
	test_grow_and_save(&cfg, state);
	cfg.console_fd = -1;
	test_restore_and_migrate(&cfg, state);
	test_no_room((char *)cfg.kernel);
	test_state_without_device(&base_cfg);
	free(state);
	free((char *)cfg.kernel);
	sh("rm -rf %s", tmpdir);
	return done();
}
