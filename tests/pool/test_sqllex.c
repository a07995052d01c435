/*
 * test_sqllex.c — Criterion tests for pool/sqllex.c, the streaming SQL
 * tokenizer under the pin watcher and the RESET planner.
 *
 * Every text is fed whole and in pieces of every size (each piece in a
 * buffer of its exact size, so ASan sees a read past it) and must lex the
 * same: the lexer keeps all its state between pieces.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sqllex.h"

/* ---- the lexer ---- */

struct toks {
	char out[1024];
	size_t len;
};

static void collect(void *arg, const struct sqltok *t)
{
	static const char *const names[] = { "W", "S", "(", ")", ",", ".", "O", ";" };
	struct toks *k = arg;
	int n = t->type == SQLTOK_WORD || t->type == SQLTOK_STRING ?
		snprintf(k->out + k->len, sizeof(k->out) - k->len, "%s:%s%s ", names[t->type], t->text,
			 t->truncated ? "~" : "") :
		snprintf(k->out + k->len, sizeof(k->out) - k->len, "%s ", names[t->type]);
	k->len += (size_t)n;
}

static const char *lex(const char *sql, size_t piece)
{
	static struct toks k;
	struct sqllex lx = { 0 };
	size_t n = strlen(sql);

	memset(&k, 0, sizeof(k));
	sqllex_init(&lx, collect, &k);
	for (size_t i = 0; i < n; i += piece) {
		size_t m = n - i < piece ? n - i : piece;
		char *copy = malloc(m);  /* exact size: ASan catches reads past the piece */
		memcpy(copy, sql + i, m);
		sqllex_feed(&lx, copy, m);
		free(copy);
	}
	sqllex_end(&lx);
	return k.out;
}

static void lexes_to(const char *sql, const char *want)
{
	for (size_t piece = 1; piece <= strlen(sql) + 1; piece++)
		cr_assert_str_eq(lex(sql, piece), want, "sql <%s> piece %zu", sql, piece);
}

Test(sqllex, words_are_lower_cased_and_punctuation_reported)
{
	lexes_to("SELECT pg_catalog.Foo(1, 'x');", "W:select W:pg_catalog . W:foo ( O , S:x ) ; ; ");
}

Test(sqllex, comments_are_skipped_nested_too)
{
	lexes_to("-- listen x\nselect /* a /* listen */ b */ 1 /**/", "W:select O ; ");
	lexes_to("a - b / c -- tail", "W:a O W:b O W:c ; ");
}

Test(sqllex, strings_with_doubled_quotes_and_e_strings)
{
	lexes_to("select 'it''s; listen'", "W:select S:it's; listen ; ");
	lexes_to("select E'a\\'b;c' x", "W:select S:a'b;c W:x ; ");
	lexes_to("select e'\\\\' ;listen", "W:select S:\\ ; W:listen ; ");
}

Test(sqllex, dollar_quotes_and_parameters)
{
	lexes_to("do $$ listen x; $$; select $1", "W:do S:~ ; W:select O O ; ");
	lexes_to("create function f() as $body$ a $b$ ; $bod $body$ language sql",
		 "W:create W:function W:f ( ) W:as S:~ W:language W:sql ; ");
	lexes_to("select a$b$c", "W:select W:a$b$c ; ");
}

Test(sqllex, quoted_identifiers_keep_case)
{
	lexes_to("select \"My\"\"Col;\" from t", "W:select W:My\"Col; W:from W:t ; ");
}

Test(sqllex, backslash_in_plain_strings_only_when_standard_strings_are_off)
{
	struct toks k = { 0 };
	struct sqllex lx = { .backslash_quotes = true };
	const char *sql = "select 'a\\';listen' x";

	sqllex_init(&lx, collect, &k);
	sqllex_feed(&lx, sql, strlen(sql));
	sqllex_end(&lx);
	cr_assert_str_eq(k.out, "W:select S:a';listen W:x ; ");
	cr_assert_str_eq(lex(sql, 100), "W:select S:a\\ ; W:listen ; ");
}

Test(sqllex, long_words_are_truncated)
{
	char sql[200];
	memset(sql, 'a', 100);
	sql[100] = '\0';
	const char *out = lex(sql, 7);
	cr_assert(strstr(out, "~ ;") != NULL, "%s", out);
}

Test(sqllex, excerpt_starts_at_the_first_token)
{
	struct toks k = { 0 };
	struct sqllex lx = { 0 };
	const char *sql = "  LISTEN  /* c */\n\t chan -- x\n";

	sqllex_init(&lx, collect, &k);
	sqllex_feed(&lx, sql, strlen(sql));
	cr_assert_str_eq(sqllex_excerpt(&lx), "LISTEN  /* c */\n\t chan -- x\n");
}


/* ---- token details ---- */

struct tok_rec {
	enum sqltok_type type;
	char text[SQLLEX_TEXT_MAX + 1];
	uint8_t len;
	bool truncated, quoted;
	char excerpt[SQLLEX_EXCERPT_MAX + 1];   /* at the time the token was reported */
};

struct recs {
	struct tok_rec t[32];
	int n;
	const struct sqllex *lx;
};

/* The excerpt is complete when a statement's END is reported (it is copied a piece at a time). */
static void record(void *arg, const struct sqltok *t)
{
	struct recs *r = arg;
	struct tok_rec *x = &r->t[r->n++];

	cr_assert_leq(r->n, 32);
	x->type = t->type;
	memcpy(x->text, t->text, t->len);
	x->text[t->len] = '\0';
	x->len = t->len;
	x->truncated = t->truncated;
	x->quoted = t->quoted;
	cr_assert_eq(strlen(t->text), t->len, "text is NUL-terminated at len");
	snprintf(x->excerpt, sizeof(x->excerpt), "%s", sqllex_excerpt(r->lx));
}

/* sql fed in pieces of the given size (0: whole), then ended. */
static void lex_records(struct recs *r, struct sqllex *lx, const char *sql, size_t piece)
{
	size_t n = strlen(sql);

	memset(r, 0, sizeof(*r));
	r->lx = lx;
	sqllex_init(lx, record, r);
	if (!piece)
		piece = n ? n : 1;
	for (size_t i = 0; i < n; i += piece) {
		size_t m = n - i < piece ? n - i : piece;
		char *copy = malloc(m);
		memcpy(copy, sql + i, m);
		sqllex_feed(lx, copy, m);
		free(copy);
	}
	sqllex_end(lx);
}

Test(sqllex, quoted_identifiers_are_flagged_plain_words_are_not)
{
	struct sqllex lx = { 0 };
	struct recs r;

	lex_records(&r, &lx, "LISTEN \"Listen\"", 0);
	cr_assert_eq(r.n, 3);
	cr_assert_str_eq(r.t[0].text, "listen");
	cr_assert_not(r.t[0].quoted);
	cr_assert_eq(r.t[1].type, SQLTOK_WORD);
	cr_assert_str_eq(r.t[1].text, "Listen");
	cr_assert(r.t[1].quoted);
	cr_assert_eq(r.t[2].type, SQLTOK_END);
}

Test(sqllex, a_long_word_keeps_its_first_63_bytes_folded)
{
	char sql[101];
	struct sqllex lx = { 0 };
	struct recs r;

	memset(sql, 'A', 100);
	sql[99] = 'Z';
	sql[100] = '\0';
	for (size_t piece = 0; piece < 101; piece += 7) {
		lex_records(&r, &lx, sql, piece);
		cr_assert_eq(r.n, 2);
		cr_assert_eq(r.t[0].len, SQLLEX_TEXT_MAX, "piece %zu", piece);
		cr_assert(r.t[0].truncated);
		for (int i = 0; i < SQLLEX_TEXT_MAX; i++)
			cr_assert_eq(r.t[0].text[i], 'a');
	}
	memset(sql, 'b', SQLLEX_TEXT_MAX);
	sql[SQLLEX_TEXT_MAX] = '\0';
	lex_records(&r, &lx, sql, 0);
	cr_assert_eq(r.t[0].len, SQLLEX_TEXT_MAX);
	cr_assert_not(r.t[0].truncated, "exactly 63 bytes fits");
}

Test(sqllex, a_long_string_is_cut_and_flagged)
{
	char sql[200];
	struct sqllex lx = { 0 };
	struct recs r;

	snprintf(sql, sizeof(sql), "'%0100d'", 7);
	lex_records(&r, &lx, sql, 0);
	cr_assert_eq(r.t[0].type, SQLTOK_STRING);
	cr_assert_eq(r.t[0].len, SQLLEX_TEXT_MAX);
	cr_assert(r.t[0].truncated);
	lex_records(&r, &lx, "'short'", 0);
	cr_assert_str_eq(r.t[0].text, "short");
	cr_assert_not(r.t[0].truncated);
}

/* ---- statement ends ---- */

Test(sqllex, every_semicolon_ends_a_statement_and_the_text_ends_the_last)
{
	lexes_to("a;;b", "W:a ; ; W:b ; ");
	lexes_to("", "; ");
	lexes_to("   \n", "; ");
	lexes_to("a;", "W:a ; ; ");
}

Test(sqllex, text_left_open_at_the_end_is_not_reported)
{
	/* PostgreSQL refuses these; the lexer only must not report what it has not seen end. */
	lexes_to("select 'abc", "W:select ; ");
	lexes_to("select \"abc", "W:select ; ");
	lexes_to("select /* listen", "W:select ; ");
	lexes_to("select $$ listen", "W:select ; ");
	lexes_to("select -- listen", "W:select ; ");
}

Test(sqllex, tokens_that_the_end_of_the_text_completes)
{
	lexes_to("select 'a'", "W:select S:a ; ");
	lexes_to("select \"A\"", "W:select W:A ; ");
	lexes_to("select 1", "W:select O ; ");
	lexes_to("select -", "W:select O ; ");
	lexes_to("select /", "W:select O ; ");
	lexes_to("select $", "W:select O ; ");
}

/* ---- comments ---- */

Test(sqllex, comment_edges)
{
	lexes_to("a--b\nc", "W:a W:c ; ");
	lexes_to("a--b\rc", "W:a W:c ; ");
	lexes_to("a/**/b", "W:a W:b ; ");
	lexes_to("a /* x **/ b", "W:a W:b ; ");
	lexes_to("a /*/ b */ c", "W:a W:c ; ");
	lexes_to("a /* 1 /* 2 /* 3 */ 2 */ 1 */ b", "W:a W:b ; ");
	lexes_to("a /* /* */ ; listen */ b", "W:a W:b ; ");
	lexes_to("a - - b", "W:a O O W:b ; ");
	lexes_to("a */ b", "W:a O O W:b ; ");
}

/* ---- strings and quotes ---- */

Test(sqllex, only_a_lone_e_prefix_makes_an_escape_string)
{
	lexes_to("be'a\\'", "W:be S:a\\ ; ");
	lexes_to("E'a\\'' x", "S:a' W:x ; ");
	lexes_to("b'0101' x'ff'", "W:b S:0101 W:x S:ff ; ");
}

Test(sqllex, doubled_quotes_inside_escape_strings)
{
	lexes_to("e'it''s' x", "S:it's W:x ; ");
	lexes_to("'''' x", "S:' W:x ; ");
	lexes_to("'' x", "S: W:x ; ");
}

Test(sqllex, dollar_quote_tags)
{
	lexes_to("$$a$b$$ x", "S:~ W:x ; ");
	lexes_to("$a1$ $a $a1 $a1$ x", "S:~ W:x ; ");
	lexes_to("$_$;$_$ x", "S:~ W:x ; ");
	lexes_to("$1$ x", "O O W:x ; ");              /* a tag cannot start with a digit: $, then 1$ */
	lexes_to("$A$ listen $a$ $A$ x", "S:~ W:x ; "); /* tags are case-sensitive */
}

Test(sqllex, bytes_above_ascii_are_word_bytes_and_not_folded)
{
	lexes_to("SELECT CAF\xc3\x89", "W:select W:caf\xc3\x89 ; ");
	lexes_to("\xc3\xa9t\xc3\xa9;x", "W:\xc3\xa9t\xc3\xa9 ; W:x ; ");
}

Test(sqllex, a_dollar_tag_too_long_to_follow_loses_the_rest_of_the_text)
{
	char sql[256];
	struct sqllex lx = { 0 };
	struct recs r;

	char tag[71];

	memset(tag, 't', 70);
	tag[70] = '\0';
	snprintf(sql, sizeof(sql), "select $%s$ ; listen x ; $%s$; notify y", tag, tag);
	for (size_t piece = 0; piece < strlen(sql); piece += 5) {
		lex_records(&r, &lx, sql, piece);
		cr_assert_eq(r.n, 3, "piece %zu: %d tokens", piece, r.n);
		cr_assert_eq(r.t[0].type, SQLTOK_WORD);
		cr_assert_eq(r.t[1].type, SQLTOK_OTHER);
		cr_assert_eq(r.t[2].type, SQLTOK_END);
	}
	/* The end of a text clears it: the next text is read again. */
	lex_records(&r, &lx, "listen z", 0);
	cr_assert_eq(r.n, 3);
	cr_assert_str_eq(r.t[1].text, "z");
}

Test(sqllex, standard_conforming_strings_off_survives_init_and_end)
{
	struct sqllex lx = { .backslash_quotes = true };
	struct recs r;

	lex_records(&r, &lx, "'a\\'b'", 0);
	cr_assert_str_eq(r.t[0].text, "a'b");
	cr_assert(lx.backslash_quotes, "sqllex_end() keeps the setting");
	lex_records(&r, &lx, "'c\\'d'", 0);
	cr_assert_str_eq(r.t[0].text, "c'd");
}

/* ---- the excerpt ---- */

Test(sqllex, each_statement_has_its_own_excerpt_without_its_semicolon)
{
	struct sqllex lx = { 0 };
	struct recs r;
	const char *sql = "select 1;  LISTEN chan ;\n-- note\n notify x";

	for (size_t piece = 0; piece <= strlen(sql); piece++) {
		lex_records(&r, &lx, sql, piece);
		cr_assert_eq(r.n, 9, "piece %zu", piece);
		cr_assert_eq(r.t[2].type, SQLTOK_END);
		cr_assert_str_eq(r.t[2].excerpt, "select 1", "piece %zu", piece);
		cr_assert_str_eq(r.t[5].excerpt, "LISTEN chan ", "piece %zu", piece);
		cr_assert_str_eq(r.t[8].excerpt, "notify x", "piece %zu", piece);
	}
	cr_assert_str_eq(sqllex_excerpt(&lx), "", "the end of the text clears it");
}

Test(sqllex, the_excerpt_is_empty_before_the_first_token)
{
	struct sqllex lx = { 0 };
	struct recs r = { .lx = &lx };
	const char *sql = "  /* a comment */ -- and another\n  ";

	sqllex_init(&lx, record, &r);
	sqllex_feed(&lx, sql, strlen(sql));
	cr_assert_str_eq(sqllex_excerpt(&lx), "");
	sqllex_feed(&lx, "/", 1);
	sqllex_feed(&lx, "* split */ LISTEN", 17);
	cr_assert_str_eq(sqllex_excerpt(&lx), "LISTEN", "a comment split after its '/' is still left out");
}

Test(sqllex, the_excerpt_is_capped)
{
	char sql[300];
	struct sqllex lx = { 0 };
	struct recs r;

	memset(sql, 0, sizeof(sql));
	strcpy(sql, "select ");
	memset(sql + 7, 'x', 200);
	for (size_t piece = 0; piece < 210; piece += 13) {
		lex_records(&r, &lx, sql, piece);
		cr_assert_eq(strlen(r.t[r.n - 1].excerpt), SQLLEX_EXCERPT_MAX);
		cr_assert_eq(strncmp(r.t[r.n - 1].excerpt, "select xxxx", 11), 0);
	}
}
