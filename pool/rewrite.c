/*
 * rewrite.c — named prepared statements on the transaction-mode relay.
 *
 * Client to backend: the frame scan stops before every Parse, Bind,
 * Describe and Close (prep_client_msg). prep_client_step() looks at the
 * names at the start of the body, in the client's buffer:
 *   - unnamed, or a name the client never prepared: passed through untouched;
 *   - Bind/Describe of a known name: header and names rewritten to pgl_<id>,
 *     the rest of the body (which may be 50 MB) passes raw afterwards; if
 *     the backend lacks the statement (or its Parse, in an earlier Sync
 *     segment, may yet be skipped), Close + Parse pgl_<id> go first;
 *   - named Parse: accumulated whole (it may exceed the buffer), registered,
 *     and sent as Parse pgl_<id> — or, when the backend already has that
 *     statement, as a Close of a name that never exists, whose
 *     CloseComplete becomes the client's ParseComplete;
 *   - Close of a known name: dropped from the registry, sent as that same
 *     harmless Close, so CloseComplete comes from the backend in its place.
 * Rewritten bytes go to pc->tx, which is always sent before the client's
 * remaining raw bytes, so order is kept. A message naming a statement whose
 * Parse/Close/DEALLOCATE in an earlier Sync segment is unanswered waits
 * (held) for that segment's ReadyForQuery: what it means depends on it.
 *
 * Backend to client: prep_scan_from_server() frames with the reply queue
 * (prepared.c): pglease's own ParseComplete/CloseComplete are cut out of the
 * buffer, fake ones get their type byte changed, and each ReadyForQuery
 * undoes what skipped requests assumed. Because the backend produces every
 * reply itself, an error makes it skip pglease's messages exactly like the
 * client's: nothing invented is ever sent for a skipped message.
 */
#include <assert.h>
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "client.h"
#include "env.h"
#include "log.h"
#include "pool.h"
#include "proto.h"
#include "reset.h"
#include "rewrite.h"
#include "server.h"
#include "session.h"

/* A statement name pglease never prepares: Close of it is a no-op that still answers. */
#define NEVER_NAME "pgl_none"

/* ---- per-client and per-backend state ---- */

/* Clients that never name a statement hold none of this between transactions. */
static struct prep_client *client_prep(struct client *c)
{
	if (!c->prep)
		c->prep = calloc(1, sizeof(struct prep_client));
	return c->prep;
}

/* The client's lease: what this layer has in flight lives as long as it. */
static struct prep_lease *lease_prep(struct client *c)
{
	assert(c->lease);
	return &c->lease->prep;
}

void prep_lease_free(struct prep_lease *pl)
{
	free(pl->parse);
	free(pl->tx);
	*pl = (struct prep_lease){ 0 };
}

void prep_client_free(struct prep_client *pc)
{
	if (!pc)
		return;
	preg_free(&pc->reg);
	free(pc);
}

static struct prep_server *server_prep(struct server *s)
{
	if (!s->prep)
		s->prep = calloc(1, sizeof(struct prep_server));
	return s->prep;
}

void prep_server_free(struct server *s)
{
	if (!s->prep)
		return;
	pq_free(&s->prep->q, &s->prep->cache);
	pcache_clear(&s->prep->cache);
	free(s->prep);
	s->prep = NULL;
}

void prep_server_forget(struct server *s)
{
	if (s->prep)
		pcache_clear(&s->prep->cache);
}

void prep_lease_end(struct client *c, struct server *s)
{
	prep_lease_free(lease_prep(c));
	if (c->prep && c->prep->reg.count == 0) {
		prep_client_free(c->prep);
		c->prep = NULL;
	}
	if (s->prep)
		pq_clear(&s->prep->q, &s->prep->cache);
}

bool prep_busy(const struct client *c)
{
	const struct prep_lease *pl = &c->lease->prep;

	return prep_tx_pending(pl) || pl->parse || pl->held;
}

/* ---- building bytes for the backend ---- */

static int tx_reserve(struct prep_lease *pc, size_t more)
{
	if (pc->tx_sent == pc->tx_len)
		pc->tx_len = pc->tx_sent = 0;
	if ((size_t)pc->tx_len + more <= pc->tx_cap)
		return 0;
	if ((size_t)pc->tx_len + more > FRAME_MAX_LEN + (size_t)IOBUF_SIZE * 4)
		return -1;
	size_t cap = pc->tx_cap;
	uint8_t *tx = grow_bytes(pc->tx, &cap, (size_t)pc->tx_len + more);
	if (!tx)
		return -1;
	pc->tx = tx;
	pc->tx_cap = (uint32_t)cap;
	return 0;
}

static void tx_put(struct prep_lease *pc, const void *p, size_t n)
{
	/* tx_reserve() made room first. */
	assert((size_t)pc->tx_len + n <= pc->tx_cap);
	memcpy(pc->tx + pc->tx_len, p, n);
	pc->tx_len += (uint32_t)n;
}

static void tx_header(struct prep_lease *pc, char type, uint32_t body_len)
{
	uint8_t h[5] = { (uint8_t)type, (uint8_t)((body_len + 4) >> 24), (uint8_t)((body_len + 4) >> 16),
			 (uint8_t)((body_len + 4) >> 8), (uint8_t)(body_len + 4) };
	tx_put(pc, h, 5);
}

/* Close 'S' name, the reply of which the queue decides about. */
static int tx_close(struct prep_lease *pc, const char *name)
{
	size_t n = strlen(name) + 1;

	if (tx_reserve(pc, 6 + n) < 0)
		return -1;
	tx_header(pc, 'C', (uint32_t)(1 + n));
	tx_put(pc, "S", 1);
	tx_put(pc, name, n);
	return 0;
}

/* Parse name + key (query, types). */
static int tx_parse(struct prep_lease *pc, const char *name, const uint8_t *key, uint32_t key_len)
{
	size_t n = strlen(name) + 1;

	if (tx_reserve(pc, 5 + n + key_len) < 0)
		return -1;
	tx_header(pc, 'P', (uint32_t)(n + key_len));
	tx_put(pc, name, n);
	tx_put(pc, key, key_len);
	return 0;
}

/* The client's framed, unsent bytes precede anything appended after them. */
static int spill_unsent(struct prep_lease *pc, struct iobuf *in)
{
	uint32_t n = iobuf_unsent(in);

	if (!n)
		return 0;
	if (tx_reserve(pc, n) < 0)
		return -1;
	tx_put(pc, in->data + in->start, n);
	in->start = in->scanned;
	return 0;
}

int prep_tx_send(struct client *c, struct server *s)
{
	struct prep_lease *pc = lease_prep(c);

	assert(prep_tx_pending(pc) && client_server(c) == s);
	if (c->in && spill_unsent(pc, c->in) < 0)
		return -1;
	ssize_t n = server_send_raw(s, pc->tx + pc->tx_sent, pc->tx_len - pc->tx_sent);
	if (n < 0)
		return -1;
	pc->tx_sent += (uint32_t)n;
	c->pool->stats.bytes_received += (uint64_t)n;
	return 0;
}

int prep_tx_message(struct client *c, char type, const void *body, uint32_t len)
{
	struct prep_lease *pc = lease_prep(c);

	if ((c->in && spill_unsent(pc, c->in) < 0) || tx_reserve(pc, 5 + (size_t)len) < 0)
		return -1;
	tx_header(pc, type, len);
	tx_put(pc, body, len);
	return 0;
}

/* ---- the backend's cache, as the rewriting sees it ---- */

static int queue_for(struct server *s, enum pq_kind kind, struct pstmt *st, const char *name, uint64_t born)
{
	struct prep_server *ps = server_prep(s);

	return ps ? pq_push(&ps->q, kind, st, name, born) : -1;
}

static int queue(struct server *s, enum pq_kind kind, struct pstmt *st, const char *name)
{
	return queue_for(s, kind, st, name, 0);
}

/* A Query or FunctionCall: behind unsynced extended messages its ReadyForQuery may never come. */
static int queue_query_boundary(struct server *s)
{
	if (queue(s, PQ_BOUNDARY, NULL, NULL) < 0)
		return -1;
	if (s->stream.unsynced)
		s->prep->unsure_until = s->prep->q.segments;
	return 0;
}

static int evict_for(struct client *c, struct server *s, const struct pstmt *keep)
{
	struct pcache *cache = &s->prep->cache;
	uint32_t max = cfg->max_prepared_statements > 0 ? (uint32_t)cfg->max_prepared_statements : 1;
	struct pcache_entry *v;

	while (cache->n >= max && (v = pcache_victim(cache, keep))) {
		if (tx_close(lease_prep(c), v->st->name) < 0 || queue(s, PQ_CLOSE_INJECTED, NULL, NULL) < 0)
			return -1;
		log_debug("server %d: evicting prepared statement %s", s->id, v->st->name);
		pcache_drop(cache, v->st);
	}
	return 0;
}

/* A new cache entry for st, once the backend has room for it (the victims' Closes go out first). */
static struct pcache_entry *cache_add(struct client *c, struct server *s, struct pstmt *st)
{
	return evict_for(c, s, st) < 0 ? NULL : pcache_add(&s->prep->cache, st);
}

/*
 * Close + Parse of e's server-side name, the way pglease sends every Parse:
 * should the cache be wrong about a statement being gone, the Parse still
 * works; and a second one for the same entry, in a later Sync segment, is
 * harmless if the first ran.
 */
static int tx_close_parse(struct client *c, struct server *s, struct pcache_entry *e, const uint8_t *key,
			  uint32_t key_len, enum pq_kind kind, const char *name)
{
	struct pq *q = &s->prep->q;

	if (tx_close(lease_prep(c), e->st->name) < 0 || pq_push_close(q, e) < 0 ||
	    tx_parse(lease_prep(c), e->st->name, key, key_len) < 0)
		return -1;
	return pq_push_parse(q, kind, e, name);
}

/*
 * Make sure the backend has st before the message about to go out uses it.
 * A Parse for it still unanswered in an earlier Sync segment may be skipped
 * after an error there, while this segment runs: then it gets its own.
 */
static int ensure_prepared(struct client *c, struct server *s, struct pstmt *st)
{
	struct prep_server *ps = server_prep(s);
	struct pcache_entry *e = ps ? pcache_find(&ps->cache, st) : NULL;

	if (!ps)
		return -1;
	if (e)
		pcache_touch(&ps->cache, e);
	if (e && pcache_usable(e, &ps->q))
		return 0;
	log_debug("server %d: preparing %s for client %u%s", s->id, st->name, c->id,
		  e ? " (again: its Parse in an earlier segment may be skipped)" : "");
	if (!e && !(e = cache_add(c, s, st)))
		return -1;
	return tx_close_parse(c, s, e, st->key, st->key_len, PQ_PARSE_INJECTED, NULL);
}

/* Every ReadyForQuery owed will come without more client input. */
static bool may_hold(const struct server *s)
{
	return !s->stream.copy_in && s->prep->q.answered >= s->prep->unsure_until;
}

/*
 * A message about the client's statement name waits while a request about
 * that name in an earlier Sync segment is unanswered: whether that one ran
 * decides what this one means, as PostgreSQL skips the rest of a segment
 * after an error. The segment's ReadyForQuery lets it go (prep_take_kick()).
 * Not in COPY FROM STDIN, whose ReadyForQuery needs more client input.
 */
static bool must_wait(struct client *c, struct server *s, const char *name)
{
	struct prep_server *ps = s->prep;

	if (!ps || !ps->q.named_closed || !may_hold(s) || !pq_name_unsettled(&ps->q, name))
		return false;
	log_debug("client %u: statement %s waits for an earlier segment's outcome", c->id, name);
	lease_prep(c)->held = true;
	return true;
}

/* The client's names or requests about them in flight: a message may concern them. */
static bool names_in_play(const struct client *c, const struct server *s)
{
	return (c->prep && c->prep->reg.count) || (s->prep && s->prep->q.named_closed);
}

/* Scan from the same message again once held input may go. */
static enum prep_step hold(struct client *c)
{
	lease_prep(c)->stopped = true;
	return PREP_MORE;
}

/* ---- client to backend ---- */

static bool forgets_word(const char **p, const char *end, const char *word)
{
	size_t n = strlen(word);

	while (*p < end && isspace((unsigned char)**p))
		(*p)++;
	if ((size_t)(end - *p) < n || strncasecmp(*p, word, n) != 0)
		return false;
	if (*p + n < end && !isspace((unsigned char)(*p)[n]) && (*p)[n] != ';')
		return false;
	*p += n;
	return true;
}

bool prep_sql_forgets_all(const char *sql, size_t len)
{
	size_t lead = 0;

	while (lead < len && isspace((unsigned char)sql[lead]))
		lead++;
	/* DISCARD and DEALLOCATE both start with D: most queries stop here. */
	if (lead == len || (sql[lead] | 0x20) != 'd')
		return false;
	const char *p = sql, *end = sql + strnlen(sql, len);

	if (forgets_word(&p, end, "discard"))
		return forgets_word(&p, end, "all");
	if (!forgets_word(&p, end, "deallocate"))
		return false;
	const char *after_prepare = p;
	if (!forgets_word(&after_prepare, end, "prepare"))
		after_prepare = p;
	return forgets_word(&after_prepare, end, "all");
}

/*
 * DEALLOCATE [PREPARE] name, alone in a Query: the statement name it names
 * (folded to lower case unless quoted) into out. Pure.
 */
bool prep_sql_deallocate_name(const char *sql, size_t len, char *out, size_t cap)
{
	const char *p = sql, *end = sql + strnlen(sql, len);
	size_t n = 0;

	if (!forgets_word(&p, end, "deallocate"))
		return false;
	const char *q = p;
	if (forgets_word(&q, end, "prepare"))
		p = q;
	while (p < end && isspace((unsigned char)*p))
		p++;
	bool quoted = p < end && *p == '"';
	p += quoted;
	for (; p < end && n + 1 < cap; p++, n++) {
		if (quoted ? *p == '"' : !(isalnum((unsigned char)*p) || *p == '_' || *p == '$'))
			break;
		out[n] = quoted ? *p : (char)tolower((unsigned char)*p);
	}
	out[n] = '\0';
	if (quoted && (p == end || *p++ != '"'))
		return false;
	while (p < end && (isspace((unsigned char)*p) || *p == ';'))
		p++;
	return n > 0 && p == end && (quoted || strcasecmp(out, "all") != 0);
}

/* The client's own DEALLOCATE ALL / DISCARD ALL: its names go, and the backend's statements. */
static void forget_all(struct client *c, struct server *s)
{
	if (c->prep)
		preg_clear(&c->prep->reg);
	prep_server_forget(s);
}

static bool deallocates_known(struct client *c, const struct frame_msg *m)
{
	char name[256];
	struct prep_server *ps = client_server(c)->prep;

	return prep_sql_deallocate_name((const char *)m->body, m->len - 4, name, sizeof(name)) &&
	       ((c->prep && preg_find(&c->prep->reg, name)) || (ps && pq_name_unsettled(&ps->q, name)));
}

enum frame_verdict prep_client_msg(struct client *c, const struct frame_msg *m)
{
	struct server *s = client_server(c);

	assert(s && server_client(s) == c && c->prep_on);
	switch (m->type) {
	case 'P': case 'B': case 'D': case 'C':
		if (!client_prep(c))
			return FRAME_ERROR;
		lease_prep(c)->stopped = true;
		return FRAME_STOP_BEFORE;
	case 'Q':
		if (m->body && prep_sql_forgets_all((const char *)m->body, m->len - 4))
			forget_all(c, s);
		if (m->body && names_in_play(c, s) && client_prep(c) && deallocates_known(c, m)) {
			lease_prep(c)->stopped = true;
			return FRAME_STOP_BEFORE;
		}
		/* fall through */
	case 'F':
		if (!server_prep(s) || queue_query_boundary(s) < 0)
			return FRAME_ERROR;
		break;
	case 'S':
		/* In COPY FROM STDIN the backend ignores Sync: no 'Z' will pay for it. */
		if (!s->stream.copy_in && queue(s, PQ_BOUNDARY, NULL, NULL) < 0)
			return FRAME_ERROR;
		break;
	}
	return stream_client_msg(&s->stream, m);
}

/* The message at in->scanned, as far as it is in the buffer. */
struct msg_view {
	char type;
	uint32_t body_len;         /* the whole body */
	uint32_t have;             /* of it, in the buffer */
	const uint8_t *body;
};

static struct msg_view view_at(const struct iobuf *in)
{
	const uint8_t *p = in->data + in->scanned;
	struct msg_view v = { .type = (char)p[0], .body_len = be32(p + 1) - 4, .body = p + 5 };
	uint32_t avail = in->end - in->scanned - 5;

	v.have = avail < v.body_len ? avail : v.body_len;
	return v;
}

/* Every client byte leaves the buffer through here or the frame scan, in order: the session watcher sees them all. */
static void consume(struct client *c, uint32_t n)
{
	session_client_sends(c, c->in->data + c->in->scanned, n);
	c->in->scanned += n;
}

static void account(struct server *s, char type, uint32_t body_len)
{
	stream_client_msg(&s->stream, &(struct frame_msg){ .type = type, .len = body_len + 4 });
}

/* Relay the message untouched: exactly what the frame scan would have done. */
static enum prep_step pass(struct client *c, struct server *s, const struct msg_view *v)
{
	account(s, v->type, v->body_len);
	s->stream.to_server.body_left = v->body_len;
	consume(c, 5);
	return PREP_AGAIN;
}

/* Replace the header and the first prefix bytes of the body; the rest passes raw. */
static void consume_prefix(struct client *c, struct server *s, const struct msg_view *v, uint32_t prefix)
{
	assert(prefix <= v->have && prefix <= v->body_len);
	account(s, v->type, v->body_len);
	consume(c, 5 + prefix);
	c->in->start = c->in->scanned;
	s->stream.to_server.body_left = v->body_len - prefix;
}

/* Length of the C string at body[off] (within have), or -1 when it does not end there yet. */
static int64_t cstr_len(const struct msg_view *v, uint32_t off)
{
	if (off >= v->have)
		return -1;
	const uint8_t *nul = memchr(v->body + off, 0, v->have - off);
	return nul ? nul - (v->body + off) : -1;
}

/* Names not yet in the buffer: wait for more, unless they can never fit. */
static enum prep_step need_more(struct client *c, struct server *s, const struct msg_view *v)
{
	if (v->have == v->body_len) {
		/* Unterminated names: PostgreSQL rejects the message with its own error. */
		if (v->type == 'C' && queue(s, PQ_CLOSE, NULL, NULL) < 0)
			return PREP_ERR;
		return pass(c, s, v);
	}
	if (c->in->end - c->in->scanned >= IOBUF_SIZE / 2)
		return PREP_ERR;
	iobuf_compact(c->in);
	return PREP_MORE;
}

static enum prep_step step_bind(struct client *c, struct server *s, const struct msg_view *v)
{
	int64_t portal = cstr_len(v, 0);
	int64_t name = portal < 0 ? -1 : cstr_len(v, (uint32_t)portal + 1);
	if (name < 0)
		return need_more(c, s, v);
	if (name && must_wait(c, s, (const char *)v->body + portal + 1))
		return hold(c);
	struct pstmt *st = name ? preg_find(&c->prep->reg, (const char *)v->body + portal + 1) : NULL;
	if (!st)
		return pass(c, s, v);
	struct prep_lease *pl = lease_prep(c);
	uint32_t prefix = (uint32_t)(portal + 1 + name + 1);
	size_t new_name = strlen(st->name) + 1;
	if (spill_unsent(pl, c->in) < 0 || ensure_prepared(c, s, st) < 0 ||
	    tx_reserve(pl, 5 + portal + 1 + new_name) < 0)
		return PREP_ERR;
	tx_header(pl, 'B', (uint32_t)(v->body_len - prefix + portal + 1 + new_name));
	tx_put(pl, v->body, (size_t)portal + 1);
	tx_put(pl, st->name, new_name);
	consume_prefix(c, s, v, prefix);
	return PREP_AGAIN;
}

static enum prep_step describe(struct client *c, struct server *s, const struct msg_view *v)
{
	int64_t name = cstr_len(v, 1);
	if (name < 0)
		return need_more(c, s, v);
	bool named = v->body[0] == 'S' && name;
	if (named && must_wait(c, s, (const char *)v->body + 1))
		return hold(c);
	struct pstmt *st = named ? preg_find(&c->prep->reg, (const char *)v->body + 1) : NULL;
	if (!st)
		return pass(c, s, v);
	struct prep_lease *pl = lease_prep(c);
	size_t new_name = strlen(st->name) + 1;
	if (spill_unsent(pl, c->in) < 0 || ensure_prepared(c, s, st) < 0 || tx_reserve(pl, 6 + new_name) < 0)
		return PREP_ERR;
	tx_header(pl, 'D', (uint32_t)(1 + new_name));
	tx_put(pl, "S", 1);
	tx_put(pl, st->name, new_name);
	consume_prefix(c, s, v, (uint32_t)(1 + name + 1));
	return PREP_AGAIN;
}

static enum prep_step close_msg(struct client *c, struct server *s, const struct msg_view *v)
{
	int64_t name = cstr_len(v, 1);
	if (name < 0)
		return need_more(c, s, v);
	const char *client_name = (const char *)v->body + 1;
	bool named = v->body[0] == 'S' && name;
	if (named && must_wait(c, s, client_name))
		return hold(c);
	struct pstmt *st = named ? preg_find(&c->prep->reg, client_name) : NULL;
	if (!st)
		return queue(s, PQ_CLOSE, NULL, NULL) < 0 ? PREP_ERR : pass(c, s, v);
	/* The backend keeps the statement cached; the client's name goes. */
	if (spill_unsent(lease_prep(c), c->in) < 0 || queue(s, PQ_CLOSE, st, client_name) < 0 ||
	    tx_close(lease_prep(c), NEVER_NAME) < 0)
		return PREP_ERR;
	preg_del(&c->prep->reg, client_name, NULL);
	consume_prefix(c, s, v, (uint32_t)(1 + name + 1));
	return PREP_AGAIN;
}

/* Query text as a whole message into tx. */
static int tx_query(struct prep_lease *pl, const char *sql)
{
	size_t n = strlen(sql) + 1;

	if (tx_reserve(pl, 5 + n) < 0)
		return -1;
	tx_header(pl, 'Q', (uint32_t)n);
	tx_put(pl, sql, n);
	return 0;
}

/*
 * DEALLOCATE of a protocol-level statement the client named: the name goes
 * from its registry, and the backend runs a DEALLOCATE that succeeds, so the
 * client gets what PostgreSQL would send, in place. The SQL to run goes to
 * sql: the statement's own name when the backend surely has it (then it is
 * uncached), else a throwaway statement injected just before (Close, Parse).
 * Returns -1 when out of memory.
 */
static int deallocate_sql(struct client *c, struct server *s, struct pstmt *st, char *sql, size_t cap)
{
	static const uint8_t trivial[] = "SELECT\0\0";    /* query, 0 parameter types */
	struct prep_lease *pl = lease_prep(c);
	struct prep_server *ps = server_prep(s);
	struct pcache_entry *e = ps ? pcache_find(&ps->cache, st) : NULL;

	if (!ps || spill_unsent(pl, c->in) < 0)
		return -1;
	if (e && e->ready) {
		snprintf(sql, cap, "DEALLOCATE %s", st->name);
		pcache_drop(&ps->cache, st);
		return 0;
	}
	snprintf(sql, cap, "DEALLOCATE pgl_dealloc");
	if (tx_close(pl, "pgl_dealloc") < 0 || queue(s, PQ_CLOSE_INJECTED, NULL, NULL) < 0 ||
	    tx_parse(pl, "pgl_dealloc", trivial, sizeof(trivial)) < 0)
		return -1;
	return queue(s, PQ_PARSE_INJECTED, NULL, NULL);
}

/*
 * DEALLOCATE name as a Query. In an aborted transaction it goes as is: the
 * backend refuses it (25P02) as PostgreSQL would, and the name must stay (a
 * Query's outcome is not tracked, so a rewritten one could not give it back).
 * The throwaway statement is used only when nothing is in flight, where its
 * Parse cannot fail and leave the Query skipped (no ReadyForQuery would come);
 * otherwise the Query goes as is.
 */
static enum prep_step deallocate(struct client *c, struct server *s, const struct msg_view *v)
{
	struct prep_lease *pl = lease_prep(c);
	char name[256], sql[300];
	prep_sql_deallocate_name((const char *)v->body, v->body_len, name, sizeof(name));
	/* Behind replies still to come, the transaction status the choice depends on is not known yet. */
	if (s->stream.owed_z && may_hold(s)) {
		log_debug("client %u: DEALLOCATE %s waits for the replies owed before it", c->id, name);
		pl->held = true;
		return hold(c);
	}
	struct pstmt *st = preg_find(&c->prep->reg, name);
	struct pcache_entry *e = st && server_prep(s) ? pcache_find(&s->prep->cache, st) : NULL;
	bool aborted = s->stream.txstatus == 'E';
	bool quiet = s->stream.owed_z == 0 && !s->stream.unsynced && !aborted;

	if (!st || aborted || (!(e && e->ready) && !quiet))
		return queue_query_boundary(s) < 0 ? PREP_ERR : pass(c, s, v);
	if (deallocate_sql(c, s, st, sql, sizeof(sql)) < 0)
		return PREP_ERR;
	preg_del(&c->prep->reg, name, NULL);
	if (tx_query(pl, sql) < 0 || queue_query_boundary(s) < 0)
		return PREP_ERR;
	consume_prefix(c, s, v, v->body_len);
	return PREP_AGAIN;
}

/*
 * DEALLOCATE name as an unnamed Parse (psycopg's way): rewritten like the
 * Query. Extended messages are skipped together after an error, so the
 * throwaway statement is always safe here; and a Parse that fails (aborted
 * transaction) or is skipped gives the client its name back at ReadyForQuery.
 */
static enum prep_step deallocate_parse(struct client *c, struct server *s, const struct msg_view *v,
				       struct pstmt *st, const char *name, uint32_t query_len)
{
	struct prep_lease *pl = lease_prep(c);
	char sql[300];
	uint32_t tail = v->body_len - 1 - query_len;      /* the NUL, then the parameter types */

	if (deallocate_sql(c, s, st, sql, sizeof(sql)) < 0 || queue(s, PQ_PARSE_DEALLOCATE, st, name) < 0)
		return PREP_ERR;
	preg_del(&c->prep->reg, name, NULL);
	size_t n = strlen(sql);
	if (tx_reserve(pl, 6 + n + tail) < 0)
		return PREP_ERR;
	tx_header(pl, 'P', (uint32_t)(1 + n + tail));
	tx_put(pl, "", 1);
	tx_put(pl, sql, n);
	tx_put(pl, v->body + 1 + query_len, tail);
	consume_prefix(c, s, v, v->body_len);
	return PREP_AGAIN;
}

/* A named Parse, complete in the lease's parse: register it and send what the backend needs; 1: it waits (held). */
static int named_parse(struct client *c, struct server *s)
{
	struct prep_lease *pl = lease_prep(c);
	const char *name = (const char *)pl->parse;
	size_t name_len = strnlen(name, pl->parse_len);

	if (name_len == pl->parse_len) {
		/* No end to the name: PostgreSQL rejects it with its own error. */
		if (tx_reserve(pl, 5 + pl->parse_len) < 0)
			return -1;
		tx_header(pl, 'P', pl->parse_len);
		tx_put(pl, pl->parse, pl->parse_len);
		return queue(s, PQ_PARSE, NULL, NULL);
	}
	const uint8_t *key = pl->parse + name_len + 1;
	uint32_t key_len = pl->parse_len - (uint32_t)name_len - 1;
	if (must_wait(c, s, name))
		return 1;
	struct pstmt *old = preg_find(&c->prep->reg, name);

	if (old) {
		/* PostgreSQL refuses a name in use: let the backend say so (42P05), in its place. */
		if (ensure_prepared(c, s, old) < 0 || tx_parse(pl, old->name, key, key_len) < 0)
			return -1;
		return queue(s, PQ_PARSE, NULL, NULL);
	}
	struct pstmt *st = pstmt_get(key, key_len);
	if (!st || preg_add(&c->prep->reg, name, st) < 0) {
		pstmt_put(st);
		return -1;
	}
	pstmt_put(st);
	struct prep_server *ps = server_prep(s);
	struct pcache_entry *e = ps ? pcache_find(&ps->cache, st) : NULL;
	if (!ps)
		return -1;
	if (e)
		pcache_touch(&ps->cache, e);
	if (e && e->ready)
		return tx_close(pl, NEVER_NAME) < 0 ? -1 : queue(s, PQ_PARSE_FAKE, st, name);
	/* A Parse of it still unanswered may fail: this one must be real too. */
	if (!e && !(e = cache_add(c, s, st)))
		return -1;
	return tx_close_parse(c, s, e, key, key_len, PQ_PARSE_NAMED, name);
}

/* Copy what has arrived of the named Parse; finish it once whole. */
static enum prep_step accumulate(struct client *c, struct server *s)
{
	struct prep_lease *pl = lease_prep(c);
	struct iobuf *in = c->in;
	uint32_t want = pl->parse_len - pl->parse_have;
	uint32_t avail = in ? in->end - in->scanned : 0;
	uint32_t take = avail < want ? avail : want;

	assert(pl->parse && pl->parse_have <= pl->parse_len);
	if (take) {
		memcpy(pl->parse + pl->parse_have, in->data + in->scanned, take);
		pl->parse_have += take;
		consume(c, take);
		in->start = in->scanned;
	}
	if (pl->parse_have < pl->parse_len)
		return PREP_MORE;
	int rc = named_parse(c, s);
	if (rc > 0)
		return PREP_MORE;
	free(pl->parse);
	pl->parse = NULL;
	return rc < 0 ? PREP_ERR : PREP_AGAIN;
}

static enum prep_step parse(struct client *c, struct server *s, const struct msg_view *v)
{
	struct prep_lease *pl = lease_prep(c);

	if (v->have == 0 && v->body_len > 0)
		return need_more(c, s, v);
	if (v->body_len == 0 || v->body[0] == '\0') {
		/* Unnamed: relayed untouched, unless it is DEALLOCATE [ALL] (psycopg runs it so). */
		int64_t q = cstr_len(v, 1);
		char name[256];
		struct pstmt *st;
		bool in_play = names_in_play(c, s);
		if (q < 0 && in_play && v->have < v->body_len && v->body_len <= FRAME_WHOLE_MAX)
			return need_more(c, s, v);
		bool deallocates = q >= 0 && in_play &&
			prep_sql_deallocate_name((const char *)v->body + 1, (size_t)q, name, sizeof(name));
		if (deallocates && must_wait(c, s, name))
			return hold(c);
		if (q >= 0 && prep_sql_forgets_all((const char *)v->body + 1, (size_t)q))
			forget_all(c, s);
		if (deallocates && (st = preg_find(&c->prep->reg, name))) {
			/* Rewritten whole: its parameter types, after the text, may not be here yet. */
			if (v->have < v->body_len)
				return need_more(c, s, v);
			return deallocate_parse(c, s, v, st, name, (uint32_t)q);
		}
		return queue(s, PQ_PARSE, NULL, NULL) < 0 ? PREP_ERR : pass(c, s, v);
	}
	if (spill_unsent(pl, c->in) < 0 || !(pl->parse = malloc(v->body_len)))
		return PREP_ERR;
	pl->parse_len = v->body_len;
	pl->parse_have = 0;
	account(s, 'P', v->body_len);
	consume(c, 5);
	c->in->start = c->in->scanned;
	return accumulate(c, s);
}

enum prep_step prep_client_step(struct client *c, struct server *s)
{
	/* The scan stops (and a Parse is accumulated) only once the client's state exists. */
	if (!c->prep)
		return PREP_AGAIN;
	struct prep_lease *pl = lease_prep(c);

	pl->held = false;
	if (pl->parse)
		return accumulate(c, s);
	if (!pl->stopped)
		return PREP_AGAIN;
	pl->stopped = false;
	/* The scan stopped before this message's whole header (prep_client_msg()). */
	assert(c->in && c->in->end - c->in->scanned >= 5);
	struct msg_view v = view_at(c->in);
	switch (v.type) {
	case 'P': return parse(c, s, &v);
	case 'B': return step_bind(c, s, &v);
	case 'D': return describe(c, s, &v);
	case 'Q': return deallocate(c, s, &v);
	default:  return close_msg(c, s, &v);
	}
}

/* ---- a prepare that needs no backend ---- */

/* Some backend of the pool has parsed exactly this statement (text and types) without error. */
static bool pool_has_parsed(const struct pool *p, const struct pstmt *st)
{
	const struct list *lists[] = { &p->idle, &p->leased, &p->cleaning };
	struct list_node *pos, *tmp;

	for (size_t i = 0; i < sizeof(lists) / sizeof(*lists); i++) {
		list_for_each_safe(pos, tmp, (struct list *)lists[i]) {
			struct server *s = list_entry(pos, struct server, node);
			struct pcache_entry *e = s->prep ? pcache_find(&s->prep->cache, st) : NULL;
			if (e && e->ready)
				return true;
		}
	}
	return false;
}

/* A named Parse at p (whole in the buffer) of a statement the pool has parsed: its pstmt, else NULL. */
static struct pstmt *parsed_statement(struct client *c, const uint8_t *p, uint32_t len)
{
	const uint8_t *body = p + 5;
	uint32_t body_len = len - 4;
	size_t name_len = strnlen((const char *)body, body_len);

	if (p[0] != 'P' || name_len == 0 || name_len == body_len)
		return NULL;
	if (c->prep && preg_find(&c->prep->reg, (const char *)body))
		return NULL;
	struct pstmt *st = pstmt_find(body + name_len + 1, body_len - (uint32_t)name_len - 1);
	return st && pool_has_parsed(c->pool, st) ? st : NULL;
}

/* Parses answered from the registry in one batch, at most: the reply must fit the caller's buffer. */
#define UNLEASED_PARSES_MAX 64

/* Length of a run of such Parses closed by a Sync at in[scanned..], or 0. */
static uint32_t registry_only_batch(struct client *c, uint32_t *parses)
{
	const struct iobuf *in = c->in;
	uint32_t at = in->scanned;

	for (*parses = 0; in->end - at >= 5 && *parses <= UNLEASED_PARSES_MAX; (*parses)++) {
		const uint8_t *p = in->data + at;
		uint32_t len = be32(p + 1);
		if (len < 4 || len > in->end - at - 1)
			return 0;
		if (p[0] == 'S')
			return *parses && len == 4 ? at + 5 - in->scanned : 0;
		if (!parsed_statement(c, p, len))
			return 0;
		at += 1 + len;
	}
	return 0;
}

/* A second Parse of one name in the batch must fail as PostgreSQL fails it: leave such a batch to a backend. */
static uint32_t next_msg(const struct iobuf *in, uint32_t at)
{
	return at + 1 + be32(in->data + at + 1);
}

/* The batch was checked by registry_only_batch(): Parses, then one Sync. */
static bool batch_names_distinct(const struct iobuf *in)
{
	for (uint32_t a = in->scanned; in->data[a] == 'P'; a = next_msg(in, a))
		for (uint32_t b = next_msg(in, a); in->data[b] == 'P'; b = next_msg(in, b))
			if (strcmp((const char *)in->data + a + 5, (const char *)in->data + b + 5) == 0)
				return false;
	return true;
}

int prep_parse_unleased(struct client *c, struct wbuf *reply)
{
	uint32_t parses;

	if (!c->prep_on || c->pinned || c->lease || !c->in || c->in->start != c->in->scanned)
		return 0;
	uint32_t len = registry_only_batch(c, &parses);
	if (!len || !batch_names_distinct(c->in) ||
	    !session_inert(c, c->in->data + c->in->scanned, len) || reply->cap - reply->len < parses * 5 + 6)
		return 0;
	if (!client_prep(c))
		return -1;
	for (uint32_t at = c->in->scanned; c->in->data[at] == 'P'; at = next_msg(c->in, at)) {
		const uint8_t *body = c->in->data + at + 5;
		size_t name_len = strlen((const char *)body);
		uint32_t key_len = be32(c->in->data + at + 1) - 4 - (uint32_t)name_len - 1;
		struct pstmt *st = pstmt_find(body + name_len + 1, key_len);
		/* registry_only_batch() found it, and nothing has run since that could free it. */
		assert(st);
		if (preg_add(&c->prep->reg, (const char *)body, st) < 0)
			return -1;
		proto_parse_complete(reply);
		log_debug("client %u: prepared %s without a lease (pool already has %s)", c->id, body, st->name);
	}
	proto_ready(reply, 'I');
	c->in->scanned += len;
	c->in->start = c->in->scanned;
	return 1;
}

/* ---- backend to client ---- */

static bool tag_forgets_all(const struct frame_msg *m)
{
	return m->body && m->body[0] == 'D' && (strncmp((const char *)m->body, "DISCARD ALL", m->len - 4) == 0 ||
			   strncmp((const char *)m->body, "DEALLOCATE ALL", m->len - 4) == 0);
}

/* What the scan must do with the reply it stopped after, and reset.c's cut (one loop, one thread). */
static enum pq_action reply_act;
static uint32_t reply_cut;

static enum frame_verdict account_reply(struct client *c, struct server *s, const struct frame_msg *m)
{
	struct prep_server *ps = s->prep;
	struct preg *reg = c->prep ? &c->prep->reg : NULL;

	if (m->type == 'E')
		session_backend_error(c);
	if (!ps)
		return stream_server_msg(&s->stream, m);
	switch (m->type) {
	case '1': case '3':
		reply_act = pq_pop_reply(&ps->q, m->type, &ps->cache, reg);
		if (reply_act == PQ_DESYNC || m->len != 4)
			return FRAME_ERROR;
		return reply_act == PQ_FORWARD ? FRAME_CONTINUE : FRAME_STOP_AFTER;
	case 'Z':
		if (pq_ready(&ps->q, &ps->cache, reg) < 0) {
			/* The client would find a statement gone that PostgreSQL keeps: it cannot go on. */
			log_error("client %u: out of memory giving back the name of a skipped Close", c->id);
			return FRAME_ERROR;
		}
		if (lease_prep(c)->held)
			lease_prep(c)->kick = true;
		break;
	case 'C':
		if (tag_forgets_all(m))
			pcache_clear(&ps->cache);
		break;
	case 'G': case 'W':
		if (s->stream.execute_last)
			pq_tail_syncs_drop(&ps->q, s->stream.syncs_after_execute);
		if (lease_prep(c)->held)
			lease_prep(c)->kick = true;
		break;
	}
	return stream_server_msg(&s->stream, m);
}

static enum frame_verdict server_msg(void *arg, const struct frame_msg *m)
{
	struct client *c = arg;
	struct server *s = client_server(c);
	enum frame_verdict v = account_reply(c, s, m);

	if (v == FRAME_CONTINUE && m->type != '1' && m->type != '3' && (m->type == 'S' || reset_active(&s->reset)) &&
	    (reply_cut = reset_server_msg(c, s, m)))
		return FRAME_STOP_AFTER;
	return v;
}

ssize_t prep_scan_from_server(struct client *c, struct server *s, struct iobuf *out)
{
	uint32_t at = out->scanned;

	assert(client_server(c) == s && server_client(s) == c && out == c->out);
	for (;;) {
		reply_act = PQ_FORWARD;
		reply_cut = 0;
		const char *whole = reset_active(&s->reset) ? RESET_SERVER_WHOLE : PREP_SERVER_WHOLE;
		ssize_t n = frame_scan(&s->stream.from_server, out->data + at, out->end - at, whole, server_msg, c);
		if (n < 0) {
			log_info("server %d: reply stream out of step with pglease's prepared statements", s->id);
			return -1;
		}
		at += (uint32_t)n;
		uint32_t cut = reply_act == PQ_SWALLOW ? 5 : reply_cut;
		if (cut) {
			memmove(out->data + at - cut, out->data + at, out->end - at);
			out->end -= cut;
			at -= cut;
		} else if (reply_act == PQ_AS_PARSE_COMPLETE) {
			out->data[at - 5] = '1';
		} else {
			return at - out->scanned;
		}
	}
}
