/*
 * test_reload.c — Criterion tests for daemon/reload.c: a config file read
 * again and applied to pools that have no backends (nothing connects:
 * min_pool_size is 0 and no client waits). What a bad file, a removed,
 * changed, added or re-moded database and the restart-only settings do.
 */
#include <criterion/criterion.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "env.h"
#include "config.h"
#include "log.h"
#include "pool.h"
#include "reload.h"

static char path[] = "/tmp/pglease-test-reload-XXXXXX";

static void write_config(const char *text)
{
	FILE *f = fopen(path, "w");

	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

static void load(const char *text)
{
	char *errors = NULL;

	write_config(text);
	cfg = config_load(path, &errors);
	cr_assert_not_null(cfg, "%s", errors);
}

static void setup(void)
{
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	close(fd);
	log_set_level(LOG_ERROR);
	loop = ev_default_loop(0);
}

static void teardown(void)
{
	pool_free_all();
	reload_free_all();
	unlink(path);
}

TestSuite(reload, .init = setup, .fini = teardown);

#define GLOBALS "[pglease]\nlisten_port = 7000\nunix_socket_dir = /tmp\nlog_level = error\n"

static struct pool *pool_of(const char *dbname, const char *user)
{
	return pool_find_or_create(config_find_db(cfg, dbname), dbname, user);
}

Test(reload, a_bad_file_changes_nothing)
{
	load(GLOBALS "[databases]\napp = host=/tmp pool_size=3\n");
	const struct config *before = cfg;
	struct pool *p = pool_of("app", "u");

	write_config(GLOBALS "default_pool_size = many\n[databases]\napp = host=/tmp pool_size=9\n");
	cr_assert_eq(reload_apply(), -1);
	cr_assert_eq(cfg, before);
	cr_assert_eq(p->size, 3);
	cr_assert_eq(p->db, &before->dbs[0]);
}

Test(reload, a_changed_entry_is_applied_to_its_pools_and_they_point_at_the_new_config)
{
	load(GLOBALS "[databases]\napp = host=/tmp pool_size=3\n");
	struct pool *p = pool_of("app", "u");

	write_config(GLOBALS "default_pool_size = 11\n[databases]\napp = host=/tmp pool_size=5\n");
	cr_assert_eq(reload_apply(), 0);
	cr_assert_eq(cfg->default_pool_size, 11, "the new config is the running one");
	cr_assert_eq(p->db, config_find_db(cfg, "app"));
	cr_assert_eq(p->size, 5);
	cr_assert_eq(p->generation, 0, "same conninfo: no backend is retired");
	cr_assert_not(p->retired);
}

Test(reload, a_new_conninfo_retires_the_backends)
{
	load(GLOBALS "[databases]\napp = host=/tmp port=5432\n");
	struct pool *p = pool_of("app", "u");

	write_config(GLOBALS "[databases]\napp = host=/tmp port=5433\n");
	cr_assert_eq(reload_apply(), 0);
	cr_assert_eq(p->generation, 1);
	cr_assert_not(p->retired, "the pool goes on, with new backends");
}

Test(reload, a_removed_database_drains_its_pools_which_keep_their_old_entry)
{
	load(GLOBALS "[databases]\napp = host=/tmp\ngone = host=/tmp pool_size=4\n");
	struct pool *kept = pool_of("app", "u"), *gone = pool_of("gone", "u");

	write_config(GLOBALS "[databases]\napp = host=/tmp\n");
	cr_assert_eq(reload_apply(), 0);
	cr_assert_eq(gone->closing, POOL_CLOSE_AT_TX_END);
	cr_assert(gone->retired);
	cr_assert_str_eq(gone->db->name, "gone", "the old config stays alive while the pool points into it");
	cr_assert_eq(gone->db->pool_size, 4);
	cr_assert_not(kept->retired);
	cr_assert_null(config_find_db(cfg, "gone"));
	/* Retired and empty: the next tick frees the pool; then the old config may go too. */
	pool_maintain(ev_now(loop));
	cr_assert_eq(all_pools.count, 1);
	reload_collect();
}

Test(reload, a_database_served_through_the_fallback_drains_when_the_fallback_goes)
{
	load(GLOBALS "[databases]\n* = host=/tmp\n");
	struct pool *p = pool_of("anything", "u");

	write_config(GLOBALS "[databases]\napp = host=/tmp\n");
	cr_assert_eq(reload_apply(), 0);
	cr_assert(p->retired);
	cr_assert_eq(p->closing, POOL_CLOSE_AT_TX_END);
}

Test(reload, a_new_pool_mode_retires_the_pool_and_new_clients_get_another)
{
	load(GLOBALS "[databases]\napp = host=/tmp\n");
	struct pool *old = pool_of("app", "u");

	write_config(GLOBALS "[databases]\napp = host=/tmp pool_mode=session\n");
	cr_assert_eq(reload_apply(), 0);
	cr_assert(old->retired);
	cr_assert_eq(old->closing, POOL_OPEN, "its clients go on in the old mode");
	cr_assert_eq(old->mode, POOL_MODE_TRANSACTION);
	struct pool *fresh = pool_of("app", "u");
	cr_assert_neq(fresh, old);
	cr_assert_eq(fresh->mode, POOL_MODE_SESSION);
}

Test(reload, the_global_pool_mode_counts_for_entries_without_one)
{
	load(GLOBALS "[databases]\napp = host=/tmp\n");
	struct pool *old = pool_of("app", "u");

	write_config(GLOBALS "pool_mode = session\n[databases]\napp = host=/tmp\n");
	cr_assert_eq(reload_apply(), 0);
	cr_assert(old->retired);
}

Test(reload, an_added_database_with_a_user_gets_its_pool_at_once)
{
	load(GLOBALS "[databases]\napp = host=/tmp\n");
	cr_assert_eq(all_pools.count, 0);
	write_config(GLOBALS "[databases]\napp = host=/tmp\nrep = host=/tmp user=reporter\n");
	cr_assert_eq(reload_apply(), 0);
	cr_assert_eq(all_pools.count, 1);
	struct pool *p = list_entry(list_first(&all_pools), struct pool, node);
	cr_assert_str_eq(p->dbname, "rep");
	cr_assert_str_eq(p->user, "reporter");
	cr_assert(p->prewarmed);
}

Test(reload, settings_bound_to_the_socket_wait_for_a_restart)
{
	load(GLOBALS "unix_socket_mode = 0770\n[databases]\napp = host=/tmp\n");
	write_config("[pglease]\nlisten_port = 7001\nunix_socket_dir = /var/tmp\nunix_socket_mode = 0700\n"
		     "max_client_conn = 5\nlog_level = error\n[databases]\napp = host=/tmp\n");
	cr_assert_eq(reload_apply(), 0);
	cr_assert_eq(cfg->listen_port, 7000);
	cr_assert_str_eq(cfg->unix_socket_dir, "/tmp");
	cr_assert_eq(cfg->unix_socket_mode, 0770);
	cr_assert_eq(cfg->max_client_conn, 5, "everything else applies at once");
}

Test(reload, reloading_twice_keeps_only_configs_in_use)
{
	load(GLOBALS "[databases]\napp = host=/tmp\ngone = host=/tmp\n");
	struct pool *gone = pool_of("gone", "u");

	gone->clients.count = 1;        /* a client keeps the draining pool (and its config) alive */
	write_config(GLOBALS "[databases]\napp = host=/tmp\n");
	cr_assert_eq(reload_apply(), 0);
	write_config(GLOBALS "[databases]\napp = host=/tmp pool_size=2\n");
	cr_assert_eq(reload_apply(), 0);
	cr_assert_str_eq(gone->db->name, "gone", "still readable two reloads later");
	gone->clients.count = 0;
}
