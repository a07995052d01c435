/*
 * lease.h — a client's hold on a backend, as a scope.
 *
 *   lease_enter()   the client needs a backend: take, open or wait
 *   lease_grant()   a backend is free for this waiting client
 *   lease_setup()   fit the backend to the client (settings, health check), then relay
 *   lease_query()   libpq SQL for the lease holder (setup, the pin probe), between its messages
 *   lease_exit()    the one door every lease leaves by, with a reason
 *   lease_clean_step()  the exit decision table (pure)
 *
 * See pool/README.md for the states, the exit matrix and the invariants.
 */
#ifndef PGLEASE_LEASE_H
#define PGLEASE_LEASE_H

#include <stdbool.h>

#include "stream.h"

struct client;
struct server;

enum lease_exit_reason {
	EXIT_TX_DONE,          /* transaction mode: clean ReadyForQuery 'I' */
	EXIT_CLIENT_GONE,      /* the client disconnected or sent Terminate */
	EXIT_CLIENT_PROTOCOL,  /* the client broke the protocol */
	EXIT_SERVER_LOST,      /* the backend closed or broke the protocol */
	EXIT_SETUP_FAILED,     /* applying the client's settings failed */
	EXIT_TIMEOUT,          /* a pglease timeout ended the lease */
	EXIT_SHUTDOWN,         /* pglease is stopping */
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
};

const char *lease_exit_reason_name(enum lease_exit_reason why);
enum clean_step lease_clean_step(const struct clean_input *in);

void lease_enter(struct client *c);
void lease_grant(struct client *c, struct server *s);
void lease_setup(struct client *c, struct server *s);
/* done runs only while the lease holds; if it ended meanwhile, the exit door takes the backend on. */
int lease_query(struct server *s, const char *sql, void (*done)(struct server *, const char *, const char *));
void lease_exit(struct client *c, enum lease_exit_reason why);
void lease_cancel_done(struct server *s);

#endif
