/*
 * listener.h — the sockets clients connect to: the Unix socket and, with
 * listen_addr (or TCP sockets systemd passed), TCP ones.
 *
 *   listener_start()  take the lock file; use the socket systemd passed, else replace a stale one and listen;
 *                     the TCP listeners (systemd's, else listen_addr's); -1 names what failed
 *   listener_stop()   stop accepting, remove the lock and the socket (unless systemd's)
 *   listener_peer_name()  a client's address as text ("127.0.0.1", "::1"; "unix") and port
 *   listener_login_words()  PostgreSQL's 'host "...", user "...", database "...", <encryption>'
 *                       for a refused login ("[local]" for the Unix socket)
 *
 * The socket is <unix_socket_dir>/.s.PGSQL.<listen_port>, PostgreSQL's own
 * naming, so `psql -h DIR -p PORT` finds it. The lock file beside it
 * (".lock" appended) is held with flock() for the life of the process: a
 * second pglease on the same socket is refused, while a socket left by a
 * crashed one (lock free) is replaced.
 */
#ifndef PGLEASE_LISTENER_H
#define PGLEASE_LISTENER_H

#include <stddef.h>

#include "check.h"

struct client;

MUST_CHECK int listener_start(void);
void listener_stop(void);
void listener_peer_name(const struct client *c, char *host, size_t cap, int *port);
void listener_login_words(const struct client *c, const char *user, const char *database, char *out, size_t cap);

#endif
