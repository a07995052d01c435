/*
 * vet.c — a client's startup settings, checked and spelled by PostgreSQL
 * (see vet.h for why). Pure: the caller runs the query and owns the cache.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pin.h"
#include "vet.h"

struct vet_entry {
	struct vet_entry *next;
	struct param_set key;        /* a list: the settings vetted, in order */
	struct vet_answer answer;
};

/* ---- the key ---- */

/* PostgreSQL keeps printable ASCII of up to NAMEDATALEN - 1 bytes as it is (and NAMEDATALEN is 64 or more). */
static bool kept_as_is(const char *value)
{
	size_t n = 0;

	for (const unsigned char *p = (const unsigned char *)value; *p; p++, n++)
		if (*p < 32 || *p > 126 || n >= 63)
			return false;
	return true;
}

static bool is_application_name(const char *name)
{
	return strcasecmp(name, "application_name") == 0;
}

/* Every application_name given is kept as is: then none needs a backend (the last one wins). */
static bool application_names_kept(const struct param_set *sequence)
{
	for (const char *n = params_first(sequence); n; n = params_next(sequence, n))
		if (is_application_name(n) && !kept_as_is(params_value(n)))
			return false;
	return true;
}

int vet_key(const struct param_set *sequence, struct param_set *key)
{
	bool skip_names = application_names_kept(sequence);

	for (const char *n = params_first(sequence); n; n = params_next(sequence, n)) {
		if (skip_names && is_application_name(n))
			continue;
		if (params_append(key, n, params_value(n)) < 0)
			return -1;
	}
	return 0;
}

/* ---- the query and its answer ---- */

/* The reported settings the key touches, as a set (sorted, lower case): the answer's columns, in order. */
static int shown_names(const struct param_set *key, const struct param_set *base, struct param_set *shown)
{
	for (const char *n = params_first(key); n; n = params_next(key, n))
		if (params_get(base, n) && params_put(shown, n, "") < 0)
			return -1;
	return 0;
}

static void add_set_local(struct sql_text *t, const char *name, const char *value)
{
	sql_puts(t, "SELECT pg_catalog.set_config(");
	sql_put_quoted(t, name);
	sql_puts(t, ", ");
	sql_put_quoted(t, value);
	sql_puts(t, ", true);");
}

static void add_show(struct sql_text *t, const struct param_set *shown)
{
	const char *sep = "SELECT ";

	for (const char *n = params_first(shown); n; n = params_next(shown, n)) {
		sql_puts(t, sep);
		sql_puts(t, "pg_catalog.current_setting(");
		sql_put_quoted(t, n);
		sql_puts(t, ")");
		sep = ", ";
	}
	/* Nothing reported among them: the row only says they were all accepted. */
	sql_puts(t, params_first(shown) ? ";" : "SELECT 1;");
}

/*
 * In one Query the statements share one implicit transaction: the local
 * settings hold from one statement to the next, the first error skips the
 * rest, and at its end the backend is as it was (it reports nothing).
 */
char *vet_sql(const struct param_set *key, const struct param_set *base)
{
	struct param_set shown = PARAMS_EMPTY;
	struct sql_text t = { 0 };

	if (shown_names(key, base, &shown) < 0)
		t.failed = true;
	for (const char *n = params_first(&shown); n; n = params_next(&shown, n))
		if (pin_setting_tracked(n, base))
			add_set_local(&t, n, params_get(base, n));
	for (const char *n = params_first(key); n; n = params_next(key, n))
		add_set_local(&t, n, params_value(n));
	add_show(&t, &shown);
	params_free(&shown);
	if (t.failed) {
		sql_text_free(&t);
		return NULL;
	}
	return t.data;
}

int vet_canonical(const struct param_set *key, const struct param_set *base, const PGresult *res,
		  struct vet_answer *answer)
{
	struct param_set shown = PARAMS_EMPTY;
	int col = 0, rc = 0;

	if (shown_names(key, base, &shown) < 0 || !res || PQntuples(res) != 1)
		rc = -1;
	for (const char *n = params_first(&shown); n && rc == 0; n = params_next(&shown, n), col++)
		if (col >= PQnfields(res) || params_put(&answer->canonical, n, PQgetvalue(res, 0, col)) < 0)
			rc = -1;
	params_free(&shown);
	return rc;
}

void vet_answer_free(struct vet_answer *answer)
{
	params_free(&answer->canonical);
	free(answer->notices);
	answer->notices = NULL;
	answer->notices_len = 0;
}

static int answer_copy(struct vet_answer *dst, const struct vet_answer *src)
{
	if (params_copy(&dst->canonical, &src->canonical) < 0)
		return -1;
	if (!src->notices_len)
		return 0;
	if (!(dst->notices = malloc(src->notices_len)))
		return -1;
	memcpy(dst->notices, src->notices, src->notices_len);
	dst->notices_len = src->notices_len;
	return 0;
}

/* ---- the cache ---- */

const struct vet_answer *vet_cache_find(struct vet_cache *cache, const struct param_set *key)
{
	for (struct vet_entry **at = &cache->head; *at; at = &(*at)->next) {
		struct vet_entry *e = *at;
		if (!params_equal(&e->key, key))
			continue;
		*at = e->next;
		e->next = cache->head;
		cache->head = e;
		return &e->answer;
	}
	return NULL;
}

static void entry_free(struct vet_entry *e)
{
	params_free(&e->key);
	vet_answer_free(&e->answer);
	free(e);
}

static void drop_oldest(struct vet_cache *cache)
{
	struct vet_entry **at = &cache->head;

	while (*at && (*at)->next)
		at = &(*at)->next;
	if (*at) {
		entry_free(*at);
		*at = NULL;
		cache->count--;
	}
}

int vet_cache_add(struct vet_cache *cache, const struct param_set *key, const struct vet_answer *answer)
{
	if (key->len > VET_KEY_CACHE_MAX || vet_cache_find(cache, key))
		return 0;
	struct vet_entry *e = calloc(1, sizeof(*e));
	if (!e || params_copy(&e->key, key) < 0 || answer_copy(&e->answer, answer) < 0) {
		if (e)
			entry_free(e);
		return -1;
	}
	e->next = cache->head;
	cache->head = e;
	if (++cache->count > VET_CACHE_MAX)
		drop_oldest(cache);
	return 0;
}

void vet_cache_clear(struct vet_cache *cache)
{
	while (cache->head) {
		struct vet_entry *e = cache->head;
		cache->head = e->next;
		entry_free(e);
	}
	cache->count = 0;
}
