/* Writes a first-boot seed disk with vi_seed_write, for the tests that boot
 * machines before `vi create` makes seeds itself:
 *   seed-write OUT ID HOSTNAME USER [--key LINE]... [--host-key FILE]
 *              [--user-data FILE] [--grow-root] [--grow DISK]
 * --grow grows partition 1 of the disk image DISK first, as vi create does
 * for a larger disk. */
#include "error.h"
#include "seed.h"
#include "util.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "host-key", required_argument, NULL, 'h' },
		{ "user-data", required_argument, NULL, 'u' },
		{ "grow-root", no_argument, NULL, 'g' },
		{ "grow", required_argument, NULL, 'G' },
		{ 0 },
	};
	struct vi_seed s = { 0 };
	const char **keys = xcalloc(argc, sizeof(*keys));
	char *host_key = NULL;
	const char *grow = NULL;
	size_t len;
	int c, rc = 0;

	while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (c == 'k')
			keys[s.nkeys++] = optarg;
		else if (c == 'h' && vi_read_file(optarg, &host_key, &len) < 0)
			c = '?';
		else if (c == 'u')
			s.user_data = optarg;
		else if (c == 'g')
			s.grow_root = true;
		else if (c == 'G')
			grow = optarg;
		if (c == '?') {
			fprintf(stderr, "seed-write: %s\n", vi_error_message());
			return 2;
		}
	}
	if (argc - optind != 4) {
		fprintf(stderr, "usage: seed-write OUT ID HOSTNAME USER [--key LINE]... "
				"[--host-key FILE] [--user-data FILE] [--grow-root] [--grow DISK]\n");
		return 2;
	}
	s.instance_id = argv[optind + 1];
	s.hostname = argv[optind + 2];
	s.user = argv[optind + 3];
	s.keys = keys;
	s.host_key = host_key;
	if ((grow && (rc = vi_seed_grow_partition(grow, 1)) < 0) ||
	    (rc = vi_seed_write(argv[optind], &s)) < 0)
		fprintf(stderr, "seed-write: %s\n", vi_error_message());
	free(keys);
	free(host_key);
	return rc < 0 ? -rc : 0;
}
