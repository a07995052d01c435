/*
 * env.c — the loop and the running config (env.h). Defined here, below the
 * front end, so that the object model and its unit tests link without it.
 */
#include "env.h"

struct ev_loop *loop;
const struct config *cfg;
