/* vi create NAME: define a new VM (direct kernel boot, or disks the user
 * brings) on the chosen backend; with --start, boot it too. The VM is built
 * in a staging directory and renamed into the store only once the backend has
 * accepted it, so a failure leaves nothing behind. */
#include "cmd.h"
#include "error.h"
#include "log.h"
#include "machine.h"
#include "output.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static const char *kernel, *initrd, *cmdline, *guest_type;
static uint64_t cpus, max_cpus, memory, max_memory;
static struct vi_strlist disks, nics;
static int start;

const struct vi_option create_options[] = {
	{ "kernel", 0, VI_OPT_STRING, &kernel, "FILE", "boot this kernel directly", VI_COMPLETE_FILE },
	{ "initrd", 0, VI_OPT_STRING, &initrd, "FILE", "initial ramdisk for --kernel",
	  VI_COMPLETE_FILE },
	{ "cmdline", 0, VI_OPT_STRING, &cmdline, "STRING", "kernel command line" },
	{ "cpus", 0, VI_OPT_UINT, &cpus, "N", "virtual CPUs (default 1)", .min = 1, .max = 4096 },
	{ "max-cpus", 0, VI_OPT_UINT, &max_cpus, "N", "vCPUs it may grow to (default --cpus)",
	  .min = 1, .max = 4096 },
	{ "memory", 0, VI_OPT_SIZE, &memory, "SIZE", "memory (default 512M)" },
	{ "max-memory", 0, VI_OPT_SIZE, &max_memory, "SIZE",
	  "memory it may grow to (default --memory)" },
	{ "disk", 0, VI_OPT_LIST, &disks, "FILE[,ro][,format=F]", "attach a disk image (repeatable)",
	  VI_COMPLETE_FILE },
	{ "nic", 0, VI_OPT_LIST, &nics, "MODE[:SOURCE]",
	  "add a network interface: user, tap[:DEV], bridge:BR, network:NET" },
	{ "guest-type", 0, VI_OPT_STRING, &guest_type, "TYPE", "backend flavour (xen: pv, pvh, hvm)" },
	OPT_HV,
	OPT_CONNECT,
	{ "start", 0, VI_OPT_FLAG, &start, NULL, "start it once created" },
	OPT_JSON,
	VI_OPT_TABLE_END,
};

#define DEFAULT_MEMORY (512ull << 20)
#define MIN_MEMORY (16ull << 20)

/* An existing regular file, as an absolute path (caller frees). */
static int existing_file(const char *path, const char *what, char **out)
{
	char buf[PATH_MAX];
	struct stat st;

	if (!realpath(path, buf) || stat(buf, &st) < 0)
		return vi_error_errno(errno == ENOENT ? VI_ENOTFOUND : VI_EFAIL, errno,
				      "%s '%s'", what, path);
	if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode))
		return vi_error(VI_EUSAGE, "%s '%s' is not a file", what, path);
	*out = xstrdup(buf);
	return 0;
}

/* qcow2 starts with "QFI\xfb"; anything else is taken as raw. */
static int sniff_format(const char *path)
{
	unsigned char magic[4] = { 0 };
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0) {
		if (read(fd, magic, 4) != 4)
			magic[0] = 0;
		close(fd);
	}
	return memcmp(magic, "QFI\xfb", 4) ? VI_DISK_RAW : VI_DISK_QCOW2;
}

/* FILE[,ro][,format=qcow2|raw] */
static int parse_disk(const char *spec, struct vi_vm_disk *d)
{
	char *copy = xstrdup(spec), *save = NULL;
	char *file = strtok_r(copy, ",", &save);
	int rc = 0, format = -1;

	memset(d, 0, sizeof(*d));
	if (!file) {
		rc = vi_error(VI_EUSAGE, "invalid --disk '%s': no file", spec);
		goto cleanup;
	}
	for (char *opt = strtok_r(NULL, ",", &save); opt; opt = strtok_r(NULL, ",", &save)) {
		if (!strcmp(opt, "ro") || !strcmp(opt, "readonly"))
			d->readonly = true;
		else if (!strncmp(opt, "format=", 7)) {
			if ((rc = vi_disk_format_parse(opt + 7, &format)) < 0)
				goto cleanup;
		} else {
			rc = vi_error(VI_EUSAGE, "invalid --disk '%s': unknown option '%s'", spec, opt);
			goto cleanup;
		}
	}
	if ((rc = existing_file(file, "disk", &d->path)) < 0)
		goto cleanup;
	if (access(d->path, d->readonly ? R_OK : R_OK | W_OK) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "disk '%s'", file);
		free(d->path);
		goto cleanup;
	}
	d->format = format >= 0 ? format : sniff_format(d->path);
cleanup:
	free(copy);
	return rc;
}

/* MODE[:SOURCE] */
static int parse_nic(const char *spec, struct vi_vm_nic *n)
{
	static const char *const modes[] = { "user", "tap", "bridge", "network" };
	const char *colon = strchr(spec, ':');
	size_t len = colon ? (size_t)(colon - spec) : strlen(spec);

	memset(n, 0, sizeof(*n));
	for (size_t i = 0; i < ARRAY_SIZE(modes); i++)
		if (strlen(modes[i]) == len && !strncmp(spec, modes[i], len))
			n->mode = xstrdup(modes[i]);
	if (!n->mode)
		return vi_error(VI_EUSAGE,
				"invalid --nic '%s': the mode must be user, tap, bridge or network",
				spec);
	if (colon && colon[1])
		n->source = xstrdup(colon + 1);
	if (!n->source && (!strcmp(n->mode, "bridge") || !strcmp(n->mode, "network"))) {
		free(n->mode);
		return vi_error(VI_EUSAGE, "invalid --nic '%s': %s needs a name, as in %s:NAME", spec,
				spec, spec);
	}
	return 0;
}

static int build_definition(const char *name, struct vi_hv *hv, struct vi_vm *vm)
{
	int rc;

	memset(vm, 0, sizeof(*vm));
	vm->name = xstrdup(name);
	vm->hv = xstrdup(hv->ops.name);
	vm->connect = xstrdup(ctx.connect);
	vm->cpus = cpus ? cpus : 1;
	vm->max_cpus = max_cpus ? max_cpus : vm->cpus;
	vm->memory = memory ? memory : DEFAULT_MEMORY;
	vm->max_memory = max_memory ? max_memory : vm->memory;
	vm->cmdline = xstrdup(cmdline);
	vm->guest_type = xstrdup(guest_type);
	vm->created = time(NULL);
	if (vm->max_cpus < vm->cpus)
		return vi_error(VI_EUSAGE, "--max-cpus %u is below --cpus %u", vm->max_cpus, vm->cpus);
	if (vm->memory < MIN_MEMORY)
		return vi_error(VI_EUSAGE, "--memory must be at least 16M");
	if (vm->max_memory < vm->memory)
		return vi_error(VI_EUSAGE, "--max-memory is below --memory");
	if (!kernel && (initrd || cmdline))
		return vi_error(VI_EUSAGE, "--initrd and --cmdline need --kernel");
	if (!kernel && !disks.n)
		return vi_error(VI_EUSAGE, "nothing to boot: give --kernel or --disk");
	if (kernel && (rc = existing_file(kernel, "kernel", &vm->kernel)) < 0)
		return rc;
	if (initrd && (rc = existing_file(initrd, "initrd", &vm->initrd)) < 0)
		return rc;
	vm->disks = xcalloc(disks.n, sizeof(*vm->disks));
	for (size_t i = 0; i < disks.n; i++, vm->ndisks++)
		if ((rc = parse_disk(disks.items[i], &vm->disks[i])) < 0)
			return rc;
	vm->nics = xcalloc(nics.n, sizeof(*vm->nics));
	for (size_t i = 0; i < nics.n; i++, vm->nnics++)
		if ((rc = parse_nic(nics.items[i], &vm->nics[i])) < 0)
			return rc;
	vi_vm_new_identity(vm);
	return 0;
}

static void report(const struct vi_vm *vm, bool started)
{
	char mem[32];

	if (ctx.json) {
		struct json_object *doc = vi_json_doc(), *o = json_object_new_object();
		json_object_object_add(o, "name", vi_json_str(vm->name));
		json_object_object_add(o, "uuid", vi_json_str(vm->uuid));
		json_object_object_add(o, "hv", vi_json_str(vm->hv));
		json_object_object_add(o, "state", vi_json_str(started ? "running" : "stopped"));
		json_object_object_add(doc, "vm", o);
		vi_json_print(doc);
		return;
	}
	vi_format_size(vm->memory, mem, sizeof(mem));
	vi_info("created VM '%s' on %s: %u vCPU%s, %s%s", vm->name, vm->hv, vm->cpus,
		vm->cpus == 1 ? "" : "s", mem, started ? ", running" : "");
}

int cmd_create(int argc, char **argv)
{
	const char *name = argv[0];
	struct vi_hv *hv;
	struct vi_vm vm = { 0 };
	struct vi_vm_hv view = { 0 };
	char *staging = NULL, *final_dir = NULL, *def = NULL;
	bool defined = false;
	int rc;
	(void)argc;

	if ((rc = vi_check_name(name, "VM")) < 0)
		return rc;
	if ((rc = vi_store_vm_exists(&ctx.store, name)) == 0)
		return vi_error(VI_ESTATE, "VM '%s' already exists", name);
	if ((rc = vi_hv_choose(&ctx.plugins, ctx.hv, ctx.connect, &hv)) < 0)
		return rc;
	if ((rc = build_definition(name, hv, &vm)) < 0)
		goto cleanup;
	if ((rc = vi_store_stage_vm(&ctx.store, name, &staging)) < 0)
		goto cleanup;
	def = xasprintf("%s/vm.yaml", staging);
	char *run = xasprintf("%s/run", staging), *dsk = xasprintf("%s/disks", staging);
	rc = vi_mkdir_p(run, 0711) < 0 || vi_mkdir_p(dsk, 0711) < 0 ? -vi_error_code() : 0;
	free(run);
	free(dsk);
	if (rc < 0 || (rc = vi_vm_save(def, &vm)) < 0)
		goto cleanup;
	/* The backend sees the VM where it will live. */
	final_dir = vi_store_path(&ctx.store, "vms/%s", name);
	vi_vm_hv_init(&view, &vm, final_dir);
	if (hv->ops.define) {
		if ((rc = vi_hv_define(hv, &view.vm)) < 0)
			goto cleanup;
		defined = true;
	}
	if ((rc = vi_store_commit_vm(&ctx.store, name, staging)) < 0)
		goto cleanup;
	free(staging);
	staging = NULL;
	if (start) {
		rc = vi_hv_start(hv, &view.vm);
		if (rc < 0) {
			vi_error_wrap("VM '%s' was created but did not start", name);
			goto cleanup;
		}
	}
	report(&vm, start);
	rc = 0;
cleanup:
	if (staging) {
		if (defined && hv->ops.undefine) {
			/* Keep the error that brought us here, not the clean-up's. */
			char why[1024];
			snprintf(why, sizeof(why), "%s", vi_error_message());
			vi_hv_undefine(hv, &view.vm);
			vi_error(-rc, "%s", why);
		}
		vi_store_abort_vm(staging);
		free(staging);
	}
	vi_vm_hv_release(&view);
	vi_vm_release(&vm);
	vi_strlist_release(&disks);
	vi_strlist_release(&nics);
	free(final_dir);
	free(def);
	return rc;
}
