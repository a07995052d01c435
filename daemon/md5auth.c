/*
 * md5auth.c — PostgreSQL's md5 password method. See md5auth.h.
 */
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "md5auth.h"

/* "md5" + hex(md5(a || b)) into out (MD5_SECRET_LEN + 1 bytes). */
static int md5_hex(const void *a, size_t a_len, const void *b, size_t b_len,
		   char out[MD5_SECRET_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	unsigned char digest[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok = ctx && EVP_DigestInit_ex(ctx, EVP_md5(), NULL) &&
		 EVP_DigestUpdate(ctx, a, a_len) && EVP_DigestUpdate(ctx, b, b_len) &&
		 EVP_DigestFinal_ex(ctx, digest, &n) && n == 16;

	EVP_MD_CTX_free(ctx);
	if (!ok)
		return -1;
	memcpy(out, "md5", 3);
	for (int i = 0; i < 16; i++) {
		out[3 + 2 * i] = hex[digest[i] >> 4];
		out[4 + 2 * i] = hex[digest[i] & 15];
	}
	out[MD5_SECRET_LEN] = '\0';
	return 0;
}

int md5_secret(const char *password, const char *user, char out[MD5_SECRET_LEN + 1])
{
	return md5_hex(password, strlen(password), user, strlen(user), out);
}

bool md5_secret_valid(const char *text)
{
	return strncmp(text, "md5", 3) == 0 && strlen(text) == MD5_SECRET_LEN &&
	       strspn(text + 3, "0123456789abcdef") == MD5_SECRET_LEN - 3;
}

int md5_check(const char *secret, const char *user, const uint8_t salt[4],
	      const char *response, size_t response_len)
{
	char stored[MD5_SECRET_LEN + 1], expected[MD5_SECRET_LEN + 1];
	int rc = -1;

	if (md5_secret_valid(secret))
		memcpy(stored, secret, sizeof(stored));
	else if (md5_secret(secret, user, stored) < 0)
		return -1;
	/* The salted hash is over the hex digits of the stored secret, without "md5". */
	if (md5_hex(stored + 3, MD5_SECRET_LEN - 3, salt, 4, expected) == 0)
		rc = response_len == MD5_SECRET_LEN &&
		     CRYPTO_memcmp(response, expected, MD5_SECRET_LEN) == 0;
	OPENSSL_cleanse(stored, sizeof(stored));
	return rc;
}
