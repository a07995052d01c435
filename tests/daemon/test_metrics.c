/*
 * test_metrics.c — Criterion tests for daemon/metrics.c: the gauges a pool
 * sample computes from its lists (oldest wait, oldest lease, pinned clients,
 * idle backends due a check), the whole /metrics page over every pool, and
 * the HTTP answers on a Unix socket (the format itself: test_stats.c).
 */
#include <criterion/criterion.h>
#include <ev.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "env.h"
#include "lease.h"
#include "pause.h"
#include "admin.h"
#include "client.h"
#include "config.h"
#include "log.h"
#include "metrics.h"
#include "pool.h"
#include "server.h"

static struct config conf;
static struct pool pool;
static struct client clients[6];
static struct server servers[3];

static void on_list(struct list *l, struct list_node *n)
{
	list_node_init(n);
	list_push_tail(l, n);
}

static void setup(void)
{
	log_set_level(LOG_ERROR);
	loop = ev_default_loop(0);
	conf = (struct config){ .server_check_delay = 30, .server_check_query = "select 1", .metrics_listen = "" };
	cfg = &conf;
	pool = (struct pool){ .dbname = "app", .user = "alice", .size = 7, .mode = POOL_MODE_SESSION };
	list_init(&pool.connecting); list_init(&pool.idle); list_init(&pool.leased); list_init(&pool.cleaning);
	list_init(&pool.authq);
	list_init(&pool.login_wait); list_init(&pool.clients); list_init(&pool.waiting); list_init(&pool.active);
	memset(clients, 0, sizeof(clients));
	memset(servers, 0, sizeof(servers));
}

TestSuite(metrics, .init = setup);

/* Two waiting (oldest first), two leased (one pinned), one idle client; three idle backends. */
static ev_tstamp populate(void)
{
	ev_tstamp now = ev_now(loop);

	clients[0].state_since = now - 12.5;
	clients[1].state_since = now - 1;
	on_list(&pool.waiting, &clients[0].node);
	on_list(&pool.waiting, &clients[1].node);
	/* A lease's age is its own, not its client's time in ACTIVE. */
	static struct lease leases[2];
	leases[0] = (struct lease){ .client = &clients[2], .started = now - 40 };
	leases[1] = (struct lease){ .client = &clients[3], .started = now - 2 };
	clients[2].lease = &leases[0];
	clients[3].lease = &leases[1];
	clients[2].state_since = clients[3].state_since = now - 100;
	clients[3].pinned = true;
	on_list(&pool.active, &clients[2].node);
	on_list(&pool.active, &clients[3].node);
	on_list(&pool.clients, &clients[4].node);
	servers[0].idle_since = now - 31;            /* due a check */
	servers[1].idle_since = now - 30;            /* due: at the limit */
	servers[2].idle_since = now - 29.9;
	for (int i = 0; i < 3; i++)
		on_list(&pool.idle, &servers[i].node);
	return now;
}

Test(metrics, a_sample_reads_the_pool_lists)
{
	struct stats_sample s;

	populate();
	pool.stats.lease_count = 99;
	cr_assert_eq(pause_add(pool.dbname), 0);
	metrics_sample(&pool, &s);
	cr_assert_str_eq(s.database, "app");
	cr_assert_str_eq(s.user, "alice");
	cr_assert_str_eq(s.pool_mode, "session");
	cr_assert_eq(s.st.lease_count, 99);
	cr_assert_eq(s.cl_waiting, 2);
	cr_assert_eq(s.cl_active, 2);
	cr_assert_eq(s.cl_idle, 1);
	cr_assert_eq(s.sv_idle, 3);
	cr_assert_eq(s.pool_size, 7);
	cr_assert_eq(s.paused, 1);
	cr_assert_float_eq(s.maxwait, 12.5, 1e-9, "the first waiting client is the oldest");
	cr_assert_float_eq(s.oldest_lease, 40, 1e-9, "leases are appended as they start");
	cr_assert_eq(s.cl_pinned, 1);
	cr_assert_eq(s.sv_used, 2, "idle backends at or past server_check_delay");
}

Test(metrics, no_check_means_no_backend_is_due_one)
{
	struct stats_sample s;

	populate();
	conf.server_check_query = "";
	metrics_sample(&pool, &s);
	cr_assert_eq(s.sv_used, 0);
	conf.server_check_query = "select 1";
	conf.server_check_delay = 0;
	metrics_sample(&pool, &s);
	cr_assert_eq(s.sv_used, 0);
}

Test(metrics, an_empty_pool_has_zero_ages)
{
	struct stats_sample s;

	metrics_sample(&pool, &s);
	cr_assert_eq(s.maxwait, 0);
	cr_assert_eq(s.oldest_lease, 0);
	cr_assert_eq(s.cl_pinned, 0);
}

static void put_on_all_pools(struct pool *p)
{
	list_node_init(&p->node);
	list_push_tail(&all_pools, &p->node);
}

Test(metrics, the_page_has_every_pool_and_the_client_totals)
{
	struct pool other = pool;

	populate();
	other.dbname = "re\"ports";
	other.user = "bob";
	list_init(&other.waiting);
	list_init(&other.active);
	list_init(&other.idle);
	put_on_all_pools(&pool);
	put_on_all_pools(&other);
	client_count = 5;
	char *text = metrics_text();
	cr_assert_not_null(text);
	cr_assert(strstr(text, "pglease_client_connections 5\n"), "%s", text);
	cr_assert(strstr(text, "pglease_admin_clients 0\n"));
	cr_assert(strstr(text, "pglease_max_wait_seconds{database=\"app\",user=\"alice\"} 12.5\n"));
	cr_assert(strstr(text, "pglease_pinned_clients{database=\"app\",user=\"alice\"} 1\n"));
	cr_assert(strstr(text, "pglease_pool_size{database=\"re\\\"ports\",user=\"bob\"} 7\n"), "labels escaped");
	cr_assert(strstr(text, "pglease_clients{database=\"re\\\"ports\",user=\"bob\",state=\"waiting\"} 0\n"));
	free(text);
}

Test(metrics, an_empty_daemon_still_has_a_page)
{
	char *text = metrics_text();

	cr_assert_not_null(text);
	cr_assert(strstr(text, "pglease_client_connections 0\n"));
	cr_assert_null(strstr(text, "database=\""), "no pool, no labelled line");
	free(text);
}

#ifdef HAVE_LIBMICROHTTPD

/* ---- HTTP on a Unix socket ---- */

struct http {
	int fd;
	ev_io w;
	char reply[65536];
	size_t len;
	bool done;
};

static void on_reply(struct ev_loop *l, ev_io *w, int revents)
{
	struct http *h = w->data;
	ssize_t n = read(h->fd, h->reply + h->len, sizeof(h->reply) - 1 - h->len);

	(void)revents;
	if (n > 0) {
		h->len += (size_t)n;
		h->reply[h->len] = '\0';
		return;
	}
	h->done = true;
	ev_io_stop(l, w);
	ev_break(l, EVBREAK_ALL);
}

static void on_deadline(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)w, (void)revents;
	ev_break(l, EVBREAK_ALL);
}

/* One HTTP/1.0 request; the reply as the loop delivers it. */
static const char *http(const char *path, const char *request)
{
	static struct http h;
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	ev_timer deadline;

	memset(&h, 0, sizeof(h));
	h.fd = socket(AF_UNIX, SOCK_STREAM, 0);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	cr_assert_eq(connect(h.fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(write(h.fd, request, strlen(request)), (ssize_t)strlen(request));
	ev_io_init(&h.w, on_reply, h.fd, EV_READ);
	h.w.data = &h;
	ev_io_start(loop, &h.w);
	ev_timer_init(&deadline, on_deadline, 5., 0.);
	ev_timer_start(loop, &deadline);
	ev_run(loop, 0);
	ev_timer_stop(loop, &deadline);
	cr_assert(h.done, "no complete reply: <%s>", h.reply);
	close(h.fd);
	return h.reply;
}

Test(metrics, http_on_a_unix_socket)
{
	char path[64], listen[80];

	snprintf(path, sizeof(path), "/tmp/pglease-metrics-%d.sock", (int)getpid());
	snprintf(listen, sizeof(listen), "%s", path);
	conf.metrics_listen = listen;
	cr_assert_eq(metrics_start(), 0);
	const char *r = http(path, "GET /metrics HTTP/1.0\r\n\r\n");
	cr_assert_eq(strncmp(r, "HTTP/1.1 200", 12), 0, "%s", r);
	cr_assert(strstr(r, "Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"), "%s", r);
	cr_assert(strstr(r, "\r\n\r\n# HELP pglease_client_connections"), "%s", r);
	r = http(path, "GET /other HTTP/1.0\r\n\r\n");
	cr_assert_eq(strncmp(r, "HTTP/1.1 404", 12), 0, "%s", r);
	cr_assert(strstr(r, "not found; metrics are at /metrics\n"));
	r = http(path, "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n");
	cr_assert_eq(strncmp(r, "HTTP/1.1 405", 12), 0, "%s", r);
	metrics_stop();
	cr_assert_neq(access(path, F_OK), 0, "the socket file is removed");
}

Test(metrics, an_unusable_listen_address_is_refused)
{
	conf.metrics_listen = "/nonexistent-dir/pglease-metrics.sock";
	cr_assert_eq(metrics_start(), -1);
	conf.metrics_listen = "";
	cr_assert_eq(metrics_start(), 0, "empty: off");
}

#endif
