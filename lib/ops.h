/* Operations: what vi does to machines, each from a spec and all or nothing.
 * A verb parses its arguments into a spec, calls one of these and reports;
 * policy actions call the same functions. Each operation either completes
 * or leaves the store and the backends as they were, through one rollback:
 * a machine that made it into the store is taken out again the way
 * vi_op_destroy() takes out any machine.
 *
 * The caller holds the locks the store asks for (the VM's, by name); the
 * operations take the layer index's lock themselves. Functions return 0 or a
 * negative VI_E* code after recording a message. */
#ifndef VI_OPS_H
#define VI_OPS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hv.h"
#include "machine.h"
#include "store.h"
#include "template.h"

struct vi_layer_index;

struct vi_create_spec {
	const char *name;
	const char *hv;      /* backend; NULL: the template's choice, else the best usable */
	const char *connect; /* backend URI, or NULL */
	/* A template (name, path or sha256:HEX) and its parameters "KEY=VALUE",
	 * built on demand with build's options; or NULL and a kernel or disks. */
	const char *template_ref;
	const char *const *sets;
	size_t nsets;
	const struct template_build_opts *build;
	uint64_t disk_size; /* grow the template's first disk to this (0: as built) */
	const char *kernel, *initrd, *cmdline, *guest_type;
	unsigned cpus, max_cpus;      /* 0: the template's, else 1 and cpus */
	uint64_t memory, max_memory;  /* 0: the template's, else the default and memory */
	const char *const *disks;     /* "FILE[,ro][,format=F]" */
	size_t ndisks;
	const char *const *nics;      /* "MODE[:SOURCE]" or "none"; none given: the template's,
				       * else a "user" NIC where the backend has one */
	size_t nnics;
	const char *const *forwards;  /* "[ADDR:]HOST:GUEST[/udp]" on the first "user" NIC */
	size_t nforwards;
	/* What the machine's seed hands its first boot: the login user (else the
	 * template's), files of public keys that may log in besides the store's,
	 * and the user's cloud-init user-data file. */
	const char *user;
	const char *const *ssh_keys;
	size_t nssh_keys;
	const char *user_data;
	const char *const *labels;    /* "KEY=VALUE" (lib/vm.h); a key given twice: the last */
	size_t nlabels;
	bool start;
};

/* Creates the VM spec describes, and starts it when spec->start. *m is the
 * new machine whenever it exists (m->dir set), and the caller releases it
 * either way; *ready_timeout is the template's readiness timeout in seconds
 * (0 if none). A VM that was made but did not start is kept, as a defined
 * domain that fails to start is: the error says so. */
int vi_op_create(struct vi_store *s, struct vi_hv_set *plugins, const struct vi_create_spec *spec,
		 struct vi_machine *m, unsigned *ready_timeout);

struct vi_clone_spec {
	const char *source;
	const char *connect;
	const char *const *names; /* the clones to make */
	size_t n;
	bool full;  /* standalone copies instead of overlays on shared layers */
	bool start;
	/* "FROM=TO": a NIC whose source (a network, bridge or TAP device) is FROM
	 * has TO in the clones. */
	const char *const *networks;
	size_t nnetworks;
	/* Label changes of the clones, as vi_vm_label_apply() takes them. */
	const char *const *labels;
	size_t nlabels;
};

/* Makes spec->n clones of spec->source, all or none: the source's disks are
 * frozen once (while it runs, if it runs) and each clone gets overlays on
 * them, or copies. On success clones[0..n) are their definitions (release
 * each with vi_vm_release()). Killed part way, the clones made so far are
 * taken out again by the next command's vi_ops_recover(). */
int vi_op_clone(const struct vi_store *s, struct vi_hv_set *plugins,
		const struct vi_clone_spec *spec, struct vi_vm *clones);

/* Freezes every disk of m (while it runs, if it runs: the backend moves all
 * of them at one instant) and saves its definition: layers[i] gets the
 * backing path of disk i's frozen data (the caller frees each), what clones
 * and snapshots are made on. idx is the layer index the caller holds. With
 * paused_at, a running VM is paused once its new overlays are ready, just
 * before its disks move, and left paused for the caller, who resumes it
 * (*paused_at: when, vi_now_ms()); not on failure. A running VM whose disks
 * cannot move is "cannot VERB 'NAME' while it runs: ...". */
int vi_op_freeze(const struct vi_store *s, struct vi_machine *m, struct vi_layer_index *idx,
		 char **layers, double *paused_at, const char *verb);

enum {
	VI_OP_FORCE = 1 << 0, /* destroy: go on when the backend is missing or fails */
};

/* Stops m if it runs, forgets it on its backend and removes it from the
 * store; layers only it read go. m stays the caller's to release. */
int vi_op_destroy(const struct vi_store *s, struct vi_machine *m, unsigned flags);

/* Removes VM name from the store when its definition cannot even be read
 * (destroy --force): its directory, and its references to layers. Its
 * backend, unknown, is not asked. */
int vi_op_forget(const struct vi_store *s, const char *name);

/* Boots m, which must not be running; its console log starts afresh. */
int vi_op_start(struct vi_machine *m);
/* The port forwards of m, whose guest arrived running by a migration the
 * hypervisors made: their host ports checked here (automatic ones moved to a
 * free port, recorded), then set up live. */
int vi_op_forwards_arrived(struct vi_machine *m);
/* Stops m, which must be running: gracefully, pulling the plug after
 * timeout_ms, or at once with force. */
int vi_op_stop(struct vi_machine *m, bool force, unsigned timeout_ms);

/* Cleans what killed commands left in the store's staging areas: a VM
 * half-made (and its backend's definition of it) or half-removed, a clone
 * set, an image half-built or half-imported. Entries of commands still
 * running are left alone. */
void vi_ops_recover(const struct vi_store *s, struct vi_hv_set *plugins);

#endif
