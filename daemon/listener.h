/*
 * listener.h — the Unix socket clients connect to.
 *
 *   listener_start()  take the lock file; use the socket systemd passed, else replace a stale one and listen
 *   listener_stop()   stop accepting, remove the lock and the socket (unless systemd's)
 *
 * The socket is <unix_socket_dir>/.s.PGSQL.<listen_port>, PostgreSQL's own
 * naming, so `psql -h DIR -p PORT` finds it. The lock file beside it
 * (".lock" appended) is held with flock() for the life of the process: a
 * second pglease on the same socket is refused, while a socket left by a
 * crashed one (lock free) is replaced.
 */
#ifndef PGLEASE_LISTENER_H
#define PGLEASE_LISTENER_H

#include "check.h"

MUST_CHECK int listener_start(void);
void listener_stop(void);

#endif
