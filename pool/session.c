/*
 * session.c — a client's session state across the backends it leases.
 *
 * Two halves: ParameterStatus messages a backend sends during a lease update
 * both the client's wanted settings and the backend's applied ones, so the
 * next lease, on whichever backend, replays exactly what differs; and what
 * the client sends is watched (pin.c) so that state no backend switch could
 * carry keeps the client on its backend until it leaves.
 */
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "client.h"
#include "daemon.h"
#include "log.h"
#include "pin.h"
#include "pool.h"
#include "server.h"
#include "session.h"

static bool watching(const struct client *c)
{
	return !c->pinned && c->pool->mode == POOL_MODE_TRANSACTION && cfg->session_state == SESSION_STATE_PIN;
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

static void pinned(struct client *c, const char *why, const char *statement)
{
	struct server *s = c->server;

	c->pinned = true;
	log_info("client %u (%s/%s) pinned to server %d (backend pid %d) by: %s (%s)", c->id, c->pool->dbname,
		 c->pool->user, s->id, s->backend_pid, statement, why);
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
	if (pin_at_boundary(p) || p->why) {
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
	struct pin *p = watcher(c);
	bool pin = pin_feed_wire(p, &c->pool->base, data, n);
	if (p->resets)
		c->server->settings_unknown = true;
	p->resets = false;
	if (pin)
		pinned(c, pin_why(p), pin_statement(p));
	if (keep_state(c, p) < 0)
		pinned(c, "out of memory following a split message", "-");
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

	if (!c || !session_param_split(m, &value) || !pin_setting_tracked(name, NULL))
		return;
	/* The backend has it either way; the client only if it is told. */
	if ((to_client && params_put(&c->params, name, value) < 0) || params_put(&s->applied, name, value) < 0)
		log_warning("client %u: out of memory tracking %s", c->id, name);
	if (strcasecmp(name, "standard_conforming_strings") == 0) {
		c->backslash_quotes = strcmp(value, "off") == 0;
		c->quotes_known = true;
		if (c->pin)
			c->pin->lx.backslash_quotes = c->backslash_quotes;
	}
}

bool session_unpin(struct client *c, struct server *s)
{
	if (!c->pinned)
		return false;
	c->pinned = false;
	log_info("client %u (%s/%s) leaves server %d (backend pid %d), pinned: resetting it before reuse", c->id,
		 c->pool->dbname, c->pool->user, s->id, s->backend_pid);
	return true;
}

int session_setup_sql(struct client *c, struct server *s, char *sql, int cap)
{
	static const char reset_all[] = "RESET ALL;";
	const int rlen = (int)sizeof(reset_all) - 1;

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
