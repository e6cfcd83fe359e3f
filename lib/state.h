/* The VM state format (DESIGN.md §9): what a saved or migrating VM is made of, for every
 * backend that saves through vi. This module owns the format only: the header, the
 * checksummed sections, guest memory as page runs, and the field tables that describe a
 * section's payload; which sections a VM has is its VMM's business (lib/vmm/snapshot.c).
 *
 * The stream, every integer little-endian:
 *   header   "VI-STATE", u16 major, u16 minor, u32 header length (64), uuid[16],
 *            u64 memory, u64 max memory, u32 vCPUs present, u32 max vCPUs,
 *            u32 crc32c of the header's bytes before it, u32 zero
 *   sections u32 id, u16 version, u16 flags, u32 instance, u32 crc32c, u64 length, then
 *            `length` bytes of payload, whose crc32c is the one in the section header
 *   end      a section with id VI_STATE_END and no payload
 * A memory section (page run) is u64 guest-physical start, u64 page count, u64 data
 * offset (from the payload's start), zeros up to it, then the pages: the writer pads so
 * that the data starts at a multiple of 4096 from the stream's start, which lets a file be
 * mapped MAP_PRIVATE page by page. Pages of zeros are left out: they read as zeros.
 * Padding is written, never seeked over, so a pipe or a socket carries the same bytes.
 * A disk data section (a migration's, never in a saved file) is u64 file offset, then the
 * bytes of disk `instance`'s image file at that offset, as they lie in the file.
 *
 * A migration stream is this format over a socket: the page runs of every iteration (a
 * page sent again simply replaces what came before), disk data between them, then the
 * vCPU and device sections and the end section. Minor 1 added disk data sections.
 *
 * What a reader of another version does: a newer major format is refused whole; a newer
 * minor adds optional sections only. A section whose id the reader knows but whose
 * version is newer than it reads, or older than the oldest it reads, is refused. A
 * section it does not know is skipped when flagged VI_STATE_F_OPTIONAL and refused
 * otherwise. A checksum mismatch names the section.
 *
 * Functions return 0 (or what they say) or a negative VI_E* code after vi_error(). */
#ifndef VI_STATE_H
#define VI_STATE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define VI_STATE_MAJOR 1
#define VI_STATE_MINOR 1
#define VI_STATE_PAGE  4096u

/* Section ids below 0x100 are the format's own; each VMM numbers its sections above. */
enum {
	VI_STATE_END = 0,
	VI_STATE_MEMORY = 1,
	VI_STATE_DISK_DATA = 2,
};

#define VI_STATE_F_OPTIONAL (1u << 0) /* a reader that does not know it may skip it */

struct vi_state_header {
	char uuid[37];       /* canonical form, "" when the VM had none */
	uint64_t memory, max_memory;
	uint32_t cpus, max_cpus;
};

uint32_t vi_crc32c(uint32_t crc, const void *buf, size_t len);

/* --- describing a section -------------------------------------------------------------
 * A description says, once, what a section's payload holds: fields of a C struct, copied
 * as they lie in memory (x86-64: little-endian), in table order. A field holds `count`
 * elements of `size` bytes at `offset`; with `nested` each element is a struct of that
 * description instead. A field added in a later version names it in `since`: a payload
 * of an older version lacks it and leaves the struct's value as it was. */
struct vi_state_desc;

struct vi_state_field {
	const char *name;
	size_t offset, size, count;
	const struct vi_state_desc *nested;
	unsigned since;
};

#define VI_STATE_FIELD(type, member)                                                         \
	{ #member, offsetof(type, member), sizeof(((type *)0)->member), 1, NULL, 0 }
/* An array member: its elements, each sizeof(member[0]). */
#define VI_STATE_ARRAY(type, member)                                                         \
	{ #member, offsetof(type, member), sizeof(((type *)0)->member[0]),                  \
	  sizeof(((type *)0)->member) / sizeof(((type *)0)->member[0]), NULL, 0 }
/* A struct member, or an array of them, described by `desc`. */
#define VI_STATE_NESTED(type, member, elem_type, desc)                                        \
	{ #member, offsetof(type, member), sizeof(elem_type),                                 \
	  sizeof(((type *)0)->member) / sizeof(elem_type), &(desc), 0 }
#define VI_STATE_FIELDS_END { NULL, 0, 0, 0, NULL, 0 }

struct vi_state_desc {
	const char *name;       /* in messages: "serial" */
	uint32_t id;            /* the section id; unused for nested descriptions */
	uint16_t version;       /* what is written */
	uint16_t oldest;        /* the oldest version read */
	unsigned flags;         /* VI_STATE_F_* of the section */
	const struct vi_state_field *fields; /* ended by VI_STATE_FIELDS_END */
	/* Called with the object before it is written (fetch state from elsewhere) and
	 * after it is read (check values, apply them); either may be NULL. */
	int (*pre_save)(void *obj);
	int (*post_load)(void *obj);
};

/* The payload size of `desc` at `version`. */
size_t vi_state_size(const struct vi_state_desc *desc, unsigned version);

/* --- writing ------------------------------------------------------------------------ */

struct vi_state_writer {
	int fd;
	_Atomic uint64_t offset;    /* bytes written so far: read by other threads for progress */
	_Atomic uint64_t pages_done; /* guest pages looked at by vi_state_write_pages() */
	atomic_bool cancel;         /* set by another thread: writing fails soon after */
};

/* Writes the header to fd (a file, a pipe, a socket) at its current position, which
 * counts as offset 0 for alignment. w is zeroed by the caller, who may set cancel at any
 * time from then on. */
int vi_state_writer_init(struct vi_state_writer *w, int fd, const struct vi_state_header *h);
/* One section of `desc` for obj: pre_save, then the fields. */
int vi_state_write(struct vi_state_writer *w, const struct vi_state_desc *desc,
		   uint32_t instance, void *obj);
/* Guest memory at gpa, `pages` pages from mem: its non-zero pages as page runs. */
int vi_state_write_pages(struct vi_state_writer *w, uint64_t gpa, const uint8_t *mem,
			 uint64_t pages);
/* The same, passing over without reading every page i with untouched[i] set: one
 * the host never gave memory to, which reads as zero (untouched may be NULL). */
int vi_state_write_pages_known(struct vi_state_writer *w, uint64_t gpa, const uint8_t *mem,
			       uint64_t pages, const uint8_t *untouched);
/* Guest memory at gpa, `pages` pages from mem, every page written, zeros too: pages sent
 * again, whose last content may have been zeros. */
int vi_state_write_run(struct vi_state_writer *w, uint64_t gpa, const uint8_t *mem,
		       uint64_t pages);
/* `len` bytes (at most VI_STATE_DISK_DATA_MAX) of disk `disk`'s image file at `offset`. */
#define VI_STATE_DISK_DATA_MAX (4u << 20)
int vi_state_write_disk(struct vi_state_writer *w, uint32_t disk, uint64_t offset,
			const void *data, size_t len);
/* The end section. */
int vi_state_writer_finish(struct vi_state_writer *w);

/* --- reading ------------------------------------------------------------------------ */

struct vi_state_section {
	uint32_t id, instance;
	uint16_t version, flags;
	uint64_t length;
	const struct vi_state_desc *desc; /* the known description, NULL for memory */
	const uint8_t *payload;           /* owned by the reader until the next call; NULL
					   * for memory, whose pages are read separately */
	/* Memory sections: */
	uint64_t gpa, pages;
	uint64_t data_offset; /* of the pages from the stream's start: a multiple of 4096 */
	/* Disk data sections: the disk is the instance, the bytes are the payload. */
	uint64_t file_offset, bytes;
};

struct vi_state_reader;

/* Reads and checks the header from fd. `known` lists the descriptions the caller reads
 * (the table must outlive the reader). The caller owns *out: vi_state_reader_free(). */
int vi_state_reader_open(int fd, const struct vi_state_desc *const *known, size_t nknown,
			 struct vi_state_header *hdr, struct vi_state_reader **out);
/* The next section the caller knows (unknown optional ones are skipped): 1, or 0 at the
 * end section. A memory section's pages that the caller leaves unread are read and
 * checked by the next call. */
int vi_state_next(struct vi_state_reader *r, struct vi_state_section *sec);
/* From now on, page runs the caller leaves unread are passed over (a seek), their
 * checksums unchecked: for a file known to be as it was written. */
void vi_state_reader_skip_pages(struct vi_state_reader *r);
/* Reads the current memory section's pages into dst and checks the section. */
int vi_state_read_pages(struct vi_state_reader *r, void *dst);
/* Fills obj from the current section: version and size checked, then post_load. */
int vi_state_load(const struct vi_state_section *sec, void *obj);
void vi_state_reader_free(struct vi_state_reader *r);

/* A section's name for messages: "'serial' #0" (static storage, one per thread). */
const char *vi_state_section_name(const struct vi_state_section *sec);

#endif
