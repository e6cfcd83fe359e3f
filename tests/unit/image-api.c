/* The rest of lib/image's interface, judged by qemu-img: creation, instant
 * overlays, information, growing, zeroing and discarding, block status,
 * conversion, changing the backing file, refcount table growth, raw images. */
#include <time.h>

#include "../lib/image-test.h"
#include "tap.h"

/* A string or number field of `qemu-img info --output=json`, as text. */
static char *qemu_info(const char *path, const char *key)
{
	char *out, *value = NULL;
	struct json_object *doc, *v, *obj;

	sh(&out, "qemu-img info -U --output=json '%s'", path);
	doc = json_tokener_parse(out);
	obj = doc;
	if (doc && json_object_object_get_ex(doc, "format-specific", &v) &&
	    json_object_object_get_ex(v, "data", &v) && json_object_object_get_ex(v, key, NULL))
		obj = v;
	if (obj && json_object_object_get_ex(obj, key, &v))
		value = xstrdup(json_object_get_string(v));
	json_object_put(doc);
	free(out);
	return value ? value : xstrdup("(none)");
}

static void is_info(const char *path, const char *key, const char *want, const char *what)
{
	char *got = qemu_info(path, key);
	is_str(got, want, "%s: qemu-img info says %s is %s", what, key, want);
	free(got);
}

static void write_file(const char *path, uint64_t size, uint64_t seed)
{
	char *data = xmalloc(size);
	uint64_t s = seed;
	rnd_fill(&s, data, size);
	int fd = open(path, O_CREAT | O_TRUNC | O_WRONLY, 0644);
	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		abort();
	close(fd);
	free(data);
}

static void test_create(void)
{
	struct image_create_opts o = {.format = IMAGE_QCOW2, .size = 1ull << 40};
	const char *p = tpath("big.qcow2");
	struct image_info info;
	struct image *img;

	ok(image_create(p, &o) == 0, "create a 1 TiB qcow2 image");
	is_info(p, "virtual-size", "1099511627776", "1 TiB");
	is_info(p, "cluster-size", "65536", "1 TiB");
	is_info(p, "compat", "1.1", "1 TiB");
	is_info(p, "refcount-bits", "16", "1 TiB");
	ok(qemu_clean(p), "1 TiB: qemu-img check finds it clean");
	ok(image_open(p, IMAGE_PROBE, 0, &img) == 0, "it opens, probed");
	ok(image_get_info(img, false, &info) == 0, "info");
	is_int(info.format, IMAGE_QCOW2, "info: format");
	is_int(info.virtual_size, 1ull << 40, "info: virtual size");
	is_int(info.cluster_size, 65536, "info: cluster size");
	is_int(info.version, 3, "info: version");
	is_int(info.refcount_bits, 16, "info: refcount bits");
	is_int(info.allocated, 0, "info: nothing allocated");
	ok(!info.dirty && !info.corrupt && !info.backing_file, "info: clean, no backing file");
	ok(info.file_size < 1 << 20, "info: the file is small (%llu bytes)",
	   (unsigned long long)info.file_size);
	image_info_release(&info);
	image_close(img);

	o = (struct image_create_opts){.format = IMAGE_QCOW2, .size = 5 << 20, .version = 2,
				       .cluster_size = 4096};
	p = tpath("v2.qcow2");
	ok(image_create(p, &o) == 0, "create a version 2 image with 4 KiB clusters");
	is_info(p, "compat", "0.10", "v2");
	is_info(p, "cluster-size", "4096", "v2");
	ok(qemu_clean(p), "v2: qemu-img check finds it clean");

	o = (struct image_create_opts){.format = IMAGE_QCOW2};
	p = tpath("empty.qcow2");
	ok(image_create(p, &o) == 0, "create an empty image");
	ok(qemu_clean(p), "empty: qemu-img check finds it clean");
	ok(image_open(p, IMAGE_QCOW2, IMAGE_OPEN_WRITE, &img) == 0 &&
	   image_resize(img, 1 << 20) == 0 && image_pwrite(img, "x", 1, 5000) == 0 &&
	   image_close(img) == 0, "empty: grow it and write");
	ok(qemu_clean(p), "grown from empty: qemu-img check finds it clean");

	o = (struct image_create_opts){.format = IMAGE_RAW, .size = 3 << 20};
	p = tpath("new.raw");
	ok(image_create(p, &o) == 0, "create a raw image");
	is_info(p, "virtual-size", "3145728", "raw");
	is_info(p, "format", "raw", "raw");
}

static void test_overlay(void)
{
	const char *base = tpath("golden/base.qcow2"), *top = tpath("vms/top.qcow2");
	struct image_info info;
	struct image *img;
	struct timespec t0, t1;

	vi_mkdir_p(tpath("golden"), 0755);
	vi_mkdir_p(tpath("vms"), 0755);
	must("qemu-img create -q -f qcow2 '%s' 64M && qemu-io -c 'write -P 1 0 1M' -c "
	     "'write -P 2 60M 100k' '%s' >/dev/null", base, base);
	clock_gettime(CLOCK_MONOTONIC, &t0);
	ok(image_create_overlay(top, base, true) == 0, "an overlay on a golden image");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	printf("# overlay made in %.2f ms\n",
	       (t1.tv_sec - t0.tv_sec) * 1e3 + (t1.tv_nsec - t0.tv_nsec) / 1e6);
	is_info(top, "backing-filename", "../golden/base.qcow2", "overlay");
	is_info(top, "backing-filename-format", "qcow2", "overlay");
	is_info(top, "virtual-size", "67108864", "overlay");
	ok(qemu_clean(top), "overlay: qemu-img check finds it clean");
	ok(!must("qemu-img compare -q '%s' '%s'", top, base), "overlay: reads as its base");

	ok(image_open(top, IMAGE_PROBE, IMAGE_OPEN_WRITE, &img) == 0, "the overlay opens for writing");
	ok(image_get_info(img, true, &info) == 0, "info with the chain");
	ok(info.backing && !strcmp(info.backing->path, tpath("vms/../golden/base.qcow2")) &&
	   !info.backing->backing, "info: the chain has two layers, the base by its resolved path");
	is_str(info.backing_file, "../golden/base.qcow2", "info: the backing name as recorded");
	is_int(info.backing_format, IMAGE_QCOW2, "info: the backing format as recorded");
	image_info_release(&info);
	char buf[5000];
	memset(buf, 0x33, sizeof(buf));
	ok(image_pwrite(img, buf, sizeof(buf), 1000) == 0, "write into the overlay");
	ok(image_close(img) == 0, "close");
	ok(qemu_clean(top), "after the write qemu-img check finds it clean");
	ok(!must("qemu-io -f qcow2 -c 'read -P 1 0 1000' -c 'read -P 0x33 1000 5000' -c "
		 "'read -P 1 6000 1000000' '%s' >/dev/null", top),
	   "qemu-io reads the write and the base around it");

	/* The golden image moves: record its new place. */
	vi_mkdir_p(tpath("store"), 0755);
	rename(base, tpath("store/base.qcow2"));
	ok(image_set_backing(top, "../store/base.qcow2", IMAGE_PROBE) == 0, "set a new backing file");
	is_info(top, "backing-filename", "../store/base.qcow2", "rebased");
	is_info(top, "backing-filename-format", "qcow2", "rebased");
	ok(qemu_clean(top), "rebased: qemu-img check finds it clean");
	ok(!must("qemu-io -f qcow2 -c 'read -P 0x33 1000 5000' -c 'read -P 2 60M 100k' '%s' "
		 ">/dev/null", top), "rebased: reads through the new place");
	ok(image_set_backing(top, NULL, IMAGE_PROBE) == 0, "drop the backing file");
	is_info(top, "backing-filename", "(none)", "no backing");
	ok(!must("qemu-io -f qcow2 -c 'read -P 0 60M 100k' '%s' >/dev/null", top),
	   "without backing the rest reads as zeros");
}

/* Deleting the middle of base <- s1 <- top: top is rebased onto base. */
static void test_rebase(void)
{
	const char *base = tpath("rb-base.qcow2"), *s1 = tpath("rb-s1.qcow2"),
		   *top = tpath("rb-top.qcow2"), *ref = tpath("rb-ref.raw");
	struct image *img;

	must("qemu-img create -q -f qcow2 -o cluster_size=4096 '%s' 8M && qemu-io -c "
	     "'write -P 1 0 8M' '%s' >/dev/null", base, base);
	must("qemu-img create -q -f qcow2 -b rb-base.qcow2 -F qcow2 '%s' && qemu-io -c "
	     "'write -P 2 1M 2M' -c 'write -z 5M 1M' '%s' >/dev/null", s1, s1);
	must("qemu-img create -q -f qcow2 -b rb-s1.qcow2 -F qcow2 '%s' && qemu-io -c "
	     "'write -P 3 1500k 1M' '%s' >/dev/null", top, top);
	must("qemu-img convert -O raw '%s' '%s'", top, ref);
	ok(image_open(top, IMAGE_QCOW2, IMAGE_OPEN_WRITE, &img) == 0, "open the top layer");
	ok(image_rebase(img, "rb-base.qcow2", IMAGE_PROBE, NULL, NULL) == 0,
	   "rebase it past the middle layer");
	ok(image_backing(img) && !strcmp(image_path(image_backing(img)), base) &&
	   !image_backing(image_backing(img)), "it now reads through the base alone");
	ok(image_matches_file(img, ref), "and reads as before");
	ok(image_close(img) == 0, "close");
	is_info(top, "backing-filename", "rb-base.qcow2", "rebased");
	is_info(top, "backing-filename-format", "qcow2", "rebased");
	ok(qemu_clean(top), "rebased: qemu-img check finds it clean");
	ok(!must("qemu-img compare -q '%s' '%s'", top, ref), "rebased: qemu reads it as before");

	image_open(top, IMAGE_QCOW2, IMAGE_OPEN_WRITE, &img);
	ok(image_rebase(img, NULL, IMAGE_PROBE, NULL, NULL) == 0, "rebase onto nothing (flatten)");
	image_close(img);
	is_info(top, "backing-filename", "(none)", "flattened");
	ok(qemu_clean(top) && !must("qemu-img compare -q '%s' '%s'", top, ref),
	   "flattened: clean, and reads as before");
}

static void test_resize(void)
{
	const char *base = tpath("rs-base.raw"), *top = tpath("rs-top.qcow2");
	struct image_create_opts o = {.format = IMAGE_QCOW2, .size = 2 << 20, .backing = "rs-base.raw",
				      .backing_format = IMAGE_RAW, .cluster_size = 4096};
	struct image *img;

	write_file(base, 6 << 20, 5);
	for (unsigned version = 2; version <= 3; version++) {
		unlink(top);
		o.version = version;
		image_create(top, &o);
		image_open(top, IMAGE_QCOW2, IMAGE_OPEN_WRITE, &img);
		char buf[3000];
		memset(buf, 0x44, sizeof(buf));
		image_pwrite(img, buf, 1000, (2 << 20) - 1000);
		ok(image_resize(img, 3 << 20) == 0, "v%u: grow an overlay over a larger base", version);
		ok(image_resize(img, 10ull << 30) == 0, "v%u: grow to 10 GiB (a bigger L1 table)",
		   version);
		ok(image_pwrite(img, buf, sizeof(buf), (10ull << 30) - sizeof(buf)) == 0,
		   "v%u: write at the new end", version);
		ok(image_close(img) == 0, "v%u: close", version);
		is_info(top, "virtual-size", "10737418240", "grown");
		ok(qemu_clean(top), "v%u: qemu-img check finds the grown image clean", version);
		ok(!must("qemu-io -f qcow2 -c 'read -P 0 2M 1M' -c 'read -P 0x44 2096152 1000' -c "
			 "'read -P 0 3M 4M' -c 'read -P 0x44 10737415240 3000' '%s' >/dev/null", top),
		   "v%u: the grown area reads as zeros, not as the base", version);
	}
}

/* An L1 table bigger than one refcount block covers (2048 clusters of
 * 4 KiB): its allocation brings blocks for several groups along. */
static void test_huge_l1(void)
{
	struct image_create_opts o = {.format = IMAGE_QCOW2, .size = 1 << 20, .cluster_size = 4096};
	const char *p = tpath("huge-l1.qcow2");
	struct image *img;

	ok(image_create(p, &o) == 0 && image_open(p, IMAGE_QCOW2, IMAGE_OPEN_WRITE, &img) == 0,
	   "a 1 MiB image with 4 KiB clusters");
	ok(image_resize(img, 4ull << 40) == 0, "grows to 4 TiB (a 16 MiB L1 table)");
	ok(image_pwrite(img, "end", 3, (4ull << 40) - 3) == 0 && image_pwrite(img, "x", 1, 0) == 0,
	   "write at both ends");
	ok(image_close(img) == 0, "close");
	ok(qemu_clean(p), "qemu-img check finds it clean");
	ok(!must("qemu-io -f qcow2 -c 'read -P 0x78 0 1' -c 'read -P 0x64 4398046511103 1' '%s' "
		 ">/dev/null", p), "qemu-io reads both ends");
}

static void test_zero_discard(void)
{
	const char *base = tpath("zd-base.raw");
	struct image *img;
	struct image_info info;
	struct image_extent ext;
	char buf[65536];

	write_file(base, 4 << 20, 9);
	for (unsigned version = 2; version <= 3; version++) {
		const char *top = tpath("zd-%u.qcow2", version);
		struct image_create_opts o = {.format = IMAGE_QCOW2, .version = version,
					      .backing = "zd-base.raw", .backing_format = IMAGE_RAW};
		image_create(top, &o);
		image_open(top, IMAGE_QCOW2, IMAGE_OPEN_WRITE, &img);
		memset(buf, 0x55, sizeof(buf));
		for (int i = 0; i < 16; i++)
			image_pwrite(img, buf, sizeof(buf), (uint64_t)i << 16);
		ok(image_write_zeroes(img, 100000, 300000) == 0, "v%u: write zeroes", version);
		ok(image_block_status(img, 131072, 4096, &ext) == 0 && ext.allocated &&
		   ext.zero == (version == 3) && image_pread(img, buf, 4096, 131072) == 0 &&
		   !buf[0] && !memcmp(buf, buf + 1, 4095),
		   "v%u: a zeroed cluster reads as zeros, %s", version,
		   version == 3 ? "a zero cluster" : "written out");
		ok(image_block_status(img, 3 << 20, 4096, &ext) == 0 && !ext.zero && !ext.allocated,
		   "v%u: an untouched cluster comes from the base", version);
		ok(image_discard(img, 0, 1 << 20) == 0, "v%u: discard the first MiB", version);
		image_get_info(img, false, &info);
		is_int(info.allocated, version == 3 ? 1 << 20 : 0,
		       "v%u: discarded clusters %s", version,
		       version == 3 ? "stay as zero clusters over the base" : "are unallocated");
		image_info_release(&info);
		ok(image_close(img) == 0, "v%u: close", version);
		ok(qemu_clean(top), "v%u: qemu-img check finds it clean", version);
		if (version == 3)
			ok(!must("qemu-io -f qcow2 -c 'read -P 0 0 1M' '%s' >/dev/null", top),
			   "v3: discarded clusters read as zeros");
	}
	ok(!must("qemu-img convert -O raw '%s' '%s' && cmp -n 1048576 '%s' '%s'",
		 tpath("zd-2.qcow2"), tpath("zd-2.raw"), base, tpath("zd-2.raw")),
	   "v2: discarded clusters show the base through qemu too");
}

static uint64_t last_progress;

static void progress(uint64_t done, uint64_t total, void *opaque)
{
	if (done <= total && done >= *(uint64_t *)opaque)
		*(uint64_t *)opaque = done;
}

static void test_convert(void)
{
	const char *src = tpath("cv-src.qcow2"), *mid = tpath("cv-mid.qcow2");
	struct image_convert_opts co = {0};
	struct image_info info;
	struct image *img;

	must("qemu-img create -q -f qcow2 '%s' 32M && qemu-io -c 'write -P 1 1M 3M' -c "
	     "'write -P 2 20M 64k' '%s' >/dev/null", mid, mid);
	must("qemu-img create -q -f qcow2 -b cv-mid.qcow2 -F qcow2 '%s' && qemu-io -c "
	     "'write -P 3 2M 100k' -c 'write -z 1M 64k' '%s' >/dev/null", src, src);
	image_open(src, IMAGE_PROBE, 0, &img);

	co.create = (struct image_create_opts){.format = IMAGE_RAW};
	ok(image_convert(img, tpath("cv.raw"), &co) == 0, "convert a chain to raw");
	ok(!must("qemu-img compare -q '%s' '%s'", src, tpath("cv.raw")), "raw: same content");

	co.create = (struct image_create_opts){.format = IMAGE_QCOW2, .cluster_size = 4096,
					       .version = 2};
	ok(image_convert(img, tpath("cv.qcow2"), &co) == 0, "convert to a standalone qcow2");
	ok(!must("qemu-img compare -q '%s' '%s'", src, tpath("cv.qcow2")), "qcow2: same content");
	ok(qemu_clean(tpath("cv.qcow2")), "qcow2: qemu-img check finds it clean");

	co.create = (struct image_create_opts){.format = IMAGE_QCOW2, .backing = "cv-mid.qcow2",
					       .backing_format = IMAGE_QCOW2};
	ok(image_convert(img, tpath("cv-over.qcow2"), &co) == 0, "convert onto a backing file");
	ok(!must("qemu-img compare -q '%s' '%s'", src, tpath("cv-over.qcow2")),
	   "onto a backing file: same content");
	ok(qemu_clean(tpath("cv-over.qcow2")), "onto a backing file: clean");
	image_close(img);
	image_open(tpath("cv-over.qcow2"), IMAGE_PROBE, 0, &img);
	image_get_info(img, false, &info);
	is_int(info.allocated, 65536 + 131072, "onto a backing file: only the differences are "
	       "stored");
	image_info_release(&info);
	image_close(img);

	image_open(tpath("cv.raw"), IMAGE_RAW, 0, &img);
	co.create = (struct image_create_opts){.format = IMAGE_QCOW2};
	co.progress = progress;
	co.opaque = &last_progress;
	ok(image_convert(img, tpath("cv-back.qcow2"), &co) == 0, "convert raw to qcow2");
	image_close(img);
	image_open(tpath("cv-back.qcow2"), IMAGE_PROBE, 0, &img);
	image_get_info(img, false, &info);
	ok(info.allocated <= (4 << 20) + 65536 * 2, "raw to qcow2: zeros are left out (%llu bytes)",
	   (unsigned long long)info.allocated);
	image_info_release(&info);
	image_close(img);
	ok(!must("qemu-img compare -q '%s' '%s'", src, tpath("cv-back.qcow2")),
	   "raw to qcow2: same content");
	is_int(last_progress, 32 << 20, "raw to qcow2: progress reached the end");
}

/* Images are made under a hidden name and renamed into place; what dead
 * processes left aside is removed, and nothing else. */
static void test_made_aside(void)
{
	struct image_create_opts o = {.format = IMAGE_QCOW2, .size = 1 << 20};
	struct image *img;
	pid_t dead = fork();
	char *stale, *locked, *left;

	if (dead == 0)
		_exit(0);
	waitpid(dead, NULL, 0);
	must("mkdir '%s'", tpath("aside"));
	stale = xasprintf("%s/.a.qcow2.%d.0", tpath("aside"), (int)dead);
	locked = xasprintf("%s/.a.qcow2.%d.1", tpath("aside"), (int)dead);
	must("touch '%s' '%s/.a.qcow2.1.0' '%s/.a.qcow2.x.0' '%s/.b.qcow2.%d.0'", stale,
	     tpath("aside"), tpath("aside"), tpath("aside"), (int)dead);
	/* A writer in another PID namespace: the pid looks dead, the lock is held. */
	image_create(tpath("aside/locked.qcow2"), &o);
	must("mv '%s' '%s'", tpath("aside/locked.qcow2"), locked);
	image_open(locked, IMAGE_QCOW2, IMAGE_OPEN_WRITE, &img);

	ok(image_create(tpath("aside/a.qcow2"), &o) == 0, "create beside what others left");
	ok(qemu_clean(tpath("aside/a.qcow2")), "the image is in place, and clean");
	ok(access(stale, F_OK) < 0, "what a dead process left is removed");
	ok(access(locked, F_OK) == 0, "what a process holding the lock has is kept");
	char *want = xasprintf(".a.qcow2.1.0 .a.qcow2.%d.1 .a.qcow2.x.0 .b.qcow2.%d.0 a.qcow2 ",
			       (int)dead, (int)dead);
	sh(&left, "LC_ALL=C ls -A '%s' | tr '\\n' ' '", tpath("aside"));
	is_str(left, want, "a live process's, other shapes and other names are kept");
	free(left);
	image_close(img);
	is_int(image_create(tpath("aside/a.qcow2"), &o), -VI_ESTATE,
	       "an existing image is not replaced");
	sh(&left, "LC_ALL=C ls -A '%s' | tr '\\n' ' '", tpath("aside"));
	is_str(left, want, "and nothing is left aside");
	free(left);
	free(want);
	free(stale);
	free(locked);
}

/* Images whose refcount table must grow: 512-byte clusters and 64-bit
 * refcounts map only 2 MiB of file per table cluster. */
static void test_refcount_growth(void)
{
	const char *p = tpath("grow.qcow2");
	struct image *img;
	char *buf = xmalloc(1 << 20);
	uint64_t s = 77;
	int fd;

	must("qemu-img create -q -f qcow2 -o cluster_size=512,refcount_bits=64 '%s' 64M", p);
	must("qemu-img convert -O raw '%s' '%s'", p, tpath("grow.raw"));
	fd = open(tpath("grow.raw"), O_RDWR);
	ok(image_open(p, IMAGE_QCOW2, IMAGE_OPEN_WRITE, &img) == 0, "open a 512-byte-cluster image");
	bool good = true;
	for (int i = 0; i < 40 && good; i++) {
		uint64_t len = 1 + rnd(&s, 1 << 20), off = rnd(&s, (64 << 20) - len);
		rnd_fill(&s, buf, len);
		good = image_pwrite(img, buf, len, off) == 0 &&
		       pwrite(fd, buf, len, (off_t)off) == (ssize_t)len;
		if (i % 10 == 9)
			good = good && image_flush(img) == 0;
	}
	ok(good, "20 MiB of writes through a growing refcount table");
	ok(image_close(img) == 0, "close");
	close(fd);
	ok(qemu_clean(p), "qemu-img check finds it clean");
	ok(!must("qemu-img compare -q '%s' '%s'", p, tpath("grow.raw")), "and equal to the reference");
	char *rt = qemu_info(p, "actual-size");
	printf("# file now %s bytes\n", rt);
	free(rt);
	free(buf);
}

static void test_raw(void)
{
	const char *p = tpath("plain.raw");
	struct image_create_opts o = {.format = IMAGE_RAW, .size = 1 << 20};
	struct image_extent ext;
	struct image *img;
	char buf[8192], back[8192];

	image_create(p, &o);
	ok(image_open(p, IMAGE_PROBE, IMAGE_OPEN_WRITE, &img) == 0, "raw: opens, probed");
	is_int(image_format(img), IMAGE_RAW, "raw: probed as raw");
	memset(buf, 0x66, sizeof(buf));
	ok(image_pwrite(img, buf, sizeof(buf), 12345) == 0, "raw: write");
	ok(image_pread(img, back, sizeof(back), 12345) == 0 && !memcmp(buf, back, sizeof(buf)),
	   "raw: reads back");
	ok(image_write_zeroes(img, 12345, 100) == 0 && image_pread(img, back, 100, 12345) == 0 &&
	   back[0] == 0 && back[99] == 0, "raw: write zeroes");
	ok(image_block_status(img, 512 << 10, 4096, &ext) == 0 && ext.zero && ext.allocated,
	   "raw: a hole reads as zeros");
	ok(image_resize(img, 2 << 20) == 0 && image_size(img) == 2 << 20, "raw: grow");
	ok(image_close(img) == 0, "raw: close");
	is_info(p, "virtual-size", "2097152", "raw grown");
}

int main(void)
{
	test_dir_make();
	test_create();
	test_overlay();
	test_rebase();
	test_resize();
	test_huge_l1();
	test_zero_discard();
	test_convert();
	test_made_aside();
	test_refcount_growth();
	test_raw();
	return done();
}
