/*
 * client.h — one client connection, as the object model drives it.
 *
 * client.c, its life:
 *   client_set_frontend()  the front end's hooks (login, console), installed once at start
 *   client_accept()      a new socket from the listener
 *   client_close()       the one way a client goes away, with a reason
 *   client_fatal()       send a FATAL ErrorResponse, then close
 *   client_set_state()   move it to the list that is its state
 *   client_state_name()  "login", "idle", "active", ... (SHOW CLIENTS, logs)
 *   client_find_by_key() the client a CancelRequest names
 *   client_maintain()    periodic: login timeout
 *   client_reap()        free closed clients (outside any handler)
 *   client_close_pool() / client_close_all()  FATAL to every client of a pool / of pglease
 *   client_send() / client_flush() / client_out_buffer() / client_read_into()
 *   client_want_read() / client_want_write()   its buffers and watchers
 *   client_read() / client_write()  raw I/O for the admin console
 *   client_peer() / client_on_tls()  its TCP address; whether it talks TLS
 * welcome.c, its login's answer:
 *   client_join()        an authenticated client joins its pool
 *   client_welcome()     finish login once the pool knows its backend's settings
 *   client_vetted()      ... once a backend has checked the client's startup settings (lease.c)
 *   client_login_refused()  ... or PostgreSQL refused one of them
 * relay.c, its bytes:
 *   client_dispatch()    an idle client's input: answer, Terminate, or enter a lease
 *   client_on_data()     a logged-in client's socket has bytes
 *   client_leased()      a lease is ready: start relaying the pending input
 *   client_relay_from_server() / client_relay_to_server()  the hot path
 *   client_cancel_request()  a CancelRequest for a client
 *   client_cancel_delivered()  a cancel went out: a pin probe put off for it may run
 */
#ifndef PGLEASE_CLIENT_H
#define PGLEASE_CLIENT_H

#include <stdbool.h>
#include <stdint.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <ev.h>

#include "iobuf.h"
#include "lease.h"
#include "list.h"
#include "params.h"

struct pool;
struct server;
struct admin_conn;
struct auth_conn;
struct prep_client;
struct ssl_st;

/* A client's states, listed once: X(ID, name); the name is SHOW CLIENTS' state and the logs'. */
#define CLIENT_STATES(X) \
	X(LOGIN, "login")            /* login_clients: reading the startup packet */ \
	X(LOGIN_WAIT, "login_wait")  /* pool->login_wait: waiting for the first backend */ \
	X(IDLE, "idle")              /* pool->clients: logged in, no lease */ \
	X(WAITING, "waiting")        /* pool->waiting: wants a lease, FIFO */ \
	X(ACTIVE, "active")          /* pool->active: holds a lease */ \
	X(ADMIN, "admin")            /* admin_clients: logged in to the admin console (admin.c) */ \
	X(CLOSED, "closed")          /* dead, waiting to be freed */

#define CLIENT_STATE_ENUM(id, name) CLIENT_##id,
enum client_state { CLIENT_STATES(CLIENT_STATE_ENUM) };
#undef CLIENT_STATE_ENUM

static inline const char *client_state_name(enum client_state state)
{
#define CLIENT_STATE_NAME(id, name) [CLIENT_##id] = name,
	static const char *const names[] = { CLIENT_STATES(CLIENT_STATE_NAME) };
#undef CLIENT_STATE_NAME

	return (unsigned)state < sizeof(names) / sizeof(*names) ? names[state] : "unknown";
}

/*
 * A TCP client's address as accept() gave it: IPv4 or IPv6 only, so 28
 * bytes where a sockaddr_storage would cost every client 128.
 */
union client_addr {
	struct sockaddr sa;
	struct sockaddr_in v4;
	struct sockaddr_in6 v6;
};

struct client {
	struct list_node node;
	enum client_state state;
	int fd;
	ev_io rio, wio;
	struct iobuf *in;          /* from the client, not yet sent to a backend */
	struct iobuf *out;         /* for the client, not yet sent */
	struct pool *pool;
	struct lease *lease;       /* while it holds one (ACTIVE): lease.h */
	struct param_set params;   /* the session settings the client asked for, as last reported to it */
	struct param_set startup;  /* its startup settings: where RESET returns (reset.c) */
	struct param_set vet_key;  /* until welcomed: the startup settings a backend must check (vet.c), a list */
	bool welcomed;             /* its login was answered */
	uint32_t id, cancel_key;   /* our BackendKeyData */
	ev_tstamp state_since;
	ev_tstamp connected_at;    /* accepted; SHOW CLIENTS */
	ev_tstamp last_read;       /* its socket last had bytes (logged in): client_stall_timeout */
	bool terminating;          /* sent Terminate: close once what precedes it is sent */
	bool mid_message;          /* part of a backend message has gone to the client */
	uint8_t jobs_pending;      /* worker jobs that point here: not freed until done */
	char *violation;           /* a bad message was seen: FATAL once owed replies are relayed */
	struct admin_conn *admin;  /* CLIENT_ADMIN: the console's state for it (admin.c owns it) */
	struct auth_conn *auth;    /* CLIENT_LOGIN: its password exchange or failure delay (daemon/auth.c owns it) */
	struct pin *pin;           /* session.c: its statement watcher, while a message is split between reads */
	bool pinned;               /* it made session state: keeps its lease while that is left */
	bool pin_lasts;            /* ... state no probe can see: until it leaves */
	bool probe_due;            /* session.c: since the last probe, it may have released its state */
	bool quotes_known, backslash_quotes;  /* session.c: standard_conforming_strings, cached */
	bool prep_on;              /* the prepared-statement layer applies (transaction mode) */
	struct prep_client *prep;  /* its named prepared statements, allocated when first needed */
	/* Its transport: set at accept (listener.c), read through client_peer(). */
	bool tcp;                  /* came over TCP (else the Unix socket) */
	union client_addr peer;    /* TCP: the client's address and port */
	/*
	 * TLS (daemon/tls.c starts it after an SSLRequest and drives the
	 * handshake; from then on client_read_into()/client_flush() go through
	 * it). Freed with the client (client_reap).
	 */
	struct ssl_st *tls;
	bool tls_handshaking;        /* SSL_accept not finished: the front end's login hook drives it */
	bool tls_read_wants_write;   /* an SSL_read (or the handshake) waits for the socket to be writable */
	bool tls_write_wants_read;   /* an SSL_write waits for the socket to be readable */
};

/*
 * What the front end does for clients in the states it drives (LOGIN,
 * ADMIN): the object model calls down into nothing above it, only these.
 */
struct client_frontend {
	void (*login_readable)(struct client *c);  /* CLIENT_LOGIN: startup packets, auth */
	void (*admin_readable)(struct client *c);  /* CLIENT_ADMIN: the console */
	void (*admin_writable)(struct client *c);
	void (*released)(struct client *c);        /* freed: drop what the front end keeps for it */
};

extern struct list login_clients, admin_clients;
extern int client_count;

void client_set_frontend(const struct client_frontend *fe);

/* tcp: the socket is TCP and peer (peer_len bytes) its address; the Unix socket passes false, NULL, 0. */
void client_accept(int fd, bool tcp, const struct sockaddr *peer, socklen_t peer_len);
void client_close(struct client *c, const char *reason_fmt, ...) __attribute__((format(printf, 2, 3)));
void client_fatal(struct client *c, const char *sqlstate, const char *message, const char *detail);
void client_set_state(struct client *c, enum client_state state);
struct db_config;
void client_join(struct client *c, const struct db_config *db, const char *dbname, const char *user,
		 struct param_set *params, const struct param_set *sequence);
void client_welcome(struct client *c);
struct vet_answer;
void client_vetted(struct client *c, const struct vet_answer *answer);
void client_login_refused(struct client *c, const struct vet_answer *answer, const char *sqlstate,
			  const char *message, const char *detail, const char *hint);
void client_leased(struct client *c);
void client_relay_from_server(struct server *s);
void client_relay_to_server(struct server *s);
void client_dispatch(struct client *c);
void client_on_data(struct client *c);
void client_cancel_request(struct client *requester, uint32_t id, uint32_t key);
void client_cancel_delivered(struct server *s);
struct client *client_find_by_key(uint32_t id, uint32_t key);
void client_maintain(ev_tstamp now);
void client_reap(void);
void client_close_pool(struct pool *p, enum lease_exit_reason why, const char *reason);
void client_close_all(const char *reason);
/* Read into c->in: 1 ok (maybe nothing new), 0 the client is gone. */
int client_read(struct client *c);
/* Queue up to len bytes (as many as its buffer takes) and send; bytes taken, -1 if it went away. */
long client_write(struct client *c, const void *data, size_t len);
void client_want_read(struct client *c, bool on);
void client_want_write(struct client *c, bool on);
/* Queue pglease's own bytes for the client; closes it when they cannot be buffered or sent. */
void client_send(struct client *c, const uint8_t *data, size_t len);
/* Send out[start, scanned); -1 when the client is gone. */
int client_flush(struct client *c);
struct iobuf *client_out_buffer(struct client *c);
/* Read into *bufp (allocated if NULL): 1 ok (maybe nothing new), 0 gone, -1 out of memory. */
int client_read_into(struct client *c, struct iobuf **bufp);

/* The client's TCP address (for hba host lines, SHOW CLIENTS), or NULL for a Unix-socket client. */
static inline const struct sockaddr *client_peer(const struct client *c)
{
	return c->tcp ? &c->peer.sa : NULL;
}

/* Its bytes go through TLS (the handshake is done). */
static inline bool client_on_tls(const struct client *c)
{
	return c->tls && !c->tls_handshaking;
}

/* The backend it holds, or NULL. */
static inline struct server *client_server(const struct client *c)
{
	return c->lease ? c->lease->server : NULL;
}

#endif
