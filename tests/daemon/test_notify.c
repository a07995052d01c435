/*
 * test_notify.c — Criterion tests for daemon/notify.c: what pglease tells
 * systemd, read from a datagram socket named by $NOTIFY_SOCKET, as systemd
 * would. READY=1 once the prewarmed pools are warm (or at the latest after
 * server_connect_timeout), STATUS= only when it changed, RELOADING=1 and
 * READY=1 around a reload, STOPPING=1, and the watchdog's pings.
 */
#include <criterion/criterion.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "env.h"
#include "client.h"
#include "config.h"
#include "log.h"
#include "notify.h"
#include "pool.h"

#ifdef HAVE_LIBSYSTEMD

static struct config conf;
static struct pool pool;
static int sock = -1;
static char sock_path[108];
static ev_tstamp t0;

static void setup(void)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };

	log_set_level(LOG_ERROR);
	loop = ev_default_loop(0);
	conf = (struct config){ .min_pool_size = 2, .server_connect_timeout = 15 };
	cfg = &conf;
	snprintf(sock_path, sizeof(sock_path), "/tmp/pglease-notify-%d.sock", (int)getpid());
	memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
	sock = socket(AF_UNIX, SOCK_DGRAM, 0);
	cr_assert_eq(bind(sock, (struct sockaddr *)&sa, sizeof(sa)), 0);
	setenv("NOTIFY_SOCKET", sock_path, 1);
	pool = (struct pool){ .dbname = "app", .user = "u", .size = 10, .prewarmed = true };
	list_node_init(&pool.node);
	list_push_tail(&all_pools, &pool.node);
	notify_start();
	t0 = ev_now(loop);
}

static void teardown(void)
{
	close(sock);
	unlink(sock_path);
}

TestSuite(notify, .init = setup, .fini = teardown);

/* The datagrams sent since the last call, joined by '|'; "" for none. */
static const char *sent(void)
{
	static char all[1024];
	char one[256];
	ssize_t n;

	all[0] = '\0';
	while ((n = recv(sock, one, sizeof(one) - 1, MSG_DONTWAIT)) > 0) {
		one[n] = '\0';
		if (*all)
			strcat(all, "|");
		strcat(all, one);
	}
	return all;
}

Test(notify, ready_waits_for_a_prewarmed_pool_to_reach_min_pool_size)
{
	pool.idle.count = 1;
	pool.connecting.count = 1;
	notify_maintain(t0 + 1);
	cr_assert_str_eq(sent(), "", "one backend up, one still connecting");
	pool.leased.count = 1;
	notify_maintain(t0 + 2);
	cr_assert_str_eq(sent(), "READY=1|STATUS=clients 0, leases 0, waiting 0");
	notify_maintain(t0 + 10);
	cr_assert_str_eq(sent(), "", "READY=1 once");
}

Test(notify, a_failed_connect_counts_as_warm)
{
	pool.last_error = "connection refused";
	notify_maintain(t0 + 1);
	cr_assert_str_eq(sent(), "READY=1|STATUS=clients 0, leases 0, waiting 0");
}

Test(notify, min_pool_size_above_the_pool_size_waits_for_the_pool_size)
{
	pool.size = 1;
	pool.idle.count = 1;
	notify_maintain(t0 + 1);
	cr_assert_eq(strncmp(sent(), "READY=1", 7), 0);
}

Test(notify, pools_made_for_clients_do_not_delay_ready)
{
	pool.prewarmed = false;
	notify_maintain(t0);
	cr_assert_eq(strncmp(sent(), "READY=1", 7), 0);
}

Test(notify, a_backend_that_is_down_delays_ready_only_until_the_connect_timeout)
{
	notify_maintain(t0 + 14.9);
	cr_assert_str_eq(sent(), "");
	notify_maintain(t0 + 15);
	cr_assert_eq(strncmp(sent(), "READY=1", 7), 0);
}

Test(notify, status_is_sent_when_it_changed_and_looked_at_every_two_seconds)
{
	pool.prewarmed = false;
	notify_maintain(t0);
	sent();
	client_count = 3;
	pool.active.count = 2;
	pool.waiting.count = 1;
	notify_maintain(t0 + 1.9);
	cr_assert_str_eq(sent(), "", "too soon");
	notify_maintain(t0 + 2);
	cr_assert_str_eq(sent(), "STATUS=clients 3, leases 2, waiting 1");
	notify_maintain(t0 + 4);
	cr_assert_str_eq(sent(), "", "unchanged");
	client_count = 4;
	notify_maintain(t0 + 6);
	cr_assert_str_eq(sent(), "STATUS=clients 4, leases 2, waiting 1");
}

Test(notify, a_reload_before_ready_says_nothing)
{
	notify_reloading();
	notify_reloaded();
	cr_assert_str_eq(sent(), "");
}

Test(notify, a_reload_is_reloading_with_the_monotonic_clock_then_ready)
{
	struct timespec ts;
	unsigned long long usec = 0;

	pool.prewarmed = false;
	notify_maintain(t0);
	sent();
	clock_gettime(CLOCK_MONOTONIC, &ts);
	unsigned long long before = (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000ULL;
	notify_reloading();
	const char *msg = sent();
	cr_assert_eq(sscanf(msg, "RELOADING=1\nMONOTONIC_USEC=%llu", &usec), 1, "<%s>", msg);
	cr_assert_geq(usec, before);
	cr_assert_lt(usec - before, 1000000ULL);
	notify_reloaded();
	cr_assert_str_eq(sent(), "READY=1");
}

Test(notify, stopping)
{
	notify_stopping();
	cr_assert_str_eq(sent(), "STOPPING=1");
}

static void on_deadline(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)w, (void)revents;
	ev_break(l, EVBREAK_ALL);
}

Test(notify, the_watchdog_is_pinged_at_half_its_interval)
{
	char pid[16];
	ev_timer deadline;
	int pings = 0;

	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	setenv("WATCHDOG_PID", pid, 1);
	setenv("WATCHDOG_USEC", "40000", 1);
	notify_start();
	ev_timer_init(&deadline, on_deadline, 0.21, 0.);
	ev_timer_start(loop, &deadline);
	ev_run(loop, 0);
	for (const char *m = sent(); (m = strstr(m, "WATCHDOG=1")); m++)
		pings++;
	/* every 0.02 s from the start: 11 in 0.21 s (6 if it pinged at the full interval) */
	cr_assert(pings >= 8 && pings <= 12, "%d pings in 0.21 s", pings);
}

Test(notify, no_watchdog_when_systemd_set_none)
{
	ev_timer deadline;

	unsetenv("WATCHDOG_USEC");
	notify_start();
	ev_timer_init(&deadline, on_deadline, 0.05, 0.);
	ev_timer_start(loop, &deadline);
	ev_run(loop, 0);
	cr_assert_str_eq(sent(), "");
}

#endif
