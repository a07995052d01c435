/*
 * test_admin.c — Criterion tests for daemon/admin.c, the console's session
 * as a client program sees it on a socketpair (same uid: full rights): the
 * welcome, SHOW in the simple and extended protocol, errors that keep the
 * session, SET from drivers, PAUSE/RESUME and PAUSE waiting for leases,
 * and RELOAD/SHUTDOWN calling the daemon (defined here to watch them).
 */
#include <criterion/criterion.h>

#include "admin.h"
#include "admin_parse.h"
#include "client.h"
#include "config.h"
#include "daemon.h"
#include "pause.h"

#include "../lib/wire_client.h"

/* Stand-ins for daemon/main.c's actions, installed with admin_set_actions(). */
static int reloads, reload_result, shutdowns;
static enum shutdown_kind shutdown_how;

static int test_reload(void)
{
	reloads++;
	return reload_result;
}

static void test_shutdown(enum shutdown_kind kind)
{
	shutdowns++;
	shutdown_how = kind;
}

static struct wire *console;

static void setup(void)
{
	static const struct admin_actions actions = { .reload = test_reload, .shutdown = test_shutdown };

	admin_set_actions(&actions);
	wire_setup();
	console = wire_connect();
	wire_startup(console, "ops", "pglease");
}

TestSuite(admin, .init = setup, .fini = wire_teardown, .timeout = 10);

/* Skip the welcome. */
static void logged_in(void)
{
	struct msg m;

	do
		m = next_msg(console);
	while (m.type && m.type != 'Z');
	cr_assert_eq(m.type, 'Z');
}

static void query(const char *sql)
{
	uint8_t buf[256];
	struct wbuf b;

	wbuf_init(&b, buf, sizeof(buf));
	size_t m = wbuf_begin(&b, 'Q');
	wbuf_cstr(&b, sql);
	wbuf_end(&b, m);
	wire_send_buf(console, &b);
}

static struct msg expect(char type)
{
	struct msg m = next_msg(console);

	cr_assert_eq(m.type, type, "want '%c', got '%c'", type, m.type ? m.type : '0');
	return m;
}

static void expect_complete(const char *tag)
{
	struct msg m = expect('C');

	cr_assert_str_eq((const char *)m.body, tag);
	m = expect('Z');
	cr_assert_eq(m.body[0], 'I');
}

static void expect_error(const char *sqlstate, const char *message)
{
	struct msg m = expect('E');

	cr_assert_str_eq(field(&m, 'S'), "ERROR");
	cr_assert_str_eq(field(&m, 'C'), sqlstate);
	cr_assert_str_eq(field(&m, 'M'), message);
	m = expect('Z');
	cr_assert_eq(m.body[0], 'I', "the session goes on");
}

Test(admin, the_welcome_looks_like_a_server_login)
{
	static const char *const want[][2] = {
		{ "server_version", "15.4" }, { "server_encoding", "UTF8" }, { "client_encoding", "UTF8" },
		{ "DateStyle", "ISO, MDY" }, { "IntervalStyle", "postgres" }, { "TimeZone", "UTC" },
		{ "integer_datetimes", "on" }, { "standard_conforming_strings", "on" }, { "is_superuser", "off" },
		{ "session_authorization", "ops" }, { "application_name", "" },
	};
	struct msg m = expect('R');

	cr_assert_eq(be32(m.body), 0);
	for (size_t i = 0; i < sizeof(want) / sizeof(*want); i++) {
		m = expect('S');
		cr_assert_str_eq((const char *)m.body, want[i][0]);
		cr_assert_str_eq((const char *)m.body + strlen(want[i][0]) + 1, want[i][1]);
	}
	m = expect('K');
	cr_assert_eq(be32(m.body), console->c->id);
	cr_assert_eq(be32(m.body + 4), console->c->cancel_key);
	m = expect('Z');
	cr_assert_eq(m.body[0], 'I');
	cr_assert_eq(console->c->state, CLIENT_ADMIN);
	cr_assert_str_eq(admin_user(console->c), "ops");
	cr_assert_null(console->c->pool, "the console joins no pool");
}

Test(admin, show_version_in_the_simple_protocol)
{
	logged_in();
	query("show version;");
	struct msg m = expect('T');
	cr_assert_eq(m.body[0] << 8 | m.body[1], 1);
	cr_assert_str_eq((const char *)m.body + 2, "version");
	m = expect('D');
	cr_assert_eq(be32(m.body + 2), strlen("pglease " PGLEASE_VERSION));
	cr_assert_arr_eq(m.body + 6, "pglease " PGLEASE_VERSION, strlen("pglease " PGLEASE_VERSION));
	expect_complete("SHOW");
}

Test(admin, show_in_the_extended_protocol)
{
	uint8_t buf[256];
	struct wbuf b;
	size_t m;

	logged_in();
	wbuf_init(&b, buf, sizeof(buf));
	m = wbuf_begin(&b, 'P'); wbuf_cstr(&b, "s1"); wbuf_cstr(&b, "SHOW VERSION"); wbuf_byte(&b, 0); wbuf_byte(&b, 0); wbuf_end(&b, m);
	m = wbuf_begin(&b, 'B'); wbuf_cstr(&b, "p1"); wbuf_cstr(&b, "s1"); wbuf_int32(&b, 0); wbuf_byte(&b, 0); wbuf_byte(&b, 0); wbuf_end(&b, m);
	m = wbuf_begin(&b, 'D'); wbuf_byte(&b, 'P'); wbuf_cstr(&b, "p1"); wbuf_end(&b, m);
	m = wbuf_begin(&b, 'E'); wbuf_cstr(&b, "p1"); wbuf_int32(&b, 0); wbuf_end(&b, m);
	proto_sync(&b);
	wire_send_buf(console, &b);
	expect('1');
	expect('2');
	expect('T');
	expect('D');
	expect_complete("SHOW");
}

Test(admin, an_unknown_command_is_a_syntax_error_with_the_command_list)
{
	logged_in();
	query("SHOW NONSENSE");
	struct msg m = expect('E');
	cr_assert_str_eq(field(&m, 'C'), "42601");
	cr_assert_str_eq(field(&m, 'H'), ADMIN_HINT);
	expect('Z');
	query("SHOW VERSION");
	expect('T');
}

Test(admin, drivers_may_set_session_settings_but_not_pglease_settings)
{
	logged_in();
	query("SET application_name = 'x'");
	expect_complete("SET");
	query("SET default_pool_size = 1");
	struct msg m = expect('E');
	cr_assert_str_eq(field(&m, 'C'), "0A000");
	cr_assert_str_eq(field(&m, 'H'), "Edit the configuration file, then RELOAD.");
	expect('Z');
}

Test(admin, pause_and_resume)
{
	logged_in();
	query("PAUSE nope");
	expect_error("3D000", "database \"nope\" does not exist");
	query("PAUSE");
	expect_complete("PAUSE");
	cr_assert(pool_paused(pool));
	cr_assert(pause_covers("anything"));
	query("RESUME app");
	expect_error("55000", "all databases are paused; RESUME without a database name resumes them");
	query("RESUME");
	expect_complete("RESUME");
	cr_assert_not(pool_paused(pool));
	query("PAUSE app");
	expect_complete("PAUSE");
	cr_assert(pool_paused(pool));
	cr_assert_not(pause_covers("other"));
}

Test(admin, pause_answers_once_the_leases_have_ended)
{
	logged_in();
	pool->active.count = 1;                   /* a client holds a lease (its list is all admin.c looks at) */
	query("PAUSE app");
	for (int i = 0; i < 5; i++)
		wire_wait(console, 0.01);
	cr_assert_eq(console->at, console->len, "no answer while a lease is held");
	cr_assert(pool_paused(pool), "no new lease meanwhile");
	admin_maintain(ev_now(loop));
	wire_wait(console, 0.01);
	cr_assert_eq(console->at, console->len, "still held");
	pool->active.count = 0;
	admin_maintain(ev_now(loop));
	expect_complete("PAUSE");
}

Test(admin, reload_calls_the_daemon_and_reports_a_failure)
{
	logged_in();
	query("RELOAD");
	expect_complete("RELOAD");
	cr_assert_eq(reloads, 1);
	reload_result = -1;
	query("RELOAD");
	expect_error("F0000", "configuration not reloaded; see pglease's log");
	cr_assert_eq(reloads, 2);
}

Test(admin, shutdown_answers_then_stops_gracefully)
{
	logged_in();
	query("SHUTDOWN");
	struct msg m = expect('C');
	cr_assert_str_eq((const char *)m.body, "SHUTDOWN");
	cr_assert_eq(shutdowns, 1);
	cr_assert_eq(shutdown_how, SHUTDOWN_GRACEFUL);
}

Test(admin, kill_needs_a_database)
{
	logged_in();
	query("KILL");
	struct msg m = expect('E');
	cr_assert_str_eq(field(&m, 'C'), "42601");
	expect('Z');
	query("KILL app");
	expect_complete("KILL");
	cr_assert(pool_paused(pool), "KILL leaves the database paused");
	cr_assert(pause_covers("app"));
}
