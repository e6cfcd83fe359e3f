/* Root file systems for template builds, as one plain tar file that the
 * appliance unpacks: a busybox root made here, a tarball of any format
 * libarchive reads, or a Debian suite fetched with debootstrap. Owners are
 * kept as numbers, so the appliance's user names cannot remap them. */
#include "error.h"
#include "log.h"
#include "template-internal.h"
#include "tools-internal.h"
#include "util.h"

#include <archive.h>
#include <archive_entry.h>
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int tar_error(struct archive *a, const char *what, const char *path)
{
	return vi_error(VI_EFAIL, "cannot %s '%s': %s", what, path,
			archive_error_string(a) ? archive_error_string(a) : "unknown error");
}

static struct archive *tar_create(const char *path)
{
	struct archive *a = archive_write_new();

	archive_write_set_format_pax_restricted(a);
	/* Names go as the bytes they are (no translation through the locale),
	 * and extended attributes in the records GNU tar reads. */
	archive_write_set_format_option(a, "pax", "hdrcharset", "BINARY");
	archive_write_set_format_option(a, "pax", "xattrheader", "SCHILY");
	if (archive_write_open_filename(a, path) != ARCHIVE_OK) {
		tar_error(a, "create", path);
		archive_write_free(a);
		return NULL;
	}
	return a;
}

static int tar_close(struct archive *a, const char *path)
{
	return archive_write_close(a) == ARCHIVE_OK ? 0 : tar_error(a, "write", path);
}

/* Appends one entry made here: a directory, a symlink (target) or a file. */
static int tar_add(struct archive *a, const char *tar, const char *name, mode_t mode,
		   const char *target, const void *data, size_t len)
{
	struct archive_entry *e = archive_entry_new();
	int rc = 0;

	archive_entry_set_pathname(e, name);
	archive_entry_set_mode(e, mode);
	archive_entry_set_mtime(e, 0, 0);
	if (target)
		archive_entry_set_symlink(e, target);
	archive_entry_set_size(e, S_ISREG(mode) ? (la_int64_t)len : 0);
	if (archive_write_header(a, e) != ARCHIVE_OK ||
	    (S_ISREG(mode) && len && archive_write_data(a, data, len) != (la_ssize_t)len))
		rc = tar_error(a, "write", tar);
	archive_entry_free(e);
	return rc;
}

static int tar_text(struct archive *a, const char *tar, const char *name, mode_t perm,
		    const char *text)
{
	return tar_add(a, tar, name, S_IFREG | perm, NULL, text, strlen(text));
}

/* Copies the data of the current entry of in to out. */
static int tar_copy_data(struct archive *in, struct archive *out, const char *src, const char *tar)
{
	static __thread char buf[1 << 16];
	la_ssize_t n;

	while ((n = archive_read_data(in, buf, sizeof(buf))) > 0)
		if (archive_write_data(out, buf, (size_t)n) != n)
			return tar_error(out, "write", tar);
	return n < 0 ? tar_error(in, "read", src) : 0;
}

/* Copies entry e of in, its data included, to out; owners by number only. */
static int tar_copy_entry(struct archive *in, struct archive *out, struct archive_entry *e,
			  const char *src, const char *tar)
{
	archive_entry_set_uname(e, NULL);
	archive_entry_set_gname(e, NULL);
	if (archive_write_header(out, e) != ARCHIVE_OK)
		return tar_error(out, "write", tar);
	return archive_entry_size(e) > 0 ? tar_copy_data(in, out, src, tar) : 0;
}

/* A static binary has no program interpreter. */
static int check_static(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	Elf64_Ehdr eh;
	bool interp = false, ok = false;

	if (fd < 0)
		return vi_error_errno(errno == ENOENT ? VI_ENOTFOUND : VI_EFAIL, errno,
				      "busybox source needs '%s' (package busybox-static)", path);
	if (pread(fd, &eh, sizeof(eh), 0) == sizeof(eh) && !memcmp(eh.e_ident, ELFMAG, SELFMAG) &&
	    eh.e_ident[EI_CLASS] == ELFCLASS64 && eh.e_phentsize == sizeof(Elf64_Phdr)) {
		ok = true;
		for (unsigned i = 0; i < eh.e_phnum && ok; i++) {
			Elf64_Phdr ph;
			ok = pread(fd, &ph, sizeof(ph), eh.e_phoff + i * sizeof(ph)) == sizeof(ph);
			interp |= ok && ph.p_type == PT_INTERP;
		}
	}
	close(fd);
	if (!ok)
		return vi_error(VI_EFAIL, "'%s' is not a 64-bit ELF program", path);
	if (interp)
		return vi_error(VI_EFAIL,
				"'%s' is dynamically linked: a busybox root needs busybox-static",
				path);
	return 0;
}

static const char inittab[] =
	"# busybox init: early boot, a login prompt on the serial console, and\n"
	"# the power button (acpid) or poweroff for a clean stop.\n"
	"::sysinit:/etc/init.d/rcS\n"
	"ttyS0::respawn:/sbin/getty -L 115200 ttyS0 vt100\n"
	"::ctrlaltdel:/sbin/reboot\n"
	"::shutdown:/bin/sync\n"
	"::shutdown:/bin/umount -a -r\n";

static const char rcS[] =
	"#!/bin/sh\n"
	"# Early boot of a busybox root: file systems, host name, kernel modules,\n"
	"# the power button, then the boot scripts /etc/init.d/S* in order.\n"
	"export PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"
	"mount -t proc proc /proc 2>/dev/null\n"
	"mount -t sysfs sysfs /sys 2>/dev/null\n"
	"mount -t devtmpfs devtmpfs /dev 2>/dev/null\n"
	"mkdir -p /dev/pts /dev/shm\n"
	"mount -t devpts devpts /dev/pts 2>/dev/null\n"
	"mount -t tmpfs -o mode=0755 tmpfs /run 2>/dev/null\n"
	"mount -o remount,rw /\n"
	"hostname -F /etc/hostname\n"
	"for f in /etc/modules-load.d/*.conf; do\n"
	"\t[ -f \"$f\" ] || continue\n"
	"\tgrep -v '^#' \"$f\" | while read -r m; do\n"
	"\t\t[ -n \"$m\" ] && modprobe \"$m\"\n"
	"\tdone\n"
	"done\n"
	"# Power button: acpid runs /etc/acpi/PWRF/00000080 when it is pressed.\n"
	"acpid\n"
	"for s in /etc/init.d/S*; do\n"
	"\t[ -x \"$s\" ] && \"$s\" start\n"
	"done\n"
	"exit 0\n";

static const char network_script[] =
	"#!/bin/sh\n"
	"# The network: loopback, and each network card by DHCP (eth0, or the name\n"
	"# the initramfs's udev gave it); udhcpc goes on in the background,\n"
	"# renewing the lease.\n"
	"ip link set lo up\n"
	"for n in /sys/class/net/*; do\n"
	"\t[ -e \"$n/device\" ] || continue\n"
	"\tudhcpc -i \"${n##*/}\" -b -t 5 -T 2 -s /usr/share/udhcpc/default.script >/dev/null 2>&1\n"
	"done\n"
	"exit 0\n";

static const char dhcp_script[] =
	"#!/bin/sh\n"
	"# udhcpc's hook: the lease's address, default route and name servers.\n"
	"case $1 in\n"
	"deconfig)\n"
	"\tip addr flush dev \"$interface\"\n"
	"\tip link set \"$interface\" up\n"
	"\t;;\n"
	"bound | renew)\n"
	"\tip addr flush dev \"$interface\"\n"
	"\tip addr add \"$ip/${mask:-24}\" dev \"$interface\"\n"
	"\tfor r in $router; do\n"
	"\t\tip route replace default via \"$r\" dev \"$interface\"\n"
	"\t\tbreak\n"
	"\tdone\n"
	"\t: >/etc/resolv.conf\n"
	"\tfor d in $dns; do\n"
	"\t\techo \"nameserver $d\" >>/etc/resolv.conf\n"
	"\tdone\n"
	"\t[ \"$1\" = bound ] && echo \"vi: network $interface $ip\" >/dev/console\n"
	"\t;;\n"
	"esac\n"
	"exit 0\n";

static const char dropbear_script[] =
	"#!/bin/sh\n"
	"# The SSH server, when the image has dropbear: keys only (-s), with the host\n"
	"# key the seed gave, else keys made as needed (-R).\n"
	"[ -x /usr/sbin/dropbear ] || exit 0\n"
	"key=/etc/dropbear/dropbear_ed25519_host_key\n"
	"mkdir -p /etc/dropbear\n"
	"if [ -f $key ]; then\n"
	"\t/usr/sbin/dropbear -s -r $key -P /run/dropbear.pid\n"
	"else\n"
	"\t/usr/sbin/dropbear -s -R -P /run/dropbear.pid\n"
	"fi\n";

static const char guest_agent_script[] =
	"#!/bin/sh\n"
	"# The guest agent, when the image has qemu-ga, on its virtio-serial port:\n"
	"# found by name (no udev names it here) once virtio_console is loaded.\n"
	"[ -x /usr/sbin/qemu-ga ] || exit 0\n"
	"modprobe virtio_console 2>/dev/null\n"
	"name=org.qemu.guest_agent.0\n"
	"for i in 1 2 3 4 5 6 7 8 9 10; do\n"
	"\tfor p in /sys/class/virtio-ports/*; do\n"
	"\t\t[ \"$(cat \"$p/name\" 2>/dev/null)\" = $name ] && [ -c \"/dev/${p##*/}\" ] || continue\n"
	"\t\tmkdir -p /dev/virtio-ports\n"
	"\t\tln -sf \"../${p##*/}\" /dev/virtio-ports/$name\n"
	"\t\texec /usr/sbin/qemu-ga -d -m virtio-serial -p /dev/virtio-ports/$name \\\n"
	"\t\t\t-f /run/qemu-ga.pid -t /run\n"
	"\tdone\n"
	"\tsleep 0.2\n"
	"done\n"
	"exit 0\n";

static int busybox_rootfs(const struct template *t, const char *stage, const char *tar)
{
	static const struct {
		const char *name;
		mode_t mode;
	} dirs[] = {
		{ "bin", 0755 },	   { "sbin", 0755 },
		{ "usr", 0755 },	   { "usr/bin", 0755 },
		{ "usr/sbin", 0755 },	   { "etc", 0755 },
		{ "etc/init.d", 0755 },	   { "etc/acpi", 0755 },
		{ "etc/acpi/PWRF", 0755 }, { "etc/modules-load.d", 0755 },
		{ "proc", 0555 },	   { "sys", 0555 },
		{ "dev", 0755 },	   { "run", 0755 },
		{ "tmp", 01777 },	   { "root", 0700 },
		{ "var", 0755 },	   { "var/log", 0755 },
		{ "var/lib", 0755 },	   { "home", 0755 },
		{ "mnt", 0755 },	   { "lib", 0755 },
		{ "lib/modules", 0755 },   { "usr/share", 0755 },
		{ "usr/share/udhcpc", 0755 },
	};
	char *list_path = xasprintf("%s/busybox.list", stage), *list = NULL, *bin = NULL;
	char *argv[] = { TEMPLATE_BUSYBOX, "--list-full", NULL };
	size_t list_len, bin_len;
	struct archive *a = NULL;
	int rc;

	if ((rc = check_static(TEMPLATE_BUSYBOX)) < 0)
		goto cleanup;
	if ((rc = vi_run(argv, list_path)) != 0) {
		if (rc > 0)
			rc = vi_error(VI_EFAIL, "'%s --list-full' failed", TEMPLATE_BUSYBOX);
		goto cleanup;
	}
	if ((rc = vi_read_file(list_path, &list, &list_len)) < 0 ||
	    (rc = vi_read_file(TEMPLATE_BUSYBOX, &bin, &bin_len)) < 0)
		goto cleanup;
	if (!(a = tar_create(tar))) {
		rc = -VI_EFAIL;
		goto cleanup;
	}
	for (size_t i = 0; i < ARRAY_SIZE(dirs) && rc == 0; i++)
		rc = tar_add(a, tar, dirs[i].name, S_IFDIR | dirs[i].mode, NULL, NULL, 0);
	if (rc == 0)
		rc = tar_add(a, tar, "bin/busybox", S_IFREG | 0755, NULL, bin, bin_len);
	for (char *save = NULL, *l = strtok_r(list, "\n", &save); l && rc == 0;
	     l = strtok_r(NULL, "\n", &save))
		if (strcmp(l, "bin/busybox"))
			rc = tar_add(a, tar, l, S_IFLNK | 0777, "/bin/busybox", NULL, 0);
	char *hostname = xasprintf("%s\n", t->name);
	char *os = xasprintf(
		"NAME=\"BusyBox\"\nID=busybox\nPRETTY_NAME=\"BusyBox (vi template %s)\"\n",
		t->name);
	if (rc == 0)
		rc = tar_text(a, tar, "etc/inittab", 0644, inittab);
	if (rc == 0)
		rc = tar_text(a, tar, "etc/init.d/rcS", 0755, rcS);
	/* Boot scripts run in name order: the network before vi's seed hook
	 * (S10vi-seed, whose commands may want it), the SSH server after it. */
	if (rc == 0)
		rc = tar_text(a, tar, "etc/init.d/S08network", 0755, network_script);
	if (rc == 0)
		rc = tar_text(a, tar, "usr/share/udhcpc/default.script", 0755, dhcp_script);
	if (rc == 0)
		rc = tar_text(a, tar, "etc/init.d/S20dropbear", 0755, dropbear_script);
	if (rc == 0)
		rc = tar_text(a, tar, "etc/init.d/S21qemu-ga", 0755, guest_agent_script);
	if (rc == 0)
		rc = tar_text(a, tar, "etc/acpi/PWRF/00000080", 0755,
			      "#!/bin/sh\nexec /sbin/poweroff\n");
	/* root logs in on the console without a password (an empty one in
	 * /etc/shadow): a test image. busybox's own reader of /etc/passwd
	 * drops a line with an empty password field, so that has "x". */
	if (rc == 0)
		rc = tar_text(a, tar, "etc/passwd", 0644, "root:x:0:0:root:/root:/bin/sh\n");
	if (rc == 0)
		rc = tar_text(a, tar, "etc/shadow", 0600, "root::0:0:99999:7:::\n");
	if (rc == 0)
		rc = tar_text(a, tar, "etc/group", 0644, "root:x:0:\n");
	if (rc == 0)
		rc = tar_text(a, tar, "etc/hostname", 0644, hostname);
	if (rc == 0)
		rc = tar_text(a, tar, "etc/hosts", 0644, "127.0.0.1\tlocalhost\n");
	if (rc == 0)
		rc = tar_text(a, tar, "etc/os-release", 0644, os);
	if (rc == 0)
		rc = tar_text(a, tar, "etc/profile", 0644,
			      "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\n");
	free(hostname);
	free(os);
	if (rc == 0)
		rc = tar_close(a, tar);
cleanup:
	archive_write_free(a);
	unlink(list_path);
	free(list_path);
	free(list);
	free(bin);
	return rc;
}

/* Relative, and without ".." components. */
static bool safe_name(const char *name)
{
	if (name[0] == '/')
		return false;
	for (const char *p = name; p; p = strchr(p, '/') ? strchr(p, '/') + 1 : NULL)
		if (p[0] == '.' && p[1] == '.' && (p[2] == '/' || !p[2]))
			return false;
	return true;
}

static int tarball_rootfs(const char *src, const char *tar)
{
	struct archive *in = archive_read_new(), *out = NULL;
	struct archive_entry *e;
	int rc = 0, r;

	archive_read_support_filter_all(in);
	archive_read_support_format_all(in);
	if (archive_read_open_filename(in, src, 1 << 16) != ARCHIVE_OK) {
		rc = tar_error(in, "read tarball", src);
		goto cleanup;
	}
	if (!(out = tar_create(tar))) {
		rc = -VI_EFAIL;
		goto cleanup;
	}
	while ((r = archive_read_next_header(in, &e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
		const char *name = archive_entry_pathname(e), *link = archive_entry_hardlink(e);
		if (!name || !safe_name(name) || (link && !safe_name(link))) {
			rc = vi_error(VI_EUSAGE, "tarball '%s' holds an unsafe path '%s'", src,
				      name ? name : "");
			goto cleanup;
		}
		if ((rc = tar_copy_entry(in, out, e, src, tar)) < 0)
			goto cleanup;
	}
	rc = r == ARCHIVE_EOF ? tar_close(out, tar) : tar_error(in, "read", src);
cleanup:
	archive_write_free(out);
	archive_read_free(in);
	return rc;
}

/* Packs a directory tree, hard links and extended attributes kept. */
static int dir_rootfs(const char *dir, const char *tar)
{
	struct archive *in = archive_read_disk_new(), *out = NULL;
	struct archive_entry *e = archive_entry_new();
	struct archive_entry_linkresolver *links = archive_entry_linkresolver_new();
	size_t prefix = strlen(dir);
	int rc = 0, r;

	archive_entry_linkresolver_set_strategy(links, ARCHIVE_FORMAT_TAR_PAX_RESTRICTED);
	archive_read_disk_set_symlink_physical(in);
	archive_read_disk_set_behavior(in, ARCHIVE_READDISK_NO_TRAVERSE_MOUNTS);
	if (archive_read_disk_open(in, dir) != ARCHIVE_OK) {
		rc = tar_error(in, "read", dir);
		goto cleanup;
	}
	if (!(out = tar_create(tar))) {
		rc = -VI_EFAIL;
		goto cleanup;
	}
	while ((r = archive_read_next_header2(in, e)) == ARCHIVE_OK || r == ARCHIVE_WARN) {
		struct archive_entry *w = e, *spare = NULL;
		const char *path = archive_entry_pathname(e);
		char *rel = xasprintf(".%s", path + prefix);

		archive_read_disk_descend(in);
		archive_entry_set_pathname(e, rel);
		free(rel);
		/* The second and later names of a file become hard links to the first. */
		archive_entry_linkify(links, &w, &spare);
		if (w && (rc = tar_copy_entry(in, out, w, dir, tar)) < 0)
			goto cleanup;
		archive_entry_clear(e);
	}
	rc = r == ARCHIVE_EOF ? tar_close(out, tar) : tar_error(in, "read", dir);
cleanup:
	archive_write_free(out);
	archive_entry_linkresolver_free(links);
	archive_entry_free(e);
	archive_read_free(in);
	return rc;
}

/* The last line of a log file, for an error message. */
static char *last_line(const char *log)
{
	char *text, *start;
	size_t len;

	if (vi_read_file(log, &text, &len) < 0) {
		vi_error_clear();
		return xstrdup("no log");
	}
	while (len && (text[len - 1] == '\n' || text[len - 1] == '\r'))
		text[--len] = '\0';
	start = text + len;
	while (start > text && start[-1] != '\n')
		start--;
	char *line = xstrdup(start);
	free(text);
	return line;
}

static int debootstrap_rootfs(const struct template *t, const struct template_disk *d,
			      const char *stage, const char *tar, const char *extra_package)
{
	char *dir = xasprintf("%s/rootfs.d", stage), *log = xasprintf("%s/debootstrap.log", stage);
	char *variant = xasprintf("--variant=%s", d->variant), *comps, *include = NULL;
	struct template_strv pkgs = { 0 };
	int rc;

	for (size_t i = 0; i < d->packages.n; i++)
		template_strv_push(&pkgs, d->packages.v[i]);
	if (extra_package && !template_strv_has(&pkgs, extra_package))
		template_strv_push(&pkgs, extra_package);
	char *joined = xstrdup("");
	for (size_t i = 0; i < d->components.n; i++) {
		char *n = xasprintf("%s%s%s", joined, i ? "," : "", d->components.v[i]);
		free(joined);
		joined = n;
	}
	comps = xasprintf("--components=%s", joined);
	free(joined);
	if (pkgs.n) {
		include = xstrdup("--include=");
		for (size_t i = 0; i < pkgs.n; i++) {
			char *n = xasprintf("%s%s%s", include, i ? "," : "", pkgs.v[i]);
			free(include);
			include = n;
		}
	}
	char *argv[8] = { "debootstrap", variant, comps }, **arg = argv + 3;
	if (include)
		*arg++ = include;
	*arg++ = d->suite;
	*arg++ = dir;
	*arg++ = d->mirror;
	if (geteuid() != 0) {
		rc = vi_error(VI_EFAIL, "template '%s': debootstrap needs root", t->name);
		goto cleanup;
	}
	rc = vi_run(argv, log);
	if (rc == -VI_ENOTFOUND)
		rc = vi_error(VI_ENOTFOUND,
			      "template '%s': debootstrap is not installed (package debootstrap)",
			      t->name);
	else if (rc > 0) {
		/* debootstrap's own last words point into the target's log, which
		 * goes with the staging directory: quote the target's instead. */
		char *inner = xasprintf("%s/debootstrap/debootstrap.log", dir);
		char *why = last_line(vi_file_exists(inner) ? inner : log);
		free(inner);
		rc = vi_error(VI_EFAIL, "debootstrap of '%s' from %s failed: %s", d->suite,
			      d->mirror, why);
		free(why);
	}
	if (rc == 0)
		rc = dir_rootfs(dir, tar);
cleanup:
	vi_rm_rf(dir);
	unlink(log);
	template_strv_release(&pkgs);
	free(dir);
	free(log);
	free(variant);
	free(comps);
	free(include);
	return rc;
}

int template_rootfs(const struct template *t, const struct template_disk *d, const char *stage,
		    const char *tar, const char *extra_package)
{
	switch (d->source) {
	case TEMPLATE_SOURCE_BUSYBOX:
		return busybox_rootfs(t, stage, tar);
	case TEMPLATE_SOURCE_TARBALL:
		return tarball_rootfs(d->path, tar);
	case TEMPLATE_SOURCE_DEBOOTSTRAP:
		return debootstrap_rootfs(t, d, stage, tar, extra_package);
	default:
		return vi_error(VI_EFAIL,
				"a disk with source '%s' has no root file system to unpack",
				d->source == TEMPLATE_SOURCE_IMAGE ? "image" : "empty");
	}
}
