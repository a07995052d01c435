/*
 * test_pause.c — Criterion tests for pool/pause.c, the set of paused
 * database names behind PAUSE, RESUME and KILL ("" means every database).
 * Each test runs in its own process, so each starts with nothing paused.
 */
#include <criterion/criterion.h>
#include <stdio.h>

#include "pause.h"

Test(pause, nothing_is_paused_at_first)
{
	cr_assert_not(pause_all());
	cr_assert_not(pause_covers("app"));
	cr_assert_not(pause_covers(""));
}

Test(pause, a_named_database_and_no_other)
{
	cr_assert_eq(pause_add("app"), 0);
	cr_assert(pause_covers("app"));
	cr_assert_not(pause_covers("App"), "names are compared exactly, as PostgreSQL's are");
	cr_assert_not(pause_covers("ap"));
	cr_assert_not(pause_covers("apps"));
	cr_assert_not(pause_covers("reports"));
	cr_assert_not(pause_all());
}

Test(pause, resume_by_name_resumes_only_that_one)
{
	cr_assert_eq(pause_add("app"), 0);
	cr_assert_eq(pause_add("reports"), 0);
	cr_assert_eq(pause_add("third"), 0);
	pause_remove("reports");
	cr_assert(pause_covers("app"));
	cr_assert_not(pause_covers("reports"));
	cr_assert(pause_covers("third"), "the last name, moved into the freed slot, is still there");
	pause_remove("app");
	pause_remove("third");
	cr_assert_not(pause_covers("app"));
	cr_assert_not(pause_covers("third"));
}

Test(pause, pausing_twice_is_undone_by_one_resume)
{
	cr_assert_eq(pause_add("app"), 0);
	cr_assert_eq(pause_add("app"), 0);
	pause_remove("app");
	cr_assert_not(pause_covers("app"));
}

Test(pause, resuming_what_is_not_paused_changes_nothing)
{
	cr_assert_eq(pause_add("app"), 0);
	pause_remove("other");
	cr_assert(pause_covers("app"));
	pause_remove("");
	pause_remove("");
	cr_assert_not(pause_covers("app"));
}

Test(pause, everything_covers_any_name_even_one_made_later)
{
	cr_assert_eq(pause_add(""), 0);
	cr_assert(pause_all());
	cr_assert(pause_covers("app"));
	cr_assert(pause_covers("a database no pool has yet"));
}

Test(pause, resume_of_everything_also_resumes_the_named_ones)
{
	cr_assert_eq(pause_add("app"), 0);
	cr_assert_eq(pause_add(""), 0);
	cr_assert_eq(pause_add("reports"), 0);          /* paused anyway; still remembered by name */
	pause_remove("");
	cr_assert_not(pause_all());
	cr_assert_not(pause_covers("app"));
	cr_assert_not(pause_covers("reports"));
}

Test(pause, a_name_resumed_under_a_global_pause_stays_paused)
{
	/* The console refuses RESUME name while all are paused (admin.c); the set itself keeps the global pause. */
	cr_assert_eq(pause_add(""), 0);
	cr_assert_eq(pause_add("app"), 0);
	pause_remove("app");
	cr_assert(pause_covers("app"));
	cr_assert(pause_all());
}

Test(pause, many_names)
{
	char name[16];

	for (int i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "db%d", i);
		cr_assert_eq(pause_add(name), 0);
	}
	for (int i = 0; i < 200; i += 2) {
		snprintf(name, sizeof(name), "db%d", i);
		pause_remove(name);
	}
	for (int i = 0; i < 200; i++) {
		snprintf(name, sizeof(name), "db%d", i);
		cr_assert_eq(pause_covers(name), i % 2 == 1, "%s", name);
	}
}
