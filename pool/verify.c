/*
 * verify.c — the invariants of pool/README.md and daemon/README.md, checked.
 *
 * State is the list an object is on: pool_verify() walks every list and
 * checks that each object's state, pointers and phase say what the list
 * says, that a lease is a pair of objects pointing at each other, and that
 * the counts add up. It is a debugging aid: it reads, never repairs, and a
 * violation ends the process (abort(), so a sanitizer run or the torture
 * test stops at the first impossible state, with the ids to look for in
 * the log). Only what holds between loop iterations is checked.
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>

#include "authq.h"
#include "caps.h"
#include "client.h"
#include "log.h"
#include "pool.h"
#include "server.h"
#include "verify.h"

static char violation[1024];

/* Notes the first violation; false, so that a check can return it. */
__attribute__((format(printf, 2, 3)))
static bool fail(const char *invariant, const char *fmt, ...)
{
	char objects[768];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(objects, sizeof(objects), fmt, ap);
	va_end(ap);
	snprintf(violation, sizeof(violation), "invariant violated: %s: %s", invariant, objects);
	return false;
}

/* ctx names the list being walked (and its pool). */
#define CHECK_CLIENT(ctx, c, cond) do { if (!(cond)) \
	return fail(#cond, "client %u (state %d) on %s", (c)->id, (int)(c)->state, (ctx)); } while (0)
#define CHECK_SERVER(ctx, s, cond) do { if (!(cond)) \
	return fail(#cond, "server %d (backend pid %d, state %d, phase %d) on %s", (s)->id, (s)->backend_pid, \
		    (int)(s)->state, (int)(s)->phase, (ctx)); } while (0)
#define CHECK_POOL(p, cond) do { if (!(cond)) \
	return fail(#cond, "pool %s/%s", (p)->dbname, (p)->user); } while (0)

/* ---- lists ---- */

/* Linked both ways, and as long as its count says; a corrupt list is not walked further. */
static bool check_list(const struct list *l, const char *ctx)
{
	const struct list_node *n = &l->head;
	int walked = -1;

	do {
		if (n->next->prev != n || n->prev->next != n)
			return fail("n->next->prev == n && n->prev->next == n", "node %d of %s", walked + 1, ctx);
		n = n->next;
		walked++;
	} while (n != &l->head && walked <= l->count);
	if (walked != l->count)
		return fail("count == nodes", "%s counts %d, has %s%d", ctx, l->count, n == &l->head ? "" : "over ",
			    walked);
	return true;
}

#define for_each_node(pos, l) for ((pos) = (l)->head.next; (pos) != &(l)->head; (pos) = (pos)->next)

/* ---- clients ---- */

static bool check_leasing_client(const struct client *c, const char *ctx)
{
	const struct lease *l = c->lease;

	CHECK_CLIENT(ctx, c, l != NULL);
	CHECK_CLIENT(ctx, c, l->client == c);
	const struct server *s = l->server;
	CHECK_CLIENT(ctx, c, s != NULL);
	CHECK_CLIENT(ctx, c, s->lease == l && l == &s->lease_slot);
	CHECK_CLIENT(ctx, c, s->state == SERVER_LEASED);
	CHECK_CLIENT(ctx, c, s->pool == c->pool);
	/* Until its login is answered, its backend is checking its startup settings (vet.c). */
	CHECK_CLIENT(ctx, c, c->welcomed || s->phase == PHASE_QUERY);
	return true;
}

/* A client of a pool: the list it is on is its state, and only ACTIVE holds a backend. */
static bool check_pool_client(const struct client *c, const struct pool *p, enum client_state state,
			      const char *ctx)
{
	CHECK_CLIENT(ctx, c, c->state == state);
	CHECK_CLIENT(ctx, c, c->pool == p);
	CHECK_CLIENT(ctx, c, !c->admin);
	/* A pin of state that lasts is a pin; and a pin keeps the lease. */
	CHECK_CLIENT(ctx, c, !c->pin_lasts || c->pinned);
	CHECK_CLIENT(ctx, c, !c->pinned || (state == CLIENT_ACTIVE && p->mode == POOL_MODE_TRANSACTION));
	if (state == CLIENT_ACTIVE)
		return check_leasing_client(c, ctx);
	CHECK_CLIENT(ctx, c, !c->lease);
	/* LOGIN_WAIT: until the pool knows its backend's settings; IDLE: logged in. */
	CHECK_CLIENT(ctx, c, state != CLIENT_LOGIN_WAIT || (!c->welcomed && !p->have_base));
	CHECK_CLIENT(ctx, c, state != CLIENT_IDLE || c->welcomed);
	return true;
}

/* The lists outside any pool: logins not finished, and console sessions. */
static bool check_front_client(const struct client *c, enum client_state state, const char *ctx)
{
	CHECK_CLIENT(ctx, c, c->state == state);
	CHECK_CLIENT(ctx, c, !c->pool);
	CHECK_CLIENT(ctx, c, !c->lease);
	CHECK_CLIENT(ctx, c, (state == CLIENT_ADMIN) == (c->admin != NULL));
	return true;
}

static bool check_front_list(const struct list *l, enum client_state state, const char *ctx)
{
	const struct list_node *pos;

	if (!check_list(l, ctx))
		return false;
	for_each_node(pos, l)
		if (!check_front_client(list_entry(pos, struct client, node), state, ctx))
			return false;
	return true;
}

/* ---- servers ---- */

static bool check_leased_server(const struct server *s, const struct pool *p, const char *ctx)
{
	const struct lease *l = s->lease;

	CHECK_SERVER(ctx, s, l != NULL && l == &s->lease_slot && l->server == s);
	const struct client *c = l->client;
	CHECK_SERVER(ctx, s, c != NULL);
	CHECK_SERVER(ctx, s, c->lease == l);
	CHECK_SERVER(ctx, s, c->state == CLIENT_ACTIVE);
	CHECK_SERVER(ctx, s, c->pool == p);
	/* Set up through libpq (a query for the lease holder), or relaying. */
	CHECK_SERVER(ctx, s, s->phase == PHASE_QUERY || s->phase == PHASE_RAW);
	CHECK_SERVER(ctx, s, s->phase != PHASE_QUERY || l->query_done);
	CHECK_SERVER(ctx, s, s->phase != PHASE_RAW || (l->relayed && s->on_readable == client_relay_from_server));
	/* The timeouts' clocks (timeout.c): a request in flight has a start; query_timeout's cancel is for one in flight. */
	CHECK_SERVER(ctx, s, !l->relayed || s->stream.owed_z == 0 || l->request_since > 0);
	CHECK_SERVER(ctx, s, l->query_cancelled_at == 0 || s->stream.owed_z > 0);
	return true;
}

/* pool/README.md, invariant 1: an idle backend is clean and ready for anyone. */
static bool check_idle_server(const struct server *s, const struct pool *p, const char *ctx)
{
	CHECK_SERVER(ctx, s, s->phase == PHASE_IDLE);
	CHECK_SERVER(ctx, s, s->cancels_pending == 0);
	CHECK_SERVER(ctx, s, s->stream.txstatus == 'I' && stream_idle(&s->stream));
	CHECK_SERVER(ctx, s, s->generation == p->generation);
	CHECK_SERVER(ctx, s, s->conn != NULL);
	/* Known dead is closed at once (idle_poll): no idle backend has ended or lost its link. */
	CHECK_SERVER(ctx, s, s->idle_error[0] == '\0');
	CHECK_SERVER(ctx, s, PQstatus(s->conn) == CONNECTION_OK);
	return true;
}

static bool check_pool_server(const struct server *s, const struct pool *p, enum server_state state,
			      const char *ctx)
{
	CHECK_SERVER(ctx, s, s->state == state);
	CHECK_SERVER(ctx, s, s->pool == p);
	CHECK_SERVER(ctx, s, s->cancels_pending >= 0);
	/* The relay's callbacks run only for a lease (the exit door drains with its own). */
	CHECK_SERVER(ctx, s, s->phase != PHASE_RAW || s->on_readable != client_relay_from_server ||
			     state == SERVER_LEASED);
	switch (state) {
	case SERVER_CONNECTING:
		CHECK_SERVER(ctx, s, !s->lease && s->phase == PHASE_CONNECT);
		return true;
	case SERVER_IDLE:
		CHECK_SERVER(ctx, s, !s->lease);
		return check_idle_server(s, p, ctx);
	case SERVER_LEASED:
		return check_leased_server(s, p, ctx);
	case SERVER_CLEANING:
		/* The lease lives on, holderless, until the exit door is done. */
		CHECK_SERVER(ctx, s, s->lease && s->lease == &s->lease_slot && !s->lease->client);
		CHECK_SERVER(ctx, s, s->phase != PHASE_CONNECT);
		return true;
	case SERVER_AUTHQ:
		/* Lent to a lookup, which points back (authq_verify()); libpq runs the query. */
		CHECK_SERVER(ctx, s, !s->lease && s->authq != NULL);
		CHECK_SERVER(ctx, s, s->phase == PHASE_QUERY && s->conn != NULL);
		return true;
	case SERVER_CLOSED:
		break;
	}
	return fail("a pool list of servers is not the closed list", "server %d on %s", s->id, ctx);
}

/* Closed, detached from any client, its connection finished; freed by the reaper. */
static bool check_closed_servers(void)
{
	const struct list *l = server_closed_list();
	const struct list_node *pos;
	const char *ctx = "closed_servers";

	if (!check_list(l, ctx))
		return false;
	for_each_node(pos, l) {
		const struct server *s = list_entry(pos, struct server, node);
		CHECK_SERVER(ctx, s, s->state == SERVER_CLOSED);
		CHECK_SERVER(ctx, s, !s->lease && !s->conn);
	}
	return true;
}

/* ---- pools ---- */

static bool check_clients_on(const struct pool *p, const struct list *l, enum client_state state, const char *name)
{
	char ctx[256];
	const struct list_node *pos;

	ev_tstamp since = 0;

	snprintf(ctx, sizeof(ctx), "%s of pool %s/%s", name, p->dbname, p->user);
	if (!check_list(l, ctx))
		return false;
	for_each_node(pos, l) {
		const struct client *c = list_entry(pos, struct client, node);
		if (!check_pool_client(c, p, state, ctx))
			return false;
		/* In state order (client_set_state() appends): the timeouts' and waiters' walks stop at the first young one. */
		CHECK_CLIENT(ctx, c, c->state_since >= since);
		since = c->state_since;
	}
	return true;
}

static bool check_servers_on(const struct pool *p, const struct list *l, enum server_state state, const char *name)
{
	char ctx[256];
	const struct list_node *pos;

	snprintf(ctx, sizeof(ctx), "%s of pool %s/%s", name, p->dbname, p->user);
	if (!check_list(l, ctx))
		return false;
	for_each_node(pos, l)
		if (!check_pool_server(list_entry(pos, struct server, node), p, state, ctx))
			return false;
	return true;
}

static bool check_pool_lists(const struct pool *p)
{
	return check_servers_on(p, &p->connecting, SERVER_CONNECTING, "connecting") &&
	       check_servers_on(p, &p->idle, SERVER_IDLE, "idle") &&
	       check_servers_on(p, &p->leased, SERVER_LEASED, "leased") &&
	       check_servers_on(p, &p->cleaning, SERVER_CLEANING, "cleaning") &&
	       check_servers_on(p, &p->authq, SERVER_AUTHQ, "authq") &&
	       check_clients_on(p, &p->login_wait, CLIENT_LOGIN_WAIT, "login_wait") &&
	       check_clients_on(p, &p->clients, CLIENT_IDLE, "clients") &&
	       check_clients_on(p, &p->waiting, CLIENT_WAITING, "waiting") &&
	       check_clients_on(p, &p->active, CLIENT_ACTIVE, "active");
}

static bool check_pool(const struct pool *p)
{
	if (!check_pool_lists(p))
		return false;
	/* Leases are pairs (each side checked above), so the two lists match. */
	CHECK_POOL(p, p->active.count == p->leased.count);
	/* A freed backend goes to the first waiter unless the pool is paused (pool_server_free, lease_enter). */
	CHECK_POOL(p, list_empty(&p->waiting) || list_empty(&p->idle) || pool_paused(p));
	/* pool_pause_db() notes the lease count: no lease is granted until pool_resume_db(). */
	CHECK_POOL(p, !pool_paused(p) || p->stats.lease_count == p->leases_at_pause);
	CHECK_POOL(p, !p->closing || p->retired);
	char why[256];
	const char *authq = authq_verify(p, why, sizeof(why));
	if (authq)
		return fail("auth_query lookups and their servers agree", "pool %s/%s: %s", p->dbname, p->user, authq);
	return true;
}

/* Every client that is not closed is on exactly one of these lists (client_close() counts it out). */
static int listed_clients(void)
{
	const struct list_node *pos;
	int n = login_clients.count + admin_clients.count;

	for_each_node(pos, &all_pools) {
		const struct pool *p = list_entry(pos, struct pool, node);
		n += p->login_wait.count + p->clients.count + p->waiting.count + p->active.count;
	}
	return n;
}

const char *pool_verify_find(void)
{
	const struct list_node *pos;

	if (!check_list(&all_pools, "all_pools"))
		return violation;
	for_each_node(pos, &all_pools)
		if (!check_pool(list_entry(pos, struct pool, node)))
			return violation;
	char why[256];
	const char *cap = caps_verify(why, sizeof(why));
	if (cap) {
		fail("no database or user has more backends than its cap", "%s", cap);
		return violation;
	}
	if (!check_front_list(&login_clients, CLIENT_LOGIN, "login_clients") ||
	    !check_front_list(&admin_clients, CLIENT_ADMIN, "admin_clients") || !check_closed_servers())
		return violation;
	if (client_count != listed_clients()) {
		fail("client_count == clients listed", "client_count %d, listed %d", client_count, listed_clients());
		return violation;
	}
	return NULL;
}

void pool_verify(void)
{
	const char *v = pool_verify_find();

	if (!v)
		return;
	log_error("pool_verify: %s", v);
	abort();
}
