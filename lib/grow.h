/* Live capacity: a VM's vCPUs, memory, disks and CPU quota changed while it
 * runs (through its backend) or in its definition while it is stopped. What
 * `vi grow` does, and what policies do through it.
 *
 * Use: fill a struct vi_grow from what was asked, vi_grow_plan() checks it all
 * against the VM and its backend before anything changes, vi_grow_apply() does
 * it. */
#ifndef VI_GROW_H
#define VI_GROW_H

#include <stdbool.h>
#include <stdint.h>

#include "machine.h"

/* An amount as asked: N, +N or -N. */
struct vi_grow_amount {
	bool given;
	int sign; /* 0: set to value; +1, -1: change by it */
	uint64_t value;
};

struct vi_grow_disk {
	char *name;  /* as given: "vda", "1", or the disk's path; NULL: the first */
	struct vi_grow_amount size;
};

struct vi_grow {
	struct vi_grow_amount cpus, memory, max_cpus, max_memory, cpu_quota;
	struct vi_grow_disk *disks;
	size_t ndisks;
	bool no_fs;
};

/* "N", "+N" or "-N"; a size ("512M", "+1G") when size, else a count or a
 * percentage ("50", "50%"). what names the option in errors. */
int vi_grow_parse_amount(const char *s, bool size, const char *what, struct vi_grow_amount *a);
/* "[DISK:]SIZE". */
int vi_grow_parse_disk(const char *spec, struct vi_grow_disk *d);
void vi_grow_release(struct vi_grow *g);

/* One disk's change. */
struct vi_grow_disk_plan {
	size_t index;
	char name[8]; /* vda, vdb... */
	uint64_t from, to;
};

struct vi_grow_plan {
	bool live; /* the VM runs (or is paused): changes go to its backend too */
	unsigned cpus_from, cpus_to, max_cpus_from, max_cpus_to;
	uint64_t memory_from, memory_to, max_memory_from, max_memory_to;
	unsigned quota_from, quota_to;
	bool quota_given;
	struct vi_grow_disk_plan *disks;
	size_t ndisks;
	bool grow_fs;
};

/* Checks g against m (its definition and backend, state as read) and fills p,
 * changing nothing: a bad amount or a disk that would shrink -VI_EUSAGE, past
 * a running VM's maximum -VI_ESTATE (naming the maximum and how to raise it),
 * a backend without the method -VI_EUNSUPPORTED. */
int vi_grow_plan(struct vi_machine *m, const struct vi_grow *g, struct vi_grow_plan *p);
void vi_grow_plan_release(struct vi_grow_plan *p);

/* What the guest sees afterwards, where its backend can tell; 0 when not. */
struct vi_grow_result {
	unsigned guest_cpus;
	uint64_t guest_memory;
	/* The root file system: its type, size before and after, and when it grows
	 * later (at the next boot) or not at all, why. */
	char fs_type[16];
	uint64_t fs_from, fs_to;
	char fs_note[160];
	double ms;
};

/* Applies p to m: live through the backend, then in the definition (saved
 * after each change that took, so a failure midway keeps what was done). */
int vi_grow_apply(const struct vi_store *s, struct vi_machine *m, const struct vi_grow_plan *p,
		  struct vi_grow_result *r);

/* At start: the root partition that a disk grown while the VM ran (or its
 * backend could not reach the guest's file system) left to grow, grown now
 * that no one has the disk open; the guest's boot grows its file system. */
int vi_grow_pending_partition(struct vi_machine *m);

/* A disk's name by index: vda, vdb, ... */
void vi_grow_disk_name(size_t i, char *buf, size_t len);

#endif
