/*
 * reset_sql.c — the pure half of reset.c: which statements of a Query text
 * reset settings, the restore that follows each, the rewritten text, and
 * error positions in it mapped back to the client's text.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "reset.h"

/* ---- finding resets (pure) ---- */

static bool starts_ci(const char *text, size_t n, const char *word)
{
	size_t i = 0;

	for (; word[i]; i++)
		if (i >= n || (text[i] | 0x20) != word[i])
			return false;
	return true;
}

bool reset_may_matter(const char *sql, size_t n)
{
	for (size_t i = 0; i + 4 < n; i++) {
		switch (sql[i] | 0x20) {
		case 'r': if (starts_ci(sql + i, n - i, "reset")) return true; break;
		case 'd': if (starts_ci(sql + i, n - i, "discard") || starts_ci(sql + i, n - i, "default")) return true; break;
		case 'l': if (starts_ci(sql + i, n - i, "local")) return true; break;
		}
	}
	return false;
}

/* The first tokens of a statement are enough to tell a reset. */
#define KEPT_TOKENS 12

struct kept {
	uint8_t type;
	bool quoted, truncated;
	char text[SQLLEX_TEXT_MAX + 1];
};

struct planner {
	struct sqllex lx;
	struct reset_plan *plan;
	bool feeding;                /* inside sqllex_feed(): a ';' is at lx.pos */
	size_t n;
	uint32_t depth;              /* parentheses */
	uint8_t ntok;
	struct kept tok[KEPT_TOKENS];
};

static bool is_word(const struct kept *t, const char *word)
{
	return t->type == SQLTOK_WORD && !t->quoted && strcmp(t->text, word) == 0;
}

/* name (. name)* from tok[i]; returns the index after it, 0 when it is not one. */
static uint8_t var_name(const struct planner *p, uint8_t i, char *out)
{
	size_t len = 0;

	for (;;) {
		const struct kept *t = &p->tok[i];
		if (i >= p->ntok || t->type != SQLTOK_WORD || t->truncated)
			return 0;
		size_t w = strlen(t->text);
		if (len + w + 1 > SQLLEX_TEXT_MAX)
			return 0;
		for (size_t k = 0; k < w; k++)
			out[len++] = (char)((t->text[k] >= 'A' && t->text[k] <= 'Z') ? t->text[k] + 32 : t->text[k]);
		out[len] = '\0';
		i++;
		if (i >= p->ntok || p->tok[i].type != SQLTOK_DOT)
			return i;
		out[len++] = '.';
		i++;
	}
}

/* RESET ... */
static bool classify_reset(const struct planner *p, struct reset_stmt *st)
{
	uint8_t n = p->ntok;

	if (n == 2 && is_word(&p->tok[1], "all")) {
		st->kind = RESET_EVERY;
		return true;
	}
	st->kind = RESET_ONE;
	if (n == 3 && is_word(&p->tok[1], "time") && is_word(&p->tok[2], "zone"))
		return strcpy(st->name, "timezone"), true;
	if (n == 3 && is_word(&p->tok[1], "session") && is_word(&p->tok[2], "authorization"))
		return strcpy(st->name, "session_authorization"), true;
	if (n == 4 && is_word(&p->tok[1], "transaction") && is_word(&p->tok[2], "isolation"))
		return strcpy(st->name, "transaction_isolation"), true;
	return var_name(p, 1, st->name) == n;
}

/* SET [SESSION | LOCAL] name {TO | =} DEFAULT, SET [SESSION | LOCAL] TIME ZONE {DEFAULT | LOCAL} */
static bool classify_set(const struct planner *p, struct reset_stmt *st)
{
	uint8_t i = 1, n = p->ntok;

	st->kind = RESET_ONE;
	if (i < n && (is_word(&p->tok[i], "session") || is_word(&p->tok[i], "local"))) {
		st->kind = is_word(&p->tok[i], "local") ? RESET_ONE_LOCAL : RESET_ONE;
		i++;
	}
	if (n == i + 3 && is_word(&p->tok[i], "time") && is_word(&p->tok[i + 1], "zone") &&
	    (is_word(&p->tok[i + 2], "default") || is_word(&p->tok[i + 2], "local")))
		return strcpy(st->name, "timezone"), true;
	uint8_t after = var_name(p, i, st->name);
	if (!after || after + 2 != n)
		return false;
	const struct kept *to = &p->tok[after];
	bool assign = is_word(to, "to") || to->type == SQLTOK_OTHER;   /* '=' is an OTHER token */
	return assign && is_word(&p->tok[after + 1], "default");
}

static bool classify(const struct planner *p, struct reset_stmt *st)
{
	if (p->ntok > KEPT_TOKENS - 1)
		return false;
	if (is_word(&p->tok[0], "reset"))
		return classify_reset(p, st);
	if (is_word(&p->tok[0], "set"))
		return classify_set(p, st);
	if (p->ntok == 2 && is_word(&p->tok[0], "discard") && is_word(&p->tok[1], "all")) {
		st->kind = RESET_DISCARD;
		return true;
	}
	return false;
}

static void statement_end(struct planner *p)
{
	struct reset_plan *plan = p->plan;
	struct reset_stmt st = { 0 };

	if (p->feeding && p->depth)
		plan->unsafe = true;    /* a ';' inside parentheses: a rule's actions, say */
	if (p->ntok == 0)
		return;
	plan->statements++;
	if (classify(p, &st)) {
		if (plan->count == RESET_PLAN_MAX) {
			plan->unsafe = true;
		} else {
			st.semicolon = p->feeding;
			st.end = p->feeding ? (uint32_t)p->lx.pos + 1 : (uint32_t)p->n;
			plan->stmts[plan->count++] = st;
		}
	}
	p->ntok = 0;
	p->depth = 0;
}

static void on_token(void *arg, const struct sqltok *t)
{
	struct planner *p = arg;

	if (t->type == SQLTOK_END)
		return statement_end(p);
	/* BEGIN ATOMIC bodies hold ';'s that do not end the statement. */
	if (t->type == SQLTOK_WORD && !t->quoted && strcmp(t->text, "atomic") == 0)
		p->plan->unsafe = true;
	if (t->type == SQLTOK_LPAREN)
		p->depth++;
	else if (t->type == SQLTOK_RPAREN && p->depth)
		p->depth--;
	if (p->ntok < KEPT_TOKENS) {
		struct kept *k = &p->tok[p->ntok];
		k->type = (uint8_t)t->type;
		k->quoted = t->quoted;
		k->truncated = t->truncated;
		memcpy(k->text, t->text, t->len);
		k->text[t->len] = '\0';
	}
	if (p->ntok < UINT8_MAX)
		p->ntok++;
}

void reset_plan(const char *sql, size_t n, bool backslash_quotes, struct reset_plan *plan)
{
	static struct planner p;

	memset(plan, 0, sizeof(*plan));
	memset(&p, 0, sizeof(p));
	p.plan = plan;
	p.n = n;
	p.lx.backslash_quotes = backslash_quotes;
	sqllex_init(&p.lx, on_token, &p);
	p.feeding = true;
	sqllex_feed(&p.lx, sql, n);
	p.feeding = false;
	if (p.lx.lost)
		plan->unsafe = true;
	sqllex_end(&p.lx);
}

/* ---- the restore and the rewrite (pure) ---- */

/* RESET ALL leaves these alone (GUC_NO_RESET_ALL); DISCARD ALL sets the transaction ones aside. */
static bool kept_by(enum reset_kind kind, const char *name)
{
	static const char *const no_reset_all[] = {
		"role", "session_authorization", "transaction_isolation", "transaction_read_only",
		"transaction_deferrable",
	};
	size_t from = kind == RESET_DISCARD ? 2 : 0;

	for (size_t i = from; i < sizeof(no_reset_all) / sizeof(*no_reset_all); i++)
		if (strcmp(name, no_reset_all[i]) == 0)
			return true;
	return false;
}

/* Does the reset st bring back the startup setting name (the pool's value being different)? */
bool reset_restores(const struct reset_stmt *st, const char *name, const char *value, const struct param_set *base)
{
	const char *pool_value = params_get(base, name);

	if (pool_value && strcmp(pool_value, value) == 0)
		return false;
	if (st->kind == RESET_ONE || st->kind == RESET_ONE_LOCAL)
		return strcasecmp(st->name, name) == 0;
	return !kept_by((enum reset_kind)st->kind, name);
}

void reset_restore_sql(const struct reset_stmt *st, const struct param_set *startup,
		       const struct param_set *base, const char *marker, struct sql_text *out)
{
	int n = 0;

	for (const char *name = params_first(startup); name; name = params_next(startup, name)) {
		if (!reset_restores(st, name, params_value(name), base))
			continue;
		sql_puts(out, n++ ? " || pg_catalog.set_config(" : "SELECT (pg_catalog.set_config(");
		sql_put_quoted(out, name);
		sql_puts(out, ", ");
		sql_put_quoted(out, params_value(name));
		sql_puts(out, st->kind == RESET_ONE_LOCAL ? ", true)" : ", false)");
	}
	if (!n)
		return;
	sql_puts(out, ") IS NULL AS ");
	sql_puts(out, marker);
	sql_puts(out, ";");
}

/* Characters, as PostgreSQL counts them for error positions (UTF-8 assumed). */
static uint32_t chars(const char *s, size_t n)
{
	uint32_t c = 0;

	for (size_t i = 0; i < n; i++)
		c += ((unsigned char)s[i] & 0xc0) != 0x80;
	return c;
}

int reset_rewrite(const char *sql, size_t n, const struct reset_plan *plan, const struct param_set *startup,
		  const struct param_set *base, const char *marker, struct sql_text *out,
		  struct reset_move *moves)
{
	uint32_t from = 0, n_moves = 0, out_chars = 0;

	for (uint32_t i = 0; i < plan->count; i++) {
		const struct reset_stmt *st = &plan->stmts[i];
		struct sql_text restore = { 0 };
		/* DISCARD ALL sharing a Query fails (it cannot run in a transaction block): nothing to follow. */
		if (st->kind == RESET_DISCARD)
			continue;
		reset_restore_sql(st, startup, base, marker, &restore);
		if (restore.failed) {
			sql_text_free(&restore);
			return -1;
		}
		if (restore.len == 0)
			continue;
		sql_put(out, sql + from, st->end - from);
		out_chars += chars(sql + from, st->end - from);
		from = st->end;
		uint32_t before = out->len;
		if (!st->semicolon)
			sql_puts(out, ";");
		sql_put(out, restore.data, restore.len);
		moves[n_moves].at = out_chars;
		moves[n_moves].chars = out->failed ? 0 : chars(out->data + before, out->len - before);
		out_chars += moves[n_moves++].chars;
		sql_text_free(&restore);
	}
	if (n_moves == 0)
		return 0;
	sql_put(out, sql + from, n - from);
	return out->failed || out->len > RESET_TEXT_MAX ? -1 : (int)n_moves;
}

uint32_t reset_fix_position(uint32_t position, const struct reset_move *moves, uint32_t n_moves)
{
	uint32_t at = position - 1, shift = 0;

	if (position == 0)
		return 0;
	for (uint32_t i = 0; i < n_moves; i++) {
		if (at < moves[i].at)
			break;
		if (at < moves[i].at + moves[i].chars)
			return (uint32_t)(moves[i].at - shift + 1);    /* inside pglease's text: where it went in */
		shift += moves[i].chars;
	}
	return position - shift;
}
