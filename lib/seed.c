/* The first-boot seed disk (see seed.h): a FAT image made with mkfs.vfat and
 * filled with mcopy, whose cloud-init files and vi/ facts come from struct
 * vi_seed and the user's #cloud-config; and the MBR edit that lets the root
 * file system grow into a larger disk. */
#include "seed.h"
#include "error.h"
#include "image/image.h"
#include "template.h"
#include "util.h"
#include "yaml-doc.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A user's file larger than this is not user-data (cloud-init's own limit
 * is of the same order). */
#define USER_DATA_MAX (1u << 20)
#define SUDO_RULE "ALL=(ALL) NOPASSWD:ALL"

/* --- the host key ------------------------------------------------------- */

static int b64_value(char c)
{
	static const char set[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *p = c ? strchr(set, c) : NULL;
	return p ? (int)(p - set) : -1;
}

/* Decodes base64 text, skipping white space; NULL when it is not base64. */
static unsigned char *b64_decode(const char *s, size_t len, size_t *out_len)
{
	unsigned char *out = xmalloc(len / 4 * 3 + 3);
	unsigned acc = 0, bits = 0;
	size_t n = 0;

	for (size_t i = 0; i < len; i++) {
		int v = b64_value(s[i]);
		if (s[i] == '=' || s[i] == '\n' || s[i] == '\r' || s[i] == ' ')
			continue;
		if (v < 0) {
			free(out);
			return NULL;
		}
		acc = acc << 6 | (unsigned)v;
		if ((bits += 6) >= 8) {
			bits -= 8;
			out[n++] = (unsigned char)(acc >> bits);
		}
	}
	*out_len = n;
	return out;
}

static char *b64_encode(const unsigned char *p, size_t len)
{
	static const char set[] =
		"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = xmalloc((len + 2) / 3 * 4 + 1), *o = out;

	for (size_t i = 0; i < len; i += 3) {
		unsigned v = (unsigned)p[i] << 16 | (i + 1 < len ? (unsigned)p[i + 1] << 8 : 0) |
			     (i + 2 < len ? p[i + 2] : 0);
		*o++ = set[v >> 18 & 63];
		*o++ = set[v >> 12 & 63];
		*o++ = i + 1 < len ? set[v >> 6 & 63] : '=';
		*o++ = i + 2 < len ? set[v & 63] : '=';
	}
	*o = '\0';
	return out;
}

/* An SSH wire string at *p: its bytes and length, the cursor moved past. */
static bool wire_string(const unsigned char **p, const unsigned char *end,
			const unsigned char **s, size_t *len)
{
	if (end - *p < 4)
		return false;
	*len = (size_t)(*p)[0] << 24 | (size_t)(*p)[1] << 16 | (size_t)(*p)[2] << 8 | (*p)[3];
	if ((size_t)(end - *p - 4) < *len)
		return false;
	*s = *p + 4;
	*p += 4 + *len;
	return true;
}

/* The public half of an OpenSSH private ed25519 key, as an authorized_keys
 * line: the key file carries it unencrypted ahead of the private part. */
static int host_key_public(const char *key, char **pub)
{
	static const char begin[] = "-----BEGIN OPENSSH PRIVATE KEY-----";
	static const char end[] = "-----END OPENSSH PRIVATE KEY-----";
	static const char magic[] = "openssh-key-v1";
	const char *b = strstr(key, begin), *e = b ? strstr(b, end) : NULL;
	const unsigned char *p, *stop, *s, *blob = NULL;
	size_t len, n, blob_len = 0;
	unsigned char *raw;
	bool ok;

	if (!e || !(raw = b64_decode(b + strlen(begin), e - b - strlen(begin), &len)))
		return vi_error(VI_EUSAGE, "the host key is not an OpenSSH private key");
	p = raw;
	stop = raw + len;
	ok = len > sizeof(magic) && !memcmp(raw, magic, sizeof(magic));
	p += sizeof(magic);
	/* cipher, KDF, KDF options, the number of keys, the first public key */
	for (int i = 0; i < 3 && ok; i++)
		ok = wire_string(&p, stop, &s, &n);
	ok = ok && stop - p >= 4 && !memcmp(p, "\0\0\0\1", 4);
	p += 4;
	ok = ok && wire_string(&p, stop, &blob, &blob_len);
	const unsigned char *q = blob;
	ok = ok && wire_string(&q, blob + blob_len, &s, &n) && n == 11 &&
	     !memcmp(s, "ssh-ed25519", 11) && wire_string(&q, blob + blob_len, &s, &n) && n == 32;
	if (!ok) {
		free(raw);
		return vi_error(VI_EUSAGE, "the host key is not an OpenSSH ed25519 key");
	}
	char *text = b64_encode(blob, blob_len);
	*pub = xasprintf("ssh-ed25519 %s", text);
	free(text);
	free(raw);
	return 0;
}

/* --- the user's cloud-config -------------------------------------------- */

struct seed_user {
	char *name;
	struct template_strv keys;
	bool sudo;
};

/* What vi's own hook takes from the user-data. */
struct user_config {
	char *text; /* the file as is */
	size_t len;
	bool script; /* "#!": run once */
	char *hostname;
	struct template_strv keys;   /* top-level ssh_authorized_keys: the login user's */
	struct template_strv runcmd; /* shell command lines */
	struct seed_user *users;
	size_t nusers;
};

static void user_config_release(struct user_config *c)
{
	free(c->text);
	free(c->hostname);
	template_strv_release(&c->keys);
	template_strv_release(&c->runcmd);
	for (size_t i = 0; i < c->nusers; i++) {
		free(c->users[i].name);
		template_strv_release(&c->users[i].keys);
	}
	free(c->users);
	memset(c, 0, sizeof(*c));
}

/* A list of scalars under key (absent: nothing). */
static int scalar_list(struct vi_yaml *y, yaml_node_t *map, const char *key,
		       struct template_strv *out)
{
	yaml_node_t *v = vi_yaml_get(y, map, key), *item;

	if (!v)
		return 0;
	if (v->type != YAML_SEQUENCE_NODE)
		return vi_yaml_error(y, v, VI_EUSAGE, "'%s' must be a list, not %s", key,
				     vi_yaml_kind(v));
	vi_yaml_seq_foreach(y, v, item)
	{
		if (!vi_yaml_scalar(item))
			return vi_yaml_error(y, item, VI_EUSAGE,
					     "items of '%s' must be scalars, not %s", key,
					     vi_yaml_kind(item));
		template_strv_push(out, vi_yaml_scalar(item));
	}
	return 0;
}

/* s in single quotes for sh, appended to *line. */
static void append_quoted(char **line, const char *s)
{
	size_t n = strlen(*line);
	char *out = xmalloc(n + 4 * strlen(s) + 4), *o = out + n;

	memcpy(out, *line, n);
	if (n)
		*o++ = ' ';
	*o++ = '\'';
	for (; *s; s++) {
		if (*s == '\'') {
			memcpy(o, "'\\''", 4);
			o += 4;
		} else {
			*o++ = *s;
		}
	}
	*o++ = '\'';
	*o = '\0';
	free(*line);
	*line = out;
}

/* runcmd items as cloud-init runs them: a string through sh, a list as the
 * words of one command. */
static int parse_runcmd(struct vi_yaml *y, yaml_node_t *root, struct template_strv *out)
{
	yaml_node_t *v = vi_yaml_get(y, root, "runcmd"), *item, *word;

	if (!v)
		return 0;
	if (v->type != YAML_SEQUENCE_NODE)
		return vi_yaml_error(y, v, VI_EUSAGE, "'runcmd' must be a list, not %s",
				     vi_yaml_kind(v));
	vi_yaml_seq_foreach(y, v, item)
	{
		if (vi_yaml_scalar(item)) {
			template_strv_push(out, vi_yaml_scalar(item));
			continue;
		}
		if (item->type != YAML_SEQUENCE_NODE)
			return vi_yaml_error(y, item, VI_EUSAGE,
					     "items of 'runcmd' must be strings or lists, not %s",
					     vi_yaml_kind(item));
		char *line = xstrdup("");
		vi_yaml_seq_foreach(y, item, word)
		{
			if (!vi_yaml_scalar(word)) {
				free(line);
				return vi_yaml_error(y, word, VI_EUSAGE,
						     "words of a 'runcmd' command must be scalars");
			}
			append_quoted(&line, vi_yaml_scalar(word));
		}
		template_strv_push(out, line);
		free(line);
	}
	return 0;
}

/* users: "default" (the login user, who is vi's) or mappings. */
static int parse_users(struct vi_yaml *y, yaml_node_t *root, struct user_config *c)
{
	yaml_node_t *v = vi_yaml_get(y, root, "users"), *item, *sudo;
	int rc;

	if (!v)
		return 0;
	if (v->type != YAML_SEQUENCE_NODE)
		return vi_yaml_error(y, v, VI_EUSAGE, "'users' must be a list, not %s",
				     vi_yaml_kind(v));
	vi_yaml_seq_foreach(y, v, item)
	{
		const char *name = NULL;
		if (vi_yaml_scalar(item) && !strcmp(vi_yaml_scalar(item), "default"))
			continue;
		if ((rc = vi_yaml_expect_map(y, item, "a user")) < 0 ||
		    (rc = vi_yaml_get_str(y, item, "name", true, &name)) < 0)
			return rc;
		if (vi_check_name(name, "user") < 0)
			return vi_yaml_error(y, vi_yaml_get(y, item, "name"), VI_EUSAGE, "%s",
					     vi_error_message());
		c->users = xrealloc(c->users, (c->nusers + 1) * sizeof(*c->users));
		struct seed_user *u = &c->users[c->nusers++];
		memset(u, 0, sizeof(*u));
		u->name = xstrdup(name);
		/* sudo: a rule (or a list of them); false or absent: none */
		sudo = vi_yaml_get(y, item, "sudo");
		u->sudo = sudo && !(vi_yaml_scalar(sudo) && (!strcmp(vi_yaml_scalar(sudo), "false") ||
							     !strcmp(vi_yaml_scalar(sudo), "False") ||
							     !*vi_yaml_scalar(sudo)));
		if ((rc = scalar_list(y, item, "ssh_authorized_keys", &u->keys)) < 0)
			return rc;
	}
	return 0;
}

/* Reads the user's file: a #cloud-config is parsed for what vi's hook
 * applies, a "#!" script is run once, anything else is cloud-init's only. */
static int user_config_read(const char *path, struct user_config *c)
{
	struct vi_yaml y;
	yaml_node_t *root;
	const char *hostname = NULL;
	int rc;

	memset(c, 0, sizeof(*c));
	if ((rc = vi_read_regular_file(path, USER_DATA_MAX, &c->text, &c->len)) < 0)
		return rc;
	if (!strncmp(c->text, "#!", 2)) {
		c->script = true;
		return 0;
	}
	if (strncmp(c->text, "#cloud-config", 13) || !strchr(" \t\r\n", c->text[13] ? c->text[13] : ' '))
		return 0;
	if ((rc = vi_yaml_load_string(&y, path, c->text, c->len)) < 0)
		return rc;
	root = vi_yaml_root(&y);
	if (root && (rc = vi_yaml_expect_map(&y, root, "a #cloud-config")) == 0 &&
	    (rc = vi_yaml_get_str(&y, root, "hostname", false, &hostname)) >= 0 &&
	    (rc = scalar_list(&y, root, "ssh_authorized_keys", &c->keys)) == 0 &&
	    (rc = parse_runcmd(&y, root, &c->runcmd)) == 0)
		rc = parse_users(&y, root, c);
	if (rc >= 0 && hostname) {
		if (vi_check_name(hostname, "host") < 0)
			rc = vi_yaml_error(&y, vi_yaml_get(&y, root, "hostname"), VI_EUSAGE, "%s",
					   vi_error_message());
		else
			c->hostname = xstrdup(hostname);
	}
	vi_yaml_release(&y);
	return rc < 0 ? rc : 0;
}

/* --- the files ---------------------------------------------------------- */

static char *join_lines(const char *const *v, size_t n)
{
	size_t len = 1;
	for (size_t i = 0; i < n; i++)
		len += strlen(v[i]) + 1;
	char *out = xmalloc(len), *o = out;
	for (size_t i = 0; i < n; i++)
		o += sprintf(o, "%s\n", v[i]);
	*o = '\0';
	return out;
}

static int put(const char *dir, const char *name, const char *text)
{
	char *path = xasprintf("%s/%s", dir, name);
	int rc = vi_write_file_atomic(path, text, strlen(text), 0600);
	free(path);
	return rc;
}

static int put_lines(const char *dir, const char *name, const struct template_strv *l)
{
	char *text = join_lines((const char *const *)l->v, l->n);
	int rc = put(dir, name, text);
	free(text);
	return rc;
}

static void out_list(struct vi_yaml_out *o, const char *key, const struct template_strv *l)
{
	vi_yaml_out_scalar(o, key);
	vi_yaml_out_seq_start(o);
	for (size_t i = 0; i < l->n; i++)
		vi_yaml_out_scalar(o, l->v[i]);
	vi_yaml_out_end(o);
}

static int put_yaml(const char *dir, const char *name, const char *head, struct vi_yaml_out *o)
{
	char *text, *full;
	int rc = vi_yaml_out_finish(o, &text, NULL);

	if (rc < 0)
		return rc;
	full = xasprintf("%s%s", head, text);
	rc = put(dir, name, full);
	free(full);
	free(text);
	return rc;
}

/* vi's #cloud-config: the login user, its keys and sudo, the host name and
 * vi's host key, so that cloud-init images end up as vi's hook leaves
 * others. */
static int put_cloud_config(const char *dir, const char *name, const struct vi_seed *s,
			    const struct template_strv *keys, const char *pub)
{
	struct vi_yaml_out o;
	bool root = !strcmp(s->user, "root");

	vi_yaml_out_init(&o);
	vi_yaml_out_map_start(&o);
	vi_yaml_out_str(&o, "hostname", s->hostname);
	if (root) {
		vi_yaml_out_bool(&o, "disable_root", false);
		out_list(&o, "ssh_authorized_keys", keys);
	} else {
		vi_yaml_out_scalar(&o, "users");
		vi_yaml_out_seq_start(&o);
		vi_yaml_out_map_start(&o);
		vi_yaml_out_str(&o, "name", s->user);
		vi_yaml_out_str(&o, "shell", "/bin/bash");
		vi_yaml_out_str(&o, "sudo", SUDO_RULE);
		out_list(&o, "ssh_authorized_keys", keys);
		vi_yaml_out_end(&o);
		vi_yaml_out_end(&o);
	}
	if (s->host_key) {
		vi_yaml_out_scalar(&o, "ssh_keys");
		vi_yaml_out_map_start(&o);
		vi_yaml_out_str(&o, "ed25519_private", s->host_key);
		vi_yaml_out_str(&o, "ed25519_public", pub);
		vi_yaml_out_end(&o);
	}
	vi_yaml_out_end(&o);
	return put_yaml(dir, name, "#cloud-config\n", &o);
}

static int put_meta_data(const char *dir, const struct vi_seed *s)
{
	struct vi_yaml_out o;

	vi_yaml_out_init(&o);
	vi_yaml_out_map_start(&o);
	vi_yaml_out_str(&o, "instance-id", s->instance_id);
	vi_yaml_out_str(&o, "local-hostname", s->hostname);
	vi_yaml_out_end(&o);
	return put_yaml(dir, "meta-data", "", &o);
}

/* vi/: one fact per file, for the hook of images without cloud-init. */
static int put_facts(const char *dir, const struct vi_seed *s, const struct user_config *c,
		     const struct template_strv *keys, const char *pub)
{
	char *vi = xasprintf("%s/vi", dir), *line;
	int rc = 0;

	if (mkdir(vi, 0700) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot create '%s'", vi);
		goto cleanup;
	}
	line = xasprintf("%s\n", s->instance_id);
	rc = put(vi, "instance-id", line);
	free(line);
	line = xasprintf("%s\n", c->hostname ? c->hostname : s->hostname);
	if (rc == 0)
		rc = put(vi, "hostname", line);
	free(line);
	line = xasprintf("%s\n", s->user);
	if (rc == 0)
		rc = put(vi, "user", line);
	free(line);
	if (rc == 0)
		rc = put_lines(vi, "authorized_keys", keys);
	if (rc == 0 && strcmp(s->user, "root"))
		rc = put(vi, "sudo", "");
	if (rc == 0 && s->host_key) {
		line = xasprintf("%s\n", pub);
		if ((rc = put(vi, "ssh_host_ed25519_key", s->host_key)) == 0)
			rc = put(vi, "ssh_host_ed25519_key.pub", line);
		free(line);
	}
	if (rc == 0 && s->grow_root)
		rc = put(vi, "grow-root", "");
	if (rc == 0 && c->runcmd.n)
		rc = put_lines(vi, "runcmd", &c->runcmd);
	if (rc == 0 && c->script)
		rc = put(vi, "script", c->text);
	/* Other users the #cloud-config names: users/NAME/{authorized_keys,sudo} */
	for (size_t i = 0; i < c->nusers && rc == 0; i++) {
		const struct seed_user *u = &c->users[i];
		if (!strcmp(u->name, s->user))
			continue;
		char *users = xasprintf("%s/users", vi), *home = xasprintf("%s/%s", users, u->name);
		if ((mkdir(users, 0700) < 0 && errno != EEXIST) || mkdir(home, 0700) < 0)
			rc = vi_error_errno(VI_EFAIL, errno, "cannot create '%s'", home);
		if (rc == 0)
			rc = put_lines(home, "authorized_keys", &u->keys);
		if (rc == 0 && u->sudo)
			rc = put(home, "sudo", "");
		free(users);
		free(home);
	}
cleanup:
	free(vi);
	return rc;
}

/* --- the disk ----------------------------------------------------------- */

static int run_tool(char *const argv[], const char *log, const char *package)
{
	int rc = vi_run(argv, log);

	if (rc == -VI_ENOTFOUND)
		return vi_error(VI_ENOTFOUND, "cannot make the seed disk: '%s' is not installed "
				"(package %s)", argv[0], package);
	if (rc > 0) {
		char *text = NULL;
		size_t len;
		if (vi_read_file(log, &text, &len) == 0)
			while (len && text[len - 1] == '\n')
				text[--len] = '\0';
		vi_error_clear();
		rc = vi_error(VI_EFAIL, "cannot make the seed disk: '%s' failed: %s", argv[0],
			      text && *text ? text : "no message");
		free(text);
	}
	return rc;
}

/* The bytes of the files under dir, for the size of the file system. */
static int count_bytes(const char *path, const struct stat *st, void *arg)
{
	(void)path;
	/* a cluster of up to 4 KiB each, and a directory entry's share */
	*(uint64_t *)arg += (uint64_t)st->st_size + 4096 + 512;
	return 0;
}

static int make_fat(const char *stage, const char *files, const char *img)
{
	static const char *const top[] = { "meta-data", "user-data", "vendor-data", "vi" };
	char *log = xasprintf("%s/log", stage), kib[32];
	uint64_t bytes = 0;
	int rc;

	vi_walk(files, count_bytes, &bytes);
	snprintf(kib, sizeof(kib), "%llu", (unsigned long long)(1024 + bytes / 1024 * 2));
	char *mkfs[] = { "mkfs.vfat", "-C", "-n", "CIDATA", (char *)img, kib, NULL };
	if ((rc = run_tool(mkfs, log, "dosfstools")) != 0)
		goto cleanup;
	/* mcopy -s copies the vi/ tree; long names (meta-data, vi/ssh_host_...)
	 * are VFAT names. */
	char *argv[ARRAY_SIZE(top) + 7] = { "mcopy", "-s", "-i", (char *)img };
	char *paths[ARRAY_SIZE(top)];
	size_t n = 4, np = 0;
	for (size_t i = 0; i < ARRAY_SIZE(top); i++) {
		paths[np] = xasprintf("%s/%s", files, top[i]);
		if (vi_file_exists(paths[np]))
			argv[n++] = paths[np++];
		else
			free(paths[np]);
	}
	argv[n++] = "::";
	argv[n] = NULL;
	rc = run_tool(argv, log, "mtools");
	for (size_t i = 0; i < np; i++)
		free(paths[i]);
cleanup:
	free(log);
	return rc;
}

static int durable(const char *path)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	int rc = fd >= 0 && fsync(fd) == 0 ? 0 : -1;

	if (rc < 0)
		rc = vi_error_errno(VI_EFAIL, errno, "cannot write '%s'", path);
	if (fd >= 0)
		close(fd);
	return rc;
}

int vi_seed_write(const char *path, const struct vi_seed *s)
{
	struct user_config c = { 0 };
	struct template_strv keys = { 0 };
	char *pub = NULL, *copy = xstrdup(path), *slash = strrchr(copy, '/');
	char *stage = NULL, *files = NULL, *img = NULL;
	int rc;

	if (!s->instance_id || !s->hostname || !s->user) {
		rc = vi_error(VI_EUSAGE, "a seed needs an instance ID, a host name and a user");
		goto cleanup;
	}
	if ((rc = vi_check_name(s->instance_id, "instance")) < 0 ||
	    (rc = vi_check_name(s->user, "user")) < 0 ||
	    (rc = vi_check_name(s->hostname, "host")) < 0)
		goto cleanup;
	if (s->host_key && (rc = host_key_public(s->host_key, &pub)) < 0)
		goto cleanup;
	if (s->user_data && (rc = user_config_read(s->user_data, &c)) < 0)
		goto cleanup;
	for (size_t i = 0; i < s->nkeys; i++)
		template_strv_push(&keys, s->keys[i]);
	for (size_t i = 0; i < c.keys.n; i++)
		template_strv_push(&keys, c.keys.v[i]);
	for (size_t i = 0; i < c.nusers; i++)
		if (!strcmp(c.users[i].name, s->user))
			for (size_t k = 0; k < c.users[i].keys.n; k++)
				template_strv_push(&keys, c.users[i].keys.v[k]);

	/* Staged beside path (same file system), renamed over it at the end. */
	stage = slash ? xasprintf("%.*s/.seed-XXXXXX", (int)(slash - copy), copy)
		      : xstrdup(".seed-XXXXXX");
	if (!mkdtemp(stage)) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot create a directory beside '%s'",
				    path);
		free(stage);
		stage = NULL;
		goto cleanup;
	}
	files = xasprintf("%s/files", stage);
	img = xasprintf("%s/seed.img", stage);
	if (mkdir(files, 0700) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot create '%s'", files);
		goto cleanup;
	}
	if ((rc = put_meta_data(files, s)) < 0 || (rc = put_facts(files, s, &c, &keys, pub)) < 0)
		goto cleanup;
	/* The user's file goes as is; vi's settings then reach cloud-init as
	 * vendor-data, which the user's override. */
	if (c.text) {
		if ((rc = put(files, "user-data", c.text)) == 0)
			rc = put_cloud_config(files, "vendor-data", s, &keys, pub);
	} else {
		rc = put_cloud_config(files, "user-data", s, &keys, pub);
	}
	if (rc < 0 || (rc = make_fat(stage, files, img)) < 0)
		goto cleanup;
	/* It holds a private key. */
	if (chmod(img, 0600) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot change the mode of '%s'", img);
		goto cleanup;
	}
	if ((rc = durable(img)) < 0)
		goto cleanup;
	if (rename(img, path) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot write '%s'", path);
		goto cleanup;
	}
	/* and the rename itself */
	if (slash) {
		slash[slash == copy] = '\0';
		rc = durable(copy);
	}
cleanup:
	if (stage)
		vi_rm_rf(stage);
	free(stage);
	free(files);
	free(img);
	free(pub);
	free(copy);
	template_strv_release(&keys);
	user_config_release(&c);
	return rc;
}

/* --- growing the root partition ----------------------------------------- */

#define MBR_ENTRIES 446
#define MBR_SIGNATURE 510

static uint32_t le32(const unsigned char *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_le32(unsigned char *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (unsigned char)(v >> (8 * i));
}

unsigned vi_seed_root_partition(const char *root)
{
	size_t n = root ? strlen(root) : 0, i = n;

	while (i > 0 && root[i - 1] >= '0' && root[i - 1] <= '9')
		i--;
	return i < n && i > 0 && root[i - 1] >= 'a' && root[i - 1] <= 'z' ? (unsigned)atoi(root + i)
									 : 0;
}

int vi_seed_grow_partition(const char *path, unsigned part)
{
	unsigned char mbr[512], *e;
	struct image *img;
	uint64_t sectors, end;
	int rc, rc2;

	if (part < 1 || part > 4)
		return vi_error(VI_EUSAGE, "'%s': no MBR partition %u (1 to 4)", path, part);
	if ((rc = image_open(path, IMAGE_PROBE, IMAGE_OPEN_WRITE, &img)) < 0)
		return rc;
	if ((rc = image_pread(img, mbr, sizeof(mbr), 0)) < 0)
		goto cleanup;
	e = mbr + MBR_ENTRIES + 16 * (part - 1);
	if (mbr[MBR_SIGNATURE] != 0x55 || mbr[MBR_SIGNATURE + 1] != 0xaa) {
		rc = vi_error(VI_EUNSUPPORTED, "'%s' has no MBR partition table", path);
		goto cleanup;
	}
	for (int i = 0; i < 4; i++)
		if (mbr[MBR_ENTRIES + 16 * i + 4] == 0xee) {
			rc = vi_error(VI_EUNSUPPORTED,
				      "'%s' has a GPT partition table, which vi does not grow",
				      path);
			goto cleanup;
		}
	if (!e[4] || !le32(e + 12)) {
		rc = vi_error(VI_EUSAGE, "'%s' has no partition %u", path, part);
		goto cleanup;
	}
	if (e[4] == 0x05 || e[4] == 0x0f || e[4] == 0x85) {
		rc = vi_error(VI_EUNSUPPORTED, "partition %u of '%s' is an extended partition",
			      part, path);
		goto cleanup;
	}
	uint64_t start = le32(e + 8), count = le32(e + 12);
	for (int i = 0; i < 4; i++) {
		const unsigned char *o = mbr + MBR_ENTRIES + 16 * i;
		if (o != e && o[4] && le32(o + 8) > start) {
			rc = vi_error(VI_EUSAGE,
				      "partition %u of '%s' is not the last one: partition %d "
				      "follows it",
				      part, path, i + 1);
			goto cleanup;
		}
	}
	/* MBR sizes are 32-bit sector counts: a larger disk grows to 2 TiB. */
	sectors = image_size(img) / 512;
	end = sectors < start + UINT32_MAX ? sectors : start + UINT32_MAX;
	if (start + count > sectors) {
		rc = vi_error(VI_EUSAGE, "partition %u of '%s' ends past the end of the disk",
			      part, path);
		goto cleanup;
	}
	if (end <= start + count)
		goto cleanup;
	put_le32(e + 12, (uint32_t)(end - start));
	/* The end's cylinder-head-sector address as tools write it for disks
	 * past what CHS can say: every reader uses the LBA fields. */
	e[5] = 0xfe;
	e[6] = 0xff;
	e[7] = 0xff;
	rc = image_pwrite(img, mbr, sizeof(mbr), 0);
cleanup:
	rc2 = image_close(img);
	return rc < 0 ? rc : rc2;
}
