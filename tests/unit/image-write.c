/* Randomized writes through lib/image over backing chains (qcow2 over qcow2
 * over raw), mirrored into a raw reference: qemu-img must find the result
 * clean and equal to the reference. Also several threads writing into the
 * same clusters at once. */
#include <pthread.h>

#include "../lib/image-test.h"
#include "tap.h"

static const uint32_t cluster_sizes[] = {4096, 8192, 16384, 65536, 262144, 2u << 20};

struct workload {
	uint64_t seed;
	unsigned version;
	uint32_t cluster_size;
	int chain;       /* 0: no backing, 1: over raw, 2: over qcow2 over raw */
	bool small_cache;
	unsigned ops;
};

/* base.raw with random data, mid.qcow2 made by qemu-img over it with some
 * writes of its own; returns the backing name for the top image or NULL. */
static const char *make_chain(const struct workload *w, uint64_t size, uint64_t *s)
{
	if (!w->chain)
		return NULL;
	uint64_t base_size = size - rnd(s, size / 4) / 512 * 512; /* may be smaller */
	char *data = xmalloc(base_size);
	rnd_fill(s, data, base_size);
	int fd = open(tpath("base.raw"), O_CREAT | O_TRUNC | O_WRONLY, 0644);
	if (fd < 0 || write(fd, data, base_size) != (ssize_t)base_size)
		abort();
	close(fd);
	free(data);
	if (w->chain == 1)
		return "base.raw";
	must("qemu-img create -q -f qcow2 -o compat=%s,cluster_size=%u -b base.raw -F raw '%s'",
	     w->version == 2 ? "0.10" : "1.1", cluster_sizes[rnd(s, 4)], tpath("mid.qcow2"));
	must("qemu-io -f qcow2 -c 'write -P 0x5a %llu 70000' -c 'write -z %llu 200000' '%s' >/dev/null",
	     (unsigned long long)rnd(s, size / 2), (unsigned long long)rnd(s, size / 2) / 512 * 512,
	     tpath("mid.qcow2"));
	return "mid.qcow2";
}

static bool run_workload(const struct workload *w)
{
	uint64_t s = w->seed, size = (4 + rnd(&s, 12)) << 20;
	size += rnd(&s, 64) * 512;
	const char *backing = make_chain(w, size, &s);
	struct image_create_opts o = {.format = IMAGE_QCOW2, .size = size, .version = w->version,
				      .cluster_size = w->cluster_size, .backing = backing,
				      .backing_format = IMAGE_PROBE};
	struct image *img;
	char *buf = xmalloc(1 << 20), *check = xmalloc(1 << 20);
	bool ok = true;
	int ref;

	unlink(tpath("top.qcow2"));
	if (image_create(tpath("top.qcow2"), &o) < 0 ||
	    must("qemu-img convert -O raw '%s' '%s'", tpath("top.qcow2"), tpath("ref.raw")) ||
	    image_open(tpath("top.qcow2"), IMAGE_QCOW2, IMAGE_OPEN_WRITE, &img) < 0) {
		printf("# setup failed: %s\n", vi_error_message());
		free(buf);
		free(check);
		return false;
	}
	if (w->small_cache)
		image_set_cache_size(img, 0);
	ref = open(tpath("ref.raw"), O_RDWR);
	for (unsigned i = 0; i < w->ops && ok; i++) {
		uint64_t r = rnd(&s, 100), len = 1 + rnd(&s, rnd(&s, 4) ? 70000 : 1 << 20);
		size = image_size(img);
		if (len > size)
			len = size;
		uint64_t off = rnd(&s, size - len + 1);
		int rc = 0;
		if (r < 70) {
			rnd_fill(&s, buf, len);
			rc = image_pwrite(img, buf, len, off);
			if (pwrite(ref, buf, len, (off_t)off) != (ssize_t)len)
				abort();
		} else if (r < 80) {
			rc = image_write_zeroes(img, off, len);
			memset(buf, 0, len);
			if (pwrite(ref, buf, len, (off_t)off) != (ssize_t)len)
				abort();
		} else if (r < 90) {
			rc = image_pread(img, buf, len, off);
			if (rc == 0 && pread(ref, check, len, (off_t)off) == (ssize_t)len &&
			    memcmp(buf, check, len)) {
				printf("# seed %llu op %u: read of %llu at %llu differs\n",
				       (unsigned long long)w->seed, i, (unsigned long long)len,
				       (unsigned long long)off);
				ok = false;
			}
		} else if (r < 98) {
			rc = image_flush(img);
		} else {
			uint64_t grow = size + (1 + rnd(&s, 8)) * 512 * 1024;
			rc = image_resize(img, grow);
			if (ftruncate(ref, (off_t)grow) < 0)
				abort();
		}
		if (rc < 0) {
			printf("# seed %llu op %u: %s\n", (unsigned long long)w->seed, i,
			       vi_error_message());
			ok = false;
		}
	}
	close(ref);
	if (image_close(img) < 0) {
		printf("# close: %s\n", vi_error_message());
		ok = false;
	}
	free(buf);
	free(check);
	if (!qemu_clean(tpath("top.qcow2")))
		ok = false;
	if (w->chain == 2 && !qemu_clean(tpath("mid.qcow2")))
		ok = false;
	if (must("qemu-img compare -q '%s' '%s'", tpath("top.qcow2"), tpath("ref.raw")))
		ok = false;
	return ok;
}

/* Threads own quarters of every cluster and write into them at random, so
 * that they allocate the same clusters at the same moments. */
struct lane {
	struct image *img;
	int ref;
	unsigned id, nlanes;
	uint64_t seed;
	int failures;
};

static void *lane_run(void *arg)
{
	struct lane *l = arg;
	uint32_t cs = image_cluster_size(l->img), quarter = cs / l->nlanes;
	uint64_t s = l->seed, clusters = image_size(l->img) / cs;
	char *buf = xmalloc(quarter), *back = xmalloc(quarter);

	for (int i = 0; i < 3000 && !l->failures; i++) {
		uint64_t c = rnd(&s, clusters), start = rnd(&s, quarter);
		uint64_t len = 1 + rnd(&s, quarter - start);
		uint64_t off = c * cs + l->id * quarter + start;
		int rc;
		if (rnd(&s, 10) == 0) {
			rc = image_write_zeroes(l->img, off, len);
			memset(buf, 0, len);
		} else {
			rnd_fill(&s, buf, len);
			rc = image_pwrite(l->img, buf, len, off);
		}
		if (rc == 0 && pwrite(l->ref, buf, len, (off_t)off) != (ssize_t)len)
			abort();
		if (rc == 0)
			rc = image_pread(l->img, back, len, off);
		if (rc < 0 || memcmp(buf, back, len)) {
			printf("# lane %u: write of %llu at %llu: %s\n", l->id, (unsigned long long)len,
			       (unsigned long long)off, rc < 0 ? vi_error_message() : "reads back wrong");
			l->failures++;
		}
		if (rnd(&s, 500) == 0)
			image_flush(l->img);
	}
	free(buf);
	free(back);
	return NULL;
}

static void test_threads(unsigned version, bool over_raw)
{
	const unsigned nlanes = 4;
	struct image_create_opts o = {.format = IMAGE_QCOW2, .size = 8 << 20, .version = version,
				      .cluster_size = 4096, .backing_format = IMAGE_RAW};
	struct lane lanes[4];
	pthread_t th[4];
	struct image *img;
	uint64_t s = 99;
	int failures = 0;

	unlink(tpath("mt.qcow2"));
	if (over_raw) {
		char *data = xmalloc(o.size);
		rnd_fill(&s, data, o.size);
		int fd = open(tpath("mt-base.raw"), O_CREAT | O_TRUNC | O_WRONLY, 0644);
		if (fd < 0 || write(fd, data, o.size) != (ssize_t)o.size)
			abort();
		close(fd);
		free(data);
		o.backing = "mt-base.raw";
	}
	if (image_create(tpath("mt.qcow2"), &o) < 0 ||
	    must("qemu-img convert -O raw '%s' '%s'", tpath("mt.qcow2"), tpath("mt-ref.raw")) ||
	    image_open(tpath("mt.qcow2"), IMAGE_QCOW2, IMAGE_OPEN_WRITE, &img) < 0) {
		ok(0, "threads: setup: %s", vi_error_message());
		return;
	}
	int ref = open(tpath("mt-ref.raw"), O_RDWR);
	for (unsigned i = 0; i < nlanes; i++) {
		lanes[i] = (struct lane){img, ref, i, nlanes, 1000 + i, 0};
		pthread_create(&th[i], NULL, lane_run, &lanes[i]);
	}
	for (unsigned i = 0; i < nlanes; i++) {
		pthread_join(th[i], NULL);
		failures += lanes[i].failures;
	}
	close(ref);
	is_int(failures, 0, "threads (v%u%s): every write reads back while others write", version,
	       over_raw ? ", over raw" : "");
	ok(image_close(img) == 0, "threads: image closes");
	ok(qemu_clean(tpath("mt.qcow2")), "threads: qemu-img check finds the image clean");
	ok(!must("qemu-img compare -q '%s' '%s'", tpath("mt.qcow2"), tpath("mt-ref.raw")),
	   "threads: qemu-img compare matches the reference");
}

int main(void)
{
	test_dir_make();
	for (uint64_t seed = 1; seed <= 30; seed++) {
		uint64_t s = seed * 7919;
		struct workload w = {
			.seed = seed,
			.version = rnd(&s, 3) ? 3 : 2,
			.cluster_size = cluster_sizes[rnd(&s, ARRAY_SIZE(cluster_sizes))],
			.chain = (int)rnd(&s, 3),
			.small_cache = rnd(&s, 3) == 0,
			.ops = 150,
		};
		ok(run_workload(&w), "seed %llu: v%u, %u-byte clusters, %s%s: clean and equal",
		   (unsigned long long)seed, w.version, w.cluster_size,
		   w.chain == 0 ? "no backing" : w.chain == 1 ? "over raw" : "over qcow2 over raw",
		   w.small_cache ? ", small cache" : "");
	}
	test_threads(3, false);
	test_threads(2, true);
	return done();
}
