/* vi cp [-r] [VM:]SRC [VM:]DST: files between the host and a running guest,
 * over the same SSH as vi ssh. Only a shell, cat and (for -r) tar are needed
 * in the guest: no scp or SFTP server. */
#include "cmd.h"
#include "error.h"
#include "machine.h"
#include "ssh.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int recursive;

const struct vi_option cp_options[] = {
	{ "recursive", 'r', VI_OPT_FLAG, &recursive, NULL, "copy a directory and what it holds" },
	OPT_CONNECT,
	VI_OPT_TABLE_END,
};

/* "VM:PATH" names a machine when VM is one in the store; "./a:b" never does. */
static bool split_remote(const char *arg, char **vm, const char **path)
{
	const char *colon = strchr(arg, ':'), *slash = strchr(arg, '/');

	if (!colon || colon == arg || (slash && slash < colon))
		return false;
	*vm = xstrndup(arg, (size_t)(colon - arg));
	if (vi_check_name(*vm, "VM") < 0 || vi_store_vm_exists(&ctx.store, *vm) != 0) {
		vi_error_clear();
		free(*vm);
		*vm = NULL;
		return false;
	}
	*path = colon + 1;
	return true;
}

static char *base_name(const char *path)
{
	char *copy = xstrdup(path), *b = xstrdup(basename(copy));

	free(copy);
	return b;
}

/* Runs ssh with `script` as the guest's command and fd as its stdin (to
 * the guest) or stdout (from it). */
static int ssh_with(const struct vi_ssh_target *t, const char *script, int in_fd, int out_fd)
{
	char *cmd[] = { (char *)script };
	char **argv = vi_ssh_argv(t, VI_SSH_BATCH, cmd, 1);
	int st = vi_run_fds(argv, in_fd, out_fd, STDERR_FILENO);

	vi_strv_free(argv);
	if (st < 0)
		return st;
	if (st == 255)
		return vi_error(VI_EFAIL, "cannot reach the guest over SSH");
	if (st != 0)
		return vi_error(VI_EFAIL, "the copy failed in the guest (exit %d)", st);
	return 0;
}

/* Runs a local program between two fds and waits for it. */
static int local_with(char *const argv[], int in_fd, int out_fd)
{
	int st = vi_run_fds(argv, in_fd, out_fd, STDERR_FILENO);

	if (st > 0)
		return vi_error(VI_EFAIL, "'%s' failed (exit %d)", argv[0], st);
	return st;
}

/* A pipe whose writer is a local program and whose reader is ssh, or the
 * other way round, run at once. */
static int pipeline(const struct vi_ssh_target *t, const char *script, char *const local[],
		    bool to_guest)
{
	int p[2], rc, lrc = 0, st;
	pid_t pid;

	if (pipe2(p, O_CLOEXEC) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot make a pipe");
	pid = fork();
	if (pid < 0) {
		close(p[0]);
		close(p[1]);
		return vi_error_errno(VI_EFAIL, errno, "cannot fork");
	}
	if (pid == 0) {
		close(to_guest ? p[0] : p[1]);
		int r = to_guest ? local_with(local, -1, p[1]) : local_with(local, p[0], -1);
		if (r < 0)
			fprintf(stderr, "vi: error: %s\n", vi_error_message());
		_exit(r < 0 ? 1 : 0);
	}
	close(to_guest ? p[1] : p[0]);
	rc = to_guest ? ssh_with(t, script, p[0], STDOUT_FILENO) : ssh_with(t, script, -1, p[1]);
	close(to_guest ? p[0] : p[1]);
	while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(st) || WEXITSTATUS(st))
		lrc = vi_error(VI_EFAIL, "the copy failed on the host");
	return rc < 0 ? rc : lrc;
}

static int to_guest(const struct vi_ssh_target *t, const char *src, const char *dst)
{
	char *b = base_name(src), *qb = vi_shell_quote(b), *qd = vi_shell_quote(dst), *script;
	struct stat st;
	int rc, fd;

	if (stat(src, &st) < 0) {
		rc = vi_error_errno(errno == ENOENT ? VI_ENOTFOUND : VI_EFAIL, errno,
				    "cannot read '%s'", src);
		goto out;
	}
	if (S_ISDIR(st.st_mode)) {
		if (!recursive) {
			rc = vi_error(VI_EUSAGE, "'%s' is a directory (use -r)", src);
			goto out;
		}
		/* cp -r: into DST/NAME when DST is a directory, else as DST. */
		script = xasprintf("d=%s; [ -d \"$d\" ] && d=\"$d\"/%s; mkdir -p \"$d\" && "
				   "tar -C \"$d\" -xf -",
				   qd, qb);
		char *tar[] = { "tar", "-C", (char *)src, "-cf", "-", ".", NULL };
		rc = pipeline(t, script, tar, true);
		free(script);
		goto out;
	}
	if ((fd = open(src, O_RDONLY | O_CLOEXEC)) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot read '%s'", src);
		goto out;
	}
	script = xasprintf("d=%s; [ -d \"$d\" ] && d=\"$d\"/%s; cat >\"$d\"", qd, qb);
	rc = ssh_with(t, script, fd, STDOUT_FILENO);
	close(fd);
	free(script);
out:
	free(b);
	free(qb);
	free(qd);
	return rc;
}

static int from_guest(const struct vi_ssh_target *t, const char *src, const char *dst)
{
	char *b = base_name(src), *qs = vi_shell_quote(src), *script, *target;
	struct stat st;
	int rc, fd;

	target = stat(dst, &st) == 0 && S_ISDIR(st.st_mode) ? xasprintf("%s/%s", dst, b)
							     : xstrdup(dst);
	if (recursive) {
		script = xasprintf("if [ -d %s ]; then tar -C %s -cf - .; else "
				   "echo \"vi: %s is not a directory\" >&2; exit 1; fi",
				   qs, qs, qs);
		if (mkdir(target, 0777) < 0 && errno != EEXIST) {
			rc = vi_error_errno(VI_EFAIL, errno, "cannot make '%s'", target);
		} else {
			char *tar[] = { "tar", "-C", target, "-xf", "-", NULL };
			rc = pipeline(t, script, tar, false);
		}
		free(script);
		goto out;
	}
	/* Written aside and renamed: a failed copy leaves no half file. */
	char *tmp = xasprintf("%s.vi-cp.%d", target, (int)getpid());
	if ((fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666)) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot write '%s'", target);
		free(tmp);
		goto out;
	}
	script = xasprintf("if [ -d %s ]; then echo \"vi: %s is a directory (use -r)\" >&2; "
			   "exit 1; fi; cat %s",
			   qs, qs, qs);
	rc = ssh_with(t, script, -1, fd);
	if (close(fd) < 0 && rc == 0)
		rc = vi_error_errno(VI_EFAIL, errno, "cannot write '%s'", target);
	if (rc == 0 && rename(tmp, target) < 0)
		rc = vi_error_errno(VI_EFAIL, errno, "cannot write '%s'", target);
	if (rc < 0)
		unlink(tmp);
	free(tmp);
	free(script);
out:
	free(b);
	free(qs);
	free(target);
	return rc;
}

int cmd_cp(int argc, char **argv)
{
	char *src_vm = NULL, *dst_vm = NULL;
	const char *src_path = argv[0], *dst_path = argv[1];
	struct vi_machine m;
	struct vi_ssh_target t;
	bool from = split_remote(argv[0], &src_vm, &src_path);
	bool to = split_remote(argv[1], &dst_vm, &dst_path);
	int rc;
	(void)argc;

	if (from == to) {
		rc = vi_error(VI_EUSAGE, from ? "vi cp copies between the host and one VM, not two"
					      : "neither '%s' nor '%s' names a VM (VM:PATH)",
			      argv[0], argv[1]);
		goto out;
	}
	if (!*(from ? src_path : dst_path)) {
		rc = vi_error(VI_EUSAGE, "no path in the VM after '%s:'", from ? src_vm : dst_vm);
		goto out;
	}
	if ((rc = vi_machine_open(&ctx.store, &ctx.plugins, from ? src_vm : dst_vm, ctx.connect,
				  true, &m)) < 0)
		goto out;
	rc = vi_ssh_target(&ctx.store, &m, &t);
	vi_machine_release(&m);
	if (rc < 0)
		goto out;
	rc = from ? from_guest(&t, src_path, dst_path) : to_guest(&t, src_path, dst_path);
	vi_ssh_target_release(&t);
out:
	free(src_vm);
	free(dst_vm);
	return rc;
}
