/*
 * iobuf.h — fixed-size byte buffers, recycled through a free list.
 *
 *   iobuf_get()   a buffer, empty
 *   iobuf_put()   give it back (NULL is fine)
 *
 * Clients hold a buffer only while bytes are in flight, so an idle client
 * costs no buffer memory. Layout of the bytes in a buffer:
 *
 *   [start, scanned)  framed and ready to send
 *   [scanned, end)    not yet framed: a partial header or a message that
 *                     must be seen whole before it is forwarded
 */
#ifndef PGLEASE_IOBUF_H
#define PGLEASE_IOBUF_H

#include <stdint.h>

#include "check.h"

#define IOBUF_SIZE (32 * 1024)

struct iobuf {
	uint32_t start, scanned, end;
	struct iobuf *next_free;
	uint8_t data[IOBUF_SIZE];
};

MUST_CHECK struct iobuf *iobuf_get(void);
void iobuf_put(struct iobuf *buf);
/* Move the unsent bytes to the front so that reads have room. */
void iobuf_compact(struct iobuf *buf);

static inline uint32_t iobuf_unsent(const struct iobuf *b) { return b->scanned - b->start; }
static inline uint32_t iobuf_room(const struct iobuf *b) { return IOBUF_SIZE - b->end; }
static inline int iobuf_is_empty(const struct iobuf *b) { return b->start == b->end; }

#endif
