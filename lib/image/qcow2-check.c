/* qcow2 consistency check, as `qemu-img check` does it: count the references
 * every cluster has from the header, the L1/L2 tables, snapshots and bitmaps,
 * compare with the refcount blocks, and repair by writing a fresh refcount
 * structure past the end of the file and switching the header to it. */
#include "qcow2.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

#include "error.h"
#include "util.h"

struct checker {
	struct qcow2 *q;
	struct image_check_result *res;
	uint64_t nclusters;  /* clusters in the file */
	uint32_t *refs;      /* references found, per cluster */
	uint32_t *disk;      /* refcounts on disk, per cluster */
	uint64_t refcount_errors; /* refcounts lower than the references */
	uint64_t *structure; /* clusters of the refcount table and blocks */
	size_t nstructure;
	uint64_t next_contiguous;
};

static void __attribute__((format(printf, 2, 3))) say(struct checker *k, const char *fmt, ...)
{
	struct image_check_result *res = k->res;
	va_list ap;

	if (res->nmessages >= IMAGE_CHECK_MAX_MESSAGES)
		return;
	res->messages = xrealloc(res->messages, (res->nmessages + 1) * sizeof(char *));
	va_start(ap, fmt);
	if (vasprintf(&res->messages[res->nmessages], fmt, ap) < 0)
		res->messages[res->nmessages] = xstrdup(fmt);
	va_end(ap);
	res->nmessages++;
}

static void corruption(struct checker *k, const char *what, uint64_t offset)
{
	k->res->corruptions++;
	say(k, "ERROR %s at offset %#llx", what, (unsigned long long)offset);
}

/* One more reference to every cluster of [offset, offset + len). */
static bool count_ref(struct checker *k, uint64_t offset, uint64_t len, const char *what)
{
	struct qcow2 *q = k->q;

	if (!len)
		return true;
	uint64_t first = offset >> q->cbits, last = (offset + len - 1) >> q->cbits;
	if (last >= k->nclusters || last < first) {
		k->res->corruptions++;
		say(k, "ERROR %s at offset %#llx is past the end of the file", what,
		    (unsigned long long)offset);
		return false;
	}
	for (uint64_t c = first; c <= last; c++)
		if (k->refs[c] < UINT32_MAX)
			k->refs[c]++;
	return true;
}

static uint64_t disk_refcount(struct checker *k, uint64_t offset)
{
	uint64_t c = offset >> k->q->cbits;
	return c < k->nclusters ? k->disk[c] : 0;
}

/* Reads the refcount table and blocks into k->disk. */
static int load_refcounts(struct checker *k)
{
	struct qcow2 *q = k->q;
	uint64_t rt_bytes = (uint64_t)q->h.rt_clusters << q->cbits, entries = rt_bytes / 8;
	unsigned char *rt = xmalloc(rt_bytes), *block = xmalloc(q->cs);
	int rc = qcow2_read_meta(q, rt, rt_bytes, q->h.rt_offset, "refcount table");

	if (rc < 0)
		goto cleanup;
	count_ref(k, q->h.rt_offset, rt_bytes, "refcount table");
	k->structure = xmalloc((entries + q->h.rt_clusters) * sizeof(uint64_t));
	for (uint64_t c = 0; c < q->h.rt_clusters; c++)
		k->structure[k->nstructure++] = (q->h.rt_offset >> q->cbits) + c;
	for (uint64_t t = 0; t < entries; t++) {
		uint64_t offset = qcow2_be64(rt + t * 8);
		if (!offset)
			continue;
		if (offset & (QCOW2_RT_RESERVED | (q->cs - 1))) {
			k->res->corruptions++;
			say(k, "ERROR refcount block %llu is not cluster aligned; refcount table "
			    "entry corrupted", (unsigned long long)t);
			continue;
		}
		if ((offset >> q->cbits) >= k->nclusters) {
			k->res->corruptions++;
			say(k, "ERROR refcount block %llu is outside image", (unsigned long long)t);
			continue;
		}
		if ((rc = qcow2_read_meta(q, block, q->cs, offset, "refcount block")) < 0)
			goto cleanup;
		count_ref(k, offset, q->cs, "refcount block");
		k->structure[k->nstructure++] = offset >> q->cbits;
		/* Like qemu-img, ignore refcounts past the end of the file. */
		for (uint64_t i = 0; i < q->rb_entries; i++) {
			uint64_t c = (t << q->rb_bits) + i;
			uint64_t v = qcow2_refcount_get(block, i, q->h.refcount_order);
			if (c < k->nclusters)
				k->disk[c] = v > UINT32_MAX ? UINT32_MAX : (uint32_t)v;
		}
	}
cleanup:
	free(rt);
	free(block);
	return rc;
}

static void check_l2_entry(struct checker *k, uint64_t entry, bool active)
{
	struct qcow2 *q = k->q;
	struct image_check_result *res = k->res;
	uint64_t offset, len;

	if (entry & QCOW2_COMPRESSED) {
		if (entry & QCOW2_COPIED)
			corruption(k, "compressed cluster has the copied flag set", entry);
		qcow2_compressed_range(q, entry, &offset, &len);
		count_ref(k, offset, len, "compressed cluster");
		if (active) {
			res->allocated_clusters++;
			res->compressed_clusters++;
		}
		return;
	}
	offset = entry & QCOW2_OFFSET_MASK;
	if (entry & QCOW2_L2_RESERVED) {
		corruption(k, "L2 entry has reserved bits set", offset);
		return;
	}
	if ((entry & QCOW2_ZERO) && q->h.version < 3) {
		corruption(k, "zero cluster in a version 2 image", offset);
		return;
	}
	if (offset & (q->cs - 1)) {
		corruption(k, "cluster is not properly aligned; L2 entry corrupted", offset);
		return;
	}
	if (!offset)
		return;
	if (!count_ref(k, offset, q->cs, "data cluster"))
		return;
	if (!active)
		return;
	res->allocated_clusters++;
	if (k->next_contiguous && offset != k->next_contiguous)
		res->fragmented_clusters++;
	k->next_contiguous = offset + q->cs;
	if (!(entry & QCOW2_COPIED) != (disk_refcount(k, offset) != 1)) {
		res->corruptions++;
		say(k, "ERROR OFLAG_COPIED data cluster: l2_entry=%llx refcount=%llu",
		    (unsigned long long)entry, (unsigned long long)disk_refcount(k, offset));
	}
}

/* Counts an L1 table and everything it maps; `active` for the image's own
 * (whose copied flags must agree with the refcounts). */
static int check_l1(struct checker *k, uint64_t l1_offset, uint64_t l1_size, bool active)
{
	struct qcow2 *q = k->q;
	uint64_t *l1 = NULL, *l2 = xmalloc(q->cs);
	int rc = 0;

	if (l1_size * 8 > QCOW2_MAX_L1_BYTES || (l1_offset & (q->cs - 1))) {
		corruption(k, "invalid L1 table", l1_offset);
		goto cleanup;
	}
	if (!count_ref(k, l1_offset, l1_size * 8, "L1 table"))
		goto cleanup;
	l1 = xmalloc(l1_size ? l1_size * 8 : 1);
	if ((rc = qcow2_read_meta(q, l1, l1_size * 8, l1_offset, "L1 table")) < 0)
		goto cleanup;
	for (uint64_t i = 0; i < l1_size; i++) {
		uint64_t entry = be64toh(l1[i]), offset = entry & QCOW2_OFFSET_MASK;
		if (!offset)
			continue;
		if (entry & QCOW2_L1_RESERVED || (offset & (q->cs - 1))) {
			corruption(k, "L1 entry is invalid", entry);
			continue;
		}
		if (!count_ref(k, offset, q->cs, "L2 table"))
			continue;
		if (active && !(entry & QCOW2_COPIED) != (disk_refcount(k, offset) != 1)) {
			k->res->corruptions++;
			say(k, "ERROR OFLAG_COPIED L2 cluster: l1_index=%llu l1_entry=%llx "
			    "refcount=%llu", (unsigned long long)i, (unsigned long long)entry,
			    (unsigned long long)disk_refcount(k, offset));
		}
		if ((rc = qcow2_read_meta(q, l2, q->cs, offset, "L2 table")) < 0)
			goto cleanup;
		for (uint64_t j = 0; j < q->l2_entries; j++) {
			uint64_t e = be64toh(l2[j]);
			if (e)
				check_l2_entry(k, e, active);
		}
	}
cleanup:
	free(l1);
	free(l2);
	return rc;
}

static int check_snapshots(struct checker *k)
{
	struct qcow2 *q = k->q;
	uint64_t offset = q->h.snapshots_offset;
	unsigned char sn[40];
	int rc = 0;

	for (uint32_t i = 0; i < q->h.nb_snapshots; i++) {
		if (qcow2_read_meta(q, sn, sizeof(sn), offset, "snapshot table") < 0) {
			corruption(k, "snapshot table runs past the end of the file", offset);
			return 0;
		}
		uint64_t l1_offset = qcow2_be64(sn), l1_size = qcow2_be32(sn + 8);
		uint64_t len = 40 + (uint64_t)qcow2_be32(sn + 36) + qcow2_be16(sn + 12) +
			       qcow2_be16(sn + 14);
		if ((rc = check_l1(k, l1_offset, l1_size, false)) < 0)
			return rc;
		offset += (len + 7) & ~7ull;
	}
	count_ref(k, q->h.snapshots_offset, offset - q->h.snapshots_offset, "snapshot table");
	return 0;
}

static int check_bitmaps(struct checker *k)
{
	struct qcow2 *q = k->q;
	uint64_t size = q->h.bitmap_dir_size, *table = NULL;
	unsigned char *dir;
	int rc;

	if (!q->h.has_bitmaps || !size)
		return 0;
	if (size > (64u << 20)) {
		corruption(k, "bitmap directory is absurdly large", q->h.bitmap_dir_offset);
		return 0;
	}
	if (!count_ref(k, q->h.bitmap_dir_offset, size, "bitmap directory"))
		return 0;
	dir = xmalloc(size);
	if ((rc = qcow2_read_meta(q, dir, size, q->h.bitmap_dir_offset, "bitmap directory")) < 0)
		goto cleanup;
	for (uint64_t off = 0; off + 24 <= size;) {
		uint64_t table_offset = qcow2_be64(dir + off), entries = qcow2_be32(dir + off + 8);
		uint64_t len = 24 + (uint64_t)qcow2_be32(dir + off + 20) + qcow2_be16(dir + off + 18);
		if (entries * 8 > QCOW2_MAX_L1_BYTES ||
		    !count_ref(k, table_offset, entries * 8, "bitmap table")) {
			off += (len + 7) & ~7ull;
			continue;
		}
		table = xrealloc(table, entries ? entries * 8 : 1);
		if ((rc = qcow2_read_meta(q, table, entries * 8, table_offset, "bitmap table")) < 0)
			goto cleanup;
		for (uint64_t i = 0; i < entries; i++) {
			uint64_t data = be64toh(table[i]) & QCOW2_OFFSET_MASK;
			if (data)
				count_ref(k, data, q->cs, "bitmap data");
		}
		off += (len + 7) & ~7ull;
	}
cleanup:
	free(dir);
	free(table);
	return rc;
}

static void compare(struct checker *k)
{
	struct image_check_result *res = k->res;
	uint64_t highest = 0;
	bool any = false;

	for (uint64_t c = 0; c < k->nclusters; c++) {
		uint64_t d = k->disk[c], r = k->refs[c];
		if (d || r) {
			highest = c;
			any = true;
		}
		if (d < r) {
			res->corruptions++;
			k->refcount_errors++;
			say(k, "ERROR cluster %llu refcount=%llu reference=%llu",
			    (unsigned long long)c, (unsigned long long)d, (unsigned long long)r);
		} else if (d > r) {
			res->leaks++;
			say(k, "Leaked cluster %llu refcount=%llu reference=%llu",
			    (unsigned long long)c, (unsigned long long)d, (unsigned long long)r);
		}
	}
	res->image_end_offset = any ? (highest + 1) << k->q->cbits : 0;
}

static int run(struct checker *k)
{
	struct qcow2 *q = k->q;
	struct stat st;
	int rc;

	if (fstat(q->img->fd, &st) < 0)
		return vi_error_errno(VI_EFAIL, errno, "cannot check '%s'", q->img->path);
	k->nclusters = ((uint64_t)st.st_size + q->cs - 1) >> q->cbits;
	k->refs = xcalloc(k->nclusters ? k->nclusters : 1, sizeof(uint32_t));
	k->disk = xcalloc(k->nclusters ? k->nclusters : 1, sizeof(uint32_t));
	k->res->total_clusters = (q->h.size + q->cs - 1) >> q->cbits;
	if ((rc = load_refcounts(k)) < 0)
		return rc;
	count_ref(k, 0, q->cs, "header");
	if ((rc = check_l1(k, q->h.l1_offset, q->h.l1_size, true)) < 0)
		return rc;
	if ((rc = check_snapshots(k)) < 0 || (rc = check_bitmaps(k)) < 0)
		return rc;
	compare(k);
	return 0;
}

/* A new refcount table and blocks after everything else, holding the
 * references found (less the old structure, plus the new one). */
static int rebuild(struct checker *k)
{
	struct qcow2 *q = k->q;
	uint64_t at = k->nclusters, rtc = 1, nrb = 1, total;
	unsigned char hdr[12], *buf = NULL;
	int rc;

	for (size_t i = 0; i < k->nstructure; i++)
		k->refs[k->structure[i]]--;
	for (;;) {
		total = at + rtc + nrb;
		uint64_t need_rb = (total + q->rb_entries - 1) >> q->rb_bits;
		uint64_t need_rtc = (need_rb * 8 + q->cs - 1) >> q->cbits;
		if (need_rb <= nrb && need_rtc <= rtc)
			break;
		nrb = need_rb > nrb ? need_rb : nrb;
		rtc = need_rtc > rtc ? need_rtc : rtc;
	}
	if (rtc << q->cbits > QCOW2_MAX_RT_BYTES)
		return vi_error(VI_EFAIL, "cannot repair '%s': the refcount table would be too large",
				q->img->path);
	buf = xcalloc(rtc + nrb, q->cs);
	for (uint64_t b = 0; b < nrb; b++)
		qcow2_put_be64(buf + b * 8, (at + rtc + b) << q->cbits);
	unsigned char *blocks = buf + (rtc << q->cbits);
	for (uint64_t c = 0; c < total; c++) {
		uint64_t v = c < k->nclusters ? k->refs[c] : 1;
		if (v > q->refcount_max) {
			rc = vi_error(VI_EFAIL, "cannot repair '%s': cluster %llu has more references "
				      "than its refcount can hold", q->img->path,
				      (unsigned long long)c);
			goto cleanup;
		}
		qcow2_refcount_set(blocks, c, q->h.refcount_order, v);
	}
	rc = image_file_write(q->img, buf, (rtc + nrb) << q->cbits, at << q->cbits);
	if (rc == 0)
		rc = image_file_sync(q->img);
	if (rc < 0)
		goto cleanup;
	qcow2_put_be64(hdr, at << q->cbits);
	qcow2_put_be32(hdr + 8, (uint32_t)rtc);
	if ((rc = qcow2_header_update(q, QCOW2_HDR_REFTABLE, hdr, sizeof(hdr))) < 0)
		goto cleanup;
	q->h.rt_offset = at << q->cbits;
	q->h.rt_clusters = (uint32_t)rtc;
cleanup:
	free(buf);
	return rc;
}

static void checker_release(struct checker *k)
{
	free(k->refs);
	free(k->disk);
	free(k->structure);
	*k = (struct checker){0};
}

static void result_reset(struct image_check_result *res)
{
	image_check_result_release(res);
	*res = (struct image_check_result){0};
}

int qcow2_check(struct image *img, unsigned flags, struct image_check_result *res)
{
	struct qcow2 *q = img->priv;
	struct checker k = {.q = q, .res = res};
	int rc;

	*res = (struct image_check_result){0};
	rc = run(&k);
	if (rc < 0)
		goto cleanup;
	bool fix = (res->leaks && (flags & (IMAGE_CHECK_REPAIR_LEAKS | IMAGE_CHECK_REPAIR_ALL))) ||
		   (k.refcount_errors && (flags & IMAGE_CHECK_REPAIR_ALL));
	if (k.refcount_errors && !(flags & IMAGE_CHECK_REPAIR_ALL))
		fix = false;
	if (fix) {
		uint64_t leaks = res->leaks, corruptions = res->corruptions;
		if ((rc = rebuild(&k)) < 0)
			goto cleanup;
		checker_release(&k);
		result_reset(res);
		k = (struct checker){.q = q, .res = res};
		if ((rc = run(&k)) < 0)
			goto cleanup;
		res->leaks_fixed = leaks > res->leaks ? leaks - res->leaks : 0;
		res->corruptions_fixed = corruptions > res->corruptions ? corruptions - res->corruptions
									: 0;
	}
	uint64_t marks = q->h.incompat & (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT);
	if (flags && marks && !res->corruptions) {
		unsigned char be[8];
		qcow2_put_be64(be, q->h.incompat & ~marks);
		if ((rc = qcow2_header_update(q, QCOW2_HDR_INCOMPAT, be, sizeof(be))) < 0)
			goto cleanup;
		q->h.incompat &= ~marks;
	}
cleanup:
	checker_release(&k);
	if (rc < 0)
		image_check_result_release(res);
	return rc;
}

void image_check_result_release(struct image_check_result *res)
{
	for (size_t i = 0; i < res->nmessages; i++)
		free(res->messages[i]);
	free(res->messages);
	res->messages = NULL;
	res->nmessages = 0;
}
