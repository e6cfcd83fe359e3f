/* vi grow VM: vCPUs, memory, disks and CPU quota, live while the VM runs, in
 * its definition while it is stopped; --check says what is possible. */
#include "cmd.h"
#include "error.h"
#include "grow.h"
#include "machine.h"
#include "output.h"
#include "util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char *cpus, *memory, *max_cpus, *max_memory, *cpu_quota;
static struct vi_strlist disks;
static int no_fs, check;

const struct vi_option grow_options[] = {
	{ "cpus", 0, VI_OPT_STRING, &cpus, "N|+N|-N", "online vCPUs", VI_COMPLETE_NONE },
	{ "memory", 0, VI_OPT_STRING, &memory, "SIZE|+SIZE|-SIZE", "memory", VI_COMPLETE_NONE },
	{ "disk", 0, VI_OPT_LIST, &disks, "[DISK:]SIZE|+SIZE",
	  "a disk's size, and its file system (repeatable; DISK: vda, vdb... default the first)",
	  VI_COMPLETE_NONE },
	{ "cpu-quota", 0, VI_OPT_STRING, &cpu_quota, "PCT",
	  "host CPU time it may use, percent of one CPU (0: no limit)", VI_COMPLETE_NONE },
	{ "max-cpus", 0, VI_OPT_STRING, &max_cpus, "N", "the vCPUs it may grow to (stopped VM)",
	  VI_COMPLETE_NONE },
	{ "max-memory", 0, VI_OPT_STRING, &max_memory, "SIZE",
	  "the memory it may grow to (stopped VM)", VI_COMPLETE_NONE },
	{ "no-fs", 0, VI_OPT_FLAG, &no_fs, NULL, "leave the guest's file systems as they are" },
	{ "check", 0, VI_OPT_FLAG, &check, NULL, "say what is possible, change nothing" },
	OPT_CONNECT,
	OPT_JSON,
	VI_OPT_TABLE_END,
};

static int parse_request(struct vi_grow *g)
{
	int rc = 0;

	memset(g, 0, sizeof(*g));
	if (cpus && (rc = vi_grow_parse_amount(cpus, false, "--cpus", &g->cpus)) < 0)
		return rc;
	if (memory && (rc = vi_grow_parse_amount(memory, true, "--memory", &g->memory)) < 0)
		return rc;
	if (max_cpus && (rc = vi_grow_parse_amount(max_cpus, false, "--max-cpus", &g->max_cpus)) < 0)
		return rc;
	if (max_memory &&
	    (rc = vi_grow_parse_amount(max_memory, true, "--max-memory", &g->max_memory)) < 0)
		return rc;
	if (cpu_quota &&
	    (rc = vi_grow_parse_amount(cpu_quota, false, "--cpu-quota", &g->cpu_quota)) < 0)
		return rc;
	g->disks = xcalloc(disks.n + 1, sizeof(*g->disks));
	for (size_t i = 0; i < disks.n; i++) {
		if ((rc = vi_grow_parse_disk(disks.items[i], &g->disks[i])) < 0)
			return rc;
		g->ndisks++;
	}
	g->no_fs = no_fs;
	if (!check && !g->cpus.given && !g->memory.given && !g->ndisks && !g->cpu_quota.given &&
	    !g->max_cpus.given && !g->max_memory.given)
		return vi_error(VI_EUSAGE, "nothing to change: give --cpus, --memory, --disk, "
					   "--cpu-quota, --max-cpus or --max-memory (or --check)");
	return 0;
}

static const char *sz(uint64_t b, char *buf, size_t len)
{
	return vi_format_size(b, buf, len);
}

static const char *quota_str(unsigned q, char *buf, size_t len)
{
	if (!q)
		snprintf(buf, len, "none");
	else
		snprintf(buf, len, "%u%%", q);
	return buf;
}

static struct json_object *change(uint64_t from, uint64_t to)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "from", json_object_new_int64((int64_t)from));
	json_object_object_add(o, "to", json_object_new_int64((int64_t)to));
	return o;
}

static bool changes_anything(const struct vi_grow_plan *p)
{
	bool any = p->cpus_to != p->cpus_from || p->memory_to != p->memory_from ||
		   p->max_cpus_to != p->max_cpus_from || p->max_memory_to != p->max_memory_from ||
		   p->quota_to != p->quota_from;

	for (size_t i = 0; i < p->ndisks; i++)
		any |= p->disks[i].to != p->disks[i].from;
	return any;
}

static void report_json(const char *name, const struct vi_grow_plan *p,
			const struct vi_grow_result *r)
{
	struct json_object *doc = vi_json_doc(), *o;

	json_object_object_add(doc, "name", vi_json_str(name));
	json_object_object_add(doc, "live", json_object_new_boolean(p->live));
	o = change(p->cpus_from, p->cpus_to);
	if (r->guest_cpus)
		json_object_object_add(o, "guest", json_object_new_int64(r->guest_cpus));
	json_object_object_add(o, "max", json_object_new_int64(p->max_cpus_to));
	json_object_object_add(doc, "cpus", o);
	o = change(p->memory_from, p->memory_to);
	if (r->guest_memory)
		json_object_object_add(o, "guest", json_object_new_int64((int64_t)r->guest_memory));
	json_object_object_add(o, "max", json_object_new_int64((int64_t)p->max_memory_to));
	json_object_object_add(doc, "memory", o);
	struct json_object *arr = json_object_new_array();
	for (size_t i = 0; i < p->ndisks; i++) {
		o = change(p->disks[i].from, p->disks[i].to);
		json_object_object_add(o, "disk", vi_json_str(p->disks[i].name));
		json_object_array_add(arr, o);
	}
	json_object_object_add(doc, "disks", arr);
	json_object_object_add(doc, "cpu_quota", change(p->quota_from, p->quota_to));
	if (r->fs_type[0] || r->fs_note[0]) {
		o = json_object_new_object();
		json_object_object_add(o, "type", vi_json_str(r->fs_type[0] ? r->fs_type : NULL));
		json_object_object_add(o, "from", json_object_new_int64((int64_t)r->fs_from));
		json_object_object_add(o, "to", json_object_new_int64((int64_t)r->fs_to));
		json_object_object_add(o, "note", vi_json_str(r->fs_note[0] ? r->fs_note : NULL));
		json_object_object_add(doc, "filesystem", o);
	}
	json_object_object_add(doc, "ms", vi_json_ms(r->ms));
	vi_json_print(doc);
}

static void report_text(const char *name, const struct vi_grow_plan *p,
			const struct vi_grow_result *r)
{
	char a[32], b[32], c[32];

	if (!changes_anything(p) && !r->fs_type[0] && !r->fs_note[0]) {
		printf("VM '%s': nothing to change\n", name);
		return;
	}
	printf("VM '%s' %s in %.0f ms:\n", name,
	       p->live ? "grew live" : "changed in its definition (stopped)", r->ms);
	if (p->cpus_to != p->cpus_from || p->max_cpus_to != p->max_cpus_from) {
		printf("  cpus      %u -> %u", p->cpus_from, p->cpus_to);
		if (p->max_cpus_to != p->max_cpus_from)
			printf(", at most %u -> %u", p->max_cpus_from, p->max_cpus_to);
		if (r->guest_cpus)
			printf(" (the guest has %u)", r->guest_cpus);
		printf("\n");
	}
	if (p->memory_to != p->memory_from || p->max_memory_to != p->max_memory_from) {
		printf("  memory    %s -> %s", sz(p->memory_from, a, sizeof(a)),
		       sz(p->memory_to, b, sizeof(b)));
		if (p->max_memory_to != p->max_memory_from)
			printf(", at most %s -> %s", sz(p->max_memory_from, a, sizeof(a)),
			       sz(p->max_memory_to, b, sizeof(b)));
		if (r->guest_memory)
			printf(" (the guest has %s)", sz(r->guest_memory, c, sizeof(c)));
		printf("\n");
	}
	for (size_t i = 0; i < p->ndisks; i++)
		if (p->disks[i].to != p->disks[i].from)
			printf("  disk %-4s %s -> %s\n", p->disks[i].name,
			       sz(p->disks[i].from, a, sizeof(a)), sz(p->disks[i].to, b, sizeof(b)));
	if (p->quota_to != p->quota_from)
		printf("  cpu quota %s -> %s\n", quota_str(p->quota_from, a, sizeof(a)),
		       quota_str(p->quota_to, b, sizeof(b)));
	if (r->fs_type[0] && r->fs_to)
		printf("  file system %s %s -> %s\n", r->fs_type, sz(r->fs_from, a, sizeof(a)),
		       sz(r->fs_to, b, sizeof(b)));
	if (r->fs_note[0])
		printf("  file system: %s\n", r->fs_note);
}

/* Host room: online CPUs and available memory, from this machine. */
static void host_room(unsigned *ncpu, uint64_t *avail, uint64_t *total)
{
	FILE *f = fopen("/proc/meminfo", "r");
	char line[128];
	unsigned long long kb;

	*ncpu = (unsigned)sysconf(_SC_NPROCESSORS_ONLN);
	*avail = *total = 0;
	while (f && fgets(line, sizeof(line), f)) {
		if (sscanf(line, "MemAvailable: %llu kB", &kb) == 1)
			*avail = kb * 1024;
		else if (sscanf(line, "MemTotal: %llu kB", &kb) == 1)
			*total = kb * 1024;
	}
	if (f)
		fclose(f);
}

static void check_line(struct json_object *arr, const char *what, bool ok, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void check_line(struct json_object *arr, const char *what, bool ok, const char *fmt, ...)
{
	va_list ap;
	char *text;

	va_start(ap, fmt);
	text = xvasprintf(fmt, ap);
	va_end(ap);
	if (arr) {
		struct json_object *o = json_object_new_object();
		json_object_object_add(o, "check", vi_json_str(what));
		json_object_object_add(o, "ok", json_object_new_boolean(ok));
		json_object_object_add(o, "detail", vi_json_str(text));
		json_object_array_add(arr, o);
	} else {
		char *safe = vi_escape_controls(text);
		printf("%-15s %-3s %s\n", what, ok ? "ok" : "no", safe);
		free(safe);
	}
	free(text);
}

/* What the guest does with a device live growth needs. */
static const char *driver_str(int d, char *buf, size_t len)
{
	snprintf(buf, len, "%s",
		 d == VI_HV_DRIVER_ACTIVE	? "driven"
		 : d == VI_HV_DRIVER_NONE	? "without a driver"
		 : d == VI_HV_DRIVER_NO_DEVICE ? "absent"
					       : "unknown");
	return buf;
}

static bool has(const struct vi_machine *m, bool method)
{
	return m->hv && method;
}

/* --check: the limits, one line each; the verdict on what was asked. */
static int run_check(struct vi_machine *m, const struct vi_grow *g)
{
	struct json_object *arr = ctx.json ? json_object_new_array() : NULL;
	struct vi_grow_plan p;
	struct vi_hv_state st = { .struct_size = sizeof(st) };
	unsigned ncpu, maxc = m->def.max_cpus ? m->def.max_cpus : m->def.cpus;
	uint64_t avail, total, maxm = m->def.max_memory ? m->def.max_memory : m->def.memory;
	char a[32], b[32], c[32];
	int rc;

	vi_machine_state(m, &st);
	vi_error_clear();
	bool live = vi_hv_state_active(st.state);
	const struct vi_hv_ops *o = m->hv ? &m->hv->ops : NULL;
	host_room(&ncpu, &avail, &total);
	check_line(arr, "cpus", true, "%u, at most %u (max_cpus, set at creation)%s", m->def.cpus,
		   maxc, live && maxc == m->def.cpus ? ": no room to grow live" : "");
	check_line(arr, "memory", true, "%s, at most %s (max_memory, set at creation)",
		   sz(m->def.memory, a, sizeof(a)), sz(maxm, b, sizeof(b)));
	check_line(arr, "cpu-hotplug", has(m, o && o->set_vcpus), "backend '%s' %s", m->def.hv,
		   o && o->set_vcpus ? "adds and removes vCPUs live" : "cannot change vCPUs live");
	check_line(arr, "memory-hotplug", has(m, o && o->set_memory), "backend '%s' %s",
		   m->def.hv,
		   o && o->set_memory ? "changes memory live" : "cannot change memory live");
	check_line(arr, "disk-resize", has(m, o && o->resize_disk), "backend '%s' %s", m->def.hv,
		   o && o->resize_disk ? "grows disks live" : "cannot grow disks live");
	check_line(arr, "cpu-quota", has(m, o && o->set_cpu_quota), "%s%s",
		   m->def.cpu_quota ? quota_str(m->def.cpu_quota, c, sizeof(c)) : "no quota",
		   o && o->set_cpu_quota ? "" : "; the backend has no CPU quota");
	if (live && o && o->grow_fs) {
		struct vi_hv_fs_info fs;
		if (vi_hv_grow_fs(m->hv, &m->view.vm, 0, VI_HV_GROW_FS_CHECK, &fs) == 0)
			check_line(arr, "filesystem", true, "%s %s on %s, %s: grows online",
				   fs.type, sz(fs.size_before, a, sizeof(a)), fs.device,
				   fs.mountpoint);
		else
			check_line(arr, "filesystem", false, "%s", vi_error_message());
		vi_error_clear();
	}
	if (live && o && o->stats) {
		struct vi_hv_stats stats = { .struct_size = sizeof(stats) };
		if (vi_hv_stats(m->hv, &m->view.vm, &stats) == 0 &&
		    (stats.cpu_hotplug_driver || stats.memory_driver || stats.balloon_driver)) {
			char cpu[32], mem[32], bal[32];
			bool ok = stats.cpu_hotplug_driver != VI_HV_DRIVER_NONE &&
				  stats.memory_driver != VI_HV_DRIVER_NONE;
			check_line(arr, "guest", ok, "CPU hotplug %s, memory hotplug %s, balloon %s",
				   driver_str(stats.cpu_hotplug_driver, cpu, sizeof(cpu)),
				   driver_str(stats.memory_driver, mem, sizeof(mem)),
				   driver_str(stats.balloon_driver, bal, sizeof(bal)));
		}
		vi_error_clear();
	}
	check_line(arr, "host", maxc <= ncpu && maxm <= total,
		   "%u CPUs, %s of %s memory available", ncpu,
		   vi_format_human(avail, a, sizeof(a)), vi_format_human(total, b, sizeof(b)));
	rc = vi_grow_plan(m, g, &p);
	if (rc == 0) {
		for (size_t i = 0; i < p.ndisks; i++)
			check_line(arr, p.disks[i].name, true, "%s -> %s",
				   sz(p.disks[i].from, a, sizeof(a)), sz(p.disks[i].to, b, sizeof(b)));
		check_line(arr, "request", true, "%s",
			   changes_anything(&p) ? (p.live ? "can be applied live"
							  : "can be applied to the definition")
						: "nothing to change");
		vi_grow_plan_release(&p);
	} else {
		check_line(arr, "request", false, "%s", vi_error_message());
	}
	if (arr) {
		struct json_object *doc = vi_json_doc();
		json_object_object_add(doc, "name", vi_json_str(m->def.name));
		json_object_object_add(doc, "ok", json_object_new_boolean(rc == 0));
		json_object_object_add(doc, "checks", arr);
		vi_json_print(doc);
	}
	if (rc < 0) {
		/* Said on its line already: the status tells the rest. */
		ctx.exit_status = -rc;
		vi_error_clear();
	}
	return 0;
}

int cmd_grow(int argc, char **argv)
{
	struct vi_machine m;
	struct vi_grow g;
	struct vi_grow_plan p;
	struct vi_grow_result r;
	int rc;
	(void)argc;

	if ((rc = parse_request(&g)) < 0)
		goto out_req;
	if ((rc = vi_machine_open(&ctx.store, &ctx.plugins, argv[0], ctx.connect, false, &m)) < 0)
		goto out_req;
	if (check) {
		rc = run_check(&m, &g);
		goto out;
	}
	if ((rc = vi_grow_plan(&m, &g, &p)) < 0)
		goto out;
	rc = vi_grow_apply(&ctx.store, &m, &p, &r);
	if (rc == 0 && ctx.json)
		report_json(argv[0], &p, &r);
	else if (rc == 0 && !ctx.quiet)
		report_text(argv[0], &p, &r);
	vi_grow_plan_release(&p);
out:
	vi_machine_release(&m);
out_req:
	vi_grow_release(&g);
	return rc;
}
