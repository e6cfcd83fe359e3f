/* vi stats: the current figures of VMs and the host, once or every few seconds. */
#include "cmd.h"
#include "error.h"
#include "metrics.h"
#include "output.h"
#include "util.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *watch_arg, *interval_arg;

const struct vi_option stats_options[] = {
	{ "watch", 'w', VI_OPT_STRING, &watch_arg, "S",
	  "print the figures again every S seconds until interrupted", VI_COMPLETE_NONE },
	{ "interval", 'i', VI_OPT_STRING, &interval_arg, "S",
	  "seconds between the two samples rates come from (1)", VI_COMPLETE_NONE },
	OPT_JSON,
	OPT_CONNECT,
	VI_OPT_TABLE_END,
};

static void sleep_s(double s)
{
	struct timespec ts = { .tv_sec = (time_t)s,
			       .tv_nsec = (long)((s - (double)(time_t)s) * 1e9) };

	while (nanosleep(&ts, &ts) < 0)
		;
}

/* Whole numbers as integers, the others to three decimals. */
static struct json_object *number(double v)
{
	char text[64];

	if (isnan(v))
		return NULL;
	if (v == floor(v) && fabs(v) < 9e15)
		return json_object_new_int64((int64_t)v);
	snprintf(text, sizeof(text), "%.3f", v);
	return json_object_new_double_s(v, text);
}

/* {"vi":1, "host":{...}, "vms":[...]}: metric names as keys (the host's
 * without "host."), raw numbers, null for unknown. */
static struct json_object *frame_json(const struct vi_metrics_view *v)
{
	struct json_object *doc = vi_json_doc(), *host = json_object_new_object(),
			   *vms = json_object_new_array();

	for (int m = 0; m < VI_M_COUNT; m++)
		if (vi_metric_table[m].host)
			json_object_object_add(host, vi_metric_table[m].name + strlen("host."),
					       number(v->host[m]));
	for (size_t i = 0; i < v->n; i++) {
		struct json_object *o = json_object_new_object();

		json_object_object_add(o, "name", vi_json_str(v->vms[i].def.name));
		json_object_object_add(o, "hv", vi_json_str(v->vms[i].def.hv));
		json_object_object_add(o, "state",
				       vi_json_str(vi_hv_state_name(v->now[i].state)));
		for (int m = 0; m < VI_M_COUNT; m++)
			if (!vi_metric_table[m].host && m != VI_M_STATE)
				json_object_object_add(o, vi_metric_table[m].name,
						       number(v->values[i][m]));
		json_object_array_add(vms, o);
	}
	json_object_object_add(doc, "host", host);
	json_object_object_add(doc, "vms", vms);
	return doc;
}

static void print_frame(const struct vi_metrics_view *v, bool first)
{
	char line[256];
	struct vi_table t;

	if (ctx.json && !watch_arg) {
		vi_json_print(frame_json(v));
		return;
	}
	if (ctx.json) {
		/* JSON lines: one document per frame. */
		struct json_object *doc = frame_json(v);
		puts(json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN |
								 JSON_C_TO_STRING_NOSLASHESCAPE));
		json_object_put(doc);
		vi_json_printed = true;
	} else {
		if (!first)
			putchar('\n');
		puts(vi_metrics_host_line(v->host, line, sizeof(line)));
		if (v->n) {
			vi_metrics_table(v, NULL, &t);
			vi_table_print(&t);
			vi_table_release(&t);
		}
	}
	fflush(stdout);
}

int cmd_stats(int argc, char **argv)
{
	struct vi_metrics_view v;
	double interval = 1, watch = 0;
	int rc;

	if ((interval_arg && (rc = vi_parse_seconds(interval_arg, "interval", &interval)) < 0) ||
	    (watch_arg && (rc = vi_parse_seconds(watch_arg, "watch", &watch)) < 0))
		return rc;
	if ((rc = vi_metrics_view_open(&v, &ctx.store, &ctx.plugins, argv, (size_t)argc,
				       ctx.connect)) < 0)
		return rc;
	/* Rates need two samples: the first frame waits for the second. */
	vi_metrics_view_sample(&v);
	sleep_s(interval);
	for (bool first = true;; first = false) {
		vi_metrics_view_sample(&v);
		print_frame(&v, first);
		if (!watch_arg || ferror(stdout))
			break;
		sleep_s(watch);
	}
	vi_metrics_view_release(&v);
	return 0;
}
