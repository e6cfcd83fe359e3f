/* Live capacity: see grow.h. */
#include "grow.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "error.h"
#include "log.h"
#include "seed.h"
#include "template.h"
#include "tools.h"
#include "image/image.h"
#include "util.h"
#include "vm.h"

int vi_grow_parse_amount(const char *s, bool size, const char *what, struct vi_grow_amount *a)
{
	const char *p = s;
	char *end;
	int rc;

	memset(a, 0, sizeof(*a));
	if (*p == '+' || *p == '-')
		a->sign = *p++ == '+' ? 1 : -1;
	if (size) {
		if ((rc = vi_parse_size(p, what, &a->value)) < 0)
			return rc;
	} else {
		errno = 0;
		if (*p < '0' || *p > '9')
			return vi_error(VI_EUSAGE, "%s: '%s' is not a number", what, s);
		unsigned long long v = strtoull(p, &end, 10);
		if (*end == '%')
			end++;
		if (errno || *end || v > UINT32_MAX)
			return vi_error(VI_EUSAGE, "%s: '%s' is not a number", what, s);
		a->value = v;
	}
	a->given = true;
	return 0;
}

int vi_grow_parse_disk(const char *spec, struct vi_grow_disk *d)
{
	const char *colon = strrchr(spec, ':');

	memset(d, 0, sizeof(*d));
	if (colon) {
		if (colon == spec)
			return vi_error(VI_EUSAGE, "--disk '%s': no disk before ':'", spec);
		d->name = xstrndup(spec, (size_t)(colon - spec));
		spec = colon + 1;
	}
	return vi_grow_parse_amount(spec, true, "--disk", &d->size);
}

void vi_grow_release(struct vi_grow *g)
{
	for (size_t i = 0; i < g->ndisks; i++)
		free(g->disks[i].name);
	free(g->disks);
	g->disks = NULL;
	g->ndisks = 0;
}

void vi_grow_plan_release(struct vi_grow_plan *p)
{
	free(p->disks);
	p->disks = NULL;
	p->ndisks = 0;
}

void vi_grow_disk_name(size_t i, char *buf, size_t len)
{
	if (i < 26)
		snprintf(buf, len, "vd%c", (char)('a' + i));
	else
		snprintf(buf, len, "vd%c%c", (char)('a' + i / 26 - 1), (char)('a' + i % 26));
}

/* from changed by a, refusing what falls below zero or overflows. */
static int apply_amount(const struct vi_grow_amount *a, uint64_t from, const char *what,
			uint64_t *out)
{
	if (!a->given) {
		*out = from;
		return 0;
	}
	if (a->sign < 0 && a->value > from)
		return vi_error(VI_EUSAGE, "%s: -%llu would leave less than nothing", what,
				(unsigned long long)a->value);
	if (a->sign > 0 && a->value > UINT64_MAX - from)
		return vi_error(VI_EUSAGE, "%s: too large", what);
	*out = a->sign < 0 ? from - a->value : a->sign > 0 ? from + a->value : a->value;
	return 0;
}

static const char *size_str(uint64_t b, char *buf, size_t len)
{
	return vi_format_size(b, buf, len);
}

/* The disk that name means: vda, an index, or its path as recorded or
 * resolved; NULL: the first writable one. */
static int find_disk(const struct vi_machine *m, const char *name, size_t *out)
{
	const struct vi_vm *vm = &m->def;
	char n[8];

	for (size_t i = 0; i < vm->ndisks; i++) {
		vi_grow_disk_name(i, n, sizeof(n));
		if (name ? !strcmp(name, n) || !strcmp(name, vm->disks[i].path) ||
				   !strcmp(name, m->view.disk_paths[i])
			 : !vm->disks[i].readonly) {
			*out = i;
			return 0;
		}
	}
	if (name && name[0] >= '0' && name[0] <= '9') {
		char *end;
		unsigned long i = strtoul(name, &end, 10);
		if (!*end && i < vm->ndisks) {
			*out = i;
			return 0;
		}
	}
	if (!name)
		return vi_error(VI_EUSAGE, "VM '%s' has no disk to grow", vm->name);
	return vi_error(VI_ENOTFOUND, "VM '%s' has no disk '%s'", vm->name, name);
}

/* The method a live change needs, or its backend's "unsupported" error. */
#define NEED_METHOD(m, method, call)                                                           \
	do {                                                                                   \
		if (!(m)->hv->ops.method)                                                      \
			return call;                                                           \
	} while (0)

static int plan_cpus(struct vi_machine *m, const struct vi_grow *g, struct vi_grow_plan *p)
{
	const char *name = m->def.name;
	uint64_t v;
	int rc;

	p->cpus_from = m->def.cpus;
	p->max_cpus_from = m->def.max_cpus ? m->def.max_cpus : m->def.cpus;
	if ((rc = apply_amount(&g->max_cpus, p->max_cpus_from, "--max-cpus", &v)) < 0)
		return rc;
	if (v < 1 || v > 4096)
		return vi_error(VI_EUSAGE, "--max-cpus must be 1 to 4096");
	p->max_cpus_to = (unsigned)v;
	if ((rc = apply_amount(&g->cpus, p->cpus_from, "--cpus", &v)) < 0)
		return rc;
	if (v < 1)
		return vi_error(VI_EUSAGE, "--cpus: a VM needs at least one vCPU");
	if (v > 4096)
		return vi_error(VI_EUSAGE, "--cpus must be at most 4096");
	p->cpus_to = (unsigned)v;
	if (p->live && p->max_cpus_to != p->max_cpus_from)
		return vi_error(VI_ESTATE, "VM '%s' runs: its maximum of vCPUs changes only while it "
					   "is stopped",
				name);
	if (p->cpus_to > p->max_cpus_to) {
		if (p->live)
			return vi_error(VI_ESTATE,
					"VM '%s' can have at most %u vCPUs while it runs (its "
					"max_cpus): stop it and run 'vi grow --max-cpus %u %s'",
					name, p->max_cpus_to, p->cpus_to, name);
		if (g->max_cpus.given)
			return vi_error(VI_EUSAGE, "--cpus %u is above --max-cpus %u", p->cpus_to,
					p->max_cpus_to);
		p->max_cpus_to = p->cpus_to;
	}
	if (p->live && p->cpus_to != p->cpus_from)
		NEED_METHOD(m, set_vcpus, vi_hv_set_vcpus(m->hv, &m->view.vm, p->cpus_to));
	return 0;
}

static int plan_memory(struct vi_machine *m, const struct vi_grow *g, struct vi_grow_plan *p)
{
	const char *name = m->def.name;
	char a[32], b[32];
	uint64_t v;
	int rc;

	p->memory_from = m->def.memory;
	p->max_memory_from = m->def.max_memory ? m->def.max_memory : m->def.memory;
	if ((rc = apply_amount(&g->max_memory, p->max_memory_from, "--max-memory", &v)) < 0)
		return rc;
	if (v < VI_VM_MIN_MEMORY || v > VI_VM_MAX_MEMORY)
		return vi_error(VI_EUSAGE, "--max-memory must be 16M to 64T");
	p->max_memory_to = v;
	if ((rc = apply_amount(&g->memory, p->memory_from, "--memory", &v)) < 0)
		return rc;
	if (v < VI_VM_MIN_MEMORY)
		return vi_error(VI_EUSAGE, "--memory: a VM needs at least 16M, not %s",
				size_str(v, a, sizeof(a)));
	if (v > VI_VM_MAX_MEMORY)
		return vi_error(VI_EUSAGE, "--memory must be at most 64T");
	/* Memory comes and goes in whole mebibytes. */
	p->memory_to = (v + (1u << 20) - 1) & ~((uint64_t)(1u << 20) - 1);
	if (p->live && p->max_memory_to != p->max_memory_from)
		return vi_error(VI_ESTATE, "VM '%s' runs: its maximum memory changes only while it "
					   "is stopped",
				name);
	if (p->memory_to > p->max_memory_to) {
		if (p->live)
			return vi_error(VI_ESTATE,
					"VM '%s' can have at most %s of memory while it runs (its "
					"max_memory): stop it and run 'vi grow --max-memory %s %s'",
					name, size_str(p->max_memory_to, a, sizeof(a)),
					size_str(p->memory_to, b, sizeof(b)), name);
		if (g->max_memory.given)
			return vi_error(VI_EUSAGE, "--memory %s is above --max-memory %s",
					size_str(p->memory_to, a, sizeof(a)),
					size_str(p->max_memory_to, b, sizeof(b)));
		p->max_memory_to = p->memory_to;
	}
	if (p->live && p->memory_to != p->memory_from)
		NEED_METHOD(m, set_memory, vi_hv_set_memory(m->hv, &m->view.vm, p->memory_to));
	return 0;
}

static int plan_disks(struct vi_machine *m, const struct vi_grow *g, struct vi_grow_plan *p)
{
	char a[32], b[32];
	int rc;

	p->disks = xcalloc(g->ndisks + 1, sizeof(*p->disks));
	for (size_t i = 0; i < g->ndisks; i++) {
		struct vi_grow_disk_plan *d = &p->disks[p->ndisks];
		uint64_t to;

		if ((rc = find_disk(m, g->disks[i].name, &d->index)) < 0)
			return rc;
		vi_grow_disk_name(d->index, d->name, sizeof(d->name));
		for (size_t j = 0; j < p->ndisks; j++)
			if (p->disks[j].index == d->index)
				return vi_error(VI_EUSAGE, "disk %s is named twice", d->name);
		if (m->def.disks[d->index].readonly)
			return vi_error(VI_EUSAGE, "disk %s of VM '%s' is read-only", d->name,
					m->def.name);
		if ((rc = image_virtual_size(m->view.disk_paths[d->index], &d->from)) < 0)
			return rc;
		if ((rc = apply_amount(&g->disks[i].size, d->from, "--disk", &to)) < 0)
			return rc;
		/* Disks are sized in whole sectors. */
		if (to > UINT64_MAX - 511)
			return vi_error(VI_EUSAGE, "--disk: too large");
		to = (to + 511) & ~(uint64_t)511;
		if (to < d->from)
			return vi_error(VI_EUSAGE,
					"disk %s of VM '%s' is %s: shrinking it to %s is refused, "
					"it would lose data",
					d->name, m->def.name, size_str(d->from, a, sizeof(a)),
					size_str(to, b, sizeof(b)));
		if (to == 0)
			return vi_error(VI_EUSAGE, "--disk: a disk of 0 bytes");
		d->to = to;
		if (p->live && to != d->from)
			NEED_METHOD(m, resize_disk,
				    vi_hv_resize_disk(m->hv, &m->view.vm, d->index, to));
		p->ndisks++;
	}
	return 0;
}

int vi_grow_plan(struct vi_machine *m, const struct vi_grow *g, struct vi_grow_plan *p)
{
	struct vi_hv_state st = { .struct_size = sizeof(st) };
	int rc;

	memset(p, 0, sizeof(*p));
	if ((rc = vi_machine_state(m, &st)) < 0)
		return rc;
	p->live = vi_hv_state_active(st.state);
	if (p->live && !m->hv)
		return vi_error(VI_EUNSUPPORTED, "%s", m->hv_problem);
	if ((rc = plan_cpus(m, g, p)) < 0 || (rc = plan_memory(m, g, p)) < 0 ||
	    (rc = plan_disks(m, g, p)) < 0) {
		vi_grow_plan_release(p);
		return rc;
	}
	p->quota_from = p->quota_to = m->def.cpu_quota;
	if (g->cpu_quota.given) {
		uint64_t v;
		if ((rc = apply_amount(&g->cpu_quota, p->quota_from, "--cpu-quota", &v)) < 0)
			goto fail;
		if (v > 100ull * p->max_cpus_to) {
			rc = vi_error(VI_EUSAGE,
				      "--cpu-quota %llu%% is more than VM '%s' can use: %u vCPUs "
				      "are %u%% at most (0 lifts the quota)",
				      (unsigned long long)v, m->def.name, p->max_cpus_to,
				      100 * p->max_cpus_to);
			goto fail;
		}
		p->quota_to = (unsigned)v;
		p->quota_given = true;
		/* A stopped VM's quota applies when it starts: its backend must have it. */
		if (p->quota_to != p->quota_from && m->hv && !m->hv->ops.set_cpu_quota) {
			rc = vi_hv_set_cpu_quota(m->hv, &m->view.vm, p->quota_to);
			goto fail;
		}
	}
	p->grow_fs = p->ndisks && !g->no_fs;
	return 0;
fail:
	vi_grow_plan_release(p);
	return rc;
}

/* Writes the definition and makes the backend's view of it anew. */
static int save_definition(struct vi_machine *m)
{
	char *path = xasprintf("%s/vm.yaml", m->dir);
	int rc = vi_vm_save(path, &m->def);

	free(path);
	vi_vm_hv_release(&m->view);
	vi_vm_hv_init(&m->view, &m->def, m->dir);
	return rc;
}

static int resize_image(const char *path, uint64_t to)
{
	struct image *img;
	int rc = image_open(path, IMAGE_PROBE, IMAGE_OPEN_WRITE, &img), rc2;

	if (rc < 0)
		return rc;
	rc = image_resize(img, to);
	if (rc == 0)
		rc = image_flush(img);
	rc2 = image_close(img);
	return rc < 0 ? rc : rc2;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

#define PENDING_FILE "grow-root"

/* The root partition of a VM made from a template: 0 when it has none (a whole
 * disk, or no template to say). */
static unsigned template_root_partition(const struct vi_store *s, const struct vi_machine *m)
{
	struct template_image img = { 0 };
	unsigned part = 0;

	if (m->def.template_digest && template_image_load(s, m->def.template_digest, &img) == 0)
		part = vi_seed_root_partition(img.root);
	vi_error_clear();
	template_image_release(&img);
	return part;
}

int vi_grow_pending_partition(struct vi_machine *m)
{
	char *path = xasprintf("%s/%s", m->dir, PENDING_FILE), *text = NULL;
	size_t len;
	int rc = 0;

	if (vi_file_exists(path) && (rc = vi_read_file(path, &text, &len)) == 0) {
		unsigned part = (unsigned)atoi(text);
		if (m->def.ndisks && part)
			rc = vi_seed_grow_partition(m->view.disk_paths[0], part);
		if (rc == 0 && unlink(path) < 0)
			rc = vi_error_errno(VI_EFAIL, errno, "cannot remove '%s'", path);
		if (rc < 0)
			rc = vi_error_wrap("growing the root partition of VM '%s'", m->def.name);
	}
	free(text);
	free(path);
	return rc;
}

/* The running guest's file system on vda grown by its backend, while mounted:
 * 1 when it is, 0 when the backend cannot reach it (r->fs_note says why). */
static int grow_live_fs(struct vi_machine *m, struct vi_grow_result *r)
{
	struct vi_hv_fs_info fs;
	int rc = vi_hv_grow_fs(m->hv, &m->view.vm, 0, 0, &fs);

	if (rc == -VI_ESTATE || rc == -VI_EUNSUPPORTED || rc == -VI_ENOTFOUND) {
		snprintf(r->fs_note, sizeof(r->fs_note), "%s", vi_error_message());
		vi_error_clear();
		return 0;
	}
	if (rc < 0)
		return rc;
	snprintf(r->fs_type, sizeof(r->fs_type), "%s", fs.type);
	r->fs_from = fs.size_before;
	r->fs_to = fs.size_after;
	return 1;
}

/* The root file system of disk vda, grown: by its backend in the running guest
 * where it can, else at the guest's next boot: its partition when the disk is
 * free (now if the VM is stopped), then its file system by the boot's seed hook. */
static int grow_root_fs(const struct vi_store *s, struct vi_machine *m,
			const struct vi_grow_plan *p, struct vi_grow_result *r)
{
	unsigned part = template_root_partition(s, m);
	int rc = 0;

	if (p->live && m->hv->ops.grow_fs && (rc = grow_live_fs(m, r)) != 0)
		return rc < 0 ? rc : 0;

	if (!p->live) {
		/* One appliance grows the disk's last partition and its file system now. */
		struct vi_fs_grow fs;
		rc = vi_growfs_offline(m->view.disk_paths[0],
				       m->def.disks[0].format == VI_DISK_QCOW2 ? "qcow2" : "raw", &fs);
		if (rc == 0) {
			snprintf(r->fs_type, sizeof(r->fs_type), "%s", fs.type);
			r->fs_from = fs.size_before;
			r->fs_to = fs.size_after;
			return 0;
		}
		/* A template's root still grows at boot through the seed's hook. */
		if (!part) {
			snprintf(r->fs_note, sizeof(r->fs_note), "not grown: %s",
				 vi_error_message());
			vi_error_clear();
			return rc == -VI_EUNSUPPORTED ? 0 : rc;
		}
		vi_warn("cannot grow the file system of VM '%s' now: %s", m->def.name,
			vi_error_message());
		vi_error_clear();
	}
	if (!m->def.template_digest) {
		snprintf(r->fs_note, sizeof(r->fs_note),
			 "not grown: vi knows the root file system only of VMs made from "
			 "templates");
		return 0;
	}
	if (!part) {
		snprintf(r->fs_note, sizeof(r->fs_note), "grows at the next boot");
		return 0;
	}
	if (!p->live) {
		rc = vi_seed_grow_partition(m->view.disk_paths[0], part);
		if (rc == 0)
			snprintf(r->fs_note, sizeof(r->fs_note),
				 "partition vda%u grown; its file system grows at the next boot",
				 part);
		return rc;
	}
	char *path = xasprintf("%s/%s", m->dir, PENDING_FILE), *text = xasprintf("%u\n", part);
	rc = vi_write_file_replace(path, text, strlen(text), 0644);
	free(path);
	free(text);
	if (rc == 0)
		snprintf(r->fs_note, sizeof(r->fs_note),
			 "the guest sees the larger disk now; partition vda%u and its file system "
			 "grow at the next boot",
			 part);
	return rc;
}

int vi_grow_apply(const struct vi_store *s, struct vi_machine *m, const struct vi_grow_plan *p,
		  struct vi_grow_result *r)
{
	double t0 = now_ms();
	int rc = 0;

	memset(r, 0, sizeof(*r));
	if (p->live) {
		if (p->cpus_to != p->cpus_from &&
		    (rc = vi_hv_set_vcpus(m->hv, &m->view.vm, p->cpus_to)) == 0) {
			m->def.cpus = p->cpus_to;
			rc = save_definition(m);
		}
		if (rc == 0 && p->memory_to != p->memory_from &&
		    (rc = vi_hv_set_memory(m->hv, &m->view.vm, p->memory_to)) == 0) {
			m->def.memory = p->memory_to;
			rc = save_definition(m);
		}
		for (size_t i = 0; rc == 0 && i < p->ndisks; i++)
			if (p->disks[i].to != p->disks[i].from)
				rc = vi_hv_resize_disk(m->hv, &m->view.vm, p->disks[i].index,
						       p->disks[i].to);
		if (rc == 0 && p->quota_to != p->quota_from &&
		    (rc = vi_hv_set_cpu_quota(m->hv, &m->view.vm, p->quota_to)) == 0) {
			m->def.cpu_quota = p->quota_to;
			rc = save_definition(m);
		}
		/* The backend's own record of the VM follows (libvirt's persistent
		 * definition); one that keeps none has nothing to do. */
		if (rc == 0 && m->hv->ops.define)
			rc = vi_hv_define(m->hv, &m->view.vm);
		if (rc == 0 && m->hv->ops.stats) {
			struct vi_hv_stats s = { .struct_size = sizeof(s) };
			if (vi_hv_stats(m->hv, &m->view.vm, &s) == 0) {
				r->guest_cpus = s.vcpus;
				r->guest_memory = s.memory;
			}
			vi_error_clear();
		}
	} else {
		for (size_t i = 0; rc == 0 && i < p->ndisks; i++)
			if (p->disks[i].to != p->disks[i].from)
				rc = resize_image(m->view.disk_paths[p->disks[i].index],
						  p->disks[i].to);
		if (rc == 0) {
			m->def.cpus = p->cpus_to;
			m->def.max_cpus = p->max_cpus_to;
			m->def.memory = p->memory_to;
			m->def.max_memory = p->max_memory_to;
			m->def.cpu_quota = p->quota_to;
			rc = save_definition(m);
		}
		if (rc == 0 && m->hv && m->hv->ops.define)
			rc = vi_hv_define(m->hv, &m->view.vm);
	}
	for (size_t i = 0; rc == 0 && p->grow_fs && i < p->ndisks; i++)
		/* A running guest's file system may have room to grow into
		 * already (its disk grown by other means): it is asked. */
		if (p->disks[i].index == 0 &&
		    (p->disks[i].to != p->disks[i].from || (p->live && m->hv->ops.grow_fs)))
			rc = grow_root_fs(s, m, p, r);
	r->ms = now_ms() - t0;
	return rc;
}
