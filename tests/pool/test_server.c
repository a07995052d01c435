/*
 * test_server.c — Criterion tests for pool/server.c against the scripted fake
 * backend of fake_backend.h: a Unix socket served on the same loop, that
 * answers the startup packet and each Query with bytes the test chose.
 *
 * Covered: a login (the pool's base settings, the backend pid, the backend
 * idle), a login refused with the server's SQLSTATE (and libpq's LOCATION
 * line cut), the connect timeout, libpq-driven queries (rows, the first
 * error, notices kept as NoticeResponse bytes, the query timeout), a backend
 * that closes or notifies while idle, and the raw phase.
 */
#include <criterion/criterion.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "env.h"
#include "config.h"
#include "log.h"
#include "pool.h"
#include "proto.h"
#include "server.h"

#include "fake_backend.h"

TestSuite(server, .init = fake_setup, .fini = fake_teardown, .timeout = 10);

/* ---- logging in ---- */


/* pglease queries a backend only under a lease or at the exit door (server_query() asserts it). */
static struct server *queryable(void)
{
	struct server *s = connected();

	server_set_state(s, SERVER_CLEANING);
	s->lease_slot = (struct lease){ .server = s };   /* the exit door's, holderless */
	s->lease = &s->lease_slot;
	return s;
}

Test(server, a_login_gives_the_pool_its_base_and_an_idle_backend)
{
	struct server *s = connected();

	cr_assert_str_eq(fake.startup_user, "alice");
	cr_assert_str_eq(fake.startup_db, "app");
	cr_assert_eq(s->state, SERVER_IDLE);
	cr_assert_eq(s->phase, PHASE_IDLE);
	cr_assert_eq(s->backend_pid, 4242);
	cr_assert_eq(s->pool, pool);
	cr_assert(pool->have_base);
	cr_assert_str_eq(params_get(&pool->base, "DateStyle"), "ISO, MDY");
	cr_assert_str_eq(params_get(&pool->base, "server_version"), "15.4");
	cr_assert_str_eq(params_get(&pool->base, "standard_conforming_strings"), "on");
	cr_assert_null(params_get(&pool->base, "search_path"), "only what the server reported");
	cr_assert_eq(pool->stats.servers_opened, 1);
	cr_assert_null(pool->last_error);
}

Test(server, a_refused_login_keeps_the_server_sqlstate_and_message)
{
	script_error(&fake.login, "FATAL", "3D000", "database \"app\" does not exist");
	conf.min_pool_size = 1;
	pool_want_servers(pool);
	cr_assert(run_until(none_left));
	cr_assert_eq(pool->stats.servers_failed, 1);
	cr_assert_str_eq(pool->last_sqlstate, "3D000");
	cr_assert_str_eq(pool->last_error, "database \"app\" does not exist", "libpq's LOCATION line is cut");
}

static bool failed_once(void) { return pool->stats.servers_failed == 1; }

Test(server, a_backend_that_never_answers_runs_into_the_connect_timeout)
{
	conf.server_connect_timeout = 0.05;
	conf.min_pool_size = 1;
	pool_want_servers(pool);
	cr_assert_eq(pool->connecting.count, 1);
	cr_assert(run_until(failed_once));
	cr_assert_eq(pool_server_count(pool), 0);
	cr_assert_str_eq(pool->last_sqlstate, "08001");
	cr_assert_str_eq(pool->last_error, "timeout expired (server_connect_timeout)");
}

/* ---- libpq-driven queries ---- */

static struct {
	int calls;
	char sqlstate[6];
	char error[256];
	int rows;
	char first_value[64];
	uint8_t notices[512];
	uint32_t notices_len;
} answer;

static void on_answer(struct server *s, const char *sqlstate, const char *error)
{
	const PGresult *res = server_query_result(s);
	uint8_t *notices;

	answer.calls++;
	snprintf(answer.sqlstate, sizeof(answer.sqlstate), "%s", sqlstate ? sqlstate : "");
	snprintf(answer.error, sizeof(answer.error), "%s", error ? error : "");
	answer.rows = s->query_rows;
	snprintf(answer.first_value, sizeof(answer.first_value), "%s",
		 res && PQntuples(res) ? PQgetvalue(res, 0, 0) : "");
	notices = server_take_notices(s, &answer.notices_len);
	if (notices && answer.notices_len <= sizeof(answer.notices))
		memcpy(answer.notices, notices, answer.notices_len);
	free(notices);
}

static bool answered(void) { return answer.calls == 1; }

Test(server, a_query_returns_its_rows)
{
	static const char *const values[] = { "1", "2" };
	struct server *s = queryable();

	script_rows(&fake.reply, values, 2);
	proto_ready(&fake.reply, 'I');
	cr_assert_eq(server_query(s, "select v from t", on_answer), 0);
	cr_assert_eq(s->phase, PHASE_QUERY);
	cr_assert(run_until(answered));
	cr_assert_str_eq(fake.last_query, "select v from t");
	cr_assert_str_eq(answer.error, "");
	cr_assert_eq(answer.rows, 2);
	cr_assert_str_eq(answer.first_value, "1");
	cr_assert_eq(s->phase, PHASE_IDLE, "back to libpq's idle watch");
}

Test(server, the_first_error_of_a_query_is_reported)
{
	static const char *const values[] = { "x" };
	struct server *s = queryable();
	struct wbuf *w = &fake.reply;

	script_rows(w, values, 1);
	proto_error(w, "ERROR", "42P01", "relation \"t\" does not exist", NULL, NULL);
	proto_ready(w, 'I');
	cr_assert_eq(server_query(s, "select 1; select * from t", on_answer), 0);
	cr_assert(run_until(answered));
	cr_assert_str_eq(answer.sqlstate, "42P01");
	cr_assert_str_eq(answer.error, "relation \"t\" does not exist");
}

Test(server, notices_are_kept_as_the_client_would_get_them_when_asked)
{
	struct server *s = queryable();
	struct wbuf *w = &fake.reply;
	uint8_t want[256];
	struct wbuf expected;

	proto_notice(w, "NOTICE", "42622", "identifier \"aaaa\" will be truncated", "a detail", "a hint");
	script_rows(w, NULL, 0);
	proto_ready(w, 'I');
	cr_assert_eq(server_query(s, "select 1", on_answer), 0);
	server_keep_notices(s);
	cr_assert(run_until(answered));
	wbuf_init(&expected, want, sizeof(want));
	proto_notice(&expected, "NOTICE", "42622", "identifier \"aaaa\" will be truncated", "a detail", "a hint");
	cr_assert_eq(answer.notices_len, expected.len);
	cr_assert_arr_eq(answer.notices, want, expected.len);
}

Test(server, notices_are_dropped_unless_asked_for)
{
	struct server *s = queryable();
	struct wbuf *w = &fake.reply;

	proto_notice(w, "NOTICE", "00000", "hello", NULL, NULL);
	script_rows(w, NULL, 0);
	proto_ready(w, 'I');
	cr_assert_eq(server_query(s, "select 1", on_answer), 0);
	cr_assert(run_until(answered));
	cr_assert_eq(answer.notices_len, 0);
}

static bool closed(void) { return pool_server_count(pool) == 0; }

Test(server, a_query_without_an_answer_closes_the_backend)
{
	struct server *s = queryable();

	conf.server_drain_timeout = 0.025;     /* the limit is twice that */
	cr_assert_eq(server_query(s, "select pg_sleep(1000)", on_answer), 0);
	cr_assert(run_until(closed));
	cr_assert_eq(answer.calls, 0);
	cr_assert_eq(pool->stats.servers_closed, 1);
}

/* ---- idle ---- */

Test(server, a_backend_closed_while_idle_is_closed_and_counted)
{
	connected();
	fake_hang_up();
	cr_assert(run_until(closed));
	cr_assert_eq(pool->stats.servers_closed, 1);
	cr_assert_eq(pool->stats.servers_lost, 0, "it was not leased");
}

Test(server, a_notification_on_an_idle_backend_makes_it_unusable)
{
	struct wbuf w;
	uint8_t data[64];

	connected();
	wbuf_init(&w, data, sizeof(data));
	proto_notification(&w, 4242, "chan", "");
	fake_send(&w);
	cr_assert(run_until(closed));
	cr_assert_eq(pool->stats.servers_closed, 1);
}

/* ---- raw ---- */

static int raw_readable;

static void on_raw_readable(struct server *s)
{
	uint8_t buf[64];

	raw_readable++;
	cr_assert_gt(recv(s->fd, buf, sizeof(buf), MSG_DONTWAIT), 0);
}

static bool read_once(void) { return raw_readable == 1; }
static bool fake_got_sync(void) { return fake.raw_len == 5; }

Test(server, the_raw_phase_hands_the_socket_to_the_relay)
{
	struct server *s = queryable();
	struct wbuf w;
	uint8_t data[64];

	server_go_raw(s, on_raw_readable, NULL);
	cr_assert_eq(s->phase, PHASE_RAW);
	wbuf_init(&w, data, sizeof(data));
	proto_sync(&w);
	cr_assert_eq(server_send_raw(s, w.data, w.len), (ssize_t)w.len);
	cr_assert(run_until(fake_got_sync));
	cr_assert_arr_eq(fake.raw, "S\0\0\0\x04", 5);
	wbuf_init(&w, data, sizeof(data));
	proto_ready(&w, 'I');
	fake_send(&w);
	cr_assert(run_until(read_once));
	server_watch_idle(s);
	cr_assert_eq(s->phase, PHASE_IDLE);
}

Test(server, sending_to_a_backend_that_is_gone_fails)
{
	struct server *s = queryable();

	fake_hang_up();
	server_go_raw(s, on_raw_readable, NULL);
	/* The first send may still be taken by the kernel; the peer's close shows by the second. */
	ssize_t a = server_send_raw(s, "S\0\0\0\x04", 5), b = server_send_raw(s, "S\0\0\0\x04", 5);
	cr_assert(a == -1 || b == -1, "sends after the backend went: %zd, %zd", a, b);
}
