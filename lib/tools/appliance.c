/* The libguestfs handle as every user of the appliance in vi-tools.so sets
 * it up, and its errors as libvi messages. */
#include "error.h"
#include "tools-internal.h"
#include "util.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool hardware_virt(void)
{
	return vi_file_exists("/sys/module/kvm_intel") || vi_file_exists("/sys/module/kvm_amd");
}

guestfs_h *tools_guestfs_create(void)
{
	guestfs_h *g = guestfs_create();

	if (!g)
		return NULL;
	guestfs_set_error_handler(g, NULL, NULL);
	/* The user's settings win; otherwise direct QEMU, and TCG unless the
	 * host has real VT-x or SVM (a software /dev/kvm is slower than TCG). */
	if (!getenv("LIBGUESTFS_BACKEND"))
		guestfs_set_backend(g, "direct");
	if (!getenv("LIBGUESTFS_BACKEND_SETTINGS") && !hardware_virt()) {
		char *settings[] = { "force_tcg", NULL };
		guestfs_set_backend_settings(g, settings);
	}
	return g;
}

int tools_guestfs_verror(guestfs_h *g, const char *fmt, va_list ap)
{
	const char *why = guestfs_last_error(g);
	char what[512];

	vsnprintf(what, sizeof(what), fmt, ap);
	return vi_error(VI_EFAIL, "cannot %s: %s", what, why ? why : "unknown libguestfs error");
}

int tools_guestfs_error(guestfs_h *g, const char *fmt, ...)
{
	va_list ap;
	int rc;

	va_start(ap, fmt);
	rc = tools_guestfs_verror(g, fmt, ap);
	va_end(ap);
	return rc;
}

static int shorter_mountpoint(const void *a, const void *b)
{
	size_t x = strlen(*(char *const *)a), y = strlen(*(char *const *)b);

	return x < y ? -1 : x > y;
}

char **tools_mountpoints(guestfs_h *g, const char *root, size_t *n)
{
	char **mps = guestfs_inspect_get_mountpoints(g, root);

	*n = 0;
	while (mps && mps[2 * *n] && mps[2 * *n + 1])
		++*n;
	/* Parents first: "/" before "/boot", which sorting by length gives. */
	if (mps)
		qsort(mps, *n, 2 * sizeof(*mps), shorter_mountpoint);
	return mps;
}

void tools_strv_free(char **v)
{
	for (char **p = v; p && *p; p++)
		free(*p);
	free(v);
}
