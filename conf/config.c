/*
 * config.c — load and validate pglease's INI file.
 *
 * Interface routines:
 *   config_load()     parse and validate a file; NULL plus error text on failure
 *   config_free()     release a loaded config
 *   config_find_db()  the [databases] entry for a client-visible name ("*" fallback)
 *   pool_mode_name()  "transaction" or "session", as written in the file
 *   config_key_count() / config_key_show()  iterate the [pglease] keys (SHOW CONFIG)
 *   config_user_listed()  is a user in a comma-separated list (admin_users, stats_users)
 *   config_parse_listen() metrics_listen: "ADDR:PORT" or an absolute socket path
 *
 * inih does the tokenizing; everything here is about telling the operator
 * precisely what is wrong, so a load collects every error it can find
 * (with its line) instead of stopping at the first one.
 */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <ini.h>
#include <libpq-fe.h>

#include "config.h"

/* Long enough for multi-host conninfo strings; inih's default (200) is not. */
#define MAX_LINE 8192
/* A year: large enough for any sane timeout, small enough to stay finite. */
#define MAX_SECONDS 31536000
/* PostgreSQL's NAMEDATALEN - 1. */
#define MAX_DB_NAME 63
#define SOCKET_PATH_MAX ((int)sizeof(((struct sockaddr_un *)0)->sun_path) - 1)

/* Enum fields are filled through int pointers by the key table. */
_Static_assert(sizeof(enum pool_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum auth_type) == sizeof(int), "enum size");
_Static_assert(sizeof(enum log_level) == sizeof(int), "enum size");
_Static_assert(sizeof(enum session_state) == sizeof(int), "enum size");
_Static_assert(sizeof(enum tls_mode) == sizeof(int), "enum size");

/* Indexed by the enum values in config.h. */
static const char *const pool_modes[] = { "transaction", "session", NULL };
static const char *const auth_types[] = { "trust", "peer", "md5", "scram-sha-256", "hba", NULL };
static const char *const log_levels[] = { "error", "warning", "info", "debug", NULL };
static const char *const session_states[] = { "pin", "ignore", NULL };
static const char *const tls_modes[] = { "disable", "allow", "prefer", "require", "verify-ca", "verify-full", NULL };

/* ---- allocation: a config loader has no useful way to go on without memory */

static _Noreturn void oom(void)
{
	fputs("pglease: out of memory\n", stderr);
	abort();
}

static void *xrealloc(void *p, size_t n)
{
	p = realloc(p, n ? n : 1);
	if (!p)
		oom();
	return p;
}

static char *xstrndup(const char *s, size_t n)
{
	char *d = xrealloc(NULL, n + 1);
	memcpy(d, s, n);
	d[n] = '\0';
	return d;
}

static char *xstrdup(const char *s)
{
	return xstrndup(s, strlen(s));
}

struct strbuf {
	char *s;
	size_t len, cap;
};

static void sb_add(struct strbuf *b, const char *s, size_t n)
{
	if (b->len + n + 1 > b->cap) {
		b->cap = (b->len + n + 1) * 2;
		b->s = xrealloc(b->s, b->cap);
	}
	memcpy(b->s + b->len, s, n);
	b->len += n;
	b->s[b->len] = '\0';
}

/* Hands over the text; an empty buffer still yields a real "" string. */
static char *sb_take(struct strbuf *b)
{
	char *s = b->s ? b->s : xstrdup("");
	*b = (struct strbuf){ 0 };
	return s;
}

/* ---- the [pglease] keys */

enum key_type { K_INT, K_SECONDS, K_MODE, K_ENUM, K_STRING };
#define NONZERO 1   /* seconds must be > 0; string must not be empty */

struct key_def {
	const char *name;
	enum key_type type;
	size_t offset;
	int min, max;
	int flags;
	const char *def;               /* default, as it would be written */
	const char *const *choices;    /* K_ENUM: names indexed by value */
};

#define F(field) offsetof(struct config, field)
#define INT(n, lo, hi, d)   { #n, K_INT, F(n), lo, hi, 0, d, NULL }
#define SECS(n, flags, d)   { #n, K_SECONDS, F(n), 0, MAX_SECONDS, flags, d, NULL }
#define MODE(n, d)          { #n, K_MODE, F(n), 0, 0777, 0, d, NULL }
#define ENUM(n, names, d)   { #n, K_ENUM, F(n), 0, 0, 0, d, names }
#define STR(n, flags, d)    { #n, K_STRING, F(n), 0, 0, flags, d, NULL }

/* Key names are the struct config field names, by construction. */
static const struct key_def keys[] = {
	INT(listen_port, 1, 65535, "6432"),
	STR(unix_socket_dir, NONZERO, "/tmp"),
	MODE(unix_socket_mode, "0777"),
	ENUM(auth_type, auth_types, "peer"),
	STR(auth_file, 0, ""),
	STR(auth_hba_file, 0, ""),
	SECS(auth_failure_delay, 0, "1"),
	ENUM(pool_mode, pool_modes, "transaction"),
	INT(default_pool_size, 1, 10000, "20"),
	INT(min_pool_size, 0, 10000, "0"),
	INT(max_client_conn, 1, 1000000, "100"),
	SECS(query_wait_timeout, 0, "120"),
	SECS(query_timeout, 0, "0"),
	SECS(idle_transaction_timeout, 0, "0"),
	SECS(transaction_timeout, 0, "0"),
	SECS(client_idle_timeout, 0, "0"),
	SECS(client_stall_timeout, 0, "30"),
	SECS(server_connect_timeout, NONZERO, "15"),
	SECS(server_login_retry, 0, "15"),
	INT(server_down_fail_fast, 0, 1, "0"),
	SECS(client_login_timeout, 0, "60"),
	SECS(server_check_delay, 0, "30"),
	SECS(server_idle_timeout, 0, "600"),
	SECS(server_lifetime, 0, "3600"),
	SECS(server_drain_timeout, NONZERO, "5"),
	SECS(shutdown_timeout, 0, "30"),
	STR(server_reset_query, 0, "DISCARD ALL"),
	STR(server_check_query, 0, "select 1"),
	ENUM(session_state, session_states, "pin"),
	INT(max_prepared_statements, 0, 100000, "200"),
	ENUM(log_level, log_levels, "info"),
	STR(admin_users, 0, ""),
	STR(stats_users, 0, ""),
	STR(metrics_listen, 0, ""),
	SECS(lease_warn_after, 0, "0"),
	STR(listen_addr, 0, ""),
	INT(tcp_keepalive, 0, 1, "1"),
	INT(tcp_keepidle, 0, 32767, "0"),
	INT(tcp_keepintvl, 0, 32767, "0"),
	INT(tcp_keepcnt, 0, 127, "0"),
	ENUM(client_tls_sslmode, tls_modes, "disable"),
	STR(client_tls_key_file, 0, ""),
	STR(client_tls_cert_file, 0, ""),
	STR(client_tls_ca_file, 0, ""),
	STR(client_tls_protocols, NONZERO, "secure"),
	STR(client_tls_ciphers, NONZERO, "default"),
	STR(auth_user, 0, ""),
	STR(auth_query, NONZERO, AUTHQ_DEFAULT_QUERY),
	STR(auth_dbname, 0, ""),
	SECS(auth_query_cache_ttl, 0, "10"),
	INT(max_db_connections, 0, 1000000, "0"),
	INT(max_user_connections, 0, 1000000, "0"),
	INT(max_db_client_connections, 0, 1000000, "0"),
	INT(max_user_client_connections, 0, 1000000, "0"),
	INT(reserve_pool_size, 0, 10000, "0"),
	SECS(reserve_pool_timeout, 0, "5"),
};
#define N_KEYS ((int)(sizeof(keys) / sizeof(keys[0])))

/* ---- parser state and error collection */

struct error {
	int line;      /* 0: about the file as a whole */
	int seq;       /* keeps the report stable for errors on one line */
	char *text;
};

struct parser {
	const char *path;
	FILE *fp;
	struct config *cfg;
	char *buf;                /* getline's buffer */
	size_t bufcap;
	int lineno;               /* lines handed to inih so far */
	int read_errno;
	bool expect_entry;        /* the current line must reach the handler */
	int entry_line;           /* the last line that reached the handler */
	int section_line;         /* line of the latest [section] header */
	int checked_section;      /* section_line whose name was last checked */
	bool section_ok;
	int key_line[N_KEYS];     /* where each key was set; 0: not yet */
	int db_cap;
	struct error *errs;
	int nerrs, errcap;
};

static void push_error(struct parser *p, int line, char *text)
{
	if (p->nerrs == p->errcap) {
		p->errcap = p->errcap ? p->errcap * 2 : 8;
		p->errs = xrealloc(p->errs, p->errcap * sizeof(*p->errs));
	}
	p->errs[p->nerrs] = (struct error){ line, p->nerrs, text };
	p->nerrs++;
}

__attribute__((format(printf, 3, 4)))
static void add_error(struct parser *p, int line, const char *fmt, ...)
{
	char *msg, *text;
	va_list ap;
	int r;

	va_start(ap, fmt);
	r = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (r < 0)
		oom();
	r = line > 0 ? asprintf(&text, "%s:%d: %s", p->path, line, msg)
		     : asprintf(&text, "%s: %s", p->path, msg);
	free(msg);
	if (r < 0)
		oom();
	push_error(p, line, text);
}

/* "[section] key: message", leaving out whichever of the two is empty. */
__attribute__((format(printf, 5, 6)))
static void key_error(struct parser *p, int line, const char *section,
		      const char *key, const char *fmt, ...)
{
	char *msg;
	va_list ap;

	va_start(ap, fmt);
	if (vasprintf(&msg, fmt, ap) < 0)
		oom();
	va_end(ap);
	if (!*section && !*key)
		add_error(p, line, "%s", msg);
	else if (!*section)
		add_error(p, line, "%s: %s", key, msg);
	else if (!*key)
		add_error(p, line, "[%s]: %s", section, msg);
	else
		add_error(p, line, "[%s] %s: %s", section, key, msg);
	free(msg);
}

static bool has_error_at(const struct parser *p, int line)
{
	for (int i = 0; i < p->nerrs; i++)
		if (p->errs[i].line == line)
			return true;
	return false;
}

static int error_order(const void *a, const void *b)
{
	const struct error *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return (x->seq > y->seq) - (x->seq < y->seq);
}

/* Checks that run after the whole file add errors out of line order. */
static char *join_errors(struct parser *p)
{
	struct strbuf b = { 0 };

	qsort(p->errs, p->nerrs, sizeof(*p->errs), error_order);
	for (int i = 0; i < p->nerrs; i++) {
		sb_add(&b, p->errs[i].text, strlen(p->errs[i].text));
		sb_add(&b, "\n", 1);
	}
	return sb_take(&b);
}

/* ---- "did you mean": case-insensitive Levenshtein distance */

#define MAX_GUESS_LEN 64

static int edit_distance(const char *a, const char *b)
{
	int la = strlen(a), lb = strlen(b), row[MAX_GUESS_LEN + 1];

	for (int j = 0; j <= lb; j++)
		row[j] = j;
	for (int i = 1; i <= la; i++) {
		int diag = row[0];

		row[0] = i;
		for (int j = 1; j <= lb; j++) {
			int up = row[j];
			int same = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]);
			int best = diag + !same;

			best = up + 1 < best ? up + 1 : best;
			row[j] = row[j - 1] + 1 < best ? row[j - 1] + 1 : best;
			diag = up;
		}
	}
	return row[lb];
}

struct guess {
	const char *word, *best;
	int dist;
};

static void consider(struct guess *g, const char *candidate)
{
	int d;

	if (strlen(g->word) > MAX_GUESS_LEN || strlen(candidate) > MAX_GUESS_LEN)
		return;
	d = edit_distance(g->word, candidate);
	if (!g->best || d < g->dist) {
		g->best = candidate;
		g->dist = d;
	}
}

/* Only suggest what is plausibly a typo, not merely the least bad match. */
static const char *guessed(const struct guess *g)
{
	if (!g->best || g->dist > 3 || 2 * g->dist > (int)strlen(g->word))
		return NULL;
	return g->best;
}

static const char *nearest_of(const char *word, const char *const *names)
{
	struct guess g = { word, NULL, 0 };

	while (*names)
		consider(&g, *names++);
	return guessed(&g);
}

/* Formats "; did you mean "x"?" into buf, or "" when there is no guess. */
static const char *did_you_mean(char *buf, size_t size, const char *guess)
{
	if (!guess)
		return "";
	snprintf(buf, size, "; did you mean \"%s\"?", guess);
	return buf;
}

/* ---- value parsers: each stores only on success, so defaults survive */

static bool parse_int(const char *v, int min, int max, int *out)
{
	long n = 0;

	if (!*v)
		return false;
	for (; *v; v++) {
		if (!isdigit((unsigned char)*v))
			return false;
		n = n * 10 + (*v - '0');
		if (n > max)
			return false;
	}
	if (n < min)
		return false;
	*out = (int)n;
	return true;
}

/* Plain decimal only: no sign, exponent, hex or locale-dependent strtod. */
static bool parse_seconds(const char *v, const struct key_def *k, double *out)
{
	double n = 0, div = 1;
	bool digits = false, dot = false;

	for (; *v; v++) {
		if (*v == '.' && !dot) {
			dot = true;
			continue;
		}
		if (!isdigit((unsigned char)*v))
			return false;
		digits = true;
		n = n * 10 + (*v - '0');
		div *= dot ? 10 : 1;
	}
	n /= div;
	/* written so that NaN (inf/inf from absurdly long input) fails too */
	if (!digits || !(n <= k->max) || ((k->flags & NONZERO) && !(n > 0)))
		return false;
	*out = n;
	return true;
}

static bool parse_mode(const char *v, int *out)
{
	int n = 0;

	if (!*v)
		return false;
	for (; *v; v++) {
		if (*v < '0' || *v > '7')
			return false;
		n = n * 8 + (*v - '0');
		if (n > 0777)
			return false;
	}
	*out = n;
	return true;
}

static bool parse_enum(const char *v, const char *const *choices, int *out)
{
	for (int i = 0; choices[i]; i++) {
		if (strcasecmp(v, choices[i]) == 0) {
			*out = i;
			return true;
		}
	}
	return false;
}

static bool parse_string(const char *v, int flags, char **out)
{
	if ((flags & NONZERO) && !*v)
		return false;
	free(*out);
	*out = xstrdup(v);
	return true;
}

static bool parse_value(const struct key_def *k, const char *v, void *base)
{
	void *field = (char *)base + k->offset;

	switch (k->type) {
	case K_INT: return parse_int(v, k->min, k->max, field);
	case K_SECONDS: return parse_seconds(v, k, field);
	case K_MODE: return parse_mode(v, field);
	case K_ENUM: return parse_enum(v, k->choices, field);
	case K_STRING: return parse_string(v, k->flags, field);
	}
	return false;
}

/* "a, b or c" */
static void list_choices(const char *const *c, char *buf, size_t size)
{
	size_t used = 0;

	buf[0] = '\0';
	for (int i = 0; c[i] && used < size; i++) {
		const char *sep = i == 0 ? "" : c[i + 1] ? ", " : " or ";

		used += snprintf(buf + used, size - used, "%s%s", sep, c[i]);
	}
}

/* What a valid value looks like, for "expected ..." in messages. */
static void describe(const struct key_def *k, char *buf, size_t size)
{
	switch (k->type) {
	case K_INT:
		snprintf(buf, size, "an integer from %d to %d", k->min, k->max);
		break;
	case K_SECONDS:
		snprintf(buf, size, (k->flags & NONZERO)
			 ? "a number of seconds greater than 0 and at most %d"
			 : "a number of seconds from 0 to %d", k->max);
		break;
	case K_MODE:
		snprintf(buf, size, "an octal mode from 0000 to 0777, such as 0700");
		break;
	case K_ENUM:
		list_choices(k->choices, buf, size);
		break;
	case K_STRING:
		snprintf(buf, size, "a non-empty value");
		break;
	}
}

/* what: "value" for a [pglease] key, or the conninfo key for a database. */
static void value_error(struct parser *p, const char *section, const char *name,
			const char *what, const struct key_def *k, const char *value)
{
	char expected[128], hint[MAX_GUESS_LEN + 32];
	const char *guess = k->type == K_ENUM ? nearest_of(value, k->choices) : NULL;

	describe(k, expected, sizeof(expected));
	key_error(p, p->lineno, section, name, "invalid %s \"%s\": expected %s%s",
		  what, value, expected, did_you_mean(hint, sizeof(hint), guess));
}

/* ---- [pglease] */

static const char *skip_blank(const char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	return s;
}

/* The first non-blank of s[0, n), or "" when there is none. */
static const char *skip_blank_n(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t')
			return s + i;
	return "";
}

static const struct key_def *find_key(const char *name)
{
	for (int i = 0; i < N_KEYS; i++)
		if (strcmp(keys[i].name, name) == 0)
			return &keys[i];
	return NULL;
}

/*
 * PgBouncer's settings that pglease has no key for, and what takes their
 * place: an operator who moved a [pgbouncer] section over by renaming it is
 * told that rather than only "unknown key" (README, "Moving from PgBouncer").
 */
#define LOGS_TO_STDERR "pglease logs to stderr (the journal under systemd); log_level sets how much"
#define BACKEND_TLS "backend TLS is set in each [databases] conninfo, as for any libpq program: sslmode, sslrootcert, sslcert, sslkey, sslcrl"
static const struct { const char *key, *instead; } pgbouncer_keys[] = {
	{ "logfile", LOGS_TO_STDERR },
	{ "syslog", LOGS_TO_STDERR },
	{ "syslog_ident", LOGS_TO_STDERR },
	{ "syslog_facility", LOGS_TO_STDERR },
	{ "verbose", LOGS_TO_STDERR },
	{ "pidfile", "pglease writes no pid file: systemd (Type=notify) or your supervisor tracks the process" },
	{ "user", "start pglease as the user it should run as (the installed unit's User=pglease)" },
	{ "unix_socket_group", "give the socket its group with SocketGroup= in pglease.socket, or open it with unix_socket_mode" },
	{ "server_tls_sslmode", BACKEND_TLS },
	{ "server_tls_ca_file", BACKEND_TLS },
	{ "server_tls_key_file", BACKEND_TLS },
	{ "server_tls_cert_file", BACKEND_TLS },
	{ "server_tls_protocols", BACKEND_TLS },
	{ "server_tls_ciphers", BACKEND_TLS },
	{ "auth_ident_file", "pglease has no ident maps: with peer, the client's OS user must be its database user" },
	{ "client_tls_dheparams", "OpenSSL's defaults choose the key exchange" },
	{ "client_tls_ecdhcurve", "OpenSSL's defaults choose the key exchange" },
};

int config_pgbouncer_key_count(void)
{
	return (int)(sizeof(pgbouncer_keys) / sizeof(pgbouncer_keys[0]));
}

/* What replaces PgBouncer's setting key, or NULL when key is not one of those. */
const char *config_pgbouncer_instead(const char *key)
{
	for (size_t i = 0; i < sizeof(pgbouncer_keys) / sizeof(pgbouncer_keys[0]); i++)
		if (strcmp(pgbouncer_keys[i].key, key) == 0)
			return pgbouncer_keys[i].instead;
	return NULL;
}

static void unknown_key(struct parser *p, const char *name)
{
	struct guess g = { name, NULL, 0 };
	char hint[MAX_GUESS_LEN + 32];
	const char *instead = config_pgbouncer_instead(name);

	if (instead) {
		key_error(p, p->lineno, "pglease", name, "a PgBouncer setting pglease does not have: %s", instead);
		return;
	}

	for (int i = 0; i < N_KEYS; i++)
		consider(&g, keys[i].name);
	key_error(p, p->lineno, "pglease", name, "unknown key%s",
		  did_you_mean(hint, sizeof(hint), guessed(&g)));
}

static void set_global(struct parser *p, const char *name, const char *value)
{
	const struct key_def *k = find_key(name);
	int *first;

	if (!k) {
		unknown_key(p, name);
		return;
	}
	first = &p->key_line[k - keys];
	if (*first) {
		key_error(p, p->lineno, "pglease", name,
			  "duplicate key (first defined at line %d)", *first);
		return;
	}
	*first = p->lineno;
	if (!parse_value(k, value, p->cfg))
		value_error(p, "pglease", name, "value", k, value);
}

static int key_line_of(const struct parser *p, const char *name)
{
	return p->key_line[find_key(name) - keys];
}

/* "a, b": names separated by commas, blanks around them ignored, none empty. */
static void check_user_list(struct parser *p, const char *key, const char *list)
{
	const char *s = skip_blank(list);

	if (!*s)
		return;
	for (;;) {
		size_t n = strcspn(s, ",");
		if (!*skip_blank_n(s, n)) {
			key_error(p, key_line_of(p, key), "pglease", key,
				  "empty user name in \"%s\": expected names separated by commas", list);
			return;
		}
		if (!s[n])
			return;
		s += n + 1;
	}
}

static void check_listen(struct parser *p, const char *spec)
{
	struct listen_addr addr;
	const char *why;

	if (*spec && !config_parse_listen(spec, &addr, &why))
		key_error(p, key_line_of(p, "metrics_listen"), "pglease", "metrics_listen",
			  "invalid value \"%s\": %s", spec, why);
}

/* listen_addr: "*" or numeric IPv4/IPv6 addresses, comma-separated (no host names: no DNS at start). */
static void check_listen_addr(struct parser *p, const char *list)
{
	const char *s = skip_blank(list);
	char one[INET6_ADDRSTRLEN + 1];
	uint8_t bin[sizeof(struct in6_addr)];

	while (*s) {
		size_t n = strcspn(s, ",");
		size_t len = n;
		while (len && isspace((unsigned char)s[len - 1]))
			len--;
		if (len == 0 || len >= sizeof(one)) {
			key_error(p, key_line_of(p, "listen_addr"), "pglease", "listen_addr",
				  "invalid value \"%s\": expected \"*\" or IP addresses separated by commas", list);
			return;
		}
		memcpy(one, s, len);
		one[len] = '\0';
		if (strcmp(one, "*") != 0 && inet_pton(AF_INET, one, bin) != 1 && inet_pton(AF_INET6, one, bin) != 1) {
			key_error(p, key_line_of(p, "listen_addr"), "pglease", "listen_addr",
				  "invalid address \"%s\": expected \"*\" or a numeric IPv4 or IPv6 address", one);
			return;
		}
		s = skip_blank(s + n + (s[n] == ','));
	}
}

/* A mode that offers TLS needs a key and certificate; verify-* needs a CA to verify clients against. */
static void check_client_tls(struct parser *p, const struct config *c)
{
	const char *why;

	if (!config_parse_tls_protocols(c->client_tls_protocols, &why))
		key_error(p, key_line_of(p, "client_tls_protocols"), "pglease", "client_tls_protocols",
			  "invalid value \"%s\": %s", c->client_tls_protocols, why);
	if (c->client_tls_sslmode == TLS_DISABLE)
		return;
	if (!*c->client_tls_key_file || !*c->client_tls_cert_file)
		key_error(p, key_line_of(p, "client_tls_sslmode"), "pglease", "client_tls_sslmode",
			  "%s needs client_tls_key_file and client_tls_cert_file", tls_modes[c->client_tls_sslmode]);
	if (c->client_tls_sslmode >= TLS_VERIFY_CA && !*c->client_tls_ca_file)
		key_error(p, key_line_of(p, "client_tls_sslmode"), "pglease", "client_tls_sslmode",
			  "%s needs client_tls_ca_file to verify client certificates", tls_modes[c->client_tls_sslmode]);
}

/*
 * A password method needs secrets, hba needs its rules; the files themselves
 * are read by the front end (daemon/auth.c), which reports their own errors.
 * md5/scram-sha-256 are satisfied by auth_user too (users looked up with auth_query).
 */
static void check_auth(struct parser *p)
{
	const struct config *c = p->cfg;
	int line = key_line_of(p, "auth_type");

	if ((c->auth_type == AUTH_MD5 || c->auth_type == AUTH_SCRAM) && !*c->auth_file && !*c->auth_user)
		key_error(p, line, "pglease", "auth_type",
			  "%s needs auth_file or auth_user: the users' secrets", auth_types[c->auth_type]);
	if (c->auth_type == AUTH_HBA && !*c->auth_hba_file)
		key_error(p, line, "pglease", "auth_type", "hba needs auth_hba_file: the rules");
}

/* Cross-key checks, reported where the operator has to make the fix. */
static void check_globals(struct parser *p)
{
	const struct config *c = p->cfg;
	int len = snprintf(NULL, 0, "%s/.s.PGSQL.%d", c->unix_socket_dir, c->listen_port);

	if (c->min_pool_size > c->default_pool_size)
		key_error(p, key_line_of(p, "min_pool_size"), "pglease", "min_pool_size",
			  "%d exceeds default_pool_size (%d)",
			  c->min_pool_size, c->default_pool_size);
	if (len > SOCKET_PATH_MAX)
		key_error(p, key_line_of(p, "unix_socket_dir"), "pglease", "unix_socket_dir",
			  "too long: the socket path \"%s/.s.PGSQL.%d\" would be %d bytes, at most %d fit",
			  c->unix_socket_dir, c->listen_port, len, SOCKET_PATH_MAX);
	check_user_list(p, "admin_users", c->admin_users);
	check_user_list(p, "stats_users", c->stats_users);
	check_listen(p, c->metrics_listen);
	check_listen_addr(p, c->listen_addr);
	check_client_tls(p, c);
	if (*c->auth_dbname && !config_find_db(c, c->auth_dbname))
		key_error(p, key_line_of(p, "auth_dbname"), "pglease", "auth_dbname",
			  "no [databases] entry \"%s\" (and no \"*\")", c->auth_dbname);
	check_auth(p);
}

/* ---- [databases]: pglease's own keys inside a libpq conninfo */

#define DF(field) offsetof(struct db_config, field)
static const struct key_def db_keys[] = {
	{ "pool_size", K_INT, DF(pool_size), 1, 10000, 0, NULL, NULL },
	{ "pool_mode", K_ENUM, DF(pool_mode), 0, 0, 0, NULL, pool_modes },
	{ "auth_user", K_STRING, DF(auth_user), 0, 0, 0, NULL, NULL },
	{ "max_db_connections", K_INT, DF(max_db_connections), 0, 1000000, 0, NULL, NULL },
	{ "max_db_client_connections", K_INT, DF(max_db_client_connections), 0, 1000000, 0, NULL, NULL },
	/* PgBouncer's [databases] name, and the [pglease] key's name for the same thing */
	{ "reserve_pool", K_INT, DF(reserve_pool_size), 0, 10000, 0, NULL, NULL },
	{ "reserve_pool_size", K_INT, DF(reserve_pool_size), 0, 10000, 0, NULL, NULL },
};

/* One "key = value" of a key/value conninfo. */
struct conn_param {
	const char *begin, *end;   /* as written, quotes and all */
	char *key, *value;         /* value unquoted and unescaped */
};

static const char *skip_space(const char *s)
{
	while (isspace((unsigned char)*s))
		s++;
	return s;
}

/*
 * libpq's value syntax: either bare up to whitespace, or single-quoted; a
 * backslash takes the next character literally in both. NULL when a quote
 * is left open.
 */
static char *read_conn_value(const char **sp)
{
	const char *s = *sp;
	bool quoted = *s == '\'';
	struct strbuf out = { 0 };

	s += quoted;
	for (;;) {
		if (!*s && quoted) {
			free(out.s);
			return NULL;
		}
		if (!*s || (!quoted && isspace((unsigned char)*s)))
			break;
		if (quoted && *s == '\'') {
			s++;
			break;
		}
		if (*s == '\\' && !*++s)
			continue;
		sb_add(&out, s++, 1);
	}
	*sp = s;
	return sb_take(&out);
}

/* 1: *pr filled in; 0: end of string; -1: libpq would reject what follows. */
static int next_conn_param(const char **sp, struct conn_param *pr)
{
	const char *s = skip_space(*sp), *key = s;
	size_t keylen;

	pr->begin = s;
	if (!*s)
		return 0;
	while (*s && *s != '=' && !isspace((unsigned char)*s))
		s++;
	keylen = s - key;
	s = skip_space(s);
	if (*s != '=')
		return -1;
	s = skip_space(s + 1);
	pr->value = read_conn_value(&s);
	if (!pr->value)
		return -1;
	pr->key = xstrndup(key, keylen);
	pr->end = *sp = s;
	return 1;
}

static bool take_pool_key(struct parser *p, struct db_config *db, const struct conn_param *pr)
{
	for (size_t i = 0; i < sizeof(db_keys) / sizeof(db_keys[0]); i++) {
		if (strcmp(pr->key, db_keys[i].name) != 0)
			continue;
		if (!parse_value(&db_keys[i], pr->value, db))
			value_error(p, "databases", db->name, pr->key, &db_keys[i], pr->value);
		return true;
	}
	return false;
}

static void add_param_text(struct strbuf *b, const char *s, size_t n)
{
	if (b->len)
		sb_add(b, " ", 1);
	sb_add(b, s, n);
}

/*
 * Moves pool_size, pool_mode and auth_user into db and keeps the other parameters as
 * written, so libpq later sees exactly the user's quoting. From a syntax
 * error on, the text is kept verbatim and libpq's own message explains it.
 */
static void split_conninfo(struct parser *p, struct db_config *db, const char *s)
{
	struct strbuf rest = { 0 };
	struct conn_param pr;
	int r;

	while ((r = next_conn_param(&s, &pr)) > 0) {
		if (!take_pool_key(p, db, &pr))
			add_param_text(&rest, pr.begin, pr.end - pr.begin);
		free(pr.key);
		free(pr.value);
	}
	if (r < 0)
		add_param_text(&rest, pr.begin, strlen(pr.begin));
	db->conninfo = sb_take(&rest);
}

static bool is_uri(const char *s)
{
	return strncmp(s, "postgresql://", 13) == 0 || strncmp(s, "postgres://", 11) == 0;
}

/* The likely reason behind a rejected conninfo, when there is an obvious one. */
static const char *conninfo_hint(const struct db_config *db)
{
	if (is_uri(db->conninfo) &&
	    (strstr(db->conninfo, "pool_size") || strstr(db->conninfo, "pool_mode")))
		return " (pool_size and pool_mode are not supported in a URI; use key=value form)";
	if (is_uri(db->conninfo) && strstr(db->conninfo, "auth_user"))
		return " (auth_user is not supported in a URI; use key=value form)";
	if (find_key(db->name))
		return " (this is a [pglease] setting, in the [databases] section)";
	return "";
}

static void check_conninfo(struct parser *p, const struct db_config *db)
{
	char *err = NULL;
	PQconninfoOption *opts = PQconninfoParse(db->conninfo, &err);

	if (opts) {
		PQconninfoFree(opts);
		return;
	}
	if (err)
		err[strcspn(err, "\n")] = '\0';
	key_error(p, p->lineno, "databases", db->name, "invalid conninfo: %s%s",
		  err ? err : "out of memory", conninfo_hint(db));
	PQfreemem(err);
}

static const struct db_config *find_exact(const struct config *cfg, const char *name)
{
	for (int i = 0; i < cfg->db_count; i++)
		if (strcmp(cfg->dbs[i].name, name) == 0)
			return &cfg->dbs[i];
	return NULL;
}

static bool check_db_name(struct parser *p, const char *name)
{
	const struct db_config *dup = find_exact(p->cfg, name);

	if (strlen(name) > MAX_DB_NAME) {
		key_error(p, p->lineno, "databases", name,
			  "database name is too long (%zu bytes, at most %d)",
			  strlen(name), MAX_DB_NAME);
		return false;
	}
	if (dup)
		key_error(p, p->lineno, "databases", name,
			  "duplicate database \"%s\" (first defined at line %d)", name, dup->line);
	return !dup;
}

static void add_database(struct parser *p, const char *name, const char *value)
{
	struct config *c = p->cfg;
	struct db_config *db;

	if (!check_db_name(p, name))
		return;
	if (c->db_count == p->db_cap) {
		p->db_cap = p->db_cap ? p->db_cap * 2 : 8;
		c->dbs = xrealloc(c->dbs, p->db_cap * sizeof(*c->dbs));
	}
	db = &c->dbs[c->db_count++];
	*db = (struct db_config){ .name = xstrdup(name), .pool_size = -1, .pool_mode = -1, .max_db_connections = -1,
				  .max_db_client_connections = -1, .reserve_pool_size = -1, .line = p->lineno };
	if (is_uri(value))
		db->conninfo = xstrdup(value);
	else
		split_conninfo(p, db, value);
	check_conninfo(p, db);
}

/* ---- driving inih */

/* ---- [users]: PgBouncer's per-user settings, "name = key=value key=value" */

#define UF(field) offsetof(struct user_config, field)
static const struct key_def user_keys[] = {
	{ "pool_mode", K_ENUM, UF(pool_mode), 0, 0, 0, NULL, pool_modes },
	{ "pool_size", K_INT, UF(pool_size), 1, 10000, 0, NULL, NULL },
	{ "max_user_connections", K_INT, UF(max_user_connections), 0, 1000000, 0, NULL, NULL },
	{ "max_user_client_connections", K_INT, UF(max_user_client_connections), 0, 1000000, 0, NULL, NULL },
};
#define N_USER_KEYS ((int)(sizeof(user_keys) / sizeof(user_keys[0])))

static void user_key(struct parser *p, struct user_config *u, const struct conn_param *pr)
{
	struct guess g = { pr->key, NULL, 0 };
	char hint[MAX_GUESS_LEN + 32];

	for (int i = 0; i < N_USER_KEYS; i++) {
		if (strcmp(pr->key, user_keys[i].name) != 0) {
			consider(&g, user_keys[i].name);
			continue;
		}
		if (!parse_value(&user_keys[i], pr->value, u))
			value_error(p, "users", u->name, pr->key, &user_keys[i], pr->value);
		return;
	}
	key_error(p, p->lineno, "users", u->name, "unknown setting \"%s\" (a user takes pool_mode, pool_size, "
		  "max_user_connections and max_user_client_connections)%s", pr->key,
		  did_you_mean(hint, sizeof(hint), guessed(&g)));
}

static void add_user(struct parser *p, const char *name, const char *value)
{
	struct config *c = p->cfg;
	const struct user_config *dup = config_find_user(c, name);
	struct conn_param pr;
	int r;

	if (dup) {
		key_error(p, p->lineno, "users", name, "duplicate user \"%s\" (first defined at line %d)", name, dup->line);
		return;
	}
	c->users = xrealloc(c->users, (c->user_count + 1) * sizeof(*c->users));
	struct user_config *u = &c->users[c->user_count++];
	*u = (struct user_config){ .name = xstrdup(name), .pool_mode = -1, .pool_size = -1, .max_user_connections = -1,
				   .max_user_client_connections = -1, .line = p->lineno };
	while ((r = next_conn_param(&value, &pr)) > 0) {
		user_key(p, u, &pr);
		free(pr.key);
		free(pr.value);
	}
	if (r < 0)
		key_error(p, p->lineno, "users", name, "syntax error at \"%s\": expected key=value settings separated "
			  "by blanks", pr.begin);
}

static const char *const sections[] = { "pglease", "databases", "users", NULL };

static bool known_section(struct parser *p, const char *section)
{
	char hint[MAX_GUESS_LEN + 32];
	const char *guess = nearest_of(section, sections);

	if (strcmp(section, "pglease") == 0 || strcmp(section, "databases") == 0 || strcmp(section, "users") == 0)
		return true;
	if (strcmp(section, "pgbouncer") == 0) {
		key_error(p, p->section_line, section, "", "unknown section; rename [pgbouncer] to [pglease]: "
			  "its keys have PgBouncer's names and meanings");
		return false;
	}
	key_error(p, p->section_line, section, "", "unknown section%s",
		  guess ? did_you_mean(hint, sizeof(hint), guess)
			: "; expected [pglease], [databases] or [users]");
	return false;
}

/*
 * inih only reports entries, so a section is judged at its first entry (and
 * reported at its header); entries of an unknown section are skipped.
 */
static bool section_usable(struct parser *p, const char *section, const char *name)
{
	if (!*section) {
		key_error(p, p->lineno, "", name,
			  "key outside any section; put it under [pglease] or [databases]");
		return false;
	}
	if (p->checked_section != p->section_line) {
		p->checked_section = p->section_line;
		p->section_ok = known_section(p, section);
	}
	return p->section_ok;
}

static int on_entry(void *user, const char *section, const char *name, const char *value)
{
	struct parser *p = user;

	p->entry_line = p->lineno;
	if (!section_usable(p, section, name))
		return 1;
	if (!*name)
		key_error(p, p->lineno, section, "", "missing name before \"=\"");
	else if (strcmp(section, "pglease") == 0)
		set_global(p, name, value);
	else if (strcmp(section, "users") == 0)
		add_user(p, name, value);
	else
		add_database(p, name, value);
	return 1;  /* errors are collected here; inih's return then means syntax only */
}

/* inih reports only its first syntax error; this catches the rest. */
static void end_line(struct parser *p)
{
	if (p->expect_entry && p->entry_line != p->lineno)
		add_error(p, p->lineno, "syntax error");
	p->expect_entry = false;
}

/* What inih will make of a line: entry, header, or nothing (blank/comment). */
static void classify_line(struct parser *p, const char *s)
{
	p->expect_entry = *s && !strchr(";#[", *s);
	if (*s != '[')
		return;
	if (strchr(s, ']'))
		p->section_line = p->lineno;
	else
		p->expect_entry = true;  /* never reaches the handler: flagged */
}

/* inih would split a longer line and misparse the tail as a line of its own. */
static bool line_fits(struct parser *p, ssize_t len, int size)
{
	if (len - (p->buf[len - 1] == '\n') <= size - 2)
		return true;
	add_error(p, p->lineno, "line too long (at most %d characters)", size - 2);
	p->expect_entry = false;
	return false;
}

/*
 * fgets-style reader for ini_parse_stream: counts lines (Debian's inih has
 * no line numbers in the handler) and removes leading whitespace, so an
 * indented line is never glued onto the previous value as a continuation.
 */
static char *read_line(char *dst, int size, void *stream)
{
	struct parser *p = stream;
	ssize_t n;
	char *s;

	end_line(p);
	n = getline(&p->buf, &p->bufcap, p->fp);
	if (n < 0) {
		p->read_errno = ferror(p->fp) ? errno : 0;
		return NULL;
	}
	s = p->buf;
	if (++p->lineno == 1 && strncmp(s, "\xEF\xBB\xBF", 3) == 0)
		s += 3;
	s = (char *)skip_space(s);
	classify_line(p, s);
	return strcpy(dst, line_fits(p, n, size) ? s : "");
}

static void parse_file(struct parser *p)
{
	int rc;

	/* Debian's inih sizes its line buffer from this variable at run time. */
	if (ini_max_line < MAX_LINE)
		ini_max_line = MAX_LINE;
	rc = ini_parse_stream(read_line, p, on_entry, p);
	end_line(p);
	if (p->read_errno)
		add_error(p, 0, "cannot read: %s", strerror(p->read_errno));
	else if (rc > 0 && !has_error_at(p, rc))
		add_error(p, rc, "syntax error");
	else if (rc < 0)
		add_error(p, 0, "cannot parse (inih error %d)", rc);
	check_globals(p);
}

static struct config *new_config(const char *path)
{
	struct config *c = xrealloc(NULL, sizeof(*c));

	*c = (struct config){ 0 };
	c->path = xstrdup(path);
	for (int i = 0; i < N_KEYS; i++)
		if (!parse_value(&keys[i], keys[i].def, c))
			abort();  /* a bad default in the table is a bug */
	return c;
}

static struct config *finish(struct parser *p, char **errors)
{
	struct config *cfg = p->cfg;
	char *text = p->nerrs ? join_errors(p) : NULL;

	if (text) {
		config_free(cfg);
		cfg = NULL;
	}
	if (errors)
		*errors = text;
	else
		free(text);
	for (int i = 0; i < p->nerrs; i++)
		free(p->errs[i].text);
	free(p->errs);
	free(p->buf);
	return cfg;
}

/* ---- interface */

struct config *config_load(const char *path, char **errors)
{
	struct parser p = { .path = path, .checked_section = -1 };

	p.cfg = new_config(path);
	p.fp = fopen(path, "r");
	if (!p.fp) {
		add_error(&p, 0, "cannot open: %s", strerror(errno));
		return finish(&p, errors);
	}
	parse_file(&p);
	fclose(p.fp);
	return finish(&p, errors);
}

void config_free(struct config *cfg)
{
	if (!cfg)
		return;
	for (int i = 0; i < N_KEYS; i++)
		if (keys[i].type == K_STRING)
			free(*(char **)((char *)cfg + keys[i].offset));
	for (int i = 0; i < cfg->db_count; i++) {
		free(cfg->dbs[i].name);
		free(cfg->dbs[i].conninfo);
		free(cfg->dbs[i].auth_user);
	}
	free(cfg->dbs);
	for (int i = 0; i < cfg->user_count; i++)
		free(cfg->users[i].name);
	free(cfg->users);
	free(cfg->path);
	free(cfg);
}

const struct db_config *config_find_db(const struct config *cfg, const char *name)
{
	const struct db_config *db = find_exact(cfg, name);

	return db ? db : find_exact(cfg, "*");
}

const struct user_config *config_find_user(const struct config *cfg, const char *name)
{
	for (int i = 0; i < cfg->user_count; i++)
		if (strcmp(cfg->users[i].name, name) == 0)
			return &cfg->users[i];
	return NULL;
}

const char *pool_mode_name(enum pool_mode mode)
{
	if ((int)mode < 0 || mode > POOL_MODE_SESSION)
		return "unknown";
	return pool_modes[mode];
}

/* ---- SHOW CONFIG, access lists, metrics_listen */

int config_key_count(void)
{
	return N_KEYS;
}

/* The i-th [pglease] key: its name, default, and current value written as in the file. */
const char *config_key_show(const struct config *c, int i, const char **def, char *value, size_t cap)
{
	const struct key_def *k = &keys[i];
	const void *field = (const char *)c + k->offset;

	*def = k->def;
	switch (k->type) {
	case K_INT: snprintf(value, cap, "%d", *(const int *)field); break;
	case K_SECONDS: snprintf(value, cap, "%.15g", *(const double *)field); break;
	case K_MODE: snprintf(value, cap, "%04o", *(const int *)field); break;
	case K_ENUM: snprintf(value, cap, "%s", k->choices[*(const int *)field]); break;
	case K_STRING: snprintf(value, cap, "%s", *(char *const *)field); break;
	}
	return k->name;
}

bool config_user_listed(const char *list, const char *user)
{
	size_t len = strlen(user);

	for (const char *s = list; *s;) {
		s = skip_blank(s);
		size_t n = strcspn(s, ",");
		size_t m = n;
		while (m && (s[m - 1] == ' ' || s[m - 1] == '\t'))
			m--;
		if (m == len && strncmp(s, user, len) == 0)
			return true;
		s += n + (s[n] == ',');
	}
	return false;
}

static bool parse_port(const char *s, int *port)
{
	return parse_int(s, 1, 65535, port);
}

/* Numeric addresses only: a name would need DNS, which may block the loop. */
bool config_parse_listen(const char *spec, struct listen_addr *out, const char **why)
{
	*out = (struct listen_addr){ 0 };
	if (spec[0] == '/') {
		out->family = AF_UNIX;
		if (strlen(spec) > (size_t)SOCKET_PATH_MAX)
			return *why = "socket path too long", false;
		snprintf(out->path, sizeof(out->path), "%s", spec);
		return true;
	}
	const char *colon = strrchr(spec, ':');
	if (!colon || !parse_port(colon + 1, &out->port))
		return *why = "expected ADDRESS:PORT (port 1 to 65535) or an absolute Unix socket path", false;
	size_t hlen = (size_t)(colon - spec);
	if (hlen >= 2 && spec[0] == '[' && spec[hlen - 1] == ']') {
		spec++;
		hlen -= 2;
	}
	if (hlen == 0 || hlen >= sizeof(out->host))
		return *why = "expected a numeric IPv4 or [IPv6] address before the port", false;
	memcpy(out->host, spec, hlen);
	out->host[hlen] = '\0';
	uint8_t scratch[16];
	if (inet_pton(AF_INET, out->host, scratch) == 1)
		out->family = AF_INET;
	else if (inet_pton(AF_INET6, out->host, scratch) == 1)
		out->family = AF_INET6;
	else
		return *why = "the address must be a numeric IPv4 or [IPv6] address (no host names)", false;
	return true;
}

static unsigned tls_protocol_bit(const char *word, size_t n)
{
	static const struct { const char *name; unsigned bits; } words[] = {
		{ "all", TLS_PROTO_10 | TLS_PROTO_11 | TLS_PROTO_12 | TLS_PROTO_13 },
		{ "secure", TLS_PROTO_12 | TLS_PROTO_13 },
		{ "default", TLS_PROTO_12 | TLS_PROTO_13 },
		{ "legacy", TLS_PROTO_10 | TLS_PROTO_11 | TLS_PROTO_12 | TLS_PROTO_13 },
		{ "tlsv1", TLS_PROTO_10 }, { "tlsv1.0", TLS_PROTO_10 }, { "tlsv1.1", TLS_PROTO_11 },
		{ "tlsv1.2", TLS_PROTO_12 }, { "tlsv1.3", TLS_PROTO_13 },
	};

	for (size_t i = 0; i < sizeof(words) / sizeof(*words); i++)
		if (strlen(words[i].name) == n && strncasecmp(words[i].name, word, n) == 0)
			return words[i].bits;
	return 0;
}

unsigned config_parse_tls_protocols(const char *spec, const char **why)
{
	unsigned bits = 0;
	const char *s = spec;

	for (;;) {
		s += strspn(s, ", :\t");
		if (!*s)
			break;
		size_t n = strcspn(s, ", :\t");
		unsigned bit = tls_protocol_bit(s, n);
		if (!bit) {
			*why = "expected all, secure, legacy, default or a list of tlsv1.0, tlsv1.1, tlsv1.2, tlsv1.3";
			return 0;
		}
		bits |= bit;
		s += n;
	}
	if (!bits)
		*why = "no protocol named";
	return bits;
}
