/*
 * test_pool.c — Criterion tests for pool/pool.c without a backend: the
 * libpq parameters a pool builds from its conninfo, finding a pool, the
 * snapshot text, what a reload changes, pause flags, statistics snapshots,
 * when an unused pool is forgotten, and what a failed connect leaves behind.
 */
#include <criterion/criterion.h>
#include <ev.h>
#include <stdio.h>
#include <string.h>

#include "env.h"
#include "config.h"
#include "log.h"
#include "pause.h"
#include "pool.h"
#include "worker.h"
#include "server.h"

static struct config conf;

static struct db_config db(const char *name, const char *conninfo)
{
	return (struct db_config){ .name = (char *)name, .conninfo = (char *)conninfo, .pool_size = -1,
				   .pool_mode = -1 };
}

static void setup(void)
{
	log_set_level(LOG_ERROR);
	loop = ev_default_loop(0);
	conf = (struct config){
		.pool_mode = POOL_MODE_TRANSACTION, .default_pool_size = 20, .server_idle_timeout = 600,
		.server_connect_timeout = 15, .query_wait_timeout = 120,
	};
	cfg = &conf;
}

static void teardown(void)
{
	server_reap();
	pool_free_all();
}

TestSuite(pool, .init = setup, .fini = teardown);

/* The value a pool hands libpq for keyword; "(unset)" when it hands none. */
static const char *param(const struct pool *p, const char *keyword)
{
	int found = -1;

	for (int i = 0; p->keywords[i]; i++)
		if (strcmp(p->keywords[i], keyword) == 0) {
			cr_assert_eq(found, -1, "%s given twice", keyword);
			found = i;
		}
	if (found < 0)
		return "(unset)";
	return p->values[found] ? p->values[found] : "(null)";
}

/* ---- connect parameters ---- */

Test(pool, the_client_user_and_database_and_no_encryption_unless_the_conninfo_says)
{
	struct db_config d = db("app", "host=/var/run/postgresql port=5433");
	struct pool *p = pool_find_or_create(&d, "app", "alice");

	cr_assert_not_null(p);
	cr_assert_str_eq(param(p, "host"), "/var/run/postgresql");
	cr_assert_str_eq(param(p, "port"), "5433");
	cr_assert_str_eq(param(p, "user"), "alice");
	cr_assert_str_eq(param(p, "dbname"), "app");
	cr_assert_str_eq(param(p, "sslmode"), "disable");
	cr_assert_str_eq(param(p, "gssencmode"), "disable");
	cr_assert_str_eq(param(p, "hostaddr"), "(unset)", "a socket directory needs no DNS");
	cr_assert_eq(p->hostaddr_slot, -1);
	cr_assert_null(p->dns_hosts);
}

Test(pool, what_the_conninfo_names_wins)
{
	struct db_config d = db("app", "dbname=real user=owner sslmode=require gssencmode=prefer");
	struct pool *p = pool_find_or_create(&d, "app", "alice");

	cr_assert_str_eq(param(p, "user"), "owner");
	cr_assert_str_eq(param(p, "dbname"), "real");
	cr_assert_str_eq(param(p, "sslmode"), "require");
	cr_assert_str_eq(param(p, "gssencmode"), "prefer");
}

Test(pool, a_named_host_gets_a_hostaddr_slot_filled_later)
{
	struct db_config d = db("app", "host=/tmp,db.example.com");
	struct pool *p = pool_find_or_create(&d, "app", "alice");

	cr_assert_geq(p->hostaddr_slot, 0);
	cr_assert_str_eq(p->keywords[p->hostaddr_slot], "hostaddr");
	cr_assert_str_eq(param(p, "hostaddr"), "(null)", "no value until resolved");
	cr_assert_str_eq(p->dns_hosts, "/tmp,db.example.com");
}

Test(pool, a_conninfo_hostaddr_is_left_to_libpq)
{
	struct db_config d = db("app", "host=db.example.com hostaddr=10.0.0.1");
	struct pool *p = pool_find_or_create(&d, "app", "alice");

	cr_assert_eq(p->hostaddr_slot, -1);
	cr_assert_str_eq(param(p, "hostaddr"), "10.0.0.1");
}

/* ---- finding a pool ---- */

Test(pool, one_pool_per_database_and_user)
{
	struct db_config d = db("*", "host=/tmp");
	struct pool *a = pool_find_or_create(&d, "app", "alice");

	cr_assert_eq(pool_find_or_create(&d, "app", "alice"), a);
	cr_assert_neq(pool_find_or_create(&d, "app", "bob"), a);
	cr_assert_neq(pool_find_or_create(&d, "other", "alice"), a);
	cr_assert_eq(all_pools.count, 3);
}

Test(pool, a_retired_pool_takes_no_new_clients)
{
	struct db_config d = db("app", "host=/tmp");
	struct pool *a = pool_find_or_create(&d, "app", "alice");

	pool_close(a, POOL_CLOSE_AT_TX_END, "test");
	struct pool *b = pool_find_or_create(&d, "app", "alice");
	cr_assert_neq(b, a);
	cr_assert_eq(all_pools.count, 2);
}

Test(pool, size_and_mode_from_the_entry_or_the_globals)
{
	struct db_config plain = db("app", "host=/tmp"), own = db("rep", "host=/tmp");

	own.pool_size = 5;
	own.pool_mode = POOL_MODE_SESSION;
	struct pool *a = pool_find_or_create(&plain, "app", "u"), *b = pool_find_or_create(&own, "rep", "u");
	cr_assert_eq(a->size, 20);
	cr_assert_eq(a->mode, POOL_MODE_TRANSACTION);
	cr_assert_eq(b->size, 5);
	cr_assert_eq(b->mode, POOL_MODE_SESSION);
}

Test(pool, a_pool_made_for_a_paused_database_starts_paused)
{
	struct db_config d = db("*", "host=/tmp");

	cr_assert_eq(pause_add("app"), 0);
	cr_assert(pool_paused(pool_find_or_create(&d, "app", "u")));
	cr_assert_not(pool_paused(pool_find_or_create(&d, "other", "u")));
}

Test(pool, a_conninfo_libpq_cannot_parse_makes_no_pool)
{
	struct db_config d = db("app", "host='unterminated");

	cr_assert_null(pool_find_or_create(&d, "app", "u"));
	cr_assert_eq(all_pools.count, 0);
}

/* ---- text and names ---- */

Test(pool, snapshot_counts_cleaning_backends_as_active)
{
	struct pool p = { .dbname = "app", .user = "alice", .size = 7 };
	char buf[256];

	p.leased.count = 2;
	p.cleaning.count = 1;
	p.idle.count = 3;
	p.waiting.count = 4;
	p.connecting.count = 1;
	pool_snapshot(&p, buf, sizeof(buf));
	cr_assert_str_eq(buf, "pool app/alice: size 7, active 3, idle 3, waiting 4");
	cr_assert_eq(pool_server_count(&p), 7);
	pool_snapshot(&p, buf, 10);
	cr_assert_str_eq(buf, "pool app/", "cut to the room given");
}

Test(pool, reported_params_are_what_postgres_reports_at_startup)
{
	int n;
	const char *const *names = pool_reported_params(&n);
	static const char *const want[] = {
		"server_version", "server_encoding", "client_encoding", "application_name", "DateStyle",
		"IntervalStyle", "TimeZone", "integer_datetimes", "standard_conforming_strings", "is_superuser",
		"session_authorization", "default_transaction_read_only", "in_hot_standby", "search_path",
	};

	cr_assert_eq(n, (int)(sizeof(want) / sizeof(*want)));
	for (int i = 0; i < n; i++)
		cr_assert_str_eq(names[i], want[i]);
}

/* ---- pause, reload, close ---- */

Test(pool, pause_and_resume)
{
	struct db_config d = db("app", "host=/tmp");
	struct pool *p = pool_find_or_create(&d, "app", "u");

	cr_assert_eq(pool_pause_db("app"), 0);
	cr_assert(pool_paused(p));
	cr_assert_eq(pool_pause_db("app"), 0);
	cr_assert(pool_paused(p));
	pool_resume_db("app");
	cr_assert_not(pool_paused(p));
}

Test(pool, reload_with_the_same_conninfo_only_resizes)
{
	struct db_config d = db("app", "host=/tmp"), d2 = db("app", "host=/tmp");
	struct pool *p = pool_find_or_create(&d, "app", "u");
	const char **keywords = p->keywords;

	d2.pool_size = 3;
	cr_assert_eq(pool_reconfigure(p, &d2), 0);
	cr_assert_eq(p->db, &d2);
	cr_assert_eq(p->size, 3);
	cr_assert_eq(p->keywords, keywords, "parameters kept");
	cr_assert_eq(p->generation, 0, "no reconnect");
	conf.default_pool_size = 9;
	struct db_config d3 = db("app", "host=/tmp");
	cr_assert_eq(pool_reconfigure(p, &d3), 0);
	cr_assert_eq(p->size, 9, "back to the global default");
}

Test(pool, reload_with_a_new_conninfo_rebuilds_the_parameters_and_retires_backends)
{
	struct db_config d = db("app", "host=/tmp port=5432"), d2 = db("app", "host=/tmp,db.example.com port=6000");
	struct pool *p = pool_find_or_create(&d, "app", "u");

	cr_assert_eq(pool_reconfigure(p, &d2), 0);
	cr_assert_str_eq(param(p, "port"), "6000");
	cr_assert_str_eq(param(p, "user"), "u");
	cr_assert_str_eq(p->dns_hosts, "/tmp,db.example.com");
	cr_assert_geq(p->hostaddr_slot, 0);
	cr_assert_eq(p->generation, 1, "backends opened with the old conninfo are retired");
}

Test(pool, a_reload_libpq_cannot_parse_keeps_the_old_parameters)
{
	struct db_config d = db("app", "host=/tmp port=5432"), bad = db("app", "host='unterminated");
	struct pool *p = pool_find_or_create(&d, "app", "u");

	cr_assert_eq(pool_reconfigure(p, &bad), -1);
	cr_assert_eq(p->db, &d);
	cr_assert_str_eq(param(p, "port"), "5432");
	cr_assert_eq(p->generation, 0);
}

Test(pool, close_keeps_the_strongest_reason_and_retires)
{
	struct db_config d = db("app", "user=u");
	struct pool *p = pool_find_or_create(&d, "app", "u");

	p->prewarmed = true;
	pool_close(p, POOL_CLOSE_AT_TX_END, "removed");
	pool_close(p, POOL_CLOSE_AT_LEASE_END, "shutdown");
	cr_assert_eq(p->closing, POOL_CLOSE_AT_TX_END);
	cr_assert(p->retired);
	cr_assert_not(p->prewarmed);
	cr_assert_eq(p->generation, 2);
}

/* ---- maintenance ---- */

Test(pool, statistics_snapshots_rotate_every_period)
{
	struct db_config d = db("app", "host=/tmp");
	struct pool *p = pool_find_or_create(&d, "app", "u");

	p->stats.lease_count = 10;
	pool_maintain(1000);
	cr_assert_eq(p->stats_last.lease_count, 10);
	cr_assert_eq(p->stats_last_at, 1000);
	cr_assert_eq(p->stats_prev_at, 1000, "the first snapshot is its own previous one");
	p->stats.lease_count = 25;
	pool_maintain(1000 + STATS_PERIOD - 1);
	cr_assert_eq(p->stats_last.lease_count, 10, "not yet");
	pool_maintain(1000 + STATS_PERIOD);
	cr_assert_eq(p->stats_prev.lease_count, 10);
	cr_assert_eq(p->stats_prev_at, 1000);
	cr_assert_eq(p->stats_last.lease_count, 25);
	cr_assert_eq(p->stats_last_at, 1000 + STATS_PERIOD);
}

Test(pool, an_unused_pool_is_forgotten_after_server_idle_timeout)
{
	struct db_config d = db("*", "host=/tmp");

	cr_assert_not_null(pool_find_or_create(&d, "app", "u"));
	pool_maintain(1000);
	pool_maintain(1000 + 599);
	cr_assert_eq(all_pools.count, 1);
	pool_maintain(1000 + 600);
	cr_assert_eq(all_pools.count, 0);
}

Test(pool, a_pool_in_use_restarts_its_unused_clock)
{
	struct db_config d = db("*", "host=/tmp");
	struct pool *p = pool_find_or_create(&d, "app", "u");

	pool_maintain(1000);
	p->clients.count = 1;             /* a client came (its list is all pool.c looks at) */
	pool_maintain(1300);
	p->clients.count = 0;
	pool_maintain(1700);
	cr_assert_eq(all_pools.count, 1, "unused only since 1700");
	pool_maintain(2300);
	cr_assert_eq(all_pools.count, 0);
}

Test(pool, prewarmed_pools_stay_and_retired_empty_ones_go_at_once)
{
	struct db_config d = db("*", "host=/tmp");
	struct pool *kept = pool_find_or_create(&d, "kept", "u"), *gone = pool_find_or_create(&d, "gone", "u");

	kept->prewarmed = true;
	pool_close(gone, POOL_CLOSE_AT_TX_END, "removed");
	pool_maintain(1000);
	cr_assert_eq(all_pools.count, 1);
	cr_assert_eq(list_entry(list_first(&all_pools), struct pool, node), kept);
	pool_maintain(1000 + 3600);
	cr_assert_eq(all_pools.count, 1);
}

Test(pool, without_server_idle_timeout_unused_pools_stay)
{
	struct db_config d = db("*", "host=/tmp");

	conf.server_idle_timeout = 0;
	cr_assert_not_null(pool_find_or_create(&d, "app", "u"));
	pool_maintain(1000);
	pool_maintain(1000 + 86400);
	cr_assert_eq(all_pools.count, 1);
}

/* ---- opening backends ---- */

Test(pool, a_named_host_waits_for_its_lookup_before_connecting)
{
	struct db_config d = db("app", "host=db.example.com");
	struct pool *p = pool_find_or_create(&d, "app", "u");

	cr_assert_eq(worker_start(loop), 0);   /* the lookup runs there */

	conf.min_pool_size = 2;
	pool_want_servers(p);      /* the worker is not running: the lookup stays queued */
	cr_assert(p->resolving);
	cr_assert_eq(pool_server_count(p), 0, "no connect before the name is resolved");
	pool_want_servers(p);
	cr_assert(p->resolving, "one lookup at a time");
}

Test(pool, a_failed_connect_is_remembered_and_not_retried_at_once)
{
	struct db_config d = db("app", "host=/nonexistent/pglease-test port=5999");
	struct pool *p = pool_find_or_create(&d, "app", "u");

	conf.min_pool_size = 1;
	ev_now_update(loop);
	pool_want_servers(p);
	cr_assert_eq(p->stats.servers_failed, 1);
	cr_assert_eq(pool_server_count(p), 0, "the failed backend is closed");
	cr_assert_str_eq(p->last_sqlstate, "08001", "no server answered");
	cr_assert_not_null(p->last_error);
	const char *want = "connection to server on socket \"/nonexistent/pglease-test/.s.PGSQL.5999\" failed: "
			   "No such file or directory";
	size_t len = strlen(p->last_error);
	cr_assert_eq(strncmp(p->last_error, want, strlen(want)), 0, "libpq's message: %s", p->last_error);
	cr_assert(len && p->last_error[len - 1] != '\n' && p->last_error[len - 1] != ' ', "trailing newline trimmed");
	cr_assert_eq(p->connect_failures, 1);
	cr_assert_eq(p->failed_at, ev_now(loop));
	pool_want_servers(p);
	cr_assert_eq(p->stats.servers_failed, 1, "no second attempt within the retry delay");
	cr_assert_eq(p->stats.servers_closed, 0, "a backend that never connected is not counted closed");
}

/* The clock is moved by moving the failure back: ev_now() stands still inside a test. */
static void failed_ago(struct pool *p, double seconds)
{
	p->failed_at = ev_now(loop) - seconds;
}

Test(pool, the_pause_after_failures_doubles_up_to_server_login_retry)
{
	struct db_config d = db("app", "host=/nonexistent/pglease-test port=5999");
	struct pool *p = pool_find_or_create(&d, "app", "u");

	conf.min_pool_size = 1;
	conf.server_login_retry = 2;
	ev_now_update(loop);
	pool_want_servers(p);
	cr_assert_eq(p->stats.servers_failed, 1);
	failed_ago(p, 0.2);
	pool_want_servers(p);
	cr_assert_eq(p->stats.servers_failed, 1, "the first pause is 0.25 s");
	failed_ago(p, 0.3);
	pool_want_servers(p);
	cr_assert_eq(p->stats.servers_failed, 2, "retried after 0.25 s");
	cr_assert_eq(p->connect_failures, 2);
	failed_ago(p, 0.4);
	pool_want_servers(p);
	cr_assert_eq(p->stats.servers_failed, 2, "the second pause is 0.5 s");
	failed_ago(p, 0.6);
	pool_want_servers(p);
	cr_assert_eq(p->stats.servers_failed, 3);
	p->connect_failures = 10;
	failed_ago(p, 1.9);
	pool_want_servers(p);
	cr_assert_eq(p->stats.servers_failed, 3, "capped at server_login_retry, not below it");
	failed_ago(p, 2.1);
	pool_want_servers(p);
	cr_assert_eq(p->stats.servers_failed, 4, "capped at server_login_retry");
}

Test(pool, clients_are_refused_at_once_only_when_waiting_would_not_help)
{
	struct db_config d = db("app", "host=/nonexistent/pglease-test port=5999");
	struct pool *p = pool_find_or_create(&d, "app", "u");

	conf.min_pool_size = 1;
	conf.server_login_retry = 15;
	ev_now_update(loop);
	cr_assert_not(pool_refuses_clients(p), "nothing failed yet");
	pool_want_servers(p);
	cr_assert(pool_refuses_clients(p), "a pool that never reached its server: a misconfiguration");
	p->ever_connected = true;
	cr_assert_not(pool_refuses_clients(p), "an outage (08001) of a pool that worked: clients wait");
	snprintf(p->last_sqlstate, sizeof(p->last_sqlstate), "57P03");
	cr_assert_not(pool_refuses_clients(p), "starting up or shutting down: clients wait");
	snprintf(p->last_sqlstate, sizeof(p->last_sqlstate), "28P01");
	cr_assert(pool_refuses_clients(p), "a wrong password does not pass by itself");
	snprintf(p->last_sqlstate, sizeof(p->last_sqlstate), "08001");
	conf.server_down_fail_fast = 1;
	cr_assert(pool_refuses_clients(p), "server_down_fail_fast");
	failed_ago(p, 0.3);
	cr_assert_not(pool_refuses_clients(p), "past the pause the next client waits for the next attempt");
}
Test(pool, effective_settings_fall_back_to_the_globals)
{
	struct config c = { .default_pool_size = 20, .pool_mode = POOL_MODE_TRANSACTION };
	struct db_config plain = { .name = "app", .pool_size = -1, .pool_mode = -1 };

	cr_assert_eq(pool_effective_size(&plain, &c), 20);
	cr_assert_eq(pool_effective_mode(&plain, &c), POOL_MODE_TRANSACTION);
	c.default_pool_size = 7;
	c.pool_mode = POOL_MODE_SESSION;
	cr_assert_eq(pool_effective_size(&plain, &c), 7);
	cr_assert_eq(pool_effective_mode(&plain, &c), POOL_MODE_SESSION);
}

Test(pool, effective_settings_prefer_the_conninfo)
{
	struct config c = { .default_pool_size = 20, .pool_mode = POOL_MODE_SESSION };
	struct db_config own = { .name = "reports", .pool_size = 5, .pool_mode = POOL_MODE_TRANSACTION };

	cr_assert_eq(pool_effective_size(&own, &c), 5);
	cr_assert_eq(pool_effective_mode(&own, &c), POOL_MODE_TRANSACTION);
}

/* What the loader gives for a conninfo without pool_size= / pool_mode=: the sample's "appdb". */
Test(pool, loaded_entry_without_own_keys_takes_the_globals)
{
	const char *me = __FILE__, *cut = strstr(me, "tests/pool/");
	char path[4096], *errors = NULL;
	struct config *c;

	snprintf(path, sizeof(path), "%.*sconf/pglease.ini", (int)(cut ? cut - me : 0), me);
	c = config_load(path, &errors);
	cr_assert_not_null(c, "%s: %s", path, errors ? errors : "");
	cr_assert_eq(pool_effective_size(config_find_db(c, "appdb"), c), c->default_pool_size);
	cr_assert_eq(pool_effective_mode(config_find_db(c, "appdb"), c), c->pool_mode);
	cr_assert_eq(pool_effective_size(config_find_db(c, "reports"), c), 5);
	cr_assert_eq(pool_effective_mode(config_find_db(c, "reports"), c), POOL_MODE_SESSION);
	config_free(c);
}
