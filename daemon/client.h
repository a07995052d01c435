/*
 * client.h — one client connection: login, then relaying under leases.
 *
 *   client_accept()      a new socket from the listener
 *   client_close()       the one way a client goes away, with a reason
 *   client_fatal()       send a FATAL ErrorResponse, then close
 *   client_set_state()   move it to the list that is its state
 *   client_state_name()  "login", "idle", "active", ... (SHOW CLIENTS, logs)
 *   client_welcome()     finish login once the pool knows its backend's settings
 *   client_vetted()      ... once a backend has checked the client's startup settings (lease.c)
 *   client_login_refused()  ... or PostgreSQL refused one of them
 *   client_leased()      a lease is ready: start relaying the pending input
 *   client_relay_from_server() / client_relay_to_server()  the hot path
 *   client_cancel_delivered()  a cancel went out: a pin probe put off for it may run
 *   client_find_by_key() the client a CancelRequest names
 *   client_maintain()    periodic: login timeout
 *   client_reap()        free closed clients (outside any handler)
 *   client_read() / client_write() / client_want_read()  raw I/O for the admin console
 */
#ifndef PGLEASE_CLIENT_H
#define PGLEASE_CLIENT_H

#include <stdint.h>
#include <ev.h>

#include "iobuf.h"
#include "lease.h"
#include "list.h"
#include "params.h"

struct pool;
struct server;
struct admin_conn;
struct prep_client;

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

struct client {
	struct list_node node;
	enum client_state state;
	int fd;
	ev_io rio, wio;
	struct iobuf *in;          /* from the client, not yet sent to a backend */
	struct iobuf *out;         /* for the client, not yet sent */
	struct pool *pool;
	struct server *server;     /* the leased backend */
	struct param_set params;   /* the session settings the client asked for, as last reported to it */
	struct param_set startup;  /* its startup settings: where RESET returns (reset.c) */
	struct param_set vet_key;  /* until welcomed: the startup settings a backend must check (vet.c), a list */
	bool welcomed;             /* its login was answered */
	uint32_t id, cancel_key;   /* our BackendKeyData */
	ev_tstamp state_since;
	ev_tstamp connected_at;    /* accepted; SHOW CLIENTS */
	uint8_t exit_why;          /* enum lease_exit_reason if it closes leased */
	bool terminating;          /* sent Terminate: close once what precedes it is sent */
	bool mid_message;          /* part of a backend message has gone to the client */
	bool lease_warned;         /* this lease was logged as older than lease_warn_after */
	bool cancel_at_relay;      /* a cancel came while its lease was being set up */
	uint8_t jobs_pending;      /* worker jobs that point here: not freed until done */
	char *violation;           /* a bad message was seen: FATAL once owed replies are relayed */
	struct admin_conn *admin;  /* CLIENT_ADMIN: the console's state for it (admin.c owns it) */
	struct pin *pin;           /* session.c: its statement watcher, while a message is split between reads */
	bool pinned;               /* it made session state: keeps its lease while that is left */
	bool pin_lasts;            /* ... state no probe can see: until it leaves */
	bool probe_due;            /* session.c: since the last probe, it may have released its state */
	bool quotes_known, backslash_quotes;  /* session.c: standard_conforming_strings, cached */
	bool prep_on;              /* the prepared-statement layer applies (transaction mode) */
	struct prep_client *prep;  /* its named prepared statements, allocated when first needed */
};

extern struct list login_clients;
extern int client_count;

void client_accept(int fd);
void client_close(struct client *c, const char *reason_fmt, ...) __attribute__((format(printf, 2, 3)));
void client_fatal(struct client *c, const char *sqlstate, const char *message, const char *detail);
void client_set_state(struct client *c, enum client_state state);
void client_welcome(struct client *c);
struct vet_answer;
void client_vetted(struct client *c, const struct vet_answer *answer);
void client_login_refused(struct client *c, const struct vet_answer *answer, const char *sqlstate,
			  const char *message, const char *detail, const char *hint);
void client_leased(struct client *c);
void client_relay_from_server(struct server *s);
void client_relay_to_server(struct server *s);
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

#endif
