/* The template build: disks as qcow2 images (overlays on the base's for a
 * layered template), then one libguestfs appliance session that partitions,
 * formats, unpacks the root file system and applies the customisation steps,
 * then the kernel, a manifest, and one rename into images/<digest>/. */
#include "error.h"
#include "image/image.h"
#include "log.h"
#include "template-internal.h"
#include "tools-internal.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <guestfs.h>
#include <libgen.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

struct build {
	struct vi_store *s;
	struct template *t;
	const struct template_build_opts *o;
	char *stage; /* images/.new-<template digest>-<pid>-XXXXXX */
	char *tmp;   /* stage/.tmp: scratch space, ours and libguestfs's */
	guestfs_h *g;
	char **devices; /* the appliance's names of our disks, in order */
	struct template_image img;
	struct template_image base; /* the base's image, when layered */
};

static void progress(struct build *b, const char *what, int percent)
{
	if (b->o && b->o->progress)
		b->o->progress(b->o->opaque, what, percent);
}

/* --- the appliance ------------------------------------------------------ */

static int gerr(struct build *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Records libguestfs's last error after "template '<name>': cannot <what>". */
static int gerr(struct build *b, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	tools_guestfs_verror(b->g, fmt, ap);
	va_end(ap);
	return vi_error_wrap("template '%s'", b->t->name);
}

static void on_progress(guestfs_h *g, void *opaque, uint64_t event, int handle, int flags,
			const char *buf, size_t len, const uint64_t *array, size_t n)
{
	struct build *b = opaque;
	(void)g, (void)event, (void)handle, (void)flags, (void)buf, (void)len;

	/* array: proc_nr, serial, position, total */
	if (n >= 4 && array[3])
		progress(b, NULL, (int)(array[2] * 100 / array[3]));
}

/* Does apt install the kernel package during the build? Not when
 * debootstrap did, nor when the base's image has it already. */
static bool apt_kernel(const struct template *t)
{
	if (t->kernel != TEMPLATE_KERNEL_PACKAGE || t->base)
		return false;
	for (size_t i = 0; i < t->ndisks; i++)
		if (t->disks[i].source == TEMPLATE_SOURCE_DEBOOTSTRAP)
			return false;
	return true;
}

/* Commands at build time may fetch things; the appliance has no network
 * unless asked. */
static bool needs_network(const struct template *t)
{
	return t->packages.n || t->run.n || apt_kernel(t);
}

/* libguestfs puts its socket in a /tmp/libguestfsXXXXXX of its own when
 * run by root, whatever the temporary directory, and says not which: find
 * it among this process's sockets (/proc/net/unix names each one's path)
 * and note it in the staging directory, so that the next build removes it
 * too if this one is killed. */
static void note_sockdir(struct build *b)
{
	char line[4096], path[4096], link[64];
	unsigned long inode;
	FILE *f = fopen("/proc/net/unix", "re");

	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%*s %*s %*s %*s %*s %*s %lu %4095s", &inode, path) != 2 ||
		    strncmp(path, "/tmp/libguestfs", 15))
			continue;
		/* Ours when one of our descriptors is that socket. */
		char want[64];
		bool ours = false;
		snprintf(want, sizeof(want), "socket:[%lu]", inode);
		for (int fd = 0; fd < 1024 && !ours; fd++) {
			char fdpath[64];
			ssize_t n;
			snprintf(fdpath, sizeof(fdpath), "/proc/self/fd/%d", fd);
			n = readlink(fdpath, link, sizeof(link) - 1);
			ours = n > 0 && (link[n] = '\0', !strcmp(link, want));
		}
		if (!ours)
			continue;
		*strrchr(path, '/') = '\0';
		char *note = xasprintf("%s/sockdir", b->tmp);
		vi_write_file_atomic(note, path, strlen(path), 0600);
		vi_error_clear();
		free(note);
		break;
	}
	if (f)
		fclose(f);
}

static int appliance_start(struct build *b)
{
	const struct template *t = b->t;

	if (!(b->g = tools_guestfs_create()))
		return vi_error(VI_EFAIL, "template '%s': cannot create a libguestfs handle",
				t->name);
	/* Its temporary files stay in the store, where the next build clears
	 * what a killed one left (not in /tmp, where nothing would). */
	if (guestfs_set_tmpdir(b->g, b->tmp) < 0)
		return gerr(b, "use '%s' for temporary files", b->tmp);
	if (needs_network(t))
		guestfs_set_network(b->g, 1);
	guestfs_set_event_callback(b->g, on_progress, GUESTFS_EVENT_PROGRESS, 0, b);
	for (size_t i = 0; i < b->img.ndisks; i++)
		if (guestfs_add_drive_opts(b->g, b->img.disks[i].path,
					   GUESTFS_ADD_DRIVE_OPTS_FORMAT, "qcow2", -1) < 0)
			return gerr(b, "add '%s'", b->img.disks[i].path);
	progress(b, "starting the appliance", -1);
	if (guestfs_launch(b->g) < 0)
		return gerr(b, "start the libguestfs appliance");
	note_sockdir(b);
	if (!(b->devices = guestfs_list_devices(b->g)))
		return gerr(b, "list the disks");
	return 0;
}

/* Flushes and stops the appliance; its exit status says whether everything
 * reached the disks. */
static int appliance_finish(struct build *b)
{
	int rc = 0;

	if (!b->g)
		return 0;
	progress(b, "stopping the appliance", -1);
	if (guestfs_umount_all(b->g) < 0 || guestfs_shutdown(b->g) < 0)
		rc = gerr(b, "finish writing the disks");
	guestfs_close(b->g);
	b->g = NULL;
	tools_strv_free(b->devices);
	b->devices = NULL;
	return rc;
}

static void appliance_abort(struct build *b)
{
	if (b->g)
		guestfs_close(b->g);
	b->g = NULL;
	tools_strv_free(b->devices);
	b->devices = NULL;
}

/* --- files in the image ------------------------------------------------- */

static int put_file(struct build *b, const char *path, const char *text, size_t len, int mode)
{
	char *dir = xstrdup(path);
	int rc = 0;

	if (guestfs_mkdir_p(b->g, dirname(dir)) < 0 || guestfs_write(b->g, path, text, len) < 0 ||
	    guestfs_chmod(b->g, mode, path) < 0)
		rc = gerr(b, "write '%s' in the image", path);
	free(dir);
	return rc;
}

static int put_text(struct build *b, const char *path, const char *text, int mode)
{
	return put_file(b, path, text, strlen(text), mode);
}

/* A text file of the image as lines (none when it does not exist). */
static int read_lines(struct build *b, const char *path, struct template_strv *lines)
{
	char *text, *save = NULL;
	size_t len;

	memset(lines, 0, sizeof(*lines));
	if (guestfs_is_file(b->g, path) <= 0)
		return 0;
	if (!(text = guestfs_read_file(b->g, path, &len)))
		return gerr(b, "read '%s' in the image", path);
	for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
		template_strv_push(lines, l);
	free(text);
	return 0;
}

static int write_lines(struct build *b, const char *path, const struct template_strv *lines,
		       int mode)
{
	size_t len = 0;
	char *text;
	int rc;

	for (size_t i = 0; i < lines->n; i++)
		len += strlen(lines->v[i]) + 1;
	text = xmalloc(len + 1);
	len = 0;
	for (size_t i = 0; i < lines->n; i++)
		len += sprintf(text + len, "%s\n", lines->v[i]);
	rc = put_file(b, path, text, len, mode);
	free(text);
	return rc;
}

/* Field i (from 0) of a colon-separated line; the caller frees it. */
static char *field(const char *line, int i)
{
	const char *p = line;

	while (i-- > 0 && p)
		p = strchr(p, ':') ? strchr(p, ':') + 1 : NULL;
	return p ? xstrndup(p, strcspn(p, ":")) : xstrdup("");
}

/* Field i as a number; -1 if it is not one. */
static long field_num(const char *line, int i)
{
	char *f = field(line, i), *end;
	long v = strtol(f, &end, 10);

	v = *f && !*end ? v : -1;
	free(f);
	return v;
}

/* The line of an /etc/passwd-like list whose first field is name. */
static const char *find_entry(const struct template_strv *lines, const char *name)
{
	size_t n = strlen(name);

	for (size_t i = 0; i < lines->n; i++)
		if (!strncmp(lines->v[i], name, n) && lines->v[i][n] == ':')
			return lines->v[i];
	return NULL;
}

/* want when no line uses it in field f (-1 if one does), else with want 0
 * the smallest such id from 1000 up. */
static long free_id(const struct template_strv *lines, int f, long want)
{
	for (long id = want ? want : 1000; id < 60000; id++) {
		bool taken = false;
		for (size_t i = 0; i < lines->n && !taken; i++)
			taken = field_num(lines->v[i], f) == id;
		if (!taken)
			return id;
		if (want)
			return -1;
	}
	return -1;
}

/* The image's account files, edited in memory and written back. */
struct accounts {
	struct template_strv passwd, shadow, group, gshadow;
	bool has_shadow, has_gshadow;
};

static void accounts_release(struct accounts *a)
{
	template_strv_release(&a->passwd);
	template_strv_release(&a->shadow);
	template_strv_release(&a->group);
	template_strv_release(&a->gshadow);
}

static int accounts_read(struct build *b, struct accounts *a)
{
	int rc;

	memset(a, 0, sizeof(*a));
	a->has_shadow = guestfs_is_file(b->g, "/etc/shadow") > 0;
	a->has_gshadow = guestfs_is_file(b->g, "/etc/gshadow") > 0;
	if ((rc = read_lines(b, "/etc/passwd", &a->passwd)) < 0 ||
	    (rc = read_lines(b, "/etc/shadow", &a->shadow)) < 0 ||
	    (rc = read_lines(b, "/etc/group", &a->group)) < 0 ||
	    (rc = read_lines(b, "/etc/gshadow", &a->gshadow)) < 0)
		accounts_release(a);
	return rc;
}

static int accounts_write(struct build *b, const struct accounts *a)
{
	int rc;

	if ((rc = write_lines(b, "/etc/passwd", &a->passwd, 0644)) < 0 ||
	    (rc = write_lines(b, "/etc/group", &a->group, 0644)) < 0 ||
	    (a->has_shadow && (rc = write_lines(b, "/etc/shadow", &a->shadow, 0640)) < 0) ||
	    (a->has_gshadow && (rc = write_lines(b, "/etc/gshadow", &a->gshadow, 0640)) < 0))
		return rc;
	return 0;
}

/* "USER[:GROUP]" (names or numbers) as ids from the image's own files. */
static int resolve_owner(struct build *b, const char *owner, long *uid, long *gid)
{
	struct accounts a;
	char *user = xstrdup(owner), *grp = strchr(user, ':');
	const char *e;
	int rc;

	if (grp)
		*grp++ = '\0';
	if ((rc = accounts_read(b, &a)) < 0) {
		free(user);
		return rc;
	}
	if ((e = find_entry(&a.passwd, user))) {
		*uid = field_num(e, 2);
		*gid = field_num(e, 3);
	} else if (user[0] && !user[strspn(user, "0123456789")]) {
		*uid = strtol(user, NULL, 10);
		*gid = 0;
	} else {
		rc = vi_error(VI_EUSAGE, "template '%s': no user '%s' in the image", b->t->name,
			      user);
	}
	if (rc == 0 && grp) {
		if ((e = find_entry(&a.group, grp)))
			*gid = field_num(e, 2);
		else if (grp[0] && !grp[strspn(grp, "0123456789")])
			*gid = strtol(grp, NULL, 10);
		else
			rc = vi_error(VI_EUSAGE, "template '%s': no group '%s' in the image",
				      b->t->name, grp);
	}
	accounts_release(&a);
	free(user);
	return rc;
}

/* --- customisation steps ------------------------------------------------ */

static int set_hostname(struct build *b)
{
	const char *name = b->t->hostname;
	struct template_strv hosts, out = { 0 };
	char *line = xasprintf("%s\n", name);
	bool localhost = false;
	int rc;

	progress(b, "setting the host name", -1);
	if ((rc = put_text(b, "/etc/hostname", line, 0644)) < 0 ||
	    (rc = read_lines(b, "/etc/hosts", &hosts)) < 0) {
		free(line);
		return rc;
	}
	free(line);
	for (size_t i = 0; i < hosts.n; i++) {
		if (!strncmp(hosts.v[i], "127.0.1.1", 9))
			continue;
		localhost |= !strncmp(hosts.v[i], "127.0.0.1", 9);
		template_strv_push(&out, hosts.v[i]);
	}
	if (!localhost)
		template_strv_push(&out, "127.0.0.1\tlocalhost");
	line = xasprintf("127.0.1.1\t%s", name);
	template_strv_push(&out, line);
	free(line);
	rc = write_lines(b, "/etc/hosts", &out, 0644);
	template_strv_release(&hosts);
	template_strv_release(&out);
	return rc;
}

/* Owner of everything under dir (the new user's home). */
static int chown_tree(struct build *b, const char *dir, long uid, long gid)
{
	char **rel = guestfs_find(b->g, dir);
	int rc = 0;

	if (!rel)
		return gerr(b, "list '%s' in the image", dir);
	if (guestfs_lchown(b->g, (int)uid, (int)gid, dir) < 0)
		rc = gerr(b, "change the owner of '%s'", dir);
	for (char **p = rel; *p && rc == 0; p++) {
		char *path = xasprintf("%s/%s", dir, *p);
		if (guestfs_lchown(b->g, (int)uid, (int)gid, path) < 0)
			rc = gerr(b, "change the owner of '%s'", path);
		free(path);
	}
	tools_strv_free(rel);
	return rc;
}

/* Adds name to the member list (field 3) of group's line. */
static int add_member(struct build *b, struct template_strv *lines, const char *group,
		      const char *name)
{
	for (size_t i = 0; i < lines->n; i++) {
		char *l = lines->v[i];
		size_t n = strlen(group);
		if (strncmp(l, group, n) || l[n] != ':')
			continue;
		const char *members = strrchr(l, ':') + 1;
		char *copy = xasprintf(",%s,", members);
		char *want = xasprintf(",%s,", name);
		if (!strstr(copy, want)) {
			lines->v[i] = xasprintf("%s%s%s", l, *members ? "," : "", name);
			free(l);
		}
		free(copy);
		free(want);
		return 0;
	}
	return vi_error(VI_EUSAGE, "template '%s': no group '%s' in the image for user '%s'",
			b->t->name, group, name);
}

static int authorized_keys(struct build *b, const struct template_user *u, const char *home,
			   long uid, long gid)
{
	char *dir = xasprintf("%s/.ssh", home), *path = xasprintf("%s/authorized_keys", dir);
	struct template_strv keys;
	int rc;

	if ((rc = read_lines(b, path, &keys)) < 0)
		goto cleanup;
	for (size_t i = 0; i < u->ssh_keys.n; i++)
		template_strv_push(&keys, u->ssh_keys.v[i]);
	for (size_t i = 0; i < u->ssh_key_files.n && rc == 0; i++) {
		char *text, *save = NULL;
		size_t len;
		if ((rc = vi_read_file(u->ssh_key_files.v[i], &text, &len)) < 0)
			break;
		for (char *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
			if (*l && *l != '#')
				template_strv_push(&keys, l);
		free(text);
	}
	if (rc == 0 && (rc = write_lines(b, path, &keys, 0600)) == 0) {
		if (guestfs_chmod(b->g, 0700, dir) < 0)
			rc = gerr(b, "change the mode of '%s'", dir);
		else
			rc = chown_tree(b, dir, uid, gid);
	}
	template_strv_release(&keys);
cleanup:
	free(dir);
	free(path);
	return rc;
}

static void push_line(struct template_strv *l, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void push_line(struct template_strv *l, const char *fmt, ...)
{
	va_list ap;
	char *line;

	va_start(ap, fmt);
	if (vasprintf(&line, fmt, ap) < 0)
		line = NULL;
	va_end(ap);
	if (!line)
		abort();
	template_strv_push(l, line);
	free(line);
}

/* A new account: its group, passwd and shadow lines, and a home directory
 * filled from /etc/skel. */
static int new_account(struct build *b, struct accounts *a, const struct template_user *u,
		       long *uid, long *gid, char **home)
{
	const char *shell = u->shell, *e;
	int rc = 0;

	if ((*uid = free_id(&a->passwd, 2, (long)u->uid)) < 0)
		return vi_error(VI_EUSAGE, "template '%s': uid %llu of user '%s' is taken",
				b->t->name, (unsigned long long)u->uid, u->name);
	if ((e = find_entry(&a->group, u->name))) {
		*gid = field_num(e, 2);
	} else {
		if ((*gid = free_id(&a->group, 2, *uid)) < 0)
			*gid = free_id(&a->group, 2, 0);
		push_line(&a->group, "%s:x:%ld:", u->name, *gid);
		push_line(&a->gshadow, "%s:!::", u->name);
	}
	if (!shell)
		shell = guestfs_is_file_opts(b->g, "/bin/bash", GUESTFS_IS_FILE_OPTS_FOLLOWSYMLINKS,
					     1, -1) > 0
				? "/bin/bash"
				: "/bin/sh";
	*home = xasprintf("/home/%s", u->name);
	push_line(&a->passwd, "%s:x:%ld:%ld::%s:%s", u->name, *uid, *gid, *home, shell);
	/* "*": no password can log in; SSH keys can. */
	push_line(&a->shadow, "%s:*::0:99999:7:::", u->name);
	if (guestfs_mkdir_p(b->g, *home) < 0 || guestfs_chmod(b->g, 0755, *home) < 0)
		return gerr(b, "create '%s'", *home);
	if (guestfs_is_dir(b->g, "/etc/skel") > 0) {
		char **skel = guestfs_ls(b->g, "/etc/skel");
		if (!skel)
			return gerr(b, "list /etc/skel");
		for (char **p = skel; *p && rc == 0; p++) {
			char *src = xasprintf("/etc/skel/%s", *p);
			if (guestfs_cp_a(b->g, src, *home) < 0)
				rc = gerr(b, "copy '%s'", src);
			free(src);
		}
		tools_strv_free(skel);
	}
	return rc < 0 ? rc : chown_tree(b, *home, *uid, *gid);
}

static int add_user(struct build *b, const struct template_user *u)
{
	struct accounts a;
	const char *e;
	char *home = NULL;
	long uid = 0, gid = 0;
	int rc;

	if ((rc = accounts_read(b, &a)) < 0)
		return rc;
	if ((e = find_entry(&a.passwd, u->name))) {
		/* An existing user (root, say) only gains keys, groups, sudo. */
		uid = field_num(e, 2);
		gid = field_num(e, 3);
		home = field(e, 5);
	} else if ((rc = new_account(b, &a, u, &uid, &gid, &home)) < 0) {
		goto cleanup;
	}
	for (size_t i = 0; i < u->groups.n && rc == 0; i++) {
		rc = add_member(b, &a.group, u->groups.v[i], u->name);
		if (rc == 0 && find_entry(&a.gshadow, u->groups.v[i]))
			rc = add_member(b, &a.gshadow, u->groups.v[i], u->name);
	}
	if (rc < 0 || (rc = accounts_write(b, &a)) < 0)
		goto cleanup;
	if (u->ssh_keys.n + u->ssh_key_files.n &&
	    (rc = authorized_keys(b, u, *home ? home : "/", uid, gid)) < 0)
		goto cleanup;
	if (u->sudo) {
		char *path = xasprintf("/etc/sudoers.d/vi-%s", u->name);
		char *line = xasprintf("%s ALL=(ALL) NOPASSWD:ALL\n", u->name);
		rc = put_text(b, path, line, 0440);
		free(line);
		free(path);
	}
cleanup:
	free(home);
	accounts_release(&a);
	return rc;
}

static int write_files(struct build *b)
{
	for (size_t i = 0; i < b->t->nfiles; i++) {
		const struct template_file *f = &b->t->files[i];
		char *dir = xstrdup(f->path);
		int rc = 0;

		if (guestfs_mkdir_p(b->g, dirname(dir)) < 0)
			rc = gerr(b, "create the directory of '%s'", f->path);
		else if (f->content &&
			 guestfs_write(b->g, f->path, f->content, strlen(f->content)) < 0)
			rc = gerr(b, "write '%s'", f->path);
		else if (f->source && guestfs_upload(b->g, f->source, f->path) < 0)
			rc = gerr(b, "copy '%s' to '%s'", f->source, f->path);
		else if (guestfs_chmod(b->g, (int)f->mode, f->path) < 0)
			rc = gerr(b, "change the mode of '%s'", f->path);
		free(dir);
		if (rc == 0 && f->owner) {
			long uid = 0, gid = 0;
			if ((rc = resolve_owner(b, f->owner, &uid, &gid)) == 0 &&
			    guestfs_chown(b->g, (int)uid, (int)gid, f->path) < 0)
				rc = gerr(b, "change the owner of '%s'", f->path);
		}
		if (rc < 0)
			return rc;
	}
	return 0;
}

static int run_shell(struct build *b, const char *what, const char *command)
{
	char *out = guestfs_sh(b->g, command);

	if (!out)
		return gerr(b, "%s", what);
	vi_debug("%s: %s", what, out);
	free(out);
	return 0;
}

static int install_packages(struct build *b, const struct template_strv *pkgs)
{
	char *cmd = xstrdup("export DEBIAN_FRONTEND=noninteractive; apt-get -q update && "
			    "apt-get -q -y --no-install-recommends install");
	int rc;

	for (size_t i = 0; i < pkgs->n; i++) {
		char *n = xasprintf("%s %s", cmd, pkgs->v[i]);
		free(cmd);
		cmd = n;
	}
	char *full = xasprintf("%s && apt-get clean", cmd);
	progress(b, "installing packages", -1);
	rc = run_shell(b, "install packages", full);
	free(full);
	free(cmd);
	return rc;
}

static const char first_boot_script[] =
	"#!/bin/sh\n"
	"# Runs the first-boot commands of the templates this image was built\n"
	"# from, once: /usr/lib/vi/first-boot.d/* in order.\n"
	"[ -e /var/lib/vi/first-boot.done ] && exit 0\n"
	"for f in /usr/lib/vi/first-boot.d/*; do\n"
	"\t[ -f \"$f\" ] || continue\n"
	"\t/bin/sh -e \"$f\" || echo \"vi: first-boot commands ${f##*/} failed\" >/dev/console\n"
	"done\n"
	"mkdir -p /var/lib/vi\n"
	"touch /var/lib/vi/first-boot.done\n";

static const char ready_script[] =
	"#!/bin/sh\n"
	"# Prints the readiness marker on the console once the template's probe,\n"
	"# /usr/lib/vi/ready-probe, succeeds.\n"
	"until /bin/sh /usr/lib/vi/ready-probe >/dev/null 2>&1; do\n"
	"\tsleep 1\n"
	"done\n"
	"echo " TEMPLATE_READY_MARKER " >/dev/console\n";

static const char first_boot_unit[] =
	"[Unit]\n"
	"Description=First-boot commands of the vi template\n"
	"ConditionPathExists=!/var/lib/vi/first-boot.done\n"
	"After=local-fs.target network.target\n"
	"Before=ssh.service systemd-user-sessions.service\n"
	"\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/usr/lib/vi/first-boot\n"
	"\n[Install]\nWantedBy=multi-user.target\n";

static const char ready_unit[] = "[Unit]\n"
				 "Description=Readiness probe of the vi template\n"
				 "After=vi-first-boot.service\n"
				 "\n[Service]\nExecStart=/usr/lib/vi/ready\n"
				 "\n[Install]\nWantedBy=multi-user.target\n";

/* Shell lines of the identity and seed hooks: the host name $name, in
 * /etc/hostname, the kernel and the 127.0.1.1 line of /etc/hosts. */
#define SET_HOSTNAME                                                    \
	"\techo \"$name\" >/etc/hostname\n"                                \
	"\thostname \"$name\"\n"                                           \
	"\tif [ -f /etc/hosts ]; then\n"                                    \
	"\t\tsed -i '/^127\\.0\\.1\\.1[[:space:]]/d' /etc/hosts\n"         \
	"\t\tprintf '127.0.1.1\\t%s\\n' \"$name\" >>/etc/hosts\n"        \
	"\tfi\n"

static const char identity_script[] =
	"#!/bin/sh\n"
	"# Takes the identity vi hands the machine on the kernel command line. A\n"
	"# machine ID not taken before means a new machine (or a clone): it gets the\n"
	"# host name and machine ID, and new SSH host keys.\n"
	"id= name= keys=\n"
	"for arg in $(cat /proc/cmdline); do\n"
	"\tcase $arg in\n"
	"\tvi.machine_id=*) id=${arg#*=} ;;\n"
	"\tvi.hostname=*) name=${arg#*=} ;;\n"
	"\tesac\n"
	"done\n"
	"[ -n \"$id\" ] || exit 0\n"
	"[ \"$(cat /var/lib/vi/identity 2>/dev/null)\" = \"$id\" ] && exit 0\n"
	"echo \"$id\" >/etc/machine-id\n"
	"if [ -n \"$name\" ]; then\n"
	SET_HOSTNAME
	"fi\n"
	"if command -v ssh-keygen >/dev/null; then\n"
	"\trm -f /etc/ssh/ssh_host_*\n"
	"\tssh-keygen -A >/dev/null\n"
	"\tkeys=$(for k in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -lf \"$k\"; done)\n"
	"fi\n"
	"mkdir -p /var/lib/vi\n"
	"echo \"$id\" >/var/lib/vi/identity\n"
	"sync\n"
	"echo \"vi: this is ${name:-$(hostname)}, machine ID $id\" >/dev/console\n"
	"[ -z \"$keys\" ] || echo \"$keys\" | sed 's/^/vi: SSH host key /' >/dev/console\n";

static const char identity_unit[] =
	"[Unit]\n"
	"Description=Identity handed over by vi\n"
	"DefaultDependencies=no\n"
	"ConditionKernelCommandLine=vi.machine_id\n"
	"After=local-fs.target\n"
	"Before=sysinit.target ssh.service systemd-hostnamed.service vi-first-boot.service\n"
	"\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/usr/lib/vi/identity\n"
	"\n[Install]\nWantedBy=sysinit.target\n";

static const char seed_script[] =
	"#!/bin/sh\n"
	"# Applies the first-boot seed vi attaches, a disk labelled CIDATA, once per\n"
	"# instance ID: host name, users and their keys, the SSH host key, the\n"
	"# user's commands, the growth of the root file system. Images with\n"
	"# cloud-init take the seed there instead.\n"
	"export PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"
	"say() { echo \"vi: seed: $*\" >/dev/console; }\n"
	"mnt=/run/vi-seed\n"
	"mkdir -p $mnt\n"
	"dev=$(findfs LABEL=CIDATA 2>/dev/null || findfs LABEL=cidata 2>/dev/null)\n"
	"if [ -n \"$dev\" ]; then\n"
	"\tmount -t vfat -o ro \"$dev\" $mnt 2>/dev/null || { say \"cannot mount $dev\"; exit 0; }\n"
	"else\n"
	"\t# No label finder that knows FAT: look at every disk.\n"
	"\tfor b in /sys/class/block/*; do\n"
	"\t\tmount -t vfat -o ro \"/dev/${b##*/}\" $mnt 2>/dev/null || continue\n"
	"\t\t[ -f $mnt/vi/instance-id ] && dev=/dev/${b##*/} && break\n"
	"\t\tumount $mnt\n"
	"\tdone\n"
	"fi\n"
	"[ -n \"$dev\" ] || exit 0\n"
	"trap 'umount $mnt' EXIT\n"
	"seed=$mnt/vi\n"
	"id=$(cat $seed/instance-id 2>/dev/null)\n"
	"[ -n \"$id\" ] || { say \"$dev has no vi/instance-id\"; exit 0; }\n"
	"# Every boot: the root file system fills its partition, which vi grows\n"
	"# with the disk (said only when it grew).\n"
	"if [ -e $seed/grow-root ]; then\n"
	"\troot=$(awk '$2 == \"/\" { d = $1 } END { print d }' /proc/mounts)\n"
	"\tif [ ! -b \"$root\" ]; then\n"
	"\t\troot=$(sed -n 's/.*root=\\([^ ]*\\).*/\\1/p' /proc/cmdline)\n"
	"\t\tcase $root in UUID=* | LABEL=*) root=$(findfs \"$root\") ;; esac\n"
	"\tfi\n"
	"\tbefore=$(df -k / | awk 'NR == 2 { print $2 }')\n"
	"\tif ! resize2fs \"$root\" >/dev/null 2>&1; then\n"
	"\t\tsay \"cannot grow the root file system on $root\"\n"
	"\telif [ \"$(df -k / | awk 'NR == 2 { print $2 }')\" != \"$before\" ]; then\n"
	"\t\tsay \"root file system on $root grown to $(df -h / | awk 'NR == 2 { print $2 }')\"\n"
	"\tfi\n"
	"fi\n"
	"[ \"$(cat /var/lib/vi/seed 2>/dev/null)\" = \"$id\" ] && exit 0\n"
	"\n"
	"if [ -s $seed/hostname ]; then\n"
	"\tname=$(cat $seed/hostname)\n"
	SET_HOSTNAME
	"\tsay \"host name $name\"\n"
	"fi\n"
	"\n"
	"# user NAME KEYS SUDO: the account (made when missing), its keys, sudo.\n"
	"user() {\n"
	"\tu=$1\n"
	"\tif ! grep -q \"^$u:\" /etc/passwd; then\n"
	"\t\tif command -v useradd >/dev/null; then\n"
	"\t\t\tsh=/bin/sh\n"
	"\t\t\t[ -x /bin/bash ] && sh=/bin/bash\n"
	"\t\t\tuseradd -m -s $sh \"$u\"\n"
	"\t\telse\n"
	"\t\t\t# busybox without adduser: the lines themselves\n"
	"\t\t\tn=1000\n"
	"\t\t\twhile cut -d: -f3 /etc/passwd /etc/group | grep -qx $n; do n=$((n + 1)); done\n"
	"\t\t\techo \"$u:x:$n:$n::/home/$u:/bin/sh\" >>/etc/passwd\n"
	"\t\t\techo \"$u:x:$n:\" >>/etc/group\n"
	"\t\t\t[ -f /etc/shadow ] && echo \"$u:*::0:99999:7:::\" >>/etc/shadow\n"
	"\t\t\tmkdir -p /home/$u\n"
	"\t\t\tchown $n:$n /home/$u\n"
	"\t\tfi\n"
	"\t\t# A locked password locks out keys too for some servers: none instead.\n"
	"\t\t[ -f /etc/shadow ] && sed -i \"s/^$u:![^:]*:/$u:*:/\" /etc/shadow\n"
	"\tfi\n"
	"\thome=$(grep \"^$u:\" /etc/passwd | cut -d: -f6)\n"
	"\tids=$(grep \"^$u:\" /etc/passwd | cut -d: -f3,4)\n"
	"\tmkdir -p \"$home/.ssh\"\n"
	"\tcat \"$2\" >>\"$home/.ssh/authorized_keys\"\n"
	"\tchmod 700 \"$home/.ssh\"\n"
	"\tchmod 600 \"$home/.ssh/authorized_keys\"\n"
	"\tchown -R \"$ids\" \"$home/.ssh\"\n"
	"\tif [ -e \"$3\" ] && [ \"$u\" != root ]; then\n"
	"\t\tmkdir -p /etc/sudoers.d\n"
	"\t\techo \"$u ALL=(ALL) NOPASSWD:ALL\" >/etc/sudoers.d/vi-seed-$u\n"
	"\t\tchmod 440 /etc/sudoers.d/vi-seed-$u\n"
	"\tfi\n"
	"\tk=$(grep -c . \"$2\")\n"
	"\t[ \"$k\" = 1 ] && k=\"1 key\" || k=\"$k keys\"\n"
	"\tsay \"user $u, $k$([ -e \"$3\" ] && [ \"$u\" != root ] && echo ', sudo')\"\n"
	"}\n"
	"[ -s $seed/user ] && user \"$(cat $seed/user)\" $seed/authorized_keys $seed/sudo\n"
	"for d in $seed/users/*; do\n"
	"\t[ -d \"$d\" ] && user \"${d##*/}\" \"$d/authorized_keys\" \"$d/sudo\"\n"
	"done\n"
	"\n"
	"key=$seed/ssh_host_ed25519_key\n"
	"if [ -f $key ]; then\n"
	"\tif [ -d /etc/ssh ]; then\n"
	"\t\tcp $key $key.pub /etc/ssh/\n"
	"\t\tchmod 600 /etc/ssh/ssh_host_ed25519_key\n"
	"\t\tchmod 644 /etc/ssh/ssh_host_ed25519_key.pub\n"
	"\tfi\n"
	"\tif command -v dropbearconvert >/dev/null; then\n"
	"\t\tmkdir -p /etc/dropbear\n"
	"\t\tdropbearconvert openssh dropbear $key /etc/dropbear/dropbear_ed25519_host_key \\\n"
	"\t\t\t>/dev/null 2>&1\n"
	"\tfi\n"
	"\tsay \"host key $(cat $key.pub)\"\n"
	"fi\n"
	"\n"
	"mkdir -p /var/lib/vi\n"
	"if [ -f $seed/runcmd ]; then\n"
	"\tcp $seed/runcmd /var/lib/vi/runcmd\n"
	"\tsh /var/lib/vi/runcmd >/dev/console 2>&1\n"
	"\tsay \"commands ran, exit status $?\"\n"
	"fi\n"
	"if [ -f $seed/script ]; then\n"
	"\tcp $seed/script /var/lib/vi/user-script\n"
	"\tchmod 700 /var/lib/vi/user-script\n"
	"\t/var/lib/vi/user-script >/dev/console 2>&1\n"
	"\tsay \"script ran, exit status $?\"\n"
	"fi\n"
	"echo \"$id\" >/var/lib/vi/seed\n"
	"sync\n";

static const char seed_unit[] =
	"[Unit]\n"
	"Description=First-boot seed handed over by vi\n"
	"After=local-fs.target network.target vi-identity.service\n"
	"Before=ssh.service systemd-user-sessions.service vi-first-boot.service\n"
	"\n[Service]\nType=oneshot\nRemainAfterExit=yes\nExecStart=/usr/lib/vi/seed\n"
	"\n[Install]\nWantedBy=multi-user.target\n";

static bool has_systemd(struct build *b)
{
	return guestfs_is_file_opts(b->g, "/lib/systemd/systemd",
				    GUESTFS_IS_FILE_OPTS_FOLLOWSYMLINKS, 1, -1) > 0;
}

static bool has_busybox_init(struct build *b)
{
	return guestfs_is_file(b->g, "/etc/init.d/rcS") > 0;
}

/* Runs script at boot: a systemd unit wanted by `target`, or an
 * /etc/init.d/S* script of the busybox init that source: busybox sets up. */
static int boot_hook(struct build *b, const char *name, const char *unit, const char *target,
		     const char *script, const char *order, bool background)
{
	int rc;

	if (has_systemd(b)) {
		char *path = xasprintf("/etc/systemd/system/%s.service", name);
		char *wants = xasprintf("/etc/systemd/system/%s.wants", target);
		char *link = xasprintf("%s/%s.service", wants, name);
		if ((rc = put_text(b, path, unit, 0644)) == 0 &&
		    (guestfs_mkdir_p(b->g, wants) < 0 || guestfs_ln_sf(b->g, path, link) < 0))
			rc = gerr(b, "enable '%s'", path);
		free(path);
		free(wants);
		free(link);
		return rc;
	}
	if (!has_busybox_init(b))
		return vi_error(
			VI_EUSAGE,
			"template '%s': boot commands need systemd or the busybox init in the image",
			b->t->name);
	char *path = xasprintf("/etc/init.d/S%s%s", order, name);
	char *text = xasprintf("#!/bin/sh\n%s%s\n", script, background ? " &" : "");
	rc = put_text(b, path, text, 0755);
	free(path);
	free(text);
	return rc;
}

static int install_hooks(struct build *b)
{
	const struct template *t = b->t;
	int rc = 0;

	if (t->first_boot.n) {
		/* Layers run theirs after their bases': numbered by depth. */
		char *path =
			xasprintf("/usr/lib/vi/first-boot.d/%02d-%s", 10 + 10 * t->depth, t->name);
		progress(b, "installing the first-boot commands", -1);
		if ((rc = write_lines(b, path, &t->first_boot, 0644)) == 0 &&
		    (rc = put_text(b, "/usr/lib/vi/first-boot", first_boot_script, 0755)) == 0)
			rc = boot_hook(b, "vi-first-boot", first_boot_unit, "multi-user.target",
				       "/usr/lib/vi/first-boot", "50", false);
		free(path);
	}
	if (rc == 0 && (t->ready_command || t->ready_ssh)) {
		/* ready: ssh means something listens on TCP port 22 (0x16). */
		char *probe = t->ready_ssh ? xstrdup("grep -qs '^ *[0-9]*: [0-9A-F:]*:0016 [0-9A-F:]* 0A' "
						     "/proc/net/tcp /proc/net/tcp6\n")
					   : xasprintf("%s\n", t->ready_command);
		if ((rc = put_text(b, "/usr/lib/vi/ready-probe", probe, 0644)) == 0 &&
		    (rc = put_text(b, "/usr/lib/vi/ready", ready_script, 0755)) == 0)
			rc = boot_hook(b, "vi-ready", ready_unit, "multi-user.target",
				       "/usr/lib/vi/ready", "99", true);
		free(probe);
	}
	return rc;
}

/* Every root vi makes takes the identity of each machine made from it, where
 * its init can run the hook. */
static int install_identity(struct build *b)
{
	int rc;

	if (!has_systemd(b) && !has_busybox_init(b)) {
		vi_warn("template '%s': no systemd or busybox init in the image: machines made "
			"from it keep its host name and machine ID", b->t->name);
		return 0;
	}
	progress(b, "installing the identity hook", -1);
	if ((rc = put_text(b, "/usr/lib/vi/identity", identity_script, 0755)) < 0)
		return rc;
	return boot_hook(b, "vi-identity", identity_unit, "sysinit.target", "/usr/lib/vi/identity",
			 "05", false);
}

/* The disk whose root file system is unpacked from a tar file, or -1. */
static int rootfs_disk(const struct template *t)
{
	for (size_t i = 0; i < t->ndisks; i++)
		if (t->disks[i].source == TEMPLATE_SOURCE_BUSYBOX ||
		    t->disks[i].source == TEMPLATE_SOURCE_TARBALL ||
		    t->disks[i].source == TEMPLATE_SOURCE_DEBOOTSTRAP)
			return (int)i;
	return -1;
}

/* vi's first-boot seed hook, in roots made here, unless cloud-init is there
 * to take the seed (then the manifest says so). */
static int install_seed(struct build *b)
{
	b->img.cloud_init = b->base.cloud_init ||
			    guestfs_is_file_opts(b->g, "/usr/bin/cloud-init",
						 GUESTFS_IS_FILE_OPTS_FOLLOWSYMLINKS, 1, -1) > 0;
	if (b->img.cloud_init || rootfs_disk(b->t) < 0 || (!has_systemd(b) && !has_busybox_init(b)))
		return 0;
	progress(b, "installing the seed hook", -1);
	int rc = put_text(b, "/usr/lib/vi/seed", seed_script, 0755);
	return rc < 0 ? rc
		      : boot_hook(b, "vi-seed", seed_unit, "multi-user.target", "/usr/lib/vi/seed",
				  "10", false);
}

/* Host programs with their libraries, at the same paths; whatever the image
 * has there (a busybox link, say) is replaced, not written through. */
static int copy_programs(struct build *b)
{
	const struct template_strv *files = &b->t->program_files;
	int rc = 0;

	progress(b, "copying programs", -1);
	for (size_t i = 0; i < files->n && rc == 0; i++) {
		char *dir = xstrdup(files->v[i]);
		if (guestfs_mkdir_p(b->g, dirname(dir)) < 0 || guestfs_rm_f(b->g, files->v[i]) < 0 ||
		    guestfs_upload(b->g, files->v[i], files->v[i]) < 0 ||
		    guestfs_chmod(b->g, 0755, files->v[i]) < 0)
			rc = gerr(b, "copy the program file '%s'", files->v[i]);
		free(dir);
	}
	return rc;
}

/* Kernel modules of the host kernel that the template names, with their
 * dependencies and a modules.dep of their own, loaded at boot. */
static int copy_modules(struct build *b)
{
	const struct template *t = b->t;
	const char *version = strrchr(t->modules_dir, '/') + 1;
	char *dep = xstrdup(""), *conf = xstrdup(""), *host_dep = NULL;
	char *host_dep_path = xasprintf("%s/modules.dep", t->modules_dir);
	size_t len;
	int rc = vi_read_file(host_dep_path, &host_dep, &len);

	free(host_dep_path);
	progress(b, "copying kernel modules", -1);
	for (size_t i = 0; i < t->module_files.n && rc == 0; i++) {
		const char *file = t->module_files.v[i];
		char *src = xasprintf("%s/%s", t->modules_dir, file);
		char *dst = xasprintf("/lib/modules/%s/%s", version, file);
		char *dir = xstrdup(dst);
		if (guestfs_mkdir_p(b->g, dirname(dir)) < 0 || guestfs_upload(b->g, src, dst) < 0)
			rc = gerr(b, "copy the module '%s'", src);
		/* The host's line for the file, naming what modprobe loads before
		 * it: all of them are among the files copied. */
		size_t n = strlen(file);
		const char *l = host_dep;
		while (l && (strncmp(l, file, n) || l[n] != ':'))
			l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL;
		char *line = l ? xasprintf("%s%.*s\n", dep, (int)strcspn(l, "\n"), l)
			       : xasprintf("%s%s:\n", dep, file);
		free(dep);
		dep = line;
		free(src);
		free(dst);
		free(dir);
	}
	for (size_t i = 0; i < t->modules.n; i++) {
		char *n = xasprintf("%s%s\n", conf, t->modules.v[i]);
		free(conf);
		conf = n;
	}
	char *dep_path = xasprintf("/lib/modules/%s/modules.dep", version);
	if (rc == 0 && (rc = put_text(b, dep_path, dep, 0644)) == 0)
		rc = put_text(b, "/etc/modules-load.d/vi.conf", conf, 0644);
	free(dep_path);
	free(dep);
	free(conf);
	free(host_dep);
	return rc;
}

/* The root file system in /etc/fstab, by UUID, unless it is there. */
static int write_fstab(struct build *b, const char *dev, const char *fs)
{
	struct template_strv lines;
	char *uuid, *line;
	int rc;

	if ((rc = read_lines(b, "/etc/fstab", &lines)) < 0)
		return rc;
	for (size_t i = 0; i < lines.n; i++) {
		char what[256], where[256];
		if (lines.v[i][0] != '#' && sscanf(lines.v[i], "%255s %255s", what, where) == 2 &&
		    !strcmp(where, "/")) {
			template_strv_release(&lines);
			return 0;
		}
	}
	if (!(uuid = guestfs_vfs_uuid(b->g, dev))) {
		template_strv_release(&lines);
		return gerr(b, "read the UUID of '%s'", dev);
	}
	line = xasprintf("UUID=%s\t/\t%s\tdefaults\t0\t1", uuid, fs);
	template_strv_push(&lines, line);
	rc = write_lines(b, "/etc/fstab", &lines, 0644);
	template_strv_release(&lines);
	free(line);
	free(uuid);
	return rc;
}

/* The newest /boot/vmlinuz-VERSION of the image (and its initrd) into the
 * image directory. */
static int extract_kernel(struct build *b)
{
	char **found = guestfs_glob_expand(b->g, "/boot/vmlinuz-*"), *best = NULL;
	int rc = 0;

	if (!found)
		return gerr(b, "look for a kernel in /boot");
	for (char **p = found; *p; p++)
		if (!best || strverscmp(*p, best) > 0)
			best = *p;
	if (!best) {
		tools_strv_free(found);
		return vi_error(VI_EFAIL,
				"template '%s': package '%s' put no /boot/vmlinuz-* in the image",
				b->t->name, b->t->kernel_package);
	}
	progress(b, "copying the kernel out", -1);
	b->img.kernel = xasprintf("%s/kernel", b->stage);
	if (guestfs_download(b->g, best, b->img.kernel) < 0)
		rc = gerr(b, "copy '%s' out of the image", best);
	if (rc == 0 && !b->t->no_initrd && !b->t->initrd_path) {
		char *initrd = xasprintf("/boot/initrd.img-%s", best + strlen("/boot/vmlinuz-"));
		if (guestfs_is_file(b->g, initrd) > 0) {
			b->img.initrd = xasprintf("%s/initrd", b->stage);
			if (guestfs_download(b->g, initrd, b->img.initrd) < 0)
				rc = gerr(b, "copy '%s' out of the image", initrd);
		}
		free(initrd);
	}
	tools_strv_free(found);
	return rc;
}

/* Mounts the root file system: partition 1 of a disk we filled, the one the
 * base's build recorded, or what inspection finds on a copied image. */
static int mount_root(struct build *b, const char *root)
{
	char **roots = NULL, **mps = NULL;
	size_t n;
	int rc = 0;

	if (root) {
		if (guestfs_mount(b->g, root, "/") < 0)
			return gerr(b, "mount '%s'", root);
		b->img.root = xstrdup(root);
		return 0;
	}
	if (!(roots = guestfs_inspect_os(b->g)))
		return gerr(b, "inspect the image");
	if (!roots[0]) {
		tools_strv_free(roots);
		return vi_error(VI_EFAIL, "template '%s': no operating system found on the image",
				b->t->name);
	}
	if (!(mps = tools_mountpoints(b->g, roots[0], &n))) {
		rc = gerr(b, "read the mount points of '%s'", roots[0]);
		tools_strv_free(roots);
		return rc;
	}
	for (size_t i = 0; i < n && rc == 0; i++)
		if (guestfs_mount(b->g, mps[2 * i + 1], mps[2 * i]) < 0)
			rc = gerr(b, "mount '%s' on '%s'", mps[2 * i + 1], mps[2 * i]);
	b->img.root = xstrdup(roots[0]);
	tools_strv_free(roots);
	tools_strv_free(mps);
	return rc;
}

static bool has_steps(const struct template *t)
{
	return t->hostname || t->nusers || t->nfiles || t->packages.n || t->run.n ||
	       t->first_boot.n || t->ready_command || t->ready_ssh || t->modules.n || t->programs.n ||
	       t->kernel == TEMPLATE_KERNEL_PACKAGE;
}

static int customise(struct build *b)
{
	const struct template *t = b->t;
	struct template_strv pkgs = { 0 };
	int rc = 0;

	if (t->modules.n && (rc = copy_modules(b)) < 0)
		return rc;
	if (t->programs.n && (rc = copy_programs(b)) < 0)
		return rc;
	if (t->hostname && (rc = set_hostname(b)) < 0)
		return rc;
	for (size_t i = 0; i < t->nusers && rc == 0; i++) {
		progress(b, "adding users", -1);
		rc = add_user(b, &t->users[i]);
	}
	if (rc == 0 && t->nfiles) {
		progress(b, "writing files", -1);
		rc = write_files(b);
	}
	if (rc < 0)
		return rc;
	if (apt_kernel(t))
		template_strv_push(&pkgs, t->kernel_package);
	for (size_t i = 0; i < t->packages.n; i++)
		template_strv_push(&pkgs, t->packages.v[i]);
	if (pkgs.n)
		rc = install_packages(b, &pkgs);
	template_strv_release(&pkgs);
	for (size_t i = 0; i < t->run.n && rc == 0; i++) {
		char *what = xasprintf("run '%s'", t->run.v[i]);
		progress(b, what, -1);
		rc = run_shell(b, what, t->run.v[i]);
		free(what);
	}
	if (rc == 0)
		rc = install_hooks(b);
	if (rc == 0)
		rc = install_seed(b);
	if (rc == 0 && t->kernel == TEMPLATE_KERNEL_PACKAGE)
		rc = extract_kernel(b);
	return rc;
}

/* The appliance session: file systems, the root's contents, the steps. */
static int fill_disks(struct build *b, const char *rootfs_tar)
{
	const struct template *t = b->t;
	int r = rootfs_disk(t), rc;
	char *root = NULL;

	if ((rc = appliance_start(b)) < 0)
		return rc;
	for (size_t i = 0; i < t->ndisks; i++) {
		const struct template_disk *d = &t->disks[i];
		if (!d->filesystem)
			continue;
		char *part = xasprintf("%s1", b->devices[i]);
		char *what = xasprintf("partitioning and formatting %s", b->devices[i]);
		progress(b, what, -1);
		free(what);
		if (guestfs_part_disk(b->g, b->devices[i], "mbr") < 0 ||
		    guestfs_mkfs(b->g, d->filesystem, part) < 0)
			rc = gerr(b, "make a %s file system on disk %zu", d->filesystem, i + 1);
		if ((int)i == r)
			root = part;
		else
			free(part);
		if (rc < 0)
			goto cleanup;
	}
	if (!root && t->base)
		root = xstrdup(b->base.root);
	if (!root && !has_steps(t))
		goto cleanup;
	if ((rc = mount_root(b, root)) < 0)
		goto cleanup;
	if (r >= 0) {
		progress(b, "unpacking the root file system", 0);
		rc = guestfs_tar_in_opts(b->g, rootfs_tar, "/", GUESTFS_TAR_IN_OPTS_XATTRS, 1, -1);
		if (rc < 0) {
			rc = gerr(b, "unpack the root file system");
			goto cleanup;
		}
		if ((rc = write_fstab(b, root, t->disks[r].filesystem)) < 0 ||
		    (rc = install_identity(b)) < 0)
			goto cleanup;
	}
	rc = customise(b);
cleanup:
	free(root);
	if (rc < 0) {
		appliance_abort(b);
		return rc;
	}
	return appliance_finish(b);
}

/* --- the image directory ------------------------------------------------ */

static int copy_file(const char *src, const char *dst)
{
	char *data;
	size_t len;
	int rc = vi_read_file(src, &data, &len);

	if (rc < 0)
		return rc;
	rc = vi_write_file_atomic(dst, data, len, 0600);
	free(data);
	return rc;
}

static int make_disks(struct build *b)
{
	const struct template *t = b->t;

	progress(b, "creating disks", -1);
	b->img.disks = xcalloc(t->ndisks, sizeof(*b->img.disks));
	for (size_t i = 0; i < t->ndisks; i++, b->img.ndisks++) {
		const struct template_disk *d = &t->disks[i];
		struct template_image_disk *out = &b->img.disks[i];
		char *name = template_disk_file(i);
		int rc = 0;

		out->path = xasprintf("%s/%s", b->stage, name);
		free(name);
		out->size = d->size;
		if (d->source == TEMPLATE_SOURCE_BASE) {
			if (i >= b->base.ndisks)
				return vi_error(VI_EFAIL, "the base of '%s' has no disk %zu",
						t->name, i + 1);
			rc = image_create_overlay(out->path, b->base.disks[i].path, true);
			out->size = b->base.disks[i].size;
		} else if (d->source == TEMPLATE_SOURCE_IMAGE) {
			struct image *src;
			struct image_convert_opts co = { .create = { .format = IMAGE_QCOW2 } };
			if ((rc = image_open(d->path, IMAGE_PROBE, 0, &src)) < 0)
				return rc;
			uint64_t size = image_size(src);
			if (d->size && d->size < size) {
				image_close(src);
				return vi_error(
					VI_EUSAGE,
					"template '%s': disk %zu is smaller than its image '%s'",
					t->name, i + 1, d->path);
			}
			rc = image_convert(src, out->path, &co);
			image_close(src);
			out->size = d->size ? d->size : size;
			if (rc == 0 && d->size > size) {
				struct image *img;
				if ((rc = image_open(out->path, IMAGE_QCOW2, IMAGE_OPEN_WRITE,
						     &img)) == 0) {
					rc = image_resize(img, d->size);
					int rc2 = image_close(img);
					rc = rc < 0 ? rc : rc2;
				}
			}
		} else {
			struct image_create_opts co = { .format = IMAGE_QCOW2, .size = d->size };
			rc = image_create(out->path, &co);
		}
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* A host file into the image directory; the base image's copy of the same
 * file is shared (hard-linked) instead, images being immutable. */
static int take_file(struct build *b, const char *src, const char *base_src, const char *base_copy,
		     const char *name, char **out)
{
	*out = xasprintf("%s/%s", b->stage, name);
	if (base_copy && base_src && !strcmp(src, base_src) && link(base_copy, *out) == 0)
		return 0;
	return copy_file(src, *out);
}

/* Kernel and initrd files of host or file kernels into the directory. */
static int copy_kernel(struct build *b)
{
	const struct template *t = b->t, *base = t->base;
	int rc = 0;

	if (t->kernel_path && t->kernel != TEMPLATE_KERNEL_PACKAGE)
		rc = take_file(b, t->kernel_path, base ? base->kernel_path : NULL, b->base.kernel,
			       "kernel", &b->img.kernel);
	if (rc == 0 && t->initrd_path)
		rc = take_file(b, t->initrd_path, base ? base->initrd_path : NULL, b->base.initrd,
			       "initrd", &b->img.initrd);
	if (rc == 0 && t->small_initrd) {
		/* A layer on the same kernel shares its base's. */
		b->img.initrd = xasprintf("%s/initrd", b->stage);
		if (!(base && base->small_initrd && b->base.initrd &&
		      !strcmp(base->kernel_path, t->kernel_path) &&
		      link(b->base.initrd, b->img.initrd) == 0))
			rc = template_initrd(t, b->img.initrd);
	}
	return rc;
}

/* The check `qemu-img check` makes, on everything we wrote. */
static int check_disks(struct build *b)
{
	progress(b, "checking the disks", -1);
	for (size_t i = 0; i < b->img.ndisks; i++) {
		struct image_check_result res = { 0 };
		int rc = image_check(b->img.disks[i].path, IMAGE_QCOW2, 0, &res);
		if (rc == 0 && (res.corruptions || res.leaks))
			rc = vi_error(
				VI_EFAIL,
				"template '%s': disk %zu has %llu errors and %llu leaked clusters",
				b->t->name, i + 1, (unsigned long long)res.corruptions,
				(unsigned long long)res.leaks);
		image_check_result_release(&res);
		if (rc < 0)
			return rc;
	}
	return 0;
}

/* The image's record: machine settings, files as they will be named. */
static void describe(struct build *b)
{
	const struct template *t = b->t;
	struct template_image *img = &b->img;

	img->dir = xstrdup(b->stage);
	img->template_digest = xstrdup(t->digest);
	img->name = xstrdup(t->name);
	img->version = xstrdup(t->version);
	img->description = xstrdup(t->description);
	if (t->base) {
		img->base_name = xstrdup(t->base->name);
		img->base_digest = xstrdup(b->base.digest);
	}
	img->hv = xstrdup(t->hv);
	img->cpus = t->cpus;
	img->max_cpus = t->max_cpus;
	img->memory = t->memory;
	img->max_memory = t->max_memory;
	img->cmdline = xstrdup(t->cmdline);
	if (t->ready_console)
		img->ready_marker = xstrdup(t->ready_console);
	else if (t->ready_command || t->ready_ssh)
		img->ready_marker = xstrdup(TEMPLATE_READY_MARKER);
	img->ready_ssh = t->ready_ssh;
	img->ready_timeout = t->ready_timeout;
	for (size_t i = 0; i < t->network.n; i++)
		template_strv_push(&img->network, t->network.v[i]);
	for (size_t i = 0; i < t->forwards.n; i++)
		template_strv_push(&img->forwards, t->forwards.v[i]);
	/* The login user: the template's first, else its base's, else root. */
	img->user = xstrdup(t->nusers ? t->users[0].name : b->base.user ? b->base.user : "root");
	img->cloud_init = b->base.cloud_init;
	for (size_t i = 0; i < t->nparams; i++) {
		char *kv = xasprintf("%s=%s", t->params[i].name, t->params[i].value);
		template_strv_push(&img->params, kv);
		free(kv);
	}
	img->built = time(NULL);
}

static int build_one(struct build *b, char digest[SHA256_HEX_SIZE])
{
	const struct template *t = b->t;
	char *rootfs_tar = NULL, *base, *prefix;
	bool appliance = has_steps(t);
	int r = rootfs_disk(t), rc;

	if (t->base) {
		if (!(base = template_built_image(b->s, t->base->digest)))
			return vi_error(VI_ENOTFOUND, "the base of '%s' is not built", t->name);
		rc = template_image_load(b->s, base, &b->base);
		free(base);
		if (rc < 0)
			return rc;
	}
	prefix = xasprintf(".new-%s-%d-", t->digest, (int)getpid());
	rc = template_stage_dir(b->s, prefix, &b->stage);
	free(prefix);
	if (rc < 0)
		goto cleanup;
	b->tmp = xasprintf("%s/.tmp", b->stage);
	if (mkdir(b->tmp, 0700) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot create '%s'", b->tmp);
		goto cleanup;
	}
	describe(b);
	if ((rc = make_disks(b)) < 0)
		goto cleanup;
	for (size_t i = 0; i < t->ndisks; i++)
		appliance |= t->disks[i].filesystem != NULL;
	if (r >= 0) {
		const struct template_disk *d = &t->disks[r];
		char *what = d->source == TEMPLATE_SOURCE_DEBOOTSTRAP
				     ? xasprintf("debootstrap %s from %s", d->suite, d->mirror)
				     : xstrdup("packing the root file system");
		progress(b, what, -1);
		free(what);
		rootfs_tar = xasprintf("%s/rootfs.tar", b->tmp);
		rc = template_rootfs(t, d, b->tmp, rootfs_tar,
				     t->kernel == TEMPLATE_KERNEL_PACKAGE ? t->kernel_package
									  : NULL);
		if (rc < 0)
			goto cleanup;
	}
	if (appliance && (rc = fill_disks(b, rootfs_tar)) < 0)
		goto cleanup;
	if ((rc = vi_rm_rf(b->tmp)) < 0 || (rc = copy_kernel(b)) < 0 ||
	    (rc = check_disks(b)) < 0)
		goto cleanup;
	/* The manifest names files as they will be, in images/<digest>/; the
	 * digest is of them all, the manifest with them. */
	if ((rc = template_manifest_save(b->stage, &b->img)) < 0)
		goto cleanup;
	progress(b, "saving the image", -1);
	if ((rc = template_content_digest(&b->img, digest)) < 0 ||
	    (rc = template_land(b->s, b->stage, digest)) < 0)
		goto cleanup;
	free(b->stage);
	b->stage = NULL;
cleanup:
	if (b->stage)
		vi_rm_rf(b->stage);
	free(b->stage);
	b->stage = NULL;
	free(b->tmp);
	b->tmp = NULL;
	free(rootfs_tar);
	template_image_release(&b->img);
	template_image_release(&b->base);
	return rc;
}

int template_build_image(struct vi_store *s, struct template *t,
			 const struct template_build_opts *opts, char digest[SHA256_HEX_SIZE])
{
	struct build b = { .s = s, .t = t, .o = opts };
	return build_one(&b, digest);
}
