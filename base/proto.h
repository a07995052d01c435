/*
 * proto.h — building PostgreSQL v3 protocol messages.
 *
 *   wbuf_*            append to a bounded byte buffer; overflow is sticky
 *   proto_error()     ErrorResponse (severity, SQLSTATE, message, detail, hint)
 *   proto_notice()    NoticeResponse, the same fields
 *   proto_*()         AuthenticationOk, ParameterStatus, BackendKeyData,
 *                     ReadyForQuery, NegotiateProtocolVersion, Sync, CopyFail,
 *                     NotificationResponse
 *   be32()            read a big-endian int32
 */
#ifndef PGLEASE_PROTO_H
#define PGLEASE_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Protocol constants from the PostgreSQL frontend/backend protocol. */
#define PROTO_V3 0x00030000u
#define PROTO_SSL_REQUEST 80877103u
#define PROTO_GSSENC_REQUEST 80877104u
#define PROTO_CANCEL_REQUEST 80877102u
#define STARTUP_MAX_LEN 10000u

struct wbuf {
	uint8_t *data;
	size_t len, cap;
	bool overflow;
};

static inline uint32_t be32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

void wbuf_init(struct wbuf *w, uint8_t *data, size_t cap);
void wbuf_byte(struct wbuf *w, uint8_t b);
void wbuf_int32(struct wbuf *w, uint32_t v);
void wbuf_bytes(struct wbuf *w, const void *p, size_t n);
void wbuf_cstr(struct wbuf *w, const char *s);
/* Start a message of the given type; returns a mark for wbuf_end(). */
size_t wbuf_begin(struct wbuf *w, char type);
void wbuf_end(struct wbuf *w, size_t mark);

void proto_error(struct wbuf *w, const char *severity, const char *sqlstate,
		 const char *message, const char *detail, const char *hint);
void proto_notice(struct wbuf *w, const char *severity, const char *sqlstate,
		  const char *message, const char *detail, const char *hint);
void proto_auth_ok(struct wbuf *w);
void proto_param_status(struct wbuf *w, const char *name, const char *value);
void proto_backend_key(struct wbuf *w, uint32_t pid, uint32_t key);
void proto_ready(struct wbuf *w, char status);
void proto_parse_complete(struct wbuf *w);
void proto_negotiate(struct wbuf *w, uint32_t newest_version, const char *const *options, int n);
void proto_sync(struct wbuf *w);
void proto_copy_fail(struct wbuf *w, const char *why);
void proto_notification(struct wbuf *w, uint32_t pid, const char *channel, const char *payload);

#endif
