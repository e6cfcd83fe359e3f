/* The policy engine: the policy store, sampling, decisions, actions, the
 * state that survives a restart and the audit log (engine.h). */
#include "engine.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "grow.h"
#include "host.h"
#include "machine.h"
#include "metrics.h"
#include "migrate-run.h"
#include "ops.h"
#include "output.h"
#include "snapshot.h"
#include "util.h"

/* How long an exec action may run before it is killed, and how long an action
 * waits for a VM that a command holds. */
#define EXEC_TIMEOUT_MS 60000
#define LOCK_TIMEOUT_MS 10000
#define STOP_TIMEOUT_MS 30000

static double wall_now(void)
{
	struct timeval tv;

	gettimeofday(&tv, NULL);
	return (double)tv.tv_sec + tv.tv_usec / 1e6;
}

/* --- the policy store ---------------------------------------------------------------- */

static char *policy_path(const struct vi_store *s, const char *name, const char *ext)
{
	return vi_store_path(s, "policies/%s.%s", name, ext);
}

static int cmp_policy(const void *a, const void *b)
{
	return strcmp(((const struct vi_policy *)a)->name, ((const struct vi_policy *)b)->name);
}

int vi_policies_load(const struct vi_store *s, struct vi_policy **out, bool **enabled,
		     size_t *n)
{
	char *dir = vi_store_path(s, "policies");
	DIR *d = opendir(dir);
	struct vi_policy *all = NULL;
	size_t count = 0;
	struct dirent *de;
	int rc = 0;

	*out = NULL;
	*enabled = NULL;
	*n = 0;
	if (!d) {
		free(dir);
		return 0;
	}
	while ((de = readdir(d))) {
		size_t len = strlen(de->d_name);
		char *path, *text = NULL, *name;
		struct vi_policy *got = NULL;
		size_t ngot = 0, tlen = 0;

		if (len < 6 || strcmp(de->d_name + len - 5, ".yaml") || de->d_name[0] == '.')
			continue;
		name = xstrndup(de->d_name, len - 5);
		path = policy_path(s, name, "yaml");
		rc = vi_read_file(path, &text, &tlen);
		if (rc == 0)
			rc = vi_policy_parse(path, text, tlen, &got, &ngot);
		if (rc == 0 && (ngot != 1 || strcmp(got[0].name, name)))
			rc = vi_error(VI_EFAIL, "'%s' does not hold policy '%s' alone", path, name);
		free(text);
		free(path);
		free(name);
		if (rc < 0) {
			vi_policy_free_all(got, ngot);
			break;
		}
		all = xrealloc(all, (count + 1) * sizeof(*all));
		all[count++] = got[0];
		free(got);
	}
	closedir(d);
	free(dir);
	if (rc < 0) {
		vi_policy_free_all(all, count);
		return rc;
	}
	if (count)
		qsort(all, count, sizeof(*all), cmp_policy);
	*enabled = xcalloc(count ? count : 1, sizeof(bool));
	for (size_t i = 0; i < count; i++) {
		char *off = policy_path(s, all[i].name, "off");
		(*enabled)[i] = !vi_file_exists(off);
		free(off);
	}
	*out = all;
	*n = count;
	return 0;
}

void vi_policies_free(struct vi_policy *p, bool *enabled, size_t n)
{
	vi_policy_free_all(p, n);
	free(enabled);
}

int vi_policies_exists(const struct vi_store *s, const char *name)
{
	struct vi_policy *p;
	bool *en;
	size_t n;
	const char **names;
	const char *near;
	int rc;

	if ((rc = vi_check_name(name, "policy")) < 0)
		return rc;
	char *path = policy_path(s, name, "yaml");
	bool there = vi_file_exists(path);
	free(path);
	if (there)
		return 0;
	if (vi_policies_load(s, &p, &en, &n) < 0) {
		vi_error_clear();
		n = 0;
		p = NULL;
		en = NULL;
	}
	names = xcalloc(n ? n : 1, sizeof(*names));
	for (size_t i = 0; i < n; i++)
		names[i] = p[i].name;
	near = vi_suggest(name, names, n);
	if (near)
		rc = vi_error(VI_ENOTFOUND, "no policy named '%s'; did you mean '%s'?", name, near);
	else
		rc = vi_error(VI_ENOTFOUND, "no policy named '%s'", name);
	free(names);
	vi_policies_free(p, en, n);
	return rc;
}

int vi_policies_add(const struct vi_store *s, const char *source, const char *text, size_t len,
		    bool replace, char ***names, size_t *n)
{
	struct vi_policy *got = NULL;
	size_t ngot = 0;
	char *dir = vi_store_path(s, "policies");
	int rc;

	*names = NULL;
	*n = 0;
	if ((rc = vi_policy_parse(source, text, len, &got, &ngot)) < 0)
		goto out;
	if (!ngot) {
		rc = vi_error(VI_EUSAGE, "'%s' holds no policy", source);
		goto out;
	}
	if ((rc = vi_mkdir_p(dir, 0700)) < 0)
		goto out;
	for (size_t i = 0; i < ngot && !replace; i++) {
		char *path = policy_path(s, got[i].name, "yaml");
		bool there = vi_file_exists(path);
		free(path);
		if (there) {
			rc = vi_error(VI_ESTATE,
				      "policy '%s' exists: 'vi policy add --replace' replaces it",
				      got[i].name);
			goto out;
		}
	}
	vi_sync_defer();
	for (size_t i = 0; i < ngot && rc == 0; i++) {
		char *path = policy_path(s, got[i].name, "yaml");
		size_t tl = strlen(got[i].text);
		char *doc = xmalloc(tl + 2);

		memcpy(doc, got[i].text, tl);
		doc[tl] = '\n';
		doc[tl + 1] = 0;
		rc = vi_write_file_atomic(path, doc, tl + (tl && got[i].text[tl - 1] != '\n'), 0600);
		free(doc);
		free(path);
	}
	if (vi_sync_flush() < 0 && rc == 0)
		rc = -VI_EFAIL;
	if (rc == 0) {
		*names = xcalloc(ngot, sizeof(char *));
		for (size_t i = 0; i < ngot; i++)
			(*names)[i] = xstrdup(got[i].name);
		*n = ngot;
	}
out:
	vi_policy_free_all(got, ngot);
	free(dir);
	return rc;
}

int vi_policies_remove(const struct vi_store *s, const char *name)
{
	int rc = vi_policies_exists(s, name);
	char *path, *off;

	if (rc < 0)
		return rc;
	path = policy_path(s, name, "yaml");
	off = policy_path(s, name, "off");
	if (unlink(path) < 0)
		rc = vi_error_errno(VI_EFAIL, errno, "cannot remove '%s'", path);
	else
		unlink(off);
	free(path);
	free(off);
	return rc;
}

int vi_policies_enable(const struct vi_store *s, const char *name, bool enable)
{
	int rc = vi_policies_exists(s, name);
	char *off;

	if (rc < 0)
		return rc;
	off = policy_path(s, name, "off");
	if (enable) {
		if (unlink(off) < 0 && errno != ENOENT)
			rc = vi_error_errno(VI_EFAIL, errno, "cannot remove '%s'", off);
	} else {
		rc = vi_write_file_atomic(off, "", 0, 0600);
	}
	free(off);
	return rc;
}

/* --- decisions ----------------------------------------------------------------------- */

const char *vi_decision_name(enum vi_decision d)
{
	static const char *const names[] = {
		[VI_DEC_FIRE] = "fire",		    [VI_DEC_HOLD] = "hold",
		[VI_DEC_COOLDOWN] = "cooldown",	    [VI_DEC_BOUND] = "bound",
		[VI_DEC_UNSUPPORTED] = "unsupported", [VI_DEC_SCHEDULE] = "schedule",
		[VI_DEC_NO] = "no",		    [VI_DEC_UNKNOWN] = "unknown",
		[VI_DEC_NO_VMS] = "no-vms",	    [VI_DEC_DISABLED] = "disabled",
	};
	return d <= VI_DEC_DISABLED ? names[d] : "?";
}

static struct json_object *json_number(double v)
{
	if (isnan(v))
		return NULL;
	if (v == floor(v) && fabs(v) < 9e15)
		return json_object_new_int64((int64_t)v);
	return json_object_new_double(round(v * 100) / 100);
}

struct json_object *vi_decision_json(const struct vi_decision_rec *r)
{
	struct json_object *o = vi_json_doc(), *vals = json_object_new_object();
	char when[32];
	time_t t = (time_t)r->time;
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	json_object_object_add(o, "time", json_object_new_string(when));
	json_object_object_add(o, "ts", json_object_new_double(round(r->time * 1000) / 1000));
	json_object_object_add(o, "policy", json_object_new_string(r->policy));
	json_object_object_add(o, "vm", json_object_new_string(r->vm));
	json_object_object_add(o, "decision",
			       json_object_new_string(vi_decision_name(r->decision)));
	json_object_object_add(o, "why", vi_json_str(r->why));
	for (int m = 0; m < VI_M_COUNT; m++) {
		if (!r->used[m])
			continue;
		if (m == VI_M_STATE)
			json_object_object_add(vals, vi_metric_table[m].name,
					       json_object_new_string(
						       vi_hv_state_name((int)r->values[m])));
		else
			json_object_object_add(vals, vi_metric_table[m].name,
					       json_number(r->values[m]));
	}
	json_object_object_add(o, "values", vals);
	if (r->action) {
		json_object_object_add(o, "action", json_object_new_string(r->action));
		json_object_object_add(o, "result", vi_json_str(r->result));
		json_object_object_add(o, "detail", vi_json_str(r->detail));
	}
	return o;
}

char *vi_audit_path(const struct vi_store *s)
{
	return vi_store_path(s, "policies/audit.log");
}

/* --- the engine's memory --------------------------------------------------------------- */

struct sample {
	double t;
	double v[VI_M_COUNT];
};

/* A VM's recent figures: the window every policy reads. */
struct history {
	char *vm;
	char **labels;
	size_t nlabels;
	struct sample *s;
	size_t n;
	struct vi_vm_sample prev; /* its last raw counters, for rates */
	bool have_prev, seen;
};

/* Per policy and VM ("*" for a policy across all or avg). */
struct target {
	char *policy, *vm;
	double held_since, last_fired;
	char *last_action, *last_result;
	char *logged; /* the decision and reason last written to the audit log */
	int decision; /* the latest, and why */
	char *why;
};

struct vi_engine {
	const struct vi_store *store;
	struct vi_hv_set *plugins;
	bool run;
	int lock_fd;
	struct vi_policy *policies;
	bool *enabled;
	size_t npolicies;
	struct history *hist;
	size_t nhist;
	struct target *targets;
	size_t ntargets;
	struct vi_host_sample host_prev;
	bool have_host_prev;
	double host[VI_M_COUNT];
	double now;
};

static struct history *history_get(struct vi_engine *e, const char *vm, bool make)
{
	for (size_t i = 0; i < e->nhist; i++)
		if (!strcmp(e->hist[i].vm, vm))
			return &e->hist[i];
	if (!make)
		return NULL;
	e->hist = xrealloc(e->hist, (e->nhist + 1) * sizeof(*e->hist));
	memset(&e->hist[e->nhist], 0, sizeof(*e->hist));
	e->hist[e->nhist].vm = xstrdup(vm);
	return &e->hist[e->nhist++];
}

static void history_labels_clear(struct history *h)
{
	for (size_t i = 0; i < h->nlabels; i++)
		free(h->labels[i]);
	free(h->labels);
	h->labels = NULL;
	h->nlabels = 0;
}

static struct target *target_get(struct vi_engine *e, const char *policy, const char *vm)
{
	for (size_t i = 0; i < e->ntargets; i++)
		if (!strcmp(e->targets[i].policy, policy) && !strcmp(e->targets[i].vm, vm))
			return &e->targets[i];
	e->targets = xrealloc(e->targets, (e->ntargets + 1) * sizeof(*e->targets));
	memset(&e->targets[e->ntargets], 0, sizeof(*e->targets));
	e->targets[e->ntargets].policy = xstrdup(policy);
	e->targets[e->ntargets].vm = xstrdup(vm);
	return &e->targets[e->ntargets++];
}

static void target_release(struct target *t)
{
	free(t->policy);
	free(t->vm);
	free(t->last_action);
	free(t->last_result);
	free(t->logged);
	free(t->why);
}

static void set_str(char **dst, const char *s)
{
	free(*dst);
	*dst = s ? xstrdup(s) : NULL;
}

/* The longest window any policy reads, so older samples can go. */
static double longest_window(const struct vi_engine *e)
{
	double w = 60;

	for (size_t i = 0; i < e->npolicies; i++)
		if (e->policies[i].window > w)
			w = e->policies[i].window;
	return w;
}

/* --- state that survives a restart --------------------------------------------------- */

static char *state_path(const struct vi_store *s)
{
	return vi_store_path(s, "policies/engine.json");
}

static double jnum(struct json_object *o, const char *key)
{
	struct json_object *v;

	if (!json_object_object_get_ex(o, key, &v) || json_object_is_type(v, json_type_null))
		return NAN;
	return json_object_get_double(v);
}

static struct json_object *state_read(const struct vi_store *s)
{
	char *path = state_path(s), *text = NULL;
	struct json_object *o = NULL;

	if (vi_read_file(path, &text, NULL) == 0)
		o = json_tokener_parse(text);
	else
		vi_error_clear();
	free(text);
	free(path);
	return o;
}

static void state_load(struct vi_engine *e)
{
	struct json_object *o = state_read(e->store), *arr, *wins;

	if (!o)
		return;
	if (json_object_object_get_ex(o, "targets", &arr) &&
	    json_object_is_type(arr, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(arr); i++) {
			struct json_object *t = json_object_array_get_idx(arr, i);
			const char *p = vi_json_get_str(t, "policy"), *vm = vi_json_get_str(t, "vm");
			struct target *tg;
			double v;

			if (!p || !vm)
				continue;
			tg = target_get(e, p, vm);
			v = jnum(t, "held_since");
			tg->held_since = isnan(v) ? 0 : v;
			v = jnum(t, "last_fired");
			tg->last_fired = isnan(v) ? 0 : v;
			set_str(&tg->last_action, vi_json_get_str(t, "last_action"));
			set_str(&tg->last_result, vi_json_get_str(t, "last_result"));
			set_str(&tg->logged, vi_json_get_str(t, "logged"));
		}
	}
	if (json_object_object_get_ex(o, "windows", &wins) &&
	    json_object_is_type(wins, json_type_object)) {
		json_object_object_foreach(wins, vm, samples)
		{
			struct history *h;

			if (!json_object_is_type(samples, json_type_array))
				continue;
			h = history_get(e, vm, true);
			for (size_t i = 0; i < json_object_array_length(samples); i++) {
				struct json_object *row = json_object_array_get_idx(samples, i);
				struct sample smp;

				if (!json_object_is_type(row, json_type_object))
					continue;
				smp.t = jnum(row, "t");
				if (isnan(smp.t))
					continue;
				for (int m = 0; m < VI_M_COUNT; m++)
					smp.v[m] = jnum(row, vi_metric_table[m].name);
				h->s = xrealloc(h->s, (h->n + 1) * sizeof(*h->s));
				h->s[h->n++] = smp;
			}
		}
	}
	json_object_put(o);
}

static int state_save(struct vi_engine *e)
{
	struct json_object *o = vi_json_doc(), *arr = json_object_new_array(),
			   *wins = json_object_new_object();
	char *path = state_path(e->store);
	const char *text;
	int rc;

	json_object_object_add(o, "saved", json_object_new_double(e->now));
	for (size_t i = 0; i < e->ntargets; i++) {
		struct target *t = &e->targets[i];
		struct json_object *j = json_object_new_object();

		json_object_object_add(j, "policy", json_object_new_string(t->policy));
		json_object_object_add(j, "vm", json_object_new_string(t->vm));
		json_object_object_add(j, "held_since", json_object_new_double(t->held_since));
		json_object_object_add(j, "last_fired", json_object_new_double(t->last_fired));
		json_object_object_add(j, "last_action", vi_json_str(t->last_action));
		json_object_object_add(j, "last_result", vi_json_str(t->last_result));
		json_object_object_add(j, "logged", vi_json_str(t->logged));
		json_object_object_add(j, "decision",
				       json_object_new_string(vi_decision_name(t->decision)));
		json_object_object_add(j, "why", vi_json_str(t->why));
		json_object_array_add(arr, j);
	}
	json_object_object_add(o, "targets", arr);
	for (size_t i = 0; i < e->nhist; i++) {
		struct json_object *samples = json_object_new_array();

		for (size_t k = 0; k < e->hist[i].n; k++) {
			struct json_object *row = json_object_new_object();
			struct sample *smp = &e->hist[i].s[k];

			json_object_object_add(row, "t", json_object_new_double(smp->t));
			for (int m = 0; m < VI_M_COUNT; m++)
				if (!isnan(smp->v[m]))
					json_object_object_add(row, vi_metric_table[m].name,
							       json_number(smp->v[m]));
			json_object_array_add(samples, row);
		}
		json_object_object_add(wins, e->hist[i].vm, samples);
	}
	json_object_object_add(o, "windows", wins);
	text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);
	rc = vi_write_file_atomic(path, text, strlen(text), 0600);
	json_object_put(o);
	free(path);
	return rc;
}

/* How near a decision came to acting, for choosing the one to show. */
static int nearness(const char *decision)
{
	static const char *const order[] = { "fire", "hold", "cooldown", "bound", "unsupported",
					     "unknown", "no" };

	for (size_t i = 0; decision && i < sizeof(order) / sizeof(*order); i++)
		if (!strcmp(decision, order[i]))
			return (int)i;
	return 99;
}

bool vi_engine_last(const struct vi_store *s, const char *policy, struct vi_policy_last *out)
{
	struct json_object *o = state_read(s), *arr;
	bool found = false;
	int best = 100;

	memset(out, 0, sizeof(*out));
	if (o && json_object_object_get_ex(o, "targets", &arr) &&
	    json_object_is_type(arr, json_type_array)) {
		for (size_t i = 0; i < json_object_array_length(arr); i++) {
			struct json_object *t = json_object_array_get_idx(arr, i);
			const char *p = vi_json_get_str(t, "policy");
			const char *vm = vi_json_get_str(t, "vm") ?: "";
			const char *dec = vi_json_get_str(t, "decision");
			double f = jnum(t, "last_fired");

			if (!p || strcmp(p, policy))
				continue;
			found = true;
			if (nearness(dec) < best) {
				best = nearness(dec);
				snprintf(out->decision, sizeof(out->decision), "%s", dec);
				snprintf(out->decided_vm, sizeof(out->decided_vm), "%s", vm);
				snprintf(out->why, sizeof(out->why), "%s",
					 vi_json_get_str(t, "why") ?: "");
			}
			if (isnan(f) || f <= out->time)
				continue;
			out->time = f;
			snprintf(out->vm, sizeof(out->vm), "%s", vm);
			snprintf(out->action, sizeof(out->action), "%s",
				 vi_json_get_str(t, "last_action") ?: "");
			snprintf(out->result, sizeof(out->result), "%s",
				 vi_json_get_str(t, "last_result") ?: "");
		}
	}
	if (o)
		json_object_put(o);
	return found;
}

/* --- open, lock, free ---------------------------------------------------------------- */

static char *lock_path(const struct vi_store *s)
{
	return vi_store_path(s, "policies/engine.lock");
}

long vi_engine_running(const struct vi_store *s)
{
	char *path = lock_path(s);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	long pid = 0;

	free(path);
	if (fd < 0)
		return 0;
	if (flock(fd, LOCK_SH | LOCK_NB) < 0 && errno == EWOULDBLOCK) {
		char buf[32] = "";
		ssize_t got = pread(fd, buf, sizeof(buf) - 1, 0);
		pid = got > 0 ? atol(buf) : -1;
		if (pid == 0)
			pid = -1;
	}
	close(fd);
	return pid;
}

static int engine_lock(struct vi_engine *e)
{
	char *dir = vi_store_path(e->store, "policies"), *path = lock_path(e->store);
	char buf[32];
	int fd, rc = 0;

	if ((rc = vi_mkdir_p(dir, 0700)) < 0)
		goto out;
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot open '%s'", path);
		goto out;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		ssize_t got = pread(fd, buf, sizeof(buf) - 1, 0);
		buf[got > 0 ? got : 0] = 0;
		close(fd);
		rc = vi_error(VI_ESTATE, "a policy engine already runs on this store (pid %ld)",
			      atol(buf));
		goto out;
	}
	snprintf(buf, sizeof(buf), "%ld\n", (long)getpid());
	if (ftruncate(fd, 0) < 0 || pwrite(fd, buf, strlen(buf), 0) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot write '%s'", path);
		close(fd);
		goto out;
	}
	e->lock_fd = fd;
out:
	free(dir);
	free(path);
	return rc;
}

int vi_engine_open(struct vi_engine **out, const struct vi_store *s, struct vi_hv_set *plugins,
		   bool run)
{
	struct vi_engine *e = xcalloc(1, sizeof(*e));
	int rc;

	e->store = s;
	e->plugins = plugins;
	e->run = run;
	e->lock_fd = -1;
	for (int m = 0; m < VI_M_COUNT; m++)
		e->host[m] = NAN;
	if ((run && (rc = engine_lock(e)) < 0) ||
	    (rc = vi_policies_load(s, &e->policies, &e->enabled, &e->npolicies)) < 0) {
		vi_engine_free(e);
		return rc;
	}
	state_load(e);
	*out = e;
	return 0;
}

void vi_engine_free(struct vi_engine *e)
{
	if (!e)
		return;
	vi_policies_free(e->policies, e->enabled, e->npolicies);
	for (size_t i = 0; i < e->nhist; i++) {
		free(e->hist[i].vm);
		free(e->hist[i].s);
		history_labels_clear(&e->hist[i]);
	}
	free(e->hist);
	for (size_t i = 0; i < e->ntargets; i++) {
		target_release(&e->targets[i]);
	}
	free(e->targets);
	if (e->lock_fd >= 0)
		close(e->lock_fd);
	free(e);
}

/* --- sampling ------------------------------------------------------------------------ */

static bool selected_by_any(const struct vi_engine *e, const char *name, const struct vi_vm *def)
{
	for (size_t i = 0; i < e->npolicies; i++)
		if (vi_policy_selects(&e->policies[i], name, (const char *const *)def->labels,
				      def->nlabels))
			return true;
	return false;
}

static void sample_vm(struct vi_engine *e, const char *name)
{
	struct vi_machine m;
	struct vi_vm_sample now;
	struct history *h;
	struct sample smp;
	double keep = longest_window(e) + 1;

	struct vi_vm def;
	bool wanted;

	/* The definition alone says whether a policy selects it: the backend is
	 * asked only about those. */
	if (vi_store_load_vm(e->store, name, &def) < 0) {
		vi_error_clear();
		return;
	}
	wanted = selected_by_any(e, name, &def);
	vi_vm_release(&def);
	if (!wanted)
		return;
	if (vi_machine_open(e->store, e->plugins, name, NULL, false, &m) < 0) {
		vi_error_clear();
		return;
	}
	h = history_get(e, name, true);
	h->seen = true;
	history_labels_clear(h);
	for (size_t i = 0; i < m.def.nlabels; i++)
		vi_strv_add(&h->labels, &h->nlabels, m.def.labels[i]);
	if (vi_metrics_sample_vm(&m, &now) < 0) {
		vi_error_clear();
		vi_machine_release(&m);
		return;
	}
	vi_machine_release(&m);
	vi_metrics_vm(h->have_prev ? &h->prev : NULL, &now, smp.v);
	for (int k = 0; k < VI_M_COUNT; k++)
		if (vi_metric_table[k].host)
			smp.v[k] = e->host[k];
	smp.t = e->now;
	h->prev = now;
	h->have_prev = true;
	/* Drop what no window reads any more. */
	size_t drop = 0;
	while (drop < h->n && h->s[drop].t < e->now - keep)
		drop++;
	if (drop)
		memmove(h->s, h->s + drop, (h->n - drop) * sizeof(*h->s));
	h->n -= drop;
	h->s = xrealloc(h->s, (h->n + 1) * sizeof(*h->s));
	h->s[h->n++] = smp;
}

int vi_engine_sample(struct vi_engine *e)
{
	struct vi_host_sample hs;
	char **names = NULL;
	size_t n = 0;
	int rc;

	e->now = wall_now();
	vi_policies_free(e->policies, e->enabled, e->npolicies);
	e->policies = NULL;
	e->enabled = NULL;
	e->npolicies = 0;
	if ((rc = vi_policies_load(e->store, &e->policies, &e->enabled, &e->npolicies)) < 0)
		return rc;
	if (vi_metrics_sample_host(&hs) == 0) {
		vi_metrics_host(e->have_host_prev ? &e->host_prev : NULL, &hs, e->host);
		e->host_prev = hs;
		e->have_host_prev = true;
	} else {
		vi_error_clear();
	}
	if ((rc = vi_store_list_vms(e->store, &names, &n)) < 0)
		return rc;
	for (size_t i = 0; i < e->nhist; i++)
		e->hist[i].seen = false;
	for (size_t i = 0; i < n; i++)
		sample_vm(e, names[i]);
	vi_store_names_free(names, n);
	return 0;
}

/* --- deciding ------------------------------------------------------------------------ */

/* Figures that are the VM's as it is now, not a load to aggregate. */
static bool point_metric(int m)
{
	return m == VI_M_STATE || m == VI_M_CPUS || m == VI_M_MAX_CPUS || m == VI_M_MEMORY ||
	       m == VI_M_MAX_MEMORY || m == VI_M_UPTIME;
}

/* h's figures over p's window. */
static void aggregate(const struct vi_engine *e, const struct vi_policy *p,
		      const struct history *h, double out[VI_M_COUNT])
{
	double *vals = xcalloc(h->n ? h->n : 1, sizeof(double));

	for (int m = 0; m < VI_M_COUNT; m++) {
		size_t k = 0;

		out[m] = NAN;
		if (!h->n)
			continue;
		if (point_metric(m)) {
			out[m] = h->s[h->n - 1].v[m];
			continue;
		}
		for (size_t i = 0; i < h->n; i++)
			if (h->s[i].t > e->now - p->window - 0.5)
				vals[k++] = h->s[i].v[m];
		out[m] = vi_policy_aggregate(p->aggregate, vals, k);
	}
	free(vals);
}

static bool is_grow(const struct vi_policy_action *a)
{
	return a->kind == VI_ACT_GROW || a->kind == VI_ACT_SHRINK;
}

/* The value an amount gives from `from`. */
static uint64_t amount_to(const struct vi_grow_amount *a, uint64_t from)
{
	if (!a->given)
		return from;
	if (a->sign > 0)
		return from + a->value;
	if (a->sign < 0)
		return a->value > from ? 0 : from - a->value;
	return a->value;
}

/* Clamps one amount to [lo, hi] (0: no bound) from `from`: false when it
 * cannot move at all, with why. */
static bool clamp_amount(struct vi_grow_amount *a, uint64_t from, uint64_t lo, uint64_t hi,
			 const char *what, bool size, char *why, size_t wlen)
{
	uint64_t to = amount_to(a, from);
	char b1[32], b2[32];

	if (!a->given)
		return true;
	if (hi && to > hi) {
		if (from >= hi) {
			snprintf(why, wlen, "%s already at %s, its bound max", what,
				 size ? vi_format_size(from, b1, sizeof(b1))
				      : (snprintf(b1, sizeof(b1), "%llu", (unsigned long long)from), b1));
			return false;
		}
		*a = (struct vi_grow_amount){ .given = true, .sign = 0, .value = hi };
	}
	if (lo && to < lo) {
		if (from <= lo) {
			snprintf(why, wlen, "%s already at %s, its bound min", what,
				 size ? vi_format_size(from, b2, sizeof(b2))
				      : (snprintf(b2, sizeof(b2), "%llu", (unsigned long long)from), b2));
			return false;
		}
		*a = (struct vi_grow_amount){ .given = true, .sign = 0, .value = lo };
	}
	return true;
}

/* An action's grow request for VM m within p's bounds: false (and why) when
 * the bounds leave nothing to change. */
static bool bounded_grow(const struct vi_policy *p, const struct vi_policy_action *a,
			 const struct vi_machine *m, struct vi_grow *g, char *why, size_t wlen)
{
	bool any = false;

	memset(g, 0, sizeof(*g));
	g->cpus = a->grow.cpus;
	g->memory = a->grow.memory;
	g->no_fs = a->grow.no_fs;
	if (g->cpus.given) {
		if (clamp_amount(&g->cpus, m->def.cpus, p->min.cpus, p->max.cpus, "cpus", false, why,
				 wlen))
			any = true;
		else
			g->cpus.given = false;
	}
	if (g->memory.given) {
		if (clamp_amount(&g->memory, m->def.memory, p->min.memory, p->max.memory, "memory",
				 true, why, wlen))
			any = true;
		else
			g->memory.given = false;
	}
	/* Disks are checked against max.disk once planned (disk_beyond). */
	if (a->grow.ndisks) {
		g->disks = xcalloc(a->grow.ndisks, sizeof(*g->disks));
		for (size_t i = 0; i < a->grow.ndisks; i++) {
			g->disks[i].name = xstrdup(a->grow.disks[i].name);
			g->disks[i].size = a->grow.disks[i].size;
		}
		g->ndisks = a->grow.ndisks;
		any = true;
	}
	return any;
}

/* A planned disk past the policy's max.disk: why, and true. */
static bool disk_beyond(const struct vi_policy *p, const struct vi_grow_plan *plan, char *why,
			size_t wlen)
{
	char b1[32], b2[32];

	for (size_t i = 0; i < plan->ndisks && p->max.disk; i++) {
		if (plan->disks[i].to <= p->max.disk)
			continue;
		snprintf(why, wlen, "disk %s would be %s, past its bound max %s", plan->disks[i].name,
			 vi_format_size(plan->disks[i].to, b1, sizeof(b1)),
			 vi_format_size(p->max.disk, b2, sizeof(b2)));
		return true;
	}
	return false;
}

struct decide {
	struct vi_engine *e;
	const struct vi_policy *p;
	vi_decision_fn fn;
	void *opaque;
	FILE *audit;
};

static void emit(struct decide *d, const struct vi_decision_rec *r, bool log)
{
	/* The engine tells what it logs; a plan tells everything. */
	if (d->fn && (log || !d->e->run))
		d->fn(d->opaque, r);
	if (log && d->audit) {
		struct json_object *o = vi_decision_json(r);
		fprintf(d->audit, "%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		fflush(d->audit);
		json_object_put(o);
	}
}

/* Runs command by /bin/sh -c with what decided it in its environment. */
static int run_exec(const struct vi_decision_rec *r, const struct vi_policy *p,
		    const struct vi_policy_action *a, char *detail, size_t dlen)
{
	const char *command = a->command;
	pid_t pid = fork();
	int status = 0;
	double start = vi_now_ms();

	if (pid < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot run '%s'", command);
	if (pid == 0) {
		char num[64], key[64];
		int null = open("/dev/null", O_RDWR);

		if (null >= 0) {
			dup2(null, 0);
			if (null > 2)
				close(null);
		}
		char *action = vi_policy_action_str(a);

		setenv("VI_VM", r->vm, 1);
		setenv("VI_POLICY", p->name, 1);
		setenv("VI_ACTION", action, 1);
		setenv("VI_WHEN", p->when_text ? p->when_text : "", 1);
		for (int m = 0; m < VI_M_COUNT; m++) {
			if (!r->used[m])
				continue;
			vi_policy_metric_env(m, key, sizeof(key));
			if (m == VI_M_STATE)
				snprintf(num, sizeof(num), "%s", vi_hv_state_name((int)r->values[m]));
			else if (isnan(r->values[m]))
				num[0] = 0;
			else if (r->values[m] == floor(r->values[m]))
				snprintf(num, sizeof(num), "%.0f", r->values[m]);
			else
				snprintf(num, sizeof(num), "%.2f", r->values[m]);
			setenv(key, num, 1);
		}
		execl("/bin/sh", "sh", "-c", command, (char *)NULL);
		_exit(127);
	}
	for (;;) {
		pid_t got = waitpid(pid, &status, WNOHANG);
		if (got == pid)
			break;
		if (got < 0 && errno != EINTR)
			return vi_error_errno(VI_EFAIL, errno, "cannot wait for '%s'", command);
		if (vi_ms_since(start) > EXEC_TIMEOUT_MS) {
			kill(pid, SIGKILL);
			waitpid(pid, &status, 0);
			return vi_error(VI_ETIMEOUT, "'%s' ran for more than %d s: killed", command,
					EXEC_TIMEOUT_MS / 1000);
		}
		usleep(20000);
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		snprintf(detail, dlen, "exit status 0");
		return 0;
	}
	if (WIFSIGNALED(status))
		return vi_error(VI_EFAIL, "'%s' was killed by signal %d", command,
				WTERMSIG(status));
	return vi_error(VI_EFAIL, "'%s' exited with status %d", command, WEXITSTATUS(status));
}

/* The policy's own snapshots are named after it: POLICY-YYYYMMDD-HHMMSS. */
static int run_snapshot(struct vi_engine *e, struct vi_machine *m, const struct vi_policy *p,
			unsigned keep, char *detail, size_t dlen)
{
	char name[128], stamp[32];
	time_t t = (time_t)e->now;
	struct tm tm;
	struct vi_snapshot_spec spec = { .name = name, .message = NULL };
	struct vi_snapshot *snaps = NULL;
	char *made = NULL;
	size_t n = 0, mine = 0, removed = 0;
	int rc;

	localtime_r(&t, &tm);
	strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", &tm);
	snprintf(name, sizeof(name), "%s-%s", p->name, stamp);
	if ((rc = vi_snapshot_create(e->store, m, &spec, &made)) < 0)
		return rc;
	snprintf(detail, dlen, "snapshot '%s'", made);
	free(made);
	if (!keep || vi_snapshot_list(e->store, m->def.name, &snaps, &n) < 0) {
		vi_error_clear();
		return 0;
	}
	size_t plen = strlen(p->name);
	for (size_t i = 0; i < n; i++)
		if (!strncmp(snaps[i].name, p->name, plen) && snaps[i].name[plen] == '-')
			mine++;
	/* Oldest first: the names sort by time. */
	for (size_t i = 0; i < n && mine - removed > keep; i++) {
		size_t oldest = n;
		for (size_t k = 0; k < n; k++) {
			if (!snaps[k].name || strncmp(snaps[k].name, p->name, plen) ||
			    snaps[k].name[plen] != '-')
				continue;
			if (oldest == n || strcmp(snaps[k].name, snaps[oldest].name) < 0)
				oldest = k;
		}
		if (oldest == n)
			break;
		if (vi_snapshot_delete(e->store, m, snaps[oldest].name) < 0) {
			vi_error_clear();
			break;
		}
		free(snaps[oldest].name);
		snaps[oldest].name = xstrdup("");
		removed++;
	}
	if (removed)
		snprintf(detail + strlen(detail), dlen - strlen(detail), ", %zu old one%s removed",
			 removed, removed == 1 ? "" : "s");
	vi_snapshots_free(snaps, n);
	return 0;
}

/* Moves m to host (a host's name, or least-loaded); m is released. */
static int run_migrate(struct vi_engine *e, struct vi_machine *m, const char *host, char *detail,
		       size_t dlen)
{
	struct vi_hosts hosts;
	const struct vi_host_entry *to = NULL;
	struct vi_host_entry *named;
	struct vi_migrate_opts o = { 0 };
	struct vi_migrate_result r = { 0 };
	int rc;

	if ((rc = vi_hosts_load(e->store, &hosts)) < 0) {
		vi_machine_release(m);
		return rc;
	}
	if (!strcmp(host, "least-loaded"))
		rc = vi_hosts_least_loaded(e->store, &hosts, &m->def, &to);
	else if ((rc = vi_hosts_get(&hosts, host, &named)) == 0)
		to = named;
	if (rc == 0)
		rc = vi_migrate_vm(e->store, m, to, &o, &r);
	if (rc == 0)
		snprintf(detail, dlen, "moved to host '%s'%s in %.1f s", to->name,
			 r.live ? " live" : " (stopped)", r.total_ms / 1000);
	vi_machine_release(m);
	vi_hosts_release(&hosts);
	return rc;
}

/* Runs one action on the VM r->vm, under its lock. */
static int run_action(struct decide *d, const struct vi_decision_rec *r,
		      const struct vi_policy_action *a, char *detail, size_t dlen)
{
	struct vi_engine *e = d->e;
	struct vi_machine m;
	struct vi_hv_state st;
	int lock, rc;

	detail[0] = 0;
	if (a->kind == VI_ACT_EXEC)
		return run_exec(r, d->p, a, detail, dlen);
	if ((lock = vi_store_lock_vm(e->store, r->vm, LOCK_TIMEOUT_MS)) < 0)
		return lock;
	if ((rc = vi_machine_open(e->store, e->plugins, r->vm, NULL, true, &m)) < 0) {
		vi_store_unlock(lock);
		return rc;
	}
	vi_machine_state(&m, &st);
	vi_error_clear();
	switch (a->kind) {
	case VI_ACT_GROW:
	case VI_ACT_SHRINK: {
		struct vi_grow g;
		struct vi_grow_plan plan;
		struct vi_grow_result res;

		if (!bounded_grow(d->p, a, &m, &g, detail, dlen)) {
			rc = vi_error(VI_ESTATE, "%s", detail);
			vi_grow_release(&g);
			break;
		}
		if ((rc = vi_grow_plan(&m, &g, &plan)) == 0) {
			rc = disk_beyond(d->p, &plan, detail, dlen)
				     ? vi_error(VI_ESTATE, "%s", detail)
				     : vi_grow_apply(e->store, &m, &plan, &res);
			if (rc == 0) {
				size_t k = 0;
				if (plan.cpus_to != plan.cpus_from)
					k += (size_t)snprintf(detail + k, dlen - k, "cpus %u -> %u ",
							      plan.cpus_from, plan.cpus_to);
				if (plan.memory_to != plan.memory_from) {
					char b1[32], b2[32];
					k += (size_t)snprintf(
						detail + k, dlen > k ? dlen - k : 0, "memory %s -> %s ",
						vi_format_size(plan.memory_from, b1, sizeof(b1)),
						vi_format_size(plan.memory_to, b2, sizeof(b2)));
				}
				for (size_t i = 0; i < plan.ndisks && k < dlen; i++) {
					char b1[32], b2[32];
					k += (size_t)snprintf(
						detail + k, dlen - k, "disk %s %s -> %s ",
						plan.disks[i].name,
						vi_format_size(plan.disks[i].from, b1, sizeof(b1)),
						vi_format_size(plan.disks[i].to, b2, sizeof(b2)));
				}
				if (k && k < dlen)
					detail[k - 1] = 0;
				else if (!k)
					snprintf(detail, dlen, "nothing to change");
			}
			vi_grow_plan_release(&plan);
		}
		vi_grow_release(&g);
		break;
	}
	case VI_ACT_START:
		if (vi_hv_state_active(st.state)) {
			snprintf(detail, dlen, "already %s", vi_hv_state_name(st.state));
			rc = 0;
		} else if ((rc = vi_op_start(&m)) == 0) {
			snprintf(detail, dlen, "started");
		}
		break;
	case VI_ACT_STOP:
		if (!vi_hv_state_active(st.state)) {
			snprintf(detail, dlen, "already %s", vi_hv_state_name(st.state));
			rc = 0;
		} else if ((rc = vi_op_stop(&m, false, STOP_TIMEOUT_MS)) == 0) {
			snprintf(detail, dlen, "stopped");
		}
		break;
	case VI_ACT_RESTART:
		rc = 0;
		if (vi_hv_state_active(st.state))
			rc = vi_op_stop(&m, false, STOP_TIMEOUT_MS);
		if (rc == 0 && (rc = vi_op_start(&m)) == 0)
			snprintf(detail, dlen, "%s, started again", vi_hv_state_name(st.state));
		break;
	case VI_ACT_SNAPSHOT:
		rc = run_snapshot(e, &m, d->p, a->keep, detail, dlen);
		break;
	case VI_ACT_MIGRATE:
		rc = run_migrate(e, &m, a->host, detail, dlen);
		vi_store_unlock(lock);
		return rc; /* m is released, and the VM gone from here when it moved */
	case VI_ACT_EXEC:
		break;
	}
	vi_machine_release(&m);
	vi_store_unlock(lock);
	return rc;
}

/* Why an action cannot run on VM vm, checked before anything runs (bounds, the
 * backend's methods); NULL when it can. */
static enum vi_decision check_action(struct decide *d, const char *vm,
				     const struct vi_policy_action *a, char *why, size_t wlen)
{
	struct vi_machine m;
	enum vi_decision dec = VI_DEC_FIRE;

	if (!is_grow(a) && a->kind != VI_ACT_MIGRATE)
		return VI_DEC_FIRE;
	if (vi_machine_open(d->e->store, d->e->plugins, vm, NULL, false, &m) < 0) {
		snprintf(why, wlen, "%s", vi_error_message());
		vi_error_clear();
		return VI_DEC_UNSUPPORTED;
	}
	if (a->kind == VI_ACT_MIGRATE) {
		struct vi_hv_state st;
		/* A running VM moves live only where its backend can send one. */
		if (!m.hv) {
			snprintf(why, wlen, "%s", m.hv_problem ? m.hv_problem : "no backend");
			dec = VI_DEC_UNSUPPORTED;
		} else if (vi_hv_state_active(vi_machine_state(&m, &st)) &&
			   !m.hv->ops.migrate_send) {
			snprintf(why, wlen, "backend '%s' cannot move a running VM yet", m.def.hv);
			dec = VI_DEC_UNSUPPORTED;
		}
		vi_error_clear();
		vi_machine_release(&m);
		return dec;
	}
	struct vi_grow g;
	struct vi_grow_plan plan;
	if (!bounded_grow(d->p, a, &m, &g, why, wlen)) {
		dec = VI_DEC_BOUND;
	} else if (!m.hv) {
		snprintf(why, wlen, "%s", m.hv_problem ? m.hv_problem : "no backend");
		dec = VI_DEC_UNSUPPORTED;
	} else {
		int rc = vi_grow_plan(&m, &g, &plan);
		if (rc == 0) {
			if (disk_beyond(d->p, &plan, why, wlen))
				dec = VI_DEC_BOUND;
			vi_grow_plan_release(&plan);
		} else {
			snprintf(why, wlen, "%s", vi_error_message());
			dec = rc == -VI_EUNSUPPORTED ? VI_DEC_UNSUPPORTED : VI_DEC_BOUND;
		}
		vi_error_clear();
	}
	vi_grow_release(&g);
	vi_machine_release(&m);
	return dec;
}

static void fmt_duration(double s, char *buf, size_t len)
{
	if (s >= 120)
		snprintf(buf, len, "%.0fm", s / 60);
	else
		snprintf(buf, len, "%.0fs", s);
}

/* The condition's figures, as "cpu.util=97.3%". */
static void values_str(const struct vi_decision_rec *r, char *buf, size_t len)
{
	size_t k = 0;

	buf[0] = 0;
	for (int m = 0; m < VI_M_COUNT && k < len; m++) {
		char v[32];
		if (!r->used[m])
			continue;
		k += (size_t)snprintf(buf + k, len - k, "%s%s=%s", k ? " " : "",
				      vi_metric_table[m].name,
				      vi_metric_format(m, r->values[m], v, sizeof(v)));
	}
}

/* One target of a policy: a VM (across any) or every VM it selects. */
static void decide_target(struct decide *d, const char *key, const char *const *vms, size_t nvms,
			  const double values[VI_M_COUNT], bool holds, bool unknown)
{
	struct vi_engine *e = d->e;
	const struct vi_policy *p = d->p;
	struct target *t = target_get(e, p->name, key);
	struct vi_decision_rec r = { .policy = p->name, .def = p, .vm = key, .time = e->now };
	char why[1024], vals[256], a[32], b[32];
	bool log = false;

	memcpy(r.values, values, sizeof(r.values));
	vi_policy_expr_metrics(p->when, r.used);
	values_str(&r, vals, sizeof(vals));
	if (!holds) {
		t->held_since = 0;
		r.decision = unknown ? VI_DEC_UNKNOWN : VI_DEC_NO;
		snprintf(why, sizeof(why), "%s: %s", unknown ? "figures unknown" : "does not hold",
			 vals);
		r.why = why;
		t->decision = r.decision;
		set_str(&t->why, why);
		emit(d, &r, false);
		set_str(&t->logged, NULL);
		return;
	}
	if (!t->held_since)
		t->held_since = e->now;
	double held = e->now - t->held_since;
	r.decision = VI_DEC_FIRE;
	if (t->last_fired && e->now - t->last_fired < p->cooldown) {
		r.decision = VI_DEC_COOLDOWN;
		fmt_duration(p->cooldown - (e->now - t->last_fired), a, sizeof(a));
		snprintf(why, sizeof(why), "holds (%s); in its cooldown for %s more", vals, a);
	} else if (held + 0.5 < p->hold) {
		fmt_duration(held, a, sizeof(a));
		fmt_duration(p->hold, b, sizeof(b));
		if (e->run) {
			r.decision = VI_DEC_HOLD;
			snprintf(why, sizeof(why), "holds (%s) for %s of %s", vals, a, b);
		} else {
			snprintf(why, sizeof(why), "holds (%s); fires once it has held %s", vals,
				 b);
		}
	} else {
		snprintf(why, sizeof(why), "holds (%s)", vals);
	}
	/* Bounds and backends, before anything runs. */
	for (size_t k = 0; k < nvms && r.decision == VI_DEC_FIRE; k++) {
		for (size_t i = 0; i < p->nthen; i++) {
			char w[256] = "";
			enum vi_decision dec = check_action(d, vms[k], &p->then[i], w, sizeof(w));
			if (dec != VI_DEC_FIRE) {
				r.decision = dec;
				snprintf(why, sizeof(why), "holds (%s); %s: %s", vals,
					 nvms > 1 ? vms[k] : vi_policy_action_name(p->then[i].kind),
					 w);
				break;
			}
		}
	}
	r.why = why;
	/* What kept it from acting goes to the log once, not at every sample. */
	if (r.decision != VI_DEC_FIRE && r.decision != VI_DEC_HOLD && e->run) {
		char mark[1100];
		snprintf(mark, sizeof(mark), "%s %s", vi_decision_name(r.decision),
			 r.decision == VI_DEC_COOLDOWN ? "" : why);
		log = !t->logged || strcmp(t->logged, mark);
		if (log)
			set_str(&t->logged, mark);
	}
	t->decision = r.decision;
	set_str(&t->why, why);
	emit(d, &r, log);
	if (r.decision != VI_DEC_FIRE || !e->run)
		return;
	set_str(&t->logged, NULL);
	t->last_fired = e->now;
	t->held_since = 0;
	for (size_t k = 0; k < nvms; k++) {
		struct vi_decision_rec ar = r;
		ar.vm = vms[k];
		for (size_t i = 0; i < p->nthen; i++) {
			char detail[512];
			char *astr = vi_policy_action_str(&p->then[i]);
			int rc = run_action(d, &ar, &p->then[i], detail, sizeof(detail));

			ar.action = astr;
			ar.result = rc == 0 ? "ok" : "failed";
			ar.detail = rc == 0 ? detail : vi_error_message();
			emit(d, &ar, true);
			set_str(&t->last_action, astr);
			set_str(&t->last_result, ar.detail);
			if (rc < 0)
				vi_error_clear();
			free(astr);
			if (rc < 0)
				break; /* the later actions counted on this one */
		}
	}
}

static void decide_policy(struct decide *d, bool enabled)
{
	struct vi_engine *e = d->e;
	const struct vi_policy *p = d->p;
	const char **vms = NULL;
	double (*agg)[VI_M_COUNT] = NULL;
	size_t n = 0;

	for (size_t i = 0; i < e->nhist; i++) {
		struct history *h = &e->hist[i];
		if (!h->seen || !vi_policy_selects(p, h->vm, (const char *const *)h->labels,
						   h->nlabels))
			continue;
		vms = xrealloc(vms, (n + 1) * sizeof(*vms));
		agg = xrealloc(agg, (n + 1) * sizeof(*agg));
		vms[n] = h->vm;
		aggregate(e, p, h, agg[n]);
		n++;
	}
	struct vi_decision_rec r = { .policy = p->name, .def = p, .vm = "*", .time = e->now };
	char why[256];
	r.why = why;
	if (!enabled || !n || !vi_policy_active_at(p, (time_t)e->now)) {
		r.decision = !enabled ? VI_DEC_DISABLED : !n ? VI_DEC_NO_VMS : VI_DEC_SCHEDULE;
		snprintf(why, sizeof(why), "%s",
			 !enabled ? "disabled: 'vi policy enable' turns it on"
			 : !n	  ? "selects no VM"
				  : "outside its schedule");
		if (r.decision == VI_DEC_SCHEDULE)
			snprintf(why, sizeof(why), "outside its schedule '%s'",
				 p->schedule_text ? p->schedule_text : "");
		for (size_t i = 0; i < e->ntargets; i++)
			if (!strcmp(e->targets[i].policy, p->name))
				e->targets[i].held_since = 0;
		if (!n || r.decision != VI_DEC_SCHEDULE) {
			emit(d, &r, false);
		} else {
			for (size_t i = 0; i < n; i++) {
				r.vm = p->across == VI_ACROSS_ANY ? vms[i] : "*";
				emit(d, &r, false);
				if (p->across != VI_ACROSS_ANY)
					break;
			}
		}
		goto out;
	}
	if (p->across == VI_ACROSS_ANY) {
		for (size_t i = 0; i < n; i++) {
			bool unknown = false;
			bool holds = vi_policy_eval(p->when, agg[i], &unknown);
			decide_target(d, vms[i], &vms[i], 1, agg[i], holds, unknown);
		}
	} else {
		double avg[VI_M_COUNT];
		bool holds = true, unknown = false;

		for (int m = 0; m < VI_M_COUNT; m++) {
			double *col = xcalloc(n, sizeof(double));
			for (size_t i = 0; i < n; i++)
				col[i] = agg[i][m];
			avg[m] = point_metric(m) && m == VI_M_STATE ? agg[0][m]
								    : vi_policy_aggregate(VI_AGG_AVG, col, n);
			free(col);
		}
		if (p->across == VI_ACROSS_AVG) {
			holds = vi_policy_eval(p->when, avg, &unknown);
		} else {
			for (size_t i = 0; i < n && holds; i++)
				holds = vi_policy_eval(p->when, agg[i], &unknown);
		}
		decide_target(d, "*", vms, n, avg, holds, unknown);
	}
out:
	free(vms);
	free(agg);
}

int vi_engine_decide(struct vi_engine *e, vi_decision_fn fn, void *opaque)
{
	struct decide d = { .e = e, .fn = fn, .opaque = opaque };
	char *path = NULL;
	int rc = 0;

	if (e->run) {
		path = vi_audit_path(e->store);
		d.audit = fopen(path, "ae");
		if (!d.audit)
			rc = vi_error_errno(VI_EFAIL, errno, "cannot open '%s'", path);
		free(path);
		if (rc < 0)
			return rc;
	}
	for (size_t i = 0; i < e->npolicies; i++) {
		d.p = &e->policies[i];
		decide_policy(&d, e->enabled[i]);
	}
	/* Forget targets of policies that are gone. */
	for (size_t i = 0; i < e->ntargets;) {
		bool known = false;
		for (size_t k = 0; k < e->npolicies && !known; k++)
			known = !strcmp(e->policies[k].name, e->targets[i].policy);
		if (known) {
			i++;
			continue;
		}
		target_release(&e->targets[i]);
		e->targets[i] = e->targets[--e->ntargets];
	}
	if (d.audit && fclose(d.audit) != 0 && rc == 0)
		rc = vi_error_errno(VI_EFAIL, errno, "cannot write the audit log");
	if (e->run && rc == 0)
		rc = state_save(e);
	return rc;
}
