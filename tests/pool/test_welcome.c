/*
 * test_welcome.c — Criterion tests for pool/welcome.c: how a login is
 * answered once the front end has authenticated the client.
 *
 * The pool is built as a live backend would have left it (it knows the
 * reported settings, pool->base) but paused, with no PostgreSQL behind it
 * (tests/lib/client_pair.h). The answer is compared byte for byte with the
 * messages of the protocol (AuthenticationOk, ParameterStatus,
 * BackendKeyData, ReadyForQuery), written out here independently of
 * base/proto.c. Only the order of the ParameterStatus messages is
 * pglease's own (pool_reported_params()): the protocol does not fix it.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "../lib/client_pair.h"
#include "client.h"
#include "params.h"
#include "pool.h"
#include "vet.h"

static void setup(void)
{
	pair_start(PAIR_INI);
}

TestSuite(welcome, .init = setup, .timeout = 10);

/* ---- the expected bytes ---- */

static const char *lookup(const char *const *pairs, const char *name)
{
	for (; pairs && *pairs; pairs += 2)
		if (strcasecmp(pairs[0], name) == 0)
			return pairs[1];
	return NULL;
}

static void put_param_status(struct bytes *b, const char *name, const char *value)
{
	struct bytes body = { .len = 0 };

	put_str(&body, name);
	put_str(&body, value);
	put_msg(b, 'S', body.data, body.len);
}

/*
 * A login answer: AuthenticationOk (R, length 8, code 0), the notices,
 * one ParameterStatus per setting the backend reports, with the client's
 * own value (`shown`) where it has one and PostgreSQL's spelling of the
 * name, BackendKeyData (K, length 12, id, key), ReadyForQuery (Z, 5, 'I').
 */
static void expect_welcome(struct bytes *b, const struct client *c, const char *const *shown,
			   const struct bytes *notices)
{
	int count;
	const char *const *order = pool_reported_params(&count);

	put_msg(b, 'R', "\0\0\0\0", 4);
	if (notices)
		put(b, notices->data, notices->len);
	for (int i = 0; i < count; i++) {
		const char *name = NULL;
		for (const char *const *kv = pair_base; *kv; kv += 2)
			if (strcasecmp(kv[0], order[i]) == 0)
				name = kv[0];
		if (!name)
			continue;
		const char *own = lookup(shown, name);
		put_param_status(b, name, own ? own : base_value(name));
	}
	uint8_t key[8] = {
		(uint8_t)(c->id >> 24),         (uint8_t)(c->id >> 16),         (uint8_t)(c->id >> 8),
		(uint8_t)c->id,                 (uint8_t)(c->cancel_key >> 24), (uint8_t)(c->cancel_key >> 16),
		(uint8_t)(c->cancel_key >> 8), (uint8_t)c->cancel_key,
	};
	put_msg(b, 'K', key, 8);
	put_msg(b, 'Z', "I", 1);
}

/* The client joins its pool as login.c hands it down, with these startup settings (in order). */
static void join(struct client *c, struct pool *p, const char *const *settings)
{
	struct param_set set, sequence;

	settings_of(settings, &set, &sequence);
	client_join(c, p->db, "app", p->user, &set, &sequence);
	cr_assert_null(set.data, "client_join did not take over the settings");
	params_free(&sequence);
}

/* The pool has already learnt what PostgreSQL makes of these settings (vet.h). */
static void learnt(struct pool *p, const char *const *settings, const char *const *canonical,
		   const struct bytes *notices)
{
	struct param_set set, sequence, key = PARAMS_EMPTY;
	struct vet_answer answer = { PARAMS_EMPTY, NULL, 0 };

	settings_of(settings, &set, &sequence);
	cr_assert_eq(vet_key(&sequence, &key), 0);
	cr_assert_gt(key.len, 0, "these settings need no backend: nothing to learn");
	for (; canonical && *canonical; canonical += 2)
		cr_assert_eq(params_put(&answer.canonical, canonical[0], canonical[1]), 0);
	if (notices) {
		answer.notices = malloc(notices->len);
		memcpy(answer.notices, notices->data, notices->len);
		answer.notices_len = (uint32_t)notices->len;
	}
	cr_assert_eq(vet_cache_add(&p->vetted, &key, &answer), 0);
	vet_answer_free(&answer);
	params_free(&key);
	params_free(&set);
	params_free(&sequence);
}

static bool on_list(struct list *l, const struct client *c)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, l)
		if (pos == &c->node)
			return true;
	return false;
}

static void assert_welcomed(int peer, struct client *c, const char *const *shown, const struct bytes *notices)
{
	struct bytes want = { .len = 0 };
	static struct wire w;

	memset(&w, 0, sizeof(w));
	expect_welcome(&want, c, shown, notices);
	wire_read(peer, &w);
	assert_bytes(w.data, w.len, want.data, want.len);
	cr_assert_not(w.eof);
	cr_assert(c->welcomed);
	cr_assert_eq(c->state, CLIENT_IDLE);
	cr_assert(on_list(&c->pool->clients, c), "a welcomed client is not on its pool's idle clients");
	cr_assert_eq(c->vet_key.len, 0, "a welcomed client keeps its vet key");
}

static void assert_nothing_sent(int peer)
{
	struct wire w = { .len = 0 };

	wire_read(peer, &w);
	cr_assert_eq(w.len, 0, "%zu bytes sent before the login could be answered", w.len);
	cr_assert_not(w.eof);
}

/* ---- answered at once ---- */

Test(welcome, no_settings_get_the_pools_values)
{
	int peer;
	struct pool *p = pair_pool("u");
	struct client *c = pair_accept(&peer);

	join(c, p, NULL);
	cr_assert_eq(c->pool, p);
	assert_welcomed(peer, c, NULL, NULL);
}

Test(welcome, a_setting_of_its_own_is_reported_in_place_of_the_pools)
{
	int peer;
	struct pool *p = pair_pool("u");
	struct client *c = pair_accept(&peer);
	const char *const settings[] = { "application_name", "billing", NULL };

	join(c, p, settings);
	assert_welcomed(peer, c, settings, NULL);
	cr_assert_str_eq(params_get(&c->params, "application_name"), "billing");
	cr_assert_str_eq(params_get(&c->startup, "application_name"), "billing");
	cr_assert(c->prep_on, "a transaction-mode client has no prepared-statement layer");
}

Test(welcome, two_clients_get_their_own_key)
{
	int peer1, peer2;
	struct pool *p = pair_pool("u");
	struct client *c1 = pair_accept(&peer1);
	struct client *c2 = pair_accept(&peer2);

	join(c1, p, NULL);
	join(c2, p, NULL);
	assert_welcomed(peer1, c1, NULL, NULL);
	assert_welcomed(peer2, c2, NULL, NULL);
	cr_assert_neq(c1->id, c2->id);
	cr_assert_eq(p->clients.count, 2);
}

/* ---- startup settings PostgreSQL has spelled before (the vet cache) ---- */

Test(welcome, known_settings_get_the_values_postgresql_gave)
{
	int peer;
	struct pool *p = pair_pool("u");
	struct client *c = pair_accept(&peer);
	const char *const settings[] = { "TimeZone", "asia/tokyo", "DateStyle", "iso,dmy", "application_name", "a",
					 NULL };
	const char *const canonical[] = { "TimeZone", "Asia/Tokyo", "DateStyle", "ISO, DMY", NULL };
	const char *const shown[] = { "TimeZone", "Asia/Tokyo", "DateStyle", "ISO, DMY", "application_name", "a",
				      NULL };

	learnt(p, settings, canonical, NULL);
	join(c, p, settings);
	assert_welcomed(peer, c, shown, NULL);
	/* Spelled as PostgreSQL did: what RESET returns to, and what the next lease applies. */
	cr_assert_str_eq(params_get(&c->params, "timezone"), "Asia/Tokyo");
	cr_assert_str_eq(params_get(&c->startup, "datestyle"), "ISO, DMY");
	cr_assert_eq(p->waiting.count, 0, "a known list of settings took a lease");
}

Test(welcome, a_setting_the_server_does_not_report_is_not_reported)
{
	int peer;
	struct pool *p = pair_pool("u");
	struct client *c = pair_accept(&peer);
	const char *const settings[] = { "search_path", "billing, public", NULL };

	learnt(p, settings, NULL, NULL);
	join(c, p, settings);
	assert_welcomed(peer, c, NULL, NULL);
	cr_assert_str_eq(params_get(&c->params, "search_path"), "billing, public");
}

Test(welcome, the_notices_the_settings_raised_follow_authentication_ok)
{
	int peer;
	struct pool *p = pair_pool("u");
	struct client *c = pair_accept(&peer);
	char name64[65], name63[64];
	struct bytes notice = { .len = 0 }, fields = { .len = 0 };

	memset(name64, 'n', 64);
	name64[64] = '\0';
	memcpy(name63, name64, 63);
	name63[63] = '\0';
	const char *const settings[] = { "application_name", name64, NULL };
	const char *const canonical[] = { "application_name", name63, NULL };
	char message[200];
	snprintf(message, sizeof(message), "identifier \"%s\" will be truncated to \"%s\"", name64, name63);
	put(&fields, "SNOTICE", 8);
	put(&fields, "VNOTICE", 8);
	put(&fields, "C42622", 7);
	put(&fields, "M", 1);
	put_str(&fields, message);
	put(&fields, "", 1);
	put_msg(&notice, 'N', fields.data, fields.len);

	learnt(p, settings, canonical, &notice);
	join(c, p, settings);
	assert_welcomed(peer, c, canonical, &notice);
}

/* ---- not answered yet ---- */

Test(welcome, unknown_settings_wait_for_a_backend_to_check_them)
{
	int peer;
	struct pool *p = pair_pool("u");
	struct client *c = pair_accept(&peer);
	const char *const settings[] = { "TimeZone", "asia/tokyo", NULL };

	join(c, p, settings);
	/* A lease comes first: the pool is paused, so it queues. */
	cr_assert_eq(c->state, CLIENT_WAITING);
	cr_assert_not(c->welcomed);
	cr_assert_str_eq(params_first(&c->vet_key), "TimeZone");
	assert_nothing_sent(peer);
	/* Until welcomed, its BackendKeyData is nobody's: nothing cancels it by accident. */
}

Test(welcome, a_pool_without_a_backend_yet_holds_the_login)
{
	int peer;
	struct pool *p = pair_pool("u");
	struct client *c = pair_accept(&peer);
	struct bytes query = { .len = 0 };

	/* The pool has not seen a backend: it opens none here (size 0), so the login waits. */
	p->have_base = false;
	p->size = 0;
	join(c, p, NULL);
	cr_assert_eq(c->state, CLIENT_LOGIN_WAIT);
	cr_assert_eq(p->login_wait.count, 1);
	assert_nothing_sent(peer);

	/* A Query sent right after the startup packet waits too. */
	put_query(&query, "SELECT 1");
	peer_send(peer, query.data, query.len);
	pair_spin();
	cr_assert_not_null(c->in);
	cr_assert_eq(c->in->end - c->in->start, query.len);

	/* The first backend reported its settings (pool_server_connected). */
	p->have_base = true;
	client_welcome(c);
	static struct wire w;
	struct bytes want = { .len = 0 };
	expect_welcome(&want, c, NULL, NULL);
	wire_read(peer, &w);
	assert_bytes(w.data, w.len, want.data, want.len);
	/* ... and its Query is dispatched: it asks for a lease (the pool is paused). */
	cr_assert_eq(c->state, CLIENT_WAITING);
	cr_assert_eq(p->login_wait.count, 0);
	cr_assert_eq(memcmp(c->in->data + c->in->start, query.data, query.len), 0);
}

Test(welcome, a_pool_that_cannot_connect_fails_the_login_with_its_error)
{
	int peer;
	struct pool *p = pair_pool("u");
	struct client *c = pair_accept(&peer);
	static struct wire w;

	p->have_base = false;
	p->last_error = strdup("connection to server failed: No such file or directory");
	snprintf(p->last_sqlstate, sizeof(p->last_sqlstate), "08006");
	p->retry_after = ev_now(loop) + 10;
	join(c, p, NULL);
	cr_assert_eq(c->state, CLIENT_CLOSED);
	wire_read(peer, &w);
	struct msg m = wire_expect(&w, 'E');
	assert_error(&m, "FATAL", "08006", "connection to server failed: No such file or directory", NULL);
	cr_assert(w.eof);
}

/* ---- refused ---- */

Test(welcome, a_setting_postgresql_refuses_fails_the_login_after_authentication_ok)
{
	int peer;
	struct pool *p = pair_pool("u");
	struct client *c = pair_accept(&peer);
	const char *const settings[] = { "TimeZone", "Nowhere/Bogus", NULL };
	struct vet_answer answer = { PARAMS_EMPTY, NULL, 0 };
	static struct wire w;

	join(c, p, settings);
	cr_assert_eq(c->state, CLIENT_WAITING);
	client_login_refused(c, &answer, "22023", "invalid value for parameter \"TimeZone\": \"Nowhere/Bogus\"", NULL,
			     NULL);
	cr_assert_eq(c->state, CLIENT_CLOSED);
	cr_assert_eq(p->waiting.count, 0);
	wire_read(peer, &w);
	struct msg auth = wire_expect(&w, 'R');
	cr_assert_eq(auth.len, 8);
	cr_assert_eq(get32(auth.body), 0);
	struct msg m = wire_expect(&w, 'E');
	assert_error(&m, "FATAL", "22023", "invalid value for parameter \"TimeZone\": \"Nowhere/Bogus\"", NULL);
	cr_assert_eq(w.at, w.len, "more after the FATAL");
	cr_assert(w.eof);
}
