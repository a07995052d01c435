/*
 * authq_cache.c — the pure half of auth_query: the answer read, expiry, the cache.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "authq_cache.h"

/* PostgreSQL's type OIDs (pg_type.dat) for the valuntil column. */
#define OID_TIMESTAMP 1114
#define OID_TIMESTAMPTZ 1184

int authq_read_valuntil(Oid type, const char *bytes, int len, int64_t *valuntil, char *why, size_t cap)
{
	if (type != OID_TIMESTAMPTZ && type != OID_TIMESTAMP) {
		snprintf(why, cap, "auth_query's third column (valuntil) must be a timestamp, not type oid %u", type);
		return -1;
	}
	if (len != 8) {
		snprintf(why, cap, "auth_query's valuntil has %d bytes in binary format, not 8", len);
		return -1;
	}
	/* Big-endian int64 microseconds since 2000-01-01; INT64_MAX is 'infinity', INT64_MIN '-infinity'. */
	uint64_t v = 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | (uint8_t)bytes[i];
	*valuntil = (int64_t)v;
	return 0;
}

bool authq_expired(int64_t valuntil, double unix_now)
{
	if (valuntil == AUTHQ_NEVER)
		return false;
	double now_us = (unix_now - AUTHQ_PG_EPOCH) * 1e6;
	/* PostgreSQL refuses once valuntil < now. */
	return (double)valuntil < now_us;
}

static int read_secret(const PGresult *res, struct authq_row *row, char *why, size_t cap)
{
	if (PQgetisnull(res, 0, 1))
		return 0;
	int len = PQgetlength(res, 0, 1);
	const char *value = PQgetvalue(res, 0, 1);
	if (memchr(value, '\0', (size_t)len)) {
		snprintf(why, cap, "auth_query returned a secret with a NUL byte");
		return -1;
	}
	if (!(row->secret = strndup(value, (size_t)len))) {
		snprintf(why, cap, "out of memory keeping auth_query's answer");
		return -1;
	}
	return 0;
}

int authq_read_result(const PGresult *res, struct authq_row *row, char *why, size_t cap)
{
	*row = (struct authq_row){ .valuntil = AUTHQ_NEVER };
	if (!res || PQresultStatus(res) != PGRES_TUPLES_OK) {
		snprintf(why, cap, "auth_query returned no rows set");
		return -1;
	}
	int cols = PQnfields(res), rows = PQntuples(res);
	if (cols < 2 || cols > 3) {
		snprintf(why, cap, "auth_query must return 2 or 3 columns (usename, passwd[, valuntil]), not %d", cols);
		return -1;
	}
	if (rows > 1) {
		snprintf(why, cap, "auth_query returned %d rows for one user", rows);
		return -1;
	}
	if (rows == 0)
		return 0;
	row->found = true;
	if (cols == 3 && !PQgetisnull(res, 0, 2) &&
	    authq_read_valuntil(PQftype(res, 2), PQgetvalue(res, 0, 2), PQgetlength(res, 0, 2), &row->valuntil,
				why, cap) < 0)
		return -1;
	return read_secret(res, row, why, cap);
}

/* ---- the cache ---- */

static void entry_free(struct authq_entry *e)
{
	if (e->secret) {
		OPENSSL_cleanse(e->secret, strlen(e->secret));
		free(e->secret);
	}
	free(e->dbname);
	free(e->user);
}

static void entry_drop(struct authq_cache *c, int i)
{
	entry_free(&c->entries[i]);
	c->entries[i] = c->entries[--c->count];
}

static int entry_find(const struct authq_cache *c, const char *dbname, const char *user)
{
	for (int i = 0; i < c->count; i++)
		if (strcmp(c->entries[i].user, user) == 0 && strcmp(c->entries[i].dbname, dbname) == 0)
			return i;
	return -1;
}

const struct authq_entry *authq_cache_get(struct authq_cache *c, const char *dbname, const char *user, double now,
					  double ttl)
{
	int i = entry_find(c, dbname, user);

	if (i < 0)
		return NULL;
	/* A clock that went back counts as stale too. */
	if (now - c->entries[i].stored_at >= ttl || now < c->entries[i].stored_at) {
		entry_drop(c, i);
		return NULL;
	}
	return &c->entries[i];
}

static void drop_oldest(struct authq_cache *c)
{
	int oldest = 0;

	for (int i = 1; i < c->count; i++)
		if (c->entries[i].stored_at < c->entries[oldest].stored_at)
			oldest = i;
	entry_drop(c, oldest);
}

static int make_room(struct authq_cache *c)
{
	if (c->count >= AUTHQ_CACHE_MAX)
		drop_oldest(c);
	if (c->count < c->cap)
		return 0;
	int cap = c->cap ? c->cap * 2 : 16;
	struct authq_entry *grown = realloc(c->entries, (size_t)cap * sizeof(*grown));
	if (!grown)
		return -1;
	c->entries = grown;
	c->cap = cap;
	return 0;
}

int authq_cache_put(struct authq_cache *c, const char *dbname, const char *user, const char *secret,
		    int64_t valuntil, double now)
{
	int old = entry_find(c, dbname, user);

	if (old >= 0)
		entry_drop(c, old);
	if (make_room(c) < 0)
		return -1;
	struct authq_entry e = { strdup(dbname), strdup(user), strdup(secret), valuntil, now };
	if (!e.dbname || !e.user || !e.secret) {
		entry_free(&e);
		return -1;
	}
	c->entries[c->count++] = e;
	return 0;
}

void authq_cache_clear(struct authq_cache *c)
{
	while (c->count)
		entry_drop(c, c->count - 1);
	free(c->entries);
	*c = (struct authq_cache){ 0 };
}
