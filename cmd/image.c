/* vi image create|info|check|convert|resize: qcow2 and raw images through
 * lib/image, in the manner of qemu-img. */
#include "cmd.h"
#include "error.h"
#include "image/image.h"
#include "log.h"
#include "output.h"
#include "progress.h"
#include "util.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *format, *backing, *backing_format, *repair;
static uint64_t cluster_size, compat;
static int chain;

const struct vi_option image_create_options[] = {
	{ "format", 'f', VI_OPT_STRING, &format, "FMT", "qcow2 (default) or raw" },
	{ "backing", 'b', VI_OPT_STRING, &backing, "FILE", "qcow2 overlay on this image",
	  VI_COMPLETE_FILE },
	{ "backing-format", 'F', VI_OPT_STRING, &backing_format, "FMT",
	  "the backing image's format (found out when not given)" },
	{ "cluster-size", 0, VI_OPT_SIZE, &cluster_size, "SIZE", "qcow2 cluster size, 4K to 2M (default 64K)" },
	{ "compat", 0, VI_OPT_UINT, &compat, "VERSION", "qcow2 version 2 or 3 (default 3)", .min = 2,
	  .max = 3 },
	OPT_JSON,
	VI_OPT_TABLE_END,
};

const struct vi_option image_info_options[] = {
	{ "chain", 0, VI_OPT_FLAG, &chain, NULL, "describe the whole backing chain" },
	OPT_JSON,
	VI_OPT_TABLE_END,
};

const struct vi_option image_check_options[] = {
	{ "repair", 'r', VI_OPT_STRING, &repair, "leaks|all", "repair what was found" },
	OPT_JSON,
	VI_OPT_TABLE_END,
};

const struct vi_option image_convert_options[] = {
	{ "format", 'O', VI_OPT_STRING, &format, "FMT", "the new image's format (default qcow2)" },
	{ "backing", 'b', VI_OPT_STRING, &backing, "FILE",
	  "write only what differs from this image, and record it as backing", VI_COMPLETE_FILE },
	{ "backing-format", 'F', VI_OPT_STRING, &backing_format, "FMT", "the backing image's format" },
	{ "cluster-size", 0, VI_OPT_SIZE, &cluster_size, "SIZE", "qcow2 cluster size" },
	{ "compat", 0, VI_OPT_UINT, &compat, "VERSION", "qcow2 version 2 or 3", .min = 2, .max = 3 },
	OPT_JSON,
	VI_OPT_TABLE_END,
};

const struct vi_option image_resize_options[] = {
	OPT_JSON,
	VI_OPT_TABLE_END,
};

const struct cmd image_commands[] = {
	{ "check", cmd_image_check, 1, 1, 0, "FILE", image_check_options,
	  "check a qcow2 image's metadata, as qemu-img check does" },
	{ "convert", cmd_image_convert, 2, 2, 0, "SRC DST", image_convert_options,
	  "copy an image, through its backing chain, into a new one" },
	{ "create", cmd_image_create, 1, 2, 0, "FILE [SIZE]", image_create_options,
	  "create an image, or an overlay on a backing image" },
	{ "info", cmd_image_info, 1, 1, 0, "FILE", image_info_options,
	  "describe an image and its backing chain" },
	{ "resize", cmd_image_resize, 2, 2, 0, "FILE [+]SIZE", image_resize_options,
	  "grow an image's virtual size" },
	{ NULL },
};

static int parse_format(const char *name, int dflt, int *out)
{
	if (!name) {
		*out = dflt;
		return 0;
	}
	return image_format_parse(name, out);
}

/* The create options shared by create and convert. */
static int create_opts(struct image_create_opts *o, uint64_t size)
{
	int rc;

	memset(o, 0, sizeof(*o));
	o->size = size;
	o->version = compat;
	o->cluster_size = cluster_size;
	o->backing = backing;
	if ((rc = parse_format(format, IMAGE_QCOW2, &o->format)) < 0 ||
	    (rc = parse_format(backing_format, IMAGE_PROBE, &o->backing_format)) < 0)
		return rc;
	if (o->format == IMAGE_RAW && (backing || cluster_size || compat))
		return vi_error(VI_EUSAGE, "raw images have no backing file, clusters or version");
	if (cluster_size && cluster_size > UINT32_MAX)
		return vi_error(VI_EUSAGE, "invalid cluster size: at most 2M");
	return 0;
}

int cmd_image_create(int argc, char **argv)
{
	struct image_create_opts o;
	uint64_t size = 0;
	int rc;

	if (argc > 1 && (rc = vi_parse_size(argv[1], "size", &size)) < 0)
		return rc;
	if (argc < 2 && !backing)
		return vi_error(VI_EUSAGE, "a size is needed without --backing");
	if ((rc = create_opts(&o, size)) < 0 || (rc = image_create(argv[0], &o)) < 0)
		return rc;
	if (ctx.json) {
		struct json_object *doc = vi_json_doc();
		json_object_object_add(doc, "path", vi_json_str(argv[0]));
		json_object_object_add(doc, "format", vi_json_str(image_format_name(o.format)));
		vi_json_print(doc);
	} else {
		vi_info("created %s image '%s'", image_format_name(o.format), argv[0]);
	}
	return 0;
}

static struct json_object *info_json(const struct image_info *i)
{
	struct json_object *o = json_object_new_object();

	json_object_object_add(o, "path", vi_json_str(i->path));
	json_object_object_add(o, "format", vi_json_str(image_format_name(i->format)));
	json_object_object_add(o, "virtual_size", json_object_new_int64(i->virtual_size));
	json_object_object_add(o, "file_size", json_object_new_int64(i->file_size));
	json_object_object_add(o, "disk_size", json_object_new_int64(i->disk_size));
	json_object_object_add(o, "allocated", json_object_new_int64(i->allocated));
	if (i->format == IMAGE_QCOW2) {
		json_object_object_add(o, "cluster_size", json_object_new_int64(i->cluster_size));
		json_object_object_add(o, "version", json_object_new_int(i->version));
		json_object_object_add(o, "refcount_bits", json_object_new_int(i->refcount_bits));
		json_object_object_add(o, "dirty", json_object_new_boolean(i->dirty));
		json_object_object_add(o, "corrupt", json_object_new_boolean(i->corrupt));
		json_object_object_add(o, "snapshots", json_object_new_int(i->snapshots));
		json_object_object_add(o, "backing_file", vi_json_str(i->backing_file));
		if (i->backing_file && i->backing_format >= 0)
			json_object_object_add(o, "backing_format",
					       vi_json_str(image_format_name(i->backing_format)));
	}
	return o;
}

static void info_text(const struct image_info *i)
{
	char a[32], b[32], *path = vi_escape_controls(i->path);

	/* The path and the backing file name come from images, not the user. */
	printf("image:          %s\n", path);
	free(path);
	printf("format:         %s\n", image_format_name(i->format));
	printf("virtual size:   %s (%" PRIu64 " bytes)\n", vi_format_size(i->virtual_size, a, sizeof(a)),
	       i->virtual_size);
	printf("disk size:      %s\n", vi_format_size(i->disk_size, b, sizeof(b)));
	if (i->format != IMAGE_QCOW2)
		return;
	printf("allocated:      %s\n", vi_format_size(i->allocated, a, sizeof(a)));
	printf("cluster size:   %s\n", vi_format_size(i->cluster_size, a, sizeof(a)));
	printf("version:        %u (refcount bits %u)\n", i->version, i->refcount_bits);
	if (i->backing_file) {
		char *backing = vi_escape_controls(i->backing_file);
		printf("backing file:   %s%s%s%s\n", backing, i->backing_format >= 0 ? " (" : "",
		       i->backing_format >= 0 ? image_format_name(i->backing_format) : "",
		       i->backing_format >= 0 ? ")" : "");
		free(backing);
	}
	if (i->snapshots)
		printf("snapshots:      %u\n", i->snapshots);
	if (i->dirty)
		printf("dirty:          yes (not closed cleanly; refcounts are rebuilt on open)\n");
	if (i->corrupt)
		printf("corrupt:        yes\n");
}

int cmd_image_info(int argc, char **argv)
{
	struct image *img;
	struct image_info info;
	int rc;
	(void)argc;

	if ((rc = image_open(argv[0], IMAGE_PROBE, chain ? 0 : IMAGE_OPEN_NO_BACKING, &img)) < 0)
		return rc;
	rc = image_get_info(img, chain, &info);
	image_close(img);
	if (rc < 0)
		return rc;
	if (ctx.json) {
		struct json_object *doc = vi_json_doc(), *list = json_object_new_array();
		for (struct image_info *i = &info; i; i = i->backing)
			json_object_array_add(list, info_json(i));
		json_object_object_add(doc, "images", list);
		vi_json_print(doc);
	} else {
		for (struct image_info *i = &info; i; i = i->backing) {
			if (i != &info)
				printf("\n");
			info_text(i);
		}
	}
	image_info_release(&info);
	return 0;
}

int cmd_image_check(int argc, char **argv)
{
	struct image_check_result res;
	unsigned flags = 0;
	int rc;
	(void)argc;

	if (repair && !strcmp(repair, "leaks"))
		flags = IMAGE_CHECK_REPAIR_LEAKS;
	else if (repair && !strcmp(repair, "all"))
		flags = IMAGE_CHECK_REPAIR_LEAKS | IMAGE_CHECK_REPAIR_ALL;
	else if (repair)
		return vi_error(VI_EUSAGE, "invalid --repair '%s': expected leaks or all", repair);
	if ((rc = image_check(argv[0], IMAGE_PROBE, flags, &res)) < 0)
		return rc;
	if (ctx.json) {
		struct json_object *doc = vi_json_doc(), *msgs = json_object_new_array();
		for (size_t i = 0; i < res.nmessages; i++)
			json_object_array_add(msgs, vi_json_str(res.messages[i]));
		json_object_object_add(doc, "path", vi_json_str(argv[0]));
		json_object_object_add(doc, "corruptions", json_object_new_int64(res.corruptions));
		json_object_object_add(doc, "leaks", json_object_new_int64(res.leaks));
		json_object_object_add(doc, "corruptions_fixed", json_object_new_int64(res.corruptions_fixed));
		json_object_object_add(doc, "leaks_fixed", json_object_new_int64(res.leaks_fixed));
		json_object_object_add(doc, "allocated_clusters", json_object_new_int64(res.allocated_clusters));
		json_object_object_add(doc, "total_clusters", json_object_new_int64(res.total_clusters));
		json_object_object_add(doc, "image_end_offset", json_object_new_int64(res.image_end_offset));
		json_object_object_add(doc, "messages", msgs);
		vi_json_print(doc);
	} else {
		for (size_t i = 0; i < res.nmessages; i++)
			printf("%s\n", res.messages[i]);
		if (res.corruptions_fixed || res.leaks_fixed)
			printf("repaired %" PRIu64 " corruptions and %" PRIu64 " leaked clusters\n",
			       res.corruptions_fixed, res.leaks_fixed);
		if (!res.corruptions && !res.leaks)
			printf("no errors were found on '%s'\n", argv[0]);
		printf("%" PRIu64 "/%" PRIu64 " clusters allocated, %" PRIu64 " corruptions, %" PRIu64
		       " leaked clusters\n",
		       res.allocated_clusters, res.total_clusters, res.corruptions, res.leaks);
	}
	if (res.corruptions)
		rc = vi_error(VI_EFAIL, "'%s' has %" PRIu64 " corruptions", argv[0], res.corruptions);
	else if (res.leaks)
		rc = vi_error(VI_EFAIL, "'%s' has %" PRIu64 " leaked clusters (repair with --repair leaks)",
			      argv[0], res.leaks);
	image_check_result_release(&res);
	return rc;
}

static void convert_progress(uint64_t done, uint64_t total, void *opaque)
{
	struct vi_progress *p = opaque;
	p->total = total;
	vi_progress_update(p, done);
}

int cmd_image_convert(int argc, char **argv)
{
	struct image_convert_opts o = { 0 };
	struct image *src;
	struct vi_progress progress;
	int rc;
	(void)argc;

	if ((rc = create_opts(&o.create, 0)) < 0)
		return rc;
	if ((rc = image_open(argv[0], IMAGE_PROBE, 0, &src)) < 0)
		return rc;
	vi_progress_start(&progress, image_size(src), "converting");
	o.progress = convert_progress;
	o.opaque = &progress;
	rc = image_convert(src, argv[1], &o);
	vi_progress_end(&progress);
	image_close(src);
	if (rc < 0)
		return rc;
	if (ctx.json) {
		struct json_object *doc = vi_json_doc();
		json_object_object_add(doc, "path", vi_json_str(argv[1]));
		json_object_object_add(doc, "format", vi_json_str(image_format_name(o.create.format)));
		vi_json_print(doc);
	} else {
		vi_info("converted '%s' to %s image '%s'", argv[0], image_format_name(o.create.format),
			argv[1]);
	}
	return 0;
}

int cmd_image_resize(int argc, char **argv)
{
	struct image *img;
	uint64_t size, old;
	bool relative = argv[1][0] == '+';
	char a[32];
	int rc;
	(void)argc;

	if ((rc = vi_parse_size(argv[1] + relative, "size", &size)) < 0)
		return rc;
	if ((rc = image_open(argv[0], IMAGE_PROBE, IMAGE_OPEN_WRITE, &img)) < 0)
		return rc;
	old = image_size(img);
	if (relative)
		size += old;
	if (size < old) {
		image_close(img);
		return vi_error(VI_EUSAGE, "'%s' is %s: images only grow", argv[0],
				vi_format_size(old, a, sizeof(a)));
	}
	rc = image_resize(img, size);
	int crc = image_close(img);
	if (rc == 0)
		rc = crc;
	if (rc < 0)
		return rc;
	if (ctx.json) {
		struct json_object *doc = vi_json_doc();
		json_object_object_add(doc, "path", vi_json_str(argv[0]));
		json_object_object_add(doc, "virtual_size", json_object_new_int64(size));
		vi_json_print(doc);
	} else {
		vi_info("resized '%s' to %s", argv[0], vi_format_size(size, a, sizeof(a)));
	}
	return 0;
}
