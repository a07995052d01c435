/*
 * test_caps.c — Criterion tests for pool/caps.c's accounting: which pools a
 * cap spans, the room left (promises included), the client caps' wording,
 * the [users] precedence, and the invariant pool_verify() checks.
 *
 * Pools and servers are built by hand on the real all_pools list, as the
 * loop would leave them between two iterations; nothing here opens or
 * closes a backend (tests/integration/test_limits.py does, against PostgreSQL).
 */
#include <criterion/criterion.h>
#include <limits.h>
#include <string.h>

#include "caps.h"
#include "client.h"
#include "pool.h"
#include "server.h"
#include "verify.h"

/* Defined in daemon/main.c, which is not in the library. */
struct ev_loop *loop;
const struct config *cfg;

static struct config conf;
static struct db_config dbs[2];
static struct user_config users[1];
static struct pool pools[4];
static struct server servers[32];
static struct client clients[16];
static int nservers, nclients;

static void init_pool(struct pool *p, const struct db_config *db, const char *dbname, const char *user)
{
	memset(p, 0, sizeof(*p));
	p->db = db;
	p->dbname = (char *)dbname;
	p->user = (char *)user;
	p->size = 10;
	p->have_base = true;
	struct list *lists[] = { &p->connecting, &p->idle, &p->leased, &p->cleaning, &p->authq,
				 &p->login_wait, &p->clients, &p->waiting, &p->active };
	for (size_t i = 0; i < sizeof(lists) / sizeof(*lists); i++)
		list_init(lists[i]);
	list_push_tail(&all_pools, &p->node);
}

static struct server *add_server(struct pool *p, enum server_state state)
{
	struct server *s = &servers[nservers++];

	memset(s, 0, sizeof(*s));
	s->id = nservers;
	s->state = state;
	s->pool = p;
	s->cap_epoch = caps_epoch();
	s->phase = state == SERVER_CONNECTING ? PHASE_CONNECT : PHASE_IDLE;
	struct list *l = state == SERVER_IDLE ? &p->idle : state == SERVER_CONNECTING ? &p->connecting : &p->leased;
	list_push_tail(l, &s->node);
	return s;
}

static void add_client(struct pool *p)
{
	struct client *c = &clients[nclients++];

	memset(c, 0, sizeof(*c));
	c->state = CLIENT_IDLE;
	c->pool = p;
	list_push_tail(&p->clients, &c->node);
}

/* app (max_db_connections=3) and other (no cap); alice capped at 2 through [users]. */
static void setup(void)
{
	list_init(&all_pools);
	nservers = nclients = 0;
	conf = (struct config){ .default_pool_size = 20, .pool_mode = POOL_MODE_TRANSACTION };
	dbs[0] = (struct db_config){ .name = "app", .pool_size = -1, .pool_mode = -1, .max_db_connections = 3,
				     .max_db_client_connections = 2, .reserve_pool_size = -1 };
	dbs[1] = (struct db_config){ .name = "other", .pool_size = 4, .pool_mode = POOL_MODE_SESSION,
				     .max_db_connections = -1, .max_db_client_connections = -1, .reserve_pool_size = -1 };
	users[0] = (struct user_config){ .name = "alice", .pool_mode = POOL_MODE_SESSION, .pool_size = 7,
					 .max_user_connections = 2, .max_user_client_connections = 1 };
	conf.dbs = dbs;
	conf.db_count = 2;
	conf.users = users;
	conf.user_count = 1;
	cfg = &conf;
	init_pool(&pools[0], &dbs[0], "app", "bob");
	init_pool(&pools[1], &dbs[0], "app", "carol");
	init_pool(&pools[2], &dbs[1], "other", "alice");
	init_pool(&pools[3], &dbs[0], "app", "alice");
}

static void teardown(void)
{
	list_init(&all_pools);
	cfg = NULL;
}

TestSuite(caps, .init = setup, .fini = teardown);

Test(caps, users_entry_wins_over_database_and_global)
{
	cr_assert_eq(pool_size_for(&dbs[0], "alice", cfg), 7);
	cr_assert_eq(pool_mode_for(&dbs[0], "alice", cfg), POOL_MODE_SESSION);
	cr_assert_eq(pool_size_for(&dbs[1], "alice", cfg), 7);
	/* a user without an entry: the database's, then the global */
	cr_assert_eq(pool_size_for(&dbs[1], "bob", cfg), 4);
	cr_assert_eq(pool_mode_for(&dbs[1], "bob", cfg), POOL_MODE_SESSION);
	cr_assert_eq(pool_size_for(&dbs[0], "bob", cfg), 20);
	cr_assert_eq(pool_mode_for(&dbs[0], "bob", cfg), POOL_MODE_TRANSACTION);
}

Test(caps, caps_come_from_the_entry_then_the_global)
{
	cr_assert_eq(caps_db_cap(&pools[0]), 3);
	cr_assert_eq(caps_db_cap(&pools[2]), 0);
	conf.max_db_connections = 9;
	cr_assert_eq(caps_db_cap(&pools[2]), 9);
	/* an entry's 0 is "no cap", not "inherit" */
	dbs[0].max_db_connections = 0;
	cr_assert_eq(caps_db_cap(&pools[0]), 0);
	cr_assert_eq(caps_user_cap(&pools[2]), 2);
	cr_assert_eq(caps_user_cap(&pools[0]), 0);
	conf.max_user_connections = 5;
	cr_assert_eq(caps_user_cap(&pools[0]), 5);
}

Test(caps, every_state_counts_toward_a_cap)
{
	add_server(&pools[0], SERVER_CONNECTING);
	add_server(&pools[0], SERVER_LEASED);
	add_server(&pools[1], SERVER_IDLE);
	add_server(&pools[2], SERVER_IDLE);
	cr_assert_eq(caps_db_servers("app"), 3);
	cr_assert_eq(caps_db_servers("other"), 1);
	cr_assert_eq(caps_user_servers("bob"), 2);
	cr_assert_eq(caps_user_servers("alice"), 1);
	cr_assert_eq(caps_room(&pools[0]), 0);
	cr_assert_eq(caps_room(&pools[1]), 0);
}

Test(caps, room_is_the_tightest_cap_less_what_others_were_promised)
{
	add_server(&pools[0], SERVER_LEASED);
	cr_assert_eq(caps_room(&pools[0]), 2);
	/* other/alice: no database cap, but alice's own cap of 2 */
	cr_assert_eq(caps_room(&pools[2]), 2);
	add_server(&pools[3], SERVER_IDLE);
	/* app/alice: the database has 1 left, alice 1 */
	cr_assert_eq(caps_room(&pools[3]), 1);
	cr_assert_eq(caps_room(&pools[2]), 1);
	/* room promised to carol's pool is hers only */
	pools[1].promised = 1;
	cr_assert_eq(caps_room(&pools[0]), 0);
	cr_assert_eq(caps_room(&pools[1]), 1);
	/* an uncapped pool has all the room there is */
	conf.users = NULL;
	conf.user_count = 0;
	cr_assert_eq(caps_room(&pools[2]), INT_MAX);
}

Test(caps, client_caps_word_as_postgresql)
{
	char buf[128];

	cr_assert_null(caps_client_refusal(&dbs[0], "app", "bob", buf, sizeof(buf)));
	add_client(&pools[0]);
	add_client(&pools[1]);
	cr_assert_str_eq(caps_client_refusal(&dbs[0], "app", "bob", buf, sizeof(buf)),
			 "too many connections for database \"app\"");
	cr_assert_null(caps_client_refusal(&dbs[1], "other", "bob", buf, sizeof(buf)));
	add_client(&pools[2]);
	/* the role's limit is checked first, as PostgreSQL does */
	cr_assert_str_eq(caps_client_refusal(&dbs[0], "app", "alice", buf, sizeof(buf)),
			 "too many connections for role \"alice\"");
	cr_assert_str_eq(caps_client_refusal(&dbs[1], "other", "alice", buf, sizeof(buf)),
			 "too many connections for role \"alice\"");
}

Test(caps, verify_finds_a_database_over_its_cap)
{
	for (int i = 0; i < 3; i++)
		add_server(&pools[i % 2], SERVER_CONNECTING);
	cr_assert_null(caps_verify((char[256]){ 0 }, 256));
	cr_assert_null(pool_verify_find(), "%s", pool_verify_find());
	add_server(&pools[1], SERVER_CONNECTING);
	char why[256];
	const char *v = caps_verify(why, sizeof(why));
	cr_assert_not_null(v);
	cr_assert(strstr(v, "database \"app\" has 4 backends, cap 3"), "%s", v);
	/* pool_verify() checks it between loop iterations */
	v = pool_verify_find();
	cr_assert(v && strstr(v, "more backends than its cap"), "%s", v ? v : "(none)");
}

Test(caps, verify_finds_a_user_over_its_cap)
{
	add_server(&pools[2], SERVER_LEASED);
	add_server(&pools[3], SERVER_LEASED);
	cr_assert_null(caps_verify((char[256]){ 0 }, 256));
	add_server(&pools[2], SERVER_LEASED);
	char why[256];
	const char *v = caps_verify(why, sizeof(why));
	cr_assert_not_null(v);
	cr_assert(strstr(v, "user \"alice\" has 3 backends, cap 2"), "%s", v);
}

Test(caps, after_a_reload_lowered_a_cap_only_old_busy_backends_may_be_above_it)
{
	for (int i = 0; i < 3; i++)
		add_server(&pools[0], SERVER_LEASED);
	dbs[0].max_db_connections = 1;
	caps_reloaded();
	/* three leased backends opened under the old cap: they go as they come free */
	cr_assert_null(caps_verify((char[256]){ 0 }, 256));
	/* but one of them idle, or one opened since, is a violation */
	servers[0].state = SERVER_IDLE;
	cr_assert_not_null(caps_verify((char[256]){ 0 }, 256));
	servers[0].state = SERVER_LEASED;
	add_server(&pools[1], SERVER_CONNECTING);
	cr_assert_not_null(caps_verify((char[256]){ 0 }, 256));
}
