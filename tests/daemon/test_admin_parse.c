/*
 * test_admin_parse.c — Criterion tests for the admin console's command parser.
 */
#include <criterion/criterion.h>
#include <string.h>

#include "admin_parse.h"

static struct admin_cmd ok(const char *text)
{
	struct admin_cmd cmd;
	char err[200] = "";

	cr_assert(admin_parse(text, &cmd, err, sizeof(err)), "\"%s\" refused: %s", text, err);
	return cmd;
}

static void refused(const char *text, const char *message)
{
	struct admin_cmd cmd;
	char err[200] = "";

	cr_assert_not(admin_parse(text, &cmd, err, sizeof(err)), "\"%s\" accepted", text);
	cr_assert_str_eq(err, message);
}

Test(admin_parse, show_commands_case_insensitive_with_semicolon)
{
	cr_assert_eq(ok("SHOW POOLS").verb, ADMIN_SHOW_POOLS);
	cr_assert_eq(ok("show pools;").verb, ADMIN_SHOW_POOLS);
	cr_assert_eq(ok("  Show   Clients ; ").verb, ADMIN_SHOW_CLIENTS);
	cr_assert_eq(ok("show servers").verb, ADMIN_SHOW_SERVERS);
	cr_assert_eq(ok("show stats").verb, ADMIN_SHOW_STATS);
	cr_assert_eq(ok("show databases").verb, ADMIN_SHOW_DATABASES);
	cr_assert_eq(ok("show config").verb, ADMIN_SHOW_CONFIG);
	cr_assert_eq(ok("show users").verb, ADMIN_SHOW_USERS);
	cr_assert(admin_cmd_is_show(ADMIN_SHOW_USERS));
	cr_assert_eq(ok("show version").verb, ADMIN_SHOW_VERSION);
	cr_assert_eq(ok("show\tversion\n").verb, ADMIN_SHOW_VERSION);
}

Test(admin_parse, actions_and_arguments)
{
	struct admin_cmd c = ok("pause");
	cr_assert_eq(c.verb, ADMIN_PAUSE);
	cr_assert_str_eq(c.arg, "");
	c = ok("PAUSE app;");
	cr_assert_eq(c.verb, ADMIN_PAUSE);
	cr_assert_str_eq(c.arg, "app");
	c = ok("resume \"My Db\"");
	cr_assert_eq(c.verb, ADMIN_RESUME);
	cr_assert_str_eq(c.arg, "My Db");
	c = ok("reconnect \"a\"\"b\"");
	cr_assert_str_eq(c.arg, "a\"b");
	cr_assert_eq(ok("RECONNECT").verb, ADMIN_RECONNECT);
	cr_assert_eq(ok("kill app").verb, ADMIN_KILL);
	cr_assert_eq(ok("reload").verb, ADMIN_RELOAD);
	cr_assert_eq(ok("shutdown;").verb, ADMIN_SHUTDOWN);
}

Test(admin_parse, empty_text)
{
	cr_assert_eq(ok("").verb, ADMIN_EMPTY);
	cr_assert_eq(ok(" ; ").verb, ADMIN_EMPTY);
}

Test(admin_parse, errors)
{
	refused("select 1", "unknown admin console command: \"select\"");
	refused("show frobs", "unknown SHOW command: \"frobs\"");
	refused("show", "unknown SHOW command: \"\"");
	refused("kill", "KILL needs a database name");
	refused("pause a b", "too many arguments for PAUSE");
	refused("reload now", "too many arguments for RELOAD");
	refused("show pools extra", "too many arguments for SHOW POOLS");
	refused("pause \"open", "unterminated quoted name");
	refused("pause aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
		"database name too long (at most 63 bytes)");
	refused("a b c d e f", "unknown admin console command: \"a\"");
}

Test(admin_parse, names_and_rights)
{
	cr_assert_str_eq(admin_cmd_name(ADMIN_SHOW_STATS), "SHOW");
	cr_assert_str_eq(admin_cmd_name(ADMIN_RECONNECT), "RECONNECT");
	cr_assert(admin_cmd_is_show(ADMIN_SHOW_VERSION));
	cr_assert(admin_cmd_is_show(ADMIN_SHOW_POOLS));
	cr_assert_not(admin_cmd_is_show(ADMIN_PAUSE));
	cr_assert_not(admin_cmd_is_show(ADMIN_SHUTDOWN));
	cr_assert(strstr(ADMIN_HINT, "SHOW POOLS") != NULL);
}

Test(admin_parse, set_names_its_setting)
{
	struct admin_cmd cmd = ok("SET extra_float_digits = 3");
	cr_assert_eq(cmd.verb, ADMIN_SET);
	cr_assert_str_eq(cmd.arg, "extra_float_digits");
	cr_assert_str_eq(ok("set application_name = 'PostgreSQL JDBC Driver'").arg, "application_name");
	cr_assert_str_eq(ok("  SET SESSION TimeZone TO 'UTC';").arg, "timezone");
	cr_assert_str_eq(ok("set local myext.x = 1").arg, "myext.x");
	cr_assert_str_eq(admin_cmd_name(ADMIN_SET), "SET");
	refused("SET", "unknown admin console command: \"SET\"");
	refused("settle", "unknown admin console command: \"settle\"");
}
