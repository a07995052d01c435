/*
 * lease.c — a client's hold on a backend, as a scope.
 *
 * A lease is like `async with pool.connection()`: lease_enter() acquires a
 * backend (idle, newly opened, or after a FIFO wait bounded by
 * query_wait_timeout), lease_grant() prepares it (health check, the
 * client's settings) and hands it to the relay, and lease_exit() is the one
 * door every lease leaves by, whatever ended it. Behind that door the
 * backend is made clean, step by step, by lease_clean_step() — a pure
 * decision table — or it is discarded. A backend that is not known to be
 * clean is never handed out again.
 *
 * Reading order: enter, grant, queries for the lease holder, exit, the
 * decision table, the cleaning steps.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <errno.h>

#include "cancel.h"
#include "client.h"
#include "env.h"
#include "lease.h"
#include "log.h"
#include "pool.h"
#include "proto.h"
#include "rewrite.h"
#include "server.h"
#include "session.h"

static void clean_poll(struct server *s);

/* ---- enter ---- */

void lease_enter(struct client *c)
{
	struct pool *p = c->pool;

	assert(p && !c->lease && c->state != CLIENT_ACTIVE && c->state != CLIENT_CLOSED);
	struct list_node *idle = list_last(&p->idle);

	if (idle && list_empty(&p->waiting) && !pool_paused(p)) {
		lease_grant(c, list_entry(idle, struct server, node));
		return;
	}
	client_set_state(c, CLIENT_WAITING);
	pool_want_servers(p);
}

/* ---- grant ---- */

static void go_relay(struct client *c, struct server *s)
{
	s->lease->relayed = true;
	server_go_raw(s, client_relay_from_server, client_relay_to_server);
	client_leased(c);
}

static void setup_done(struct server *s, const char *sqlstate, const char *error)
{
	struct client *c = server_client(s);

	if (error) {
		s->lease->close_why = EXIT_SETUP_FAILED;
		client_fatal(c, sqlstate, error, "while applying the client's startup settings on a pooled connection");
		return;
	}
	/* Out of memory: what the backend holds is not known, so its next lease starts from RESET ALL. */
	s->settings_unknown = params_copy(&s->applied, &c->params) < 0;
	go_relay(c, s);
}

static bool check_due(const struct server *s)
{
	return cfg->server_check_delay <= 0 || ev_now(loop) - s->idle_since >= cfg->server_check_delay;
}

/* The SQL that makes the backend fit this client: settings, else a health check. */
static int setup_sql(struct client *c, struct server *s, char *sql, int cap)
{
	int n = session_setup_sql(c, s, sql, cap);

	if (n == 0 && check_due(s))
		n = snprintf(sql, cap, "%s", cfg->server_check_query);
	return n;
}

static void note_wait(struct client *c)
{
	struct pool_stats *st = &c->pool->stats;

	st->wait_count++;
	st->wait_time_us += (uint64_t)((ev_now(loop) - c->state_since) * 1e6);
}

/* A backend checked the client's startup settings; it is unchanged (they were set locally). */
static void vetted(struct server *s, const char *sqlstate, const char *error)
{
	struct client *c = server_client(s);
	const PGresult *res = server_query_result(s);
	struct vet_answer answer = { PARAMS_EMPTY, NULL, 0 };

	answer.notices = server_take_notices(s, &answer.notices_len);
	/* A backend that died under the check refused nothing: the client tries another. */
	if (PQstatus(s->conn) != CONNECTION_OK) {
		vet_answer_free(&answer);
		return server_close(s, "lost while checking a client's startup settings");
	}
	if (error) {
		s->lease->close_why = EXIT_SETUP_FAILED;
		client_login_refused(c, &answer, sqlstate, error,
				     res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL,
				     res ? PQresultErrorField(res, PG_DIAG_MESSAGE_HINT) : NULL);
	} else if (vet_canonical(&c->vet_key, &s->pool->base, res, &answer) < 0) {
		s->lease->close_why = EXIT_SETUP_FAILED;
		client_fatal(c, "53200", "out of memory, or an unexpected answer, checking the startup settings", NULL);
	} else {
		/* The cache only saves the next such login a check: without it this one is still answered. */
		if (vet_cache_add(&s->pool->vetted, &c->vet_key, &answer) < 0)
			log_warning("client %u: out of memory caching its checked startup settings", c->id);
		client_vetted(c, &answer);
	}
	vet_answer_free(&answer);
}

/* The client is not logged in yet: this backend checks its startup settings first (vet.h). */
static void vet(struct client *c, struct server *s)
{
	char *sql = vet_sql(&c->vet_key, &s->pool->base);

	if (!sql) {
		c->lease->close_why = EXIT_SETUP_FAILED;
		return client_fatal(c, "53200", "out of memory checking the startup settings", NULL);
	}
	int rc = lease_query(s, sql, vetted);
	free(sql);
	if (rc < 0)
		return server_close(s, "could not send the startup settings check");
	server_keep_notices(s);
}

/* The lease comes to be: client and backend point at it, and at each other through it. */
static void lease_open(struct client *c, struct server *s)
{
	struct lease *l = &s->lease_slot;

	assert(!c->lease && !s->lease);
	memset(l, 0, sizeof(*l));
	l->client = c;
	l->server = s;
	l->started = ev_now(loop);
	l->close_why = EXIT_CLIENT_GONE;
	l->quiet_since = l->started;
	c->lease = s->lease = l;
}

/* The backend is clean or gone: the lease is over. */
static void lease_done(struct server *s)
{
	struct lease *l = s->lease;

	assert(l && !l->client && l == &s->lease_slot);
	/* The exit door emptied it (prep_lease_end). */
	assert(!l->prep.tx && !l->prep.parse);
	/* lease_open() fills the slot anew; what could be followed by mistake meanwhile goes. */
	l->server = NULL;
	s->lease = NULL;
}

void lease_grant(struct client *c, struct server *s)
{
	assert(c->state != CLIENT_ACTIVE && c->state != CLIENT_ADMIN && c->state != CLIENT_CLOSED);
	assert(s->state == SERVER_IDLE || s->state == SERVER_CONNECTING || s->state == SERVER_CLEANING ||
	       s->state == SERVER_AUTHQ);
	s->pool->stats.lease_count++;
	if (c->state == CLIENT_WAITING)
		note_wait(c);
	server_set_state(s, SERVER_LEASED);
	client_set_state(c, CLIENT_ACTIVE);
	lease_open(c, s);
	stream_reset(&s->stream);
	memset(&s->reset, 0, sizeof(s->reset));
	s->stream.counts = &s->pool->stats.stream;
	/* A backend that died since it was freed is never used: the client, which sent it nothing, queues again. */
	if (!server_still_there(s))
		return;
	if (!c->welcomed)
		return vet(c, s);
	lease_setup(c, s);
}

void lease_setup(struct client *c, struct server *s)
{
	/* Quoted settings from a startup packet of up to 10 000 bytes fit. */
	static char sql[4 * STARTUP_MAX_LEN];

	assert(client_server(c) == s && c->welcomed && !s->lease->relayed);
	int n = setup_sql(c, s, sql, sizeof(sql));
	if (n < 0) {
		c->lease->close_why = EXIT_SETUP_FAILED;
		client_fatal(c, "22023", "a startup setting of this client is too long to apply", NULL);
		return;
	}
	if (n == 0 || !*sql) {
		go_relay(c, s);
		return;
	}
	if (lease_query(s, sql, setup_done) < 0)
		server_close(s, "could not send the lease setup query");
}

/* ---- queries for the lease holder ---- */

/* The lease may have ended while the query ran (its client left): then the exit door goes on. */
static void lease_query_answered(struct server *s, const char *sqlstate, const char *error)
{
	struct lease *l = s->lease;
	server_query_cb done = l->query_done;

	assert(l && done);
	l->query_done = NULL;
	if (!l->client) {
		clean_poll(s);
		return;
	}
	done(s, sqlstate, error);
}

int lease_query(struct server *s, const char *sql, server_query_cb done)
{
	assert(s->state == SERVER_LEASED && server_client(s) && !s->lease->query_done);
	s->lease->query_done = done;
	return server_query(s, sql, lease_query_answered);
}

/* ---- exit ---- */

const char *lease_exit_reason_name(enum lease_exit_reason why)
{
#define NAME(id, name, label) [EXIT_##id] = name,
	static const char *const names[] = { LEASE_EXIT_REASONS(NAME) };
#undef NAME

	return (unsigned)why < LEASE_EXIT_REASON_COUNT ? names[why] : "unknown";
}

/* Bytes the relay framed but could not yet send must reach the backend now. */
static void flush_client_bytes(struct client *c, struct server *s)
{
	struct iobuf *in = c->in;

	if (prep_tx_pending(&c->lease->prep) && prep_tx_send(c, s) < 0)
		s->lease->broken = true;
	if (prep_tx_pending(&c->lease->prep))
		s->lease->broken = true;
	if (!in || iobuf_unsent(in) == 0)
		return;
	ssize_t n = server_send_raw(s, in->data + in->start, iobuf_unsent(in));
	if (n < (ssize_t)iobuf_unsent(in))
		s->lease->broken = true;
	in->start = in->scanned;
}

/* Backend bytes read but not framed (a split header) stay with the backend. */
static void carry_server_bytes(struct client *c, struct server *s)
{
	struct iobuf *out = c->out;
	uint32_t held = out ? out->end - out->scanned : 0;

	if (held > sizeof(s->lease->carry)) {
		s->lease->broken = true;
		held = 0;
	}
	if (held)
		memcpy(s->lease->carry, out->data + out->scanned, held);
	s->lease->carry_len = (uint8_t)held;
	if (out)
		out->end = out->scanned;
}

static void note_exit(struct server *s, enum lease_exit_reason why)
{
	struct pool_stats *st = &s->pool->stats;

	st->exits[(unsigned)why < LEASE_EXIT_REASON_COUNT ? why : STATS_EXIT_OTHER]++;
	st->lease_time_us += (uint64_t)((ev_now(loop) - s->lease->started) * 1e6);
	s->stream.counts = NULL;
}

/* The client lets go; the lease stays with the backend until it is clean. */
static void detach(struct client *c, struct lease *l)
{
	c->lease = NULL;
	l->client = NULL;
}

/* server_close() is taking the backend away: a lease that sent nothing yet tries another, else the client is told. */
static void exit_server_lost(struct client *c, bool nothing_sent)
{
	if (nothing_sent) {
		client_set_state(c, CLIENT_IDLE);
		lease_enter(c);
		return;
	}
	client_fatal(c, "08006", "server connection lost: the backend closed or broke the connection", NULL);
}

/* The holder let go: the backend goes through the cleaning steps, unless a query for the lease is still running. */
static void start_cleaning(struct client *c, struct lease *l, bool nothing_sent)
{
	struct server *s = l->server;
	bool pinned = session_unpin(c, s);

	/* A session that never relayed a byte only has pglease's own settings, which `applied` follows. */
	l->reset_needed = (s->pool->mode == POOL_MODE_SESSION && *cfg->server_reset_query && !nothing_sent) ||
			  pinned;
	server_set_state(s, SERVER_CLEANING);
	/* A query for the lease (setup, probe) is running: its answer goes on with the cleaning. */
	if (s->phase != PHASE_QUERY)
		clean_poll(s);
}

void lease_exit(struct client *c, enum lease_exit_reason why)
{
	struct lease *l = c->lease;

	if (!l)
		return;
	struct server *s = l->server;
	assert(l->client == c && s->lease == l && c->state == CLIENT_ACTIVE && s->state == SERVER_LEASED);
	log_debug("client %u: lease on server %d ends: %s", c->id, s->id, lease_exit_reason_name(why));
	if (s->phase == PHASE_RAW) {
		flush_client_bytes(c, s);
		carry_server_bytes(c, s);
	}
	prep_lease_end(c, s);
	bool nothing_sent = !l->relayed;
	note_exit(s, why);
	detach(c, l);
	l->why = (uint8_t)why;
	if (why == EXIT_SERVER_LOST)
		return exit_server_lost(c, nothing_sent);
	if (why == EXIT_TX_DONE)
		client_set_state(c, CLIENT_IDLE);
	start_cleaning(c, l, nothing_sent);
}

void lease_server_closed(struct server *s)
{
	struct lease *l = s->lease;

	if (!l)
		return;
	if (l->client)
		lease_exit(l->client, EXIT_SERVER_LOST);
	lease_done(s);
}

/* ---- the exit decision table ---- */

enum clean_step lease_clean_step(const struct clean_input *in)
{
	const struct stream *st = in->stream;

	if (in->server_lost || st->to_server.body_left)
		return CLEAN_DISCARD;
	if (st->copy_in)
		return CLEAN_COPY_FAIL;
	if (st->unsynced)
		return CLEAN_SYNC;
	/* A message read in part, or a header cut short: the rest must be read before libpq may have the socket. */
	if (st->owed_z || st->from_server.body_left || in->header_carried)
		return CLEAN_DRAIN;
	if (in->cancels_pending)
		return CLEAN_WAIT_CANCEL;
	if (st->txstatus != 'I')
		return in->rolled_back ? CLEAN_DISCARD : CLEAN_ROLLBACK;
	if (in->reset_needed)
		return CLEAN_RESET;
	return CLEAN_DONE;
}

/* ---- cleaning steps ---- */

static int send_whole(struct server *s, const struct wbuf *w)
{
	return server_send_raw(s, w->data, w->len) == (ssize_t)w->len ? 0 : -1;
}

static int send_copy_fail(struct server *s)
{
	uint8_t buf[64];
	struct wbuf w;

	wbuf_init(&w, buf, sizeof(buf));
	proto_copy_fail(&w, "client disconnected (pglease)");
	stream_client_msg(&s->stream, &(struct frame_msg){ .type = 'f', .len = (uint32_t)w.len - 1 });
	return send_whole(s, &w);
}

static int send_sync(struct server *s)
{
	uint8_t buf[8];
	struct wbuf w;

	wbuf_init(&w, buf, sizeof(buf));
	proto_sync(&w);
	s->stream.unsynced = false;
	s->stream.owed_z++;
	return send_whole(s, &w);
}

/* Frame what arrived; keep a split header for next time. */
static int drain_scan(struct server *s, uint8_t *buf, size_t n)
{
	ssize_t used = frame_scan(&s->stream.from_server, buf, n, STREAM_SERVER_WHOLE, stream_server_frame_cb, &s->stream);

	if (used < 0 || n - (size_t)used > sizeof(s->lease->carry))
		return -1;
	s->lease->carry_len = (uint8_t)(n - (size_t)used);
	memcpy(s->lease->carry, buf + used, s->lease->carry_len);
	return 0;
}

static void drain_readable(struct server *s)
{
	uint8_t buf[16384];
	size_t carried = s->lease->carry_len;

	memcpy(buf, s->lease->carry, carried);
	ssize_t n = server_recv_raw(s, buf + carried, sizeof(buf) - carried);
	if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
		server_close(s, "closed by the backend while draining a finished lease");
		return;
	}
	if (n < 0)
		return;
	if (drain_scan(s, buf, carried + (size_t)n) < 0) {
		server_close(s, "protocol violation from the backend while draining");
		return;
	}
	s->lease->drained = true;
	if (!s->stream.owed_z || s->stream.copy_in)
		clean_poll(s);
}

static void drain_deadline(struct server *s)
{
	if (s->lease->cancel_sent) {
		server_close(s, "owed replies did not arrive within server_drain_timeout, even after a cancel");
		return;
	}
	log_info("server %d: replies still owed after %g s; cancelling the query", s->id, cfg->server_drain_timeout);
	s->lease->cancel_sent = true;
	cancel_submit(s);
	server_set_timer(s, cfg->server_drain_timeout, drain_deadline);
}

static void start_drain(struct server *s)
{
	if (s->phase == PHASE_RAW && s->on_readable == drain_readable)
		return;
	server_go_raw(s, drain_readable, NULL);
	server_want_write(s, false);
	server_set_timer(s, cfg->server_drain_timeout, drain_deadline);
	if (s->lease->carry_len)
		ev_feed_event(loop, &s->rio, EV_READ);
}

static void rollback_done(struct server *s, const char *sqlstate, const char *error)
{
	(void)sqlstate;
	s->lease->rolled_back = true;
	if (error || PQtransactionStatus(s->conn) != PQTRANS_IDLE) {
		server_close(s, "ROLLBACK on lease exit failed: %s", error ? error : "not idle afterwards");
		return;
	}
	s->stream.txstatus = 'I';
	s->pool->stats.exit_rollbacks++;
	log_info("server %d (backend pid %d): %srolled back after its lease ended (%s)", s->id, s->backend_pid,
		 s->lease->drained ? "owed replies drained, " : "", lease_exit_reason_name(s->lease->why));
	clean_poll(s);
}

static void reset_done(struct server *s, const char *sqlstate, const char *error)
{
	(void)sqlstate;
	if (error) {
		server_close(s, "server_reset_query failed: %s", error);
		return;
	}
	s->lease->reset_needed = false;
	params_free(&s->applied);
	prep_server_forget(s);
	clean_poll(s);
}

static void run_query(struct server *s, const char *sql, server_query_cb done)
{
	server_stop_timer(s);
	if (server_query(s, sql, done) < 0)
		server_close(s, "could not send %s on lease exit", sql);
}

static enum clean_step next_step(struct server *s)
{
	struct lease *l = s->lease;
	struct clean_input in = {
		.stream = &s->stream,
		.server_lost = l->broken || !s->conn,
		.rolled_back = l->rolled_back,
		.reset_needed = l->reset_needed,
		.cancels_pending = s->cancels_pending > 0,
		.header_carried = l->carry_len > 0,
	};
	return lease_clean_step(&in);
}

static void clean_poll(struct server *s)
{
	assert(s->state == SERVER_CLEANING && s->lease && !s->lease->client);
	for (;;) {
		enum clean_step step = next_step(s);
		s->lease->waiting_cancel = step == CLEAN_WAIT_CANCEL;
		switch (step) {
		case CLEAN_DISCARD:
			server_close(s, "cannot be made clean after its lease ended (%s): stream stopped mid-message",
				     lease_exit_reason_name(s->lease->why));
			return;
		case CLEAN_COPY_FAIL:
			if (send_copy_fail(s) < 0)
				s->lease->broken = true;
			continue;
		case CLEAN_SYNC:
			if (send_sync(s) < 0)
				s->lease->broken = true;
			continue;
		case CLEAN_DRAIN:
			start_drain(s);
			return;
		case CLEAN_WAIT_CANCEL:
			server_stop_timer(s);
			server_watch_idle(s);
			return;
		case CLEAN_ROLLBACK:
			run_query(s, "ROLLBACK", rollback_done);
			return;
		case CLEAN_RESET:
			/* A pinned client's state must go even when session mode needs no reset. */
			run_query(s, *cfg->server_reset_query ? cfg->server_reset_query : "DISCARD ALL", reset_done);
			return;
		case CLEAN_DONE:
			server_stop_timer(s);
			lease_done(s);
			pool_server_free(s);
			return;
		}
	}
}

void lease_cancel_done(struct server *s)
{
	if (s->state == SERVER_CLEANING && s->lease->waiting_cancel && s->cancels_pending == 0)
		clean_poll(s);
}
