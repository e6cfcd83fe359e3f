/* vi snapshot create|list|show|checkout|delete: a VM's snapshots, a DAG in
 * the manner of git's commits (lib/snapshot.h). */
#include "cmd.h"
#include "error.h"
#include "log.h"
#include "machine.h"
#include "output.h"
#include "progress.h"
#include "snapshot.h"
#include "tools.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *message;
static int disk_only, tree, discard;

const struct vi_option snapshot_create_options[] = {
	{ "message", 'm', VI_OPT_STRING, &message, "TEXT", "say what the snapshot is" },
	{ "disk-only", 0, VI_OPT_FLAG, &disk_only, NULL,
	  "the disks alone, even of a running VM (no memory)" },
	OPT_JSON,
	VI_OPT_TABLE_END,
};

const struct vi_option snapshot_list_options[] = {
	{ "tree", 't', VI_OPT_FLAG, &tree, NULL, "draw the snapshots as a tree" },
	OPT_JSON,
	VI_OPT_TABLE_END,
};

const struct vi_option snapshot_options[] = {
	OPT_JSON,
	VI_OPT_TABLE_END,
};

const struct vi_option snapshot_checkout_options[] = {
	{ "discard", 0, VI_OPT_FLAG, &discard, NULL,
	  "drop the current state instead of keeping it as a snapshot" },
	OPT_JSON,
	VI_OPT_TABLE_END,
};

const struct cmd snapshot_commands[] = {
	{ "checkout", cmd_snapshot_checkout, 2, 2, NEEDS_LOCK | NEEDS_PLUGINS, "VM SNAPSHOT",
	  snapshot_checkout_options, "return a VM to a snapshot, keeping its current state" },
	{ "create", cmd_snapshot_create, 1, 2, NEEDS_LOCK | NEEDS_PLUGINS, "VM [SNAPSHOT]",
	  snapshot_create_options, "take a snapshot: disks and, of a running VM, memory" },
	{ "delete", cmd_snapshot_delete, 2, 2, NEEDS_LOCK | NEEDS_PLUGINS, "VM SNAPSHOT",
	  snapshot_options, "delete a snapshot, merging its data into what reads it" },
	{ "diff", cmd_snapshot_diff, 2, 3, NEEDS_STORE | NEEDS_PLUGINS, "VM SNAPSHOT [SNAPSHOT2]",
	  snapshot_options, "the files that differ between two snapshots, or one and now" },
	{ "list", cmd_snapshot_list, 1, 1, NEEDS_STORE, "VM", snapshot_list_options,
	  "list a VM's snapshots, its current one marked" },
	{ "revert", cmd_snapshot_checkout, 2, 2, NEEDS_LOCK | NEEDS_PLUGINS, "VM SNAPSHOT",
	  snapshot_checkout_options, "the same as checkout" },
	{ "show", cmd_snapshot_show, 2, 2, NEEDS_STORE, "VM SNAPSHOT", snapshot_options,
	  "show a snapshot and the VM's definition then" },
	{ NULL },
};

static void format_time(time_t t, char *buf, size_t len)
{
	struct tm tm;

	if (!t || !localtime_r(&t, &tm) || !strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm))
		snprintf(buf, len, "-");
}

static const char *has_memory(const struct vi_snapshot *s)
{
	return s->memory ? "yes" : "no";
}

static struct json_object *snapshot_json(const struct vi_snapshot *s, const char *head)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "name", vi_json_str(s->name));
	json_object_object_add(o, "parent", vi_json_str(s->parent));
	json_object_object_add(o, "created", json_object_new_int64((int64_t)s->created));
	json_object_object_add(o, "state", vi_json_str(s->state));
	json_object_object_add(o, "memory", json_object_new_boolean(s->memory));
	json_object_object_add(o, "size", json_object_new_int64((int64_t)s->size));
	json_object_object_add(o, "message", vi_json_str(s->message));
	json_object_object_add(o, "automatic", json_object_new_boolean(s->automatic));
	json_object_object_add(o, "current",
			       json_object_new_boolean(head && !strcmp(head, s->name)));
	return o;
}

/* The VM's definition without a backend: list and show need none. */
static int load_vm(const char *name, struct vi_vm *vm)
{
	return vi_store_load_vm(&ctx.store, name, vm);
}

int cmd_snapshot_create(int argc, char **argv)
{
	struct vi_machine m;
	struct vi_snapshot_spec spec = {
		.name = argc > 1 ? argv[1] : NULL,
		.message = message,
		.disk_only = disk_only,
	};
	char *name = NULL;
	int rc;

	if (spec.name && (rc = vi_check_name(spec.name, "snapshot")) < 0)
		return rc;
	if ((rc = vi_machine_open(&ctx.store, &ctx.plugins, argv[0], NULL, true, &m)) < 0)
		return rc;
	if ((rc = vi_snapshot_create(&ctx.store, &m, &spec, &name)) == 0) {
		struct vi_snapshot snap;
		if ((rc = vi_snapshot_load(&ctx.store, m.def.name, name, &snap)) == 0) {
			if (ctx.json) {
				struct json_object *doc = vi_json_doc();
				json_object_object_add(doc, "vm", vi_json_str(m.def.name));
				json_object_object_add(doc, "snapshot", snapshot_json(&snap, name));
				json_object_object_add(doc, "paused_ms", vi_json_ms(spec.paused_ms));
				vi_json_print(doc);
			} else {
				printf("%s\n", name);
			}
			vi_snapshot_release(&snap);
		}
	}
	free(name);
	vi_machine_release(&m);
	return rc;
}

/* Prints the subtree of snapshot i, children oldest first, git-style. */
static void print_tree(const struct vi_snapshot *all, size_t n, size_t i, const char *head,
		       const char *prefix, bool last, bool root)
{
	char when[32], size[32];
	const struct vi_snapshot *s = &all[i];

	format_time(s->created, when, sizeof(when));
	vi_format_size(s->size, size, sizeof(size));
	printf("%s%s%s %s  %s  %s%s%s%s\n", prefix, root ? "" : last ? "`-- " : "|-- ",
	       head && !strcmp(head, s->name) ? "*" : " ", s->name, when,
	       s->memory ? "memory, " : "", size, s->message ? "  " : "",
	       s->message ? s->message : "");
	char *next = xasprintf("%s%s", prefix, root ? "" : last ? "    " : "|   ");
	size_t children = 0, seen = 0;
	for (size_t j = 0; j < n; j++)
		children += all[j].parent && !strcmp(all[j].parent, s->name);
	for (size_t j = 0; j < n; j++)
		if (all[j].parent && !strcmp(all[j].parent, s->name))
			print_tree(all, n, j, head, next, ++seen == children, false);
	free(next);
}

static bool is_root(const struct vi_snapshot *all, size_t n, size_t i)
{
	if (!all[i].parent)
		return true;
	for (size_t j = 0; j < n; j++)
		if (!strcmp(all[j].name, all[i].parent))
			return false;
	return true;
}

int cmd_snapshot_list(int argc, char **argv)
{
	struct vi_snapshot *all;
	struct vi_vm vm;
	size_t n;
	int rc;
	(void)argc;

	if ((rc = load_vm(argv[0], &vm)) < 0)
		return rc;
	if ((rc = vi_snapshot_list(&ctx.store, vm.name, &all, &n)) < 0)
		goto out;
	if (ctx.json) {
		struct json_object *doc = vi_json_doc(), *list = json_object_new_array();
		json_object_object_add(doc, "vm", vi_json_str(vm.name));
		json_object_object_add(doc, "current", vi_json_str(vm.snapshot));
		for (size_t i = 0; i < n; i++)
			json_object_array_add(list, snapshot_json(&all[i], vm.snapshot));
		json_object_object_add(doc, "snapshots", list);
		vi_json_print(doc);
	} else if (tree) {
		for (size_t i = 0; i < n; i++)
			if (is_root(all, n, i))
				print_tree(all, n, i, vm.snapshot, "", true, true);
	} else if (n) {
		struct vi_table t;
		vi_table_init(&t, 7,
			      (const char *[]){ "", "NAME", "PARENT", "CREATED", "MEMORY", "SIZE",
						"MESSAGE" });
		for (size_t i = 0; i < n; i++) {
			char when[32], size[32];
			format_time(all[i].created, when, sizeof(when));
			vi_format_size(all[i].size, size, sizeof(size));
			vi_table_add(&t, (const char *[]){
						 vm.snapshot && !strcmp(vm.snapshot, all[i].name) ? "*"
												  : "",
						 all[i].name, all[i].parent ? all[i].parent : "-",
						 when, has_memory(&all[i]), size,
						 all[i].message ? all[i].message : "" });
		}
		vi_table_print(&t);
		vi_table_release(&t);
	}
	vi_snapshots_free(all, n);
out:
	vi_vm_release(&vm);
	return rc;
}

int cmd_snapshot_show(int argc, char **argv)
{
	struct vi_snapshot snap;
	struct vi_vm vm;
	char when[32], size[32], mem[32];
	int rc;
	(void)argc;

	if ((rc = load_vm(argv[0], &vm)) < 0)
		return rc;
	if ((rc = vi_snapshot_load(&ctx.store, vm.name, argv[1], &snap)) < 0) {
		vi_vm_release(&vm);
		return rc;
	}
	const struct vi_vm *d = &snap.def;
	if (ctx.json) {
		struct json_object *doc = vi_json_doc(), *o = snapshot_json(&snap, vm.snapshot),
				   *def = json_object_new_object(), *disks = json_object_new_array();
		json_object_object_add(def, "cpus", json_object_new_int((int)d->cpus));
		json_object_object_add(def, "max_cpus", json_object_new_int((int)d->max_cpus));
		json_object_object_add(def, "memory", json_object_new_int64((int64_t)d->memory));
		json_object_object_add(def, "max_memory",
				       json_object_new_int64((int64_t)d->max_memory));
		for (size_t i = 0; i < snap.ndisks; i++) {
			struct json_object *k = json_object_new_object();
			json_object_object_add(k, "image", vi_json_str(snap.disks[i].backing));
			json_object_object_add(k, "layer", vi_json_str(snap.disks[i].layer));
			json_object_object_add(k, "readonly",
					       json_object_new_boolean(snap.disks[i].readonly));
			json_object_array_add(disks, k);
		}
		json_object_object_add(def, "disks", disks);
		json_object_object_add(o, "definition", def);
		json_object_object_add(doc, "vm", vi_json_str(vm.name));
		json_object_object_add(doc, "snapshot", o);
		vi_json_print(doc);
		goto out;
	}
	format_time(snap.created, when, sizeof(when));
	vi_format_size(snap.size, size, sizeof(size));
	vi_format_size(d->memory, mem, sizeof(mem));
	printf("%-10s %s%s\n", "name:", snap.name,
	       vm.snapshot && !strcmp(vm.snapshot, snap.name) ? " (current)" : "");
	printf("%-10s %s\n", "vm:", vm.name);
	printf("%-10s %s\n", "parent:", snap.parent ? snap.parent : "-");
	printf("%-10s %s\n", "created:", when);
	printf("%-10s %s%s\n", "state:", snap.state,
	       snap.memory ? ", with memory: checkout resumes it" : ", disks only");
	printf("%-10s %s\n", "size:", size);
	if (snap.message)
		printf("%-10s %s%s\n", "message:", snap.message,
		       snap.automatic ? " (automatic)" : "");
	printf("%-10s %u (max %u)\n", "cpus:", d->cpus, d->max_cpus ? d->max_cpus : d->cpus);
	printf("%-10s %s\n", "memory:", mem);
	for (size_t i = 0; i < snap.ndisks; i++)
		printf("%-10s %s%s%s%s\n", i ? "" : "disks:", snap.disks[i].backing,
		       snap.disks[i].readonly ? " (read-only)" : "",
		       snap.disks[i].layer ? ", layer " : "",
		       snap.disks[i].layer ? snap.disks[i].layer : "");
out:
	vi_snapshot_release(&snap);
	vi_vm_release(&vm);
	return 0;
}

int cmd_snapshot_checkout(int argc, char **argv)
{
	struct vi_machine m;
	struct vi_hv_state st;
	char *saved = NULL;
	int rc;
	(void)argc;

	if ((rc = vi_machine_open(&ctx.store, &ctx.plugins, argv[0], NULL, true, &m)) < 0)
		return rc;
	rc = vi_snapshot_checkout(&ctx.store, &ctx.plugins, &m, argv[1], discard, &saved);
	if (saved && !ctx.json)
		vi_info("kept the state of VM '%s' before the checkout as snapshot '%s'", argv[0],
			saved);
	if (rc == 0) {
		const char *state = vi_hv_state_name(vi_machine_state(&m, &st));
		if (ctx.json) {
			struct json_object *doc = vi_json_doc();
			json_object_object_add(doc, "vm", vi_json_str(argv[0]));
			json_object_object_add(doc, "snapshot", vi_json_str(argv[1]));
			json_object_object_add(doc, "state", vi_json_str(state));
			json_object_object_add(doc, "saved", vi_json_str(saved));
			vi_json_print(doc);
		} else {
			vi_info("VM '%s' is at snapshot '%s', %s", argv[0], argv[1], state);
		}
	}
	free(saved);
	if (m.dir)
		vi_machine_release(&m);
	return rc;
}

int cmd_snapshot_delete(int argc, char **argv)
{
	struct vi_machine m;
	int rc;
	(void)argc;

	if ((rc = vi_machine_open(&ctx.store, &ctx.plugins, argv[0], NULL, false, &m)) < 0)
		return rc;
	if ((rc = vi_snapshot_delete(&ctx.store, &m, argv[1])) == 0) {
		if (ctx.json) {
			struct json_object *doc = vi_json_doc();
			json_object_object_add(doc, "vm", vi_json_str(argv[0]));
			json_object_object_add(doc, "deleted", vi_json_str(argv[1]));
			vi_json_print(doc);
		} else {
			vi_info("deleted snapshot '%s' of VM '%s'", argv[1], argv[0]);
		}
	}
	vi_machine_release(&m);
	return rc;
}

static struct json_object *diff_file_json(const struct vi_diff_file *f)
{
	struct json_object *o = json_object_new_object();
	char type[2] = { f->type, 0 };

	json_object_object_add(o, "type", vi_json_str(type));
	json_object_object_add(o, "mode", json_object_new_int((int)f->mode));
	json_object_object_add(o, "size", json_object_new_int64(f->size));
	json_object_object_add(o, "link", vi_json_str(f->link));
	return o;
}

static void diff_json(const char *vm, const char *from, const char *to, const struct vi_diff *d)
{
	static const char *const kinds[] = { "added", "removed", "changed", "attributes" };
	struct json_object *doc = vi_json_doc(), *list = json_object_new_array();

	json_object_object_add(doc, "vm", vi_json_str(vm));
	json_object_object_add(doc, "from", vi_json_str(from));
	json_object_object_add(doc, "to", vi_json_str(to));
	for (size_t i = 0; i < d->n; i++) {
		const struct vi_diff_entry *e = &d->v[i];
		struct json_object *o = json_object_new_object(), *ch = json_object_new_array();
		json_object_object_add(o, "kind", vi_json_str(kinds[e->kind]));
		json_object_object_add(o, "path", vi_json_str(e->path));
		if (e->kind != VI_DIFF_ADDED)
			json_object_object_add(o, "a", diff_file_json(&e->a));
		if (e->kind != VI_DIFF_REMOVED)
			json_object_object_add(o, "b", diff_file_json(&e->b));
		for (int a = 0; a < VI_DIFF_NATTRS; a++)
			if (e->changed & (1u << a))
				json_object_array_add(ch, vi_json_str(vi_diff_attr_name(a)));
		json_object_object_add(o, "changed", ch);
		json_object_array_add(list, o);
	}
	json_object_object_add(doc, "entries", list);
	vi_json_print(doc);
}

int cmd_snapshot_diff(int argc, char **argv)
{
	struct vi_snapshot a = { 0 }, b = { 0 };
	struct vi_machine m = { 0 };
	struct vi_diff diff = { 0 };
	struct vi_progress progress;
	const char **pa = NULL, **pb = NULL;
	size_t na = 0, nb = 0;
	int rc;

	if ((rc = vi_machine_open(&ctx.store, &ctx.plugins, argv[0], NULL, false, &m)) < 0)
		return rc;
	if ((rc = vi_snapshot_load(&ctx.store, m.def.name, argv[1], &a)) < 0 ||
	    (argc > 2 && (rc = vi_snapshot_load(&ctx.store, m.def.name, argv[2], &b)) < 0))
		goto out;
	pa = xcalloc(a.ndisks + 1, sizeof(char *));
	for (size_t i = 0; i < a.ndisks; i++)
		pa[na++] = a.disks[i].backing;
	if (argc > 2) {
		pb = xcalloc(b.ndisks + 1, sizeof(char *));
		for (size_t i = 0; i < b.ndisks; i++)
			pb[nb++] = b.disks[i].backing;
	} else {
		/* Now: the VM's disks, which must hold still. */
		struct vi_hv_state st;
		int state = vi_machine_state(&m, &st);
		if (vi_hv_state_active(state)) {
			rc = vi_error(VI_ESTATE, "VM '%s' is %s: stop it, or name two snapshots",
				      m.def.name, vi_hv_state_name(state));
			goto out;
		}
		pb = xcalloc(m.view.vm.ndisks + 1, sizeof(char *));
		for (size_t i = 0; i < m.view.vm.ndisks; i++)
			pb[nb++] = m.view.disks[i].path;
	}
	struct vi_diff_opts opts = {
		.a = { pa, na, NULL },
		.b = { pb, nb, NULL },
		.progress = vi_progress_report,
		.opaque = &progress,
	};
	vi_progress_start(&progress, 0, "comparing snapshot '%s' of VM '%s' with %s%s%s",
			  argv[1], m.def.name, argc > 2 ? "snapshot '" : "its current state",
			  argc > 2 ? argv[2] : "", argc > 2 ? "'" : "");
	rc = vi_tools_diff(&opts, &diff);
	vi_progress_end(&progress);
	if (rc < 0)
		goto out;
	if (ctx.json)
		diff_json(m.def.name, argv[1], argc > 2 ? argv[2] : NULL, &diff);
	else
		vi_diff_print(&diff, stdout);
out:
	vi_diff_release(&diff);
	free(pa);
	free(pb);
	vi_snapshot_release(&a);
	vi_snapshot_release(&b);
	vi_machine_release(&m);
	return rc;
}
