/* Tables and JSON documents on stdout, and the escaping of all text. */
#include "output.h"
#include "util.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct json_object *vi_json_doc(void)
{
	struct json_object *o = json_object_new_object();
	json_object_object_add(o, "vi", json_object_new_int(VI_JSON_SCHEMA));
	return o;
}

bool vi_json_printed;

void vi_json_print(struct json_object *doc)
{
	vi_json_printed = true;
	puts(json_object_to_json_string_ext(doc, JSON_C_TO_STRING_PRETTY |
							 JSON_C_TO_STRING_SPACED |
							 JSON_C_TO_STRING_NOSLASHESCAPE));
	json_object_put(doc);
}

struct json_object *vi_json_ms(double ms)
{
	return json_object_new_int64((int64_t)(ms + 0.5));
}

struct json_object *vi_json_str(const char *s)
{
	return s ? json_object_new_string(s) : NULL;
}

const char *vi_json_get_str(struct json_object *o, const char *key)
{
	struct json_object *v;

	return o && json_object_object_get_ex(o, key, &v) && !json_object_is_type(v, json_type_null)
		       ? json_object_get_string(v)
		       : NULL;
}

int64_t vi_json_get_int(struct json_object *o, const char *key)
{
	struct json_object *v;

	return o && json_object_object_get_ex(o, key, &v) ? json_object_get_int64(v) : 0;
}

char *vi_escape_controls(const char *s)
{
	char *out = xmalloc(4 * strlen(s) + 1), *o = out;

	for (const unsigned char *c = (const unsigned char *)s; *c; c++) {
		bool c1 = c[0] == 0xc2 && c[1] >= 0x80 && c[1] <= 0x9f;
		if (*c < 0x20 || *c == 0x7f || c1) {
			o += sprintf(o, "\\x%02x", *c);
			if (c1)
				o += sprintf(o, "\\x%02x", *++c);
		} else {
			*o++ = (char)*c;
		}
	}
	*o = '\0';
	return out;
}

void vi_table_init(struct vi_table *t, size_t ncols, const char *const *header)
{
	memset(t, 0, sizeof(*t));
	t->ncols = ncols;
	vi_table_add(t, header);
}

void vi_table_add(struct vi_table *t, const char *const *row)
{
	t->cells = xrealloc(t->cells, (t->nrows + 1) * t->ncols * sizeof(char *));
	for (size_t c = 0; c < t->ncols; c++)
		t->cells[t->nrows * t->ncols + c] = vi_escape_controls(row[c] ? row[c] : "-");
	t->nrows++;
}

void vi_table_print(const struct vi_table *t)
{
	size_t width[16] = { 0 };

	for (size_t r = 0; r < t->nrows; r++)
		for (size_t c = 0; c < t->ncols && c < ARRAY_SIZE(width); c++) {
			size_t w = strlen(t->cells[r * t->ncols + c]);
			if (w > width[c])
				width[c] = w;
		}
	for (size_t r = 0; r < t->nrows; r++) {
		for (size_t c = 0; c < t->ncols; c++) {
			const char *cell = t->cells[r * t->ncols + c];
			if (c + 1 == t->ncols)
				printf("%s\n", cell);
			else
				printf("%-*s  ", (int)width[c < ARRAY_SIZE(width) ? c : 0], cell);
		}
	}
}

void vi_table_release(struct vi_table *t)
{
	for (size_t i = 0; i < t->nrows * t->ncols; i++)
		free(t->cells[i]);
	free(t->cells);
	memset(t, 0, sizeof(*t));
}
