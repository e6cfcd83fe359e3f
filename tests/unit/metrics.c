/* Unit tests: metric names, rates from two samples, unknown figures, formatting. */
#include "metrics.h"
#include "tap.h"

#include <math.h>
#include <time.h>

/* A running VM with 2 vCPUs, as sampled at `at` seconds. */
static struct vi_vm_sample running(double at)
{
	return (struct vi_vm_sample){ .at = at, .state = VI_HV_RUNNING, .started_at = 1000,
				      .cpus = 2, .max_cpus = 4, .memory = 256 << 20,
				      .max_memory = 1u << 30, .have_stats = true };
}

static void names(void)
{
	is_int(vi_metric_find("cpu.util"), VI_M_CPU_UTIL, "cpu.util is found");
	is_int(vi_metric_find("host.mem.free"), VI_M_HOST_MEM_FREE, "host.mem.free is found");
	is_int(vi_metric_find("cpu"), -1, "a name that is no metric is -1");
	for (int i = 0; i < VI_M_COUNT; i++)
		if (!vi_metric_table[i].name || vi_metric_find(vi_metric_table[i].name) != i ||
		    !vi_metric_table[i].unit ||
		    vi_metric_table[i].host != !strncmp(vi_metric_table[i].name, "host.", 5)) {
			ok(0, "metric %d has a name, a unit, and host names start with host.", i);
			return;
		}
	ok(1, "every metric has its own name, a unit, and host names start with host.");
}

static void rates(void)
{
	struct vi_vm_sample a = running(10), b = running(12);
	double out[VI_M_COUNT];

	a.cpu_time_ns = 5000000000ull;
	b.cpu_time_ns = 6000000000ull; /* 1 s of CPU over 2 s on 2 vCPUs: 25% */
	a.disk_wr_bytes = 1000;
	b.disk_wr_bytes = 5000;
	a.disk_rd_ops = 7;
	b.disk_rd_ops = 17;
	b.net_rx_bytes = 600;
	b.mem_used = 100 << 20;
	vi_metrics_vm(&a, &b, out);
	ok(fabs(out[VI_M_CPU_UTIL] - 25) < 1e-9, "cpu.util is the share of its vCPUs (%g)",
	   out[VI_M_CPU_UTIL]);
	ok(out[VI_M_DISK_WR_BYTES] == 2000, "disk writes per second");
	ok(out[VI_M_DISK_RD_OPS] == 5, "disk reads per second");
	ok(out[VI_M_NET_RX_BYTES] == 300, "bytes received per second");
	ok(out[VI_M_NET_TX_BYTES] == 0, "nothing sent is 0, not unknown");
	ok(out[VI_M_MEM_USED] == 100 << 20, "mem.used as the guest reports it");
	ok(isnan(out[VI_M_MEM_AVAILABLE]), "mem.available unknown when the guest does not say");
	ok(out[VI_M_STATE] == VI_HV_RUNNING && out[VI_M_CPUS] == 2 && out[VI_M_MAX_CPUS] == 4 &&
		   out[VI_M_MEMORY] == 256 << 20 && out[VI_M_MAX_MEMORY] == 1u << 30,
	   "state, cpus and memory come from the sample");

	b.cpu_time_ns = a.cpu_time_ns + 9000000000ull;
	vi_metrics_vm(&a, &b, out);
	ok(out[VI_M_CPU_UTIL] == 100, "cpu.util never passes 100");
}

static void unknown(void)
{
	struct vi_vm_sample a = running(10), b = running(12), stopped = { .at = 12,
									   .state = VI_HV_STOPPED,
									   .cpus = 1 };
	double out[VI_M_COUNT];

	b.cpu_time_ns = 1000;
	vi_metrics_vm(NULL, &b, out);
	ok(isnan(out[VI_M_CPU_UTIL]) && isnan(out[VI_M_DISK_RD_BYTES]), "no previous sample: no rates");
	ok(out[VI_M_STATE] == VI_HV_RUNNING, "but the state");

	b.started_at = 2000;
	vi_metrics_vm(&a, &b, out);
	ok(isnan(out[VI_M_CPU_UTIL]) && isnan(out[VI_M_NET_TX_BYTES]),
	   "another run of the VM: no rates");

	b.started_at = a.started_at;
	a.disk_wr_bytes = 10;
	vi_metrics_vm(&a, &b, out);
	ok(isnan(out[VI_M_DISK_WR_BYTES]) && out[VI_M_CPU_UTIL] >= 0,
	   "a counter that went back is unknown, the others are not");

	vi_metrics_vm(&a, &stopped, out);
	ok(isnan(out[VI_M_CPU_UTIL]) && isnan(out[VI_M_MEM_USED]) && isnan(out[VI_M_UPTIME]),
	   "a stopped VM has no cpu.util, mem.used or uptime");
	ok(out[VI_M_STATE] == VI_HV_STOPPED && out[VI_M_CPUS] == 1, "but its state and cpus");

	b.at = a.at;
	vi_metrics_vm(&a, &b, out);
	ok(isnan(out[VI_M_CPU_UTIL]), "two samples of one instant give no rate");
}

static void host(void)
{
	struct vi_host_sample a = { .at = 1, .cpu_busy = 100, .cpu_total = 1000,
				    .mem_available = 2ull << 30, .mem_total = 8ull << 30,
				    .load1 = 0.5 },
			      b = a;
	double out[VI_M_COUNT];

	out[VI_M_CPU_UTIL] = 42;
	b.cpu_busy = 400;
	b.cpu_total = 2000;
	vi_metrics_host(&a, &b, out);
	ok(out[VI_M_HOST_CPU_UTIL] == 30, "host.cpu.util from the busy share of the jiffies");
	ok(out[VI_M_HOST_MEM_FREE] == 2ull << 30 && out[VI_M_HOST_MEM_TOTAL] == 8ull << 30,
	   "host memory");
	ok(out[VI_M_HOST_LOAD] == 0.5, "host load");
	ok(out[VI_M_CPU_UTIL] == 42, "the VM's entries are left alone");
	vi_metrics_host(NULL, &b, out);
	ok(isnan(out[VI_M_HOST_CPU_UTIL]), "no previous host sample: host.cpu.util unknown");

	ok(vi_metrics_sample_host(&a) == 0 && a.ncpus >= 1 && a.mem_total > 0 &&
		   a.mem_available <= a.mem_total && a.cpu_busy <= a.cpu_total,
	   "this host's /proc reads (%u CPUs)", a.ncpus);
}

static void format(void)
{
	char buf[32];

	is_str(vi_metric_format(VI_M_CPU_UTIL, 93.54, buf, sizeof(buf)), "93.5%", "percent");
	is_str(vi_metric_format(VI_M_CPU_UTIL, NAN, buf, sizeof(buf)), "-", "unknown is -");
	is_str(vi_metric_format(VI_M_MEMORY, 256 << 20, buf, sizeof(buf)), "256M", "bytes");
	is_str(vi_metric_format(VI_M_NET_RX_BYTES, 340 * 1024, buf, sizeof(buf)), "340K/s",
	       "bytes per second");
	is_str(vi_metric_format(VI_M_DISK_WR_BYTES, 0, buf, sizeof(buf)), "0/s", "no traffic");
	is_str(vi_metric_format(VI_M_HOST_MEM_FREE, 24261928.0 * 1024, buf, sizeof(buf)), "23.1G",
	       "a long size is rounded");
	is_str(vi_metric_format(VI_M_DISK_WR_OPS, 120.4, buf, sizeof(buf)), "120/s", "operations");
	is_str(vi_metric_format(VI_M_DISK_WR_OPS, 2.5, buf, sizeof(buf)), "2.5/s",
	       "a few operations keep a decimal");
	is_str(vi_metric_format(VI_M_STATE, VI_HV_RUNNING, buf, sizeof(buf)), "running", "state");
	is_str(vi_metric_format(VI_M_UPTIME, 200, buf, sizeof(buf)), "3m 20s", "uptime");
	is_str(vi_metric_format(VI_M_HOST_LOAD, 1.5, buf, sizeof(buf)), "1.50", "load");
	is_str(vi_metric_format(VI_M_CPUS, 4, buf, sizeof(buf)), "4", "a count");
}

int main(void)
{
	names();
	rates();
	unknown();
	host();
	format();
	return done();
}
