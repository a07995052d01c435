/*
 * test_verify.c — Criterion tests for pool/verify.c: a pool whose lists and
 * objects agree passes, and each kind of disagreement is found and named.
 *
 * The objects are built by hand on the real global lists (all_pools,
 * login_clients, admin_clients), as the loop would leave them between two
 * iterations; every test starts from a consistent pool and breaks one thing.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>

#include "client.h"
#include "pause.h"
#include "pool.h"
#include "server.h"
#include "verify.h"

/* Defined in daemon/main.c, which is not in the library. */
struct ev_loop *loop;
const struct config *cfg;

static struct pool pool;
static struct client clients[8];
static struct server servers[8];
static int nclients, nservers;

static struct list *client_list(enum client_state state)
{
	switch (state) {
	case CLIENT_LOGIN: return &login_clients;
	case CLIENT_LOGIN_WAIT: return &pool.login_wait;
	case CLIENT_IDLE: return &pool.clients;
	case CLIENT_WAITING: return &pool.waiting;
	case CLIENT_ACTIVE: return &pool.active;
	case CLIENT_ADMIN: return &admin_clients;
	case CLIENT_CLOSED: break;
	}
	return NULL;
}

static struct list *server_list(enum server_state state)
{
	switch (state) {
	case SERVER_CONNECTING: return &pool.connecting;
	case SERVER_IDLE: return &pool.idle;
	case SERVER_LEASED: return &pool.leased;
	case SERVER_CLEANING: return &pool.cleaning;
	case SERVER_AUTHQ: return &pool.authq;
	case SERVER_CLOSED: break;
	}
	return (struct list *)server_closed_list();
}

static struct client *add_client(enum client_state state)
{
	struct client *c = &clients[nclients++];

	c->id = (uint32_t)nclients;
	c->state = state;
	c->welcomed = state != CLIENT_LOGIN_WAIT && state != CLIENT_LOGIN;
	c->pool = state == CLIENT_LOGIN || state == CLIENT_ADMIN ? NULL : &pool;
	list_push_tail(client_list(state), &c->node);
	client_count++;
	return c;
}

static struct server *add_server(enum server_state state)
{
	struct server *s = &servers[nservers++];
	static int conn;

	s->id = nservers;
	s->state = state;
	s->pool = &pool;
	s->phase = state == SERVER_CONNECTING ? PHASE_CONNECT : PHASE_IDLE;
	s->conn = state == SERVER_CLOSED ? NULL : (PGconn *)&conn;
	stream_reset(&s->stream);
	if (state == SERVER_CLEANING) {
		/* The exit door at work: the lease lives on without its client. */
		s->lease_slot = (struct lease){ .server = s };
		s->lease = &s->lease_slot;
	}
	list_push_tail(server_list(state), &s->node);
	return s;
}

/* A lease relaying: both sides point at each other. */
static struct client *add_lease(void)
{
	struct client *c = add_client(CLIENT_ACTIVE);
	struct server *s = add_server(SERVER_LEASED);

	s->lease_slot = (struct lease){ .client = c, .server = s, .relayed = true };
	s->lease = c->lease = &s->lease_slot;
	s->phase = PHASE_RAW;
	s->on_readable = client_relay_from_server;
	return c;
}

static void setup(void)
{
	memset(&pool, 0, sizeof(pool));
	memset(clients, 0, sizeof(clients));
	memset(servers, 0, sizeof(servers));
	nclients = nservers = 0;
	client_count = 0;
	pool.dbname = "db";
	pool.user = "u";
	pool.mode = POOL_MODE_TRANSACTION;
	pool.have_base = true;
	pool.size = 4;
	list_init(&pool.connecting);
	list_init(&pool.idle);
	list_init(&pool.leased);
	list_init(&pool.cleaning);
	list_init(&pool.authq);
	list_init(&pool.login_wait);
	list_init(&pool.clients);
	list_init(&pool.waiting);
	list_init(&pool.active);
	list_init(&login_clients);
	list_init(&admin_clients);
	list_init((struct list *)server_closed_list());
	list_push_tail(&all_pools, &pool.node);
}

static void teardown(void)
{
	list_init(&all_pools);
	list_init(&login_clients);
	list_init(&admin_clients);
	list_init((struct list *)server_closed_list());
	client_count = 0;
}

TestSuite(verify, .init = setup, .fini = teardown);

/* Fails the test unless the verifier finds a violation whose text contains what. */
static void expect_violation(const char *what)
{
	const char *v = pool_verify_find();

	cr_assert_not_null(v, "expected a violation containing \"%s\"", what);
	cr_assert(strstr(v, what), "violation \"%s\" does not contain \"%s\"", v, what);
}

static void expect_none(void)
{
	const char *v = pool_verify_find();

	cr_assert_null(v, "unexpected violation: %s", v);
}

/* One object in every state a pool can hold, plus a login, a console session and a closed server. */
static void populate(void)
{
	add_client(CLIENT_LOGIN);
	add_client(CLIENT_ADMIN)->admin = (struct admin_conn *)&pool;
	add_client(CLIENT_IDLE);
	add_lease();
	add_server(SERVER_CONNECTING);
	add_server(SERVER_CLEANING)->phase = PHASE_QUERY;
	add_server(SERVER_CLOSED);
}

Test(verify, empty_state_passes)
{
	expect_none();
}

Test(verify, every_state_passes)
{
	populate();
	add_server(SERVER_IDLE);
	expect_none();
}

Test(verify, login_wait_and_waiting_pass_where_they_may)
{
	pool.have_base = false;
	add_client(CLIENT_LOGIN_WAIT);
	add_client(CLIENT_WAITING);
	add_server(SERVER_CONNECTING);
	expect_none();
}

Test(verify, client_on_the_wrong_list)
{
	populate();
	clients[2].state = CLIENT_WAITING;   /* on pool.clients */
	expect_violation("c->state == state");
	expect_violation("client 3");
	expect_violation("clients of pool db/u");
}

Test(verify, client_of_another_pool)
{
	struct pool other = { .dbname = "x", .user = "y" };

	populate();
	clients[2].pool = &other;
	expect_violation("c->pool == p");
}

Test(verify, active_client_without_lease)
{
	struct client *c = add_lease();

	c->lease = NULL;
	/* Seen from its backend first: servers are checked before clients. */
	expect_violation("c->lease == l");
	expect_violation("server 1");
}

Test(verify, lease_pointers_disagree)
{
	struct client *a = add_lease();
	struct client *b = add_lease();

	/* a's backend's lease names b as its holder. */
	client_server(a)->lease_slot.client = b;
	expect_violation("c->lease == l");
	expect_violation("server 1");
}

Test(verify, idle_client_holding_a_server)
{
	struct client *c = add_client(CLIENT_IDLE);
	struct server *s = add_server(SERVER_CLEANING);

	s->phase = PHASE_QUERY;
	c->lease = s->lease;
	expect_violation("!c->lease");
}

Test(verify, leased_server_without_client)
{
	add_server(SERVER_LEASED)->phase = PHASE_RAW;
	expect_violation("l != NULL");
}

Test(verify, cleaning_server_with_client)
{
	struct client *c = add_client(CLIENT_IDLE);
	struct server *s = add_server(SERVER_CLEANING);

	s->lease->client = c;
	s->phase = PHASE_QUERY;
	expect_violation("!s->lease->client");
}

Test(verify, idle_server_in_raw_relay)
{
	struct server *s = add_server(SERVER_IDLE);

	s->phase = PHASE_RAW;
	s->on_readable = client_relay_from_server;
	expect_violation("state == SERVER_LEASED");
}

Test(verify, idle_server_not_clean)
{
	struct server *s = add_server(SERVER_IDLE);

	s->stream.owed_z = 1;
	expect_violation("stream_idle");
}

Test(verify, idle_server_with_cancel_pending)
{
	add_server(SERVER_IDLE)->cancels_pending = 1;
	expect_violation("cancels_pending == 0");
}

Test(verify, idle_server_of_an_old_generation)
{
	add_server(SERVER_IDLE);
	pool.generation++;
	expect_violation("s->generation == p->generation");
}

Test(verify, relaying_lease_not_marked_relayed)
{
	add_lease()->lease->relayed = false;
	expect_violation("l->relayed");
}

Test(verify, query_phase_lease_without_its_callback)
{
	client_server(add_lease())->phase = PHASE_QUERY;
	expect_violation("l->query_done");
}

Test(verify, unwelcomed_client_relaying)
{
	add_lease()->welcomed = false;
	expect_violation("c->welcomed || s->phase == PHASE_QUERY");
}

Test(verify, pinned_client_without_lease)
{
	add_client(CLIENT_IDLE)->pinned = true;
	expect_violation("state == CLIENT_ACTIVE");
}

Test(verify, pin_that_lasts_is_a_pin)
{
	add_lease()->pin_lasts = true;
	expect_violation("!c->pin_lasts || c->pinned");
}

Test(verify, login_wait_once_the_pool_knows_its_settings)
{
	add_client(CLIENT_LOGIN_WAIT);
	expect_violation("!p->have_base");
}

Test(verify, list_count_wrong)
{
	populate();
	pool.clients.count++;
	expect_violation("count == nodes");
	expect_violation("clients of pool db/u counts 2, has 1");
}

Test(verify, list_links_broken)
{
	populate();
	struct client *c = add_client(CLIENT_IDLE);
	c->node.prev = &pool.clients.head;   /* skips the client before it going backwards */
	expect_violation("n->next->prev == n");
}

Test(verify, waiting_client_while_a_backend_is_idle)
{
	add_client(CLIENT_WAITING);
	add_server(SERVER_IDLE);
	expect_violation("list_empty(&p->waiting) || list_empty(&p->idle) || pool_paused(p)");
	cr_assert_eq(pause_add(pool.dbname), 0);
	expect_none();
}

Test(verify, paused_pool_granted_a_lease)
{
	cr_assert_eq(pause_add(pool.dbname), 0);
	pool.leases_at_pause = pool.stats.lease_count = 5;
	expect_none();
	pool.stats.lease_count++;
	expect_violation("p->stats.lease_count == p->leases_at_pause");
}

Test(verify, closing_pool_not_retired)
{
	pool.closing = POOL_CLOSE_AT_LEASE_END;
	expect_violation("!p->closing || p->retired");
	pool.retired = true;
	expect_none();
}

Test(verify, login_client_in_a_pool)
{
	add_client(CLIENT_LOGIN)->pool = &pool;
	expect_violation("!c->pool");
	expect_violation("login_clients");
}

Test(verify, console_client_without_its_state)
{
	add_client(CLIENT_ADMIN);
	expect_violation("(state == CLIENT_ADMIN) == (c->admin != NULL)");
}

Test(verify, closed_server_still_leased)
{
	struct server *s = add_server(SERVER_CLOSED);

	s->lease_slot = (struct lease){ .client = add_client(CLIENT_IDLE), .server = s };
	s->lease = &s->lease_slot;
	expect_violation("closed_servers");
}

Test(verify, open_server_on_the_closed_list)
{
	add_server(SERVER_CLOSED)->state = SERVER_IDLE;
	expect_violation("s->state == SERVER_CLOSED");
}

Test(verify, client_count_off)
{
	populate();
	client_count++;
	expect_violation("client_count 5, listed 4");
}

Test(verify, pool_verify_aborts, .signal = SIGABRT)
{
	add_client(CLIENT_IDLE)->pinned = true;
	pool_verify();
}

Test(verify, pool_verify_returns_when_all_holds)
{
	populate();
	pool_verify();
}

/* auth_query (pool/authq.c): a lent backend belongs to a lookup, and the pool's count is of queued lookups. */
Test(verify, auth_query_server_without_its_lookup)
{
	populate();
	add_server(SERVER_AUTHQ)->phase = PHASE_QUERY;
	expect_violation("s->authq != NULL");
}

Test(verify, auth_query_waiting_count_without_lookups)
{
	populate();
	pool.authq_waiting = 1;
	expect_violation("authq_waiting 1, queued 0");
}
