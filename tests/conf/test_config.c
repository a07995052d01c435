/*
 * test_config.c — Criterion tests for conf/config.c.
 *
 * Each test writes an INI file into a fresh temporary directory and loads
 * it. Error tests compare the complete error text, so any change to a
 * message's wording or line number shows up here.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"

static char tmpdir[] = "/tmp/pglease-test-config-XXXXXX";
static char ini_path[sizeof(tmpdir) + 32];

static void make_tmpdir(void)
{
	cr_assert_not_null(mkdtemp(tmpdir), "mkdtemp failed");
	snprintf(ini_path, sizeof(ini_path), "%s/pglease.ini", tmpdir);
}

static void remove_tmpdir(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *e;
	char path[sizeof(tmpdir) + 300];

	if (!d)
		return;
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", tmpdir, e->d_name);
		unlink(path);
	}
	closedir(d);
	rmdir(tmpdir);
}

TestSuite(config, .init = make_tmpdir, .fini = remove_tmpdir);

static void write_ini(const char *text)
{
	FILE *f = fopen(ini_path, "w");

	cr_assert_not_null(f);
	cr_assert_eq(fputs(text, f) >= 0, 1);
	cr_assert_eq(fclose(f), 0);
}

/* Loads text and requires success. */
static struct config *load_ok(const char *text)
{
	char *errors = (char *)"unset";
	struct config *cfg;

	write_ini(text);
	cfg = config_load(ini_path, &errors);
	cr_assert_not_null(cfg, "unexpected errors:\n%s", errors ? errors : "(null)");
	cr_assert_null(errors);
	return cfg;
}

/* Prefixes every line of expected with "PATH:" so tests read like the output. */
static char *with_path(const char *expected)
{
	size_t size = strlen(expected) * 2 + 64 * strlen(ini_path) + 1;
	char *out = calloc(1, size), *o = out;

	while (*expected) {
		const char *nl = strchr(expected, '\n');
		size_t len = nl ? (size_t)(nl - expected + 1) : strlen(expected);

		o += sprintf(o, "%s:%.*s", ini_path, (int)len, expected);
		expected += len;
	}
	return out;
}

/* Loads text and requires failure with exactly these error lines. */
static void expect_errors(const char *text, const char *expected)
{
	char *errors = NULL, *want = with_path(expected);
	struct config *cfg;

	write_ini(text);
	cfg = config_load(ini_path, &errors);
	cr_assert_null(cfg);
	cr_assert_not_null(errors);
	cr_assert_str_eq(errors, want);
	free(errors);
	free(want);
}

/* ---- successful loads */

Test(config, defaults_for_an_empty_section)
{
	struct config *c = load_ok("[pglease]\n");

	cr_assert_str_eq(c->path, ini_path);
	cr_assert_eq(c->listen_port, 6432);
	cr_assert_str_eq(c->unix_socket_dir, "/tmp");
	cr_assert_eq(c->unix_socket_mode, 0777);
	cr_assert_eq(c->auth_type, AUTH_PEER);
	cr_assert_eq(c->pool_mode, POOL_MODE_TRANSACTION);
	cr_assert_eq(c->default_pool_size, 20);
	cr_assert_eq(c->min_pool_size, 0);
	cr_assert_eq(c->max_client_conn, 100);
	cr_assert_float_eq(c->query_wait_timeout, 120, 1e-9);
	cr_assert_float_eq(c->server_connect_timeout, 15, 1e-9);
	cr_assert_float_eq(c->client_login_timeout, 60, 1e-9);
	cr_assert_float_eq(c->server_check_delay, 30, 1e-9);
	cr_assert_float_eq(c->server_idle_timeout, 600, 1e-9);
	cr_assert_float_eq(c->server_lifetime, 3600, 1e-9);
	cr_assert_float_eq(c->server_drain_timeout, 5, 1e-9);
	cr_assert_float_eq(c->shutdown_timeout, 30, 1e-9);
	cr_assert_str_eq(c->server_reset_query, "DISCARD ALL");
	cr_assert_str_eq(c->server_check_query, "select 1");
	cr_assert_eq(c->log_level, LOG_INFO);
	cr_assert_eq(c->db_count, 0);
	config_free(c);
}

Test(config, empty_file_loads_with_defaults_and_no_databases)
{
	struct config *c = load_ok("");

	cr_assert_eq(c->listen_port, 6432);
	cr_assert_eq(c->db_count, 0);
	cr_assert_null(config_find_db(c, "anything"));
	config_free(c);
}

Test(config, every_key_is_parsed)
{
	struct config *c = load_ok(
		"[pglease]\n"
		"listen_port = 7000\n"
		"unix_socket_dir = /run/pglease\n"
		"unix_socket_mode = 0700\n"
		"auth_type = trust\n"
		"pool_mode = session\n"
		"default_pool_size = 50\n"
		"min_pool_size = 5\n"
		"max_client_conn = 5000\n"
		"query_wait_timeout = 0\n"
		"server_connect_timeout = 2.5\n"
		"client_login_timeout = 0.25\n"
		"server_check_delay = 0\n"
		"server_idle_timeout = 30\n"
		"server_lifetime = 0\n"
		"server_drain_timeout = 1.5\n"
		"shutdown_timeout = 0\n"
		"server_reset_query = RESET ALL; SELECT 1\n"
		"server_check_query = SELECT 'ok'\n"
		"log_level = debug\n");

	cr_assert_eq(c->listen_port, 7000);
	cr_assert_str_eq(c->unix_socket_dir, "/run/pglease");
	cr_assert_eq(c->unix_socket_mode, 0700);
	cr_assert_eq(c->auth_type, AUTH_TRUST);
	cr_assert_eq(c->pool_mode, POOL_MODE_SESSION);
	cr_assert_eq(c->default_pool_size, 50);
	cr_assert_eq(c->min_pool_size, 5);
	cr_assert_eq(c->max_client_conn, 5000);
	cr_assert_float_eq(c->query_wait_timeout, 0, 1e-9);
	cr_assert_float_eq(c->server_connect_timeout, 2.5, 1e-9);
	cr_assert_float_eq(c->client_login_timeout, 0.25, 1e-9);
	cr_assert_float_eq(c->server_check_delay, 0, 1e-9);
	cr_assert_float_eq(c->server_idle_timeout, 30, 1e-9);
	cr_assert_float_eq(c->server_lifetime, 0, 1e-9);
	cr_assert_float_eq(c->server_drain_timeout, 1.5, 1e-9);
	cr_assert_float_eq(c->shutdown_timeout, 0, 1e-9);
	/* ";" not preceded by whitespace is not a comment */
	cr_assert_str_eq(c->server_reset_query, "RESET ALL; SELECT 1");
	cr_assert_str_eq(c->server_check_query, "SELECT 'ok'");
	cr_assert_eq(c->log_level, LOG_DEBUG);
	config_free(c);
}

Test(config, range_limits_are_inclusive)
{
	struct config *c = load_ok(
		"[pglease]\n"
		"listen_port = 65535\n"
		"default_pool_size = 10000\n"
		"min_pool_size = 10000\n"
		"max_client_conn = 1000000\n"
		"server_lifetime = 31536000\n"
		"unix_socket_mode = 0\n");

	cr_assert_eq(c->listen_port, 65535);
	cr_assert_eq(c->min_pool_size, 10000);
	cr_assert_eq(c->max_client_conn, 1000000);
	cr_assert_float_eq(c->server_lifetime, 31536000, 1e-9);
	cr_assert_eq(c->unix_socket_mode, 0);
	config_free(c);
}

Test(config, value_forms)
{
	struct config *c = load_ok(
		"[pglease]\n"
		"unix_socket_mode = 755\n"
		"query_wait_timeout = .5\n"
		"server_idle_timeout = 10.\n"
		"server_lifetime = 0.3\n"
		"log_level = Warning\n"
		"pool_mode = SESSION\n"
		"server_reset_query =\n");

	cr_assert_eq(c->unix_socket_mode, 0755);
	cr_assert_float_eq(c->query_wait_timeout, 0.5, 1e-9);
	cr_assert_float_eq(c->server_idle_timeout, 10, 1e-9);
	cr_assert_eq(c->server_lifetime, 0.3);
	cr_assert_eq(c->log_level, LOG_WARNING);
	cr_assert_eq(c->pool_mode, POOL_MODE_SESSION);
	cr_assert_str_eq(c->server_reset_query, "");
	config_free(c);
}

Test(config, comments_whitespace_crlf_and_bom)
{
	struct config *c = load_ok(
		"\xEF\xBB\xBF; leading comment\r\n"
		"# another comment\r\n"
		"\r\n"
		"  [pglease]\r\n"
		"\tlisten_port = 5433 ; trailing comment\r\n"
		"    log_level=error\r\n"
		"[databases]\r\n"
		"  app = host=x   \r\n");

	cr_assert_eq(c->listen_port, 5433);
	cr_assert_eq(c->log_level, LOG_ERROR);
	cr_assert_eq(c->db_count, 1);
	cr_assert_str_eq(c->dbs[0].conninfo, "host=x");
	cr_assert_eq(c->dbs[0].line, 8);
	config_free(c);
}

/* inih would treat an indented line as the continuation of the previous value. */
Test(config, indented_line_is_not_a_continuation)
{
	struct config *c = load_ok(
		"[pglease]\n"
		"listen_port = 7000\n"
		"    default_pool_size = 7\n");

	cr_assert_eq(c->listen_port, 7000);
	cr_assert_eq(c->default_pool_size, 7);
	config_free(c);
}

Test(config, databases)
{
	struct config *c = load_ok(
		"[databases]\n"
		"app = host=db1 port=5433 dbname=real\n"
		"empty =\n"
		"uri = postgresql://u@db2:5432/x?connect_timeout=3\n"
		"uri2 = postgres://db3/y\n"
		"* = host=fallback\n");

	cr_assert_eq(c->db_count, 5);
	cr_assert_str_eq(c->dbs[0].name, "app");
	cr_assert_str_eq(c->dbs[0].conninfo, "host=db1 port=5433 dbname=real");
	cr_assert_eq(c->dbs[0].pool_size, -1);
	cr_assert_eq(c->dbs[0].pool_mode, -1);
	cr_assert_eq(c->dbs[0].line, 2);
	cr_assert_str_eq(c->dbs[1].conninfo, "");
	cr_assert_str_eq(c->dbs[2].conninfo, "postgresql://u@db2:5432/x?connect_timeout=3");
	cr_assert_str_eq(c->dbs[3].conninfo, "postgres://db3/y");
	cr_assert_str_eq(c->dbs[4].name, "*");
	cr_assert_eq(c->dbs[4].line, 6);
	config_free(c);
}

Test(config, pool_keys_are_taken_out_of_the_conninfo)
{
	struct config *c = load_ok(
		"[databases]\n"
		"a = pool_size=5 host=db1 pool_mode=session dbname=x\n"
		"b = host=db1 password='it\\'s a \\\\ secret' pool_size = 7\n"
		"c = pool_mode=transaction\n"
		"d = host=db1 pool_size=3 pool_size=4\n"
		"e = application_name=pool_size=9\n");

	cr_assert_str_eq(c->dbs[0].conninfo, "host=db1 dbname=x");
	cr_assert_eq(c->dbs[0].pool_size, 5);
	cr_assert_eq(c->dbs[0].pool_mode, POOL_MODE_SESSION);
	/* other parameters keep their exact quoting */
	cr_assert_str_eq(c->dbs[1].conninfo, "host=db1 password='it\\'s a \\\\ secret'");
	cr_assert_eq(c->dbs[1].pool_size, 7);
	cr_assert_eq(c->dbs[1].pool_mode, -1);
	cr_assert_str_eq(c->dbs[2].conninfo, "");
	cr_assert_eq(c->dbs[2].pool_mode, POOL_MODE_TRANSACTION);
	cr_assert_eq(c->dbs[2].pool_size, -1);
	/* like libpq, the last of a repeated key wins */
	cr_assert_eq(c->dbs[3].pool_size, 4);
	cr_assert_str_eq(c->dbs[3].conninfo, "host=db1");
	/* a value that merely contains "pool_size=" is not the key */
	cr_assert_str_eq(c->dbs[4].conninfo, "application_name=pool_size=9");
	cr_assert_eq(c->dbs[4].pool_size, -1);
	config_free(c);
}

Test(config, quoted_pool_key_values)
{
	struct config *c = load_ok(
		"[databases]\n"
		"a = pool_size='12' pool_mode='session' host='my host'\n");

	cr_assert_eq(c->dbs[0].pool_size, 12);
	cr_assert_eq(c->dbs[0].pool_mode, POOL_MODE_SESSION);
	cr_assert_str_eq(c->dbs[0].conninfo, "host='my host'");
	config_free(c);
}

Test(config, database_name_length)
{
	const char *n63 = "a23456789012345678901234567890123456789012345678901234567890123";
	char text[256];
	struct config *c;

	snprintf(text, sizeof(text), "[databases]\n%s = host=x\n", n63);
	c = load_ok(text);
	cr_assert_str_eq(c->dbs[0].name, n63);
	config_free(c);
	snprintf(text, sizeof(text), "[databases]\n%s4 = host=x\n", n63);
	expect_errors(text, "2: [databases] a234567890123456789012345678901234567890123456789012345678901234:"
		      " database name is too long (64 bytes, at most 63)\n");
}

Test(config, long_lines_are_read_whole)
{
	size_t n = 3000;
	char *text = malloc(n + 64), *p = text;
	struct config *c;

	p += sprintf(p, "[databases]\napp = host=x password=");
	memset(p, 'x', n);
	strcpy(p + n, "\n");
	c = load_ok(text);
	cr_assert_eq(strlen(c->dbs[0].conninfo), strlen("host=x password=") + n);
	config_free(c);
	free(text);
}

Test(config, find_db_exact_then_star_then_null)
{
	struct config *c = load_ok(
		"[databases]\n"
		"app = host=a\n"
		"other = host=b\n");

	cr_assert_str_eq(config_find_db(c, "app")->conninfo, "host=a");
	cr_assert_str_eq(config_find_db(c, "other")->name, "other");
	cr_assert_null(config_find_db(c, "missing"));
	cr_assert_null(config_find_db(c, "App"), "names are case-sensitive");
	config_free(c);

	c = load_ok(
		"[databases]\n"
		"* = host=fallback\n"
		"app = host=a\n");
	cr_assert_str_eq(config_find_db(c, "app")->conninfo, "host=a");
	cr_assert_str_eq(config_find_db(c, "missing")->name, "*");
	cr_assert_str_eq(config_find_db(c, "missing")->conninfo, "host=fallback");
	config_free(c);
}

Test(config, pool_mode_names)
{
	cr_assert_str_eq(pool_mode_name(POOL_MODE_TRANSACTION), "transaction");
	cr_assert_str_eq(pool_mode_name(POOL_MODE_SESSION), "session");
	cr_assert_str_eq(pool_mode_name((enum pool_mode)7), "unknown");
}

Test(config, free_null_is_harmless)
{
	config_free(NULL);
}

/* The sample is found relative to this source file, wherever make runs. */
Test(config, shipped_sample_loads_cleanly)
{
	const char *me = __FILE__, *cut = strstr(me, "tests/conf/");
	char path[4096], *errors = NULL;
	struct config *c;

	snprintf(path, sizeof(path), "%.*sconf/pglease.ini", (int)(cut ? cut - me : 0), me);
	c = config_load(path, &errors);
	cr_assert_not_null(c, "%s: %s", path, errors ? errors : "");
	cr_assert_null(errors);
	cr_assert_eq(c->listen_port, 6432);
	cr_assert_eq(c->pool_mode, POOL_MODE_TRANSACTION);
	cr_assert_geq(c->db_count, 2);
	cr_assert_not_null(config_find_db(c, "reports"));
	cr_assert_eq(config_find_db(c, "reports")->pool_size, 5);
	cr_assert_eq(config_find_db(c, "reports")->pool_mode, POOL_MODE_SESSION);
	cr_assert_null(strstr(config_find_db(c, "reports")->conninfo, "pool_"));
	config_free(c);
}

/* ---- errors, one kind per test, whole text compared */

Test(config, unknown_key_with_suggestion)
{
	expect_errors("[pglease]\n\ndefualt_pool_size = 5\n",
		      "3: [pglease] defualt_pool_size: unknown key; did you mean \"default_pool_size\"?\n");
}

Test(config, unknown_key_suggestion_ignores_case)
{
	expect_errors("[pglease]\nListen_Port = 5\n",
		      "2: [pglease] Listen_Port: unknown key; did you mean \"listen_port\"?\n");
}

Test(config, unknown_key_without_suggestion)
{
	expect_errors("[pglease]\nfrobnicate = 1\nport = 5432\n",
		      "2: [pglease] frobnicate: unknown key\n"
		      "3: [pglease] port: unknown key\n");
}

Test(config, unknown_section_with_suggestion)
{
	/* reported once, at the header; its keys are not checked */
	expect_errors("[pglease]\nlisten_port = 6000\n[pgleas]\nlisten_port = 1\nbogus = 2\n",
		      "3: [pgleas]: unknown section; did you mean \"pglease\"?\n");
}

Test(config, unknown_section_without_suggestion)
{
	expect_errors("[servers]\nbob = x\n[databses]\napp = host=x\n",
		      "1: [servers]: unknown section; expected [pglease], [databases] or [users]\n"
		      "3: [databses]: unknown section; did you mean \"databases\"?\n");
}

Test(config, key_outside_any_section)
{
	expect_errors("listen_port = 5\n[pglease]\n",
		      "1: listen_port: key outside any section; put it under [pglease] or [databases]\n");
}

Test(config, missing_key_name)
{
	expect_errors("[pglease]\n= 5\n[databases]\n = host=x\n",
		      "2: [pglease]: missing name before \"=\"\n"
		      "4: [databases]: missing name before \"=\"\n");
}

Test(config, bad_integer)
{
	expect_errors("[pglease]\ndefault_pool_size = ten\nmax_client_conn = -1\nlisten_port =\n"
		      "min_pool_size = 1.5\n",
		      "2: [pglease] default_pool_size: invalid value \"ten\": expected an integer from 1 to 10000\n"
		      "3: [pglease] max_client_conn: invalid value \"-1\": expected an integer from 1 to 1000000\n"
		      "4: [pglease] listen_port: invalid value \"\": expected an integer from 1 to 65535\n"
		      "5: [pglease] min_pool_size: invalid value \"1.5\": expected an integer from 0 to 10000\n");
}

Test(config, integer_out_of_range)
{
	expect_errors("[pglease]\nlisten_port = 70000\nlisten_port = 0\ndefault_pool_size = 99999999999999999999\n",
		      "2: [pglease] listen_port: invalid value \"70000\": expected an integer from 1 to 65535\n"
		      "3: [pglease] listen_port: duplicate key (first defined at line 2)\n"
		      "4: [pglease] default_pool_size: invalid value \"99999999999999999999\": expected an integer from 1 to 10000\n");
}

Test(config, bad_enum_with_suggestion)
{
	expect_errors("[pglease]\npool_mode = sesion\nlog_level = debg\n",
		      "2: [pglease] pool_mode: invalid value \"sesion\": expected transaction or session; did you mean \"session\"?\n"
		      "3: [pglease] log_level: invalid value \"debg\": expected error, warning, info or debug; did you mean \"debug\"?\n");
}

Test(config, bad_enum_without_suggestion)
{
	expect_errors("[pglease]\nauth_type = password\n",
		      "2: [pglease] auth_type: invalid value \"password\": expected trust, peer, md5, scram-sha-256 or hba\n");
}

Test(config, bad_duration)
{
	expect_errors("[pglease]\n"
		      "query_wait_timeout = 5s\n"
		      "client_login_timeout = -1\n"
		      "server_check_delay = 1e3\n"
		      "server_idle_timeout = 1.2.3\n"
		      "server_lifetime = .\n"
		      "server_connect_timeout = 0\n"
		      "server_drain_timeout = 0.0\n"
		      "query_wait_timeout = 1\n"
		      "client_login_timeout = 31536000.5\n",
		      "2: [pglease] query_wait_timeout: invalid value \"5s\": expected a number of seconds from 0 to 31536000\n"
		      "3: [pglease] client_login_timeout: invalid value \"-1\": expected a number of seconds from 0 to 31536000\n"
		      "4: [pglease] server_check_delay: invalid value \"1e3\": expected a number of seconds from 0 to 31536000\n"
		      "5: [pglease] server_idle_timeout: invalid value \"1.2.3\": expected a number of seconds from 0 to 31536000\n"
		      "6: [pglease] server_lifetime: invalid value \".\": expected a number of seconds from 0 to 31536000\n"
		      "7: [pglease] server_connect_timeout: invalid value \"0\": expected a number of seconds greater than 0 and at most 31536000\n"
		      "8: [pglease] server_drain_timeout: invalid value \"0.0\": expected a number of seconds greater than 0 and at most 31536000\n"
		      "9: [pglease] query_wait_timeout: duplicate key (first defined at line 2)\n"
		      "10: [pglease] client_login_timeout: duplicate key (first defined at line 3)\n");
}

/* absurdly long input must not slip through as NaN or infinity */
Test(config, duration_with_huge_digit_count)
{
	char text[1024], want[1024], digits[401];

	memset(digits, '1', 400);
	digits[400] = '\0';
	snprintf(text, sizeof(text), "[pglease]\nquery_wait_timeout = 0.%s\n", digits);
	snprintf(want, sizeof(want), "2: [pglease] query_wait_timeout: invalid value \"0.%s\":"
		 " expected a number of seconds from 0 to 31536000\n", digits);
	expect_errors(text, want);
}

Test(config, bad_octal_mode)
{
	expect_errors("[pglease]\nunix_socket_mode = 0888\n", "2: [pglease] unix_socket_mode: invalid value \"0888\":"
		      " expected an octal mode from 0000 to 0777, such as 0700\n");
	expect_errors("[pglease]\nunix_socket_mode = 1777\n", "2: [pglease] unix_socket_mode: invalid value \"1777\":"
		      " expected an octal mode from 0000 to 0777, such as 0700\n");
	expect_errors("[pglease]\nunix_socket_mode = rwx\n", "2: [pglease] unix_socket_mode: invalid value \"rwx\":"
		      " expected an octal mode from 0000 to 0777, such as 0700\n");
}

Test(config, duplicate_key)
{
	expect_errors("[pglease]\nlog_level = info\n\n[pglease]\nlog_level = debug\n",
		      "5: [pglease] log_level: duplicate key (first defined at line 2)\n");
}

Test(config, unix_socket_dir_empty_or_too_long)
{
	char text[512], want[512], dir[128];

	expect_errors("[pglease]\nunix_socket_dir =\n",
		      "2: [pglease] unix_socket_dir: invalid value \"\": expected a non-empty value\n");

	/* 95 + "/.s.PGSQL.6432" (14) = 109 > 107 */
	memset(dir, 'd', 95);
	dir[0] = '/';
	dir[95] = '\0';
	snprintf(text, sizeof(text), "[pglease]\nunix_socket_dir = %s\nlisten_port = 6432\n", dir);
	snprintf(want, sizeof(want), "2: [pglease] unix_socket_dir: too long: the socket path"
		 " \"%s/.s.PGSQL.6432\" would be 109 bytes, at most 107 fit\n", dir);
	expect_errors(text, want);

	/* 93 + 14 = 107 fits exactly */
	dir[93] = '\0';
	snprintf(text, sizeof(text), "[pglease]\nunix_socket_dir = %s\n", dir);
	config_free(load_ok(text));
}

Test(config, min_pool_size_above_default_pool_size)
{
	/* reported on the min_pool_size line, whichever comes first in the file */
	expect_errors("[pglease]\nmin_pool_size = 10\nlog_level = info\ndefault_pool_size = 5\n",
		      "2: [pglease] min_pool_size: 10 exceeds default_pool_size (5)\n");
	expect_errors("[pglease]\nmin_pool_size = 21\n",
		      "2: [pglease] min_pool_size: 21 exceeds default_pool_size (20)\n");
	config_free(load_ok("[pglease]\nmin_pool_size = 5\ndefault_pool_size = 5\n"));
}

Test(config, duplicate_database_names_both_lines)
{
	expect_errors("[databases]\napp = host=a\nother = host=b\n\napp = host=c\n",
		      "5: [databases] app: duplicate database \"app\" (first defined at line 2)\n");
}

Test(config, conninfo_rejected_by_libpq)
{
	expect_errors("[databases]\n"
		      "a = host=x bogus=1\n"
		      "b = host 'x'\n"
		      "c = host='unterminated\n"
		      "d = postgresql://h/db?nonsense=1\n",
		      "2: [databases] a: invalid conninfo: invalid connection option \"bogus\"\n"
		      "3: [databases] b: invalid conninfo: missing \"=\" after \"host\" in connection info string\n"
		      "4: [databases] c: invalid conninfo: unterminated quoted string in connection info string\n"
		      "5: [databases] d: invalid conninfo: invalid URI query parameter: \"nonsense\"\n");
}

Test(config, pool_keys_in_a_uri_are_not_supported)
{
	expect_errors("[databases]\nu = postgresql://h/db?pool_size=3\n",
		      "2: [databases] u: invalid conninfo: invalid URI query parameter: \"pool_size\""
		      " (pool_size and pool_mode are not supported in a URI; use key=value form)\n");
}

Test(config, pglease_key_in_databases_section)
{
	expect_errors("[databases]\nlisten_port = 5432\n",
		      "2: [databases] listen_port: invalid conninfo: missing \"=\" after \"5432\" in connection"
		      " info string (this is a [pglease] setting, in the [databases] section)\n");
}

Test(config, bad_pool_keys_in_conninfo)
{
	expect_errors("[databases]\n"
		      "a = host=x pool_size=0\n"
		      "b = pool_size=many\n"
		      "c = pool_mode=sesion host=x\n"
		      "d = pool_mode=statement pool_size=10001\n",
		      "2: [databases] a: invalid pool_size \"0\": expected an integer from 1 to 10000\n"
		      "3: [databases] b: invalid pool_size \"many\": expected an integer from 1 to 10000\n"
		      "4: [databases] c: invalid pool_mode \"sesion\": expected transaction or session; did you mean \"session\"?\n"
		      "5: [databases] d: invalid pool_mode \"statement\": expected transaction or session\n"
		      "5: [databases] d: invalid pool_size \"10001\": expected an integer from 1 to 10000\n");
}

/* libpq explains the syntax error, not the pglease key that came before it */
Test(config, pool_key_before_a_conninfo_syntax_error)
{
	expect_errors("[databases]\na = pool_size=2 host='x\n",
		      "2: [databases] a: invalid conninfo: unterminated quoted string in connection info string\n");
}

Test(config, syntax_errors_from_inih)
{
	expect_errors("[pglease]\nlisten_port 5432\n", "2: syntax error\n");
	/* inih itself only reports the first one; the rest must not be lost */
	expect_errors("[pglease]\njunk\nlog_level = info\n[databases\nmore junk\n",
		      "2: syntax error\n"
		      "4: syntax error\n"
		      "5: syntax error\n");
}

Test(config, line_too_long)
{
	size_t n = 9000;
	char *text = malloc(n + 64), *p = text;

	p += sprintf(p, "[databases]\napp = password=");
	memset(p, 'x', n);
	strcpy(p + n, "\nb = host=x\n");
	expect_errors(text, "2: line too long (at most 8190 characters)\n");
	free(text);
}

Test(config, missing_file)
{
	char *errors = NULL, want[512];

	snprintf(want, sizeof(want), "%s/nope.ini: cannot open: No such file or directory\n", tmpdir);
	snprintf(ini_path, sizeof(ini_path), "%s/nope.ini", tmpdir);
	cr_assert_null(config_load(ini_path, &errors));
	cr_assert_str_eq(errors, want);
	free(errors);
}

Test(config, directory_instead_of_file)
{
	char *errors = NULL, want[512];

	snprintf(want, sizeof(want), "%s: cannot read: Is a directory\n", tmpdir);
	cr_assert_null(config_load(tmpdir, &errors));
	cr_assert_str_eq(errors, want);
	free(errors);
}

Test(config, errors_pointer_may_be_null)
{
	write_ini("[pglease]\nlisten_port = x\n");
	cr_assert_null(config_load(ini_path, NULL));
}

Test(config, all_errors_reported_in_file_order)
{
	expect_errors(
		"; a config with one mistake of each kind\n"        /* 1 */
		"[pglease]\n"                                       /* 2 */
		"min_pool_size = 30\n"                              /* 3 */
		"defualt_pool_size = 5\n"                           /* 4 */
		"listen_port = 70000\n"                             /* 5 */
		"pool_mode = sesion\n"                              /* 6 */
		"this line is junk\n"                               /* 7 */
		"listen_port = 6432\n"                              /* 8 */
		"server_check_delay = 10min\n"                      /* 9 */
		"[databses]\n"                                      /* 10 */
		"ignored = x\n"                                     /* 11 */
		"[databases]\n"                                     /* 12 */
		"app = host=db pool_size=5 pool_mode=session\n"     /* 13 */
		"bad = host=x nosuch=1\n"                           /* 14 */
		"app = host=other\n"                                /* 15 */
		"c = pool_size=0\n",                                /* 16 */
		"3: [pglease] min_pool_size: 30 exceeds default_pool_size (20)\n"
		"4: [pglease] defualt_pool_size: unknown key; did you mean \"default_pool_size\"?\n"
		"5: [pglease] listen_port: invalid value \"70000\": expected an integer from 1 to 65535\n"
		"6: [pglease] pool_mode: invalid value \"sesion\": expected transaction or session; did you mean \"session\"?\n"
		"7: syntax error\n"
		"8: [pglease] listen_port: duplicate key (first defined at line 5)\n"
		"9: [pglease] server_check_delay: invalid value \"10min\": expected a number of seconds from 0 to 31536000\n"
		"10: [databses]: unknown section; did you mean \"databases\"?\n"
		"14: [databases] bad: invalid conninfo: invalid connection option \"nosuch\"\n"
		"15: [databases] app: duplicate database \"app\" (first defined at line 13)\n"
		"16: [databases] c: invalid pool_size \"0\": expected an integer from 1 to 10000\n");
}

Test(config, session_state)
{
	struct config *c = load_ok("[pglease]\n");
	cr_assert_eq(c->session_state, SESSION_STATE_PIN);
	config_free(c);
	c = load_ok("[pglease]\nsession_state = ignore\n");
	cr_assert_eq(c->session_state, SESSION_STATE_IGNORE);
	config_free(c);
	c = load_ok("[pglease]\nsession_state = PIN\n");
	cr_assert_eq(c->session_state, SESSION_STATE_PIN);
	config_free(c);
}

/* ---- TCP and client TLS keys */

Test(config, tcp_and_tls_defaults)
{
	struct config *c = load_ok("[pglease]\n");

	cr_assert_str_eq(c->listen_addr, "");
	cr_assert_eq(c->tcp_keepalive, 1);
	cr_assert_eq(c->tcp_keepidle, 0);
	cr_assert_eq(c->client_tls_sslmode, TLS_DISABLE);
	cr_assert_str_eq(c->client_tls_protocols, "secure");
	cr_assert_str_eq(c->client_tls_ciphers, "default");
	config_free(c);
}

Test(config, tcp_and_tls_keys_are_parsed)
{
	struct config *c = load_ok(
		"[pglease]\n"
		"listen_addr = 127.0.0.1, ::1 ,10.1.2.3\n"
		"tcp_keepalive = 0\n"
		"tcp_keepidle = 60\n"
		"tcp_keepintvl = 5\n"
		"tcp_keepcnt = 3\n"
		"client_tls_sslmode = verify-full\n"
		"client_tls_key_file = /k.pem\n"
		"client_tls_cert_file = /c.pem\n"
		"client_tls_ca_file = /ca.pem\n"
		"client_tls_protocols = tlsv1.3\n"
		"client_tls_ciphers = HIGH:!aNULL\n");

	cr_assert_str_eq(c->listen_addr, "127.0.0.1, ::1 ,10.1.2.3");
	cr_assert_eq(c->tcp_keepalive, 0);
	cr_assert_eq(c->tcp_keepidle, 60);
	cr_assert_eq(c->tcp_keepintvl, 5);
	cr_assert_eq(c->tcp_keepcnt, 3);
	cr_assert_eq(c->client_tls_sslmode, TLS_VERIFY_FULL);
	cr_assert_str_eq(c->client_tls_key_file, "/k.pem");
	cr_assert_str_eq(c->client_tls_ca_file, "/ca.pem");
	cr_assert_str_eq(c->client_tls_ciphers, "HIGH:!aNULL");
	config_free(c);
	c = load_ok("[pglease]\nlisten_addr = *\nclient_tls_sslmode = Prefer\n"
		    "client_tls_key_file = k\nclient_tls_cert_file = c\n");
	cr_assert_str_eq(c->listen_addr, "*");
	cr_assert_eq(c->client_tls_sslmode, TLS_PREFER);
	config_free(c);
}

Test(config, listen_addr_takes_numeric_addresses_only)
{
	expect_errors("[pglease]\nlisten_addr = localhost\n",
		      "2: [pglease] listen_addr: invalid address \"localhost\": expected \"*\" or a numeric IPv4 or IPv6 address\n");
	expect_errors("[pglease]\nlisten_addr = 127.0.0.1,,::1\n",
		      "2: [pglease] listen_addr: invalid value \"127.0.0.1,,::1\": expected \"*\" or IP addresses separated by commas\n");
	expect_errors("[pglease]\nlisten_addr = 1.2.3.256\n",
		      "2: [pglease] listen_addr: invalid address \"1.2.3.256\": expected \"*\" or a numeric IPv4 or IPv6 address\n");
}

Test(config, client_tls_needs_its_files)
{
	expect_errors("[pglease]\nclient_tls_sslmode = require\n",
		      "2: [pglease] client_tls_sslmode: require needs client_tls_key_file and client_tls_cert_file\n");
	expect_errors("[pglease]\nclient_tls_key_file = k\nclient_tls_cert_file = c\nclient_tls_sslmode = verify-ca\n",
		      "4: [pglease] client_tls_sslmode: verify-ca needs client_tls_ca_file to verify client certificates\n");
	expect_errors("[pglease]\nclient_tls_sslmode = sometimes\n",
		      "2: [pglease] client_tls_sslmode: invalid value \"sometimes\": expected disable, allow, prefer, require, verify-ca or verify-full\n");
	expect_errors("[pglease]\nclient_tls_protocols = sslv3\n",
		      "2: [pglease] client_tls_protocols: invalid value \"sslv3\": expected all, secure, legacy, default or a list of tlsv1.0, tlsv1.1, tlsv1.2, tlsv1.3\n");
}

/* ---- auth_query (pool/authq.c) */

Test(config, auth_query_keys_and_their_defaults)
{
	struct config *c = load_ok("[pglease]\n");

	cr_assert_str_eq(c->auth_user, "");
	cr_assert_str_eq(c->auth_query, "SELECT usename, passwd, valuntil FROM pg_shadow WHERE usename=$1");
	cr_assert_str_eq(c->auth_dbname, "");
	cr_assert_float_eq(c->auth_query_cache_ttl, 10, 1e-9);
	config_free(c);
	c = load_ok("[pglease]\nauth_user = pgl\nauth_query = SELECT * FROM f($1)\nauth_dbname = app\n"
		    "auth_query_cache_ttl = 0\n[databases]\napp = host=db\n");
	cr_assert_str_eq(c->auth_user, "pgl");
	cr_assert_str_eq(c->auth_query, "SELECT * FROM f($1)");
	cr_assert_str_eq(c->auth_dbname, "app");
	cr_assert_float_eq(c->auth_query_cache_ttl, 0, 1e-9);
	config_free(c);
}

Test(config, a_database_may_have_its_own_auth_user)
{
	struct config *c = load_ok(
		"[databases]\n"
		"a = host=db1 auth_user=lookup dbname=x\n"
		"b = host=db1\n"
		"c = auth_user='' host=db1\n");

	cr_assert_str_eq(c->dbs[0].conninfo, "host=db1 dbname=x", "taken out before libpq sees it");
	cr_assert_str_eq(c->dbs[0].auth_user, "lookup");
	cr_assert_null(c->dbs[1].auth_user, "the global auth_user");
	cr_assert_str_eq(c->dbs[2].auth_user, "", "none for this database");
	config_free(c);
}

Test(config, auth_dbname_must_name_a_database)
{
	struct config *c;

	expect_errors("[pglease]\nauth_dbname = nowhere\n[databases]\napp = host=db\n",
		      "2: [pglease] auth_dbname: no [databases] entry \"nowhere\" (and no \"*\")\n");
	expect_errors("[pglease]\nauth_query =\n",
		      "2: [pglease] auth_query: invalid value \"\": expected a non-empty value\n");
	c = load_ok("[pglease]\nauth_dbname = anything\n[databases]\n* = host=db\n");
	config_free(c);
}

/* ---- client authentication: the files a method needs */

Test(config, auth_keys_default)
{
	struct config *c = load_ok("[pglease]\n");

	cr_assert_str_eq(c->auth_file, "");
	cr_assert_str_eq(c->auth_hba_file, "");
	cr_assert_float_eq(c->auth_failure_delay, 1.0, 1e-9);
	config_free(c);
}

Test(config, auth_password_methods_and_hba)
{
	struct config *c = load_ok("[pglease]\nauth_type = scram-sha-256\nauth_file = users.txt\n"
				   "auth_failure_delay = 0.25\n");

	cr_assert_eq(c->auth_type, AUTH_SCRAM);
	cr_assert_str_eq(c->auth_file, "users.txt");
	cr_assert_float_eq(c->auth_failure_delay, 0.25, 1e-9);
	config_free(c);
	c = load_ok("[pglease]\nauth_type = hba\nauth_hba_file = /etc/pglease/hba.conf\n");
	cr_assert_eq(c->auth_type, AUTH_HBA);
	config_free(c);
	c = load_ok("[pglease]\nauth_type = md5\nauth_file = u\n");
	cr_assert_eq(c->auth_type, AUTH_MD5);
	config_free(c);
}

Test(config, auth_password_method_needs_auth_file)
{
	expect_errors("[pglease]\n\nauth_type = md5\n",
		      "3: [pglease] auth_type: md5 needs auth_file or auth_user: the users' secrets\n");
	expect_errors("[pglease]\nauth_type = scram-sha-256\n",
		      "2: [pglease] auth_type: scram-sha-256 needs auth_file or auth_user: the users' secrets\n");
}

Test(config, auth_hba_needs_auth_hba_file)
{
	expect_errors("[pglease]\nauth_type = hba\nauth_file = users.txt\n",
		      "2: [pglease] auth_type: hba needs auth_hba_file: the rules\n");
}

/* ---- a [pgbouncer] section moved over */

Test(config, pgbouncer_settings_we_do_not_have_say_what_replaces_them)
{
	expect_errors("[pglease]\nlogfile = /var/log/pgbouncer.log\nserver_tls_sslmode = require\n",
		      "2: [pglease] logfile: a PgBouncer setting pglease does not have: pglease logs to stderr "
		      "(the journal under systemd); log_level sets how much\n"
		      "3: [pglease] server_tls_sslmode: a PgBouncer setting pglease does not have: backend TLS is set "
		      "in each [databases] conninfo, as for any libpq program: sslmode, sslrootcert, sslcert, sslkey, "
		      "sslcrl\n");
	expect_errors("[pgbouncer]\nlisten_port = 6432\n",
		      "1: [pgbouncer]: unknown section; rename [pgbouncer] to [pglease]: its keys have PgBouncer's "
		      "names and meanings\n");
}

/* ---- limits: caps in [pglease] and [databases], the [users] section */

Test(config, limit_keys_in_databases_are_taken_out)
{
	struct config *c = load_ok(
		"[pglease]\nmax_db_connections = 4\nreserve_pool_size = 2\nreserve_pool_timeout = 0.5\n"
		"[databases]\n"
		"a = host=db1 max_db_connections=3 max_db_client_connections=7 reserve_pool=1\n"
		"b = reserve_pool_size=5 dbname=x\n"
		"c = host=db1\n");

	cr_assert_eq(c->max_db_connections, 4);
	cr_assert_eq(c->reserve_pool_size, 2);
	cr_assert_float_eq(c->reserve_pool_timeout, 0.5, 1e-9);
	cr_assert_str_eq(c->dbs[0].conninfo, "host=db1");
	cr_assert_eq(c->dbs[0].max_db_connections, 3);
	cr_assert_eq(c->dbs[0].max_db_client_connections, 7);
	cr_assert_eq(c->dbs[0].reserve_pool_size, 1);
	cr_assert_str_eq(c->dbs[1].conninfo, "dbname=x");
	cr_assert_eq(c->dbs[1].reserve_pool_size, 5);
	cr_assert_eq(c->dbs[2].max_db_connections, -1);
	cr_assert_eq(c->dbs[2].max_db_client_connections, -1);
	cr_assert_eq(c->dbs[2].reserve_pool_size, -1);
	config_free(c);
}

Test(config, users_section)
{
	struct config *c = load_ok(
		"[users]\n"
		"alice = pool_mode=session pool_size=5 max_user_connections=10\n"
		"bob = max_user_client_connections=2\n"
		"carol =\n");

	cr_assert_eq(c->user_count, 3);
	const struct user_config *a = config_find_user(c, "alice"), *b = config_find_user(c, "bob");
	cr_assert_not_null(a);
	cr_assert_eq(a->pool_mode, POOL_MODE_SESSION);
	cr_assert_eq(a->pool_size, 5);
	cr_assert_eq(a->max_user_connections, 10);
	cr_assert_eq(a->max_user_client_connections, -1);
	cr_assert_eq(a->line, 2);
	cr_assert_eq(b->pool_mode, -1);
	cr_assert_eq(b->pool_size, -1);
	cr_assert_eq(b->max_user_connections, -1);
	cr_assert_eq(b->max_user_client_connections, 2);
	cr_assert_not_null(config_find_user(c, "carol"));
	cr_assert_null(config_find_user(c, "dave"));
	config_free(c);
}

Test(config, users_errors_name_file_line_and_key)
{
	expect_errors("[users]\n"
		      "alice = pool_mode=sesion\n"
		      "bob = pool_sise=3\n"
		      "carol = pool_size=0 max_user_connections=x\n"
		      "alice = pool_size=2\n"
		      "dave = pool_size\n",
		      "2: [users] alice: invalid pool_mode \"sesion\": expected transaction or session; did you mean \"session\"?\n"
		      "3: [users] bob: unknown setting \"pool_sise\" (a user takes pool_mode, pool_size, "
		      "max_user_connections and max_user_client_connections); did you mean \"pool_size\"?\n"
		      "4: [users] carol: invalid pool_size \"0\": expected an integer from 1 to 10000\n"
		      "4: [users] carol: invalid max_user_connections \"x\": expected an integer from 0 to 1000000\n"
		      "5: [users] alice: duplicate user \"alice\" (first defined at line 2)\n"
		      "6: [users] dave: syntax error at \"pool_size\": expected key=value settings separated by blanks\n");
}

Test(config, database_limit_errors)
{
	expect_errors("[databases]\napp = host=x max_db_connections=-1\n",
		      "2: [databases] app: invalid max_db_connections \"-1\": expected an integer from 0 to 1000000\n");
}
