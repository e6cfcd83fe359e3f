/* Golden images in the store: manifests, listing and lookup by digest or
 * name, the build cache and lock, removal with its dependency checks, and the
 * one call that turns a template reference into a ready image. Building,
 * export and import are done by vi-tools.so (tools.h), loaded only for them. */
#include "error.h"
#include "image/image.h"
#include "log.h"
#include "template-internal.h"
#include "tools.h"
#include "util.h"
#include "yaml-doc.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

/* Schema 1 (earlier versions) named the image by its template digest, as
 * the directory was; schema 2 records the template digest it was built from
 * and leaves the image's name to its content (template_content_digest);
 * schema 3 adds the login user, cloud_init, ready ssh, network and forward. */
#define MANIFEST_SCHEMA 3

static bool is_digest(const char *s)
{
	return strlen(s) == 64 && !s[strspn(s, "0123456789abcdef")];
}

void template_image_release(struct template_image *img)
{
	free(img->digest);
	free(img->template_digest);
	free(img->dir);
	free(img->name);
	free(img->version);
	free(img->description);
	free(img->base_name);
	free(img->base_digest);
	free(img->hv);
	free(img->kernel);
	free(img->initrd);
	free(img->cmdline);
	for (size_t i = 0; i < img->ndisks; i++)
		free(img->disks[i].path);
	free(img->disks);
	free(img->root);
	free(img->ready_marker);
	template_strv_release(&img->network);
	template_strv_release(&img->forwards);
	free(img->user);
	template_strv_release(&img->params);
	memset(img, 0, sizeof(*img));
}

/* A file of the image directory, recorded by its name only. */
static const char *leaf(const char *path)
{
	const char *slash = path ? strrchr(path, '/') : NULL;
	return slash ? slash + 1 : path;
}

static void manifest_list(struct vi_yaml_out *o, const char *key, const struct template_strv *l)
{
	if (!l->n)
		return;
	vi_yaml_out_scalar(o, key);
	vi_yaml_out_seq_start(o);
	for (size_t i = 0; i < l->n; i++)
		vi_yaml_out_scalar(o, l->v[i]);
	vi_yaml_out_end(o);
}

int template_manifest_save(const char *dir, const struct template_image *img)
{
	struct vi_yaml_out o;
	char built[32], *text, *path;
	size_t len;
	struct tm tm;
	int rc;

	gmtime_r(&img->built, &tm);
	strftime(built, sizeof(built), "%Y-%m-%dT%H:%M:%SZ", &tm);
	vi_yaml_out_init(&o);
	vi_yaml_out_map_start(&o);
	vi_yaml_out_uint(&o, "schema", MANIFEST_SCHEMA);
	vi_yaml_out_str(&o, "template_digest", img->template_digest);
	vi_yaml_out_str(&o, "name", img->name);
	vi_yaml_out_str(&o, "version", img->version);
	vi_yaml_out_str(&o, "description", img->description);
	vi_yaml_out_str(&o, "built", built);
	vi_yaml_out_str(&o, "vi_version", VI_VERSION);
	vi_yaml_out_uint(&o, "recipe", TEMPLATE_RECIPE);
	if (img->base_digest) {
		vi_yaml_out_scalar(&o, "base");
		vi_yaml_out_map_start(&o);
		vi_yaml_out_str(&o, "name", img->base_name);
		vi_yaml_out_str(&o, "digest", img->base_digest);
		vi_yaml_out_end(&o);
	}
	vi_yaml_out_str(&o, "hv", img->hv);
	vi_yaml_out_uint(&o, "cpus", img->cpus);
	if (img->max_cpus)
		vi_yaml_out_uint(&o, "max_cpus", img->max_cpus);
	vi_yaml_out_size(&o, "memory", img->memory);
	if (img->max_memory)
		vi_yaml_out_size(&o, "max_memory", img->max_memory);
	vi_yaml_out_str(&o, "kernel", leaf(img->kernel));
	vi_yaml_out_str(&o, "initrd", leaf(img->initrd));
	vi_yaml_out_str(&o, "cmdline", img->cmdline);
	vi_yaml_out_str(&o, "root", img->root);
	vi_yaml_out_scalar(&o, "disks");
	vi_yaml_out_seq_start(&o);
	for (size_t i = 0; i < img->ndisks; i++) {
		vi_yaml_out_map_start(&o);
		vi_yaml_out_str(&o, "file", leaf(img->disks[i].path));
		vi_yaml_out_size(&o, "size", img->disks[i].size);
		vi_yaml_out_end(&o);
	}
	vi_yaml_out_end(&o);
	if (img->ready_marker || img->ready_ssh) {
		vi_yaml_out_scalar(&o, "ready");
		vi_yaml_out_map_start(&o);
		vi_yaml_out_str(&o, "marker", img->ready_marker);
		if (img->ready_ssh)
			vi_yaml_out_bool(&o, "ssh", true);
		vi_yaml_out_uint(&o, "timeout", img->ready_timeout);
		vi_yaml_out_end(&o);
	}
	vi_yaml_out_str(&o, "user", img->user);
	if (img->cloud_init)
		vi_yaml_out_bool(&o, "cloud_init", true);
	manifest_list(&o, "network", &img->network);
	manifest_list(&o, "forward", &img->forwards);
	if (img->params.n) {
		vi_yaml_out_scalar(&o, "parameters");
		vi_yaml_out_map_start(&o);
		for (size_t i = 0; i < img->params.n; i++) {
			char *kv = xstrdup(img->params.v[i]), *eq = strchr(kv, '=');
			*eq = '\0';
			vi_yaml_out_str(&o, kv, eq + 1);
			free(kv);
		}
		vi_yaml_out_end(&o);
	}
	vi_yaml_out_end(&o);
	if ((rc = vi_yaml_out_finish(&o, &text, &len)) < 0)
		return rc;
	path = xasprintf("%s/manifest.yaml", dir);
	rc = vi_write_file_atomic(path, text, len, 0644);
	if (rc == 0 && chmod(path, 0644) < 0)
		rc = vi_error_errno(VI_EFAIL, errno, "cannot change the mode of '%s'", path);
	free(path);
	free(text);
	return rc;
}

/* A file name recorded in a manifest: a plain name in the image directory. */
static int manifest_file(struct vi_yaml *y, yaml_node_t *map, const char *key, const char *dir,
			 char **out)
{
	const char *s = NULL;
	int rc = vi_yaml_get_str(y, map, key, false, &s);

	if (rc)
		return rc < 0 ? rc : 0;
	if (!*s || strchr(s, '/') || !strcmp(s, "..") || !strcmp(s, "."))
		return vi_yaml_error(y, vi_yaml_get(y, map, key), VI_EUSAGE,
				     "'%s' must name a file of the image directory", key);
	*out = xasprintf("%s/%s", dir, s);
	return 0;
}

/* Text a manifest carries to the terminal and the hypervisor has no control
 * characters (a description may have lines and tabs). */
static bool has_control(const char *s, bool lines)
{
	for (const unsigned char *c = (const unsigned char *)s; s && *c; c++)
		if ((*c < 0x20 && !(lines && (*c == '\n' || *c == '\t'))) || *c == 0x7f)
			return true;
	return false;
}

static int manifest_text(struct vi_yaml *y, yaml_node_t *map, const char *key, const char *s,
			 bool lines)
{
	if (has_control(s, lines))
		return vi_yaml_error(y, vi_yaml_get(y, map, key), VI_EUSAGE,
				     "'%s' has a control character", key);
	return 0;
}

/* A name the manifest gives: checked as a template's or a backend's is. */
static int manifest_name(struct vi_yaml *y, yaml_node_t *map, const char *key, const char *s,
			 const char *what)
{
	if (s && vi_check_name(s, what) < 0)
		return vi_yaml_error(y, vi_yaml_get(y, map, key), VI_EUSAGE, "%s",
				     vi_error_message());
	return 0;
}

/* A list of one-line scalars. */
static int manifest_strv(struct vi_yaml *y, yaml_node_t *map, const char *key,
			 struct template_strv *l)
{
	yaml_node_t *v = vi_yaml_get(y, map, key), *item;

	if (!v)
		return 0;
	if (v->type != YAML_SEQUENCE_NODE)
		return vi_yaml_error(y, v, VI_EUSAGE, "'%s' must be a list", key);
	vi_yaml_seq_foreach(y, v, item)
	{
		if (!vi_yaml_scalar(item) || has_control(vi_yaml_scalar(item), false))
			return vi_yaml_error(y, item, VI_EUSAGE,
					     "items of '%s' must be one-line scalars", key);
		template_strv_push(l, vi_yaml_scalar(item));
	}
	return 0;
}

static int manifest_parse(struct vi_yaml *y, const char *dir, struct template_image *img)
{
	/* Schema 1 has "digest" where schema 2 has "template_digest". */
	static const char *const keys[] = {
		"template_digest", "schema",   "name",	  "version", "description", "built",
		"vi_version",	   "recipe",   "base",	  "hv",	     "cpus",	    "max_cpus",
		"memory",	   "max_memory", "kernel", "initrd", "cmdline",	    "root",
		"disks",	   "ready",    "parameters", "user", "cloud_init", "network",
		"forward",
	};
	static const char *const disk_keys[] = { "file", "size" };
	const char *known[ARRAY_SIZE(keys)];
	yaml_node_t *root = vi_yaml_root(y), *v, *item, *k;
	const char *built = NULL;
	uint64_t schema, u;
	int rc;

	if ((rc = vi_yaml_expect_map(y, root, "a manifest")) < 0 ||
	    (rc = vi_yaml_get_uint(y, root, "schema", true, 1, MANIFEST_SCHEMA, &schema)) < 0)
		return rc;
	img->schema = (unsigned)schema;
	memcpy(known, keys, sizeof(keys));
	known[0] = schema == 1 ? "digest" : "template_digest";
	if ((rc = vi_yaml_check_keys(y, root, known, ARRAY_SIZE(known))) < 0 ||
	    (rc = vi_yaml_dup_str(y, root, known[0], true, &img->template_digest)) < 0)
		return rc;
	if (!is_digest(img->template_digest))
		return vi_yaml_error(y, vi_yaml_get(y, root, known[0]), VI_EUSAGE,
				     "invalid digest '%s'", img->template_digest);
	/* An image is named by its directory: the digest of its content, or
	 * for images stored by an earlier version their template digest. */
	const char *slash = strrchr(dir, '/');
	img->digest = xstrdup(slash ? slash + 1 : dir);
	if ((rc = vi_yaml_dup_str(y, root, "name", true, &img->name)) < 0 ||
	    (rc = vi_yaml_dup_str(y, root, "version", false, &img->version)) < 0 ||
	    (rc = vi_yaml_dup_str(y, root, "description", false, &img->description)) < 0 ||
	    (rc = vi_yaml_dup_str(y, root, "hv", false, &img->hv)) < 0 ||
	    (rc = vi_yaml_dup_str(y, root, "cmdline", false, &img->cmdline)) < 0 ||
	    (rc = vi_yaml_dup_str(y, root, "root", false, &img->root)) < 0 ||
	    (rc = vi_yaml_get_str(y, root, "built", false, &built)) < 0 ||
	    (rc = manifest_file(y, root, "kernel", dir, &img->kernel)) < 0 ||
	    (rc = manifest_file(y, root, "initrd", dir, &img->initrd)) < 0 ||
	    (rc = manifest_name(y, root, "name", img->name, "template")) < 0 ||
	    (rc = manifest_name(y, root, "hv", img->hv, "backend")) < 0 ||
	    (rc = manifest_text(y, root, "version", img->version, false)) < 0 ||
	    (rc = manifest_text(y, root, "description", img->description, true)) < 0 ||
	    (rc = manifest_text(y, root, "cmdline", img->cmdline, false)) < 0 ||
	    (rc = manifest_text(y, root, "root", img->root, false)) < 0)
		return rc;
	if (built) {
		struct tm tm = { 0 };
		const char *end = strptime(built, "%Y-%m-%dT%H:%M:%SZ", &tm);
		if (!end || *end)
			return vi_yaml_error(y, vi_yaml_get(y, root, "built"), VI_EUSAGE,
					     "invalid time '%s'", built);
		img->built = timegm(&tm);
	}
	if ((rc = vi_yaml_get_uint(y, root, "cpus", true, 1, 4096, &u)) < 0)
		return rc;
	img->cpus = (unsigned)u;
	u = 0;
	if ((rc = vi_yaml_get_uint(y, root, "max_cpus", false, 1, 4096, &u)) < 0)
		return rc;
	img->max_cpus = (unsigned)u;
	if ((rc = vi_yaml_get_size(y, root, "memory", true, VI_VM_MIN_MEMORY, VI_VM_MAX_MEMORY,
				   &img->memory)) < 0 ||
	    (rc = vi_yaml_get_size(y, root, "max_memory", false, VI_VM_MIN_MEMORY,
				   VI_VM_MAX_MEMORY, &img->max_memory)) < 0)
		return rc;
	if ((v = vi_yaml_get(y, root, "base"))) {
		static const char *const base_keys[] = { "name", "digest" };
		if ((rc = vi_yaml_expect_map(y, v, "'base'")) < 0 ||
		    (rc = vi_yaml_check_keys(y, v, base_keys, 2)) < 0 ||
		    (rc = vi_yaml_dup_str(y, v, "name", false, &img->base_name)) < 0 ||
		    (rc = vi_yaml_dup_str(y, v, "digest", true, &img->base_digest)) < 0 ||
		    (rc = manifest_name(y, v, "name", img->base_name, "template")) < 0)
			return rc;
		if (!is_digest(img->base_digest))
			return vi_yaml_error(y, v, VI_EUSAGE, "invalid base digest '%s'",
					     img->base_digest);
	}
	v = vi_yaml_get(y, root, "disks");
	if (!v || v->type != YAML_SEQUENCE_NODE)
		return vi_yaml_error(y, v ? v : root, VI_EUSAGE, "'disks' must be a list");
	vi_yaml_seq_foreach(y, v, item)
	{
		struct template_image_disk *d;
		if ((rc = vi_yaml_expect_map(y, item, "a disk")) < 0 ||
		    (rc = vi_yaml_check_keys(y, item, disk_keys, 2)) < 0)
			return rc;
		img->disks = xrealloc(img->disks, (img->ndisks + 1) * sizeof(*img->disks));
		d = &img->disks[img->ndisks++];
		memset(d, 0, sizeof(*d));
		if ((rc = vi_yaml_get_size(y, item, "size", true, 1, TEMPLATE_MAX_DISK_SIZE, &d->size)) < 0 ||
		    (rc = manifest_file(y, item, "file", dir, &d->path)) < 0)
			return rc;
		if (!d->path)
			return vi_yaml_error(y, item, VI_EUSAGE, "missing required key 'file'");
	}
	if ((v = vi_yaml_get(y, root, "ready"))) {
		static const char *const ready_keys[] = { "marker", "ssh", "timeout" };
		if ((rc = vi_yaml_expect_map(y, v, "'ready'")) < 0 ||
		    (rc = vi_yaml_check_keys(y, v, ready_keys, 3)) < 0 ||
		    (rc = vi_yaml_get_bool(y, v, "ssh", false, &img->ready_ssh)) < 0 ||
		    (rc = vi_yaml_dup_str(y, v, "marker", !img->ready_ssh, &img->ready_marker)) < 0 ||
		    (rc = manifest_text(y, v, "marker", img->ready_marker, false)) < 0 ||
		    (rc = vi_yaml_get_uint(y, v, "timeout", true, 1, 86400, &u)) < 0)
			return rc;
		img->ready_timeout = (unsigned)u;
	}
	if ((rc = vi_yaml_dup_str(y, root, "user", false, &img->user)) < 0 ||
	    (rc = manifest_name(y, root, "user", img->user, "user")) < 0 ||
	    (rc = vi_yaml_get_bool(y, root, "cloud_init", false, &img->cloud_init)) < 0 ||
	    (rc = manifest_strv(y, root, "network", &img->network)) < 0 ||
	    (rc = manifest_strv(y, root, "forward", &img->forwards)) < 0)
		return rc;
	/* Images of an earlier version log in as root, if at all. */
	if (!img->user)
		img->user = xstrdup("root");
	if ((v = vi_yaml_get(y, root, "parameters"))) {
		yaml_node_t *val;
		if ((rc = vi_yaml_expect_map(y, v, "'parameters'")) < 0)
			return rc;
		vi_yaml_map_foreach(y, v, k, val)
		{
			if (!vi_yaml_scalar(k) || !vi_yaml_scalar(val))
				return vi_yaml_error(y, k, VI_EUSAGE, "parameters must be scalars");
			if (has_control(vi_yaml_scalar(k), false) ||
			    has_control(vi_yaml_scalar(val), true))
				return vi_yaml_error(y, k, VI_EUSAGE,
						     "a parameter has a control character");
			char *kv = xasprintf("%s=%s", vi_yaml_scalar(k), vi_yaml_scalar(val));
			template_strv_push(&img->params, kv);
			free(kv);
		}
	}
	return 0;
}

/* Space the image's own files take. */
static uint64_t dir_bytes(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	uint64_t sum = 0;

	while (d && (e = readdir(d))) {
		struct stat st;
		char *p = xasprintf("%s/%s", dir, e->d_name);
		if (e->d_name[0] != '.' && stat(p, &st) == 0 && S_ISREG(st.st_mode))
			sum += (uint64_t)st.st_blocks * 512;
		free(p);
	}
	if (d)
		closedir(d);
	return sum;
}

int template_manifest_load(const char *path, const char *dir, struct template_image *img)
{
	struct vi_yaml y;
	int rc;

	memset(img, 0, sizeof(*img));
	if ((rc = vi_yaml_load_file(&y, path)) < 0)
		return rc;
	rc = manifest_parse(&y, dir, img);
	vi_yaml_release(&y);
	if (rc < 0) {
		template_image_release(img);
		return rc;
	}
	img->dir = xstrdup(dir);
	img->bytes = dir_bytes(dir);
	return 0;
}

int template_image_load(const struct vi_store *s, const char *digest, struct template_image *img)
{
	char *dir = vi_store_path(s, "images/%s", digest);
	char *path = xasprintf("%s/manifest.yaml", dir);
	int rc;

	memset(img, 0, sizeof(*img));
	if (!is_digest(digest))
		rc = vi_error(VI_EUSAGE, "invalid image digest '%s'", digest);
	else if (!vi_file_exists(path))
		rc = vi_error(VI_ENOTFOUND, "no image sha256:%s in the store", digest);
	else
		rc = template_manifest_load(path, dir, img);
	free(path);
	free(dir);
	return rc;
}

static int cmp_image(const void *a, const void *b)
{
	const struct template_image *x = a, *y = b;
	int c = strcmp(x->name, y->name);

	if (c)
		return c;
	return x->built < y->built ? -1 : x->built > y->built;
}

/* The digests of the image directories in the store. */
static int list_digests(const struct vi_store *s, struct template_strv *out)
{
	char *dir = vi_store_path(s, "images");
	DIR *d = opendir(dir);
	struct dirent *e;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	if (!d)
		rc = vi_error_errno(VI_EFAIL, errno, "cannot read '%s'", dir);
	while (d && (e = readdir(d))) {
		char *m = xasprintf("%s/%s/manifest.yaml", dir, e->d_name);
		if (is_digest(e->d_name) && vi_file_exists(m))
			template_strv_push(out, e->d_name);
		free(m);
	}
	if (d)
		closedir(d);
	free(dir);
	return rc;
}

int template_image_list(const struct vi_store *s, struct template_image **imgs, size_t *n)
{
	struct template_strv digests;
	struct template_image *v = NULL;
	size_t count = 0;
	int rc = list_digests(s, &digests);

	for (size_t i = 0; i < digests.n && rc == 0; i++) {
		v = xrealloc(v, (count + 1) * sizeof(*v));
		if (template_image_load(s, digests.v[i], &v[count]) < 0)
			vi_warn("%s", vi_error_message());
		else
			count++;
	}
	template_strv_release(&digests);
	if (rc < 0) {
		free(v);
		return rc;
	}
	if (count)
		qsort(v, count, sizeof(*v), cmp_image);
	*imgs = v;
	*n = count;
	return 0;
}

void template_image_list_free(struct template_image *imgs, size_t n)
{
	for (size_t i = 0; i < n; i++)
		template_image_release(&imgs[i]);
	free(imgs);
}

int template_image_find(const struct vi_store *s, const char *ref, char **digest)
{
	struct template_strv digests;
	const char *hex = ref + 7;
	size_t len = strlen(hex), found = 0;
	int rc;

	if (strncmp(ref, "sha256:", 7) || len < 8 || len > 64 ||
	    hex[strspn(hex, "0123456789abcdef")])
		return vi_error(
			VI_EUSAGE,
			"invalid image reference '%s': expected sha256: and 8 to 64 hex digits",
			ref);
	if ((rc = list_digests(s, &digests)) < 0)
		return rc;
	for (size_t i = 0; i < digests.n; i++)
		if (!strncmp(digests.v[i], hex, len)) {
			if (!found++)
				*digest = xstrdup(digests.v[i]);
		}
	template_strv_release(&digests);
	if (found == 1)
		return 0;
	if (found > 1) {
		free(*digest);
		return vi_error(VI_EUSAGE, "image reference '%s' is ambiguous: give more digits",
				ref);
	}
	return vi_error(VI_ENOTFOUND, "no image %s in the store", ref);
}

int template_stage_dir(const struct vi_store *s, const char *prefix, char **dir)
{
	char *d = vi_store_path(s, "images/%sXXXXXX", prefix);

	if (!mkdtemp(d) || chmod(d, 0711) < 0) {
		int rc = vi_error_errno(VI_EFAIL, errno, "cannot create '%s'", d);
		free(d);
		return rc;
	}
	*dir = d;
	return 0;
}

/* The directory of libguestfs's sockets a killed build noted in its
 * staging directory (lib/tools/template-build.c) goes with it: only a
 * /tmp/libguestfsXXXXXX, never what else a file there might name. */
static void forget_sockdir(const char *stage)
{
	char *note = xasprintf("%s/.tmp/sockdir", stage), *path = NULL;
	size_t len;

	if (vi_read_file(note, &path, &len) == 0 && !strncmp(path, "/tmp/libguestfs", 15) &&
	    !strchr(path, '\n') && !strstr(path + 15, "/"))
		vi_rm_rf(path);
	vi_error_clear();
	free(path);
	free(note);
}

/* Removes what interrupted work left in images/: every entry stale(name,
 * arg) picks. */
static void clear_staged(const struct vi_store *s, bool (*stale)(const char *, const void *),
			 const void *arg)
{
	char *dir = vi_store_path(s, "images");
	DIR *d = opendir(dir);
	struct dirent *e;

	while (d && (e = readdir(d))) {
		if (!stale(e->d_name, arg))
			continue;
		char *p = xasprintf("%s/%s", dir, e->d_name);
		forget_sockdir(p);
		vi_rm_rf(p);
		free(p);
	}
	if (d)
		closedir(d);
	free(dir);
	vi_error_clear();
}

static bool has_prefix(const char *name, const void *prefix)
{
	return !strncmp(name, prefix, strlen(prefix));
}

/* A staging directory whose process is gone. */
static bool dead_stage(const char *name, const void *arg)
{
	int pid = 0, n = 0;
	(void)arg;

	if (sscanf(name, ".import-%d-%n", &pid, &n) < 1 &&
	    sscanf(name, ".new-%*64[0-9a-f]-%d-%n", &pid, &n) < 1)
		return false;
	return n > 0 && vi_pid_gone(pid);
}

void template_clear_dead(const struct vi_store *s)
{
	clear_staged(s, dead_stage, NULL);
}

int template_lock(const struct vi_store *s, const char *digest)
{
	char *dir = vi_store_path(s, "images/.locks"), *path = xasprintf("%s/%s", dir, digest);
	int fd = -1, rc;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot create '%s'", dir);
		goto fail;
	}
	if ((fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot open '%s'", path);
		goto fail;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		vi_info("waiting for another command working on image sha256:%.12s", digest);
		while (flock(fd, LOCK_EX) < 0) {
			if (errno != EINTR) {
				rc = vi_error_errno(VI_EFAIL, errno,
						    "cannot lock image sha256:%.12s", digest);
				goto fail;
			}
		}
	}
	/* Holding the lock, anything staged for this image is a leftover of
	 * an interrupted run. */
	char *prefix = xasprintf(".new-%s-", digest);
	clear_staged(s, has_prefix, prefix);
	free(prefix);
	free(dir);
	free(path);
	return fd;
fail:
	if (fd >= 0)
		close(fd);
	free(dir);
	free(path);
	return rc;
}

void template_image_files(const struct template_image *img, struct template_strv *files)
{
	char *manifest = xasprintf("%s/manifest.yaml", img->dir);

	memset(files, 0, sizeof(*files));
	template_strv_push(files, manifest);
	free(manifest);
	for (size_t i = 0; i < img->ndisks; i++)
		template_strv_push(files, img->disks[i].path);
	if (img->kernel)
		template_strv_push(files, img->kernel);
	if (img->initrd)
		template_strv_push(files, img->initrd);
}

static int cmp_sum_line(const void *a, const void *b)
{
	/* "HEX  FILE": by the file name */
	return strcmp(*(char *const *)a + 66, *(char *const *)b + 66);
}

void template_sums_digest(struct template_strv *lines, char hex[SHA256_HEX_SIZE])
{
	struct sha256 h;

	qsort(lines->v, lines->n, sizeof(*lines->v), cmp_sum_line);
	sha256_init(&h);
	for (size_t i = 0; i < lines->n; i++) {
		sha256_update(&h, lines->v[i], strlen(lines->v[i]));
		sha256_update(&h, "\n", 1);
	}
	sha256_final_hex(&h, hex);
}

int template_content_digest(const struct template_image *img, char hex[SHA256_HEX_SIZE])
{
	struct template_strv files, lines = { 0 };
	int rc = 0;

	template_image_files(img, &files);
	for (size_t i = 0; i < files.n && rc == 0; i++) {
		char file_hex[SHA256_HEX_SIZE];
		if ((rc = sha256_file(files.v[i], file_hex)) == 0) {
			char *line = xasprintf("%s  %s", file_hex, leaf(files.v[i]));
			template_strv_push(&lines, line);
			free(line);
		}
	}
	if (rc == 0)
		template_sums_digest(&lines, hex);
	template_strv_release(&files);
	template_strv_release(&lines);
	return rc;
}

int template_land(const struct vi_store *s, const char *stage, const char *digest)
{
	char *to = vi_store_path(s, "images/%s", digest);
	int lock = template_lock(s, digest), rc = 0;

	if (lock < 0)
		rc = lock;
	else if (vi_file_exists(to))
		vi_rm_rf(stage);
	/* Guests read it; none may write it. */
	else if ((rc = vi_share_ro(stage)) < 0)
		;
	else if (rename(stage, to) < 0)
		rc = vi_error_errno(VI_EFAIL, errno, "cannot move an image into '%s'", to);
	vi_store_unlock(lock);
	free(to);
	return rc;
}

int template_index_set(const struct vi_store *s, const char *index, const char *key,
		       const char *digest)
{
	char *dir = vi_store_path(s, "images/%s", index), *path = xasprintf("%s/%s", dir, key);
	char *line = xasprintf("%s\n", digest);
	int rc = 0;

	if (mkdir(dir, 0700) < 0 && errno != EEXIST)
		rc = vi_error_errno(VI_EFAIL, errno, "cannot create '%s'", dir);
	if (rc == 0)
		rc = vi_write_file_atomic(path, line, strlen(line), 0600);
	free(dir);
	free(path);
	free(line);
	return rc;
}

char *template_index_get(const struct vi_store *s, const char *index, const char *key)
{
	char *path, *text = NULL, *digest = NULL;
	size_t len;

	if (!*key || key[0] == '.' || strchr(key, '/'))
		return NULL;
	path = vi_store_path(s, "images/%s/%s", index, key);
	if (vi_file_exists(path) && vi_read_file(path, &text, &len) == 0 && len == 65 &&
	    text[64] == '\n') {
		text[64] = '\0';
		char *manifest = vi_store_path(s, "images/%s/manifest.yaml", text);
		if (is_digest(text) && vi_file_exists(manifest))
			digest = xstrdup(text);
		free(manifest);
	}
	vi_error_clear();
	free(text);
	free(path);
	return digest;
}

/* Drops the index entries that name the image digest. */
static void index_drop(const struct vi_store *s, const char *digest)
{
	static const char *const indexes[] = { "recipes", "names" };

	for (size_t i = 0; i < ARRAY_SIZE(indexes); i++) {
		char *dir = vi_store_path(s, "images/%s", indexes[i]);
		DIR *d = opendir(dir);
		struct dirent *e;
		while (d && (e = readdir(d))) {
			char *path = xasprintf("%s/%s", dir, e->d_name), *text = NULL;
			size_t len;
			if (e->d_name[0] != '.' && vi_read_file(path, &text, &len) == 0 &&
			    !strncmp(text, digest, 64))
				unlink(path);
			free(text);
			free(path);
		}
		if (d)
			closedir(d);
		free(dir);
	}
	vi_error_clear();
}

char *template_built_image(const struct vi_store *s, const char *template_digest)
{
	return template_index_get(s, "recipes", template_digest);
}

/* Does any layer of the disk at path (through its backing chain) live in
 * image_dir? A disk that cannot be opened is reported, not assumed free. */
static int disk_uses(const char *path, const char *image_dir, bool *uses)
{
	struct image *img;
	char real[PATH_MAX];
	size_t n = strlen(image_dir);
	int rc = image_open(path, IMAGE_PROBE, IMAGE_OPEN_SHARED, &img);

	*uses = false;
	if (rc < 0)
		return rc;
	for (struct image *i = img; i && !*uses; i = image_backing(i))
		if (realpath(image_path(i), real) && !strncmp(real, image_dir, n) && real[n] == '/')
			*uses = true;
	image_close(img);
	return 0;
}

/* The first VM that reads from image_dir (its disks' chains, kernel, initrd). */
static int vm_using(const struct vi_store *s, const char *image_dir, char **user)
{
	char **names;
	size_t n;
	int rc = vi_store_list_vms(s, &names, &n);

	*user = NULL;
	for (size_t i = 0; i < n && rc == 0 && !*user; i++) {
		struct vi_vm vm;
		char *vm_dir = vi_store_path(s, "vms/%s", names[i]);
		if ((rc = vi_store_load_vm(s, names[i], &vm)) < 0) {
			free(vm_dir);
			break;
		}
		const char *files[] = { vm.kernel, vm.initrd };
		size_t len = strlen(image_dir);
		for (size_t f = 0; f < ARRAY_SIZE(files); f++)
			if (files[f] && !strncmp(files[f], image_dir, len) && files[f][len] == '/')
				*user = xstrdup(names[i]);
		for (size_t k = 0; k < vm.ndisks && rc == 0 && !*user; k++) {
			char *p = vm.disks[k].path[0] == '/'
					  ? xstrdup(vm.disks[k].path)
					  : xasprintf("%s/%s", vm_dir, vm.disks[k].path);
			bool uses;
			if ((rc = disk_uses(p, image_dir, &uses)) < 0)
				vi_error_wrap("VM '%s'", names[i]);
			else if (uses)
				*user = xstrdup(names[i]);
			free(p);
		}
		vi_vm_release(&vm);
		free(vm_dir);
	}
	vi_store_names_free(names, n);
	return rc;
}

/* Moves the image aside (its name goes at once), then deletes it; under
 * its lock, so no build of it runs meanwhile. */
static int remove_image(const struct vi_store *s, const char *digest)
{
	char *dir = vi_store_path(s, "images/%s", digest);
	char *trash = vi_store_path(s, "images/.new-%s-removed", digest);
	int lock = template_lock(s, digest), rc;

	if (lock < 0)
		rc = lock;
	else if (rename(dir, trash) < 0)
		rc = vi_error_errno(VI_EFAIL, errno, "cannot remove '%s'", dir);
	else
		rc = vi_rm_rf(trash);
	if (rc == 0)
		index_drop(s, digest);
	vi_store_unlock(lock);
	free(dir);
	free(trash);
	return rc;
}

int template_image_remove(struct vi_store *s, const char *ref)
{
	struct template_image *imgs = NULL;
	size_t n = 0, removed = 0;
	struct template_strv targets = { 0 };
	int rc;

	if (!strncmp(ref, "sha256:", 7)) {
		char *digest;
		if ((rc = template_image_find(s, ref, &digest)) < 0)
			goto cleanup;
		template_strv_push(&targets, digest);
		free(digest);
	}
	if ((rc = template_image_list(s, &imgs, &n)) < 0)
		goto cleanup;
	if (!targets.n) {
		for (size_t i = 0; i < n; i++)
			if (!strcmp(imgs[i].name, ref))
				template_strv_push(&targets, imgs[i].digest);
		if (!targets.n) {
			rc = vi_error(VI_ENOTFOUND, "no image of template '%s' in the store", ref);
			goto cleanup;
		}
	}
	for (size_t i = 0; i < n; i++) {
		const struct template_image *img = &imgs[i];
		if (img->base_digest && template_strv_has(&targets, img->base_digest) &&
		    !template_strv_has(&targets, img->digest)) {
			rc = vi_error(VI_ESTATE,
				      "image sha256:%.12s is the base of '%s' (sha256:%.12s)",
				      img->base_digest, img->name, img->digest);
			goto cleanup;
		}
	}
	for (size_t i = 0; i < targets.n; i++) {
		char *dir = vi_store_path(s, "images/%s", targets.v[i]), *user = NULL;
		char real[PATH_MAX];
		/* Disks name their backing files by resolved paths: compare those. */
		rc = vm_using(s, realpath(dir, real) ? real : dir, &user);
		free(dir);
		if (rc == 0 && user)
			rc = vi_error(VI_ESTATE, "image sha256:%.12s is in use by VM '%s'",
				      targets.v[i], user);
		free(user);
		if (rc < 0)
			goto cleanup;
	}
	/* Layered images go before their bases: an interrupted removal never
	 * leaves an overlay without its backing file. */
	for (size_t pass = 0; pass < targets.n && removed < targets.n; pass++) {
		for (size_t i = 0; i < targets.n; i++) {
			char *dir = vi_store_path(s, "images/%s", targets.v[i]);
			bool is_base = false;
			if (!vi_file_exists(dir)) {
				free(dir);
				continue;
			}
			for (size_t k = 0; k < n && !is_base; k++) {
				if (!imgs[k].base_digest ||
				    strcmp(imgs[k].base_digest, targets.v[i]))
					continue;
				char *child = vi_store_path(s, "images/%s", imgs[k].digest);
				is_base = vi_file_exists(child);
				free(child);
			}
			if (!is_base) {
				rc = remove_image(s, targets.v[i]);
				removed++;
			}
			free(dir);
			if (rc < 0)
				goto cleanup;
		}
	}
	rc = (int)removed;
cleanup:
	template_image_list_free(imgs, n);
	template_strv_release(&targets);
	return rc;
}

/* Builds t's chain, bases first, each under the lock of its template
 * digest. A cache hit leaves the image tools unloaded. */
static int build_chain(struct vi_store *s, struct template *t,
		       const struct template_build_opts *opts, bool *built)
{
	const struct vi_tools *tools;
	char digest[SHA256_HEX_SIZE], *image;
	int lock, rc = 0;

	if (t->base && (rc = build_chain(s, t->base, opts, built)) < 0)
		return rc;
	if ((image = template_built_image(s, t->digest))) {
		free(image);
		return 0;
	}
	if (opts && opts->cached_only)
		return vi_error(VI_ENOTFOUND,
				"template '%s' is not built (see 'vi template build')", t->name);
	if ((rc = vi_tools_load(&tools)) < 0)
		return rc;
	if ((lock = template_lock(s, t->digest)) < 0)
		return lock;
	/* Another command may have built it while we waited for the lock. */
	if (!(image = template_built_image(s, t->digest))) {
		vi_debug("building template '%s' (sha256:%s)", t->name, t->digest);
		if ((rc = tools->build_image(s, t, opts, digest)) < 0)
			vi_error_wrap("cannot build template '%s'", t->name);
		else if ((rc = template_index_set(s, "recipes", t->digest, digest)) == 0 &&
			 (rc = template_index_set(s, "names", t->name, digest)) == 0)
			*built = true;
	}
	free(image);
	vi_store_unlock(lock);
	return rc;
}

int template_build(struct vi_store *s, struct template *t, const struct template_build_opts *opts,
		   bool *built)
{
	char *image, *ref;
	int rc;

	*built = false;
	if ((rc = template_digest(t)) < 0)
		return rc;
	/* What killed builds and imports left behind goes first. */
	template_clear_dead(s);
	/* A forced rebuild goes through removal, which refuses while anything
	 * (a VM, a layered image) reads from the old image. */
	if (opts && opts->force && (image = template_built_image(s, t->digest))) {
		ref = xasprintf("sha256:%s", image);
		rc = template_image_remove(s, ref);
		free(ref);
		free(image);
		if (rc < 0)
			return rc;
	}
	return build_chain(s, t, opts, built);
}

int template_export(const struct vi_store *s, const char *digest, const char *path,
		    enum template_compression compression, template_progress_fn progress,
		    void *opaque)
{
	const struct vi_tools *tools;
	int rc = vi_tools_load(&tools);

	return rc < 0 ? rc : tools->export_images(s, digest, path, compression, progress, opaque);
}

int template_import(struct vi_store *s, const char *path, const struct template_import_opts *opts,
		    struct template_strv *digests)
{
	const struct vi_tools *tools;
	const char *hex = opts->expect ? opts->expect + 7 : NULL;
	int rc;

	memset(digests, 0, sizeof(*digests));
	if (hex && (strncmp(opts->expect, "sha256:", 7) || !is_digest(hex)))
		return vi_error(VI_EUSAGE,
				"invalid --expect '%s': expected sha256: and 64 hex digits",
				opts->expect);
	rc = vi_tools_load(&tools);
	return rc < 0 ? rc : tools->import_images(s, path, opts, digests);
}

/* The image a name no template has means: the one that last took the name,
 * or in a store of an earlier version the newest built from a template of
 * that name. */
static int image_by_name(const struct vi_store *s, const char *name, char **digest)
{
	struct template_image *imgs;
	size_t n;
	int rc;

	if ((*digest = template_index_get(s, "names", name)))
		return 0;
	if ((rc = template_image_list(s, &imgs, &n)) < 0)
		return rc;
	/* The list is sorted by build time within a name: the last one wins. */
	for (size_t i = 0; i < n; i++)
		if (!strcmp(imgs[i].name, name)) {
			free(*digest);
			*digest = xstrdup(imgs[i].digest);
		}
	template_image_list_free(imgs, n);
	return 0;
}

int template_image_get(struct vi_store *s, const char *ref, const char *const *sets, size_t nsets,
		       const struct template_build_opts *opts, struct template_image *img)
{
	struct template *t;
	char *digest = NULL;
	bool built;
	int rc;

	if (!strncmp(ref, "sha256:", 7))
		rc = template_image_find(s, ref, &digest);
	else if (!template_exists(s->home, ref))
		rc = image_by_name(s, ref, &digest);
	else
		rc = 0;
	if (rc < 0)
		return rc;
	if (digest) {
		rc = nsets ? vi_error(VI_EUSAGE, "--set needs a template: '%s' is a stored image",
				      ref)
			   : template_image_load(s, digest, img);
		free(digest);
		return rc;
	}
	/* A template, or nothing of that name: the loader says which. */
	if ((rc = template_load(s->home, ref, sets, nsets, &t)) < 0)
		return rc;
	if ((rc = template_build(s, t, opts, &built)) == 0) {
		/* Just built or found: gone only if removed meanwhile. */
		digest = template_built_image(s, t->digest);
		rc = digest ? template_image_load(s, digest, img)
			    : vi_error(VI_ENOTFOUND, "template '%s' is not built", t->name);
		free(digest);
	}
	template_free(t);
	return rc;
}
