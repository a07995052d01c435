/*
 * lease.h — a client's hold on a backend, as a scope.
 *
 *   lease_enter()   the client needs a backend: take, open or wait
 *   lease_grant()   a backend is free for this waiting client
 *   lease_setup()   fit the backend to the client (settings, health check), then relay
 *   lease_query()   libpq SQL for the lease holder (setup, the pin probe), between its messages
 *   lease_exit()    the one door every lease leaves by, with a reason
 *   lease_server_closed()  the backend went away: the door's last step
 *   lease_clean_step()  the exit decision table (pure)
 *
 * See pool/README.md for the states, the exit matrix and the invariants.
 */
#ifndef PGLEASE_LEASE_H
#define PGLEASE_LEASE_H

#include <stdbool.h>
#include <stdint.h>
#include <ev.h>

#include "rewrite.h"
#include "stream.h"

struct client;
struct server;

/*
 * Every way a lease ends, listed once: X(ID, name, label). EXIT_<ID> is the
 * enum value; the name is what logs and SHOW SERVERS' cleaning_for print;
 * the label names the SHOW STATS column exits_<label> and the metrics series
 * pglease_lease_exits_total{reason="<label>"}, in this order.
 */
#define LEASE_EXIT_REASONS(X) \
	/* transaction mode: clean ReadyForQuery 'I' */ \
	X(TX_DONE, "transaction done", "transaction_done") \
	/* the client disconnected or sent Terminate */ \
	X(CLIENT_GONE, "client gone", "client_gone") \
	/* the client broke the protocol */ \
	X(CLIENT_PROTOCOL, "client protocol violation", "client_protocol") \
	/* the backend closed or broke the protocol */ \
	X(SERVER_LOST, "server lost", "server_lost") \
	/* applying the client's settings failed */ \
	X(SETUP_FAILED, "setup failed", "setup_failed") \
	/* KILL on the admin console */ \
	X(KILLED, "killed", "killed") \
	/* pglease is stopping */ \
	X(SHUTDOWN, "shutdown", "shutdown") \
	/* query_timeout: the cancel it sent did not stop the query within server_drain_timeout */ \
	X(TIMEOUT_QUERY, "timeout/query", "timeout_query") \
	/* idle_transaction_timeout: idle inside a transaction */ \
	X(TIMEOUT_IDLE_TX, "timeout/idle_transaction", "timeout_idle_transaction") \
	/* transaction_timeout: a transaction open too long */ \
	X(TIMEOUT_TX, "timeout/transaction", "timeout_transaction") \
	/* client_stall_timeout: the client stopped in the middle of a message */ \
	X(TIMEOUT_STALL, "timeout/stall", "timeout_stall")

#define LEASE_EXIT_ENUM(id, name, label) EXIT_##id,
enum lease_exit_reason { LEASE_EXIT_REASONS(LEASE_EXIT_ENUM) };
#undef LEASE_EXIT_ENUM

#define LEASE_EXIT_ONE(id, name, label) +1
enum { LEASE_EXIT_REASON_COUNT = 0 LEASE_EXIT_REASONS(LEASE_EXIT_ONE) };
#undef LEASE_EXIT_ONE

/*
 * One lease: a client's hold on a backend, from lease_grant() until the
 * backend is clean again (or gone). lease_grant() creates it, and only the
 * exit door ends it: lease_exit() detaches the client, and the lease then
 * lives on, holderless, while the backend is cleaned; lease_done() ends it
 * when the backend goes back to the pool or away. Its storage is a slot in
 * the backend (a backend has one lease at a time), so taking one cannot fail.
 *
 *   held:     c->lease == l, l->client == c, s->lease == l, s LEASED, c ACTIVE
 *   exiting:  l->client == NULL, s->lease == l, s CLEANING (or LEASED for an
 *             instant inside lease_exit)
 */
struct lease {
	struct client *client;       /* the holder, until lease_exit() */
	struct server *server;       /* the backend, until lease_done() */
	ev_tstamp started;           /* granted: lease time, lease_warn_after */
	uint8_t close_why;           /* enum lease_exit_reason if its client closes while holding it */
	uint8_t why;                 /* enum lease_exit_reason: why it ended (exiting) */
	bool relayed;                /* the relay started: client bytes may have reached the backend */
	bool warned;                 /* logged as older than lease_warn_after */
	bool cancel_at_relay;        /* a cancel came while it was being set up */
	/* Clocks the timeouts read (pool/timeout.c), kept by the relay. */
	ev_tstamp request_since;     /* the oldest request in flight started running (owed_z > 0) */
	ev_tstamp quiet_since;       /* the last reply owed came (owed_z reached 0) */
	ev_tstamp tx_since;          /* the open transaction's first statement was sent */
	ev_tstamp copy_since;        /* the backend asked for COPY data */
	ev_tstamp query_cancelled_at;  /* query_timeout cancelled the request in flight (0: not) */
	/* a libpq query for the holder is running (lease_query) */
	void (*query_done)(struct server *s, const char *sqlstate, const char *error);
	/* the exit door's progress */
	bool broken, reset_needed, rolled_back, cancel_sent, waiting_cancel, drained;
	uint8_t carry[8];            /* a split header read but not yet framed */
	uint8_t carry_len;
	struct prep_lease prep;      /* the prepared-statement layer's bytes and holds in flight (rewrite.c) */
};

enum clean_step {
	CLEAN_DISCARD,         /* cannot be made clean: close and replace */
	CLEAN_COPY_FAIL,       /* inside COPY FROM STDIN: send CopyFail */
	CLEAN_SYNC,            /* extended messages without Sync: send Sync */
	CLEAN_DRAIN,           /* replies owed: read and drop them */
	CLEAN_WAIT_CANCEL,     /* a cancel is still on its way to this backend */
	CLEAN_ROLLBACK,        /* in a transaction: ROLLBACK through libpq */
	CLEAN_RESET,           /* session ended: server_reset_query */
	CLEAN_DONE,            /* clean: back to the pool */
};

struct clean_input {
	const struct stream *stream;
	bool server_lost;      /* the backend is gone or the stream is broken */
	bool rolled_back;      /* ROLLBACK already ran and did not leave it idle */
	bool reset_needed;
	bool cancels_pending;
	bool header_carried;   /* part of a backend message's header was read, not yet framed (lease->carry) */
};

/* The reason's name for logs ("transaction done"). */
const char *lease_exit_reason_name(enum lease_exit_reason why);
enum clean_step lease_clean_step(const struct clean_input *in);

void lease_enter(struct client *c);
void lease_grant(struct client *c, struct server *s);
void lease_setup(struct client *c, struct server *s);
/* done runs only while the lease holds; if it ended meanwhile, the exit door takes the backend on. */
int lease_query(struct server *s, const char *sql, void (*done)(struct server *, const char *, const char *));
void lease_exit(struct client *c, enum lease_exit_reason why);
/* The backend is closing (server_close): a held lease ends (server lost), an exiting one is over. */
void lease_server_closed(struct server *s);
void lease_cancel_done(struct server *s);

#endif
