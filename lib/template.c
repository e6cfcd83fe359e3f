/* Templates: finding them, parsing and validating the YAML with positions,
 * substituting ${parameters}, inheriting from a base, and the canonical text
 * whose SHA-256 names the image a template builds. */
#include "template.h"
#include "error.h"
#include "template-internal.h"
#include "util.h"
#include "vm.h"
#include "yaml-doc.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_DEPTH 8
#define DEFAULT_READY_TIMEOUT 120
#define DEFAULT_CMDLINE "console=ttyS0 root=/dev/vda1 rw"
#define DEFAULT_MIRROR "http://deb.debian.org/debian"
/* How much text ${parameters} may add in all: as for YAML aliases, a few
 * references to a long value must not exhaust memory. */
#define MAX_SUBSTITUTED (4u << 20)

void template_strv_push(struct template_strv *l, const char *s)
{
	l->v = xrealloc(l->v, (l->n + 2) * sizeof(*l->v));
	l->v[l->n++] = xstrdup(s);
	l->v[l->n] = NULL;
}

void template_strv_release(struct template_strv *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->v = NULL;
	l->n = 0;
}

static void strv_copy(struct template_strv *dst, const struct template_strv *src)
{
	for (size_t i = 0; i < src->n; i++)
		template_strv_push(dst, src->v[i]);
}

bool template_strv_has(const struct template_strv *l, const char *s)
{
	for (size_t i = 0; i < l->n; i++)
		if (!strcmp(l->v[i], s))
			return true;
	return false;
}

/* --- the search path ---------------------------------------------------- */

/* Directories are named without "..", so messages show plain paths. */
static void push_dir(struct template_strv *dirs, const char *dir)
{
	char real[PATH_MAX];
	const char *d = realpath(dir, real) ? real : dir;

	if (!template_strv_has(dirs, d))
		template_strv_push(dirs, d);
}

void template_search_path(const char *home, struct template_strv *dirs)
{
	const char *env = getenv("VI_TEMPLATE_PATH");
	char *owned_home = home ? NULL : vi_store_default_home();
	char *p;

	memset(dirs, 0, sizeof(*dirs));
	if (env && *env) {
		char *copy = xstrdup(env), *save = NULL;
		for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save))
			push_dir(dirs, d);
		free(copy);
	}
	p = xasprintf("%s/templates", home ? home : owned_home);
	push_dir(dirs, p);
	free(p);
	/* build/vi runs from the source tree: its templates/ is one level up;
	 * then an install's, staged or not. */
	p = vi_self_relative("../templates");
	push_dir(dirs, p);
	free(p);
	p = vi_self_relative(VI_TEMPLATE_DIR_FROM_BIN);
	push_dir(dirs, p);
	free(p);
	push_dir(dirs, VI_TEMPLATE_DIR_DEFAULT);
	free(owned_home);
}

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

int template_list_names(const char *home, struct template_strv *names, struct template_strv *paths)
{
	struct template_strv dirs;
	struct template_strv found = { 0 };

	memset(names, 0, sizeof(*names));
	memset(paths, 0, sizeof(*paths));
	template_search_path(home, &dirs);
	for (size_t i = 0; i < dirs.n; i++) {
		DIR *d = opendir(dirs.v[i]);
		struct dirent *e;
		while (d && (e = readdir(d))) {
			size_t len = strlen(e->d_name);
			if (e->d_name[0] == '.' || len <= 5 || strcmp(e->d_name + len - 5, ".yaml"))
				continue;
			char *name = xstrndup(e->d_name, len - 5);
			if (!template_strv_has(&found, name) &&
			    vi_check_name(name, "template") == 0) {
				/* "name\npath" sorts by name and keeps the pair together. */
				char *pair = xasprintf("%s\n%s/%s", name, dirs.v[i], e->d_name);
				template_strv_push(&found, name);
				template_strv_push(names, pair);
				free(pair);
			}
			free(name);
		}
		if (d)
			closedir(d);
	}
	vi_error_clear();
	if (names->n)
		qsort(names->v, names->n, sizeof(*names->v), cmp_str);
	for (size_t i = 0; i < names->n; i++) {
		char *nl = strchr(names->v[i], '\n');
		*nl = '\0';
		template_strv_push(paths, nl + 1);
	}
	template_strv_release(&found);
	template_strv_release(&dirs);
	return 0;
}

/* --- the parser --------------------------------------------------------- */

struct parser {
	struct vi_yaml y;
	struct template *t;
	const char *home;
	struct template_strv *chain; /* files being loaded, for base loops */
	struct template_param **by_name; /* t->params sorted, for lookups */
	size_t substituted;               /* what ${parameters} added so far */
};

static int cmp_param(const void *a, const void *b)
{
	return strcmp((*(struct template_param *const *)a)->name,
		      (*(struct template_param *const *)b)->name);
}

static struct template_param *find_param(struct parser *p, const char *name)
{
	struct template_param key = { .name = (char *)name }, *k = &key, **found;

	found = p->t->nparams ? bsearch(&k, p->by_name, p->t->nparams, sizeof(*p->by_name),
					cmp_param)
			      : NULL;
	return found ? *found : NULL;
}

static const char *suggest_param(struct template *t, const char *name)
{
	const char **names = xcalloc(t->nparams + 1, sizeof(*names));
	const char *s;

	for (size_t i = 0; i < t->nparams; i++)
		names[i] = t->params[i].name;
	s = vi_suggest(name, names, t->nparams);
	free(names);
	return s;
}

/* Expands ${name} in a scalar; "$$" stands for "$". *out is the caller's. */
static int substitute(struct parser *p, yaml_node_t *node, const char *text, char **out)
{
	size_t len = 0, cap = strlen(text) + 1;
	char *buf = xmalloc(cap);

	for (const char *s = text; *s;) {
		const char *add = s;
		size_t n = 1;

		if (s[0] == '$' && s[1] == '$') {
			s += 2;
		} else if (s[0] == '$' && s[1] == '{') {
			const char *end = strchr(s + 2, '}');
			if (!end) {
				free(buf);
				return vi_yaml_error(&p->y, node, VI_EUSAGE,
						     "unterminated '${' in '%s'", text);
			}
			char *name = xstrndup(s + 2, end - s - 2);
			struct template_param *par = find_param(p, name);
			if (!par) {
				const char *sug = suggest_param(p->t, name);
				int rc = sug ? vi_yaml_error(
						       &p->y, node, VI_EUSAGE,
						       "unknown parameter '%s'; did you mean '%s'?",
						       name, sug)
					     : vi_yaml_error(&p->y, node, VI_EUSAGE,
							     "unknown parameter '%s'", name);
				free(name);
				free(buf);
				return rc;
			}
			free(name);
			add = par->value;
			n = strlen(add);
			s = end + 1;
			if ((p->substituted += n) > MAX_SUBSTITUTED) {
				char max[32];
				free(buf);
				return vi_yaml_error(&p->y, node, VI_EUSAGE,
						     "parameters add more than %s of text",
						     vi_format_size(MAX_SUBSTITUTED, max,
								    sizeof(max)));
			}
		} else {
			s++;
		}
		if (len + n + 1 > cap) {
			cap = (len + n + 1) * 2;
			buf = xrealloc(buf, cap);
		}
		memcpy(buf + len, add, n);
		len += n;
	}
	buf[len] = '\0';
	*out = buf;
	return 0;
}

/* A scalar node's text with parameters substituted (caller frees). */
static int node_text(struct parser *p, yaml_node_t *node, const char *key, char **out)
{
	if (node->type != YAML_SCALAR_NODE)
		return vi_yaml_error(&p->y, node, VI_EUSAGE, "'%s' must be a scalar, not %s", key,
				     vi_yaml_kind(node));
	return substitute(p, node, vi_yaml_scalar(node), out);
}

/* The text under key: 0 found (*out the caller's), 1 absent, or an error.
 * *at (optional) gets the value's node. */
static int get_text(struct parser *p, yaml_node_t *map, const char *key, bool required, char **out,
		    yaml_node_t **at)
{
	yaml_node_t *v = vi_yaml_get(&p->y, map, key);

	if (at)
		*at = v;
	if (!v) {
		if (required)
			return vi_yaml_error(&p->y, map, VI_EUSAGE, "missing required key '%s'",
					     key);
		return 1;
	}
	return node_text(p, v, key, out);
}

/* Replaces *dst with the text under key when present. */
static int set_text(struct parser *p, yaml_node_t *map, const char *key, bool required, char **dst)
{
	char *s;
	int rc = get_text(p, map, key, required, &s, NULL);

	if (rc == 0) {
		free(*dst);
		*dst = s;
	}
	return rc < 0 ? rc : 0;
}

static int get_uint(struct parser *p, yaml_node_t *map, const char *key, uint64_t min, uint64_t max,
		    uint64_t *out, yaml_node_t **at)
{
	char *s;
	int rc = get_text(p, map, key, false, &s, at);

	if (rc)
		return rc;
	if (vi_parse_uint(s, key, min, max, out) < 0)
		rc = vi_yaml_error(&p->y, *at, VI_EUSAGE, "%s", vi_error_message());
	free(s);
	return rc;
}

static int get_size(struct parser *p, yaml_node_t *map, const char *key, uint64_t min,
		    uint64_t max, uint64_t *out, yaml_node_t **at)
{
	char *s;
	int rc = get_text(p, map, key, false, &s, at);

	if (rc)
		return rc;
	if (vi_parse_size_in(s, key, min, max, out) < 0)
		rc = vi_yaml_error(&p->y, *at, VI_EUSAGE, "%s", vi_error_message());
	free(s);
	return rc;
}

static int get_bool(struct parser *p, yaml_node_t *map, const char *key, bool *out)
{
	char *s;
	yaml_node_t *at;
	int rc = get_text(p, map, key, false, &s, &at);

	if (rc)
		return rc < 0 ? rc : 0;
	if (!strcmp(s, "true") || !strcmp(s, "yes"))
		*out = true;
	else if (!strcmp(s, "false") || !strcmp(s, "no"))
		*out = false;
	else
		rc = vi_yaml_error(&p->y, at, VI_EUSAGE, "'%s' must be true or false, not '%s'",
				   key, s);
	free(s);
	return rc;
}

/* A list of scalars under key, appended to l. *at (optional) gets the node. */
static int get_list(struct parser *p, yaml_node_t *map, const char *key, struct template_strv *l,
		    yaml_node_t **at)
{
	yaml_node_t *v = vi_yaml_get(&p->y, map, key), *item;

	if (at)
		*at = v;
	if (!v)
		return 0;
	if (v->type != YAML_SEQUENCE_NODE)
		return vi_yaml_error(&p->y, v, VI_EUSAGE, "'%s' must be a list, not %s", key,
				     vi_yaml_kind(v));
	vi_yaml_seq_foreach(&p->y, v, item)
	{
		char *s;
		int rc;
		if (item->type != YAML_SCALAR_NODE)
			return vi_yaml_error(&p->y, item, VI_EUSAGE,
					     "items of '%s' must be scalars, not %s", key,
					     vi_yaml_kind(item));
		if ((rc = substitute(p, item, vi_yaml_scalar(item), &s)) < 0)
			return rc;
		template_strv_push(l, s);
		free(s);
	}
	return 0;
}

/* A list of mappings under key with the given keys; 1 when absent. */
static int get_map_list(struct parser *p, yaml_node_t *map, const char *key,
			const char *const *keys, size_t nkeys, yaml_node_t **out)
{
	yaml_node_t *v = vi_yaml_get(&p->y, map, key), *item;
	int rc;

	*out = v;
	if (!v)
		return 1;
	if (v->type != YAML_SEQUENCE_NODE)
		return vi_yaml_error(&p->y, v, VI_EUSAGE, "'%s' must be a list, not %s", key,
				     vi_yaml_kind(v));
	vi_yaml_seq_foreach(&p->y, v, item)
	{
		if (item->type != YAML_MAPPING_NODE)
			return vi_yaml_error(&p->y, item, VI_EUSAGE,
					     "items of '%s' must be mappings, not %s", key,
					     vi_yaml_kind(item));
		if ((rc = vi_yaml_check_keys(&p->y, item, keys, nkeys)) < 0)
			return rc;
	}
	return 0;
}

/* A host path named in the template: relative to its directory; must exist
 * as a regular file. *out (absolute) is the caller's. */
static int host_file(struct parser *p, yaml_node_t *at, const char *what, const char *path,
		     char **out)
{
	char *full = path[0] == '/' ? xstrdup(path) : xasprintf("%s/%s", p->t->dir, path);
	struct stat st;
	int rc = 0;

	if (stat(full, &st) < 0)
		rc = vi_yaml_error(&p->y, at, errno == ENOENT ? VI_ENOTFOUND : VI_EFAIL,
				   "%s '%s': %s", what, path, strerror(errno));
	else if (!S_ISREG(st.st_mode))
		rc = vi_yaml_error(&p->y, at, VI_EUSAGE, "%s '%s' is not a file", what, path);
	if (rc < 0) {
		free(full);
		return rc;
	}
	*out = full;
	return 0;
}

/* Debian's rules for package names, and an optional "=VERSION". */
static bool valid_package(const char *s)
{
	if (!islower((unsigned char)s[0]) && !isdigit((unsigned char)s[0]))
		return false;
	for (const char *c = s; *c; c++) {
		if (*c == '=')
			return c[1] != '\0' && !strpbrk(c + 1, " \t\n'\"$`\\;&|<>()");
		if (!islower((unsigned char)*c) && !isdigit((unsigned char)*c) &&
		    !strchr("+-.", *c))
			return false;
	}
	return strlen(s) >= 2;
}

static int check_packages(struct parser *p, yaml_node_t *at, const struct template_strv *l)
{
	for (size_t i = 0; i < l->n; i++)
		if (!valid_package(l->v[i]))
			return vi_yaml_error(&p->y, at, VI_EUSAGE, "invalid package name '%s'",
					     l->v[i]);
	return 0;
}

static int parse_params(struct parser *p, yaml_node_t *root)
{
	static const char *const keys[] = { "default", "description" };
	yaml_node_t *v = vi_yaml_get(&p->y, root, "parameters"), *k, *val;
	struct template *t = p->t;
	int rc;

	if (!v)
		return 0;
	if ((rc = vi_yaml_expect_map(&p->y, v, "'parameters'")) < 0)
		return rc;
	t->params = xcalloc(v->data.mapping.pairs.top - v->data.mapping.pairs.start,
			    sizeof(*t->params));
	vi_yaml_map_foreach(&p->y, v, k, val)
	{
		const char *name = vi_yaml_scalar(k);
		struct template_param par = { 0 };

		if (!name || !(isalpha((unsigned char)name[0]) || name[0] == '_') ||
		    name[strspn(name,
				"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")])
			return vi_yaml_error(
				&p->y, k, VI_EUSAGE,
				"invalid parameter name '%s': use letters, digits and '_'",
				name ? name : "");
		if (val->type == YAML_MAPPING_NODE) {
			const char *def = NULL, *desc = NULL;
			if ((rc = vi_yaml_check_keys(&p->y, val, keys, ARRAY_SIZE(keys))) < 0 ||
			    (rc = vi_yaml_get_str(&p->y, val, "default", true, &def)) < 0 ||
			    (rc = vi_yaml_get_str(&p->y, val, "description", false, &desc)) < 0)
				return rc;
			par.value = xstrdup(def);
			par.description = xstrdup(desc);
		} else if (val->type == YAML_SCALAR_NODE) {
			par.value = xstrdup(vi_yaml_scalar(val));
		} else {
			return vi_yaml_error(
				&p->y, val, VI_EUSAGE,
				"parameter '%s' must be a scalar default or a mapping, not %s",
				name, vi_yaml_kind(val));
		}
		par.name = xstrdup(name);
		t->params[t->nparams++] = par;
	}
	p->by_name = xcalloc(t->nparams, sizeof(*p->by_name));
	for (size_t i = 0; i < t->nparams; i++)
		p->by_name[i] = &t->params[i];
	qsort(p->by_name, t->nparams, sizeof(*p->by_name), cmp_param);
	return 0;
}

static int apply_sets(struct parser *p, const char *const *sets, size_t nsets)
{
	struct template *t = p->t;

	for (size_t i = 0; i < nsets; i++) {
		const char *eq = strchr(sets[i], '=');
		if (!eq || eq == sets[i])
			return vi_error(VI_EUSAGE, "invalid --set '%s': expected KEY=VALUE",
					sets[i]);
		char *key = xstrndup(sets[i], eq - sets[i]);
		struct template_param *par = find_param(p, key);
		if (!par) {
			const char *sug = suggest_param(t, key);
			int rc =
				sug ? vi_error(
					      VI_EUSAGE,
					      "template '%s' has no parameter '%s'; did you mean '%s'?",
					      t->name, key, sug)
				    : vi_error(VI_EUSAGE, "template '%s' has no parameter '%s'",
					       t->name, key);
			free(key);
			return rc;
		}
		free(key);
		free(par->value);
		par->value = xstrdup(eq + 1);
	}
	return 0;
}

/* The newest /boot/vmlinuz-VERSION by version order, with its initrd and
 * module tree. */
static int host_kernel(struct parser *p, yaml_node_t *at)
{
	struct template *t = p->t;
	DIR *d = opendir("/boot");
	struct dirent *e;
	char *best = NULL;

	while (d && (e = readdir(d))) {
		if (strncmp(e->d_name, "vmlinuz-", 8) || !e->d_name[8])
			continue;
		if (!best || strverscmp(e->d_name + 8, best) > 0) {
			free(best);
			best = xstrdup(e->d_name + 8);
		}
	}
	if (d)
		closedir(d);
	if (!best)
		return vi_yaml_error(&p->y, at, VI_ENOTFOUND,
				     "'kernel: host': no /boot/vmlinuz-VERSION on this host");
	t->kernel_path = xasprintf("/boot/vmlinuz-%s", best);
	t->initrd_path = xasprintf("/boot/initrd.img-%s", best);
	t->modules_dir = xasprintf("/lib/modules/%s", best);
	if (!vi_file_exists(t->initrd_path)) {
		free(t->initrd_path);
		t->initrd_path = NULL;
	}
	free(best);
	return 0;
}

static void kernel_reset(struct template *t)
{
	free(t->kernel_path);
	free(t->kernel_package);
	free(t->initrd_path);
	free(t->modules_dir);
	t->kernel_path = t->kernel_package = t->initrd_path = t->modules_dir = NULL;
	t->no_initrd = t->small_initrd = false;
	template_strv_release(&t->initrd_module_files);
	template_strv_release(&t->modules);
	template_strv_release(&t->module_files);
}

static int parse_kernel(struct parser *p, yaml_node_t *root)
{
	struct template *t = p->t;
	yaml_node_t *v = vi_yaml_get(&p->y, root, "kernel");
	char *s = NULL;
	int rc;

	if (!v)
		return 0;
	kernel_reset(t);
	if (v->type == YAML_MAPPING_NODE) {
		static const char *const keys[] = { "package" };
		yaml_node_t *at;
		if ((rc = vi_yaml_check_keys(&p->y, v, keys, 1)) < 0 ||
		    (rc = get_text(p, v, "package", true, &s, &at)) < 0)
			return rc;
		if (!valid_package(s)) {
			rc = vi_yaml_error(&p->y, at, VI_EUSAGE, "invalid package name '%s'", s);
			free(s);
			return rc;
		}
		t->kernel = TEMPLATE_KERNEL_PACKAGE;
		t->kernel_package = s;
		return 0;
	}
	if ((rc = node_text(p, v, "kernel", &s)) < 0)
		return rc;
	if (!strcmp(s, "host")) {
		t->kernel = TEMPLATE_KERNEL_HOST;
		rc = host_kernel(p, v);
	} else if (!strcmp(s, "none")) {
		t->kernel = TEMPLATE_KERNEL_NONE;
	} else {
		t->kernel = TEMPLATE_KERNEL_FILE;
		rc = host_file(p, v, "kernel", s, &t->kernel_path);
	}
	free(s);
	return rc;
}

static int resolve_modules(struct parser *p, yaml_node_t *at, const char *const *names, size_t n,
			   struct template_strv *files);

static int parse_initrd(struct parser *p, yaml_node_t *root)
{
	struct template *t = p->t;
	yaml_node_t *at;
	char *s;
	int rc = get_text(p, root, "initrd", false, &s, &at);

	if (rc)
		return rc < 0 ? rc : 0;
	free(t->initrd_path);
	t->initrd_path = NULL;
	template_strv_release(&t->initrd_module_files);
	t->no_initrd = !strcmp(s, "none");
	t->small_initrd = !strcmp(s, "minimal");
	if (t->kernel == TEMPLATE_KERNEL_NONE) {
		rc = vi_yaml_error(&p->y, at, VI_EUSAGE, "'initrd' needs a 'kernel'");
	} else if (t->small_initrd) {
		static const char *const mods[] = TEMPLATE_INITRD_MODULES;
		if (t->kernel != TEMPLATE_KERNEL_HOST)
			rc = vi_yaml_error(&p->y, at, VI_EUSAGE,
					   "'initrd: minimal' needs 'kernel: host'");
		else
			rc = resolve_modules(p, at, mods, ARRAY_SIZE(mods),
					     &t->initrd_module_files);
	} else if (!t->no_initrd) {
		rc = host_file(p, at, "initrd", s, &t->initrd_path);
	}
	free(s);
	return rc;
}

/* Finds a module's file and its dependencies in modules.dep, appending them
 * (dependencies first) to files. */
static int resolve_module(struct parser *p, yaml_node_t *at, const char *dep, const char *name,
			  struct template_strv *files)
{
	struct template *t = p->t;
	char want[256];

	snprintf(want, sizeof(want), "%s.ko", name);
	for (char *c = want; *c; c++)
		if (*c == '-')
			*c = '_';
	for (const char *line = dep, *eol; *line; line = *eol ? eol + 1 : eol) {
		const char *colon = strchr(line, ':');
		eol = strchrnul(line, '\n');
		if (!colon || colon > eol)
			continue;
		char *file = xstrndup(line, colon - line);
		const char *slash = strrchr(file, '/');
		char norm[256];
		snprintf(norm, sizeof(norm), "%s", slash ? slash + 1 : file);
		for (char *c = norm; *c; c++)
			if (*c == '-')
				*c = '_';
		/* Compressed modules end in .ko.xz and the like. */
		char *ko = strstr(norm, ".ko");
		if (ko)
			ko[3] = '\0';
		if (strcmp(norm, want)) {
			free(file);
			continue;
		}
		if (!template_strv_has(files, file)) {
			/* Dependencies follow the colon, the nearest first. */
			char *deps = xstrndup(colon + 1, eol - colon - 1), *save = NULL;
			struct template_strv order = { 0 };
			for (char *d = strtok_r(deps, " ", &save); d;
			     d = strtok_r(NULL, " ", &save))
				template_strv_push(&order, d);
			for (size_t i = order.n; i-- > 0;)
				if (!template_strv_has(files, order.v[i]))
					template_strv_push(files, order.v[i]);
			template_strv_release(&order);
			free(deps);
			template_strv_push(files, file);
		}
		free(file);
		return 0;
	}
	return vi_yaml_error(&p->y, at, VI_ENOTFOUND, "no kernel module '%s' in %s", name,
			     t->modules_dir);
}

/* The files of the host kernel's modules names (n of them), with what they
 * depend on, into files. */
static int resolve_modules(struct parser *p, yaml_node_t *at, const char *const *names, size_t n,
			   struct template_strv *files)
{
	char *path = xasprintf("%s/modules.dep", p->t->modules_dir), *dep = NULL;
	size_t len;
	int rc = vi_read_file(path, &dep, &len);

	free(path);
	if (rc < 0)
		return vi_yaml_error(&p->y, at, -rc, "%s", vi_error_message());
	for (size_t i = 0; i < n && rc == 0; i++)
		rc = resolve_module(p, at, dep, names[i], files);
	free(dep);
	return rc;
}

static int parse_modules(struct parser *p, yaml_node_t *root)
{
	struct template *t = p->t;
	yaml_node_t *at;
	int rc;

	if (!vi_yaml_get(&p->y, root, "modules"))
		return 0;
	template_strv_release(&t->modules);
	template_strv_release(&t->module_files);
	if ((rc = get_list(p, root, "modules", &t->modules, &at)) < 0)
		return rc;
	if (t->kernel != TEMPLATE_KERNEL_HOST)
		return vi_yaml_error(&p->y, at, VI_EUSAGE, "'modules' needs 'kernel: host'");
	return resolve_modules(p, at, (const char *const *)t->modules.v, t->modules.n,
			       &t->module_files);
}

/* The shared libraries and the program interpreter that ldd lists for a
 * host program, appended to files (each once). */
static int program_libraries(struct parser *p, yaml_node_t *at, const char *prog,
			     struct template_strv *files)
{
	char *log = xasprintf("%s/vi-ldd-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
	char *argv[] = { "ldd", (char *)prog, NULL }, *text = NULL, *save = NULL;
	size_t len;
	int fd = mkstemp(log), rc;

	if (fd < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot create '%s'", log);
		free(log);
		return rc;
	}
	close(fd);
	rc = vi_run(argv, log);
	if (rc >= 0 && vi_read_file(log, &text, &len) < 0)
		rc = -vi_error_code();
	unlink(log);
	free(log);
	if (rc < 0)
		return vi_yaml_error(&p->y, at, -rc, "program '%s': %s", prog, vi_error_message());
	/* A static program: "not a dynamic executable", exit status 1. */
	if (rc != 0 && strstr(text, "not a dynamic executable")) {
		free(text);
		return 0;
	}
	for (char *l = strtok_r(text, "\n", &save); l && rc == 0; l = strtok_r(NULL, "\n", &save)) {
		char *arrow = strstr(l, "=> "), *path = arrow ? arrow + 3 : l + strspn(l, " \t");
		if (arrow && !strncmp(path, "not found", 9))
			rc = vi_yaml_error(&p->y, at, VI_ENOTFOUND,
					   "program '%s' needs '%.*s', which is not found", prog,
					   (int)(arrow - l - strspn(l, " \t") - 1), l + strspn(l, " \t"));
		else if (path[0] == '/') {
			path[strcspn(path, " \t")] = '\0';
			if (!template_strv_has(files, path))
				template_strv_push(files, path);
		}
	}
	free(text);
	return rc;
}

/* programs: host programs copied in with what they load. */
static int parse_programs(struct parser *p, yaml_node_t *root)
{
	struct template *t = p->t;
	yaml_node_t *at;
	int rc;

	if ((rc = get_list(p, root, "programs", &t->programs, &at)) < 0)
		return rc;
	for (size_t i = 0; i < t->programs.n; i++) {
		const char *prog = t->programs.v[i];
		char *path;
		if (prog[0] != '/')
			return vi_yaml_error(&p->y, at, VI_EUSAGE,
					     "program '%s' must be an absolute path", prog);
		if ((rc = host_file(p, at, "program", prog, &path)) < 0)
			return rc;
		free(path);
		if (access(prog, X_OK) < 0)
			return vi_yaml_error(&p->y, at, VI_EUSAGE, "program '%s' is not executable",
					     prog);
		if (!template_strv_has(&t->program_files, prog))
			template_strv_push(&t->program_files, prog);
		if ((rc = program_libraries(p, at, prog, &t->program_files)) < 0)
			return rc;
	}
	return 0;
}

static const char *const filesystems[] = { "ext4", "ext3", "ext2", "xfs", "btrfs", "vfat", "none" };

/* The first Debian mirror in the host's apt sources that serves suite (else
 * the first Debian one at all, else deb.debian.org). Caller frees. */
static char *apt_mirror(const char *suite)
{
	static const char *const files[] = { "/etc/apt/sources.list", "/etc/apt/sources.list.d" };
	char *any = NULL, *match = NULL;

	for (size_t f = 0; f < ARRAY_SIZE(files) && !match; f++) {
		struct template_strv list = { 0 };
		DIR *d = opendir(files[f]);
		struct dirent *e;
		if (!d)
			template_strv_push(&list, files[f]);
		while (d && (e = readdir(d))) {
			size_t n = strlen(e->d_name);
			if ((n > 5 && !strcmp(e->d_name + n - 5, ".list")) ||
			    (n > 8 && !strcmp(e->d_name + n - 8, ".sources"))) {
				char *path = xasprintf("%s/%s", files[f], e->d_name);
				template_strv_push(&list, path);
				free(path);
			}
		}
		if (d)
			closedir(d);
		if (list.n)
			qsort(list.v, list.n, sizeof(*list.v), cmp_str);
		for (size_t i = 0; i < list.n && !match; i++) {
			char *text;
			size_t len;
			if (vi_read_file(list.v[i], &text, &len) < 0)
				continue;
			bool deb822 = strstr(list.v[i], ".sources") != NULL;
			char *uris = NULL, *save = NULL;
			bool is_deb = !deb822;
			/* One-line style: "deb [opts] URI SUITE COMP..."; deb822: stanzas
			 * of Types/URIs/Suites separated by blank lines. */
			for (char *line = strtok_r(text, "\n", &save); line && !match;
			     line = strtok_r(NULL, "\n", &save)) {
				char *w[8] = { 0 }, *ws = NULL;
				int n = 0;
				line += strspn(line, " \t");
				if (*line == '#')
					continue;
				for (char *tok = strtok_r(line, " \t", &ws); tok && n < 8;
				     tok = strtok_r(NULL, " \t", &ws))
					w[n++] = tok;
				if (!deb822) {
					int u = 1;
					if (n < 3 || strcmp(w[0], "deb"))
						continue;
					if (w[1][0] == '[') {
						while (u < n && !strchr(w[u], ']'))
							u++;
						u++;
					}
					if (u + 1 >= n || strncmp(w[u], "http", 4))
						continue;
					if (!any && strstr(w[u], "/debian") &&
					    !strstr(w[u], "debian-security"))
						any = xstrdup(w[u]);
					if (!strcmp(w[u + 1], suite))
						match = xstrdup(w[u]);
				} else if (n >= 2 && !strcmp(w[0], "Types:")) {
					is_deb = false;
					for (int i = 1; i < n; i++)
						is_deb |= !strcmp(w[i], "deb");
				} else if (n >= 2 && !strcmp(w[0], "URIs:") &&
					   !strncmp(w[1], "http", 4)) {
					free(uris);
					uris = xstrdup(w[1]);
				} else if (n >= 2 && !strcmp(w[0], "Suites:") && uris && is_deb) {
					if (!any && strstr(uris, "/debian") &&
					    !strstr(uris, "debian-security"))
						any = xstrdup(uris);
					for (int i = 1; i < n && !match; i++)
						if (!strcmp(w[i], suite))
							match = xstrdup(uris);
				}
			}
			free(uris);
			free(text);
		}
		template_strv_release(&list);
	}
	vi_error_clear();
	if (match) {
		free(any);
		return match;
	}
	return any ? any : xstrdup(DEFAULT_MIRROR);
}

static int parse_source(struct parser *p, yaml_node_t *src, struct template_disk *d)
{
	static const char *const keys[] = { "tarball", "image",	     "debootstrap", "variant",
					    "mirror",  "components", "packages" };
	static const char *const kinds[] = { "busybox", "empty" };
	static const char *const variants[] = { "minbase", "buildd", "fakechroot" };
	char *s = NULL;
	yaml_node_t *at;
	int rc, given = 0;

	if (src->type == YAML_SCALAR_NODE) {
		if ((rc = node_text(p, src, "source", &s)) < 0)
			return rc;
		if (!strcmp(s, "busybox"))
			d->source = TEMPLATE_SOURCE_BUSYBOX;
		else if (!strcmp(s, "empty"))
			d->source = TEMPLATE_SOURCE_EMPTY;
		else {
			const char *sug = vi_suggest(s, kinds, ARRAY_SIZE(kinds));
			rc = sug ? vi_yaml_error(&p->y, src, VI_EUSAGE,
						 "unknown disk source '%s'; did you mean '%s'?", s,
						 sug)
				 : vi_yaml_error(
					   &p->y, src, VI_EUSAGE,
					   "unknown disk source '%s': expected busybox, empty, "
					   "or a mapping with tarball, image or debootstrap",
					   s);
		}
		free(s);
		return rc;
	}
	if ((rc = vi_yaml_expect_map(&p->y, src, "'source'")) < 0 ||
	    (rc = vi_yaml_check_keys(&p->y, src, keys, ARRAY_SIZE(keys))) < 0)
		return rc;
	for (size_t i = 0; i < 3; i++)
		given += vi_yaml_get(&p->y, src, keys[i]) != NULL;
	if (given != 1)
		return vi_yaml_error(
			&p->y, src, VI_EUSAGE,
			"a disk source needs exactly one of 'tarball', 'image' and 'debootstrap'");
	if ((rc = get_text(p, src, "tarball", false, &s, &at)) == 0) {
		d->source = TEMPLATE_SOURCE_TARBALL;
		rc = host_file(p, at, "tarball", s, &d->path);
	} else if (rc == 1 && (rc = get_text(p, src, "image", false, &s, &at)) == 0) {
		d->source = TEMPLATE_SOURCE_IMAGE;
		rc = host_file(p, at, "image", s, &d->path);
	} else if (rc == 1 && (rc = get_text(p, src, "debootstrap", false, &s, &at)) == 0) {
		d->source = TEMPLATE_SOURCE_DEBOOTSTRAP;
		if (!s[0] || s[strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789-")])
			rc = vi_yaml_error(&p->y, at, VI_EUSAGE, "invalid Debian suite '%s'", s);
		d->suite = s;
		s = NULL;
	}
	free(s);
	if (rc < 0)
		return rc;
	if (d->source != TEMPLATE_SOURCE_DEBOOTSTRAP) {
		for (size_t i = 3; i < ARRAY_SIZE(keys); i++)
			if ((at = vi_yaml_get(&p->y, src, keys[i])))
				return vi_yaml_error(&p->y, at, VI_EUSAGE,
						     "'%s' applies to a debootstrap source only",
						     keys[i]);
		return 0;
	}
	if ((rc = set_text(p, src, "variant", false, &d->variant)) < 0 ||
	    (rc = set_text(p, src, "mirror", false, &d->mirror)) < 0 ||
	    (rc = get_list(p, src, "components", &d->components, NULL)) < 0 ||
	    (rc = get_list(p, src, "packages", &d->packages, &at)) < 0 ||
	    (rc = check_packages(p, at, &d->packages)) < 0)
		return rc;
	if (!d->variant)
		d->variant = xstrdup("minbase");
	bool known = false;
	for (size_t i = 0; i < ARRAY_SIZE(variants); i++)
		known |= !strcmp(d->variant, variants[i]);
	if (!known)
		return vi_yaml_error(
			&p->y, vi_yaml_get(&p->y, src, "variant"), VI_EUSAGE,
			"unknown debootstrap variant '%s': expected minbase, buildd or fakechroot",
			d->variant);
	if (d->mirror && strncmp(d->mirror, "http://", 7) && strncmp(d->mirror, "https://", 8) &&
	    strncmp(d->mirror, "file:/", 6))
		return vi_yaml_error(&p->y, vi_yaml_get(&p->y, src, "mirror"), VI_EUSAGE,
				     "invalid mirror '%s': expected an http, https or file URL",
				     d->mirror);
	if (!d->mirror)
		d->mirror = apt_mirror(d->suite);
	if (!d->components.n)
		template_strv_push(&d->components, "main");
	return 0;
}

static bool rootfs_source(enum template_source s)
{
	return s == TEMPLATE_SOURCE_BUSYBOX || s == TEMPLATE_SOURCE_TARBALL ||
	       s == TEMPLATE_SOURCE_DEBOOTSTRAP;
}

static int parse_disks(struct parser *p, yaml_node_t *root)
{
	static const char *const keys[] = { "size", "filesystem", "source" };
	struct template *t = p->t;
	yaml_node_t *seq, *item;
	int rc = get_map_list(p, root, "disks", keys, ARRAY_SIZE(keys), &seq);
	bool have_rootfs = false;

	if (rc)
		return rc < 0 ? rc
			      : vi_yaml_error(&p->y, root, VI_EUSAGE,
					      "missing required key 'disks'");
	if (seq->data.sequence.items.top == seq->data.sequence.items.start)
		return vi_yaml_error(&p->y, seq, VI_EUSAGE, "'disks' is empty");
	vi_yaml_seq_foreach(&p->y, seq, item)
	{
		struct template_disk *d;
		yaml_node_t *src = vi_yaml_get(&p->y, item, "source"), *fs_at, *size_at;
		char *fs = NULL;

		t->disks = xrealloc(t->disks, (t->ndisks + 1) * sizeof(*t->disks));
		d = &t->disks[t->ndisks++];
		memset(d, 0, sizeof(*d));
		if (src && (rc = parse_source(p, src, d)) < 0)
			return rc;
		if ((rc = get_size(p, item, "size", 1 << 20, TEMPLATE_MAX_DISK_SIZE, &d->size,
				   &size_at)) < 0)
			return rc;
		if (rc == 1 && d->source != TEMPLATE_SOURCE_IMAGE)
			return vi_yaml_error(&p->y, item, VI_EUSAGE, "missing required key 'size'");
		if (rootfs_source(d->source)) {
			if (have_rootfs)
				return vi_yaml_error(
					&p->y, src, VI_EUSAGE,
					"only one disk may have a root file system source");
			have_rootfs = true;
		}
		if ((rc = get_text(p, item, "filesystem", false, &fs, &fs_at)) < 0)
			return rc;
		if (rc == 0) {
			size_t i;
			for (i = 0; i < ARRAY_SIZE(filesystems); i++)
				if (!strcmp(fs, filesystems[i]))
					break;
			if (i == ARRAY_SIZE(filesystems)) {
				const char *sug =
					vi_suggest(fs, filesystems, ARRAY_SIZE(filesystems));
				rc = sug ? vi_yaml_error(
						   &p->y, fs_at, VI_EUSAGE,
						   "unknown filesystem '%s'; did you mean '%s'?",
						   fs, sug)
					 : vi_yaml_error(&p->y, fs_at, VI_EUSAGE,
							 "unknown filesystem '%s'", fs);
			} else if (d->source == TEMPLATE_SOURCE_IMAGE) {
				rc = vi_yaml_error(
					&p->y, fs_at, VI_EUSAGE,
					"'filesystem' does not apply to an image source");
			} else if (rootfs_source(d->source) && !strcmp(fs, "none")) {
				rc = vi_yaml_error(&p->y, fs_at, VI_EUSAGE,
						   "a root file system source needs a filesystem");
			}
			if (rc < 0) {
				free(fs);
				return rc;
			}
			if (strcmp(fs, "none"))
				d->filesystem = xstrdup(fs);
			free(fs);
		} else if (rootfs_source(d->source)) {
			d->filesystem = xstrdup("ext4");
		}
	}
	return 0;
}

/* An absolute path in the image without ".." components. */
static bool image_path_ok(const char *path)
{
	size_t n = strlen(path);

	return path[0] == '/' && !strstr(path, "/../") && (n < 3 || strcmp(path + n - 3, "/.."));
}

static int check_mode(struct parser *p, yaml_node_t *at, const char *s, unsigned *mode)
{
	char *end;
	unsigned long v = strtoul(s, &end, 8);

	if (!*s || *end || v > 07777 || s[strspn(s, "01234567")])
		return vi_yaml_error(&p->y, at, VI_EUSAGE,
				     "invalid mode '%s': expected octal digits such as 0644", s);
	*mode = (unsigned)v;
	return 0;
}

static int parse_files(struct parser *p, yaml_node_t *root)
{
	static const char *const keys[] = { "path", "content", "source", "mode", "owner" };
	struct template *t = p->t;
	yaml_node_t *seq, *item;
	int rc = get_map_list(p, root, "files", keys, ARRAY_SIZE(keys), &seq);

	if (rc)
		return rc < 0 ? rc : 0;
	vi_yaml_seq_foreach(&p->y, seq, item)
	{
		struct template_file *f;
		yaml_node_t *at, *src_at;
		char *s = NULL;

		t->files = xrealloc(t->files, (t->nfiles + 1) * sizeof(*t->files));
		f = &t->files[t->nfiles++];
		memset(f, 0, sizeof(*f));
		f->mode = 0644;
		if ((rc = get_text(p, item, "path", true, &f->path, &at)) < 0)
			return rc;
		if (!image_path_ok(f->path))
			return vi_yaml_error(
				&p->y, at, VI_EUSAGE,
				"invalid path '%s': expected an absolute path in the image",
				f->path);
		if ((rc = set_text(p, item, "content", false, &f->content)) < 0 ||
		    (rc = get_text(p, item, "source", false, &s, &src_at)) < 0)
			return rc;
		if (rc == 0) {
			rc = host_file(p, src_at, "source", s, &f->source);
			free(s);
			if (rc < 0)
				return rc;
		}
		if (!f->content == !f->source)
			return vi_yaml_error(
				&p->y, item, VI_EUSAGE,
				"file '%s' needs exactly one of 'content' and 'source'", f->path);
		if ((rc = get_text(p, item, "mode", false, &s, &at)) < 0)
			return rc;
		if (rc == 0) {
			rc = check_mode(p, at, s, &f->mode);
			free(s);
			if (rc < 0)
				return rc;
		}
		if ((rc = set_text(p, item, "owner", false, &f->owner)) < 0)
			return rc;
	}
	return 0;
}

static bool valid_user(const char *s)
{
	if (!*s || strlen(s) > 32 || !(islower((unsigned char)s[0]) || s[0] == '_'))
		return false;
	return !s[strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_-")];
}

static int parse_user(struct parser *p, yaml_node_t *item, struct template_user *u)
{
	struct template_strv items = { 0 };
	yaml_node_t *at;
	int rc;

	if ((rc = get_text(p, item, "name", true, &u->name, &at)) < 0)
		return rc;
	if (!valid_user(u->name))
		return vi_yaml_error(
			&p->y, at, VI_EUSAGE,
			"invalid user name '%s': use lowercase letters, digits, '_' and '-'",
			u->name);
	if ((rc = get_uint(p, item, "uid", 0, 65533, &u->uid, &at)) < 0 ||
	    (rc = set_text(p, item, "shell", false, &u->shell)) < 0 ||
	    (rc = get_bool(p, item, "sudo", &u->sudo)) < 0 ||
	    (rc = get_list(p, item, "groups", &u->groups, &at)) < 0)
		return rc;
	for (size_t i = 0; i < u->groups.n; i++)
		if (!valid_user(u->groups.v[i]))
			return vi_yaml_error(&p->y, at, VI_EUSAGE, "invalid group name '%s'",
					     u->groups.v[i]);
	if (u->shell && u->shell[0] != '/')
		return vi_yaml_error(&p->y, vi_yaml_get(&p->y, item, "shell"), VI_EUSAGE,
				     "invalid shell '%s': expected an absolute path", u->shell);
	if ((rc = get_list(p, item, "ssh_keys", &items, &at)) < 0)
		goto cleanup;
	/* An empty key is left out, so a parameter can stand for "no key". */
	for (size_t i = 0; i < items.n && rc == 0; i++) {
		if (!items.v[i][0])
			continue;
		if (strchr(items.v[i], '\n') || !strchr(items.v[i], ' '))
			rc = vi_yaml_error(
				&p->y, at, VI_EUSAGE,
				"invalid SSH key '%.40s': expected one line such as 'ssh-ed25519 AAAA...'",
				items.v[i]);
		template_strv_push(&u->ssh_keys, items.v[i]);
	}
	template_strv_release(&items);
	if (rc < 0 || (rc = get_list(p, item, "ssh_key_files", &items, &at)) < 0)
		goto cleanup;
	for (size_t i = 0; i < items.n && rc == 0; i++) {
		char *full;
		if ((rc = host_file(p, at, "SSH key file", items.v[i], &full)) == 0) {
			template_strv_push(&u->ssh_key_files, full);
			free(full);
		}
	}
cleanup:
	template_strv_release(&items);
	return rc;
}

static int parse_users(struct parser *p, yaml_node_t *root)
{
	static const char *const keys[] = { "name", "uid",	"shell",	"groups",
					    "sudo", "ssh_keys", "ssh_key_files" };
	struct template *t = p->t;
	yaml_node_t *seq, *item;
	int rc = get_map_list(p, root, "users", keys, ARRAY_SIZE(keys), &seq);

	if (rc)
		return rc < 0 ? rc : 0;
	vi_yaml_seq_foreach(&p->y, seq, item)
	{
		t->users = xrealloc(t->users, (t->nusers + 1) * sizeof(*t->users));
		memset(&t->users[t->nusers], 0, sizeof(*t->users));
		if ((rc = parse_user(p, item, &t->users[t->nusers++])) < 0)
			return rc;
	}
	return 0;
}

/* ready: ssh, or a mapping with one of console, command and ssh. */
static int parse_ready(struct parser *p, yaml_node_t *root)
{
	static const char *const keys[] = { "console", "command", "ssh", "timeout" };
	struct template *t = p->t;
	yaml_node_t *v = vi_yaml_get(&p->y, root, "ready"), *at;
	uint64_t timeout;
	bool ssh = false;
	int rc;

	if (!v)
		return 0;
	if (vi_yaml_scalar(v)) {
		if (strcmp(vi_yaml_scalar(v), "ssh"))
			return vi_yaml_error(&p->y, v, VI_EUSAGE,
					     "'ready' must be ssh or a mapping, not '%s'",
					     vi_yaml_scalar(v));
		ssh = true;
	} else if ((rc = vi_yaml_expect_map(&p->y, v, "'ready'")) < 0 ||
		   (rc = vi_yaml_check_keys(&p->y, v, keys, ARRAY_SIZE(keys))) < 0 ||
		   (rc = get_bool(p, v, "ssh", &ssh)) < 0) {
		return rc;
	} else if (!vi_yaml_get(&p->y, v, "console") + !vi_yaml_get(&p->y, v, "command") + !ssh !=
		   2) {
		return vi_yaml_error(&p->y, v, VI_EUSAGE,
				     "'ready' needs exactly one of 'console', 'command' and 'ssh'");
	}
	free(t->ready_console);
	free(t->ready_command);
	t->ready_console = t->ready_command = NULL;
	t->ready_ssh = ssh;
	if (v->type == YAML_SCALAR_NODE)
		return 0;
	if ((rc = set_text(p, v, "console", false, &t->ready_console)) < 0 ||
	    (rc = set_text(p, v, "command", false, &t->ready_command)) < 0)
		return rc;
	if (t->ready_console && (!t->ready_console[0] || strchr(t->ready_console, '\n')))
		return vi_yaml_error(&p->y, vi_yaml_get(&p->y, v, "console"), VI_EUSAGE,
				     "'console' must be one non-empty line");
	if ((rc = get_uint(p, v, "timeout", 1, 86400, &timeout, &at)) < 0)
		return rc;
	if (rc == 0)
		t->ready_timeout = (unsigned)timeout;
	return 0;
}

/* A scalar or a list of scalars under key, replacing *l when present. */
static int get_one_or_list(struct parser *p, yaml_node_t *root, const char *key,
			   struct template_strv *l, yaml_node_t **at)
{
	char *s;
	int rc;

	if (!(*at = vi_yaml_get(&p->y, root, key)))
		return 0;
	template_strv_release(l);
	if ((*at)->type != YAML_SCALAR_NODE)
		return get_list(p, root, key, l, NULL);
	if ((rc = node_text(p, *at, key, &s)) < 0)
		return rc;
	template_strv_push(l, s);
	free(s);
	return 0;
}

/* NIC specs as `vi create --nic` takes them. */
static bool valid_nic(const char *spec)
{
	static const char *const named[] = { "bridge:", "tap:" };

	if (!strcmp(spec, "user") || !strcmp(spec, "nat") || !strcmp(spec, "none"))
		return true;
	for (size_t i = 0; i < ARRAY_SIZE(named); i++) {
		size_t n = strlen(named[i]);
		if (!strncmp(spec, named[i], n) && vi_check_name(spec + n, "interface") == 0)
			return true;
	}
	vi_error_clear();
	return false;
}

/* network: and forward:, what machines made from the image get. */
static int parse_network(struct parser *p, yaml_node_t *root)
{
	struct template *t = p->t;
	yaml_node_t *at;
	int rc;

	if ((rc = get_one_or_list(p, root, "network", &t->network, &at)) < 0)
		return rc;
	for (size_t i = 0; i < t->network.n; i++) {
		if (!valid_nic(t->network.v[i]))
			return vi_yaml_error(&p->y, at, VI_EUSAGE,
					     "invalid network '%s': expected user, nat, bridge:NAME, "
					     "tap:NAME or none",
					     t->network.v[i]);
		if (!strcmp(t->network.v[i], "none") && t->network.n > 1)
			return vi_yaml_error(&p->y, at, VI_EUSAGE,
					     "network 'none' cannot go with other NICs");
	}
	if ((rc = get_one_or_list(p, root, "forward", &t->forwards, &at)) < 0)
		return rc;
	for (size_t i = 0; i < t->forwards.n; i++) {
		struct vi_vm_forward f;
		if (vi_vm_forward_parse(t->forwards.v[i], &f) < 0)
			return vi_yaml_error(&p->y, at, VI_EUSAGE, "%s", vi_error_message());
		vi_vm_forward_release(&f);
	}
	if (t->forwards.n && t->network.n && !template_strv_has(&t->network, "user"))
		return vi_yaml_error(&p->y, at, VI_EUSAGE, "'forward' needs a 'user' network");
	return 0;
}

static void inherit(struct template *t, const struct template *b)
{
	t->hv = xstrdup(b->hv);
	t->cpus = b->cpus;
	t->max_cpus = b->max_cpus;
	t->memory = b->memory;
	t->max_memory = b->max_memory;
	t->kernel = b->kernel;
	t->kernel_path = xstrdup(b->kernel_path);
	t->kernel_package = xstrdup(b->kernel_package);
	t->initrd_path = xstrdup(b->initrd_path);
	t->no_initrd = b->no_initrd;
	t->small_initrd = b->small_initrd;
	strv_copy(&t->initrd_module_files, &b->initrd_module_files);
	t->modules_dir = xstrdup(b->modules_dir);
	strv_copy(&t->modules, &b->modules);
	strv_copy(&t->module_files, &b->module_files);
	t->cmdline = xstrdup(b->cmdline);
	t->ready_console = xstrdup(b->ready_console);
	t->ready_command = xstrdup(b->ready_command);
	t->ready_timeout = b->ready_timeout;
	t->ready_ssh = b->ready_ssh;
	strv_copy(&t->network, &b->network);
	strv_copy(&t->forwards, &b->forwards);
	t->disks = xcalloc(b->ndisks, sizeof(*t->disks));
	t->ndisks = b->ndisks;
	for (size_t i = 0; i < b->ndisks; i++) {
		t->disks[i].source = TEMPLATE_SOURCE_BASE;
		t->disks[i].size = b->disks[i].size;
	}
}

static int load_file(const char *home, const char *path, const char *want_name,
		     const char *const *sets, size_t nsets, struct template_strv *chain,
		     struct template **out);

/* A base named in a template: a name on the search path or a path relative
 * to the template's directory. *path is the caller's. */
static int base_path(struct parser *p, yaml_node_t *at, const char *ref, char **path, char **name)
{
	if (strchr(ref, '/') || (strlen(ref) > 5 && !strcmp(ref + strlen(ref) - 5, ".yaml"))) {
		*name = NULL;
		return host_file(p, at, "base", ref, path);
	}
	struct template_strv names, paths;
	int rc = vi_check_name(ref, "template");
	if (rc < 0)
		return vi_yaml_error(&p->y, at, VI_EUSAGE, "%s", vi_error_message());
	template_list_names(p->home, &names, &paths);
	rc = vi_yaml_error(&p->y, at, VI_ENOTFOUND, "no base template named '%s'", ref);
	for (size_t i = 0; i < names.n; i++)
		if (!strcmp(names.v[i], ref)) {
			*path = xstrdup(paths.v[i]);
			*name = xstrdup(ref);
			vi_error_clear();
			rc = 0;
		}
	template_strv_release(&names);
	template_strv_release(&paths);
	return rc;
}

static int parse_base(struct parser *p, yaml_node_t *root)
{
	struct template *t = p->t;
	yaml_node_t *at;
	char *ref, *path = NULL, *name = NULL, real[PATH_MAX];
	int rc = get_text(p, root, "base", false, &ref, &at);

	if (rc)
		return rc < 0 ? rc : 0;
	if ((rc = base_path(p, at, ref, &path, &name)) < 0)
		goto cleanup;
	if (realpath(path, real) && template_strv_has(p->chain, real)) {
		rc = vi_yaml_error(&p->y, at, VI_EUSAGE, "base '%s' leads back to '%s'", ref,
				   t->name);
		goto cleanup;
	}
	if (p->chain->n >= MAX_DEPTH) {
		rc = vi_yaml_error(&p->y, at, VI_EUSAGE, "base '%s': more than %d levels of bases",
				   ref, MAX_DEPTH);
		goto cleanup;
	}
	if ((rc = load_file(p->home, path, name, NULL, 0, p->chain, &t->base)) < 0)
		goto cleanup;
	if ((at = vi_yaml_get(&p->y, root, "disks"))) {
		rc = vi_yaml_error(
			&p->y, at, VI_EUSAGE,
			"'disks' cannot be used with 'base': the disks are overlays on the base's");
		goto cleanup;
	}
	inherit(t, t->base);
	t->depth = t->base->depth + 1;
cleanup:
	free(ref);
	free(path);
	free(name);
	return rc;
}

/* Machine settings: given ones override what the base had. */
static int parse_machine(struct parser *p, yaml_node_t *root)
{
	struct template *t = p->t;
	yaml_node_t *cpus_at, *max_at, *mem_at, *maxm_at;
	uint64_t v;
	int rc;

	if ((rc = set_text(p, root, "hv", false, &t->hv)) < 0)
		return rc;
	if (t->hv && vi_check_name(t->hv, "backend") < 0)
		return vi_yaml_error(&p->y, vi_yaml_get(&p->y, root, "hv"), VI_EUSAGE, "%s",
				     vi_error_message());
	if ((rc = get_uint(p, root, "cpus", 1, 4096, &v, &cpus_at)) < 0)
		return rc;
	if (rc == 0) {
		t->cpus = (unsigned)v;
		if (t->max_cpus && t->max_cpus < t->cpus)
			t->max_cpus = t->cpus;
	}
	if ((rc = get_uint(p, root, "max_cpus", 1, 4096, &v, &max_at)) < 0)
		return rc;
	if (rc == 0)
		t->max_cpus = (unsigned)v;
	if ((rc = get_size(p, root, "memory", VI_VM_MIN_MEMORY, VI_VM_MAX_MEMORY, &v, &mem_at)) < 0)
		return rc;
	if (rc == 0) {
		t->memory = v;
		if (t->max_memory && t->max_memory < v)
			t->max_memory = v;
	}
	if ((rc = get_size(p, root, "max_memory", VI_VM_MIN_MEMORY, VI_VM_MAX_MEMORY, &v,
			    &maxm_at)) < 0)
		return rc;
	if (rc == 0)
		t->max_memory = v;
	if (!t->cpus)
		t->cpus = 1;
	if (!t->memory)
		t->memory = VI_VM_DEFAULT_MEMORY;
	/* No maximum: `vi create` leaves room to grow on the host it runs on. */
	if (t->max_cpus && t->max_cpus < t->cpus)
		return vi_yaml_error(&p->y, max_at ? max_at : cpus_at, VI_EUSAGE,
				     "max_cpus %u is below cpus %u", t->max_cpus, t->cpus);
	if (t->max_memory && t->max_memory < t->memory)
		return vi_yaml_error(&p->y, maxm_at ? maxm_at : mem_at, VI_EUSAGE,
				     "max_memory is below memory");
	return 0;
}

/* Keys that change the image need somewhere to apply them. */
static int check_root(struct parser *p, yaml_node_t *root)
{
	static const char *const steps[] = { "hostname",   "users",   "files",	"packages", "run",
					     "first_boot", "modules", "programs" };
	struct template *t = p->t;
	bool have_root = false;

	for (size_t i = 0; i < t->ndisks; i++)
		have_root |= t->disks[i].source != TEMPLATE_SOURCE_EMPTY;
	if (have_root)
		return 0;
	for (size_t i = 0; i < ARRAY_SIZE(steps); i++) {
		yaml_node_t *at = vi_yaml_get(&p->y, root, steps[i]);
		if (at)
			return vi_yaml_error(&p->y, at, VI_EUSAGE,
					     "'%s' needs a disk with a root file system", steps[i]);
	}
	if (t->kernel == TEMPLATE_KERNEL_PACKAGE || t->ready_command || t->ready_ssh) {
		const char *key = t->ready_command || t->ready_ssh ? "ready" : "kernel";
		return vi_yaml_error(&p->y, vi_yaml_get(&p->y, root, key), VI_EUSAGE,
				     "'%s' needs a disk with a root file system", key);
	}
	return 0;
}

static int parse(struct parser *p, yaml_node_t *root, const char *want_name,
		 const char *const *sets, size_t nsets)
{
	static const char *const keys[] = {
		"name",	    "version",	  "description", "base",       "hv",	 "cpus",
		"max_cpus", "memory",	  "max_memory",	 "kernel",     "initrd", "modules",
		"cmdline",  "disks",	  "hostname",	 "users",      "files",	 "packages",
		"run",	    "first_boot", "ready",	 "parameters", "network", "forward",
		"programs",
	};
	struct template *t = p->t;
	yaml_node_t *at;
	const char *name = NULL;
	int rc;

	if ((rc = vi_yaml_expect_map(&p->y, root, "a template")) < 0 ||
	    (rc = vi_yaml_check_keys(&p->y, root, keys, ARRAY_SIZE(keys))) < 0 ||
	    (rc = parse_params(p, root)) < 0 ||
	    (rc = vi_yaml_get_str(&p->y, root, "name", true, &name)) < 0)
		return rc;
	at = vi_yaml_get(&p->y, root, "name");
	if (vi_check_name(name, "template") < 0)
		return vi_yaml_error(&p->y, at, VI_EUSAGE, "%s", vi_error_message());
	if (want_name && strcmp(name, want_name))
		return vi_yaml_error(&p->y, at, VI_EUSAGE,
				     "the template in '%s.yaml' must be named '%s', not '%s'",
				     want_name, want_name, name);
	t->name = xstrdup(name);
	if ((rc = apply_sets(p, sets, nsets)) < 0 ||
	    (rc = set_text(p, root, "version", false, &t->version)) < 0 ||
	    (rc = set_text(p, root, "description", false, &t->description)) < 0 ||
	    (rc = parse_base(p, root)) < 0 || (rc = parse_machine(p, root)) < 0 ||
	    (rc = parse_kernel(p, root)) < 0 || (rc = parse_initrd(p, root)) < 0 ||
	    (rc = parse_modules(p, root)) < 0 ||
	    (rc = set_text(p, root, "cmdline", false, &t->cmdline)) < 0)
		return rc;
	if (!t->version)
		t->version = xstrdup("1");
	if (t->kernel == TEMPLATE_KERNEL_NONE && (at = vi_yaml_get(&p->y, root, "cmdline")))
		return vi_yaml_error(&p->y, at, VI_EUSAGE, "'cmdline' needs a 'kernel'");
	if (t->kernel != TEMPLATE_KERNEL_NONE && !t->cmdline)
		t->cmdline = xstrdup(DEFAULT_CMDLINE);
	if (t->no_initrd) {
		free(t->initrd_path);
		t->initrd_path = NULL;
	}
	if (!t->base && (rc = parse_disks(p, root)) < 0)
		return rc;
	if (t->small_initrd && !t->base && t->ndisks && t->disks[0].filesystem &&
	    strncmp(t->disks[0].filesystem, "ext", 3))
		return vi_yaml_error(&p->y, vi_yaml_get(&p->y, root, "initrd"), VI_EUSAGE,
				     "'initrd: minimal' mounts an ext2, ext3 or ext4 root, not %s",
				     t->disks[0].filesystem);
	if ((rc = set_text(p, root, "hostname", false, &t->hostname)) < 0)
		return rc;
	if (t->hostname && vi_check_name(t->hostname, "host") < 0)
		return vi_yaml_error(&p->y, vi_yaml_get(&p->y, root, "hostname"), VI_EUSAGE, "%s",
				     vi_error_message());
	if ((rc = parse_users(p, root)) < 0 || (rc = parse_files(p, root)) < 0 ||
	    (rc = get_list(p, root, "packages", &t->packages, &at)) < 0 ||
	    (rc = check_packages(p, at, &t->packages)) < 0 ||
	    (rc = get_list(p, root, "run", &t->run, NULL)) < 0 ||
	    (rc = get_list(p, root, "first_boot", &t->first_boot, NULL)) < 0 ||
	    (rc = parse_programs(p, root)) < 0 || (rc = parse_ready(p, root)) < 0 ||
	    (rc = parse_network(p, root)) < 0)
		return rc;
	if (!t->ready_timeout)
		t->ready_timeout = DEFAULT_READY_TIMEOUT;
	return check_root(p, root);
}

static int load_parsed(const char *home, const char *path, const char *want_name, const char *text,
		       size_t len, const char *const *sets, size_t nsets,
		       struct template_strv *chain, struct template **out)
{
	struct parser p = { .home = home, .chain = chain };
	struct template *t = xcalloc(1, sizeof(*t));
	char real[PATH_MAX], *copy;
	int rc;

	t->path = realpath(path, real) ? xstrdup(real) : xstrdup(path);
	copy = xstrdup(t->path);
	t->dir = xstrdup(dirname(copy));
	free(copy);
	p.t = t;
	rc = text ? vi_yaml_load_string(&p.y, path, text, len) : vi_yaml_load_file(&p.y, path);
	if (rc < 0) {
		vi_yaml_release(&p.y);
		template_free(t);
		return rc;
	}
	template_strv_push(chain, t->path);
	rc = parse(&p, vi_yaml_root(&p.y), want_name, sets, nsets);
	free(chain->v[--chain->n]);
	chain->v[chain->n] = NULL;
	free(p.by_name);
	vi_yaml_release(&p.y);
	if (rc < 0) {
		template_free(t);
		return rc;
	}
	*out = t;
	return 0;
}

static int load_file(const char *home, const char *path, const char *want_name,
		     const char *const *sets, size_t nsets, struct template_strv *chain,
		     struct template **out)
{
	return load_parsed(home, path, want_name, NULL, 0, sets, nsets, chain, out);
}

int template_load_string(const char *home, const char *file, const char *text, size_t len,
			 const char *const *sets, size_t nsets, struct template **out)
{
	struct template_strv chain = { 0 };
	int rc = load_parsed(home, file, NULL, text, len, sets, nsets, &chain, out);

	template_strv_release(&chain);
	return rc;
}

static bool is_path(const char *ref)
{
	size_t n = strlen(ref);
	return strchr(ref, '/') || (n > 5 && !strcmp(ref + n - 5, ".yaml"));
}

bool template_exists(const char *home, const char *ref)
{
	struct template_strv names, paths;
	bool found;

	if (is_path(ref))
		return true;
	template_list_names(home, &names, &paths);
	found = template_strv_has(&names, ref);
	template_strv_release(&names);
	template_strv_release(&paths);
	return found;
}

int template_load(const char *home, const char *ref, const char *const *sets, size_t nsets,
		  struct template **out)
{
	struct template_strv chain = { 0 }, names, paths;
	int rc;

	if (is_path(ref)) {
		rc = load_file(home, ref, NULL, sets, nsets, &chain, out);
		template_strv_release(&chain);
		return rc;
	}
	if ((rc = vi_check_name(ref, "template")) < 0)
		return rc;
	template_list_names(home, &names, &paths);
	rc = 1;
	for (size_t i = 0; i < names.n && rc == 1; i++)
		if (!strcmp(names.v[i], ref))
			rc = load_file(home, paths.v[i], ref, sets, nsets, &chain, out);
	if (rc == 1) {
		const char *sug = vi_suggest(ref, (const char *const *)names.v, names.n);
		rc = sug ? vi_error(VI_ENOTFOUND, "no template named '%s'; did you mean '%s'?", ref,
				    sug)
			 : vi_error(VI_ENOTFOUND, "no template named '%s' (see 'vi template list')",
				    ref);
	}
	template_strv_release(&names);
	template_strv_release(&paths);
	template_strv_release(&chain);
	return rc;
}

static void disk_release(struct template_disk *d)
{
	free(d->filesystem);
	free(d->path);
	free(d->suite);
	free(d->variant);
	free(d->mirror);
	template_strv_release(&d->components);
	template_strv_release(&d->packages);
}

void template_free(struct template *t)
{
	if (!t)
		return;
	template_free(t->base);
	free(t->path);
	free(t->dir);
	free(t->name);
	free(t->version);
	free(t->description);
	free(t->hv);
	kernel_reset(t);
	free(t->cmdline);
	for (size_t i = 0; i < t->ndisks; i++)
		disk_release(&t->disks[i]);
	free(t->disks);
	free(t->hostname);
	for (size_t i = 0; i < t->nusers; i++) {
		struct template_user *u = &t->users[i];
		free(u->name);
		free(u->shell);
		template_strv_release(&u->groups);
		template_strv_release(&u->ssh_keys);
		template_strv_release(&u->ssh_key_files);
	}
	free(t->users);
	for (size_t i = 0; i < t->nfiles; i++) {
		free(t->files[i].path);
		free(t->files[i].content);
		free(t->files[i].source);
		free(t->files[i].owner);
	}
	free(t->files);
	template_strv_release(&t->packages);
	template_strv_release(&t->run);
	template_strv_release(&t->first_boot);
	template_strv_release(&t->programs);
	template_strv_release(&t->program_files);
	template_strv_release(&t->network);
	template_strv_release(&t->forwards);
	free(t->ready_console);
	free(t->ready_command);
	for (size_t i = 0; i < t->nparams; i++) {
		free(t->params[i].name);
		free(t->params[i].value);
		free(t->params[i].description);
	}
	free(t->params);
	free(t);
}

/* --- the minimal initrd's init (see tools/template-initrd.c) ----------- */

/* The modules, in the order insmod takes them, are listed in /modules. The
 * root waits 30 s for its device; a failure leaves a shell on the console,
 * as a distribution's initrd does. */
const char template_initrd_init[] =
	"#!/bin/busybox sh\n"
	"# vi's minimal initrd: the modules that mount the root, the root named\n"
	"# on the kernel command line, then the root's own init.\n"
	"/bin/busybox --install -s /bin\n"
	"export PATH=/bin\n"
	"mount -t proc proc /proc\n"
	"mount -t sysfs sysfs /sys\n"
	"mount -t devtmpfs devtmpfs /dev\n"
	"fail() {\n"
	"\techo \"vi initrd: $*\" >/dev/console\n"
	"\texec sh </dev/console >/dev/console 2>&1\n"
	"}\n"
	"root= fstype=ext4 mode=rw flags= init=/sbin/init\n"
	"for arg in $(cat /proc/cmdline); do\n"
	"\tcase $arg in\n"
	"\troot=*) root=${arg#root=} ;;\n"
	"\trootfstype=*) fstype=${arg#rootfstype=} ;;\n"
	"\trootflags=*) flags=,${arg#rootflags=} ;;\n"
	"\tro | rw) mode=$arg ;;\n"
	"\tinit=*) init=${arg#init=} ;;\n"
	"\tesac\n"
	"done\n"
	"[ -n \"$root\" ] || fail \"no root= on the kernel command line\"\n"
	"while read -r m; do\n"
	"\tinsmod \"/lib/modules/$m\" || fail \"cannot load $m\"\n"
	"done </modules\n"
	"i=0\n"
	"while :; do\n"
	"\tcase $root in\n"
	"\tUUID=* | LABEL=*) dev=$(findfs \"$root\" 2>/dev/null) ;;\n"
	"\t*) dev=$root ;;\n"
	"\tesac\n"
	"\t[ -n \"$dev\" ] && [ -b \"$dev\" ] && break\n"
	"\ti=$((i + 1))\n"
	"\t[ $i -lt 300 ] || fail \"no root device $root after 30 s\"\n"
	"\tsleep 0.1\n"
	"done\n"
	"mount -t \"$fstype\" -o \"$mode$flags\" \"$dev\" /root || fail \"cannot mount $dev on /\"\n"
	"for d in dev proc sys; do\n"
	"\tmount --move /$d /root/$d 2>/dev/null || umount /$d\n"
	"done\n"
	"exec switch_root /root \"$init\"\n";

/* --- canonical text and digest ------------------------------------------ */

struct hash_memo {
	char *path;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtime;
	char hex[SHA256_HEX_SIZE];
};

static struct hash_memo *memo;
static size_t nmemo;

int template_input_hash(const char *path, char hex[SHA256_HEX_SIZE])
{
	struct stat st;
	int rc;

	if (stat(path, &st) < 0)
		return vi_error_errno(errno == ENOENT ? VI_ENOTFOUND : VI_EFAIL, errno,
				      "cannot read '%s'", path);
	for (size_t i = 0; i < nmemo; i++) {
		struct hash_memo *m = &memo[i];
		if (!strcmp(m->path, path) && m->dev == st.st_dev && m->ino == st.st_ino &&
		    m->size == st.st_size && m->mtime.tv_sec == st.st_mtim.tv_sec &&
		    m->mtime.tv_nsec == st.st_mtim.tv_nsec) {
			memcpy(hex, m->hex, SHA256_HEX_SIZE);
			return 0;
		}
	}
	if ((rc = sha256_file(path, hex)) < 0)
		return rc;
	memo = xrealloc(memo, (nmemo + 1) * sizeof(*memo));
	memo[nmemo++] = (struct hash_memo){ xstrdup(path), st.st_dev,  st.st_ino,
					    st.st_size,	   st.st_mtim, "" };
	memcpy(memo[nmemo - 1].hex, hex, SHA256_HEX_SIZE);
	return 0;
}

struct emitter {
	struct vi_yaml_out o;
	bool digest; /* inputs by content ("sha256:HEX"), not by path */
	int rc;
};

/* A host input: its path for people, its contents' digest for the digest. */
static void emit_input(struct emitter *e, const char *key, const char *path)
{
	char hex[SHA256_HEX_SIZE], buf[80];

	if (!e->digest) {
		if (key)
			vi_yaml_out_str(&e->o, key, path);
		else
			vi_yaml_out_scalar(&e->o, path);
		return;
	}
	if (template_input_hash(path, hex) < 0) {
		e->rc = -vi_error_code();
		hex[0] = '\0';
	}
	snprintf(buf, sizeof(buf), "sha256:%s", hex);
	if (key)
		vi_yaml_out_str(&e->o, key, buf);
	else
		vi_yaml_out_scalar(&e->o, buf);
}

static void emit_list(struct emitter *e, const char *key, const struct template_strv *l)
{
	if (!l->n)
		return;
	vi_yaml_out_scalar(&e->o, key);
	vi_yaml_out_seq_start(&e->o);
	for (size_t i = 0; i < l->n; i++)
		vi_yaml_out_scalar(&e->o, l->v[i]);
	vi_yaml_out_end(&e->o);
}

static const char *source_name(enum template_source s)
{
	static const char *const names[] = { "empty",	    "busybox", "tarball",
					     "debootstrap", "image",   "base" };
	return names[s];
}

static void emit_disks(struct emitter *e, const struct template *t)
{
	vi_yaml_out_scalar(&e->o, "disks");
	vi_yaml_out_seq_start(&e->o);
	for (size_t i = 0; i < t->ndisks; i++) {
		const struct template_disk *d = &t->disks[i];
		vi_yaml_out_map_start(&e->o);
		if (d->size)
			vi_yaml_out_size(&e->o, "size", d->size);
		vi_yaml_out_str(&e->o, "filesystem", d->filesystem);
		vi_yaml_out_scalar(&e->o, "source");
		switch (d->source) {
		case TEMPLATE_SOURCE_TARBALL:
		case TEMPLATE_SOURCE_IMAGE:
			vi_yaml_out_map_start(&e->o);
			emit_input(e, source_name(d->source), d->path);
			vi_yaml_out_end(&e->o);
			break;
		case TEMPLATE_SOURCE_DEBOOTSTRAP:
			vi_yaml_out_map_start(&e->o);
			vi_yaml_out_str(&e->o, "debootstrap", d->suite);
			vi_yaml_out_str(&e->o, "variant", d->variant);
			vi_yaml_out_str(&e->o, "mirror", d->mirror);
			emit_list(e, "components", &d->components);
			emit_list(e, "packages", &d->packages);
			vi_yaml_out_end(&e->o);
			break;
		case TEMPLATE_SOURCE_BUSYBOX:
			/* The binary that goes in is an input like any other. */
			if (e->digest) {
				vi_yaml_out_map_start(&e->o);
				emit_input(e, "busybox", TEMPLATE_BUSYBOX);
				vi_yaml_out_end(&e->o);
				break;
			}
			/* fall through */
		default:
			vi_yaml_out_scalar(&e->o, source_name(d->source));
		}
		vi_yaml_out_end(&e->o);
	}
	vi_yaml_out_end(&e->o);
}

static void emit_kernel(struct emitter *e, const struct template *t)
{
	switch (t->kernel) {
	case TEMPLATE_KERNEL_NONE:
		return;
	case TEMPLATE_KERNEL_HOST:
		if (e->digest)
			emit_input(e, "kernel", t->kernel_path);
		else
			vi_yaml_out_str(&e->o, "kernel", "host");
		break;
	case TEMPLATE_KERNEL_FILE:
		emit_input(e, "kernel", t->kernel_path);
		break;
	case TEMPLATE_KERNEL_PACKAGE:
		vi_yaml_out_scalar(&e->o, "kernel");
		vi_yaml_out_map_start(&e->o);
		vi_yaml_out_str(&e->o, "package", t->kernel_package);
		vi_yaml_out_end(&e->o);
		break;
	}
	if (t->no_initrd) {
		vi_yaml_out_str(&e->o, "initrd", "none");
	} else if (t->small_initrd && !e->digest) {
		vi_yaml_out_str(&e->o, "initrd", "minimal");
	} else if (t->small_initrd) {
		/* What goes in: vi's init, busybox and the modules, by content. */
		vi_yaml_out_scalar(&e->o, "initrd");
		vi_yaml_out_map_start(&e->o);
		char hex[SHA256_HEX_SIZE], buf[80];
		sha256_hex(template_initrd_init, strlen(template_initrd_init), hex);
		snprintf(buf, sizeof(buf), "sha256:%s", hex);
		vi_yaml_out_str(&e->o, "minimal", buf);
		emit_input(e, "busybox", TEMPLATE_BUSYBOX);
		vi_yaml_out_scalar(&e->o, "modules");
		vi_yaml_out_seq_start(&e->o);
		for (size_t i = 0; i < t->initrd_module_files.n; i++) {
			char *path = xasprintf("%s/%s", t->modules_dir,
					       t->initrd_module_files.v[i]);
			emit_input(e, NULL, path);
			free(path);
		}
		vi_yaml_out_end(&e->o);
		vi_yaml_out_end(&e->o);
	} else if (t->initrd_path)
		emit_input(e, "initrd", t->initrd_path);
	if (t->modules.n) {
		vi_yaml_out_scalar(&e->o, "modules");
		vi_yaml_out_seq_start(&e->o);
		if (!e->digest) {
			for (size_t i = 0; i < t->modules.n; i++)
				vi_yaml_out_scalar(&e->o, t->modules.v[i]);
		} else {
			for (size_t i = 0; i < t->module_files.n; i++) {
				char *path =
					xasprintf("%s/%s", t->modules_dir, t->module_files.v[i]);
				vi_yaml_out_map_start(&e->o);
				vi_yaml_out_str(&e->o, "file", t->module_files.v[i]);
				emit_input(e, "content", path);
				vi_yaml_out_end(&e->o);
				free(path);
			}
		}
		vi_yaml_out_end(&e->o);
	}
	vi_yaml_out_str(&e->o, "cmdline", t->cmdline);
}

static void emit_steps(struct emitter *e, const struct template *t)
{
	char mode[16];

	vi_yaml_out_str(&e->o, "hostname", t->hostname);
	if (t->nusers) {
		vi_yaml_out_scalar(&e->o, "users");
		vi_yaml_out_seq_start(&e->o);
		for (size_t i = 0; i < t->nusers; i++) {
			const struct template_user *u = &t->users[i];
			vi_yaml_out_map_start(&e->o);
			vi_yaml_out_str(&e->o, "name", u->name);
			if (u->uid)
				vi_yaml_out_uint(&e->o, "uid", u->uid);
			vi_yaml_out_str(&e->o, "shell", u->shell);
			emit_list(e, "groups", &u->groups);
			if (u->sudo)
				vi_yaml_out_bool(&e->o, "sudo", true);
			emit_list(e, "ssh_keys", &u->ssh_keys);
			if (u->ssh_key_files.n) {
				vi_yaml_out_scalar(&e->o, "ssh_key_files");
				vi_yaml_out_seq_start(&e->o);
				for (size_t k = 0; k < u->ssh_key_files.n; k++)
					emit_input(e, NULL, u->ssh_key_files.v[k]);
				vi_yaml_out_end(&e->o);
			}
			vi_yaml_out_end(&e->o);
		}
		vi_yaml_out_end(&e->o);
	}
	if (t->nfiles) {
		vi_yaml_out_scalar(&e->o, "files");
		vi_yaml_out_seq_start(&e->o);
		for (size_t i = 0; i < t->nfiles; i++) {
			const struct template_file *f = &t->files[i];
			vi_yaml_out_map_start(&e->o);
			vi_yaml_out_str(&e->o, "path", f->path);
			vi_yaml_out_str(&e->o, "content", f->content);
			if (f->source)
				emit_input(e, "source", f->source);
			snprintf(mode, sizeof(mode), "%04o", f->mode);
			vi_yaml_out_str(&e->o, "mode", mode);
			vi_yaml_out_str(&e->o, "owner", f->owner);
			vi_yaml_out_end(&e->o);
		}
		vi_yaml_out_end(&e->o);
	}
	emit_list(e, "packages", &t->packages);
	emit_list(e, "run", &t->run);
	emit_list(e, "first_boot", &t->first_boot);
	if (t->programs.n && !e->digest)
		emit_list(e, "programs", &t->programs);
	if (t->programs.n && e->digest) {
		/* What goes in: each file, the libraries too, by content. */
		vi_yaml_out_scalar(&e->o, "programs");
		vi_yaml_out_seq_start(&e->o);
		for (size_t i = 0; i < t->program_files.n; i++) {
			vi_yaml_out_map_start(&e->o);
			vi_yaml_out_str(&e->o, "file", t->program_files.v[i]);
			emit_input(e, "content", t->program_files.v[i]);
			vi_yaml_out_end(&e->o);
		}
		vi_yaml_out_end(&e->o);
	}
}

static int emit(struct template *t, bool digest, char **text)
{
	struct emitter e = { .digest = digest };
	int rc;

	if (digest && t->base && (rc = template_digest(t->base)) < 0)
		return rc;
	vi_yaml_out_init(&e.o);
	vi_yaml_out_map_start(&e.o);
	if (digest)
		vi_yaml_out_uint(&e.o, "recipe", TEMPLATE_RECIPE);
	vi_yaml_out_str(&e.o, "name", t->name);
	vi_yaml_out_str(&e.o, "version", t->version);
	vi_yaml_out_str(&e.o, "description", t->description);
	if (t->base) {
		char buf[80];
		snprintf(buf, sizeof(buf), "sha256:%s", t->base->digest);
		vi_yaml_out_str(&e.o, "base", digest ? buf : t->base->name);
	}
	if (t->nparams && !digest) {
		/* Parameters reach the digest through the values they fill in. */
		vi_yaml_out_scalar(&e.o, "parameters");
		vi_yaml_out_map_start(&e.o);
		for (size_t i = 0; i < t->nparams; i++)
			vi_yaml_out_str(&e.o, t->params[i].name, t->params[i].value);
		vi_yaml_out_end(&e.o);
	}
	vi_yaml_out_str(&e.o, "hv", t->hv);
	vi_yaml_out_uint(&e.o, "cpus", t->cpus);
	vi_yaml_out_uint(&e.o, "max_cpus", t->max_cpus);
	vi_yaml_out_size(&e.o, "memory", t->memory);
	vi_yaml_out_size(&e.o, "max_memory", t->max_memory);
	emit_kernel(&e, t);
	emit_disks(&e, t);
	emit_steps(&e, t);
	if (t->ready_console || t->ready_command || t->ready_ssh) {
		vi_yaml_out_scalar(&e.o, "ready");
		vi_yaml_out_map_start(&e.o);
		vi_yaml_out_str(&e.o, "console", t->ready_console);
		vi_yaml_out_str(&e.o, "command", t->ready_command);
		if (t->ready_ssh)
			vi_yaml_out_bool(&e.o, "ssh", true);
		vi_yaml_out_uint(&e.o, "timeout", t->ready_timeout);
		vi_yaml_out_end(&e.o);
	}
	/* In the digest too: the manifest, which names the image, records them. */
	emit_list(&e, "network", &t->network);
	emit_list(&e, "forward", &t->forwards);
	vi_yaml_out_end(&e.o);
	rc = vi_yaml_out_finish(&e.o, text, NULL);
	if (rc == 0 && e.rc < 0) {
		free(*text);
		/* The message of the input that could not be read is still current. */
		return e.rc;
	}
	return rc;
}

int template_to_yaml(struct template *t, char **text)
{
	return emit(t, false, text);
}

int template_digest(struct template *t)
{
	char *text;
	int rc;

	if (t->digest[0])
		return 0;
	if ((rc = emit(t, true, &text)) < 0)
		return rc;
	sha256_hex(text, strlen(text), t->digest);
	free(text);
	return 0;
}

char *template_disk_file(size_t i)
{
	return i ? xasprintf("disk%zu.qcow2", i) : xstrdup("disk.qcow2");
}
