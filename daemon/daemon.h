/*
 * daemon.h — process-wide state: the loop and the running config.
 */
#ifndef PGLEASE_DAEMON_H
#define PGLEASE_DAEMON_H

#include <ev.h>

#include "config.h"

extern struct ev_loop *loop;
extern const struct config *cfg;

#endif
