/*
 * proto.c — building PostgreSQL v3 protocol messages into bounded buffers.
 */
#include <string.h>

#include "proto.h"

void wbuf_init(struct wbuf *w, uint8_t *data, size_t cap)
{
	w->data = data;
	w->len = 0;
	w->cap = cap;
	w->overflow = false;
}

void wbuf_bytes(struct wbuf *w, const void *p, size_t n)
{
	if (w->overflow || n > w->cap - w->len) {
		w->overflow = true;
		return;
	}
	memcpy(w->data + w->len, p, n);
	w->len += n;
}

void wbuf_byte(struct wbuf *w, uint8_t b)
{
	wbuf_bytes(w, &b, 1);
}

void wbuf_int32(struct wbuf *w, uint32_t v)
{
	uint8_t b[4] = { v >> 24, v >> 16, v >> 8, v };
	wbuf_bytes(w, b, 4);
}

void wbuf_cstr(struct wbuf *w, const char *s)
{
	wbuf_bytes(w, s, strlen(s) + 1);
}

size_t wbuf_begin(struct wbuf *w, char type)
{
	wbuf_byte(w, (uint8_t)type);
	size_t mark = w->len;
	wbuf_int32(w, 0);
	return mark;
}

void wbuf_end(struct wbuf *w, size_t mark)
{
	if (w->overflow)
		return;
	uint32_t len = (uint32_t)(w->len - mark);
	uint8_t *p = w->data + mark;
	p[0] = len >> 24;
	p[1] = len >> 16;
	p[2] = len >> 8;
	p[3] = len;
}

static void error_field(struct wbuf *w, char code, const char *value)
{
	if (!value)
		return;
	wbuf_byte(w, (uint8_t)code);
	wbuf_cstr(w, value);
}

static void error_or_notice(struct wbuf *w, char type, const char *severity, const char *sqlstate,
			    const char *message, const char *detail, const char *hint)
{
	size_t mark = wbuf_begin(w, type);
	error_field(w, 'S', severity);
	error_field(w, 'V', severity);
	error_field(w, 'C', sqlstate);
	error_field(w, 'M', message);
	error_field(w, 'D', detail);
	error_field(w, 'H', hint);
	wbuf_byte(w, 0);
	wbuf_end(w, mark);
}

void proto_error(struct wbuf *w, const char *severity, const char *sqlstate,
		 const char *message, const char *detail, const char *hint)
{
	error_or_notice(w, 'E', severity, sqlstate, message, detail, hint);
}

void proto_notice(struct wbuf *w, const char *severity, const char *sqlstate,
		  const char *message, const char *detail, const char *hint)
{
	error_or_notice(w, 'N', severity, sqlstate, message, detail, hint);
}

void proto_auth_ok(struct wbuf *w)
{
	size_t mark = wbuf_begin(w, 'R');
	wbuf_int32(w, 0);
	wbuf_end(w, mark);
}

void proto_param_status(struct wbuf *w, const char *name, const char *value)
{
	size_t mark = wbuf_begin(w, 'S');
	wbuf_cstr(w, name);
	wbuf_cstr(w, value);
	wbuf_end(w, mark);
}

void proto_backend_key(struct wbuf *w, uint32_t pid, uint32_t key)
{
	size_t mark = wbuf_begin(w, 'K');
	wbuf_int32(w, pid);
	wbuf_int32(w, key);
	wbuf_end(w, mark);
}

void proto_ready(struct wbuf *w, char status)
{
	size_t mark = wbuf_begin(w, 'Z');
	wbuf_byte(w, (uint8_t)status);
	wbuf_end(w, mark);
}

void proto_parse_complete(struct wbuf *w)
{
	wbuf_end(w, wbuf_begin(w, '1'));
}

void proto_negotiate(struct wbuf *w, uint32_t newest_version, const char *const *options, int n)
{
	size_t mark = wbuf_begin(w, 'v');
	wbuf_int32(w, newest_version);
	wbuf_int32(w, (uint32_t)n);
	for (int i = 0; i < n; i++)
		wbuf_cstr(w, options[i]);
	wbuf_end(w, mark);
}

void proto_sync(struct wbuf *w)
{
	size_t mark = wbuf_begin(w, 'S');
	wbuf_end(w, mark);
}

void proto_copy_fail(struct wbuf *w, const char *why)
{
	size_t mark = wbuf_begin(w, 'f');
	wbuf_cstr(w, why);
	wbuf_end(w, mark);
}

void proto_notification(struct wbuf *w, uint32_t pid, const char *channel, const char *payload)
{
	size_t mark = wbuf_begin(w, 'A');
	wbuf_int32(w, pid);
	wbuf_cstr(w, channel);
	wbuf_cstr(w, payload);
	wbuf_end(w, mark);
}
