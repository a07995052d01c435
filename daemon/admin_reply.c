/*
 * admin_reply.c — the admin console's replies: protocol messages built into
 * a growing buffer, and result sets (RowDescription, DataRow) in text format,
 * or in binary for the columns a Bind asked so (int8, float8; text is the
 * same bytes either way).
 *
 * Pure (no loop, no sockets): the console hands the bytes to its client.
 * Out of memory is sticky (r->oom) and checked once, when the reply is sent.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "grow.h"
#include "admin_reply.h"

/* ---- output: r growing buffer of protocol messages ---- */

void reply_bytes(struct reply *r, const void *p, size_t n)
{
	if (r->oom || n == 0)
		return;
	uint8_t *b = grow_bytes(r->data, &r->cap, r->len + n);
	if (!b) {
		r->oom = true;
		return;
	}
	r->data = b;
	memcpy(r->data + r->len, p, n);
	r->len += n;
}

void reply_int32(struct reply *r, uint32_t v)
{
	uint8_t b[4] = { v >> 24, v >> 16, v >> 8, v };
	reply_bytes(r, b, 4);
}

void reply_int16(struct reply *r, uint16_t v)
{
	uint8_t b[2] = { v >> 8, v };
	reply_bytes(r, b, 2);
}

void reply_cstr(struct reply *r, const char *s)
{
	reply_bytes(r, s, strlen(s) + 1);
}

size_t reply_begin(struct reply *r, char type)
{
	reply_bytes(r, &type, 1);
	size_t mark = r->len;
	reply_int32(r, 0);
	return mark;
}

void reply_end(struct reply *r, size_t mark)
{
	if (r->oom)
		return;
	/* reply_begin() wrote the type and a length to fill in. */
	assert(mark >= 1 && mark + 4 <= r->len);
	uint32_t len = (uint32_t)(r->len - mark);
	uint8_t *p = r->data + mark;
	p[0] = len >> 24, p[1] = len >> 16, p[2] = len >> 8, p[3] = len;
}

void reply_empty(struct reply *r, char type)
{
	reply_end(r, reply_begin(r, type));
}

/* A message built by proto.c into r bounded buffer. */
void reply_wbuf(struct reply *r, const struct wbuf *w)
{
	if (!w->overflow)
		reply_bytes(r, w->data, w->len);
}

void reply_error(struct reply *r, const char *sqlstate, const char *message, const char *hint)
{
	uint8_t buf[2048];
	struct wbuf w;

	wbuf_init(&w, buf, sizeof(buf));
	proto_error(&w, "ERROR", sqlstate, message, NULL, hint);
	reply_wbuf(r, &w);
}

void reply_ready(struct reply *r)
{
	size_t m = reply_begin(r, 'Z');
	reply_bytes(r, "I", 1);
	reply_end(r, m);
}

void reply_complete(struct reply *r, const char *tag)
{
	size_t m = reply_begin(r, 'C');
	reply_cstr(r, tag);
	reply_end(r, m);
}

/* Hand what fits to the client; the rest goes when it can take more. */
/* ---- result sets ---- */

void reply_set_formats(struct reply *r, const uint8_t *formats, int n)
{
	r->nformats = n < REPLY_MAX_FORMATS ? n : REPLY_MAX_FORMATS;
	if (r->nformats > 0)
		memcpy(r->formats, formats, (size_t)r->nformats);
}

static bool col_binary(const struct reply *r, int i)
{
	if (r->nformats == 1)
		return r->formats[0];
	return i < r->nformats && r->formats[i];
}

void reply_row_description(struct reply *r, const struct table *t)
{
	size_t m = reply_begin(r, 'T');

	reply_int16(r, (uint16_t)t->n);
	for (int i = 0; i < t->n; i++) {
		reply_cstr(r, t->cols[i].name);
		reply_int32(r, 0);              /* table oid */
		reply_int16(r, 0);              /* column number */
		reply_int32(r, t->cols[i].type);
		reply_int16(r, t->cols[i].type == OID_TEXT ? (uint16_t)-1 : 8);
		reply_int32(r, (uint32_t)-1);   /* type modifier */
		reply_int16(r, col_binary(r, i));
	}
	reply_end(r, m);
}

/* A DataRow is built cell by cell between reply_row_begin() and row_end(). */
size_t reply_row_begin(struct reply *r, const struct table *t)
{
	size_t m = reply_begin(r, 'D');
	reply_int16(r, (uint16_t)t->n);
	r->col = 0;
	r->row_cols = t->n;
	return m;
}

/* A text value is the same bytes in binary format. */
void reply_cell(struct reply *r, const char *s)
{
	/* A row has exactly the cells its RowDescription announced. */
	assert(r->col < r->row_cols);
	r->col++;
	if (!s) {
		reply_int32(r, (uint32_t)-1);
		return;
	}
	reply_int32(r, (uint32_t)strlen(s));
	reply_bytes(r, s, strlen(s));
}

static void binary8(struct reply *r, uint64_t bits)
{
	uint8_t b[8];

	for (int i = 0; i < 8; i++)
		b[i] = (uint8_t)(bits >> (56 - 8 * i));
	assert(r->col < r->row_cols);
	r->col++;
	reply_int32(r, 8);
	reply_bytes(r, b, 8);
}

void reply_cell_int(struct reply *r, long long v)
{
	char buf[32];

	if (col_binary(r, r->col))
		return binary8(r, (uint64_t)v);
	snprintf(buf, sizeof(buf), "%lld", v);
	reply_cell(r, buf);
}

void reply_cell_float(struct reply *r, double v)
{
	char buf[48];
	uint64_t bits;

	if (col_binary(r, r->col)) {
		memcpy(&bits, &v, sizeof(bits));
		return binary8(r, bits);
	}
	snprintf(buf, sizeof(buf), "%.6f", v);
	reply_cell(r, buf);
}

void reply_cell_time(struct reply *r, double t)
{
	char buf[48];
	time_t secs = (time_t)t;
	struct tm tm;

	if (!t || !gmtime_r(&secs, &tm))
		return reply_cell(r, NULL);
	strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm);
	reply_cell(r, buf);
}

void reply_free(struct reply *r)
{
	free(r->data);
	*r = (struct reply){ 0 };
}
