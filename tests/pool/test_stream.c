/*
 * test_stream.c — Criterion tests for pool/stream.c.
 *
 * Messages are built as bytes and driven through frame_scan() with the
 * relay's own wiring (STREAM_CLIENT_WHOLE / STREAM_SERVER_WHOLE and the
 * stream_*_msg callbacks), so each test is a protocol conversation as it
 * appears on the wire. Conversations are written as strings of message
 * types; on the server side a 'Z' is followed by its status byte
 * ("CZI" = CommandComplete, ReadyForQuery 'I').
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "stream.h"

/* ---- building messages ---- */

struct bytes {
	uint8_t data[4096];
	size_t len;
};

static void put(struct bytes *b, const void *p, size_t n)
{
	cr_assert_leq(b->len + n, sizeof(b->data));
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
}

static void msg(struct bytes *b, char type, const void *body, size_t n)
{
	uint32_t len = (uint32_t)n + 4;
	uint8_t h[5] = { (uint8_t)type, (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8),
			 (uint8_t)len };
	put(b, h, 5);
	put(b, body, n);
}

/* A plausible body for each message type; the stream never looks inside. */
static void client_msg_bytes(struct bytes *b, char type)
{
	static const uint8_t parse[] = "\0SELECT $1::int\0\0\1\0\0\0\x17";
	static const uint8_t bind[] = "\0\0\0\0\0\1\0\0\0\x02" "42\0\0";
	static const uint8_t fcall[] = "\0\0\x04\x12\0\0\0\1\0\0\0\1" "7\0\0";

	switch (type) {
	case 'Q': msg(b, type, "SELECT 1", 9); break;
	case 'P': msg(b, type, parse, sizeof(parse) - 1); break;
	case 'B': msg(b, type, bind, sizeof(bind) - 1); break;
	case 'D': msg(b, type, "P", 2); break;
	case 'E': msg(b, type, "\0\0\0\0", 5); break;
	case 'C': msg(b, type, "S", 2); break;
	case 'F': msg(b, type, fcall, sizeof(fcall) - 1); break;
	case 'd': msg(b, type, "1\tone\n", 6); break;
	case 'f': msg(b, type, "client gave up", 15); break;
	default: msg(b, type, NULL, 0); break; /* S H c X */
	}
}

static const char *server_msg_bytes(struct bytes *b, const char *p)
{
	static const uint8_t copy_in[] = "\0\0\1\0\0";
	static const uint8_t rowdesc[] = "\0\1?column?\0\0\0\0\0\0\0\0\0\0\x17\0\4\xff\xff\xff\xff\0";
	static const uint8_t row[] = "\0\1\0\0\0\1" "1";

	switch (*p) {
	case 'Z': cr_assert(p[1], "'Z' needs a status byte"); msg(b, 'Z', p + 1, 1); return p + 2;
	case 'G': msg(b, 'G', copy_in, sizeof(copy_in) - 1); break;
	case 'T': msg(b, 'T', rowdesc, sizeof(rowdesc) - 1); break;
	case 'D': msg(b, 'D', row, sizeof(row) - 1); break;
	case 'C': msg(b, 'C', "SELECT 1", 9); break;
	case 'E': msg(b, 'E', "SERROR\0C57014\0Mcanceled\0", 25); break;
	case 'V': msg(b, 'V', "\0\0\0\1" "7", 5); break;
	default: msg(b, *p, NULL, 0); break; /* 1 2 3 n s I */
	}
	return p + 1;
}

static enum frame_verdict on_client(void *arg, const struct frame_msg *m)
{
	return stream_client_msg(arg, m);
}

static enum frame_verdict on_server(void *arg, const struct frame_msg *m)
{
	return stream_server_msg(arg, m);
}

/* Scan everything; with step > 0, offer the bytes in pieces of that size. */
static ssize_t scan_all(struct frame *f, const struct bytes *b, const char *whole, frame_cb cb, void *arg,
			size_t step)
{
	size_t scanned = 0, end = 0;

	while (end < b->len) {
		end = step ? (end + step < b->len ? end + step : b->len) : b->len;
		ssize_t n = frame_scan(f, b->data + scanned, end - scanned, whole, cb, arg);
		if (n < 0)
			return -1;
		scanned += (size_t)n;
	}
	return (ssize_t)scanned;
}

static void client_sends_split(struct stream *st, const char *types, size_t step)
{
	struct bytes b = { .len = 0 };

	for (const char *p = types; *p; p++)
		client_msg_bytes(&b, *p);
	cr_assert_eq(scan_all(&st->to_server, &b, STREAM_CLIENT_WHOLE, on_client, st, step), (ssize_t)b.len,
		     "client \"%s\" not accepted", types);
	cr_assert_eq(st->to_server.body_left, 0);
}

static void client_sends(struct stream *st, const char *types)
{
	client_sends_split(st, types, 0);
}

static void server_sends_split(struct stream *st, const char *script, size_t step)
{
	struct bytes b = { .len = 0 };

	for (const char *p = script; *p;)
		p = server_msg_bytes(&b, p);
	cr_assert_eq(scan_all(&st->from_server, &b, STREAM_SERVER_WHOLE, on_server, st, step), (ssize_t)b.len,
		     "server \"%s\" not accepted", script);
	cr_assert_eq(st->from_server.body_left, 0);
}

static void server_sends(struct stream *st, const char *script)
{
	server_sends_split(st, script, 0);
}

static struct stream fresh(void)
{
	struct stream st;

	memset(&st, 0xa5, sizeof(st));
	stream_reset(&st);
	return st;
}

#define assert_state(st, owed, unsync, copy, tx, idle)                                               \
	do {                                                                                          \
		cr_assert_eq((st)->owed_z, (owed), "owed_z %u, expected %u", (st)->owed_z, (owed));   \
		cr_assert_eq((st)->unsynced, (unsync), "unsynced %d, expected %d", (st)->unsynced, (unsync)); \
		cr_assert_eq((st)->copy_in, (copy), "copy_in %d, expected %d", (st)->copy_in, (copy)); \
		cr_assert_eq((st)->txstatus, (tx), "txstatus '%c', expected '%c'", (st)->txstatus, (tx)); \
		cr_assert_eq(stream_idle(st), (idle), "stream_idle %d, expected %d", stream_idle(st), (idle)); \
	} while (0)

/* ---- reset ---- */

Test(stream, reset_is_idle)
{
	struct stream st = fresh();

	assert_state(&st, 0u, false, false, 'I', true);
	cr_assert_eq(st.to_server.body_left, 0);
	cr_assert_eq(st.from_server.body_left, 0);
	cr_assert_eq(st.syncs_after_execute, 0);
	cr_assert_eq(st.execute_last, false);
}

Test(stream, whole_types_are_what_the_relay_needs)
{
	cr_assert_str_eq(STREAM_SERVER_WHOLE, "Z");
	cr_assert_str_eq(STREAM_CLIENT_WHOLE, "");
}

/* ---- simple query ---- */

Test(stream, simple_query)
{
	struct stream st = fresh();

	client_sends(&st, "Q");
	assert_state(&st, 1u, false, false, 'I', false);
	server_sends(&st, "TDDC");
	assert_state(&st, 1u, false, false, 'I', false);
	server_sends(&st, "ZI");
	assert_state(&st, 0u, false, false, 'I', true);
}

Test(stream, simple_query_split_byte_by_byte)
{
	struct stream st = fresh();

	client_sends_split(&st, "Q", 1);
	assert_state(&st, 1u, false, false, 'I', false);
	server_sends_split(&st, "TDCZT", 1);
	assert_state(&st, 0u, false, false, 'T', true);
}

Test(stream, pipelined_queries)
{
	struct stream st = fresh();

	client_sends(&st, "QQQ");
	assert_state(&st, 3u, false, false, 'I', false);
	server_sends(&st, "CZT");
	assert_state(&st, 2u, false, false, 'T', false);
	server_sends(&st, "TDCZT");
	assert_state(&st, 1u, false, false, 'T', false);
	client_sends(&st, "Q");
	assert_state(&st, 2u, false, false, 'T', false);
	server_sends(&st, "CZICZI");
	assert_state(&st, 0u, false, false, 'I', true);
}

Test(stream, error_in_simple_query)
{
	struct stream st = fresh();

	client_sends(&st, "Q");
	server_sends(&st, "EZI");
	assert_state(&st, 0u, false, false, 'I', true);
}

Test(stream, ready_without_request_does_not_underflow)
{
	struct stream st = fresh();

	server_sends(&st, "ZI");
	assert_state(&st, 0u, false, false, 'I', true);
	server_sends(&st, "ZT");
	assert_state(&st, 0u, false, false, 'T', true);
}

/* ---- extended protocol ---- */

Test(stream, extended_query)
{
	struct stream st = fresh();

	client_sends(&st, "P");
	assert_state(&st, 0u, true, false, 'I', false);
	client_sends(&st, "BDE");
	assert_state(&st, 0u, true, false, 'I', false);
	cr_assert(st.execute_last);
	client_sends(&st, "S");
	assert_state(&st, 1u, false, false, 'I', false);
	server_sends(&st, "12TDDC");
	assert_state(&st, 1u, false, false, 'I', false);
	server_sends(&st, "ZI");
	assert_state(&st, 0u, false, false, 'I', true);
}

Test(stream, parse_bind_without_sync_is_unsynced)
{
	struct stream st = fresh();

	client_sends(&st, "PB");
	assert_state(&st, 0u, true, false, 'I', false);
	/* The backend may answer a Flush, but that is no ReadyForQuery. */
	client_sends(&st, "H");
	server_sends(&st, "12");
	assert_state(&st, 0u, true, false, 'I', false);
	client_sends(&st, "S");
	assert_state(&st, 1u, false, false, 'I', false);
	server_sends(&st, "ZI");
	assert_state(&st, 0u, false, false, 'I', true);
}

Test(stream, every_extended_message_leaves_it_unsynced)
{
	static const char types[] = "PBDECH";

	for (const char *t = types; *t; t++) {
		struct stream st = fresh();
		char one[2] = { *t, 0 };
		client_sends(&st, one);
		cr_assert(st.unsynced, "'%c' must leave the stream unsynced", *t);
		cr_assert_eq(st.owed_z, 0, "'%c' owes nothing yet", *t);
		cr_assert_not(stream_idle(&st), "'%c' leaves it not idle", *t);
	}
}

Test(stream, pipelined_extended_queries)
{
	struct stream st = fresh();

	client_sends(&st, "PBDESBESBES");
	assert_state(&st, 3u, false, false, 'I', false);
	server_sends(&st, "12TDCZI");
	assert_state(&st, 2u, false, false, 'I', false);
	server_sends(&st, "2DCZI2EZI");
	assert_state(&st, 0u, false, false, 'I', true);
}

Test(stream, sync_after_sync_owes_two)
{
	struct stream st = fresh();

	client_sends(&st, "PBESS");
	assert_state(&st, 2u, false, false, 'I', false);
	server_sends(&st, "12CZI");
	assert_state(&st, 1u, false, false, 'I', false);
	server_sends(&st, "ZI");
	assert_state(&st, 0u, false, false, 'I', true);
}

Test(stream, function_call)
{
	struct stream st = fresh();

	client_sends(&st, "F");
	assert_state(&st, 1u, false, false, 'I', false);
	server_sends(&st, "V");
	assert_state(&st, 1u, false, false, 'I', false);
	server_sends(&st, "ZI");
	assert_state(&st, 0u, false, false, 'I', true);
}

/* ---- COPY FROM STDIN ---- */

Test(stream, copy_in_via_simple_query)
{
	struct stream st = fresh();

	client_sends(&st, "Q");
	server_sends(&st, "G");
	/* The Query's ReadyForQuery is still owed: nothing is taken back. */
	assert_state(&st, 1u, false, true, 'I', false);
	client_sends(&st, "dd");
	assert_state(&st, 1u, false, true, 'I', false);
	client_sends(&st, "c");
	assert_state(&st, 1u, false, false, 'I', false);
	server_sends(&st, "C");
	assert_state(&st, 1u, false, false, 'I', false);
	server_sends(&st, "ZI");
	assert_state(&st, 0u, false, false, 'I', true);
}

Test(stream, copy_in_via_simple_query_in_a_transaction)
{
	struct stream st = fresh();

	client_sends(&st, "Q");
	server_sends(&st, "CZT");
	client_sends(&st, "Q");
	server_sends(&st, "G");
	client_sends(&st, "ddc");
	server_sends(&st, "CZT");
	assert_state(&st, 0u, false, false, 'T', true);
}

Test(stream, copy_in_via_extended_protocol_as_libpq_does)
{
	struct stream st = fresh();

	client_sends(&st, "PBDES");
	assert_state(&st, 1u, false, false, 'I', false);
	server_sends(&st, "12n");
	assert_state(&st, 1u, false, false, 'I', false);
	/* CopyInResponse: the backend ignores the Sync it got before, in COPY. */
	server_sends(&st, "G");
	assert_state(&st, 0u, false, true, 'I', false);
	client_sends(&st, "d");
	assert_state(&st, 0u, false, true, 'I', false);
	client_sends(&st, "c");
	/* The Sync before 'G' was ignored: the backend answers only after the next one. */
	assert_state(&st, 0u, true, false, 'I', false);
	client_sends(&st, "S");
	assert_state(&st, 1u, false, false, 'I', false);
	server_sends(&st, "C");
	assert_state(&st, 1u, false, false, 'I', false);
	server_sends(&st, "ZI");
	assert_state(&st, 0u, false, false, 'I', true);
}

Test(stream, copy_in_extended_takes_back_every_sync_after_execute)
{
	struct stream st = fresh();

	client_sends(&st, "PBESS");
	assert_state(&st, 2u, false, false, 'I', false);
	server_sends(&st, "12G");
	assert_state(&st, 0u, false, true, 'I', false);
	client_sends(&st, "dcS");
	server_sends(&st, "CZI");
	assert_state(&st, 0u, false, false, 'I', true);
}

Test(stream, copy_in_extended_after_an_earlier_pipelined_query)
{
	struct stream st = fresh();

	/* The first query's Sync stays owed: only Syncs after the Execute go. */
	client_sends(&st, "PBESPBES");
	assert_state(&st, 2u, false, false, 'I', false);
	server_sends(&st, "12CZI");
	assert_state(&st, 1u, false, false, 'I', false);
	server_sends(&st, "12G");
	assert_state(&st, 0u, false, true, 'I', false);
}

Test(stream, simple_copy_after_an_extended_query_takes_nothing_back)
{
	/* The Syncs counted for an earlier Execute must not cancel the Query's reply. */
	struct stream st = fresh();

	client_sends(&st, "PBES");
	server_sends(&st, "12CZI");
	assert_state(&st, 0u, false, false, 'I', true);
	client_sends(&st, "Q");
	cr_assert_not(st.execute_last);
	server_sends(&st, "G");
	assert_state(&st, 1u, false, true, 'I', false);
	client_sends(&st, "dc");
	server_sends(&st, "CZI");
	assert_state(&st, 0u, false, false, 'I', true);
}

Test(stream, simple_copy_pipelined_after_an_extended_query)
{
	struct stream st = fresh();

	client_sends(&st, "PBESQ");
	assert_state(&st, 2u, false, false, 'I', false);
	server_sends(&st, "12CZI");
	server_sends(&st, "G");
	assert_state(&st, 1u, false, true, 'I', false);
}

Test(stream, syncs_are_counted_from_the_last_execute)
{
	struct stream st = fresh();

	client_sends(&st, "PBES");
	cr_assert_eq(st.syncs_after_execute, 1);
	client_sends(&st, "SS");
	cr_assert_eq(st.syncs_after_execute, 3);
	client_sends(&st, "BE");
	cr_assert_eq(st.syncs_after_execute, 0);
	client_sends(&st, "S");
	cr_assert_eq(st.syncs_after_execute, 1);
	cr_assert_eq(st.owed_z, 4);
}

Test(stream, copy_in_extended_with_flush_instead_of_sync)
{
	struct stream st = fresh();

	client_sends(&st, "PBEH");
	server_sends(&st, "12G");
	/* nothing to take back, and no underflow */
	assert_state(&st, 0u, true, true, 'I', false);
	client_sends(&st, "dcS");
	assert_state(&st, 1u, false, false, 'I', false);
	server_sends(&st, "CZI");
	assert_state(&st, 0u, false, false, 'I', true);
}

/*
 * After an extended-protocol COPY
 * the backend ignored the Sync sent before 'G', so once the client sends
 * CopyDone (or CopyFail) the backend still needs a Sync before it answers
 * 'Z' and commits the implicit transaction. stream_client_msg('c'/'f')
 * leaves the stream looking idle (owed 0, not unsynced): a lease can end
 * (transaction mode, at the backend's CommandComplete, if the client's Sync
 * is in a later read) or be cleaned as DONE with the COPY uncommitted.
 */
Test(stream, copy_done_of_extended_copy_still_needs_a_sync)
{
	struct stream st = fresh();

	client_sends(&st, "PBDES");
	server_sends(&st, "12nG");
	client_sends(&st, "dc");
	cr_assert_not(stream_idle(&st), "CopyDone of an extended COPY: the backend still waits for a Sync");
	cr_assert(st.unsynced);
	server_sends(&st, "C");
	cr_assert_not(stream_idle(&st));
}

Test(stream, copy_fail_of_extended_copy_still_needs_a_sync)
{
	struct stream st = fresh();

	client_sends(&st, "PBDES");
	server_sends(&st, "12nG");
	client_sends(&st, "df");
	cr_assert_not(stream_idle(&st));
	cr_assert(st.unsynced);
}

Test(stream, sync_during_copy_in_is_not_counted)
{
	struct stream st = fresh();

	client_sends(&st, "PBES");
	server_sends(&st, "12G");
	assert_state(&st, 0u, false, true, 'I', false);
	client_sends(&st, "dSd");
	assert_state(&st, 0u, false, true, 'I', false);
	client_sends(&st, "cS");
	assert_state(&st, 1u, false, false, 'I', false);
	server_sends(&st, "CZI");
	assert_state(&st, 0u, false, false, 'I', true);
}

Test(stream, sync_during_simple_copy_in_is_not_counted)
{
	struct stream st = fresh();

	client_sends(&st, "Q");
	server_sends(&st, "G");
	client_sends(&st, "dSdc");
	assert_state(&st, 1u, false, false, 'I', false);
	server_sends(&st, "CZI");
	assert_state(&st, 0u, false, false, 'I', true);
}

Test(stream, copy_fail_ends_copy_in)
{
	struct stream st = fresh();

	client_sends(&st, "Q");
	server_sends(&st, "G");
	client_sends(&st, "df");
	assert_state(&st, 1u, false, false, 'I', false);
	server_sends(&st, "EZI");
	assert_state(&st, 0u, false, false, 'I', true);
}

Test(stream, ready_for_query_ends_copy_in)
{
	/* The backend failed the COPY on its own: E and Z arrive mid-copy. */
	struct stream st = fresh();

	client_sends(&st, "Q");
	server_sends(&st, "G");
	client_sends(&st, "d");
	server_sends(&st, "EZI");
	assert_state(&st, 0u, false, false, 'I', true);
	/* The client's late CopyData and CopyDone are still accepted. */
	client_sends(&st, "dc");
	assert_state(&st, 0u, false, false, 'I', true);
}

Test(stream, copy_both_counts_as_copy_in)
{
	struct stream st = fresh();

	client_sends(&st, "Q");
	server_sends(&st, "W");
	assert_state(&st, 1u, false, true, 'I', false);
}

Test(stream, copy_out_is_not_copy_in)
{
	struct stream st = fresh();

	client_sends(&st, "Q");
	server_sends(&st, "H");
	assert_state(&st, 1u, false, false, 'I', false);
	server_sends(&st, "DDcCZI");
	assert_state(&st, 0u, false, false, 'I', true);
}

/* ---- protocol errors ---- */

Test(stream, unknown_client_message_type_is_an_error)
{
	static const char known[] = "QFSEPBDCHdcf";

	for (int t = 0; t < 256; t++) {
		struct stream st = fresh();
		struct frame_msg m = { .type = (char)t, .len = 4, .body = NULL };
		enum frame_verdict v = stream_client_msg(&st, &m);
		if (t && strchr(known, t)) {
			cr_assert_eq(v, FRAME_CONTINUE, "type '%c' (%d) must be accepted", t, t);
			continue;
		}
		cr_assert_eq(v, FRAME_ERROR, "type %d must be refused", t);
		assert_state(&st, 0u, false, false, 'I', true);
	}
}

Test(stream, unknown_client_message_stops_the_scan)
{
	struct stream st = fresh();
	struct bytes b = { .len = 0 };

	client_msg_bytes(&b, 'Q');
	msg(&b, 'Z', "I", 1);
	client_msg_bytes(&b, 'Q');
	cr_assert_eq(frame_scan(&st.to_server, b.data, b.len, STREAM_CLIENT_WHOLE, on_client, &st), -1);
	cr_assert_eq(st.owed_z, 1, "the Query before the bad message was counted, the one after was not");
}

Test(stream, terminate_is_not_a_stream_message)
{
	/* The relay handles 'X' itself before the stream sees it. */
	struct stream st = fresh();
	struct frame_msg m = { .type = 'X', .len = 4 };

	cr_assert_eq(stream_client_msg(&st, &m), FRAME_ERROR);
}

Test(stream, ready_for_query_with_wrong_length_is_an_error)
{
	static const uint8_t body[8] = { 'I', 'I', 'I', 'I' };
	static const uint32_t lens[] = { 4, 6, 8 };

	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		struct stream st = fresh();
		st.owed_z = 1;
		struct frame_msg m = { .type = 'Z', .len = lens[i], .body = body };
		cr_assert_eq(stream_server_msg(&st, &m), FRAME_ERROR, "len %u", lens[i]);
		cr_assert_eq(st.owed_z, 1, "len %u must not pay a reply", lens[i]);
	}
}

Test(stream, ready_for_query_without_body_is_an_error)
{
	struct stream st = fresh();
	struct frame_msg m = { .type = 'Z', .len = 5, .body = NULL };

	st.owed_z = 1;
	cr_assert_eq(stream_server_msg(&st, &m), FRAME_ERROR);
	cr_assert_eq(st.owed_z, 1);
	cr_assert_eq(st.txstatus, 'I');
}

Test(stream, ready_for_query_wrong_length_on_the_wire)
{
	struct stream st = fresh();
	struct bytes b = { .len = 0 };

	client_sends(&st, "Q");
	msg(&b, 'Z', "II", 2);
	cr_assert_eq(frame_scan(&st.from_server, b.data, b.len, STREAM_SERVER_WHOLE, on_server, &st), -1);
	cr_assert_eq(st.owed_z, 1);

	/* A 'Z' too long to be seen whole arrives without body: an error too. */
	uint8_t big[5] = { 'Z', 0, 0, 0x40, 0 };
	stream_reset(&st);
	cr_assert_eq(frame_scan(&st.from_server, big, 5, STREAM_SERVER_WHOLE, on_server, &st), -1);
}

Test(stream, other_server_messages_are_ignored)
{
	static const char types[] = "123nsITDCEeNASKRvV";

	for (const char *t = types; *t; t++) {
		struct stream st = fresh();
		st.owed_z = 2;
		st.unsynced = true;
		struct frame_msg m = { .type = *t, .len = 4 };
		cr_assert_eq(stream_server_msg(&st, &m), FRAME_CONTINUE, "type '%c'", *t);
		cr_assert_eq(st.owed_z, 2, "type '%c' must not pay a reply", *t);
		cr_assert(st.unsynced);
		cr_assert_not(st.copy_in);
	}
}

/* ---- transaction status ---- */

Test(stream, txstatus_tracks_the_newest_ready_for_query)
{
	struct stream st = fresh();

	client_sends(&st, "Q");
	server_sends(&st, "CZT");
	assert_state(&st, 0u, false, false, 'T', true);
	client_sends(&st, "Q");
	server_sends(&st, "EZE");
	assert_state(&st, 0u, false, false, 'E', true);
	client_sends(&st, "Q");
	server_sends(&st, "CZI");
	assert_state(&st, 0u, false, false, 'I', true);
	client_sends(&st, "QQ");
	server_sends(&st, "CZTCZE");
	assert_state(&st, 0u, false, false, 'E', true);
}

/* ---- idleness and half messages ---- */

Test(stream, half_sent_message_is_not_idle)
{
	struct stream st = fresh();
	struct bytes b = { .len = 0 };

	client_msg_bytes(&b, 'Q');
	/* Header and part of the body only. */
	cr_assert_eq(frame_scan(&st.to_server, b.data, 7, STREAM_CLIENT_WHOLE, on_client, &st), 7);
	cr_assert_eq(st.to_server.body_left, b.len - 7);
	cr_assert_eq(st.owed_z, 1);
	cr_assert_not(stream_idle(&st));
}

Test(stream, half_received_message_is_not_idle)
{
	struct stream st = fresh();
	struct bytes b = { .len = 0 };

	server_msg_bytes(&b, "D");
	cr_assert_eq(frame_scan(&st.from_server, b.data, 6, STREAM_SERVER_WHOLE, on_server, &st), 6);
	cr_assert_gt(st.from_server.body_left, 0);
	cr_assert_eq(st.owed_z, 0);
	cr_assert_not(stream_idle(&st));
	cr_assert_eq(frame_scan(&st.from_server, b.data + 6, b.len - 6, STREAM_SERVER_WHOLE, on_server, &st),
		     (ssize_t)(b.len - 6));
	cr_assert(stream_idle(&st));
}

Test(stream, split_ready_for_query_is_held_back)
{
	struct stream st = fresh();
	struct bytes b = { .len = 0 };

	client_sends(&st, "Q");
	server_msg_bytes(&b, "ZT");
	for (size_t k = 0; k < b.len; k++) {
		cr_assert_eq(frame_scan(&st.from_server, b.data, k, STREAM_SERVER_WHOLE, on_server, &st), 0);
		cr_assert_eq(st.owed_z, 1);
		cr_assert_eq(st.txstatus, 'I');
	}
	cr_assert_eq(frame_scan(&st.from_server, b.data, b.len, STREAM_SERVER_WHOLE, on_server, &st), 6);
	assert_state(&st, 0u, false, false, 'T', true);
}
