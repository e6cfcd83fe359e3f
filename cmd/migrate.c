/* vi migrate VM HOST: a VM moves to another host of the inventory (vi host),
 * live when it runs, with its disks and definition when it is stopped; and
 * `vi __migrate-in`, its other end, which the source runs on that host over
 * ssh. The record moves with lib/migrate.h; a running guest's memory and
 * disks with the backend's migrate_send/recv. */
#include "cmd.h"
#include "error.h"
#include "host.h"
#include "layers.h"
#include "log.h"
#include "machine.h"
#include "migrate.h"
#include "ops.h"
#include "output.h"
#include "progress.h"
#include "snapshot.h"
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

static int offline, check_only, tunnel, recover;
static uint64_t downtime_ms = 300, timeout_s;
static const char *bandwidth_text, *converge_text;

const struct vi_option migrate_options[] = {
	{ "offline", 0, VI_OPT_FLAG, &offline, NULL,
	  "move a stopped VM: its disks and definition" },
	{ "check", 0, VI_OPT_FLAG, &check_only, NULL,
	  "check that the VM can move there, one line each, and move nothing" },
	{ "downtime", 0, VI_OPT_UINT, &downtime_ms, "MS",
	  "the longest the guest may be paused (default 300)", .min = 0, .max = 600000 },
	{ "bandwidth", 0, VI_OPT_STRING, &bandwidth_text, "RATE",
	  "send at most RATE bytes a second (K, M, G suffixes)", VI_COMPLETE_NONE },
	{ "timeout", 0, VI_OPT_UINT, &timeout_s, "S", "give up after S seconds, the VM staying here",
	  .min = 1, .max = 86400 },
	{ "converge", 0, VI_OPT_STRING, &converge_text, "auto|pause|abort",
	  "when the guest dirties memory faster than the link carries it", VI_COMPLETE_NONE },
	{ "tunnel", 0, VI_OPT_FLAG, &tunnel, NULL,
	  "send everything through ssh rather than a direct connection" },
	{ "recover", 0, VI_OPT_FLAG, &recover, NULL,
	  "settle an unconfirmed migration of VM: keep it where it runs" },
	OPT_JSON,
	VI_OPT_TABLE_END,
};

static int incoming_check;

const struct vi_option migrate_in_options[] = {
	{ "check", 0, VI_OPT_FLAG, &incoming_check, NULL, "answer what is needed, store nothing" },
	VI_OPT_TABLE_END,
};

/* --- the source --------------------------------------------------------------------- */

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
			if (!strncmp(p, "vi: warning: ", 13))
				fprintf(stderr, "%.*s\n", (int)(nl ? nl - p : (long)strlen(p)), p);
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

struct copy_progress {
	struct vi_progress p;
	bool started;
	const char *what;
};

static void copy_progress(void *opaque, uint64_t done, uint64_t total)
{
	struct copy_progress *c = opaque;

	if (!c->started) {
		vi_progress_start(&c->p, total, "%s", c->what);
		c->started = true;
	}
	vi_progress_update(&c->p, done);
}

/* What `vi host info` says there, or NULL after recording why not. */
static struct json_object *host_info(const struct vi_host_entry *e)
{
	static char *const args[] = { "--json", "host", "info" };
	const struct vi_host_entry *hosts[] = { e };
	struct vi_host_result r;
	struct json_object *info = NULL;

	vi_hosts_run(hosts, 1, args, 3, 30000, &r);
	if (r.status == 255)
		vi_error(VI_EFAIL, "cannot reach host '%s': %s", e->name, vi_host_ssh_reason(r.err));
	else if (r.status != 0)
		vi_error(VI_EFAIL, "host '%s' did not answer: %s", e->name,
			 vi_host_ssh_reason(*r.err ? r.err : r.out));
	else if (!(info = json_tokener_parse(r.out)))
		vi_error(VI_EFAIL, "host '%s' gave no host information", e->name);
	vi_host_result_release(&r);
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

/* The lines of --check: printed, or kept for --json (list), or neither while a
 * move checks first; and whether one failed. */
struct checks {
	struct json_object *list;
	bool print;
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
	if (c->list) {
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "check", vi_json_str(what));
		json_object_object_add(o, "ok", json_object_new_boolean(ok));
		json_object_object_add(o, "detail", vi_json_str(text));
		json_object_array_add(c->list, o);
	}
	if (c->print)
		printf("%-4s %-10s %s\n", ok ? "ok" : "FAIL", what, text);
}

/* The header on the link, and what the other store lacks; a VM of that name
 * there is said from here. */
static int offer_header(struct vi_machine *m, const struct vi_host_entry *e,
			const struct vi_bundle *b, bool live, struct link *l, struct json_object **need)
{
	unsigned flags = (live ? VI_MIGRATE_LIVE : 0) | (live && tunnel ? VI_MIGRATE_TUNNEL : 0);
	int rc = vi_migrate_offer_header(&ctx.store, &m->def, b, flags, l->from, l->to, need);

	if (rc == -VI_ESTATE)
		rc = vi_error(VI_ESTATE, "VM '%s' exists on host '%s'", m->def.name, e->name);
	return rc;
}

/* The checks `--check` prints, and the ones every migration makes first: the
 * backend usable there, the VM not there already, memory, the CPU, and what
 * there is to copy. Returns -VI_ESTATE naming the first that failed, unless
 * report (then the lines say it and it is still 0). */
static int preflight(struct vi_machine *m, const struct vi_host_entry *e, bool live,
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
	/* What it lacks of the images, and the VM there already: for the report;
	 * a move learns both on its own link. */
	if (!report)
		goto out;
	if ((rc = link_open(e, m->def.name, true, &l)) < 0)
		goto out;
	if ((rc = offer_header(m, e, b, live, &l, &need)) < 0) {
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
	vi_format_human(vi_bundle_bytes(&ctx.store, b, need), size, sizeof(size));
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

/* --- the destination ------------------------------------------------------------------ */

/* The layers the VM now in the store reads, and its snapshots', referenced. */
static int ref_layers(const struct vi_vm *vm)
{
	struct vi_layer_index idx;
	struct vi_snapshot *snaps = NULL;
	size_t n = 0;
	int rc = vi_layers_open(&ctx.store, &idx);

	if (rc < 0)
		return rc;
	vi_layers_ref_vm(&idx, vm);
	if (vi_snapshot_list(&ctx.store, vm->name, &snaps, &n) == 0) {
		for (size_t i = 0; i < n; i++) {
			char *ref = xasprintf("snapshot:%s/%s", vm->name, snaps[i].name);
			for (size_t k = 0; k < snaps[i].ndisks; k++)
				if (snaps[i].disks[k].layer)
					vi_layer_ref(&idx, snaps[i].disks[k].layer, ref);
			free(ref);
		}
		vi_snapshots_free(snaps, n);
	}
	vi_error_clear();
	return vi_layers_commit(&ctx.store, &idx);
}

/* The VM staged here goes into the store, defined on its backend. */
static int commit_incoming(struct vi_vm *vm, const char *staged, struct vi_machine *m)
{
	struct vi_hv *hv = vi_hv_find(&ctx.plugins, vm->hv);
	int rc;

	if (!hv)
		return -vi_error_code();
	vi_hv_probe(hv, vm->connect);
	if (!vi_hv_usable(hv))
		return vi_error(VI_EUNSUPPORTED, "backend '%s' is not usable here: %s", vm->hv,
				hv->reason ? hv->reason : "declined");
	memset(m, 0, sizeof(*m));
	m->def = *vm;
	memset(vm, 0, sizeof(*vm));
	m->hv = hv;
	m->dir = vi_store_path(&ctx.store, "vms/%s", m->def.name);
	vi_vm_hv_init(&m->view, &m->def, m->dir);
	if ((rc = vi_hv_define(hv, &m->view.vm)) < 0)
		return rc;
	if ((rc = vi_store_commit_vm(&ctx.store, m->def.name, staged)) < 0) {
		struct vi_error_saved e;
		vi_error_save(&e);
		vi_hv_undefine(hv, &m->view.vm);
		vi_error_restore(&e);
		return rc;
	}
	if ((rc = ref_layers(&m->def)) < 0) {
		struct vi_error_saved e;
		vi_error_save(&e);
		vi_op_destroy(&ctx.store, m, 0);
		vi_error_restore(&e);
	}
	return rc;
}

/* The disks both hosts see at the same path, outside the store, which the stream
 * does not carry: bit i for disk i. Both ends work it out from the definition. */
static uint64_t shared_disks(const struct vi_vm *def)
{
	uint64_t shared = 0;

	for (size_t i = 0; i < def->ndisks && i < 64; i++)
		if (def->disks[i].path[0] == '/' &&
		    strncmp(def->disks[i].path, ctx.store.home, strlen(ctx.store.home)))
			shared |= 1ull << i;
	return shared;
}

/* How long a tunnel's ends may take to close after the stream, for a link
 * that no longer carries anything. */
#define TUNNEL_CLOSE_MS 10000

/* The running guest comes over a direct connection to the address the source's
 * ssh came in on, for the one peer that knows the secret said over ssh; or,
 * with --tunnel, through ssh itself once the source says GO (nothing of the
 * stream may sit in stdin's buffer, so GO is read a byte at a time). */
static int receive_live(struct vi_machine *m, const char *const *backing, bool through_ssh)
{
	const char *conn = getenv("SSH_CONNECTION");
	char addr[64] = "", secret[33], go[3];
	struct vi_migrate_tunnel *tun = NULL;
	struct vi_migrate_guard *guard = NULL;
	unsigned port;
	int lfd = -1, fd, rc;

	if (through_ssh) {
		printf("TUNNEL\n");
		fflush(stdout);
		for (size_t got = 0; got < sizeof(go);) {
			ssize_t n = read(STDIN_FILENO, go + got, sizeof(go) - got);
			if (n <= 0)
				return vi_error(VI_EFAIL, "the other host went away");
			got += (size_t)n;
		}
		if (memcmp(go, "GO\n", 3))
			return vi_error(VI_EFAIL, "the other host did not start the tunnel");
		if ((rc = vi_migrate_tunnel_open(STDIN_FILENO, STDOUT_FILENO, &fd, &tun)) < 0)
			return rc;
	} else {
		/* "client-address client-port server-address server-port" */
		if (!conn || sscanf(conn, "%*s %*s %63s", addr) != 1)
			return vi_error(VI_EUSAGE,
					"a running VM comes over ssh: SSH_CONNECTION is not set");
		if ((rc = vi_migrate_listen(addr, &lfd, &port)) < 0)
			return rc;
		vi_random_hex(secret, 16);
		printf("LISTEN %u %s\n", port, secret);
		fflush(stdout);
		if ((rc = vi_migrate_accept_peer(lfd, secret, 60000, &fd)) < 0) {
			close(lfd);
			return rc;
		}
		guard = vi_migrate_guard_start(lfd);
	}
	struct vi_hv_migrate_result result = { .struct_size = sizeof(result) };
	struct vi_hv_migrate mig = { .struct_size = sizeof(mig), .fd = fd, .live = 1,
				     .shared_disks = shared_disks(&m->def), .backing = backing,
				     .result = &result };
	rc = vi_hv_migrate_recv(m->hv, &m->view.vm, &mig);
	vi_migrate_guard_stop(guard);
	if (lfd >= 0)
		close(lfd);
	close(fd);
	if (tun) {
		struct vi_error_saved e;
		vi_error_save(&e);
		int trc = vi_migrate_tunnel_close(tun, TUNNEL_CLOSE_MS);
		if (rc < 0)
			vi_error_restore(&e);
		else
			rc = trc;
	}
	return rc;
}

int cmd_migrate_in(int argc, char **argv)
{
	struct vi_machine m = { 0 };
	struct vi_vm vm;
	char *staged = NULL, **backing = NULL, *marker = NULL;
	bool committed = false;
	unsigned flags = 0;
	size_t ndisks = 0;
	int rc;
	(void)argc;

	/* stdout is the wire: what vi says goes to stderr. */
	if (incoming_check)
		return vi_migrate_answer(&ctx.store, stdin, stdout);
	if ((rc = vi_migrate_accept(&ctx.store, stdin, stdout, &vm, &staged, &flags, &backing)) < 0)
		return rc;
	ndisks = vm.ndisks;
	if (strcmp(vm.name, argv[0])) {
		rc = vi_error(VI_EFAIL, "asked for VM '%s', sent VM '%s'", argv[0], vm.name);
		goto fail;
	}
	/* Until the VM is wholly here, a marker says so: should this process be
	 * killed, the next vi here takes the VM out (vi_ops_recover). */
	marker = vi_store_path(&ctx.store, "vms/.staging/%s.incoming.%d", vm.name, (int)getpid());
	if ((rc = vi_write_file_replace(marker, "", 0, 0600)) < 0)
		goto fail;
	if ((rc = commit_incoming(&vm, staged, &m)) < 0)
		goto fail;
	committed = true;
	if (flags & VI_MIGRATE_LIVE) {
		if ((rc = receive_live(&m, (const char *const *)backing,
				       flags & VI_MIGRATE_TUNNEL)) < 0)
			goto fail;
		fprintf(stdout, "RUNNING\n");
	} else {
		fprintf(stdout, "OK\n");
	}
	fflush(stdout);
	goto out;
fail:
	vi_migrate_send_error(stdout);
	if (committed) {
		struct vi_error_saved e;
		vi_error_save(&e);
		vi_op_destroy(&ctx.store, &m, 0);
		vi_error_restore(&e);
	} else if (staged) {
		vi_store_abort_vm(staged);
	}
out:
	if (marker)
		unlink(marker);
	free(marker);
	if (committed)
		vi_machine_release(&m);
	vi_vm_release(&vm);
	for (size_t i = 0; backing && i < ndisks; i++)
		free(backing[i]);
	free(backing);
	free(staged);
	return rc;
}

/* --- the verb ------------------------------------------------------------------------ */

struct live_progress {
	struct vi_progress p;
	bool started;
	double last_json;
};

static void live_progress(void *opaque, const struct vi_hv_migrate_progress *p)
{
	struct live_progress *lp = opaque;
	char sent[32], left[32], rate[32], step[160];

	if (ctx.json) {
		if (vi_ms_since(lp->last_json) < 250 && lp->last_json)
			return;
		lp->last_json = vi_now_ms();
		struct json_object *o = json_object_new_object(), *pr = json_object_new_object();
		json_object_object_add(o, "vi", json_object_new_int(VI_JSON_SCHEMA));
		json_object_object_add(pr, "phase", vi_json_str(p->phase));
		json_object_object_add(pr, "iteration", json_object_new_int((int)p->iteration));
		json_object_object_add(pr, "sent", json_object_new_int64((int64_t)p->sent));
		json_object_object_add(pr, "remaining", json_object_new_int64((int64_t)p->remaining));
		json_object_object_add(pr, "dirty_rate", json_object_new_int64((int64_t)p->dirty_rate));
		json_object_object_add(pr, "bandwidth", json_object_new_int64((int64_t)p->bandwidth));
		json_object_object_add(o, "progress", pr);
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		fflush(stdout);
		json_object_put(o);
		return;
	}
	if (!lp->started) {
		vi_progress_start(&lp->p, 0, "migrating");
		lp->started = true;
	}
	vi_format_human(p->sent, sent, sizeof(sent));
	vi_format_human(p->remaining, left, sizeof(left));
	vi_format_human(p->dirty_rate, rate, sizeof(rate));
	snprintf(step, sizeof(step), "%s, iteration %u: %s sent, %s left, dirtied %s/s", p->phase,
		 p->iteration, sent, left, rate);
	vi_progress_report(&lp->p, step, -1);
}

/* A running VM: the record and the disks only read go over ssh, the guest over
 * a direct connection, through the backend. */
static int send_live(struct vi_machine *m, const struct vi_host_entry *e, const struct vi_bundle *b,
		     uint64_t bandwidth, double start)
{
	struct vi_hv_migrate_result result = { .struct_size = sizeof(result) };
	struct live_progress lp = { 0 };
	struct copy_progress cp = { .what = "copying the disks only read" };
	struct json_object *need = NULL;
	struct vi_migrate_tunnel *tun = NULL;
	struct link l;
	char *line = NULL, secret[64];
	bool tunnel_broke = false;
	unsigned port;
	uint64_t sent = 0, shared;
	int rc, fd = -1;

	shared = shared_disks(&m->def);
	if ((rc = link_open(e, m->def.name, false, &l)) < 0)
		return rc;
	if ((rc = offer_header(m, e, b, true, &l, &need)) < 0 ||
	    (rc = vi_migrate_offer_files(&ctx.store, b, need, l.to, copy_progress, &cp, &sent)) < 0 ||
	    (rc = vi_migrate_read_line(l.from, &line)) < 0) {
		if (cp.started)
			vi_progress_end(&cp.p);
		rc = link_failed(&l, e->name);
		goto out;
	}
	if (cp.started)
		vi_progress_end(&cp.p);
	/* The other side waits for GO before it sends a byte of the stream, so
	 * nothing of it sits in the buffer that read the line. */
	if (tunnel && !strcmp(line, "TUNNEL")) {
		if (fputs("GO\n", l.to) < 0 || fflush(l.to) < 0) {
			rc = link_failed(&l, e->name);
			goto out;
		}
		if ((rc = vi_migrate_tunnel_open(fileno(l.from), fileno(l.to), &fd, &tun)) < 0) {
			link_close(&l);
			goto out;
		}
	} else if (tunnel || sscanf(line, "LISTEN %u %63s", &port, secret) != 2) {
		rc = vi_error(VI_EFAIL, "host '%s' said '%.80s'", e->name, line);
		link_close(&l);
		goto out;
	} else if ((rc = vi_migrate_connect(e->addr, port, secret, &fd)) < 0) {
		link_close(&l);
		goto out;
	}
	struct vi_hv_migrate mig = {
		.struct_size = sizeof(mig), .fd = fd, .live = 1, .bandwidth = bandwidth,
		.downtime_ms = (unsigned)downtime_ms, .timeout_s = (unsigned)timeout_s,
		.converge = !converge_text || !strcmp(converge_text, "auto") ? VI_HV_CONVERGE_AUTO
			    : !strcmp(converge_text, "pause")                  ? VI_HV_CONVERGE_PAUSE
										: VI_HV_CONVERGE_ABORT,
		.shared_disks = shared, .progress = live_progress, .opaque = &lp, .result = &result,
	};
	rc = vi_hv_migrate_send(m->hv, &m->view.vm, &mig);
	if (lp.started)
		vi_progress_end(&lp.p);
	close(fd);
	/* A tunnel that broke after the guest ran there leaves the line that says
	 * so unread: the warning below tells the user to look. */
	if (tun) {
		struct vi_error_saved err;
		vi_error_save(&err);
		tunnel_broke = vi_migrate_tunnel_close(tun, TUNNEL_CLOSE_MS) < 0;
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
	/* It runs there: what the destination says, then nothing of it here. */
	free(line);
	line = NULL;
	if (tunnel_broke || vi_migrate_read_line(l.from, &line) < 0 || strcmp(line, "RUNNING"))
		vi_warn("host '%s' did not confirm VM '%s' in its store: see 'vi --host %s list'",
			e->name, m->def.name, e->name);
	vi_error_clear();
	link_close(&l);
	if ((rc = vi_op_destroy(&ctx.store, m, 0)) < 0) {
		vi_error_wrap("VM '%s' runs on host '%s' now, but could not be removed here",
			      m->def.name, e->name);
		goto out;
	}
	if (ctx.json) {
		struct json_object *doc = vi_json_doc();
		json_object_object_add(doc, "name", vi_json_str(m->def.name));
		json_object_object_add(doc, "host", vi_json_str(e->name));
		json_object_object_add(doc, "live", json_object_new_boolean(true));
		json_object_object_add(doc, "total_ms", vi_json_ms(vi_ms_since(start)));
		json_object_object_add(doc, "downtime_ms", vi_json_ms(result.downtime_ms));
		json_object_object_add(doc, "stream_ms", vi_json_ms(result.total_ms));
		json_object_object_add(doc, "bytes", json_object_new_int64((int64_t)(result.bytes + sent)));
		json_object_object_add(doc, "disk_bytes", json_object_new_int64((int64_t)result.disk_bytes));
		json_object_object_add(doc, "file_bytes", json_object_new_int64((int64_t)sent));
		json_object_object_add(doc, "iterations", json_object_new_int((int)result.iterations));
		vi_json_printed = true;
		printf("%s\n", json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN));
		json_object_put(doc);
	} else {
		char size[32];
		vi_format_human(result.bytes + sent, size, sizeof(size));
		vi_info("moved VM '%s' to host '%s', running: %.1f s in all, paused %.1f ms, %s in %u "
			"iterations",
			m->def.name, e->name, vi_ms_since(start) / 1000, result.downtime_ms, size,
			result.iterations);
	}
out:
	free(line);
	if (need)
		json_object_put(need);
	return rc;
}

/* A migration left unconfirmed: the host it went to is asked whether it has
 * the VM. It has: the paused copy here goes. It has not: the guest resumes
 * here. It cannot be asked: nothing changes. */
static int recover_vm(const char *name)
{
	struct vi_hosts hosts;
	struct vi_host_entry *e;
	struct vi_machine m;
	struct vi_host_result r = { 0 };
	struct vi_hv_state st;
	char *there = NULL, *const args[] = { "show", "--json", (char *)name };
	const char *outcome;
	int rc;

	if ((rc = vi_machine_open(&ctx.store, &ctx.plugins, name, NULL, true, &m)) < 0)
		return rc;
	if (!(there = vi_migrate_unconfirmed(m.dir))) {
		rc = vi_error(VI_ESTATE, "VM '%s' has no unconfirmed migration to settle", name);
		goto out_machine;
	}
	if ((rc = vi_hosts_load(&ctx.store, &hosts)) < 0)
		goto out_machine;
	if ((rc = vi_hosts_get(&hosts, there, &e)) < 0)
		goto out_hosts;
	vi_hosts_run((const struct vi_host_entry *[]){ e }, 1, args, 3, 30000, &r);
	if (r.status == 255) {
		rc = vi_error(VI_EFAIL, "cannot reach host '%s': %s; VM '%s' stays paused here",
			      there, vi_host_ssh_reason(r.err), name);
		goto out_hosts;
	}
	if (r.status == 0) {
		/* There, in that host's store: it is the VM now. */
		if ((rc = vi_op_destroy(&ctx.store, &m, 0)) < 0)
			goto out_hosts;
		outcome = "there";
	} else if (r.status == VI_ENOTFOUND) {
		vi_machine_state(&m, &st);
		if (vi_hv_state_active(st.state) && (rc = vi_hv_resume(m.hv, &m.view.vm)) < 0)
			goto out_hosts;
		if ((rc = vi_migrate_clear_unconfirmed(m.dir)) < 0)
			goto out_hosts;
		outcome = vi_hv_state_active(st.state) ? "here" : "stopped";
	} else {
		rc = vi_error(VI_EFAIL, "host '%s' could not say whether it has VM '%s': %s", there,
			      name, vi_host_ssh_reason(*r.err ? r.err : r.out));
		goto out_hosts;
	}
	if (ctx.json) {
		struct json_object *doc = vi_json_doc();
		json_object_object_add(doc, "name", vi_json_str(name));
		json_object_object_add(doc, "host", vi_json_str(there));
		json_object_object_add(doc, "runs", vi_json_str(outcome));
		vi_json_print(doc);
	} else if (!strcmp(outcome, "there")) {
		vi_info("VM '%s' is on host '%s': its paused copy here is removed", name, there);
	} else if (!strcmp(outcome, "here")) {
		vi_info("VM '%s' is not on host '%s': it runs here again", name, there);
	} else {
		vi_info("VM '%s' is not on host '%s' and stopped here: 'vi start %s' boots it", name,
			there, name);
	}
out_hosts:
	vi_host_result_release(&r);
	vi_hosts_release(&hosts);
out_machine:
	free(there);
	vi_machine_release(&m);
	return rc;
}

int cmd_migrate(int argc, char **argv)
{
	struct vi_hosts hosts;
	struct vi_host_entry *e;
	struct vi_machine m;
	struct vi_hv_state st;
	struct vi_bundle b = { 0 };
	struct checks c = { 0 };
	struct json_object *need = NULL;
	struct copy_progress cp = { .what = "copying" };
	struct link l = { 0 };
	uint64_t bandwidth = 0, sent = 0;
	double start = vi_now_ms();
	bool live;
	char *line = NULL;
	int rc;
	(void)argc;

	if (recover && argc != 1)
		return vi_error(VI_EUSAGE, "--recover takes the VM alone: vi migrate --recover VM");
	if (recover)
		return recover_vm(argv[0]);
	if (argc != 2)
		return vi_error(VI_EUSAGE, "missing arguments: expected VM HOST (see 'vi migrate -h')");
	if (downtime_ms == 0)
		return vi_error(VI_EUSAGE, "--downtime must be at least 1 ms");
	if (bandwidth_text &&
	    (rc = vi_parse_size_in(bandwidth_text, "--bandwidth", 1, UINT64_MAX, &bandwidth)) < 0)
		return rc;
	if (converge_text && strcmp(converge_text, "auto") && strcmp(converge_text, "pause") &&
	    strcmp(converge_text, "abort"))
		return vi_error(VI_EUSAGE, "--converge takes auto, pause or abort, not '%s'",
				converge_text);
	if ((rc = vi_hosts_load(&ctx.store, &hosts)) < 0)
		return rc;
	if ((rc = vi_hosts_get(&hosts, argv[1], &e)) < 0)
		goto out_hosts;
	if ((rc = vi_machine_open(&ctx.store, &ctx.plugins, argv[0], NULL, true, &m)) < 0)
		goto out_hosts;
	live = vi_hv_state_active(vi_machine_state(&m, &st));
	if (live && offline) {
		rc = vi_error(VI_ESTATE,
			      "VM '%s' is running: stop it first, or leave out --offline to move it "
			      "live",
			      m.def.name);
		goto out_machine;
	}
	if (live && !m.hv->ops.migrate_send) {
		rc = vi_error(VI_EUNSUPPORTED,
			      "backend '%s' cannot move a running VM yet: stop VM '%s' and use "
			      "--offline",
			      m.def.hv, m.def.name);
		goto out_machine;
	}
	if ((rc = vi_bundle_collect(&ctx.store, &m.def, live, &b)) < 0)
		goto out_machine;
	if (check_only) {
		c.list = ctx.json ? json_object_new_array() : NULL;
		c.print = !ctx.json;
		rc = preflight(&m, e, live, &b, true, &c);
		if (rc == 0 && ctx.json) {
			struct json_object *doc = vi_json_doc();
			json_object_object_add(doc, "ok", json_object_new_boolean(!c.failed));
			json_object_object_add(doc, "checks", json_object_get(c.list));
			vi_json_print(doc);
		}
		if (c.list)
			json_object_put(c.list);
		if (rc == 0 && c.failed)
			ctx.exit_status = VI_ESTATE;
		goto out_bundle;
	}
	/* The checks, silently: a failure is the error. */
	rc = preflight(&m, e, live, &b, false, &c);
	if (rc < 0)
		goto out_bundle;
	if (live) {
		rc = send_live(&m, e, &b, bandwidth, start);
		goto out_bundle;
	}
	/* Offline: the record and the disks go, the VM is defined there, and only
	 * then taken out here. */
	if ((rc = link_open(e, m.def.name, false, &l)) < 0)
		goto out_bundle;
	cp.what = "copying the disks";
	if ((rc = offer_header(&m, e, &b, false, &l, &need)) < 0 ||
	    (rc = vi_migrate_offer_files(&ctx.store, &b, need, l.to, copy_progress, &cp, &sent)) < 0 ||
	    (rc = vi_migrate_read_line(l.from, &line)) < 0) {
		if (cp.started)
			vi_progress_end(&cp.p);
		rc = link_failed(&l, e->name);
		goto out_bundle;
	}
	if (cp.started)
		vi_progress_end(&cp.p);
	link_close(&l);
	if (strcmp(line, "OK")) {
		rc = vi_error(VI_EFAIL, "host '%s' said '%.80s'", e->name, line);
		goto out_bundle;
	}
	/* It is there: here it goes, with the layers only it read. */
	if ((rc = vi_op_destroy(&ctx.store, &m, 0)) < 0) {
		vi_error_wrap("VM '%s' is on host '%s' now, but could not be removed here",
			      m.def.name, e->name);
		goto out_bundle;
	}
	if (ctx.json) {
		struct json_object *doc = vi_json_doc();
		json_object_object_add(doc, "name", vi_json_str(m.def.name));
		json_object_object_add(doc, "host", vi_json_str(e->name));
		json_object_object_add(doc, "live", json_object_new_boolean(false));
		json_object_object_add(doc, "total_ms", vi_json_ms(vi_ms_since(start)));
		json_object_object_add(doc, "bytes", json_object_new_int64((int64_t)sent));
		vi_json_print(doc);
	} else {
		char size[32];
		vi_format_human(sent, size, sizeof(size));
		vi_info("moved VM '%s' to host '%s' (stopped): %s copied in %.1f s", m.def.name,
			e->name, size, vi_ms_since(start) / 1000);
	}
out_bundle:
	free(line);
	if (need)
		json_object_put(need);
	vi_bundle_release(&b);
out_machine:
	vi_machine_release(&m);
out_hosts:
	vi_hosts_release(&hosts);
	return rc;
}
