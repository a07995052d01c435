/*
 * test_scram.c — Criterion tests for daemon/scram.c and daemon/md5auth.c.
 *
 * The proof arithmetic is checked against numbers not computed by this
 * code: the SCRAM-SHA-256 exchange of RFC 7677 (section 3) and, for the
 * md5 method and the verifier of the RFC's password, values computed with
 * python3's hashlib/hmac (the commands are in the comments), and libpq's
 * own client-side code (PQencryptPasswordConn, PQencryptPassword). Each parsing
 * error is driven by a message that differs from a good one in one place.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "md5auth.h"
#include "scram.h"

#include <libpq-fe.h>
#include <openssl/evp.h>

/* RFC 7677, section 3: user "user", password "pencil". */
#define RFC_SALT64 "W22ZaJ0SNY7soEsUEjb6gQ=="
#define RFC_CLIENT_NONCE "rOprNGfwEbeRWgbNEkqO"
#define RFC_SERVER_NONCE "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0"
#define RFC_NONCE RFC_CLIENT_NONCE RFC_SERVER_NONCE
#define RFC_CLIENT_FIRST "n,,n=user,r=" RFC_CLIENT_NONCE
#define RFC_SERVER_FIRST "r=" RFC_NONCE ",s=" RFC_SALT64 ",i=4096"
#define RFC_PROOF "dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
#define RFC_CLIENT_FINAL "c=biws,r=" RFC_NONCE ",p=" RFC_PROOF
#define RFC_SERVER_FINAL "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="
/*
 * python3: sp = pbkdf2_hmac('sha256', b'pencil', b64decode(RFC_SALT64), 4096);
 * StoredKey = sha256(hmac(sp, b'Client Key')), ServerKey = hmac(sp, b'Server Key')
 */
#define RFC_VERIFIER "SCRAM-SHA-256$4096:" RFC_SALT64 \
	"$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="

static struct scram_secret rfc_secret(void)
{
	struct scram_secret s;
	uint8_t salt[16];

	cr_assert_eq(scram_b64_decode(RFC_SALT64, strlen(RFC_SALT64), salt, sizeof(salt)), 16);
	cr_assert_eq(scram_secret_from_password("pencil", salt, 16, 4096, &s), 0);
	return s;
}

static int first(struct scram_state *st, const char *msg)
{
	return scram_client_first_nonce(st, msg, strlen(msg), RFC_SERVER_NONCE);
}

static int final(struct scram_state *st, const char *msg)
{
	return scram_client_final(st, msg, strlen(msg));
}

/* A state past a good client-first-message of the RFC exchange. */
static void rfc_begin(struct scram_state *st, const char *mech, const uint8_t *cb, size_t cb_len,
		      const char *client_first)
{
	struct scram_secret s = rfc_secret();

	cr_assert_eq(scram_begin(st, &s, mech, cb, cb_len), 0);
	cr_assert_eq(first(st, client_first), 0, "%s: %s", st->message, st->detail);
}

static void assert_fails(const struct scram_state *st, const char *sqlstate, const char *message,
			 const char *detail)
{
	cr_assert_eq(st->stage, SCRAM_FAILED);
	cr_assert_str_eq(st->sqlstate, sqlstate);
	cr_assert_str_eq(st->message, message);
	if (detail)
		cr_assert_str_eq(st->detail, detail);
}

Test(scram, rfc7677_exchange)
{
	struct scram_state st;

	rfc_begin(&st, "SCRAM-SHA-256", NULL, 0, RFC_CLIENT_FIRST);
	cr_assert_str_eq(st.reply, RFC_SERVER_FIRST);
	cr_assert_eq(st.reply_len, strlen(RFC_SERVER_FIRST));
	cr_assert_eq(final(&st, RFC_CLIENT_FINAL), 0, "%s: %s", st.message, st.detail);
	cr_assert_eq(st.stage, SCRAM_DONE);
	cr_assert_str_eq(st.reply, RFC_SERVER_FINAL);
	cr_assert_eq(st.reply_len, strlen(RFC_SERVER_FINAL));
}

Test(scram, verifier_gives_the_same_keys_as_the_password)
{
	struct scram_secret parsed, derived = rfc_secret();
	struct scram_state st;

	cr_assert_eq(scram_secret_parse(RFC_VERIFIER, &parsed), 0);
	cr_assert_eq(parsed.iterations, 4096);
	cr_assert_eq(parsed.salt_len, 16);
	cr_assert_eq(memcmp(parsed.salt, derived.salt, 16), 0);
	cr_assert_eq(memcmp(parsed.stored_key, derived.stored_key, SCRAM_KEY_LEN), 0);
	cr_assert_eq(memcmp(parsed.server_key, derived.server_key, SCRAM_KEY_LEN), 0);
	/* and the RFC exchange passes against the verifier alone */
	cr_assert_eq(scram_begin(&st, &parsed, "SCRAM-SHA-256", NULL, 0), 0);
	cr_assert_eq(first(&st, RFC_CLIENT_FIRST), 0);
	cr_assert_eq(final(&st, RFC_CLIENT_FINAL), 0);
	cr_assert_str_eq(st.reply, RFC_SERVER_FINAL);
}

Test(scram, bad_verifiers)
{
	static const char *const bad[] = {
		"SCRAM-SHA-256$4096:" RFC_SALT64 "$AAAA:AAAA",  /* keys too short */
		"SCRAM-SHA-256$0:" RFC_SALT64 "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"SCRAM-SHA-256$-1:" RFC_SALT64 "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"SCRAM-SHA-256$99999999999:" RFC_SALT64 "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"SCRAM-SHA-256$4096:$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ=$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		RFC_VERIFIER ":x",
		RFC_VERIFIER "$",
		"SCRAM-SHA-256$4096:" RFC_SALT64,
		"SCRAM-SHA-1$4096:" RFC_SALT64 "$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=",
		"",
	};
	struct scram_secret s;

	for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++)
		cr_expect_eq(scram_secret_parse(bad[i], &s), -1, "accepted %s", bad[i]);
}

Test(scram, wrong_password_fails_with_28P01)
{
	struct scram_state st;
	struct scram_secret s;
	uint8_t salt[16];

	cr_assert_eq(scram_b64_decode(RFC_SALT64, 24, salt, 16), 16);
	cr_assert_eq(scram_secret_from_password("pencil2", salt, 16, 4096, &s), 0);
	cr_assert_eq(scram_begin(&st, &s, "SCRAM-SHA-256", NULL, 0), 0);
	cr_assert_eq(first(&st, RFC_CLIENT_FIRST), 0);
	cr_assert_eq(final(&st, RFC_CLIENT_FINAL), -1);
	assert_fails(&st, "28P01", "password authentication failed", "invalid SCRAM proof");
}

Test(scram, mock_secret_fails_at_the_end_with_a_stable_salt)
{
	uint8_t key[SCRAM_KEY_LEN] = { 1, 2, 3 };
	struct scram_secret a, b, c;
	struct scram_state st;

	cr_assert_eq(scram_secret_mock("user", key, &a), 0);
	cr_assert_eq(scram_secret_mock("user", key, &b), 0);
	cr_assert_eq(scram_secret_mock("other", key, &c), 0);
	cr_assert_eq(memcmp(a.salt, b.salt, a.salt_len), 0);
	cr_assert_neq(memcmp(a.salt, c.salt, a.salt_len), 0);
	cr_assert_eq(scram_begin(&st, &a, "SCRAM-SHA-256", NULL, 0), 0);
	cr_assert_eq(scram_client_first(&st, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST)), 0);
	cr_assert_eq(st.stage, SCRAM_WANT_FINAL);
}

Test(scram, random_server_nonce)
{
	struct scram_secret s = rfc_secret();
	struct scram_state st, st2;

	cr_assert_eq(scram_begin(&st, &s, "SCRAM-SHA-256", NULL, 0), 0);
	cr_assert_eq(scram_client_first(&st, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST)), 0);
	cr_assert_eq(scram_begin(&st2, &s, "SCRAM-SHA-256", NULL, 0), 0);
	cr_assert_eq(scram_client_first(&st2, RFC_CLIENT_FIRST, strlen(RFC_CLIENT_FIRST)), 0);
	/* r=<client nonce><24 base64 characters of 18 random bytes>,s=... */
	cr_assert_eq(strncmp(st.reply, "r=" RFC_CLIENT_NONCE, 2 + strlen(RFC_CLIENT_NONCE)), 0);
	cr_assert_eq(strlen(st.nonce), strlen(RFC_CLIENT_NONCE) + 24);
	cr_assert_str_neq(st.nonce, st2.nonce);
}

Test(scram, mechanism_names)
{
	struct scram_secret s = rfc_secret();
	struct scram_state st;
	uint8_t cb[32] = { 0 };

	cr_assert_eq(scram_begin(&st, &s, "SCRAM-SHA-1", NULL, 0), -1);
	assert_fails(&st, "08P01", "client selected an invalid SASL authentication mechanism", NULL);
	/* -PLUS is only valid where we offered it (a TLS connection) */
	cr_assert_eq(scram_begin(&st, &s, "SCRAM-SHA-256-PLUS", NULL, 0), -1);
	cr_assert_eq(scram_begin(&st, &s, "SCRAM-SHA-256-PLUS", cb, sizeof(cb)), 0);
	cr_assert(st.plus);
}

struct bad_first {
	const char *msg, *sqlstate, *message, *detail;
};

Test(scram, bad_client_first_messages)
{
	static const struct bad_first cases[] = {
		{ "", "08P01", "malformed SCRAM message", "The message is empty." },
		{ "x,,n=,r=abc", "08P01", "malformed SCRAM message", "Unexpected channel-binding flag \"x\"." },
		{ "p=tls-server-end-point,,n=,r=abc", "08P01", "malformed SCRAM message",
		  "The client selected SCRAM-SHA-256 without channel binding, but the SCRAM message includes channel binding data." },
		{ "n,a=someone,n=,r=abc", "0A000", "client uses authorization identity, but it is not supported", "" },
		{ "n;,n=,r=abc", "08P01", "malformed SCRAM message", "Comma expected, but found character \";\"." },
		{ "n,", "08P01", "malformed SCRAM message", "Comma expected, but found end of string." },
		{ "n,,m=ext,n=,r=abc", "0A000", "client requires an unsupported SCRAM extension", "" },
		{ "n,,r=abc", "08P01", "malformed SCRAM message", "Expected attribute \"n\" but found \"r\"." },
		{ "n,,n", "08P01", "malformed SCRAM message", "Expected character \"=\" for attribute \"n\"." },
		{ "n,,n=", "08P01", "malformed SCRAM message", "Comma expected, but found end of string." },
		{ "n,,n=,r=", "08P01", "non-printable characters in SCRAM nonce", "" },
		{ "n,,n=,r=ab c", "08P01", "non-printable characters in SCRAM nonce", "" },
		{ "n,,n=,r=abc,", "08P01", "malformed SCRAM message", "Attribute expected, but found end of string." },
		{ "n,,n=,r=abc,1=x", "08P01", "malformed SCRAM message", "Attribute expected, but found invalid character \"1\"." },
	};
	struct scram_secret s = rfc_secret();

	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		struct scram_state st;

		cr_assert_eq(scram_begin(&st, &s, "SCRAM-SHA-256", NULL, 0), 0);
		cr_expect_eq(first(&st, cases[i].msg), -1, "accepted %s", cases[i].msg);
		cr_expect_str_eq(st.sqlstate, cases[i].sqlstate, "%s", cases[i].msg);
		cr_expect_str_eq(st.message, cases[i].message, "%s", cases[i].msg);
		cr_expect_str_eq(st.detail, cases[i].detail, "%s", cases[i].msg);
	}
}

Test(scram, client_first_limits)
{
	struct scram_secret s = rfc_secret();
	struct scram_state st;
	char msg[SCRAM_MSG_MAX + 2];

	/* a NUL byte inside the message is malformed, not its end */
	cr_assert_eq(scram_begin(&st, &s, "SCRAM-SHA-256", NULL, 0), 0);
	cr_assert_eq(scram_client_first_nonce(&st, "n,,n=,r=ab\0c", 12, RFC_SERVER_NONCE), -1);
	cr_assert_str_eq(st.detail, "The message contains a NUL byte.");
	/* a nonce of SCRAM_NONCE_MAX characters passes, one more does not */
	for (int extra = 0; extra < 2; extra++) {
		int n = snprintf(msg, sizeof(msg), "n,,n=,r=");

		memset(msg + n, 'x', SCRAM_NONCE_MAX + extra);
		msg[n + SCRAM_NONCE_MAX + extra] = '\0';
		cr_assert_eq(scram_begin(&st, &s, "SCRAM-SHA-256", NULL, 0), 0);
		cr_assert_eq(first(&st, msg), extra ? -1 : 0);
	}
	/* the whole message is bounded */
	memcpy(msg, "n,,n=,r=abc,x=", 14);
	memset(msg + 14, 'y', sizeof(msg) - 15);
	msg[sizeof(msg) - 1] = '\0';
	cr_assert_eq(scram_begin(&st, &s, "SCRAM-SHA-256", NULL, 0), 0);
	cr_assert_eq(first(&st, msg), -1);
	cr_assert_str_eq(st.detail, "The message is too long.");
	/* extensions after the nonce and the user name in n= are ignored, as PostgreSQL does */
	cr_assert_eq(scram_begin(&st, &s, "SCRAM-SHA-256", NULL, 0), 0);
	cr_assert_eq(first(&st, "n,,n=someone,r=abc,x=1,y=2"), 0);
}

Test(scram, bad_client_final_messages)
{
	static const struct bad_first cases[] = {
		{ "", "08P01", "malformed SCRAM message", "Attribute expected, but found end of string." },
		{ "r=" RFC_NONCE ",p=" RFC_PROOF, "08P01", "malformed SCRAM message", "Expected attribute \"c\" but found \"r\"." },
		{ "c=eSws,r=" RFC_NONCE ",p=" RFC_PROOF, "08P01", "unexpected SCRAM channel-binding attribute in client-final-message", "" },
		{ "c=biw,r=" RFC_NONCE ",p=" RFC_PROOF, "08P01", "unexpected SCRAM channel-binding attribute in client-final-message", "" },
		{ "c=biws,r=" RFC_CLIENT_NONCE ",p=" RFC_PROOF, "08P01", "invalid SCRAM response", "Nonce does not match." },
		{ "c=biws,r=" RFC_NONCE "x,p=" RFC_PROOF, "08P01", "invalid SCRAM response", "Nonce does not match." },
		{ "c=biws,r=" RFC_NONCE, "08P01", "malformed SCRAM message", "Comma expected, but found end of string." },
		{ "c=biws,r=" RFC_NONCE ",p=AAAA", "08P01", "malformed SCRAM message", "Malformed proof in client-final-message." },
		{ "c=biws,r=" RFC_NONCE ",p=" RFC_PROOF ",x=1", "08P01", "malformed SCRAM message", "Garbage found at the end of client-final-message." },
		{ "c=biws,r=" RFC_NONCE ",p=" RFC_PROOF "A", "08P01", "malformed SCRAM message", "Malformed proof in client-final-message." },
		{ "c=biws,r=" RFC_NONCE ",x=1,p=" RFC_PROOF, "28P01", "password authentication failed", "invalid SCRAM proof" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		struct scram_state st;

		rfc_begin(&st, "SCRAM-SHA-256", NULL, 0, RFC_CLIENT_FIRST);
		cr_expect_eq(final(&st, cases[i].msg), -1, "accepted %s", cases[i].msg);
		cr_expect_str_eq(st.sqlstate, cases[i].sqlstate, "%s", cases[i].msg);
		cr_expect_str_eq(st.message, cases[i].message, "%s", cases[i].msg);
		cr_expect_str_eq(st.detail, cases[i].detail, "%s", cases[i].msg);
	}
}

Test(scram, gs2_y_flag)
{
	struct scram_secret s = rfc_secret();
	struct scram_state st;
	uint8_t cb[32] = { 7 };

	/* without TLS, "y" is an honest client: c= must then be "eSws" (base64 of "y,,") */
	rfc_begin(&st, "SCRAM-SHA-256", NULL, 0, "y,,n=user,r=" RFC_CLIENT_NONCE);
	cr_assert_eq(final(&st, RFC_CLIENT_FINAL), -1);
	cr_assert_str_eq(st.message, "unexpected SCRAM channel-binding attribute in client-final-message");
	rfc_begin(&st, "SCRAM-SHA-256", NULL, 0, "y,,n=user,r=" RFC_CLIENT_NONCE);
	cr_assert_eq(final(&st, "c=eSws,r=" RFC_NONCE ",p=" RFC_PROOF), -1);
	cr_assert_str_eq(st.sqlstate, "28P01");  /* past the binding check; the RFC proof was for n,, */
	/* with TLS, a client that thinks we cannot bind is being downgraded */
	cr_assert_eq(scram_begin(&st, &s, "SCRAM-SHA-256", cb, sizeof(cb)), 0);
	cr_assert_eq(first(&st, "y,,n=,r=abc"), -1);
	cr_assert_str_eq(st.message, "SCRAM channel binding negotiation error");
	/* and "n" is fine with TLS too (the client chose not to bind) */
	cr_assert_eq(scram_begin(&st, &s, "SCRAM-SHA-256", cb, sizeof(cb)), 0);
	cr_assert_eq(first(&st, "n,,n=,r=abc"), 0);
}

Test(scram, channel_binding_plus)
{
	struct scram_secret s = rfc_secret();
	struct scram_state st;
	uint8_t cb[32], data[64];
	char c64[128], msg[512];
	size_t header_len = strlen("p=tls-server-end-point,,");

	for (int i = 0; i < 32; i++)
		cb[i] = (uint8_t)(i * 7 + 1);
	memcpy(data, "p=tls-server-end-point,,", header_len);
	memcpy(data + header_len, cb, sizeof(cb));
	cr_assert_gt(EVP_EncodeBlock((unsigned char *)c64, data, (int)(header_len + 32)), 0);

	cr_assert_eq(scram_begin(&st, &s, "SCRAM-SHA-256-PLUS", cb, sizeof(cb)), 0);
	cr_assert_eq(first(&st, "n,,n=,r=abc"), -1);
	cr_assert_str_eq(st.detail, "The client selected SCRAM-SHA-256-PLUS, but the SCRAM message does not include channel binding data.");
	cr_assert_eq(scram_begin(&st, &s, "SCRAM-SHA-256-PLUS", cb, sizeof(cb)), 0);
	cr_assert_eq(first(&st, "p=tls-unique,,n=,r=abc"), -1);
	cr_assert_str_eq(st.message, "unsupported SCRAM channel-binding type");

	/* the right binding data gets past the check (to the proof) */
	rfc_begin(&st, "SCRAM-SHA-256-PLUS", cb, sizeof(cb), "p=tls-server-end-point,,n=,r=" RFC_CLIENT_NONCE);
	snprintf(msg, sizeof(msg), "c=%s,r=%s,p=%s", c64, RFC_NONCE, RFC_PROOF);
	cr_assert_eq(final(&st, msg), -1);
	cr_assert_str_eq(st.sqlstate, "28P01");
	/* other data, or only the header, fails the binding check */
	cb[5] ^= 1;
	rfc_begin(&st, "SCRAM-SHA-256-PLUS", cb, sizeof(cb), "p=tls-server-end-point,,n=,r=" RFC_CLIENT_NONCE);
	cr_assert_eq(final(&st, msg), -1);
	cr_assert_str_eq(st.message, "SCRAM channel binding check failed");
	rfc_begin(&st, "SCRAM-SHA-256-PLUS", cb, sizeof(cb), "p=tls-server-end-point,,n=,r=" RFC_CLIENT_NONCE);
	cr_assert_eq(final(&st, "c=cD10bHMtc2VydmVyLWVuZC1wb2ludCws,r=" RFC_NONCE ",p=" RFC_PROOF), -1);
	cr_assert_str_eq(st.message, "SCRAM channel binding check failed");
}

/*
 * A whole SCRAM-SHA-256-PLUS exchange, proof and signature computed by
 * python3 (hashlib, hmac) for the RFC's password, salt and nonces with the
 * channel-binding data bytes (i * 7 + 1) for i = 0..31:
 *   c = b64(b'p=tls-server-end-point,,' + cb); AuthMessage = "n=,r=<cnonce>" ","
 *   server-first "," "c=<c>,r=<nonce>"; proof = ClientKey XOR HMAC(StoredKey, AuthMessage)
 */
#define PLUS_C "cD10bHMtc2VydmVyLWVuZC1wb2ludCwsAQgPFh0kKzI5QEdOVVxjanF4f4aNlJuiqbC3vsXM09o="
#define PLUS_PROOF "sIlmAh67IBL18mPF/vzzetFG1NMKx5imed4rfA9HYmg="
#define PLUS_SERVER_FINAL "v=nEunldFJXErZPc4Xd/u0TFyybuA0UdZ7wqkZCbjkBzE="

Test(scram, plus_exchange_with_an_independent_client)
{
	struct scram_state st;
	uint8_t cb[32];

	for (int i = 0; i < 32; i++)
		cb[i] = (uint8_t)(i * 7 + 1);
	rfc_begin(&st, "SCRAM-SHA-256-PLUS", cb, sizeof(cb),
		  "p=tls-server-end-point,,n=,r=" RFC_CLIENT_NONCE);
	cr_assert_str_eq(st.reply, RFC_SERVER_FIRST);
	cr_assert_eq(final(&st, "c=" PLUS_C ",r=" RFC_NONCE ",p=" PLUS_PROOF), 0,
		     "%s: %s", st.message, st.detail);
	cr_assert_str_eq(st.reply, PLUS_SERVER_FINAL);
}

/* libpq's own SCRAM code (PQencryptPasswordConn) makes a verifier with a random salt. */
Test(scram, libpq_verifier_matches_our_derivation)
{
	PGconn *conn = PQconnectStart("host=/nonexistent dbname=x");
	struct scram_secret parsed, derived;
	char *verifier;

	cr_assert_not_null(conn);
	verifier = PQencryptPasswordConn(conn, "pencil", "user", "scram-sha-256");
	cr_assert_not_null(verifier, "%s", PQerrorMessage(conn));
	cr_assert_eq(scram_secret_parse(verifier, &parsed), 0, "%s", verifier);
	cr_assert_eq(scram_secret_from_password("pencil", parsed.salt, parsed.salt_len,
						parsed.iterations, &derived), 0);
	cr_assert_eq(memcmp(parsed.stored_key, derived.stored_key, SCRAM_KEY_LEN), 0);
	cr_assert_eq(memcmp(parsed.server_key, derived.server_key, SCRAM_KEY_LEN), 0);
	PQfreemem(verifier);
	PQfinish(conn);
}

Test(scram, base64_is_strict)
{
	uint8_t out[16];

	cr_assert_eq(scram_b64_decode("biws", 4, out, sizeof(out)), 3);
	cr_assert_eq(memcmp(out, "n,,", 3), 0);
	cr_assert_eq(scram_b64_decode("YQ==", 4, out, sizeof(out)), 1);
	cr_assert_eq(scram_b64_decode("YWI=", 4, out, sizeof(out)), 2);
	cr_assert_eq(scram_b64_decode("", 0, out, sizeof(out)), 0);
	cr_assert_eq(scram_b64_decode("YQ=", 3, out, sizeof(out)), -1);
	cr_assert_eq(scram_b64_decode("Y===", 4, out, sizeof(out)), -1);
	cr_assert_eq(scram_b64_decode("====", 4, out, sizeof(out)), -1);
	cr_assert_eq(scram_b64_decode("Y=Q=", 4, out, sizeof(out)), -1);
	cr_assert_eq(scram_b64_decode("bi s", 4, out, sizeof(out)), -1);
	cr_assert_eq(scram_b64_decode("YWJj", 4, out, 2), -1);  /* does not fit */
}

/* ---- md5 */

/* python3: 'md5' + md5(b'penciluser').hexdigest() */
#define MD5_SECRET "md520c46e3762c864548e296b33c3406aa9"
/* python3: 'md5' + md5(md5(b'penciluser').hexdigest().encode() + bytes([1, 2, 3, 4])).hexdigest() */
#define MD5_RESPONSE "md54376eb6913b38f9aaff38dc7cf19ca76"

Test(md5, secret_and_check)
{
	static const uint8_t salt[4] = { 1, 2, 3, 4 }, other_salt[4] = { 1, 2, 3, 5 };
	char secret[MD5_SECRET_LEN + 1];

	cr_assert_eq(md5_secret("pencil", "user", secret), 0);
	cr_assert_str_eq(secret, MD5_SECRET);
	cr_assert(md5_secret_valid(MD5_SECRET));
	/* from the md5 secret and from the plain password */
	cr_assert_eq(md5_check(MD5_SECRET, "user", salt, MD5_RESPONSE, MD5_SECRET_LEN), 1);
	cr_assert_eq(md5_check("pencil", "user", salt, MD5_RESPONSE, MD5_SECRET_LEN), 1);
	cr_assert_eq(md5_check("pencil", "user", other_salt, MD5_RESPONSE, MD5_SECRET_LEN), 0);
	cr_assert_eq(md5_check("pencil", "user2", salt, MD5_RESPONSE, MD5_SECRET_LEN), 0);
	cr_assert_eq(md5_check("pencil2", "user", salt, MD5_RESPONSE, MD5_SECRET_LEN), 0);
	cr_assert_eq(md5_check(MD5_SECRET, "user", salt, MD5_RESPONSE, MD5_SECRET_LEN - 1), 0);
	cr_assert_eq(md5_check(MD5_SECRET, "user", salt, "", 0), 0);
}

/* libpq's own md5 code agrees */
Test(md5, libpq_agrees)
{
	char secret[MD5_SECRET_LEN + 1];
	char *theirs = PQencryptPassword("s3cr\xc3\xa9t", "bob");

	cr_assert_not_null(theirs);
	cr_assert_eq(md5_secret("s3cr\xc3\xa9t", "bob", secret), 0);
	cr_assert_str_eq(secret, theirs);
	PQfreemem(theirs);
}

Test(md5, what_counts_as_an_md5_secret)
{
	cr_assert_not(md5_secret_valid("md520C46E3762C864548E296B33C3406AA9"));  /* PostgreSQL: lowercase */
	cr_assert_not(md5_secret_valid("md520c46e3762c864548e296b33c3406aa"));
	cr_assert_not(md5_secret_valid("md520c46e3762c864548e296b33c3406aa99"));
	cr_assert_not(md5_secret_valid("md5"));
	cr_assert_not(md5_secret_valid("xyz20c46e3762c864548e296b33c3406aa9"));
}
