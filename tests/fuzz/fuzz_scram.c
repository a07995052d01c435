/*
 * fuzz_scram.c — libFuzzer target: the SCRAM-SHA-256 exchange on arbitrary
 * client messages, with a fixed server state (RFC 7677's secret and server
 * nonce; with and without channel-binding data offered).
 *
 * The input is split at its first NUL: the part before is the
 * client-first-message, the rest the client-final-message (which may hold
 * NULs itself). The first byte's low bits choose the mechanism and whether
 * -PLUS was offered. Whatever arrives, each step must end in a state that
 * agrees with its result, and a reply must be a NUL-terminated text of the
 * length it claims.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scram.h"

static void check_reply(const struct scram_state *st, int rc)
{
	if (rc == 0 && (st->reply_len == 0 || strlen(st->reply) != st->reply_len))
		abort();
	if (rc < 0 && (st->stage != SCRAM_FAILED || !st->sqlstate || !st->message ||
		       strlen(st->sqlstate) != 5))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t salt[16] = { 0x5b, 0x6d, 0x99, 0x68, 0x9d, 0x12, 0x35, 0x8e,
					  0xec, 0xa0, 0x4b, 0x14, 0x12, 0x36, 0xfa, 0x81 };
	static struct scram_secret secret;
	static bool ready;
	uint8_t cb[32];
	struct scram_state st;
	const char *msg = (const char *)data, *nul;
	size_t first_len;
	int flags, rc;

	if (!ready) {
		/* one iteration: the exchange, not PBKDF2, is under test */
		if (scram_secret_from_password("pencil", salt, sizeof(salt), 1, &secret) < 0)
			abort();
		ready = true;
	}
	if (size == 0)
		return 0;
	flags = data[0];
	msg++, size--;
	memset(cb, 0x5a, sizeof(cb));
	if (scram_begin(&st, &secret, flags & 1 ? "SCRAM-SHA-256-PLUS" : "SCRAM-SHA-256",
			flags & 2 ? cb : NULL, flags & 2 ? sizeof(cb) : 0) < 0)
		return 0;
	nul = memchr(msg, '\0', size);
	first_len = nul ? (size_t)(nul - msg) : size;
	rc = scram_client_first_nonce(&st, msg, first_len, "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0");
	check_reply(&st, rc);
	if (rc < 0 || !nul)
		return 0;
	if (st.stage != SCRAM_WANT_FINAL)
		abort();
	rc = scram_client_final(&st, nul + 1, size - first_len - 1);
	check_reply(&st, rc);
	if (rc == 0 && (st.stage != SCRAM_DONE || strncmp(st.reply, "v=", 2) != 0))
		abort();
	return 0;
}
