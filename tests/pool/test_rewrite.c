/*
 * test_rewrite.c — Criterion tests for pool/rewrite.c, the relay's
 * prepared-statement layer, driven as the relay drives it (prep_client_step,
 * then frame_scan with prep_client_msg) with no backend: what it sends goes
 * through a socketpair and is read back, and the backend's replies are
 * scanned with prep_scan_from_server() to see what reaches the client.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "env.h"
#include "client.h"
#include "config.h"
#include "log.h"
#include "pool.h"
#include "prepared.h"
#include "proto.h"
#include "rewrite.h"
#include "server.h"

/* ---- SQL the layer reacts to ---- */

Test(rewrite_sql, discard_and_deallocate_all)
{
	const char *yes[] = { "DISCARD ALL", "  discard all;", "deallocate all", "DEALLOCATE PREPARE ALL",
			      "\n\tDeallocate\nAll ; select 1" };
	const char *no[] = { "discard plans", "discard", "deallocate s1", "deallocate prepare alls",
			     "select 'discard all'", "deallocateall", "" };

	for (size_t i = 0; i < sizeof(yes) / sizeof(*yes); i++)
		cr_assert(prep_sql_forgets_all(yes[i], strlen(yes[i]) + 1), "%s", yes[i]);
	for (size_t i = 0; i < sizeof(no) / sizeof(*no); i++)
		cr_assert_not(prep_sql_forgets_all(no[i], strlen(no[i]) + 1), "%s", no[i]);
}

Test(rewrite_sql, deallocate_name)
{
	char name[64];

	cr_assert(prep_sql_deallocate_name("DEALLOCATE _pg3_0", 18, name, sizeof(name)));
	cr_assert_str_eq(name, "_pg3_0");
	cr_assert(prep_sql_deallocate_name("deallocate prepare Mixed ;", 27, name, sizeof(name)));
	cr_assert_str_eq(name, "mixed");
	cr_assert(prep_sql_deallocate_name("deallocate \"Mixed Case\"", 24, name, sizeof(name)));
	cr_assert_str_eq(name, "Mixed Case");
	cr_assert_not(prep_sql_deallocate_name("deallocate all", 15, name, sizeof(name)));
	cr_assert_not(prep_sql_deallocate_name("deallocate a; select 1", 23, name, sizeof(name)));
	cr_assert_not(prep_sql_deallocate_name("deallocate \"open", 17, name, sizeof(name)));
	cr_assert_not(prep_sql_deallocate_name("deallocate", 11, name, sizeof(name)));
}

/* ---- a client leasing a backend ---- */

static struct config conf;
static struct pool pool;

struct backend {
	struct server s;
	int peer;                 /* the backend's end of the socket */
};

static struct backend b1, b2;
static struct client cl;

static void backend_init(struct backend *b, int id)
{
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	b->s = (struct server){ .pool = &pool, .id = id, .fd = sv[0], .state = SERVER_IDLE };
	b->peer = sv[1];
	stream_reset(&b->s.stream);
	list_node_init(&b->s.node);
	list_push_tail(&pool.idle, &b->s.node);
}

/* The lease: as lease.c hands a backend to a client. */
static void lease(struct backend *b)
{
	list_remove(&pool.idle, &b->s.node);
	list_push_tail(&pool.leased, &b->s.node);
	b->s.state = SERVER_LEASED;
	cl.state = CLIENT_ACTIVE;
	b->s.lease_slot = (struct lease){ .client = &cl, .server = &b->s };
	b->s.lease = cl.lease = &b->s.lease_slot;
}

static void lease_end(struct backend *b)
{
	prep_lease_end(&cl, &b->s);
	list_remove(&pool.leased, &b->s.node);
	list_push_tail(&pool.idle, &b->s.node);
	b->s.state = SERVER_IDLE;
	cl.state = CLIENT_IDLE;
	b->s.lease = cl.lease = NULL;
	b->s.lease_slot.client = NULL;
}

static void setup(void)
{
	log_set_level(LOG_ERROR);
	conf = (struct config){ .max_prepared_statements = 200, .session_state = SESSION_STATE_PIN };
	cfg = &conf;
	pool = (struct pool){ .dbname = "app", .user = "u", .mode = POOL_MODE_TRANSACTION };
	list_init(&pool.idle);
	list_init(&pool.leased);
	list_init(&pool.cleaning);
	list_init(&pool.authq);
	cl = (struct client){ .pool = &pool, .id = 1, .prep_on = true };
	backend_init(&b1, 1);
	backend_init(&b2, 2);
}

static void teardown(void)
{
	prep_client_free(cl.prep);
	iobuf_put(cl.in);
	prep_server_free(&b1.s);
	prep_server_free(&b2.s);
	close(b1.s.fd);
	close(b1.peer);
	close(b2.s.fd);
	close(b2.peer);
}

TestSuite(rewrite, .init = setup, .fini = teardown);

/* ---- building messages ---- */

struct bytes {
	uint8_t data[1024];
	struct wbuf w;
};

/* A test uses a few dozen at most: each is fresh from a ring never reused within one test. */
static struct bytes *bytes_new(void)
{
	static struct bytes ring[128];
	static int next;
	struct bytes *b = &ring[next++];

	cr_assert_lt(next, 128);

	wbuf_init(&b->w, b->data, sizeof(b->data));
	return b;
}

/* Parse name, query, no parameter types. */
static void parse(struct wbuf *w, const char *name, const char *sql)
{
	size_t m = wbuf_begin(w, 'P');
	wbuf_cstr(w, name);
	wbuf_cstr(w, sql);
	wbuf_byte(w, 0);
	wbuf_byte(w, 0);
	wbuf_end(w, m);
}

/* Bind portal to statement, no parameters, text results. */
static void bind_msg(struct wbuf *w, const char *portal, const char *name)
{
	size_t m = wbuf_begin(w, 'B');
	wbuf_cstr(w, portal);
	wbuf_cstr(w, name);
	wbuf_int32(w, 0);          /* no parameter formats, no parameters */
	wbuf_byte(w, 0);
	wbuf_byte(w, 0);           /* no result formats */
	wbuf_end(w, m);
}

static void execute(struct wbuf *w)
{
	size_t m = wbuf_begin(w, 'E');
	wbuf_cstr(w, "");
	wbuf_int32(w, 0);
	wbuf_end(w, m);
}

static void close_stmt(struct wbuf *w, const char *name)
{
	size_t m = wbuf_begin(w, 'C');
	wbuf_byte(w, 'S');
	wbuf_cstr(w, name);
	wbuf_end(w, m);
}

static void describe_stmt(struct wbuf *w, const char *name)
{
	size_t m = wbuf_begin(w, 'D');
	wbuf_byte(w, 'S');
	wbuf_cstr(w, name);
	wbuf_end(w, m);
}

static void query(struct wbuf *w, const char *sql)
{
	size_t m = wbuf_begin(w, 'Q');
	wbuf_cstr(w, sql);
	wbuf_end(w, m);
}

static void reply(struct wbuf *w, char type)
{
	wbuf_end(w, wbuf_begin(w, type));
}

/* ---- the relay's two directions ---- */

static enum frame_verdict on_client_msg(void *arg, const struct frame_msg *m)
{
	return prep_client_msg(arg, m);
}

/* The client sends w; returns what reaches the backend. */
static struct bytes *client_sends(const struct wbuf *w)
{
	struct server *s = client_server(&cl);
	struct bytes *wire = bytes_new();

	cr_assert_not(w->overflow);
	if (!cl.in)
		cl.in = iobuf_get();
	memcpy(cl.in->data + cl.in->end, w->data, w->len);
	cl.in->end += (uint32_t)w->len;
	for (;;) {
		enum prep_step step = prep_client_step(&cl, s);
		cr_assert_eq(step, PREP_AGAIN, "step %d", step);
		ssize_t n = frame_scan(&s->stream.to_server, cl.in->data + cl.in->scanned, cl.in->end - cl.in->scanned,
				       PREP_CLIENT_WHOLE, on_client_msg, &cl);
		cr_assert_geq(n, 0);
		cl.in->scanned += (uint32_t)n;
		if (!prep_stopped(&cl.lease->prep))
			break;
	}
	/* send_to_server(): rewritten bytes first (with the client's framed ones behind them), else raw. */
	if (prep_tx_pending(&cl.lease->prep)) {
		cr_assert_eq(prep_tx_send(&cl, s), 0);
		cr_assert_not(prep_tx_pending(&cl.lease->prep));
	} else if (iobuf_unsent(cl.in)) {
		cr_assert_eq(write(s->fd, cl.in->data + cl.in->start, iobuf_unsent(cl.in)), iobuf_unsent(cl.in));
		cl.in->start = cl.in->scanned;
	}
	cr_assert(iobuf_is_empty(cl.in) || cl.in->start == cl.in->end, "all sent");
	ssize_t got = recv(((struct backend *)s)->peer, wire->data, sizeof(wire->data), MSG_DONTWAIT);
	wire->w.len = got > 0 ? (size_t)got : 0;
	return wire;
}

/* The backend sends w; returns what reaches the client. */
static struct bytes *backend_sends(const struct wbuf *w)
{
	struct iobuf *out = iobuf_get();
	struct bytes *seen = bytes_new();

	memcpy(out->data, w->data, w->len);
	out->end = (uint32_t)w->len;
	cl.out = out;                       /* the relay scans the client's own out buffer */
	ssize_t n = prep_scan_from_server(&cl, client_server(&cl), out);
	cl.out = NULL;
	cr_assert_geq(n, 0);
	cr_assert_eq((uint32_t)n, out->end, "the whole reply was scanned");
	memcpy(seen->data, out->data, out->end);
	seen->w.len = out->end;
	iobuf_put(out);
	return seen;
}

static void assert_same(const struct bytes *got, const struct bytes *want)
{
	cr_assert_eq(got->w.len, want->w.len, "%zu bytes, want %zu", got->w.len, want->w.len);
	cr_assert_arr_eq(got->data, want->data, want->w.len);
}

/* The server-side name the client's name maps to. */
static const char *server_name(const char *client_name)
{
	struct pstmt *st = cl.prep ? preg_find(&cl.prep->reg, client_name) : NULL;

	cr_assert_not_null(st, "%s is not registered", client_name);
	return st->name;
}

/* Parse s1 + Sync on the leased backend, with its replies: the statement is then ready there. */
static void prepare_s1(void)
{
	struct bytes *c = bytes_new(), *r = bytes_new();

	parse(&c->w, "s1", "select 1");
	proto_sync(&c->w);
	client_sends(&c->w);
	reply(&r->w, '3');
	reply(&r->w, '1');
	proto_ready(&r->w, 'I');
	backend_sends(&r->w);
}

/* ---- client to backend ---- */

Test(rewrite, unnamed_statements_pass_untouched)
{
	struct bytes *c = bytes_new();

	lease(&b1);
	parse(&c->w, "", "select 1");
	bind_msg(&c->w, "", "");
	execute(&c->w);
	proto_sync(&c->w);
	assert_same(client_sends(&c->w), c);
	cr_assert(cl.prep == NULL || cl.prep->reg.count == 0);
}

Test(rewrite, a_named_parse_is_registered_and_sent_as_close_and_parse_of_its_shared_name)
{
	struct bytes *c = bytes_new(), *want = bytes_new();

	lease(&b1);
	parse(&c->w, "s1", "select 1");
	proto_sync(&c->w);
	struct bytes *wire = client_sends(&c->w);
	const char *name = server_name("s1");
	cr_assert_eq(strncmp(name, "pgl_", 4), 0);
	close_stmt(&want->w, name);
	parse(&want->w, name, "select 1");
	proto_sync(&want->w);
	assert_same(wire, want);
}

Test(rewrite, the_injected_close_reply_is_cut_and_the_parse_reply_reaches_the_client)
{
	struct bytes *c = bytes_new(), *r = bytes_new(), *want = bytes_new();

	lease(&b1);
	parse(&c->w, "s1", "select 1");
	proto_sync(&c->w);
	client_sends(&c->w);
	reply(&r->w, '3');
	reply(&r->w, '1');
	proto_ready(&r->w, 'I');
	reply(&want->w, '1');
	proto_ready(&want->w, 'I');
	assert_same(backend_sends(&r->w), want);
}

Test(rewrite, bind_and_describe_of_a_known_name_are_renamed)
{
	struct bytes *c = bytes_new(), *want = bytes_new();

	lease(&b1);
	prepare_s1();
	const char *name = server_name("s1");
	describe_stmt(&c->w, "s1");
	bind_msg(&c->w, "p", "s1");
	execute(&c->w);
	proto_sync(&c->w);
	describe_stmt(&want->w, name);
	bind_msg(&want->w, "p", name);
	execute(&want->w);
	proto_sync(&want->w);
	assert_same(client_sends(&c->w), want);
}

Test(rewrite, another_backend_gets_the_statement_just_before_its_bind)
{
	struct bytes *c = bytes_new(), *want = bytes_new(), *r = bytes_new(), *seen = bytes_new();

	lease(&b1);
	prepare_s1();
	lease_end(&b1);
	lease(&b2);
	const char *name = server_name("s1");
	bind_msg(&c->w, "", "s1");
	execute(&c->w);
	proto_sync(&c->w);
	close_stmt(&want->w, name);
	parse(&want->w, name, "select 1");
	bind_msg(&want->w, "", name);
	execute(&want->w);
	proto_sync(&want->w);
	assert_same(client_sends(&c->w), want);
	/* The backend answers pglease's Close and Parse too: the client sees only its own replies. */
	reply(&r->w, '3');
	reply(&r->w, '1');
	reply(&r->w, '2');
	reply(&r->w, 'I');         /* EmptyQueryResponse stands for the Execute's result here */
	proto_ready(&r->w, 'I');
	reply(&seen->w, '2');
	reply(&seen->w, 'I');
	proto_ready(&seen->w, 'I');
	assert_same(backend_sends(&r->w), seen);
}

Test(rewrite, a_second_name_for_a_statement_the_backend_has_costs_no_parse)
{
	struct bytes *c = bytes_new(), *want = bytes_new(), *r = bytes_new(), *seen = bytes_new();

	lease(&b1);
	prepare_s1();
	parse(&c->w, "s2", "select 1");
	proto_sync(&c->w);
	close_stmt(&want->w, "pgl_none");
	proto_sync(&want->w);
	assert_same(client_sends(&c->w), want);
	cr_assert_str_eq(server_name("s2"), server_name("s1"), "one shared statement");
	/* The harmless Close's reply becomes the client's ParseComplete. */
	reply(&r->w, '3');
	proto_ready(&r->w, 'I');
	reply(&seen->w, '1');
	proto_ready(&seen->w, 'I');
	assert_same(backend_sends(&r->w), seen);
}

Test(rewrite, close_of_a_known_name_drops_it_and_the_backend_keeps_the_statement)
{
	struct bytes *c = bytes_new(), *want = bytes_new(), *r = bytes_new();

	lease(&b1);
	prepare_s1();
	close_stmt(&c->w, "s1");
	proto_sync(&c->w);
	close_stmt(&want->w, "pgl_none");
	proto_sync(&want->w);
	assert_same(client_sends(&c->w), want);
	cr_assert_null(preg_find(&cl.prep->reg, "s1"));
	reply(&r->w, '3');
	proto_ready(&r->w, 'I');
	assert_same(backend_sends(&r->w), r);
}

Test(rewrite, a_close_of_an_unknown_name_passes)
{
	struct bytes *c = bytes_new();

	lease(&b1);
	close_stmt(&c->w, "never");
	proto_sync(&c->w);
	assert_same(client_sends(&c->w), c);
}

Test(rewrite, deallocate_of_a_known_name_runs_on_its_shared_name)
{
	struct bytes *c = bytes_new(), *want = bytes_new();
	char sql[64];

	lease(&b1);
	prepare_s1();
	snprintf(sql, sizeof(sql), "DEALLOCATE %s", server_name("s1"));
	query(&c->w, "DEALLOCATE s1");
	query(&want->w, sql);
	assert_same(client_sends(&c->w), want);
	cr_assert_null(preg_find(&cl.prep->reg, "s1"));
}

Test(rewrite, discard_all_forgets_every_name)
{
	struct bytes *c = bytes_new();

	lease(&b1);
	prepare_s1();
	query(&c->w, "DISCARD ALL");
	assert_same(client_sends(&c->w), c);
	cr_assert_null(preg_find(&cl.prep->reg, "s1"));
}

/* ---- a prepare that needs no backend ---- */

static int unleased(const struct wbuf *w, struct bytes *answer)
{
	/* The relay gives an emptied buffer back: an idle client's next bytes start a fresh one. */
	if (cl.in && iobuf_is_empty(cl.in)) {
		iobuf_put(cl.in);
		cl.in = NULL;
	}
	if (!cl.in)
		cl.in = iobuf_get();
	memcpy(cl.in->data + cl.in->end, w->data, w->len);
	cl.in->end += (uint32_t)w->len;
	return prep_parse_unleased(&cl, &answer->w);
}

Test(rewrite, a_statement_the_pool_has_parsed_is_prepared_without_a_lease)
{
	struct bytes *c = bytes_new(), *answer = bytes_new(), *want = bytes_new();

	lease(&b1);
	prepare_s1();
	lease_end(&b1);
	parse(&c->w, "s2", "select 1");
	proto_sync(&c->w);
	cr_assert_eq(unleased(&c->w, answer), 1);
	reply(&want->w, '1');
	proto_ready(&want->w, 'I');
	assert_same(answer, want);
	cr_assert_str_eq(server_name("s2"), server_name("s1"));
	cr_assert_eq(cl.in->scanned, c->w.len, "the batch is consumed");
	cr_assert_eq(cl.in->start, cl.in->scanned);
}

Test(rewrite, what_needs_a_backend_is_left_to_the_lease)
{
	static const char *const why[] = { "unparsed", "no sync", "same name twice", "name in use", "pinned" };

	for (size_t i = 0; i < sizeof(why) / sizeof(*why); i++) {
		struct bytes *c = bytes_new(), *answer = bytes_new();

		if (!cl.prep || !preg_find(&cl.prep->reg, "s1")) {
			lease(&b1);
			prepare_s1();
			lease_end(&b1);
		}
		if (cl.in)
			cl.in->start = cl.in->scanned = cl.in->end;    /* the previous batch, left unconsumed */
		cl.pinned = i == 4;
		parse(&c->w, i == 3 ? "s1" : "s2", i == 0 ? "select 2" : "select 1");
		if (i == 2)
			parse(&c->w, "s2", "select 1");
		if (i != 1)
			proto_sync(&c->w);
		cr_assert_eq(unleased(&c->w, answer), 0, "%s", why[i]);
		cr_assert_eq(answer->w.len, 0, "%s", why[i]);
		cr_assert_eq(cl.in->scanned, 0, "%s: nothing consumed", why[i]);
	}
}

Test(rewrite, a_statement_that_would_pin_is_left_to_the_lease)
{
	struct bytes *c = bytes_new(), *answer = bytes_new(), *r = bytes_new();

	lease(&b1);
	parse(&c->w, "t", "LISTEN x");
	proto_sync(&c->w);
	client_sends(&c->w);
	reply(&r->w, '3');
	reply(&r->w, '1');
	proto_ready(&r->w, 'I');
	backend_sends(&r->w);
	lease_end(&b1);
	cl.pinned = false;     /* the pin watcher ran in client_sends(); this asks whether the layer looks itself */
	c = bytes_new();
	parse(&c->w, "t2", "LISTEN x");
	proto_sync(&c->w);
	cr_assert_eq(unleased(&c->w, answer), 0);
}
