/* Host ports for the forwards of "user" NICs. */
#include "forward.h"
#include "error.h"
#include "util.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* Binds a socket to addr:port as a forward would; returns it, or -1 with errno. */
static int bind_port(const char *addr, int proto, unsigned port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	int fd, one = 1;

	if (inet_pton(AF_INET, addr, &sa.sin_addr) != 1) {
		errno = EINVAL;
		return -1;
	}
	fd = socket(AF_INET, (proto == VI_HV_UDP ? SOCK_DGRAM : SOCK_STREAM) | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	/* As the backends' listeners do: a port in TIME_WAIT is free. */
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		int e = errno;
		close(fd);
		errno = e;
		return -1;
	}
	return fd;
}

int vi_port_free(const char *addr, int proto, unsigned *port)
{
	struct sockaddr_in sa;
	socklen_t len = sizeof(sa);
	int fd = bind_port(addr, proto, 0);

	if (fd < 0 || getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
		int rc = vi_error_errno(VI_EFAIL, errno, "cannot find a free port on %s", addr);
		if (fd >= 0)
			close(fd);
		return rc;
	}
	close(fd);
	*port = ntohs(sa.sin_port);
	return 0;
}

int vi_port_check(const char *addr, int proto, unsigned port)
{
	int fd = bind_port(addr, proto, port);
	bool local = !strcmp(addr, "127.0.0.1");

	if (fd >= 0) {
		close(fd);
		return 0;
	}
	if (errno == EADDRINUSE || errno == EACCES)
		return vi_error(VI_ESTATE, "host port %s%s%u%s is %s", local ? "" : addr,
				local ? "" : ":", port, proto == VI_HV_UDP ? "/udp" : "",
				errno == EACCES ? "reserved for root" : "in use");
	return vi_error_errno(VI_EUSAGE, errno, "cannot forward from %s:%u", addr, port);
}

struct vi_vm_nic *vi_vm_user_nic(const struct vi_vm *vm)
{
	for (size_t i = 0; i < vm->nnics; i++)
		if (!strcmp(vm->nics[i].mode, "user"))
			return &vm->nics[i];
	return NULL;
}

struct vi_vm_forward *vi_vm_ssh_forward(const struct vi_vm *vm)
{
	struct vi_vm_nic *n = vi_vm_user_nic(vm);

	return n ? vi_vm_nic_forward(n, VI_SSH_GUEST_PORT) : NULL;
}

static bool same_port(const struct vi_vm_forward *a, const struct vi_vm_forward *b)
{
	return a->proto == b->proto && a->host_port == b->host_port &&
	       (!strcmp(a->host_addr, b->host_addr) || !strcmp(a->host_addr, "0.0.0.0") ||
		!strcmp(b->host_addr, "0.0.0.0"));
}

/* Whether f shares its host port with one of the n forwards before it. */
static bool port_taken_before(const struct vi_vm_nic *n, size_t j)
{
	for (size_t k = 0; k < j; k++)
		if (same_port(&n->forwards[k], &n->forwards[j]))
			return true;
	return false;
}

int vi_forwards_prepare(struct vi_vm *vm, bool *changed)
{
	*changed = false;
	for (size_t i = 0; i < vm->nnics; i++) {
		struct vi_vm_nic *n = &vm->nics[i];
		for (size_t j = 0; j < n->nforwards; j++) {
			struct vi_vm_forward *f = &n->forwards[j];
			int rc = 0;
			if (!f->auto_port) {
				if (port_taken_before(n, j))
					return vi_error(VI_EUSAGE, "VM '%s' forwards host port %u twice",
							vm->name, f->host_port);
				if ((rc = vi_port_check(f->host_addr, f->proto, f->host_port)) < 0)
					return rc;
				continue;
			}
			/* A free port may come back twice from the kernel: try again. */
			for (int tries = 0; f->host_port == 0 || port_taken_before(n, j) ||
					    vi_port_check(f->host_addr, f->proto, f->host_port) < 0;
			     tries++) {
				vi_error_clear();
				if (tries == 8 ||
				    (rc = vi_port_free(f->host_addr, f->proto, &f->host_port)) < 0)
					return rc < 0 ? rc
						      : vi_error(VI_EFAIL, "cannot find a free port on %s",
								 f->host_addr);
				*changed = true;
			}
		}
	}
	return 0;
}
