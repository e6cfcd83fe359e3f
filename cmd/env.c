/* vi env: whole environments of machines and private networks from one file
 * (vi-env(5)). The machines are ordinary VMs, made, started and removed by
 * running vi's own verbs, several at once where the dependencies allow; what
 * an environment made (its networks, its machines' definitions) is kept in
 * envs/NAME.yaml, so that up resumes and down removes all of it. */
#include "cmd.h"
#include "env.h"
#include "error.h"
#include "forward.h"
#include "host.h"
#include "log.h"
#include "machine.h"
#include "output.h"
#include "snapshot.h"
#include "store.h"
#include "util.h"
#include "yaml-doc.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define ENV_FILE "vi-env.yaml"
#define STATE_SCHEMA 1
/* Machines made or started at once, at most. */
#define PARALLEL 4
/* How long a machine that was stopped has to let vi in over SSH again. */
#define START_READY_S 300
/* The ranges private networks take /24s from. */
#define NET_FIRST "10.250"
#define NET_RANGES 5

static int recreate, keep;

const struct vi_option env_up_options[] = {
	{ "recreate", 0, VI_OPT_FLAG, &recreate, NULL,
	  "rebuild the machines whose definition in the file changed" },
	OPT_JSON,
	VI_OPT_TABLE_END,
};

const struct vi_option env_down_options[] = {
	{ "keep", 0, VI_OPT_FLAG, &keep, NULL, "stop the machines and keep everything" },
	OPT_JSON,
	VI_OPT_TABLE_END,
};

const struct vi_option env_options[] = {
	OPT_JSON,
	VI_OPT_TABLE_END,
};

const struct cmd env_commands[] = {
	{ "checkout", cmd_env_checkout, 2, 2, NEEDS_STORE | NEEDS_PLUGINS | ALL_PLUGINS,
	  "ENV SNAPSHOT", env_options,
	  "every machine back to a snapshot of the environment, resumed together" },
	{ "clone", cmd_env_clone, 2, 2, NEEDS_STORE | NEEDS_PLUGINS | ALL_PLUGINS, "ENV NEW",
	  env_options, "the whole environment as linked clones, on private networks of its own" },
	{ "down", cmd_env_down, 1, 1, NEEDS_STORE | NEEDS_PLUGINS | ALL_PLUGINS, "ENV",
	  env_down_options, "destroy an environment with everything it made, or stop it (--keep)" },
	{ "snapshot", cmd_env_snapshot, 1, 2, NEEDS_STORE | NEEDS_PLUGINS | ALL_PLUGINS,
	  "ENV [SNAPSHOT]", env_options,
	  "a snapshot of every machine at one instant, paused together" },
	{ "ssh", cmd_env_ssh, 2, -1, NEEDS_STORE, "ENV MACHINE [-- COMMAND...]", env_options,
	  "log in to a machine of an environment, or run a command there" },
	{ "status", cmd_env_status, 0, 1, NEEDS_STORE, "[ENV]", env_options,
	  "the environments, or one environment's machines, states and addresses" },
	{ "up", cmd_env_up, 0, 1, NEEDS_STORE | NEEDS_PLUGINS | ALL_PLUGINS, "[FILE]",
	  env_up_options, "create what is missing and start what is stopped, in dependency order" },
	{ NULL },
};

/* --- running vi -------------------------------------------------------------------------- */

/* A vi child: its argv, and its standard output and error in files. */
struct child {
	char **argv;
	size_t argc;
	pid_t pid;
	int out;
	int status;
	double start;
};

static void child_arg(struct child *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void child_arg(struct child *c, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		abort();
	va_end(ap);
	c->argv = xrealloc(c->argv, (c->argc + 2) * sizeof(char *));
	c->argv[c->argc++] = s;
	c->argv[c->argc] = NULL;
}

/* A child running this vi, on this store, quiet unless JSON: child_vi then
 * child_arg the verb and its arguments. */
static void child_vi(struct child *c)
{
	memset(c, 0, sizeof(*c));
	c->out = -1;
	child_arg(c, "%s", vi_self_exe());
	child_arg(c, "--home");
	child_arg(c, "%s", ctx.store.home);
}

static int child_start(struct child *c)
{
	c->out = open("/tmp", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
	if (c->out < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot make a temporary file");
	c->start = vi_now_ms();
	c->pid = vi_host_spawn(c->argv, -1, c->out, c->out);
	if (c->pid < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot run %s", c->argv[0]);
	return 0;
}

static int child_wait(struct child *c)
{
	int st = 0;

	while (waitpid(c->pid, &st, 0) < 0 && errno == EINTR)
		;
	c->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return c->status;
}

/* What the child printed, malloc'd. */
static char *child_output(const struct child *c)
{
	off_t len = lseek(c->out, 0, SEEK_END);
	char *text = xcalloc((size_t)(len > 0 ? len : 0) + 1, 1);

	if (len > 0 && pread(c->out, text, (size_t)len, 0) < 0)
		text[0] = '\0';
	return text;
}

/* Its error line ("vi: error: ..." without the prefix), malloc'd. */
static char *child_error(const struct child *c)
{
	char *text = child_output(c), *line = strstr(text, "vi: error: "), *msg;

	if (line) {
		line += strlen("vi: error: ");
		msg = xstrndup(line, strcspn(line, "\n"));
	} else {
		msg = xasprintf("'%s' exited with status %d", c->argv[3] ? c->argv[3] : "vi",
				c->status);
	}
	free(text);
	return msg;
}

static void child_release(struct child *c)
{
	for (size_t i = 0; i < c->argc; i++)
		free(c->argv[i]);
	free(c->argv);
	if (c->out >= 0)
		close(c->out);
	memset(c, 0, sizeof(*c));
}

/* Runs vi with the words given (NULL-terminated) and parses its JSON output
 * (the last line): NULL when it failed, the error recorded. */
static struct json_object *vi_json(const char *const *words)
{
	struct child c;
	struct json_object *o = NULL;
	int rc;

	child_vi(&c);
	child_arg(&c, "--json");
	for (size_t i = 0; words[i]; i++)
		child_arg(&c, "%s", words[i]);
	if ((rc = child_start(&c)) == 0) {
		child_wait(&c);
		char *text = child_output(&c), *last = text;
		/* One document, printed whole; else JSON lines, the last one. */
		if (!(o = json_tokener_parse(text))) {
			for (char *nl; (nl = strchr(last, '\n')) && nl[1];)
				last = nl + 1;
			o = json_tokener_parse(last);
		}
		if (c.status != 0 || !o) {
			struct json_object *e;
			const char *msg = o && json_object_object_get_ex(o, "error", &e)
					      ? vi_json_get_str(e, "message")
					      : NULL;
			vi_error(c.status > 0 && c.status < 8 ? c.status : VI_EFAIL, "%s",
				 msg ? msg : "vi gave no answer");
			if (o)
				json_object_put(o);
			o = NULL;
		}
		free(text);
	}
	child_release(&c);
	return o;
}

/* --- the environment's record ------------------------------------------------------------ */

struct state_net {
	char *name, *libvirt, *cidr, *hv;
};

struct state_machine {
	char *name, *digest;
};

struct state {
	char *file;
	struct state_net *nets;
	size_t nnets;
	struct state_machine *machines;
	size_t nmachines;
};

static char *state_path(const char *name)
{
	return vi_store_path(&ctx.store, "envs/%s.yaml", name);
}

static void state_release(struct state *st)
{
	free(st->file);
	for (size_t i = 0; i < st->nnets; i++) {
		free(st->nets[i].name);
		free(st->nets[i].libvirt);
		free(st->nets[i].cidr);
		free(st->nets[i].hv);
	}
	free(st->nets);
	for (size_t i = 0; i < st->nmachines; i++) {
		free(st->machines[i].name);
		free(st->machines[i].digest);
	}
	free(st->machines);
	memset(st, 0, sizeof(*st));
}

/* The record of environment name; empty (0) when there is none, 1 then. */
static int state_load(const char *name, struct state *st)
{
	char *path = state_path(name);
	struct vi_yaml y;
	yaml_node_t *root, *map, *k, *v;
	int rc;

	memset(st, 0, sizeof(*st));
	if (!vi_file_exists(path)) {
		free(path);
		return 1;
	}
	rc = vi_yaml_load_file(&y, path);
	free(path);
	if (rc < 0)
		return rc;
	root = vi_yaml_root(&y);
	if ((rc = vi_yaml_expect_map(&y, root, "an environment's record")) < 0 ||
	    (rc = vi_yaml_check_schema(&y, root, STATE_SCHEMA)) < 0 ||
	    (rc = vi_yaml_dup_str(&y, root, "file", false, &st->file)) < 0)
		goto out;
	if ((map = vi_yaml_get(&y, root, "networks")) && map->type == YAML_MAPPING_NODE)
		vi_yaml_map_foreach(&y, map, k, v)
		{
			st->nets = xrealloc(st->nets, (st->nnets + 1) * sizeof(*st->nets));
			struct state_net *n = &st->nets[st->nnets++];
			memset(n, 0, sizeof(*n));
			n->name = xstrdup(vi_yaml_scalar(k) ? vi_yaml_scalar(k) : "");
			/* Records written before native networks name it "libvirt". */
			if ((rc = vi_yaml_dup_str(&y, v, "network", false, &n->libvirt)) < 0 ||
			    (!n->libvirt &&
			     (rc = vi_yaml_dup_str(&y, v, "libvirt", false, &n->libvirt)) < 0) ||
			    (!n->libvirt &&
			     (rc = vi_yaml_dup_str(&y, v, "network", true, &n->libvirt)) < 0) ||
			    (rc = vi_yaml_dup_str(&y, v, "cidr", true, &n->cidr)) < 0 ||
			    (rc = vi_yaml_dup_str(&y, v, "hv", true, &n->hv)) < 0)
				goto out;
		}
	if ((map = vi_yaml_get(&y, root, "machines")) && map->type == YAML_MAPPING_NODE)
		vi_yaml_map_foreach(&y, map, k, v)
		{
			st->machines =
			    xrealloc(st->machines, (st->nmachines + 1) * sizeof(*st->machines));
			struct state_machine *m = &st->machines[st->nmachines++];
			m->name = xstrdup(vi_yaml_scalar(k) ? vi_yaml_scalar(k) : "");
			m->digest = NULL;
			if ((rc = vi_yaml_dup_str(&y, v, "digest", true, &m->digest)) < 0)
				goto out;
		}
out:
	vi_yaml_release(&y);
	if (rc < 0)
		state_release(st);
	return rc;
}

static int state_save(const char *name, const struct state *st)
{
	struct vi_yaml_out o;
	char *path = state_path(name), *dir = vi_store_path(&ctx.store, "envs");
	int rc = vi_mkdir_p(dir, 0700);

	free(dir);
	if (rc < 0) {
		free(path);
		return rc;
	}
	vi_yaml_out_init(&o);
	vi_yaml_out_map_start(&o);
	vi_yaml_out_uint(&o, "schema", STATE_SCHEMA);
	vi_yaml_out_str(&o, "file", st->file);
	vi_yaml_out_scalar(&o, "networks");
	vi_yaml_out_map_start(&o);
	for (size_t i = 0; i < st->nnets; i++) {
		vi_yaml_out_scalar(&o, st->nets[i].name);
		vi_yaml_out_map_start(&o);
		vi_yaml_out_str(&o, "network", st->nets[i].libvirt);
		vi_yaml_out_str(&o, "cidr", st->nets[i].cidr);
		vi_yaml_out_str(&o, "hv", st->nets[i].hv);
		vi_yaml_out_end(&o);
	}
	vi_yaml_out_end(&o);
	vi_yaml_out_scalar(&o, "machines");
	vi_yaml_out_map_start(&o);
	for (size_t i = 0; i < st->nmachines; i++) {
		vi_yaml_out_scalar(&o, st->machines[i].name);
		vi_yaml_out_map_start(&o);
		vi_yaml_out_str(&o, "digest", st->machines[i].digest);
		vi_yaml_out_end(&o);
	}
	vi_yaml_out_end(&o);
	vi_yaml_out_end(&o);
	rc = vi_yaml_out_save(&o, path, 0600);
	free(path);
	return rc;
}

static struct state_machine *state_machine(struct state *st, const char *name)
{
	for (size_t i = 0; i < st->nmachines; i++)
		if (!strcmp(st->machines[i].name, name))
			return &st->machines[i];
	return NULL;
}

static void state_set_machine(struct state *st, const char *name, const char *digest)
{
	struct state_machine *m = state_machine(st, name);

	if (!m) {
		st->machines = xrealloc(st->machines, (st->nmachines + 1) * sizeof(*st->machines));
		m = &st->machines[st->nmachines++];
		m->name = xstrdup(name);
		m->digest = NULL;
	}
	free(m->digest);
	m->digest = xstrdup(digest);
}

static struct state_net *state_net(struct state *st, const char *name)
{
	for (size_t i = 0; i < st->nnets; i++)
		if (!strcmp(st->nets[i].name, name))
			return &st->nets[i];
	return NULL;
}

/* One environment at a time: a lock beside its record. */
static int lock_env(const char *name)
{
	char *dir = vi_store_path(&ctx.store, "envs"), *path;
	int fd, rc = vi_mkdir_p(dir, 0700);

	path = xasprintf("%s/.%s.lock", dir, name);
	free(dir);
	if (rc < 0) {
		free(path);
		return rc;
	}
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0 || flock(fd, LOCK_EX | LOCK_NB) < 0) {
		rc = fd < 0 ? vi_error_errno(VI_EFAIL, errno, "cannot lock '%s'", path)
			    : vi_error(VI_ESTATE,
				       "environment '%s' is busy: another vi env runs on it", name);
		if (fd >= 0)
			close(fd);
		free(path);
		return rc;
	}
	free(path);
	return fd;
}

/* --- networks ---------------------------------------------------------------------------- */

static int env_names(char ***names, size_t *n);

/* Whether 10.250.X.0/24 (as its first three parts "A.B.C") is taken: a route
 * of this host, or another environment's network. */
static bool cidr_taken(const char *prefix)
{
	FILE *f = fopen("/proc/net/route", "r");
	char line[256];
	unsigned a, b, c;
	bool taken = false;

	if (sscanf(prefix, "%u.%u.%u", &a, &b, &c) != 3)
		return true;
	/* The table's addresses and masks are the kernel's, little-endian: a
	 * route other than the default one that overlaps the /24 takes it. */
	uint32_t net = a | b << 8 | c << 16, mask24 = 0x00ffffff;
	while (f && fgets(line, sizeof(line), f) && !taken) {
		unsigned dest, mask;
		if (sscanf(line, "%*s %x %*s %*s %*s %*s %*s %x", &dest, &mask) == 2 && mask &&
		    !((net ^ dest) & mask & mask24))
			taken = true;
	}
	if (f)
		fclose(f);
	/* Other environments' records. */
	char **names = NULL;
	size_t n = 0;
	char *want_cidr = xasprintf("%s.0/24", prefix);
	env_names(&names, &n);
	for (size_t i = 0; i < n; i++) {
		struct state st;
		if (!taken && state_load(names[i], &st) == 0) {
			for (size_t k = 0; k < st.nnets; k++)
				taken |= !strcmp(st.nets[k].cidr, want_cidr);
			state_release(&st);
		}
		vi_error_clear();
		free(names[i]);
	}
	free(names);
	free(want_cidr);
	return taken;
}

static char *free_cidr(void)
{
	for (unsigned r = 0; r < NET_RANGES; r++)
		for (unsigned c = 0; c < 256; c++) {
			char prefix[32];
			snprintf(prefix, sizeof(prefix), "10.%u.%u", 250 + r, c);
			if (!cidr_taken(prefix))
				return xasprintf("%s.0/24", prefix);
		}
	return NULL;
}

static bool native_hv(const char *hv)
{
	return hv && (!strcmp(hv, "vtx") || !strcmp(hv, "svm"));
}

/* The backend that makes env's private networks: libvirt's (hv-qemu, or hv-xen when a
 * machine says so) when any machine on one runs there, its native VMs joining the same
 * bridge; a bridge of the native VMM's when every machine on one is native. */
static const char *networks_hv(const struct vi_env *env)
{
	const char *libvirt = NULL, *native = NULL;

	for (size_t i = 0; i < env->nmachines; i++) {
		const struct vi_env_machine *m = &env->machines[i];
		bool private = false;

		for (size_t k = 0; k < m->nnetworks; k++)
			private |= strcmp(m->networks[k], VI_ENV_USER_NET) != 0;
		if (!private)
			continue;
		if (native_hv(m->hv))
			native = m->hv;
		else if (!libvirt || m->hv)
			libvirt = m->hv ? m->hv : "qemu";
	}
	return libvirt ? libvirt : native ? native : "qemu";
}

/* Each private network of env made (once, recorded) and started, on the
 * backend networks_hv() says. */
static int networks_up(const struct vi_env *env, struct state *st, const char *hv_name)
{
	int rc = 0;

	for (size_t i = 0; i < env->nnetworks && rc == 0; i++) {
		struct state_net *n = state_net(st, env->networks[i]);
		if (!n) {
			char *cidr = free_cidr();
			if (!cidr)
				return vi_error(VI_ESTATE,
						"no free /24 in 10.250.0.0/16 to "
						"10.254.0.0/16 for network '%s'",
						env->networks[i]);
			st->nets = xrealloc(st->nets, (st->nnets + 1) * sizeof(*st->nets));
			n = &st->nets[st->nnets++];
			n->name = xstrdup(env->networks[i]);
			n->libvirt = xasprintf("vi-%s-%s", env->name, env->networks[i]);
			n->cidr = cidr;
			n->hv = xstrdup(hv_name);
			if ((rc = state_save(env->name, st)) < 0)
				return rc;
		}
		struct vi_hv *hv = vi_hv_find(&ctx.plugins, n->hv);
		if (!hv)
			return -vi_error_code();
		if ((rc = vi_hv_net_up(hv, n->libvirt, n->cidr)) < 0)
			return vi_error_wrap("network '%s' of environment '%s'", n->name,
					     env->name);
	}
	return rc;
}

/* --- up ---------------------------------------------------------------------------------- */

/* The closing document of a verb that printed JSON lines before it. */
static void last_line(struct json_object *doc)
{
	vi_json_printed = true;
	printf("%s\n", json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PLAIN));
	json_object_put(doc);
}

/* One VM of the environment and what up does with it. */
struct inst {
	const struct vi_env_machine *m;
	unsigned index;
	char *vm;
	char *state;  /* as vi list says, NULL: not there */
	bool changed; /* its definition in the file is not the one it was made from */
	bool done, failed;
	const char *did; /* "created", "started", "running" */
	char **forwards; /* its forwards: the first instance's as given, each next one
			  * on the next free host port above the one before */
	struct child c;
};

static void say(const struct inst *in, const char *what, double ms)
{
	if (ctx.json) {
		struct json_object *o = vi_json_doc();
		json_object_object_add(o, "machine", vi_json_str(in->m->name));
		json_object_object_add(o, "vm", vi_json_str(in->vm));
		json_object_object_add(o, "state", vi_json_str(what));
		if (ms >= 0)
			json_object_object_add(o, "ms", vi_json_ms(ms));
		printf("%s\n", json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN));
		fflush(stdout);
		json_object_put(o);
	} else if (!ctx.quiet) {
		if (ms >= 0)
			printf("%-20s %s in %.1f s\n", in->vm, what, ms / 1000);
		else
			printf("%-20s %s\n", in->vm, what);
		fflush(stdout);
	}
}

/* The NIC and forward arguments of create for instance i of m. */
static void create_args(const struct vi_env *env, const struct state *st, struct inst *in,
			struct child *c)
{
	const struct vi_env_machine *m = in->m;

	child_arg(c, "-q");
	child_arg(c, "create");
	child_arg(c, "--template");
	child_arg(c, "%s", m->template);
	child_arg(c, "--label");
	child_arg(c, VI_ENV_LABEL "=%s", env->name);
	if (m->hv)
		child_arg(c, "--hv=%s", m->hv);
	else if (m->nnetworks)
		child_arg(c, "--hv=qemu");
	if (m->cpus)
		child_arg(c, "--cpus=%u", m->cpus);
	if (m->memory)
		child_arg(c, "--memory=%llu", (unsigned long long)m->memory);
	for (size_t i = 0; i < m->nnetworks; i++) {
		if (!strcmp(m->networks[i], VI_ENV_USER_NET)) {
			child_arg(c, "--nic=user");
			continue;
		}
		for (size_t k = 0; k < st->nnets; k++)
			if (!strcmp(st->nets[k].name, m->networks[i]))
				child_arg(c, "--nic=network:%s", st->nets[k].libvirt);
	}
	for (size_t f = 0; f < m->nforwards; f++)
		child_arg(c, "--forward=%s", in->forwards[f]);
	if (m->user_data)
		child_arg(c, "--user-data=%s", m->user_data);
	if (m->ready_ssh)
		child_arg(c, "--wait-ready");
	else
		child_arg(c, "--start");
	child_arg(c, "%s", in->vm);
}

/* Instance in failed (status: its child's exit status, or negative with the
 * error recorded here): said, and the first failure kept as "WHO: why" with
 * the exit status it gives. */
static void inst_failed(struct inst *in, int status, double ms, const char *who,
			char **failure, int *code)
{
	char *why = status < 0 ? xstrdup(vi_error_message()) : child_error(&in->c);

	in->failed = true;
	say(in, "failed", ms);
	if (!*failure) {
		*failure = xasprintf("%s: %s", who, why);
		*code = status < 0 ? vi_error_code() : status < 8 ? status : VI_EFAIL;
	}
	free(why);
}

/* Starts what instance in needs, as a child; false when nothing. */
static bool inst_begin(const struct vi_env *env, const struct state *st, struct inst *in)
{
	child_vi(&in->c);
	if (!in->state) {
		create_args(env, st, in, &in->c);
		in->did = "created";
		say(in, "creating", -1);
	} else if (!strcmp(in->state, "running") || !strcmp(in->state, "paused")) {
		child_release(&in->c);
		in->did = "running";
		in->done = true;
		say(in,
		    in->changed ? "running, changed in the file (up --recreate rebuilds it)"
				: "running, unchanged",
		    -1);
		return false;
	} else {
		child_arg(&in->c, "-q");
		child_arg(&in->c, "start");
		child_arg(&in->c, "%s", in->vm);
		in->did = "started";
		say(in,
		    in->changed ? "starting, changed in the file (up --recreate rebuilds it)"
				: "starting",
		    -1);
	}
	if (child_start(&in->c) < 0) {
		in->failed = in->done = true;
		return false;
	}
	return true;
}

/* Waits until a started machine that lets vi in over SSH does so. */
static int wait_ssh(const char *vm)
{
	double t0 = vi_now_ms();

	for (;;) {
		struct child c;
		child_vi(&c);
		child_arg(&c, "exec");
		child_arg(&c, "%s", vm);
		child_arg(&c, "--");
		child_arg(&c, "true");
		int rc = child_start(&c);
		if (rc == 0)
			rc = child_wait(&c) == 0 ? 0 : 1;
		child_release(&c);
		if (rc <= 0)
			return rc;
		if (vi_ms_since(t0) > START_READY_S * 1000.0)
			return vi_error(VI_ETIMEOUT, "VM '%s' did not let vi in within %u s", vm,
					START_READY_S);
		usleep(500000);
	}
}

/* The states of the environment's VMs, from vi list. */
static int list_states(const char *env, struct json_object **vms)
{
	char *label = xasprintf(VI_ENV_LABEL "=%s", env);
	const char *words[] = { "list", "--label", label, NULL };
	struct json_object *o = vi_json(words);

	free(label);
	*vms = NULL;
	if (!o)
		return -vi_error_code();
	if (!json_object_object_get_ex(o, "vms", vms)) {
		json_object_put(o);
		return vi_error(VI_EFAIL, "vi list gave no VMs");
	}
	json_object_get(*vms);
	json_object_put(o);
	return 0;
}

static const char *state_of(struct json_object *vms, const char *name)
{
	for (size_t i = 0; vms && i < json_object_array_length(vms); i++) {
		struct json_object *v = json_object_array_get_idx(vms, i);
		const char *n = vi_json_get_str(v, "name");
		if (n && !strcmp(n, name))
			return vi_json_get_str(v, "state");
	}
	return NULL;
}

/* Destroys VM name (for --recreate). */
static int destroy_vm(const char *name)
{
	const char *words[] = { "destroy", "--force", name, NULL };
	struct json_object *o = vi_json(words);

	if (!o)
		return -vi_error_code();
	json_object_put(o);
	return 0;
}

/* /etc/hosts of every running machine: the others by machine name and VM
 * name, at their address on the first private network they share. */
static void write_hosts(const struct vi_env *env, struct inst *ins, size_t n);

int cmd_env_up(int argc, char **argv)
{
	const char *file = argc ? argv[0] : ENV_FILE;
	struct vi_env env;
	struct state st;
	struct json_object *vms = NULL;
	struct inst *ins = NULL;
	size_t n = 0;
	int lock, rc;
	bool changed_any = false, acted = false;

	if ((rc = vi_env_load(file, &env)) < 0) {
		if (rc == -VI_ENOTFOUND && !argc)
			return vi_error(VI_ENOTFOUND, "no %s here: name the environment's file",
					ENV_FILE);
		return rc;
	}
	if ((lock = lock_env(env.name)) < 0) {
		vi_env_release(&env);
		return lock;
	}
	if ((rc = state_load(env.name, &st)) < 0)
		goto out;
	if (st.file && strcmp(st.file, env.path)) {
		rc = vi_error(VI_ESTATE, "environment '%s' is up from '%s', not '%s'", env.name,
			      st.file, env.path);
		goto out;
	}
	free(st.file);
	st.file = xstrdup(env.path);
	if ((rc = state_save(env.name, &st)) < 0 || (rc = list_states(env.name, &vms)) < 0)
		goto out;
	/* The instances, in dependency order. */
	for (size_t o = 0; o < env.nmachines; o++) {
		const struct vi_env_machine *m = &env.machines[env.order[o]];
		unsigned last[64] = { 0 };
		if (m->nforwards > 64) {
			rc = vi_error(VI_EUSAGE, "machine '%s' has more than 64 forwards", m->name);
			goto out;
		}
		for (unsigned i = 0; i < m->count; i++) {
			ins = xrealloc(ins, (n + 1) * sizeof(*ins));
			struct inst *in = &ins[n++];
			memset(in, 0, sizeof(*in));
			in->m = m;
			in->index = i;
			in->vm = vi_env_vm_name(&env, m, i);
			const char *s = state_of(vms, in->vm);
			in->state = s ? xstrdup(s) : NULL;
			in->forwards = xcalloc(m->nforwards + 1, sizeof(char *));
			for (size_t f = 0; f < m->nforwards; f++) {
				char addr[64];
				unsigned base, port;
				bool udp;
				vi_env_forward_parse(m->forwards[f], addr, &base, &udp);
				port = i ? last[f] + 1 : base;
				while (i && port < 65535 &&
				       vi_port_check(addr, udp ? VI_HV_UDP : VI_HV_TCP, port) < 0)
					port++;
				vi_error_clear();
				last[f] = port;
				in->forwards[f] = vi_env_forward(m->forwards[f], port - base);
			}
			struct state_machine *sm = state_machine(&st, in->vm);
			in->changed = s && (!sm || strcmp(sm->digest, m->digest));
			changed_any |= in->changed;
		}
	}
	if (env.nnetworks && (rc = networks_up(&env, &st, networks_hv(&env))) < 0)
		goto out;
	if (recreate)
		for (size_t i = 0; i < n && rc == 0; i++)
			if (ins[i].changed) {
				say(&ins[i], "destroying, changed in the file", -1);
				if ((rc = destroy_vm(ins[i].vm)) < 0)
					goto out;
				free(ins[i].state);
				ins[i].state = NULL;
				ins[i].changed = false;
			}
	/* Waves: each instance once all it depends on is done, PARALLEL at once. */
	size_t left = n;
	char *failure = NULL;
	int failure_code = 0;
	while (left && !failure) {
		size_t running = 0;
		for (size_t i = 0; i < n && running < PARALLEL; i++) {
			struct inst *in = &ins[i];
			if (in->done || in->c.pid)
				continue;
			bool deps_done = true;
			for (size_t d = 0; d < in->m->ndepends; d++)
				for (size_t k = 0; k < n; k++)
					if (!strcmp(ins[k].m->name, in->m->depends[d]) &&
					    (!ins[k].done || ins[k].failed))
						deps_done = false;
			if (!deps_done)
				continue;
			if (inst_begin(&env, &st, in))
				running++;
			else if (in->done)
				left--;
			if (in->failed && !failure) {
				failure = xstrdup(vi_error_message());
				failure_code = vi_error_code();
			}
		}
		if (!running && left && !failure) {
			failure = xstrdup("machines wait on ones that failed");
			failure_code = VI_EFAIL;
			break;
		}
		for (size_t i = 0; i < n; i++) {
			struct inst *in = &ins[i];
			if (!in->c.pid || in->done)
				continue;
			int status = child_wait(&in->c);
			if (status == 0 && !strcmp(in->did, "started") && in->m->ready_ssh &&
			    wait_ssh(in->vm) < 0)
				status = -1;
			double ms = vi_ms_since(in->c.start);
			in->done = true;
			left--;
			acted = true;
			if (status == 0) {
				state_set_machine(&st, in->vm, in->m->digest);
				state_save(env.name, &st);
				say(in,
				    !strcmp(in->did, "created") ? "created, ready"
								: "started, ready",
				    ms);
				continue;
			}
			char *who = xasprintf("machine '%s' (VM '%s')", in->m->name, in->vm);
			inst_failed(in, status, ms, who, &failure, &failure_code);
			free(who);
			/* A VM that was made but failed later is part of the environment. */
			struct json_object *now = NULL;
			if (list_states(env.name, &now) == 0 && state_of(now, in->vm)) {
				state_set_machine(&st, in->vm, in->m->digest);
				state_save(env.name, &st);
			}
			vi_error_clear();
			if (now)
				json_object_put(now);
		}
		for (size_t i = 0; i < n; i++)
			child_release(&ins[i].c);
	}
	if (failure) {
		rc = vi_error(failure_code ? failure_code : VI_EFAIL, "%s", failure);
		free(failure);
		goto out;
	}
	write_hosts(&env, ins, n);
	if (ctx.json) {
		struct json_object *doc = vi_json_doc();
		json_object_object_add(doc, "env", vi_json_str(env.name));
		json_object_object_add(doc, "machines", json_object_new_int((int)n));
		json_object_object_add(doc, "changed", json_object_new_boolean(acted));
		last_line(doc);
	} else if (!acted) {
		vi_info("environment '%s' is up: %zu machine%s, nothing changed%s", env.name, n,
			n == 1 ? "" : "s",
			changed_any ? " (some differ from the file: up --recreate rebuilds them)"
				    : "");
	} else {
		vi_info("environment '%s' is up: %zu machine%s", env.name, n, n == 1 ? "" : "s");
	}
out:
	for (size_t i = 0; i < n; i++) {
		child_release(&ins[i].c);
		free(ins[i].vm);
		free(ins[i].state);
		for (size_t f = 0; f < ins[i].m->nforwards; f++)
			free(ins[i].forwards[f]);
		free(ins[i].forwards);
	}
	free(ins);
	if (vms)
		json_object_put(vms);
	state_release(&st);
	vi_env_release(&env);
	close(lock);
	return rc;
}

/* The addresses of a running VM's NICs on private networks: address i for
 * libvirt network nets[i], NULL where it has none. */
static void private_addresses(const char *vm, const struct state *st, char **addrs)
{
	const char *words[] = { "show", vm, NULL };
	struct json_object *o = vi_json(words), *v = NULL, *nics = NULL;

	vi_error_clear();
	if (!o)
		return;
	if (json_object_object_get_ex(o, "vm", &v) && json_object_object_get_ex(v, "nics", &nics))
		for (size_t i = 0; i < json_object_array_length(nics); i++) {
			struct json_object *nic = json_object_array_get_idx(nics, i);
			const char *src = vi_json_get_str(nic, "source");
			const char *addr = vi_json_get_str(nic, "address");
			for (size_t k = 0; src && addr && k < st->nnets; k++)
				if (!strcmp(src, st->nets[k].libvirt) && !addrs[k])
					addrs[k] = xstrdup(addr);
		}
	json_object_put(o);
}

/* The hosts block of instance `self`: every other one, by machine and VM
 * name, at its address on the first private network both are on. */
static char *hosts_block(const struct vi_env *env, const struct state *st, struct inst *ins,
			 size_t n, size_t self, char ***addrs)
{
	char *block = xasprintf("# vi env %s\n", env->name);

	for (size_t j = 0; j < n; j++) {
		const char *addr = NULL;
		for (size_t k = 0; k < st->nnets && !addr; k++)
			if (addrs[self][k] && addrs[j][k])
				addr = addrs[j][k];
		if (!addr || j == self)
			continue;
		char *local = ins[j].m->count > 1
				  ? xasprintf("%s-%u", ins[j].m->name, ins[j].index + 1)
				  : xstrdup(ins[j].m->name);
		char *more = xasprintf("%s%s\t%s %s\n", block, addr, local, ins[j].vm);
		free(block);
		free(local);
		block = more;
	}
	char *more = xasprintf("%s# vi env %s end\n", block, env->name);
	free(block);
	return more;
}

static void write_hosts(const struct vi_env *env, struct inst *ins, size_t n)
{
	struct state st;
	char ***addrs = xcalloc(n + 1, sizeof(char **));

	if (state_load(env->name, &st) != 0 || !st.nnets) {
		vi_error_clear();
		state_release(&st);
		free(addrs);
		return;
	}
	/* Addresses come from DHCP leases: a moment after the guest is ready. */
	for (size_t i = 0; i < n; i++) {
		addrs[i] = xcalloc(st.nnets + 1, sizeof(char *));
		bool want = false;
		for (size_t k = 0; k < ins[i].m->nnetworks; k++)
			want |= strcmp(ins[i].m->networks[k], VI_ENV_USER_NET) != 0;
		for (int tries = 0; want && !ins[i].failed && tries < 20; tries++) {
			private_addresses(ins[i].vm, &st, addrs[i]);
			bool all = true;
			for (size_t k = 0; k < ins[i].m->nnetworks; k++) {
				struct state_net *sn = state_net(&st, ins[i].m->networks[k]);
				if (sn && !addrs[i][sn - st.nets])
					all = false;
			}
			if (all)
				break;
			usleep(500000);
		}
	}
	for (size_t i = 0; i < n; i++) {
		if (ins[i].failed || !ins[i].m->ready_ssh)
			continue;
		char *block = hosts_block(env, &st, ins, n, i, addrs);
		char *q = vi_shell_quote(block);
		/* Replaces the environments' blocks of /etc/hosts (a clone carries
		 * its source's) with this one's, as root. */
		char *script = xasprintf("b=%s; s=; [ \"$(id -u)\" = 0 ] || s='sudo -n'; "
					 "$s sh -c 'f=/etc/hosts; "
					 "sed \"/^# vi env [^ ]*$/,/^# vi env [^ ]* end$/d\" $f "
					 ">$f.vi && printf \"%%s\" \"$1\" >>$f.vi && cat "
					 "$f.vi >$f && rm -f $f.vi' "
					 "sh \"$b\"",
					 q);
		struct child c;
		child_vi(&c);
		child_arg(&c, "exec");
		child_arg(&c, "%s", ins[i].vm);
		child_arg(&c, "--");
		child_arg(&c, "sh");
		child_arg(&c, "-c");
		child_arg(&c, "%s", script);
		if (child_start(&c) == 0 && child_wait(&c) != 0) {
			char *why = child_error(&c);
			vi_warn("cannot write /etc/hosts of VM '%s': %s", ins[i].vm, why);
			free(why);
		}
		vi_error_clear();
		child_release(&c);
		free(script);
		free(q);
		free(block);
	}
	for (size_t i = 0; i < n; i++) {
		for (size_t k = 0; addrs[i] && k < st.nnets; k++)
			free(addrs[i][k]);
		free(addrs[i]);
	}
	free(addrs);
	state_release(&st);
}

/* --- clone ------------------------------------------------------------------------------ */

/* vi env clone ENV NEW: each machine of ENV cloned, linked, while it runs,
 * into NEW, on private networks of NEW's own; names, identities and
 * addresses new. */
int cmd_env_clone(int argc, char **argv)
{
	const char *from = argv[0], *to = argv[1];
	struct state st, nst = { 0 };
	struct vi_env env = { 0 };
	struct json_object *vms = NULL, *there = NULL;
	struct inst *ins = NULL;
	size_t n = 0;
	int lock_from = -1, lock_to = -1, rc, found;
	char *failure = NULL;
	int failure_code = 0;
	(void)argc;

	if ((rc = vi_check_name(to, "environment")) < 0)
		return rc;
	if (!strcmp(from, to))
		return vi_error(VI_EUSAGE, "an environment is not cloned onto itself");
	if ((lock_from = lock_env(from)) < 0)
		return lock_from;
	if ((lock_to = lock_env(to)) < 0) {
		close(lock_from);
		return lock_to;
	}
	memset(&st, 0, sizeof(st));
	if ((found = state_load(from, &st)) != 0) {
		rc = found < 0 ? found
			       : vi_error(VI_ENOTFOUND, "no environment '%s' (see 'vi env status')", from);
		goto out;
	}
	if ((found = state_load(to, &nst)) <= 0) {
		rc = found < 0 ? found : vi_error(VI_ESTATE, "environment '%s' exists", to);
		goto out;
	}
	if ((rc = list_states(to, &there)) < 0)
		goto out;
	if (json_object_array_length(there)) {
		rc = vi_error(VI_ESTATE, "VMs labelled " VI_ENV_LABEL "=%s exist: 'vi env down %s' first", to, to);
		goto out;
	}
	if (!st.file || (rc = vi_env_load(st.file, &env)) < 0) {
		rc = vi_error_wrap("environment '%s': its file", from);
		goto out;
	}
	if ((rc = list_states(from, &vms)) < 0)
		goto out;
	/* Networks of its own, each like its source's. */
	nst.file = xstrdup(st.file);
	for (size_t i = 0; i < st.nnets; i++) {
		char *cidr = free_cidr();
		if (!cidr) {
			rc = vi_error(VI_ESTATE, "no free /24 for network '%s'", st.nets[i].name);
			goto out;
		}
		nst.nets = xrealloc(nst.nets, (nst.nnets + 1) * sizeof(*nst.nets));
		struct state_net *nn = &nst.nets[nst.nnets++];
		nn->name = xstrdup(st.nets[i].name);
		nn->libvirt = xasprintf("vi-%s-%s", to, st.nets[i].name);
		nn->cidr = cidr;
		nn->hv = xstrdup(st.nets[i].hv);
		struct vi_hv *hv = vi_hv_find(&ctx.plugins, nn->hv);
		if ((rc = state_save(to, &nst)) < 0)
			goto out;
		if ((rc = hv ? vi_hv_net_up(hv, nn->libvirt, nn->cidr) : -vi_error_code()) < 0)
			goto out;
	}
	/* The machines ENV has made, in its order. */
	for (size_t o = 0; o < env.nmachines; o++) {
		const struct vi_env_machine *m = &env.machines[env.order[o]];
		for (unsigned i = 0; i < m->count; i++) {
			char *src = vi_env_vm_name(&env, m, i);
			if (!state_of(vms, src)) {
				free(src);
				continue;
			}
			ins = xrealloc(ins, (n + 1) * sizeof(*ins));
			struct inst *in = &ins[n++];
			memset(in, 0, sizeof(*in));
			in->m = m;
			in->index = i;
			in->state = src; /* here: the source VM */
		}
	}
	free(env.name);
	env.name = xstrdup(to);
	for (size_t i = 0; i < n; i++)
		ins[i].vm = vi_env_vm_name(&env, ins[i].m, ins[i].index);
	/* PARALLEL at once: a clone's disks freeze in an instant, its boot is
	 * what takes time. */
	for (size_t first = 0; first < n && !failure; first += PARALLEL) {
		size_t last = first + PARALLEL < n ? first + PARALLEL : n;
		for (size_t i = first; i < last; i++) {
			struct inst *in = &ins[i];
			child_vi(&in->c);
			child_arg(&in->c, "-q");
			child_arg(&in->c, "clone");
			child_arg(&in->c, "--start");
			child_arg(&in->c, "--label=" VI_ENV_LABEL "=%s", to);
			for (size_t k = 0; k < st.nnets; k++)
				child_arg(&in->c, "--network=%s=%s", st.nets[k].libvirt,
					  nst.nets[k].libvirt);
			child_arg(&in->c, "%s", in->state);
			child_arg(&in->c, "%s", in->vm);
			say(in, "cloning", -1);
			if (child_start(&in->c) < 0)
				in->failed = true;
		}
		for (size_t i = first; i < last; i++) {
			struct inst *in = &ins[i];
			int status = in->failed ? -1 : child_wait(&in->c);
			if (status == 0 && in->m->ready_ssh && wait_ssh(in->vm) < 0)
				status = -1;
			double ms = vi_ms_since(in->c.start);
			if (status == 0) {
				struct state_machine *sm = state_machine(&st, in->state);
				state_set_machine(&nst, in->vm, sm ? sm->digest : in->m->digest);
				state_save(to, &nst);
				say(in, "cloned, ready", ms);
				continue;
			}
			char *who = xasprintf("VM '%s'", in->vm);
			inst_failed(in, status, ms, who, &failure, &failure_code);
			free(who);
			vi_error_clear();
		}
		for (size_t i = first; i < last; i++)
			child_release(&ins[i].c);
	}
	if (failure) {
		rc = vi_error(failure_code ? failure_code : VI_EFAIL, "%s", failure);
		free(failure);
		goto out;
	}
	write_hosts(&env, ins, n);
	if (ctx.json) {
		struct json_object *doc = vi_json_doc();
		json_object_object_add(doc, "env", vi_json_str(to));
		json_object_object_add(doc, "source", vi_json_str(from));
		json_object_object_add(doc, "machines", json_object_new_int((int)n));
		last_line(doc);
	} else {
		vi_info("cloned environment '%s' to '%s': %zu machine%s", from, to, n,
			n == 1 ? "" : "s");
	}
out:
	for (size_t i = 0; i < n; i++) {
		child_release(&ins[i].c);
		free(ins[i].vm);
		free(ins[i].state);
	}
	free(ins);
	if (vms)
		json_object_put(vms);
	if (there)
		json_object_put(there);
	state_release(&st);
	state_release(&nst);
	if (env.path)
		vi_env_release(&env);
	close(lock_to);
	close(lock_from);
	return rc;
}

/* --- snapshot and checkout ---------------------------------------------------------------- */

/* The environment's machines, opened and locked, in name order: from vi
 * list's answer. */
struct held {
	struct vi_machine m;
	int lock;
	bool paused; /* by us, to be resumed */
};

static int hold_machines(const char *env, struct held **out, size_t *n)
{
	struct json_object *vms = NULL;
	int rc = list_states(env, &vms);

	*out = NULL;
	*n = 0;
	if (rc < 0)
		return rc;
	*out = xcalloc(json_object_array_length(vms) + 1, sizeof(**out));
	for (size_t i = 0; i < json_object_array_length(vms) && rc == 0; i++) {
		const char *name = vi_json_get_str(json_object_array_get_idx(vms, i), "name");
		struct held *h = &(*out)[*n];
		if ((h->lock = vi_store_lock_vm(&ctx.store, name, 30000)) < 0) {
			rc = h->lock;
			break;
		}
		if ((rc = vi_machine_open(&ctx.store, &ctx.plugins, name, NULL, true, &h->m)) < 0) {
			vi_store_unlock(h->lock);
			break;
		}
		(*n)++;
	}
	json_object_put(vms);
	return rc;
}

/* Resumes what we paused, then lets all go. */
static void release_machines(struct held *h, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (h[i].paused && vi_hv_resume(h[i].m.hv, &h[i].m.view.vm) < 0) {
			vi_warn("cannot resume VM '%s': %s", h[i].m.def.name, vi_error_message());
			vi_error_clear();
		}
		vi_machine_release(&h[i].m);
		vi_store_unlock(h[i].lock);
	}
	free(h);
}

/* Pauses every running machine: their states are of one instant. */
static int pause_all(struct held *h, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		struct vi_hv_state st;
		if (vi_machine_state(&h[i].m, &st) != VI_HV_RUNNING)
			continue;
		if (vi_hv_pause(h[i].m.hv, &h[i].m.view.vm) < 0)
			return vi_error_wrap("cannot pause VM '%s'", h[i].m.def.name);
		h[i].paused = true;
	}
	vi_error_clear();
	return 0;
}

static int env_machines(const char *env, struct state *st, int *lock)
{
	int found;

	if ((*lock = lock_env(env)) < 0)
		return *lock;
	if ((found = state_load(env, st)) != 0) {
		close(*lock);
		return found < 0 ? found
				 : vi_error(VI_ENOTFOUND, "no environment '%s' (see 'vi env status')",
					    env);
	}
	return 0;
}

/* vi env snapshot ENV [NAME]: every machine paused, a snapshot of each
 * (disks and memory) by one name, and all resumed together. */
int cmd_env_snapshot(int argc, char **argv)
{
	const char *env = argv[0];
	char *name = argc > 1 ? xstrdup(argv[1]) : NULL;
	struct state st;
	struct held *h = NULL;
	size_t n = 0;
	double t0 = vi_now_ms(), paused_at = 0;
	int lock, rc;

	if (name && (rc = vi_check_name(name, "snapshot")) < 0) {
		free(name);
		return rc;
	}
	if (!name) {
		char stamp[32];
		time_t now = time(NULL);
		strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", gmtime(&now));
		name = xasprintf("env-%s", stamp);
	}
	if ((rc = env_machines(env, &st, &lock)) < 0) {
		free(name);
		return rc;
	}
	if ((rc = hold_machines(env, &h, &n)) == 0 && !n)
		rc = vi_error(VI_ESTATE, "environment '%s' has no machines", env);
	/* One instant for all: paused first, each snapshot of a paused guest. */
	if (rc == 0 && (rc = pause_all(h, n)) == 0)
		paused_at = vi_now_ms();
	for (size_t i = 0; i < n && rc == 0; i++) {
		char *made = NULL;
		char *msg = xasprintf("environment %s", env);
		struct vi_snapshot_spec spec = { .name = name, .message = msg };
		rc = vi_snapshot_create(&ctx.store, &h[i].m, &spec, &made);
		if (rc < 0)
			vi_error_wrap("VM '%s'", h[i].m.def.name);
		else if (!ctx.json && !ctx.quiet) {
			printf("%-20s %s\n", h[i].m.def.name, made);
			fflush(stdout);
		}
		free(made);
		free(msg);
	}
	double paused_ms = paused_at ? vi_ms_since(paused_at) : 0;
	release_machines(h, n);
	if (rc == 0) {
		if (ctx.json) {
			struct json_object *doc = vi_json_doc();
			json_object_object_add(doc, "env", vi_json_str(env));
			json_object_object_add(doc, "snapshot", vi_json_str(name));
			json_object_object_add(doc, "machines", json_object_new_int((int)n));
			json_object_object_add(doc, "paused_ms", vi_json_ms(paused_ms));
			vi_json_print(doc);
		} else {
			vi_info("environment '%s': snapshot '%s' of %zu machine%s in %.1f s, paused "
				"together %.1f s",
				env, name, n, n == 1 ? "" : "s", vi_ms_since(t0) / 1000,
				paused_ms / 1000);
		}
	}
	state_release(&st);
	close(lock);
	free(name);
	return rc;
}

/* vi env checkout ENV NAME: every machine back to its snapshot NAME, paused
 * as they were taken, then resumed together. */
int cmd_env_checkout(int argc, char **argv)
{
	const char *env = argv[0], *name = argv[1];
	struct state st;
	struct held *h = NULL;
	size_t n = 0;
	int lock, rc;
	(void)argc;

	if ((rc = env_machines(env, &st, &lock)) < 0)
		return rc;
	if ((rc = hold_machines(env, &h, &n)) == 0 && !n)
		rc = vi_error(VI_ESTATE, "environment '%s' has no machines", env);
	/* Every machine has it, or none is touched. */
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct vi_snapshot snap;
		if (vi_snapshot_load(&ctx.store, h[i].m.def.name, name, &snap) < 0)
			rc = vi_error(VI_ENOTFOUND, "VM '%s' of environment '%s' has no snapshot '%s'",
				      h[i].m.def.name, env, name);
		else
			vi_snapshot_release(&snap);
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		char *saved = NULL;
		if ((rc = vi_snapshot_checkout(&ctx.store, &ctx.plugins, &h[i].m, name, false,
					       &saved)) < 0)
			vi_error_wrap("VM '%s'", h[i].m.def.name);
		else if (!ctx.json && !ctx.quiet) {
			printf("%-20s %s%s%s\n", h[i].m.def.name, name, saved ? ", was kept as " : "",
			       saved ? saved : "");
			fflush(stdout);
		}
		free(saved);
		/* Taken paused, it comes back paused: all go on together below. */
		struct vi_hv_state hs;
		if (rc == 0 && vi_machine_state(&h[i].m, &hs) == VI_HV_PAUSED)
			h[i].paused = true;
		vi_error_clear();
	}
	release_machines(h, n);
	if (rc == 0) {
		if (ctx.json) {
			struct json_object *doc = vi_json_doc();
			json_object_object_add(doc, "env", vi_json_str(env));
			json_object_object_add(doc, "snapshot", vi_json_str(name));
			json_object_object_add(doc, "machines", json_object_new_int((int)n));
			vi_json_print(doc);
		} else {
			vi_info("environment '%s' is at snapshot '%s': %zu machine%s", env, name, n,
				n == 1 ? "" : "s");
		}
	}
	state_release(&st);
	close(lock);
	return rc;
}

/* --- status, down, ssh ------------------------------------------------------------------- */

/* The names of the environments on record. */
static int env_names(char ***names, size_t *n)
{
	char *dir = vi_store_path(&ctx.store, "envs");
	DIR *d = opendir(dir);
	struct dirent *e;

	*names = NULL;
	*n = 0;
	free(dir);
	while (d && (e = readdir(d))) {
		size_t len = strlen(e->d_name);
		if (e->d_name[0] == '.' || len < 6 || strcmp(e->d_name + len - 5, ".yaml"))
			continue;
		*names = xrealloc(*names, (*n + 1) * sizeof(char *));
		(*names)[(*n)++] = xstrndup(e->d_name, len - 5);
	}
	if (d)
		closedir(d);
	return 0;
}

int cmd_env_status(int argc, char **argv)
{
	struct json_object *doc = vi_json_doc(), *list = json_object_new_array();
	char **names = NULL;
	size_t n = 0;
	int rc = 0;

	if (argc) {
		names = xcalloc(1, sizeof(char *));
		names[n++] = xstrdup(argv[0]);
	} else {
		env_names(&names, &n);
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct state st;
		struct json_object *vms = NULL;
		int found = state_load(names[i], &st);
		if (found < 0) {
			rc = found;
			break;
		}
		if (found == 1) {
			rc = vi_error(VI_ENOTFOUND, "no environment '%s' (see 'vi env status')",
				      names[i]);
			break;
		}
		if ((rc = list_states(names[i], &vms)) < 0) {
			state_release(&st);
			break;
		}
		struct json_object *o = json_object_new_object(), *ms = json_object_new_array();
		size_t up = 0;
		json_object_object_add(o, "name", vi_json_str(names[i]));
		json_object_object_add(o, "file", vi_json_str(st.file));
		for (size_t k = 0; k < st.nmachines; k++) {
			const char *s = state_of(vms, st.machines[k].name);
			struct json_object *m = json_object_new_object();
			json_object_object_add(m, "vm", vi_json_str(st.machines[k].name));
			json_object_object_add(m, "state", vi_json_str(s ? s : "missing"));
			up += s && !strcmp(s, "running");
			if (argc && s && !strcmp(s, "running")) {
				char **addrs = xcalloc(st.nnets + 1, sizeof(char *));
				struct json_object *a = json_object_new_object();
				private_addresses(st.machines[k].name, &st, addrs);
				for (size_t x = 0; x < st.nnets; x++) {
					if (addrs[x])
						json_object_object_add(a, st.nets[x].name,
								       vi_json_str(addrs[x]));
					free(addrs[x]);
				}
				free(addrs);
				json_object_object_add(m, "addresses", a);
			}
			json_object_array_add(ms, m);
		}
		struct json_object *nets = json_object_new_array();
		for (size_t x = 0; x < st.nnets; x++) {
			struct json_object *net = json_object_new_object();
			json_object_object_add(net, "name", vi_json_str(st.nets[x].name));
			json_object_object_add(net, "network", vi_json_str(st.nets[x].libvirt));
			json_object_object_add(net, "hv", vi_json_str(st.nets[x].hv));
			json_object_object_add(net, "cidr", vi_json_str(st.nets[x].cidr));
			json_object_array_add(nets, net);
		}
		json_object_object_add(o, "networks", nets);
		json_object_object_add(o, "machines", ms);
		json_object_object_add(o, "running", json_object_new_int((int)up));
		json_object_array_add(list, o);
		json_object_put(vms);
		state_release(&st);
	}
	if (rc == 0 && ctx.json) {
		json_object_object_add(doc, "envs", json_object_get(list));
		vi_json_print(doc);
		doc = NULL;
	} else if (rc == 0 && !argc) {
		if (!n)
			vi_info("no environments: 'vi env up FILE' makes one");
		else
			printf("%-16s %-9s %s\n", "ENV", "RUNNING", "FILE");
		for (size_t i = 0; i < json_object_array_length(list); i++) {
			struct json_object *o = json_object_array_get_idx(list, i), *ms;
			json_object_object_get_ex(o, "machines", &ms);
			char run[32];
			snprintf(run, sizeof(run), "%d/%zu", (int)vi_json_get_int(o, "running"),
				 json_object_array_length(ms));
			printf("%-16s %-9s %s\n", vi_json_get_str(o, "name"), run,
			       vi_json_get_str(o, "file") ? vi_json_get_str(o, "file") : "-");
		}
	} else if (rc == 0) {
		struct json_object *o = json_object_array_get_idx(list, 0), *ms, *nets;
		json_object_object_get_ex(o, "machines", &ms);
		json_object_object_get_ex(o, "networks", &nets);
		printf("%-20s %-9s %s\n", "VM", "STATE", "ADDRESSES");
		for (size_t k = 0; k < json_object_array_length(ms); k++) {
			struct json_object *m = json_object_array_get_idx(ms, k), *a = NULL;
			char *addrs = xstrdup("");
			if (json_object_object_get_ex(m, "addresses", &a)) {
				json_object_object_foreach(a, key, val)
				{
					char *more =
					    xasprintf("%s%s%s %s", addrs, *addrs ? ", " : "", key,
						      json_object_get_string(val));
					free(addrs);
					addrs = more;
				}
			}
			printf("%-20s %-9s %s\n", vi_json_get_str(m, "vm"),
			       vi_json_get_str(m, "state"), *addrs ? addrs : "-");
			free(addrs);
		}
		for (size_t x = 0; x < json_object_array_length(nets); x++) {
			struct json_object *net = json_object_array_get_idx(nets, x);
			printf("network %s: %s (%s on hv-%s)\n", vi_json_get_str(net, "name"),
			       vi_json_get_str(net, "cidr"), vi_json_get_str(net, "network"),
			       vi_json_get_str(net, "hv"));
		}
	}
	if (doc)
		json_object_put(doc);
	json_object_put(list);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return rc;
}

int cmd_env_down(int argc, char **argv)
{
	const char *name = argv[0];
	struct state st;
	struct json_object *vms = NULL;
	size_t gone = 0;
	int lock, rc, found;
	(void)argc;

	if ((lock = lock_env(name)) < 0)
		return lock;
	if ((found = state_load(name, &st)) < 0) {
		close(lock);
		return found;
	}
	if (found == 1) {
		close(lock);
		return vi_error(VI_ENOTFOUND, "no environment '%s' (see 'vi env status')", name);
	}
	/* Every VM labelled with it, those on record or not. */
	if ((rc = list_states(name, &vms)) < 0)
		goto out;
	for (size_t i = 0; i < json_object_array_length(vms) && rc == 0; i++) {
		struct json_object *v = json_object_array_get_idx(vms, i);
		const char *vm = vi_json_get_str(v, "name"), *s = vi_json_get_str(v, "state");
		if (keep && s && strcmp(s, "running") && strcmp(s, "paused"))
			continue;
		const char *stop[] = { "stop", vm, NULL },
			   *destroy[] = { "destroy", "--force", vm, NULL };
		struct json_object *o = vi_json(keep ? stop : destroy);
		if (!o) {
			rc = vi_error_wrap("environment '%s'", name);
			break;
		}
		json_object_put(o);
		gone++;
		if (!ctx.json && !ctx.quiet) {
			printf("%-20s %s\n", vm, keep ? "stopped" : "destroyed");
			fflush(stdout);
		}
	}
	for (size_t i = 0; rc == 0 && !keep && i < st.nnets; i++) {
		struct vi_hv *hv = vi_hv_find(&ctx.plugins, st.nets[i].hv);
		if (!hv || vi_hv_net_down(hv, st.nets[i].libvirt) < 0)
			rc = vi_error_wrap("network '%s' of environment '%s'", st.nets[i].name,
					   name);
	}
	if (rc == 0 && !keep) {
		char *path = state_path(name);
		if (unlink(path) < 0 && errno != ENOENT)
			rc = vi_error_errno(VI_EFAIL, errno, "cannot remove '%s'", path);
		free(path);
	}
	if (rc == 0) {
		if (ctx.json) {
			struct json_object *doc = vi_json_doc();
			json_object_object_add(doc, "env", vi_json_str(name));
			json_object_object_add(doc, keep ? "stopped" : "destroyed",
					       json_object_new_int((int)gone));
			vi_json_print(doc);
		} else {
			vi_info("environment '%s' %s: %zu machine%s%s", name,
				keep ? "stopped" : "destroyed", gone, gone == 1 ? "" : "s",
				keep ? "" : ", its networks and record");
		}
	}
out:
	if (vms)
		json_object_put(vms);
	state_release(&st);
	close(lock);
	return rc;
}

/* vi env ssh ENV MACHINE [-- COMMAND...]: vi ssh ENV-MACHINE. */
int cmd_env_ssh(int argc, char **argv)
{
	char *vm, **args;
	int n = 0, rc;

	if (argc > 2 && vi_opt_dashdash != 2)
		return vi_error(VI_EUSAGE, "unexpected argument '%s' (a command goes after --)",
				argv[2]);
	if ((rc = vi_check_name(argv[0], "environment")) < 0)
		return rc;
	vm = xasprintf("%s-%s", argv[0], argv[1]);
	args = xcalloc((size_t)argc + 8, sizeof(char *));
	args[n++] = (char *)vi_self_exe();
	args[n++] = "--home";
	args[n++] = (char *)ctx.store.home;
	args[n++] = "ssh";
	args[n++] = vm;
	if (argc > 2)
		args[n++] = "--";
	for (int i = 2; i < argc; i++)
		args[n++] = argv[i];
	execv(args[0], args);
	rc = vi_error_errno(VI_EFAIL, errno, "cannot run %s", args[0]);
	free(args);
	free(vm);
	return rc;
}
