/* Policies: the language of vi-policy(5). Documents are read into struct
 * vi_policy with every problem at its file, line and column; conditions,
 * aggregates, schedules and selectors are evaluated here for the engine. */
#include "policy.h"
#include "error.h"
#include "hv.h"
#include "util.h"
#include "yaml-doc.h"

#include <ctype.h>
#include <fnmatch.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char *const aggregate_names[] = { "avg", "max", "min", "p95" };
static const char *const across_names[] = { "any", "all", "avg" };
static const char *const action_names[] = {
	[VI_ACT_GROW] = "grow",       [VI_ACT_SHRINK] = "shrink", [VI_ACT_EXEC] = "exec",
	[VI_ACT_MIGRATE] = "migrate", [VI_ACT_SNAPSHOT] = "snapshot", [VI_ACT_START] = "start",
	[VI_ACT_STOP] = "stop",       [VI_ACT_RESTART] = "restart",
};
/* What each action's value must be, for messages; NULL: it takes none. */
static const char *const action_takes[] = {
	[VI_ACT_GROW] = "a mapping of cpus, memory or disk, such as {cpus: +1}",
	[VI_ACT_SHRINK] = "a mapping of cpus or memory, such as {memory: 1G}",
	[VI_ACT_EXEC] = "a command",
	[VI_ACT_MIGRATE] = "a host's name or least-loaded",
};
static const char *const day_names[] = { "sun", "mon", "tue", "wed", "thu", "fri", "sat" };
static const char *const policy_keys[] = { "name",     "vms",    "when",     "aggregate",
					   "across",   "window", "for",      "cooldown",
					   "schedule", "max",    "min",      "then" };
static const char *const bound_keys[] = { "cpus", "memory", "disk" };

#define DURATION_EXAMPLE "a duration such as 30s, 5m, 2h or 1d"
#define DAY_MINUTES (24 * 60)

/* Conditions. */

enum expr_kind { EXPR_CMP, EXPR_AND, EXPR_OR, EXPR_NOT };
enum cmp_op { OP_GT, OP_GE, OP_LT, OP_LE, OP_EQ, OP_NE };

struct vi_policy_expr {
	enum expr_kind kind;
	struct vi_policy_expr *left, *right; /* NOT: left only */
	int metric;                          /* CMP: METRIC OP VALUE */
	enum cmp_op op;
	double value;
};

enum token_kind { TOK_END, TOK_WORD, TOK_NUMBER, TOK_OP, TOK_OPEN, TOK_CLOSE, TOK_BAD };

struct token {
	enum token_kind kind;
	size_t at, len; /* where in the condition's text */
	enum cmp_op op;
};

struct cond_parser {
	struct vi_yaml *y;
	yaml_node_t *node; /* the when value, for positions */
	const char *s;
	size_t pos;
	struct token tok, prev;
};

static void next_token(struct cond_parser *p)
{
	static const struct {
		const char *text;
		enum cmp_op op;
	} ops[] = { { ">=", OP_GE }, { "<=", OP_LE }, { "==", OP_EQ },
		    { "!=", OP_NE }, { ">", OP_GT },  { "<", OP_LT } };
	const char *s = p->s;
	size_t i;

	p->prev = p->tok;
	while (isspace((unsigned char)s[p->pos]))
		p->pos++;
	i = p->pos;
	p->tok = (struct token){ .kind = TOK_BAD, .at = i, .len = 1 };
	if (!s[i]) {
		p->tok.kind = TOK_END;
		p->tok.len = 0;
	} else if (s[i] == '(' || s[i] == ')') {
		p->tok.kind = s[i] == '(' ? TOK_OPEN : TOK_CLOSE;
	} else if (isalpha((unsigned char)s[i]) || s[i] == '_') {
		while (isalnum((unsigned char)s[i]) || (s[i] && strchr("_.-", s[i])))
			i++;
		p->tok.kind = TOK_WORD;
		p->tok.len = i - p->pos;
	} else if (isdigit((unsigned char)s[i]) || s[i] == '.') {
		while (isalnum((unsigned char)s[i]) || (s[i] && strchr(".%/", s[i])))
			i++;
		p->tok.kind = TOK_NUMBER;
		p->tok.len = i - p->pos;
	} else {
		for (size_t k = 0; k < ARRAY_SIZE(ops); k++)
			if (!strncmp(s + i, ops[k].text, strlen(ops[k].text))) {
				p->tok.kind = TOK_OP;
				p->tok.op = ops[k].op;
				p->tok.len = strlen(ops[k].text);
				break;
			}
		while (p->tok.kind == TOK_BAD && ((unsigned char)s[i + p->tok.len] & 0xc0) == 0x80)
			p->tok.len++;
	}
	p->pos += p->tok.len;
}

static bool token_is(const struct cond_parser *p, const char *word)
{
	return p->tok.kind == TOK_WORD && p->tok.len == strlen(word) &&
	       !strncmp(p->s + p->tok.at, word, p->tok.len);
}

static bool is_keyword(const struct cond_parser *p)
{
	return token_is(p, "and") || token_is(p, "or") || token_is(p, "not");
}

__attribute__((format(printf, 3, 4))) static int cond_error(struct cond_parser *p, size_t at,
							     const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	return vi_yaml_error_at(p->y, p->node, at, VI_EUSAGE, "%s", msg);
}

static int unexpected(struct cond_parser *p)
{
	return cond_error(p, p->tok.at, "unexpected '%.*s'", (int)p->tok.len, p->s + p->tok.at);
}

static struct vi_policy_expr *expr_new(enum expr_kind kind, struct vi_policy_expr *left,
				       struct vi_policy_expr *right)
{
	struct vi_policy_expr *e = xcalloc(1, sizeof(*e));
	e->kind = kind;
	e->left = left;
	e->right = right;
	return e;
}

static void expr_free(struct vi_policy_expr *e)
{
	if (!e)
		return;
	expr_free(e->left);
	expr_free(e->right);
	free(e);
}

/* The state named by the token, or -1. */
static int state_find(const char *word, size_t len)
{
	for (int st = VI_HV_STOPPED; st <= VI_HV_CRASHED; st++)
		if (strlen(vi_hv_state_name(st)) == len && !strncmp(vi_hv_state_name(st), word, len))
			return st;
	return -1;
}

/* A duration "N", "Ns", "Nm", "Nh" or "Nd" in seconds; false when it is not one. */
static bool parse_duration(const char *s, double *out)
{
	static const char units[] = "smhd";
	static const double seconds[] = { 1, 60, 3600, 86400 };
	char *end;
	double v;

	if (!isdigit((unsigned char)*s) && *s != '.')
		return false;
	v = strtod(s, &end);
	if (*end) {
		const char *u = strchr(units, *end);
		if (!u || end[1])
			return false;
		v *= seconds[u - units];
	}
	*out = v;
	return isfinite(v);
}

/* What a metric's figure is compared with, for messages. */
static const char *value_example(const char *unit)
{
	if (!strcmp(unit, "%"))
		return "a percentage such as 90%";
	if (!strcmp(unit, "bytes"))
		return "a size such as 512M or 2G";
	if (!strcmp(unit, "bytes/s"))
		return "a rate such as 10M or 10M/s";
	if (!strcmp(unit, "ops/s"))
		return "a number of operations per second";
	if (!strcmp(unit, "s"))
		return DURATION_EXAMPLE;
	return "a number";
}

/* A number token as a figure of a metric with unit: "90%", "1.5G", "10M/s",
 * "5m" for uptime. */
static bool number_value(const char *text, const char *unit, double *out)
{
	char *copy = xstrdup(text), *end;
	size_t n = strlen(copy);
	uint64_t bytes;
	bool ok;

	if (strstr(unit, "/s") && n > 2 && !strcmp(copy + n - 2, "/s"))
		copy[n -= 2] = '\0';
	*out = strtod(copy, &end);
	if (!strcmp(unit, "s"))
		ok = parse_duration(copy, out);
	else if (!*end || (!strcmp(unit, "%") && !strcmp(end, "%")))
		ok = end != copy && isfinite(*out);
	else if (!strncmp(unit, "bytes", 5) && vi_parse_size(copy, "value", &bytes) == 0)
		ok = true, *out = (double)bytes;
	else
		ok = false;
	free(copy);
	return ok;
}

static int parse_value(struct cond_parser *p, struct vi_policy_expr *e, const struct token *op)
{
	const struct vi_metric_info *m = &vi_metric_table[e->metric];
	const char *word = p->s + p->tok.at;
	int len = (int)p->tok.len, st;

	if (p->tok.kind != TOK_WORD && p->tok.kind != TOK_NUMBER)
		return cond_error(p, p->tok.at, "expected a value after '%.*s'", (int)op->len,
				  p->s + op->at);
	st = p->tok.kind == TOK_WORD ? state_find(word, p->tok.len) : -1;
	if (e->metric == VI_M_STATE) {
		if (e->op != OP_EQ && e->op != OP_NE)
			return cond_error(p, op->at, "state compares only with == or !=");
		if (p->tok.kind == TOK_NUMBER)
			return cond_error(p, p->tok.at,
					  "state compares with a state name (stopped, running, paused, shutting-down or crashed), not '%.*s'",
					  len, word);
		if (st < 0) {
			const char *names[VI_HV_CRASHED - VI_HV_STOPPED + 1];
			char *w = xstrndup(word, p->tok.len);
			for (int i = VI_HV_STOPPED; i <= VI_HV_CRASHED; i++)
				names[i - VI_HV_STOPPED] = vi_hv_state_name(i);
			int rc = vi_yaml_unknown(p->y, p->node, p->tok.at, "state", w, names,
						 ARRAY_SIZE(names));
			free(w);
			return rc;
		}
		e->value = st;
		return 0;
	}
	if (st >= 0)
		return cond_error(p, p->tok.at, "%s compares with %s, not the state '%.*s'", m->name,
				  value_example(m->unit), len, word);
	char *text = xstrndup(word, p->tok.len);
	bool ok = p->tok.kind == TOK_NUMBER && number_value(text, m->unit, &e->value);
	free(text);
	if (!ok)
		return cond_error(p, p->tok.at, "invalid value '%.*s' for %s: expected %s", len,
				  word, m->name, value_example(m->unit));
	return 0;
}

static int parse_comparison(struct cond_parser *p, struct vi_policy_expr **out)
{
	struct vi_policy_expr *e;
	struct token op;
	char *word = xstrndup(p->s + p->tok.at, p->tok.len);
	int metric = vi_metric_find(word), rc;

	if (metric < 0) {
		const char *names[VI_M_COUNT];
		for (int i = 0; i < VI_M_COUNT; i++)
			names[i] = vi_metric_table[i].name;
		rc = vi_yaml_unknown(p->y, p->node, p->tok.at, "metric", word, names, VI_M_COUNT);
		free(word);
		return rc;
	}
	free(word);
	next_token(p);
	if (p->tok.kind != TOK_OP)
		return cond_error(p, p->tok.at, "expected a comparison operator after '%s'",
				  vi_metric_table[metric].name);
	op = p->tok;
	next_token(p);
	e = expr_new(EXPR_CMP, NULL, NULL);
	e->metric = metric;
	e->op = op.op;
	if ((rc = parse_value(p, e, &op)) < 0) {
		free(e);
		return rc;
	}
	next_token(p);
	*out = e;
	return 0;
}

static int parse_or(struct cond_parser *p, struct vi_policy_expr **out);

static int parse_operand(struct cond_parser *p, struct vi_policy_expr **out)
{
	struct token open = p->tok;
	int rc;

	*out = NULL;
	if (token_is(p, "not")) {
		next_token(p);
		if ((rc = parse_operand(p, out)) < 0)
			return rc;
		*out = expr_new(EXPR_NOT, *out, NULL);
		return 0;
	}
	if (p->tok.kind == TOK_OPEN) {
		next_token(p);
		if ((rc = parse_or(p, out)) < 0)
			return rc;
		if (p->tok.kind == TOK_CLOSE) {
			next_token(p);
			return 0;
		}
		expr_free(*out);
		*out = NULL;
		if (p->tok.kind == TOK_END)
			return cond_error(p, open.at, "unbalanced '('");
		return unexpected(p);
	}
	if (p->tok.kind == TOK_WORD && !is_keyword(p))
		return parse_comparison(p, out);
	if (p->tok.kind == TOK_END && p->prev.kind == TOK_END)
		return cond_error(p, 0, "the condition is empty");
	if (p->tok.kind == TOK_END)
		return cond_error(p, p->tok.at, "expected a comparison after '%.*s'",
				  (int)p->prev.len, p->s + p->prev.at);
	return unexpected(p);
}

/* One level of the grammar: or over and, and over operands. */
static int parse_binary(struct cond_parser *p, enum expr_kind kind, struct vi_policy_expr **out)
{
	const char *word = kind == EXPR_OR ? "or" : "and";
	struct vi_policy_expr *right = NULL;
	int rc;

	*out = NULL;
	rc = kind == EXPR_OR ? parse_binary(p, EXPR_AND, out) : parse_operand(p, out);

	while (rc == 0 && token_is(p, word)) {
		next_token(p);
		rc = kind == EXPR_OR ? parse_binary(p, EXPR_AND, &right) : parse_operand(p, &right);
		if (rc == 0)
			*out = expr_new(kind, *out, right);
	}
	if (rc < 0) {
		expr_free(*out);
		*out = NULL;
	}
	return rc;
}

static int parse_or(struct cond_parser *p, struct vi_policy_expr **out)
{
	return parse_binary(p, EXPR_OR, out);
}

static int parse_condition(struct vi_yaml *y, yaml_node_t *node, struct vi_policy_expr **out)
{
	struct cond_parser p = { .y = y, .node = node, .s = vi_yaml_scalar(node) };
	int rc;

	next_token(&p);
	p.prev = p.tok; /* TOK_END: nothing before the first token */
	p.prev.kind = TOK_END;
	if ((rc = parse_or(&p, out)) < 0)
		return rc;
	if (p.tok.kind == TOK_END)
		return 0;
	expr_free(*out);
	*out = NULL;
	if (p.tok.kind == TOK_CLOSE)
		return cond_error(&p, p.tok.at, "unbalanced ')'");
	return unexpected(&p);
}

/* Kleene's logic: a comparison with an unknown figure is neither true nor
 * false, and so is whatever it decides. */
enum truth { FALSE_, TRUE_, UNKNOWN_ };

static enum truth eval(const struct vi_policy_expr *e, const double v[VI_M_COUNT])
{
	enum truth l, r;

	switch (e->kind) {
	case EXPR_CMP: {
		double x = v[e->metric];
		if (isnan(x))
			return UNKNOWN_;
		switch (e->op) {
		case OP_GT:
			return x > e->value;
		case OP_GE:
			return x >= e->value;
		case OP_LT:
			return x < e->value;
		case OP_LE:
			return x <= e->value;
		case OP_EQ:
			return x == e->value;
		default:
			return x != e->value;
		}
	}
	case EXPR_NOT:
		l = eval(e->left, v);
		return l == UNKNOWN_ ? UNKNOWN_ : !l;
	case EXPR_AND:
		l = eval(e->left, v);
		r = eval(e->right, v);
		return l == FALSE_ || r == FALSE_ ? FALSE_ : l == TRUE_ && r == TRUE_ ? TRUE_ : UNKNOWN_;
	default:
		l = eval(e->left, v);
		r = eval(e->right, v);
		return l == TRUE_ || r == TRUE_ ? TRUE_ : l == FALSE_ && r == FALSE_ ? FALSE_ : UNKNOWN_;
	}
}

bool vi_policy_eval(const struct vi_policy_expr *e, const double values[VI_M_COUNT],
		    bool *unknown)
{
	enum truth t = eval(e, values);

	if (unknown)
		*unknown = t == UNKNOWN_;
	return t == TRUE_;
}

void vi_policy_expr_metrics(const struct vi_policy_expr *e, bool used[VI_M_COUNT])
{
	if (!e)
		return;
	if (e->kind == EXPR_CMP)
		used[e->metric] = true;
	vi_policy_expr_metrics(e->left, used);
	vi_policy_expr_metrics(e->right, used);
}

/* Reading documents. */

/* The index of name in names, or an "unknown WHAT" error at node. */
static int lookup(struct vi_yaml *y, yaml_node_t *node, const char *what, const char *name,
		  const char *const *names, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!strcmp(names[i], name))
			return (int)i;
	return vi_yaml_unknown(y, node, 0, what, name, names, n);
}

/* A key's scalar value and its node: 0, 1 when absent, or an error. */
static int get_scalar(struct vi_yaml *y, yaml_node_t *map, const char *key, bool required,
		      yaml_node_t **node, const char **text)
{
	int rc = vi_yaml_get_str(y, map, key, required, text);
	if (rc == 0)
		*node = vi_yaml_get(y, map, key);
	return rc;
}

static int get_choice(struct vi_yaml *y, yaml_node_t *map, const char *key,
		      const char *const *names, size_t n, int *out)
{
	yaml_node_t *node = NULL;
	const char *s = NULL;
	int rc = get_scalar(y, map, key, false, &node, &s);

	if (rc == 0 && (rc = lookup(y, node, key, s, names, n)) >= 0)
		*out = rc;
	return rc < 0 ? rc : 0;
}

static int get_duration(struct vi_yaml *y, yaml_node_t *map, const char *key, unsigned min,
			unsigned *out)
{
	yaml_node_t *node = NULL;
	const char *s = NULL;
	double v;
	int rc = get_scalar(y, map, key, false, &node, &s);

	if (rc)
		return rc < 0 ? rc : 0;
	if (!parse_duration(s, &v) || v != floor(v) || v > UINT32_MAX)
		return vi_yaml_error(y, node, VI_EUSAGE, "invalid %s '%s': expected %s", key, s,
				     DURATION_EXAMPLE);
	if (v < min)
		return vi_yaml_error(y, node, VI_EUSAGE, "invalid %s '%s': must be at least %us",
				     key, s, min);
	*out = (unsigned)v;
	return 0;
}

/* A required key's node, of any kind. */
static yaml_node_t *need(struct vi_yaml *y, yaml_node_t *map, const char *key, int *rc)
{
	yaml_node_t *v = vi_yaml_get(y, map, key);

	if (!v)
		*rc = vi_yaml_error(y, map, VI_EUSAGE, "missing required key '%s'", key);
	return v;
}

/* A scalar, or a list of scalars: what vms and schedule take. */
static int scalar_items(struct vi_yaml *y, yaml_node_t *node, const char *key,
			yaml_node_t ***items, size_t *n)
{
	yaml_node_t *item;

	*items = NULL;
	*n = 0;
	if (node->type == YAML_SCALAR_NODE) {
		*items = xmalloc(sizeof(**items));
		(*items)[(*n)++] = node;
		return 0;
	}
	if (node->type != YAML_SEQUENCE_NODE)
		return vi_yaml_error(y, node, VI_EUSAGE, "'%s' must be a string or a list, not %s",
				     key, vi_yaml_kind(node));
	vi_yaml_seq_foreach(y, node, item)
	{
		if (item->type != YAML_SCALAR_NODE) {
			free(*items);
			*items = NULL;
			return vi_yaml_error(y, item, VI_EUSAGE,
					     "'%s' lists strings, not %s", key, vi_yaml_kind(item));
		}
		*items = xrealloc(*items, (*n + 1) * sizeof(**items));
		(*items)[(*n)++] = item;
	}
	if (!*n)
		return vi_yaml_error(y, node, VI_EUSAGE, "'%s' is empty", key);
	return 0;
}

static int read_vms(struct vi_yaml *y, yaml_node_t *map, struct vi_policy *p)
{
	int rc = 0;
	yaml_node_t *node = need(y, map, "vms", &rc), **items;
	size_t n;

	if (!node || (rc = scalar_items(y, node, "vms", &items, &n)) < 0)
		return rc;
	p->vms = xcalloc(n, sizeof(*p->vms));
	for (size_t i = 0; i < n && rc == 0; i++) {
		const char *s = vi_yaml_scalar(items[i]), *eq = strchr(s, '=');
		if (!*s || (!strncmp(s, "label:", 6) && (!eq || eq == s + 6)))
			rc = vi_yaml_error(y, items[i], VI_EUSAGE,
					   "invalid selector '%s': expected a name, a glob or label:KEY=VALUE",
					   s);
		else
			p->vms[p->nvms++] = xstrdup(s);
	}
	free(items);
	return rc;
}

/* "HH:MM" at s (24:00 only as an end); the rest in *end. */
static bool parse_clock(const char *s, bool is_end, unsigned *minutes, const char **end)
{
	if (!isdigit((unsigned char)s[0]) || !isdigit((unsigned char)s[1]) || s[2] != ':' ||
	    !isdigit((unsigned char)s[3]) || !isdigit((unsigned char)s[4]))
		return false;
	unsigned h = (s[0] - '0') * 10 + (s[1] - '0'), m = (s[3] - '0') * 10 + (s[4] - '0');
	*minutes = h * 60 + m;
	*end = s + 5;
	return m < 60 && (h < 24 || (is_end && *minutes == DAY_MINUTES));
}

/* "mon", "mon-fri" or "fri-mon" (round the week end) into days. */
static int parse_days(struct vi_yaml *y, yaml_node_t *node, const char *text, size_t at,
		      size_t len, uint8_t *days)
{
	int range[2] = { 0, 0 }, k = 0;

	for (size_t i = at, j; i < at + len; i = j + 1, k++) {
		for (j = i; j < at + len && text[j] != '-'; j++)
			;
		char *word = xstrndup(text + i, j - i);
		int d = -1;
		for (int w = 0; w < 7; w++)
			if (!strcmp(word, day_names[w]))
				d = w;
		int rc = d < 0 || k > 1 ? vi_yaml_unknown(y, node, i, "day", word, day_names, 7) : 0;
		free(word);
		if (rc < 0)
			return rc;
		range[k] = d;
	}
	if (k == 1)
		range[1] = range[0];
	for (int d = range[0];; d = (d + 1) % 7) {
		*days |= 1u << d;
		if (d == range[1])
			break;
	}
	return 0;
}

/* "[DAYS] [HH:MM-HH:MM]": days a list of days and ranges, such as
 * "mon-fri" or "sat,sun". */
static int parse_window(struct vi_yaml *y, yaml_node_t *node, struct vi_policy_window *w)
{
	const char *s = vi_yaml_scalar(node), *end;
	size_t i = 0;
	bool days = false, times = false;
	int rc;

	*w = (struct vi_policy_window){ 0, 0, DAY_MINUTES };
	for (;;) {
		while (s[i] == ' ' || s[i] == '\t')
			i++;
		if (!s[i])
			break;
		size_t j = i;
		while (s[j] && s[j] != ' ' && s[j] != '\t')
			j++;
		if (isdigit((unsigned char)s[i]) && !times) {
			times = true;
			if (!parse_clock(s + i, false, &w->from, &end) || *end != '-' ||
			    !parse_clock(end + 1, true, &w->to, &end) || end != s + j)
				return vi_yaml_error_at(y, node, i, VI_EUSAGE,
							"invalid time range '%.*s': expected HH:MM-HH:MM such as 08:00-18:00",
							(int)(j - i), s + i);
			if (w->from == w->to % DAY_MINUTES)
				return vi_yaml_error_at(y, node, i, VI_EUSAGE,
							"invalid time range '%.*s': it is empty",
							(int)(j - i), s + i);
		} else if (!days && !times && isalpha((unsigned char)s[i])) {
			days = true;
			for (size_t k = i, e; k < j; k = e + 1) {
				for (e = k; e < j && s[e] != ','; e++)
					;
				if ((rc = parse_days(y, node, s, k, e - k, &w->days)) < 0)
					return rc;
			}
		} else {
			break;
		}
		i = j;
	}
	if (s[i] || (!days && !times))
		return vi_yaml_error(y, node, VI_EUSAGE,
				     "invalid schedule '%s': expected [DAYS] [HH:MM-HH:MM], such as mon-fri 08:00-18:00",
				     s);
	if (!days)
		w->days = 0x7f;
	return 0;
}

static int read_schedule(struct vi_yaml *y, yaml_node_t *map, struct vi_policy *p)
{
	yaml_node_t *node = vi_yaml_get(y, map, "schedule"), **items;
	size_t n;
	int rc;

	if (!node)
		return 0;
	if ((rc = scalar_items(y, node, "schedule", &items, &n)) < 0)
		return rc;
	p->schedule = xcalloc(n, sizeof(*p->schedule));
	for (; p->nschedule < n && rc == 0; p->nschedule++) {
		const char *s = vi_yaml_scalar(items[p->nschedule]);
		char *joined = p->schedule_text ? xasprintf("%s; %s", p->schedule_text, s)
						: xstrdup(s);
		free(p->schedule_text);
		p->schedule_text = joined;
		rc = parse_window(y, items[p->nschedule], &p->schedule[p->nschedule]);
	}
	free(items);
	return rc;
}

static int read_bounds(struct vi_yaml *y, yaml_node_t *map, const char *key,
		       struct vi_policy_bounds *b)
{
	yaml_node_t *node = vi_yaml_get(y, map, key);
	uint64_t cpus = 0;
	int rc;

	if (!node)
		return 0;
	if ((rc = vi_yaml_expect_map(y, node, key)) < 0 ||
	    (rc = vi_yaml_check_keys(y, node, bound_keys, ARRAY_SIZE(bound_keys))) < 0 ||
	    (rc = vi_yaml_get_uint(y, node, "cpus", false, 1, 4096, &cpus)) < 0 ||
	    (rc = vi_yaml_get_size(y, node, "memory", false, 1, UINT64_MAX, &b->memory)) < 0 ||
	    (rc = vi_yaml_get_size(y, node, "disk", false, 1, UINT64_MAX, &b->disk)) < 0)
		return rc;
	b->cpus = (unsigned)cpus;
	return 0;
}

static int check_bounds(struct vi_yaml *y, yaml_node_t *map, const struct vi_policy *p)
{
	const char *over = p->min.cpus && p->max.cpus && p->min.cpus > p->max.cpus ? "cpus"
			   : p->min.memory && p->max.memory && p->min.memory > p->max.memory
				   ? "memory"
			   : p->min.disk && p->max.disk && p->min.disk > p->max.disk ? "disk"
										     : NULL;

	if (!over)
		return 0;
	return vi_yaml_error(y, vi_yaml_get(y, map, "min"), VI_EUSAGE,
			     "min %s is above max %s", over, over);
}

/* A null value: "restart:", "restart: ~", "restart: null", "restart: {}". */
static bool is_empty(const yaml_node_t *n)
{
	const char *s = vi_yaml_scalar(n);

	if (!n)
		return true;
	if (n->type == YAML_MAPPING_NODE)
		return n->data.mapping.pairs.top == n->data.mapping.pairs.start;
	return s && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
	       (!*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
		!strcmp(s, "NULL"));
}

/* grow: and shrink: {cpus, memory, disk}, in vi grow's signs. */
static int read_change(struct vi_yaml *y, yaml_node_t *node, struct vi_policy_action *a)
{
	static const char *const shrink_keys[] = { "cpus", "memory" };
	bool grow = a->kind == VI_ACT_GROW;
	struct {
		const char *key;
		struct vi_grow_amount *amount;
		const char *example;
	} fields[] = {
		{ "cpus", &a->grow.cpus, "a count such as +1 or 4" },
		{ "memory", &a->grow.memory, "a size such as +1G or 4G" },
		{ "disk", NULL, "a size such as +10G, or vdb:+10G" },
	};
	const char *what = action_names[a->kind];
	int rc;

	if (node->type != YAML_MAPPING_NODE || is_empty(node))
		return vi_yaml_error(y, node, VI_EUSAGE, "action '%s' takes %s", what,
				     action_takes[a->kind]);
	if (!grow && vi_yaml_get(y, node, "disk"))
		return vi_yaml_error(y, node, VI_EUSAGE, "disks only grow: shrink takes cpus and memory");
	if ((rc = vi_yaml_check_keys(y, node, grow ? bound_keys : shrink_keys,
				     grow ? ARRAY_SIZE(bound_keys) : ARRAY_SIZE(shrink_keys))) < 0)
		return rc;
	for (size_t i = 0; i < ARRAY_SIZE(fields); i++) {
		struct vi_grow_amount *amount = fields[i].amount;
		yaml_node_t *v;
		const char *s;
		bool ok;

		if ((rc = get_scalar(y, node, fields[i].key, false, &v, &s)) < 0)
			return rc;
		if (rc)
			continue;
		if (!amount) {
			a->grow.disks = xcalloc(1, sizeof(*a->grow.disks));
			a->grow.ndisks = 1;
			amount = &a->grow.disks[0].size;
			ok = vi_grow_parse_disk(s, &a->grow.disks[0]) == 0;
		} else {
			ok = !strchr(s, '%') && vi_grow_parse_amount(s, amount == &a->grow.memory,
								     fields[i].key, amount) == 0;
		}
		if (!ok)
			return vi_yaml_error(y, v, VI_EUSAGE, "invalid %s '%s': expected %s",
					     fields[i].key, s, fields[i].example);
		if (amount->sign == (grow ? -1 : 1))
			return vi_yaml_error(y, v, VI_EUSAGE, "%s '%s': use %s to %s", what, s,
					     grow ? "shrink" : "grow", grow ? "take away" : "add");
		if (!grow)
			amount->sign = -1;
	}
	return 0;
}

static int read_action(struct vi_yaml *y, yaml_node_t *item, struct vi_policy_action *a)
{
	yaml_node_t *key = item, *value = NULL;
	int rc;

	if (item->type == YAML_MAPPING_NODE) {
		yaml_node_pair_t *pairs = item->data.mapping.pairs.start;
		if (item->data.mapping.pairs.top - pairs != 1)
			return vi_yaml_error(y, item, VI_EUSAGE,
					     "an action is one key, such as grow: {cpus: +1}");
		key = vi_yaml_node(y, pairs->key);
		value = vi_yaml_node(y, pairs->value);
	}
	if (key->type != YAML_SCALAR_NODE)
		return vi_yaml_error(y, key, VI_EUSAGE, "an action is a name or a mapping, not %s",
				     vi_yaml_kind(key));
	a->line = (int)key->start_mark.line + 1;
	a->column = (int)key->start_mark.column + 1;
	if ((rc = lookup(y, key, "action", vi_yaml_scalar(key), action_names,
			 ARRAY_SIZE(action_names))) < 0)
		return rc;
	a->kind = rc;
	const char *what = action_names[a->kind], *s = vi_yaml_scalar(value);
	switch (a->kind) {
	case VI_ACT_GROW:
	case VI_ACT_SHRINK:
		if (!value)
			return vi_yaml_error(y, key, VI_EUSAGE, "action '%s' takes %s", what,
					     action_takes[a->kind]);
		return read_change(y, value, a);
	case VI_ACT_EXEC:
	case VI_ACT_MIGRATE:
		if (!s || !*s || is_empty(value))
			return vi_yaml_error(y, value ? value : key, VI_EUSAGE,
					     "action '%s' takes %s", what, action_takes[a->kind]);
		if (a->kind == VI_ACT_EXEC) {
			a->command = xstrdup(s);
		} else {
			if (strcmp(s, "least-loaded") && vi_check_name(s, "host") < 0)
				return vi_yaml_error(y, value, VI_EUSAGE, "%s", vi_error_message());
			a->host = xstrdup(s);
		}
		return 0;
	case VI_ACT_SNAPSHOT: {
		static const char *const keys[] = { "keep" };
		uint64_t keep = 0;
		if (is_empty(value))
			return 0;
		if ((rc = vi_yaml_expect_map(y, value, "snapshot")) < 0 ||
		    (rc = vi_yaml_check_keys(y, value, keys, 1)) < 0 ||
		    (rc = vi_yaml_get_uint(y, value, "keep", false, 0, 100000, &keep)) < 0)
			return rc;
		a->keep = (unsigned)keep;
		return 0;
	}
	default:
		if (!is_empty(value))
			return vi_yaml_error(y, value, VI_EUSAGE, "action '%s' takes no value", what);
		return 0;
	}
}

static int read_then(struct vi_yaml *y, yaml_node_t *map, struct vi_policy *p)
{
	int rc = 0;
	yaml_node_t *node = need(y, map, "then", &rc), *item;

	if (!node)
		return rc;
	if (node->type != YAML_SEQUENCE_NODE) {
		p->then = xcalloc(1, sizeof(*p->then));
		p->nthen = 1;
		return read_action(y, node, p->then);
	}
	vi_yaml_seq_foreach(y, node, item)
	{
		p->then = xrealloc(p->then, (p->nthen + 1) * sizeof(*p->then));
		memset(&p->then[p->nthen], 0, sizeof(*p->then));
		if ((rc = read_action(y, item, &p->then[p->nthen++])) < 0)
			return rc;
	}
	if (!p->nthen)
		return vi_yaml_error(y, node, VI_EUSAGE, "'then' is empty");
	return 0;
}

struct reading {
	const char *source;
	struct vi_policy *v;
	size_t n;
};

static int read_policy(struct vi_yaml *y, yaml_node_t *map, struct reading *r,
		       struct vi_policy *p)
{
	yaml_node_t *node = NULL;
	const char *s = NULL;
	int agg = VI_AGG_AVG, across = VI_ACROSS_ANY, rc;

	if ((rc = vi_yaml_expect_map(y, map, "a policy")) < 0 ||
	    (rc = vi_yaml_check_keys(y, map, policy_keys, ARRAY_SIZE(policy_keys))) < 0 ||
	    (rc = get_scalar(y, map, "name", true, &node, &s)) < 0)
		return rc;
	if (vi_check_name(s, "policy") < 0)
		return vi_yaml_error(y, node, VI_EUSAGE, "%s", vi_error_message());
	for (size_t i = 0; i < r->n; i++)
		if (!strcmp(r->v[i].name, s))
			return vi_yaml_error(y, node, VI_EUSAGE,
					     "policy '%s' is defined twice (first at line %d)", s,
					     r->v[i].line);
	p->name = xstrdup(s);
	if ((rc = read_vms(y, map, p)) < 0 ||
	    (rc = get_scalar(y, map, "when", true, &node, &s)) < 0 ||
	    (rc = parse_condition(y, node, &p->when)) < 0)
		return rc;
	p->when_text = xstrdup(s);
	p->window = 60;
	if ((rc = get_choice(y, map, "aggregate", aggregate_names, ARRAY_SIZE(aggregate_names),
			     &agg)) < 0 ||
	    (rc = get_choice(y, map, "across", across_names, ARRAY_SIZE(across_names),
			     &across)) < 0 ||
	    (rc = get_duration(y, map, "window", 1, &p->window)) < 0 ||
	    (rc = get_duration(y, map, "for", 0, &p->hold)) < 0 ||
	    (rc = get_duration(y, map, "cooldown", 0, &p->cooldown)) < 0 ||
	    (rc = read_schedule(y, map, p)) < 0 || (rc = read_bounds(y, map, "max", &p->max)) < 0 ||
	    (rc = read_bounds(y, map, "min", &p->min)) < 0 ||
	    (rc = check_bounds(y, map, p)) < 0)
		return rc;
	p->aggregate = agg;
	p->across = across;
	return read_then(y, map, p);
}

static int read_document(struct vi_yaml *y, const char *text, size_t len, int line, void *arg)
{
	struct reading *r = arg;
	yaml_node_t *root = vi_yaml_root(y);
	struct vi_policy p = { .source = xstrdup(r->source), .line = line };
	int rc;

	if (!root) { /* an empty document: "---" at the end of a file */
		free(p.source);
		return 0;
	}
	p.text = xstrndup(text, len);
	if ((rc = read_policy(y, root, r, &p)) < 0) {
		vi_policy_release(&p);
		return rc;
	}
	r->v = xrealloc(r->v, (r->n + 1) * sizeof(*r->v));
	r->v[r->n++] = p;
	return 0;
}

int vi_policy_parse(const char *name, const char *text, size_t len, struct vi_policy **out,
		    size_t *n)
{
	struct reading r = { .source = strcmp(name, "-") ? name : "<stdin>" };
	int rc = vi_yaml_load_each(r.source, text, len, read_document, &r);

	if (rc < 0) {
		vi_policy_free_all(r.v, r.n);
		return rc;
	}
	*out = r.v;
	*n = r.n;
	return 0;
}

int vi_policy_load_file(const char *path, struct vi_policy **out, size_t *n)
{
	char *text;
	size_t len;
	int rc = vi_read_regular_file(path, VI_YAML_MAX_SIZE, &text, &len);

	if (rc < 0)
		return rc;
	rc = vi_policy_parse(path, text, len, out, n);
	free(text);
	return rc;
}

void vi_policy_release(struct vi_policy *p)
{
	free(p->name);
	free(p->source);
	free(p->text);
	for (size_t i = 0; i < p->nvms; i++)
		free(p->vms[i]);
	free(p->vms);
	free(p->when_text);
	expr_free(p->when);
	free(p->schedule);
	free(p->schedule_text);
	for (size_t i = 0; i < p->nthen; i++) {
		vi_grow_release(&p->then[i].grow);
		free(p->then[i].command);
		free(p->then[i].host);
	}
	free(p->then);
	memset(p, 0, sizeof(*p));
}

void vi_policy_free_all(struct vi_policy *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		vi_policy_release(&p[i]);
	free(p);
}

/* Evaluating. */

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return (x > y) - (x < y);
}

double vi_policy_aggregate(enum vi_policy_aggregate a, const double *v, size_t n)
{
	double *known = xmalloc((n ? n : 1) * sizeof(*known)), r = 0;
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		if (!isnan(v[i]))
			known[k++] = v[i];
	if (!k) {
		free(known);
		return NAN;
	}
	qsort(known, k, sizeof(*known), cmp_double);
	switch (a) {
	case VI_AGG_MAX:
		r = known[k - 1];
		break;
	case VI_AGG_MIN:
		r = known[0];
		break;
	case VI_AGG_P95: /* nearest rank: the smallest value at or above 95% of them */
		r = known[(size_t)ceil(0.95 * (double)k) - 1];
		break;
	default:
		for (size_t i = 0; i < k; i++)
			r += known[i];
		r /= (double)k;
		break;
	}
	free(known);
	return r;
}

bool vi_policy_active_at(const struct vi_policy *p, time_t t)
{
	struct tm tm;

	if (!p->nschedule)
		return true;
	if (!localtime_r(&t, &tm))
		return false;
	unsigned now = (unsigned)(tm.tm_hour * 60 + tm.tm_min);
	unsigned today = 1u << tm.tm_wday, yesterday = 1u << ((tm.tm_wday + 6) % 7);
	for (size_t i = 0; i < p->nschedule; i++) {
		const struct vi_policy_window *w = &p->schedule[i];
		/* A window that spans midnight belongs to the day it starts on. */
		if (w->from < w->to ? (w->days & today) && now >= w->from && now < w->to
				    : ((w->days & today) && now >= w->from) ||
					      ((w->days & yesterday) && now < w->to))
			return true;
	}
	return false;
}

bool vi_policy_selects(const struct vi_policy *p, const char *name, const char *const *labels,
		       size_t nlabels)
{
	for (size_t i = 0; i < p->nvms; i++) {
		const char *s = p->vms[i];
		if (strncmp(s, "label:", 6)) {
			if (!fnmatch(s, name, 0))
				return true;
			continue;
		}
		for (size_t k = 0; k < nlabels; k++)
			if (!fnmatch(s + 6, labels[k], 0))
				return true;
	}
	return false;
}

const char *vi_policy_aggregate_name(enum vi_policy_aggregate a)
{
	return (size_t)a < ARRAY_SIZE(aggregate_names) ? aggregate_names[a] : "?";
}

const char *vi_policy_across_name(enum vi_policy_across a)
{
	return (size_t)a < ARRAY_SIZE(across_names) ? across_names[a] : "?";
}

const char *vi_policy_action_name(enum vi_policy_action_kind k)
{
	return (size_t)k < ARRAY_SIZE(action_names) ? action_names[k] : "?";
}

static char *append_amount(char *s, const char *what, const char *disk,
			   const struct vi_grow_amount *a, bool size)
{
	char num[32], *r;

	if (!a->given)
		return s;
	if (size)
		vi_format_size(a->value, num, sizeof(num));
	else
		snprintf(num, sizeof(num), "%llu", (unsigned long long)a->value);
	r = xasprintf("%s %s %s%s%s%s", s, what, disk ? disk : "", disk ? ":" : "",
		      a->sign > 0 ? "+" : a->sign < 0 ? "-" : "", num);
	free(s);
	return r;
}

char *vi_policy_action_str(const struct vi_policy_action *a)
{
	const char *name = vi_policy_action_name(a->kind);
	char *s;

	switch (a->kind) {
	case VI_ACT_GROW:
	case VI_ACT_SHRINK:
		s = append_amount(xstrdup(name), "cpus", NULL, &a->grow.cpus, false);
		s = append_amount(s, "memory", NULL, &a->grow.memory, true);
		for (size_t i = 0; i < a->grow.ndisks; i++)
			s = append_amount(s, "disk", a->grow.disks[i].name, &a->grow.disks[i].size,
					  true);
		return s;
	case VI_ACT_EXEC:
		return xasprintf("%s %s", name, a->command);
	case VI_ACT_MIGRATE:
		return xasprintf("%s %s", name, a->host);
	case VI_ACT_SNAPSHOT:
		return a->keep ? xasprintf("%s keep %u", name, a->keep) : xstrdup(name);
	default:
		return xstrdup(name);
	}
}

void vi_policy_metric_env(int metric, char *buf, size_t len)
{
	size_t i = (size_t)snprintf(buf, len, "VI_METRIC_");

	for (const char *s = vi_metric_table[metric].name; *s && i + 1 < len; s++)
		buf[i++] = *s == '.' ? '_' : (char)toupper((unsigned char)*s);
	if (i < len)
		buf[i] = '\0';
}
