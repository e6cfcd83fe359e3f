/* Unit tests: the first-boot seed disk as blkid, fsck.vfat and mtools see
 * it, the facts vi's hook reads, the user's #cloud-config, and growing the
 * root partition of a qcow2 overlay (checked with sfdisk). */
#include "error.h"
#include "image/image.h"
#include "seed.h"
#include "tap.h"
#include "util.h"
#include "yaml-doc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[64];

/* A shell command's standard output (trailing newlines dropped) and its
 * exit status; the caller frees the text. */
static char *sh(int *status, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static char *sh(int *status, const char *fmt, ...)
{
	char *cmd, buf[4096];
	size_t len = 0;
	va_list ap;
	FILE *f;

	va_start(ap, fmt);
	if (vasprintf(&cmd, fmt, ap) < 0)
		abort();
	va_end(ap);
	char *out = xstrdup("");
	if ((f = popen(cmd, "r"))) {
		size_t n;
		while ((n = fread(buf, 1, sizeof(buf), f)) > 0) {
			out = xrealloc(out, len + n + 1);
			memcpy(out + len, buf, n);
			out[len += n] = '\0';
		}
		int st = pclose(f);
		if (status)
			*status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
	}
	while (len && out[len - 1] == '\n')
		out[--len] = '\0';
	free(cmd);
	return out;
}

/* A file of the seed image, read with mtype. */
static char *seed_file(const char *img, const char *name)
{
	return sh(NULL, "mtype -i '%s' '::/%s' 2>&1", img, name);
}

static char *read_text(const char *name)
{
	char *path = xasprintf("%s/%s", dir, name), *text = NULL;
	size_t len;

	if (vi_read_file(path, &text, &len) < 0)
		text = xstrdup("");
	while (len && text[len - 1] == '\n')
		text[--len] = '\0';
	free(path);
	return text;
}

static void put(const char *name, const char *text)
{
	char *path = xasprintf("%s/%s", dir, name);
	vi_write_file_atomic(path, text, strlen(text), 0644);
	free(path);
}

static void check_str(const char *img, const char *name, const char *want)
{
	char *got = seed_file(img, name);
	is_str(got, want, "the seed's %s", name);
	free(got);
}

static void plain_seed(void)
{
	char *img = xasprintf("%s/seed.img", dir), *out, *key = read_text("host.key");
	char *pub = read_text("host.key.pub"), *user = read_text("user.key.pub");
	const char *keys[] = { user };
	struct vi_seed s = { .instance_id = "i-0123",
			     .hostname = "web",
			     .user = "alice",
			     .keys = keys,
			     .nkeys = 1,
			     .host_key = key,
			     .grow_root = true };
	int status;

	is_int(vi_seed_write(img, &s), 0, "a seed is written");
	out = sh(&status, "blkid -o value -s LABEL '%s'", img);
	is_str(out, "CIDATA", "blkid finds the label CIDATA");
	free(out);
	out = sh(&status, "blkid -o value -s TYPE '%s'", img);
	is_str(out, "vfat", "on a FAT file system");
	free(out);
	out = sh(&status, "fsck.vfat -n '%s' 2>&1", img);
	is_int(status, 0, "fsck.vfat finds nothing wrong");
	free(out);
	struct stat st;
	ok(stat(img, &st) == 0 && (st.st_mode & 0777) == 0600,
	   "the seed is its owner's only (it holds a private key)");
	out = sh(NULL, "ls -a '%s'", dir);
	ok(!strstr(out, ".seed-"), "nothing staged is left beside it");
	free(out);

	check_str(img, "meta-data", "instance-id: i-0123\nlocal-hostname: web");
	check_str(img, "vi/instance-id", "i-0123");
	check_str(img, "vi/hostname", "web");
	check_str(img, "vi/user", "alice");
	check_str(img, "vi/authorized_keys", user);
	check_str(img, "vi/sudo", "");
	check_str(img, "vi/grow-root", "");
	out = seed_file(img, "vi/ssh_host_ed25519_key");
	ok(!strcmp(out, key), "the host key is there as given");
	free(out);
	/* ssh-keygen's public line ends with a comment; the seed's has none. */
	char *pub_fields = xstrndup(pub, strchr(strchr(pub, ' ') + 1, ' ') - pub);
	check_str(img, "vi/ssh_host_ed25519_key.pub", pub_fields);
	out = sh(NULL, "mdir -b -i '%s' ::/vi 2>&1", img);
	ok(!strstr(out, "runcmd") && !strstr(out, "script") && !strstr(out, "users"),
	   "no commands, script or other users without user-data");
	free(out);

	out = seed_file(img, "user-data");
	ok(!strncmp(out, "#cloud-config\n", 14), "user-data is vi's #cloud-config");
	ok(strstr(out, "name: alice") && strstr(out, "sudo: ALL=(ALL) NOPASSWD:ALL") &&
		   strstr(out, "hostname: web"),
	   "with the user, sudo and the host name");
	ok(strstr(out, "ed25519_private:") && strstr(out, pub_fields),
	   "and vi's host key for cloud-init");
	char *user_fields = xstrndup(user, strchr(strchr(user, ' ') + 1, ' ') - user);
	ok(strstr(out, user_fields) != NULL, "and the user's key");
	free(user_fields);
	free(out);
	/* cloud-init reads it as YAML: the key survives whatever quoting. */
	struct vi_yaml y;
	yaml_node_t *keys_map;
	out = seed_file(img, "user-data");
	ok(vi_yaml_load_string(&y, "user-data", out, strlen(out)) == 0 &&
		   (keys_map = vi_yaml_get(&y, vi_yaml_root(&y), "ssh_keys")) &&
		   vi_yaml_get(&y, keys_map, "ed25519_private") &&
		   !strcmp(vi_yaml_scalar(vi_yaml_get(&y, keys_map, "ed25519_private")), key),
	   "the private key reads back from the YAML");
	vi_yaml_release(&y);
	free(out);
	out = sh(NULL, "mdir -b -i '%s' :: 2>&1", img);
	ok(!strstr(out, "vendor-data"), "no vendor-data without the user's file");
	free(out);

	s.grow_root = false;
	s.user = "root";
	is_int(vi_seed_write(img, &s), 0, "a seed replaces an older one");
	out = sh(NULL, "mdir -b -i '%s' ::/vi 2>&1", img);
	ok(!strstr(out, "grow-root") && !strstr(out, "sudo"),
	   "no grow-root, and root needs no sudo");
	free(out);
	out = seed_file(img, "user-data");
	ok(strstr(out, "disable_root: false") && !strstr(out, "users:"),
	   "root's keys are root's in cloud-config");
	free(out);

	free(pub_fields);
	free(img);
	free(key);
	free(pub);
	free(user);
}

static void user_data(void)
{
	char *img = xasprintf("%s/ud.img", dir), *ud = xasprintf("%s/user-data", dir), *out;
	const char *keys[] = { "ssh-ed25519 AAAAkey1 vi" };
	struct vi_seed s = { .instance_id = "i-1",
			     .hostname = "web",
			     .user = "alice",
			     .keys = keys,
			     .nkeys = 1,
			     .user_data = ud };
	const char *cc = "#cloud-config\n"
			 "hostname: db\n"
			 "ssh_authorized_keys: [ssh-ed25519 AAAAkey2 top]\n"
			 "users:\n"
			 "  - default\n"
			 "  - name: alice\n"
			 "    ssh_authorized_keys: [ssh-ed25519 AAAAkey3 alice]\n"
			 "  - name: bob\n"
			 "    sudo: ALL=(ALL) NOPASSWD:ALL\n"
			 "    ssh_authorized_keys:\n"
			 "      - ssh-ed25519 AAAAkey4 bob\n"
			 "  - name: carol\n"
			 "    sudo: false\n"
			 "runcmd:\n"
			 "  - echo one > /tmp/one\n"
			 "  - [touch, \"/tmp/it's here\"]\n"
			 "packages: [nginx]\n";

	put("user-data", cc);
	is_int(vi_seed_write(img, &s), 0, "a seed with the user's #cloud-config");
	check_str(img, "user-data", "#cloud-config\nhostname: db\n"
				    "ssh_authorized_keys: [ssh-ed25519 AAAAkey2 top]\n"
				    "users:\n  - default\n  - name: alice\n"
				    "    ssh_authorized_keys: [ssh-ed25519 AAAAkey3 alice]\n"
				    "  - name: bob\n    sudo: ALL=(ALL) NOPASSWD:ALL\n"
				    "    ssh_authorized_keys:\n      - ssh-ed25519 AAAAkey4 bob\n"
				    "  - name: carol\n    sudo: false\n"
				    "runcmd:\n  - echo one > /tmp/one\n"
				    "  - [touch, \"/tmp/it's here\"]\npackages: [nginx]");
	out = seed_file(img, "vendor-data");
	ok(!strncmp(out, "#cloud-config\n", 14) && strstr(out, "name: alice"),
	   "vi's settings go as vendor-data");
	free(out);
	check_str(img, "vi/hostname", "db");
	check_str(img, "vi/authorized_keys",
		  "ssh-ed25519 AAAAkey1 vi\nssh-ed25519 AAAAkey2 top\nssh-ed25519 AAAAkey3 alice");
	check_str(img, "vi/runcmd", "echo one > /tmp/one\n'touch' '/tmp/it'\\''s here'");
	check_str(img, "vi/users/bob/authorized_keys", "ssh-ed25519 AAAAkey4 bob");
	check_str(img, "vi/users/bob/sudo", "");
	out = sh(NULL, "mdir -b -i '%s' ::/vi/users/carol 2>&1", img);
	ok(strstr(out, "authorized_keys") && !strstr(out, "sudo"), "carol gets no sudo");
	free(out);
	out = sh(NULL, "mdir -b -i '%s' ::/vi/users 2>&1", img);
	ok(!strstr(out, "alice"), "the login user is not among the others");
	free(out);

	put("user-data", "#!/bin/sh\necho hello >/dev/console\n");
	is_int(vi_seed_write(img, &s), 0, "a seed with the user's script");
	check_str(img, "vi/script", "#!/bin/sh\necho hello >/dev/console");
	check_str(img, "user-data", "#!/bin/sh\necho hello >/dev/console");

	/* Refusals leave the old seed as it was. */
	put("user-data", "#cloud-config\nruncmd:\n  - [ls, {a: b}]\n");
	is_int(vi_seed_write(img, &s), -VI_EUSAGE, "a command word that is not a scalar");
	char *want = xasprintf("%s:3:10: words of a 'runcmd' command must be scalars", ud);
	is_str(vi_error_message(), want, "is named at its line");
	free(want);
	put("user-data", "#cloud-config\nhostname: [a\n");
	is_int(vi_seed_write(img, &s), -VI_EUSAGE, "an unparsable #cloud-config");
	/* libyaml finds the unclosed list at the end of the text, line 3 */
	ok(!strncmp(vi_error_message(), ud, strlen(ud)) &&
		   !strncmp(vi_error_message() + strlen(ud), ":3:", 3),
	   "is named with its file and line: %s", vi_error_message());
	put("user-data", "#cloud-config\nusers:\n  - name: 'a b'\n");
	is_int(vi_seed_write(img, &s), -VI_EUSAGE, "a user name that is not one");
	check_str(img, "vi/script", "#!/bin/sh\necho hello >/dev/console");
	out = sh(NULL, "ls -a '%s'", dir);
	ok(!strstr(out, ".seed-"), "nothing staged is left after a refusal");
	free(out);

	s.user_data = NULL;
	s.host_key = "-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n";
	is_int(vi_seed_write(img, &s), -VI_EUSAGE, "a host key that is not one");
	is_str(vi_error_message(), "the host key is not an OpenSSH ed25519 key", "says so");
	s.host_key = NULL;
	s.hostname = "a b";
	is_int(vi_seed_write(img, &s), -VI_EUSAGE, "a host name that is not one");
	free(img);
	free(ud);
}

/* A 64 MiB qcow2 disk with an MBR: each partition as {type, start, sectors}. */
static void make_disk(const char *path, const unsigned parts[][3], size_t n, bool signature)
{
	struct image_create_opts co = { .format = IMAGE_QCOW2, .size = 64 << 20 };
	unsigned char mbr[512] = { 0 };
	struct image *img;

	unlink(path);
	for (size_t i = 0; i < n; i++) {
		unsigned char *e = mbr + 446 + 16 * i;
		e[4] = (unsigned char)parts[i][0];
		for (int b = 0; b < 4; b++) {
			e[8 + b] = (unsigned char)(parts[i][1] >> (8 * b));
			e[12 + b] = (unsigned char)(parts[i][2] >> (8 * b));
		}
	}
	if (signature) {
		mbr[510] = 0x55;
		mbr[511] = 0xaa;
	}
	if (image_create(path, &co) < 0 || image_open(path, IMAGE_QCOW2, IMAGE_OPEN_WRITE, &img) < 0)
		abort();
	image_pwrite(img, mbr, sizeof(mbr), 0);
	image_close(img);
}

static void grow(void)
{
	char *base = xasprintf("%s/base.qcow2", dir), *top = xasprintf("%s/top.qcow2", dir);
	const unsigned one[][3] = { { 0x83, 2048, 129024 } };
	struct image *img;
	int status;

	make_disk(base, one, 1, true);
	unlink(top);
	image_create_overlay(top, base, true);
	if (image_open(top, IMAGE_QCOW2, IMAGE_OPEN_WRITE, &img) == 0) {
		image_resize(img, 256 << 20);
		image_close(img);
	}
	is_int(vi_seed_grow_partition(top, 1), 0, "the last partition of an overlay grows");
	char *out = sh(&status, "qemu-img convert -O raw '%s' '%s/top.raw' && "
				"sfdisk -d '%s/top.raw' | grep '^%s/top.raw1'", top, dir, dir, dir);
	char *want = xasprintf("%s/top.raw1 : start=        2048, size=      522240, type=83", dir);
	is_str(out, want, "sfdisk sees it end at the disk's end");
	free(want);
	free(out);
	out = sh(&status, "qemu-img convert -O raw '%s' '%s/base.raw' && "
			  "sfdisk -d '%s/base.raw' | grep -c 'size=      129024'", base, dir, dir);
	is_str(out, "1", "the backing image is untouched");
	free(out);
	out = sh(&status, "qemu-img check '%s' 2>&1", top);
	is_int(status, 0, "qemu-img check finds the overlay clean");
	free(out);
	is_int(vi_seed_grow_partition(top, 1), 0, "a full partition is left as it is");

	/* Refusals */
	const unsigned two[][3] = { { 0x83, 2048, 40000 }, { 0x82, 42048, 20000 } };
	make_disk(base, two, 2, true);
	is_int(vi_seed_grow_partition(base, 1), -VI_EUSAGE, "a partition that is not the last");
	char *msg = xasprintf("partition 1 of '%s' is not the last one: partition 2 follows it",
			      base);
	is_str(vi_error_message(), msg, "says which follows");
	free(msg);
	is_int(vi_seed_grow_partition(base, 2), 0, "the one after it grows");
	is_int(vi_seed_grow_partition(base, 3), -VI_EUSAGE, "an empty slot");
	is_int(vi_seed_grow_partition(base, 5), -VI_EUSAGE, "partition 5 of an MBR");
	make_disk(base, one, 1, false);
	is_int(vi_seed_grow_partition(base, 1), -VI_EUNSUPPORTED, "a disk without an MBR");
	msg = xasprintf("'%s' has no MBR partition table", base);
	is_str(vi_error_message(), msg, "says so");
	free(msg);
	const unsigned gpt[][3] = { { 0xee, 1, 131071 } };
	make_disk(base, gpt, 1, true);
	is_int(vi_seed_grow_partition(base, 1), -VI_EUNSUPPORTED, "a GPT disk");
	const unsigned ext[][3] = { { 0x05, 2048, 1000 } };
	make_disk(base, ext, 1, true);
	is_int(vi_seed_grow_partition(base, 1), -VI_EUNSUPPORTED, "an extended partition");
	is_int(vi_seed_grow_partition("/nonexistent/disk", 1), -VI_ENOTFOUND, "a missing image");
	free(base);
	free(top);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/vi-seed-test.XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	char *out = sh(NULL, "ssh-keygen -q -t ed25519 -N '' -C host -f '%s/host.key' && "
			     "ssh-keygen -q -t ed25519 -N '' -C alice@test -f '%s/user.key' && echo ok",
		       dir, dir);
	if (strcmp(out, "ok")) {
		printf("Bail out! ssh-keygen failed: %s\n", out);
		return 1;
	}
	free(out);
	plain_seed();
	user_data();
	grow();
	vi_rm_rf(dir);
	return done();
}
