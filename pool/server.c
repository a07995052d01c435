/*
 * server.c — one backend connection, opened and driven through libpq.
 *
 * libpq owns the socket in the CONNECT, QUERY and IDLE phases; pglease owns
 * it in the RAW phase, during which no libpq call may touch the socket: libpq
 * would read or buffer bytes the relay is framing. Handing the socket over
 * happens only at a clean message boundary, which the callers guarantee: to
 * the relay once libpq is drained (PQgetResult returned NULL), back to libpq
 * only when nothing is owed or half-sent either way (stream_idle();
 * pool/README.md, invariant 2).
 */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "authq.h"
#include "caps.h"
#include "client.h"
#include "env.h"
#include "lease.h"
#include "log.h"
#include "pool.h"
#include "proto.h"
#include "rewrite.h"
#include "server.h"
#include "tls_io.h"

static struct list closed_servers = { { &closed_servers.head, &closed_servers.head }, 0 };
static int next_server_id = 1;

static struct list *state_list(struct server *s, enum server_state state)
{
	struct pool *p = s->pool;

	switch (state) {
	case SERVER_CONNECTING: return &p->connecting;
	case SERVER_IDLE: return &p->idle;
	case SERVER_LEASED: return &p->leased;
	case SERVER_CLEANING: return &p->cleaning;
	case SERVER_AUTHQ: return &p->authq;
	case SERVER_CLOSED: return &closed_servers;
	}
	return NULL;
}

void server_set_state(struct server *s, enum server_state state)
{
	/* A closed server is only freed: nothing brings it back. */
	assert(s->state != SERVER_CLOSED);
	list_remove(state_list(s, s->state), &s->node);
	s->state = state;
	list_push_tail(state_list(s, state), &s->node);
}

/* ---- watchers ---- */

/*
 * Bytes OpenSSL has decrypted but nobody has read yet are invisible to epoll:
 * while the read watcher is on, a read event is fed for them by hand. Each
 * reader takes at least a byte or stops the watcher (which drops the fed
 * event), so this cannot spin.
 */
static void tls_wake(struct server *s)
{
	if (s->tls && ev_is_active(&s->rio) && SSL_pending(s->tls) > 0)
		ev_feed_event(loop, &s->rio, EV_READ);
}

/* Leaving the raw phase: libpq's own SSL calls redo whatever a raw read or write waited for. */
static void tls_forget_waits(struct server *s)
{
	s->tls_read_wants_write = s->tls_write_wants_read = false;
}

void server_want_read(struct server *s, bool on)
{
	if (on && !ev_is_active(&s->rio))
		ev_io_start(loop, &s->rio);
	else if (!on && ev_is_active(&s->rio))
		ev_io_stop(loop, &s->rio);
	if (on)
		tls_wake(s);
}

void server_want_write(struct server *s, bool on)
{
	/* An SSL_read that waits for writability keeps the write watcher on. */
	on |= s->tls_read_wants_write;
	if (on && !ev_is_active(&s->wio))
		ev_io_start(loop, &s->wio);
	else if (!on && ev_is_active(&s->wio))
		ev_io_stop(loop, &s->wio);
}

/* libpq may switch sockets while connecting (multi-host, fallbacks). */
static void follow_socket(struct server *s)
{
	int fd = PQsocket(s->conn);

	if (fd == s->fd)
		return;
	server_want_read(s, false);
	server_want_write(s, false);
	s->fd = fd;
	ev_io_set(&s->rio, fd, EV_READ);
	ev_io_set(&s->wio, fd, EV_WRITE);
}

static void on_timer(struct ev_loop *l, ev_timer *w, int revents)
{
	struct server *s = w->data;

	(void)l;
	(void)revents;
	s->timer_cb(s);
}

void server_set_timer(struct server *s, double seconds, void (*cb)(struct server *))
{
	ev_timer_stop(loop, &s->timer);
	s->timer_cb = cb;
	ev_timer_set(&s->timer, seconds, 0.);
	ev_timer_start(loop, &s->timer);
}

void server_stop_timer(struct server *s)
{
	ev_timer_stop(loop, &s->timer);
}

/* ---- connecting ---- */

/* With PQERRORS_VERBOSE a backend's error reads "FATAL:  3D000: message". */
static void split_sqlstate(const char *text, char sqlstate[6], const char **message)
{
	const char *p = strstr(text, ":  ");

	strcpy(sqlstate, "08001");
	*message = text;
	if (!p || strlen(p) < 10 || p[8] != ':')
		return;
	memcpy(sqlstate, p + 3, 5);
	sqlstate[5] = '\0';
	*message = p + 10;
	while (**message == ' ')
		(*message)++;
}

static void connect_failed(struct server *s, const char *text)
{
	char sqlstate[6], clean[512];
	const char *message;

	split_sqlstate(text, sqlstate, &message);
	snprintf(clean, sizeof(clean), "%s", message);
	char *cut = strstr(clean, "\nLOCATION:");
	if (cut)
		*cut = '\0';
	size_t n = strlen(clean);
	while (n && (clean[n - 1] == '\n' || clean[n - 1] == ' '))
		clean[--n] = '\0';
	pool_server_failed(s, sqlstate, clean);
}

static void connect_timeout(struct server *s)
{
	connect_failed(s, "timeout expired (server_connect_timeout)");
}

static const char *field(const PGresult *res, int code)
{
	return PQresultErrorField(res, code);
}

static bool is_error(const char *severity)
{
	return severity && (strcmp(severity, "ERROR") == 0 || strcmp(severity, "FATAL") == 0 ||
			    strcmp(severity, "PANIC") == 0);
}

/* Notices are dropped, unless the running query's owner asked to keep them: then as a client would get them. */
static void on_notice(void *arg, const PGresult *res)
{
	struct server *s = arg;
	const char *severity = field(res, PG_DIAG_SEVERITY_NONLOCALIZED);
	const char *sqlstate = field(res, PG_DIAG_SQLSTATE), *message = field(res, PG_DIAG_MESSAGE_PRIMARY);
	const char *detail = field(res, PG_DIAG_MESSAGE_DETAIL), *hint = field(res, PG_DIAG_MESSAGE_HINT);

	/* Idle, an error is the backend's last word (a restart's FATAL 57P01): idle_poll() closes it. */
	if (s->phase == PHASE_IDLE && !s->idle_error[0] && is_error(severity)) {
		snprintf(s->idle_error, sizeof(s->idle_error), "%s %s: %s", severity, sqlstate ? sqlstate : "?",
			 message ? message : "");
		return;
	}
	if (!s->notices.on || !sqlstate || !message)
		return;
	size_t cap = 64 + strlen(message) + (detail ? strlen(detail) : 0) + (hint ? strlen(hint) : 0) + 2 * 16;
	uint8_t *data = realloc(s->notices.data, s->notices.len + cap);
	struct wbuf w;
	if (!data)
		return;
	s->notices.data = data;
	wbuf_init(&w, data + s->notices.len, cap);
	proto_notice(&w, severity ? severity : field(res, PG_DIAG_SEVERITY), sqlstate, message, detail, hint);
	if (!w.overflow)
		s->notices.len += (uint32_t)w.len;
}

void server_keep_notices(struct server *s)
{
	assert(s->phase == PHASE_QUERY);
	s->notices.on = true;
}

uint8_t *server_take_notices(struct server *s, uint32_t *len)
{
	uint8_t *data = s->notices.data;

	*len = s->notices.len;
	s->notices.on = false;
	s->notices.data = NULL;
	s->notices.len = 0;
	return data;
}

/*
 * The raw phases read and write through libpq's own OpenSSL session, so that
 * libpq, taking the link back, finds the TLS stream where pglease left it
 * (SSL_read hands out decrypted bytes; what it keeps is there for libpq's next
 * SSL_read). A moving buffer is allowed because the relay retries a write
 * from an iobuf that may have been compacted; partial writes make SSL_write
 * report progress record by record, like send().
 */
static int tls_take(struct server *s)
{
	SSL *ssl = PQsslStruct(s->conn, "OpenSSL");

	if (!ssl)
		return -1;
	SSL_set_mode(ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE);
	s->tls = ssl;
	return 0;
}

static void connect_done(struct server *s)
{
	assert(s->state == SERVER_CONNECTING && s->phase == PHASE_CONNECT);
	server_stop_timer(s);
	server_want_write(s, false);
	if (PQgssEncInUse(s->conn)) {
		connect_failed(s, "backend connection uses GSS encryption, which pglease cannot relay; "
				  "set gssencmode=disable in the conninfo (TLS through sslmode is supported)");
		return;
	}
	if (PQsslInUse(s->conn) && tls_take(s) < 0) {
		connect_failed(s, "backend connection uses TLS, but libpq's OpenSSL session is not available");
		return;
	}
	PQsetnonblocking(s->conn, 1);
	PQsetErrorVerbosity(s->conn, PQERRORS_DEFAULT);
	PQsetNoticeReceiver(s->conn, on_notice, s);
	s->backend_pid = PQbackendPID(s->conn);
	s->connected_at = ev_now(loop);
	stream_reset(&s->stream);
	log_debug("server %d: connected, backend pid %d", s->id, s->backend_pid);
	pool_server_connected(s);
}

static void connect_poll(struct server *s)
{
	PostgresPollingStatusType st = PQconnectPoll(s->conn);

	follow_socket(s);
	switch (st) {
	case PGRES_POLLING_READING:
		server_want_write(s, false);
		server_want_read(s, true);
		return;
	case PGRES_POLLING_WRITING:
		server_want_read(s, false);
		server_want_write(s, true);
		return;
	case PGRES_POLLING_OK:
		connect_done(s);
		return;
	default:
		connect_failed(s, PQerrorMessage(s->conn));
		return;
	}
}

/* ---- libpq-driven queries ---- */

static void query_finish(struct server *s)
{
	server_query_cb done = s->query_done;
	char *error = s->query_error;
	PGresult *res = s->query_result;

	assert(s->phase == PHASE_QUERY && done);
	server_stop_timer(s);
	s->query_done = NULL;
	s->query_error = NULL;
	s->phase = PHASE_IDLE;
	/* The query's notices have all come: the callback may take them. */
	s->notices.on = false;
	done(s, error ? s->query_sqlstate : NULL, error);
	/* The callback may have started another query, which keeps its own result. */
	if (s->query_result == res)
		s->query_result = NULL;
	PQclear(res);
	free(error);
}

const PGresult *server_query_result(const struct server *s)
{
	return s->query_result;
}

static void trim_newlines(char *text)
{
	size_t n = strlen(text);

	while (n && text[n - 1] == '\n')
		text[--n] = '\0';
}

/* The query's first error is kept for its callback; -1 when there is no memory to keep it. */
static int query_note_error(struct server *s, const char *sqlstate, const char *message)
{
	if (s->query_error)
		return 0;
	snprintf(s->query_sqlstate, sizeof(s->query_sqlstate), "%s", sqlstate ? sqlstate : "08006");
	if (!(s->query_error = strdup(message ? message : "unknown error")))
		return -1;
	trim_newlines(s->query_error);
	return 0;
}

static int query_take_result(struct server *s, PGresult *res)
{
	ExecStatusType st = PQresultStatus(res);
	bool error = st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR;
	bool keep = error ? !s->query_error : (st == PGRES_TUPLES_OK && !s->query_error);

	if (error && query_note_error(s, PQresultErrorField(res, PG_DIAG_SQLSTATE),
				      PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY)) < 0) {
		PQclear(res);
		return -1;
	}
	if (st == PGRES_TUPLES_OK)
		s->query_rows = PQntuples(res);
	if (!keep) {
		PQclear(res);
		return 0;
	}
	PQclear(s->query_result);
	s->query_result = res;
	return 0;
}

static void query_poll(struct server *s, int revents)
{
	if ((revents & EV_WRITE) && PQflush(s->conn) == 0)
		server_want_write(s, false);
	if ((revents & EV_READ) && !PQconsumeInput(s->conn)) {
		char why[512];
		snprintf(why, sizeof(why), "%s", PQerrorMessage(s->conn));
		trim_newlines(why);
		server_close(s, "lost while running a pglease query: %s", why);
		return;
	}
	while (!PQisBusy(s->conn)) {
		PGresult *res = PQgetResult(s->conn);
		if (!res) {
			query_finish(s);
			return;
		}
		/* An error its callback would not hear of could hand on a backend that is not clean. */
		if (query_take_result(s, res) < 0) {
			server_close(s, "out of memory keeping the error of a pglease query");
			return;
		}
	}
}

static void query_timeout(struct server *s)
{
	server_close(s, "a pglease query timed out (server_drain_timeout)");
}

static void query_begin(struct server *s, server_query_cb done)
{
	/* One query at a time, on an open connection (a new one is still in phase CONNECT when first leased). */
	assert(s->conn && s->phase != PHASE_QUERY && !s->query_done);
	assert(s->state == SERVER_LEASED || s->state == SERVER_CLEANING || s->state == SERVER_AUTHQ);
	s->phase = PHASE_QUERY;
	tls_forget_waits(s);
	s->query_done = done;
	s->query_rows = 0;
	s->query_result = NULL;
	free(server_take_notices(s, &(uint32_t){ 0 }));
}

static void query_sent(struct server *s)
{
	server_want_read(s, true);
	server_want_write(s, PQflush(s->conn) == 1);
	server_set_timer(s, cfg->server_drain_timeout * 2, query_timeout);
}

int server_query(struct server *s, const char *sql, server_query_cb done)
{
	query_begin(s, done);
	if (!PQsendQuery(s->conn, sql))
		return -1;
	query_sent(s);
	return 0;
}

int server_query_param(struct server *s, const char *sql, const char *param, server_query_cb done)
{
	query_begin(s, done);
	/* Binary results: a timestamp arrives as an integer, whatever the session's DateStyle and TimeZone. */
	if (!PQsendQueryParams(s->conn, sql, 1, NULL, &param, NULL, NULL, 1))
		return -1;
	query_sent(s);
	return 0;
}

/* ---- idle ---- */

/* Anything but a clean stream of notices on an idle backend means it is unusable. */
static void idle_poll(struct server *s)
{
	if (!PQconsumeInput(s->conn)) {
		char msg[256];
		snprintf(msg, sizeof(msg), "%s", PQerrorMessage(s->conn));
		msg[strcspn(msg, "\n")] = '\0';
		server_close(s, "closed by the backend while idle: %s", msg);
		return;
	}
	PGnotify *n = PQnotifies(s->conn);
	if (n) {
		PQfreemem(n);
		server_close(s, "unexpected NOTIFY while idle");
		return;
	}
	if (PQstatus(s->conn) != CONNECTION_OK) {
		server_close(s, "connection went bad while idle");
		return;
	}
	if (s->idle_error[0])
		server_close(s, "the backend ended while idle: %s", s->idle_error);
}

/*
 * The idle watcher closes a backend as soon as its socket turns readable,
 * but that event may still be queued behind the client event that leases it
 * (a restart's FATAL reported by the same poll). So before a lease sends
 * anything, that pending event (or bytes OpenSSL holds) is handled now,
 * without a syscall: a recv(MSG_PEEK) here cost every transaction a fifth
 * syscall (2 recvfrom became 3). A backend that dies after the poll
 * returned is met by the relay's first read, as before this check.
 */
bool server_still_there(struct server *s)
{
	if (s->idle_error[0]) {
		server_close(s, "the backend ended while idle: %s", s->idle_error);
		return false;
	}
	if (!ev_is_pending(&s->rio) && !(s->tls && SSL_pending(s->tls) > 0))
		return true;
	if (s->phase != PHASE_IDLE) {
		server_close(s, "sent something unasked at a clean boundary");
		return false;
	}
	ev_clear_pending(loop, &s->rio);
	idle_poll(s);
	return s->state != SERVER_CLOSED;
}

void server_watch_idle(struct server *s)
{
	/* Idle in the pool, or cleaning while a cancel is on its way; never under a lease. */
	assert(s->conn && !server_client(s) && (s->state == SERVER_IDLE || s->state == SERVER_CLEANING));
	s->phase = PHASE_IDLE;
	tls_forget_waits(s);
	s->on_readable = s->on_writable = NULL;
	server_want_write(s, false);
	server_want_read(s, true);
}

/* ---- raw ---- */

void server_go_raw(struct server *s, server_raw_cb on_readable, server_raw_cb on_writable)
{
	/* libpq is done with the socket (a query's callback runs in phase IDLE): invariant 2. */
	assert(s->conn && on_readable && s->phase != PHASE_QUERY);
	assert(s->state == SERVER_LEASED || s->state == SERVER_CLEANING);
	s->phase = PHASE_RAW;
	s->on_readable = on_readable;
	s->on_writable = on_writable;
	server_want_read(s, true);
}

/* SSL_write as server_send_raw(): bytes taken, 0 (try again) or -1 (gone). */
static ssize_t tls_send(struct server *s, const void *data, size_t len)
{
	enum tls_wait wait;
	ssize_t n = tls_io_send(s->tls, data, len, &wait);

	if (wait == TLS_WAIT_READ)
		s->tls_write_wants_read = true;   /* retried from on_io when the socket turns readable */
	if (n < 0 && errno == EAGAIN)
		return 0;
	return n;
}

static ssize_t tls_recv(struct server *s, void *buf, size_t len)
{
	enum tls_wait wait;
	ssize_t n = tls_io_recv(s->tls, buf, len, &wait);

	if (wait == TLS_WAIT_WRITE) {
		/* Retried from on_io when the socket turns writable. */
		s->tls_read_wants_write = true;
		server_want_write(s, true);
	}
	return n;
}

ssize_t server_recv_raw(struct server *s, void *buf, size_t len)
{
	assert(s->phase == PHASE_RAW && len > 0);
	if (s->tls)
		return tls_recv(s, buf, len);
	return recv(s->fd, buf, len, MSG_DONTWAIT);
}

ssize_t server_send_raw(struct server *s, const void *data, size_t len)
{
	if (s->tls)
		return tls_send(s, data, len);
	ssize_t n = send(s->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);

	if (n >= 0)
		return n;
	if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
		return 0;
	return -1;
}

/* ---- dispatch ---- */

/* A TLS read may wait for writability and a write for readability: the event goes to the side that waits. */
static int tls_swap_wants(struct server *s, int revents)
{
	if ((revents & EV_WRITE) && s->tls_read_wants_write) {
		s->tls_read_wants_write = false;
		revents |= EV_READ;
		/* The read kept the write watcher on; a writer that has nothing to send lets it go. */
		if (!s->on_writable)
			server_want_write(s, false);
	}
	if ((revents & EV_READ) && s->tls_write_wants_read) {
		s->tls_write_wants_read = false;
		revents |= EV_WRITE;
	}
	return revents;
}

static void on_io(struct ev_loop *l, ev_io *w, int revents)
{
	struct server *s = w->data;

	(void)l;
	switch (s->phase) {
	case PHASE_CONNECT:
		connect_poll(s);
		break;
	case PHASE_QUERY:
		query_poll(s, revents);
		break;
	case PHASE_IDLE:
		idle_poll(s);
		break;
	case PHASE_RAW:
		if (s->tls)
			revents = tls_swap_wants(s, revents);
		if ((revents & EV_WRITE) && s->on_writable)
			s->on_writable(s);
		if ((revents & EV_READ) && s->state != SERVER_CLOSED && s->phase == PHASE_RAW && s->on_readable)
			s->on_readable(s);
		break;
	}
	if (s->tls && s->state != SERVER_CLOSED)
		tls_wake(s);
}

static struct server *server_new(struct pool *pool)
{
	struct server *s = calloc(1, sizeof(*s));

	if (!s)
		return NULL;
	s->pool = pool;
	s->generation = s->pool->generation;
	s->cap_epoch = caps_epoch();
	s->id = next_server_id++;
	s->fd = -1;
	s->state = SERVER_CONNECTING;
	s->phase = PHASE_CONNECT;
	ev_io_init(&s->rio, on_io, -1, EV_READ);
	ev_io_init(&s->wio, on_io, -1, EV_WRITE);
	/* In a busy batch, a backend's reply frees it for the next waiter: handle those first. */
	ev_set_priority(&s->rio, EV_MAXPRI);
	ev_set_priority(&s->wio, EV_MAXPRI);
	ev_timer_init(&s->timer, on_timer, 0., 0.);
	s->rio.data = s->wio.data = s->timer.data = s;
	list_node_init(&s->node);
	list_push_tail(&pool->connecting, &s->node);
	return s;
}

struct server *server_connect(struct pool *pool)
{
	struct server *s = server_new(pool);

	if (!s)
		return NULL;
	s->conn = PQconnectStartParams(pool->keywords, pool->values, 0);
	if (!s->conn || PQstatus(s->conn) == CONNECTION_BAD) {
		connect_failed(s, s->conn ? PQerrorMessage(s->conn) : "out of memory");
		return NULL;
	}
	PQsetErrorVerbosity(s->conn, PQERRORS_VERBOSE);
	server_set_timer(s, cfg->server_connect_timeout, connect_timeout);
	follow_socket(s);
	server_want_write(s, true);
	return s;
}

/* ---- closing ---- */

/* Counted by the state it leaves; failed connects are counted by pool_server_failed(). */
static void note_close(struct server *s)
{
	struct pool_stats *st = &s->pool->stats;

	if (s->state == SERVER_CONNECTING)
		return;
	st->servers_closed++;
	st->servers_lost += s->state == SERVER_LEASED;
	st->servers_discarded += s->state == SERVER_CLEANING;
}

void server_close(struct server *s, const char *reason_fmt, ...)
{
	char reason[512];
	va_list ap;

	if (s->state == SERVER_CLOSED)
		return;
	va_start(ap, reason_fmt);
	vsnprintf(reason, sizeof(reason), reason_fmt, ap);
	va_end(ap);
	log_info("server %d (backend pid %d, pool %s/%s) closed: %s",
		 s->id, s->backend_pid, s->pool->dbname, s->pool->user, reason);
	note_close(s);
	/* A lease on it ends through the one door, which tells the client; a lookup it was lent to fails. */
	lease_server_closed(s);
	if (s->state == SERVER_AUTHQ)
		authq_server_closed(s, reason);
	assert(!s->lease);
	server_want_read(s, false);
	server_want_write(s, false);
	server_stop_timer(s);
	struct pool *pool = s->pool;
	server_set_state(s, SERVER_CLOSED);
	/* libpq owns the TLS session and frees it with the connection. */
	s->tls = NULL;
	tls_forget_waits(s);
	if (s->conn) {
		PQfinish(s->conn);
		caps_server_closed(pool);
	}
	s->conn = NULL;
	s->fd = -1;
	pool_server_gone(pool);
}

void server_reap(void)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &closed_servers) {
		struct server *s = list_entry(pos, struct server, node);
		assert(s->state == SERVER_CLOSED && !s->lease && s->cancels_pending >= 0);
		if (s->cancels_pending)
			continue;
		list_remove(&closed_servers, pos);
		params_free(&s->applied);
		prep_server_free(s);
		free(s->query_error);
		PQclear(s->query_result);
		free(s->notices.data);
		free(s);
	}
}

const struct list *server_closed_list(void)
{
	return &closed_servers;
}
