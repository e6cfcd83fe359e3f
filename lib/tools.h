/* The image tools module, vi-tools.so: the golden-image build (libguestfs),
 * export and import (libarchive), and the files that differ between two
 * states of a machine (libguestfs). Those libraries and the dozens they
 * bring cost every command ~18 ms of dynamic loading, so they live in a module
 * that only the commands doing that work load. The module takes libvi from
 * the vi executable, which exports all of it, so there is one error state. */
#ifndef VI_TOOLS_H
#define VI_TOOLS_H

#include "template.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define VI_TOOLS_FILE "vi-tools.so"
/* The one symbol the module exports: a const struct vi_tools. */
#define VI_TOOLS_SYMBOL "vi_tools"

/* --- the files that differ between two states of one machine ------------- */

/* The disks of one state, in the machine's order: images (qcow2 with their
 * backing chains, raw...) that are opened read-only and never written. */
struct vi_diff_disks {
	const char *const *paths;
	size_t n;
	const char *format; /* of each of them ("qcow2", "raw"); NULL: probed */
};

/* vi_diff_opts.flags */
#define VI_DIFF_CONTENT 0x1u /* fetch what changed in changed files (diff -u) */

struct vi_diff_opts {
	struct vi_diff_disks a; /* the older state */
	struct vi_diff_disks b; /* the newer one */
	unsigned flags;
	/* Steps ("starting the appliance", "N files read") with a percentage
	 * where known, as template builds report them (vi_progress_report
	 * draws them on a terminal). May be NULL. */
	template_progress_fn progress;
	void *opaque;
};

enum vi_diff_kind {
	VI_DIFF_ADDED,   /* in B only */
	VI_DIFF_REMOVED, /* in A only */
	/* A regular file in both whose size, mtime or ctime differ: its content
	 * may have changed (other attributes may have too). */
	VI_DIFF_CHANGED,
	/* In both, the same content as far as size and times tell, with other
	 * attributes changed: `changed` says which. */
	VI_DIFF_ATTRS,
};

/* The attributes compared, bit i of vi_diff_entry.changed for the i-th, in
 * virt-diff's order and with its names (vi_diff_attr_name). */
enum vi_diff_attr {
	VI_DIFF_ST_DEV,    /* the file system, by its order in the state's walk */
	VI_DIFF_ST_INO,
	VI_DIFF_ST_MODE,   /* type and permissions */
	VI_DIFF_ST_NLINK,  /* not for directories */
	VI_DIFF_ST_UID,
	VI_DIFF_ST_GID,
	VI_DIFF_ST_RDEV,
	VI_DIFF_ST_SIZE,
	VI_DIFF_ST_BLKSIZE,
	VI_DIFF_ST_BLOCKS,
	VI_DIFF_ST_ATIME,  /* never: access times are not compared */
	VI_DIFF_ST_MTIME,  /* seconds; not for directories */
	VI_DIFF_ST_CTIME,  /* seconds; not for directories */
	VI_DIFF_XATTRS,    /* extended attributes: names, values or order */
	VI_DIFF_NATTRS
};

/* "st_dev"... "xattrs", as virt-diff's "# changed:" lines name them; NULL
 * past the last. */
const char *vi_diff_attr_name(enum vi_diff_attr attr);

/* One side of an entry. */
struct vi_diff_file {
	char type;     /* as ls -l shows it: '-' 'd' 'l' 'c' 'b' 'p' 's', 'u' unknown */
	unsigned mode; /* permissions: st_mode & 07777 */
	int64_t size;
	char *link;    /* a symbolic link's target, else NULL */
};

struct vi_diff_entry {
	enum vi_diff_kind kind;
	char *path;            /* absolute in the guest, "/" for the root */
	struct vi_diff_file a; /* in A; zero for VI_DIFF_ADDED */
	struct vi_diff_file b; /* in B; zero for VI_DIFF_REMOVED */
	/* VI_DIFF_ATTRS: 1u << enum vi_diff_attr of each attribute that differs,
	 * 0 when only the nanoseconds of a time do (virt-diff counts those); 0
	 * for the other kinds. */
	unsigned changed;
	/* VI_DIFF_CHANGED with VI_DIFF_CONTENT: the hunks of `diff -u A B` ("" for
	 * the same bytes, for files diff calls binary); else NULL. */
	char *content;
};

/* What differs, in virt-diff's order: a depth-first walk, each directory
 * before what it holds, names in byte order within a directory. */
struct vi_diff {
	struct vi_diff_entry *v;
	size_t n;
};

/* Lists in *diff what differs between the files of states a and b of one
 * machine, as virt-diff -a A... -A B... does with its default options, in
 * one libguestfs appliance that has every disk of both, read-only. The two
 * states' disks correspond by position.
 *  - Each state's file systems are mounted as inspection finds them (the
 *    one operating system's root and its fstab mount points, which name
 *    the state's own disks even when both states share file system UUIDs);
 *    a state with no operating system has its only file system mounted,
 *    a whole disk or a partition. A mount point other than "/" that cannot
 *    be mounted is a warning, as in virt-diff. A state with several
 *    operating systems, or several file systems and none, is an error
 *    (VI_EUNSUPPORTED), as is an operating system that is on neither
 *    state's disks as far as the appliance can tell (LVM volume groups,
 *    RAID sets: both states have the same ones).
 *  - What counts as a change is what virt-diff counts by default: access
 *    times never; directories' times and link counts not; a regular file's
 *    content changed when its size, mtime or ctime did (no checksums).
 *    Device numbers count by file system, not by the appliance's numbering
 *    (virt-diff's vary between its two appliances).
 *  - VI_DIFF_CONTENT copies both versions of each changed file out of the
 *    appliance and runs diff(1) on them.
 * Errors: VI_ENOTFOUND for a disk that does not exist, VI_EFAIL for what
 * libguestfs or diff report. On success the caller releases *diff with
 * vi_diff_release(); on error it is empty. Needs the image tools module
 * (vi_tools_load). */
int vi_tools_diff(const struct vi_diff_opts *opts, struct vi_diff *diff);

void vi_diff_release(struct vi_diff *diff);

/* Prints diff as virt-diff prints its entries by default: "+ TYPE MODE
 * SIZE PATH[ -> TARGET]" for an added entry (B's), "-" for a removed one
 * (A's), "=" for a changed file (A's) followed by its content's hunks and
 * "@@ End of diff @@" when fetched, and for changed attributes A's line as
 * removed, B's as added and "# changed: st_mode...". Checking the stream
 * for errors is the caller's. */
void vi_diff_print(const struct vi_diff *diff, FILE *out);

/* --- a stopped machine's file system grown into its disk ------------------ */

/* What vi_growfs_offline() found and did. */
struct vi_fs_grow {
	char type[16];        /* "ext4", "xfs"... */
	char device[64];      /* as the appliance names it: "/dev/sda1" */
	unsigned partition;   /* its partition number, 0 for a whole disk */
	bool partition_grown; /* the partition grew to the end of the disk */
	uint64_t size_before, size_after; /* bytes the file system holds */
};

/* Grows the file system on the disk image at path (format "qcow2", "raw";
 * NULL: probed), which no one else has open, into the whole disk, in one
 * libguestfs appliance: the last partition (a primary one on MBR; GPT's
 * backup header moved first) to the end of the disk, then its file system
 * (ext2/3/4 checked and resized, xfs mounted and grown); a disk without
 * partitions has its file system grown alone. VI_EUNSUPPORTED naming
 * another file system type or a logical partition, VI_ENOTFOUND for a
 * missing image, VI_EFAIL with libguestfs's reason. Needs the image tools
 * module (vi_tools_load). */
int vi_growfs_offline(const char *path, const char *format, struct vi_fs_grow *out);

/* The module shares libvi's structures, so it is only used by the vi of its
 * own version. The methods follow the libvi conventions (0 or a negative
 * VI_E* code with a message). */
struct vi_tools {
	const char *version; /* VI_VERSION of its build */
	/* Builds t into images/<digest>/, digest (the content's) going to the
	 * caller; its base is built already and the caller holds
	 * template_lock() of t->digest. */
	int (*build_image)(struct vi_store *s, struct template *t,
			   const struct template_build_opts *opts, char digest[SHA256_HEX_SIZE]);
	/* template_export() and template_import(). */
	int (*export_images)(const struct vi_store *s, const char *digest, const char *path,
			     enum template_compression compression, template_progress_fn progress,
			     void *opaque);
	int (*import_images)(struct vi_store *s, const char *path,
			     const struct template_import_opts *opts,
			     struct template_strv *digests);
	/* vi_tools_diff(). */
	int (*diff)(const struct vi_diff_opts *opts, struct vi_diff *diff);
	/* vi_growfs_offline(). */
	int (*grow_fs)(const char *path, const char *format, struct vi_fs_grow *out);
};

/* The module's table in *tools, loaded on the first call and kept loaded.
 * It is looked for beside the vi binary (a build tree), then where `make
 * install` puts it relative to the binary, then in the installed directory.
 * Errors (VI_EFAIL) name the file. Not for concurrent first calls. */
int vi_tools_load(const struct vi_tools **tools);

#endif
