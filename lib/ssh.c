/* SSH into guests: keys, targets and ssh command lines. */
#include "ssh.h"
#include "error.h"
#include "forward.h"
#include "util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <unistd.h>

/* Runs ssh-keygen for a new ed25519 key at path (no passphrase). */
static int keygen_at(const char *path, const char *comment)
{
	char *argv[] = { "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", (char *)comment,
			 "-f", (char *)path, NULL };
	int st = vi_run_fds(argv, -1, -1, -1);

	if (st == -VI_ENOTFOUND)
		return vi_error(VI_ENOTFOUND, "cannot make an SSH key: no ssh-keygen "
					      "(package openssh-client)");
	if (st < 0)
		return st;
	if (st != 0)
		return vi_error(VI_EFAIL, "ssh-keygen failed (exit %d) making '%s'", st, path);
	return 0;
}

/* A public key file's first line, without its newline. */
static int read_line(const char *path, char **line)
{
	size_t len;
	int rc = vi_read_file(path, line, &len);

	if (rc == 0)
		(*line)[strcspn(*line, "\n")] = 0;
	return rc;
}

int vi_ssh_store_key(const struct vi_store *s, char **path, char **pub)
{
	char *dir = vi_store_path(s, "ssh"), *key = xasprintf("%s/id_ed25519", dir);
	char *pubpath = xasprintf("%s.pub", key), *lock = xasprintf("%s/.lock", dir);
	int rc, fd = -1;

	if ((rc = vi_mkdir_p(dir, 0700)) < 0)
		goto out;
	/* Two first commands at once make one key. */
	if ((fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC, 0600)) < 0 || flock(fd, LOCK_EX) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot lock '%s'", lock);
		goto out;
	}
	if (!vi_file_exists(pubpath)) {
		char *tmp = xasprintf("%s/.id_ed25519.%d", dir, (int)getpid());
		char *tmppub = xasprintf("%s.pub", tmp);
		unlink(tmp);
		unlink(tmppub);
		if ((rc = keygen_at(tmp, "vi")) == 0 &&
		    (rename(tmp, key) < 0 || rename(tmppub, pubpath) < 0))
			rc = vi_error_errno(VI_EFAIL, errno, "cannot make '%s'", key);
		unlink(tmp);
		unlink(tmppub);
		free(tmp);
		free(tmppub);
		if (rc < 0)
			goto out;
	}
	if (pub && (rc = read_line(pubpath, pub)) < 0)
		goto out;
	if (path) {
		*path = key;
		key = NULL;
	}
out:
	if (fd >= 0)
		close(fd);
	free(dir);
	free(key);
	free(pubpath);
	free(lock);
	return rc;
}

int vi_ssh_keygen(char **priv, char **pub)
{
	const char *tmpdir = getenv("TMPDIR");
	char *dir = xasprintf("%s/vi-key.XXXXXX", tmpdir && *tmpdir ? tmpdir : "/tmp");
	char *key = NULL, *pubpath = NULL;
	size_t len;
	int rc;

	*priv = *pub = NULL;
	if (!mkdtemp(dir)) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot make a directory in '%s'",
				    tmpdir && *tmpdir ? tmpdir : "/tmp");
		free(dir);
		return rc;
	}
	key = xasprintf("%s/key", dir);
	pubpath = xasprintf("%s.pub", key);
	if ((rc = keygen_at(key, "")) == 0 && (rc = vi_read_file(key, priv, &len)) == 0 &&
	    (rc = read_line(pubpath, pub)) == 0) {
		/* "TYPE BASE64 " with an empty comment: drop the trailing blank. */
		size_t n = strlen(*pub);
		while (n && (*pub)[n - 1] == ' ')
			(*pub)[--n] = 0;
	}
	unlink(key);
	unlink(pubpath);
	rmdir(dir);
	free(key);
	free(pubpath);
	free(dir);
	if (rc < 0) {
		free(*priv);
		free(*pub);
		*priv = *pub = NULL;
	}
	return rc;
}

static bool is_public_key(const char *line)
{
	static const char *const types[] = { "ssh-ed25519 ", "ssh-rsa ", "ecdsa-sha2-", "ssh-dss ",
					     "sk-ssh-ed25519@openssh.com ", "sk-ecdsa-sha2-" };
	for (size_t i = 0; i < ARRAY_SIZE(types); i++)
		if (!strncmp(line, types[i], strlen(types[i])))
			return true;
	return false;
}

int vi_ssh_read_keys(const char *path, char ***keys, size_t *n)
{
	char *text, *line, *save = NULL;
	size_t len, lineno = 0;
	int rc;

	*keys = NULL;
	*n = 0;
	if ((rc = vi_read_regular_file(path, 1 << 20, &text, &len)) < 0)
		return rc;
	for (char *p = text; (line = strtok_r(p, "\n", &save)); p = NULL) {
		lineno++;
		line[strcspn(line, "\r")] = 0;
		while (*line == ' ' || *line == '\t')
			line++;
		if (!*line || *line == '#')
			continue;
		if (!is_public_key(line)) {
			rc = vi_error(VI_EUSAGE, "%s:%zu: not an SSH public key (is it the private key?)",
				      path, lineno);
			break;
		}
		*keys = xrealloc(*keys, (*n + 1) * sizeof(**keys));
		(*keys)[(*n)++] = xstrdup(line);
	}
	if (rc == 0 && *n == 0)
		rc = vi_error(VI_EUSAGE, "'%s' holds no SSH public key", path);
	free(text);
	if (rc < 0) {
		for (size_t i = 0; i < *n; i++)
			free((*keys)[i]);
		free(*keys);
		*keys = NULL;
		*n = 0;
	}
	return rc;
}

/* Where the host reaches the guest's SSH server through its first NIC that
 * leads there. */
static int find_endpoint(struct vi_machine *m, struct vi_ssh_target *t)
{
	const struct vi_vm *vm = &m->def;
	char buf[64];
	int rc = -VI_EUNSUPPORTED;

	if (!vm->nnics)
		return vi_error(VI_EUNSUPPORTED,
				"VM '%s' has no network card: nothing reaches its SSH server "
				"(create it with --nic user)",
				vm->name);
	for (size_t i = 0; i < vm->nnics; i++) {
		const struct vi_vm_nic *n = &vm->nics[i];
		const struct vi_vm_forward *f = vi_vm_nic_forward(n, VI_SSH_GUEST_PORT);
		bool user = !strcmp(n->mode, "user");

		rc = vi_hv_nic_address(m->hv, &m->view.vm, i, buf, sizeof(buf));
		if (rc == 0)
			t->guest_addr = xstrdup(buf);
		if (user && f) {
			t->addr = xstrdup(strcmp(f->host_addr, "0.0.0.0") ? f->host_addr
									 : "127.0.0.1");
			t->port = f->host_port;
			if (!t->guest_addr)
				t->guest_addr = xstrdup(VI_HV_USER_GUEST_IP);
			vi_error_clear();
			return 0;
		}
		if (rc == 0 && !user) {
			t->addr = xstrdup(buf);
			t->port = VI_SSH_GUEST_PORT;
			return 0;
		}
		free(t->guest_addr);
		t->guest_addr = NULL;
	}
	if (rc == -VI_ENOTFOUND)
		return vi_error(VI_ESTATE, "VM '%s' has no address yet (no DHCP lease on its %s NIC)",
				vm->name, vm->nics[0].mode);
	if (vi_vm_user_nic(vm))
		return vi_error(VI_EUNSUPPORTED,
				"VM '%s' forwards no host port to its port 22 "
				"(add one with 'vi forward add %s 0:22')",
				vm->name, vm->name);
	return vi_error(VI_EUNSUPPORTED,
			"VM '%s' has no address vi can find: its backend reports none on its "
			"%s NIC (%s)",
			vm->name, vm->nics[0].mode, vi_error_message());
}

int vi_ssh_target(const struct vi_store *s, struct vi_machine *m, struct vi_ssh_target *t)
{
	struct vi_hv_state st;
	char *kh;
	int rc;

	memset(t, 0, sizeof(*t));
	vi_machine_state(m, &st);
	if (st.state != VI_HV_RUNNING)
		return vi_error(VI_ESTATE, "VM '%s' is %s: start it first", m->def.name,
				vi_hv_state_name(st.state));
	if (!m->def.user)
		return vi_error(VI_EUNSUPPORTED,
				"VM '%s' has no login user: it was made neither from a template "
				"nor with --user",
				m->def.name);
	if ((rc = find_endpoint(m, t)) < 0 || (rc = vi_ssh_store_key(s, &t->key, NULL)) < 0) {
		vi_ssh_target_release(t);
		return rc;
	}
	t->user = xstrdup(m->def.user);
	t->alias = xstrdup(m->def.name);
	kh = xasprintf("%s/%s", m->dir, VI_SSH_KNOWN_HOSTS);
	t->known_hosts = kh;
	return 0;
}

void vi_ssh_target_release(struct vi_ssh_target *t)
{
	free(t->user);
	free(t->addr);
	free(t->guest_addr);
	free(t->key);
	free(t->known_hosts);
	free(t->alias);
	memset(t, 0, sizeof(*t));
}

struct strv {
	char **v;
	size_t n;
};

static void push(struct strv *a, char *s)
{
	a->v = xrealloc(a->v, (a->n + 2) * sizeof(*a->v));
	a->v[a->n++] = s;
	a->v[a->n] = NULL;
}

char **vi_ssh_argv(const struct vi_ssh_target *t, unsigned flags, char *const *command,
		   size_t ncommand)
{
	struct strv a = { 0 };
	/* The host key vi made is the one recorded: anything else is refused.
	 * A machine from before vi made host keys records its key once. */
	bool known = vi_file_exists(t->known_hosts);

	push(&a, xstrdup("ssh"));
	push(&a, xstrdup("-i"));
	push(&a, xstrdup(t->key));
	push(&a, xstrdup("-p"));
	push(&a, xasprintf("%u", t->port));
	push(&a, xstrdup("-o"));
	push(&a, xstrdup("IdentitiesOnly=yes"));
	push(&a, xstrdup("-o"));
	push(&a, xasprintf("HostKeyAlias=%s", t->alias));
	push(&a, xstrdup("-o"));
	push(&a, xasprintf("UserKnownHostsFile=%s", t->known_hosts));
	push(&a, xstrdup("-o"));
	push(&a, xstrdup("GlobalKnownHostsFile=/dev/null"));
	push(&a, xstrdup("-o"));
	push(&a, xstrdup(known ? "StrictHostKeyChecking=yes" : "StrictHostKeyChecking=accept-new"));
	push(&a, xstrdup("-o"));
	push(&a, xstrdup("CheckHostIP=no"));
	push(&a, xstrdup("-o"));
	push(&a, xstrdup("LogLevel=ERROR"));
	if (flags & VI_SSH_BATCH) {
		push(&a, xstrdup("-o"));
		push(&a, xstrdup("BatchMode=yes"));
		push(&a, xstrdup("-o"));
		push(&a, xstrdup("ConnectTimeout=5"));
	}
	if (flags & VI_SSH_QUIET)
		push(&a, xstrdup("-q"));
	if (flags & VI_SSH_TTY)
		push(&a, xstrdup("-t"));
	push(&a, xasprintf("%s@%s", t->user, t->addr));
	if (ncommand)
		push(&a, xstrdup("--"));
	for (size_t i = 0; i < ncommand; i++)
		push(&a, xstrdup(command[i]));
	return a.v;
}

char *vi_ssh_cmdline(const struct vi_ssh_target *t)
{
	char **v = vi_ssh_argv(t, 0, NULL, 0), *line = xstrdup("");

	for (size_t i = 0; v[i]; i++) {
		char *q = vi_shell_quote(v[i]), *n = xasprintf("%s%s%s", line, i ? " " : "", q);
		free(q);
		free(line);
		line = n;
	}
	vi_strv_free(v);
	return line;
}

void vi_strv_free(char **v)
{
	for (size_t i = 0; v && v[i]; i++)
		free(v[i]);
	free(v);
}

bool vi_ssh_answers(const struct vi_ssh_target *t)
{
	char *cmd[] = { "true" };
	char **argv = vi_ssh_argv(t, VI_SSH_BATCH | VI_SSH_QUIET, cmd, 1);
	int st = vi_run_fds(argv, -1, -1, -1);

	vi_strv_free(argv);
	vi_error_clear();
	return st == 0;
}
