/* vi version: the release and the plugin ABI it speaks. */
#include "cmd.h"
#include "output.h"

#include <stdio.h>

const struct vi_option version_options[] = {
	OPT_JSON,
	VI_OPT_TABLE_END,
};

int cmd_version(int argc, char **argv)
{
	(void)argc, (void)argv;
	if (ctx.json) {
		struct json_object *doc = vi_json_doc();
		json_object_object_add(doc, "version", vi_json_str(VI_VERSION));
		json_object_object_add(doc, "plugin_abi", json_object_new_int(VI_HV_ABI_VERSION));
		vi_json_print(doc);
	} else {
		printf("vi %s (plugin ABI %d)\n", VI_VERSION, VI_HV_ABI_VERSION);
	}
	return 0;
}
