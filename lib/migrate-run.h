/* Moving a VM to another host, the source's side from start to end: the
 * checks, the link over ssh to `vi __migrate-in` there, the offer (lib/migrate.h),
 * the backend's stream for a running guest, the hand-over, and the VM taken
 * out here. `vi migrate` and the policy engine's migrate action both call
 * this; neither prints from here: progress and checks come back through
 * callbacks, the outcome in a result. */
#ifndef VI_MIGRATE_RUN_H
#define VI_MIGRATE_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include "hv.h"
#include "host.h"
#include "machine.h"
#include "store.h"

struct vi_migrate_opts {
	bool offline;         /* the VM must be stopped */
	bool tunnel;          /* a running guest's stream through ssh, not a direct connection */
	unsigned downtime_ms; /* the longest the guest may be paused; 0: 300 */
	unsigned timeout_s;   /* give up after this, the VM staying here; 0: never */
	uint64_t bandwidth;   /* bytes a second; 0: no limit */
	int converge;         /* VI_HV_CONVERGE_* */
	/* Progress, for a terminal or JSON lines; each may be NULL. copy: the
	 * files sent (what says which); live: the guest's stream; end: the
	 * phase reported last is over. */
	void (*copy_progress)(void *opaque, const char *what, uint64_t done, uint64_t total);
	void (*live_progress)(void *opaque, const struct vi_hv_migrate_progress *p);
	void (*progress_end)(void *opaque);
	void *opaque;
};

/* What a migration did. bytes is all that was sent: file_bytes of files
 * over ssh and, live, the backend's stream (of it disk_bytes of disk data). */
struct vi_migrate_result {
	bool live;
	double total_ms;    /* from the call to the VM's removal here */
	double downtime_ms; /* live: the guest paused */
	double stream_ms;   /* live: the backend's stream */
	uint64_t bytes, file_bytes, disk_bytes;
	unsigned iterations; /* live: memory iterations */
};

/* Moves VM m to host e: live when it runs (unless o->offline, then it must be
 * stopped), with its disks and definition when it is stopped. First the checks
 * of vi_migrate_check, silently, the first that fails the error. The guest
 * never runs on two hosts at once: the destination resumes it only when told,
 * and m goes from this store only once the destination has it (running, when
 * live). Any failure before that leaves it here as it was and nothing there;
 * a link lost in the hand-over leaves it paused here, marked unconfirmed
 * (-VI_ESTATE saying to run `vi migrate --recover`). The caller holds the VM's
 * lock, and releases m either way. */
int vi_migrate_vm(const struct vi_store *s, struct vi_machine *m,
		  const struct vi_host_entry *e, const struct vi_migrate_opts *o,
		  struct vi_migrate_result *r);

/* A check of vi_migrate_check: ok or not, its name ("backend", "memory",
 * "cpu", "name", "copy", "shared") and one line saying what it found. */
typedef void (*vi_migrate_check_fn)(void *opaque, bool ok, const char *what,
				    const char *detail);

/* What vi_migrate_vm would check, and more, each said through line, moving
 * nothing: the backend usable there, memory and CPU features for a running
 * guest, no VM of that name there, what there is to copy, and the files that
 * must be at the same path there. 0 even when checks fail; an error when
 * the checks cannot be made (the host unreachable, the VM in the wrong state). */
int vi_migrate_check(const struct vi_store *s, struct vi_machine *m,
		     const struct vi_host_entry *e, const struct vi_migrate_opts *o,
		     vi_migrate_check_fn line, void *opaque);

/* The disks of def both hosts see at the same path, outside the store s, which
 * the stream does not carry: bit i for disk i. Both ends work it out alike. */
uint64_t vi_migrate_shared_disks(const struct vi_store *s, const struct vi_vm *def);

/* How long a tunnel's ends may take to close after the stream, for a link
 * that no longer carries anything. */
#define VI_MIGRATE_TUNNEL_CLOSE_MS 10000

#endif
