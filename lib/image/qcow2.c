/* qcow2 images: header parsing and validation, open and close, creation,
 * growing, header rewrites and information. Guest I/O is in qcow2-io.c. */
#include "qcow2.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "util.h"

/* Largest virtual size we accept: what an L1 table of qemu's maximum size
 * maps with the image's cluster size, and never past 2^62. */
static uint64_t max_virtual_size(unsigned cbits)
{
	unsigned bits = (cbits - 3) + cbits + 22; /* L2 entries * cluster * 4 Mi L1 entries */
	return bits >= 62 ? 1ull << 62 : 1ull << bits;
}

static uint64_t l1_entries_for(uint64_t size, unsigned cbits)
{
	unsigned shift = cbits + cbits - 3;
	return (size + (1ull << shift) - 1) >> shift;
}

int qcow2_read_meta(struct qcow2 *q, void *buf, size_t len, uint64_t offset, const char *what)
{
	ssize_t n = image_file_read(q->img, buf, len, offset);
	if (n < 0)
		return (int)n;
	if ((size_t)n < len)
		return vi_error(VI_EFAIL, "'%s' is corrupt: %s at offset %#llx is past the end of the file",
				q->img->path, what, (unsigned long long)offset);
	return 0;
}

int qcow2_header_update(struct qcow2 *q, unsigned at, const void *data, size_t len)
{
	int rc = image_file_write(q->img, data, len, at);
	return rc < 0 ? rc : image_file_sync(q->img);
}

void qcow2_compressed_range(const struct qcow2 *q, uint64_t entry, uint64_t *offset,
			    uint64_t *len)
{
	unsigned shift = 62 - (q->cbits - 8);
	uint64_t sectors = ((entry >> shift) & ((1ull << (q->cbits - 8)) - 1)) + 1;

	*offset = entry & ((1ull << shift) - 1);
	*len = sectors * 512 - (*offset & 511);
}

static const char *feature_name(const unsigned char *table, uint32_t len, unsigned bit,
				char *buf, size_t size)
{
	for (uint32_t i = 0; i + 48 <= len; i += 48) {
		if (table[i] == 0 && table[i + 1] == bit) {
			snprintf(buf, size, ", %.46s", (const char *)table + i + 2);
			return buf;
		}
	}
	return "";
}

static int unsupported(struct image *img, const char *what)
{
	return vi_error(VI_EUNSUPPORTED, "'%s' %s, which is not supported", img->path, what);
}

static int corrupt(struct image *img, const char *what)
{
	return vi_error(VI_EFAIL, "'%s' is corrupt: %s", img->path, what);
}

/* Checks that [offset, offset + len) is cluster-aligned and inside the file. */
static int check_area(struct image *img, uint64_t offset, uint64_t len, uint32_t cs,
		      uint64_t file_size, const char *what)
{
	char msg[128];

	if (offset & (cs - 1)) {
		snprintf(msg, sizeof(msg), "the %s offset %#llx is not cluster-aligned", what,
			 (unsigned long long)offset);
		return corrupt(img, msg);
	}
	if (offset > file_size || len > file_size - offset) {
		snprintf(msg, sizeof(msg), "the %s is past the end of the file", what);
		return corrupt(img, msg);
	}
	return 0;
}

static int parse_extensions(struct image *img, struct qcow2_header *h, const unsigned char *c0,
			    uint32_t cs, char **backing_fmt, const unsigned char **features,
			    uint32_t *features_len)
{
	uint64_t off = h->version == 2 ? QCOW2_V2_HEADER_LEN : h->header_length;

	for (;;) {
		if (off + 8 > cs)
			return corrupt(img, "the header extensions run past the first cluster");
		uint32_t type = qcow2_be32(c0 + off), len = qcow2_be32(c0 + off + 4);
		if (type == QCOW2_EXT_END)
			return 0;
		if (len > cs - off - 8)
			return corrupt(img, "a header extension runs past the first cluster");
		const unsigned char *data = c0 + off + 8;
		switch (type) {
		case QCOW2_EXT_BACKING_FMT:
			free(*backing_fmt);
			*backing_fmt = xstrndup((const char *)data, len);
			break;
		case QCOW2_EXT_FEATURES:
			*features = data;
			*features_len = len;
			break;
		case QCOW2_EXT_BITMAPS:
			if (len < 24)
				return corrupt(img, "the bitmaps extension is too short");
			h->has_bitmaps = (h->autoclear & QCOW2_AUTOCLEAR_BITMAPS) != 0;
			h->bitmap_dir_size = qcow2_be64(data + 8);
			h->bitmap_dir_offset = qcow2_be64(data + 16);
			break;
		}
		off += 8 + (((uint64_t)len + 7) & ~7ull);
	}
}

int qcow2_header_read(struct image *img, struct qcow2_header *h, char **backing_file,
		      char **backing_fmt)
{
	unsigned char fixed[QCOW2_V3_HEADER_LEN] = {0}, *c0 = NULL;
	const unsigned char *features = NULL;
	uint32_t features_len = 0, cs;
	struct stat st;
	char name[64];
	ssize_t n;
	int rc;

	*backing_file = *backing_fmt = NULL;
	memset(h, 0, sizeof(*h));
	if (fstat(img->fd, &st) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot open '%s'", img->path);
	n = image_file_read(img, fixed, sizeof(fixed), 0);
	if (n < 0)
		return (int)n;
	if (n < (ssize_t)QCOW2_V2_HEADER_LEN || qcow2_be32(fixed) != QCOW2_MAGIC)
		return vi_error(VI_EUSAGE, "'%s' is not a qcow2 image", img->path);
	h->version = qcow2_be32(fixed + 4);
	h->backing_offset = qcow2_be64(fixed + 8);
	h->backing_size = qcow2_be32(fixed + 16);
	h->cluster_bits = qcow2_be32(fixed + 20);
	h->size = qcow2_be64(fixed + 24);
	h->crypt_method = qcow2_be32(fixed + 32);
	h->l1_size = qcow2_be32(fixed + 36);
	h->l1_offset = qcow2_be64(fixed + 40);
	h->rt_offset = qcow2_be64(fixed + 48);
	h->rt_clusters = qcow2_be32(fixed + 56);
	h->nb_snapshots = qcow2_be32(fixed + 60);
	h->snapshots_offset = qcow2_be64(fixed + 64);
	h->refcount_order = 4;
	h->header_length = QCOW2_V2_HEADER_LEN;
	if (h->version != 2 && h->version != 3)
		return vi_error(VI_EUNSUPPORTED, "'%s' has qcow2 version %u, which is not supported",
				img->path, h->version);
	if (h->version == 3) {
		if (n < (ssize_t)QCOW2_V3_HEADER_LEN)
			return corrupt(img, "the header is truncated");
		h->incompat = qcow2_be64(fixed + 72);
		h->compat = qcow2_be64(fixed + 80);
		h->autoclear = qcow2_be64(fixed + 88);
		h->refcount_order = qcow2_be32(fixed + 96);
		h->header_length = qcow2_be32(fixed + 100);
	}
	if (h->cluster_bits < 9 || h->cluster_bits > 21)
		return vi_error(VI_EUNSUPPORTED, "'%s' has an unsupported cluster size (2^%u bytes)",
				img->path, h->cluster_bits);
	cs = 1u << h->cluster_bits;
	if (h->version == 3 && (h->header_length < QCOW2_V3_HEADER_LEN || h->header_length % 8 ||
				h->header_length > cs))
		return corrupt(img, "the header length is invalid");
	if (h->refcount_order > 6)
		return corrupt(img, "the refcount order is invalid");

	c0 = xmalloc(cs);
	n = image_file_read(img, c0, cs, 0);
	if (n < 0) {
		rc = (int)n;
		goto cleanup;
	}
	memset(c0 + n, 0, cs - (size_t)n);
	rc = parse_extensions(img, h, c0, cs, backing_fmt, &features, &features_len);
	if (rc < 0)
		goto cleanup;

	if (h->crypt_method) {
		rc = unsupported(img, "is encrypted");
		goto cleanup;
	}
	if (h->incompat & QCOW2_INCOMPAT_DATA_FILE) {
		rc = unsupported(img, "uses an external data file");
		goto cleanup;
	}
	if (h->incompat & ~QCOW2_INCOMPAT_KNOWN) {
		unsigned bit = (unsigned)__builtin_ctzll(h->incompat & ~QCOW2_INCOMPAT_KNOWN);
		rc = vi_error(VI_EUNSUPPORTED,
			      "'%s' has an unsupported incompatible feature (bit %u%s)", img->path,
			      bit, feature_name(features, features_len, bit, name, sizeof(name)));
		goto cleanup;
	}
	if (h->size > max_virtual_size(h->cluster_bits)) {
		rc = vi_error(VI_EUNSUPPORTED, "'%s' has an absurd virtual size (%llu bytes)",
			      img->path, (unsigned long long)h->size);
		goto cleanup;
	}
	if ((uint64_t)h->l1_size * 8 > QCOW2_MAX_L1_BYTES) {
		rc = corrupt(img, "the L1 table is absurdly large");
		goto cleanup;
	}
	if (h->l1_size < l1_entries_for(h->size, h->cluster_bits)) {
		rc = corrupt(img, "the L1 table is too small for the virtual size");
		goto cleanup;
	}
	if ((rc = check_area(img, h->l1_offset, (uint64_t)h->l1_size * 8, cs,
			     (uint64_t)st.st_size, "L1 table")) < 0)
		goto cleanup;
	if ((uint64_t)h->rt_clusters << h->cluster_bits > QCOW2_MAX_RT_BYTES ||
	    h->rt_clusters == 0) {
		rc = corrupt(img, "the refcount table size is invalid");
		goto cleanup;
	}
	if ((rc = check_area(img, h->rt_offset, (uint64_t)h->rt_clusters << h->cluster_bits, cs,
			     (uint64_t)st.st_size, "refcount table")) < 0)
		goto cleanup;
	if (h->nb_snapshots > QCOW2_MAX_SNAPSHOTS) {
		rc = corrupt(img, "too many snapshots");
		goto cleanup;
	}
	if (h->nb_snapshots &&
	    (rc = check_area(img, h->snapshots_offset, 0, cs, (uint64_t)st.st_size,
			     "snapshot table")) < 0)
		goto cleanup;
	if (h->backing_offset) {
		if (h->backing_size > QCOW2_MAX_BACKING_NAME || h->backing_offset >= cs ||
		    h->backing_size > cs - h->backing_offset || h->backing_size == 0) {
			rc = corrupt(img, "the backing file name is invalid");
			goto cleanup;
		}
		*backing_file = xstrndup((const char *)c0 + h->backing_offset, h->backing_size);
		if (strlen(*backing_file) != h->backing_size) {
			rc = corrupt(img, "the backing file name is invalid");
			goto cleanup;
		}
	}
	rc = 0;
cleanup:
	free(c0);
	if (rc < 0) {
		free(*backing_file);
		free(*backing_fmt);
		*backing_file = *backing_fmt = NULL;
	}
	return rc;
}

/* The metadata cache budget, filled only as tables are used: three quarters
 * for L2 tables (24 MiB map a 192 GiB disk with 64 KiB clusters), a quarter
 * for refcount blocks, never fewer than a few tables of each. */
#define QCOW2_DEFAULT_CACHE (32u << 20)

static void caches_init(struct qcow2 *q, uint64_t bytes)
{
	uint64_t l2 = (bytes - bytes / 4) >> q->cbits, rb = (bytes / 4) >> q->cbits;

	if (l2 < 4)
		l2 = 4;
	if (l2 > q->h.l1_size && q->h.l1_size >= 4)
		l2 = q->h.l1_size;
	if (rb > q->rt_entries)
		rb = q->rt_entries; /* one per block there can be; none read-only */
	if (rb < 4)
		rb = 4;
	qcow2_cache_init(&q->l2_cache, (size_t)l2, q->h.l1_size);
	qcow2_cache_init(&q->rb_cache, (size_t)rb, q->rt_entries);
}

static int load_l1(struct qcow2 *q)
{
	size_t bytes = (size_t)q->h.l1_size * 8;
	int rc;

	q->l1 = xcalloc(q->h.l1_size ? q->h.l1_size : 1, 8);
	if (!bytes)
		return 0;
	rc = qcow2_read_meta(q, q->l1, bytes, q->h.l1_offset, "L1 table");
	if (rc < 0)
		return rc;
	for (uint32_t i = 0; i < q->h.l1_size; i++)
		q->l1[i] = be64toh(q->l1[i]);
	return 0;
}

/* Before changing an image's metadata: refuse one marked corrupt or that
 * the check finds corrupt (changing it would spread the damage, say by
 * allocating a cluster in use), repairing first the refcounts of one
 * another program left dirty (the repair clears the dirty bit). */
static int refuse_damaged(struct qcow2 *q)
{
	if (q->h.incompat & QCOW2_INCOMPAT_CORRUPT)
		return vi_error(VI_EFAIL, "'%s' is marked corrupt: check and repair it first",
				q->img->path);
	return image_refuse_corrupt(q->img, q->h.incompat & QCOW2_INCOMPAT_DIRTY
						    ? IMAGE_CHECK_REPAIR_ALL : 0);
}

/* Opening for writing: refuse what writing would spoil, drop auto-clear
 * features we do not keep. */
static int prepare_write(struct qcow2 *q)
{
	struct image *img = q->img;
	unsigned char be[8] = {0};
	int rc;

	if (q->h.has_bitmaps)
		return unsupported(img, "has persistent dirty bitmaps");
	if ((rc = refuse_damaged(q)) < 0)
		return rc;
	if (q->h.autoclear) {
		if ((rc = qcow2_header_update(q, QCOW2_HDR_AUTOCLEAR, be, sizeof(be))) < 0)
			return rc;
		q->h.autoclear = 0;
	}
	return qcow2_alloc_init(q);
}

static int qcow2_open(struct image *img, unsigned flags)
{
	struct qcow2 *q = xcalloc(1, sizeof(*q));
	char *fmt = NULL;
	struct stat st;
	int rc;

	q->img = img;
	img->priv = q;
	pthread_mutex_init(&q->lock, NULL);
	pthread_mutex_init(&q->flush_lock, NULL);
	pthread_cond_init(&q->inflight_done, NULL);
	pthread_rwlockattr_t attr;
	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&q->io_lock, &attr);
	pthread_rwlockattr_destroy(&attr);

	rc = qcow2_header_read(img, &q->h, &img->backing_file, &fmt);
	if (rc < 0)
		goto cleanup;
	if (img->backing_file) {
		if (!fmt)
			img->backing_format = IMAGE_PROBE;
		else if (image_format_parse(fmt, &img->backing_format) < 0) {
			rc = vi_error(VI_EUNSUPPORTED,
				      "'%s' has a backing file of format '%s', which is not supported",
				      img->path, fmt);
			goto cleanup;
		}
	}
	q->cbits = q->h.cluster_bits;
	q->cs = 1u << q->cbits;
	q->l2_bits = q->cbits - 3;
	q->l2_entries = 1ull << q->l2_bits;
	q->rb_bits = q->cbits + 3 - q->h.refcount_order;
	q->rb_entries = 1ull << q->rb_bits;
	q->refcount_max = q->h.refcount_order == 6 ? UINT64_MAX
						   : (1ull << (1u << q->h.refcount_order)) - 1;
	img->size = q->h.size;
	img->cluster_size = q->cs;
	q->zeros = xcalloc(1, q->cs);

	if ((rc = load_l1(q)) < 0)
		goto cleanup;
	if (img->writable && !(flags & IMAGE_OPEN_CHECK)) {
		if ((rc = prepare_write(q)) < 0)
			goto cleanup;
		if (fstat(img->fd, &st) < 0) {
			rc = vi_error_errno(VI_EFAIL, errno, "cannot open '%s'", img->path);
			goto cleanup;
		}
		q->end = ((uint64_t)st.st_size + q->cs - 1) >> q->cbits;
	}
	caches_init(q, QCOW2_DEFAULT_CACHE);
cleanup:
	free(fmt);
	return rc;
}

static void qcow2_close(struct image *img)
{
	struct qcow2 *q = img->priv;

	if (!q)
		return;
	qcow2_cache_release(&q->l2_cache);
	qcow2_cache_release(&q->rb_cache);
	pthread_mutex_destroy(&q->lock);
	pthread_mutex_destroy(&q->flush_lock);
	pthread_cond_destroy(&q->inflight_done);
	pthread_rwlock_destroy(&q->io_lock);
	free(q->l1);
	free(q->rt);
	free(q->inflight);
	free(q->pending_free);
	free(q->zeros);
	free(q->zcache);
	free(q);
	img->priv = NULL;
}

static int qcow2_set_cache(struct image *img, uint64_t bytes)
{
	struct qcow2 *q = img->priv;
	int rc;

	pthread_mutex_lock(&q->lock);
	rc = qcow2_metadata_write(q);
	if (rc == 0) {
		qcow2_cache_release(&q->l2_cache);
		qcow2_cache_release(&q->rb_cache);
		caches_init(q, bytes);
	}
	pthread_mutex_unlock(&q->lock);
	return rc;
}

/* A bigger L1 table goes to the end of the file; the header switches to it
 * once it and the L2 tables it points to are durable. */
static int grow_l1(struct qcow2 *q, uint64_t entries)
{
	uint64_t bytes = entries * 8, clusters = (bytes + q->cs - 1) >> q->cbits, first, got;
	uint64_t old_offset = q->h.l1_offset, old_clusters;
	unsigned char hdr[12];
	uint64_t *be;
	bool fresh;
	int rc;

	if (bytes > QCOW2_MAX_L1_BYTES)
		return vi_error(VI_EUSAGE, "cannot resize '%s': the L1 table would exceed %u MiB",
				q->img->path, QCOW2_MAX_L1_BYTES >> 20);
	old_clusters = ((uint64_t)q->h.l1_size * 8 + q->cs - 1) >> q->cbits;
	if ((rc = qcow2_metadata_write(q)) < 0)
		return rc;
	if ((rc = qcow2_alloc(q, clusters, true, &first, &got, &fresh)) < 0)
		return rc;
	be = xcalloc(clusters, q->cs);
	for (uint64_t i = 0; i < q->h.l1_size; i++)
		be[i] = htobe64(q->l1[i]);
	rc = image_file_write(q->img, be, clusters << q->cbits, first << q->cbits);
	free(be);
	/* The allocation raised refcounts: they go first. */
	if (rc == 0)
		rc = qcow2_refcounts_write(q);
	if (rc == 0)
		rc = image_file_sync(q->img);
	if (rc < 0)
		return rc;
	qcow2_put_be32(hdr, (uint32_t)entries);
	qcow2_put_be64(hdr + 4, first << q->cbits);
	if ((rc = qcow2_header_update(q, QCOW2_HDR_L1, hdr, sizeof(hdr))) < 0)
		return rc;
	q->l1 = xrealloc(q->l1, bytes);
	memset(q->l1 + q->h.l1_size, 0, (entries - q->h.l1_size) * 8);
	q->h.l1_size = (uint32_t)entries;
	q->h.l1_offset = first << q->cbits;
	q->l1_dirty_lo = q->l1_dirty_hi = 0;
	qcow2_cache_grow_slots(&q->l2_cache, entries);
	return old_clusters ? qcow2_free_now(q, old_offset >> q->cbits, old_clusters) : 0;
}

static int qcow2_resize(struct image *img, uint64_t size)
{
	struct qcow2 *q = img->priv;
	uint64_t old = img->size, entries = l1_entries_for(size, q->cbits);
	unsigned char be[8];
	int rc = 0;

	if (size > max_virtual_size(q->cbits))
		return vi_error(VI_EUSAGE, "cannot resize '%s': %llu bytes is too large for its "
				"cluster size", img->path, (unsigned long long)size);
	/* Version 2 snapshots do not record their size: they must keep it. */
	if (q->h.nb_snapshots && q->h.version < 3)
		return vi_error(VI_EUNSUPPORTED, "cannot resize '%s': it is a version 2 image with "
				"internal snapshots", img->path);
	pthread_mutex_lock(&q->lock);
	if (entries > q->h.l1_size)
		rc = grow_l1(q, entries);
	pthread_mutex_unlock(&q->lock);
	if (rc < 0)
		return rc;
	qcow2_put_be64(be, size);
	if ((rc = qcow2_header_update(q, QCOW2_HDR_SIZE, be, sizeof(be))) < 0)
		return rc;
	img->size = q->h.size = size;
	/* The new area must read as zeros, even where a larger backing image
	 * has data, and so must the tail of the old last cluster. */
	return img->drv->zero(img, old, size - old, true);
}

static int qcow2_info(struct image *img, struct image_info *info)
{
	struct qcow2 *q = img->priv;
	uint64_t *l2 = xmalloc(q->cs), clusters = 0;
	int rc = 0;

	info->version = q->h.version;
	info->refcount_bits = 1u << q->h.refcount_order;
	info->dirty = q->h.incompat & QCOW2_INCOMPAT_DIRTY;
	info->corrupt = q->h.incompat & QCOW2_INCOMPAT_CORRUPT;
	info->lazy_refcounts = q->h.compat & QCOW2_COMPAT_LAZY_REFCOUNTS;
	info->snapshots = q->h.nb_snapshots;
	pthread_mutex_lock(&q->lock);
	for (uint64_t i = 0; i < q->h.l1_size && rc == 0; i++) {
		uint64_t l2_offset = q->l1[i] & QCOW2_OFFSET_MASK;
		struct qcow2_cached *e = qcow2_cache_find(&q->l2_cache, i);
		if (e)
			memcpy(l2, e->data, q->cs);
		else if (!l2_offset)
			continue;
		else if ((rc = qcow2_read_meta(q, l2, q->cs, l2_offset, "L2 table")) < 0)
			break;
		for (uint64_t j = 0; j < q->l2_entries; j++) {
			uint64_t entry = be64toh(l2[j]);
			if (((i << q->l2_bits) + j) << q->cbits >= img->size)
				break;
			if (entry & (QCOW2_COMPRESSED | QCOW2_OFFSET_MASK) ||
			    (q->h.version >= 3 && entry & QCOW2_ZERO))
				clusters++;
		}
	}
	pthread_mutex_unlock(&q->lock);
	free(l2);
	info->allocated = clusters << q->cbits;
	if (info->allocated > img->size)
		info->allocated = img->size;
	return rc;
}

/* Ends the header extensions at w of the first cluster c0 with the backing
 * format (if any), then the backing file name, which the header points at.
 * Returns the end of what was written; the caller checked that it fits. */
static size_t put_backing(unsigned char *c0, size_t w, const char *backing, const char *fmt)
{
	if (backing && fmt) {
		size_t len = strlen(fmt);
		qcow2_put_be32(c0 + w, QCOW2_EXT_BACKING_FMT);
		qcow2_put_be32(c0 + w + 4, (uint32_t)len);
		memcpy(c0 + w + 8, fmt, len);
		w += 8 + ((len + 7) & ~(size_t)7);
	}
	memset(c0 + w, 0, 8); /* end of extensions */
	w += 8;
	qcow2_put_be64(c0 + 8, backing ? w : 0);
	qcow2_put_be32(c0 + 16, backing ? (uint32_t)strlen(backing) : 0);
	if (backing) {
		memcpy(c0 + w, backing, strlen(backing));
		w += strlen(backing);
	}
	return w;
}

/* Room put_backing() needs after w. */
static size_t backing_room(const char *backing, const char *fmt)
{
	if (!backing)
		return 8;
	return (fmt ? 16 + strlen(fmt) : 0) + 8 + strlen(backing);
}

static void build_cluster0(unsigned char *c0, uint32_t cs, unsigned version, uint64_t size,
			   const char *backing, const char *backing_fmt)
{
	memset(c0, 0, cs);
	qcow2_put_be32(c0, QCOW2_MAGIC);
	qcow2_put_be32(c0 + 4, version);
	qcow2_put_be32(c0 + 20, (uint32_t)__builtin_ctz(cs));
	qcow2_put_be64(c0 + 24, size);
	if (version == 3) {
		qcow2_put_be32(c0 + 96, 4);
		qcow2_put_be32(c0 + 100, QCOW2_V3_HEADER_LEN);
	}
	put_backing(c0, version == 2 ? QCOW2_V2_HEADER_LEN : QCOW2_V3_HEADER_LEN, backing,
		    backing_fmt);
}

static int qcow2_create(const char *path, int fd, const struct image_create_opts *opts,
			uint64_t size)
{
	unsigned version = opts->version ? opts->version : 3;
	uint32_t cs = opts->cluster_size ? opts->cluster_size : 65536;
	const char *backing_fmt = opts->backing ? image_format_name(opts->backing_format) : NULL;
	struct image file = {.path = (char *)path, .fd = fd};
	unsigned char *buf = NULL;
	int rc;

	if (version != 2 && version != 3)
		return vi_error(VI_EUSAGE, "cannot create '%s': qcow2 version %u is not 2 or 3",
				path, version);
	if (cs < 4096 || cs > (2u << 20) || (cs & (cs - 1)))
		return vi_error(VI_EUSAGE, "cannot create '%s': the cluster size must be a power "
				"of two from 4 KiB to 2 MiB", path);
	unsigned cbits = (unsigned)__builtin_ctz(cs);
	if (size > max_virtual_size(cbits))
		return vi_error(VI_EUSAGE, "cannot create '%s': %llu bytes is too large for "
				"%u-byte clusters", path, (unsigned long long)size, cs);
	if (opts->backing && (strlen(opts->backing) > QCOW2_MAX_BACKING_NAME || !*opts->backing))
		return vi_error(VI_EUSAGE, "cannot create '%s': the backing file name must have 1 "
				"to %u bytes", path, QCOW2_MAX_BACKING_NAME);

	/* Layout: header, L1 table, refcount table, refcount blocks covering
	 * all of these. */
	uint64_t l1_entries = l1_entries_for(size, cbits);
	uint64_t l1c = (l1_entries * 8 + cs - 1) / cs, rb_entries = (uint64_t)cs * 8 / 16;
	uint64_t rtc = 1, nrb = 1, total;
	for (;;) {
		total = 1 + l1c + rtc + nrb;
		uint64_t need_rb = (total + rb_entries - 1) / rb_entries;
		uint64_t need_rtc = (need_rb * 8 + cs - 1) / cs;
		if (need_rb <= nrb && need_rtc <= rtc)
			break;
		nrb = need_rb > nrb ? need_rb : nrb;
		rtc = need_rtc > rtc ? need_rtc : rtc;
	}
	uint64_t rt_offset = (1 + l1c) * cs, rb_offset = rt_offset + rtc * cs;

	buf = xcalloc(rtc + nrb > 1 ? rtc + nrb : 1, cs);
	build_cluster0(buf, cs, version, size, opts->backing, backing_fmt);
	qcow2_put_be32(buf + 36, (uint32_t)l1_entries);
	qcow2_put_be64(buf + 40, cs);
	qcow2_put_be64(buf + 48, rt_offset);
	qcow2_put_be32(buf + 56, (uint32_t)rtc);
	if ((rc = image_file_write(&file, buf, cs, 0)) < 0)
		goto cleanup;
	memset(buf, 0, (rtc + nrb) * cs);
	for (uint64_t i = 0; i < nrb; i++)
		qcow2_put_be64(buf + i * 8, rb_offset + i * cs);
	for (uint64_t c = 0; c < total; c++)
		qcow2_refcount_set(buf + rtc * cs, c, 4, 1);
	/* The L1 table is the zeros between the header and the refcount table. */
	rc = image_file_write(&file, buf, (rtc + nrb) * cs, rt_offset);
cleanup:
	free(buf);
	return rc;
}

static int qcow2_set_backing(struct image *img, const char *backing, int backing_format)
{
	struct qcow2 *q = img->priv;
	const char *fmt = backing && backing_format != IMAGE_PROBE ? image_format_name(backing_format)
								   : NULL;
	unsigned char *c0 = xmalloc(q->cs), *out = xcalloc(1, q->cs);
	size_t off = q->h.version == 2 ? QCOW2_V2_HEADER_LEN : q->h.header_length, w = off;
	int rc;

	if ((rc = refuse_damaged(q)) < 0 || (rc = qcow2_read_meta(q, c0, q->cs, 0, "header")) < 0)
		goto cleanup;
	/* Keep the header and every extension but the backing format (their
	 * bounds were checked when the image was opened). */
	memcpy(out, c0, off);
	for (;;) {
		uint32_t type = qcow2_be32(c0 + off), len = qcow2_be32(c0 + off + 4);
		size_t step = 8 + (((size_t)len + 7) & ~(size_t)7);
		if (type == QCOW2_EXT_END)
			break;
		if (type != QCOW2_EXT_BACKING_FMT) {
			memcpy(out + w, c0 + off, step);
			w += step;
		}
		off += step;
	}
	if (w + backing_room(backing, fmt) > q->cs ||
	    (backing && strlen(backing) > QCOW2_MAX_BACKING_NAME)) {
		rc = vi_error(VI_EUSAGE, "cannot change the backing file of '%s': the name is too "
			      "long", img->path);
		goto cleanup;
	}
	put_backing(out, w, backing, fmt);
	rc = image_file_write(img, out, q->cs, 0);
	if (rc == 0)
		rc = image_file_sync(img);
cleanup:
	free(c0);
	free(out);
	return rc;
}

static bool qcow2_probe(const unsigned char *head, size_t len)
{
	return len >= 4 && qcow2_be32(head) == QCOW2_MAGIC;
}

const struct image_driver image_qcow2_driver = {
	.format = IMAGE_QCOW2,
	.probe = qcow2_probe,
	.open = qcow2_open,
	.close = qcow2_close,
	.read = qcow2_read,
	.write = qcow2_write,
	.zero = qcow2_zero,
	.flush = qcow2_flush,
	.resize = qcow2_resize,
	.status = qcow2_status,
	.set_cache = qcow2_set_cache,
	.info = qcow2_info,
	.create = qcow2_create,
	.check = qcow2_check,
	.set_backing = qcow2_set_backing,
};
