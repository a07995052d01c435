/*
 * test_userlist.c — Criterion tests for daemon/userlist.c (auth_file).
 *
 * Texts are parsed as written here; a file on disk is loaded once, and a
 * missing one. Each error compares the whole "FILE:LINE: message" text.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "userlist.h"
#include "../lib/alloc_fail.h"

#define VERIFIER "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==" \
	"$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="

static struct userlist *parse(const char *text, char **errors)
{
	return userlist_parse("users.txt", text, strlen(text), errors);
}

static void assert_error(const char *text, const char *want)
{
	char *errors = NULL;
	struct userlist *list = parse(text, &errors);

	cr_assert_null(list, "accepted: %s", text);
	cr_assert_not_null(errors);
	cr_assert_str_eq(errors, want, "for: %s", text);
	free(errors);
}

Test(userlist, kinds_quotes_comments)
{
	static const char text[] =
		"; a comment\n"
		"# another\n"
		"\n"
		"   \t\n"
		"\"alice\" \"secret\"\n"
		"\"bob\"\t\"md520c46e3762c864548e296b33c3406aa9\" \"\" ignored\n"
		"  \"carol\" \"" VERIFIER "\"\r\n"
		"\"say \"\"hi\"\"\" \"pa\"\"ss\"\n"
		"\"dave\" \"md5NOTHEX\"\n"
		"\"eve\" \"\"";
	char *errors = NULL;
	struct userlist *list = parse(text, &errors);
	const struct user_secret *u;

	cr_assert_not_null(list, "%s", errors);
	cr_assert_eq(userlist_count(list), 6);
	u = userlist_find(list, "alice");
	cr_assert_not_null(u);
	cr_assert_str_eq(u->secret, "secret");
	cr_assert_eq(u->kind, SECRET_PLAIN);
	cr_assert_eq(u->line, 5);
	u = userlist_find(list, "bob");
	cr_assert_eq(u->kind, SECRET_MD5);
	u = userlist_find(list, "carol");
	cr_assert_eq(u->kind, SECRET_SCRAM);
	cr_assert_eq(u->scram.iterations, 4096);
	cr_assert_eq(u->scram.salt_len, 16);
	cr_assert_str_eq(u->secret, VERIFIER);  /* the \r of a CRLF line is not part of it */
	u = userlist_find(list, "say \"hi\"");
	cr_assert_not_null(u);
	cr_assert_str_eq(u->secret, "pa\"ss");
	/* a text that is not an md5 secret is a password, as in PostgreSQL */
	cr_assert_eq(userlist_find(list, "dave")->kind, SECRET_PLAIN);
	cr_assert_str_eq(userlist_find(list, "eve")->secret, "");
	cr_assert_null(userlist_find(list, "mallory"));
	cr_assert_null(userlist_find(list, "alic"));
	cr_assert_null(userlist_find(list, ""));
	userlist_free(list);
}

Test(userlist, errors_name_file_and_line)
{
	assert_error("\"a\" \"x\"\nalice secret\n",
		     "users.txt:2: expected a user name in double quotes\n");
	assert_error("\"alice\" secret\n", "users.txt:1: expected a secret after the user name in double quotes\n");
	assert_error("\"alice\"\n", "users.txt:1: expected a secret after the user name in double quotes\n");
	assert_error("\"alice\" \"secret\n", "users.txt:1: unterminated quoted field\n");
	assert_error("\"alice\n\"secret\"\n",
		     "users.txt:1: unterminated quoted field\nusers.txt:2: expected a secret after the user name in double quotes\n");
	assert_error("\"\" \"secret\"\n", "users.txt:1: empty user name\n");
	assert_error("\"alice\" \"SCRAM-SHA-256$4096:abc\"\n",
		     "users.txt:1: invalid SCRAM-SHA-256 secret for user \"alice\"\n");
	/* every error is reported, in line order, duplicates at the later line */
	assert_error("\"bob\" \"1\"\n\"alice\" \"2\"\nbad\n\"bob\" \"3\"\n\"alice\" \"4\"\n",
		     "users.txt:3: expected a user name in double quotes\n"
		     "users.txt:4: user \"bob\" is listed twice (first on line 1)\n"
		     "users.txt:5: user \"alice\" is listed twice (first on line 2)\n");
}

Test(userlist, nul_byte_is_an_error)
{
	static const char text[] = "\"al\0ice\" \"x\"\n";
	char *errors = NULL;

	cr_assert_null(userlist_parse("users.txt", text, sizeof(text) - 1, &errors));
	cr_assert_str_eq(errors, "users.txt:1: NUL byte in a quoted field\n");
	free(errors);
}

Test(userlist, empty_file)
{
	char *errors = NULL;
	struct userlist *list = parse("", &errors);

	cr_assert_not_null(list);
	cr_assert_null(errors);
	cr_assert_eq(userlist_count(list), 0);
	cr_assert_null(userlist_find(list, "x"));
	userlist_free(list);
}

Test(userlist, load_from_disk)
{
	char path[] = "/tmp/pglease-userlist-XXXXXX", *errors = NULL, want[128];
	int fd = mkstemp(path);
	struct userlist *list;

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "\"alice\" \"secret\"\n", 17), 17);
	close(fd);
	list = userlist_load(path, &errors);
	cr_assert_not_null(list, "%s", errors);
	cr_assert_str_eq(userlist_find(list, "alice")->secret, "secret");
	userlist_free(list);
	unlink(path);
	cr_assert_null(userlist_load(path, &errors));
	snprintf(want, sizeof(want), "%s: cannot open: No such file or directory\n", path);
	cr_assert_str_eq(errors, want);
	free(errors);
}

Test(userlist, many_users)
{
	size_t cap = 2000 * 32, n = 0;
	char *text = malloc(cap), *errors = NULL, name[32];
	struct userlist *list;

	for (int i = 0; i < 2000; i++)
		n += snprintf(text + n, cap - n, "\"user%d\" \"pw%d\"\n", (i * 7919) % 2000, i);
	list = userlist_parse("users.txt", text, n, &errors);
	cr_assert_not_null(list, "%s", errors);
	cr_assert_eq(userlist_count(list), 2000);
	for (int i = 0; i < 2000; i++) {
		snprintf(name, sizeof(name), "user%d", i);
		cr_assert_not_null(userlist_find(list, name), "%s", name);
	}
	userlist_free(list);
	free(text);
}

/*
 * Every allocation in turn fails: the parse then returns NULL with no
 * error text (out of memory), never a half list or a wrong error; once no
 * allocation fails it loads. A text with an error gives that error or none.
 */
Test(userlist, out_of_memory_at_each_allocation)
{
	static const char good[] = "\"alice\" \"secret\"\n\"bob\" \"" VERIFIER "\"\n\"carol\" \"x\"\n";
	static const char bad[] = "\"alice\" \"secret\"\nbad\n\"alice\" \"again\"\n";
	bool loaded = false;
	int k;

	if (!ALLOC_FAIL_AVAILABLE)
		cr_skip_test("allocation failure needs the non-sanitizer build");
	for (k = 1; k < 200 && !loaded; k++) {
		char *errors = (char *)1;
		struct userlist *list;

		alloc_fail_arm(k);
		list = userlist_parse("users.txt", good, strlen(good), &errors);
		alloc_fail_disarm();
		cr_assert_null(errors, "at allocation %d", k);
		loaded = list != NULL;
		if (list)
			cr_assert_eq(userlist_count(list), 3);
		userlist_free(list);
	}
	cr_assert(loaded);
	cr_assert_gt(k, 8, "only %d allocations to fail", k - 1);  /* the failures were really met */
	for (int k = 1; k < 200; k++) {
		char *errors = NULL;

		alloc_fail_arm(k);
		cr_assert_null(userlist_parse("users.txt", bad, strlen(bad), &errors));
		alloc_fail_disarm();
		if (errors)
			cr_assert_str_eq(errors, "users.txt:2: expected a user name in double quotes\n"
				      "users.txt:3: user \"alice\" is listed twice (first on line 1)\n");
		free(errors);
	}
}
