/*
 * pool.h — the backends and clients of one (database, user) pair.
 *
 *   pool_effective_size() / pool_effective_mode()  a database's pool size and mode under a config
 *   pool_find_or_create()  the pool a client logs in to
 *   pool_server_free()     a backend is clean: hand it to a waiter or idle it
 *   pool_server_connected() / pool_server_failed() / pool_server_gone()
 *   pool_want_servers()    open backends when clients wait or min_pool_size says so
 *   pool_refuses_clients() refuse clients now rather than let them wait out an outage
 *   pool_maintain()        periodic: timeouts, idle and lifetime limits
 *   pool_snapshot()        "size N, active N, idle N, waiting N" for messages
 *   pool_prewarm()         create pools whose user is fixed, and fill min_pool_size
 *   pool_reconnect()       retire every backend: idle ones now, leased ones when their lease ends
 *   pool_pause_db() / pool_resume_db()  stop granting leases / grant them again (admin console)
 *   pool_paused()          is its database paused (pause.c holds the paused names)
 *   pool_reconfigure()     a reload changed its database entry: re-point, resize, new conninfo
 *   pool_retire()          a reload replaced its entry: no new clients join; freed once its clients are gone
 *   pool_close()           a reload removed it, or shutdown: retired, no new leases; freed once empty
 *   pool_close_servers()   close every backend no lease holds (KILL, shutdown)
 */
#ifndef PGLEASE_POOL_H
#define PGLEASE_POOL_H

#include <ev.h>

#include "check.h"
#include "config.h"
#include "list.h"
#include "params.h"
#include "pause.h"
#include "stats.h"
#include "vet.h"

struct server;
struct client;

/* Why a pool takes no new leases; its clients leave when their lease ends (pool/drain.c). */
enum pool_closing {
	POOL_OPEN,
	POOL_CLOSE_AT_LEASE_END,   /* shutdown: sessions (session mode) run to their end */
	POOL_CLOSE_AT_TX_END,      /* database removed: session-mode leases end at the transaction's end too */
};

struct pool {
	struct list_node node;        /* on the global list of pools */
	char *dbname;                 /* client-visible database */
	char *user;
	const struct db_config *db;
	const char **keywords;        /* libpq connect parameters, NULL-terminated */
	const char **values;
	int size;
	enum pool_mode mode;
	/* servers, by state */
	struct list connecting, idle, leased, cleaning;
	struct list authq;            /* lent to an auth_query lookup (authq.c) */
	int authq_waiting;            /* auth_query lookups queued for a backend of this pool (authq.c) */
	/* clients, by state */
	struct list login_wait, clients, waiting, active;
	struct param_set base;        /* the backend's startup ParameterStatus values */
	bool have_base;
	struct vet_cache vetted;      /* clients' startup settings as PostgreSQL spelled them (vet.c) */
	char *dns_hosts;              /* host list that needs DNS, or NULL */
	char *hostaddr;               /* its latest resolution, handed to libpq */
	int hostaddr_slot;            /* where values[] carries it */
	ev_tstamp resolved_at;
	bool resolving;
	ev_tstamp unused_since;       /* no clients and no backends since; 0 while in use */
	bool prewarmed;               /* its conninfo names the user: kept for min_pool_size */
	char last_sqlstate[6];
	ev_tstamp retry_after;        /* no new connect before this (shutdown) */
	char *last_error;             /* latest connect failure, for waiting clients; NULL once one succeeds */
	int connect_failures;         /* failed connect rounds in a row: the pause before the next grows with it */
	ev_tstamp failed_at;          /* the latest failure */
	bool ever_connected;          /* it reached its server once: a failure now is an outage, not a typo */
	unsigned generation;          /* bumped by pool_reconnect(); older backends are retired */
	uint64_t leases_at_pause;     /* stats.lease_count when it was paused: unchanged while paused (verify.c) */
	struct pool_stats stats;      /* counters for SHOW STATS and /metrics */
	struct pool_stats stats_last, stats_prev; /* snapshots every STATS_PERIOD, for the avg_* columns */
	ev_tstamp stats_last_at, stats_prev_at;
	unsigned resolve_generation;  /* the generation a DNS lookup under way was started for */
	bool retired;                 /* a reload replaced or removed its entry: no new clients join */
	enum pool_closing closing;
	int promised;                 /* backends a cap made room for, for this pool only (caps.c) */
};

/* Seconds between the snapshots the avg_* statistics are computed from. */
#define STATS_PERIOD 15.0

extern struct list all_pools;

int pool_effective_size(const struct db_config *db, const struct config *c);
enum pool_mode pool_effective_mode(const struct db_config *db, const struct config *c);
MUST_CHECK struct pool *pool_find_or_create(const struct db_config *db, const char *dbname, const char *user);
int pool_server_count(const struct pool *p);
/* Backends its clients are waiting for now (0 while paused). */
int pool_demand(const struct pool *p);
void pool_server_free(struct server *s);
void pool_server_connected(struct server *s);
void pool_server_failed(struct server *s, const char *sqlstate, const char *error);
void pool_server_gone(struct pool *p);
void pool_want_servers(struct pool *p);
/* Clients are refused at once (the pool cannot connect and waiting would not help, or is not wanted). */
bool pool_refuses_clients(const struct pool *p);
void pool_maintain(ev_tstamp now);
void pool_snapshot(const struct pool *p, char *buf, int cap);
void pool_close_servers(struct pool *p, const char *reason);
void pool_close_all(void);
void pool_free_all(void);
void pool_prewarm(void);
void pool_reconnect(struct pool *p, const char *reason);
bool pool_in_db(const struct pool *p, const char *db);
MUST_CHECK int pool_pause_db(const char *db);
void pool_resume_db(const char *db);
MUST_CHECK int pool_reconfigure(struct pool *p, const struct db_config *db);
void pool_retire(struct pool *p);
void pool_close(struct pool *p, enum pool_closing how, const char *reason);
const char *const *pool_reported_params(int *count);

/*
 * The set in pause.c is the one record of what is paused: it is kept by
 * database name because a paused database's pools may not exist yet (a new
 * user logs in, a pool freed when unused comes back, a reload replaces a
 * retired pool), and they must start paused. Asked on every lease, so the
 * usual answer (nothing is paused) costs no call.
 */
static inline bool pool_paused(const struct pool *p)
{
	return pause_any && pause_covers(p->dbname);
}

#endif
