/*
 * welcome.c — answering a login, as PostgreSQL would, once the pool can.
 *
 * The front end authenticated the client and names its pool (client_join).
 * The answer needs the backend's reported settings (the pool's base), and
 * a backend's check of the client's startup settings unless the pool has
 * seen the same ones before (vet.c): until then the client waits.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "caps.h"
#include "client.h"
#include "env.h"
#include "lease.h"
#include "log.h"
#include "pool.h"
#include "proto.h"
#include "vet.h"


/*
 * As PostgreSQL answers a login: AuthenticationOk, the notices setting the
 * startup settings raised, the reported settings, BackendKeyData,
 * ReadyForQuery. -1 when the client is gone.
 */
static int login_reply(struct client *c, const struct vet_answer *answer)
{
	/* Room for the base set plus every setting (and notice about it) a 10 000-byte startup packet can carry. */
	static uint8_t buf[4096 + 4 * STARTUP_MAX_LEN];
	struct wbuf w;
	int count;
	const char *const *names = pool_reported_params(&count);

	wbuf_init(&w, buf, sizeof(buf));
	proto_auth_ok(&w);
	if (answer && answer->notices_len)
		wbuf_bytes(&w, answer->notices, answer->notices_len);
	/* Only what the server reports: a client's own setting of another (search_path) is not. */
	for (int i = 0; i < count; i++) {
		const char *value = params_get(&c->pool->base, names[i]);
		const char *own = params_get(&c->params, names[i]);
		if (value)
			proto_param_status(&w, names[i], own ? own : value);
	}
	proto_backend_key(&w, c->id, c->cancel_key);
	proto_ready(&w, 'I');
	if (w.overflow) {
		client_fatal(c, "54000", "startup parameters too long to report back", NULL);
		return -1;
	}
	c->welcomed = true;
	params_free(&c->vet_key);
	client_send(c, buf, w.len);
	return c->state == CLIENT_CLOSED ? -1 : 0;
}

/* After authentication, as PostgreSQL checks its connection limits: AuthenticationOk, then FATAL 53300. */
static void refuse_over_cap(struct client *c, const char *message)
{
	uint8_t buf[512];
	struct wbuf w;

	wbuf_init(&w, buf, sizeof(buf));
	proto_auth_ok(&w);
	proto_error(&w, "FATAL", "53300", message, NULL, NULL);
	if (!w.overflow)
		client_send(c, buf, w.len);
	client_close(c, "login refused: %s (a client cap: max_db_client_connections or max_user_client_connections)",
		     message);
}

/*
 * An authenticated client joins the pool of (db, user). It takes over
 * *params, its startup settings; sequence is the order they were given in.
 */
void client_join(struct client *c, const struct db_config *db, const char *dbname, const char *user,
		 struct param_set *params, const struct param_set *sequence)
{
	char refusal[160];
	const char *over = db ? caps_client_refusal(db, dbname, user, refusal, sizeof(refusal)) : NULL;

	if (over)
		return refuse_over_cap(c, over);
	struct pool *p = db ? pool_find_or_create(db, dbname, user) : NULL;

	if (!p)
		return client_fatal(c, "53200", "out of memory creating the pool", NULL);
	c->pool = p;
	c->prep_on = p->mode == POOL_MODE_TRANSACTION && cfg->max_prepared_statements > 0;
	if (params_copy(&c->startup, params) < 0)
		return client_fatal(c, "53200", "out of memory keeping the startup settings", NULL);
	c->params = *params;
	*params = PARAMS_EMPTY;
	if (vet_key(sequence, &c->vet_key) < 0)
		return client_fatal(c, "53200", "out of memory keeping the startup settings", NULL);
	if (p->have_base)
		return client_welcome(c);
	if (pool_refuses_clients(p))
		return client_fatal(c, p->last_sqlstate, p->last_error, NULL);
	client_set_state(c, CLIENT_LOGIN_WAIT);
	pool_want_servers(p);
}

/* The reported settings as PostgreSQL spelled them replace the client's spelling. */
static int take_canonical(struct client *c, const struct vet_answer *answer)
{
	const struct param_set *canonical = &answer->canonical;

	for (const char *n = params_first(canonical); n; n = params_next(canonical, n))
		if (params_put(&c->params, n, params_value(n)) < 0 || params_put(&c->startup, n, params_value(n)) < 0)
			return -1;
	return 0;
}

/*
 * The pool knows its backends' settings. A client whose startup settings a
 * backend already checked (or that has none to check) is answered now;
 * another takes a lease first, and lease_grant() has the backend check
 * them: client_vetted() or client_login_refused() then.
 */
void client_welcome(struct client *c)
{
	const struct vet_answer *known = NULL;

	if (c->vet_key.len) {
		known = vet_cache_find(&c->pool->vetted, &c->vet_key);
		if (!known)
			return lease_enter(c);
		if (take_canonical(c, known) < 0)
			return client_fatal(c, "53200", "out of memory keeping the startup settings", NULL);
	}
	client_set_state(c, CLIENT_IDLE);
	if (login_reply(c, known) == 0)
		client_dispatch(c);
}

/* The leased backend checked the settings: answer the login, then use the lease for what came already, or end it. */
void client_vetted(struct client *c, const struct vet_answer *answer)
{
	struct server *s = client_server(c);

	assert(c->state == CLIENT_ACTIVE && s && !c->welcomed);
	if (take_canonical(c, answer) < 0)
		return client_fatal(c, "53200", "out of memory keeping the startup settings", NULL);
	if (login_reply(c, answer) < 0)
		return;
	if (c->in && !iobuf_is_empty(c->in))
		return lease_setup(c, s);
	lease_exit(c, EXIT_TX_DONE);
	client_dispatch(c);
}

/* As a direct login that PostgreSQL refuses a setting of: AuthenticationOk, notices, then FATAL. */
void client_login_refused(struct client *c, const struct vet_answer *answer, const char *sqlstate,
			  const char *message, const char *detail, const char *hint)
{
	static uint8_t buf[2048 + 4 * STARTUP_MAX_LEN];
	struct wbuf w;

	if (c->lease)
		lease_exit(c, c->lease->close_why);
	wbuf_init(&w, buf, sizeof(buf));
	proto_auth_ok(&w);
	if (answer->notices_len)
		wbuf_bytes(&w, answer->notices, answer->notices_len);
	proto_error(&w, "FATAL", sqlstate, message, detail, hint);
	if (!w.overflow)
		client_send(c, buf, w.len);
	client_close(c, "startup setting refused by the backend: %s (SQLSTATE %s)", message, sqlstate);
}

