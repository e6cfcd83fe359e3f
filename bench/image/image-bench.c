/* The lib/image side of bench/image: the requests `qemu-img bench` sends
 * (request i at offset + i * step, wrapping at the image size), spread over
 * threads the way qemu-img keeps several in flight. Its clock stops once the
 * image is closed, so a write run counts the flush that makes it durable;
 * qemu-img's own figure stops before its close, which is why bench/image/run
 * times both from outside.
 *
 *   image-bench [-w] [-c count] [-d threads] [-s size] [-S step] [-o offset] file
 */
#include <getopt.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "image/image.h"
#include "util.h"

struct bench {
	struct image *img;
	bool write;
	uint64_t count, size, step, offset;
	atomic_uint_fast64_t next;
	atomic_int failed;
};

static void *worker(void *arg)
{
	struct bench *b = arg;
	uint64_t disk_size = image_size(b->img);
	char *buf = aligned_alloc(4096, (b->size + 4095) & ~4095ull);

	memset(buf, 0xa5, b->size);
	for (;;) {
		uint64_t i = atomic_fetch_add(&b->next, 1);
		if (i >= b->count || atomic_load(&b->failed))
			break;
		uint64_t off = (b->offset + i * b->step) % disk_size;
		int rc = b->write ? image_pwrite(b->img, buf, b->size, off)
				  : image_pread(b->img, buf, b->size, off);
		if (rc < 0) {
			fprintf(stderr, "image-bench: %s\n", vi_error_message());
			atomic_store(&b->failed, 1);
		}
	}
	free(buf);
	return NULL;
}

static int parse(const char *s, const char *what, uint64_t *out)
{
	if (vi_parse_size(s, what, out) < 0) {
		fprintf(stderr, "image-bench: %s\n", vi_error_message());
		return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct bench b = {.count = 75000, .size = 4096};
	uint64_t threads = 4;
	bool step_given = false;
	int c;

	while ((c = getopt(argc, argv, "wc:d:s:S:o:")) != -1) {
		int rc = 0;
		switch (c) {
		case 'w': b.write = true; break;
		case 'c': rc = parse(optarg, "count", &b.count); break;
		case 'd': rc = parse(optarg, "threads", &threads); break;
		case 's': rc = parse(optarg, "buffer size", &b.size); break;
		case 'S': rc = parse(optarg, "step", &b.step); step_given = true; break;
		case 'o': rc = parse(optarg, "offset", &b.offset); break;
		default: rc = -1;
		}
		if (rc < 0 || threads == 0 || threads > 256)
			return 2;
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: image-bench [-w] [-c count] [-d threads] [-s size] "
				"[-S step] [-o offset] file\n");
		return 2;
	}
	if (!step_given)
		b.step = b.size;
	if (image_open(argv[optind], IMAGE_PROBE, b.write ? IMAGE_OPEN_WRITE : 0, &b.img) < 0) {
		fprintf(stderr, "image-bench: %s\n", vi_error_message());
		return 1;
	}

	pthread_t th[256];
	double t0;
	printf("Sending %llu %s requests, %llu bytes each, %llu threads (starting at offset %llu, "
	       "step size %llu)\n", (unsigned long long)b.count, b.write ? "write" : "read",
	       (unsigned long long)b.size, (unsigned long long)threads,
	       (unsigned long long)b.offset, (unsigned long long)b.step);
	t0 = vi_now_ms();
	for (uint64_t i = 0; i < threads; i++)
		pthread_create(&th[i], NULL, worker, &b);
	for (uint64_t i = 0; i < threads; i++)
		pthread_join(th[i], NULL);
	if (image_close(b.img) < 0) {
		fprintf(stderr, "image-bench: %s\n", vi_error_message());
		return 1;
	}
	printf("Run completed in %.3f seconds.\n", vi_ms_since(t0) / 1e3);
	return atomic_load(&b.failed) ? 1 : 0;
}
