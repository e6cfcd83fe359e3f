/* YAML documents through libyaml: loading with positions, typed getters, emitting. */
#include "yaml-doc.h"
#include "error.h"
#include "util.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int vi_yaml_load_string(struct vi_yaml *y, const char *name, const char *text, size_t len)
{
	yaml_parser_t parser;
	int rc = 0;

	memset(y, 0, sizeof(*y));
	y->name = xstrdup(name);
	if (!yaml_parser_initialize(&parser))
		return vi_error(VI_EFAIL, "cannot initialise the YAML parser");
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &y->doc)) {
		rc = vi_error(VI_EUSAGE, "%s:%zu:%zu: %s%s%s", name, parser.problem_mark.line + 1,
			      parser.problem_mark.column + 1,
			      parser.problem ? parser.problem : "invalid YAML",
			      parser.context ? " " : "", parser.context ? parser.context : "");
		free(y->name);
		y->name = NULL;
	} else {
		y->loaded = true;
	}
	yaml_parser_delete(&parser);
	return rc;
}

int vi_yaml_load_file(struct vi_yaml *y, const char *path)
{
	char *text;
	size_t len;
	int rc = vi_read_file(path, &text, &len);

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
	char msg[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!node)
		return vi_error(code, "%s: %s", y->name, msg);
	return vi_error(code, "%s:%zu:%zu: %s", y->name, node->start_mark.line + 1,
			node->start_mark.column + 1, msg);
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
		if (i < n)
			continue;
		const char *s = vi_suggest(key, known, n);
		if (s)
			return vi_yaml_error(y, k, VI_EUSAGE, "unknown key '%s'; did you mean '%s'?",
					     key, s);
		return vi_yaml_error(y, k, VI_EUSAGE, "unknown key '%s'", key);
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
		     uint64_t *out)
{
	yaml_node_t *n = NULL;
	const char *s = NULL;
	int rc = get_scalar(y, map, key, required, &n, &s);

	if (rc)
		return rc;
	if (vi_parse_size(s, key, out) < 0)
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
