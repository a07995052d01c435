/*
 * test_client.c — Criterion tests for pool/client.c, a client's life: its
 * lists, its socket events, what pglease itself sends it, and the ways it
 * goes (close, fatal, the login timeout, the reaper).
 *
 * Real libev loop, real sockets: the client's socket is one end of a
 * socketpair, the test reads and writes the other (tests/lib/client_pair.h).
 * The front end is a set of test hooks that record what reached them.
 */
#include <criterion/criterion.h>
#include <ev.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "../lib/client_pair.h"
#include "client.h"
#include "iobuf.h"
#include "pool.h"

/* ---- the test front end ---- */

static struct {
	int login_calls, admin_read_calls, admin_write_calls, released_calls;
	struct client *login_client, *admin_client, *released_client;
	uint8_t login_bytes[256];
	size_t login_len;
} seen;

/* As login.c does: read what came, and keep it in c->in. */
static void hook_login(struct client *c)
{
	seen.login_calls++;
	seen.login_client = c;
	if (client_read_into(c, &c->in) <= 0)
		return client_close(c, "test: gone during login");
	seen.login_len = c->in->end - c->in->start;
	if (seen.login_len > sizeof(seen.login_bytes))
		seen.login_len = sizeof(seen.login_bytes);
	memcpy(seen.login_bytes, c->in->data + c->in->start, seen.login_len);
}

static void hook_admin_read(struct client *c)
{
	seen.admin_read_calls++;
	seen.admin_client = c;
	client_read(c);
}

static void hook_admin_write(struct client *c)
{
	seen.admin_write_calls++;
	seen.admin_client = c;
}

static void hook_released(struct client *c)
{
	seen.released_calls++;
	seen.released_client = c;
}

static const struct client_frontend hooks = {
	.login_readable = hook_login,
	.admin_readable = hook_admin_read,
	.admin_writable = hook_admin_write,
	.released = hook_released,
};

static void setup(void)
{
	pair_start("[pglease]\nauth_type = trust\nclient_login_timeout = 60\n" PAIR_INI_DATABASES);
	client_set_frontend(&hooks);
}

TestSuite(client, .init = setup, .timeout = 10);

/* ---- accept ---- */

Test(client, accept_puts_it_on_login_clients_reading)
{
	int peer1, peer2;
	struct client *c1 = pair_accept(&peer1);
	struct client *c2 = pair_accept(&peer2);

	cr_assert_eq(c1->state, CLIENT_LOGIN);
	cr_assert_eq(login_clients.count, 2);
	cr_assert_eq(client_count, 2);
	cr_assert_neq(c1->id, c2->id, "two clients share BackendKeyData id %u", c1->id);
	cr_assert(ev_is_active(&c1->rio), "a new client is not read");
	cr_assert_not(ev_is_active(&c1->wio), "a new client has a write watcher with nothing to write");
	cr_assert_null(c1->in);
	cr_assert_null(c1->out);
	cr_assert_null(c1->pool);
	cr_assert_eq(c1->connected_at, ev_now(loop));
}

Test(client, readable_bytes_go_to_the_login_hook)
{
	int peer;
	struct client *c = pair_accept(&peer);

	pair_spin();
	cr_assert_eq(seen.login_calls, 0, "the hook ran with nothing to read");
	peer_send(peer, "\0\0\0\x08\x04\xd2\x16\x2f", 8);
	pair_spin();
	cr_assert_geq(seen.login_calls, 1);
	cr_assert_eq(seen.login_client, c);
	cr_assert_eq(seen.login_len, 8);
	cr_assert_eq(memcmp(seen.login_bytes, "\0\0\0\x08\x04\xd2\x16\x2f", 8), 0);
	cr_assert_eq(seen.admin_read_calls, 0);
}

Test(client, a_console_clients_bytes_go_to_the_admin_hook)
{
	int peer;
	struct client *c = pair_accept(&peer);

	client_set_state(c, CLIENT_ADMIN);
	peer_send(peer, "Q", 1);
	pair_spin();
	cr_assert_geq(seen.admin_read_calls, 1);
	cr_assert_eq(seen.admin_client, c);
	cr_assert_eq(seen.login_calls, 0);
}

Test(client, a_logged_in_clients_bytes_do_not_reach_the_front_end)
{
	int peer;
	struct client *c = pair_logged_in(pair_pool("u"), &peer, NULL);
	struct wire w = { .len = 0 };

	/* Terminate: the object model ends the session itself. */
	peer_send(peer, "X\0\0\0\x04", 5);
	wire_read(peer, &w);
	cr_assert_eq(seen.login_calls + seen.admin_read_calls, 0);
	cr_assert_eq(c->state, CLIENT_CLOSED);
	cr_assert(w.eof);
}

/* ---- sending ---- */

Test(client, send_delivers_bytes_in_order)
{
	int peer;
	struct client *c = pair_accept(&peer);
	struct wire w = { .len = 0 };

	client_send(c, (const uint8_t *)"one ", 4);
	client_send(c, (const uint8_t *)"two ", 4);
	client_send(c, (const uint8_t *)"three", 5);
	wire_read(peer, &w);
	assert_bytes(w.data, w.len, "one two three", 13);
	/* All sent: no buffer, no write watcher. */
	cr_assert_null(c->out);
	cr_assert_not(ev_is_active(&c->wio));
	cr_assert_eq(c->state, CLIENT_LOGIN);
}

static void pattern(uint8_t *buf, size_t from, size_t n)
{
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)((from + i) % 251);
}

Test(client, a_full_socket_keeps_the_bytes_until_the_peer_reads)
{
	int peer;
	struct client *c = pair_accept(&peer);
	int small = 4096;
	uint8_t chunk[1000];
	size_t sent = 0;

	cr_assert_eq(setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	/* Fill the socket: the write watcher starts once send() would block. */
	while (!ev_is_active(&c->wio)) {
		cr_assert_lt(sent, (size_t)IOBUF_SIZE, "the socket never filled up");
		pattern(chunk, sent, sizeof(chunk));
		client_send(c, chunk, sizeof(chunk));
		sent += sizeof(chunk);
	}
	/* ... and later bytes queue behind what is unsent. */
	for (int i = 0; i < 5; i++) {
		pattern(chunk, sent, sizeof(chunk));
		client_send(c, chunk, sizeof(chunk));
		sent += sizeof(chunk);
	}
	cr_assert_not_null(c->out);
	cr_assert_gt(iobuf_unsent(c->out), 5 * sizeof(chunk) - 1);
	cr_assert_eq(c->state, CLIENT_LOGIN);

	static struct wire w;
	for (int rounds = 0; w.len < sent; rounds++) {
		cr_assert_lt(rounds, 1000, "only %zu of %zu bytes arrived", w.len, sent);
		wire_read(peer, &w);
	}
	static uint8_t want[2 * IOBUF_SIZE];
	pattern(want, 0, sent);
	assert_bytes(w.data, w.len, want, sent);
	cr_assert_null(c->out, "the buffer was kept after everything was sent");
	cr_assert_not(ev_is_active(&c->wio), "the write watcher was kept after everything was sent");
	cr_assert_eq(c->state, CLIENT_LOGIN);
}

Test(client, a_console_client_hears_when_its_socket_drained)
{
	int peer;
	struct client *c = pair_accept(&peer);
	int small = 4096;
	uint8_t chunk[1000] = { 0 };
	static struct wire w;

	client_set_state(c, CLIENT_ADMIN);
	cr_assert_eq(setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
	while (!ev_is_active(&c->wio))
		cr_assert_eq(client_write(c, chunk, sizeof(chunk)), (long)sizeof(chunk));
	cr_assert_eq(seen.admin_write_calls, 0);
	while (c->out) {
		cr_assert_lt(w.len, sizeof(w.data) / 2);
		wire_read(peer, &w);
	}
	cr_assert_geq(seen.admin_write_calls, 1, "the console was not told it may write more");
	cr_assert_eq(seen.admin_client, c);
}

Test(client, bytes_that_do_not_fit_its_buffer_close_it)
{
	int peer;
	struct client *c = pair_accept(&peer);
	static uint8_t big[IOBUF_SIZE + 1];
	struct wire w = { .len = 0 };

	client_send(c, big, sizeof(big));
	cr_assert_eq(c->state, CLIENT_CLOSED);
	cr_assert_eq(client_count, 0);
	wire_read(peer, &w);
	cr_assert_eq(w.len, 0);
	cr_assert(w.eof);
}

/* ---- fatal and close ---- */

Test(client, fatal_sends_an_error_response_then_closes)
{
	int peer;
	struct client *c = pair_accept(&peer);
	struct wire w = { .len = 0 };

	client_fatal(c, "53300", "no more connections allowed", "seen by a test");
	cr_assert_eq(c->state, CLIENT_CLOSED);
	wire_read(peer, &w);
	struct msg m = wire_expect(&w, 'E');
	assert_error(&m, "FATAL", "53300", "no more connections allowed", "seen by a test");
	cr_assert_null(msg_field(&m, 'H'));
	cr_assert_eq(w.at, w.len, "bytes after the ErrorResponse");
	cr_assert(w.eof, "the connection was not closed after FATAL");
}

Test(client, fatal_in_the_middle_of_a_relayed_message_sends_nothing_more)
{
	int peer;
	struct client *c = pair_accept(&peer);
	struct wire w = { .len = 0 };

	/* Part of a backend message went out: an ErrorResponse now would be read as its rest. */
	client_send(c, (const uint8_t *)"D\0\0\0\x20", 5);
	c->mid_message = true;
	client_fatal(c, "08006", "server connection lost", NULL);
	wire_read(peer, &w);
	assert_bytes(w.data, w.len, "D\0\0\0\x20", 5);
	cr_assert(w.eof);
}

Test(client, close_moves_it_to_the_closed_list_once)
{
	int peer;
	struct client *c = pair_accept(&peer);
	struct wire w = { .len = 0 };

	peer_send(peer, "abc", 3);
	pair_spin();
	cr_assert_not_null(c->in);
	client_close(c, "test: %s", "closing");
	cr_assert_eq(c->state, CLIENT_CLOSED);
	cr_assert_eq(login_clients.count, 0);
	cr_assert_eq(client_count, 0);
	cr_assert_null(c->in, "a closed client keeps its input buffer");
	cr_assert_not(ev_is_active(&c->rio));
	cr_assert_not(ev_is_active(&c->wio));
	wire_read(peer, &w);
	cr_assert(w.eof);
	/* A second close, or a fatal, of a closed client does nothing. */
	client_close(c, "again");
	client_fatal(c, "08P01", "again", NULL);
	cr_assert_eq(client_count, 0);
}

/* ---- the reaper ---- */

Test(client, reap_frees_a_closed_client_and_tells_the_front_end)
{
	int peer1, peer2;
	struct client *c1 = pair_accept(&peer1);
	struct client *c2 = pair_accept(&peer2);

	client_reap();
	cr_assert_eq(seen.released_calls, 0, "a live client was reaped");
	client_close(c1, "test");
	cr_assert_eq(seen.released_calls, 0, "freed inside client_close");
	client_reap();
	cr_assert_eq(seen.released_calls, 1);
	cr_assert_eq(seen.released_client, c1);
	cr_assert_eq(c2->state, CLIENT_LOGIN);
	client_reap();
	cr_assert_eq(seen.released_calls, 1, "reaped twice");
}

Test(client, reap_waits_for_the_worker_jobs_that_point_at_it)
{
	int peer;
	struct client *c = pair_accept(&peer);

	c->jobs_pending = 1;  /* e.g. peer authentication on the worker thread */
	client_close(c, "test");
	client_reap();
	cr_assert_eq(seen.released_calls, 0, "freed while a worker job points at it");
	cr_assert_eq(c->state, CLIENT_CLOSED);
	c->jobs_pending = 0;
	client_reap();
	cr_assert_eq(seen.released_calls, 1);
	cr_assert_eq(seen.released_client, c);
}

/* ---- state is the list it is on ---- */

Test(client, set_state_moves_it_between_lists)
{
	int peer;
	struct pool *p = pair_pool("u");
	struct client *c = pair_accept(&peer);
	const struct {
		enum client_state state;
		const struct list *list;
	} steps[] = {
		{ CLIENT_LOGIN_WAIT, &p->login_wait }, { CLIENT_IDLE, &p->clients }, { CLIENT_WAITING, &p->waiting },
		{ CLIENT_ACTIVE, &p->active },         { CLIENT_IDLE, &p->clients }, { CLIENT_ADMIN, &admin_clients },
	};
	const struct list *all[] = { &login_clients, &admin_clients, &p->login_wait, &p->clients, &p->waiting,
				     &p->active };

	c->pool = p;
	for (size_t i = 0; i < sizeof(steps) / sizeof(*steps); i++) {
		c->state_since = 0;
		client_set_state(c, steps[i].state);
		cr_assert_eq(c->state, steps[i].state);
		cr_assert_eq(c->state_since, ev_now(loop));
		for (size_t l = 0; l < sizeof(all) / sizeof(*all); l++)
			cr_assert_eq(all[l]->count, all[l] == steps[i].list, "step %zu: list %zu has %d clients", i,
				     l, all[l]->count);
		cr_assert_eq(list_first(steps[i].list), &c->node);
	}
	cr_assert_eq(client_count, 1, "moving between lists changed the count");
	client_close(c, "test");
	for (size_t l = 0; l < sizeof(all) / sizeof(*all); l++)
		cr_assert_eq(all[l]->count, 0);
	cr_assert_eq(client_count, 0);
}

Test(client, a_cancel_key_finds_only_a_client_with_something_to_cancel)
{
	int peer;
	struct pool *p = pair_pool("u");
	struct client *c = pair_logged_in(p, &peer, NULL);

	cr_assert_null(client_find_by_key(c->id, c->cancel_key), "an idle client has nothing to cancel");
	client_set_state(c, CLIENT_WAITING);
	cr_assert_eq(client_find_by_key(c->id, c->cancel_key), c);
	cr_assert_null(client_find_by_key(c->id, c->cancel_key ^ 1), "found with a wrong key");
	cr_assert_null(client_find_by_key(c->id + 1, c->cancel_key), "found with a wrong id");
	client_set_state(c, CLIENT_ACTIVE);
	cr_assert_eq(client_find_by_key(c->id, c->cancel_key), c);
	client_set_state(c, CLIENT_IDLE);
}

/* ---- housekeeping ---- */

Test(client, maintain_closes_a_login_older_than_client_login_timeout)
{
	int peer_old, peer_young, peer_in;
	struct client *old = pair_accept(&peer_old);
	struct client *young = pair_accept(&peer_young);
	struct client *in = pair_logged_in(pair_pool("u"), &peer_in, NULL);
	ev_tstamp t0 = ev_now(loop);

	young->state_since = t0 + 10;
	cr_assert_eq(cfg->client_login_timeout, 60);
	client_maintain(t0 + 59.9);
	cr_assert_eq(old->state, CLIENT_LOGIN, "closed before client_login_timeout");
	client_maintain(t0 + 60.1);
	cr_assert_eq(old->state, CLIENT_CLOSED);
	cr_assert_eq(young->state, CLIENT_LOGIN, "a younger login was closed");
	client_maintain(t0 + 1000);
	cr_assert_eq(young->state, CLIENT_CLOSED);
	cr_assert_eq(in->state, CLIENT_IDLE, "a logged-in client was closed by the login timeout");
	cr_assert_eq(client_count, 1);
	struct wire w = { .len = 0 };
	wire_read(peer_old, &w);
	cr_assert(w.eof);
}

Test(client, a_login_timeout_of_zero_never_closes)
{
	int peer;

	pair_start("[pglease]\nauth_type = trust\nclient_login_timeout = 0\n" PAIR_INI_DATABASES);
	struct client *c = pair_accept(&peer);
	client_maintain(ev_now(loop) + 1e9);
	cr_assert_eq(c->state, CLIENT_LOGIN);
}

Test(client, close_all_tells_every_client_why)
{
	int peer_login, peer_idle;
	struct client *login = pair_accept(&peer_login);
	struct client *idle = pair_logged_in(pair_pool("u"), &peer_idle, NULL);
	struct wire w1 = { .len = 0 }, w2 = { .len = 0 };

	client_close_all("terminating connection due to administrator command");
	cr_assert_eq(login->state, CLIENT_CLOSED);
	cr_assert_eq(idle->state, CLIENT_CLOSED);
	cr_assert_eq(client_count, 0);
	wire_read(peer_login, &w1);
	wire_read(peer_idle, &w2);
	struct msg m1 = wire_expect(&w1, 'E'), m2 = wire_expect(&w2, 'E');
	assert_error(&m1, "FATAL", "57P01", "terminating connection due to administrator command", NULL);
	assert_error(&m2, "FATAL", "57P01", "terminating connection due to administrator command", NULL);
	cr_assert(w1.eof && w2.eof);
}
