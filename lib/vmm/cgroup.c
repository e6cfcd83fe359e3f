/* The VMM process's CPU quota: the process moves into a cgroup of its own the first time
 * a quota is set, and leaves it (the cgroup removed) when it ends. cgroup v2 where
 * /sys/fs/cgroup (or another mount) is cgroup2: cpu.max "QUOTA PERIOD" or "max PERIOD";
 * else cgroup v1's cpu controller: cpu.cfs_quota_us (-1 for none) over cpu.cfs_period_us.
 * The cgroup is <mount>/vi/<name>.<pid>, beside whatever cgroup the process was in. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <mntent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "util.h"
#include "vmm/internal.h"

#define PERIOD_US 100000u

/* Where a cpu controller is mounted: v2 preferred. */
static char *cpu_mount(bool *v2)
{
	FILE *f = setmntent("/proc/mounts", "r");
	struct mntent *e;
	char *v1 = NULL, *two = NULL;

	while (f && (e = getmntent(f))) {
		if (!strcmp(e->mnt_type, "cgroup2") && !two)
			two = xstrdup(e->mnt_dir);
		else if (!strcmp(e->mnt_type, "cgroup") && hasmntopt(e, "cpu") && !v1)
			v1 = xstrdup(e->mnt_dir);
	}
	if (f)
		endmntent(f);
	/* A cgroup2 mount that does not offer the cpu controller is no use. */
	if (two) {
		char *ctrl = xasprintf("%s/cgroup.controllers", two), *text = NULL;
		size_t len;
		bool cpu = vi_read_file(ctrl, &text, &len) == 0 && strstr(text, "cpu");
		vi_error_clear();
		free(ctrl);
		free(text);
		if (!cpu) {
			free(two);
			two = NULL;
		}
	}
	*v2 = two != NULL;
	if (two) {
		free(v1);
		return two;
	}
	return v1;
}

static int put(const char *dir, const char *file, const char *text)
{
	char *path = xasprintf("%s/%s", dir, file);
	int fd = open(path, O_WRONLY | O_CLOEXEC), ret = 0;

	if (fd < 0 || write(fd, text, strlen(text)) < 0)
		ret = vi_error_errno(VI_EFAIL, errno, "cannot write '%s' to '%s'", text, path);
	if (fd >= 0)
		close(fd);
	free(path);
	return ret;
}

/* Cgroups of this VM's earlier processes that ended without removing theirs (killed):
 * removed when empty, which is all rmdir does. */
static void sweep(const char *parent, const char *name)
{
	DIR *d = opendir(parent);
	struct dirent *e;
	size_t n = strlen(name);

	while (d && (e = readdir(d))) {
		if (!strncmp(e->d_name, name, n) && e->d_name[n] == '.') {
			char *path = xasprintf("%s/%s", parent, e->d_name);
			rmdir(path);
			free(path);
		}
	}
	if (d)
		closedir(d);
}

/* Makes the cgroup and moves this process into it. */
static int cgroup_enter(struct vmm *vm, const char *name)
{
	bool v2;
	char *mount = cpu_mount(&v2), *parent, *dir, pid[24];
	int ret;

	if (!mount)
		return vi_error(VI_EUNSUPPORTED, "this host has no cgroup with the cpu controller");
	parent = xasprintf("%s/vi", mount);
	dir = xasprintf("%s/%s.%d", parent, name, (int)getpid());
	if (mkdir(parent, 0755) < 0 && errno != EEXIST) {
		ret = vi_error_errno(VI_EFAIL, errno, "cannot make cgroup '%s'", parent);
		goto out;
	}
	/* v2 hands the controller down from the root, level by level. */
	if (v2 && ((ret = put(mount, "cgroup.subtree_control", "+cpu")) < 0 ||
		   (ret = put(parent, "cgroup.subtree_control", "+cpu")) < 0))
		goto out;
	sweep(parent, name);
	if (mkdir(dir, 0755) < 0 && errno != EEXIST) {
		ret = vi_error_errno(VI_EFAIL, errno, "cannot make cgroup '%s'", dir);
		goto out;
	}
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	if ((ret = put(dir, "cgroup.procs", pid)) < 0) {
		rmdir(dir);
		goto out;
	}
	vm->cgroup = dir;
	vm->cgroup_v2 = v2;
	vm->cgroup_home = xstrdup(mount);
	dir = NULL;
out:
	free(mount);
	free(parent);
	free(dir);
	return ret;
}

int vmm_set_cpu_quota(struct vmm *vm, const char *name, unsigned percent)
{
	char text[64];
	int ret;

	if (!vm->cgroup && !percent)
		return 0;
	if (!vm->cgroup && (ret = cgroup_enter(vm, name)) < 0)
		return vi_error_wrap("a CPU quota needs a cgroup");
	uint64_t quota = (uint64_t)percent * PERIOD_US / 100;
	if (vm->cgroup_v2) {
		if (percent)
			snprintf(text, sizeof(text), "%llu %u", (unsigned long long)quota, PERIOD_US);
		else
			snprintf(text, sizeof(text), "max %u", PERIOD_US);
		ret = put(vm->cgroup, "cpu.max", text);
	} else {
		snprintf(text, sizeof(text), "%u", PERIOD_US);
		ret = put(vm->cgroup, "cpu.cfs_period_us", text);
		if (percent)
			snprintf(text, sizeof(text), "%llu", (unsigned long long)quota);
		else
			snprintf(text, sizeof(text), "-1");
		if (ret == 0)
			ret = put(vm->cgroup, "cpu.cfs_quota_us", text);
	}
	if (ret == 0)
		vm->cpu_quota = percent;
	return ret;
}

void vmm_cgroup_leave(struct vmm *vm)
{
	char pid[24];

	if (!vm->cgroup)
		return;
	/* Back to the top of the hierarchy, so the cgroup empties and goes. */
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	if (put(vm->cgroup_home, "cgroup.procs", pid) < 0 || rmdir(vm->cgroup) < 0)
		vi_error_clear();
	free(vm->cgroup);
	free(vm->cgroup_home);
	vm->cgroup = vm->cgroup_home = NULL;
}
