/*
 * auth.c — client authentication: which method a client gets, and the md5
 * and SCRAM-SHA-256 exchanges with PostgreSQL's messages and words.
 *
 * A client in CLIENT_LOGIN whose method needs a password gets a struct
 * auth_conn (c->auth) and moves through these steps:
 *
 *   UNLISTED     just started, or refused and waiting to be freed
 *   WAIT_SECRET  its secret is being found: a user missing from auth_file
 *                (lookup_missing_user(): auth_query, pool/authq.c), or a
 *                plain-text secret's SCRAM keys being derived on the worker
 *                thread (shared by every login of that user). Its input is
 *                not read meanwhile.
 *   MD5          AuthenticationMD5Password sent; waits for a PasswordMessage
 *   SASL_INIT    AuthenticationSASL sent; waits for SASLInitialResponse
 *   SASL_FIRST   ... it came without data: waits for the client-first-message
 *   SASL_FINAL   AuthenticationSASLContinue sent; waits for the client-final-message
 *   DELAYED      it failed: held for auth_failure_delay (one timer for all
 *                of them), its input discarded, then FATAL
 *
 * Success sends AuthenticationSASLFinal (SCRAM) and hands the client back
 * to login_finish(), which answers AuthenticationOk and the rest.
 *
 * As PostgreSQL (auth.c, auth-sasl.c, auth-scram.c): method md5 with a
 * SCRAM secret runs SCRAM; method scram-sha-256 with an md5 secret, a user
 * without a secret and an unknown user run the exchange against a mock
 * secret and fail at its end like a wrong password (28P01), with the
 * reason only in the log.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <ev.h>
#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "auth.h"
#include "authq.h"
#include "client.h"
#include "daemon.h"
#include "hba.h"
#include "list.h"
#include "listener.h"
#include "log.h"
#include "login.h"
#include "md5auth.h"
#include "proto.h"
#include "scram.h"
#include "startup.h"
#include "tls.h"
#include "userlist.h"
#include "worker.h"

/* PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH: the longest password/SASL message it reads. */
#define AUTH_MSG_MAX 65535u
#define AUTH_REQ_MD5 5
#define AUTH_REQ_SASL 10
#define AUTH_REQ_SASL_CONT 11
#define AUTH_REQ_SASL_FIN 12
#define DERIVED_SALT_LEN 16     /* PostgreSQL's SCRAM_DEFAULT_SALT_LEN, and scram_secret_mock()'s */
#define DERIVED_CACHE_MAX 1024  /* users whose derived SCRAM keys are kept */
#define SQLSTATE_PROTOCOL "08P01"
#define SQLSTATE_PASSWORD "28P01"
#define SQLSTATE_AUTHZ "28000"

/* ---- the running files */

struct auth_files {
	struct userlist *users;   /* NULL: no auth_file */
	struct hba *hba;          /* NULL: no auth_hba_file */
};

static struct auth_files *running;

/* A relative path is taken from the config file's folder: a daemon's cwd is /. */
static char *resolve(const struct config *c, const char *path)
{
	const char *slash = strrchr(c->path, '/');
	char *out = NULL;

	if (path[0] == '/' || path[0] == '\0' || !slash)
		return strdup(path);
	if (asprintf(&out, "%.*s/%s", (int)(slash - c->path), c->path, path) < 0)
		return NULL;
	return out;
}

static void add_errors(char **all, const char *more)
{
	char *joined = NULL;

	if (asprintf(&joined, "%s%s", *all ? *all : "", more) < 0)
		return;
	free(*all);
	*all = joined;
}

/* Password lines with no secrets anywhere (no auth_file, no auth_user to look them up). */
static void warn_no_secrets(const struct auth_files *f, const struct config *c, const char *hba_path)
{
	if (*c->auth_user)
		return;
	for (int i = 0; f->hba && !f->users && i < f->hba->count; i++) {
		const struct hba_rule *r = &f->hba->rules[i];
		if (r->method == HBA_MD5 || r->method == HBA_SCRAM) {
			log_warning("%s:%d: %s without auth_file or auth_user: every login this line decides will fail",
				    hba_path, r->line, hba_method_name(r->method));
			return;
		}
	}
}

struct auth_files *auth_files_load(const struct config *c, char **errors)
{
	struct auth_files *f = calloc(1, sizeof(*f));
	char *users_path = resolve(c, c->auth_file), *hba_path = resolve(c, c->auth_hba_file);
	char *all = NULL, *err = NULL;

	if (!f || !users_path || !hba_path) {
		add_errors(&all, "out of memory loading auth_file and auth_hba_file\n");
		goto fail;
	}
	if (*users_path && !(f->users = userlist_load(users_path, &err)))
		add_errors(&all, err ? err : "out of memory loading auth_file\n");
	free(err);
	err = NULL;
	if (*hba_path && !(f->hba = hba_load(hba_path, &err)))
		add_errors(&all, err ? err : "out of memory loading auth_hba_file\n");
	free(err);
	if (all)
		goto fail;
	warn_no_secrets(f, c, hba_path);
	free(users_path);
	free(hba_path);
	*errors = NULL;
	return f;
fail:
	auth_files_free(f);
	free(users_path);
	free(hba_path);
	*errors = all;
	return NULL;
}

void auth_files_free(struct auth_files *f)
{
	if (!f)
		return;
	userlist_free(f->users);
	hba_free(f->hba);
	free(f);
}

/* ---- derived SCRAM keys for plain-text secrets, shared by a login storm */

/*
 * PBKDF2 costs about a millisecond per 4096 iterations, so it runs on the
 * worker thread once per (user, password) and is kept until a reload. The
 * logins waiting for it hang on the entry.
 */
struct derived {
	struct list_node node;    /* on derived_cache while current */
	char *user, *password;    /* the key; the password is wiped when freed */
	bool ready, failed;
	bool stale;               /* dropped by a reload while its job ran: freed by the job */
	struct scram_secret secret;
	struct list waiters;      /* auth_conn.wait_node */
};

struct derive_job {
	struct job job;           /* first: the worker hands this back */
	struct derived *entry;    /* only done() touches it */
	char *password;           /* run()'s own copy */
	uint8_t salt[DERIVED_SALT_LEN];
	struct scram_secret out;
	int rc;
};

static struct list derived_cache = { { &derived_cache.head, &derived_cache.head }, 0 };

/*
 * A per-process random key. A user's SCRAM salt, whether it is missing
 * (the mock secret) or has a plain-text secret (derived keys), is made
 * from it and the user name: the same on every try and across reloads, so
 * the salt never tells a missing user from a listed one, and no one can
 * predict it.
 */
static uint8_t mock_key[SCRAM_KEY_LEN];

static int user_salt(const char *user, uint8_t salt[DERIVED_SALT_LEN])
{
	struct scram_secret mock;

	if (scram_secret_mock(user, mock_key, &mock) < 0 || mock.salt_len != DERIVED_SALT_LEN)
		return -1;
	memcpy(salt, mock.salt, DERIVED_SALT_LEN);
	OPENSSL_cleanse(&mock, sizeof(mock));
	return 0;
}

static void derived_free(struct derived *d)
{
	assert(list_empty(&d->waiters));
	OPENSSL_cleanse(&d->secret, sizeof(d->secret));
	if (d->password)
		OPENSSL_cleanse(d->password, strlen(d->password));
	free(d->user);
	free(d->password);
	free(d);
}

/* A reload may have changed any password: derive again from the new file. */
static void derived_invalidate(void)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &derived_cache) {
		struct derived *d = list_entry(pos, struct derived, node);
		list_remove(&derived_cache, pos);
		if (d->ready || d->failed)
			derived_free(d);
		else
			d->stale = true;
	}
}

static struct derived *derived_find(const char *user, const char *password)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &derived_cache) {
		struct derived *d = list_entry(pos, struct derived, node);
		if (strcmp(d->user, user) == 0 && strcmp(d->password, password) == 0)
			return d;
	}
	return NULL;
}

/* Keeps the cache bounded: the least recently used finished entry goes. */
static void derived_trim(void)
{
	struct list_node *pos = list_last(&derived_cache);

	while (derived_cache.count >= DERIVED_CACHE_MAX && pos && pos != &derived_cache.head) {
		struct list_node *prev = pos->prev;
		struct derived *d = list_entry(pos, struct derived, node);
		if (d->ready || d->failed) {
			list_remove(&derived_cache, pos);
			derived_free(d);
		}
		pos = prev;
	}
}

static void derive_run(struct job *job)
{
	struct derive_job *dj = (struct derive_job *)job;

	dj->rc = scram_secret_from_password(dj->password, dj->salt, sizeof(dj->salt),
					    SCRAM_DEFAULT_ITERATIONS, &dj->out);
}

static void derived_done(struct derived *d);

static void derive_finished(struct job *job)
{
	struct derive_job *dj = (struct derive_job *)job;
	struct derived *d = dj->entry;

	/* Once per user and password until a reload, however many logins wait: the log shows a storm's cost. */
	log_info("SCRAM keys for \"%s\" derived from its plain-text auth_file secret", d->user);
	d->ready = dj->rc == 0;
	d->failed = dj->rc != 0;
	d->secret = dj->out;
	OPENSSL_cleanse(&dj->out, sizeof(dj->out));
	OPENSSL_cleanse(dj->password, strlen(dj->password));
	free(dj->password);
	free(dj);
	derived_done(d);
	if (d->stale)
		derived_free(d);
}

/* NULL when out of memory; otherwise an entry, maybe still being derived. */
static struct derived *derived_get(const char *user, const char *password)
{
	struct derived *d = derived_find(user, password);

	if (d) {
		list_remove(&derived_cache, &d->node);
		list_push_head(&derived_cache, &d->node);
		return d;
	}
	derived_trim();
	d = calloc(1, sizeof(*d));
	struct derive_job *dj = calloc(1, sizeof(*dj));
	if (!d || !dj || !(d->user = strdup(user)) || !(d->password = strdup(password)) ||
	    !(dj->password = strdup(password)) || user_salt(user, dj->salt) < 0) {
		if (dj)
			free(dj->password);
		free(dj);
		if (d) {
			list_init(&d->waiters);
			derived_free(d);
		}
		return NULL;
	}
	list_init(&d->waiters);
	list_push_head(&derived_cache, &d->node);
	dj->entry = d;
	dj->job.run = derive_run;
	dj->job.done = derive_finished;
	worker_submit(&dj->job);
	return d;
}

/* ---- one client's exchange */

/* UNLISTED: starting, or refused and on no list (freed with the client). */
enum auth_step { UNLISTED, WAIT_SECRET, MD5, SASL_INIT, SASL_FIRST, SASL_FINAL, DELAYED };

struct auth_conn {
	struct client *client;
	struct startup startup;         /* taken over from login.c, handed back on success */
	enum auth_step step;
	enum hba_method method;         /* HBA_MD5 or HBA_SCRAM: what the hba line or auth_type asked */
	int hba_line;                   /* the deciding line, for the log; 0 with auth_type */
	struct list_node wait_node;     /* on missing_users, a derived entry's waiters, or delayed */
	struct derived *deriving;       /* WAIT_SECRET on a derivation */
	struct authq_request *lookup;   /* WAIT_SECRET on auth_query (pool/authq.c) */
	bool doomed;                    /* fails at the end whatever the client proves */
	char doom_why[160];             /* ... and why, for the log (a copy: a lookup's answer is transient) */
	char *md5_secret;               /* MD5: a copy of the plain or md5 secret (wiped) */
	uint8_t md5_salt[4];
	struct scram_secret secret;     /* SCRAM: copied before the exchange, so a reload cannot touch it */
	struct scram_state *scram;      /* from SASLInitialResponse on */
	ev_tstamp fatal_at;             /* DELAYED */
	const char *fatal_sqlstate;
	char fatal_message[256];
};

static struct list missing_users = { { &missing_users.head, &missing_users.head }, 0 };
static ev_idle missing_idle;
static struct list delayed = { { &delayed.head, &delayed.head }, 0 };
static ev_timer delay_timer;

static void secret_known(struct auth_conn *a, const struct user_secret *us);

bool auth_pending(const struct client *c)
{
	return c->auth != NULL;
}

/* Off the list it hangs on, whichever that is. */
static void unhang(struct auth_conn *a)
{
	if (a->step == WAIT_SECRET && a->deriving) {
		list_remove(&a->deriving->waiters, &a->wait_node);
		a->deriving = NULL;
	} else if (a->step == WAIT_SECRET && a->lookup) {
		authq_cancel(a->lookup);
		a->lookup = NULL;
	} else if (a->step == WAIT_SECRET) {
		list_remove(&missing_users, &a->wait_node);
	} else if (a->step == DELAYED) {
		list_remove(&delayed, &a->wait_node);
	}
}

static void conn_free(struct auth_conn *a)
{
	unhang(a);
	if (a->md5_secret) {
		OPENSSL_cleanse(a->md5_secret, strlen(a->md5_secret));
		free(a->md5_secret);
	}
	if (a->scram)
		OPENSSL_cleanse(a->scram, sizeof(*a->scram));
	free(a->scram);
	OPENSSL_cleanse(&a->secret, sizeof(a->secret));
	startup_free(&a->startup);
	free(a);
}

void auth_release(struct client *c)
{
	if (!c->auth)
		return;
	conn_free(c->auth);
	c->auth = NULL;
}

/* ---- what the client is told */

static void send_auth_request(struct client *c, uint32_t code, const void *data, size_t len)
{
	uint8_t buf[SCRAM_MSG_MAX + 64];
	struct wbuf w;

	wbuf_init(&w, buf, sizeof(buf));
	size_t mark = wbuf_begin(&w, 'R');
	wbuf_int32(&w, code);
	wbuf_bytes(&w, data, len);
	wbuf_end(&w, mark);
	assert(!w.overflow);
	client_send(c, buf, w.len);
}

/* Authenticated: give the startup packet back to login.c. */
static void succeed(struct auth_conn *a)
{
	struct client *c = a->client;
	struct startup st = a->startup;

	log_debug("client %u: %s authentication of \"%s\" succeeded", c->id,
		  hba_method_name(a->scram ? HBA_SCRAM : HBA_MD5), st.user);
	memset(&a->startup, 0, sizeof(a->startup));
	auth_release(c);
	login_finish(c, &st);
	startup_free(&st);
}

/* A broken exchange: FATAL at once, as PostgreSQL's ERROR during authentication. */
static void protocol_fail(struct auth_conn *a, const char *sqlstate, const char *message, const char *detail)
{
	struct client *c = a->client;

	log_info("client %u: authentication of \"%s\" broken off: %s%s%s", c->id, a->startup.user, message,
		 detail ? ": " : "", detail ? detail : "");
	client_fatal(c, sqlstate, message, detail);
}

static void delay_rearm(void);

/*
 * The list stays in due order: at the tail while auth_failure_delay is the
 * same (every time but after a reload that shortened it).
 */
static void delayed_insert(struct auth_conn *a)
{
	struct list_node *after = delayed.head.prev;

	while (after != &delayed.head && list_entry(after, struct auth_conn, wait_node)->fatal_at > a->fatal_at)
		after = after->prev;
	list_insert(&a->wait_node, after, after->next);
	delayed.count++;
}

/*
 * A failed password or hba check. The attacker waits auth_failure_delay
 * for the answer; pglease holds nothing but the client's socket.
 */
static void refuse(struct auth_conn *a, const char *sqlstate, const char *message, const char *why)
{
	struct client *c = a->client;

	char line[48] = "";

	if (a->hba_line)
		snprintf(line, sizeof(line), " (auth_hba_file line %d)", a->hba_line);
	log_info("client %u: %s%s%s%s", c->id, message, why ? ": " : "", why ? why : "", line);
	if (cfg->auth_failure_delay <= 0)
		return client_fatal(c, sqlstate, message, NULL);
	unhang(a);
	a->step = DELAYED;
	a->fatal_sqlstate = sqlstate;
	snprintf(a->fatal_message, sizeof(a->fatal_message), "%s", message);
	a->fatal_at = ev_now(loop) + cfg->auth_failure_delay;
	delayed_insert(a);
	client_want_read(c, true);   /* to see it leave meanwhile; what it sends is dropped */
	delay_rearm();
}

static void refuse_password(struct auth_conn *a, const char *why)
{
	char msg[200];

	snprintf(msg, sizeof(msg), "password authentication failed for user \"%s\"", a->startup.user);
	refuse(a, SQLSTATE_PASSWORD, msg, why);
}

/* ---- the failure delay: one timer for the list, which is in due order (delayed_insert) */

static void delay_rearm(void)
{
	struct list_node *first = list_first(&delayed);

	if (!first) {
		ev_timer_stop(loop, &delay_timer);
		return;
	}
	ev_tstamp due = list_entry(first, struct auth_conn, wait_node)->fatal_at - ev_now(loop);
	ev_timer_stop(loop, &delay_timer);
	ev_timer_set(&delay_timer, due > 0 ? due : 0, 0.);
	ev_timer_start(loop, &delay_timer);
}

static void on_delay(struct ev_loop *l, ev_timer *w, int revents)
{
	struct list_node *first;

	(void)l; (void)w; (void)revents;
	while ((first = list_first(&delayed))) {
		struct auth_conn *a = list_entry(first, struct auth_conn, wait_node);
		if (a->fatal_at > ev_now(loop))
			break;
		list_remove(&delayed, first);
		a->step = UNLISTED;   /* freed with the client */
		/* A client closed meanwhile is only waiting to be freed. */
		if (a->client->state == CLIENT_LOGIN)
			client_fatal(a->client, a->fatal_sqlstate, a->fatal_message, NULL);
	}
	delay_rearm();
}

/* ---- where a client's secret comes from */

static void missing_user_answered(struct auth_conn *a, bool found, const char *secret, const char *error);

/* auth_query's answer; an expired password fails as a wrong one, as in PostgreSQL. */
static void authq_answered(void *arg, const struct authq_answer *answer)
{
	struct auth_conn *a = arg;
	char why[200];

	a->lookup = NULL;
	a->step = UNLISTED;
	if (answer->status == AUTHQ_FAILED) {
		log_warning("client %u: user \"%s\" could not be looked up: %s", a->client->id, a->startup.user,
			    answer->error ? answer->error : "auth_query failed");
		/* Not the client's fault, and no guess: refused at once, with no word about the user. */
		return client_fatal(a->client, "08006", "could not look up the user: authentication is unavailable",
				    NULL);
	}
	if (answer->status == AUTHQ_FOUND && answer->expired) {
		snprintf(why, sizeof(why), "User \"%s\" has an expired password (auth_query)", a->startup.user);
		return missing_user_answered(a, false, NULL, why);
	}
	if (answer->status == AUTHQ_FOUND)
		return missing_user_answered(a, true, answer->secret, NULL);
	missing_user_answered(a, false, NULL, "no such user in auth_file nor by auth_query");
}

/*
 * A user auth_file does not list: looked up with auth_query (pool/authq.c)
 * where the database has an auth_user, else "no such user". Either answer
 * comes later from the loop, never from inside this call.
 */
static void lookup_missing_user(struct auth_conn *a)
{
	a->step = WAIT_SECRET;
	a->deriving = NULL;
	if (authq_enabled(a->startup.database) &&
	    (a->lookup = authq_lookup(a->startup.database, a->startup.user, authq_answered, a)))
		return;
	list_push_tail(&missing_users, &a->wait_node);
	ev_idle_start(loop, &missing_idle);
}

/*
 * The lookup's answer: found (with its secret text), or not (error: why,
 * for the log).
 */
static void missing_user_answered(struct auth_conn *a, bool found, const char *secret, const char *error)
{
	struct user_secret us = { .user = a->startup.user };

	a->step = UNLISTED;
	if (a->client->state != CLIENT_LOGIN)
		return;   /* closed meanwhile: only waiting to be freed */
	if (!found) {
		a->doomed = true;
		snprintf(a->doom_why, sizeof(a->doom_why), "%s", error ? error : "no such user in auth_file");
		return secret_known(a, NULL);
	}
	/* A secret from PostgreSQL is told apart as auth_file's are. */
	us.secret = (char *)secret;
	if (md5_secret_valid(secret))
		us.kind = SECRET_MD5;
	else if (strncmp(secret, "SCRAM-SHA-256$", 14) == 0 && scram_secret_parse(secret, &us.scram) == 0)
		us.kind = SECRET_SCRAM;
	else
		us.kind = SECRET_PLAIN;
	secret_known(a, &us);
}

static void on_missing_idle(struct ev_loop *l, ev_idle *w, int revents)
{
	struct list_node *first;

	(void)l; (void)revents;
	while ((first = list_first(&missing_users))) {
		struct auth_conn *a = list_entry(first, struct auth_conn, wait_node);
		list_remove(&missing_users, first);
		missing_user_answered(a, false, NULL, NULL);
	}
	ev_idle_stop(loop, w);
}

/* ---- starting an exchange */

/*
 * Bytes the client sent before our request (with its startup packet, or
 * while its secret was looked up) are already read: no socket event will
 * come for them.
 */
static void answer_early_bytes(struct client *c)
{
	if (c->state == CLIENT_LOGIN && c->auth && c->in && !iobuf_is_empty(c->in))
		auth_input(c);
}

static void start_md5(struct auth_conn *a, const char *secret)
{
	struct client *c = a->client;

	if (RAND_bytes(a->md5_salt, sizeof(a->md5_salt)) != 1 || (secret && !(a->md5_secret = strdup(secret))))
		return client_fatal(c, "53200", "out of memory starting md5 authentication", NULL);
	a->step = MD5;
	client_want_read(c, true);
	send_auth_request(c, AUTH_REQ_MD5, a->md5_salt, sizeof(a->md5_salt));
	answer_early_bytes(c);
}

/* The tls-server-end-point data of c's connection; 0 when there is none (then no -PLUS is offered). */
static size_t channel_binding_data(const struct client *c, uint8_t *out, size_t cap)
{
	int n = tls_server_end_point(c, out, cap);

	if (n < 0)
		log_warning("client %u: no channel-binding data for SCRAM-SHA-256-PLUS (tls-server-end-point failed)", c->id);
	return n > 0 ? (size_t)n : 0;
}

static void start_scram(struct auth_conn *a, const struct scram_secret *secret)
{
	struct client *c = a->client;
	uint8_t cb[SCRAM_CB_MAX];
	static const char plus[] = "SCRAM-SHA-256-PLUS", plain[] = "SCRAM-SHA-256";
	char mechanisms[sizeof(plus) + sizeof(plain) + 1];
	size_t len = 0;

	a->secret = *secret;
	if (client_on_tls(c) && channel_binding_data(c, cb, sizeof(cb)) > 0) {
		memcpy(mechanisms, plus, sizeof(plus));
		len = sizeof(plus);
	}
	memcpy(mechanisms + len, plain, sizeof(plain));
	len += sizeof(plain);
	mechanisms[len++] = '\0';
	a->step = SASL_INIT;
	client_want_read(c, true);
	send_auth_request(c, AUTH_REQ_SASL, mechanisms, len);
	answer_early_bytes(c);
}

/* An exchange for a user with no secret to check: it runs and fails at its end. */
static void start_mock(struct auth_conn *a)
{
	struct scram_secret mock;

	if (a->method == HBA_MD5)
		return start_md5(a, NULL);
	if (scram_secret_mock(a->startup.user, mock_key, &mock) < 0)
		return client_fatal(a->client, "XX000", "could not generate a mock SCRAM secret", NULL);
	start_scram(a, &mock);
	OPENSSL_cleanse(&mock, sizeof(mock));
}

/* The derivation a->deriving waited for has finished. */
static void derived_done(struct derived *d)
{
	struct list_node *first;

	while ((first = list_first(&d->waiters))) {
		struct auth_conn *a = list_entry(first, struct auth_conn, wait_node);
		list_remove(&d->waiters, first);
		a->deriving = NULL;
		a->step = UNLISTED;
		if (a->client->state != CLIENT_LOGIN)
			continue;   /* closed meanwhile: only waiting to be freed */
		if (d->ready) {
			start_scram(a, &d->secret);
		} else {
			log_error("client %u: deriving SCRAM keys for \"%s\" failed", a->client->id, a->startup.user);
			client_fatal(a->client, "XX000", "could not derive a SCRAM secret", NULL);
		}
	}
}

static void scram_from_plain(struct auth_conn *a, const char *password)
{
	struct derived *d = derived_get(a->startup.user, password);

	if (!d)
		return client_fatal(a->client, "53200", "out of memory deriving a SCRAM secret", NULL);
	if (d->ready)
		return start_scram(a, &d->secret);
	a->step = WAIT_SECRET;
	a->deriving = d;
	list_push_tail(&d->waiters, &a->wait_node);
	client_want_read(a->client, false);
}

/*
 * The secret is known (us NULL: there is none). PostgreSQL's rule: md5 is
 * used only when the method is md5 and the secret is not a SCRAM verifier;
 * everything else is SCRAM.
 */
static void secret_known(struct auth_conn *a, const struct user_secret *us)
{
	if (us && us->secret[0] == '\0') {
		a->doomed = true;
		snprintf(a->doom_why, sizeof(a->doom_why), "the user has no password assigned (an empty secret in auth_file)");
	}
	if (a->doomed)
		return start_mock(a);
	if (a->method == HBA_MD5 && us->kind != SECRET_SCRAM)
		return start_md5(a, us->secret);
	switch (us->kind) {
	case SECRET_SCRAM:
		return start_scram(a, &us->scram);
	case SECRET_PLAIN:
		return scram_from_plain(a, us->secret);
	case SECRET_MD5:
		a->doomed = true;
		snprintf(a->doom_why, sizeof(a->doom_why), "the user has no valid SCRAM secret (auth_file holds an md5 secret)");
		return start_mock(a);
	}
}

static void start_password(struct client *c, struct startup *st, enum hba_method method, int hba_line)
{
	struct auth_conn *a = calloc(1, sizeof(*a));

	if (!a)
		return client_fatal(c, "53200", "out of memory starting authentication", NULL);
	a->client = c;
	a->startup = *st;
	memset(st, 0, sizeof(*st));
	a->method = method;
	a->hba_line = hba_line;
	list_node_init(&a->wait_node);
	c->auth = a;
	const struct user_secret *us = running && running->users ? userlist_find(running->users, a->startup.user) : NULL;
	if (!us) {
		client_want_read(c, false);
		return lookup_missing_user(a);
	}
	secret_known(a, us);
}

/* ---- the client's messages */

static void on_password_message(struct auth_conn *a, const uint8_t *body, size_t len)
{
	if (len == 0 || memchr(body, '\0', len) != body + len - 1)
		return protocol_fail(a, SQLSTATE_PROTOCOL, "invalid password packet size", NULL);
	if (len == 1)
		return refuse(a, SQLSTATE_PASSWORD, "empty password returned by client", NULL);
	if (a->doomed)
		return refuse_password(a, a->doom_why);
	int ok = md5_check(a->md5_secret, a->startup.user, a->md5_salt, (const char *)body, len - 1);
	if (ok < 0)
		return client_fatal(a->client, "XX000", "could not compute an md5 digest", NULL);
	if (!ok)
		return refuse_password(a, "the md5 password does not match");
	succeed(a);
}

/* PostgreSQL's own checks of a SASL message's data, before SCRAM reads it. */
static bool sasl_data_ok(struct auth_conn *a, const uint8_t *data, size_t len)
{
	if (len == 0)
		return protocol_fail(a, SQLSTATE_PROTOCOL, "malformed SCRAM message", "The message is empty."), false;
	if (memchr(data, '\0', len))
		return protocol_fail(a, SQLSTATE_PROTOCOL, "malformed SCRAM message",
				     "Message length does not match input length."), false;
	return true;
}

static void on_client_first(struct auth_conn *a, const uint8_t *data, size_t len)
{
	struct scram_state *st = a->scram;

	if (!sasl_data_ok(a, data, len))
		return;
	if (scram_client_first(st, (const char *)data, len) < 0)
		return protocol_fail(a, st->sqlstate, st->message, st->detail[0] ? st->detail : NULL);
	a->step = SASL_FINAL;
	send_auth_request(a->client, AUTH_REQ_SASL_CONT, st->reply, st->reply_len);
}

static void on_client_final(struct auth_conn *a, const uint8_t *data, size_t len)
{
	struct scram_state *st = a->scram;

	if (!sasl_data_ok(a, data, len))
		return;
	if (scram_client_final(st, (const char *)data, len) < 0) {
		if (strcmp(st->sqlstate, SQLSTATE_PASSWORD) == 0)
			return refuse_password(a, a->doomed ? a->doom_why : "the SCRAM proof does not match");
		return protocol_fail(a, st->sqlstate, st->message, st->detail[0] ? st->detail : NULL);
	}
	if (a->doomed)   /* a mock secret cannot be proven; never let one through */
		return refuse_password(a, a->doom_why);
	send_auth_request(a->client, AUTH_REQ_SASL_FIN, st->reply, st->reply_len);
	if (a->client->state == CLIENT_LOGIN)
		succeed(a);
}

/*
 * SASLInitialResponse: the mechanism (a string), then the length of the
 * client-first-message (-1: none yet) and the message. Checked in
 * PostgreSQL's order, with its words.
 */
static void on_sasl_initial(struct auth_conn *a, const uint8_t *body, size_t len)
{
	const uint8_t *nul = memchr(body, '\0', len);

	if (!nul || (size_t)(nul - body) + 1 >= len)
		return protocol_fail(a, SQLSTATE_PROTOCOL, "invalid string in message", NULL);
	uint8_t cb[SCRAM_CB_MAX];
	size_t cb_len = client_on_tls(a->client) ? channel_binding_data(a->client, cb, sizeof(cb)) : 0;
	if (!(a->scram = malloc(sizeof(*a->scram))))
		return client_fatal(a->client, "53200", "out of memory starting SCRAM authentication", NULL);
	if (scram_begin(a->scram, &a->secret, (const char *)body, cb_len ? cb : NULL, cb_len) < 0)
		return protocol_fail(a, a->scram->sqlstate, a->scram->message, NULL);
	size_t at = (size_t)(nul - body) + 1;
	if (len - at < 4)
		return protocol_fail(a, SQLSTATE_PROTOCOL, "insufficient data left in message", NULL);
	int32_t input_len = (int32_t)be32(body + at);
	at += 4;
	if (input_len < -1 || (input_len >= 0 && (size_t)input_len > len - at))
		return protocol_fail(a, SQLSTATE_PROTOCOL, "insufficient data left in message", NULL);
	if ((input_len < 0 ? 0 : (size_t)input_len) != len - at)
		return protocol_fail(a, SQLSTATE_PROTOCOL, "invalid message format", NULL);
	if (input_len < 0) {
		/* No initial response: an empty challenge asks for the client-first-message. */
		a->step = SASL_FIRST;
		return send_auth_request(a->client, AUTH_REQ_SASL_CONT, "", 0);
	}
	on_client_first(a, body + at, (size_t)input_len);
}

static void on_message(struct auth_conn *a, const uint8_t *body, size_t len)
{
	switch (a->step) {
	case MD5: return on_password_message(a, body, len);
	case SASL_INIT: return on_sasl_initial(a, body, len);
	case SASL_FIRST: return on_client_first(a, body, len);
	case SASL_FINAL: return on_client_final(a, body, len);
	case UNLISTED:
	case WAIT_SECRET:
	case DELAYED:
		break;
	}
	assert(!"no message is read in this step");
}

static bool reading_step(const struct auth_conn *a)
{
	return a->step == MD5 || a->step == SASL_INIT || a->step == SASL_FIRST || a->step == SASL_FINAL;
}

/* One whole 'p' message off c->in; false when there is none (yet) or the client failed. */
static bool next_message(struct auth_conn *a)
{
	struct client *c = a->client;
	struct iobuf *in = c->in;
	uint32_t avail = in ? in->end - in->start : 0;

	if (avail < 5)
		return false;
	const uint8_t *at = in->data + in->start;
	uint32_t len = be32(at + 1);
	char msg[80];
	if (at[0] != 'p') {
		snprintf(msg, sizeof(msg), "expected %s response, got message type %d",
			 a->step == MD5 ? "password" : "SASL", at[0]);
		return protocol_fail(a, SQLSTATE_PROTOCOL, msg, NULL), false;
	}
	/* PostgreSQL hangs up without a word here; a FATAL says why. */
	if (len < 4 || len > AUTH_MSG_MAX || len + 1 > IOBUF_SIZE)
		return protocol_fail(a, SQLSTATE_PROTOCOL, "invalid message length", NULL), false;
	if (avail < len + 1)
		return false;
	in->start = in->scanned = in->start + len + 1;
	on_message(a, at + 5, len - 4);
	return c->state == CLIENT_LOGIN && c->auth == a;
}

void auth_input(struct client *c)
{
	struct auth_conn *a = c->auth;

	assert(a && c->state == CLIENT_LOGIN);
	if (a->step == DELAYED) {
		if (c->in)
			c->in->start = c->in->scanned = c->in->end;
		return;
	}
	if (a->step == WAIT_SECRET || a->step == UNLISTED) {
		client_want_read(c, false);
		return;
	}
	while (reading_step(a) && next_message(a))
		;
}

/* ---- which method */

/* An hba refusal: the client is held like one whose password failed. */
static void refuse_hba(struct client *c, struct startup *st, const char *message, const char *why)
{
	struct auth_conn *a = calloc(1, sizeof(*a));

	if (!a)
		return client_fatal(c, SQLSTATE_AUTHZ, message, NULL);
	a->client = c;
	a->startup = *st;
	memset(st, 0, sizeof(*st));
	a->step = UNLISTED;
	list_node_init(&a->wait_node);
	c->auth = a;
	refuse(a, SQLSTATE_AUTHZ, message, why);
}

static void start_hba(struct client *c, struct startup *st)
{
	const struct sockaddr *peer = client_peer(c);
	struct hba_client who = {
		.local = !peer, .ssl = client_on_tls(c),
		.database = st->database, .user = st->user, .addr = peer,
	};
	const struct hba_rule *rule = running && running->hba ? hba_match(running->hba, &who) : NULL;
	char what[600], msg[700], why[64];

	if (!rule || rule->method == HBA_REJECT) {
		listener_login_words(c, st->user, st->database, what, sizeof(what));
		snprintf(msg, sizeof(msg), rule ? "pg_hba.conf rejects connection for %s" : "no pg_hba.conf entry for %s", what);
		snprintf(why, sizeof(why), rule ? "auth_hba_file line %d" : "no auth_hba_file line matches", rule ? rule->line : 0);
		return refuse_hba(c, st, msg, why);
	}
	switch (rule->method) {
	case HBA_TRUST: return login_finish(c, st);
	case HBA_PEER: return login_peer(c, st);
	case HBA_MD5:
	case HBA_SCRAM: return start_password(c, st, rule->method, rule->line);
	case HBA_REJECT: break;
	}
}

/*
 * peer reads the client's uid off a Unix socket; on TCP there is none to
 * read (Linux answers uid -1, which must never be looked up), so it refuses.
 */
static void start_peer(struct client *c, struct startup *st)
{
	char msg[200];

	if (!client_peer(c))
		return login_peer(c, st);
	log_info("client %u: auth_type peer is for Unix socket clients only", c->id);
	snprintf(msg, sizeof(msg), "peer authentication failed for user \"%s\"", st->user);
	client_fatal(c, SQLSTATE_AUTHZ, msg, NULL);
}

void auth_start(struct client *c, struct startup *st)
{
	assert(c->state == CLIENT_LOGIN && !c->auth);
	switch (cfg->auth_type) {
	case AUTH_TRUST: return login_finish(c, st);
	case AUTH_PEER: return start_peer(c, st);
	case AUTH_MD5: return start_password(c, st, HBA_MD5, 0);
	case AUTH_SCRAM: return start_password(c, st, HBA_SCRAM, 0);
	case AUTH_HBA: return start_hba(c, st);
	}
}

/* ---- process */

void auth_files_install(struct auth_files *files)
{
	auth_files_free(running);
	running = files;
	derived_invalidate();
}

int auth_init(void)
{
	if (RAND_bytes(mock_key, sizeof(mock_key)) != 1)
		return -1;
	ev_idle_init(&missing_idle, on_missing_idle);
	ev_timer_init(&delay_timer, on_delay, 0., 0.);
	return 0;
}

void auth_shutdown(void)
{
	auth_files_install(NULL);
	OPENSSL_cleanse(mock_key, sizeof(mock_key));
}
