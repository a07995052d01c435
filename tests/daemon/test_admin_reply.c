/*
 * test_admin_reply.c — Criterion tests for the admin console's reply encoding.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "admin_reply.h"

static uint32_t be32_at(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static const struct col cols[] = { { "database", OID_TEXT }, { "cl_active", OID_INT8 }, { "age", OID_FLOAT8 } };
static const struct table t = TABLE(cols);

Test(admin_reply, row_description)
{
	struct reply r = { 0 };

	reply_row_description(&r, &t);
	cr_assert_not(r.oom);
	cr_assert_eq(r.data[0], 'T');
	cr_assert_eq(be32_at(r.data + 1), r.len - 1);
	cr_assert_eq(r.data[5], 0);
	cr_assert_eq(r.data[6], 3);
	cr_assert_str_eq((const char *)r.data + 7, "database");
	const uint8_t *f = r.data + 7 + strlen("database") + 1;
	cr_assert_eq(be32_at(f + 6), OID_TEXT);                /* after table oid (4) and column (2) */
	cr_assert_eq(f[16] << 8 | f[17], 0);                    /* text format */
	reply_free(&r);
}

Test(admin_reply, data_row_with_null_and_numbers)
{
	struct reply r = { 0 };
	size_t m = reply_row_begin(&r, &t);

	reply_cell(&r, "app");
	reply_cell_int(&r, -42);
	reply_cell(&r, NULL);
	reply_end(&r, m);
	static const uint8_t want[] = {
		'D', 0, 0, 0, 24, 0, 3,
		0, 0, 0, 3, 'a', 'p', 'p',
		0, 0, 0, 3, '-', '4', '2',
		0xff, 0xff, 0xff, 0xff,
	};
	cr_assert_eq(r.len, sizeof(want));
	cr_assert_arr_eq(r.data, want, sizeof(want));
	reply_free(&r);
}

Test(admin_reply, complete_ready_error)
{
	struct reply r = { 0 };

	reply_complete(&r, "SHOW");
	reply_ready(&r);
	static const uint8_t want[] = { 'C', 0, 0, 0, 9, 'S', 'H', 'O', 'W', 0, 'Z', 0, 0, 0, 5, 'I' };
	cr_assert_eq(r.len, sizeof(want));
	cr_assert_arr_eq(r.data, want, sizeof(want));
	r.len = 0;
	reply_error(&r, "42601", "bad", "try SHOW POOLS");
	cr_assert_eq(r.data[0], 'E');
	cr_assert(memmem(r.data, r.len, "C42601", 7) != NULL);
	cr_assert(memmem(r.data, r.len, "Htry SHOW POOLS", 16) != NULL);
	reply_free(&r);
}

Test(admin_reply, times_and_floats)
{
	/* Cells alone, as if in a row of three. */
	struct reply r = { .row_cols = 3 };

	reply_cell_time(&r, 86400.5);
	cr_assert_eq(be32_at(r.data), strlen("1970-01-02 00:00:00 UTC"));
	cr_assert(memcmp(r.data + 4, "1970-01-02 00:00:00 UTC", 23) == 0);
	r.len = 0;
	reply_cell_time(&r, 0);
	cr_assert_eq(be32_at(r.data), 0xffffffffu);
	r.len = 0;
	reply_cell_float(&r, 1.5);
	cr_assert(memcmp(r.data + 4, "1.500000", 8) == 0);
	reply_free(&r);
}

Test(admin_reply, large_reply_grows)
{
	struct reply r = { 0 };

	for (int i = 0; i < 10000; i++) {
		size_t m = reply_row_begin(&r, &t);
		reply_cell(&r, "some database name");
		reply_cell_int(&r, i);
		reply_cell_float(&r, i / 3.0);
		reply_end(&r, m);
	}
	cr_assert_not(r.oom);
	cr_assert_gt(r.len, 400000);
	reply_free(&r);
}

Test(admin_reply, binary_columns_where_the_bind_asked)
{
	struct reply r = { 0 };
	const uint8_t formats[] = { 0, 1, 1 };
	double age = 1.5, got;
	uint64_t bits = 0;

	reply_set_formats(&r, formats, 3);
	size_t m = reply_row_begin(&r, &t);
	reply_cell(&r, "app");
	reply_cell_int(&r, 258);
	reply_cell_float(&r, age);
	reply_end(&r, m);
	const uint8_t *p = r.data + 7;                          /* 'D', length, column count */
	cr_assert_eq(be32_at(p), 3);
	cr_assert_eq(memcmp(p + 4, "app", 3), 0);
	p += 7;
	cr_assert_eq(be32_at(p), 8);
	cr_assert_eq(be32_at(p + 4), 0);
	cr_assert_eq(be32_at(p + 8), 258);
	p += 12;
	cr_assert_eq(be32_at(p), 8);
	for (int i = 0; i < 8; i++)
		bits = bits << 8 | p[4 + i];
	memcpy(&got, &bits, sizeof(got));
	cr_assert_eq(got, age);
	reply_free(&r);
}
