/* vi host add|rm|list|show|info: the other machines running vi, reached over
 * ssh (lib/host.h); and `vi --host NAME VERB ...`, which runs a verb there. */
#include "cmd.h"
#include "error.h"
#include "host.h"
#include "log.h"
#include "machine.h"
#include "output.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *host_home, *host_vi, *host_libvirt;

const struct vi_option host_add_options[] = {
	{ "home", 0, VI_OPT_STRING, &host_home, "DIR", "vi's store on that host",
	  VI_COMPLETE_NONE },
	{ "vi", 0, VI_OPT_STRING, &host_vi, "PATH", "vi's path on that host", VI_COMPLETE_NONE },
	{ "libvirt", 0, VI_OPT_STRING, &host_libvirt, "URI",
	  "the libvirt URI that reaches it (default DRIVER+ssh://ADDRESS/system)",
	  VI_COMPLETE_NONE },
	OPT_JSON,
	VI_OPT_TABLE_END,
};

const struct vi_option host_options[] = {
	OPT_JSON,
	VI_OPT_TABLE_END,
};

const struct cmd host_commands[] = {
	{ "add", cmd_host_add, 2, 2, NEEDS_STORE, "HOST URI", host_add_options,
	  "add a host that runs vi, reached at ssh://[USER@]ADDRESS[:PORT]" },
	{ "info", cmd_host_info, 0, 0, NEEDS_STORE | NEEDS_PLUGINS | ALL_PLUGINS, "",
	  host_options, "show this machine as other hosts see it" },
	{ "list", cmd_host_list, 0, 0, NEEDS_STORE, "", host_options,
	  "list the hosts: reachable or why not, backends, CPUs, memory, VMs" },
	{ "rm", cmd_host_rm, 1, 1, NEEDS_STORE, "HOST", host_options, "remove a host" },
	{ "show", cmd_host_show, 1, 1, NEEDS_STORE, "HOST", host_options,
	  "show one host as it answers now" },
	{ NULL },
};

/* --- the inventory ----------------------------------------------------------------- */

/* Changes to hosts.yaml are serialised by a lock beside it. */
static int lock_hosts(void)
{
	char *path = vi_store_path(&ctx.store, ".hosts.lock");
	int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);

	if (fd < 0 || flock(fd, LOCK_EX) < 0) {
		int rc = vi_error_errno(VI_EFAIL, errno, "cannot lock '%s'", path);
		if (fd >= 0)
			close(fd);
		free(path);
		return rc;
	}
	free(path);
	return fd;
}

int cmd_host_add(int argc, char **argv)
{
	struct vi_host_entry e = { 0 };
	struct vi_hosts h;
	int lock, rc;
	(void)argc;

	if ((rc = vi_check_name(argv[0], "host")) < 0 || (rc = vi_host_parse_uri(argv[1], &e)) < 0)
		return rc;
	vi_host_entry_release(&e);
	if (host_home && host_home[0] != '/')
		return vi_error(VI_EUSAGE, "--home must be an absolute path on that host, not '%s'",
				host_home);
	if (host_vi && !*host_vi)
		return vi_error(VI_EUSAGE, "--vi is empty: name vi's path on that host");
	if (host_libvirt && (!strstr(host_libvirt, "://") || strspn(host_libvirt, " \t") ||
			     strpbrk(host_libvirt, " \t\n")))
		return vi_error(VI_EUSAGE,
				"--libvirt takes a libvirt URI such as qemu+ssh://ADDRESS/system, "
				"not '%s'",
				host_libvirt);
	if ((lock = lock_hosts()) < 0)
		return lock;
	if ((rc = vi_hosts_load(&ctx.store, &h)) < 0)
		goto out;
	if (vi_hosts_find(&h, argv[0])) {
		rc = vi_error(VI_ESTATE, "host '%s' exists", argv[0]);
		goto out_hosts;
	}
	h.hosts = xrealloc(h.hosts, (h.n + 1) * sizeof(*h.hosts));
	h.hosts[h.n++] = (struct vi_host_entry){ .name = xstrdup(argv[0]), .uri = xstrdup(argv[1]),
						 .home = xstrdup(host_home),
						 .vi = xstrdup(host_vi),
						 .libvirt = xstrdup(host_libvirt) };
	if ((rc = vi_hosts_save(&ctx.store, &h)) < 0)
		goto out_hosts;
	if (ctx.json) {
		struct json_object *doc = vi_json_doc();
		json_object_object_add(doc, "name", vi_json_str(argv[0]));
		json_object_object_add(doc, "uri", vi_json_str(argv[1]));
		vi_json_print(doc);
	} else {
		vi_info("added host '%s' at %s", argv[0], argv[1]);
	}
out_hosts:
	vi_hosts_release(&h);
out:
	close(lock);
	return rc;
}

int cmd_host_rm(int argc, char **argv)
{
	struct vi_host_entry *e;
	struct vi_hosts h;
	int lock, rc;
	(void)argc;

	if ((lock = lock_hosts()) < 0)
		return lock;
	if ((rc = vi_hosts_load(&ctx.store, &h)) < 0)
		goto out;
	if ((rc = vi_hosts_get(&h, argv[0], &e)) < 0)
		goto out_hosts;
	vi_host_entry_release(e);
	*e = h.hosts[--h.n];
	if ((rc = vi_hosts_save(&ctx.store, &h)) < 0)
		goto out_hosts;
	if (ctx.json) {
		struct json_object *doc = vi_json_doc();
		json_object_object_add(doc, "name", vi_json_str(argv[0]));
		vi_json_print(doc);
	} else {
		vi_info("removed host '%s'", argv[0]);
	}
out_hosts:
	vi_hosts_release(&h);
out:
	close(lock);
	return rc;
}

/* --- what a host says of itself ------------------------------------------------------ */

/* The value of a "Key:   N kB" line of /proc/meminfo, in bytes; 0 if absent. */
static uint64_t meminfo(const char *text, const char *key)
{
	const char *p = text;
	size_t len = strlen(key);

	while (p && *p) {
		if (!strncmp(p, key, len) && p[len] == ':')
			return strtoull(p + len + 1, NULL, 10) * 1024;
		p = strchr(p, '\n');
		if (p)
			p++;
	}
	return 0;
}

static char *read_proc(const char *path)
{
	char *text = NULL;
	size_t len = 0;

	if (vi_read_file(path, &text, &len) < 0) {
		vi_error_clear();
		return xstrdup("");
	}
	return text;
}

/* This machine: what `vi host info` prints and other hosts read. */
static struct json_object *local_info(void)
{
	struct json_object *o = json_object_new_object(), *backends = json_object_new_array();
	char *mem = read_proc("/proc/meminfo"), *load = read_proc("/proc/loadavg");
	char *model = vi_cpuinfo("model name"), *flags = vi_cpuinfo("flags"), name[256] = "";
	char **vms = NULL;
	size_t nvms = 0, running = 0;
	struct utsname u;

	gethostname(name, sizeof(name) - 1);
	json_object_object_add(o, "hostname", vi_json_str(name));
	json_object_object_add(o, "version", vi_json_str(VI_VERSION));
	json_object_object_add(o, "home", vi_json_str(ctx.store.home));
	json_object_object_add(o, "kernel", vi_json_str(uname(&u) == 0 ? u.release : NULL));
	json_object_object_add(o, "cpus", json_object_new_int64(sysconf(_SC_NPROCESSORS_ONLN)));
	json_object_object_add(o, "cpu_model", vi_json_str(model));
	json_object_object_add(o, "cpu_flags", vi_json_str(flags));
	json_object_object_add(o, "memory", json_object_new_int64((int64_t)meminfo(mem, "MemTotal")));
	json_object_object_add(o, "memory_free",
			       json_object_new_int64((int64_t)meminfo(mem, "MemAvailable")));
	json_object_object_add(o, "load", json_object_new_double(strtod(load, NULL)));
	for (size_t i = 0; i < ctx.plugins.n; i++) {
		struct vi_hv *hv = &ctx.plugins.hv[i];
		vi_hv_probe(hv, NULL);
		if (vi_hv_usable(hv))
			json_object_array_add(backends, vi_json_str(hv->ops.name));
	}
	vi_error_clear();
	json_object_object_add(o, "backends", backends);
	if (vi_store_list_vms(&ctx.store, &vms, &nvms) == 0) {
		for (size_t i = 0; i < nvms; i++) {
			struct vi_machine m;
			struct vi_hv_state st;
			if (vi_machine_open(&ctx.store, &ctx.plugins, vms[i], NULL, false, &m) < 0)
				continue;
			if (vi_hv_state_active(vi_machine_state(&m, &st)))
				running++;
			vi_machine_release(&m);
		}
		vi_store_names_free(vms, nvms);
	}
	vi_error_clear();
	json_object_object_add(o, "vms", json_object_new_int64((int64_t)nvms));
	json_object_object_add(o, "vms_running", json_object_new_int64((int64_t)running));
	free(mem);
	free(load);
	free(model);
	free(flags);
	return o;
}

/* The backends as "a,b", malloc'd. */
static char *backend_list(struct json_object *info)
{
	struct json_object *list;
	char *s = xstrdup("");

	if (!info || !json_object_object_get_ex(info, "backends", &list))
		return s;
	for (size_t i = 0; i < json_object_array_length(list); i++) {
		char *more = xasprintf("%s%s%s", s, *s ? "," : "",
				       json_object_get_string(json_object_array_get_idx(list, i)));
		free(s);
		s = more;
	}
	return s;
}

static struct json_object *answer_json(const struct vi_host_answer *a)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "name", vi_json_str(a->e->name));
	json_object_object_add(o, "uri", vi_json_str(a->e->uri));
	json_object_object_add(o, "home", vi_json_str(a->e->home));
	json_object_object_add(o, "vi", vi_json_str(a->e->vi));
	json_object_object_add(o, "libvirt", vi_json_str(a->e->libvirt));
	json_object_object_add(o, "reachable", json_object_new_boolean(!a->problem));
	json_object_object_add(o, "error", vi_json_str(a->problem));
	json_object_object_add(o, "rtt_ms", vi_json_ms(a->ms));
	if (a->info) {
		json_object_object_del(a->info, "vi");
		json_object_object_add(o, "info", json_object_get(a->info));
	}
	return o;
}

int cmd_host_list(int argc, char **argv)
{
	struct vi_hosts h;
	struct vi_host_answer *a;
	const struct vi_host_entry **hosts;
	int rc;
	(void)argc, (void)argv;

	if ((rc = vi_hosts_load(&ctx.store, &h)) < 0)
		return rc;
	hosts = xcalloc(h.n + 1, sizeof(*hosts));
	a = xcalloc(h.n + 1, sizeof(*a));
	for (size_t i = 0; i < h.n; i++)
		hosts[i] = &h.hosts[i];
	vi_hosts_ask(hosts, h.n, a);
	if (ctx.json) {
		struct json_object *doc = vi_json_doc(), *list = json_object_new_array();
		for (size_t i = 0; i < h.n; i++)
			json_object_array_add(list, answer_json(&a[i]));
		json_object_object_add(doc, "hosts", list);
		vi_json_print(doc);
	} else if (h.n) {
		struct vi_table t;
		vi_table_init(&t, 10,
			      (const char *[]){ "NAME", "URI", "STATE", "BACKENDS", "CPUS", "MEMORY",
						"FREE", "VMS", "RTT", "PROBLEM" });
		for (size_t i = 0; i < h.n; i++) {
			char cpus[16], mem[32], freem[32], vms[48], rtt[32];
			char *be = backend_list(a[i].info);
			bool up = a[i].info != NULL;
			snprintf(cpus, sizeof(cpus), "%lld", (long long)vi_json_get_int(a[i].info, "cpus"));
			vi_format_human((uint64_t)vi_json_get_int(a[i].info, "memory"), mem, sizeof(mem));
			vi_format_human((uint64_t)vi_json_get_int(a[i].info, "memory_free"), freem, sizeof(freem));
			snprintf(vms, sizeof(vms), "%lld/%lld", (long long)vi_json_get_int(a[i].info, "vms_running"),
				 (long long)vi_json_get_int(a[i].info, "vms"));
			snprintf(rtt, sizeof(rtt), "%.0f ms", a[i].ms);
			vi_table_add(&t, (const char *[]){ h.hosts[i].name, h.hosts[i].uri,
							   up ? "up" : "down", up ? be : NULL,
							   up ? cpus : NULL, up ? mem : NULL,
							   up ? freem : NULL, up ? vms : NULL, rtt,
							   a[i].problem });
			free(be);
		}
		vi_table_print(&t);
		vi_table_release(&t);
	}
	for (size_t i = 0; i < h.n; i++)
		vi_host_answer_release(&a[i]);
	free(a);
	free(hosts);
	vi_hosts_release(&h);
	return 0;
}

static void print_info(struct json_object *info)
{
	char mem[32], freem[32];
	char *be = backend_list(info);

	vi_format_human((uint64_t)vi_json_get_int(info, "memory"), mem, sizeof(mem));
	vi_format_human((uint64_t)vi_json_get_int(info, "memory_free"), freem, sizeof(freem));
	printf("hostname:  %s\n", vi_json_get_str(info, "hostname") ? vi_json_get_str(info, "hostname") : "-");
	printf("vi:        %s, store %s\n", vi_json_get_str(info, "version") ? vi_json_get_str(info, "version") : "-",
	       vi_json_get_str(info, "home") ? vi_json_get_str(info, "home") : "-");
	printf("kernel:    %s\n", vi_json_get_str(info, "kernel") ? vi_json_get_str(info, "kernel") : "-");
	printf("cpus:      %lld (%s)\n", (long long)vi_json_get_int(info, "cpus"),
	       vi_json_get_str(info, "cpu_model") ? vi_json_get_str(info, "cpu_model") : "unknown model");
	printf("memory:    %s, %s free\n", mem, freem);
	printf("load:      %.2f\n", json_object_get_double(
					    json_object_object_get(info, "load")));
	printf("backends:  %s\n", *be ? be : "none usable");
	printf("vms:       %lld, %lld running\n", (long long)vi_json_get_int(info, "vms"),
	       (long long)vi_json_get_int(info, "vms_running"));
	free(be);
}

int cmd_host_show(int argc, char **argv)
{
	struct vi_host_entry *e;
	struct vi_hosts h;
	struct vi_host_answer a;
	int rc;
	(void)argc;

	if ((rc = vi_hosts_load(&ctx.store, &h)) < 0)
		return rc;
	if ((rc = vi_hosts_get(&h, argv[0], &e)) < 0)
		goto out;
	vi_hosts_ask((const struct vi_host_entry *const *)&e, 1, &a);
	if (ctx.json) {
		struct json_object *doc = vi_json_doc();
		json_object_object_add(doc, "host", answer_json(&a));
		vi_json_print(doc);
	} else {
		printf("name:      %s\n", e->name);
		printf("uri:       %s\n", e->uri);
		if (e->home)
			printf("home:      %s\n", e->home);
		if (e->vi)
			printf("vi path:   %s\n", e->vi);
		if (e->libvirt)
			printf("libvirt:   %s\n", e->libvirt);
		printf("state:     %s\n", a.info ? "up" : "down");
		printf("rtt:       %.0f ms\n", a.ms);
		if (a.info)
			print_info(a.info);
	}
	/* A host that cannot be reached is not what was asked to be shown. */
	if (!a.info)
		rc = vi_error(VI_EFAIL, "host '%s' %s", e->name, a.problem);
	vi_host_answer_release(&a);
out:
	vi_hosts_release(&h);
	return rc;
}

int cmd_host_info(int argc, char **argv)
{
	struct json_object *info = local_info();
	(void)argc, (void)argv;

	if (ctx.json) {
		struct json_object *doc = vi_json_doc();
		json_object_object_foreach(info, k, v) json_object_object_add(doc, k,
									      json_object_get(v));
		vi_json_print(doc);
	} else {
		print_info(info);
	}
	json_object_put(info);
	return 0;
}

/* --- vi --host NAME VERB ... -------------------------------------------------------- */

/* Lines ssh itself writes when it fails: held back and said as vi's error. */
static bool ssh_line(const char *line)
{
	static const char *const starts[] = { "ssh: ", "ssh_", "kex_", "Permission denied",
					      "Host key verification failed",
					      "Connection closed by", "Connection timed out",
					      "Connection refused", "Could not resolve" };

	for (size_t i = 0; i < ARRAY_SIZE(starts); i++)
		if (!strncmp(line, starts[i], strlen(starts[i])))
			return true;
	return false;
}

int cmd_relay(const char *name, int argc, char **argv, int nglobal)
{
	struct vi_host_entry *e;
	struct vi_hosts h;
	char **args = xcalloc((size_t)argc + 1, sizeof(char *)), **ssh = NULL, *held = NULL;
	size_t nargs = 0, nheld = 0, len = 0;
	char buf[4096];
	int rc, status = 0, err[2] = { -1, -1 };
	bool tty = isatty(0) && isatty(1);
	pid_t pid;

	if ((rc = vi_hosts_load(&ctx.store, &h)) < 0)
		goto out_args;
	if ((rc = vi_hosts_get(&h, name, &e)) < 0)
		goto out;
	/* The verb and everything it was given, but where it runs and with which
	 * store: that is the host's. A --home after the verb is the verb's (vi
	 * host add --home) or meant for there, and goes. */
	for (int i = 0; i < argc; i++) {
		if (!strcmp(argv[i], "--")) {
			for (; i < argc; i++)
				args[nargs++] = argv[i];
			break;
		}
		bool here = i < nglobal;
		if (!strcmp(argv[i], "--host") || (here && !strcmp(argv[i], "--home"))) {
			i++;
			continue;
		}
		if (!strncmp(argv[i], "--host=", 7) || (here && !strncmp(argv[i], "--home=", 7)))
			continue;
		args[nargs++] = argv[i];
	}
	ssh = vi_host_argv(e, tty ? VI_HOST_TTY : 0, args, nargs);
	if (pipe2(err, O_CLOEXEC) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot make a pipe");
		goto out;
	}
	pid = vi_host_spawn(ssh, -1, -1, err[1]);
	close(err[1]);
	err[1] = -1;
	if (pid < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot fork");
		goto out;
	}
	/* ^C is for what runs there; ssh hears it and ends. */
	signal(SIGINT, SIG_IGN);
	signal(SIGQUIT, SIG_IGN);
	/* The host's standard error passes through line by line, but for ssh's own
	 * complaints, which become one line of vi's when ssh fails. */
	for (;;) {
		ssize_t n = read(err[0], buf + len, sizeof(buf) - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			if (len) {
				buf[len] = '\0';
				fputs(buf, stderr);
			}
			break;
		}
		len += (size_t)n;
		buf[len] = '\0';
		char *nl;
		while ((nl = strchr(buf, '\n')) || len == sizeof(buf) - 1) {
			size_t l = nl ? (size_t)(nl - buf) + 1 : len;
			if (ssh_line(buf)) {
				held = xrealloc(held, nheld + l + 1);
				memcpy(held + nheld, buf, l);
				nheld += l;
				held[nheld] = '\0';
			} else {
				fwrite(buf, 1, l, stderr);
				fflush(stderr);
			}
			memmove(buf, buf + l, len - l);
			len -= l;
			buf[len] = '\0';
		}
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
	if (status == 255) {
		rc = vi_error(VI_EFAIL, "cannot reach host '%s': %s", name,
			      vi_host_ssh_reason(held));
	} else {
		if (held)
			fputs(held, stderr);
		if (status == 127)
			rc = vi_error(VI_ENOTFOUND,
				      "host '%s' has no vi at '%s' (vi host add --vi PATH names it)",
				      name, e->vi ? e->vi : "vi");
		else
			ctx.exit_status = status;
	}
out:
	if (err[0] >= 0)
		close(err[0]);
	if (err[1] >= 0)
		close(err[1]);
	vi_host_argv_free(ssh);
	free(held);
	vi_hosts_release(&h);
out_args:
	free(args);
	return rc;
}
