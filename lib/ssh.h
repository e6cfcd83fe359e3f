/* Reaching a guest over SSH: the store's login key, each machine's host key
 * (made by vi and handed to the guest in its seed, so there is nothing to
 * trust on first use), where the machine's SSH server answers, and the ssh
 * command line that gets there. */
#ifndef VI_SSH_H
#define VI_SSH_H

#include <stdbool.h>
#include <stddef.h>

#include "machine.h"
#include "store.h"

/* In a VM's directory: the host key's public half as a known_hosts line. */
#define VI_SSH_KNOWN_HOSTS "known_hosts"
/* The keys that may log in, as given at creation (clones get them too). */
#define VI_SSH_AUTHORIZED_KEYS "authorized_keys"

/* The store's login key, HOME/ssh/id_ed25519, made on first use; *path is
 * the private key's and *pub its public line (either may be NULL). */
int vi_ssh_store_key(const struct vi_store *s, char **path, char **pub);

/* A new ed25519 key pair: the private key in OpenSSH's format, the public
 * line without comment. */
int vi_ssh_keygen(char **priv, char **pub);

/* Reads the public keys of an authorized_keys-style file: one per line,
 * comments and blank lines dropped; VI_EUSAGE naming the file when a line
 * is not a public key or there is none. */
int vi_ssh_read_keys(const char *path, char ***keys, size_t *n);

struct vi_ssh_target {
	char *user;
	char *addr;         /* where the host reaches the guest's SSH server */
	unsigned port;
	char *guest_addr;   /* the guest's own address, NULL when unknown */
	char *key;          /* the store's key */
	char *known_hosts;  /* the machine's, or NULL: none recorded */
	char *alias;        /* the name its host key is recorded under */
};

/* Where machine m's SSH server answers: through its "user" NIC's forward of
 * port 22, else port 22 of the address its backend reports. VI_ESTATE when
 * it is not running, VI_EUNSUPPORTED when it has no network or no login. */
int vi_ssh_target(const struct vi_store *s, struct vi_machine *m, struct vi_ssh_target *t);
void vi_ssh_target_release(struct vi_ssh_target *t);

#define VI_SSH_TTY   (1u << 0) /* force a terminal (-t) */
#define VI_SSH_BATCH (1u << 1) /* never prompt; fail fast */
#define VI_SSH_QUIET (1u << 2) /* no messages of ssh's own */

/* "ssh" with the options that reach t, then USER@ADDR and command as
 * given: NULL-terminated, each string and the array malloc'd (free with
 * vi_strv_free()). */
char **vi_ssh_argv(const struct vi_ssh_target *t, unsigned flags, char *const *command,
		   size_t ncommand);
/* The same as one shell command line (for VI_SSH). */
char *vi_ssh_cmdline(const struct vi_ssh_target *t);
void vi_strv_free(char **v);

/* Whether the guest's SSH server lets the store's key in now: runs `true`. */
bool vi_ssh_answers(const struct vi_ssh_target *t);

#endif
