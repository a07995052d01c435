/*
 * test_login.c — Criterion tests for daemon/login.c: a new client's
 * startup packets as they arrive on its socket (login_readable(), through
 * the hooks main.c installs), what it is answered, and where it goes.
 *
 * The answers are PostgreSQL's (postmaster.c ProcessStartupPacket, checked
 * against PostgreSQL 15): 'N' to SSLRequest and GSSENCRequest on a Unix
 * socket, FATAL with PostgreSQL's SQLSTATE and message (and format) for a
 * packet it refuses. Real loop and sockets, no
 * PostgreSQL: the pool of "app" is built paused (tests/lib/client_pair.h).
 */
#include <criterion/criterion.h>
#include <pwd.h>
#include <string.h>
#include <unistd.h>

#include "../lib/client_pair.h"
#include "admin.h"
#include "client.h"
#include "login.h"
#include "pool.h"
#include "proto.h"
#include "worker.h"

static const struct client_frontend front_end = {
	.login_readable = login_readable,
	.admin_readable = admin_on_readable,
	.admin_writable = admin_on_writable,
	.released = admin_free,
};

static void start(const char *ini)
{
	pair_start(ini);
	client_set_frontend(&front_end);
}

static void setup(void)
{
	start(PAIR_INI);
}

TestSuite(login, .init = setup, .timeout = 10);

static const char *const alice_app[] = { "user", "alice", "database", "app", NULL };

/* The peer sends a startup packet; what came back is in *w. */
static void send_startup(int peer, uint32_t version, const char *const *pairs, struct wire *w)
{
	struct bytes b = { .len = 0 };

	put_startup(&b, version, pairs);
	peer_send(peer, b.data, b.len);
	wire_read(peer, w);
}

static void send_code(int peer, uint32_t code)
{
	struct bytes b = { .len = 0 };

	put32(&b, 8);
	put32(&b, code);
	peer_send(peer, b.data, b.len);
}

/* AuthenticationOk, ParameterStatus messages, BackendKeyData with c's key, ReadyForQuery 'I', nothing more. */
static void assert_welcome(struct wire *w, const struct client *c)
{
	struct msg m = wire_expect(w, 'R');

	cr_assert_eq(m.len, 8);
	cr_assert_eq(get32(m.body), 0, "not AuthenticationOk");
	int statuses = 0;
	while (wire_next(w, &m) && m.type == 'S')
		statuses++;
	cr_assert_gt(statuses, 0, "no ParameterStatus");
	cr_assert_eq(m.type, 'K', "expected BackendKeyData, got '%c'", m.type);
	cr_assert_eq(m.len, 12);
	cr_assert_eq(get32(m.body), c->id);
	cr_assert_eq(get32(m.body + 4), c->cancel_key);
	m = wire_expect(w, 'Z');
	cr_assert_eq(m.len, 5);
	cr_assert_eq(m.body[0], 'I');
	cr_assert_eq(w->at, w->len, "bytes after ReadyForQuery");
	cr_assert_not(w->eof);
	cr_assert_eq(c->state, CLIENT_IDLE);
}

/* One FATAL ErrorResponse and the end of the connection. */
static void assert_fatal(struct wire *w, const struct client *c, const char *sqlstate, const char *message,
			 const char *detail)
{
	struct msg m = wire_expect(w, 'E');

	assert_error(&m, "FATAL", sqlstate, message, detail);
	cr_assert_eq(w->at, w->len, "bytes after the FATAL");
	cr_assert(w->eof, "the connection was not closed after FATAL");
	cr_assert_eq(c->state, CLIENT_CLOSED);
}

/* ---- encryption requests ---- */

static void refused_then_login(const uint32_t *codes, int n)
{
	int peer;
	struct client *c = pair_accept(&peer);
	struct pool *p = pair_pool("alice");
	static struct wire w;

	for (int i = 0; i < n; i++) {
		send_code(peer, codes[i]);
		wire_read(peer, &w);
		cr_assert_eq(w.len, (size_t)i + 1, "request %d: %zu bytes answered", i, w.len);
		cr_assert_eq(w.data[i], 'N');
		cr_assert_eq(c->state, CLIENT_LOGIN);
	}
	w.at = w.len;
	send_startup(peer, PROTO_V3, alice_app, &w);
	assert_welcome(&w, c);
	cr_assert_eq(c->pool, p);
}

Test(login, ssl_request_is_answered_N_and_the_login_goes_on)
{
	refused_then_login((const uint32_t[]){ PROTO_SSL_REQUEST }, 1);
}

Test(login, gssenc_request_is_answered_N_and_the_login_goes_on)
{
	refused_then_login((const uint32_t[]){ PROTO_GSSENC_REQUEST }, 1);
}

Test(login, gssenc_then_ssl_are_both_answered_N)
{
	refused_then_login((const uint32_t[]){ PROTO_GSSENC_REQUEST, PROTO_SSL_REQUEST }, 2);
}

/*
 * Bytes that came with the request were sent before any encryption could
 * start: PostgreSQL answers the request, then refuses them (CVE-2021-23214).
 */
static void data_after_request(uint32_t code, const char *message)
{
	int peer;
	struct client *c = pair_accept(&peer);
	struct bytes b = { .len = 0 };
	static struct wire w;

	pair_pool("alice");
	put32(&b, 8);
	put32(&b, code);
	put_startup(&b, PROTO_V3, alice_app);
	peer_send(peer, b.data, b.len);
	wire_read(peer, &w);
	cr_assert_geq(w.len, 1);
	cr_assert_eq(w.data[0], 'N', "the request was not answered first");
	w.at = 1;
	assert_fatal(&w, c, "08P01", message,
		     "This could be either a client-software bug or evidence of an attempted man-in-the-middle "
		     "attack.");
}

Test(login, data_after_an_ssl_request_is_refused_as_postgresql_does)
{
	data_after_request(PROTO_SSL_REQUEST, "received unencrypted data after SSL request");
}

Test(login, data_after_a_gssenc_request_is_refused_as_postgresql_does)
{
	data_after_request(PROTO_GSSENC_REQUEST, "received unencrypted data after GSSAPI encryption request");
}

/* ---- startup packets refused ---- */

/* PostgreSQL answers a protocol 1 or 2 client in its own format: 'E', the text, a NUL; no SQLSTATE. */
static void refused_in_old_format(uint32_t version, const char *text)
{
	int peer;
	struct client *c = pair_accept(&peer);
	static struct wire w;

	send_startup(peer, version, alice_app, &w);
	assert_bytes(w.data, w.len, text, strlen(text) + 1);
	cr_assert(w.eof);
	cr_assert_eq(c->state, CLIENT_CLOSED);
	cr_assert_eq(client_count, 0);
}

Test(login, protocol_2_is_refused_in_its_own_format)
{
	refused_in_old_format(0x00020000, "EFATAL:  unsupported frontend protocol 2.0: server supports 3.0 to 3.0\n");
}

Test(login, protocol_1_is_refused_in_its_own_format)
{
	refused_in_old_format(0x00010000, "EFATAL:  unsupported frontend protocol 1.0: server supports 3.0 to 3.0\n");
}

Test(login, protocol_4_is_refused_with_0A000)
{
	int peer;
	struct client *c = pair_accept(&peer);
	static struct wire w;

	send_startup(peer, 0x00040002, alice_app, &w);
	assert_fatal(&w, c, "0A000", "unsupported frontend protocol 4.2: server supports 3.0 to 3.0", NULL);
}

Test(login, a_bad_length_is_refused_with_08P01)
{
	int peer;
	struct client *c = pair_accept(&peer);
	static struct wire w;

	/* PostgreSQL only logs this one and hangs up; pglease says why. */
	peer_send(peer, "\0\0\0\x04\0\x03\0\0", 8);
	wire_read(peer, &w);
	assert_fatal(&w, c, "08P01", "invalid length of startup packet", NULL);
}

Test(login, a_bad_layout_is_refused_with_08P01)
{
	int peer;
	struct client *c = pair_accept(&peer);
	struct bytes b = { .len = 0 };
	static struct wire w;

	put32(&b, 8 + 11);
	put32(&b, PROTO_V3);
	put(&b, "user\0alice\0", 11);  /* no terminator */
	peer_send(peer, b.data, b.len);
	wire_read(peer, &w);
	assert_fatal(&w, c, "08P01", "invalid startup packet layout: expected terminator as last byte", NULL);
}

Test(login, no_user_is_refused_with_28000)
{
	int peer;
	struct client *c = pair_accept(&peer);
	static struct wire w;

	send_startup(peer, PROTO_V3, (const char *const[]){ "database", "app", NULL }, &w);
	assert_fatal(&w, c, "28000", "no PostgreSQL user name specified in startup packet", NULL);
}

Test(login, an_unknown_database_gets_3D000)
{
	int peer;
	struct client *c = pair_accept(&peer);
	static struct wire w;

	send_startup(peer, PROTO_V3, (const char *const[]){ "user", "alice", "database", "x", NULL }, &w);
	assert_fatal(&w, c, "3D000", "database \"x\" does not exist", NULL);
	cr_assert(list_empty(&all_pools), "a pool was made for a database that does not exist");
}

Test(login, past_max_client_conn_gets_53300)
{
	int peer1, peer2, peer3;
	static struct wire w1, w2, w3;

	start("[pglease]\nauth_type = trust\nmax_client_conn = 1\n" PAIR_INI_DATABASES);
	pair_pool("alice");
	struct client *c1 = pair_accept(&peer1);
	send_startup(peer1, PROTO_V3, alice_app, &w1);
	assert_welcome(&w1, c1);

	struct client *c2 = pair_accept(&peer2);
	send_startup(peer2, PROTO_V3, alice_app, &w2);
	assert_fatal(&w2, c2, "53300", "no more connections allowed (max_client_conn)", NULL);
	cr_assert_eq(c1->state, CLIENT_IDLE, "the client within the limit was touched");
	cr_assert_eq(client_count, 1);

	/* Once the first one leaves there is room again. */
	client_close(c1, "test");
	struct client *c3 = pair_accept(&peer3);
	send_startup(peer3, PROTO_V3, alice_app, &w3);
	assert_welcome(&w3, c3);
}

/* ---- startup packets accepted ---- */

Test(login, a_packet_in_pieces_is_read_whole)
{
	int peer;
	struct client *c = pair_accept(&peer);
	struct bytes b = { .len = 0 };
	static struct wire w;

	pair_pool("alice");
	put_startup(&b, PROTO_V3, alice_app);
	for (size_t at = 0; at < b.len; at += 3) {
		cr_assert_eq(w.len, 0, "answered before the packet was whole");
		peer_send(peer, b.data + at, b.len - at < 3 ? b.len - at : 3);
		wire_read(peer, &w);
	}
	assert_welcome(&w, c);
}

Test(login, a_newer_minor_version_gets_negotiate_protocol_version_first)
{
	int peer;
	struct client *c = pair_accept(&peer);
	static struct wire w;
	struct bytes want = { .len = 0 };

	pair_pool("alice");
	send_startup(peer, 0x00030005, (const char *const[]){ "user", "alice", "database", "app", "_pq_.frobnicate",
							     "on", NULL },
		     &w);
	/* As PostgreSQL sends it: its newest version as a version code (3.0), then the options it does not know. */
	struct msg v = wire_expect(&w, 'v');
	put32(&want, 0x00030000);
	put32(&want, 1);
	put_str(&want, "_pq_.frobnicate");
	assert_bytes(v.body, v.len - 4, want.data, want.len);
	assert_welcome(&w, c);
}

Test(login, a_query_sent_with_the_startup_packet_waits_for_its_lease)
{
	int peer;
	struct client *c = pair_accept(&peer);
	struct pool *p = pair_pool("alice");
	struct bytes b = { .len = 0 }, query = { .len = 0 };
	static struct wire w;

	put_startup(&b, PROTO_V3, alice_app);
	put_query(&query, "SELECT 1");
	put(&b, query.data, query.len);
	peer_send(peer, b.data, b.len);
	wire_read(peer, &w);
	struct msg m;
	while (wire_next(&w, &m) && m.type != 'Z')
		;
	cr_assert_eq(m.type, 'Z', "no welcome");
	/* Welcomed, then its Query asked for a lease: the pool is paused, so it waits with it. */
	cr_assert_eq(c->state, CLIENT_WAITING);
	cr_assert_eq(p->waiting.count, 1);
	assert_bytes(c->in->data + c->in->start, c->in->end - c->in->start, query.data, query.len);
}

Test(login, a_cancel_request_reaches_a_waiting_client)
{
	int peer, rpeer;
	struct pool *p = pair_pool("alice");
	struct client *c = pair_accept(&peer);
	struct bytes b = { .len = 0 };
	static struct wire w, rw;

	send_startup(peer, PROTO_V3, alice_app, &w);
	put_query(&b, "SELECT pg_sleep(10)");
	peer_send(peer, b.data, b.len);
	pair_spin();
	cr_assert_eq(c->state, CLIENT_WAITING);
	w.at = w.len;

	struct client *r = pair_accept(&rpeer);
	b.len = 0;
	put32(&b, 16);
	put32(&b, PROTO_CANCEL_REQUEST);
	put32(&b, c->id);
	put32(&b, c->cancel_key);
	peer_send(rpeer, b.data, b.len);
	wire_read(rpeer, &rw);
	cr_assert_eq(rw.len, 0, "a CancelRequest got an answer");
	cr_assert(rw.eof);
	cr_assert_eq(r->state, CLIENT_CLOSED);
	wire_read(peer, &w);
	struct msg e = wire_expect(&w, 'E');
	assert_error(&e, "ERROR", "57014", "canceling statement due to user request", NULL);
	wire_expect(&w, 'Z');
	cr_assert_eq(c->state, CLIENT_IDLE);
	cr_assert_eq(p->waiting.count, 0);
}

Test(login, a_client_that_hangs_up_during_login_is_closed)
{
	int peer;
	struct client *c = pair_accept(&peer);

	peer_send(peer, "\0\0", 2);
	pair_spin();
	cr_assert_eq(c->state, CLIENT_LOGIN);
	close(peer);
	pair_spin();
	cr_assert_eq(c->state, CLIENT_CLOSED);
	cr_assert_eq(client_count, 0);
}

/* ---- peer authentication (the uid lookup runs on the worker thread) ---- */

/* Run the loop until the client leaves LOGIN (the worker answered) or a second passed. */
static void wait_for_auth(struct client *c)
{
	for (int i = 0; i < 1000 && c->state == CLIENT_LOGIN; i++) {
		ev_run(loop, EVRUN_NOWAIT);
		usleep(1000);
	}
	cr_assert_neq(c->state, CLIENT_LOGIN, "peer authentication did not finish");
}

Test(login, peer_authentication_accepts_the_sockets_own_user)
{
	int peer;
	struct passwd *me = getpwuid(getuid());
	static struct wire w;

	cr_assert_not_null(me);
	start("[pglease]\nauth_type = peer\n" PAIR_INI_DATABASES);
	cr_assert_eq(worker_start(loop), 0);
	pair_pool(me->pw_name);
	struct client *c = pair_accept(&peer);
	send_startup(peer, PROTO_V3, (const char *const[]){ "user", me->pw_name, "database", "app", NULL }, &w);
	wait_for_auth(c);
	cr_assert_eq(c->jobs_pending, 0);
	wire_read(peer, &w);
	assert_welcome(&w, c);
	worker_stop();
}

Test(login, peer_authentication_refuses_another_user_with_28000)
{
	int peer;
	static struct wire w;

	start("[pglease]\nauth_type = peer\n" PAIR_INI_DATABASES);
	cr_assert_eq(worker_start(loop), 0);
	struct client *c = pair_accept(&peer);
	send_startup(peer, PROTO_V3, (const char *const[]){ "user", "pglease_nobody_x", "database", "app", NULL }, &w);
	wait_for_auth(c);
	wire_read(peer, &w);
	assert_fatal(&w, c, "28000", "peer authentication failed for user \"pglease_nobody_x\"", NULL);
	worker_stop();
}
