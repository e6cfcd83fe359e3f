/* vi hv list: the installed hypervisor plugins, where they were found and
 * what their probe answers here. */
#include "cmd.h"
#include "output.h"
#include "util.h"

#include <stdio.h>

const struct vi_option hv_list_options[] = {
	OPT_JSON,
	OPT_CONNECT,
	VI_OPT_TABLE_END,
};

const struct cmd hv_commands[] = {
	{ "list", cmd_hv_list, 0, 0, NEEDS_PLUGINS | ALL_PLUGINS, "", hv_list_options,
	  "list the hypervisor plugins and their probe answers" },
	{ NULL },
};

int cmd_hv_list(int argc, char **argv)
{
	struct vi_hv_set *set = &ctx.plugins;
	(void)argc, (void)argv;

	for (size_t i = 0; i < set->n; i++)
		vi_hv_probe(&set->hv[i], ctx.connect);
	if (ctx.json) {
		struct json_object *doc = vi_json_doc(), *list = json_object_new_array(),
				   *errors = json_object_new_array(),
				   *dirs = json_object_new_array();
		for (size_t i = 0; i < set->n; i++) {
			struct vi_hv *hv = &set->hv[i];
			struct json_object *o = json_object_new_object();
			json_object_object_add(o, "name", vi_json_str(hv->ops.name));
			json_object_object_add(o, "description", vi_json_str(hv->ops.description));
			json_object_object_add(o, "path", vi_json_str(hv->path));
			json_object_object_add(o, "abi_version", json_object_new_int(hv->ops.abi_version));
			json_object_object_add(o, "probe", vi_json_str(vi_hv_probe_name(hv->probe)));
			json_object_object_add(o, "reason", vi_json_str(hv->reason));
			json_object_array_add(list, o);
		}
		for (size_t i = 0; i < set->nerrors; i++)
			json_object_array_add(errors, vi_json_str(set->load_errors[i]));
		for (const char *const *d = vi_hv_search_path(); *d; d++)
			json_object_array_add(dirs, vi_json_str(*d));
		json_object_object_add(doc, "backends", list);
		json_object_object_add(doc, "load_errors", errors);
		json_object_object_add(doc, "search_path", dirs);
		vi_json_print(doc);
		return 0;
	}
	if (!set->n) {
		printf("no hypervisor plugins found in:");
		for (const char *const *d = vi_hv_search_path(); *d; d++)
			printf(" %s", *d);
		printf("\n");
		return 0;
	}
	struct vi_table t;
	vi_table_init(&t, 4, (const char *[]){ "NAME", "PROBE", "PATH", "REASON" });
	for (size_t i = 0; i < set->n; i++) {
		struct vi_hv *hv = &set->hv[i];
		vi_table_add(&t, (const char *[]){ hv->ops.name, vi_hv_probe_name(hv->probe),
						   hv->path, hv->reason ? hv->reason : "" });
	}
	vi_table_print(&t);
	vi_table_release(&t);
	return 0;
}
