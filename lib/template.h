/* Golden-image templates: the YAML format of vi-template(5), parameters
 * substituted as ${name}, inheritance from a base template, the digest of a
 * template and of everything it reads, the cached build into the image store
 * ($VI_HOME/images/<digest>/: disk.qcow2, kernel, initrd, manifest.yaml, named
 * by the digest of that content, with images/recipes/<template digest> naming
 * the image a build made), and export/import of built images as one archive. Building, export and import
 * load the image tools module on first use (tools.h); nothing else does.
 *
 * Ownership: template_load() returns a template that the caller frees with
 * template_free(), which also frees its base. A struct template_image owns
 * its strings and is emptied by template_image_release(). Strings given to
 * these functions are copied. Functions returning int return 0 (or a count
 * where said) or a negative VI_E* code after recording a message. */
#ifndef VI_TEMPLATE_H
#define VI_TEMPLATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "sha256.h"
#include "store.h"

/* Bumped whenever the build steps change what an image holds: part of every
 * digest, so images built by an older recipe are rebuilt. */
#define TEMPLATE_RECIPE 3
/* What the readiness hook of `ready: {command: ...}` prints on the console. */
#define TEMPLATE_READY_MARKER "vi-guest-ready"
/* The largest disk a template may ask for. */
#define TEMPLATE_MAX_DISK_SIZE (64ull << 40)

struct template_strv {
	char **v;
	size_t n;
};

enum template_kernel {
	TEMPLATE_KERNEL_NONE,	 /* no kernel: firmware boots the first disk */
	TEMPLATE_KERNEL_HOST,	 /* the build host's newest /boot/vmlinuz-VERSION */
	TEMPLATE_KERNEL_FILE,	 /* a file */
	TEMPLATE_KERNEL_PACKAGE, /* a package installed in the image */
};

enum template_source {
	TEMPLATE_SOURCE_EMPTY,
	TEMPLATE_SOURCE_BUSYBOX,     /* the host's static busybox and a small init */
	TEMPLATE_SOURCE_TARBALL,     /* a root file system archive */
	TEMPLATE_SOURCE_DEBOOTSTRAP, /* a Debian suite */
	TEMPLATE_SOURCE_IMAGE,	     /* a copy of an existing disk image */
	TEMPLATE_SOURCE_BASE,	     /* an overlay on the base template's disk */
};

struct template_disk {
	enum template_source source;
	uint64_t size;			/* bytes; 0 for an image source: the image's own size */
	char *filesystem;		/* mkfs type, or NULL for none */
	char *path;			/* tarball or image, absolute */
	char *suite, *variant, *mirror; /* debootstrap; mirror as resolved */
	struct template_strv components, packages;
};

struct template_file {
	char *path;    /* absolute, in the image */
	char *content; /* inline text, or NULL */
	char *source;  /* a host file (absolute), or NULL */
	unsigned mode;
	char *owner; /* "USER[:GROUP]", or NULL for root */
};

struct template_user {
	char *name;
	uint64_t uid; /* 0: the next free one from 1000 (or the existing user's) */
	char *shell;  /* NULL: /bin/bash when the image has it, else /bin/sh */
	bool sudo;
	struct template_strv groups, ssh_keys, ssh_key_files;
};

struct template_param {
	char *name, *value, *description;
};

struct template
{
	char *path, *dir; /* the file and its directory (absolute) */
	char *name, *version, *description;
	struct template *base; /* what this one is layered on, or NULL */
	char *hv;	       /* preferred backend, or NULL */
	unsigned cpus, max_cpus;
	uint64_t memory, max_memory;
	enum template_kernel kernel;
	char *kernel_path;		   /* host or file: the kernel; package: NULL */
	char *kernel_package;		   /* package: its name */
	char *initrd_path;		   /* the initrd file, or NULL (none, or the package's) */
	bool no_initrd;			   /* `initrd: none` */
	bool small_initrd;		   /* `initrd: minimal`, which vi makes */
	struct template_strv initrd_module_files; /* its modules, as module_files */
	char *modules_dir;		   /* host: /lib/modules/VERSION of the host kernel */
	struct template_strv modules;	   /* module names as given */
	struct template_strv module_files; /* under modules_dir, dependencies first */
	char *cmdline;
	struct template_disk *disks;
	size_t ndisks;
	char *hostname;
	struct template_user *users;
	size_t nusers;
	struct template_file *files;
	size_t nfiles;
	struct template_strv packages, run, first_boot;
	struct template_strv programs;	    /* host programs copied into the image */
	struct template_strv program_files; /* they and the libraries ldd lists */
	char *ready_console, *ready_command;
	bool ready_ssh;			/* `ready: ssh` (or `ready: {ssh: true}`) */
	unsigned ready_timeout;
	struct template_strv network;	/* `network:` NIC specs, as --nic takes them */
	struct template_strv forwards;	/* `forward:` specs, as --forward takes them */
	struct template_param *params;
	size_t nparams;
	int depth;		      /* 0 for a template without a base */
	char digest[SHA256_HEX_SIZE]; /* "" until template_digest() */
};

/* The directories searched for NAME.yaml, in order: $VI_TEMPLATE_PATH
 * (colon-separated), HOME/templates, templates/ beside the binary's build
 * directory, then the installed directory. Release with
 * template_strv_release(). */
void template_search_path(const char *home, struct template_strv *dirs);

/* Template names found on the search path (the first of a name wins),
 * sorted, with their files: both arrays are the caller's (free each string). */
int template_list_names(const char *home, struct template_strv *names, struct template_strv *paths);

/* Loads a template by name (searched) or by path (anything with a '/' or
 * ending in .yaml), with its base, substituting parameters; sets are
 * "KEY=VALUE" overrides of parameter defaults. Errors carry file:line:column
 * and a did-you-mean for unknown keys and parameters; -VI_ENOTFOUND when no
 * template has that name. home is the store's home (for its templates/). */
int template_load(const char *home, const char *ref, const char *const *sets, size_t nsets,
		  struct template **out);
/* The same from text in memory; file names it in messages, and relative
 * paths in it are relative to file's directory. */
int template_load_string(const char *home, const char *file, const char *text, size_t len,
			 const char *const *sets, size_t nsets, struct template **out);
void template_free(struct template *t);

/* The digest of the template and all its inputs (file contents, the base's
 * digest, the recipe), as 64 hex digits in t->digest. Cached in t. */
int template_digest(struct template *t);

/* The resolved template as YAML (parameters substituted, base settings
 * inherited); the caller frees *text. */
int template_to_yaml(struct template *t, char **text);

/* A built golden image: what its manifest.yaml records. */
struct template_image_disk {
	char *path;    /* absolute */
	uint64_t size; /* virtual size in bytes */
};

struct template_image {
	char *digest;	       /* its name in the store: 64 hex digits, its content digest */
	char *template_digest; /* the template digest it was built from */
	unsigned schema;       /* of its manifest: 1 from an earlier version, named by
				* its template digest */
	char *dir;	       /* absolute: HOME/images/<digest> */
	char *name, *version, *description;
	char *base_name, *base_digest; /* the image this one is an overlay on, or NULL */
	char *hv;		       /* preferred backend, or NULL */
	unsigned cpus, max_cpus;
	uint64_t memory, max_memory;
	char *kernel, *initrd; /* absolute paths, or NULL */
	char *cmdline;
	struct template_image_disk *disks;
	size_t ndisks;
	char *root;	    /* the root file system's device as the build saw it ("/dev/sda1") */
	char *ready_marker; /* the console text that means ready, or NULL */
	bool ready_ssh;	    /* ready means SSH answers */
	unsigned ready_timeout;	     /* seconds */
	struct template_strv network;	/* NIC specs machines get, or none: the default */
	struct template_strv forwards;	/* forward specs machines get */
	char *user;	    /* the login account: the template's first user, else root */
	bool cloud_init;    /* the image runs cloud-init (it takes the seed whole) */
	struct template_strv params; /* "KEY=VALUE" as built */
	time_t built;
	uint64_t bytes; /* space its files take */
};

void template_image_release(struct template_image *img);

/* Removes the staging directories (with their temporary files) of builds
 * and imports whose process is gone. Failing to remove one is no error (the
 * next run tries again). */
void template_clear_dead(const struct vi_store *s);

/* Reads images/<digest>/manifest.yaml; -VI_ENOTFOUND when not built. */
int template_image_load(const struct vi_store *s, const char *digest, struct template_image *img);

/* The images in the store, sorted by name then build time; the caller frees
 * them with template_image_list_free(). */
int template_image_list(const struct vi_store *s, struct template_image **imgs, size_t *n);
void template_image_list_free(struct template_image *imgs, size_t n);

/* Finds a stored image by "sha256:HEX" (a unique prefix of 8 digits or
 * more); *digest (64 hex digits) is the caller's. */
int template_image_find(const struct vi_store *s, const char *ref, char **digest);

/* Progress of long work, for a terminal: what is happening (NULL: still the
 * same thing) and how far (percent, or -1 when unknown). */
typedef void (*template_progress_fn)(void *opaque, const char *what, int percent);

struct template_build_opts {
	bool force;		       /* rebuild even when the image exists */
	bool cached_only;	       /* never build: -VI_ENOTFOUND when not built */
	template_progress_fn progress; /* may be NULL */
	void *opaque;
};

/* The image that a build of the template digest `template_digest` made, or
 * NULL when none is stored (the caller frees it). Only builds are found:
 * imported images never stand in for one. */
char *template_built_image(const struct vi_store *s, const char *template_digest);

/* Builds t (and its base first) into the store unless a build of its digest
 * is stored; *built says whether anything was built. One libguestfs
 * appliance launch per image built; a cache hit loads no image tools. */
int template_build(struct vi_store *s, struct template *t, const struct template_build_opts *opts,
		   bool *built);

/* What `vi create --template REF --set K=V` needs: the golden image for REF
 * (a template name or path, or "sha256:HEX" of a stored image), built on
 * demand. A name no template has means the stored image that last took that
 * name (by a build or an import), or in a store of an earlier version the
 * newest image built from a template of that name. */
int template_image_get(struct vi_store *s, const char *ref, const char *const *sets, size_t nsets,
		       const struct template_build_opts *opts, struct template_image *img);

/* Removes images: ref is a template name (every image built from it) or
 * "sha256:HEX". Refuses (-VI_ESTATE, naming it) while another image is
 * layered on one or a VM's disk reads from one. Returns how many went. */
int template_image_remove(struct vi_store *s, const char *ref);

enum template_compression {
	TEMPLATE_COMPRESS_ZSTD,
	TEMPLATE_COMPRESS_GZIP,
	TEMPLATE_COMPRESS_NONE,
};

/* Writes the image `digest` and the images it is layered on into one tar
 * archive at path (replaced atomically), with a SHA256SUMS of every file. */
int template_export(const struct vi_store *s, const char *digest, const char *path,
		    enum template_compression compression, template_progress_fn progress,
		    void *opaque);

struct template_import_opts {
	const char *expect; /* "sha256:HEX": the image the archive must hold, or NULL */
	bool force;	    /* take a name another stored image has */
	template_progress_fn progress; /* may be NULL */
	void *opaque;
};

/* Reads an archive written by template_export(); verifies every file against
 * SHA256SUMS, names each image by the digest of its content, and checks the
 * layout and manifests before anything enters the store. Refuses (-VI_ESTATE)
 * an image whose name another stored image has, unless opts->force. *digests
 * gets the images it holds, base first (the caller frees them). */
int template_import(struct vi_store *s, const char *path, const struct template_import_opts *opts,
		    struct template_strv *digests);

void template_strv_push(struct template_strv *l, const char *s);
bool template_strv_has(const struct template_strv *l, const char *s);
void template_strv_release(struct template_strv *l);

#endif
