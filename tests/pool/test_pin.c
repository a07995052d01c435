/*
 * test_pin.c — Criterion tests for pool/pin.c (the lexer's own are in test_sqllex.c).
 *
 * Every SQL text is also fed one byte at a time, and as a Query message cut
 * at every offset, and must be classified the same: the lexer and the
 * protocol walker keep their state between pieces.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pin.h"
#include "sqllex.h"

/* ---- the classifier ---- */

static size_t put_msg(uint8_t *buf, char type, const void *body, size_t len);

/* What a text makes of a client's pin. */
struct verdict {
	const char *why;
	bool lasts, releases;
};

static struct verdict verdict_of(const struct pin *p)
{
	return (struct verdict){ pin_why(p), p->lasts, p->releases };
}

static bool same(struct verdict a, struct verdict b)
{
	return a.why == b.why && a.lasts == b.lasts && a.releases == b.releases;
}

/* The same text as one whole Query message: the pre-filter may skip the lexer, never a pin. */
static struct verdict wire_verdict(const char *sql, bool watch_releases)
{
	static struct pin p;
	static uint8_t wire[4096];
	size_t n = strlen(sql);

	cr_assert(n + 6 < sizeof(wire));
	size_t len = put_msg(wire, 'Q', sql, n + 1);
	pin_init(&p, false);
	p.watch_releases = watch_releases;
	pin_feed_wire(&p, NULL, wire, len);
	return verdict_of(&p);
}

static const char *wire_why(const char *sql)
{
	return wire_verdict(sql, false).why;
}

/* The same answer for every way of cutting the text, and as a message for a pinned client. */
static struct verdict verdict_sql(const char *sql)
{
	static struct pin p;
	struct verdict first = { 0 };
	size_t n = strlen(sql);

	for (size_t piece = 1; piece <= n + 1; piece++) {
		pin_init(&p, false);
		for (size_t i = 0; i < n; i += piece)
			pin_feed_sql(&p, NULL, sql + i, n - i < piece ? n - i : piece);
		pin_end_sql(&p);
		if (piece == 1)
			first = verdict_of(&p);
		cr_assert(same(first, verdict_of(&p)), "sql <%s>: piece %zu gives %s, whole %s", sql, piece,
			  pin_why(&p) ? pin_why(&p) : "nothing", first.why ? first.why : "nothing");
	}
	cr_assert(same(wire_verdict(sql, true), first), "sql <%s>: as one Query message of a pinned client", sql);
	/* An unpinned client's pre-filter may skip releasing words, never a pin. */
	struct verdict unpinned = wire_verdict(sql, false);
	cr_assert(unpinned.why == first.why && unpinned.lasts == first.lasts,
		  "sql <%s>: as one Query message gives %s, lexed %s", sql, unpinned.why ? unpinned.why : "nothing",
		  first.why ? first.why : "nothing");
	return first;
}

/* NULL when nothing pins; else the reason. */
static const char *why_sql(const char *sql)
{
	return verdict_sql(sql).why;
}

static void pins(const char *sql)
{
	cr_assert(why_sql(sql) != NULL, "<%s> should pin", sql);
}

static void does_not_pin(const char *sql)
{
	const char *why = why_sql(sql);
	cr_assert(why == NULL, "<%s> should not pin (%s)", sql, why);
}

/* A probe can tell when the state is gone. */
static void pins_probeable(const char *sql)
{
	struct verdict v = verdict_sql(sql);
	cr_assert(v.why && !v.lasts, "<%s> should pin, probeable (%s, lasts %d)", sql, v.why, v.lasts);
}

/* Until the client leaves. */
static void pins_lasting(const char *sql)
{
	struct verdict v = verdict_sql(sql);
	cr_assert(v.why && v.lasts, "<%s> should pin until the client leaves (%s)", sql, v.why);
}

static void releases(const char *sql)
{
	cr_assert(verdict_sql(sql).releases, "<%s> may release state", sql);
}

static void does_not_release(const char *sql)
{
	cr_assert_not(verdict_sql(sql).releases, "<%s> releases nothing", sql);
}

Test(pin, listen_load_prepare)
{
	pins("LISTEN chan");
	pins("  listen \"Chan\";");
	pins("load 'auto_explain'");
	pins("PREPARE q(int) AS SELECT $1");
	does_not_pin("PREPARE TRANSACTION 'gid'");
	does_not_pin("UNLISTEN *");
	does_not_pin("NOTIFY chan, 'listen'");
	does_not_pin("DEALLOCATE ALL; DISCARD ALL");
}

Test(pin, set_of_unreported_settings_pins_reported_ones_are_tracked)
{
	pins("SET work_mem = '64MB'");
	pins("set session statement_timeout to 0");
	pins("SET myext.flag = on");
	pins("SET application_name.x = 1");
	pins("SET ROLE other");
	pins("SET SESSION AUTHORIZATION other");
	pins("SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE");
	does_not_pin("SET application_name = 'a'");
	does_not_pin("SET TIME ZONE 'UTC'");
	does_not_pin("set timezone to 'Europe/Paris'");
	does_not_pin("SET NAMES 'LATIN1'");
	does_not_pin("SET DateStyle = German");
	does_not_pin("SET LOCAL work_mem = '1MB'");
	does_not_pin("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE");
	does_not_pin("SET CONSTRAINTS ALL DEFERRED");
	does_not_pin("RESET work_mem; RESET ALL");
	does_not_pin("SHOW work_mem");
}

Test(pin, search_path_follows_the_client_only_where_the_server_reports_it)
{
	struct param_set reported = PARAMS_EMPTY;
	struct pin p;
	const char *sql = "SET search_path = a, public";

	cr_assert_eq(params_put(&reported, "TimeZone", "UTC"), 0);
	pin_init(&p, false);
	pin_feed_sql(&p, &reported, sql, strlen(sql));
	cr_assert(pin_end_sql(&p));
	cr_assert_eq(params_put(&reported, "search_path", "\"$user\", public"), 0);
	pin_init(&p, false);
	pin_feed_sql(&p, &reported, sql, strlen(sql));
	cr_assert_not(pin_end_sql(&p));
	params_free(&reported);
}

Test(pin, temporary_objects)
{
	pins("CREATE TEMP TABLE t (a int)");
	pins("create temporary sequence s");
	pins("CREATE GLOBAL TEMPORARY TABLE t (a int)");
	pins("CREATE OR REPLACE TEMP VIEW v AS SELECT 1");
	pins("CREATE TABLE pg_temp.t (a int)");
	pins("CREATE FUNCTION pg_temp.f() RETURNS int AS 'select 1' LANGUAGE sql");
	pins("SELECT 1 AS a INTO TEMP t");
	pins("select * into temporary table t from items");
	does_not_pin("CREATE TABLE temp_stuff (temp int)");
	does_not_pin("CREATE TABLE temp (a int)");
	does_not_pin("CREATE LOCAL INDEX i ON temp (a)");
	does_not_pin("CREATE TABLE t (a int); INSERT INTO t VALUES (1)");
	does_not_pin("SELECT 'CREATE TEMP TABLE x'");
}

Test(pin, reset_and_discard_are_noticed_without_pinning)
{
	struct pin p;
	const char *sql = "select 1; /* RESET x */ RESET work_mem";

	pin_init(&p, false);
	pin_feed_sql(&p, NULL, sql, 9);
	cr_assert_not(p.resets);
	pin_feed_sql(&p, NULL, sql + 9, strlen(sql) - 9);
	cr_assert_not(pin_end_sql(&p));
	cr_assert(p.resets);
	pin_init(&p, false);
	sql = "discard all";
	pin_feed_sql(&p, NULL, sql, strlen(sql));
	cr_assert_not(pin_end_sql(&p));
	cr_assert(p.resets);
}

Test(pin, with_hold_cursors)
{
	pins("DECLARE c CURSOR WITH HOLD FOR SELECT 1");
	pins("declare c no scroll cursor with hold for select 1");
	does_not_pin("DECLARE c CURSOR WITHOUT HOLD FOR SELECT 1");
	does_not_pin("DECLARE c CURSOR FOR WITH hold AS (SELECT 1) SELECT * FROM hold");
}

Test(pin, session_advisory_locks_anywhere_in_a_statement)
{
	pins("SELECT pg_advisory_lock(1)");
	pins("select 1 where pg_try_advisory_lock(2, 3)");
	pins("SELECT pg_catalog.pg_advisory_lock_shared (4)");
	pins("select x from t where pg_try_advisory_lock_shared(t.id)");
	does_not_pin("SELECT pg_advisory_xact_lock(1)");
	does_not_pin("SELECT pg_try_advisory_xact_lock(1)");
	does_not_pin("SELECT pg_advisory_unlock(1)");
	does_not_pin("SELECT 'pg_advisory_lock(1)'");
	does_not_pin("SELECT 1 -- pg_advisory_lock(1)");
	does_not_pin("SELECT pg_advisory_lock");
}

Test(pin, set_config)
{
	pins("SELECT set_config('work_mem', '1MB', false)");
	pins("SELECT set_config('work_mem', '1MB', 'f')");
	pins("SELECT set_config($1, $2, $3)");
	pins("SELECT set_config('work_mem', lower('1MB'), (false))");
	does_not_pin("SELECT set_config('work_mem', '1MB', true)");
	does_not_pin("SELECT set_config('application_name', 'x', false)");
	does_not_pin("SELECT pg_catalog.set_config('work_mem', format('%s', 'a'), true)");
}

Test(pin, keywords_in_strings_comments_and_dollar_quotes_do_not_pin)
{
	does_not_pin("SELECT 'LISTEN x'");
	does_not_pin("SELECT $$; LISTEN x; $$");
	does_not_pin("SELECT $t$ $$ ; LISTEN x $t$");
	does_not_pin("/* LISTEN x */ SELECT 1");
	does_not_pin("/* /* nested */ LISTEN x */ SELECT 1");
	does_not_pin("-- LISTEN x\nSELECT 1");
	does_not_pin("SELECT E'\\'; LISTEN x'");
	does_not_pin("SELECT \"listen\" FROM t");
	does_not_pin("SELECT listen FROM t");
	does_not_pin("DO $$ BEGIN PERFORM 1; END $$");
}

Test(pin, text_the_lexer_cannot_follow_pins_rather_than_risk_a_leak)
{
	char sql[300];
	char tag[100];

	memset(tag, 'x', 80);
	tag[80] = '\0';
	snprintf(sql, sizeof(sql), "SELECT $%s$ a $%s$; LISTEN x", tag, tag);
	pins(sql);
}

Test(pin, any_statement_of_a_multi_statement_query)
{
	pins("SELECT 1; LISTEN x");
	pins("BEGIN; SET work_mem = '1MB'; COMMIT");
	pins("SELECT ';'; CREATE TEMP TABLE t (a int)");
	does_not_pin("SELECT 1; SELECT 2;;");
}

Test(pin, statement_text_for_the_log)
{
	struct pin p;
	const char *sql = "select 1; /* hi */  LISTEN \n  my_channel ; select 2";

	pin_init(&p, false);
	pin_feed_sql(&p, NULL, sql, strlen(sql));
	cr_assert(pin_end_sql(&p));
	cr_assert_str_eq(pin_statement(&p), "LISTEN my_channel");
	cr_assert_str_eq(pin_why(&p), "LISTEN");
}

/* ---- protocol messages ---- */

static size_t put_msg(uint8_t *buf, char type, const void *body, size_t len)
{
	uint32_t l = (uint32_t)len + 4;

	buf[0] = (uint8_t)type;
	buf[1] = (uint8_t)(l >> 24);
	buf[2] = (uint8_t)(l >> 16);
	buf[3] = (uint8_t)(l >> 8);
	buf[4] = (uint8_t)l;
	memcpy(buf + 5, body, len);
	return 5 + len;
}

static bool wire_pins(const uint8_t *wire, size_t n, size_t piece)
{
	struct pin p;
	bool pinned = false;

	pin_init(&p, false);
	for (size_t i = 0; i < n; i += piece)
		pinned = pin_feed_wire(&p, NULL, wire + i, n - i < piece ? n - i : piece) || pinned;
	return pinned;
}

Test(pin_wire, query_and_parse_bodies_are_read_other_messages_skipped)
{
	uint8_t wire[512];
	size_t n = 0;

	/* A Bind whose bytes spell LISTEN must not count; a Parse's name neither. */
	n += put_msg(wire + n, 'B', "\0\0LISTEN x\0", 11);
	n += put_msg(wire + n, 'P', "LISTEN\0select 1\0\0\0", 18);
	n += put_msg(wire + n, 'S', "", 0);
	n += put_msg(wire + n, 'Q', "select 'LISTEN'\0", 16);
	for (size_t piece = 1; piece <= n; piece++)
		cr_assert_not(wire_pins(wire, n, piece), "piece %zu", piece);

	n += put_msg(wire + n, 'P', "s1\0LISTEN chan\0\0\0", 17);
	for (size_t piece = 1; piece <= n; piece++)
		cr_assert(wire_pins(wire, n, piece), "piece %zu", piece);
}

Test(pin_wire, a_query_split_across_messages_does_not_join)
{
	uint8_t wire[128];
	size_t n = 0;

	/* "LIS" ends one query, "TEN x" starts the next: neither is LISTEN. */
	n += put_msg(wire + n, 'Q', "LIS\0", 4);
	n += put_msg(wire + n, 'Q', "TEN x\0", 6);
	for (size_t piece = 1; piece <= n; piece++)
		cr_assert_not(wire_pins(wire, n, piece), "piece %zu", piece);
}

Test(pin_wire, the_pre_filter_skips_only_text_that_cannot_matter)
{
	cr_assert_null(wire_why("select abalance from pgbench_accounts where aid = $1"));
	cr_assert_not_null(wire_why("SeLeCt 1; LiStEn x"));
	cr_assert_not_null(wire_why("select $a$ x $a$; set work_mem = '1MB'"));
	cr_assert_not_null(wire_why("CREATE TEMPORARY TABLE t (x int)"));
}

Test(pin_wire, simple_query_pins)
{
	uint8_t wire[128];
	size_t n = put_msg(wire, 'Q', "SELECT pg_advisory_lock(42)\0", 28);

	for (size_t piece = 1; piece <= n; piece++)
		cr_assert(wire_pins(wire, n, piece), "piece %zu", piece);
}

Test(pin_tracked, reported_settable_settings)
{
	cr_assert(pin_setting_tracked("TimeZone", NULL));
	cr_assert(pin_setting_tracked("application_name", NULL));
	cr_assert(pin_setting_tracked("DateStyle", NULL));
	cr_assert_not(pin_setting_tracked("is_superuser", NULL));
	cr_assert_not(pin_setting_tracked("server_version", NULL));
	cr_assert_not(pin_setting_tracked("session_authorization", NULL));
	cr_assert_not(pin_setting_tracked("work_mem", NULL));
}

Test(pin_wire, state_moves_with_the_watcher)
{
	uint8_t wire[128];
	size_t n = put_msg(wire, 'Q', "SELECT 1; LISTEN moved\0", 23);
	struct pin *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));

	for (size_t cut = 1; cut < n; cut++) {
		pin_init(a, false);
		if (pin_feed_wire(a, NULL, wire, cut))
			continue;  /* LISTEN was complete before the cut */
		cr_assert_not(pin_at_boundary(a));
		pin_move(b, a);
		memset(a, 0xee, sizeof(*a));  /* nothing may still point into the old one */
		cr_assert(pin_feed_wire(b, NULL, wire + cut, n - cut), "cut %zu", cut);
		cr_assert(pin_at_boundary(b));
	}
	free(a);
	free(b);
}

/* ---- kinds of pins, and statements that may lift them ---- */

Test(pin_kind, state_a_probe_can_see)
{
	pins_probeable("LISTEN chan");
	pins_probeable("PREPARE q(int) AS SELECT $1");
	pins_probeable("CREATE TEMP TABLE t (a int)");
	pins_probeable("CREATE FUNCTION pg_temp.f() RETURNS int AS 'select 1' LANGUAGE sql");
	pins_probeable("SELECT 1 AS a INTO TEMP t");
	pins_probeable("DECLARE c CURSOR WITH HOLD FOR SELECT 1");
	pins_probeable("SELECT pg_advisory_lock(1)");
	pins_probeable("select pg_try_advisory_lock_shared(1, 2)");
}

Test(pin_kind, state_no_probe_can_see_lasts)
{
	pins_lasting("SET work_mem = '64MB'");
	pins_lasting("SET ROLE other");
	pins_lasting("SET SESSION AUTHORIZATION other");
	pins_lasting("SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY");
	pins_lasting("SELECT set_config('work_mem', '1MB', false)");
	pins_lasting("LOAD 'auto_explain'");

	char sql[300], tag[100];
	memset(tag, 'x', 80);
	tag[80] = '\0';
	snprintf(sql, sizeof(sql), "SELECT $%s$ a $%s$; LISTEN x", tag, tag);
	pins_lasting(sql);
}

Test(pin_kind, a_lasting_reason_takes_over_whatever_the_order)
{
	struct pin p;
	const char *sql = "LISTEN x; SET   work_mem = '1MB'; LISTEN y";

	pin_init(&p, false);
	pin_feed_sql(&p, NULL, sql, strlen(sql));
	cr_assert(pin_end_sql(&p));
	cr_assert(p.lasts);
	cr_assert_str_eq(pin_why(&p), "SET of a setting that is not reported");
	cr_assert_str_eq(pin_statement(&p), "SET work_mem = '1MB'");
	pins_lasting("SET work_mem = '1MB'; LISTEN x");
	pins_lasting("SELECT pg_advisory_lock(1), set_config('work_mem', '1MB', false)");
}

Test(pin_release, statements_that_may_release_state)
{
	releases("UNLISTEN *");
	releases("unlisten chan");
	releases("DROP TABLE t");
	releases("DEALLOCATE p");
	releases("DEALLOCATE ALL");
	releases("CLOSE c");
	releases("close all");
	releases("DISCARD ALL");
	releases("DISCARD TEMP");
	releases("ROLLBACK");
	releases("ROLLBACK TO SAVEPOINT s");
	releases("abort");
	releases("SELECT pg_advisory_unlock(1)");
	releases("select pg_catalog.pg_advisory_unlock_shared(1, 2)");
	releases("SELECT pg_advisory_unlock_all()");
	releases("SELECT 1; DROP TABLE t; SELECT 2");
	/* A try-lock pins, and may have taken nothing. */
	releases("SELECT pg_try_advisory_lock(1)");
	pins_probeable("SELECT pg_try_advisory_lock(1)");
	/* Gone at commit. */
	releases("CREATE TEMP TABLE t (a int) ON COMMIT DROP");
	pins_probeable("CREATE TEMP TABLE t (a int) ON COMMIT DROP");

	does_not_release("SELECT 'DROP TABLE t'");
	does_not_release("SELECT 1 -- ROLLBACK");
	does_not_release("/* CLOSE c */ SELECT 1");
	does_not_release("SELECT drop, close, abort FROM t");
	does_not_release("SELECT \"rollback\" FROM t");
	does_not_release("SELECT pg_advisory_lock(1)");
	does_not_release("SELECT pg_advisory_unlock");
	does_not_release("COMMIT");
	does_not_release("CREATE TEMP TABLE t (a int) ON COMMIT DELETE ROWS");
	does_not_release("LISTEN chan");
}

Test(pin_release, an_unpinned_client_does_not_lex_for_releases)
{
	/* Nothing in it can pin: skipped unless the client is pinned. */
	cr_assert_not(wire_verdict("DROP TABLE t", false).releases);
	cr_assert(wire_verdict("DROP TABLE t", true).releases);
	cr_assert(wire_verdict("rollback", true).releases);
	cr_assert(wire_verdict("Close c", true).releases);
	cr_assert(wire_verdict("DeAllocate p", true).releases);
	cr_assert(wire_verdict("ABORT", true).releases);
	cr_assert_null(wire_verdict("select abalance from pgbench_accounts where aid = $1", true).why);
}

Test(pin_release, clear_lets_the_watcher_go_on_mid_message)
{
	uint8_t wire[128];
	size_t n = 0;
	struct pin p;

	n += put_msg(wire + n, 'Q', "LISTEN a\0", 9);
	n += put_msg(wire + n, 'Q', "SELECT 1; UNLISTEN a\0", 21);
	for (size_t cut = 1; cut < n; cut++) {
		pin_init(&p, false);
		p.watch_releases = true;
		pin_feed_wire(&p, NULL, wire, cut);
		bool pinned = pin_why(&p) != NULL, released = p.releases;
		pin_clear(&p);
		cr_assert_null(pin_why(&p));
		cr_assert_not(p.releases || p.lasts || p.resets);
		pin_feed_wire(&p, NULL, wire + cut, n - cut);
		cr_assert(pinned || pin_why(&p), "cut %zu: LISTEN seen once", cut);
		cr_assert(released || p.releases, "cut %zu: UNLISTEN seen", cut);
		cr_assert(pin_at_boundary(&p));
	}
}

Test(pin_release, a_release_right_after_the_pin_in_the_same_read_is_seen)
{
	uint8_t wire[128];
	size_t n = 0;
	struct pin p;

	/* Pipelined: the pin and the release arrive together; nothing in the DROP can pin. */
	n += put_msg(wire + n, 'Q', "CREATE TEMP TABLE t (a int)\0", 28);
	n += put_msg(wire + n, 'Q', "DROP TABLE t\0", 13);
	pin_init(&p, false);
	cr_assert(pin_feed_wire(&p, NULL, wire, n));
	cr_assert(p.releases);
}
