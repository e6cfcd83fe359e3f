/* Snapshots: git's model for machines. A snapshot is the VM's disks frozen
 * into layers (read-only from then on) and, for a running or paused VM, its
 * memory and device state, all from one instant; each has a parent, so they
 * form a DAG, and the VM's definition records the one its current state
 * comes from (vm.yaml `snapshot:`, git's HEAD).
 *
 * On disk, vms/NAME/snapshots/SNAP/ holds meta.yaml (parent, time, message,
 * the VM's state then, each disk's frozen image), vm.yaml (the VM's
 * definition then) and, with memory, memory.state (the backend's save()).
 * A snapshot is written under a hidden name and renamed into place once
 * complete; the layer index learns of its references first (a crash leaves
 * a reference too many, never one too few). Checking out makes new overlays
 * on the snapshot's images and switches vm.yaml to them in one rename.
 *
 * The caller holds the VM's lock; these take the layer index's. Functions
 * return 0 or a negative VI_E* code after recording a message. */
#ifndef VI_SNAPSHOT_H
#define VI_SNAPSHOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "machine.h"
#include "store.h"
#include "vm.h"

struct vi_snapshot_disk {
	char *backing; /* absolute path of the frozen image the disk reads */
	char *layer;   /* its layer id when that image is a layer, else NULL */
	bool readonly; /* shared as it is */
	int format;    /* VI_DISK_* of backing, for read-only disks */
};

struct vi_snapshot {
	char *vm;
	char *name;
	char *parent;   /* NULL for a root */
	char *message;  /* may be NULL */
	char *state;    /* the VM's then: "running", "paused" or "stopped" */
	bool memory;    /* holds memory.state: checkout resumes the guest */
	char *memory_id; /* that file as written: "inode size ctime"; NULL if unknown */
	bool automatic; /* made by checkout to keep what it replaced */
	time_t created;
	uint64_t size;  /* bytes on disk it alone holds: its new layers and memory */
	struct vi_snapshot_disk *disks;
	size_t ndisks;
	struct vi_vm def; /* the VM's definition then */
};

struct vi_snapshot_spec {
	const char *name;    /* NULL: a short generated one */
	const char *message; /* may be NULL */
	bool disk_only;      /* no memory even when the VM runs */
	bool automatic;
	double paused_ms;    /* out: how long the guest was paused for it (0 if not) */
};

/* Takes a snapshot of m, which may run: the guest is paused only while its
 * disks move and its memory is written. *name gets its name (caller frees).
 * m->def is updated (its disks' layers, its snapshot). */
int vi_snapshot_create(const struct vi_store *s, struct vi_machine *m,
		       struct vi_snapshot_spec *spec, char **name);

/* Returns m to snapshot `name`: disks as they were then and, when it holds
 * memory, the guest running (or paused) from that instant. Unless discard,
 * the state it replaces becomes an automatic snapshot first (*saved gets its
 * name, or NULL when there was nothing to keep). m is reopened afterwards. */
int vi_snapshot_checkout(const struct vi_store *s, struct vi_hv_set *plugins,
			 struct vi_machine *m, const char *name, bool discard, char **saved);

/* Deletes snapshot `name` of m: its memory goes, and its layers merge into
 * what reads them where that keeps every other snapshot and the current
 * state as they are; refused (VI_ESTATE, naming it) while a clone reads one
 * of its layers. Its children take its parent. */
int vi_snapshot_delete(const struct vi_store *s, struct vi_machine *m, const char *name);

/* Loads one snapshot of VM vm (VI_ENOTFOUND naming both when missing). */
int vi_snapshot_load(const struct vi_store *s, const char *vm, const char *name,
		     struct vi_snapshot *snap);
/* Every snapshot of VM vm, oldest first. */
int vi_snapshot_list(const struct vi_store *s, const char *vm, struct vi_snapshot **snaps,
		     size_t *n);
void vi_snapshot_release(struct vi_snapshot *snap);
void vi_snapshots_free(struct vi_snapshot *snaps, size_t n);

/* Splits "VM@SNAP": *vm and *snap are malloc'd; *snap is NULL without '@'. */
void vi_snapshot_ref_split(const char *ref, char **vm, char **snap);

#endif
