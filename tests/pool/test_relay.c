/*
 * test_relay.c — Criterion tests for what pool/relay.c does without a
 * backend: an idle client's input dispatched (Terminate ends it, anything
 * else asks for a lease), a waiting client's input kept, and CancelRequests
 * for clients that wait for a backend.
 *
 * The pool is paused with no PostgreSQL behind it (tests/lib/client_pair.h),
 * so a client that asks for a lease stays WAITING with its input queued.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "../lib/client_pair.h"
#include "client.h"
#include "iobuf.h"
#include "pool.h"

static void setup(void)
{
	pair_start(PAIR_INI);
}

TestSuite(relay, .init = setup, .timeout = 10);

/* A logged-in client that sent these bytes and waits for a backend with them. */
static struct client *waiting_with(struct pool *p, int *peer, const struct bytes *sent)
{
	struct client *c = pair_logged_in(p, peer, NULL);

	peer_send(*peer, sent->data, sent->len);
	pair_spin();
	cr_assert_eq(c->state, CLIENT_WAITING, "the client did not ask for a lease (state %d)", c->state);
	cr_assert_not_null(c->in);
	cr_assert_eq(c->in->end - c->in->start, sent->len, "the client's input was not kept whole");
	return c;
}

static void assert_input(const struct client *c, const struct bytes *want)
{
	cr_assert_not_null(c->in, "the client's later input is gone");
	assert_bytes(c->in->data + c->in->start, c->in->end - c->in->start, want->data, want->len);
	cr_assert_eq(c->in->scanned, c->in->start, "bytes of a waiting client were framed");
}

/* What a cancelled statement ends with on PostgreSQL, and nothing else (once everything is read). */
static void assert_cancelled(struct wire *w, bool last)
{
	struct msg e = wire_expect(w, 'E');
	assert_error(&e, "ERROR", "57014", "canceling statement due to user request", NULL);
	struct msg z = wire_expect(w, 'Z');
	cr_assert_eq(z.len, 5);
	cr_assert_eq(z.body[0], 'I');
	if (last)
		cr_assert_eq(w->at, w->len, "more than ErrorResponse and ReadyForQuery");
	cr_assert_not(w->eof, "the cancelled client was closed");
}

/* The requester's connection: nothing said, closed. */
static void assert_requester_closed(struct client *r, int peer)
{
	struct wire w = { .len = 0 };

	cr_assert_eq(r->state, CLIENT_CLOSED);
	wire_read(peer, &w);
	cr_assert_eq(w.len, 0, "a CancelRequest got an answer");
	cr_assert(w.eof);
}

/* ---- CancelRequest for a client waiting for a backend ---- */

Test(relay, a_cancel_ends_the_first_queued_query_and_keeps_the_rest)
{
	int peer, rpeer;
	struct pool *p = pair_pool("u");
	struct bytes sent = { .len = 0 }, later = { .len = 0 };
	static struct wire w;

	put_query(&sent, "SELECT pg_sleep(10)");
	put_query(&later, "SELECT 2");
	put(&sent, later.data, later.len);
	struct client *c = waiting_with(p, &peer, &sent);
	struct client *r = pair_accept(&rpeer);

	client_cancel_request(r, c->id, c->cancel_key);
	wire_read(peer, &w);
	assert_cancelled(&w, true);
	cr_assert_eq(c->state, CLIENT_WAITING, "the client lost its place in the queue");
	cr_assert_eq(p->waiting.count, 1);
	assert_input(c, &later);
	assert_requester_closed(r, rpeer);
	cr_assert_eq(client_count, 1);
}

Test(relay, a_cancel_ends_extended_messages_through_their_sync)
{
	int peer, rpeer;
	struct pool *p = pair_pool("u");
	struct bytes sent = { .len = 0 }, later = { .len = 0 };
	static struct wire w;

	put_msg(&sent, 'P', "\0SELECT pg_sleep(10)\0\0\0", 23);
	put_msg(&sent, 'B', "\0\0\0\0\0\0\0\0", 8);
	put_msg(&sent, 'D', "P", 2);
	put_msg(&sent, 'E', "\0\0\0\0", 5);
	put_msg(&sent, 'S', NULL, 0);
	put_query(&later, "SELECT 2");
	put(&sent, later.data, later.len);
	struct client *c = waiting_with(p, &peer, &sent);
	struct client *r = pair_accept(&rpeer);

	client_cancel_request(r, c->id, c->cancel_key);
	wire_read(peer, &w);
	assert_cancelled(&w, true);
	assert_input(c, &later);
	cr_assert_eq(c->state, CLIENT_WAITING);
	assert_requester_closed(r, rpeer);
}

Test(relay, a_cancel_of_the_only_request_leaves_the_client_idle)
{
	int peer, rpeer;
	struct pool *p = pair_pool("u");
	struct bytes sent = { .len = 0 };
	static struct wire w;

	put_query(&sent, "SELECT pg_sleep(10)");
	struct client *c = waiting_with(p, &peer, &sent);
	struct client *r = pair_accept(&rpeer);

	client_cancel_request(r, c->id, c->cancel_key);
	wire_read(peer, &w);
	assert_cancelled(&w, true);
	cr_assert_eq(c->state, CLIENT_IDLE);
	cr_assert_eq(p->waiting.count, 0);
	cr_assert_null(c->in, "an idle client keeps an empty buffer");
	cr_assert(ev_is_active(&c->rio), "the client is no longer read");
	/* It goes on: its next Query asks for a lease again. */
	struct bytes next = { .len = 0 };
	put_query(&next, "SELECT 3");
	peer_send(peer, next.data, next.len);
	pair_spin();
	cr_assert_eq(c->state, CLIENT_WAITING);
	assert_input(c, &next);
	assert_requester_closed(r, rpeer);
}

Test(relay, one_cancel_per_request)
{
	int peer, rpeer1, rpeer2;
	struct pool *p = pair_pool("u");
	struct bytes sent = { .len = 0 };
	static struct wire w;

	put_query(&sent, "SELECT 1");
	put_query(&sent, "SELECT 2");
	struct client *c = waiting_with(p, &peer, &sent);

	client_cancel_request(pair_accept(&rpeer1), c->id, c->cancel_key);
	client_cancel_request(pair_accept(&rpeer2), c->id, c->cancel_key);
	wire_read(peer, &w);
	assert_cancelled(&w, false);
	assert_cancelled(&w, true);
	cr_assert_eq(c->state, CLIENT_IDLE);
	cr_assert_null(c->in);
}

Test(relay, a_request_not_whole_yet_is_not_cancelled)
{
	int peer, rpeer;
	struct pool *p = pair_pool("u");
	struct bytes query = { .len = 0 }, sent = { .len = 0 };
	struct wire w = { .len = 0 };

	put_query(&query, "SELECT pg_sleep(10)");
	put(&sent, query.data, query.len - 3);
	struct client *c = waiting_with(p, &peer, &sent);
	struct client *r = pair_accept(&rpeer);

	client_cancel_request(r, c->id, c->cancel_key);
	wire_read(peer, &w);
	cr_assert_eq(w.len, 0, "an answer for a request that did not all arrive");
	cr_assert_eq(c->state, CLIENT_WAITING);
	assert_input(c, &sent);
	assert_requester_closed(r, rpeer);
}

Test(relay, an_unknown_key_closes_only_the_requester)
{
	int peer, rpeer1, rpeer2;
	struct pool *p = pair_pool("u");
	struct bytes sent = { .len = 0 };
	struct wire w = { .len = 0 };

	put_query(&sent, "SELECT pg_sleep(10)");
	struct client *c = waiting_with(p, &peer, &sent);
	struct client *r1 = pair_accept(&rpeer1);
	struct client *r2 = pair_accept(&rpeer2);

	client_cancel_request(r1, c->id, c->cancel_key + 1);
	client_cancel_request(r2, c->id + 1000, c->cancel_key);
	assert_requester_closed(r1, rpeer1);
	assert_requester_closed(r2, rpeer2);
	wire_read(peer, &w);
	cr_assert_eq(w.len, 0, "a cancel with a wrong key reached the client");
	cr_assert_eq(c->state, CLIENT_WAITING);
	assert_input(c, &sent);
	cr_assert_eq(client_count, 1);
}

Test(relay, a_cancel_for_an_idle_client_is_dropped)
{
	int peer, rpeer;
	struct pool *p = pair_pool("u");
	struct client *c = pair_logged_in(p, &peer, NULL);
	struct client *r = pair_accept(&rpeer);
	struct wire w = { .len = 0 };

	client_cancel_request(r, c->id, c->cancel_key);
	assert_requester_closed(r, rpeer);
	wire_read(peer, &w);
	cr_assert_eq(w.len, 0);
	cr_assert_eq(c->state, CLIENT_IDLE);
}

/* ---- dispatch ---- */

Test(relay, terminate_closes_an_idle_client)
{
	int peer;
	struct pool *p = pair_pool("u");
	struct client *c = pair_logged_in(p, &peer, NULL);
	struct wire w = { .len = 0 };

	cr_assert_eq(client_count, 1);
	peer_send(peer, "X\0\0\0\x04", 5);
	wire_read(peer, &w);
	cr_assert_eq(c->state, CLIENT_CLOSED);
	cr_assert_eq(p->clients.count, 0);
	cr_assert_eq(client_count, 0);
	cr_assert_eq(p->waiting.count, 0, "Terminate asked for a lease");
	cr_assert_eq(w.len, 0);
	cr_assert(w.eof);
}

Test(relay, dispatch_of_nothing_returns_the_buffer)
{
	int peer;
	struct pool *p = pair_pool("u");
	struct client *c = pair_logged_in(p, &peer, NULL);

	client_read_into(c, &c->in);  /* nothing to read: an empty buffer */
	cr_assert_not_null(c->in);
	client_dispatch(c);
	cr_assert_null(c->in);
	cr_assert_eq(c->state, CLIENT_IDLE);
}

Test(relay, a_waiting_client_that_hangs_up_leaves_the_queue)
{
	int peer;
	struct pool *p = pair_pool("u");
	struct bytes sent = { .len = 0 };

	put_query(&sent, "SELECT 1");
	struct client *c = waiting_with(p, &peer, &sent);
	close(peer);
	pair_spin();
	cr_assert_eq(c->state, CLIENT_CLOSED);
	cr_assert_eq(p->waiting.count, 0);
	cr_assert_eq(client_count, 0);
}

Test(relay, a_waiting_client_is_not_read_past_a_full_buffer)
{
	int peer;
	struct pool *p = pair_pool("u");
	struct bytes first = { .len = 0 };
	static uint8_t more[IOBUF_SIZE + 4096];
	size_t n = 0;

	put_query(&first, "SELECT 1");
	struct client *c = waiting_with(p, &peer, &first);
	/* Many small Queries, more than a buffer holds. */
	while (n + 14 <= sizeof(more)) {
		memcpy(more + n, "Q\0\0\0\x0dSELECT 1\0", 14);
		n += 14;
	}
	cr_assert_eq(send(peer, more, n, MSG_NOSIGNAL), (ssize_t)n);
	pair_spin();
	cr_assert_eq(c->in->end, IOBUF_SIZE, "the buffer did not fill");
	cr_assert_not(ev_is_active(&c->rio), "a full buffer is still read");
	cr_assert_eq(c->state, CLIENT_WAITING);
	/* A cancel makes room: reading goes on. */
	int rpeer;
	client_cancel_request(pair_accept(&rpeer), c->id, c->cancel_key);
	cr_assert(ev_is_active(&c->rio), "not read again after a cancel made room");
}
