/*
 * fake_backend.h — a scripted PostgreSQL backend for unit tests, on the
 * test's own loop: a Unix socket in a temporary directory that answers the
 * startup packet with fake.login and each Query with fake.reply (bytes the
 * test builds with proto.h), or with what fake.on_query builds for that
 * Query's text, records what else it is sent, and takes
 * CancelRequests on further connections. fake_setup() also makes a pool
 * "app"/"alice" whose conninfo points at it; connected() brings one backend
 * of it up. Included by one test file each (static functions), after the
 * file defines the loop and cfg globals.
 */
#ifndef PGLEASE_TEST_FAKE_BACKEND_H
#define PGLEASE_TEST_FAKE_BACKEND_H

#include <criterion/criterion.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "env.h"
#include "client.h"
#include "config.h"
#include "log.h"
#include "pool.h"
#include "proto.h"
#include "server.h"

static struct config conf;

/* ---- the fake backend ---- */

struct fake {
	char dir[64], path[128];
	int listen_fd, fd;
	ev_io accept_w, read_w;
	uint8_t in[8192];
	size_t in_len;
	bool startup_seen;
	char startup_user[64], startup_db[64];
	struct wbuf login, reply;       /* sent after the startup packet / after each Query */
	uint8_t login_data[1024], reply_data[2048];
	void (*on_query)(const char *sql, struct wbuf *out);   /* else fake.reply */
	/* Extended protocol: at each Sync, the messages since the last one (in raw) are answered with what
	 * this builds; raw is emptied. NULL: they are only recorded. */
	void (*on_sync)(const uint8_t *msgs, size_t len, struct wbuf *out);
	int syncs;
	int queries;
	char last_query[256];
	uint8_t raw[1024];              /* bytes after login that are not a Query */
	size_t raw_len;
	/* CancelRequests, each on a connection of its own */
	int cancel_fd;
	ev_io cancel_w;
	int cancels;
	uint32_t cancel_pid, cancel_key;
};

static struct fake fake;

static __attribute__((unused)) void fake_send(const struct wbuf *w)
{
	cr_assert_not(w->overflow);
	cr_assert_eq(write(fake.fd, w->data, w->len), (ssize_t)w->len);
}

static __attribute__((unused)) void fake_hang_up(void)
{
	ev_io_stop(loop, &fake.read_w);
	close(fake.fd);
	fake.fd = -1;
}

static __attribute__((unused)) void fake_startup(const uint8_t *p, uint32_t len)
{
	cr_assert_eq(be32(p + 4), PROTO_V3, "a v3 StartupMessage");
	for (const char *k = (const char *)p + 8; *k; k += strlen(k) + 1) {
		const char *v = k + strlen(k) + 1;
		if (strcmp(k, "user") == 0)
			snprintf(fake.startup_user, sizeof(fake.startup_user), "%s", v);
		if (strcmp(k, "database") == 0)
			snprintf(fake.startup_db, sizeof(fake.startup_db), "%s", v);
		k = v;
	}
	(void)len;
	fake.startup_seen = true;
	if (fake.login.len)
		fake_send(&fake.login);
}

/* One whole message at the front of in: handle it; its length, or 0 while incomplete. */
static __attribute__((unused)) size_t fake_message(void)
{
	if (!fake.startup_seen) {
		if (fake.in_len < 4 || fake.in_len < be32(fake.in))
			return 0;
		fake_startup(fake.in, be32(fake.in));
		return be32(fake.in);
	}
	if (fake.in_len < 5 || fake.in_len < 1 + be32(fake.in + 1))
		return 0;
	size_t n = 1 + be32(fake.in + 1);
	if (fake.in[0] == 'Q') {
		fake.queries++;
		snprintf(fake.last_query, sizeof(fake.last_query), "%.200s", (const char *)fake.in + 5);
		if (fake.on_query) {
			uint8_t data[2048];
			struct wbuf out;
			wbuf_init(&out, data, sizeof(data));
			fake.on_query(fake.last_query, &out);
			fake_send(&out);
		} else if (fake.reply.len) {
			fake_send(&fake.reply);
		}
	} else if (fake.raw_len + n <= sizeof(fake.raw)) {
		memcpy(fake.raw + fake.raw_len, fake.in, n);
		fake.raw_len += n;
	}
	if (fake.in[0] == 'S' && fake.on_sync) {
		uint8_t data[2048];
		struct wbuf out;
		fake.syncs++;
		wbuf_init(&out, data, sizeof(data));
		fake.on_sync(fake.raw, fake.raw_len, &out);
		fake.raw_len = 0;
		if (out.len)
			fake_send(&out);
	}
	return n;
}

static __attribute__((unused)) void fake_readable(struct ev_loop *l, ev_io *w, int revents)
{
	(void)l; (void)w; (void)revents;
	ssize_t n = read(fake.fd, fake.in + fake.in_len, sizeof(fake.in) - fake.in_len);
	size_t used;

	if (n <= 0) {
		fake_hang_up();
		return;
	}
	fake.in_len += (size_t)n;
	while (fake.fd >= 0 && (used = fake_message())) {
		memmove(fake.in, fake.in + used, fake.in_len - used);
		fake.in_len -= used;
	}
}

/* A CancelRequest is 16 bytes; the backend closes the connection once it has read them. */
static __attribute__((unused)) void fake_cancel_readable(struct ev_loop *l, ev_io *w, int revents)
{
	uint8_t p[16];

	(void)revents;
	cr_assert_eq(recv(fake.cancel_fd, p, sizeof(p), MSG_WAITALL), 16);
	cr_assert_eq(be32(p), 16);
	cr_assert_eq(be32(p + 4), PROTO_CANCEL_REQUEST);
	fake.cancel_pid = be32(p + 8);
	fake.cancel_key = be32(p + 12);
	fake.cancels++;
	ev_io_stop(l, w);
	close(fake.cancel_fd);
	fake.cancel_fd = -1;
}

static __attribute__((unused)) void fake_accept(struct ev_loop *l, ev_io *w, int revents)
{
	(void)l; (void)w; (void)revents;
	if (fake.fd >= 0) {
		fake.cancel_fd = accept(fake.listen_fd, NULL, NULL);
		cr_assert_geq(fake.cancel_fd, 0);
		ev_io_init(&fake.cancel_w, fake_cancel_readable, fake.cancel_fd, EV_READ);
		ev_io_start(loop, &fake.cancel_w);
		return;
	}
	fake.fd = accept(fake.listen_fd, NULL, NULL);
	cr_assert_geq(fake.fd, 0);
	ev_io_init(&fake.read_w, fake_readable, fake.fd, EV_READ);
	ev_io_start(loop, &fake.read_w);
}

static __attribute__((unused)) void fake_start(void)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };

	snprintf(fake.dir, sizeof(fake.dir), "/tmp/pglease-fake-XXXXXX");
	cr_assert_not_null(mkdtemp(fake.dir));
	snprintf(fake.path, sizeof(fake.path), "%s/.s.PGSQL.5432", fake.dir);
	memcpy(addr.sun_path, fake.path, strlen(fake.path) + 1);
	fake.listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
	cr_assert_eq(bind(fake.listen_fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	cr_assert_eq(listen(fake.listen_fd, 4), 0);
	fake.fd = fake.cancel_fd = -1;
	ev_io_init(&fake.accept_w, fake_accept, fake.listen_fd, EV_READ);
	ev_io_start(loop, &fake.accept_w);
	wbuf_init(&fake.login, fake.login_data, sizeof(fake.login_data));
	wbuf_init(&fake.reply, fake.reply_data, sizeof(fake.reply_data));
}

static __attribute__((unused)) void fake_stop(void)
{
	if (fake.fd >= 0)
		fake_hang_up();
	ev_io_stop(loop, &fake.accept_w);
	close(fake.listen_fd);
	unlink(fake.path);
	rmdir(fake.dir);
}

/* What a PostgreSQL 15 backend sends after a trust login. */
static __attribute__((unused)) void script_login(struct wbuf *w)
{
	proto_auth_ok(w);
	proto_param_status(w, "server_version", "15.4");
	proto_param_status(w, "DateStyle", "ISO, MDY");
	proto_param_status(w, "TimeZone", "UTC");
	proto_param_status(w, "standard_conforming_strings", "on");
	proto_backend_key(w, 4242, 99);
	proto_ready(w, 'I');
}

/* A one-column result: RowDescription, a DataRow per value, CommandComplete. */
static __attribute__((unused)) void script_rows(struct wbuf *w, const char *const *values, int n)
{
	size_t m = wbuf_begin(w, 'T');
	wbuf_byte(w, 0);
	wbuf_byte(w, 1);
	wbuf_cstr(w, "v");
	wbuf_int32(w, 0);
	wbuf_byte(w, 0); wbuf_byte(w, 0);          /* column number */
	wbuf_int32(w, 25);                          /* text */
	wbuf_byte(w, 0xff); wbuf_byte(w, 0xff);     /* typlen -1 */
	wbuf_int32(w, 0xffffffffu);                 /* typmod -1 */
	wbuf_byte(w, 0); wbuf_byte(w, 0);           /* text format */
	wbuf_end(w, m);
	for (int i = 0; i < n; i++) {
		m = wbuf_begin(w, 'D');
		wbuf_byte(w, 0);
		wbuf_byte(w, 1);
		wbuf_int32(w, (uint32_t)strlen(values[i]));
		wbuf_bytes(w, values[i], strlen(values[i]));
		wbuf_end(w, m);
	}
	char tag[32];
	snprintf(tag, sizeof(tag), "SELECT %d", n);
	m = wbuf_begin(w, 'C');
	wbuf_cstr(w, tag);
	wbuf_end(w, m);
}

/* An ErrorResponse with the fields a server adds that proto_error() does not. */
static __attribute__((unused)) void script_error(struct wbuf *w, const char *severity, const char *sqlstate, const char *message)
{
	size_t m = wbuf_begin(w, 'E');
	wbuf_byte(w, 'S'); wbuf_cstr(w, severity);
	wbuf_byte(w, 'V'); wbuf_cstr(w, severity);
	wbuf_byte(w, 'C'); wbuf_cstr(w, sqlstate);
	wbuf_byte(w, 'M'); wbuf_cstr(w, message);
	wbuf_byte(w, 'F'); wbuf_cstr(w, "postinit.c");
	wbuf_byte(w, 'L'); wbuf_cstr(w, "885");
	wbuf_byte(w, 'R'); wbuf_cstr(w, "InitPostgres");
	wbuf_byte(w, 0);
	wbuf_end(w, m);
}

/* ---- the pool and the loop ---- */

static struct db_config dbc;
static struct pool *pool;
static char conninfo[200];

static __attribute__((unused)) void fake_setup(void)
{
	log_set_level(LOG_ERROR);
	loop = ev_default_loop(0);
	conf = (struct config){
		.pool_mode = POOL_MODE_TRANSACTION, .default_pool_size = 4, .server_connect_timeout = 5,
		.server_drain_timeout = 5, .server_idle_timeout = 600,
	};
	cfg = &conf;
	memset(&fake, 0, sizeof(fake));
	fake_start();
	snprintf(conninfo, sizeof(conninfo), "host=%s port=5432", fake.dir);
	dbc = (struct db_config){ .name = "app", .conninfo = conninfo, .pool_size = -1, .pool_mode = -1 };
	pool = pool_find_or_create(&dbc, "app", "alice");
	cr_assert_not_null(pool);
}

static __attribute__((unused)) void fake_teardown(void)
{
	conf.min_pool_size = 0;
	/* A pool is freed only without clients and backends (pool_free() asserts it). */
	client_close_all("test over");
	client_reap();
	pool_close_servers(pool, "test over");
	server_reap();
	pool_free_all();
	fake_stop();
}

static __attribute__((unused)) void on_deadline(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)l; (void)w; (void)revents;
}

/* Run the loop until done() holds, for at most 3 s. */
static __attribute__((unused)) bool run_until(bool (*done)(void))
{
	ev_timer deadline;
	ev_tstamp end;

	ev_now_update(loop);
	end = ev_now(loop) + 3;
	ev_timer_init(&deadline, on_deadline, 3., 0.);
	ev_timer_start(loop, &deadline);
	while (!done() && ev_now(loop) < end)
		ev_run(loop, EVRUN_ONCE);
	ev_timer_stop(loop, &deadline);
	return done();
}

static __attribute__((unused)) bool one_idle(void) { return pool->idle.count == 1; }
static __attribute__((unused)) bool none_left(void) { return pool_server_count(pool) == 0; }

static __attribute__((unused)) struct server *first_idle(void)
{
	return list_entry(list_first(&pool->idle), struct server, node);
}

/* A backend logged in through the fake: idle in the pool. */
static __attribute__((unused)) struct server *connected(void)
{
	script_login(&fake.login);
	conf.min_pool_size = 1;
	pool_want_servers(pool);
	cr_assert_eq(pool->connecting.count, 1, "a connect under way");
	cr_assert(run_until(one_idle), "the backend did not come up");
	conf.min_pool_size = 0;
	return first_idle();
}

#endif
