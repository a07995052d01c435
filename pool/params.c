/*
 * params.c — sets of session parameters, and the SQL that applies them.
 *
 * Values are quoted with dollar quotes, never with libpq's escaping: libpq's
 * escaping follows its cached standard_conforming_strings, which goes stale
 * while a connection is driven raw (a client's SET reaches the backend past
 * libpq). What holds for a leased backend is learnt from the wire, never
 * from libpq's cached state (pool/README.md, invariant 3).
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "grow.h"
#include "params.h"

const char *params_first(const struct param_set *s)
{
	return s->len ? s->data : NULL;
}

const char *params_next(const struct param_set *s, const char *name)
{
	const char *value = params_value(name);
	const char *next = value + strlen(value) + 1;
	return next < s->data + s->len ? next : NULL;
}

bool params_valid_name(const char *name)
{
	if (!*name || strlen(name) > 63)
		return false;
	for (const char *p = name; *p; p++)
		if (!isalnum((unsigned char)*p) && *p != '_' && *p != '.')
			return false;
	return true;
}

const char *params_get(const struct param_set *s, const char *name)
{
	for (const char *n = params_first(s); n; n = params_next(s, n))
		if (strcasecmp(n, name) == 0)
			return params_value(n);
	return NULL;
}

/* Where a name sits in sorted order: the entry to insert before, or the end. */
static const char *insert_point(const struct param_set *s, const char *name, bool *found)
{
	*found = false;
	for (const char *n = params_first(s); n; n = params_next(s, n)) {
		int cmp = strcmp(n, name);
		if (cmp >= 0) {
			*found = (cmp == 0);
			return n;
		}
	}
	return s->data + s->len;
}

static size_t entry_size(const char *name)
{
	const char *value = params_value(name);
	return (size_t)(value - name) + strlen(value) + 1;
}

int params_put(struct param_set *s, const char *name, const char *value)
{
	char lower[64];
	size_t nlen = strlen(name);

	if (nlen >= sizeof(lower))
		return -1;
	for (size_t i = 0; i <= nlen; i++)
		lower[i] = (char)tolower((unsigned char)name[i]);
	bool found;
	const char *at = s->data ? insert_point(s, lower, &found) : NULL;
	size_t off = at ? (size_t)(at - s->data) : 0;
	size_t old = (at && found) ? entry_size(at) : 0;
	size_t add = nlen + strlen(value) + 2;
	char *data = malloc(s->len - old + add);
	if (!data)
		return -1;
	if (off)
		memcpy(data, s->data, off);
	memcpy(data + off, lower, nlen + 1);
	memcpy(data + off + nlen + 1, value, strlen(value) + 1);
	if (s->len > off + old)
		memcpy(data + off + add, s->data + off + old, s->len - off - old);
	free(s->data);
	s->data = data;
	s->len = (uint32_t)(s->len - old + add);
	return 0;
}

int params_append(struct param_set *list, const char *name, const char *value)
{
	size_t nlen = strlen(name) + 1, vlen = strlen(value) + 1;
	char *data = realloc(list->data, list->len + nlen + vlen);

	if (!data)
		return -1;
	memcpy(data + list->len, name, nlen);
	memcpy(data + list->len + nlen, value, vlen);
	list->data = data;
	list->len += (uint32_t)(nlen + vlen);
	return 0;
}

bool params_equal(const struct param_set *a, const struct param_set *b)
{
	return a->len == b->len && (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

int params_copy(struct param_set *dst, const struct param_set *src)
{
	char *data = NULL;

	if (src->len) {
		data = malloc(src->len);
		if (!data)
			return -1;
		memcpy(data, src->data, src->len);
	}
	free(dst->data);
	dst->data = data;
	dst->len = src->len;
	return 0;
}

void params_free(struct param_set *s)
{
	free(s->data);
	*s = PARAMS_EMPTY;
}

/*
 * $qN$value$qN$, with the first tag whose closing occurrence is really the
 * first one after the opening (a value ending in "$q" would end it early).
 */
int params_quote(char *out, int cap, const char *value)
{
	char tag[16];

	for (int i = 0; i < 100; i++) {
		int tlen = snprintf(tag, sizeof(tag), "$q%d$", i);
		int n = snprintf(out, cap, "%s%s%s", tag, value, tag);
		if (n < 0 || n >= cap)
			return -1;
		if (strstr(out + tlen, tag) == out + n - tlen)
			return n;
	}
	return -1;
}

/* Append text; -1 once the buffer is full. */
static int append(char *sql, int cap, int len, const char *text)
{
	int n = len < 0 ? -1 : snprintf(sql + len, cap - len, "%s", text);
	return (n < 0 || n >= cap - len) ? -1 : len + n;
}

static int append_quoted(char *sql, int cap, int len, const char *value)
{
	int n = len < 0 ? -1 : params_quote(sql + len, cap - len, value);
	return n < 0 ? -1 : len + n;
}

static int append_set(char *sql, int cap, int len, const char *name, const char *value)
{
	len = append(sql, cap, len, "SELECT pg_catalog.set_config(");
	len = append_quoted(sql, cap, len, name);
	len = append(sql, cap, len, ", ");
	len = append_quoted(sql, cap, len, value);
	return append(sql, cap, len, ", false);");
}

static int append_reset(char *sql, int cap, int len, const char *name)
{
	int n = snprintf(sql + len, cap - len, "RESET \"%s\";", name);
	return (n < 0 || n >= cap - len) ? -1 : len + n;
}

static const char *effective(const struct param_set *s, const struct param_set *base, const char *name)
{
	const char *v = params_get(s, name);
	return v ? v : params_get(base, name);
}

static bool same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

int params_diff_sql(const struct param_set *want, const struct param_set *have,
		    const struct param_set *base, char *sql, int cap)
{
	int len = 0;

	sql[0] = '\0';
	for (const char *n = params_first(want); n && len >= 0; n = params_next(want, n))
		if (!same(params_value(n), effective(have, base, n)))
			len = append_set(sql, cap, len, n, params_value(n));
	for (const char *n = params_first(have); n && len >= 0; n = params_next(have, n)) {
		if (params_get(want, n))
			continue;
		const char *b = params_get(base, n);
		if (b && same(b, params_value(n)))
			continue;
		len = append_reset(sql, cap, len, n);
	}
	return len;
}

/* ---- a growing SQL text ---- */

void sql_put(struct sql_text *t, const char *s, size_t n)
{
	if (t->failed)
		return;
	char *data = grow_bytes(t->data, &t->cap, t->len + n + 1);
	if (!data) {
		t->failed = true;
		return;
	}
	t->data = data;
	memcpy(t->data + t->len, s, n);
	t->len += n;
	t->data[t->len] = '\0';
}

void sql_puts(struct sql_text *t, const char *s)
{
	sql_put(t, s, strlen(s));
}

void sql_put_quoted(struct sql_text *t, const char *value)
{
	size_t cap = strlen(value) + 16;    /* two dollar tags of at most 5 bytes */
	char *quoted = malloc(cap);
	int n = quoted ? params_quote(quoted, (int)cap, value) : -1;

	if (n < 0)
		t->failed = true;
	else
		sql_put(t, quoted, (size_t)n);
	free(quoted);
}

void sql_text_free(struct sql_text *t)
{
	free(t->data);
	*t = (struct sql_text){ 0 };
}
