/* lib/virt's console logger, which keeps hv-xen's console log because libxl
 * ignores the console's <log>, tried on a QEMU guest of the real libvirtd: a
 * console it cannot attach fails the call with libvirt's reason; otherwise the
 * log fills up to the guest's marker and the logger goes when the guest does. */
#include "tap.h"
#include "hv-virt-host.h"
#include "error.h"
#include "util.h"
#include "virt/virt.h"

#include <dirent.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#define MiB (1024ull * 1024)
#define BOOT_TIMEOUT_S 120
#define MARKER "VI-CONSOLE-LOG-READY"

static char work[64], kernel[128], initrd[128], log_path[128], lock_path[128];

/* The newest /boot/vmlinuz-* and an initramfs with its modules, in `work`:
 * libvirt hands our copy of the kernel to QEMU's user, not /boot's file. */
static int prepare_artifacts(void)
{
	const char *top = getenv("VI_TOP");
	char cmd[1024];
	glob_t g;
	int rc;

	if (glob("/boot/vmlinuz-*", 0, NULL, &g) || !g.gl_pathc) {
		globfree(&g);
		return -1;
	}
	const char *src = g.gl_pathv[g.gl_pathc - 1];
	snprintf(kernel, sizeof(kernel), "%s/vmlinuz", work);
	snprintf(initrd, sizeof(initrd), "%s/initrd.gz", work);
	snprintf(cmd, sizeof(cmd),
		 "cp '%s' '%s' && '%s/tests/lib/mkinitramfs' -o '%s' --marker %s "
		 "--kernel-version '%s'",
		 src, kernel, top && *top ? top : ".", initrd, MARKER,
		 src + strlen("/boot/vmlinuz-"));
	rc = system(cmd);
	globfree(&g);
	return rc;
}

static bool log_has(const char *text)
{
	char *buf = NULL;
	size_t len = 0;
	bool found = !vi_read_file(log_path, &buf, &len) && memmem(buf, len, text, strlen(text));

	free(buf);
	return found;
}

/* Does any process hold the log open? */
static bool log_held(void)
{
	DIR *proc = opendir("/proc");
	struct dirent *p, *f;
	bool held = false;

	while (proc && !held && (p = readdir(proc))) {
		char dir[300], fd[600], target[PATH_MAX];
		DIR *fds;

		snprintf(dir, sizeof(dir), "/proc/%s/fd", p->d_name);
		if (!(fds = opendir(dir)))
			continue;
		while (!held && (f = readdir(fds))) {
			snprintf(fd, sizeof(fd), "%s/%s", dir, f->d_name);
			ssize_t n = readlink(fd, target, sizeof(target) - 1);
			held = n > 0 && (target[n] = '\0', !strcmp(target, log_path));
		}
		closedir(fds);
	}
	if (proc)
		closedir(proc);
	return held;
}

/* Polls `cond` once a second for up to `seconds`. */
static bool wait_until(bool (*cond)(void), int seconds)
{
	for (int i = 0; i < seconds; i++) {
		if (cond())
			return true;
		sleep(1);
	}
	return cond();
}

static bool marker_logged(void)
{
	return log_has(MARKER);
}

static bool log_released(void)
{
	return !log_held();
}

/* Can a new open of `path` take an flock on it now? */
static bool lock_free(const char *path)
{
	int fd = open(path, O_RDWR | O_CLOEXEC);
	bool free_now = fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0;

	if (fd >= 0)
		close(fd);
	return free_now;
}

/* A console session held elsewhere: the logger cannot have it. */
static void test_console_taken(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm,
			       const struct vi_hv_vm *logged)
{
	virConnectPtr conn = virConnectOpen(virt_uri(ctx));
	virDomainPtr dom = conn ? virDomainLookupByName(conn, vm->name) : NULL;
	virStreamPtr st = dom ? virStreamNew(conn, 0) : NULL;
	char want[256];

	if (!ok(st && virDomainOpenConsole(dom, NULL, st, 0) == 0,
		"another session holds the console"))
		goto cleanup;
	is_int(virt_console_log(ctx, logged), -VI_EFAIL, "logging it fails");
	snprintf(want, sizeof(want), "cannot log the console of '%s': cannot attach to the console "
		 "of '%s': ", vm->name, vm->name);
	ok(message_has(vi_error_message(), want) &&
	   message_has(vi_error_message(), "Active console session exists for this domain"),
	   "... saying why, in libvirt's words");
	ok(wait_until(log_released, 30), "... and no logger is left holding the log");
cleanup:
	if (st) {
		virStreamAbort(st);
		virStreamFree(st);
	}
	if (dom)
		virDomainFree(dom);
	if (conn)
		virConnectClose(conn);
}

int main(void)
{
	struct vi_hv_ctx ctx = { .struct_size = sizeof(ctx), .host = &test_host };
	char name[64], uuid[40], cmd[128];
	const char *reason = NULL;

	snprintf(work, sizeof(work), "/var/tmp/vi-test-XXXXXX");
	if (!mkdtemp(work) || chmod(work, 0711)) {
		ok(0, "a work directory");
		return done();
	}
	snprintf(log_path, sizeof(log_path), "%s/console.log", work);
	snprintf(lock_path, sizeof(lock_path), "%s/lock", work);
	snprintf(name, sizeof(name), "vi-test-%d-conlog", (int)getpid());
	vi_uuid_generate(uuid);
	/* Defined without a log of its own: only the logger writes it. */
	struct vi_hv_vm vm = {
		.struct_size = sizeof(vm), .name = name, .uuid = uuid,
		.dir = work, .run_dir = work,
		.cpus = 1, .max_cpus = 1, .memory = 256 * MiB, .max_memory = 256 * MiB,
		.kernel = kernel, .initrd = initrd, .cmdline = "console=ttyS0",
	};
	struct vi_hv_vm logged = vm;
	logged.console_log = log_path;

	is_int(virt_open(&ctx, "qemu:///system"), 0, "open qemu:///system");
	if (virt_probe(&ctx, "QEMU", &reason) != VI_HV_PROBE_OK) {
		skip("libvirtd is not reachable (scripts/setup starts it): %s",
		     reason ? reason : vi_error_message());
		goto cleanup;
	}
	if (!ok(prepare_artifacts() == 0, "test kernel and initramfs prepared"))
		goto cleanup;
	is_int(virt_define(&ctx, &virt_guest_qemu_tcg, &vm), 0, "define a guest");
	if (!ok(virt_start(&ctx, &vm) == 0, "start it: %s", vi_error_message()))
		goto undefine;

	test_console_taken(&ctx, &vm, &logged);

	/* Held as vi holds the VM's lock around start: the logger outlives it. */
	int lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	ok(lock_fd >= 0 && flock(lock_fd, LOCK_EX) == 0, "take a lock as vi start does");
	is_int(virt_console_log(&ctx, &logged), 0, "log its console");
	ok(log_held(), "... from a process of its own");
	if (lock_fd >= 0)
		close(lock_fd);
	ok(lock_free(lock_path), "... which keeps none of the caller's locks");
	ok(wait_until(marker_logged, BOOT_TIMEOUT_S), "the guest's marker reaches the log");
	is_int(virt_stop(&ctx, &vm, VI_HV_STOP_FORCE, 0), 0, "destroy the guest");
	ok(wait_until(log_released, 30), "the logger ends with the guest");
	ok(log_has(MARKER), "the log keeps what it had");
undefine:
	is_int(virt_undefine(&ctx, &vm), 0, "undefine it");
cleanup:
	virt_close(&ctx);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", work);
	if (system(cmd))
		printf("# cannot remove '%s'\n", work);
	return done();
}
