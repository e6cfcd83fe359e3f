/* The VM state format: header, checksummed sections, page runs and the field tables
 * that describe a payload (see state.h for the layout and the reader's rules). */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "state.h"
#include "util.h"

#define STATE_MAGIC "VI-STATE"
#define STATE_CHUNK (1u << 20) /* the most written or read at once: cancel and progress */
#define RUN_MAX_PAGES 65536u  /* 256 MiB: a page run's checksum covers no more */
#define PAYLOAD_MAX (64u << 20) /* a device section larger than this is damage */

struct state_file_header {
	char magic[8];
	uint16_t major, minor;
	uint32_t length;
	uint8_t uuid[16];
	uint64_t memory, max_memory;
	uint32_t cpus, max_cpus;
	uint32_t crc, zero;
} __attribute__((packed));

struct state_section_header {
	uint32_t id;
	uint16_t version, flags;
	uint32_t instance, crc;
	uint64_t length;
} __attribute__((packed));

struct state_run_header {
	uint64_t gpa, pages, data_offset;
} __attribute__((packed));

_Static_assert(sizeof(struct state_file_header) == 64, "the header is 64 bytes");
_Static_assert(sizeof(struct state_section_header) == 24, "a section header is 24 bytes");

static const uint8_t zero_page[VI_STATE_PAGE];

/* --- crc32c (Castagnoli): SSE4.2 where the CPU has it ------------------------------- */

static uint32_t crc32c_table[256];
static pthread_once_t crc32c_once = PTHREAD_ONCE_INIT;
static bool crc32c_hw_ok;

static void crc32c_init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (c & 1 ? 0x82f63b78u : 0);
		crc32c_table[i] = c;
	}
	crc32c_hw_ok = __builtin_cpu_supports("sse4.2");
}

__attribute__((target("sse4.2"))) static uint32_t crc32c_hw(uint32_t c, const uint8_t *p,
							   size_t len)
{
	uint64_t c64 = c;

	for (; len >= 8; p += 8, len -= 8) {
		uint64_t v;

		memcpy(&v, p, 8);
		c64 = __builtin_ia32_crc32di(c64, v);
	}
	c = (uint32_t)c64;
	while (len--)
		c = __builtin_ia32_crc32qi(c, *p++);
	return c;
}

uint32_t vi_crc32c(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;
	uint32_t c = ~crc;

	pthread_once(&crc32c_once, crc32c_init);
	if (crc32c_hw_ok)
		return ~crc32c_hw(c, p, len);
	while (len--)
		c = crc32c_table[(c ^ *p++) & 0xff] ^ (c >> 8);
	return ~c;
}

/* --- descriptions ------------------------------------------------------------------ */

static size_t fields_size(const struct vi_state_field *f, unsigned version)
{
	size_t n = 0;

	for (; f->name; f++)
		if (f->since <= version)
			n += f->count *
			     (f->nested ? fields_size(f->nested->fields, version) : f->size);
	return n;
}

size_t vi_state_size(const struct vi_state_desc *desc, unsigned version)
{
	return fields_size(desc->fields, version);
}

/* Copies the fields between obj and the payload at p, in table order; returns the end. */
static uint8_t *fields_copy(const struct vi_state_field *f, uint8_t *obj, uint8_t *p,
			    unsigned version, bool save)
{
	for (; f->name; f++) {
		if (f->since > version)
			continue;
		for (size_t i = 0; i < f->count; i++) {
			uint8_t *at = obj + f->offset + i * f->size;

			if (f->nested) {
				p = fields_copy(f->nested->fields, at, p, version, save);
				continue;
			}
			if (save)
				memcpy(p, at, f->size);
			else
				memcpy(at, p, f->size);
			p += f->size;
		}
	}
	return p;
}

/* Nested descriptions check their elements after the whole section is in place. */
static int fields_post_load(const struct vi_state_field *f, uint8_t *obj)
{
	for (; f->name; f++) {
		for (size_t i = 0; f->nested && i < f->count; i++) {
			uint8_t *at = obj + f->offset + i * f->size;
			int ret = fields_post_load(f->nested->fields, at);

			if (ret == 0 && f->nested->post_load)
				ret = f->nested->post_load(at);
			if (ret < 0)
				return ret;
		}
	}
	return 0;
}

/* --- writing ------------------------------------------------------------------------ */

static int state_put(struct vi_state_writer *w, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	while (len) {
		ssize_t n;

		if (atomic_load(&w->cancel))
			return vi_error(VI_EFAIL, "writing the state was cancelled");
		n = write(w->fd, p, len < STATE_CHUNK ? len : STATE_CHUNK);
		if (n < 0 && errno == EAGAIN) {
			/* A non-blocking pipe or socket: wait a little, then look at cancel. */
			struct pollfd pfd = { .fd = w->fd, .events = POLLOUT };

			poll(&pfd, 1, 200);
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return vi_error_errno(VI_EFAIL, errno, "cannot write the state");
		p += n;
		len -= (size_t)n;
		atomic_fetch_add(&w->offset, (uint64_t)n);
	}
	return 0;
}

static int state_put_section(struct vi_state_writer *w, uint32_t id, uint16_t version,
			     uint16_t flags, uint32_t instance, uint32_t crc, uint64_t length)
{
	struct state_section_header h = { id, version, flags, instance, crc, length };

	return state_put(w, &h, sizeof(h));
}

static void uuid_parse(const char *s, uint8_t *out)
{
	memset(out, 0, 16);
	for (unsigned i = 0, n = 0; s && s[i] && n < 32; i++) {
		unsigned v;

		if (s[i] == '-' || sscanf(&s[i], "%1x", &v) != 1)
			continue;
		out[n / 2] |= (uint8_t)(v << (n % 2 ? 0 : 4));
		n++;
	}
}

static void uuid_format(const uint8_t *u, char *out)
{
	static const uint8_t none[16];

	if (!memcmp(u, none, 16)) {
		out[0] = '\0';
		return;
	}
	snprintf(out, 37,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12],
		 u[13], u[14], u[15]);
}

int vi_state_writer_init(struct vi_state_writer *w, int fd, const struct vi_state_header *h)
{
	struct state_file_header fh = {
		.magic = STATE_MAGIC, .major = VI_STATE_MAJOR, .minor = VI_STATE_MINOR,
		.length = sizeof(fh), .memory = h->memory, .max_memory = h->max_memory,
		.cpus = h->cpus, .max_cpus = h->max_cpus,
	};

	w->fd = fd;
	uuid_parse(h->uuid, fh.uuid);
	fh.crc = vi_crc32c(0, &fh, offsetof(struct state_file_header, crc));
	return state_put(w, &fh, sizeof(fh));
}

int vi_state_write(struct vi_state_writer *w, const struct vi_state_desc *desc,
		   uint32_t instance, void *obj)
{
	size_t len = vi_state_size(desc, desc->version);
	uint8_t *payload = xmalloc(len ? len : 1);
	int ret = desc->pre_save ? desc->pre_save(obj) : 0;

	if (ret == 0) {
		fields_copy(desc->fields, obj, payload, desc->version, true);
		ret = state_put_section(w, desc->id, desc->version, (uint16_t)desc->flags,
					instance, vi_crc32c(0, payload, len), len);
	}
	if (ret == 0)
		ret = state_put(w, payload, len);
	free(payload);
	return ret;
}

static bool page_is_zero(const uint8_t *p)
{
	return !memcmp(p, zero_page, VI_STATE_PAGE);
}

/* One page run: section header, run header, zeros up to the next page boundary of the
 * stream, then the pages. The checksum goes first, so it is worked out first. */
static int state_put_run(struct vi_state_writer *w, uint64_t gpa, const uint8_t *data,
			 uint64_t pages)
{
	uint64_t payload_at = atomic_load(&w->offset) + sizeof(struct state_section_header);
	uint64_t data_at = (payload_at + sizeof(struct state_run_header) + VI_STATE_PAGE - 1) &
			   ~(uint64_t)(VI_STATE_PAGE - 1);
	struct state_run_header rh = { gpa, pages, data_at - payload_at };
	size_t pad = data_at - payload_at - sizeof(rh);
	uint64_t bytes = pages * VI_STATE_PAGE;
	uint32_t crc = vi_crc32c(0, &rh, sizeof(rh));
	int ret;

	crc = vi_crc32c(crc, zero_page, pad);
	crc = vi_crc32c(crc, data, bytes);
	ret = state_put_section(w, VI_STATE_MEMORY, 1, 0, 0, crc, rh.data_offset + bytes);
	if (ret == 0)
		ret = state_put(w, &rh, sizeof(rh));
	if (ret == 0)
		ret = state_put(w, zero_page, pad);
	if (ret == 0)
		ret = state_put(w, data, bytes);
	return ret;
}

int vi_state_write_pages(struct vi_state_writer *w, uint64_t gpa, const uint8_t *mem,
			 uint64_t pages)
{
	return vi_state_write_pages_known(w, gpa, mem, pages, NULL);
}

int vi_state_write_pages_known(struct vi_state_writer *w, uint64_t gpa, const uint8_t *mem,
			       uint64_t pages, const uint8_t *untouched)
{
	uint64_t i = 0;

#define ZERO(i) ((untouched && untouched[i]) || page_is_zero(mem + (i) * VI_STATE_PAGE))
	while (i < pages) {
		uint64_t start;
		int ret;

		for (; i < pages && ZERO(i); i++)
			atomic_fetch_add(&w->pages_done, 1);
		start = i;
		while (i < pages && i - start < RUN_MAX_PAGES && !ZERO(i))
			i++;
		if (i == start)
			break;
		ret = state_put_run(w, gpa + start * VI_STATE_PAGE, mem + start * VI_STATE_PAGE,
				    i - start);
		if (ret < 0)
			return ret;
		atomic_fetch_add(&w->pages_done, i - start);
	}
	return 0;
}
#undef ZERO

int vi_state_write_run(struct vi_state_writer *w, uint64_t gpa, const uint8_t *mem,
		       uint64_t pages)
{
	for (uint64_t i = 0; i < pages; i += RUN_MAX_PAGES) {
		uint64_t n = pages - i < RUN_MAX_PAGES ? pages - i : RUN_MAX_PAGES;
		int ret = state_put_run(w, gpa + i * VI_STATE_PAGE, mem + i * VI_STATE_PAGE, n);

		if (ret < 0)
			return ret;
		atomic_fetch_add(&w->pages_done, n);
	}
	return 0;
}

int vi_state_write_disk(struct vi_state_writer *w, uint32_t disk, uint64_t offset,
			const void *data, size_t len)
{
	uint32_t crc = vi_crc32c(vi_crc32c(0, &offset, sizeof(offset)), data, len);
	int ret;

	if (len > VI_STATE_DISK_DATA_MAX)
		return vi_error(VI_EUSAGE, "disk data of %zu bytes is more than a section holds",
				len);
	ret = state_put_section(w, VI_STATE_DISK_DATA, 1, 0, disk, crc, sizeof(offset) + len);
	if (ret == 0)
		ret = state_put(w, &offset, sizeof(offset));
	if (ret == 0)
		ret = state_put(w, data, len);
	return ret;
}

int vi_state_writer_finish(struct vi_state_writer *w)
{
	return state_put_section(w, VI_STATE_END, 1, 0, 0, vi_crc32c(0, NULL, 0), 0);
}

/* --- reading ------------------------------------------------------------------------ */

struct vi_state_reader {
	int fd;
	uint64_t offset;
	const struct vi_state_desc *const *known;
	size_t nknown;
	uint8_t *buf;
	size_t cap;
	struct vi_state_section cur;
	bool pages_pending; /* the current memory section's pages are still unread */
	bool skip_pages;    /* pages left unread are passed over, unchecked */
	uint32_t crc, crc_want;
};

static int state_get(struct vi_state_reader *r, void *buf, size_t len)
{
	uint8_t *p = buf;

	while (len) {
		ssize_t n = read(r->fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return vi_error_errno(VI_EFAIL, errno, "cannot read the state");
		if (n == 0)
			return vi_error(VI_EUSAGE, "the state ends early, at byte %llu",
					(unsigned long long)r->offset);
		p += n;
		len -= (size_t)n;
		r->offset += (uint64_t)n;
	}
	return 0;
}

static uint8_t *reader_buf(struct vi_state_reader *r, size_t len)
{
	if (len > r->cap) {
		r->buf = xrealloc(r->buf, len);
		r->cap = len;
	}
	return r->buf;
}

const char *vi_state_section_name(const struct vi_state_section *sec)
{
	static __thread char name[96];

	if (sec->id == VI_STATE_MEMORY)
		snprintf(name, sizeof(name), "'memory' at 0x%llx", (unsigned long long)sec->gpa);
	else if (sec->id == VI_STATE_DISK_DATA)
		snprintf(name, sizeof(name), "'disk data' #%u", sec->instance);
	else if (sec->desc)
		snprintf(name, sizeof(name), "'%s' #%u", sec->desc->name, sec->instance);
	else
		snprintf(name, sizeof(name), "%u #%u", sec->id, sec->instance);
	return name;
}

int vi_state_reader_open(int fd, const struct vi_state_desc *const *known, size_t nknown,
			 struct vi_state_header *hdr, struct vi_state_reader **out)
{
	struct vi_state_reader *r = xcalloc(1, sizeof(*r));
	struct state_file_header fh;
	int ret;

	r->fd = fd;
	r->known = known;
	r->nknown = nknown;
	ret = state_get(r, &fh, sizeof(fh));
	if (ret == 0 && memcmp(fh.magic, STATE_MAGIC, sizeof(fh.magic)))
		ret = vi_error(VI_EUSAGE, "not a vi state: no '%s' at its start", STATE_MAGIC);
	else if (ret == 0 && fh.major != VI_STATE_MAJOR)
		ret = vi_error(VI_EUNSUPPORTED,
			       "the state has format %u.%u; this vi reads format %u", fh.major,
			       fh.minor, VI_STATE_MAJOR);
	else if (ret == 0 && (fh.length < sizeof(fh) ||
			      fh.crc != vi_crc32c(0, &fh, offsetof(struct state_file_header, crc))))
		ret = vi_error(VI_EUSAGE, "the state header fails its checksum");
	/* A newer minor may lengthen the header: what follows ours is not ours to read. */
	if (ret == 0 && fh.length > sizeof(fh))
		ret = state_get(r, reader_buf(r, fh.length - sizeof(fh)), fh.length - sizeof(fh));
	if (ret < 0) {
		vi_state_reader_free(r);
		return ret;
	}
	uuid_format(fh.uuid, hdr->uuid);
	hdr->memory = fh.memory;
	hdr->max_memory = fh.max_memory;
	hdr->cpus = fh.cpus;
	hdr->max_cpus = fh.max_cpus;
	*out = r;
	return 0;
}

static const struct vi_state_desc *reader_known(const struct vi_state_reader *r, uint32_t id)
{
	for (size_t i = 0; i < r->nknown; i++)
		if (r->known[i]->id == id)
			return r->known[i];
	return NULL;
}

static int reader_check_crc(struct vi_state_reader *r)
{
	if (r->crc != r->crc_want)
		return vi_error(VI_EUSAGE, "section %s of the state fails its checksum",
				vi_state_section_name(&r->cur));
	return 0;
}

/* Reads `len` payload bytes into dst, or through the reader's buffer when dst is NULL,
 * adding them to the running checksum. */
static int reader_consume(struct vi_state_reader *r, uint8_t *dst, uint64_t len)
{
	while (len) {
		size_t n = len < STATE_CHUNK ? (size_t)len : STATE_CHUNK;
		uint8_t *p = dst ? dst : reader_buf(r, n);
		int ret = state_get(r, p, n);

		if (ret < 0)
			return ret;
		r->crc = vi_crc32c(r->crc, p, n);
		len -= n;
		if (dst)
			dst += n;
	}
	return 0;
}

int vi_state_read_pages(struct vi_state_reader *r, void *dst)
{
	int ret;

	if (!r->pages_pending)
		return vi_error(VI_ESTATE, "no page run to read");
	r->pages_pending = false;
	ret = reader_consume(r, dst, r->cur.pages * VI_STATE_PAGE);
	return ret < 0 ? ret : reader_check_crc(r);
}

/* After the section header of a page run: its header and padding. */
static int reader_run(struct vi_state_reader *r, uint64_t payload_at)
{
	struct vi_state_section *sec = &r->cur;
	struct state_run_header rh;
	int ret = state_get(r, &rh, sizeof(rh));

	if (ret < 0)
		return ret;
	r->crc = vi_crc32c(r->crc, &rh, sizeof(rh));
	if (rh.data_offset < sizeof(rh) || rh.data_offset - sizeof(rh) >= VI_STATE_PAGE ||
	    (payload_at + rh.data_offset) % VI_STATE_PAGE || rh.pages > RUN_MAX_PAGES ||
	    rh.data_offset + rh.pages * VI_STATE_PAGE != sec->length)
		return vi_error(VI_EUSAGE, "page run at byte %llu of the state is malformed",
				(unsigned long long)payload_at);
	ret = reader_consume(r, NULL, rh.data_offset - sizeof(rh));
	if (ret < 0)
		return ret;
	sec->gpa = rh.gpa;
	sec->pages = rh.pages;
	sec->data_offset = payload_at + rh.data_offset;
	r->pages_pending = true;
	return 0;
}

void vi_state_reader_skip_pages(struct vi_state_reader *r)
{
	r->skip_pages = true;
}

/* Passes over the current run's pages without reading them, where fd can seek. */
static int reader_skip_pages(struct vi_state_reader *r)
{
	uint64_t len = r->cur.pages * VI_STATE_PAGE;

	if (lseek(r->fd, (off_t)len, SEEK_CUR) < 0)
		return vi_state_read_pages(r, NULL);
	r->offset += len;
	r->pages_pending = false;
	return 0;
}

/* After the section header of disk data: the whole payload, checked. */
static int reader_disk_data(struct vi_state_reader *r, const struct state_section_header *h,
			    struct vi_state_section *out)
{
	struct vi_state_section *sec = &r->cur;
	uint64_t offset;
	int ret;

	if (h->version != 1)
		return vi_error(VI_EUNSUPPORTED,
				"disk data of version %u is newer than this vi reads", h->version);
	if (h->length < sizeof(offset) || h->length > sizeof(offset) + VI_STATE_DISK_DATA_MAX)
		return vi_error(VI_EUSAGE, "section %s of the state has %llu bytes",
				vi_state_section_name(sec), (unsigned long long)h->length);
	ret = reader_consume(r, reader_buf(r, h->length), h->length);
	if (ret == 0)
		ret = reader_check_crc(r);
	if (ret < 0)
		return ret;
	memcpy(&offset, r->buf, sizeof(offset));
	sec->file_offset = offset;
	sec->bytes = h->length - sizeof(offset);
	sec->payload = r->buf + sizeof(offset);
	*out = *sec;
	return 1;
}

int vi_state_next(struct vi_state_reader *r, struct vi_state_section *out)
{
	struct vi_state_section *sec = &r->cur;

	for (;;) {
		struct state_section_header h;
		int ret = !r->pages_pending ? 0
			  : r->skip_pages   ? reader_skip_pages(r)
					    : vi_state_read_pages(r, NULL);

		if (ret == 0)
			ret = state_get(r, &h, sizeof(h));
		if (ret < 0)
			return ret;
		*sec = (struct vi_state_section){ .id = h.id, .instance = h.instance,
						  .version = h.version, .flags = h.flags,
						  .length = h.length };
		r->crc = 0;
		r->crc_want = h.crc;
		if (h.id == VI_STATE_END)
			return 0;
		if (h.id == VI_STATE_MEMORY) {
			if (h.version != 1)
				return vi_error(VI_EUNSUPPORTED,
						"page runs of version %u are newer than this vi reads",
						h.version);
			ret = reader_run(r, r->offset);
			if (ret < 0)
				return ret;
			*out = *sec;
			return 1;
		}
		if (h.id == VI_STATE_DISK_DATA)
			return reader_disk_data(r, &h, out);
		sec->desc = reader_known(r, h.id);
		if (!sec->desc && !(h.flags & VI_STATE_F_OPTIONAL))
			return vi_error(VI_EUNSUPPORTED,
					"section %s (version %u) of the state is unknown to this vi",
					vi_state_section_name(sec), h.version);
		if (sec->desc && (h.version > sec->desc->version || h.version < sec->desc->oldest))
			return vi_error(VI_EUNSUPPORTED,
					"section %s of the state has version %u; this vi reads "
					"versions %u to %u",
					vi_state_section_name(sec), h.version, sec->desc->oldest,
					sec->desc->version);
		if (h.length > PAYLOAD_MAX ||
		    (sec->desc && h.length != vi_state_size(sec->desc, h.version)))
			return vi_error(VI_EUSAGE, "section %s of the state has %llu bytes, not %zu",
					vi_state_section_name(sec), (unsigned long long)h.length,
					sec->desc ? vi_state_size(sec->desc, h.version) : 0);
		/* A known payload is kept whole for vi_state_load(); others pass through. */
		ret = reader_consume(r, sec->desc ? reader_buf(r, h.length + 1) : NULL, h.length);
		if (ret == 0)
			ret = reader_check_crc(r);
		if (ret < 0)
			return ret;
		if (!sec->desc)
			continue; /* optional and unknown: skipped */
		sec->payload = r->buf;
		*out = *sec;
		return 1;
	}
}

int vi_state_load(const struct vi_state_section *sec, void *obj)
{
	const struct vi_state_desc *desc = sec->desc;
	int ret;

	fields_copy(desc->fields, obj, (uint8_t *)sec->payload, sec->version, false);
	ret = fields_post_load(desc->fields, obj);
	if (ret == 0 && desc->post_load)
		ret = desc->post_load(obj);
	return ret < 0 ? vi_error_wrap("section %s", vi_state_section_name(sec)) : 0;
}

void vi_state_reader_free(struct vi_state_reader *r)
{
	if (!r)
		return;
	free(r->buf);
	free(r);
}
