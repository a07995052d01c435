/*
 * caps.h — caps across pools: backends and clients per database and per
 * user, the reserve, and the per-user settings of [users].
 *
 *   pool_size_for() / pool_mode_for()  a pool's size and mode: [users] over [databases] over [pglease]
 *   caps_db_cap() / caps_user_cap()  max_db_connections / max_user_connections for a pool (0: none)
 *   caps_db_servers() / caps_user_servers()  backends PostgreSQL sees for a database / user
 *   caps_room()        backends a pool may open now without passing a cap (INT_MAX: uncapped)
 *   caps_make_room()   close an idle backend of a sibling pool so a blocked pool can open one
 *   caps_shed()        a freed backend: close it instead when a cap needs it elsewhere
 *   caps_server_closed()  a live backend went: capped pools wait for PostgreSQL to see it gone
 *   caps_reserve()     extra backends a pool may open now (its clients waited reserve_pool_timeout)
 *   caps_client_refusal()  the FATAL 53300 text when a login passes a client cap, else NULL
 *   caps_trim_idle()   a reload lowered a cap: idle backends above it close
 *   caps_reloaded() / caps_epoch()  which backends were opened under the running config
 *   caps_verify()      the invariant: no capped database or user has more backends than its cap
 *
 * A database is a client-visible database name (pools are per (name, user));
 * its cap is the [databases] entry's max_db_connections= or the global one.
 * Counts are taken by walking all_pools: pools are few and caps are asked
 * only when a backend is opened or freed, never on the hot path.
 */
#ifndef PGLEASE_CAPS_H
#define PGLEASE_CAPS_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

struct pool;
struct server;

/* Seconds a capped pool waits after a live backend closed before it opens one (PostgreSQL's backend must exit first). */
#define CAPS_SETTLE 0.1
/* A pool with no backend at all gets a busy sibling's next free one once its clients have waited this much longer. */
#define CAPS_TURN 0.5

int pool_size_for(const struct db_config *db, const char *user, const struct config *c);
enum pool_mode pool_mode_for(const struct db_config *db, const char *user, const struct config *c);
int caps_db_cap(const struct pool *p);
int caps_user_cap(const struct pool *p);
int caps_db_servers(const char *dbname);
int caps_user_servers(const char *user);
int caps_db_clients(const char *dbname);
int caps_user_clients(const char *user);
int caps_room(const struct pool *p);
bool caps_make_room(struct pool *p);
bool caps_shed(struct server *s);
void caps_server_closed(const struct pool *p);
bool caps_settling(const struct pool *p);
int caps_reserve_size(const struct pool *p);
int caps_reserve(const struct pool *p);
const char *caps_client_refusal(const struct db_config *db, const char *dbname, const char *user, char *buf,
				  size_t cap);
/* A reload lowered a cap: close idle backends of p's groups until they fit. */
void caps_trim_idle(struct pool *p);
/* Every reload: servers opened before it may sit above a lowered cap until they come free. */
void caps_reloaded(void);
unsigned caps_epoch(void);
const char *caps_verify(char *why, size_t cap);

#endif
