/*
 * test_reset_sql.c — Criterion tests for the pure half of pool/reset.c: which
 * statements of a Query text reset settings, the restore that follows
 * them, the rewritten text, and error positions mapped back.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "reset.h"

#define MARK "pglease_restore_00000000"

static struct reset_plan plan_of(const char *sql)
{
	struct reset_plan p;

	reset_plan(sql, strlen(sql), false, &p);
	return p;
}

static struct param_set set_of(const char *const *pairs)
{
	struct param_set s = PARAMS_EMPTY;

	for (; *pairs; pairs += 2)
		cr_assert_eq(params_put(&s, pairs[0], pairs[1]), 0);
	return s;
}

Test(reset_plan, finds_each_form_of_reset)
{
	static const struct { const char *sql; int kind; const char *name; } cases[] = {
		{ "RESET datestyle", RESET_ONE, "datestyle" },
		{ "reset \"DateStyle\"", RESET_ONE, "datestyle" },
		{ "RESET myext.some_setting", RESET_ONE, "myext.some_setting" },
		{ "RESET TIME ZONE", RESET_ONE, "timezone" },
		{ "RESET SESSION AUTHORIZATION", RESET_ONE, "session_authorization" },
		{ "RESET ALL", RESET_EVERY, "" },
		{ "DISCARD ALL", RESET_DISCARD, "" },
		{ "SET datestyle TO DEFAULT", RESET_ONE, "datestyle" },
		{ "SET datestyle = DEFAULT", RESET_ONE, "datestyle" },
		{ "SET SESSION work_mem TO DEFAULT", RESET_ONE, "work_mem" },
		{ "SET LOCAL work_mem TO DEFAULT", RESET_ONE_LOCAL, "work_mem" },
		{ "SET TIME ZONE LOCAL", RESET_ONE, "timezone" },
		{ "set local time zone default", RESET_ONE_LOCAL, "timezone" },
		{ "/* x */ RESET -- y\n datestyle", RESET_ONE, "datestyle" },
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		struct reset_plan p = plan_of(cases[i].sql);
		cr_assert_eq(p.count, 1, "%s", cases[i].sql);
		cr_assert_eq(p.stmts[0].kind, cases[i].kind, "%s", cases[i].sql);
		cr_assert_str_eq(p.stmts[0].name, cases[i].name, "%s", cases[i].sql);
		cr_assert_eq(p.stmts[0].end, strlen(cases[i].sql), "%s", cases[i].sql);
		cr_assert(!p.stmts[0].semicolon);
		cr_assert(!p.unsafe, "%s", cases[i].sql);
	}
}

Test(reset_plan, ignores_what_only_looks_like_a_reset)
{
	static const char *const cases[] = {
		"SET datestyle TO 'default'", "SET datestyle TO \"default\"", "SET datestyle TO DEFAULT, ISO",
		"SELECT 'RESET datestyle'", "-- RESET datestyle", "/* RESET ALL */ SELECT 1",
		"SELECT $$ RESET ALL $$", "DISCARD PLANS", "DISCARD TEMP", "RESET", "\"reset\" all",
		"SET LOCAL datestyle = 'ISO'", "RESET datestyle datestyle", "DEALLOCATE reset",
		"INSERT INTO t DEFAULT VALUES", "SET TIME ZONE 'UTC'",
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		struct reset_plan p = plan_of(cases[i]);
		cr_assert_eq(p.count, 0, "%s", cases[i]);
	}
}

Test(reset_plan, statement_ends_and_counts)
{
	const char *sql = "SET datestyle = 'a;b'; RESET datestyle ; ; SHOW datestyle; RESET ALL";
	struct reset_plan p = plan_of(sql);

	cr_assert_eq(p.statements, 4);
	cr_assert_eq(p.count, 2);
	cr_assert_eq(p.stmts[0].end, strstr(sql, "; ;") - sql + 1);
	cr_assert(p.stmts[0].semicolon);
	cr_assert_eq(p.stmts[1].kind, RESET_EVERY);
	cr_assert_eq(p.stmts[1].end, strlen(sql));
	cr_assert(!p.stmts[1].semicolon);
	cr_assert(reset_may_matter(sql, strlen(sql)));
	cr_assert(!reset_may_matter("select 1; show datestyle", 25));
}

Test(reset_plan, unsafe_where_semicolons_may_not_end_statements)
{
	cr_assert(plan_of("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END; RESET ALL").unsafe);
	cr_assert(plan_of("CREATE RULE r AS ON INSERT TO t DO ALSO (NOTIFY a; NOTIFY b); RESET ALL").unsafe);
	cr_assert(!plan_of("SELECT \"atomic\"; RESET ALL").unsafe);
}

Test(reset_plan, backslash_quotes_when_standard_conforming_strings_is_off)
{
	const char *sql = "SELECT 'it\\'s; RESET ALL'; RESET datestyle";
	struct reset_plan p;

	reset_plan(sql, strlen(sql), true, &p);
	cr_assert_eq(p.count, 1);
	cr_assert_eq(p.stmts[0].kind, RESET_ONE);
	/* Read with standard_conforming_strings on, the string ends at \' and another begins. */
	reset_plan(sql, strlen(sql), false, &p);
	cr_assert_eq(p.count, 1);
	cr_assert_eq(p.stmts[0].kind, RESET_EVERY);
}

Test(reset_restore, only_startup_settings_the_pool_does_not_share)
{
	static const char *const startup_pairs[] = {
		"DateStyle", "Postgres, MDY", "TimeZone", "UTC", "work_mem", "5MB", "role", "r1", NULL,
	};
	static const char *const base_pairs[] = { "DateStyle", "ISO, MDY", "TimeZone", "UTC", NULL };
	struct param_set startup = set_of(startup_pairs), base = set_of(base_pairs);
	struct reset_stmt one = { .kind = RESET_ONE, .name = "datestyle" };
	struct reset_stmt local = { .kind = RESET_ONE_LOCAL, .name = "work_mem" };
	struct reset_stmt tz = { .kind = RESET_ONE, .name = "timezone" };
	struct reset_stmt all = { .kind = RESET_EVERY }, discard = { .kind = RESET_DISCARD };
	struct sql_text t = { 0 };

	reset_restore_sql(&one, &startup, &base, MARK, &t);
	cr_assert_str_eq(t.data, "SELECT (pg_catalog.set_config($q0$datestyle$q0$, $q0$Postgres, MDY$q0$, false)) "
			 "IS NULL AS " MARK ";");
	sql_text_free(&t);
	reset_restore_sql(&local, &startup, &base, MARK, &t);
	cr_assert(strstr(t.data, "$q0$5MB$q0$, true)"));
	sql_text_free(&t);
	reset_restore_sql(&tz, &startup, &base, MARK, &t);
	cr_assert_eq(t.len, 0, "the pool's own value: nothing to restore");
	sql_text_free(&t);
	reset_restore_sql(&all, &startup, &base, MARK, &t);
	cr_assert(strstr(t.data, "datestyle") && strstr(t.data, "work_mem") && !strstr(t.data, "role"),
		  "%s", t.data);
	cr_assert(strstr(t.data, " || pg_catalog.set_config("));
	sql_text_free(&t);
	reset_restore_sql(&discard, &startup, &base, MARK, &t);
	cr_assert(strstr(t.data, "$q0$role$q0$"), "DISCARD ALL resets the role too: %s", t.data);
	sql_text_free(&t);
	params_free(&startup);
	params_free(&base);
}

Test(reset_rewrite, restores_go_right_after_their_reset)
{
	static const char *const startup_pairs[] = { "DateStyle", "Postgres, MDY", NULL };
	struct param_set startup = set_of(startup_pairs);
	const char *sql = "SET datestyle = 'SQL'; RESET datestyle; SHOW datestyle; RESET timezone; RESET DateStyle";
	struct reset_plan p = plan_of(sql);
	struct sql_text out = { 0 };
	struct reset_move moves[RESET_PLAN_MAX];
	const char *restore = "SELECT (pg_catalog.set_config($q0$datestyle$q0$, $q0$Postgres, MDY$q0$, false)) "
			      "IS NULL AS " MARK ";";
	char want[1024];

	cr_assert_eq(reset_rewrite(sql, strlen(sql), &p, &startup, &PARAMS_EMPTY, MARK, &out, moves), 2);
	snprintf(want, sizeof(want), "SET datestyle = 'SQL'; RESET datestyle;%s SHOW datestyle; RESET timezone; "
		 "RESET DateStyle;%s", restore, restore);
	cr_assert_str_eq(out.data, want);
	cr_assert_eq(moves[0].at, strlen("SET datestyle = 'SQL'; RESET datestyle;"));
	cr_assert_eq(moves[0].chars, strlen(restore));
	cr_assert_eq(moves[1].chars, strlen(restore) + 1);
	/* "SHOW" in the rewritten text is where the client wrote it. */
	uint32_t show = (uint32_t)(strstr(out.data, "SHOW") - out.data) + 1;
	cr_assert_eq(reset_fix_position(show, moves, 2), (uint32_t)(strstr(sql, "SHOW") - sql) + 1);
	cr_assert_eq(reset_fix_position(3, moves, 2), 3);
	cr_assert_eq(reset_fix_position(moves[0].at + 5, moves, 2), moves[0].at + 1, "inside a restore");
	sql_text_free(&out);

	struct reset_plan none = plan_of("RESET timezone");
	cr_assert_eq(reset_rewrite("RESET timezone", 14, &none, &startup, &PARAMS_EMPTY, MARK, &out, moves), 0);
	sql_text_free(&out);
	params_free(&startup);
}
