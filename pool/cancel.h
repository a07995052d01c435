/*
 * cancel.h — delivering CancelRequests to backends without blocking the loop.
 *
 *   cancel_submit()      cancel whatever the backend is running now
 *   cancel_submit_for()  ... for a client's CancelRequest, whose connection
 *                        is closed only once the cancel has reached PostgreSQL
 *
 * libpq 15's PQcancel() blocks, so it runs on the worker thread. Until it
 * has gone out the backend counts it in cancels_pending and must not be
 * leased again: a late cancel would hit the next client's query.
 *
 * PostgreSQL closes a CancelRequest's connection after it has signalled the
 * backend, and libpq's PQcancel() waits for that close: a client that goes
 * on after it knows its cancel cannot hit its next statement. pglease keeps
 * that promise by closing the requester only when its own PQcancel returned.
 */
#ifndef PGLEASE_CANCEL_H
#define PGLEASE_CANCEL_H

struct server;
struct client;

void cancel_submit(struct server *s);
void cancel_submit_for(struct server *s, struct client *requester);

#endif
