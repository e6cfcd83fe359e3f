/* The policy engine: the policies kept in the store, and the loop that samples
 * the VMs they select, decides and acts through the operations (lib/grow,
 * lib/ops, lib/snapshot), never through the verbs. Each decision that acts,
 * or that is kept from acting, goes to an audit log of JSON lines.
 *
 * In the store, under policies/:
 *   NAME.yaml    a policy's document as it was added
 *   NAME.off     present while the policy is disabled
 *   engine.json  what survives a restart: each VM's recent samples (the
 *                windows), when each condition began to hold, the last firings
 *   engine.lock  locked by the engine that runs (its pid inside): one at a time
 *   audit.log    JSON lines, one per decision written
 * The engine is the only writer of engine.json; `vi policy plan` reads it. */
#ifndef VI_ENGINE_H
#define VI_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "hv.h"
#include "policy.h"
#include "store.h"

/* The policies in the store, sorted by name; enabled[i] for each. Free with
 * vi_policies_free(). A file that no longer parses is an error naming it. */
int vi_policies_load(const struct vi_store *s, struct vi_policy **out, bool **enabled,
		     size_t *n);
void vi_policies_free(struct vi_policy *p, bool *enabled, size_t n);
/* Adds every policy in text (source names it in messages), all or none: a
 * name already in the store is -VI_ESTATE unless replace. *names gets what was
 * added (vi_store_names_free). */
int vi_policies_add(const struct vi_store *s, const char *source, const char *text, size_t len,
		    bool replace, char ***names, size_t *n);
int vi_policies_remove(const struct vi_store *s, const char *name);
int vi_policies_enable(const struct vi_store *s, const char *name, bool enable);
/* -VI_ENOTFOUND, with a did-you-mean, when the store has no such policy. */
int vi_policies_exists(const struct vi_store *s, const char *name);

enum vi_decision {
	VI_DEC_FIRE,        /* the actions run (plan: would run) */
	VI_DEC_HOLD,        /* the condition holds, not yet for `for` */
	VI_DEC_COOLDOWN,    /* it fired less than `cooldown` ago */
	VI_DEC_BOUND,       /* every action would cross max or min */
	VI_DEC_UNSUPPORTED, /* the VM's backend cannot do an action */
	VI_DEC_SCHEDULE,    /* outside its schedule */
	VI_DEC_NO,          /* the condition does not hold */
	VI_DEC_UNKNOWN,     /* a figure it reads is unknown */
	VI_DEC_NO_VMS,      /* it selects no VM */
	VI_DEC_DISABLED,
};
const char *vi_decision_name(enum vi_decision d);

/* One decision: a policy on one VM (across any) or on all it selects. */
struct vi_decision_rec {
	const char *policy;
	const struct vi_policy *def; /* the policy itself, while the callback runs */
	const char *vm;            /* a VM, or "*" for a policy across all or avg */
	enum vi_decision decision;
	const char *why;           /* one line */
	double values[VI_M_COUNT]; /* the figures the condition read (NAN unknown) */
	bool used[VI_M_COUNT];
	/* For actions that ran: one each. */
	const char *action;        /* "grow cpus +1" */
	const char *result;        /* "ok" or "failed" */
	const char *detail;        /* "cpus 1 -> 2", or the error */
	double time;               /* seconds since the epoch */
};

typedef void (*vi_decision_fn)(void *opaque, const struct vi_decision_rec *r);

struct vi_engine;

/* Opens the engine on the store. With run, it becomes the store's one engine
 * (-VI_ESTATE naming the pid of the one that runs) and acts; without, it only
 * plans and writes nothing. State kept by an earlier engine is read. */
int vi_engine_open(struct vi_engine **e, const struct vi_store *s, struct vi_hv_set *plugins,
		   bool run);
void vi_engine_free(struct vi_engine *e);

/* Samples every VM a policy selects and the host. Two samples some time apart
 * are needed for rates: the first after open has none. */
int vi_engine_sample(struct vi_engine *e);
/* Decides every policy on the latest samples, acting when the engine runs;
 * fn (may be NULL) sees every decision, and each action's result. The
 * engine's state and the audit log are written. */
int vi_engine_decide(struct vi_engine *e, vi_decision_fn fn, void *opaque);

/* The audit log: its path (caller frees), and one decision as a JSON object
 * (the caller owns the reference). */
char *vi_audit_path(const struct vi_store *s);
struct json_object *vi_decision_json(const struct vi_decision_rec *r);

/* What `vi top` and `vi policy list` show of a policy: when it last fired, on
 * which VM, the action and its result (time 0 when it never did), and the
 * engine's latest decision on it, on the VM where it came nearest to acting
 * (decision "" when no engine decided yet). False when no engine ever kept
 * state for it. Strings are copied into the buffers. */
struct vi_policy_last {
	double time;
	char vm[64], action[128], result[256];
	char decision[16], decided_vm[64], why[256];
};
bool vi_engine_last(const struct vi_store *s, const char *policy, struct vi_policy_last *out);
/* The pid of the engine that runs on the store, or 0. */
long vi_engine_running(const struct vi_store *s);

#endif
