/* The qcow2 metadata caches: cluster-sized tables (L2 tables, refcount
 * blocks) found by their index in the table above, evicted least recently
 * used first. The caller holds the image's metadata lock. */
#include "qcow2.h"

#include <stdlib.h>

#include "util.h"

void qcow2_cache_init(struct qcow2_cache *c, size_t max, uint64_t nslots)
{
	c->entries = xcalloc(max, sizeof(*c->entries));
	c->n = 0;
	c->max = max;
	c->slot = xcalloc(nslots, sizeof(*c->slot));
	c->nslots = nslots;
	c->clock = 0;
}

void qcow2_cache_release(struct qcow2_cache *c)
{
	for (size_t i = 0; i < c->n; i++)
		free(c->entries[i].data);
	free(c->entries);
	free(c->slot);
	c->entries = NULL;
	c->slot = NULL;
	c->n = c->max = 0;
	c->nslots = 0;
}

void qcow2_cache_grow_slots(struct qcow2_cache *c, uint64_t nslots)
{
	if (nslots <= c->nslots)
		return;
	c->slot = xrealloc(c->slot, nslots * sizeof(*c->slot));
	for (uint64_t i = c->nslots; i < nslots; i++)
		c->slot[i] = NULL;
	c->nslots = nslots;
}

struct qcow2_cached *qcow2_cache_find(struct qcow2_cache *c, uint64_t key)
{
	struct qcow2_cached *e = key < c->nslots ? c->slot[key] : NULL;
	if (e)
		e->used = ++c->clock;
	return e;
}

int qcow2_cache_insert(struct qcow2 *q, struct qcow2_cache *c, uint64_t key,
		       int (*evict)(struct qcow2 *q, struct qcow2_cached *e),
		       struct qcow2_cached **out)
{
	struct qcow2_cached *e;

	if (c->n < c->max) {
		e = &c->entries[c->n++];
		e->data = xmalloc(q->cs);
	} else {
		e = &c->entries[0];
		for (size_t i = 1; i < c->n; i++)
			if (c->entries[i].used < e->used)
				e = &c->entries[i];
		if (e->dirty) {
			int rc = evict(q, e);
			if (rc < 0)
				return rc;
		}
		if (c->slot[e->key] == e)
			c->slot[e->key] = NULL;
	}
	e->key = key;
	e->offset = 0;
	e->dirty = false;
	e->used = ++c->clock;
	c->slot[key] = e;
	*out = e;
	return 0;
}

void qcow2_cache_drop(struct qcow2_cache *c, struct qcow2_cached *e)
{
	if (c->slot[e->key] == e)
		c->slot[e->key] = NULL;
	e->used = 0;
	e->dirty = false;
}
