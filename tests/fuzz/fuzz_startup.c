/*
 * fuzz_startup.c — libFuzzer target: startup_parse() on arbitrary bytes.
 * Whatever arrives, the parser must classify it without reading out of
 * bounds, and a packet it accepts must have a user and a database.
 */
#include <stdint.h>
#include <stdlib.h>

#include "startup.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct startup st;

	startup_parse(data, size, &st);
	if (st.kind == STARTUP_V3 && (!st.user || !st.database))
		abort();
	if (st.kind != STARTUP_INCOMPLETE && st.kind != STARTUP_BAD && st.packet_len > size)
		abort();
	startup_free(&st);
	return 0;
}
