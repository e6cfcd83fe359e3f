/* libFuzzer target for lib/image: an image file from arbitrary bytes is
 * opened (probed, without its backing chain), its tables walked by reads,
 * block status and info, checked, repaired, and written to, flushed and
 * grown. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "image/image.h"

static void walk(const char *path)
{
	static char buf[65536];
	struct image_info info;
	struct image *img;

	if (image_open(path, IMAGE_PROBE, IMAGE_OPEN_NO_BACKING, &img) < 0)
		return;
	uint64_t size = image_size(img);
	for (uint64_t i = 0; i < 32 && size; i++) {
		uint64_t off = size / 32 * i, len = size - off < sizeof(buf) ? size - off : sizeof(buf);
		image_pread(img, buf, len, off);
	}
	for (uint64_t off = 0, n = 0; off < size && n < 256; n++) {
		struct image_extent ext;
		if (image_block_status(img, off, size - off, &ext) < 0)
			break;
		off += ext.length;
	}
	if (image_get_info(img, false, &info) == 0)
		image_info_release(&info);
	image_close(img);
}

static void scribble(const char *path)
{
	static char buf[70000];
	struct image *img;

	if (image_open(path, IMAGE_PROBE, IMAGE_OPEN_WRITE | IMAGE_OPEN_NO_BACKING, &img) < 0)
		return;
	uint64_t size = image_size(img);
	memset(buf, 0x5a, sizeof(buf));
	if (size >= sizeof(buf)) {
		image_pwrite(img, buf, sizeof(buf), size / 3);
		image_pwrite(img, buf, 1000, 100);
		image_write_zeroes(img, size / 2, size / 4);
		image_discard(img, 0, size / 8);
		image_flush(img);
		image_pwrite(img, buf, 5000, size - 5000);
	}
	if (size < (1ull << 40))
		image_resize(img, size + (1 << 20));
	image_close(img);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct image_check_result res;
	char path[64];
	int fd = memfd_create("fuzz-image", MFD_CLOEXEC);

	if (fd < 0 || write(fd, data, size) != (ssize_t)size)
		return 0;
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	walk(path);
	if (image_check(path, IMAGE_PROBE, 0, &res) == 0)
		image_check_result_release(&res);
	/* Writes refuse what the check finds corrupt: repair first, so that
	 * they get to run on more inputs. */
	if (image_check(path, IMAGE_PROBE, IMAGE_CHECK_REPAIR_ALL, &res) == 0)
		image_check_result_release(&res);
	scribble(path);
	if (image_check(path, IMAGE_PROBE, 0, &res) == 0)
		image_check_result_release(&res);
	walk(path);
	close(fd);
	return 0;
}
