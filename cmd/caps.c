/* vi caps: every backend, whether it is usable here, and what it can do. */
#include "cmd.h"
#include "error.h"
#include "output.h"
#include "util.h"

#include <stdio.h>
#include <string.h>

const struct vi_option caps_options[] = {
	OPT_JSON,
	OPT_HV,
	OPT_CONNECT,
	VI_OPT_TABLE_END,
};

int cmd_caps(int argc, char **argv)
{
	struct vi_hv_set *set = &ctx.plugins;
	struct vi_hv *only = NULL;
	(void)argc, (void)argv;

	if (ctx.hv && !(only = vi_hv_find(set, ctx.hv)))
		return -vi_error_code();
	if (only && vi_hv_check_uri(only, ctx.connect) < 0)
		return -vi_error_code();
	struct json_object *doc = ctx.json ? vi_json_doc() : NULL;
	struct json_object *list = ctx.json ? json_object_new_array() : NULL;
	struct vi_table t;
	if (!ctx.json)
		vi_table_init(&t, 4, (const char *[]){ "BACKEND", "PROBE", "CAPABILITIES", "REASON" });
	for (size_t i = 0; i < set->n; i++) {
		struct vi_hv *hv = &set->hv[i];
		const char *caps[32];
		if (only && hv != only)
			continue;
		vi_hv_probe(hv, ctx.connect);
		size_t n = vi_hv_caps(hv, caps, ARRAY_SIZE(caps));
		if (ctx.json) {
			struct json_object *o = json_object_new_object(), *c = json_object_new_array();
			for (size_t k = 0; k < n; k++)
				json_object_array_add(c, vi_json_str(caps[k]));
			json_object_object_add(o, "name", vi_json_str(hv->ops.name));
			json_object_object_add(o, "description", vi_json_str(hv->ops.description));
			json_object_object_add(o, "probe", vi_json_str(vi_hv_probe_name(hv->probe)));
			json_object_object_add(o, "reason", vi_json_str(hv->reason));
			json_object_object_add(o, "capabilities", c);
			json_object_array_add(list, o);
			continue;
		}
		char joined[512] = "";
		for (size_t k = 0; k < n; k++)
			snprintf(joined + strlen(joined), sizeof(joined) - strlen(joined), "%s%s",
				 k ? "," : "", caps[k]);
		vi_table_add(&t, (const char *[]){ hv->ops.name, vi_hv_probe_name(hv->probe),
						   n ? joined : "-",
						   hv->reason ? hv->reason : "" });
	}
	if (ctx.json) {
		json_object_object_add(doc, "backends", list);
		vi_json_print(doc);
		return 0;
	}
	if (set->n)
		vi_table_print(&t);
	else
		printf("no backends installed (see 'vi hv list')\n");
	vi_table_release(&t);
	return 0;
}
