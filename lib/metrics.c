/* Metrics: the table of the figures' names and units. */
#include "metrics.h"

#include <string.h>

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
