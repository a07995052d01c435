/*
 * notify.h — telling systemd how pglease is doing (sd_notify).
 *
 *   notify_start()      after listening: arm the watchdog, note when startup began
 *   notify_maintain()   periodic: READY=1 once warm, STATUS= when it changed
 *   notify_reloading()  RELOADING=1 with MONOTONIC_USEC=, before a reload
 *   notify_reloaded()   READY=1 again after a reload (applied or not)
 *   notify_stopping()   STOPPING=1
 *
 * READY=1 is sent once pglease listens and every pool that exists from the
 * start (its conninfo names the user) has reached min_pool_size or seen a
 * connect fail, or at the latest server_connect_timeout after start: a
 * backend that is down delays READY, it never blocks it. The watchdog is
 * pinged at half of WatchdogSec from the loop's own timer, so a stuck loop
 * misses its pings. Built without libsystemd, all of these do nothing.
 */
#ifndef PGLEASE_NOTIFY_H
#define PGLEASE_NOTIFY_H

#include <ev.h>

void notify_start(void);
void notify_maintain(ev_tstamp now);
void notify_reloading(void);
void notify_reloaded(void);
void notify_stopping(void);

#endif
