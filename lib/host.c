/* The host inventory and vi run over ssh (host.h). */
#include "host.h"
#include "error.h"
#include "output.h"
#include "util.h"
#include "yaml-doc.h"

#include <json-c/json.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>
#include <unistd.h>

#define HOSTS_SCHEMA 1
#define HOSTS_FILE "hosts.yaml"

/* --- URIs --------------------------------------------------------------------------- */

static bool all_of(const char *s, size_t len, const char *extra)
{
	for (size_t i = 0; i < len; i++)
		if (!isalnum((unsigned char)s[i]) && !strchr(extra, s[i]))
			return false;
	return len > 0;
}

int vi_host_parse_uri(const char *uri, struct vi_host_entry *e)
{
	const char *p = uri, *at, *host, *end;
	char *port_text = NULL;
	unsigned long port = 0;

	e->user = e->addr = NULL;
	e->port = 0;
	if (strncmp(p, "ssh://", 6))
		goto bad;
	p += 6;
	at = strchr(p, '@');
	if (at) {
		if (!all_of(p, (size_t)(at - p), "._-"))
			goto bad;
		e->user = xstrndup(p, (size_t)(at - p));
		p = at + 1;
	}
	if (*p == '[') {
		end = strchr(p, ']');
		if (!end || !all_of(p + 1, (size_t)(end - p - 1), ":.%") || !strchr(p, ':'))
			goto bad;
		host = p + 1;
		e->addr = xstrndup(host, (size_t)(end - host));
		p = end + 1;
	} else {
		size_t len = strcspn(p, ":/");
		if (!all_of(p, len, ".-_") || p[0] == '-')
			goto bad;
		e->addr = xstrndup(p, len);
		p += len;
	}
	if (*p == ':') {
		char *stop;
		p++;
		port_text = xstrndup(p, strcspn(p, "/"));
		errno = 0;
		port = strtoul(port_text, &stop, 10);
		if (!*port_text || *stop || errno || port < 1 || port > 65535 || !isdigit(*port_text))
			goto bad;
		p += strlen(port_text);
	}
	/* A trailing slash is harmless; a path is not something ssh reaches. */
	if (*p == '/')
		p++;
	if (*p)
		goto bad;
	free(port_text);
	e->port = (unsigned)port;
	return 0;
bad:
	free(port_text);
	free(e->user);
	free(e->addr);
	e->user = e->addr = NULL;
	return vi_error(VI_EUSAGE, "invalid host URI '%s': expected ssh://[USER@]ADDRESS[:PORT]",
			uri);
}

/* --- the inventory -------------------------------------------------------------------- */

void vi_host_entry_release(struct vi_host_entry *e)
{
	free(e->name);
	free(e->uri);
	free(e->user);
	free(e->addr);
	free(e->home);
	free(e->vi);
	free(e->libvirt);
	memset(e, 0, sizeof(*e));
}

void vi_hosts_release(struct vi_hosts *h)
{
	for (size_t i = 0; i < h->n; i++)
		vi_host_entry_release(&h->hosts[i]);
	free(h->hosts);
	h->hosts = NULL;
	h->n = 0;
}

static int load_entry(struct vi_yaml *y, const char *name, yaml_node_t *map,
		      struct vi_host_entry *e)
{
	static const char *const keys[] = { "uri", "home", "vi", "libvirt" };
	int rc;

	e->name = xstrdup(name);
	if ((rc = vi_yaml_expect_map(y, map, "a host")) < 0 ||
	    (rc = vi_yaml_check_keys(y, map, keys, sizeof(keys) / sizeof(keys[0]))) < 0 ||
	    (rc = vi_yaml_dup_str(y, map, "uri", true, &e->uri)) < 0 ||
	    (rc = vi_yaml_dup_str(y, map, "home", false, &e->home)) < 0 ||
	    (rc = vi_yaml_dup_str(y, map, "vi", false, &e->vi)) < 0 ||
	    (rc = vi_yaml_dup_str(y, map, "libvirt", false, &e->libvirt)) < 0)
		return rc;
	if ((rc = vi_check_name(name, "host")) < 0 || (rc = vi_host_parse_uri(e->uri, e)) < 0)
		return vi_yaml_error(y, map, -rc, "%s", vi_error_message());
	return 0;
}

int vi_hosts_load(const struct vi_store *s, struct vi_hosts *h)
{
	char *path = vi_store_path(s, HOSTS_FILE);
	yaml_node_t *root, *list, *k, *v;
	struct vi_yaml y;
	int rc;

	h->hosts = NULL;
	h->n = 0;
	rc = vi_yaml_load_file(&y, path);
	free(path);
	if (rc == -VI_ENOTFOUND) {
		vi_error_clear();
		return 0;
	}
	if (rc < 0)
		return rc;
	root = vi_yaml_root(&y);
	static const char *const keys[] = { "schema", "hosts" };
	if ((rc = vi_yaml_expect_map(&y, root, "the host list")) < 0 ||
	    (rc = vi_yaml_check_keys(&y, root, keys, 2)) < 0 ||
	    (rc = vi_yaml_check_schema(&y, root, HOSTS_SCHEMA)) < 0)
		goto out;
	list = vi_yaml_get(&y, root, "hosts");
	if (!list)
		goto out;
	if ((rc = vi_yaml_expect_map(&y, list, "'hosts'")) < 0)
		goto out;
	h->hosts = xcalloc((size_t)(list->data.mapping.pairs.top - list->data.mapping.pairs.start) +
				   1,
			   sizeof(*h->hosts));
	vi_yaml_map_foreach(&y, list, k, v)
	{
		const char *name = vi_yaml_scalar(k);
		if (!name) {
			rc = vi_yaml_error(&y, k, VI_EUSAGE, "a host's name must be a string");
			break;
		}
		if ((rc = load_entry(&y, name, v, &h->hosts[h->n++])) < 0)
			break;
	}
out:
	vi_yaml_release(&y);
	if (rc < 0)
		vi_hosts_release(h);
	return rc < 0 ? rc : 0;
}

int vi_hosts_save(const struct vi_store *s, const struct vi_hosts *h)
{
	char *path = vi_store_path(s, HOSTS_FILE);
	struct vi_yaml_out o;
	int rc;

	vi_yaml_out_init(&o);
	vi_yaml_out_map_start(&o);
	vi_yaml_out_uint(&o, "schema", HOSTS_SCHEMA);
	vi_yaml_out_scalar(&o, "hosts");
	vi_yaml_out_map_start(&o);
	for (size_t i = 0; i < h->n; i++) {
		vi_yaml_out_scalar(&o, h->hosts[i].name);
		vi_yaml_out_map_start(&o);
		vi_yaml_out_str(&o, "uri", h->hosts[i].uri);
		vi_yaml_out_str(&o, "home", h->hosts[i].home);
		vi_yaml_out_str(&o, "vi", h->hosts[i].vi);
		vi_yaml_out_str(&o, "libvirt", h->hosts[i].libvirt);
		vi_yaml_out_end(&o);
	}
	vi_yaml_out_end(&o);
	vi_yaml_out_end(&o);
	rc = vi_yaml_out_save(&o, path, 0600);
	free(path);
	return rc;
}

struct vi_host_entry *vi_hosts_find(struct vi_hosts *h, const char *name)
{
	for (size_t i = 0; i < h->n; i++)
		if (!strcmp(h->hosts[i].name, name))
			return &h->hosts[i];
	return NULL;
}

int vi_hosts_get(struct vi_hosts *h, const char *name, struct vi_host_entry **out)
{
	*out = vi_hosts_find(h, name);
	if (!*out)
		return vi_error(VI_ENOTFOUND, "unknown host '%s' (see 'vi host list')", name);
	return 0;
}

/* --- this machine --------------------------------------------------------------- */

char *vi_cpuinfo(const char *key)
{
	size_t klen = strlen(key), len;
	char *text = NULL, *value = NULL;

	if (vi_read_file("/proc/cpuinfo", &text, &len) < 0) {
		vi_error_clear();
		return NULL;
	}
	for (const char *p = text; p && *p && !value;) {
		const char *end = strchrnul(p, '\n'), *v = p + klen;
		if (!strncmp(p, key, klen) && (*v == ' ' || *v == '\t' || *v == ':')) {
			while (v < end && *v != ':')
				v++;
			if (v < end)
				v++;
			while (v < end && *v == ' ')
				v++;
			value = xstrndup(v, (size_t)(end - v));
		}
		p = *end ? end + 1 : NULL;
	}
	free(text);
	return value;
}

/* --- ssh ---------------------------------------------------------------------------- */

static void argv_add(char ***argv, size_t *n, char *s)
{
	*argv = xrealloc(*argv, (*n + 2) * sizeof(**argv));
	(*argv)[(*n)++] = s;
	(*argv)[*n] = NULL;
}

/* A URI query value: unreserved characters as they are, the rest %XX. */
static char *uri_escape(const char *v)
{
	char *out = xmalloc(strlen(v) * 3 + 1), *o = out;

	for (const unsigned char *p = (const unsigned char *)v; *p; p++)
		if ((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("-._~/", *p))
			*o++ = (char)*p;
		else
			o += sprintf(o, "%%%02X", *p);
	*o = '\0';
	return out;
}

char *vi_host_libvirt_uri(const struct vi_host_entry *e, const char *driver)
{
	const char *ssh = getenv("VI_SSH");
	char *words = xstrdup(ssh && *ssh ? ssh : ""), *save = NULL, *key = NULL;
	bool no_verify = false, want_key = false;

	if (e->libvirt) {
		free(words);
		return xstrdup(e->libvirt);
	}
	for (char *w = strtok_r(words, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
		if (want_key) {
			free(key);
			key = uri_escape(w);
		}
		want_key = !strcmp(w, "-i");
		if (!strncmp(w, "-i", 2) && w[2]) {
			free(key);
			key = uri_escape(w + 2);
		}
		no_verify |= !strcasecmp(w, "StrictHostKeyChecking=no");
	}
	free(words);
	char port[16] = "";
	if (e->port)
		snprintf(port, sizeof(port), ":%u", e->port);
	bool v6 = strchr(e->addr, ':') != NULL;
	char *uri = xasprintf("%s+ssh://%s%s%s%s%s%s/system%s%s%s%s", driver, e->user ? e->user : "",
			      e->user ? "@" : "", v6 ? "[" : "", e->addr, v6 ? "]" : "", port,
			      key || no_verify ? "?" : "", key ? "keyfile=" : "", key ? key : "",
			      no_verify ? (key ? "&no_verify=1" : "no_verify=1") : "");
	free(key);
	return uri;
}

char **vi_host_argv(const struct vi_host_entry *e, unsigned flags, char *const *args,
		    size_t nargs)
{
	const char *ssh = getenv("VI_SSH");
	char **argv = NULL, *words, *save = NULL, *cmd;
	size_t n = 0;

	words = xstrdup(ssh && *ssh ? ssh : "ssh");
	for (char *w = strtok_r(words, " \t", &save); w; w = strtok_r(NULL, " \t", &save))
		argv_add(&argv, &n, xstrdup(w));
	free(words);
	/* ssh takes the first value of an option: what VI_SSH says wins. */
	if (flags & VI_HOST_BATCH) {
		argv_add(&argv, &n, xstrdup("-o"));
		argv_add(&argv, &n, xstrdup("BatchMode=yes"));
		argv_add(&argv, &n, xstrdup("-o"));
		argv_add(&argv, &n, xstrdup("ConnectTimeout=10"));
	}
	argv_add(&argv, &n, xstrdup(flags & VI_HOST_TTY ? "-t" : "-T"));
	if (e->port) {
		argv_add(&argv, &n, xstrdup("-p"));
		argv_add(&argv, &n, xasprintf("%u", e->port));
	}
	argv_add(&argv, &n, e->user ? xasprintf("%s@%s", e->user, e->addr) : xstrdup(e->addr));
	argv_add(&argv, &n, xstrdup("--"));
	/* One command line for the remote shell: every word quoted. */
	cmd = vi_shell_quote(e->vi ? e->vi : "vi");
	if (e->home) {
		char *q = vi_shell_quote(e->home);
		char *more = xasprintf("%s --home %s", cmd, q);
		free(q);
		free(cmd);
		cmd = more;
	}
	for (size_t i = 0; i < nargs; i++) {
		char *q = vi_shell_quote(args[i]);
		char *more = xasprintf("%s %s", cmd, q);
		free(q);
		free(cmd);
		cmd = more;
	}
	argv_add(&argv, &n, cmd);
	return argv;
}

void vi_host_argv_free(char **argv)
{
	for (size_t i = 0; argv && argv[i]; i++)
		free(argv[i]);
	free(argv);
}

const char *vi_host_ssh_reason(const char *err)
{
	static __thread char line[512];
	const char *end, *start;

	if (!err)
		return "ssh failed";
	end = err + strlen(err);
	while (end > err && (end[-1] == '\n' || end[-1] == '\r'))
		end--;
	start = end;
	while (start > err && start[-1] != '\n')
		start--;
	if (start == end)
		return "ssh failed";
	snprintf(line, sizeof(line), "%.*s", (int)(end - start), start);
	/* No carriage return inside a one-line message. */
	for (char *c = line; *c; c++)
		if (*c == '\r')
			*c = ' ';
	return line;
}

pid_t vi_host_spawn(char *const *argv, int in_fd, int out_fd, int err_fd)
{
	pid_t pid = fork();

	if (pid != 0)
		return pid;
	if ((in_fd >= 0 && dup2(in_fd, 0) < 0) || (out_fd >= 0 && dup2(out_fd, 1) < 0) ||
	    (err_fd >= 0 && dup2(err_fd, 2) < 0))
		_exit(255);
	signal(SIGPIPE, SIG_DFL);
	execvp(argv[0], argv);
	dprintf(2, "ssh: cannot run %s: %s\n", argv[0], strerror(errno));
	_exit(255);
}

struct run {
	pid_t pid;
	int out, err;
	char *obuf, *ebuf;
	size_t olen, elen;
	double start;
	bool done;
};

static void run_start(struct run *r, const struct vi_host_entry *e, char *const *args,
		      size_t nargs)
{
	int o[2], er[2];
	char **argv = vi_host_argv(e, VI_HOST_BATCH, args, nargs);

	memset(r, 0, sizeof(*r));
	r->out = r->err = -1;
	r->start = vi_now_ms();
	if (pipe2(o, O_CLOEXEC) < 0 || pipe2(er, O_CLOEXEC) < 0) {
		r->done = true;
		r->pid = -1;
		vi_host_argv_free(argv);
		return;
	}
	int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
	r->pid = null < 0 ? -1 : vi_host_spawn(argv, null, o[1], er[1]);
	if (null >= 0)
		close(null);
	close(o[1]);
	close(er[1]);
	r->out = o[0];
	r->err = er[0];
	if (r->pid < 0) {
		close(r->out);
		close(r->err);
		r->out = r->err = -1;
		r->done = true;
	}
	vi_host_argv_free(argv);
}

static void drain(int *fd, char **buf, size_t *len)
{
	char chunk[4096];
	ssize_t n = read(*fd, chunk, sizeof(chunk));

	if (n < 0 && (errno == EINTR || errno == EAGAIN))
		return;
	if (n <= 0) {
		close(*fd);
		*fd = -1;
		return;
	}
	*buf = xrealloc(*buf, *len + (size_t)n + 1);
	memcpy(*buf + *len, chunk, (size_t)n);
	*len += (size_t)n;
	(*buf)[*len] = '\0';
}

void vi_hosts_run(const struct vi_host_entry *const *hosts, size_t n, char *const *args,
		  size_t nargs, unsigned timeout_ms, struct vi_host_result *res)
{
	struct run *runs = xcalloc(n ? n : 1, sizeof(*runs));
	struct pollfd *p = xcalloc(2 * n + 1, sizeof(*p));
	double start = vi_now_ms();

	for (size_t i = 0; i < n; i++)
		run_start(&runs[i], hosts[i], args, nargs);
	for (;;) {
		size_t np = 0;
		for (size_t i = 0; i < n; i++) {
			if (runs[i].out >= 0)
				p[np++] = (struct pollfd){ .fd = runs[i].out, .events = POLLIN };
			if (runs[i].err >= 0)
				p[np++] = (struct pollfd){ .fd = runs[i].err, .events = POLLIN };
		}
		double left = timeout_ms - vi_ms_since(start);
		if (!np || left <= 0)
			break;
		if (poll(p, np, (int)left + 1) < 0 && errno != EINTR)
			break;
		for (size_t i = 0; i < n; i++) {
			for (size_t j = 0; j < np; j++) {
				if (!p[j].revents)
					continue;
				if (p[j].fd == runs[i].out)
					drain(&runs[i].out, &runs[i].obuf, &runs[i].olen);
				else if (p[j].fd == runs[i].err)
					drain(&runs[i].err, &runs[i].ebuf, &runs[i].elen);
			}
		}
	}
	for (size_t i = 0; i < n; i++) {
		struct run *r = &runs[i];
		int status = 0;
		bool late = r->out >= 0 || r->err >= 0;

		res[i] = (struct vi_host_result){ .status = 255 };
		if (r->pid > 0) {
			if (late)
				kill(r->pid, SIGKILL);
			while (waitpid(r->pid, &status, 0) < 0 && errno == EINTR)
				;
			res[i].status = late ? 255 : WIFEXITED(status) ? WEXITSTATUS(status) : 255;
		}
		res[i].ms = vi_ms_since(r->start);
		res[i].out = r->obuf ? r->obuf : xstrdup("");
		if (late) {
			free(r->ebuf);
			r->ebuf = xasprintf("no answer within %u s", timeout_ms / 1000);
		} else if (r->pid < 0) {
			free(r->ebuf);
			r->ebuf = xstrdup("cannot start ssh");
		}
		res[i].err = r->ebuf ? r->ebuf : xstrdup("");
		size_t l = strlen(res[i].err);
		while (l && res[i].err[l - 1] == '\n')
			res[i].err[--l] = '\0';
		if (r->out >= 0)
			close(r->out);
		if (r->err >= 0)
			close(r->err);
	}
	free(runs);
	free(p);
}

void vi_host_result_release(struct vi_host_result *r)
{
	free(r->out);
	free(r->err);
	memset(r, 0, sizeof(*r));
}

/* --- asking hosts ------------------------------------------------------------------- */

void vi_hosts_ask(const struct vi_host_entry *const *hosts, size_t n, struct vi_host_answer *a)
{
	static char *const args[] = { "--json", "host", "info" };
	struct vi_host_result *res = xcalloc(n ? n : 1, sizeof(*res));

	vi_hosts_run(hosts, n, args, 3, VI_HOST_INFO_TIMEOUT_MS, res);
	for (size_t i = 0; i < n; i++) {
		int status = res[i].status;
		a[i] = (struct vi_host_answer){ .e = hosts[i], .status = status, .ms = res[i].ms };
		a[i].reason = xstrdup(vi_host_ssh_reason(status == 255 || status == 127 || *res[i].err
								 ? res[i].err
								 : res[i].out));
		if (status == 255)
			a[i].problem = xasprintf("unreachable: %s", a[i].reason);
		else if (status == 127)
			a[i].problem = xasprintf("no vi there: %s", a[i].reason);
		else if (status != 0)
			a[i].problem = xstrdup(a[i].reason);
		else if (!(a[i].info = json_tokener_parse(res[i].out)))
			a[i].problem = xstrdup("its vi gave no host information");
		vi_host_result_release(&res[i]);
	}
	free(res);
}

void vi_host_answer_release(struct vi_host_answer *a)
{
	if (a->info)
		json_object_put(a->info);
	free(a->reason);
	free(a->problem);
	memset(a, 0, sizeof(*a));
}

static bool has_backend(struct json_object *info, const char *hv)
{
	struct json_object *list;

	if (!json_object_object_get_ex(info, "backends", &list))
		return false;
	for (size_t i = 0; i < json_object_array_length(list); i++)
		if (!strcmp(json_object_get_string(json_object_array_get_idx(list, i)), hv))
			return true;
	return false;
}

int vi_hosts_pick(const struct vi_host_answer *a, size_t n, const struct vi_vm *vm,
		  const char *home, const char *hostname, const struct vi_host_entry **out)
{
	const struct vi_host_answer *best = NULL;
	char *why = xstrdup("");
	int rc = 0;

	for (size_t i = 0; i < n; i++) {
		struct json_object *info = a[i].info;
		uint64_t free_mem = (uint64_t)vi_json_get_int(info, "memory_free");
		const char *there = vi_json_get_str(info, "home");
		const char *name = vi_json_get_str(info, "hostname");
		char *no = NULL, have[32];

		if (!info) {
			no = xstrdup(a[i].problem);
		} else if (there && name && !strcmp(there, home) && !strcmp(name, hostname)) {
			no = xstrdup("it is this host");
		} else if (!has_backend(info, vm->hv)) {
			no = xasprintf("%s is not usable there", vm->hv);
		} else if (free_mem <= vm->memory) {
			vi_format_human(free_mem, have, sizeof(have));
			no = xasprintf("%s free", have);
		}
		if (no) {
			char *more = xasprintf("%s%s%s %s", why, *why ? ", " : "", a[i].e->name, no);
			free(why);
			why = more;
			free(no);
			continue;
		}
		if (!best) {
			best = &a[i];
			continue;
		}
		uint64_t best_free = (uint64_t)vi_json_get_int(best->info, "memory_free");
		int64_t running = vi_json_get_int(info, "vms_running"),
			best_running = vi_json_get_int(best->info, "vms_running");
		/* Free memory within a sixteenth of each other is alike: memory moves
		 * all the time, and a host running fewer VMs is then the lighter. */
		uint64_t hi = free_mem > best_free ? free_mem : best_free,
			 lo = free_mem > best_free ? best_free : free_mem;
		bool alike = hi - lo <= hi / 16;
		if (alike ? running < best_running || (running == best_running && free_mem > best_free)
			  : free_mem > best_free)
			best = &a[i];
	}
	if (best)
		*out = best->e;
	else
		rc = vi_error(VI_ENOTFOUND, "no host can take VM '%s': %s", vm->name,
			      *why ? why : "the inventory has no hosts");
	free(why);
	return rc;
}

int vi_hosts_least_loaded(const struct vi_store *s, const struct vi_hosts *h,
			  const struct vi_vm *vm, const struct vi_host_entry **out)
{
	const struct vi_host_entry **hosts = xcalloc(h->n + 1, sizeof(*hosts));
	struct vi_host_answer *a = xcalloc(h->n + 1, sizeof(*a));
	char hostname[256] = "";
	int rc;

	for (size_t i = 0; i < h->n; i++)
		hosts[i] = &h->hosts[i];
	vi_hosts_ask(hosts, h->n, a);
	gethostname(hostname, sizeof(hostname) - 1);
	rc = vi_hosts_pick(a, h->n, vm, s->home, hostname, out);
	for (size_t i = 0; i < h->n; i++)
		vi_host_answer_release(&a[i]);
	free(a);
	free(hosts);
	return rc;
}
