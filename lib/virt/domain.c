/* The lifecycle methods hv-qemu and hv-xen share: a vi VM is one persistent
 * libvirt domain, found by its UUID (by name when it has none). */
#include "virt.h"
#include "error.h"
#include "image/image.h"
#include "log.h"
#include "util.h"

#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STOP_POLL_MS 50

/* 0 with *dom, 1 when there is no such domain (nothing recorded), or a
 * negative code. */
static int find_domain(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, virDomainPtr *dom)
{
	virConnectPtr conn;
	int rc = virt_connect(ctx, &conn);

	if (rc)
		return rc;
	*dom = vm->uuid ? virDomainLookupByUUIDString(conn, vm->uuid)
			: virDomainLookupByName(conn, vm->name);
	if (*dom)
		return 0;
	const virError *err = virGetLastError();
	if (err && err->code == VIR_ERR_NO_DOMAIN) {
		virResetLastError();
		return 1;
	}
	return virt_error("cannot look up '%s' on '%s'", vm->name, virt_uri(ctx));
}

int virt_lookup(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, virDomainPtr *dom)
{
	int rc = find_domain(ctx, vm, dom);

	if (rc == 1)
		return vi_error(VI_ENOTFOUND, "no domain '%s' on '%s'", vm->name, virt_uri(ctx));
	return rc;
}

/* A domain whose QEMU died without being asked (killed, out of memory) is shut
 * off for the reason "crashed": that is a crash to vi, not a stop. */
static int map_state(int s, int reason)
{
	switch (s) {
	case VIR_DOMAIN_RUNNING:
	case VIR_DOMAIN_BLOCKED:
		return VI_HV_RUNNING;
	case VIR_DOMAIN_PAUSED:
	case VIR_DOMAIN_PMSUSPENDED:
		return VI_HV_PAUSED;
	case VIR_DOMAIN_SHUTDOWN:
		return VI_HV_SHUTTING_DOWN;
	case VIR_DOMAIN_SHUTOFF:
		return reason == VIR_DOMAIN_SHUTOFF_CRASHED ? VI_HV_CRASHED : VI_HV_STOPPED;
	case VIR_DOMAIN_CRASHED:
		return VI_HV_CRASHED;
	default:
		return VI_HV_UNKNOWN;
	}
}

/* Our state of dom (enum vi_hv_run_state), or a negative code. */
static int dom_state(virDomainPtr dom, const struct vi_hv_vm *vm)
{
	int state, reason;

	if (virDomainGetState(dom, &state, &reason, 0) < 0)
		return virt_error("cannot get the state of '%s'", vm->name);
	return map_state(state, reason);
}

/* The state of dom (enum vi_hv_run_state) when it is active (running, paused
 * or shutting down) or, when !active, stopped; in the other state VI_ESTATE
 * with "'NAME' <refusal>". */
static int check_state(virDomainPtr dom, const struct vi_hv_vm *vm, bool active,
		       const char *refusal)
{
	int s = dom_state(dom, vm);

	if (s >= 0 && vi_hv_state_active(s) != active)
		return vi_error(VI_ESTATE, "'%s' %s", vm->name, refusal);
	return s;
}

/* vm's domain for a method that needs it in the state check_state() wants:
 * 0 with *dom (the caller frees it) and, if state is not NULL, *state. */
static int lookup_guarded(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, bool active,
			  const char *refusal, virDomainPtr *dom, int *state)
{
	int s, rc = virt_lookup(ctx, vm, dom);

	if (rc)
		return rc;
	s = check_state(*dom, vm, active, refusal);
	if (s < 0) {
		virDomainFree(*dom);
		return s;
	}
	if (state)
		*state = s;
	return 0;
}

static int check_file(const struct vi_hv_vm *vm, const char *what, const char *path)
{
	struct stat st;

	if (!path || !stat(path, &st))
		return 0;
	return vi_error_errno(errno == ENOENT ? VI_ENOTFOUND : VI_EFAIL, errno,
			      "cannot find %s '%s' of '%s'", what, path, vm->name);
}

/* Local files libvirt would only find missing once QEMU starts, with a less
 * direct message. Remote hosts have their own file systems. */
static int check_files(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm)
{
	int rc;

	if (!virt_is_local(ctx))
		return 0;
	rc = check_file(vm, "kernel", vm->kernel);
	if (!rc)
		rc = check_file(vm, "initrd", vm->initrd);
	for (size_t i = 0; !rc && i < vm->ndisks; i++)
		rc = check_file(vm, "disk", vm->disks[i]->path);
	return rc;
}

/* Another domain holding vm's name or UUID is a conflict; the same one is a
 * redefinition. */
static int check_conflict(struct vi_hv_ctx *ctx, virConnectPtr conn, const struct vi_hv_vm *vm)
{
	char uuid[VIR_UUID_STRING_BUFLEN] = "";
	virDomainPtr dom;
	int rc = 0;

	dom = virDomainLookupByName(conn, vm->name);
	if (dom) {
		if (virDomainGetUUIDString(dom, uuid) < 0)
			rc = virt_error("cannot query '%s'", vm->name);
		else if (vm->uuid && strcasecmp(uuid, vm->uuid))
			rc = vi_error(VI_ESTATE, "a domain named '%s' already exists on "
				      "'%s' (uuid %s)", vm->name, virt_uri(ctx), uuid);
		virDomainFree(dom);
		return rc;
	}
	if (!vm->uuid)
		return 0;
	dom = virDomainLookupByUUIDString(conn, vm->uuid);
	if (dom) {
		const char *other = virDomainGetName(dom);
		rc = vi_error(VI_ESTATE, "uuid %s of '%s' is taken by domain '%s' on '%s'",
			      vm->uuid, vm->name, other ? other : "?", virt_uri(ctx));
		virDomainFree(dom);
	}
	virResetLastError();
	return rc;
}

/* Defines (or redefines) vm's domain from xml. */
static int define_xml(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, const char *xml)
{
	virConnectPtr conn;
	virDomainPtr dom;
	int rc;

	/* The files are checked at start: a new VM's are still being staged. */
	rc = virt_connect(ctx, &conn);
	if (!rc)
		rc = check_conflict(ctx, conn, vm);
	if (!rc)
		rc = virt_networks_ready(ctx, vm, false);
	if (rc)
		return rc;
	/* No schema check (VIR_DOMAIN_DEFINE_VALIDATE): it costs libvirtd some
	 * 20 ms a domain, and every kind of XML written here passes
	 * virt-xml-validate in the tests. libvirt's parser still refuses what
	 * it cannot take, naming it. */
	dom = virDomainDefineXMLFlags(conn, xml, 0);
	if (!dom)
		return virt_error("cannot define '%s' on '%s'", vm->name, virt_uri(ctx));
	virDomainFree(dom);
	return 0;
}

int virt_define(struct vi_hv_ctx *ctx, const struct virt_guest *g, const struct vi_hv_vm *vm)
{
	char *xml = NULL;
	int rc = virt_domain_xml(g, vm, &xml);

	if (!rc)
		rc = define_xml(ctx, vm, xml);
	free(xml);
	return rc;
}

int virt_undefine_flags(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, unsigned flags)
{
	virDomainPtr dom;
	int rc = lookup_guarded(ctx, vm, false, "is running: stop it first", &dom, NULL);

	if (rc)
		return rc;
	if (virDomainUndefineFlags(dom, flags) < 0)
		rc = virt_error("cannot undefine '%s'", vm->name);
	virDomainFree(dom);
	return rc;
}

int virt_undefine(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm)
{
	return virt_undefine_flags(ctx, vm, VIR_DOMAIN_UNDEFINE_MANAGED_SAVE |
					    VIR_DOMAIN_UNDEFINE_NVRAM);
}

static bool has_forwards(const struct vi_hv_vm *vm)
{
	for (size_t i = 0; i < vm->nnics; i++)
		if (vm->nics[i]->nforwards)
			return true;
	return false;
}

/* Starts dom, which is stopped: booted afresh or, with state_path, restored
 * from that file with definition xml. A VM with forwards starts paused until
 * they are in place, so that its guest never runs without them; one that
 * cannot have them is stopped. With paused, it stays paused. */
static int launch(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, virDomainPtr dom,
		  const char *state_path, const char *xml, bool paused)
{
	bool hold = paused || has_forwards(vm);
	int rc = check_files(ctx, vm);

	if (!rc)
		rc = virt_networks_ready(ctx, vm, true);
	if (rc)
		return rc;
	if (state_path) {
		/* The image says whether its guest ran or was paused: we say. */
		unsigned flags = hold ? VIR_DOMAIN_SAVE_PAUSED : VIR_DOMAIN_SAVE_RUNNING;
		if (virDomainRestoreFlags(virDomainGetConnect(dom), state_path, xml, flags) < 0)
			return virt_error("cannot restore '%s' from '%s'", vm->name, state_path);
	} else if (virDomainCreateWithFlags(dom, hold ? VIR_DOMAIN_START_PAUSED : 0) < 0) {
		return virt_error("cannot start '%s'", vm->name);
	}
	if (hold && (rc = virt_forwards_start(dom, vm)) == 0 && !paused && virDomainResume(dom) < 0)
		rc = virt_error("cannot resume '%s' once its forwards are set up", vm->name);
	if (rc && virDomainDestroy(dom) < 0)
		vi_warn("cannot stop '%s', which failed to start", vm->name);
	return rc;
}

int virt_start(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm)
{
	virDomainPtr dom;
	int rc = lookup_guarded(ctx, vm, false, "is already running", &dom, NULL);

	if (rc)
		return rc;
	rc = launch(ctx, vm, dom, NULL, NULL, false);
	virDomainFree(dom);
	return rc;
}

/* Waits up to timeout_ms for dom to stop: 1 stopped, 0 still running, or a
 * negative code. */
static int wait_stopped(virDomainPtr dom, const struct vi_hv_vm *vm, unsigned timeout_ms)
{
	const struct timespec poll = { 0, STOP_POLL_MS * 1000000L };
	double start = vi_now_ms();

	for (;;) {
		int active = virDomainIsActive(dom);
		if (active < 0)
			return virt_error("cannot get the state of '%s'", vm->name);
		if (!active)
			return 1;
		if (vi_ms_since(start) >= timeout_ms)
			return 0;
		nanosleep(&poll, NULL);
	}
}

int virt_stop(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, unsigned flags,
	      unsigned timeout_ms)
{
	virDomainPtr dom;
	int rc = lookup_guarded(ctx, vm, true, "is not running", &dom, NULL);

	if (rc)
		return rc;
	if (!(flags & VI_HV_STOP_FORCE)) {
		if (virDomainShutdown(dom) < 0) {
			rc = virt_error("cannot shut down '%s'", vm->name);
			goto cleanup;
		}
		rc = wait_stopped(dom, vm, timeout_ms);
		if (rc) {
			rc = rc < 0 ? rc : 0;
			goto cleanup;
		}
		vi_warn("'%s' did not shut down within %u ms: forcing it off", vm->name,
			timeout_ms);
	}
	/* It may have stopped on its own since we looked. */
	if (virDomainDestroy(dom) < 0 && virDomainIsActive(dom) != 0)
		rc = virt_error("cannot stop '%s'", vm->name);
cleanup:
	virDomainFree(dom);
	return rc;
}

/* Pause and resume: the state each needs, and what to say otherwise. */
static int pause_resume(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, bool pause)
{
	virDomainPtr dom;
	int state, rc = lookup_guarded(ctx, vm, true, pause ? "is not running" : "is not paused",
				       &dom, &state);

	if (rc)
		return rc;
	if (pause && state != VI_HV_RUNNING)
		rc = vi_error(VI_ESTATE, "'%s' is %s", vm->name,
			      state == VI_HV_PAUSED ? "already paused" : "not running");
	else if (!pause && state != VI_HV_PAUSED)
		rc = vi_error(VI_ESTATE, "'%s' is not paused", vm->name);
	else if ((pause ? virDomainSuspend(dom) : virDomainResume(dom)) < 0)
		rc = virt_error("cannot %s '%s'", pause ? "pause" : "resume", vm->name);
	virDomainFree(dom);
	return rc;
}

int virt_pause(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm)
{
	return pause_resume(ctx, vm, true);
}

int virt_resume(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm)
{
	return pause_resume(ctx, vm, false);
}

int virt_state(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, struct vi_hv_state *out)
{
	virDomainPtr dom;
	int rc = find_domain(ctx, vm, &dom);

	if (rc < 0)
		return rc;
	out->pid = 0;
	out->started_at = 0;
	out->state = VI_HV_UNDEFINED;
	if (rc == 1)
		return 0;
	rc = dom_state(dom, vm);
	virDomainFree(dom);
	if (rc < 0)
		return rc;
	out->state = rc;
	return 0;
}

static uint64_t param_u64(const virTypedParameter *p)
{
	switch (p->type) {
	case VIR_TYPED_PARAM_INT:
		return p->value.i < 0 ? 0 : (uint64_t)p->value.i;
	case VIR_TYPED_PARAM_UINT:
		return p->value.ui;
	case VIR_TYPED_PARAM_LLONG:
		return p->value.l < 0 ? 0 : (uint64_t)p->value.l;
	case VIR_TYPED_PARAM_ULLONG:
		return p->value.ul;
	default:
		return 0;
	}
}

/* The VM that dom is, among vms: by UUID, or by name for a VM without one. */
static ssize_t match_domain(virDomainPtr dom, const struct vi_hv_vm *const *vms, size_t n)
{
	char uuid[VIR_UUID_STRING_BUFLEN];
	const char *name = virDomainGetName(dom);
	bool have_uuid = virDomainGetUUIDString(dom, uuid) == 0;

	for (size_t i = 0; i < n; i++)
		if (vms[i]->uuid ? have_uuid && !strcasecmp(vms[i]->uuid, uuid)
				 : name && !strcmp(vms[i]->name, name))
			return (ssize_t)i;
	return -1;
}

int virt_states(struct vi_hv_ctx *ctx, const struct vi_hv_vm *const *vms, size_t n,
		struct vi_hv_state *out)
{
	virConnectPtr conn;
	virDomainStatsRecordPtr *recs = NULL;
	int rc = virt_connect(ctx, &conn), nrecs;

	if (rc)
		return rc;
	for (size_t i = 0; i < n; i++)
		out[i].state = VI_HV_UNDEFINED;
	/* Every domain's state in one request. */
	nrecs = virConnectGetAllDomainStats(conn, VIR_DOMAIN_STATS_STATE, &recs, 0);
	if (nrecs >= 0) {
		for (int r = 0; r < nrecs; r++) {
			ssize_t i = match_domain(recs[r]->dom, vms, n);
			if (i < 0)
				continue;
			int state = -1, reason = 0;
			for (int p = 0; p < recs[r]->nparams; p++) {
				if (!strcmp(recs[r]->params[p].field, "state.state"))
					state = (int)param_u64(&recs[r]->params[p]);
				else if (!strcmp(recs[r]->params[p].field, "state.reason"))
					reason = (int)param_u64(&recs[r]->params[p]);
			}
			out[i].state = state < 0 ? VI_HV_UNKNOWN : map_state(state, reason);
		}
		virDomainStatsRecordListFree(recs);
		return 0;
	}
	/* A driver without domain statistics: each domain's state from the list. */
	virResetLastError();
	virDomainPtr *doms = NULL;
	int ndoms = virConnectListAllDomains(conn, &doms, 0);
	if (ndoms < 0)
		return virt_error("cannot list the domains on '%s'", virt_uri(ctx));
	for (int d = 0; d < ndoms; d++) {
		ssize_t i = match_domain(doms[d], vms, n);
		int state, reason;
		if (i >= 0)
			out[i].state = virDomainGetState(doms[d], &state, &reason, 0) < 0
					       ? VI_HV_UNKNOWN
					       : map_state(state, reason);
		virDomainFree(doms[d]);
	}
	free(doms);
	virResetLastError();
	return 0;
}

/* "prefix<digits>suffix", or exactly "prefix" when suffix is NULL. */
static bool stat_matches(const char *name, const char *prefix, const char *suffix)
{
	size_t lp = strlen(prefix), ln = strlen(name), ls;

	if (strncmp(name, prefix, lp))
		return false;
	if (!suffix)
		return ln == lp;
	ls = strlen(suffix);
	if (ln <= lp + ls || strcmp(name + ln - ls, suffix))
		return false;
	for (size_t i = lp; i < ln - ls; i++)
		if (name[i] < '0' || name[i] > '9')
			return false;
	return true;
}

/* libvirt's statistics we sum into ours (per-device ones over all devices). */
static const struct stat_field {
	const char *prefix, *suffix;
	size_t offset;
	uint64_t scale;
} stat_fields[] = {
	{ "cpu.time", NULL, offsetof(struct vi_hv_stats, cpu_time_ns), 1 },
	{ "balloon.current", NULL, offsetof(struct vi_hv_stats, memory), 1024 },
	{ "block.", ".rd.bytes", offsetof(struct vi_hv_stats, disk_rd_bytes), 1 },
	{ "block.", ".wr.bytes", offsetof(struct vi_hv_stats, disk_wr_bytes), 1 },
	{ "block.", ".rd.reqs", offsetof(struct vi_hv_stats, disk_rd_ops), 1 },
	{ "block.", ".wr.reqs", offsetof(struct vi_hv_stats, disk_wr_ops), 1 },
	{ "net.", ".rx.bytes", offsetof(struct vi_hv_stats, net_rx_bytes), 1 },
	{ "net.", ".tx.bytes", offsetof(struct vi_hv_stats, net_tx_bytes), 1 },
	{ "vcpu.", ".exits", offsetof(struct vi_hv_stats, exits), 1 },
};

int virt_stats(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, struct vi_hv_stats *out)
{
	virDomainPtr dom, doms[2] = { NULL, NULL };
	virDomainStatsRecordPtr *recs = NULL;
	uint64_t available = 0, unused = 0, usable = 0;
	int rc = virt_lookup(ctx, vm, &dom);

	if (rc)
		return rc;
	doms[0] = dom;
	if (virDomainListGetStats(doms, VIR_DOMAIN_STATS_CPU_TOTAL | VIR_DOMAIN_STATS_BALLOON |
					VIR_DOMAIN_STATS_VCPU | VIR_DOMAIN_STATS_INTERFACE |
					VIR_DOMAIN_STATS_BLOCK, &recs, 0) < 1) {
		rc = virt_error("cannot get the statistics of '%s'", vm->name);
		goto cleanup;
	}
	size_t size = out->struct_size ? out->struct_size : sizeof(*out);
	memset(out, 0, size);
	out->struct_size = size;
	for (int i = 0; i < recs[0]->nparams; i++) {
		const virTypedParameter *p = &recs[0]->params[i];

		if (!strcmp(p->field, "vcpu.current"))
			out->vcpus = (unsigned)param_u64(p);
		else if (!strcmp(p->field, "balloon.available"))
			available = param_u64(p);
		else if (!strcmp(p->field, "balloon.unused"))
			unused = param_u64(p);
		else if (!strcmp(p->field, "balloon.usable"))
			usable = param_u64(p);
		for (size_t f = 0; f < ARRAY_SIZE(stat_fields); f++) {
			const struct stat_field *sf = &stat_fields[f];
			if (sf->offset + sizeof(uint64_t) <= size &&
			    stat_matches(p->field, sf->prefix, sf->suffix))
				*(uint64_t *)((char *)out + sf->offset) +=
					param_u64(p) * sf->scale;
		}
	}
	/* Only a guest with a balloon driver reports these (KiB): available is its
	 * total, usable what it could still use without swapping (page cache
	 * included), unused what is free; a guest that gives no usable is judged by
	 * what is free. */
	if (!usable)
		usable = unused;
	if (available > usable)
		out->memory_used = (available - usable) * 1024;
	if (size >= offsetof(struct vi_hv_stats, mem_available) + sizeof(uint64_t))
		out->mem_available = usable * 1024;
cleanup:
	if (recs)
		virDomainStatsRecordListFree(recs);
	virDomainFree(dom);
	return rc;
}

/* Does dom have the guest agent's channel? */
static bool vm_has_agent(virDomainPtr dom)
{
	char *xml = virDomainGetXMLDesc(dom, 0), *v = NULL;
	bool has = false;

	if (xml && virt_xpath_string(xml, "the domain XML",
				     "string(boolean(/domain/devices/channel/target[@name='"
				     VIRT_AGENT_CHANNEL "']))", &v) == 0)
		has = !strcmp(v, "true");
	vi_error_clear();
	virResetLastError();
	free(v);
	free(xml);
	return has;
}

/* Live changes also go into the persistent definition, so that they last. */
static unsigned affect_flags(virDomainPtr dom)
{
	unsigned live = virDomainIsActive(dom) == 1 ? VIR_DOMAIN_AFFECT_LIVE : 0;

	return VIR_DOMAIN_AFFECT_CONFIG | live;
}

int virt_set_vcpus(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, unsigned n)
{
	virDomainPtr dom;
	int rc = virt_lookup(ctx, vm, &dom);

	if (rc)
		return rc;
	unsigned flags = affect_flags(dom);
	int before = flags & VIR_DOMAIN_AFFECT_LIVE ? virDomainGetVcpusFlags(dom, VIR_DOMAIN_AFFECT_LIVE)
						    : -1;

	if (virDomainSetVcpusFlags(dom, n, flags) < 0)
		rc = virt_error("cannot set '%s' to %u vCPUs", vm->name, n);
	/* A QEMU guest's new vCPUs come online through its agent. */
	else if (before >= 0 && n > (unsigned)before && vm_has_agent(dom))
		rc = virt_guest_vcpus_online(dom, vm, n);
	virResetLastError();
	virDomainFree(dom);
	return rc;
}

/* The running domain's memory as its definition has it: *max the current
 * maximum (boot memory and DIMMs), *hotplug_max what DIMMs may bring it to
 * (0: none). */
static int live_memory(virDomainPtr dom, const struct vi_hv_vm *vm, uint64_t *max,
		       uint64_t *hotplug_max)
{
	char *xml = virDomainGetXMLDesc(dom, 0), *v = NULL;
	const char *what = "the domain XML";
	uint64_t kib = 0;
	int rc;

	if (!xml)
		return virt_error("cannot read the definition of '%s'", vm->name);
	rc = virt_xpath_string(xml, what, "string(/domain/memory[@unit='KiB'])", &v);
	if (!rc)
		rc = vi_parse_uint(v, "memory in the domain XML", 1, UINT64_MAX / 1024, &kib);
	*max = kib * 1024;
	free(v);
	v = NULL;
	if (!rc)
		rc = virt_xpath_string(xml, what, "string(/domain/maxMemory[@unit='KiB'])", &v);
	*hotplug_max = 0;
	if (!rc && *v && vi_parse_uint(v, "maxMemory in the domain XML", 1, UINT64_MAX / 1024,
				       &kib) == 0)
		*hotplug_max = kib * 1024;
	free(v);
	free(xml);
	return rc;
}

/* Linux takes hot-added memory in blocks of 128 MiB (on x86-64). */
#define DIMM_ALIGN (128ull << 20)

/* A DIMM of `bytes` plugged into the running domain (and its definition). */
static int attach_dimm(virDomainPtr dom, const struct vi_hv_vm *vm, uint64_t bytes)
{
	char size[32];
	char *xml = xasprintf("<memory model='dimm'><target><size unit='KiB'>%llu</size>"
			      "<node>0</node></target></memory>",
			      (unsigned long long)(bytes / 1024));
	int rc = 0;

	if (virDomainAttachDeviceFlags(dom, xml, VIR_DOMAIN_AFFECT_LIVE |
						 VIR_DOMAIN_AFFECT_CONFIG) < 0)
		rc = virt_error("cannot plug %s of memory into '%s'",
				vi_format_size(bytes, size, sizeof(size)), vm->name);
	free(xml);
	return rc;
}

/* Within the memory the running guest has, the balloon; past it, a DIMM that
 * brings it there (rounded up to what Linux takes whole, within the
 * maximum), then the balloon for the rest. */
int virt_set_memory(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, uint64_t bytes)
{
	char size[32], max_size[32];
	uint64_t max = 0, hotplug_max = 0;
	virDomainPtr dom;
	unsigned flags;
	int rc = virt_lookup(ctx, vm, &dom);

	if (rc)
		return rc;
	flags = affect_flags(dom);
	if (flags & VIR_DOMAIN_AFFECT_LIVE)
		rc = live_memory(dom, vm, &max, &hotplug_max);
	if (!rc && (flags & VIR_DOMAIN_AFFECT_LIVE) && bytes > max) {
		if (bytes > hotplug_max) {
			rc = vi_error(VI_ESTATE,
				      "'%s' can have at most %s of memory while it runs (its "
				      "max_memory): stop it to raise that",
				      vm->name,
				      vi_format_size(hotplug_max > max ? hotplug_max : max, max_size,
						     sizeof(max_size)));
			goto cleanup;
		}
		uint64_t dimm = (bytes - max + DIMM_ALIGN - 1) / DIMM_ALIGN * DIMM_ALIGN;
		if (max + dimm > hotplug_max)
			dimm = (hotplug_max - max) & ~((2ull << 20) - 1);
		if (dimm < bytes - max) {
			rc = vi_error(VI_ESTATE, "'%s' has no room to plug %s of memory into",
				      vm->name, vi_format_size(bytes - max, size, sizeof(size)));
			goto cleanup;
		}
		rc = attach_dimm(dom, vm, dimm);
	}
	if (!rc && virDomainSetMemoryFlags(dom, (bytes + 1023) / 1024, flags) < 0)
		rc = virt_error("cannot set the memory of '%s' to %s", vm->name,
				vi_format_size(bytes, size, sizeof(size)));
cleanup:
	virDomainFree(dom);
	return rc;
}

/* A stopped domain's disk is its image file alone: it grows through lib/image. */
static int grow_image(const char *path, int format, uint64_t bytes)
{
	struct image *img;
	int ret = image_open(path, format, IMAGE_OPEN_WRITE, &img);

	if (ret == 0) {
		ret = image_resize(img, bytes);
		if (image_close(img) < 0 && ret == 0)
			ret = -vi_error_code();
	}
	return ret;
}

int virt_resize_disk(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, size_t disk,
		     uint64_t bytes)
{
	virDomainBlockInfo info;
	const char *path;
	virDomainPtr dom;
	int rc;

	if (disk >= vm->ndisks)
		return vi_error(VI_EUSAGE, "VM '%s' has no disk %zu", vm->name, disk);
	path = vm->disks[disk]->path;
	if (bytes > UINT64_MAX - 511)
		return vi_error(VI_EUSAGE, "%llu bytes is too large for a disk",
				(unsigned long long)bytes);
	bytes = (bytes + 511) / 512 * 512;
	if ((rc = virt_lookup(ctx, vm, &dom)))
		return rc;
	if (virDomainGetBlockInfo(dom, path, &info, 0) < 0) {
		rc = virt_error("cannot read the size of disk %zu of '%s'", disk, vm->name);
		goto cleanup;
	}
	if (bytes < info.capacity) {
		rc = vi_error(VI_EUSAGE, "disk %zu has %llu bytes: it does not shrink to %llu", disk,
			      (unsigned long long)info.capacity, (unsigned long long)bytes);
		goto cleanup;
	}
	if (bytes == info.capacity)
		goto cleanup;
	if (virDomainIsActive(dom) != 1)
		rc = grow_image(path, vm->disks[disk]->format, bytes);
	else if (virDomainBlockResize(dom, path, bytes, VIR_DOMAIN_BLOCK_RESIZE_BYTES) < 0)
		rc = virt_error("cannot resize disk %zu of '%s'", disk, vm->name);
cleanup:
	virDomainFree(dom);
	return rc;
}

/* The whole domain's share of host CPU time per 100 ms period: Xen's credit scheduler
 * takes it as its cap, in percent of one CPU already; QEMU as the global quota of the
 * domain's vCPU threads together, in microseconds, a negative one for no limit. */
int virt_set_cpu_quota(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, unsigned percent)
{
	virTypedParameterPtr params = NULL;
	int nparams = 0, maxparams = 0, rc;
	const char *type;
	virDomainPtr dom;

	if ((rc = virt_lookup(ctx, vm, &dom)))
		return rc;
	type = virConnectGetType(virDomainGetConnect(dom));
	if (type && !strcasecmp(type, "xen")) {
		rc = virTypedParamsAddUInt(&params, &nparams, &maxparams, VIR_DOMAIN_SCHEDULER_CAP,
					   percent);
	} else {
		rc = virTypedParamsAddULLong(&params, &nparams, &maxparams,
					     VIR_DOMAIN_SCHEDULER_GLOBAL_PERIOD, 100000);
		if (rc == 0)
			rc = virTypedParamsAddLLong(&params, &nparams, &maxparams,
						    VIR_DOMAIN_SCHEDULER_GLOBAL_QUOTA,
						    percent ? (long long)percent * 1000 : -1);
	}
	if (rc < 0 || virDomainSetSchedulerParametersFlags(dom, params, nparams,
							   affect_flags(dom)) < 0)
		rc = virt_error("cannot set the CPU quota of '%s' to %u%%", vm->name, percent);
	virTypedParamsFree(params, nparams);
	virDomainFree(dom);
	return rc;
}

int virt_switch_disks(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm,
		      const char *const *overlays)
{
	const unsigned flags = VIR_DOMAIN_SNAPSHOT_CREATE_DISK_ONLY |
			       VIR_DOMAIN_SNAPSHOT_CREATE_REUSE_EXT |
			       VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA |
			       VIR_DOMAIN_SNAPSHOT_CREATE_ATOMIC;
	virDomainSnapshotPtr snap;
	virDomainPtr dom;
	char *xml = NULL;
	bool any = false;
	int rc = virt_lookup(ctx, vm, &dom);

	if (rc)
		return rc;
	for (size_t i = 0; i < vm->ndisks; i++)
		any = any || overlays[i];
	/* libvirt refuses a snapshot of nothing: a VM without a writable disk
	 * (a kernel and initrd alone) has none to move. */
	if (any && (rc = virt_snapshot_xml(vm, overlays, NULL, &xml)) == 0) {
		snap = virDomainSnapshotCreateXML(dom, xml, flags);
		if (snap)
			virDomainSnapshotFree(snap);
		else
			rc = virt_error("cannot move the disks of '%s' onto new overlays",
					vm->name);
	}
	free(xml);
	virDomainFree(dom);
	return rc;
}

/* A memory-only external snapshot: libvirt pauses a running guest while its
 * memory goes to the file, then resumes it. Not
 * VIR_DOMAIN_SNAPSHOT_CREATE_LIVE, which writes while the guest runs: the
 * state would be that of the end of the write, not of the call (nor of the
 * disks the host just froze), and a guest that dirties memory faster than the
 * disk takes it would never finish. The pause lasts as long as the write: on
 * the test machines 0.15 to 0.4 s (QEMU's count; the call takes 0.3 to 0.6 s)
 * for a 256 MiB TCG guest with some 80 MiB in use, where the flag paused it
 * for some 15 ms.
 *
 * libvirt does not sync the file: we do, once the guest goes on, unless the
 * host will (VI_HV_SAVE_NOSYNC), and only on this host. A VM to be stopped is
 * held paused until its file is safely written, and goes on if it is not
 * (libvirt's HALT would stop it before). */
int virt_save(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, const char *path, unsigned flags)
{
	bool live = flags & VI_HV_SAVE_LIVE, local = virt_is_local(ctx), paused_here = false;
	virDomainSnapshotPtr snap;
	virDomainPtr dom;
	struct stat st;
	char *xml = NULL;
	int state, rc = lookup_guarded(ctx, vm, true, "is not running", &dom, &state);

	if (rc)
		return rc;
	/* libvirt would truncate a file that is there, even when it then fails. */
	if (local && lstat(path, &st) == 0)
		rc = vi_error(VI_ESTATE, "cannot save '%s' to '%s': the file exists", vm->name,
			      path);
	if (!rc)
		rc = virt_snapshot_xml(vm, NULL, path, &xml);
	if (rc)
		goto cleanup;
	if (!live && state != VI_HV_PAUSED) {
		if (virDomainSuspend(dom) < 0) {
			rc = virt_error("cannot pause '%s' to save it", vm->name);
			goto cleanup;
		}
		paused_here = true;
	}
	/* libvirtd writes the file itself, mode 0600, before QEMU (another user)
	 * gets its descriptor: QEMU needs no access to the directory. */
	snap = virDomainSnapshotCreateXML(dom, xml, VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA);
	if (snap)
		virDomainSnapshotFree(snap);
	else
		rc = virt_error("cannot save '%s' to '%s'", vm->name, path);
	if (!rc && local && !(flags & VI_HV_SAVE_NOSYNC))
		rc = vi_fsync_path(path);
	if (!rc && !live && virDomainDestroy(dom) < 0)
		rc = virt_error("cannot stop '%s' once it is saved", vm->name);
	if (rc && paused_here && virDomainResume(dom) < 0)
		vi_warn("cannot resume '%s', which failed to save", vm->name);
	if (rc && local && unlink(path) < 0 && errno != ENOENT)
		vi_warn("cannot remove '%s', which a failed save left: %s", path, strerror(errno));
cleanup:
	free(xml);
	virDomainFree(dom);
	return rc;
}

/* What a state file recorded that libvirt holds the restoring definition to
 * but vi's does not say: the machine type its QEMU gave the alias in ours
 * ("q35"), which a newer QEMU gives a newer one, and the guest's current
 * memory, which is what the balloon had reached at the save (all of it for a
 * guest without a balloon driver), not vm->memory, the balloon's target.
 * *machine is the caller's to free (empty when the file names none). */
static int read_saved(virConnectPtr conn, const struct vi_hv_vm *vm, const char *path,
		      char **machine, uint64_t *memory)
{
	const char *what = "the domain XML in the state file";
	char *xml = virDomainSaveImageGetXMLDesc(conn, path, 0), *kib = NULL;
	int rc;

	if (!xml)
		return virt_error("cannot restore '%s' from '%s'", vm->name, path);
	rc = virt_xpath_string(xml, what, "string(/domain/os/type/@machine)", machine);
	if (!rc)
		rc = virt_xpath_string(xml, what, "string(/domain/currentMemory[@unit='KiB'])",
				       &kib);
	if (!rc)
		rc = vi_parse_uint(kib, "memory size in the state file", 1, UINT64_MAX / 1024,
				   memory);
	if (!rc)
		*memory *= 1024;
	free(kib);
	free(xml);
	return rc;
}

/* The domain is defined afresh from vm, as at each start, and restored with
 * that definition but for what read_saved() takes from the image: vm's disks
 * (the host's new overlays), not the ones recorded in the image. libvirt
 * takes it when it describes the same machine as the image (devices, memory,
 * vCPUs, MAC addresses) and names what differs otherwise. A domain libvirt
 * lost is defined again. */
int virt_restore(struct vi_hv_ctx *ctx, const struct virt_guest *g, const struct vi_hv_vm *vm,
		 const char *path, unsigned flags)
{
	struct virt_guest saved_guest = *g;
	struct vi_hv_vm saved = *vm;
	virConnectPtr conn;
	virDomainPtr dom;
	char *xml = NULL, *saved_xml = NULL, *machine = NULL;
	int rc = find_domain(ctx, vm, &dom);

	if (rc == 0) {
		rc = check_state(dom, vm, false, "is already running");
		virDomainFree(dom);
	}
	if (rc < 0)
		return rc;
	rc = virt_is_local(ctx) ? check_file(vm, "state file", path) : 0;
	if (!rc)
		rc = virt_connect(ctx, &conn);
	if (!rc)
		rc = read_saved(conn, vm, path, &machine, &saved.memory);
	if (!rc && *machine)
		saved_guest.machine = machine;
	if (!rc)
		rc = virt_domain_xml(g, vm, &xml);
	if (!rc)
		rc = virt_domain_xml(&saved_guest, &saved, &saved_xml);
	if (!rc)
		rc = define_xml(ctx, vm, xml);
	if (!rc)
		rc = virt_lookup(ctx, vm, &dom);
	if (!rc) {
		rc = launch(ctx, vm, dom, path, saved_xml, flags & VI_HV_RUN_PAUSED);
		virDomainFree(dom);
	}
	free(xml);
	free(saved_xml);
	free(machine);
	return rc;
}
