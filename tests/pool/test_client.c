/*
 * test_client.c — Criterion tests for a client's life cycle (pool/client.c;
 * today in daemon/client.c): accepted into login, the list that is its
 * state, FATAL then close, freed only by the reaper and not while a worker
 * job points at it, found by its cancel key only while it has something to
 * cancel, every client closed at shutdown, and the console's raw writes.
 */
#include <criterion/criterion.h>

#include "env.h"
#include "client.h"
#include "config.h"

#include "../lib/wire_client.h"

TestSuite(client, .init = wire_setup, .fini = wire_teardown, .timeout = 10);

Test(client, accepted_clients_start_logging_in_with_their_own_key)
{
	struct wire *a = wire_connect(), *b = wire_connect();

	cr_assert_eq(a->c->state, CLIENT_LOGIN);
	cr_assert_eq(login_clients.count, 2);
	cr_assert_eq(client_count, 2);
	cr_assert_gt(b->c->id, a->c->id);
	cr_assert_neq(a->c->cancel_key, b->c->cancel_key, "keys are random (a 1 in 2^32 chance to fail)");
	cr_assert_null(a->c->in, "no buffer before bytes arrive");
}

Test(client, the_state_is_the_list_it_is_on)
{
	struct wire *w = wire_connect();

	w->c->pool = pool;
	client_set_state(w->c, CLIENT_WAITING);
	cr_assert_eq(login_clients.count, 0);
	cr_assert_eq(pool->waiting.count, 1);
	cr_assert_float_eq(w->c->state_since, ev_now(loop), 1e-9);
	client_set_state(w->c, CLIENT_IDLE);
	cr_assert_eq(pool->waiting.count, 0);
	cr_assert_eq(pool->clients.count, 1);
	cr_assert_eq(list_entry(list_first(&pool->clients), struct client, node), w->c);
}

Test(client, fatal_sends_the_error_then_closes)
{
	struct wire *w = wire_connect();

	client_fatal(w->c, "53300", "too many", "a detail");
	struct msg m = next_msg(w);
	cr_assert_eq(m.type, 'E');
	cr_assert_str_eq(field(&m, 'S'), "FATAL");
	cr_assert_str_eq(field(&m, 'V'), "FATAL");
	cr_assert_str_eq(field(&m, 'C'), "53300");
	cr_assert_str_eq(field(&m, 'M'), "too many");
	cr_assert_str_eq(field(&m, 'D'), "a detail");
	cr_assert(closed_quietly(w));
	cr_assert_eq(w->c->state, CLIENT_CLOSED);
	cr_assert_eq(client_count, 0);
	client_fatal(w->c, "08P01", "again", NULL);
	client_close(w->c, "and again");
	cr_assert_eq(client_count, 0, "closing twice counts once");
}

Test(client, a_client_a_worker_job_points_at_is_not_freed)
{
	struct wire *w = wire_connect();

	w->c->jobs_pending = 1;
	client_close(w->c, "test");
	client_reap();
	cr_assert_eq(w->c->state, CLIENT_CLOSED, "still readable: not freed");
	w->c->jobs_pending = 0;
	client_reap();
	w->c = NULL;
}

Test(client, found_by_its_cancel_key_only_with_a_request_to_cancel)
{
	struct wire *w = wire_connect();
	struct client *c = w->c;

	c->pool = pool;
	client_set_state(c, CLIENT_IDLE);
	cr_assert_null(client_find_by_key(c->id, c->cancel_key), "an idle client has nothing to cancel");
	client_set_state(c, CLIENT_WAITING);
	cr_assert_eq(client_find_by_key(c->id, c->cancel_key), c);
	cr_assert_null(client_find_by_key(c->id, c->cancel_key ^ 1), "the key must match");
	cr_assert_null(client_find_by_key(c->id + 1, c->cancel_key));
	client_set_state(c, CLIENT_ACTIVE);
	cr_assert_eq(client_find_by_key(c->id, c->cancel_key), c);
}

Test(client, close_all_ends_every_client_with_the_reason)
{
	struct wire *login = wire_connect(), *idle = wire_connect();

	idle->c->pool = pool;
	client_set_state(idle->c, CLIENT_IDLE);
	client_close_all("terminating connection due to administrator command");
	struct wire *all[] = { login, idle };
	for (int i = 0; i < 2; i++) {
		struct msg m = next_msg(all[i]);
		cr_assert_eq(m.type, 'E');
		cr_assert_str_eq(field(&m, 'C'), "57P01");
		cr_assert_str_eq(field(&m, 'M'), "terminating connection due to administrator command");
		cr_assert(closed_quietly(all[i]));
	}
	cr_assert_eq(client_count, 0);
}

Test(client, raw_writes_take_what_fits_and_send_it)
{
	struct wire *w = wire_connect();
	static uint8_t big[IOBUF_SIZE + 100];

	memset(big, 'x', sizeof(big));
	cr_assert_eq(client_write(w->c, "hello", 5), 5);
	wire_wait(w, 1);
	cr_assert_eq(w->len, 5);
	cr_assert_arr_eq(w->in, "hello", 5);
	long n = client_write(w->c, big, sizeof(big));
	cr_assert_leq(n, IOBUF_SIZE, "at most a buffer at a time");
	cr_assert_gt(n, 0);
}

Test(client, a_raw_write_to_a_client_that_went_away_closes_it)
{
	struct wire *w = wire_connect();

	close(w->fd);
	long a = client_write(w->c, "x", 1);
	cr_assert_eq(a, -1);
	cr_assert_eq(w->c->state, CLIENT_CLOSED);
}

Test(client, a_raw_read_sees_bytes_and_the_end)
{
	struct wire *w = wire_connect();

	client_want_read(w->c, false);        /* the test reads in place of the loop */
	wire_send(w, "abc", 3);
	cr_assert_eq(client_read(w->c), 1);
	cr_assert_eq(w->c->in->end - w->c->in->start, 3);
	cr_assert_arr_eq(w->c->in->data + w->c->in->start, "abc", 3);
	close(w->fd);
	cr_assert_eq(client_read(w->c), 0, "the client closed its end");
}
