/* The first-boot seed: a small read-only disk labelled CIDATA that hands each
 * machine what is its own without rebuilding its golden image: host name,
 * login user and keys, SSH host key, the user's cloud-init user-data, and
 * whether to grow the root file system.
 *
 * It is a cloud-init NoCloud seed (user-data, meta-data at its root), so an
 * image with cloud-init takes it whole; beside them a vi/ directory holds the
 * same facts one per file, for vi's own first-boot hook in images without
 * cloud-init (tiny included). */
#ifndef VI_SEED_H
#define VI_SEED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The seed disk's file name in the VM's directory. */
#define VI_SEED_FILE "seed.img"

struct vi_seed {
	const char *instance_id;     /* new for every machine, clones included */
	const char *hostname;
	const char *user;            /* the login account; "root" or made at first boot */
	const char *const *keys;     /* authorized_keys lines for it */
	size_t nkeys;
	const char *host_key;        /* OpenSSH private ed25519 host key, text */
	const char *user_data;       /* a file of the user's (#cloud-config or a script), or NULL */
	bool grow_root;              /* the root partition was grown: grow its file system */
};

/* Writes the seed disk to path (a new file, atomically). */
int vi_seed_write(const char *path, const struct vi_seed *s);

/* Grows the last partition of the MBR disk image `path` (any format lib/image
 * opens, an overlay included) to end at the image's end, when it is the root
 * partition `part` (1-based). 0 when grown or already full; VI_EUNSUPPORTED
 * for a disk without an MBR partition table (whole-disk file systems need no
 * partition growth). */
int vi_seed_grow_partition(const char *path, unsigned part);
/* The partition number of a root device name such as "/dev/vda1", 0 for a
 * whole disk ("/dev/vda") or none. */
unsigned vi_seed_root_partition(const char *root);

#endif
