/*
 * reset.c — RESET, RESET ALL, SET ... TO DEFAULT and DISCARD ALL land on the
 * client's startup settings (see reset.h for the design).
 *
 * Reading order: finding resets in a Query text (pure), the restore SQL and
 * the rewrite (pure), then the relay: client to backend, backend to client.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>
#include <assert.h>

#include "client.h"
#include "log.h"
#include "pin.h"
#include "pool.h"
#include "proto.h"
#include "reset.h"
#include "server.h"
#include "session.h"

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

void reset_text_free(struct reset_text *t)
{
	free(t->data);
	*t = (struct reset_text){ 0 };
}

static void put(struct reset_text *t, const char *s, size_t n)
{
	if (t->failed)
		return;
	if ((size_t)t->len + n + 1 > RESET_TEXT_MAX) {
		t->failed = true;
		return;
	}
	if (t->len + n + 1 > t->cap) {
		uint32_t cap = t->cap ? t->cap : 256;
		while (cap < t->len + n + 1)
			cap *= 2;
		char *d = realloc(t->data, cap);
		if (!d) {
			t->failed = true;
			return;
		}
		t->data = d;
		t->cap = cap;
	}
	memcpy(t->data + t->len, s, n);
	t->len += (uint32_t)n;
	t->data[t->len] = '\0';
}

static void puts_(struct reset_text *t, const char *s)
{
	put(t, s, strlen(s));
}

static void put_quoted(struct reset_text *t, const char *value)
{
	size_t cap = strlen(value) + 32;
	char *buf = malloc(cap);
	int n = buf ? params_quote(buf, (int)cap, value) : -1;

	if (n < 0)
		t->failed = true;
	else
		put(t, buf, (size_t)n);
	free(buf);
}

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
static bool restores(const struct reset_stmt *st, const char *name, const char *value, const struct param_set *base)
{
	const char *pool_value = params_get(base, name);

	if (pool_value && strcmp(pool_value, value) == 0)
		return false;
	if (st->kind == RESET_ONE || st->kind == RESET_ONE_LOCAL)
		return strcasecmp(st->name, name) == 0;
	return !kept_by((enum reset_kind)st->kind, name);
}

void reset_restore_sql(const struct reset_stmt *st, const struct param_set *startup,
		       const struct param_set *base, const char *marker, struct reset_text *out)
{
	int n = 0;

	for (const char *name = params_first(startup); name; name = params_next(startup, name)) {
		if (!restores(st, name, params_value(name), base))
			continue;
		puts_(out, n++ ? " || pg_catalog.set_config(" : "SELECT (pg_catalog.set_config(");
		put_quoted(out, name);
		puts_(out, ", ");
		put_quoted(out, params_value(name));
		puts_(out, st->kind == RESET_ONE_LOCAL ? ", true)" : ", false)");
	}
	if (!n)
		return;
	puts_(out, ") IS NULL AS ");
	puts_(out, marker);
	puts_(out, ";");
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
		  const struct param_set *base, const char *marker, struct reset_text *out,
		  struct reset_move *moves)
{
	uint32_t from = 0, n_moves = 0, out_chars = 0;

	for (uint32_t i = 0; i < plan->count; i++) {
		const struct reset_stmt *st = &plan->stmts[i];
		struct reset_text restore = { 0 };
		/* DISCARD ALL sharing a Query fails (it cannot run in a transaction block): nothing to follow. */
		if (st->kind == RESET_DISCARD)
			continue;
		reset_restore_sql(st, startup, base, marker, &restore);
		if (restore.failed) {
			reset_text_free(&restore);
			return -1;
		}
		if (restore.len == 0)
			continue;
		put(out, sql + from, st->end - from);
		out_chars += chars(sql + from, st->end - from);
		from = st->end;
		uint32_t before = out->len;
		if (!st->semicolon)
			puts_(out, ";");
		put(out, restore.data, restore.len);
		moves[n_moves].at = out_chars;
		moves[n_moves].chars = out->failed ? 0 : chars(out->data + before, out->len - before);
		out_chars += moves[n_moves++].chars;
		reset_text_free(&restore);
	}
	if (n_moves == 0)
		return 0;
	put(out, sql + from, n - from);
	return out->failed ? -1 : (int)n_moves;
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

/* ---- the relay: client to backend ---- */

enum item_kind { ITEM_REWRITTEN, ITEM_DISCARD, ITEM_FOLLOWUP };

/* The column name that marks pglease's restores: a per-process nonce, so no client query hits it. */
static const char *marker(void)
{
	static char name[32];

	if (!name[0]) {
		uint32_t nonce;
		if (getrandom(&nonce, sizeof(nonce), GRND_NONBLOCK) != sizeof(nonce))
			nonce = (uint32_t)random();
		snprintf(name, sizeof(name), "pglease_restore_%08x", nonce);
	}
	return name;
}

/* What reset_client_query() found, for reset_client_step() right after (one loop, one thread). */
static struct reset_plan found;

static bool backslash_quotes(const struct client *c)
{
	const char *v = params_get(&c->params, "standard_conforming_strings");

	if (!v)
		v = params_get(&c->pool->base, "standard_conforming_strings");
	return v && strcmp(v, "off") == 0;
}

static bool discard_alone(const struct reset_plan *plan)
{
	return plan->statements == 1 && plan->count == 1 && plan->stmts[0].kind == RESET_DISCARD;
}

/* Anything to restore at all for this plan? */
static bool plan_restores(const struct client *c, const struct reset_plan *plan)
{
	for (uint32_t i = 0; i < plan->count; i++) {
		const struct reset_stmt *st = &plan->stmts[i];
		if (st->kind == RESET_DISCARD && !discard_alone(plan))
			continue;    /* it will fail: DISCARD ALL cannot run inside a transaction block */
		for (const char *n = params_first(&c->startup); n; n = params_next(&c->startup, n))
			if (restores(st, n, params_value(n), &c->pool->base))
				return true;
	}
	return false;
}

enum reset_take reset_client_query(struct client *c, struct server *s, const struct frame_msg *m)
{
	struct reset_relay *r = &s->reset;

	if (!m->body || !c->startup.len)
		return RESET_PASS;
	size_t n = strnlen((const char *)m->body, m->len - 4);
	if (!reset_may_matter((const char *)m->body, n))
		return RESET_PASS;
	reset_plan((const char *)m->body, n, backslash_quotes(c), &found);
	if (found.unsafe || !found.count || !plan_restores(c, &found))
		return RESET_PASS;
	if (r->count == RESET_INFLIGHT_MAX && !s->stream.copy_in) {
		/* No room to follow another: the client's input waits for a reply, then is scanned again. */
		r->full = true;
		return RESET_WAIT;
	}
	if (r->count == RESET_INFLIGHT_MAX)
		return RESET_PASS;
	r->stopped = true;
	return RESET_TAKE;
}

static struct reset_item *push_item(struct server *s, enum item_kind kind)
{
	struct reset_relay *r = &s->reset;

	assert(r->count < RESET_INFLIGHT_MAX);
	struct reset_item *it = &r->items[r->count++];
	memset(it, 0, sizeof(*it));
	it->kind = (uint8_t)kind;
	/* The request about to be accounted adds one. */
	it->z_left = s->stream.owed_z + 1;
	return it;
}

int reset_client_step(struct client *c, struct server *s, const struct frame_msg *m, struct reset_text *body)
{
	struct reset_relay *r = &s->reset;

	assert(r->stopped && r->count < RESET_INFLIGHT_MAX);
	r->stopped = false;
	if (discard_alone(&found)) {
		push_item(s, ITEM_DISCARD);
		r->discard_ok = false;
		r->hold = true;
		return 0;
	}
	struct reset_move moves[RESET_PLAN_MAX];
	int n_moves = reset_rewrite((const char *)m->body, strnlen((const char *)m->body, m->len - 4), &found,
				    &c->startup, &c->pool->base, marker(), body, moves);
	if (n_moves <= 0) {
		reset_text_free(body);
		if (n_moves < 0)
			log_warning("client %u: a Query with RESET could not be rewritten; it runs as sent", c->id);
		return n_moves;
	}
	struct reset_item *it = push_item(s, ITEM_REWRITTEN);
	it->n_moves = (uint8_t)n_moves;
	memcpy(it->moves, moves, sizeof(*moves) * (size_t)n_moves);
	return 0;
}

int reset_followup(struct client *c, struct server *s, struct reset_text *body)
{
	struct reset_stmt discard = { .kind = RESET_DISCARD };

	s->reset.followup_due = false;
	reset_restore_sql(&discard, &c->startup, &c->pool->base, marker(), body);
	if (body->failed || body->len == 0) {
		bool failed = body->failed;
		reset_text_free(body);
		s->reset.hold = false;
		return failed ? -1 : 0;
	}
	push_item(s, ITEM_FOLLOWUP);
	return 0;
}

/* ---- the relay: backend to client ---- */

static bool whole(const struct frame_msg *m)
{
	return m->body || m->len == 4;
}

static uint32_t cut_all(const struct frame_msg *m)
{
	return whole(m) ? 1 + m->len : 0;
}

/* The client's own view of a reported setting: what it was last told. */
static const char *client_sees(const struct client *c, const char *name)
{
	const char *v = params_get(&c->params, name);

	return v ? v : params_get(&c->pool->base, name);
}

static uint32_t param_status(struct client *c, struct server *s, const struct frame_msg *m, bool hide_restored)
{
	const char *name = (const char *)m->body, *value;

	if (!session_param_split(m, &value) || !pin_setting_tracked(name, NULL)) {
		session_param_status(c, s, m, true);
		return 0;
	}
	const char *seen = client_sees(c, name);
	bool restored = false;
	if (hide_restored) {
		/* DISCARD ALL's own reports of settings the follow-up is about to restore. */
		struct reset_stmt discard = { .kind = RESET_DISCARD };
		const char *v = params_get(&c->startup, name);
		restored = v && restores(&discard, name, v, &c->pool->base);
	}
	bool hide = restored || (seen && strcmp(seen, value) == 0);
	session_param_status(c, s, m, !hide);
	return hide ? cut_all(m) : 0;
}

/* The client's error position, rewritten in place; returns the bytes the message shrank by. */
static uint32_t fix_error_position(const struct frame_msg *m, const struct reset_item *it)
{
	uint8_t *msg = (uint8_t *)m->body - 5;
	uint32_t len = m->len - 4, pos = 0;
	uint8_t out[FRAME_WHOLE_MAX];
	uint32_t w = 0;

	for (;;) {
		if (pos >= len)
			return 0;    /* not terminated: leave it */
		uint8_t code = m->body[pos++];
		if (code == 0)
			break;
		const char *v = (const char *)m->body + pos;
		size_t vlen = strnlen(v, len - pos);
		if (pos + vlen >= len)
			return 0;
		char fixed[16];
		if (code == 'P') {
			snprintf(fixed, sizeof(fixed), "%u", reset_fix_position((uint32_t)strtoul(v, NULL, 10),
										    it->moves, it->n_moves));
			v = fixed;
		}
		size_t n = code == 'P' ? strlen(fixed) : vlen;
		out[w++] = code;
		memcpy(out + w, v, n);
		w += (uint32_t)n;
		out[w++] = 0;
		pos += (uint32_t)vlen + 1;
	}
	out[w++] = 0;
	if (w >= len)
		return 0;
	msg[1] = (uint8_t)((w + 4) >> 24);
	msg[2] = (uint8_t)((w + 4) >> 16);
	msg[3] = (uint8_t)((w + 4) >> 8);
	msg[4] = (uint8_t)(w + 4);
	memcpy(msg + 5, out, w);
	return len - w;
}

static bool is_marker(const struct frame_msg *m)
{
	const char *name = marker();

	/* RowDescription: int16 count, then the first column's name. */
	return m->body && m->len - 4 > 2 + strlen(name) && m->body[0] == 0 && m->body[1] >= 1 &&
	       strncmp((const char *)m->body + 2, name, strlen(name) + 1) == 0;
}

/* Replies to a rewritten Query: pglease's restore statements are cut. */
static uint32_t rewritten_reply(struct server *s, const struct frame_msg *m, const struct reset_item *it)
{
	struct reset_relay *r = &s->reset;

	if (m->type == 'T' && is_marker(m)) {
		r->in_marker = true;
		return cut_all(m);
	}
	if (m->type == 'E' || m->type == 'N') {
		if (m->type == 'E')
			r->in_marker = false;
		if (!whole(m) || m->len - 4 > FRAME_WHOLE_MAX)
			return 0;
		return r->in_marker && m->type == 'N' ? cut_all(m) : fix_error_position(m, it);
	}
	if (!r->in_marker)
		return 0;
	if (m->type == 'C')
		r->in_marker = false;
	return m->type == 'D' || m->type == 'C' ? cut_all(m) : 0;
}

/* Replies to DISCARD ALL's follow-up: hidden, but for settings reports and a failure after a DISCARD ALL that ran. */
static uint32_t followup_reply(struct client *c, struct server *s, const struct frame_msg *m)
{
	if (m->type == 'E' && s->reset.discard_ok) {
		log_warning("client %u: restoring its startup settings after DISCARD ALL failed", c->id);
		s->settings_unknown = true;
		return 0;
	}
	return strchr("TDCENI", m->type) ? cut_all(m) : 0;
}

static void pop_item(struct reset_relay *r)
{
	memmove(&r->items[0], &r->items[1], sizeof(r->items[0]) * (size_t)(r->count - 1));
	r->count--;
}

static uint32_t ready_for_query(struct server *s, const struct frame_msg *m)
{
	struct reset_relay *r = &s->reset;
	uint32_t cut = 0;

	r->in_marker = false;
	if (r->count && r->items[0].z_left == 1 && r->items[0].kind != ITEM_REWRITTEN) {
		if (r->items[0].kind == ITEM_DISCARD && r->discard_ok) {
			/* The follow-up's ReadyForQuery will stand for this one. */
			r->followup_due = r->kick = true;
			cut = cut_all(m);
			if (cut && s->stream.counts && s->stream.txstatus == 'I')
				s->stream.counts->xacts--;
		} else {
			r->hold = r->discard_ok = false;
			r->kick = true;
		}
	}
	for (uint8_t i = 0; i < r->count; i++)
		r->items[i].z_left--;
	while (r->count && r->items[0].z_left == 0)
		pop_item(r);
	/* Nothing owed: nothing of pglease's can still be on its way. */
	if (s->stream.owed_z == 0)
		r->count = 0;
	if (r->full && r->count < RESET_INFLIGHT_MAX)
		r->full = false, r->kick = true;
	return cut;
}

uint32_t reset_server_msg(struct client *c, struct server *s, const struct frame_msg *m)
{
	struct reset_relay *r = &s->reset;
	const struct reset_item *it = r->count && r->items[0].z_left == 1 ? &r->items[0] : NULL;

	if (!c)
		return 0;
	if (m->type == 'S') {
		if (!r->count) {
			session_param_status(c, s, m, true);
			return 0;
		}
		return param_status(c, s, m, it && it->kind == ITEM_DISCARD && r->discard_ok);
	}
	if (!r->count)
		return 0;
	if (m->type == 'Z')
		return ready_for_query(s, m);
	if ((m->type == 'G' || m->type == 'W') && r->full) {
		r->full = false;    /* the backend waits for COPY data: let the client's input go */
		r->kick = true;
		return 0;
	}
	if (!it)
		return 0;
	switch (it->kind) {
	case ITEM_REWRITTEN:
		return rewritten_reply(s, m, it);
	case ITEM_DISCARD:
		if (m->type == 'C' && m->body && strcmp((const char *)m->body, "DISCARD ALL") == 0)
			r->discard_ok = true;
		return 0;
	default:
		return followup_reply(c, s, m);
	}
}
