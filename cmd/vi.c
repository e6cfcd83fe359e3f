/* vi: global options, the command table, dispatch and exit codes. */
#include "cmd.h"
#include "error.h"
#include "layers.h"
#include "log.h"
#include "ops.h"
#include "output.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

struct cmd_ctx ctx;

static int show_version, show_help;

const struct vi_option global_options[] = {
	{ "json", 0, VI_OPT_FLAG, &ctx.json, NULL, "print one JSON document" },
	{ "quiet", 'q', VI_OPT_FLAG, &ctx.quiet, NULL, "print only results and errors" },
	{ "verbose", 'v', VI_OPT_FLAG, &ctx.verbose, NULL, "print debugging messages" },
	{ "home", 0, VI_OPT_STRING, &ctx.home, "DIR", "state directory", VI_COMPLETE_DIR },
	{ "hv", 0, VI_OPT_STRING, &ctx.hv, "NAME", "hypervisor backend", VI_COMPLETE_HV },
	{ "connect", 'c', VI_OPT_STRING, &ctx.connect, "URI", "backend connection URI" },
	{ "host", 0, VI_OPT_STRING, &ctx.host, "NAME", "run the verb on that host (vi host)",
	  VI_COMPLETE_HOST },
	{ "version", 0, VI_OPT_FLAG, &show_version, NULL, "print the version" },
	{ "help", 'h', VI_OPT_FLAG, &show_help, NULL, "print this help" },
	VI_OPT_TABLE_END,
};

/* Alphabetical; internal verbs (HIDDEN) first. */
const struct cmd commands[] = {
	{ "__complete", cmd_complete, 0, -1, HIDDEN | RAW_ARGS, "WORD...", NULL,
	  "print completion candidates for the words typed so far" },
	{ "__migrate-in", cmd_migrate_in, 1, 1, HIDDEN | NEEDS_LOCK | NEEDS_PLUGINS, "NAME",
	  migrate_in_options, "receive a VM that 'vi migrate' sends (over ssh)" },
	{ "__vmm-run", cmd_vmm_run, 1, 1, HIDDEN | NEEDS_STORE | NEEDS_PLUGINS | VM_PROCESS, "NAME",
	  vmm_run_options, "run a VM in this process (started by 'vi start')" },
	{ "caps", cmd_caps, 0, 0, NEEDS_PLUGINS | ALL_PLUGINS, "", caps_options,
	  "show what each backend can do here" },
	{ "clone", cmd_clone, 2, 2, NEEDS_LOCK | NEEDS_PLUGINS, "SRC NEW", clone_options,
	  "copy a VM, linked or full, with a new identity" },
	{ "console", cmd_console, 1, 1, NEEDS_STORE | NEEDS_PLUGINS, "NAME", console_options,
	  "attach the terminal to a VM's serial console" },
	{ "cp", cmd_cp, 2, 2, NEEDS_STORE | NEEDS_PLUGINS, "[VM:]SRC [VM:]DST", cp_options,
	  "copy files between the host and a running VM" },
	{ "create", cmd_create, 1, -1, NEEDS_LOCK | NEEDS_PLUGINS, "NAME [-- COMMAND...]", create_options,
	  "define a new virtual machine" },
	{ "destroy", cmd_destroy, 1, 1, NEEDS_LOCK | NEEDS_PLUGINS, "NAME", destroy_options,
	  "stop a VM if it runs and remove it with its disks" },
	{ "env", NULL, 0, 0, 0, "", NULL,
	  "environments: machines and private networks from one file, up and down together",
	  env_commands },
	{ "exec", cmd_exec, 1, -1, NEEDS_STORE | NEEDS_PLUGINS, "NAME -- COMMAND...", exec_options,
	  "run a command in a running VM and return its exit status" },
	{ "forward", NULL, 0, 0, 0, "", NULL, "port forwards from the host to a VM",
	  forward_commands },
	{ "grow", cmd_grow, 1, 1, NEEDS_LOCK | NEEDS_PLUGINS, "VM", grow_options,
	  "change a VM's vCPUs, memory, disks and CPU quota, live when it runs" },
	{ "help", cmd_help, 0, 1, 0, "[VERB]", help_options, "show the manual page of a verb" },
	{ "host", NULL, 0, 0, 0, "", NULL, "the other hosts running vi, reached over ssh",
	  host_commands },
	{ "hv", NULL, 0, 0, 0, "", NULL, "hypervisor backends", hv_commands },
	{ "image", NULL, 0, 0, 0, "", NULL, "create, inspect, check, convert and grow disk images",
	  image_commands },
	{ "label", cmd_label, 2, -1, NEEDS_LOCK, "NAME KEY=VALUE|KEY-...", label_options,
	  "set and remove a VM's labels" },
	{ "list", cmd_list, 0, 0, NEEDS_STORE | NEEDS_PLUGINS, "", list_options,
	  "list virtual machines and their state" },
	{ "migrate", cmd_migrate, 1, 2, NEEDS_LOCK | NEEDS_PLUGINS, "VM [HOST]", migrate_options,
	  "move a VM to another host, live when it runs" },
	{ "policy", NULL, 0, 0, 0, "", NULL,
	  "rules over live metrics that grow, move, restart and snapshot VMs", policy_commands },
	{ "show", cmd_show, 1, 1, NEEDS_STORE | NEEDS_PLUGINS, "NAME", show_options,
	  "show a virtual machine's definition and state" },
	{ "snapshot", NULL, 0, 0, 0, "", NULL,
	  "a VM's snapshots, as git has commits: take, list, check out",
	  snapshot_commands },
	{ "ssh", cmd_ssh, 1, -1, NEEDS_STORE | NEEDS_PLUGINS, "NAME [-- COMMAND...]", ssh_options,
	  "log in to a running VM, or run a command there" },
	{ "start", cmd_start, 1, 1, NEEDS_LOCK | NEEDS_PLUGINS, "NAME", start_options,
	  "boot a virtual machine" },
	{ "stats", cmd_stats, 0, -1, NEEDS_STORE | NEEDS_PLUGINS, "[VM...]", stats_options,
	  "show the current figures of VMs and the host" },
	{ "stop", cmd_stop, 1, 1, NEEDS_LOCK | NEEDS_PLUGINS, "NAME", stop_options,
	  "shut a virtual machine down, gracefully unless forced" },
	{ "template", NULL, 0, 0, 0, "", NULL, "golden-image templates and their images",
	  template_commands },
	{ "top", cmd_top, 0, 0, NEEDS_STORE | NEEDS_PLUGINS, "", top_options,
	  "a live view of the VMs by load, resource issues and policies" },
	{ "version", cmd_version, 0, 0, 0, "", version_options, "print the version" },
	{ NULL },
};

void cmd_report_state(const char *name, const char *state, const char *done)
{
	if (ctx.json) {
		struct json_object *doc = vi_json_doc();
		json_object_object_add(doc, "name", vi_json_str(name));
		json_object_object_add(doc, "state", vi_json_str(state));
		vi_json_print(doc);
	} else {
		vi_info("%s VM '%s'", done, name);
	}
}

void cmd_usage(FILE *f, const struct cmd *c, const char *path)
{
	const char *lead = "usage: ";

	if (c->sub) {
		for (const struct cmd *s = c->sub; s->name; s++) {
			char *sub_path = xasprintf("%s %s", path, s->name);
			fputs(lead, f);
			vi_opt_synopsis(f, sub_path, s->options, s->args);
			fputc('\n', f);
			free(sub_path);
			lead = "   or: ";
		}
		return;
	}
	fputs(lead, f);
	vi_opt_synopsis(f, path, c->options, c->args);
	fputc('\n', f);
}

static void main_usage(FILE *f)
{
	fputs("usage: vi [--json] [-q] [-v] [--home DIR] [--hv NAME] [--connect URI] [--host NAME]\n"
	      "          VERB [ARGS]\n"
	      "       vi --version | --help\n\nVerbs:\n",
	      f);
	for (const struct cmd *c = commands; c->name; c++)
		if (!(c->flags & HIDDEN))
			fprintf(f, "  %-10s %s\n", c->name, c->summary);
	fputs("\nGlobal options:\n", f);
	vi_opt_help(f, global_options);
	fputs("\n'vi VERB -h' shows a verb's options; 'vi help VERB' its manual page.\n", f);
}

static void verb_help(const struct cmd *c, const char *path)
{
	cmd_usage(stdout, c, path);
	printf("\n%c%s.\n", toupper((unsigned char)c->summary[0]), c->summary + 1);
	if (c->sub) {
		printf("\nSubcommands:\n");
		for (const struct cmd *s = c->sub; s->name; s++)
			printf("  %-10s %s\n", s->name, s->summary);
	}
	if (c->options && c->options->name) {
		printf("\nOptions:\n");
		vi_opt_help(stdout, c->options);
	}
	printf("\nGlobal options (--json, -q, -v, --home, --hv, --connect, --host) are described in "
	       "vi(1).\n");
}

enum vi_complete cmd_arg_complete(const struct cmd *c, int index)
{
	static const struct {
		const char *token;
		enum vi_complete kind;
	} kinds[] = {
		{ "NAME", VI_COMPLETE_VM },	 { "SRC", VI_COMPLETE_VM },
		{ "VERB", VI_COMPLETE_VERB },	 { "FILE", VI_COMPLETE_FILE },
		{ "DIR", VI_COMPLETE_DIR },	 { "TEMPLATE", VI_COMPLETE_TEMPLATE },
		{ "BACKEND", VI_COMPLETE_HV },	 { "VM", VI_COMPLETE_VM },
		{ "SNAPSHOT", VI_COMPLETE_SNAPSHOT }, { "HOST", VI_COMPLETE_HOST },
		{ "POLICY", VI_COMPLETE_POLICY },
	};
	char tok[64] = "";
	const char *p = c->args ? c->args : "";
	int i = 0;

	while (*p) {
		size_t n = strcspn(p, " ");
		if (i == index || (n >= 3 && !strncmp(p + n - 3, "...", 3) && i <= index)) {
			size_t k = 0;
			for (size_t j = 0; j < n && k + 1 < sizeof(tok); j++)
				if (p[j] != '[' && p[j] != ']' && p[j] != '.')
					tok[k++] = p[j];
			tok[k] = '\0';
			if (i == index)
				break;
		}
		p += n;
		p += strspn(p, " ");
		i++;
	}
	for (size_t k = 0; k < ARRAY_SIZE(kinds); k++)
		if (!strcmp(tok, kinds[k].token))
			return kinds[k].kind;
	return VI_COMPLETE_NONE;
}

/* Whether path is this very program, however it is reached. */
static bool is_self(const char *path)
{
	struct stat a, b;

	return stat(path, &a) == 0 && stat(vi_self_exe(), &b) == 0 && a.st_dev == b.st_dev &&
	       a.st_ino == b.st_ino;
}

/* The program a command word names: the word itself when it has a '/', else
 * the first on PATH that is not this program. The caller frees it; NULL if
 * there is none. */
static char *find_program(const char *word)
{
	const char *path = getenv("PATH");
	char *copy, *save = NULL, *found = NULL;

	if (strchr(word, '/'))
		return access(word, X_OK) == 0 && !is_self(word) ? xstrdup(word) : NULL;
	copy = xstrdup(path && *path ? path : "/usr/bin:/bin");
	for (char *d = strtok_r(copy, ":", &save); d && !found; d = strtok_r(NULL, ":", &save)) {
		char *cand = xasprintf("%s/%s", d, word);
		if (access(cand, X_OK) == 0 && !is_self(cand))
			found = cand;
		else
			free(cand);
	}
	free(copy);
	return found;
}

/* Opens the system editor on args, in place of this process: $VISUAL or
 * $EDITOR (split at blanks), else editor (Debian's alternative), vi, vim or
 * nano from PATH; any of them that is this program is passed over. Returns
 * only on failure. */
static int run_editor(int argc, char **args)
{
	const char *fallback[] = { "editor", "vi", "vim", "nano" };
	const char *env[] = { getenv("VISUAL"), getenv("EDITOR") };
	char **argv = xcalloc(argc + 64, sizeof(char *)), *words = NULL, *program = NULL;
	size_t n = 0;

	for (size_t i = 0; i < ARRAY_SIZE(env) && !program; i++) {
		char *save = NULL, *first;
		if (!env[i] || !(words = xstrdup(env[i])) || !(first = strtok_r(words, " \t", &save)) ||
		    !(program = find_program(first))) {
			free(words);
			words = NULL;
			continue;
		}
		argv[n++] = program;
		for (char *w = strtok_r(NULL, " \t", &save); w && n < 62; w = strtok_r(NULL, " \t", &save))
			argv[n++] = w;
	}
	for (size_t i = 0; i < ARRAY_SIZE(fallback) && !program; i++)
		if ((program = find_program(fallback[i])))
			argv[n++] = program;
	if (!program) {
		free(argv);
		return vi_error(VI_ENOTFOUND,
				"'%s' is not a verb, and there is no editor but this vi to open it: set EDITOR",
				args[0]);
	}
	memcpy(argv + n, args, argc * sizeof(char *));
	fflush(stdout);
	signal(SIGPIPE, SIG_DFL);
	execv(program, argv);
	int rc = vi_error_errno(VI_EFAIL, errno, "cannot run the editor '%s'", program);
	free(program);
	free(words);
	free(argv);
	return rc;
}

/* An admin's `vi FILE` opens the system editor: a first word that is not a
 * verb but an existing file or directory, a path or a file name with a '.',
 * with no global option before it. Anything else is a mistyped verb. */
static int unknown_verb(int argc, char **argv, bool after_options)
{
	const char *verb = argv[0], *names[64];
	size_t n = 0;
	struct stat st;

	if (!after_options &&
	    (stat(verb, &st) == 0 || strchr(verb, '/') || strchr(verb, '.')))
		return run_editor(argc, argv);
	for (const struct cmd *c = commands; c->name && n < ARRAY_SIZE(names); c++)
		if (!(c->flags & HIDDEN))
			names[n++] = c->name;
	const char *s = vi_suggest(verb, names, n);
	if (s)
		return vi_error(VI_EUSAGE, "unknown verb '%s'; did you mean '%s'?", verb, s);
	return vi_error(VI_EUSAGE, "unknown verb '%s' (see 'vi --help')", verb);
}

static const struct cmd *find_cmd(const struct cmd *table, const char *name)
{
	for (const struct cmd *c = table; c->name; c++)
		if (!strcmp(c->name, name))
			return c;
	return NULL;
}

/* The number of leading arguments that are global options (with values). */
static int global_prefix(int argc, char **argv)
{
	int i = 0;

	while (i < argc && argv[i][0] == '-' && argv[i][1] && strcmp(argv[i], "--")) {
		const char *a = argv[i];
		bool takes_value = false;
		for (const struct vi_option *o = global_options; o->name; o++) {
			bool match = a[1] == '-' ? !strncmp(a + 2, o->name, strlen(o->name)) &&
							   !a[2 + strlen(o->name)]
						 : (o->short_name && a[1] == o->short_name && !a[2]);
			if (match && o->type != VI_OPT_FLAG)
				takes_value = true;
		}
		i += takes_value ? 2 : 1;
	}
	return i < argc ? i : argc;
}

/* The host a verb is to run on: --host NAME anywhere before "--", else
 * $VI_HOST; NULL to run here. */
static const char *relay_host(int argc, char **argv)
{
	const char *env = getenv("VI_HOST");

	for (int i = 0; i < argc && strcmp(argv[i], "--"); i++) {
		if (!strcmp(argv[i], "--host") && i + 1 < argc)
			return argv[i + 1];
		if (!strncmp(argv[i], "--host=", 7))
			return argv[i] + 7;
	}
	return env && *env ? env : NULL;
}

/* An empty store directory is a mistake (an unset variable in a script),
 * never a request for the default store: refused from either source. */
static int check_home(void)
{
	const char *env = getenv("VI_HOME");

	if (ctx.home && !*ctx.home)
		return vi_error(VI_EUSAGE, "--home is empty: name the store directory");
	if (!ctx.home && env && !*env)
		return vi_error(VI_EUSAGE,
				"VI_HOME is empty: name the store directory, or unset it for the default");
	return 0;
}

/* With --json an error is a document on stdout too, for programs that read
 * only stdout: {"vi": 1, "error": {"code": EXIT, "message": "..."}}. */
static void print_json_error(int code)
{
	struct json_object *doc = vi_json_doc(), *e = json_object_new_object();

	json_object_object_add(e, "code", json_object_new_int(code));
	json_object_object_add(e, "message", vi_json_str(vi_error_message()));
	json_object_object_add(doc, "error", e);
	vi_json_print(doc);
	fflush(stdout);
}

/* Whether stdout is a pipe or socket nobody reads any more (an earlier
 * write may have failed with EPIPE, its errno long gone). */
static bool stdout_reader_gone(void)
{
	struct pollfd p = { .fd = STDOUT_FILENO };

	return poll(&p, 1, 0) == 1 && (p.revents & POLLERR);
}

static bool wants_help(int argc, char **argv)
{
	for (int i = 0; i < argc && strcmp(argv[i], "--"); i++)
		if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help"))
			return true;
	return false;
}

int main(int argc, char **argv)
{
	const struct cmd *c;
	char path[128] = "vi";
	int rc = 0, g;
	bool stdout_closed = false;

	/* A closed socket or pipe is an error to report (EPIPE), not a death
	 * that would leave a machine --rm promised to destroy. */
	signal(SIGPIPE, SIG_IGN);
	ctx.lock = -1;
	/* The store is private: what must be shared is shared explicitly. */
	umask(077);
	argc--, argv++;
	int all_argc = argc;
	char **all_argv = argv;
	g = global_prefix(argc, argv);
	{
		int n = g;
		char **globals = xcalloc(g + 1, sizeof(char *));
		memcpy(globals, argv, g * sizeof(char *));
		rc = vi_opt_parse(global_options, NULL, &n, globals);
		if (rc == 0 && n)
			rc = vi_error(VI_EUSAGE, "unexpected argument '%s'", globals[0]);
		free(globals);
	}
	argc -= g, argv += g;
	if (rc < 0)
		goto out;
	vi_log_level = ctx.quiet ? VI_LOG_WARN : ctx.verbose ? VI_LOG_DEBUG : VI_LOG_INFO;
	/* Another host's vi does it all; internal verbs are always this one's. */
	const char *host = relay_host(all_argc, all_argv);
	if (host && !(argc > 0 && !strncmp(argv[0], "__", 2))) {
		if ((rc = check_home()) == 0 && (rc = vi_store_open(&ctx.store, ctx.home)) == 0)
			rc = cmd_relay(host, all_argc, all_argv, g);
		goto out;
	}
	if (show_version) {
		rc = cmd_version(0, NULL);
		goto out;
	}
	if (argc > 0 && !strcmp(argv[0], "--"))
		argc--, argv++;
	if (show_help || argc == 0) {
		main_usage(show_help ? stdout : stderr);
		rc = show_help ? 0 : -VI_EUSAGE;
		vi_error_clear();
		if (!show_help)
			return VI_EUSAGE;
		goto out;
	}

	c = find_cmd(commands, argv[0]);
	if (!c) {
		rc = unknown_verb(argc, argv, g > 0);
		goto out;
	}
	snprintf(path, sizeof(path), "vi %s", c->name);
	argc--, argv++;
	if (c->sub) {
		const struct cmd *s;
		if (argc == 0 || wants_help(1, argv)) {
			if (argc == 0) {
				cmd_usage(stderr, c, path);
				return VI_EUSAGE;
			}
			verb_help(c, path);
			goto out;
		}
		s = find_cmd(c->sub, argv[0]);
		if (!s) {
			const char *names[32];
			size_t n = 0;
			for (const struct cmd *t = c->sub; t->name && n < ARRAY_SIZE(names); t++)
				names[n++] = t->name;
			const char *sug = vi_suggest(argv[0], names, n);
			rc = sug ? vi_error(VI_EUSAGE, "unknown subcommand '%s %s'; did you mean '%s'?",
					    c->name, argv[0], sug)
				 : vi_error(VI_EUSAGE, "unknown subcommand '%s %s' (see '%s -h')",
					    c->name, argv[0], path);
			goto out;
		}
		snprintf(path + strlen(path), sizeof(path) - strlen(path), " %s", s->name);
		c = s;
		argc--, argv++;
	}
	ctx.cmd = c;
	ctx.cmd_path = path;
	if (wants_help(argc, argv) && !(c->flags & HIDDEN)) {
		verb_help(c, path);
		goto out;
	}
	if (!(c->flags & RAW_ARGS) &&
	    (rc = vi_opt_parse(c->options, global_options, &argc, argv)) < 0)
		goto out;
	vi_log_level = ctx.quiet ? VI_LOG_WARN : ctx.verbose ? VI_LOG_DEBUG : VI_LOG_INFO;
	if (argc < c->min_args) {
		rc = vi_error(VI_EUSAGE, "missing arguments: expected %s (see '%s -h')", c->args,
			      path);
		goto out;
	}
	if (c->max_args >= 0 && argc > c->max_args) {
		rc = vi_error(VI_EUSAGE, "unexpected argument '%s'", argv[c->max_args]);
		goto out;
	}
	if (c->flags & (NEEDS_STORE | NEEDS_LOCK)) {
		if ((rc = check_home()) < 0 || (rc = vi_store_open(&ctx.store, ctx.home)) < 0)
			goto out;
		if (!(c->flags & VM_PROCESS) && ((rc = vi_store_upgrade_modes(&ctx.store)) < 0 ||
						 (rc = vi_layers_upgrade(&ctx.store)) < 0))
			goto out;
		vi_hv_set_home(ctx.store.home);
	}
	if (c->flags & NEEDS_LOCK) {
		const char *wait = getenv("VI_LOCK_TIMEOUT");
		/* VM@SNAPSHOT names a VM's snapshot: the VM is what is locked. */
		char *vm = xstrndup(argv[0], strcspn(argv[0], "@"));
		ctx.lock = rc = vi_store_lock_vm(&ctx.store, vm, wait ? atoi(wait) * 1000 : 60000);
		free(vm);
		if (rc < 0)
			goto out;
	}
	if (c->flags & NEEDS_PLUGINS)
		vi_hv_scan(&ctx.plugins);
	if ((c->flags & ALL_PLUGINS) && !ctx.hv)
		vi_hv_load_all(&ctx.plugins);
	/* What killed commands left is cleaned before anyone reads the store. */
	if ((c->flags & NEEDS_PLUGINS) && ctx.store.home && !(c->flags & VM_PROCESS))
		vi_ops_recover(&ctx.store, &ctx.plugins);
	rc = c->fn(argc, argv);
out:
	vi_store_unlock(ctx.lock);
	vi_hv_set_release(&ctx.plugins);
	vi_store_release(&ctx.store);
	/* A full disk on stdout is an error too. A reader that went away ends
	 * vi as SIGPIPE would have, silently, but only now that everything is
	 * cleaned up (a --rm machine destroyed). */
	if (fflush(stdout) != 0 || ferror(stdout)) {
		if (errno == EPIPE || stdout_reader_gone())
			stdout_closed = true;
		else if (rc >= 0)
			rc = vi_error_errno(VI_EFAIL, errno, "cannot write to standard output");
	}
	if (rc < 0) {
		vi_log(VI_LOG_ERROR, "%s", vi_error_message());
		/* A verb that reported its result (a check that found errors)
		 * has printed its one document already. */
		if (ctx.json && !vi_json_printed)
			print_json_error(-rc);
		return -rc;
	}
	if (stdout_closed) {
		signal(SIGPIPE, SIG_DFL);
		raise(SIGPIPE);
	}
	return ctx.exit_status;
}
