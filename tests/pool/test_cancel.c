/*
 * test_cancel.c — Criterion tests for cancel.c: a CancelRequest reaches the
 * backend (through the worker, off the loop) with the backend's own pid and
 * key; the backend is marked while it is in flight; and the client that
 * asked is closed only once the cancel has gone out, as PostgreSQL does.
 * The backend is the scripted one of fake_backend.h.
 */
#include <criterion/criterion.h>
#include <ev.h>
#include <unistd.h>
#include <sys/socket.h>

#include "env.h"
#include "cancel.h"
#include "client.h"
#include "config.h"
#include "server.h"
#include "worker.h"

#include "fake_backend.h"

static void setup(void)
{
	fake_setup();
	cr_assert_eq(worker_start(loop), 0);
}

static void teardown(void)
{
	worker_stop();
	client_reap();
	fake_teardown();
}

TestSuite(cancel, .init = setup, .fini = teardown, .timeout = 10);

static struct server *srv;

/* A cancel goes to a backend under a lease or at the exit door: here the exit door's, holderless lease. */
static void cleaning(struct server *s)
{
	server_set_state(s, SERVER_CLEANING);
	s->lease_slot = (struct lease){ .server = s };
	s->lease = &s->lease_slot;
}

static bool delivered(void) { return srv->cancels_pending == 0; }
static bool backend_got_it(void) { return fake.cancels == 1 && srv->cancels_pending == 0; }

Test(cancel, the_backend_gets_its_pid_and_key)
{
	srv = connected();
	cleaning(srv);
	cancel_submit(srv);
	cr_assert_eq(srv->cancels_pending, 1, "in flight until the worker is done");
	cr_assert(run_until(backend_got_it));
	cr_assert_eq(fake.cancel_pid, 4242);
	cr_assert_eq(fake.cancel_key, 99);
	cr_assert_eq(srv->state, SERVER_CLEANING, "a cancel does not close the backend");
}

/* A client as the listener accepts one; the test keeps the other end. */
static struct client *accepted(int *peer)
{
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	client_accept(sv[0], false, NULL, 0);
	*peer = sv[1];
	return list_entry(list_last(&login_clients), struct client, node);
}

Test(cancel, the_requester_is_closed_once_the_cancel_went_out)
{
	int peer;
	char byte;

	srv = connected();
	cleaning(srv);
	struct client *c = accepted(&peer);
	cancel_submit_for(srv, c);
	cr_assert_eq(c->jobs_pending, 1, "the worker job points at it: not freed before done");
	cr_assert_eq(c->state, CLIENT_LOGIN, "not closed before the cancel is delivered");
	cr_assert(run_until(backend_got_it));
	cr_assert_eq(c->state, CLIENT_CLOSED);
	cr_assert_eq(c->jobs_pending, 0);
	cr_assert_eq(read(peer, &byte, 1), 0, "its connection is closed, nothing sent");
	close(peer);
}

Test(cancel, a_backend_without_a_connection_cannot_be_cancelled)
{
	struct server s = { .id = 9, .pool = pool, .state = SERVER_CLEANING };

	s.lease_slot = (struct lease){ .server = &s };
	s.lease = &s.lease_slot;
	int peer;
	char byte;

	struct client *c = accepted(&peer);
	cancel_submit_for(&s, c);
	cr_assert_eq(s.cancels_pending, 0);
	cr_assert_eq(c->state, CLIENT_CLOSED, "the requester is not kept waiting for nothing");
	cr_assert_eq(c->jobs_pending, 0);
	cr_assert_eq(read(peer, &byte, 1), 0);
	close(peer);
}

Test(cancel, a_cancel_that_cannot_be_delivered_still_ends)
{
	int peer;

	srv = connected();
	cleaning(srv);
	ev_io_stop(loop, &fake.accept_w);
	close(fake.listen_fd);
	unlink(fake.path);                 /* nobody listens for the cancel's connection */
	struct client *c = accepted(&peer);
	cancel_submit_for(srv, c);
	cr_assert(run_until(delivered));
	cr_assert_eq(fake.cancels, 0);
	cr_assert_eq(c->state, CLIENT_CLOSED);
	close(peer);
	fake.listen_fd = socket(AF_UNIX, SOCK_STREAM, 0);   /* for fake_teardown() to close */
}
