/*
 * pause.h — which databases are paused (admin PAUSE and KILL), by name.
 *
 *   pause_add()      pause a database, or all of them ("")
 *   pause_remove()   resume a database, or all of them ("")
 *   pause_covers()   is this database paused (a pool made for it later starts paused)
 *   pause_all()      is everything paused
 *
 * The one record of what is paused: a pool is paused exactly while this set
 * covers its database (pool_paused()). It is kept by name, not per pool,
 * because a paused database's pools may not exist yet or may come and go
 * (a new user, a pool freed when unused, one that replaces a retired pool).
 */
#ifndef PGLEASE_PAUSE_H
#define PGLEASE_PAUSE_H

#include <stdbool.h>

#include "check.h"

MUST_CHECK int pause_add(const char *dbname);
void pause_remove(const char *dbname);
/* Something is paused (the set is not empty): the fast "no" of pool_paused(). Only pause.c writes it. */
extern bool pause_any;

bool pause_covers(const char *dbname);
bool pause_all(void);

#endif
