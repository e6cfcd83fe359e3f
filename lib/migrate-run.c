/* A VM moved to another host, the source's side (migrate-run.h): the link to
 * `vi __migrate-in` there, the checks, the offer, the stream and the
 * hand-over. */
#include "migrate-run.h"
#include "error.h"
#include "log.h"
#include "migrate.h"
#include "ops.h"
#include "ssh.h"
#include "output.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* --- the link ------------------------------------------------------------------------ */

/* ssh to the host running `vi __migrate-in NAME`, its standard input and
 * output ours to speak on. */
struct link {
	pid_t pid;
	FILE *to, *from;
	int err; /* its standard error, a file read when it ends */
};

static int link_open(const struct vi_host_entry *e, const char *name, bool check,
		     struct link *l)
{
	char *args[] = { "__migrate-in", check ? "--check" : NULL, (char *)name };
	char *const *a = check ? args : (char *const[]){ args[0], args[2] };
	char **argv = vi_host_argv(e, VI_HOST_BATCH, a, check ? 3 : 2);
	int to[2], from[2];

	memset(l, 0, sizeof(*l));
	l->err = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (l->err < 0 || pipe2(to, O_CLOEXEC) < 0 || pipe2(from, O_CLOEXEC) < 0) {
		vi_host_argv_free(argv);
		if (l->err >= 0)
			close(l->err);
		return vi_error_errno(VI_EFAIL, errno, "cannot make a pipe");
	}
	l->pid = vi_host_spawn(argv, to[0], from[1], l->err);
	vi_host_argv_free(argv);
	close(to[0]);
	close(from[1]);
	if (l->pid < 0) {
		close(to[1]);
		close(from[0]);
		return vi_error_errno(VI_EFAIL, errno, "cannot run ssh");
	}
	l->to = fdopen(to[1], "w");
	l->from = fdopen(from[0], "r");
	return 0;
}

/* Ends the link; ssh's exit status (255: ssh itself failed), and *err (may be
 * NULL) what it wrote on its standard error, malloc'd. The other side's
 * warnings are passed on; its error is the caller's to tell. */
static int link_close_err(struct link *l, char **err)
{
	static const char warning[] = "vi: warning: ";
	int status = 0;
	char *text = NULL;

	if (l->to)
		fclose(l->to);
	if (l->from)
		fclose(l->from);
	l->to = l->from = NULL;
	/* ssh ends when its pipes close, unless the link is dead: then it is not
	 * waited for. */
	for (int i = 0; l->pid > 0; i++) {
		if (i == 200)
			kill(l->pid, SIGKILL);
		pid_t got = waitpid(l->pid, &status, i < 200 ? WNOHANG : 0);
		if (got == l->pid || (got < 0 && errno != EINTR))
			break;
		if (got == 0)
			usleep(10000);
	}
	l->pid = 0;
	if (l->err >= 0) {
		off_t len = lseek(l->err, 0, SEEK_END);
		text = xcalloc((size_t)(len > 0 ? len : 0) + 1, 1);
		if (len > 0 && pread(l->err, text, (size_t)len, 0) < 0)
			text[0] = '\0';
		close(l->err);
		l->err = -1;
		for (char *p = text, *nl; p && *p; p = nl ? nl + 1 : NULL) {
			nl = strchr(p, '\n');
			if (!strncmp(p, warning, sizeof(warning) - 1))
				vi_warn("%.*s", (int)((nl ? nl - p : (long)strlen(p)) -
						      (long)(sizeof(warning) - 1)),
					p + sizeof(warning) - 1);
		}
	}
	if (err)
		*err = text;
	else
		free(text);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 255;
}

static int link_close(struct link *l)
{
	return link_close_err(l, NULL);
}

/* The error of a link that broke: ssh's own reason when ssh failed. */
static int link_failed(struct link *l, const char *host)
{
	int code = vi_error_code(), status;
	char *why = xstrdup(vi_error_message()), *err = NULL;

	status = link_close_err(l, &err);
	if (status == 255 && strstr(why, "link to the other host was lost"))
		code = vi_error(VI_EFAIL, "cannot reach host '%s': %s", host,
				vi_host_ssh_reason(err));
	else
		code = vi_error(code, "%s", why);
	free(err);
	free(why);
	return code;
}

/* The hypervisors move the running guest between them (libvirt). */
static bool by_uri(const struct vi_machine *m)
{
	return m->hv->ops.features & VI_HV_F_MIGRATE_URI;
}

/* The libvirt URI of host e for m's driver, malloc'd. */
static char *dest_uri(const struct vi_machine *m, const struct vi_host_entry *e)
{
	return vi_host_libvirt_uri(e, m->def.hv);
}

/* The header on the link, and what the other store lacks; a VM of that name
 * there is said from here. */
static int offer_header(const struct vi_store *s, struct vi_machine *m,
			const struct vi_host_entry *e, const struct vi_bundle *b, bool live,
			bool tunnel, struct link *l, struct json_object **need)
{
	unsigned flags = (live ? VI_MIGRATE_LIVE : 0) | (live && tunnel ? VI_MIGRATE_TUNNEL : 0) |
			 (live && by_uri(m) ? VI_MIGRATE_LIBVIRT : 0);
	int rc = vi_migrate_offer_header(s, &m->def, b, flags, l->from, l->to, need);

	if (rc == -VI_ESTATE)
		rc = vi_error(VI_ESTATE, "VM '%s' exists on host '%s'", m->def.name, e->name);
	return rc;
}

/* The files of the offer, their progress said as what. */
struct copy {
	const struct vi_migrate_opts *o;
	const char *what;
};

static void copy_progress(void *opaque, uint64_t done, uint64_t total)
{
	struct copy *c = opaque;

	c->o->copy_progress(c->o->opaque, c->what, done, total);
}

static void progress_end(const struct vi_migrate_opts *o)
{
	if (o->progress_end)
		o->progress_end(o->opaque);
}

/* The other store's login key (in need) let into the running guest through
 * this store's, so that vi ssh and vi exec reach it there as here. A guest
 * with no login, or that does not answer, only gets a warning. */
static void authorize_there(const struct vi_store *s, struct vi_machine *m,
			    struct json_object *need)
{
	const char *pub = vi_json_get_str(need, "ssh_key");
	struct vi_ssh_target t;

	if (!pub || strspn(pub, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=@.-_ ") !=
			    strlen(pub))
		return;
	if (vi_ssh_target(s, m, &t) < 0) {
		vi_error_clear();
		return;
	}
	char *cmd = xasprintf("umask 077 && mkdir -p ~/.ssh && { grep -qxF '%s' ~/.ssh/authorized_keys "
			      "2>/dev/null || echo '%s' >>~/.ssh/authorized_keys; }",
			      pub, pub);
	char **argv = vi_ssh_argv(&t, VI_SSH_BATCH | VI_SSH_QUIET, &cmd, 1);
	if (vi_run(argv, NULL) != 0)
		vi_warn("the guest of VM '%s' did not take the other host's login key: vi ssh there "
			"needs this host's",
			m->def.name);
	vi_error_clear();
	vi_strv_free(argv);
	free(cmd);
	vi_ssh_target_release(&t);
}

/* The header, the files and the answer to them: *line, malloc'd. */
static int offer(const struct vi_store *s, struct vi_machine *m, const struct vi_host_entry *e,
		 const struct vi_bundle *b, bool live, const struct vi_migrate_opts *o,
		 struct link *l, char **line, uint64_t *sent)
{
	struct copy c = { o, live ? "copying the disks only read" : "copying the disks" };
	struct json_object *need = NULL;
	int rc;

	rc = offer_header(s, m, e, b, live, o->tunnel, l, &need);
	if (rc == 0 && live)
		authorize_there(s, m, need);
	if (rc == 0)
		rc = vi_migrate_offer_files(s, b, need, l->to,
					    o->copy_progress ? copy_progress : NULL, &c, sent);
	if (rc == 0)
		rc = vi_migrate_read_line(l->from, line);
	progress_end(o);
	if (rc < 0)
		rc = link_failed(l, e->name);
	if (need)
		json_object_put(need);
	return rc;
}

/* --- the checks ---------------------------------------------------------------------- */

/* What `vi host info` says there, or NULL after recording why not. */
static struct json_object *host_info(const struct vi_host_entry *e)
{
	struct vi_host_answer a;
	struct json_object *info = NULL;

	vi_hosts_ask(&e, 1, &a);
	if (a.status == 255)
		vi_error(VI_EFAIL, "cannot reach host '%s': %s", e->name, a.reason);
	else if (a.status != 0)
		vi_error(VI_EFAIL, "host '%s' did not answer: %s", e->name, a.reason);
	else if (!a.info)
		vi_error(VI_EFAIL, "host '%s' gave no host information", e->name);
	else
		info = json_object_get(a.info);
	vi_host_answer_release(&a);
	return info;
}

static bool has_word(const char *list, const char *word)
{
	size_t n = strlen(word);

	for (const char *p = list; p && (p = strstr(p, word)); p += n)
		if ((p == list || p[-1] == ' ') && (p[n] == ' ' || !p[n]))
			return true;
	return false;
}

/* The lines of a check, to line (NULL: none); and whether one failed. */
struct checks {
	vi_migrate_check_fn line;
	void *opaque;
	bool failed;
};

static void check_line(struct checks *c, bool ok, const char *what, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void check_line(struct checks *c, bool ok, const char *what, const char *fmt, ...)
{
	char text[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	c->failed |= !ok;
	if (c->line)
		c->line(c->opaque, ok, what, text);
}

static void uri_line(void *opaque, int ok, const char *what, const char *detail)
{
	check_line(opaque, ok, what, "%s", detail);
}

/* The backend's own checks against the hypervisor there. */
static int uri_checks(struct vi_machine *m, const struct vi_host_entry *e, struct checks *c)
{
	char *uri = dest_uri(m, e);
	int rc = vi_hv_migrate_check(m->hv, &m->view.vm, uri, uri_line, c);

	free(uri);
	return rc;
}

/* The checks of vi_migrate_check, and the ones every migration makes first:
 * the backend usable there, the VM not there already, memory, the CPU, and
 * what there is to copy. Returns -VI_ESTATE naming the first that failed,
 * unless report (then the lines say it and it is still 0). */
static int preflight(const struct vi_store *s, struct vi_machine *m,
		     const struct vi_host_entry *e, bool live, bool tunnel,
		     const struct vi_bundle *b, bool report, struct checks *c)
{
	struct json_object *info = host_info(e), *v, *need = NULL;
	char size[32], have[32];
	struct link l;
	int rc = 0;

	if (!info)
		return -vi_error_code();
	/* The backend. */
	bool usable = false;
	if (json_object_object_get_ex(info, "backends", &v))
		for (size_t i = 0; i < json_object_array_length(v); i++)
			usable |= !strcmp(json_object_get_string(json_object_array_get_idx(v, i)),
					  m->def.hv);
	check_line(c, usable, "backend", "%s %s usable on host '%s'", m->def.hv,
		   usable ? "is" : "is not", e->name);
	if (!usable && !report) {
		rc = vi_error(VI_EUNSUPPORTED, "backend '%s' is not usable on host '%s'", m->def.hv,
			      e->name);
		goto out;
	}
	/* Memory and CPU, for a guest that runs on. */
	if (live) {
		uint64_t free_mem = (uint64_t)vi_json_get_int(info, "memory_free");
		vi_format_human(m->def.memory, size, sizeof(size));
		vi_format_human(free_mem, have, sizeof(have));
		check_line(c, free_mem > m->def.memory, "memory", "%s needed, %s free there", size,
			   have);
		if (free_mem <= m->def.memory && !report) {
			rc = vi_error(VI_ESTATE, "host '%s' has %s free, VM '%s' needs %s", e->name,
				      have, m->def.name, size);
			goto out;
		}
		if (by_uri(m)) {
			/* libvirt compares the CPU itself when it moves the guest. */
			if (report && (rc = uri_checks(m, e, c)) < 0)
				goto out;
			goto files;
		}
		const char *flags_there = vi_json_get_str(info, "cpu_flags");
		char *flags = vi_cpuinfo("flags"), *missing = xstrdup(""), *save = NULL;
		for (char *w = flags ? strtok_r(flags, " ", &save) : NULL; w;
		     w = strtok_r(NULL, " ", &save))
			if (!has_word(flags_there ? flags_there : "", w)) {
				char *more = xasprintf("%s%s%s", missing, *missing ? " " : "", w);
				free(missing);
				missing = more;
			}
		free(flags);
		check_line(c, !*missing, "cpu", *missing ? "host '%s' lacks %s" : "host '%s' has every CPU feature of this one%s",
			   e->name, missing);
		if (*missing && !report) {
			rc = vi_error(VI_ESTATE, "host '%s' lacks CPU features the guest may use: %s",
				      e->name, missing);
			free(missing);
			goto out;
		}
		free(missing);
	}
files:
	/* What it lacks of the images, and the VM there already: for the report;
	 * a move learns both on its own link. */
	if (!report)
		goto out;
	if ((rc = link_open(e, m->def.name, true, &l)) < 0)
		goto out;
	if ((rc = offer_header(s, m, e, b, live, tunnel, &l, &need)) < 0) {
		bool exists = rc == -VI_ESTATE;
		rc = link_failed(&l, e->name);
		if (exists) {
			check_line(c, false, "name", "%s", vi_error_message());
			vi_error_clear();
			rc = 0;
		}
		goto out;
	}
	link_close(&l);
	check_line(c, true, "name", "no VM '%s' on host '%s'", m->def.name, e->name);
	struct json_object *imgs = NULL;
	json_object_object_get_ex(need, "images", &imgs);
	vi_format_human(vi_bundle_bytes(s, b, need), size, sizeof(size));
	check_line(c, true, "copy", "%s to copy%s", size,
		   imgs && json_object_array_length(imgs) ? ", golden image included"
		   : b->nimages                          ? ", golden image there already"
							  : "");
	for (size_t i = 0; i < b->noutside; i++)
		check_line(c, true, "shared", "%s must be at the same path there", b->outside[i]);
out:
	if (need)
		json_object_put(need);
	json_object_put(info);
	return rc;
}

/* Whether m runs (*live), refused when it cannot move as asked; and what goes
 * with it. */
static int prepare(const struct vi_store *s, struct vi_machine *m,
		   const struct vi_migrate_opts *o, bool *live, struct vi_bundle *b)
{
	struct vi_hv_state st;

	*live = vi_hv_state_active(vi_machine_state(m, &st));
	if (*live && o->offline)
		return vi_error(VI_ESTATE,
				"VM '%s' is running: stop it first, or leave out --offline to move "
				"it live",
				m->def.name);
	if (*live && o->tunnel && (m->hv->ops.features & VI_HV_F_MIGRATE_URI))
		return vi_error(VI_EUSAGE,
				"--tunnel is for vi's own VMM: libvirt carries backend '%s' guests "
				"itself",
				m->def.hv);
	if (*live && !m->hv->ops.migrate_send)
		return vi_error(VI_EUNSUPPORTED,
				"backend '%s' cannot move a running VM yet: stop VM '%s' and use "
				"--offline",
				m->def.hv, m->def.name);
	return vi_bundle_collect(s, &m->def, *live, b);
}

int vi_migrate_check(const struct vi_store *s, struct vi_machine *m,
		     const struct vi_host_entry *e, const struct vi_migrate_opts *o,
		     vi_migrate_check_fn line, void *opaque)
{
	struct vi_bundle b = { 0 };
	struct checks c = { line, opaque, false };
	bool live;
	int rc;

	if ((rc = prepare(s, m, o, &live, &b)) == 0)
		rc = preflight(s, m, e, live, o->tunnel, &b, true, &c);
	vi_bundle_release(&b);
	return rc;
}

/* --- the move ------------------------------------------------------------------------ */

uint64_t vi_migrate_shared_disks(const struct vi_store *s, const struct vi_vm *def)
{
	uint64_t shared = 0;

	for (size_t i = 0; i < def->ndisks && i < 64; i++)
		if (def->disks[i].path[0] == '/' &&
		    strncmp(def->disks[i].path, s->home, strlen(s->home)))
			shared |= 1ull << i;
	return shared;
}

/* The guest runs there: what the destination says (a warning without its
 * word, link_ok false when it cannot come), then nothing of it here; r gets
 * the backend's figures. */
static int let_go(const struct vi_store *s, struct vi_machine *m, const struct vi_host_entry *e,
		  struct link *l, bool link_ok, const struct vi_hv_migrate_result *res,
		  struct vi_migrate_result *r)
{
	char *line = NULL;
	int rc;

	if (!link_ok || vi_migrate_read_line(l->from, &line) < 0 || strcmp(line, "RUNNING"))
		vi_warn("host '%s' did not confirm VM '%s' in its store: see 'vi --host %s list'",
			e->name, m->def.name, e->name);
	free(line);
	vi_error_clear();
	link_close(l);
	if ((rc = vi_op_destroy(s, m, 0)) < 0)
		return vi_error_wrap("VM '%s' runs on host '%s' now, but could not be removed here",
				     m->def.name, e->name);
	r->downtime_ms = res->downtime_ms;
	r->stream_ms = res->total_ms;
	r->bytes = res->bytes + r->file_bytes;
	r->disk_bytes = res->disk_bytes;
	r->iterations = res->iterations;
	return 0;
}

/* A running VM: the record and the disks only read go over ssh, the guest over
 * a direct connection (or the tunnel), through the backend. */
static int send_live(const struct vi_store *s, struct vi_machine *m,
		     const struct vi_host_entry *e, const struct vi_bundle *b,
		     const struct vi_migrate_opts *o, struct vi_migrate_result *r)
{
	struct vi_hv_migrate_result result = { .struct_size = sizeof(result) };
	struct vi_migrate_tunnel *tun = NULL;
	struct link l;
	char *line = NULL, secret[64];
	bool tunnel_broke = false;
	unsigned port;
	int rc, fd = -1;

	if ((rc = link_open(e, m->def.name, false, &l)) < 0)
		return rc;
	if ((rc = offer(s, m, e, b, true, o, &l, &line, &r->file_bytes)) < 0)
		goto out;
	/* The other side waits for GO before it sends a byte of the stream, so
	 * nothing of it sits in the buffer that read the line. */
	if (o->tunnel && !strcmp(line, "TUNNEL")) {
		if (fputs("GO\n", l.to) < 0 || fflush(l.to) < 0) {
			rc = link_failed(&l, e->name);
			goto out;
		}
		if ((rc = vi_migrate_tunnel_open(fileno(l.from), fileno(l.to), &fd, &tun)) < 0) {
			link_close(&l);
			goto out;
		}
	} else if (o->tunnel || sscanf(line, "LISTEN %u %63s", &port, secret) != 2) {
		rc = vi_error(VI_EFAIL, "host '%s' said '%.80s'", e->name, line);
		link_close(&l);
		goto out;
	} else if ((rc = vi_migrate_connect(e->addr, port, secret, &fd)) < 0) {
		link_close(&l);
		goto out;
	}
	struct vi_hv_migrate mig = {
		.struct_size = sizeof(mig), .fd = fd, .live = 1, .bandwidth = o->bandwidth,
		.downtime_ms = o->downtime_ms ? o->downtime_ms : 300, .timeout_s = o->timeout_s,
		.converge = o->converge, .shared_disks = vi_migrate_shared_disks(s, &m->def),
		.progress = o->live_progress, .opaque = o->opaque, .result = &result,
	};
	rc = vi_hv_migrate_send(m->hv, &m->view.vm, &mig);
	progress_end(o);
	close(fd);
	/* A tunnel that broke after the guest ran there leaves the line that says
	 * so unread: the warning below tells the user to look. */
	if (tun) {
		struct vi_error_saved err;
		vi_error_save(&err);
		tunnel_broke = vi_migrate_tunnel_close(tun, VI_MIGRATE_TUNNEL_CLOSE_MS) < 0;
		vi_error_restore(&err);
	}
	if (rc < 0) {
		struct vi_error_saved err;
		vi_error_save(&err);
		link_close(&l);
		vi_error_restore(&err);
		if (result.unconfirmed) {
			char *why = xstrdup(vi_error_message());
			vi_migrate_mark_unconfirmed(m->dir, e->name);
			rc = vi_error(VI_ESTATE, "%s: settle it with 'vi migrate --recover %s'", why,
				      m->def.name);
			free(why);
		}
		goto out;
	}
	rc = let_go(s, m, e, &l, !tunnel_broke, &result, r);
out:
	free(line);
	return rc;
}

/* A running VM the hypervisors move (libvirt): the record and the disks only
 * read go over ssh, the other host makes the writable disks empty on them and
 * says where its store is; libvirt here hands the guest to libvirt there,
 * copying those disks; then DONE, and the other store keeps the VM while this
 * one lets it go. Any failure before the guest runs there: ABORT, and the
 * other host takes back what it made. */
static int send_libvirt(const struct vi_store *s, struct vi_machine *m,
			const struct vi_host_entry *e, const struct vi_bundle *b,
			const struct vi_migrate_opts *o, struct vi_migrate_result *r)
{
	struct vi_hv_migrate_result result = { .struct_size = sizeof(result) };
	struct link l;
	char *line = NULL, *uri = NULL;
	int rc;

	if ((rc = link_open(e, m->def.name, false, &l)) < 0)
		return rc;
	if ((rc = offer(s, m, e, b, true, o, &l, &line, &r->file_bytes)) < 0)
		goto out;
	if (strncmp(line, "LIBVIRT /", 9)) {
		rc = vi_error(VI_EFAIL, "host '%s' said '%.80s'", e->name, line);
		link_close(&l);
		goto out;
	}
	uri = dest_uri(m, e);
	struct vi_hv_migrate mig = {
		.struct_size = sizeof(mig), .dest_uri = uri, .fd = -1, .live = 1,
		.bandwidth = o->bandwidth, .downtime_ms = o->downtime_ms ? o->downtime_ms : 300,
		.timeout_s = o->timeout_s, .converge = o->converge,
		.shared_disks = vi_migrate_shared_disks(s, &m->def), .progress = o->live_progress,
		.opaque = o->opaque, .result = &result, .dest_home = line + 8,
	};
	rc = vi_hv_migrate_send(m->hv, &m->view.vm, &mig);
	progress_end(o);
	if (rc < 0) {
		struct vi_error_saved err;
		vi_error_save(&err);
		fputs("ABORT\n", l.to);
		fflush(l.to);
		link_close(&l);
		vi_error_restore(&err);
		goto out;
	}
	/* It runs there: the other store keeps it, then nothing of it here. */
	bool said = fputs("DONE\n", l.to) >= 0 && fflush(l.to) == 0;
	rc = let_go(s, m, e, &l, said, &result, r);
out:
	free(uri);
	free(line);
	return rc;
}

/* A stopped VM: the record and the disks go, the VM is defined there, and only
 * then taken out here. */
static int send_offline(const struct vi_store *s, struct vi_machine *m,
			const struct vi_host_entry *e, const struct vi_bundle *b,
			const struct vi_migrate_opts *o, struct vi_migrate_result *r)
{
	struct link l;
	char *line = NULL;
	int rc;

	if ((rc = link_open(e, m->def.name, false, &l)) < 0)
		return rc;
	if ((rc = offer(s, m, e, b, false, o, &l, &line, &r->file_bytes)) < 0)
		goto out;
	link_close(&l);
	if (strcmp(line, "OK")) {
		rc = vi_error(VI_EFAIL, "host '%s' said '%.80s'", e->name, line);
		goto out;
	}
	/* It is there: here it goes, with the layers only it read. */
	if ((rc = vi_op_destroy(s, m, 0)) < 0) {
		vi_error_wrap("VM '%s' is on host '%s' now, but could not be removed here",
			      m->def.name, e->name);
		goto out;
	}
	r->bytes = r->file_bytes;
out:
	free(line);
	return rc;
}

int vi_migrate_vm(const struct vi_store *s, struct vi_machine *m,
		  const struct vi_host_entry *e, const struct vi_migrate_opts *o,
		  struct vi_migrate_result *r)
{
	struct vi_bundle b = { 0 };
	struct checks c = { 0 };
	double start = vi_now_ms();
	int rc;

	memset(r, 0, sizeof(*r));
	if ((rc = prepare(s, m, o, &r->live, &b)) < 0 ||
	    (rc = preflight(s, m, e, r->live, o->tunnel, &b, false, &c)) < 0)
		goto out;
	if (!r->live)
		rc = send_offline(s, m, e, &b, o, r);
	else if (by_uri(m))
		rc = send_libvirt(s, m, e, &b, o, r);
	else
		rc = send_live(s, m, e, &b, o, r);
	r->total_ms = vi_ms_since(start);
out:
	vi_bundle_release(&b);
	return rc;
}
