/*
 * admin.c — the admin console: SHOW, PAUSE/RESUME, RECONNECT, KILL,
 * RELOAD, SHUTDOWN over the simple and the extended query protocol.
 *
 * A console client is a struct client on admin_clients with a struct
 * admin_conn. Replies are built whole into a growing buffer (a SHOW over
 * thousands of clients may not fit a client iobuf) and fed to the client
 * as its buffer drains. Input is handled one complete message at a time;
 * after an error in the extended protocol everything up to Sync is skipped,
 * as PostgreSQL does. PAUSE holds the connection (no further input is
 * handled) until the paused pools have no lease left.
 *
 * Reading order: output buffer, access and login, the commands, the
 * protocol handler, PAUSE bookkeeping.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <libpq-fe.h>

#include "admin.h"
#include "admin_parse.h"
#include "client.h"
#include "daemon.h"
#include "lease.h"
#include "log.h"
#include "metrics.h"
#include "pause.h"
#include "pool.h"
#include "proto.h"
#include "server.h"
#include "startup.h"

/*
 * The process-level actions live with main() (daemon.h). Unit tests link the
 * library without main.o and never reach RELOAD or SHUTDOWN: weak references
 * keep those binaries linkable without stubs.
 */
#pragma weak daemon_reload
#pragma weak daemon_shutdown

struct list admin_clients = { { &admin_clients.head, &admin_clients.head }, 0 };

/* Longest message the console accepts: commands are short. */
#define ADMIN_MSG_MAX 16384
/* Stop handling input while this much reply is still unsent. */
#define ADMIN_BACKLOG (256 * 1024)
#define ADMIN_MAX_NAMED 64

enum oid { OID_TEXT = 25, OID_INT8 = 20, OID_FLOAT8 = 701 };

struct named {                  /* a prepared statement or a portal */
	char *name, *text;
};

struct admin_conn {
	bool full;                  /* admin rights; else SHOW only */
	char *user;
	bool skip_to_sync;          /* extended protocol: an error happened */
	bool pausing;               /* a PAUSE waits for leases to end */
	bool pause_simple;          /* ... sent as a Query: ReadyForQuery follows */
	char pause_db[ADMIN_NAME_MAX];
	struct named stmts[ADMIN_MAX_NAMED], portals[ADMIN_MAX_NAMED];
	uint8_t *out;               /* reply bytes not yet in the client's buffer */
	size_t out_len, out_sent, out_cap;
	bool oom;
};

static void handle_input(struct client *c);

/* ---- output: a growing buffer of protocol messages ---- */

static void out_bytes(struct admin_conn *a, const void *p, size_t n)
{
	if (a->oom)
		return;
	if (a->out_len + n > a->out_cap) {
		size_t cap = (a->out_len + n) * 2 + 1024;
		uint8_t *b = realloc(a->out, cap);
		if (!b) {
			a->oom = true;
			return;
		}
		a->out = b;
		a->out_cap = cap;
	}
	memcpy(a->out + a->out_len, p, n);
	a->out_len += n;
}

static void out_int32(struct admin_conn *a, uint32_t v)
{
	uint8_t b[4] = { v >> 24, v >> 16, v >> 8, v };
	out_bytes(a, b, 4);
}

static void out_int16(struct admin_conn *a, uint16_t v)
{
	uint8_t b[2] = { v >> 8, v };
	out_bytes(a, b, 2);
}

static void out_cstr(struct admin_conn *a, const char *s)
{
	out_bytes(a, s, strlen(s) + 1);
}

static size_t msg_begin(struct admin_conn *a, char type)
{
	out_bytes(a, &type, 1);
	size_t mark = a->out_len;
	out_int32(a, 0);
	return mark;
}

static void msg_end(struct admin_conn *a, size_t mark)
{
	if (a->oom)
		return;
	uint32_t len = (uint32_t)(a->out_len - mark);
	uint8_t *p = a->out + mark;
	p[0] = len >> 24, p[1] = len >> 16, p[2] = len >> 8, p[3] = len;
}

static void msg_empty(struct admin_conn *a, char type)
{
	msg_end(a, msg_begin(a, type));
}

/* A message built by proto.c into a bounded buffer. */
static void out_wbuf(struct admin_conn *a, const struct wbuf *w)
{
	if (!w->overflow)
		out_bytes(a, w->data, w->len);
}

static void send_error(struct admin_conn *a, const char *sqlstate, const char *message, const char *hint)
{
	uint8_t buf[2048];
	struct wbuf w;

	wbuf_init(&w, buf, sizeof(buf));
	proto_error(&w, "ERROR", sqlstate, message, NULL, hint);
	out_wbuf(a, &w);
}

static void send_ready(struct admin_conn *a)
{
	size_t m = msg_begin(a, 'Z');
	out_bytes(a, "I", 1);
	msg_end(a, m);
}

static void send_complete(struct admin_conn *a, const char *tag)
{
	size_t m = msg_begin(a, 'C');
	out_cstr(a, tag);
	msg_end(a, m);
}

/* Hand what fits to the client; the rest goes when it can take more. */
static void flush(struct client *c)
{
	struct admin_conn *a = c->admin;

	if (a->oom)
		return client_fatal(c, "53200", "out of memory building an admin console reply", NULL);
	while (a->out_sent < a->out_len) {
		long n = client_write(c, a->out + a->out_sent, a->out_len - a->out_sent);
		if (n <= 0)
			return;   /* < 0: closed; 0: its buffer is full, on_writable calls back */
		a->out_sent += (size_t)n;
	}
	a->out_len = a->out_sent = 0;
	if (a->out_cap > ADMIN_BACKLOG) {
		free(a->out);
		a->out = NULL;
		a->out_cap = 0;
	}
}

/* ---- result sets ---- */

struct col {
	const char *name;
	enum oid type;
};

struct table {
	const struct col *cols;
	int n;
};

static void send_row_description(struct admin_conn *a, const struct table *t)
{
	size_t m = msg_begin(a, 'T');

	out_int16(a, (uint16_t)t->n);
	for (int i = 0; i < t->n; i++) {
		out_cstr(a, t->cols[i].name);
		out_int32(a, 0);              /* table oid */
		out_int16(a, 0);              /* column number */
		out_int32(a, t->cols[i].type);
		out_int16(a, t->cols[i].type == OID_TEXT ? (uint16_t)-1 : 8);
		out_int32(a, (uint32_t)-1);   /* type modifier */
		out_int16(a, 0);              /* text format */
	}
	msg_end(a, m);
}

/* A DataRow is built cell by cell between row_begin() and row_end(). */
static size_t row_begin(struct admin_conn *a, const struct table *t)
{
	size_t m = msg_begin(a, 'D');
	out_int16(a, (uint16_t)t->n);
	return m;
}

static void cell(struct admin_conn *a, const char *s)
{
	if (!s) {
		out_int32(a, (uint32_t)-1);
		return;
	}
	out_int32(a, (uint32_t)strlen(s));
	out_bytes(a, s, strlen(s));
}

static void cell_int(struct admin_conn *a, long long v)
{
	char buf[32];
	snprintf(buf, sizeof(buf), "%lld", v);
	cell(a, buf);
}

static void cell_float(struct admin_conn *a, double v)
{
	char buf[48];
	snprintf(buf, sizeof(buf), "%.6f", v);
	cell(a, buf);
}

static void cell_time(struct admin_conn *a, ev_tstamp t)
{
	char buf[48];
	time_t secs = (time_t)t;
	struct tm tm;

	if (!t || !gmtime_r(&secs, &tm))
		return cell(a, NULL);
	strftime(buf, sizeof(buf), "%Y-%m-%d %H:%M:%S UTC", &tm);
	cell(a, buf);
}

/* ---- who may use the console ---- */

bool admin_is_console(const char *dbname)
{
	return strcmp(dbname, ADMIN_DBNAME) == 0;
}

static bool same_uid(const struct client *c)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	return getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.uid == getuid();
}

/* 1: full admin, 0: SHOW only, -1: refused. */
static int access_level(const struct client *c, const char *user)
{
	if (config_user_listed(cfg->admin_users, user) || same_uid(c))
		return 1;
	return config_user_listed(cfg->stats_users, user) ? 0 : -1;
}

static const char *server_version(void)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &all_pools) {
		struct pool *p = list_entry(pos, struct pool, node);
		const char *v = p->have_base ? params_get(&p->base, "server_version") : NULL;
		if (v)
			return v;
	}
	return "15.0";
}

static void welcome(struct client *c)
{
	uint8_t buf[4096];
	struct wbuf w;
	const char *app = params_get(&c->params, "application_name");

	wbuf_init(&w, buf, sizeof(buf));
	proto_auth_ok(&w);
	proto_param_status(&w, "server_version", server_version());
	proto_param_status(&w, "server_encoding", "UTF8");
	proto_param_status(&w, "client_encoding", "UTF8");
	proto_param_status(&w, "DateStyle", "ISO, MDY");
	proto_param_status(&w, "IntervalStyle", "postgres");
	proto_param_status(&w, "TimeZone", "UTC");
	proto_param_status(&w, "integer_datetimes", "on");
	proto_param_status(&w, "standard_conforming_strings", "on");
	proto_param_status(&w, "is_superuser", "off");
	proto_param_status(&w, "session_authorization", c->admin->user);
	proto_param_status(&w, "application_name", app ? app : "");
	proto_backend_key(&w, c->id, c->cancel_key);
	proto_ready(&w, 'I');
	out_wbuf(c->admin, &w);
	flush(c);
}

void admin_login(struct client *c, struct startup *st)
{
	char msg[200];
	int level = access_level(c, st->user);

	if (level < 0) {
		snprintf(msg, sizeof(msg), "not allowed to use the pglease admin console: user \"%s\" is in neither "
			 "admin_users nor stats_users", st->user);
		return client_fatal(c, "28000", msg, NULL);
	}
	c->admin = calloc(1, sizeof(*c->admin));
	if (!c->admin || !(c->admin->user = strdup(st->user))) {
		admin_free(c);
		return client_fatal(c, "53200", "out of memory", NULL);
	}
	c->admin->full = level > 0;
	c->params = st->params;
	st->params = PARAMS_EMPTY;
	client_set_state(c, CLIENT_ADMIN);
	log_info("client %u: admin console login as \"%s\" (%s)", c->id, st->user, level ? "admin" : "stats only");
	welcome(c);
	if (c->state == CLIENT_ADMIN)
		handle_input(c);
}

void admin_free(struct client *c)
{
	struct admin_conn *a = c->admin;

	if (!a)
		return;
	for (int i = 0; i < ADMIN_MAX_NAMED; i++) {
		free(a->stmts[i].name);
		free(a->stmts[i].text);
		free(a->portals[i].name);
		free(a->portals[i].text);
	}
	free(a->user);
	free(a->out);
	free(a);
	c->admin = NULL;
}

/* ---- pools a command applies to ---- */

static bool matches(const struct pool *p, const char *db)
{
	return !*db || strcmp(p->dbname, db) == 0;
}

/* A named database must exist (in [databases], or as a pool made through "*"). */
static bool db_known(const char *db)
{
	struct list_node *pos, *tmp;

	if (!*db)
		return true;
	for (int i = 0; i < cfg->db_count; i++)
		if (strcmp(cfg->dbs[i].name, db) == 0)
			return true;
	list_for_each_safe(pos, tmp, &all_pools)
		if (strcmp(list_entry(pos, struct pool, node)->dbname, db) == 0)
			return true;
	return false;
}

/* ---- SHOW ---- */

static const struct col pools_cols[] = {
	{ "database", OID_TEXT }, { "user", OID_TEXT }, { "cl_active", OID_INT8 }, { "cl_waiting", OID_INT8 },
	{ "sv_active", OID_INT8 }, { "sv_idle", OID_INT8 }, { "sv_used", OID_INT8 }, { "sv_login", OID_INT8 },
	{ "maxwait", OID_INT8 }, { "maxwait_us", OID_INT8 }, { "pool_mode", OID_TEXT },
	/* pglease's own */
	{ "cl_leased", OID_INT8 }, { "cl_idle", OID_INT8 }, { "cl_login_wait", OID_INT8 },
	{ "sv_cleaning", OID_INT8 }, { "pool_size", OID_INT8 }, { "paused", OID_INT8 },
	{ "oldest_lease", OID_FLOAT8 },
};

static const struct col clients_cols[] = {
	{ "type", OID_TEXT }, { "user", OID_TEXT }, { "database", OID_TEXT }, { "state", OID_TEXT },
	{ "addr", OID_TEXT }, { "port", OID_INT8 }, { "connect_time", OID_TEXT }, { "request_time", OID_TEXT },
	{ "wait", OID_INT8 }, { "wait_us", OID_INT8 }, { "application_name", OID_TEXT },
	/* pglease's own */
	{ "id", OID_INT8 }, { "lease_age", OID_FLOAT8 }, { "server_id", OID_INT8 }, { "backend_pid", OID_INT8 },
};

static const struct col servers_cols[] = {
	{ "type", OID_TEXT }, { "user", OID_TEXT }, { "database", OID_TEXT }, { "state", OID_TEXT },
	{ "addr", OID_TEXT }, { "port", OID_TEXT }, { "connect_time", OID_TEXT }, { "request_time", OID_TEXT },
	{ "remote_pid", OID_INT8 },
	/* pglease's own */
	{ "id", OID_INT8 }, { "client_id", OID_INT8 }, { "lease_age", OID_FLOAT8 }, { "retired", OID_INT8 },
	{ "cleaning_for", OID_TEXT },
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
	{ "exit_rollbacks", OID_INT8 }, { "lease_warnings", OID_INT8 },
	{ "exits_transaction_done", OID_INT8 }, { "exits_client_gone", OID_INT8 },
	{ "exits_client_protocol", OID_INT8 }, { "exits_server_lost", OID_INT8 },
	{ "exits_setup_failed", OID_INT8 }, { "exits_timeout", OID_INT8 }, { "exits_shutdown", OID_INT8 },
	{ "exits_other", OID_INT8 },
};
_Static_assert(STATS_EXIT_REASONS == 8, "one exits_* column per reason");

static const struct col databases_cols[] = {
	{ "name", OID_TEXT }, { "host", OID_TEXT }, { "port", OID_TEXT }, { "database", OID_TEXT },
	{ "force_user", OID_TEXT }, { "pool_size", OID_INT8 }, { "min_pool_size", OID_INT8 },
	{ "pool_mode", OID_TEXT }, { "current_connections", OID_INT8 }, { "paused", OID_INT8 },
	{ "disabled", OID_INT8 },
};

static const struct col config_cols[] = {
	{ "key", OID_TEXT }, { "value", OID_TEXT }, { "default", OID_TEXT }, { "changeable", OID_TEXT },
};

static const struct col version_cols[] = { { "version", OID_TEXT } };

#define TABLE(cols) { cols, (int)(sizeof(cols) / sizeof(*cols)) }
static const struct table t_pools = TABLE(pools_cols), t_clients = TABLE(clients_cols),
	t_servers = TABLE(servers_cols), t_stats = TABLE(stats_cols), t_databases = TABLE(databases_cols),
	t_config = TABLE(config_cols), t_version = TABLE(version_cols);

static const struct table *result_table(enum admin_verb verb)
{
	switch (verb) {
	case ADMIN_SHOW_POOLS: return &t_pools;
	case ADMIN_SHOW_CLIENTS: return &t_clients;
	case ADMIN_SHOW_SERVERS: return &t_servers;
	case ADMIN_SHOW_STATS: return &t_stats;
	case ADMIN_SHOW_DATABASES: return &t_databases;
	case ADMIN_SHOW_CONFIG: return &t_config;
	case ADMIN_SHOW_VERSION: return &t_version;
	default: return NULL;
	}
}

static int show_pools(struct admin_conn *a)
{
	struct list_node *pos, *tmp;
	int rows = 0;

	list_for_each_safe(pos, tmp, &all_pools) {
		struct stats_sample s;
		metrics_sample(list_entry(pos, struct pool, node), &s);
		size_t m = row_begin(a, &t_pools);
		cell(a, s.database);
		cell(a, s.user);
		cell_int(a, s.cl_active + s.cl_idle);
		cell_int(a, s.cl_waiting);
		cell_int(a, s.sv_active);
		cell_int(a, s.sv_idle - s.sv_used);
		cell_int(a, s.sv_used);
		cell_int(a, s.sv_login);
		cell_int(a, (long long)s.maxwait);
		cell_int(a, (long long)((s.maxwait - (long long)s.maxwait) * 1e6));
		cell(a, s.pool_mode);
		cell_int(a, s.cl_active);
		cell_int(a, s.cl_idle);
		cell_int(a, s.cl_login_wait);
		cell_int(a, s.sv_cleaning);
		cell_int(a, s.pool_size);
		cell_int(a, s.paused);
		cell_float(a, s.oldest_lease);
		msg_end(a, m);
		rows++;
	}
	return rows;
}

/* A switch, not a table: states added elsewhere must not shift the names. */
static const char *client_state_name(enum client_state st)
{
	switch (st) {
	case CLIENT_LOGIN: return "login";
	case CLIENT_LOGIN_WAIT: return "login_wait";
	case CLIENT_IDLE: return "idle";
	case CLIENT_WAITING: return "waiting";
	case CLIENT_ACTIVE: return "active";
	case CLIENT_ADMIN: return "admin";
	case CLIENT_CLOSED: return "closed";
	}
	return "unknown";
}

static void client_row(struct admin_conn *a, const struct client *c, ev_tstamp now)
{
	const char *app = params_get(&c->params, "application_name");
	double waited = c->state == CLIENT_WAITING ? now - c->state_since : 0;
	size_t m = row_begin(a, &t_clients);

	cell(a, "C");
	cell(a, c->pool ? c->pool->user : c->admin ? c->admin->user : NULL);
	cell(a, c->pool ? c->pool->dbname : c->admin ? ADMIN_DBNAME : NULL);
	cell(a, client_state_name(c->state));
	cell(a, "unix");
	cell_int(a, cfg->listen_port);
	cell_time(a, c->connected_at);
	cell_time(a, c->state_since);
	cell_int(a, (long long)waited);
	cell_int(a, (long long)((waited - (long long)waited) * 1e6));
	cell(a, app ? app : "");
	cell_int(a, c->id);
	if (c->state == CLIENT_ACTIVE)
		cell_float(a, now - c->state_since);
	else
		cell(a, NULL);
	if (c->server) {
		cell_int(a, c->server->id);
		cell_int(a, c->server->backend_pid);
	} else {
		cell(a, NULL);
		cell(a, NULL);
	}
	msg_end(a, m);
}

static int client_rows(struct admin_conn *a, const struct list *l)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, l)
		client_row(a, list_entry(pos, struct client, node), ev_now(loop));
	return l->count;
}

static int show_clients(struct admin_conn *a)
{
	struct list_node *pos, *tmp;
	int rows = client_rows(a, &login_clients) + client_rows(a, &admin_clients);

	list_for_each_safe(pos, tmp, &all_pools) {
		struct pool *p = list_entry(pos, struct pool, node);
		rows += client_rows(a, &p->active) + client_rows(a, &p->waiting) + client_rows(a, &p->clients) +
			client_rows(a, &p->login_wait);
	}
	return rows;
}

static const char *server_state_name(enum server_state st)
{
	switch (st) {
	case SERVER_CONNECTING: return "connecting";
	case SERVER_IDLE: return "idle";
	case SERVER_LEASED: return "active";
	case SERVER_CLEANING: return "cleaning";
	case SERVER_CLOSED: return "closed";
	}
	return "unknown";
}

static void server_row(struct admin_conn *a, const struct server *s, ev_tstamp now)
{
	size_t m = row_begin(a, &t_servers);
	const struct client *c = s->client;

	cell(a, "S");
	cell(a, s->pool->user);
	cell(a, s->pool->dbname);
	cell(a, server_state_name(s->state));
	cell(a, s->conn && s->state != SERVER_CONNECTING ? PQhost(s->conn) : NULL);
	cell(a, s->conn && s->state != SERVER_CONNECTING ? PQport(s->conn) : NULL);
	cell_time(a, s->connected_at);
	cell_time(a, s->idle_since);
	cell_int(a, s->backend_pid);
	cell_int(a, s->id);
	if (c) {
		cell_int(a, c->id);
		cell_float(a, now - c->state_since);
	} else {
		cell(a, NULL);
		cell(a, NULL);
	}
	cell_int(a, s->generation != s->pool->generation);
	cell(a, s->state == SERVER_CLEANING ? lease_exit_reason_name(s->exit.why) : NULL);
	msg_end(a, m);
}

static int server_rows(struct admin_conn *a, const struct list *l)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, l)
		server_row(a, list_entry(pos, struct server, node), ev_now(loop));
	return l->count;
}

static int show_servers(struct admin_conn *a)
{
	struct list_node *pos, *tmp;
	int rows = 0;

	list_for_each_safe(pos, tmp, &all_pools) {
		struct pool *p = list_entry(pos, struct pool, node);
		rows += server_rows(a, &p->leased) + server_rows(a, &p->cleaning) + server_rows(a, &p->idle) +
			server_rows(a, &p->connecting);
	}
	return rows;
}

static long long per(uint64_t amount, double per_what)
{
	return per_what > 0 ? (long long)(amount / per_what) : 0;
}

/* avg_*: over the latest STATS_PERIOD, like PgBouncer's stats_period. */
static void average_cells(struct admin_conn *a, const struct pool *p)
{
	const struct pool_stats *l = &p->stats_last, *o = &p->stats_prev;
	double secs = p->stats_last_at - p->stats_prev_at;
	uint64_t xacts = l->stream.xacts - o->stream.xacts, queries = l->stream.queries - o->stream.queries;

	cell_int(a, per(xacts, secs));
	cell_int(a, per(queries, secs));
	cell_int(a, per(l->bytes_received - o->bytes_received, secs));
	cell_int(a, per(l->bytes_sent - o->bytes_sent, secs));
	cell_int(a, per(l->lease_time_us - o->lease_time_us, (double)xacts));
	cell_int(a, per(l->query_time_us - o->query_time_us, (double)queries));
	cell_int(a, per(l->wait_time_us - o->wait_time_us, (double)(l->lease_count - o->lease_count)));
}

static void stats_row(struct admin_conn *a, const struct pool *p)
{
	const struct pool_stats *st = &p->stats;
	size_t m = row_begin(a, &t_stats);

	cell(a, p->dbname);
	cell(a, p->user);
	cell_int(a, (long long)st->stream.xacts);
	cell_int(a, (long long)st->stream.queries);
	cell_int(a, (long long)st->bytes_received);
	cell_int(a, (long long)st->bytes_sent);
	cell_int(a, (long long)st->lease_time_us);
	cell_int(a, (long long)st->query_time_us);
	cell_int(a, (long long)st->wait_time_us);
	average_cells(a, p);
	cell_int(a, (long long)st->lease_count);
	cell_int(a, (long long)st->wait_count);
	cell_int(a, (long long)st->servers_opened);
	cell_int(a, (long long)st->servers_closed);
	cell_int(a, (long long)st->servers_lost);
	cell_int(a, (long long)st->servers_failed);
	cell_int(a, (long long)st->servers_discarded);
	cell_int(a, (long long)st->exit_rollbacks);
	cell_int(a, (long long)st->lease_warnings);
	for (int r = 0; r < STATS_EXIT_REASONS; r++)
		cell_int(a, (long long)st->exits[r]);
	msg_end(a, m);
}

static int show_stats(struct admin_conn *a)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &all_pools)
		stats_row(a, list_entry(pos, struct pool, node));
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
	*paused = admin_db_paused(name);
	list_for_each_safe(pos, tmp, &all_pools) {
		struct pool *p = list_entry(pos, struct pool, node);
		if (strcmp(p->dbname, name) == 0)
			*servers += pool_server_count(p);
	}
}

static int show_databases(struct admin_conn *a)
{
	for (int i = 0; i < cfg->db_count; i++) {
		const struct db_config *db = &cfg->dbs[i];
		PQconninfoOption *o = PQconninfoParse(db->conninfo, NULL);
		const char *dbname = conn_option(o, "dbname");
		int servers;
		bool paused;
		db_counts(db->name, &servers, &paused);
		size_t m = row_begin(a, &t_databases);
		cell(a, db->name);
		cell(a, conn_option(o, "host"));
		cell(a, conn_option(o, "port"));
		cell(a, dbname ? dbname : strcmp(db->name, "*") ? db->name : NULL);
		cell(a, conn_option(o, "user"));
		cell_int(a, db->pool_size > 0 ? db->pool_size : cfg->default_pool_size);
		cell_int(a, cfg->min_pool_size);
		cell(a, pool_mode_name(db->pool_mode >= 0 ? (enum pool_mode)db->pool_mode : cfg->pool_mode));
		cell_int(a, servers);
		cell_int(a, paused);
		cell_int(a, 0);
		msg_end(a, m);
		PQconninfoFree(o);
	}
	return cfg->db_count;
}

static int show_config(struct admin_conn *a)
{
	char value[1024];
	const char *def;

	for (int i = 0; i < config_key_count(); i++) {
		const char *name = config_key_show(cfg, i, &def, value, sizeof(value));
		size_t m = row_begin(a, &t_config);
		cell(a, name);
		cell(a, value);
		cell(a, def);
		cell(a, "no");
		msg_end(a, m);
	}
	return config_key_count();
}

static int show_version(struct admin_conn *a)
{
	size_t m = row_begin(a, &t_version);
	cell(a, "pglease " PGLEASE_VERSION);
	msg_end(a, m);
	return 1;
}

static int run_show(struct admin_conn *a, enum admin_verb verb)
{
	switch (verb) {
	case ADMIN_SHOW_POOLS: return show_pools(a);
	case ADMIN_SHOW_CLIENTS: return show_clients(a);
	case ADMIN_SHOW_SERVERS: return show_servers(a);
	case ADMIN_SHOW_STATS: return show_stats(a);
	case ADMIN_SHOW_DATABASES: return show_databases(a);
	case ADMIN_SHOW_CONFIG: return show_config(a);
	case ADMIN_SHOW_VERSION: return show_version(a);
	default: return 0;
	}
}

/* ---- PAUSE, RESUME, RECONNECT, KILL ---- */

bool admin_db_paused(const char *dbname)
{
	return pause_covers(dbname);
}

static void for_pools(const char *db, void (*fn)(struct pool *p))
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &all_pools) {
		struct pool *p = list_entry(pos, struct pool, node);
		if (matches(p, db))
			fn(p);
	}
}

/* PAUSE answers once no pool it covers has a backend leased. */
static bool pause_done(const char *db)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &all_pools) {
		struct pool *p = list_entry(pos, struct pool, node);
		if (matches(p, db) && (p->leased.count || p->active.count))
			return false;
	}
	return true;
}

static void resume_pool(struct pool *p)
{
	if (!admin_db_paused(p->dbname))
		pool_resume(p);
}

static void reconnect_pool(struct pool *p)
{
	pool_reconnect(p, "RECONNECT from the admin console");
}

static void close_clients(struct list *l)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, l) {
		struct client *c = list_entry(pos, struct client, node);
		c->exit_why = EXIT_SHUTDOWN;
		client_fatal(c, "57P01", "terminating connection: database killed by the admin console (KILL)", NULL);
	}
}

static void close_servers(struct list *l)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, l)
		server_close(list_entry(pos, struct server, node), "KILL from the admin console");
}

/* Leases end through the exit door first; then every backend goes, cleaning or not. */
static void kill_pool(struct pool *p)
{
	pool_pause(p);
	close_clients(&p->active);
	close_clients(&p->waiting);
	close_clients(&p->clients);
	close_clients(&p->login_wait);
	close_servers(&p->cleaning);
	close_servers(&p->idle);
	close_servers(&p->connecting);
}

/* ---- running a command ---- */

static void no_such_db(struct admin_conn *a, const char *db)
{
	char msg[160];

	snprintf(msg, sizeof(msg), "database \"%s\" does not exist", db);
	send_error(a, "3D000", msg, NULL);
}

/* false: an error was sent. */
static bool run_action(struct client *c, const struct admin_cmd *cmd)
{
	struct admin_conn *a = c->admin;

	if (!db_known(cmd->arg)) {
		no_such_db(a, cmd->arg);
		return false;
	}
	switch (cmd->verb) {
	case ADMIN_PAUSE:
		if (pause_add(cmd->arg) < 0) {
			send_error(a, "53200", "out of memory", NULL);
			return false;
		}
		for_pools(cmd->arg, pool_pause);
		break;
	case ADMIN_RESUME:
		if (*cmd->arg && pause_all()) {
			send_error(a, "55000", "all databases are paused; RESUME without a database name resumes them", NULL);
			return false;
		}
		pause_remove(cmd->arg);
		for_pools(cmd->arg, resume_pool);
		break;
	case ADMIN_RECONNECT:
		for_pools(cmd->arg, reconnect_pool);
		break;
	case ADMIN_KILL:
		if (pause_add(cmd->arg) < 0) {
			send_error(a, "53200", "out of memory", NULL);
			return false;
		}
		for_pools(cmd->arg, kill_pool);
		break;
	case ADMIN_RELOAD:
		if (daemon_reload() != 0) {
			send_error(a, "F0000", "configuration not reloaded; see pglease's log", NULL);
			return false;
		}
		break;
	default:
		break;
	}
	log_info("admin console: %s%s%s by \"%s\"", admin_cmd_name(cmd->verb), *cmd->arg ? " " : "", cmd->arg,
		 a->user);
	return true;
}

enum outcome { DONE, FAILED, WAITING, GONE };

/* Runs cmd; sends its rows (with a RowDescription if asked) and CommandComplete. */
static enum outcome run_command(struct client *c, const struct admin_cmd *cmd, bool describe)
{
	struct admin_conn *a = c->admin;
	char tag[64];

	if (cmd->verb == ADMIN_EMPTY) {
		msg_empty(a, 'I');
		return DONE;
	}
	if (!admin_cmd_is_show(cmd->verb) && !a->full) {
		send_error(a, "42501", "permission denied: stats_users may only use SHOW commands", NULL);
		return FAILED;
	}
	if (admin_cmd_is_show(cmd->verb)) {
		if (describe)
			send_row_description(a, result_table(cmd->verb));
		snprintf(tag, sizeof(tag), "SHOW");
		run_show(a, cmd->verb);
		send_complete(a, tag);
		return DONE;
	}
	if (cmd->verb == ADMIN_SHUTDOWN) {
		log_info("admin console: SHUTDOWN by \"%s\"", a->user);
		send_complete(a, "SHUTDOWN");
		flush(c);
		daemon_shutdown(SHUTDOWN_GRACEFUL);
		return c->state == CLIENT_ADMIN ? DONE : GONE;
	}
	if (!run_action(c, cmd))
		return FAILED;
	if (cmd->verb == ADMIN_PAUSE && !pause_done(cmd->arg)) {
		a->pausing = true;
		snprintf(a->pause_db, sizeof(a->pause_db), "%s", cmd->arg);
		return WAITING;
	}
	send_complete(a, admin_cmd_name(cmd->verb));
	return DONE;
}

/* ---- the protocol handler ---- */

struct msg {
	char type;
	const uint8_t *body, *end;
	bool bad;                   /* a field ran past the end */
};

static const char *get_str(struct msg *m)
{
	const uint8_t *nul = m->body < m->end ? memchr(m->body, 0, m->end - m->body) : NULL;

	if (!nul) {
		m->bad = true;
		return "";
	}
	const char *s = (const char *)m->body;
	m->body = nul + 1;
	return s;
}

static int get_int16(struct msg *m)
{
	if (m->end - m->body < 2) {
		m->bad = true;
		return 0;
	}
	int v = (m->body[0] << 8) | m->body[1];
	m->body += 2;
	return v;
}

static uint8_t get_byte(struct msg *m)
{
	if (m->body >= m->end) {
		m->bad = true;
		return 0;
	}
	return *m->body++;
}

static struct named *find_named(struct named *set, const char *name)
{
	for (int i = 0; i < ADMIN_MAX_NAMED; i++)
		if (set[i].name && strcmp(set[i].name, name) == 0)
			return &set[i];
	return NULL;
}

static void drop_named(struct named *n)
{
	if (!n)
		return;
	free(n->name);
	free(n->text);
	n->name = n->text = NULL;
}

/* The unnamed statement or portal is replaced silently; a named one must be new. */
static bool store_named(struct admin_conn *a, struct named *set, const char *name, const char *text,
			const char *what, const char *dup_sqlstate)
{
	char msg[200];
	struct named *old = find_named(set, name);
	struct named *slot = NULL;

	if (old && *name) {
		snprintf(msg, sizeof(msg), "%s \"%s\" already exists", what, name);
		send_error(a, dup_sqlstate, msg, NULL);
		return false;
	}
	drop_named(old);
	for (int i = 0; !slot && i < ADMIN_MAX_NAMED; i++)
		if (!set[i].name)
			slot = &set[i];
	if (!slot || !(slot->name = strdup(name)) || !(slot->text = strdup(text))) {
		drop_named(slot);
		send_error(a, "54000", "too many prepared statements or portals on the admin console", NULL);
		return false;
	}
	return true;
}

static bool parse_or_error(struct admin_conn *a, const char *text, struct admin_cmd *cmd)
{
	char err[200];

	if (admin_parse(text, cmd, err, sizeof(err)))
		return true;
	send_error(a, "42601", err, ADMIN_HINT);
	return false;
}

static enum outcome on_query(struct client *c, struct msg *m)
{
	struct admin_conn *a = c->admin;
	struct admin_cmd cmd;
	const char *text = get_str(m);
	enum outcome r = FAILED;

	if (m->bad)
		return FAILED;
	if (parse_or_error(a, text, &cmd))
		r = run_command(c, &cmd, true);
	if (r == WAITING)
		a->pause_simple = true;
	else if (r != GONE)
		send_ready(a);
	return r == FAILED ? DONE : r;
}

static enum outcome on_parse(struct admin_conn *a, struct msg *m)
{
	const char *name = get_str(m), *text = get_str(m);
	struct admin_cmd cmd;

	if (m->bad || !parse_or_error(a, text, &cmd))
		return FAILED;
	if (!store_named(a, a->stmts, name, text, "prepared statement", "42P05"))
		return FAILED;
	msg_empty(a, '1');
	return DONE;
}

/* Parameters are not used by any command; only text results exist. */
static enum outcome on_bind(struct admin_conn *a, struct msg *m)
{
	const char *portal = get_str(m), *stmt_name = get_str(m);
	struct named *stmt = find_named(a->stmts, stmt_name);
	char msg[200];

	int nformats = get_int16(m);
	m->body += 2 * (nformats > 0 ? nformats : 0);
	int nparams = get_int16(m);
	if (m->bad)
		return FAILED;
	if (!stmt) {
		snprintf(msg, sizeof(msg), "prepared statement \"%s\" does not exist", stmt_name);
		send_error(a, "26000", msg, NULL);
		return FAILED;
	}
	if (nparams > 0) {
		send_error(a, "0A000", "admin console commands take no parameters", NULL);
		return FAILED;
	}
	int nresult = get_int16(m);
	for (int i = 0; i < nresult && !m->bad; i++)
		if (get_int16(m) != 0) {
			send_error(a, "0A000", "the admin console returns text format only", NULL);
			return FAILED;
		}
	if (m->bad || !store_named(a, a->portals, portal, stmt->text, "portal", "42P03"))
		return FAILED;
	msg_empty(a, '2');
	return DONE;
}

static enum outcome on_describe(struct admin_conn *a, struct msg *m)
{
	uint8_t kind = get_byte(m);
	const char *name = get_str(m);
	struct named *n = find_named(kind == 'S' ? a->stmts : a->portals, name);
	struct admin_cmd cmd;
	char msg[200];

	if (m->bad)
		return FAILED;
	if (!n) {
		snprintf(msg, sizeof(msg), "%s \"%s\" does not exist", kind == 'S' ? "prepared statement" : "portal", name);
		send_error(a, kind == 'S' ? "26000" : "34000", msg, NULL);
		return FAILED;
	}
	if (kind == 'S') {
		size_t mk = msg_begin(a, 't');
		out_int16(a, 0);
		msg_end(a, mk);
	}
	if (parse_or_error(a, n->text, &cmd) && result_table(cmd.verb))
		send_row_description(a, result_table(cmd.verb));
	else
		msg_empty(a, 'n');
	return DONE;
}

/* Rows are sent whole: the row limit is not applied (documented). */
static enum outcome on_execute(struct client *c, struct msg *m)
{
	struct admin_conn *a = c->admin;
	const char *portal = get_str(m);
	struct named *n = find_named(a->portals, portal);
	struct admin_cmd cmd;
	char msg[200];

	if (m->bad)
		return FAILED;
	if (!n) {
		snprintf(msg, sizeof(msg), "portal \"%s\" does not exist", portal);
		send_error(a, "34000", msg, NULL);
		return FAILED;
	}
	if (!parse_or_error(a, n->text, &cmd))
		return FAILED;
	enum outcome r = run_command(c, &cmd, false);
	if (r == WAITING)
		a->pause_simple = false;
	return r;
}

static enum outcome on_close(struct admin_conn *a, struct msg *m)
{
	uint8_t kind = get_byte(m);
	const char *name = get_str(m);

	if (m->bad)
		return FAILED;
	drop_named(find_named(kind == 'S' ? a->stmts : a->portals, name));
	msg_empty(a, '3');
	return DONE;
}

static enum outcome on_sync(struct admin_conn *a)
{
	a->skip_to_sync = false;
	drop_named(find_named(a->portals, ""));
	send_ready(a);
	return DONE;
}

static enum outcome dispatch(struct client *c, struct msg *m)
{
	struct admin_conn *a = c->admin;

	if (a->skip_to_sync && m->type != 'S' && m->type != 'X')
		return DONE;
	switch (m->type) {
	case 'Q': return on_query(c, m);
	case 'P': return on_parse(a, m);
	case 'B': return on_bind(a, m);
	case 'D': return on_describe(a, m);
	case 'E': return on_execute(c, m);
	case 'C': return on_close(a, m);
	case 'S': return on_sync(a);
	case 'H': return DONE;
	case 'X':
		client_close(c, "client sent Terminate");
		return GONE;
	default: {
		char msg[96];
		snprintf(msg, sizeof(msg), "invalid frontend message type %d", (uint8_t)m->type);
		flush(c);
		client_fatal(c, "08P01", msg, NULL);
		return GONE;
	}
	}
}

/* One whole message at in->start: handle it. false when nothing more can be done now. */
static bool next_message(struct client *c)
{
	struct iobuf *in = c->in;
	uint32_t avail = in->end - in->start;
	const uint8_t *p = in->data + in->start;

	if (avail < 5)
		return false;
	uint32_t len = be32(p + 1);
	if (len < 4 || len > ADMIN_MSG_MAX) {
		flush(c);
		client_fatal(c, "08P01", len < 4 ? "invalid message length" : "message too long for the admin console", NULL);
		return false;
	}
	if (avail < len + 1)
		return false;
	struct msg m = { (char)p[0], p + 5, p + 1 + len, false };
	in->start += len + 1;
	enum outcome r = dispatch(c, &m);
	if (r == GONE)
		return false;
	if (m.bad) {
		/* Like PostgreSQL: a message whose fields overrun it ends the session. */
		char msg[96];
		snprintf(msg, sizeof(msg), "invalid message format (message type \"%c\")",
			 m.type >= 32 && m.type < 127 ? m.type : '?');
		flush(c);
		client_fatal(c, "08P01", msg, NULL);
		return false;
	}
	if (r == FAILED)
		c->admin->skip_to_sync = m.type != 'Q';
	return r != WAITING;
}

static void handle_input(struct client *c)
{
	struct admin_conn *a = c->admin;

	while (c->state == CLIENT_ADMIN && !a->pausing && c->in && a->out_len - a->out_sent < ADMIN_BACKLOG &&
	       next_message(c))
		;
	if (c->state != CLIENT_ADMIN)
		return;
	if (c->in && iobuf_is_empty(c->in)) {
		iobuf_put(c->in);
		c->in = NULL;
	} else if (c->in && c->in->start > 0) {
		iobuf_compact(c->in);
	}
	flush(c);
	if (c->state == CLIENT_ADMIN)
		client_want_read(c, !c->in || iobuf_room(c->in) > 0);
}

void admin_on_readable(struct client *c)
{
	if (!client_read(c)) {
		client_close(c, "client closed the connection");
		return;
	}
	handle_input(c);
}

void admin_on_writable(struct client *c)
{
	flush(c);
	if (c->state == CLIENT_ADMIN && c->admin->out_len == 0)
		handle_input(c);
}

/* ---- PAUSE completion ---- */

static void finish_pause(struct client *c)
{
	struct admin_conn *a = c->admin;

	a->pausing = false;
	send_complete(a, "PAUSE");
	if (a->pause_simple)
		send_ready(a);
	handle_input(c);
}

void admin_maintain(ev_tstamp now)
{
	struct list_node *pos, *tmp;

	(void)now;
	list_for_each_safe(pos, tmp, &admin_clients) {
		struct client *c = list_entry(pos, struct client, node);
		if (c->admin->pausing && pause_done(c->admin->pause_db))
			finish_pause(c);
	}
}
