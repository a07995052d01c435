/*
 * stats.h — per-pool counters and their text formats.
 *
 *   struct pool_stats       counters embedded in struct pool, bumped at the
 *                           existing single points (lease, server, relay)
 *   struct stats_sample     one pool's counters plus its gauges, as shown
 *   stats_prometheus()      samples in the Prometheus text format (malloc'd)
 *   stats_escape_label()    a Prometheus label value, escaped
 *
 * Counters only ever grow; they are plain additions on the loop thread, so
 * the hot path pays an increment, never a syscall. Times are microseconds.
 * This file is pure (no loop, no config) so the formats are unit-tested.
 */
#ifndef PGLEASE_STATS_H
#define PGLEASE_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "check.h"
#include "lease.h"
#include "stream.h"

/* Lease exits counted: one slot per reason of LEASE_EXIT_REASONS (lease.h), then "other" for any value outside it. */
#define STATS_EXIT_OTHER LEASE_EXIT_REASON_COUNT
#define STATS_EXIT_REASONS (LEASE_EXIT_REASON_COUNT + 1)
#define STATS_EXIT_OTHER_LABEL "other"

struct pool_stats {
	uint64_t lease_count;          /* leases granted */
	uint64_t wait_count;           /* leases that had to wait for a backend */
	uint64_t wait_time_us;         /* total time those waited */
	uint64_t lease_time_us;        /* total time backends were leased (ended leases) */
	struct stream_counts stream;   /* transactions and queries, counted on the wire */
	uint64_t query_time_us;        /* time with a reply owed (first request to its 'Z') */
	uint64_t bytes_received;       /* from clients, relayed to backends */
	uint64_t bytes_sent;           /* from backends, relayed to clients */
	uint64_t servers_opened;       /* backend connections established */
	uint64_t servers_closed;       /* established backends closed, for any reason */
	uint64_t servers_lost;         /* closed while leased (the backend failed under a client) */
	uint64_t servers_failed;       /* connection attempts that failed */
	uint64_t servers_discarded;    /* could not be made clean after a lease: closed */
	uint64_t exit_rollbacks;       /* ROLLBACK run by the exit door */
	uint64_t exits[STATS_EXIT_REASONS]; /* lease exits by reason */
	uint64_t lease_warnings;       /* leases older than lease_warn_after (logged once each) */
	uint64_t pins;                 /* clients pinned to their backend by session state (session.c) */
	uint64_t unpins;               /* pins lifted because a probe found no session state left */
	uint64_t query_timeouts;       /* queries cancelled by query_timeout (the client stayed, unless exits_timeout_query) */
	uint64_t client_idle_timeouts; /* clients without a lease closed by client_idle_timeout */
};

/* What SHOW STATS / SHOW POOLS and /metrics print for one pool. */
struct stats_sample {
	const char *database, *user, *pool_mode;
	struct pool_stats st;
	int cl_active, cl_waiting, cl_idle, cl_login_wait;
	int sv_active, sv_idle, sv_used, sv_login, sv_cleaning;
	int pool_size;
	int paused;
	int cl_pinned;                 /* leased clients pinned by session state (session.c) */
	int reserve_pool, sv_reserve;  /* reserve_pool_size, and the backends above pool_size (caps.c) */
	int max_db_connections, max_user_connections;  /* the caps the pool is under (0: none) */
	double maxwait;                /* seconds the oldest waiting client has waited */
	double oldest_lease;           /* seconds the oldest current lease has lasted */
};

/* The label of each exits[] slot: reason="<label>" in /metrics, exits_<label> in SHOW STATS. */
extern const char *const stats_exit_reason_names[STATS_EXIT_REASONS];

/* n samples in the Prometheus text exposition format, 0.0.4; NULL on OOM. */
MUST_CHECK char *stats_prometheus(const struct stats_sample *samples, int n, int clients_total, int admin_clients);
/* Writes value with \\, \" and \n escaped into out (cap bytes, always terminated). */
void stats_escape_label(const char *value, char *out, size_t cap);

#endif
