/*
 * fuzz_frame.c — libFuzzer target: framing plus stream accounting.
 *
 * The first byte picks a split size; the rest is a message stream offered
 * in pieces, the way the relay offers it (the unscanned tail again, with
 * more bytes appended). Scanning in pieces must report exactly what one
 * scan of the whole stream reports.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"
#include "stream.h"

struct trace {
	struct stream st;
	uint32_t count;
	uint32_t hash;
};

static enum frame_verdict on_msg(void *arg, const struct frame_msg *m)
{
	struct trace *t = arg;

	t->count++;
	t->hash = t->hash * 31 + (uint8_t)m->type + m->len;
	return stream_server_msg(&t->st, m);
}

static ssize_t scan_whole(const uint8_t *data, size_t n, struct trace *t)
{
	struct frame f = { 0 };
	return frame_scan(&f, data, n, "Z", on_msg, t);
}

static ssize_t scan_split(const uint8_t *data, size_t n, size_t step, struct trace *t)
{
	struct frame f = { 0 };
	size_t scanned = 0;

	for (size_t avail = 0; avail < n;) {
		avail = avail + step < n ? avail + step : n;
		ssize_t used = frame_scan(&f, data + scanned, avail - scanned, "Z", on_msg, t);
		if (used < 0)
			return -1;
		scanned += (size_t)used;
	}
	return (ssize_t)scanned;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct trace whole = { 0 }, split = { 0 };

	if (size < 2)
		return 0;
	size_t step = 1 + data[0] % 16;
	stream_reset(&whole.st);
	stream_reset(&split.st);
	ssize_t a = scan_whole(data + 1, size - 1, &whole);
	ssize_t b = scan_split(data + 1, size - 1, step, &split);
	if ((a < 0) != (b < 0))
		abort();
	if (a >= 0 && (a != b || whole.count != split.count || whole.hash != split.hash ||
		       whole.st.txstatus != split.st.txstatus || whole.st.owed_z != split.st.owed_z))
		abort();
	return 0;
}
