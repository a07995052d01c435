/*
 * md5auth.h — PostgreSQL's md5 password method, server side.
 *
 *   md5_secret()        "md5" + hex(md5(password || user)), as pg_authid keeps it
 *   md5_secret_valid()  is a text such a secret ("md5" + 32 lowercase hex digits)
 *   md5_check()         compare a client's PasswordMessage with a plain or md5 secret
 *
 * The client answers AuthenticationMD5Password(salt) with
 * "md5" + hex(md5(hex(md5(password || user)) || salt)). Pure; the digest is
 * OpenSSL's EVP MD5 and the comparison CRYPTO_memcmp.
 */
#ifndef PGLEASE_MD5AUTH_H
#define PGLEASE_MD5AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "check.h"

#define MD5_SECRET_LEN 35  /* "md5" + 32 hex digits */

MUST_CHECK int md5_secret(const char *password, const char *user, char out[MD5_SECRET_LEN + 1]);
bool md5_secret_valid(const char *text);
/*
 * secret: the user's secret, an md5 one when md5_secret_valid(), else a
 * plain password. response: the PasswordMessage's text (without its NUL).
 * 1: it matches; 0: it does not; -1: the digest failed.
 */
MUST_CHECK int md5_check(const char *secret, const char *user, const uint8_t salt[4],
			 const char *response, size_t response_len);

#endif
