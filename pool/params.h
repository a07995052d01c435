/*
 * params.h — sets of session parameters (GUC name -> value).
 *
 *   params_put()       add or replace one setting
 *   params_append()    add one to an ordered list (see below)
 *   params_get()       look one up
 *   params_equal()     same settings?
 *   params_copy()      replace a set by a copy of another
 *   params_diff_sql()  the SQL that turns a backend's settings into a client's
 *   params_quote()     a value as a literal that needs no escaping
 *   sql_put*()         a growing SQL text, with quoted values
 *   params_free()
 *
 * A set is one packed allocation "name\0value\0..." sorted by name, with
 * names lower-cased as PostgreSQL treats them: cheap to keep per idle client
 * and cheap to compare on every lease.
 *
 * The same packing also holds an ordered *list* of settings, as a client gave
 * them, duplicates and names' case kept (params_append()): on a list only
 * params_first()/params_next() apply, never the set functions.
 */
#ifndef PGLEASE_PARAMS_H
#define PGLEASE_PARAMS_H

#include <stdbool.h>
#include <stdint.h>

#include "check.h"

struct param_set {
	char *data;
	uint32_t len;
};

#define PARAMS_EMPTY ((struct param_set){ NULL, 0 })

/* Iterate: for (const char *n = params_first(s); n; n = params_next(s, n)) */
const char *params_first(const struct param_set *s);
const char *params_next(const struct param_set *s, const char *name);
static inline const char *params_value(const char *name)
{
	while (*name)
		name++;
	return name + 1;
}

bool params_valid_name(const char *name);
MUST_CHECK int params_put(struct param_set *s, const char *name, const char *value);
MUST_CHECK int params_append(struct param_set *list, const char *name, const char *value);
const char *params_get(const struct param_set *s, const char *name);
bool params_equal(const struct param_set *a, const struct param_set *b);
MUST_CHECK int params_copy(struct param_set *dst, const struct param_set *src);
void params_free(struct param_set *s);

/* value as a dollar-quoted literal into out (NUL-terminated); its length, or -1 if it does not fit. */
MUST_CHECK int params_quote(char *out, int cap, const char *value);

/* A growing NUL-terminated SQL text; once out of memory it keeps failed set and stops growing. */
struct sql_text {
	char *data;
	size_t len, cap;
	bool failed;
};
void sql_put(struct sql_text *t, const char *s, size_t n);
void sql_puts(struct sql_text *t, const char *s);
/* value as a literal (params_quote()) */
void sql_put_quoted(struct sql_text *t, const char *value);
void sql_text_free(struct sql_text *t);

/*
 * Append to sql (at most cap bytes, NUL-terminated) the statements that make
 * a backend whose pglease-applied settings are `have` look like `want`.
 * `base` holds the backend's own startup values: a wanted value equal to the
 * base needs no statement, a setting dropped from `want` is RESET. Returns
 * the length written, or -1 when it does not fit or a value cannot be quoted.
 */
MUST_CHECK int params_diff_sql(const struct param_set *want, const struct param_set *have,
		    const struct param_set *base, char *sql, int cap);

#endif
