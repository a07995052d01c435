/*
 * admin_show.c — the admin console's SHOW result sets.
 *
 * Each SHOW has a fixed column table (so Describe can answer before
 * Execute) and a function writing one DataRow per object, read straight
 * from the lists that are the objects' states. PgBouncer's column names
 * come first where a column means the same; pglease's own follow.
 */
#include <stdio.h>
#include <string.h>
#include <libpq-fe.h>
#include <openssl/ssl.h>

#include "admin.h"
#include "admin_show.h"
#include "caps.h"
#include "client.h"
#include "daemon.h"
#include "lease.h"
#include "listener.h"
#include "metrics.h"
#include "pause.h"
#include "pool.h"
#include "server.h"

static const struct col pools_cols[] = {
	{ "database", OID_TEXT }, { "user", OID_TEXT }, { "cl_active", OID_INT8 }, { "cl_waiting", OID_INT8 },
	{ "sv_active", OID_INT8 }, { "sv_idle", OID_INT8 }, { "sv_used", OID_INT8 }, { "sv_login", OID_INT8 },
	{ "maxwait", OID_INT8 }, { "maxwait_us", OID_INT8 }, { "pool_mode", OID_TEXT },
	/* pglease's own */
	{ "cl_leased", OID_INT8 }, { "cl_idle", OID_INT8 }, { "cl_login_wait", OID_INT8 },
	{ "sv_cleaning", OID_INT8 }, { "pool_size", OID_INT8 }, { "paused", OID_INT8 },
	{ "oldest_lease", OID_FLOAT8 }, { "cl_pinned", OID_INT8 },
	/* the limits across pools (pool/caps.c): 0 is no cap */
	{ "reserve_pool", OID_INT8 }, { "sv_reserve", OID_INT8 }, { "max_db_connections", OID_INT8 },
	{ "db_connections", OID_INT8 }, { "max_user_connections", OID_INT8 }, { "user_connections", OID_INT8 },
};

static const struct col clients_cols[] = {
	{ "type", OID_TEXT }, { "user", OID_TEXT }, { "database", OID_TEXT }, { "state", OID_TEXT },
	{ "addr", OID_TEXT }, { "port", OID_INT8 }, { "connect_time", OID_TEXT }, { "request_time", OID_TEXT },
	{ "wait", OID_INT8 }, { "wait_us", OID_INT8 }, { "application_name", OID_TEXT },
	/* pglease's own */
	{ "id", OID_INT8 }, { "lease_age", OID_FLOAT8 }, { "server_id", OID_INT8 }, { "backend_pid", OID_INT8 },
	{ "pinned", OID_INT8 }, { "tls", OID_TEXT },
};

static const struct col servers_cols[] = {
	{ "type", OID_TEXT }, { "user", OID_TEXT }, { "database", OID_TEXT }, { "state", OID_TEXT },
	{ "addr", OID_TEXT }, { "port", OID_TEXT }, { "connect_time", OID_TEXT }, { "request_time", OID_TEXT },
	{ "remote_pid", OID_INT8 },
	/* pglease's own */
	{ "id", OID_INT8 }, { "client_id", OID_INT8 }, { "lease_age", OID_FLOAT8 }, { "retired", OID_INT8 },
	{ "cleaning_for", OID_TEXT }, { "tls", OID_TEXT },
};

static const struct col stats_cols[] = {
	{ "database", OID_TEXT }, { "user", OID_TEXT },
	{ "total_xact_count", OID_INT8 }, { "total_query_count", OID_INT8 },
	{ "total_received", OID_INT8 }, { "total_sent", OID_INT8 },
	{ "total_xact_time", OID_INT8 }, { "total_query_time", OID_INT8 }, { "total_wait_time", OID_INT8 },
	{ "avg_xact_count", OID_INT8 }, { "avg_query_count", OID_INT8 }, { "avg_recv", OID_INT8 },
	{ "avg_sent", OID_INT8 }, { "avg_xact_time", OID_INT8 }, { "avg_query_time", OID_INT8 },
	{ "avg_wait_time", OID_INT8 },
	/* pglease's own */
	{ "total_lease_count", OID_INT8 }, { "total_wait_count", OID_INT8 },
	{ "servers_opened", OID_INT8 }, { "servers_closed", OID_INT8 }, { "servers_lost", OID_INT8 },
	{ "server_connect_failures", OID_INT8 }, { "servers_discarded", OID_INT8 },
	{ "exit_rollbacks", OID_INT8 }, { "lease_warnings", OID_INT8 }, { "pins", OID_INT8 }, { "unpins", OID_INT8 },
	{ "query_timeouts", OID_INT8 }, { "client_idle_timeouts", OID_INT8 },
#define EXIT_COLUMN(id, name, label) { "exits_" label, OID_INT8 },
	LEASE_EXIT_REASONS(EXIT_COLUMN)
#undef EXIT_COLUMN
	{ "exits_" STATS_EXIT_OTHER_LABEL, OID_INT8 },
};
_Static_assert(STATS_EXIT_REASONS == LEASE_EXIT_REASON_COUNT + 1, "one exits_* column per slot of pool_stats.exits");

static const struct col databases_cols[] = {
	{ "name", OID_TEXT }, { "host", OID_TEXT }, { "port", OID_TEXT }, { "database", OID_TEXT },
	{ "force_user", OID_TEXT }, { "pool_size", OID_INT8 }, { "min_pool_size", OID_INT8 },
	{ "pool_mode", OID_TEXT }, { "current_connections", OID_INT8 }, { "paused", OID_INT8 },
	{ "disabled", OID_INT8 },
	/* PgBouncer's limit columns, after pglease's existing ones */
	{ "reserve_pool", OID_INT8 }, { "max_connections", OID_INT8 }, { "max_client_connections", OID_INT8 },
	{ "current_client_connections", OID_INT8 },
};

static const struct col config_cols[] = {
	{ "key", OID_TEXT }, { "value", OID_TEXT }, { "default", OID_TEXT }, { "changeable", OID_TEXT },
};

/* PgBouncer's SHOW USERS, with the caps: a [users] entry's own settings (NULL when not set), the caps in force and their use. */
static const struct col users_cols[] = {
	{ "name", OID_TEXT }, { "pool_size", OID_INT8 }, { "pool_mode", OID_TEXT },
	{ "max_user_connections", OID_INT8 }, { "current_connections", OID_INT8 },
	{ "max_user_client_connections", OID_INT8 }, { "current_client_connections", OID_INT8 },
};

static const struct col version_cols[] = { { "version", OID_TEXT } };

static const struct table t_pools = TABLE(pools_cols), t_clients = TABLE(clients_cols),
	t_servers = TABLE(servers_cols), t_stats = TABLE(stats_cols), t_databases = TABLE(databases_cols),
	t_config = TABLE(config_cols), t_users = TABLE(users_cols), t_version = TABLE(version_cols);

const struct table *admin_show_table(enum admin_verb verb)
{
	switch (verb) {
	case ADMIN_SHOW_POOLS: return &t_pools;
	case ADMIN_SHOW_CLIENTS: return &t_clients;
	case ADMIN_SHOW_SERVERS: return &t_servers;
	case ADMIN_SHOW_STATS: return &t_stats;
	case ADMIN_SHOW_DATABASES: return &t_databases;
	case ADMIN_SHOW_CONFIG: return &t_config;
	case ADMIN_SHOW_USERS: return &t_users;
	case ADMIN_SHOW_VERSION: return &t_version;
	default: return NULL;
	}
}

/* SHOW POOLS' limit columns: the reserve and its use, each cap and its use across the pools it spans. */
static void limit_cells(struct reply *r, const struct pool *p)
{
	struct stats_sample s;

	metrics_sample(p, &s);
	reply_cell_int(r, s.reserve_pool);
	reply_cell_int(r, s.sv_reserve);
	reply_cell_int(r, s.max_db_connections);
	reply_cell_int(r, caps_db_servers(p->dbname));
	reply_cell_int(r, s.max_user_connections);
	reply_cell_int(r, caps_user_servers(p->user));
}

static int show_pools(struct reply *r)
{
	struct list_node *pos, *tmp;
	int rows = 0;

	list_for_each_safe(pos, tmp, &all_pools) {
		struct stats_sample s;
		metrics_sample(list_entry(pos, struct pool, node), &s);
		size_t m = reply_row_begin(r, &t_pools);
		reply_cell(r, s.database);
		reply_cell(r, s.user);
		reply_cell_int(r, s.cl_active + s.cl_idle);
		reply_cell_int(r, s.cl_waiting);
		reply_cell_int(r, s.sv_active);
		reply_cell_int(r, s.sv_idle - s.sv_used);
		reply_cell_int(r, s.sv_used);
		reply_cell_int(r, s.sv_login);
		reply_cell_int(r, (long long)s.maxwait);
		reply_cell_int(r, (long long)((s.maxwait - (long long)s.maxwait) * 1e6));
		reply_cell(r, s.pool_mode);
		reply_cell_int(r, s.cl_active);
		reply_cell_int(r, s.cl_idle);
		reply_cell_int(r, s.cl_login_wait);
		reply_cell_int(r, s.sv_cleaning);
		reply_cell_int(r, s.pool_size);
		reply_cell_int(r, s.paused);
		reply_cell_float(r, s.oldest_lease);
		reply_cell_int(r, s.cl_pinned);
		limit_cells(r, list_entry(pos, struct pool, node));
		reply_end(r, m);
		rows++;
	}
	return rows;
}

/* A TCP client's address and port; a Unix-socket client shows "unix" and listen_port. */
static void client_addr_cells(struct reply *r, const struct client *c)
{
	char host[64];
	int port;

	listener_peer_name(c, host, sizeof(host), &port);
	reply_cell(r, host);
	reply_cell_int(r, port);
}

/* "TLSv1.3/TLS_AES_256_GCM_SHA384", or NULL when the client is not on TLS. */
static const char *client_tls_name(const struct client *c, char *buf, size_t cap)
{
	if (!client_on_tls(c))
		return NULL;
	snprintf(buf, cap, "%s/%s", SSL_get_version(c->tls), SSL_get_cipher_name(c->tls));
	return buf;
}

static void client_row(struct reply *r, const struct client *c, ev_tstamp now)
{
	char tls[128];
	const char *app = params_get(&c->params, "application_name");
	double waited = c->state == CLIENT_WAITING ? now - c->state_since : 0;
	size_t m = reply_row_begin(r, &t_clients);

	reply_cell(r, "C");
	reply_cell(r, c->pool ? c->pool->user : admin_user(c));
	reply_cell(r, c->pool ? c->pool->dbname : c->admin ? ADMIN_DBNAME : NULL);
	reply_cell(r, client_state_name(c->state));
	client_addr_cells(r, c);
	reply_cell_time(r, c->connected_at);
	reply_cell_time(r, c->state_since);
	reply_cell_int(r, (long long)waited);
	reply_cell_int(r, (long long)((waited - (long long)waited) * 1e6));
	reply_cell(r, app ? app : "");
	reply_cell_int(r, c->id);
	if (c->lease)
		reply_cell_float(r, now - c->lease->started);
	else
		reply_cell(r, NULL);
	if (c->lease) {
		reply_cell_int(r, c->lease->server->id);
		reply_cell_int(r, c->lease->server->backend_pid);
	} else {
		reply_cell(r, NULL);
		reply_cell(r, NULL);
	}
	reply_cell_int(r, c->pinned);
	reply_cell(r, client_tls_name(c, tls, sizeof(tls)));
	reply_end(r, m);
}

static int client_rows(struct reply *r, const struct list *l)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, l)
		client_row(r, list_entry(pos, struct client, node), ev_now(loop));
	return l->count;
}

static int show_clients(struct reply *r)
{
	struct list_node *pos, *tmp;
	int rows = client_rows(r, &login_clients) + client_rows(r, &admin_clients);

	list_for_each_safe(pos, tmp, &all_pools) {
		struct pool *p = list_entry(pos, struct pool, node);
		rows += client_rows(r, &p->active) + client_rows(r, &p->waiting) + client_rows(r, &p->clients) +
			client_rows(r, &p->login_wait);
	}
	return rows;
}

static void server_row(struct reply *r, const struct server *s, ev_tstamp now)
{
	size_t m = reply_row_begin(r, &t_servers);
	const struct client *c = server_client(s);

	reply_cell(r, "S");
	reply_cell(r, s->pool->user);
	reply_cell(r, s->pool->dbname);
	reply_cell(r, server_state_name(s->state));
	reply_cell(r, s->conn && s->state != SERVER_CONNECTING ? PQhost(s->conn) : NULL);
	reply_cell(r, s->conn && s->state != SERVER_CONNECTING ? PQport(s->conn) : NULL);
	reply_cell_time(r, s->connected_at);
	reply_cell_time(r, s->idle_since);
	reply_cell_int(r, s->backend_pid);
	reply_cell_int(r, s->id);
	if (c) {
		reply_cell_int(r, c->id);
		reply_cell_float(r, now - s->lease->started);
	} else {
		reply_cell(r, NULL);
		reply_cell(r, NULL);
	}
	reply_cell_int(r, s->generation != s->pool->generation);
	reply_cell(r, s->state == SERVER_CLEANING ? lease_exit_reason_name(s->lease->why) : NULL);
	reply_cell(r, s->tls ? PQsslAttribute(s->conn, "protocol") : NULL);
	reply_end(r, m);
}

static int server_rows(struct reply *r, const struct list *l)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, l)
		server_row(r, list_entry(pos, struct server, node), ev_now(loop));
	return l->count;
}

static int show_servers(struct reply *r)
{
	struct list_node *pos, *tmp;
	int rows = 0;

	list_for_each_safe(pos, tmp, &all_pools) {
		struct pool *p = list_entry(pos, struct pool, node);
		rows += server_rows(r, &p->leased) + server_rows(r, &p->cleaning) + server_rows(r, &p->authq) +
			server_rows(r, &p->idle) + server_rows(r, &p->connecting);
	}
	return rows;
}

static long long per(uint64_t amount, double per_what)
{
	return per_what > 0 ? (long long)(amount / per_what) : 0;
}

/* avg_*: over the latest STATS_PERIOD, like PgBouncer's stats_period. */
static void average_cells(struct reply *r, const struct pool *p)
{
	const struct pool_stats *l = &p->stats_last, *o = &p->stats_prev;
	double secs = p->stats_last_at - p->stats_prev_at;
	uint64_t xacts = l->stream.xacts - o->stream.xacts, queries = l->stream.queries - o->stream.queries;

	reply_cell_int(r, per(xacts, secs));
	reply_cell_int(r, per(queries, secs));
	reply_cell_int(r, per(l->bytes_received - o->bytes_received, secs));
	reply_cell_int(r, per(l->bytes_sent - o->bytes_sent, secs));
	reply_cell_int(r, per(l->lease_time_us - o->lease_time_us, (double)xacts));
	reply_cell_int(r, per(l->query_time_us - o->query_time_us, (double)queries));
	reply_cell_int(r, per(l->wait_time_us - o->wait_time_us, (double)(l->lease_count - o->lease_count)));
}

static void stats_row(struct reply *r, const struct pool *p)
{
	const struct pool_stats *st = &p->stats;
	size_t m = reply_row_begin(r, &t_stats);

	reply_cell(r, p->dbname);
	reply_cell(r, p->user);
	reply_cell_int(r, (long long)st->stream.xacts);
	reply_cell_int(r, (long long)st->stream.queries);
	reply_cell_int(r, (long long)st->bytes_received);
	reply_cell_int(r, (long long)st->bytes_sent);
	reply_cell_int(r, (long long)st->lease_time_us);
	reply_cell_int(r, (long long)st->query_time_us);
	reply_cell_int(r, (long long)st->wait_time_us);
	average_cells(r, p);
	reply_cell_int(r, (long long)st->lease_count);
	reply_cell_int(r, (long long)st->wait_count);
	reply_cell_int(r, (long long)st->servers_opened);
	reply_cell_int(r, (long long)st->servers_closed);
	reply_cell_int(r, (long long)st->servers_lost);
	reply_cell_int(r, (long long)st->servers_failed);
	reply_cell_int(r, (long long)st->servers_discarded);
	reply_cell_int(r, (long long)st->exit_rollbacks);
	reply_cell_int(r, (long long)st->lease_warnings);
	reply_cell_int(r, (long long)st->pins);
	reply_cell_int(r, (long long)st->unpins);
	reply_cell_int(r, (long long)st->query_timeouts);
	reply_cell_int(r, (long long)st->client_idle_timeouts);
	for (int i = 0; i < STATS_EXIT_REASONS; i++)
		reply_cell_int(r, (long long)st->exits[i]);
	reply_end(r, m);
}

static int show_stats(struct reply *r)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &all_pools)
		stats_row(r, list_entry(pos, struct pool, node));
	return all_pools.count;
}

static const char *conn_option(const PQconninfoOption *o, const char *key)
{
	for (; o && o->keyword; o++)
		if (strcmp(o->keyword, key) == 0)
			return o->val;
	return NULL;
}

static void db_counts(const char *name, int *servers, bool *paused)
{
	struct list_node *pos, *tmp;

	*servers = 0;
	*paused = pause_covers(name);
	list_for_each_safe(pos, tmp, &all_pools) {
		struct pool *p = list_entry(pos, struct pool, node);
		if (strcmp(p->dbname, name) == 0)
			*servers += pool_server_count(p);
	}
}

static int show_databases(struct reply *r)
{
	for (int i = 0; i < cfg->db_count; i++) {
		const struct db_config *db = &cfg->dbs[i];
		PQconninfoOption *o = PQconninfoParse(db->conninfo, NULL);
		const char *dbname = conn_option(o, "dbname");
		int servers;
		bool paused;
		db_counts(db->name, &servers, &paused);
		size_t m = reply_row_begin(r, &t_databases);
		reply_cell(r, db->name);
		reply_cell(r, conn_option(o, "host"));
		reply_cell(r, conn_option(o, "port"));
		reply_cell(r, dbname ? dbname : strcmp(db->name, "*") ? db->name : NULL);
		reply_cell(r, conn_option(o, "user"));
		reply_cell_int(r, pool_effective_size(db, cfg));
		reply_cell_int(r, cfg->min_pool_size);
		reply_cell(r, pool_mode_name(pool_effective_mode(db, cfg)));
		reply_cell_int(r, servers);
		reply_cell_int(r, paused);
		reply_cell_int(r, 0);
		reply_cell_int(r, db->reserve_pool_size >= 0 ? db->reserve_pool_size : cfg->reserve_pool_size);
		reply_cell_int(r, db->max_db_connections >= 0 ? db->max_db_connections : cfg->max_db_connections);
		reply_cell_int(r, db->max_db_client_connections >= 0 ? db->max_db_client_connections
								    : cfg->max_db_client_connections);
		reply_cell_int(r, caps_db_clients(db->name));
		reply_end(r, m);
		PQconninfoFree(o);
	}
	return cfg->db_count;
}

static int show_config(struct reply *r)
{
	char value[1024];
	const char *def;

	for (int i = 0; i < config_key_count(); i++) {
		const char *name = config_key_show(cfg, i, &def, value, sizeof(value));
		size_t m = reply_row_begin(r, &t_config);
		reply_cell(r, name);
		reply_cell(r, value);
		reply_cell(r, def);
		reply_cell(r, "no");
		reply_end(r, m);
	}
	return config_key_count();
}

static void user_row(struct reply *r, const char *name)
{
	const struct user_config *u = config_find_user(cfg, name);
	int cap = u && u->max_user_connections >= 0 ? u->max_user_connections : cfg->max_user_connections;
	int client_cap = u && u->max_user_client_connections >= 0 ? u->max_user_client_connections
								  : cfg->max_user_client_connections;
	size_t m = reply_row_begin(r, &t_users);

	reply_cell(r, name);
	if (u && u->pool_size > 0)
		reply_cell_int(r, u->pool_size);
	else
		reply_cell(r, NULL);
	reply_cell(r, u && u->pool_mode >= 0 ? pool_mode_name((enum pool_mode)u->pool_mode) : NULL);
	reply_cell_int(r, cap);
	reply_cell_int(r, caps_user_servers(name));
	reply_cell_int(r, client_cap);
	reply_cell_int(r, caps_user_clients(name));
	reply_end(r, m);
}

/* Is p the first pool of its user, and the user has no [users] entry (listed with the entries)? */
static bool first_unlisted(const struct pool *p)
{
	struct list_node *pos, *tmp;

	if (config_find_user(cfg, p->user))
		return false;
	list_for_each_safe(pos, tmp, &all_pools) {
		const struct pool *q = list_entry(pos, struct pool, node);
		if (q == p)
			return true;
		if (strcmp(q->user, p->user) == 0)
			return false;
	}
	return false;
}

/* Every [users] entry, then every other user with a pool. */
static int show_users(struct reply *r)
{
	struct list_node *pos, *tmp;
	int rows = cfg->user_count;

	for (int i = 0; i < cfg->user_count; i++)
		user_row(r, cfg->users[i].name);
	list_for_each_safe(pos, tmp, &all_pools) {
		const struct pool *p = list_entry(pos, struct pool, node);
		if (first_unlisted(p)) {
			user_row(r, p->user);
			rows++;
		}
	}
	return rows;
}

static int show_version(struct reply *r)
{
	size_t m = reply_row_begin(r, &t_version);
	reply_cell(r, "pglease " PGLEASE_VERSION);
	reply_end(r, m);
	return 1;
}

int admin_show(struct reply *r, enum admin_verb verb)
{
	switch (verb) {
	case ADMIN_SHOW_POOLS: return show_pools(r);
	case ADMIN_SHOW_CLIENTS: return show_clients(r);
	case ADMIN_SHOW_SERVERS: return show_servers(r);
	case ADMIN_SHOW_STATS: return show_stats(r);
	case ADMIN_SHOW_DATABASES: return show_databases(r);
	case ADMIN_SHOW_CONFIG: return show_config(r);
	case ADMIN_SHOW_USERS: return show_users(r);
	case ADMIN_SHOW_VERSION: return show_version(r);
	default: return 0;
	}
}
