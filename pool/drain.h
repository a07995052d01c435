/*
 * drain.h — ending the clients of a closing pool: its database was removed
 * by a reload, or pglease is shutting down gracefully.
 *
 *   drain_pool()    close the pool: no new leases; clients without a lease leave now
 *   drain_client()  a client of a closing pool is between leases: close it (from relay.c)
 *   drain_logins()  close clients still logging in (shutdown)
 *   drain_sweep()   periodic: close clients whose last reply has gone out since
 *
 * A client is never cut off inside a transaction: clients holding a lease
 * keep it until their transaction ends (transaction mode, and every mode for
 * a removed database) or their session ends (session mode at shutdown). The
 * shutdown timeout, not this module, ends the ones that take too long.
 */
#ifndef PGLEASE_DRAIN_H
#define PGLEASE_DRAIN_H

#include <stdbool.h>

#include "pool.h"

struct client;

void drain_pool(struct pool *p, enum pool_closing how, const char *reason);
bool drain_client(struct client *c);
void drain_logins(const char *message);
void drain_sweep(void);

#endif
