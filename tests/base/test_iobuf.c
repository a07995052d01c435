/*
 * test_iobuf.c — Criterion tests for base/iobuf.c: buffers come back empty,
 * are reused last-in first-out, the free list keeps at most 64, and
 * compaction keeps the unsent and unframed bytes where the relay expects them.
 */
#include <criterion/criterion.h>
#include <malloc.h>
#include <string.h>

#include "iobuf.h"

/* FREE_LIST_MAX in iobuf.c. */
#define KEPT 64

Test(iobuf, a_buffer_comes_empty_even_after_use)
{
	struct iobuf *b = iobuf_get();

	cr_assert_not_null(b);
	b->start = 3;
	b->scanned = 10;
	b->end = 20;
	iobuf_put(b);
	struct iobuf *again = iobuf_get();
	cr_assert_eq(again, b, "the buffer just given back is reused");
	cr_assert_eq(again->start, 0);
	cr_assert_eq(again->scanned, 0);
	cr_assert_eq(again->end, 0);
	cr_assert_null(again->next_free);
	cr_assert(iobuf_is_empty(again));
	cr_assert_eq(iobuf_room(again), IOBUF_SIZE);
	cr_assert_eq(iobuf_unsent(again), 0);
	iobuf_put(again);
}

Test(iobuf, put_null_is_harmless)
{
	iobuf_put(NULL);
	struct iobuf *b = iobuf_get();
	cr_assert_not_null(b);
	iobuf_put(b);
}

Test(iobuf, reuse_is_last_in_first_out)
{
	struct iobuf *b[5];

	for (int i = 0; i < 5; i++)
		b[i] = iobuf_get();
	for (int i = 0; i < 5; i++)
		iobuf_put(b[i]);
	for (int i = 4; i >= 0; i--)
		cr_assert_eq(iobuf_get(), b[i], "get %d", 4 - i);
	for (int i = 0; i < 5; i++)
		iobuf_put(b[i]);
}

Test(iobuf, the_free_list_keeps_at_most_64_and_frees_the_rest)
{
	struct iobuf *b[KEPT + 6];
	size_t n = sizeof(b) / sizeof(*b);

	for (size_t i = 0; i < n; i++)
		b[i] = iobuf_get();
	for (size_t i = 0; i < KEPT; i++)
		iobuf_put(b[i]);
	size_t held = mallinfo2().uordblks;
	for (size_t i = KEPT; i < n; i++)
		iobuf_put(b[i]);
	size_t after = mallinfo2().uordblks;
#ifndef __SANITIZE_ADDRESS__   /* ASan's allocator does not report through mallinfo2() */
	cr_assert_geq(held - after, (n - KEPT) * sizeof(struct iobuf),
		      "buffers past the cap go back to malloc: %zu bytes released", held - after);
#else
	(void)held, (void)after;
#endif
	/* The ones kept are the first 64 given back, newest first. */
	for (size_t i = KEPT; i-- > 0;)
		cr_assert_eq(iobuf_get(), b[i], "get of kept buffer %zu", i);
}

Test(iobuf, compact_moves_unsent_bytes_to_the_front)
{
	struct iobuf *b = iobuf_get();

	memcpy(b->data, "xxxxABCDEFG", 11);
	b->start = 4;       /* "xxxx" was sent */
	b->scanned = 8;     /* "ABCD" framed, not sent */
	b->end = 11;        /* "EFG" not framed yet */
	cr_assert_eq(iobuf_unsent(b), 4);
	cr_assert_eq(iobuf_room(b), IOBUF_SIZE - 11);
	iobuf_compact(b);
	cr_assert_eq(b->start, 0);
	cr_assert_eq(b->scanned, 4);
	cr_assert_eq(b->end, 7);
	cr_assert_arr_eq(b->data, "ABCDEFG", 7);
	cr_assert_eq(iobuf_unsent(b), 4);
	cr_assert_eq(iobuf_room(b), IOBUF_SIZE - 7);
	iobuf_put(b);
}

Test(iobuf, compact_at_the_front_changes_nothing)
{
	struct iobuf *b = iobuf_get();

	memcpy(b->data, "ABC", 3);
	b->scanned = 2;
	b->end = 3;
	iobuf_compact(b);
	cr_assert_eq(b->start, 0);
	cr_assert_eq(b->scanned, 2);
	cr_assert_eq(b->end, 3);
	cr_assert_arr_eq(b->data, "ABC", 3);
	iobuf_put(b);
}

Test(iobuf, compact_of_a_fully_sent_buffer_empties_it)
{
	struct iobuf *b = iobuf_get();

	b->start = b->scanned = b->end = IOBUF_SIZE;
	cr_assert(iobuf_is_empty(b));
	cr_assert_eq(iobuf_room(b), 0);
	iobuf_compact(b);
	cr_assert_eq(b->end, 0);
	cr_assert_eq(iobuf_room(b), IOBUF_SIZE);
	iobuf_put(b);
}
