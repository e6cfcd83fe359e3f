/* Export and import of golden images: one tar archive (zstd, gzip or plain)
 * holding <digest>/manifest.yaml, the disks, kernel and initrd of an image and
 * of every image it is layered on, base first, and a SHA256SUMS of them all.
 * Import unpacks aside and verifies everything before the store sees it. */
#include "error.h"
#include "image/image.h"
#include "template-internal.h"
#include "tools-internal.h"
#include "util.h"

#include <archive.h>
#include <archive_entry.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define SUMS "SHA256SUMS"
#define MAX_TEXT_SIZE (1 << 20) /* of SHA256SUMS and a manifest */

struct meter {
	template_progress_fn fn;
	void *opaque;
	uint64_t done, total;
	int shown;
};

static void meter_add(struct meter *m, uint64_t n)
{
	m->done += n;
	if (m->fn && m->total) {
		int pct = (int)(m->done * 100 / m->total);
		if (pct != m->shown)
			m->fn(m->opaque, NULL, pct);
		m->shown = pct;
	}
}

static int archive_fail(struct archive *a, const char *what, const char *path)
{
	return vi_error(VI_EFAIL, "cannot %s '%s': %s", what, path,
			archive_error_string(a) ? archive_error_string(a) : "unknown error");
}

/* The image and the images below it, base first; free with
 * template_image_list_free(). */
static int load_chain(const struct vi_store *s, const char *digest, struct template_image **chain,
		      size_t *n)
{
	struct template_image *v = NULL;
	size_t count = 0;
	char *next = xstrdup(digest);
	int rc = 0;

	while (next && rc == 0) {
		v = xrealloc(v, (count + 1) * sizeof(*v));
		rc = template_image_load(s, next, &v[count]);
		free(next);
		next = NULL;
		if (rc == 0)
			next = xstrdup(v[count++].base_digest);
		if (count > 16 && next)
			rc = vi_error(VI_EFAIL, "image sha256:%s: its bases go too deep", digest);
	}
	free(next);
	if (rc < 0) {
		template_image_list_free(v, count);
		return rc;
	}
	for (size_t i = 0; i < count / 2; i++) {
		struct template_image tmp = v[i];
		v[i] = v[count - 1 - i];
		v[count - 1 - i] = tmp;
	}
	*chain = v;
	*n = count;
	return 0;
}

static int add_file(struct archive *a, const char *src, const char *name, const char *dst,
		    struct meter *m, char hex[SHA256_HEX_SIZE])
{
	static __thread char buf[1 << 16];
	struct archive_entry *e = NULL;
	struct sha256 h;
	struct stat st;
	ssize_t n;
	int fd = open(src, O_RDONLY | O_CLOEXEC), rc = 0;

	if (fd < 0 || fstat(fd, &st) < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot read '%s'", src);
		goto cleanup;
	}
	e = archive_entry_new();
	archive_entry_set_pathname(e, name);
	archive_entry_set_filetype(e, AE_IFREG);
	archive_entry_set_perm(e, 0644);
	archive_entry_set_size(e, st.st_size);
	archive_entry_set_mtime(e, st.st_mtime, 0);
	if (archive_write_header(a, e) != ARCHIVE_OK) {
		rc = archive_fail(a, "write", dst);
		goto cleanup;
	}
	sha256_init(&h);
	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		sha256_update(&h, buf, (size_t)n);
		if (archive_write_data(a, buf, (size_t)n) != n) {
			rc = archive_fail(a, "write", dst);
			goto cleanup;
		}
		meter_add(m, (uint64_t)n);
	}
	if (n < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot read '%s'", src);
		goto cleanup;
	}
	sha256_final_hex(&h, hex);
cleanup:
	if (e)
		archive_entry_free(e);
	if (fd >= 0)
		close(fd);
	return rc;
}

int template_export_archive(const struct vi_store *s, const char *digest, const char *path,
			    enum template_compression compression, template_progress_fn progress,
			    void *opaque)
{
	struct template_image *chain;
	struct meter m = { .fn = progress, .opaque = opaque, .shown = -1 };
	struct archive *a = NULL;
	char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid()), *sums = xstrdup("");
	size_t n;
	int rc;

	if ((rc = load_chain(s, digest, &chain, &n)) < 0) {
		free(tmp);
		free(sums);
		return rc;
	}
	for (size_t i = 0; i < n; i++) {
		struct template_strv files;
		template_image_files(&chain[i], &files);
		for (size_t k = 0; k < files.n; k++) {
			struct stat st;
			if (stat(files.v[k], &st) == 0)
				m.total += (uint64_t)st.st_size;
		}
		template_strv_release(&files);
	}
	a = archive_write_new();
	archive_write_set_format_pax_restricted(a);
	if (compression == TEMPLATE_COMPRESS_ZSTD)
		archive_write_add_filter_zstd(a);
	else if (compression == TEMPLATE_COMPRESS_GZIP)
		archive_write_add_filter_gzip(a);
	if (archive_write_open_filename(a, tmp) != ARCHIVE_OK) {
		rc = archive_fail(a, "create", tmp);
		goto cleanup;
	}
	for (size_t i = 0; i < n && rc == 0; i++) {
		struct template_strv files;
		template_image_files(&chain[i], &files);
		for (size_t k = 0; k < files.n && rc == 0; k++) {
			char hex[SHA256_HEX_SIZE];
			char *name =
				xasprintf("%s/%s", chain[i].digest, strrchr(files.v[k], '/') + 1);
			if ((rc = add_file(a, files.v[k], name, path, &m, hex)) == 0) {
				char *line = xasprintf("%s%s  %s\n", sums, hex, name);
				free(sums);
				sums = line;
			}
			free(name);
		}
		template_strv_release(&files);
	}
	if (rc == 0) {
		struct archive_entry *e = archive_entry_new();
		archive_entry_set_pathname(e, SUMS);
		archive_entry_set_filetype(e, AE_IFREG);
		archive_entry_set_perm(e, 0644);
		archive_entry_set_size(e, (la_int64_t)strlen(sums));
		archive_entry_set_mtime(e, time(NULL), 0);
		if (archive_write_header(a, e) != ARCHIVE_OK ||
		    archive_write_data(a, sums, strlen(sums)) != (la_ssize_t)strlen(sums))
			rc = archive_fail(a, "write", path);
		archive_entry_free(e);
	}
	if (rc == 0 && archive_write_close(a) != ARCHIVE_OK)
		rc = archive_fail(a, "write", path);
	if (rc == 0 && rename(tmp, path) < 0)
		rc = vi_error_errno(VI_EFAIL, errno, "cannot create '%s'", path);
cleanup:
	archive_write_free(a);
	if (rc < 0)
		unlink(tmp);
	template_image_list_free(chain, n);
	free(tmp);
	free(sums);
	return rc;
}

/* --- import ------------------------------------------------------------- */

struct imported {
	char *name; /* "<digest>/<file>" */
	char hex[SHA256_HEX_SIZE];
	bool listed; /* in SHA256SUMS */
};

struct import {
	const char *archive;
	char *stage;
	struct imported *files;
	size_t nfiles;
	char *sums;
	struct template_strv dirs; /* digests, in archive order */
};

static bool allowed_file(const char *f)
{
	unsigned long i;
	char *end;

	if (!strcmp(f, "manifest.yaml") || !strcmp(f, "kernel") || !strcmp(f, "initrd") ||
	    !strcmp(f, "disk.qcow2"))
		return true;
	if (strncmp(f, "disk", 4) || !isdigit((unsigned char)f[4]) || f[4] == '0')
		return false;
	i = strtoul(f + 4, &end, 10);
	return i > 0 && i < 64 && !strcmp(end, ".qcow2");
}

static int damaged(struct import *im, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int damaged(struct import *im, const char *fmt, ...)
{
	char why[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	return vi_error(VI_EFAIL, "archive '%s' is damaged or was altered: %s", im->archive, why);
}

/* Unpacks one entry into the staging directory, hashing it. */
static int unpack_entry(struct import *im, struct archive *a, struct archive_entry *e,
			struct meter *m)
{
	static __thread char buf[1 << 16];
	const char *name = archive_entry_pathname(e);
	const char *slash = name ? strchr(name, '/') : NULL;
	struct sha256 h;
	la_ssize_t n;
	char *dir, *path;
	int fd, rc = 0;

	if (archive_entry_filetype(e) != AE_IFREG)
		return damaged(im, "'%s' is not a regular file", name ? name : "");
	if (name && !strcmp(name, SUMS)) {
		if (im->sums)
			return damaged(im, "two %s", SUMS);
		if (archive_entry_size(e) > MAX_TEXT_SIZE)
			return damaged(im, "%s is too large", SUMS);
		im->sums = xcalloc(1, (size_t)archive_entry_size(e) + 1);
		if (archive_read_data(a, im->sums, (size_t)archive_entry_size(e)) !=
		    archive_entry_size(e))
			return archive_fail(a, "read", im->archive);
		return 0;
	}
	if (!slash || slash - name != 64 || !allowed_file(slash + 1) ||
	    name[strspn(name, "0123456789abcdef")] != '/')
		return damaged(im, "unexpected file '%s'", name ? name : "");
	if (!strcmp(slash + 1, "manifest.yaml") && archive_entry_size(e) > MAX_TEXT_SIZE)
		return damaged(im, "'%s' is too large", name);
	for (size_t i = 0; i < im->nfiles; i++)
		if (!strcmp(im->files[i].name, name))
			return damaged(im, "'%s' appears twice", name);
	dir = xasprintf("%s/%.64s", im->stage, name);
	if (mkdir(dir, 0711) == 0) {
		char *digest = xstrndup(name, 64);
		template_strv_push(&im->dirs, digest);
		free(digest);
	} else if (errno != EEXIST) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot create '%s'", dir);
	}
	free(dir);
	if (rc < 0)
		return rc;
	path = xasprintf("%s/%s", im->stage, name);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
	if (fd < 0) {
		rc = vi_error_errno(VI_EFAIL, errno, "cannot create '%s'", path);
		free(path);
		return rc;
	}
	sha256_init(&h);
	while (rc == 0 && (n = archive_read_data(a, buf, sizeof(buf))) > 0) {
		sha256_update(&h, buf, (size_t)n);
		if (vi_write_all(fd, buf, (size_t)n) < 0)
			rc = vi_error_errno(VI_EFAIL, errno, "cannot write '%s'", path);
		meter_add(m, (uint64_t)n);
	}
	if (rc == 0 && n < 0)
		rc = archive_fail(a, "read", im->archive);
	if (close(fd) < 0 && rc == 0)
		rc = vi_error_errno(VI_EFAIL, errno, "cannot write '%s'", path);
	if (rc == 0 && fchmodat(AT_FDCWD, path, 0644, 0) < 0)
		rc = vi_error_errno(VI_EFAIL, errno, "cannot change the mode of '%s'", path);
	free(path);
	if (rc < 0)
		return rc;
	im->files = xrealloc(im->files, (im->nfiles + 1) * sizeof(*im->files));
	memset(&im->files[im->nfiles], 0, sizeof(*im->files));
	im->files[im->nfiles].name = xstrdup(name);
	sha256_final_hex(&h, im->files[im->nfiles].hex);
	im->nfiles++;
	return 0;
}

/* Every file matches its sum, and every sum has its file. */
static int verify_sums(struct import *im)
{
	char *save = NULL;

	if (!im->sums)
		return damaged(im, "it has no %s", SUMS);
	for (char *l = strtok_r(im->sums, "\n", &save); l; l = strtok_r(NULL, "\n", &save)) {
		size_t i;
		if (strlen(l) < 67 || l[64] != ' ' || l[65] != ' ')
			return damaged(im, "%s has a malformed line", SUMS);
		for (i = 0; i < im->nfiles; i++)
			if (!strcmp(im->files[i].name, l + 66))
				break;
		if (i == im->nfiles)
			return damaged(im, "'%s' is missing", l + 66);
		if (im->files[i].listed)
			return damaged(im, "%s lists '%s' twice", SUMS, l + 66);
		if (strncmp(im->files[i].hex, l, 64))
			return damaged(im, "'%s' does not match its SHA-256 sum", l + 66);
		im->files[i].listed = true;
	}
	for (size_t i = 0; i < im->nfiles; i++)
		if (!im->files[i].listed)
			return damaged(im, "'%s' is not in %s", im->files[i].name, SUMS);
	return 0;
}

/* The digest of a staged image's content, from the sums of its files. */
static void staged_digest(const struct import *im, const char *label, char hex[SHA256_HEX_SIZE])
{
	struct template_strv lines = { 0 };

	for (size_t i = 0; i < im->nfiles; i++)
		if (!strncmp(im->files[i].name, label, 64)) {
			char *line = xasprintf("%s  %s", im->files[i].hex, im->files[i].name + 65);
			template_strv_push(&lines, line);
			free(line);
		}
	template_sums_digest(&lines, hex);
	template_strv_release(&lines);
}

/* A message that named a file in the staging directory names it as the
 * archive does ("<digest>/manifest.yaml"): the directory is gone by the
 * time anyone reads it. */
static const char *as_in_archive(const struct import *im, const char *msg, char *buf, size_t len)
{
	size_t n = strlen(im->stage), used = 0;
	const char *at;

	while ((at = strstr(msg, im->stage)) && at[n] == '/' && used < len) {
		used += (size_t)snprintf(buf + used, len - used, "%.*s", (int)(at - msg), msg);
		msg = at + n + 1;
	}
	if (used < len)
		snprintf(buf + used, len - used, "%s", msg);
	return buf;
}

/* A staged image is whole: a manifest that passes the checks any manifest
 * does, its files, and disks that are qcow2 with no backing file but their
 * base's, the image before it in the archive (or one in the store). */
static int verify_image(struct import *im, const struct vi_store *s, size_t i,
			struct template_image *img)
{
	const char *label = im->dirs.v[i];
	char *dir = xasprintf("%s/%s", im->stage, label);
	char *manifest = xasprintf("%s/manifest.yaml", dir), buf[1024];
	int rc;

	memset(img, 0, sizeof(*img));
	if (!vi_file_exists(manifest)) {
		rc = damaged(im, "image %.12s has no manifest", label);
		goto out;
	}
	if (template_manifest_load(manifest, dir, img) < 0) {
		rc = damaged(im, "%s", as_in_archive(im, vi_error_message(), buf, sizeof(buf)));
		goto out;
	}
	if (img->schema == 1 && strcmp(img->template_digest, label)) {
		rc = damaged(im, "the manifest in %.12s names image %.12s", label,
			     img->template_digest);
		goto out;
	}
	rc = 0;
	if (i > 0 && (!img->base_digest || strcmp(img->base_digest, im->dirs.v[i - 1])))
		rc = damaged(im, "image %.12s is not layered on the image before it", label);
	if (rc == 0 && i == 0 && img->base_digest) {
		char *base = vi_store_path(s, "images/%s/manifest.yaml", img->base_digest);
		if (!vi_file_exists(base))
			rc = vi_error(
				VI_ENOTFOUND,
				"archive '%s': image %.12s needs its base sha256:%s, which is neither in the archive nor in the store",
				im->archive, label, img->base_digest);
		free(base);
	}
	const char *files[] = { img->kernel, img->initrd };
	for (size_t f = 0; f < ARRAY_SIZE(files) && rc == 0; f++)
		if (files[f] && !vi_file_exists(files[f]))
			rc = damaged(im, "image %.12s lacks '%s'", label,
				     strrchr(files[f], '/') + 1);
	for (size_t k = 0; k < img->ndisks && rc == 0; k++) {
		struct image *disk;
		struct image_info info = { 0 };
		char *want = NULL;
		if (image_open(img->disks[k].path, IMAGE_QCOW2, IMAGE_OPEN_NO_BACKING, &disk) < 0) {
			rc = damaged(im, "disk %zu of %.12s: %s", k + 1, label,
				     as_in_archive(im, vi_error_message(), buf, sizeof(buf)));
			break;
		}
		if ((rc = image_get_info(disk, false, &info)) == 0) {
			if (img->base_digest)
				want = xasprintf("../%s/%s", img->base_digest,
						 strrchr(img->disks[k].path, '/') + 1);
			if (want ? !info.backing_file || strcmp(info.backing_file, want)
				 : info.backing_file != NULL)
				rc = damaged(
					im, "disk %zu of %.12s has an unexpected backing file '%s'",
					k + 1, label, info.backing_file ? info.backing_file : "");
		}
		image_info_release(&info);
		image_close(disk);
		free(want);
	}
out:
	if (rc < 0)
		template_image_release(img);
	free(dir);
	free(manifest);
	return rc;
}

/* The name each staged image lands under: the digest of its content. An
 * archive names its images so (an earlier version named them by their
 * template digest: such an image lands under its content digest too, unless
 * another in the archive is layered on it by the old name). */
static int name_images(struct import *im, const struct template_image *imgs,
		       struct template_strv *digests)
{
	for (size_t i = 0; i < im->dirs.n; i++) {
		char hex[SHA256_HEX_SIZE];
		staged_digest(im, im->dirs.v[i], hex);
		if (strcmp(hex, im->dirs.v[i]) && (imgs[i].schema != 1 || i + 1 < im->dirs.n))
			return damaged(im, "image %.12s is not named by its content (sha256:%.12s)",
				       im->dirs.v[i], hex);
		template_strv_push(digests, hex);
	}
	return 0;
}

/* An image taking a name that another stored image has would change what
 * that name means: only with --force. */
static int check_names(struct import *im, const struct vi_store *s,
		       const struct template_image *imgs, const struct template_strv *digests,
		       bool force)
{
	struct template_image *stored;
	size_t n;
	int rc = force ? 0 : template_image_list(s, &stored, &n);

	if (force || rc < 0)
		return rc;
	for (size_t i = 0; i < digests->n && rc == 0; i++)
		for (size_t k = 0; k < n && rc == 0; k++)
			if (!strcmp(stored[k].name, imgs[i].name) &&
			    !template_strv_has(digests, stored[k].digest))
				rc = vi_error(
					VI_ESTATE,
					"archive '%s': the store has another image of '%s' (sha256:%.12s); --force imports this one in its place",
					im->archive, imgs[i].name, stored[k].digest);
	template_image_list_free(stored, n);
	return rc;
}

int template_import_archive(struct vi_store *s, const char *path,
			    const struct template_import_opts *opts, struct template_strv *digests)
{
	struct import im = { .archive = path };
	struct meter m = { .fn = opts->progress, .opaque = opts->opaque, .shown = -1 };
	struct archive *a = archive_read_new();
	struct archive_entry *e;
	struct template_image *imgs = NULL;
	size_t nimgs = 0;
	struct stat st;
	char *prefix;
	int rc = 0, r;

	memset(digests, 0, sizeof(*digests));
	if (stat(path, &st) == 0)
		m.total = (uint64_t)st.st_size * 2; /* a rough guess at the unpacked size */
	archive_read_support_filter_all(a);
	archive_read_support_format_tar(a);
	template_clear_dead(s);
	prefix = xasprintf(".import-%d-", (int)getpid());
	rc = template_stage_dir(s, prefix, &im.stage);
	free(prefix);
	if (rc < 0)
		goto cleanup;
	if (archive_read_open_filename(a, path, 1 << 16) != ARCHIVE_OK) {
		rc = vi_error(access(path, F_OK) ? VI_ENOTFOUND : VI_EFAIL, "cannot read '%s': %s",
			      path, archive_error_string(a));
		goto cleanup;
	}
	while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK)
		if ((rc = unpack_entry(&im, a, e, &m)) < 0)
			goto cleanup;
	if (r != ARCHIVE_EOF) {
		rc = damaged(&im, "%s",
			     archive_error_string(a) ? archive_error_string(a)
						     : "it cannot be read");
		goto cleanup;
	}
	if ((rc = verify_sums(&im)) < 0)
		goto cleanup;
	if (!im.dirs.n) {
		rc = damaged(&im, "it holds no image");
		goto cleanup;
	}
	imgs = xcalloc(im.dirs.n, sizeof(*imgs));
	for (nimgs = 0; nimgs < im.dirs.n; nimgs++)
		if ((rc = verify_image(&im, s, nimgs, &imgs[nimgs])) < 0)
			goto cleanup;
	if ((rc = name_images(&im, imgs, digests)) < 0)
		goto cleanup;
	if (opts->expect && strcmp(opts->expect + 7, digests->v[digests->n - 1])) {
		rc = damaged(&im, "it holds sha256:%s, not the expected %s",
			     digests->v[digests->n - 1], opts->expect);
		goto cleanup;
	}
	if ((rc = check_names(&im, s, imgs, digests, opts->force)) < 0)
		goto cleanup;
	/* Bases came first in the archive: each image lands after its base. */
	for (size_t i = 0; i < im.dirs.n && rc == 0; i++) {
		char *from = xasprintf("%s/%s", im.stage, im.dirs.v[i]);
		if ((rc = template_land(s, from, digests->v[i])) == 0)
			rc = template_index_set(s, "names", imgs[i].name, digests->v[i]);
		free(from);
	}
cleanup:
	archive_read_free(a);
	if (rc < 0 && im.stage) {
		char buf[1024];
		/* Failures inside the staging directory name the file in the
		 * archive, and the archive. */
		if (strstr(vi_error_message(), im.stage)) {
			as_in_archive(&im, vi_error_message(), buf, sizeof(buf));
			vi_error(vi_error_code(), "archive '%s': %s", path, buf);
		}
	}
	if (im.stage)
		vi_rm_rf(im.stage);
	free(im.stage);
	for (size_t i = 0; i < im.nfiles; i++)
		free(im.files[i].name);
	free(im.files);
	free(im.sums);
	template_strv_release(&im.dirs);
	template_image_list_free(imgs, nimgs);
	if (rc < 0)
		template_strv_release(digests);
	return rc;
}
