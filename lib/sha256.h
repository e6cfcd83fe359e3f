/* SHA-256 (FIPS 180-4): digests of golden-image inputs and of exported files.
 * A struct sha256 is a plain value; nothing to free. */
#ifndef VI_SHA256_H
#define VI_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_SIZE 32
#define SHA256_HEX_SIZE 65 /* 64 hex digits and a NUL */

struct sha256 {
	uint32_t state[8];
	uint64_t length; /* bytes hashed so far */
	uint8_t block[64];
	size_t used; /* bytes waiting in block */
};

void sha256_init(struct sha256 *h);
void sha256_update(struct sha256 *h, const void *data, size_t len);
/* Finishes h into out (32 bytes); h must be initialised again before reuse. */
void sha256_final(struct sha256 *h, uint8_t out[SHA256_SIZE]);
/* Finishes h into 64 lowercase hex digits and a NUL. */
void sha256_final_hex(struct sha256 *h, char out[SHA256_HEX_SIZE]);

/* The digest of a buffer, in hex. */
void sha256_hex(const void *data, size_t len, char out[SHA256_HEX_SIZE]);
/* The digest of a file's contents, in hex; 0 or a negative VI_E* code. */
int sha256_file(const char *path, char out[SHA256_HEX_SIZE]);

#endif
