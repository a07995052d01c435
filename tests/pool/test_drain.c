/*
 * test_drain.c — Criterion tests for drain.c: which clients of a closing
 * pool leave now and with what FATAL (read from the other end of their
 * socket, byte for byte), which wait for their last reply to go out, and
 * the sweep that closes them then. Clients are real ones (client_accept()
 * on a socketpair) put in a pool's state lists; no backend is involved.
 */
#include <criterion/criterion.h>
#include <ev.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "env.h"
#include "client.h"
#include "config.h"
#include "drain.h"
#include "log.h"
#include "pool.h"
#include "proto.h"

static struct config conf;
static struct db_config dbc;
static struct pool *pool;

static void setup(void)
{
	log_set_level(LOG_ERROR);
	loop = ev_default_loop(0);
	conf = (struct config){ .pool_mode = POOL_MODE_TRANSACTION, .default_pool_size = 4, .max_client_conn = 10 };
	cfg = &conf;
	dbc = (struct db_config){ .name = "app", .conninfo = "host=/tmp", .pool_size = -1, .pool_mode = -1 };
	pool = pool_find_or_create(&dbc, "app", "u");
	cr_assert_not_null(pool);
}

static void teardown(void)
{
	/* A pool is freed only without clients (pool_free() asserts it). */
	client_close_all("test over");
	client_reap();
	pool_free_all();
}

TestSuite(drain, .init = setup, .fini = teardown);

struct peer {
	struct client *c;
	int fd;                        /* the client program's end */
};

/* A client in the given state: accepted, then moved as login would move it. */
static struct peer client_in(enum client_state state)
{
	int sv[2];
	struct peer p;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
	client_accept(sv[0], false, NULL, 0);
	p.c = list_entry(list_last(&login_clients), struct client, node);
	p.fd = sv[1];
	if (state != CLIENT_LOGIN) {
		p.c->pool = pool;
		p.c->welcomed = state != CLIENT_LOGIN_WAIT;
		client_set_state(p.c, state);
	}
	return p;
}

/* What the client program reads: the bytes before EOF; "(open)" while the socket is still open. */
static const char *received(const struct peer *p, size_t *len)
{
	static char buf[512];
	ssize_t n = read(p->fd, buf, sizeof(buf));

	*len = n > 0 ? (size_t)n : 0;
	if (n < 0)
		return "(open)";
	if (n > 0) {
		char more;
		cr_assert_eq(read(p->fd, &more, 1), 0, "EOF after the message");
	}
	return buf;
}

static void assert_fatal(const struct peer *p, const char *message)
{
	uint8_t want[512];
	struct wbuf w;
	size_t len;

	wbuf_init(&w, want, sizeof(want));
	proto_error(&w, "FATAL", "57P01", message, NULL, NULL);
	const char *got = received(p, &len);
	cr_assert_eq(len, w.len, "<%s>", got);
	cr_assert_arr_eq(got, want, w.len);
	cr_assert_eq(p->c->state, CLIENT_CLOSED);
}

#define REMOVED "terminating connection: database \"app\" was removed from the pglease configuration"
#define SHUTTING_DOWN "terminating connection: pglease is shutting down"

Test(drain, a_removed_database_ends_waiting_queued_and_idle_clients_now)
{
	struct peer waiting = client_in(CLIENT_WAITING), login = client_in(CLIENT_LOGIN_WAIT),
		    idle = client_in(CLIENT_IDLE);

	drain_pool(pool, POOL_CLOSE_AT_TX_END, "removed");
	cr_assert_eq(pool->closing, POOL_CLOSE_AT_TX_END);
	assert_fatal(&waiting, REMOVED);
	assert_fatal(&login, REMOVED);
	assert_fatal(&idle, REMOVED);
	cr_assert_eq(client_count, 0);
}

Test(drain, shutdown_says_so)
{
	struct peer idle = client_in(CLIENT_IDLE);

	drain_pool(pool, POOL_CLOSE_AT_LEASE_END, "shutdown");
	assert_fatal(&idle, SHUTTING_DOWN);
}

Test(drain, an_idle_client_with_a_reply_still_to_send_waits_for_the_sweep)
{
	struct peer idle = client_in(CLIENT_IDLE);
	size_t len;

	idle.c->out = iobuf_get();
	memcpy(idle.c->out->data, "Z\0\0\0\x05I", 6);
	idle.c->out->scanned = idle.c->out->end = 6;
	drain_pool(pool, POOL_CLOSE_AT_TX_END, "removed");
	cr_assert_eq(idle.c->state, CLIENT_IDLE, "not cut short");
	cr_assert(drain_client(idle.c), "the drain's to close");
	cr_assert_str_eq(received(&idle, &len), "(open)");
	/* The reply went out. */
	idle.c->out->start = idle.c->out->end;
	drain_sweep();
	assert_fatal(&idle, REMOVED);
}

Test(drain, a_client_that_already_said_goodbye_is_closed_without_fatal)
{
	struct peer idle = client_in(CLIENT_IDLE);
	size_t len;

	idle.c->in = iobuf_get();
	memcpy(idle.c->in->data, "X\0\0\0\x04", 5);
	idle.c->in->end = 5;
	drain_pool(pool, POOL_CLOSE_AT_TX_END, "removed");
	cr_assert_eq(idle.c->state, CLIENT_CLOSED);
	received(&idle, &len);
	cr_assert_eq(len, 0, "EOF, no message");
}

Test(drain, clients_of_an_open_pool_and_clients_not_idle_are_not_the_drains)
{
	struct peer idle = client_in(CLIENT_IDLE), waiting = client_in(CLIENT_WAITING);
	size_t len;

	cr_assert_not(drain_client(idle.c), "the pool is open");
	drain_sweep();
	cr_assert_str_eq(received(&idle, &len), "(open)");
	pool->closing = POOL_CLOSE_AT_TX_END;
	cr_assert_not(drain_client(waiting.c), "only idle clients, between leases");
	pool->closing = POOL_OPEN;
}

Test(drain, logins_under_way_are_ended_with_the_given_message)
{
	struct peer login = client_in(CLIENT_LOGIN);

	drain_logins(SHUTTING_DOWN);
	assert_fatal(&login, SHUTTING_DOWN);
}

Test(drain, the_sweep_ends_clients_that_queued_after_the_pool_closed)
{
	pool->closing = POOL_CLOSE_AT_TX_END;
	struct peer late = client_in(CLIENT_WAITING);   /* a lease lost in its setup puts its client back */

	drain_sweep();
	assert_fatal(&late, REMOVED);
}
