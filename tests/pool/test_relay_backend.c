/*
 * test_relay_backend.c — Criterion tests for the relay and the lease around it
 * (pool/relay.c, pool/lease.c) with a backend; test_relay.c has the relay's cases without one:
 * end to end without PostgreSQL: a client program on a socketpair
 * (tests/lib/wire_client.h) and the scripted backend of fake_backend.h.
 * A Query and its replies pass byte for byte; transaction mode gives the
 * backend back at ReadyForQuery 'I' and keeps it through 'T'; Terminate is
 * never forwarded; a client that leaves inside a transaction has it rolled
 * back through libpq and the backend reused.
 */
#include <criterion/criterion.h>

#include "env.h"
#include "client.h"
#include "config.h"
#include "lease.h"

#include "fake_backend.h"
#define WIRE_OWN_POOL
#include "../lib/wire_client.h"

/* What the fake backend answers, per statement, as PostgreSQL would. */
static void answer(const char *sql, struct wbuf *out)
{
	static const char *const one[] = { "1" };
	bool tag_only = strcmp(sql, "BEGIN") == 0 || strcmp(sql, "COMMIT") == 0 || strcmp(sql, "ROLLBACK") == 0;

	if (tag_only) {
		size_t m = wbuf_begin(out, 'C');
		wbuf_cstr(out, sql);
		wbuf_end(out, m);
	} else {
		script_rows(out, one, 1);
	}
	proto_ready(out, strcmp(sql, "BEGIN") == 0 ? 'T' : 'I');
}

static void setup(void)
{
	fake_setup();
	conf.dbs = &dbc;
	conf.db_count = 1;
	conf.max_client_conn = 10;
	conf.client_login_timeout = 60;
	conf.admin_users = conf.stats_users = conf.metrics_listen = "";
	conf.server_check_delay = 30;
	conf.server_check_query = "";
	conf.server_reset_query = "DISCARD ALL";
	conf.session_state = SESSION_STATE_PIN;
	conf.max_prepared_statements = 200;
	fake.on_query = answer;
	cr_assert_eq(worker_start(loop), 0);
}

static void teardown(void)
{
	worker_stop();
	client_reap();
	fake_teardown();
}

TestSuite(relay, .init = setup, .fini = teardown, .timeout = 10);

static struct server *srv;
static struct wire *cl;

/* A backend up and a client logged in (answered from the pool's base). */
static void ready(void)
{
	srv = connected();
	cl = wire_connect();
	wire_startup(cl, "alice", "app");
	struct msg m;
	do
		m = next_msg(cl);
	while (m.type && m.type != 'Z');
	cr_assert_eq(m.type, 'Z', "logged in");
	cr_assert_eq(cl->c->pool, pool);
}

static void send_query(const char *sql)
{
	uint8_t buf[256];
	struct wbuf b;

	wbuf_init(&b, buf, sizeof(buf));
	size_t m = wbuf_begin(&b, 'Q');
	wbuf_cstr(&b, sql);
	wbuf_end(&b, m);
	wire_send_buf(cl, &b);
}

/* The client program reads until a ReadyForQuery; returns its status. */
static char until_ready(void)
{
	struct msg m;

	do
		m = next_msg(cl);
	while (m.type && m.type != 'Z');
	cr_assert_eq(m.type, 'Z');
	return (char)m.body[0];
}

static bool backend_idle(void) { return srv->state == SERVER_IDLE && pool->idle.count == 1; }

Test(relay, a_query_and_its_replies_pass_byte_for_byte_and_the_backend_comes_back)
{
	uint8_t want[512];
	struct wbuf w;

	ready();
	size_t before = cl->len;
	send_query("select 1");
	cr_assert_eq(until_ready(), 'I');
	cr_assert_str_eq(fake.last_query, "select 1");
	wbuf_init(&w, want, sizeof(want));
	answer("select 1", &w);
	cr_assert_eq(cl->len - before, w.len, "exactly the backend's bytes");
	cr_assert_arr_eq(cl->in + before, want, w.len);
	cr_assert(run_until(backend_idle), "the lease ended at ReadyForQuery 'I'");
	cr_assert_eq(cl->c->state, CLIENT_IDLE);
	cr_assert_null(cl->c->lease);
	cr_assert_null(srv->lease, "the lease is over once the backend is clean");
	cr_assert_eq(pool->stats.lease_count, 1);
	cr_assert_eq(pool->stats.stream.xacts, 1);
	cr_assert_eq(pool->stats.stream.queries, 1);
	cr_assert_eq(pool->stats.exits[EXIT_TX_DONE], 1);
}

Test(relay, a_transaction_keeps_its_backend_until_it_ends)
{
	ready();
	send_query("BEGIN");
	cr_assert_eq(until_ready(), 'T');
	cr_assert_eq(cl->c->state, CLIENT_ACTIVE);
	cr_assert_eq(client_server(cl->c), srv);
	cr_assert_eq(server_client(srv), cl->c);
	cr_assert_eq(srv->state, SERVER_LEASED);
	send_query("COMMIT");
	cr_assert_eq(until_ready(), 'I');
	cr_assert(run_until(backend_idle));
	cr_assert_eq(pool->stats.lease_count, 1, "one lease for the whole transaction");
}

Test(relay, terminate_is_never_forwarded)
{
	static const uint8_t terminate[] = { 'X', 0, 0, 0, 4 };

	ready();
	send_query("select 1");
	until_ready();
	wire_send(cl, terminate, sizeof(terminate));
	cr_assert(closed_quietly(cl));
	for (int i = 0; i < 5; i++)
		wire_wait(cl, 0.01);
	cr_assert_eq(fake.raw_len, 0, "the backend saw no Terminate");
	cr_assert_eq(srv->state, SERVER_IDLE, "and stays in the pool");
}

static bool rolled_back(void) { return pool->stats.exit_rollbacks == 1 && backend_idle(); }

Test(relay, a_client_gone_inside_a_transaction_is_rolled_back_and_the_backend_reused)
{
	ready();
	send_query("BEGIN");
	cr_assert_eq(until_ready(), 'T');
	close(cl->fd);
	cr_assert(run_until(rolled_back), "rollbacks %llu", (unsigned long long)pool->stats.exit_rollbacks);
	cr_assert_str_eq(fake.last_query, "ROLLBACK");
	cr_assert_eq(pool->stats.exits[EXIT_CLIENT_GONE], 1);
	cr_assert_eq(pool->stats.servers_closed, 0, "not reconnected: the same backend goes back");
}

static bool waiting_one(void) { return pool->waiting.count == 1; }

Test(relay, a_second_client_waits_for_the_backend_and_gets_it)
{
	ready();
	struct wire *first = cl;
	send_query("BEGIN");
	cr_assert_eq(until_ready(), 'T');
	conf.default_pool_size = 1;
	pool->size = 1;                         /* no second backend */
	cl = wire_connect();
	wire_startup(cl, "alice", "app");
	until_ready();
	send_query("select 1");
	cr_assert(run_until(waiting_one));
	cl = first;
	send_query("COMMIT");
	cr_assert_eq(until_ready(), 'I');
	cr_assert(run_until(backend_idle), "the waiter's query ran and its lease ended too");
	cr_assert_eq(pool->stats.lease_count, 2);
	cr_assert_eq(pool->stats.wait_count, 1);
	cr_assert_eq(fake.queries, 3);
}
