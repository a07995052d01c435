/*
 * vet.h — a client's startup settings, checked and spelled by PostgreSQL.
 *
 *   vet_key()          the settings PostgreSQL must see before the login is answered
 *   vet_sql()          the query that makes a backend check them and show the reported ones
 *   vet_canonical()    the reported settings' values, read from that query's answer
 *   vet_answer_free()
 *   vet_cache_find() / vet_cache_add() / vet_cache_clear()  per pool: key -> values already learnt
 *
 * A direct connection applies the startup settings in order (options, then
 * keys), fails the login on the first bad one, and reports each reported
 * setting as PostgreSQL spells it ("ISO, DMY" for "iso,dmy", "Asia/Tokyo"
 * for "asia/tokyo", "UTF8" for "utf8", a DateStyle part merged into the
 * one before it). Only PostgreSQL knows those rules, so a backend is asked:
 * once per distinct list of settings per pool, then the answer is cached.
 * An application_name of printable ASCII up to 63 bytes is left out: it is
 * the one setting most clients send, it differs per client, and PostgreSQL
 * keeps such a value as it is.
 */
#ifndef PGLEASE_VET_H
#define PGLEASE_VET_H

#include <libpq-fe.h>

#include "check.h"
#include "params.h"

struct vet_entry;

/* What PostgreSQL made of a list of startup settings. */
struct vet_answer {
	struct param_set canonical;  /* the reported settings' values after them, as PostgreSQL shows them */
	uint8_t *notices;            /* NoticeResponse messages they raised (a truncated application_name) */
	uint32_t notices_len;
};

struct vet_cache {
	struct vet_entry *head;   /* most recently used first */
	int count;
};

/* Entries a pool keeps, and the longest key it keeps (a longer one is asked about every time). */
#define VET_CACHE_MAX 64
#define VET_KEY_CACHE_MAX 2048

/*
 * *key (empty on entry) gets the list of the client's settings (`sequence`,
 * in PostgreSQL's order) that a backend must check; empty when there are
 * none. 0, or -1 out of memory.
 */
MUST_CHECK int vet_key(const struct param_set *sequence, struct param_set *key);

/*
 * One Query: each setting of `key` that is reported (`base` has it) is
 * first put back to the pool's own value, so a DateStyle part merges into
 * the server's default as at a direct login; then the client's settings in
 * order, with set_config(…, true), so the backend is unchanged afterwards;
 * then one row with the reported ones' values. malloc'd, NULL out of memory.
 */
MUST_CHECK char *vet_sql(const struct param_set *key, const struct param_set *base);

/* answer->canonical (empty on entry) gets the reported settings' values from vet_sql()'s row: 0, or -1. */
MUST_CHECK int vet_canonical(const struct param_set *key, const struct param_set *base, const PGresult *res,
		  struct vet_answer *answer);
void vet_answer_free(struct vet_answer *answer);

/* The answer learnt for this key, or NULL; a hit becomes the most recently used. */
const struct vet_answer *vet_cache_find(struct vet_cache *cache, const struct param_set *key);
/* Remember it (the least recently used entry goes past VET_CACHE_MAX); 0, or -1 out of memory. */
MUST_CHECK int vet_cache_add(struct vet_cache *cache, const struct param_set *key, const struct vet_answer *answer);
void vet_cache_clear(struct vet_cache *cache);

#endif
