/* A child process writes through lib/image and flushes now and then, and is
 * killed with SIGKILL at a random moment: qemu-img check must find no errors
 * (leaks are allowed), our check must count the same leaks, and every sector
 * must hold what the last flushed write put there or what a later write did.
 * Each sector written carries the number of the write, to tell them apart. */
#include <signal.h>
#include <time.h>

#include "../lib/image-test.h"
#include "tap.h"

#define SECTOR 512
#define DISK_SIZE (8u << 20)
#define SECTORS (DISK_SIZE / SECTOR)
#define MAX_OPS 20000

struct op {
	uint32_t first, count;
	bool zero;
	bool flush_after;
};

static struct op ops[MAX_OPS + 1];

static void make_ops(uint64_t seed)
{
	uint64_t s = seed;
	for (uint32_t i = 1; i <= MAX_OPS; i++) {
		ops[i].count = 1 + (uint32_t)rnd(&s, rnd(&s, 4) ? 16 : 300);
		ops[i].first = (uint32_t)rnd(&s, SECTORS - ops[i].count + 1);
		ops[i].zero = rnd(&s, 12) == 0;
		ops[i].flush_after = rnd(&s, 20) == 0;
	}
}

static uint64_t tag(uint32_t op, uint32_t sector)
{
	return ((uint64_t)op << 32 | sector) ^ 0x9e3779b97f4a7c15ull;
}

static void fill(uint64_t *buf, uint32_t op, uint32_t first, uint32_t count)
{
	for (uint32_t i = 0; i < count; i++)
		for (unsigned w = 0; w < SECTOR / 8; w++)
			buf[i * (SECTOR / 8) + w] = tag(op, first + i);
}

/* The child: writes ops in order, reporting each flushed op number. */
static void __attribute__((noreturn)) writer(const char *path, int report)
{
	uint64_t *buf = xmalloc(300 * SECTOR);
	struct image *img;

	if (image_open(path, IMAGE_QCOW2, IMAGE_OPEN_WRITE, &img) < 0)
		_exit(2);
	for (uint32_t i = 1; i <= MAX_OPS; i++) {
		const struct op *o = &ops[i];
		int rc;
		if (o->zero) {
			rc = image_write_zeroes(img, (uint64_t)o->first * SECTOR,
						(uint64_t)o->count * SECTOR);
		} else {
			fill(buf, i, o->first, o->count);
			rc = image_pwrite(img, buf, (size_t)o->count * SECTOR,
					  (uint64_t)o->first * SECTOR);
		}
		if (rc < 0)
			_exit(3);
		if (o->flush_after) {
			if (image_flush(img) < 0)
				_exit(4);
			if (write(report, &i, sizeof(i)) != sizeof(i))
				_exit(5);
		}
	}
	pause();
	_exit(0);
}

/* Is what sector s holds (one write's number or zeros) allowed, given that
 * writes up to `flushed` are durable? */
static bool sector_ok(uint32_t s, const uint64_t *data, uint32_t flushed, bool backed)
{
	bool zero = true, one = true;
	for (unsigned w = 0; w < SECTOR / 8; w++) {
		zero &= data[w] == 0;
		one &= data[w] == data[0];
	}
	uint32_t last = 0; /* the last flushed writer; 0 is what lay there first */
	for (uint32_t i = 1; i <= flushed; i++)
		if (s >= ops[i].first && s < ops[i].first + ops[i].count)
			last = i;
	bool last_zero = last ? ops[last].zero : !backed;
	if (zero ? last_zero : one && data[0] == tag(last, s) && (last || backed))
		return true;
	/* Or any later write to this sector, flushed or not. */
	for (uint32_t i = flushed + 1; i <= MAX_OPS; i++) {
		if (s < ops[i].first || s >= ops[i].first + ops[i].count)
			continue;
		if (zero ? ops[i].zero : one && !ops[i].zero && data[0] == tag(i, s))
			return true;
	}
	return false;
}

static bool run_once(unsigned n, uint64_t seed, unsigned version, uint32_t cs, bool backed,
		     unsigned delay_ms)
{
	const char *path = tpath("crash%u.qcow2", n);
	struct image_create_opts o = {.format = IMAGE_QCOW2, .size = DISK_SIZE, .version = version,
				      .cluster_size = cs, .backing_format = IMAGE_RAW};
	uint32_t flushed = 0, v;
	int pipefd[2], status;
	bool good = true;

	make_ops(seed);
	if (backed) {
		uint64_t *base = xmalloc(DISK_SIZE);
		fill(base, 0, 0, SECTORS);
		int fd = open(tpath("crash-base.raw"), O_CREAT | O_TRUNC | O_WRONLY, 0644);
		if (fd < 0 || write(fd, base, DISK_SIZE) != DISK_SIZE)
			abort();
		close(fd);
		free(base);
		o.backing = "crash-base.raw";
	}
	if (image_create(path, &o) < 0 || pipe(pipefd) < 0) {
		printf("# setup: %s\n", vi_error_message());
		return false;
	}
	fflush(stdout);
	pid_t pid = fork();
	if (pid == 0) {
		close(pipefd[0]);
		writer(path, pipefd[1]);
	}
	close(pipefd[1]);
	nanosleep(&(struct timespec){0, (long)delay_ms * 1000000}, NULL);
	kill(pid, SIGKILL);
	waitpid(pid, &status, 0);
	while (read(pipefd[0], &v, sizeof(v)) == sizeof(v))
		flushed = v;
	close(pipefd[0]);
	if (!WIFSIGNALED(status)) {
		printf("# the writer ended by itself (status %d)\n", status);
		return false;
	}

	struct qemu_check qc;
	struct image_check_result res;
	if (qemu_check(path, &qc) < 0 || qc.corruptions || qc.check_errors) {
		printf("# qemu-img check: %lld corruptions, %lld check errors\n", qc.corruptions,
		       qc.check_errors);
		good = false;
	}
	if (image_check(path, IMAGE_QCOW2, 0, &res) < 0 || res.leaks != (uint64_t)qc.leaks ||
	    res.corruptions) {
		printf("# our check: %llu leaks, %llu corruptions; qemu-img: %lld leaks (%s)\n",
		       (unsigned long long)res.leaks, (unsigned long long)res.corruptions, qc.leaks,
		       vi_error_message());
		good = false;
	}
	image_check_result_release(&res);

	struct image *img;
	uint64_t *data = xmalloc(DISK_SIZE);
	if (image_open(path, IMAGE_QCOW2, 0, &img) < 0 || image_pread(img, data, DISK_SIZE, 0) < 0) {
		printf("# cannot read back: %s\n", vi_error_message());
		good = false;
	} else {
		for (uint32_t s = 0; s < SECTORS; s++) {
			if (!sector_ok(s, data + s * (SECTOR / 8), flushed, backed)) {
				printf("# sector %u holds %#llx, not what write %u left\n", s,
				       (unsigned long long)data[s * (SECTOR / 8)], flushed);
				good = false;
				break;
			}
		}
		image_close(img);
	}
	free(data);

	/* Our repair leaves nothing for qemu-img to complain about. */
	if (image_check(path, IMAGE_QCOW2, IMAGE_CHECK_REPAIR_LEAKS, &res) < 0 ||
	    res.leaks_fixed != (uint64_t)qc.leaks || !qemu_clean(path)) {
		printf("# repair: %llu fixed of %lld (%s)\n", (unsigned long long)res.leaks_fixed,
		       qc.leaks, vi_error_message());
		good = false;
	}
	image_check_result_release(&res);
	printf("# run %u: killed after %u ms, %u writes flushed, %lld clusters leaked\n", n,
	       delay_ms, flushed, qc.leaks);
	unlink(path);
	return good;
}

int main(void)
{
	static const uint32_t sizes[] = {4096, 65536, 16384, 2u << 20};
	uint64_t s = 4242;

	test_dir_make();
	for (unsigned n = 0; n < 24; n++) {
		unsigned version = n % 3 ? 3 : 2, delay = 5 + (unsigned)rnd(&s, 250);
		uint32_t cs = sizes[n % 4];
		bool backed = n % 2;
		ok(run_once(n, 1000 + n, version, cs, backed, delay),
		   "killed writer %u (v%u, %u-byte clusters%s): no errors, flushed data intact", n,
		   version, cs, backed ? ", over raw" : "");
	}
	return done();
}
