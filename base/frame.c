/*
 * frame.c — message framing over a byte stream that arrives in pieces.
 */
#include <string.h>

#include "frame.h"
#include "proto.h"

static size_t pass_body(struct frame *f, size_t avail)
{
	size_t take = f->body_left < avail ? f->body_left : avail;
	f->body_left -= (uint32_t)take;
	return take;
}

static bool wants_whole(const char *whole_types, char type)
{
	return whole_types && type && strchr(whole_types, type) != NULL;
}

/*
 * Read the header at data[0, avail). Returns the bytes it covers (header, or
 * whole message), 0 when more bytes are needed, -1 on an impossible length.
 */
static ssize_t read_header(const uint8_t *data, size_t avail, const char *whole_types,
			   struct frame_msg *msg)
{
	if (avail < 5)
		return 0;
	msg->type = (char)data[0];
	msg->len = be32(data + 1);
	msg->body = NULL;
	if (msg->len < 4 || msg->len > FRAME_MAX_LEN)
		return -1;
	if (!wants_whole(whole_types, msg->type) || msg->len > FRAME_WHOLE_MAX)
		return 5;
	if (avail < 1 + (size_t)msg->len)
		return 0;
	msg->body = data + 5;
	return 1 + (ssize_t)msg->len;
}

ssize_t frame_scan(struct frame *f, const uint8_t *data, size_t n,
		   const char *whole_types, frame_cb cb, void *arg)
{
	size_t pos = 0;
	struct frame_msg msg;

	for (;;) {
		pos += pass_body(f, n - pos);
		if (f->body_left > 0 || pos == n)
			return (ssize_t)pos;
		ssize_t covered = read_header(data + pos, n - pos, whole_types, &msg);
		if (covered == 0)
			return (ssize_t)pos;
		enum frame_verdict v = covered < 0 ? FRAME_ERROR : cb(arg, &msg);
		if (v == FRAME_ERROR) {
			f->error_at = (uint32_t)pos;
			return -1;
		}
		if (v == FRAME_STOP_BEFORE)
			return (ssize_t)pos;
		pos += (size_t)covered;
		f->body_left = msg.body || covered == (ssize_t)(1 + msg.len) ? 0 : msg.len - 4;
		if (v == FRAME_STOP_AFTER)
			return (ssize_t)pos;
	}
}
