/*
 * timeout.c — the timeouts that bound what a client holds.
 *
 * All of them are checked here, on the maintenance tick (daemon/main.c,
 * every 0.2 s), from clocks the relay keeps on the lease (relay.c:
 * request_started(), replies_came(); c->last_read in client_on_data()):
 * no timer per lease or per client, and nothing on the hot path but a few
 * stores of ev_now(). A tick walks each pool's lease holders (at most its
 * size) and the head of its idle clients (in state order: it stops at the
 * first one young enough).
 *
 * query_timeout cancels, as a client's CancelRequest would: the client gets
 * the backend's own 57014 and keeps its connection and its transaction's
 * state. Only if the cancel has not taken within server_drain_timeout does
 * the lease leave by the exit door. Every other timeout ends the client with
 * PostgreSQL's FATAL for it and sends its lease through the exit door, which
 * rolls the transaction back and reuses the backend (or closes it when the
 * client left it mid-message).
 */
#include <assert.h>
#include <stdio.h>

#include "cancel.h"
#include "client.h"
#include "env.h"
#include "lease.h"
#include "log.h"
#include "pool.h"
#include "proto.h"
#include "server.h"
#include "timeout.h"

static bool past(ev_tstamp now, ev_tstamp since, double limit)
{
	return limit > 0 && since > 0 && now - since >= limit;
}

static ev_tstamp later(ev_tstamp a, ev_tstamp b)
{
	return a > b ? a : b;
}

enum timeout_verdict timeout_lease_verdict(const struct timeout_input *in)
{
	ev_tstamp silent_since = later(later(in->last_read, in->started), in->copy_in ? in->copy_since : 0);
	bool tx_open = in->owed_z > 0 || in->txstatus != 'I';
	/* Waiting for the client's COPY data is the client's time: client_stall_timeout bounds it. */
	bool running = in->owed_z > 0 && !in->copy_in;

	if (in->mid_message && past(in->now, silent_since, in->client_stall_timeout))
		return TIMEOUT_STALL;
	if (tx_open && past(in->now, in->tx_since, in->transaction_timeout))
		return TIMEOUT_TRANSACTION;
	if (in->owed_z == 0 && in->txstatus != 'I' && !in->mid_message &&
	    past(in->now, in->quiet_since, in->idle_transaction_timeout))
		return TIMEOUT_IDLE_TX;
	if (!running || in->query_timeout <= 0)
		return TIMEOUT_NONE;
	if (in->query_cancelled_at > 0)
		return past(in->now, in->query_cancelled_at, in->server_drain_timeout) ? TIMEOUT_QUERY : TIMEOUT_NONE;
	return past(in->now, in->request_since, in->query_timeout) ? TIMEOUT_CANCEL : TIMEOUT_NONE;
}

/*
 * The client owes the backend the rest of a message: part of it went out
 * (or its header is all there is), or the backend waits for COPY data. Bytes
 * pglease holds back itself (the backend not taking them, a held message)
 * are not the client's silence.
 */
static bool client_mid_message(const struct client *c, const struct stream *st)
{
	const struct iobuf *in = c->in;

	if (in && iobuf_unsent(in) > 0)
		return false;
	if (st->to_server.body_left > 0 || st->copy_in)
		return true;
	if (!in || in->end == in->scanned)
		return false;
	uint32_t have = in->end - in->scanned;
	return have < 5 || 1 + (uint64_t)be32(in->data + in->scanned + 1) > have;
}

static struct timeout_input lease_input(const struct client *c, const struct server *s, ev_tstamp now)
{
	const struct lease *l = c->lease;

	return (struct timeout_input){
		.now = now,
		.query_timeout = cfg->query_timeout,
		.idle_transaction_timeout = cfg->idle_transaction_timeout,
		.transaction_timeout = cfg->transaction_timeout,
		.client_stall_timeout = cfg->client_stall_timeout,
		.server_drain_timeout = cfg->server_drain_timeout,
		.started = l->started,
		.request_since = l->request_since,
		.quiet_since = l->quiet_since,
		.tx_since = l->tx_since,
		.copy_since = l->copy_since,
		.query_cancelled_at = l->query_cancelled_at,
		.last_read = c->last_read,
		.owed_z = s->stream.owed_z,
		.txstatus = s->stream.txstatus,
		.mid_message = client_mid_message(c, &s->stream),
		.copy_in = s->stream.copy_in,
	};
}

/*
 * The client goes with a FATAL, its lease by the exit door with why. A
 * request still running is cancelled first, and the door's drain then waits
 * one server_drain_timeout for it before it closes the backend.
 */
static void end_client(struct client *c, enum lease_exit_reason why, const char *sqlstate, const char *message)
{
	struct lease *l = c->lease;
	struct server *s = l->server;

	log_info("client %u (%s/%s): %s, backend pid %d: %s", c->id, c->pool->dbname, c->pool->user,
		 lease_exit_reason_name(why), s->backend_pid, message);
	if (s->stream.owed_z && !s->stream.copy_in) {
		if (!l->query_cancelled_at)
			cancel_submit(s);
		l->cancel_sent = true;
	}
	l->close_why = (uint8_t)why;
	client_fatal(c, sqlstate, message, NULL);
}

static void cancel_query(struct client *c, struct server *s, ev_tstamp now)
{
	log_info("client %u (%s/%s): query running for %.1f s (query_timeout %g s): cancelling it on backend pid %d",
		 c->id, c->pool->dbname, c->pool->user, now - c->lease->request_since, cfg->query_timeout,
		 s->backend_pid);
	c->lease->query_cancelled_at = now;
	c->pool->stats.query_timeouts++;
	cancel_submit(s);
}

static void check_lease(struct client *c, ev_tstamp now)
{
	struct server *s = client_server(c);

	/* Being set up, or a libpq query of pglease's own (the pin probe) is running: not the client's time. */
	if (!c->lease->relayed || s->phase != PHASE_RAW)
		return;
	struct timeout_input in = lease_input(c, s, now);
	switch (timeout_lease_verdict(&in)) {
	case TIMEOUT_NONE:
		return;
	case TIMEOUT_CANCEL:
		return cancel_query(c, s, now);
	case TIMEOUT_QUERY:
		return end_client(c, EXIT_TIMEOUT_QUERY, "57014",
				  "terminating connection because the query did not stop when cancelled for query_timeout");
	case TIMEOUT_TRANSACTION:
		return end_client(c, EXIT_TIMEOUT_TX, "25P04", "terminating connection due to transaction timeout");
	case TIMEOUT_IDLE_TX:
		return end_client(c, EXIT_TIMEOUT_IDLE_TX, "25P03",
				  "terminating connection due to idle-in-transaction timeout");
	case TIMEOUT_STALL:
		return end_client(c, EXIT_TIMEOUT_STALL, "08P01",
				  "terminating connection because the client sent no data in the middle of a message "
				  "for client_stall_timeout");
	}
}

/* pool->clients is in state order (client_set_state() appends): the walk stops at the first one young enough. */
static void close_idle_clients(struct pool *p, ev_tstamp now)
{
	struct list_node *first;

	if (cfg->client_idle_timeout <= 0)
		return;
	while ((first = list_first(&p->clients))) {
		struct client *c = list_entry(first, struct client, node);
		assert(c->state == CLIENT_IDLE && !c->lease);
		if (now - c->state_since < cfg->client_idle_timeout)
			return;
		log_info("client %u (%s/%s): idle for %.1f s without a lease (client_idle_timeout %g s)", c->id,
			 p->dbname, p->user, now - c->state_since, cfg->client_idle_timeout);
		p->stats.client_idle_timeouts++;
		client_fatal(c, "57P05", "terminating connection due to idle-session timeout", NULL);
	}
}

void timeout_check(struct pool *p, ev_tstamp now)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &p->active)
		check_lease(list_entry(pos, struct client, node), now);
	close_idle_clients(p, now);
}
