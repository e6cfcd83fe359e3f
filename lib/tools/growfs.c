/* A stopped machine's file system grown into its larger disk, in one
 * libguestfs appliance: the last partition to the end of the disk, then the
 * file system on it. */
#include "error.h"
#include "tools-internal.h"
#include "util.h"

#include <guestfs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEV "/dev/sda"

/* The bytes the file system on dev holds, mounted (read-only unless rw). */
static int fs_size(guestfs_h *g, const char *dev, bool rw, uint64_t *bytes)
{
	struct guestfs_statvfs *st;
	int rc = 0;

	if ((rw ? guestfs_mount(g, dev, "/") : guestfs_mount_ro(g, dev, "/")) < 0)
		return tools_guestfs_error(g, "mount '%s'", dev);
	st = guestfs_statvfs(g, "/");
	if (st)
		*bytes = (uint64_t)st->blocks * (uint64_t)st->frsize;
	else
		rc = tools_guestfs_error(g, "read the size of the file system on '%s'", dev);
	guestfs_free_statvfs(st);
	return rc;
}

/* The last partition of the disk, grown to its end: out->partition, 0 for a
 * disk without partitions (out->device the disk). */
static int grow_last_partition(guestfs_h *g, struct vi_fs_grow *out)
{
	char **parts = guestfs_list_partitions(g);
	char *type = NULL;
	struct guestfs_partition_list *pl = NULL;
	int rc = 0;

	if (!parts)
		return tools_guestfs_error(g, "list the partitions of the disk");
	size_t n = 0;
	while (parts[n])
		n++;
	if (!n) {
		snprintf(out->device, sizeof(out->device), "%s", DEV);
		goto out;
	}
	snprintf(out->device, sizeof(out->device), "%s", parts[n - 1]);
	int num = guestfs_part_to_partnum(g, parts[n - 1]);
	type = guestfs_part_get_parttype(g, DEV);
	if (num < 1 || !type) {
		rc = tools_guestfs_error(g, "read the partition table of the disk");
		goto out;
	}
	out->partition = (unsigned)num;
	if (!strcmp(type, "msdos") && num > 4) {
		rc = vi_error(VI_EUNSUPPORTED, "the last partition of the disk is a logical one "
					       "(%s): vi grows primary partitions only",
			      parts[n - 1]);
		goto out;
	}
	/* A GPT's backup header moves to the disk's new end first. */
	if (!strcmp(type, "gpt") && guestfs_part_expand_gpt(g, DEV) < 0) {
		rc = tools_guestfs_error(g, "move the GPT backup header to the end of the disk");
		goto out;
	}
	int64_t sectors = guestfs_blockdev_getsz(g, DEV);
	pl = guestfs_part_list(g, DEV);
	if (sectors < 0 || !pl) {
		rc = tools_guestfs_error(g, "read the size of the disk");
		goto out;
	}
	/* GPT keeps its backup table in the last 33 sectors. */
	int64_t last = sectors - 1 - (!strcmp(type, "gpt") ? 33 : 0), end = -1;
	for (uint32_t i = 0; i < pl->len; i++)
		if (pl->val[i].part_num == num)
			end = (int64_t)(pl->val[i].part_end / 512);
	if (end >= 0 && end < last) {
		if (guestfs_part_resize(g, DEV, num, last) < 0)
			rc = tools_guestfs_error(g, "grow partition %s", parts[n - 1]);
		else
			out->partition_grown = true;
	}
out:
	guestfs_free_partition_list(pl);
	free(type);
	tools_strv_free(parts);
	return rc;
}

int tools_grow_fs(const char *path, const char *format, struct vi_fs_grow *out)
{
	guestfs_h *g = tools_guestfs_create();
	char *type = NULL;
	int rc = 0;

	memset(out, 0, sizeof(*out));
	if (!g)
		return vi_error(VI_EFAIL, "cannot start libguestfs");
	if (!vi_file_exists(path)) {
		rc = vi_error(VI_ENOTFOUND, "no disk '%s'", path);
		goto out;
	}
	if ((format ? guestfs_add_drive_opts(g, path, GUESTFS_ADD_DRIVE_OPTS_FORMAT, format, -1)
		    : guestfs_add_drive(g, path)) < 0 ||
	    guestfs_launch(g) < 0) {
		rc = tools_guestfs_error(g, "open '%s' in the appliance", path);
		goto out;
	}
	if ((rc = grow_last_partition(g, out)) < 0)
		goto out;
	type = guestfs_vfs_type(g, out->device);
	if (!type) {
		rc = tools_guestfs_error(g, "read the file system type of '%s'", out->device);
		goto out;
	}
	snprintf(out->type, sizeof(out->type), "%s", type);
	bool ext = !strcmp(type, "ext2") || !strcmp(type, "ext3") || !strcmp(type, "ext4");
	if (!ext && strcmp(type, "xfs")) {
		rc = vi_error(VI_EUNSUPPORTED,
			      "the file system on %s of '%s' is %s: vi grows ext2, ext3, ext4 and "
			      "xfs only",
			      out->device, path, *type ? type : "of no known type");
		goto out;
	}
	if (ext) {
		/* resize2fs wants a file system just checked, and unmounted. */
		if ((rc = fs_size(g, out->device, false, &out->size_before)) < 0)
			goto out;
		if (guestfs_umount_all(g) < 0 ||
		    guestfs_e2fsck(g, out->device, GUESTFS_E2FSCK_CORRECT, 1, -1) < 0 ||
		    guestfs_resize2fs(g, out->device) < 0) {
			rc = tools_guestfs_error(g, "grow the file system on %s", out->device);
			goto out;
		}
		rc = fs_size(g, out->device, false, &out->size_after);
	} else {
		/* xfs grows mounted only. */
		if ((rc = fs_size(g, out->device, true, &out->size_before)) < 0)
			goto out;
		if (guestfs_xfs_growfs(g, "/", -1) < 0) {
			rc = tools_guestfs_error(g, "grow the file system on %s", out->device);
			goto out;
		}
		rc = fs_size(g, out->device, true, &out->size_after);
	}
	if (rc == 0 && (guestfs_umount_all(g) < 0 || guestfs_shutdown(g) < 0))
		rc = tools_guestfs_error(g, "write '%s'", path);
out:
	free(type);
	guestfs_close(g);
	return rc;
}
