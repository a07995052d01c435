/*
 * test_server.c — Criterion tests for pool/server.c against a scripted fake
 * backend: a Unix socket in a temporary directory, served on the same loop,
 * that answers the startup packet and each Query with bytes the test chose.
 *
 * Covered: a login (the pool's base settings, the backend pid, the backend
 * idle), a login refused with the server's SQLSTATE (and libpq's LOCATION
 * line cut), the connect timeout, libpq-driven queries (rows, the first
 * error, notices kept as NoticeResponse bytes, the query timeout), a backend
 * that closes or notifies while idle, and the raw phase.
 */
#include <criterion/criterion.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "config.h"
#include "log.h"
#include "pool.h"
#include "proto.h"
#include "server.h"

/* until env.c: server.c and pool.c read these, which daemon/main.c defines. */
struct ev_loop *loop;
const struct config *cfg;

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
	int queries;
	char last_query[256];
	uint8_t raw[256];               /* bytes after login that are not a Query */
	size_t raw_len;
};

static struct fake fake;

static void fake_send(const struct wbuf *w)
{
	cr_assert_not(w->overflow);
	cr_assert_eq(write(fake.fd, w->data, w->len), (ssize_t)w->len);
}

static void fake_hang_up(void)
{
	ev_io_stop(loop, &fake.read_w);
	close(fake.fd);
	fake.fd = -1;
}

static void fake_startup(const uint8_t *p, uint32_t len)
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
static size_t fake_message(void)
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
		if (fake.reply.len)
			fake_send(&fake.reply);
	} else if (fake.raw_len + n <= sizeof(fake.raw)) {
		memcpy(fake.raw + fake.raw_len, fake.in, n);
		fake.raw_len += n;
	}
	return n;
}

static void fake_readable(struct ev_loop *l, ev_io *w, int revents)
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

static void fake_accept(struct ev_loop *l, ev_io *w, int revents)
{
	(void)l; (void)w; (void)revents;
	fake.fd = accept(fake.listen_fd, NULL, NULL);
	cr_assert_geq(fake.fd, 0);
	ev_io_init(&fake.read_w, fake_readable, fake.fd, EV_READ);
	ev_io_start(loop, &fake.read_w);
}

static void fake_start(void)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };

	snprintf(fake.dir, sizeof(fake.dir), "/tmp/pglease-fake-XXXXXX");
	cr_assert_not_null(mkdtemp(fake.dir));
	snprintf(fake.path, sizeof(fake.path), "%s/.s.PGSQL.5432", fake.dir);
	memcpy(addr.sun_path, fake.path, strlen(fake.path) + 1);
	fake.listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);
	cr_assert_eq(bind(fake.listen_fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
	cr_assert_eq(listen(fake.listen_fd, 4), 0);
	fake.fd = -1;
	ev_io_init(&fake.accept_w, fake_accept, fake.listen_fd, EV_READ);
	ev_io_start(loop, &fake.accept_w);
	wbuf_init(&fake.login, fake.login_data, sizeof(fake.login_data));
	wbuf_init(&fake.reply, fake.reply_data, sizeof(fake.reply_data));
}

static void fake_stop(void)
{
	if (fake.fd >= 0)
		fake_hang_up();
	ev_io_stop(loop, &fake.accept_w);
	close(fake.listen_fd);
	unlink(fake.path);
	rmdir(fake.dir);
}

/* What a PostgreSQL 15 backend sends after a trust login. */
static void script_login(struct wbuf *w)
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
static void script_rows(struct wbuf *w, const char *const *values, int n)
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
static void script_error(struct wbuf *w, const char *severity, const char *sqlstate, const char *message)
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

static void setup(void)
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

static void teardown(void)
{
	conf.min_pool_size = 0;
	pool_close_servers(pool, "test over");
	server_reap();
	pool_free_all();
	fake_stop();
}

TestSuite(server, .init = setup, .fini = teardown, .timeout = 10);

static void on_deadline(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)l; (void)w; (void)revents;
}

/* Run the loop until done() holds, for at most 3 s. */
static bool run_until(bool (*done)(void))
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

static bool one_idle(void) { return pool->idle.count == 1; }
static bool none_left(void) { return pool_server_count(pool) == 0; }

static struct server *first_idle(void)
{
	return list_entry(list_first(&pool->idle), struct server, node);
}

/* A backend logged in through the fake: idle in the pool. */
static struct server *connected(void)
{
	script_login(&fake.login);
	conf.min_pool_size = 1;
	pool_want_servers(pool);
	cr_assert_eq(pool->connecting.count, 1, "a connect under way");
	cr_assert(run_until(one_idle), "the backend did not come up");
	conf.min_pool_size = 0;
	return first_idle();
}

/* ---- logging in ---- */

Test(server, a_login_gives_the_pool_its_base_and_an_idle_backend)
{
	struct server *s = connected();

	cr_assert_str_eq(fake.startup_user, "alice");
	cr_assert_str_eq(fake.startup_db, "app");
	cr_assert_eq(s->state, SERVER_IDLE);
	cr_assert_eq(s->phase, PHASE_IDLE);
	cr_assert_eq(s->backend_pid, 4242);
	cr_assert_eq(s->pool, pool);
	cr_assert(pool->have_base);
	cr_assert_str_eq(params_get(&pool->base, "DateStyle"), "ISO, MDY");
	cr_assert_str_eq(params_get(&pool->base, "server_version"), "15.4");
	cr_assert_str_eq(params_get(&pool->base, "standard_conforming_strings"), "on");
	cr_assert_null(params_get(&pool->base, "search_path"), "only what the server reported");
	cr_assert_eq(pool->stats.servers_opened, 1);
	cr_assert_null(pool->last_error);
}

Test(server, a_refused_login_keeps_the_server_sqlstate_and_message)
{
	script_error(&fake.login, "FATAL", "3D000", "database \"app\" does not exist");
	conf.min_pool_size = 1;
	pool_want_servers(pool);
	cr_assert(run_until(none_left));
	cr_assert_eq(pool->stats.servers_failed, 1);
	cr_assert_str_eq(pool->last_sqlstate, "3D000");
	cr_assert_str_eq(pool->last_error, "database \"app\" does not exist", "libpq's LOCATION line is cut");
}

static bool failed_once(void) { return pool->stats.servers_failed == 1; }

Test(server, a_backend_that_never_answers_runs_into_the_connect_timeout)
{
	conf.server_connect_timeout = 0.05;
	conf.min_pool_size = 1;
	pool_want_servers(pool);
	cr_assert_eq(pool->connecting.count, 1);
	cr_assert(run_until(failed_once));
	cr_assert_eq(pool_server_count(pool), 0);
	cr_assert_str_eq(pool->last_sqlstate, "08001");
	cr_assert_str_eq(pool->last_error, "timeout expired (server_connect_timeout)");
}

/* ---- libpq-driven queries ---- */

static struct {
	int calls;
	char sqlstate[6];
	char error[256];
	int rows;
	char first_value[64];
	uint8_t notices[512];
	uint32_t notices_len;
} answer;

static void on_answer(struct server *s, const char *sqlstate, const char *error)
{
	const PGresult *res = server_query_result(s);
	uint8_t *notices;

	answer.calls++;
	snprintf(answer.sqlstate, sizeof(answer.sqlstate), "%s", sqlstate ? sqlstate : "");
	snprintf(answer.error, sizeof(answer.error), "%s", error ? error : "");
	answer.rows = s->query_rows;
	snprintf(answer.first_value, sizeof(answer.first_value), "%s",
		 res && PQntuples(res) ? PQgetvalue(res, 0, 0) : "");
	notices = server_take_notices(s, &answer.notices_len);
	if (notices && answer.notices_len <= sizeof(answer.notices))
		memcpy(answer.notices, notices, answer.notices_len);
	free(notices);
}

static bool answered(void) { return answer.calls == 1; }

Test(server, a_query_returns_its_rows)
{
	static const char *const values[] = { "1", "2" };
	struct server *s = connected();

	script_rows(&fake.reply, values, 2);
	proto_ready(&fake.reply, 'I');
	cr_assert_eq(server_query(s, "select v from t", on_answer), 0);
	cr_assert_eq(s->phase, PHASE_QUERY);
	cr_assert(run_until(answered));
	cr_assert_str_eq(fake.last_query, "select v from t");
	cr_assert_str_eq(answer.error, "");
	cr_assert_eq(answer.rows, 2);
	cr_assert_str_eq(answer.first_value, "1");
	cr_assert_eq(s->phase, PHASE_IDLE, "back to libpq's idle watch");
}

Test(server, the_first_error_of_a_query_is_reported)
{
	static const char *const values[] = { "x" };
	struct server *s = connected();
	struct wbuf *w = &fake.reply;

	script_rows(w, values, 1);
	proto_error(w, "ERROR", "42P01", "relation \"t\" does not exist", NULL, NULL);
	proto_ready(w, 'I');
	server_query(s, "select 1; select * from t", on_answer);
	cr_assert(run_until(answered));
	cr_assert_str_eq(answer.sqlstate, "42P01");
	cr_assert_str_eq(answer.error, "relation \"t\" does not exist");
}

Test(server, notices_are_kept_as_the_client_would_get_them_when_asked)
{
	struct server *s = connected();
	struct wbuf *w = &fake.reply;
	uint8_t want[256];
	struct wbuf expected;

	proto_notice(w, "NOTICE", "42622", "identifier \"aaaa\" will be truncated", "a detail", "a hint");
	script_rows(w, NULL, 0);
	proto_ready(w, 'I');
	server_query(s, "select 1", on_answer);
	server_keep_notices(s);
	cr_assert(run_until(answered));
	wbuf_init(&expected, want, sizeof(want));
	proto_notice(&expected, "NOTICE", "42622", "identifier \"aaaa\" will be truncated", "a detail", "a hint");
	cr_assert_eq(answer.notices_len, expected.len);
	cr_assert_arr_eq(answer.notices, want, expected.len);
}

Test(server, notices_are_dropped_unless_asked_for)
{
	struct server *s = connected();
	struct wbuf *w = &fake.reply;

	proto_notice(w, "NOTICE", "00000", "hello", NULL, NULL);
	script_rows(w, NULL, 0);
	proto_ready(w, 'I');
	server_query(s, "select 1", on_answer);
	cr_assert(run_until(answered));
	cr_assert_eq(answer.notices_len, 0);
}

static bool closed(void) { return pool_server_count(pool) == 0; }

Test(server, a_query_without_an_answer_closes_the_backend)
{
	struct server *s = connected();

	conf.server_drain_timeout = 0.025;     /* the limit is twice that */
	server_query(s, "select pg_sleep(1000)", on_answer);
	cr_assert(run_until(closed));
	cr_assert_eq(answer.calls, 0);
	cr_assert_eq(pool->stats.servers_closed, 1);
}

/* ---- idle ---- */

Test(server, a_backend_closed_while_idle_is_closed_and_counted)
{
	connected();
	fake_hang_up();
	cr_assert(run_until(closed));
	cr_assert_eq(pool->stats.servers_closed, 1);
	cr_assert_eq(pool->stats.servers_lost, 0, "it was not leased");
}

Test(server, a_notification_on_an_idle_backend_makes_it_unusable)
{
	struct wbuf w;
	uint8_t data[64];

	connected();
	wbuf_init(&w, data, sizeof(data));
	proto_notification(&w, 4242, "chan", "");
	fake_send(&w);
	cr_assert(run_until(closed));
	cr_assert_eq(pool->stats.servers_closed, 1);
}

/* ---- raw ---- */

static int raw_readable;

static void on_raw_readable(struct server *s)
{
	uint8_t buf[64];

	raw_readable++;
	cr_assert_gt(recv(s->fd, buf, sizeof(buf), MSG_DONTWAIT), 0);
}

static bool read_once(void) { return raw_readable == 1; }
static bool fake_got_sync(void) { return fake.raw_len == 5; }

Test(server, the_raw_phase_hands_the_socket_to_the_relay)
{
	struct server *s = connected();
	struct wbuf w;
	uint8_t data[64];

	server_go_raw(s, on_raw_readable, NULL);
	cr_assert_eq(s->phase, PHASE_RAW);
	wbuf_init(&w, data, sizeof(data));
	proto_sync(&w);
	cr_assert_eq(server_send_raw(s, w.data, w.len), (ssize_t)w.len);
	cr_assert(run_until(fake_got_sync));
	cr_assert_arr_eq(fake.raw, "S\0\0\0\x04", 5);
	wbuf_init(&w, data, sizeof(data));
	proto_ready(&w, 'I');
	fake_send(&w);
	cr_assert(run_until(read_once));
	server_watch_idle(s);
	cr_assert_eq(s->phase, PHASE_IDLE);
}

Test(server, sending_to_a_backend_that_is_gone_fails)
{
	struct server *s = connected();

	fake_hang_up();
	server_go_raw(s, on_raw_readable, NULL);
	/* The first send may still be taken by the kernel; the peer's close shows by the second. */
	ssize_t a = server_send_raw(s, "S\0\0\0\x04", 5), b = server_send_raw(s, "S\0\0\0\x04", 5);
	cr_assert(a == -1 || b == -1, "sends after the backend went: %zd, %zd", a, b);
}
