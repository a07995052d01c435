/*
 * test_frame.c — Criterion tests for base/frame.c.
 *
 * The core property: however a byte stream is cut into reads, frame_scan()
 * driven with the relay's buffer discipline (bytes [0, scanned) framed, the
 * unscanned tail offered again with more bytes appended) reports exactly
 * the same messages, in the same order, with the same lengths and the same
 * bodies for the "whole" types, as one scan of the unsplit stream — and as
 * the list of messages the stream was built from.
 *
 * Every offer is copied into an allocation of exactly the offered size, so
 * under AddressSanitizer a read past the offered bytes is caught.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

/* ---- building a byte stream, remembering what went into it ---- */

struct expect {
	char type;
	uint32_t len;
	uint8_t status;     /* 'Z' status byte, 0 for other types */
};

struct wire {
	uint8_t *data;
	size_t len, cap;
	struct expect *msgs;
	size_t count, msgs_cap;
};

static void wire_reserve(struct wire *w, size_t more)
{
	if (w->len + more <= w->cap)
		return;
	while (w->len + more > w->cap)
		w->cap = w->cap ? w->cap * 2 : 256;
	w->data = realloc(w->data, w->cap);
	cr_assert_not_null(w->data);
}

static void put_raw(struct wire *w, const void *p, size_t n)
{
	wire_reserve(w, n);
	memcpy(w->data + w->len, p, n);
	w->len += n;
}

static void put_be32(struct wire *w, uint32_t v)
{
	uint8_t b[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
	put_raw(w, b, 4);
}

static void put_be16(struct wire *w, uint16_t v)
{
	uint8_t b[2] = { (uint8_t)(v >> 8), (uint8_t)v };
	put_raw(w, b, 2);
}

static void put_cstr(struct wire *w, const char *s)
{
	put_raw(w, s, strlen(s) + 1);
}

/* Start a message; returns where its length field is. */
static size_t msg_begin(struct wire *w, char type)
{
	uint8_t t = (uint8_t)type;
	put_raw(w, &t, 1);
	size_t mark = w->len;
	put_be32(w, 0);
	return mark;
}

static void msg_end(struct wire *w, size_t mark)
{
	uint32_t len = (uint32_t)(w->len - mark);
	uint8_t *p = w->data + mark;

	p[0] = (uint8_t)(len >> 24);
	p[1] = (uint8_t)(len >> 16);
	p[2] = (uint8_t)(len >> 8);
	p[3] = (uint8_t)len;
	if (w->count == w->msgs_cap) {
		w->msgs_cap = w->msgs_cap ? w->msgs_cap * 2 : 64;
		w->msgs = realloc(w->msgs, w->msgs_cap * sizeof(*w->msgs));
		cr_assert_not_null(w->msgs);
	}
	char type = (char)w->data[mark - 1];
	w->msgs[w->count++] = (struct expect){
		.type = type,
		.len = len,
		.status = type == 'Z' && len == 5 ? p[4] : 0,
	};
}

static void wire_free(struct wire *w)
{
	free(w->data);
	free(w->msgs);
	memset(w, 0, sizeof(*w));
}

/* A message with no body: ParseComplete, BindComplete, NoData, Sync, ... */
static void m_empty(struct wire *w, char type)
{
	msg_end(w, msg_begin(w, type));
}

static void m_ready(struct wire *w, char status)
{
	size_t m = msg_begin(w, 'Z');
	put_raw(w, &status, 1);
	msg_end(w, m);
}

static void m_row_description(struct wire *w, int nfields)
{
	static const char *const names[] = { "id", "name", "payload", "created_at" };
	size_t m = msg_begin(w, 'T');

	put_be16(w, (uint16_t)nfields);
	for (int i = 0; i < nfields; i++) {
		put_cstr(w, names[i % 4]);
		put_be32(w, 16384 + (uint32_t)i); /* table oid */
		put_be16(w, (uint16_t)(i + 1));   /* column number */
		put_be32(w, i == 0 ? 23 : 25);    /* int4, text */
		put_be16(w, i == 0 ? 4 : 0xffff); /* typlen */
		put_be32(w, 0xffffffffu);         /* typmod -1 */
		put_be16(w, 0);                   /* text format */
	}
	msg_end(w, m);
}

/* A DataRow of text columns; a NULL column is encoded with length -1. */
static void m_data_row(struct wire *w, int ncols, const char *const *cols)
{
	size_t m = msg_begin(w, 'D');

	put_be16(w, (uint16_t)ncols);
	for (int i = 0; i < ncols; i++) {
		if (!cols[i]) {
			put_be32(w, 0xffffffffu);
			continue;
		}
		put_be32(w, (uint32_t)strlen(cols[i]));
		put_raw(w, cols[i], strlen(cols[i]));
	}
	msg_end(w, m);
}

static void m_big_data_row(struct wire *w, size_t payload)
{
	size_t m = msg_begin(w, 'D');

	put_be16(w, 1);
	put_be32(w, (uint32_t)payload);
	wire_reserve(w, payload);
	for (size_t i = 0; i < payload; i++)
		w->data[w->len + i] = (uint8_t)('a' + i % 26);
	w->len += payload;
	msg_end(w, m);
}

static void m_cstr(struct wire *w, char type, const char *s)
{
	size_t m = msg_begin(w, type);
	put_cstr(w, s);
	msg_end(w, m);
}

static void m_error(struct wire *w, char type, const char *sqlstate, const char *message)
{
	size_t m = msg_begin(w, type);

	put_raw(w, "S", 1);
	put_cstr(w, type == 'E' ? "ERROR" : "NOTICE");
	put_raw(w, "C", 1);
	put_cstr(w, sqlstate);
	put_raw(w, "M", 1);
	put_cstr(w, message);
	put_raw(w, "", 1);
	msg_end(w, m);
}

static void m_param_status(struct wire *w, const char *name, const char *value)
{
	size_t m = msg_begin(w, 'S');
	put_cstr(w, name);
	put_cstr(w, value);
	msg_end(w, m);
}

#define BIG_ROW_PAYLOAD (70 * 1024)

/* What a backend sends for a mix of simple and extended queries. */
static void build_server_stream(struct wire *w)
{
	static const char *const row1[] = { "1", "alice", "x" };
	static const char *const row2[] = { "2", NULL, "" };
	static const char *const row3[] = { "3", "carol", "zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz" };

	/* SELECT with three rows, simple protocol */
	m_row_description(w, 3);
	m_data_row(w, 3, row1);
	m_data_row(w, 3, row2);
	m_data_row(w, 3, row3);
	m_cstr(w, 'C', "SELECT 3");
	m_ready(w, 'I');
	/* BEGIN; then one huge row via the extended protocol */
	m_cstr(w, 'C', "BEGIN");
	m_ready(w, 'T');
	m_empty(w, '1');
	m_empty(w, '2');
	m_row_description(w, 1);
	m_big_data_row(w, BIG_ROW_PAYLOAD);
	m_cstr(w, 'C', "SELECT 1");
	m_ready(w, 'T');
	/* a statement with no result set, then a failure in the transaction */
	m_empty(w, '1');
	m_empty(w, '2');
	m_empty(w, 'n');
	m_error(w, 'N', "00000", "relation \"t\" already exists, skipping");
	m_cstr(w, 'C', "CREATE TABLE");
	m_ready(w, 'T');
	m_error(w, 'E', "22012", "division by zero");
	m_ready(w, 'E');
	/* ROLLBACK, an empty query, a portal suspended, a close */
	m_cstr(w, 'C', "ROLLBACK");
	m_param_status(w, "TimeZone", "UTC");
	m_ready(w, 'I');
	m_empty(w, 'I');
	m_ready(w, 'I');
	m_empty(w, '1');
	m_empty(w, '2');
	m_data_row(w, 3, row1);
	m_empty(w, 's');
	m_empty(w, '3');
	m_ready(w, 'I');
	m_ready(w, 'I');
}

static void m_query(struct wire *w, const char *sql)
{
	m_cstr(w, 'Q', sql);
}

static void m_parse(struct wire *w, const char *name, const char *sql, int nparams)
{
	size_t m = msg_begin(w, 'P');

	put_cstr(w, name);
	put_cstr(w, sql);
	put_be16(w, (uint16_t)nparams);
	for (int i = 0; i < nparams; i++)
		put_be32(w, 23);
	msg_end(w, m);
}

static void m_bind(struct wire *w, const char *portal, const char *stmt, int nparams, const char *const *vals)
{
	size_t m = msg_begin(w, 'B');

	put_cstr(w, portal);
	put_cstr(w, stmt);
	put_be16(w, 0);             /* all parameters in text */
	put_be16(w, (uint16_t)nparams);
	for (int i = 0; i < nparams; i++) {
		put_be32(w, (uint32_t)strlen(vals[i]));
		put_raw(w, vals[i], strlen(vals[i]));
	}
	put_be16(w, 0);             /* all results in text */
	msg_end(w, m);
}

static void m_describe(struct wire *w, char what, const char *name)
{
	size_t m = msg_begin(w, 'D');
	put_raw(w, &what, 1);
	put_cstr(w, name);
	msg_end(w, m);
}

static void m_execute(struct wire *w, const char *portal, uint32_t max_rows)
{
	size_t m = msg_begin(w, 'E');
	put_cstr(w, portal);
	put_be32(w, max_rows);
	msg_end(w, m);
}

/* What libpq sends: simple queries, extended queries, a pipeline, Terminate. */
static void build_client_stream(struct wire *w)
{
	static const char *const one[] = { "42" };
	static const char *const two[] = { "7", "hello world" };

	m_query(w, "SELECT 1");
	m_query(w, "");
	m_parse(w, "", "SELECT $1::int", 1);
	m_bind(w, "", "", 1, one);
	m_describe(w, 'P', "");
	m_execute(w, "", 0);
	m_empty(w, 'S');
	m_parse(w, "s1", "INSERT INTO t VALUES ($1, $2)", 2);
	m_describe(w, 'S', "s1");
	m_empty(w, 'S');
	m_bind(w, "p1", "s1", 2, two);
	m_execute(w, "p1", 100);
	m_bind(w, "p1", "s1", 2, two);
	m_execute(w, "p1", 0);
	m_empty(w, 'S');
	m_empty(w, 'X');
}

/* ---- recording what frame_scan reports ---- */

struct seen {
	char type;
	uint32_t len;
	uint8_t status;
	int has_body;
};

struct recorder {
	struct seen *v;
	size_t count, cap;
	const char *whole;
	/* the bytes offered to the current frame_scan() call */
	const uint8_t *offer;
	size_t offer_len;
	int stop_after_z;  /* return FRAME_STOP_AFTER on 'Z' */
};

static enum frame_verdict record(void *arg, const struct frame_msg *m)
{
	struct recorder *r = arg;

	if (r->count == r->cap) {
		r->cap = r->cap ? r->cap * 2 : 64;
		r->v = realloc(r->v, r->cap * sizeof(*r->v));
		cr_assert_not_null(r->v);
	}
	int whole = r->whole && strchr(r->whole, m->type) && m->len <= FRAME_WHOLE_MAX;
	if (whole) {
		/* A whole message's body must lie inside the bytes offered. */
		cr_assert_not_null(m->body, "type '%c' len %u: whole type reported without body", m->type, m->len);
		cr_assert(m->body >= r->offer + 5 &&
			  m->body + (m->len - 4) <= r->offer + r->offer_len,
			  "type '%c': body outside the offered bytes", m->type);
		cr_assert_eq(m->body[-5], (uint8_t)m->type);
	} else {
		cr_assert_null(m->body, "type '%c' len %u: body given for a type not asked whole", m->type, m->len);
	}
	r->v[r->count++] = (struct seen){
		.type = m->type,
		.len = m->len,
		.status = (m->type == 'Z' && m->body && m->len == 5) ? m->body[0] : 0,
		.has_body = m->body != NULL,
	};
	return (r->stop_after_z && m->type == 'Z') ? FRAME_STOP_AFTER : FRAME_CONTINUE;
}

static void recorder_free(struct recorder *r)
{
	free(r->v);
	memset(r, 0, sizeof(*r));
}

/*
 * The relay's discipline. cuts[] are the stream offsets where reads end
 * (ascending, each in (0, len)); the last read ends at len. After each read
 * the unscanned tail plus the new bytes are offered, copied into an exact
 * allocation. Checks the leftover is never more than a split header or a
 * split whole message.
 */
static void relay_feed(const struct wire *w, const size_t *cuts, size_t ncuts,
		       const char *whole, struct recorder *r)
{
	struct frame f = { 0 };
	size_t scanned = 0;

	r->whole = whole;
	for (size_t i = 0; i <= ncuts; i++) {
		size_t end = i < ncuts ? cuts[i] : w->len;
		size_t n = end - scanned;
		uint8_t *offer = malloc(n ? n : 1);

		cr_assert_not_null(offer);
		memcpy(offer, w->data + scanned, n);
		r->offer = offer;
		r->offer_len = n;
		ssize_t used = frame_scan(&f, offer, n, whole, record, r);
		free(offer);
		cr_assert(used >= 0 && (size_t)used <= n, "read %zu: frame_scan returned %zd of %zu", i, used, n);
		scanned += (size_t)used;
		size_t left = end - scanned;
		if (left >= 5) {
			/* only a whole-type message still incomplete may be held back */
			const uint8_t *h = w->data + scanned;
			uint32_t len = ((uint32_t)h[1] << 24) | ((uint32_t)h[2] << 16) | ((uint32_t)h[3] << 8) | h[4];
			cr_assert(whole && strchr(whole, (char)h[0]) && len <= FRAME_WHOLE_MAX && left < 1 + (size_t)len,
				  "read %zu: %zu bytes held back at offset %zu (type '%c')", i, left, scanned, h[0]);
			cr_assert_eq(f.body_left, 0);
		}
	}
	cr_assert_eq(scanned, w->len, "stream not fully scanned: %zu of %zu", scanned, w->len);
	cr_assert_eq(f.body_left, 0, "body_left %u at the end of the stream", f.body_left);
}

static void assert_matches_wire(const struct wire *w, const struct recorder *r, const char *what)
{
	/* The 'Z' status is only known when 'Z' was asked whole. */
	int z_whole = r->whole && strchr(r->whole, 'Z') && *r->whole;

	cr_assert_eq(r->count, w->count, "%s: %zu messages reported, %zu sent", what, r->count, w->count);
	for (size_t i = 0; i < w->count; i++) {
		cr_assert_eq(r->v[i].type, w->msgs[i].type, "%s: message %zu is '%c', expected '%c'", what, i,
			     r->v[i].type, w->msgs[i].type);
		cr_assert_eq(r->v[i].len, w->msgs[i].len, "%s: message %zu ('%c') len %u, expected %u", what, i,
			     r->v[i].type, r->v[i].len, w->msgs[i].len);
		cr_assert_eq(r->v[i].status, z_whole ? w->msgs[i].status : 0, "%s: message %zu status '%c', expected '%c'", what, i,
			     r->v[i].status, w->msgs[i].status);
	}
}

static void assert_same_scan(const struct recorder *a, const struct recorder *b, const char *what)
{
	cr_assert_eq(a->count, b->count, "%s: %zu messages vs %zu unsplit", what, a->count, b->count);
	for (size_t i = 0; i < a->count; i++) {
		cr_assert(a->v[i].type == b->v[i].type && a->v[i].len == b->v[i].len &&
			  a->v[i].status == b->v[i].status && a->v[i].has_body == b->v[i].has_body,
			  "%s: message %zu differs: '%c'/%u/'%c' vs unsplit '%c'/%u/'%c'", what, i,
			  a->v[i].type, a->v[i].len, a->v[i].status, b->v[i].type, b->v[i].len, b->v[i].status);
	}
}

/* Deterministic PRNG (xorshift64*), independent of the libc. */
static uint64_t rng_state;

static uint64_t rng_next(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1DULL;
}

static size_t rng_range(size_t lo, size_t hi)
{
	return lo + (size_t)(rng_next() % (hi - lo + 1));
}

static void check_every_single_split(const struct wire *w, const char *whole)
{
	struct recorder unsplit = { 0 };

	relay_feed(w, NULL, 0, whole, &unsplit);
	assert_matches_wire(w, &unsplit, "unsplit");
	for (size_t cut = 1; cut < w->len; cut++) {
		struct recorder r = { 0 };
		char what[64];

		snprintf(what, sizeof(what), "split at %zu", cut);
		relay_feed(w, &cut, 1, whole, &r);
		assert_same_scan(&r, &unsplit, what);
		recorder_free(&r);
	}
	recorder_free(&unsplit);
}

static void check_random_splits(const struct wire *w, const char *whole, uint64_t seed, int patterns)
{
	struct recorder unsplit = { 0 };
	size_t *cuts = malloc(w->len * sizeof(*cuts));

	cr_assert_not_null(cuts);
	relay_feed(w, NULL, 0, whole, &unsplit);
	assert_matches_wire(w, &unsplit, "unsplit");
	rng_state = seed;
	for (int p = 0; p < patterns; p++) {
		/* Chunk sizes from tiny (header-splitting) to socket-read sized. */
		static const size_t max_chunk[] = { 1, 3, 7, 16, 64, 600, 5000, 20000 };
		size_t hi = max_chunk[p % 8];
		size_t ncuts = 0, at = 0;
		for (;;) {
			at += rng_range(1, hi);
			if (at >= w->len)
				break;
			cuts[ncuts++] = at;
		}
		struct recorder r = { 0 };
		char what[64];
		snprintf(what, sizeof(what), "pattern %d (%zu cuts, chunks <= %zu)", p, ncuts, hi);
		relay_feed(w, cuts, ncuts, whole, &r);
		assert_same_scan(&r, &unsplit, what);
		recorder_free(&r);
	}
	free(cuts);
	recorder_free(&unsplit);
}

/* ---- the stream-splitting property ---- */

Test(frame_split, server_stream_is_built_as_intended)
{
	struct wire w = { 0 };

	build_server_stream(&w);
	cr_assert_gt(w.len, 64 * 1024 + 100);
	cr_assert_eq(w.count, 34);
	/* the big DataRow really is > 64 KiB and > FRAME_WHOLE_MAX */
	int big = 0;
	for (size_t i = 0; i < w.count; i++)
		if (w.msgs[i].type == 'D' && w.msgs[i].len > 64 * 1024)
			big++;
	cr_assert_eq(big, 1);
	wire_free(&w);
}

Test(frame_split, server_stream_unsplit_reports_every_message)
{
	struct wire w = { 0 };
	struct recorder r = { 0 };

	build_server_stream(&w);
	relay_feed(&w, NULL, 0, "Z", &r);
	assert_matches_wire(&w, &r, "unsplit");
	/* the ReadyForQuery statuses, in order */
	char statuses[16] = { 0 };
	size_t nz = 0;
	for (size_t i = 0; i < r.count; i++)
		if (r.v[i].type == 'Z') {
			cr_assert(r.v[i].has_body);
			cr_assert_eq(r.v[i].len, 5);
			statuses[nz++] = (char)r.v[i].status;
		}
	cr_assert_str_eq(statuses, "ITTTEIIII");
	recorder_free(&r);
	wire_free(&w);
}

Test(frame_split, server_stream_every_single_split, .timeout = 120)
{
	struct wire w = { 0 };

	build_server_stream(&w);
	check_every_single_split(&w, "Z");
	wire_free(&w);
}

Test(frame_split, server_stream_random_multi_splits, .timeout = 120)
{
	struct wire w = { 0 };

	build_server_stream(&w);
	check_random_splits(&w, "Z", 0x5eed0001u, 800);
	wire_free(&w);
}

Test(frame_split, server_stream_no_whole_types_every_single_split, .timeout = 120)
{
	struct wire w = { 0 };

	build_server_stream(&w);
	check_every_single_split(&w, "");
	check_random_splits(&w, NULL, 0x5eed0002u, 200);
	wire_free(&w);
}

/* Several whole types at once, including empty-bodied ones. */
Test(frame_split, server_stream_many_whole_types, .timeout = 120)
{
	struct wire w = { 0 };

	build_server_stream(&w);
	check_every_single_split(&w, "ZC12nE");
	check_random_splits(&w, "ZC12nE", 0x5eed0003u, 200);
	wire_free(&w);
}

Test(frame_split, client_stream_unsplit)
{
	struct wire w = { 0 };
	struct recorder r = { 0 };
	char types[32] = { 0 };

	build_client_stream(&w);
	relay_feed(&w, NULL, 0, "", &r);
	assert_matches_wire(&w, &r, "unsplit");
	for (size_t i = 0; i < r.count; i++)
		types[i] = r.v[i].type;
	cr_assert_str_eq(types, "QQPBDESPDSBEBESX");
	cr_assert_eq(r.v[1].len, 5);  /* Q with the empty string */
	cr_assert_eq(r.v[6].len, 4);  /* Sync */
	cr_assert_eq(r.v[15].len, 4); /* Terminate */
	recorder_free(&r);
	wire_free(&w);
}

Test(frame_split, client_stream_every_split)
{
	struct wire w = { 0 };

	build_client_stream(&w);
	check_every_single_split(&w, "");
	check_random_splits(&w, "", 0x5eed0004u, 2000);
	check_every_single_split(&w, "QPBSX");
	check_random_splits(&w, "QPBSX", 0x5eed0005u, 500);
	wire_free(&w);
}

/* Every pair of split points on a short stream of back-to-back small messages. */
Test(frame_split, small_messages_every_double_split)
{
	struct wire w = { 0 };
	struct recorder unsplit = { 0 };

	m_ready(&w, 'I');
	m_empty(&w, 'n');
	m_ready(&w, 'T');
	m_empty(&w, '1');
	m_empty(&w, '2');
	m_cstr(&w, 'C', "SELECT 0");
	m_ready(&w, 'E');
	m_ready(&w, 'I');
	relay_feed(&w, NULL, 0, "Z", &unsplit);
	assert_matches_wire(&w, &unsplit, "unsplit");
	for (size_t a = 1; a < w.len; a++)
		for (size_t b = a + 1; b < w.len; b++) {
			size_t cuts[2] = { a, b };
			struct recorder r = { 0 };
			char what[64];
			snprintf(what, sizeof(what), "splits at %zu,%zu", a, b);
			relay_feed(&w, cuts, 2, "Z", &r);
			assert_same_scan(&r, &unsplit, what);
			recorder_free(&r);
		}
	/* and one byte at a time */
	size_t cuts[128];
	cr_assert_lt(w.len, 128);
	for (size_t i = 1; i < w.len; i++)
		cuts[i - 1] = i;
	struct recorder r = { 0 };
	relay_feed(&w, cuts, w.len - 1, "Z", &r);
	assert_same_scan(&r, &unsplit, "byte by byte");
	recorder_free(&r);
	recorder_free(&unsplit);
	wire_free(&w);
}

/* ---- single calls: verdicts, limits, partial data ---- */

struct calls {
	int n;
	char types[16];
	uint32_t lens[16];
	const uint8_t *bodies[16];
	enum frame_verdict verdict[16]; /* verdict for the i-th call */
};

static enum frame_verdict scripted(void *arg, const struct frame_msg *m)
{
	struct calls *c = arg;

	cr_assert_lt(c->n, 16);
	c->types[c->n] = m->type;
	c->lens[c->n] = m->len;
	c->bodies[c->n] = m->body;
	return c->verdict[c->n++];
}

static size_t hdr(uint8_t *p, char type, uint32_t len)
{
	p[0] = (uint8_t)type;
	p[1] = (uint8_t)(len >> 24);
	p[2] = (uint8_t)(len >> 16);
	p[3] = (uint8_t)(len >> 8);
	p[4] = (uint8_t)len;
	return 5;
}

Test(frame, stop_before_leaves_the_message_unscanned)
{
	uint8_t buf[32];
	size_t n = 0;
	struct frame f = { 0 };
	struct calls c = { .verdict = { FRAME_CONTINUE, FRAME_STOP_BEFORE } };

	n += hdr(buf + n, 'C', 4 + 3);
	memcpy(buf + n, "AB", 3);
	n += 3;
	size_t second = n;
	n += hdr(buf + n, 'Z', 5);
	buf[n++] = 'I';
	n += hdr(buf + n, 'n', 4);

	ssize_t used = frame_scan(&f, buf, n, "Z", scripted, &c);
	cr_assert_eq(used, (ssize_t)second);
	cr_assert_eq(c.n, 2);
	cr_assert_eq(c.types[1], 'Z');
	cr_assert_eq(f.body_left, 0);

	/* Offered again, the same message is reported again, then the rest. */
	c.verdict[2] = FRAME_CONTINUE;
	c.verdict[3] = FRAME_CONTINUE;
	used = frame_scan(&f, buf + second, n - second, "Z", scripted, &c);
	cr_assert_eq(used, (ssize_t)(n - second));
	cr_assert_eq(c.n, 4);
	cr_assert_eq(c.types[2], 'Z');
	cr_assert_eq(c.bodies[2], buf + second + 5);
	cr_assert_eq(c.types[3], 'n');
	cr_assert_eq(c.lens[3], 4);
}

Test(frame, stop_before_on_a_passed_through_type_keeps_its_header)
{
	uint8_t buf[32];
	struct frame f = { 0 };
	struct calls c = { .verdict = { FRAME_STOP_BEFORE } };
	size_t n = hdr(buf, 'X', 4);

	cr_assert_eq(frame_scan(&f, buf, n, "", scripted, &c), 0);
	cr_assert_eq(c.n, 1);
	cr_assert_eq(c.types[0], 'X');
	cr_assert_eq(f.body_left, 0);
}

Test(frame, stop_after_consumes_the_message)
{
	uint8_t buf[64];
	size_t n = 0;
	struct frame f = { 0 };
	struct calls c = { .verdict = { FRAME_STOP_AFTER, FRAME_CONTINUE } };

	n += hdr(buf + n, 'Z', 5);
	buf[n++] = 'T';
	size_t first_end = n;
	n += hdr(buf + n, 'D', 4 + 10);
	memset(buf + n, 'x', 10);
	n += 10;

	cr_assert_eq(frame_scan(&f, buf, n, "Z", scripted, &c), (ssize_t)first_end);
	cr_assert_eq(c.n, 1);
	cr_assert_eq(c.bodies[0][0], 'T');
	cr_assert_eq(f.body_left, 0);
}

Test(frame, stop_after_on_a_passed_through_type_leaves_the_body_to_pass)
{
	uint8_t buf[64];
	size_t n = 0;
	struct frame f = { 0 };
	struct calls c = { .verdict = { FRAME_STOP_AFTER, FRAME_CONTINUE } };

	n += hdr(buf + n, 'D', 4 + 10);
	memset(buf + n, 'x', 10);
	n += 10;
	n += hdr(buf + n, 'C', 4);

	/* Only the header is consumed; the body is owed. */
	cr_assert_eq(frame_scan(&f, buf, n, "Z", scripted, &c), 5);
	cr_assert_eq(f.body_left, 10);
	cr_assert_eq(c.n, 1);
	/* The next call passes the body and goes on. */
	cr_assert_eq(frame_scan(&f, buf + 5, n - 5, "Z", scripted, &c), (ssize_t)(n - 5));
	cr_assert_eq(c.n, 2);
	cr_assert_eq(c.types[1], 'C');
	cr_assert_eq(f.body_left, 0);
}

Test(frame, callback_error_is_minus_one)
{
	uint8_t buf[16];
	struct frame f = { 0 };
	struct calls c = { .verdict = { FRAME_ERROR } };
	size_t n = hdr(buf, 'Q', 4 + 1);

	buf[n++] = 0;
	cr_assert_eq(frame_scan(&f, buf, n, "", scripted, &c), -1);
	cr_assert_eq(c.n, 1);
}

Test(frame, length_below_four_is_an_error)
{
	for (uint32_t len = 0; len < 4; len++) {
		uint8_t buf[16] = { 0 };
		struct frame f = { 0 };
		struct calls c = { 0 };
		size_t n = hdr(buf, 'D', len);
		cr_assert_eq(frame_scan(&f, buf, n + 8, "", scripted, &c), -1, "len %u", len);
		cr_assert_eq(c.n, 0, "callback called for len %u", len);
		f = (struct frame){ 0 };
		cr_assert_eq(frame_scan(&f, buf, n + 8, "D", scripted, &c), -1, "whole, len %u", len);
		cr_assert_eq(c.n, 0);
	}
}

Test(frame, length_above_the_limit_is_an_error)
{
	static const uint32_t bad[] = { FRAME_MAX_LEN + 1, 0x40000000u, 0x7fffffffu, 0x80000000u, 0xffffffffu };

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		uint8_t buf[16] = { 0 };
		struct frame f = { 0 };
		struct calls c = { 0 };
		size_t n = hdr(buf, 'D', bad[i]);
		cr_assert_eq(frame_scan(&f, buf, n, "", scripted, &c), -1, "len 0x%x", bad[i]);
		cr_assert_eq(c.n, 0);
		cr_assert_eq(frame_scan(&f, buf, n, "D", scripted, &c), -1, "whole, len 0x%x", bad[i]);
	}
}

Test(frame, bad_length_after_good_messages_is_an_error)
{
	uint8_t buf[32] = { 0 };
	size_t n = 0;
	struct frame f = { 0 };
	struct calls c = { .verdict = { FRAME_CONTINUE } };

	n += hdr(buf + n, '1', 4);
	n += hdr(buf + n, '2', 3);
	cr_assert_eq(frame_scan(&f, buf, n, "", scripted, &c), -1);
	cr_assert_eq(c.n, 1);
}

Test(frame, limits_are_accepted)
{
	uint8_t buf[16] = { 0 };
	struct frame f = { 0 };
	struct calls c = { .verdict = { FRAME_CONTINUE, FRAME_CONTINUE } };
	size_t n = hdr(buf, 'D', FRAME_MAX_LEN);

	cr_assert_eq(frame_scan(&f, buf, n + 3, "", scripted, &c), (ssize_t)(n + 3));
	cr_assert_eq(c.n, 1);
	cr_assert_eq(c.lens[0], FRAME_MAX_LEN);
	cr_assert_eq(f.body_left, FRAME_MAX_LEN - 4 - 3);

	f = (struct frame){ 0 };
	n = hdr(buf, 'n', 4);
	cr_assert_eq(frame_scan(&f, buf, n, "", scripted, &c), 5);
	cr_assert_eq(c.n, 2);
	cr_assert_eq(c.lens[1], 4);
	cr_assert_eq(f.body_left, 0);
}

Test(frame, split_header_is_left_unscanned)
{
	uint8_t buf[16];
	size_t n = hdr(buf, 'D', 4 + 2);

	buf[n++] = 'a';
	buf[n++] = 'b';
	for (size_t k = 0; k < 5; k++) {
		struct frame f = { 0 };
		struct calls c = { 0 };
		cr_assert_eq(frame_scan(&f, buf, k, "", scripted, &c), 0, "k=%zu", k);
		cr_assert_eq(c.n, 0);
		cr_assert_eq(f.body_left, 0);
	}
	/* With the header complete but the body not, the header is consumed. */
	struct frame f = { 0 };
	struct calls c = { .verdict = { FRAME_CONTINUE } };
	cr_assert_eq(frame_scan(&f, buf, 6, "", scripted, &c), 6);
	cr_assert_eq(f.body_left, 1);
	cr_assert_eq(c.n, 1);
}

Test(frame, split_whole_message_is_left_unscanned_without_a_callback)
{
	uint8_t buf[32];
	size_t n = 0;

	n += hdr(buf + n, 'n', 4);
	size_t z = n;
	n += hdr(buf + n, 'E', 4 + 6);
	memcpy(buf + n, "Mboom", 6);
	n += 6;
	for (size_t k = z; k < n; k++) {
		struct frame f = { 0 };
		struct calls c = { .verdict = { FRAME_CONTINUE, FRAME_CONTINUE } };
		cr_assert_eq(frame_scan(&f, buf, k, "E", scripted, &c), (ssize_t)z, "k=%zu", k);
		cr_assert_eq(c.n, 1, "k=%zu: the partial 'E' must not be reported", k);
		cr_assert_eq(f.body_left, 0);
	}
	struct frame f = { 0 };
	struct calls c = { .verdict = { FRAME_CONTINUE, FRAME_CONTINUE } };
	cr_assert_eq(frame_scan(&f, buf, n, "E", scripted, &c), (ssize_t)n);
	cr_assert_eq(c.n, 2);
	cr_assert_eq(c.bodies[1], buf + z + 5);
	cr_assert_eq(memcmp(c.bodies[1], "Mboom", 6), 0);
}

Test(frame, whole_type_of_empty_body_has_a_body_pointer)
{
	uint8_t buf[8];
	struct frame f = { 0 };
	struct calls c = { .verdict = { FRAME_CONTINUE } };
	size_t n = hdr(buf, '1', 4);

	cr_assert_eq(frame_scan(&f, buf, n, "1", scripted, &c), 5);
	cr_assert_eq(c.n, 1);
	cr_assert_eq(c.bodies[0], buf + 5);
	cr_assert_eq(f.body_left, 0);
}

Test(frame, whole_type_at_the_limit_is_whole)
{
	size_t total = 1 + FRAME_WHOLE_MAX;
	uint8_t *buf = calloc(1, total);
	struct frame f = { 0 };
	struct calls c = { .verdict = { FRAME_CONTINUE } };

	cr_assert_not_null(buf);
	hdr(buf, 'E', FRAME_WHOLE_MAX);
	/* One byte short: held back. */
	cr_assert_eq(frame_scan(&f, buf, total - 1, "E", scripted, &c), 0);
	cr_assert_eq(c.n, 0);
	cr_assert_eq(frame_scan(&f, buf, total, "E", scripted, &c), (ssize_t)total);
	cr_assert_eq(c.n, 1);
	cr_assert_eq(c.bodies[0], buf + 5);
	cr_assert_eq(c.lens[0], FRAME_WHOLE_MAX);
	cr_assert_eq(f.body_left, 0);
	free(buf);
}

Test(frame, whole_type_longer_than_the_limit_is_reported_without_body)
{
	uint32_t len = FRAME_WHOLE_MAX + 1;
	size_t total = 1 + len + 6;
	uint8_t *buf = calloc(1, total);
	struct frame f = { 0 };
	struct calls c = { .verdict = { FRAME_CONTINUE, FRAME_CONTINUE } };

	cr_assert_not_null(buf);
	hdr(buf, 'E', len);
	hdr(buf + 1 + len, 'Z', 5);
	buf[total - 1] = 'I';

	/* Reported as soon as the header is there, body NULL, body passed. */
	cr_assert_eq(frame_scan(&f, buf, 100, "EZ", scripted, &c), 100);
	cr_assert_eq(c.n, 1);
	cr_assert_eq(c.types[0], 'E');
	cr_assert_eq(c.lens[0], len);
	cr_assert_null(c.bodies[0]);
	cr_assert_eq(f.body_left, len - 4 - 95);
	cr_assert_eq(frame_scan(&f, buf + 100, total - 100, "EZ", scripted, &c), (ssize_t)(total - 100));
	cr_assert_eq(c.n, 2);
	cr_assert_eq(c.types[1], 'Z');
	cr_assert_eq(c.bodies[1][0], 'I');
	cr_assert_eq(f.body_left, 0);
	free(buf);
}

Test(frame, body_passes_across_calls_without_callbacks)
{
	uint8_t buf[64] = { 0 };
	struct frame f = { .body_left = 40 };
	struct calls c = { .verdict = { FRAME_CONTINUE } };

	cr_assert_eq(frame_scan(&f, buf, 30, "Z", scripted, &c), 30);
	cr_assert_eq(f.body_left, 10);
	cr_assert_eq(c.n, 0);
	hdr(buf + 10, 'Z', 5);
	buf[15] = 'E';
	cr_assert_eq(frame_scan(&f, buf, 16, "Z", scripted, &c), 16);
	cr_assert_eq(c.n, 1);
	cr_assert_eq(c.bodies[0], buf + 15);
	cr_assert_eq(f.body_left, 0);
}

Test(frame, empty_offer_scans_nothing)
{
	struct frame f = { 0 };
	struct calls c = { 0 };
	uint8_t b = 0;

	cr_assert_eq(frame_scan(&f, &b, 0, "Z", scripted, &c), 0);
	cr_assert_eq(c.n, 0);
}

Test(frame, type_nul_is_never_whole)
{
	/* strchr() finds the terminator: a NUL type byte must not count as whole. */
	uint8_t buf[16] = { 0 };
	struct frame f = { 0 };
	struct calls c = { .verdict = { FRAME_CONTINUE } };
	size_t n = hdr(buf, '\0', 4 + 3);

	cr_assert_eq(frame_scan(&f, buf, n, "Z", scripted, &c), 5);
	cr_assert_eq(c.n, 1);
	cr_assert_null(c.bodies[0]);
	cr_assert_eq(f.body_left, 3);
}

/* ---- how far a failed scan got ---- */

static enum frame_verdict refuse_p(void *arg, const struct frame_msg *m)
{
	(*(int *)arg)++;
	return m->type == 'p' ? FRAME_ERROR : FRAME_CONTINUE;
}

Test(frame, error_reports_the_bytes_scanned_before_the_bad_message)
{
	/* Q "x" (7 bytes), then a refused 'p', then a header with length 2. */
	static const uint8_t bad_type[] = { 'Q', 0, 0, 0, 6, 'x', 0, 'p', 0, 0, 0, 4 };
	static const uint8_t bad_len[] = { 'Q', 0, 0, 0, 6, 'x', 0, 'S', 0, 0, 0, 4, 'Q', 0, 0, 0, 2 };
	struct frame f = { 0 };
	int calls = 0;

	cr_assert_eq(frame_scan(&f, bad_type, sizeof(bad_type), "", refuse_p, &calls), -1);
	cr_assert_eq(f.error_at, 7);
	cr_assert_eq(calls, 2);
	f = (struct frame){ 0 };
	calls = 0;
	cr_assert_eq(frame_scan(&f, bad_len, sizeof(bad_len), "", refuse_p, &calls), -1);
	cr_assert_eq(f.error_at, 12);
	cr_assert_eq(calls, 2);
}
