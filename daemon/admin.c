/*
 * admin.c — the admin console: SHOW, PAUSE/RESUME, RECONNECT, KILL,
 * RELOAD, SHUTDOWN over the simple and the extended query protocol.
 *
 * A console client is a struct client on admin_clients with a struct
 * admin_conn. Replies are built whole into a growing buffer (a SHOW over
 * thousands of clients may not fit a client iobuf) and fed to the client
 * as its buffer drains. Input is handled one complete message at a time;
 * after an error in the extended protocol everything up to Sync is skipped,
 * as PostgreSQL does. PAUSE holds the connection (no further input is
 * handled) until the paused pools have no lease left.
 *
 * The replies are built by admin_reply.c, the SHOW result sets by
 * admin_show.c, the command language is admin_parse.c.
 *
 * Reading order: output, access and login, the actions, running a command,
 * the protocol handler, PAUSE completion.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include "admin.h"
#include "admin_parse.h"
#include "admin_reply.h"
#include "admin_show.h"
#include "client.h"
#include "daemon.h"
#include "lease.h"
#include "log.h"
#include "pause.h"
#include "pool.h"
#include "proto.h"
#include "server.h"
#include "startup.h"

/* RELOAD and SHUTDOWN act on the process: main.c installs them (admin_set_actions). */
static const struct admin_actions *actions;

void admin_set_actions(const struct admin_actions *installed)
{
	actions = installed;
}

/* Longest message the console accepts: commands are short. */
#define ADMIN_MSG_MAX 16384
/* Stop handling input while this much reply is still unsent. */
#define ADMIN_BACKLOG (256 * 1024)
#define ADMIN_MAX_NAMED 64

struct named {                  /* a prepared statement or a portal */
	char *name, *text;
	int nformats;               /* portal: Bind's result format codes */
	uint8_t formats[REPLY_MAX_FORMATS];
};

struct admin_conn {
	bool full;                  /* admin rights; else SHOW only */
	char *user;
	bool skip_to_sync;          /* extended protocol: an error happened */
	bool pausing;               /* a PAUSE waits for leases to end */
	bool pause_simple;          /* ... sent as a Query: ReadyForQuery follows */
	char pause_db[ADMIN_NAME_MAX];
	struct named stmts[ADMIN_MAX_NAMED], portals[ADMIN_MAX_NAMED];
	struct reply out;           /* reply bytes not yet in the client's buffer */
};

static void handle_input(struct client *c);

/* ---- output ---- */

/* Hand what fits to the client; the rest goes when it can take more. */
static void flush(struct client *c)
{
	struct admin_conn *a = c->admin;

	assert(c->state == CLIENT_ADMIN && a);
	struct reply *r = &a->out;

	if (r->oom)
		return client_fatal(c, "53200", "out of memory building an admin console reply", NULL);
	while (r->sent < r->len) {
		long n = client_write(c, r->data + r->sent, r->len - r->sent);
		if (n <= 0)
			return;   /* < 0: closed; 0: its buffer is full, on_writable calls back */
		r->sent += (size_t)n;
	}
	r->len = r->sent = 0;
	if (r->cap > ADMIN_BACKLOG)
		reply_free(r);
}

/* ---- who may use the console ---- */

bool admin_is_console(const char *dbname)
{
	return strcmp(dbname, ADMIN_DBNAME) == 0;
}

static bool same_uid(const struct client *c)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);

	/* On TCP the kernel reports an unrelated uid (the overflow uid): only the Unix socket tells. */
	return !c->tcp && getsockopt(c->fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0 && cred.uid == getuid();
}

/* 1: full admin, 0: SHOW only, -1: refused. */
static int access_level(const struct client *c, const char *user)
{
	if (config_user_listed(cfg->admin_users, user) || same_uid(c))
		return 1;
	return config_user_listed(cfg->stats_users, user) ? 0 : -1;
}

static const char *server_version(void)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &all_pools) {
		struct pool *p = list_entry(pos, struct pool, node);
		const char *v = p->have_base ? params_get(&p->base, "server_version") : NULL;
		if (v)
			return v;
	}
	return "15.0";
}

static void welcome(struct client *c)
{
	uint8_t buf[4096];
	struct wbuf w;
	const char *app = params_get(&c->params, "application_name");

	wbuf_init(&w, buf, sizeof(buf));
	proto_auth_ok(&w);
	proto_param_status(&w, "server_version", server_version());
	proto_param_status(&w, "server_encoding", "UTF8");
	proto_param_status(&w, "client_encoding", "UTF8");
	proto_param_status(&w, "DateStyle", "ISO, MDY");
	proto_param_status(&w, "IntervalStyle", "postgres");
	proto_param_status(&w, "TimeZone", "UTC");
	proto_param_status(&w, "integer_datetimes", "on");
	proto_param_status(&w, "standard_conforming_strings", "on");
	proto_param_status(&w, "is_superuser", "off");
	proto_param_status(&w, "session_authorization", c->admin->user);
	proto_param_status(&w, "application_name", app ? app : "");
	proto_backend_key(&w, c->id, c->cancel_key);
	proto_ready(&w, 'I');
	reply_wbuf(&c->admin->out, &w);
	flush(c);
}

void admin_login(struct client *c, struct startup *st)
{
	char msg[200];
	int level = access_level(c, st->user);

	/* Authenticated, never in a pool: login_finish() sends console logins here instead. */
	assert(c->state == CLIENT_LOGIN && !c->pool && !c->lease && !c->admin);
	if (level < 0) {
		snprintf(msg, sizeof(msg), "not allowed to use the pglease admin console: user \"%s\" is in neither "
			 "admin_users nor stats_users", st->user);
		return client_fatal(c, "28000", msg, NULL);
	}
	c->admin = calloc(1, sizeof(*c->admin));
	if (!c->admin || !(c->admin->user = strdup(st->user))) {
		admin_free(c);
		return client_fatal(c, "53200", "out of memory", NULL);
	}
	c->admin->full = level > 0;
	c->params = st->params;
	st->params = PARAMS_EMPTY;
	client_set_state(c, CLIENT_ADMIN);
	log_info("client %u: admin console login as \"%s\" (%s)", c->id, st->user, level ? "admin" : "stats only");
	welcome(c);
	if (c->state == CLIENT_ADMIN)
		handle_input(c);
}

const char *admin_user(const struct client *c)
{
	return c->admin ? c->admin->user : NULL;
}

void admin_free(struct client *c)
{
	struct admin_conn *a = c->admin;

	if (!a)
		return;
	for (int i = 0; i < ADMIN_MAX_NAMED; i++) {
		free(a->stmts[i].name);
		free(a->stmts[i].text);
		free(a->portals[i].name);
		free(a->portals[i].text);
	}
	free(a->user);
	reply_free(&a->out);
	free(a);
	c->admin = NULL;
}

/* ---- pools a command applies to ---- */

/* A named database must exist (in [databases], or as a pool made through "*"). */
static bool db_known(const char *db)
{
	struct list_node *pos, *tmp;

	if (!*db)
		return true;
	for (int i = 0; i < cfg->db_count; i++)
		if (strcmp(cfg->dbs[i].name, db) == 0)
			return true;
	list_for_each_safe(pos, tmp, &all_pools)
		if (strcmp(list_entry(pos, struct pool, node)->dbname, db) == 0)
			return true;
	return false;
}

/* ---- PAUSE, RESUME, RECONNECT, KILL ---- */

static void for_pools(const char *db, void (*fn)(struct pool *p))
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &all_pools) {
		struct pool *p = list_entry(pos, struct pool, node);
		if (pool_in_db(p, db))
			fn(p);
	}
}

/* PAUSE answers once no pool it covers has a backend leased. */
static bool pause_done(const char *db)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &all_pools) {
		struct pool *p = list_entry(pos, struct pool, node);
		if (pool_in_db(p, db) && (p->leased.count || p->active.count))
			return false;
	}
	return true;
}

static void reconnect_pool(struct pool *p)
{
	pool_reconnect(p, "RECONNECT from the admin console");
}

/* Paused already. Leases end through the exit door first; then every backend goes, cleaning or not. */
static void kill_pool(struct pool *p)
{
	client_close_pool(p, EXIT_KILLED, "terminating connection: database killed by the admin console (KILL)");
	pool_close_servers(p, "KILL from the admin console");
}

/* ---- running a command ---- */

static void no_such_db(struct admin_conn *a, const char *db)
{
	char msg[160];

	snprintf(msg, sizeof(msg), "database \"%s\" does not exist", db);
	reply_error(&a->out, "3D000", msg, NULL);
}

/* false: an error was sent. */
static bool run_action(struct client *c, const struct admin_cmd *cmd)
{
	struct admin_conn *a = c->admin;

	assert(a->full);
	if (!db_known(cmd->arg)) {
		no_such_db(a, cmd->arg);
		return false;
	}
	switch (cmd->verb) {
	case ADMIN_PAUSE:
		if (pool_pause_db(cmd->arg) < 0) {
			reply_error(&a->out, "53200", "out of memory", NULL);
			return false;
		}
		break;
	case ADMIN_RESUME:
		if (*cmd->arg && pause_all()) {
			reply_error(&a->out, "55000", "all databases are paused; RESUME without a database name resumes them", NULL);
			return false;
		}
		pool_resume_db(cmd->arg);
		break;
	case ADMIN_RECONNECT:
		for_pools(cmd->arg, reconnect_pool);
		break;
	case ADMIN_KILL:
		if (pool_pause_db(cmd->arg) < 0) {
			reply_error(&a->out, "53200", "out of memory", NULL);
			return false;
		}
		for_pools(cmd->arg, kill_pool);
		break;
	case ADMIN_RELOAD:
		if (actions->reload() != 0) {
			reply_error(&a->out, "F0000", "configuration not reloaded; see pglease's log", NULL);
			return false;
		}
		break;
	default:
		break;
	}
	log_info("admin console: %s%s%s by \"%s\"", admin_cmd_name(cmd->verb), *cmd->arg ? " " : "", cmd->arg,
		 a->user);
	return true;
}

enum outcome { DONE, FAILED, WAITING, GONE };

static bool is_config_key(const char *name)
{
	char value[8];
	const char *def;

	for (int i = 0; i < config_key_count(); i++)
		if (strcasecmp(config_key_show(cfg, i, &def, value, sizeof(value)), name) == 0)
			return true;
	return false;
}

/*
 * Drivers (pgjdbc, some ORMs) send session SETs as they connect: the console
 * has no session, so they are accepted and change nothing. pglease's own
 * settings live in the file, and saying so beats silently ignoring them.
 */
static enum outcome run_set(struct admin_conn *a, const char *name)
{
	if (is_config_key(name)) {
		reply_error(&a->out, "0A000", "pglease settings cannot be changed from the admin console",
				 "Edit the configuration file, then RELOAD.");
		return FAILED;
	}
	reply_complete(&a->out, "SET");
	return DONE;
}

/* Runs cmd; sends its rows (with a RowDescription if asked) and CommandComplete. */
static enum outcome run_command(struct client *c, const struct admin_cmd *cmd, bool describe)
{
	struct admin_conn *a = c->admin;
	char tag[64];

	if (cmd->verb == ADMIN_EMPTY) {
		reply_empty(&a->out, 'I');
		return DONE;
	}
	if (cmd->verb == ADMIN_SET)
		return run_set(a, cmd->arg);
	if (!admin_cmd_is_show(cmd->verb) && !a->full) {
		reply_error(&a->out, "42501", "permission denied: stats_users may only use SHOW commands", NULL);
		return FAILED;
	}
	if (admin_cmd_is_show(cmd->verb)) {
		if (describe)
			reply_row_description(&a->out, admin_show_table(cmd->verb));
		snprintf(tag, sizeof(tag), "SHOW");
		admin_show(&a->out, cmd->verb);
		reply_complete(&a->out, tag);
		return DONE;
	}
	if (cmd->verb == ADMIN_SHUTDOWN) {
		log_info("admin console: SHUTDOWN by \"%s\"", a->user);
		reply_complete(&a->out, "SHUTDOWN");
		flush(c);
		actions->shutdown(SHUTDOWN_GRACEFUL);
		return c->state == CLIENT_ADMIN ? DONE : GONE;
	}
	if (!run_action(c, cmd))
		return FAILED;
	if (cmd->verb == ADMIN_PAUSE && !pause_done(cmd->arg)) {
		a->pausing = true;
		snprintf(a->pause_db, sizeof(a->pause_db), "%s", cmd->arg);
		return WAITING;
	}
	reply_complete(&a->out, admin_cmd_name(cmd->verb));
	return DONE;
}

/* ---- the protocol handler ---- */

struct msg {
	char type;
	const uint8_t *body, *end;
	bool bad;                   /* a field ran past the end */
};

static const char *get_str(struct msg *m)
{
	const uint8_t *nul = m->body < m->end ? memchr(m->body, 0, m->end - m->body) : NULL;

	if (!nul) {
		m->bad = true;
		return "";
	}
	const char *s = (const char *)m->body;
	m->body = nul + 1;
	return s;
}

static int get_int16(struct msg *m)
{
	if (m->end - m->body < 2) {
		m->bad = true;
		return 0;
	}
	int v = (m->body[0] << 8) | m->body[1];
	m->body += 2;
	return v;
}

static uint8_t get_byte(struct msg *m)
{
	if (m->body >= m->end) {
		m->bad = true;
		return 0;
	}
	return *m->body++;
}

static struct named *find_named(struct named *set, const char *name)
{
	for (int i = 0; i < ADMIN_MAX_NAMED; i++)
		if (set[i].name && strcmp(set[i].name, name) == 0)
			return &set[i];
	return NULL;
}

static void drop_named(struct named *n)
{
	if (!n)
		return;
	free(n->name);
	free(n->text);
	n->name = n->text = NULL;
}

/* The unnamed statement or portal is replaced silently; a named one must be new. */
static bool store_named(struct admin_conn *a, struct named *set, const char *name, const char *text,
			const char *what, const char *dup_sqlstate)
{
	char msg[200];
	struct named *old = find_named(set, name);
	struct named *slot = NULL;

	if (old && *name) {
		snprintf(msg, sizeof(msg), "%s \"%s\" already exists", what, name);
		reply_error(&a->out, dup_sqlstate, msg, NULL);
		return false;
	}
	drop_named(old);
	for (int i = 0; !slot && i < ADMIN_MAX_NAMED; i++)
		if (!set[i].name)
			slot = &set[i];
	if (!slot) {
		reply_error(&a->out, "54000", "too many prepared statements or portals on the admin console", NULL);
		return false;
	}
	if (!(slot->name = strdup(name)) || !(slot->text = strdup(text))) {
		drop_named(slot);
		reply_error(&a->out, "53200", "out of memory", NULL);
		return false;
	}
	slot->nformats = 0;
	return true;
}

static bool parse_or_error(struct admin_conn *a, const char *text, struct admin_cmd *cmd)
{
	char err[200];

	if (admin_parse(text, cmd, err, sizeof(err)))
		return true;
	reply_error(&a->out, "42601", err, ADMIN_HINT);
	return false;
}

static enum outcome on_query(struct client *c, struct msg *m)
{
	struct admin_conn *a = c->admin;
	struct admin_cmd cmd;
	const char *text = get_str(m);
	enum outcome r = FAILED;

	if (m->bad)
		return FAILED;
	if (parse_or_error(a, text, &cmd))
		r = run_command(c, &cmd, true);
	if (r == WAITING)
		a->pause_simple = true;
	else if (r != GONE)
		reply_ready(&a->out);
	return r == FAILED ? DONE : r;
}

static enum outcome on_parse(struct admin_conn *a, struct msg *m)
{
	const char *name = get_str(m), *text = get_str(m);
	struct admin_cmd cmd;

	if (m->bad || !parse_or_error(a, text, &cmd))
		return FAILED;
	if (!store_named(a, a->stmts, name, text, "prepared statement", "42P05"))
		return FAILED;
	reply_empty(&a->out, '1');
	return DONE;
}

/* Result format codes: 0 text, 1 binary (drivers such as pgjdbc ask for binary int8/float8). */
static bool read_formats(struct admin_conn *a, struct msg *m, uint8_t *formats, int *n)
{
	int count = get_int16(m);

	*n = count < REPLY_MAX_FORMATS ? count : REPLY_MAX_FORMATS;
	for (int i = 0; i < count && !m->bad; i++) {
		int code = get_int16(m);
		if (code != 0 && code != 1) {
			char msg[64];
			snprintf(msg, sizeof(msg), "unsupported format code: %d", code);
			reply_error(&a->out, "22023", msg, NULL);
			return false;
		}
		if (i < REPLY_MAX_FORMATS)
			formats[i] = (uint8_t)code;
	}
	return !m->bad;
}

/* Parameters are not used by any command. */
static enum outcome on_bind(struct admin_conn *a, struct msg *m)
{
	const char *portal = get_str(m), *stmt_name = get_str(m);
	struct named *stmt = find_named(a->stmts, stmt_name);
	uint8_t formats[REPLY_MAX_FORMATS];
	int nformats;
	char msg[200];

	int nparam_formats = get_int16(m);
	m->body += 2 * (nparam_formats > 0 ? nparam_formats : 0);
	int nparams = get_int16(m);
	if (m->bad)
		return FAILED;
	if (!stmt) {
		snprintf(msg, sizeof(msg), "prepared statement \"%s\" does not exist", stmt_name);
		reply_error(&a->out, "26000", msg, NULL);
		return FAILED;
	}
	if (nparams > 0) {
		reply_error(&a->out, "0A000", "admin console commands take no parameters", NULL);
		return FAILED;
	}
	if (!read_formats(a, m, formats, &nformats) ||
	    !store_named(a, a->portals, portal, stmt->text, "portal", "42P03"))
		return FAILED;
	struct named *p = find_named(a->portals, portal);
	p->nformats = nformats;
	memcpy(p->formats, formats, sizeof(formats));
	reply_empty(&a->out, '2');
	return DONE;
}

static enum outcome on_describe(struct admin_conn *a, struct msg *m)
{
	uint8_t kind = get_byte(m);
	const char *name = get_str(m);
	struct named *n = find_named(kind == 'S' ? a->stmts : a->portals, name);
	struct admin_cmd cmd;
	char msg[200];

	if (m->bad)
		return FAILED;
	if (!n) {
		snprintf(msg, sizeof(msg), "%s \"%s\" does not exist", kind == 'S' ? "prepared statement" : "portal", name);
		reply_error(&a->out, kind == 'S' ? "26000" : "34000", msg, NULL);
		return FAILED;
	}
	if (kind == 'S') {
		size_t mk = reply_begin(&a->out, 't');
		reply_int16(&a->out, 0);
		reply_end(&a->out, mk);
	}
	if (parse_or_error(a, n->text, &cmd) && admin_show_table(cmd.verb)) {
		if (kind != 'S')
			reply_set_formats(&a->out, n->formats, n->nformats);
		reply_row_description(&a->out, admin_show_table(cmd.verb));
		reply_set_formats(&a->out, NULL, 0);
	} else
		reply_empty(&a->out, 'n');
	return DONE;
}

/* Rows are sent whole: the row limit is not applied (documented). */
static enum outcome on_execute(struct client *c, struct msg *m)
{
	struct admin_conn *a = c->admin;
	const char *portal = get_str(m);
	struct named *n = find_named(a->portals, portal);
	struct admin_cmd cmd;
	char msg[200];

	if (m->bad)
		return FAILED;
	if (!n) {
		snprintf(msg, sizeof(msg), "portal \"%s\" does not exist", portal);
		reply_error(&a->out, "34000", msg, NULL);
		return FAILED;
	}
	if (!parse_or_error(a, n->text, &cmd))
		return FAILED;
	reply_set_formats(&a->out, n->formats, n->nformats);
	enum outcome r = run_command(c, &cmd, false);
	reply_set_formats(&a->out, NULL, 0);
	if (r == WAITING)
		a->pause_simple = false;
	return r;
}

static enum outcome on_close(struct admin_conn *a, struct msg *m)
{
	uint8_t kind = get_byte(m);
	const char *name = get_str(m);

	if (m->bad)
		return FAILED;
	drop_named(find_named(kind == 'S' ? a->stmts : a->portals, name));
	reply_empty(&a->out, '3');
	return DONE;
}

static enum outcome on_sync(struct admin_conn *a)
{
	a->skip_to_sync = false;
	drop_named(find_named(a->portals, ""));
	reply_ready(&a->out);
	return DONE;
}

static enum outcome dispatch(struct client *c, struct msg *m)
{
	struct admin_conn *a = c->admin;

	if (a->skip_to_sync && m->type != 'S' && m->type != 'X')
		return DONE;
	switch (m->type) {
	case 'Q': return on_query(c, m);
	case 'P': return on_parse(a, m);
	case 'B': return on_bind(a, m);
	case 'D': return on_describe(a, m);
	case 'E': return on_execute(c, m);
	case 'C': return on_close(a, m);
	case 'S': return on_sync(a);
	case 'H': return DONE;
	case 'X':
		client_close(c, "client sent Terminate");
		return GONE;
	default: {
		char msg[96];
		snprintf(msg, sizeof(msg), "invalid frontend message type %d", (uint8_t)m->type);
		flush(c);
		client_fatal(c, "08P01", msg, NULL);
		return GONE;
	}
	}
}

/* One whole message at in->start: handle it. false when nothing more can be done now. */
static bool next_message(struct client *c)
{
	struct iobuf *in = c->in;
	uint32_t avail = in->end - in->start;
	const uint8_t *p = in->data + in->start;

	assert(c->state == CLIENT_ADMIN && !c->admin->pausing && in->start <= in->end);
	if (avail < 5)
		return false;
	uint32_t len = be32(p + 1);
	if (len < 4 || len > ADMIN_MSG_MAX) {
		flush(c);
		client_fatal(c, "08P01", len < 4 ? "invalid message length" : "message too long for the admin console", NULL);
		return false;
	}
	if (avail < len + 1)
		return false;
	struct msg m = { (char)p[0], p + 5, p + 1 + len, false };
	in->start += len + 1;
	enum outcome r = dispatch(c, &m);
	if (r == GONE)
		return false;
	if (m.bad) {
		/* Like PostgreSQL: a message whose fields overrun it ends the session. */
		char msg[96];
		snprintf(msg, sizeof(msg), "invalid message format (message type \"%c\")",
			 m.type >= 32 && m.type < 127 ? m.type : '?');
		flush(c);
		client_fatal(c, "08P01", msg, NULL);
		return false;
	}
	if (r == FAILED)
		c->admin->skip_to_sync = m.type != 'Q';
	return r != WAITING;
}

static void handle_input(struct client *c)
{
	struct admin_conn *a = c->admin;

	assert(c->state == CLIENT_ADMIN && a);
	while (c->state == CLIENT_ADMIN && !a->pausing && c->in && a->out.len - a->out.sent < ADMIN_BACKLOG &&
	       next_message(c))
		;
	if (c->state != CLIENT_ADMIN)
		return;
	if (c->in && iobuf_is_empty(c->in)) {
		iobuf_put(c->in);
		c->in = NULL;
	} else if (c->in && c->in->start > 0) {
		iobuf_compact(c->in);
	}
	flush(c);
	if (c->state == CLIENT_ADMIN)
		client_want_read(c, !c->in || iobuf_room(c->in) > 0);
}

void admin_on_readable(struct client *c)
{
	assert(c->state == CLIENT_ADMIN);
	if (!client_read(c)) {
		client_close(c, "client closed the connection");
		return;
	}
	handle_input(c);
}

void admin_on_writable(struct client *c)
{
	assert(c->state == CLIENT_ADMIN);
	flush(c);
	if (c->state == CLIENT_ADMIN && c->admin->out.len == 0)
		handle_input(c);
}

/* ---- PAUSE completion ---- */

static void finish_pause(struct client *c)
{
	struct admin_conn *a = c->admin;

	assert(a->pausing);
	a->pausing = false;
	reply_complete(&a->out, "PAUSE");
	if (a->pause_simple)
		reply_ready(&a->out);
	handle_input(c);
}

void admin_maintain(ev_tstamp now)
{
	struct list_node *pos, *tmp;

	(void)now;
	list_for_each_safe(pos, tmp, &admin_clients) {
		struct client *c = list_entry(pos, struct client, node);
		assert(c->state == CLIENT_ADMIN && c->admin);
		if (c->admin->pausing && pause_done(c->admin->pause_db))
			finish_pause(c);
	}
}
