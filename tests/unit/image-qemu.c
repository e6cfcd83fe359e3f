/* Images that qemu-img and qemu-io make (versions 2 and 3, every cluster
 * size from 4 KiB to 2 MiB, backing chains, zero and compressed clusters,
 * internal snapshots, other refcount widths) read back through lib/image
 * byte for byte as `qemu-img convert -O raw` reads them. */
#include "../lib/image-test.h"
#include "tap.h"

#define SIZE "9437696" /* 9 MiB + 512: the last cluster is partial */

static bool same_as_qemu(const char *path)
{
	char *raw = xasprintf("%s.raw", path);
	bool same = !must("qemu-img convert -O raw '%s' '%s'", path, raw) &&
		    image_file_matches(path, raw);
	unlink(raw);
	free(raw);
	return same;
}

/* Writes patterns, zeros and discards with qemu-io, at odd offsets. */
static int scribble(const char *path, const char *fmt, unsigned salt)
{
	return must("qemu-io -f %s -c 'write -P %u 1000 300000' -c 'write -P %u 4194000 70000' "
		    "-c 'write -z 2000000 1300000' -c 'write -P %u 9000000 100000' "
		    "-c 'discard 5242880 1048576' -c 'write -P %u 8388608 512' '%s' >/dev/null",
		    fmt, salt, salt + 1, salt + 2, salt + 3, path);
}

static void test_chain(unsigned version, unsigned cs)
{
	const char *compat = version == 2 ? "0.10" : "1.1";
	const char *base = tpath("base-%u-%u.raw", version, cs);
	const char *mid = tpath("mid-%u-%u.qcow2", version, cs);
	const char *top = tpath("top-%u-%u.qcow2", version, cs);
	const char *comp = tpath("comp-%u-%u.qcow2", version, cs);

	/* raw <- qcow2 <- qcow2, each layer written by qemu-io. */
	if (must("head -c 8000000 /dev/urandom > '%s'", base) ||
	    must("qemu-img create -q -f qcow2 -o compat=%s,cluster_size=%u -b '%s' -F raw '%s' %s",
		 compat, cs, base, mid, SIZE) ||
	    scribble(mid, "qcow2", 17) ||
	    must("qemu-img create -q -f qcow2 -o compat=%s,cluster_size=%u -b '%s' -F qcow2 '%s'",
		 compat, cs, mid, top) ||
	    must("qemu-io -f qcow2 -c 'write -P 99 3000 5000000' -c 'write -z 4500000 9000' "
		 "-c 'write -z 6291456 2097152' '%s' >/dev/null", top)) {
		ok(0, "v%u, %u-byte clusters: images made", version, cs);
		return;
	}
	ok(same_as_qemu(mid), "v%u, %u-byte clusters: qcow2 over raw reads as qemu reads it",
	   version, cs);
	ok(same_as_qemu(top), "v%u, %u-byte clusters: qcow2 over qcow2 over raw reads the same",
	   version, cs);
	if (must("qemu-img convert -c -O qcow2 -o compat=%s,cluster_size=%u '%s' '%s'", compat, cs,
		 top, comp)) {
		ok(0, "v%u, %u-byte clusters: compressed image made", version, cs);
		return;
	}
	ok(same_as_qemu(comp), "v%u, %u-byte clusters: compressed clusters read the same", version,
	   cs);
	unlink(base);
	unlink(mid);
	unlink(top);
	unlink(comp);
}

static void test_variants(void)
{
	const char *img = tpath("variant.qcow2");
	static const unsigned widths[] = {1, 8, 32, 64};

	for (size_t i = 0; i < ARRAY_SIZE(widths); i++) {
		unlink(img);
		ok(!must("qemu-img create -q -f qcow2 -o refcount_bits=%u,cluster_size=4096 '%s' %s",
			 widths[i], img, SIZE) && !scribble(img, "qcow2", 40) && same_as_qemu(img),
		   "%u-bit refcounts read the same", widths[i]);
	}

	/* Internal snapshots share clusters: the active layer still reads right. */
	unlink(img);
	ok(!must("qemu-img create -q -f qcow2 '%s' %s", img, SIZE) && !scribble(img, "qcow2", 60) &&
	   !must("qemu-img snapshot -c first '%s'", img) && !scribble(img, "qcow2", 80) &&
	   same_as_qemu(img), "an image with an internal snapshot reads the same");

	unlink(img);
	ok(!must("qemu-img create -q -f qcow2 -o preallocation=metadata '%s' %s", img, SIZE) &&
	   !scribble(img, "qcow2", 90) && same_as_qemu(img),
	   "a metadata-preallocated image (zero clusters with offsets) reads the same");

	unlink(img);
	ok(!must("qemu-img create -q -f qcow2 -o cluster_size=512 '%s' %s", img, SIZE) &&
	   !scribble(img, "qcow2", 100) && same_as_qemu(img), "512-byte clusters read the same");
	unlink(img);
}

int main(void)
{
	test_dir_make();
	for (unsigned version = 2; version <= 3; version++)
		for (unsigned cs = 4096; cs <= (2u << 20); cs *= 2)
			test_chain(version, cs);
	test_variants();
	return done();
}
