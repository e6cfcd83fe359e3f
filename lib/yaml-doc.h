/* YAML documents: load a file with libyaml into a node tree whose errors carry
 * file:line:column, read typed values, and emit new documents.
 * Nodes are libyaml's; they belong to the vi_yaml that loaded them. */
#ifndef VI_YAML_DOC_H
#define VI_YAML_DOC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <yaml.h>

struct vi_yaml {
	yaml_document_t doc;
	char *name; /* the file name used in messages */
	bool loaded;
};

/* What reading one YAML file may cost, so that hostile text fails at once
 * (man/vi-template.5 states them): the file's size, how deep mappings and
 * lists nest, and how much aliases may repeat in all, each alias counting
 * the text it stands for (one byte more for each node in it). */
#define VI_YAML_MAX_SIZE (4u << 20)
#define VI_YAML_MAX_DEPTH 64
#define VI_YAML_MAX_ALIASED (4u << 20)

/* Loads one document (a regular file for vi_yaml_load_file). Errors:
 * "NAME:LINE:COL: what" and -VI_EUSAGE for bad YAML, a second document, a
 * key given twice in a mapping or a limit above crossed; -VI_ENOTFOUND for a
 * missing file. Release with vi_yaml_release(). */
int vi_yaml_load_file(struct vi_yaml *y, const char *path);
int vi_yaml_load_string(struct vi_yaml *y, const char *name, const char *text, size_t len);
void vi_yaml_release(struct vi_yaml *y);

/* Loads every document of a stream (a policy file) in turn, calling fn with
 * each while it is loaded: y is released after fn returns, and a negative
 * return from fn stops the load and is returned. text and len are the
 * document's own text in the stream (its "---" line and trailing blank
 * lines left out; not NUL-terminated), line is where that text starts. An
 * empty document has no root. Errors as vi_yaml_load_string(). */
typedef int vi_yaml_each_fn(struct vi_yaml *y, const char *text, size_t len, int line,
			    void *arg);
int vi_yaml_load_each(const char *name, const char *text, size_t len, vi_yaml_each_fn *fn,
		      void *arg);

yaml_node_t *vi_yaml_root(struct vi_yaml *y); /* NULL for an empty document */
yaml_node_t *vi_yaml_node(struct vi_yaml *y, int index);

/* Records "NAME:LINE:COL: fmt" at node (or at the document start when NULL);
 * returns -code. */
int vi_yaml_error(struct vi_yaml *y, const yaml_node_t *node, int code, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

/* The same at the character offset bytes into a plain one-line scalar's
 * text (a word inside a condition); elsewhere at the node's start. */
int vi_yaml_error_at(struct vi_yaml *y, const yaml_node_t *node, size_t offset, int code,
		     const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* "unknown WHAT 'WORD'", with "; did you mean 'X'?" when one of known is
 * close, at offset as vi_yaml_error_at(); returns -VI_EUSAGE. */
int vi_yaml_unknown(struct vi_yaml *y, const yaml_node_t *node, size_t offset, const char *what,
		    const char *word, const char *const *known, size_t n);

/* Requires node to be a mapping (what names it in the message). */
int vi_yaml_expect_map(struct vi_yaml *y, yaml_node_t *node, const char *what);
/* Fails on the first key not in `known`, with a did-you-mean. */
int vi_yaml_check_keys(struct vi_yaml *y, yaml_node_t *map, const char *const *known, size_t n);
/* The value under key in a mapping, or NULL; *key_node (optional) gets the key. */
yaml_node_t *vi_yaml_get(struct vi_yaml *y, yaml_node_t *map, const char *key);
/* A scalar's text, or NULL for other nodes. */
const char *vi_yaml_scalar(const yaml_node_t *node);
/* What a node is, for messages: "a mapping", "a list" or "a scalar". */
const char *vi_yaml_kind(const yaml_node_t *node);

/* Typed getters: 0 when found, 1 when absent and not required (out untouched),
 * negative on error (wrong type, missing while required, out of range). */
int vi_yaml_get_str(struct vi_yaml *y, yaml_node_t *map, const char *key, bool required,
		    const char **out);
/* The same for a string, copied into *out (malloc'd) when found; 0 also
 * when absent and not required. */
int vi_yaml_dup_str(struct vi_yaml *y, yaml_node_t *map, const char *key, bool required,
		    char **out);
int vi_yaml_get_uint(struct vi_yaml *y, yaml_node_t *map, const char *key, bool required,
		     uint64_t min, uint64_t max, uint64_t *out);
int vi_yaml_get_size(struct vi_yaml *y, yaml_node_t *map, const char *key, bool required,
		     uint64_t min, uint64_t max, uint64_t *out);
int vi_yaml_get_bool(struct vi_yaml *y, yaml_node_t *map, const char *key, bool required,
		     bool *out);

/* Iteration over sequences and mappings. */
#define vi_yaml_seq_foreach(y, seq, item)                                                      \
	for (yaml_node_item_t *item##_i = (seq)->data.sequence.items.start;                   \
	     item##_i < (seq)->data.sequence.items.top &&                                      \
	     ((item) = vi_yaml_node((y), *item##_i), 1);                                       \
	     item##_i++)
#define vi_yaml_map_foreach(y, map, k, v)                                                      \
	for (yaml_node_pair_t *k##_p = (map)->data.mapping.pairs.start;                       \
	     k##_p < (map)->data.mapping.pairs.top && ((k) = vi_yaml_node((y), k##_p->key),    \
						       (v) = vi_yaml_node((y), k##_p->value), 1); \
	     k##_p++)

/* Emitting: a small event writer into a memory buffer. */
struct vi_yaml_out {
	yaml_emitter_t emitter;
	char *buf;
	size_t len, cap;
	char open[32]; /* 'm' or 's' for each collection not yet ended */
	int depth;
	bool failed;
};

void vi_yaml_out_init(struct vi_yaml_out *o);   /* starts a stream and a document */
void vi_yaml_out_map_start(struct vi_yaml_out *o);
void vi_yaml_out_seq_start(struct vi_yaml_out *o);
void vi_yaml_out_end(struct vi_yaml_out *o);     /* ends the innermost map or sequence */
void vi_yaml_out_scalar(struct vi_yaml_out *o, const char *s);
/* key: value pairs inside a mapping; a NULL string value writes nothing. */
void vi_yaml_out_str(struct vi_yaml_out *o, const char *key, const char *value);
void vi_yaml_out_uint(struct vi_yaml_out *o, const char *key, uint64_t value);
void vi_yaml_out_size(struct vi_yaml_out *o, const char *key, uint64_t bytes);
void vi_yaml_out_bool(struct vi_yaml_out *o, const char *key, bool value);
/* Ends the document; *text (NUL-terminated, caller frees) and *len. */
int vi_yaml_out_finish(struct vi_yaml_out *o, char **text, size_t *len);
/* Reads the document's required "schema" key: -VI_EUNSUPPORTED, at its line,
 * when it is newer than max. */
int vi_yaml_check_schema(struct vi_yaml *y, yaml_node_t *map, uint64_t max);
/* Ends the document and writes it to path atomically with mode. */
int vi_yaml_out_save(struct vi_yaml_out *o, const char *path, unsigned mode);

#endif
