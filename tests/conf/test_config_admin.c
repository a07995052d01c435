/*
 * test_config_admin.c — Criterion tests for the admin/metrics keys of
 * conf/config.c: admin_users, stats_users, metrics_listen,
 * lease_warn_after, and the SHOW CONFIG iteration.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "config.h"

static char path[] = "/tmp/pglease-test-config-admin-XXXXXX";
static int fd = -1;

static void setup(void)
{
	fd = mkstemp(path);
	cr_assert(fd >= 0);
}

static void teardown(void)
{
	close(fd);
	unlink(path);
}

TestSuite(config_admin, .init = setup, .fini = teardown);

static struct config *load(const char *text, char **errors)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
	return config_load(path, errors);
}

static void expect_error(const char *text, const char *line)
{
	char *errors = NULL, want[512];
	struct config *c = load(text, &errors);

	snprintf(want, sizeof(want), "%s:%s", path, line);
	cr_assert_null(c);
	cr_assert_str_eq(errors, want);
	free(errors);
}

Test(config_admin, defaults_are_off)
{
	char *errors = NULL;
	struct config *c = load("[pglease]\n", &errors);

	cr_assert_not_null(c, "%s", errors);
	cr_assert_str_eq(c->admin_users, "");
	cr_assert_str_eq(c->stats_users, "");
	cr_assert_str_eq(c->metrics_listen, "");
	cr_assert_eq(c->lease_warn_after, 0);
	config_free(c);
}

Test(config_admin, keys_parse)
{
	char *errors = NULL;
	struct config *c = load("[pglease]\nadmin_users = alice, bob\nstats_users = carol\n"
				"metrics_listen = 127.0.0.1:9187\nlease_warn_after = 2.5\n", &errors);

	cr_assert_not_null(c, "%s", errors);
	cr_assert_str_eq(c->admin_users, "alice, bob");
	cr_assert_str_eq(c->metrics_listen, "127.0.0.1:9187");
	cr_assert_float_eq(c->lease_warn_after, 2.5, 1e-9);
	config_free(c);
}

Test(config_admin, empty_user_name_is_an_error)
{
	expect_error("[pglease]\n\nadmin_users = alice,,bob\n",
		     "3: [pglease] admin_users: empty user name in \"alice,,bob\": expected names separated by commas\n");
	expect_error("[pglease]\nstats_users = carol,\n",
		     "2: [pglease] stats_users: empty user name in \"carol,\": expected names separated by commas\n");
}

Test(config_admin, metrics_listen_errors)
{
	expect_error("[pglease]\nmetrics_listen = localhost:9187\n",
		     "2: [pglease] metrics_listen: invalid value \"localhost:9187\": the address must be a numeric "
		     "IPv4 or [IPv6] address (no host names)\n");
	expect_error("[pglease]\nmetrics_listen = 127.0.0.1\n",
		     "2: [pglease] metrics_listen: invalid value \"127.0.0.1\": expected ADDRESS:PORT (port 1 to 65535) "
		     "or an absolute Unix socket path\n");
	expect_error("[pglease]\nmetrics_listen = 127.0.0.1:0\n",
		     "2: [pglease] metrics_listen: invalid value \"127.0.0.1:0\": expected ADDRESS:PORT (port 1 to 65535) "
		     "or an absolute Unix socket path\n");
}

Test(config_admin, parse_listen_forms)
{
	struct listen_addr a;
	const char *why;

	cr_assert(config_parse_listen("127.0.0.1:9187", &a, &why));
	cr_assert_eq(a.family, AF_INET);
	cr_assert_eq(a.port, 9187);
	cr_assert_str_eq(a.host, "127.0.0.1");
	cr_assert(config_parse_listen("[::1]:80", &a, &why));
	cr_assert_eq(a.family, AF_INET6);
	cr_assert_str_eq(a.host, "::1");
	cr_assert(config_parse_listen("/run/pglease/metrics.sock", &a, &why));
	cr_assert_eq(a.family, AF_UNIX);
	cr_assert_str_eq(a.path, "/run/pglease/metrics.sock");
	cr_assert_not(config_parse_listen(":9187", &a, &why));
	cr_assert_not(config_parse_listen("[::1]:70000", &a, &why));
	cr_assert_not(config_parse_listen("relative.sock", &a, &why));
}

Test(config_admin, user_lists)
{
	cr_assert(config_user_listed("alice, bob", "bob"));
	cr_assert(config_user_listed(" alice ,bob ", "alice"));
	cr_assert(config_user_listed("alice", "alice"));
	cr_assert_not(config_user_listed("alice, bob", "ali"));
	cr_assert_not(config_user_listed("alice, bob", "bob "));
	cr_assert_not(config_user_listed("", "alice"));
	cr_assert_not(config_user_listed("alicebob", "alice"));
}

/* SHOW CONFIG walks the key table: every key once, values as written. */
Test(config_admin, key_iteration)
{
	char *errors = NULL, value[256];
	const char *def;
	struct config *c = load("[pglease]\nunix_socket_mode = 0700\npool_mode = session\nlease_warn_after = 30\n",
				&errors);
	int seen = 0;

	cr_assert_not_null(c, "%s", errors);
	for (int i = 0; i < config_key_count(); i++) {
		const char *name = config_key_show(c, i, &def, value, sizeof(value));
		cr_assert_not_null(def);
		if (strcmp(name, "unix_socket_mode") == 0) {
			cr_assert_str_eq(value, "0700");
			seen++;
		} else if (strcmp(name, "pool_mode") == 0) {
			cr_assert_str_eq(value, "session");
			cr_assert_str_eq(def, "transaction");
			seen++;
		} else if (strcmp(name, "lease_warn_after") == 0) {
			cr_assert_str_eq(value, "30");
			cr_assert_str_eq(def, "0");
			seen++;
		} else if (strcmp(name, "server_reset_query") == 0) {
			cr_assert_str_eq(value, "DISCARD ALL");
			seen++;
		}
	}
	cr_assert_eq(seen, 4);
	cr_assert_geq(config_key_count(), 22);
	config_free(c);
}
