/* Unit tests: YAML loading with positions, typed getters, emitting. */
#include "error.h"
#include "util.h"
#include "yaml-doc.h"
#include "tap.h"

#include <stdlib.h>

static int load(struct vi_yaml *y, const char *text)
{
	return vi_yaml_load_string(y, "t.yaml", text, strlen(text));
}

static void syntax_errors(void)
{
	struct vi_yaml y;
	is_int(load(&y, "a: [1, 2\nb: 3\n"), -VI_EUSAGE, "unclosed flow sequence");
	ok(!strncmp(vi_error_message(), "t.yaml:2:", 9), "syntax error has line:column (%s)",
	   vi_error_message());
	is_int(load(&y, "a: b: c\n"), -VI_EUSAGE, "mapping in a plain scalar");
	is_str(vi_error_message(),
	       "t.yaml:1:5: mapping values are not allowed in this context",
	       "libyaml's problem with its position");
}

static void getters(void)
{
	struct vi_yaml y;
	const char *s = NULL;
	uint64_t u = 0;
	bool b = false;
	yaml_node_t *root;

	is_int(load(&y, "name: web\ncpus: 4\nmemory: 1G\nflag: yes\nlist: [1]\nbad: x\n"), 0,
	       "load a mapping");
	root = vi_yaml_root(&y);
	is_int(vi_yaml_get_str(&y, root, "name", true, &s), 0, "string");
	is_str(s, "web", "string value");
	is_int(vi_yaml_get_uint(&y, root, "cpus", true, 1, 8, &u), 0, "uint");
	is_int(u, 4, "uint value");
	is_int(vi_yaml_get_size(&y, root, "memory", true, 1, UINT64_MAX, &u), 0, "size");
	is_int(u, 1 << 30, "size value");
	is_int(vi_yaml_get_bool(&y, root, "flag", true, &b), 0, "bool");
	ok(b, "bool value");
	is_int(vi_yaml_get_str(&y, root, "absent", false, &s), 1, "absent optional key");
	is_int(vi_yaml_get_str(&y, root, "absent", true, &s), -VI_EUSAGE, "absent required key");
	is_str(vi_error_message(), "t.yaml:1:1: missing required key 'absent'",
	       "missing key is reported at its mapping");
	is_int(vi_yaml_get_uint(&y, root, "cpus", true, 1, 2, &u), -VI_EUSAGE, "out of range");
	is_str(vi_error_message(), "t.yaml:2:7: invalid cpus '4': must be from 1 to 2",
	       "range error at the value");
	is_int(vi_yaml_get_str(&y, root, "list", true, &s), -VI_EUSAGE, "list where a scalar is due");
	is_str(vi_error_message(), "t.yaml:5:7: 'list' must be a scalar, not a list",
	       "type error names both");
	is_int(vi_yaml_get_bool(&y, root, "bad", true, &b), -VI_EUSAGE, "not a bool");
	static const char *const known[] = { "name", "cpus", "memory", "flag", "list" };
	is_int(vi_yaml_check_keys(&y, root, known, ARRAY_SIZE(known)), -VI_EUSAGE, "unknown key");
	is_str(vi_error_message(), "t.yaml:6:1: unknown key 'bad'", "unknown key without suggestion");
	vi_yaml_release(&y);

	load(&y, "memroy: 1G\n");
	static const char *const mem[] = { "memory" };
	vi_yaml_check_keys(&y, vi_yaml_root(&y), mem, 1);
	is_str(vi_error_message(), "t.yaml:1:1: unknown key 'memroy'; did you mean 'memory'?",
	       "unknown key with a suggestion");
	vi_yaml_release(&y);

	load(&y, "");
	ok(vi_yaml_root(&y) == NULL, "an empty document has no root");
	is_int(vi_yaml_expect_map(&y, NULL, "a template"), -VI_EUSAGE, "empty where a map is due");
	is_str(vi_error_message(), "t.yaml: a template is empty", "empty document message");
	vi_yaml_release(&y);
}

static void emit_roundtrip(void)
{
	struct vi_yaml_out o;
	struct vi_yaml y;
	char *text;
	size_t len;
	const char *s;

	vi_yaml_out_init(&o);
	vi_yaml_out_map_start(&o);
	vi_yaml_out_str(&o, "plain", "value");
	vi_yaml_out_str(&o, "tricky", "a: b # not a comment\n'quoted' \"too\"");
	vi_yaml_out_str(&o, "skipped", NULL);
	vi_yaml_out_size(&o, "mem", 3ull << 29);
	vi_yaml_out_scalar(&o, "items");
	vi_yaml_out_seq_start(&o);
	vi_yaml_out_map_start(&o);
	vi_yaml_out_str(&o, "k", "v");
	vi_yaml_out_end(&o);
	vi_yaml_out_end(&o);
	vi_yaml_out_end(&o);
	is_int(vi_yaml_out_finish(&o, &text, &len), 0, "emit");
	is_int(vi_yaml_load_string(&y, "out", text, len), 0, "emitted text parses");
	yaml_node_t *root = vi_yaml_root(&y);
	vi_yaml_get_str(&y, root, "tricky", true, &s);
	is_str(s, "a: b # not a comment\n'quoted' \"too\"", "special characters survive");
	ok(vi_yaml_get(&y, root, "skipped") == NULL, "NULL values are not written");
	vi_yaml_get_str(&y, root, "mem", true, &s);
	is_str(s, "1536M", "sizes are written exactly");
	yaml_node_t *items = vi_yaml_get(&y, root, "items"), *item;
	int n = 0;
	vi_yaml_seq_foreach(&y, items, item) n += item != NULL;
	is_int(n, 1, "sequence of mappings");
	vi_yaml_release(&y);
	free(text);
}

struct seen {
	char text[4][64];
	int line[4];
	int n;
};

static int collect(struct vi_yaml *y, const char *text, size_t len, int line, void *arg)
{
	struct seen *s = arg;
	yaml_node_t *root = vi_yaml_root(y);

	if (s->n == 4)
		return -VI_EFAIL;
	snprintf(s->text[s->n], sizeof(s->text[0]), "%.*s", (int)len, text);
	s->line[s->n++] = line;
	if (root && vi_yaml_get(y, root, "bad"))
		return vi_yaml_error_at(y, vi_yaml_get(y, root, "bad"), 4, VI_EUSAGE, "here");
	return 0;
}

static void documents(void)
{
	struct seen s = { 0 };
	struct vi_yaml y;
	const char *text = "# one\na: 1\n---\nb: &x 2\n\n\n--- \nc: *x\n...\n";

	is_int(vi_yaml_load_each("t.yaml", text, strlen(text), collect, &s), -VI_EUSAGE,
	       "an alias does not reach into the next document");
	is_str(vi_error_message(), "t.yaml:8:4: unknown alias '*x'", "the alias's place");
	memset(&s, 0, sizeof(s));
	text = "# one\na: 1\n---\nb: 2\n\n\n--- \nc: 3\n...\n";
	is_int(vi_yaml_load_each("t.yaml", text, strlen(text), collect, &s), 0, "three documents");
	is_int(s.n, 3, "each document seen");
	is_str(s.text[0], "# one\na: 1", "the first document's text");
	is_int(s.line[0], 1, "it starts at line 1");
	is_str(s.text[1], "b: 2", "the second's, without its '---'");
	is_int(s.line[1], 4, "it starts at line 4");
	is_str(s.text[2], "c: 3", "the third's, without the end marker");
	is_int(s.line[2], 8, "it starts at line 8");
	memset(&s, 0, sizeof(s));
	text = "a: 1\n---\nbad: one two three\n";
	is_int(vi_yaml_load_each("t.yaml", text, strlen(text), collect, &s), -VI_EUSAGE,
	       "the reader's error stops the load");
	is_str(vi_error_message(), "t.yaml:3:10: here", "at an offset inside a plain scalar");
	text = "bad: 'one two'\n";
	memset(&s, 0, sizeof(s));
	is_int(vi_yaml_load_each("t.yaml", text, strlen(text), collect, &s), -VI_EUSAGE,
	       "a quoted scalar");
	is_str(vi_error_message(), "t.yaml:1:6: here", "at a quoted scalar's start");
	is_int(load(&y, "a: 1\n---\nb: 2\n"), -VI_EUSAGE, "one document only for the others");
	is_str(vi_error_message(), "t.yaml:2:1: a second YAML document is not allowed",
	       "the second document refused");
}

int main(void)
{
	syntax_errors();
	getters();
	emit_roundtrip();
	documents();
	return done();
}
