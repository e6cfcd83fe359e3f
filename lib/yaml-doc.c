/* YAML documents through libyaml: loading with positions, typed getters, emitting. */
#include "yaml-doc.h"
#include "error.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Documents are composed from libyaml's events rather than by
 * yaml_parser_load(), which nests to any depth (slowly, in libyaml's
 * scanner), keeps both of two equal keys (every lookup then finds the first)
 * and leaves aliases for each reader to expand, however large they make the
 * document. Here each is refused where it stands, before the rest is read. */

struct key_seen {
	const char *text;  /* the key's scalar, owned by the document */
	yaml_mark_t mark;  /* where the key stands (an alias's own place) */
	size_t order;
};

struct open_collection {
	int node;
	int key;                /* a mapping's key still waiting for its value */
	struct key_seen *keys;  /* a mapping's scalar keys, for duplicates */
	size_t nkeys, keys_cap;
	size_t start;           /* the expanded size where it began */
	char *anchor;
};

struct anchor {
	char *name;
	int node;
	size_t size; /* its expanded size, what each alias to it adds */
};

struct composer {
	struct vi_yaml *y;
	struct open_collection open[VI_YAML_MAX_DEPTH];
	int depth;
	struct anchor *anchors;
	size_t nanchors, anchors_cap;
	size_t *slots; /* a hash table of anchors: index + 1, 0 for free */
	size_t nslots;
	size_t size;    /* the document's size, aliases expanded */
	size_t aliased; /* the part of it aliases repeat */
	int documents;
	/* Set for a stream of documents: called at the end of each. */
	vi_yaml_each_fn *each;
	void *arg;
	const char *text;
	size_t len;
	yaml_mark_t doc_start, prev_end;
};

static int verror_at(struct vi_yaml *y, const yaml_mark_t *mark, int code, const char *fmt,
		     va_list ap)
{
	char msg[768];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (!mark)
		return vi_error(code, "%s: %s", y->name, msg);
	return vi_error(code, "%s:%zu:%zu: %s", y->name, mark->line + 1, mark->column + 1, msg);
}

__attribute__((format(printf, 3, 4))) static int error_at(struct vi_yaml *y,
							   const yaml_mark_t *mark,
							   const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = verror_at(y, mark, VI_EUSAGE, fmt, ap);
	va_end(ap);
	return rc;
}

static int no_memory(void)
{
	return vi_error(VI_EFAIL, "out of memory composing a YAML document");
}

static size_t *anchor_slot(struct composer *c, const char *name)
{
	uint64_t h = 14695981039346656037ull; /* FNV-1a */
	size_t i;

	for (const unsigned char *s = (const unsigned char *)name; *s; s++)
		h = (h ^ *s) * 1099511628211ull;
	for (i = h & (c->nslots - 1); c->slots[i]; i = (i + 1) & (c->nslots - 1))
		if (!strcmp(c->anchors[c->slots[i] - 1].name, name))
			break;
	return &c->slots[i];
}

static const struct anchor *anchor_find(struct composer *c, const char *name)
{
	size_t *slot = c->nslots ? anchor_slot(c, name) : NULL;
	return slot && *slot ? &c->anchors[*slot - 1] : NULL;
}

static int anchor_add(struct composer *c, const char *name, int node, size_t size,
		      const yaml_mark_t *mark)
{
	if (anchor_find(c, name))
		return error_at(c->y, mark, "anchor '&%s' is defined twice", name);
	if (2 * (c->nanchors + 1) > c->nslots) {
		free(c->slots);
		c->nslots = c->nslots ? 2 * c->nslots : 64;
		c->slots = xcalloc(c->nslots, sizeof(*c->slots));
		for (size_t i = 0; i < c->nanchors; i++)
			*anchor_slot(c, c->anchors[i].name) = i + 1;
	}
	if (c->nanchors == c->anchors_cap) {
		c->anchors_cap = 2 * c->anchors_cap + 8;
		c->anchors = xrealloc(c->anchors, c->anchors_cap * sizeof(*c->anchors));
	}
	c->anchors[c->nanchors] = (struct anchor){ xstrdup(name), node, size };
	*anchor_slot(c, name) = ++c->nanchors;
	return 0;
}

/* Puts node where the document stands: the root, an item, a key or a value. */
static int place(struct composer *c, int node, const yaml_mark_t *mark)
{
	yaml_document_t *doc = &c->y->doc;
	struct open_collection *o;
	int ok;

	if (!c->depth)
		return 0; /* the root, the document's first node */
	o = &c->open[c->depth - 1];
	if (yaml_document_get_node(doc, o->node)->type == YAML_SEQUENCE_NODE) {
		ok = yaml_document_append_sequence_item(doc, o->node, node);
	} else if (!o->key) {
		const char *text = vi_yaml_scalar(yaml_document_get_node(doc, node));
		o->key = node;
		if (text) {
			if (o->nkeys == o->keys_cap) {
				o->keys_cap = 2 * o->keys_cap + 8;
				o->keys = xrealloc(o->keys, o->keys_cap * sizeof(*o->keys));
			}
			o->keys[o->nkeys] = (struct key_seen){ text, *mark, o->nkeys };
			o->nkeys++;
		}
		ok = 1;
	} else {
		ok = yaml_document_append_mapping_pair(doc, o->node, o->key, node);
		o->key = 0;
	}
	return ok ? 0 : no_memory();
}

static int add_scalar(struct composer *c, yaml_event_t *e)
{
	yaml_document_t *doc = &c->y->doc;
	int node = yaml_document_add_scalar(doc, e->data.scalar.tag, e->data.scalar.value,
					    (int)e->data.scalar.length, e->data.scalar.style);

	if (!node)
		return no_memory();
	yaml_document_get_node(doc, node)->start_mark = e->start_mark;
	yaml_document_get_node(doc, node)->end_mark = e->end_mark;
	c->size += e->data.scalar.length + 1;
	if (e->data.scalar.anchor) {
		int rc = anchor_add(c, (char *)e->data.scalar.anchor, node,
				    e->data.scalar.length + 1, &e->start_mark);
		if (rc < 0)
			return rc;
	}
	return place(c, node, &e->start_mark);
}

static int add_alias(struct composer *c, yaml_event_t *e)
{
	const char *name = (const char *)e->data.alias.anchor;
	const struct anchor *a = anchor_find(c, name);

	if (!a) {
		for (int i = 0; i < c->depth; i++)
			if (c->open[i].anchor && !strcmp(c->open[i].anchor, name))
				return error_at(c->y, &e->start_mark,
						"alias '*%s' stands inside what it names", name);
		return error_at(c->y, &e->start_mark, "unknown alias '*%s'", name);
	}
	c->size += a->size;
	c->aliased += a->size;
	if (c->aliased > VI_YAML_MAX_ALIASED) {
		char max[32];
		return error_at(c->y, &e->start_mark, "aliases repeat more than %s of text",
				vi_format_size(VI_YAML_MAX_ALIASED, max, sizeof(max)));
	}
	return place(c, a->node, &e->start_mark);
}

static int open_collection(struct composer *c, yaml_event_t *e)
{
	yaml_document_t *doc = &c->y->doc;
	bool map = e->type == YAML_MAPPING_START_EVENT;
	yaml_char_t *anchor = map ? e->data.mapping_start.anchor : e->data.sequence_start.anchor;
	int node, rc;

	if (c->depth == VI_YAML_MAX_DEPTH)
		return error_at(c->y, &e->start_mark, "more than %d levels of nesting",
				VI_YAML_MAX_DEPTH);
	node = map ? yaml_document_add_mapping(doc, e->data.mapping_start.tag,
					       e->data.mapping_start.style)
		   : yaml_document_add_sequence(doc, e->data.sequence_start.tag,
						e->data.sequence_start.style);
	if (!node)
		return no_memory();
	yaml_document_get_node(doc, node)->start_mark = e->start_mark;
	if ((rc = place(c, node, &e->start_mark)) < 0)
		return rc;
	c->open[c->depth++] = (struct open_collection){
		.node = node,
		.start = c->size++,
		.anchor = anchor ? xstrdup((char *)anchor) : NULL,
	};
	return 0;
}

static int cmp_key(const void *a, const void *b)
{
	const struct key_seen *x = a, *y = b;
	int d = strcmp(x->text, y->text);
	return d ? d : x->order < y->order ? -1 : 1;
}

/* Refuses the first key, in the mapping's order, that an earlier one repeats. */
static int check_duplicates(struct composer *c, struct open_collection *o)
{
	const struct key_seen *dup = NULL, *first = NULL;

	if (o->nkeys < 2) /* nothing to compare: keys may even be NULL */
		return 0;
	qsort(o->keys, o->nkeys, sizeof(*o->keys), cmp_key);
	for (size_t i = 1; i < o->nkeys; i++)
		if (!strcmp(o->keys[i - 1].text, o->keys[i].text) &&
		    (i < 2 || strcmp(o->keys[i - 2].text, o->keys[i].text)) &&
		    (!dup || o->keys[i].order < dup->order)) {
			dup = &o->keys[i];
			first = &o->keys[i - 1];
		}
	if (!dup)
		return 0;
	return error_at(c->y, &dup->mark, "key '%s' is given twice (first at line %zu)", dup->text,
			first->mark.line + 1);
}

static void collection_release(struct open_collection *o)
{
	free(o->keys);
	free(o->anchor);
}

static int close_collection(struct composer *c, yaml_event_t *e)
{
	struct open_collection *o = &c->open[--c->depth];
	yaml_node_t *node = yaml_document_get_node(&c->y->doc, o->node);
	int rc = 0;

	node->end_mark = e->end_mark;
	if (node->type == YAML_MAPPING_NODE)
		rc = check_duplicates(c, o);
	if (rc == 0 && o->anchor)
		rc = anchor_add(c, o->anchor, o->node, c->size - o->start, &node->start_mark);
	collection_release(o);
	return rc;
}

static int parse_error(struct vi_yaml *y, const yaml_parser_t *parser, const char *text,
		       size_t len)
{
	yaml_mark_t mark = parser->problem_mark;

	/* The reader (bad UTF-8, a control character) gives a byte offset only. */
	if (parser->error == YAML_READER_ERROR) {
		memset(&mark, 0, sizeof(mark));
		for (size_t i = 0; i < parser->problem_offset && i < len; i++) {
			if (text[i] == '\n') {
				mark.line++;
				mark.column = 0;
			} else if (((unsigned char)text[i] & 0xc0) != 0x80) {
				mark.column++;
			}
		}
	}
	return vi_error(VI_EUSAGE, "%s:%zu:%zu: %s%s%s", y->name, mark.line + 1, mark.column + 1,
			parser->problem ? parser->problem : "invalid YAML",
			parser->context ? " " : "", parser->context ? parser->context : "");
}

/* The byte offset of mark in text (libyaml counts characters). */
static size_t mark_offset(const char *text, size_t len, const yaml_mark_t *mark)
{
	size_t i = 0, line = 0, column = 0;

	for (; i < len && line < mark->line; i++)
		if (text[i] == '\n')
			line++;
	for (; i < len && column < mark->column && text[i] != '\n'; column++)
		for (i++; i < len && ((unsigned char)text[i] & 0xc0) == 0x80; i++)
			;
	return i;
}

static void forget_anchors(struct composer *c)
{
	for (size_t i = 0; i < c->nanchors; i++)
		free(c->anchors[i].name);
	free(c->anchors);
	free(c->slots);
	c->anchors = NULL;
	c->slots = NULL;
	c->nanchors = c->anchors_cap = c->nslots = 0;
	c->size = c->aliased = 0;
}

/* Hands a finished document of a stream to its reader, then starts afresh:
 * its text runs from its "---" line (left out), or without one from where
 * the one before ended (comments above it are its own), to where the next
 * begins, blank lines around it left out. */
static int document_done(struct composer *c, const yaml_mark_t *end)
{
	struct vi_yaml *y = c->y;
	size_t from = mark_offset(c->text, c->len, &c->doc_start);
	size_t to = mark_offset(c->text, c->len, end);
	int line = (int)c->doc_start.line + 1, rc;

	if (to - from >= 3 && !strncmp(c->text + from, "---", 3)) {
		size_t eol = from + 3;
		while (eol < to && (c->text[eol] == ' ' || c->text[eol] == '\t'))
			eol++;
		if (eol == to || c->text[eol] == '\n' || c->text[eol] == '\r') {
			from = eol < to ? eol + 1 : eol;
			line++;
		}
	}
	for (size_t i = from; i < to && strchr(" \t\r\n", c->text[i]); i++)
		if (c->text[i] == '\n') {
			from = i + 1;
			line++;
		}
	while (to > from && strchr(" \t\r\n", c->text[to - 1]))
		to--;
	rc = c->each(y, c->text + from, to - from, line, c->arg);
	forget_anchors(c);
	yaml_document_delete(&y->doc);
	y->loaded = yaml_document_initialize(&y->doc, NULL, NULL, NULL, 1, 1);
	if (rc == 0 && !y->loaded)
		rc = no_memory();
	return rc;
}

static int compose(struct composer *c, yaml_parser_t *parser)
{
	yaml_event_t e;
	int rc = 0;

	for (bool end = false; !end && rc == 0; yaml_event_delete(&e)) {
		if (!yaml_parser_parse(parser, &e))
			return parse_error(c->y, parser, c->text, c->len);
		switch (e.type) {
		case YAML_DOCUMENT_START_EVENT:
			c->doc_start = e.data.document_start.implicit ? c->prev_end : e.start_mark;
			if (c->documents++ && !c->each)
				rc = error_at(c->y, &e.start_mark,
					      "a second YAML document is not allowed");
			break;
		case YAML_DOCUMENT_END_EVENT:
			if (c->each)
				rc = document_done(c, &e.start_mark);
			c->prev_end = e.end_mark;
			break;
		case YAML_SCALAR_EVENT:
			rc = add_scalar(c, &e);
			break;
		case YAML_ALIAS_EVENT:
			rc = add_alias(c, &e);
			break;
		case YAML_SEQUENCE_START_EVENT:
		case YAML_MAPPING_START_EVENT:
			rc = open_collection(c, &e);
			break;
		case YAML_SEQUENCE_END_EVENT:
		case YAML_MAPPING_END_EVENT:
			rc = close_collection(c, &e);
			break;
		case YAML_STREAM_END_EVENT:
			end = true;
			break;
		default:
			break;
		}
	}
	return rc;
}

static int load(struct vi_yaml *y, const char *name, const char *text, size_t len,
		vi_yaml_each_fn *each, void *arg)
{
	struct composer c = { .y = y, .each = each, .arg = arg, .text = text, .len = len };
	yaml_parser_t parser;
	int rc;

	memset(y, 0, sizeof(*y));
	y->name = xstrdup(name);
	if (!yaml_parser_initialize(&parser) ||
	    !yaml_document_initialize(&y->doc, NULL, NULL, NULL, 1, 1)) {
		yaml_parser_delete(&parser);
		free(y->name);
		y->name = NULL;
		return vi_error(VI_EFAIL, "cannot initialise the YAML parser");
	}
	y->loaded = true;
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	rc = compose(&c, &parser);
	while (c.depth)
		collection_release(&c.open[--c.depth]);
	forget_anchors(&c);
	yaml_parser_delete(&parser);
	if (rc < 0 || each)
		vi_yaml_release(y);
	return rc;
}

int vi_yaml_load_string(struct vi_yaml *y, const char *name, const char *text, size_t len)
{
	return load(y, name, text, len, NULL, NULL);
}

int vi_yaml_load_each(const char *name, const char *text, size_t len, vi_yaml_each_fn *fn,
		      void *arg)
{
	struct vi_yaml y;
	return load(&y, name, text, len, fn, arg);
}

int vi_yaml_load_file(struct vi_yaml *y, const char *path)
{
	char *text;
	size_t len;
	int rc = vi_read_regular_file(path, VI_YAML_MAX_SIZE, &text, &len);

	if (rc < 0) {
		memset(y, 0, sizeof(*y));
		return rc;
	}
	rc = vi_yaml_load_string(y, path, text, len);
	free(text);
	return rc;
}

void vi_yaml_release(struct vi_yaml *y)
{
	if (y->loaded)
		yaml_document_delete(&y->doc);
	free(y->name);
	memset(y, 0, sizeof(*y));
}

yaml_node_t *vi_yaml_root(struct vi_yaml *y)
{
	yaml_node_t *n = yaml_document_get_root_node(&y->doc);
	/* libyaml gives an empty document one empty plain scalar, or no node. */
	if (n && n->type == YAML_SCALAR_NODE && n->data.scalar.length == 0)
		return NULL;
	return n;
}

yaml_node_t *vi_yaml_node(struct vi_yaml *y, int index)
{
	return yaml_document_get_node(&y->doc, index);
}

int vi_yaml_error(struct vi_yaml *y, const yaml_node_t *node, int code, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = verror_at(y, node ? &node->start_mark : NULL, code, fmt, ap);
	va_end(ap);
	return rc;
}

int vi_yaml_error_at(struct vi_yaml *y, const yaml_node_t *node, size_t offset, int code,
		     const char *fmt, ...)
{
	yaml_mark_t mark = node->start_mark;
	va_list ap;
	int rc;

	if (node->type == YAML_SCALAR_NODE && node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
	    node->start_mark.line == node->end_mark.line)
		for (size_t i = 0; i < offset && i < node->data.scalar.length; i++)
			if ((node->data.scalar.value[i] & 0xc0) != 0x80)
				mark.column++;
	va_start(ap, fmt);
	rc = verror_at(y, &mark, code, fmt, ap);
	va_end(ap);
	return rc;
}

int vi_yaml_unknown(struct vi_yaml *y, const yaml_node_t *node, size_t offset, const char *what,
		    const char *word, const char *const *known, size_t n)
{
	const char *s = vi_suggest(word, known, n);

	if (s)
		return vi_yaml_error_at(y, node, offset, VI_EUSAGE,
					"unknown %s '%s'; did you mean '%s'?", what, word, s);
	return vi_yaml_error_at(y, node, offset, VI_EUSAGE, "unknown %s '%s'", what, word);
}

const char *vi_yaml_kind(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_MAPPING_NODE:
		return "a mapping";
	case YAML_SEQUENCE_NODE:
		return "a list";
	default:
		return "a scalar";
	}
}

int vi_yaml_expect_map(struct vi_yaml *y, yaml_node_t *node, const char *what)
{
	if (!node)
		return vi_yaml_error(y, NULL, VI_EUSAGE, "%s is empty", what);
	if (node->type != YAML_MAPPING_NODE)
		return vi_yaml_error(y, node, VI_EUSAGE, "%s must be a mapping, not %s", what,
				     vi_yaml_kind(node));
	return 0;
}

const char *vi_yaml_scalar(const yaml_node_t *node)
{
	return node && node->type == YAML_SCALAR_NODE ? (const char *)node->data.scalar.value
						       : NULL;
}

int vi_yaml_check_keys(struct vi_yaml *y, yaml_node_t *map, const char *const *known, size_t n)
{
	yaml_node_t *k, *v;

	vi_yaml_map_foreach(y, map, k, v)
	{
		const char *key = vi_yaml_scalar(k);
		size_t i;
		(void)v;
		if (!key)
			return vi_yaml_error(y, k, VI_EUSAGE, "keys must be scalars");
		for (i = 0; i < n; i++)
			if (!strcmp(key, known[i]))
				break;
		if (i == n)
			return vi_yaml_unknown(y, k, 0, "key", key, known, n);
	}
	return 0;
}

yaml_node_t *vi_yaml_get(struct vi_yaml *y, yaml_node_t *map, const char *key)
{
	yaml_node_t *k, *v;

	if (!map || map->type != YAML_MAPPING_NODE)
		return NULL;
	vi_yaml_map_foreach(y, map, k, v)
	{
		const char *s = vi_yaml_scalar(k);
		if (s && !strcmp(s, key))
			return v;
	}
	return NULL;
}

/* Finds key's scalar value: 0 found, 1 absent, or an error. */
static int get_scalar(struct vi_yaml *y, yaml_node_t *map, const char *key, bool required,
		      yaml_node_t **node, const char **text)
{
	yaml_node_t *v = vi_yaml_get(y, map, key);

	if (!v) {
		if (required)
			return vi_yaml_error(y, map, VI_EUSAGE, "missing required key '%s'", key);
		return 1;
	}
	if (v->type != YAML_SCALAR_NODE)
		return vi_yaml_error(y, v, VI_EUSAGE, "'%s' must be a scalar, not %s", key,
				     vi_yaml_kind(v));
	*node = v;
	*text = vi_yaml_scalar(v);
	return 0;
}

int vi_yaml_get_str(struct vi_yaml *y, yaml_node_t *map, const char *key, bool required,
		    const char **out)
{
	yaml_node_t *n = NULL;
	const char *s = NULL;
	int rc = get_scalar(y, map, key, required, &n, &s);

	if (rc == 0)
		*out = s;
	return rc;
}

int vi_yaml_dup_str(struct vi_yaml *y, yaml_node_t *map, const char *key, bool required,
		    char **out)
{
	const char *s = NULL;
	int rc = vi_yaml_get_str(y, map, key, required, &s);

	if (rc == 0)
		*out = xstrdup(s);
	return rc < 0 ? rc : 0;
}

int vi_yaml_get_uint(struct vi_yaml *y, yaml_node_t *map, const char *key, bool required,
		     uint64_t min, uint64_t max, uint64_t *out)
{
	yaml_node_t *n = NULL;
	const char *s = NULL;
	int rc = get_scalar(y, map, key, required, &n, &s);

	if (rc)
		return rc;
	if (vi_parse_uint(s, key, min, max, out) < 0)
		return vi_yaml_error(y, n, VI_EUSAGE, "%s", vi_error_message());
	return 0;
}

int vi_yaml_get_size(struct vi_yaml *y, yaml_node_t *map, const char *key, bool required,
		     uint64_t min, uint64_t max, uint64_t *out)
{
	yaml_node_t *n = NULL;
	const char *s = NULL;
	int rc = get_scalar(y, map, key, required, &n, &s);

	if (rc)
		return rc;
	if (vi_parse_size_in(s, key, min, max, out) < 0)
		return vi_yaml_error(y, n, VI_EUSAGE, "%s", vi_error_message());
	return 0;
}

int vi_yaml_get_bool(struct vi_yaml *y, yaml_node_t *map, const char *key, bool required,
		     bool *out)
{
	yaml_node_t *n = NULL;
	const char *s = NULL;
	int rc = get_scalar(y, map, key, required, &n, &s);

	if (rc)
		return rc;
	if (!strcmp(s, "true") || !strcmp(s, "yes") || !strcmp(s, "on"))
		*out = true;
	else if (!strcmp(s, "false") || !strcmp(s, "no") || !strcmp(s, "off"))
		*out = false;
	else
		return vi_yaml_error(y, n, VI_EUSAGE, "'%s' must be true or false, not '%s'", key,
				     s);
	return 0;
}

static int out_write(void *data, unsigned char *buffer, size_t size)
{
	struct vi_yaml_out *o = data;

	if (o->len + size + 1 > o->cap) {
		o->cap = (o->len + size + 1) * 2;
		o->buf = xrealloc(o->buf, o->cap);
	}
	memcpy(o->buf + o->len, buffer, size);
	o->len += size;
	o->buf[o->len] = '\0';
	return 1;
}

static void emit(struct vi_yaml_out *o, yaml_event_t *e, int ok)
{
	if (!ok || o->failed || !yaml_emitter_emit(&o->emitter, e))
		o->failed = true;
}

void vi_yaml_out_init(struct vi_yaml_out *o)
{
	yaml_event_t e;

	memset(o, 0, sizeof(*o));
	if (!yaml_emitter_initialize(&o->emitter)) {
		o->failed = true;
		return;
	}
	yaml_emitter_set_output(&o->emitter, out_write, o);
	yaml_emitter_set_unicode(&o->emitter, 1);
	yaml_emitter_set_width(&o->emitter, -1);
	emit(o, &e, yaml_stream_start_event_initialize(&e, YAML_UTF8_ENCODING));
	emit(o, &e, yaml_document_start_event_initialize(&e, NULL, NULL, NULL, 1));
}

static void push(struct vi_yaml_out *o, char kind)
{
	if (o->depth >= (int)sizeof(o->open))
		o->failed = true;
	else
		o->open[o->depth++] = kind;
}

void vi_yaml_out_map_start(struct vi_yaml_out *o)
{
	yaml_event_t e;
	push(o, 'm');
	emit(o, &e, yaml_mapping_start_event_initialize(&e, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE));
}

void vi_yaml_out_seq_start(struct vi_yaml_out *o)
{
	yaml_event_t e;
	push(o, 's');
	emit(o, &e,
	     yaml_sequence_start_event_initialize(&e, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE));
}

void vi_yaml_out_end(struct vi_yaml_out *o)
{
	yaml_event_t e;
	if (o->depth <= 0) {
		o->failed = true;
		return;
	}
	if (o->open[--o->depth] == 's')
		emit(o, &e, yaml_sequence_end_event_initialize(&e));
	else
		emit(o, &e, yaml_mapping_end_event_initialize(&e));
}

void vi_yaml_out_scalar(struct vi_yaml_out *o, const char *s)
{
	yaml_event_t e;
	emit(o, &e,
	     yaml_scalar_event_initialize(&e, NULL, NULL, (yaml_char_t *)s, (int)strlen(s), 1, 1,
					  YAML_ANY_SCALAR_STYLE));
}

void vi_yaml_out_str(struct vi_yaml_out *o, const char *key, const char *value)
{
	if (!value)
		return;
	vi_yaml_out_scalar(o, key);
	vi_yaml_out_scalar(o, value);
}

void vi_yaml_out_uint(struct vi_yaml_out *o, const char *key, uint64_t value)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%llu", (unsigned long long)value);
	vi_yaml_out_str(o, key, buf);
}

void vi_yaml_out_size(struct vi_yaml_out *o, const char *key, uint64_t bytes)
{
	char buf[32];
	/* Exact forms only, so reading it back gives the same number. */
	if (bytes % 1024)
		snprintf(buf, sizeof(buf), "%llu", (unsigned long long)bytes);
	else
		vi_format_size(bytes, buf, sizeof(buf));
	vi_yaml_out_str(o, key, buf);
}

void vi_yaml_out_bool(struct vi_yaml_out *o, const char *key, bool value)
{
	vi_yaml_out_str(o, key, value ? "true" : "false");
}

int vi_yaml_out_finish(struct vi_yaml_out *o, char **text, size_t *len)
{
	yaml_event_t e;

	emit(o, &e, yaml_document_end_event_initialize(&e, 1));
	emit(o, &e, yaml_stream_end_event_initialize(&e));
	yaml_emitter_delete(&o->emitter);
	if (o->failed) {
		free(o->buf);
		return vi_error(VI_EFAIL, "cannot write YAML");
	}
	*text = o->buf;
	if (len)
		*len = o->len;
	return 0;
}

int vi_yaml_out_save(struct vi_yaml_out *o, const char *path, unsigned mode)
{
	char *text;
	size_t len;
	int rc = vi_yaml_out_finish(o, &text, &len);

	if (rc < 0)
		return rc;
	rc = vi_write_file_atomic(path, text, len, mode);
	free(text);
	return rc;
}

int vi_yaml_check_schema(struct vi_yaml *y, yaml_node_t *map, uint64_t max)
{
	uint64_t schema;
	int rc = vi_yaml_get_uint(y, map, "schema", true, 1, 1000, &schema);

	if (rc == 0 && schema > max)
		rc = vi_yaml_error(y, vi_yaml_get(y, map, "schema"), VI_EUNSUPPORTED,
				   "schema %llu is newer than this vi understands (%llu)",
				   (unsigned long long)schema, (unsigned long long)max);
	return rc;
}
