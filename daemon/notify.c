/*
 * notify.c — telling systemd how pglease is doing (sd_notify).
 *
 * sd_notify() is a datagram to $NOTIFY_SOCKET: it does not block, and it
 * does nothing when pglease was not started by systemd.
 */
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "client.h"
#include "daemon.h"
#include "log.h"
#include "notify.h"
#include "pool.h"

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>

/* STATUS= is looked at this often, and sent only when it changed. */
#define STATUS_INTERVAL 2.0

static ev_timer watchdog;
static ev_tstamp started_at, status_checked_at;
static bool ready;
static char last_status[128];

static void on_watchdog(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)l; (void)w; (void)revents;
	sd_notify(0, "WATCHDOG=1");
}

void notify_start(void)
{
	uint64_t usec = 0;

	started_at = ev_now(loop);
	if (sd_watchdog_enabled(0, &usec) <= 0 || usec == 0)
		return;
	double half = (double)usec / 2e6;
	ev_timer_init(&watchdog, on_watchdog, 0., half);
	ev_timer_start(loop, &watchdog);
	log_info("systemd watchdog: pinging every %g s", half);
}

/* A pool is warm at min_pool_size (or its size), or once a connect failed. */
static bool pool_warm(const struct pool *p)
{
	int want = cfg->min_pool_size < p->size ? cfg->min_pool_size : p->size;

	return !p->prewarmed || p->last_error || pool_server_count(p) - p->connecting.count >= want;
}

static bool all_warm(void)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &all_pools)
		if (!pool_warm(list_entry(pos, struct pool, node)))
			return false;
	return true;
}

static void send_status(ev_tstamp now, bool force)
{
	struct list_node *pos, *tmp;
	int leases = 0, waiting = 0;
	char status[sizeof(last_status)];

	if (!force && now - status_checked_at < STATUS_INTERVAL)
		return;
	status_checked_at = now;
	list_for_each_safe(pos, tmp, &all_pools) {
		struct pool *p = list_entry(pos, struct pool, node);
		leases += p->active.count;
		waiting += p->waiting.count;
	}
	snprintf(status, sizeof(status), "STATUS=clients %d, leases %d, waiting %d", client_count, leases, waiting);
	if (!force && strcmp(status, last_status) == 0)
		return;
	memcpy(last_status, status, sizeof(status));
	sd_notify(0, status);
}

void notify_maintain(ev_tstamp now)
{
	if (ready) {
		send_status(now, false);
		return;
	}
	bool timed_out = now - started_at >= cfg->server_connect_timeout;
	if (!all_warm() && !timed_out)
		return;
	if (!all_warm())
		log_warning("ready without a warm pool: min_pool_size not reached within server_connect_timeout");
	ready = true;
	sd_notify(0, "READY=1");
	send_status(now, true);
}

void notify_reloading(void)
{
	struct timespec ts;
	char msg[64];

	if (!ready)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu",
		 (unsigned long long)ts.tv_sec * 1000000ULL + (unsigned long long)ts.tv_nsec / 1000ULL);
	sd_notify(0, msg);
}

void notify_reloaded(void)
{
	/* Before the first READY a reload changes nothing systemd waits for. */
	if (ready)
		sd_notify(0, "READY=1");
}

void notify_stopping(void)
{
	sd_notify(0, "STOPPING=1");
}

#else

void notify_start(void) {}
void notify_maintain(ev_tstamp now) { (void)now; }
void notify_reloading(void) {}
void notify_reloaded(void) {}
void notify_stopping(void) {}

#endif
