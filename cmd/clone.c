/* vi clone SRC NEW: copies of a VM with their own identity. Linked by
 * default: the source's disks are frozen into shared read-only layers and
 * every machine continues on its own overlay, so a clone costs the same
 * whatever the disks' size. --full copies into standalone images. */
#include "cmd.h"
#include "error.h"
#include "log.h"
#include "ops.h"
#include "output.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

static int full, start;
static struct vi_strlist networks, labels;
static uint64_t count;

const struct vi_option clone_options[] = {
	{ "full", 0, VI_OPT_FLAG, &full, NULL, "copy the disks into standalone images" },
	{ "count", 'n', VI_OPT_UINT, &count, "N", "make NEW-1 .. NEW-N", .min = 1, .max = 1000 },
	{ "start", 0, VI_OPT_FLAG, &start, NULL, "start the clones" },
	{ "network", 0, VI_OPT_LIST, &networks, "FROM=TO",
	  "a NIC on network (or bridge) FROM is on TO in the clones (repeatable)" },
	{ "label", 0, VI_OPT_LIST, &labels, "KEY=VALUE|KEY-",
	  "set or remove a label of the clones (repeatable)" },
	OPT_CONNECT,
	OPT_JSON,
	VI_OPT_TABLE_END,
};

int cmd_clone(int argc, char **argv)
{
	size_t n = count ? count : 1;
	char **names = xcalloc(n, sizeof(char *));
	struct vi_vm *clones = xcalloc(n, sizeof(*clones));
	struct vi_clone_spec spec = {
		.source = argv[0],
		.connect = ctx.connect,
		.names = (const char *const *)names,
		.n = n,
		.full = full,
		.start = start,
		.networks = networks.items,
		.nnetworks = networks.n,
		.labels = labels.items,
		.nlabels = labels.n,
	};
	double t0 = vi_now_ms();
	int rc;
	(void)argc;

	if ((rc = vi_check_name(argv[1], "VM")) < 0)
		goto cleanup;
	for (size_t i = 0; i < networks.n; i++) {
		const char *eq = strchr(networks.items[i], '=');
		if (!eq || eq == networks.items[i] || !eq[1] || strpbrk(networks.items[i], " \t/")) {
			rc = vi_error(VI_EUSAGE, "--network takes FROM=TO, not '%s'", networks.items[i]);
			goto cleanup;
		}
	}
	for (size_t i = 0; i < n; i++)
		names[i] = count ? xasprintf("%s-%zu", argv[1], i + 1) : xstrdup(argv[1]);
	if ((rc = vi_op_clone(&ctx.store, &ctx.plugins, &spec, clones)) < 0)
		goto cleanup;
	if (ctx.json) {
		struct json_object *doc = vi_json_doc(), *list = json_object_new_array();
		for (size_t i = 0; i < n; i++) {
			struct json_object *o = json_object_new_object();
			json_object_object_add(o, "name", vi_json_str(clones[i].name));
			json_object_object_add(o, "uuid", vi_json_str(clones[i].uuid));
			json_object_object_add(o, "hv", vi_json_str(clones[i].hv));
			json_object_object_add(o, "state", vi_json_str(start ? "running" : "stopped"));
			json_object_array_add(list, o);
		}
		json_object_object_add(doc, "source", vi_json_str(argv[0]));
		json_object_object_add(doc, "linked", json_object_new_boolean(!full));
		json_object_object_add(doc, "clones", list);
		json_object_object_add(doc, "milliseconds", vi_json_ms(vi_ms_since(t0)));
		vi_json_print(doc);
	} else if (n == 1) {
		vi_info("cloned '%s' to '%s' (%s, %.0f ms)", argv[0], names[0],
			full ? "full copy" : "linked", vi_ms_since(t0));
	} else {
		vi_info("cloned '%s' to '%s' .. '%s' (%zu %s clones, %.0f ms)", argv[0], names[0],
			names[n - 1], n, full ? "full" : "linked", vi_ms_since(t0));
	}
cleanup:
	for (size_t i = 0; i < n; i++) {
		free(names[i]);
		vi_vm_release(&clones[i]);
	}
	free(names);
	free(clones);
	return rc;
}
