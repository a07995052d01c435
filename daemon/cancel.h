/*
 * cancel.h — delivering CancelRequests to backends without blocking the loop.
 *
 *   cancel_start()   start the worker thread (before the loop runs)
 *   cancel_submit()  cancel whatever the backend is running now
 *   cancel_stop()
 *
 * libpq 15's PQcancel() blocks, so a worker thread runs it. Until it has
 * gone out the backend counts it in cancels_pending and must not be leased
 * again: a late cancel would hit the next client's query.
 */
#ifndef PGLEASE_CANCEL_H
#define PGLEASE_CANCEL_H

struct server;

int cancel_start(void);
void cancel_submit(struct server *s);
void cancel_stop(void);

#endif
