/*
 * session.h — a client's session state across the backends it leases.
 *
 *   session_client_sends()  bytes on their way to the backend: may pin the client
 *   session_param_status()  a ParameterStatus from the leased backend: track it
 *   session_param_split()   ... its value, if it is well formed
 *   session_backend_error() an ErrorResponse from the leased backend: a pin may be gone
 *   session_probe_due()     a pinned client may have released its state: probe at the next boundary
 *   session_probe()         a probe starts: the SQL that finds session state left on the backend
 *   session_probed()        its answer: unpin (true) or stay pinned
 *   session_unpin()         the pinned client's lease ends: the backend needs a reset
 *   session_setup_sql()     the SQL that gives a backend this client's settings
 *   session_free()          the client is freed
 *
 * Reported settings a client changes follow it to its next backend
 * (params_diff_sql at lease grant); state that cannot follow pins the client
 * to its backend in transaction mode, when session_state = pin (pin.h).
 * A pin of state a query can see is lifted as soon as a probe finds none of
 * it left (see pool/README.md, "Session state in transaction mode").
 */
#ifndef PGLEASE_SESSION_H
#define PGLEASE_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "check.h"
#include "frame.h"

struct client;
struct server;

/* The relay needs these backend messages whole: 'Z' for the lease, 'S' to track settings. */
#define SESSION_SERVER_WHOLE "ZS"

void session_client_sends(struct client *c, const uint8_t *data, size_t n);
/* Whole messages that the watcher would neither pin on nor take for a RESET. */
bool session_inert(struct client *c, const uint8_t *data, size_t n);
/* to_client: the message reaches the client (else only the backend's applied settings change). */
void session_param_status(struct client *c, struct server *s, const struct frame_msg *m, bool to_client);
/* A well-formed ParameterStatus body: its value (the name is m->body). */
bool session_param_split(const struct frame_msg *m, const char **value);
void session_backend_error(struct client *c);
bool session_probe_due(const struct client *c);
const char *session_probe(struct client *c);
/* error: the probe failed (the client stays pinned); else state_left says what it found. */
bool session_probed(struct client *c, struct server *s, const char *error, bool state_left);
bool session_unpin(struct client *c, struct server *s);
/* Appends at most cap bytes to sql; returns the length, 0 for nothing to do, -1 if it does not fit. */
MUST_CHECK int session_setup_sql(struct client *c, struct server *s, char *sql, int cap);
void session_free(struct client *c);

#endif
