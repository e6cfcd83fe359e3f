/* Reading an environment file (env.h, vi-env(5)). */
#include "env.h"
#include "error.h"
#include "util.h"
#include "yaml-doc.h"

#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const env_keys[] = { "name", "networks", "machines" };
static const char *const machine_keys[] = {
	"template", "count",   "cpus",    "memory",    "hv",
	"networks", "forward", "depends", "user-data", "ready"
};

static void strv_free(char **v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(v[i]);
	free(v);
}

void vi_env_release(struct vi_env *env)
{
	free(env->name);
	free(env->path);
	strv_free(env->networks, env->nnetworks);
	for (size_t i = 0; i < env->nmachines; i++) {
		struct vi_env_machine *m = &env->machines[i];
		free(m->name);
		free(m->template);
		free(m->hv);
		strv_free(m->networks, m->nnetworks);
		strv_free(m->forwards, m->nforwards);
		strv_free(m->depends, m->ndepends);
		free(m->user_data);
	}
	free(env->machines);
	free(env->order);
	memset(env, 0, sizeof(*env));
}

/* A list of scalars (one scalar is a list of one) under key; each once. */
static int get_list(struct vi_yaml *y, yaml_node_t *map, const char *key, char ***out, size_t *n,
		    yaml_node_t **at)
{
	yaml_node_t *v = vi_yaml_get(y, map, key), *item;

	*at = v;
	if (!v)
		return 0;
	if (v->type == YAML_SCALAR_NODE) {
		*out = xcalloc(1, sizeof(char *));
		(*out)[(*n)++] = xstrdup(vi_yaml_scalar(v));
		return 0;
	}
	if (v->type != YAML_SEQUENCE_NODE)
		return vi_yaml_error(y, v, VI_EUSAGE, "'%s' must be a list, not %s", key,
				     vi_yaml_kind(v));
	vi_yaml_seq_foreach(y, v, item)
	{
		const char *s = vi_yaml_scalar(item);
		if (!s || !*s)
			return vi_yaml_error(y, item, VI_EUSAGE, "'%s' takes names, not %s", key,
					     s ? "an empty one" : vi_yaml_kind(item));
		for (size_t i = 0; i < *n; i++)
			if (!strcmp((*out)[i], s))
				return vi_yaml_error(y, item, VI_EUSAGE, "'%s' names '%s' twice",
						     key, s);
		*out = xrealloc(*out, (*n + 1) * sizeof(char *));
		(*out)[(*n)++] = xstrdup(s);
	}
	return 0;
}

/* The node of list item i (for messages), or the list. */
static yaml_node_t *item_at(struct vi_yaml *y, yaml_node_t *list, size_t i)
{
	if (!list || list->type != YAML_SEQUENCE_NODE ||
	    (long)i >= list->data.sequence.items.top - list->data.sequence.items.start)
		return list;
	return vi_yaml_node(y, list->data.sequence.items.start[i]);
}

bool vi_env_forward_parse(const char *f, char addr[64], unsigned *port, bool *udp)
{
	char buf[128], *slash, *colon;
	unsigned long host, guest;
	char *end;

	if (strlen(f) >= sizeof(buf))
		return false;
	snprintf(buf, sizeof(buf), "%s", f);
	*udp = false;
	if ((slash = strchr(buf, '/'))) {
		if (strcmp(slash, "/udp") && strcmp(slash, "/tcp"))
			return false;
		*udp = !strcmp(slash, "/udp");
		*slash = '\0';
	}
	if (!(colon = strrchr(buf, ':')))
		return false;
	guest = strtoul(colon + 1, &end, 10);
	if (*end || colon[1] < '0' || colon[1] > '9' || !guest || guest > 65535)
		return false;
	*colon = '\0';
	colon = strrchr(buf, ':');
	const char *h = colon ? colon + 1 : buf;
	host = strtoul(h, &end, 10);
	if (*end || *h < '0' || *h > '9' || !host || host > 65535)
		return false;
	if (colon) {
		*colon = '\0';
		if (strlen(buf) >= 64 || !*buf)
			return false;
	}
	snprintf(addr, 64, "%.63s", colon ? buf : "127.0.0.1"); /* checked to fit above */
	*port = (unsigned)host;
	return true;
}

static bool parse_forward(const char *f, unsigned *port)
{
	char addr[64];
	bool udp;

	return vi_env_forward_parse(f, addr, port, &udp);
}

char *vi_env_forward(const char *f, unsigned i)
{
	unsigned port;
	char buf[128];

	if (!i || !parse_forward(f, &port))
		return xstrdup(f);
	snprintf(buf, sizeof(buf), "%s", f);
	char *slash = strchr(buf, '/'), *colon;
	if (slash)
		*slash = '\0';
	colon = strrchr(buf, ':');
	*colon = '\0';
	char *addr_end = strrchr(buf, ':');
	return xasprintf("%.*s%u:%s%s", addr_end ? (int)(addr_end - buf + 1) : 0, buf, port + i,
			 colon + 1, slash ? strchr(f, '/') : "");
}

char *vi_env_vm_name(const struct vi_env *env, const struct vi_env_machine *m, unsigned i)
{
	if (m->count > 1)
		return xasprintf("%s-%s-%u", env->name, m->name, i + 1);
	return xasprintf("%s-%s", env->name, m->name);
}

/* What `up` compares: the machine's definition as canonical text, hashed. */
static void machine_digest(struct vi_env_machine *m)
{
	char *t = xasprintf("template=%s\ncount=%u\ncpus=%u\nmemory=%llu\nhv=%s\nready=%d\n",
			    m->template, m->count, m->cpus, (unsigned long long)m->memory,
			    m->hv ? m->hv : "", m->ready_ssh);
	const struct {
		const char *key;
		char **v;
		size_t n;
	} lists[] = { { "network", m->networks, m->nnetworks },
		      { "forward", m->forwards, m->nforwards } };
	for (size_t l = 0; l < ARRAY_SIZE(lists); l++)
		for (size_t i = 0; i < lists[l].n; i++) {
			char *more = xasprintf("%s%s=%s\n", t, lists[l].key, lists[l].v[i]);
			free(t);
			t = more;
		}
	if (m->user_data) {
		char *text = NULL, hex[SHA256_HEX_SIZE] = "";
		size_t len;
		if (vi_read_file(m->user_data, &text, &len) == 0)
			sha256_hex(text, len, hex);
		vi_error_clear();
		char *more = xasprintf("%suser-data=%s\n", t, hex);
		free(t);
		t = more;
		free(text);
	}
	sha256_hex(t, strlen(t), m->digest);
	free(t);
}

static int parse_machine(struct vi_yaml *y, struct vi_env *env, const char *dir, yaml_node_t *key,
			 yaml_node_t *map, struct vi_env_machine *m)
{
	yaml_node_t *at;
	uint64_t v;
	const char *s;
	int rc;

	m->name = xstrdup(vi_yaml_scalar(key) ? vi_yaml_scalar(key) : "");
	m->count = 1;
	m->ready_ssh = true;
	if ((rc = vi_check_name(m->name, "machine")) < 0)
		return vi_yaml_error(y, key, VI_EUSAGE, "%s", vi_error_message());
	if ((rc = vi_yaml_expect_map(y, map, "a machine")) < 0 ||
	    (rc = vi_yaml_check_keys(y, map, machine_keys, ARRAY_SIZE(machine_keys))) < 0 ||
	    (rc = vi_yaml_dup_str(y, map, "template", true, &m->template)) < 0 ||
	    (rc = vi_yaml_dup_str(y, map, "hv", false, &m->hv)) < 0)
		return rc;
	if ((rc = vi_yaml_get_uint(y, map, "count", false, 1, VI_ENV_MAX_COUNT, &v)) < 0)
		return rc;
	if (rc == 0)
		m->count = (unsigned)v;
	if ((rc = vi_yaml_get_uint(y, map, "cpus", false, 1, 256, &v)) < 0)
		return rc;
	if (rc == 0)
		m->cpus = (unsigned)v;
	if ((rc = vi_yaml_get_size(y, map, "memory", false, 16ull << 20, 64ull << 40, &m->memory)) <
	    0)
		return rc;
	/* The VM names must be names too: ENV-MACHINE-N. */
	char *longest = vi_env_vm_name(env, m, m->count - 1);
	rc = vi_check_name(longest, "VM");
	free(longest);
	if (rc < 0)
		return vi_yaml_error(y, key, VI_EUSAGE, "%s", vi_error_message());
	if ((rc = get_list(y, map, "networks", &m->networks, &m->nnetworks, &at)) < 0)
		return rc;
	for (size_t i = 0; i < m->nnetworks; i++) {
		bool known = !strcmp(m->networks[i], VI_ENV_USER_NET);
		for (size_t k = 0; k < env->nnetworks && !known; k++)
			known = !strcmp(env->networks[k], m->networks[i]);
		if (!known) {
			const char **names = xcalloc(env->nnetworks + 1, sizeof(char *));
			for (size_t k = 0; k < env->nnetworks; k++)
				names[k] = env->networks[k];
			names[env->nnetworks] = VI_ENV_USER_NET;
			rc = vi_yaml_unknown(y, item_at(y, at, i), 0, "network", m->networks[i],
					     names, env->nnetworks + 1);
			free(names);
			return rc;
		}
	}
	if ((rc = get_list(y, map, "forward", &m->forwards, &m->nforwards, &at)) < 0)
		return rc;
	for (size_t i = 0; i < m->nforwards; i++) {
		unsigned port;
		if (!parse_forward(m->forwards[i], &port))
			return vi_yaml_error(y, item_at(y, at, i), VI_EUSAGE,
					     "bad forward '%s': expected [ADDR:]HOST:GUEST[/udp]",
					     m->forwards[i]);
		if (port + m->count - 1 > 65535)
			return vi_yaml_error(y, item_at(y, at, i), VI_EUSAGE,
					     "forward '%s' runs out of ports for %u machines",
					     m->forwards[i], m->count);
	}
	bool user = false;
	for (size_t i = 0; i < m->nnetworks; i++)
		user |= !strcmp(m->networks[i], VI_ENV_USER_NET);
	if (m->nforwards && !user && m->nnetworks)
		return vi_yaml_error(y, at, VI_EUSAGE,
				     "'forward' needs the 'user' network: add it to 'networks'");
	if ((rc = get_list(y, map, "depends", &m->depends, &m->ndepends, &at)) < 0)
		return rc;
	if ((rc = vi_yaml_get_str(y, map, "user-data", false, &s)) < 0)
		return rc;
	if (rc == 0) {
		char *given = s[0] == '/' ? xstrdup(s) : xasprintf("%s/%s", dir, s), real[PATH_MAX];
		bool found = realpath(given, real) != NULL;
		free(given);
		if (!found)
			return vi_yaml_error(y, vi_yaml_get(y, map, "user-data"), VI_ENOTFOUND,
					     "no user-data file '%s'", s);
		m->user_data = xstrdup(real);
	}
	if ((rc = vi_yaml_get_str(y, map, "ready", false, &s)) < 0)
		return rc;
	if (rc == 0) {
		static const char *const ready[] = { "ssh", "none" };
		if (strcmp(s, "ssh") && strcmp(s, "none"))
			return vi_yaml_unknown(y, vi_yaml_get(y, map, "ready"), 0, "readiness", s,
					       ready, ARRAY_SIZE(ready));
		m->ready_ssh = !strcmp(s, "ssh");
	}
	return 0;
}

/* The machines in an order where each comes after what it depends on; a
 * name depended on that is not a machine, or a cycle, is an error at it. */
static int order_machines(struct vi_yaml *y, yaml_node_t *machines, struct vi_env *env)
{
	size_t n = env->nmachines, placed = 0;
	bool *done = xcalloc(n + 1, sizeof(bool));
	const char **names = xcalloc(n + 1, sizeof(char *));
	int rc = 0;

	for (size_t i = 0; i < n; i++)
		names[i] = env->machines[i].name;
	env->order = xcalloc(n + 1, sizeof(size_t));
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct vi_env_machine *m = &env->machines[i];
		yaml_node_t *map = vi_yaml_node(y, machines->data.mapping.pairs.start[i].value);
		yaml_node_t *at = vi_yaml_get(y, map, "depends");
		for (size_t d = 0; d < m->ndepends && rc == 0; d++) {
			bool known = false;
			for (size_t k = 0; k < n; k++)
				known |= !strcmp(names[k], m->depends[d]);
			if (!strcmp(m->depends[d], m->name))
				rc = vi_yaml_error(y, item_at(y, at, d), VI_EUSAGE,
						   "machine '%s' depends on itself", m->name);
			else if (!known)
				rc = vi_yaml_unknown(y, item_at(y, at, d), 0, "machine",
						     m->depends[d], names, n);
		}
	}
	while (rc == 0 && placed < n) {
		bool progress = false;
		for (size_t i = 0; i < n; i++) {
			struct vi_env_machine *m = &env->machines[i];
			bool ready = !done[i];
			for (size_t d = 0; d < m->ndepends && ready; d++)
				for (size_t k = 0; k < n; k++)
					if (!strcmp(names[k], m->depends[d]) && !done[k])
						ready = false;
			if (!ready)
				continue;
			done[i] = progress = true;
			env->order[placed++] = i;
		}
		if (!progress) {
			for (size_t i = 0; i < n && rc == 0; i++)
				if (!done[i])
					rc = vi_yaml_error(
					    y,
					    vi_yaml_node(y,
							 machines->data.mapping.pairs.start[i].key),
					    VI_EUSAGE,
					    "machine '%s' depends on itself through others",
					    env->machines[i].name);
		}
	}
	free(done);
	free(names);
	return rc;
}

int vi_env_load(const char *path, struct vi_env *env)
{
	struct vi_yaml y;
	yaml_node_t *root, *machines, *k, *v, *at;
	char real[PATH_MAX], *copy, *dir;
	int rc;

	memset(env, 0, sizeof(*env));
	if ((rc = vi_yaml_load_file(&y, path)) < 0)
		return rc;
	env->path = xstrdup(realpath(path, real) ? real : path);
	copy = xstrdup(env->path);
	dir = dirname(copy);
	root = vi_yaml_root(&y);
	if ((rc = vi_yaml_expect_map(&y, root, "an environment")) < 0 ||
	    (rc = vi_yaml_check_keys(&y, root, env_keys, ARRAY_SIZE(env_keys))) < 0 ||
	    (rc = vi_yaml_dup_str(&y, root, "name", true, &env->name)) < 0)
		goto out;
	if ((rc = vi_check_name(env->name, "environment")) < 0) {
		rc = vi_yaml_error(&y, vi_yaml_get(&y, root, "name"), VI_EUSAGE, "%s",
				   vi_error_message());
		goto out;
	}
	if ((rc = get_list(&y, root, "networks", &env->networks, &env->nnetworks, &at)) < 0)
		goto out;
	for (size_t i = 0; i < env->nnetworks && rc == 0; i++) {
		if (!strcmp(env->networks[i], VI_ENV_USER_NET))
			rc = vi_yaml_error(&y, item_at(&y, at, i), VI_EUSAGE,
					   "'user' is the host's network, not a private one: "
					   "name it under a machine's networks");
		else if (vi_check_name(env->networks[i], "network") < 0)
			rc = vi_yaml_error(&y, item_at(&y, at, i), VI_EUSAGE, "%s",
					   vi_error_message());
	}
	if (rc < 0)
		goto out;
	machines = vi_yaml_get(&y, root, "machines");
	if (!machines || machines->type != YAML_MAPPING_NODE ||
	    machines->data.mapping.pairs.top == machines->data.mapping.pairs.start) {
		rc = vi_yaml_error(&y, machines ? machines : root, VI_EUSAGE,
				   "'machines' must map each machine's name to its definition");
		goto out;
	}
	env->machines =
	    xcalloc((size_t)(machines->data.mapping.pairs.top - machines->data.mapping.pairs.start),
		    sizeof(*env->machines));
	vi_yaml_map_foreach(&y, machines, k, v)
	{
		struct vi_env_machine *m = &env->machines[env->nmachines++];
		if ((rc = parse_machine(&y, env, dir, k, v, m)) < 0)
			goto out;
		machine_digest(m);
	}
	/* Two machines whose VM names meet (web with count 2, and web-1). */
	for (size_t i = 0; i < env->nmachines; i++)
		for (size_t j = 0; j < env->nmachines; j++)
			for (unsigned a = 0; i != j && a < env->machines[i].count; a++) {
				char *n1 = vi_env_vm_name(env, &env->machines[i], a);
				bool clash = false;
				for (unsigned b = 0; b < env->machines[j].count && !clash; b++) {
					char *n2 = vi_env_vm_name(env, &env->machines[j], b);
					clash = !strcmp(n1, n2);
					free(n2);
				}
				if (clash)
					rc = vi_yaml_error(
					    &y,
					    vi_yaml_node(&y,
							 machines->data.mapping.pairs.start[j].key),
					    VI_EUSAGE, "machines '%s' and '%s' both make VM '%s'",
					    env->machines[i].name, env->machines[j].name, n1);
				free(n1);
				if (rc < 0)
					goto out;
			}
	rc = order_machines(&y, machines, env);
out:
	free(copy);
	vi_yaml_release(&y);
	if (rc < 0)
		vi_env_release(env);
	return rc;
}
