/*
 * stream.h — what is in flight on a leased backend's raw protocol stream.
 *
 *   stream_client_msg()  account for a message the client sends the backend
 *   stream_server_msg()  account for a message the backend sends the client
 *   stream_idle()        nothing owed, nothing half-sent: libpq may take over
 *
 * This is pglease's truth about a leased backend, learnt from the wire, never
 * from libpq's cached PQtransactionStatus or PQparameterStatus: those go
 * stale while bytes bypass libpq (pool/README.md, invariant 3).
 */
#ifndef PGLEASE_STREAM_H
#define PGLEASE_STREAM_H

#include <stdbool.h>
#include <stdint.h>

#include "frame.h"

/* Where a leased stream counts what it sees (the pool's statistics); NULL: nowhere. */
struct stream_counts {
	uint64_t xacts;               /* ReadyForQuery 'I': a transaction (or autocommit statement) ended */
	uint64_t queries;             /* Query and Execute messages from the client */
};

struct stream {
	struct frame to_server;       /* framing of what was sent to the backend */
	struct frame from_server;     /* framing of what was read from it */
	uint32_t owed_z;              /* ReadyForQuery replies still to come */
	uint32_t syncs_after_execute; /* Syncs sent since the last Execute */
	bool unsynced;                /* extended messages sent since the last Sync */
	bool copy_in;                 /* backend is in COPY FROM STDIN */
	bool copy_extended;           /* ... started by Execute: its end needs a Sync */
	bool execute_last;            /* the newest request was Execute, not Query */
	char txstatus;                /* from the newest 'Z': 'I', 'T' or 'E' */
	struct stream_counts *counts; /* set while leased; the exit door's own traffic is not counted */
	double busy_since;            /* when owed_z last rose from 0 (query time, kept by the relay) */
};

/* Types the client side needs to see whole, and the backend side. */
#define STREAM_CLIENT_WHOLE ""
#define STREAM_SERVER_WHOLE "Z"

void stream_reset(struct stream *st);
enum frame_verdict stream_client_msg(struct stream *st, const struct frame_msg *m);
enum frame_verdict stream_server_msg(struct stream *st, const struct frame_msg *m);
bool stream_idle(const struct stream *st);
/* stream_server_msg() as a frame_scan() callback; arg is the stream. */
enum frame_verdict stream_server_frame_cb(void *arg, const struct frame_msg *m);

#endif
