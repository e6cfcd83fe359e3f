/* The state store: directories, VM definitions, per-VM locks, atomic creation. */
#include "store.h"
#include "error.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* Directories are 0711: QEMU under libvirt runs as another user and must be
 * able to traverse to the disks, but not list what is here. */
#define DIR_MODE 0711

char *vi_store_default_home(void)
{
	const char *env = getenv("VI_HOME");
	const char *xdg = getenv("XDG_DATA_HOME");
	const char *home = getenv("HOME");

	if (env && *env)
		return xstrdup(env);
	if (geteuid() == 0)
		return xstrdup("/var/lib/vi");
	if (xdg && *xdg)
		return xasprintf("%s/vi", xdg);
	return xasprintf("%s/.local/share/vi", home && *home ? home : "/tmp");
}

int vi_store_open(struct vi_store *s, const char *home)
{
	/* Guests pass through to their disks; what vi keeps for itself is closed. */
	static const struct {
		const char *path;
		unsigned mode;
	} dirs[] = {
		{ "images", DIR_MODE },	      { "vms", DIR_MODE },	 { "vms/.locks", 0700 },
		{ "vms/.staging", 0700 }, { "policies", 0700 },
	};
	int rc;

	s->home = home ? xstrdup(home) : vi_store_default_home();
	if ((rc = vi_mkdir_p(s->home, DIR_MODE)) < 0)
		goto fail;
	for (size_t i = 0; i < ARRAY_SIZE(dirs); i++) {
		char *p = vi_store_path(s, "%s", dirs[i].path);
		rc = vi_mkdir_p(p, dirs[i].mode);
		free(p);
		if (rc < 0)
			goto fail;
	}
	return 0;
fail:
	vi_error_wrap("cannot open the store");
	vi_store_release(s);
	return rc;
}

void vi_store_release(struct vi_store *s)
{
	free(s->home);
	s->home = NULL;
}

char *vi_store_path(const struct vi_store *s, const char *fmt, ...)
{
	va_list ap;
	char *rel, *path;

	va_start(ap, fmt);
	if (vasprintf(&rel, fmt, ap) < 0)
		rel = NULL;
	va_end(ap);
	path = xasprintf("%s/%s", s->home, rel ? rel : "");
	free(rel);
	return path;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names of at most max VMs, sorted. */
static int list_vms(const struct vi_store *s, char ***names, size_t *n, size_t max)
{
	char *dir = vi_store_path(s, "vms");
	DIR *d = opendir(dir);
	struct dirent *e;
	char **v = NULL;
	size_t count = 0;

	if (!d) {
		int rc = vi_error_errno(VI_EFAIL, errno, "cannot read '%s'", dir);
		free(dir);
		return rc;
	}
	while (count < max && (e = readdir(d))) {
		if (e->d_name[0] == '.')
			continue;
		char *def = xasprintf("%s/%s/vm.yaml", dir, e->d_name);
		bool ok = vi_file_exists(def);
		free(def);
		if (!ok)
			continue;
		v = xrealloc(v, (count + 1) * sizeof(*v));
		v[count++] = xstrdup(e->d_name);
	}
	closedir(d);
	free(dir);
	if (count)
		qsort(v, count, sizeof(*v), cmp_names);
	*names = v;
	*n = count;
	return 0;
}

int vi_store_list_vms(const struct vi_store *s, char ***names, size_t *n)
{
	return list_vms(s, names, n, SIZE_MAX);
}

bool vi_store_has_vms(const struct vi_store *s)
{
	char **names = NULL;
	size_t n = 0;
	bool any = list_vms(s, &names, &n, 1) == 0 && n > 0;

	vi_store_names_free(names, n);
	vi_error_clear();
	return any;
}

void vi_store_names_free(char **names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

int vi_store_vm_exists(const struct vi_store *s, const char *name)
{
	int rc = vi_check_name(name, "VM");
	if (rc < 0)
		return rc;
	char *def = vi_store_path(s, "vms/%s/vm.yaml", name);
	bool ok = vi_file_exists(def);
	free(def);
	return ok ? 0 : vi_error(VI_ENOTFOUND, "no VM named '%s'", name);
}

int vi_store_load_vm(const struct vi_store *s, const char *name, struct vi_vm *vm)
{
	int rc = vi_store_vm_exists(s, name);
	if (rc < 0)
		return rc;
	char *def = vi_store_path(s, "vms/%s/vm.yaml", name);
	rc = vi_vm_load(def, vm);
	free(def);
	if (rc == 0 && strcmp(vm->name, name)) {
		rc = vi_error(VI_EFAIL, "VM definition of '%s' names another VM, '%s'", name,
			      vm->name);
		vi_vm_release(vm);
	}
	return rc;
}

int vi_store_save_vm(const struct vi_store *s, const struct vi_vm *vm)
{
	char *def = vi_store_path(s, "vms/%s/vm.yaml", vm->name);
	int rc = vi_vm_save(def, vm);
	free(def);
	return rc;
}

int vi_store_lock_vm(const struct vi_store *s, const char *name, unsigned timeout_ms)
{
	int rc = vi_check_name(name, "VM");
	if (rc < 0)
		return rc;
	char *path = vi_store_path(s, "vms/.locks/%s", name);
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	unsigned waited = 0;

	if (fd < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot open lock '%s'", path);
		free(path);
		return rc;
	}
	free(path);
	while (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		if (errno != EWOULDBLOCK && errno != EINTR) {
			rc = vi_error_errno(VI_EFAIL, errno, "cannot lock VM '%s'", name);
			close(fd);
			return rc;
		}
		if (waited >= timeout_ms) {
			close(fd);
			return vi_error(VI_ESTATE, "VM '%s' is busy: another vi command is working on it",
					name);
		}
		struct timespec ts = { 0, 20 * 1000000 };
		nanosleep(&ts, NULL);
		waited += 20;
	}
	return fd;
}

void vi_store_unlock(int fd)
{
	if (fd >= 0)
		close(fd);
}

int vi_store_stage_vm(const struct vi_store *s, const char *name, char **dir)
{
	int rc = vi_check_name(name, "VM");
	if (rc < 0)
		return rc;
	char *final = vi_store_path(s, "vms/%s", name);
	bool taken = vi_file_exists(final);
	free(final);
	if (taken)
		return vi_error(VI_ESTATE, "VM '%s' already exists", name);
	char *d = vi_store_path(s, "vms/.staging/%s.%d", name, (int)getpid());
	char *run = xasprintf("%s/run", d), *disks = xasprintf("%s/disks", d);
	vi_rm_rf(d);
	if (vi_mkdir_p(d, DIR_MODE) < 0 || vi_mkdir_p(run, 0700) < 0 ||
	    vi_mkdir_p(disks, DIR_MODE) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot create '%s'", d);
		vi_rm_rf(d);
		free(d);
	} else {
		*dir = d;
	}
	free(run);
	free(disks);
	return rc;
}

int vi_store_commit_vm(const struct vi_store *s, const char *name, const char *dir)
{
	char *final = vi_store_path(s, "vms/%s", name);
	int rc = 0;

	/* rename() of a directory onto an existing non-empty one fails, and onto
	 * an empty one would replace it: refuse both as a conflict. */
	if (vi_file_exists(final))
		rc = vi_error(VI_ESTATE, "VM '%s' already exists", name);
	else if (rename(dir, final) < 0)
		rc = vi_error_errno(VI_EFAIL, errno, "cannot create VM '%s'", name);
	free(final);
	return rc;
}

void vi_store_abort_vm(const char *dir)
{
	vi_rm_rf(dir);
}

int vi_store_remove_vm(const struct vi_store *s, const char *name)
{
	char *dir = vi_store_path(s, "vms/%s", name);
	/* Move it aside first, so a half-removed VM never looks defined. */
	char *trash = vi_store_path(s, "vms/.staging/%s.removed.%d", name, (int)getpid());
	int rc = 0;

	if (rename(dir, trash) < 0)
		rc = vi_error_errno(errno == ENOENT ? VI_ENOTFOUND : VI_EFAIL, errno,
				    "cannot remove VM '%s'", name);
	else
		rc = vi_rm_rf(trash);
	free(dir);
	free(trash);
	return rc;
}

/* Files of VMs go private; directories keep what lets guests through. */
static int make_private(const char *path, const struct stat *st, void *arg)
{
	(void)arg;
	if (!S_ISDIR(st->st_mode) && (st->st_mode & 077))
		chmod(path, st->st_mode & 0700);
	return 0;
}

int vi_store_upgrade_modes(const struct vi_store *s)
{
	char *mark = vi_store_path(s, ".private"), *images = vi_store_path(s, "images");
	DIR *d;
	struct dirent *e;
	int rc = 0;

	if (vi_file_exists(mark))
		goto out;
	vi_walk(s->home, make_private, NULL);
	/* What guests read is shared again, read-only: golden images (named by
	 * 64 hex digits) and layers. */
	if ((d = opendir(images))) {
		while ((e = readdir(d))) {
			bool layers = !strcmp(e->d_name, "layers");
			if (strspn(e->d_name, "0123456789abcdef") != 64 && !layers)
				continue;
			char *sub = xasprintf("%s/%s", images, e->d_name);
			vi_share_ro(sub);
			free(sub);
		}
		closedir(d);
	}
	/* The layer index is vi's own. */
	char *index = vi_store_path(s, "images/layers/index.yaml");
	if (vi_file_exists(index))
		chmod(index, 0600);
	free(index);
	vi_error_clear();
	rc = vi_write_file_atomic(mark, "", 0, 0600);
out:
	free(mark);
	free(images);
	return rc;
}
