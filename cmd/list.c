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
	if (ctx.json) {
		doc = vi_json_doc();
		arr = json_object_new_array();
	} else {
		vi_table_init(&t, wide ? 8 : 6,
			      (const char *[]){ "NAME", "BACKEND", "STATE", "CPUS", "MEMORY", "TEMPLATE",
						"ADDRESS", "SSH" });
	}
	for (size_t i = 0; i < n; i++) {
		struct vi_machine m;
		struct vi_hv_state st;
		char cpus[16], mem[32];

		if (vi_machine_open(&ctx.store, &ctx.plugins, names[i], ctx.connect, false, &m) < 0) {
			/* One unreadable definition must not hide the others. */
			vi_warn("%s", vi_error_message());
			if (ctx.json) {
				struct json_object *o = json_object_new_object();
				json_object_object_add(o, "name", vi_json_str(names[i]));
				json_object_object_add(o, "error", vi_json_str(vi_error_message()));
				json_object_array_add(arr, o);
			} else {
				vi_table_add(&t, (const char *[]){ names[i], NULL, "error", NULL, NULL,
								   NULL, NULL, NULL });
			}
			continue;
		}
		vi_machine_state(&m, &st);
		if (m.hv_problem)
			warn_unknown_state(m.hv_problem, &warned, &nwarned);
		/* The first NIC's address, and where SSH reaches the guest. */
		char *addr = (wide || ctx.json) && m.def.nnics ? vi_machine_nic_address(&m, 0) : NULL;
		struct vi_vm_forward *sf = vi_vm_ssh_forward(&m.def);
		char *ssh = sf ? xasprintf("%s:%u", sf->host_addr, sf->host_port)
			       : addr ? xasprintf("%s:22", addr) : NULL;
		if (ctx.json) {
			struct json_object *o = json_object_new_object();
			json_object_object_add(o, "name", vi_json_str(m.def.name));
			json_object_object_add(o, "address", vi_json_str(addr));
			json_object_object_add(o, "ssh", vi_json_str(ssh));
			json_object_object_add(o, "hv", vi_json_str(m.def.hv));
			json_object_object_add(o, "state", vi_json_str(vi_hv_state_name(st.state)));
			json_object_object_add(o, "cpus", json_object_new_int(m.def.cpus));
			json_object_object_add(o, "memory", json_object_new_int64(m.def.memory));
			json_object_object_add(o, "template", vi_json_str(m.def.template));
			json_object_array_add(arr, o);
		} else {
			snprintf(cpus, sizeof(cpus), "%u", m.def.cpus);
			vi_format_size(m.def.memory, mem, sizeof(mem));
			vi_table_add(&t, (const char *[]){ m.def.name, m.def.hv,
							   vi_hv_state_name(st.state), cpus, mem,
							   m.def.template, addr, ssh });
		}
		free(addr);
		free(ssh);
		vi_machine_release(&m);
	}
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
