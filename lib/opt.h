/* Option parsing from tables. One table per verb feeds the parser, `-h`,
 * the man-page SYNOPSIS check and shell completion. */
#ifndef VI_OPT_H
#define VI_OPT_H

#include <stdint.h>
#include <stdio.h>

enum vi_opt_type {
	VI_OPT_END,
	VI_OPT_FLAG,   /* int *: set to 1 */
	VI_OPT_STRING, /* const char **: points into argv */
	VI_OPT_UINT,   /* uint64_t *: decimal, within [min, max] */
	VI_OPT_SIZE,   /* uint64_t *: 512M, 2G... */
	VI_OPT_LIST,   /* struct vi_strlist *: repeatable */
};

/* What shell completion offers for an option's argument or a positional one. */
enum vi_complete {
	VI_COMPLETE_NONE,
	VI_COMPLETE_FILE,
	VI_COMPLETE_DIR,
	VI_COMPLETE_VM,
	VI_COMPLETE_HV,
	VI_COMPLETE_VERB,
	VI_COMPLETE_TEMPLATE,
	VI_COMPLETE_SNAPSHOT, /* a snapshot of the VM named just before */
	VI_COMPLETE_HOST,     /* a host of the inventory (vi host) */
	VI_COMPLETE_POLICY,   /* a policy in the store (vi policy) */
};

struct vi_strlist {
	const char **items; /* owned array; the strings point into argv */
	size_t n;
};

struct vi_option {
	const char *name;   /* long name, without "--" */
	char short_name;    /* 0 if none */
	enum vi_opt_type type;
	void *value;
	const char *argname; /* "N", "FILE"...; NULL for flags */
	const char *help;
	enum vi_complete complete;
	uint64_t min, max;  /* VI_OPT_UINT bounds; max 0 means UINT32_MAX */
};

#define VI_OPT_TABLE_END { .name = NULL }

/* Parses options out of argv[0..*argc), in any order with the positional
 * arguments ("--" ends options). Options not in `opts` are looked up in
 * `fallback` (may be NULL). On return argv holds the positional arguments
 * and *argc their count. Returns 0 or -VI_EUSAGE with a message. */
int vi_opt_parse(const struct vi_option *opts, const struct vi_option *fallback, int *argc,
		 char **argv);
/* After vi_opt_parse(): how many positional arguments came before "--", or
 * -1 when there was no "--" (for verbs that run a command given after it). */
extern int vi_opt_dashdash;

/* Writes "vi VERB [--opt ARG]... ARGS" (no newline). */
void vi_opt_synopsis(FILE *f, const char *command, const struct vi_option *opts, const char *args);
/* Writes the option list, one option per line, for -h. */
void vi_opt_help(FILE *f, const struct vi_option *opts);

void vi_strlist_release(struct vi_strlist *l);

#endif
