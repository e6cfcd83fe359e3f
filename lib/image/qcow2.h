/* qcow2 internals shared by the driver (qcow2.c, qcow2-io.c, qcow2-alloc.c,
 * qcow2-cache.c) and the checker (qcow2-check.c): on-disk constants, the
 * parsed header, the open state with its metadata caches. */
#ifndef VI_IMAGE_QCOW2_H
#define VI_IMAGE_QCOW2_H

#include <endian.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "driver.h"

#define QCOW2_MAGIC 0x514649fbu
#define QCOW2_V2_HEADER_LEN 72u
#define QCOW2_V3_HEADER_LEN 104u

/* Header field offsets that are rewritten in place. */
#define QCOW2_HDR_SIZE 24
#define QCOW2_HDR_L1 36        /* l1_size (4 bytes) then l1_table_offset (8) */
#define QCOW2_HDR_REFTABLE 48  /* refcount_table_offset (8) then _clusters (4) */
#define QCOW2_HDR_INCOMPAT 72
#define QCOW2_HDR_AUTOCLEAR 88

#define QCOW2_INCOMPAT_DIRTY       (1ull << 0)
#define QCOW2_INCOMPAT_CORRUPT     (1ull << 1)
#define QCOW2_INCOMPAT_DATA_FILE   (1ull << 2)
#define QCOW2_INCOMPAT_KNOWN       (QCOW2_INCOMPAT_DIRTY | QCOW2_INCOMPAT_CORRUPT)
#define QCOW2_COMPAT_LAZY_REFCOUNTS (1ull << 0)
#define QCOW2_AUTOCLEAR_BITMAPS    (1ull << 0)

#define QCOW2_EXT_END          0x00000000u
#define QCOW2_EXT_BACKING_FMT  0xe2792acau
#define QCOW2_EXT_FEATURES     0x6803f857u
#define QCOW2_EXT_BITMAPS      0x23852875u

#define QCOW2_COPIED      (1ull << 63)
#define QCOW2_COMPRESSED  (1ull << 62)
#define QCOW2_ZERO        1ull
#define QCOW2_OFFSET_MASK 0x00fffffffffffe00ull
#define QCOW2_L1_RESERVED 0x7f000000000001ffull /* bits 0-8 and 56-62 */
#define QCOW2_L2_RESERVED 0x3f000000000001feull /* bits 1-8 and 56-61 */
#define QCOW2_RT_RESERVED 0x00000000000001ffull

/* qemu's limits: larger tables are refused as absurd. */
#define QCOW2_MAX_L1_BYTES (32u << 20)
#define QCOW2_MAX_RT_BYTES (8u << 20)
#define QCOW2_MAX_BACKING_NAME 1023u
#define QCOW2_MAX_SNAPSHOTS 65536u

struct qcow2_header {
	uint32_t version;
	uint64_t backing_offset;
	uint32_t backing_size;
	uint32_t cluster_bits;
	uint64_t size;
	uint32_t crypt_method;
	uint32_t l1_size;
	uint64_t l1_offset;
	uint64_t rt_offset;
	uint32_t rt_clusters;
	uint32_t nb_snapshots;
	uint64_t snapshots_offset;
	uint64_t incompat, compat, autoclear;
	uint32_t refcount_order;
	uint32_t header_length;
	bool has_bitmaps;         /* bitmaps extension present (and its autoclear bit set) */
	uint64_t bitmap_dir_offset, bitmap_dir_size;
};

/* One cached metadata cluster (an L2 table or a refcount block), kept in the
 * on-disk (big-endian) layout. `key` is its index in the table above it. */
struct qcow2_cached {
	uint64_t key;
	uint64_t offset;
	uint64_t used; /* LRU clock */
	bool dirty;
	void *data;
};

struct qcow2_cache {
	struct qcow2_cached *entries; /* capacity `max`, `n` in use */
	size_t n, max;
	struct qcow2_cached **slot; /* key -> entry, nslots long */
	uint64_t nslots;
	uint64_t clock;
};

/* A range of guest clusters whose allocation is in progress. */
struct qcow2_inflight {
	uint64_t first, count;
};

struct qcow2 {
	struct image *img;
	struct qcow2_header h;
	uint32_t cs;           /* cluster size */
	unsigned cbits;
	uint64_t l2_entries;   /* entries per L2 table */
	unsigned l2_bits;
	uint64_t rb_entries;   /* refcounts per refcount block */
	unsigned rb_bits;
	uint64_t refcount_max;

	uint64_t *l1;          /* host order, h.l1_size entries */
	uint64_t l1_dirty_lo, l1_dirty_hi; /* dirty entries [lo, hi) */
	uint64_t *rt;          /* refcount table, host order */
	uint64_t rt_entries;
	uint64_t rt_dirty_lo, rt_dirty_hi;

	struct qcow2_cache l2_cache, rb_cache;

	pthread_mutex_t flush_lock; /* one flush at a time */
	pthread_mutex_t lock;      /* all of the metadata above and below */
	pthread_cond_t inflight_done;
	/* Held shared by guest I/O, exclusively while freed clusters return to
	 * the allocator, so that no I/O still uses a cluster being reused. */
	pthread_rwlock_t io_lock;

	struct qcow2_inflight *inflight;
	size_t ninflight, inflight_cap;
	/* Clusters to release once the tables that dropped them are durable. */
	uint64_t *pending_free;
	size_t npending, pending_cap;
	uint64_t free_hint;    /* no free cluster below this index */
	uint64_t end;          /* clusters at or past this index were never used */
	bool unsynced;         /* written to since the last flush's barrier */
	/* The last compressed cluster read, decompressed, so that reading one
	 * in pieces decompresses it once; keyed by its L2 entry (0: none). */
	uint64_t zcache_entry;
	void *zcache;
	void *zeros;           /* one zeroed cluster */
};

/* Big-endian fields. */
static inline uint64_t qcow2_be64(const void *p)
{
	uint64_t v;
	memcpy(&v, p, 8);
	return be64toh(v);
}

static inline uint16_t qcow2_be16(const void *p)
{
	uint16_t v;
	memcpy(&v, p, 2);
	return be16toh(v);
}

static inline uint32_t qcow2_be32(const void *p)
{
	uint32_t v;
	memcpy(&v, p, 4);
	return be32toh(v);
}

static inline void qcow2_put_be64(void *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}

static inline void qcow2_put_be32(void *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, 4);
}

/* Refcount block entries of any width (1 to 64 bits; sub-byte widths are
 * packed from the least significant bit). */
uint64_t qcow2_refcount_get(const void *block, uint64_t index, unsigned order);
void qcow2_refcount_set(void *block, uint64_t index, unsigned order, uint64_t value);

/* Reads and validates the header of img->fd; *backing_file and *backing_fmt
 * (the format name, possibly unknown) are set or NULL, owned by the caller. */
int qcow2_header_read(struct image *img, struct qcow2_header *h, char **backing_file,
		      char **backing_fmt);
/* Rewrites len bytes of the header at `at` and makes them durable. */
int qcow2_header_update(struct qcow2 *q, unsigned at, const void *data, size_t len);

/* Compressed cluster descriptor: host offset and the bytes to read. */
void qcow2_compressed_range(const struct qcow2 *q, uint64_t entry, uint64_t *offset,
			    uint64_t *len);

/* Whole-cluster pread of metadata at offset; short reads are corruption. */
int qcow2_read_meta(struct qcow2 *q, void *buf, size_t len, uint64_t offset, const char *what);

/* qcow2-io.c: guest I/O and write-back. */
int qcow2_read(struct image *img, void *buf, size_t len, uint64_t offset);
int qcow2_write(struct image *img, const void *buf, size_t len, uint64_t offset);
int qcow2_zero(struct image *img, uint64_t offset, uint64_t len, bool exact);
int qcow2_flush(struct image *img);
int qcow2_status(struct image *img, uint64_t offset, uint64_t len, int *status, uint64_t *run);
/* Writes the dirty metadata in order (refcounts, barrier, L2 tables,
 * barrier, L1 table) without the final barrier; q->lock held. */
int qcow2_metadata_write(struct qcow2 *q);

/* qcow2-check.c: compare refcounts with the tables; rebuild them when asked.
 * Used by image_check() and to repair an image left dirty. */
int qcow2_check(struct image *img, unsigned flags, struct image_check_result *res);

/* qcow2-alloc.c: refcounts and cluster allocation; q->lock held. */
int qcow2_alloc_init(struct qcow2 *q);
/* Up to n contiguous clusters (exactly n when `exact`) with refcount 1:
 * *first is a cluster index, *got how many; *fresh says the clusters were
 * never used, so they read as zeros. */
int qcow2_alloc(struct qcow2 *q, uint64_t n, bool exact, uint64_t *first, uint64_t *got,
		bool *fresh);
/* Drops one reference to each cluster once the tables are durable. */
void qcow2_free_later(struct qcow2 *q, uint64_t cluster, uint64_t n);
/* Drops one reference now (clusters that nothing on disk refers to). */
int qcow2_free_now(struct qcow2 *q, uint64_t cluster, uint64_t n);
/* Gives back clusters just allocated that nothing refers to yet; failing
 * only leaks them and keeps the error already recorded. */
void qcow2_unalloc(struct qcow2 *q, uint64_t cluster, uint64_t n);
/* Releases what qcow2_free_later() queued before the call that durably wrote
 * the tables: `count` entries from the head of the queue. */
int qcow2_free_apply(struct qcow2 *q, size_t count);
/* Writes the dirty refcount blocks, then (after a barrier) new refcount
 * table entries. */
int qcow2_refcounts_write(struct qcow2 *q);

/* qcow2-cache.c: caches of cluster-sized tables keyed by index. */
void qcow2_cache_init(struct qcow2_cache *c, size_t max, uint64_t nslots);
void qcow2_cache_release(struct qcow2_cache *c);
void qcow2_cache_grow_slots(struct qcow2_cache *c, uint64_t nslots);
struct qcow2_cached *qcow2_cache_find(struct qcow2_cache *c, uint64_t key);
/* A free entry for key (evicting the least recently used one through
 * `evict`, which writes it out when dirty). data is uninitialised. */
int qcow2_cache_insert(struct qcow2 *q, struct qcow2_cache *c, uint64_t key,
		       int (*evict)(struct qcow2 *q, struct qcow2_cached *e),
		       struct qcow2_cached **out);
/* Forgets an entry whose data could not be loaded. */
void qcow2_cache_drop(struct qcow2_cache *c, struct qcow2_cached *e);

#endif
