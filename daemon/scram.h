/*
 * scram.h — the server side of SCRAM-SHA-256 (RFC 5802, RFC 7677) as
 * PostgreSQL speaks it, and the secrets it verifies against.
 *
 * Secrets:
 *   scram_secret_from_password()  derive StoredKey/ServerKey from a plain password
 *   scram_secret_parse()          read a "SCRAM-SHA-256$<i>:<salt>$<StoredKey>:<ServerKey>" verifier
 *   scram_secret_mock()           a secret no proof matches, for an unknown user
 *
 * One exchange (struct scram_state, no heap, no I/O):
 *   scram_begin()         the mechanism the client chose, the secret, the channel-binding data
 *   scram_client_first()  parse client-first-message; st->reply is the server-first-message
 *   scram_client_final()  parse client-final-message, verify the proof; st->reply is the server-final-message
 *
 * Pure: no sockets, no loop; every message is untrusted and every limit is
 * checked here. Each step returns 0, or -1 with st->sqlstate, st->message
 * and st->detail saying why (PostgreSQL's words where it has them). A wrong
 * proof is 28P01 with the message "password authentication failed": the
 * caller adds the user name. Crypto (SHA-256, HMAC, PBKDF2, the
 * constant-time compare, the nonce) is OpenSSL's.
 */
#ifndef PGLEASE_SCRAM_H
#define PGLEASE_SCRAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "check.h"

#define SCRAM_KEY_LEN 32            /* SHA-256 */
#define SCRAM_SALT_MAX 64           /* decoded salt bytes kept from a verifier */
#define SCRAM_DEFAULT_ITERATIONS 4096
#define SCRAM_NONCE_MAX 255         /* client nonce characters (libpq sends 24) */
#define SCRAM_MSG_MAX 1024          /* a client message, and each part of the AuthMessage */
#define SCRAM_CB_MAX 64             /* channel-binding data: a certificate hash */
#define SCRAM_SERVER_NONCE_RAW 18   /* random bytes in our nonce part, as PostgreSQL */

struct scram_secret {
	int iterations;
	uint8_t salt[SCRAM_SALT_MAX];
	size_t salt_len;
	uint8_t stored_key[SCRAM_KEY_LEN];
	uint8_t server_key[SCRAM_KEY_LEN];
};

/*
 * PBKDF2-HMAC-SHA-256 of the password as given (no SASLprep: an ASCII
 * password is its own SASLprep form; see daemon/README.md).
 */
MUST_CHECK int scram_secret_from_password(const char *password, const uint8_t *salt,
					  size_t salt_len, int iterations,
					  struct scram_secret *out);
/* A verifier as PostgreSQL stores it in pg_authid; -1 if it is not one. */
MUST_CHECK int scram_secret_parse(const char *text, struct scram_secret *out);
/*
 * For a user without a secret: the exchange runs to its end and fails
 * there, as PostgreSQL's does. The salt is the same for the same user and
 * key (so a client cannot tell a missing user by its salt changing); the
 * keys are random.
 */
MUST_CHECK int scram_secret_mock(const char *user, const uint8_t key[SCRAM_KEY_LEN],
				 struct scram_secret *out);

enum scram_stage { SCRAM_WANT_FIRST, SCRAM_WANT_FINAL, SCRAM_DONE, SCRAM_FAILED };

struct scram_state {
	enum scram_stage stage;
	struct scram_secret secret;         /* a copy: the userlist may be reloaded meanwhile */
	bool plus;                          /* the client chose SCRAM-SHA-256-PLUS */
	bool cb_offered;                    /* we offered -PLUS (a TLS connection) */
	uint8_t cb_data[SCRAM_CB_MAX];      /* tls-server-end-point hash of our certificate */
	size_t cb_len;
	char gs2_header[32];                /* "n,,", "y,,", "p=tls-server-end-point,," */
	char client_first_bare[SCRAM_MSG_MAX + 1];
	char nonce[2 * SCRAM_NONCE_MAX + 2];  /* client nonce + server nonce */
	size_t client_nonce_len;
	char server_first[SCRAM_MSG_MAX + 1];
	char reply[SCRAM_MSG_MAX + 1];      /* the message to send after a successful step */
	size_t reply_len;
	const char *sqlstate;               /* on failure */
	const char *message;
	char detail[160];
};

/*
 * mechanism: the name the client chose in SASLInitialResponse. cb_data:
 * the tls-server-end-point data when the connection is TLS (we then offer
 * SCRAM-SHA-256-PLUS), NULL otherwise.
 */
MUST_CHECK int scram_begin(struct scram_state *st, const struct scram_secret *secret,
			   const char *mechanism, const uint8_t *cb_data, size_t cb_len);
MUST_CHECK int scram_client_first(struct scram_state *st, const char *msg, size_t len);
/* The same with a given server nonce part instead of a random one: for tests. */
MUST_CHECK int scram_client_first_nonce(struct scram_state *st, const char *msg, size_t len,
					const char *server_nonce);
MUST_CHECK int scram_client_final(struct scram_state *st, const char *msg, size_t len);

/* Strict base64 (RFC 4648, padded): decoded length, or -1. */
MUST_CHECK int scram_b64_decode(const char *s, size_t len, uint8_t *out, size_t cap);

#endif
