/* vi label NAME KEY=VALUE... KEY-...: sets and removes a VM's labels, as
 * kubectl label does; and the labels' JSON form, which show and list print. */
#include "cmd.h"
#include "error.h"
#include "log.h"
#include "output.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

const struct vi_option label_options[] = {
	OPT_JSON,
	VI_OPT_TABLE_END,
};

struct json_object *cmd_labels_json(const struct vi_vm *vm)
{
	struct json_object *o = json_object_new_object();

	for (size_t i = 0; i < vm->nlabels; i++) {
		char *key = xstrndup(vm->labels[i], strcspn(vm->labels[i], "="));
		json_object_object_add(o, key, vi_json_str(vm->labels[i] + strlen(key) + 1));
		free(key);
	}
	return o;
}

int cmd_label(int argc, char **argv)
{
	struct vi_vm vm;
	int rc;

	/* Every change is checked before the definition is touched. */
	if ((rc = vi_store_load_vm(&ctx.store, argv[0], &vm)) < 0)
		return rc;
	for (int i = 1; i < argc; i++)
		if ((rc = vi_vm_label_apply(&vm, argv[i], true)) < 0)
			goto cleanup;
	if ((rc = vi_store_save_vm(&ctx.store, &vm)) < 0)
		goto cleanup;
	if (ctx.json) {
		struct json_object *doc = vi_json_doc();
		json_object_object_add(doc, "name", vi_json_str(vm.name));
		json_object_object_add(doc, "labels", cmd_labels_json(&vm));
		vi_json_print(doc);
	} else {
		vi_info("labelled VM '%s'", vm.name);
	}
cleanup:
	vi_vm_release(&vm);
	return rc;
}
