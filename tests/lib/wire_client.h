/*
 * wire_client.h — a client program on the other end of a socketpair whose
 * near end pglease accepted (client_accept()), for unit tests of the login
 * and welcome: it sends protocol bytes, runs the loop until pglease has
 * answered, and parses what came back. A pool "app"/"u" with a known base
 * and no backend is made by wire_setup() (not with WIRE_OWN_POOL defined:
 * the test brings its own conf and pool). Included by one test file each
 * (static functions), after the file defines the loop and cfg globals.
 */
#ifndef PGLEASE_TEST_WIRE_CLIENT_H
#define PGLEASE_TEST_WIRE_CLIENT_H

#include <criterion/criterion.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "env.h"
#include "client.h"
#include "config.h"
#include "log.h"
#include "pool.h"
#include "proto.h"
#include "worker.h"

#define UNUSED __attribute__((unused))

struct wire {
	int fd;                        /* the client program's end */
	struct client *c;              /* pglease's client, while it exists */
	uint8_t in[8192];              /* what pglease sent, not yet taken by next_msg() */
	size_t len, at;
	bool eof;
};

#ifndef WIRE_OWN_POOL
static struct config conf;
static struct db_config dbs[1];
static struct pool *pool;

/* A pool whose backends' settings are known: logins are answered without a backend. */
static UNUSED void wire_setup(void)
{
	log_set_level(LOG_ERROR);
	loop = ev_default_loop(0);
	conf = (struct config){
		.pool_mode = POOL_MODE_TRANSACTION, .default_pool_size = 2, .max_client_conn = 10,
		.client_login_timeout = 60, .auth_type = AUTH_TRUST, .max_prepared_statements = 200,
		.session_state = SESSION_STATE_PIN, .server_connect_timeout = 15, .query_wait_timeout = 120,
		.dbs = dbs, .db_count = 1, .server_reset_query = "DISCARD ALL", .server_check_query = "",
		.admin_users = "", .stats_users = "", .metrics_listen = "", .unix_socket_dir = "/tmp",
	};
	dbs[0] = (struct db_config){ .name = "app", .conninfo = "host=/nonexistent/pglease-test", .pool_size = -1,
				     .pool_mode = -1 };
	cfg = &conf;
	pool = pool_find_or_create(&dbs[0], "app", "u");
	cr_assert_not_null(pool);
	cr_assert_eq(params_put(&pool->base, "server_version", "15.4"), 0);
	cr_assert_eq(params_put(&pool->base, "DateStyle", "ISO, MDY"), 0);
	cr_assert_eq(params_put(&pool->base, "application_name", ""), 0);
	cr_assert_eq(params_put(&pool->base, "client_encoding", "UTF8"), 0);
	pool->have_base = true;
	cr_assert_eq(worker_start(loop), 0);
}

static UNUSED void wire_teardown(void)
{
	worker_stop();
	client_reap();
	pool_free_all();
}
#endif

/*
 * The front end's hooks (client_set_frontend()). A daemon/ test gets the
 * real ones; a pool/ test, which may not see daemon/, gets a small stand-in
 * that does what the front end does for a trusted login: it reads one
 * StartupMessage and hands the client to its pool with client_join().
 */
#if __has_include("login.h")
#include "admin.h"
#include "login.h"

static UNUSED void wire_install_frontend(void)
{
	static const struct client_frontend real = {
		.login_readable = login_readable,
		.admin_readable = admin_on_readable,
		.admin_writable = admin_on_writable,
		.released = admin_free,
	};
	client_set_frontend(&real);
}
#else
static void wire_login_readable(struct client *c)
{
	struct param_set params = PARAMS_EMPTY, sequence = PARAMS_EMPTY;
	const char *user = NULL, *database = NULL;

	if (client_read_into(c, &c->in) <= 0)
		return client_close(c, "client closed the connection during login");
	struct iobuf *in = c->in;
	uint32_t len = in->end - in->start >= 4 ? be32(in->data + in->start) : 0;
	if (!len || in->end - in->start < len)
		return;
	const char *p = (const char *)in->data + in->start + 8, *end = (const char *)in->data + in->start + len - 1;
	for (; p < end && *p; p += strlen(p) + 1) {
		const char *value = p + strlen(p) + 1;
		if (strcmp(p, "user") == 0)
			user = value;
		else if (strcmp(p, "database") == 0)
			database = value;
		else
			cr_assert(params_put(&params, p, value) == 0 && params_append(&sequence, p, value) == 0);
		p = value;
	}
	in->start = in->scanned = in->start + len;
	client_join(c, config_find_db(cfg, database), database, user, &params, &sequence);
	params_free(&params);
	params_free(&sequence);
}

static UNUSED void wire_install_frontend(void)
{
	static const struct client_frontend stand_in = { .login_readable = wire_login_readable };
	client_set_frontend(&stand_in);
}
#endif

static UNUSED struct wire *wire_connect(void)
{
	wire_install_frontend();
	struct wire *w = calloc(1, sizeof(*w));
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	client_accept(sv[0], false, NULL, 0);
	w->c = list_entry(list_last(&login_clients), struct client, node);
	w->fd = sv[1];
	return w;
}

static UNUSED void wire_deadline(struct ev_loop *l, ev_timer *t, int revents)
{
	(void)t, (void)revents;
	ev_break(l, EVBREAK_ALL);
}

static void wire_readable(struct ev_loop *l, ev_io *io, int revents)
{
	struct wire *w = io->data;
	ssize_t n = read(w->fd, w->in + w->len, sizeof(w->in) - w->len);

	(void)revents;
	if (n > 0) {
		w->len += (size_t)n;
		ev_break(l, EVBREAK_ALL);
	} else if (n == 0) {
		w->eof = true;
		ev_io_stop(l, io);
		ev_break(l, EVBREAK_ALL);
	}
}

/* Run the loop until pglease sends w something (or closes it), or `seconds` pass. */
static UNUSED void wire_wait(struct wire *w, double seconds)
{
	ev_io io;
	ev_timer deadline;

	ev_io_init(&io, wire_readable, w->fd, EV_READ);
	io.data = w;
	ev_io_start(loop, &io);
	ev_timer_init(&deadline, wire_deadline, seconds, 0.);
	ev_timer_start(loop, &deadline);
	ev_run(loop, 0);
	ev_timer_stop(loop, &deadline);
	ev_io_stop(loop, &io);
}

static UNUSED void wire_send(struct wire *w, const void *bytes, size_t n)
{
	cr_assert_eq(write(w->fd, bytes, n), (ssize_t)n);
}

static UNUSED void wire_send_buf(struct wire *w, const struct wbuf *b)
{
	cr_assert_not(b->overflow);
	wire_send(w, b->data, b->len);
}

/* A StartupMessage, protocol 3.minor, with NULL-terminated key/value pairs. */
static UNUSED void startup_msg(struct wbuf *b, unsigned minor, const char *const *pairs)
{
	size_t mark = b->len;

	wbuf_int32(b, 0);
	wbuf_int32(b, PROTO_V3 | minor);
	for (; *pairs; pairs++)
		wbuf_cstr(b, *pairs);
	wbuf_byte(b, 0);
	uint32_t len = (uint32_t)(b->len - mark);
	b->data[mark] = len >> 24;
	b->data[mark + 1] = len >> 16;
	b->data[mark + 2] = len >> 8;
	b->data[mark + 3] = len;
}

static UNUSED void wire_startup(struct wire *w, const char *user, const char *database)
{
	uint8_t buf[256];
	struct wbuf b;
	const char *pairs[] = { "user", user, "database", database, NULL };

	wbuf_init(&b, buf, sizeof(buf));
	startup_msg(&b, 0, pairs);
	wire_send_buf(w, &b);
}

struct msg {
	char type;
	uint32_t len;                  /* body length */
	const uint8_t *body;
};

/* The next whole message pglease sent (waiting up to 2 s for it); type 0 when none came. */
static UNUSED struct msg next_msg(struct wire *w)
{
	for (int i = 0; i < 50 && !w->eof; i++) {
		if (w->len - w->at >= 5 && w->len - w->at >= 1 + (size_t)be32(w->in + w->at + 1))
			break;
		wire_wait(w, 0.04);
	}
	if (w->len - w->at < 5 || w->len - w->at < 1 + (size_t)be32(w->in + w->at + 1))
		return (struct msg){ 0 };
	struct msg m = { (char)w->in[w->at], be32(w->in + w->at + 1) - 4, w->in + w->at + 5 };
	w->at += 5 + m.len;
	return m;
}

/* A field of an ErrorResponse or NoticeResponse body; "" when absent. */
static UNUSED const char *field(const struct msg *m, char code)
{
	for (const uint8_t *p = m->body; p < m->body + m->len && *p; p += strlen((const char *)p) + 1)
		if (*p == code)
			return (const char *)p + 1;
	return "";
}

/* The connection ended with nothing more sent. */
static UNUSED bool closed_quietly(struct wire *w)
{
	for (int i = 0; i < 50 && !w->eof; i++)
		wire_wait(w, 0.04);
	return w->eof && w->at == w->len;
}

static UNUSED void expect_fatal(struct wire *w, const char *sqlstate, const char *message)
{
	struct msg m = next_msg(w);

	cr_assert_eq(m.type, 'E', "got '%c'", m.type ? m.type : '0');
	cr_assert_str_eq(field(&m, 'S'), "FATAL");
	cr_assert_str_eq(field(&m, 'C'), sqlstate);
	cr_assert_str_eq(field(&m, 'M'), message);
	cr_assert(closed_quietly(w), "closed after the FATAL");
}

#endif
