/*
 * worker.c — a thread for the few calls that block: PQcancel() and DNS.
 *
 * Jobs go in through one queue and come back through another; an ev_async
 * wakes the loop to run their done() callbacks. Only the loop thread
 * touches servers, pools and clients.
 */
#include <assert.h>
#include <pthread.h>
#include <stdbool.h>

#include <ev.h>

#include "worker.h"

static pthread_t thread;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static struct job *todo, *finished;
static bool stopping, started;
static ev_async finished_async;
static struct ev_loop *loop;   /* the loop done() callbacks run on */

static void push(struct job **list, struct job *job)
{
	job->next = NULL;
	while (*list)
		list = &(*list)->next;
	*list = job;
}

static struct job *next_job(void)
{
	pthread_mutex_lock(&lock);
	while (!todo && !stopping)
		pthread_cond_wait(&wake, &lock);
	struct job *job = todo;
	if (job)
		todo = job->next;
	pthread_mutex_unlock(&lock);
	return job;
}

static void *worker_main(void *arg)
{
	struct job *job;

	(void)arg;
	while ((job = next_job())) {
		job->run(job);
		pthread_mutex_lock(&lock);
		push(&finished, job);
		pthread_mutex_unlock(&lock);
		ev_async_send(loop, &finished_async);
	}
	return NULL;
}

static void on_finished(struct ev_loop *l, ev_async *w, int revents)
{
	(void)l; (void)w; (void)revents;
	pthread_mutex_lock(&lock);
	struct job *list = finished;
	finished = NULL;
	pthread_mutex_unlock(&lock);
	while (list) {
		struct job *next = list->next;
		list->done(list);
		list = next;
	}
}

int worker_start(struct ev_loop *on_loop)
{
	loop = on_loop;
	ev_async_init(&finished_async, on_finished);
	ev_async_start(loop, &finished_async);
	/* The worker's watcher alone must not keep the loop running. */
	ev_unref(loop);
	if (pthread_create(&thread, NULL, worker_main, NULL) != 0)
		return -1;
	started = true;
	return 0;
}

void worker_submit(struct job *job)
{
	/* A job is handed back to its done() on the loop thread: both must be there. */
	assert(started && job->run && job->done);
	pthread_mutex_lock(&lock);
	push(&todo, job);
	pthread_cond_signal(&wake);
	pthread_mutex_unlock(&lock);
}

void worker_stop(void)
{
	if (!started)
		return;
	pthread_mutex_lock(&lock);
	stopping = true;
	pthread_cond_signal(&wake);
	pthread_mutex_unlock(&lock);
	pthread_join(thread, NULL);
	on_finished(loop, &finished_async, 0);
	started = false;
}
