/* The guest console: COM1 output fanned out to the log file and attached clients, with
 * the last bytes kept in a ring so a client attaching late sees what came before. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "error.h"
#include "util.h"
#include "vmm/internal.h"

void vmm_console_init(struct vmm_console *con)
{
	memset(con, 0, sizeof(*con));
	pthread_mutex_init(&con->lock, NULL);
}

void vmm_console_release(struct vmm_console *con)
{
	pthread_mutex_destroy(&con->lock);
}

/* Best effort, never blocking for long: a client that cannot keep up loses output rather
 * than stalling the vCPU that writes it. */
static void console_write(int fd, const uint8_t *buf, size_t len)
{
	while (len) {
		ssize_t n = send(fd, buf, len, MSG_NOSIGNAL | MSG_DONTWAIT);

		if (n < 0 && errno == ENOTSOCK)
			n = write(fd, buf, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return;
		buf += n;
		len -= (size_t)n;
	}
}

static void console_ring_append(struct vmm_console *con, const uint8_t *buf, size_t len)
{
	for (size_t i = 0; i < len; i++)
		con->ring[(con->written + i) % VMM_CONSOLE_RING] = buf[i];
	con->written += len;
}

void vmm_console_output(struct vmm *vm, const uint8_t *buf, size_t len)
{
	struct vmm_console *con = &vm->console;

	pthread_mutex_lock(&con->lock);
	console_ring_append(con, buf, len);
	for (size_t i = 0; i < con->nfds; i++)
		console_write(con->fds[i], buf, len);
	pthread_mutex_unlock(&con->lock);
}

int vmm_console_attach(struct vmm *vm, int fd, bool replay)
{
	struct vmm_console *con = &vm->console;
	int ret = 0;

	pthread_mutex_lock(&con->lock);
	if (con->nfds == VMM_CONSOLE_MAX_FDS) {
		ret = vi_error(VI_ESTATE, "too many consoles attached (at most %d)",
			       VMM_CONSOLE_MAX_FDS);
		goto out;
	}
	if (replay) {
		uint64_t kept = con->written < VMM_CONSOLE_RING ? con->written : VMM_CONSOLE_RING;
		uint64_t start = (con->written - kept) % VMM_CONSOLE_RING;
		uint64_t first = kept < VMM_CONSOLE_RING - start ? kept : VMM_CONSOLE_RING - start;

		console_write(fd, con->ring + start, first);
		console_write(fd, con->ring, kept - first);
	}
	con->fds[con->nfds++] = fd;
out:
	pthread_mutex_unlock(&con->lock);
	return ret;
}

void vmm_console_detach(struct vmm *vm, int fd)
{
	struct vmm_console *con = &vm->console;

	pthread_mutex_lock(&con->lock);
	for (size_t i = 0; i < con->nfds; i++) {
		if (con->fds[i] == fd) {
			con->fds[i] = con->fds[--con->nfds];
			break;
		}
	}
	pthread_mutex_unlock(&con->lock);
}

int vmm_console_restart_log(struct vmm *vm, const char *path)
{
	struct vmm_console *con = &vm->console;
	int fd, ret = 0;

	if (vm->cfg.console_fd < 0)
		return 0;
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
	if (fd < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot open '%s'", path);
	/* The new file takes the old one's descriptor: the console's list stays as it is. */
	pthread_mutex_lock(&con->lock);
	if (dup3(fd, vm->cfg.console_fd, O_CLOEXEC) < 0)
		ret = vi_error_errno(VI_EFAIL, errno, "cannot open '%s'", path);
	else
		con->written = 0;
	pthread_mutex_unlock(&con->lock);
	close(fd);
	return ret;
}

void vmm_console_input(struct vmm *vm, const uint8_t *buf, size_t len)
{
	serial_receive(vmm_device_get(vm, "serial", 0), buf, len);
}
