/*
 * session.c — a client's session state across the backends it leases.
 *
 * Two halves: ParameterStatus messages a backend sends during a lease update
 * both the client's wanted settings and the backend's applied ones, so the
 * next lease, on whichever backend, replays exactly what differs; and what
 * the client sends is watched (pin.c) so that state no backend switch could
 * carry keeps the client on its backend: until it leaves, or, for state a
 * query can see, until a probe finds none of it left.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client.h"
#include "env.h"
#include "log.h"
#include "pin.h"
#include "pool.h"
#include "server.h"
#include "session.h"

/* A pinned client is still watched while its pin may be lifted: for what lasts, and for releases. */
static bool watching(const struct client *c)
{
	return !c->pin_lasts && c->pool->mode == POOL_MODE_TRANSACTION && cfg->session_state == SESSION_STATE_PIN;
}

/* Plain '...' strings take backslash escapes when standard_conforming_strings is off. */
static bool backslash_quotes(struct client *c)
{
	if (!c->quotes_known) {
		const char *v = params_get(&c->params, "standard_conforming_strings");
		if (!v)
			v = params_get(&c->pool->base, "standard_conforming_strings");
		c->backslash_quotes = v && strcmp(v, "off") == 0;
		c->quotes_known = true;
	}
	return c->backslash_quotes;
}

/* Logged when the client becomes pinned, and again when a pinned client's pin comes to last. */
static void pinned(struct client *c, const char *why, const char *statement, bool lasts)
{
	struct server *s = client_server(c);

	/* What pins is on its way to the leased backend. */
	assert(s && c->state == CLIENT_ACTIVE);
	if (c->pinned && (c->pin_lasts || !lasts))
		return;
	if (!c->pinned)
		c->pool->stats.pins++;
	c->pinned = true;
	c->pin_lasts = lasts;
	log_info("client %u (%s/%s) pinned to server %d (backend pid %d) by: %s (%s%s)", c->id, c->pool->dbname,
		 c->pool->user, s->id, s->backend_pid, statement, why, lasts ? "; until it leaves" : "");
}

/*
 * Almost every piece the relay sends ends at a message boundary, where the
 * watcher holds no state: one scratch watcher serves them all, and a client
 * owns one only while a message of its is split between reads. An idle
 * client keeps no memory for this.
 */
static struct pin scratch;

static struct pin *watcher(struct client *c)
{
	if (c->pin)
		return c->pin;
	pin_init(&scratch, backslash_quotes(c));
	return &scratch;
}

/* Returns -1 when mid-message state could not be kept. */
static int keep_state(struct client *c, struct pin *p)
{
	if (pin_at_boundary(p) || c->pin_lasts) {
		free(c->pin);
		c->pin = NULL;
		return 0;
	}
	if (c->pin)
		return 0;
	if (!(c->pin = malloc(sizeof(*c->pin))))
		return -1;
	pin_move(c->pin, p);
	return 0;
}

void session_client_sends(struct client *c, const uint8_t *data, size_t n)
{
	if (n == 0 || !watching(c))
		return;
	assert(client_server(c) && server_client(client_server(c)) == c);
	struct pin *p = watcher(c);
	p->watch_releases = c->pinned;
	bool pin = pin_feed_wire(p, &c->pool->base, data, n);
	if (p->resets)
		client_server(c)->settings_unknown = true;
	/* Noted before any pin: a pg_try_advisory_lock pins, and may have taken nothing. */
	if (p->releases)
		c->probe_due = true;
	if (pin)
		pinned(c, pin_why(p), pin_statement(p), p->lasts);
	pin_clear(p);
	if (keep_state(c, p) < 0)
		pinned(c, "out of memory following a split message", "-", true);
}

bool session_inert(struct client *c, const uint8_t *data, size_t n)
{
	struct pin p;

	if (!watching(c))
		return true;
	pin_init(&p, backslash_quotes(c));
	bool pin = pin_feed_wire(&p, &c->pool->base, data, n);
	return !pin && !p.resets && pin_at_boundary(&p);
}

bool session_param_split(const struct frame_msg *m, const char **value)
{
	const char *name = (const char *)m->body;
	size_t len = m->len - 4;

	if (!name)
		return false;
	size_t nlen = strnlen(name, len);
	if (nlen + 1 >= len || strnlen(name + nlen + 1, len - nlen - 1) != len - nlen - 2)
		return false;
	*value = name + nlen + 1;
	return true;
}

void session_param_status(struct client *c, struct server *s, const struct frame_msg *m, bool to_client)
{
	const char *name = (const char *)m->body, *value;

	assert(!c || client_server(c) == s);
	if (!c || !session_param_split(m, &value) || !pin_setting_tracked(name, NULL))
		return;
	/* The backend has it either way; the client only if it is told. */
	if (to_client && params_put(&c->params, name, value) < 0)
		log_warning("client %u: out of memory tracking %s", c->id, name);
	/* What a backend has applied must never be wrong: its next lease starts from RESET ALL instead. */
	if (params_put(&s->applied, name, value) < 0)
		s->settings_unknown = true;
	if (strcasecmp(name, "standard_conforming_strings") == 0) {
		c->backslash_quotes = strcmp(value, "off") == 0;
		c->quotes_known = true;
		if (c->pin)
			c->pin->lx.backslash_quotes = c->backslash_quotes;
	}
}

void session_backend_error(struct client *c)
{
	/* The statement that pinned may have failed, or its transaction is to roll back. */
	if (c && c->pinned)
		c->probe_due = true;
}

bool session_probe_due(const struct client *c)
{
	return c->pinned && !c->pin_lasts && c->probe_due;
}

/*
 * One round trip, one row if anything is left: every kind of state a
 * probeable pin stands for. Objects of any kind in the temporary schema
 * depend on it (pg_depend), pg_class covering its relations twice over;
 * protocol-level statements (from_sql false) belong to the prepared-statement
 * layer. Names are schema-qualified: a temporary table shadows pg_catalog's.
 * A lock the probe would wait for (someone holds pg_class) fails it before
 * pglease's own limit on its queries (twice server_drain_timeout) would close
 * the backend: the client merely stays pinned.
 */
static const char probe_select[] =
	"SELECT 1 WHERE"
	" EXISTS (SELECT FROM pg_catalog.pg_locks"
	" WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid())"
	" OR EXISTS (SELECT FROM pg_catalog.pg_listening_channels())"
	" OR EXISTS (SELECT FROM pg_catalog.pg_class WHERE relnamespace = pg_catalog.pg_my_temp_schema())"
	" OR EXISTS (SELECT FROM pg_catalog.pg_depend"
	" WHERE refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass"
	" AND refobjid = pg_catalog.pg_my_temp_schema())"
	" OR EXISTS (SELECT FROM pg_catalog.pg_prepared_statements WHERE from_sql)"
	" OR EXISTS (SELECT FROM pg_catalog.pg_cursors WHERE is_holdable)";

const char *session_probe(struct client *c)
{
	static char sql[sizeof(probe_select) + 64];
	long lock_ms = (long)(cfg->server_drain_timeout * 1000);

	assert(session_probe_due(c));
	c->probe_due = false;
	/* In the probe's own implicit transaction: nothing outlives it. */
	snprintf(sql, sizeof(sql), "SET LOCAL lock_timeout = %ld; %s", lock_ms > 0 ? lock_ms : 1, probe_select);
	return sql;
}

bool session_probed(struct client *c, struct server *s, const char *error, bool state_left)
{
	const char *db = c->pool->dbname, *user = c->pool->user;

	assert(c->pinned && !c->pin_lasts && s == client_server(c));
	if (error) {
		log_warning("client %u (%s/%s): the session state probe on server %d (backend pid %d) failed: %s; "
			    "it stays pinned", c->id, db, user, s->id, s->backend_pid, error);
		return false;
	}
	if (state_left) {
		log_debug("client %u (%s/%s) stays pinned to server %d (backend pid %d): session state is left", c->id,
			  db, user, s->id, s->backend_pid);
		return false;
	}
	c->pinned = false;
	c->pool->stats.unpins++;
	log_debug("client %u (%s/%s) unpinned from server %d (backend pid %d): no session state left", c->id, db,
		  user, s->id, s->backend_pid);
	return true;
}

bool session_unpin(struct client *c, struct server *s)
{
	/* At the exit door, after the lease's two sides let go of each other. */
	assert(!c->lease && !server_client(s) && (!c->pin_lasts || c->pinned));
	c->probe_due = false;
	if (!c->pinned)
		return false;
	c->pinned = c->pin_lasts = false;
	log_info("client %u (%s/%s) leaves server %d (backend pid %d), pinned: resetting it before reuse", c->id,
		 c->pool->dbname, c->pool->user, s->id, s->backend_pid);
	return true;
}

int session_setup_sql(struct client *c, struct server *s, char *sql, int cap)
{
	static const char reset_all[] = "RESET ALL;";
	const int rlen = (int)sizeof(reset_all) - 1;

	assert(client_server(c) == s && server_client(s) == c);
	if (!s->settings_unknown)
		return params_equal(&c->params, &s->applied) ? 0 :
			params_diff_sql(&c->params, &s->applied, &s->pool->base, sql, cap);
	/* A client's RESET or DISCARD may have run, or been rolled back: start from the defaults. */
	if (cap <= rlen)
		return -1;
	int n = params_diff_sql(&c->params, &PARAMS_EMPTY, &s->pool->base, sql + rlen, cap - rlen);
	if (n < 0)
		return -1;
	memcpy(sql, reset_all, rlen);
	return n + rlen;
}

void session_free(struct client *c)
{
	free(c->pin);
	c->pin = NULL;
}
