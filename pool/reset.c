/*
 * reset.c — RESET, RESET ALL, SET ... TO DEFAULT and DISCARD ALL land on the
 * client's startup settings (see reset.h for the design).
 *
 * This is the relay's half: client to backend, then backend to client. The
 * pure half (finding resets, the restore SQL, the rewrite) is reset_sql.c.
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
#include "reset.h"
#include "server.h"
#include "session.h"

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
			if (reset_restores(st, n, params_value(n), &c->pool->base))
				return true;
	}
	return false;
}

enum reset_take reset_client_query(struct client *c, struct server *s, const struct frame_msg *m)
{
	struct reset_relay *r = &s->reset;

	assert(client_server(c) == s && m->type == 'Q');
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

int reset_client_step(struct client *c, struct server *s, const struct frame_msg *m, struct sql_text *body)
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
		sql_text_free(body);
		if (n_moves < 0)
			log_warning("client %u: a Query with RESET could not be rewritten; it runs as sent", c->id);
		return n_moves;
	}
	struct reset_item *it = push_item(s, ITEM_REWRITTEN);
	it->n_moves = (uint8_t)n_moves;
	memcpy(it->moves, moves, sizeof(*moves) * (size_t)n_moves);
	return 0;
}

int reset_followup(struct client *c, struct server *s, struct sql_text *body)
{
	struct reset_stmt discard = { .kind = RESET_DISCARD };

	/* Due only after a DISCARD ALL that completed (ready_for_query()), once. */
	assert(s->reset.followup_due && client_server(c) == s);
	s->reset.followup_due = false;
	reset_restore_sql(&discard, &c->startup, &c->pool->base, marker(), body);
	/* Never empty (the DISCARD ALL was taken because something differs): its ReadyForQuery is owed. */
	if (body->failed || body->len == 0) {
		sql_text_free(body);
		return -1;
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
		restored = v && reset_restores(&discard, name, v, &c->pool->base);
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
		/* A position moved back has no more digits than it had; an empty one would grow: leave it. */
		if (n > vlen)
			return 0;
		assert(w + 2 + n <= sizeof(out));
		out[w++] = code;
		memcpy(out + w, v, n);
		w += (uint32_t)n;
		out[w++] = 0;
		pos += (uint32_t)vlen + 1;
	}
	out[w++] = 0;
	/* As many digits as before (the same length) or fewer: written back either way. */
	assert(w <= len);
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
	assert(r->count > 0);
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
