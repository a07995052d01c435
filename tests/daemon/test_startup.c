/*
 * test_startup.c — Criterion tests for daemon/startup.c.
 *
 * Packets are built byte by byte; refusals compare the SQLSTATE and the
 * complete message text. Every parse is followed by startup_free(), and
 * built with -fsanitize=address each test ends with a leak check, so
 * anything startup_free() does not release fails the test.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "params.h"
#include "proto.h"
#include "startup.h"
#include "../lib/alloc_fail.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

/*
 * Under AddressSanitizer a test that leaks crashes, so it counts as failed
 * (an assertion in .fini would not, and the report at exit changes nothing).
 */
static void leak_check(void)
{
#if defined(__SANITIZE_ADDRESS__)
	if (__lsan_do_recoverable_leak_check())
		abort();
#endif
}

TestSuite(startup, .fini = leak_check);


struct packet {
	uint8_t data[STARTUP_MAX_LEN + 64];
	size_t len;
};

static void put_be32(struct packet *p, uint32_t v)
{
	p->data[p->len++] = (uint8_t)(v >> 24);
	p->data[p->len++] = (uint8_t)(v >> 16);
	p->data[p->len++] = (uint8_t)(v >> 8);
	p->data[p->len++] = (uint8_t)v;
}

static void put_str(struct packet *p, const char *s)
{
	size_t n = strlen(s) + 1;

	cr_assert_leq(p->len + n, sizeof(p->data));
	memcpy(p->data + p->len, s, n);
	p->len += n;
}

/* Length placeholder and version. */
static void begin(struct packet *p, uint32_t version)
{
	p->len = 0;
	put_be32(p, 0);
	put_be32(p, version);
}

static void set_len(struct packet *p, uint32_t len)
{
	p->data[0] = (uint8_t)(len >> 24);
	p->data[1] = (uint8_t)(len >> 16);
	p->data[2] = (uint8_t)(len >> 8);
	p->data[3] = (uint8_t)len;
}

/* Write the real length into the header. */
static void finish(struct packet *p)
{
	set_len(p, (uint32_t)p->len);
}

/* A v3.minor StartupMessage from NULL-terminated name, value pairs. */
static void v3(struct packet *p, uint32_t minor, const char *const *pairs)
{
	begin(p, PROTO_V3 | minor);
	for (; *pairs; pairs += 2) {
		put_str(p, pairs[0]);
		put_str(p, pairs[1]);
	}
	put_str(p, "");
	finish(p);
}

static void parse(const struct packet *p, struct startup *s)
{
	startup_parse(p->data, p->len, s);
}

static void assert_refused(struct startup *s, const char *sqlstate, const char *message)
{
	cr_assert_eq(s->kind, STARTUP_BAD, "kind %d, expected STARTUP_BAD", s->kind);
	cr_assert_not_null(s->sqlstate);
	cr_assert_str_eq(s->sqlstate, sqlstate);
	cr_assert_str_eq(s->message, message);
}

static const char *const bad_layout = "invalid startup packet layout: expected terminator as last byte";
static const char *const bad_option = "invalid startup parameter or option";
static const char *const bad_length = "invalid length of startup packet";

/* ---- requests that are not StartupMessages ---- */

Test(startup, ssl_request)
{
	struct packet p;
	struct startup s;

	begin(&p, PROTO_SSL_REQUEST);
	finish(&p);
	cr_assert_eq(p.len, 8);
	parse(&p, &s);
	cr_assert_eq(s.kind, STARTUP_SSL);
	cr_assert_eq(s.packet_len, 8);
	cr_assert_null(s.user);
	startup_free(&s);
}

Test(startup, gssenc_request)
{
	struct packet p;
	struct startup s;

	begin(&p, PROTO_GSSENC_REQUEST);
	finish(&p);
	parse(&p, &s);
	cr_assert_eq(s.kind, STARTUP_GSSENC);
	cr_assert_eq(s.packet_len, 8);
	startup_free(&s);
}

Test(startup, cancel_request)
{
	struct packet p;
	struct startup s;

	begin(&p, PROTO_CANCEL_REQUEST);
	put_be32(&p, 0x00012345);
	put_be32(&p, 0xdeadbeef);
	finish(&p);
	cr_assert_eq(p.len, 16);
	parse(&p, &s);
	cr_assert_eq(s.kind, STARTUP_CANCEL);
	cr_assert_eq(s.packet_len, 16);
	cr_assert_eq(s.cancel_pid, 0x12345u);
	cr_assert_eq(s.cancel_key, 0xdeadbeefu);
	startup_free(&s);
}

Test(startup, ssl_request_with_wrong_length_is_refused)
{
	struct packet p;
	struct startup s;

	begin(&p, PROTO_SSL_REQUEST);
	put_be32(&p, 0);
	finish(&p);
	parse(&p, &s);
	assert_refused(&s, "0A000", "unsupported frontend protocol 1234.5679: server supports 3.0 to 3.0");
	startup_free(&s);
}

Test(startup, cancel_request_with_wrong_length_is_refused)
{
	struct packet p;
	struct startup s;

	begin(&p, PROTO_CANCEL_REQUEST);
	put_be32(&p, 1);
	finish(&p);
	parse(&p, &s);
	assert_refused(&s, "0A000", "unsupported frontend protocol 1234.5678: server supports 3.0 to 3.0");
	startup_free(&s);
}

/* ---- StartupMessage ---- */

Test(startup, v3_user_database_application_name)
{
	static const char *const pairs[] = {
		"user", "alice", "database", "shop", "application_name", "psql", NULL,
	};
	struct packet p;
	struct startup s;

	v3(&p, 0, pairs);
	parse(&p, &s);
	cr_assert_eq(s.kind, STARTUP_V3);
	cr_assert_eq(s.packet_len, p.len);
	cr_assert_eq(s.minor, 0);
	cr_assert_str_eq(s.user, "alice");
	cr_assert_str_eq(s.database, "shop");
	cr_assert_str_eq(params_get(&s.params, "application_name"), "psql");
	/* user and database are not session settings */
	cr_assert_null(params_get(&s.params, "user"));
	cr_assert_null(params_get(&s.params, "database"));
	const char *first = params_first(&s.params);
	cr_assert_not_null(first);
	cr_assert_null(params_next(&s.params, first), "only application_name is a setting");
	cr_assert_eq(s.pq_option_count, 0);
	startup_free(&s);
	cr_assert_null(s.user);
	cr_assert_null(s.database);
	cr_assert_null(params_first(&s.params));
}

Test(startup, settings_are_kept_sorted_with_lower_case_names)
{
	static const char *const pairs[] = {
		"user", "bob", "client_encoding", "UTF8", "DateStyle", "ISO, MDY",
		"application_name", "", NULL,
	};
	struct packet p;
	struct startup s;

	v3(&p, 0, pairs);
	parse(&p, &s);
	cr_assert_eq(s.kind, STARTUP_V3);
	const char *n = params_first(&s.params);
	cr_assert_str_eq(n, "application_name");
	cr_assert_str_eq(params_value(n), "");
	n = params_next(&s.params, n);
	cr_assert_str_eq(n, "client_encoding");
	cr_assert_str_eq(params_value(n), "UTF8");
	n = params_next(&s.params, n);
	cr_assert_str_eq(n, "datestyle");
	cr_assert_str_eq(params_value(n), "ISO, MDY");
	cr_assert_null(params_next(&s.params, n));
	startup_free(&s);
}

Test(startup, database_defaults_to_user)
{
	static const char *const pairs[] = { "user", "carol", NULL };
	struct packet p;
	struct startup s;

	v3(&p, 0, pairs);
	parse(&p, &s);
	cr_assert_eq(s.kind, STARTUP_V3);
	cr_assert_str_eq(s.user, "carol");
	cr_assert_str_eq(s.database, "carol");
	cr_assert_neq(s.database, s.user, "database must be its own copy");
	startup_free(&s);
}

Test(startup, empty_database_defaults_to_user)
{
	static const char *const pairs[] = { "database", "", "user", "dave", NULL };
	struct packet p;
	struct startup s;

	v3(&p, 0, pairs);
	parse(&p, &s);
	cr_assert_eq(s.kind, STARTUP_V3);
	cr_assert_str_eq(s.database, "dave");
	startup_free(&s);
}

Test(startup, missing_user_is_refused)
{
	static const char *const pairs[] = { "database", "shop", "application_name", "x", NULL };
	struct packet p;
	struct startup s;

	v3(&p, 0, pairs);
	parse(&p, &s);
	assert_refused(&s, "28000", "no PostgreSQL user name specified in startup packet");
	startup_free(&s);
}

Test(startup, empty_user_is_refused)
{
	static const char *const pairs[] = { "user", "", NULL };
	struct packet p;
	struct startup s;

	v3(&p, 0, pairs);
	parse(&p, &s);
	assert_refused(&s, "28000", "no PostgreSQL user name specified in startup packet");
	startup_free(&s);
}

Test(startup, protocol_2_is_refused)
{
	struct packet p;
	struct startup s;

	begin(&p, 0x00020000);
	put_str(&p, "alice");
	put_str(&p, "shop");
	finish(&p);
	parse(&p, &s);
	assert_refused(&s, "0A000", "unsupported frontend protocol 2.0: server supports 3.0 to 3.0");
	cr_assert(s.old_protocol, "a protocol 2 client is answered in protocol 3's format");
	startup_free(&s);
}

Test(startup, protocol_4_is_refused)
{
	static const char *const pairs[] = { "user", "alice", NULL };
	struct packet p;
	struct startup s;

	v3(&p, 0, pairs);
	p.data[4] = 0;
	p.data[5] = 4;
	p.data[7] = 2;
	parse(&p, &s);
	assert_refused(&s, "0A000", "unsupported frontend protocol 4.2: server supports 3.0 to 3.0");
	cr_assert_not(s.old_protocol);
	startup_free(&s);
}

/* ---- lengths ---- */

Test(startup, length_below_8_is_refused)
{
	static const uint32_t lens[] = { 0, 1, 4, 7 };

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct packet p;
		struct startup s;
		begin(&p, PROTO_V3);
		put_str(&p, "user");
		set_len(&p, lens[i]);
		parse(&p, &s);
		assert_refused(&s, "08P01", bad_length);
		startup_free(&s);
	}
}

Test(startup, length_above_the_limit_is_refused_at_once)
{
	static const uint32_t lens[] = { STARTUP_MAX_LEN + 1, 0x7fffffff, 0xffffffff };

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct packet p;
		struct startup s;
		begin(&p, PROTO_V3);
		set_len(&p, lens[i]);
		/* Only the length is there: no waiting for bytes that never fit. */
		startup_parse(p.data, 4, &s);
		assert_refused(&s, "08P01", bad_length);
		startup_free(&s);
		startup_parse(p.data, 8, &s);
		assert_refused(&s, "08P01", bad_length);
		startup_free(&s);
	}
}

Test(startup, length_at_the_limit_is_accepted)
{
	struct packet p;
	struct startup s;

	begin(&p, PROTO_V3);
	put_str(&p, "user");
	put_str(&p, "alice");
	put_str(&p, "application_name");
	size_t pad = STARTUP_MAX_LEN - p.len - 2;
	memset(p.data + p.len, 'a', pad);
	p.len += pad;
	p.data[p.len++] = 0;
	p.data[p.len++] = 0;
	finish(&p);
	cr_assert_eq(p.len, STARTUP_MAX_LEN);
	startup_parse(p.data, p.len - 1, &s);
	cr_assert_eq(s.kind, STARTUP_INCOMPLETE);
	startup_free(&s);
	parse(&p, &s);
	cr_assert_eq(s.kind, STARTUP_V3);
	cr_assert_eq(strlen(params_get(&s.params, "application_name")), pad);
	startup_free(&s);
}

Test(startup, length_8_startup_message_has_no_terminator)
{
	struct packet p;
	struct startup s;

	begin(&p, PROTO_V3);
	finish(&p);
	parse(&p, &s);
	assert_refused(&s, "08P01", bad_layout);
	startup_free(&s);
}

Test(startup, every_prefix_is_incomplete)
{
	static const char *const pairs[] = { "user", "alice", "database", "shop", NULL };
	struct packet p;
	struct startup s;

	v3(&p, 0, pairs);
	for (size_t n = 0; n < p.len; n++) {
		startup_parse(p.data, n, &s);
		cr_assert_eq(s.kind, STARTUP_INCOMPLETE, "prefix of %zu bytes: kind %d", n, s.kind);
		cr_assert_null(s.user);
		startup_free(&s);
	}
	parse(&p, &s);
	cr_assert_eq(s.kind, STARTUP_V3);
	startup_free(&s);
}

Test(startup, ssl_request_prefixes_are_incomplete)
{
	struct packet p;
	struct startup s;

	begin(&p, PROTO_SSL_REQUEST);
	finish(&p);
	for (size_t n = 0; n < 8; n++) {
		startup_parse(p.data, n, &s);
		cr_assert_eq(s.kind, STARTUP_INCOMPLETE, "prefix of %zu bytes", n);
		startup_free(&s);
	}
}

Test(startup, bytes_after_the_packet_are_not_part_of_it)
{
	static const char *const pairs[] = { "user", "alice", NULL };
	struct packet p;
	struct startup s;

	v3(&p, 0, pairs);
	size_t len = p.len;
	/* the client already sent its next bytes */
	memcpy(p.data + p.len, "Q\0\0\0\x0d" "SELECT 1", 13);
	p.len += 13;
	parse(&p, &s);
	cr_assert_eq(s.kind, STARTUP_V3);
	cr_assert_eq(s.packet_len, len);
	startup_free(&s);
}

/* ---- layout ---- */

Test(startup, missing_terminator_is_refused)
{
	struct packet p;
	struct startup s;

	begin(&p, PROTO_V3);
	put_str(&p, "user");
	put_str(&p, "alice");
	finish(&p);
	parse(&p, &s);
	assert_refused(&s, "08P01", bad_layout);
	startup_free(&s);
}

Test(startup, name_without_value_is_refused)
{
	struct packet p;
	struct startup s;

	begin(&p, PROTO_V3);
	put_str(&p, "user");
	put_str(&p, "alice");
	put_str(&p, "database");
	finish(&p);
	parse(&p, &s);
	assert_refused(&s, "08P01", bad_layout);
	startup_free(&s);
}

Test(startup, unterminated_value_is_refused)
{
	struct packet p;
	struct startup s;

	begin(&p, PROTO_V3);
	put_str(&p, "user");
	memcpy(p.data + p.len, "alice", 5);
	p.len += 5;
	finish(&p);
	parse(&p, &s);
	assert_refused(&s, "08P01", bad_layout);
	startup_free(&s);
}

Test(startup, bytes_after_the_terminator_are_refused)
{
	struct packet p;
	struct startup s;

	begin(&p, PROTO_V3);
	put_str(&p, "user");
	put_str(&p, "alice");
	put_str(&p, "");
	put_str(&p, "junk");
	finish(&p);
	parse(&p, &s);
	assert_refused(&s, "08P01", bad_layout);
	startup_free(&s);
}

Test(startup, invalid_parameter_name_is_refused)
{
	static const char *const names[] = { "bad name", "semi;colon", "quo\"te", "dash-ed" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		const char *pairs[] = { "user", "alice", names[i], "1", NULL };
		struct packet p;
		struct startup s;
		v3(&p, 0, pairs);
		parse(&p, &s);
		assert_refused(&s, "08P01", bad_option);
		startup_free(&s);
	}
}

Test(startup, parameter_name_too_long_is_refused)
{
	char name[65];
	struct packet p;
	struct startup s;

	memset(name, 'a', 64);
	name[64] = '\0';
	const char *pairs[] = { "user", "alice", name, "1", NULL };
	v3(&p, 0, pairs);
	parse(&p, &s);
	assert_refused(&s, "08P01", bad_option);
	startup_free(&s);

	name[63] = '\0';
	v3(&p, 0, pairs);
	parse(&p, &s);
	cr_assert_eq(s.kind, STARTUP_V3, "a 63-byte name is valid");
	cr_assert_str_eq(params_get(&s.params, name), "1");
	startup_free(&s);
}

/* ---- protocol 3.x options ---- */

Test(startup, minor_version_and_pq_options)
{
	static const char *const pairs[] = {
		"user", "alice", "_pq_.foo", "on", "database", "db", NULL,
	};
	struct packet p;
	struct startup s;

	v3(&p, 1, pairs);
	parse(&p, &s);
	cr_assert_eq(s.kind, STARTUP_V3);
	cr_assert_eq(s.minor, 1);
	cr_assert_eq(s.pq_option_count, 1);
	cr_assert_str_eq(s.pq_options[0], "_pq_.foo");
	cr_assert_null(params_get(&s.params, "_pq_.foo"), "a _pq_ option is not a setting");
	cr_assert_str_eq(s.database, "db");
	startup_free(&s);
	cr_assert_eq(s.pq_option_count, 0);
}

Test(startup, pq_options_up_to_the_limit)
{
	char names[STARTUP_MAX_PQ_OPTIONS + 1][24];
	const char *pairs[2 * (STARTUP_MAX_PQ_OPTIONS + 2) + 1];
	struct packet p;
	struct startup s;
	int k = 0;

	pairs[k++] = "user";
	pairs[k++] = "alice";
	for (int i = 0; i < STARTUP_MAX_PQ_OPTIONS; i++) {
		snprintf(names[i], sizeof(names[i]), "_pq_.opt%d", i);
		pairs[k++] = names[i];
		pairs[k++] = "1";
	}
	pairs[k] = NULL;
	v3(&p, 2, pairs);
	parse(&p, &s);
	cr_assert_eq(s.kind, STARTUP_V3);
	cr_assert_eq(s.minor, 2);
	cr_assert_eq(s.pq_option_count, STARTUP_MAX_PQ_OPTIONS);
	for (int i = 0; i < STARTUP_MAX_PQ_OPTIONS; i++)
		cr_assert_str_eq(s.pq_options[i], names[i]);
	startup_free(&s);

	/* One more than the table holds is refused, and nothing leaks. */
	snprintf(names[STARTUP_MAX_PQ_OPTIONS], sizeof(names[0]), "_pq_.extra");
	pairs[k++] = names[STARTUP_MAX_PQ_OPTIONS];
	pairs[k++] = "1";
	pairs[k] = NULL;
	v3(&p, 2, pairs);
	parse(&p, &s);
	assert_refused(&s, "08P01", bad_option);
	startup_free(&s);
}

/* ---- options: backend command-line switches ---- */

Test(startup, options_become_settings)
{
	static const char *const pairs[] = {
		"user", "alice",
		"options", "-c search_path=a\\ b -c work_mem=64MB --statement-timeout=5s",
		NULL,
	};
	struct packet p;
	struct startup s;

	v3(&p, 0, pairs);
	parse(&p, &s);
	cr_assert_eq(s.kind, STARTUP_V3, "refused: %s", s.message);
	cr_assert_str_eq(params_get(&s.params, "search_path"), "a b");
	cr_assert_str_eq(params_get(&s.params, "work_mem"), "64MB");
	cr_assert_str_eq(params_get(&s.params, "statement_timeout"), "5s");
	cr_assert_null(params_get(&s.params, "options"), "options itself is not a setting");
	cr_assert_null(params_get(&s.params, "statement-timeout"));
	/* exactly three settings, in sorted order */
	const char *n = params_first(&s.params);
	cr_assert_str_eq(n, "search_path");
	n = params_next(&s.params, n);
	cr_assert_str_eq(n, "statement_timeout");
	n = params_next(&s.params, n);
	cr_assert_str_eq(n, "work_mem");
	cr_assert_null(params_next(&s.params, n));
	startup_free(&s);
}

Test(startup, options_forms_and_escapes)
{
	static const char *const pairs[] = {
		"user", "alice",
		"options", "  -cDateStyle=ISO\t--Lock-Timeout=1s\n-c x.y=\\\\path\\\\\\ with\\ spaces -c e=  ",
		NULL,
	};
	struct packet p;
	struct startup s;

	v3(&p, 0, pairs);
	parse(&p, &s);
	cr_assert_eq(s.kind, STARTUP_V3, "refused: %s", s.message);
	cr_assert_str_eq(params_get(&s.params, "datestyle"), "ISO");
	cr_assert_str_eq(params_get(&s.params, "lock_timeout"), "1s");
	cr_assert_str_eq(params_get(&s.params, "x.y"), "\\path\\ with spaces");
	cr_assert_str_eq(params_get(&s.params, "e"), "");
	startup_free(&s);
}

Test(startup, options_value_with_equals_and_dashes_kept)
{
	static const char *const pairs[] = {
		"user", "alice", "options", "-c application_name=a-b=c", NULL,
	};
	struct packet p;
	struct startup s;

	v3(&p, 0, pairs);
	parse(&p, &s);
	cr_assert_eq(s.kind, STARTUP_V3);
	cr_assert_str_eq(params_get(&s.params, "application_name"), "a-b=c");
	startup_free(&s);
}

/* The sequence as name/value pairs, in order. */
static void assert_sequence(const struct startup *s, const char *const *want)
{
	const char *n = params_first(&s->sequence);

	for (; *want; want += 2, n = params_next(&s->sequence, n)) {
		cr_assert_not_null(n, "sequence ends before %s", want[0]);
		cr_assert_str_eq(n, want[0]);
		cr_assert_str_eq(params_value(n), want[1]);
	}
	cr_assert_null(n, "sequence has more than expected: %s", n);
}

/* PostgreSQL applies options first, then the keys: a key wins wherever it stands. */
Test(startup, a_key_wins_over_options_before_or_after_it)
{
	static const char *const after[] = {
		"user", "alice", "options", "-c TimeZone=UTC -c DateStyle=SQL", "TimeZone", "Asia/Tokyo", NULL,
	};
	static const char *const before[] = {
		"user", "alice", "TimeZone", "Asia/Tokyo", "options", "-c TimeZone=UTC -c DateStyle=SQL", NULL,
	};
	static const char *const order[] = {
		"TimeZone", "UTC", "DateStyle", "SQL", "TimeZone", "Asia/Tokyo", NULL,
	};
	const char *const *cases[] = { after, before };

	for (size_t i = 0; i < 2; i++) {
		struct packet p;
		struct startup s;
		v3(&p, 0, cases[i]);
		parse(&p, &s);
		cr_assert_eq(s.kind, STARTUP_V3);
		cr_assert_str_eq(params_get(&s.params, "timezone"), "Asia/Tokyo", "case %zu", i);
		cr_assert_str_eq(params_get(&s.params, "datestyle"), "SQL");
		assert_sequence(&s, order);
		startup_free(&s);
	}
}

Test(startup, a_later_key_or_option_wins_and_names_keep_their_case_in_the_sequence)
{
	static const char *const pairs[] = {
		"user", "alice", "options", "-c work_mem=1MB -c work_mem=2MB",
		"TimeZone", "UTC", "timezone", "Asia/Tokyo", NULL,
	};
	static const char *const order[] = {
		"work_mem", "1MB", "work_mem", "2MB", "TimeZone", "UTC", "timezone", "Asia/Tokyo", NULL,
	};
	struct packet p;
	struct startup s;

	v3(&p, 0, pairs);
	parse(&p, &s);
	cr_assert_eq(s.kind, STARTUP_V3);
	cr_assert_str_eq(params_get(&s.params, "work_mem"), "2MB");
	cr_assert_str_eq(params_get(&s.params, "timezone"), "Asia/Tokyo");
	assert_sequence(&s, order);
	startup_free(&s);
}

/* Only the last "options" counts, as in PostgreSQL: an earlier one is not even parsed. */
Test(startup, only_the_last_options_key_applies)
{
	static const char *const pairs[] = {
		"user", "alice", "options", "-c TimeZone=UTC garbage", "options", "-c DateStyle=SQL", NULL,
	};
	static const char *const order[] = { "DateStyle", "SQL", NULL };
	struct packet p;
	struct startup s;

	v3(&p, 0, pairs);
	parse(&p, &s);
	cr_assert_eq(s.kind, STARTUP_V3, "refused: %s", s.message);
	cr_assert_null(params_get(&s.params, "timezone"));
	assert_sequence(&s, order);
	startup_free(&s);
}

Test(startup, bad_options_are_refused)
{
	static const char *const bad[] = {
		"-c",                       /* switch without argument */
		"-c work_mem",              /* no '=' */
		"work_mem=1MB",             /* not a switch */
		"-f",                       /* unsupported switch */
		"-c bad;name=1",            /* invalid name */
		"--=1",                     /* empty name */
	};

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *pairs[] = { "user", "alice", "options", bad[i], NULL };
		struct packet p;
		struct startup s;
		v3(&p, 0, pairs);
		parse(&p, &s);
		cr_assert_eq(s.kind, STARTUP_BAD, "options \"%s\" accepted", bad[i]);
		cr_assert_str_eq(s.sqlstate, "08P01");
		cr_assert_str_eq(s.message, bad_option);
		startup_free(&s);
	}
}

Test(startup, options_word_too_long_is_refused)
{
	char opt[1100];
	struct packet p;
	struct startup s;

	/* one word: the option buffer holds 1023 bytes and its NUL */
	strcpy(opt, "--application_name=");
	size_t n = strlen(opt);
	memset(opt + n, 'v', 1023 - n);
	opt[1023] = '\0';
	const char *pairs[] = { "user", "alice", "options", opt, NULL };
	v3(&p, 0, pairs);
	parse(&p, &s);
	cr_assert_eq(s.kind, STARTUP_V3);
	cr_assert_eq(strlen(params_get(&s.params, "application_name")), 1023 - n);
	startup_free(&s);
	/* 1024 do not fit */
	opt[1023] = 'v';
	opt[1024] = '\0';
	v3(&p, 0, pairs);
	parse(&p, &s);
	assert_refused(&s, "08P01", bad_option);
	startup_free(&s);
}

Test(startup, empty_options_are_fine)
{
	static const char *const pairs[] = { "user", "alice", "options", "   ", NULL };
	struct packet p;
	struct startup s;

	v3(&p, 0, pairs);
	parse(&p, &s);
	cr_assert_eq(s.kind, STARTUP_V3);
	cr_assert_null(params_first(&s.params));
	startup_free(&s);
}

/* ---- replication ---- */

Test(startup, replication_is_refused)
{
	static const char *const values[] = { "true", "database", "1", "on" };

	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
		const char *pairs[] = { "user", "alice", "replication", values[i], NULL };
		struct packet p;
		struct startup s;
		v3(&p, 0, pairs);
		parse(&p, &s);
		assert_refused(&s, "0A000", "replication connections are not supported by pglease");
		startup_free(&s);
	}
}

/*
 * PostgreSQL treats replication=false (0, off, no) as an ordinary
 * connection; pglease refuses it as a replication connection.
 * Enable once startup.c accepts it.
 */
Test(startup, replication_false_is_an_ordinary_connection)
{
	static const char *const pairs[] = { "user", "alice", "replication", "false", NULL };
	struct packet p;
	struct startup s;

	v3(&p, 0, pairs);
	parse(&p, &s);
	cr_assert_eq(s.kind, STARTUP_V3);
	startup_free(&s);
}

/* ---- repeated names ---- */

/*
 * A repeated name replaces the earlier value; under ASan the leak check
 * proves the earlier copy is freed.
 */
Test(startup, repeated_user_last_one_wins)
{
	static const char *const pairs[] = {
		"user", "first", "database", "db1", "user", "second", "database", "db2", NULL,
	};
	struct packet p;
	struct startup s;

	v3(&p, 0, pairs);
	parse(&p, &s);
	cr_assert_eq(s.kind, STARTUP_V3);
	cr_assert_str_eq(s.user, "second");
	cr_assert_str_eq(s.database, "db2");
	startup_free(&s);
}

/* ---- out of memory ---- */

/* Whichever allocation fails, the packet is refused with 53200 (README, "Out of memory"): never half parsed. */
Test(startup, out_of_memory_at_each_allocation_is_refused_with_53200)
{
#if !ALLOC_FAIL_AVAILABLE
	cr_skip_test("allocation failures are injected by interposing malloc, which AddressSanitizer owns");
#else
	static const char *const pairs[] = {
		"user", "alice", "database", "", "application_name", "app", "_pq_.x", "1",
		"options", "-c work_mem=64kB --search_path=s", "TimeZone", "UTC", NULL,
	};
	struct packet p;
	struct startup s;
	int refused = 0;

	v3(&p, 0, pairs);
	for (int k = 1;; k++) {
		alloc_fail_arm(k);
		parse(&p, &s);
		alloc_fail_disarm();
		if (alloc_count < k)
			break;    /* no k-th allocation: nothing failed */
		assert_refused(&s, "53200", "out of memory");
		startup_free(&s);
		refused++;
	}
	cr_assert_eq(s.kind, STARTUP_V3);
	cr_assert_str_eq(s.database, "alice");
	cr_assert_eq(s.pq_option_count, 1);
	startup_free(&s);
	/* user, database twice, the option, the settings: every kind of allocation failed once. */
	cr_assert_geq(refused, 8, "only %d allocations were failed", refused);
#endif
}
