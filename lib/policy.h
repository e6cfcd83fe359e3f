/* Policies: rules over live metrics, as vi-policy(5) describes them. This
 * module owns the language: it reads policy documents (YAML, one policy a
 * document) into struct vi_policy, with every error as "FILE:LINE:COL: what"
 * and a did-you-mean for misspelt keys, metrics and values, and it evaluates
 * conditions, aggregates, schedules and VM selectors. It decides nothing and
 * acts on nothing: the engine (lib/engine.h) does. */
#ifndef VI_POLICY_H
#define VI_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "grow.h"
#include "metrics.h"

enum vi_policy_aggregate { VI_AGG_AVG, VI_AGG_MAX, VI_AGG_MIN, VI_AGG_P95 };
enum vi_policy_across { VI_ACROSS_ANY, VI_ACROSS_ALL, VI_ACROSS_AVG };

enum vi_policy_action_kind {
	VI_ACT_GROW,     /* grow: {cpus, memory, disk} as vi grow takes them */
	VI_ACT_SHRINK,   /* shrink: {cpus, memory}: how much to take away */
	VI_ACT_EXEC,     /* exec: COMMAND (run by /bin/sh -c) */
	VI_ACT_MIGRATE,  /* migrate: HOST or least-loaded */
	VI_ACT_SNAPSHOT, /* snapshot: {keep: N} */
	VI_ACT_START,
	VI_ACT_STOP,
	VI_ACT_RESTART,
};

struct vi_policy_action {
	enum vi_policy_action_kind kind;
	struct vi_grow grow;   /* GROW and SHRINK: the change, signs as vi grow's
				  (SHRINK's amounts are negative) */
	char *command;         /* EXEC */
	char *host;            /* MIGRATE: a host's name, or "least-loaded" */
	unsigned keep;         /* SNAPSHOT: how many of the policy's snapshots to keep, 0: all */
	int line, column;      /* where it is written, for messages */
};

/* When a policy is active: days of the week and a time of day, local time. */
struct vi_policy_window {
	uint8_t days;          /* bit 0 Sunday .. bit 6 Saturday */
	unsigned from, to;     /* minutes since midnight; from > to spans midnight */
};

struct vi_policy_bounds {
	unsigned cpus;         /* 0: no bound */
	uint64_t memory, disk; /* bytes, 0: no bound */
};

struct vi_policy_expr; /* a parsed condition */

struct vi_policy {
	char *name;
	char *source;          /* the file it came from, for messages */
	int line;              /* where its document starts */
	char *text;            /* the document as written, what `vi policy show` prints */
	char **vms;            /* selectors: names, globs, or "label:KEY=VALUE" */
	size_t nvms;
	char *when_text;
	struct vi_policy_expr *when;
	enum vi_policy_aggregate aggregate; /* default avg */
	enum vi_policy_across across;       /* default any */
	unsigned window, hold, cooldown;    /* seconds: window (default 60), for (0), cooldown (0) */
	struct vi_policy_window *schedule;  /* none: always active */
	size_t nschedule;
	char *schedule_text;
	struct vi_policy_bounds max, min;
	struct vi_policy_action *then;
	size_t nthen;
};

/* Reads every document of text (name is the file name used in messages; "-"
 * for standard input is written "<stdin>"). On success *out is an array of *n
 * policies (free with vi_policy_free_all). Errors: -VI_EUSAGE with
 * "NAME:LINE:COL: what" for the first problem, and nothing returned. Two
 * documents with the same name are an error. */
int vi_policy_parse(const char *name, const char *text, size_t len, struct vi_policy **out,
		    size_t *n);
/* The same for the regular file at path (at most VI_YAML_MAX_SIZE bytes). */
int vi_policy_load_file(const char *path, struct vi_policy **out, size_t *n);
void vi_policy_release(struct vi_policy *p);
void vi_policy_free_all(struct vi_policy *p, size_t n);

/* The condition's value for a VM's (aggregated) figures. A comparison with an
 * unknown (NAN) figure is neither true nor false, nor is its "not"; "and"
 * and "or" decide without it where the other side does (false and unknown:
 * false; true or unknown: true). Whatever stays undecided is false, with
 * *unknown (may be NULL) set to true; *unknown is false otherwise. */
bool vi_policy_eval(const struct vi_policy_expr *e, const double values[VI_M_COUNT],
		    bool *unknown);
/* Marks used[m] for every metric the condition reads. */
void vi_policy_expr_metrics(const struct vi_policy_expr *e, bool used[VI_M_COUNT]);

/* The environment variable that carries a metric's figure to exec actions:
 * "VI_METRIC_CPU_UTIL" for cpu.util. */
void vi_policy_metric_env(int metric, char *buf, size_t len);

/* Aggregates n samples of one metric (NANs left out; all NAN: NAN). */
double vi_policy_aggregate(enum vi_policy_aggregate a, const double *v, size_t n);

/* Whether the policy's schedule has it active at t (always, without one). */
bool vi_policy_active_at(const struct vi_policy *p, time_t t);

/* Whether the VM named name, with labels "KEY=VALUE", is one of p's. */
bool vi_policy_selects(const struct vi_policy *p, const char *name, const char *const *labels,
		       size_t nlabels);

/* Names, for output and messages. */
const char *vi_policy_aggregate_name(enum vi_policy_aggregate a);
const char *vi_policy_across_name(enum vi_policy_across a);
const char *vi_policy_action_name(enum vi_policy_action_kind k);
/* An action as one line: "grow cpus +1", "exec /usr/local/bin/notify". The
 * caller frees it. */
char *vi_policy_action_str(const struct vi_policy_action *a);

#endif
