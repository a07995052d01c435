/*
 * caps.c — limits across pools (pool/README.md, "Limits").
 *
 * A cap groups pools: max_db_connections all the pools of one database,
 * max_user_connections all the pools of one user. A pool may open a backend
 * only while every group it is in has room. A blocked pool with clients
 * waiting gets room two ways: an idle backend of a sibling is closed at
 * once (caps_make_room()), or the next backend a sibling frees is closed
 * instead of being reused (caps_shed()), when the sibling has clearly more
 * backends than the blocked pool. Either way the room is *promised* to the
 * blocked pool (p->promised), so a sibling cannot take it back, and capped
 * pools wait CAPS_SETTLE after a live backend closed, so that PostgreSQL
 * has seen it go before a new one arrives: the cap is what PostgreSQL sees.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>

#include "caps.h"
#include "client.h"
#include "env.h"
#include "pool.h"
#include "server.h"

#define for_each_pool(pos) for ((pos) = all_pools.head.next; (pos) != &all_pools.head; (pos) = (pos)->next)

/* Capped pools open no backend before this (a live backend was just closed). */
static ev_tstamp settle_until;
/* Bumped by every reload: a group over its cap holds only backends opened under an older config. */
static unsigned config_epoch;

int pool_size_for(const struct db_config *db, const char *user, const struct config *c)
{
	const struct user_config *u = user ? config_find_user(c, user) : NULL;

	if (u && u->pool_size > 0)
		return u->pool_size;
	return pool_effective_size(db, c);
}

enum pool_mode pool_mode_for(const struct db_config *db, const char *user, const struct config *c)
{
	const struct user_config *u = user ? config_find_user(c, user) : NULL;

	if (u && u->pool_mode >= 0)
		return (enum pool_mode)u->pool_mode;
	return pool_effective_mode(db, c);
}

/*
 * The running config's entry: a live pool's p->db is re-pointed by every reload, a retired one's is not (it
 * keeps its old settings), but every pool of a database must count under the same cap.
 */
int caps_db_cap(const struct pool *p)
{
	const struct db_config *db = p->retired && cfg ? config_find_db(cfg, p->dbname) : p->db;

	if (!cfg || !db)
		return 0;
	return db->max_db_connections >= 0 ? db->max_db_connections : cfg->max_db_connections;
}

int caps_user_cap(const struct pool *p)
{
	if (!cfg)
		return 0;
	const struct user_config *u = config_find_user(cfg, p->user);

	return u && u->max_user_connections >= 0 ? u->max_user_connections : cfg->max_user_connections;
}

static bool same_db(const struct pool *a, const struct pool *b)
{
	return strcmp(a->dbname, b->dbname) == 0;
}

static bool same_user(const struct pool *a, const struct pool *b)
{
	return strcmp(a->user, b->user) == 0;
}

int caps_db_servers(const char *dbname)
{
	struct list_node *pos;
	int n = 0;

	for_each_pool(pos) {
		const struct pool *q = list_entry(pos, struct pool, node);
		n += strcmp(q->dbname, dbname) == 0 ? pool_server_count(q) : 0;
	}
	return n;
}

int caps_user_servers(const char *user)
{
	struct list_node *pos;
	int n = 0;

	for_each_pool(pos) {
		const struct pool *q = list_entry(pos, struct pool, node);
		n += strcmp(q->user, user) == 0 ? pool_server_count(q) : 0;
	}
	return n;
}

static int pool_clients(const struct pool *q)
{
	return q->login_wait.count + q->clients.count + q->waiting.count + q->active.count;
}

int caps_db_clients(const char *dbname)
{
	struct list_node *pos;
	int n = 0;

	for_each_pool(pos) {
		const struct pool *q = list_entry(pos, struct pool, node);
		n += strcmp(q->dbname, dbname) == 0 ? pool_clients(q) : 0;
	}
	return n;
}

int caps_user_clients(const char *user)
{
	struct list_node *pos;
	int n = 0;

	for_each_pool(pos) {
		const struct pool *q = list_entry(pos, struct pool, node);
		n += strcmp(q->user, user) == 0 ? pool_clients(q) : 0;
	}
	return n;
}

/* Room promised to the other pools of p's database (by_db) or of its user. */
static int promised_to_others(const struct pool *p, bool by_db)
{
	struct list_node *pos;
	int n = 0;

	for_each_pool(pos) {
		const struct pool *q = list_entry(pos, struct pool, node);
		if (q != p && (by_db ? same_db(p, q) : same_user(p, q)))
			n += q->promised;
	}
	return n;
}

int caps_room(const struct pool *p)
{
	int dbcap = caps_db_cap(p), ucap = caps_user_cap(p), room = INT_MAX;

	if (dbcap) {
		int left = dbcap - caps_db_servers(p->dbname) - promised_to_others(p, true);
		room = left < room ? left : room;
	}
	if (ucap) {
		int left = ucap - caps_user_servers(p->user) - promised_to_others(p, false);
		room = left < room ? left : room;
	}
	return room;
}

static bool capped(const struct pool *p)
{
	return caps_db_cap(p) || caps_user_cap(p);
}

/* The room a closed backend left is taken as soon as PostgreSQL has seen it go, not at the next maintenance tick. */
static void settled(struct ev_loop *l, ev_timer *w, int revents)
{
	struct list_node *pos, *tmp;

	(void)l, (void)w, (void)revents;
	list_for_each_safe(pos, tmp, &all_pools) {
		struct pool *q = list_entry(pos, struct pool, node);
		if (pool_demand(q) && capped(q))
			pool_want_servers(q);
	}
}

void caps_server_closed(const struct pool *p)
{
	static ev_timer settle_timer;

	if (!capped(p))
		return;
	settle_until = ev_now(loop) + CAPS_SETTLE;
	if (!ev_is_active(&settle_timer)) {
		ev_timer_init(&settle_timer, settled, CAPS_SETTLE + 0.001, 0);
		ev_timer_start(loop, &settle_timer);
	}
}

bool caps_settling(const struct pool *p)
{
	return capped(p) && ev_now(loop) < settle_until;
}

/* Which of p's groups are full: a backend freed for p must come from a pool in all of them. */
struct full { bool db, user; };

static struct full full_groups(const struct pool *p)
{
	int dbcap = caps_db_cap(p), ucap = caps_user_cap(p);

	return (struct full){
		.db = dbcap && caps_db_servers(p->dbname) + promised_to_others(p, true) >= dbcap,
		.user = ucap && caps_user_servers(p->user) + promised_to_others(p, false) >= ucap,
	};
}

static bool in_groups(const struct pool *q, const struct pool *p, struct full f)
{
	return q != p && (f.db || f.user) && (!f.db || same_db(p, q)) && (!f.user || same_user(p, q));
}

bool caps_make_room(struct pool *p)
{
	struct full f = full_groups(p);
	struct list_node *pos;

	if (pool_demand(p) <= p->promised)
		return false;
	for_each_pool(pos) {
		struct pool *q = list_entry(pos, struct pool, node);
		struct list_node *coldest = list_first(&q->idle);
		if (!coldest || !in_groups(q, p, f))
			continue;
		p->promised++;
		server_close(list_entry(coldest, struct server, node), "idle; closed to make room for pool %s/%s (%s)",
			     p->dbname, p->user, f.db ? "max_db_connections" : "max_user_connections");
		return true;
	}
	return false;
}

/* When the longest-waiting client of q started to wait (now when none waits). */
static ev_tstamp oldest_wait(const struct pool *q)
{
	const struct list *lists[] = { &q->waiting, &q->login_wait };
	ev_tstamp since = ev_now(loop);

	for (size_t i = 0; i < sizeof(lists) / sizeof(*lists); i++) {
		const struct list_node *first = list_first(lists[i]);
		const struct client *c = first ? list_entry(first, struct client, node) : NULL;
		if (c && c->state_since < since)
			since = c->state_since;
	}
	return since;
}

/*
 * Should p's freed backend go to q rather than to p's own next client? When p
 * has none waiting; when q has two backends fewer (the counts meet, never
 * swap back and forth); or when q has none at all and its clients have waited
 * CAPS_TURN longer than p's: with a cap of 1, busy pools take turns.
 */
static bool owed(const struct pool *p, const struct pool *q, int mine)
{
	int theirs = pool_server_count(q) + q->promised;

	if (pool_demand(p) == 0 || theirs < mine - 1)
		return true;
	return theirs == 0 && oldest_wait(q) + CAPS_TURN < oldest_wait(p);
}

/* A pool blocked by a cap it shares with p, with clients waiting, owed a backend of p's. */
static struct pool *starving_sibling(const struct pool *p)
{
	struct list_node *pos;
	int mine = pool_server_count(p);

	for_each_pool(pos) {
		struct pool *q = list_entry(pos, struct pool, node);
		if (q == p || q->closing || pool_demand(q) <= q->promised || caps_room(q) > 0 ||
		    pool_server_count(q) + q->promised >= q->size + caps_reserve(q))
			continue;
		if (in_groups(p, q, full_groups(q)) && owed(p, q, mine))
			return q;
	}
	return NULL;
}

static bool over_cap(const struct pool *p)
{
	int dbcap = caps_db_cap(p), ucap = caps_user_cap(p);

	return (dbcap && caps_db_servers(p->dbname) > dbcap) || (ucap && caps_user_servers(p->user) > ucap);
}

bool caps_shed(struct server *s)
{
	struct pool *p = s->pool;

	if (!capped(p))
		return false;
	if (over_cap(p)) {
		server_close(s, "above max_db_connections or max_user_connections (lowered by a reload)");
		return true;
	}
	struct pool *q = starving_sibling(p);
	if (!q)
		return false;
	q->promised++;
	server_close(s, "closed to make room for pool %s/%s, whose clients wait (max_db_connections or "
		     "max_user_connections)", q->dbname, q->user);
	return true;
}

void caps_trim_idle(struct pool *p)
{
	struct list_node *first;

	while (over_cap(p) && (first = list_first(&p->idle)))
		server_close(list_entry(first, struct server, node), "above max_db_connections or max_user_connections "
			     "(lowered by a reload)");
}

void caps_reloaded(void)
{
	config_epoch++;
}

unsigned caps_epoch(void)
{
	return config_epoch;
}

int caps_reserve_size(const struct pool *p)
{
	if (!cfg)
		return 0;
	if (!p->db)
		return cfg->reserve_pool_size;
	return p->db->reserve_pool_size >= 0 ? p->db->reserve_pool_size : cfg->reserve_pool_size;
}

/* The reserve opens to a pool whose first waiting client has waited reserve_pool_timeout. */
int caps_reserve(const struct pool *p)
{
	struct list_node *first = list_first(&p->waiting);
	int size = caps_reserve_size(p);

	if (!size || !first)
		return 0;
	const struct client *c = list_entry(first, struct client, node);
	return ev_now(loop) - c->state_since >= cfg->reserve_pool_timeout ? size : 0;
}

/* PostgreSQL checks the role's limit first, then the database's; both SQLSTATE 53300. */
const char *caps_client_refusal(const struct db_config *db, const char *dbname, const char *user, char *buf,
				  size_t cap)
{
	const struct user_config *u = config_find_user(cfg, user);
	int ucap = u && u->max_user_client_connections >= 0 ? u->max_user_client_connections
							    : cfg->max_user_client_connections;
	int dbcap = db->max_db_client_connections >= 0 ? db->max_db_client_connections : cfg->max_db_client_connections;

	if (ucap && caps_user_clients(user) >= ucap)
		snprintf(buf, cap, "too many connections for role \"%s\"", user);
	else if (dbcap && caps_db_clients(dbname) >= dbcap)
		snprintf(buf, cap, "too many connections for database \"%s\"", dbname);
	else
		return NULL;
	return buf;
}

/* Over its cap only after a reload lowered it: then nothing in the group is idle or opened since. */
static const char *check_group(const struct pool *p, bool by_db, int cap, char *why, size_t whycap)
{
	struct list_node *pos, *sp;
	int n = by_db ? caps_db_servers(p->dbname) : caps_user_servers(p->user);

	if (!cap || n <= cap)
		return NULL;
	for_each_pool(pos) {
		const struct pool *q = list_entry(pos, struct pool, node);
		if (!(by_db ? same_db(p, q) : same_user(p, q)))
			continue;
		const struct list *lists[] = { &q->connecting, &q->idle, &q->leased, &q->cleaning, &q->authq };
		for (size_t i = 0; i < sizeof(lists) / sizeof(*lists); i++)
			for (sp = lists[i]->head.next; sp != &lists[i]->head; sp = sp->next) {
				const struct server *s = list_entry(sp, struct server, node);
				if (s->state == SERVER_IDLE || s->cap_epoch == config_epoch) {
					snprintf(why, whycap, "%s \"%s\" has %d backends, cap %d (server %d, %s)",
						 by_db ? "database" : "user", by_db ? p->dbname : p->user, n, cap, s->id,
						 server_state_name(s->state));
					return why;
				}
			}
	}
	return NULL;
}

const char *caps_verify(char *why, size_t cap)
{
	struct list_node *pos;
	const char *v;

	for_each_pool(pos) {
		const struct pool *p = list_entry(pos, struct pool, node);
		if ((v = check_group(p, true, caps_db_cap(p), why, cap)) ||
		    (v = check_group(p, false, caps_user_cap(p), why, cap)))
			return v;
		if (p->promised < 0) {
			snprintf(why, cap, "pool %s/%s: promised %d", p->dbname, p->user, p->promised);
			return why;
		}
	}
	return NULL;
}
