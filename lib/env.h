/* Environments (vi-env(5)): several machines and the private networks between
 * them, described in one YAML file and brought up, cloned, snapshotted and
 * torn down together by `vi env`. This part reads and checks the file; the
 * machines are ordinary VMs named ENV-MACHINE (ENV-MACHINE-N for a count),
 * labelled vi.env=ENV. */
#ifndef VI_ENV_H
#define VI_ENV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "sha256.h"

/* The NIC of a machine that is not on a private network: user-mode
 * networking, the host's LAN and the internet through NAT, and forwards. */
#define VI_ENV_USER_NET "user"
/* The label every machine of an environment has: vi.env=NAME (a key of
 * vi's own: users label their VMs env=prod). */
#define VI_ENV_LABEL "vi.env"
/* The most machines of one name (count). */
#define VI_ENV_MAX_COUNT 64

struct vi_env_machine {
	char *name;      /* as in the file: "web" */
	char *template;  /* a template name, path or sha256:HEX */
	unsigned count;  /* 1...VI_ENV_MAX_COUNT: web-1..web-N when more than 1 */
	unsigned cpus;   /* 0: the template's */
	uint64_t memory; /* 0: the template's */
	char *hv;        /* NULL: the template's choice */
	char **networks; /* private networks of the environment, or "user" */
	size_t nnetworks;
	char **forwards; /* "[ADDR:]HOST:GUEST[/udp]": the first instance's; the
			  * next instances take the next free host ports */
	size_t nforwards;
	char **depends; /* machines started and ready before this one */
	size_t ndepends;
	char *user_data;              /* absolute path, or NULL */
	bool ready_ssh;               /* up waits for its SSH server (else only for it to run) */
	char digest[SHA256_HEX_SIZE]; /* of its definition: what `up` compares */
};

struct vi_env {
	char *name;
	char *path; /* the file, absolute */
	char **networks;
	size_t nnetworks;
	struct vi_env_machine *machines;
	size_t nmachines;
	size_t *order; /* machine indexes, each after all it depends on */
};

/* Reads and checks an environment file. Errors are one line,
 * "FILE:LINE:COL: what" (VI_EUSAGE; VI_ENOTFOUND for a missing file or
 * user-data file), with a did-you-mean for unknown keys and names. */
int vi_env_load(const char *path, struct vi_env *env);
void vi_env_release(struct vi_env *env);

/* The VM name of instance i (0-based) of machine m: ENV-NAME, or
 * ENV-NAME-(i+1) when it has a count above 1. malloc'd. */
char *vi_env_vm_name(const struct vi_env *env, const struct vi_env_machine *m, unsigned i);

/* Forward f with its host port moved up by i. malloc'd. */
char *vi_env_forward(const char *f, unsigned i);
/* A forward "[ADDR:]HOST:GUEST[/udp]": its address (127.0.0.1 when it names
 * none), host port and protocol; false when it is not one. */
bool vi_env_forward_parse(const char *f, char addr[64], unsigned *port, bool *udp);

#endif
