/*
 * test_lease.c — Criterion tests for pool/lease.c: lease_clean_step(), the
 * exit decision table (see "The exit matrix" in pool/README.md), the exit
 * reasons, and entering a lease without a backend.
 *
 * For the table: one test per row, tests for the order between rows, an
 * exhaustive check of every combination of inputs against the table
 * written out as data, and walks through whole cleaning sequences that
 * apply the effects clean_poll() applies after each step.
 */
#include <criterion/criterion.h>
#include <ev.h>
#include <stdint.h>
#include <string.h>

#include "../lib/client_pair.h"
#include "config.h"
#include "frame.h"
#include "lease.h"
#include "stats.h"
#include "stream.h"

static struct stream clean_stream(void)
{
	struct stream st;

	stream_reset(&st);
	return st;
}

static enum clean_step step_of(const struct stream *st, bool lost, bool rolled_back, bool reset, bool cancels)
{
	struct clean_input in = {
		.stream = st,
		.server_lost = lost,
		.rolled_back = rolled_back,
		.reset_needed = reset,
		.cancels_pending = cancels,
	};
	return lease_clean_step(&in);
}

static enum clean_step step(const struct stream *st)
{
	return step_of(st, false, false, false, false);
}

static const char *step_name(enum clean_step s)
{
	switch (s) {
	case CLEAN_DISCARD: return "DISCARD";
	case CLEAN_COPY_FAIL: return "COPY_FAIL";
	case CLEAN_SYNC: return "SYNC";
	case CLEAN_DRAIN: return "DRAIN";
	case CLEAN_WAIT_CANCEL: return "WAIT_CANCEL";
	case CLEAN_ROLLBACK: return "ROLLBACK";
	case CLEAN_RESET: return "RESET";
	case CLEAN_DONE: return "DONE";
	}
	return "?";
}

#define assert_step(got, want) \
	cr_assert_eq((got), (want), "step %s, expected %s", step_name(got), step_name(want))

/* ---- one test per row ---- */

Test(clean_step, clean_is_done)
{
	struct stream st = clean_stream();

	assert_step(step(&st), CLEAN_DONE);
}

Test(clean_step, server_lost_is_discard)
{
	struct stream st = clean_stream();

	assert_step(step_of(&st, true, false, false, false), CLEAN_DISCARD);
}

Test(clean_step, half_a_message_sent_is_discard)
{
	struct stream st = clean_stream();

	st.to_server.body_left = 1;
	assert_step(step(&st), CLEAN_DISCARD);
	st.to_server.body_left = 0x3ffffffb;
	assert_step(step(&st), CLEAN_DISCARD);
}

Test(clean_step, copy_in_is_copy_fail)
{
	struct stream st = clean_stream();

	st.copy_in = true;
	assert_step(step(&st), CLEAN_COPY_FAIL);
}

Test(clean_step, unsynced_is_sync)
{
	struct stream st = clean_stream();

	st.unsynced = true;
	assert_step(step(&st), CLEAN_SYNC);
}

Test(clean_step, owed_replies_is_drain)
{
	struct stream st = clean_stream();

	st.owed_z = 1;
	assert_step(step(&st), CLEAN_DRAIN);
	st.owed_z = 7;
	assert_step(step(&st), CLEAN_DRAIN);
}

/* An asynchronous message (a NOTICE, a NOTIFY) split inside its header while nothing was owed. */
Test(clean_step, half_a_backend_header_carried_is_drain)
{
	struct stream st = clean_stream();
	struct clean_input in = { .stream = &st, .header_carried = true };

	assert_step(lease_clean_step(&in), CLEAN_DRAIN);
	in.header_carried = false;
	assert_step(lease_clean_step(&in), CLEAN_DONE);
}

Test(clean_step, partial_backend_message_is_drain)
{
	struct stream st = clean_stream();

	st.from_server.body_left = 100;
	assert_step(step(&st), CLEAN_DRAIN);
}

Test(clean_step, cancel_pending_is_wait_cancel)
{
	struct stream st = clean_stream();

	assert_step(step_of(&st, false, false, false, true), CLEAN_WAIT_CANCEL);
}

Test(clean_step, in_transaction_is_rollback)
{
	struct stream st = clean_stream();

	st.txstatus = 'T';
	assert_step(step(&st), CLEAN_ROLLBACK);
}

Test(clean_step, failed_transaction_is_rollback)
{
	struct stream st = clean_stream();

	st.txstatus = 'E';
	assert_step(step(&st), CLEAN_ROLLBACK);
}

Test(clean_step, still_in_transaction_after_rollback_is_discard)
{
	struct stream st = clean_stream();

	st.txstatus = 'T';
	assert_step(step_of(&st, false, true, false, false), CLEAN_DISCARD);
	st.txstatus = 'E';
	assert_step(step_of(&st, false, true, false, false), CLEAN_DISCARD);
	st.txstatus = 'E';
	assert_step(step_of(&st, false, true, true, false), CLEAN_DISCARD);
}

Test(clean_step, idle_after_rollback_goes_on)
{
	struct stream st = clean_stream();

	assert_step(step_of(&st, false, true, false, false), CLEAN_DONE);
	assert_step(step_of(&st, false, true, true, false), CLEAN_RESET);
}

Test(clean_step, session_reset_is_reset)
{
	struct stream st = clean_stream();

	assert_step(step_of(&st, false, false, true, false), CLEAN_RESET);
}

Test(clean_step, pure_does_not_change_the_stream)
{
	struct stream st = clean_stream();

	st.copy_in = true;
	st.unsynced = true;
	st.owed_z = 3;
	st.txstatus = 'E';
	struct stream before = st;
	for (int i = 0; i < 3; i++)
		assert_step(step_of(&st, false, false, true, true), CLEAN_COPY_FAIL);
	cr_assert_eq(memcmp(&st, &before, sizeof(st)), 0);
}

/* ---- order between rows ---- */

Test(clean_step, server_lost_beats_everything)
{
	struct stream st = clean_stream();

	st.to_server.body_left = 3;
	st.copy_in = true;
	st.unsynced = true;
	st.owed_z = 2;
	st.from_server.body_left = 9;
	st.txstatus = 'E';
	assert_step(step_of(&st, true, false, true, true), CLEAN_DISCARD);
	st.to_server.body_left = 0;
	assert_step(step_of(&st, true, false, true, true), CLEAN_DISCARD);
}

Test(clean_step, half_sent_beats_copy_in)
{
	struct stream st = clean_stream();

	st.to_server.body_left = 3;
	st.copy_in = true;
	st.owed_z = 1;
	assert_step(step(&st), CLEAN_DISCARD);
}

Test(clean_step, copy_in_beats_owed)
{
	struct stream st = clean_stream();

	st.copy_in = true;
	st.owed_z = 1;
	assert_step(step(&st), CLEAN_COPY_FAIL);
}

Test(clean_step, copy_in_beats_unsynced)
{
	struct stream st = clean_stream();

	st.copy_in = true;
	st.unsynced = true;
	assert_step(step(&st), CLEAN_COPY_FAIL);
}

Test(clean_step, unsynced_beats_owed)
{
	struct stream st = clean_stream();

	st.unsynced = true;
	st.owed_z = 2;
	assert_step(step(&st), CLEAN_SYNC);
}

Test(clean_step, unsynced_beats_transaction)
{
	struct stream st = clean_stream();

	st.unsynced = true;
	st.txstatus = 'T';
	assert_step(step(&st), CLEAN_SYNC);
}

Test(clean_step, drain_beats_cancel_wait)
{
	struct stream st = clean_stream();

	st.owed_z = 1;
	assert_step(step_of(&st, false, false, false, true), CLEAN_DRAIN);
	st.owed_z = 0;
	st.from_server.body_left = 1;
	assert_step(step_of(&st, false, false, false, true), CLEAN_DRAIN);
}

Test(clean_step, drain_beats_transaction)
{
	struct stream st = clean_stream();

	st.owed_z = 1;
	st.txstatus = 'T';
	assert_step(step_of(&st, false, true, true, false), CLEAN_DRAIN);
}

Test(clean_step, cancel_wait_beats_rollback_and_reset)
{
	struct stream st = clean_stream();

	st.txstatus = 'T';
	assert_step(step_of(&st, false, false, true, true), CLEAN_WAIT_CANCEL);
	assert_step(step_of(&st, false, true, true, true), CLEAN_WAIT_CANCEL);
}

Test(clean_step, rollback_beats_reset)
{
	struct stream st = clean_stream();

	st.txstatus = 'E';
	assert_step(step_of(&st, false, false, true, false), CLEAN_ROLLBACK);
}

/*
 * Every combination of inputs against the matrix of pool/README.md, written
 * out as data: the first row whose condition holds gives the step.
 */
struct combo {
	bool lost, half_sent, copy_in, unsynced, owed, half_read, cancels, rolled_back, reset;
	char tx;
};

static enum clean_step matrix(const struct combo *c)
{
	const struct {
		bool when;
		enum clean_step then;
	} rows[] = {
		{ c->lost, CLEAN_DISCARD },
		{ c->half_sent, CLEAN_DISCARD },
		{ c->copy_in, CLEAN_COPY_FAIL },
		{ c->unsynced, CLEAN_SYNC },
		{ c->owed || c->half_read, CLEAN_DRAIN },
		{ c->cancels, CLEAN_WAIT_CANCEL },
		{ c->tx != 'I' && c->rolled_back, CLEAN_DISCARD },
		{ c->tx != 'I', CLEAN_ROLLBACK },
		{ c->reset, CLEAN_RESET },
		{ true, CLEAN_DONE },
	};
	for (size_t i = 0;; i++)
		if (rows[i].when)
			return rows[i].then;
}

Test(clean_step, every_combination_follows_the_matrix)
{
	static const char txs[] = "ITE";
	int checked = 0;

	for (unsigned bits = 0; bits < (1u << 9); bits++)
		for (int t = 0; t < 3; t++) {
			struct combo c = {
				.lost = bits & 1, .half_sent = bits & 2, .copy_in = bits & 4,
				.unsynced = bits & 8, .owed = bits & 16, .half_read = bits & 32,
				.cancels = bits & 64, .rolled_back = bits & 128, .reset = bits & 256,
				.tx = txs[t],
			};
			struct stream st = clean_stream();
			st.to_server.body_left = c.half_sent ? 17 : 0;
			st.copy_in = c.copy_in;
			st.unsynced = c.unsynced;
			st.owed_z = c.owed ? 2 : 0;
			st.from_server.body_left = c.half_read ? 5 : 0;
			st.txstatus = c.tx;
			enum clean_step got = step_of(&st, c.lost, c.rolled_back, c.reset, c.cancels);
			enum clean_step want = matrix(&c);
			cr_assert_eq(got, want, "inputs 0x%03x tx '%c': %s, expected %s", bits, c.tx,
				     step_name(got), step_name(want));
			checked++;
		}
	cr_assert_eq(checked, 512 * 3);
}

/* ---- walks through a whole cleaning ---- */

struct stream_bytes {
	uint8_t data[1024];
	size_t len;
};

static void msg(struct stream_bytes *b, char type, const void *body, size_t n)
{
	uint32_t len = (uint32_t)n + 4;
	uint8_t h[5] = { (uint8_t)type, (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
			 (uint8_t)len };

	cr_assert_leq(b->len + 5 + n, sizeof(b->data));
	memcpy(b->data + b->len, h, 5);
	if (n)
		memcpy(b->data + b->len + 5, body, n);
	b->len += 5 + n;
}

static enum frame_verdict on_client(void *arg, const struct frame_msg *m)
{
	return stream_client_msg(arg, m);
}

static enum frame_verdict on_server(void *arg, const struct frame_msg *m)
{
	return stream_server_msg(arg, m);
}

static void client_sends(struct stream *st, const struct stream_bytes *b)
{
	cr_assert_eq(frame_scan(&st->to_server, b->data, b->len, STREAM_CLIENT_WHOLE, on_client, st),
		     (ssize_t)b->len);
}

static void server_sends(struct stream *st, const struct stream_bytes *b)
{
	cr_assert_eq(frame_scan(&st->from_server, b->data, b->len, STREAM_SERVER_WHOLE, on_server, st),
		     (ssize_t)b->len);
}

static const uint8_t copy_in_response[] = { 0, 0, 1, 0, 0 }; /* text, 1 column */
static const char copy_error[] = "SERROR\0C57014\0MCOPY from stdin failed: client disconnected (pglease)\0";

/*
 * The backend side of a cleaning, as a script of reads. DRAIN consumes the
 * next read the way drain_scan() does: frame it, keep a split header.
 */
struct walk {
	struct stream st;
	bool lost, rolled_back, reset_needed, cancels_pending;
	const struct stream_bytes *reads;  /* what the backend sends, read by read */
	size_t nreads, next_read;
	uint8_t carry[16];
	size_t carry_len;
	char trail[256];            /* the steps taken, space-separated */
	bool rollback_leaves_idle;  /* what the ROLLBACK ends with */
};

static void drain_one_read(struct walk *w)
{
	uint8_t buf[2048];

	cr_assert_lt(w->next_read, w->nreads, "DRAIN asked for a read the backend never sends (trail: %s)",
		     w->trail);
	const struct stream_bytes *r = &w->reads[w->next_read++];
	memcpy(buf, w->carry, w->carry_len);
	memcpy(buf + w->carry_len, r->data, r->len);
	size_t n = w->carry_len + r->len;
	ssize_t used = frame_scan(&w->st.from_server, buf, n, STREAM_SERVER_WHOLE, on_server, &w->st);
	cr_assert_geq(used, 0, "protocol violation while draining");
	w->carry_len = n - (size_t)used;
	cr_assert_leq(w->carry_len, sizeof(w->carry));
	memcpy(w->carry, buf + used, w->carry_len);
}

/* Ask the table, apply the step as clean_poll() does, until DONE or DISCARD. */
static enum clean_step walk_run(struct walk *w)
{
	for (int guard = 0; guard < 32; guard++) {
		enum clean_step s = step_of(&w->st, w->lost, w->rolled_back, w->reset_needed, w->cancels_pending);
		if (*w->trail)
			strcat(w->trail, " ");
		strcat(w->trail, step_name(s));
		switch (s) {
		case CLEAN_DISCARD:
		case CLEAN_DONE:
			return s;
		case CLEAN_COPY_FAIL: /* send_copy_fail() */
			w->st.copy_in = false;
			if (w->st.owed_z == 0)
				w->st.unsynced = true;
			break;
		case CLEAN_SYNC:      /* send_sync() */
			w->st.unsynced = false;
			w->st.owed_z++;
			break;
		case CLEAN_DRAIN:     /* drain_readable() */
			drain_one_read(w);
			break;
		case CLEAN_WAIT_CANCEL: /* lease_cancel_done() once the cancel went out */
			w->cancels_pending = false;
			break;
		case CLEAN_ROLLBACK:  /* rollback_done() */
			w->rolled_back = true;
			if (w->rollback_leaves_idle)
				w->st.txstatus = 'I';
			break;
		case CLEAN_RESET:     /* reset_done() */
			w->reset_needed = false;
			break;
		}
	}
	cr_assert_fail("cleaning did not end: %s", w->trail);
	return CLEAN_DISCARD;
}

/* The client ran BEGIN, then COPY t FROM STDIN by simple query, and vanished. */
static void copy_in_simple_query_then_vanish(struct walk *w)
{
	struct stream_bytes c = { .len = 0 }, s = { .len = 0 };

	stream_reset(&w->st);
	msg(&c, 'Q', "BEGIN", 6);
	client_sends(&w->st, &c);
	msg(&s, 'C', "BEGIN", 6);
	msg(&s, 'Z', "T", 1);
	server_sends(&w->st, &s);

	c.len = s.len = 0;
	msg(&c, 'Q', "COPY t FROM STDIN", 18);
	client_sends(&w->st, &c);
	msg(&s, 'G', copy_in_response, sizeof(copy_in_response));
	server_sends(&w->st, &s);
	c.len = 0;
	msg(&c, 'd', "1\tone\n", 6);
	msg(&c, 'd', "2\ttwo\n", 6);
	client_sends(&w->st, &c);

	cr_assert_eq(w->st.owed_z, 1);
	cr_assert(w->st.copy_in);
	cr_assert_not(w->st.unsynced);
	cr_assert_eq(w->st.txstatus, 'T');
}

Test(clean_walk, client_vanished_inside_copy_from_stdin_simple_query)
{
	/* After CopyFail the backend answers ErrorResponse, then 'Z' 'E'. */
	struct stream_bytes reads[2] = { { .len = 0 }, { .len = 0 } };
	struct walk w = { .reads = reads, .nreads = 2, .reset_needed = true, .rollback_leaves_idle = true };

	copy_in_simple_query_then_vanish(&w);
	msg(&reads[0], 'E', copy_error, sizeof(copy_error));
	/* the 'Z' arrives in a later read, its header split */
	memcpy(reads[0].data + reads[0].len, "Z\0\0", 3);
	reads[0].len += 3;
	memcpy(reads[1].data, "\0\x05" "E", 3);
	reads[1].len = 3;

	cr_assert_eq(walk_run(&w), CLEAN_DONE);
	cr_assert_str_eq(w.trail, "COPY_FAIL DRAIN DRAIN ROLLBACK RESET DONE");
	cr_assert_eq(w.next_read, 2);
	cr_assert_eq(w.carry_len, 0);
	cr_assert(stream_idle(&w.st));
	cr_assert_eq(w.st.txstatus, 'I');
}

Test(clean_walk, client_vanished_inside_copy_transaction_mode)
{
	struct stream_bytes reads[1] = { { .len = 0 } };
	struct walk w = { .reads = reads, .nreads = 1, .rollback_leaves_idle = true };

	copy_in_simple_query_then_vanish(&w);
	msg(&reads[0], 'E', copy_error, sizeof(copy_error));
	msg(&reads[0], 'Z', "E", 1);
	cr_assert_eq(walk_run(&w), CLEAN_DONE);
	cr_assert_str_eq(w.trail, "COPY_FAIL DRAIN ROLLBACK DONE");
}

Test(clean_walk, rollback_that_does_not_end_idle_discards)
{
	struct stream_bytes reads[1] = { { .len = 0 } };
	struct walk w = { .reads = reads, .nreads = 1, .rollback_leaves_idle = false };

	copy_in_simple_query_then_vanish(&w);
	msg(&reads[0], 'E', copy_error, sizeof(copy_error));
	msg(&reads[0], 'Z', "E", 1);
	cr_assert_eq(walk_run(&w), CLEAN_DISCARD);
	cr_assert_str_eq(w.trail, "COPY_FAIL DRAIN ROLLBACK DISCARD");
}

/* libpq's extended COPY: P B D E S, 'G' (the Sync is swallowed), d, gone. */
Test(clean_walk, client_vanished_inside_copy_from_stdin_extended)
{
	struct stream_bytes c = { .len = 0 }, s = { .len = 0 };
	struct stream_bytes reads[1] = { { .len = 0 } };
	struct walk w = { .reads = reads, .nreads = 1, .rollback_leaves_idle = true };

	stream_reset(&w.st);
	msg(&c, 'P', "\0COPY t FROM STDIN\0\0", 21);
	msg(&c, 'B', "\0\0\0\0\0\0\0\0", 8);
	msg(&c, 'D', "P", 2);
	msg(&c, 'E', "\0\0\0\0", 5);
	msg(&c, 'S', NULL, 0);
	client_sends(&w.st, &c);
	msg(&s, '1', NULL, 0);
	msg(&s, '2', NULL, 0);
	msg(&s, 'n', NULL, 0);
	msg(&s, 'G', copy_in_response, sizeof(copy_in_response));
	server_sends(&w.st, &s);
	c.len = 0;
	msg(&c, 'd', "1\tone\n", 6);
	client_sends(&w.st, &c);
	cr_assert_eq(w.st.owed_z, 0);
	cr_assert(w.st.copy_in);

	/* CopyFail, then a Sync: the backend answers E and one 'Z'. */
	msg(&reads[0], 'E', copy_error, sizeof(copy_error));
	msg(&reads[0], 'Z', "I", 1);
	cr_assert_eq(walk_run(&w), CLEAN_DONE);
	cr_assert_str_eq(w.trail, "COPY_FAIL SYNC DRAIN DONE");
	cr_assert_eq(w.st.owed_z, 0);
	cr_assert(stream_idle(&w.st));
}

/*
 * The client sent CopyDone of an extended-protocol COPY and vanished before
 * its Sync. The backend ran the COPY, sent CommandComplete, and waits for a
 * Sync with the implicit transaction open: the cleaner must send one.
 */
Test(clean_walk, client_vanished_between_copy_done_and_sync_extended)
{
	struct stream_bytes c = { .len = 0 }, s = { .len = 0 };
	struct stream_bytes reads[1] = { { .len = 0 } };
	struct walk w = { .reads = reads, .nreads = 1, .rollback_leaves_idle = true };

	stream_reset(&w.st);
	msg(&c, 'P', "\0COPY t FROM STDIN\0\0", 21);
	msg(&c, 'B', "\0\0\0\0\0\0\0\0", 8);
	msg(&c, 'E', "\0\0\0\0", 5);
	msg(&c, 'S', NULL, 0);
	client_sends(&w.st, &c);
	msg(&s, '1', NULL, 0);
	msg(&s, '2', NULL, 0);
	msg(&s, 'G', copy_in_response, sizeof(copy_in_response));
	server_sends(&w.st, &s);
	c.len = 0;
	msg(&c, 'd', "1\tone\n", 6);
	msg(&c, 'c', NULL, 0);
	client_sends(&w.st, &c);

	msg(&reads[0], 'C', "COPY 1", 7);
	msg(&reads[0], 'Z', "I", 1);
	cr_assert_eq(walk_run(&w), CLEAN_DONE);
	cr_assert_str_eq(w.trail, "SYNC DRAIN DONE");
}

Test(clean_walk, client_vanished_after_parse_bind)
{
	struct stream_bytes c = { .len = 0 };
	struct stream_bytes reads[1] = { { .len = 0 } };
	struct walk w = { .reads = reads, .nreads = 1, .rollback_leaves_idle = true };

	stream_reset(&w.st);
	w.st.txstatus = 'T';
	msg(&c, 'P', "\0SELECT 1\0\0", 12);
	msg(&c, 'B', "\0\0\0\0\0\0\0\0", 8);
	client_sends(&w.st, &c);
	msg(&reads[0], '1', NULL, 0);
	msg(&reads[0], '2', NULL, 0);
	msg(&reads[0], 'Z', "T", 1);
	cr_assert_eq(walk_run(&w), CLEAN_DONE);
	cr_assert_str_eq(w.trail, "SYNC DRAIN ROLLBACK DONE");
}

Test(clean_walk, client_vanished_mid_query_with_a_cancel_on_its_way)
{
	struct stream_bytes c = { .len = 0 };
	struct stream_bytes reads[2] = { { .len = 0 }, { .len = 0 } };
	struct walk w = { .reads = reads, .nreads = 2, .cancels_pending = true, .rollback_leaves_idle = true };

	stream_reset(&w.st);
	msg(&c, 'Q', "SELECT pg_sleep(60)", 20);
	client_sends(&w.st, &c);
	/* a DataRow header arrives first, its body in the next read */
	msg(&reads[0], 'D', "\0\1\0\0\0\1" "1", 7);
	reads[0].len -= 3;
	memcpy(reads[1].data, "\0\1" "1", 3);
	reads[1].len = 3;
	msg(&reads[1], 'C', "SELECT 1", 9);
	msg(&reads[1], 'Z', "I", 1);
	cr_assert_eq(walk_run(&w), CLEAN_DONE);
	cr_assert_str_eq(w.trail, "DRAIN DRAIN WAIT_CANCEL DONE");
}

Test(clean_walk, half_a_message_sent_discards_at_once)
{
	struct stream_bytes c = { .len = 0 };
	struct walk w = { .nreads = 0 };

	stream_reset(&w.st);
	msg(&c, 'Q', "SELECT 1", 9);
	cr_assert_eq(frame_scan(&w.st.to_server, c.data, 8, STREAM_CLIENT_WHOLE, on_client, &w.st), 8);
	cr_assert_eq(walk_run(&w), CLEAN_DISCARD);
	cr_assert_str_eq(w.trail, "DISCARD");
}

Test(clean_walk, idle_session_resets)
{
	struct walk w = { .reset_needed = true };

	stream_reset(&w.st);
	cr_assert_eq(walk_run(&w), CLEAN_DONE);
	cr_assert_str_eq(w.trail, "RESET DONE");
}

/* ---- the reasons' names: logs and SHOW SERVERS print them, so their spelling is pinned */

Test(exit_reason, names_are_the_documented_ones)
{
	static const char *const want[] = {
		"transaction done", "client gone", "client protocol violation", "server lost",
		"setup failed", "killed", "shutdown", "timeout/query", "timeout/idle_transaction",
		"timeout/transaction", "timeout/stall",
	};

	cr_assert_eq(LEASE_EXIT_REASON_COUNT, sizeof(want) / sizeof(*want));
	for (int i = 0; i < LEASE_EXIT_REASON_COUNT; i++)
		cr_assert_str_eq(lease_exit_reason_name((enum lease_exit_reason)i), want[i]);
	cr_assert_str_eq(lease_exit_reason_name((enum lease_exit_reason)LEASE_EXIT_REASON_COUNT), "unknown");
}

Test(lease_enter, without_an_idle_backend_clients_queue_in_order)
{
	int peers[3];
	struct client *c[3];

	pair_start(PAIR_INI);
	struct pool *p = pair_pool("u");
	for (int i = 0; i < 3; i++) {
		c[i] = pair_logged_in(p, &peers[i], NULL);
		lease_enter(c[i]);
		cr_assert_eq(c[i]->state, CLIENT_WAITING);
		cr_assert_null(c[i]->lease);
	}
	cr_assert_eq(p->waiting.count, 3);
	struct list_node *at = list_first(&p->waiting);
	for (int i = 0; i < 3; i++, at = at->next)
		cr_assert_eq(at, &c[i]->node, "waiting clients are not in arrival order");
	/* Nothing was granted, so nothing was counted as a lease or a wait. */
	cr_assert_eq(p->stats.lease_count, 0);
	cr_assert_eq(p->stats.wait_count, 0);
	cr_assert_eq(pool_server_count(p), 0, "a paused pool opened a backend");
}
