/*
 * authq.h — auth_user + auth_query: a user missing from auth_file is looked
 * up in PostgreSQL, through a backend of the pool (database, auth_user).
 *
 *   authq_lookup()  ask for a user's secret; the answer comes later, from the loop
 *   authq_cancel()  the requester went away: its callback never runs
 *
 * For the object model (pool.c, server.c, verify.c), not for the front end:
 *
 *   authq_take_server()   a backend of a pool came free: lend it to the first lookup waiting there
 *   authq_serve()         lend the pool's idle backends to its queued lookups (a lookup requeued, RESUME)
 *   authq_server_closed() a lent backend closed under its lookup
 *   authq_pool_failed()   the pool cannot connect: its waiting lookups fail
 *   authq_pool_closing()  the pool takes no new work (database removed, shutdown)
 *   authq_maintain()      lookups that waited longer than query_wait_timeout fail
 *   authq_reload()        the config changed: the cache is flushed
 *   authq_free_all()      at exit
 *   authq_verify()        its invariants (pool/README.md, "auth_query")
 *
 * A lent backend is in state AUTHQ (pool->authq) with s->authq pointing at
 * its lookup, in phase QUERY; it goes back through pool_server_free() when
 * the answer is read, or is closed.
 */
#ifndef PGLEASE_AUTHQ_H
#define PGLEASE_AUTHQ_H

#include <stdbool.h>

#include <ev.h>

#include "check.h"

struct pool;
struct server;
struct authq_request;

enum authq_status { AUTHQ_FOUND, AUTHQ_NO_USER, AUTHQ_FAILED };

struct authq_answer {
	enum authq_status status;
	const char *secret;   /* AUTHQ_FOUND: the passwd column (plain, md5… or SCRAM-SHA-256$…); valid during the callback only */
	bool expired;         /* AUTHQ_FOUND: valuntil has passed: the caller refuses the login as a wrong password */
	const char *error;    /* AUTHQ_FAILED: why, for the log */
};

typedef void (*authq_done)(void *arg, const struct authq_answer *answer);

/* Look up user for a client of database dbname (a [databases] entry). done is called exactly once,
 * later from the loop (never from inside this call), unless cancelled. NULL: cannot start (say why in the log). */
MUST_CHECK struct authq_request *authq_lookup(const char *dbname, const char *user, authq_done done, void *arg);
void authq_cancel(struct authq_request *req);   /* the requester went away: done is never called */
/* Whether users of database dbname are looked up at all: it is a [databases] entry with an auth_user. */
bool authq_enabled(const char *dbname);
/* A request is freed right after its done returns: it may not be cancelled then or later. */

bool authq_take_server(struct server *s);
void authq_serve(struct pool *p);
void authq_server_closed(struct server *s, const char *reason);
void authq_pool_failed(struct pool *p, const char *error);
void authq_pool_closing(struct pool *p, const char *reason);
void authq_maintain(ev_tstamp now);
void authq_reload(void);
void authq_free_all(void);
/* NULL, or the first invariant violated (pool_verify()). */
const char *authq_verify(const struct pool *p, char *buf, int cap);

#endif
