/*
 * pool.c — the backends and clients of one (database, user) pair.
 *
 * Idle backends are reused last-in first-out, so the hottest connection
 * serves the next lease and the coldest ones age out by
 * server_idle_timeout. Waiting clients are served first-in first-out.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authq.h"
#include "caps.h"
#include "client.h"
#include "env.h"
#include "lease.h"
#include "log.h"
#include "pause.h"
#include "pool.h"
#include "resolve.h"
#include "server.h"
#include "timeout.h"

struct list all_pools = { { &all_pools.head, &all_pools.head }, 0 };

/* Resolved host names are reused this long, like a short DNS TTL. */
#define DNS_MAX_AGE 15.0

/* The settings a backend may report at startup; clients get those it did report (the base) at login. */
static const char *const reported_params[] = {
	"server_version", "server_encoding", "client_encoding", "application_name",
	"DateStyle", "IntervalStyle", "TimeZone", "integer_datetimes",
	"standard_conforming_strings", "is_superuser", "session_authorization",
	"default_transaction_read_only", "in_hot_standby", "search_path",
};

/* The conninfo's pool_size= / pool_mode= where it has them, else the global default_pool_size / pool_mode. */
int pool_effective_size(const struct db_config *db, const struct config *c)
{
	return db->pool_size > 0 ? db->pool_size : c->default_pool_size;
}

enum pool_mode pool_effective_mode(const struct db_config *db, const struct config *c)
{
	return db->pool_mode >= 0 ? (enum pool_mode)db->pool_mode : c->pool_mode;
}

int pool_server_count(const struct pool *p)
{
	return p->connecting.count + p->idle.count + p->leased.count + p->cleaning.count + p->authq.count;
}

/* ---- creation ---- */

static int add_param(struct pool *p, int *n, const char *key, const char *value)
{
	p->keywords[*n] = strdup(key);
	p->values[*n] = strdup(value);
	if (!p->keywords[*n] || !p->values[*n]) {
		free((char *)p->keywords[*n]);
		free((char *)p->values[*n]);
		p->keywords[*n] = p->values[*n] = NULL;
		return -1;
	}
	(*n)++;
	return 0;
}

static const char *option_value(const PQconninfoOption *opts, const char *keyword)
{
	for (; opts->keyword; opts++)
		if (strcmp(opts->keyword, keyword) == 0)
			return opts->val;
	return NULL;
}

/* Named hosts get a hostaddr slot, filled once they are resolved off the loop. */
static int reserve_hostaddr(struct pool *p, const PQconninfoOption *opts, int *n)
{
	const char *hosts = option_value(opts, "host");

	p->hostaddr_slot = -1;
	if (!resolve_needed(hosts, option_value(opts, "hostaddr")))
		return 0;
	if (!(p->dns_hosts = strdup(hosts)) || !(p->keywords[*n] = strdup("hostaddr")))
		return -1;
	p->hostaddr_slot = (*n)++;
	return 0;
}

/* libpq's parameters from the conninfo, plus the client's user and database. */
static int build_connect_params(struct pool *p)
{
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(p->db->conninfo, &err);
	int n = 0, count = 6;
	bool has_user = false, has_dbname = false, has_ssl = false, has_gss = false;

	if (!opts) {
		PQfreemem(err);
		return -1;
	}
	for (PQconninfoOption *o = opts; o->keyword; o++)
		count++;
	p->keywords = calloc(count, sizeof(char *));
	p->values = calloc(count, sizeof(char *));
	bool complete = p->keywords && p->values;
	for (PQconninfoOption *o = opts; complete && o->keyword; o++) {
		if (!o->val)
			continue;
		has_user |= strcmp(o->keyword, "user") == 0;
		has_dbname |= strcmp(o->keyword, "dbname") == 0;
		has_ssl |= strcmp(o->keyword, "sslmode") == 0;
		has_gss |= strcmp(o->keyword, "gssencmode") == 0;
		/* A parameter left out (a host) would send the connection elsewhere. */
		complete = add_param(p, &n, o->keyword, o->val) == 0;
	}
	int reserved = complete ? reserve_hostaddr(p, opts, &n) : -1;
	PQconninfoFree(opts);
	if (reserved < 0)
		return -1;
	/* No encryption unless the conninfo asks (README, "Backend TLS"): TLS costs every byte
	 * relayed, and GSS encryption cannot be relayed at all (server.c refuses it). */
	if ((!has_user && add_param(p, &n, "user", p->user) < 0) ||
	    (!has_dbname && add_param(p, &n, "dbname", p->dbname) < 0) ||
	    (!has_ssl && add_param(p, &n, "sslmode", "disable") < 0) ||
	    (!has_gss && add_param(p, &n, "gssencmode", "disable") < 0))
		return -1;
	return 0;
}

static void free_connect_params(struct pool *p)
{
	for (int i = 0; p->keywords && p->keywords[i]; i++) {
		free((char *)p->keywords[i]);
		if (i != p->hostaddr_slot)
			free((char *)p->values[i]);
	}
	free(p->keywords);
	free(p->values);
	free(p->dns_hosts);
	free(p->hostaddr);
}

static void pool_init_lists(struct pool *p)
{
	list_init(&p->connecting);
	list_init(&p->idle);
	list_init(&p->leased);
	list_init(&p->cleaning);
	list_init(&p->authq);
	list_init(&p->login_wait);
	list_init(&p->clients);
	list_init(&p->waiting);
	list_init(&p->active);
}

static struct pool *pool_create(const struct db_config *db, const char *dbname, const char *user)
{
	struct pool *p = calloc(1, sizeof(*p));

	if (!p)
		return NULL;
	p->db = db;
	p->dbname = strdup(dbname);
	p->user = strdup(user);
	p->size = pool_size_for(db, user, cfg);
	p->mode = pool_mode_for(db, user, cfg);
	pool_init_lists(p);
	if (!p->dbname || !p->user || build_connect_params(p) < 0) {
		free_connect_params(p);
		free(p->dbname);
		free(p->user);
		free(p);
		return NULL;
	}
	list_push_tail(&all_pools, &p->node);
	log_info("pool %s/%s created: size %d, %s mode%s", dbname, user, p->size, pool_mode_name(p->mode),
		 pool_paused(p) ? ", paused" : "");
	return p;
}

struct pool *pool_find_or_create(const struct db_config *db, const char *dbname, const char *user)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &all_pools) {
		struct pool *p = list_entry(pos, struct pool, node);
		if (!p->retired && strcmp(p->dbname, dbname) == 0 && strcmp(p->user, user) == 0)
			return p;
	}
	return pool_create(db, dbname, user);
}

/* ---- backends coming and going ---- */

/* -1 when out of memory: then the pool still knows nothing, and a later backend is asked again. */
static int capture_base(struct pool *p, PGconn *conn)
{
	for (size_t i = 0; i < sizeof(reported_params) / sizeof(*reported_params); i++) {
		const char *value = PQparameterStatus(conn, reported_params[i]);
		if (value && params_put(&p->base, reported_params[i], value) < 0) {
			params_free(&p->base);
			return -1;
		}
	}
	p->have_base = true;
	return 0;
}

const char *const *pool_reported_params(int *count)
{
	*count = (int)(sizeof(reported_params) / sizeof(*reported_params));
	return reported_params;
}

static void fail_clients(struct list *l, const char *sqlstate, const char *error)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, l)
		client_fatal(list_entry(pos, struct client, node), sqlstate, error, NULL);
}

void pool_server_free(struct server *s)
{
	struct pool *p = s->pool;
	struct list_node *first = pool_paused(p) ? NULL : list_first(&p->waiting);

	/* Just connected, made clean by the exit door, or back from an auth_query lookup: no lease, no
	 * cancel on its way (invariant 4). */
	assert(s->state == SERVER_CONNECTING || s->state == SERVER_CLEANING || s->state == SERVER_AUTHQ);
	assert(!s->lease && s->cancels_pending == 0);
	if (s->generation != p->generation) {
		server_close(s, "retired by a reconnect or a changed conninfo");
		pool_want_servers(p);
		return;
	}

	/* Known good as of now, even if it goes straight to a waiter. */
	s->idle_since = ev_now(loop);
	/* Logins waiting on a lookup come first: a lookup is one short query. */
	if (!pool_paused(p) && authq_take_server(s))
		return;
	/* A cap may need it elsewhere more than this pool's own next client does (caps.c). */
	if (!pool_paused(p) && caps_shed(s))
		return;
	if (first) {
		lease_grant(list_entry(first, struct client, node), s);
		return;
	}
	/* A reserve backend is given back as soon as no client waits for it. */
	if (pool_server_count(p) > p->size) {
		server_close(s, "a reserve backend (reserve_pool_size) no client waits for");
		return;
	}
	server_set_state(s, SERVER_IDLE);
	server_watch_idle(s);
}

void pool_server_connected(struct server *s)
{
	struct pool *p = s->pool;
	struct list_node *pos, *tmp;

	assert(s->state == SERVER_CONNECTING);
	/* The clients waiting for it cannot be told the server's settings: they go (README, "Out of memory"). */
	if (!p->have_base && capture_base(p, s->conn) < 0)
		fail_clients(&p->login_wait, "53200", "out of memory keeping the server's settings");
	p->stats.servers_opened++;
	if (p->last_error)
		log_info("pool %s/%s: connected again after %d failed round(s)", p->dbname, p->user, p->connect_failures);
	free(p->last_error);
	p->last_error = NULL;
	p->connect_failures = 0;
	p->ever_connected = true;
	/* Idle first, so the first welcomed client that speaks takes this backend. */
	pool_server_free(s);
	list_for_each_safe(pos, tmp, &p->login_wait)
		client_welcome(list_entry(pos, struct client, node));
}

/* ---- connect failures: the pause before retrying, and who waits meanwhile ---- */

/* First pause after a failure; it doubles with each failed round up to server_login_retry. */
#define RETRY_FIRST 0.25
/* While clients wait for the pool, it retries at least this often: they are served soon after PostgreSQL is back. */
#define RETRY_WHILE_WAITED 0.5

static bool clients_wait(const struct pool *p)
{
	return p->waiting.count || p->login_wait.count || p->authq_waiting;
}

/* Seconds from the latest failure to the next attempt. */
static double retry_delay(const struct pool *p)
{
	if (!p->connect_failures)
		return 0;
	int doublings = p->connect_failures - 1 < 16 ? p->connect_failures - 1 : 16;
	double delay = RETRY_FIRST * (double)(1u << doublings);
	double cap = cfg->server_login_retry;

	if (clients_wait(p) && cap > RETRY_WHILE_WAITED)
		cap = RETRY_WHILE_WAITED;
	return delay < cap ? delay : cap;
}

static bool retry_due(const struct pool *p)
{
	ev_tstamp now = ev_now(loop);

	/* Never in the loop iteration that failed: a connect that fails at once would recurse through
	 * pool_server_gone() (and with server_login_retry 0 the next tick retries). */
	return now >= p->retry_after && (!p->last_error || (now > p->failed_at && now >= p->failed_at + retry_delay(p)));
}

/* A failure PostgreSQL gets over by itself: unreachable, starting, stopping, in recovery, full, no primary yet. */
static bool failure_is_outage(const char *sqlstate)
{
	return strncmp(sqlstate, "08", 2) == 0 || strcmp(sqlstate, "57P01") == 0 || strcmp(sqlstate, "57P02") == 0 ||
	       strcmp(sqlstate, "57P03") == 0 || strcmp(sqlstate, "53300") == 0;
}

/* This pool, or another of the same database entry (another user), has reached the server. */
static bool reached_before(const struct pool *p)
{
	struct list_node *pos, *tmp;

	if (p->ever_connected)
		return true;
	list_for_each_safe(pos, tmp, &all_pools) {
		const struct pool *q = list_entry(pos, struct pool, node);
		if (q->ever_connected && strcmp(q->db->conninfo, p->db->conninfo) == 0)
			return true;
	}
	return false;
}

/*
 * Refused at once only while the pool has no backend, its latest connect
 * failed and it is pausing before the next: when the failure is not an
 * outage (a wrong password, a missing database), when the pool never reached
 * its server (a misconfigured entry should not hold clients for
 * query_wait_timeout), or when the operator asked for fail-fast. Otherwise
 * clients wait for the pool to reconnect, bounded by query_wait_timeout.
 */
bool pool_refuses_clients(const struct pool *p)
{
	if (!p->last_error || pool_server_count(p) > 0 || retry_due(p))
		return false;
	return cfg->server_down_fail_fast || !failure_is_outage(p->last_sqlstate) || !reached_before(p);
}

/* Remember why connecting failed; the next attempt waits retry_delay(). */
static void note_connect_failure(struct pool *p, const char *sqlstate, const char *error)
{
	log_warning("pool %s/%s: backend connection failed: %s", p->dbname, p->user, error);
	snprintf(p->last_sqlstate, sizeof(p->last_sqlstate), "%s", sqlstate);
	/* The other connects of a round that already failed do not lengthen the pause again. */
	if (!p->last_error || ev_now(loop) >= p->failed_at + retry_delay(p))
		p->connect_failures++;
	free(p->last_error);
	p->last_error = strdup(error);
	p->failed_at = ev_now(loop);
	p->resolved_at = 0;
}

void pool_server_failed(struct server *s, const char *sqlstate, const char *error)
{
	assert(s->state == SERVER_CONNECTING);
	note_connect_failure(s->pool, sqlstate, error);
	s->pool->stats.servers_failed++;
	server_close(s, "connect failed");
}

void pool_server_gone(struct pool *p)
{
	if (pool_refuses_clients(p)) {
		fail_clients(&p->login_wait, p->last_sqlstate, p->last_error);
		fail_clients(&p->waiting, p->last_sqlstate, p->last_error);
		authq_pool_failed(p, p->last_error);
		return;
	}
	/* A lookup whose backend was lost is queued again: another idle one takes it. */
	authq_serve(p);
	pool_want_servers(p);
}

/* ---- sizing ---- */

static void resolved(void *arg, char *hostaddr, const char *error)
{
	struct pool *p = arg;

	assert(p->resolving && p->dns_hosts);
	p->resolving = false;
	if (p->resolve_generation != p->generation) {
		/* A reload changed the hosts while this lookup ran: look up the new ones. */
		pool_want_servers(p);
		return;
	}
	if (error) {
		note_connect_failure(p, "08001", error);
		pool_server_gone(p);
		return;
	}
	char *kept = strdup(hostaddr);
	if (!kept) {
		note_connect_failure(p, "53200", "out of memory keeping a resolved host address");
		pool_server_gone(p);
		return;
	}
	free(p->hostaddr);
	p->hostaddr = kept;
	/* A pool that needs DNS reserved the slot when its parameters were built. */
	assert(p->hostaddr_slot >= 0);
	p->values[p->hostaddr_slot] = p->hostaddr;
	p->resolved_at = ev_now(loop);
	pool_want_servers(p);
}

/* True when connecting must wait for DNS, which is then under way. */
static bool awaiting_dns(struct pool *p)
{
	if (!p->dns_hosts || (p->hostaddr && ev_now(loop) - p->resolved_at < DNS_MAX_AGE))
		return false;
	if (!p->resolving && resolve_start(p->dns_hosts, resolved, p) == 0) {
		p->resolving = true;
		p->resolve_generation = p->generation;
	}
	return true;
}

/* A retired pool only serves the clients it has: it keeps no spare backends. */
static int pool_min_size(const struct pool *p)
{
	return p->retired ? 0 : cfg->min_pool_size;
}

int pool_demand(const struct pool *p)
{
	return (pool_paused(p) ? 0 : p->waiting.count + p->authq_waiting) +
	       (!p->have_base && p->login_wait.count ? 1 : 0);
}

/* Open backends up to what clients wait for (or min_pool_size), within the pool's size, its reserve and the caps. */
void pool_want_servers(struct pool *p)
{
	int total = pool_server_count(p);
	int demand = pool_demand(p), want = demand;
	int size = p->size + caps_reserve(p);

	/* Room kept for a pool that will not use it would block its siblings. */
	if (demand == 0 || p->closing)
		p->promised = 0;
	if (!retry_due(p) || p->closing)
		return;
	want -= p->connecting.count;
	if (pool_min_size(p) - total > want)
		want = pool_min_size(p) - total;
	if (want <= 0 || total >= size || awaiting_dns(p))
		return;
	int room = caps_room(p);
	if (room <= 0) {
		/* Spares for min_pool_size never push a sibling's backend out. */
		if (demand > p->connecting.count)
			caps_make_room(p);
		return;
	}
	if (caps_settling(p))
		return;
	for (; want > 0 && total < size && room > 0; want--, total++, room--) {
		if (!server_connect(p))
			return;
		if (p->promised > 0)
			p->promised--;
	}
}

/* ---- maintenance ---- */

void pool_snapshot(const struct pool *p, char *buf, int cap)
{
	snprintf(buf, cap, "pool %s/%s: size %d, active %d, idle %d, waiting %d",
		 p->dbname, p->user, p->size, p->leased.count + p->cleaning.count + p->authq.count,
		 p->idle.count, p->waiting.count);
}

/* A client waited query_wait_timeout: for a backend to come free, or for PostgreSQL to come back. */
static void wait_expired(struct pool *p, struct client *c)
{
	char snapshot[256], message[900];

	if (p->last_error && pool_server_count(p) == 0) {
		snprintf(message, sizeof(message),
			 "query_wait_timeout: the server could not be reached within %g s: %s",
			 cfg->query_wait_timeout, p->last_error);
		return client_fatal(c, p->last_sqlstate, message, NULL);
	}
	pool_snapshot(p, snapshot, sizeof(snapshot));
	snprintf(message, sizeof(message), "query_wait_timeout: no server connection became free within %g s (%s)",
		 cfg->query_wait_timeout, snapshot);
	client_fatal(c, "53300", message, NULL);
}

/* Both lists are in arrival order: the walk stops at the first client still within the limit. */
static void expire_list(struct pool *p, struct list *l, ev_tstamp now)
{
	struct list_node *first;

	while ((first = list_first(l))) {
		struct client *c = list_entry(first, struct client, node);
		assert((c->state == CLIENT_WAITING || c->state == CLIENT_LOGIN_WAIT) && !c->lease);
		if (now - c->state_since < cfg->query_wait_timeout)
			return;
		wait_expired(p, c);
	}
}

static void expire_waiters(struct pool *p, ev_tstamp now)
{
	if (cfg->query_wait_timeout <= 0)
		return;
	expire_list(p, &p->waiting, now);
	/* A login waits for the pool's first backend the same way (during an outage). */
	expire_list(p, &p->login_wait, now);
}

/* The avg_* columns of SHOW STATS compare the two latest snapshots. */
static void rotate_stats(struct pool *p, ev_tstamp now)
{
	if (p->stats_last_at && now - p->stats_last_at < STATS_PERIOD)
		return;
	p->stats_prev = p->stats_last;
	p->stats_prev_at = p->stats_last_at ? p->stats_last_at : now;
	p->stats_last = p->stats;
	p->stats_last_at = now;
}

/*
 * Leak detection: each lease older than lease_warn_after is logged once.
 * pool->active is in lease order (appended when a lease starts), so the
 * walk stops at the first lease still young enough: a tick costs only the
 * leases already past the limit.
 */
static void warn_old_leases(struct pool *p, ev_tstamp now)
{
	struct list_node *pos, *tmp;

	if (cfg->lease_warn_after <= 0)
		return;
	list_for_each_safe(pos, tmp, &p->active) {
		struct client *c = list_entry(pos, struct client, node);
		struct lease *l = c->lease;
		assert(l && l->client == c);
		if (now - l->started < cfg->lease_warn_after)
			return;
		assert(c->state == CLIENT_ACTIVE);
		if (l->warned)
			continue;
		l->warned = true;
		p->stats.lease_warnings++;
		log_warning("client %u (%s/%s): lease held for %.1f s (lease_warn_after %g s), backend pid %d",
			    c->id, p->dbname, p->user, now - l->started, cfg->lease_warn_after, l->server->backend_pid);
	}
}

static bool server_expired(const struct pool *p, const struct server *s, ev_tstamp now)
{
	if (cfg->server_lifetime > 0 && now - s->connected_at > cfg->server_lifetime)
		return true;
	return cfg->server_idle_timeout > 0 && now - s->idle_since > cfg->server_idle_timeout &&
	       pool_server_count(p) > pool_min_size(p);
}

static void expire_idle_servers(struct pool *p, ev_tstamp now)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &p->idle) {
		struct server *s = list_entry(pos, struct server, node);
		if (server_expired(p, s, now))
			server_close(s, "idle longer than server_idle_timeout or older than server_lifetime");
	}
}

static int pool_client_count(const struct pool *p)
{
	return p->login_wait.count + p->clients.count + p->waiting.count + p->active.count;
}

static void pool_free(struct pool *p)
{
	/* Unused (forget_if_unused()), or at exit, after every client and backend was closed. */
	assert(!pool_client_count(p) && !pool_server_count(p) && !p->authq_waiting);
	list_remove(&all_pools, &p->node);
	free_connect_params(p);
	params_free(&p->base);
	vet_cache_clear(&p->vetted);
	free(p->last_error);
	free(p->dbname);
	free(p->user);
	free(p);
}

static void close_servers(struct list *l, const char *reason)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, l)
		server_close(list_entry(pos, struct server, node), "%s", reason);
}

/*
 * Free a pool left with no clients and no backends for server_idle_timeout:
 * with a "*" entry every database name a client tries makes a pool.
 */
static void forget_if_unused(struct pool *p, ev_tstamp now)
{
	if (p->retired && !pool_client_count(p))
		close_servers(&p->idle, "its pool was retired by a reload and has no clients left");
	if (pool_client_count(p) || pool_server_count(p) || p->authq_waiting || p->resolving || p->prewarmed) {
		p->unused_since = 0;
		return;
	}
	if (p->retired) {
		log_info("pool %s/%s removed: retired and empty", p->dbname, p->user);
		pool_free(p);
		return;
	}
	if (!p->unused_since)
		p->unused_since = now;
	if (cfg->server_idle_timeout <= 0 || now - p->unused_since < cfg->server_idle_timeout)
		return;
	log_info("pool %s/%s removed: no clients and no server connections for %g s",
		 p->dbname, p->user, cfg->server_idle_timeout);
	pool_free(p);
}

void pool_maintain(ev_tstamp now)
{
	struct list_node *pos, *tmp;

	authq_maintain(now);
	list_for_each_safe(pos, tmp, &all_pools) {
		struct pool *p = list_entry(pos, struct pool, node);
		expire_waiters(p, now);
		timeout_check(p, now);
		warn_old_leases(p, now);
		rotate_stats(p, now);
		expire_idle_servers(p, now);
		pool_want_servers(p);
		forget_if_unused(p, now);
	}
}

/* Pools for databases whose conninfo names the user exist from the start. */
void pool_prewarm(void)
{
	for (int i = 0; i < cfg->db_count; i++) {
		const struct db_config *db = &cfg->dbs[i];
		PQconninfoOption *opts = PQconninfoParse(db->conninfo, NULL);
		for (PQconninfoOption *o = opts; o && o->keyword; o++)
			if (strcmp(o->keyword, "user") == 0 && o->val && strcmp(db->name, "*") != 0) {
				struct pool *p = pool_find_or_create(db, db->name, o->val);
				if (p) {
					p->prewarmed = true;
					pool_want_servers(p);
				}
			}
		PQconninfoFree(opts);
	}
}

/* Connecting backends use the old settings too: they are retired when they come free. */
void pool_reconnect(struct pool *p, const char *reason)
{
	struct list_node *pos, *tmp;

	p->generation++;
	/* New backends may start from other values: what was learnt is asked again. */
	vet_cache_clear(&p->vetted);
	log_info("pool %s/%s: reconnecting (%s)", p->dbname, p->user, reason);
	list_for_each_safe(pos, tmp, &p->idle)
		server_close(list_entry(pos, struct server, node), "retired: %s", reason);
	pool_want_servers(p);
}

/* ---- PAUSE and RESUME ---- */

bool pool_in_db(const struct pool *p, const char *db)
{
	return !*db || strcmp(p->dbname, db) == 0;
}


/* 0, or -1 when out of memory (nothing changed). */
int pool_pause_db(const char *db)
{
	struct list_node *pos, *tmp;

	if (pause_add(db) < 0)
		return -1;
	/* What pool_verify() holds a paused pool to: no lease granted from here on. */
	list_for_each_safe(pos, tmp, &all_pools) {
		struct pool *p = list_entry(pos, struct pool, node);
		if (pool_in_db(p, db))
			p->leases_at_pause = p->stats.lease_count;
	}
	return 0;
}

/* Hand the idle backends to the clients that queued while paused. */
static void serve_waiters(struct pool *p)
{
	struct list_node *idle, *first;

	authq_serve(p);
	while ((idle = list_last(&p->idle)) && (first = list_first(&p->waiting)))
		lease_grant(list_entry(first, struct client, node), list_entry(idle, struct server, node));
	pool_want_servers(p);
}

void pool_resume_db(const char *db)
{
	struct list_node *pos, *tmp;

	pause_remove(db);
	list_for_each_safe(pos, tmp, &all_pools) {
		struct pool *p = list_entry(pos, struct pool, node);
		if (pool_in_db(p, db) && !pool_paused(p))
			serve_waiters(p);
	}
}

static void close_excess_idle(struct pool *p)
{
	struct list_node *first;

	while (pool_server_count(p) > p->size && (first = list_first(&p->idle)))
		server_close(list_entry(first, struct server, node), "pool_size lowered to %d", p->size);
}

/* Build the new conninfo's parameters aside, so a failure leaves the old ones in place. */
static int replace_connect_params(struct pool *p, const struct db_config *db)
{
	struct pool fresh = { .db = db, .dbname = p->dbname, .user = p->user };

	if (build_connect_params(&fresh) < 0) {
		free_connect_params(&fresh);
		return -1;
	}
	free_connect_params(p);
	p->keywords = fresh.keywords;
	p->values = fresh.values;
	p->dns_hosts = fresh.dns_hosts;
	p->hostaddr = NULL;
	p->hostaddr_slot = fresh.hostaddr_slot;
	p->resolved_at = 0;
	return 0;
}

/*
 * The running config was replaced: point at the new entry for this pool's
 * database (the old one is about to be freed) and apply what changed. A new
 * conninfo retires the backends opened with the old one.
 */
int pool_reconfigure(struct pool *p, const struct db_config *db)
{
	bool conninfo_changed = strcmp(p->db->conninfo, db->conninfo) != 0;

	if (conninfo_changed && replace_connect_params(p, db) < 0)
		return -1;
	p->db = db;
	p->size = pool_size_for(db, p->user, cfg);
	p->retry_after = 0;
	/* New settings may fix what failed: the next connect is not held back by the old failures. */
	p->connect_failures = 0;
	if (conninfo_changed)
		pool_reconnect(p, "conninfo changed by a reload");
	close_excess_idle(p);
	caps_trim_idle(p);
	pool_want_servers(p);
	return 0;
}

/*
 * No new client joins it (pool_find_or_create() makes a new pool instead), it
 * keeps no min_pool_size spares, and it is freed once its last client has gone.
 */
void pool_retire(struct pool *p)
{
	p->retired = true;
	p->prewarmed = false;
}

/* Its clients are closed by pool/drain.c as their leases end; the pool goes once empty. */
void pool_close(struct pool *p, enum pool_closing how, const char *reason)
{
	if (how > p->closing)
		p->closing = how;
	pool_retire(p);
	authq_pool_closing(p, reason);
	pool_reconnect(p, reason);
}

/* Every backend that no lease holds: leased ones leave through their lease's exit first. */
void pool_close_servers(struct pool *p, const char *reason)
{
	close_servers(&p->cleaning, reason);
	close_servers(&p->authq, reason);
	close_servers(&p->idle, reason);
	close_servers(&p->connecting, reason);
}

void pool_close_all(void)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &all_pools) {
		struct pool *p = list_entry(pos, struct pool, node);
		p->retry_after = ev_now(loop) + 3600;
		pool_close_servers(p, "pglease is shutting down");
	}
}

void pool_free_all(void)
{
	struct list_node *pos, *tmp;

	authq_free_all();
	list_for_each_safe(pos, tmp, &all_pools)
		pool_free(list_entry(pos, struct pool, node));
}
