/* vi show NAME: one VM's definition, state and live figures. */
#include "cmd.h"
#include "error.h"
#include "grow.h"
#include "image/image.h"
#include "machine.h"
#include "metrics.h"
#include "migrate.h"
#include "output.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const struct vi_option show_options[] = {
	OPT_JSON,
	OPT_CONNECT,
	VI_OPT_TABLE_END,
};

static void field(const char *key, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void field(const char *key, const char *fmt, ...)
{
	va_list ap;
	char *value, *text;

	va_start(ap, fmt);
	if (vasprintf(&value, fmt, ap) < 0)
		value = NULL;
	va_end(ap);
	text = vi_escape_controls(value ? value : "");
	printf("%-12s %s\n", key, text);
	free(text);
	free(value);
}

static void show_json(struct vi_machine *m, const struct vi_hv_state *st,
		      const struct vi_hv_stats *stats, int64_t uptime, const char *there)
{
	struct vi_vm *d = &m->def;
	struct json_object *doc = vi_json_doc(), *o = json_object_new_object();
	struct json_object *disks = json_object_new_array(), *nics = json_object_new_array();

	json_object_object_add(o, "name", vi_json_str(d->name));
	json_object_object_add(o, "uuid", vi_json_str(d->uuid));
	json_object_object_add(o, "hv", vi_json_str(d->hv));
	json_object_object_add(o, "connect", vi_json_str(d->connect));
	json_object_object_add(o, "state", vi_json_str(vi_hv_state_name(st->state)));
	json_object_object_add(o, "cpus", json_object_new_int(d->cpus));
	json_object_object_add(o, "max_cpus", json_object_new_int(m->view.vm.max_cpus));
	json_object_object_add(o, "memory", json_object_new_int64(d->memory));
	json_object_object_add(o, "max_memory", json_object_new_int64(m->view.vm.max_memory));
	json_object_object_add(o, "cpu_quota", json_object_new_int(d->cpu_quota));
	json_object_object_add(o, "kernel", vi_json_str(d->kernel));
	json_object_object_add(o, "initrd", vi_json_str(d->initrd));
	json_object_object_add(o, "cmdline", vi_json_str(d->cmdline));
	for (size_t i = 0; i < d->ndisks; i++) {
		struct json_object *k = json_object_new_object();
		json_object_object_add(k, "path", vi_json_str(m->view.disks[i].path));
		json_object_object_add(k, "format", vi_json_str(vi_disk_format_name(d->disks[i].format)));
		json_object_object_add(k, "readonly", json_object_new_boolean(d->disks[i].readonly));
		json_object_object_add(k, "layer", vi_json_str(d->disks[i].layer));
		uint64_t size;
		if (image_virtual_size(m->view.disks[i].path, &size) == 0)
			json_object_object_add(k, "size", json_object_new_int64((int64_t)size));
		else
			vi_error_clear();
		json_object_array_add(disks, k);
	}
	for (size_t i = 0; i < d->nnics; i++) {
		struct json_object *k = json_object_new_object(), *fw = json_object_new_array();
		char *addr = vi_machine_nic_address(m, st->state, i);
		json_object_object_add(k, "mac", vi_json_str(d->nics[i].mac));
		json_object_object_add(k, "mode", vi_json_str(d->nics[i].mode));
		json_object_object_add(k, "source", vi_json_str(d->nics[i].source));
		json_object_object_add(k, "address", vi_json_str(addr));
		for (size_t j = 0; j < d->nics[i].nforwards; j++) {
			const struct vi_vm_forward *f = &d->nics[i].forwards[j];
			struct json_object *x = json_object_new_object();
			json_object_object_add(x, "host_addr", vi_json_str(f->host_addr));
			json_object_object_add(x, "host_port", json_object_new_int((int)f->host_port));
			json_object_object_add(x, "guest_port", json_object_new_int((int)f->guest_port));
			json_object_object_add(x, "proto",
					       vi_json_str(f->proto == VI_HV_UDP ? "udp" : "tcp"));
			json_object_array_add(fw, x);
		}
		json_object_object_add(k, "forwards", fw);
		json_object_array_add(nics, k);
		free(addr);
	}
	json_object_object_add(o, "disks", disks);
	json_object_object_add(o, "nics", nics);
	json_object_object_add(o, "hostname", vi_json_str(d->hostname));
	json_object_object_add(o, "user", vi_json_str(d->user));
	json_object_object_add(o, "machine_id", vi_json_str(d->machine_id));
	json_object_object_add(o, "template", vi_json_str(d->template));
	json_object_object_add(o, "template_digest", vi_json_str(d->template_digest));
	json_object_object_add(o, "origin", vi_json_str(d->origin));
	json_object_object_add(o, "labels", cmd_labels_json(d));
	json_object_object_add(o, "created", json_object_new_int64(d->created));
	if (there)
		json_object_object_add(o, "migrating_to", vi_json_str(there));
	if (st->pid)
		json_object_object_add(o, "pid", json_object_new_int(st->pid));
	if (uptime >= 0)
		json_object_object_add(o, "uptime", json_object_new_int64(uptime));
	if (stats) {
		struct json_object *s = json_object_new_object();
		json_object_object_add(s, "vcpus", json_object_new_int(stats->vcpus));
		json_object_object_add(s, "cpu_time_ns", json_object_new_int64(stats->cpu_time_ns));
		json_object_object_add(s, "memory", json_object_new_int64(stats->memory));
		json_object_object_add(s, "exits", json_object_new_int64(stats->exits));
		if (uptime > 0)
			json_object_object_add(s, "exits_per_second",
					       json_object_new_double((double)stats->exits / uptime));
		json_object_object_add(o, "stats", s);
	}
	json_object_object_add(doc, "vm", o);
	vi_json_print(doc);
}

int cmd_show(int argc, char **argv)
{
	struct vi_machine m;
	struct vi_hv_state st;
	struct vi_hv_stats stats;
	bool have_stats = false;
	int64_t uptime = -1;
	char a[32], b[32], *there;
	int rc;
	(void)argc;

	/* A connection named on the command line must work; the recorded one may
	 * be down, and then the state is unknown. */
	if ((rc = vi_machine_open(&ctx.store, &ctx.plugins, argv[0], ctx.connect,
				  ctx.connect != NULL, &m)) < 0)
		return rc;
	vi_machine_state(&m, &st);
	there = vi_migrate_unconfirmed(m.dir);
	if (st.state == VI_HV_RUNNING || st.state == VI_HV_PAUSED) {
		if (st.started_at)
			uptime = (int64_t)time(NULL) - st.started_at;
		/* Figures are extra: a backend without them shows the rest. */
		have_stats = m.hv && vi_hv_stats(m.hv, &m.view.vm, &stats) == 0;
		vi_error_clear();
	}
	if (ctx.json) {
		show_json(&m, &st, have_stats ? &stats : NULL, uptime, there);
		free(there);
		vi_machine_release(&m);
		return 0;
	}
	struct vi_vm *d = &m.def;
	field("name:", "%s", d->name);
	field("uuid:", "%s", d->uuid);
	field("backend:", "%s%s%s%s", d->hv, d->connect ? " (" : "", d->connect ? d->connect : "",
	      d->connect ? ")" : "");
	field("state:", "%s%s%s%s", vi_hv_state_name(st.state), m.hv ? "" : " (",
	      m.hv ? "" : m.hv_problem, m.hv ? "" : ")");
	if (there)
		field("migration:", "to host '%s', unconfirmed (vi migrate --recover %s)", there,
		      d->name);
	field("cpus:", "%u (max %u)", d->cpus, m.view.vm.max_cpus);
	field("memory:", "%s (max %s)", vi_format_size(d->memory, a, sizeof(a)),
	      vi_format_size(m.view.vm.max_memory, b, sizeof(b)));
	if (d->kernel)
		field("kernel:", "%s", d->kernel);
	if (d->initrd)
		field("initrd:", "%s", d->initrd);
	if (d->cmdline)
		field("cmdline:", "%s", d->cmdline);
	if (d->cpu_quota)
		field("cpu quota:", "%u%% of one host CPU", d->cpu_quota);
	for (size_t i = 0; i < d->ndisks; i++) {
		uint64_t size;
		char name[8], sz[32] = "";

		vi_grow_disk_name(i, name, sizeof(name));
		if (image_virtual_size(m.view.disks[i].path, &size) == 0)
			snprintf(sz, sizeof(sz), ", %s", vi_format_size(size, a, sizeof(a)));
		else
			vi_error_clear();
		field(i ? "" : "disks:", "%s %s (%s%s%s%s%s)", name, m.view.disks[i].path,
		      vi_disk_format_name(d->disks[i].format), sz,
		      d->disks[i].readonly ? ", read-only" : "", d->disks[i].layer ? ", on layer " : "",
		      d->disks[i].layer ? d->disks[i].layer : "");
	}
	for (size_t i = 0; i < d->nnics; i++) {
		const struct vi_vm_nic *n = &d->nics[i];
		char *addr = vi_machine_nic_address(&m, st.state, i), *fw = xstrdup("");
		for (size_t j = 0; j < n->nforwards; j++) {
			char *f = vi_vm_forward_str(&n->forwards[j]);
			char *x = xasprintf("%s%s%s", fw, j ? ", " : "", f);
			free(f);
			free(fw);
			fw = x;
		}
		field(i ? "" : "nics:", "%s %s%s%s%s%s%s%s", n->mac, n->mode, n->source ? " " : "",
		      n->source ? n->source : "", addr ? " " : "", addr ? addr : "",
		      *fw ? ", forwards " : "", fw);
		free(addr);
		free(fw);
	}
	if (d->user)
		field("login:", "%s (vi ssh %s)", d->user, d->name);
	if (d->hostname)
		field("hostname:", "%s", d->hostname);
	if (d->origin)
		field("cloned from:", "%s", d->origin);
	if (d->template)
		field("template:", "%s%s%s", d->template, d->template_digest ? " @ " : "",
		      d->template_digest ? d->template_digest : "");
	for (size_t i = 0; i < d->nlabels; i++)
		field(i ? "" : "labels:", "%s", d->labels[i]);
	if (d->created) {
		char when[64];
		struct tm tm;
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", gmtime_r(&d->created, &tm));
		field("created:", "%s", when);
	}
	if (st.pid)
		field("pid:", "%d", (int)st.pid);
	if (uptime >= 0) {
		field("uptime:", "%s", vi_metric_format(VI_M_UPTIME, (double)uptime, a, sizeof(a)));
	}
	if (have_stats) {
		field("vcpus:", "%u online", stats.vcpus);
		if (stats.exits && uptime > 0)
			field("exits/s:", "%.0f", (double)stats.exits / uptime);
	}
	free(there);
	vi_machine_release(&m);
	return 0;
}
