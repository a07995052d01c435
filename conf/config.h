/*
 * config.h — pglease's configuration: an INI file read with inih.
 *
 * Interface routines:
 *   config_load()     parse and validate a file; NULL plus error text on failure
 *   config_free()     release a loaded config
 *   config_find_db()  the [databases] entry for a client-visible name ("*" fallback)
 *   config_find_user() the [users] entry for a user name
 *   pool_mode_name()  "transaction" or "session", as written in the file
 *   config_key_count() / config_key_show()  the [pglease] keys with value and default
 *   config_user_listed()   is a user in a comma-separated user list
 *   config_parse_listen()  parse metrics_listen
 *
 * A loaded config is immutable. Reload builds a new one and swaps it in only
 * when it loaded without error, so a bad file never replaces a good one.
 */
#ifndef PGLEASE_CONFIG_H
#define PGLEASE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "log.h"

enum pool_mode { POOL_MODE_TRANSACTION = 0, POOL_MODE_SESSION = 1 };
/* PgBouncer's default query, with valuntil so that account expiry is honoured (README, "auth_query"). */
#define AUTHQ_DEFAULT_QUERY "SELECT usename, passwd, valuntil FROM pg_shadow WHERE usename=$1"

/* PgBouncer's names and meanings: how a client proves who it is (daemon/auth.c). */
enum auth_type { AUTH_TRUST = 0, AUTH_PEER = 1, AUTH_MD5 = 2, AUTH_SCRAM = 3, AUTH_HBA = 4 };
enum session_state { SESSION_STATE_PIN = 0, SESSION_STATE_IGNORE = 1 };
/* client_tls_sslmode, weakest first: every mode from REQUIRE on refuses plain TCP. */
enum tls_mode { TLS_DISABLE = 0, TLS_ALLOW, TLS_PREFER, TLS_REQUIRE, TLS_VERIFY_CA, TLS_VERIFY_FULL };

/* One [databases] entry. */
struct db_config {
	char *name;          /* client-visible database name, or "*" */
	char *conninfo;      /* libpq conninfo, pglease's own keys taken out */
	int pool_size;       /* from pool_size= in the conninfo; -1: default_pool_size */
	int pool_mode;       /* enum pool_mode from pool_mode=; -1: the global pool_mode */
	char *auth_user;     /* from auth_user= in the conninfo; NULL: the global auth_user */
	int max_db_connections;        /* from max_db_connections=; -1: the global one (0: no cap) */
	int max_db_client_connections; /* from max_db_client_connections=; -1: the global one */
	int reserve_pool_size;         /* from reserve_pool= / reserve_pool_size=; -1: the global one */
	int line;            /* where it was defined */
};

/* One [users] entry: PgBouncer's per-user settings, each -1 when not given. */
struct user_config {
	char *name;
	int pool_mode;                   /* enum pool_mode: overrides the database's and the global one */
	int pool_size;                   /* overrides the database's pool_size and default_pool_size */
	int max_user_connections;        /* overrides the global max_user_connections (0: no cap) */
	int max_user_client_connections; /* overrides the global max_user_client_connections */
	int line;
};

struct config {
	char *path;                  /* the file it was loaded from */
	int listen_port;             /* 6432 */
	char *unix_socket_dir;       /* "/tmp" */
	int unix_socket_mode;        /* 0777 */
	enum auth_type auth_type;    /* peer */
	char *auth_file;             /* "": none; userlist "user" "secret" lines (relative: to the config's folder) */
	char *auth_hba_file;         /* "": none; pg_hba.conf rules for auth_type hba */
	double auth_failure_delay;   /* 1: seconds a failed password or hba check holds the client before its FATAL */
	enum pool_mode pool_mode;    /* transaction */
	int default_pool_size;       /* 20 */
	int min_pool_size;           /* 0 */
	int max_client_conn;         /* 100 */
	/* Durations in seconds; 0 disables where the reference says so. */
	double query_wait_timeout;   /* 120 */
	/* The timeouts that bound a lease or an idle client (pool/timeout.c); 0: off. */
	double query_timeout;        /* 0: a request in flight longer is cancelled (57014), the client stays */
	double idle_transaction_timeout; /* 0: idle inside a transaction longer: FATAL 25P03, rolled back */
	double transaction_timeout;  /* 0: a transaction open longer: FATAL 25P04, rolled back */
	double client_idle_timeout;  /* 0: a client without a lease idle longer: FATAL 57P05 */
	double client_stall_timeout; /* 30: a lease holder silent this long mid-message: FATAL 08P01 */
	double server_connect_timeout; /* 15 */
	double server_login_retry;   /* 15: longest pause between connect attempts after failures (pool.c backs off up to it) */
	int server_down_fail_fast;   /* 0: clients wait out an outage; 1: refused at once while the pool cannot connect */
	double client_login_timeout; /* 60 */
	double server_check_delay;   /* 30 */
	double server_idle_timeout;  /* 600 */
	double server_lifetime;      /* 3600 */
	double server_drain_timeout; /* 5: per step while cleaning a lease's backend */
	double shutdown_timeout;     /* 30: SIGTERM waits this long for leases to end */
	char *server_reset_query;    /* "DISCARD ALL"; "" for none */
	char *server_check_query;    /* "select 1"; "" disables the check */
	enum session_state session_state; /* pin: transaction mode keeps state-making clients on their backend */
	int max_prepared_statements; /* 200: per backend, transaction mode; 0 disables */
	enum log_level log_level;    /* info */
	char *admin_users;           /* "": comma-separated users with full admin console access */
	char *stats_users;           /* "": comma-separated users who may only SHOW */
	char *metrics_listen;        /* "": off; "ADDR:PORT" or "/path/to/socket" for Prometheus */
	double lease_warn_after;     /* 0: off; log a lease held longer, once */
	/* Clients over TCP (daemon/listener.c) and TLS (daemon/tls.c). */
	char *listen_addr;           /* "": no TCP; "*" all; else comma-separated addresses (restart) */
	int tcp_keepalive;           /* 1: SO_KEEPALIVE on accepted TCP sockets */
	int tcp_keepidle, tcp_keepintvl, tcp_keepcnt;  /* 0: the kernel's */
	enum tls_mode client_tls_sslmode;  /* disable */
	char *client_tls_key_file, *client_tls_cert_file, *client_tls_ca_file;  /* "" */
	char *client_tls_protocols;  /* "secure": tlsv1.2,tlsv1.3 */
	char *client_tls_ciphers;    /* "default": OpenSSL's */
	char *auth_user;             /* "": off; the role auth_query runs as (pool/authq.c) */
	char *auth_query;            /* AUTHQ_DEFAULT_QUERY: $1 is the user; returns usename, passwd[, valuntil] */
	char *auth_dbname;           /* "": the client's database; else the [databases] entry it runs in */
	double auth_query_cache_ttl; /* 10: seconds a found user's secret is reused; 0: not kept */
	/* Limits across pools (pool/limits.c); 0: none. */
	int max_db_connections;      /* backends of one database, all its pools */
	int max_user_connections;    /* backends of one user, all its pools */
	int max_db_client_connections;   /* clients of one database */
	int max_user_client_connections; /* clients of one user */
	int reserve_pool_size;       /* 0: extra backends a pool whose clients waited reserve_pool_timeout may open */
	double reserve_pool_timeout; /* 5 */
	struct db_config *dbs;
	int db_count;
	struct user_config *users;   /* [users] */
	int user_count;
};

/*
 * Load and validate path. On success returns the config and sets *errors to
 * NULL. On failure returns NULL and sets *errors to a malloc'd text, one
 * error per line, each "FILE:LINE: [section] key: message" and ending in a
 * newline, in file order (caller frees; errors may be NULL). Problems with
 * the file as a whole have no LINE: "FILE: cannot open: reason".
 */
struct config *config_load(const char *path, char **errors);
void config_free(struct config *cfg);
const struct db_config *config_find_db(const struct config *cfg, const char *name);
/* The [users] entry for a user name, or NULL. */
const struct user_config *config_find_user(const struct config *cfg, const char *name);
const char *pool_mode_name(enum pool_mode mode);

int config_key_count(void);
/* Fills value (as it would be written) and *def; returns the key's name. */
const char *config_key_show(const struct config *cfg, int i, const char **def, char *value, size_t cap);
bool config_user_listed(const char *list, const char *user);

/* metrics_listen, parsed: AF_UNIX with path, or AF_INET/AF_INET6 with host and port. */
struct listen_addr {
	int family;
	char host[64];
	int port;
	char path[108];
};
/* false with *why set when spec is not "ADDR:PORT", "[ADDR6]:PORT" or "/absolute/path". */
/* For a PgBouncer setting pglease has no key for: what takes its place; NULL for any other key. */
const char *config_pgbouncer_instead(const char *key);
int config_pgbouncer_key_count(void);
bool config_parse_listen(const char *spec, struct listen_addr *out, const char **why);

/*
 * client_tls_protocols as a set of TLS_PROTO_* bits: "all", "secure",
 * "legacy", "default" or a list of tlsv1.0 ... tlsv1.3 (comma, blank or
 * colon separated, a leading '+'/'!' ... not supported). 0 with *why set on error.
 */
#define TLS_PROTO_10 1
#define TLS_PROTO_11 2
#define TLS_PROTO_12 4
#define TLS_PROTO_13 8
unsigned config_parse_tls_protocols(const char *spec, const char **why);

#endif
