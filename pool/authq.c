/*
 * authq.c — auth_user + auth_query: users missing from auth_file looked up
 * in PostgreSQL, through a backend of the pool (database, auth_user).
 *
 * A lookup is one query for one (pool, user): requests for the same user
 * while it is queued or running join it (coalescing). Lookups wait FIFO for
 * a backend of their pool (`queued`, counted in pool->authq_waiting, which
 * pool_want_servers() opens backends for); pool_server_free() lends the
 * next free backend to the first lookup of its pool before any waiting
 * client (authq_take_server()). The lent backend is in state AUTHQ, runs the
 * query through libpq (server_query_param(): $1 = the user, binary results)
 * and is given back through pool_server_free() when it is idle again, or
 * closed: so it is counted, shown by SHOW SERVERS, retired by RECONNECT and
 * reloads through the pool generation like any backend.
 *
 * Every answer reaches its requester from a zero-delay timer (`answered`),
 * never from inside authq_lookup(): a cache hit and a failure found at once
 * are delivered the same way as a query's answer.
 */
#include <assert.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "authq.h"
#include "authq_cache.h"
#include "env.h"
#include "log.h"
#include "pool.h"
#include "server.h"

struct authq_lookup {
	struct list_node node;        /* on queued (waiting for a backend) or running */
	struct pool *pool;            /* (the database it runs in, auth_user) */
	char *user;
	struct server *server;        /* running: the backend lent to it */
	struct list requests;         /* its requesters, oldest first */
	ev_tstamp queued_at;
	bool retried;                 /* its backend was lost once already */
};

struct authq_request {
	struct list_node node;        /* on its lookup's requests, or on answered */
	struct authq_lookup *lookup;  /* NULL once answered */
	authq_done done;
	void *arg;
	enum authq_status status;     /* once answered: */
	char *secret;                 /* AUTHQ_FOUND (wiped when freed) */
	int64_t valuntil;             /* AUTHQ_FOUND: expiry is judged when the answer is delivered */
	char *error;                  /* AUTHQ_FAILED */
};

static struct list queued = { { &queued.head, &queued.head }, 0 };
static struct list running = { { &running.head, &running.head }, 0 };
static struct list answered = { { &answered.head, &answered.head }, 0 };
static struct authq_cache cache;
static ev_timer deliver_timer;
static bool deliver_timer_ready;

/* ---- requests ---- */

static void request_free(struct authq_request *req)
{
	if (req->secret) {
		OPENSSL_cleanse(req->secret, strlen(req->secret));
		free(req->secret);
	}
	free(req->error);
	free(req);
}

static void deliver(struct ev_loop *l, ev_timer *w, int revents)
{
	struct list_node *first;

	(void)l;
	(void)w;
	(void)revents;
	/* A callback may cancel or add requests: take them one at a time. */
	while ((first = list_first(&answered))) {
		struct authq_request *req = list_entry(first, struct authq_request, node);
		list_remove(&answered, first);
		struct authq_answer a = { .status = req->status, .secret = req->secret, .error = req->error };
		if (a.status == AUTHQ_FAILED && !a.error)
			a.error = "out of memory";
		if (a.status == AUTHQ_FOUND)
			a.expired = authq_expired(req->valuntil, ev_now(loop));
		req->done(req->arg, &a);
		request_free(req);
	}
}

static void kick_delivery(void)
{
	if (!deliver_timer_ready) {
		ev_timer_init(&deliver_timer, deliver, 0., 0.);
		deliver_timer_ready = true;
	}
	if (!ev_is_active(&deliver_timer))
		ev_timer_start(loop, &deliver_timer);
}

/* The answer is kept in the request; on no memory for it, the request gets AUTHQ_FAILED. */
static void answer(struct authq_request *req, enum authq_status status, const char *secret, int64_t valuntil,
		   const char *error)
{
	req->status = status;
	req->valuntil = valuntil;
	if (status == AUTHQ_FOUND && !(req->secret = strdup(secret))) {
		req->status = AUTHQ_FAILED;
		error = "out of memory keeping auth_query's answer";
	}
	if (req->status == AUTHQ_FAILED)
		req->error = strdup(error);   /* NULL on no memory: delivered as "out of memory" */
	req->lookup = NULL;
	list_push_tail(&answered, &req->node);
	kick_delivery();
}

/* ---- lookups ---- */

static void lookup_free(struct authq_lookup *q)
{
	assert(!q->server && list_empty(&q->requests));
	free(q->user);
	free(q);
}

static void unqueue(struct authq_lookup *q)
{
	list_remove(&queued, &q->node);
	q->pool->authq_waiting--;
	assert(q->pool->authq_waiting >= 0);
}

/* Every requester gets the same answer; the lookup (off every list) is freed. */
static void finish(struct authq_lookup *q, enum authq_status status, const char *secret, int64_t valuntil,
		   const char *error)
{
	struct list_node *first;

	if (status == AUTHQ_FAILED)
		log_warning("auth_query for user \"%s\" (pool %s/%s) failed: %s", q->user, q->pool->dbname,
			    q->pool->user, error);
	while ((first = list_first(&q->requests))) {
		list_remove(&q->requests, first);
		answer(list_entry(first, struct authq_request, node), status, secret, valuntil, error);
	}
	lookup_free(q);
}

static void fail(struct authq_lookup *q, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail(struct authq_lookup *q, const char *fmt, ...)
{
	char why[600];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	finish(q, AUTHQ_FAILED, NULL, 0, why);
}

static void found(struct authq_lookup *q, const struct authq_row *row)
{
	/* A role without a password cannot log in with one: that is no user, and is not kept. */
	if (!row->found || !row->secret) {
		finish(q, AUTHQ_NO_USER, NULL, 0, NULL);
		return;
	}
	if (cfg->auth_query_cache_ttl > 0 &&
	    authq_cache_put(&cache, q->pool->dbname, q->user, row->secret, row->valuntil, ev_now(loop)) < 0)
		log_warning("auth_query: out of memory caching user \"%s\"", q->user);
	finish(q, AUTHQ_FOUND, row->secret, row->valuntil, NULL);
}

/* The backend is clean again (the query ran outside any transaction) or it goes. */
static void give_back(struct server *s)
{
	if (PQtransactionStatus(s->conn) != PQTRANS_IDLE) {
		server_close(s, "not idle after auth_query");
		return;
	}
	pool_server_free(s);
}

static void query_answered(struct server *s, const char *sqlstate, const char *error)
{
	struct authq_lookup *q = s->authq;

	assert(s->state == SERVER_AUTHQ && q && q->server == s);
	s->authq = NULL;
	q->server = NULL;
	list_remove(&running, &q->node);
	if (error) {
		fail(q, "%s (SQLSTATE %s)", error, sqlstate);
	} else {
		struct authq_row row;
		char why[256];
		if (authq_read_result(server_query_result(s), &row, why, sizeof(why)) < 0)
			fail(q, "%s", why);
		else
			found(q, &row);
		if (row.secret) {
			OPENSSL_cleanse(row.secret, strlen(row.secret));
			free(row.secret);
		}
	}
	give_back(s);
}

static void lend(struct authq_lookup *q, struct server *s)
{
	assert(s->pool == q->pool && !s->lease && !s->authq);
	unqueue(q);
	list_push_tail(&running, &q->node);
	q->server = s;
	s->authq = q;
	server_set_state(s, SERVER_AUTHQ);
	log_debug("auth_query for user \"%s\" on server %d (pool %s/%s)", q->user, s->id, q->pool->dbname,
		  q->pool->user);
	if (server_query_param(s, cfg->auth_query, q->user, query_answered) < 0)
		server_close(s, "could not send auth_query: %s", PQerrorMessage(s->conn));
}

bool authq_take_server(struct server *s)
{
	struct list_node *pos, *tmp;

	if (!s->pool->authq_waiting)
		return false;
	list_for_each_safe(pos, tmp, &queued) {
		struct authq_lookup *q = list_entry(pos, struct authq_lookup, node);
		if (q->pool == s->pool) {
			lend(q, s);
			return true;
		}
	}
	assert(!"pool->authq_waiting counts a lookup that is not queued");
	return false;
}

void authq_server_closed(struct server *s, const char *reason)
{
	struct authq_lookup *q = s->authq;

	/* Given back already (closed because it was not clean): nothing is waiting on it. */
	if (!q)
		return;
	s->authq = NULL;
	q->server = NULL;
	list_remove(&running, &q->node);
	if (list_empty(&q->requests)) {
		lookup_free(q);
		return;
	}
	if (q->retried || q->pool->closing) {
		fail(q, "server connection lost while running auth_query: %s", reason);
		return;
	}
	/* An idle backend the server had dropped: once more, on another (pool_server_gone() lends or opens one). */
	q->retried = true;
	list_push_head(&queued, &q->node);
	q->pool->authq_waiting++;
}

void authq_serve(struct pool *p)
{
	struct list_node *idle;

	while (p->authq_waiting && !pool_paused(p) && (idle = list_last(&p->idle)))
		(void)authq_take_server(list_entry(idle, struct server, node));
}

static void fail_queued(struct pool *p, const char *what, const char *why)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &queued) {
		struct authq_lookup *q = list_entry(pos, struct authq_lookup, node);
		if (q->pool != p)
			continue;
		unqueue(q);
		fail(q, "%s (pool %s/%s): %s", what, p->dbname, p->user, why);
	}
}

void authq_pool_failed(struct pool *p, const char *error)
{
	fail_queued(p, "cannot connect to run auth_query", error);
}

void authq_pool_closing(struct pool *p, const char *reason)
{
	fail_queued(p, "the pool for auth_query is closing", reason);
}

void authq_maintain(ev_tstamp now)
{
	struct list_node *pos, *tmp;

	if (cfg->query_wait_timeout <= 0)
		return;
	list_for_each_safe(pos, tmp, &queued) {
		struct authq_lookup *q = list_entry(pos, struct authq_lookup, node);
		if (now - q->queued_at < cfg->query_wait_timeout)
			continue;
		unqueue(q);
		/* During an outage the lookup waited for PostgreSQL, as logins do: say why it is not back. */
		if (q->pool->last_error && pool_server_count(q->pool) == 0)
			fail(q, "cannot connect to run auth_query within %g s (query_wait_timeout): %s",
			     cfg->query_wait_timeout, q->pool->last_error);
		else
			fail(q, "no server connection of pool %s/%s became free within %g s (query_wait_timeout)",
			     q->pool->dbname, q->pool->user, cfg->query_wait_timeout);
	}
}

/* ---- asking ---- */

static struct authq_lookup *find_lookup(const struct list *l, const struct pool *p, const char *user)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, (struct list *)l) {
		struct authq_lookup *q = list_entry(pos, struct authq_lookup, node);
		if (q->pool == p && strcmp(q->user, user) == 0)
			return q;
	}
	return NULL;
}

static struct authq_lookup *new_lookup(struct pool *p, const char *user)
{
	struct authq_lookup *q = calloc(1, sizeof(*q));

	if (!q || !(q->user = strdup(user))) {
		free(q);
		return NULL;
	}
	q->pool = p;
	q->queued_at = ev_now(loop);
	list_init(&q->requests);
	list_push_tail(&queued, &q->node);
	p->authq_waiting++;
	return q;
}

/* A new lookup takes an idle backend at once, else the pool opens one (or it waits its turn). */
static void start(struct pool *p)
{
	authq_serve(p);
	if (p->authq_waiting)
		pool_want_servers(p);
}

/* The client's database entry's auth_user= where it has one, else the global auth_user ("": none). */
static const char *auth_user_for(const char *dbname)
{
	const struct db_config *db = config_find_db(cfg, dbname);

	return db && db->auth_user ? db->auth_user : cfg->auth_user;
}

/* The pool of (database, auth_user) the query runs in, or NULL (logged). */
static struct pool *query_pool(const char *dbname, const char *auth_user)
{
	const char *qdb = *cfg->auth_dbname ? cfg->auth_dbname : dbname;
	const struct db_config *db = config_find_db(cfg, qdb);

	if (!db) {
		log_warning("auth_query: database \"%s\" is not in [databases]", qdb);
		return NULL;
	}
	struct pool *p = pool_find_or_create(db, qdb, auth_user);
	if (!p)
		log_warning("auth_query: out of memory making the pool %s/%s", qdb, auth_user);
	else if (p->closing)
		log_warning("auth_query: the pool %s/%s is closing", qdb, auth_user);
	return p && !p->closing ? p : NULL;
}

static struct authq_request *from_cache(struct pool *p, const char *user, authq_done done, void *arg)
{
	double ttl = cfg->auth_query_cache_ttl;
	const struct authq_entry *e = ttl > 0 ? authq_cache_get(&cache, p->dbname, user, ev_now(loop), ttl) : NULL;
	struct authq_request *req;

	if (!e || !(req = calloc(1, sizeof(*req))))
		return NULL;
	req->done = done;
	req->arg = arg;
	answer(req, AUTHQ_FOUND, e->secret, e->valuntil, NULL);
	return req;
}

bool authq_enabled(const char *dbname)
{
	return config_find_db(cfg, dbname) && *auth_user_for(dbname);
}

struct authq_request *authq_lookup(const char *dbname, const char *user, authq_done done, void *arg)
{
	const char *auth_user = auth_user_for(dbname);

	if (!*auth_user) {
		log_warning("auth_query: user \"%s\" of database \"%s\" cannot be looked up: auth_user is not set",
			    user, dbname);
		return NULL;
	}
	struct pool *p = query_pool(dbname, auth_user);
	if (!p)
		return NULL;
	struct authq_request *req = from_cache(p, user, done, arg);
	if (req)
		return req;
	struct authq_lookup *q = find_lookup(&queued, p, user);
	bool fresh = !q && !(q = find_lookup(&running, p, user));
	if (fresh && !(q = new_lookup(p, user))) {
		log_warning("auth_query: out of memory looking up user \"%s\"", user);
		return NULL;
	}
	if (!(req = calloc(1, sizeof(*req)))) {
		log_warning("auth_query: out of memory looking up user \"%s\"", user);
		if (fresh) {
			unqueue(q);
			lookup_free(q);
		}
		return NULL;
	}
	req->done = done;
	req->arg = arg;
	req->lookup = q;
	list_push_tail(&q->requests, &req->node);
	/* The request is attached first: whatever starting does (fail at once too), it is answered later. */
	if (fresh)
		start(p);
	return req;
}

void authq_cancel(struct authq_request *req)
{
	struct authq_lookup *q = req->lookup;

	if (!q) {
		list_remove(&answered, &req->node);
		request_free(req);
		return;
	}
	list_remove(&q->requests, &req->node);
	request_free(req);
	/* A running lookup goes on: its answer is cached, and its backend comes back through the usual door. */
	if (list_empty(&q->requests) && !q->server) {
		unqueue(q);
		lookup_free(q);
	}
}

/* ---- reload, exit, verify ---- */

void authq_reload(void)
{
	authq_cache_clear(&cache);
}

static void free_lookups(struct list *l)
{
	struct list_node *pos, *tmp, *first;

	list_for_each_safe(pos, tmp, l) {
		struct authq_lookup *q = list_entry(pos, struct authq_lookup, node);
		list_remove(l, pos);
		while ((first = list_first(&q->requests))) {
			list_remove(&q->requests, first);
			request_free(list_entry(first, struct authq_request, node));
		}
		if (q->server)
			q->server->authq = NULL;
		q->server = NULL;
		if (l == &queued)
			q->pool->authq_waiting--;
		lookup_free(q);
	}
}

void authq_free_all(void)
{
	struct list_node *first;

	free_lookups(&queued);
	free_lookups(&running);
	while ((first = list_first(&answered))) {
		list_remove(&answered, first);
		request_free(list_entry(first, struct authq_request, node));
	}
	if (deliver_timer_ready)
		ev_timer_stop(loop, &deliver_timer);
	authq_cache_clear(&cache);
}

const char *authq_verify(const struct pool *p, char *buf, int cap)
{
	struct list_node *pos, *tmp;
	int waiting = 0, lent = 0;

	list_for_each_safe(pos, tmp, &queued) {
		struct authq_lookup *q = list_entry(pos, struct authq_lookup, node);
		if (q->pool != p)
			continue;
		waiting++;
		/* A queued lookup nobody asks for any more is dropped (authq_cancel()). */
		if (q->server || list_empty(&q->requests))
			return snprintf(buf, cap, "queued lookup for \"%s\": server %p, %d requests", q->user,
					(void *)q->server, q->requests.count), buf;
	}
	list_for_each_safe(pos, tmp, &running) {
		struct authq_lookup *q = list_entry(pos, struct authq_lookup, node);
		if (q->pool != p)
			continue;
		lent++;
		const struct server *s = q->server;
		if (!s || s->authq != q || s->state != SERVER_AUTHQ || s->pool != p)
			return snprintf(buf, cap, "running lookup for \"%s\" and its server disagree", q->user), buf;
	}
	if (waiting != p->authq_waiting || lent != p->authq.count)
		return snprintf(buf, cap, "authq_waiting %d, queued %d; lent %d, running %d", p->authq_waiting,
				waiting, p->authq.count, lent), buf;
	/* A backend that came free went to the first lookup of its pool (pool_server_free(), start()). */
	if (waiting && !list_empty(&p->idle) && !pool_paused(p))
		return snprintf(buf, cap, "%d lookups queued beside %d idle servers", waiting, p->idle.count), buf;
	return NULL;
}
