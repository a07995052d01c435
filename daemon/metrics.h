/*
 * metrics.h — statistics in the Prometheus text format over HTTP.
 *
 *   metrics_start()   listen on metrics_listen (if set), driven by the loop
 *   metrics_stop()    close the listener
 *   metrics_sample()  one pool's counters and gauges, as SHOW and /metrics show them
 *   metrics_text()    the whole /metrics page (malloc'd)
 *
 * HTTP is libmicrohttpd's, run in its external-event-loop mode: its epoll
 * descriptor is watched by one ev_io and its own timeouts by one ev_timer,
 * so nothing blocks the loop.
 */
#ifndef PGLEASE_METRICS_H
#define PGLEASE_METRICS_H

#include "check.h"
#include "stats.h"

struct pool;

MUST_CHECK int metrics_start(void);
void metrics_stop(void);
void metrics_sample(const struct pool *p, struct stats_sample *out);
MUST_CHECK char *metrics_text(void);

#endif
