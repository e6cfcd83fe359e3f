/* Unit tests: sizes, numbers, names, suggestions, atomic files. */
#include "error.h"
#include "util.h"
#include "tap.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static void sizes(void)
{
	static const struct {
		const char *in;
		uint64_t want;
	} good[] = {
		{ "0", 0 },	      { "4096", 4096 },	       { "1K", 1024 },
		{ "512M", 512ull << 20 }, { "2G", 2ull << 30 }, { "1.5G", 3ull << 29 },
		{ "2GiB", 2ull << 30 },  { "3t", 3ull << 40 }, { "10MB", 10ull << 20 },
	};
	static const char *const bad[] = { "", "abc", "-1", "1X", "1.5", "1GG", "99999999999E" };
	uint64_t v;

	for (size_t i = 0; i < ARRAY_SIZE(good); i++) {
		v = 1;
		int rc = vi_parse_size(good[i].in, "size", &v);
		ok(rc == 0 && v == good[i].want, "parse_size('%s') = %llu", good[i].in,
		   (unsigned long long)good[i].want);
	}
	for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
		is_int(vi_parse_size(bad[i], "size", &v), -VI_EUSAGE, "parse_size('%s') is refused",
		       bad[i]);
	vi_parse_size("1Q", "memory", &v);
	is_str(vi_error_message(), "invalid memory '1Q': expected a size such as 512M or 2G",
	       "size error names what and the value");

	char buf[32];
	is_str(vi_format_size(512ull << 20, buf, sizeof(buf)), "512M", "format 512M");
	is_str(vi_format_size(3ull << 29, buf, sizeof(buf)), "1536M", "format keeps exact units");
	is_str(vi_format_size(1500000, buf, sizeof(buf)), "1.4M", "format rounds inexact sizes");
	is_str(vi_format_size(1000, buf, sizeof(buf)), "1000", "format bytes");
	is_str(vi_format_size(2ull << 40, buf, sizeof(buf)), "2T", "format 2T");
}

static void numbers(void)
{
	uint64_t v;
	is_int(vi_parse_uint("8", "cpus", 1, 64, &v), 0, "parse_uint in range");
	is_int(v, 8, "parse_uint value");
	is_int(vi_parse_uint("0", "cpus", 1, 64, &v), -VI_EUSAGE, "parse_uint below min");
	is_str(vi_error_message(), "invalid cpus '0': must be from 1 to 64", "range message");
	is_int(vi_parse_uint("1e3", "cpus", 1, 64, &v), -VI_EUSAGE, "parse_uint junk");
	is_int(vi_parse_uint("99999999999999999999999", "n", 0, UINT64_MAX, &v), -VI_EUSAGE,
	       "parse_uint overflow");
}

static void names(void)
{
	is_int(vi_check_name("web-1.test_a", "VM"), 0, "a valid name");
	is_int(vi_check_name("", "VM"), -VI_EUSAGE, "empty name");
	is_int(vi_check_name("-x", "VM"), -VI_EUSAGE, "leading dash");
	is_int(vi_check_name(".hidden", "VM"), -VI_EUSAGE, "leading dot");
	is_int(vi_check_name("a/b", "VM"), -VI_EUSAGE, "slash");
	char longname[80];
	memset(longname, 'a', 64);
	longname[64] = '\0';
	is_int(vi_check_name(longname, "VM"), -VI_EUSAGE, "64 characters is too long");
	longname[63] = '\0';
	is_int(vi_check_name(longname, "VM"), 0, "63 characters is fine");
}

static void suggestions(void)
{
	static const char *const verbs[] = { "list", "show", "caps", "clone", "create" };
	is_int(vi_edit_distance("lsit", "list"), 1, "a transposition is one edit");
	is_int(vi_edit_distance("", "abc"), 3, "distance from empty");
	is_str(vi_suggest("lsit", verbs, 5), "list", "suggest for a transposition");
	is_str(vi_suggest("creat", verbs, 5), "create", "suggest for a prefix");
	is_str(vi_suggest("zzzz", verbs, 5), NULL, "no suggestion when nothing is close");
	is_str(vi_suggest("cl", verbs, 5), NULL, "two letters are too few to guess");
}

static void files(void)
{
	char dir[] = "/tmp/vi-unit-XXXXXX";
	char *buf;
	size_t len;

	ok(mkdtemp(dir) != NULL, "temporary directory");
	char *deep = xasprintf("%s/a/b/c", dir);
	is_int(vi_mkdir_p(deep, 0755), 0, "mkdir_p makes every level");
	is_int(vi_mkdir_p(deep, 0755), 0, "mkdir_p of an existing path");
	char *f = xasprintf("%s/a/file", dir);
	is_int(vi_write_file_atomic(f, "hello", 5, 0640), 0, "atomic write");
	is_int(vi_read_file(f, &buf, &len), 0, "read back");
	is_str(buf, "hello", "contents");
	struct stat st;
	stat(f, &st);
	is_int(st.st_mode & 0777, 0640, "mode kept");
	free(buf);
	is_int(vi_write_file_atomic(f, "bye", 3, 0640), 0, "atomic overwrite");
	vi_read_file(f, &buf, &len);
	is_str(buf, "bye", "overwritten contents");
	free(buf);
	char *tmp = xasprintf("%s.tmp.%d", f, (int)getpid());
	ok(!vi_file_exists(tmp), "no temporary file left behind");
	is_int(vi_read_file("/nonexistent/x", &buf, &len), -VI_ENOTFOUND, "missing file is not found");
	is_int(vi_rm_rf(dir), 0, "rm_rf");
	ok(!vi_file_exists(dir), "tree removed");
	is_int(vi_rm_rf(dir), 0, "rm_rf of nothing is fine");
	free(deep);
	free(f);
	free(tmp);
}

static void identity(void)
{
	char a[37], b[37], hex[33];
	vi_uuid_generate(a);
	vi_uuid_generate(b);
	is_int(strlen(a), 36, "uuid length");
	ok(a[14] == '4' && strchr("89ab", a[19]), "uuid is version 4, RFC 4122 variant");
	ok(strcmp(a, b) != 0, "two uuids differ");
	vi_random_hex(hex, 16);
	is_int(strlen(hex), 32, "machine-id length");
}

int main(void)
{
	sizes();
	numbers();
	names();
	suggestions();
	files();
	identity();
	return done();
}
