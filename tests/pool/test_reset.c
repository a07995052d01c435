/*
 * test_reset.c — Criterion tests for pool/reset.c, the relay's half of
 * RESET handling (test_reset_sql.c has the pure half), driven as
 * pool/relay.c drives it, with no backend and no loop: scan_client() asks
 * reset_client_query() from its frame callback, hands the Query it stopped
 * at to reset_client_step(), sends reset_followup() when one is due and
 * nothing while reset_holding(); scan_server() gives each backend message to
 * reset_server_msg() and cuts what it says. What reaches the backend goes
 * through a socketpair and is read back; what reaches the client is what is
 * left of the backend's bytes.
 *
 * The client logged in with DateStyle and TimeZone of its own (the pool's
 * differ) and standard_conforming_strings as the pool has it.
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
#include "proto.h"
#include "reset.h"
#include "server.h"
#include "session.h"

static struct config conf;
static struct pool pool;
static struct server srv;
static struct client cl;
static int peer;                /* the backend's end of the socket */

static void put(struct param_set *s, const char *name, const char *value)
{
	cr_assert_eq(params_put(s, name, value), 0);
}

static void setup(void)
{
	int sv[2];

	log_set_level(LOG_ERROR);
	conf = (struct config){ .session_state = SESSION_STATE_PIN };
	cfg = &conf;
	pool = (struct pool){ .dbname = "app", .user = "u", .mode = POOL_MODE_TRANSACTION };
	put(&pool.base, "DateStyle", "ISO, MDY");
	put(&pool.base, "TimeZone", "UTC");
	put(&pool.base, "standard_conforming_strings", "on");
	cl = (struct client){ .pool = &pool, .id = 7, .state = CLIENT_ACTIVE };
	put(&cl.startup, "DateStyle", "Postgres, MDY");
	put(&cl.startup, "TimeZone", "Asia/Tokyo");
	put(&cl.startup, "standard_conforming_strings", "on");
	/* What its login told it. */
	put(&cl.params, "DateStyle", "Postgres, MDY");
	put(&cl.params, "TimeZone", "Asia/Tokyo");
	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	srv = (struct server){ .pool = &pool, .id = 3, .fd = sv[0], .state = SERVER_LEASED };
	peer = sv[1];
	stream_reset(&srv.stream);
	srv.stream.counts = &pool.stats.stream;
	srv.lease_slot = (struct lease){ .client = &cl, .server = &srv };
	srv.lease = cl.lease = &srv.lease_slot;
	cl.in = iobuf_get();
	cr_assert_not_null(cl.in);
}

static void teardown(void)
{
	iobuf_put(cl.in);
	params_free(&cl.startup);
	params_free(&cl.params);
	params_free(&srv.applied);
	params_free(&pool.base);
	close(srv.fd);
	close(peer);
}

TestSuite(reset, .init = setup, .fini = teardown, .timeout = 5);

/* ---- building messages ---- */

struct bytes {
	uint8_t data[12 * 1024];
	struct wbuf w;
};

/* Fresh from a ring never reused within one test. */
static struct bytes *bytes_new(void)
{
	static struct bytes ring[48];
	static int next;
	struct bytes *b = &ring[next++ % 48];

	wbuf_init(&b->w, b->data, sizeof(b->data));
	return b;
}

static void int16(struct wbuf *w, uint16_t v)
{
	wbuf_byte(w, (uint8_t)(v >> 8));
	wbuf_byte(w, (uint8_t)v);
}

static void query(struct wbuf *w, const char *sql)
{
	size_t m = wbuf_begin(w, 'Q');
	wbuf_cstr(w, sql);
	wbuf_end(w, m);
}

static void complete(struct wbuf *w, const char *tag)
{
	size_t m = wbuf_begin(w, 'C');
	wbuf_cstr(w, tag);
	wbuf_end(w, m);
}

/* RowDescription of one column: a bool for pglease's restore, an int4 else. */
static void row_description(struct wbuf *w, const char *column)
{
	bool restore = strncmp(column, "pglease_restore_", 16) == 0;
	size_t m = wbuf_begin(w, 'T');
	int16(w, 1);
	wbuf_cstr(w, column);
	wbuf_int32(w, 0);
	int16(w, 0);
	wbuf_int32(w, restore ? 16 : 23);
	int16(w, restore ? 1 : 4);
	wbuf_int32(w, 0xffffffffu);
	int16(w, 0);
	wbuf_end(w, m);
}

static void data_row(struct wbuf *w, const char *value)
{
	size_t m = wbuf_begin(w, 'D');
	int16(w, 1);
	wbuf_int32(w, (uint32_t)strlen(value));
	wbuf_bytes(w, value, strlen(value));
	wbuf_end(w, m);
}

/* ErrorResponse: its position (0: none) with fields before and after it, as PostgreSQL sends them. */
static void error_at(struct wbuf *w, const char *sqlstate, const char *message, uint32_t position)
{
	char pos[16];
	size_t m = wbuf_begin(w, 'E');

	snprintf(pos, sizeof(pos), "%u", position);
	wbuf_byte(w, 'S');
	wbuf_cstr(w, "ERROR");
	wbuf_byte(w, 'V');
	wbuf_cstr(w, "ERROR");
	wbuf_byte(w, 'C');
	wbuf_cstr(w, sqlstate);
	wbuf_byte(w, 'M');
	wbuf_cstr(w, message);
	if (position) {
		wbuf_byte(w, 'P');
		wbuf_cstr(w, pos);
	}
	wbuf_byte(w, 'R');
	wbuf_cstr(w, "errorMissingColumn");
	wbuf_byte(w, 0);
	wbuf_end(w, m);
}

/* The replies to pglease's restore SELECT: one row, false. */
static void restore_replies(struct wbuf *w, const char *marker)
{
	row_description(w, marker);
	data_row(w, "f");
	complete(w, "SELECT 1");
}

/* "SELECT 1"'s replies. */
static void select_one(struct wbuf *w)
{
	row_description(w, "?column?");
	data_row(w, "1");
	complete(w, "SELECT 1");
}

/* ---- the relay's two directions ---- */

static void backend_write(const void *p, size_t n)
{
	cr_assert_eq(write(srv.fd, p, n), (ssize_t)n);
}

static void backend_write_query(const char *body, size_t len)
{
	uint8_t hdr[5] = { 'Q', (uint8_t)((len + 5) >> 24), (uint8_t)((len + 5) >> 16), (uint8_t)((len + 5) >> 8),
			   (uint8_t)(len + 5) };

	backend_write(hdr, sizeof(hdr));
	backend_write(body, len + 1);
}

/* relay.c's client_msg() without the prepared-statement layer. */
static enum frame_verdict on_client_msg(void *arg, const struct frame_msg *m)
{
	struct client *c = arg;

	if (m->type == 'Q' && reset_client_query(c, client_server(c), m) != RESET_PASS)
		return FRAME_STOP_BEFORE;
	return stream_client_msg(&client_server(c)->stream, m);
}

/* relay.c's send_followup(): pglease's own Query, not counted as the client's. */
static void send_followup(void)
{
	struct sql_text body = { 0 };

	cr_assert_eq(reset_followup(&cl, &srv, &body), 0);
	cr_assert_gt(body.len, 0);
	backend_write_query(body.data, body.len);
	struct frame_msg m = { 'Q', (uint32_t)body.len + 5, (const uint8_t *)body.data };
	struct stream_counts *counts = srv.stream.counts;
	srv.stream.counts = NULL;
	cr_assert_eq(stream_client_msg(&srv.stream, &m), FRAME_CONTINUE);
	srv.stream.counts = counts;
	sql_text_free(&body);
}

/* relay.c's reset_step(): the Query the scan stopped at, rewritten or as it is. */
static void reset_step(void)
{
	struct iobuf *in = cl.in;
	uint32_t len = be32(in->data + in->scanned + 1);
	struct frame_msg m = { 'Q', len, in->data + in->scanned + 5 };
	struct sql_text body = { 0 };

	if (reset_client_step(&cl, &srv, &m, &body) == 0 && body.len) {
		backend_write_query(body.data, body.len);
		sql_text_free(&body);
	} else {
		backend_write(in->data + in->scanned, 1 + len);
	}
	in->scanned += 1 + len;
	in->start = in->scanned;
	cr_assert_eq(stream_client_msg(&srv.stream, &m), FRAME_CONTINUE);
}

/* relay.c's scan_client() and send_to_server(), in one: bytes reach the backend in order. */
static void relay_client(void)
{
	struct iobuf *in = cl.in;

	for (;;) {
		if (srv.reset.followup_due)
			send_followup();
		if (reset_holding(&srv.reset))
			return;
		ssize_t n = frame_scan(&srv.stream.to_server, in->data + in->scanned, in->end - in->scanned, "Q",
				       on_client_msg, &cl);
		cr_assert_geq(n, 0);
		in->scanned += (uint32_t)n;
		backend_write(in->data + in->start, in->scanned - in->start);
		in->start = in->scanned;
		if (!srv.reset.stopped)
			return;
		reset_step();
	}
}

/* What the backend has been sent since it last looked. */
static struct bytes *backend_reads(void)
{
	struct bytes *got = bytes_new();
	ssize_t n = recv(peer, got->data, sizeof(got->data), MSG_DONTWAIT);

	got->w.len = n > 0 ? (size_t)n : 0;
	return got;
}

/* The client sends w; returns what reaches the backend. */
static struct bytes *client_sends(const struct wbuf *w)
{
	cr_assert_not(w->overflow);
	cr_assert_leq(w->len, iobuf_room(cl.in));
	memcpy(cl.in->data + cl.in->end, w->data, w->len);
	cl.in->end += (uint32_t)w->len;
	relay_client();
	return backend_reads();
}

static struct bytes *client_sends_query(const char *sql)
{
	struct bytes *q = bytes_new();

	query(&q->w, sql);
	return client_sends(&q->w);
}

/* relay.c's server_msg(). */
static uint32_t reply_cut;

static enum frame_verdict on_server_msg(void *arg, const struct frame_msg *m)
{
	struct server *s = arg;
	enum frame_verdict v = stream_server_msg(&s->stream, m);

	if (v == FRAME_CONTINUE && (m->type == 'S' || reset_active(&s->reset)) &&
	    (reply_cut = reset_server_msg(server_client(s), s, m)))
		return FRAME_STOP_AFTER;
	return v;
}

/*
 * The backend sends w; returns what reaches the client (relay.c's
 * scan_server()). A reply that kicks the relay (held input may go, a
 * follow-up is due) makes it look at the client's input again, as
 * relay_reply() does: what that sends, backend_reads() sees.
 */
static struct bytes *backend_sends(const struct wbuf *w)
{
	struct iobuf *out = iobuf_get();
	struct bytes *seen = bytes_new();
	uint32_t at = 0;

	cr_assert_not(w->overflow);
	cr_assert_not_null(out);
	memcpy(out->data, w->data, w->len);
	out->end = (uint32_t)w->len;
	for (;;) {
		const char *whole = reset_active(&srv.reset) ? RESET_SERVER_WHOLE : SESSION_SERVER_WHOLE;
		reply_cut = 0;
		ssize_t n = frame_scan(&srv.stream.from_server, out->data + at, out->end - at, whole, on_server_msg, &srv);
		cr_assert_geq(n, 0);
		at += (uint32_t)n;
		if (!reply_cut)
			break;
		memmove(out->data + at - reply_cut, out->data + at, out->end - at);
		out->end -= reply_cut;
		at -= reply_cut;
	}
	cr_assert_eq(at, out->end, "the whole reply was scanned");
	memcpy(seen->data, out->data, out->end);
	seen->w.len = out->end;
	iobuf_put(out);
	if (srv.reset.kick) {
		srv.reset.kick = false;
		relay_client();
	}
	return seen;
}

static void assert_same(const struct bytes *got, const struct bytes *want)
{
	cr_assert_eq(got->w.len, want->w.len, "%zu bytes, want %zu", got->w.len, want->w.len);
	cr_assert_arr_eq(got->data, want->data, want->w.len);
}

/* The Query text of the one Query message in b. */
static const char *query_text(const struct bytes *b)
{
	cr_assert_geq(b->w.len, 6);
	cr_assert_eq(b->data[0], 'Q');
	cr_assert_eq(be32(b->data + 1) + 1, b->w.len, "one Query");
	cr_assert_eq(b->data[b->w.len - 1], 0);
	return (const char *)b->data + 5;
}

/* pglease's marker column: a per-process nonce, so the test reads it off the first restore it sees. */
static char mark[32];

static const char *marker_in(const char *sql)
{
	const char *at = strstr(sql, " AS pglease_restore_");

	cr_assert_not_null(at, "no restore in %s", sql);
	at += 4;
	cr_assert_eq(strspn(at + 16, "0123456789abcdef"), 8, "%s", at);
	if (!mark[0])
		snprintf(mark, sizeof(mark), "%.24s", at);
	cr_assert_eq(strncmp(at, mark, 24), 0, "one marker");
	return mark;
}

#define RESTORE_DATESTYLE "pg_catalog.set_config($q0$datestyle$q0$, $q0$Postgres, MDY$q0$, false)"
#define RESTORE_TIMEZONE "pg_catalog.set_config($q0$timezone$q0$, $q0$Asia/Tokyo$q0$, false)"

/* ---- no reset ---- */

Test(reset, a_query_without_a_reset_passes_and_nothing_is_rewritten)
{
	static const char *const texts[] = {
		"SELECT 1", "SELECT 'RESET datestyle'", "SET datestyle TO 'default'", "-- RESET ALL\nSELECT 1",
		"DISCARD PLANS", "SHOW datestyle",
	};

	for (size_t i = 0; i < sizeof(texts) / sizeof(*texts); i++) {
		struct bytes *q = bytes_new(), *r = bytes_new();
		query(&q->w, texts[i]);
		struct frame_msg m = { 'Q', (uint32_t)q->w.len - 1, q->data + 5 };
		cr_assert_eq(reset_client_query(&cl, &srv, &m), RESET_PASS, "%s", texts[i]);
		assert_same(client_sends(&q->w), q);
		cr_assert_not(reset_active(&srv.reset), "%s", texts[i]);
		select_one(&r->w);
		proto_ready(&r->w, 'I');
		assert_same(backend_sends(&r->w), r);
	}
	cr_assert_eq(srv.stream.owed_z, 0);
}

/* ---- RESET, RESET ALL, SET ... TO DEFAULT ---- */

Test(reset, reset_of_a_startup_setting_is_followed_by_its_restore_whose_replies_are_cut)
{
	struct bytes *r = bytes_new(), *want = bytes_new();
	char sql[512];

	const char *text = query_text(client_sends_query("RESET datestyle; SELECT 1"));
	const char *m = marker_in(text);
	snprintf(sql, sizeof(sql), "RESET datestyle;SELECT (" RESTORE_DATESTYLE ") IS NULL AS %s; SELECT 1", m);
	cr_assert_str_eq(text, sql);
	cr_assert(reset_active(&srv.reset));
	cr_assert_not(reset_holding(&srv.reset), "a rewritten Query holds nothing back");

	complete(&r->w, "RESET");
	restore_replies(&r->w, m);
	select_one(&r->w);
	proto_ready(&r->w, 'I');
	complete(&want->w, "RESET");
	select_one(&want->w);
	proto_ready(&want->w, 'I');
	assert_same(backend_sends(&r->w), want);
	cr_assert_not(reset_active(&srv.reset), "its ReadyForQuery ends it");
	cr_assert_eq(pool.stats.stream.queries, 1);
	cr_assert_eq(pool.stats.stream.xacts, 1);
}

Test(reset, reset_all_restores_every_startup_setting_the_pool_does_not_share)
{
	struct bytes *r = bytes_new(), *want = bytes_new();
	char sql[512];

	/* No ';' of its own: the rewrite adds one; standard_conforming_strings is the pool's value already. */
	const char *text = query_text(client_sends_query("RESET ALL"));
	const char *m = marker_in(text);
	snprintf(sql, sizeof(sql), "RESET ALL;SELECT (" RESTORE_DATESTYLE " || " RESTORE_TIMEZONE ") IS NULL AS %s;", m);
	cr_assert_str_eq(text, sql);

	complete(&r->w, "RESET");
	restore_replies(&r->w, m);
	proto_ready(&r->w, 'I');
	complete(&want->w, "RESET");
	proto_ready(&want->w, 'I');
	assert_same(backend_sends(&r->w), want);
	cr_assert_not(reset_active(&srv.reset));
}

Test(reset, set_to_default_restores_that_setting_only)
{
	struct bytes *r = bytes_new(), *want = bytes_new();
	char sql[512];

	const char *text = query_text(client_sends_query("SET TimeZone TO DEFAULT; SET datestyle = 'SQL'"));
	const char *m = marker_in(text);
	snprintf(sql, sizeof(sql), "SET TimeZone TO DEFAULT;SELECT (" RESTORE_TIMEZONE ") IS NULL AS %s; "
		 "SET datestyle = 'SQL'", m);
	cr_assert_str_eq(text, sql);

	/* The value the client set is news to it, and tracked; PostgreSQL reports it at the end. */
	complete(&r->w, "SET");
	restore_replies(&r->w, m);
	complete(&r->w, "SET");
	proto_param_status(&r->w, "DateStyle", "SQL, MDY");
	proto_ready(&r->w, 'I');
	complete(&want->w, "SET");
	complete(&want->w, "SET");
	proto_param_status(&want->w, "DateStyle", "SQL, MDY");
	proto_ready(&want->w, 'I');
	assert_same(backend_sends(&r->w), want);
	cr_assert_str_eq(params_get(&cl.params, "datestyle"), "SQL, MDY");
	cr_assert_str_eq(params_get(&srv.applied, "datestyle"), "SQL, MDY");
}

Test(reset, a_settings_report_the_client_already_has_is_cut)
{
	struct bytes *r = bytes_new(), *want = bytes_new();

	const char *m = marker_in(query_text(client_sends_query("RESET datestyle")));
	complete(&r->w, "RESET");
	proto_param_status(&r->w, "DateStyle", "Postgres, MDY");
	restore_replies(&r->w, m);
	proto_ready(&r->w, 'I');
	complete(&want->w, "RESET");
	proto_ready(&want->w, 'I');
	assert_same(backend_sends(&r->w), want);
	cr_assert_str_eq(params_get(&srv.applied, "datestyle"), "Postgres, MDY", "the backend's value is tracked");
}

Test(reset, an_error_position_past_the_restore_is_moved_back)
{
	const char *sql = "RESET datestyle; select nosuchcol";
	struct bytes *r = bytes_new(), *want = bytes_new();

	const char *text = query_text(client_sends_query(sql));
	uint32_t theirs = (uint32_t)(strstr(text, "nosuchcol") - text) + 1;
	uint32_t ours = (uint32_t)(strstr(sql, "nosuchcol") - sql) + 1;
	cr_assert_geq(theirs, 100, "premise: the position loses a digit, so the message shrinks");
	cr_assert_eq(ours, 25);

	complete(&r->w, "RESET");
	restore_replies(&r->w, marker_in(text));
	error_at(&r->w, "42703", "column \"nosuchcol\" does not exist", theirs);
	proto_ready(&r->w, 'I');
	complete(&want->w, "RESET");
	error_at(&want->w, "42703", "column \"nosuchcol\" does not exist", ours);
	proto_ready(&want->w, 'I');
	assert_same(backend_sends(&r->w), want);
	cr_assert_not(reset_active(&srv.reset));
}

Test(reset, an_error_position_moved_back_by_as_many_digits_is_moved_too)
{
	const char *sql = "RESET datestyle; select 1 as first_column_with_a_longish_name,"
			  " 2 as second_column_with_a_longish_name, nosuchcol";
	struct bytes *r = bytes_new(), *want = bytes_new();

	const char *text = query_text(client_sends_query(sql));
	uint32_t theirs = (uint32_t)(strstr(text, "nosuchcol") - text) + 1;
	uint32_t ours = (uint32_t)(strstr(sql, "nosuchcol") - sql) + 1;
	cr_assert(ours >= 100 && theirs < 1000, "premise: %u and %u, as many digits, the same message length",
		  ours, theirs);

	complete(&r->w, "RESET");
	restore_replies(&r->w, marker_in(text));
	error_at(&r->w, "42703", "column \"nosuchcol\" does not exist", theirs);
	proto_ready(&r->w, 'I');
	complete(&want->w, "RESET");
	error_at(&want->w, "42703", "column \"nosuchcol\" does not exist", ours);
	proto_ready(&want->w, 'I');
	assert_same(backend_sends(&r->w), want);
}

Test(reset, a_syntax_error_after_two_restores_is_moved_back_past_both)
{
	const char *sql = "RESET datestyle; RESET timezone; select 1 +";
	struct bytes *r = bytes_new(), *want = bytes_new();

	const char *text = query_text(client_sends_query(sql));
	marker_in(text);
	cr_assert_not_null(strstr(strstr(text, "pglease_restore_") + 1, "pglease_restore_"), "two restores");
	/* PostgreSQL parses the whole text first: nothing runs, its error is at the end of the input. */
	error_at(&r->w, "42601", "syntax error at end of input", (uint32_t)strlen(text) + 1);
	proto_ready(&r->w, 'I');
	error_at(&want->w, "42601", "syntax error at end of input", (uint32_t)strlen(sql) + 1);
	proto_ready(&want->w, 'I');
	assert_same(backend_sends(&r->w), want);
	cr_assert_not(reset_active(&srv.reset));
}

Test(reset, an_error_before_the_reset_keeps_its_position_and_no_restore_follows)
{
	const char *sql = "select 1, nosuchcol; RESET datestyle";
	struct bytes *r = bytes_new();

	const char *text = query_text(client_sends_query(sql));
	marker_in(text);
	/* The error skips the rest of the Query, the restore with it. */
	error_at(&r->w, "42703", "column \"nosuchcol\" does not exist", 11);
	proto_ready(&r->w, 'I');
	assert_same(backend_sends(&r->w), r);
	cr_assert_not(reset_active(&srv.reset));
}

Test(reset, an_error_position_it_cannot_read_is_left_alone)
{
	struct bytes *r = bytes_new();

	marker_in(query_text(client_sends_query("RESET datestyle; select 1 +")));
	/* An empty position would come out as "0", longer than it was. */
	size_t at = wbuf_begin(&r->w, 'E');
	wbuf_byte(&r->w, 'S');
	wbuf_cstr(&r->w, "ERROR");
	wbuf_byte(&r->w, 'P');
	wbuf_cstr(&r->w, "");
	wbuf_byte(&r->w, 'M');
	wbuf_cstr(&r->w, "syntax error at end of input");
	wbuf_byte(&r->w, 0);
	wbuf_end(&r->w, at);
	proto_ready(&r->w, 'I');
	assert_same(backend_sends(&r->w), r);
}

Test(reset, a_reset_of_a_setting_the_client_did_not_give_at_startup_is_not_rewritten)
{
	/* work_mem and search_path: not startup settings; standard_conforming_strings: the pool's value. */
	static const char *const texts[] = {
		"RESET work_mem", "SET search_path TO DEFAULT", "RESET standard_conforming_strings",
		"SET LOCAL statement_timeout = DEFAULT",
	};

	for (size_t i = 0; i < sizeof(texts) / sizeof(*texts); i++) {
		struct bytes *q = bytes_new(), *r = bytes_new();
		query(&q->w, texts[i]);
		struct frame_msg m = { 'Q', (uint32_t)q->w.len - 1, q->data + 5 };
		cr_assert_eq(reset_client_query(&cl, &srv, &m), RESET_PASS, "%s", texts[i]);
		assert_same(client_sends(&q->w), q);
		cr_assert_not(reset_active(&srv.reset), "%s", texts[i]);
		complete(&r->w, "RESET");
		proto_ready(&r->w, 'I');
		assert_same(backend_sends(&r->w), r);
	}
}

Test(reset, a_client_without_startup_settings_resets_to_the_pools)
{
	struct bytes *q = bytes_new();

	params_free(&cl.startup);
	query(&q->w, "RESET ALL; DISCARD ALL");
	struct frame_msg m = { 'Q', (uint32_t)q->w.len - 1, q->data + 5 };
	cr_assert_eq(reset_client_query(&cl, &srv, &m), RESET_PASS);
	assert_same(client_sends(&q->w), q);
	cr_assert_not(reset_active(&srv.reset));
}

/* ---- DISCARD ALL ---- */

Test(reset, discard_all_is_followed_by_a_restore_and_the_clients_input_waits_for_it)
{
	struct bytes *q = bytes_new(), *r = bytes_new(), *want = bytes_new(), *later = bytes_new();
	char sql[512];

	query(&q->w, "DISCARD ALL");
	query(&later->w, "SELECT 2");
	struct bytes *both = bytes_new();
	wbuf_bytes(&both->w, q->data, q->w.len);
	wbuf_bytes(&both->w, later->data, later->w.len);
	/* DISCARD ALL goes as it is; the Query behind it waits. */
	assert_same(client_sends(&both->w), q);
	cr_assert(reset_holding(&srv.reset));
	cr_assert_eq(cl.in->scanned, q->w.len, "SELECT 2 is not even scanned");

	/* Its completion: settings reports of what the follow-up restores are cut, and its ReadyForQuery. */
	complete(&r->w, "DISCARD ALL");
	proto_param_status(&r->w, "DateStyle", "ISO, MDY");
	proto_param_status(&r->w, "TimeZone", "UTC");
	complete(&want->w, "DISCARD ALL");
	assert_same(backend_sends(&r->w), want);
	cr_assert_eq(backend_reads()->w.len, 0, "nothing more before its ReadyForQuery");
	r = bytes_new();
	proto_ready(&r->w, 'I');
	cr_assert_eq(backend_sends(&r->w)->w.len, 0, "the follow-up's ReadyForQuery stands for it");

	/* The follow-up went at once; SELECT 2 still waits. */
	const char *text = query_text(backend_reads());
	const char *m = marker_in(text);
	snprintf(sql, sizeof(sql), "SELECT (" RESTORE_DATESTYLE " || " RESTORE_TIMEZONE ") IS NULL AS %s;", m);
	cr_assert_str_eq(text, sql);
	cr_assert(reset_holding(&srv.reset));
	cr_assert_eq(cl.in->scanned, q->w.len);

	/* The follow-up's replies are cut but for its ReadyForQuery; then SELECT 2 goes. */
	r = bytes_new();
	want = bytes_new();
	restore_replies(&r->w, m);
	proto_param_status(&r->w, "DateStyle", "Postgres, MDY");
	proto_param_status(&r->w, "TimeZone", "Asia/Tokyo");
	proto_ready(&r->w, 'I');
	proto_ready(&want->w, 'I');
	assert_same(backend_sends(&r->w), want);
	cr_assert_not(reset_holding(&srv.reset));
	assert_same(backend_reads(), later);
	cr_assert_str_eq(params_get(&cl.params, "datestyle"), "Postgres, MDY", "the client was told nothing new");
	cr_assert_str_eq(params_get(&srv.applied, "timezone"), "Asia/Tokyo");
	cr_assert_not(srv.settings_unknown);
	/* The follow-up is not the client's: its two queries, and DISCARD ALL's one transaction. */
	cr_assert_eq(pool.stats.stream.queries, 2, "DISCARD ALL and SELECT 2");
	cr_assert_eq(pool.stats.stream.xacts, 1);

	r = bytes_new();
	select_one(&r->w);
	proto_ready(&r->w, 'I');
	assert_same(backend_sends(&r->w), r);
	cr_assert_not(reset_active(&srv.reset));
	cr_assert_eq(srv.stream.owed_z, 0);
}

Test(reset, input_that_comes_while_discard_all_runs_waits_too)
{
	struct bytes *r = bytes_new(), *later = bytes_new();

	cr_assert_eq(client_sends_query("DISCARD ALL")->w.len, 17, "as it is");
	query(&later->w, "SELECT 2");
	cr_assert_eq(client_sends(&later->w)->w.len, 0, "held");
	complete(&r->w, "DISCARD ALL");
	proto_ready(&r->w, 'I');
	backend_sends(&r->w);
	const char *m = marker_in(query_text(backend_reads()));    /* the follow-up */
	cr_assert_eq(client_sends(&later->w)->w.len, 0, "still held");
	r = bytes_new();
	restore_replies(&r->w, m);
	proto_ready(&r->w, 'I');
	backend_sends(&r->w);
	struct bytes *both = bytes_new();
	wbuf_bytes(&both->w, later->data, later->w.len);
	wbuf_bytes(&both->w, later->data, later->w.len);
	assert_same(backend_reads(), both);
}

Test(reset, a_discard_all_that_failed_gets_no_followup)
{
	struct bytes *r = bytes_new(), *later = bytes_new();

	query(&later->w, "SELECT 2");
	cr_assert_eq(client_sends_query("DISCARD ALL")->w.len, 17, "as it is");
	cr_assert(reset_holding(&srv.reset), "premise: DISCARD ALL was taken");
	cr_assert_eq(client_sends(&later->w)->w.len, 0);
	error_at(&r->w, "25001", "DISCARD ALL cannot run inside a transaction block", 0);
	proto_ready(&r->w, 'E');
	assert_same(backend_sends(&r->w), r);
	cr_assert_not(srv.reset.followup_due);
	cr_assert_not(reset_holding(&srv.reset));
	assert_same(backend_reads(), later);
	cr_assert_not(srv.settings_unknown);
}

Test(reset, a_failed_followup_after_a_discard_all_that_ran_reaches_the_client)
{
	struct bytes *r = bytes_new();

	client_sends_query("DISCARD ALL");
	complete(&r->w, "DISCARD ALL");
	proto_ready(&r->w, 'I');
	backend_sends(&r->w);
	cr_assert_eq(backend_reads()->data[0], 'Q', "the follow-up");
	r = bytes_new();
	error_at(&r->w, "57014", "canceling statement due to user request", 0);
	proto_ready(&r->w, 'I');
	assert_same(backend_sends(&r->w), r);
	cr_assert(srv.settings_unknown, "the backend's settings are no longer what pglease applied");
}

/* ---- limits ---- */

Test(reset, a_query_longer_than_the_whole_message_limit_passes_untouched)
{
	static char sql[FRAME_WHOLE_MAX + 64];
	struct bytes *q = bytes_new(), *r = bytes_new();

	int n = snprintf(sql, sizeof(sql), "RESET datestyle; SELECT '");
	memset(sql + n, 'x', FRAME_WHOLE_MAX);
	strcpy(sql + n + FRAME_WHOLE_MAX, "'");
	query(&q->w, sql);
	cr_assert_gt(q->w.len, FRAME_WHOLE_MAX + 5, "premise: over the limit");
	assert_same(client_sends(&q->w), q);
	cr_assert_not(reset_active(&srv.reset));
	complete(&r->w, "RESET");
	select_one(&r->w);
	proto_ready(&r->w, 'I');
	assert_same(backend_sends(&r->w), r);
}

/* The Query messages in b, each of them rewritten. */
static int rewritten_queries(const struct bytes *b)
{
	int n = 0;

	for (size_t at = 0; at < b->w.len; n++) {
		cr_assert_eq(b->data[at], 'Q');
		const char *text = (const char *)b->data + at + 5;
		marker_in(text);
		cr_assert(strncmp(text, "RESET datestyle;SELECT", 22) == 0, "%s", text);
		at += 1 + be32(b->data + at + 1);
	}
	return n;
}

Test(reset, rewritten_queries_in_flight_are_bounded_and_the_next_waits_for_a_reply)
{
	struct bytes *q = bytes_new(), *r = bytes_new(), *want = bytes_new();

	for (int i = 0; i <= RESET_INFLIGHT_MAX; i++)
		query(&q->w, "RESET datestyle");
	cr_assert_eq(rewritten_queries(client_sends(&q->w)), RESET_INFLIGHT_MAX);
	cr_assert(srv.reset.full && reset_holding(&srv.reset));
	cr_assert_eq(srv.stream.owed_z, RESET_INFLIGHT_MAX);

	/* The first reply frees room: the last Query goes, rewritten too. */
	complete(&r->w, "RESET");
	restore_replies(&r->w, mark);
	proto_ready(&r->w, 'I');
	complete(&want->w, "RESET");
	proto_ready(&want->w, 'I');
	assert_same(backend_sends(&r->w), want);
	cr_assert_eq(rewritten_queries(backend_reads()), 1);
	cr_assert_not(reset_holding(&srv.reset));
	cr_assert_eq(srv.reset.count, RESET_INFLIGHT_MAX);

	/* Every one's restore is cut from its replies. */
	struct bytes *rest = bytes_new(), *seen = bytes_new();
	for (int i = 0; i < RESET_INFLIGHT_MAX; i++) {
		wbuf_bytes(&rest->w, r->data, r->w.len);
		wbuf_bytes(&seen->w, want->data, want->w.len);
	}
	assert_same(backend_sends(&rest->w), seen);
	cr_assert_not(reset_active(&srv.reset));
	cr_assert_eq(srv.stream.owed_z, 0);
}
