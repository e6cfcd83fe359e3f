/* The control socket, both ends: the server runs in the VMM's event loop, with long
 * jobs on a worker thread; the client is what `vi stop`, `vi console` and friends use
 * through the plugin. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "state.h"
#include "util.h"
#include "vmm/control.h"
#include "vmm/internal.h"

#define CONTROL_MAX_CLIENTS 32

struct control_client {
	int fd;
	bool console; /* raw console bytes from here on */
	bool waiting; /* for its job's end: its next requests wait too */
	int passed_fd; /* a descriptor that came with its bytes (SCM_RIGHTS), or -1 */
	uint8_t *buf;
	size_t len;
};

/* A long job: it runs on its own thread while the event loop answers everyone else,
 * and its client gets the reply when it ends. One at a time. */
struct control_job {
	const char *name;
	char *path;
	bool live;
	int fd;
	bool regular;           /* fd is a file: synced, and removed if the job fails */
	bool nosync;            /* the client syncs the file itself */
	struct vi_state_writer w;
	pthread_t thread;
	int client_fd;          /* who waits for the reply; -1 once it has gone */
	int ret;                /* the outcome, and its message, set by the thread */
	char *error;
	bool migrate;           /* a migration: fd is the stream */
	struct vmm_migrate_opts mopts;
	struct vmm_migration mig;
};

struct vmm_control {
	struct vmm *vm;
	int listen_fd;
	char *path;
	char *backend;
	int64_t started_at;
	struct control_client clients[CONTROL_MAX_CLIENTS];
	size_t nclients;
	int job_done_fd;        /* the job's thread signals its end here */
	bool job_running;
	struct control_job job;
};

/* What a command handler returns when its reply comes later, at the end of its job. */
#define CONTROL_DEFERRED 1

/* sun_path holds 108 bytes; longer paths go through the directory's /proc/self/fd link. */
static int control_address(const char *path, struct sockaddr_un *addr, int *dir_fd)
{
	const char *slash = strrchr(path, '/');
	char *dir;

	memset(addr, 0, sizeof(*addr));
	addr->sun_family = AF_UNIX;
	*dir_fd = -1;
	if (strlen(path) < sizeof(addr->sun_path)) {
		snprintf(addr->sun_path, sizeof(addr->sun_path), "%s", path);
		return 0;
	}
	if (!slash || strlen(slash) > 64)
		return vi_error(VI_EUSAGE, "socket path '%s' is too long", path);
	dir = xasprintf("%.*s", (int)(slash - path), path);
	*dir_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
	free(dir);
	if (*dir_fd < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot open the directory of '%s'", path);
	snprintf(addr->sun_path, sizeof(addr->sun_path), "/proc/self/fd/%d%s", *dir_fd, slash);
	return 0;
}

static int write_all(int fd, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n = send(fd, p, len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return vi_error_errno(VI_EFAIL, errno,
					      "cannot write to the control socket");
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int vmm_control_send(int fd, struct json_object *msg)
{
	const char *text = json_object_to_json_string_ext(msg, JSON_C_TO_STRING_PLAIN);
	uint32_t len = (uint32_t)strlen(text), be = htonl(len);
	int ret = write_all(fd, &be, sizeof(be));

	return ret < 0 ? ret : write_all(fd, text, len);
}

/* EOF is -VI_ESTATE: the VMM is gone. */
static int read_all(int fd, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = read(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return vi_error_errno(VI_EFAIL, errno,
					      "cannot read from the control socket");
		if (n == 0)
			return vi_error(VI_ESTATE, "the VMM closed the control socket");
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int control_parse(const char *text, size_t len, struct json_object **msg)
{
	struct json_tokener *tok = json_tokener_new();
	struct json_object *o = json_tokener_parse_ex(tok, text, (int)len);
	bool complete = json_tokener_get_error(tok) == json_tokener_success;

	json_tokener_free(tok);
	if (!o || !complete || !json_object_is_type(o, json_type_object)) {
		json_object_put(o);
		return vi_error(VI_EFAIL, "malformed control message");
	}
	*msg = o;
	return 0;
}

int vmm_control_recv(int fd, struct json_object **msg)
{
	uint32_t be;
	char *text;
	int ret = read_all(fd, &be, sizeof(be));

	if (ret < 0)
		return ret;
	if (ntohl(be) > VMM_CONTROL_MAX_MESSAGE)
		return vi_error(VI_EFAIL, "control message of %u bytes is too long", ntohl(be));
	text = xmalloc(ntohl(be) + 1);
	ret = read_all(fd, text, ntohl(be));
	if (ret == 0)
		ret = control_parse(text, ntohl(be), msg);
	free(text);
	return ret == -VI_ESTATE ? vi_error(VI_EFAIL, "the VMM closed the control socket mid-reply")
				 : ret;
}

/* --- server ------------------------------------------------------------------------ */

static void control_drop(struct vmm_control *ctl, size_t i)
{
	struct control_client *c = &ctl->clients[i];

	if (c->console)
		vmm_console_detach(ctl->vm, c->fd);
	if (ctl->job_running && ctl->job.client_fd == c->fd)
		ctl->job.client_fd = -1;
	vmm_unwatch_fd(ctl->vm, c->fd);
	close(c->fd);
	if (c->passed_fd >= 0)
		close(c->passed_fd);
	free(c->buf);
	ctl->clients[i] = ctl->clients[--ctl->nclients];
}

static void add_u64(struct json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_int64((int64_t)v));
}

static void control_add_stats(struct vmm *vm, struct json_object *o)
{
	struct vmm_stats st;

	vmm_get_stats(vm, &st);
	json_object_object_add(o, "vcpus", json_object_new_int64(st.vcpus));
	json_object_object_add(o, "exits", json_object_new_int64((int64_t)st.exits));
	json_object_object_add(o, "cpu_time_ns", json_object_new_int64((int64_t)st.cpu_time_ns));
	json_object_object_add(o, "memory", json_object_new_int64((int64_t)st.memory));
	add_u64(o, "disk_rd_bytes", st.disk_rd_bytes);
	add_u64(o, "disk_wr_bytes", st.disk_wr_bytes);
	add_u64(o, "disk_rd_ops", st.disk_rd_ops);
	add_u64(o, "disk_wr_ops", st.disk_wr_ops);
	add_u64(o, "net_rx_bytes", st.net_rx_bytes);
	add_u64(o, "net_tx_bytes", st.net_tx_bytes);
	/* What the guest drives of live growth: 0 no such device, 1 no driver, 2 driven. */
	json_object_object_add(o, "cpu_hotplug_driver", json_object_new_int(vmm_cpu_hotplug_driver(vm)));
	json_object_object_add(o, "memory_driver",
			       json_object_new_int(vmm_virtio_driver(vm, "virtio-mem")));
	json_object_object_add(o, "balloon_driver",
			       json_object_new_int(vmm_virtio_driver(vm, "virtio-balloon")));
}

static void control_add_state(struct vmm_control *ctl, struct json_object *o)
{
	json_object_object_add(o, "state",
			       json_object_new_string(vmm_paused(ctl->vm) ? "paused" : "running"));
}

/* A migration's progress, or its outcome. */
static void control_add_migration(struct vmm_migration *m, struct json_object *o)
{
	add_u64(o, "iteration", atomic_load(&m->iteration));
	add_u64(o, "sent", atomic_load(&m->w->offset));
	add_u64(o, "remaining", atomic_load(&m->remaining));
	add_u64(o, "dirty_rate", atomic_load(&m->dirty_rate));
	add_u64(o, "bandwidth", atomic_load(&m->bandwidth));
	add_u64(o, "disk_bytes", atomic_load(&m->disk_bytes));
	add_u64(o, "throttle", atomic_load(&m->throttle));
	json_object_object_add(o, "phase",
			       json_object_new_string(vmm_migrate_phase_name(atomic_load(&m->phase))));
	json_object_object_add(o, "total_ms", json_object_new_double(m->total_ms));
	json_object_object_add(o, "downtime_ms", json_object_new_double(m->downtime_ms));
	json_object_object_add(o, "unconfirmed", json_object_new_boolean(m->unconfirmed));
}

/* The running job, for status: the guest memory looked at so far of all there is, and the
 * bytes written. */
static void control_add_job(struct vmm_control *ctl, struct json_object *o)
{
	struct json_object *job = json_object_new_object();
	struct vmm_stats st;

	vmm_get_stats(ctl->vm, &st);
	json_object_object_add(job, "name", json_object_new_string(ctl->job.name));
	json_object_object_add(job, "path", json_object_new_string(ctl->job.path));
	json_object_object_add(
		job, "done",
		json_object_new_int64((int64_t)(atomic_load(&ctl->job.w.pages_done) *
						VI_STATE_PAGE)));
	json_object_object_add(job, "total", json_object_new_int64((int64_t)st.memory));
	json_object_object_add(job, "written",
			       json_object_new_int64((int64_t)atomic_load(&ctl->job.w.offset)));
	if (ctl->job.migrate)
		control_add_migration(&ctl->job.mig, job);
	json_object_object_add(o, "job", job);
}

/* A member that is a count or a port: 0 when missing or negative. */
static uint64_t control_uint(struct json_object *o, const char *key)
{
	struct json_object *v;
	int64_t n = json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;

	return n > 0 ? (uint64_t)n : 0;
}

static int control_status(struct vmm_control *ctl, struct control_client *c,
			  struct json_object *req, struct json_object *reply)
{
	(void)c;
	(void)req;
	control_add_state(ctl, reply);
	json_object_object_add(reply, "pid", json_object_new_int(getpid()));
	json_object_object_add(reply, "started_at", json_object_new_int64(ctl->started_at));
	json_object_object_add(reply, "backend", json_object_new_string(ctl->backend));
	control_add_stats(ctl->vm, reply);
	if (ctl->job_running)
		control_add_job(ctl, reply);
	return 0;
}

static int control_stats(struct vmm_control *ctl, struct control_client *c,
			 struct json_object *req, struct json_object *reply)
{
	(void)c;
	(void)req;
	control_add_stats(ctl->vm, reply);
	return 0;
}

static int control_pause(struct vmm_control *ctl, struct control_client *c,
			 struct json_object *req, struct json_object *reply)
{
	(void)c;
	(void)req;
	vmm_pause(ctl->vm);
	control_add_state(ctl, reply);
	return 0;
}

static int control_resume(struct vmm_control *ctl, struct control_client *c,
			  struct json_object *req, struct json_object *reply)
{
	(void)c;
	(void)req;
	vmm_resume(ctl->vm);
	control_add_state(ctl, reply);
	return 0;
}

static int control_stop(struct vmm_control *ctl, struct control_client *c,
			struct json_object *req, struct json_object *reply)
{
	struct json_object *v;

	(void)c;
	(void)reply;
	if (json_object_object_get_ex(req, "force", &v) && json_object_get_boolean(v))
		vmm_request_exit(ctl->vm, VMM_EXIT_STOPPED);
	else
		vmm_request_shutdown(ctl->vm);
	return 0;
}

static int control_console(struct vmm_control *ctl, struct control_client *c,
			   struct json_object *req, struct json_object *reply)
{
	(void)ctl;
	(void)req;
	(void)reply;
	c->console = true;
	return 0;
}

/* {"overlays":[path or null, ...]}: one entry per disk. */
static int control_switch_disks(struct vmm_control *ctl, struct control_client *c,
				struct json_object *req, struct json_object *reply)
{
	struct json_object *list;
	const char **overlays;
	size_t n;
	int ret = 0;

	(void)c;
	(void)reply;
	if (!json_object_object_get_ex(req, "overlays", &list) ||
	    !json_object_is_type(list, json_type_array))
		return vi_error(VI_EUSAGE, "'switch_disks' needs an array of overlays");
	n = json_object_array_length(list);
	overlays = xcalloc(n + 1, sizeof(*overlays));
	for (size_t i = 0; i < n && ret == 0; i++) {
		struct json_object *v = json_object_array_get_idx(list, i);

		if (v && !json_object_is_type(v, json_type_string))
			ret = vi_error(VI_EUSAGE, "overlay %zu is neither a path nor null", i);
		else if (v)
			overlays[i] = json_object_get_string(v);
	}
	if (ret == 0)
		ret = vmm_switch_disks(ctl->vm, overlays, n);
	free(overlays);
	return ret;
}

/* {"nic":N,"udp":B,"host_addr":A,"host_port":P,"guest_port":G}: a forward of a
 * user-mode NIC, added or removed on its I/O thread. */
static int control_forward(struct vmm_control *ctl, struct json_object *req, bool add)
{
	struct json_object *v;
	struct vmm_forward f = { 0 };

	f.udp = json_object_object_get_ex(req, "udp", &v) && json_object_get_boolean(v);
	if (json_object_object_get_ex(req, "host_addr", &v) &&
	    json_object_is_type(v, json_type_string))
		f.host_addr = json_object_get_string(v);
	f.host_port = (unsigned)control_uint(req, "host_port");
	f.guest_port = (unsigned)control_uint(req, "guest_port");
	return vmm_nic_forward(ctl->vm, control_uint(req, "nic"), &f, add);
}

static int control_forward_add(struct vmm_control *ctl, struct control_client *c,
			       struct json_object *req, struct json_object *reply)
{
	(void)c;
	(void)reply;
	return control_forward(ctl, req, true);
}

static int control_forward_remove(struct vmm_control *ctl, struct control_client *c,
				  struct json_object *req, struct json_object *reply)
{
	(void)c;
	(void)reply;
	return control_forward(ctl, req, false);
}

/* {"nic":N} -> {"address":"10.0.2.15"} */
static int control_nic_address(struct vmm_control *ctl, struct control_client *c,
			       struct json_object *req, struct json_object *reply)
{
	char addr[64];
	int ret = vmm_nic_address(ctl->vm, control_uint(req, "nic"), addr, sizeof(addr));

	(void)c;
	if (ret == 0)
		json_object_object_add(reply, "address", json_object_new_string(addr));
	return ret;
}

/* {"path":P,"shape":S,"disks":[{"path","format","readonly"}...],"console":C,"paused":B,
 * "unchecked":B}:
 * the guest becomes the one the state file P saved, with its disks, in this process. S
 * is the shape (vmm_config_shape()) of the definition the state belongs to: another
 * shape is refused with VI_EUNSUPPORTED before anything changes, for the client to
 * start a VMM of that shape instead. A failure once the guest has been touched stops
 * the VM. */
static int control_restore(struct vmm_control *ctl, struct control_client *c,
			   struct json_object *req, struct json_object *reply)
{
	struct vmm *vm = ctl->vm;
	struct json_object *v, *list;
	const char *path, *console = NULL;
	char *shape = vmm_config_shape(&vm->cfg);
	struct vmm_disk *disks = NULL;
	size_t n = 0;
	bool was_paused = vmm_paused(vm), paused, changed = false;
	unsigned flags = 0;
	int fd = -1, ret = 0;

	(void)c;
	if (!json_object_object_get_ex(req, "path", &v) || !json_object_is_type(v, json_type_string)) {
		ret = vi_error(VI_EUSAGE, "'restore' needs the path of the state");
		goto out;
	}
	path = json_object_get_string(v);
	if (!json_object_object_get_ex(req, "shape", &v) ||
	    strcmp(json_object_get_string(v), shape)) {
		ret = vi_error(VI_EUNSUPPORTED, "the state is of a machine unlike the running one");
		goto out;
	}
	if (json_object_object_get_ex(req, "console", &v) && json_object_is_type(v, json_type_string))
		console = json_object_get_string(v);
	paused = json_object_object_get_ex(req, "paused", &v) && json_object_get_boolean(v);
	if (json_object_object_get_ex(req, "unchecked", &v) && json_object_get_boolean(v))
		flags |= VMM_RESTORE_UNCHECKED_PAGES;
	if (json_object_object_get_ex(req, "disks", &list) &&
	    json_object_is_type(list, json_type_array))
		n = json_object_array_length(list);
	disks = xcalloc(n + 1, sizeof(*disks));
	for (size_t i = 0; i < n; i++) {
		struct json_object *d = json_object_array_get_idx(list, i);

		if (json_object_object_get_ex(d, "path", &v))
			disks[i].path = json_object_get_string(v);
		disks[i].format = (int)control_uint(d, "format");
		disks[i].readonly = json_object_object_get_ex(d, "readonly", &v) &&
				    json_object_get_boolean(v);
		if (!disks[i].path) {
			ret = vi_error(VI_EUSAGE, "disk %zu has no path", i);
			goto out;
		}
	}
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		ret = vi_error_errno(errno == ENOENT ? VI_ENOTFOUND : VI_EFAIL, errno,
				     "cannot open the state '%s'", path);
		goto out;
	}
	vmm_pause(vm);
	ret = vmm_replace(vm, fd, flags, disks, n, &changed);
	if (ret == 0 && console)
		ret = vmm_console_restart_log(vm, console);
	if (ret < 0 && changed)
		vmm_fail(vm, "cannot restore '%s': %s", path, vi_error_message());
	else if (!(ret == 0 ? paused : was_paused))
		vmm_resume(vm);
	if (ret == 0)
		control_add_state(ctl, reply);
out:
	if (fd >= 0)
		close(fd);
	free(disks);
	free(shape);
	return ret;
}

/* --- the save job ----------------------------------------------------------------------- */

/* On the job's thread: pause, write, sync; then the VM goes on if the save was live or
 * failed (unless it was paused before), and the event loop hears of the end. */
static void *control_save_thread(void *opaque)
{
	struct vmm_control *ctl = opaque;
	struct control_job *job = &ctl->job;
	bool was_paused = vmm_paused(ctl->vm);
	int ret = vmm_pause(ctl->vm);

	if (ret == 0)
		ret = vmm_save(ctl->vm, job->fd, &job->w);
	if (ret == 0 && job->regular && !job->nosync && fsync(job->fd) < 0)
		ret = vi_error_errno(VI_EFAIL, errno, "cannot sync '%s'", job->path);
	if (close(job->fd) < 0 && ret == 0)
		ret = vi_error_errno(VI_EFAIL, errno, "cannot write '%s'", job->path);
	if (ret < 0) {
		job->error = xasprintf("cannot save to '%s': %s", job->path, vi_error_message());
		if (job->regular)
			unlink(job->path);
	}
	if ((ret < 0 || job->live) && !was_paused)
		vmm_resume(ctl->vm);
	job->ret = ret;
	if (eventfd_write(ctl->job_done_fd, 1) < 0)
		abort(); /* a full eventfd counter: cannot happen with +1 steps */
	return NULL;
}

/* {"path":P,"live":B,"sync":B}: the whole state into a new file at P, synced unless
 * "sync" is false. */
static int control_save(struct vmm_control *ctl, struct control_client *c,
			struct json_object *req, struct json_object *reply)
{
	struct control_job *job = &ctl->job;
	struct json_object *v;
	struct stat st;
	const char *path;
	int err;

	(void)reply;
	if (!json_object_object_get_ex(req, "path", &v) || !json_object_is_type(v, json_type_string))
		return vi_error(VI_EUSAGE, "'save' needs the path of the file to write");
	path = json_object_get_string(v);
	*job = (struct control_job){ .name = "save", .client_fd = c->fd };
	job->live = json_object_object_get_ex(req, "live", &v) && json_object_get_boolean(v);
	job->nosync = json_object_object_get_ex(req, "sync", &v) && !json_object_get_boolean(v);
	/* Non-blocking: a pipe whose reader stalls must not keep the job from seeing that
	 * it was cancelled. */
	job->fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NONBLOCK | O_CLOEXEC, 0600);
	if (job->fd < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot create '%s'", path);
	job->regular = fstat(job->fd, &st) == 0 && S_ISREG(st.st_mode);
	job->path = xstrdup(path);
	err = pthread_create(&job->thread, NULL, control_save_thread, ctl);
	if (err) {
		close(job->fd);
		if (job->regular)
			unlink(path);
		free(job->path);
		return vi_error_errno(VI_EFAIL, err, "cannot start the 'save' job");
	}
	ctl->job_running = true;
	c->waiting = true;
	return CONTROL_DEFERRED;
}

/* --- the migrate job ------------------------------------------------------------------- */

static void *control_migrate_thread(void *opaque)
{
	struct vmm_control *ctl = opaque;
	struct control_job *job = &ctl->job;
	int ret = vmm_migrate_send(ctl->vm, job->fd, &job->mopts, &job->mig);

	if (ret < 0)
		job->error = xasprintf("cannot migrate: %s", vi_error_message());
	close(job->fd);
	job->ret = ret;
	if (eventfd_write(ctl->job_done_fd, 1) < 0)
		abort();
	return NULL;
}

/* {"bandwidth":B,"downtime_ms":D,"timeout_s":T,"converge":C,"shared_disks":S} with the
 * stream's descriptor passed alongside. */
static int control_migrate(struct vmm_control *ctl, struct control_client *c,
			   struct json_object *req, struct json_object *reply)
{
	struct control_job *job = &ctl->job;
	int err;

	(void)reply;
	if (c->passed_fd < 0)
		return vi_error(VI_EUSAGE, "'migrate' needs the stream's descriptor passed with it");
	*job = (struct control_job){ .name = "migrate", .client_fd = c->fd, .fd = c->passed_fd,
				     .migrate = true, .path = xstrdup("") };
	c->passed_fd = -1;
	job->mopts = (struct vmm_migrate_opts){
		.bandwidth = control_uint(req, "bandwidth"),
		.downtime_ms = (unsigned)control_uint(req, "downtime_ms"),
		.timeout_s = (unsigned)control_uint(req, "timeout_s"),
		.converge = (int)control_uint(req, "converge"),
		.shared_disks = control_uint(req, "shared_disks"),
	};
	job->mig.w = &job->w;
	err = pthread_create(&job->thread, NULL, control_migrate_thread, ctl);
	if (err) {
		close(job->fd);
		free(job->path);
		return vi_error_errno(VI_EFAIL, err, "cannot start the 'migrate' job");
	}
	ctl->job_running = true;
	c->waiting = true;
	return CONTROL_DEFERRED;
}

/* {"ms":N} -> {"bytes_per_s":R}: the pages the guest and the devices dirty over N ms. */
static int control_dirty_rate(struct vmm_control *ctl, struct control_client *c,
			      struct json_object *req, struct json_object *reply)
{
	uint64_t ms = control_uint(req, "ms"), rate = 0;
	int ret;

	(void)c;
	if (!ms || ms > 60000)
		return vi_error(VI_EUSAGE, "'dirty_rate' measures over 1 to 60000 ms");
	ret = vmm_dirty_rate(ctl->vm, (unsigned)ms, &rate);
	if (ret == 0)
		add_u64(reply, "bytes_per_s", rate);
	return ret;
}

/* {"disk":I,"bytes":N} -> {"bytes":size}: disk I grown live to N bytes (whole sectors). */
static int control_resize_disk(struct vmm_control *ctl, struct control_client *c,
			       struct json_object *req, struct json_object *reply)
{
	size_t disk = (size_t)control_uint(req, "disk");
	int ret = vmm_resize_disk(ctl->vm, disk, control_uint(req, "bytes"));

	(void)c;
	if (ret == 0)
		json_object_object_add(reply, "bytes",
				       json_object_new_int64((int64_t)vmm_disk_size(ctl->vm, disk)));
	return ret;
}

/* {"bytes":N} -> {"requested_size":R,"plugged_size":P,"balloon_bytes":B,...}: the guest's
 * memory made N bytes in all, by virtio-mem above the boot memory and the balloon below;
 * the reply says what the devices were asked for and how far the guest has got. */
static int control_set_memory(struct vmm_control *ctl, struct control_client *c,
			      struct json_object *req, struct json_object *reply)
{
	struct vmm_memory_size size;
	int ret = vmm_set_memory(ctl->vm, control_uint(req, "bytes"));

	(void)c;
	if (ret < 0)
		return ret;
	vmm_memory_size(ctl->vm, &size);
	add_u64(reply, "boot", size.boot);
	add_u64(reply, "max", size.max);
	add_u64(reply, "requested_size", size.requested);
	add_u64(reply, "plugged_size", size.plugged);
	add_u64(reply, "balloon_bytes", size.balloon_target);
	add_u64(reply, "balloon_actual", size.balloon_actual);
	return 0;
}

/* {"percent":P[,"name":VM]} -> {"percent":P,"cgroup":DIR}: the VM's CPU quota, in
 * percent of one host CPU (0: none); the cgroup is named after the VM. */
static int control_cpu_quota(struct vmm_control *ctl, struct control_client *c,
			     struct json_object *req, struct json_object *reply)
{
	uint64_t percent = control_uint(req, "percent");
	struct json_object *v;
	const char *name = json_object_object_get_ex(req, "name", &v) ? json_object_get_string(v)
								       : "vm";
	int ret;

	(void)c;
	if (vi_check_name(name, "VM") < 0)
		return -VI_EUSAGE;
	if (percent > 100ull * 4096)
		return vi_error(VI_EUSAGE, "a CPU quota of %llu%% is more than any VM can use",
				(unsigned long long)percent);
	ret = vmm_set_cpu_quota(ctl->vm, name, (unsigned)percent);
	if (ret == 0) {
		json_object_object_add(reply, "percent", json_object_new_int64((int64_t)percent));
		json_object_object_add(reply, "cgroup", json_object_new_string(
								 ctl->vm->cgroup ? ctl->vm->cgroup : ""));
	}
	return ret;
}

/* {"vcpus":N} -> {"vcpus":P,"removing":R,"max_vcpus":M}: P CPUs present, R of them
 * asked to go and not yet ejected by the guest. */
static int control_set_vcpus(struct vmm_control *ctl, struct control_client *c,
			     struct json_object *req, struct json_object *reply)
{
	struct vmm_vcpus_info info;
	uint64_t n = control_uint(req, "vcpus");
	int ret = vmm_set_vcpus(ctl->vm, n > UINT_MAX ? UINT_MAX : (unsigned)n);

	(void)c;
	if (ret < 0)
		return ret;
	vmm_get_vcpus(ctl->vm, &info);
	add_u64(reply, "vcpus", info.present);
	add_u64(reply, "removing", info.removing);
	add_u64(reply, "max_vcpus", info.max);
	return 0;
}

/* Flags of a command. */
#define CONTROL_NO_JOB (1u << 0) /* refused while a job runs: it would change what the job
				  * works on (or is a job itself) */
#define CONTROL_CODED  (1u << 1) /* its errors reach the client with their VI_E* code: the
				  * plugin methods that send it promise those codes */

static const struct control_command {
	const char *name;
	int (*run)(struct vmm_control *ctl, struct control_client *c, struct json_object *req,
		   struct json_object *reply);
	unsigned flags;
} control_commands[] = {
	{ "console", control_console, 0 },
	{ "dirty_rate", control_dirty_rate, CONTROL_NO_JOB | CONTROL_CODED },
	{ "forward_add", control_forward_add, CONTROL_NO_JOB | CONTROL_CODED },
	{ "forward_remove", control_forward_remove, CONTROL_NO_JOB | CONTROL_CODED },
	{ "migrate", control_migrate, CONTROL_NO_JOB },
	{ "nic_address", control_nic_address, CONTROL_CODED },
	{ "pause", control_pause, CONTROL_NO_JOB },
	{ "resume", control_resume, CONTROL_NO_JOB },
	{ "cpu_quota", control_cpu_quota, CONTROL_CODED },
	{ "resize_disk", control_resize_disk, CONTROL_NO_JOB | CONTROL_CODED },
	{ "restore", control_restore, CONTROL_NO_JOB | CONTROL_CODED },
	{ "save", control_save, CONTROL_NO_JOB },
	{ "set_memory", control_set_memory, CONTROL_NO_JOB | CONTROL_CODED },
	{ "set_vcpus", control_set_vcpus, CONTROL_NO_JOB | CONTROL_CODED },
	{ "stats", control_stats, 0 },
	{ "status", control_status, 0 },
	{ "stop", control_stop, 0 },
	{ "switch_disks", control_switch_disks, CONTROL_NO_JOB },
};

/* Handles one request; returns the reply (owned by the caller), or NULL when it comes
 * at the end of the job the request started. */
static struct json_object *control_handle(struct vmm_control *ctl, struct control_client *c,
					  struct json_object *req)
{
	struct json_object *reply = json_object_new_object(), *v;
	const char *cmd = json_object_object_get_ex(req, "cmd", &v) ? json_object_get_string(v)
								     : "";
	const struct control_command *command = NULL;
	int ret;

	for (size_t i = 0; i < ARRAY_SIZE(control_commands) && !command; i++)
		if (!strcmp(control_commands[i].name, cmd))
			command = &control_commands[i];
	if (!command)
		ret = vi_error(VI_EUSAGE, "unknown command '%s'", cmd);
	else if ((command->flags & CONTROL_NO_JOB) && ctl->job_running)
		ret = vi_error(VI_ESTATE, "cannot '%s' while the '%s' job runs", cmd,
			       ctl->job.name);
	else
		ret = command->run(ctl, c, req, reply);
	if (ret == CONTROL_DEFERRED) {
		json_object_put(reply);
		return NULL;
	}
	if (ret < 0)
		json_object_object_add(reply, "error", json_object_new_string(vi_error_message()));
	if (ret < 0 && command && (command->flags & CONTROL_CODED))
		json_object_object_add(reply, "code", json_object_new_int(-ret));
	json_object_object_add(reply, "ok", json_object_new_boolean(ret == 0));
	return reply;
}

/* Consumes complete frames from the client's buffer; false drops the client. */
static bool control_process(struct vmm_control *ctl, struct control_client *c)
{
	while (!c->console && !c->waiting && c->len >= 4) {
		uint32_t be, len;
		struct json_object *req, *reply;
		int ret;

		memcpy(&be, c->buf, 4);
		len = ntohl(be);
		if (len > VMM_CONTROL_MAX_MESSAGE)
			return false;
		if (c->len < 4 + (size_t)len)
			break;
		if (control_parse((char *)c->buf + 4, len, &req) < 0)
			return false;
		reply = control_handle(ctl, c, req);
		json_object_put(req);
		ret = reply ? vmm_control_send(c->fd, reply) : 0;
		json_object_put(reply);
		if (ret < 0)
			return false;
		memmove(c->buf, c->buf + 4 + len, c->len - 4 - len);
		c->len -= 4 + len;
		if (c->console) {
			/* Bytes after the request are already keyboard input. */
			if (vmm_console_attach(ctl->vm, c->fd, true) < 0)
				return false;
			vmm_console_input(ctl->vm, c->buf, c->len);
			c->len = 0;
		}
	}
	return true;
}

/* A read that keeps a descriptor passed with the bytes (the last one, if several). */
static ssize_t control_read(int fd, void *buf, size_t len, int *passed)
{
	union {
		struct cmsghdr h;
		char space[CMSG_SPACE(sizeof(int))];
	} ctrl;
	struct iovec iov = { buf, len };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctrl,
			      .msg_controllen = sizeof(ctrl) };
	ssize_t n = recvmsg(fd, &msg, MSG_CMSG_CLOEXEC);

	for (struct cmsghdr *h = n >= 0 ? CMSG_FIRSTHDR(&msg) : NULL; h; h = CMSG_NXTHDR(&msg, h))
		if (h->cmsg_level == SOL_SOCKET && h->cmsg_type == SCM_RIGHTS) {
			if (*passed >= 0)
				close(*passed);
			memcpy(passed, CMSG_DATA(h), sizeof(int));
		}
	return n;
}

static void control_client_ready(struct vmm *vm, int fd, void *opaque)
{
	struct vmm_control *ctl = opaque;
	uint8_t chunk[4096];
	size_t i;
	ssize_t n;

	(void)vm;
	for (i = 0; i < ctl->nclients && ctl->clients[i].fd != fd; i++)
		;
	if (i == ctl->nclients)
		return;
	n = control_read(fd, chunk, sizeof(chunk), &ctl->clients[i].passed_fd);
	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		control_drop(ctl, i);
		return;
	}
	if (ctl->clients[i].console) {
		vmm_console_input(ctl->vm, chunk, (size_t)n);
		return;
	}
	ctl->clients[i].buf = xrealloc(ctl->clients[i].buf, ctl->clients[i].len + (size_t)n);
	memcpy(ctl->clients[i].buf + ctl->clients[i].len, chunk, (size_t)n);
	ctl->clients[i].len += (size_t)n;
	if (!control_process(ctl, &ctl->clients[i]))
		control_drop(ctl, i);
}

/* In the event loop: the job's thread has ended. Its client gets the reply; a save that
 * was not live ends the VM, its state safely written. */
static void control_job_done(struct vmm *vm, int fd, void *opaque)
{
	struct vmm_control *ctl = opaque;
	struct control_job *job = &ctl->job;
	struct json_object *reply;
	eventfd_t n;
	bool stop;

	if (eventfd_read(fd, &n) < 0 || !ctl->job_running)
		return;
	pthread_join(job->thread, NULL);
	reply = json_object_new_object();
	if (job->ret < 0)
		json_object_object_add(reply, "error", json_object_new_string(job->error));
	else
		json_object_object_add(reply, "written",
				       json_object_new_int64((int64_t)atomic_load(&job->w.offset)));
	if (job->migrate)
		control_add_migration(&job->mig, reply);
	json_object_object_add(reply, "ok", json_object_new_boolean(job->ret == 0));
	stop = job->ret == 0 && !job->live;
	free(job->path);
	free(job->error);
	ctl->job_running = false;
	for (size_t i = 0; i < ctl->nclients; i++) {
		struct control_client *c = &ctl->clients[i];

		if (c->fd != job->client_fd)
			continue;
		/* Its requests sent meanwhile come next, and may start the next job. */
		c->waiting = false;
		if (vmm_control_send(c->fd, reply) < 0 || !control_process(ctl, c))
			control_drop(ctl, i);
		break;
	}
	json_object_put(reply);
	if (stop)
		vmm_request_exit(vm, VMM_EXIT_STOPPED);
}

static void control_accept(struct vmm *vm, int fd, void *opaque)
{
	struct vmm_control *ctl = opaque;
	int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);

	if (c < 0)
		return;
	if (ctl->nclients == CONTROL_MAX_CLIENTS ||
	    vmm_watch_fd(vm, c, control_client_ready, ctl) < 0) {
		close(c);
		return;
	}
	ctl->clients[ctl->nclients++] = (struct control_client){ .fd = c, .passed_fd = -1 };
}

int vmm_control_open(struct vmm *vm, const char *path, const char *backend,
		     struct vmm_control **out)
{
	struct vmm_control *ctl = xcalloc(1, sizeof(*ctl));
	struct sockaddr_un addr;
	int dir_fd, ret;
	mode_t old_umask;

	ctl->vm = vm;
	ctl->path = xstrdup(path);
	ctl->backend = xstrdup(backend);
	ctl->started_at = time(NULL);
	ctl->listen_fd = -1;
	ctl->job_done_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (ctl->job_done_fd < 0) {
		ret = vi_error_errno(VI_EFAIL, errno, "cannot make an eventfd");
		goto fail;
	}
	ret = vmm_watch_fd(vm, ctl->job_done_fd, control_job_done, ctl);
	if (ret < 0)
		goto fail;
	ret = control_address(path, &addr, &dir_fd);
	if (ret < 0)
		goto fail;
	ctl->listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ctl->listen_fd < 0) {
		ret = vi_error_errno(VI_EFAIL, errno, "cannot create a socket");
		goto fail_dir;
	}
	unlink(path);
	/* Created 0600 from the start: no window in which others may connect. */
	old_umask = umask(0177);
	if (bind(ctl->listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		ret = vi_error_errno(VI_EFAIL, errno, "cannot bind '%s'", path);
	umask(old_umask);
	if (ret == 0 && listen(ctl->listen_fd, 8) < 0)
		ret = vi_error_errno(VI_EFAIL, errno, "cannot listen on '%s'", path);
	if (ret == 0)
		ret = vmm_watch_fd(vm, ctl->listen_fd, control_accept, ctl);
	if (ret < 0) {
		unlink(path);
		goto fail_dir;
	}
	if (dir_fd >= 0)
		close(dir_fd);
	*out = ctl;
	return 0;
fail_dir:
	if (dir_fd >= 0)
		close(dir_fd);
fail:
	if (ctl->listen_fd >= 0)
		close(ctl->listen_fd);
	if (ctl->job_done_fd >= 0) {
		vmm_unwatch_fd(vm, ctl->job_done_fd);
		close(ctl->job_done_fd);
	}
	free(ctl->path);
	free(ctl->backend);
	free(ctl);
	return ret;
}

void vmm_control_close(struct vmm_control *ctl)
{
	if (!ctl)
		return;
	unlink(ctl->path);
	vmm_unwatch_fd(ctl->vm, ctl->listen_fd);
	close(ctl->listen_fd);
	/* A job still running is cancelled: it fails soon and leaves no file behind. */
	if (ctl->job_running) {
		atomic_store(&ctl->job.w.cancel, true);
		pthread_join(ctl->job.thread, NULL);
		free(ctl->job.path);
		free(ctl->job.error);
		ctl->job_running = false;
	}
	/* Told that the VM has gone, a client may use its disks and ports at once. */
	vmm_release_devices(ctl->vm);
	while (ctl->nclients)
		control_drop(ctl, ctl->nclients - 1);
	vmm_unwatch_fd(ctl->vm, ctl->job_done_fd);
	close(ctl->job_done_fd);
	free(ctl->path);
	free(ctl->backend);
	free(ctl);
}

/* --- client ------------------------------------------------------------------------ */

int vmm_control_connect(const char *path, int *out)
{
	struct sockaddr_un addr;
	int dir_fd, fd, ret = control_address(path, &addr, &dir_fd);

	if (ret < 0)
		return ret;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		ret = vi_error_errno(VI_EFAIL, errno, "cannot create a socket");
	else if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		ret = vi_error_errno(errno == ENOENT || errno == ECONNREFUSED ? VI_ESTATE
									      : VI_EFAIL,
				     errno, "cannot connect to '%s'", path);
	if (dir_fd >= 0)
		close(dir_fd);
	if (ret < 0) {
		if (fd >= 0)
			close(fd);
		return ret;
	}
	*out = fd;
	return 0;
}

int vmm_control_send_fd(int fd, struct json_object *msg, int pass)
{
	union {
		struct cmsghdr h;
		char space[CMSG_SPACE(sizeof(int))];
	} ctrl = { 0 };
	const char *text = json_object_to_json_string_ext(msg, JSON_C_TO_STRING_PLAIN);
	uint32_t be = htonl((uint32_t)strlen(text));
	struct iovec iov = { &be, sizeof(be) };
	struct msghdr m = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = &ctrl,
			    .msg_controllen = sizeof(ctrl) };
	struct cmsghdr *h = CMSG_FIRSTHDR(&m);

	/* The descriptor rides on the length, the first bytes of the frame. */
	h->cmsg_level = SOL_SOCKET;
	h->cmsg_type = SCM_RIGHTS;
	h->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(h), &pass, sizeof(int));
	if (sendmsg(fd, &m, MSG_NOSIGNAL) != (ssize_t)sizeof(be))
		return vi_error_errno(VI_EFAIL, errno, "cannot write to the control socket");
	return write_all(fd, text, strlen(text));
}

int vmm_control_call(int fd, const char *cmd, struct json_object *args,
		     struct json_object **reply)
{
	struct json_object *req = args ? args : json_object_new_object(), *r = NULL, *v;
	int ret;

	json_object_object_add(req, "cmd", json_object_new_string(cmd));
	ret = vmm_control_send(fd, req);
	json_object_put(req);
	if (ret == 0)
		ret = vmm_control_recv(fd, &r);
	if (ret < 0)
		return ret;
	if (!json_object_object_get_ex(r, "ok", &v) || !json_object_get_boolean(v)) {
		int code = json_object_object_get_ex(r, "code", &v) ? json_object_get_int(v)
								    : VI_EFAIL;

		ret = vi_error(code > 0 ? code : VI_EFAIL, "the VMM refused '%s': %s", cmd,
			       json_object_object_get_ex(r, "error", &v) ? json_object_get_string(v)
									 : "no reason given");
		json_object_put(r);
		return ret;
	}
	if (reply)
		*reply = r;
	else
		json_object_put(r);
	return 0;
}
