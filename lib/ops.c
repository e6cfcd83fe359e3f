/* Operations on machines: create, clone, destroy, start, stop (ops.h).
 *
 * A new machine is built in a staging directory (vi_store_stage_vm) and
 * renamed into the store only when complete; until then a failure throws
 * the staging directory away. Once in the store, the one way back out is
 * destroy_in(), whichever step failed: the backend's definition, a start,
 * the next of several clones. */
#include "ops.h"
#include "snapshot.h"
#include "forward.h"
#include "seed.h"
#include "ssh.h"
#include "error.h"
#include "image/image.h"
#include "layers.h"
#include "grow.h"
#include "log.h"
#include "migrate.h"
#include "util.h"

#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* --- destroy: also every rollback ----------------------------------------------- */

static int destroy_in(const struct vi_store *s, struct vi_machine *m, struct vi_layer_index *idx,
		      unsigned flags)
{
	struct vi_hv_state st;
	int rc;

	/* Layers its clones and snapshots read stay in the layer store; only
	 * older names of them inside its directory need care first. */
	if ((rc = vi_layers_release_dir(s, idx, &m->def)) < 0)
		return rc;
	if (m->hv) {
		if (vi_hv_state_active(vi_machine_state(m, &st)))
			rc = vi_hv_stop(m->hv, &m->view.vm, VI_HV_STOP_FORCE, 0);
		/* A backend that lost the VM (a kill between its steps) has
		 * nothing left to forget. */
		if (rc == 0 && (rc = vi_hv_undefine(m->hv, &m->view.vm)) == -VI_ENOTFOUND) {
			vi_error_clear();
			rc = 0;
		}
		if (rc < 0 && !(flags & VI_OP_FORCE))
			return rc;
		if (rc < 0)
			vi_warn("%s; removing VM '%s' anyway", vi_error_message(), m->def.name);
	}
	if ((rc = vi_store_remove_vm(s, m->def.name)) < 0)
		return rc;
	vi_layer_unref_vm(idx, m->def.name);
	return 0;
}

int vi_op_destroy(const struct vi_store *s, struct vi_machine *m, unsigned flags)
{
	struct vi_layer_index idx;
	int rc;

	if ((rc = vi_layers_open(s, &idx)) < 0)
		return rc;
	if ((rc = destroy_in(s, m, &idx, flags)) < 0) {
		vi_layers_release(&idx);
		return rc;
	}
	return vi_layers_commit(s, &idx);
}

int vi_op_forget(const struct vi_store *s, const char *name)
{
	struct vi_layer_index idx;
	int rc;

	if ((rc = vi_layers_open(s, &idx)) < 0)
		return rc;
	if ((rc = vi_store_remove_vm(s, name)) < 0) {
		vi_layers_release(&idx);
		return rc;
	}
	vi_layer_unref_vm(&idx, name);
	return vi_layers_commit(s, &idx);
}

/* Takes a machine that made it into the store out again, keeping the error
 * that made it necessary; idx is the layer index the caller holds. */
static void rollback(const struct vi_store *s, struct vi_machine *m, struct vi_layer_index *idx)
{
	struct vi_error_saved e;

	vi_error_save(&e);
	destroy_in(s, m, idx, VI_OP_FORCE);
	vi_error_restore(&e);
}

/* --- adding a machine ----------------------------------------------------------- */

/* Puts vm, staged in staging, on hv and into the store, in that order: a
 * VM is in the store only once its backend has it. A kill in between leaves
 * a definition that vi_ops_recover() finds through the staging directory.
 * *m takes vm's strings (vm is emptied) and is the machine on success; on
 * failure it is released and the caller aborts staging. */
static int add_machine(const struct vi_store *s, struct vi_hv *hv, struct vi_vm *vm,
		       const char *staging, struct vi_machine *m)
{
	char *def = xasprintf("%s/vm.yaml", staging);
	int rc;

	memset(m, 0, sizeof(*m));
	m->def = *vm;
	memset(vm, 0, sizeof(*vm));
	m->hv = hv;
	m->dir = vi_store_path(s, "vms/%s", m->def.name);
	vi_vm_hv_init(&m->view, &m->def, m->dir);
	if ((rc = vi_hv_check_boot(hv, &m->view.vm)) < 0 ||
	    (rc = vi_vm_save(def, &m->def)) < 0 || (rc = vi_hv_define(hv, &m->view.vm)) < 0)
		goto fail;
	if ((rc = vi_store_commit_vm(s, m->def.name, staging)) < 0) {
		struct vi_error_saved e;
		vi_error_save(&e);
		vi_hv_undefine(hv, &m->view.vm);
		vi_error_restore(&e);
		goto fail;
	}
	free(def);
	return 0;
fail:
	free(def);
	vi_machine_release(m);
	return rc;
}

/* --- create --------------------------------------------------------------------- */

/* An existing regular file or block device, as an absolute path. */
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
		d->path = NULL;
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
	static const char *const modes[] = { "user", "nat", "tap", "bridge", "network" };
	const char *colon = strchr(spec, ':');
	size_t len = colon ? (size_t)(colon - spec) : strlen(spec);

	memset(n, 0, sizeof(*n));
	for (size_t i = 0; i < ARRAY_SIZE(modes); i++)
		if (strlen(modes[i]) == len && !strncmp(spec, modes[i], len))
			n->mode = xstrdup(modes[i]);
	if (!n->mode)
		return vi_error(VI_EUSAGE,
				"invalid --nic '%s': the mode must be user, nat, tap, bridge, "
				"network or none",
				spec);
	if (colon && colon[1])
		n->source = xstrdup(colon + 1);
	if (!n->source && (!strcmp(n->mode, "bridge") || !strcmp(n->mode, "network"))) {
		free(n->mode);
		n->mode = NULL;
		return vi_error(VI_EUSAGE, "invalid --nic '%s': %s needs a name, as in %s:NAME", spec,
				spec, spec);
	}
	if (n->source && !strcmp(n->mode, "user")) {
		free(n->mode);
		free(n->source);
		memset(n, 0, sizeof(*n));
		return vi_error(VI_EUSAGE, "invalid --nic '%s': user takes no name", spec);
	}
	return 0;
}

/* Adds the forward spec to NIC n. */
static int add_forward(struct vi_vm_nic *n, const char *spec)
{
	struct vi_vm_forward f;
	int rc = vi_vm_forward_parse(spec, &f);

	if (rc < 0)
		return rc;
	n->forwards = xrealloc(n->forwards, (n->nforwards + 1) * sizeof(*n->forwards));
	n->forwards[n->nforwards++] = f;
	return 0;
}

/* The NICs: --nic, else the template's network:, else one "user" NIC where
 * the backend has user networking. The first "user" NIC gets the forwards,
 * and one from a free host port to the guest's SSH port unless one is given. */
static int build_nics(const struct vi_create_spec *sp, const struct vi_hv *hv,
		      const struct template_image *img, struct vi_vm *vm)
{
	const char *const *specs = sp->nnics ? sp->nics : img ? (const char *const *)img->network.v : NULL;
	size_t n = sp->nnics ? sp->nnics : img ? img->network.n : 0;
	struct vi_vm_nic *user;
	int rc;

	vm->nics = xcalloc(n + 1, sizeof(*vm->nics));
	for (size_t i = 0; i < n; i++) {
		if (!strcmp(specs[i], "none")) {
			if (n > 1)
				return vi_error(VI_EUSAGE, "--nic none goes alone");
			continue;
		}
		if ((rc = parse_nic(specs[i], &vm->nics[vm->nnics])) < 0)
			return rc;
		vm->nnics++;
	}
	if (n == 0 && (hv->ops.features & VI_HV_F_USER_NET))
		vm->nics[vm->nnics++].mode = xstrdup("user");
	if (!(user = vi_vm_user_nic(vm))) {
		if (sp->nforwards)
			return vi_error(VI_EUSAGE, "--forward needs a user NIC (--nic user)%s",
					(hv->ops.features & VI_HV_F_USER_NET)
						? ""
						: ", which this backend does not have");
		return 0;
	}
	for (size_t i = 0; img && i < img->forwards.n; i++)
		if ((rc = add_forward(user, img->forwards.v[i])) < 0)
			return rc;
	for (size_t i = 0; i < sp->nforwards; i++)
		if ((rc = add_forward(user, sp->forwards[i])) < 0)
			return rc;
	if (!vi_vm_nic_forward(user, VI_SSH_GUEST_PORT) &&
	    (rc = add_forward(user, "127.0.0.1:0:22")) < 0)
		return rc;
	bool changed;
	return vi_forwards_prepare(vm, &changed);
}

static int build_definition(const struct vi_create_spec *sp, const struct vi_hv *hv,
			    const struct template_image *img, struct vi_vm *vm)
{
	int rc;

	/* vm holds the labels already, checked before any work. */
	vm->name = xstrdup(sp->name);
	vm->hv = xstrdup(hv->ops.name);
	vm->connect = xstrdup(sp->connect);
	vm->cpus = sp->cpus ? sp->cpus : img && img->cpus ? img->cpus : 1;
	vm->memory = sp->memory ? sp->memory : img && img->memory ? img->memory : VI_VM_DEFAULT_MEMORY;
	vm->max_cpus = sp->max_cpus ? sp->max_cpus
		       : img && img->max_cpus ? (img->max_cpus > vm->cpus ? img->max_cpus : vm->cpus)
					      : vi_headroom_cpus(vm->cpus);
	vm->max_memory = sp->max_memory ? sp->max_memory
			 : img && img->max_memory
				 ? (img->max_memory > vm->memory ? img->max_memory : vm->memory)
				 : vi_headroom_memory(vm->memory);
	vm->guest_type = xstrdup(sp->guest_type);
	vm->created = time(NULL);
	if (vm->max_cpus < vm->cpus)
		return vi_error(VI_EUSAGE, "--max-cpus %u is below --cpus %u", vm->max_cpus, vm->cpus);
	if (vm->memory < VI_VM_MIN_MEMORY)
		return vi_error(VI_EUSAGE, "--memory must be at least 16M");
	if (vm->memory > VI_VM_MAX_MEMORY || vm->max_memory > VI_VM_MAX_MEMORY)
		return vi_error(VI_EUSAGE, "--%smemory must be at most 64T",
				vm->memory > VI_VM_MAX_MEMORY ? "" : "max-");
	if (vm->max_memory < vm->memory)
		return vi_error(VI_EUSAGE, "--max-memory is below --memory");
	if (img) {
		if (sp->kernel || sp->initrd)
			return vi_error(VI_EUSAGE, "--kernel and --initrd come from the template");
		vm->kernel = xstrdup(img->kernel);
		vm->initrd = xstrdup(img->initrd);
		vm->cmdline = xstrdup(sp->cmdline ? sp->cmdline : img->cmdline);
		vm->template = xstrdup(img->name);
		vm->template_digest = xstrdup(img->digest);
		vm->ready_marker = xstrdup(img->ready_marker);
		/* The template's disks, as overlays made once the VM has a directory. */
		vm->disks = xcalloc(img->ndisks + sp->ndisks, sizeof(*vm->disks));
		for (size_t i = 0; i < img->ndisks; i++, vm->ndisks++) {
			vm->disks[i].path = xasprintf("disks/disk%zu.qcow2", i);
			vm->disks[i].format = VI_DISK_QCOW2;
		}
	} else {
		if (sp->disk_size)
			return vi_error(VI_EUSAGE, "--disk-size needs --template");
		if (!sp->kernel && (sp->initrd || sp->cmdline))
			return vi_error(VI_EUSAGE, "--initrd and --cmdline need --kernel");
		if (!sp->kernel && !sp->ndisks)
			return vi_error(VI_EUSAGE, "nothing to boot: give --template, --kernel or --disk");
		if (sp->kernel && (rc = existing_file(sp->kernel, "kernel", &vm->kernel)) < 0)
			return rc;
		if (sp->initrd && (rc = existing_file(sp->initrd, "initrd", &vm->initrd)) < 0)
			return rc;
		vm->cmdline = xstrdup(sp->cmdline);
		vm->disks = xcalloc(sp->ndisks, sizeof(*vm->disks));
	}
	for (size_t i = 0; i < sp->ndisks; i++, vm->ndisks++)
		if ((rc = parse_disk(sp->disks[i], &vm->disks[vm->ndisks])) < 0)
			return rc;
	if ((rc = build_nics(sp, hv, img, vm)) < 0)
		return rc;
	vm->user = xstrdup(sp->user ? sp->user : img ? img->user : NULL);
	vm->ready_ssh = img && img->ready_ssh;
	vi_vm_new_identity(vm);
	return 0;
}

/* The template's disks as overlays in the staging directory; the first one
 * grown to disk_size. */
static int make_template_disks(const struct template_image *img, uint64_t disk_size,
			       const char *staging, struct vi_vm *vm)
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

/* --- the seed ---------------------------------------------------------------- */

/* A login name as useradd takes it. */
static int check_user(const char *u)
{
	size_t n = strlen(u);

	if (n == 0 || n > 32 || !(u[0] == '_' || (u[0] >= 'a' && u[0] <= 'z')) ||
	    strspn(u, "abcdefghijklmnopqrstuvwxyz0123456789_-") != n)
		return vi_error(VI_EUSAGE,
				"invalid user '%s': a lower-case letter or _, then up to 31 of "
				"a-z 0-9 _ -",
				u);
	return 0;
}

static bool is_seed(const struct vi_vm_disk *d)
{
	return d->readonly && !strcmp(d->path, VI_SEED_FILE);
}

/* The seed's inputs kept in the VM's directory, so that its clones get
 * the same keys and user-data: authorized_keys, user-data. */
static int keep_file(const char *dir, const char *name, const char *text, size_t len)
{
	char *path = xasprintf("%s/%s", dir, name);
	int rc = vi_write_file_atomic(path, text, len, 0600);

	free(path);
	return rc;
}

/* Writes dir/seed.img for vm from the keys and user-data kept in dir, with
 * a new host key recorded in dir/known_hosts; adds the seed disk to vm. */
static int write_seed(const struct vi_store *s, const char *dir, struct vi_vm *vm, bool grow)
{
	char *store_pub = NULL, *priv = NULL, *pub = NULL, **keys = NULL, *kh = NULL;
	char *kpath = xasprintf("%s/%s", dir, VI_SSH_AUTHORIZED_KEYS);
	char *udpath = xasprintf("%s/user-data", dir), *seed = NULL;
	size_t nkeys = 0;
	int rc;

	if ((rc = vi_ssh_store_key(s, NULL, &store_pub)) < 0)
		goto out;
	if (vi_file_exists(kpath) && (rc = vi_ssh_read_keys(kpath, &keys, &nkeys)) < 0)
		goto out;
	keys = xrealloc(keys, (nkeys + 1) * sizeof(*keys));
	memmove(keys + 1, keys, nkeys * sizeof(*keys));
	keys[0] = store_pub;
	store_pub = NULL;
	nkeys++;
	if ((rc = vi_ssh_keygen(&priv, &pub)) < 0)
		goto out;
	kh = xasprintf("%s %s\n", vm->name, pub);
	if ((rc = keep_file(dir, VI_SSH_KNOWN_HOSTS, kh, strlen(kh))) < 0)
		goto out;
	struct vi_seed sd = {
		.instance_id = vm->uuid,
		.hostname = vm->hostname,
		.user = vm->user ? vm->user : "root",
		.keys = (const char *const *)keys,
		.nkeys = nkeys,
		.host_key = priv,
		.user_data = vi_file_exists(udpath) ? udpath : NULL,
		.grow_root = grow,
	};
	seed = xasprintf("%s/%s", dir, VI_SEED_FILE);
	if ((rc = vi_seed_write(seed, &sd)) < 0)
		goto out;
	vm->disks = xrealloc(vm->disks, (vm->ndisks + 1) * sizeof(*vm->disks));
	vm->disks[vm->ndisks++] = (struct vi_vm_disk){
		.path = xstrdup(VI_SEED_FILE),
		.format = VI_DISK_RAW,
		.readonly = true,
	};
out:
	for (size_t i = 0; i < nkeys; i++)
		free(keys[i]);
	free(keys);
	free(store_pub);
	if (priv)
		explicit_bzero(priv, strlen(priv));
	free(priv);
	free(pub);
	free(kh);
	free(kpath);
	free(udpath);
	free(seed);
	return rc;
}

/* The partition number of a root device such as /dev/sda1, 0 for a whole disk. */
/* A machine from a template, or one given a user, keys or user-data, gets
 * a seed; --disk-size grows its root partition here and its file system at
 * its first boot. */
static int make_seed(const struct vi_store *s, const struct vi_create_spec *sp,
		     const struct template_image *img, const char *staging, struct vi_vm *vm)
{
	bool grow = img && sp->disk_size > img->disks[0].size;
	size_t len;
	int rc;

	if (!img && !sp->user && !sp->nssh_keys && !sp->user_data)
		return 0;
	if (!vm->user)
		vm->user = xstrdup("root");
	if ((rc = check_user(vm->user)) < 0)
		return rc;
	/* The keys given, checked and kept as one authorized_keys file. */
	char *all = xstrdup("");
	for (size_t i = 0; rc == 0 && i < sp->nssh_keys; i++) {
		char **keys;
		size_t n;
		if ((rc = vi_ssh_read_keys(sp->ssh_keys[i], &keys, &n)) < 0)
			break;
		for (size_t j = 0; j < n; j++) {
			char *x = xasprintf("%s%s\n", all, keys[j]);
			free(all);
			all = x;
			free(keys[j]);
		}
		free(keys);
	}
	if (rc == 0 && *all)
		rc = keep_file(staging, VI_SSH_AUTHORIZED_KEYS, all, strlen(all));
	free(all);
	if (rc == 0 && sp->user_data) {
		char *text;
		if ((rc = vi_read_regular_file(sp->user_data, 1 << 20, &text, &len)) == 0) {
			rc = keep_file(staging, "user-data", text, len);
			free(text);
		}
	}
	unsigned part = img ? vi_seed_root_partition(img->root) : 0;
	if (rc == 0 && grow && part) {
		char *disk = xasprintf("%s/%s", staging, vm->disks[0].path);
		rc = vi_seed_grow_partition(disk, part);
		free(disk);
	}
	/* Every boot grows the root file system into what its partition has: the
	 * partition that `vi grow --disk` grows later too. */
	return rc < 0 ? rc : write_seed(s, staging, vm, true);
}

int vi_op_create(struct vi_store *s, struct vi_hv_set *plugins, const struct vi_create_spec *sp,
		 struct vi_machine *m, unsigned *ready_timeout)
{
	struct vi_hv *hv;
	struct vi_vm vm = { 0 };
	struct template_image img = { 0 };
	bool have_img = false;
	char *staging = NULL;
	int rc;

	memset(m, 0, sizeof(*m));
	*ready_timeout = 0;
	if ((rc = vi_check_name(sp->name, "VM")) < 0)
		return rc;
	if (vi_store_vm_exists(s, sp->name) == 0)
		return vi_error(VI_ESTATE, "VM '%s' already exists", sp->name);
	vi_error_clear();
	for (size_t i = 0; i < sp->nlabels; i++)
		if ((rc = vi_vm_label_apply(&vm, sp->labels[i], false)) < 0)
			goto cleanup;
	if (sp->template_ref) {
		rc = template_image_get(s, sp->template_ref, sp->sets, sp->nsets, sp->build, &img);
		if (rc < 0)
			goto cleanup;
		have_img = true;
		*ready_timeout = img.ready_timeout;
	} else if (sp->nsets) {
		rc = vi_error(VI_EUSAGE, "--set needs --template");
		goto cleanup;
	}
	if ((rc = vi_hv_choose(plugins, sp->hv ? sp->hv : have_img ? img.hv : NULL, sp->connect,
			       &hv)) < 0 ||
	    (rc = build_definition(sp, hv, have_img ? &img : NULL, &vm)) < 0 ||
	    (rc = vi_store_stage_vm(s, sp->name, &staging)) < 0)
		goto cleanup;
	if (have_img && (rc = make_template_disks(&img, sp->disk_size, staging, &vm)) < 0)
		goto cleanup;
	if ((rc = make_seed(s, sp, have_img ? &img : NULL, staging, &vm)) < 0)
		goto cleanup;
	if ((rc = add_machine(s, hv, &vm, staging, m)) < 0)
		goto cleanup;
	free(staging); /* committed: staging is gone */
	staging = NULL;
	if (sp->start && (rc = vi_op_start(m)) < 0)
		vi_error_wrap("VM '%s' was created but did not start", sp->name);
cleanup:
	if (staging) {
		vi_store_abort_vm(staging);
		free(staging);
	}
	if (have_img)
		template_image_release(&img);
	vi_vm_release(&vm);
	return rc;
}

/* --- clone ---------------------------------------------------------------------- */

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
	vm->origin = xstrdup(src->name);
	vm->created = time(NULL);
	vm->labels = xcalloc(src->nlabels, sizeof(*vm->labels));
	vm->nlabels = src->nlabels;
	for (size_t i = 0; i < src->nlabels; i++)
		vm->labels[i] = xstrdup(src->labels[i]);
	vm->disks = xcalloc(src->ndisks, sizeof(*vm->disks));
	vm->ndisks = src->ndisks;
	vm->nics = xcalloc(src->nnics, sizeof(*vm->nics));
	vm->nnics = src->nnics;
	for (size_t i = 0; i < src->nnics; i++) {
		const struct vi_vm_nic *sn = &src->nics[i];
		struct vi_vm_nic *n = &vm->nics[i];
		n->mode = xstrdup(sn->mode);
		n->source = xstrdup(sn->source);
		/* The source holds its host ports: the clone's are its own, free ones. */
		n->forwards = xcalloc(sn->nforwards, sizeof(*n->forwards));
		n->nforwards = sn->nforwards;
		for (size_t j = 0; j < sn->nforwards; j++) {
			n->forwards[j] = sn->forwards[j];
			n->forwards[j].host_addr = xstrdup(sn->forwards[j].host_addr);
			n->forwards[j].host_port = 0;
			n->forwards[j].auto_port = true;
		}
	}
	vm->user = xstrdup(src->user);
	vm->ready_ssh = src->ready_ssh;
	/* uuid, machine_id, hostname and MACs are NULL: all new. */
	vi_vm_new_identity(vm);
}

/* The networks and labels a clone changes from its source's. */
static int clone_changes(const struct vi_clone_spec *sp, struct vi_vm *vm)
{
	int rc = 0;

	for (size_t i = 0; i < sp->nnetworks; i++) {
		const char *eq = strchr(sp->networks[i], '=');
		size_t flen = eq ? (size_t)(eq - sp->networks[i]) : 0;
		for (size_t k = 0; eq && k < vm->nnics; k++)
			if (vm->nics[k].source && strlen(vm->nics[k].source) == flen &&
			    !strncmp(vm->nics[k].source, sp->networks[i], flen)) {
				free(vm->nics[k].source);
				vm->nics[k].source = xstrdup(eq + 1);
			}
	}
	for (size_t i = 0; i < sp->nlabels && rc == 0; i++)
		rc = vi_vm_label_apply(vm, sp->labels[i], true);
	return rc;
}

/* What each of the clone's disks will be: its path in the clone's directory,
 * format and layer (the layers are the source's frozen disks, as backing
 * paths). Nothing is made yet: the index learns of the layers first. */
static void plan_clone_disks(const struct vi_store *s, const struct vi_vm *src, char **layers,
			     bool full, struct vi_vm *vm)
{
	for (size_t i = 0; i < vm->ndisks; i++) {
		struct vi_vm_disk *d = &vm->disks[i];
		const struct vi_vm_disk *sd = &src->disks[i];
		if (is_seed(sd))
			continue; /* the clone gets a seed of its own */
		if (sd->readonly && !full) {
			/* A read-only disk is shared as it is. */
			d->path = xstrdup(layers[i]);
			d->format = sd->format;
			d->readonly = true;
			continue;
		}
		char *base = xstrdup(sd->path);
		d->path = xasprintf("disks/%s", basename(base));
		free(base);
		d->format = VI_DISK_QCOW2;
		d->readonly = sd->readonly;
		if (!full)
			d->layer = vi_layer_id_of(s, layers[i]);
	}
}

/* The planned disks in staging: overlays on the layers, or full copies. */
static int make_clone_disks(const struct vi_vm *src, char **layers, bool full,
			    const char *staging, const struct vi_vm *vm)
{
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < vm->ndisks; i++) {
		const struct vi_vm_disk *d = &vm->disks[i];
		if (is_seed(&src->disks[i]) || (src->disks[i].readonly && !full))
			continue;
		char *dst = xasprintf("%s/%s", staging, d->path);
		if (full) {
			struct image *img;
			struct image_convert_opts o = { .create = { .format = IMAGE_QCOW2 } };
			if ((rc = image_open(layers[i], IMAGE_PROBE, 0, &img)) == 0) {
				rc = image_convert(img, dst, &o);
				image_close(img);
			}
		} else {
			rc = vi_layer_overlay(dst, layers[i]);
		}
		free(dst);
	}
	return rc;
}

/* A clone set's journal, vms/.staging/SRC.clones.PID: one line "NAME UUID"
 * per clone, written before the clone can enter the store and removed once
 * the set is complete or rolled back. A journal whose command died names
 * the clones vi_ops_recover() takes out again, so that a killed
 * `clone --count` leaves all or nothing after the next command. */
struct journal {
	char *path;
	FILE *f;
};

static int journal_open(const struct vi_store *s, const char *source, struct journal *j)
{
	j->path = vi_store_path(s, "vms/.staging/%s.clones.%d", source, (int)getpid());
	if (!(j->f = fopen(j->path, "we"))) {
		int rc = vi_error_errno(VI_EFAIL, errno, "cannot create '%s'", j->path);
		free(j->path);
		return rc;
	}
	return 0;
}

/* Names the whole set at once, before any clone can enter the store. */
static int journal_write(struct journal *j, const struct vi_vm *vms, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (fprintf(j->f, "%s %s\n", vms[i].name, vms[i].uuid) < 0)
			break;
	if (ferror(j->f) || fflush(j->f) != 0 || fsync(fileno(j->f)) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot write '%s'", j->path);
	return 0;
}

static void journal_close(struct journal *j)
{
	fclose(j->f);
	unlink(j->path);
	free(j->path);
}

/* The clone's own seed (new host key, host name and instance ID) from the
 * keys and user-data its source was given, in place of the source's. */
static int clone_seed(const struct vi_store *s, const struct vi_machine *src,
		      const char *staging, struct vi_vm *vm)
{
	static const char *const kept[] = { VI_SSH_AUTHORIZED_KEYS, "user-data" };
	bool had = false;
	size_t n = 0;
	int rc = 0;

	for (size_t i = 0; i < vm->ndisks; i++) {
		if (vm->disks[i].path)
			vm->disks[n++] = vm->disks[i];
		else
			had = true;
	}
	vm->ndisks = n;
	if (!had)
		return 0;
	for (size_t i = 0; rc == 0 && i < ARRAY_SIZE(kept); i++) {
		char *from = xasprintf("%s/%s", src->dir, kept[i]), *text;
		size_t len;
		if (vi_file_exists(from) && (rc = vi_read_file(from, &text, &len)) == 0) {
			rc = keep_file(staging, kept[i], text, len);
			free(text);
		}
		free(from);
	}
	/* The source's first boot grew its file system, or its clone's will. */
	return rc < 0 ? rc : write_seed(s, staging, vm, true);
}

/* Makes clone vm (defined, its disks planned, the index and the journal told
 * of it); on failure nothing of it remains. */
static int make_clone(const struct vi_store *s, struct vi_machine *src, const struct vi_vm *base,
		      struct vi_layer_index *idx, char **layers, const struct vi_clone_spec *sp,
		      struct vi_vm *vm, struct vi_machine *m)
{
	char *name = xstrdup(vm->name), *staging = NULL;
	bool ports_changed;
	int rc;

	memset(m, 0, sizeof(*m));
	if ((rc = vi_forwards_prepare(vm, &ports_changed)) < 0 ||
	    (rc = vi_store_stage_vm(s, name, &staging)) < 0)
		goto cleanup;
	rc = make_clone_disks(base, layers, sp->full, staging, vm);
	if (rc == 0)
		rc = clone_seed(s, src, staging, vm);
	if (rc == 0 && (rc = add_machine(s, src->hv, vm, staging, m)) == 0) {
		free(staging); /* committed: staging is gone */
		staging = NULL;
	}
	if (rc == 0 && sp->start && (rc = vi_op_start(m)) < 0) {
		vi_error_wrap("clone '%s' did not start", name);
		rollback(s, m, idx);
	}
cleanup:
	if (staging) {
		vi_store_abort_vm(staging);
		free(staging);
	}
	if (rc < 0)
		vi_machine_release(m);
	free(name);
	return rc;
}

/* A running source keeps running: the backend moves its disks onto new
 * overlays at one instant, and what they were becomes the layers. */
static int freeze_live(const struct vi_store *s, struct vi_machine *src, struct vi_layer_index *idx,
		       char **layers, double *paused_at, const char *verb)
{
	size_t n = src->def.ndisks;
	char **overlays = xcalloc(n, sizeof(char *));
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = vi_layer_live(s, idx, &src->def, src->dir, &src->def.disks[i], &overlays[i],
				   &layers[i]);
	/* Everything is ready before the guest waits, if it is to wait. */
	if (rc == 0 && paused_at) {
		*paused_at = vi_now_ms();
		rc = vi_hv_pause(src->hv, &src->view.vm);
	}
	if (rc == 0 && (rc = vi_hv_switch_disks(src->hv, &src->view.vm,
						(const char *const *)overlays)) < 0) {
		vi_error_wrap("cannot %s '%s' while it runs", verb, src->def.name);
		if (paused_at) {
			struct vi_error_saved e;
			vi_error_save(&e);
			vi_hv_resume(src->hv, &src->view.vm);
			vi_error_restore(&e);
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (rc == 0 && overlays[i])
			vi_layer_live_done(s, idx, src->def.name, src->dir, &src->def.disks[i],
					   overlays[i], layers[i]);
		else if (rc < 0 && layers[i])
			vi_layer_live_undo(s, idx, overlays[i], layers[i]);
		free(overlays[i]);
	}
	free(overlays);
	return rc;
}

int vi_op_freeze(const struct vi_store *s, struct vi_machine *m, struct vi_layer_index *idx,
		 char **layers, double *paused_at, const char *verb)
{
	struct vi_hv_state st;
	int rc = 0;
	int state = vi_machine_state(m, &st);

	if (vi_hv_state_active(state))
		rc = freeze_live(s, m, idx, layers, state == VI_HV_RUNNING ? paused_at : NULL,
				 verb);
	else
		for (size_t i = 0; rc == 0 && i < m->def.ndisks; i++)
			rc = vi_layer_freeze(s, idx, &m->def, m->dir, &m->def.disks[i], &layers[i]);
	/* Disks that moved did so whatever failed after them: record where. */
	int saved = vi_store_save_vm(s, &m->def);
	return rc < 0 ? rc : saved;
}

int vi_op_clone(const struct vi_store *s, struct vi_hv_set *plugins,
		const struct vi_clone_spec *sp, struct vi_vm *clones)
{
	struct vi_machine src, *made;
	struct vi_layer_index idx;
	struct journal j;
	struct vi_vm *defs = NULL;
	char **layers;
	size_t n = 0;
	int rc;

	for (size_t i = 0; i < sp->n; i++) {
		if ((rc = vi_check_name(sp->names[i], "VM")) < 0)
			return rc;
		if (vi_store_vm_exists(s, sp->names[i]) == 0)
			return vi_error(VI_ESTATE, "VM '%s' already exists", sp->names[i]);
	}
	vi_error_clear();
	/* VM@SNAPSHOT: the snapshot's frozen disks and definition, the VM left
	 * as it is. */
	char *vm_name, *snap_name;
	struct vi_snapshot snap = { 0 };
	vi_snapshot_ref_split(sp->source, &vm_name, &snap_name);
	rc = vi_machine_open(s, plugins, vm_name, sp->connect, true, &src);
	if (rc == 0 && snap_name && (rc = vi_snapshot_load(s, vm_name, snap_name, &snap)) < 0)
		vi_machine_release(&src);
	free(snap_name);
	if (rc < 0) {
		free(vm_name);
		return rc;
	}
	const struct vi_vm *base = snap.name ? &snap.def : &src.def;
	rc = journal_open(s, vm_name, &j);
	free(vm_name);
	if (rc < 0) {
		vi_snapshot_release(&snap);
		vi_machine_release(&src);
		return rc;
	}
	if ((rc = vi_layers_open(s, &idx)) < 0) {
		journal_close(&j);
		vi_snapshot_release(&snap);
		vi_machine_release(&src);
		return rc;
	}
	made = xcalloc(sp->n, sizeof(*made));
	/* Freeze every disk once, however many clones share the layers. */
	layers = xcalloc(base->ndisks + 1, sizeof(char *));
	if (snap.name)
		for (size_t i = 0; i < snap.ndisks && i < base->ndisks; i++)
			layers[i] = xstrdup(snap.disks[i].backing);
	else
		rc = vi_op_freeze(s, &src, &idx, layers, NULL, "clone");
	/* The whole set is defined first: the journal names every clone and the
	 * index knows every clone reads its layers before any of them can. */
	defs = xcalloc(sp->n, sizeof(*defs));
	for (size_t i = 0; rc == 0 && i < sp->n; i++) {
		clone_definition(base, sp->names[i], &defs[i]);
		rc = clone_changes(sp, &defs[i]);
		plan_clone_disks(s, base, layers, sp->full, &defs[i]);
		vi_layers_ref_vm(&idx, &defs[i]);
	}
	if (rc == 0 && (rc = journal_write(&j, defs, sp->n)) == 0)
		rc = vi_layers_write(s, &idx);
	for (; rc == 0 && n < sp->n; n++)
		rc = make_clone(s, &src, base, &idx, layers, sp, &defs[n], &made[n]);
	if (rc < 0) {
		/* The clones never made read nothing. */
		for (size_t i = n ? n - 1 : 0; i < sp->n; i++)
			vi_layer_unref_vm(&idx, sp->names[i]);
		/* All or nothing: the clones made so far go again. */
		struct vi_error_saved e;
		vi_error_save(&e);
		for (size_t i = n; i-- > 0;)
			if (made[i].dir)
				rollback(s, &made[i], &idx);
		vi_error_restore(&e);
	}
	/* Commit whatever happened: layers made for nothing go again. */
	if (rc == 0)
		rc = vi_layers_commit(s, &idx);
	else
		vi_layers_commit_anyway(s, &idx);
	/* The set is complete, or gone: nothing for recovery to undo. */
	journal_close(&j);
	for (size_t i = 0; i < sp->n; i++) {
		if (rc == 0) {
			clones[i] = made[i].def;
			memset(&made[i].def, 0, sizeof(made[i].def));
		}
		vi_machine_release(&made[i]);
	}
	free(made);
	for (size_t i = 0; defs && i < sp->n; i++)
		vi_vm_release(&defs[i]);
	free(defs);
	for (size_t i = 0; i < base->ndisks; i++)
		free(layers[i]);
	free(layers);
	vi_snapshot_release(&snap);
	vi_machine_release(&src);
	return rc;
}

/* --- start and stop ------------------------------------------------------------- */

/* The forwards' host ports, checked before the backend binds them, so that
 * every backend says the same about a port in use; automatic ones move to
 * a free port, recorded. */
static int prepare_forwards(struct vi_machine *m)
{
	bool changed;
	int rc = vi_forwards_prepare(&m->def, &changed);

	if (rc < 0 || !changed)
		return rc;
	char *path = xasprintf("%s/vm.yaml", m->dir);
	rc = vi_vm_save(path, &m->def);
	free(path);
	vi_vm_hv_release(&m->view);
	vi_vm_hv_init(&m->view, &m->def, m->dir);
	return rc;
}

int vi_op_forwards_arrived(struct vi_machine *m)
{
	int rc = prepare_forwards(m);

	for (size_t i = 0; rc == 0 && i < m->view.vm.nnics; i++)
		for (size_t j = 0; rc == 0 && j < m->view.vm.nics[i]->nforwards; j++)
			rc = vi_hv_forward_add(m->hv, &m->view.vm, i,
					       m->view.vm.nics[i]->forwards[j]);
	return rc;
}

int vi_op_start(struct vi_machine *m)
{
	struct vi_hv_state st;
	int rc;

	char *there = vi_migrate_unconfirmed(m->dir);

	/* Its guest may run on that host: two copies must never run at once. */
	if (there) {
		rc = vi_error(VI_ESTATE,
			      "VM '%s' may be running on host '%s', its migration unconfirmed: "
			      "settle it with 'vi migrate --recover %s'",
			      m->def.name, there, m->def.name);
		free(there);
		return rc;
	}
	vi_machine_state(m, &st);
	if (st.state == VI_HV_RUNNING || st.state == VI_HV_PAUSED)
		return vi_error(VI_ESTATE, "VM '%s' is already %s", m->def.name,
				vi_hv_state_name(st.state));
	if ((rc = vi_mkdir_p(m->view.run_dir, 0700)) < 0)
		return rc;
	if (unlink(m->view.console_log) < 0 && errno != ENOENT)
		return vi_error_errno(VI_EFAIL, errno, "cannot reset '%s'", m->view.console_log);
	if ((rc = prepare_forwards(m)) < 0)
		return rc;
	if ((rc = vi_grow_pending_partition(m)) < 0)
		return rc;
	if ((rc = vi_hv_start(m->hv, &m->view.vm)) < 0)
		return rc;
	/* The quota `vi grow` set goes with the VM: a failure to apply it says so and
	 * leaves the VM running. */
	if (m->def.cpu_quota && vi_hv_set_cpu_quota(m->hv, &m->view.vm, m->def.cpu_quota) < 0) {
		vi_warn("VM '%s' runs without its CPU quota of %u%%: %s", m->def.name,
			m->def.cpu_quota, vi_error_message());
		vi_error_clear();
	}
	return 0;
}

int vi_op_stop(struct vi_machine *m, bool force, unsigned timeout_ms)
{
	struct vi_hv_state st;

	if (!vi_hv_state_active(vi_machine_state(m, &st)))
		return vi_error(VI_ESTATE, "VM '%s' is not running", m->def.name);
	return vi_hv_stop(m->hv, &m->view.vm, force ? VI_HV_STOP_FORCE : 0, timeout_ms);
}

/* --- recovery ------------------------------------------------------------------- */

/* A killed create or clone may have defined its VM on the backend before it
 * could rename it into the store: forget that definition (found by the
 * staged UUID, so never another machine's). */
static void forget_staged(struct vi_hv_set *plugins, const char *dir)
{
	char *def = xasprintf("%s/vm.yaml", dir);
	struct vi_vm vm;
	struct vi_vm_hv view;
	struct vi_hv *hv;

	if (vi_vm_load(def, &vm) == 0) {
		if (vm.uuid && (hv = vi_hv_find(plugins, vm.hv)) &&
		    (vi_hv_probe(hv, vm.connect), vi_hv_usable(hv))) {
			vi_vm_hv_init(&view, &vm, dir);
			if (vi_hv_undefine(hv, &view.vm) == 0)
				vi_debug("forgot VM '%s' that a killed command left on %s", vm.name,
					 vm.hv);
			vi_vm_hv_release(&view);
		}
		vi_vm_release(&vm);
	}
	vi_error_clear();
	free(def);
}

/* Takes out the clones a killed clone set's journal names; false when one
 * of them is busy (the journal is kept for a later command). */
static bool undo_clone_set(const struct vi_store *s, struct vi_hv_set *plugins, const char *path)
{
	FILE *f = fopen(path, "re");
	char line[512], name[256], uuid[64];
	bool done = true;

	while (f && fgets(line, sizeof(line), f)) {
		struct vi_machine m;
		int lock;
		if (sscanf(line, "%255s %63s", name, uuid) != 2)
			continue;
		if ((lock = vi_store_lock_vm(s, name, 0)) < 0) {
			done = false;
			continue;
		}
		if (vi_machine_open(s, plugins, name, NULL, false, &m) == 0) {
			if (m.def.uuid && !strcmp(m.def.uuid, uuid) &&
			    vi_op_destroy(s, &m, VI_OP_FORCE) == 0)
				vi_debug("removed clone '%s' of a killed command", name);
			vi_machine_release(&m);
		}
		vi_store_unlock(lock);
	}
	if (f)
		fclose(f);
	vi_error_clear();
	return done;
}

void vi_ops_recover(const struct vi_store *s, struct vi_hv_set *plugins)
{
	char *path = vi_store_path(s, "vms/.staging");
	DIR *d = opendir(path);
	struct dirent *e;

	while (d && (e = readdir(d))) {
		if (e->d_name[0] == '.' || !vi_pid_suffix_gone(e->d_name))
			continue;
		char *dir = xasprintf("%s/%s", path, e->d_name);
		const char *incoming = strstr(e->d_name, ".incoming.");
		if (incoming) {
			/* A VM that a killed `vi __migrate-in` was receiving: it
			 * never came, and goes. */
			char *name = xstrndup(e->d_name, (size_t)(incoming - e->d_name));
			struct vi_machine m;
			if (vi_machine_open(s, plugins, name, NULL, false, &m) == 0) {
				vi_op_destroy(s, &m, 0);
				vi_machine_release(&m);
			} else {
				vi_op_forget(s, name);
			}
			free(name);
			unlink(dir);
		} else if (strstr(e->d_name, ".clones.")) {
			if (undo_clone_set(s, plugins, dir))
				unlink(dir);
		} else {
			if (!strstr(e->d_name, ".removed."))
				forget_staged(plugins, dir);
			vi_rm_rf(dir);
		}
		vi_error_clear();
		free(dir);
	}
	if (d)
		closedir(d);
	free(path);
	template_clear_dead(s);
}
