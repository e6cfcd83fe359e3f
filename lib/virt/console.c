/* Attaching a terminal to a domain's console: a libvirt stream and the input
 * fd, pumped by libvirt's event loop until the escape byte or the guest stops. */
#include "virt.h"
#include "error.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

struct pump {
	struct vi_hv_ctx *ctx;
	const struct vi_hv_vm *vm;
	virStreamPtr st;
	int out_fd, escape;
	int watch;           /* in_fd in the event loop */
	char pending[4096];  /* input not yet sent to the guest */
	size_t len, off;
	bool detach;         /* leave once pending is sent */
	bool guest_gone;     /* the stream ended: the guest stopped */
	bool done;
	int rc;
};

static void finish(struct pump *p, int rc)
{
	p->done = true;
	if (!p->rc)
		p->rc = rc;
}

/* While input waits for the guest, watch for the stream to take more and stop
 * reading the terminal; otherwise the reverse. */
static void update_events(struct pump *p)
{
	bool waiting = p->off < p->len;

	virStreamEventUpdateCallback(p->st, VIR_STREAM_EVENT_READABLE |
					    (waiting ? VIR_STREAM_EVENT_WRITABLE : 0));
	virEventUpdateHandle(p->watch, waiting ? 0 : VIR_EVENT_HANDLE_READABLE);
}

static void send_pending(struct pump *p)
{
	while (p->off < p->len) {
		int n = virStreamSend(p->st, p->pending + p->off, p->len - p->off);
		if (n == -2)
			break;
		if (n < 0) {
			finish(p, virt_error("cannot write to the console of '%s'",
					     p->vm->name));
			return;
		}
		p->off += (size_t)n;
	}
	if (p->off == p->len) {
		p->off = p->len = 0;
		if (p->detach) {
			finish(p, 0);
			return;
		}
	}
	update_events(p);
}

/* Guest output to out_fd, until the stream has no more for now. */
static void receive(struct pump *p)
{
	char buf[4096];

	for (;;) {
		int n = virStreamRecv(p->st, buf, sizeof(buf));
		if (n == -2)
			return;
		if (n == 0) {
			p->guest_gone = true;
			finish(p, 0);
			return;
		}
		if (n < 0) {
			finish(p, virt_error("cannot read the console of '%s'", p->vm->name));
			return;
		}
		if (vi_write_all(p->out_fd, buf, (size_t)n) < 0) {
			finish(p, vi_error_errno(VI_EFAIL, errno,
						 "cannot write the console of '%s'", p->vm->name));
			return;
		}
	}
}

static void on_stream(virStreamPtr st, int events, void *opaque)
{
	struct pump *p = opaque;

	(void)st;
	if (!p->done && (events & VIR_STREAM_EVENT_READABLE))
		receive(p);
	if (!p->done && (events & VIR_STREAM_EVENT_WRITABLE))
		send_pending(p);
	if (!p->done && (events & (VIR_STREAM_EVENT_ERROR | VIR_STREAM_EVENT_HANGUP))) {
		p->guest_gone = true;
		finish(p, 0);
	}
}

static void on_input(int watch, int fd, int events, void *opaque)
{
	struct pump *p = opaque;
	ssize_t n;

	(void)watch;
	if (p->done)
		return;
	if (!(events & VIR_EVENT_HANDLE_READABLE)) {
		/* Hang-up or error without data: the terminal is gone. */
		finish(p, 0);
		return;
	}
	n = read(fd, p->pending, sizeof(p->pending));
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n < 0) {
		finish(p, vi_error_errno(VI_EFAIL, errno, "cannot read the terminal for '%s'",
					 p->vm->name));
		return;
	}
	char *esc = p->escape >= 0 ? memchr(p->pending, p->escape, (size_t)n) : NULL;
	if (esc || n == 0) {
		p->detach = true;
		n = esc ? esc - p->pending : 0;
	}
	p->len = (size_t)n;
	p->off = 0;
	send_pending(p);
}

int virt_console(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, int in_fd, int out_fd,
		 int escape)
{
	struct pump p = {
		.ctx = ctx, .vm = vm, .out_fd = out_fd, .escape = escape, .watch = -1,
	};
	bool stream_watched = false;
	unsigned char uuid[VIR_UUID_BUFLEN];
	virConnectPtr conn = NULL;
	virDomainPtr found, dom = NULL;
	int rc;

	rc = virt_lookup(ctx, vm, &found);
	if (rc)
		return rc;
	if (virDomainGetUUID(found, uuid) < 0)
		rc = virt_error("cannot query '%s'", vm->name);
	virDomainFree(found);
	if (rc || (rc = virt_connect_streams(ctx, &conn)))
		goto cleanup;
	if (!(dom = virDomainLookupByUUID(conn, uuid))) {
		rc = virt_error("cannot look up '%s'", vm->name);
		goto cleanup;
	}
	p.st = virStreamNew(conn, VIR_STREAM_NONBLOCK);
	if (!p.st || virDomainOpenConsole(dom, NULL, p.st, 0) < 0) {
		rc = virt_error("cannot attach to the console of '%s'", vm->name);
		goto cleanup;
	}
	p.watch = virEventAddHandle(in_fd, VIR_EVENT_HANDLE_READABLE, on_input, &p, NULL);
	if (p.watch < 0) {
		rc = virt_error("cannot watch the terminal for '%s'", vm->name);
		goto cleanup;
	}
	if (virStreamEventAddCallback(p.st, VIR_STREAM_EVENT_READABLE, on_stream, &p, NULL) < 0) {
		rc = virt_error("cannot watch the console of '%s'", vm->name);
		goto cleanup;
	}
	stream_watched = true;
	while (!p.done)
		if (virEventRunDefaultImpl() < 0) {
			finish(&p, virt_error("cannot run the console of '%s'", vm->name));
			break;
		}
	rc = p.rc;
cleanup:
	if (p.watch >= 0)
		virEventRemoveHandle(p.watch);
	if (stream_watched)
		virStreamEventRemoveCallback(p.st);
	if (p.st) {
		if (p.guest_gone)
			virStreamFinish(p.st);
		else
			virStreamAbort(p.st);
		virStreamFree(p.st);
	}
	if (dom)
		virDomainFree(dom);
	if (conn)
		virConnectClose(conn);
	return rc;
}

/* How the logger answers whoever started it: end of file once it holds the
 * console, else this. */
struct logger_failure {
	int code;          /* VI_E* */
	char message[500]; /* NUL-terminated */
};

/* Copies the guest's console to log_fd until the guest stops, closing
 * *attached_fd (and setting it to -1) once it holds the console. Blocking
 * stream calls, never the event loop: that still watches the connection
 * inherited from the parent, and would read the replies meant for it. */
static int logger_copy(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, int log_fd,
		       int *attached_fd)
{
	virStreamPtr st = NULL;
	virDomainPtr dom;
	char buf[4096];
	int rc, n;

	rc = virt_lookup(ctx, vm, &dom);
	if (rc)
		return rc;
	st = virStreamNew(virDomainGetConnect(dom), 0);
	if (!st || virDomainOpenConsole(dom, NULL, st, 0) < 0) {
		rc = virt_error("cannot attach to the console of '%s'", vm->name);
		goto cleanup;
	}
	close(*attached_fd);
	*attached_fd = -1;
	while ((n = virStreamRecv(st, buf, sizeof(buf))) > 0)
		if (vi_write_all(log_fd, buf, (size_t)n) < 0)
			break;
	if (n == 0)
		virStreamFinish(st);
	else
		virStreamAbort(st);
cleanup:
	if (st)
		virStreamFree(st);
	virDomainFree(dom);
	return rc;
}

/* Inherited regular files may carry the command's locks (the store's VM lock
 * is an flock, which lasts while any copy of its descriptor does). /dev/null
 * takes their place rather than closing them: a number a library still holds
 * must not come back as something else. */
static void drop_inherited_files(int keep_fd, int null_fd)
{
	DIR *dir = opendir("/proc/self/fd");
	struct dirent *e;
	struct stat st;

	while (dir && (e = readdir(dir))) {
		int fd = atoi(e->d_name);
		if (e->d_name[0] != '.' && fd != keep_fd && fd != dirfd(dir) && !fstat(fd, &st) &&
		    S_ISREG(st.st_mode))
			dup2(null_fd, fd);
	}
	if (dir)
		closedir(dir);
}

/* The logger's process: detached, holding nothing of the command's but the
 * log, with a connection of its own. */
static void __attribute__((noreturn)) run_logger(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm,
						 int log_fd, int report_fd)
{
	int null_fd = open("/dev/null", O_RDWR), rc;
	pid_t pid;

	setsid();
	pid = fork();
	if (pid != 0)
		_exit(pid < 0 ? 1 : 0);
	if (null_fd < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot open '/dev/null'");
	} else {
		dup2(null_fd, STDIN_FILENO);
		dup2(null_fd, STDOUT_FILENO);
		dup2(null_fd, STDERR_FILENO);
		drop_inherited_files(log_fd, null_fd);
		virt_forget_connection(ctx);
		rc = logger_copy(ctx, vm, log_fd, &report_fd);
	}
	if (rc && report_fd >= 0) {
		struct logger_failure f = { .code = -rc };
		snprintf(f.message, sizeof(f.message), "%s", vi_error_message());
		/* One write within PIPE_BUF: the starter reads all of it or nothing. */
		if (write(report_fd, &f, sizeof(f)) < 0)
			_exit(1);
	}
	_exit(rc ? 1 : 0);
}

/* The logger's answer on report_fd (see struct logger_failure). */
static int logger_attached(const struct vi_hv_vm *vm, int report_fd)
{
	struct logger_failure f;
	ssize_t n;

	do
		n = read(report_fd, &f, sizeof(f));
	while (n < 0 && errno == EINTR);
	if (n == 0)
		return 0;
	if (n != (ssize_t)sizeof(f))
		return vi_error(VI_EFAIL, "cannot log the console of '%s': %s", vm->name,
				n < 0 ? strerror(errno) : "its logger failed");
	f.message[sizeof(f.message) - 1] = '\0';
	return vi_error(f.code, "cannot log the console of '%s': %s", vm->name, f.message);
}

int virt_console_log(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm)
{
	int report[2] = { -1, -1 }, log_fd, status, rc = 0;
	pid_t pid;

	if (!vm->console_log || !virt_is_local(ctx))
		return 0;
	log_fd = open(vm->console_log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
	if (log_fd < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot open '%s'", vm->console_log);
	if (pipe2(report, O_CLOEXEC) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot log the console of '%s'", vm->name);
		goto cleanup;
	}
	pid = fork();
	if (pid == 0) {
		close(report[0]);
		run_logger(ctx, vm, log_fd, report[1]);
	}
	/* Only the logger keeps the writing end: its answer ends when it closes it. */
	close(report[1]);
	report[1] = -1;
	if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) ||
	    WEXITSTATUS(status))
		rc = vi_error(VI_EFAIL, "cannot log the console of '%s': %s", vm->name,
			      pid < 0 ? strerror(errno) : "its logger did not start");
	else
		rc = logger_attached(vm, report[0]);
cleanup:
	if (report[0] >= 0)
		close(report[0]);
	close(log_fd);
	return rc;
}
