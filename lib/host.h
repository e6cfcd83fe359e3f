/* Other machines running vi, reached over ssh: the inventory in the store
 * ($VI_HOME/hosts.yaml, like a git remote list), the ssh command line that
 * reaches one, and running vi there. Each host is the truth for its own
 * VMs; nothing here is shared but what a command asks for. */
#ifndef VI_HOST_H
#define VI_HOST_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#include "store.h"
#include "vm.h"

struct json_object;

struct vi_host_entry {
	char *name;
	char *uri;  /* ssh://[user@]addr[:port] as given */
	char *user; /* NULL: ssh's own choice */
	char *addr; /* a name, an IPv4 address or an IPv6 one (without brackets) */
	unsigned port; /* 0: ssh's own choice */
	char *home; /* vi's store there, NULL: its default */
	char *vi;   /* vi's path there, NULL: "vi" on its PATH */
	char *libvirt; /* the libvirt URI that reaches it, NULL: vi_host_libvirt_uri()'s */
};

struct vi_hosts {
	struct vi_host_entry *hosts;
	size_t n;
};

/* Parses an ssh URI into e's user, addr and port; VI_EUSAGE naming it when it
 * is not ssh://[user@]addr[:port] (an IPv6 address in brackets). */
int vi_host_parse_uri(const char *uri, struct vi_host_entry *e);

/* The inventory; empty when there is no hosts.yaml. */
int vi_hosts_load(const struct vi_store *s, struct vi_hosts *h);
int vi_hosts_save(const struct vi_store *s, const struct vi_hosts *h);
struct vi_host_entry *vi_hosts_find(struct vi_hosts *h, const char *name);
/* The host named, from the inventory: VI_ENOTFOUND "unknown host 'NAME'"
 * otherwise. *out points into h. */
int vi_hosts_get(struct vi_hosts *h, const char *name, struct vi_host_entry **out);
void vi_host_entry_release(struct vi_host_entry *e);
void vi_hosts_release(struct vi_hosts *h);

/* The libvirt URI that reaches host e for a VM of libvirt driver `driver`
 * ("qemu", "xen"), malloc'd: e->libvirt as given, else
 * DRIVER+ssh://[USER@]ADDR[:PORT]/system, with keyfile= and no_verify=1 when
 * $VI_SSH has -i FILE and StrictHostKeyChecking=no, so that libvirt's ssh
 * reaches it as vi's does. */
char *vi_host_libvirt_uri(const struct vi_host_entry *e, const char *driver);

/* The value of the first "KEY: value" line of this machine's /proc/cpuinfo
 * ("flags", "model name"), malloc'd, or NULL. */
char *vi_cpuinfo(const char *key);

enum {
	VI_HOST_BATCH = 1u << 0, /* no prompts, a connect timeout: for queries */
	VI_HOST_TTY = 1u << 1,   /* a terminal there (ssh -t) */
};

/* The argv (NULL-terminated, the caller frees it with vi_host_argv_free) that
 * runs vi on host e with args (nargs of them, each quoted for the remote
 * shell): $VI_SSH split at blanks, or "ssh", then the options flags ask for,
 * the port, [user@]addr, and "VI --home HOME ARGS". */
char **vi_host_argv(const struct vi_host_entry *e, unsigned flags, char *const *args,
		    size_t nargs);
void vi_host_argv_free(char **argv);

/* Starts argv (from vi_host_argv) with fds 0, 1 and 2 from in_fd, out_fd and
 * err_fd (-1: this process's); the child's pid, or -1 (errno set). */
pid_t vi_host_spawn(char *const *argv, int in_fd, int out_fd, int err_fd);

/* What a run of vi on a host gave. */
struct vi_host_result {
	int status;     /* vi's exit status there; 255: ssh itself failed */
	char *out;      /* its standard output */
	char *err;      /* its standard error, trailing newline removed */
	double ms;      /* from starting ssh to its end */
};

/* Runs vi on each of the n hosts at once with the same args, standard input
 * from /dev/null, and fills res[i]; returns once all have ended or timeout_ms
 * passed (those still running are killed: status 255, err says so). */
void vi_hosts_run(const struct vi_host_entry *const *hosts, size_t n, char *const *args,
		  size_t nargs, unsigned timeout_ms, struct vi_host_result *res);
void vi_host_result_release(struct vi_host_result *r);

/* A host's answer to `vi --json host info`: info (NULL when it did not
 * answer), or why not in problem ("unreachable: ...", "no vi there: ...").
 * status and reason are as ssh left them: vi's exit status there (255: ssh
 * failed) and the one line of its error. */
struct vi_host_answer {
	const struct vi_host_entry *e;
	struct json_object *info;
	int status;
	char *reason;
	char *problem;
	double ms;
};

/* How long a host may take to answer `vi host info`. */
#define VI_HOST_INFO_TIMEOUT_MS 30000

/* Asks each of the n hosts at once for its `vi host info`; a[i] gets host
 * i's answer, released with vi_host_answer_release. */
void vi_hosts_ask(const struct vi_host_entry *const *hosts, size_t n, struct vi_host_answer *a);
void vi_host_answer_release(struct vi_host_answer *a);

/* The host of the inventory that best takes a VM of memory bytes on backend
 * hv: asked all at once, the reachable ones other than this machine (its
 * store s) with hv usable and more memory free than the VM needs, the one
 * with the most free, or where free memory is alike (within a sixteenth),
 * the one running fewer VMs. *out points
 * into h. None: VI_ENOTFOUND "no host can take VM 'NAME': ..." saying why
 * each could not. */
int vi_hosts_least_loaded(const struct vi_store *s, const struct vi_hosts *h,
			  const struct vi_vm *vm, const struct vi_host_entry **out);
/* The choice of that among n answers (home and hostname: this machine's). */
int vi_hosts_pick(const struct vi_host_answer *a, size_t n, const struct vi_vm *vm,
		  const char *home, const char *hostname, const struct vi_host_entry **out);

/* The one line that says why ssh could not reach a host, from its standard
 * error: its last line, or "ssh failed" when there is none. Static storage. */
const char *vi_host_ssh_reason(const char *err);

#endif
