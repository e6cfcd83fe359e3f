/* I/O threads: each device whose work blocks (a disk, a TAP device) gets one, so a slow
 * disk holds up neither the vCPUs nor the other devices. Guests reach them through
 * ioeventfds, which KVM signals without leaving the kernel. */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "error.h"
#include "util.h"
#include "vmm/internal.h"

struct iothread_watch {
	int fd;
	iothread_cb cb;
	void *opaque;
};

struct iothread {
	char *name;
	int epoll_fd, stop_fd;
	pthread_t thread;
	bool started;
	pthread_mutex_t lock; /* guards watches against iothread_watch() from other threads */
	struct iothread_watch *watches;
	size_t nwatches;
	const struct iothread_poller *poller; /* guarded by lock */
	void *poller_opaque;
};

struct iothread *iothread_new(const char *name)
{
	struct iothread *t = xcalloc(1, sizeof(*t));

	t->name = xstrdup(name);
	t->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
	t->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	pthread_mutex_init(&t->lock, NULL);
	return t;
}

static struct iothread_watch *iothread_find(struct iothread *t, int fd)
{
	for (size_t i = 0; i < t->nwatches; i++)
		if (t->watches[i].fd == fd)
			return &t->watches[i];
	return NULL;
}

int iothread_watch(struct iothread *t, int fd, iothread_cb cb, void *opaque)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = fd };
	struct iothread_watch *w;

	if (t->epoll_fd < 0 || t->stop_fd < 0)
		return vi_error(VI_EFAIL, "I/O thread '%s' has no event loop", t->name);
	pthread_mutex_lock(&t->lock);
	w = iothread_find(t, fd);
	if (!w) {
		t->watches = xrealloc(t->watches, (t->nwatches + 1) * sizeof(*t->watches));
		w = &t->watches[t->nwatches++];
		if (epoll_ctl(t->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
			t->nwatches--;
			pthread_mutex_unlock(&t->lock);
			return vi_error_errno(VI_EFAIL, errno, "I/O thread '%s' cannot watch fd %d",
					      t->name, fd);
		}
	}
	*w = (struct iothread_watch){ fd, cb, opaque };
	pthread_mutex_unlock(&t->lock);
	return 0;
}

void iothread_enable(struct iothread *t, int fd, bool on)
{
	struct epoll_event ev = { .events = on ? EPOLLIN : 0, .data.fd = fd };

	epoll_ctl(t->epoll_fd, EPOLL_CTL_MOD, fd, &ev);
}

/* Runs the callbacks of ready watches, waiting at most timeout_ms; false once stopped. */
static bool iothread_dispatch(struct iothread *t, int timeout_ms)
{
	struct epoll_event evs[8];
	int n = epoll_wait(t->epoll_fd, evs, ARRAY_SIZE(evs), timeout_ms);

	for (int i = 0; i < n; i++) {
		struct iothread_watch w = { -1, NULL, NULL }, *found;

		if (evs[i].data.fd == t->stop_fd)
			return false;
		pthread_mutex_lock(&t->lock);
		found = iothread_find(t, evs[i].data.fd);
		if (found)
			w = *found;
		pthread_mutex_unlock(&t->lock);
		if (w.cb)
			w.cb(w.opaque, w.fd);
	}
	return true;
}

int iothread_pollset_add(struct iothread_pollset *set, int fd, short events)
{
	if (set->n == set->cap) {
		set->cap = set->cap ? 2 * set->cap : 16;
		set->fds = xrealloc(set->fds, set->cap * sizeof(*set->fds));
	}
	set->fds[set->n] = (struct pollfd){ .fd = fd, .events = events };
	return (int)set->n++;
}

/* With a poller, the wait is its poll(2), the epoll fd one of the fds it watches. */
static bool iothread_poll(struct iothread *t, const struct iothread_poller *p, void *opaque,
			  struct iothread_pollset *set)
{
	int timeout = -1, n;

	set->n = 0;
	iothread_pollset_add(set, t->epoll_fd, POLLIN);
	p->fill(opaque, set, &timeout);
	n = poll(set->fds, set->n, timeout);
	if (n < 0 && errno == EINTR)
		return true;
	p->dispatch(opaque, set, n < 0);
	return !(set->fds[0].revents & POLLIN) || iothread_dispatch(t, 0);
}

static void *iothread_run(void *arg)
{
	struct iothread *t = arg;
	struct iothread_pollset set = { 0 };
	bool going = true;

	while (going) {
		const struct iothread_poller *p;
		void *opaque;

		pthread_mutex_lock(&t->lock);
		p = t->poller;
		opaque = t->poller_opaque;
		pthread_mutex_unlock(&t->lock);
		going = p ? iothread_poll(t, p, opaque, &set) : iothread_dispatch(t, -1);
	}
	free(set.fds);
	return NULL;
}

void iothread_set_poller(struct iothread *t, const struct iothread_poller *p, void *opaque)
{
	pthread_mutex_lock(&t->lock);
	t->poller = p;
	t->poller_opaque = opaque;
	pthread_mutex_unlock(&t->lock);
}

int iothread_start(struct iothread *t)
{
	struct epoll_event ev = { .events = EPOLLIN, .data.fd = t->stop_fd };
	sigset_t all, old;
	int err;

	if (t->epoll_fd < 0 || t->stop_fd < 0 ||
	    epoll_ctl(t->epoll_fd, EPOLL_CTL_ADD, t->stop_fd, &ev) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot make I/O thread '%s'", t->name);
	/* Process signals belong to the event loop's thread. */
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	err = pthread_create(&t->thread, NULL, iothread_run, t);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (err)
		return vi_error_errno(VI_EFAIL, err, "cannot start I/O thread '%s'", t->name);
	t->started = true;
	return 0;
}

void iothread_free(struct iothread *t)
{
	if (!t)
		return;
	if (t->started) {
		if (eventfd_write(t->stop_fd, 1) < 0)
			abort(); /* cannot overflow with one write */
		pthread_join(t->thread, NULL);
	}
	if (t->epoll_fd >= 0)
		close(t->epoll_fd);
	if (t->stop_fd >= 0)
		close(t->stop_fd);
	pthread_mutex_destroy(&t->lock);
	free(t->watches);
	free(t->name);
	free(t);
}
