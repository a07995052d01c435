/*
 * drain.c — ending the clients of a closing pool.
 *
 * Every client that leaves gets FATAL with SQLSTATE 57P01 (PostgreSQL's
 * condition name for it is admin_shutdown) and a message saying why,
 * once the replies it was owed have gone out: a client whose socket is
 * still full is left for the next sweep rather than cut short.
 */
#include <assert.h>
#include <stdio.h>

#include "client.h"
#include "env.h"
#include "drain.h"
#include "iobuf.h"
#include "lease.h"
#include "log.h"
#include "server.h"

static const char *drain_message(const struct pool *p)
{
	static char msg[256];

	if (p->closing == POOL_CLOSE_AT_LEASE_END)
		return "terminating connection: pglease is shutting down";
	snprintf(msg, sizeof(msg), "terminating connection: database \"%s\" was removed from the pglease configuration",
		 p->dbname);
	return msg;
}

static void fatal_all(struct list *l, const char *message)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, l)
		client_fatal(list_entry(pos, struct client, node), "57P01", message, NULL);
}

/* Idle clients wait only for their last reply to go out. */
static void drain_idle(struct pool *p)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &p->clients)
		drain_client(list_entry(pos, struct client, node));
}

static bool between_transactions(const struct client *c)
{
	const struct server *s = client_server(c);

	return s && s->phase == PHASE_RAW && s->stream.txstatus == 'I' && stream_idle(&s->stream) &&
	       (!c->in || iobuf_is_empty(c->in)) && (!c->out || iobuf_is_empty(c->out));
}

/* A session that is not inside a transaction sends nothing that would end its lease: end it here. */
static void end_idle_sessions(struct pool *p)
{
	struct list_node *pos, *tmp;

	if (p->closing != POOL_CLOSE_AT_TX_END)
		return;
	list_for_each_safe(pos, tmp, &p->active) {
		struct client *c = list_entry(pos, struct client, node);
		assert(c->state == CLIENT_ACTIVE && c->lease);
		if (!between_transactions(c))
			continue;
		lease_exit(c, EXIT_TX_DONE);
		drain_client(c);
	}
}

static void drain_clients(struct pool *p)
{
	/* Waiting clients have not begun a transaction: refusing them loses nothing. */
	fatal_all(&p->login_wait, drain_message(p));
	fatal_all(&p->waiting, drain_message(p));
	drain_idle(p);
	end_idle_sessions(p);
}

void drain_pool(struct pool *p, enum pool_closing how, const char *reason)
{
	pool_close(p, how, reason);
	drain_clients(p);
}

/* Returns true when the client is the drain's to close (now or at the next sweep). */
bool drain_client(struct client *c)
{
	struct iobuf *in = c->in;

	if (c->state != CLIENT_IDLE || !c->pool->closing)
		return false;
	assert(!c->lease);
	if (in && !iobuf_is_empty(in) && in->data[in->start] == 'X') {
		client_close(c, "client sent Terminate");
		return true;
	}
	if (c->out && !iobuf_is_empty(c->out))
		return true;
	client_fatal(c, "57P01", drain_message(c->pool), NULL);
	return true;
}

void drain_logins(const char *message)
{
	fatal_all(&login_clients, message);
}

void drain_sweep(void)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &all_pools) {
		struct pool *p = list_entry(pos, struct pool, node);
		/* A lease lost during its setup puts its client back in the queue. */
		if (p->closing)
			drain_clients(p);
	}
}
