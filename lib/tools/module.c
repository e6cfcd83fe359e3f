/* The one thing vi-tools.so exports: the table vi looks up after loading it. */
#include "tools.h"
#include "tools-internal.h"

__attribute__((visibility("default"))) const struct vi_tools vi_tools = {
	.version = VI_VERSION,
	.build_image = template_build_image,
	.export_images = template_export_archive,
	.import_images = template_import_archive,
	.diff = tools_diff,
	.grow_fs = tools_grow_fs,
};
