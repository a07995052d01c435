/*
 * test_session.c — Criterion tests for pool/session.c: what a client sends
 * pins it (or not), the ParameterStatus messages that are tracked, the pin
 * probe's life cycle, and the SQL that gives a backend a client's settings.
 *
 * No backend and no loop: a client, its pool and its leased server are
 * plain structs with the fields session.c reads.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"
#include "client.h"
#include "config.h"
#include "log.h"
#include "pin.h"
#include "pool.h"
#include "server.h"
#include "session.h"

static struct config conf;
static struct pool pool;
static struct server srv;
static struct client cl;

static void setup(void)
{
	log_set_level(LOG_ERROR);
	conf = (struct config){ .session_state = SESSION_STATE_PIN, .server_drain_timeout = 5 };
	cfg = &conf;
	pool = (struct pool){ .dbname = "app", .user = "u", .mode = POOL_MODE_TRANSACTION };
	srv = (struct server){ .pool = &pool, .id = 3, .backend_pid = 4242 };
	cl = (struct client){ .pool = &pool, .id = 7, .state = CLIENT_ACTIVE };
	srv.lease_slot = (struct lease){ .client = &cl, .server = &srv };
	srv.lease = cl.lease = &srv.lease_slot;
}

static void teardown(void)
{
	session_free(&cl);
	params_free(&cl.params);
	params_free(&srv.applied);
	params_free(&pool.base);
}

TestSuite(session, .init = setup, .fini = teardown);

/* A whole protocol message into buf; its length. */
static size_t msg(uint8_t *buf, char type, const char *body, size_t n)
{
	uint32_t len = (uint32_t)n + 4;

	buf[0] = (uint8_t)type;
	buf[1] = len >> 24;
	buf[2] = len >> 16;
	buf[3] = len >> 8;
	buf[4] = len;
	memcpy(buf + 5, body, n);
	return n + 5;
}

static size_t query(uint8_t *buf, const char *sql)
{
	return msg(buf, 'Q', sql, strlen(sql) + 1);
}

static void sends(const char *sql)
{
	uint8_t buf[1024];

	session_client_sends(&cl, buf, query(buf, sql));
}

/* ---- what a client sends ---- */

Test(session, listen_pins_until_a_probe_finds_it_gone)
{
	sends("LISTEN chan");
	cr_assert(cl.pinned);
	cr_assert_not(cl.pin_lasts, "a probe can see a LISTEN");
	cr_assert_eq(pool.stats.pins, 1);
	cr_assert_null(cl.pin, "at a message boundary the client keeps no watcher");
}

Test(session, a_plain_query_does_not_pin)
{
	sends("SELECT 1; INSERT INTO t VALUES ('LISTEN x')");
	cr_assert_not(cl.pinned);
	cr_assert_eq(pool.stats.pins, 0);
	cr_assert_not(srv.settings_unknown);
}

Test(session, an_unreported_setting_pins_for_good_and_stops_the_watching)
{
	sends("SET work_mem = '1MB'");
	cr_assert(cl.pinned);
	cr_assert(cl.pin_lasts);
	sends("RESET ALL");
	cr_assert_not(srv.settings_unknown, "a client pinned for good is no longer watched");
}

Test(session, a_pin_is_counted_once_and_may_come_to_last)
{
	sends("LISTEN a");
	sends("LISTEN b");
	cr_assert_eq(pool.stats.pins, 1);
	cr_assert_not(cl.pin_lasts);
	sends("LOAD 'auto_explain'");
	cr_assert(cl.pin_lasts);
	cr_assert_eq(pool.stats.pins, 1);
}

Test(session, a_message_split_between_reads_keeps_its_watcher)
{
	uint8_t buf[256];
	size_t n = query(buf, "SELECT 1; LISTEN chan");

	session_client_sends(&cl, buf, 14);
	cr_assert_not(cl.pinned);
	cr_assert_not_null(cl.pin, "mid-message state is kept for the client");
	session_client_sends(&cl, buf + 14, n - 14);
	cr_assert(cl.pinned);
	cr_assert_null(cl.pin, "freed at the boundary");
}

Test(session, a_reset_makes_the_backend_settings_unknown)
{
	sends("RESET ALL");
	cr_assert(srv.settings_unknown);
	cr_assert_not(cl.pinned);
}

Test(session, a_release_by_a_pinned_client_makes_a_probe_due)
{
	sends("LISTEN chan");
	cr_assert_not(session_probe_due(&cl));
	sends("UNLISTEN chan");
	cr_assert(cl.probe_due);
	cr_assert(session_probe_due(&cl));
}

Test(session, nothing_is_watched_in_session_mode_or_with_session_state_ignore)
{
	pool.mode = POOL_MODE_SESSION;
	sends("LISTEN chan");
	cr_assert_not(cl.pinned);
	pool.mode = POOL_MODE_TRANSACTION;
	conf.session_state = SESSION_STATE_IGNORE;
	sends("LISTEN chan");
	cr_assert_not(cl.pinned);
	sends("RESET ALL");
	cr_assert_not(srv.settings_unknown);
}

Test(session, backslash_escapes_follow_standard_conforming_strings)
{
	/* With standard_conforming_strings on, the string ends at \' and LISTEN is a statement. */
	sends("SELECT 'a\\'; LISTEN x; SELECT '");
	cr_assert(cl.pinned);
}

Test(session, backslash_escapes_follow_the_pool_base_when_off)
{
	cr_assert_eq(params_put(&pool.base, "standard_conforming_strings", "off"), 0);
	sends("SELECT 'a\\'; LISTEN x; SELECT '");
	cr_assert_not(cl.pinned, "the LISTEN is inside a string");
}

Test(session, the_client_setting_takes_precedence_over_the_pool_base)
{
	cr_assert_eq(params_put(&pool.base, "standard_conforming_strings", "on"), 0);
	cr_assert_eq(params_put(&cl.params, "standard_conforming_strings", "off"), 0);
	sends("SELECT 'a\\'; LISTEN x; SELECT '");
	cr_assert_not(cl.pinned);
}

Test(session, inert_messages)
{
	uint8_t buf[256];

	cr_assert(session_inert(&cl, buf, query(buf, "SELECT 1")));
	cr_assert_not(session_inert(&cl, buf, query(buf, "LISTEN chan")));
	cr_assert_not(session_inert(&cl, buf, query(buf, "RESET datestyle")));
	size_t n = query(buf, "SELECT 1");
	cr_assert_not(session_inert(&cl, buf, n - 2), "a partial message is not known to be inert");
	cr_assert_not(cl.pinned, "asking does not pin");
	pool.mode = POOL_MODE_SESSION;
	cr_assert(session_inert(&cl, buf, query(buf, "LISTEN chan")), "unwatched: everything is inert");
}

/* ---- ParameterStatus from the backend ---- */

static struct frame_msg param_status(uint8_t *body, const char *name, const char *value)
{
	size_t n = strlen(name) + 1, v = strlen(value) + 1;

	memcpy(body, name, n);
	memcpy(body + n, value, v);
	return (struct frame_msg){ .type = 'S', .len = (uint32_t)(n + v + 4), .body = body };
}

Test(session, param_split_reads_only_well_formed_bodies)
{
	uint8_t body[64];
	const char *value = NULL;
	struct frame_msg m = param_status(body, "TimeZone", "UTC");

	cr_assert(session_param_split(&m, &value));
	cr_assert_str_eq(value, "UTC");
	m = param_status(body, "application_name", "");
	cr_assert(session_param_split(&m, &value));
	cr_assert_str_eq(value, "");

	memcpy(body, "TimeZone\0UTC", 12);           /* the value's NUL missing */
	m = (struct frame_msg){ .type = 'S', .len = 12 + 4, .body = body };
	cr_assert_not(session_param_split(&m, &value));
	memcpy(body, "TimeZone", 8);                 /* no value at all */
	m = (struct frame_msg){ .type = 'S', .len = 8 + 4, .body = body };
	cr_assert_not(session_param_split(&m, &value));
	memcpy(body, "a\0b\0c\0", 6);                /* a third string */
	m = (struct frame_msg){ .type = 'S', .len = 6 + 4, .body = body };
	cr_assert_not(session_param_split(&m, &value));
	m = (struct frame_msg){ .type = 'S', .len = 4, .body = body };
	cr_assert_not(session_param_split(&m, &value));
	m = (struct frame_msg){ .type = 'S', .len = 20, .body = NULL };
	cr_assert_not(session_param_split(&m, &value), "a body too long to be framed whole");
}

Test(session, a_tracked_setting_follows_the_client_and_the_backend)
{
	uint8_t body[64];
	struct frame_msg m = param_status(body, "DateStyle", "ISO, DMY");

	session_param_status(&cl, &srv, &m, true);
	cr_assert_str_eq(params_get(&cl.params, "datestyle"), "ISO, DMY");
	cr_assert_str_eq(params_get(&srv.applied, "datestyle"), "ISO, DMY");
}

Test(session, a_setting_the_client_is_not_told_changes_only_the_backend)
{
	uint8_t body[64];
	struct frame_msg m = param_status(body, "TimeZone", "Asia/Tokyo");

	session_param_status(&cl, &srv, &m, false);
	cr_assert_null(params_get(&cl.params, "timezone"));
	cr_assert_str_eq(params_get(&srv.applied, "timezone"), "Asia/Tokyo");
}

Test(session, untracked_settings_and_no_client_are_ignored)
{
	uint8_t body[64];
	struct frame_msg m = param_status(body, "server_version", "15.4");

	session_param_status(&cl, &srv, &m, true);
	cr_assert_eq(cl.params.len, 0);
	cr_assert_eq(srv.applied.len, 0);
	m = param_status(body, "TimeZone", "UTC");
	session_param_status(NULL, &srv, &m, true);
	cr_assert_eq(srv.applied.len, 0);
}

Test(session, standard_conforming_strings_reaches_a_watcher_in_the_middle_of_a_message)
{
	uint8_t buf[256], body[64];
	size_t n = query(buf, "SELECT 'a\\'; LISTEN x; SELECT '");
	struct frame_msg m = param_status(body, "standard_conforming_strings", "off");

	session_client_sends(&cl, buf, 8);           /* the watcher is kept, lexing with backslashes as text */
	cr_assert_not_null(cl.pin);
	session_param_status(&cl, &srv, &m, true);
	cr_assert(cl.quotes_known);
	cr_assert(cl.backslash_quotes);
	cr_assert(cl.pin->lx.backslash_quotes);
	session_client_sends(&cl, buf + 8, n - 8);
	cr_assert_not(cl.pinned, "the rest was read with backslash escapes");
}

/* ---- the probe ---- */

static void pin_probeable(void)
{
	sends("LISTEN chan");
	sends("UNLISTEN chan");
	cr_assert(session_probe_due(&cl));
}

Test(session, the_probe_sql_bounds_its_lock_wait_and_is_due_once)
{
	pin_probeable();
	const char *sql = session_probe(&cl);
	cr_assert_eq(strncmp(sql, "SET LOCAL lock_timeout = 5000; SELECT 1 WHERE", 45), 0, "%s", sql);
	cr_assert(strstr(sql, "pg_catalog.pg_listening_channels()"));
	cr_assert(strstr(sql, "locktype = 'advisory'"));
	cr_assert(strstr(sql, "pg_catalog.pg_my_temp_schema()"));
	cr_assert(strstr(sql, "pg_catalog.pg_prepared_statements WHERE from_sql"));
	cr_assert(strstr(sql, "pg_catalog.pg_cursors WHERE is_holdable"));
	cr_assert_not(session_probe_due(&cl), "a probe takes the due flag");
}

Test(session, a_zero_drain_timeout_still_bounds_the_lock_wait)
{
	conf.server_drain_timeout = 0;
	pin_probeable();
	cr_assert_eq(strncmp(session_probe(&cl), "SET LOCAL lock_timeout = 1;", 27), 0);
}

Test(session, no_probe_for_state_that_lasts_or_without_a_release)
{
	sends("LISTEN chan");
	cr_assert_not(session_probe_due(&cl), "nothing released yet");
	sends("UNLISTEN chan");
	sends("LOAD 'x'");
	cr_assert_not(session_probe_due(&cl), "a lasting pin is never probed");
}

Test(session, a_probe_that_finds_nothing_unpins)
{
	pin_probeable();
	session_probe(&cl);
	cr_assert(session_probed(&cl, &srv, NULL, false));
	cr_assert_not(cl.pinned);
	cr_assert_eq(pool.stats.unpins, 1);
}

Test(session, a_probe_that_finds_state_or_fails_keeps_the_pin)
{
	pin_probeable();
	session_probe(&cl);
	cr_assert_not(session_probed(&cl, &srv, NULL, true));
	cr_assert(cl.pinned);
	cr_assert_not(session_probed(&cl, &srv, "canceling statement due to lock timeout", false));
	cr_assert(cl.pinned);
	cr_assert_eq(pool.stats.unpins, 0);
}

Test(session, a_backend_error_makes_a_probe_due_for_a_pinned_client_only)
{
	session_backend_error(&cl);
	cr_assert_not(cl.probe_due);
	session_backend_error(NULL);
	sends("LISTEN chan");
	session_backend_error(&cl);
	cr_assert(session_probe_due(&cl));
}

/* The exit door unpins once the client has let go of the lease (lease_exit()). */
static void let_go(void)
{
	cl.lease = NULL;
	srv.lease_slot.client = NULL;
}

static void hold_again(void)
{
	srv.lease_slot.client = &cl;
	cl.lease = &srv.lease_slot;
}

Test(session, unpin_at_lease_end_asks_for_a_reset_only_when_pinned)
{
	cl.probe_due = true;
	let_go();
	cr_assert_not(session_unpin(&cl, &srv));
	cr_assert_not(cl.probe_due);
	hold_again();
	sends("SET work_mem = '1MB'");
	let_go();
	cr_assert(session_unpin(&cl, &srv));
	cr_assert_not(cl.pinned);
	cr_assert_not(cl.pin_lasts);
}

/* ---- the settings a lease starts with ---- */

#define SET_DMY "SELECT pg_catalog.set_config($q0$datestyle$q0$, $q0$ISO, DMY$q0$, false);"

Test(session, setup_sql_is_empty_when_the_backend_has_the_client_settings)
{
	char sql[512];

	cr_assert_eq(params_put(&cl.params, "DateStyle", "ISO, DMY"), 0);
	cr_assert_eq(params_put(&srv.applied, "DateStyle", "ISO, DMY"), 0);
	cr_assert_eq(session_setup_sql(&cl, &srv, sql, sizeof(sql)), 0);
}

Test(session, setup_sql_sets_what_differs_and_resets_what_the_client_dropped)
{
	char sql[512];

	cr_assert_eq(params_put(&cl.params, "DateStyle", "ISO, DMY"), 0);
	cr_assert_eq(params_put(&srv.applied, "TimeZone", "Asia/Tokyo"), 0);
	int n = session_setup_sql(&cl, &srv, sql, sizeof(sql));
	cr_assert_str_eq(sql, SET_DMY "RESET \"timezone\";");
	cr_assert_eq(n, (int)strlen(sql));
}

Test(session, setup_sql_after_a_client_reset_starts_from_reset_all)
{
	char sql[512];

	cr_assert_eq(params_put(&cl.params, "DateStyle", "ISO, DMY"), 0);
	cr_assert_eq(params_put(&cl.params, "TimeZone", "UTC"), 0);
	cr_assert_eq(params_put(&pool.base, "TimeZone", "UTC"), 0);
	cr_assert_eq(params_put(&srv.applied, "DateStyle", "ISO, DMY"), 0);   /* what pglease believes; a RESET may have undone it */
	srv.settings_unknown = true;
	int n = session_setup_sql(&cl, &srv, sql, sizeof(sql));
	cr_assert_str_eq(sql, "RESET ALL;" SET_DMY, "the pool's own TimeZone needs no statement");
	cr_assert_eq(n, (int)strlen(sql));
}

Test(session, setup_sql_that_does_not_fit_is_refused)
{
	char sql[512];

	cr_assert_eq(params_put(&cl.params, "DateStyle", "ISO, DMY"), 0);
	cr_assert_eq(session_setup_sql(&cl, &srv, sql, (int)strlen(SET_DMY)), -1, "no room for the NUL");
	cr_assert_eq(session_setup_sql(&cl, &srv, sql, (int)strlen(SET_DMY) + 1), (int)strlen(SET_DMY));
	srv.settings_unknown = true;
	cr_assert_eq(session_setup_sql(&cl, &srv, sql, 10), -1);
	cr_assert_eq(session_setup_sql(&cl, &srv, sql, 11 + (int)strlen(SET_DMY) - 1), -1);
	cr_assert_eq(session_setup_sql(&cl, &srv, sql, 11 + (int)strlen(SET_DMY)), 10 + (int)strlen(SET_DMY));
}
