/*
 * prepared.h — named prepared statements that outlive a transaction-mode lease.
 *
 *   pstmt_get() / pstmt_put()         shared statement definitions (query + types)
 *   preg_find() / preg_add() / preg_del() / preg_clear() / preg_free()
 *                                     a client's names for its statements
 *   pcache_find() / pcache_add() / pcache_touch() / pcache_drop() / pcache_victim() / pcache_clear()
 *                                     the statements one backend has, LRU-bounded
 *   pq_push() / pq_push_parse() / pq_pop_reply() / pq_ready() / pq_tail_syncs_drop() / pq_clear() / pq_free()
 *                                     the replies a backend owes for what pglease sent it
 *   pcache_usable() / pq_name_unsettled()
 *                                     what a message sent now may count on, Sync segment by segment
 *
 * Pure data structures: no sockets, no libev. The wire side is rewrite.c.
 *
 * A client's Parse with a name is stored once per distinct (query, parameter
 * types) as a struct pstmt and given a server-side name "pgl_<id>"; clients
 * that prepare the same text share it. A statement is freed when no client
 * names it and no backend holds it (refs).
 */
#ifndef PGLEASE_PREPARED_H
#define PGLEASE_PREPARED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "check.h"

struct pstmt {
	struct pstmt *hnext;      /* chain in the global table */
	uint32_t refs;            /* client names + backend caches + queued replies */
	uint32_t key_len;
	uint64_t hash;
	char name[24];            /* the server-side name, "pgl_<id>" */
	uint8_t key[];            /* the Parse body after the name: query\0 int16 n, n x int32 */
};

/* A client's registry: its statement names, each naming a pstmt. */
struct preg_entry {
	struct preg_entry *next;
	struct pstmt *st;
	char name[];
};

struct preg {
	struct preg_entry **buckets;
	uint32_t nbuckets, count;
};

/* A backend's cache: which pstmts it has (or is being sent), with LRU stamps. */
struct pcache_entry {
	struct pstmt *st;
	uint64_t used;            /* LRU clock value of the last use */
	uint64_t born;            /* clock value when added: tells a re-added entry from its predecessor */
	uint64_t seg;             /* the Sync segment (pq.segments) its newest Parse was sent in */
	bool ready;               /* the replies so far say the backend has it (a ParseComplete came,
				     and no CloseComplete of pglease's Close since) */
};

struct pcache {
	struct pcache_entry *e;
	uint32_t n, cap;
	uint64_t clock;
};

/*
 * What a reply ('1' ParseComplete, '3' CloseComplete, 'Z' ReadyForQuery)
 * from the backend means, in the order pglease sent the requests. Only
 * requests that produce those replies are queued, plus the boundaries
 * (Sync, Query, FunctionCall) that end an error's skipping.
 */
enum pq_kind {
	PQ_BOUNDARY,        /* Sync, Query or FunctionCall: answered by 'Z' */
	PQ_PARSE,           /* a client Parse relayed as is (unnamed, or bound to fail) */
	PQ_PARSE_NAMED,     /* a client's named Parse, sent as pgl_<id>: confirm */
	PQ_PARSE_INJECTED,  /* pglease's Parse before a Bind/Describe: confirm, swallow */
	PQ_PARSE_FAKE,      /* client Parse of a statement the backend has: a Close
			       of a nonexistent name whose CloseComplete becomes ParseComplete */
	PQ_PARSE_DEALLOCATE, /* a client's unnamed Parse of DEALLOCATE name, rewritten: the
			       name has left the registry and comes back if the Parse fails or is skipped */
	PQ_CLOSE,           /* a client Close relayed (portal, unknown name, or a dropped name) */
	PQ_CLOSE_INJECTED,  /* pglease's Close (eviction, or before a Parse): swallow; before
			       a Parse it names the entry (st, born), which it leaves not ready */
};

struct pq_item {
	uint8_t kind;             /* enum pq_kind */
	struct pstmt *st;         /* holds a ref, or NULL */
	char *name;               /* the client's name: undone if skipped, or NULL */
	uint64_t born;            /* the cache entry a Parse is for (pcache_entry.born), or 0 */
};

struct pq {
	struct pq_item *items;
	uint32_t head, count, cap;
	uint64_t segments;        /* boundaries ever pushed: the Sync segment a request is sent in */
	uint64_t answered;        /* ... of them, answered (or ignored in COPY FROM STDIN, or forgotten) */
	uint32_t named_open;      /* items with a client name in the segment not yet closed */
	uint32_t named_closed;    /* ... before the newest boundary: the oldest of the named items */
};

/* The reply to pass on: as is, not at all, or with another type byte. */
enum pq_action { PQ_FORWARD, PQ_SWALLOW, PQ_AS_PARSE_COMPLETE, PQ_DESYNC };

MUST_CHECK struct pstmt *pstmt_get(const uint8_t *key, uint32_t key_len);   /* +1 ref; NULL: out of memory */
struct pstmt *pstmt_find(const uint8_t *key, uint32_t key_len);  /* no ref taken; NULL: none */
void pstmt_put(struct pstmt *st);                                 /* -1 ref */
void pstmt_hold(struct pstmt *st);                                /* +1 ref */
uint32_t pstmt_live_count(void);                                  /* for tests */

struct pstmt *preg_find(const struct preg *r, const char *name);
MUST_CHECK int preg_add(struct preg *r, const char *name, struct pstmt *st);   /* takes a new ref */
bool preg_del(struct preg *r, const char *name, const struct pstmt *only_if);
void preg_clear(struct preg *r);
void preg_free(struct preg *r);

struct pcache_entry *pcache_find(struct pcache *c, const struct pstmt *st);
MUST_CHECK struct pcache_entry *pcache_add(struct pcache *c, struct pstmt *st);  /* takes a new ref */
void pcache_touch(struct pcache *c, struct pcache_entry *e);
void pcache_drop(struct pcache *c, const struct pstmt *st);
/* The least recently used entry other than keep, or NULL. */
struct pcache_entry *pcache_victim(struct pcache *c, const struct pstmt *keep);
void pcache_clear(struct pcache *c);

MUST_CHECK int pq_push(struct pq *q, enum pq_kind kind, struct pstmt *st, const char *name, uint64_t born);
/* A Parse (PQ_PARSE_NAMED or PQ_PARSE_INJECTED) sent now for entry e; and its Close before it. */
MUST_CHECK int pq_push_parse(struct pq *q, enum pq_kind kind, struct pcache_entry *e, const char *name);
MUST_CHECK int pq_push_close(struct pq *q, const struct pcache_entry *e);
/*
 * A message sent now may use e without a Parse of its own: the backend has
 * it, or the Parse for it is in this same Sync segment (skipped, it takes
 * the message with it). A Parse in an earlier segment may still be skipped.
 */
bool pcache_usable(const struct pcache_entry *e, const struct pq *q);
/* A request about the client's name, in an earlier Sync segment, is still unanswered. */
bool pq_name_unsettled(const struct pq *q, const char *name);
/* A '1' or '3' arrived: what to do with it (cache and registry updated). */
enum pq_action pq_pop_reply(struct pq *q, char type, struct pcache *cache, struct preg *reg);
/*
 * A 'Z' arrived: the requests before its boundary that got no reply were
 * skipped. -1 when a name a skipped Close took from reg could not be put
 * back (out of memory): the client's registry no longer matches PostgreSQL's.
 */
MUST_CHECK int pq_ready(struct pq *q, struct pcache *cache, struct preg *reg);
/* An extended-protocol COPY began: the backend ignored the newest n Syncs. */
void pq_tail_syncs_drop(struct pq *q, uint32_t n);
/* The lease ended with replies unaccounted for: forget them, and what they would confirm. */
void pq_clear(struct pq *q, struct pcache *cache);
/* pq_clear(), and its memory (kept between leases otherwise). */
void pq_free(struct pq *q, struct pcache *cache);

#endif
