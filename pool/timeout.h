/*
 * timeout.h — the timeouts that bound what a client holds, checked on the
 * maintenance tick (never a timer per object).
 *
 *   timeout_check()         one pool: its lease holders and its idle clients
 *   timeout_lease_verdict() what is due for one lease (pure: the decision table)
 *
 * See the README ("Timeouts") for what a client sees, pool/README.md for
 * the clocks the relay keeps (struct lease) and the invariants.
 */
#ifndef PGLEASE_TIMEOUT_H
#define PGLEASE_TIMEOUT_H

#include <stdbool.h>
#include <stdint.h>
#include <ev.h>

struct pool;

enum timeout_verdict {
	TIMEOUT_NONE,
	TIMEOUT_CANCEL,        /* query_timeout: cancel the request in flight; the client stays */
	TIMEOUT_QUERY,         /* ... the cancel did not take within server_drain_timeout: exit door */
	TIMEOUT_TRANSACTION,   /* transaction_timeout: FATAL 25P04, exit door */
	TIMEOUT_IDLE_TX,       /* idle_transaction_timeout: FATAL 25P03, exit door */
	TIMEOUT_STALL,         /* client_stall_timeout: FATAL 08P01, exit door */
};

/* The limits (seconds, 0 off) and one lease's facts, as the tick sees them. */
struct timeout_input {
	ev_tstamp now;
	double query_timeout, idle_transaction_timeout, transaction_timeout, client_stall_timeout;
	double server_drain_timeout;
	/* the lease's clocks (struct lease) */
	ev_tstamp started, request_since, quiet_since, tx_since, copy_since, query_cancelled_at;
	ev_tstamp last_read;         /* the client's socket last had bytes */
	uint32_t owed_z;             /* replies still owed */
	char txstatus;               /* the newest ReadyForQuery's status */
	bool mid_message;            /* the client stopped inside a message it owes the backend, or inside COPY data */
	bool copy_in;                /* ... the backend waits for COPY data */
};

enum timeout_verdict timeout_lease_verdict(const struct timeout_input *in);
void timeout_check(struct pool *p, ev_tstamp now);

#endif
