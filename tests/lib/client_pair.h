/*
 * client_pair.h — what the unit tests of a client's life (tests/pool,
 * tests/daemon) run in: libev's default loop, a running config loaded from
 * a temporary file, clients whose socket is one end of a socketpair(2),
 * and the other end (the peer) that writes as a PostgreSQL client would
 * and reads what pglease answered, message by message.
 *
 * Header only: each test binary is one file. Criterion runs every test in
 * a process of its own, so the loop, the lists and the counters start
 * empty in each, and nothing a test leaves behind reaches the next one.
 * There is no PostgreSQL here: a test pool is paused, so a client that
 * wants a lease queues (WAITING) and no backend is ever opened.
 */
#ifndef PGLEASE_TEST_CLIENT_PAIR_H
#define PGLEASE_TEST_CLIENT_PAIR_H

#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>
#include <sys/socket.h>

#include "client.h"
#include "config.h"
#include "env.h"
#include "log.h"
#include "pool.h"

/* A config with one database, "app", whose backends are never reached. */
#define PAIR_INI_DATABASES "[databases]\napp = host=/nonexistent/pglease-unit dbname=app\n"
#define PAIR_INI "[pglease]\nauth_type = trust\n" PAIR_INI_DATABASES

/*
 * Load ini as the running config, on libev's default loop. A test may load
 * its own over the suite's, before it makes pools (they point into it).
 */
static inline const struct config *pair_start(const char *ini)
{
	static struct config *loaded;

	char path[] = "/tmp/pglease-unit-XXXXXX";
	int fd = mkstemp(path);
	char *errors = NULL;

	cr_assert_geq(fd, 0, "mkstemp: %s", strerror(errno));
	cr_assert_eq(write(fd, ini, strlen(ini)), (ssize_t)strlen(ini));
	close(fd);
	struct config *c = config_load(path, &errors);
	unlink(path);
	cr_assert_not_null(c, "the test config does not load:\n%s", errors ? errors : "");
	cr_assert(list_empty(&all_pools), "a config replaced under a pool");
	config_free(loaded);
	cfg = loaded = c;
	loop = ev_default_loop(0);
	log_set_level(LOG_WARNING);
	return c;
}

/* A new client, accepted as the listener accepts one (nonblocking); *peer is the other end. */
static inline struct client *pair_accept(int *peer)
{
	int sv[2];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
	int before = login_clients.count;
	client_accept(sv[0], false, NULL, 0);
	cr_assert_eq(login_clients.count, before + 1, "client_accept did not put the client on login_clients");
	*peer = sv[1];
	return list_entry(list_last(&login_clients), struct client, node);
}

/* Let the loop handle whatever is ready, without blocking. */
static inline void pair_spin(void)
{
	for (int i = 0; i < 8; i++)
		ev_run(loop, EVRUN_NOWAIT);
}

static inline void peer_send(int peer, const void *data, size_t len)
{
	cr_assert_eq(send(peer, data, len, MSG_NOSIGNAL), (ssize_t)len, "the peer could not send %zu bytes", len);
}

/* ---- what the peer received ---- */

struct wire {
	uint8_t data[1 << 17];
	size_t len;       /* received */
	size_t at;        /* parsed up to */
	bool eof;         /* the client's socket was closed */
};

/* Run the loop, then take every byte that has arrived; note the end of the stream. */
static inline void wire_read(int peer, struct wire *w)
{
	pair_spin();
	for (;;) {
		cr_assert_lt(w->len, sizeof(w->data), "the peer received more than the test expects");
		ssize_t n = recv(peer, w->data + w->len, sizeof(w->data) - w->len, 0);
		if (n > 0) {
			w->len += (size_t)n;
			continue;
		}
		if (n == 0)
			w->eof = true;
		else
			cr_assert(errno == EAGAIN || errno == EWOULDBLOCK, "recv: %s", strerror(errno));
		return;
	}
}

struct msg {
	char type;
	uint32_t len;          /* as in the header: the body plus 4 */
	const uint8_t *body;
};

static inline uint32_t get32(const uint8_t *p)
{
	return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}

/* The next whole message the peer received, or false when there is none (yet). */
static inline bool wire_next(struct wire *w, struct msg *m)
{
	if (w->len - w->at < 5)
		return false;
	m->type = (char)w->data[w->at];
	m->len = get32(w->data + w->at + 1);
	cr_assert_geq(m->len, 4, "message '%c' with length %u", m->type, m->len);
	if (w->len - w->at - 1 < m->len)
		return false;
	m->body = w->data + w->at + 5;
	w->at += 1 + m->len;
	return true;
}

/* The next message, which must be there and of this type. */
static inline struct msg wire_expect(struct wire *w, char type)
{
	struct msg m;

	cr_assert(wire_next(w, &m), "expected a '%c' message, got nothing (%zu unparsed bytes)", type,
		  w->len - w->at);
	cr_assert_eq(m.type, type, "expected a '%c' message, got '%c'", type, m.type);
	return m;
}

/* A field of an ErrorResponse or NoticeResponse, or NULL. */
static inline const char *msg_field(const struct msg *m, char code)
{
	const char *p = (const char *)m->body, *end = (const char *)m->body + m->len - 4;

	while (p < end && *p) {
		const char *value = p + 1;
		size_t n = strnlen(value, (size_t)(end - value));
		cr_assert_lt(value + n, end, "unterminated field '%c'", *p);
		if (*p == code)
			return value;
		p = value + n + 1;
	}
	cr_assert_eq(p, end - 1, "the fields do not end with the terminator at the message's end");
	return NULL;
}

/* An ErrorResponse with these fields (detail may be NULL: then there must be none). */
static inline void assert_error(const struct msg *m, const char *severity, const char *sqlstate,
				const char *message, const char *detail)
{
	cr_assert_eq(m->type, 'E', "expected an ErrorResponse, got '%c'", m->type);
	cr_assert_str_eq(msg_field(m, 'S'), severity);
	cr_assert_str_eq(msg_field(m, 'V'), severity);
	cr_assert_str_eq(msg_field(m, 'C'), sqlstate);
	cr_assert_str_eq(msg_field(m, 'M'), message);
	if (detail)
		cr_assert_str_eq(msg_field(m, 'D'), detail);
	else
		cr_assert_null(msg_field(m, 'D'));
}

/* ---- bytes a test expects, or sends ---- */

struct bytes {
	uint8_t data[16384];
	size_t len;
};

static inline void put(struct bytes *b, const void *p, size_t n)
{
	cr_assert_leq(b->len + n, sizeof(b->data));
	memcpy(b->data + b->len, p, n);
	b->len += n;
}

static inline void put32(struct bytes *b, uint32_t v)
{
	uint8_t x[4] = { (uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v };
	put(b, x, 4);
}

static inline void put_str(struct bytes *b, const char *s)
{
	put(b, s, strlen(s) + 1);
}

/* A message: type, length, body. */
static inline void put_msg(struct bytes *b, char type, const void *body, size_t n)
{
	put(b, &type, 1);
	put32(b, (uint32_t)n + 4);
	if (n)
		put(b, body, n);
}

/* A Query message. */
static inline void put_query(struct bytes *b, const char *sql)
{
	put_msg(b, 'Q', sql, strlen(sql) + 1);
}

/* A startup-phase packet: length, version, then name/value pairs (NULL-ended) and the terminator. */
static inline void put_startup(struct bytes *b, uint32_t version, const char *const *pairs)
{
	size_t at = b->len;

	put32(b, 0);
	put32(b, version);
	for (; pairs && *pairs; pairs++)
		put_str(b, *pairs);
	put(b, "", 1);
	uint32_t len = (uint32_t)(b->len - at);
	uint8_t x[4] = { (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len };
	memcpy(b->data + at, x, 4);
}

/* The first offset where two byte strings differ, for messages that say where. */
static inline size_t first_difference(const void *got, size_t alen, const void *want, size_t blen)
{
	const uint8_t *a = got, *b = want;
	size_t i = 0;

	while (i < alen && i < blen && a[i] == b[i])
		i++;
	return i;
}

#define assert_bytes(got, got_len, want, want_len)                                                       \
	cr_assert((got_len) == (want_len) && memcmp((got), (want), (want_len)) == 0,                     \
		  "bytes differ: %zu received, %zu expected, first difference at offset %zu", (size_t)(got_len), \
		  (size_t)(want_len), first_difference((got), (got_len), (want), (want_len)))

/* ---- a pool without PostgreSQL ---- */

/* What a PostgreSQL 15 backend reports at startup (no search_path: it is not reported). */
static const char *const pair_base[] = {
	"application_name", "",
	"client_encoding", "UTF8",
	"DateStyle", "ISO, MDY",
	"default_transaction_read_only", "off",
	"in_hot_standby", "off",
	"integer_datetimes", "on",
	"IntervalStyle", "postgres",
	"is_superuser", "on",
	"server_encoding", "UTF8",
	"server_version", "15.5",
	"session_authorization", "postgres",
	"standard_conforming_strings", "on",
	"TimeZone", "Etc/UTC",
	NULL,
};

static inline const char *base_value(const char *name)
{
	for (const char *const *p = pair_base; *p; p += 2)
		if (strcasecmp(p[0], name) == 0)
			return p[1];
	return NULL;
}

/*
 * The pool of (app, user) as a live backend would have left it: it knows
 * the reported settings (have_base). Paused, so that a lease request
 * queues instead of opening a backend.
 */
static inline struct pool *pair_pool(const char *user)
{
	struct pool *p = pool_find_or_create(config_find_db(cfg, "app"), "app", user);

	cr_assert_not_null(p);
	for (const char *const *kv = pair_base; *kv; kv += 2)
		cr_assert_eq(params_put(&p->base, kv[0], kv[1]), 0);
	p->have_base = true;
	cr_assert_eq(pool_pause_db("app"), 0);
	return p;
}

/* The startup settings of a client as the parser hands them over: a set and the list in order. */
static inline void settings_of(const char *const *pairs, struct param_set *set, struct param_set *sequence)
{
	*set = *sequence = PARAMS_EMPTY;
	for (; pairs && *pairs; pairs += 2) {
		cr_assert_eq(params_append(sequence, pairs[0], pairs[1]), 0);
		cr_assert_eq(params_put(set, pairs[0], pairs[1]), 0);
	}
}

/* A client logged in to pool p (as login.c hands one down), its welcome read by the peer. */
static inline struct client *pair_logged_in(struct pool *p, int *peer, const char *const *settings)
{
	struct client *c = pair_accept(peer);
	struct param_set set, sequence;
	struct wire w = { .len = 0 };

	settings_of(settings, &set, &sequence);
	client_join(c, p->db, p->dbname, p->user, &set, &sequence);
	params_free(&set);
	params_free(&sequence);
	cr_assert_eq(c->state, CLIENT_IDLE, "the client was not welcomed (state %d)", c->state);
	wire_read(*peer, &w);
	struct msg m;
	while (wire_next(&w, &m))
		if (m.type == 'Z')
			return c;
	cr_assert_fail("no ReadyForQuery in the welcome");
	return c;
}

#endif
