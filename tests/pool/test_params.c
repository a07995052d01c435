/*
 * test_params.c — Criterion tests for pool/params.c.
 *
 * The SQL from params_diff_sql() is compared as complete strings, and every
 * dollar-quoted literal in it is also read back the way PostgreSQL's lexer
 * ends one (at the first occurrence of the opening tag) to check that it
 * yields the original value.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "params.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

/* Under AddressSanitizer a test that leaks crashes, so the run fails. */
static void leak_check(void)
{
#if defined(__SANITIZE_ADDRESS__)
	if (__lsan_do_recoverable_leak_check())
		abort();
#endif
}

TestSuite(params, .fini = leak_check);
TestSuite(params_diff, .fini = leak_check);

/* Build a set from NULL-terminated name, value pairs. */
static struct param_set set_of(const char *const *pairs)
{
	struct param_set s = PARAMS_EMPTY;

	for (; *pairs; pairs += 2)
		cr_assert_eq(params_put(&s, pairs[0], pairs[1]), 0, "put %s", pairs[0]);
	return s;
}

#define SET(...) set_of((const char *const[]){ __VA_ARGS__, NULL })

/* The set as "name=value;name=value" in iteration order. */
static void dump(const struct param_set *s, char *out, size_t cap)
{
	size_t len = 0;

	out[0] = '\0';
	for (const char *n = params_first(s); n; n = params_next(s, n))
		len += (size_t)snprintf(out + len, cap - len, "%s%s=%s", len ? ";" : "", n, params_value(n));
	cr_assert_lt(len, cap);
}

#define assert_dump(s, want)                                    \
	do {                                                    \
		char got_[512];                                 \
		dump((s), got_, sizeof(got_));                  \
		cr_assert_str_eq(got_, (want));                 \
	} while (0)

/* Size of the packed form "name\0value\0..." of a dump. */
static uint32_t packed_len(const char *const *pairs)
{
	uint32_t n = 0;

	for (; *pairs; pairs += 2)
		n += (uint32_t)(strlen(pairs[0]) + strlen(pairs[1]) + 2);
	return n;
}

/* ---- sets ---- */

Test(params, empty_set)
{
	struct param_set s = PARAMS_EMPTY;

	cr_assert_null(params_first(&s));
	cr_assert_null(params_get(&s, "work_mem"));
	cr_assert_eq(s.len, 0);
	params_free(&s);
	cr_assert_null(s.data);
}

Test(params, put_keeps_sorted_order)
{
	struct param_set s = PARAMS_EMPTY;

	cr_assert_eq(params_put(&s, "work_mem", "64MB"), 0);
	assert_dump(&s, "work_mem=64MB");
	cr_assert_eq(params_put(&s, "application_name", "app"), 0);
	assert_dump(&s, "application_name=app;work_mem=64MB");
	cr_assert_eq(params_put(&s, "search_path", "public"), 0);
	assert_dump(&s, "application_name=app;search_path=public;work_mem=64MB");
	cr_assert_eq(params_put(&s, "zz", "last"), 0);
	cr_assert_eq(params_put(&s, "a", "first"), 0);
	cr_assert_eq(params_put(&s, "datestyle", "ISO"), 0);
	assert_dump(&s, "a=first;application_name=app;datestyle=ISO;search_path=public;work_mem=64MB;zz=last");
	cr_assert_eq(s.len, packed_len((const char *const[]){ "a", "first", "application_name", "app",
				 "datestyle", "ISO", "search_path", "public", "work_mem", "64MB", "zz", "last", NULL }));
	params_free(&s);
}

Test(params, put_replaces)
{
	struct param_set s = SET("a", "1", "m", "2", "z", "3");

	/* first, middle, last; longer, shorter, empty */
	cr_assert_eq(params_put(&s, "a", "one hundred"), 0);
	assert_dump(&s, "a=one hundred;m=2;z=3");
	cr_assert_eq(params_put(&s, "m", ""), 0);
	assert_dump(&s, "a=one hundred;m=;z=3");
	cr_assert_eq(params_put(&s, "z", "3333"), 0);
	assert_dump(&s, "a=one hundred;m=;z=3333");
	cr_assert_eq(params_put(&s, "a", "x"), 0);
	assert_dump(&s, "a=x;m=;z=3333");
	cr_assert_eq(s.len, packed_len((const char *const[]){ "a", "x", "m", "", "z", "3333", NULL }));
	params_free(&s);
}

Test(params, put_lower_cases_names)
{
	struct param_set s = PARAMS_EMPTY;

	cr_assert_eq(params_put(&s, "DateStyle", "ISO, MDY"), 0);
	assert_dump(&s, "datestyle=ISO, MDY");
	cr_assert_eq(params_put(&s, "DATESTYLE", "German"), 0);
	assert_dump(&s, "datestyle=German");
	cr_assert_eq(params_put(&s, "TimeZone", "UTC"), 0);
	assert_dump(&s, "datestyle=German;timezone=UTC");
	params_free(&s);
}

Test(params, put_refuses_a_name_too_long)
{
	char name[80];
	struct param_set s = SET("a", "1");

	memset(name, 'n', 64);
	name[64] = '\0';
	cr_assert_eq(params_put(&s, name, "v"), -1);
	assert_dump(&s, "a=1");
	name[63] = '\0';
	cr_assert_eq(params_put(&s, name, "v"), 0);
	cr_assert_str_eq(params_get(&s, name), "v");
	params_free(&s);
}

Test(params, get_is_case_insensitive)
{
	struct param_set s = SET("work_mem", "64MB", "DateStyle", "ISO");

	cr_assert_str_eq(params_get(&s, "work_mem"), "64MB");
	cr_assert_str_eq(params_get(&s, "WORK_MEM"), "64MB");
	cr_assert_str_eq(params_get(&s, "datestyle"), "ISO");
	cr_assert_str_eq(params_get(&s, "DateStyle"), "ISO");
	cr_assert_null(params_get(&s, "work_me"));
	cr_assert_null(params_get(&s, "work_mem_"));
	cr_assert_null(params_get(&s, "64MB"), "a value is not a name");
	params_free(&s);
}

Test(params, value_of_an_empty_string)
{
	struct param_set s = SET("a", "", "b", "x");

	cr_assert_str_eq(params_get(&s, "a"), "");
	cr_assert_str_eq(params_get(&s, "b"), "x");
	params_free(&s);
}

Test(params, equal)
{
	struct param_set e1 = PARAMS_EMPTY, e2 = PARAMS_EMPTY;
	struct param_set a = SET("x", "1", "y", "2");
	struct param_set b = SET("Y", "2", "x", "1");
	struct param_set c = SET("x", "1", "y", "3");
	struct param_set d = SET("x", "1");
	struct param_set e = SET("x", "1", "y", "2", "z", "");
	struct param_set f = SET("x", "12", "y", "");

	cr_assert(params_equal(&e1, &e2));
	cr_assert(params_equal(&a, &b), "insertion order and case do not matter");
	cr_assert(params_equal(&a, &a));
	cr_assert_not(params_equal(&a, &c));
	cr_assert_not(params_equal(&a, &d));
	cr_assert_not(params_equal(&d, &a));
	cr_assert_not(params_equal(&a, &e));
	cr_assert_not(params_equal(&a, &e1));
	cr_assert_not(params_equal(&e1, &a));
	cr_assert_not(params_equal(&a, &f), "same length, different split");
	params_free(&a);
	params_free(&b);
	params_free(&c);
	params_free(&d);
	params_free(&e);
	params_free(&f);
}

Test(params, copy_is_deep)
{
	struct param_set src = SET("a", "1", "b", "2");
	struct param_set dst = SET("old", "value", "zzz", "gone");

	cr_assert_eq(params_copy(&dst, &src), 0);
	cr_assert(params_equal(&dst, &src));
	cr_assert_neq(dst.data, src.data);
	assert_dump(&dst, "a=1;b=2");
	cr_assert_eq(params_put(&dst, "a", "changed"), 0);
	assert_dump(&src, "a=1;b=2");
	params_free(&src);
	assert_dump(&dst, "a=changed;b=2");
	params_free(&dst);
}

Test(params, copy_of_empty_empties)
{
	struct param_set src = PARAMS_EMPTY;
	struct param_set dst = SET("a", "1");

	cr_assert_eq(params_copy(&dst, &src), 0);
	cr_assert_eq(dst.len, 0);
	cr_assert_null(dst.data);
	cr_assert_null(params_first(&dst));
	cr_assert(params_equal(&dst, &src));
	params_free(&dst);
}

Test(params, free_empties)
{
	struct param_set s = SET("a", "1");

	params_free(&s);
	cr_assert_null(s.data);
	cr_assert_eq(s.len, 0);
	params_free(&s);
}

Test(params, valid_names)
{
	static const char *const good[] = { "a", "work_mem", "x.y", "A1", "_x", "9lives", "pg_stat.track" };
	static const char *const bad[] = { "", "a b", "a-b", "a;b", "a\"b", "a'b", "a$b", "é" };
	char longest[65];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		cr_assert(params_valid_name(good[i]), "\"%s\" should be valid", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_not(params_valid_name(bad[i]), "\"%s\" should be invalid", bad[i]);
	memset(longest, 'a', 64);
	longest[64] = '\0';
	cr_assert_not(params_valid_name(longest));
	longest[63] = '\0';
	cr_assert(params_valid_name(longest));
}

/* ---- the SQL diff ---- */

static char sql[4096];

static int diff(const struct param_set *want, const struct param_set *have, const struct param_set *base)
{
	memset(sql, 'x', sizeof(sql));
	int n = params_diff_sql(want, have, base, sql, (int)sizeof(sql));
	if (n >= 0)
		cr_assert_eq((size_t)n, strlen(sql), "returned length %d, string length %zu", n, strlen(sql));
	return n;
}

Test(params_diff, nothing_to_do_is_empty)
{
	struct param_set none = PARAMS_EMPTY;
	struct param_set a = SET("work_mem", "64MB", "search_path", "app");
	struct param_set a2 = SET("search_path", "app", "work_mem", "64MB");

	cr_assert_eq(diff(&none, &none, &none), 0);
	cr_assert_str_eq(sql, "");
	cr_assert_eq(diff(&a, &a2, &none), 0);
	cr_assert_str_eq(sql, "");
	cr_assert_eq(diff(&a, &a2, &a), 0);
	cr_assert_str_eq(sql, "");
	params_free(&a);
	params_free(&a2);
}

Test(params_diff, differing_value_is_set)
{
	struct param_set none = PARAMS_EMPTY;
	struct param_set want = SET("work_mem", "64MB");
	struct param_set have = SET("work_mem", "4MB");
	const char *expect = "SELECT pg_catalog.set_config($q0$work_mem$q0$, $q0$64MB$q0$, false);";

	cr_assert_eq(diff(&want, &none, &none), (int)strlen(expect));
	cr_assert_str_eq(sql, expect);
	cr_assert_eq(diff(&want, &have, &none), (int)strlen(expect));
	cr_assert_str_eq(sql, expect);
	/* differing from the base, nothing applied */
	cr_assert_eq(diff(&want, &none, &have), (int)strlen(expect));
	cr_assert_str_eq(sql, expect);
	params_free(&want);
	params_free(&have);
}

Test(params_diff, value_equal_to_the_base_needs_nothing)
{
	struct param_set none = PARAMS_EMPTY;
	struct param_set want = SET("DateStyle", "ISO, MDY", "client_encoding", "UTF8");
	struct param_set base = SET("client_encoding", "UTF8", "datestyle", "ISO, MDY", "timezone", "UTC");

	cr_assert_eq(diff(&want, &none, &base), 0);
	cr_assert_str_eq(sql, "");
	params_free(&want);
	params_free(&base);
}

Test(params_diff, value_equal_to_the_base_but_not_to_what_was_applied_is_set)
{
	struct param_set want = SET("timezone", "UTC");
	struct param_set have = SET("timezone", "Europe/Paris");
	struct param_set base = SET("timezone", "UTC");

	diff(&want, &have, &base);
	cr_assert_str_eq(sql, "SELECT pg_catalog.set_config($q0$timezone$q0$, $q0$UTC$q0$, false);");
	params_free(&want);
	params_free(&have);
	params_free(&base);
}

Test(params_diff, setting_the_client_lacks_is_reset)
{
	struct param_set none = PARAMS_EMPTY;
	struct param_set have = SET("work_mem", "64MB");
	struct param_set base_other = SET("work_mem", "4MB");

	cr_assert_eq(diff(&none, &have, &none), (int)strlen("RESET \"work_mem\";"));
	cr_assert_str_eq(sql, "RESET \"work_mem\";");
	cr_assert_eq(diff(&none, &have, &base_other), (int)strlen("RESET \"work_mem\";"));
	cr_assert_str_eq(sql, "RESET \"work_mem\";");
	params_free(&have);
	params_free(&base_other);
}

Test(params_diff, setting_the_client_lacks_equal_to_the_base_is_not_reset)
{
	struct param_set none = PARAMS_EMPTY;
	struct param_set have = SET("application_name", "pgbench", "work_mem", "64MB");
	struct param_set base = SET("application_name", "pgbench");

	diff(&none, &have, &base);
	cr_assert_str_eq(sql, "RESET \"work_mem\";");
	params_free(&have);
	params_free(&base);
}

Test(params_diff, sets_then_resets_in_name_order)
{
	struct param_set want = SET("search_path", "app, public", "work_mem", "64MB", "application_name", "web",
				    "timezone", "UTC");
	struct param_set have = SET("work_mem", "64MB", "statement_timeout", "5s", "application_name", "batch",
				    "lock_timeout", "1s", "datestyle", "ISO");
	struct param_set base = SET("timezone", "UTC", "datestyle", "ISO", "client_encoding", "UTF8");

	diff(&want, &have, &base);
	cr_assert_str_eq(sql,
			 "SELECT pg_catalog.set_config($q0$application_name$q0$, $q0$web$q0$, false);"
			 "SELECT pg_catalog.set_config($q0$search_path$q0$, $q0$app, public$q0$, false);"
			 "RESET \"lock_timeout\";"
			 "RESET \"statement_timeout\";");
	params_free(&want);
	params_free(&have);
	params_free(&base);
}

Test(params_diff, empty_value_is_quoted)
{
	struct param_set none = PARAMS_EMPTY;
	struct param_set want = SET("application_name", "");

	diff(&want, &none, &none);
	cr_assert_str_eq(sql, "SELECT pg_catalog.set_config($q0$application_name$q0$, $q0$$q0$, false);");
	params_free(&want);
}

/*
 * Read back the dollar-quoted literals in a statement the way PostgreSQL
 * does: the literal ends at the first occurrence of its opening tag.
 * Returns how many were read into out[].
 */
static int read_dollar_literals(const char *s, char out[][1200], int max)
{
	int count = 0;

	while ((s = strchr(s, '$'))) {
		const char *tag_end = strchr(s + 1, '$');
		cr_assert_not_null(tag_end, "unterminated tag in %s", s);
		size_t tlen = (size_t)(tag_end - s) + 1;
		char tag[32];
		cr_assert_lt(tlen, sizeof(tag));
		memcpy(tag, s, tlen);
		tag[tlen] = '\0';
		const char *body = s + tlen;
		const char *close = strstr(body, tag);
		cr_assert_not_null(close, "literal opened with %s never closes", tag);
		cr_assert_lt(count, max);
		size_t blen = (size_t)(close - body);
		cr_assert_lt(blen, sizeof(out[0]));
		memcpy(out[count], body, blen);
		out[count][blen] = '\0';
		count++;
		s = close + tlen;
	}
	return count;
}

static void assert_value_round_trips(const char *value, const char *expected_sql)
{
	static char lit[4][1200];
	struct param_set none = PARAMS_EMPTY;
	struct param_set want = PARAMS_EMPTY;

	cr_assert_eq(params_put(&want, "application_name", value), 0);
	cr_assert_gt(diff(&want, &none, &none), 0, "value \"%s\" refused", value);
	if (expected_sql)
		cr_assert_str_eq(sql, expected_sql);
	const char *prefix = "SELECT pg_catalog.set_config(";
	cr_assert_eq(strncmp(sql, prefix, strlen(prefix)), 0, "%s", sql);
	cr_assert_eq(read_dollar_literals(sql + strlen(prefix), lit, 4), 2, "%s", sql);
	cr_assert_str_eq(lit[0], "application_name");
	cr_assert_str_eq(lit[1], value, "value \"%s\" reads back as \"%s\" from %s", value, lit[1], sql);
	/* and what follows the value literal is exactly the end of the call */
	size_t slen = strlen(sql), tail = strlen(", false);");
	cr_assert_str_eq(sql + slen - tail, ", false);");
	params_free(&want);
}

Test(params_diff, value_containing_the_tag_uses_another)
{
	assert_value_round_trips(
		"a$q0$b",
		"SELECT pg_catalog.set_config($q0$application_name$q0$, $q1$a$q0$b$q1$, false);");
	assert_value_round_trips(
		"$q0$",
		"SELECT pg_catalog.set_config($q0$application_name$q0$, $q1$$q0$$q1$, false);");
	assert_value_round_trips(
		"$q0$ and $q1$",
		"SELECT pg_catalog.set_config($q0$application_name$q0$, $q2$$q0$ and $q1$$q2$, false);");
}

Test(params_diff, value_that_would_close_early_uses_another_tag)
{
	/* "x$q0" + "$q0$" contains "$q0$" before the real close. */
	assert_value_round_trips(
		"x$q0",
		"SELECT pg_catalog.set_config($q0$application_name$q0$, $q1$x$q0$q1$, false);");
	/* "$q1" then "$q1$" would close early as well: skip to $q2$ */
	assert_value_round_trips(
		"$q0$$q1",
		"SELECT pg_catalog.set_config($q0$application_name$q0$, $q2$$q0$$q1$q2$, false);");
}

Test(params_diff, tricky_values_round_trip)
{
	static const char *const values[] = {
		"$", "$$", "$q", "$q$", "q0$", "$q0", "0$", "$q10$", "a$q0$b$q1$c$q2$d",
		"it's \"quoted\"; DROP TABLE x; --", "back\\slash", "line\nbreak", "tab\there",
		"$q0$$q1$$q2$$q3$$q4$$q5$$q6$$q7$$q8$$q9$",
	};

	for (size_t i = 0; i < sizeof(values) / sizeof(values[0]); i++)
		assert_value_round_trips(values[i], NULL);
}

Test(params_diff, unquotable_or_too_long_is_refused)
{
	struct param_set none = PARAMS_EMPTY;
	struct param_set want = PARAMS_EMPTY;
	char value[sizeof(sql)];
	char all_tags[100 * 6 + 1];
	size_t n = 0;

	/* every tag $q0$ .. $q99$ occurs in the value */
	for (int i = 0; i < 100; i++)
		n += (size_t)snprintf(all_tags + n, sizeof(all_tags) - n, "$q%d$", i);
	cr_assert_eq(params_put(&want, "application_name", all_tags), 0);
	cr_assert_eq(diff(&want, &none, &none), -1);

	memset(value, 'v', sizeof(value) - 1);
	value[sizeof(value) - 1] = '\0';
	cr_assert_eq(params_put(&want, "application_name", value), 0);
	cr_assert_eq(diff(&want, &none, &none), -1);
	/* Long values are fine while the statement fits the buffer. */
	value[3000] = '\0';
	cr_assert_eq(params_put(&want, "application_name", value), 0);
	cr_assert_gt(diff(&want, &none, &none), 3000);
	params_free(&want);
}

Test(params_diff, output_must_fit_cap)
{
	struct param_set none = PARAMS_EMPTY;
	struct param_set want = SET("work_mem", "64MB");
	struct param_set have = SET("lock_timeout", "1s");
	const char *expect = "SELECT pg_catalog.set_config($q0$work_mem$q0$, $q0$64MB$q0$, false);"
			     "RESET \"lock_timeout\";";
	int len = (int)strlen(expect);
	char buf[256];

	cr_assert_eq(params_diff_sql(&want, &have, &none, buf, len + 1), len);
	cr_assert_str_eq(buf, expect);
	cr_assert_eq(params_diff_sql(&want, &have, &none, buf, len), -1, "no room for the NUL");
	cr_assert_eq(params_diff_sql(&want, &have, &none, buf, len - (int)strlen("RESET \"lock_timeout\";")),
		     -1, "no room for the RESET");
	cr_assert_eq(params_diff_sql(&want, &have, &none, buf, 10), -1);
	params_free(&want);
	params_free(&have);
}
