/*
 * fuzz_pin.c — libFuzzer target: the SQL lexer and the pinning classifier.
 *
 * The first byte picks a piece size; the rest is SQL text. Fed in pieces it
 * must be classified exactly as when fed whole (same verdict, same reason,
 * same kind, same releases, same statement text), and nothing may read outside the pieces it is given.
 * The same bytes read as protocol messages must pin the same way whole or
 * in pieces too.
 */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "pin.h"

static void classify(struct pin *p, const uint8_t *data, size_t n, size_t piece, bool backslash)
{
	pin_init(p, backslash);
	for (size_t i = 0; i < n; i += piece) {
		size_t m = n - i < piece ? n - i : piece;
		char *copy = malloc(m);
		memcpy(copy, data + i, m);
		pin_feed_sql(p, NULL, copy, m);
		free(copy);
	}
	pin_end_sql(p);
}

static bool wire(struct pin *p, const uint8_t *data, size_t n, size_t piece)
{
	bool pinned = false;

	pin_init(p, false);
	/* A pinned client is still watched (a lasting reason may follow): feed everything. */
	for (size_t i = 0; i < n; i += piece) {
		size_t m = n - i < piece ? n - i : piece;
		uint8_t *copy = malloc(m);
		memcpy(copy, data + i, m);
		pinned = pin_feed_wire(p, NULL, copy, m) || pinned;
		free(copy);
	}
	return pinned;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct pin whole, split;

	if (size < 1)
		return 0;
	size_t piece = (size_t)(data[0] & 0x1f) + 1;
	bool backslash = data[0] & 0x80;
	classify(&whole, data + 1, size - 1, size, backslash);
	classify(&split, data + 1, size - 1, piece, backslash);
	assert(whole.why == split.why);
	assert(whole.lasts == split.lasts && whole.releases == split.releases && whole.resets == split.resets);
	assert(strcmp(whole.statement, split.statement) == 0);
	assert(wire(&whole, data + 1, size - 1, size) == wire(&split, data + 1, size - 1, piece));
	assert(whole.why == split.why);
	return 0;
}
