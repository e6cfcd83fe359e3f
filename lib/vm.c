/* vm.yaml: the VM definition, read and written through lib/yaml-doc. */
#include "vm.h"
#include "error.h"
#include "util.h"
#include "yaml-doc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *vi_disk_format_name(int format)
{
	return format == VI_DISK_QCOW2 ? "qcow2" : "raw";
}

int vi_disk_format_parse(const char *s, int *format)
{
	if (!strcmp(s, "qcow2"))
		*format = VI_DISK_QCOW2;
	else if (!strcmp(s, "raw"))
		*format = VI_DISK_RAW;
	else
		return vi_error(VI_EUSAGE, "unknown disk format '%s': expected qcow2 or raw", s);
	return 0;
}


/* Copies an optional string key into *dst. */
static int get_string(struct vi_yaml *y, yaml_node_t *map, const char *key, bool required,
		      char **dst)
{
	const char *s = NULL;
	int rc = vi_yaml_get_str(y, map, key, required, &s);
	if (rc == 0)
		*dst = xstrdup(s);
	return rc < 0 ? rc : 0;
}

static int load_disks(struct vi_yaml *y, yaml_node_t *seq, struct vi_vm *vm)
{
	static const char *const keys[] = { "path", "format", "readonly", "layer" };
	yaml_node_t *item;

	if (seq->type != YAML_SEQUENCE_NODE)
		return vi_yaml_error(y, seq, VI_EUSAGE, "'disks' must be a list");
	vi_yaml_seq_foreach(y, seq, item)
	{
		struct vi_vm_disk *d;
		const char *fmt = "raw";
		bool ro = false;
		int rc;

		if ((rc = vi_yaml_expect_map(y, item, "a disk")) < 0 ||
		    (rc = vi_yaml_check_keys(y, item, keys, ARRAY_SIZE(keys))) < 0)
			return rc;
		vm->disks = xrealloc(vm->disks, (vm->ndisks + 1) * sizeof(*vm->disks));
		d = &vm->disks[vm->ndisks++];
		memset(d, 0, sizeof(*d));
		if ((rc = get_string(y, item, "path", true, &d->path)) < 0 ||
		    (rc = get_string(y, item, "layer", false, &d->layer)) < 0 ||
		    (rc = vi_yaml_get_str(y, item, "format", false, &fmt)) < 0 ||
		    (rc = vi_yaml_get_bool(y, item, "readonly", false, &ro)) < 0)
			return rc;
		if (vi_disk_format_parse(fmt, &d->format) < 0)
			return vi_yaml_error(y, vi_yaml_get(y, item, "format"), VI_EUSAGE, "%s",
					     vi_error_message());
		d->readonly = ro;
	}
	return 0;
}

static int load_nics(struct vi_yaml *y, yaml_node_t *seq, struct vi_vm *vm)
{
	static const char *const keys[] = { "mac", "mode", "source" };
	yaml_node_t *item;

	if (seq->type != YAML_SEQUENCE_NODE)
		return vi_yaml_error(y, seq, VI_EUSAGE, "'nics' must be a list");
	vi_yaml_seq_foreach(y, seq, item)
	{
		struct vi_vm_nic *n;
		int rc;

		if ((rc = vi_yaml_expect_map(y, item, "a nic")) < 0 ||
		    (rc = vi_yaml_check_keys(y, item, keys, ARRAY_SIZE(keys))) < 0)
			return rc;
		vm->nics = xrealloc(vm->nics, (vm->nnics + 1) * sizeof(*vm->nics));
		n = &vm->nics[vm->nnics++];
		memset(n, 0, sizeof(*n));
		if ((rc = get_string(y, item, "mac", true, &n->mac)) < 0 ||
		    (rc = get_string(y, item, "mode", false, &n->mode)) < 0 ||
		    (rc = get_string(y, item, "source", false, &n->source)) < 0)
			return rc;
		if (!n->mode)
			n->mode = xstrdup("user");
	}
	return 0;
}

int vi_vm_load(const char *path, struct vi_vm *vm)
{
	static const char *const keys[] = {
		"schema", "name", "uuid", "hv", "connect", "cpus", "max_cpus", "memory",
		"max_memory", "kernel", "initrd", "cmdline", "guest_type", "disks", "nics",
		"hostname", "machine_id", "template", "template_digest", "ready_marker", "origin",
		"created",
	};
	struct vi_yaml y;
	yaml_node_t *root, *n;
	uint64_t u;
	int rc;

	memset(vm, 0, sizeof(*vm));
	if ((rc = vi_yaml_load_file(&y, path)) < 0)
		return rc;
	root = vi_yaml_root(&y);
	if ((rc = vi_yaml_expect_map(&y, root, "a VM definition")) < 0 ||
	    (rc = vi_yaml_check_keys(&y, root, keys, ARRAY_SIZE(keys))) < 0)
		goto cleanup;
	if ((rc = vi_yaml_check_schema(&y, root, VI_VM_SCHEMA)) < 0)
		goto cleanup;
	if ((rc = get_string(&y, root, "name", true, &vm->name)) < 0 ||
	    (rc = get_string(&y, root, "uuid", true, &vm->uuid)) < 0 ||
	    (rc = get_string(&y, root, "hv", true, &vm->hv)) < 0 ||
	    (rc = get_string(&y, root, "connect", false, &vm->connect)) < 0 ||
	    (rc = get_string(&y, root, "kernel", false, &vm->kernel)) < 0 ||
	    (rc = get_string(&y, root, "initrd", false, &vm->initrd)) < 0 ||
	    (rc = get_string(&y, root, "cmdline", false, &vm->cmdline)) < 0 ||
	    (rc = get_string(&y, root, "guest_type", false, &vm->guest_type)) < 0 ||
	    (rc = get_string(&y, root, "hostname", false, &vm->hostname)) < 0 ||
	    (rc = get_string(&y, root, "machine_id", false, &vm->machine_id)) < 0 ||
	    (rc = get_string(&y, root, "template", false, &vm->template)) < 0 ||
	    (rc = get_string(&y, root, "template_digest", false, &vm->template_digest)) < 0 ||
	    (rc = get_string(&y, root, "ready_marker", false, &vm->ready_marker)) < 0 ||
	    (rc = get_string(&y, root, "origin", false, &vm->origin)) < 0)
		goto cleanup;
	if ((rc = vi_yaml_get_uint(&y, root, "cpus", true, 1, 4096, &u)) < 0)
		goto cleanup;
	vm->cpus = u;
	u = vm->cpus;
	if ((rc = vi_yaml_get_uint(&y, root, "max_cpus", false, vm->cpus, 4096, &u)) < 0)
		goto cleanup;
	vm->max_cpus = u;
	if ((rc = vi_yaml_get_size(&y, root, "memory", true, 1, VI_VM_MAX_MEMORY,
				    &vm->memory)) < 0)
		goto cleanup;
	vm->max_memory = vm->memory;
	if ((rc = vi_yaml_get_size(&y, root, "max_memory", false, 1, VI_VM_MAX_MEMORY,
				    &vm->max_memory)) < 0)
		goto cleanup;
	if (vm->max_memory < vm->memory) {
		rc = vi_yaml_error(&y, vi_yaml_get(&y, root, "max_memory"), VI_EUSAGE,
				   "'max_memory' is smaller than 'memory'");
		goto cleanup;
	}
	if ((rc = vi_yaml_get_uint(&y, root, "created", false, 0, INT64_MAX, &u)) < 0)
		goto cleanup;
	vm->created = rc == 0 ? (time_t)u : 0;
	rc = 0;
	if ((n = vi_yaml_get(&y, root, "disks")) && (rc = load_disks(&y, n, vm)) < 0)
		goto cleanup;
	if ((n = vi_yaml_get(&y, root, "nics")) && (rc = load_nics(&y, n, vm)) < 0)
		goto cleanup;
	rc = 0;
cleanup:
	vi_yaml_release(&y);
	if (rc < 0)
		vi_vm_release(vm);
	return rc;
}

int vi_vm_save(const char *path, const struct vi_vm *vm)
{
	struct vi_yaml_out o;

	vi_yaml_out_init(&o);
	vi_yaml_out_map_start(&o);
	vi_yaml_out_uint(&o, "schema", VI_VM_SCHEMA);
	vi_yaml_out_str(&o, "name", vm->name);
	vi_yaml_out_str(&o, "uuid", vm->uuid);
	vi_yaml_out_str(&o, "hv", vm->hv);
	vi_yaml_out_str(&o, "connect", vm->connect);
	vi_yaml_out_uint(&o, "cpus", vm->cpus);
	vi_yaml_out_uint(&o, "max_cpus", vm->max_cpus ? vm->max_cpus : vm->cpus);
	vi_yaml_out_size(&o, "memory", vm->memory);
	vi_yaml_out_size(&o, "max_memory", vm->max_memory ? vm->max_memory : vm->memory);
	vi_yaml_out_str(&o, "kernel", vm->kernel);
	vi_yaml_out_str(&o, "initrd", vm->initrd);
	vi_yaml_out_str(&o, "cmdline", vm->cmdline);
	vi_yaml_out_str(&o, "guest_type", vm->guest_type);
	if (vm->ndisks) {
		vi_yaml_out_scalar(&o, "disks");
		vi_yaml_out_seq_start(&o);
		for (size_t i = 0; i < vm->ndisks; i++) {
			vi_yaml_out_map_start(&o);
			vi_yaml_out_str(&o, "path", vm->disks[i].path);
			vi_yaml_out_str(&o, "format", vi_disk_format_name(vm->disks[i].format));
			if (vm->disks[i].readonly)
				vi_yaml_out_bool(&o, "readonly", true);
			vi_yaml_out_str(&o, "layer", vm->disks[i].layer);
			vi_yaml_out_end(&o);
		}
		vi_yaml_out_end(&o);
	}
	if (vm->nnics) {
		vi_yaml_out_scalar(&o, "nics");
		vi_yaml_out_seq_start(&o);
		for (size_t i = 0; i < vm->nnics; i++) {
			vi_yaml_out_map_start(&o);
			vi_yaml_out_str(&o, "mac", vm->nics[i].mac);
			vi_yaml_out_str(&o, "mode", vm->nics[i].mode);
			vi_yaml_out_str(&o, "source", vm->nics[i].source);
			vi_yaml_out_end(&o);
		}
		vi_yaml_out_end(&o);
	}
	vi_yaml_out_str(&o, "hostname", vm->hostname);
	vi_yaml_out_str(&o, "machine_id", vm->machine_id);
	vi_yaml_out_str(&o, "template", vm->template);
	vi_yaml_out_str(&o, "template_digest", vm->template_digest);
	vi_yaml_out_str(&o, "ready_marker", vm->ready_marker);
	vi_yaml_out_str(&o, "origin", vm->origin);
	if (vm->created)
		vi_yaml_out_uint(&o, "created", (uint64_t)vm->created);
	vi_yaml_out_end(&o);
	return vi_yaml_out_save(&o, path, 0600);
}

void vi_vm_release(struct vi_vm *vm)
{
	for (size_t i = 0; i < vm->ndisks; i++) {
		free(vm->disks[i].path);
		free(vm->disks[i].layer);
	}
	for (size_t i = 0; i < vm->nnics; i++) {
		free(vm->nics[i].mac);
		free(vm->nics[i].mode);
		free(vm->nics[i].source);
	}
	free(vm->disks);
	free(vm->nics);
	char **strings[] = {
		&vm->name,	&vm->uuid,	 &vm->hv,	  &vm->connect,
		&vm->kernel,	&vm->initrd,	 &vm->cmdline,	  &vm->guest_type,
		&vm->hostname,	&vm->machine_id, &vm->template,	  &vm->template_digest,
		&vm->ready_marker, &vm->origin,
	};
	for (size_t i = 0; i < ARRAY_SIZE(strings); i++)
		free(*strings[i]);
	memset(vm, 0, sizeof(*vm));
}

void vi_vm_new_identity(struct vi_vm *vm)
{
	char buf[64];

	if (!vm->uuid) {
		vi_uuid_generate(buf);
		vm->uuid = xstrdup(buf);
	}
	if (!vm->machine_id) {
		vi_random_hex(buf, 16);
		vm->machine_id = xstrdup(buf);
	}
	if (!vm->hostname)
		vm->hostname = xstrdup(vm->name);
	for (size_t i = 0; i < vm->nnics; i++) {
		if (vm->nics[i].mac)
			continue;
		/* 52:54:00 is the prefix QEMU and libvirt use for guests. */
		char hex[7];
		vi_random_hex(hex, 3);
		vm->nics[i].mac = xasprintf("52:54:00:%.2s:%.2s:%.2s", hex, hex + 2, hex + 4);
	}
}

static char *resolve(const char *dir, const char *path)
{
	return path[0] == '/' ? xstrdup(path) : xasprintf("%s/%s", dir, path);
}

void vi_vm_hv_init(struct vi_vm_hv *h, const struct vi_vm *vm, const char *vm_dir)
{
	struct vi_hv_vm *v = &h->vm;

	memset(h, 0, sizeof(*h));
	h->dir = xstrdup(vm_dir);
	h->run_dir = xasprintf("%s/run", vm_dir);
	h->console_log = xasprintf("%s/run/console.log", vm_dir);
	if (vm->kernel && vm->hostname && vm->machine_id)
		h->cmdline = xasprintf("%s%svi.hostname=%s vi.machine_id=%s",
				       vm->cmdline ? vm->cmdline : "", vm->cmdline ? " " : "",
				       vm->hostname, vm->machine_id);
	else
		h->cmdline = xstrdup(vm->cmdline);
	h->disks = xcalloc(vm->ndisks, sizeof(*h->disks));
	h->disk_paths = xcalloc(vm->ndisks, sizeof(*h->disk_paths));
	h->nics = xcalloc(vm->nnics, sizeof(*h->nics));
	h->disk_ptrs = xcalloc(vm->ndisks, sizeof(*h->disk_ptrs));
	h->nic_ptrs = xcalloc(vm->nnics, sizeof(*h->nic_ptrs));
	for (size_t i = 0; i < vm->ndisks; i++) {
		h->disk_paths[i] = resolve(vm_dir, vm->disks[i].path);
		h->disks[i] = (struct vi_hv_disk){
			.struct_size = sizeof(struct vi_hv_disk),
			.path = h->disk_paths[i],
			.format = vm->disks[i].format,
			.readonly = vm->disks[i].readonly,
		};
		h->disk_ptrs[i] = &h->disks[i];
	}
	for (size_t i = 0; i < vm->nnics; i++) {
		h->nics[i] = (struct vi_hv_nic){
			.struct_size = sizeof(struct vi_hv_nic),
			.mac = vm->nics[i].mac,
			.mode = vm->nics[i].mode,
			.source = vm->nics[i].source,
		};
		h->nic_ptrs[i] = &h->nics[i];
	}
	*v = (struct vi_hv_vm){
		.struct_size = sizeof(struct vi_hv_vm),
		.name = vm->name,
		.uuid = vm->uuid,
		.dir = h->dir,
		.run_dir = h->run_dir,
		.console_log = h->console_log,
		.cpus = vm->cpus,
		.max_cpus = vm->max_cpus ? vm->max_cpus : vm->cpus,
		.memory = vm->memory,
		.max_memory = vm->max_memory ? vm->max_memory : vm->memory,
		.kernel = vm->kernel,
		.initrd = vm->initrd,
		.cmdline = h->cmdline,
		.disks = h->disk_ptrs,
		.ndisks = vm->ndisks,
		.nics = h->nic_ptrs,
		.nnics = vm->nnics,
		.hostname = vm->hostname,
		.machine_id = vm->machine_id,
		.guest_type = vm->guest_type,
	};
}

void vi_vm_hv_release(struct vi_vm_hv *h)
{
	for (size_t i = 0; i < h->vm.ndisks; i++)
		free(h->disk_paths[i]);
	free(h->disk_paths);
	free(h->disks);
	free(h->nics);
	free(h->disk_ptrs);
	free(h->nic_ptrs);
	free(h->dir);
	free(h->run_dir);
	free(h->console_log);
	free(h->cmdline);
	memset(h, 0, sizeof(*h));
}
