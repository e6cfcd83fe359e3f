/* vi clone SRC NEW: copies of a VM with their own identity. Linked by
 * default: the source's disks are frozen into shared read-only layers and
 * every machine continues on its own overlay, so a clone costs the same
 * whatever the disks' size. --full copies into standalone images. */
#include "cmd.h"
#include "error.h"
#include "image/image.h"
#include "layers.h"
#include "log.h"
#include "machine.h"
#include "output.h"
#include "util.h"

#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int full, start;
static uint64_t count;

const struct vi_option clone_options[] = {
	{ "full", 0, VI_OPT_FLAG, &full, NULL, "copy the disks into standalone images" },
	{ "count", 'n', VI_OPT_UINT, &count, "N", "make NEW-1 .. NEW-N", .min = 1, .max = 1000 },
	{ "start", 0, VI_OPT_FLAG, &start, NULL, "start the clones" },
	OPT_CONNECT,
	OPT_JSON,
	VI_OPT_TABLE_END,
};

/* The clone's definition: the source's, with a new name and identity and its
 * own disks under disks/ (paths filled in by the caller). */
static void clone_definition(const struct vi_vm *src, const char *name, struct vi_vm *vm)
{
	memset(vm, 0, sizeof(*vm));
	vm->name = xstrdup(name);
	vm->hv = xstrdup(src->hv);
	vm->connect = xstrdup(src->connect);
	vm->cpus = src->cpus;
	vm->max_cpus = src->max_cpus;
	vm->memory = src->memory;
	vm->max_memory = src->max_memory;
	vm->kernel = xstrdup(src->kernel);
	vm->initrd = xstrdup(src->initrd);
	vm->cmdline = xstrdup(src->cmdline);
	vm->guest_type = xstrdup(src->guest_type);
	vm->template = xstrdup(src->template);
	vm->template_digest = xstrdup(src->template_digest);
	vm->ready_marker = xstrdup(src->ready_marker);
	vm->created = time(NULL);
	vm->disks = xcalloc(src->ndisks, sizeof(*vm->disks));
	vm->ndisks = src->ndisks;
	vm->nics = xcalloc(src->nnics, sizeof(*vm->nics));
	vm->nnics = src->nnics;
	for (size_t i = 0; i < src->nnics; i++) {
		vm->nics[i].mode = xstrdup(src->nics[i].mode);
		vm->nics[i].source = xstrdup(src->nics[i].source);
	}
	/* uuid, machine_id, hostname and MACs are NULL: all new. */
	vi_vm_new_identity(vm);
}

/* Makes one clone from the layers (backing paths); on failure nothing of it
 * remains. */
static int make_clone(struct vi_machine *src, struct vi_layer_index *idx, char **layers,
		      const char *name, struct vi_vm *vm)
{
	char *staging = NULL;
	struct vi_vm_hv view = { 0 };
	int rc;

	clone_definition(&src->def, name, vm);
	if ((rc = vi_store_stage_vm(&ctx.store, name, &staging)) < 0)
		return rc;
	for (size_t i = 0; rc == 0 && i < vm->ndisks; i++) {
		struct vi_vm_disk *d = &vm->disks[i];
		const struct vi_vm_disk *s = &src->def.disks[i];
		char *base = xstrdup(s->path);
		d->path = xasprintf("disks/%s", basename(base));
		free(base);
		if (s->readonly && !full) {
			/* A read-only disk is shared as it is. */
			free(d->path);
			d->path = xstrdup(layers[i]);
			d->format = s->format;
			d->readonly = true;
			continue;
		}
		char *dst = xasprintf("%s/%s", staging, d->path);
		d->format = VI_DISK_QCOW2;
		d->readonly = s->readonly;
		if (full) {
			struct image *img;
			struct image_convert_opts o = { .create = { .format = IMAGE_QCOW2 } };
			if ((rc = image_open(layers[i], IMAGE_PROBE, 0, &img)) == 0) {
				rc = image_convert(img, dst, &o);
				image_close(img);
			}
			if (rc == 0)
				chmod(dst, 0644);
		} else {
			d->layer = vi_layer_id_of(&ctx.store, layers[i]);
			rc = vi_layer_overlay(dst, layers[i]);
		}
		free(dst);
	}
	/* The index knows the clone reads its layers before it can. */
	vi_layers_ref_vm(idx, vm);
	if (rc == 0)
		rc = vi_layers_write(&ctx.store, idx);
	if (rc < 0 || (rc = vi_machine_add(&ctx.store, src->hv, vm, staging, &view)) < 0)
		goto cleanup;
	free(staging);
	staging = NULL;
	if (start && (rc = vi_hv_start(src->hv, &view.vm)) < 0)
		vi_error_wrap("clone '%s' was made but did not start", name);
cleanup:
	if (staging) {
		vi_store_abort_vm(staging);
		free(staging);
	}
	vi_vm_hv_release(&view);
	return rc;
}

/* A running source keeps running: the backend moves its disks onto new
 * overlays at one instant, and what they were becomes the layers. */
static int freeze_live(struct vi_machine *src, struct vi_layer_index *idx, char **layers)
{
	size_t n = src->def.ndisks;
	char **overlays = xcalloc(n, sizeof(char *));
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = vi_layer_live(&ctx.store, idx, &src->def, src->dir, &src->def.disks[i],
				   &overlays[i], &layers[i]);
	if (rc == 0 && (rc = vi_hv_switch_disks(src->hv, &src->view.vm,
						(const char *const *)overlays)) < 0)
		vi_error_wrap("cannot clone '%s' while it runs", src->def.name);
	for (size_t i = 0; i < n; i++) {
		if (rc == 0 && overlays[i])
			vi_layer_live_done(&ctx.store, idx, src->def.name, src->dir,
					   &src->def.disks[i], overlays[i], layers[i]);
		else if (rc < 0 && layers[i])
			vi_layer_live_undo(&ctx.store, idx, overlays[i], layers[i]);
		free(overlays[i]);
	}
	free(overlays);
	return rc;
}

/* Removes clones made so far when a later one fails: all or nothing. */
static void undo_clones(struct vi_layer_index *idx, char **names, size_t n)
{
	char why[1024];
	int code = vi_error_code();

	snprintf(why, sizeof(why), "%s", vi_error_message());
	for (size_t i = 0; i < n; i++) {
		struct vi_machine m;
		if (vi_machine_open(&ctx.store, &ctx.plugins, names[i], ctx.connect, false, &m) < 0)
			continue;
		if (m.hv) {
			struct vi_hv_state st;
			if (vi_machine_state(&m, &st) == VI_HV_RUNNING)
				vi_hv_stop(m.hv, &m.view.vm, VI_HV_STOP_FORCE, 0);
			vi_hv_undefine(m.hv, &m.view.vm);
		}
		vi_machine_release(&m);
		vi_store_remove_vm(&ctx.store, names[i]);
		vi_layer_unref_vm(idx, names[i]);
	}
	vi_error(code, "%s", why);
}

int cmd_clone(int argc, char **argv)
{
	struct vi_machine src;
	struct vi_hv_state st;
	double t0;
	char **names = NULL, **layers = NULL;
	size_t n = count ? count : 1, made = 0;
	struct json_object *list = NULL;
	struct vi_layer_index idx = { .lock_fd = -1 };
	int rc;
	(void)argc;

	t0 = vi_now_ms();
	if ((rc = vi_check_name(argv[1], "VM")) < 0)
		return rc;
	if ((rc = vi_machine_open(&ctx.store, &ctx.plugins, argv[0], ctx.connect, true, &src)) < 0)
		return rc;
	names = xcalloc(n, sizeof(char *));
	for (size_t i = 0; i < n; i++) {
		names[i] = count ? xasprintf("%s-%zu", argv[1], i + 1) : xstrdup(argv[1]);
		if ((rc = vi_check_name(names[i], "VM")) < 0)
			goto cleanup;
		if (vi_store_vm_exists(&ctx.store, names[i]) == 0) {
			rc = vi_error(VI_ESTATE, "VM '%s' already exists", names[i]);
			goto cleanup;
		}
	}
	vi_error_clear();
	vi_machine_state(&src, &st);
	if ((rc = vi_layers_open(&ctx.store, &idx)) < 0)
		goto cleanup;
	/* Freeze every disk once, however many clones share the layers. */
	layers = xcalloc(src.def.ndisks, sizeof(char *));
	if (st.state == VI_HV_RUNNING || st.state == VI_HV_PAUSED ||
	    st.state == VI_HV_SHUTTING_DOWN)
		rc = freeze_live(&src, &idx, layers);
	else
		for (size_t i = 0; rc == 0 && i < src.def.ndisks; i++)
			rc = vi_layer_freeze(&ctx.store, &idx, &src.def, src.dir, &src.def.disks[i],
					     &layers[i]);
	if (rc < 0 || (rc = vi_store_save_vm(&ctx.store, &src.def)) < 0)
		goto cleanup;
	if (ctx.json)
		list = json_object_new_array();
	for (; made < n; made++) {
		struct vi_vm vm;
		rc = make_clone(&src, &idx, layers, names[made], &vm);
		if (rc == 0 && ctx.json) {
			struct json_object *o = json_object_new_object();
			json_object_object_add(o, "name", vi_json_str(vm.name));
			json_object_object_add(o, "uuid", vi_json_str(vm.uuid));
			json_object_object_add(o, "hv", vi_json_str(vm.hv));
			json_object_object_add(o, "state", vi_json_str(start ? "running" : "stopped"));
			json_object_array_add(list, o);
		}
		vi_vm_release(&vm);
		if (rc < 0) {
			vi_layer_unref_vm(&idx, names[made]);
			undo_clones(&idx, names, made);
			goto cleanup;
		}
	}
	if (ctx.json) {
		struct json_object *doc = vi_json_doc();
		json_object_object_add(doc, "source", vi_json_str(argv[0]));
		json_object_object_add(doc, "linked", json_object_new_boolean(!full));
		json_object_object_add(doc, "clones", list);
		json_object_object_add(doc, "milliseconds", json_object_new_double(vi_ms_since(t0)));
		list = NULL;
		vi_json_print(doc);
	} else if (n == 1) {
		vi_info("cloned '%s' to '%s' (%s, %.0f ms)", argv[0], names[0],
			full ? "full copy" : "linked", vi_ms_since(t0));
	} else {
		vi_info("cloned '%s' to '%s' .. '%s' (%zu %s clones, %.0f ms)", argv[0], names[0],
			names[n - 1], n, full ? "full" : "linked", vi_ms_since(t0));
	}
cleanup:
	if (idx.lock_fd >= 0) {
		/* Commit whatever happened: layers made for nothing go again. */
		char why[1024];
		int code = vi_error_code();
		snprintf(why, sizeof(why), "%s", vi_error_message());
		int crc = vi_layers_commit(&ctx.store, &idx);
		if (rc == 0)
			rc = crc;
		else
			vi_error(code, "%s", why);
	}
	if (list)
		json_object_put(list);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	for (size_t i = 0; layers && i < src.def.ndisks; i++)
		free(layers[i]);
	free(layers);
	vi_machine_release(&src);
	return rc;
}
