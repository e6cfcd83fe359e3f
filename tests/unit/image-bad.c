/* Images lib/image must refuse, and the exact errors it gives: damaged header
 * fields, features we do not support, loops in the backing chain, tables
 * past the end of the file, and misuse of the API. */
#include <signal.h>

#include "../lib/image-test.h"
#include "tap.h"

static void patch(const char *path, uint64_t offset, uint64_t value, unsigned bytes)
{
	unsigned char be[8];
	for (unsigned i = 0; i < bytes; i++)
		be[i] = (unsigned char)(value >> (8 * (bytes - 1 - i)));
	int fd = open(path, O_WRONLY);
	if (fd < 0 || pwrite(fd, be, bytes, (off_t)offset) != (ssize_t)bytes)
		abort();
	close(fd);
}

/* A fresh qemu-made image with some data, named after the case. */
static const char *fresh(const char *name, const char *opts)
{
	const char *path = tpath("%s.qcow2", name);
	unlink(path);
	must("qemu-img create -q -f qcow2 %s '%s' 4M && qemu-io -c 'write -P 7 0 200k' '%s' >/dev/null",
	     opts, path, path);
	return path;
}

/* Opening fails with this code and message. */
static void refused(const char *path, int format, unsigned flags, int code, const char *want,
		    const char *what)
{
	struct image *img = NULL;
	int rc = image_open(path, format, flags, &img);
	is_int(rc, -code, "%s: refused", what);
	is_str(rc < 0 ? vi_error_message() : "(opened)", want, "%s: says why", what);
	image_close(img);
}

static char *msg(const char *fmt, const char *path)
{
	return xasprintf(fmt, path);
}

static void test_header(void)
{
	const char *p;
	char *m;

	p = tpath("plain.raw");
	must("head -c 65536 /dev/zero > '%s'", p);
	refused(p, IMAGE_QCOW2, 0, VI_EUSAGE, m = msg("'%s' is not a qcow2 image", p),
		"a raw file opened as qcow2");
	free(m);

	p = fresh("version", "");
	patch(p, 4, 4, 4);
	refused(p, IMAGE_PROBE, 0, VI_EUNSUPPORTED,
		m = msg("'%s' has qcow2 version 4, which is not supported", p), "version 4");
	free(m);

	p = fresh("cluster-bits", "");
	patch(p, 20, 30, 4);
	refused(p, IMAGE_PROBE, 0, VI_EUNSUPPORTED,
		m = msg("'%s' has an unsupported cluster size (2^30 bytes)", p), "cluster_bits 30");
	free(m);

	p = fresh("bit5", "");
	patch(p, 72, 1u << 5, 8);
	refused(p, IMAGE_PROBE, 0, VI_EUNSUPPORTED,
		m = msg("'%s' has an unsupported incompatible feature (bit 5)", p),
		"unknown incompatible bit 5");
	free(m);

	p = fresh("extl2", "-o extended_l2=on");
	refused(p, IMAGE_PROBE, 0, VI_EUNSUPPORTED,
		m = msg("'%s' has an unsupported incompatible feature (bit 4, extended L2 entries)",
			p), "extended L2 entries (named from the feature table)");
	free(m);

	p = fresh("zstd", "-o compression_type=zstd");
	refused(p, IMAGE_PROBE, 0, VI_EUNSUPPORTED,
		m = msg("'%s' has an unsupported incompatible feature (bit 3, compression type)", p),
		"zstd compression");
	free(m);

	/* crypt_method 2 is LUKS. qemu-img's own LUKS images time their key
	 * derivation by CPU use, which fails on a loaded machine. */
	p = fresh("luks", "");
	patch(p, 32, 2, 4);
	refused(p, IMAGE_PROBE, 0, VI_EUNSUPPORTED,
		m = msg("'%s' is encrypted, which is not supported", p), "LUKS encryption");
	free(m);

	p = fresh("aes", "");
	patch(p, 32, 1, 4);
	refused(p, IMAGE_PROBE, 0, VI_EUNSUPPORTED,
		m = msg("'%s' is encrypted, which is not supported", p), "AES encryption");
	free(m);

	char *opt = xasprintf("-o data_file='%s'", tpath("datafile.data"));
	p = fresh("datafile", opt);
	free(opt);
	refused(p, IMAGE_PROBE, 0, VI_EUNSUPPORTED,
		m = msg("'%s' uses an external data file, which is not supported", p),
		"external data file");
	free(m);

	p = fresh("huge", "");
	patch(p, 24, 1ull << 62, 8);
	refused(p, IMAGE_PROBE, 0, VI_EUNSUPPORTED,
		m = msg("'%s' has an absurd virtual size (4611686018427387904 bytes)", p),
		"a virtual size of 2^62");
	free(m);

	p = fresh("l1-small", "");
	patch(p, 24, 1ull << 40, 8);
	refused(p, IMAGE_PROBE, 0, VI_EFAIL,
		m = msg("'%s' is corrupt: the L1 table is too small for the virtual size", p),
		"a size the L1 table cannot map");
	free(m);

	p = fresh("l1-huge", "");
	patch(p, 36, 0x7fffffff, 4);
	refused(p, IMAGE_PROBE, 0, VI_EFAIL,
		m = msg("'%s' is corrupt: the L1 table is absurdly large", p), "an absurd L1 size");
	free(m);

	p = fresh("l1-eof", "");
	patch(p, 40, 1ull << 30, 8);
	refused(p, IMAGE_PROBE, 0, VI_EFAIL,
		m = msg("'%s' is corrupt: the L1 table is past the end of the file", p),
		"L1 table past the end of the file");
	free(m);

	p = fresh("l1-align", "");
	patch(p, 40, 65536 + 8, 8);
	refused(p, IMAGE_PROBE, 0, VI_EFAIL,
		m = msg("'%s' is corrupt: the L1 table offset 0x10008 is not cluster-aligned", p),
		"unaligned L1 table");
	free(m);

	p = fresh("rt-eof", "");
	patch(p, 48, 1ull << 30, 8);
	refused(p, IMAGE_PROBE, 0, VI_EFAIL,
		m = msg("'%s' is corrupt: the refcount table is past the end of the file", p),
		"refcount table past the end of the file");
	free(m);

	p = fresh("backing-name", "");
	patch(p, 8, 65530, 8);
	patch(p, 16, 100, 4);
	refused(p, IMAGE_PROBE, 0, VI_EFAIL,
		m = msg("'%s' is corrupt: the backing file name is invalid", p),
		"backing file name out of the first cluster");
	free(m);
}

/* Damage found only when the tables are walked. */
static void test_tables(void)
{
	struct image *img;
	char buf[4096], *m;
	const char *p = fresh("l2-eof", "");
	uint64_t l1_offset = 0x30000; /* qemu's layout with 64 KiB clusters */

	patch(p, l1_offset, (1ull << 63) | (1ull << 32), 8);
	ok(image_open(p, IMAGE_PROBE, 0, &img) == 0, "an L2 table past the end: the image opens");
	is_int(image_pread(img, buf, sizeof(buf), 0), -VI_EFAIL, "reading it fails");
	is_str(vi_error_message(),
	       m = msg("'%s' is corrupt: L2 table at offset 0x100000000 is past the end of the file",
		       p), "and says where");
	free(m);
	image_close(img);

	p = fresh("l2-align", "");
	must("qemu-io -c 'write 0 1k' '%s' >/dev/null", p);
	/* The first L2 entry: the table follows the refcount block. */
	patch(p, 0x40000, (1ull << 63) | 0x50000 | 0x1000, 8);
	ok(image_open(p, IMAGE_PROBE, 0, &img) == 0, "an unaligned data cluster: the image opens");
	is_int(image_pread(img, buf, sizeof(buf), 0), -VI_EFAIL, "reading it fails");
	is_str(vi_error_message(),
	       m = msg("'%s' is corrupt: L2 entry 0x8000000000051000 is not cluster-aligned", p),
	       "and names the entry");
	free(m);
	image_close(img);
}

static void test_chains(void)
{
	const char *a = tpath("loop-a.qcow2"), *b = tpath("loop-b.qcow2");
	char *m;

	must("qemu-img create -q -f qcow2 '%s' 1M && qemu-img create -q -f qcow2 -b loop-a.qcow2 "
	     "-F qcow2 '%s' && qemu-img rebase -u -b loop-b.qcow2 -F qcow2 '%s'", a, b, a);
	m = xasprintf("cannot open '%s': its backing chain loops back to '%s'", b, b);
	refused(b, IMAGE_PROBE, 0, VI_EFAIL, m, "a two-image backing loop");
	free(m);

	const char *self = tpath("self.qcow2");
	must("qemu-img create -q -f qcow2 '%s' 1M && qemu-img rebase -u -b self.qcow2 -F qcow2 '%s'",
	     self, self);
	m = xasprintf("cannot open '%s': its backing chain loops back to '%s'", self, self);
	refused(self, IMAGE_PROBE, 0, VI_EFAIL, m, "an image backed by itself");
	free(m);

	const char *orphan = tpath("orphan.qcow2");
	must("qemu-img create -q -f qcow2 -u -b gone.raw -F raw '%s' 1M", orphan);
	m = xasprintf("cannot open the backing file of '%s': cannot open '%s': No such file or "
		      "directory", orphan, tpath("gone.raw"));
	refused(orphan, IMAGE_PROBE, 0, VI_ENOTFOUND, m, "a missing backing file");
	free(m);
	struct image *img;
	ok(image_open(orphan, IMAGE_PROBE, IMAGE_OPEN_NO_BACKING, &img) == 0,
	   "without its backing chain it opens");
	image_close(img);

	const char *vmdk = tpath("vmdk-backed.qcow2");
	must("qemu-img create -q -f vmdk '%s' 1M && qemu-img create -q -f qcow2 -b v.vmdk -F vmdk "
	     "'%s'", tpath("v.vmdk"), vmdk);
	refused(vmdk, IMAGE_PROBE, 0, VI_EUNSUPPORTED,
		m = msg("'%s' has a backing file of format 'vmdk', which is not supported", vmdk),
		"a vmdk backing file");
	free(m);

	const char *json = tpath("json-backed.qcow2");
	must("qemu-img create -q -f qcow2 -u -b 'json:{}' -F raw '%s' 1M", json);
	struct image *j = NULL;
	is_int(image_open(json, IMAGE_PROBE, 0, &j), -VI_EUNSUPPORTED,
	       "a json: backing file: refused");
	is_str(vi_error_message(), m = msg("'%s' has a backing file 'json:{}' that is not a local "
					   "file, which is not supported", json),
	       "a json: backing file: says why");
	image_close(j);
	free(m);
}

static void test_marks(void)
{
	const char *p = fresh("corrupt-bit", "");
	struct image *img;
	char *m;

	patch(p, 72, 2, 8);
	refused(p, IMAGE_PROBE, IMAGE_OPEN_WRITE, VI_EFAIL,
		m = msg("'%s' is marked corrupt: check and repair it first", p),
		"an image marked corrupt, for writing");
	free(m);
	ok(image_open(p, IMAGE_PROBE, 0, &img) == 0, "an image marked corrupt opens read-only");
	image_close(img);

	p = fresh("bitmaps", "");
	must("qemu-img bitmap --add '%s' b0", p);
	refused(p, IMAGE_PROBE, IMAGE_OPEN_WRITE, VI_EUNSUPPORTED,
		m = msg("'%s' has persistent dirty bitmaps, which is not supported", p),
		"persistent bitmaps, for writing");
	free(m);
	ok(image_open(p, IMAGE_PROBE, 0, &img) == 0, "an image with bitmaps opens read-only");
	image_close(img);
}

/* qemu's image locks keep qemu and us from using an image another writes. */
static void test_locks(void)
{
	const char *p = fresh("locked", "");
	struct image *img, *other;
	char *out = NULL, *m;

	ok(image_open(p, IMAGE_QCOW2, IMAGE_OPEN_WRITE, &img) == 0, "open for writing");
	ok(sh(&out, "qemu-io -c 'read 0 1k' '%s'", p) != 0 && strstr(out, "\"write\" lock"),
	   "qemu-io cannot open it meanwhile");
	free(out);
	ok(sh(&out, "qemu-img info '%s'", p) != 0 && strstr(out, "lock"),
	   "qemu-img info cannot either");
	free(out);
	is_int(image_open(p, IMAGE_QCOW2, 0, &other), -VI_ESTATE,
	       "nor can we, from another open");
	is_str(vi_error_message(), m = msg("cannot open '%s': another process is writing to it", p),
	       "says why");
	free(m);
	image_close(img);

	/* qemu-io holds it open for writing for a while. */
	sh(&out, "qemu-io -c 'sleep 20000' '%s' >/dev/null 2>&1 & echo $!", p);
	pid_t pid = (pid_t)atoi(out);
	free(out);
	int rc = 0;
	for (int i = 0; i < 100; i++) {
		if ((rc = image_open(p, IMAGE_QCOW2, IMAGE_OPEN_WRITE, &img)) < 0)
			break;
		image_close(img);
		usleep(20000);
	}
	is_int(rc, -VI_ESTATE, "while qemu-io has it, we cannot open it for writing");
	is_str(vi_error_message(), m = msg("cannot open '%s' for writing: another process is using "
					   "it", p), "says why");
	free(m);
	is_int(image_open(p, IMAGE_QCOW2, 0, &img), -VI_ESTATE, "nor for reading");
	if (pid > 0)
		kill(pid, SIGTERM);
	for (int i = 0; i < 100 && image_open(p, IMAGE_QCOW2, 0, &img) < 0; i++)
		usleep(20000);
	ok(img != NULL, "once qemu-io is gone it opens");
	image_close(img);
}

static void test_misuse(void)
{
	struct image_create_opts o = {.format = IMAGE_QCOW2, .size = 1 << 20};
	const char *p = tpath("misuse.qcow2");
	struct image *img;
	char buf[16], *m;

	ok(image_create(p, &o) == 0, "create");
	is_int(image_create(p, &o), -VI_ESTATE, "creating over an existing file is refused");
	is_str(vi_error_message(), m = msg("cannot create '%s': File exists", p), "and says so");
	free(m);
	o.cluster_size = 3000;
	is_int(image_create(tpath("bad-cs.qcow2"), &o), -VI_EUSAGE, "an odd cluster size is refused");
	o.cluster_size = 1u << 22;
	is_int(image_create(tpath("bad-cs.qcow2"), &o), -VI_EUSAGE, "a 4 MiB cluster is refused");
	o.cluster_size = 0;
	o.version = 4;
	is_int(image_create(tpath("bad-v.qcow2"), &o), -VI_EUSAGE, "version 4 is refused");
	o.version = 3;
	o.size = 1000;
	is_int(image_create(tpath("bad-size.qcow2"), &o), -VI_EUSAGE,
	       "a size that is not a multiple of 512 is refused");
	o = (struct image_create_opts){.format = IMAGE_RAW, .size = 4096, .backing = "x"};
	is_int(image_create(tpath("bad-raw"), &o), -VI_EUSAGE, "a raw image with a backing file");
	ok(!vi_file_exists(tpath("bad-cs.qcow2")) && !vi_file_exists(tpath("bad-raw")),
	   "failed creates leave nothing behind");

	image_open(p, IMAGE_QCOW2, 0, &img);
	is_int(image_pwrite(img, buf, sizeof(buf), 0), -VI_EUSAGE, "writing a read-only image");
	is_str(vi_error_message(), m = msg("cannot write '%s': it is open read-only", p),
	       "says it is read-only");
	free(m);
	is_int(image_pread(img, buf, sizeof(buf), (1 << 20) - 8), -VI_EUSAGE, "reading past the end");
	is_str(vi_error_message(),
	       m = msg("cannot read '%s': 16 bytes at offset 1048568 go past its end (1048576 bytes)",
		       p), "says how far");
	free(m);
	image_close(img);
	image_open(p, IMAGE_QCOW2, IMAGE_OPEN_WRITE, &img);
	is_int(image_resize(img, 4096), -VI_EUSAGE, "shrinking is refused");
	is_str(vi_error_message(), m = msg("cannot resize '%s': shrinking is not supported", p),
	       "says so");
	free(m);
	image_close(img);

	is_int(image_open(tpath("nothing-here"), IMAGE_PROBE, 0, &img), -VI_ENOTFOUND,
	       "a missing image is not found");
	struct image_check_result res;
	must("head -c 4096 /dev/zero > '%s'", tpath("r.raw"));
	is_int(image_check(tpath("r.raw"), IMAGE_PROBE, 0, &res), -VI_EUNSUPPORTED,
	       "checking a raw image is unsupported");
	int f;
	is_int(image_format_parse("vmdk", &f), -VI_EUSAGE, "an unknown format name");
	is_str(vi_error_message(), "unknown image format 'vmdk' (raw, qcow2)", "lists the known");
}

int main(void)
{
	test_dir_make();
	test_header();
	test_tables();
	test_chains();
	test_marks();
	test_locks();
	test_misuse();
	return done();
}
