/*
 * test_login.c — Criterion tests for the startup phase (login.c; today in
 * daemon/client.c): encryption requests, protocol versions, unknown
 * databases, the connection limit, the login timeout, peer authentication
 * and CancelRequests, as a client program sees them on its socket.
 */
#include <criterion/criterion.h>
#include <pwd.h>

#include "env.h"
#include "client.h"
#include "config.h"

#include "../lib/wire_client.h"

TestSuite(login, .init = wire_setup, .fini = wire_teardown, .timeout = 10);

static void expect_welcome(struct wire *w)
{
	struct msg m = next_msg(w);

	cr_assert_eq(m.type, 'R', "AuthenticationOk first, got '%c'", m.type ? m.type : '0');
	cr_assert_eq(be32(m.body), 0);
	do
		m = next_msg(w);
	while (m.type == 'S');
	cr_assert_eq(m.type, 'K');
	m = next_msg(w);
	cr_assert_eq(m.type, 'Z');
	cr_assert_eq(w->c->state, CLIENT_IDLE);
}

Test(login, encryption_requests_are_answered_n_and_the_login_goes_on)
{
	struct wire *w = wire_connect();
	static const uint8_t ssl[] = { 0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f };
	static const uint8_t gss[] = { 0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30 };

	wire_send(w, ssl, sizeof(ssl));
	wire_wait(w, 2);
	cr_assert_eq(w->len, 1);
	cr_assert_eq(w->in[0], 'N');
	wire_send(w, gss, sizeof(gss));
	wire_wait(w, 2);
	cr_assert_eq(w->len, 2);
	cr_assert_eq(w->in[1], 'N');
	w->at = 2;
	wire_startup(w, "u", "app");
	expect_welcome(w);
}

Test(login, data_after_an_ssl_request_is_refused)
{
	struct wire *w = wire_connect();
	static const uint8_t ssl_and_more[] = { 0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f, 0, 0, 0, 8, 0, 3, 0, 0 };

	wire_send(w, ssl_and_more, sizeof(ssl_and_more));
	expect_fatal(w, "08P01", "received unencrypted data after SSL request");
}

Test(login, an_unknown_database)
{
	struct wire *w = wire_connect();

	wire_startup(w, "u", "nope");
	expect_fatal(w, "3D000", "database \"nope\" does not exist");
}

Test(login, protocol_2_is_refused)
{
	struct wire *w = wire_connect();
	static const uint8_t v2[] = { 0, 0, 0, 9, 0, 2, 0, 0, 0 };

	wire_send(w, v2, sizeof(v2));
	expect_fatal(w, "08P01", "unsupported frontend protocol 2.0: server supports 3.0 to 3.0");
}

Test(login, a_newer_minor_version_and_protocol_options_get_negotiate_protocol_version)
{
	struct wire *w = wire_connect();
	uint8_t buf[256];
	struct wbuf b;
	const char *pairs[] = { "user", "u", "database", "app", "_pq_.frob", "1", NULL };

	wbuf_init(&b, buf, sizeof(buf));
	startup_msg(&b, 2, pairs);
	wire_send_buf(w, &b);
	struct msg m = next_msg(w);
	cr_assert_eq(m.type, 'v');
	cr_assert_eq(m.len, 4 + 4 + sizeof("_pq_.frob"));
	cr_assert_eq(be32(m.body), 0, "newest minor version: 0");
	cr_assert_eq(be32(m.body + 4), 1);
	cr_assert_str_eq((const char *)m.body + 8, "_pq_.frob");
	expect_welcome(w);
}

Test(login, past_max_client_conn)
{
	conf.max_client_conn = 1;
	struct wire *first = wire_connect(), *second = wire_connect();

	wire_startup(second, "u", "app");
	expect_fatal(second, "53300", "no more connections allowed (max_client_conn)");
	wire_startup(first, "u", "app");
	expect_welcome(first);
}

Test(login, a_client_that_does_not_finish_its_startup_is_dropped)
{
	struct wire *w = wire_connect();

	client_maintain(ev_now(loop) + 59);
	cr_assert_eq(w->c->state, CLIENT_LOGIN);
	client_maintain(ev_now(loop) + 60);
	cr_assert(closed_quietly(w));
}

static const char *my_name(void)
{
	struct passwd *pw = getpwuid(getuid());

	cr_assert_not_null(pw);
	return pw->pw_name;
}

Test(login, peer_authentication_takes_the_socket_owner_name)
{
	struct wire *w = wire_connect();

	conf.auth_type = AUTH_PEER;
	pool = pool_find_or_create(&dbs[0], "app", my_name());
	cr_assert_eq(params_put(&pool->base, "server_version", "15.4"), 0);
	pool->have_base = true;
	wire_startup(w, my_name(), "app");
	expect_welcome(w);
}

Test(login, peer_authentication_refuses_another_name)
{
	struct wire *w = wire_connect();

	conf.auth_type = AUTH_PEER;
	wire_startup(w, "somebody-else", "app");
	expect_fatal(w, "28000", "peer authentication failed for user \"somebody-else\"");
}

static void cancel_request(struct wire *w, uint32_t pid, uint32_t key)
{
	uint8_t buf[16];
	struct wbuf b;

	wbuf_init(&b, buf, sizeof(buf));
	wbuf_int32(&b, 16);
	wbuf_int32(&b, PROTO_CANCEL_REQUEST);
	wbuf_int32(&b, pid);
	wbuf_int32(&b, key);
	wire_send_buf(w, &b);
}

Test(login, a_cancel_request_with_a_wrong_key_is_closed_with_no_answer)
{
	struct wire *target = wire_connect(), *w = wire_connect();

	wire_startup(target, "u", "app");
	expect_welcome(target);
	cancel_request(w, target->c->id, target->c->cancel_key + 1);
	cr_assert(closed_quietly(w));
}

Test(login, a_cancel_for_a_waiting_client_ends_its_queued_query)
{
	struct wire *target = wire_connect(), *w = wire_connect();
	uint8_t buf[64];
	struct wbuf b;

	wire_startup(target, "u", "app");
	expect_welcome(target);
	cr_assert_eq(pool_pause_db(pool->dbname), 0); /* no backend will come: the client waits */
	wbuf_init(&b, buf, sizeof(buf));
	size_t m = wbuf_begin(&b, 'Q');
	wbuf_cstr(&b, "select 1");
	wbuf_end(&b, m);
	wire_send_buf(target, &b);
	for (int i = 0; i < 50 && target->c->state != CLIENT_WAITING; i++)
		wire_wait(target, 0.02);
	cr_assert_eq(target->c->state, CLIENT_WAITING);
	cancel_request(w, target->c->id, target->c->cancel_key);
	struct msg e = next_msg(target);
	cr_assert_eq(e.type, 'E');
	cr_assert_str_eq(field(&e, 'S'), "ERROR");
	cr_assert_str_eq(field(&e, 'C'), "57014");
	cr_assert_str_eq(field(&e, 'M'), "canceling statement due to user request");
	struct msg z = next_msg(target);
	cr_assert_eq(z.type, 'Z');
	cr_assert_eq(z.body[0], 'I');
	cr_assert_eq(target->c->state, CLIENT_IDLE, "nothing else queued: idle again");
	cr_assert(closed_quietly(w));
}
