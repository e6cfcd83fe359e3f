/* Metrics: the figures that vi stats, vi top and the policy engine read, one
 * layer for all three. A sample holds a VM's (or the host's) counters at one
 * instant; rates come from two samples of the same VM. Every figure is a
 * double, NAN when unknown (a stopped VM's cpu.util, a guest that reports no
 * balloon statistics); state is the enum vi_hv_run_state as a number.
 *
 * Use: vi_metrics_sample_vm() twice some time apart, then vi_metrics_vm() on
 * the pair fills the table; the host likewise. */
#ifndef VI_METRICS_H
#define VI_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "machine.h"

enum vi_metric {
	/* Per VM. */
	VI_M_STATE,          /* enum vi_hv_run_state */
	VI_M_CPU_UTIL,       /* percent of its vCPUs, 0..100 */
	VI_M_CPUS,           /* vCPUs it has now */
	VI_M_MAX_CPUS,
	VI_M_MEMORY,         /* bytes it has now */
	VI_M_MAX_MEMORY,
	VI_M_MEM_USED,       /* bytes, as the guest reports them (balloon statistics) */
	VI_M_MEM_AVAILABLE,  /* bytes, likewise */
	VI_M_DISK_RD_BYTES,  /* per second, all its disks */
	VI_M_DISK_WR_BYTES,
	VI_M_DISK_RD_OPS,    /* operations per second */
	VI_M_DISK_WR_OPS,
	VI_M_NET_RX_BYTES,   /* per second, all its NICs */
	VI_M_NET_TX_BYTES,
	VI_M_UPTIME,         /* seconds since it started */
	/* Per host. */
	VI_M_HOST_CPU_UTIL,  /* percent of all host CPUs */
	VI_M_HOST_MEM_FREE,  /* bytes available (MemAvailable) */
	VI_M_HOST_MEM_TOTAL,
	VI_M_HOST_LOAD,      /* the 1-minute load average */
	VI_M_COUNT
};

struct vi_metric_info {
	const char *name; /* "cpu.util", "host.mem.free": what policies and --json use */
	const char *unit; /* "%", "bytes", "bytes/s", "ops/s", "s", "" */
	bool host;        /* a figure of the host, not of a VM */
};

extern const struct vi_metric_info vi_metric_table[VI_M_COUNT];

/* The metric named name, or -1. */
int vi_metric_find(const char *name);

/* A VM's counters at one instant. */
struct vi_vm_sample {
	double at;           /* seconds, CLOCK_MONOTONIC */
	int state;           /* enum vi_hv_run_state */
	int64_t started_at;  /* seconds since the epoch, 0 when unknown */
	unsigned cpus, max_cpus;
	uint64_t memory, max_memory;
	bool have_stats;     /* the backend answered stats (the VM runs) */
	uint64_t cpu_time_ns;
	uint64_t mem_used, mem_available;   /* 0: the guest does not report them */
	uint64_t disk_rd_bytes, disk_wr_bytes, disk_rd_ops, disk_wr_ops;
	uint64_t net_rx_bytes, net_tx_bytes;
};

/* Reads m's state and, when it runs, its counters. Only a backend that fails
 * outright is an error; a VM without stats is a sample without them. */
int vi_metrics_sample_vm(struct vi_machine *m, struct vi_vm_sample *out);

/* The figures of a VM from two samples (prev may be NULL, or of another run
 * of the VM: rates are then NAN). */
void vi_metrics_vm(const struct vi_vm_sample *prev, const struct vi_vm_sample *now,
		   double out[VI_M_COUNT]);

/* The host's counters at one instant, from /proc. */
struct vi_host_sample {
	double at;
	uint64_t cpu_busy, cpu_total; /* jiffies, all CPUs */
	unsigned ncpus;
	uint64_t mem_available, mem_total;
	double load1;
};

int vi_metrics_sample_host(struct vi_host_sample *out);
/* Fills only the host's entries of out (prev may be NULL: cpu.util is NAN). */
void vi_metrics_host(const struct vi_host_sample *prev, const struct vi_host_sample *now,
		     double out[VI_M_COUNT]);

/* A figure as a person reads it: "93.5%", "1.2G", "340K/s", "running", "-"
 * for NAN. */
const char *vi_metric_format(int metric, double value, char *buf, size_t len);

/* The VMs a view shows (vi stats, vi top) with their last two samples and
 * figures, and the host's. */
struct vi_metrics_view {
	size_t n;
	struct vi_machine *vms;
	struct vi_vm_sample *prev, *now;
	double (*values)[VI_M_COUNT]; /* each VM's figures; the host's entries unset */
	struct vi_host_sample host_prev, host_now;
	bool host_sampled;           /* host_now holds a sample */
	double host[VI_M_COUNT];     /* the host's figures; the VM's entries unset */
};

/* Opens the VMs named (none: every VM in the store, those that cannot be
 * read told on stderr and left out), at connection uri (NULL: each VM's
 * own). A name that is not a VM is an error; nothing stays open then. */
int vi_metrics_view_open(struct vi_metrics_view *v, const struct vi_store *s,
			 struct vi_hv_set *plugins, char *const *names, size_t n,
			 const char *uri);
/* Samples every VM and the host once more; the figures then come from this
 * sample and the one before. */
void vi_metrics_view_sample(struct vi_metrics_view *v);
void vi_metrics_view_release(struct vi_metrics_view *v);

/* The view as a table: NAME and the columns vi stats and vi top show, one
 * row per VM in the order given (NULL: the view's). t is the caller's to
 * print and release. */
struct vi_table;
void vi_metrics_table(const struct vi_metrics_view *v, const size_t *order, struct vi_table *t);
/* "host: cpu 3.2%, memory 20.1G free of 23.4G, load 0.52" */
const char *vi_metrics_host_line(const double host[VI_M_COUNT], char *buf, size_t len);

#endif
