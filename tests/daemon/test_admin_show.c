/*
 * test_admin_show.c — Criterion tests for daemon/admin_show.c: each SHOW's
 * rows as read from the state lists (PgBouncer's derived columns, pglease's
 * own), decoded from the DataRow bytes and looked up by column name.
 */
#include <criterion/criterion.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "env.h"
#include "admin_show.h"
#include "client.h"
#include "config.h"
#include "lease.h"
#include "log.h"
#include "pause.h"
#include "pool.h"
#include "server.h"

static struct config conf;
static struct pool pool;

static void on_list(struct list *l, struct list_node *n)
{
	list_node_init(n);
	list_push_tail(l, n);
}

static void pool_lists(struct pool *p)
{
	list_init(&p->connecting); list_init(&p->idle); list_init(&p->leased); list_init(&p->cleaning);
	list_init(&p->authq);
	list_init(&p->login_wait); list_init(&p->clients); list_init(&p->waiting); list_init(&p->active);
}

static void setup(void)
{
	log_set_level(LOG_ERROR);
	loop = ev_default_loop(0);
	conf = (struct config){
		.listen_port = 6432, .default_pool_size = 20, .min_pool_size = 2, .pool_mode = POOL_MODE_TRANSACTION,
		.server_check_delay = 30, .server_check_query = "select 1",
	};
	cfg = &conf;
	pool = (struct pool){ .dbname = "app", .user = "alice", .size = 7, .mode = POOL_MODE_TRANSACTION };
	pool_lists(&pool);
	on_list(&all_pools, &pool.node);
}

TestSuite(admin_show, .init = setup);

/* ---- decoding ---- */

#define MAX_ROWS 64
#define MAX_COLS 48

struct rows {
	int n;
	char *cell[MAX_ROWS][MAX_COLS];   /* NULL for SQL NULL */
	const struct table *t;
	struct reply r;
};

static uint32_t be32_at(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

static struct rows *show(enum admin_verb verb)
{
	static struct rows rows;
	size_t at = 0;

	memset(&rows, 0, sizeof(rows));
	rows.t = admin_show_table(verb);
	cr_assert_not_null(rows.t);
	int count = admin_show(&rows.r, verb);
	cr_assert_not(rows.r.oom);
	while (at < rows.r.len) {
		const uint8_t *m = rows.r.data + at;
		cr_assert_eq(m[0], 'D');
		uint32_t len = be32_at(m + 1);
		int ncols = m[5] << 8 | m[6];
		cr_assert_eq(ncols, rows.t->n, "a row has one cell per column");
		const uint8_t *p = m + 7;
		for (int c = 0; c < ncols; c++) {
			uint32_t clen = be32_at(p);
			p += 4;
			if (clen != 0xffffffffu) {
				rows.cell[rows.n][c] = strndup((const char *)p, clen);
				p += clen;
			}
		}
		cr_assert_eq(p, m + 1 + len, "cells fill the message exactly");
		at += 1 + len;
		rows.n++;
	}
	cr_assert_eq(rows.n, count, "admin_show() returns the rows it wrote");
	return &rows;
}

/* A row's cell by column name; "NULL" for SQL NULL. */
static const char *cell(const struct rows *rows, int row, const char *column)
{
	for (int c = 0; c < rows->t->n; c++)
		if (strcmp(rows->t->cols[c].name, column) == 0)
			return rows->cell[row][c] ? rows->cell[row][c] : "NULL";
	cr_assert_fail("no column %s", column);
	return NULL;
}

Test(admin_show, only_show_commands_have_a_table)
{
	cr_assert_null(admin_show_table(ADMIN_PAUSE));
	cr_assert_null(admin_show_table(ADMIN_EMPTY));
	cr_assert_null(admin_show_table(ADMIN_SET));
	cr_assert_eq(admin_show_table(ADMIN_SHOW_VERSION)->n, 1);
}

Test(admin_show, version)
{
	struct rows *r = show(ADMIN_SHOW_VERSION);

	cr_assert_eq(r->n, 1);
	cr_assert_str_eq(cell(r, 0, "version"), "pglease " PGLEASE_VERSION);
}

/* ---- SHOW POOLS ---- */

Test(admin_show, pools_with_pgbouncer_meanings)
{
	static struct client c[5];
	static struct server s[4];
	ev_tstamp now = ev_now(loop);

	c[0].state_since = now - 3.25;                   /* waiting */
	on_list(&pool.waiting, &c[0].node);
	c[1].state_since = now - 8;                      /* leased, pinned */
	c[1].pinned = true;
	s[2].lease_slot = (struct lease){ .client = &c[1], .server = &s[2], .started = now - 8 };
	s[2].lease = c[1].lease = &s[2].lease_slot;
	on_list(&pool.active, &c[1].node);
	on_list(&pool.clients, &c[2].node);              /* idle */
	on_list(&pool.clients, &c[3].node);
	on_list(&pool.login_wait, &c[4].node);
	s[0].idle_since = now - 100;                     /* due its check */
	s[1].idle_since = now;
	on_list(&pool.idle, &s[0].node);
	on_list(&pool.idle, &s[1].node);
	on_list(&pool.leased, &s[2].node);
	on_list(&pool.cleaning, &s[3].node);
	cr_assert_eq(pause_add(pool.dbname), 0);

	struct rows *r = show(ADMIN_SHOW_POOLS);
	cr_assert_eq(r->n, 1);
	cr_assert_str_eq(cell(r, 0, "database"), "app");
	cr_assert_str_eq(cell(r, 0, "user"), "alice");
	cr_assert_str_eq(cell(r, 0, "cl_active"), "3", "PgBouncer: linked to a server or idle");
	cr_assert_str_eq(cell(r, 0, "cl_waiting"), "1");
	cr_assert_str_eq(cell(r, 0, "sv_active"), "1");
	cr_assert_str_eq(cell(r, 0, "sv_idle"), "1", "idle and not due a check");
	cr_assert_str_eq(cell(r, 0, "sv_used"), "1");
	cr_assert_str_eq(cell(r, 0, "sv_login"), "0");
	cr_assert_str_eq(cell(r, 0, "maxwait"), "3");
	cr_assert_str_eq(cell(r, 0, "maxwait_us"), "250000");
	cr_assert_str_eq(cell(r, 0, "pool_mode"), "transaction");
	cr_assert_str_eq(cell(r, 0, "cl_leased"), "1");
	cr_assert_str_eq(cell(r, 0, "cl_idle"), "2");
	cr_assert_str_eq(cell(r, 0, "cl_login_wait"), "1");
	cr_assert_str_eq(cell(r, 0, "sv_cleaning"), "1");
	cr_assert_str_eq(cell(r, 0, "pool_size"), "7");
	cr_assert_str_eq(cell(r, 0, "paused"), "1");
	cr_assert_str_eq(cell(r, 0, "oldest_lease"), "8.000000");
	cr_assert_str_eq(cell(r, 0, "cl_pinned"), "1");
}

/* ---- SHOW CLIENTS / SERVERS ---- */

Test(admin_show, clients_by_state)
{
	static struct client waiting, active, idle;
	static struct server srv;
	ev_tstamp now = ev_now(loop);

	waiting = (struct client){ .state = CLIENT_WAITING, .pool = &pool, .id = 11, .state_since = now - 2.5,
				   .connected_at = 86400 };
	active = (struct client){ .state = CLIENT_ACTIVE, .pool = &pool, .id = 12, .state_since = now - 9,
				  .pinned = true };
	idle = (struct client){ .state = CLIENT_IDLE, .pool = &pool, .id = 13 };
	srv = (struct server){ .pool = &pool, .id = 5, .backend_pid = 777 };
	/* The lease's age, not the time in its state. */
	srv.lease_slot = (struct lease){ .client = &active, .server = &srv, .started = now - 4 };
	srv.lease = active.lease = &srv.lease_slot;
	cr_assert_eq(params_put(&idle.params, "application_name", "psql"), 0);
	on_list(&pool.waiting, &waiting.node);
	on_list(&pool.active, &active.node);
	on_list(&pool.clients, &idle.node);

	struct rows *r = show(ADMIN_SHOW_CLIENTS);
	cr_assert_eq(r->n, 3);
	/* active, then waiting, then idle: the order the lists are walked */
	cr_assert_str_eq(cell(r, 0, "id"), "12");
	cr_assert_str_eq(cell(r, 0, "state"), "active");
	cr_assert_str_eq(cell(r, 0, "lease_age"), "4.000000");
	cr_assert_str_eq(cell(r, 0, "wait"), "0");
	cr_assert_str_eq(cell(r, 0, "server_id"), "5");
	cr_assert_str_eq(cell(r, 0, "backend_pid"), "777");
	cr_assert_str_eq(cell(r, 0, "pinned"), "1");
	cr_assert_str_eq(cell(r, 1, "id"), "11");
	cr_assert_str_eq(cell(r, 1, "state"), "waiting");
	cr_assert_str_eq(cell(r, 1, "wait"), "2");
	cr_assert_str_eq(cell(r, 1, "wait_us"), "500000");
	cr_assert_str_eq(cell(r, 1, "lease_age"), "NULL");
	cr_assert_str_eq(cell(r, 1, "server_id"), "NULL");
	cr_assert_str_eq(cell(r, 1, "connect_time"), "1970-01-02 00:00:00 UTC");
	cr_assert_str_eq(cell(r, 2, "state"), "idle");
	cr_assert_str_eq(cell(r, 2, "application_name"), "psql");
	cr_assert_str_eq(cell(r, 2, "connect_time"), "NULL", "no time known");
	for (int i = 0; i < 3; i++) {
		cr_assert_str_eq(cell(r, i, "type"), "C");
		cr_assert_str_eq(cell(r, i, "user"), "alice");
		cr_assert_str_eq(cell(r, i, "database"), "app");
		cr_assert_str_eq(cell(r, i, "addr"), "unix");
		cr_assert_str_eq(cell(r, i, "port"), "6432");
	}
	params_free(&idle.params);
}

Test(admin_show, servers_by_state)
{
	static struct server leased, cleaning, idle, lent;
	static struct client holder;
	ev_tstamp now = ev_now(loop);

	pool.generation = 2;
	holder = (struct client){ .id = 21, .state_since = now - 7 };
	leased = (struct server){ .state = SERVER_LEASED, .pool = &pool, .id = 1, .backend_pid = 101, .generation = 2 };
	leased.lease_slot = (struct lease){ .client = &holder, .server = &leased, .started = now - 1.5 };
	leased.lease = holder.lease = &leased.lease_slot;
	cleaning = (struct server){ .state = SERVER_CLEANING, .pool = &pool, .id = 2, .generation = 2 };
	cleaning.lease_slot = (struct lease){ .server = &cleaning, .why = EXIT_CLIENT_GONE };
	cleaning.lease = &cleaning.lease_slot;
	idle = (struct server){ .state = SERVER_IDLE, .pool = &pool, .id = 3, .generation = 1 };
	on_list(&pool.leased, &leased.node);
	on_list(&pool.cleaning, &cleaning.node);
	on_list(&pool.idle, &idle.node);
	lent = (struct server){ .state = SERVER_AUTHQ, .pool = &pool, .id = 4, .generation = 2 };
	on_list(&pool.authq, &lent.node);

	struct rows *r = show(ADMIN_SHOW_SERVERS);
	cr_assert_eq(r->n, 4);
	cr_assert_str_eq(cell(r, 0, "state"), "active");
	cr_assert_str_eq(cell(r, 0, "remote_pid"), "101");
	cr_assert_str_eq(cell(r, 0, "client_id"), "21");
	cr_assert_str_eq(cell(r, 0, "lease_age"), "1.500000");
	cr_assert_str_eq(cell(r, 0, "cleaning_for"), "NULL");
	cr_assert_str_eq(cell(r, 0, "addr"), "NULL", "no libpq connection to ask");
	cr_assert_str_eq(cell(r, 1, "state"), "cleaning");
	cr_assert_str_eq(cell(r, 1, "cleaning_for"), "client gone");
	cr_assert_str_eq(cell(r, 1, "client_id"), "NULL");
	cr_assert_str_eq(cell(r, 2, "state"), "auth_query", "lent to an auth_query lookup");
	cr_assert_str_eq(cell(r, 2, "client_id"), "NULL");
	cr_assert_str_eq(cell(r, 3, "state"), "idle");
	cr_assert_str_eq(cell(r, 3, "retired"), "1", "opened before the latest reconnect");
	cr_assert_str_eq(cell(r, 0, "retired"), "0");
}

/* ---- SHOW STATS ---- */

Test(admin_show, stats_totals_and_averages_over_the_latest_period)
{
	pool.stats.stream.xacts = 100;
	pool.stats.lease_count = 120;
	pool.stats.exits[EXIT_KILLED] = 3;
	pool.stats_prev = (struct pool_stats){ .stream = { .xacts = 40, .queries = 50 }, .bytes_received = 1000,
					       .lease_time_us = 1000000, .wait_time_us = 0, .lease_count = 50 };
	pool.stats_last = (struct pool_stats){ .stream = { .xacts = 70, .queries = 110 }, .bytes_received = 16000,
					       .lease_time_us = 4000000, .wait_time_us = 900, .lease_count = 80 };
	pool.stats_prev_at = 1000;
	pool.stats_last_at = 1015;

	struct rows *r = show(ADMIN_SHOW_STATS);
	cr_assert_eq(r->n, 1);
	cr_assert_str_eq(cell(r, 0, "total_xact_count"), "100");
	cr_assert_str_eq(cell(r, 0, "total_lease_count"), "120");
	cr_assert_str_eq(cell(r, 0, "avg_xact_count"), "2", "30 transactions in 15 s");
	cr_assert_str_eq(cell(r, 0, "avg_query_count"), "4");
	cr_assert_str_eq(cell(r, 0, "avg_recv"), "1000");
	cr_assert_str_eq(cell(r, 0, "avg_xact_time"), "100000", "3 s of leases over 30 transactions");
	cr_assert_str_eq(cell(r, 0, "avg_wait_time"), "30", "900 us over 30 leases");
	cr_assert_str_eq(cell(r, 0, "avg_query_time"), "0");
	cr_assert_str_eq(cell(r, 0, "exits_killed"), "3");
	cr_assert_str_eq(cell(r, 0, "exits_transaction_done"), "0");
}

Test(admin_show, stats_averages_without_a_period_are_zero)
{
	pool.stats_last = (struct pool_stats){ .stream = { .xacts = 5 } };
	struct rows *r = show(ADMIN_SHOW_STATS);
	cr_assert_str_eq(cell(r, 0, "avg_xact_count"), "0", "no time has passed: no rate");
	cr_assert_str_eq(cell(r, 0, "avg_wait_time"), "0", "no lease: no division by zero");
}

/* ---- SHOW DATABASES / CONFIG ---- */

Test(admin_show, databases_from_the_config_and_the_pools)
{
	struct db_config dbs[] = {
		{ .name = "app", .conninfo = "host=/run/pg port=5433 dbname=real user=owner", .pool_size = 5,
		  .pool_mode = POOL_MODE_SESSION },
		{ .name = "other", .conninfo = "host=/tmp", .pool_size = -1, .pool_mode = -1 },
		{ .name = "*", .conninfo = "", .pool_size = -1, .pool_mode = -1 },
	};
	static struct server s[2];
	static struct pool second;

	conf.dbs = dbs;
	conf.db_count = 3;
	on_list(&pool.idle, &s[0].node);
	second = (struct pool){ .dbname = "app", .user = "bob" };
	pool_lists(&second);
	on_list(&second.connecting, &s[1].node);
	on_list(&all_pools, &second.node);
	cr_assert_eq(pause_add("other"), 0);

	struct rows *r = show(ADMIN_SHOW_DATABASES);
	cr_assert_eq(r->n, 3);
	cr_assert_str_eq(cell(r, 0, "name"), "app");
	cr_assert_str_eq(cell(r, 0, "host"), "/run/pg");
	cr_assert_str_eq(cell(r, 0, "port"), "5433");
	cr_assert_str_eq(cell(r, 0, "database"), "real");
	cr_assert_str_eq(cell(r, 0, "force_user"), "owner");
	cr_assert_str_eq(cell(r, 0, "pool_size"), "5");
	cr_assert_str_eq(cell(r, 0, "min_pool_size"), "2");
	cr_assert_str_eq(cell(r, 0, "pool_mode"), "session");
	cr_assert_str_eq(cell(r, 0, "current_connections"), "2", "both users' pools of the database");
	cr_assert_str_eq(cell(r, 0, "paused"), "0");
	cr_assert_str_eq(cell(r, 1, "database"), "other", "the client-visible name when the conninfo has none");
	cr_assert_str_eq(cell(r, 1, "port"), "NULL");
	cr_assert_str_eq(cell(r, 1, "force_user"), "NULL");
	cr_assert_str_eq(cell(r, 1, "pool_size"), "20");
	cr_assert_str_eq(cell(r, 1, "pool_mode"), "transaction");
	cr_assert_str_eq(cell(r, 1, "paused"), "1");
	cr_assert_str_eq(cell(r, 2, "database"), "NULL", "\"*\" names no database");
}

Test(admin_show, config_lists_every_key_with_value_and_default)
{
	char *errors = NULL;
	char path[] = "/tmp/pglease-test-show-XXXXXX";
	int fd = mkstemp(path);
	const char *ini = "[pglease]\nlisten_port = 7000\n[databases]\napp = host=/tmp\n";

	cr_assert_eq(write(fd, ini, strlen(ini)), (ssize_t)strlen(ini));
	close(fd);
	struct config *loaded = config_load(path, &errors);
	unlink(path);
	cr_assert_not_null(loaded, "%s", errors);
	cfg = loaded;
	struct rows *r = show(ADMIN_SHOW_CONFIG);
	int port = -1;
	cr_assert_eq(r->n, config_key_count());
	for (int i = 0; i < r->n; i++) {
		cr_assert_str_eq(cell(r, i, "changeable"), "no");
		if (strcmp(cell(r, i, "key"), "listen_port") == 0)
			port = i;
	}
	cr_assert_geq(port, 0);
	cr_assert_str_eq(cell(r, port, "value"), "7000");
	cr_assert_str_eq(cell(r, port, "default"), "6432");
	config_free(loaded);
}
