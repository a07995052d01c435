/*
 * pin.h — does what a client sends create session state that cannot move?
 *
 *   pin_init()            a fresh watcher (start of a client's session)
 *   pin_feed_wire()       protocol bytes the client sends, in pieces of any size
 *   pin_feed_sql() / pin_end_sql()   plain SQL text (tests, tools)
 *   pin_at_boundary()     between protocol messages: the watcher holds no state
 *   pin_move()            carry a watcher's state to another struct pin
 *   pin_why()             NULL, or why the client is pinned (by what this watcher was fed)
 *   pin->lasts            ... by state no query can see (pinned until it leaves)
 *   pin->releases         a statement may have released session state: worth a probe
 *   pin->resets           a RESET or DISCARD was sent: settings on the backend are unknown
 *   pin_clear()           the reader took the news above: the watcher goes on watching
 *   pin_statement()       the start of the statement that pinned it, for the log
 *   pin_setting_tracked() is this setting carried from backend to backend?
 *
 * In transaction mode a client's next transaction may run on another
 * backend. Settings the server reports with ParameterStatus are tracked and
 * re-applied (see session.c); everything else a statement leaves behind in
 * the backend (LISTEN, SET of an unreported setting, SQL PREPARE, temporary
 * objects, WITH HOLD cursors, session advisory locks, set_config(..., false),
 * LOAD) pins the client to its backend. The watcher reads Query and Parse
 * bodies through sqllex, so comments and literals never mislead it, and it
 * decides while the bytes go out, before the backend can answer.
 *
 * A pin is of one of two kinds. State a query on the backend can see
 * (LISTEN, SQL PREPARE, temporary objects, WITH HOLD cursors, session
 * advisory locks) is probed for once the client may have released it
 * (UNLISTEN, DROP, DEALLOCATE, CLOSE, DISCARD, ROLLBACK, ABORT,
 * pg_advisory_unlock*, a pg_try_advisory_lock* that may have failed, CREATE
 * TEMP ... ON COMMIT DROP): see session.c. Anything else (settings, roles,
 * LOAD, text the lexer lost) "lasts": the client stays pinned until it
 * leaves. While a client is pinned, the feeder sets watch_releases so that
 * the pre-filter lets the releasing words through too.
 */
#ifndef PGLEASE_PIN_H
#define PGLEASE_PIN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "params.h"
#include "sqllex.h"

struct pin {
	struct sqllex lx;
	const struct param_set *reported;  /* what the backend reports (during a feed) */
	const char *why;                   /* a statement pins (the first, or the first that lasts) */
	bool lasts;                        /* ... and a probe could not tell when its state is gone */
	bool releases;                     /* a statement may have released session state */
	bool resets;                       /* a RESET or DISCARD went by */
	bool watch_releases;               /* the client is pinned: releasing words matter too (feeder, pin()) */
	bool capture;                      /* the pinning statement's text is still to copy */
	/* the protocol message being walked */
	uint8_t hdr[5], hdr_have, part;
	bool sql_fresh;                    /* no byte of this message's SQL was fed yet */
	uint32_t left;
	/* the statement being classified */
	uint8_t kind, ntok, set_stage, prev_word;
	bool declare_for;
	bool create_prefix;                /* CREATE [OR REPLACE] [GLOBAL | LOCAL] so far */
	/* a set_config( call being read */
	uint8_t cfg_depth, cfg_arg, cfg_argtok, cfg_local;
	bool cfg_name_ok;
	char name[SQLLEX_TEXT_MAX + 1];    /* SET's or set_config's setting name */
	char statement[SQLLEX_EXCERPT_MAX + 1];
};

/* backslash_quotes: the session has standard_conforming_strings off. */
void pin_init(struct pin *p, bool backslash_quotes);
/* Returns true when what was fed since pin_init()/pin_clear() pins the client. */
bool pin_feed_wire(struct pin *p, const struct param_set *reported, const uint8_t *data, size_t n);
void pin_feed_sql(struct pin *p, const struct param_set *reported, const char *sql, size_t n);
bool pin_end_sql(struct pin *p);
bool pin_at_boundary(const struct pin *p);
void pin_move(struct pin *dst, const struct pin *src);
const char *pin_why(const struct pin *p);
/* Forget why, lasts, releases and resets (the reader acted on them); mid-message state stays. */
void pin_clear(struct pin *p);
const char *pin_statement(const struct pin *p);
/* A ParameterStatus setting pglease re-applies with set_config(); reported NULL: any backend. */
bool pin_setting_tracked(const char *name, const struct param_set *reported);

#endif
