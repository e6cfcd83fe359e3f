/* Metrics: the figures of VMs and the host from backend counters and /proc,
 * rates from two samples. See metrics.h. */
#include "metrics.h"

#include "error.h"
#include "log.h"
#include "output.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

const struct vi_metric_info vi_metric_table[VI_M_COUNT] = {
	[VI_M_STATE] = { "state", "", false },
	[VI_M_CPU_UTIL] = { "cpu.util", "%", false },
	[VI_M_CPUS] = { "cpus", "", false },
	[VI_M_MAX_CPUS] = { "max_cpus", "", false },
	[VI_M_MEMORY] = { "memory", "bytes", false },
	[VI_M_MAX_MEMORY] = { "max_memory", "bytes", false },
	[VI_M_MEM_USED] = { "mem.used", "bytes", false },
	[VI_M_MEM_AVAILABLE] = { "mem.available", "bytes", false },
	[VI_M_DISK_RD_BYTES] = { "disk.read.bytes", "bytes/s", false },
	[VI_M_DISK_WR_BYTES] = { "disk.write.bytes", "bytes/s", false },
	[VI_M_DISK_RD_OPS] = { "disk.read.ops", "ops/s", false },
	[VI_M_DISK_WR_OPS] = { "disk.write.ops", "ops/s", false },
	[VI_M_NET_RX_BYTES] = { "net.rx.bytes", "bytes/s", false },
	[VI_M_NET_TX_BYTES] = { "net.tx.bytes", "bytes/s", false },
	[VI_M_UPTIME] = { "uptime", "s", false },
	[VI_M_HOST_CPU_UTIL] = { "host.cpu.util", "%", true },
	[VI_M_HOST_MEM_FREE] = { "host.mem.free", "bytes", true },
	[VI_M_HOST_MEM_TOTAL] = { "host.mem.total", "bytes", true },
	[VI_M_HOST_LOAD] = { "host.load", "", true },
};

int vi_metric_find(const char *name)
{
	for (int i = 0; i < VI_M_COUNT; i++)
		if (!strcmp(vi_metric_table[i].name, name))
			return i;
	return -1;
}

static double now_s(void)
{
	return vi_now_ms() / 1000;
}

int vi_metrics_sample_vm(struct vi_machine *m, struct vi_vm_sample *out)
{
	struct vi_hv_state st = { .struct_size = sizeof(st), .state = VI_HV_UNKNOWN };
	struct vi_hv_stats s;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	out->at = now_s();
	out->cpus = m->def.cpus;
	out->max_cpus = m->view.vm.max_cpus;
	out->memory = m->def.memory;
	out->max_memory = m->view.vm.max_memory;
	if (m->hv && (rc = vi_hv_state(m->hv, &m->view.vm, &st)) < 0)
		st.state = VI_HV_UNKNOWN;
	out->state = st.state;
	out->started_at = st.started_at;
	if (rc < 0 || !vi_hv_state_active(st.state))
		return rc;
	/* A backend without statistics, or a VM gone in between, leaves them out. */
	if (vi_hv_stats(m->hv, &m->view.vm, &s) < 0) {
		vi_error_clear();
		return 0;
	}
	out->at = now_s();
	out->have_stats = true;
	if (s.vcpus)
		out->cpus = s.vcpus;
	if (s.memory)
		out->memory = s.memory;
	out->cpu_time_ns = s.cpu_time_ns;
	out->mem_used = s.memory_used;
	out->mem_available = s.mem_available;
	out->disk_rd_bytes = s.disk_rd_bytes;
	out->disk_wr_bytes = s.disk_wr_bytes;
	out->disk_rd_ops = s.disk_rd_ops;
	out->disk_wr_ops = s.disk_wr_ops;
	out->net_rx_bytes = s.net_rx_bytes;
	out->net_tx_bytes = s.net_tx_bytes;
	return 0;
}

/* Per second from a counter in two samples dt seconds apart; NAN when it went back. */
static double rate(uint64_t before, uint64_t after, double dt)
{
	return after < before ? NAN : (double)(after - before) / dt;
}

static double known(uint64_t v)
{
	return v ? (double)v : NAN;
}

void vi_metrics_vm(const struct vi_vm_sample *prev, const struct vi_vm_sample *now,
		   double out[VI_M_COUNT])
{
	bool rates = prev && prev->have_stats && now->have_stats &&
		     prev->started_at == now->started_at && now->at > prev->at;
	double dt = rates ? now->at - prev->at : 0;

	for (int i = 0; i < VI_M_COUNT; i++)
		if (!vi_metric_table[i].host)
			out[i] = NAN;
	out[VI_M_STATE] = now->state;
	out[VI_M_CPUS] = now->cpus;
	out[VI_M_MAX_CPUS] = now->max_cpus;
	out[VI_M_MEMORY] = (double)now->memory;
	out[VI_M_MAX_MEMORY] = (double)now->max_memory;
	if (now->started_at && vi_hv_state_active(now->state)) {
		int64_t up = (int64_t)time(NULL) - now->started_at;
		out[VI_M_UPTIME] = up > 0 ? (double)up : 0;
	}
	if (!now->have_stats)
		return;
	out[VI_M_MEM_USED] = known(now->mem_used);
	out[VI_M_MEM_AVAILABLE] = known(now->mem_available);
	if (!rates)
		return;
	if (now->cpus) {
		double u = rate(prev->cpu_time_ns, now->cpu_time_ns, dt) / 1e9 / now->cpus * 100;
		/* The clock of the vCPU threads and ours are read apart: keep it in range. */
		out[VI_M_CPU_UTIL] = u > 100 ? 100 : u;
	}
	out[VI_M_DISK_RD_BYTES] = rate(prev->disk_rd_bytes, now->disk_rd_bytes, dt);
	out[VI_M_DISK_WR_BYTES] = rate(prev->disk_wr_bytes, now->disk_wr_bytes, dt);
	out[VI_M_DISK_RD_OPS] = rate(prev->disk_rd_ops, now->disk_rd_ops, dt);
	out[VI_M_DISK_WR_OPS] = rate(prev->disk_wr_ops, now->disk_wr_ops, dt);
	out[VI_M_NET_RX_BYTES] = rate(prev->net_rx_bytes, now->net_rx_bytes, dt);
	out[VI_M_NET_TX_BYTES] = rate(prev->net_tx_bytes, now->net_tx_bytes, dt);
}

/* The whole of a small /proc file, NUL-terminated, in buf. */
static int read_proc(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "r");
	size_t n;

	if (!f)
		return vi_error(VI_EFAIL, "cannot open '%s': %s", path, strerror(errno));
	n = fread(buf, 1, len - 1, f);
	buf[n] = 0;
	fclose(f);
	return 0;
}

/* The value of "Key:   N kB" in /proc/meminfo text, in bytes; 0 when absent. */
static uint64_t meminfo_bytes(const char *text, const char *key)
{
	const char *p = strstr(text, key);

	return p ? strtoull(p + strlen(key), NULL, 10) * 1024 : 0;
}

int vi_metrics_sample_host(struct vi_host_sample *out)
{
	static char buf[16384];
	uint64_t v[8] = { 0 };
	char *line;

	memset(out, 0, sizeof(*out));
	out->at = now_s();
	if (read_proc("/proc/stat", buf, sizeof(buf)) < 0)
		return -VI_EFAIL;
	/* cpu  user nice system idle iowait irq softirq steal (guest time is in user) */
	if (sscanf(buf, "cpu %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64 " %" SCNu64
		   " %" SCNu64 " %" SCNu64, &v[0], &v[1], &v[2], &v[3], &v[4],
		   &v[5], &v[6], &v[7]) < 4)
		return vi_error(VI_EFAIL, "cannot read '/proc/stat': no cpu line");
	for (int i = 0; i < 8; i++)
		out->cpu_total += v[i];
	out->cpu_busy = out->cpu_total - v[3] - v[4];
	for (line = buf; (line = strstr(line, "\ncpu")); line++)
		out->ncpus++;
	if (read_proc("/proc/meminfo", buf, sizeof(buf)) < 0)
		return -VI_EFAIL;
	out->mem_total = meminfo_bytes(buf, "MemTotal:");
	out->mem_available = meminfo_bytes(buf, "MemAvailable:");
	if (read_proc("/proc/loadavg", buf, sizeof(buf)) < 0)
		return -VI_EFAIL;
	out->load1 = strtod(buf, NULL);
	return 0;
}

void vi_metrics_host(const struct vi_host_sample *prev, const struct vi_host_sample *now,
		     double out[VI_M_COUNT])
{
	out[VI_M_HOST_CPU_UTIL] = NAN;
	if (prev && now->cpu_total > prev->cpu_total && now->cpu_busy >= prev->cpu_busy)
		out[VI_M_HOST_CPU_UTIL] = (double)(now->cpu_busy - prev->cpu_busy) /
					  (double)(now->cpu_total - prev->cpu_total) * 100;
	out[VI_M_HOST_MEM_FREE] = known(now->mem_available);
	out[VI_M_HOST_MEM_TOTAL] = known(now->mem_total);
	out[VI_M_HOST_LOAD] = now->load1;
}

/* "45s", "3m 20s", "2h 5m", "4d 3h". */
static void format_duration(double s, char *buf, size_t len)
{
	long long n = (long long)s;

	if (n >= 86400)
		snprintf(buf, len, "%lldd %lldh", n / 86400, n % 86400 / 3600);
	else if (n >= 3600)
		snprintf(buf, len, "%lldh %lldm", n / 3600, n % 3600 / 60);
	else if (n >= 60)
		snprintf(buf, len, "%lldm %llds", n / 60, n % 60);
	else
		snprintf(buf, len, "%llds", n);
}

const char *vi_metric_format(int metric, double value, char *buf, size_t len)
{
	const char *unit = vi_metric_table[metric].unit;

	if (metric == VI_M_STATE)
		snprintf(buf, len, "%s", vi_hv_state_name(isnan(value) ? VI_HV_UNKNOWN : (int)value));
	else if (isnan(value) || value < 0)
		snprintf(buf, len, "-");
	else if (!strcmp(unit, "%"))
		snprintf(buf, len, "%.1f%%", value);
	else if (!strcmp(unit, "bytes") || !strcmp(unit, "bytes/s")) {
		char size[32];
		/* Exact when short ("64M"), else rounded ("23.1G"). */
		if (strlen(vi_format_size((uint64_t)llround(value), size, sizeof(size))) > 5)
			vi_format_human((uint64_t)llround(value), size, sizeof(size));
		snprintf(buf, len, "%s%s", size, unit[5] ? "/s" : "");
	} else if (!strcmp(unit, "ops/s"))
		snprintf(buf, len, value < 10 && value != 0 ? "%.1f/s" : "%.0f/s", value);
	else if (!strcmp(unit, "s"))
		format_duration(value, buf, len);
	else if (metric == VI_M_HOST_LOAD)
		snprintf(buf, len, "%.2f", value);
	else
		snprintf(buf, len, "%.0f", value);
	return buf;
}

int vi_metrics_view_open(struct vi_metrics_view *v, const struct vi_store *s,
			 struct vi_hv_set *plugins, char *const *names, size_t n,
			 const char *uri)
{
	char **all = NULL;
	size_t nall = 0;
	int rc = 0;

	memset(v, 0, sizeof(*v));
	if (!n && (rc = vi_store_list_vms(s, &all, &nall)) < 0)
		return rc;
	size_t want = n ? n : nall;
	v->vms = xcalloc(want ? want : 1, sizeof(*v->vms));
	for (size_t i = 0; i < want; i++) {
		rc = vi_machine_open(s, plugins, n ? names[i] : all[i], uri, uri != NULL,
				     &v->vms[v->n]);
		if (rc < 0 && n)
			break;
		if (rc < 0) {
			/* One unreadable definition must not hide the others. */
			vi_warn("%s", vi_error_message());
			vi_error_clear();
			rc = 0;
			continue;
		}
		if (v->vms[v->n].hv_problem)
			vi_warn("state unknown: %s", v->vms[v->n].hv_problem);
		v->n++;
	}
	vi_store_names_free(all, nall);
	if (rc < 0) {
		vi_metrics_view_release(v);
		return rc;
	}
	v->prev = xcalloc(v->n ? v->n : 1, sizeof(*v->prev));
	v->now = xcalloc(v->n ? v->n : 1, sizeof(*v->now));
	v->values = xcalloc(v->n ? v->n : 1, sizeof(*v->values));
	return 0;
}

void vi_metrics_view_sample(struct vi_metrics_view *v)
{
	bool had = v->host_sampled;

	v->host_prev = v->host_now;
	v->host_sampled = vi_metrics_sample_host(&v->host_now) == 0;
	vi_error_clear();
	for (int i = 0; i < VI_M_COUNT; i++)
		v->host[i] = NAN;
	if (v->host_sampled)
		vi_metrics_host(had ? &v->host_prev : NULL, &v->host_now, v->host);
	for (size_t i = 0; i < v->n; i++) {
		bool first = v->now[i].at == 0;

		v->prev[i] = v->now[i];
		/* A backend that fails leaves the state unknown: said by the state. */
		vi_metrics_sample_vm(&v->vms[i], &v->now[i]);
		vi_error_clear();
		vi_metrics_vm(first ? NULL : &v->prev[i], &v->now[i], v->values[i]);
	}
}

void vi_metrics_view_release(struct vi_metrics_view *v)
{
	for (size_t i = 0; i < v->n; i++)
		vi_machine_release(&v->vms[i]);
	free(v->vms);
	free(v->prev);
	free(v->now);
	free(v->values);
	memset(v, 0, sizeof(*v));
}

static const struct {
	const char *header;
	int metric;
} columns[] = {
	{ "STATE", VI_M_STATE },	     { "CPUS", VI_M_CPUS },
	{ "CPU%", VI_M_CPU_UTIL },	     { "MEM", VI_M_MEMORY },
	{ "MEM-USED", VI_M_MEM_USED },	     { "DISK-R", VI_M_DISK_RD_BYTES },
	{ "DISK-W", VI_M_DISK_WR_BYTES },   { "NET-RX", VI_M_NET_RX_BYTES },
	{ "NET-TX", VI_M_NET_TX_BYTES },    { "UPTIME", VI_M_UPTIME },
};
#define NCOLUMNS (sizeof(columns) / sizeof(columns[0]))

void vi_metrics_table(const struct vi_metrics_view *v, const size_t *order, struct vi_table *t)
{
	const char *header[NCOLUMNS + 1] = { "NAME" };
	char cells[NCOLUMNS][32];
	const char *row[NCOLUMNS + 1];

	for (size_t c = 0; c < NCOLUMNS; c++)
		header[c + 1] = columns[c].header;
	vi_table_init(t, NCOLUMNS + 1, header);
	for (size_t k = 0; k < v->n; k++) {
		size_t i = order ? order[k] : k;

		row[0] = v->vms[i].def.name;
		for (size_t c = 0; c < NCOLUMNS; c++)
			row[c + 1] = vi_metric_format(columns[c].metric,
						      v->values[i][columns[c].metric], cells[c],
						      sizeof(cells[c]));
		vi_table_add(t, row);
	}
}

const char *vi_metrics_host_line(const double host[VI_M_COUNT], char *buf, size_t len)
{
	char cpu[32], free_[32], total[32], load[32];

	snprintf(buf, len, "host: cpu %s, memory %s free of %s, load %s",
		 vi_metric_format(VI_M_HOST_CPU_UTIL, host[VI_M_HOST_CPU_UTIL], cpu, sizeof(cpu)),
		 vi_metric_format(VI_M_HOST_MEM_FREE, host[VI_M_HOST_MEM_FREE], free_,
				  sizeof(free_)),
		 vi_metric_format(VI_M_HOST_MEM_TOTAL, host[VI_M_HOST_MEM_TOTAL], total,
				  sizeof(total)),
		 vi_metric_format(VI_M_HOST_LOAD, host[VI_M_HOST_LOAD], load, sizeof(load)));
	return buf;
}
