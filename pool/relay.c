/*
 * relay.c — a logged-in client's bytes, between leases and under one.
 *
 * Between leases an idle client's input is dispatched: Terminate ends it,
 * a prepare the pool already knows is answered here, anything else enters
 * a lease (lease.c). Under a lease the hot path is client_relay_to_server()
 * and client_relay_from_server(): one recv() into the client's buffer,
 * framing of the new bytes (only headers are looked at, plus the 'Z'
 * status byte), one send(); the backend's side goes through
 * server_recv_raw()/server_send_raw(), SSL_read/SSL_write on libpq's session
 * over a TLS backend. A watcher is started only when a peer would
 * block, so a transaction normally costs no epoll_ctl. At each clean
 * boundary the lease ends (transaction mode), goes on, or probes a pin.
 */
#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "cancel.h"
#include "client.h"
#include "drain.h"
#include "env.h"
#include "lease.h"
#include "log.h"
#include "pool.h"
#include "proto.h"
#include "reset.h"
#include "rewrite.h"
#include "server.h"
#include "session.h"

/* The first request queued in in[scanned..]: a Query, or extended messages through a Sync; its length or 0. */
static uint32_t first_request_len(const struct iobuf *in)
{
	uint32_t at = in->scanned;

	while (in->end - at >= 5) {
		uint8_t type = in->data[at];
		uint32_t len = be32(in->data + at + 1);
		if (len < 4 || len > in->end - at - 1 || !strchr("QSPBDECH", type))
			return 0;
		at += 1 + len;
		if (type == 'Q' || type == 'S')
			return at - in->scanned;
	}
	return 0;
}

/*
 * A cancel for a client still waiting for a backend: its first request
 * never ran, so it ends as a cancelled statement ends on PostgreSQL, and
 * the client keeps its place for whatever it queued after it.
 */
static void cancel_waiting(struct client *c)
{
	uint8_t buf[256];
	struct wbuf w;
	struct iobuf *in = c->in;
	uint32_t len = in && in->start == in->scanned ? first_request_len(in) : 0;

	if (!len)
		return;
	in->scanned += len;
	in->start = in->scanned;
	wbuf_init(&w, buf, sizeof(buf));
	proto_error(&w, "ERROR", "57014", "canceling statement due to user request", NULL, NULL);
	proto_ready(&w, 'I');
	log_info("client %u: request cancelled while waiting for a backend", c->id);
	if (iobuf_is_empty(in)) {
		iobuf_put(in);
		c->in = NULL;
		client_set_state(c, CLIENT_IDLE);
	}
	client_want_read(c, true);
	client_send(c, buf, w.len);
}


/*
 * A CancelRequest from requester names a client: a request on its way to a
 * backend is cancelled there (requester is closed once the cancel went out),
 * a queued one here; one that comes while the lease is set up waits for it.
 */
void client_cancel_request(struct client *requester, uint32_t id, uint32_t key)
{
	struct client *target = client_find_by_key(id, key);

	struct server *s = target ? client_server(target) : NULL;

	if (s && s->phase == PHASE_RAW)
		return cancel_submit_for(s, requester);
	if (target && target->state == CLIENT_WAITING)
		cancel_waiting(target);
	else if (s)
		target->lease->cancel_at_relay = true;
	client_close(requester, "cancel request handled");
}

/* ---- between leases ---- */

/*
 * What an idle client sent that needs no backend: a prepare of a statement
 * the pool knows (PQprepare). A client whose other connections hold every
 * backend must not wait for one just to name a statement.
 * 1 answered, 0 a lease is needed, -1 the client is gone.
 */
static int answer_without_lease(struct client *c)
{
	uint8_t buf[512];
	struct wbuf w;

	wbuf_init(&w, buf, sizeof(buf));
	int rc = prep_parse_unleased(c, &w);
	if (rc < 0) {
		client_fatal(c, "53200", "out of memory registering a prepared statement", NULL);
		return -1;
	}
	if (rc == 0)
		return 0;
	client_send(c, buf, w.len);
	return c->state == CLIENT_CLOSED ? -1 : 1;
}

/* An idle client spoke: end the session on Terminate, else lease a backend. */
void client_dispatch(struct client *c)
{
	struct iobuf *in = c->in;

	assert(c->state == CLIENT_IDLE && !c->lease);
	if (c->pool->closing && drain_client(c))
		return;
	if (!in || iobuf_is_empty(in)) {
		iobuf_put(in);
		c->in = NULL;
		return;
	}
	if (in->data[in->start] == 'X') {
		client_close(c, "client sent Terminate");
		return;
	}
	switch (answer_without_lease(c)) {
	case 1:
		return client_dispatch(c);
	case 0:
		return lease_enter(c);
	default:
		return;
	}
}

void client_leased(struct client *c)
{
	struct server *s = client_server(c);

	assert(s && s->phase == PHASE_RAW && c->state == CLIENT_ACTIVE);
	if (c->in && !iobuf_is_empty(c->in))
		client_relay_to_server(s);
	/* A cancel that came while the lease was being set up is for what was just sent. */
	if (c->lease != s->lease)
		return;
	if (c->lease->cancel_at_relay && s->stream.owed_z)
		cancel_submit(s);
	c->lease->cancel_at_relay = false;
}

/* ---- the timeouts' clocks (pool/timeout.c reads them) ---- */

/* A request went out with nothing owed: a query starts, and a transaction if none was open. */
static void request_started(struct lease *l, struct stream *st)
{
	ev_tstamp now = ev_now(loop);

	st->busy_since = l->request_since = now;
	if (st->txstatus == 'I')
		l->tx_since = now;
}

/* The client ended its COPY data: the backend runs the rest of the statement from now (query_timeout's clock). */
static void copy_ended(struct lease *l)
{
	l->request_since = ev_now(loop);
}

/* Replies were framed: a ReadyForQuery ends a request (the next one owed starts running now). */
static void replies_came(struct lease *l, const struct stream *st, uint32_t owed_before, bool copy_before)
{
	ev_tstamp now = ev_now(loop);

	if (st->copy_in && !copy_before)
		l->copy_since = now;
	if (st->owed_z == owed_before)
		return;
	l->query_cancelled_at = 0;
	if (st->owed_z)
		l->request_since = now;
	else
		l->quiet_since = now;
}

/* ---- the relay: client to backend ---- */

static enum frame_verdict account_client_msg(struct client *c, const struct frame_msg *m)
{
	if (c->prep_on)
		return prep_client_msg(c, m);
	return stream_client_msg(&client_server(c)->stream, m);
}

static enum frame_verdict client_msg(void *arg, const struct frame_msg *m)
{
	struct client *c = arg;

	if (m->type == 'X') {
		c->terminating = true;
		return FRAME_STOP_BEFORE;
	}
	if (m->type == 'Q' && reset_client_query(c, client_server(c), m) != RESET_PASS)
		return FRAME_STOP_BEFORE;
	return account_client_msg(c, m);
}

/* The scan stopped at a header it refused: say whether the type or the length. */
static void protocol_violation(struct client *c)
{
	const uint8_t *p = c->in->data + c->in->scanned;
	uint32_t len = be32(p + 1);
	char msg[96];

	if (len < 4 || len > FRAME_MAX_LEN)
		snprintf(msg, sizeof(msg), "invalid message length %u for message type \"%c\"", len,
			 p[0] >= 32 && p[0] < 127 ? p[0] : '?');
	else
		snprintf(msg, sizeof(msg), "invalid frontend message type %d", p[0]);
	c->lease->close_why = EXIT_CLIENT_PROTOCOL;
	if (client_server(c)->stream.owed_z == 0 || !(c->violation = strdup(msg)))
		return client_fatal(c, "08P01", msg, NULL);
	/* Like PostgreSQL: answer what came before the bad message, then FATAL. */
	c->in->end = c->in->scanned;
	client_want_read(c, false);
}

/* A Query whose replacement pglease sends in its place (reset.c); the watcher still sees the client's bytes. */
static int substitute_query(struct client *c, struct iobuf *in, const struct sql_text *body)
{
	uint32_t len = be32(in->data + in->scanned + 1);
	struct frame_msg m = { 'Q', len, in->data + in->scanned + 5 };

	if (prep_tx_message(c, 'Q', body->data, body->len + 1) < 0)
		return -1;
	session_client_sends(c, in->data + in->scanned, 1 + len);
	in->scanned += 1 + len;
	in->start = in->scanned;
	enum frame_verdict v = account_client_msg(c, &m);
	assert(v == FRAME_CONTINUE);
	return v == FRAME_CONTINUE ? 0 : -1;
}

/* The Query the scan stopped before, for reset.c: rewritten, or sent as it is and followed. */
static int reset_step(struct client *c, struct server *s, struct iobuf *in)
{
	uint32_t len = be32(in->data + in->scanned + 1);
	struct frame_msg m = { 'Q', len, in->data + in->scanned + 5 };
	struct sql_text body = { 0 };

	assert(len <= FRAME_WHOLE_MAX && in->end - in->scanned >= 1 + len);
	if (reset_client_step(c, s, &m, &body) == 0 && body.len) {
		int rc = substitute_query(c, in, &body);
		sql_text_free(&body);
		return rc;
	}
	session_client_sends(c, in->data + in->scanned, 1 + len);
	in->scanned += 1 + len;
	return account_client_msg(c, &m) == FRAME_CONTINUE ? 0 : -1;
}

/* After a DISCARD ALL that ran: pglease's own Query restores the startup settings (reset.c). */
static int send_followup(struct client *c, struct server *s)
{
	struct sql_text body = { 0 };

	if (reset_followup(c, s, &body) < 0)
		return -1;
	struct frame_msg m = { 'Q', body.len + 5, (const uint8_t *)body.data };
	struct stream_counts *counts = s->stream.counts;
	int rc = prep_tx_message(c, 'Q', body.data, body.len + 1);
	/* Not the client's query: not counted. */
	s->stream.counts = NULL;
	if (rc == 0 && account_client_msg(c, &m) != FRAME_CONTINUE)
		rc = -1;
	s->stream.counts = counts;
	sql_text_free(&body);
	return rc;
}

/*
 * Frame the client's new bytes. With the prepared-statement layer the scan
 * stops before messages that name statements, and rewrite.c takes them;
 * a Query with a RESET of a startup setting stops it too, for reset.c.
 * Returns as frame_scan() does, or -2 when a layer failed.
 */
static ssize_t scan_client(struct client *c, struct server *s, struct iobuf *in)
{
	const char *whole = c->prep_on ? PREP_CLIENT_WHOLE : "Q";
	ssize_t n;

	for (;;) {
		if (s->reset.followup_due && send_followup(c, s) < 0)
			return -2;
		/* A DISCARD ALL and its follow-up are in flight: what the client sends next waits. */
		if (reset_holding(&s->reset))
			return 0;
		enum prep_step step = c->prep_on ? prep_client_step(c, s) : PREP_AGAIN;
		if (step != PREP_AGAIN)
			return step == PREP_MORE ? 0 : -2;
		uint32_t from = in->scanned;
		n = frame_scan(&s->stream.to_server, in->data + in->scanned, in->end - in->scanned, whole, client_msg, c);
		in->scanned += n < 0 ? s->stream.to_server.error_at : (uint32_t)n;
		/* Pinned before the backend sees the statement, so before its lease could end. */
		session_client_sends(c, in->data + from, in->scanned - from);
		if (n >= 0 && s->reset.stopped) {
			if (reset_step(c, s, in) < 0)
				return -2;
			continue;
		}
		if (n < 0 || !prep_stopped(&c->lease->prep))
			return n;
	}
}

/* Send in[start, scanned) to the backend; stop reading the client while it blocks. */
static int send_to_server(struct client *c, struct server *s)
{
	struct iobuf *in = c->in;

	if (prep_tx_pending(&c->lease->prep)) {
		if (prep_tx_send(c, s) < 0) {
			server_close(s, "lost while sending to the backend");
			return -1;
		}
	} else if (in && iobuf_unsent(in)) {
		ssize_t n = server_send_raw(s, in->data + in->start, iobuf_unsent(in));
		if (n < 0) {
			server_close(s, "lost while sending to the backend");
			return -1;
		}
		in->start += (uint32_t)n;
		c->pool->stats.bytes_received += (uint64_t)n;
	}
	bool blocked = (in && iobuf_unsent(in) > 0) || prep_tx_pending(&c->lease->prep);
	/* A message that must be seen whole may be waiting at the end of a full buffer. */
	if (in && !blocked && iobuf_room(in) == 0 && in->start > 0)
		iobuf_compact(in);
	server_want_write(s, blocked);
	/* A full buffer may end in a message header cut short: client_read_into() compacts it. */
	client_want_read(c, !blocked && (!in || iobuf_room(in) > 0 || in->start > 0));
	return 0;
}

void client_relay_to_server(struct server *s)
{
	struct client *c = server_client(s);

	assert(c && c->lease == s->lease && s->phase == PHASE_RAW);
	struct iobuf *in = c->in;
	bool was_idle = s->stream.owed_z == 0;

	if (!in && s->reset.followup_due && send_followup(c, s) < 0)
		return client_fatal(c, "53200", "out of memory restoring the startup settings after DISCARD ALL", NULL);
	if (!in && was_idle && s->stream.owed_z)
		request_started(c->lease, &s->stream);
	if (!in) {
		/* Rewritten bytes may still be waiting for the backend to take them. */
		if (prep_tx_pending(&c->lease->prep))
			send_to_server(c, s);
		return;
	}
	bool copy_before = s->stream.copy_in;
	ssize_t n = scan_client(c, s, in);
	if (n == -2)
		return client_fatal(c, "54000", "could not relay a prepared statement message or a rewritten Query "
				    "(out of memory, or statement names longer than 16 KB)", NULL);
	if (was_idle && s->stream.owed_z)
		request_started(c->lease, &s->stream);
	else if (copy_before && !s->stream.copy_in)
		copy_ended(c->lease);
	/* What came before a bad message is valid and already accounted: send it. */
	if (send_to_server(c, s) < 0)
		return;
	if (n < 0)
		return protocol_violation(c);
	if (c->terminating && iobuf_unsent(in) == 0 && !prep_tx_pending(&c->lease->prep))
		return client_close(c, "client sent Terminate");
	/* A held named Parse is whole in c->prep: the buffer stays, to scan on from when it may go. */
	if (iobuf_is_empty(in) && !prep_held(&c->lease->prep)) {
		iobuf_put(in);
		c->in = NULL;
		client_want_read(c, !prep_tx_pending(&c->lease->prep));
	}
}

/* ---- the relay: backend to client ---- */

/* What the backend's latest bytes mean for the lease. */
enum boundary {
	LEASE_GOES_ON,   /* inside a transaction, session mode, or pinned */
	LEASE_ENDS,      /* a transaction ended cleanly: the backend goes back */
	LEASE_PROBES,    /* ... but the client is pinned and may have released its state: ask */
};

static enum boundary at_boundary(const struct client *c, const struct server *s)
{
	/* A removed database's session-mode clients are let go at a transaction's end too. */
	bool at_tx_end = c->pool->closing == POOL_CLOSE_AT_TX_END;
	bool tx_mode = c->pool->mode == POOL_MODE_TRANSACTION;
	bool pin_holds = tx_mode && c->pinned && !at_tx_end;

	if (!(tx_mode || at_tx_end) || (pin_holds && !session_probe_due(c)))
		return LEASE_GOES_ON;
	if (s->stream.txstatus != 'I' || !stream_idle(&s->stream) || (c->out && c->out->scanned != c->out->end) ||
	    (c->in && iobuf_unsent(c->in) > 0) || prep_busy(c) || reset_active(&s->reset))
		return LEASE_GOES_ON;
	if (!pin_holds)
		return LEASE_ENDS;
	/* A cancel still on its way would hit the probe: ask at a later boundary. */
	return s->cancels_pending ? LEASE_GOES_ON : LEASE_PROBES;
}

/* Notifications libpq read while it had the socket are the client's, in their place. */
static int relay_notifications(struct client *c, struct server *s)
{
	/* A payload is under 8000 bytes, a channel name under 64. */
	static uint8_t buf[8192 + 128];
	PGnotify *n;

	while (c->state != CLIENT_CLOSED && (n = PQnotifies(s->conn))) {
		struct wbuf w;
		wbuf_init(&w, buf, sizeof(buf));
		proto_notification(&w, (uint32_t)n->be_pid, n->relname, n->extra);
		PQfreemem(n);
		if (w.overflow)
			log_warning("client %u: a notification too long to relay was dropped", c->id);
		else
			client_send(c, buf, w.len);
	}
	return c->state == CLIENT_CLOSED ? -1 : 0;
}

/* Unpinned: the lease ends as any transaction's; else the relay goes on with what came meanwhile. */
static void pin_probed(struct server *s, const char *sqlstate, const char *error)
{
	struct client *c = server_client(s);

	(void)sqlstate;
	if (relay_notifications(c, s) < 0)
		return;
	if (PQtransactionStatus(s->conn) != PQTRANS_IDLE) {
		server_close(s, "the session state probe did not leave the backend idle");
		return;
	}
	if (!session_probed(c, s, error, s->query_rows > 0)) {
		server_go_raw(s, client_relay_from_server, client_relay_to_server);
		client_leased(c);
		return;
	}
	/* The backend goes to the first waiting client; this one's new bytes queue behind. */
	lease_exit(c, EXIT_TX_DONE);
	client_dispatch(c);
}

/*
 * The pinned client may have released its session state: ask the backend,
 * through libpq, at this clean boundary. Meanwhile the client stays ACTIVE
 * and what it sends waits in its buffer (client_on_data: the lease is not relaying).
 */
static void probe_pin(struct client *c, struct server *s)
{
	assert(c->pinned && !c->pin_lasts && s->stream.txstatus == 'I');
	if (lease_query(s, session_probe(c), pin_probed) < 0)
		server_close(s, "could not send the session state probe");
}

/* A cancel reached PostgreSQL: a probe that was put off for it can run if nothing else happens. */
void client_cancel_delivered(struct server *s)
{
	struct client *c = server_client(s);

	if (!c || s->state != SERVER_LEASED || s->phase != PHASE_RAW || s->cancels_pending)
		return;
	if (at_boundary(c, s) == LEASE_PROBES)
		probe_pin(c, s);
}

static int read_from_server(struct client *c, struct server *s)
{
	struct iobuf *out = client_out_buffer(c);

	if (!out) {
		client_fatal(c, "53200", "out of memory: no buffer for the backend's reply", NULL);
		return -1;
	}
	if (iobuf_room(out) == 0) {
		server_want_read(s, false);
		return 0;
	}
	ssize_t n = server_recv_raw(s, out->data + out->end, iobuf_room(out));
	if (n > 0) {
		out->end += (uint32_t)n;
		c->pool->stats.bytes_sent += (uint64_t)n;
		return 1;
	}
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
		return 0;
	server_close(s, n == 0 ? "closed by the backend" : "read error from the backend");
	return -1;
}

/* Bytes to cut from the end of the message the scan stopped after (one loop, one thread). */
static uint32_t reply_cut;

static enum frame_verdict server_msg(void *arg, const struct frame_msg *m)
{
	struct server *s = arg;
	enum frame_verdict v = stream_server_msg(&s->stream, m);

	if (m->type == 'E')
		session_backend_error(server_client(s));
	if (v == FRAME_CONTINUE && (m->type == 'S' || reset_active(&s->reset)) &&
	    (reply_cut = reset_server_msg(server_client(s), s, m)))
		return FRAME_STOP_AFTER;
	return v;
}

/* Frame the backend's bytes; what reset.c hides from the client is cut out of the buffer. */
static ssize_t scan_server(struct server *s, struct iobuf *out)
{
	uint32_t at = out->scanned;

	for (;;) {
		const char *whole = reset_active(&s->reset) ? RESET_SERVER_WHOLE : SESSION_SERVER_WHOLE;
		reply_cut = 0;
		ssize_t n = frame_scan(&s->stream.from_server, out->data + at, out->end - at, whole, server_msg, s);
		if (n < 0)
			return -1;
		at += (uint32_t)n;
		if (!reply_cut)
			return at - out->scanned;
		memmove(out->data + at - reply_cut, out->data + at, out->end - at);
		out->end -= reply_cut;
		at -= reply_cut;
	}
}

/* Send the framed reply on, and act on where it left the lease. */
static void relay_reply(struct client *c, struct server *s, enum boundary at)
{
	bool done = at == LEASE_ENDS;
	/* Serve whoever waits first: a queued client's query, else this reply. */
	bool waiter_first = done && !list_empty(&c->pool->waiting);

	if (waiter_first)
		lease_exit(c, EXIT_TX_DONE);
	if (client_flush(c) < 0)
		return client_close(c, "client went away while being written to");
	if (done) {
		if (!waiter_first)
			lease_exit(c, EXIT_TX_DONE);
		return client_dispatch(c);
	}
	if (at == LEASE_PROBES)
		return probe_pin(c, s);
	server_want_read(s, !c->out || iobuf_room(c->out) > 0 || c->out->start > 0);
	/* A reply let held input go, or a DISCARD ALL's follow-up is due: the last thing done here. */
	bool prep_kick = prep_take_kick(&c->lease->prep);
	if (s->reset.kick || prep_kick) {
		s->reset.kick = false;
		client_relay_to_server(s);
	}
}

void client_relay_from_server(struct server *s)
{
	struct client *c = server_client(s);

	assert(c && c->state == CLIENT_ACTIVE && s->state == SERVER_LEASED);
	if (read_from_server(c, s) <= 0)
		return;
	struct iobuf *out = c->out;
	uint32_t owed_before = s->stream.owed_z;
	bool copy_before = s->stream.copy_in;
	ssize_t n = c->prep_on ? prep_scan_from_server(c, s, out) : scan_server(s, out);
	if (n < 0) {
		server_close(s, "protocol violation from the backend");
		return;
	}
	if (owed_before && !s->stream.owed_z)
		c->pool->stats.query_time_us += (uint64_t)((ev_now(loop) - s->stream.busy_since) * 1e6);
	replies_came(c->lease, &s->stream, owed_before, copy_before);
	out->scanned += (uint32_t)n;
	c->mid_message = s->stream.from_server.body_left > 0;
	if (c->violation && s->stream.owed_z == 0 && !c->mid_message) {
		if (client_flush(c) < 0)
			return client_close(c, "client went away while being written to");
		return client_fatal(c, "08P01", c->violation, NULL);
	}
	relay_reply(c, s, at_boundary(c, s));
}


/* ---- the client's socket, once it is logged in ---- */

void client_on_data(struct client *c)
{
	c->last_read = ev_now(loop);
	if (client_read_into(c, &c->in) <= 0) {
		client_close(c, "client closed the connection");
		return;
	}
	switch (c->state) {
	case CLIENT_IDLE:
		client_dispatch(c);
		break;
	case CLIENT_ACTIVE:
		if (client_server(c)->phase == PHASE_RAW) {
			client_relay_to_server(client_server(c));
			break;
		}
		/* The lease is still being set up. */
		/* fall through */
	default:
		/* Waiting: keep the bytes, but stop reading when the buffer is full. */
		client_want_read(c, iobuf_room(c->in) > 0);
		break;
	}
}
