/*
 * frame.h — message framing over a byte stream that arrives in pieces.
 *
 *   frame_scan()   walk bytes, reporting each message header to a callback
 *
 * Every v3 message after startup is a type byte and an int32 length that
 * counts itself. frame_scan() passes message bodies through without looking
 * at them, except for the types listed as "whole": those are reported only
 * once the complete message is in the buffer (e.g. 'Z', whose status byte
 * decides whether a lease can end), so the scan stops before them until
 * more bytes arrive. A split header is likewise left unscanned.
 */
#ifndef PGLEASE_FRAME_H
#define PGLEASE_FRAME_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "check.h"

/* 1 GB - 1: PostgreSQL's own limit on a protocol message. */
#define FRAME_MAX_LEN 0x3fffffffu
/* A "whole" message longer than this is reported without its body. */
#define FRAME_WHOLE_MAX 8192u

struct frame {
	uint32_t body_left;  /* bytes of the current message's body still to pass */
	uint32_t error_at;   /* after a -1 from frame_scan(): bytes scanned before the bad message */
};

struct frame_msg {
	char type;
	uint32_t len;        /* the length field: body plus 4 */
	const uint8_t *body; /* the body, when the type is "whole" and it fits */
};

enum frame_verdict {
	FRAME_CONTINUE,      /* consume the message and go on */
	FRAME_STOP_AFTER,    /* consume the message, then stop */
	FRAME_STOP_BEFORE,   /* leave the message unscanned and stop */
	FRAME_ERROR,         /* the stream is broken: stop */
};

typedef enum frame_verdict (*frame_cb)(void *arg, const struct frame_msg *msg);

/*
 * Scan data[0, n). Returns how many bytes were scanned (the rest must be
 * offered again with more data appended), or -1 when the callback returned
 * FRAME_ERROR or a length field is impossible; then f->error_at says how
 * many bytes before the bad message were scanned (and reported) anyway.
 */
MUST_CHECK ssize_t frame_scan(struct frame *f, const uint8_t *data, size_t n,
		   const char *whole_types, frame_cb cb, void *arg);

#endif
