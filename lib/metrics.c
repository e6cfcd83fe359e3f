/* Metrics: the figures of VMs and the host from backend counters and /proc,
 * rates from two samples. See metrics.h. */
#include "metrics.h"

#include "error.h"
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
	[VI_M_DISK_RD_BYTES] = { "disk.read", "bytes/s", false },
	[VI_M_DISK_WR_BYTES] = { "disk.write", "bytes/s", false },
	[VI_M_DISK_RD_OPS] = { "disk.read_ops", "ops/s", false },
	[VI_M_DISK_WR_OPS] = { "disk.write_ops", "ops/s", false },
	[VI_M_NET_RX_BYTES] = { "net.rx", "bytes/s", false },
	[VI_M_NET_TX_BYTES] = { "net.tx", "bytes/s", false },
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
		vi_format_size((uint64_t)llround(value), size, sizeof(size));
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
