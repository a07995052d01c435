/*
 * reset.h — RESET, RESET ALL, SET ... TO DEFAULT and DISCARD ALL land on the
 * client's startup settings, as on a direct connection.
 *
 * pglease gives a backend a client's startup settings with set_config(), so
 * on the backend they are session values over the pool's own startup
 * values, and a RESET would return to the pool's. pglease follows each such
 * statement with a restore of the client's startup values:
 *
 *   - a Query (at most FRAME_WHOLE_MAX bytes) whose statements reset
 *     settings the client gave at startup is rewritten: right after each
 *     such statement, inside the same Query text, comes
 *       SELECT (pg_catalog.set_config(name, value, false) || ...) IS NULL AS pglease_restore_<nonce>;
 *     so it runs in the same transaction, only if the reset ran (an error
 *     skips the rest of a Query), and the statements after it see the
 *     startup values. Its replies are cut from the stream by the column
 *     name of their RowDescription; error positions are moved back.
 *   - DISCARD ALL cannot share a Query with anything: the client's input is
 *     held while it runs, and only if it completed is a Query with the
 *     restore sent after it; that Query's replies are cut, and its
 *     ReadyForQuery stands for the DISCARD ALL's.
 * ParameterStatus messages in these exchanges that tell the client a value
 * it already has are cut, so it sees what PostgreSQL would have sent it.
 *
 *   reset_plan()          find the statements of a Query text that reset settings (pure, reset_sql.c)
 *   reset_restore_sql()   the restore that follows one of them (pure)
 *   reset_rewrite()       a Query text with its restores in place, and where they went (pure)
 *   reset_fix_position()  an error position in the rewritten text, as the client sent it (pure)
 *   reset_client_query()  relay: a whole Query from the client; rewrite or follow it?
 *   reset_client_step()   relay: the replacement for the Query the scan stopped at
 *   reset_server_msg()    relay: a backend message; pass, cut or shorten it
 *   reset_holding() / reset_followup_due()  relay: client input waits / a follow-up is due
 *
 * Not covered (see README "Transaction pooling"): a reset in an extended-
 * protocol Parse, in a Query over FRAME_WHOLE_MAX bytes, inside a function
 * or DO block, or as set_config(name, NULL, ...): those land on the pool's
 * defaults (in transaction mode the next transaction starts again from the
 * client's settings, see session.c).
 */
#ifndef PGLEASE_RESET_H
#define PGLEASE_RESET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "check.h"
#include "frame.h"
#include "params.h"
#include "sqllex.h"

struct client;
struct server;
struct iobuf;

/* Resets one Query may hold and still be rewritten. */
#define RESET_PLAN_MAX 16
/* Rewritten Queries (and DISCARD ALL exchanges) a backend may have in flight before input waits. */
#define RESET_INFLIGHT_MAX 4
/* The longest Query text a rewrite may produce. */
#define RESET_TEXT_MAX (1u << 20)

enum reset_kind {
	RESET_ONE,       /* RESET name, SET [SESSION] name TO DEFAULT, SET TIME ZONE DEFAULT|LOCAL */
	RESET_ONE_LOCAL, /* SET LOCAL name TO DEFAULT */
	RESET_EVERY,     /* RESET ALL */
	RESET_DISCARD,   /* DISCARD ALL */
};

struct reset_stmt {
	uint8_t kind;                       /* enum reset_kind */
	bool semicolon;                     /* ended by ';' (else by the end of the text) */
	uint32_t end;                       /* offset just past it, ';' included */
	char name[SQLLEX_TEXT_MAX + 1];     /* RESET_ONE*: the setting, lower case */
};

struct reset_plan {
	uint32_t statements;                /* statements in the text (empty ones not counted) */
	uint32_t count;                     /* resets found */
	bool unsafe;                        /* statement ends pglease cannot be sure of: no rewrite */
	struct reset_stmt stmts[RESET_PLAN_MAX];
};

/* Quick test: can this text hold a reset at all? False alarms only cost a lexing. */
bool reset_may_matter(const char *sql, size_t n);
void reset_plan(const char *sql, size_t n, bool backslash_quotes, struct reset_plan *plan);

/*
 * Append the restore for st ("SELECT ... AS marker;"), or nothing when no
 * startup setting it touches differs from the pool's own (base).
 */
void reset_restore_sql(const struct reset_stmt *st, const struct param_set *startup,
		       const struct param_set *base, const char *marker, struct sql_text *out);

/* Where a restore went into a rewritten text, in characters (error positions count characters). */
struct reset_move {
	uint32_t at;       /* 0-based character offset in the rewritten text */
	uint32_t chars;    /* characters inserted there */
};

/*
 * The Query text sql[0, n) with each planned reset followed by its restore
 * (plus a ';' where it ended the text without one), NUL-terminated, into
 * out; the insertions into moves (at most RESET_PLAN_MAX). Returns the
 * number of insertions: 0 means nothing to restore, -1 out of memory or
 * longer than RESET_TEXT_MAX.
 */
MUST_CHECK int reset_rewrite(const char *sql, size_t n, const struct reset_plan *plan, const struct param_set *startup,
		  const struct param_set *base, const char *marker, struct sql_text *out,
		  struct reset_move *moves);
/* Does the reset st bring back the startup setting name = value (the pool's value, base, being different)? */
bool reset_restores(const struct reset_stmt *st, const char *name, const char *value, const struct param_set *base);
/* A 1-based error position in the rewritten text, as a position in the client's own text. */
uint32_t reset_fix_position(uint32_t position, const struct reset_move *moves, uint32_t n_moves);

/* The per-lease state of a backend's relay (struct server embeds it; zeroed at grant). */
struct reset_item {
	uint8_t kind;                       /* a rewritten Query, a DISCARD ALL, or its follow-up */
	uint8_t n_moves;
	uint32_t z_left;                    /* ReadyForQuery messages until and including its own */
	struct reset_move moves[RESET_PLAN_MAX];
};

struct reset_relay {
	struct reset_item items[RESET_INFLIGHT_MAX];  /* in flight, oldest first */
	uint8_t count;
	bool in_marker;     /* between pglease's RowDescription and its CommandComplete */
	bool discard_ok;    /* the DISCARD ALL in flight completed */
	bool followup_due;  /* its restore is to be sent */
	bool hold;          /* client input waits for a DISCARD ALL and its follow-up */
	bool full;          /* client input waits for room in items */
	bool stopped;       /* the client scan stopped before a Query reset.c takes */
	bool kick;          /* input may go again, or a follow-up is due: the relay should look */
};

/* Message types the relay frames whole while resets are in flight. */
#define RESET_SERVER_WHOLE "Z13CSTDENI"

enum reset_take {
	RESET_PASS,   /* relay it as usual */
	RESET_TAKE,   /* stop before it: reset_client_step() takes it */
	RESET_WAIT,   /* stop before it and hold the input: scan it again once a reply frees room */
};

enum reset_take reset_client_query(struct client *c, struct server *s, const struct frame_msg *m);
/*
 * The Query at in->scanned that reset_client_query() stopped the scan
 * before: its replacement body (NUL-terminated text) into body, or
 * body->len 0 to send it as it is. Returns -1 when out of memory (it is then
 * sent as it is).
 */
MUST_CHECK int reset_client_step(struct client *c, struct server *s, const struct frame_msg *m, struct sql_text *body);
/* The restore after a completed DISCARD ALL, to send now; -1 when out of memory (the client must go). */
MUST_CHECK int reset_followup(struct client *c, struct server *s, struct sql_text *body);

static inline bool reset_active(const struct reset_relay *r)
{
	return r->count || r->followup_due || r->hold || r->full;
}
static inline bool reset_holding(const struct reset_relay *r)
{
	return r->hold || r->followup_due || r->full;
}

/*
 * A backend message (already accounted by the stream). Returns how many
 * bytes to cut from its end: 0 pass it, 1 + m->len drop it; an error
 * whose position moved is rewritten in place first (shorter by the digits
 * the position lost, so maybe by none).
 */
uint32_t reset_server_msg(struct client *c, struct server *s, const struct frame_msg *m);

#endif
