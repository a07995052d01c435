/*
 * scram.c — SCRAM-SHA-256 server side (RFC 5802, RFC 7677) as PostgreSQL
 * speaks it. See scram.h for the interface.
 *
 * The messages come from an unauthenticated client: they are read with
 * explicit lengths (a NUL byte is malformed, not an end), every part is
 * bounded by the fixed buffers of struct scram_state (nothing is
 * allocated), and every error names what was wrong in PostgreSQL's words.
 * Like PostgreSQL, the user name in "n=" is ignored: the user is the one
 * of the startup packet.
 */
#include <assert.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "scram.h"

#define SQLSTATE_PROTOCOL "08P01"
#define SQLSTATE_UNSUPPORTED "0A000"
#define SQLSTATE_INTERNAL "XX000"
#define SQLSTATE_AUTH "28P01"
#define MALFORMED "malformed SCRAM message"

static const char mech_plain[] = "SCRAM-SHA-256";
static const char mech_plus[] = "SCRAM-SHA-256-PLUS";
static const char cb_type[] = "tls-server-end-point";

/* ---- base64 (OpenSSL's transform, our strict check of the input) */

static bool b64_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/';
}

int scram_b64_decode(const char *s, size_t len, uint8_t *out, size_t cap)
{
	uint8_t tmp[SCRAM_MSG_MAX];
	size_t pad = 0;
	int n;

	if (len % 4 != 0 || len / 4 * 3 > sizeof(tmp))
		return -1;
	if (len > 0 && s[len - 1] == '=')
		pad = len > 1 && s[len - 2] == '=' ? 2 : 1;
	for (size_t i = 0; i < len - pad; i++)
		if (!b64_char(s[i]))
			return -1;
	if (len / 4 * 3 - pad > cap)
		return -1;
	n = EVP_DecodeBlock(tmp, (const unsigned char *)s, (int)len);
	if (n < 0 || (size_t)n != len / 4 * 3)
		return -1;
	memcpy(out, tmp, len / 4 * 3 - pad);
	OPENSSL_cleanse(tmp, sizeof(tmp));
	return (int)(len / 4 * 3 - pad);
}

/* Writes 4 * ceil(n / 3) characters and a NUL; cap must hold them. */
static size_t b64_encode(const uint8_t *in, size_t n, char *out, size_t cap)
{
	assert(cap >= (n + 2) / 3 * 4 + 1);
	(void)cap;
	return (size_t)EVP_EncodeBlock((unsigned char *)out, in, (int)n);
}

/* ---- keys */

static int hmac_sha256(const uint8_t *key, size_t key_len, const void *data, size_t n,
		       uint8_t out[SCRAM_KEY_LEN])
{
	unsigned int out_len = 0;

	if (!HMAC(EVP_sha256(), key, (int)key_len, data, n, out, &out_len) ||
	    out_len != SCRAM_KEY_LEN)
		return -1;
	return 0;
}

static int sha256(const void *data, size_t n, uint8_t out[SCRAM_KEY_LEN])
{
	unsigned int out_len = 0;

	if (!EVP_Digest(data, n, out, &out_len, EVP_sha256(), NULL) || out_len != SCRAM_KEY_LEN)
		return -1;
	return 0;
}

/* StoredKey and ServerKey from SaltedPassword (RFC 5802, section 3). */
static int keys_from_salted(const uint8_t salted[SCRAM_KEY_LEN], struct scram_secret *out)
{
	uint8_t client_key[SCRAM_KEY_LEN];
	int rc = -1;

	if (hmac_sha256(salted, SCRAM_KEY_LEN, "Client Key", 10, client_key) == 0 &&
	    sha256(client_key, SCRAM_KEY_LEN, out->stored_key) == 0 &&
	    hmac_sha256(salted, SCRAM_KEY_LEN, "Server Key", 10, out->server_key) == 0)
		rc = 0;
	OPENSSL_cleanse(client_key, sizeof(client_key));
	return rc;
}

int scram_secret_from_password(const char *password, const uint8_t *salt, size_t salt_len,
			       int iterations, struct scram_secret *out)
{
	uint8_t salted[SCRAM_KEY_LEN];
	int rc;

	if (iterations < 1 || salt_len == 0 || salt_len > SCRAM_SALT_MAX)
		return -1;
	*out = (struct scram_secret){ .iterations = iterations, .salt_len = salt_len };
	memcpy(out->salt, salt, salt_len);
	if (!PKCS5_PBKDF2_HMAC(password, (int)strlen(password), salt, (int)salt_len, iterations,
			       EVP_sha256(), SCRAM_KEY_LEN, salted))
		return -1;
	rc = keys_from_salted(salted, out);
	OPENSSL_cleanse(salted, sizeof(salted));
	return rc;
}

/* A positive decimal int without sign, spaces or leading zeros beyond "0". */
static int parse_iterations(const char *s, size_t n)
{
	long v = 0;

	if (n == 0 || n > 10)
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v >= 1 && v <= INT_MAX ? (int)v : -1;
}

/* "<b64>" exactly SCRAM_KEY_LEN bytes long. */
static int decode_key(const char *s, size_t n, uint8_t out[SCRAM_KEY_LEN])
{
	return scram_b64_decode(s, n, out, SCRAM_KEY_LEN) == SCRAM_KEY_LEN ? 0 : -1;
}

int scram_secret_parse(const char *text, struct scram_secret *out)
{
	static const char prefix[] = "SCRAM-SHA-256$";
	const char *iter, *colon1, *dollar, *colon2, *end;
	int salt_len;

	if (strncmp(text, prefix, sizeof(prefix) - 1) != 0)
		return -1;
	iter = text + sizeof(prefix) - 1;
	end = iter + strlen(iter);
	colon1 = strchr(iter, ':');
	dollar = colon1 ? strchr(colon1, '$') : NULL;
	colon2 = dollar ? strchr(dollar, ':') : NULL;
	if (!colon2 || strchr(colon2 + 1, ':') || strchr(colon2 + 1, '$'))
		return -1;
	*out = (struct scram_secret){ .iterations = parse_iterations(iter, colon1 - iter) };
	salt_len = scram_b64_decode(colon1 + 1, dollar - colon1 - 1, out->salt, SCRAM_SALT_MAX);
	if (out->iterations < 1 || salt_len < 1 ||
	    decode_key(dollar + 1, colon2 - dollar - 1, out->stored_key) < 0 ||
	    decode_key(colon2 + 1, end - colon2 - 1, out->server_key) < 0)
		return -1;
	out->salt_len = (size_t)salt_len;
	return 0;
}

int scram_secret_mock(const char *user, const uint8_t key[SCRAM_KEY_LEN], struct scram_secret *out)
{
	uint8_t digest[SCRAM_KEY_LEN];
	unsigned int n = 0;
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	int ok = ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) &&
		 EVP_DigestUpdate(ctx, key, SCRAM_KEY_LEN) &&
		 EVP_DigestUpdate(ctx, user, strlen(user)) &&
		 EVP_DigestFinal_ex(ctx, digest, &n) && n == SCRAM_KEY_LEN;

	EVP_MD_CTX_free(ctx);
	if (!ok)
		return -1;
	*out = (struct scram_secret){ .iterations = SCRAM_DEFAULT_ITERATIONS, .salt_len = 16 };
	memcpy(out->salt, digest, out->salt_len);
	if (RAND_bytes(out->stored_key, SCRAM_KEY_LEN) != 1 ||
	    RAND_bytes(out->server_key, SCRAM_KEY_LEN) != 1)
		return -1;
	return 0;
}

/* ---- errors */

__attribute__((format(printf, 4, 5)))
static int fail(struct scram_state *st, const char *sqlstate, const char *message,
		const char *fmt, ...)
{
	va_list ap;

	st->stage = SCRAM_FAILED;
	st->sqlstate = sqlstate;
	st->message = message;
	st->detail[0] = '\0';
	if (fmt) {
		va_start(ap, fmt);
		vsnprintf(st->detail, sizeof(st->detail), fmt, ap);
		va_end(ap);
	}
	return -1;
}

/* An untrusted byte, printable in a log line. */
static const char *show_char(char c, char buf[8])
{
	if (c > 0x20 && c < 0x7f)
		snprintf(buf, 8, "%c", c);
	else
		snprintf(buf, 8, "\\x%02x", (unsigned char)c);
	return buf;
}

/* ---- reading attributes: "a=value" separated by ',' */

struct cursor {
	const char *p, *end;
};

static bool at_end(const struct cursor *c)
{
	return c->p == c->end;
}

/* Consumes "<attr>=" (any letter when want is 0) and the value up to ',' or the end. */
static int read_attr(struct scram_state *st, struct cursor *c, char want, char *attr,
		     const char **val, size_t *val_len)
{
	char shown[8];
	const char *comma;

	if (at_end(c))
		return fail(st, SQLSTATE_PROTOCOL, MALFORMED,
			    "Attribute expected, but found end of string.");
	if (want && *c->p != want)
		return fail(st, SQLSTATE_PROTOCOL, MALFORMED,
			    "Expected attribute \"%c\" but found \"%s\".", want,
			    show_char(*c->p, shown));
	if (!want && !((*c->p >= 'a' && *c->p <= 'z') || (*c->p >= 'A' && *c->p <= 'Z')))
		return fail(st, SQLSTATE_PROTOCOL, MALFORMED,
			    "Attribute expected, but found invalid character \"%s\".",
			    show_char(*c->p, shown));
	*attr = *c->p++;
	if (at_end(c) || *c->p != '=')
		return fail(st, SQLSTATE_PROTOCOL, MALFORMED,
			    "Expected character \"=\" for attribute \"%c\".", *attr);
	c->p++;
	comma = memchr(c->p, ',', c->end - c->p);
	*val = c->p;
	*val_len = (comma ? comma : c->end) - c->p;
	c->p += *val_len;
	return 0;
}

/* After an attribute: the end, or a ',' and more. */
static int read_comma(struct scram_state *st, struct cursor *c)
{
	char shown[8];

	if (at_end(c) || *c->p != ',')
		return fail(st, SQLSTATE_PROTOCOL, MALFORMED, at_end(c)
			    ? "Comma expected, but found end of string."
			    : "Comma expected, but found character \"%s\".",
			    at_end(c) ? "" : show_char(*c->p, shown));
	c->p++;
	return 0;
}

static bool printable_nonce(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] < 0x21 || s[i] > 0x7e || s[i] == ',')
			return false;
	return n > 0;
}

/* ---- scram_begin */

int scram_begin(struct scram_state *st, const struct scram_secret *secret,
		const char *mechanism, const uint8_t *cb_data, size_t cb_len)
{
	assert(!cb_data || cb_len <= SCRAM_CB_MAX);
	memset(st, 0, sizeof(*st));
	st->secret = *secret;
	st->cb_offered = cb_data != NULL;
	if (cb_data) {
		memcpy(st->cb_data, cb_data, cb_len);
		st->cb_len = cb_len;
	}
	if (strcmp(mechanism, mech_plus) == 0 && st->cb_offered)
		st->plus = true;
	else if (strcmp(mechanism, mech_plain) != 0)
		return fail(st, SQLSTATE_PROTOCOL,
			    "client selected an invalid SASL authentication mechanism", NULL);
	st->stage = SCRAM_WANT_FIRST;
	return 0;
}

/* ---- client-first-message */

/* gs2-header: the channel-binding flag, then an empty authzid. */
static int read_gs2_header(struct scram_state *st, struct cursor *c)
{
	const char *start = c->p;
	char shown[8];

	if (at_end(c))
		return fail(st, SQLSTATE_PROTOCOL, MALFORMED, "The message is empty.");
	switch (*c->p) {
	case 'n':
	case 'y':
		if (st->plus)
			return fail(st, SQLSTATE_PROTOCOL, MALFORMED,
				    "The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data.");
		if (*c->p == 'y' && st->cb_offered)
			return fail(st, SQLSTATE_PROTOCOL, "SCRAM channel binding negotiation error",
				    "The client supports SCRAM channel binding but thinks the server does not.  However, this server does support channel binding.");
		c->p++;
		break;
	case 'p': {
		const char *name;
		size_t name_len;
		char attr;

		if (!st->plus)
			return fail(st, SQLSTATE_PROTOCOL, MALFORMED,
				    "The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data.");
		if (read_attr(st, c, 'p', &attr, &name, &name_len) < 0)
			return -1;
		if (name_len != sizeof(cb_type) - 1 || memcmp(name, cb_type, name_len) != 0)
			return fail(st, SQLSTATE_PROTOCOL, "unsupported SCRAM channel-binding type",
				    "Only \"%s\" is supported.", cb_type);
		break;
	}
	default:
		return fail(st, SQLSTATE_PROTOCOL, MALFORMED,
			    "Unexpected channel-binding flag \"%s\".", show_char(*c->p, shown));
	}
	if (read_comma(st, c) < 0)
		return -1;
	if (!at_end(c) && *c->p == 'a')
		return fail(st, SQLSTATE_UNSUPPORTED,
			    "client uses authorization identity, but it is not supported", NULL);
	if (read_comma(st, c) < 0)
		return -1;
	assert((size_t)(c->p - start) < sizeof(st->gs2_header));
	memcpy(st->gs2_header, start, c->p - start);
	st->gs2_header[c->p - start] = '\0';
	return 0;
}

/* client-first-message-bare: "n=" (ignored), "r=", extensions (ignored, as PostgreSQL). */
static int read_first_bare(struct scram_state *st, struct cursor *c)
{
	const char *val;
	size_t val_len;
	char attr;

	if (!at_end(c) && *c->p == 'm')
		return fail(st, SQLSTATE_UNSUPPORTED,
			    "client requires an unsupported SCRAM extension", NULL);
	memcpy(st->client_first_bare, c->p, c->end - c->p);
	st->client_first_bare[c->end - c->p] = '\0';
	if (read_attr(st, c, 'n', &attr, &val, &val_len) < 0 || read_comma(st, c) < 0 ||
	    read_attr(st, c, 'r', &attr, &val, &val_len) < 0)
		return -1;
	if (!printable_nonce(val, val_len))
		return fail(st, SQLSTATE_PROTOCOL, "non-printable characters in SCRAM nonce", NULL);
	if (val_len > SCRAM_NONCE_MAX)
		return fail(st, SQLSTATE_PROTOCOL, MALFORMED,
			    "The nonce is longer than %d characters.", SCRAM_NONCE_MAX);
	memcpy(st->nonce, val, val_len);
	st->client_nonce_len = val_len;
	while (!at_end(c))
		if (read_comma(st, c) < 0 || read_attr(st, c, 0, &attr, &val, &val_len) < 0)
			return -1;
	return 0;
}

/* server-first-message: "r=<nonce>,s=<salt>,i=<iterations>". */
static int build_server_first(struct scram_state *st, const char *server_nonce)
{
	char salt64[(SCRAM_SALT_MAX + 2) / 3 * 4 + 1];
	size_t nonce_len = strlen(server_nonce);
	int n;

	if (!printable_nonce(server_nonce, nonce_len) || nonce_len > SCRAM_NONCE_MAX)
		return fail(st, SQLSTATE_INTERNAL, "could not generate random nonce", NULL);
	memcpy(st->nonce + st->client_nonce_len, server_nonce, nonce_len + 1);
	b64_encode(st->secret.salt, st->secret.salt_len, salt64, sizeof(salt64));
	n = snprintf(st->server_first, sizeof(st->server_first), "r=%s,s=%s,i=%d", st->nonce,
		     salt64, st->secret.iterations);
	assert(n > 0 && (size_t)n < sizeof(st->server_first));
	memcpy(st->reply, st->server_first, (size_t)n + 1);
	st->reply_len = (size_t)n;
	return 0;
}

int scram_client_first_nonce(struct scram_state *st, const char *msg, size_t len,
			     const char *server_nonce)
{
	struct cursor c = { msg, msg + len };

	assert(st->stage == SCRAM_WANT_FIRST);
	if (len > SCRAM_MSG_MAX || memchr(msg, '\0', len))
		return fail(st, SQLSTATE_PROTOCOL, MALFORMED,
			    len > SCRAM_MSG_MAX ? "The message is too long." : "The message contains a NUL byte.");
	if (read_gs2_header(st, &c) < 0 || read_first_bare(st, &c) < 0 ||
	    build_server_first(st, server_nonce) < 0)
		return -1;
	st->stage = SCRAM_WANT_FINAL;
	return 0;
}

int scram_client_first(struct scram_state *st, const char *msg, size_t len)
{
	uint8_t raw[SCRAM_SERVER_NONCE_RAW];
	char nonce[(SCRAM_SERVER_NONCE_RAW + 2) / 3 * 4 + 1];

	if (RAND_bytes(raw, sizeof(raw)) != 1)
		return fail(st, SQLSTATE_INTERNAL, "could not generate random nonce", NULL);
	b64_encode(raw, sizeof(raw), nonce, sizeof(nonce));
	return scram_client_first_nonce(st, msg, len, nonce);
}

/* ---- client-final-message */

/* "c=": base64 of the gs2 header and, with -PLUS, our channel-binding data. */
static int check_channel_binding(struct scram_state *st, const char *val, size_t val_len)
{
	uint8_t got[sizeof(st->gs2_header) + SCRAM_CB_MAX], want[sizeof(got)];
	size_t header_len = strlen(st->gs2_header), want_len = header_len + st->cb_len;
	int got_len = scram_b64_decode(val, val_len, got, sizeof(got));

	memcpy(want, st->gs2_header, header_len);
	if (st->plus)
		memcpy(want + header_len, st->cb_data, st->cb_len);
	else
		want_len = header_len;
	if (got_len >= 0 && (size_t)got_len == want_len && CRYPTO_memcmp(got, want, want_len) == 0)
		return 0;
	if (st->plus)
		return fail(st, SQLSTATE_PROTOCOL, "SCRAM channel binding check failed", NULL);
	return fail(st, SQLSTATE_PROTOCOL,
		    "unexpected SCRAM channel-binding attribute in client-final-message", NULL);
}

/* Proof: H(ClientProof XOR HMAC(StoredKey, AuthMessage)) == StoredKey. */
static int verify_proof(struct scram_state *st, const uint8_t proof[SCRAM_KEY_LEN],
			const char *auth_message, size_t n)
{
	uint8_t signature[SCRAM_KEY_LEN], client_key[SCRAM_KEY_LEN], stored[SCRAM_KEY_LEN];
	int rc = -1;

	if (hmac_sha256(st->secret.stored_key, SCRAM_KEY_LEN, auth_message, n, signature) == 0) {
		for (int i = 0; i < SCRAM_KEY_LEN; i++)
			client_key[i] = proof[i] ^ signature[i];
		if (sha256(client_key, SCRAM_KEY_LEN, stored) == 0)
			rc = CRYPTO_memcmp(stored, st->secret.stored_key, SCRAM_KEY_LEN) == 0 ? 0 : 1;
	}
	OPENSSL_cleanse(client_key, sizeof(client_key));
	if (rc < 0)
		return fail(st, SQLSTATE_INTERNAL, "could not compute SCRAM proof", NULL);
	if (rc > 0)
		return fail(st, SQLSTATE_AUTH, "password authentication failed", "invalid SCRAM proof");
	return 0;
}

static int build_server_final(struct scram_state *st, const char *auth_message, size_t n)
{
	uint8_t signature[SCRAM_KEY_LEN];

	if (hmac_sha256(st->secret.server_key, SCRAM_KEY_LEN, auth_message, n, signature) < 0)
		return fail(st, SQLSTATE_INTERNAL, "could not compute SCRAM signature", NULL);
	memcpy(st->reply, "v=", 2);
	st->reply_len = 2 + b64_encode(signature, sizeof(signature), st->reply + 2,
				       sizeof(st->reply) - 2);
	return 0;
}

/* AuthMessage = client-first-message-bare "," server-first-message "," client-final-message-without-proof */
static int check_and_reply(struct scram_state *st, const uint8_t proof[SCRAM_KEY_LEN],
			   const char *without_proof, size_t without_len)
{
	char auth_message[3 * (SCRAM_MSG_MAX + 1)];
	int n = snprintf(auth_message, sizeof(auth_message), "%s,%s,%.*s", st->client_first_bare,
			 st->server_first, (int)without_len, without_proof);

	assert(n > 0 && (size_t)n < sizeof(auth_message));
	if (verify_proof(st, proof, auth_message, (size_t)n) < 0 ||
	    build_server_final(st, auth_message, (size_t)n) < 0)
		return -1;
	st->stage = SCRAM_DONE;
	return 0;
}

int scram_client_final(struct scram_state *st, const char *msg, size_t len)
{
	struct cursor c = { msg, msg + len };
	uint8_t proof[SCRAM_KEY_LEN];
	const char *val, *proof_at;
	size_t val_len;
	char attr;

	assert(st->stage == SCRAM_WANT_FINAL);
	if (len > SCRAM_MSG_MAX || memchr(msg, '\0', len))
		return fail(st, SQLSTATE_PROTOCOL, MALFORMED,
			    len > SCRAM_MSG_MAX ? "The message is too long." : "The message contains a NUL byte.");
	if (read_attr(st, &c, 'c', &attr, &val, &val_len) < 0 ||
	    check_channel_binding(st, val, val_len) < 0 || read_comma(st, &c) < 0 ||
	    read_attr(st, &c, 'r', &attr, &val, &val_len) < 0)
		return -1;
	if (val_len != strlen(st->nonce) || memcmp(val, st->nonce, val_len) != 0)
		return fail(st, SQLSTATE_PROTOCOL, "invalid SCRAM response", "Nonce does not match.");
	do {  /* extensions, ignored, up to the proof */
		proof_at = c.p;
		if (read_comma(st, &c) < 0 || read_attr(st, &c, 0, &attr, &val, &val_len) < 0)
			return -1;
	} while (attr != 'p');
	if (scram_b64_decode(val, val_len, proof, sizeof(proof)) != SCRAM_KEY_LEN)
		return fail(st, SQLSTATE_PROTOCOL, MALFORMED, "Malformed proof in client-final-message.");
	if (!at_end(&c))
		return fail(st, SQLSTATE_PROTOCOL, MALFORMED,
			    "Garbage found at the end of client-final-message.");
	return check_and_reply(st, proof, msg, proof_at - msg);
}
