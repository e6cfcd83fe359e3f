/* lib/state: the VM state format. Round trips through a file and a pipe (the same bytes),
 * page runs without zero pages and with page-aligned data that maps MAP_PRIVATE, field
 * tables with nested arrays and versions, and what a reader does with damage, unknown
 * sections and newer versions. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "error.h"
#include "state.h"
#include "tap.h"
#include "util.h"

struct queue {
	uint32_t pfn;
	uint16_t last;
};

struct thing {
	uint8_t a;
	uint32_t b;
	uint8_t ring[5];
	struct queue queues[2];
	uint64_t added; /* since version 2 */
	int loads;      /* not saved: counts post_load calls */
};

static int queue_checks;

static int queue_post_load(void *obj)
{
	struct queue *q = obj;

	queue_checks++;
	return q->pfn == 0xdead ? vi_error(VI_EUSAGE, "queue pfn 0x%x is impossible", q->pfn) : 0;
}

static int thing_post_load(void *obj)
{
	((struct thing *)obj)->loads++;
	return 0;
}

static const struct vi_state_field queue_fields[] = {
	VI_STATE_FIELD(struct queue, pfn),
	VI_STATE_FIELD(struct queue, last),
	VI_STATE_FIELDS_END,
};
static const struct vi_state_desc queue_desc = {
	.name = "queue", .fields = queue_fields, .post_load = queue_post_load,
};

#define THING_FIELDS                                                                         \
	VI_STATE_FIELD(struct thing, a), VI_STATE_FIELD(struct thing, b),                    \
		VI_STATE_ARRAY(struct thing, ring),                                          \
		VI_STATE_NESTED(struct thing, queues, struct queue, queue_desc)

static const struct vi_state_field thing_v2_fields[] = {
	THING_FIELDS,
	{ "added", offsetof(struct thing, added), 8, 1, NULL, 2 },
	VI_STATE_FIELDS_END,
};
static const struct vi_state_field thing_v1_fields[] = { THING_FIELDS, VI_STATE_FIELDS_END };

static const struct vi_state_desc thing_v2 = {
	.name = "thing", .id = 0x100, .version = 2, .oldest = 1, .fields = thing_v2_fields,
	.post_load = thing_post_load,
};
static const struct vi_state_desc thing_v1 = {
	.name = "thing", .id = 0x100, .version = 1, .oldest = 1, .fields = thing_v1_fields,
	.post_load = thing_post_load,
};
static const struct vi_state_desc thing_v3_only = {
	.name = "thing", .id = 0x100, .version = 3, .oldest = 3, .fields = thing_v2_fields,
};
static const struct vi_state_desc extra_optional = {
	.name = "extra", .id = 0x200, .version = 1, .oldest = 1, .flags = VI_STATE_F_OPTIONAL,
	.fields = thing_v1_fields,
};
static const struct vi_state_desc extra_required = {
	.name = "extra", .id = 0x201, .version = 1, .oldest = 1, .fields = thing_v1_fields,
};

#define PAGES 16

static const struct vi_state_header header = {
	.uuid = "01234567-89ab-cdef-0123-456789abcdef", .memory = PAGES * 4096,
	.max_memory = 2 * PAGES * 4096, .cpus = 2, .max_cpus = 8,
};

/* Pages 2, 3, 4, 9 and 15 hold something; the rest are zeros. */
static uint8_t *make_memory(void)
{
	static const unsigned used[] = { 2, 3, 4, 9, 15 };
	uint8_t *mem = xcalloc(PAGES, 4096);

	for (size_t i = 0; i < ARRAY_SIZE(used); i++)
		memset(mem + used[i] * 4096 + 100, 0x40 + (int)used[i], 1000);
	return mem;
}

static struct thing sample(void)
{
	return (struct thing){ .a = 7, .b = 0x01020304, .ring = "ring", .queues = { { 5, 6 },
		{ 7, 8 } }, .added = 99 };
}

/* The whole stream: header, one thing (instance 3), an optional extra, memory, end. */
static int write_stream(int fd, const struct vi_state_desc *extra)
{
	struct vi_state_writer w = { 0 };
	struct thing t = sample();
	uint8_t *mem = make_memory();
	int ret = vi_state_writer_init(&w, fd, &header);

	if (ret == 0)
		ret = vi_state_write(&w, &thing_v2, 3, &t);
	if (ret == 0 && extra)
		ret = vi_state_write(&w, extra, 0, &t);
	if (ret == 0)
		ret = vi_state_write_pages(&w, 0x100000, mem, PAGES);
	if (ret == 0)
		ret = vi_state_writer_finish(&w);
	free(mem);
	return ret;
}

static int memfd(void)
{
	return memfd_create("state", MFD_CLOEXEC);
}

struct pump {
	int from, to;
};

static void *pump(void *arg)
{
	struct pump *p = arg;
	char buf[4096];
	ssize_t n;

	while ((n = read(p->from, buf, sizeof(buf))) > 0)
		if (write(p->to, buf, (size_t)n) != n)
			break;
	return NULL;
}

static void test_crc(void)
{
	uint32_t whole = vi_crc32c(0, "123456789", 9);

	is_int(whole, 0xe3069283, "crc32c of '123456789' is the Castagnoli check value");
	is_int(vi_crc32c(vi_crc32c(0, "1234", 4), "56789", 5), whole, "crc32c chains");
}

static void test_round_trip(void)
{
	const struct vi_state_desc *known[] = { &thing_v2 };
	struct vi_state_section sec;
	struct vi_state_header h;
	struct vi_state_reader *r;
	struct thing t = { 0 };
	int file = memfd(), copy = memfd(), pipefd[2], ret, runs = 0, pages = 0;
	bool aligned = true, mapped = true, contents = true;
	uint8_t *mem = make_memory(), *a, *b;
	struct pump p;
	pthread_t th;
	off_t len;

	is_int(write_stream(file, NULL), 0, "a state is written to a file");
	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return;
	p = (struct pump){ pipefd[0], copy };
	pthread_create(&th, NULL, pump, &p);
	is_int(write_stream(pipefd[1], NULL), 0, "and the same state to a pipe");
	close(pipefd[1]);
	pthread_join(th, NULL);
	close(pipefd[0]);
	len = lseek(file, 0, SEEK_END);
	ok(len == lseek(copy, 0, SEEK_END) && len % 4096 != 0,
	   "both are %lld bytes: the writer pads, it never seeks", (long long)len);
	a = xmalloc((size_t)len);
	b = xmalloc((size_t)len);
	ok(pread(file, a, (size_t)len, 0) == len && pread(copy, b, (size_t)len, 0) == len &&
		   !memcmp(a, b, (size_t)len),
	   "and byte for byte the same");
	free(a);
	free(b);

	lseek(file, 0, SEEK_SET);
	ret = vi_state_reader_open(file, known, 1, &h, &r);
	is_int(ret, 0, "the header reads back%s%s", ret ? ": " : "", vi_error_message());
	if (ret < 0)
		goto out;
	is_str(h.uuid, header.uuid, "with the VM's uuid");
	ok(h.memory == header.memory && h.max_memory == header.max_memory && h.cpus == 2 &&
		   h.max_cpus == 8,
	   "its memory, max memory, vCPUs and max vCPUs");
	is_int(vi_state_next(r, &sec), 1, "the first section comes");
	ok(sec.id == 0x100 && sec.instance == 3 && sec.version == 2 && sec.desc == &thing_v2,
	   "it is thing #3, version 2");
	queue_checks = 0;
	is_int(vi_state_load(&sec, &t), 0, "it loads");
	ok(t.a == 7 && t.b == 0x01020304 && !strcmp((char *)t.ring, "ring") &&
		   t.queues[1].pfn == 7 && t.queues[1].last == 8 && t.added == 99,
	   "every field, the nested array too, comes back");
	ok(t.loads == 1 && queue_checks == 2, "post_load ran once, and once per queue");
	while ((ret = vi_state_next(r, &sec)) == 1) {
		uint8_t *page = xmalloc(sec.pages * 4096), *view;

		runs++;
		pages += (int)sec.pages;
		aligned = aligned && sec.data_offset % 4096 == 0;
		/* What restore does: map the file's pages privately where they belong. */
		view = mmap(NULL, sec.pages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE, file,
			    (off_t)sec.data_offset);
		mapped = mapped && view != MAP_FAILED;
		if (view != MAP_FAILED) {
			contents = contents && !memcmp(view, mem + (sec.gpa - 0x100000),
						       sec.pages * 4096);
			view[0] = 1; /* private: the file keeps its bytes */
			munmap(view, sec.pages * 4096);
		}
		ok(vi_state_read_pages(r, page) == 0 &&
			   !memcmp(page, mem + (sec.gpa - 0x100000), sec.pages * 4096),
		   "page run at 0x%llx of %llu pages reads back", (unsigned long long)sec.gpa,
		   (unsigned long long)sec.pages);
		free(page);
	}
	is_int(ret, 0, "the end section ends the stream");
	is_int(runs, 3, "three page runs: pages 2-4, 9 and 15");
	is_int(pages, 5, "five pages: the zero pages are left out");
	ok(aligned, "every run's data starts at a multiple of 4096 in the file");
	ok(mapped && contents, "and maps MAP_PRIVATE to the pages that were saved");
	vi_state_reader_free(r);
out:
	free(mem);
	close(file);
	close(copy);
}

/* Opens a memfd stream written with `extra` and reads every section; 0 or the error. */
static int read_all(int fd, const struct vi_state_desc *const *known, size_t n, int *sections)
{
	struct vi_state_section sec;
	struct vi_state_header h;
	struct vi_state_reader *r = NULL;
	struct thing t = { 0 };
	int ret;

	lseek(fd, 0, SEEK_SET);
	*sections = 0;
	ret = vi_state_reader_open(fd, known, n, &h, &r);
	while (ret == 0 && (ret = vi_state_next(r, &sec)) == 1) {
		(*sections)++;
		ret = sec.id == VI_STATE_MEMORY ? 0 : vi_state_load(&sec, &t);
	}
	vi_state_reader_free(r);
	return ret;
}

static void test_damage(void)
{
	const struct vi_state_desc *known[] = { &thing_v2 };
	int fd = memfd(), sections;
	uint8_t byte;
	struct thing bad = sample();
	struct vi_state_writer w = { 0 };

	write_stream(fd, NULL);
	/* The thing's payload starts after the header (64) and its section header (24). */
	pread(fd, &byte, 1, 64 + 24 + 2);
	byte ^= 0x10;
	pwrite(fd, &byte, 1, 64 + 24 + 2);
	is_int(read_all(fd, known, 1, &sections), -VI_EUSAGE, "a changed byte is found");
	is_str(vi_error_message(), "section 'thing' #3 of the state fails its checksum",
	       "and the message names the section");
	byte ^= 0x10;
	pwrite(fd, &byte, 1, 64 + 24 + 2);
	pread(fd, &byte, 1, 3 * 4096 + 10);
	byte ^= 1;
	pwrite(fd, &byte, 1, 3 * 4096 + 10);
	is_int(read_all(fd, known, 1, &sections), -VI_EUSAGE, "a changed memory byte is found");
	is_str(vi_error_message(), "section 'memory' at 0x102000 of the state fails its checksum",
	       "and the message names the page run");
	pwrite(fd, "X", 1, 0);
	is_int(read_all(fd, known, 1, &sections), -VI_EUSAGE, "a stranger's file is refused");
	is_str(vi_error_message(), "not a vi state: no 'VI-STATE' at its start",
	       "and the message says so");
	ftruncate(fd, 100);
	pwrite(fd, "V", 1, 0);
	is_int(read_all(fd, known, 1, &sections), -VI_EUSAGE, "a cut stream is refused");
	is_str(vi_error_message(), "the state ends early, at byte 100", "where it ends");
	close(fd);

	fd = memfd();
	bad.queues[0].pfn = 0xdead;
	vi_state_writer_init(&w, fd, &header);
	vi_state_write(&w, &thing_v2, 0, &bad);
	vi_state_writer_finish(&w);
	is_int(read_all(fd, known, 1, &sections), -VI_EUSAGE, "a post_load check refuses");
	is_str(vi_error_message(), "section 'thing' #0: queue pfn 0xdead is impossible",
	       "and its message names the section");
	close(fd);
}

static void test_versions(void)
{
	const struct vi_state_desc *v2[] = { &thing_v2 }, *v1[] = { &thing_v1 },
				   *v3[] = { &thing_v3_only };
	struct vi_state_section sec;
	struct vi_state_header h;
	struct vi_state_reader *r;
	struct vi_state_writer w = { 0 };
	struct thing t = sample(), got = { .added = 1234 };
	int fd = memfd(), sections;
	uint16_t major = VI_STATE_MAJOR + 1;

	write_stream(fd, &extra_optional);
	is_int(read_all(fd, v2, 1, &sections), 0, "an unknown optional section is skipped");
	is_int(sections, 4, "the reader sees the other sections (thing and three page runs)");
	close(fd);

	fd = memfd();
	write_stream(fd, &extra_required);
	is_int(read_all(fd, v2, 1, &sections), -VI_EUNSUPPORTED,
	       "an unknown section that is not optional is refused");
	is_str(vi_error_message(), "section 513 #0 (version 1) of the state is unknown to this vi",
	       "and the message says which");
	is_int(read_all(fd, v1, 1, &sections), -VI_EUNSUPPORTED,
	       "a section newer than the reader reads is refused");
	is_str(vi_error_message(),
	       "section 'thing' #3 of the state has version 2; this vi reads versions 1 to 1",
	       "and the message gives both versions");
	is_int(read_all(fd, v3, 1, &sections), -VI_EUNSUPPORTED,
	       "a section older than the reader's oldest is refused");
	close(fd);

	fd = memfd();
	vi_state_writer_init(&w, fd, &header);
	vi_state_write(&w, &thing_v1, 0, &t);
	vi_state_writer_finish(&w);
	lseek(fd, 0, SEEK_SET);
	ok(vi_state_reader_open(fd, v2, 1, &h, &r) == 0 && vi_state_next(r, &sec) == 1 &&
		   vi_state_load(&sec, &got) == 0,
	   "a version 1 section loads into the version 2 description");
	ok(got.b == t.b && got.queues[1].last == 8 && got.added == 1234,
	   "its fields come back and the later field keeps its value");
	vi_state_reader_free(r);

	pwrite(fd, &major, 2, 8);
	lseek(fd, 0, SEEK_SET);
	is_int(vi_state_reader_open(fd, v2, 1, &h, &r), -VI_EUNSUPPORTED,
	       "a newer major format is refused");
	is_str(vi_error_message(), "the state has format 2.1; this vi reads format 1",
	       "and the message gives the versions");
	close(fd);
}

int main(void)
{
	test_crc();
	test_round_trip();
	test_damage();
	test_versions();
	return done();
}
