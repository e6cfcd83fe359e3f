/* Moving a VM's record from one store to another's, over a byte stream (ssh's
 * standard input and output): the VM's directory, the layers and golden
 * images it reads that the other store lacks (by layer id and digest: an image
 * travels once), its paths rewritten for the other store. The live memory
 * and the disks a running VM writes go through the backend's own stream
 * (migrate_send/recv); this is the rest, and the hand-over around it.
 *
 * The wire, one way then the other, lines and raw bytes:
 *   source: "VIMIGRATE 1", "HEADER <n>" + n bytes of JSON {name, home, vm,
 *           images, layers [{id, parent, backing}], live, streamed [{disk, backing}]}
 *   dest:   "NEED <n>" + JSON {images, layers} (what it lacks), or "ERROR <code> <msg>"
 *   source: "FILE <mode> <size> <path>" then "DATA <offset> <n>" + n bytes ...
 *           "EOF" for each file (holes are not sent), then "DONE"
 *   dest:   "OK" (offline: the VM is defined there) or "LISTEN <port> <secret>"
 *           (live: the source connects, sends "<secret>\n" first, and the
 *           backends take over); at the end "RUNNING" or "ERROR <code> <msg>". */
#ifndef VI_MIGRATE_H
#define VI_MIGRATE_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "store.h"
#include "vm.h"

struct json_object;

struct vi_bundle_layer {
	char *id, *parent, *backing; /* backing: the golden image when not a layer */
};

/* What a VM reads besides its own directory, and what goes with it. */
struct vi_bundle {
	char **images; /* digests of golden images under images/ */
	size_t nimages;
	struct vi_bundle_layer *layers; /* the layers, parents before children */
	size_t nlayers;
	char **files;    /* store-relative paths of the VM's own files */
	size_t nfiles;
	uint64_t *sizes; /* their sizes */
	bool *streamed;  /* the backend's stream carries it (a running VM's disk) */
	char **outside;  /* files it reads outside the store: the other host must see them
			    at the same path (a kernel, a disk on shared storage) */
	size_t noutside;
};

/* Collects what vm (stopped, or running when live) needs on another store.
 * With live, writable disks in the VM's directory are marked streamed. */
int vi_bundle_collect(const struct vi_store *s, const struct vi_vm *vm, bool live,
		      struct vi_bundle *b);
void vi_bundle_release(struct vi_bundle *b);
/* The bytes of what the other store lacks among b's images and layers (need
 * names them, as the NEED answer gave them) and of the VM's own files,
 * streamed ones left out. */
uint64_t vi_bundle_bytes(const struct vi_store *s, const struct vi_bundle *b,
			 struct json_object *need);

/* Progress of the files sent, for a terminal: bytes so far out of all. */
typedef void (*vi_migrate_progress_fn)(void *opaque, uint64_t done, uint64_t total);

/* What an offer says of the VM: it runs, and its stream follows
 * (VI_MIGRATE_LIVE); that stream goes through the link (VI_MIGRATE_TUNNEL);
 * or the hypervisors move it between them (VI_MIGRATE_LIBVIRT): the other
 * side makes the streamed disks, empty, on their backing files, says
 * "LIBVIRT HOME", and waits for DONE or ABORT. */
enum { VI_MIGRATE_LIVE = 1, VI_MIGRATE_TUNNEL = 2, VI_MIGRATE_LIBVIRT = 4 };


/* The source's side up to the hand-over, in two steps. The header: what the
 * VM is and reads (flags: VI_MIGRATE_*); *need gets what the other store lacks (the caller drops
 * the reference). in/out are the stream from and to the other side. */
int vi_migrate_offer_header(const struct vi_store *s, const struct vi_vm *vm,
			    const struct vi_bundle *b, unsigned flags, FILE *in, FILE *out,
			    struct json_object **need);
/* Then the files: those it lacks and the VM's own, and DONE. *sent gets the
 * bytes of files sent. */
int vi_migrate_offer_files(const struct vi_store *s, const struct vi_bundle *b,
			   struct json_object *need, FILE *out, vi_migrate_progress_fn progress,
			   void *opaque, uint64_t *sent);

/* The destination's side: reads the offer from in, answers on out, stores
 * what comes into this store (images and layers at once, the VM's directory
 * staged), and rewrites its paths for this store. *vm gets the definition,
 * *staged the staging directory the caller commits into vms/NAME (or
 * aborts), *flags the offer's VI_MIGRATE_* flags, and *backing (vm's
 * ndisks entries, each NULL or malloc'd) the backing file here of each disk
 * that stream brings, *sizes (ndisks entries, malloc'd) its virtual size (0:
 * not brought). On failure the other side has been told. */
int vi_migrate_accept(const struct vi_store *s, FILE *in, FILE *out, struct vi_vm *vm,
		      char **staged, unsigned *flags, char ***backing, uint64_t **sizes);

/* VI_MIGRATE_LIBVIRT, the destination: the disks the hypervisors copy, made
 * empty in vm's directory of the store (committed there), each on its backing
 * file (backing[i], or none) with its virtual size (sizes[i]; 0: not one of
 * them). */
int vi_migrate_make_disks(const struct vi_store *s, const struct vi_vm *vm,
			  const char *const *backing, const uint64_t *sizes);
/* Only the first step of that: reads the header and answers what this store
 * lacks (or that the VM exists here), storing nothing. */
int vi_migrate_answer(const struct vi_store *s, FILE *in, FILE *out);

/* The destination's direct connection for a live migration: a listener on
 * addr (numeric) with a port the system picks; then the one peer that sends
 * secret as its first line, within timeout_ms. Anyone else who connects is
 * turned away, said in a warning, and the wait goes on. */
int vi_migrate_listen(const char *addr, int *fd, unsigned *port);
int vi_migrate_accept_peer(int lfd, const char *secret, unsigned timeout_ms, int *out);
/* Once the peer is in, the listener stays open to turn away, with a warning,
 * anyone else who connects until the migration ends. */
struct vi_migrate_guard;
struct vi_migrate_guard *vi_migrate_guard_start(int lfd);
void vi_migrate_guard_stop(struct vi_migrate_guard *g);
/* The source's end: connects to addr:port and sends the secret. */
int vi_migrate_connect(const char *addr, unsigned port, const char *secret, int *fd);

/* A migration whose "running" never came back leaves the VM paused here with
 * a mark naming the host it went to, until `vi migrate --recover` settles
 * it: the guest may run there, so nothing may start it here meanwhile.
 * vi_migrate_unconfirmed() returns that host (malloc'd), or NULL. vm_dir:
 * the VM's directory in the store. */
int vi_migrate_mark_unconfirmed(const char *vm_dir, const char *host);
char *vi_migrate_unconfirmed(const char *vm_dir);
int vi_migrate_clear_unconfirmed(const char *vm_dir);

/* --tunnel: the backend's stream through ssh's pipes (in, out: raw fds
 * with nothing buffered for them) rather than a direct connection. *fd is
 * the socket the backend speaks on; when it is done it closes *fd, and then
 * vi_migrate_tunnel_close() waits up to timeout_ms for both directions to
 * end, leaving in and out as they were, ready for lines again. An error
 * when a direction did not end cleanly (a lost link). */
struct vi_migrate_tunnel;
int vi_migrate_tunnel_open(int in, int out, int *fd, struct vi_migrate_tunnel **t);
int vi_migrate_tunnel_close(struct vi_migrate_tunnel *t, unsigned timeout_ms);

/* Reads one line from the other side ("OK", "LISTEN ...", "RUNNING"); an
 * "ERROR <code> <msg>" line becomes that error, EOF a lost link. *line is
 * malloc'd. */
int vi_migrate_read_line(FILE *in, char **line);
/* Writes "ERROR <code> <message>" for the current error. */
void vi_migrate_send_error(FILE *out);

#endif
