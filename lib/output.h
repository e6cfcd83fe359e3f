/* Output for people and for programs: aligned tables and JSON documents
 * carrying the schema version ("vi": 1). */
#ifndef VI_OUTPUT_H
#define VI_OUTPUT_H

#include <json-c/json.h>
#include <stdbool.h>
#include <stddef.h>

#define VI_JSON_SCHEMA 1

/* A new JSON object {"vi": 1}; the caller owns the reference. */
struct json_object *vi_json_doc(void);
/* Set once a document was printed: a command prints one at the most. */
extern bool vi_json_printed;
/* Prints doc (pretty) to stdout with a newline and drops the reference. */
void vi_json_print(struct json_object *doc);
/* A duration in whole milliseconds: times in JSON are integers. */
struct json_object *vi_json_ms(double ms);
/* json_object_new_string() that maps NULL to JSON null. */
struct json_object *vi_json_str(const char *s);
/* o's member key: as a string (NULL when missing or null), as an integer (0 when
 * missing). o may be NULL. */
const char *vi_json_get_str(struct json_object *o, const char *key);
int64_t vi_json_get_int(struct json_object *o, const char *key);

/* Text for a terminal: control characters (C0, DEL and C1 as UTF-8 encodes
 * it) become \xHH, so that no name or message read from elsewhere can drive
 * the terminal. Everything vi prints as text passes through it. The result
 * is the caller's. */
char *vi_escape_controls(const char *s);

/* A table of text cells, printed with columns aligned. Owns its cells. */
struct vi_table {
	size_t ncols, nrows;
	char **cells; /* nrows * ncols */
};

void vi_table_init(struct vi_table *t, size_t ncols, const char *const *header);
/* Appends a row of ncols strings (copied, escaped; NULL prints as "-"). */
void vi_table_add(struct vi_table *t, const char *const *row);
void vi_table_print(const struct vi_table *t);
void vi_table_release(struct vi_table *t);

#endif
