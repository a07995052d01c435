/*
 * rewrite.h — the relay's prepared-statement layer (transaction mode).
 *
 *   prep_client_free()     per-client state (allocated when first needed, freed when empty)
 *   prep_lease_free()      per-lease state (struct prep_lease, in struct lease)
 *   prep_server_free() / prep_server_forget()  a backend's cache: freed, or known gone
 *   prep_client_msg()      frame callback hook: stop before P/B/D/C, note boundaries
 *   prep_client_step()     rewrite the message the scan stopped at (or go on accumulating)
 *   prep_tx_pending() / prep_tx_send()  rewritten bytes, sent before the client's raw bytes
 *   prep_tx_message()      a whole message into those bytes (also used by reset.c, in both modes)
 *   prep_busy()            a rewrite is half done, or input is held: the lease must not end
 *   prep_held() / prep_take_kick()  input waits for an earlier segment's replies / may go now
 *   prep_scan_from_server()  frame backend bytes, swallowing/translating pglease's replies
 *   prep_lease_end()       a lease ended: forget what was in flight
 *
 * Design (pool/README.md, "Prepared statements in transaction mode"): client
 * statement names map to shared server-side statements "pgl_<id>"; a backend
 * is given a statement (Close + Parse, injected) right before a Bind or
 * Describe needs it; every reply pglease must hide or invent is produced by
 * the backend itself at the right place in the stream (an injected message,
 * or a Close of a name that never exists), so errors and skipping behave
 * exactly as PostgreSQL's.
 */
#ifndef PGLEASE_REWRITE_H
#define PGLEASE_REWRITE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "check.h"
#include "frame.h"
#include "prepared.h"

struct client;
struct server;
struct iobuf;
struct wbuf;

enum prep_step {
	PREP_AGAIN,   /* handled: scan on */
	PREP_MORE,    /* needs more bytes from the client */
	PREP_ERR,     /* out of memory or an impossible message: the client is closed */
};

struct prep_client {
	struct preg reg;           /* the client's statement names */
};

/* What the layer has in flight for one lease (struct lease's `prep`); the exit door empties it. */
struct prep_lease {
	uint8_t *tx;               /* bytes for the backend that precede in[start..] */
	uint32_t tx_len, tx_sent, tx_cap;
	uint8_t *parse;            /* a named Parse body being accumulated */
	uint32_t parse_len, parse_have;
	bool stopped;              /* the scan stopped before a P/B/D/C header */
	bool held;                 /* ... or that message (or the named Parse) waits for an earlier segment */
	bool kick;                 /* a reply came that may let it go: the relay should look */
};

struct prep_server {
	struct pcache cache;
	struct pq q;
	uint64_t unsure_until;     /* a Query or FunctionCall sent behind extended messages without a
				      Sync is ignored after an error there: until the boundaries up to it
				      are answered (q.answered), input is never held */
};

/* Message types the relay must see whole when the layer is on. */
#define PREP_CLIENT_WHOLE "Q"
#define PREP_SERVER_WHOLE "Z13CS"

void prep_client_free(struct prep_client *pc);
void prep_lease_free(struct prep_lease *pl);
void prep_server_free(struct server *s);
void prep_server_forget(struct server *s);

enum frame_verdict prep_client_msg(struct client *c, const struct frame_msg *m);
enum prep_step prep_client_step(struct client *c, struct server *s);
bool prep_busy(const struct client *c);
static inline bool prep_tx_pending(const struct prep_lease *pl) { return pl->tx_sent < pl->tx_len; }
static inline bool prep_stopped(const struct prep_lease *pl) { return pl->stopped; }
static inline bool prep_held(const struct prep_lease *pl) { return pl->held; }
/* Held input may go now: the relay scans the client's input again. */
static inline bool prep_take_kick(struct prep_lease *pl)
{
	bool kick = pl->kick;

	pl->kick = false;
	return kick;
}
/* A whole message pglease sends in order with the client's (reset.c's rewritten Query); -1: out of memory. */
MUST_CHECK int prep_tx_message(struct client *c, char type, const void *body, uint32_t len);
/* Append the client's framed, unsent bytes and send; -1 when the backend is gone. */
MUST_CHECK int prep_tx_send(struct client *c, struct server *s);
MUST_CHECK ssize_t prep_scan_from_server(struct client *c, struct server *s, struct iobuf *out);
void prep_lease_end(struct client *c, struct server *s);
/*
 * An idle client's named Parses + Sync of statements a backend of its pool
 * has parsed: registered, and answered into reply without a lease.
 * 1 answered (bytes consumed), 0 not such a batch (nothing consumed), -1 out of memory.
 */
MUST_CHECK int prep_parse_unleased(struct client *c, struct wbuf *reply);

/* First statement of sql is DISCARD ALL or DEALLOCATE [PREPARE] ALL (pure). */
bool prep_sql_forgets_all(const char *sql, size_t len);
/* sql is DEALLOCATE [PREPARE] name alone: name (case-folded unless quoted) into out (pure). */
bool prep_sql_deallocate_name(const char *sql, size_t len, char *out, size_t cap);

#endif
