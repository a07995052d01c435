/*
 * metrics.c — /metrics in the Prometheus text format, served by
 * libmicrohttpd inside pglease's libev loop.
 *
 * libmicrohttpd runs without threads of its own (no internal polling
 * thread): MHD_USE_EPOLL gives one epoll descriptor that becomes readable
 * whenever any of its sockets needs attention, so a single ev_io on it plus
 * an ev_timer for MHD_get_timeout() is the whole integration; every wakeup
 * calls MHD_run(), which never blocks. Without libmicrohttpd at build time
 * metrics_listen is refused at start with a clear message.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "admin.h"
#include "caps.h"
#include "client.h"
#include "daemon.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "server.h"

/* ---- sampling the pools ---- */

static double oldest_since(const struct list *l, ev_tstamp now)
{
	struct list_node *first = list_first(l);

	return first ? now - list_entry(first, struct client, node)->state_since : 0;
}

/* The active list is in grant order: its first client holds the oldest lease. */
static double oldest_lease(const struct pool *p, ev_tstamp now)
{
	struct list_node *first = list_first(&p->active);

	return first ? now - list_entry(first, struct client, node)->lease->started : 0;
}

/* Idle backends that would get server_check_query before their next lease. */
static int idle_due_check(const struct pool *p, ev_tstamp now)
{
	struct list_node *pos, *tmp;
	int n = 0;

	if (cfg->server_check_delay <= 0 || !*cfg->server_check_query)
		return 0;
	list_for_each_safe(pos, tmp, &p->idle)
		n += now - list_entry(pos, struct server, node)->idle_since >= cfg->server_check_delay;
	return n;
}

static int pinned_clients(const struct pool *p)
{
	struct list_node *pos, *tmp;
	int n = 0;

	list_for_each_safe(pos, tmp, &p->active)
		n += list_entry(pos, struct client, node)->pinned;
	return n;
}

/* Oldest lease: clients on pool->active are appended as their leases start. */
void metrics_sample(const struct pool *p, struct stats_sample *s)
{
	ev_tstamp now = ev_now(loop);

	*s = (struct stats_sample){
		.database = p->dbname, .user = p->user, .pool_mode = pool_mode_name(p->mode), .st = p->stats,
		.cl_active = p->active.count, .cl_waiting = p->waiting.count, .cl_idle = p->clients.count,
		.cl_login_wait = p->login_wait.count, .sv_idle = p->idle.count,
		.sv_active = p->leased.count + p->authq.count,   /* leased, or lent to an auth_query lookup */
		.sv_used = idle_due_check(p, now), .sv_login = p->connecting.count,
		.sv_cleaning = p->cleaning.count, .pool_size = p->size, .paused = pool_paused(p),
		.maxwait = oldest_since(&p->waiting, now), .oldest_lease = oldest_lease(p, now),
		.cl_pinned = pinned_clients(p),
		.reserve_pool = caps_reserve_size(p),
		.sv_reserve = pool_server_count(p) > p->size ? pool_server_count(p) - p->size : 0,
		.max_db_connections = caps_db_cap(p), .max_user_connections = caps_user_cap(p),
	};
}

char *metrics_text(void)
{
	struct list_node *pos, *tmp;
	struct stats_sample *samples = calloc(all_pools.count + 1, sizeof(*samples));
	int n = 0;

	if (!samples)
		return NULL;
	list_for_each_safe(pos, tmp, &all_pools)
		metrics_sample(list_entry(pos, struct pool, node), &samples[n++]);
	char *text = stats_prometheus(samples, n, client_count, admin_clients.count);
	free(samples);
	return text;
}

#ifdef HAVE_LIBMICROHTTPD
#include <microhttpd.h>

static struct MHD_Daemon *mhd;
static ev_io mhd_io;
static ev_timer mhd_timer;
static int listen_fd = -1;
static char unix_path[108];

static enum MHD_Result send_text(struct MHD_Connection *conn, unsigned status, char *body, bool owned)
{
	struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body,
								  owned ? MHD_RESPMEM_MUST_FREE : MHD_RESPMEM_PERSISTENT);
	if (!r)
		return MHD_NO;
	MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
	enum MHD_Result ok = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return ok;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
				  const char *version, const char *upload, size_t *upload_size, void **state)
{
	(void)cls, (void)version, (void)upload, (void)upload_size, (void)state;
	if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0)
		return send_text(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET /metrics\n", false);
	if (strcmp(url, "/metrics") != 0)
		return send_text(conn, MHD_HTTP_NOT_FOUND, "not found; metrics are at /metrics\n", false);
	char *text = metrics_text();
	if (!text)
		return send_text(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n", false);
	return send_text(conn, MHD_HTTP_OK, text, true);
}

/* Run whatever is ready, then sleep until its next timeout. */
static void mhd_poll(void)
{
	MHD_UNSIGNED_LONG_LONG ms;

	MHD_run(mhd);
	ev_timer_stop(loop, &mhd_timer);
	if (MHD_get_timeout(mhd, &ms) == MHD_YES) {
		ev_timer_set(&mhd_timer, ms / 1000.0, 0.);
		ev_timer_start(loop, &mhd_timer);
	}
}

static void on_mhd_io(struct ev_loop *l, ev_io *w, int revents)
{
	(void)l, (void)w, (void)revents;
	mhd_poll();
}

static void on_mhd_timer(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)l, (void)w, (void)revents;
	mhd_poll();
}

static int bind_unix(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -1;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	unlink(path);   /* a stale socket from an earlier run; pglease's own lock guards the main socket */
	if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || listen(fd, 64) < 0) {
		close(fd);
		return -1;
	}
	snprintf(unix_path, sizeof(unix_path), "%s", path);
	return fd;
}

static int bind_inet(const struct listen_addr *la)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len;
	int one = 1;

	if (la->family == AF_INET) {
		struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)la->port);
		inet_pton(AF_INET, la->host, &sin->sin_addr);
		len = sizeof(*sin);
	} else {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)la->port);
		inet_pton(AF_INET6, la->host, &sin6->sin6_addr);
		len = sizeof(*sin6);
	}
	int fd = socket(la->family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 64) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int metrics_start(void)
{
	struct listen_addr la;
	const char *why;

	if (!*cfg->metrics_listen)
		return 0;
	if (!config_parse_listen(cfg->metrics_listen, &la, &why))
		return log_error("metrics_listen \"%s\": %s", cfg->metrics_listen, why), -1;
	listen_fd = la.family == AF_UNIX ? bind_unix(la.path) : bind_inet(&la);
	if (listen_fd < 0)
		return log_error("metrics_listen \"%s\": cannot listen: %s", cfg->metrics_listen, strerror(errno)), -1;
	/* MHD owns listen_fd from here: MHD_stop_daemon() closes it. */
	mhd = MHD_start_daemon(MHD_USE_EPOLL | MHD_USE_ERROR_LOG, 0, NULL, NULL, on_request, NULL,
			       MHD_OPTION_LISTEN_SOCKET, listen_fd, MHD_OPTION_CONNECTION_LIMIT, 64u,
			       MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
	const union MHD_DaemonInfo *info = mhd ? MHD_get_daemon_info(mhd, MHD_DAEMON_INFO_EPOLL_FD) : NULL;
	if (!info) {
		metrics_stop();
		return log_error("metrics_listen \"%s\": libmicrohttpd could not start", cfg->metrics_listen), -1;
	}
	ev_io_init(&mhd_io, on_mhd_io, info->epoll_fd, EV_READ);
	ev_io_start(loop, &mhd_io);
	ev_timer_init(&mhd_timer, on_mhd_timer, 0., 0.);
	log_info("metrics served at %s (GET /metrics)", cfg->metrics_listen);
	return 0;
}

void metrics_stop(void)
{
	if (mhd) {
		ev_io_stop(loop, &mhd_io);
		ev_timer_stop(loop, &mhd_timer);
		MHD_stop_daemon(mhd);
		mhd = NULL;
	} else if (listen_fd >= 0) {
		close(listen_fd);
	}
	listen_fd = -1;
	if (*unix_path)
		unlink(unix_path);
	*unix_path = '\0';
}

#else /* !HAVE_LIBMICROHTTPD */

int metrics_start(void)
{
	if (!*cfg->metrics_listen)
		return 0;
	log_error("metrics_listen is set but this pglease was built without libmicrohttpd "
		  "(install libmicrohttpd-dev and rebuild)");
	return -1;
}

void metrics_stop(void)
{
}

#endif
