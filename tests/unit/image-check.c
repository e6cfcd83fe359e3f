/* image_check() against `qemu-img check`: the same leaks and errors on
 * images damaged on purpose, repairs that qemu-img then finds clean, and the
 * repair of an image a crashed qemu left dirty. */
#include "../lib/image-test.h"
#include "tap.h"

/* Adds delta to the 16-bit refcount of cluster c in the first refcount
 * block (qemu's layout with 64 KiB clusters puts it at 0x20000). */
static void bump_refcount(const char *path, unsigned c, int delta)
{
	unsigned char be[2];
	int fd = open(path, O_RDWR);
	if (fd < 0 || pread(fd, be, 2, 0x20000 + 2 * c) != 2)
		abort();
	unsigned v = (unsigned)((be[0] << 8 | be[1]) + delta);
	be[0] = (unsigned char)(v >> 8);
	be[1] = (unsigned char)v;
	if (pwrite(fd, be, 2, 0x20000 + 2 * c) != 2)
		abort();
	close(fd);
}

/* Our check and qemu-img's agree on the counts. */
static void agree(const char *path, const char *what, long long leaks, long long corruptions)
{
	struct image_check_result res;
	struct qemu_check qc;

	ok(image_check(path, IMAGE_QCOW2, 0, &res) == 0, "%s: our check runs", what);
	qemu_check(path, &qc);
	is_int(qc.leaks, leaks, "%s: qemu-img finds %lld leaks", what, leaks);
	is_int(qc.corruptions, corruptions, "%s: qemu-img finds %lld errors", what, corruptions);
	is_int(res.leaks, qc.leaks, "%s: we find as many leaks", what);
	is_int(res.corruptions, qc.corruptions, "%s: we find as many errors", what);
	is_int(res.image_end_offset, qc.image_end, "%s: same image end offset", what);
	is_int(res.allocated_clusters, qc.allocated, "%s: same allocated clusters", what);
	for (size_t i = 0; i < res.nmessages; i++)
		printf("#   %s\n", res.messages[i]);
	image_check_result_release(&res);
}

static void repaired(const char *path, unsigned flags, const char *what, uint64_t leaks,
		     uint64_t corruptions)
{
	struct image_check_result res;

	ok(image_check(path, IMAGE_QCOW2, flags, &res) == 0, "%s: repair runs", what);
	is_int(res.leaks_fixed, leaks, "%s: %llu leaks fixed", what, (unsigned long long)leaks);
	is_int(res.corruptions_fixed, corruptions, "%s: %llu errors fixed", what,
	       (unsigned long long)corruptions);
	is_int(res.leaks + res.corruptions, 0, "%s: nothing left", what);
	ok(qemu_clean(path), "%s: qemu-img check finds it clean", what);
	image_check_result_release(&res);
}

static const char *fresh(const char *name, const char *opts)
{
	const char *path = tpath("%s.qcow2", name);
	must("qemu-img create -q -f qcow2 %s '%s' 8M && qemu-io -c 'write -P 7 0 200k' "
	     "-c 'write -P 8 3M 100k' '%s' >/dev/null", opts, path, path);
	return path;
}

int main(void)
{
	const char *p;

	test_dir_make();

	p = fresh("clean", "");
	agree(p, "a clean image", 0, 0);

	p = fresh("leaks", "");
	/* Grown so that clusters 12 to 14 are free space inside the file. */
	must("qemu-img resize -q '%s' 16M && head -c 300000 /dev/zero >> '%s'", p, p);
	bump_refcount(p, 12, +1);
	bump_refcount(p, 13, +1);
	bump_refcount(p, 14, +3);
	agree(p, "three leaked clusters", 3, 0);
	repaired(p, IMAGE_CHECK_REPAIR_LEAKS, "leak repair", 3, 0);

	p = fresh("overcount", "");
	bump_refcount(p, 5, +1);
	agree(p, "a data cluster counted twice", 1, 1);
	repaired(p, IMAGE_CHECK_REPAIR_ALL, "overcount repair", 1, 1);

	p = fresh("undercount", "");
	bump_refcount(p, 6, -1);
	agree(p, "a data cluster not counted", 0, 2);
	struct image_check_result res;
	image_check(p, IMAGE_QCOW2, IMAGE_CHECK_REPAIR_LEAKS, &res);
	is_int(res.corruptions, 2, "repairing leaks only leaves the errors alone");
	image_check_result_release(&res);
	repaired(p, IMAGE_CHECK_REPAIR_ALL, "error repair", 0, 2);

	/* Nothing changes the metadata of an image the check finds corrupt. */
	p = fresh("refused", "");
	bump_refcount(p, 6, -1);
	must("cp '%s' '%s'", p, tpath("refused.orig"));
	struct image *img = NULL;
	char *want = xasprintf("'%s' is corrupt: vi image check finds 2 errors", p);
	is_int(image_open(p, IMAGE_QCOW2, IMAGE_OPEN_WRITE, &img), -VI_EFAIL,
	       "opening a corrupt image for writing is refused");
	is_str(vi_error_message(), want, "because it is corrupt");
	is_int(image_set_backing(p, "other.qcow2", IMAGE_QCOW2), -VI_EFAIL,
	       "recording another backing file in it is refused");
	is_str(vi_error_message(), want, "because it is corrupt");
	ok(!must("cmp '%s' '%s'", p, tpath("refused.orig")), "the image is unchanged");
	free(want);

	p = fresh("snapshot", "");
	must("qemu-img snapshot -c s1 '%s' && qemu-io -c 'write -P 9 100k 200k' '%s' >/dev/null", p,
	     p);
	agree(p, "an image with an internal snapshot", 0, 0);

	p = fresh("bitmap", "");
	must("qemu-img bitmap --add '%s' b0 && qemu-img bitmap --add -g 4096 '%s' b1", p, p);
	agree(p, "an image with persistent bitmaps", 0, 0);

	p = fresh("refcount1", "-o refcount_bits=1,cluster_size=4096");
	agree(p, "1-bit refcounts", 0, 0);

	/* qemu killed with lazy refcounts on leaves refcounts behind and the
	 * dirty bit set: opening for writing repairs. */
	p = tpath("dirty.qcow2");
	must("qemu-img create -q -f qcow2 -o lazy_refcounts=on '%s' 8M", p);
	sh(NULL, "qemu-io -c 'write -P 3 0 300k' -c 'sigraise 9' '%s'", p);
	agree(p, "left dirty by a killed qemu", 0, 10);
	struct image_info info;
	image_open(p, IMAGE_QCOW2, 0, &img);
	image_get_info(img, false, &info);
	ok(info.dirty, "the dirty bit shows in info");
	image_info_release(&info);
	image_close(img);
	ok(image_open(p, IMAGE_QCOW2, IMAGE_OPEN_WRITE, &img) == 0,
	   "opening it for writing repairs it");
	image_get_info(img, false, &info);
	ok(!info.dirty, "the dirty bit is gone");
	image_info_release(&info);
	image_close(img);
	ok(qemu_clean(p), "qemu-img check finds the repaired image clean");
	ok(!must("qemu-io -c 'read -P 3 0 300k' '%s' >/dev/null", p), "its data is intact");
	return done();
}
