/*
 * authq_cache.h — the pure half of auth_query (pool/authq.c): reading the
 * query's answer, account expiry, and the short-lived cache of users found.
 *
 *   authq_read_result()    one PGresult (binary format) -> a row: found or not, secret, valuntil
 *   authq_read_valuntil()  a timestamp[tz] column in binary -> microseconds since 2000-01-01 UTC
 *   authq_expired()        is valuntil past at this moment (evaluated when answering, never when caching)
 *   authq_cache_get() / authq_cache_put() / authq_cache_clear()
 *
 * The query runs with binary results, so valuntil arrives as PostgreSQL's
 * int64 microseconds whatever the session's DateStyle or TimeZone: nothing
 * is parsed from text and no session setting of the pooled backend is
 * changed. Only users found with a secret are cached; a miss never is.
 */
#ifndef PGLEASE_AUTHQ_CACHE_H
#define PGLEASE_AUTHQ_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

#include "check.h"

/* valuntil NULL or 'infinity': the password never expires. '-infinity' is INT64_MIN: always expired. */
#define AUTHQ_NEVER INT64_MAX

/* Seconds from the Unix epoch to PostgreSQL's (2000-01-01 00:00 UTC). */
#define AUTHQ_PG_EPOCH 946684800.0

struct authq_row {
	bool found;          /* the query returned a row */
	char *secret;        /* found: the passwd column (malloc'd), NULL when the role has no password */
	int64_t valuntil;    /* microseconds since 2000-01-01 UTC, or AUTHQ_NEVER */
};

/*
 * 0 with *row filled (free row->secret), or -1 with why set: not a row set,
 * fewer than 2 or more than 3 columns, more than one row, a secret with a
 * NUL byte, a third column that is not a timestamp.
 */
MUST_CHECK int authq_read_result(const PGresult *res, struct authq_row *row, char *why, size_t cap);
MUST_CHECK int authq_read_valuntil(Oid type, const char *bytes, int len, int64_t *valuntil, char *why, size_t cap);
bool authq_expired(int64_t valuntil, double unix_now);

struct authq_entry {
	char *dbname, *user;   /* the database the query ran in, and the user looked up */
	char *secret;
	int64_t valuntil;
	double stored_at;
};

struct authq_cache {
	struct authq_entry *entries;
	int count, cap;
};

/* Entries kept at most; when full the oldest goes. */
#define AUTHQ_CACHE_MAX 4096

/* The entry for (dbname, user) stored less than ttl seconds before now, else NULL (a stale one is dropped). */
const struct authq_entry *authq_cache_get(struct authq_cache *c, const char *dbname, const char *user, double now,
					  double ttl);
/* Replaces any entry for (dbname, user); -1 when out of memory (nothing kept). */
MUST_CHECK int authq_cache_put(struct authq_cache *c, const char *dbname, const char *user, const char *secret,
			       int64_t valuntil, double now);
void authq_cache_clear(struct authq_cache *c);

#endif
