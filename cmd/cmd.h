/* The verbs of vi and the table that dispatches them.
 *
 * Adding a verb (tests fail until every step is done):
 *   1. cmd/<verb>.c: `int cmd_<verb>(int argc, char **argv)` and its option
 *      table `<verb>_options[]`; declare both below.
 *   2. A row in `commands[]` in cmd/vi.c, alphabetical: name, function,
 *      min/max positional arguments, precondition flags, argument synopsis,
 *      options, one-line summary. Preconditions are data: the dispatcher opens
 *      the store, takes the VM's lock and loads plugins; verbs never repeat it.
 *   3. man/vi-<verb>.1 whose SYNOPSIS matches `vi <verb> -h` (tests/man.bats).
 *   4. Completion needs nothing: `vi __complete` reads the table
 *      (tests/completion.bats checks every verb is offered).
 *   5. tests/<verb>.bats: a user's session, exact messages and exit codes.
 *   6. A line in README.md's tour.
 *
 * Verbs return 0 or a negative VI_E* code after vi_error(); the dispatcher
 * prints the message and exits with the code. */
#ifndef VI_CMD_H
#define VI_CMD_H

#include "hv.h"
#include "opt.h"
#include "store.h"

enum cmd_flags {
	NEEDS_STORE = 1 << 0,   /* open $VI_HOME first */
	NEEDS_LOCK = 1 << 1,    /* lock the VM named by the first argument (implies store) */
	NEEDS_PLUGINS = 1 << 2, /* find the hypervisor plugins (each loads when first used) */
	HIDDEN = 1 << 3,        /* internal: not listed, not completed, no man page */
	RAW_ARGS = 1 << 4,      /* arguments reach the verb unparsed */
	ALL_PLUGINS = 1 << 5,   /* load every plugin found, or only the one --hv names */
	VM_PROCESS = 1 << 6,    /* a VM's own process, started by a verb that has just
				   upgraded and recovered the store: neither again */
};

struct cmd {
	const char *name;
	int (*fn)(int argc, char **argv);
	int min_args, max_args; /* max -1: no limit */
	unsigned flags;
	const char *args;       /* positional synopsis, e.g. "NAME" or "[VERB]" */
	const struct vi_option *options;
	const char *summary;
	const struct cmd *sub;  /* subcommands ({ NULL } terminated), or NULL */
};

/* What every verb may use, set up by the dispatcher. */
struct cmd_ctx {
	int json, quiet, verbose;
	const char *home;    /* --home, or NULL */
	const char *hv;      /* --hv NAME, or NULL */
	const char *connect; /* --connect URI, or NULL */
	const char *host;    /* --host NAME, or NULL */
	struct vi_store store;       /* open when NEEDS_STORE */
	struct vi_hv_set plugins;    /* found when NEEDS_PLUGINS, loaded as used */
	const struct cmd *cmd;       /* the verb running */
	const char *cmd_path;        /* "vi hv list" */
	int lock;                    /* the VM's lock with NEEDS_LOCK; a verb that waits
					long may release it early (vi_store_unlock, -1) */
	int exit_status;             /* when the verb returns 0: the exit status */
};

extern struct cmd_ctx ctx;
extern const struct cmd commands[];
extern const struct vi_option global_options[];

/* Options every verb shares; verb tables include the ones they document. */
#define OPT_JSON { "json", 0, VI_OPT_FLAG, &ctx.json, NULL, "print one JSON document" }
#define OPT_CONNECT                                                                            \
	{ "connect", 'c', VI_OPT_STRING, &ctx.connect, "URI", "backend connection URI",       \
	  VI_COMPLETE_NONE }
#define OPT_HV { "hv", 0, VI_OPT_STRING, &ctx.hv, "NAME", "hypervisor backend", VI_COMPLETE_HV }

/* What a lifecycle verb prints once done: with --json {"vi":1, "name", "state"},
 * else "<done> VM '<name>'" (silenced by -q). */
void cmd_report_state(const char *name, const char *state, const char *done);

/* Prints "usage: vi VERB ..." (and one line per subcommand) to f. */
void cmd_usage(FILE *f, const struct cmd *c, const char *path);
/* The completion kind of a positional argument named in a synopsis token. */
enum vi_complete cmd_arg_complete(const struct cmd *c, int index);

int cmd_caps(int argc, char **argv);
int cmd_clone(int argc, char **argv);
int cmd_console(int argc, char **argv);
int cmd_create(int argc, char **argv);
int cmd_destroy(int argc, char **argv);
int cmd_start(int argc, char **argv);
int cmd_stop(int argc, char **argv);
int cmd_grow(int argc, char **argv);
int cmd_help(int argc, char **argv);
int cmd_image_check(int argc, char **argv);
int cmd_image_convert(int argc, char **argv);
int cmd_image_create(int argc, char **argv);
int cmd_image_info(int argc, char **argv);
int cmd_image_resize(int argc, char **argv);
int cmd_hv_list(int argc, char **argv);
int cmd_migrate(int argc, char **argv);
int cmd_migrate_in(int argc, char **argv);
int cmd_host_add(int argc, char **argv);
int cmd_host_info(int argc, char **argv);
int cmd_host_list(int argc, char **argv);
int cmd_host_rm(int argc, char **argv);
int cmd_host_show(int argc, char **argv);
/* Runs the verb of argv (vi's arguments, globals included: the first
 * nglobal of them, whose --home is this host's store) on host `name` over
 * ssh, relaying its output; its exit status becomes ctx.exit_status. */
int cmd_relay(const char *name, int argc, char **argv, int nglobal);
int cmd_label(int argc, char **argv);
/* A VM's labels as a JSON object {KEY: VALUE}, the caller's. */
struct json_object *cmd_labels_json(const struct vi_vm *vm);
int cmd_list(int argc, char **argv);
int cmd_show(int argc, char **argv);
int cmd_stats(int argc, char **argv);
int cmd_top(int argc, char **argv);
int cmd_version(int argc, char **argv);
int cmd_complete(int argc, char **argv);
int cmd_vmm_run(int argc, char **argv);
int cmd_ssh(int argc, char **argv);
int cmd_exec(int argc, char **argv);
int cmd_cp(int argc, char **argv);
int cmd_forward_add(int argc, char **argv);
int cmd_forward_rm(int argc, char **argv);
int cmd_forward_list(int argc, char **argv);
int cmd_snapshot_create(int argc, char **argv);
int cmd_snapshot_list(int argc, char **argv);
int cmd_snapshot_show(int argc, char **argv);
int cmd_snapshot_checkout(int argc, char **argv);
int cmd_snapshot_delete(int argc, char **argv);
int cmd_snapshot_diff(int argc, char **argv);
int cmd_env_up(int argc, char **argv);
int cmd_env_clone(int argc, char **argv);
int cmd_env_snapshot(int argc, char **argv);
int cmd_env_checkout(int argc, char **argv);
int cmd_env_status(int argc, char **argv);
int cmd_env_down(int argc, char **argv);
int cmd_env_ssh(int argc, char **argv);

extern const struct vi_option caps_options[], clone_options[], grow_options[], console_options[], create_options[],
	destroy_options[], start_options[], stop_options[], help_options[], hv_list_options[],
	label_options[], list_options[], show_options[], stats_options[], top_options[], version_options[], vmm_run_options[], ssh_options[],
	migrate_options[], migrate_in_options[],
	exec_options[], cp_options[];
extern const struct cmd hv_commands[];
extern const struct cmd host_commands[];
extern const struct cmd forward_commands[];
extern const struct cmd snapshot_commands[];
extern const struct cmd policy_commands[];
extern const struct cmd env_commands[];
extern const struct cmd template_commands[];
extern const struct cmd image_commands[];

#endif
