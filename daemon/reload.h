/*
 * reload.h — SIGHUP and the admin console's RELOAD: read the config file
 * again and apply it to the running pools.
 *
 *   reload_apply()    load cfg->path again and swap it in; 0 applied, -1 the old one kept
 *   reload_collect()  free replaced configs that no pool points into any more
 *   reload_free_all() at exit: free every config
 *
 * The swap is atomic: a file with any error is logged (FILE:LINE: ...) and
 * changes nothing. A pool points at its [databases] entry inside a config
 * (pool->db); pools of databases still present are re-pointed at the new
 * entry, while pools left pointing into an old config (removed databases
 * draining, pools retired by a pool_mode change) keep that config alive
 * until they are gone. Everything else reads cfg at the moment of use.
 */
#ifndef PGLEASE_RELOAD_H
#define PGLEASE_RELOAD_H

#include "check.h"

MUST_CHECK int reload_apply(void);
void reload_collect(void);
void reload_free_all(void);

#endif
