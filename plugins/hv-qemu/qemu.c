/* hv-qemu: QEMU guests through libvirt, on this host or any other by URI;
 * domain type kvm where the host has hardware virtualization, else qemu (TCG). */
#include <vi/hv-plugin.h>

#include "error.h"
#include "util.h"
#include "plugin/host.h"
#include "virt/virt.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int qemu_open(struct vi_hv_ctx *ctx)
{
	return virt_open(ctx, "qemu:///system");
}

/* The string value of an XPath expression over the connection's
 * capabilities XML; *value is the caller's to free. */
static int caps_string(struct vi_hv_ctx *ctx, const char *expr, char **value)
{
	virConnectPtr conn;
	char *caps;
	int rc;

	rc = virt_connect(ctx, &conn);
	if (rc)
		return rc;
	caps = virConnectGetCapabilities(conn);
	if (!caps)
		return virt_error("cannot get the capabilities of '%s'", virt_uri(ctx));
	rc = virt_xpath_string(caps, "the host's capabilities", expr, value);
	free(caps);
	return rc;
}

/* Is KVM there for x86_64 guests, by the capabilities of a remote host? */
static int remote_kvm(struct vi_hv_ctx *ctx, bool *kvm)
{
	char *v = NULL;
	int rc = caps_string(ctx,
			     "string(boolean(/capabilities/guest[arch/@name='x86_64']"
			     "/arch/domain[@type='kvm']))",
			     &v);

	if (rc == 0)
		*kvm = !strcmp(v, "true");
	free(v);
	return rc;
}

/* KVM or TCG for this connection; *why says on what grounds. A local /dev/kvm
 * proves nothing (a software KVM is far slower than TCG at running a whole
 * OS): only the VT-x or SVM module does. */
static int qemu_guest(struct vi_hv_ctx *ctx, const struct virt_guest **g, const char **why)
{
	bool kvm = false;
	int rc;

	if (virt_is_local(ctx)) {
		kvm = !access("/sys/module/kvm_intel", F_OK) ||
		      !access("/sys/module/kvm_amd", F_OK);
		*why = kvm ? "hardware virtualization" : "TCG: no hardware virtualization";
	} else {
		rc = remote_kvm(ctx, &kvm);
		if (rc)
			return rc;
		*why = kvm ? "the host offers KVM" : "TCG: the host offers no KVM";
	}
	*g = kvm ? &virt_guest_qemu_kvm : &virt_guest_qemu_tcg;
	return 0;
}

static int qemu_probe(struct vi_hv_ctx *ctx, const char **reason)
{
	const struct virt_guest *g;
	const char *why;
	int rc = virt_probe(ctx, "QEMU", reason);

	if (rc != VI_HV_PROBE_OK)
		return rc;
	if (qemu_guest(ctx, &g, &why))
		return VI_HV_PROBE_ERROR;
	*reason = virt_set_reason(ctx, xasprintf("%s, domain type %s (%s)", *reason,
						 g->domain_type, why));
	return VI_HV_PROBE_OK;
}

/* In a child that has become the QEMU user: the first of dirs that it may not
 * search, written to fd; exits 0 when there is none. Directories not made yet
 * are passed over: the store makes them searchable. */
static void __attribute__((noreturn)) find_closed_dir(char *const *dirs, size_t n, int fd)
{
	for (size_t i = 0; i < n; i++)
		if (access(dirs[i], X_OK) < 0 && errno == EACCES) {
			if (write(fd, dirs[i], strlen(dirs[i])) < 0)
				_exit(2);
			_exit(1);
		}
	_exit(0);
}

/* What check_reach() learnt, for the life of the process: QEMU's user on the
 * local host, and the directories it was seen to search (a clone set checks
 * the same ones twenty times). */
static struct {
	bool known;   /* the label was read */
	bool check;   /* and names a user other than root */
	unsigned uid, gid;
	gid_t groups[64];
	int ngroups;
	char user[64];
	char **dirs;
	size_t ndirs;
} reach;

static bool reach_known(const char *dir)
{
	for (size_t i = 0; i < reach.ndirs; i++)
		if (!strcmp(reach.dirs[i], dir))
			return true;
	return false;
}

/* Adds the directories above path to dirs[*n] that are neither known
 * searchable nor inside the VM's own directory (the store makes those). */
static void reach_add(char ***dirs, size_t *n, const char *path, const char *vm_dir)
{
	size_t own = strlen(vm_dir);
	char *dir = xstrdup(path);

	for (char *slash = strchr(dir + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
		*slash = '\0';
		bool inside = !strncmp(dir, vm_dir, own) && (!dir[own] || dir[own] == '/');
		bool listed = reach_known(dir);
		for (size_t i = 0; i < *n && !listed; i++)
			listed = !strcmp((*dirs)[i], dir);
		if (!inside && !listed) {
			*dirs = xrealloc(*dirs, (*n + 1) * sizeof(**dirs));
			(*dirs)[(*n)++] = xstrdup(dir);
		}
		*slash = '/';
	}
	free(dir);
}

static int reach_label(struct vi_hv_ctx *ctx, const struct virt_guest *g)
{
	char *expr = xasprintf("string(/capabilities/host/secmodel[model='dac']/baselabel[@type='%s'])",
			       g->domain_type);
	char *label = NULL;
	int rc = caps_string(ctx, expr, &label);

	free(expr);
	if (rc)
		return rc;
	reach.known = true;
	reach.check = label && sscanf(label, "+%u:+%u", &reach.uid, &reach.gid) == 2 &&
		      reach.uid != 0;
	free(label);
	if (!reach.check)
		return 0;
	struct passwd *pw = getpwuid(reach.uid);
	if (pw)
		snprintf(reach.user, sizeof(reach.user), "%s", pw->pw_name);
	else
		snprintf(reach.user, sizeof(reach.user), "%u", reach.uid);
	reach.ngroups = ARRAY_SIZE(reach.groups);
	if (!pw || getgrouplist(pw->pw_name, reach.gid, reach.groups, &reach.ngroups) < 0)
		reach.ngroups = 0;
	return 0;
}

/* QEMU runs as the user of libvirt's DAC label (libvirt-qemu on Debian) and
 * must search every directory above the VM's disks and kernel, and above the
 * VM's directory in the store, where its overlays go: a store in a 0700
 * directory would fail only at start, with QEMU's "Permission denied".
 * Checked on this host, by becoming that user in a child (root only). */
static int check_reach(struct vi_hv_ctx *ctx, const struct virt_guest *g, const struct vi_hv_vm *vm)
{
	char closed[PATH_MAX] = "", **dirs = NULL;
	int pipefd[2], status, rc;
	size_t n = 0;
	ssize_t got;
	pid_t pid;

	if (geteuid() != 0 || !virt_is_local(ctx))
		return 0;
	if (!reach.known && (rc = reach_label(ctx, g)))
		return rc;
	if (!reach.check)
		return 0;
	reach_add(&dirs, &n, vm->dir, vm->dir);
	for (size_t i = 0; i < vm->ndisks; i++)
		reach_add(&dirs, &n, vm->disks[i]->path, vm->dir);
	if (vm->kernel)
		reach_add(&dirs, &n, vm->kernel, vm->dir);
	if (vm->initrd)
		reach_add(&dirs, &n, vm->initrd, vm->dir);
	if (!n)
		return 0;
	if (pipe2(pipefd, O_CLOEXEC) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot check what QEMU can reach");
		goto out;
	}
	pid = fork();
	if (pid == 0) {
		close(pipefd[0]);
		if (setgroups(reach.ngroups, reach.groups) < 0 || setgid(reach.gid) < 0 ||
		    setuid(reach.uid) < 0)
			_exit(2);
		find_closed_dir(dirs, n, pipefd[1]);
	}
	close(pipefd[1]);
	got = pid < 0 ? -1 : read(pipefd[0], closed, sizeof(closed) - 1);
	close(pipefd[0]);
	if (pid < 0 || waitpid(pid, &status, 0) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot check what QEMU can reach");
		goto out;
	}
	rc = 0;
	if (got > 0 && WIFEXITED(status) && WEXITSTATUS(status) == 1) {
		closed[got] = '\0';
		struct stat st;
		unsigned mode = stat(closed, &st) == 0 ? st.st_mode & 07777 : 0;
		rc = vi_error(VI_EFAIL,
			      "QEMU runs as '%s', which cannot search '%s' (mode %04o) to reach VM '%s': "
			      "run 'chmod o+x %s' or 'setfacl -m u:%s:x %s', or keep VMs elsewhere",
			      reach.user, closed, mode, vm->name, closed, reach.user, closed);
	} else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		/* Searchable now: later VMs of this command need not ask again. */
		for (size_t i = 0; i < n; i++)
			if (vi_file_exists(dirs[i])) {
				reach.dirs = xrealloc(reach.dirs, (reach.ndirs + 1) * sizeof(char *));
				reach.dirs[reach.ndirs++] = xstrdup(dirs[i]);
			}
	}
out:
	for (size_t i = 0; i < n; i++)
		free(dirs[i]);
	free(dirs);
	return rc;
}

/* The guest for this connection, once QEMU is known to reach vm's files. */
static int qemu_guest_for(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm,
			  const struct virt_guest **g)
{
	const char *why;
	int rc = qemu_guest(ctx, g, &why);

	return rc ? rc : check_reach(ctx, *g, vm);
}

static int qemu_define(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm)
{
	const struct virt_guest *g;
	int rc = qemu_guest_for(ctx, vm, &g);

	return rc ? rc : virt_define(ctx, g, vm);
}

/* The definition is written afresh at each start: the disks' backing chains
 * in it (lib/virt/domxml.c) are the ones on disk now, after any clone froze
 * a disk into a layer. */
static int qemu_start(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm)
{
	int rc = qemu_define(ctx, vm);

	return rc ? rc : virt_start(ctx, vm);
}

/* As start: QEMU's reach checked for the disks the host set (libvirtd, not
 * QEMU, reads the state file), and the definition written afresh. */
static int qemu_restore(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, const char *path,
			unsigned flags)
{
	const struct virt_guest *g;
	int rc = qemu_guest_for(ctx, vm, &g);

	return rc ? rc : virt_restore(ctx, g, vm, path, flags);
}

static const struct vi_hv_ops qemu_ops = {
	.struct_size = sizeof(struct vi_hv_ops),
	.abi_version = VI_HV_ABI_VERSION,
	.name = "qemu",
	.description = "QEMU through libvirt: KVM, or TCG without hardware virtualization",
	.features = VI_HV_F_DIRECT_BOOT | VI_HV_F_FIRMWARE_BOOT | VI_HV_F_REMOTE |
		    VI_HV_F_USER_NET | VI_HV_F_MIGRATE_URI,
	.open = qemu_open,
	.close = virt_close,
	.probe = qemu_probe,
	.define = qemu_define,
	.undefine = virt_undefine,
	.start = qemu_start,
	.stop = virt_stop,
	.pause = virt_pause,
	.resume = virt_resume,
	.state = virt_state,
	.states = virt_states,
	.console = virt_console,
	.stats = virt_stats,
	.save = virt_save,
	.restore = qemu_restore,
	.set_vcpus = virt_set_vcpus,
	.set_memory = virt_set_memory,
	.resize_disk = virt_resize_disk,
	.set_cpu_quota = virt_set_cpu_quota,
	.switch_disks = virt_switch_disks,
	.forward_add = virt_forward_add,
	.forward_remove = virt_forward_remove,
	.nic_address = virt_nic_address,
	.grow_fs = virt_grow_fs,
	.migrate_send = virt_migrate_send,
	.migrate_check = virt_migrate_check,
	.net_up = virt_net_up,
	.net_down = virt_net_down,
};

VI_HV_EXPORT const struct vi_hv_ops *vi_hv_plugin_init(const struct vi_host *host)
{
	vi_plugin_set_host(host);
	return &qemu_ops;
}
