/*
 * test_authq_cache.c — Criterion tests for pool/authq_cache.c (pure): the
 * binary valuntil, expiry, reading auth_query's answer from a PGresult
 * built by hand (libpq's PQmakeEmptyPGresult/PQsetResultAttrs/PQsetvalue),
 * and the cache (TTL, replacement, the bound, clearing).
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <string.h>

#include "authq_cache.h"

#define OID_NAME 19
#define OID_TEXT 25
#define OID_TIMESTAMP 1114
#define OID_TIMESTAMPTZ 1184

static void be64(int64_t v, char out[8])
{
	for (int i = 0; i < 8; i++)
		out[i] = (char)((uint64_t)v >> (56 - 8 * i));
}

/* ---- valuntil ---- */

Test(authq_valuntil, binary_timestamptz_is_microseconds_since_2000)
{
	char b[8];
	int64_t v;
	char why[128];

	/* 2030-01-01 00:00:00 UTC = 1893456000 unix seconds. */
	int64_t want = (int64_t)(1893456000 - 946684800) * 1000000;
	be64(want, b);
	cr_assert_eq(authq_read_valuntil(OID_TIMESTAMPTZ, b, 8, &v, why, sizeof(why)), 0);
	cr_assert_eq(v, want);
	cr_assert_eq(authq_read_valuntil(OID_TIMESTAMP, b, 8, &v, why, sizeof(why)), 0, "timestamp is taken as UTC");
	be64(-1, b);
	cr_assert_eq(authq_read_valuntil(OID_TIMESTAMPTZ, b, 8, &v, why, sizeof(why)), 0);
	cr_assert_eq(v, -1, "a microsecond before 2000 reads negative");
}

Test(authq_valuntil, infinity_never_expires_and_minus_infinity_always_has)
{
	char b[8];
	int64_t v;
	char why[128];

	be64(INT64_MAX, b);
	cr_assert_eq(authq_read_valuntil(OID_TIMESTAMPTZ, b, 8, &v, why, sizeof(why)), 0);
	cr_assert_eq(v, AUTHQ_NEVER);
	cr_assert_not(authq_expired(v, 4e9));
	be64(INT64_MIN, b);
	cr_assert_eq(authq_read_valuntil(OID_TIMESTAMPTZ, b, 8, &v, why, sizeof(why)), 0);
	cr_assert(authq_expired(v, 0));
}

Test(authq_valuntil, other_types_and_lengths_are_refused)
{
	char b[8] = { 0 };
	int64_t v;
	char why[128];

	cr_assert_eq(authq_read_valuntil(OID_TEXT, b, 8, &v, why, sizeof(why)), -1);
	cr_assert(strstr(why, "must be a timestamp"), "%s", why);
	cr_assert_eq(authq_read_valuntil(OID_TIMESTAMPTZ, b, 4, &v, why, sizeof(why)), -1);
}

Test(authq_valuntil, expiry_compares_with_now)
{
	double now = 1893456000.0;   /* unix seconds */
	int64_t at = (int64_t)((now - AUTHQ_PG_EPOCH) * 1e6);

	cr_assert(authq_expired(at - 1, now), "a microsecond ago");
	cr_assert_not(authq_expired(at + 1000000, now), "a second from now");
}

/* ---- the answer ---- */

static PGresult *result(int ncols, Oid third)
{
	PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
	PGresAttDesc cols[4] = {
		{ .name = "usename", .typid = OID_NAME, .format = 1, .typlen = 64, .atttypmod = -1 },
		{ .name = "passwd", .typid = OID_TEXT, .format = 1, .typlen = -1, .atttypmod = -1 },
		{ .name = "valuntil", .typid = third, .format = 1, .typlen = 8, .atttypmod = -1 },
		{ .name = "extra", .typid = OID_TEXT, .format = 1, .typlen = -1, .atttypmod = -1 },
	};

	cr_assert_not_null(res);
	cr_assert(PQsetResultAttrs(res, ncols, cols));
	return res;
}

static void set(PGresult *res, int row, int col, const char *value, int len)
{
	cr_assert(PQsetvalue(res, row, col, (char *)value, value ? len : -1));
}

Test(authq_result, one_row_with_secret_and_valuntil)
{
	PGresult *res = result(3, OID_TIMESTAMPTZ);
	struct authq_row r;
	char why[128], b[8];

	be64(12345, b);
	set(res, 0, 0, "bob", 3);
	set(res, 0, 1, "md5abc", 6);
	set(res, 0, 2, b, 8);
	cr_assert_eq(authq_read_result(res, &r, why, sizeof(why)), 0, "%s", why);
	cr_assert(r.found);
	cr_assert_str_eq(r.secret, "md5abc");
	cr_assert_eq(r.valuntil, 12345);
	free(r.secret);
	PQclear(res);
}

Test(authq_result, null_valuntil_and_two_columns_never_expire)
{
	PGresult *res = result(3, OID_TIMESTAMPTZ), *two = result(2, 0);
	struct authq_row r;
	char why[128];

	set(res, 0, 0, "bob", 3);
	set(res, 0, 1, "pw", 2);
	set(res, 0, 2, NULL, 0);
	cr_assert_eq(authq_read_result(res, &r, why, sizeof(why)), 0);
	cr_assert_eq(r.valuntil, AUTHQ_NEVER);
	free(r.secret);
	set(two, 0, 0, "bob", 3);
	set(two, 0, 1, "pw", 2);
	cr_assert_eq(authq_read_result(two, &r, why, sizeof(why)), 0);
	cr_assert_eq(r.valuntil, AUTHQ_NEVER);
	cr_assert_str_eq(r.secret, "pw");
	free(r.secret);
	PQclear(res);
	PQclear(two);
}

Test(authq_result, no_row_is_not_found_and_a_null_password_has_no_secret)
{
	PGresult *none = result(3, OID_TIMESTAMPTZ), *nopw = result(3, OID_TIMESTAMPTZ);
	struct authq_row r;
	char why[128];

	cr_assert_eq(authq_read_result(none, &r, why, sizeof(why)), 0);
	cr_assert_not(r.found);
	cr_assert_null(r.secret);
	set(nopw, 0, 0, "bob", 3);
	set(nopw, 0, 1, NULL, 0);
	set(nopw, 0, 2, NULL, 0);
	cr_assert_eq(authq_read_result(nopw, &r, why, sizeof(why)), 0);
	cr_assert(r.found);
	cr_assert_null(r.secret);
	PQclear(none);
	PQclear(nopw);
}

Test(authq_result, wrong_shapes_are_errors)
{
	PGresult *one = result(1, 0), *four = result(4, OID_TIMESTAMPTZ), *two_rows = result(2, 0);
	PGresult *text_valuntil = result(3, OID_TEXT), *nul = result(2, 0);
	PGresult *cmd = PQmakeEmptyPGresult(NULL, PGRES_COMMAND_OK);
	struct authq_row r;
	char why[128];

	cr_assert_eq(authq_read_result(one, &r, why, sizeof(why)), -1);
	cr_assert(strstr(why, "2 or 3 columns"), "%s", why);
	cr_assert_eq(authq_read_result(four, &r, why, sizeof(why)), -1);
	set(two_rows, 0, 0, "a", 1);
	set(two_rows, 1, 0, "a", 1);
	cr_assert_eq(authq_read_result(two_rows, &r, why, sizeof(why)), -1);
	cr_assert(strstr(why, "2 rows"), "%s", why);
	set(text_valuntil, 0, 0, "a", 1);
	set(text_valuntil, 0, 1, "pw", 2);
	set(text_valuntil, 0, 2, "infinity", 8);
	cr_assert_eq(authq_read_result(text_valuntil, &r, why, sizeof(why)), -1);
	cr_assert(strstr(why, "timestamp"), "%s", why);
	set(nul, 0, 0, "a", 1);
	set(nul, 0, 1, "p\0w", 3);
	cr_assert_eq(authq_read_result(nul, &r, why, sizeof(why)), -1);
	cr_assert(strstr(why, "NUL"), "%s", why);
	cr_assert_eq(authq_read_result(cmd, &r, why, sizeof(why)), -1);
	cr_assert_eq(authq_read_result(NULL, &r, why, sizeof(why)), -1);
	PQclear(one);
	PQclear(four);
	PQclear(two_rows);
	PQclear(text_valuntil);
	PQclear(nul);
	PQclear(cmd);
}

/* ---- the cache ---- */

Test(authq_cache, an_entry_lives_for_its_ttl)
{
	struct authq_cache c = { 0 };

	cr_assert_eq(authq_cache_put(&c, "app", "bob", "s1", 7, 100.0), 0);
	const struct authq_entry *e = authq_cache_get(&c, "app", "bob", 105.0, 10);
	cr_assert_not_null(e);
	cr_assert_str_eq(e->secret, "s1");
	cr_assert_eq(e->valuntil, 7);
	cr_assert_null(authq_cache_get(&c, "other", "bob", 105.0, 10), "per database");
	cr_assert_null(authq_cache_get(&c, "app", "carol", 105.0, 10));
	cr_assert_null(authq_cache_get(&c, "app", "bob", 110.0, 10), "stale at the TTL");
	cr_assert_eq(c.count, 0, "a stale entry is dropped");
	authq_cache_clear(&c);
}

Test(authq_cache, a_clock_going_back_makes_an_entry_stale)
{
	struct authq_cache c = { 0 };

	cr_assert_eq(authq_cache_put(&c, "app", "bob", "s1", 7, 100.0), 0);
	cr_assert_null(authq_cache_get(&c, "app", "bob", 50.0, 10));
	authq_cache_clear(&c);
}

Test(authq_cache, a_put_replaces_and_clear_empties)
{
	struct authq_cache c = { 0 };

	cr_assert_eq(authq_cache_put(&c, "app", "bob", "s1", 7, 100.0), 0);
	cr_assert_eq(authq_cache_put(&c, "app", "bob", "s2", 8, 101.0), 0);
	cr_assert_eq(c.count, 1);
	cr_assert_str_eq(authq_cache_get(&c, "app", "bob", 101.0, 10)->secret, "s2");
	authq_cache_clear(&c);
	cr_assert_eq(c.count, 0);
	cr_assert_null(authq_cache_get(&c, "app", "bob", 101.0, 10));
}

Test(authq_cache, it_is_bounded_and_the_oldest_goes)
{
	struct authq_cache c = { 0 };
	char user[32];

	for (int i = 0; i <= AUTHQ_CACHE_MAX; i++) {
		snprintf(user, sizeof(user), "u%d", i);
		cr_assert_eq(authq_cache_put(&c, "app", user, "s", AUTHQ_NEVER, 1000.0 + i), 0);
	}
	cr_assert_eq(c.count, AUTHQ_CACHE_MAX);
	cr_assert_null(authq_cache_get(&c, "app", "u0", 1000.0 + AUTHQ_CACHE_MAX, 1e9), "the oldest went");
	cr_assert_not_null(authq_cache_get(&c, "app", "u1", 1000.0 + AUTHQ_CACHE_MAX, 1e9));
	authq_cache_clear(&c);
}
