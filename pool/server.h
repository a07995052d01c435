/*
 * server.h — one backend connection, opened and driven through libpq.
 *
 *   server_connect()     start a nonblocking connect for a pool
 *   server_query()       run SQL through libpq (ROLLBACK, reset, check, SET, probe)
 *   server_query_param() run SQL with one text parameter, binary results (auth_query)
 *   server_go_raw()      hand the socket to the relay or the drain
 *   server_watch_idle()  sit idle: any byte from the backend is news
 *   server_still_there() about to be leased: one peek says whether it closed or spoke meanwhile
 *   server_send_raw()    write protocol bytes past libpq
 *   server_recv_raw()    read protocol bytes past libpq
 *   server_close()       the one way a backend goes away, with a reason
 *   server_set_state()   move it to the pool list that is its state
 *   server_state_name()  "connecting", "idle", "active", ... (SHOW SERVERS, logs)
 *   server_reap()        free closed servers (outside any handler)
 *   server_closed_list() the closed servers not freed yet (verify.c)
 *
 * A server is on exactly one list; the list is its state (pool/README.md).
 * The phase says who is reading its socket right now: libpq (CONNECT,
 * QUERY, IDLE) or pglease itself (RAW).
 */
#ifndef PGLEASE_SERVER_H
#define PGLEASE_SERVER_H

#include <ev.h>
#include <libpq-fe.h>

#include "check.h"
#include "lease.h"
#include "list.h"
#include "params.h"
#include "reset.h"
#include "stream.h"

struct pool;
struct client;
struct server;
struct prep_server;
struct authq_lookup;
struct ssl_st;

/* A server's states, listed once: X(ID, name); the name is SHOW SERVERS' state and the logs'. */
#define SERVER_STATES(X) \
	X(CONNECTING, "connecting")  /* pool->connecting */ \
	X(IDLE, "idle")              /* pool->idle: ready to lease */ \
	X(LEASED, "active")          /* pool->leased: a client holds it */ \
	X(CLEANING, "cleaning")      /* pool->cleaning: the lease exit door is at work */ \
	X(AUTHQ, "auth_query")       /* pool->authq: lent to an auth_query lookup (authq.c) */ \
	X(CLOSED, "closed")          /* dead, waiting to be freed */

#define SERVER_STATE_ENUM(id, name) SERVER_##id,
enum server_state { SERVER_STATES(SERVER_STATE_ENUM) };
#undef SERVER_STATE_ENUM

static inline const char *server_state_name(enum server_state state)
{
#define SERVER_STATE_NAME(id, name) [SERVER_##id] = name,
	static const char *const names[] = { SERVER_STATES(SERVER_STATE_NAME) };
#undef SERVER_STATE_NAME

	return (unsigned)state < sizeof(names) / sizeof(*names) ? names[state] : "unknown";
}

enum server_phase { PHASE_CONNECT, PHASE_QUERY, PHASE_IDLE, PHASE_RAW };

typedef void (*server_query_cb)(struct server *s, const char *sqlstate, const char *error);
typedef void (*server_raw_cb)(struct server *s);

struct server {
	struct list_node node;
	enum server_state state;
	enum server_phase phase;
	struct pool *pool;
	PGconn *conn;
	int fd;
	/* libpq's own OpenSSL session when the backend link is TLS, else NULL: the raw
	 * phases read and write through it (server_recv_raw/server_send_raw). */
	struct ssl_st *tls;
	bool tls_read_wants_write;   /* an SSL_read waits for the socket to be writable */
	bool tls_write_wants_read;   /* an SSL_write waits for the socket to be readable */
	ev_io rio, wio;
	ev_timer timer;              /* the deadline of whatever it is doing */
	void (*timer_cb)(struct server *s);
	int id;                      /* pglease's number for it, for logs */
	int backend_pid;
	struct lease *lease;         /* LEASED and CLEANING: &lease_slot (lease.h) */
	struct lease lease_slot;     /* a backend has one lease at a time: taking it allocates nothing */
	struct authq_lookup *authq;  /* AUTHQ: the lookup it is lent to */
	struct stream stream;
	struct prep_server *prep;    /* the named statements it holds (rewrite.c), or NULL */
	struct reset_relay reset;    /* pglease's restores after a client's RESET, in flight (reset.c) */
	struct param_set applied;    /* settings pglease applied since connect/reset */
	bool settings_unknown;       /* a client sent RESET or DISCARD: applied may be wrong */
	ev_tstamp connected_at;
	unsigned generation;         /* the pool's generation when it was opened */
	unsigned cap_epoch;          /* caps_epoch() when it was opened: the config whose caps it was opened under */
	ev_tstamp idle_since;        /* last freed by a lease: health checks and idle timeout count from here */
	int cancels_pending;         /* cancel requests not yet delivered */
	/* PHASE_IDLE: an error libpq read while idle (the backend announced its end: FATAL 57P01 on a
	 * restart); "" while none. Acted on as soon as libpq returns (idle_poll): never leased. */
	char idle_error[96];
	/* PHASE_QUERY */
	server_query_cb query_done;
	char query_sqlstate[6];
	char *query_error;
	int query_rows;              /* rows its last result set returned */
	PGresult *query_result;      /* its first error, else its last row set: for the callback */
	struct {
		bool on;                 /* keep what libpq receives (else dropped) */
		uint8_t *data;           /* ... as NoticeResponse messages */
		uint32_t len;
	} notices;
	/* PHASE_RAW: who handles readiness */
	server_raw_cb on_readable, on_writable;
};

MUST_CHECK struct server *server_connect(struct pool *pool);
MUST_CHECK int server_query(struct server *s, const char *sql, server_query_cb done);
/* sql with $1 = param (text), through the extended protocol; results in binary format. */
MUST_CHECK int server_query_param(struct server *s, const char *sql, const char *param, server_query_cb done);
/* Inside a query's callback: its first error result, else its last row set (NULL if none). */
const PGresult *server_query_result(const struct server *s);
/* Keep the running query's notices, as NoticeResponse messages; its callback takes them (and frees them). */
void server_keep_notices(struct server *s);
uint8_t *server_take_notices(struct server *s, uint32_t *len);
void server_go_raw(struct server *s, server_raw_cb on_readable, server_raw_cb on_writable);
void server_watch_idle(struct server *s);
/* False when the backend turned out closed or dying (it is closed then, with its lease if any). */
MUST_CHECK bool server_still_there(struct server *s);
/* Bytes written (maybe short), or -1 when the backend is gone. */
MUST_CHECK ssize_t server_send_raw(struct server *s, const void *data, size_t len);
/* As recv(): bytes read, 0 when the backend closed, -1 with errno (EAGAIN: nothing yet). */
MUST_CHECK ssize_t server_recv_raw(struct server *s, void *buf, size_t len);
void server_want_write(struct server *s, bool on);
void server_want_read(struct server *s, bool on);
void server_set_timer(struct server *s, double seconds, void (*cb)(struct server *));
void server_stop_timer(struct server *s);
void server_set_state(struct server *s, enum server_state state);
void server_close(struct server *s, const char *reason_fmt, ...) __attribute__((format(printf, 2, 3)));
void server_reap(void);
const struct list *server_closed_list(void);

/* Its lease holder, or NULL (also while its lease is exiting). */
static inline struct client *server_client(const struct server *s)
{
	return s->lease ? s->lease->client : NULL;
}

#endif
