/* Unit tests: environment files (vi-env(5)), read and checked. */
#include "env.h"
#include "error.h"
#include "tap.h"
#include "util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];
static struct vi_env env;

static int load(const char *text)
{
	char *path = xasprintf("%s/e.yaml", dir);
	int rc;

	vi_env_release(&env);
	vi_write_file_atomic(path, text, strlen(text), 0644);
	rc = vi_env_load(path, &env);
	free(path);
	return rc;
}

/* The error of a file that must not load, without its path. */
static const char *error_of(const char *text)
{
	static char msg[512];
	const char *m;

	if (load(text) == 0)
		return "(loaded)";
	m = vi_error_message();
	snprintf(msg, sizeof(msg), "%s", strstr(m, "e.yaml:") ? strstr(m, "e.yaml:") + 7 : m);
	return msg;
}

#define HEAD "name: shop\nnetworks: [backend]\nmachines:\n"

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/vi-unit-env-XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	char *ud = xasprintf("%s/web-init.yaml", dir);
	vi_write_file_atomic(ud, "#cloud-config\n", 14, 0644);

	is_int(load(HEAD "  db:\n    template: tiny\n    memory: 1G\n    networks: [backend]\n"
			 "  web:\n    template: tiny\n    count: 3\n    networks: [backend, "
			 "user]\n"
			 "    forward: [\"8080:80\"]\n    depends: [db]\n"
			 "    user-data: ./web-init.yaml\n"),
	       0, "the issue's environment loads");
	is_str(env.name, "shop", "its name");
	is_int((int)env.nnetworks, 1, "one private network");
	is_int((int)env.nmachines, 2, "two machines");
	is_int((int)env.machines[1].count, 3, "web counts three");
	is_str(env.machines[1].user_data, ud, "user-data beside the file");
	is_int((int)(env.machines[0].memory >> 20), 1024, "db's memory");
	is_int((int)env.order[0], 0, "db comes first");
	char *n = vi_env_vm_name(&env, &env.machines[1], 2);
	is_str(n, "shop-web-3", "web's third VM");
	free(n);
	n = vi_env_vm_name(&env, &env.machines[0], 0);
	is_str(n, "shop-db", "one of a kind: no number");
	free(n);
	char first[SHA256_HEX_SIZE];
	memcpy(first, env.machines[1].digest, sizeof(first));

	/* Dependencies order the machines whatever order the file has. */
	is_int(load(HEAD "  c:\n    template: t\n    depends: [b]\n"
			 "  b:\n    template: t\n    depends: a\n  a:\n    template: t\n"),
	       0, "a chain written backwards");
	is_int((int)env.order[0], 2, "a first");
	is_int((int)env.order[1], 1, "then b");
	is_int((int)env.order[2], 0, "then c");

	/* The digest follows the definition, and the user-data file's contents. */
	is_int(load(HEAD "  db:\n    template: tiny\n    memory: 1G\n    networks: [backend]\n"
			 "  web:\n    template: tiny\n    count: 3\n    networks: [backend, "
			 "user]\n"
			 "    forward: [\"8080:80\"]\n    depends: [db]\n"
			 "    user-data: ./web-init.yaml\n"),
	       0, "the same file again");
	is_str(env.machines[1].digest, first, "the same digest");
	vi_write_file_atomic(ud, "#cloud-config\nruncmd: [true]\n", 29, 0644);
	is_int(load(HEAD "  db:\n    template: tiny\n    memory: 1G\n    networks: [backend]\n"
			 "  web:\n    template: tiny\n    count: 3\n    networks: [backend, "
			 "user]\n"
			 "    forward: [\"8080:80\"]\n    depends: [db]\n"
			 "    user-data: ./web-init.yaml\n"),
	       0, "its user-data changed");
	ok(strcmp(env.machines[1].digest, first) != 0, "another digest");

	/* Forwards of the next instances. */
	n = vi_env_forward("8080:80", 2);
	is_str(n, "8082:80", "a port two up");
	free(n);
	n = vi_env_forward("0.0.0.0:53:53/udp", 1);
	is_str(n, "0.0.0.0:54:53/udp", "an address and a protocol kept");
	free(n);

	/* Mistakes: one line each, where they are. */
	is_str(error_of(HEAD "  db:\n    templte: tiny\n"),
	       "5:5: unknown key 'templte'; did you mean 'template'?", "a misspelt key");
	is_str(error_of(HEAD "  db:\n    template: tiny\n    networks: [backnd]\n"),
	       "6:16: unknown network 'backnd'; did you mean 'backend'?", "an unknown network");
	is_str(error_of(HEAD "  db:\n    template: tiny\n    depends: [db]\n"),
	       "6:15: machine 'db' depends on itself", "a machine on itself");
	is_str(error_of(HEAD "  db:\n    template: tiny\n  web:\n    template: tiny\n"
			     "    depends: [dbb]\n"),
	       "8:15: unknown machine 'dbb'; did you mean 'db'?", "an unknown dependency");
	is_str(error_of(HEAD "  a:\n    template: t\n    depends: [b]\n  b:\n    template: t\n"
			     "    depends: [a]\n"),
	       "4:3: machine 'a' depends on itself through others", "a cycle");
	is_str(error_of(HEAD "  db:\n    template: tiny\n    count: 0\n"),
	       "6:12: invalid count '0': must be from 1 to 64", "no machines of a name");
	is_str(error_of(HEAD "  web:\n    template: tiny\n    networks: [backend]\n"
			     "    forward: [\"80\"]\n"),
	       "7:15: bad forward '80': expected [ADDR:]HOST:GUEST[/udp]", "a bad forward");
	is_str(error_of(HEAD "  web:\n    template: tiny\n    networks: [backend]\n"
			     "    forward: [\"8080:80\"]\n"),
	       "7:14: 'forward' needs the 'user' network: add it to 'networks'",
	       "a forward with no way in");
	is_str(error_of(HEAD "  db:\n    template: tiny\n    user-data: nope.yaml\n"),
	       "6:16: no user-data file 'nope.yaml'", "a missing user-data file");
	is_str(error_of(HEAD "  db:\n    template: tiny\n    ready: pong\n"),
	       "6:12: unknown readiness 'pong'", "an unknown readiness");
	is_str(error_of("name: shop\nnetworks: [user]\nmachines:\n  db:\n    template: t\n"),
	       "2:12: 'user' is the host's network, not a private one: name it under a "
	       "machine's "
	       "networks",
	       "user is not private");
	is_str(error_of("name: sh op\nmachines:\n  db:\n    template: t\n"),
	       "1:7: invalid environment name 'sh op': only letters, digits, '.', "
	       "'_' and '-' are "
	       "allowed",
	       "a bad name");
	is_str(error_of("name: shop\nmachines: []\n"),
	       "2:11: 'machines' must map each machine's name to its definition", "no machines");
	is_str(error_of(HEAD "  web:\n    template: t\n    count: 2\n  web-1:\n    template: t\n"),
	       "7:3: machines 'web' and 'web-1' both make VM 'shop-web-1'", "names that meet");
	vi_env_release(&env);
	unlink(ud);
	free(ud);
	char *path = xasprintf("%s/e.yaml", dir);
	unlink(path);
	free(path);
	rmdir(dir);
	return done();
}
