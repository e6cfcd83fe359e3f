/* vi forward add|rm|list VM: the port forwards of a VM's user NIC, recorded
 * in its definition and, while it runs, applied at once where the backend
 * can. */
#include "cmd.h"
#include "error.h"
#include "forward.h"
#include "log.h"
#include "machine.h"
#include "output.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const struct vi_option forward_options[] = {
	OPT_CONNECT,
	OPT_JSON,
	VI_OPT_TABLE_END,
};

const struct cmd forward_commands[] = {
	{ "add", cmd_forward_add, 2, 2, NEEDS_LOCK | NEEDS_PLUGINS, "NAME [ADDR:]HOST:GUEST[/udp]",
	  forward_options, "forward a host port to a VM's port" },
	{ "list", cmd_forward_list, 1, 1, NEEDS_STORE | NEEDS_PLUGINS, "NAME", forward_options,
	  "list a VM's port forwards" },
	{ "rm", cmd_forward_rm, 2, 2, NEEDS_LOCK | NEEDS_PLUGINS, "NAME [ADDR:]HOST[/udp]",
	  forward_options, "remove a port forward" },
	{ NULL },
};

/* The VM's user NIC (and its number), or VI_EUNSUPPORTED. */
static int user_nic(struct vi_machine *m, struct vi_vm_nic **nic, size_t *index)
{
	if (!(*nic = vi_vm_user_nic(&m->def)))
		return vi_error(VI_EUNSUPPORTED,
				"VM '%s' has no user NIC: port forwards need one (--nic user)",
				m->def.name);
	*index = (size_t)(*nic - m->def.nics);
	return 0;
}

static struct vi_hv_forward hv_forward(const struct vi_vm_forward *f)
{
	return (struct vi_hv_forward){
		.struct_size = sizeof(struct vi_hv_forward),
		.proto = f->proto,
		.host_addr = f->host_addr,
		.host_port = f->host_port,
		.guest_port = f->guest_port,
	};
}

static void report(const char *verb, const struct vi_vm *vm, const struct vi_vm_forward *f,
		   bool live)
{
	if (ctx.json) {
		struct json_object *doc = vi_json_doc();
		json_object_object_add(doc, "name", vi_json_str(vm->name));
		json_object_object_add(doc, "host_addr", vi_json_str(f->host_addr));
		json_object_object_add(doc, "host_port", json_object_new_int((int)f->host_port));
		json_object_object_add(doc, "guest_port", json_object_new_int((int)f->guest_port));
		json_object_object_add(doc, "proto",
				       vi_json_str(f->proto == VI_HV_UDP ? "udp" : "tcp"));
		json_object_object_add(doc, "live", json_object_new_boolean(live));
		vi_json_print(doc);
		return;
	}
	char *s = vi_vm_forward_str(f);
	vi_info("%s %s on VM '%s'%s", verb, s, vm->name, live ? "" : " (from its next start)");
	free(s);
}

static bool running(struct vi_machine *m)
{
	struct vi_hv_state st;

	return vi_hv_state_active(vi_machine_state(m, &st));
}

int cmd_forward_add(int argc, char **argv)
{
	struct vi_machine m;
	struct vi_vm_nic *nic;
	struct vi_vm_forward f = { 0 };
	size_t index = 0;
	bool live = false;
	int rc;
	(void)argc;

	if ((rc = vi_vm_forward_parse(argv[1], &f)) < 0)
		return rc;
	if ((rc = vi_machine_open(&ctx.store, &ctx.plugins, argv[0], ctx.connect, true, &m)) < 0)
		goto out_forward;
	if ((rc = user_nic(&m, &nic, &index)) < 0)
		goto out;
	for (size_t i = 0; i < nic->nforwards; i++)
		if (nic->forwards[i].proto == f.proto && f.host_port &&
		    nic->forwards[i].host_port == f.host_port) {
			rc = vi_error(VI_ESTATE, "VM '%s' forwards host port %u already", m.def.name,
				      f.host_port);
			goto out;
		}
	/* Only the new port is checked: a running VM holds its others. */
	if ((rc = f.host_port ? vi_port_check(f.host_addr, f.proto, f.host_port)
			      : vi_port_free(f.host_addr, f.proto, &f.host_port)) < 0)
		goto out;
	nic->forwards = xrealloc(nic->forwards, (nic->nforwards + 1) * sizeof(*nic->forwards));
	nic->forwards[nic->nforwards++] = f;
	memset(&f, 0, sizeof(f));
	const struct vi_vm_forward *added = &nic->forwards[nic->nforwards - 1];
	if (running(&m)) {
		struct vi_hv_forward hf = hv_forward(added);
		if ((rc = vi_hv_forward_add(m.hv, &m.view.vm, index, &hf)) < 0) {
			if (rc == -VI_EUNSUPPORTED)
				vi_error_wrap("VM '%s' runs: stop it to add the forward", m.def.name);
			goto out;
		}
		live = true;
	}
	if ((rc = vi_store_save_vm(&ctx.store, &m.def)) < 0)
		goto out;
	report("forwarding", &m.def, added, live);
out:
	vi_machine_release(&m);
out_forward:
	vi_vm_forward_release(&f);
	return rc;
}

/* "[ADDR:]HOST[/udp]": the forward from that host port. */
static int find_forward(const struct vi_vm_nic *nic, const char *vm, const char *spec,
			size_t *at)
{
	char *s = xstrdup(spec), *proto = strchr(s, '/'), *port = strrchr(s, ':');
	const char *addr = NULL;
	uint64_t p;
	int rc, want = VI_HV_TCP;

	if (proto) {
		*proto++ = 0;
		want = !strcmp(proto, "udp") ? VI_HV_UDP : VI_HV_TCP;
	}
	if (port) {
		*port++ = 0;
		addr = s;
	} else {
		port = s;
	}
	rc = vi_parse_uint(port, "host port", 1, 65535, &p);
	for (size_t i = 0; rc == 0 && i < nic->nforwards; i++) {
		const struct vi_vm_forward *f = &nic->forwards[i];
		if (f->proto == want && f->host_port == p && (!addr || !strcmp(addr, f->host_addr))) {
			*at = i;
			free(s);
			return 0;
		}
	}
	if (rc == 0)
		rc = vi_error(VI_ENOTFOUND, "VM '%s' has no forward from host port %s", vm, spec);
	free(s);
	return rc;
}

int cmd_forward_rm(int argc, char **argv)
{
	struct vi_machine m;
	struct vi_vm_nic *nic;
	struct vi_vm_forward gone;
	size_t index = 0, at = 0;
	bool live = false;
	int rc;
	(void)argc;

	if ((rc = vi_machine_open(&ctx.store, &ctx.plugins, argv[0], ctx.connect, true, &m)) < 0)
		return rc;
	if ((rc = user_nic(&m, &nic, &index)) < 0 ||
	    (rc = find_forward(nic, m.def.name, argv[1], &at)) < 0)
		goto out;
	if (running(&m)) {
		struct vi_hv_forward hf = hv_forward(&nic->forwards[at]);
		if ((rc = vi_hv_forward_remove(m.hv, &m.view.vm, index, &hf)) < 0) {
			if (rc == -VI_EUNSUPPORTED)
				vi_error_wrap("VM '%s' runs: stop it to remove the forward",
					      m.def.name);
			goto out;
		}
		live = true;
	}
	gone = nic->forwards[at];
	memmove(&nic->forwards[at], &nic->forwards[at + 1],
		(nic->nforwards - at - 1) * sizeof(*nic->forwards));
	nic->nforwards--;
	rc = vi_store_save_vm(&ctx.store, &m.def);
	if (rc == 0)
		report("no longer forwarding", &m.def, &gone, live);
	vi_vm_forward_release(&gone);
out:
	vi_machine_release(&m);
	return rc;
}

int cmd_forward_list(int argc, char **argv)
{
	struct vi_machine m;
	struct json_object *doc = NULL, *arr = NULL;
	struct vi_table t;
	int rc;
	(void)argc;

	if ((rc = vi_machine_open(&ctx.store, &ctx.plugins, argv[0], ctx.connect, false, &m)) < 0)
		return rc;
	if (ctx.json) {
		doc = vi_json_doc();
		arr = json_object_new_array();
	} else {
		vi_table_init(&t, 4, (const char *[]){ "HOST", "GUEST", "PROTO", "NIC" });
	}
	for (size_t i = 0; i < m.def.nnics; i++) {
		const struct vi_vm_nic *n = &m.def.nics[i];
		for (size_t j = 0; j < n->nforwards; j++) {
			const struct vi_vm_forward *f = &n->forwards[j];
			const char *proto = f->proto == VI_HV_UDP ? "udp" : "tcp";
			if (ctx.json) {
				struct json_object *o = json_object_new_object();
				json_object_object_add(o, "nic", json_object_new_int((int)i));
				json_object_object_add(o, "host_addr", vi_json_str(f->host_addr));
				json_object_object_add(o, "host_port",
						       json_object_new_int((int)f->host_port));
				json_object_object_add(o, "guest_port",
						       json_object_new_int((int)f->guest_port));
				json_object_object_add(o, "proto", vi_json_str(proto));
				json_object_object_add(o, "auto", json_object_new_boolean(f->auto_port));
				json_object_array_add(arr, o);
				continue;
			}
			char *host = xasprintf("%s:%u", f->host_addr, f->host_port);
			char *guest = xasprintf("%u", f->guest_port), *nicno = xasprintf("%zu", i);
			vi_table_add(&t, (const char *[]){ host, guest, proto, nicno });
			free(host);
			free(guest);
			free(nicno);
		}
	}
	if (ctx.json) {
		json_object_object_add(doc, "name", vi_json_str(m.def.name));
		json_object_object_add(doc, "forwards", arr);
		vi_json_print(doc);
	} else {
		vi_table_print(&t);
		vi_table_release(&t);
	}
	vi_machine_release(&m);
	return 0;
}
