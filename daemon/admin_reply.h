/*
 * admin_reply.h — the admin console's replies, built into a growing buffer.
 *
 *   reply_begin() / reply_end()   frame one message; reply_empty() for a bodiless one
 *   reply_bytes() / reply_int16() / reply_int32() / reply_cstr()  message fields
 *   reply_wbuf()                  append a message built by proto.c
 *   reply_error() / reply_ready() / reply_complete()  ErrorResponse, ReadyForQuery, CommandComplete
 *   reply_row_description()       a result set's columns (struct table)
 *   reply_row_begin() + reply_cell*() + reply_end()  one DataRow, in the formats set by
 *                                 reply_set_formats() (text unless a Bind asked for binary)
 *   reply_free()                  release the buffer
 */
#ifndef PGLEASE_ADMIN_REPLY_H
#define PGLEASE_ADMIN_REPLY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto.h"

#define REPLY_MAX_FORMATS 64

struct reply {
	uint8_t *data;
	size_t len, sent, cap;     /* [sent, len) is still to go to the client */
	bool oom;                  /* an append failed: the reply is incomplete */
	/* result format codes of the portal being answered (Bind's rules: none = text, one = all) */
	int nformats;
	uint8_t formats[REPLY_MAX_FORMATS];
	int col;                   /* the cell being written in the current DataRow */
	int row_cols;              /* ... which has this many (its table's) */
};

/* PostgreSQL type oids of the columns the console returns. */
enum oid { OID_TEXT = 25, OID_INT8 = 20, OID_FLOAT8 = 701 };

struct col {
	const char *name;
	enum oid type;
};

struct table {
	const struct col *cols;
	int n;
};

#define TABLE(cols) { cols, (int)(sizeof(cols) / sizeof(*cols)) }

void reply_bytes(struct reply *r, const void *p, size_t n);
void reply_int32(struct reply *r, uint32_t v);
void reply_int16(struct reply *r, uint16_t v);
void reply_cstr(struct reply *r, const char *s);
size_t reply_begin(struct reply *r, char type);
void reply_end(struct reply *r, size_t mark);
void reply_empty(struct reply *r, char type);
void reply_wbuf(struct reply *r, const struct wbuf *w);
void reply_error(struct reply *r, const char *sqlstate, const char *message, const char *hint);
void reply_ready(struct reply *r);
void reply_complete(struct reply *r, const char *tag);
void reply_row_description(struct reply *r, const struct table *t);
size_t reply_row_begin(struct reply *r, const struct table *t);
void reply_cell(struct reply *r, const char *s);      /* NULL: SQL NULL */
void reply_cell_int(struct reply *r, long long v);
void reply_cell_float(struct reply *r, double v);
void reply_cell_time(struct reply *r, double t);      /* epoch seconds as "YYYY-MM-DD HH:MM:SS UTC"; 0: NULL */
void reply_set_formats(struct reply *r, const uint8_t *formats, int n);
void reply_free(struct reply *r);

#endif
