/* A running guest moved to another libvirt host by libvirt itself: peer to
 * peer (this host's libvirtd connects to the other's), the writable disks
 * copied by libvirt's storage migration onto overlays the other host made,
 * the backing files already there; persistent there once it runs. The
 * source's domain stays defined, shut off, for the host to take out with
 * its record. */
#include "virt.h"
#include "error.h"
#include "log.h"
#include "util.h"

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define POLL_MS 200
/* Memory passes, or passes that shrink what is left by less than a tenth,
 * after which the guest outruns the link (as the native VMM judges it). */
#define MAX_ITERATIONS 30
#define MAX_STALLS     3

/* --- the destination's definition -------------------------------------------------- */

/* path under from, moved under to; NULL when it is not under from. */
static char *rehome(const char *path, const char *from, const char *to)
{
	size_t n = strlen(from);

	if (strncmp(path, from, n) || path[n] != '/')
		return NULL;
	return xasprintf("%s%s", to, path + n);
}

static void rehome_nodes(xmlNodePtr n, const char *from, const char *to, bool append)
{
	for (; n; n = n->next) {
		if (n->type == XML_TEXT_NODE && n->content) {
			char *v = rehome((const char *)n->content, from, to);
			if (v)
				xmlNodeSetContent(n, (const xmlChar *)v);
			free(v);
			continue;
		}
		if (n->type != XML_ELEMENT_NODE)
			continue;
		/* The console log there goes on from the copy vi sent. */
		if (append && !xmlStrcmp(n->name, (const xmlChar *)"log") &&
		    xmlHasProp(n, (const xmlChar *)"file"))
			xmlSetProp(n, (const xmlChar *)"append", (const xmlChar *)"on");
		for (xmlAttrPtr a = n->properties; a; a = a->next) {
			xmlChar *val = xmlNodeListGetString(n->doc, a->children, 1);
			char *v = val ? rehome((const char *)val, from, to) : NULL;
			if (v)
				xmlSetProp(n, a->name, (const xmlChar *)v);
			free(v);
			xmlFree(val);
		}
		rehome_nodes(n->children, from, to, append);
	}
}

/* The domain's migratable XML, live or (inactive) the one it boots with next,
 * with every path under this store moved under dest_home: the definitions the
 * other host runs it with and keeps. */
static int dest_xml(virDomainPtr dom, const struct vi_hv_vm *vm, const char *home,
		    const char *dest_home, bool inactive, char **out)
{
	char *xml = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_MIGRATABLE | VIR_DOMAIN_XML_SECURE |
						     (inactive ? VIR_DOMAIN_XML_INACTIVE : 0));
	xmlDocPtr doc;
	xmlChar *text = NULL;
	int len = 0;

	if (!xml)
		return virt_error("cannot read the definition of '%s'", vm->name);
	doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL,
			    XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	free(xml);
	if (!doc)
		return vi_error(VI_EFAIL, "cannot parse the definition of '%s'", vm->name);
	rehome_nodes(xmlDocGetRootElement(doc), home, dest_home ? dest_home : home, !inactive);
	xmlDocDumpMemory(doc, &text, &len);
	xmlFreeDoc(doc);
	if (!text)
		return vi_error(VI_EFAIL, "cannot write the definition of '%s'", vm->name);
	*out = xstrdup((const char *)text);
	xmlFree(text);
	return 0;
}

/* --- the job ----------------------------------------------------------------------- */

/* virDomainMigrateToURI3 blocks until the guest runs there or the job fails:
 * it runs on a thread of its own while this one reports and steers. */
struct job {
	virDomainPtr dom;
	const char *uri;
	virTypedParameterPtr params;
	int nparams;
	unsigned flags;
	atomic_int done;
	int rc; /* 0 or a negative VI_E* code, with msg */
	char *msg;
};

static void *job_run(void *opaque)
{
	struct job *j = opaque;

	if (virDomainMigrateToURI3(j->dom, j->uri, j->params, (unsigned)j->nparams, j->flags) < 0) {
		j->rc = virt_error("libvirt");
		j->msg = xstrdup(vi_error_message());
		vi_error_clear();
	}
	atomic_store(&j->done, 1);
	return NULL;
}

static uint64_t stat_u64(virTypedParameterPtr p, int n, const char *name)
{
	unsigned long long v = 0;

	return virTypedParamsGetULLong(p, n, name, &v) == 1 ? (uint64_t)v : 0;
}

/* The job's figures, as the native VMM reports them; false when no job runs. */
static bool job_progress(virDomainPtr dom, struct vi_hv_migrate_progress *p)
{
	virTypedParameterPtr params = NULL;
	int type = VIR_DOMAIN_JOB_NONE, n = 0, state = 0, reason = 0;

	if (virDomainGetJobStats(dom, &type, &params, &n, 0) < 0) {
		virResetLastError();
		return false;
	}
	memset(p, 0, sizeof(*p));
	p->struct_size = sizeof(*p);
	p->iteration = (unsigned)stat_u64(params, n, VIR_DOMAIN_JOB_MEMORY_ITERATION);
	p->sent = stat_u64(params, n, VIR_DOMAIN_JOB_DATA_PROCESSED);
	p->remaining = stat_u64(params, n, VIR_DOMAIN_JOB_DATA_REMAINING);
	p->dirty_rate = stat_u64(params, n, VIR_DOMAIN_JOB_MEMORY_DIRTY_RATE) *
			(stat_u64(params, n, VIR_DOMAIN_JOB_MEMORY_PAGE_SIZE) ?: 4096);
	p->bandwidth = stat_u64(params, n, VIR_DOMAIN_JOB_MEMORY_BPS) +
		       stat_u64(params, n, VIR_DOMAIN_JOB_DISK_BPS);
	p->phase = stat_u64(params, n, VIR_DOMAIN_JOB_DISK_REMAINING) && !p->iteration ? "disks"
												: "memory";
	if (virDomainGetState(dom, &state, &reason, 0) == 0 && state == VIR_DOMAIN_PAUSED)
		p->phase = "downtime";
	virResetLastError();
	virTypedParamsFree(params, n);
	return type != VIR_DOMAIN_JOB_NONE;
}

/* The completed job's figures into r, where libvirt kept them. */
static void job_result(virDomainPtr dom, struct vi_hv_migrate_result *r)
{
	virTypedParameterPtr params = NULL;
	int type = VIR_DOMAIN_JOB_NONE, n = 0;

	if (virDomainGetJobStats(dom, &type, &params, &n, VIR_DOMAIN_JOB_STATS_COMPLETED) < 0) {
		virResetLastError();
		return;
	}
	if (stat_u64(params, n, VIR_DOMAIN_JOB_TIME_ELAPSED))
		r->total_ms = (double)stat_u64(params, n, VIR_DOMAIN_JOB_TIME_ELAPSED);
	r->downtime_ms = (double)stat_u64(params, n, VIR_DOMAIN_JOB_DOWNTIME);
	if (stat_u64(params, n, VIR_DOMAIN_JOB_DATA_PROCESSED))
		r->bytes = stat_u64(params, n, VIR_DOMAIN_JOB_DATA_PROCESSED);
	r->disk_bytes = stat_u64(params, n, VIR_DOMAIN_JOB_DISK_PROCESSED);
	if (stat_u64(params, n, VIR_DOMAIN_JOB_MEMORY_ITERATION))
		r->iterations = (unsigned)stat_u64(params, n, VIR_DOMAIN_JOB_MEMORY_ITERATION);
	virTypedParamsFree(params, n);
}

/* What steers a running job: the downtime set once it runs, the timeout, and
 * a guest that outruns the link. */
struct steer {
	const struct vi_hv_migrate *m;
	double start;
	bool downtime_set, paused, aborted;
	unsigned last_iteration, stalls;
	uint64_t best;
	int rc;    /* why we aborted, */
	char *msg; /* in words */
};

static void steer(virDomainPtr dom, const struct vi_hv_vm *vm, struct steer *s,
		  const struct vi_hv_migrate_progress *p)
{
	const struct vi_hv_migrate *m = s->m;

	if (!s->downtime_set) {
		s->downtime_set = virDomainMigrateSetMaxDowntime(
					  dom, m->downtime_ms ? m->downtime_ms : 300, 0) == 0;
		virResetLastError();
	}
	if (s->aborted)
		return;
	if (m->timeout_s && vi_ms_since(s->start) >= m->timeout_s * 1000.0) {
		s->rc = vi_error(VI_ETIMEOUT, "the migration did not end within %u s", m->timeout_s);
		goto abort;
	}
	if (!p || p->iteration <= s->last_iteration || s->paused)
		return;
	/* A new pass over memory: is what is left shrinking? */
	s->last_iteration = p->iteration;
	s->stalls = p->remaining < s->best / 10 * 9 ? 0 : s->stalls + 1;
	if (p->remaining < s->best)
		s->best = p->remaining;
	if (s->stalls < MAX_STALLS && p->iteration < MAX_ITERATIONS)
		return;
	if (m->converge == VI_HV_CONVERGE_ABORT) {
		s->rc = vi_error(VI_ETIMEOUT,
				 "the guest dirties memory faster than the link can carry it");
		goto abort;
	}
	if (m->converge == VI_HV_CONVERGE_PAUSE) {
		/* The rest goes with the guest paused, as virsh's --timeout-suspend. */
		if (virDomainSuspend(dom) == 0)
			s->paused = true;
		else
			vi_warn("cannot pause '%s' to end its migration: %s", vm->name,
				virGetLastErrorMessage());
		virResetLastError();
	}
	return;
abort:
	/* Until the job runs there is none to abort: the next poll tries again. */
	if (!s->msg)
		s->msg = xstrdup(vi_error_message());
	if (virDomainAbortJob(dom) == 0)
		s->aborted = true;
	virResetLastError();
}

/* The disks libvirt copies, by target name from the definition xml: writable,
 * not on storage both hosts share. Returns how many. */
static int add_disks(const struct vi_hv_vm *vm, const struct vi_hv_migrate *m, const char *xml,
		     virTypedParameterPtr *params, int *n, int *max)
{
	int copied = 0;

	for (size_t i = 0; i < vm->ndisks; i++) {
		char expr[96], *target = NULL;
		if (vm->disks[i]->readonly || (i < 64 && (m->shared_disks >> i & 1)))
			continue;
		snprintf(expr, sizeof(expr), "string(/domain/devices/disk[%zu]/target/@dev)", i + 1);
		int rc = virt_xpath_string(xml, "the disks", expr, &target);
		if (rc == 0 && !*target)
			rc = vi_error(VI_EFAIL, "disk %zu of '%s' has no target", i, vm->name);
		if (rc == 0 && virTypedParamsAddString(params, n, max,
						       VIR_MIGRATE_PARAM_MIGRATE_DISKS, target) < 0)
			rc = virt_error("cannot list the disks of '%s'", vm->name);
		free(target);
		if (rc < 0)
			return rc;
		copied++;
	}
	return copied;
}

int virt_migrate_send(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm,
		      const struct vi_hv_migrate *m)
{
	struct vi_hv_migrate_result result = { .struct_size = sizeof(result) };
	struct job j = { .uri = m->dest_uri };
	struct steer s = { .m = m, .start = vi_now_ms(), .best = UINT64_MAX };
	virTypedParameterPtr params = NULL;
	int n = 0, max = 0, copied;
	char *xml = NULL, *persist = NULL, *type = NULL;
	pthread_t thread;
	int rc;

	if (!m->dest_uri)
		return vi_error(VI_EUSAGE, "no libvirt URI for the other host");
	if ((rc = virt_lookup(ctx, vm, &j.dom)) < 0)
		return rc;
	if ((rc = dest_xml(j.dom, vm, ctx->host->home, m->dest_home, false, &xml)) < 0 ||
	    (rc = dest_xml(j.dom, vm, ctx->host->home, m->dest_home, true, &persist)) < 0)
		goto out;
	if ((rc = virt_xpath_string(xml, "the definition", "string(/domain/@type)", &type)) < 0)
		goto out;
	bool xen = !strcmp(type, "xen");
	/* libxl takes only the definition it runs. */
	if (virTypedParamsAddString(&params, &n, &max, VIR_MIGRATE_PARAM_DEST_XML, xml) < 0 ||
	    (!xen && virTypedParamsAddString(&params, &n, &max, VIR_MIGRATE_PARAM_PERSIST_XML,
					     persist) < 0) ||
	    (m->bandwidth &&
	     virTypedParamsAddULLong(&params, &n, &max, VIR_MIGRATE_PARAM_BANDWIDTH,
				     (m->bandwidth + (1 << 20) - 1) >> 20) < 0)) {
		rc = virt_error("cannot describe the migration of '%s'", vm->name);
		goto out;
	}
	if ((copied = add_disks(vm, m, xml, &params, &n, &max)) < 0) {
		rc = copied;
		goto out;
	}
	j.params = params;
	j.nparams = n;
	j.flags = VIR_MIGRATE_LIVE | VIR_MIGRATE_PEER2PEER | VIR_MIGRATE_PERSIST_DEST;
	if (xen) {
		/* libxl migrates memory only, and takes none of the options below. */
		if (copied) {
			rc = vi_error(VI_EUNSUPPORTED,
				      "libxl cannot copy the disks of running '%s': stop it and "
				      "use --offline, or keep its disks where both hosts see them",
				      vm->name);
			goto out;
		}
		if (m->bandwidth) {
			rc = vi_error(VI_EUNSUPPORTED, "libxl takes no bandwidth limit");
			goto out;
		}
	} else {
		j.flags |= VIR_MIGRATE_ABORT_ON_ERROR;
		if (copied)
			j.flags |= VIR_MIGRATE_NON_SHARED_INC;
		/* Disks both hosts see at one path are the user's word for shared
		 * storage, which libvirt cannot always tell. */
		if (m->shared_disks)
			j.flags |= VIR_MIGRATE_UNSAFE;
		if (m->converge == VI_HV_CONVERGE_AUTO)
			j.flags |= VIR_MIGRATE_AUTO_CONVERGE;
	}
	if (pthread_create(&thread, NULL, job_run, &j)) {
		rc = vi_error(VI_EFAIL, "cannot start the migration of '%s'", vm->name);
		goto out;
	}
	while (!atomic_load(&j.done)) {
		struct vi_hv_migrate_progress p;
		bool running = job_progress(j.dom, &p);
		if (running && m->progress && !atomic_load(&j.done))
			m->progress(m->opaque, &p);
		if (running) {
			result.bytes = p.sent;
			result.iterations = p.iteration;
		}
		steer(j.dom, vm, &s, running ? &p : NULL);
		struct timespec ts = { 0, POLL_MS * 1000000L };
		nanosleep(&ts, NULL);
	}
	pthread_join(thread, NULL);
	result.total_ms = vi_ms_since(s.start);
	if (j.rc < 0) {
		/* Ours when we gave up, libvirt's otherwise. */
		rc = s.msg ? vi_error(-s.rc, "%s", s.msg)
			       : vi_error(-j.rc, "cannot move '%s' to '%s': %s", vm->name,
					  m->dest_uri, strchr(j.msg, ':') ? strchr(j.msg, ':') + 2 : j.msg);
		goto out;
	}
	/* A give-up that came too late to stop it: it ran there all the same. */
	vi_error_clear();
	job_result(j.dom, &result);
out:
	if (m->result) {
		size_t keep = m->result->struct_size < sizeof(result) ? m->result->struct_size
								       : sizeof(result);
		memcpy((char *)m->result + sizeof(size_t), (char *)&result + sizeof(size_t),
		       keep - sizeof(size_t));
	}
	virTypedParamsFree(params, n);
	virDomainFree(j.dom);
	free(j.msg);
	free(s.msg);
	free(type);
	free(persist);
	free(xml);
	return rc;
}

/* --- the checks -------------------------------------------------------------------- */

/* The <cpu> element of domain XML, as XML in *cpu; NULL when it has none. */
static int cpu_element(const char *xml, char **cpu)
{
	xmlDocPtr doc = xmlReadMemory(xml, (int)strlen(xml), "domain.xml", NULL,
				      XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	xmlBufferPtr buf;

	*cpu = NULL;
	if (!doc)
		return vi_error(VI_EFAIL, "cannot parse a domain definition");
	for (xmlNodePtr n = xmlDocGetRootElement(doc)->children; n; n = n->next) {
		if (n->type != XML_ELEMENT_NODE || xmlStrcmp(n->name, (const xmlChar *)"cpu"))
			continue;
		buf = xmlBufferCreate();
		if (xmlNodeDump(buf, doc, n, 0, 0) > 0)
			*cpu = xstrdup((const char *)xmlBufferContent(buf));
		xmlBufferFree(buf);
		break;
	}
	xmlFreeDoc(doc);
	return 0;
}

static const char *cpu_verdict(int r)
{
	switch (r) {
	case VIR_CPU_COMPARE_IDENTICAL:
		return "the guest's CPU is the host's there";
	case VIR_CPU_COMPARE_SUPERSET:
		return "the host there runs the guest's CPU";
	default:
		return "the host there cannot run the guest's CPU";
	}
}

int virt_migrate_check(struct vi_hv_ctx *ctx, const struct vi_hv_vm *vm, const char *dest_uri,
		       vi_hv_check_fn line, void *opaque)
{
	virDomainPtr dom;
	virConnectPtr dconn;
	char *xml = NULL, *cpu = NULL, *type = NULL, *detail;
	int rc = virt_lookup(ctx, vm, &dom);

	if (rc < 0)
		return rc;
	dconn = virConnectOpen(dest_uri);
	if (!dconn) {
		detail = xasprintf("libvirt there does not answer at %s: %s", dest_uri,
				   virGetLastErrorMessage());
		line(opaque, 0, "libvirt", detail);
		free(detail);
		virResetLastError();
		virDomainFree(dom);
		return 0;
	}
	char *host = virConnectGetHostname(dconn);
	detail = xasprintf("libvirt answers at %s (host %s)", dest_uri, host ? host : "?");
	line(opaque, 1, "libvirt", detail);
	free(detail);
	free(host);
	virResetLastError();
	/* The guest's CPU as the definition gives it, compared by the hypervisor
	 * there (a definition with no <cpu> runs on the hypervisor's default). */
	xml = virDomainGetXMLDesc(dom, VIR_DOMAIN_XML_MIGRATABLE);
	if (xml && virt_xpath_string(xml, "the CPU", "string(/domain/@type)", &type) == 0 &&
	    cpu_element(xml, &cpu) == 0 && cpu) {
		int r = virConnectCompareHypervisorCPU(dconn, NULL, NULL, NULL, type, cpu, 0);
		if (r < 0) {
			detail = xasprintf("libvirt there cannot compare the guest's CPU: %s",
					   virGetLastErrorMessage());
			line(opaque, 0, "cpu", detail);
			free(detail);
		} else {
			line(opaque, r != VIR_CPU_COMPARE_INCOMPATIBLE, "cpu", cpu_verdict(r));
		}
	} else if (xml) {
		line(opaque, 1, "cpu", "the guest has the hypervisor's default CPU");
	}
	vi_error_clear();
	virResetLastError();
	free(xml);
	free(cpu);
	free(type);
	virConnectClose(dconn);
	virDomainFree(dom);
	return 0;
}
