/* User-mode networking for virtio-net: libslirp's TCP/IP stack inside the VMM, on the
 * card's I/O thread. libslirp is not thread-safe, so every call into it after set-up is
 * made there: its sockets and timers join the thread's wait, and forwards asked for by
 * other threads are handed over. */
#include <arpa/inet.h>
#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <slirp/libslirp.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include <vi/hv-plugin.h>

#include "error.h"
#include "log.h"
#include "util.h"
#include "vmm/internal.h"

/* libslirp, and glib under it, are loaded when the first user NIC is made: a VMM
 * without one maps neither. */
static struct {
	__typeof__(slirp_new) *slirp_new;
	__typeof__(slirp_cleanup) *slirp_cleanup;
	__typeof__(slirp_input) *slirp_input;
	__typeof__(slirp_pollfds_fill) *slirp_pollfds_fill;
	__typeof__(slirp_pollfds_poll) *slirp_pollfds_poll;
	__typeof__(slirp_handle_timer) *slirp_handle_timer;
	__typeof__(slirp_add_hostfwd) *slirp_add_hostfwd;
	__typeof__(slirp_remove_hostfwd) *slirp_remove_hostfwd;
} so;
static pthread_once_t so_once = PTHREAD_ONCE_INIT;
static char so_error[256];

static void so_load(void)
{
	void *h = dlopen("libslirp.so.0", RTLD_NOW | RTLD_LOCAL);
	const char *missing = NULL;

	if (!h) {
		snprintf(so_error, sizeof(so_error), "%s", dlerror());
		return;
	}
#define SO_SYM(f)                                                                              \
	if (!(so.f = (__typeof__(so.f))dlsym(h, #f)) && !missing)                              \
		missing = #f;
	SO_SYM(slirp_new)
	SO_SYM(slirp_cleanup)
	SO_SYM(slirp_input)
	SO_SYM(slirp_pollfds_fill)
	SO_SYM(slirp_pollfds_poll)
	SO_SYM(slirp_handle_timer)
	SO_SYM(slirp_add_hostfwd)
	SO_SYM(slirp_remove_hostfwd)
#undef SO_SYM
	if (missing) {
		snprintf(so_error, sizeof(so_error), "libslirp.so.0 has no '%s'", missing);
		so.slirp_new = NULL;
	}
}

static int so_ready(void)
{
	pthread_once(&so_once, so_load);
	if (!so.slirp_new)
		return vi_error(VI_EUNSUPPORTED, "user-mode networking needs libslirp: %s",
				so_error);
	return 0;
}

struct net_slirp_timer {
	SlirpTimerId id;
	void *cb_opaque;
	int64_t expire_ms; /* -1: not armed */
	struct net_slirp_timer *next;
};

/* A forward asked for by another thread, made on the I/O thread. */
struct net_slirp_request {
	const struct vmm_forward *f;
	bool add, done;
	int ret;
	char *error;
};

struct net_slirp {
	Slirp *slirp;
	net_slirp_deliver deliver;
	void *opaque;
	struct net_slirp_timer *timers;
	const struct iothread_pollset *set; /* while slirp fills or reads it */
	int request_fd;                     /* a request waits */
	pthread_mutex_t lock;               /* guards req */
	pthread_cond_t done;
	struct net_slirp_request *req;
	bool attached;
	_Atomic uint32_t lease; /* the guest's address from its last DHCP ACK; 0: none */
};

static int64_t net_slirp_clock_ns(void *opaque)
{
	struct timespec ts;

	(void)opaque;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] << 8 | p[1]);
}

/* The address the guest leased, from slirp's DHCP ACK to it (UDP 67 to 68, BOOTP reply,
 * message type 5): yiaddr. */
static void net_slirp_snoop(struct net_slirp *s, const uint8_t *f, size_t len)
{
	struct dhcp_msg m;
	uint32_t yiaddr;

	if (net_dhcp_parse(f, len, 68, &m) < 1 || get16(m.udp) != 67 || m.bootp[0] != 2 ||
	    m.type != 5)
		return;
	memcpy(&yiaddr, m.bootp + 16, 4);
	atomic_store(&s->lease, yiaddr);
}

static ssize_t net_slirp_send(const void *buf, size_t len, void *opaque)
{
	struct net_slirp *s = opaque;

	net_slirp_snoop(s, buf, len);
	s->deliver(s->opaque, buf, len);
	return (ssize_t)len;
}

static void net_slirp_guest_error(const char *msg, void *opaque)
{
	(void)opaque;
	vi_debug("user network: guest error: %s", msg);
}

static void *net_slirp_timer_new(SlirpTimerId id, void *cb_opaque, void *opaque)
{
	struct net_slirp *s = opaque;
	struct net_slirp_timer *t = xcalloc(1, sizeof(*t));

	*t = (struct net_slirp_timer){ id, cb_opaque, -1, s->timers };
	s->timers = t;
	return t;
}

static void net_slirp_timer_free(void *timer, void *opaque)
{
	struct net_slirp *s = opaque;

	for (struct net_slirp_timer **p = &s->timers; *p; p = &(*p)->next) {
		if (*p == timer) {
			*p = (*p)->next;
			free(timer);
			return;
		}
	}
}

static void net_slirp_timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
	(void)opaque;
	((struct net_slirp_timer *)timer)->expire_ms = expire_ms;
}

/* Every fd is looked at on each wait: nothing to keep. */
static void net_slirp_poll_fd(int fd, void *opaque)
{
	(void)fd;
	(void)opaque;
}

/* Slirp calls in on this thread only, which fills the wait afresh each time round. */
static void net_slirp_notify(void *opaque)
{
	(void)opaque;
}

static void net_slirp_init_completed(Slirp *slirp, void *opaque)
{
	(void)slirp;
	(void)opaque;
}

static const SlirpCb net_slirp_callbacks = {
	.send_packet = net_slirp_send,
	.guest_error = net_slirp_guest_error,
	.clock_get_ns = net_slirp_clock_ns,
	.timer_free = net_slirp_timer_free,
	.timer_mod = net_slirp_timer_mod,
	.register_poll_fd = net_slirp_poll_fd,
	.unregister_poll_fd = net_slirp_poll_fd,
	.notify = net_slirp_notify,
	.init_completed = net_slirp_init_completed,
	.timer_new_opaque = net_slirp_timer_new,
};

/* --- the I/O thread's wait ------------------------------------------------------------- */

static int net_slirp_add_poll(int fd, int events, void *opaque)
{
	struct net_slirp *s = opaque;
	short ev = 0;

	ev |= events & SLIRP_POLL_IN ? POLLIN : 0;
	ev |= events & SLIRP_POLL_OUT ? POLLOUT : 0;
	ev |= events & SLIRP_POLL_PRI ? POLLPRI : 0;
	return iothread_pollset_add((struct iothread_pollset *)s->set, fd, ev);
}

static int net_slirp_get_revents(int idx, void *opaque)
{
	struct net_slirp *s = opaque;
	short rev = s->set->fds[idx].revents;
	int events = 0;

	events |= rev & POLLIN ? SLIRP_POLL_IN : 0;
	events |= rev & POLLOUT ? SLIRP_POLL_OUT : 0;
	events |= rev & POLLPRI ? SLIRP_POLL_PRI : 0;
	events |= rev & (POLLERR | POLLNVAL) ? SLIRP_POLL_ERR : 0;
	events |= rev & POLLHUP ? SLIRP_POLL_HUP : 0;
	return events;
}

static void net_slirp_fill(void *opaque, struct iothread_pollset *set, int *timeout_ms)
{
	struct net_slirp *s = opaque;
	int64_t now = net_slirp_clock_ns(NULL) / 1000000;
	uint32_t timeout = *timeout_ms < 0 ? UINT32_MAX : (uint32_t)*timeout_ms;

	s->set = set;
	so.slirp_pollfds_fill(s->slirp, &timeout, net_slirp_add_poll, s);
	for (struct net_slirp_timer *t = s->timers; t; t = t->next) {
		int64_t wait = t->expire_ms > now ? t->expire_ms - now : 0;

		if (t->expire_ms >= 0 && (uint64_t)wait < timeout)
			timeout = (uint32_t)wait;
	}
	*timeout_ms = timeout > INT_MAX ? -1 : (int)timeout;
}

static void net_slirp_dispatch(void *opaque, const struct iothread_pollset *set, bool error)
{
	struct net_slirp *s = opaque;
	int64_t now;
	bool fired = true;

	s->set = set;
	so.slirp_pollfds_poll(s->slirp, error, net_slirp_get_revents, s);
	now = net_slirp_clock_ns(NULL) / 1000000;
	/* A timer's handler may re-arm or free timers: look again after each. */
	while (fired) {
		fired = false;
		for (struct net_slirp_timer *t = s->timers; t && !fired; t = t->next) {
			if (t->expire_ms < 0 || t->expire_ms > now)
				continue;
			t->expire_ms = -1;
			so.slirp_handle_timer(s->slirp, t->id, t->cb_opaque);
			fired = true;
		}
	}
}

static const struct iothread_poller net_slirp_poller = {
	.fill = net_slirp_fill,
	.dispatch = net_slirp_dispatch,
};

/* --- forwards -------------------------------------------------------------------------- */

/* "8080", "8080/udp", "192.0.2.1:8080": a host port as messages name it. */
static void forward_name(const struct vmm_forward *f, char *buf, size_t len)
{
	snprintf(buf, len, "%s%s%u%s", f->host_addr ? f->host_addr : "", f->host_addr ? ":" : "",
		 f->host_port, f->udp ? "/udp" : "");
}

/* On the thread that owns slirp. */
static int net_slirp_hostfwd(struct net_slirp *s, const struct vmm_forward *f, bool add)
{
	struct vmm_forward named = *f;
	struct in_addr host, guest;
	char name[64];

	if (named.host_addr && !strcmp(named.host_addr, "127.0.0.1"))
		named.host_addr = NULL;
	forward_name(&named, name, sizeof(name));
	if (inet_pton(AF_INET, f->host_addr ? f->host_addr : "127.0.0.1", &host) != 1)
		return vi_error(VI_EUSAGE, "'%s' is not an IPv4 address", f->host_addr);
	if (!f->host_port || f->host_port > 65535 || !f->guest_port || f->guest_port > 65535)
		return vi_error(VI_EUSAGE, "forward of host port %s: ports are 1-65535", name);
	inet_pton(AF_INET, VI_HV_USER_GUEST_IP, &guest);
	if (add && so.slirp_add_hostfwd(s->slirp, f->udp, host, (int)f->host_port, guest,
				     (int)f->guest_port) < 0)
		return vi_error(VI_ESTATE, "host port %s is in use", name);
	if (!add && so.slirp_remove_hostfwd(s->slirp, f->udp, host, (int)f->host_port) < 0)
		return vi_error(VI_ESTATE, "host port %s is not forwarded", name);
	return 0;
}

/* On the I/O thread: a request is waiting. */
static void net_slirp_requested(void *opaque, int fd)
{
	struct net_slirp *s = opaque;
	struct net_slirp_request *req;
	eventfd_t n;

	if (eventfd_read(fd, &n) < 0)
		return;
	pthread_mutex_lock(&s->lock);
	req = s->req;
	if (req && !req->done) {
		req->ret = net_slirp_hostfwd(s, req->f, req->add);
		if (req->ret < 0)
			req->error = xstrdup(vi_error_message());
		req->done = true;
		pthread_cond_signal(&s->done);
	}
	pthread_mutex_unlock(&s->lock);
}

int net_slirp_forward(struct net_slirp *s, const struct vmm_forward *f, bool add)
{
	struct net_slirp_request req = { .f = f, .add = add };

	if (!s->attached)
		return net_slirp_hostfwd(s, f, add);
	pthread_mutex_lock(&s->lock);
	s->req = &req;
	if (eventfd_write(s->request_fd, 1) < 0)
		abort(); /* cannot overflow with one request at a time */
	while (!req.done)
		pthread_cond_wait(&s->done, &s->lock);
	s->req = NULL;
	pthread_mutex_unlock(&s->lock);
	if (req.ret < 0) {
		vi_error(-req.ret, "%s", req.error);
		free(req.error);
	}
	return req.ret;
}

int net_slirp_address(struct net_slirp *s, char *buf, size_t len)
{
	uint32_t lease = atomic_load(&s->lease);

	if (!lease)
		return vi_error(VI_ENOTFOUND, "the guest has not taken a DHCP lease yet");
	if (!inet_ntop(AF_INET, &lease, buf, (socklen_t)len))
		return vi_error_errno(VI_EFAIL, errno, "cannot format the guest's address");
	return 0;
}

/* --- life ------------------------------------------------------------------------------ */

int net_slirp_new(const struct vmm_nic *nic, net_slirp_deliver deliver, void *opaque,
		  struct net_slirp **out)
{
	struct net_slirp *s = xcalloc(1, sizeof(*s));
	SlirpConfig cfg = { .version = 4, .in_enabled = true };
	int ret = 0;

	inet_pton(AF_INET, "10.0.2.0", &cfg.vnetwork);
	inet_pton(AF_INET, "255.255.255.0", &cfg.vnetmask);
	inet_pton(AF_INET, VI_HV_USER_HOST_IP, &cfg.vhost);
	inet_pton(AF_INET, VI_HV_USER_GUEST_IP, &cfg.vdhcp_start);
	inet_pton(AF_INET, VI_HV_USER_DNS_IP, &cfg.vnameserver);
	s->deliver = deliver;
	s->opaque = opaque;
	s->request_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	pthread_mutex_init(&s->lock, NULL);
	pthread_cond_init(&s->done, NULL);
	if (s->request_fd < 0)
		ret = vi_error_errno(VI_EFAIL, errno, "cannot make an eventfd");
	else if ((ret = so_ready()) == 0 && !(s->slirp = so.slirp_new(&cfg, &net_slirp_callbacks, s)))
		ret = vi_error(VI_EFAIL, "cannot set up user-mode networking");
	for (size_t i = 0; ret == 0 && i < nic->nforwards; i++)
		ret = net_slirp_hostfwd(s, &nic->forwards[i], true);
	if (ret < 0) {
		net_slirp_free(s);
		return ret;
	}
	*out = s;
	return 0;
}

int net_slirp_attach(struct net_slirp *s, struct iothread *io)
{
	int ret = iothread_watch(io, s->request_fd, net_slirp_requested, s);

	if (ret < 0)
		return ret;
	s->attached = true;
	iothread_set_poller(io, &net_slirp_poller, s);
	/* The thread may be waiting without the poller: wake it to take it up. */
	if (eventfd_write(s->request_fd, 1) < 0)
		abort();
	return 0;
}

void net_slirp_input(struct net_slirp *s, const uint8_t *frame, size_t len)
{
	so.slirp_input(s->slirp, frame, (int)len);
}

void net_slirp_free(struct net_slirp *s)
{
	if (!s)
		return;
	if (s->slirp)
		so.slirp_cleanup(s->slirp);
	while (s->timers) {
		struct net_slirp_timer *t = s->timers;

		s->timers = t->next;
		free(t);
	}
	if (s->request_fd >= 0)
		close(s->request_fd);
	pthread_mutex_destroy(&s->lock);
	pthread_cond_destroy(&s->done);
	free(s);
}
