/*
 * env.h — what the object model runs in: the one event loop and the
 * running config.
 *
 * The front end (daemon/main.c) sets both before anything else runs; a
 * reload swaps cfg between loop iterations, never inside a handler.
 */
#ifndef PGLEASE_ENV_H
#define PGLEASE_ENV_H

#include <ev.h>

#include "config.h"

extern struct ev_loop *loop;
extern const struct config *cfg;

#endif
