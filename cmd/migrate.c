/* vi migrate VM HOST: a VM moves to another host of the inventory (vi host),
 * live when it runs, with its disks and definition when it is stopped; and
 * `vi __migrate-in`, its other end, which the source runs on that host over
 * ssh. The source's side is lib/migrate-run.h, which this prints for; the
 * record moves with lib/migrate.h, a running guest's memory and disks with
 * the backend's migrate_send/recv. */
#include "cmd.h"
#include "error.h"
#include "host.h"
#include "layers.h"
#include "log.h"
#include "machine.h"
#include "migrate.h"
#include "migrate-run.h"
#include "ops.h"
#include "output.h"
#include "progress.h"
#include "snapshot.h"
#include "util.h"

#include <json-c/json.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
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

/* The VM staged here goes into the store, defined on its backend; without
 * define, only into the store: the hypervisors bring it (VI_MIGRATE_LIBVIRT),
 * and libvirt defines it once it runs here. */
static int commit_incoming(struct vi_vm *vm, const char *staged, bool define,
			   struct vi_machine *m)
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
	if (!define)
		return vi_store_commit_vm(&ctx.store, m->def.name, staged);
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
				     .shared_disks = vi_migrate_shared_disks(&ctx.store, &m->def), .backing = backing,
				     .result = &result };
	rc = vi_hv_migrate_recv(m->hv, &m->view.vm, &mig);
	vi_migrate_guard_stop(guard);
	if (lfd >= 0)
		close(lfd);
	close(fd);
	if (tun) {
		struct vi_error_saved e;
		vi_error_save(&e);
		int trc = vi_migrate_tunnel_close(tun, VI_MIGRATE_TUNNEL_CLOSE_MS);
		if (rc < 0)
			vi_error_restore(&e);
		else
			rc = trc;
	}
	return rc;
}

/* How long a guest that libvirt still brings (paused, arriving) is waited
 * for when the source went silent: libvirtd there finishes the job alone. */
#define ARRIVAL_WAIT_MS 120000

/* Where the guest ended up once the source said DONE or ABORT, or went away
 * (line NULL): here, running (1); not here (0); or still arriving after the
 * wait (-1). */
static int arrived(struct vi_machine *m, const char *line)
{
	double start = vi_now_ms();

	for (;;) {
		struct vi_hv_state st;
		int state = vi_machine_state(m, &st);
		vi_error_clear();
		if (state == VI_HV_RUNNING || (state == VI_HV_PAUSED && line && !strcmp(line, "DONE")))
			return 1;
		if (state != VI_HV_PAUSED && state != VI_HV_UNKNOWN)
			return 0;
		if (line && !strcmp(line, "ABORT"))
			return 0;
		if (vi_ms_since(start) > ARRIVAL_WAIT_MS)
			return -1;
		usleep(200000);
	}
}

/* VI_MIGRATE_LIBVIRT: the disks made, "LIBVIRT HOME" said; then the source's
 * word, and the store follows the guest. */
static int receive_libvirt(struct vi_machine *m, const char *const *backing,
			   const uint64_t *sizes, bool *keep)
{
	char *line = NULL;
	int rc, where;

	*keep = false;
	if ((rc = vi_migrate_make_disks(&ctx.store, &m->def, backing, sizes)) < 0)
		return rc;
	printf("LIBVIRT %s\n", ctx.store.home);
	fflush(stdout);
	if (vi_migrate_read_line(stdin, &line) < 0)
		vi_error_clear();
	where = arrived(m, line);
	if (where == 0) {
		if (line && !strcmp(line, "ABORT"))
			rc = vi_error(VI_EFAIL, "the other host gave the migration up");
		else if (line && !strcmp(line, "DONE"))
			rc = vi_error(VI_EFAIL, "libvirt moved VM '%s', but it does not run here",
				      m->def.name);
		else
			rc = vi_error(VI_EFAIL, "the other host went away; VM '%s' is not here",
				      m->def.name);
	} else if (where < 0) {
		/* It may still come: its disks stay. */
		*keep = true;
		rc = vi_error(VI_ESTATE, "VM '%s' is still arriving after %d s: see 'vi list'",
			      m->def.name, ARRIVAL_WAIT_MS / 1000);
	} else {
		*keep = true;
		if ((rc = ref_layers(&m->def)) == 0 && vi_op_forwards_arrived(m) < 0) {
			vi_warn("VM '%s' runs on the other host without its port forwards: %s",
				m->def.name, vi_error_message());
			vi_error_clear();
		}
	}
	free(line);
	return rc;
}

int cmd_migrate_in(int argc, char **argv)
{
	struct vi_machine m = { 0 };
	struct vi_vm vm;
	char *staged = NULL, **backing = NULL, *marker = NULL;
	uint64_t *sizes = NULL;
	bool committed = false, keep = false;
	unsigned flags = 0;
	size_t ndisks = 0;
	int rc;
	(void)argc;

	/* stdout is the wire: what vi says goes to stderr. */
	if (incoming_check)
		return vi_migrate_answer(&ctx.store, stdin, stdout);
	if ((rc = vi_migrate_accept(&ctx.store, stdin, stdout, &vm, &staged, &flags, &backing,
				     &sizes)) < 0)
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
	if (flags & VI_MIGRATE_LIBVIRT) {
		if ((rc = commit_incoming(&vm, staged, false, &m)) < 0)
			goto fail;
		committed = true;
		if ((rc = receive_libvirt(&m, (const char *const *)backing, sizes, &keep)) < 0)
			goto fail;
		fprintf(stdout, "RUNNING\n");
		fflush(stdout);
		goto out;
	}
	if ((rc = commit_incoming(&vm, staged, true, &m)) < 0)
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
	if (committed && keep) {
		/* The guest is here, or may be: its record stays. */
	} else if (committed && (flags & VI_MIGRATE_LIBVIRT)) {
		/* Nothing of it runs or is defined here: only the store's part goes. */
		struct vi_error_saved e;
		vi_error_save(&e);
		vi_op_forget(&ctx.store, m.def.name);
		vi_error_restore(&e);
	} else if (committed) {
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
	free(sizes);
	free(staged);
	return rc;
}

/* --- the verb ------------------------------------------------------------------------ */

/* A migration's progress on a terminal, or as JSON lines with --json: the
 * files, then the guest's stream. */
struct progress {
	struct vi_progress p;
	bool started;
	double last_json;
};

static void copy_progress(void *opaque, const char *what, uint64_t done, uint64_t total)
{
	struct progress *pr = opaque;

	if (!pr->started) {
		vi_progress_start(&pr->p, total, "%s", what);
		pr->started = true;
	}
	vi_progress_update(&pr->p, done);
}

static void live_progress(void *opaque, const struct vi_hv_migrate_progress *p)
{
	struct progress *lp = opaque;
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

static void progress_end(void *opaque)
{
	struct progress *pr = opaque;

	if (pr->started)
		vi_progress_end(&pr->p);
	pr->started = false;
}

/* The lines of --check: printed, or kept for --json (list); and whether one
 * failed. */
struct checks {
	struct json_object *list;
	bool failed;
};

static void check_line(void *opaque, bool ok, const char *what, const char *detail)
{
	struct checks *c = opaque;

	c->failed |= !ok;
	if (c->list) {
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "check", vi_json_str(what));
		json_object_object_add(o, "ok", json_object_new_boolean(ok));
		json_object_object_add(o, "detail", vi_json_str(detail));
		json_object_array_add(c->list, o);
	} else {
		printf("%-4s %-10s %s\n", ok ? "ok" : "FAIL", what, detail);
	}
}

static int check(struct vi_machine *m, const struct vi_host_entry *e,
		 const struct vi_migrate_opts *o)
{
	struct checks c = { .list = ctx.json ? json_object_new_array() : NULL };
	int rc = vi_migrate_check(&ctx.store, m, e, o, check_line, &c);

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
	return rc;
}

static void report(const char *name, const struct vi_host_entry *e,
		   const struct vi_migrate_result *r)
{
	char size[32];

	if (ctx.json) {
		struct json_object *doc = vi_json_doc();
		json_object_object_add(doc, "name", vi_json_str(name));
		json_object_object_add(doc, "host", vi_json_str(e->name));
		json_object_object_add(doc, "live", json_object_new_boolean(r->live));
		json_object_object_add(doc, "total_ms", vi_json_ms(r->total_ms));
		if (!r->live) {
			json_object_object_add(doc, "bytes", json_object_new_int64((int64_t)r->bytes));
			vi_json_print(doc);
			return;
		}
		json_object_object_add(doc, "downtime_ms", vi_json_ms(r->downtime_ms));
		json_object_object_add(doc, "stream_ms", vi_json_ms(r->stream_ms));
		json_object_object_add(doc, "bytes", json_object_new_int64((int64_t)r->bytes));
		json_object_object_add(doc, "disk_bytes", json_object_new_int64((int64_t)r->disk_bytes));
		json_object_object_add(doc, "file_bytes", json_object_new_int64((int64_t)r->file_bytes));
		json_object_object_add(doc, "iterations", json_object_new_int((int)r->iterations));
		/* One line, after the progress lines. */
		vi_json_printed = true;
		printf("%s\n", json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN));
		json_object_put(doc);
		return;
	}
	vi_format_human(r->bytes, size, sizeof(size));
	char files[32], disks[32];
	vi_format_human(r->file_bytes, files, sizeof(files));
	vi_format_human(r->disk_bytes, disks, sizeof(disks));
	if (r->live)
		vi_info("moved VM '%s' to host '%s', running: %.1f s in all, paused %.1f ms, %s sent "
			"(%s of files, %s of disks) in %u iterations",
			name, e->name, r->total_ms / 1000, r->downtime_ms, size, files, disks,
			r->iterations);
	else
		vi_info("moved VM '%s' to host '%s' (stopped): %s copied in %.1f s", name, e->name,
			size, r->total_ms / 1000);
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
	struct vi_migrate_result r;
	struct progress pr = { 0 };
	struct vi_migrate_opts o = {
		.offline = offline, .tunnel = tunnel, .downtime_ms = (unsigned)downtime_ms,
		.timeout_s = (unsigned)timeout_s, .copy_progress = copy_progress,
		.live_progress = live_progress, .progress_end = progress_end, .opaque = &pr,
	};
	int rc;

	if (recover && argc != 1)
		return vi_error(VI_EUSAGE, "--recover takes the VM alone: vi migrate --recover VM");
	if (recover)
		return recover_vm(argv[0]);
	if (argc != 2)
		return vi_error(VI_EUSAGE, "missing arguments: expected VM HOST (see 'vi migrate -h')");
	if (downtime_ms == 0)
		return vi_error(VI_EUSAGE, "--downtime must be at least 1 ms");
	if (bandwidth_text &&
	    (rc = vi_parse_size_in(bandwidth_text, "--bandwidth", 1, UINT64_MAX, &o.bandwidth)) < 0)
		return rc;
	if (!converge_text || !strcmp(converge_text, "auto"))
		o.converge = VI_HV_CONVERGE_AUTO;
	else if (!strcmp(converge_text, "pause"))
		o.converge = VI_HV_CONVERGE_PAUSE;
	else if (!strcmp(converge_text, "abort"))
		o.converge = VI_HV_CONVERGE_ABORT;
	else
		return vi_error(VI_EUSAGE, "--converge takes auto, pause or abort, not '%s'",
				converge_text);
	if ((rc = vi_hosts_load(&ctx.store, &hosts)) < 0)
		return rc;
	if ((rc = vi_hosts_get(&hosts, argv[1], &e)) < 0)
		goto out_hosts;
	if ((rc = vi_machine_open(&ctx.store, &ctx.plugins, argv[0], NULL, true, &m)) < 0)
		goto out_hosts;
	if (check_only)
		rc = check(&m, e, &o);
	else if ((rc = vi_migrate_vm(&ctx.store, &m, e, &o, &r)) == 0)
		report(m.def.name, e, &r);
	vi_machine_release(&m);
out_hosts:
	vi_hosts_release(&hosts);
	return rc;
}
