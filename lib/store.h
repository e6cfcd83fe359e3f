/* The state store under $VI_HOME: images/, vms/<name>/, policies/.
 * Paths returned by vi_store_path() and friends are owned by the caller.
 * A VM comes into being atomically: it is assembled in a staging directory
 * and renamed into vms/<name>, so a failed command leaves nothing behind. */
#ifndef VI_STORE_H
#define VI_STORE_H

#include <stddef.h>

#include "vm.h"

struct vi_store {
	char *home;
};

/* The default home: $VI_HOME, else /var/lib/vi for root, else
 * $XDG_DATA_HOME/vi (or ~/.local/share/vi). Caller frees. */
char *vi_store_default_home(void);

/* Opens (creating if needed) the store at home, or the default when NULL. */
int vi_store_open(struct vi_store *s, const char *home);
void vi_store_release(struct vi_store *s);

/* home + "/" + the formatted relative path. */
char *vi_store_path(const struct vi_store *s, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Sorted names of the defined VMs; free with vi_store_names_free(). */
int vi_store_list_vms(const struct vi_store *s, char ***names, size_t *n);
/* Whether the store holds a VM, reading only as far as the first; false
 * when it cannot be read. */
bool vi_store_has_vms(const struct vi_store *s);
void vi_store_names_free(char **names, size_t n);

/* 0 if defined, -VI_ENOTFOUND ("no VM named 'x'") otherwise. */
int vi_store_vm_exists(const struct vi_store *s, const char *name);
int vi_store_load_vm(const struct vi_store *s, const char *name, struct vi_vm *vm);
int vi_store_save_vm(const struct vi_store *s, const struct vi_vm *vm);

/* Serialises commands on one VM: an exclusive flock on vms/.locks/<name>,
 * waiting up to timeout_ms (then -VI_ESTATE, "VM 'x' is busy").
 * Returns a descriptor for vi_store_unlock(), or a negative code. */
int vi_store_lock_vm(const struct vi_store *s, const char *name, unsigned timeout_ms);
void vi_store_unlock(int fd);

/* Staging for a new VM: *dir gets a fresh directory to fill in, with its
 * run/ and disks/ (caller frees the string); commit renames it to vms/<name>
 * (-VI_ESTATE if the name was taken meanwhile); abort removes it. */
int vi_store_stage_vm(const struct vi_store *s, const char *name, char **dir);
int vi_store_commit_vm(const struct vi_store *s, const char *name, const char *dir);
void vi_store_abort_vm(const char *dir);
/* A store written before it was private (files 0644) is made so once: VM
 * files 0600, golden images and layers shared read-only (util.h); the file
 * .private records that it was done. */
int vi_store_upgrade_modes(const struct vi_store *s);
/* Removes vms/<name> entirely. */
int vi_store_remove_vm(const struct vi_store *s, const char *name);

#endif
