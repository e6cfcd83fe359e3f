/* The files that differ between two states of one machine (vi_tools_diff,
 * see tools.h): the disks of both in one appliance, each state's file
 * systems mounted under a mount point of its own, both trees walked as
 * virt-diff walks a guest, then merged. */
#include "error.h"
#include "log.h"
#include "tools.h"
#include "tools-internal.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define REPORT_MS 100

/* Where each state's root is mounted in the appliance. */
static const char *const state_root[2] = { "/a", "/b" };

struct file {
	char *path; /* in the guest */
	/* As virt-diff compares them: no access time, no times or link count
	 * for directories, st_dev as the file system's index in devs. */
	struct guestfs_statns st;
	char *xattrs; /* names and values, one after the other */
	size_t xattrs_len;
};

/* One state's files in the order of the walk (virt-diff's). */
struct tree {
	struct file *v;
	size_t n, alloc;
	int64_t *devs; /* st_dev values in the order the walk met them */
	size_t ndevs;
};

struct partition {
	char *name;
	size_t disk; /* index in run.devices */
	int number;
};

struct run {
	const struct vi_diff_opts *o;
	guestfs_h *g;
	char **devices; /* the appliance's names of the disks: A's, then B's */
	size_t ndevices;
	struct partition *parts;
	size_t nparts;
	char **mounted; /* appliance paths, for the file counts */
	size_t nmounted;
	struct tree t[2];
	uint64_t files_total; /* inodes in use on what is mounted */
	uint64_t files_read;
	double reported;
};

static const struct vi_diff_disks *state_disks(const struct run *r, int s)
{
	return s ? &r->o->b : &r->o->a;
}

/* The first of state s's disks in run.devices. */
static size_t state_first(const struct run *r, int s)
{
	return s ? r->o->a.n : 0;
}

/* A state as messages name it: its first disk. */
static const char *state_name(const struct run *r, int s)
{
	return state_disks(r, s)->paths[0];
}

/* The appliance's path of a guest path of state s. */
static char *appliance_path(int s, const char *path)
{
	return xasprintf("%s%s", state_root[s], strcmp(path, "/") ? path : "");
}

static void progress(struct run *r, const char *step, int percent)
{
	if (r->o->progress)
		r->o->progress(r->o->opaque, step, percent);
}

static int gerr(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int gerr(struct run *r, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = tools_guestfs_verror(r->g, fmt, ap);
	va_end(ap);
	return rc;
}

/* --- the appliance and its disks ------------------------------------------ */

static int appliance_start(struct run *r)
{
	char **parts;
	int rc;

	if (!(r->g = tools_guestfs_create()))
		return vi_error(VI_EFAIL, "cannot create a libguestfs handle");
	for (int s = 0; s < 2; s++) {
		const struct vi_diff_disks *d = state_disks(r, s);
		struct guestfs_add_drive_opts_argv args = {
			.bitmask = GUESTFS_ADD_DRIVE_OPTS_READONLY_BITMASK |
				   (d->format ? GUESTFS_ADD_DRIVE_OPTS_FORMAT_BITMASK : 0),
			.readonly = 1,
			.format = d->format,
		};
		for (size_t i = 0; i < d->n; i++) {
			/* A relative path would be resolved from libguestfs's
			 * overlay, in its temporary directory. */
			char *path = realpath(d->paths[i], NULL);
			if (!path)
				return vi_error_errno(errno == ENOENT ? VI_ENOTFOUND : VI_EFAIL, errno,
						      "cannot open '%s'", d->paths[i]);
			rc = guestfs_add_drive_opts_argv(r->g, path, &args);
			free(path);
			if (rc < 0)
				return gerr(r, "add '%s'", d->paths[i]);
		}
	}
	progress(r, "starting the appliance", -1);
	if (guestfs_launch(r->g) < 0)
		return gerr(r, "start the libguestfs appliance");
	if (!(r->devices = guestfs_list_devices(r->g)))
		return gerr(r, "list the disks");
	while (r->devices[r->ndevices])
		r->ndevices++;
	if (r->ndevices != r->o->a.n + r->o->b.n)
		return vi_error(VI_EFAIL, "the appliance has %zu disks, not the %zu added",
				r->ndevices, r->o->a.n + r->o->b.n);
	if (!(parts = guestfs_list_partitions(r->g)))
		return gerr(r, "list the partitions");
	for (char **p = parts; *p; p++) {
		char *dev = guestfs_part_to_dev(r->g, *p);
		int number = guestfs_part_to_partnum(r->g, *p);
		size_t disk = 0;

		while (dev && disk < r->ndevices && strcmp(r->devices[disk], dev))
			disk++;
		free(dev);
		/* Partitions of something else (an md device) stay unknown. */
		if (number < 0 || disk == r->ndevices)
			continue;
		r->parts = xrealloc(r->parts, (r->nparts + 1) * sizeof(*r->parts));
		r->parts[r->nparts++] = (struct partition){ xstrdup(*p), disk, number };
	}
	tools_strv_free(parts);
	return 0;
}

/* The disk (index in run.devices) and partition number (0: the whole disk)
 * of a mountable; -1 when it is on no disk as such (a logical volume). */
static int locate(struct run *r, const char *mountable, size_t *disk, int *number)
{
	/* Only btrfs subvolumes need asking (each call costs the appliance). */
	char *dev = strncmp(mountable, "btrfsvol:", 9) ? xstrdup(mountable)
						       : guestfs_mountable_device(r->g, mountable);
	int rc = -1;

	for (size_t i = 0; dev && rc < 0 && i < r->ndevices; i++)
		if (!strcmp(r->devices[i], dev))
			*disk = i, *number = 0, rc = 0;
	for (size_t i = 0; dev && rc < 0 && i < r->nparts; i++)
		if (!strcmp(r->parts[i].name, dev))
			*disk = r->parts[i].disk, *number = r->parts[i].number, rc = 0;
	free(dev);
	return rc;
}

/* The state a mountable is on: 0, 1, or -1 for neither that can be told. */
static int state_of(struct run *r, const char *mountable)
{
	size_t disk;
	int number;

	if (locate(r, mountable, &disk, &number) < 0)
		return -1;
	return disk >= state_first(r, 1);
}

/* What state s has where the mountable is: itself on s's disks, the same
 * partition of the same disk of s when it is on the other state's (both
 * have the same UUIDs and labels, which inspection resolved to either),
 * NULL when s has no such disk or partition. Caller frees. */
static char *in_state(struct run *r, int s, const char *mountable)
{
	size_t disk;
	int number;

	if (locate(r, mountable, &disk, &number) < 0)
		return xstrdup(mountable);
	if ((disk >= state_first(r, 1)) == s)
		return xstrdup(mountable);
	disk = disk - state_first(r, !s) + state_first(r, s);
	if (disk < state_first(r, s) || disk >= state_first(r, s) + state_disks(r, s)->n)
		return NULL;
	if (!number)
		return xstrdup(r->devices[disk]);
	for (size_t i = 0; i < r->nparts; i++)
		if (r->parts[i].disk == disk && r->parts[i].number == number)
			return xstrdup(r->parts[i].name);
	return NULL;
}

/* --- mounting -------------------------------------------------------------- */

/* Mounts a file system of state s read-only at mp in the guest. */
static int mount_fs(struct run *r, int s, const char *mountable, const char *mp)
{
	char *at = appliance_path(s, mp), *type = NULL;
	int rc = 0;

	if (guestfs_mount_ro(r->g, mountable, at) < 0) {
		rc = gerr(r, "mount '%s' of '%s' on %s", mountable, state_name(r, s), mp);
		/* Both states' XFS file systems have one UUID, which XFS takes
		 * once unless told otherwise. */
		type = guestfs_vfs_type(r->g, mountable);
		if (type && !strcmp(type, "xfs") &&
		    guestfs_mount_options(r->g, "ro,nouuid", mountable, at) == 0) {
			vi_error_clear();
			rc = 0;
		}
	}
	if (rc == 0) {
		r->mounted = xrealloc(r->mounted, (r->nmounted + 1) * sizeof(*r->mounted));
		r->mounted[r->nmounted++] = at;
		at = NULL;
	}
	free(type);
	free(at);
	return rc;
}

/* The operating system at root and its mount points, as virt-diff's -i
 * mounts them: shortest mount point first; only "/" must succeed. */
static int mount_os(struct run *r, int s, const char *root)
{
	size_t n;
	char **mps = tools_mountpoints(r->g, root, &n);
	int rc = 0;

	if (!mps)
		return gerr(r, "find the mount points of '%s' of '%s'", root, state_name(r, s));
	for (size_t i = 0; i < 2 * n; i += 2) {
		/* "/" is root itself, whichever state's root fstab's UUID found. */
		bool is_root = !strcmp(mps[i], "/");
		char *dev = is_root ? xstrdup(root) : in_state(r, s, mps[i + 1]);

		if (!dev)
			vi_warn("'%s' has nothing for %s, on '%s' in the other state (ignored)",
				state_name(r, s), mps[i], mps[i + 1]);
		else if ((rc = mount_fs(r, s, dev, mps[i])) < 0 && !is_root) {
			vi_warn("%s (ignored)", vi_error_message());
			vi_error_clear();
		}
		free(dev);
		if (rc < 0 && is_root)
			break;
		rc = 0;
	}
	tools_strv_free(mps);
	return rc;
}

/* A state with no operating system: its only file system, mounted whole. */
static int mount_only_fs(struct run *r, int s, char **fss)
{
	const char *only = NULL;
	size_t n = 0;

	/* fss: device, type, device, type... */
	for (size_t i = 0; fss[i] && fss[i + 1]; i += 2)
		if (strcmp(fss[i + 1], "swap") && strcmp(fss[i + 1], "unknown") &&
		    state_of(r, fss[i]) == s)
			only = fss[i], n++;
	if (n == 1)
		return mount_fs(r, s, only, "/");
	if (!n)
		return vi_error(VI_EUNSUPPORTED, "no file system found on '%s'", state_name(r, s));
	return vi_error(VI_EUNSUPPORTED,
			"'%s' has %zu file systems and no operating system to say where "
			"they go", state_name(r, s), n);
}

/* Each state's file systems under its state_root. */
static int mount_states(struct run *r)
{
	char **roots = NULL, **fss = NULL;
	const char *os[2] = { NULL, NULL };
	int rc = 0;

	progress(r, "mounting the file systems", -1);
	for (int s = 0; s < 2; s++)
		if (guestfs_mkmountpoint(r->g, state_root[s]) < 0)
			return gerr(r, "make the mount point %s", state_root[s]);
	if (!(roots = guestfs_inspect_os(r->g)))
		return gerr(r, "inspect the disks");
	for (char **p = roots; *p && rc == 0; p++) {
		int s = state_of(r, *p);
		if (s < 0)
			rc = vi_error(VI_EUNSUPPORTED,
				      "cannot tell which state the operating system on '%s' "
				      "belongs to (both states have the same LVM volume "
				      "groups or RAID sets)", *p);
		else if (os[s])
			rc = vi_error(VI_EUNSUPPORTED,
				      "'%s' has several operating systems ('%s', '%s'): "
				      "multi-boot machines are not supported",
				      state_name(r, s), os[s], *p);
		else
			os[s] = *p;
	}
	for (int s = 0; s < 2 && rc == 0; s++) {
		if (os[s])
			rc = mount_os(r, s, os[s]);
		else if (!fss && !(fss = guestfs_list_filesystems(r->g)))
			rc = gerr(r, "list the file systems");
		else
			rc = mount_only_fs(r, s, fss);
	}
	tools_strv_free(roots);
	tools_strv_free(fss);
	return rc;
}

/* --- walking ---------------------------------------------------------------- */

/* The files read so far, at most every REPORT_MS but the last time. */
static void report_reading(struct run *r, bool last)
{
	char step[64];
	uint64_t percent;

	if (!r->o->progress || (!last && vi_ms_since(r->reported) < REPORT_MS))
		return;
	r->reported = vi_now_ms();
	snprintf(step, sizeof(step), "%" PRIu64 " files read", r->files_read);
	/* Hard links are read once a name, and both trees differ: a guess. */
	percent = r->files_total ? r->files_read * 100 / r->files_total : 0;
	progress(r, step, last ? 100 : percent > 99 ? 99 : (int)percent);
}

static void add_file(struct run *r, struct tree *t, char *path, const struct guestfs_statns *st,
		     const struct guestfs_xattr *xattrs, size_t nxattrs)
{
	struct file *f;
	size_t len = 0, d = 0;

	if (t->n == t->alloc) {
		t->alloc = t->alloc ? 2 * t->alloc : 1024;
		t->v = xrealloc(t->v, t->alloc * sizeof(*t->v));
	}
	f = &t->v[t->n++];
	f->path = path;
	f->st = *st;
	f->st.st_atime_sec = f->st.st_atime_nsec = 0;
	if (S_ISDIR(st->st_mode)) {
		f->st.st_nlink = 0;
		f->st.st_mtime_sec = f->st.st_mtime_nsec = 0;
		f->st.st_ctime_sec = f->st.st_ctime_nsec = 0;
	}
	/* The appliance numbers the two states' devices apart: a file system
	 * is the order the walk met it in. */
	while (d < t->ndevs && t->devs[d] != st->st_dev)
		d++;
	if (d == t->ndevs) {
		t->devs = xrealloc(t->devs, (t->ndevs + 1) * sizeof(*t->devs));
		t->devs[t->ndevs++] = st->st_dev;
	}
	f->st.st_dev = d;
	for (size_t i = 0; i < nxattrs; i++)
		len += strlen(xattrs[i].attrname) + 1 + sizeof(uint32_t) + xattrs[i].attrval_len;
	f->xattrs = len ? xmalloc(len) : NULL;
	f->xattrs_len = len;
	len = 0;
	for (size_t i = 0; i < nxattrs; i++) {
		size_t n = strlen(xattrs[i].attrname) + 1;
		memcpy(f->xattrs + len, xattrs[i].attrname, n);
		memcpy(f->xattrs + len + n, &xattrs[i].attrval_len, sizeof(uint32_t));
		memcpy(f->xattrs + len + n + sizeof(uint32_t), xattrs[i].attrval,
		       xattrs[i].attrval_len);
		len += n + sizeof(uint32_t) + xattrs[i].attrval_len;
	}
	r->files_read++;
	report_reading(r, false);
}

/* How many extended attributes the name whose entry is at x in an
 * lxattrlist answer has: that entry has no name and their number as its
 * value (none when they could not be read), and they follow it. */
static bool xattr_count(const struct guestfs_xattr_list *l, size_t x, size_t *n)
{
	char count[16];

	if (x >= l->len || l->val[x].attrname[0] || !l->val[x].attrval_len ||
	    l->val[x].attrval_len >= sizeof(count))
		return false;
	memcpy(count, l->val[x].attrval, l->val[x].attrval_len);
	count[l->val[x].attrval_len] = '\0';
	*n = strtoul(count, NULL, 10);
	return *n < l->len - x;
}

/* Everything under directory dir of state s, depth first, as virt-diff's
 * visitor reads it: names (sorted by the appliance), their lstat and their
 * extended attributes, one call each a directory. */
static int walk_dir(struct run *r, int s, const char *dir)
{
	char *at = appliance_path(s, dir);
	char **names = guestfs_ls(r->g, at);
	struct guestfs_statns_list *stats = NULL;
	struct guestfs_xattr_list *xattrs = NULL;
	size_t x = 0;
	int rc = 0;

	if (!names || (names[0] && (!(stats = guestfs_lstatnslist(r->g, at, names)) ||
				    !(xattrs = guestfs_lxattrlist(r->g, at, names))))) {
		rc = gerr(r, "read '%s' of '%s'", dir, state_name(r, s));
		goto cleanup;
	}
	for (size_t i = 0; names[i] && rc == 0; i++) {
		char *path;
		size_t n;

		if (i >= stats->len || !xattr_count(xattrs, x, &n)) {
			rc = vi_error(VI_EFAIL, "cannot read the attributes of '%s' in '%s' of '%s'",
				      names[i], dir, state_name(r, s));
			break;
		}
		path = xasprintf("%s/%s", strcmp(dir, "/") ? dir : "", names[i]);
		add_file(r, &r->t[s], path, &stats->val[i], &xattrs->val[x + 1], n);
		x += 1 + n;
		if (S_ISDIR(stats->val[i].st_mode))
			rc = walk_dir(r, s, path);
	}
cleanup:
	if (stats)
		guestfs_free_statns_list(stats);
	if (xattrs)
		guestfs_free_xattr_list(xattrs);
	tools_strv_free(names);
	free(at);
	return rc;
}

static int walk(struct run *r, int s)
{
	const char *at = state_root[s];
	struct guestfs_statns *st = guestfs_lstatns(r->g, at);
	struct guestfs_xattr_list *xattrs = st ? guestfs_lgetxattrs(r->g, at) : NULL;
	int rc;

	if (!xattrs)
		rc = gerr(r, "read '/' of '%s'", state_name(r, s));
	else {
		add_file(r, &r->t[s], xstrdup("/"), st, xattrs->val, xattrs->len);
		rc = walk_dir(r, s, "/");
	}
	if (st)
		guestfs_free_statns(st);
	if (xattrs)
		guestfs_free_xattr_list(xattrs);
	return rc;
}

/* Inodes in use on the mounted file systems, for the percentage read. */
static void count_files(struct run *r)
{
	for (size_t i = 0; i < r->nmounted; i++) {
		struct guestfs_statvfs *v = guestfs_statvfs(r->g, r->mounted[i]);
		if (v && v->files > v->ffree)
			r->files_total += v->files - v->ffree;
		if (v)
			guestfs_free_statvfs(v);
	}
}

/* --- comparing -------------------------------------------------------------- */

/* Paths in the walk's order: a directory right before what it holds, so
 * '/' comes before any other byte. */
static int path_cmp(const char *a, const char *b)
{
	while (*a && *a == *b)
		a++, b++;
	if (*a == *b)
		return 0;
	/* A parent before its children, then "a/..." before "a-...". */
	if (!*a || (*b && *a == '/'))
		return -1;
	if (!*b || *b == '/')
		return 1;
	return (unsigned char)*a - (unsigned char)*b;
}

/* The fields of the attributes named in enum vi_diff_attr, but xattrs. */
static const size_t attr_offset[VI_DIFF_XATTRS] = {
	offsetof(struct guestfs_statns, st_dev),
	offsetof(struct guestfs_statns, st_ino),
	offsetof(struct guestfs_statns, st_mode),
	offsetof(struct guestfs_statns, st_nlink),
	offsetof(struct guestfs_statns, st_uid),
	offsetof(struct guestfs_statns, st_gid),
	offsetof(struct guestfs_statns, st_rdev),
	offsetof(struct guestfs_statns, st_size),
	offsetof(struct guestfs_statns, st_blksize),
	offsetof(struct guestfs_statns, st_blocks),
	offsetof(struct guestfs_statns, st_atime_sec),
	offsetof(struct guestfs_statns, st_mtime_sec),
	offsetof(struct guestfs_statns, st_ctime_sec),
};

static unsigned changed_attrs(const struct file *a, const struct file *b)
{
	unsigned changed = 0;

	for (unsigned i = 0; i < VI_DIFF_XATTRS; i++)
		if (*(const int64_t *)((const char *)&a->st + attr_offset[i]) !=
		    *(const int64_t *)((const char *)&b->st + attr_offset[i]))
			changed |= 1u << i;
	if (a->xattrs_len != b->xattrs_len ||
	    (a->xattrs_len && memcmp(a->xattrs, b->xattrs, a->xattrs_len)))
		changed |= 1u << VI_DIFF_XATTRS;
	return changed;
}

static char file_type(int64_t mode)
{
	return S_ISREG(mode) ? '-' : S_ISDIR(mode) ? 'd' : S_ISCHR(mode) ? 'c' :
	       S_ISBLK(mode) ? 'b' : S_ISFIFO(mode) ? 'p' : S_ISLNK(mode) ? 'l' :
	       S_ISSOCK(mode) ? 's' : 'u';
}

static void describe(struct run *r, int s, const struct file *f, struct vi_diff_file *out)
{
	out->type = file_type(f->st.st_mode);
	out->mode = f->st.st_mode & 07777;
	out->size = f->st.st_size;
	if (S_ISLNK(f->st.st_mode)) {
		/* As virt-diff, a target that cannot be read is left out. */
		char *at = appliance_path(s, f->path);
		out->link = guestfs_readlink(r->g, at);
		free(at);
	}
}

static struct vi_diff_entry *add_entry(struct vi_diff *d, enum vi_diff_kind kind,
				       const char *path)
{
	struct vi_diff_entry *e;

	/* Room for twice as many whenever n reaches a power of two. */
	if (!(d->n & (d->n - 1)))
		d->v = xrealloc(d->v, (d->n ? 2 * d->n : 1) * sizeof(*d->v));
	e = &d->v[d->n++];
	memset(e, 0, sizeof(*e));
	e->kind = kind;
	e->path = xstrdup(path);
	return e;
}

/* virt-diff's merge of the two walks: what one has and the other has not,
 * and what differs in both. */
static void merge(struct run *r, struct vi_diff *d)
{
	const struct tree *a = &r->t[0], *b = &r->t[1];
	size_t i = 0, j = 0;

	while (i < a->n || j < b->n) {
		int c = i == a->n ? 1 : j == b->n ? -1 : path_cmp(a->v[i].path, b->v[j].path);
		const struct file *fa = &a->v[i], *fb = &b->v[j];
		struct vi_diff_entry *e;

		if (c < 0) {
			describe(r, 0, fa, &add_entry(d, VI_DIFF_REMOVED, fa->path)->a);
			i++;
			continue;
		}
		if (c > 0) {
			describe(r, 1, fb, &add_entry(d, VI_DIFF_ADDED, fb->path)->b);
			j++;
			continue;
		}
		i++, j++;
		if (!memcmp(&fa->st, &fb->st, sizeof(fa->st)) && !changed_attrs(fa, fb))
			continue;
		/* A regular file whose size or times changed has a changed
		 * content; anything else only changed attributes. */
		if (S_ISREG(fa->st.st_mode) && S_ISREG(fb->st.st_mode) &&
		    (fa->st.st_size != fb->st.st_size || fa->st.st_mtime_sec != fb->st.st_mtime_sec ||
		     fa->st.st_ctime_sec != fb->st.st_ctime_sec)) {
			e = add_entry(d, VI_DIFF_CHANGED, fa->path);
		} else {
			e = add_entry(d, VI_DIFF_ATTRS, fa->path);
			e->changed = changed_attrs(fa, fb);
		}
		describe(r, 0, fa, &e->a);
		describe(r, 1, fb, &e->b);
	}
}

/* The hunks of `diff -u` between the two states' versions of e->path, as
 * virt-diff shows them: its output without the two lines of file names. */
static int fetch_content(struct run *r, struct vi_diff_entry *e, const char *tmp)
{
	char *file[2], *out = xasprintf("%s/diff", tmp), *text = NULL, *hunks;
	char *argv[] = { "diff", "-u", NULL, NULL, NULL };
	size_t len;
	int fd = -1, rc = 0;

	for (int s = 0; s < 2; s++) {
		char *at = appliance_path(s, e->path);
		file[s] = xasprintf("%s/%c", tmp, 'a' + s);
		if (rc == 0 && guestfs_download(r->g, at, file[s]) < 0)
			rc = gerr(r, "read '%s' of '%s'", e->path, state_name(r, s));
		free(at);
	}
	if (rc < 0)
		goto cleanup;
	if ((fd = open(out, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot create '%s'", out);
		goto cleanup;
	}
	argv[2] = file[0], argv[3] = file[1];
	/* 0: the same bytes, 1: different; more is trouble. */
	if ((rc = vi_run_fds(argv, -1, fd, -1)) > 1)
		rc = vi_error(VI_EFAIL, "cannot compare the two versions of '%s': diff exited with "
			      "status %d", e->path, rc);
	if (rc < 0 || (rc = vi_read_file(out, &text, &len)) < 0)
		goto cleanup;
	hunks = strchr(text, '\n');
	hunks = hunks ? strchr(hunks + 1, '\n') : NULL;
	e->content = xstrdup(hunks ? hunks + 1 : "");
cleanup:
	if (fd >= 0)
		close(fd);
	for (int s = 0; s < 2; s++) {
		unlink(file[s]);
		free(file[s]);
	}
	unlink(out);
	free(out);
	free(text);
	return rc < 0 ? rc : 0;
}

static int fetch_contents(struct run *r, struct vi_diff *d)
{
	char *base = guestfs_get_tmpdir(r->g);
	char *tmp = xasprintf("%s/vi-diff-XXXXXX", base ? base : "/tmp");
	size_t n = 0, done = 0;
	int rc = 0;

	for (size_t i = 0; i < d->n; i++)
		n += d->v[i].kind == VI_DIFF_CHANGED;
	if (!n)
		goto cleanup;
	if (!mkdtemp(tmp)) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot create a directory like '%s'", tmp);
		goto cleanup;
	}
	progress(r, "comparing the changed files", 0);
	for (size_t i = 0; i < d->n && rc == 0; i++) {
		if (d->v[i].kind != VI_DIFF_CHANGED)
			continue;
		rc = fetch_content(r, &d->v[i], tmp);
		progress(r, NULL, (int)(++done * 100 / n));
	}
	rmdir(tmp);
cleanup:
	free(base);
	free(tmp);
	return rc;
}

/* --- the method -------------------------------------------------------------- */

static void run_release(struct run *r)
{
	if (r->g)
		guestfs_close(r->g);
	tools_strv_free(r->devices);
	for (size_t i = 0; i < r->nparts; i++)
		free(r->parts[i].name);
	free(r->parts);
	for (size_t i = 0; i < r->nmounted; i++)
		free(r->mounted[i]);
	free(r->mounted);
	for (int s = 0; s < 2; s++) {
		for (size_t i = 0; i < r->t[s].n; i++) {
			free(r->t[s].v[i].path);
			free(r->t[s].v[i].xattrs);
		}
		free(r->t[s].v);
		free(r->t[s].devs);
	}
}

int tools_diff(const struct vi_diff_opts *opts, struct vi_diff *diff)
{
	struct run r = { .o = opts };
	int rc;

	memset(diff, 0, sizeof(*diff));
	if (!opts->a.n || !opts->b.n)
		return vi_error(VI_EUSAGE, "a diff needs the disks of two states");
	if ((rc = appliance_start(&r)) < 0 || (rc = mount_states(&r)) < 0)
		goto cleanup;
	count_files(&r);
	progress(&r, "reading the files", 0);
	if ((rc = walk(&r, 0)) < 0 || (rc = walk(&r, 1)) < 0)
		goto cleanup;
	report_reading(&r, true);
	merge(&r, diff);
	if (opts->flags & VI_DIFF_CONTENT)
		rc = fetch_contents(&r, diff);
cleanup:
	if (rc < 0)
		vi_diff_release(diff);
	run_release(&r);
	return rc;
}
