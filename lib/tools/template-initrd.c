/* The minimal initrd (`initrd: minimal`): a gzip'd newc cpio of the host's
 * static busybox, the host kernel's modules that mount an ext2/3/4 root on
 * virtio-blk, and an init that loads them, mounts the root named on the
 * kernel command line and hands over to its init. A distribution's initrd
 * probes every device with udev and carries a hundred megabytes of modules;
 * under emulation that is most of a small machine's boot. */
#include "error.h"
#include "template-internal.h"
#include "tools-internal.h"
#include "util.h"

#include <archive.h>
#include <archive_entry.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

static int cpio_error(struct archive *a, const char *path)
{
	return vi_error(VI_EFAIL, "cannot write the initrd '%s': %s", path,
			archive_error_string(a) ? archive_error_string(a) : "unknown error");
}

/* One entry: a directory, a device (dev), or a file of len bytes. */
static int cpio_add(struct archive *a, const char *path, const char *name, mode_t mode, dev_t dev,
		    const void *data, size_t len)
{
	struct archive_entry *e = archive_entry_new();
	int rc = 0;

	archive_entry_set_pathname(e, name);
	archive_entry_set_mode(e, mode);
	archive_entry_set_rdev(e, dev);
	archive_entry_set_nlink(e, S_ISDIR(mode) ? 2 : 1);
	archive_entry_set_size(e, S_ISREG(mode) ? (la_int64_t)len : 0);
	if (archive_write_header(a, e) != ARCHIVE_OK ||
	    (S_ISREG(mode) && len && archive_write_data(a, data, len) != (la_ssize_t)len))
		rc = cpio_error(a, path);
	archive_entry_free(e);
	return rc;
}

static int cpio_file(struct archive *a, const char *path, const char *name, const char *src)
{
	char *data;
	size_t len;
	int rc = vi_read_file(src, &data, &len);

	if (rc == 0) {
		rc = cpio_add(a, path, name, S_IFREG | 0755, 0, data, len);
		free(data);
	}
	return rc;
}

int template_initrd(const struct template *t, const char *path)
{
	static const char *const dirs[] = { "bin", "dev", "proc", "sys", "root", "lib",
					    "lib/modules" };
	struct archive *a = archive_write_new();
	char *list = xstrdup("");
	int rc = 0;

	archive_write_set_format_cpio_newc(a);
	archive_write_add_filter_gzip(a);
	if (archive_write_open_filename(a, path) != ARCHIVE_OK) {
		rc = cpio_error(a, path);
		goto out;
	}
	for (size_t i = 0; i < ARRAY_SIZE(dirs) && rc == 0; i++)
		rc = cpio_add(a, path, dirs[i], S_IFDIR | 0755, 0, NULL, 0);
	/* The kernel opens the console before init runs. */
	if (rc == 0)
		rc = cpio_add(a, path, "dev/console", S_IFCHR | 0600, makedev(5, 1), NULL, 0);
	if (rc == 0)
		rc = cpio_file(a, path, "bin/busybox", TEMPLATE_BUSYBOX);
	if (rc == 0)
		rc = cpio_add(a, path, "init", S_IFREG | 0755, 0, template_initrd_init,
			      strlen(template_initrd_init));
	for (size_t i = 0; i < t->initrd_module_files.n && rc == 0; i++) {
		const char *file = t->initrd_module_files.v[i], *base = strrchr(file, '/');
		char *src = xasprintf("%s/%s", t->modules_dir, file);
		char *name = xasprintf("lib/modules/%s", base ? base + 1 : file);
		char *next = xasprintf("%s%s\n", list, base ? base + 1 : file);
		rc = cpio_file(a, path, name, src);
		free(list);
		list = next;
		free(src);
		free(name);
	}
	if (rc == 0)
		rc = cpio_add(a, path, "modules", S_IFREG | 0644, 0, list, strlen(list));
	if (rc == 0 && archive_write_close(a) != ARCHIVE_OK)
		rc = cpio_error(a, path);
out:
	archive_write_free(a);
	free(list);
	return rc;
}
