/* vi list: the VMs in the store with their backend and state. */
#include "cmd.h"
#include "error.h"
#include "log.h"
#include "forward.h"
#include "machine.h"
#include "output.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int wide;

const struct vi_option list_options[] = {
	{ "wide", 'w', VI_OPT_FLAG, &wide, NULL, "add each VM's address and SSH port" },
	OPT_JSON,
	OPT_CONNECT,
	VI_OPT_TABLE_END,
};

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

int cmd_list(int argc, char **argv)
{
	char **names, **warned = NULL;
	size_t n, nwarned = 0;
	int rc;
	struct json_object *doc = NULL, *arr = NULL;
	struct vi_table t;
	(void)argc, (void)argv;

	if ((rc = vi_store_list_vms(&ctx.store, &names, &n)) < 0)
		return rc;
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
	if (ctx.json) {
		doc = vi_json_doc();
		arr = json_object_new_array();
	} else {
		vi_table_init(&t, wide ? 8 : 6,
			      (const char *[]){ "NAME", "BACKEND", "STATE", "CPUS", "MEMORY", "TEMPLATE",
						"ADDRESS", "SSH" });
	}
	for (size_t i = 0; i < n; i++) {
		char cpus[16], mem[32];

		if (!opened[i]) {
			if (ctx.json) {
				struct json_object *o = json_object_new_object();
				json_object_object_add(o, "name", vi_json_str(names[i]));
				json_object_object_add(o, "error", vi_json_str(errors[i]));
				json_object_array_add(arr, o);
			} else {
				vi_table_add(&t, (const char *[]){ names[i], NULL, "error", NULL, NULL,
								   NULL, NULL, NULL });
			}
			continue;
		}
		struct vi_vm *d = &m[i].def;
		/* The first NIC's address, and where SSH reaches the guest. */
		char *addr = (wide || ctx.json) && d->nnics
				     ? vi_machine_nic_address(&m[i], st[i].state, 0)
				     : NULL;
		struct vi_vm_forward *sf = vi_vm_ssh_forward(d);
		char *ssh = sf ? xasprintf("%s:%u", sf->host_addr, sf->host_port)
			       : addr ? xasprintf("%s:22", addr) : NULL;
		if (ctx.json) {
			struct json_object *o = json_object_new_object();
			json_object_object_add(o, "name", vi_json_str(d->name));
			json_object_object_add(o, "address", vi_json_str(addr));
			json_object_object_add(o, "ssh", vi_json_str(ssh));
			json_object_object_add(o, "hv", vi_json_str(d->hv));
			json_object_object_add(o, "state", vi_json_str(vi_hv_state_name(st[i].state)));
			json_object_object_add(o, "cpus", json_object_new_int(d->cpus));
			json_object_object_add(o, "memory", json_object_new_int64(d->memory));
			json_object_object_add(o, "template", vi_json_str(d->template));
			json_object_array_add(arr, o);
		} else {
			snprintf(cpus, sizeof(cpus), "%u", d->cpus);
			vi_format_size(d->memory, mem, sizeof(mem));
			vi_table_add(&t, (const char *[]){ d->name, d->hv,
							   vi_hv_state_name(st[i].state), cpus, mem,
							   d->template, addr, ssh });
		}
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
	if (ctx.json) {
		json_object_object_add(doc, "vms", arr);
		vi_json_print(doc);
	} else {
		if (n)
			vi_table_print(&t);
		vi_table_release(&t);
	}
	return 0;
}
