/*
 * client.c — one client connection: login, then relaying under leases.
 *
 * The hot path is client_relay_to_server() and client_relay_from_server():
 * one recv() into the client's buffer, framing of the new bytes (only
 * headers are looked at, plus the 'Z' status byte), one send(). A
 * watcher is started only when a peer would block, so a transaction
 * normally costs no epoll_ctl. Buffers exist only while bytes are in
 * flight: an idle client owns none.
 */
#include <assert.h>
#include <errno.h>
#include <pwd.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/random.h>
#include <sys/socket.h>

#include "admin.h"
#include "cancel.h"
#include "client.h"
#include "daemon.h"
#include "drain.h"
#include "lease.h"
#include "log.h"
#include "pool.h"
#include "proto.h"
#include "reset.h"
#include "rewrite.h"
#include "server.h"
#include "session.h"
#include "startup.h"
#include "vet.h"
#include "worker.h"

struct list login_clients = { { &login_clients.head, &login_clients.head }, 0 };
static struct list closed_clients = { { &closed_clients.head, &closed_clients.head }, 0 };
int client_count;
static uint32_t next_client_id = 1;

static void on_readable(struct ev_loop *l, ev_io *w, int revents);
static void on_writable(struct ev_loop *l, ev_io *w, int revents);
static void dispatch_input(struct client *c);
static int answer_without_lease(struct client *c);

/* ---- state and lists ---- */

static struct list *state_list(struct client *c, enum client_state state)
{
	switch (state) {
	case CLIENT_LOGIN: return &login_clients;
	case CLIENT_LOGIN_WAIT: return &c->pool->login_wait;
	case CLIENT_IDLE: return &c->pool->clients;
	case CLIENT_WAITING: return &c->pool->waiting;
	case CLIENT_ACTIVE: return &c->pool->active;
	case CLIENT_ADMIN: return &admin_clients;
	case CLIENT_CLOSED: return &closed_clients;
	}
	return NULL;
}

void client_set_state(struct client *c, enum client_state state)
{
	list_remove(state_list(c, c->state), &c->node);
	c->state = state;
	c->state_since = ev_now(loop);
	list_push_tail(state_list(c, state), &c->node);
}

static void want_read(struct client *c, bool on)
{
	/* After a bad message nothing more is read: the client is about to get FATAL. */
	on = on && !c->violation;
	if (on && !ev_is_active(&c->rio))
		ev_io_start(loop, &c->rio);
	else if (!on && ev_is_active(&c->rio))
		ev_io_stop(loop, &c->rio);
}

static void want_write(struct client *c, bool on)
{
	if (on && !ev_is_active(&c->wio))
		ev_io_start(loop, &c->wio);
	else if (!on && ev_is_active(&c->wio))
		ev_io_stop(loop, &c->wio);
}

/* ---- accept and close ---- */

void client_accept(int fd)
{
	struct client *c = calloc(1, sizeof(*c));

	if (!c) {
		close(fd);
		return;
	}
	c->fd = fd;
	c->id = next_client_id++;
	if (getrandom(&c->cancel_key, sizeof(c->cancel_key), GRND_NONBLOCK) != sizeof(c->cancel_key))
		c->cancel_key = (uint32_t)random();
	c->state = CLIENT_LOGIN;
	c->exit_why = EXIT_CLIENT_GONE;
	c->state_since = c->connected_at = ev_now(loop);
	list_push_tail(&login_clients, &c->node);
	ev_io_init(&c->rio, on_readable, fd, EV_READ);
	ev_io_init(&c->wio, on_writable, fd, EV_WRITE);
	c->rio.data = c->wio.data = c;
	client_count++;
	want_read(c, true);
}

static void drop_buffers(struct client *c)
{
	iobuf_put(c->in);
	iobuf_put(c->out);
	c->in = c->out = NULL;
}

void client_close(struct client *c, const char *reason_fmt, ...)
{
	char reason[512];
	va_list ap;

	if (c->state == CLIENT_CLOSED)
		return;
	va_start(ap, reason_fmt);
	vsnprintf(reason, sizeof(reason), reason_fmt, ap);
	va_end(ap);
	log_info("client %u (%s/%s) closed: %s", c->id, c->pool ? c->pool->dbname : "-",
		 c->pool ? c->pool->user : "-", reason);
	if (c->server)
		lease_exit(c, c->exit_why);
	want_read(c, false);
	want_write(c, false);
	close(c->fd);
	drop_buffers(c);
	client_set_state(c, CLIENT_CLOSED);
	client_count--;
}

void client_reap(void)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &closed_clients) {
		struct client *c = list_entry(pos, struct client, node);
		if (c->jobs_pending)
			continue;
		list_remove(&closed_clients, pos);
		params_free(&c->params);
		params_free(&c->startup);
		params_free(&c->vet_key);
		admin_free(c);
		session_free(c);
		prep_client_free(c->prep);
		free(c->violation);
		free(c);
	}
}

/* ---- sending what pglease itself says ---- */

static struct iobuf *out_buffer(struct client *c)
{
	if (!c->out)
		c->out = iobuf_get();
	else if (c->out->start > 0 && iobuf_room(c->out) < IOBUF_SIZE / 2)
		iobuf_compact(c->out);
	return c->out;
}

/* Send out[start, scanned); returns -1 when the client is gone. */
static int flush_out(struct client *c)
{
	struct iobuf *out = c->out;

	while (out && iobuf_unsent(out)) {
		ssize_t n = send(c->fd, out->data + out->start, iobuf_unsent(out), MSG_NOSIGNAL | MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		out->start += (uint32_t)n;
	}
	want_write(c, out && iobuf_unsent(out));
	if (out && iobuf_is_empty(out)) {
		iobuf_put(out);
		c->out = NULL;
	}
	return 0;
}

static void send_bytes(struct client *c, const uint8_t *data, size_t len)
{
	struct iobuf *out = out_buffer(c);

	if (!out || len > iobuf_room(out)) {
		client_close(c, "cannot buffer %zu bytes for the client", len);
		return;
	}
	memcpy(out->data + out->end, data, len);
	out->end += (uint32_t)len;
	out->scanned = out->end;
	if (flush_out(c) < 0)
		client_close(c, "client went away while being written to");
}

static void client_error(struct client *c, const char *severity, const char *sqlstate,
			 const char *message, const char *detail, const char *hint)
{
	/* A message may quote a startup setting's value. */
	uint8_t buf[2048 + STARTUP_MAX_LEN];
	struct wbuf w;

	wbuf_init(&w, buf, sizeof(buf));
	proto_error(&w, severity, sqlstate, message, detail, hint);
	if (!w.overflow)
		send_bytes(c, buf, w.len);
}

void client_fatal(struct client *c, const char *sqlstate, const char *message, const char *detail)
{
	if (c->state == CLIENT_CLOSED)
		return;
	if (c->server)
		lease_exit(c, c->exit_why);
	if (!c->mid_message)
		client_error(c, "FATAL", sqlstate, message, detail, NULL);
	client_close(c, "%s (SQLSTATE %s)", message, sqlstate);
}

/* ---- login ---- */

static int read_into(struct client *c, struct iobuf **bufp)
{
	if (!*bufp && !(*bufp = iobuf_get()))
		return -1;
	struct iobuf *buf = *bufp;
	if (iobuf_room(buf) < IOBUF_SIZE / 4 && buf->start > 0)
		iobuf_compact(buf);
	if (iobuf_room(buf) == 0)
		return 1;
	ssize_t n = recv(c->fd, buf->data + buf->end, iobuf_room(buf), 0);
	if (n > 0)
		buf->end += (uint32_t)n;
	if (n == 0)
		return 0;
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		return 0;
	return 1;
}

/*
 * Peer authentication. The uid-to-name lookup may block (NSS can be LDAP or
 * sssd), so it runs on the worker thread while the client waits in LOGIN,
 * holding its parsed startup packet in the job.
 */
struct peer_job {
	struct job job;          /* first: the worker hands this back */
	struct client *client;
	struct startup startup;
	uid_t uid;
	bool lookup_ok;
	char name[256];
};

static void peer_lookup(struct job *job)
{
	struct peer_job *pj = (struct peer_job *)job;
	struct passwd pw, *found = NULL;
	char buf[4096];

	if (getpwuid_r(pj->uid, &pw, buf, sizeof(buf), &found) == 0 && found) {
		snprintf(pj->name, sizeof(pj->name), "%s", found->pw_name);
		pj->lookup_ok = true;
	}
}

static void login_finish(struct client *c, struct startup *st);

static void peer_checked(struct job *job)
{
	struct peer_job *pj = (struct peer_job *)job;
	struct client *c = pj->client;
	char msg[300];

	c->jobs_pending--;
	if (c->state == CLIENT_LOGIN && pj->lookup_ok && strcmp(pj->name, pj->startup.user) == 0) {
		login_finish(c, &pj->startup);
	} else if (c->state == CLIENT_LOGIN) {
		snprintf(msg, sizeof(msg), "peer authentication failed for user \"%s\"", pj->startup.user);
		client_fatal(c, "28000", msg, NULL);
	}
	startup_free(&pj->startup);
	free(pj);
}

/* Takes over *st. */
static void peer_check(struct client *c, struct startup *st)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct peer_job *pj = calloc(1, sizeof(*pj));

	if (!pj || getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		free(pj);
		return client_fatal(c, "28000", "peer authentication failed: no peer credentials", NULL);
	}
	pj->job.run = peer_lookup;
	pj->job.done = peer_checked;
	pj->client = c;
	pj->uid = cred.uid;
	pj->startup = *st;
	memset(st, 0, sizeof(*st));
	c->jobs_pending++;
	worker_submit(&pj->job);
}

static void send_negotiate(struct client *c, const struct startup *st)
{
	uint8_t buf[1024];
	struct wbuf w;

	wbuf_init(&w, buf, sizeof(buf));
	proto_negotiate(&w, 0, (const char *const *)st->pq_options, st->pq_option_count);
	if (!w.overflow)
		send_bytes(c, buf, w.len);
}

static void login(struct client *c, struct startup *st)
{
	char msg[256];

	if (client_count > cfg->max_client_conn)
		return client_fatal(c, "53300", "no more connections allowed (max_client_conn)", NULL);
	if (!admin_is_console(st->database) && !config_find_db(cfg, st->database)) {
		snprintf(msg, sizeof(msg), "database \"%s\" does not exist", st->database);
		return client_fatal(c, "3D000", msg, NULL);
	}
	if (cfg->auth_type == AUTH_PEER)
		return peer_check(c, st);
	login_finish(c, st);
}

/* Authenticated: join the pool, and be welcomed once it knows its backend. */
static void login_finish(struct client *c, struct startup *st)
{
	if (st->minor > 0 || st->pq_option_count)
		send_negotiate(c, st);
	if (admin_is_console(st->database))
		return admin_login(c, st);

	const struct db_config *db = config_find_db(cfg, st->database);
	struct pool *p = db ? pool_find_or_create(db, st->database, st->user) : NULL;

	if (!p)
		return client_fatal(c, "53200", "out of memory creating the pool", NULL);
	c->pool = p;
	c->prep_on = p->mode == POOL_MODE_TRANSACTION && cfg->max_prepared_statements > 0;
	if (params_copy(&c->startup, &st->params) < 0)
		return client_fatal(c, "53200", "out of memory keeping the startup settings", NULL);
	c->params = st->params;
	st->params = PARAMS_EMPTY;
	if (vet_key(&st->sequence, &c->vet_key) < 0)
		return client_fatal(c, "53200", "out of memory keeping the startup settings", NULL);
	if (p->have_base)
		return client_welcome(c);
	if (p->last_error && ev_now(loop) < p->retry_after && pool_server_count(p) == 0)
		return client_fatal(c, p->last_sqlstate, p->last_error, NULL);
	client_set_state(c, CLIENT_LOGIN_WAIT);
	pool_want_servers(p);
}

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
	want_read(c, true);
	send_bytes(c, buf, w.len);
}

static void handle_cancel(struct client *c, const struct startup *st)
{
	struct client *target = client_find_by_key(st->cancel_pid, st->cancel_key);

	if (target && target->server && target->server->phase == PHASE_RAW)
		return cancel_submit_for(target->server, c);
	if (target && target->state == CLIENT_WAITING)
		cancel_waiting(target);
	else if (target && target->server)
		target->cancel_at_relay = true;
	client_close(c, "cancel request handled");
}

static void reply_no_encryption(struct client *c)
{
	if (c->in->end != c->in->start) {
		client_fatal(c, "08P01", "received unencrypted data after SSL request", NULL);
		return;
	}
	send_bytes(c, (const uint8_t *)"N", 1);
}

/* One startup-phase packet; returns true when another may follow. */
static bool login_packet(struct client *c)
{
	struct iobuf *in = c->in;
	struct startup st;

	startup_parse(in->data + in->start, in->end - in->start, &st);
	/* A packet is consumed whole: what follows it (a first Query) is framed from its end. */
	if (st.kind != STARTUP_INCOMPLETE && st.kind != STARTUP_BAD)
		in->scanned = in->start += st.packet_len;
	switch (st.kind) {
	case STARTUP_INCOMPLETE:
		break;
	case STARTUP_BAD:
		client_fatal(c, st.sqlstate, st.message, NULL);
		break;
	case STARTUP_SSL:
	case STARTUP_GSSENC:
		reply_no_encryption(c);
		startup_free(&st);
		return c->state == CLIENT_LOGIN;
	case STARTUP_CANCEL:
		handle_cancel(c, &st);
		break;
	case STARTUP_V3:
		login(c, &st);
		break;
	}
	startup_free(&st);
	return false;
}

static void login_read(struct client *c)
{
	if (read_into(c, &c->in) <= 0) {
		client_close(c, "client closed the connection during login");
		return;
	}
	/* Bytes sent before authentication finished wait for the session. */
	while (!c->jobs_pending && c->state == CLIENT_LOGIN && c->in && !iobuf_is_empty(c->in) && login_packet(c))
		;
}

/*
 * As PostgreSQL answers a login: AuthenticationOk, the notices setting the
 * startup settings raised, the reported settings, BackendKeyData,
 * ReadyForQuery. -1 when the client is gone.
 */
static int login_reply(struct client *c, const struct vet_answer *answer)
{
	/* Room for the base set plus every setting (and notice about it) a 10 000-byte startup packet can carry. */
	static uint8_t buf[4096 + 4 * STARTUP_MAX_LEN];
	struct wbuf w;
	int count;
	const char *const *names = pool_reported_params(&count);

	wbuf_init(&w, buf, sizeof(buf));
	proto_auth_ok(&w);
	if (answer && answer->notices_len)
		wbuf_bytes(&w, answer->notices, answer->notices_len);
	/* Only what the server reports: a client's own setting of another (search_path) is not. */
	for (int i = 0; i < count; i++) {
		const char *value = params_get(&c->pool->base, names[i]);
		const char *own = params_get(&c->params, names[i]);
		if (value)
			proto_param_status(&w, names[i], own ? own : value);
	}
	proto_backend_key(&w, c->id, c->cancel_key);
	proto_ready(&w, 'I');
	if (w.overflow) {
		client_fatal(c, "54000", "startup parameters too long to report back", NULL);
		return -1;
	}
	c->welcomed = true;
	params_free(&c->vet_key);
	send_bytes(c, buf, w.len);
	return c->state == CLIENT_CLOSED ? -1 : 0;
}

/* The reported settings as PostgreSQL spelled them replace the client's spelling. */
static int take_canonical(struct client *c, const struct vet_answer *answer)
{
	const struct param_set *canonical = &answer->canonical;

	for (const char *n = params_first(canonical); n; n = params_next(canonical, n))
		if (params_put(&c->params, n, params_value(n)) < 0 || params_put(&c->startup, n, params_value(n)) < 0)
			return -1;
	return 0;
}

/*
 * The pool knows its backends' settings. A client whose startup settings a
 * backend already checked (or that has none to check) is answered now;
 * another takes a lease first, and lease_grant() has the backend check
 * them: client_vetted() or client_login_refused() then.
 */
void client_welcome(struct client *c)
{
	const struct vet_answer *known = NULL;

	if (c->vet_key.len) {
		known = vet_cache_find(&c->pool->vetted, &c->vet_key);
		if (!known)
			return lease_enter(c);
		if (take_canonical(c, known) < 0)
			return client_fatal(c, "53200", "out of memory keeping the startup settings", NULL);
	}
	client_set_state(c, CLIENT_IDLE);
	if (login_reply(c, known) == 0)
		dispatch_input(c);
}

/* The leased backend checked the settings: answer the login, then use the lease for what came already, or end it. */
void client_vetted(struct client *c, const struct vet_answer *answer)
{
	struct server *s = c->server;

	assert(c->state == CLIENT_ACTIVE && s && !c->welcomed);
	if (take_canonical(c, answer) < 0)
		return client_fatal(c, "53200", "out of memory keeping the startup settings", NULL);
	if (login_reply(c, answer) < 0)
		return;
	if (c->in && !iobuf_is_empty(c->in))
		return lease_setup(c, s);
	lease_exit(c, EXIT_TX_DONE);
	dispatch_input(c);
}

/* As a direct login that PostgreSQL refuses a setting of: AuthenticationOk, notices, then FATAL. */
void client_login_refused(struct client *c, const struct vet_answer *answer, const char *sqlstate,
			  const char *message, const char *detail, const char *hint)
{
	static uint8_t buf[2048 + 4 * STARTUP_MAX_LEN];
	struct wbuf w;

	if (c->server)
		lease_exit(c, c->exit_why);
	wbuf_init(&w, buf, sizeof(buf));
	proto_auth_ok(&w);
	if (answer->notices_len)
		wbuf_bytes(&w, answer->notices, answer->notices_len);
	proto_error(&w, "FATAL", sqlstate, message, detail, hint);
	if (!w.overflow)
		send_bytes(c, buf, w.len);
	client_close(c, "startup setting refused by the backend: %s (SQLSTATE %s)", message, sqlstate);
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
	send_bytes(c, buf, w.len);
	return c->state == CLIENT_CLOSED ? -1 : 1;
}

/* An idle client spoke: end the session on Terminate, else lease a backend. */
static void dispatch_input(struct client *c)
{
	struct iobuf *in = c->in;

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
		return dispatch_input(c);
	case 0:
		return lease_enter(c);
	default:
		return;
	}
}

void client_leased(struct client *c)
{
	struct server *s = c->server;

	if (c->in && !iobuf_is_empty(c->in))
		client_relay_to_server(s);
	/* A cancel that came while the lease was being set up is for what was just sent. */
	if (c->cancel_at_relay && c->server == s && s->stream.owed_z)
		cancel_submit(s);
	c->cancel_at_relay = false;
}

/* ---- the relay: client to backend ---- */

static enum frame_verdict account_client_msg(struct client *c, const struct frame_msg *m)
{
	if (c->prep_on)
		return prep_client_msg(c, m);
	return stream_client_msg(&c->server->stream, m);
}

static enum frame_verdict client_msg(void *arg, const struct frame_msg *m)
{
	struct client *c = arg;

	if (m->type == 'X') {
		c->terminating = true;
		return FRAME_STOP_BEFORE;
	}
	if (m->type == 'Q' && reset_client_query(c, c->server, m) != RESET_PASS)
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
	c->exit_why = EXIT_CLIENT_PROTOCOL;
	if (c->server->stream.owed_z == 0 || !(c->violation = strdup(msg)))
		return client_fatal(c, "08P01", msg, NULL);
	/* Like PostgreSQL: answer what came before the bad message, then FATAL. */
	c->in->end = c->in->scanned;
	want_read(c, false);
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
		if (n < 0 || !prep_stopped(c->prep))
			return n;
	}
}

/* Send in[start, scanned) to the backend; stop reading the client while it blocks. */
static int send_to_server(struct client *c, struct server *s)
{
	struct iobuf *in = c->in;

	if (prep_tx_pending(c->prep)) {
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
	bool blocked = (in && iobuf_unsent(in) > 0) || prep_tx_pending(c->prep);
	/* A message that must be seen whole may be waiting at the end of a full buffer. */
	if (in && !blocked && iobuf_room(in) == 0 && in->start > 0)
		iobuf_compact(in);
	server_want_write(s, blocked);
	/* A full buffer may end in a message header cut short: read_into() compacts it. */
	want_read(c, !blocked && (!in || iobuf_room(in) > 0 || in->start > 0));
	return 0;
}

void client_relay_to_server(struct server *s)
{
	struct client *c = s->client;
	struct iobuf *in = c->in;

	if (!in && s->reset.followup_due && send_followup(c, s) < 0)
		return client_fatal(c, "53200", "out of memory restoring the startup settings after DISCARD ALL", NULL);
	if (!in) {
		/* Rewritten bytes may still be waiting for the backend to take them. */
		if (prep_tx_pending(c->prep))
			send_to_server(c, s);
		return;
	}
	bool was_idle = s->stream.owed_z == 0;
	ssize_t n = scan_client(c, s, in);
	if (n == -2)
		return client_fatal(c, "54000", "could not relay a prepared statement message or a rewritten Query "
				    "(out of memory, or statement names longer than 16 KB)", NULL);
	if (was_idle && s->stream.owed_z)
		s->stream.busy_since = ev_now(loop);
	/* What came before a bad message is valid and already accounted: send it. */
	if (send_to_server(c, s) < 0)
		return;
	if (n < 0)
		return protocol_violation(c);
	if (c->terminating && iobuf_unsent(in) == 0 && !prep_tx_pending(c->prep))
		return client_close(c, "client sent Terminate");
	/* A held named Parse is whole in c->prep: the buffer stays, to scan on from when it may go. */
	if (iobuf_is_empty(in) && !prep_held(c->prep)) {
		iobuf_put(in);
		c->in = NULL;
		want_read(c, !prep_tx_pending(c->prep));
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
			send_bytes(c, buf, w.len);
	}
	return c->state == CLIENT_CLOSED ? -1 : 0;
}

/* Unpinned: the lease ends as any transaction's; else the relay goes on with what came meanwhile. */
static void pin_probed(struct server *s, const char *sqlstate, const char *error)
{
	struct client *c = s->client;

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
	dispatch_input(c);
}

/*
 * The pinned client may have released its session state: ask the backend,
 * through libpq, at this clean boundary. Meanwhile the client stays ACTIVE
 * and what it sends waits in its buffer (on_data: the lease is not relaying).
 */
static void probe_pin(struct client *c, struct server *s)
{
	if (lease_query(s, session_probe(c), pin_probed) < 0)
		server_close(s, "could not send the session state probe");
}

/* A cancel reached PostgreSQL: a probe that was put off for it can run if nothing else happens. */
void client_cancel_delivered(struct server *s)
{
	struct client *c = s->client;

	if (!c || s->state != SERVER_LEASED || s->phase != PHASE_RAW || s->cancels_pending)
		return;
	if (at_boundary(c, s) == LEASE_PROBES)
		probe_pin(c, s);
}

static int read_from_server(struct client *c, struct server *s)
{
	struct iobuf *out = out_buffer(c);

	if (!out)
		return -1;
	if (iobuf_room(out) == 0) {
		server_want_read(s, false);
		return 0;
	}
	ssize_t n = recv(s->fd, out->data + out->end, iobuf_room(out), MSG_DONTWAIT);
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
		session_backend_error(s->client);
	if (v == FRAME_CONTINUE && (m->type == 'S' || reset_active(&s->reset)) &&
	    (reply_cut = reset_server_msg(s->client, s, m)))
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

void client_relay_from_server(struct server *s)
{
	struct client *c = s->client;

	if (read_from_server(c, s) <= 0)
		return;
	struct iobuf *out = c->out;
	bool was_busy = s->stream.owed_z > 0;
	ssize_t n = c->prep_on ? prep_scan_from_server(c, s, out) : scan_server(s, out);
	if (n < 0) {
		server_close(s, "protocol violation from the backend");
		return;
	}
	if (was_busy && !s->stream.owed_z)
		c->pool->stats.query_time_us += (uint64_t)((ev_now(loop) - s->stream.busy_since) * 1e6);
	out->scanned += (uint32_t)n;
	c->mid_message = s->stream.from_server.body_left > 0;
	if (c->violation && s->stream.owed_z == 0 && !c->mid_message) {
		if (flush_out(c) < 0)
			return client_close(c, "client went away while being written to");
		return client_fatal(c, "08P01", c->violation, NULL);
	}
	enum boundary at = at_boundary(c, s);
	bool done = at == LEASE_ENDS;
	/* Serve whoever waits first: a queued client's query, else this reply. */
	bool waiter_first = done && !list_empty(&c->pool->waiting);
	if (waiter_first)
		lease_exit(c, EXIT_TX_DONE);
	if (flush_out(c) < 0)
		return client_close(c, "client went away while being written to");
	if (done) {
		if (!waiter_first)
			lease_exit(c, EXIT_TX_DONE);
		return dispatch_input(c);
	}
	if (at == LEASE_PROBES)
		return probe_pin(c, s);
	server_want_read(s, !c->out || iobuf_room(c->out) > 0 || c->out->start > 0);
	/* A reply let held input go, or a DISCARD ALL's follow-up is due: the last thing done here. */
	bool prep_kick = prep_take_kick(c->prep);
	if (s->reset.kick || prep_kick) {
		s->reset.kick = false;
		client_relay_to_server(s);
	}
}

/* ---- socket events ---- */

static void on_data(struct client *c)
{
	if (read_into(c, &c->in) <= 0) {
		client_close(c, "client closed the connection");
		return;
	}
	switch (c->state) {
	case CLIENT_IDLE:
		dispatch_input(c);
		break;
	case CLIENT_ACTIVE:
		if (c->server->phase == PHASE_RAW) {
			client_relay_to_server(c->server);
			break;
		}
		/* The lease is still being set up. */
		/* fall through */
	default:
		/* Waiting: keep the bytes, but stop reading when the buffer is full. */
		want_read(c, iobuf_room(c->in) > 0);
		break;
	}
}

static void on_readable(struct ev_loop *l, ev_io *w, int revents)
{
	struct client *c = w->data;

	(void)l;
	(void)revents;
	if (c->state == CLIENT_LOGIN)
		login_read(c);
	else if (c->state == CLIENT_ADMIN)
		admin_on_readable(c);
	else
		on_data(c);
}

static void on_writable(struct ev_loop *l, ev_io *w, int revents)
{
	struct client *c = w->data;

	(void)l;
	(void)revents;
	if (flush_out(c) < 0)
		return client_close(c, "client went away while being written to");
	if (c->state == CLIENT_ADMIN)
		return admin_on_writable(c);
	if (c->server && c->server->phase == PHASE_RAW)
		server_want_read(c->server, true);
}

/* ---- lookups and housekeeping ---- */

static struct client *find_by_key(struct list *l, uint32_t id, uint32_t key)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, l) {
		struct client *c = list_entry(pos, struct client, node);
		if (c->id == id && c->cancel_key == key)
			return c;
	}
	return NULL;
}

/* Only a client with a request in flight or queued has anything to cancel. */
struct client *client_find_by_key(uint32_t id, uint32_t key)
{
	struct list_node *pos, *tmp;
	struct client *c;

	list_for_each_safe(pos, tmp, &all_pools) {
		struct pool *p = list_entry(pos, struct pool, node);
		if ((c = find_by_key(&p->active, id, key)) || (c = find_by_key(&p->waiting, id, key)))
			return c;
	}
	return NULL;
}

void client_maintain(ev_tstamp now)
{
	struct list_node *first;

	if (cfg->client_login_timeout <= 0)
		return;
	while ((first = list_first(&login_clients))) {
		struct client *c = list_entry(first, struct client, node);
		if (now - c->state_since < cfg->client_login_timeout)
			return;
		client_close(c, "client_login_timeout: startup not finished in %g s", cfg->client_login_timeout);
	}
}

static void close_list(struct list *l, enum lease_exit_reason why, const char *reason)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, l) {
		struct client *c = list_entry(pos, struct client, node);
		c->exit_why = why;
		client_fatal(c, "57P01", reason, NULL);
	}
}

/* Leased clients leave through the lease exit door (client_fatal) with why, rolled back where needed. */
void client_close_pool(struct pool *p, enum lease_exit_reason why, const char *reason)
{
	close_list(&p->login_wait, why, reason);
	close_list(&p->clients, why, reason);
	close_list(&p->waiting, why, reason);
	close_list(&p->active, why, reason);
}

void client_close_all(const char *reason)
{
	struct list_node *pos, *tmp;

	close_list(&login_clients, EXIT_SHUTDOWN, reason);
	close_list(&admin_clients, EXIT_SHUTDOWN, reason);
	list_for_each_safe(pos, tmp, &all_pools)
		client_close_pool(list_entry(pos, struct pool, node), EXIT_SHUTDOWN, reason);
}

/* ---- raw I/O for the admin console (admin.c) ---- */

int client_read(struct client *c)
{
	return read_into(c, &c->in) > 0;
}

long client_write(struct client *c, const void *data, size_t len)
{
	struct iobuf *out = out_buffer(c);

	if (!out)
		return -1;
	size_t n = len < iobuf_room(out) ? len : iobuf_room(out);
	memcpy(out->data + out->end, data, n);
	out->end += (uint32_t)n;
	out->scanned = out->end;
	if (flush_out(c) < 0) {
		client_close(c, "client went away while being written to");
		return -1;
	}
	return (long)n;
}

void client_want_read(struct client *c, bool on)
{
	want_read(c, on);
}
