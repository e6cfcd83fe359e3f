/* Live migration in one process: a running VM is sent over a socket pair, through a
 * proxy that can damage or cut the stream, to a second VM that takes it over. The stamps
 * kernel must go on from its generation on the destination, untouched; the disk-writer
 * kernel's overlay must arrive byte for byte and pass the guest's own check there. A
 * damaged stream, a destination that dies, and a hand-over cut on either side leave the
 * guest running in exactly one place (or paused, unconfirmed). */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "image/image.h"
#include "state.h"
#include "tap.h"
#include "util.h"
#include "vmm/vmm.h"
#include "vmm-test.h"

#define MiB (1024ull * 1024)

static char tmpdir[] = "/tmp/vmm-migrate-XXXXXX";

/* The highest "stamps: gen N ok" on a console, 0 for none. */
static unsigned last_gen(int console)
{
	return console_last(console, "gen ", " ok");
}

static bool wait_gen(int console, unsigned n)
{
	return console_wait(console, "gen ", " ok", n, 1200);
}

static bool console_has(int console, const char *text)
{
	char *out = read_fd(console);
	bool has = strstr(out, text) != NULL;

	free(out);
	return has;
}

static bool wait_text(int console, const char *text)
{
	for (int i = 0; i < 1200; i++) {
		if (console_has(console, text))
			return true;
		usleep(50000);
	}
	return false;
}

/* --- a proxy between the two ends ------------------------------------------------------ */

enum proxy_mode {
	PROXY_PASS,
	PROXY_FLIP,       /* flips one bit of the stream at byte `at` */
	PROXY_CUT,        /* closes both ends after `at` bytes of the stream */
	PROXY_NO_READY,   /* swallows "ready" and closes both ends */
	PROXY_NO_RUNNING, /* passes "ready" and "commit", swallows "running", closes */
};

struct proxy {
	int src, dst; /* its ends toward each side */
	enum proxy_mode mode;
	uint64_t at;
	pthread_t thread;
};

static void *proxy_thread(void *opaque)
{
	struct proxy *p = opaque;
	uint64_t forward = 0;
	unsigned lines = 0;
	char buf[65536];

	for (;;) {
		struct pollfd fds[2] = { { p->src, POLLIN, 0 }, { p->dst, POLLIN, 0 } };
		ssize_t n;

		if (poll(fds, 2, -1) < 0)
			break;
		if (fds[0].revents) {
			n = read(p->src, buf, sizeof(buf));
			if (n <= 0)
				break;
			if (p->mode == PROXY_FLIP && p->at >= forward && p->at < forward + (uint64_t)n)
				buf[p->at - forward] ^= 0x10;
			if (p->mode == PROXY_CUT && forward + (uint64_t)n >= p->at)
				break;
			forward += (uint64_t)n;
			if (vi_write_all(p->dst, buf, (size_t)n) < 0) {
				/* A destination that gave up may have said why. */
				struct pollfd d = { p->dst, POLLIN, 0 };

				while (poll(&d, 1, 1000) > 0 && (n = read(p->dst, buf, sizeof(buf))) > 0)
					(void)vi_write_all(p->src, buf, (size_t)n);
				break;
			}
		}
		if (fds[1].revents) {
			n = read(p->dst, buf, sizeof(buf));
			if (n <= 0)
				break;
			lines += memchr(buf, '\n', (size_t)n) != NULL;
			if ((p->mode == PROXY_NO_READY && lines >= 1) ||
			    (p->mode == PROXY_NO_RUNNING && lines >= 2))
				break;
			if (vi_write_all(p->src, buf, (size_t)n) < 0)
				break;
		}
	}
	close(p->src);
	close(p->dst);
	return NULL;
}

/* --- one migration ------------------------------------------------------------------------ */

struct run {
	struct vmm_config src_cfg, dst_cfg;
	struct vmm_migrate_opts opts;
	enum proxy_mode mode;
	uint64_t at;
	/* what happened */
	struct vmm *src;
	struct vmm_migration m;
	struct vi_state_writer w;
	int send_ret, recv_ret;
	char *send_error, *recv_error;
	bool dst_ran;
	int dst_console;
	unsigned dst_gen;
	bool disks_equal;
	unsigned memory_diff;
	int fd; /* the destination's end */
	void (*on_dst)(struct run *r, struct vmm *dst); /* once the guest runs there */
};

static bool same_file(const char *a, const char *b)
{
	return sh("cmp -s '%s' '%s'", a, b) == 0;
}

/* The pages that differ between the paused source and the loaded destination. */
static unsigned memory_diff(struct vmm *a, struct vmm *b)
{
	unsigned n = 0;

	for (size_t i = 0; i < vmm_memory_count(a); i++) {
		const struct vmm_mem_region *r = vmm_memory_region(a, i);

		for (uint64_t off = 0; off < r->size; off += 4096) {
			uint8_t *pb = vmm_gpa_to_hva(b, r->gpa + off, 4096);

			if (!pb || memcmp(r->hva + off, pb, 4096)) {
				if (n < 4)
					printf("# page at 0x%llx differs\n",
					       (unsigned long long)(r->gpa + off));
				n++;
			}
		}
	}
	return n;
}

static void *receiver_thread(void *opaque)
{
	struct run *r = opaque;
	struct vmm_config cfg = r->dst_cfg;
	struct vmm *dst = NULL;
	int ret;

	cfg.console_fd = r->dst_console;
	cfg.disks_later = true;
	ret = vmm_new(&cfg, &dst);
	if (ret == 0)
		ret = vmm_migrate_recv(dst, r->fd, r->opts.shared_disks, NULL);
	if (ret == 0 && cfg.ndisks)
		r->disks_equal = same_file(r->src_cfg.disks[0].path, cfg.disks[0].path);
	if (ret == 0)
		r->memory_diff = memory_diff(r->src, dst);
	if (ret == 0)
		ret = vmm_migrate_commit(dst, r->fd);
	if (ret == 0)
		ret = vmm_start(dst);
	if (ret == 0)
		ret = vmm_migrate_running(r->fd);
	r->recv_ret = ret;
	if (ret < 0)
		r->recv_error = xstrdup(vi_error_message());
	if (ret == 0) {
		r->dst_ran = true;
		if (r->on_dst)
			r->on_dst(r, dst);
	}
	close(r->fd);
	vmm_request_exit(dst, VMM_EXIT_STOPPED);
	vmm_free(dst);
	return NULL;
}

/* Boots the source, lets it run to `warm` generations (or texts), migrates it. */
static void migrate(struct run *r, const char *warm)
{
	struct proxy p = { .mode = r->mode, .at = r->at };
	struct vmm_config cfg = r->src_cfg;
	pthread_t receiver;
	int a[2], b[2], ret;

	cfg.console_fd = memfd_create("src", MFD_CLOEXEC);
	r->src_cfg.console_fd = cfg.console_fd;
	r->dst_console = memfd_create("dst", MFD_CLOEXEC);
	ret = boot_vm(&cfg, &r->src);
	if (ret == 0)
		ret = vmm_start(r->src);
	is_int(ret, 0, "the source VM runs%s%s", ret ? ": " : "", ret ? vi_error_message() : "");
	if (ret < 0)
		return;
	ok(wait_text(cfg.console_fd, warm), "its guest printed '%s'", warm);
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a);
	socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b);
	p.src = a[1];
	p.dst = b[0];
	r->fd = b[1];
	pthread_create(&p.thread, NULL, proxy_thread, &p);
	pthread_create(&receiver, NULL, receiver_thread, r);
	r->m.w = &r->w;
	r->send_ret = vmm_migrate_send(r->src, a[0], &r->opts, &r->m);
	if (r->send_ret < 0)
		r->send_error = xstrdup(vi_error_message());
	close(a[0]);
	pthread_join(receiver, NULL);
	pthread_join(p.thread, NULL);
}

static void run_release(struct run *r)
{
	vmm_request_exit(r->src, VMM_EXIT_STOPPED);
	vmm_free(r->src);
	close(r->src_cfg.console_fd);
	close(r->dst_console);
	free(r->send_error);
	free(r->recv_error);
}

/* A raw disk with data at its start and end and a hole between. */
static char *make_raw_disk(const char *name)
{
	char *path = xasprintf("%s/%s", tmpdir, name);

	sh("rm -f '%s'; head -c 65536 /dev/urandom > '%s'; truncate -s 8M '%s'; "
	   "head -c 4096 /dev/urandom | dd of='%s' bs=4096 seek=2047 conv=notrunc status=none",
	   path, path, path, path);
	return path;
}

static struct vmm_disk disk_of(const char *path, int format)
{
	return (struct vmm_disk){ .path = path, .format = format };
}

/* --- the cases ---------------------------------------------------------------------------- */

static void stamps_on_dst(struct run *r, struct vmm *dst)
{
	(void)dst;
	r->dst_gen = last_gen(r->src_cfg.console_fd);
	wait_gen(r->dst_console, r->dst_gen + 2);
}

static void test_stamps(void)
{
	char *src_disk = make_raw_disk("src.raw"), *dst_disk = xasprintf("%s/dst.raw", tmpdir);
	struct vmm_disk sd = disk_of(src_disk, VI_DISK_RAW), dd = disk_of(dst_disk, VI_DISK_RAW);
	struct run r = {
		.src_cfg = { .kernel = guest("stamps"), .cpus = 1, .memory = 64 * MiB,
			     .disks = &sd, .ndisks = 1 },
		/* Slow enough for several passes over what the guest dirties. */
		.opts = { .bandwidth = 40 * MiB, .downtime_ms = 100 },
		.on_dst = stamps_on_dst,
	};
	char *out;

	r.dst_cfg = r.src_cfg;
	r.dst_cfg.disks = &dd;
	migrate(&r, "stamps: gen 2 ok");
	is_int(r.send_ret, 0, "the migration succeeds%s%s", r.send_error ? ": " : "",
	       r.send_error ? r.send_error : "");
	is_int(r.recv_ret, 0, "and the destination takes the guest over%s%s",
	       r.recv_error ? ": " : "", r.recv_error ? r.recv_error : "");
	ok(r.m.iteration >= 2, "in %u iterations", r.m.iteration);
	ok(r.m.downtime_ms > 0 && r.m.total_ms >= r.m.downtime_ms,
	   "total %.0f ms, downtime %.0f ms, %llu bytes", r.m.total_ms, r.m.downtime_ms,
	   (unsigned long long)atomic_load(&r.w.offset));
	ok(vmm_paused(r.src), "the source is left paused, to end");
	ok(r.disks_equal, "the disk file arrived byte for byte, its hole too");
	is_int(r.memory_diff, 0, "the destination's memory is the source's, page for page");
	ok(last_gen(r.dst_console) >= r.dst_gen + 2,
	   "the destination goes on from generation %u to %u", r.dst_gen, last_gen(r.dst_console));
	out = read_fd(r.dst_console);
	ok(!strstr(out, "CORRUPT") && !strstr(out, "stamps: start"),
	   "without a corrupt page and without starting again");
	if (strstr(out, "CORRUPT"))
		printf("# %s\n", out);
	printf("# 64 MiB stamps over a socket pair at 40 MiB/s: %u iterations, total %.0f ms, "
	       "downtime %.0f ms\n", r.m.iteration, r.m.total_ms, r.m.downtime_ms);
	free(out);
	run_release(&r);
	free((char *)r.src_cfg.kernel);

	/* Unlimited, as fast as the socket goes. */
	memset(&r, 0, sizeof(r));
	r.src_cfg = (struct vmm_config){ .kernel = guest("stamps"), .cpus = 1, .memory = 256 * MiB };
	r.dst_cfg = r.src_cfg;
	r.on_dst = stamps_on_dst;
	migrate(&r, "stamps: gen 2 ok");
	is_int(r.send_ret, 0, "a 256 MiB guest migrates at full speed%s%s",
	       r.send_error ? ": " : "", r.send_error ? r.send_error : "");
	ok(last_gen(r.dst_console) >= r.dst_gen + 2, "and goes on there");
	printf("# 256 MiB stamps, unlimited: %u iterations, total %.0f ms, downtime %.0f ms, "
	       "%llu bytes\n", r.m.iteration, r.m.total_ms, r.m.downtime_ms,
	       (unsigned long long)atomic_load(&r.w.offset));
	run_release(&r);
	free((char *)r.src_cfg.kernel);
	unlink(dst_disk);
	free(src_disk);
	free(dst_disk);
}

static void disk_writer_on_dst(struct run *r, struct vmm *dst)
{
	vmm_console_input(dst, (const uint8_t *)"q", 1);
	wait_text(r->dst_console, "disk-writer: ");
	for (int i = 0; i < 1200 && !console_has(r->dst_console, "disk-writer: ok") &&
			!console_has(r->dst_console, "FAIL");
	     i++)
		usleep(50000);
}

static void test_disk_writer(void)
{
	char *base = make_raw_disk("base.raw"), *src = xasprintf("%s/src.qcow2", tmpdir),
	     *dst = xasprintf("%s/dst.qcow2", tmpdir);
	struct vmm_disk sd = disk_of(src, VI_DISK_QCOW2), dd = disk_of(dst, VI_DISK_QCOW2);
	struct run r = {
		.src_cfg = { .kernel = guest("disk-writer"), .cpus = 1, .memory = 64 * MiB,
			     .disks = &sd, .ndisks = 1 },
		.opts = { .bandwidth = 8 * MiB },
		.on_dst = disk_writer_on_dst,
	};
	char *out;

	is_int(image_create_overlay(src, base, true), 0, "an overlay on a raw base");
	r.dst_cfg = r.src_cfg;
	r.dst_cfg.disks = &dd;
	migrate(&r, "disk-writer: 128 writes");
	is_int(r.send_ret, 0, "a guest writing its disk migrates%s%s", r.send_error ? ": " : "",
	       r.send_error ? r.send_error : "");
	ok(atomic_load(&r.m.disk_bytes) > 0, "with %llu bytes of disk file",
	   (unsigned long long)atomic_load(&r.m.disk_bytes));
	ok(r.disks_equal, "the overlay arrived byte for byte");
	out = read_fd(r.dst_console);
	ok(strstr(out, "disk-writer: ok") != NULL,
	   "and the guest finds every write it made, on either host, on the destination");
	if (!strstr(out, "disk-writer: ok"))
		printf("# %s\n", out);
	ok(sh("qemu-img check -q '%s'", dst) == 0, "qemu-img check finds the overlay clean");
	free(out);
	run_release(&r);
	free((char *)r.src_cfg.kernel);
	free(base);
	free(src);
	free(dst);
}

/* A failure before "commit": the source goes on, the destination has nothing. */
static void test_failure(enum proxy_mode mode, uint64_t at, const char *what)
{
	char *src_disk = make_raw_disk("src.raw"), *dst_disk = xasprintf("%s/dst.raw", tmpdir);
	struct vmm_disk sd = disk_of(src_disk, VI_DISK_RAW), dd = disk_of(dst_disk, VI_DISK_RAW);
	struct run r = {
		.src_cfg = { .kernel = guest("stamps"), .cpus = 1, .memory = 64 * MiB,
			     .disks = &sd, .ndisks = 1 },
		.mode = mode,
		.at = at,
	};
	unsigned gen;

	r.dst_cfg = r.src_cfg;
	r.dst_cfg.disks = &dd;
	migrate(&r, "stamps: gen 1 ok");
	ok(r.send_ret < 0, "%s: the migration fails: %s", what,
	   r.send_error ? r.send_error : "(no error)");
	ok(r.recv_ret < 0 && !r.dst_ran, "nothing runs on the destination: %s",
	   r.recv_error ? r.recv_error : "(no error)");
	ok(access(dst_disk, F_OK) < 0, "which removed the disk file it made");
	ok(!vmm_paused(r.src) && !r.m.unconfirmed, "the source runs on");
	gen = last_gen(r.src_cfg.console_fd);
	ok(wait_gen(r.src_cfg.console_fd, gen + 1) &&
		   !console_has(r.src_cfg.console_fd, "CORRUPT"),
	   "its guest makes generation %u, intact", gen + 1);
	if (mode == PROXY_FLIP)
		ok(r.send_error && strstr(r.send_error, "the destination refused the VM: ") &&
			   strstr(r.send_error, "fails its checksum"),
		   "the source hears why, the section named: %s", r.send_error);
	run_release(&r);
	free((char *)r.src_cfg.kernel);
	unlink(dst_disk);
	free(src_disk);
	free(dst_disk);
}

/* A guest that dirties memory faster than the link carries it, and a timeout: the
 * migration gives up and the guest runs on at the source; or, throttled, it ends. */
static void test_converge(int converge, unsigned timeout_s, const char *what)
{
	struct run r = {
		.src_cfg = { .kernel = guest("stamps"), .cpus = 1, .memory = 64 * MiB },
		.opts = { .bandwidth = 4 * MiB, .downtime_ms = 10, .converge = converge,
			  .timeout_s = timeout_s },
		.on_dst = stamps_on_dst,
	};
	unsigned gen;

	r.dst_cfg = r.src_cfg;
	migrate(&r, "stamps: gen 1 ok");
	if (converge == VMM_CONVERGE_AUTO && !timeout_s) {
		is_int(r.send_ret, 0, "%s: the migration ends%s%s", what,
		       r.send_error ? ": " : "", r.send_error ? r.send_error : "");
		ok(r.dst_ran && !console_has(r.dst_console, "CORRUPT"),
		   "the guest runs on there, whole, after %u iterations", r.m.iteration);
		printf("# throttled: %u iterations, total %.0f ms, downtime %.0f ms\n",
		       r.m.iteration, r.m.total_ms, r.m.downtime_ms);
	} else {
		is_int(r.send_ret, -VI_ETIMEOUT, "%s: the migration gives up: %s", what,
		       r.send_error ? r.send_error : "(no error)");
		ok(!r.dst_ran, "nothing runs on the destination");
		ok(!vmm_paused(r.src), "the source runs on");
		gen = last_gen(r.src_cfg.console_fd);
		ok(wait_gen(r.src_cfg.console_fd, gen + 1), "its guest makes generation %u",
		   gen + 1);
	}
	if (converge == VMM_CONVERGE_ABORT)
		is_str(r.send_error ? r.send_error : "",
		       "the guest dirties memory faster than the link can carry it",
		       "and says why");
	run_release(&r);
	free((char *)r.src_cfg.kernel);
}

/* "commit" went out, "running" never came: the guest runs there, paused here. */
static void test_unconfirmed(void)
{
	struct run r = {
		.src_cfg = { .kernel = guest("stamps"), .cpus = 1, .memory = 64 * MiB },
		.mode = PROXY_NO_RUNNING,
		.on_dst = stamps_on_dst,
	};

	r.dst_cfg = r.src_cfg;
	migrate(&r, "stamps: gen 1 ok");
	ok(r.send_ret < 0 && r.m.unconfirmed, "the source reports the migration unconfirmed: %s",
	   r.send_error ? r.send_error : "(no error)");
	ok(r.send_error && strstr(r.send_error, "unconfirmed") &&
		   strstr(r.send_error, "the VM stays paused here"),
	   "and says that the VM stays paused");
	ok(vmm_paused(r.src), "the source VM is paused");
	ok(r.dst_ran, "the destination runs the guest");
	run_release(&r);
	free((char *)r.src_cfg.kernel);
}

int main(void)
{
	struct vmm_kvm_info info;

	signal(SIGPIPE, SIG_IGN);
	if (!mkdtemp(tmpdir)) {
		ok(0, "cannot make a temporary directory: %s", strerror(errno));
		return done();
	}
	if (vmm_kvm_probe(&info) < 0) {
		skip("no usable KVM: %s", vi_error_message());
		rmdir(tmpdir);
		return done();
	}
	test_stamps();
	test_disk_writer();
	/* Byte 70000 is in the first page run's data: the zero page's... or the next. */
	test_failure(PROXY_FLIP, 70000, "a bit flipped in a page run");
	test_failure(PROXY_CUT, 1 << 20, "the destination dies mid-stream");
	test_failure(PROXY_NO_READY, 0, "'ready' never reaches the source");
	test_unconfirmed();
	test_converge(VMM_CONVERGE_ABORT, 0, "converge abort");
	test_converge(VMM_CONVERGE_AUTO, 1, "a timeout of 1 s");
	test_converge(VMM_CONVERGE_AUTO, 0, "converge auto");
	sh("rm -rf %s", tmpdir);
	return done();
}
