/*
 * grow.h — the one way a growing byte buffer makes room.
 *
 *   grow_bytes()  room for `need` bytes in data (capacity *cap), doubling
 *
 * The SQL texts (pool/params.c), the console's replies (daemon/admin_reply.c),
 * the metrics page (pool/stats.c) and the prepared-statement layer's bytes in
 * flight (pool/rewrite.c) each keep their own struct and failure flag; they
 * share how the memory grows.
 */
#ifndef PGLEASE_GROW_H
#define PGLEASE_GROW_H

#include <stddef.h>

#include "check.h"

/*
 * The buffer to use from now on: data itself when it already holds `need`
 * bytes, else a larger copy (*cap updated). NULL when out of memory: then
 * data and *cap are unchanged and still the caller's.
 */
MUST_CHECK void *grow_bytes(void *data, size_t *cap, size_t need);

#endif
