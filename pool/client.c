/*
 * client.c — a client connection's life: its state lists, its buffers and
 * socket events, and the one way it goes away (client_close) with a reason.
 *
 * The front end (daemon/) accepts it, reads its startup packet and
 * authenticates it through the hooks it installs (client_set_frontend);
 * from then on the object model drives it: welcome.c answers its login,
 * relay.c moves its bytes under leases. Buffers exist only while bytes are
 * in flight: an idle client owns none.
 */
#include <assert.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/random.h>
#include <sys/socket.h>

#include <openssl/ssl.h>

#include "client.h"
#include "env.h"
#include "lease.h"
#include "log.h"
#include "pool.h"
#include "proto.h"
#include "rewrite.h"
#include "server.h"
#include "session.h"
#include "tls_io.h"

struct list login_clients = { { &login_clients.head, &login_clients.head }, 0 };
struct list admin_clients = { { &admin_clients.head, &admin_clients.head }, 0 };
static struct list closed_clients = { { &closed_clients.head, &closed_clients.head }, 0 };
int client_count;
static uint32_t next_client_id = 1;
static const struct client_frontend *frontend;

static void on_readable(struct ev_loop *l, ev_io *w, int revents);
static void on_writable(struct ev_loop *l, ev_io *w, int revents);

void client_set_frontend(const struct client_frontend *fe)
{
	frontend = fe;
}

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
	/* A closed client never comes back; one leaves ACTIVE only once its lease let it go. */
	assert(c->state != CLIENT_CLOSED);
	assert(c->state != CLIENT_ACTIVE || state == CLIENT_ACTIVE || !c->lease);
	assert(c->pool || state == CLIENT_LOGIN || state == CLIENT_ADMIN || state == CLIENT_CLOSED);
	list_remove(state_list(c, c->state), &c->node);
	c->state = state;
	c->state_since = ev_now(loop);
	list_push_tail(state_list(c, state), &c->node);
}

/*
 * Bytes OpenSSL has decrypted but nobody has read yet are invisible to epoll:
 * while the read watcher is on, a read event is fed for them by hand (as the
 * backend side's tls_wake). Each reader takes bytes or stops the watcher.
 */
static void tls_wake(struct client *c)
{
	if (c->tls && !c->tls_handshaking && ev_is_active(&c->rio) && SSL_pending(c->tls) > 0)
		ev_feed_event(loop, &c->rio, EV_READ);
}

void client_want_read(struct client *c, bool on)
{
	/* After a bad message nothing more is read: the client is about to get FATAL. */
	on = on && !c->violation;
	if (on && !ev_is_active(&c->rio))
		ev_io_start(loop, &c->rio);
	else if (!on && ev_is_active(&c->rio))
		ev_io_stop(loop, &c->rio);
	if (on)
		tls_wake(c);
}

void client_want_write(struct client *c, bool on)
{
	/* An SSL_read (or handshake step) that waits for writability keeps the write watcher on. */
	on |= c->tls_read_wants_write;
	if (on && !ev_is_active(&c->wio))
		ev_io_start(loop, &c->wio);
	else if (!on && ev_is_active(&c->wio))
		ev_io_stop(loop, &c->wio);
}

/* ---- accept and close ---- */

void client_accept(int fd, bool tcp, const struct sockaddr *peer, socklen_t peer_len)
{
	struct client *c = calloc(1, sizeof(*c));

	if (!c) {
		close(fd);
		return;
	}
	c->fd = fd;
	c->tcp = tcp;
	if (peer && peer_len <= sizeof(c->peer))
		memcpy(&c->peer, peer, peer_len);
	c->id = next_client_id++;
	if (getrandom(&c->cancel_key, sizeof(c->cancel_key), GRND_NONBLOCK) != sizeof(c->cancel_key))
		c->cancel_key = (uint32_t)random();
	c->state = CLIENT_LOGIN;
	c->state_since = c->connected_at = ev_now(loop);
	list_push_tail(&login_clients, &c->node);
	ev_io_init(&c->rio, on_readable, fd, EV_READ);
	ev_io_init(&c->wio, on_writable, fd, EV_WRITE);
	c->rio.data = c->wio.data = c;
	client_count++;
	client_want_read(c, true);
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
	if (c->lease)
		lease_exit(c, c->lease->close_why);
	assert(!c->lease);
	client_want_read(c, false);
	client_want_write(c, false);
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
		assert(c->state == CLIENT_CLOSED && !c->lease);
		if (c->jobs_pending)
			continue;
		list_remove(&closed_clients, pos);
		SSL_free(c->tls);   /* its SSL_CTX reference goes with it */
		params_free(&c->params);
		params_free(&c->startup);
		params_free(&c->vet_key);
		if (frontend && frontend->released)
			frontend->released(c);
		session_free(c);
		prep_client_free(c->prep);
		free(c->violation);
		free(c);
	}
}

/* ---- sending what pglease itself says ---- */

struct iobuf *client_out_buffer(struct client *c)
{
	if (!c->out)
		c->out = iobuf_get();
	else if (c->out->start > 0 && iobuf_room(c->out) < IOBUF_SIZE / 2)
		iobuf_compact(c->out);
	return c->out;
}

/* SSL_write: bytes taken, or -1 with errno EAGAIN (try again) or another errno (gone). */
static ssize_t tls_send(struct client *c, const void *data, size_t len)
{
	enum tls_wait wait;
	ssize_t n = tls_io_send(c->tls, data, len, &wait);

	if (wait == TLS_WAIT_READ) {
		/* Retried from on_readable. */
		c->tls_write_wants_read = true;
		client_want_read(c, true);
	}
	return n;
}

static ssize_t send_bytes(struct client *c, const void *data, size_t len)
{
	/* Mid-handshake nothing can be said, in plain text or not (a FATAL at shutdown): dropped, the close follows. */
	if (c->tls_handshaking)
		return (ssize_t)len;
	if (client_on_tls(c))
		return tls_send(c, data, len);
	return send(c->fd, data, len, MSG_NOSIGNAL | MSG_DONTWAIT);
}

/* Send out[start, scanned); returns -1 when the client is gone. */
int client_flush(struct client *c)
{
	struct iobuf *out = c->out;

	while (out && iobuf_unsent(out)) {
		ssize_t n = send_bytes(c, out->data + out->start, iobuf_unsent(out));
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		out->start += (uint32_t)n;
	}
	client_want_write(c, out && iobuf_unsent(out));
	if (out && iobuf_is_empty(out)) {
		iobuf_put(out);
		c->out = NULL;
	}
	return 0;
}

void client_send(struct client *c, const uint8_t *data, size_t len)
{
	struct iobuf *out = client_out_buffer(c);

	if (!out || len > iobuf_room(out)) {
		client_close(c, "cannot buffer %zu bytes for the client", len);
		return;
	}
	memcpy(out->data + out->end, data, len);
	out->end += (uint32_t)len;
	out->scanned = out->end;
	if (client_flush(c) < 0)
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
		client_send(c, buf, w.len);
}

void client_fatal(struct client *c, const char *sqlstate, const char *message, const char *detail)
{
	if (c->state == CLIENT_CLOSED)
		return;
	if (c->lease)
		lease_exit(c, c->lease->close_why);
	if (!c->mid_message)
		client_error(c, "FATAL", sqlstate, message, detail, NULL);
	client_close(c, "%s (SQLSTATE %s)", message, sqlstate);
}


/* ---- reading ---- */

/* SSL_read, with recv()'s meaning: >0 bytes, 0 closed, -1 with errno (EAGAIN: nothing yet). */
static ssize_t tls_recv(struct client *c, void *buf, size_t len)
{
	enum tls_wait wait;
	ssize_t n = tls_io_recv(c->tls, buf, len, &wait);

	if (wait == TLS_WAIT_WRITE) {
		/* Retried from on_writable. */
		c->tls_read_wants_write = true;
		client_want_write(c, true);
	}
	return n;
}

static ssize_t recv_bytes(struct client *c, void *buf, size_t len)
{
	if (client_on_tls(c))
		return tls_recv(c, buf, len);
	return recv(c->fd, buf, len, 0);
}

int client_read_into(struct client *c, struct iobuf **bufp)
{
	if (!*bufp && !(*bufp = iobuf_get()))
		return -1;
	struct iobuf *buf = *bufp;
	if (iobuf_room(buf) < IOBUF_SIZE / 4 && buf->start > 0)
		iobuf_compact(buf);
	if (iobuf_room(buf) == 0)
		return 1;
	ssize_t n = recv_bytes(c, buf->data + buf->end, iobuf_room(buf));
	if (n > 0)
		buf->end += (uint32_t)n;
	if (n == 0)
		return 0;
	if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
		return 0;
	return 1;
}

/* ---- socket events ---- */

static void readable(struct client *c)
{
	if (c->state == CLIENT_LOGIN)
		frontend->login_readable(c);
	else if (c->state == CLIENT_ADMIN)
		frontend->admin_readable(c);
	else
		client_on_data(c);
}

static void writable(struct client *c)
{
	/* The TLS handshake waits for either direction: the login hook drives it. */
	if (c->tls_handshaking)
		return frontend->login_readable(c);
	if (client_flush(c) < 0)
		return client_close(c, "client went away while being written to");
	if (c->state == CLIENT_ADMIN)
		return frontend->admin_writable(c);
	struct server *s = client_server(c);
	if (s && s->phase == PHASE_RAW)
		server_want_read(s, true);
}

static void on_readable(struct ev_loop *l, ev_io *w, int revents)
{
	struct client *c = w->data;

	(void)l;
	(void)revents;
	/* An SSL_write that waited for readability is retried first. */
	if (c->tls_write_wants_read) {
		c->tls_write_wants_read = false;
		writable(c);
	}
	if (c->state != CLIENT_CLOSED)
		readable(c);
	if (c->state != CLIENT_CLOSED)
		tls_wake(c);
}

static void on_writable(struct ev_loop *l, ev_io *w, int revents)
{
	struct client *c = w->data;

	(void)l;
	(void)revents;
	if (c->tls_read_wants_write) {
		/* An SSL_read (or handshake step) waited for this: it runs again now. */
		c->tls_read_wants_write = false;
		readable(c);
		if (c->state == CLIENT_CLOSED)
			return;
	}
	writable(c);
	if (c->state != CLIENT_CLOSED)
		tls_wake(c);
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
		if (c->lease)
			c->lease->close_why = why;
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
	return client_read_into(c, &c->in) > 0;
}

long client_write(struct client *c, const void *data, size_t len)
{
	struct iobuf *out = client_out_buffer(c);

	if (!out)
		return -1;
	size_t n = len < iobuf_room(out) ? len : iobuf_room(out);
	memcpy(out->data + out->end, data, n);
	out->end += (uint32_t)n;
	out->scanned = out->end;
	if (client_flush(c) < 0) {
		client_close(c, "client went away while being written to");
		return -1;
	}
	return (long)n;
}

