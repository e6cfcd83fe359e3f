/* Unit tests: SHA-256 against FIPS 180 vectors, the template parser's
 * messages, parameters, inheritance, digests and manifests. */
#include "error.h"
#include "sha256.h"
#include "tap.h"
#include "template-internal.h"
#include "template.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];

static void sha256_vectors(void)
{
	static const struct {
		const char *in, *out;
	} v[] = {
		{ "", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" },
		{ "abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" },
		{ "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
		  "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1" },
		{ "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
		  "klmnopqrlmnopqrsmnopqrstnopqrstu",
		  "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1" },
	};
	char hex[SHA256_HEX_SIZE];
	struct sha256 h;

	for (size_t i = 0; i < ARRAY_SIZE(v); i++) {
		sha256_hex(v[i].in, strlen(v[i].in), hex);
		is_str(hex, v[i].out, "SHA-256 of a %zu-byte message", strlen(v[i].in));
	}
	/* A million 'a's, fed in uneven pieces across block boundaries. */
	char *a = xmalloc(1000000);
	memset(a, 'a', 1000000);
	sha256_init(&h);
	for (size_t off = 0, step = 1; off < 1000000; off += step, step = step % 97 + 1)
		sha256_update(&h, a + off, off + step > 1000000 ? 1000000 - off : step);
	sha256_final_hex(&h, hex);
	is_str(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
	       "SHA-256 of a million 'a's in pieces");
	char *path = xasprintf("%s/million", dir);
	vi_write_file_atomic(path, a, 1000000, 0644);
	is_int(sha256_file(path, hex), 0, "sha256_file reads a file");
	is_str(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0",
	       "and gets the same digest");
	is_int(sha256_file("/nonexistent/x", hex), -VI_ENOTFOUND, "a missing file is not found");
	free(path);
	free(a);
}

static void put(const char *name, const char *text)
{
	char *path = xasprintf("%s/%s", dir, name);
	vi_write_file_atomic(path, text, strlen(text), 0644);
	free(path);
}

static int load(const char *text, const char *const *sets, size_t nsets, struct template **t)
{
	char *file = xasprintf("%s/t.yaml", dir);
	int rc = template_load_string(dir, file, text, strlen(text), sets, nsets, t);
	free(file);
	return rc;
}

#define HEAD "name: t\nkernel: vmlinuz\n"
#define DISK "disks:\n  - size: 64M\n    source: busybox\n"

/* The message of a template that must not load, without the file name. */
static const char *error_of(const char *text)
{
	static char msg[512];
	struct template *t = NULL;
	char *prefix = xasprintf("%s/t.yaml:", dir);
	int rc = load(text, NULL, 0, &t);

	template_free(t);
	snprintf(msg, sizeof(msg), "%s",
		 rc < 0 && !strncmp(vi_error_message(), prefix, strlen(prefix))
			 ? vi_error_message() + strlen(prefix)
		 : rc < 0 ? vi_error_message()
			  : "(loaded)");
	free(prefix);
	return msg;
}

static void messages(void)
{
	is_str(error_of(HEAD DISK "memroy: 1G\n"),
	       "6:1: unknown key 'memroy'; did you mean 'memory'?",
	       "unknown key with a suggestion");
	is_str(error_of("kernel: vmlinuz\n" DISK), "1:1: missing required key 'name'",
	       "missing name");
	is_str(error_of(HEAD "cpus: many\n" DISK),
	       "3:7: invalid cpus 'many': expected a whole number", "wrong type for cpus");
	is_str(error_of(HEAD "cpus: 0\n" DISK), "3:7: invalid cpus '0': must be from 1 to 4096",
	       "cpus out of range");
	is_str(error_of(HEAD "memory: 1M\n" DISK),
	       "3:9: invalid memory '1M': must be from 16M to 64T", "too little memory");
	is_str(error_of(HEAD "memory: 1E\n" DISK),
	       "3:9: invalid memory '1E': must be from 16M to 64T", "too much memory");
	is_str(error_of(HEAD "cpus: 4\nmax_cpus: 2\n" DISK), "4:11: max_cpus 2 is below cpus 4",
	       "max_cpus below cpus");
	is_str(error_of(HEAD), "1:1: missing required key 'disks'", "no disks");
	is_str(error_of(HEAD "disks: big\n"), "3:8: 'disks' must be a list, not a scalar",
	       "disks of the wrong type");
	is_str(error_of(HEAD "disks:\n  - source: busybox\n"), "4:5: missing required key 'size'",
	       "a disk without a size");
	is_str(error_of(HEAD "disks:\n  - size: 64M\n    source: busybx\n"),
	       "5:13: unknown disk source 'busybx'; did you mean 'busybox'?", "unknown source");
	is_str(error_of(HEAD "disks:\n  - size: 64M\n    filesystem: etx4\n    source: busybox\n"),
	       "5:17: unknown filesystem 'etx4'; did you mean 'ext4'?", "unknown filesystem");
	is_str(error_of(HEAD "disks:\n  - size: 64M\n    source: {tarball: none.tar}\n"),
	       "5:23: tarball 'none.tar': No such file or directory", "a missing tarball");
	is_str(error_of(HEAD
			"disks:\n  - size: 64M\n    source: {tarball: root.tar, variant: x}\n"),
	       "5:42: 'variant' applies to a debootstrap source only", "debootstrap-only key");
	is_str(error_of(HEAD DISK "files:\n  - path: etc/motd\n    content: hi\n"),
	       "7:11: invalid path 'etc/motd': expected an absolute path in the image",
	       "a relative file path");
	is_str(error_of(HEAD DISK "files:\n  - path: /etc/motd\n"),
	       "7:5: file '/etc/motd' needs exactly one of 'content' and 'source'",
	       "a file without content");
	is_str(error_of(HEAD DISK "files:\n  - path: /etc/motd\n    content: hi\n    mode: 0999\n"),
	       "9:11: invalid mode '0999': expected octal digits such as 0644", "a bad mode");
	is_str(error_of(HEAD DISK "users:\n  - name: Dev\n"),
	       "7:11: invalid user name 'Dev': use lowercase letters, digits, '_' and '-'",
	       "a bad user name");
	is_str(error_of(HEAD DISK "ready:\n  console: x\n  command: y\n"),
	       "7:3: 'ready' needs exactly one of 'console', 'command' and 'ssh'", "ambiguous readiness");
	is_str(error_of(HEAD DISK "modules: [evdev]\n"), "6:10: 'modules' needs 'kernel: host'",
	       "modules without the host kernel");
	is_str(error_of(HEAD "disks:\n  - size: 64M\n    source: empty\nrun: [true]\n"),
	       "6:6: 'run' needs a disk with a root file system", "steps without a root");
	is_str(error_of(HEAD DISK "hostname: ${hostnme}\nparameters:\n  hostname: web\n"),
	       "6:11: unknown parameter 'hostnme'; did you mean 'hostname'?",
	       "unknown parameter with a suggestion");
	is_str(error_of(HEAD DISK "hostname: ${oops\n"), "6:11: unterminated '${' in '${oops'",
	       "unterminated parameter");
	is_str(error_of(HEAD DISK "packages: [\"git; rm -rf /\"]\n"),
	       "6:11: invalid package name 'git; rm -rf /'", "package names are checked");
	is_str(error_of("name: t\n" DISK "initrd: x\n"), "5:9: 'initrd' needs a 'kernel'",
	       "an initrd without a kernel");
	is_str(error_of(HEAD DISK "initrd: minimal\n"), "6:9: 'initrd: minimal' needs 'kernel: host'",
	       "the minimal initrd needs the host's modules");
	is_str(error_of("name: t\nkernel: host\ninitrd: minimal\n"
			"disks:\n  - size: 64M\n    filesystem: xfs\n    source: busybox\n"),
	       "3:9: 'initrd: minimal' mounts an ext2, ext3 or ext4 root, not xfs",
	       "the minimal initrd mounts ext roots only");
	is_str(error_of("name: t\n" DISK "cmdline: quiet\n"), "5:10: 'cmdline' needs a 'kernel'",
	       "a command line without a kernel");
	is_str(error_of("[1, 2]\n"), "1:1: a template must be a mapping, not a list",
	       "a document that is not a mapping");
}

static void parameters(void)
{
	static const char text[] =
		HEAD DISK "hostname: ${host}\nrun: [\"echo $$HOME ${greeting}\"]\n"
			  "parameters:\n  host: web\n"
			  "  greeting: {default: hi, description: what to say}\n";
	const char *sets[] = { "host=db", "greeting=a=b" };
	const char *bad[] = { "hots=x" }, *malformed[] = { "=x" };
	struct template *t = NULL;

	is_int(load(text, NULL, 0, &t), 0, "defaults fill in parameters");
	is_str(t->hostname, "web", "default value");
	is_str(t->run.v[0], "echo $HOME hi", "$$ is a dollar; mapping defaults work");
	template_free(t);
	is_int(load(text, sets, 2, &t), 0, "--set overrides defaults");
	is_str(t->hostname, "db", "the set value");
	is_str(t->run.v[0], "echo $HOME a=b", "a value may hold '='");
	template_free(t);
	is_int(load(text, bad, 1, &t), -VI_EUSAGE, "an unknown --set key");
	is_str(vi_error_message(), "template 't' has no parameter 'hots'; did you mean 'host'?",
	       "names the parameter and suggests one");
	is_int(load(text, malformed, 1, &t), -VI_EUSAGE, "a --set without a key");
	is_str(vi_error_message(), "invalid --set '=x': expected KEY=VALUE", "says the form");
}

static void defaults_and_inheritance(void)
{
	struct template *t = NULL;
	char *base = xasprintf("%s/b.yaml", dir);

	is_int(load(HEAD DISK, NULL, 0, &t), 0, "a minimal template loads");
	is_int(t->cpus, 1, "one vCPU by default");
	is_int(t->max_cpus, 0, "no max_cpus: vi create gives the VM room to grow");
	is_int(t->max_memory, 0, "nor max_memory");
	is_int(t->memory, 512 << 20, "512M by default");
	is_str(t->cmdline, "console=ttyS0 root=/dev/vda1 rw", "the default command line");
	is_str(t->disks[0].filesystem, "ext4", "a root file system is ext4 by default");
	is_str(t->version, "1", "version 1 by default");
	template_free(t);

	put("b.yaml", "name: b\nkernel: vmlinuz\ncpus: 2\nmemory: 1G\nmax_memory: 2G\n" DISK
		      "ready: {console: 'login:'}\n");
	is_int(load("name: t\nbase: b\nmemory: 4G\nhostname: c\n", NULL, 0, &t), 0,
	       "a layered template loads");
	is_int(t->cpus, 2, "cpus come from the base");
	is_int(t->memory, 4ull << 30, "memory is overridden");
	is_int(t->max_memory, 4ull << 30, "and its maximum rises with it");
	is_int(t->disks[0].source, TEMPLATE_SOURCE_BASE, "the disk is an overlay on the base's");
	is_str(t->ready_console, "login:", "readiness comes from the base");
	is_int(t->depth, 1, "one level above its base");
	template_free(t);

	is_str(error_of("name: t\nbase: b\n" DISK),
	       "4:3: 'disks' cannot be used with 'base': the disks are overlays on the base's",
	       "a layered template has no disks of its own");
	is_str(error_of("name: t\nbase: nosuch\n"), "2:7: no base template named 'nosuch'",
	       "an unknown base");
	put("l1.yaml", "name: l1\nbase: l2\n");
	put("l2.yaml", "name: l2\nbase: l1.yaml\n");
	char *l1 = xasprintf("%s/l1.yaml", dir);
	is_int(template_load(dir, l1, NULL, 0, &t), -VI_EUSAGE, "a loop of bases");
	char *want = xasprintf("%s/l2.yaml:2:7: base 'l1.yaml' leads back to 'l2'", dir);
	is_str(vi_error_message(), want, "is named where it closes");
	free(want);
	free(l1);
	put("wrong.yaml", "name: right\n");
	is_int(template_load(dir, "wrong", NULL, 0, &t), -VI_EUSAGE,
	       "a file named unlike its template");
	is_int(template_load(dir, "nosuch", NULL, 0, &t), -VI_ENOTFOUND, "an unknown template");
	is_str(vi_error_message(), "no template named 'nosuch' (see 'vi template list')",
	       "is not found");
	free(base);
}

static void digests(void)
{
	static const char text[] = HEAD DISK "files:\n  - path: /etc/motd\n    source: motd\n"
					     "hostname: ${h}\nparameters: {h: a}\n";
	const char *sets[] = { "h=b" };
	struct template *t1, *t2, *t3, *t4;
	char *yaml;

	put("motd", "hello\n");
	load(text, NULL, 0, &t1);
	load(text, NULL, 0, &t2);
	load(text, sets, 1, &t3);
	is_int(template_digest(t1), 0, "a digest");
	template_digest(t2);
	template_digest(t3);
	is_int(strlen(t1->digest), 64, "is 64 hex digits");
	is_str(t1->digest, t2->digest, "the same inputs give the same digest");
	ok(strcmp(t1->digest, t3->digest), "another parameter value gives another digest");
	/* Written anew (a new inode), the file is hashed again. */
	put("motd", "hello!\n");
	load(text, NULL, 0, &t4);
	template_digest(t4);
	ok(strcmp(t1->digest, t4->digest), "a changed input file changes the digest");
	is_int(template_to_yaml(t3, &yaml), 0, "the resolved template as YAML");
	ok(strstr(yaml, "hostname: b\n") && strstr(yaml, "source: ") && strstr(yaml, "/motd"),
	   "shows the values and the file names");
	free(yaml);
	template_free(t1);
	template_free(t2);
	template_free(t3);
	template_free(t4);
}

static void manifests(void)
{
	struct template_image img = { 0 }, back;
	char *path = xasprintf("%s/manifest.yaml", dir);

	img.template_digest =
		xstrdup("0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
	img.name = xstrdup("t");
	img.version = xstrdup("2");
	img.base_name = xstrdup("b");
	img.base_digest =
		xstrdup("fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210");
	img.cpus = 2;
	img.max_cpus = 4;
	img.memory = 1ull << 30;
	img.max_memory = 2ull << 30;
	img.kernel = xasprintf("%s/kernel", dir);
	img.cmdline = xstrdup("console=ttyS0");
	img.root = xstrdup("/dev/sda1");
	img.disks = xcalloc(1, sizeof(*img.disks));
	img.ndisks = 1;
	img.disks[0].path = xasprintf("%s/disk.qcow2", dir);
	img.disks[0].size = 64 << 20;
	img.ready_marker = xstrdup("login:");
	img.ready_timeout = 30;
	img.built = 1700000000;
	template_strv_push(&img.params, "h=web");
	is_int(template_manifest_save(dir, &img), 0, "a manifest is written");
	is_int(template_manifest_load(path, dir, &back), 0, "and read back");
	is_str(back.template_digest, img.template_digest, "the template digest it was built from");
	is_str(back.base_digest, img.base_digest, "base digest");
	is_int(back.max_cpus, 4, "max_cpus");
	is_int(back.max_memory, 2ull << 30, "max_memory");
	is_str(back.kernel, img.kernel, "kernel, in the image directory");
	ok(back.initrd == NULL, "no initrd");
	is_str(back.disks[0].path, img.disks[0].path, "disk");
	is_int(back.disks[0].size, 64 << 20, "disk size");
	is_str(back.ready_marker, "login:", "readiness marker");
	is_int(back.built, 1700000000, "build time");
	is_str(back.params.v[0], "h=web", "parameters");
	template_image_release(&back);
	template_image_release(&img);
	put("manifest.yaml", "schema: 1\ndigest: x\nname: t\ncpus: 1\nmax_cpus: 1\nmemory: 1G\n"
			     "max_memory: 1G\ndisks: []\nkernel: ../etc/passwd\n");
	is_int(template_manifest_load(path, dir, &back), -VI_EUSAGE,
	       "a manifest naming a file outside");
	free(path);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/vi-template-test.XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	setenv("VI_TEMPLATE_PATH", dir, 1);
	put("vmlinuz", "not really a kernel\n");
	put("root.tar", "not really a tarball\n");
	sha256_vectors();
	messages();
	parameters();
	defaults_and_inheritance();
	digests();
	manifests();
	vi_rm_rf(dir);
	return done();
}
