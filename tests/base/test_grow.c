/*
 * test_grow.c — Criterion tests for base/grow.c: room is made by doubling,
 * a buffer with room is left as it is, and the first growth is 256 bytes.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"

Test(grow, the_first_growth_is_256_bytes)
{
	size_t cap = 0;
	char *b = grow_bytes(NULL, &cap, 10);

	cr_assert_not_null(b);
	cr_assert_eq(cap, 256);
	free(b);
}

Test(grow, room_already_there_changes_nothing)
{
	size_t cap = 0;
	char *b = grow_bytes(NULL, &cap, 100);

	cr_assert_not_null(b);
	cr_assert_eq(grow_bytes(b, &cap, 256), b);
	cr_assert_eq(cap, 256);
	free(b);
}

Test(grow, it_doubles_until_the_need_fits_and_keeps_the_bytes)
{
	size_t cap = 0;
	char *b = grow_bytes(NULL, &cap, 200);

	cr_assert_not_null(b);
	memset(b, 'x', 200);
	b = grow_bytes(b, &cap, 1100);
	cr_assert_not_null(b);
	cr_assert_eq(cap, 2048, "256 doubled until 1100 fits");
	for (int i = 0; i < 200; i++)
		cr_assert_eq(b[i], 'x');
	free(b);
}
