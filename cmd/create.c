/* vi create NAME: define a new VM (direct kernel boot, or disks the user
 * brings) on the chosen backend; with --start, boot it too. The VM is built
 * in a staging directory and renamed into the store only once the backend has
 * accepted it, so a failure leaves nothing behind. */
#include "cmd.h"
#include "error.h"
#include "image/image.h"
#include "layers.h"
#include "log.h"
#include "machine.h"
#include "output.h"
#include "progress.h"
#include "template.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *kernel, *initrd, *cmdline, *guest_type, *template_ref;
static uint64_t cpus, max_cpus, memory, max_memory, disk_size, timeout;
static struct vi_strlist disks, nics, sets;
static int start, wait_ready, rm;

const struct vi_option create_options[] = {
	{ "template", 't', VI_OPT_STRING, &template_ref, "TEMPLATE",
	  "provision from this template's golden image (built if missing)", VI_COMPLETE_TEMPLATE },
	{ "set", 0, VI_OPT_LIST, &sets, "KEY=VALUE", "a template parameter (repeatable)" },
	{ "disk-size", 0, VI_OPT_SIZE, &disk_size, "SIZE", "grow the template's first disk to SIZE" },
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
	{ "wait-ready", 'w', VI_OPT_FLAG, &wait_ready, NULL,
	  "start it and wait for its readiness probe" },
	{ "timeout", 0, VI_OPT_UINT, &timeout, "SECONDS",
	  "how long --wait-ready waits (default: the template's, else 300)", .min = 1,
	  .max = 86400 },
	{ "rm", 0, VI_OPT_FLAG, &rm, NULL,
	  "destroy it when interrupted, or once the command after -- has run" },
	OPT_JSON,
	VI_OPT_TABLE_END,
};

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
	if (access(d->path, d->readonly ? R_OK : R_OK | W_OK) < 0)
		rc = vi_error_errno(VI_EFAIL, errno, "disk '%s'", file);
	else if (format < 0)
		rc = image_probe(d->path, &format);
	if (rc < 0) {
		free(d->path);
		goto cleanup;
	}
	d->format = format;
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

static int build_definition(const char *name, struct vi_hv *hv, const struct template_image *img,
			    struct vi_vm *vm)
{
	int rc;

	memset(vm, 0, sizeof(*vm));
	vm->name = xstrdup(name);
	vm->hv = xstrdup(hv->ops.name);
	vm->connect = xstrdup(ctx.connect);
	vm->cpus = cpus ? cpus : img && img->cpus ? img->cpus : 1;
	vm->max_cpus = max_cpus ? max_cpus : img && img->max_cpus > vm->cpus ? img->max_cpus : vm->cpus;
	vm->memory = memory ? memory : img && img->memory ? img->memory : VI_VM_DEFAULT_MEMORY;
	vm->max_memory = max_memory       ? max_memory
			 : img && img->max_memory > vm->memory ? img->max_memory
							       : vm->memory;
	vm->guest_type = xstrdup(guest_type);
	vm->created = time(NULL);
	if (vm->max_cpus < vm->cpus)
		return vi_error(VI_EUSAGE, "--max-cpus %u is below --cpus %u", vm->max_cpus, vm->cpus);
	if (vm->memory < MIN_MEMORY)
		return vi_error(VI_EUSAGE, "--memory must be at least 16M");
	if (vm->max_memory < vm->memory)
		return vi_error(VI_EUSAGE, "--max-memory is below --memory");
	if (img) {
		if (kernel || initrd)
			return vi_error(VI_EUSAGE, "--kernel and --initrd come from the template");
		vm->kernel = xstrdup(img->kernel);
		vm->initrd = xstrdup(img->initrd);
		vm->cmdline = xstrdup(cmdline ? cmdline : img->cmdline);
		vm->template = xstrdup(img->name);
		vm->template_digest = xstrdup(img->digest);
		vm->ready_marker = xstrdup(img->ready_marker);
		/* The template's disks, as overlays made once the VM has a directory. */
		vm->disks = xcalloc(img->ndisks + disks.n, sizeof(*vm->disks));
		for (size_t i = 0; i < img->ndisks; i++, vm->ndisks++) {
			vm->disks[i].path = xasprintf("disks/disk%zu.qcow2", i);
			vm->disks[i].format = VI_DISK_QCOW2;
		}
	} else {
		if (disk_size)
			return vi_error(VI_EUSAGE, "--disk-size needs --template");
		if (!kernel && (initrd || cmdline))
			return vi_error(VI_EUSAGE, "--initrd and --cmdline need --kernel");
		if (!kernel && !disks.n)
			return vi_error(VI_EUSAGE, "nothing to boot: give --template, --kernel or --disk");
		if (kernel && (rc = existing_file(kernel, "kernel", &vm->kernel)) < 0)
			return rc;
		if (initrd && (rc = existing_file(initrd, "initrd", &vm->initrd)) < 0)
			return rc;
		vm->cmdline = xstrdup(cmdline);
		vm->disks = xcalloc(disks.n, sizeof(*vm->disks));
	}
	for (size_t i = 0; i < disks.n; i++, vm->ndisks++)
		if ((rc = parse_disk(disks.items[i], &vm->disks[vm->ndisks])) < 0)
			return rc;
	vm->nics = xcalloc(nics.n, sizeof(*vm->nics));
	for (size_t i = 0; i < nics.n; i++, vm->nnics++)
		if ((rc = parse_nic(nics.items[i], &vm->nics[i])) < 0)
			return rc;
	vi_vm_new_identity(vm);
	return 0;
}

/* The template's disks as overlays in the staging directory; the first one
 * grown to --disk-size. */
static int make_template_disks(const struct template_image *img, const char *staging,
			       struct vi_vm *vm)
{
	int rc = 0;

	for (size_t i = 0; i < img->ndisks && rc == 0; i++) {
		char *path = xasprintf("%s/%s", staging, vm->disks[i].path);
		rc = vi_layer_overlay(path, img->disks[i].path);
		if (rc == 0 && i == 0 && disk_size) {
			struct image *im;
			if (disk_size < img->disks[0].size) {
				char a[32];
				rc = vi_error(VI_EUSAGE, "--disk-size is below the template's %s",
					      vi_format_size(img->disks[0].size, a, sizeof(a)));
			} else if ((rc = image_open(path, IMAGE_QCOW2, IMAGE_OPEN_WRITE, &im)) == 0) {
				rc = image_resize(im, disk_size);
				int crc = image_close(im);
				rc = rc ? rc : crc;
			}
		}
		free(path);
	}
	return rc;
}

static void report(const struct vi_vm *vm, bool started, double ms)
{
	char mem[32];

	if (ctx.json) {
		struct json_object *doc = vi_json_doc(), *o = json_object_new_object();
		json_object_object_add(o, "name", vi_json_str(vm->name));
		json_object_object_add(o, "uuid", vi_json_str(vm->uuid));
		json_object_object_add(o, "hv", vi_json_str(vm->hv));
		json_object_object_add(o, "template", vi_json_str(vm->template));
		json_object_object_add(o, "state", vi_json_str(started ? "running" : "stopped"));
		json_object_object_add(doc, "vm", o);
		json_object_object_add(doc, "milliseconds", json_object_new_double(ms));
		vi_json_print(doc);
		return;
	}
	vi_format_size(vm->memory, mem, sizeof(mem));
	vi_info("created VM '%s' on %s: %u vCPU%s, %s%s%s%s%s", vm->name, vm->hv, vm->cpus,
		vm->cpus == 1 ? "" : "s", mem, vm->template ? ", from template '" : "",
		vm->template ? vm->template : "", vm->template ? "'" : "", started ? ", running" : "");
}

static volatile sig_atomic_t interrupted;

static void on_signal(int sig)
{
	interrupted = sig;
}

/* Polls the console log for the readiness marker. */
static int wait_for_ready(struct vi_hv *hv, const struct vi_vm *vm, const struct vi_vm_hv *view,
			  unsigned seconds)
{
	double t0;

	if (!vm->ready_marker)
		return vi_error(VI_EUSAGE, "VM '%s' has no readiness probe to wait for", vm->name);
	t0 = vi_now_ms();
	for (;;) {
		char *log = NULL;
		size_t len;
		bool ready = vi_read_file(view->console_log, &log, &len) == 0 &&
			     strstr(log, vm->ready_marker);
		free(log);
		vi_error_clear();
		if (ready)
			return 0;
		if (interrupted)
			return vi_error(VI_EFAIL, "interrupted while waiting for VM '%s'", vm->name);
		if (vi_ms_since(t0) >= seconds * 1000.0)
			return vi_error(VI_ETIMEOUT, "VM '%s' was not ready within %u s (no '%s' on its console)",
					vm->name, seconds, vm->ready_marker);
		struct vi_hv_state st;
		if (vi_hv_state(hv, &view->vm, &st) == 0 && st.state != VI_HV_RUNNING &&
		    st.state != VI_HV_PAUSED)
			return vi_error(VI_EFAIL, "VM '%s' stopped before it was ready", vm->name);
		struct timespec ts = { 0, 100 * 1000000 };
		nanosleep(&ts, NULL);
	}
}

/* Runs argv with VI_VM naming the machine; returns its exit status. */
static int run_command(char **argv, const char *name, int *status)
{
	pid_t pid;
	int st;

	fflush(stdout);
	pid = fork();
	if (pid < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot fork");
	if (pid == 0) {
		signal(SIGINT, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		setenv("VI_VM", name, 1);
		execvp(argv[0], argv);
		fprintf(stderr, "vi: error: cannot run '%s': %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0)
		if (errno != EINTR)
			return vi_error_errno(VI_EFAIL, errno, "cannot wait for '%s'", argv[0]);
	*status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return 0;
}

/* --rm: the machine goes, whatever happened. */
static void remove_machine(struct vi_hv *hv, const struct vi_vm_hv *view, const char *name)
{
	char why[1024];
	int code = vi_error_code();
	struct vi_hv_state st;

	snprintf(why, sizeof(why), "%s", vi_error_message());
	if (vi_hv_state(hv, &view->vm, &st) == 0 &&
	    (st.state == VI_HV_RUNNING || st.state == VI_HV_PAUSED))
		vi_hv_stop(hv, &view->vm, VI_HV_STOP_FORCE, 0);
	vi_hv_undefine(hv, &view->vm);
	vi_store_remove_vm(&ctx.store, name);
	vi_error(code, "%s", why);
}

int cmd_create(int argc, char **argv)
{
	const char *name = argv[0];
	struct vi_hv *hv;
	struct vi_vm vm = { 0 };
	struct vi_vm_hv view = { 0 };
	struct template_image img = { 0 };
	bool have_img = false, created = false;
	char *staging = NULL;
	char **command = argc > 1 ? argv + 1 : NULL;
	double t0;
	int rc, status = 0;

	t0 = vi_now_ms();
	if (argc > 1 && vi_opt_dashdash != 1)
		return vi_error(VI_EUSAGE, "unexpected argument '%s' (a command goes after --)", argv[1]);
	if (command && !wait_ready)
		return vi_error(VI_EUSAGE, "a command after -- needs --wait-ready");
	if ((rc = vi_check_name(name, "VM")) < 0)
		return rc;
	if ((rc = vi_store_vm_exists(&ctx.store, name)) == 0)
		return vi_error(VI_ESTATE, "VM '%s' already exists", name);
	vi_error_clear();
	if (template_ref) {
		struct vi_progress progress;
		struct template_build_opts bo = { .progress = vi_progress_report, .opaque = &progress };
		vi_progress_start(&progress, 0, "building");
		rc = template_image_get(&ctx.store, template_ref, sets.items, sets.n, &bo, &img);
		vi_progress_end(&progress);
		if (rc < 0)
			goto cleanup;
		have_img = true;
	} else if (sets.n) {
		rc = vi_error(VI_EUSAGE, "--set needs --template");
		goto cleanup;
	}
	if ((rc = vi_hv_choose(&ctx.plugins, ctx.hv ? ctx.hv : have_img ? img.hv : NULL,
			       ctx.connect, &hv)) < 0)
		goto cleanup;
	if ((rc = build_definition(name, hv, have_img ? &img : NULL, &vm)) < 0)
		goto cleanup;
	if ((rc = vi_store_stage_vm(&ctx.store, name, &staging)) < 0)
		goto cleanup;
	if (have_img && (rc = make_template_disks(&img, staging, &vm)) < 0)
		goto cleanup;
	if ((rc = vi_machine_add(&ctx.store, hv, &vm, staging, &view)) < 0)
		goto cleanup;
	free(staging);
	staging = NULL;
	created = true;
	if (rm) {
		signal(SIGINT, on_signal);
		signal(SIGTERM, on_signal);
	}
	if (start || wait_ready) {
		rc = vi_hv_start(hv, &view.vm);
		if (rc < 0) {
			vi_error_wrap("VM '%s' was created but did not start", name);
			goto cleanup;
		}
	}
	/* Waiting and the command may take long: let other commands at the VM. */
	vi_store_unlock(ctx.lock);
	ctx.lock = -1;
	if (wait_ready) {
		unsigned secs = timeout ? timeout : have_img && img.ready_timeout ? img.ready_timeout : 300;
		if ((rc = wait_for_ready(hv, &vm, &view, secs)) < 0)
			goto cleanup;
	}
	report(&vm, start || wait_ready, vi_ms_since(t0));
	if (command) {
		if ((rc = run_command(command, name, &status)) < 0)
			goto cleanup;
		ctx.exit_status = status;
	}
	if (interrupted)
		rc = vi_error(VI_EFAIL, "interrupted");
cleanup:
	if (staging) {
		vi_store_abort_vm(staging);
		free(staging);
	}
	if (created && rm && (rc < 0 || command || interrupted))
		remove_machine(hv, &view, name);
	if (have_img)
		template_image_release(&img);
	vi_vm_hv_release(&view);
	vi_vm_release(&vm);
	vi_strlist_release(&disks);
	vi_strlist_release(&nics);
	vi_strlist_release(&sets);
	return rc;
}
