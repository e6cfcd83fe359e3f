/* vi policy add|list|show|rm|enable|disable|plan|run|log: rules over live
 * metrics (lib/policy.h), kept in the store and carried out by the engine
 * (lib/engine.h). */
#include "cmd.h"
#include "engine.h"
#include "error.h"
#include "output.h"
#include "util.h"
#include "yaml-doc.h"

#include <errno.h>
#include <json-c/json.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int opt_replace, opt_once;
static uint64_t opt_interval = 10;
static const char *opt_since, *opt_policy;

const struct vi_option policy_add_options[] = {
	{ "replace", 0, VI_OPT_FLAG, &opt_replace, NULL, "replace policies of the same names" },
	OPT_JSON,
	VI_OPT_TABLE_END,
};

const struct vi_option policy_options[] = {
	OPT_JSON,
	VI_OPT_TABLE_END,
};

const struct vi_option policy_run_options[] = {
	{ "once", 0, VI_OPT_FLAG, &opt_once, NULL, "sample, decide and act once, then exit" },
	{ "interval", 0, VI_OPT_UINT, &opt_interval, "S", "seconds between samples (10)",
	  VI_COMPLETE_NONE, 1, 86400 },
	OPT_JSON,
	VI_OPT_TABLE_END,
};

const struct vi_option policy_log_options[] = {
	{ "since", 0, VI_OPT_STRING, &opt_since, "T",
	  "only decisions since T: a duration ago (10m) or a time (2026-12-04T08:00)" },
	{ "policy", 0, VI_OPT_STRING, &opt_policy, "POLICY", "only this policy's decisions",
	  VI_COMPLETE_POLICY },
	OPT_JSON,
	VI_OPT_TABLE_END,
};

/* --- add, rm, enable, disable ------------------------------------------------------ */

static int read_source(const char *file, char **text, size_t *len)
{
	size_t cap = 0;

	if (strcmp(file, "-"))
		return vi_read_regular_file(file, VI_YAML_MAX_SIZE, text, len);
	*text = NULL;
	*len = 0;
	for (;;) {
		ssize_t got;

		if (*len + 4096 + 1 > cap) {
			cap = cap ? cap * 2 : 8192;
			*text = xrealloc(*text, cap);
		}
		got = read(0, *text + *len, cap - *len - 1);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0) {
			free(*text);
			return vi_error_errno(VI_EFAIL, errno, "cannot read standard input");
		}
		if (got == 0)
			break;
		*len += (size_t)got;
		if (*len > VI_YAML_MAX_SIZE) {
			free(*text);
			return vi_error(VI_EUSAGE, "standard input holds more than %u bytes",
					VI_YAML_MAX_SIZE);
		}
	}
	(*text)[*len] = 0;
	return 0;
}

static int cmd_policy_add(int argc, char **argv)
{
	char *text = NULL, **names = NULL;
	size_t len = 0, n = 0;
	int rc;

	(void)argc;
	if ((rc = read_source(argv[0], &text, &len)) < 0)
		return rc;
	rc = vi_policies_add(&ctx.store, strcmp(argv[0], "-") ? argv[0] : "<stdin>", text, len,
			     opt_replace, &names, &n);
	free(text);
	if (rc < 0)
		return rc;
	if (ctx.json) {
		struct json_object *doc = vi_json_doc(), *arr = json_object_new_array();
		for (size_t i = 0; i < n; i++)
			json_object_array_add(arr, json_object_new_string(names[i]));
		json_object_object_add(doc, "added", arr);
		vi_json_print(doc);
	} else if (!ctx.quiet) {
		for (size_t i = 0; i < n; i++)
			printf("added policy '%s'\n", names[i]);
	}
	vi_store_names_free(names, n);
	return 0;
}

static void report(const char *name, const char *done)
{
	if (ctx.json) {
		struct json_object *doc = vi_json_doc();
		json_object_object_add(doc, "name", json_object_new_string(name));
		json_object_object_add(doc, "result", json_object_new_string(done));
		vi_json_print(doc);
	} else if (!ctx.quiet) {
		printf("%s policy '%s'\n", done, name);
	}
}

static int cmd_policy_rm(int argc, char **argv)
{
	int rc = vi_policies_remove(&ctx.store, argv[0]);

	(void)argc;
	if (rc == 0)
		report(argv[0], "removed");
	return rc;
}

static int cmd_policy_enable(int argc, char **argv)
{
	int rc = vi_policies_enable(&ctx.store, argv[0], true);

	(void)argc;
	if (rc == 0)
		report(argv[0], "enabled");
	return rc;
}

static int cmd_policy_disable(int argc, char **argv)
{
	int rc = vi_policies_enable(&ctx.store, argv[0], false);

	(void)argc;
	if (rc == 0)
		report(argv[0], "disabled");
	return rc;
}

/* --- list, show ---------------------------------------------------------------------- */

static char *joined(char *const *v, size_t n, const char *sep)
{
	size_t len = 1;
	char *out;

	for (size_t i = 0; i < n; i++)
		len += strlen(v[i]) + strlen(sep);
	out = xcalloc(len, 1);
	for (size_t i = 0; i < n; i++) {
		if (i)
			strcat(out, sep);
		strcat(out, v[i]);
	}
	return out;
}

static char *actions_str(const struct vi_policy *p)
{
	char **v = xcalloc(p->nthen ? p->nthen : 1, sizeof(char *));
	char *out;

	for (size_t i = 0; i < p->nthen; i++)
		v[i] = vi_policy_action_str(&p->then[i]);
	out = joined(v, p->nthen, "; ");
	for (size_t i = 0; i < p->nthen; i++)
		free(v[i]);
	free(v);
	return out;
}

static void time_str(double t, char *buf, size_t len)
{
	time_t s = (time_t)t;
	struct tm tm;

	localtime_r(&s, &tm);
	strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

static struct json_object *policy_json(const struct vi_policy *p, bool enabled)
{
	struct json_object *o = json_object_new_object(), *vms = json_object_new_array(),
			   *then = json_object_new_array();
	struct vi_policy_last last;

	json_object_object_add(o, "name", json_object_new_string(p->name));
	json_object_object_add(o, "enabled", json_object_new_boolean(enabled));
	for (size_t i = 0; i < p->nvms; i++)
		json_object_array_add(vms, json_object_new_string(p->vms[i]));
	json_object_object_add(o, "vms", vms);
	json_object_object_add(o, "when", vi_json_str(p->when_text));
	json_object_object_add(o, "aggregate",
			       json_object_new_string(vi_policy_aggregate_name(p->aggregate)));
	json_object_object_add(o, "across",
			       json_object_new_string(vi_policy_across_name(p->across)));
	json_object_object_add(o, "window", json_object_new_int64(p->window));
	json_object_object_add(o, "for", json_object_new_int64(p->hold));
	json_object_object_add(o, "cooldown", json_object_new_int64(p->cooldown));
	json_object_object_add(o, "schedule", vi_json_str(p->schedule_text));
	for (size_t i = 0; i < p->nthen; i++) {
		char *a = vi_policy_action_str(&p->then[i]);
		json_object_array_add(then, json_object_new_string(a));
		free(a);
	}
	json_object_object_add(o, "then", then);
	if (vi_engine_last(&ctx.store, p->name, &last)) {
		struct json_object *l = json_object_new_object();
		json_object_object_add(l, "time", json_object_new_double(last.time));
		json_object_object_add(l, "vm", json_object_new_string(last.vm));
		json_object_object_add(l, "action", json_object_new_string(last.action));
		json_object_object_add(l, "result", json_object_new_string(last.result));
		json_object_object_add(o, "last", l);
	} else {
		json_object_object_add(o, "last", NULL);
	}
	return o;
}

static int cmd_policy_list(int argc, char **argv)
{
	struct vi_policy *p;
	bool *en;
	size_t n;
	long engine = vi_engine_running(&ctx.store);
	int rc;

	(void)argc;
	(void)argv;
	if ((rc = vi_policies_load(&ctx.store, &p, &en, &n)) < 0)
		return rc;
	if (ctx.json) {
		struct json_object *doc = vi_json_doc(), *arr = json_object_new_array();
		json_object_object_add(doc, "engine", engine ? json_object_new_int64(engine) : NULL);
		for (size_t i = 0; i < n; i++)
			json_object_array_add(arr, policy_json(&p[i], en[i]));
		json_object_object_add(doc, "policies", arr);
		vi_json_print(doc);
	} else {
		static const char *const head[] = { "NAME", "ENABLED", "VMS", "WHEN", "THEN",
						    "LAST" };
		struct vi_table t;

		vi_table_init(&t, 6, head);
		for (size_t i = 0; i < n; i++) {
			char *vms = joined(p[i].vms, p[i].nvms, ","), *then = actions_str(&p[i]);
			char last[96] = "-";
			struct vi_policy_last l;

			if (vi_engine_last(&ctx.store, p[i].name, &l)) {
				char ts[32];
				time_str(l.time, ts, sizeof(ts));
				snprintf(last, sizeof(last), "%s %s", ts, l.vm);
			}
			const char *row[] = { p[i].name, en[i] ? "yes" : "no", vms, p[i].when_text,
					      then, last };
			vi_table_add(&t, row);
			free(vms);
			free(then);
		}
		if (n)
			vi_table_print(&t);
		vi_table_release(&t);
		if (!ctx.quiet) {
			if (engine > 0)
				printf("%sthe engine runs (pid %ld)\n", n ? "\n" : "", engine);
			else
				printf("%sno engine runs: 'vi policy run' starts one\n", n ? "\n" : "");
		}
	}
	vi_policies_free(p, en, n);
	return 0;
}

static int cmd_policy_show(int argc, char **argv)
{
	struct vi_policy *p;
	bool *en;
	size_t n;
	int rc;

	(void)argc;
	if ((rc = vi_policies_exists(&ctx.store, argv[0])) < 0 ||
	    (rc = vi_policies_load(&ctx.store, &p, &en, &n)) < 0)
		return rc;
	for (size_t i = 0; i < n; i++) {
		if (strcmp(p[i].name, argv[0]))
			continue;
		if (ctx.json) {
			struct json_object *doc = vi_json_doc(), *o = policy_json(&p[i], en[i]);
			json_object_object_add(o, "text", json_object_new_string(p[i].text));
			json_object_object_add(doc, "policy", o);
			vi_json_print(doc);
		} else {
			struct vi_policy_last l;
			size_t tl = strlen(p[i].text);

			fputs(p[i].text, stdout);
			if (tl && p[i].text[tl - 1] != '\n')
				putchar('\n');
			printf("# %s\n", en[i] ? "enabled" : "disabled: 'vi policy enable' turns it on");
			if (vi_engine_last(&ctx.store, p[i].name, &l)) {
				char ts[32];
				time_str(l.time, ts, sizeof(ts));
				printf("# last fired %s on %s: %s: %s\n", ts, l.vm, l.action,
				       l.result);
			}
		}
	}
	vi_policies_free(p, en, n);
	return 0;
}

/* --- plan, run ----------------------------------------------------------------------- */

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

/* Sleeps s seconds, or until a signal asks the engine to stop. */
static void pause_for(double s)
{
	double end = vi_now_ms() + s * 1000;

	while (!stopping && vi_now_ms() < end) {
		double left = end - vi_now_ms();
		struct timespec ts = { .tv_sec = (time_t)(left / 1000),
				       .tv_nsec = (long)(fmod(left, 1000) * 1e6) };
		if (left <= 0)
			break;
		nanosleep(&ts, NULL);
	}
}

struct plan_out {
	struct json_object *arr;
	struct vi_table t;
};

static void plan_row(void *opaque, const struct vi_decision_rec *r)
{
	struct plan_out *o = opaque;
	char *then = actions_str(r->def);

	if (o->arr) {
		struct json_object *j = vi_decision_json(r);
		json_object_object_del(j, "vi");
		json_object_object_add(j, "then", vi_json_str(then));
		json_object_array_add(o->arr, j);
	} else {
		const char *row[] = { r->policy, r->vm, vi_decision_name(r->decision),
				      r->decision == VI_DEC_FIRE ? then : "-", r->why };
		vi_table_add(&o->t, row);
	}
	free(then);
}

/* Rates need two samples: the engine's first two are this far apart. */
#define FIRST_GAP_S 1.0

static int cmd_policy_plan(int argc, char **argv)
{
	static const char *const head[] = { "POLICY", "VM", "DECISION", "THEN", "WHY" };
	struct vi_engine *e;
	struct plan_out o = { 0 };
	int rc;

	(void)argc;
	(void)argv;
	if ((rc = vi_engine_open(&e, &ctx.store, &ctx.plugins, false)) < 0)
		return rc;
	if ((rc = vi_engine_sample(e)) < 0)
		goto out;
	pause_for(FIRST_GAP_S);
	if ((rc = vi_engine_sample(e)) < 0)
		goto out;
	if (ctx.json)
		o.arr = json_object_new_array();
	else
		vi_table_init(&o.t, 5, head);
	rc = vi_engine_decide(e, plan_row, &o);
	if (rc == 0 && ctx.json) {
		struct json_object *doc = vi_json_doc();
		json_object_object_add(doc, "plan", o.arr);
		vi_json_print(doc);
		o.arr = NULL;
	} else if (rc == 0) {
		if (o.t.nrows)
			vi_table_print(&o.t);
		else if (!ctx.quiet)
			printf("no policies: 'vi policy add FILE' adds one\n");
	}
	if (o.arr)
		json_object_put(o.arr);
	if (!ctx.json)
		vi_table_release(&o.t);
out:
	vi_engine_free(e);
	return rc;
}

/* One audit-log entry as a line for people. */
static void print_entry(struct json_object *j)
{
	struct json_object *vals;
	const char *action = vi_json_get_str(j, "action");
	char ts[32], values[256] = "";
	size_t k = 0;
	double t = 0;
	struct json_object *v;

	if (json_object_object_get_ex(j, "ts", &v))
		t = json_object_get_double(v);
	time_str(t, ts, sizeof(ts));
	if (json_object_object_get_ex(j, "values", &vals) &&
	    json_object_is_type(vals, json_type_object)) {
		json_object_object_foreach(vals, key, val)
		{
			char buf[32];
			int m = vi_metric_find(key);
			const char *s = json_object_is_type(val, json_type_string)
						? json_object_get_string(val)
						: vi_metric_format(m, val ? json_object_get_double(val)
									  : NAN,
								   buf, sizeof(buf));
			k += (size_t)snprintf(values + k, sizeof(values) - (k < sizeof(values) ? k : sizeof(values)),
					      "%s%s=%s", k ? " " : "", key, s);
			if (k >= sizeof(values))
				break;
		}
	}
	char *line;
	if (action)
		line = xasprintf("%s %s %s: %s: %s%s%s (%s)", ts, vi_json_get_str(j, "policy"),
				 vi_json_get_str(j, "vm"), action, vi_json_get_str(j, "result"),
				 vi_json_get_str(j, "detail") ? ", " : "",
				 vi_json_get_str(j, "detail") ?: "", values);
	else
		line = xasprintf("%s %s %s: %s: %s", ts, vi_json_get_str(j, "policy"),
				 vi_json_get_str(j, "vm"), vi_json_get_str(j, "decision"),
				 vi_json_get_str(j, "why") ?: "");
	char *safe = vi_escape_controls(line);
	puts(safe);
	free(safe);
	free(line);
}

static void run_row(void *opaque, const struct vi_decision_rec *r)
{
	struct json_object *j = vi_decision_json(r);

	(void)opaque;
	if (ctx.json)
		printf("%s\n", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
	else if (!ctx.quiet)
		print_entry(j);
	fflush(stdout);
	json_object_put(j);
}

static int cmd_policy_run(int argc, char **argv)
{
	struct vi_engine *e;
	struct sigaction sa = { .sa_handler = on_signal };
	int rc;

	(void)argc;
	(void)argv;
	if ((rc = vi_engine_open(&e, &ctx.store, &ctx.plugins, true)) < 0)
		return rc;
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	if (!ctx.quiet && !ctx.json && !opt_once)
		fprintf(stderr, "vi: the policy engine runs (pid %ld), every %llu s\n",
			(long)getpid(), (unsigned long long)opt_interval);
	if ((rc = vi_engine_sample(e)) < 0)
		goto out;
	pause_for(opt_once ? FIRST_GAP_S : fmin(FIRST_GAP_S, (double)opt_interval));
	while (!stopping) {
		double start = vi_now_ms();

		if ((rc = vi_engine_sample(e)) < 0 || (rc = vi_engine_decide(e, run_row, NULL)) < 0) {
			if (opt_once)
				break;
			/* A store that cannot be read now may be readable at the next sample. */
			fprintf(stderr, "vi: warning: %s\n", vi_error_message());
			vi_error_clear();
			rc = 0;
		}
		if (opt_once)
			break;
		pause_for((double)opt_interval - vi_ms_since(start) / 1000);
	}
out:
	vi_engine_free(e);
	return rc;
}

/* --- log ----------------------------------------------------------------------------- */

/* --since: a duration ago ("90s", "10m", "2h", "1d") or a local time
 * ("2026-12-04T08:00", "2026-12-04 08:00:30", "2026-12-04"). */
static int parse_since(const char *s, double *out)
{
	static const char *const formats[] = { "%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M",
					       "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%d" };
	char *end;
	double v = strtod(s, &end);

	if (end != s && v >= 0 && (!*end || !end[1])) {
		static const char units[] = "smhd";
		static const double mult[] = { 1, 60, 3600, 86400 };
		const char *u = *end ? strchr(units, *end) : units;
		if (u) {
			*out = (double)time(NULL) - v * mult[u - units];
			return 0;
		}
	}
	for (size_t i = 0; i < sizeof(formats) / sizeof(*formats); i++) {
		struct tm tm = { 0 };
		const char *rest = strptime(s, formats[i], &tm);
		if (rest && !*rest) {
			tm.tm_isdst = -1;
			*out = (double)mktime(&tm);
			return 0;
		}
	}
	return vi_error(VI_EUSAGE,
			"--since: '%s' is neither a duration (10m) nor a time (2026-12-04T08:00)",
			s);
}

static int cmd_policy_log(int argc, char **argv)
{
	char *path = vi_audit_path(&ctx.store), *text = NULL, *line, *save = NULL;
	double since = 0;
	int rc = 0;

	(void)argc;
	(void)argv;
	if (opt_since && (rc = parse_since(opt_since, &since)) < 0)
		goto out;
	if (vi_read_file(path, &text, NULL) < 0) {
		vi_error_clear();
		goto out;
	}
	for (line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		struct json_object *j = json_tokener_parse(line), *v;
		double t = 0;

		if (!j)
			continue;
		if (json_object_object_get_ex(j, "ts", &v))
			t = json_object_get_double(v);
		if (t >= since && (!opt_policy || (vi_json_get_str(j, "policy") &&
						   !strcmp(vi_json_get_str(j, "policy"), opt_policy)))) {
			if (ctx.json)
				printf("%s\n", json_object_to_json_string_ext(j, JSON_C_TO_STRING_PLAIN));
			else
				print_entry(j);
		}
		json_object_put(j);
	}
out:
	free(text);
	free(path);
	return rc;
}

const struct cmd policy_commands[] = {
	{ "add", cmd_policy_add, 1, 1, NEEDS_STORE, "FILE", policy_add_options,
	  "add the policies in a YAML file (- for standard input)" },
	{ "disable", cmd_policy_disable, 1, 1, NEEDS_STORE, "POLICY", policy_options,
	  "keep a policy without the engine acting on it" },
	{ "enable", cmd_policy_enable, 1, 1, NEEDS_STORE, "POLICY", policy_options,
	  "let the engine act on a disabled policy again" },
	{ "list", cmd_policy_list, 0, 0, NEEDS_STORE, "", policy_options,
	  "list the policies, whether each is enabled and when it last fired" },
	{ "log", cmd_policy_log, 0, 0, NEEDS_STORE, "", policy_log_options,
	  "show the engine's decisions from its audit log" },
	{ "plan", cmd_policy_plan, 0, 0, NEEDS_STORE | NEEDS_PLUGINS, "", policy_options,
	  "evaluate every policy now and say what would fire, acting on nothing" },
	{ "rm", cmd_policy_rm, 1, 1, NEEDS_STORE, "POLICY", policy_options, "remove a policy" },
	{ "run", cmd_policy_run, 0, 0, NEEDS_STORE | NEEDS_PLUGINS, "", policy_run_options,
	  "run the engine: sample, decide and act until stopped" },
	{ "show", cmd_policy_show, 1, 1, NEEDS_STORE, "POLICY", policy_options,
	  "show a policy as it was written, and when it last fired" },
	{ NULL },
};
