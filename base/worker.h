/*
 * worker.h — a thread for the few calls that block: PQcancel() and DNS.
 *
 *   worker_start()   start the thread (before the loop runs)
 *   worker_submit()  run job->run() on the thread, then job->done() on the loop
 *   worker_stop()    finish every queued job, join the thread
 *
 * A job is embedded in the caller's own struct; run() may touch only the
 * job's own fields, done() runs on the loop thread and may do anything.
 */
#ifndef PGLEASE_WORKER_H
#define PGLEASE_WORKER_H

#include "check.h"

struct job {
	struct job *next;
	void (*run)(struct job *job);
	void (*done)(struct job *job);
};

struct ev_loop;
MUST_CHECK int worker_start(struct ev_loop *loop);
void worker_submit(struct job *job);
void worker_stop(void);

#endif
