/* A VM's record from one store to another (migrate.h). */
#include "migrate.h"
#include "error.h"
#include "image/image.h"
#include "layers.h"
#include "log.h"
#include "snapshot.h"
#include "ssh.h"
#include "util.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <json-c/json.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define WIRE_MAGIC "VIMIGRATE 1"
#define CHUNK (1u << 20)
#define HEADER_MAX (16u << 20)

/* --- collecting --------------------------------------------------------------------- */

/* The part of path after the store's home and a slash, or NULL when it is not
 * in the store. */
static const char *in_store(const struct vi_store *s, const char *path)
{
	size_t len = strlen(s->home);

	return path && !strncmp(path, s->home, len) && path[len] == '/' ? path + len + 1 : NULL;
}

/* Notes where path (absolute) lies: a golden image, a layer, the VM's own
 * directory, or outside the store. Returns the layer id when it is one. */
static char *classify(const struct vi_store *s, const char *path, struct vi_bundle *b)
{
	const char *rel = in_store(s, path);

	if (!rel) {
		vi_strv_add(&b->outside, &b->noutside, path);
		return NULL;
	}
	if (!strncmp(rel, "images/layers/", 14)) {
		const char *name = rel + 14;
		size_t n = strlen(name);
		if (n > 6 && !strcmp(name + n - 6, ".qcow2") && !strchr(name, '/'))
			return xstrndup(name, n - 6);
		return NULL;
	}
	if (!strncmp(rel, "images/", 7)) {
		const char *d = rel + 7;
		size_t n = strcspn(d, "/");
		char *digest = xstrndup(d, n);
		vi_strv_add(&b->images, &b->nimages, digest);
		free(digest);
	}
	return NULL;
}

/* The backing chain of the image at path, each image classified. */
static void walk_chain(const struct vi_store *s, const char *path, char ***layers, size_t *nlayers,
		       struct vi_bundle *b)
{
	char *cur = xstrdup(path);

	for (int depth = 0; cur && depth < 64; depth++) {
		struct image *img;
		struct image_info info = { 0 };
		char *next = NULL, *id = classify(s, cur, b);

		if (id) {
			vi_strv_add(layers, nlayers, id);
			free(id);
		}
		if (image_open(cur, IMAGE_PROBE, IMAGE_OPEN_SHARED | IMAGE_OPEN_NO_BACKING, &img) < 0) {
			vi_error_clear();
			break;
		}
		if (image_get_info(img, false, &info) == 0 && info.backing_file) {
			if (info.backing_file[0] == '/') {
				next = xstrdup(info.backing_file);
			} else {
				char *dir = xstrdup(cur), *slash = strrchr(dir, '/');
				if (slash)
					*slash = '\0';
				next = xasprintf("%s/%s", slash ? dir : ".", info.backing_file);
				free(dir);
			}
		}
		image_info_release(&info);
		image_close(img);
		vi_error_clear();
		free(cur);
		cur = next;
	}
	free(cur);
}

static void add_file(struct vi_bundle *b, const char *rel, uint64_t size)
{
	b->files = xrealloc(b->files, (b->nfiles + 1) * sizeof(*b->files));
	b->sizes = xrealloc(b->sizes, (b->nfiles + 1) * sizeof(*b->sizes));
	b->streamed = xrealloc(b->streamed, (b->nfiles + 1) * sizeof(*b->streamed));
	b->files[b->nfiles] = xstrdup(rel);
	b->sizes[b->nfiles] = size;
	b->streamed[b->nfiles++] = false;
}

/* Every file under dir (store-relative rel), run/ left out. */
static void walk_files(const struct vi_store *s, const char *rel, struct vi_bundle *b)
{
	char *abs = vi_store_path(s, "%s", rel);
	DIR *d = opendir(abs);
	struct dirent *e;

	while (d && (e = readdir(d))) {
		struct stat st;
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char *sub = xasprintf("%s/%s", rel, e->d_name), *path = xasprintf("%s/%s", abs, e->d_name);
		if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
			if (strcmp(e->d_name, "run"))
				walk_files(s, sub, b);
		} else if (S_ISREG(st.st_mode)) {
			add_file(b, sub, (uint64_t)st.st_size);
		}
		free(sub);
		free(path);
	}
	if (d)
		closedir(d);
	free(abs);
}

static char *disk_abs(const struct vi_store *s, const struct vi_vm *vm, const char *path)
{
	return path[0] == '/' ? xstrdup(path) : vi_store_path(s, "vms/%s/%s", vm->name, path);
}

int vi_bundle_collect(const struct vi_store *s, const struct vi_vm *vm, bool live,
		      struct vi_bundle *b)
{
	char **ids = NULL, *dir = xasprintf("vms/%s", vm->name);
	size_t nids = 0;
	struct vi_snapshot *snaps = NULL;
	size_t nsnaps = 0;
	struct vi_layer_index idx;
	int rc;

	memset(b, 0, sizeof(*b));
	walk_files(s, dir, b);
	free(dir);
	/* A guest that goes on there: its console so far, for the log there to
	 * go on from. */
	char *log = xasprintf("vms/%s/run/console.log", vm->name), *log_path = vi_store_path(s, "%s", log);
	struct stat st;
	if (live && stat(log_path, &st) == 0 && S_ISREG(st.st_mode))
		add_file(b, log, (uint64_t)st.st_size);
	free(log);
	free(log_path);
	if (vm->template_digest)
		vi_strv_add(&b->images, &b->nimages, vm->template_digest);
	if (vm->kernel)
		free(classify(s, vm->kernel, b));
	if (vm->initrd)
		free(classify(s, vm->initrd, b));
	for (size_t i = 0; i < vm->ndisks; i++) {
		char *abs = disk_abs(s, vm, vm->disks[i].path);
		walk_chain(s, abs, &ids, &nids, b);
		/* A running VM's own writable disks change until the backend's
		 * stream has carried them. */
		const char *rel = in_store(s, abs);
		for (size_t f = 0; live && rel && !vm->disks[i].readonly && f < b->nfiles; f++)
			if (!strcmp(b->files[f], rel))
				b->streamed[f] = true;
		free(abs);
	}
	if (vi_snapshot_list(s, vm->name, &snaps, &nsnaps) == 0) {
		for (size_t i = 0; i < nsnaps; i++)
			for (size_t k = 0; k < snaps[i].ndisks; k++)
				if (snaps[i].disks[k].backing)
					walk_chain(s, snaps[i].disks[k].backing, &ids, &nids, b);
		vi_snapshots_free(snaps, nsnaps);
	}
	vi_error_clear();
	/* The layers with their places in the index, parents first. */
	if ((rc = vi_layers_open(s, &idx)) < 0)
		goto out;
	b->layers = xcalloc(nids + 1, sizeof(*b->layers));
	bool *placed = xcalloc(nids + 1, sizeof(bool));
	for (size_t pass = 0; pass <= nids; pass++) {
		for (size_t i = 0; i < nids; i++) {
			struct vi_layer *l = vi_layer_find(&idx, ids[i]);
			bool ready = true;
			if (placed[i])
				continue;
			for (size_t j = 0; l && l->parent && j < nids; j++)
				if (!placed[j] && !strcmp(ids[j], l->parent))
					ready = false;
			if (!ready && pass < nids)
				continue;
			placed[i] = true;
			b->layers[b->nlayers++] = (struct vi_bundle_layer){
				.id = xstrdup(ids[i]), .parent = l ? xstrdup(l->parent) : NULL,
				.backing = l ? xstrdup(l->backing) : NULL
			};
		}
	}
	free(placed);
	vi_layers_release(&idx);
out:
	for (size_t i = 0; i < nids; i++)
		free(ids[i]);
	free(ids);
	if (rc < 0)
		vi_bundle_release(b);
	return rc;
}

void vi_bundle_release(struct vi_bundle *b)
{
	for (size_t i = 0; i < b->nimages; i++)
		free(b->images[i]);
	for (size_t i = 0; i < b->nlayers; i++) {
		free(b->layers[i].id);
		free(b->layers[i].parent);
		free(b->layers[i].backing);
	}
	for (size_t i = 0; i < b->nfiles; i++)
		free(b->files[i]);
	for (size_t i = 0; i < b->noutside; i++)
		free(b->outside[i]);
	free(b->images);
	free(b->layers);
	free(b->files);
	free(b->sizes);
	free(b->streamed);
	free(b->outside);
	memset(b, 0, sizeof(*b));
}

/* --- the wire ----------------------------------------------------------------------- */

static int lost(void)
{
	return vi_error(VI_EFAIL, "the link to the other host was lost");
}

int vi_migrate_read_line(FILE *in, char **line)
{
	size_t cap = 0;
	ssize_t n;

	*line = NULL;
	n = getline(line, &cap, in);
	if (n <= 0) {
		free(*line);
		*line = NULL;
		return lost();
	}
	if ((*line)[n - 1] == '\n')
		(*line)[n - 1] = '\0';
	if (!strncmp(*line, "ERROR ", 6)) {
		char *msg;
		long code = strtol(*line + 6, &msg, 10);
		int rc = vi_error(code > 0 && code < 128 ? (int)code : VI_EFAIL, "%s",
				  *msg == ' ' ? msg + 1 : msg);
		free(*line);
		*line = NULL;
		return rc;
	}
	return 0;
}

void vi_migrate_send_error(FILE *out)
{
	char *msg = xstrdup(vi_error_message()), *nl;

	while ((nl = strchr(msg, '\n')))
		*nl = ' ';
	fprintf(out, "ERROR %d %s\n", vi_error_code(), msg);
	fflush(out);
	free(msg);
}

static int send_json(FILE *out, const char *word, struct json_object *o)
{
	const char *text = json_object_to_json_string_ext(o, JSON_C_TO_STRING_PLAIN);

	fprintf(out, "%s %zu\n%s", word, strlen(text), text);
	return fflush(out) == 0 && !ferror(out) ? 0 : lost();
}

static int read_json(FILE *in, const char *word, struct json_object **o)
{
	char *line, *text;
	unsigned long long n;
	size_t wl = strlen(word);
	int rc = vi_migrate_read_line(in, &line);

	if (rc < 0)
		return rc;
	if (strncmp(line, word, wl) || line[wl] != ' ' ||
	    sscanf(line + wl + 1, "%llu", &n) != 1 || n > HEADER_MAX) {
		rc = vi_error(VI_EFAIL, "the other host said '%.80s', not %s", line, word);
		free(line);
		return rc;
	}
	free(line);
	text = xmalloc(n + 1);
	if (fread(text, 1, n, in) != n) {
		free(text);
		return lost();
	}
	text[n] = '\0';
	*o = json_tokener_parse(text);
	free(text);
	return *o ? 0 : vi_error(VI_EFAIL, "the other host sent a bad %s", word);
}

/* Sends the file at store-relative rel, its holes left out. */
static int send_file(const struct vi_store *s, const char *rel, FILE *out,
		     vi_migrate_progress_fn progress, void *opaque, uint64_t *done, uint64_t total)
{
	char *path = vi_store_path(s, "%s", rel);
	int fd = open(path, O_RDONLY | O_CLOEXEC), rc = 0;
	char *buf = NULL;
	struct stat st;

	if (fd < 0 || fstat(fd, &st) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot read '%s'", path);
		goto out;
	}
	buf = xmalloc(CHUNK);
	fprintf(out, "FILE %o %lld %s\n", (unsigned)(st.st_mode & 07777), (long long)st.st_size,
		rel);
	for (off_t at = 0; at < st.st_size;) {
		off_t data = lseek(fd, at, SEEK_DATA), hole;
		if (data < 0 && errno == ENXIO)
			break;
		if (data < 0)
			data = at; /* no SEEK_DATA here: all of it */
		hole = lseek(fd, data, SEEK_HOLE);
		if (hole < 0 || hole > st.st_size)
			hole = st.st_size;
		while (data < hole) {
			size_t n = hole - data < CHUNK ? (size_t)(hole - data) : CHUNK;
			ssize_t got = pread(fd, buf, n, data);
			if (got <= 0) {
				rc = vi_error_errno(VI_EFAIL, got < 0 ? errno : EIO, "cannot read '%s'",
						    path);
				goto out;
			}
			fprintf(out, "DATA %lld %zd\n", (long long)data, got);
			if (fwrite(buf, 1, (size_t)got, out) != (size_t)got) {
				rc = lost();
				goto out;
			}
			data += got;
			*done += (uint64_t)got;
			if (progress)
				progress(opaque, *done, total);
		}
		at = hole;
	}
	fprintf(out, "EOF\n");
	if (fflush(out) != 0 || ferror(out))
		rc = lost();
out:
	if (fd >= 0)
		close(fd);
	free(buf);
	free(path);
	return rc;
}

static bool json_has(struct json_object *arr, const char *s)
{
	for (size_t i = 0; arr && i < json_object_array_length(arr); i++)
		if (!strcmp(json_object_get_string(json_object_array_get_idx(arr, i)), s))
			return true;
	return false;
}

/* Files of images/<digest>/, recursively, store-relative. */
static void image_files(const struct vi_store *s, const char *digest, char ***files, size_t *n)
{
	struct vi_bundle tmp = { 0 };
	char *rel = xasprintf("images/%s", digest);

	walk_files(s, rel, &tmp);
	for (size_t i = 0; i < tmp.nfiles; i++)
		vi_strv_add(files, n, tmp.files[i]);
	vi_bundle_release(&tmp);
	free(rel);
}

static uint64_t file_size(const struct vi_store *s, const char *rel)
{
	char *path = vi_store_path(s, "%s", rel);
	struct stat st;
	uint64_t size = stat(path, &st) == 0 ? (uint64_t)st.st_size : 0;

	free(path);
	return size;
}

/* The store-relative files an offer sends, given what the other side needs. */
static void offered_files(const struct vi_store *s, const struct vi_bundle *b,
			  struct json_object *need, char ***files, size_t *n)
{
	struct json_object *images = NULL, *layers = NULL;

	if (need) {
		json_object_object_get_ex(need, "images", &images);
		json_object_object_get_ex(need, "layers", &layers);
	}
	for (size_t i = 0; i < b->nimages; i++)
		if (json_has(images, b->images[i]))
			image_files(s, b->images[i], files, n);
	for (size_t i = 0; i < b->nlayers; i++)
		if (json_has(layers, b->layers[i].id)) {
			char *rel = xasprintf("images/layers/%s.qcow2", b->layers[i].id);
			vi_strv_add(files, n, rel);
			free(rel);
		}
	for (size_t i = 0; i < b->nfiles; i++)
		if (!b->streamed[i])
			vi_strv_add(files, n, b->files[i]);
}

uint64_t vi_bundle_bytes(const struct vi_store *s, const struct vi_bundle *b,
			 struct json_object *need)
{
	char **files = NULL;
	size_t n = 0;
	uint64_t total = 0;

	offered_files(s, b, need, &files, &n);
	for (size_t i = 0; i < n; i++) {
		total += file_size(s, files[i]);
		free(files[i]);
	}
	free(files);
	return total;
}

int vi_migrate_offer_header(const struct vi_store *s, const struct vi_vm *vm,
			    const struct vi_bundle *b, unsigned flags, FILE *in, FILE *out,
			    struct json_object **need)
{
	struct json_object *h = json_object_new_object(), *imgs = json_object_new_array(),
			   *lays = json_object_new_array(), *streamed = json_object_new_array();
	char *def_path = vi_store_path(s, "vms/%s/vm.yaml", vm->name), *def = NULL;
	size_t deflen;
	int rc;

	*need = NULL;
	if ((rc = vi_read_file(def_path, &def, &deflen)) < 0)
		goto out;
	for (size_t i = 0; i < b->nimages; i++)
		json_object_array_add(imgs, json_object_new_string(b->images[i]));
	for (size_t i = 0; i < b->nlayers; i++) {
		struct json_object *l = json_object_new_object();
		json_object_object_add(l, "id", json_object_new_string(b->layers[i].id));
		if (b->layers[i].parent)
			json_object_object_add(l, "parent", json_object_new_string(b->layers[i].parent));
		if (b->layers[i].backing)
			json_object_object_add(l, "backing",
					       json_object_new_string(b->layers[i].backing));
		json_object_array_add(lays, l);
	}
	for (size_t i = 0; i < vm->ndisks; i++) {
		char *abs = disk_abs(s, vm, vm->disks[i].path);
		const char *rel = in_store(s, abs);
		for (size_t f = 0; rel && f < b->nfiles; f++) {
			struct image *img;
			struct image_info info = { 0 };
			if (!b->streamed[f] || strcmp(b->files[f], rel))
				continue;
			struct json_object *o = json_object_new_object();
			json_object_object_add(o, "disk", json_object_new_int((int)i));
			/* Its backing name as it is now, for the other side to rewrite,
			 * and its size, for a side that makes it. */
			if (image_open(abs, IMAGE_PROBE, IMAGE_OPEN_SHARED | IMAGE_OPEN_NO_BACKING,
				       &img) == 0) {
				if (image_get_info(img, false, &info) == 0)
					json_object_object_add(
						o, "size",
						json_object_new_int64((int64_t)info.virtual_size));
				if (info.backing_file)
					json_object_object_add(o, "backing",
							       json_object_new_string(info.backing_file));
				image_info_release(&info);
				image_close(img);
			}
			vi_error_clear();
			json_object_array_add(streamed, o);
		}
		free(abs);
	}
	json_object_object_add(h, "name", json_object_new_string(vm->name));
	json_object_object_add(h, "home", json_object_new_string(s->home));
	json_object_object_add(h, "vm", json_object_new_string(def));
	json_object_object_add(h, "images", imgs);
	json_object_object_add(h, "layers", lays);
	json_object_object_add(h, "live", json_object_new_boolean(flags & VI_MIGRATE_LIVE));
	if (flags & VI_MIGRATE_TUNNEL)
		json_object_object_add(h, "tunnel", json_object_new_boolean(true));
	if (flags & VI_MIGRATE_LIBVIRT)
		json_object_object_add(h, "libvirt", json_object_new_boolean(true));
	json_object_object_add(h, "streamed", streamed);
	fprintf(out, "%s\n", WIRE_MAGIC);
	if ((rc = send_json(out, "HEADER", h)) == 0)
		rc = read_json(in, "NEED", need);
out:
	json_object_put(h);
	free(def);
	free(def_path);
	return rc;
}

int vi_migrate_offer_files(const struct vi_store *s, const struct vi_bundle *b,
			   struct json_object *need, FILE *out, vi_migrate_progress_fn progress,
			   void *opaque, uint64_t *sent)
{
	char **files = NULL;
	size_t n = 0;
	uint64_t total = 0;
	int rc = 0;

	*sent = 0;
	offered_files(s, b, need, &files, &n);
	for (size_t i = 0; i < n; i++)
		total += file_size(s, files[i]);
	for (size_t i = 0; rc == 0 && i < n; i++)
		rc = send_file(s, files[i], out, progress, opaque, sent, total);
	if (rc == 0) {
		fprintf(out, "DONE\n");
		if (fflush(out) != 0 || ferror(out))
			rc = lost();
	}
	for (size_t i = 0; i < n; i++)
		free(files[i]);
	free(files);
	return rc;
}

/* --- accepting ---------------------------------------------------------------------- */

/* What an accept has put where, to be taken back if it fails. */
struct incoming {
	const struct vi_store *s;
	char *staged;           /* vms/.staging/NAME.PID: the VM's directory */
	char **tmp;             /* files and directories made for images and layers */
	char **final;           /* where each goes at DONE */
	size_t n;
};

static bool safe_rel(const char *rel)
{
	return rel[0] != '/' && !strstr(rel, "..") && !strstr(rel, "//");
}

/* Where the file at store-relative rel goes while it arrives. */
static char *incoming_path(struct incoming *in, const char *name, struct json_object *need,
			   const char *rel)
{
	struct json_object *images = NULL, *layers = NULL;
	char *vmdir = xasprintf("vms/%s/", name);
	char *path = NULL;

	json_object_object_get_ex(need, "images", &images);
	json_object_object_get_ex(need, "layers", &layers);
	if (!safe_rel(rel)) {
		free(vmdir);
		return NULL;
	}
	if (!strncmp(rel, vmdir, strlen(vmdir))) {
		path = xasprintf("%s/%s", in->staged, rel + strlen(vmdir));
	} else if (!strncmp(rel, "images/layers/", 14)) {
		char *id = xstrndup(rel + 14, strcspn(rel + 14, "."));
		if (json_has(layers, id) && !strcmp(rel + 14 + strlen(id), ".qcow2")) {
			path = vi_store_path(in->s, "images/layers/.incoming.%s.%d", id, (int)getpid());
			in->tmp = xrealloc(in->tmp, (in->n + 1) * sizeof(char *));
			in->final = xrealloc(in->final, (in->n + 1) * sizeof(char *));
			in->tmp[in->n] = xstrdup(path);
			in->final[in->n++] = vi_store_path(in->s, "%s", rel);
		}
		free(id);
	} else if (!strncmp(rel, "images/", 7)) {
		char *digest = xstrndup(rel + 7, strcspn(rel + 7, "/"));
		if (json_has(images, digest) && rel[7 + strlen(digest)] == '/') {
			char *tmpdir = vi_store_path(in->s, "images/.incoming.%s.%d", digest,
						     (int)getpid());
			bool known = false;
			for (size_t i = 0; i < in->n; i++)
				known |= !strcmp(in->tmp[i], tmpdir);
			if (!known) {
				in->tmp = xrealloc(in->tmp, (in->n + 1) * sizeof(char *));
				in->final = xrealloc(in->final, (in->n + 1) * sizeof(char *));
				in->tmp[in->n] = xstrdup(tmpdir);
				in->final[in->n++] = vi_store_path(in->s, "images/%s", digest);
			}
			path = xasprintf("%s/%s", tmpdir, rel + 8 + strlen(digest));
			free(tmpdir);
		}
		free(digest);
	}
	free(vmdir);
	return path;
}

static int receive_file(FILE *in, const char *line, const char *path)
{
	unsigned mode;
	long long size;
	char *dir = xstrdup(path), *slash = strrchr(dir, '/'), *buf = xmalloc(CHUNK), *l = NULL;
	int fd = -1, rc;

	if (sscanf(line, "FILE %o %lld", &mode, &size) != 2 || size < 0) {
		rc = vi_error(VI_EFAIL, "the other host sent a bad file header");
		goto out;
	}
	if (slash)
		*slash = '\0';
	if ((rc = vi_mkdir_p(dir, 0711)) < 0)
		goto out;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, (mode & 0777) | 0600);
	if (fd < 0 || ftruncate(fd, size) < 0) {
		rc = vi_error_errno(errno == ENOSPC ? VI_ESTATE : VI_EFAIL, errno,
				    "cannot write '%s'", path);
		goto out;
	}
	for (;;) {
		long long at, n;
		if ((rc = vi_migrate_read_line(in, &l)) < 0)
			goto out;
		if (!strcmp(l, "EOF"))
			break;
		if (sscanf(l, "DATA %lld %lld", &at, &n) != 2 || at < 0 || n < 0 ||
		    n > (long long)CHUNK || at + n > size) {
			rc = vi_error(VI_EFAIL, "the other host sent bad data for '%s'", path);
			goto out;
		}
		free(l);
		l = NULL;
		if (fread(buf, 1, (size_t)n, in) != (size_t)n) {
			rc = lost();
			goto out;
		}
		if (pwrite(fd, buf, (size_t)n, at) != n) {
			rc = vi_error_errno(errno == ENOSPC ? VI_ESTATE : VI_EFAIL, errno,
					    "cannot write '%s'", path);
			goto out;
		}
	}
	if (fsync(fd) < 0)
		rc = vi_error_errno(VI_EFAIL, errno, "cannot write '%s'", path);
out:
	if (fd >= 0)
		close(fd);
	free(l);
	free(buf);
	free(dir);
	return rc;
}

/* The old store's home in text (a YAML file of the VM) becomes this one's. */
static int rewrite_text(const char *path, const char *from, const char *to)
{
	char *text = NULL, *out = NULL, *p, *hit;
	size_t len, flen = strlen(from), olen = 0;
	int rc;

	if ((rc = vi_read_file(path, &text, &len)) < 0)
		return rc;
	out = xstrdup("");
	for (p = text; (hit = strstr(p, from)) && (hit[flen] == '/');) {
		out = xrealloc(out, olen + (size_t)(hit - p) + strlen(to) + 1);
		memcpy(out + olen, p, (size_t)(hit - p));
		olen += (size_t)(hit - p);
		memcpy(out + olen, to, strlen(to));
		olen += strlen(to);
		p = hit + flen;
	}
	out = xrealloc(out, olen + strlen(p) + 1);
	strcpy(out + olen, p);
	rc = strcmp(out, text) ? vi_write_file_atomic(path, out, strlen(out), 0600) : 0;
	free(text);
	free(out);
	return rc;
}

/* A path under the other store's home, as it is in this one; NULL otherwise. */
static char *rehome(const char *path, const char *from, const char *to)
{
	size_t len = strlen(from);

	if (!path || strncmp(path, from, len) || path[len] != '/')
		return NULL;
	return xasprintf("%s%s", to, path + len);
}

/* A qcow2 file's backing name under the old home becomes this home's. */
static int rebase_file(const char *path, const char *from, const char *to)
{
	struct image *img;
	struct image_info info = { 0 };
	char *now = NULL;
	int rc;

	if (image_open(path, IMAGE_PROBE, IMAGE_OPEN_SHARED | IMAGE_OPEN_NO_BACKING, &img) < 0) {
		vi_error_clear();
		return 0; /* not an image */
	}
	rc = image_get_info(img, false, &info);
	image_close(img);
	if (rc == 0 && info.format == IMAGE_QCOW2 && (now = rehome(info.backing_file, from, to)))
		rc = image_set_backing(path, now, info.backing_format);
	image_info_release(&info);
	free(now);
	return rc;
}

/* Every file of a staged VM directory: YAML paths and qcow2 backing names. */
static int rewrite_dir(const char *dir, const char *from, const char *to)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int rc = 0;

	while (rc == 0 && d && (e = readdir(d))) {
		struct stat st;
		size_t n = strlen(e->d_name);
		if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
			continue;
		char *path = xasprintf("%s/%s", dir, e->d_name);
		if (lstat(path, &st) == 0 && S_ISDIR(st.st_mode))
			rc = rewrite_dir(path, from, to);
		else if (n > 5 && !strcmp(e->d_name + n - 5, ".yaml"))
			rc = rewrite_text(path, from, to);
		else if (S_ISREG(st.st_mode))
			rc = rebase_file(path, from, to);
		free(path);
	}
	if (d)
		closedir(d);
	return rc;
}

static void incoming_undo(struct incoming *in)
{
	for (size_t i = 0; i < in->n; i++) {
		vi_rm_rf(in->tmp[i]);
		free(in->tmp[i]);
		free(in->final[i]);
	}
	free(in->tmp);
	free(in->final);
	in->tmp = in->final = NULL;
	in->n = 0;
}

/* Images and layers into place; one that came meanwhile by another way wins. */
static int incoming_install(struct incoming *in, const char *from, const char *to)
{
	int rc = 0;

	for (size_t i = 0; rc == 0 && i < in->n; i++) {
		if (vi_file_exists(in->final[i])) {
			vi_rm_rf(in->tmp[i]);
			continue;
		}
		if (strstr(in->tmp[i], "/images/layers/"))
			rc = rebase_file(in->tmp[i], from, to);
		/* Shared with guests, read-only, as the store's own images are. */
		if (rc == 0)
			rc = vi_share_ro(in->tmp[i]);
		if (rc == 0 && rename(in->tmp[i], in->final[i]) < 0)
			rc = vi_error_errno(VI_EFAIL, errno, "cannot make '%s'", in->final[i]);
	}
	return rc;
}

/* The offer's header, and what of it this store lacks. */
static int read_offer(const struct vi_store *s, FILE *in, struct json_object **h,
		      struct json_object *need, char **name, char **from, unsigned *flags)
{
	struct json_object *v, *nimg = json_object_new_array(), *nlay = json_object_new_array();
	char *line = NULL;
	int rc;

	*h = NULL;
	*name = *from = NULL;
	json_object_object_add(need, "images", nimg);
	json_object_object_add(need, "layers", nlay);
	if ((rc = vi_migrate_read_line(in, &line)) < 0)
		return rc;
	if (strcmp(line, WIRE_MAGIC))
		rc = vi_error(VI_EUNSUPPORTED, "the other host speaks another migration protocol");
	free(line);
	if (rc < 0 || (rc = read_json(in, "HEADER", h)) < 0)
		return rc;
	*name = json_object_object_get_ex(*h, "name", &v) ? xstrdup(json_object_get_string(v)) : NULL;
	*from = json_object_object_get_ex(*h, "home", &v) ? xstrdup(json_object_get_string(v)) : NULL;
	*flags = 0;
	if (json_object_object_get_ex(*h, "live", &v) && json_object_get_boolean(v))
		*flags |= VI_MIGRATE_LIVE;
	if (json_object_object_get_ex(*h, "tunnel", &v) && json_object_get_boolean(v))
		*flags |= VI_MIGRATE_TUNNEL;
	if (json_object_object_get_ex(*h, "libvirt", &v) && json_object_get_boolean(v))
		*flags |= VI_MIGRATE_LIBVIRT;
	if (!*name || !*from || **from != '/')
		return vi_error(VI_EFAIL, "the other host sent a bad header");
	if ((rc = vi_check_name(*name, "VM")) < 0)
		return rc;
	/* A guest that runs on here is to let this store's login key in. */
	char *pub = NULL;
	if ((*flags & VI_MIGRATE_LIVE) && vi_ssh_store_key(s, NULL, &pub) == 0)
		json_object_object_add(need, "ssh_key", json_object_new_string(pub));
	vi_error_clear();
	free(pub);
	char *dir = vi_store_path(s, "vms/%s", *name);
	bool exists = vi_file_exists(dir);
	free(dir);
	if (exists)
		return vi_error(VI_ESTATE, "VM '%s' exists on this host", *name);
	if (json_object_object_get_ex(*h, "images", &v))
		for (size_t i = 0; i < json_object_array_length(v); i++) {
			const char *d = json_object_get_string(json_object_array_get_idx(v, i));
			char *img = vi_store_path(s, "images/%s", d);
			if (safe_rel(d) && !strchr(d, '/') && !vi_file_exists(img))
				json_object_array_add(nimg, json_object_new_string(d));
			free(img);
		}
	if (json_object_object_get_ex(*h, "layers", &v))
		for (size_t i = 0; i < json_object_array_length(v); i++) {
			struct json_object *l = json_object_array_get_idx(v, i), *id;
			if (!json_object_object_get_ex(l, "id", &id) ||
			    !safe_rel(json_object_get_string(id)) ||
			    strchr(json_object_get_string(id), '/'))
				continue;
			char *file = vi_layer_path(s, json_object_get_string(id));
			if (!vi_file_exists(file))
				json_object_array_add(nlay, json_object_get(id));
			free(file);
		}
	return 0;
}

int vi_migrate_answer(const struct vi_store *s, FILE *in, FILE *out)
{
	struct json_object *h, *need = json_object_new_object();
	char *name, *from;
	unsigned flags;
	int rc = read_offer(s, in, &h, need, &name, &from, &flags);

	if (rc == 0)
		rc = send_json(out, "NEED", need);
	else
		vi_migrate_send_error(out);
	if (h)
		json_object_put(h);
	json_object_put(need);
	free(name);
	free(from);
	return rc;
}

int vi_migrate_accept(const struct vi_store *s, FILE *in, FILE *out, struct vi_vm *vm,
		      char **staged, unsigned *flags, char ***backing, uint64_t **sizes)
{
	struct json_object *h = NULL, *need = json_object_new_object(), *v;
	struct incoming inc = { .s = s };
	char *line = NULL, *from = NULL, *name = NULL, *def_path = NULL;
	struct vi_layer_index idx;
	bool idx_open = false;
	int rc;

	memset(vm, 0, sizeof(*vm));
	*staged = NULL;
	*backing = NULL;
	*sizes = NULL;
	if ((rc = read_offer(s, in, &h, need, &name, &from, flags)) < 0)
		goto fail;
	if ((rc = vi_store_stage_vm(s, name, &inc.staged)) < 0 ||
	    (rc = send_json(out, "NEED", need)) < 0)
		goto fail;
	for (;;) {
		free(line);
		if ((rc = vi_migrate_read_line(in, &line)) < 0)
			goto fail;
		if (!strcmp(line, "DONE"))
			break;
		const char *rel = strncmp(line, "FILE ", 5) ? NULL : strchr(line + 5, ' ');
		rel = rel ? strchr(rel + 1, ' ') : NULL;
		char *path = rel ? incoming_path(&inc, name, need, rel + 1) : NULL;
		if (!path) {
			rc = vi_error(VI_EFAIL, "the other host sent '%.80s', which is not asked for",
				      line);
			goto fail;
		}
		rc = receive_file(in, line, path);
		free(path);
		if (rc < 0)
			goto fail;
	}
	/* This store's paths; the images and layers in place; the VM's index
	 * entries. */
	if ((rc = rewrite_dir(inc.staged, from, s->home)) < 0 ||
	    (rc = incoming_install(&inc, from, s->home)) < 0 || (rc = vi_layers_open(s, &idx)) < 0)
		goto fail;
	idx_open = true;
	if (json_object_object_get_ex(h, "layers", &v))
		for (size_t i = 0; i < json_object_array_length(v); i++) {
			struct json_object *l = json_object_array_get_idx(v, i), *id, *p, *b;
			if (!json_object_object_get_ex(l, "id", &id))
				continue;
			char *backing = json_object_object_get_ex(l, "backing", &b)
						? rehome(json_object_get_string(b), from, s->home)
						: NULL;
			if (!backing && json_object_object_get_ex(l, "backing", &b))
				backing = xstrdup(json_object_get_string(b));
			vi_layer_import(&idx, json_object_get_string(id),
					json_object_object_get_ex(l, "parent", &p)
						? json_object_get_string(p)
						: NULL,
					backing);
			free(backing);
		}
	free(def_path);
	def_path = xasprintf("%s/vm.yaml", inc.staged);
	if ((rc = vi_vm_load(def_path, vm)) < 0)
		goto fail;
	/* The disks the backend's stream brings: their backing files here. */
	*backing = xcalloc(vm->ndisks + 1, sizeof(char *));
	*sizes = xcalloc(vm->ndisks + 1, sizeof(uint64_t));
	if (json_object_object_get_ex(h, "streamed", &v))
		for (size_t i = 0; i < json_object_array_length(v); i++) {
			struct json_object *o = json_object_array_get_idx(v, i), *d, *b;
			if (!json_object_object_get_ex(o, "disk", &d) ||
			    json_object_get_int(d) < 0 || (size_t)json_object_get_int(d) >= vm->ndisks)
				continue;
			if (json_object_object_get_ex(o, "size", &b))
				(*sizes)[json_object_get_int(d)] = (uint64_t)json_object_get_int64(b);
			if (!json_object_object_get_ex(o, "backing", &b))
				continue;
			char *here = rehome(json_object_get_string(b), from, s->home);
			(*backing)[json_object_get_int(d)] =
				here ? here : xstrdup(json_object_get_string(b));
		}
	/* The index learns of the layers before anything relies on it; the VM's
	 * references come once its directory is in place. */
	if ((rc = vi_layers_write(s, &idx)) < 0)
		goto fail;
	vi_layers_release(&idx);
	idx_open = false;
	*staged = inc.staged;
	inc.staged = NULL;
	for (size_t i = 0; i < inc.n; i++) {
		free(inc.tmp[i]);
		free(inc.final[i]);
	}
	free(inc.tmp);
	free(inc.final);
	goto out;
fail:
	vi_migrate_send_error(out);
	if (idx_open)
		vi_layers_release(&idx);
	incoming_undo(&inc);
	for (size_t i = 0; *backing && i < vm->ndisks; i++)
		free((*backing)[i]);
	free(*backing);
	*backing = NULL;
	free(*sizes);
	*sizes = NULL;
	if (inc.staged)
		vi_store_abort_vm(inc.staged);
	free(inc.staged);
	vi_vm_release(vm);
out:
	free(line);
	free(from);
	free(name);
	free(def_path);
	if (h)
		json_object_put(h);
	json_object_put(need);
	return rc;
}

int vi_migrate_make_disks(const struct vi_store *s, const struct vi_vm *vm,
			  const char *const *backing, const uint64_t *sizes)
{
	int rc = 0;

	for (size_t i = 0; i < vm->ndisks && rc == 0; i++) {
		if (!sizes[i])
			continue;
		char *path = disk_abs(s, vm, vm->disks[i].path);
		struct image_create_opts co = {
			.format = vm->disks[i].format == VI_DISK_RAW ? IMAGE_RAW : IMAGE_QCOW2,
			.size = sizes[i], .backing = backing[i], .backing_format = IMAGE_PROBE,
		};
		if (co.format == IMAGE_RAW && backing[i])
			rc = vi_error(VI_EUNSUPPORTED, "raw disk %zu of VM '%s' has a backing file", i,
				      vm->name);
		else
			rc = image_create(path, &co);
		free(path);
	}
	return rc;
}

/* --- the direct connection ----------------------------------------------------------- */

int vi_migrate_listen(const char *addr, int *fd, unsigned *port)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
				  .ai_flags = AI_NUMERICHOST | AI_PASSIVE },
			*res = NULL;
	struct sockaddr_storage sa;
	socklen_t len = sizeof(sa);
	int rc, one = 1;

	if ((rc = getaddrinfo(addr, "0", &hints, &res)) != 0)
		return vi_error(VI_EFAIL, "cannot listen on '%s': %s", addr, gai_strerror(rc));
	*fd = socket(res->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (*fd < 0 || setsockopt(*fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(*fd, res->ai_addr, res->ai_addrlen) < 0 || listen(*fd, 4) < 0 ||
	    getsockname(*fd, (struct sockaddr *)&sa, &len) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot listen on '%s'", addr);
		if (*fd >= 0)
			close(*fd);
		*fd = -1;
		freeaddrinfo(res);
		return rc;
	}
	freeaddrinfo(res);
	*port = ntohs(sa.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&sa)->sin6_port
					       : ((struct sockaddr_in *)&sa)->sin_port);
	return 0;
}

/* Constant time: how long the comparison takes says nothing of the secret. */
static bool same_secret(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	unsigned char diff = la != lb;

	for (size_t i = 0; i < la && i < lb; i++)
		diff |= (unsigned char)(a[i] ^ b[i]);
	return !diff;
}

/* The first line a peer sends, within timeout_ms; "" when it sends none. */
static void peer_line(int fd, char *buf, size_t len, unsigned timeout_ms)
{
	size_t got = 0;
	double start = vi_now_ms();

	buf[0] = '\0';
	while (got < len - 1) {
		struct pollfd p = { .fd = fd, .events = POLLIN };
		double left = timeout_ms - vi_ms_since(start);
		ssize_t n;
		if (left <= 0 || poll(&p, 1, (int)left + 1) <= 0)
			break;
		n = read(fd, buf + got, 1);
		if (n <= 0 || buf[got] == '\n')
			break;
		got++;
	}
	buf[got] = '\0';
}

int vi_migrate_accept_peer(int lfd, const char *secret, unsigned timeout_ms, int *out)
{
	double start = vi_now_ms();

	for (;;) {
		struct sockaddr_storage sa;
		socklen_t len = sizeof(sa);
		char who[INET6_ADDRSTRLEN + 8] = "?", line[128];
		struct pollfd p = { .fd = lfd, .events = POLLIN };
		double left = timeout_ms - vi_ms_since(start);
		int fd;

		if (left <= 0 || poll(&p, 1, (int)left + 1) <= 0)
			return vi_error(VI_ETIMEOUT, "the other host did not connect within %u s",
					timeout_ms / 1000);
		fd = accept4(lfd, (struct sockaddr *)&sa, &len, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		getnameinfo((struct sockaddr *)&sa, len, who, sizeof(who), NULL, 0, NI_NUMERICHOST);
		peer_line(fd, line, sizeof(line), 5000);
		if (same_secret(line, secret)) {
			*out = fd;
			return 0;
		}
		/* Someone else: turned away, and the migration waits on. */
		vi_warn("refused a migration connection from %s: it did not give the secret", who);
		close(fd);
	}
}

struct vi_migrate_guard {
	pthread_t thread;
	int lfd;
	atomic_bool stop;
};

/* Turns away whoever else connects while the migration runs. */
static void *guard_run(void *opaque)
{
	struct vi_migrate_guard *g = opaque;

	while (!atomic_load(&g->stop)) {
		struct pollfd p = { .fd = g->lfd, .events = POLLIN };
		struct sockaddr_storage sa;
		socklen_t len = sizeof(sa);
		char who[INET6_ADDRSTRLEN + 8] = "?", line[128];
		int fd;

		if (poll(&p, 1, 100) <= 0)
			continue;
		fd = accept4(g->lfd, (struct sockaddr *)&sa, &len, SOCK_CLOEXEC);
		if (fd < 0)
			continue;
		getnameinfo((struct sockaddr *)&sa, len, who, sizeof(who), NULL, 0, NI_NUMERICHOST);
		peer_line(fd, line, sizeof(line), 1000);
		vi_warn("refused a migration connection from %s: the migration has its peer", who);
		close(fd);
	}
	return NULL;
}

struct vi_migrate_guard *vi_migrate_guard_start(int lfd)
{
	struct vi_migrate_guard *g = xcalloc(1, sizeof(*g));

	g->lfd = lfd;
	if (pthread_create(&g->thread, NULL, guard_run, g)) {
		free(g);
		return NULL;
	}
	return g;
}

void vi_migrate_guard_stop(struct vi_migrate_guard *g)
{
	if (!g)
		return;
	atomic_store(&g->stop, true);
	pthread_join(g->thread, NULL);
	free(g);
}

int vi_migrate_connect(const char *addr, unsigned port, const char *secret, int *fd)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM }, *res = NULL;
	char service[16];
	int rc;

	snprintf(service, sizeof(service), "%u", port);
	if ((rc = getaddrinfo(addr, service, &hints, &res)) != 0)
		return vi_error(VI_EFAIL, "cannot reach '%s': %s", addr, gai_strerror(rc));
	*fd = -1;
	for (struct addrinfo *a = res; a && *fd < 0; a = a->ai_next) {
		*fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (*fd >= 0 && connect(*fd, a->ai_addr, a->ai_addrlen) < 0) {
			rc = errno;
			close(*fd);
			*fd = -1;
		}
	}
	freeaddrinfo(res);
	if (*fd < 0)
		return vi_error_errno(VI_EFAIL, rc ? rc : ECONNREFUSED,
				      "cannot connect to %s port %u", addr, port);
	if (dprintf(*fd, "%s\n", secret) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot connect to %s port %u", addr, port);
		close(*fd);
		*fd = -1;
		return rc;
	}
	return 0;
}

/* --- an unconfirmed migration ----------------------------------------------------------- */

int vi_migrate_mark_unconfirmed(const char *vm_dir, const char *host)
{
	char *path = xasprintf("%s/migrating", vm_dir), *text = xasprintf("%s\n", host);
	int rc = vi_write_file_atomic(path, text, strlen(text), 0600);

	free(text);
	free(path);
	return rc;
}

char *vi_migrate_unconfirmed(const char *vm_dir)
{
	char *path = xasprintf("%s/migrating", vm_dir), *text = NULL;
	size_t len;

	if (vi_read_file(path, &text, &len) < 0) {
		vi_error_clear();
		text = NULL;
	} else {
		text[strcspn(text, "\n")] = '\0';
	}
	free(path);
	return text;
}

int vi_migrate_clear_unconfirmed(const char *vm_dir)
{
	char *path = xasprintf("%s/migrating", vm_dir);
	int rc = unlink(path) < 0 && errno != ENOENT
			 ? vi_error_errno(VI_EFAIL, errno, "cannot remove '%s'", path)
			 : 0;

	free(path);
	return rc;
}

/* --- the tunnel ----------------------------------------------------------------------- */

/* With --tunnel the backend's stream goes through ssh's pipes, between the
 * lines of the record's protocol. The backend wants one socket; the tunnel
 * gives it one end of a socket pair and carries the other over the pipes in
 * frames (a 32-bit length, then the bytes; length 0 ends a direction), so
 * each side knows where the stream stops and the lines start again. */
#define TUNNEL_CHUNK (256u << 10)

struct vi_migrate_tunnel {
	pthread_t out_thread, in_thread;
	int in, out, sock, stop, done[2];
	int in_flags, out_flags;
	atomic_bool broken;
};

/* Waits for fd to be ready (POLLIN or POLLOUT) or for the tunnel to be told
 * to stop: false for the latter. */
static bool tunnel_wait(struct vi_migrate_tunnel *t, int fd, short events)
{
	struct pollfd p[2] = { { .fd = fd, .events = events }, { .fd = t->stop, .events = POLLIN } };

	while (poll(p, 2, -1) < 0)
		if (errno != EINTR)
			return false;
	return !p[1].revents;
}

/* All of len bytes to (POLLOUT) or from (POLLIN) the non-blocking fd; false
 * on an error, the end of the stream, or the tunnel told to stop. */
static bool tunnel_move(struct vi_migrate_tunnel *t, int fd, short dir, uint8_t *buf, size_t len)
{
	while (len) {
		if (!tunnel_wait(t, fd, dir))
			return false;
		ssize_t n = dir == POLLOUT ? write(fd, buf, len) : read(fd, buf, len);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		if (n <= 0)
			return false;
		buf += n;
		len -= (size_t)n;
	}
	return true;
}

static void tunnel_done(struct vi_migrate_tunnel *t, bool clean)
{
	if (!clean)
		atomic_store(&t->broken, true);
	if (write(t->done[1], "", 1) < 0)
		atomic_store(&t->broken, true);
}

/* The backend's bytes, framed, to the other side. */
static void *tunnel_send(void *opaque)
{
	struct vi_migrate_tunnel *t = opaque;
	uint8_t *buf = xmalloc(4 + TUNNEL_CHUNK);
	bool clean = false;

	for (;;) {
		if (!tunnel_wait(t, t->sock, POLLIN))
			break;
		ssize_t n = read(t->sock, buf + 4, TUNNEL_CHUNK);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		/* An error on the pair is its end, as a close is. */
		uint32_t be = htonl(n > 0 ? (uint32_t)n : 0);
		memcpy(buf, &be, 4);
		if (!tunnel_move(t, t->out, POLLOUT, buf, 4 + (size_t)(n > 0 ? n : 0)))
			break;
		if (n <= 0) {
			clean = true;
			break;
		}
	}
	/* Whatever the backend still writes fails now rather than waits. */
	shutdown(t->sock, SHUT_RD);
	free(buf);
	tunnel_done(t, clean);
	return NULL;
}

/* The other side's frames to the backend, until its end frame. Should the
 * backend stop reading, the rest is read and dropped, so the pipe stays in
 * step. */
static void *tunnel_receive(void *opaque)
{
	struct vi_migrate_tunnel *t = opaque;
	uint8_t *buf = xmalloc(TUNNEL_CHUNK);
	bool clean = false, drop = false;

	for (;;) {
		uint32_t be, len;
		if (!tunnel_move(t, t->in, POLLIN, (uint8_t *)&be, 4))
			break;
		len = ntohl(be);
		if (!len) {
			clean = true;
			break;
		}
		if (len > TUNNEL_CHUNK || !tunnel_move(t, t->in, POLLIN, buf, len))
			break;
		if (!drop && !tunnel_move(t, t->sock, POLLOUT, buf, len))
			drop = true;
	}
	shutdown(t->sock, SHUT_WR);
	free(buf);
	tunnel_done(t, clean);
	return NULL;
}

int vi_migrate_tunnel_open(int in, int out, int *fd, struct vi_migrate_tunnel **tp)
{
	struct vi_migrate_tunnel *t = xcalloc(1, sizeof(*t));
	int sv[2] = { -1, -1 }, rc;

	t->stop = t->done[0] = t->done[1] = -1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
	    pipe2(t->done, O_CLOEXEC) < 0 || (t->stop = eventfd(0, EFD_CLOEXEC)) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot make the migration tunnel");
		goto fail;
	}
	t->in = in;
	t->out = out;
	t->sock = sv[1];
	t->in_flags = fcntl(in, F_GETFL);
	t->out_flags = fcntl(out, F_GETFL);
	fcntl(in, F_SETFL, t->in_flags | O_NONBLOCK);
	fcntl(out, F_SETFL, t->out_flags | O_NONBLOCK);
	fcntl(t->sock, F_SETFL, fcntl(t->sock, F_GETFL) | O_NONBLOCK);
	if (pthread_create(&t->out_thread, NULL, tunnel_send, t)) {
		rc = vi_error(VI_EFAIL, "cannot start the migration tunnel");
		goto fail_flags;
	}
	if (pthread_create(&t->in_thread, NULL, tunnel_receive, t)) {
		rc = vi_error(VI_EFAIL, "cannot start the migration tunnel");
		close(sv[0]);
		sv[0] = -1;
		pthread_join(t->out_thread, NULL);
		goto fail_flags;
	}
	*fd = sv[0];
	*tp = t;
	return 0;
fail_flags:
	fcntl(in, F_SETFL, t->in_flags);
	fcntl(out, F_SETFL, t->out_flags);
fail:
	for (int i = 0; i < 2; i++) {
		if (sv[i] >= 0)
			close(sv[i]);
		if (t->done[i] >= 0)
			close(t->done[i]);
	}
	if (t->stop >= 0)
		close(t->stop);
	free(t);
	return rc;
}

int vi_migrate_tunnel_close(struct vi_migrate_tunnel *t, unsigned timeout_ms)
{
	double start = vi_now_ms();
	int ended = 0, rc = 0;
	char c;

	/* Both directions end with their frames; one that does not within the
	 * time is told to stop, and the pipes can carry nothing more. */
	while (ended < 2) {
		struct pollfd p = { .fd = t->done[0], .events = POLLIN };
		double left = timeout_ms - vi_ms_since(start);
		if (left <= 0 || poll(&p, 1, (int)left + 1) == 0)
			break;
		if (read(t->done[0], &c, 1) == 1)
			ended++;
	}
	if (ended < 2) {
		uint64_t one = 1;
		atomic_store(&t->broken, true);
		while (write(t->stop, &one, sizeof(one)) < 0 && errno == EINTR)
			;
	}
	pthread_join(t->out_thread, NULL);
	pthread_join(t->in_thread, NULL);
	if (atomic_load(&t->broken))
		rc = vi_error(VI_EFAIL, "the migration tunnel through ssh broke");
	fcntl(t->in, F_SETFL, t->in_flags);
	fcntl(t->out, F_SETFL, t->out_flags);
	close(t->sock);
	close(t->done[0]);
	close(t->done[1]);
	close(t->stop);
	free(t);
	return rc;
}
