/*
 * prepared.c — shared statement definitions, client registries, backend
 * caches and the queue of replies that decide what the backend really did.
 *
 * Nothing here trusts a request to have succeeded: a backend entry stays
 * "not ready" until its ParseComplete arrives, and a request that got no
 * reply before the ReadyForQuery that ends its batch was skipped after an
 * error, so whatever it would have created or dropped is undone then.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "prepared.h"

/* ---- shared statement definitions ---- */

#define PSTMT_BUCKETS 4096u

static struct pstmt *pstmt_table[PSTMT_BUCKETS];
static uint64_t next_pstmt_id = 1;
static uint32_t pstmt_live;

static uint64_t hash_bytes(const uint8_t *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;

	while (n--)
		h = (h ^ *p++) * 1099511628211ull;
	return h;
}

static struct pstmt *pstmt_lookup(const uint8_t *key, uint32_t key_len, uint64_t h)
{
	for (struct pstmt *st = pstmt_table[h % PSTMT_BUCKETS]; st; st = st->hnext)
		if (st->hash == h && st->key_len == key_len && memcmp(st->key, key, key_len) == 0)
			return st;
	return NULL;
}

struct pstmt *pstmt_get(const uint8_t *key, uint32_t key_len)
{
	uint64_t h = hash_bytes(key, key_len);
	struct pstmt *st = pstmt_lookup(key, key_len, h);

	if (st) {
		st->refs++;
		return st;
	}
	if (!(st = malloc(sizeof(*st) + key_len)))
		return NULL;
	st->refs = 1;
	st->key_len = key_len;
	st->hash = h;
	snprintf(st->name, sizeof(st->name), "pgl_%llu", (unsigned long long)next_pstmt_id++);
	memcpy(st->key, key, key_len);
	st->hnext = pstmt_table[h % PSTMT_BUCKETS];
	pstmt_table[h % PSTMT_BUCKETS] = st;
	pstmt_live++;
	return st;
}

struct pstmt *pstmt_find(const uint8_t *key, uint32_t key_len)
{
	return pstmt_lookup(key, key_len, hash_bytes(key, key_len));
}

void pstmt_hold(struct pstmt *st)
{
	assert(st->refs > 0);
	st->refs++;
}

void pstmt_put(struct pstmt *st)
{
	if (!st)
		return;
	assert(st->refs > 0);
	if (--st->refs > 0)
		return;
	struct pstmt **pp = &pstmt_table[st->hash % PSTMT_BUCKETS];
	while (*pp != st)
		pp = &(*pp)->hnext;
	*pp = st->hnext;
	pstmt_live--;
	free(st);
}

uint32_t pstmt_live_count(void)
{
	return pstmt_live;
}

/* ---- a client's registry ---- */

static struct preg_entry **preg_slot(const struct preg *r, const char *name)
{
	uint64_t h = hash_bytes((const uint8_t *)name, strlen(name));
	struct preg_entry **pp = &r->buckets[h & (r->nbuckets - 1)];

	while (*pp && strcmp((*pp)->name, name) != 0)
		pp = &(*pp)->next;
	return pp;
}

struct pstmt *preg_find(const struct preg *r, const char *name)
{
	if (!r->count)
		return NULL;
	struct preg_entry *e = *preg_slot(r, name);
	return e ? e->st : NULL;
}

static int preg_grow(struct preg *r)
{
	uint32_t n = r->nbuckets ? r->nbuckets * 2 : 16;
	struct preg_entry **b = calloc(n, sizeof(*b));

	if (!b)
		return -1;
	for (uint32_t i = 0; i < r->nbuckets; i++) {
		for (struct preg_entry *e = r->buckets[i], *next; e; e = next) {
			next = e->next;
			uint64_t h = hash_bytes((const uint8_t *)e->name, strlen(e->name));
			e->next = b[h & (n - 1)];
			b[h & (n - 1)] = e;
		}
	}
	free(r->buckets);
	r->buckets = b;
	r->nbuckets = n;
	return 0;
}

int preg_add(struct preg *r, const char *name, struct pstmt *st)
{
	size_t len = strlen(name);

	if (r->count >= r->nbuckets && preg_grow(r) < 0)
		return -1;
	struct preg_entry **pp = preg_slot(r, name);
	if (*pp)
		return -1;
	struct preg_entry *e = malloc(sizeof(*e) + len + 1);
	if (!e)
		return -1;
	memcpy(e->name, name, len + 1);
	e->st = st;
	e->next = NULL;
	pstmt_hold(st);
	*pp = e;
	r->count++;
	return 0;
}

bool preg_del(struct preg *r, const char *name, const struct pstmt *only_if)
{
	if (!r->count)
		return false;
	struct preg_entry **pp = preg_slot(r, name), *e = *pp;
	if (!e || (only_if && e->st != only_if))
		return false;
	*pp = e->next;
	assert(r->count > 0);
	r->count--;
	pstmt_put(e->st);
	free(e);
	return true;
}

void preg_clear(struct preg *r)
{
	for (uint32_t i = 0; i < r->nbuckets; i++) {
		while (r->buckets[i]) {
			struct preg_entry *e = r->buckets[i];
			r->buckets[i] = e->next;
			pstmt_put(e->st);
			free(e);
		}
	}
	r->count = 0;
}

void preg_free(struct preg *r)
{
	preg_clear(r);
	free(r->buckets);
	r->buckets = NULL;
	r->nbuckets = 0;
}

/* ---- a backend's cache ---- */

/* A linear scan: max_prepared_statements is small (200) and a scan is far below a syscall. */
struct pcache_entry *pcache_find(struct pcache *c, const struct pstmt *st)
{
	for (uint32_t i = 0; i < c->n; i++)
		if (c->e[i].st == st)
			return &c->e[i];
	return NULL;
}

void pcache_touch(struct pcache *c, struct pcache_entry *e)
{
	e->used = ++c->clock;
}

struct pcache_entry *pcache_add(struct pcache *c, struct pstmt *st)
{
	if (c->n == c->cap) {
		uint32_t cap = c->cap ? c->cap * 2 : 8;
		struct pcache_entry *e = realloc(c->e, cap * sizeof(*e));
		if (!e)
			return NULL;
		c->e = e;
		c->cap = cap;
	}
	struct pcache_entry *e = &c->e[c->n++];
	pstmt_hold(st);
	*e = (struct pcache_entry){ .st = st, .ready = false };
	pcache_touch(c, e);
	e->born = e->used;
	return e;
}

void pcache_drop(struct pcache *c, const struct pstmt *st)
{
	struct pcache_entry *e = pcache_find(c, st);

	if (!e)
		return;
	struct pstmt *gone = e->st;
	*e = c->e[--c->n];
	pstmt_put(gone);
}

struct pcache_entry *pcache_victim(struct pcache *c, const struct pstmt *keep)
{
	struct pcache_entry *old = NULL;

	for (uint32_t i = 0; i < c->n; i++)
		if (c->e[i].st != keep && (!old || c->e[i].used < old->used))
			old = &c->e[i];
	return old;
}

void pcache_clear(struct pcache *c)
{
	while (c->n)
		pstmt_put(c->e[--c->n].st);
	free(c->e);
	c->e = NULL;
	c->cap = 0;
}

/* ---- the reply queue ---- */

int pq_push(struct pq *q, enum pq_kind kind, struct pstmt *st, const char *name, uint64_t born)
{
	if (q->count == q->cap) {
		uint32_t cap = q->cap ? q->cap * 2 : 16;
		struct pq_item *items = malloc(cap * sizeof(*items));
		if (!items)
			return -1;
		for (uint32_t i = 0; i < q->count; i++)
			items[i] = q->items[(q->head + i) % q->cap];
		free(q->items);
		q->items = items;
		q->head = 0;
		q->cap = cap;
	}
	char *copy = name ? strdup(name) : NULL;
	if (name && !copy)
		return -1;
	if (st)
		pstmt_hold(st);
	q->items[(q->head + q->count++) % q->cap] = (struct pq_item){ .kind = (uint8_t)kind, .st = st, .name = copy,
						      .born = born };
	q->named_open += name != NULL;
	if (kind == PQ_BOUNDARY) {
		q->segments++;
		q->named_closed += q->named_open;
		q->named_open = 0;
	}
	return 0;
}

int pq_push_parse(struct pq *q, enum pq_kind kind, struct pcache_entry *e, const char *name)
{
	assert(kind == PQ_PARSE_NAMED || kind == PQ_PARSE_INJECTED);
	e->seg = q->segments;
	return pq_push(q, kind, e->st, name, e->born);
}

int pq_push_close(struct pq *q, const struct pcache_entry *e)
{
	return pq_push(q, PQ_CLOSE_INJECTED, e->st, NULL, e->born);
}

bool pcache_usable(const struct pcache_entry *e, const struct pq *q)
{
	return e->ready || e->seg == q->segments;
}

static struct pq_item *pq_at(const struct pq *q, uint32_t i)
{
	return &q->items[(q->head + i) % q->cap];
}

/* The named items of closed segments are the oldest named items of the queue. */
bool pq_name_unsettled(const struct pq *q, const char *name)
{
	for (uint32_t i = 0, seen = 0; seen < q->named_closed; i++) {
		assert(i < q->count);
		const struct pq_item *it = pq_at(q, i);
		if (it->name && (++seen, strcmp(it->name, name) == 0))
			return true;
	}
	return false;
}

static struct pq_item pq_shift(struct pq *q)
{
	struct pq_item it = q->items[q->head];

	assert(q->count > 0);
	q->head = (q->head + 1) % q->cap;
	q->count--;
	if (it.name && q->named_closed)
		q->named_closed--;
	else if (it.name) {
		assert(q->named_open > 0);
		q->named_open--;
	}
	return it;
}

static void item_release(struct pq_item *it)
{
	pstmt_put(it->st);
	free(it->name);
}

static bool is_parse(uint8_t kind)
{
	return kind == PQ_PARSE || kind == PQ_PARSE_NAMED || kind == PQ_PARSE_INJECTED ||
	       kind == PQ_PARSE_DEALLOCATE;
}

static bool is_close(uint8_t kind)
{
	return kind == PQ_CLOSE || kind == PQ_CLOSE_INJECTED || kind == PQ_PARSE_FAKE;
}

/* The cache entry a request was sent for: after an eviction the same statement may be re-added. */
static struct pcache_entry *entry_of(struct pcache *cache, const struct pq_item *it)
{
	struct pcache_entry *e = it->st ? pcache_find(cache, it->st) : NULL;

	return e && e->born == it->born ? e : NULL;
}

enum pq_action pq_pop_reply(struct pq *q, char type, struct pcache *cache, struct preg *reg)
{
	(void)reg;
	if (!q->count)
		return PQ_DESYNC;
	uint8_t kind = q->items[q->head].kind;
	if ((type == '1' && !is_parse(kind)) || (type == '3' && !is_close(kind)))
		return PQ_DESYNC;
	struct pq_item it = pq_shift(q);
	enum pq_action act = PQ_FORWARD;
	struct pcache_entry *e = kind == PQ_PARSE_NAMED || kind == PQ_PARSE_INJECTED || kind == PQ_CLOSE_INJECTED ?
				 entry_of(cache, &it) : NULL;
	/* The Close before a Parse ran: until that Parse's reply, the backend lacks the statement. */
	if (e)
		e->ready = kind != PQ_CLOSE_INJECTED;
	if (kind == PQ_PARSE_INJECTED || kind == PQ_CLOSE_INJECTED)
		act = PQ_SWALLOW;
	if (kind == PQ_PARSE_FAKE)
		act = PQ_AS_PARSE_COMPLETE;
	item_release(&it);
	return act;
}

/* A Parse for the same cache entry, after the first `from` items: a later Sync segment's, which may still run. */
static bool parse_follows(const struct pq *q, uint32_t from, const struct pq_item *it)
{
	for (uint32_t i = from; i < q->count; i++) {
		const struct pq_item *later = pq_at(q, i);
		if ((later->kind == PQ_PARSE_NAMED || later->kind == PQ_PARSE_INJECTED) && later->st == it->st &&
		    later->born == it->born)
			return true;
	}
	return false;
}

/*
 * A request the backend skipped (or a Parse that failed): undo what sending
 * it assumed. A statement whose Parse was skipped stays cached, not ready,
 * while a later segment's Parse for it is in flight. -1 when a name could
 * not be given back (out of memory).
 */
static int undo_skipped(const struct pq *q, uint32_t boundary, struct pq_item *it, struct pcache *cache,
			struct preg *reg)
{
	struct pcache_entry *e;

	if ((it->kind == PQ_PARSE_NAMED || it->kind == PQ_PARSE_INJECTED) && (e = entry_of(cache, it)) &&
	    !e->ready && !parse_follows(q, boundary + 1, it))
		pcache_drop(cache, it->st);
	if ((it->kind == PQ_PARSE_NAMED || it->kind == PQ_PARSE_FAKE) && reg && it->name)
		preg_del(reg, it->name, it->st);
	if ((it->kind == PQ_CLOSE || it->kind == PQ_PARSE_DEALLOCATE) && it->st && reg && it->name &&
	    !preg_find(reg, it->name))
		return preg_add(reg, it->name, it->st);
	return 0;
}

/* Skipped requests are undone newest first: a skipped Close after a skipped Parse of one name. */
int pq_ready(struct pq *q, struct pcache *cache, struct preg *reg)
{
	uint32_t n = 0;
	int rc = 0;

	while (n < q->count && q->items[(q->head + n) % q->cap].kind != PQ_BOUNDARY)
		n++;
	/* Every item is undone and released even after a failure: the queue and the cache stay in step. */
	for (uint32_t i = n; i-- > 0;)
		if (undo_skipped(q, n, pq_at(q, i), cache, reg) < 0)
			rc = -1;
	q->answered += n < q->count;
	for (uint32_t i = 0; i <= n && q->count; i++) {
		struct pq_item it = pq_shift(q);
		item_release(&it);
	}
	return rc;
}

/* Segments merged: count again which named items come before the newest boundary. */
static void recount_named(struct pq *q)
{
	q->named_open = q->named_closed = 0;
	for (uint32_t i = 0; i < q->count; i++) {
		q->named_open += pq_at(q, i)->name != NULL;
		if (pq_at(q, i)->kind == PQ_BOUNDARY) {
			q->named_closed += q->named_open;
			q->named_open = 0;
		}
	}
}

void pq_tail_syncs_drop(struct pq *q, uint32_t n)
{
	for (uint32_t i = q->count; i-- > 0 && n > 0;) {
		uint32_t at = (q->head + i) % q->cap;
		if (q->items[at].kind != PQ_BOUNDARY)
			continue;
		for (uint32_t j = i; j + 1 < q->count; j++)
			q->items[(q->head + j) % q->cap] = q->items[(q->head + j + 1) % q->cap];
		q->count--;
		q->answered++;
		n--;
	}
	recount_named(q);
}

/* What was in flight may have run or not: an entry a request was sent for is no longer known. */
void pq_clear(struct pq *q, struct pcache *cache)
{
	while (q->count) {
		struct pq_item it = pq_shift(q);
		struct pcache_entry *e = it.st ? pcache_find(cache, it.st) : NULL;
		if (e && (!e->ready || e->born == it.born))
			pcache_drop(cache, it.st);
		q->answered += it.kind == PQ_BOUNDARY;
		item_release(&it);
	}
	assert(q->named_open == 0 && q->named_closed == 0);
	q->head = 0;
}

void pq_free(struct pq *q, struct pcache *cache)
{
	pq_clear(q, cache);
	free(q->items);
	*q = (struct pq){ 0 };
}
