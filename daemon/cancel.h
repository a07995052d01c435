/*
 * cancel.h — delivering CancelRequests to backends without blocking the loop.
 *
 *   cancel_submit()  cancel whatever the backend is running now
 *
 * libpq 15's PQcancel() blocks, so it runs on the worker thread. Until it
 * has gone out the backend counts it in cancels_pending and must not be
 * leased again: a late cancel would hit the next client's query.
 */
#ifndef PGLEASE_CANCEL_H
#define PGLEASE_CANCEL_H

struct server;

void cancel_submit(struct server *s);

#endif
