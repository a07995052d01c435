/*
 * test_welcome.c — Criterion tests for the login reply (welcome.c; today in
 * daemon/client.c), byte for byte as a client program reads it: the pool's
 * reported settings with the client's own in their place, BackendKeyData,
 * ReadyForQuery; settings PostgreSQL must check first (a cached answer, or
 * a wait for a lease); and a login while the pool cannot reach a backend.
 */
#include <criterion/criterion.h>

#include "client.h"
#include "config.h"
#include "vet.h"

#include "../lib/wire_client.h"

TestSuite(welcome, .init = wire_setup, .fini = wire_teardown, .timeout = 10);

static void login_with(struct wire *w, const char *const *settings)
{
	uint8_t buf[512];
	struct wbuf b;
	const char *pairs[16] = { "user", "u", "database", "app" };
	int n = 4;

	for (; *settings; settings++)
		pairs[n++] = *settings;
	pairs[n] = NULL;
	wbuf_init(&b, buf, sizeof(buf));
	startup_msg(&b, 0, pairs);
	wire_send_buf(w, &b);
}

/* What arrived, all of it (waiting until the ReadyForQuery, or 2 s). */
static void assert_received(struct wire *w, const struct wbuf *want)
{
	for (int i = 0; i < 50 && w->len < want->len && !w->eof; i++)
		wire_wait(w, 0.04);
	cr_assert_eq(w->len, want->len, "%zu bytes, want %zu", w->len, want->len);
	cr_assert_arr_eq(w->in, want->data, want->len);
}

Test(welcome, the_reply_is_postgres_login_reply_with_the_pool_settings)
{
	static const char *const none[] = { NULL };
	struct wire *w = wire_connect();
	uint8_t buf[512];
	struct wbuf want;

	login_with(w, none);
	wbuf_init(&want, buf, sizeof(buf));
	proto_auth_ok(&want);
	/* pool_reported_params() order, those the base has */
	proto_param_status(&want, "server_version", "15.4");
	proto_param_status(&want, "client_encoding", "UTF8");
	proto_param_status(&want, "application_name", "");
	proto_param_status(&want, "DateStyle", "ISO, MDY");
	proto_backend_key(&want, w->c->id, w->c->cancel_key);
	proto_ready(&want, 'I');
	assert_received(w, &want);
	cr_assert_eq(w->c->state, CLIENT_IDLE);
	cr_assert(w->c->welcomed);
	cr_assert_eq(w->c->pool, pool);
}

Test(welcome, a_plain_application_name_is_reported_back_without_a_backend)
{
	struct wire *w = wire_connect();
	uint8_t buf[512];
	struct wbuf want;

	/* A base that has search_path reports it (PostgreSQL 15 does not; pool_reported_params() allows it). */
	cr_assert_eq(params_put(&pool->base, "search_path", "\"$user\", public"), 0);
	login_with(w, (const char *const[]){ "application_name", "my app", NULL });
	wbuf_init(&want, buf, sizeof(buf));
	proto_auth_ok(&want);
	proto_param_status(&want, "server_version", "15.4");
	proto_param_status(&want, "client_encoding", "UTF8");
	proto_param_status(&want, "application_name", "my app");
	proto_param_status(&want, "DateStyle", "ISO, MDY");
	proto_param_status(&want, "search_path", "\"$user\", public");
	proto_backend_key(&want, w->c->id, w->c->cancel_key);
	proto_ready(&want, 'I');
	assert_received(w, &want);
	cr_assert_eq(pool->leased.count + pool->connecting.count, 0, "no backend was needed");
}

Test(welcome, settings_postgres_must_check_wait_for_a_lease)
{
	struct wire *w = wire_connect();

	cr_assert_eq(pool_pause_db(pool->dbname), 0); /* the lease cannot come: what it waits in is visible */
	login_with(w, (const char *const[]){ "TimeZone", "asia/tokyo", NULL });
	for (int i = 0; i < 50 && w->c->state != CLIENT_WAITING; i++)
		wire_wait(w, 0.02);
	cr_assert_eq(w->c->state, CLIENT_WAITING);
	cr_assert_not(w->c->welcomed);
	cr_assert_eq(w->len, 0, "nothing is answered before PostgreSQL checked the setting");
}

Test(welcome, a_checked_list_is_answered_from_the_cache_as_postgres_spelled_it)
{
	struct param_set sequence = PARAMS_EMPTY, key = PARAMS_EMPTY;
	struct vet_answer answer = { 0 };
	struct wire *w = wire_connect();
	uint8_t buf[512];
	struct wbuf want;

	cr_assert_eq(params_put(&pool->base, "TimeZone", "UTC"), 0);
	cr_assert_eq(params_append(&sequence, "TimeZone", "asia/tokyo"), 0);
	cr_assert_eq(vet_key(&sequence, &key), 0);
	cr_assert_eq(params_put(&answer.canonical, "TimeZone", "Asia/Tokyo"), 0);
	cr_assert_eq(vet_cache_add(&pool->vetted, &key, &answer), 0);
	login_with(w, (const char *const[]){ "TimeZone", "asia/tokyo", NULL });
	wbuf_init(&want, buf, sizeof(buf));
	proto_auth_ok(&want);
	proto_param_status(&want, "server_version", "15.4");
	proto_param_status(&want, "client_encoding", "UTF8");
	proto_param_status(&want, "application_name", "");
	proto_param_status(&want, "DateStyle", "ISO, MDY");
	proto_param_status(&want, "TimeZone", "Asia/Tokyo");
	proto_backend_key(&want, w->c->id, w->c->cancel_key);
	proto_ready(&want, 'I');
	assert_received(w, &want);
	cr_assert_str_eq(params_get(&w->c->startup, "timezone"), "Asia/Tokyo", "RESET returns to PostgreSQL's spelling");
	params_free(&sequence);
	params_free(&key);
	vet_answer_free(&answer);
}

Test(welcome, a_pool_that_cannot_reach_a_backend_fails_the_login_with_libpq_error)
{
	struct wire *w = wire_connect(), *again = wire_connect();
	static const char *const none[] = { NULL };

	pool->have_base = false;             /* the first login needs the first backend */
	login_with(w, none);
	struct msg m = next_msg(w);
	cr_assert_eq(m.type, 'E');
	cr_assert_str_eq(field(&m, 'S'), "FATAL");
	cr_assert_str_eq(field(&m, 'C'), "08001");
	cr_assert(strstr(field(&m, 'M'), "/nonexistent/pglease-test/.s.PGSQL.5432"), "%s", field(&m, 'M'));
	cr_assert(closed_quietly(w));
	/* Within the retry delay the next login fails at once, with the same error. */
	login_with(again, none);
	m = next_msg(again);
	cr_assert_eq(m.type, 'E');
	cr_assert_str_eq(field(&m, 'C'), "08001");
	cr_assert_eq(pool->stats.servers_failed, 1, "no second connect attempt");
}
