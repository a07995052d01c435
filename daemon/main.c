/*
 * main.c — command line, signals and the event loop.
 *
 *   pglease CONFIG           run in the foreground, log to stderr
 *   pglease --check CONFIG   validate CONFIG (and load the client TLS files), exit 0 or 1
 *
 * Everything runs on one libev loop. Closed clients and servers are freed
 * from a prepare watcher, i.e. never inside the handler that closed them.
 *
 * Signals: SIGHUP reloads the config file; SIGTERM shuts down gracefully
 * (leases may finish for shutdown_timeout); SIGINT, or a second SIGTERM,
 * shuts down fast (roll back and close now).
 */
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "worker.h"
#include "admin.h"
#include "auth.h"
#include "client.h"
#include "daemon.h"
#include "drain.h"
#include "listener.h"
#include "log.h"
#include "login.h"
#include "metrics.h"
#include "notify.h"
#include "pool.h"
#include "reload.h"
#include "tls.h"
#include "server.h"
#include "verify.h"

#define MAINTENANCE_INTERVAL 0.2


static ev_signal sig_term, sig_int, sig_hup;
static ev_timer maintenance, shutdown_deadline;
static ev_prepare reaper;
static ev_check verifier;
static bool stopping, draining;

static void usage(FILE *out)
{
	fprintf(out,
		"pglease %s — a PostgreSQL connection pooler\n\n"
		"Usage:\n"
		"  pglease CONFIG           run in the foreground, logging to stderr\n"
		"  pglease --check CONFIG   validate CONFIG and exit 0 (valid) or 1\n"
		"  pglease --help | --version\n\n"
		"Clients connect to <unix_socket_dir>/.s.PGSQL.<listen_port>, and over TCP\n"
		"to <listen_addr>:<listen_port> when listen_addr is set.\n",
		PGLEASE_VERSION);
}

static void report(char *errors)
{
	fputs(errors ? errors : "unknown error\n", stderr);
	free(errors);
}

/* The config and the files it names (auth_file, auth_hba_file): all valid, or NULL. */
static struct config *load_or_report(const char *path, struct auth_files **files)
{
	char *errors = NULL;
	struct config *c = config_load(path, &errors);

	if (!c) {
		report(errors);
		return NULL;
	}
	if (!(*files = auth_files_load(c, &errors))) {
		report(errors);
		config_free(c);
		return NULL;
	}
	return c;
}

static void shut_down(const char *why);

/* Console sessions do not hold a shutdown up: they are closed with the rest. */
static int clients_left(void)
{
	return client_count - admin_clients.count;
}

static void on_maintenance(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)l; (void)w; (void)revents;
	ev_tstamp now = ev_now(loop);
	client_maintain(now);
	drain_sweep();
	pool_maintain(now);
	admin_maintain(now);
	reload_collect();
	notify_maintain(now);
	if (draining && clients_left() == 0)
		shut_down("graceful shutdown: every client has finished");
}

static void on_prepare(struct ev_loop *l, ev_prepare *w, int revents)
{
	(void)l; (void)w; (void)revents;
	client_reap();
	server_reap();
}

/*
 * Between iterations every handler has finished: the state lists must agree
 * with every object (pool/verify.c). At the highest priority this runs
 * before any handler of the new iteration.
 */
static void on_check(struct ev_loop *l, ev_check *w, int revents)
{
	(void)l; (void)w; (void)revents;
	pool_verify();
}

#ifdef PGLEASE_VERIFY
static const bool verify_built_in = true;
#else
static const bool verify_built_in = false;
#endif

/* The sanitizer build verifies always; another build when PGLEASE_VERIFY=1, else it costs nothing. */
static void start_verifier(void)
{
	const char *env = getenv("PGLEASE_VERIFY");

	if (!verify_built_in && !(env && strcmp(env, "1") == 0))
		return;
	ev_check_init(&verifier, on_check);
	ev_set_priority(&verifier, EV_MAXPRI);
	ev_check_start(loop, &verifier);
	log_info("pool_verify: invariants checked after every loop iteration");
}

static void shut_down(const char *why)
{
	if (stopping)
		return;
	stopping = true;
	log_info("%s: shutting down", why);
	notify_stopping();
	listener_stop();
	client_close_all("terminating connection: pglease is shutting down");
	pool_close_all();
	ev_timer_stop(loop, &maintenance);
	ev_timer_stop(loop, &shutdown_deadline);
	ev_break(loop, EVBREAK_ALL);
}

int daemon_reload(void)
{
	if (stopping || draining) {
		log_warning("reload ignored: pglease is shutting down");
		return -1;
	}
	notify_reloading();
	int rc = reload_apply();
	notify_reloaded();
	return rc;
}

static void on_shutdown_deadline(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)l; (void)w; (void)revents;
	log_info("shutdown_timeout (%g s) expired with %d clients left; rolling them back",
		 cfg->shutdown_timeout, client_count);
	shut_down("graceful shutdown timed out");
}

/*
 * Stop accepting (a systemd socket stays open in systemd, queueing new
 * clients for the next instance), let every lease end, then stop. Clients
 * without a lease, and those waiting for one, leave at once: none is inside
 * a transaction.
 */
static void start_graceful_shutdown(void)
{
	struct list_node *pos, *tmp;

	draining = true;
	notify_stopping();
	log_info("graceful shutdown: not accepting connections; leases have %g s (shutdown_timeout) to end",
		 cfg->shutdown_timeout);
	listener_stop();
	drain_logins("terminating connection: pglease is shutting down");
	list_for_each_safe(pos, tmp, &all_pools)
		drain_pool(list_entry(pos, struct pool, node), POOL_CLOSE_AT_LEASE_END, "pglease is shutting down");
	ev_timer_init(&shutdown_deadline, on_shutdown_deadline, cfg->shutdown_timeout, 0.);
	ev_timer_start(loop, &shutdown_deadline);
	if (clients_left() == 0)
		shut_down("graceful shutdown: no clients");
}

/* A second graceful request means: do not wait any longer. */
void daemon_shutdown(enum shutdown_kind kind)
{
	if (kind == SHUTDOWN_GRACEFUL && !draining && !stopping)
		start_graceful_shutdown();
	else
		shut_down(kind == SHUTDOWN_GRACEFUL ? "second graceful shutdown request, now fast" : "fast shutdown");
}

static void on_signal(struct ev_loop *l, ev_signal *w, int revents)
{
	(void)l; (void)revents;
	if (w->signum == SIGHUP) {
		daemon_reload();
		return;
	}
	daemon_shutdown(w->signum == SIGTERM ? SHUTDOWN_GRACEFUL : SHUTDOWN_FAST);
}

static void start_watchers(void)
{
	ev_signal_init(&sig_term, on_signal, SIGTERM);
	ev_signal_init(&sig_int, on_signal, SIGINT);
	ev_signal_init(&sig_hup, on_signal, SIGHUP);
	ev_signal_start(loop, &sig_term);
	ev_signal_start(loop, &sig_int);
	ev_signal_start(loop, &sig_hup);
	ev_timer_init(&maintenance, on_maintenance, MAINTENANCE_INTERVAL, MAINTENANCE_INTERVAL);
	ev_timer_start(loop, &maintenance);
	ev_prepare_init(&reaper, on_prepare);
	ev_prepare_start(loop, &reaper);
	start_verifier();
}

/* A freed client: what the console and authentication kept for it. */
static void release_client(struct client *c)
{
	admin_free(c);
	auth_release(c);
}

/* The front end's side of the layers below: they call up only through these. */
static void install_hooks(void)
{
	static const struct client_frontend frontend = {
		.login_readable = login_readable,
		.admin_readable = admin_on_readable,
		.admin_writable = admin_on_writable,
		.released = release_client,
	};
	static const struct admin_actions actions = {
		.reload = daemon_reload,
		.shutdown = daemon_shutdown,
	};

	client_set_frontend(&frontend);
	admin_set_actions(&actions);
}

static int run(const char *path)
{
	struct auth_files *files = NULL;
	struct config *c = load_or_report(path, &files);

	if (!c)
		return 1;
	cfg = c;
	auth_files_install(files);
	log_set_level(c->log_level);
	signal(SIGPIPE, SIG_IGN);
	loop = ev_default_loop(EVFLAG_AUTO);
	install_hooks();
	int rc = 1;
	if (auth_init() < 0) {
		log_error("cannot start: RAND_bytes failed");
		goto out;
	}
	if (tls_init() < 0 || listener_start() < 0 || worker_start(loop) < 0 || metrics_start() < 0)
		goto out;
	start_watchers();
	log_info("pglease %s started (pid %d)", PGLEASE_VERSION, (int)getpid());
	notify_start();
	pool_prewarm();
	notify_maintain(ev_now(loop));
	ev_run(loop, 0);
	rc = 0;
out:
	listener_stop();
	metrics_stop();
	worker_stop();
	client_reap();
	server_reap();
	auth_shutdown();
	pool_free_all();
	reload_free_all();   /* cfg, and any config a reload replaced */
	tls_free();
	return rc;
}

int main(int argc, char **argv)
{
	if (argc == 2 && strcmp(argv[1], "--help") == 0) {
		usage(stdout);
		return 0;
	}
	if (argc == 2 && strcmp(argv[1], "--version") == 0) {
		printf("pglease %s\n", PGLEASE_VERSION);
		return 0;
	}
	if (argc == 3 && strcmp(argv[1], "--check") == 0) {
		struct auth_files *files = NULL;
		struct config *c = load_or_report(argv[2], &files);
		/* The client TLS files too: a certificate that does not load would stop the start. */
		cfg = c;
		bool valid = c && tls_init() == 0;
		tls_free();
		if (valid)
			printf("%s: configuration is valid\n", argv[2]);
		auth_files_free(files);
		config_free(c);
		cfg = NULL;
		return valid ? 0 : 1;
	}
	if (argc != 2 || argv[1][0] == '-') {
		usage(stderr);
		return 2;
	}
	return run(argv[1]);
}
