/* qcow2 refcounts and cluster allocation. Refcounts only ever rise on disk
 * before the tables that use the clusters are written, and fall after the
 * tables that dropped them are durable, so a crash leaks clusters at worst.
 * Every function here runs with the metadata lock held. */
#include "qcow2.h"

#include <stdlib.h>

#include "error.h"
#include "util.h"

uint64_t qcow2_refcount_get(const void *block, uint64_t index, unsigned order)
{
	const uint8_t *b = block;

	switch (order) {
	case 6:
		return qcow2_be64(b + index * 8);
	case 5:
		return qcow2_be32(b + index * 4);
	case 4:
		return (uint64_t)b[index * 2] << 8 | b[index * 2 + 1];
	case 3:
		return b[index];
	default: {
		unsigned bits = 1u << order;
		uint64_t bit = index * bits;
		return (b[bit / 8] >> (bit % 8)) & ((1u << bits) - 1);
	}
	}
}

void qcow2_refcount_set(void *block, uint64_t index, unsigned order, uint64_t value)
{
	uint8_t *b = block;

	switch (order) {
	case 6:
		qcow2_put_be64(b + index * 8, value);
		break;
	case 5:
		qcow2_put_be32(b + index * 4, (uint32_t)value);
		break;
	case 4:
		b[index * 2] = (uint8_t)(value >> 8);
		b[index * 2 + 1] = (uint8_t)value;
		break;
	case 3:
		b[index] = (uint8_t)value;
		break;
	default: {
		unsigned bits = 1u << order;
		uint64_t bit = index * bits;
		uint8_t mask = (uint8_t)(((1u << bits) - 1) << (bit % 8));
		b[bit / 8] = (uint8_t)((b[bit / 8] & ~mask) | ((value << (bit % 8)) & mask));
	}
	}
}

static int corrupt(struct qcow2 *q, const char *what, uint64_t cluster)
{
	return vi_error(VI_EFAIL, "'%s' is corrupt: %s (cluster %llu)", q->img->path, what,
			(unsigned long long)cluster);
}

static int rb_evict(struct qcow2 *q, struct qcow2_cached *e)
{
	int rc = image_file_write(q->img, e->data, q->cs, e->offset);
	if (rc == 0)
		e->dirty = false;
	q->unsynced = true;
	return rc;
}

static void rt_mark_dirty(struct qcow2 *q, uint64_t t)
{
	if (q->rt_dirty_lo >= q->rt_dirty_hi) {
		q->rt_dirty_lo = t;
		q->rt_dirty_hi = t + 1;
		return;
	}
	if (t < q->rt_dirty_lo)
		q->rt_dirty_lo = t;
	if (t + 1 > q->rt_dirty_hi)
		q->rt_dirty_hi = t + 1;
}

/* The refcount block at table index t, or *out = NULL when it does not exist. */
static int rb_get(struct qcow2 *q, uint64_t t, struct qcow2_cached **out)
{
	struct qcow2_cached *e = qcow2_cache_find(&q->rb_cache, t);
	int rc;

	*out = e;
	if (e || t >= q->rt_entries || !q->rt[t])
		return 0;
	rc = qcow2_cache_insert(q, &q->rb_cache, t, rb_evict, &e);
	if (rc < 0)
		return rc;
	rc = qcow2_read_meta(q, e->data, q->cs, q->rt[t], "refcount block");
	if (rc < 0) {
		qcow2_cache_drop(&q->rb_cache, e);
		return rc;
	}
	e->offset = q->rt[t];
	*out = e;
	return 0;
}

/* A new refcount block for group t. Nothing in the group has a refcount yet,
 * so the block goes into the group itself, on its first cluster outside the
 * run being allocated, and counts itself. */
static int rb_create(struct qcow2 *q, uint64_t t, uint64_t avoid_lo, uint64_t avoid_hi,
		     struct qcow2_cached **out)
{
	uint64_t first = t << q->rb_bits, p = first;
	struct qcow2_cached *e;
	int rc;

	if (p >= avoid_lo && p < avoid_hi)
		p = avoid_hi;
	if (p >= first + q->rb_entries)
		return corrupt(q, "no room for a refcount block", first);
	rc = qcow2_cache_insert(q, &q->rb_cache, t, rb_evict, &e);
	if (rc < 0)
		return rc;
	memset(e->data, 0, q->cs);
	e->offset = p << q->cbits;
	e->dirty = true;
	qcow2_refcount_set(e->data, p - first, q->h.refcount_order, 1);
	q->rt[t] = e->offset;
	rt_mark_dirty(q, t);
	if (p + 1 > q->end)
		q->end = p + 1;
	*out = e;
	return 0;
}

static int refcount_of(struct qcow2 *q, uint64_t cluster, uint64_t *value)
{
	struct qcow2_cached *e;
	int rc = rb_get(q, cluster >> q->rb_bits, &e);

	*value = 0;
	if (rc < 0 || !e)
		return rc;
	*value = qcow2_refcount_get(e->data, cluster & (q->rb_entries - 1), q->h.refcount_order);
	return 0;
}

/* Adds delta (+1 or -1) to a cluster's refcount; a new refcount block stays
 * clear of [avoid_lo, avoid_hi), the run being allocated. */
static int refcount_change(struct qcow2 *q, uint64_t cluster, int delta, uint64_t avoid_lo,
			   uint64_t avoid_hi)
{
	uint64_t t = cluster >> q->rb_bits, i = cluster & (q->rb_entries - 1), v;
	struct qcow2_cached *e;
	int rc;

	if (t >= q->rt_entries)
		return corrupt(q, "cluster beyond the refcount table", cluster);
	rc = rb_get(q, t, &e);
	if (rc < 0)
		return rc;
	if (!e) {
		if (delta < 0)
			return corrupt(q, "freeing a cluster without a refcount", cluster);
		rc = rb_create(q, t, avoid_lo, avoid_hi, &e);
		if (rc < 0)
			return rc;
	}
	v = qcow2_refcount_get(e->data, i, q->h.refcount_order);
	if (delta < 0 && v == 0)
		return corrupt(q, "freeing a free cluster", cluster);
	if (delta > 0 && v >= q->refcount_max)
		return vi_error(VI_EFAIL, "cannot write '%s': refcount of cluster %llu overflows",
				q->img->path, (unsigned long long)cluster);
	v = delta > 0 ? v + 1 : v - 1;
	qcow2_refcount_set(e->data, i, q->h.refcount_order, v);
	e->dirty = true;
	if (v == 0 && cluster < q->free_hint)
		q->free_hint = cluster;
	return 0;
}

/* Gives a refcount block to each group of clusters [first, first + n) that
 * has none, when the run lies at the end of the file: the blocks go right
 * after it, where they may start groups of their own, which get blocks too.
 * *placed says how many; the caller raises their refcounts. */
static int blocks_after(struct qcow2 *q, uint64_t first, uint64_t n, uint64_t *placed)
{
	uint64_t k = 0, prev, next = first + n;
	int rc;

	do {
		prev = k;
		k = 0;
		for (uint64_t t = first >> q->rb_bits; t <= (first + n + prev - 1) >> q->rb_bits; t++)
			k += !q->rt[t];
	} while (k != prev);
	for (uint64_t t = first >> q->rb_bits; t <= (first + n + k - 1) >> q->rb_bits; t++) {
		struct qcow2_cached *e;
		if (q->rt[t])
			continue;
		if ((rc = qcow2_cache_insert(q, &q->rb_cache, t, rb_evict, &e)) < 0)
			return rc;
		memset(e->data, 0, q->cs);
		e->offset = next++ << q->cbits;
		e->dirty = true;
		q->rt[t] = e->offset;
		rt_mark_dirty(q, t);
	}
	*placed = k;
	return 0;
}

/* Clusters a run of n at the end may need beyond itself for new blocks. */
static uint64_t blocks_room(const struct qcow2 *q, uint64_t n)
{
	return n / q->rb_entries + 3;
}

/* Grows the refcount table to cover at least `need` clusters: the new table
 * and the blocks for the groups it lands in go to the end of the file, and
 * the header switches to it once they are durable. */
static int rt_grow(struct qcow2 *q, uint64_t need)
{
	uint64_t old_entries = q->rt_entries, old_offset = q->h.rt_offset;
	uint64_t old_clusters = q->h.rt_clusters, at = q->end;
	uint64_t entries = old_entries * 2, tc, k;
	unsigned char hdr[12];
	int rc;

	if (entries < ((need + q->rb_entries - 1) >> q->rb_bits))
		entries = (need + q->rb_entries - 1) >> q->rb_bits;
	for (;;) {
		tc = (entries * 8 + q->cs - 1) >> q->cbits;
		entries = tc << (q->cbits - 3);
		if (at + tc + blocks_room(q, tc) + need - q->end <= entries << q->rb_bits)
			break;
		entries *= 2;
	}
	if (tc << q->cbits > QCOW2_MAX_RT_BYTES)
		return vi_error(VI_EFAIL, "cannot write '%s': the refcount table would exceed %u MiB",
				q->img->path, QCOW2_MAX_RT_BYTES >> 20);

	q->rt = xrealloc(q->rt, entries * sizeof(*q->rt));
	memset(q->rt + old_entries, 0, (entries - old_entries) * sizeof(*q->rt));
	q->rt_entries = entries;
	qcow2_cache_grow_slots(&q->rb_cache, entries);
	if ((rc = blocks_after(q, at, tc, &k)) < 0)
		return rc;
	q->end = at + tc + k;
	for (uint64_t c = at; c < q->end; c++)
		if ((rc = refcount_change(q, c, +1, 0, 0)) < 0)
			return rc;

	/* Blocks and table first, then the header that points at them. */
	for (size_t i = 0; i < q->rb_cache.n; i++) {
		struct qcow2_cached *e = &q->rb_cache.entries[i];
		if (e->dirty && (rc = rb_evict(q, e)) < 0)
			return rc;
	}
	uint64_t *be = xmalloc(tc << q->cbits);
	for (uint64_t t = 0; t < entries; t++)
		be[t] = htobe64(q->rt[t]);
	rc = image_file_write(q->img, be, tc << q->cbits, at << q->cbits);
	free(be);
	if (rc < 0 || (rc = image_file_sync(q->img)) < 0)
		return rc;
	qcow2_put_be64(hdr, at << q->cbits);
	qcow2_put_be32(hdr + 8, (uint32_t)tc);
	rc = qcow2_header_update(q, QCOW2_HDR_REFTABLE, hdr, sizeof(hdr));
	if (rc < 0)
		return rc;
	q->h.rt_offset = at << q->cbits;
	q->h.rt_clusters = (uint32_t)tc;
	q->rt_dirty_lo = q->rt_dirty_hi = 0;
	/* The old table is out of use for good now. */
	return qcow2_free_now(q, old_offset >> q->cbits, old_clusters);
}

int qcow2_alloc(struct qcow2 *q, uint64_t n, bool exact, uint64_t *first, uint64_t *got,
		bool *fresh)
{
	uint64_t c, start, v, k = 0;
	int rc;

	while (q->end + n + blocks_room(q, n) > q->rt_entries << q->rb_bits)
		if ((rc = rt_grow(q, q->end + n + blocks_room(q, n))) < 0)
			return rc;

	/* First fit from the hint, taking what is free there (up to n); past
	 * q->end everything is free, and that is where exact runs go. */
	start = c = exact ? q->end : q->free_hint;
	while (c < start + n && c < q->end) {
		if ((rc = refcount_of(q, c, &v)) < 0)
			return rc;
		if (v && c > start)
			break;
		if (v)
			start = c + 1;
		c++;
	}
	if (c < start + n && c < q->end)
		n = c - start;
	if (!exact)
		q->free_hint = start + n;
	*fresh = start >= q->end;
	/* A run reaching past the end brings its new blocks along; one inside
	 * the file is short enough to leave its group room for one. */
	if (start + n > q->end && (rc = blocks_after(q, start, n, &k)) < 0)
		return rc;
	for (uint64_t i = start; i < start + n + k; i++) {
		rc = refcount_change(q, i, +1, start, start + n);
		if (rc < 0)
			return rc;
	}
	if (start + n + k > q->end)
		q->end = start + n + k;
	*first = start;
	*got = n;
	return 0;
}

void qcow2_free_later(struct qcow2 *q, uint64_t cluster, uint64_t n)
{
	if (q->npending + n > q->pending_cap) {
		q->pending_cap = (q->npending + n) * 2;
		q->pending_free = xrealloc(q->pending_free, q->pending_cap * sizeof(uint64_t));
	}
	for (uint64_t i = 0; i < n; i++)
		q->pending_free[q->npending++] = cluster + i;
}

int qcow2_free_now(struct qcow2 *q, uint64_t cluster, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++) {
		int rc = refcount_change(q, cluster + i, -1, 0, 0);
		if (rc < 0)
			return rc;
	}
	return 0;
}

void qcow2_unalloc(struct qcow2 *q, uint64_t cluster, uint64_t n)
{
	int code = vi_error_code();
	char *msg = xstrdup(vi_error_message());

	if (qcow2_free_now(q, cluster, n) < 0)
		vi_error(code, "%s", msg);
	free(msg);
}

int qcow2_free_apply(struct qcow2 *q, size_t count)
{
	int rc = 0;

	for (size_t i = 0; i < count && rc == 0; i++)
		rc = refcount_change(q, q->pending_free[i], -1, 0, 0);
	memmove(q->pending_free, q->pending_free + count,
		(q->npending - count) * sizeof(uint64_t));
	q->npending -= count;
	return rc;
}

int qcow2_refcounts_write(struct qcow2 *q)
{
	int rc;

	for (size_t i = 0; i < q->rb_cache.n; i++) {
		struct qcow2_cached *e = &q->rb_cache.entries[i];
		if (e->dirty && (rc = rb_evict(q, e)) < 0)
			return rc;
	}
	if (q->rt_dirty_lo >= q->rt_dirty_hi)
		return 0;
	/* A table entry may only point at a block that is on disk. */
	if ((rc = image_file_sync(q->img)) < 0)
		return rc;
	uint64_t n = q->rt_dirty_hi - q->rt_dirty_lo;
	uint64_t *be = xmalloc(n * 8);
	for (uint64_t i = 0; i < n; i++)
		be[i] = htobe64(q->rt[q->rt_dirty_lo + i]);
	rc = image_file_write(q->img, be, n * 8, q->h.rt_offset + q->rt_dirty_lo * 8);
	free(be);
	if (rc == 0)
		q->rt_dirty_lo = q->rt_dirty_hi = 0;
	return rc;
}

int qcow2_alloc_init(struct qcow2 *q)
{
	size_t bytes = (size_t)q->h.rt_clusters << q->cbits;
	unsigned char *raw = xmalloc(bytes);
	int rc = qcow2_read_meta(q, raw, bytes, q->h.rt_offset, "refcount table");

	if (rc < 0)
		goto cleanup;
	q->rt_entries = bytes / 8;
	q->rt = xmalloc(bytes);
	for (uint64_t t = 0; t < q->rt_entries; t++) {
		q->rt[t] = qcow2_be64(raw + t * 8);
		if (q->rt[t] & (QCOW2_RT_RESERVED | (q->cs - 1))) {
			rc = vi_error(VI_EFAIL, "'%s' is corrupt: refcount table entry %llu is invalid",
				      q->img->path, (unsigned long long)t);
			goto cleanup;
		}
	}
	q->rt_dirty_lo = q->rt_dirty_hi = 0;
	q->free_hint = 0;
cleanup:
	free(raw);
	return rc;
}
