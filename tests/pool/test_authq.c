/*
 * test_authq.c — Criterion tests for pool/authq.c against the scripted fake
 * backend of fake_backend.h: the pool "app"/"alice" is the auth_user's pool,
 * and the fake answers each extended-protocol query (Parse, Bind, Describe,
 * Execute, Sync) with the rows the test chose.
 *
 * Covered: a user found (the secret, the parameter sent, binary results
 * asked for, the backend lent in state AUTHQ and given back idle), answers
 * never delivered inside authq_lookup(), expiry judged at answer time, no
 * row and a NULL password as no user (never cached), the cache and its
 * flush on reload, coalescing of concurrent lookups, FIFO behind a busy
 * backend, cancel (of one requester, of a queued lookup), a query error, a
 * backend lost under a lookup (one retry), a failed connect, and
 * pool_verify() at every step.
 */
#include <criterion/criterion.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authq.h"
#include "authq_cache.h"
#include "env.h"
#include "config.h"
#include "log.h"
#include "pool.h"
#include "proto.h"
#include "server.h"
#include "verify.h"

#include "fake_backend.h"

/* ---- what the fake answers ---- */

struct fake_row {
	const char *name, *passwd;   /* passwd NULL: SQL NULL */
	bool has_valuntil;           /* else NULL */
	int64_t valuntil;
};

static struct {
	struct fake_row rows[4];
	int nrows, ncols;
	const char *error_sqlstate, *error_message;
	bool hang_up;                /* close the connection instead of answering */
	char param[64];              /* the last $1 seen */
	int result_format;           /* the last Bind's result format code */
} script;

static void field(struct wbuf *w, const char *name, uint32_t type, int16_t len)
{
	wbuf_cstr(w, name);
	wbuf_int32(w, 0);
	wbuf_byte(w, 0); wbuf_byte(w, 0);
	wbuf_int32(w, type);
	wbuf_byte(w, (uint8_t)((uint16_t)len >> 8)); wbuf_byte(w, (uint8_t)len);
	wbuf_int32(w, 0xffffffffu);
	wbuf_byte(w, 0); wbuf_byte(w, 1);           /* binary */
}

static void cell(struct wbuf *w, const char *value)
{
	if (!value) {
		wbuf_int32(w, 0xffffffffu);
		return;
	}
	wbuf_int32(w, (uint32_t)strlen(value));
	wbuf_bytes(w, value, strlen(value));
}

static void row(struct wbuf *w, const struct fake_row *r)
{
	size_t m = wbuf_begin(w, 'D');
	wbuf_byte(w, 0); wbuf_byte(w, (uint8_t)script.ncols);
	cell(w, r->name);
	cell(w, r->passwd);
	if (script.ncols == 3 && !r->has_valuntil)
		wbuf_int32(w, 0xffffffffu);
	else if (script.ncols == 3) {
		wbuf_int32(w, 8);
		for (int i = 7; i >= 0; i--)
			wbuf_byte(w, (uint8_t)((uint64_t)r->valuntil >> (8 * i)));
	}
	wbuf_end(w, m);
}

/* Bind: portal, statement, format codes, parameters (we read the first), result format codes. */
static void read_bind(const uint8_t *p)
{
	p += 5;
	p += strlen((const char *)p) + 1;
	p += strlen((const char *)p) + 1;
	int nfmt = p[0] << 8 | p[1];
	p += 2 + 2 * nfmt;
	int nparams = p[0] << 8 | p[1];
	p += 2;
	cr_assert_eq(nparams, 1);
	uint32_t len = be32(p);
	snprintf(script.param, sizeof(script.param), "%.*s", (int)len, (const char *)p + 4);
	p += 4 + len;
	int nres = p[0] << 8 | p[1];
	script.result_format = nres ? (p[2] << 8 | p[3]) : 0;
}

static void answer_sync(const uint8_t *msgs, size_t len, struct wbuf *out)
{
	for (size_t at = 0; at < len; at += 1 + be32(msgs + at + 1))
		if (msgs[at] == 'B')
			read_bind(msgs + at);
	if (script.hang_up) {
		script.hang_up = false;
		fake_hang_up();
		/* The next connection is a new backend: it logs in again. */
		fake.startup_seen = false;
		return;
	}
	size_t m = wbuf_begin(out, '1'); wbuf_end(out, m);
	m = wbuf_begin(out, '2'); wbuf_end(out, m);
	if (script.error_sqlstate) {
		script_error(out, "ERROR", script.error_sqlstate, script.error_message);
		proto_ready(out, 'I');
		return;
	}
	m = wbuf_begin(out, 'T');
	wbuf_byte(out, 0); wbuf_byte(out, (uint8_t)script.ncols);
	field(out, "usename", 19, 64);
	field(out, "passwd", 25, -1);
	if (script.ncols == 3)
		field(out, "valuntil", 1184, 8);
	wbuf_end(out, m);
	for (int i = 0; i < script.nrows; i++)
		row(out, &script.rows[i]);
	char tag[32];
	snprintf(tag, sizeof(tag), "SELECT %d", script.nrows);
	m = wbuf_begin(out, 'C');
	wbuf_cstr(out, tag);
	wbuf_end(out, m);
	proto_ready(out, 'I');
}

/* ---- the requester's side ---- */

struct asked {
	bool answered, inside_call;
	enum authq_status status;
	char secret[128], error[256];
	bool expired;
};

static bool in_lookup;

static void on_answer(void *arg, const struct authq_answer *a)
{
	struct asked *r = arg;

	cr_assert_not(r->answered, "answered twice");
	r->answered = true;
	r->inside_call = in_lookup;
	r->status = a->status;
	r->expired = a->expired;
	snprintf(r->secret, sizeof(r->secret), "%s", a->status == AUTHQ_FOUND ? a->secret : "");
	snprintf(r->error, sizeof(r->error), "%s", a->status == AUTHQ_FAILED ? a->error : "");
}

static struct authq_request *ask(const char *user, struct asked *r)
{
	in_lookup = true;
	struct authq_request *req = authq_lookup("app", user, on_answer, r);
	in_lookup = false;
	cr_assert_not_null(req);
	cr_assert_not(r->answered, "answered inside authq_lookup()");
	return req;
}

static struct asked *waited_for;
static bool is_answered(void) { return waited_for->answered; }

static void wait_answer(struct asked *r)
{
	waited_for = r;
	cr_assert(run_until(is_answered), "no answer");
	cr_assert_not(r->inside_call);
}

static bool back_idle(void) { return pool->idle.count == 1 && pool->authq.count == 0; }

static void verified(void)
{
	const char *v = pool_verify_find();
	cr_assert_null(v, "%s", v);
}

static int64_t pg_time(double unix_seconds)
{
	return (int64_t)((unix_seconds - AUTHQ_PG_EPOCH) * 1e6);
}

static void setup(void)
{
	fake_setup();
	conf.auth_user = "alice";
	conf.auth_query = AUTHQ_DEFAULT_QUERY;
	conf.auth_dbname = "";
	conf.auth_query_cache_ttl = 10;
	conf.dbs = &dbc;
	conf.db_count = 1;
	memset(&script, 0, sizeof(script));
	script.ncols = 3;
	script.nrows = 1;
	script.rows[0] = (struct fake_row){ .name = "bob", .passwd = "SCRAM-SHA-256$4096:c2FsdA==$a:b" };
	fake.on_sync = answer_sync;
}

TestSuite(authq, .init = setup, .fini = fake_teardown, .timeout = 20);

/* ---- found ---- */

Test(authq, a_user_found_is_answered_later_with_its_secret_and_the_backend_comes_back)
{
	connected();
	struct asked r = { 0 };

	ask("bob", &r);
	cr_assert_eq(pool->authq.count, 1, "the idle backend is lent at once");
	cr_assert_eq(pool->idle.count, 0);
	cr_assert_eq(list_entry(list_first(&pool->authq), struct server, node)->state, SERVER_AUTHQ);
	verified();
	wait_answer(&r);
	cr_assert_eq(r.status, AUTHQ_FOUND);
	cr_assert_str_eq(r.secret, "SCRAM-SHA-256$4096:c2FsdA==$a:b");
	cr_assert_not(r.expired, "a NULL valuntil never expires");
	cr_assert_str_eq(script.param, "bob", "$1 is the user");
	cr_assert_eq(script.result_format, 1, "binary results");
	cr_assert_eq(fake.syncs, 1);
	cr_assert(back_idle(), "given back to the pool");
	verified();
}

Test(authq, a_lookup_opens_a_backend_when_the_pool_has_none)
{
	struct asked r = { 0 };

	script_login(&fake.login);
	ask("bob", &r);
	cr_assert_eq(pool->connecting.count, 1);
	cr_assert_eq(pool->authq_waiting, 1);
	verified();
	wait_answer(&r);
	cr_assert_eq(r.status, AUTHQ_FOUND);
	cr_assert(back_idle());
	verified();
}

Test(authq, expiry_is_judged_when_answering)
{
	connected();
	struct asked past = { 0 }, future = { 0 }, infinite = { 0 };

	script.rows[0].has_valuntil = true;
	script.rows[0].valuntil = pg_time(ev_time() - 3600);
	ask("bob", &past);
	wait_answer(&past);
	cr_assert_eq(past.status, AUTHQ_FOUND);
	cr_assert(past.expired);

	script.rows[0] = (struct fake_row){ "carol", "md5abc", true, pg_time(ev_time() + 3600) };
	ask("carol", &future);
	wait_answer(&future);
	cr_assert_not(future.expired);

	script.rows[0] = (struct fake_row){ "dave", "pw", true, INT64_MAX };
	ask("dave", &infinite);
	wait_answer(&infinite);
	cr_assert_not(infinite.expired, "'infinity'");
	verified();
}

Test(authq, a_two_column_query_works_without_expiry)
{
	connected();
	struct asked r = { 0 };

	conf.auth_query = "SELECT usename, passwd FROM pg_shadow WHERE usename=$1";
	script.ncols = 2;
	ask("bob", &r);
	wait_answer(&r);
	cr_assert_eq(r.status, AUTHQ_FOUND);
	cr_assert_not(r.expired);
}

/* ---- misses ---- */

Test(authq, no_row_and_a_null_password_are_no_user_and_never_cached)
{
	connected();
	struct asked none = { 0 }, again = { 0 }, nopass = { 0 }, nopass2 = { 0 };

	script.nrows = 0;
	ask("ghost", &none);
	wait_answer(&none);
	cr_assert_eq(none.status, AUTHQ_NO_USER);
	ask("ghost", &again);
	wait_answer(&again);
	cr_assert_eq(again.status, AUTHQ_NO_USER);
	cr_assert_eq(fake.syncs, 2, "a miss is asked again");

	script.nrows = 1;
	script.rows[0] = (struct fake_row){ .name = "nopw" };
	ask("nopw", &nopass);
	wait_answer(&nopass);
	cr_assert_eq(nopass.status, AUTHQ_NO_USER);
	ask("nopw", &nopass2);
	wait_answer(&nopass2);
	cr_assert_eq(fake.syncs, 4, "a role without a password is not cached");
	verified();
}

/* ---- the cache ---- */

Test(authq, a_found_user_is_cached_until_the_ttl_or_a_reload)
{
	connected();
	struct asked first = { 0 }, cached = { 0 }, after_reload = { 0 };

	ask("bob", &first);
	wait_answer(&first);
	script.rows[0].passwd = "changed";
	ask("bob", &cached);
	cr_assert_eq(pool->authq.count, 0, "no backend for a cached user");
	wait_answer(&cached);
	cr_assert_eq(fake.syncs, 1);
	cr_assert_str_eq(cached.secret, "SCRAM-SHA-256$4096:c2FsdA==$a:b");

	authq_reload();
	ask("bob", &after_reload);
	wait_answer(&after_reload);
	cr_assert_eq(fake.syncs, 2);
	cr_assert_str_eq(after_reload.secret, "changed");
}

Test(authq, a_ttl_of_zero_keeps_nothing)
{
	connected();
	struct asked a = { 0 }, b = { 0 };

	conf.auth_query_cache_ttl = 0;
	ask("bob", &a);
	wait_answer(&a);
	ask("bob", &b);
	wait_answer(&b);
	cr_assert_eq(fake.syncs, 2);
}

Test(authq, expiry_of_a_cached_user_is_judged_when_answering)
{
	connected();
	struct asked first = { 0 }, later = { 0 };

	script.rows[0].has_valuntil = true;
	script.rows[0].valuntil = pg_time(ev_time() + 0.3);
	ask("bob", &first);
	wait_answer(&first);
	cr_assert_not(first.expired);
	usleep(400 * 1000);
	ev_now_update(loop);
	ask("bob", &later);
	wait_answer(&later);
	cr_assert_eq(fake.syncs, 1, "from the cache");
	cr_assert(later.expired, "valuntil passed while it was cached");
}

/* ---- several at once ---- */

Test(authq, concurrent_lookups_for_one_user_share_one_query)
{
	connected();
	struct asked r[3] = { 0 };

	for (int i = 0; i < 3; i++)
		ask("bob", &r[i]);
	verified();
	for (int i = 0; i < 3; i++) {
		wait_answer(&r[i]);
		cr_assert_eq(r[i].status, AUTHQ_FOUND);
	}
	cr_assert_eq(fake.syncs, 1);
	verified();
}

Test(authq, lookups_wait_fifo_for_a_busy_pool)
{
	connected();
	struct asked bob = { 0 }, carol = { 0 }, bob2 = { 0 };

	pool->size = 1;
	ask("bob", &bob);
	ask("carol", &carol);
	ask("bob", &bob2);
	cr_assert_eq(pool->authq.count, 1);
	cr_assert_eq(pool->authq_waiting, 1, "carol waits; bob's second request joined the running lookup");
	verified();
	wait_answer(&carol);
	cr_assert(bob.answered && bob2.answered, "bob's query ran first");
	cr_assert_str_eq(script.param, "carol");
	cr_assert_eq(fake.syncs, 2);
	cr_assert(back_idle());
	verified();
}

/* ---- going away ---- */

Test(authq, a_cancelled_request_is_never_answered)
{
	connected();
	struct asked kept = { 0 }, gone = { 0 };

	ask("bob", &kept);
	struct authq_request *req = ask("bob", &gone);
	authq_cancel(req);
	verified();
	wait_answer(&kept);
	for (int i = 0; i < 5; i++)
		ev_run(loop, EVRUN_NOWAIT);
	cr_assert_not(gone.answered);
	verified();
}

Test(authq, cancelling_the_only_request_of_a_queued_lookup_drops_it)
{
	connected();
	struct asked bob = { 0 }, carol = { 0 };

	pool->size = 1;
	ask("bob", &bob);
	struct authq_request *req = ask("carol", &carol);
	cr_assert_eq(pool->authq_waiting, 1);
	authq_cancel(req);
	cr_assert_eq(pool->authq_waiting, 0);
	verified();
	wait_answer(&bob);
	cr_assert(run_until(back_idle));
	cr_assert_eq(fake.syncs, 1, "carol was never asked");
	cr_assert_not(carol.answered);
}

Test(authq, a_cancelled_answer_not_yet_delivered_is_dropped)
{
	connected();
	struct asked first = { 0 }, cached = { 0 };

	ask("bob", &first);
	wait_answer(&first);
	authq_cancel(ask("bob", &cached));   /* answered from the cache, not delivered yet */
	for (int i = 0; i < 5; i++)
		ev_run(loop, EVRUN_NOWAIT);
	cr_assert_not(cached.answered);
}

/* ---- failures ---- */

Test(authq, a_query_error_fails_the_lookup_and_the_backend_is_reused)
{
	connected();
	struct asked r = { 0 };

	script.error_sqlstate = "42501";
	script.error_message = "permission denied for view pg_shadow";
	ask("bob", &r);
	wait_answer(&r);
	cr_assert_eq(r.status, AUTHQ_FAILED);
	cr_assert(strstr(r.error, "permission denied for view pg_shadow"), "%s", r.error);
	cr_assert(strstr(r.error, "42501"), "%s", r.error);
	cr_assert(back_idle());
	verified();
}

Test(authq, a_bad_answer_fails_the_lookup)
{
	connected();
	struct asked r = { 0 };

	script.nrows = 2;
	script.rows[1] = script.rows[0];
	ask("bob", &r);
	wait_answer(&r);
	cr_assert_eq(r.status, AUTHQ_FAILED);
	cr_assert(strstr(r.error, "2 rows"), "%s", r.error);
}

Test(authq, a_backend_lost_under_a_lookup_is_replaced_once)
{
	connected();
	struct asked r = { 0 };

	script.hang_up = true;
	ask("bob", &r);
	wait_answer(&r);
	cr_assert_eq(r.status, AUTHQ_FOUND, "%s", r.error);
	cr_assert_eq(fake.syncs, 2, "asked again on a new backend");
	cr_assert(run_until(back_idle));
	verified();
}

Test(authq, a_pool_that_cannot_connect_fails_its_lookups)
{
	struct asked r = { 0 };

	fake_stop();   /* nothing listens: the connect fails */
	ask("bob", &r);
	wait_answer(&r);
	cr_assert_eq(r.status, AUTHQ_FAILED);
	cr_assert(strstr(r.error, "cannot connect"), "%s", r.error);
	cr_assert_eq(pool->authq_waiting, 0);
	verified();
	fake_start();   /* for the teardown */
}

Test(authq, a_lookup_without_auth_user_or_database_cannot_start)
{
	conf.auth_user = "";
	cr_assert_null(authq_lookup("app", "bob", on_answer, NULL));
	conf.auth_user = "alice";
	conf.auth_dbname = "nowhere";
	cr_assert_null(authq_lookup("app", "bob", on_answer, NULL));
}

Test(authq, a_queued_lookup_fails_after_query_wait_timeout)
{
	connected();
	struct asked bob = { 0 }, carol = { 0 };

	pool->size = 1;
	conf.query_wait_timeout = 0.2;
	script.hang_up = false;
	ask("bob", &bob);
	ask("carol", &carol);
	/* bob's backend is never given back while we hold the loop: fail carol by the clock. */
	ev_now_update(loop);
	authq_maintain(ev_now(loop) + 1);
	cr_assert_eq(pool->authq_waiting, 0);
	wait_answer(&carol);
	cr_assert_eq(carol.status, AUTHQ_FAILED);
	cr_assert(strstr(carol.error, "query_wait_timeout"), "%s", carol.error);
	wait_answer(&bob);
	cr_assert_eq(bob.status, AUTHQ_FOUND);
	verified();
}

Test(authq, a_database_entry_auth_user_overrides_the_global_one)
{
	connected();
	struct asked r = { 0 };

	conf.auth_user = "";
	dbc.auth_user = "alice";   /* app's own auth_user=: its pool app/alice runs the query */
	ask("bob", &r);
	cr_assert_eq(pool->authq.count, 1, "lent from app/alice");
	wait_answer(&r);
	cr_assert_eq(r.status, AUTHQ_FOUND);
	dbc.auth_user = "";        /* auth_user= with nothing: no lookups for this database */
	conf.auth_user = "alice";
	cr_assert_null(authq_lookup("app", "bob", on_answer, NULL));
	dbc.auth_user = NULL;
}

Test(authq, a_paused_pool_lends_nothing_until_resumed)
{
	connected();
	struct asked r = { 0 };

	cr_assert_eq(pool_pause_db("app"), 0);
	ask("bob", &r);
	cr_assert_eq(pool->authq_waiting, 1, "queued beside an idle backend while paused");
	cr_assert_eq(pool->idle.count, 1);
	verified();
	for (int i = 0; i < 5; i++)
		ev_run(loop, EVRUN_NOWAIT);
	cr_assert_not(r.answered);
	pool_resume_db("app");
	cr_assert_eq(pool->authq.count, 1, "RESUME lends it");
	wait_answer(&r);
	cr_assert_eq(r.status, AUTHQ_FOUND);
	verified();
}

Test(authq, a_closing_pool_fails_its_queued_lookups)
{
	connected();
	struct asked bob = { 0 }, carol = { 0 };

	pool->size = 1;
	ask("bob", &bob);
	ask("carol", &carol);
	pool_close(pool, POOL_CLOSE_AT_TX_END, "database removed");
	wait_answer(&carol);
	cr_assert_eq(carol.status, AUTHQ_FAILED);
	cr_assert(strstr(carol.error, "closing"), "%s", carol.error);
	wait_answer(&bob);
	cr_assert_eq(bob.status, AUTHQ_FOUND, "the running lookup ends with its backend");
	cr_assert(run_until(none_left), "its backend is retired, not idled");
	verified();
}
