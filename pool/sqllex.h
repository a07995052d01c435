/*
 * sqllex.h — a streaming SQL tokenizer: just enough to see statements' words.
 *
 *   sqllex_init()  start a new text (a Query string, a Parse's query)
 *   sqllex_feed()  more bytes of it, in pieces of any size
 *   sqllex_end()   the text is over: flush the last token and statement
 *
 * It skips -- and nested slash-star comments, reads '...' strings ('' escape,
 * and backslash escapes in E'...' or when standard_conforming_strings is
 * off), $tag$...$tag$ dollar quotes and "quoted identifiers", and reports
 * words, string contents, a few punctuation marks and the ';' that ends a
 * statement to a callback. State lives in struct sqllex, so a 1 GB query can
 * be fed as it passes through the relay without ever being held whole.
 */
#ifndef PGLEASE_SQLLEX_H
#define PGLEASE_SQLLEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longer words and strings are reported cut, flagged truncated. */
#define SQLLEX_TEXT_MAX 63
/* The start of each statement is kept for logs, raw, from its first token. */
#define SQLLEX_EXCERPT_MAX 72

enum sqltok_type {
	SQLTOK_WORD,      /* keyword or identifier: lower-cased unless it was "quoted" */
	SQLTOK_STRING,    /* a string literal's contents (any kind, dollar quotes too) */
	SQLTOK_LPAREN,
	SQLTOK_RPAREN,
	SQLTOK_COMMA,
	SQLTOK_DOT,
	SQLTOK_OTHER,     /* numbers, operators, parameters, anything else */
	SQLTOK_END,       /* a statement ended: ';' or the end of the text */
};

struct sqltok {
	enum sqltok_type type;
	const char *text;  /* WORD and STRING: NUL-terminated, at most SQLLEX_TEXT_MAX bytes */
	uint8_t len;
	bool truncated;
	bool quoted;       /* a "quoted identifier" */
};

typedef void (*sqllex_cb)(void *arg, const struct sqltok *tok);

struct sqllex {
	sqllex_cb cb;
	void *arg;
	uint8_t state;          /* enum in sqllex.c */
	bool backslash_quotes;  /* standard_conforming_strings = off */
	bool e_string;          /* the string being read is E'...' */
	bool truncated;
	bool lost;              /* a dollar tag too long to match: ignore the rest */
	uint8_t len;            /* bytes in text */
	uint8_t tag_len;        /* dollar tag, with its $ signs */
	uint8_t tag_match;      /* bytes of the closing tag seen */
	uint8_t excerpt_len;
	bool stmt_started;      /* this statement's first byte was seen: the excerpt records */
	bool tok_seen;          /* ... and a token, so it did not just open a comment */
	uint32_t depth;         /* nesting of block comments */
	/* during sqllex_feed(): the piece, where we are, where to record from */
	const char *piece;
	size_t pos, rec_from;
	char text[SQLLEX_TEXT_MAX + 1];
	char tag[SQLLEX_TEXT_MAX + 1];
	char excerpt[SQLLEX_EXCERPT_MAX + 1];
};

void sqllex_init(struct sqllex *lx, sqllex_cb cb, void *arg);
void sqllex_feed(struct sqllex *lx, const char *data, size_t n);
void sqllex_end(struct sqllex *lx);
/* The start of the current statement as sent, for log lines ("" before its first token). */
const char *sqllex_excerpt(const struct sqllex *lx);

#endif
