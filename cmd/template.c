/* vi template list|show|validate|build|export|import|rm: golden-image
 * templates and the images built from them (lib/template.h does the work). */
#include "cmd.h"
#include "error.h"
#include "log.h"
#include "output.h"
#include "progress.h"
#include "template.h"
#include "util.h"
#include "yaml-doc.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct vi_strlist sets;
static int force, images;
static const char *compress = "zstd", *expect;

#define OPT_SET                                             \
	{                                                   \
		"set", 0, VI_OPT_LIST, &sets, "KEY=VALUE",  \
			"give a template parameter a value" \
			" (repeatable)"                     \
	}

static const struct vi_option template_build_options[] = {
	OPT_SET,
	{ "force", 0, VI_OPT_FLAG, &force, NULL, "build again even when the image exists" },
	OPT_JSON,
	VI_OPT_TABLE_END,
};

static const struct vi_option template_export_options[] = {
	OPT_SET,
	{ "compress", 0, VI_OPT_STRING, &compress, "zstd|gzip|none",
	  "compression of the archive (default zstd)" },
	OPT_JSON,
	VI_OPT_TABLE_END,
};

static const struct vi_option template_import_options[] = {
	{ "expect", 0, VI_OPT_STRING, &expect, "sha256:HEX",
	  "refuse the archive unless it holds this image" },
	{ "force", 0, VI_OPT_FLAG, &force, NULL, "take names that other stored images have" },
	OPT_JSON,
	VI_OPT_TABLE_END,
};

static const struct vi_option template_json_options[] = {
	OPT_JSON,
	VI_OPT_TABLE_END,
};

static const struct vi_option template_list_options[] = {
	{ "images", 0, VI_OPT_FLAG, &images, NULL, "list the built images instead" },
	OPT_JSON,
	VI_OPT_TABLE_END,
};

static const struct vi_option template_set_options[] = {
	OPT_SET,
	OPT_JSON,
	VI_OPT_TABLE_END,
};

static int template_build_cmd(int argc, char **argv);
static int template_export_cmd(int argc, char **argv);
static int template_import_cmd(int argc, char **argv);
static int template_list_cmd(int argc, char **argv);
static int template_rm_cmd(int argc, char **argv);
static int template_show_cmd(int argc, char **argv);
static int template_validate_cmd(int argc, char **argv);

const struct cmd template_commands[] = {
	{ "build", template_build_cmd, 1, 1, NEEDS_STORE, "TEMPLATE", template_build_options,
	  "build a template's golden image, unless it is built" },
	{ "export", template_export_cmd, 2, 2, NEEDS_STORE, "TEMPLATE FILE",
	  template_export_options, "write a built image and its bases to one archive" },
	{ "import", template_import_cmd, 1, 1, NEEDS_STORE, "FILE", template_import_options,
	  "add the images in an archive to the store" },
	{ "list", template_list_cmd, 0, 0, NEEDS_STORE, "", template_list_options,
	  "list the templates and whether they are built" },
	{ "rm", template_rm_cmd, 1, 1, NEEDS_STORE, "TEMPLATE", template_json_options,
	  "remove the built images of a template" },
	{ "show", template_show_cmd, 1, 1, NEEDS_STORE, "TEMPLATE", template_set_options,
	  "show a template as it resolves, with its digest" },
	{ "validate", template_validate_cmd, 1, -1, 0, "TEMPLATE...", template_set_options,
	  "check templates for errors" },
	{ NULL },
};

/* --- helpers ------------------------------------------------------------ */

/* A template by reference, with the --set values. */
static int load(const char *ref, struct template **t)
{
	const char *home = ctx.store.home ? ctx.store.home : ctx.home;
	int rc = template_load(home, ref, sets.items, sets.n, t);

	return rc < 0 ? rc : template_digest(*t);
}

/* A YAML document as JSON: numbers and booleans typed, the rest strings. */
static struct json_object *yaml_json(struct vi_yaml *y, yaml_node_t *n)
{
	yaml_node_t *k, *v, *item;
	struct json_object *o;

	if (n->type == YAML_MAPPING_NODE) {
		o = json_object_new_object();
		vi_yaml_map_foreach(y, n, k, v)
		{
			json_object_object_add(o, vi_yaml_scalar(k), yaml_json(y, v));
		}
		return o;
	}
	if (n->type == YAML_SEQUENCE_NODE) {
		o = json_object_new_array();
		vi_yaml_seq_foreach(y, n, item)
		{
			json_object_array_add(o, yaml_json(y, item));
		}
		return o;
	}
	const char *s = vi_yaml_scalar(n);
	if (n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
		if (*s && !s[strspn(s, "0123456789")] && strlen(s) < 16)
			return json_object_new_int64(strtoll(s, NULL, 10));
		if (!strcmp(s, "true") || !strcmp(s, "false"))
			return json_object_new_boolean(!strcmp(s, "true"));
	}
	return json_object_new_string(s);
}

/* --- the subcommands ---------------------------------------------------- */

static int template_validate_cmd(int argc, char **argv)
{
	struct json_object *doc = ctx.json ? vi_json_doc() : NULL;
	struct json_object *arr = ctx.json ? json_object_new_array() : NULL;
	int rc = 0;

	for (int i = 0; i < argc && rc == 0; i++) {
		struct template *t;
		if ((rc = load(argv[i], &t)) < 0)
			break;
		if (ctx.json) {
			struct json_object *o = json_object_new_object();
			json_object_object_add(o, "name", vi_json_str(t->name));
			json_object_object_add(o, "path", vi_json_str(t->path));
			json_object_object_add(o, "digest", vi_json_str(t->digest));
			json_object_array_add(arr, o);
		} else {
			char *path = vi_escape_controls(t->path);
			printf("%s: template '%s' is valid (sha256:%.12s)\n", path, t->name,
			       t->digest);
			free(path);
		}
		template_free(t);
	}
	if (ctx.json) {
		json_object_object_add(doc, "templates", arr);
		if (rc == 0)
			vi_json_print(doc);
		else
			json_object_put(doc);
	}
	vi_strlist_release(&sets);
	return rc;
}

static int template_show_cmd(int argc, char **argv)
{
	struct template *t;
	char *text = NULL, *image = NULL;
	int rc = load(argv[0], &t);
	(void)argc;

	vi_strlist_release(&sets);
	if (rc < 0)
		return rc;
	if ((rc = template_to_yaml(t, &text)) < 0)
		goto cleanup;
	image = template_built_image(&ctx.store, t->digest);
	if (ctx.json) {
		struct vi_yaml y;
		struct json_object *doc = vi_json_doc();
		char *dir = image ? vi_store_path(&ctx.store, "images/%s", image) : NULL;
		if ((rc = vi_yaml_load_string(&y, "template", text, strlen(text))) < 0) {
			json_object_put(doc);
			free(dir);
			goto cleanup;
		}
		json_object_object_add(doc, "template", yaml_json(&y, vi_yaml_root(&y)));
		json_object_object_add(doc, "path", vi_json_str(t->path));
		json_object_object_add(doc, "digest", vi_json_str(t->digest));
		json_object_object_add(doc, "built", json_object_new_boolean(image != NULL));
		json_object_object_add(doc, "image", vi_json_str(dir));
		json_object_object_add(doc, "image_digest", vi_json_str(image));
		vi_yaml_release(&y);
		vi_json_print(doc);
		free(dir);
	} else {
		char *path = vi_escape_controls(t->path);
		printf("# %s\n# sha256:%s (%s%.12s)\n", path, t->digest,
		       image ? "built as sha256:" : "not built", image ? image : "");
		free(path);
		/* Drop libyaml's "---" document start: the text reads as a file. */
		fputs(strncmp(text, "---\n", 4) ? text : text + 4, stdout);
	}
cleanup:
	free(image);
	free(text);
	template_free(t);
	return rc;
}

static int template_build_cmd(int argc, char **argv)
{
	struct template *t;
	struct vi_progress progress;
	struct template_build_opts opts = { .force = force, .progress = vi_progress_report,
					    .opaque = &progress };
	bool built = false;
	int rc = load(argv[0], &t);
	(void)argc;

	vi_strlist_release(&sets);
	if (rc < 0)
		return rc;
	vi_progress_start(&progress, 0, "building");
	rc = template_build(&ctx.store, t, &opts, &built);
	vi_progress_end(&progress);
	if (rc < 0)
		goto cleanup;
	double ms = vi_ms_since(progress.start);
	char *image = template_built_image(&ctx.store, t->digest);
	if (!image) {
		rc = vi_error(VI_ENOTFOUND, "template '%s' is not built", t->name);
	} else if (ctx.json) {
		struct json_object *doc = vi_json_doc();
		char *dir = vi_store_path(&ctx.store, "images/%s", image);
		json_object_object_add(doc, "template", vi_json_str(t->name));
		json_object_object_add(doc, "template_digest", vi_json_str(t->digest));
		json_object_object_add(doc, "digest", vi_json_str(image));
		json_object_object_add(doc, "image", vi_json_str(dir));
		json_object_object_add(doc, "built", json_object_new_boolean(built));
		json_object_object_add(doc, "milliseconds", vi_json_ms(ms));
		vi_json_print(doc);
		free(dir);
	} else if (built) {
		printf("built template '%s' as sha256:%.12s in %.1f s\n", t->name, image, ms / 1e3);
	} else {
		printf("template '%s' is up to date: sha256:%.12s\n", t->name, image);
	}
	free(image);
cleanup:
	template_free(t);
	return rc;
}

static int list_templates(void)
{
	struct template_strv names, paths;
	struct json_object *doc = NULL, *arr = NULL;
	struct vi_table tab;

	template_list_names(ctx.store.home, &names, &paths);
	if (ctx.json) {
		doc = vi_json_doc();
		arr = json_object_new_array();
	} else {
		vi_table_init(&tab, 4,
			      (const char *[]){ "NAME", "VERSION", "BUILT", "DESCRIPTION" });
	}
	for (size_t i = 0; i < names.n; i++) {
		struct template *t = NULL;
		char built[32] = "-";
		/* One broken template must not hide the others. */
		if (template_load(ctx.store.home, paths.v[i], NULL, 0, &t) < 0 ||
		    template_digest(t) < 0) {
			template_free(t);
			vi_warn("%s", vi_error_message());
			if (ctx.json) {
				struct json_object *o = json_object_new_object();
				json_object_object_add(o, "name", vi_json_str(names.v[i]));
				json_object_object_add(o, "path", vi_json_str(paths.v[i]));
				json_object_object_add(o, "error", vi_json_str(vi_error_message()));
				json_object_array_add(arr, o);
			} else {
				vi_table_add(&tab,
					     (const char *[]){ names.v[i], NULL, "error", NULL });
			}
			continue;
		}
		char *image = template_built_image(&ctx.store, t->digest);
		bool is = image != NULL;
		if (is)
			snprintf(built, sizeof(built), "%.12s", image);
		free(image);
		if (ctx.json) {
			struct json_object *o = json_object_new_object();
			json_object_object_add(o, "name", vi_json_str(t->name));
			json_object_object_add(o, "path", vi_json_str(t->path));
			json_object_object_add(o, "version", vi_json_str(t->version));
			json_object_object_add(o, "description", vi_json_str(t->description));
			json_object_object_add(o, "digest", vi_json_str(t->digest));
			json_object_object_add(o, "built", json_object_new_boolean(is));
			json_object_array_add(arr, o);
		} else {
			vi_table_add(&tab, (const char *[]){ t->name, t->version, built,
							     t->description });
		}
		template_free(t);
	}
	if (ctx.json) {
		json_object_object_add(doc, "templates", arr);
		vi_json_print(doc);
	} else {
		if (names.n)
			vi_table_print(&tab);
		vi_table_release(&tab);
	}
	template_strv_release(&names);
	template_strv_release(&paths);
	return 0;
}

static int list_images(void)
{
	struct template_image *imgs;
	size_t n;
	struct vi_table tab;
	struct json_object *doc, *arr;
	int rc = template_image_list(&ctx.store, &imgs, &n);

	if (rc < 0)
		return rc;
	if (ctx.json) {
		doc = vi_json_doc();
		arr = json_object_new_array();
		for (size_t i = 0; i < n; i++) {
			struct json_object *o = json_object_new_object();
			json_object_object_add(o, "digest", vi_json_str(imgs[i].digest));
			json_object_object_add(o, "name", vi_json_str(imgs[i].name));
			json_object_object_add(o, "version", vi_json_str(imgs[i].version));
			json_object_object_add(o, "base", vi_json_str(imgs[i].base_digest));
			json_object_object_add(o, "bytes",
					       json_object_new_int64((int64_t)imgs[i].bytes));
			json_object_object_add(o, "built", json_object_new_int64(imgs[i].built));
			json_object_object_add(o, "dir", vi_json_str(imgs[i].dir));
			json_object_array_add(arr, o);
		}
		json_object_object_add(doc, "images", arr);
		vi_json_print(doc);
	} else {
		vi_table_init(
			&tab, 6,
			(const char *[]){ "DIGEST", "NAME", "VERSION", "BASE", "SIZE", "BUILT" });
		for (size_t i = 0; i < n; i++) {
			char digest[16], base[16], size[32], when[32];
			struct tm tm;
			snprintf(digest, sizeof(digest), "%.12s", imgs[i].digest);
			snprintf(base, sizeof(base), "%.12s",
				 imgs[i].base_digest ? imgs[i].base_digest : "-");
			vi_format_human(imgs[i].bytes, size, sizeof(size));
			localtime_r(&imgs[i].built, &tm);
			strftime(when, sizeof(when), "%Y-%m-%d %H:%M", &tm);
			vi_table_add(&tab, (const char *[]){ digest, imgs[i].name, imgs[i].version,
							     base, size, when });
		}
		if (n)
			vi_table_print(&tab);
		vi_table_release(&tab);
	}
	template_image_list_free(imgs, n);
	return 0;
}

static int template_list_cmd(int argc, char **argv)
{
	(void)argc, (void)argv;
	return images ? list_images() : list_templates();
}

static int template_export_cmd(int argc, char **argv)
{
	static const char *const names[] = { "zstd", "gzip", "none" };
	struct template_image img;
	struct template_build_opts opts = { .cached_only = true };
	struct vi_progress progress;
	size_t c;
	int rc;
	(void)argc;

	for (c = 0; c < ARRAY_SIZE(names) && strcmp(compress, names[c]); c++)
		;
	if (c == ARRAY_SIZE(names)) {
		vi_strlist_release(&sets);
		return vi_error(VI_EUSAGE, "invalid --compress '%s': expected zstd, gzip or none",
				compress);
	}
	rc = template_image_get(&ctx.store, argv[0], sets.items, sets.n, &opts, &img);
	vi_strlist_release(&sets);
	if (rc < 0)
		return rc;
	vi_progress_start(&progress, 0, "writing %s", argv[1]);
	rc = template_export(&ctx.store, img.digest, argv[1], (enum template_compression)c,
			     vi_progress_report, &progress);
	vi_progress_end(&progress);
	if (rc == 0 && ctx.json) {
		struct json_object *doc = vi_json_doc();
		json_object_object_add(doc, "template", vi_json_str(img.name));
		json_object_object_add(doc, "digest", vi_json_str(img.digest));
		json_object_object_add(doc, "file", vi_json_str(argv[1]));
		vi_json_print(doc);
	} else if (rc == 0) {
		printf("exported '%s' (sha256:%.12s) to '%s'\n", img.name, img.digest, argv[1]);
	}
	template_image_release(&img);
	return rc;
}

static int template_import_cmd(int argc, char **argv)
{
	struct template_strv digests;
	struct json_object *doc = NULL, *arr = NULL;
	struct vi_progress progress;
	struct template_import_opts opts = { .expect = expect,
					     .force = force,
					     .progress = vi_progress_report,
					     .opaque = &progress };
	int rc;
	(void)argc;

	vi_progress_start(&progress, 0, "reading %s", argv[0]);
	rc = template_import(&ctx.store, argv[0], &opts, &digests);
	vi_progress_end(&progress);
	if (rc < 0)
		return rc;
	if (ctx.json) {
		doc = vi_json_doc();
		arr = json_object_new_array();
	}
	for (size_t i = 0; i < digests.n; i++) {
		struct template_image img;
		if ((rc = template_image_load(&ctx.store, digests.v[i], &img)) < 0)
			break;
		if (ctx.json) {
			struct json_object *o = json_object_new_object();
			json_object_object_add(o, "name", vi_json_str(img.name));
			json_object_object_add(o, "digest", vi_json_str(img.digest));
			json_object_array_add(arr, o);
		} else {
			printf("imported '%s' (sha256:%.12s)\n", img.name, img.digest);
		}
		template_image_release(&img);
	}
	if (ctx.json) {
		json_object_object_add(doc, "images", arr);
		if (rc == 0)
			vi_json_print(doc);
		else
			json_object_put(doc);
	}
	template_strv_release(&digests);
	return rc;
}

static int template_rm_cmd(int argc, char **argv)
{
	int n = template_image_remove(&ctx.store, argv[0]);
	(void)argc;

	if (n < 0)
		return n;
	if (ctx.json) {
		struct json_object *doc = vi_json_doc();
		json_object_object_add(doc, "removed", json_object_new_int(n));
		vi_json_print(doc);
	} else {
		printf("removed %d image%s of '%s'\n", n, n == 1 ? "" : "s", argv[0]);
	}
	return 0;
}
