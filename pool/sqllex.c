/*
 * sqllex.c — a streaming SQL tokenizer: a byte-at-a-time state machine.
 *
 * It follows PostgreSQL's scanner only as far as telling code from comments
 * and literals: a keyword inside a string, a comment or a dollar-quoted
 * function body must never be taken for a statement's own word, and a ';'
 * inside them must not end a statement. Everything else is kept coarse.
 */
#include <stdint.h>
#include <string.h>

#include "sqllex.h"

enum {
	S_SPACE,         /* between tokens */
	S_WORD,
	S_NUMBER,
	S_DASH,          /* '-': an operator or the start of -- */
	S_LINE_COMMENT,
	S_SLASH,         /* '/': an operator or the start of a block comment */
	S_BLOCK,         /* inside block comments, depth deep */
	S_BLOCK_STAR,    /* ... just after a '*' */
	S_BLOCK_SLASH,   /* ... just after a '/' */
	S_STRING,
	S_STRING_QUOTE,  /* a ' inside a string: its end, or '' */
	S_STRING_BS,     /* the byte after a backslash escape */
	S_IDENT,         /* inside "..." */
	S_IDENT_QUOTE,   /* a " inside it: its end, or "" */
	S_DOLLAR_TAG,    /* after '$': a dollar quote's opening tag, or a $1 */
	S_DOLLAR_BODY,
};

void sqllex_init(struct sqllex *lx, sqllex_cb cb, void *arg)
{
	bool bq = lx->backslash_quotes;

	memset(lx, 0, sizeof(*lx));
	lx->cb = cb;
	lx->arg = arg;
	lx->backslash_quotes = bq;
}

const char *sqllex_excerpt(const struct sqllex *lx)
{
	return lx->excerpt;
}

#define NOWHERE SIZE_MAX

/*
 * The excerpt is copied a piece at a time, not byte by byte: the lexer's
 * per-byte loop is the relay's hot path, and the text is wanted only when a
 * statement pins its client.
 */
static void excerpt_flush(struct sqllex *lx, size_t upto)
{
	if (lx->rec_from == NOWHERE || upto <= lx->rec_from)
		return;
	size_t take = upto - lx->rec_from, room = SQLLEX_EXCERPT_MAX - lx->excerpt_len;
	if (take > room)
		take = room;
	memcpy(lx->excerpt + lx->excerpt_len, lx->piece + lx->rec_from, take);
	lx->excerpt_len = (uint8_t)(lx->excerpt_len + take);
	lx->excerpt[lx->excerpt_len] = '\0';
	lx->rec_from = upto;
}

static void excerpt_reset(struct sqllex *lx)
{
	lx->excerpt_len = 0;
	lx->excerpt[0] = '\0';
	lx->stmt_started = lx->tok_seen = false;
	lx->rec_from = NOWHERE;
}

static bool is_space(unsigned char c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

/* Byte classes: a table, since this is asked for every byte the relay passes. */
enum { C_START = 1, C_WORD = 2 };
static const uint8_t cclass[256] = {
	['$'] = C_WORD,
	['0' ... '9'] = C_WORD,
	['A' ... 'Z'] = C_START | C_WORD, ['_'] = C_START | C_WORD, ['a' ... 'z'] = C_START | C_WORD,
	[0x80 ... 0xff] = C_START | C_WORD,
};

static inline bool word_start(unsigned char c)
{
	return cclass[c] & C_START;
}

static inline bool word_char(unsigned char c)
{
	return cclass[c] & C_WORD;
}

static inline void text_add(struct sqllex *lx, unsigned char c, bool fold)
{
	if (lx->len == SQLLEX_TEXT_MAX) {
		lx->truncated = true;
		return;
	}
	if (fold && c >= 'A' && c <= 'Z')
		c = (unsigned char)(c - 'A' + 'a');
	lx->text[lx->len++] = (char)c;
}

static void begin(struct sqllex *lx, int state)
{
	lx->state = (uint8_t)state;
	lx->len = 0;
	lx->truncated = false;
}

static void emit(struct sqllex *lx, enum sqltok_type type, bool quoted)
{
	struct sqltok t = { type, lx->text, lx->len, lx->truncated, quoted };

	lx->text[lx->len] = '\0';
	lx->tok_seen = true;
	if (type == SQLTOK_END && lx->piece)
		excerpt_flush(lx, lx->pos);
	lx->cb(lx->arg, &t);
	if (type == SQLTOK_END)
		excerpt_reset(lx);
	begin(lx, S_SPACE);
}

static bool space_byte(struct sqllex *lx, unsigned char c)
{
	static const enum sqltok_type punct[128] = {
		['('] = SQLTOK_LPAREN, [')'] = SQLTOK_RPAREN, [','] = SQLTOK_COMMA,
		['.'] = SQLTOK_DOT, [';'] = SQLTOK_END,
	};

	if (is_space(c))
		return true;
	if (word_start(c)) {
		begin(lx, S_WORD);
		text_add(lx, c, true);
		return true;
	}
	switch (c) {
	case '\'': lx->e_string = false; begin(lx, S_STRING); return true;
	case '"': begin(lx, S_IDENT); return true;
	case '$': begin(lx, S_DOLLAR_TAG); lx->tag[0] = '$'; lx->tag_len = 1; return true;
	case '-': begin(lx, S_DASH); return true;
	case '/': begin(lx, S_SLASH); return true;
	}
	if (c >= '0' && c <= '9') {
		begin(lx, S_NUMBER);
		return true;
	}
	emit(lx, c < 128 && punct[c] ? punct[c] : SQLTOK_OTHER, false);
	return true;
}

static bool word_byte(struct sqllex *lx, unsigned char c)
{
	if (word_char(c)) {
		text_add(lx, c, true);
		return true;
	}
	if (c == '\'' && lx->len == 1 && lx->text[0] == 'e') {
		lx->e_string = true;
		begin(lx, S_STRING);
		return true;
	}
	emit(lx, SQLTOK_WORD, false);
	return false;
}

static bool number_byte(struct sqllex *lx, unsigned char c)
{
	if (word_char(c) || c == '.')
		return true;
	emit(lx, SQLTOK_OTHER, false);
	return false;
}

/* A '-' or '/' that does not start a comment is an operator. */
static bool maybe_comment(struct sqllex *lx, unsigned char c, unsigned char second, int comment)
{
	if (c != second) {
		emit(lx, SQLTOK_OTHER, false);
		return false;
	}
	/* A comment before the statement's first token is not part of its excerpt. */
	if (!lx->tok_seen)
		excerpt_reset(lx);
	lx->state = (uint8_t)comment;
	lx->depth = 1;
	return true;
}

static bool block_byte(struct sqllex *lx, unsigned char c)
{
	if (lx->state == S_BLOCK_STAR && c == '/') {
		lx->state = --lx->depth ? S_BLOCK : S_SPACE;
		return true;
	}
	if (lx->state == S_BLOCK_SLASH && c == '*') {
		lx->depth++;
		lx->state = S_BLOCK;
		return true;
	}
	lx->state = c == '*' ? S_BLOCK_STAR : c == '/' ? S_BLOCK_SLASH : S_BLOCK;
	return true;
}

static bool string_byte(struct sqllex *lx, unsigned char c)
{
	if (c == '\'')
		lx->state = S_STRING_QUOTE;
	else if (c == '\\' && (lx->e_string || lx->backslash_quotes))
		lx->state = S_STRING_BS;
	else
		text_add(lx, c, false);
	return true;
}

/* After a closing quote: a doubled quote is part of the text, else it ended. */
static bool quote_byte(struct sqllex *lx, unsigned char c, unsigned char quote, int inside,
		       enum sqltok_type type)
{
	if (c == quote) {
		text_add(lx, c, false);
		lx->state = (uint8_t)inside;
		return true;
	}
	emit(lx, type, type == SQLTOK_WORD);
	return false;
}

static bool dollar_tag_byte(struct sqllex *lx, unsigned char c)
{
	bool ok = lx->tag_len > 1 ? word_char(c) && c != '$' : word_start(c);

	if (c == '$' || ok) {
		if (lx->tag_len == SQLLEX_TEXT_MAX) {
			lx->lost = true;
			return true;
		}
		lx->tag[lx->tag_len++] = (char)c;
		if (c == '$') {
			lx->tag_match = 0;
			lx->state = S_DOLLAR_BODY;
		}
		return true;
	}
	/* $1, or a lone $: not a quote. */
	emit(lx, SQLTOK_OTHER, false);
	return false;
}

/* Dollar-quoted text is never inspected: reported as a string of unknown contents. */
static bool dollar_body_byte(struct sqllex *lx, unsigned char c)
{
	if ((char)c == lx->tag[lx->tag_match])
		lx->tag_match++;
	else
		lx->tag_match = c == '$' ? 1 : 0;
	if (lx->tag_match == lx->tag_len) {
		lx->truncated = true;
		emit(lx, SQLTOK_STRING, false);
	}
	return true;
}

/* Returns false when c must be offered again in the new state. */
static bool step(struct sqllex *lx, unsigned char c)
{
	switch (lx->state) {
	case S_SPACE: return space_byte(lx, c);
	case S_WORD: return word_byte(lx, c);
	case S_NUMBER: return number_byte(lx, c);
	case S_DASH: return maybe_comment(lx, c, '-', S_LINE_COMMENT);
	case S_SLASH: return maybe_comment(lx, c, '*', S_BLOCK);
	case S_LINE_COMMENT:
		if (c == '\n' || c == '\r')
			lx->state = S_SPACE;
		return true;
	case S_BLOCK: case S_BLOCK_STAR: case S_BLOCK_SLASH: return block_byte(lx, c);
	case S_STRING: return string_byte(lx, c);
	case S_STRING_QUOTE: return quote_byte(lx, c, '\'', S_STRING, SQLTOK_STRING);
	case S_STRING_BS: text_add(lx, c, false); lx->state = S_STRING; return true;
	case S_IDENT:
		if (c == '"')
			lx->state = S_IDENT_QUOTE;
		else
			text_add(lx, c, false);
		return true;
	case S_IDENT_QUOTE: return quote_byte(lx, c, '"', S_IDENT, SQLTOK_WORD);
	case S_DOLLAR_TAG: return dollar_tag_byte(lx, c);
	case S_DOLLAR_BODY: return dollar_body_byte(lx, c);
	}
	return true;
}

void sqllex_feed(struct sqllex *lx, const char *data, size_t n)
{
	lx->piece = data;
	lx->rec_from = lx->stmt_started ? 0 : NOWHERE;
	for (size_t i = 0; i < n && !lx->lost;) {
		lx->pos = i;
		if (lx->state == S_SPACE && !lx->stmt_started && !is_space((unsigned char)data[i]) && data[i] != ';') {
			lx->stmt_started = true;
			lx->rec_from = i;
		}
		if (!step(lx, (unsigned char)data[i++])) {
			i--;
			continue;
		}
		/* The common case, a run of word bytes, without a trip through step(). */
		while (lx->state == S_WORD && i < n && word_char((unsigned char)data[i]))
			text_add(lx, (unsigned char)data[i++], true);
	}
	excerpt_flush(lx, n);
	lx->piece = NULL;
	lx->rec_from = NOWHERE;
}

void sqllex_end(struct sqllex *lx)
{
	switch (lx->state) {
	case S_WORD: emit(lx, SQLTOK_WORD, false); break;
	case S_IDENT_QUOTE: emit(lx, SQLTOK_WORD, true); break;
	case S_STRING_QUOTE: emit(lx, SQLTOK_STRING, false); break;
	case S_NUMBER: case S_DASH: case S_SLASH: case S_DOLLAR_TAG: emit(lx, SQLTOK_OTHER, false); break;
	}
	emit(lx, SQLTOK_END, false);
	sqllex_init(lx, lx->cb, lx->arg);
}
