/*
 * stats.c — per-pool counters in the Prometheus text format.
 *
 * The metric families are a table: each names its getter, so adding a
 * counter is one line. Every family is printed once with HELP and TYPE,
 * then one series per pool (and per reason or state where it has one).
 */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "stats.h"

#define LABEL(id, name, label) [EXIT_##id] = label,
const char *const stats_exit_reason_names[STATS_EXIT_REASONS] = {
	LEASE_EXIT_REASONS(LABEL)
	[STATS_EXIT_OTHER] = STATS_EXIT_OTHER_LABEL,
};
#undef LABEL

/* ---- a growing text buffer ---- */

struct text {
	char *s;
	size_t len, cap;
	bool oom;
};

__attribute__((format(printf, 2, 3)))
static void put(struct text *t, const char *fmt, ...)
{
	va_list ap;

	for (int tries = 0; tries < 2 && !t->oom; tries++) {
		va_start(ap, fmt);
		int n = vsnprintf(t->s ? t->s + t->len : NULL, t->s ? t->cap - t->len : 0, fmt, ap);
		va_end(ap);
		if (n < 0) {
			t->oom = true;
			return;
		}
		if (t->s && t->len + (size_t)n < t->cap) {
			t->len += (size_t)n;
			return;
		}
		char *s = grow_bytes(t->s, &t->cap, t->len + (size_t)n + 1);
		if (!s) {
			t->oom = true;
			return;
		}
		t->s = s;
	}
}

/* ---- labels ---- */

void stats_escape_label(const char *value, char *out, size_t cap)
{
	size_t n = 0;

	for (; *value && n + 3 < cap; value++) {
		char c = *value;
		if (c == '\\' || c == '"' || c == '\n') {
			out[n++] = '\\';
			c = c == '\n' ? 'n' : c;
		}
		out[n++] = c;
	}
	out[n] = '\0';
}

/* ---- the metric families ---- */

#define US 1e-6
typedef double (*getter)(const struct stats_sample *s);

struct family {
	const char *name, *type, *help;
	getter get;
};

#define G(fn, expr) static double fn(const struct stats_sample *s) { return (double)(expr); }
G(g_leases, s->st.lease_count)
G(g_waits, s->st.wait_count)
G(g_wait_s, s->st.wait_time_us * US)
G(g_lease_s, s->st.lease_time_us * US)
G(g_xacts, s->st.stream.xacts)
G(g_queries, s->st.stream.queries)
G(g_query_s, s->st.query_time_us * US)
G(g_recv, s->st.bytes_received)
G(g_sent, s->st.bytes_sent)
G(g_opened, s->st.servers_opened)
G(g_closed, s->st.servers_closed)
G(g_lost, s->st.servers_lost)
G(g_failed, s->st.servers_failed)
G(g_discarded, s->st.servers_discarded)
G(g_rollbacks, s->st.exit_rollbacks)
G(g_warnings, s->st.lease_warnings)
G(g_pins, s->st.pins)
G(g_unpins, s->st.unpins)
G(g_query_timeouts, s->st.query_timeouts)
G(g_idle_timeouts, s->st.client_idle_timeouts)
G(g_pool_size, s->pool_size)
G(g_paused, s->paused)
G(g_maxwait, s->maxwait)
G(g_oldest, s->oldest_lease)
G(g_pinned, s->cl_pinned)
G(g_reserve, s->reserve_pool)
G(g_sv_reserve, s->sv_reserve)
G(g_max_db, s->max_db_connections)
G(g_max_user, s->max_user_connections)
#undef G

static const struct family families[] = {
	{ "pglease_leases_total", "counter", "Leases granted (a backend handed to a client).", g_leases },
	{ "pglease_lease_waits_total", "counter", "Leases that waited for a backend.", g_waits },
	{ "pglease_wait_seconds_total", "counter", "Time clients waited for a backend.", g_wait_s },
	{ "pglease_lease_seconds_total", "counter", "Time backends were leased (ended leases).", g_lease_s },
	{ "pglease_transactions_total", "counter", "Transactions ended (ReadyForQuery with status I).", g_xacts },
	{ "pglease_queries_total", "counter", "Query and Execute messages relayed.", g_queries },
	{ "pglease_query_seconds_total", "counter", "Time a reply was owed on a leased backend.", g_query_s },
	{ "pglease_received_bytes_total", "counter", "Bytes from clients relayed to backends.", g_recv },
	{ "pglease_sent_bytes_total", "counter", "Bytes from backends relayed to clients.", g_sent },
	{ "pglease_servers_opened_total", "counter", "Backend connections established.", g_opened },
	{ "pglease_servers_closed_total", "counter", "Established backend connections closed.", g_closed },
	{ "pglease_servers_lost_total", "counter", "Backends that failed while leased.", g_lost },
	{ "pglease_server_connect_failures_total", "counter", "Backend connection attempts that failed.", g_failed },
	{ "pglease_servers_discarded_total", "counter", "Backends closed because a lease left them unclean.", g_discarded },
	{ "pglease_exit_rollbacks_total", "counter", "ROLLBACKs run by the lease exit door.", g_rollbacks },
	{ "pglease_lease_warnings_total", "counter", "Leases held longer than lease_warn_after.", g_warnings },
	{ "pglease_pins_total", "counter", "Clients pinned to their backend by session state.", g_pins },
	{ "pglease_unpins_total", "counter", "Pins lifted: a probe found no session state left.", g_unpins },
	{ "pglease_query_timeouts_total", "counter", "Queries cancelled by query_timeout.", g_query_timeouts },
	{ "pglease_client_idle_timeouts_total", "counter", "Clients without a lease closed by client_idle_timeout.",
	  g_idle_timeouts },
	{ "pglease_pool_size", "gauge", "Backends the pool may open.", g_pool_size },
	{ "pglease_paused", "gauge", "1 while the pool is paused by the admin console.", g_paused },
	{ "pglease_max_wait_seconds", "gauge", "How long the oldest waiting client has waited.", g_maxwait },
	{ "pglease_oldest_lease_seconds", "gauge", "Age of the oldest current lease.", g_oldest },
	{ "pglease_pinned_clients", "gauge", "Clients pinned to their backend by session state.", g_pinned },
	{ "pglease_reserve_pool_size", "gauge", "Backends the pool may open beyond its size after reserve_pool_timeout.", g_reserve },
	{ "pglease_reserve_servers", "gauge", "Backends open beyond the pool's size (its reserve in use).", g_sv_reserve },
	{ "pglease_max_db_connections", "gauge", "Backends all pools of the database may have together (0: no cap).", g_max_db },
	{ "pglease_max_user_connections", "gauge", "Backends all pools of the user may have together (0: no cap).", g_max_user },
};

static void labels(const struct stats_sample *s, char *out, size_t cap)
{
	char db[256], user[256];

	stats_escape_label(s->database, db, sizeof(db));
	stats_escape_label(s->user, user, sizeof(user));
	snprintf(out, cap, "database=\"%s\",user=\"%s\"", db, user);
}

static void header(struct text *t, const char *name, const char *type, const char *help)
{
	put(t, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void simple_families(struct text *t, const struct stats_sample *samples, int n)
{
	char lab[600];

	for (size_t f = 0; f < sizeof(families) / sizeof(*families); f++) {
		header(t, families[f].name, families[f].type, families[f].help);
		for (int i = 0; i < n; i++) {
			labels(&samples[i], lab, sizeof(lab));
			put(t, "%s{%s} %.15g\n", families[f].name, lab, families[f].get(&samples[i]));
		}
	}
}

static void exit_family(struct text *t, const struct stats_sample *samples, int n)
{
	char lab[600];

	header(t, "pglease_lease_exits_total", "counter", "Leases ended, by the reason they ended.");
	for (int i = 0; i < n; i++) {
		labels(&samples[i], lab, sizeof(lab));
		for (int r = 0; r < STATS_EXIT_REASONS; r++)
			put(t, "pglease_lease_exits_total{%s,reason=\"%s\"} %llu\n", lab,
			    stats_exit_reason_names[r], (unsigned long long)samples[i].st.exits[r]);
	}
}

static void state_families(struct text *t, const struct stats_sample *samples, int n)
{
	char lab[600];

	header(t, "pglease_clients", "gauge", "Clients of the pool, by state.");
	for (int i = 0; i < n; i++) {
		const struct stats_sample *s = &samples[i];
		labels(s, lab, sizeof(lab));
		put(t, "pglease_clients{%s,state=\"active\"} %d\n", lab, s->cl_active);
		put(t, "pglease_clients{%s,state=\"waiting\"} %d\n", lab, s->cl_waiting);
		put(t, "pglease_clients{%s,state=\"idle\"} %d\n", lab, s->cl_idle);
		put(t, "pglease_clients{%s,state=\"login_wait\"} %d\n", lab, s->cl_login_wait);
	}
	header(t, "pglease_servers", "gauge", "Backend connections of the pool, by state.");
	for (int i = 0; i < n; i++) {
		const struct stats_sample *s = &samples[i];
		labels(s, lab, sizeof(lab));
		put(t, "pglease_servers{%s,state=\"active\"} %d\n", lab, s->sv_active);
		put(t, "pglease_servers{%s,state=\"idle\"} %d\n", lab, s->sv_idle);
		put(t, "pglease_servers{%s,state=\"cleaning\"} %d\n", lab, s->sv_cleaning);
		put(t, "pglease_servers{%s,state=\"connecting\"} %d\n", lab, s->sv_login);
	}
}

char *stats_prometheus(const struct stats_sample *samples, int n, int clients_total, int admin_clients)
{
	struct text t = { 0 };

	header(&t, "pglease_client_connections", "gauge", "Client connections, all pools and the admin console.");
	put(&t, "pglease_client_connections %d\n", clients_total);
	header(&t, "pglease_admin_clients", "gauge", "Clients connected to the admin console.");
	put(&t, "pglease_admin_clients %d\n", admin_clients);
	simple_families(&t, samples, n);
	exit_family(&t, samples, n);
	state_families(&t, samples, n);
	if (t.oom) {
		free(t.s);
		return NULL;
	}
	return t.s;
}
