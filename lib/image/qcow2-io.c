/* qcow2 guest I/O: mapping through the L1 and L2 tables, reads through the
 * backing chain, allocating writes with copy-on-write, zeroing, and the
 * ordered write-back of metadata. Data moves without the metadata lock held;
 * clusters being allocated are marked in flight so that a second writer to
 * the same clusters waits instead of allocating twice. */
#include "qcow2.h"

#include <stdlib.h>
#include <sys/uio.h>
#include <zlib.h>

#include "error.h"
#include "util.h"

enum cluster_kind {
	K_UNALLOCATED,
	K_ZERO,
	K_DATA,
	K_COMPRESSED,
};

/* A run of guest bytes mapped alike. */
struct mapping {
	int kind;
	uint64_t entry; /* the L2 entry, for compressed clusters */
	uint64_t host;  /* file offset of the first byte, for data clusters */
	uint64_t len;
};

/* Flush by ourselves once this many freed clusters wait for release. */
#define QCOW2_PENDING_MAX 65536

static int bad_entry(struct qcow2 *q, const char *table, uint64_t entry, const char *what)
{
	return vi_error(VI_EFAIL, "'%s' is corrupt: %s entry %#llx %s", q->img->path, table,
			(unsigned long long)entry, what);
}

static int entry_kind(struct qcow2 *q, uint64_t entry, uint64_t *host, int *kind)
{
	*host = 0;
	if (entry & QCOW2_COMPRESSED) {
		*kind = K_COMPRESSED;
		return 0;
	}
	if (entry & QCOW2_L2_RESERVED)
		return bad_entry(q, "L2", entry, "has reserved bits set");
	*host = entry & QCOW2_OFFSET_MASK;
	if (*host & (q->cs - 1))
		return bad_entry(q, "L2", entry, "is not cluster-aligned");
	if (entry & QCOW2_ZERO) {
		if (q->h.version < 3)
			return bad_entry(q, "L2", entry, "is a zero cluster in a version 2 image");
		*kind = K_ZERO;
		return 0;
	}
	*kind = *host ? K_DATA : K_UNALLOCATED;
	return 0;
}

/* Clusters written in place: data clusters only this table uses. */
static bool in_place(uint64_t entry)
{
	return (entry & QCOW2_COPIED) && !(entry & (QCOW2_COMPRESSED | QCOW2_ZERO)) &&
	       (entry & QCOW2_OFFSET_MASK);
}

static void l1_mark_dirty(struct qcow2 *q, uint64_t i)
{
	if (q->l1_dirty_lo >= q->l1_dirty_hi) {
		q->l1_dirty_lo = i;
		q->l1_dirty_hi = i + 1;
		return;
	}
	if (i < q->l1_dirty_lo)
		q->l1_dirty_lo = i;
	if (i + 1 > q->l1_dirty_hi)
		q->l1_dirty_hi = i + 1;
}

/* Writing out an L2 table: what it points to must be on disk first. */
static int l2_evict(struct qcow2 *q, struct qcow2_cached *e)
{
	int rc = qcow2_refcounts_write(q);

	if (rc == 0)
		rc = image_file_sync(q->img);
	if (rc == 0)
		rc = image_file_write(q->img, e->data, q->cs, e->offset);
	if (rc == 0)
		e->dirty = false;
	q->unsynced = true;
	return rc;
}

/* The L2 table for L1 index i, or *out = NULL when there is none. */
static int l2_load(struct qcow2 *q, uint64_t i, struct qcow2_cached **out)
{
	struct qcow2_cached *e = qcow2_cache_find(&q->l2_cache, i);
	uint64_t l1e = q->l1[i], offset = l1e & QCOW2_OFFSET_MASK;
	int rc;

	*out = e;
	if (e)
		return 0;
	if (l1e & QCOW2_L1_RESERVED)
		return bad_entry(q, "L1", l1e, "has reserved bits set");
	if (offset & (q->cs - 1))
		return bad_entry(q, "L1", l1e, "is not cluster-aligned");
	if (!offset)
		return 0;
	rc = qcow2_cache_insert(q, &q->l2_cache, i, l2_evict, &e);
	if (rc < 0)
		return rc;
	rc = qcow2_read_meta(q, e->data, q->cs, offset, "L2 table");
	if (rc < 0) {
		qcow2_cache_drop(&q->l2_cache, e);
		return rc;
	}
	e->offset = offset;
	*out = e;
	return 0;
}

/* The L2 table for L1 index i, ready to be changed: allocated when missing,
 * copied when a snapshot shares it. */
static int l2_for_write(struct qcow2 *q, uint64_t i, struct qcow2_cached **out)
{
	uint64_t l1e = q->l1[i], old = l1e & QCOW2_OFFSET_MASK, c, got;
	struct qcow2_cached *e;
	bool fresh;
	int rc;

	if ((l1e & QCOW2_COPIED) && old)
		return l2_load(q, i, out);
	if ((rc = qcow2_alloc(q, 1, false, &c, &got, &fresh)) < 0)
		return rc;
	if (old) {
		rc = l2_load(q, i, &e);
		if (rc < 0) {
			qcow2_unalloc(q, c, 1);
			return rc;
		}
		uint64_t *t = e->data;
		for (uint64_t j = 0; j < q->l2_entries; j++)
			t[j] &= ~htobe64(QCOW2_COPIED);
		qcow2_free_later(q, old >> q->cbits, 1);
	} else {
		rc = qcow2_cache_insert(q, &q->l2_cache, i, l2_evict, &e);
		if (rc < 0) {
			qcow2_unalloc(q, c, 1);
			return rc;
		}
		memset(e->data, 0, q->cs);
	}
	e->offset = c << q->cbits;
	e->dirty = true;
	q->l1[i] = e->offset | QCOW2_COPIED;
	l1_mark_dirty(q, i);
	*out = e;
	return 0;
}

/* How the run from guest offset `offset` (at most len bytes, within one L2
 * table) is mapped; q->lock held. */
static int map_range_held(struct qcow2 *q, uint64_t offset, uint64_t len, struct mapping *m)
{
	uint64_t g = offset >> q->cbits, l2i = g & (q->l2_entries - 1);
	uint64_t inoff = offset & (q->cs - 1), n = q->cs - inoff, host, host2;
	uint64_t avail = ((q->l2_entries - l2i) << q->cbits) - inoff;
	struct qcow2_cached *e;
	int kind, kind2, rc;

	if (avail > len)
		avail = len;
	if ((rc = l2_load(q, g >> q->l2_bits, &e)) < 0)
		return rc;
	if (!e) {
		*m = (struct mapping){.kind = K_UNALLOCATED, .len = avail};
		return 0;
	}
	const uint64_t *t = e->data;
	m->entry = be64toh(t[l2i]);
	if ((rc = entry_kind(q, m->entry, &host, &kind)) < 0)
		return rc;
	m->kind = kind;
	m->host = host + inoff;
	for (uint64_t i = l2i + 1; kind != K_COMPRESSED && n < avail; i++) {
		if (entry_kind(q, be64toh(t[i]), &host2, &kind2) < 0 || kind2 != kind ||
		    (kind == K_DATA && host2 != host + ((i - l2i) << q->cbits)))
			break;
		n += q->cs;
	}
	m->len = n < avail ? n : avail;
	return 0;
}

/* map_range_held(), taking q->lock for it. */
static int map_range(struct qcow2 *q, uint64_t offset, uint64_t len, struct mapping *m)
{
	pthread_mutex_lock(&q->lock);
	int rc = map_range_held(q, offset, len, m);
	pthread_mutex_unlock(&q->lock);
	return rc;
}

static int read_compressed(struct qcow2 *q, uint64_t entry, uint64_t inoff, void *buf,
			   uint64_t len)
{
	uint64_t offset, clen;
	unsigned char *in = NULL, *out = NULL;
	z_stream zs = {0};
	ssize_t n;
	int rc = 0, zrc;

	pthread_mutex_lock(&q->lock);
	bool hit = q->zcache_entry == entry;
	if (hit)
		memcpy(buf, (char *)q->zcache + inoff, len);
	pthread_mutex_unlock(&q->lock);
	if (hit)
		return 0;

	qcow2_compressed_range(q, entry, &offset, &clen);
	in = xmalloc(clen);
	out = xmalloc(q->cs);
	n = image_file_read(q->img, in, clen, offset);
	if (n < 0) {
		rc = (int)n;
		goto cleanup;
	}
	if (inflateInit2(&zs, -12) != Z_OK) {
		rc = vi_error(VI_EFAIL, "cannot read '%s': zlib cannot start", q->img->path);
		goto cleanup;
	}
	zs.next_in = in;
	zs.avail_in = (uInt)n;
	zs.next_out = out;
	zs.avail_out = q->cs;
	zrc = inflate(&zs, Z_FINISH);
	inflateEnd(&zs);
	if ((zrc != Z_STREAM_END && zrc != Z_BUF_ERROR) || zs.avail_out) {
		rc = vi_error(VI_EFAIL, "'%s' is corrupt: the compressed cluster at %#llx does not "
			      "decompress", q->img->path, (unsigned long long)offset);
		goto cleanup;
	}
	memcpy(buf, out + inoff, len);
	pthread_mutex_lock(&q->lock);
	free(q->zcache);
	q->zcache = out;
	q->zcache_entry = entry;
	pthread_mutex_unlock(&q->lock);
	out = NULL;
cleanup:
	free(in);
	free(out);
	return rc;
}

static int read_mapped(struct qcow2 *q, const struct mapping *m, uint64_t offset, void *buf)
{
	ssize_t n;

	switch (m->kind) {
	case K_DATA:
		n = image_file_read(q->img, buf, m->len, m->host);
		if (n < 0)
			return (int)n;
		/* A last cluster only partly written reads as zeros past the end. */
		memset((char *)buf + n, 0, m->len - (size_t)n);
		return 0;
	case K_ZERO:
		memset(buf, 0, m->len);
		return 0;
	case K_COMPRESSED:
		return read_compressed(q, m->entry, offset & (q->cs - 1), buf, m->len);
	default:
		return image_read_below(q->img, buf, m->len, offset);
	}
}

int qcow2_read(struct image *img, void *buf, size_t len, uint64_t offset)
{
	struct qcow2 *q = img->priv;
	char *p = buf;
	int rc = 0;

	pthread_rwlock_rdlock(&q->io_lock);
	while (len) {
		struct mapping m;
		rc = map_range(q, offset, len, &m);
		if (rc < 0 || (rc = read_mapped(q, &m, offset, p)) < 0)
			break;
		p += m.len;
		offset += m.len;
		len -= m.len;
	}
	pthread_rwlock_unlock(&q->io_lock);
	return rc;
}

/* What a cluster held before a partial write, for the bytes the write
 * leaves alone. */
static int cow_read(struct qcow2 *q, uint64_t entry, uint64_t offset, void *buf, uint64_t len)
{
	struct mapping m = {.entry = entry, .len = len};
	int rc = entry_kind(q, entry, &m.host, &m.kind);

	if (rc < 0)
		return rc;
	m.host += offset & (q->cs - 1);
	return read_mapped(q, &m, offset, buf);
}

static bool cow_is_zero(struct qcow2 *q, uint64_t entry, uint64_t offset)
{
	uint64_t host;
	int kind;

	if (entry_kind(q, entry, &host, &kind) < 0)
		return false;
	return kind == K_ZERO || (kind == K_UNALLOCATED && image_below_is_zero(q->img, offset));
}

static void release_clusters(struct qcow2 *q, uint64_t entry)
{
	uint64_t offset, len;

	if (entry & QCOW2_COMPRESSED) {
		qcow2_compressed_range(q, entry, &offset, &len);
		uint64_t first = offset >> q->cbits, last = (offset + len - 1) >> q->cbits;
		qcow2_free_later(q, first, last - first + 1);
	} else if (entry & QCOW2_OFFSET_MASK) {
		qcow2_free_later(q, (entry & QCOW2_OFFSET_MASK) >> q->cbits, 1);
	}
}

static bool inflight_overlaps(struct qcow2 *q, uint64_t first, uint64_t count)
{
	for (size_t i = 0; i < q->ninflight; i++)
		if (first < q->inflight[i].first + q->inflight[i].count &&
		    q->inflight[i].first < first + count)
			return true;
	return false;
}

static void inflight_add(struct qcow2 *q, uint64_t first, uint64_t count)
{
	if (q->ninflight == q->inflight_cap) {
		q->inflight_cap = q->inflight_cap ? q->inflight_cap * 2 : 8;
		q->inflight = xrealloc(q->inflight, q->inflight_cap * sizeof(*q->inflight));
	}
	q->inflight[q->ninflight++] = (struct qcow2_inflight){first, count};
}

static void inflight_remove(struct qcow2 *q, uint64_t first)
{
	for (size_t i = 0; i < q->ninflight; i++) {
		if (q->inflight[i].first == first) {
			q->inflight[i] = q->inflight[--q->ninflight];
			break;
		}
	}
	pthread_cond_broadcast(&q->inflight_done);
}

/* Fills newly allocated clusters [first, first + k) for guest clusters from
 * g: the old contents around the written bytes, then the bytes, in one
 * write. Zeros need not be written into clusters never used before. */
static int write_allocated(struct qcow2 *q, uint64_t g, uint64_t k, uint64_t first, bool fresh,
			   uint64_t inoff, const void *buf, uint64_t bytes, uint64_t old_first,
			   uint64_t old_last)
{
	uint64_t at = first << q->cbits, guest = g << q->cbits;
	uint64_t tail_at = inoff + bytes, tail = (k << q->cbits) - tail_at;
	struct iovec iov[3];
	void *head_buf = NULL, *tail_buf = NULL;
	int n = 0, rc = 0;

	if (inoff && fresh && cow_is_zero(q, old_first, guest)) {
		at += inoff;
	} else if (inoff) {
		head_buf = xmalloc(inoff);
		rc = cow_read(q, old_first, guest, head_buf, inoff);
		iov[n++] = (struct iovec){head_buf, inoff};
	}
	iov[n++] = (struct iovec){(void *)buf, bytes};
	if (rc == 0 && tail && !(fresh && cow_is_zero(q, old_last, guest + tail_at))) {
		tail_buf = xmalloc(tail);
		rc = cow_read(q, old_last, guest + tail_at, tail_buf, tail);
		iov[n++] = (struct iovec){tail_buf, tail};
	}
	if (rc == 0)
		rc = image_file_writev(q->img, iov, n, at);
	free(head_buf);
	free(tail_buf);
	return rc;
}

/* One step of a write within one L2 table: a run of clusters written in
 * place, or one allocation. Entered and left with q->lock held; *done is 0
 * when the step had to wait for another writer. */
static int write_step(struct qcow2 *q, const char *buf, uint64_t len, uint64_t offset,
		      uint64_t *done)
{
	uint64_t g = offset >> q->cbits, l1i = g >> q->l2_bits, l2i = g & (q->l2_entries - 1);
	uint64_t inoff = offset & (q->cs - 1);
	uint64_t avail = ((q->l2_entries - l2i) << q->cbits) - inoff;
	uint64_t entry, host, first, k = 1, n, nclusters, max;
	struct qcow2_cached *e;
	uint64_t *t;
	bool fresh;
	int kind, rc;

	*done = 0;
	if (len > avail)
		len = avail;
	if ((rc = l2_for_write(q, l1i, &e)) < 0)
		return rc;
	t = e->data;
	entry = be64toh(t[l2i]);
	if ((rc = entry_kind(q, entry, &host, &kind)) < 0)
		return rc;
	nclusters = (inoff + len + q->cs - 1) >> q->cbits;

	if (in_place(entry)) {
		for (n = q->cs - inoff; k < nclusters; k++, n += q->cs) {
			uint64_t next = be64toh(t[l2i + k]);
			if (!in_place(next) || (next & QCOW2_OFFSET_MASK) != host + (k << q->cbits))
				break;
		}
		if (n > len)
			n = len;
		pthread_mutex_unlock(&q->lock);
		rc = image_file_write(q->img, buf, n, host + inoff);
		pthread_mutex_lock(&q->lock);
		/* Only now: a flush that ran meanwhile did not cover it. */
		q->unsynced = true;
		*done = n;
		return rc;
	}

	/* New clusters for the run that cannot be written in place; a run never
	 * fills a refcount block's group, which must keep room for the block. */
	max = q->rb_entries / 2 < nclusters ? q->rb_entries / 2 : nclusters;
	for (; k < max && !in_place(entry = be64toh(t[l2i + k])); k++)
		if ((rc = entry_kind(q, entry, &host, &kind)) < 0)
			return rc;
	if (inflight_overlaps(q, g, k)) {
		pthread_cond_wait(&q->inflight_done, &q->lock);
		return 0;
	}
	if ((rc = qcow2_alloc(q, k, false, &first, &k, &fresh)) < 0)
		return rc;
	uint64_t old_first = be64toh(t[l2i]), old_last = be64toh(t[l2i + k - 1]);
	n = (k << q->cbits) - inoff;
	if (n > len)
		n = len;
	inflight_add(q, g, k);
	pthread_mutex_unlock(&q->lock);
	rc = write_allocated(q, g, k, first, fresh, inoff, buf, n, old_first, old_last);
	pthread_mutex_lock(&q->lock);
	inflight_remove(q, g);
	if (rc == 0)
		rc = l2_for_write(q, l1i, &e);
	if (rc < 0) {
		qcow2_unalloc(q, first, k);
		return rc;
	}
	t = e->data;
	for (uint64_t i = 0; i < k; i++) {
		release_clusters(q, be64toh(t[l2i + i]));
		t[l2i + i] = htobe64(((first + i) << q->cbits) | QCOW2_COPIED);
	}
	e->dirty = true;
	q->unsynced = true;
	*done = n;
	return 0;
}

int qcow2_write(struct image *img, const void *buf, size_t len, uint64_t offset)
{
	struct qcow2 *q = img->priv;
	const char *p = buf;
	uint64_t done;
	int rc = 0;

	pthread_rwlock_rdlock(&q->io_lock);
	pthread_mutex_lock(&q->lock);
	while (len && rc == 0) {
		rc = write_step(q, p, len, offset, &done);
		p += done;
		offset += done;
		len -= done;
	}
	pthread_mutex_unlock(&q->lock);
	pthread_rwlock_unlock(&q->io_lock);
	return rc;
}

/* Zeros into part of one cluster, unless it reads as zeros already. */
static int zero_partial(struct qcow2 *q, uint64_t offset, uint64_t len)
{
	struct mapping m;
	int rc;

	rc = map_range(q, offset, len, &m);
	if (rc < 0)
		return rc;
	if (m.kind == K_ZERO ||
	    (m.kind == K_UNALLOCATED && image_below_is_zero(q->img, offset)))
		return 0;
	return qcow2_write(q->img, q->zeros, len, offset);
}

/* Whole clusters [g, g + count) become zero clusters, or unallocated where
 * that reads the same (or, for a discard, where the format has nothing
 * better). A version 2 image over data gets zeros written. */
static int zero_clusters(struct qcow2 *q, uint64_t g, uint64_t count, bool exact)
{
	struct qcow2_cached *e;
	int rc = 0;

	pthread_rwlock_rdlock(&q->io_lock);
	pthread_mutex_lock(&q->lock);
	while (count && rc == 0) {
		uint64_t l1i = g >> q->l2_bits, l2i = g & (q->l2_entries - 1);
		uint64_t n = q->l2_entries - l2i < count ? q->l2_entries - l2i : count, target;
		if (inflight_overlaps(q, g, n)) {
			pthread_cond_wait(&q->inflight_done, &q->lock);
			continue;
		}
		if (image_below_is_zero(q->img, g << q->cbits) ||
		    (q->h.version < 3 && !exact)) {
			target = 0;
		} else if (q->h.version >= 3) {
			target = QCOW2_ZERO;
		} else {
			pthread_mutex_unlock(&q->lock);
			pthread_rwlock_unlock(&q->io_lock);
			for (uint64_t i = 0; i < n && rc == 0; i++)
				rc = qcow2_write(q->img, q->zeros, q->cs, (g + i) << q->cbits);
			pthread_rwlock_rdlock(&q->io_lock);
			pthread_mutex_lock(&q->lock);
			g += n;
			count -= n;
			continue;
		}
		if (target || (q->l1[l1i] & QCOW2_OFFSET_MASK)) {
			if ((rc = l2_for_write(q, l1i, &e)) < 0)
				break;
			uint64_t *t = e->data, host;
			int kind;
			for (uint64_t i = l2i; i < l2i + n && rc == 0; i++) {
				uint64_t old = be64toh(t[i]);
				if (old == target || (rc = entry_kind(q, old, &host, &kind)) < 0)
					continue;
				release_clusters(q, old);
				t[i] = htobe64(target);
				e->dirty = true;
			}
		}
		g += n;
		count -= n;
	}
	pthread_mutex_unlock(&q->lock);
	pthread_rwlock_unlock(&q->io_lock);
	return rc;
}

int qcow2_zero(struct image *img, uint64_t offset, uint64_t len, bool exact)
{
	struct qcow2 *q = img->priv;
	uint64_t end = offset + len, mask = q->cs - 1;
	uint64_t first = (offset + mask) & ~mask, last = end & ~mask;
	int rc = 0;

	/* Past the virtual size a cluster's bytes do not matter. */
	if (end == img->size)
		last = (end + mask) & ~mask;
	if (exact && offset < first)
		rc = zero_partial(q, offset, (first < end ? first : end) - offset);
	if (exact && rc == 0 && last < end && last >= first)
		rc = zero_partial(q, last, end - last);
	if (rc == 0 && first < last)
		rc = zero_clusters(q, first >> q->cbits, (last - first) >> q->cbits, exact);
	if (rc < 0)
		return rc;
	pthread_mutex_lock(&q->lock);
	bool many = q->npending > QCOW2_PENDING_MAX;
	pthread_mutex_unlock(&q->lock);
	return many ? qcow2_flush(img) : 0;
}

int qcow2_metadata_write(struct qcow2 *q)
{
	bool l2_dirty = false, wrote = false, l1_dirty = q->l1_dirty_lo < q->l1_dirty_hi;
	int rc;

	for (size_t i = 0; i < q->l2_cache.n && !l2_dirty; i++)
		l2_dirty = q->l2_cache.entries[i].dirty;
	if ((rc = qcow2_refcounts_write(q)) < 0 || (!l2_dirty && !l1_dirty))
		return rc;
	if ((rc = image_file_sync(q->img)) < 0)
		return rc;
	for (size_t i = 0; i < q->l2_cache.n; i++) {
		struct qcow2_cached *e = &q->l2_cache.entries[i];
		if (!e->dirty)
			continue;
		if ((rc = image_file_write(q->img, e->data, q->cs, e->offset)) < 0)
			return rc;
		e->dirty = false;
		wrote = true;
	}
	if (!l1_dirty)
		return 0;
	if (wrote && (rc = image_file_sync(q->img)) < 0)
		return rc;
	uint64_t n = q->l1_dirty_hi - q->l1_dirty_lo;
	uint64_t *be = xmalloc(n * 8);
	for (uint64_t i = 0; i < n; i++)
		be[i] = htobe64(q->l1[q->l1_dirty_lo + i]);
	rc = image_file_write(q->img, be, n * 8, q->h.l1_offset + q->l1_dirty_lo * 8);
	free(be);
	if (rc == 0)
		q->l1_dirty_lo = q->l1_dirty_hi = 0;
	return rc;
}

static bool metadata_dirty(struct qcow2 *q)
{
	bool dirty = q->l1_dirty_lo < q->l1_dirty_hi || q->rt_dirty_lo < q->rt_dirty_hi;

	for (size_t i = 0; i < q->l2_cache.n && !dirty; i++)
		dirty = q->l2_cache.entries[i].dirty;
	for (size_t i = 0; i < q->rb_cache.n && !dirty; i++)
		dirty = q->rb_cache.entries[i].dirty;
	return dirty;
}

int qcow2_flush(struct image *img)
{
	struct qcow2 *q = img->priv;
	size_t pending;
	bool need;
	int rc;

	pthread_mutex_lock(&q->flush_lock);
	pthread_mutex_lock(&q->lock);
	need = q->unsynced || metadata_dirty(q);
	rc = qcow2_metadata_write(q);
	pending = q->npending;
	q->unsynced = false;
	pthread_mutex_unlock(&q->lock);
	/* Guests flush often: with nothing written there is nothing to do. */
	if (rc == 0 && need)
		rc = image_file_sync(img);
	if (rc < 0) {
		pthread_mutex_lock(&q->lock);
		q->unsynced = true;
		pthread_mutex_unlock(&q->lock);
	}
	/* The tables that dropped these clusters are durable: they may be
	 * reused, once no I/O still uses them. */
	if (rc == 0 && pending) {
		pthread_rwlock_wrlock(&q->io_lock);
		pthread_mutex_lock(&q->lock);
		rc = qcow2_free_apply(q, pending);
		/* Lower refcounts need no barrier: losing them only leaks. */
		if (rc == 0)
			rc = qcow2_refcounts_write(q);
		pthread_mutex_unlock(&q->lock);
		pthread_rwlock_unlock(&q->io_lock);
	}
	pthread_mutex_unlock(&q->flush_lock);
	return rc;
}

int qcow2_status(struct image *img, uint64_t offset, uint64_t len, int *status, uint64_t *run)
{
	struct qcow2 *q = img->priv;
	struct mapping m;
	int rc;

	rc = map_range(q, offset, len, &m);
	if (rc < 0)
		return rc;
	*run = m.len;
	*status = m.kind == K_ZERO ? IMAGE_STATUS_ZERO
		  : m.kind == K_UNALLOCATED ? IMAGE_STATUS_UNALLOCATED
					    : IMAGE_STATUS_DATA;
	return 0;
}
