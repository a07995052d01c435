/*
 * fuzz_reset.c — libFuzzer target: finding resets in a Query text and the
 * rewrite that follows them with restores (pool/reset_sql.c).
 *
 * The first byte says whether backslashes escape in '...'; the rest is the
 * text. Whatever it is: every reset found ends inside the text, in order;
 * the rewrite, with its insertions taken out again, is the text itself;
 * and every position in the client's text maps back to itself (checked on
 * ASCII texts: positions count characters).
 */
#include <assert.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "reset.h"

#define MARK "pglease_restore_00000000"

static uint32_t chars(const char *s, size_t n)
{
	uint32_t c = 0;

	for (size_t i = 0; i < n; i++)
		c += ((unsigned char)s[i] & 0xc0) != 0x80;
	return c;
}

/* The rewritten text without its insertions: bytes kept while outside them, counted in characters. */
static void check_rewrite(const char *sql, size_t n, const struct sql_text *out, const struct reset_move *moves,
			  int n_moves)
{
	char *back = malloc(out->len + 1);
	size_t w = 0;
	uint32_t ch = 0;
	int m = 0;

	for (uint32_t i = 0; i < out->len; i++) {
		bool start = ((unsigned char)out->data[i] & 0xc0) != 0x80;
		if (start && m < n_moves && ch == moves[m].at + moves[m].chars)
			m++;
		bool inside = m < n_moves && ch >= moves[m].at && (ch > moves[m].at || start);
		if (start)
			ch++;
		if (!inside)
			back[w++] = out->data[i];
	}
	assert(w == n && memcmp(back, sql, n) == 0);
	free(back);
	/* Positions in the client's text survive the round trip. */
	uint32_t at = 1, shift = 0;
	for (int k = 0; k <= n_moves; k++) {
		uint32_t upto = k < n_moves ? moves[k].at : chars(out->data, out->len);
		for (; at <= upto; at++)
			assert(reset_fix_position(at, moves, (uint32_t)n_moves) == at - shift);
		if (k < n_moves) {
			shift += moves[k].chars;
			at = moves[k].at + moves[k].chars + 1;
		}
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct reset_plan plan;
	static struct param_set startup;

	if (size < 1)
		return 0;
	if (!startup.len && (params_put(&startup, "DateStyle", "Postgres, MDY") < 0 ||
			     params_put(&startup, "work_mem", "5MB") < 0 ||
			     params_put(&startup, "application_name", "caf\xc3\xa9 $q0$") < 0))
		abort();
	const char *sql = (const char *)data + 1;
	size_t n = size - 1;
	reset_plan(sql, n, data[0] & 1, &plan);
	assert(plan.count <= RESET_PLAN_MAX && plan.count <= plan.statements);
	for (uint32_t i = 0; i < plan.count; i++)
		assert(plan.stmts[i].end <= n && (i == 0 || plan.stmts[i].end > plan.stmts[i - 1].end));
	if (plan.count && memchr(sql, 0, n) == NULL) {
		struct sql_text out = { 0 };
		struct reset_move moves[RESET_PLAN_MAX];
		int k = reset_rewrite(sql, n, &plan, &startup, &PARAMS_EMPTY, MARK, &out, moves);
		assert(k >= 0);
		/* Positions count characters: the round trip is checked on ASCII texts (invalid UTF-8 has none). */
		bool ascii = true;
		for (size_t i = 0; i < n; i++)
			ascii = ascii && data[1 + i] < 0x80;
		if (k > 0 && ascii)
			check_rewrite(sql, n, &out, moves, k);
		if (k > 0)
			assert(out.len > n && memcmp(out.data, sql, plan.stmts[0].end) == 0);
		sql_text_free(&out);
	}
	return 0;
}
