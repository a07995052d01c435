/*
 * test_proto.c — Criterion tests for base/proto.c: every message builder,
 * byte for byte as PostgreSQL sends it (protocol-message-formats.html of the
 * PostgreSQL documentation), and the bounded buffer's sticky overflow.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "proto.h"

/* Up to 256 bytes of message: enough for every case here. */
struct out {
	uint8_t data[256];
	struct wbuf w;
};

static void out_init(struct out *o, size_t cap)
{
	memset(o->data, 0xaa, sizeof(o->data));
	wbuf_init(&o->w, o->data, cap);
}

static void assert_bytes(const struct out *o, const void *want, size_t n)
{
	cr_assert_not(o->w.overflow);
	cr_assert_eq(o->w.len, n, "length %zu, want %zu", o->w.len, n);
	cr_assert_arr_eq(o->data, want, n);
}

/* sizeof of a string literal counts its NUL: one less for the bytes it spells. */
#define BYTES(o, lit) assert_bytes(o, lit, sizeof(lit) - 1)

/* ---- the messages ---- */

Test(proto, error_response_has_every_field_in_postgres_order)
{
	struct out o;

	out_init(&o, sizeof(o.data));
	proto_error(&o.w, "FATAL", "08P01", "bad", "why", "try");
	/* S (localized severity), V (non-localized), C, M, D, H, then the terminator. */
	BYTES(&o, "E\0\0\0\x29"
		  "SFATAL\0" "VFATAL\0" "C08P01\0" "Mbad\0" "Dwhy\0" "Htry\0" "\0");
}

Test(proto, error_response_leaves_out_absent_fields)
{
	struct out o;

	out_init(&o, sizeof(o.data));
	proto_error(&o.w, "ERROR", "57014", "canceling statement due to user request", NULL, NULL);
	BYTES(&o, "E\0\0\0\x43"
		  "SERROR\0" "VERROR\0" "C57014\0" "Mcanceling statement due to user request\0" "\0");
}

Test(proto, notice_response_is_an_error_response_with_type_n)
{
	struct out e, n;

	out_init(&e, sizeof(e.data));
	out_init(&n, sizeof(n.data));
	proto_error(&e.w, "NOTICE", "42622", "identifier will be truncated", NULL, "h");
	proto_notice(&n.w, "NOTICE", "42622", "identifier will be truncated", NULL, "h");
	cr_assert_eq(n.data[0], 'N');
	cr_assert_eq(n.w.len, e.w.len);
	cr_assert_arr_eq(n.data + 1, e.data + 1, e.w.len - 1);
	BYTES(&n, "N\0\0\0\x3d"
		  "SNOTICE\0" "VNOTICE\0" "C42622\0" "Midentifier will be truncated\0" "Hh\0" "\0");
}

Test(proto, authentication_ok)
{
	struct out o;

	out_init(&o, sizeof(o.data));
	proto_auth_ok(&o.w);
	BYTES(&o, "R\0\0\0\x08\0\0\0\0");
}

Test(proto, parameter_status)
{
	struct out o;

	out_init(&o, sizeof(o.data));
	proto_param_status(&o.w, "DateStyle", "ISO, MDY");
	BYTES(&o, "S\0\0\0\x17" "DateStyle\0" "ISO, MDY\0");
}

Test(proto, parameter_status_with_an_empty_value)
{
	struct out o;

	out_init(&o, sizeof(o.data));
	proto_param_status(&o.w, "application_name", "");
	BYTES(&o, "S\0\0\0\x16" "application_name\0" "\0");
}

Test(proto, ready_for_query_each_status)
{
	static const char statuses[] = { 'I', 'T', 'E' };

	for (size_t i = 0; i < sizeof(statuses); i++) {
		struct out o;
		uint8_t want[] = { 'Z', 0, 0, 0, 5, (uint8_t)statuses[i] };

		out_init(&o, sizeof(o.data));
		proto_ready(&o.w, statuses[i]);
		assert_bytes(&o, want, sizeof(want));
	}
}

Test(proto, backend_key_data_is_big_endian)
{
	struct out o;

	out_init(&o, sizeof(o.data));
	proto_backend_key(&o.w, 0x01020304u, 0xfffefdfcu);
	BYTES(&o, "K\0\0\0\x0c" "\x01\x02\x03\x04" "\xff\xfe\xfd\xfc");
}

Test(proto, parse_complete)
{
	struct out o;

	out_init(&o, sizeof(o.data));
	proto_parse_complete(&o.w);
	BYTES(&o, "1\0\0\0\x04");
}

Test(proto, negotiate_protocol_version_lists_unrecognized_options)
{
	struct out o;
	const char *const options[] = { "_pq_.a", "_pq_.bc" };

	out_init(&o, sizeof(o.data));
	proto_negotiate(&o.w, 0, options, 2);
	/* newest minor version supported, then the count, then each option name. */
	BYTES(&o, "v\0\0\0\x1b" "\0\0\0\0" "\0\0\0\x02" "_pq_.a\0" "_pq_.bc\0");
}

Test(proto, negotiate_protocol_version_without_options)
{
	struct out o;

	out_init(&o, sizeof(o.data));
	proto_negotiate(&o.w, 0, NULL, 0);
	BYTES(&o, "v\0\0\0\x0c" "\0\0\0\0" "\0\0\0\0");
}

Test(proto, notification_response)
{
	struct out o;

	out_init(&o, sizeof(o.data));
	proto_notification(&o.w, 4242, "chan", "hello");
	BYTES(&o, "A\0\0\0\x13" "\0\0\x10\x92" "chan\0" "hello\0");
}

Test(proto, copy_fail)
{
	struct out o;

	out_init(&o, sizeof(o.data));
	proto_copy_fail(&o.w, "client gone");
	BYTES(&o, "f\0\0\0\x10" "client gone\0");
}

Test(proto, sync_is_frontend_s_with_no_body)
{
	struct out o;

	out_init(&o, sizeof(o.data));
	proto_sync(&o.w);
	BYTES(&o, "S\0\0\0\x04");
}

Test(proto, messages_follow_each_other)
{
	struct out o;

	out_init(&o, sizeof(o.data));
	proto_auth_ok(&o.w);
	proto_backend_key(&o.w, 1, 2);
	proto_ready(&o.w, 'I');
	BYTES(&o, "R\0\0\0\x08\0\0\0\0" "K\0\0\0\x0c\0\0\0\x01\0\0\0\x02" "Z\0\0\0\x05I");
}

/* ---- the bounded buffer ---- */

Test(wbuf, primitives_are_big_endian_and_cstrings_keep_their_nul)
{
	struct out o;

	out_init(&o, sizeof(o.data));
	wbuf_byte(&o.w, 0x7f);
	wbuf_int32(&o.w, 0x80000001u);
	wbuf_cstr(&o.w, "ab");
	wbuf_bytes(&o.w, "xyz", 2);
	BYTES(&o, "\x7f" "\x80\0\0\x01" "ab\0" "xy");
	cr_assert_eq(be32(o.data + 1), 0x80000001u);
}

Test(wbuf, a_message_that_fits_exactly)
{
	struct out o;

	out_init(&o, 6);
	proto_ready(&o.w, 'I');
	BYTES(&o, "Z\0\0\0\x05I");
}

Test(wbuf, overflow_writes_nothing_past_the_cap_and_sticks)
{
	struct out o;

	out_init(&o, 5);
	proto_ready(&o.w, 'I');
	cr_assert(o.w.overflow);
	cr_assert_eq(o.w.len, 5, "what fitted before the overflow stays counted");
	for (size_t i = 5; i < sizeof(o.data); i++)
		cr_assert_eq(o.data[i], 0xaa, "byte %zu past the cap was written", i);
	/* Sticky: a later write that would fit is refused too, so no torn message follows. */
	wbuf_byte(&o.w, 'x');
	cr_assert_eq(o.w.len, 5);
	cr_assert(o.w.overflow);
}

Test(wbuf, overflow_inside_a_message_leaves_its_length_unpatched)
{
	struct out o;

	out_init(&o, 12);
	proto_param_status(&o.w, "client_encoding", "UTF8");
	cr_assert(o.w.overflow);
	cr_assert_eq(o.data[0], 'S');
	cr_assert_eq(be32(o.data + 1), 0, "the placeholder length stays: wbuf_end() must not write");
	for (size_t i = 12; i < sizeof(o.data); i++)
		cr_assert_eq(o.data[i], 0xaa);
}

Test(wbuf, a_string_longer_than_the_room_is_not_cut)
{
	struct out o;

	out_init(&o, 4);
	wbuf_cstr(&o.w, "abcd");          /* 5 bytes with its NUL */
	cr_assert(o.w.overflow);
	cr_assert_eq(o.w.len, 0);
	cr_assert_eq(o.data[0], 0xaa);
}

Test(wbuf, an_empty_buffer_overflows_at_once)
{
	struct out o;

	out_init(&o, 0);
	wbuf_bytes(&o.w, "", 0);
	cr_assert_not(o.w.overflow, "writing nothing fits anywhere");
	proto_sync(&o.w);
	cr_assert(o.w.overflow);
	cr_assert_eq(o.w.len, 0);
}
