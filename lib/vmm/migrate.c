/* Live migration, both ends: the source sends memory in iterations (then what the guest
 * and the devices dirtied since) and mirrors its writable disk files, pauses the guest
 * for the rest and its vCPUs and devices, and hands over; the destination loads the
 * stream into a fresh VM, writes the disk files, and resumes the guest on "commit". */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "image/image.h"
#include "util.h"
#include "vmm/internal.h"

#define PAGE              VI_STATE_PAGE
#define CHUNK_PAGES       256u        /* copied out of the guest at once: 1 MiB */
#define DISK_GRAIN        (64u << 10) /* a disk file's dirty ranges */
#define DISK_CHUNK        (1u << 20)  /* disk bytes a section */
#define DEFAULT_DOWNTIME  300
#define MAX_ITERATIONS    30
#define THROTTLE_STEP     20
#define THROTTLE_MAX      95
#define THROTTLE_SLICE_NS 10000000ull
#define READY_TIMEOUT_MS  60000
#define RUNNING_TIMEOUT_MS 30000
#define STREAM_TIMEOUT_S  60

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

const char *vmm_migrate_phase_name(int phase)
{
	static const char *const names[] = { "memory", "disks", "downtime", "commit" };

	return phase >= 0 && phase < (int)ARRAY_SIZE(names) ? names[phase] : "memory";
}

/* --- the hand-over: lines of text ------------------------------------------------------ */

static int line_send(int fd, const char *line)
{
	char *text = xasprintf("%s\n", line);
	int ret = vi_write_all(fd, text, strlen(text)) < 0
			  ? vi_error_errno(VI_EFAIL, errno, "cannot write to the peer")
			  : 0;

	free(text);
	return ret;
}

/* One line from the peer, without its newline, within timeout_ms. */
static int line_recv(int fd, char *buf, size_t size, unsigned timeout_ms)
{
	uint64_t end = now_ns() + (uint64_t)timeout_ms * 1000000u;
	size_t len = 0;

	while (len < size - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		uint64_t now = now_ns();
		ssize_t n;

		if (now >= end)
			return vi_error(VI_ETIMEOUT, "the peer did not answer within %u s",
					timeout_ms / 1000);
		if (poll(&p, 1, (int)((end - now) / 1000000u) + 1) <= 0)
			continue;
		n = read(fd, buf + len, 1);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (n < 0)
			return vi_error_errno(VI_EFAIL, errno, "cannot read from the peer");
		if (n == 0)
			return vi_error(VI_EFAIL, "the peer closed the connection");
		if (buf[len] == '\n')
			break;
		len++;
	}
	buf[len] = '\0';
	return 0;
}

/* --- the source: what is dirty ---------------------------------------------------------- */

/* A writable disk file mirrored to the destination: which 64 KiB grains changed since
 * they were last sent, as the image's write hook marks them (on its I/O thread). */
struct disk_mirror {
	size_t index;
	const char *path;
	int fd;               /* read-only, of the file the image writes */
	struct image *img;
	pthread_mutex_t lock;
	uint8_t *dirty;       /* a byte a grain */
	uint64_t grains;
	uint64_t ndirty;
};

struct sender {
	struct vmm *vm;
	int fd;
	const struct vmm_migrate_opts *o;
	struct vmm_migration *m;
	uint64_t start_ns, sent_ns; /* send time so far, for the bandwidth */
	uint64_t **bitmaps;         /* a region's dirty pages, cleared as they are sent */
	uint64_t *fetched;          /* a region's dirty log, as fetched */
	uint8_t *buf;               /* a chunk of guest memory or disk, copied */
	struct disk_mirror *disks;
	size_t ndisks;
	pthread_t throttler;
	atomic_bool throttling;
	pthread_t watchdog;
	atomic_bool done;     /* the stream is written: the watchdog ends */
	int wake;             /* an eventfd that tells it so at once, in the downtime */
	uint64_t unlocked;    /* shared disks handed over in the downtime: bit i, disk i */
	atomic_int gave_up;   /* why the watchdog cancelled the writer: WATCH_* */
};

/* The watchdog: the stream is non-blocking, so that a link that carries nothing
 * any more (cut, or a destination gone silent) or a timeout that ran out cancels
 * the writer instead of leaving it blocked, and the guest runs on here. */
enum { WATCH_NONE, WATCH_TIMEOUT, WATCH_STALL };
#define STALL_S 20

static void *watchdog_run(void *opaque)
{
	struct sender *s = opaque;
	uint64_t last = atomic_load(&s->m->w->offset), moved = now_ns();

	while (!atomic_load(&s->done)) {
		uint64_t now = now_ns(), at = atomic_load(&s->m->w->offset);
		struct pollfd p = { .fd = s->wake, .events = POLLIN };

		if (at != last) {
			last = at;
			moved = now;
		}
		if (s->o->timeout_s && now - s->start_ns >= (uint64_t)s->o->timeout_s * 1000000000u)
			atomic_store(&s->gave_up, WATCH_TIMEOUT);
		else if (now - moved >= (uint64_t)STALL_S * 1000000000u)
			atomic_store(&s->gave_up, WATCH_STALL);
		if (atomic_load(&s->gave_up)) {
			atomic_store(&s->m->w->cancel, true);
			break;
		}
		poll(&p, 1, 100);
	}
	return NULL;
}

/* The error for a writer the watchdog cancelled; ret when it did not. */
static int watchdog_error(struct sender *s, int ret)
{
	switch (atomic_load(&s->gave_up)) {
	case WATCH_TIMEOUT:
		return vi_error(VI_ETIMEOUT, "the migration did not end within %u s",
				s->o->timeout_s);
	case WATCH_STALL:
		return vi_error(VI_EFAIL, "the link to the destination carried nothing for %d s",
				STALL_S);
	default:
		return ret;
	}
}

static void disk_written(void *opaque, uint64_t offset, uint64_t len)
{
	struct disk_mirror *d = opaque;
	uint64_t first = offset / DISK_GRAIN, last = (offset + len - 1) / DISK_GRAIN;

	pthread_mutex_lock(&d->lock);
	if (last >= d->grains) {
		d->dirty = xrealloc(d->dirty, last + 1);
		memset(d->dirty + d->grains, 0, last + 1 - d->grains);
		d->grains = last + 1;
	}
	for (uint64_t g = first; g <= last; g++) {
		d->ndirty += !d->dirty[g];
		d->dirty[g] = 1;
	}
	pthread_mutex_unlock(&d->lock);
}

/* Every writable disk not shared: its file's writes are watched from now on, and all
 * of its data is dirty. */
static int disks_watch(struct sender *s)
{
	struct vmm *vm = s->vm;

	s->disks = xcalloc(vm->cfg.ndisks + 1, sizeof(*s->disks));
	for (size_t i = 0; i < vm->cfg.ndisks; i++) {
		struct disk_mirror *d = &s->disks[s->ndisks];
		struct image *img = virtio_blk_image(vm, i);
		struct stat st;

		if (vm->cfg.disks[i].readonly || (i < 64 && (s->o->shared_disks >> i) & 1) || !img)
			continue;
		*d = (struct disk_mirror){ .index = i, .path = vm->cfg.disks[i].path, .img = img };
		pthread_mutex_init(&d->lock, NULL);
		s->ndisks++;
		d->fd = open(d->path, O_RDONLY | O_CLOEXEC);
		if (d->fd < 0 || fstat(d->fd, &st) < 0)
			return vi_error_errno(VI_EFAIL, errno, "cannot read disk %zu '%s'", i,
					      d->path);
		/* Watched before it is read: a write from now on is sent again. */
		image_watch_writes(img, disk_written, d);
		if (st.st_size)
			disk_written(d, 0, (uint64_t)st.st_size);
	}
	return 0;
}

static void disks_unwatch(struct sender *s)
{
	/* The devices are held: no write is in progress. */
	vmm_devices_hold(s->vm, true);
	for (size_t i = 0; i < s->ndisks; i++)
		image_watch_writes(s->disks[i].img, NULL, NULL);
	vmm_devices_hold(s->vm, false);
	for (size_t i = 0; i < s->ndisks; i++) {
		if (s->disks[i].fd >= 0)
			close(s->disks[i].fd);
		free(s->disks[i].dirty);
		pthread_mutex_destroy(&s->disks[i].lock);
	}
	free(s->disks);
}

static uint64_t disks_dirty_bytes(struct sender *s)
{
	uint64_t n = 0;

	for (size_t i = 0; i < s->ndisks; i++) {
		pthread_mutex_lock(&s->disks[i].lock);
		n += s->disks[i].ndirty * DISK_GRAIN;
		pthread_mutex_unlock(&s->disks[i].lock);
	}
	return n;
}

/* Adds the pages dirtied since the last fetch to those still to send; returns the
 * bytes of all of them. */
static int memory_fetch_dirty(struct sender *s, uint64_t *bytes)
{
	*bytes = 0;
	for (size_t i = 0; i < s->vm->nmem; i++) {
		uint64_t words = (s->vm->mem[i].size / PAGE + 63) / 64;
		int ret = vmm_memory_get_dirty(s->vm, i, s->fetched);

		if (ret < 0)
			return ret;
		for (uint64_t w = 0; w < words; w++) {
			s->bitmaps[i][w] |= s->fetched[w];
			*bytes += (uint64_t)__builtin_popcountll(s->bitmaps[i][w]) * PAGE;
		}
	}
	return 0;
}

/* --- the source: sending ----------------------------------------------------------------- */

/* Holds the send rate to the bandwidth asked for, and notes the time sent. */
static void sender_pace(struct sender *s, uint64_t since)
{
	uint64_t sent = atomic_load(&s->m->w->offset), now = now_ns();

	s->sent_ns += now - since;
	if (s->sent_ns)
		atomic_store(&s->m->bandwidth, sent * 1000000000u / s->sent_ns);
	if (s->o->bandwidth) {
		uint64_t due = s->start_ns + sent * 1000000000u / s->o->bandwidth;

		if (due > now)
			usleep((useconds_t)((due - now) / 1000));
	}
}

/* The pages of region i whose bits are set: copied first (the guest may write them
 * meanwhile; its write then shows in the next fetch), page runs of the copy. In the
 * first pass zero pages are left out: the destination's memory starts as zeros. */
static int memory_send(struct sender *s, size_t i, bool first)
{
	const struct vmm_mem_region *r = &s->vm->mem[i];
	uint64_t pages = r->size / PAGE, p = 0;

	while (p < pages) {
		uint64_t start, n = 0, t;
		int ret;

		while (p < pages && !(s->bitmaps[i][p / 64] & (1ull << (p % 64))))
			p++;
		start = p;
		while (p < pages && n < CHUNK_PAGES && (s->bitmaps[i][p / 64] & (1ull << (p % 64)))) {
			s->bitmaps[i][p / 64] &= ~(1ull << (p % 64));
			p++, n++;
		}
		if (!n)
			break;
		t = now_ns();
		memcpy(s->buf, r->hva + start * PAGE, n * PAGE);
		ret = first ? vi_state_write_pages(s->m->w, r->gpa + start * PAGE, s->buf, n)
			    : vi_state_write_run(s->m->w, r->gpa + start * PAGE, s->buf, n);
		if (ret < 0)
			return ret;
		atomic_fetch_sub(&s->m->remaining,
				 atomic_load(&s->m->remaining) < n * PAGE ? atomic_load(&s->m->remaining)
									  : n * PAGE);
		sender_pace(s, t);
	}
	return 0;
}

/* Disk d's dirty grains, read from its file as they are now; holes go as nothing. */
static int disk_send(struct sender *s, struct disk_mirror *d)
{
	for (uint64_t g = 0;; g++) {
		uint64_t off, len = 0, t;
		ssize_t n;
		int ret;

		pthread_mutex_lock(&d->lock);
		while (g < d->grains && !d->dirty[g])
			g++;
		if (g == d->grains) {
			pthread_mutex_unlock(&d->lock);
			return 0;
		}
		off = g * DISK_GRAIN;
		while (g < d->grains && d->dirty[g] && len < DISK_CHUNK) {
			d->dirty[g++] = 0;
			d->ndirty--;
			len += DISK_GRAIN;
		}
		g--;
		pthread_mutex_unlock(&d->lock);
		t = now_ns();
		/* Cleared before it is read: a write from now on marks it again. */
		for (uint64_t at = off; at < off + len;) {
			off_t data = lseek(d->fd, (off_t)at, SEEK_DATA), hole;

			if (data < 0 || (uint64_t)data >= off + len)
				break;
			hole = lseek(d->fd, data, SEEK_HOLE);
			if (hole < 0 || (uint64_t)hole > off + len)
				hole = (off_t)(off + len);
			n = pread(d->fd, s->buf, (size_t)(hole - data), data);
			if (n < 0)
				return vi_error_errno(VI_EFAIL, errno, "cannot read disk %zu '%s'",
						      d->index, d->path);
			if (n == 0)
				break;
			ret = vi_state_write_disk(s->m->w, (uint32_t)d->index, (uint64_t)data,
						  s->buf, (size_t)n);
			if (ret < 0)
				return ret;
			atomic_fetch_add(&s->m->disk_bytes, (uint64_t)n);
			at = (uint64_t)data + (uint64_t)n;
		}
		sender_pace(s, t);
	}
}

/* The file's length last: a raw file may end in a hole. */
static int disk_send_size(struct sender *s, struct disk_mirror *d)
{
	struct stat st;

	if (fstat(d->fd, &st) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot read disk %zu '%s'", d->index,
				      d->path);
	return vi_state_write_disk(s->m->w, (uint32_t)d->index, (uint64_t)st.st_size, NULL, 0);
}

static int disks_send(struct sender *s)
{
	int ret = 0;

	if (s->ndisks)
		atomic_store(&s->m->phase, VMM_MIGRATE_DISKS);
	for (size_t i = 0; ret == 0 && i < s->ndisks; i++)
		ret = disk_send(s, &s->disks[i]);
	return ret;
}

static int memory_send_all(struct sender *s, bool first)
{
	int ret = 0;

	atomic_store(&s->m->phase, VMM_MIGRATE_MEMORY);
	for (size_t i = 0; ret == 0 && i < s->vm->nmem; i++)
		ret = memory_send(s, i, first);
	return ret;
}

/* The first pass: every page the guest was ever given. */
static void memory_mark_all(struct sender *s)
{
	for (size_t i = 0; i < s->vm->nmem; i++) {
		uint64_t pages = s->vm->mem[i].size / PAGE;
		uint8_t *untouched = vmm_memory_untouched(s->vm, i);

		for (uint64_t p = 0; p < pages; p++)
			if (!untouched || !untouched[p])
				s->bitmaps[i][p / 64] |= 1ull << (p % 64);
		free(untouched);
	}
}

/* --- the source: slowing the guest down --------------------------------------------------- */

/* Every 10 ms slice, the vCPUs are kept out of the guest for the throttle's share. */
static void *throttle_thread(void *opaque)
{
	struct sender *s = opaque;

	while (atomic_load(&s->throttling)) {
		uint64_t now = now_ns(), pct = atomic_load(&s->m->throttle);
		struct timespec ts = { 0, (long)THROTTLE_SLICE_NS };

		atomic_store(&s->vm->throttle_until, now + THROTTLE_SLICE_NS * pct / 100);
		vmm_vcpus_kick(s->vm);
		nanosleep(&ts, NULL);
	}
	atomic_store(&s->vm->throttle_until, 0);
	return NULL;
}

static void throttle_more(struct sender *s)
{
	unsigned pct = atomic_load(&s->m->throttle) + THROTTLE_STEP;

	atomic_store(&s->m->throttle, pct > THROTTLE_MAX ? THROTTLE_MAX : pct);
	if (!atomic_exchange(&s->throttling, true) &&
	    pthread_create(&s->throttler, NULL, throttle_thread, s) != 0)
		atomic_store(&s->throttling, false);
}

static void throttle_stop(struct sender *s)
{
	if (atomic_exchange(&s->throttling, false))
		pthread_join(s->throttler, NULL);
	atomic_store(&s->m->throttle, 0);
}

/* --- the source ---------------------------------------------------------------------------- */

/* Iterates while the guest runs until what is left fits the downtime. */
static int migrate_iterate(struct sender *s)
{
	uint64_t downtime = s->o->downtime_ms ? s->o->downtime_ms : DEFAULT_DOWNTIME;
	uint64_t last_fetch = now_ns(), best = UINT64_MAX;
	unsigned stalls = 0;
	int ret;

	atomic_store(&s->m->iteration, 1);
	memory_mark_all(s);
	ret = memory_send_all(s, true);
	if (ret == 0)
		ret = disks_send(s);
	while (ret == 0) {
		uint64_t dirty, now, bw, left;

		ret = memory_fetch_dirty(s, &dirty);
		if (ret < 0)
			break;
		now = now_ns();
		atomic_store(&s->m->dirty_rate,
			     dirty * 1000000000u / (now - last_fetch ? now - last_fetch : 1));
		last_fetch = now;
		left = dirty + disks_dirty_bytes(s);
		atomic_store(&s->m->remaining, left);
		bw = atomic_load(&s->m->bandwidth);
		if (s->o->bandwidth && (!bw || bw > s->o->bandwidth))
			bw = s->o->bandwidth;
		/* What is left goes in the downtime when it fits. */
		if (!bw || left * 1000 / bw <= downtime)
			break;
		if (s->o->timeout_s && now - s->start_ns >= (uint64_t)s->o->timeout_s * 1000000000u)
			return vi_error(VI_ETIMEOUT, "the migration did not end within %u s",
					s->o->timeout_s);
		/* Not shrinking, or too many passes: the guest outruns the link. */
		stalls = left < best * 9 / 10 ? 0 : stalls + 1;
		if (left < best)
			best = left;
		if (stalls >= 3 || atomic_load(&s->m->iteration) >= MAX_ITERATIONS) {
			if (s->o->converge == VMM_CONVERGE_ABORT)
				return vi_error(VI_ETIMEOUT, "the guest dirties memory faster than "
							     "the link can carry it");
			if (s->o->converge == VMM_CONVERGE_PAUSE ||
			    atomic_load(&s->m->throttle) >= THROTTLE_MAX)
				break;
			throttle_more(s);
			stalls = 0;
			best = UINT64_MAX;
		}
		atomic_fetch_add(&s->m->iteration, 1);
		ret = memory_send_all(s, false);
		if (ret == 0)
			ret = disks_send(s);
	}
	return ret;
}

/* With the guest paused and the devices held: the rest, then vCPUs and devices. */
static int migrate_downtime(struct sender *s)
{
	uint64_t dirty;
	int ret = 0;

	atomic_store(&s->m->phase, VMM_MIGRATE_DOWNTIME);
	atomic_fetch_add(&s->m->iteration, 1);
	for (size_t i = 0; ret == 0 && i < s->ndisks; i++)
		if (image_flush(s->disks[i].img) < 0)
			ret = vi_error_wrap("disk %zu", s->disks[i].index);
	/* A disk on shared storage is the destination's to open from here on. */
	for (size_t i = 0; ret == 0 && i < s->vm->cfg.ndisks && i < 64; i++) {
		struct image *img = virtio_blk_image(s->vm, i);

		if (!s->vm->cfg.disks[i].readonly && img && (s->o->shared_disks >> i) & 1) {
			ret = image_unlock(img);
			if (ret == 0)
				s->unlocked |= 1ull << i;
		}
	}
	if (ret == 0)
		ret = memory_fetch_dirty(s, &dirty);
	if (ret == 0) {
		atomic_store(&s->m->remaining, dirty + disks_dirty_bytes(s));
		ret = memory_send_all(s, false);
	}
	atomic_store(&s->m->phase, VMM_MIGRATE_DOWNTIME);
	for (size_t i = 0; ret == 0 && i < s->ndisks; i++) {
		ret = disk_send(s, &s->disks[i]);
		if (ret == 0)
			ret = disk_send_size(s, &s->disks[i]);
	}
	if (ret == 0)
		ret = vmm_save_machine(s->vm, s->m->w);
	return ret;
}

/* "ready" from the destination, or why not. */
static int migrate_wait_ready(int fd)
{
	char line[1024];
	int ret = line_recv(fd, line, sizeof(line), READY_TIMEOUT_MS);

	if (ret < 0)
		return vi_error_wrap("the destination did not load the VM");
	if (!strcmp(line, "ready"))
		return 0;
	if (!strncmp(line, "error ", 6))
		return vi_error(VI_EFAIL, "the destination refused the VM: %s", line + 6);
	return vi_error(VI_EFAIL, "the destination answered '%s' instead of 'ready'", line);
}

/* The stream broke: a destination that refused it said why before it closed. */
static void peer_reason(int fd)
{
	char *ours = xstrdup(vi_error_message()), line[1024];
	int code = vi_error_code();

	if (line_recv(fd, line, sizeof(line), 1000) == 0 && !strncmp(line, "error ", 6))
		vi_error(VI_EFAIL, "the destination refused the VM: %s", line + 6);
	else
		vi_error(code, "%s", ours);
	free(ours);
}

int vmm_migrate_send(struct vmm *vm, int fd, const struct vmm_migrate_opts *o,
		     struct vmm_migration *m)
{
	struct vi_state_header h = { .memory = vm->cfg.memory, .max_memory = vm->cfg.max_memory,
				     .cpus = vm->nvcpus, .max_cpus = vm->cfg.max_cpus };
	struct sender s = { .vm = vm, .fd = fd, .o = o, .m = m, .start_ns = now_ns() };
	bool was_paused = vmm_paused(vm), held = false, committed = false;
	uint64_t paused_at = 0, biggest = 1;
	char line[256];
	int ret;

	snprintf(h.uuid, sizeof(h.uuid), "%s", vm->cfg.uuid ? vm->cfg.uuid : "");
	s.buf = xmalloc(CHUNK_PAGES * PAGE > DISK_CHUNK ? CHUNK_PAGES * PAGE : DISK_CHUNK);
	s.bitmaps = xcalloc(vm->nmem + 1, sizeof(*s.bitmaps));
	for (size_t i = 0; i < vm->nmem; i++) {
		uint64_t words = (vm->mem[i].size / PAGE + 63) / 64 + 1;

		s.bitmaps[i] = xcalloc(words, 8);
		if (words > biggest)
			biggest = words;
	}
	s.fetched = xcalloc(biggest, 8);
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	s.wake = eventfd(0, EFD_CLOEXEC);
	bool watching = s.wake >= 0 && pthread_create(&s.watchdog, NULL, watchdog_run, &s) == 0;
	ret = vi_state_writer_init(m->w, fd, &h);
	if (ret == 0)
		ret = vmm_memory_set_dirty_log(vm, true);
	if (ret == 0)
		ret = disks_watch(&s);
	if (ret == 0)
		ret = migrate_iterate(&s);
	throttle_stop(&s);
	if (ret == 0) {
		paused_at = now_ns();
		ret = vmm_pause(vm);
	}
	if (ret == 0) {
		vmm_devices_hold(vm, true);
		held = true;
		ret = migrate_downtime(&s);
	}
	/* The stream is written: what follows waits with timeouts of its own. */
	atomic_store(&s.done, true);
	if (watching) {
		/* Else it wakes on its own within 100 ms. */
		uint64_t one = 1;
		ssize_t woken = write(s.wake, &one, sizeof(one));
		(void)woken;
		pthread_join(s.watchdog, NULL);
	}
	if (s.wake >= 0)
		close(s.wake);
	if (ret < 0)
		ret = watchdog_error(&s, ret);
	if (ret == 0) {
		atomic_store(&m->phase, VMM_MIGRATE_COMMIT);
		ret = migrate_wait_ready(fd);
	} else if (!atomic_load(&m->w->cancel)) {
		peer_reason(fd);
	}
	if (ret == 0)
		ret = line_send(fd, "commit");
	if (ret == 0) {
		/* From here on the guest may run there: never again here unless told. */
		committed = true;
		ret = line_recv(fd, line, sizeof(line), RUNNING_TIMEOUT_MS);
		if (ret == 0 && strcmp(line, "running"))
			ret = vi_error(VI_EFAIL, "the destination answered '%s'", line);
		if (ret < 0) {
			char *why = xstrdup(vi_error_message());

			m->unconfirmed = true;
			ret = vi_error(-ret, "the migration is unconfirmed: %s; the guest may run "
					     "on the destination, so the VM stays paused here",
				       why);
			free(why);
		}
	}
	m->total_ms = (double)(now_ns() - s.start_ns) / 1e6;
	if (paused_at && ret == 0)
		m->downtime_ms = (double)(now_ns() - paused_at) / 1e6;
	if (held)
		vmm_devices_hold(vm, false);
	vmm_memory_set_dirty_log(vm, false);
	if (s.disks)
		disks_unwatch(&s);
	if (ret < 0 && !committed) {
		int kept = 0;

		/* The shared disks come back before the guest runs here again. */
		for (size_t i = 0; i < vm->cfg.ndisks && i < 64; i++)
			if ((s.unlocked >> i) & 1 && image_relock(virtio_blk_image(vm, i)) < 0)
				kept = -1;
		if (kept < 0) {
			char *why = xstrdup(vi_error_message());

			ret = vi_error(VI_ESTATE, "%s; a shared disk is in use elsewhere now, so the "
					   "VM stays paused here", why);
			free(why);
		} else if (!was_paused) {
			vmm_resume(vm);
		}
	}
	for (size_t i = 0; i < vm->nmem; i++)
		free(s.bitmaps[i]);
	free(s.bitmaps);
	free(s.fetched);
	free(s.buf);
	return ret;
}

/* --- the destination ----------------------------------------------------------------------- */

struct receiver {
	struct vmm *vm;
	uint64_t shared;
	const char *const *backing;
	int *fds;     /* a disk's file being written, -1 before its first data */
	bool *made;   /* files this migration made, removed on failure */
	uint64_t synced_ns; /* when the disks were last made durable */
};
#define SYNC_EVERY_NS 20000000u

static bool disk_sent(const struct vmm *vm, uint64_t shared, size_t i)
{
	return !vm->cfg.disks[i].readonly && !(i < 64 && (shared >> i) & 1);
}

static int recv_disk_data(void *opaque, const struct vi_state_section *sec)
{
	struct receiver *r = opaque;
	size_t i = sec->instance;
	const char *path;

	if (i >= r->vm->cfg.ndisks || !disk_sent(r->vm, r->shared, i))
		return vi_error(VI_EUSAGE, "the stream has data for disk %zu, which is not sent", i);
	path = r->vm->cfg.disks[i].path;
	if (r->fds[i] < 0) {
		r->fds[i] = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
		if (r->fds[i] < 0)
			return vi_error_errno(errno == EEXIST ? VI_ESTATE : VI_EFAIL, errno,
					      "cannot make disk %zu '%s'", i, path);
		r->made[i] = true;
	}
	if (!sec->bytes && ftruncate(r->fds[i], (off_t)sec->file_offset) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot size disk %zu '%s'", i, path);
	for (uint64_t done = 0; done < sec->bytes;) {
		ssize_t n = pwrite(r->fds[i], sec->payload + done, sec->bytes - done,
				   (off_t)(sec->file_offset + done));

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return vi_error_errno(VI_EFAIL, n < 0 ? errno : EIO,
					      "cannot write disk %zu '%s'", i, path);
		done += (uint64_t)n;
	}
	/* Made durable as it comes, while the guest still runs there: the sync at
	 * the end, in the downtime, finds little left to do. */
	if (now_ns() - r->synced_ns > SYNC_EVERY_NS) {
		if (fdatasync(r->fds[i]) < 0)
			return vi_error_errno(VI_EFAIL, errno, "cannot write disk %zu '%s'", i, path);
		r->synced_ns = now_ns();
	}
	return 0;
}

/* The whole stream is in: the disk files are complete, named onto their backing files
 * here, and opened. */
static int recv_before_apply(void *opaque)
{
	struct receiver *r = opaque;
	struct vmm *vm = r->vm;

	for (size_t i = 0; i < vm->cfg.ndisks; i++) {
		const char *path = vm->cfg.disks[i].path;
		int fd = r->fds[i];

		if (!disk_sent(vm, r->shared, i))
			continue;
		r->fds[i] = -1;
		if (fd < 0)
			return vi_error(VI_EUSAGE, "the stream has no data for disk %zu", i);
		if (fdatasync(fd) < 0 || close(fd) < 0)
			return vi_error_errno(VI_EFAIL, errno, "cannot write disk %zu '%s'", i, path);
		if (r->backing && r->backing[i] &&
		    image_set_backing(path, r->backing[i], IMAGE_PROBE) < 0)
			return vi_error_wrap("disk %zu", i);
	}
	return vmm_open_disks(vm);
}

void vmm_migrate_discard(struct vmm *vm, uint64_t shared_disks)
{
	for (size_t i = 0; i < vm->cfg.ndisks; i++)
		if (disk_sent(vm, shared_disks, i))
			unlink(vm->cfg.disks[i].path);
}

/* Removes the disk files the migration made and frees the list. */
static void remove_made(struct vmm *vm, bool *made)
{
	for (size_t i = 0; made && i < vm->cfg.ndisks; i++)
		if (made[i])
			unlink(vm->cfg.disks[i].path);
	free(made);
}

int vmm_migrate_recv(struct vmm *vm, int fd, uint64_t shared_disks, const char *const *backing)
{
	struct receiver r = { .vm = vm, .shared = shared_disks, .backing = backing };
	struct vmm_stream_hooks hooks = { recv_disk_data, recv_before_apply, &r };
	struct timeval tv = { STREAM_TIMEOUT_S, 0 };
	int ret;

	r.fds = xcalloc(vm->cfg.ndisks + 1, sizeof(*r.fds));
	r.made = xcalloc(vm->cfg.ndisks + 1, sizeof(*r.made));
	for (size_t i = 0; i < vm->cfg.ndisks; i++)
		r.fds[i] = -1;
	/* A source that vanishes without closing the connection must not hang us. */
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	ret = vmm_restore_stream(vm, fd, &hooks);
	if (ret < 0) {
		char *why = xasprintf("error %s", vi_error_message());

		/* Told if the link still carries it; our own error stays. */
		for (char *p = why; *p; p++)
			if (*p == '\n')
				*p = ' ';
		if (vi_write_all(fd, why, strlen(why)) == 0)
			(void)vi_write_all(fd, "\n", 1);
		free(why);
	}
	if (ret == 0)
		ret = line_send(fd, "ready");
	for (size_t i = 0; i < vm->cfg.ndisks; i++)
		if (r.fds[i] >= 0)
			close(r.fds[i]);
	free(r.fds);
	if (ret < 0)
		remove_made(vm, r.made);
	else
		vm->incoming_made = r.made;
	return ret;
}

int vmm_migrate_commit(struct vmm *vm, int fd)
{
	char line[256];
	int ret = line_recv(fd, line, sizeof(line), READY_TIMEOUT_MS);

	if (ret == 0 && strcmp(line, "commit"))
		ret = vi_error(VI_EFAIL, "the source said '%s' instead of 'commit'", line);
	if (ret < 0) {
		remove_made(vm, vm->incoming_made);
		vm->incoming_made = NULL;
		return vi_error_wrap("the source never said commit");
	}
	free(vm->incoming_made);
	vm->incoming_made = NULL;
	return 0;
}

int vmm_migrate_running(int fd)
{
	return line_send(fd, "running");
}

int vmm_dirty_rate(struct vmm *vm, unsigned ms, uint64_t *bytes_per_s)
{
	uint64_t pages = 0, *bitmap = NULL, start;
	int ret = vmm_memory_set_dirty_log(vm, true);

	start = now_ns();
	if (ret == 0)
		usleep(ms * 1000u);
	for (size_t i = 0; ret == 0 && i < vm->nmem; i++) {
		uint64_t words = (vm->mem[i].size / PAGE + 63) / 64;

		bitmap = xrealloc(bitmap, (words + 1) * 8);
		memset(bitmap, 0, (words + 1) * 8);
		ret = vmm_memory_get_dirty(vm, i, bitmap);
		for (uint64_t w = 0; ret == 0 && w < words; w++)
			pages += (uint64_t)__builtin_popcountll(bitmap[w]);
	}
	if (ret == 0)
		*bytes_per_s = pages * PAGE * 1000000000u / (now_ns() - start);
	vmm_memory_set_dirty_log(vm, false);
	free(bitmap);
	return ret;
}
