/*
 * pin.c — classify a client's statements: does one leave state behind?
 *
 * Tokens come from sqllex one at a time and each statement is classified
 * by a small state machine on its first words, plus function calls anywhere
 * in it (session advisory locks, set_config). What is not recognised does
 * not pin: state created inside functions or DO blocks is not visible here
 * (see README, "Transaction pooling"). Statements that may release state
 * are noticed the same way, so that session.c knows when a probe is worth
 * its round trip.
 */
#include <assert.h>
#include <string.h>
#include <strings.h>

#include "pin.h"

/* Words the classifier cares about; everything else is W_NONE. */
enum word {
	W_NONE, W_LISTEN, W_LOAD, W_PREPARE, W_TRANSACTION, W_SET, W_LOCAL, W_SESSION,
	W_CHARACTERISTICS, W_AUTHORIZATION, W_ROLE, W_TIME, W_NAMES, W_SCHEMA, W_CONSTRAINTS,
	W_CREATE, W_TEMP, W_TEMPORARY, W_PG_TEMP, W_DECLARE, W_WITH, W_HOLD, W_FOR, W_SELECT,
	W_INTO, W_TRUE, W_FALSE, W_SET_CONFIG, W_ADVISORY, W_OR, W_REPLACE, W_GLOBAL, W_UNLOGGED,
	W_RESET, W_DISCARD, W_UNLISTEN, W_DROP, W_DEALLOCATE, W_CLOSE, W_ROLLBACK, W_ABORT,
	W_UNLOCK, W_TRY_ADVISORY,
};

static const struct { const char *text; uint8_t len; uint8_t id; } words[] = {
#define WD(t, id) { t, sizeof(t) - 1, id }
	WD("listen", W_LISTEN), WD("load", W_LOAD), WD("prepare", W_PREPARE),
	WD("transaction", W_TRANSACTION), WD("set", W_SET), WD("local", W_LOCAL),
	WD("session", W_SESSION), WD("characteristics", W_CHARACTERISTICS),
	WD("authorization", W_AUTHORIZATION), WD("role", W_ROLE), WD("time", W_TIME),
	WD("names", W_NAMES), WD("schema", W_SCHEMA), WD("constraints", W_CONSTRAINTS),
	WD("create", W_CREATE), WD("temp", W_TEMP), WD("temporary", W_TEMPORARY),
	WD("pg_temp", W_PG_TEMP), WD("declare", W_DECLARE), WD("with", W_WITH), WD("hold", W_HOLD),
	WD("for", W_FOR), WD("select", W_SELECT), WD("into", W_INTO), WD("true", W_TRUE),
	WD("false", W_FALSE), WD("set_config", W_SET_CONFIG),
	WD("pg_advisory_lock", W_ADVISORY), WD("pg_advisory_lock_shared", W_ADVISORY),
	WD("pg_try_advisory_lock", W_TRY_ADVISORY), WD("pg_try_advisory_lock_shared", W_TRY_ADVISORY),
	WD("pg_advisory_unlock", W_UNLOCK), WD("pg_advisory_unlock_shared", W_UNLOCK),
	WD("pg_advisory_unlock_all", W_UNLOCK),
	WD("or", W_OR), WD("replace", W_REPLACE), WD("global", W_GLOBAL), WD("unlogged", W_UNLOGGED),
	WD("reset", W_RESET), WD("discard", W_DISCARD), WD("unlisten", W_UNLISTEN), WD("drop", W_DROP),
	WD("deallocate", W_DEALLOCATE), WD("close", W_CLOSE), WD("rollback", W_ROLLBACK), WD("abort", W_ABORT),
#undef WD
};

/* What a statement's first word made of it. */
enum kind { K_OTHER, K_SET, K_PREPARE, K_CREATE, K_DECLARE, K_SELECT };

/* Where a SET statement has got to. */
enum set_stage { SET_START, SET_SESSION, SET_NAME, SET_DONE };

/* Reported settings a client may change and pglease can replay with set_config(). */
static const char *const tracked[] = {
	"application_name", "client_encoding", "datestyle", "intervalstyle", "timezone",
	"standard_conforming_strings", "default_transaction_read_only", "search_path",
};

bool pin_setting_tracked(const char *name, const struct param_set *reported)
{
	for (size_t i = 0; i < sizeof(tracked) / sizeof(*tracked); i++)
		if (strcasecmp(name, tracked[i]) == 0)
			return !reported || params_get(reported, name) != NULL;
	return false;
}

/* Every word of every query is looked up: the table is indexed by length, then first byte. */
#define N_WORDS (sizeof(words) / sizeof(*words))
static uint8_t by_len[SQLLEX_TEXT_MAX + 2];   /* words[by_len[l] .. by_len[l + 1]) have length l */
static uint8_t sorted[N_WORDS];

static void index_words(void)
{
	uint8_t n = 0;

	for (int len = 0; len <= SQLLEX_TEXT_MAX; len++) {
		by_len[len] = n;
		for (uint8_t i = 0; i < N_WORDS; i++)
			if (words[i].len == len)
				sorted[n++] = i;
	}
	by_len[SQLLEX_TEXT_MAX + 1] = n;
}

static enum word word_id(const struct sqltok *t)
{
	if (t->type != SQLTOK_WORD || t->truncated)
		return W_NONE;
	if (by_len[SQLLEX_TEXT_MAX + 1] == 0)
		index_words();
	for (uint8_t k = by_len[t->len]; k < by_len[t->len + 1]; k++) {
		const char *w = words[sorted[k]].text;
		if (w[0] == t->text[0] && memcmp(w, t->text, t->len) == 0)
			return (enum word)words[sorted[k]].id;
	}
	return W_NONE;
}

/* Whether a probe could see the state: a pin that lasts takes over the reason and the log text. */
enum pin_kind { PROBEABLE, LASTS };

static void pin(struct pin *p, const char *why, enum pin_kind kind)
{
	bool lasts = kind == LASTS;

	/* The client is pinned from here on: a release later in this feed must not be skipped. */
	p->watch_releases = true;
	if (p->why && (p->lasts || !lasts))
		return;
	p->why = why;
	p->lasts = lasts;
	p->capture = true;
}

static void capture(struct pin *p)
{
	if (!p->capture)
		return;
	const char *from = sqllex_excerpt(&p->lx);
	size_t len = 0;

	/* One log line: whitespace and control bytes squeezed to single spaces. */
	for (; *from; from++) {
		bool blank = (unsigned char)*from <= ' ' || *from == 0x7f;
		if (blank && (len == 0 || p->statement[len - 1] == ' '))
			continue;
		assert(len + 1 < sizeof(p->statement));
		p->statement[len++] = blank ? ' ' : *from;
	}
	while (len && p->statement[len - 1] == ' ')
		len--;
	p->statement[len] = '\0';
	p->capture = false;
}

/* ---- SET ---- */

static void set_name(struct pin *p, const char *name)
{
	assert(strlen(name) < sizeof(p->name));
	strcpy(p->name, name);
	p->set_stage = SET_NAME;
}

/* The name is complete: a tracked setting follows the client, any other pins it. */
static void set_decide(struct pin *p, bool custom)
{
	p->set_stage = SET_DONE;
	if (custom || !pin_setting_tracked(p->name, p->reported))
		pin(p, "SET of a setting that is not reported", LASTS);
}

static void set_pins(struct pin *p, const char *why)
{
	p->set_stage = SET_DONE;
	pin(p, why, LASTS);
}

static void set_word(struct pin *p, const struct sqltok *t, enum word w)
{
	bool session = p->set_stage == SET_SESSION;

	if (t->quoted)
		w = W_NONE;
	if (!session && (w == W_LOCAL || w == W_TRANSACTION || w == W_CONSTRAINTS))
		p->set_stage = SET_DONE;
	else if (!session && w == W_SESSION)
		p->set_stage = SET_SESSION;
	else if (w == W_ROLE || (session && w == W_AUTHORIZATION))
		set_pins(p, "SET ROLE / SESSION AUTHORIZATION");
	else if (session && w == W_CHARACTERISTICS)
		set_pins(p, "SET SESSION CHARACTERISTICS");
	else if (w == W_TIME)
		set_name(p, "timezone");
	else if (w == W_NAMES)
		set_name(p, "client_encoding");
	else if (w == W_SCHEMA)
		set_name(p, "search_path");
	else if (t->type == SQLTOK_WORD && !t->truncated)
		set_name(p, t->text);
	else
		set_decide(p, true);
}

static void set_token(struct pin *p, const struct sqltok *t, enum word w)
{
	switch (p->set_stage) {
	case SET_START: case SET_SESSION:
		set_word(p, t, w);
		break;
	case SET_NAME:
		set_decide(p, t->type == SQLTOK_DOT);
		break;
	default:
		break;
	}
}

/* ---- set_config(name, value, is_local) ---- */

/* is_local: 1 true, 0 false, 2 not a constant we can read. */
static uint8_t truth(const struct sqltok *t)
{
	static const char *const yes[] = { "t", "true", "on", "yes", "y", "1" };
	static const char *const no[] = { "f", "false", "off", "no", "n", "0" };

	if (t->type == SQLTOK_WORD && !t->quoted)
		return word_id(t) == W_TRUE ? 1 : word_id(t) == W_FALSE ? 0 : 2;
	if (t->type != SQLTOK_STRING || t->truncated)
		return 2;
	for (size_t i = 0; i < sizeof(yes) / sizeof(*yes); i++) {
		if (strcasecmp(t->text, yes[i]) == 0)
			return 1;
		if (strcasecmp(t->text, no[i]) == 0)
			return 0;
	}
	return 2;
}

static void cfg_close(struct pin *p)
{
	p->cfg_depth = 0;
	if (p->cfg_local != 1 && !(p->cfg_name_ok && pin_setting_tracked(p->name, p->reported)))
		pin(p, "set_config(..., false) of a setting that is not reported", LASTS);
}

static void cfg_token(struct pin *p, const struct sqltok *t)
{
	if (t->type == SQLTOK_LPAREN) {
		p->cfg_depth++;
	} else if (t->type == SQLTOK_RPAREN) {
		if (--p->cfg_depth == 0)
			cfg_close(p);
	} else if (p->cfg_depth == 1 && t->type == SQLTOK_COMMA) {
		p->cfg_arg++;
		p->cfg_argtok = 0;
		return;
	}
	if (p->cfg_depth != 1 || p->cfg_argtok++ > 0)
		return;
	if (p->cfg_arg == 0 && t->type == SQLTOK_STRING && !t->truncated) {
		strcpy(p->name, t->text);
		p->cfg_name_ok = true;
	} else if (p->cfg_arg == 2) {
		p->cfg_local = truth(t);
	}
}

static void cfg_open(struct pin *p)
{
	p->cfg_depth = 1;
	p->cfg_arg = p->cfg_argtok = 0;
	p->cfg_local = 2;
	p->cfg_name_ok = false;
}

/* ---- statements ---- */

static void first_word(struct pin *p, const struct sqltok *t, enum word w)
{
	if (t->quoted)
		return;
	switch (w) {
	case W_LISTEN: pin(p, "LISTEN", PROBEABLE); break;
	case W_LOAD: pin(p, "LOAD", LASTS); break;
	case W_PREPARE: p->kind = K_PREPARE; break;
	case W_SET: p->kind = K_SET; break;
	case W_CREATE: p->kind = K_CREATE; p->create_prefix = true; break;
	case W_DECLARE: p->kind = K_DECLARE; break;
	case W_SELECT: case W_WITH: p->kind = K_SELECT; break;
	/* Settings pglease applied may be gone (or not, if it rolls back). */
	case W_RESET: p->resets = true; break;
	case W_DISCARD: p->resets = p->releases = true; break;
	case W_UNLISTEN: case W_DROP: case W_DEALLOCATE: case W_CLOSE: case W_ROLLBACK: case W_ABORT:
		p->releases = true;
		break;
	default: break;
	}
}

static void later_word(struct pin *p, const struct sqltok *t, enum word w, uint8_t idx)
{
	bool temp = w == W_TEMP || w == W_TEMPORARY;

	switch (p->kind) {
	case K_PREPARE:
		/* PREPARE TRANSACTION is two-phase commit, not a prepared statement. */
		if (idx == 1 && w != W_TRANSACTION)
			pin(p, "SQL PREPARE", PROBEABLE);
		break;
	case K_SET:
		set_token(p, t, w);
		break;
	case K_CREATE:
		if ((temp && p->create_prefix) || w == W_PG_TEMP)
			pin(p, "temporary object", PROBEABLE);
		/* ON COMMIT DROP: gone at the end of the transaction. */
		p->releases = p->releases || w == W_DROP;
		p->create_prefix = p->create_prefix && (w == W_OR || w == W_REPLACE || w == W_GLOBAL || w == W_LOCAL);
		break;
	case K_DECLARE:
		p->declare_for = p->declare_for || w == W_FOR;
		if (!p->declare_for && p->prev_word == W_WITH && w == W_HOLD)
			pin(p, "WITH HOLD cursor", PROBEABLE);
		break;
	case K_SELECT:
		if (p->prev_word == W_INTO && temp)
			pin(p, "temporary object", PROBEABLE);
		break;
	}
}

static void statement_end(struct pin *p)
{
	if (p->lx.lost)
		pin(p, "a dollar-quote tag too long to follow", LASTS);
	if (p->kind == K_SET && p->set_stage == SET_NAME)
		set_decide(p, false);
	if (p->cfg_depth)
		cfg_close(p);
	capture(p);
	p->kind = K_OTHER;
	p->ntok = p->set_stage = p->prev_word = p->cfg_depth = 0;
	p->declare_for = p->create_prefix = false;
}

static void function_call(struct pin *p, enum word fn)
{
	if (fn == W_ADVISORY || fn == W_TRY_ADVISORY)
		pin(p, "session advisory lock", PROBEABLE);
	/* A try-lock that returned false holds nothing. */
	if (fn == W_UNLOCK || fn == W_TRY_ADVISORY)
		p->releases = true;
}

static void on_token(void *arg, const struct sqltok *t)
{
	struct pin *p = arg;

	if (t->type == SQLTOK_END)
		return statement_end(p);
	enum word w = word_id(t);
	uint8_t idx = p->ntok;
	if (p->ntok < UINT8_MAX)
		p->ntok++;
	if (p->cfg_depth)
		cfg_token(p, t);
	else if (t->type == SQLTOK_LPAREN && p->prev_word == W_SET_CONFIG)
		cfg_open(p);
	if (t->type == SQLTOK_LPAREN)
		function_call(p, (enum word)p->prev_word);
	if (idx == 0)
		first_word(p, t, w);
	else
		later_word(p, t, w, idx);
	p->prev_word = (uint8_t)w;
}

/* ---- feeding ---- */

void pin_init(struct pin *p, bool backslash_quotes)
{
	memset(p, 0, sizeof(*p));
	p->lx.backslash_quotes = backslash_quotes;
	sqllex_init(&p->lx, on_token, p);
}

void pin_feed_sql(struct pin *p, const struct param_set *reported, const char *sql, size_t n)
{
	p->reported = reported;
	sqllex_feed(&p->lx, sql, n);
}

bool pin_end_sql(struct pin *p)
{
	sqllex_end(&p->lx);
	return p->why != NULL;
}

/* Parts of a message body: a Parse's statement name, the SQL, the rest. */
enum { PART_NAME, PART_SQL, PART_REST };

static size_t header_byte(struct pin *p, uint8_t b)
{
	assert(p->hdr_have < sizeof(p->hdr));
	p->hdr[p->hdr_have++] = b;
	if (p->hdr_have < 5)
		return 1;
	uint32_t len = (uint32_t)p->hdr[1] << 24 | (uint32_t)p->hdr[2] << 16 | (uint32_t)p->hdr[3] << 8 | p->hdr[4];
	p->left = len > 4 ? len - 4 : 0;
	p->part = p->hdr[0] == 'Q' ? PART_SQL : p->hdr[0] == 'P' ? PART_NAME : PART_REST;
	p->sql_fresh = p->part == PART_SQL;
	if (p->left == 0)
		p->hdr_have = 0;
	return 1;
}

/* Does text start with word (lower case), in any case? */
static bool starts_ci(const uint8_t *text, size_t n, const char *word)
{
	size_t i = 0;

	for (; word[i]; i++)
		if (i >= n || (text[i] | 0x20) != (uint8_t)word[i])
			return false;
	return true;
}

/*
 * Every statement that pins or resets contains one of these words in some
 * case (SET also covers RESET and set_config, TEMP covers TEMPORARY and
 * pg_temp), or a dollar quote whose tag might be too long to follow. Most
 * queries contain none, and skipping the lexer for them is most of the
 * watcher's cost. A false alarm only means the text is lexed.
 */
static const bool starts_a_needle[256] = {
	['l'] = 1, ['L'] = 1, ['s'] = 1, ['S'] = 1, ['p'] = 1, ['P'] = 1, ['t'] = 1, ['T'] = 1,
	['h'] = 1, ['H'] = 1, ['a'] = 1, ['A'] = 1, ['d'] = 1, ['D'] = 1, ['$'] = 1,
};

/*
 * For a pinned client, statements that may release state matter too: the
 * words above cover UNLISTEN, DISCARD and pg_advisory_unlock*; these the
 * rest. Unpinned clients never pay for them.
 */
static const bool starts_a_release[256] = {
	['d'] = 1, ['D'] = 1, ['c'] = 1, ['C'] = 1, ['r'] = 1, ['R'] = 1, ['a'] = 1, ['A'] = 1,
};

#define PAIR(a, b) ((unsigned)(a) << 8 | (unsigned)(b))

static bool may_release(const uint8_t *t, size_t left)
{
	switch (PAIR(t[0] | 0x20, t[1] | 0x20)) {
	case PAIR('d', 'r'): return starts_ci(t, left, "drop");
	case PAIR('d', 'e'): return starts_ci(t, left, "deallocate");
	case PAIR('c', 'l'): return starts_ci(t, left, "close");
	case PAIR('r', 'o'): return starts_ci(t, left, "rollback");
	case PAIR('a', 'b'): return starts_ci(t, left, "abort");
	default: return false;
	}
}

/* Two bytes decide before any word is compared: most letters start no needle. */
static bool may_matter(const uint8_t *text, size_t n, bool releases)
{
	for (size_t i = 0; i + 1 < n; i++) {
		const uint8_t *t = text + i;
		size_t left = n - i;
		if (releases && starts_a_release[t[0]] && may_release(t, left))
			return true;
		if (!starts_a_needle[t[0]])
			continue;
		switch (PAIR(t[0] | 0x20, t[1] | 0x20)) {
		case PAIR('l', 'i'): if (starts_ci(t, left, "listen")) return true; break;
		case PAIR('l', 'o'): if (starts_ci(t, left, "load")) return true; break;
		case PAIR('s', 'e'): if (starts_ci(t, left, "set")) return true; break;
		case PAIR('p', 'r'): if (starts_ci(t, left, "prepare")) return true; break;
		case PAIR('t', 'e'): if (starts_ci(t, left, "temp")) return true; break;
		case PAIR('h', 'o'): if (starts_ci(t, left, "hold")) return true; break;
		case PAIR('a', 'd'): if (starts_ci(t, left, "advisory")) return true; break;
		case PAIR('d', 'i'): if (starts_ci(t, left, "discard")) return true; break;
		default: if (t[0] == '$' && (t[1] < '0' || t[1] > '9')) return true; break;
		}
	}
	return false;
}

/* Up to the body's next NUL: the end of the name or of the SQL. */
static size_t body_bytes(struct pin *p, const uint8_t *data, size_t n)
{
	const uint8_t *nul = p->part == PART_REST ? NULL : memchr(data, 0, n);
	size_t take = nul ? (size_t)(nul - data) + 1 : n;

	/* The whole SQL is here and nothing in it can matter: no lexing. */
	if (p->part == PART_SQL && nul && p->sql_fresh && !may_matter(data, take - 1, p->watch_releases)) {
		p->part = PART_REST;
		return take;
	}
	p->sql_fresh = false;
	if (p->part == PART_SQL)
		sqllex_feed(&p->lx, (const char *)data, nul ? take - 1 : take);
	if (nul && p->part == PART_SQL)
		sqllex_end(&p->lx);
	if (nul && p->part == PART_NAME)
		p->sql_fresh = true;
	if (nul)
		p->part = p->part == PART_NAME ? PART_SQL : PART_REST;
	return take;
}

bool pin_feed_wire(struct pin *p, const struct param_set *reported, const uint8_t *data, size_t n)
{
	size_t i = 0;

	p->reported = reported;
	/* Once pinned, the rest of this piece still goes through: the log shows the whole statement. */
	while (i < n) {
		if (p->left == 0) {
			i += header_byte(p, data[i]);
			continue;
		}
		size_t avail = n - i < p->left ? n - i : p->left;
		size_t used = body_bytes(p, data + i, avail);
		/* Every step moves on, and stays inside the message. */
		assert(used > 0 && used <= avail);
		i += used;
		p->left -= (uint32_t)used;
		if (p->left > 0)
			continue;
		if (p->part != PART_REST)
			sqllex_end(&p->lx);
		p->hdr_have = 0;
	}
	capture(p);
	return p->why != NULL;
}

bool pin_at_boundary(const struct pin *p)
{
	return p->left == 0 && p->hdr_have == 0;
}

/* The lexer calls back with a pointer to its watcher: point it at the new home. */
void pin_move(struct pin *dst, const struct pin *src)
{
	memcpy(dst, src, sizeof(*dst));
	dst->lx.arg = dst;
}

const char *pin_why(const struct pin *p)
{
	return p->why;
}

void pin_clear(struct pin *p)
{
	p->why = NULL;
	p->lasts = p->releases = p->resets = false;
}

const char *pin_statement(const struct pin *p)
{
	return p->statement;
}
