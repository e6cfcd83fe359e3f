/* vi list: the VMs in the store with their backend and state. */
#include "cmd.h"
#include "env.h"
#include "error.h"
#include "log.h"
#include "forward.h"
#include "host.h"
#include "machine.h"
#include "output.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int wide, all_hosts;
static struct vi_strlist selectors;

const struct vi_option list_options[] = {
	{ "wide", 'w', VI_OPT_FLAG, &wide, NULL, "add each VM's address and SSH port" },
	{ "all-hosts", 'a', VI_OPT_FLAG, &all_hosts, NULL,
	  "also every host's VMs (vi host), with a HOST column" },
	{ "label", 'l', VI_OPT_LIST, &selectors, "KEY=VALUE",
	  "only VMs with this label (repeatable: all must match)" },
	OPT_JSON,
	OPT_CONNECT,
	VI_OPT_TABLE_END,
};

/* Whether list entry o has every label of --label: the test runs on the
 * entries, so that it holds for other hosts' VMs alike. */
static bool labels_match(struct json_object *o)
{
	struct json_object *labels;

	if (!selectors.n)
		return true;
	if (!json_object_object_get_ex(o, "labels", &labels))
		return false;
	for (size_t i = 0; i < selectors.n; i++) {
		const char *s = selectors.items[i], *value;
		size_t len;
		vi_label_parse(s, &len, &value); /* checked by cmd_list */
		char *key = xstrndup(s, len);
		const char *have = vi_json_get_str(labels, key);
		free(key);
		if (!have || strcmp(have, value))
			return false;
	}
	return true;
}

/* Drops the entries of arr that --label rules out. */
static struct json_object *filter_labels(struct json_object *arr)
{
	struct json_object *out = json_object_new_array();

	for (size_t i = 0; i < json_object_array_length(arr); i++) {
		struct json_object *o = json_object_array_get_idx(arr, i);
		if (labels_match(o))
			json_object_array_add(out, json_object_get(o));
	}
	json_object_put(arr);
	return out;
}

/* A backend that cannot be reached leaves its VMs' state unknown: say why,
 * once for each backend and connection. warned holds the problems told. */
static void warn_unknown_state(const char *problem, char ***warned, size_t *n)
{
	for (size_t i = 0; i < *n; i++)
		if (!strcmp((*warned)[i], problem))
			return;
	vi_warn("state unknown: %s", problem);
	*warned = xrealloc(*warned, (*n + 1) * sizeof(**warned));
	(*warned)[(*n)++] = xstrdup(problem);
}

/* Fills st[i] for every machine that opened: each backend, at each
 * connection, is asked once for all of its VMs. */
static void read_states(struct vi_machine *m, const bool *opened, struct vi_hv_state *st, size_t n,
			char ***warned, size_t *nwarned)
{
	const struct vi_hv_vm **vms = xcalloc(n ? n : 1, sizeof(*vms));
	struct vi_hv_state *out = xcalloc(n ? n : 1, sizeof(*out));
	size_t *which = xcalloc(n ? n : 1, sizeof(*which));
	bool *done = xcalloc(n ? n : 1, sizeof(*done));

	for (size_t i = 0; i < n; i++) {
		st[i] = (struct vi_hv_state){ .struct_size = sizeof(st[i]), .state = VI_HV_UNKNOWN };
		done[i] = !opened[i] || !m[i].hv;
	}
	for (size_t i = 0; i < n; i++) {
		if (done[i])
			continue;
		struct vi_hv *hv = m[i].hv;
		const char *uri = ctx.connect ? ctx.connect : m[i].def.connect;
		size_t k = 0;
		for (size_t j = i; j < n; j++) {
			const char *u = ctx.connect ? ctx.connect : m[j].def.connect;
			if (done[j] || m[j].hv != hv || (uri != u && (!uri || !u || strcmp(uri, u))))
				continue;
			done[j] = true;
			which[k] = j;
			vms[k++] = &m[j].view.vm;
		}
		/* The connection these VMs name (the probe reconnects if need be). */
		vi_hv_probe(hv, uri);
		int rc = vi_hv_usable(hv) ? vi_hv_states(hv, vms, k, out) : -VI_EFAIL;
		if (rc < 0) {
			char *why = xasprintf("backend '%s'%s%s%s: %s", hv->ops.name, uri ? " at '" : "",
					      uri ? uri : "", uri ? "'" : "",
					      *vi_error_message() ? vi_error_message()
								  : hv->reason ? hv->reason : "declined");
			warn_unknown_state(why, warned, nwarned);
			free(why);
			vi_error_clear();
			continue;
		}
		for (size_t x = 0; x < k; x++)
			st[which[x]] = out[x];
	}
	free(vms);
	free(out);
	free(which);
	free(done);
}

/* The VMs of this store as list entries (what --json prints). */
static struct json_object *local_vms(void)
{
	char **names, **warned = NULL;
	size_t n, nwarned = 0;
	struct json_object *arr = json_object_new_array();

	if (vi_store_list_vms(&ctx.store, &names, &n) < 0) {
		json_object_put(arr);
		return NULL;
	}
	struct vi_machine *m = xcalloc(n ? n : 1, sizeof(*m));
	struct vi_hv_state *st = xcalloc(n ? n : 1, sizeof(*st));
	bool *opened = xcalloc(n ? n : 1, sizeof(*opened));
	char **errors = xcalloc(n ? n : 1, sizeof(*errors));
	for (size_t i = 0; i < n; i++) {
		opened[i] = vi_machine_open(&ctx.store, &ctx.plugins, names[i], ctx.connect, false,
					    &m[i]) == 0;
		if (!opened[i]) {
			/* One unreadable definition must not hide the others. */
			vi_warn("%s", vi_error_message());
			errors[i] = xstrdup(vi_error_message());
			vi_error_clear();
		} else if (m[i].hv_problem) {
			warn_unknown_state(m[i].hv_problem, &warned, &nwarned);
		}
	}
	read_states(m, opened, st, n, &warned, &nwarned);
	for (size_t i = 0; i < n; i++) {
		struct json_object *o = json_object_new_object();
		json_object_array_add(arr, o);
		if (!opened[i]) {
			json_object_object_add(o, "name", vi_json_str(names[i]));
			json_object_object_add(o, "error", vi_json_str(errors[i]));
			continue;
		}
		struct vi_vm *d = &m[i].def;
		/* The first NIC's address, and where SSH reaches the guest. */
		char *addr = (wide || ctx.json || all_hosts) && d->nnics
				     ? vi_machine_nic_address(&m[i], st[i].state, 0)
				     : NULL;
		struct vi_vm_forward *sf = vi_vm_ssh_forward(d);
		char *ssh = sf ? xasprintf("%s:%u", sf->host_addr, sf->host_port)
			       : addr ? xasprintf("%s:22", addr) : NULL;
		json_object_object_add(o, "name", vi_json_str(d->name));
		json_object_object_add(o, "address", vi_json_str(addr));
		json_object_object_add(o, "ssh", vi_json_str(ssh));
		json_object_object_add(o, "hv", vi_json_str(d->hv));
		json_object_object_add(o, "state", vi_json_str(vi_hv_state_name(st[i].state)));
		json_object_object_add(o, "cpus", json_object_new_int(d->cpus));
		json_object_object_add(o, "memory", json_object_new_int64(d->memory));
		json_object_object_add(o, "template", vi_json_str(d->template));
		json_object_object_add(o, "labels", cmd_labels_json(d));
		free(addr);
		free(ssh);
	}
	for (size_t i = 0; i < n; i++) {
		if (opened[i])
			vi_machine_release(&m[i]);
		free(errors[i]);
	}
	free(m);
	free(st);
	free(opened);
	free(errors);
	vi_store_names_free(names, n);
	vi_store_names_free(warned, nwarned);
	return arr;
}

/* Every host's VMs after this one's, each entry with the host it is on
 * ("host": null here); a host that does not answer is said once, on stderr
 * and in "hosts". */
static void add_other_hosts(struct json_object *arr, struct json_object *hosts_out)
{
	static char *const args[] = { "--json", "list" };
	const struct vi_host_entry **hosts;
	struct vi_host_result *res;
	struct vi_hosts h;

	if (vi_hosts_load(&ctx.store, &h) < 0) {
		vi_warn("%s", vi_error_message());
		vi_error_clear();
		return;
	}
	hosts = xcalloc(h.n + 1, sizeof(*hosts));
	res = xcalloc(h.n + 1, sizeof(*res));
	for (size_t i = 0; i < h.n; i++)
		hosts[i] = &h.hosts[i];
	vi_hosts_run(hosts, h.n, args, 2, 30000, res);
	for (size_t i = 0; i < h.n; i++) {
		struct json_object *doc = res[i].status == 0 ? json_tokener_parse(res[i].out) : NULL,
				   *vms, *ho = json_object_new_object();
		json_object_object_add(ho, "name", vi_json_str(h.hosts[i].name));
		if (doc && json_object_object_get_ex(doc, "vms", &vms)) {
			for (size_t k = 0; k < json_object_array_length(vms); k++) {
				struct json_object *vm = json_object_array_get_idx(vms, k);
				json_object_object_add(vm, "host", vi_json_str(h.hosts[i].name));
				json_object_array_add(arr, json_object_get(vm));
			}
			json_object_object_add(ho, "error", NULL);
		} else {
			const char *why = res[i].status == 255
						  ? vi_host_ssh_reason(res[i].err)
						  : vi_host_ssh_reason(*res[i].err ? res[i].err
										 : res[i].out);
			vi_warn("host '%s' %s: %s", h.hosts[i].name,
				res[i].status == 255 ? "is unreachable" : "did not list its VMs", why);
			json_object_object_add(ho, "error", vi_json_str(why));
		}
		json_object_array_add(hosts_out, ho);
		if (doc)
			json_object_put(doc);
		vi_host_result_release(&res[i]);
	}
	free(res);
	free(hosts);
	vi_hosts_release(&h);
}

int cmd_list(int argc, char **argv)
{
	struct json_object *arr, *hosts = NULL;
	size_t len;
	const char *value;
	int rc = 0;
	(void)argc, (void)argv;

	for (size_t i = 0; i < selectors.n; i++)
		if ((rc = vi_label_parse(selectors.items[i], &len, &value)) < 0)
			goto cleanup;
	if (!(arr = local_vms())) {
		rc = -vi_error_code();
		goto cleanup;
	}
	if (all_hosts) {
		hosts = json_object_new_array();
		for (size_t i = 0; i < json_object_array_length(arr); i++)
			json_object_object_add(json_object_array_get_idx(arr, i), "host", NULL);
		add_other_hosts(arr, hosts);
	}
	arr = filter_labels(arr);
	if (ctx.json) {
		struct json_object *doc = vi_json_doc();
		json_object_object_add(doc, "vms", arr);
		if (hosts)
			json_object_object_add(doc, "hosts", hosts);
		vi_json_print(doc);
		goto cleanup;
	}
	size_t n = json_object_array_length(arr);
	struct vi_table t;
	/* An ENV column once a VM belongs to an environment (vi env). */
	bool envs = false;
	for (size_t i = 0; i < n; i++) {
		struct json_object *labels;
		envs |= json_object_object_get_ex(json_object_array_get_idx(arr, i), "labels",
						  &labels) &&
			vi_json_get_str(labels, VI_ENV_LABEL) != NULL;
	}
	const char *header[] = { "HOST", "NAME",   "ENV",      "BACKEND", "STATE",
				 "CPUS", "MEMORY", "TEMPLATE", "ADDRESS", "SSH" };
	bool show[] = { all_hosts, true, envs, true, true, true, true, true, wide, wide };
	const char *cols[10];
	size_t ncols = 0;
	for (size_t c = 0; c < ARRAY_SIZE(header); c++)
		if (show[c])
			cols[ncols++] = header[c];
	vi_table_init(&t, ncols, cols);
	for (size_t i = 0; i < n; i++) {
		struct json_object *o = json_object_array_get_idx(arr, i), *labels = NULL;
		char cpus[16] = "", mem[32] = "";
		bool bad = vi_json_get_str(o, "error") != NULL;
		if (!bad) {
			snprintf(cpus, sizeof(cpus), "%s", vi_json_get_str(o, "cpus"));
			vi_format_size((uint64_t)vi_json_get_int(o, "memory"), mem, sizeof(mem));
		}
		json_object_object_get_ex(o, "labels", &labels);
		const char *row[] = { vi_json_get_str(o, "host") ? vi_json_get_str(o, "host") : "local",
				      vi_json_get_str(o, "name"),
				      labels ? vi_json_get_str(labels, VI_ENV_LABEL) : NULL,
				      bad ? NULL : vi_json_get_str(o, "hv"),
				      bad ? "error" : vi_json_get_str(o, "state"),
				      bad ? NULL : cpus,
				      bad ? NULL : mem,
				      vi_json_get_str(o, "template"),
				      vi_json_get_str(o, "address"),
				      vi_json_get_str(o, "ssh") };
		const char *cells[10];
		size_t nc = 0;
		for (size_t c = 0; c < ARRAY_SIZE(row); c++)
			if (show[c])
				cells[nc++] = row[c];
		vi_table_add(&t, cells);
	}
	if (n)
		vi_table_print(&t);
	vi_table_release(&t);
	json_object_put(arr);
	if (hosts)
		json_object_put(hosts);
cleanup:
	vi_strlist_release(&selectors);
	return rc;
}
