/*
 * test_tls.c — Criterion tests for daemon/tls.c's channel-binding data:
 * tls_cert_end_point() against the certificate's DER fingerprint computed
 * by the openssl command (an independent implementation), for certificates
 * signed with SHA-256, SHA-384 (hash kept) and SHA-1 (RFC 5929: SHA-256
 * instead); tls_server_end_point() for a client not on TLS; and the
 * client_tls_protocols parser.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "client.h"
#include "config.h"
#include "tls.h"

static char dir[] = "/tmp/pglease-test-tls-XXXXXX";

static void setup(void)
{
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(tls, .init = setup, .fini = teardown);

static void run(const char *cmd)
{
	cr_assert_eq(system(cmd), 0, "failed: %s", cmd);
}

/* A self-signed certificate signed with digest (sha256, sha384, sha1) at DIR/NAME.pem. */
static X509 *make_cert(const char *name, const char *digest, const char *key)
{
	char cmd[1024], path[256];

	snprintf(cmd, sizeof(cmd),
		 "openssl req -x509 -newkey %s -nodes -days 1 -subj /CN=%s -%s -keyout %s/%s.key -out %s/%s.pem "
		 ">/dev/null 2>&1", key, name, digest, dir, name, dir, name);
	run(cmd);
	snprintf(path, sizeof(path), "%s/%s.pem", dir, name);
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f);
	X509 *cert = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	cr_assert_not_null(cert);
	return cert;
}

/* The openssl command's fingerprint of the certificate's DER with digest, as bytes; its length. */
static int fingerprint(const char *name, const char *digest, uint8_t *out, size_t cap)
{
	char cmd[512], line[512];

	snprintf(cmd, sizeof(cmd), "openssl x509 -in %s/%s.pem -outform der | openssl dgst -%s -r", dir, name, digest);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	cr_assert_not_null(fgets(line, sizeof(line), p));
	cr_assert_eq(pclose(p), 0);
	size_t n = 0;
	for (const char *s = line; isxdigit((unsigned char)s[0]) && isxdigit((unsigned char)s[1]) && n < cap; s += 2) {
		unsigned byte;
		sscanf(s, "%2x", &byte);
		out[n++] = (uint8_t)byte;
	}
	return (int)n;
}

static void check(const char *name, const char *signed_with, const char *expect_digest, int expect_len,
		  const char *key)
{
	uint8_t got[64], want[64];
	X509 *cert = make_cert(name, signed_with, key);
	int n = tls_cert_end_point(cert, got, sizeof(got));
	int m = fingerprint(name, expect_digest, want, sizeof(want));

	cr_assert_eq(m, expect_len, "premise: the %s fingerprint is %d bytes", expect_digest, expect_len);
	cr_assert_eq(n, expect_len, "%s-signed certificate: %d bytes", signed_with, n);
	cr_assert_arr_eq(got, want, (size_t)n, "%s-signed certificate: hash differs from openssl's", signed_with);
	/* Too small a buffer is an error, not a truncated hash. */
	cr_assert_eq(tls_cert_end_point(cert, got, (size_t)expect_len - 1), -1);
	X509_free(cert);
}

Test(tls, end_point_of_a_sha256_certificate_is_its_sha256)
{
	check("s256", "sha256", "sha256", 32, "rsa:2048");
}

Test(tls, end_point_of_a_sha384_certificate_is_its_sha384)
{
	check("s384", "sha384", "sha384", 48, "ec -pkeyopt ec_paramgen_curve:P-384");
}

Test(tls, end_point_of_a_sha1_certificate_is_its_sha256)
{
	check("s1", "sha1", "sha256", 32, "rsa:2048");
}

Test(tls, no_certificate_is_an_error)
{
	uint8_t out[64];

	cr_assert_eq(tls_cert_end_point(NULL, out, sizeof(out)), -1);
}

Test(tls, a_client_not_on_tls_has_no_end_point)
{
	struct client c = { .tcp = true };
	uint8_t out[64];

	cr_assert_eq(tls_server_end_point(&c, out, sizeof(out)), 0);
	cr_assert(!client_on_tls(&c));
}

Test(tls, protocol_lists)
{
	const char *why = NULL;

	cr_assert_eq(config_parse_tls_protocols("secure", &why), TLS_PROTO_12 | TLS_PROTO_13);
	cr_assert_eq(config_parse_tls_protocols("default", &why), TLS_PROTO_12 | TLS_PROTO_13);
	cr_assert_eq(config_parse_tls_protocols("all", &why), TLS_PROTO_10 | TLS_PROTO_11 | TLS_PROTO_12 | TLS_PROTO_13);
	cr_assert_eq(config_parse_tls_protocols("TLSv1.3", &why), TLS_PROTO_13);
	cr_assert_eq(config_parse_tls_protocols("tlsv1.2, tlsv1.3", &why), TLS_PROTO_12 | TLS_PROTO_13);
	cr_assert_eq(config_parse_tls_protocols("tlsv1.1:tlsv1.3", &why), TLS_PROTO_11 | TLS_PROTO_13);
	cr_assert_eq(config_parse_tls_protocols("tlsv1.4", &why), 0);
	cr_assert_not_null(why);
	why = NULL;
	cr_assert_eq(config_parse_tls_protocols(" , ", &why), 0);
	cr_assert_str_eq(why, "no protocol named");
}
