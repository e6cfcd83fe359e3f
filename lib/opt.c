/* Option parsing from tables, GNU style: long options with "=" or a separate
 * argument, short flags, options anywhere among the arguments, "--" last. */
#include "opt.h"
#include "error.h"
#include "util.h"

#include <stdlib.h>
#include <string.h>

static const struct vi_option *find_long(const struct vi_option *opts, const char *name, size_t len)
{
	for (; opts && opts->name; opts++)
		if (strlen(opts->name) == len && !strncmp(opts->name, name, len))
			return opts;
	return NULL;
}

static const struct vi_option *find_short(const struct vi_option *opts, char c)
{
	for (; opts && opts->name; opts++)
		if (opts->short_name && opts->short_name == c)
			return opts;
	return NULL;
}

static int unknown_option(const char *arg, const struct vi_option *opts,
			  const struct vi_option *fallback)
{
	const char *names[128];
	size_t n = 0;
	char word[64];

	for (const struct vi_option *t = opts; t && t->name && n < ARRAY_SIZE(names); t++)
		names[n++] = t->name;
	for (const struct vi_option *t = fallback; t && t->name && n < ARRAY_SIZE(names); t++)
		names[n++] = t->name;
	snprintf(word, sizeof(word), "%.*s", (int)strcspn(arg + 2, "="), arg + 2);
	const char *s = arg[1] == '-' ? vi_suggest(word, names, n) : NULL;
	if (s)
		return vi_error(VI_EUSAGE, "unknown option '%s'; did you mean '--%s'?", arg, s);
	return vi_error(VI_EUSAGE, "unknown option '%s'", arg);
}

static int store_value(const struct vi_option *o, const char *spelled, const char *val)
{
	char what[128];

	snprintf(what, sizeof(what), "value for %s", spelled);
	switch (o->type) {
	case VI_OPT_STRING:
		*(const char **)o->value = val;
		return 0;
	case VI_OPT_UINT:
		return vi_parse_uint(val, what, o->min, o->max ? o->max : UINT32_MAX, o->value);
	case VI_OPT_SIZE:
		return vi_parse_size(val, what, o->value);
	case VI_OPT_LIST: {
		struct vi_strlist *l = o->value;
		l->items = xrealloc(l->items, (l->n + 1) * sizeof(*l->items));
		l->items[l->n++] = val;
		return 0;
	}
	default:
		return vi_error(VI_EUSAGE, "option %s takes no value", spelled);
	}
}

int vi_opt_dashdash = -1;

int vi_opt_parse(const struct vi_option *opts, const struct vi_option *fallback, int *argc,
		 char **argv)
{
	int n = *argc, out = 0, i;

	vi_opt_dashdash = -1;
	for (i = 0; i < n; i++) {
		char *arg = argv[i];
		const struct vi_option *o;
		char spelled[80];
		const char *val = NULL;

		if (!strcmp(arg, "--")) {
			vi_opt_dashdash = out;
			i++;
			break;
		}
		if (arg[0] != '-' || !arg[1]) {
			argv[out++] = arg;
			continue;
		}
		if (arg[1] == '-') {
			const char *eq = strchr(arg + 2, '=');
			size_t len = eq ? (size_t)(eq - arg - 2) : strlen(arg + 2);
			o = find_long(opts, arg + 2, len);
			if (!o)
				o = find_long(fallback, arg + 2, len);
			if (!o)
				return unknown_option(arg, opts, fallback);
			snprintf(spelled, sizeof(spelled), "--%s", o->name);
			if (eq)
				val = eq + 1;
		} else {
			if (arg[2]) /* clustered short flags: -qv */
				for (const char *c = arg + 1; *c; c++) {
					o = find_short(opts, *c);
					if (!o)
						o = find_short(fallback, *c);
					if (!o || o->type != VI_OPT_FLAG)
						return vi_error(VI_EUSAGE, "unknown option '-%c'", *c);
					*(int *)o->value = 1;
				}
			if (arg[2])
				continue;
			o = find_short(opts, arg[1]);
			if (!o)
				o = find_short(fallback, arg[1]);
			if (!o)
				return vi_error(VI_EUSAGE, "unknown option '%s'", arg);
			snprintf(spelled, sizeof(spelled), "-%c", o->short_name);
		}
		if (o->type == VI_OPT_FLAG) {
			if (val)
				return vi_error(VI_EUSAGE, "option %s takes no value", spelled);
			*(int *)o->value = 1;
			continue;
		}
		if (!val) {
			if (i + 1 >= n)
				return vi_error(VI_EUSAGE, "option %s needs a value (%s)", spelled,
						o->argname ? o->argname : "ARG");
			val = argv[++i];
		}
		int rc = store_value(o, spelled, val);
		if (rc < 0)
			return rc;
	}
	for (; i < n; i++)
		argv[out++] = argv[i];
	argv[out] = NULL;
	*argc = out;
	return 0;
}

void vi_opt_synopsis(FILE *f, const char *command, const struct vi_option *opts, const char *args)
{
	fputs(command, f);
	for (const struct vi_option *o = opts; o && o->name; o++) {
		if (o->type == VI_OPT_FLAG)
			fprintf(f, " [--%s]", o->name);
		else
			fprintf(f, " [--%s %s]%s", o->name, o->argname ? o->argname : "ARG",
				o->type == VI_OPT_LIST ? "..." : "");
	}
	if (args && *args)
		fprintf(f, " %s", args);
}

void vi_opt_help(FILE *f, const struct vi_option *opts)
{
	for (const struct vi_option *o = opts; o && o->name; o++) {
		char left[64];
		int n = 0;
		if (o->short_name)
			n = snprintf(left, sizeof(left), "-%c, ", o->short_name);
		snprintf(left + n, sizeof(left) - n, "--%s%s%s", o->name, o->argname ? " " : "",
			 o->argname ? o->argname : "");
		fprintf(f, "  %-22s %s\n", left, o->help);
	}
}

void vi_strlist_release(struct vi_strlist *l)
{
	free(l->items);
	l->items = NULL;
	l->n = 0;
}
