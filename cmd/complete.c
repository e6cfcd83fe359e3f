/* vi __complete WORD...: completion candidates for the shell scripts in
 * completion/, read from the command and option tables. The last word is the
 * one being completed (possibly empty). One candidate per line; a line
 * "__files__" or "__dirs__" asks the shell to complete paths itself. */
#include "cmd.h"
#include "engine.h"
#include "error.h"
#include "host.h"
#include "template.h"
#include "util.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The completion scripts look for this in the binary before they ask it
 * anything: another vi on PATH (the editor) must never be run by a Tab. */
__attribute__((used)) static const char completion_signature[] = "vi-complete-protocol 1";

static const char *cur = "";
static const char *last_positional; /* the VM whose snapshots are completed */

static void offer(const char *word)
{
	if (!strncmp(word, cur, strlen(cur)))
		printf("%s\n", word);
}

static bool in_table(const struct vi_option *opts, const char *name)
{
	for (const struct vi_option *o = opts; o && o->name; o++)
		if (!strcmp(o->name, name))
			return true;
	return false;
}

/* A verb's options, then the global ones it does not list itself. */
static void offer_options(const struct vi_option *opts, const struct vi_option *except)
{
	for (const struct vi_option *o = opts; o && o->name; o++) {
		char buf[80];
		if (in_table(except, o->name))
			continue;
		snprintf(buf, sizeof(buf), "--%s", o->name);
		offer(buf);
	}
}

/* The snapshots of VM vm, each as PREFIX + name. */
static void offer_snapshots(const struct vi_store *s, const char *vm, const char *prefix)
{
	char *dir = vi_check_name(vm, "VM") == 0 ? vi_store_path(s, "vms/%s/snapshots", vm) : NULL;
	DIR *d = dir ? opendir(dir) : NULL;
	struct dirent *e;

	while (d && (e = readdir(d)))
		if (e->d_name[0] != '.') {
			char *w = xasprintf("%s%s", prefix, e->d_name);
			offer(w);
			free(w);
		}
	if (d)
		closedir(d);
	free(dir);
}

/* The VMs defined in the store (read, not created: a missing one offers
 * nothing), or with "VM@" typed, that VM's snapshots as VM@SNAPSHOT. */
static void offer_vms(bool snapshots)
{
	struct vi_store s = { .home = ctx.home ? xstrdup(ctx.home) : vi_store_default_home() };
	const char *at = strchr(cur, '@');
	char **names;
	size_t n;

	if (snapshots) {
		if (last_positional)
			offer_snapshots(&s, last_positional, "");
	} else if (at) {
		char *vm = xstrndup(cur, (size_t)(at - cur)), *prefix = xasprintf("%s@", vm);
		offer_snapshots(&s, vm, prefix);
		free(vm);
		free(prefix);
	} else if (vi_store_list_vms(&s, &names, &n) == 0) {
		for (size_t i = 0; i < n; i++)
			offer(names[i]);
		vi_store_names_free(names, n);
	}
	vi_store_release(&s);
}

static void offer_kind(enum vi_complete kind)
{
	switch (kind) {
	case VI_COMPLETE_FILE:
		printf("__files__\n");
		break;
	case VI_COMPLETE_DIR:
		printf("__dirs__\n");
		break;
	case VI_COMPLETE_VM:
		offer_vms(false);
		break;
	case VI_COMPLETE_SNAPSHOT:
		offer_vms(true);
		break;
	case VI_COMPLETE_HV: {
		/* Only plugins that load; their warnings go to the shell's stderr,
		 * which the completion scripts discard. */
		struct vi_hv_set set = { 0 };
		vi_hv_load_all(&set);
		for (size_t i = 0; i < set.n; i++)
			offer(set.hv[i].ops.name);
		vi_hv_set_release(&set);
		break;
	}
	case VI_COMPLETE_TEMPLATE: {
		struct template_strv names, paths;
		template_list_names(ctx.home, &names, &paths);
		for (size_t i = 0; i < names.n; i++)
			offer(names.v[i]);
		template_strv_release(&names);
		template_strv_release(&paths);
		break;
	}
	case VI_COMPLETE_HOST: {
		struct vi_store s = { .home = ctx.home ? xstrdup(ctx.home)
						       : vi_store_default_home() };
		struct vi_hosts h;
		if (vi_hosts_load(&s, &h) == 0) {
			for (size_t i = 0; i < h.n; i++)
				offer(h.hosts[i].name);
			vi_hosts_release(&h);
		}
		vi_error_clear();
		vi_store_release(&s);
		break;
	}
	case VI_COMPLETE_POLICY: {
		struct vi_store s = { .home = ctx.home ? xstrdup(ctx.home)
						       : vi_store_default_home() };
		struct vi_policy *p;
		bool *en;
		size_t n;
		if (vi_policies_load(&s, &p, &en, &n) == 0) {
			for (size_t i = 0; i < n; i++)
				offer(p[i].name);
			vi_policies_free(p, en, n);
		}
		vi_error_clear();
		vi_store_release(&s);
		break;
	}
	case VI_COMPLETE_VERB:
		for (const struct cmd *c = commands; c->name; c++)
			if (!(c->flags & HIDDEN))
				offer(c->name);
		break;
	default:
		break;
	}
}

static const struct vi_option *find_option(const struct vi_option *opts, const char *word)
{
	for (const struct vi_option *o = opts; o && o->name; o++)
		if ((word[1] == '-' && !strcmp(word + 2, o->name)) ||
		    (word[1] != '-' && o->short_name && word[1] == o->short_name && !word[2]))
			return o;
	return NULL;
}

int cmd_complete(int argc, char **argv)
{
	const struct cmd *table = commands, *c = NULL;
	int positional = 0;

	if (argc == 0)
		return 0;
	cur = argv[argc - 1];
	for (int i = 0; i < argc - 1; i++) {
		const char *w = argv[i];
		const struct vi_option *o = NULL;
		if (w[0] == '-' && w[1]) {
			o = find_option(c ? c->options : NULL, w);
			if (!o)
				o = find_option(global_options, w);
			if (o && o->type != VI_OPT_FLAG && !strchr(w, '=')) {
				if (i + 1 == argc - 1) { /* completing this option's value */
					offer_kind(o->complete);
					return 0;
				}
				if (o->value == &ctx.home)
					ctx.home = argv[i + 1];
				i++;
			}
			continue;
		}
		if (!c || c->sub) {
			const struct cmd *found = NULL;
			for (const struct cmd *t = table; t->name; t++)
				if (!strcmp(t->name, w))
					found = t;
			if (!found)
				return 0;
			c = found;
			if (c->sub)
				table = c->sub;
			continue;
		}
		positional++;
		last_positional = w;
	}
	if (cur[0] == '-') {
		const struct vi_option *own = c && !c->sub ? c->options : NULL;
		offer_options(own, NULL);
		offer_options(global_options, own);
		return 0;
	}
	if (!c || c->sub) {
		for (const struct cmd *t = table; t->name; t++)
			if (!(t->flags & HIDDEN))
				offer(t->name);
		return 0;
	}
	offer_kind(cmd_arg_complete(c, positional));
	return 0;
}
