/*
 * login.c — a new client's startup: its packets, its authentication (the
 * method and the password exchanges are auth.c's; peer is here), a
 * CancelRequest, and handing it to its pool.
 *
 * The object model (pool/client.c) calls login_readable() for a client in
 * CLIENT_LOGIN; once authenticated, client_join() hands it down.
 */
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "admin.h"
#include "auth.h"
#include "client.h"
#include "daemon.h"
#include "log.h"
#include "login.h"
#include "pool.h"
#include "proto.h"
#include "startup.h"
#include "tls.h"
#include "worker.h"


/*
 * Peer authentication. The uid-to-name lookup may block (NSS can be LDAP or
 * sssd), so it runs on the worker thread while the client waits in LOGIN,
 * holding its parsed startup packet in the job.
 */
struct peer_job {
	struct job job;          /* first: the worker hands this back */
	struct client *client;
	struct startup startup;
	uid_t uid;
	bool lookup_ok;
	char name[256];
};

static void peer_lookup(struct job *job)
{
	struct peer_job *pj = (struct peer_job *)job;
	struct passwd pw, *found = NULL;
	char buf[4096];

	if (getpwuid_r(pj->uid, &pw, buf, sizeof(buf), &found) == 0 && found) {
		snprintf(pj->name, sizeof(pj->name), "%s", found->pw_name);
		pj->lookup_ok = true;
	}
}

static void peer_checked(struct job *job)
{
	struct peer_job *pj = (struct peer_job *)job;
	struct client *c = pj->client;
	char msg[300];

	c->jobs_pending--;
	if (c->state == CLIENT_LOGIN && pj->lookup_ok && strcmp(pj->name, pj->startup.user) == 0) {
		login_finish(c, &pj->startup);
	} else if (c->state == CLIENT_LOGIN) {
		snprintf(msg, sizeof(msg), "peer authentication failed for user \"%s\"", pj->startup.user);
		client_fatal(c, "28000", msg, NULL);
	}
	startup_free(&pj->startup);
	free(pj);
}

/* Takes over *st. */
void login_peer(struct client *c, struct startup *st)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	struct peer_job *pj = calloc(1, sizeof(*pj));

	if (!pj)
		return client_fatal(c, "53200", "out of memory checking peer authentication", NULL);
	if (getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0) {
		free(pj);
		return client_fatal(c, "28000", "peer authentication failed: no peer credentials", NULL);
	}
	pj->job.run = peer_lookup;
	pj->job.done = peer_checked;
	pj->client = c;
	pj->uid = cred.uid;
	pj->startup = *st;
	memset(st, 0, sizeof(*st));
	c->jobs_pending++;
	worker_submit(&pj->job);
}

static void send_negotiate(struct client *c, const struct startup *st)
{
	uint8_t buf[1024];
	struct wbuf w;

	wbuf_init(&w, buf, sizeof(buf));
	/* PostgreSQL sends its newest version as a version code (3.0), and libpq reads it so. */
	proto_negotiate(&w, PROTO_V3, (const char *const *)st->pq_options, st->pq_option_count);
	if (!w.overflow)
		client_send(c, buf, w.len);
}

static void login(struct client *c, struct startup *st)
{
	if (client_count > cfg->max_client_conn)
		return client_fatal(c, "53300", "no more connections allowed (max_client_conn)", NULL);
	/* TLS required but not used: refused before any password is asked for, as by a hostssl-only pg_hba.conf. */
	if (!tls_login_allowed(c, st->user, st->database))
		return;
	auth_start(c, st);
}

/*
 * Authenticated: join the pool, and be welcomed once it knows its backend.
 * As in PostgreSQL, an unauthenticated client learns nothing about which
 * databases exist: the check comes after authentication.
 */
void login_finish(struct client *c, struct startup *st)
{
	char msg[256];

	if (!admin_is_console(st->database) && !config_find_db(cfg, st->database)) {
		snprintf(msg, sizeof(msg), "database \"%s\" does not exist", st->database);
		return client_fatal(c, "3D000", msg, NULL);
	}
	if (st->minor > 0 || st->pq_option_count)
		send_negotiate(c, st);
	if (admin_is_console(st->database))
		return admin_login(c, st);

	client_join(c, config_find_db(cfg, st->database), st->database, st->user, &st->params, &st->sequence);
}

/*
 * As PostgreSQL: 'N', then bytes that came with the request are refused,
 * as they were sent before any encryption could start (CVE-2021-23214).
 */
static void reply_no_encryption(struct client *c, enum startup_kind kind)
{
	client_send(c, (const uint8_t *)"N", 1);
	if (c->state != CLIENT_LOGIN || iobuf_is_empty(c->in))
		return;
	client_fatal(c, "08P01",
		     kind == STARTUP_SSL ? "received unencrypted data after SSL request"
					 : "received unencrypted data after GSSAPI encryption request",
		     "This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.");
}

/*
 * Inside TLS, PostgreSQL reads another SSLRequest or GSSENCRequest as a
 * startup packet of protocol 1234.5679 / 1234.5680, which it does not speak.
 */
static void refuse_second_negotiation(struct client *c, enum startup_kind kind)
{
	char msg[128];

	snprintf(msg, sizeof(msg), "unsupported frontend protocol 1234.%d: server supports 3.0 to 3.0",
		 kind == STARTUP_SSL ? 5679 : 5680);
	client_fatal(c, "0A000", msg, NULL);
}

/*
 * 'S', then the handshake on the loop (login_readable drives it). As for
 * 'N', bytes that came with the request were sent unencrypted: refused.
 */
static void reply_tls(struct client *c)
{
	client_send(c, (const uint8_t *)"S", 1);
	if (c->state != CLIENT_LOGIN)
		return;
	if (!iobuf_is_empty(c->in))
		return client_fatal(c, "08P01", "received unencrypted data after SSL request",
				    "This could be either a client-software bug or evidence of an attempted man-in-the-middle attack.");
	if (c->out) {
		/* The 'S' must be on the wire before the first TLS record. */
		return client_close(c, "could not send the SSL negotiation response");
	}
	if (tls_accept(c) < 0)
		client_close(c, "could not start an SSL session: out of memory");
}

/*
 * A client of protocol 1 or 2 reads an error in that protocol's format,
 * 'E' and a line of text, which is how PostgreSQL refuses it.
 */
static void refuse_old_protocol(struct client *c, const char *message)
{
	char buf[sizeof(((struct startup *)0)->message) + 16];
	int n = snprintf(buf, sizeof(buf), "EFATAL:  %s\n", message);

	client_send(c, (const uint8_t *)buf, (size_t)n + 1);
	client_close(c, "%s", message);
}

/* One startup-phase packet; returns true when another may follow. */
static bool login_packet(struct client *c)
{
	struct iobuf *in = c->in;
	struct startup st;

	startup_parse(in->data + in->start, in->end - in->start, &st);
	/* A packet is consumed whole: what follows it (a first Query) is framed from its end. */
	if (st.kind != STARTUP_INCOMPLETE && st.kind != STARTUP_BAD)
		in->scanned = in->start += st.packet_len;
	switch (st.kind) {
	case STARTUP_INCOMPLETE:
		break;
	case STARTUP_BAD:
		if (st.old_protocol)
			refuse_old_protocol(c, st.message);
		else
			client_fatal(c, st.sqlstate, st.message, NULL);
		break;
	case STARTUP_SSL:
	case STARTUP_GSSENC:
		if (client_on_tls(c)) {
			refuse_second_negotiation(c, st.kind);
			break;
		}
		if (st.kind == STARTUP_SSL && tls_offered(c)) {
			reply_tls(c);
			startup_free(&st);
			return false;   /* whatever follows is read through TLS */
		}
		reply_no_encryption(c, st.kind);
		startup_free(&st);
		return c->state == CLIENT_LOGIN;
	case STARTUP_CANCEL:
		client_cancel_request(c, st.cancel_pid, st.cancel_key);
		break;
	case STARTUP_V3:
		login(c, &st);
		break;
	}
	startup_free(&st);
	return false;
}

void login_readable(struct client *c)
{
	/* The StartupMessage may already sit in OpenSSL's buffer when the handshake ends: read on. */
	if (c->tls_handshaking && tls_handshake(c) <= 0)
		return;
	if (client_read_into(c, &c->in) <= 0) {
		client_close(c, "client closed the connection during login");
		return;
	}
	if (auth_pending(c))
		return auth_input(c);
	/* Bytes sent before authentication finished wait for the session. */
	while (!c->jobs_pending && c->state == CLIENT_LOGIN && c->in && !iobuf_is_empty(c->in) && login_packet(c))
		;
}
