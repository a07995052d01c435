/*
 * cancel.c — delivering CancelRequests to backends without blocking the loop.
 *
 * One worker thread takes jobs from a queue, runs the blocking PQcancel(),
 * and hands finished jobs back; an ev_async wakes the loop to collect them.
 * Only the loop thread touches servers: a job carries its own PGcancel
 * copy, and the server it belongs to is not freed while jobs are pending.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "cancel.h"
#include "daemon.h"
#include "lease.h"
#include "log.h"
#include "server.h"

struct cancel_job {
	struct cancel_job *next;
	struct server *server;
	PGcancel *cancel;
	char error[256];
	int ok;
};

static pthread_t worker;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t wake = PTHREAD_COND_INITIALIZER;
static struct cancel_job *todo, *done;
static bool stopping, started;
static ev_async done_async;

static void push(struct cancel_job **list, struct cancel_job *job)
{
	job->next = NULL;
	while (*list)
		list = &(*list)->next;
	*list = job;
}

static struct cancel_job *next_job(void)
{
	pthread_mutex_lock(&lock);
	while (!todo && !stopping)
		pthread_cond_wait(&wake, &lock);
	struct cancel_job *job = todo;
	if (job)
		todo = job->next;
	pthread_mutex_unlock(&lock);
	return job;
}

static void *worker_main(void *arg)
{
	struct cancel_job *job;

	(void)arg;
	while ((job = next_job())) {
		job->ok = PQcancel(job->cancel, job->error, sizeof(job->error));
		pthread_mutex_lock(&lock);
		push(&done, job);
		pthread_mutex_unlock(&lock);
		ev_async_send(loop, &done_async);
	}
	return NULL;
}

static void finish(struct cancel_job *job)
{
	struct server *s = job->server;

	if (!job->ok)
		log_warning("cancel for server %d (backend pid %d) failed: %s", s->id, s->backend_pid, job->error);
	PQfreeCancel(job->cancel);
	free(job);
	s->cancels_pending--;
	lease_cancel_done(s);
}

static void on_done(struct ev_loop *l, ev_async *w, int revents)
{
	(void)l; (void)w; (void)revents;
	pthread_mutex_lock(&lock);
	struct cancel_job *list = done;
	done = NULL;
	pthread_mutex_unlock(&lock);
	while (list) {
		struct cancel_job *next = list->next;
		finish(list);
		list = next;
	}
}

int cancel_start(void)
{
	ev_async_init(&done_async, on_done);
	ev_async_start(loop, &done_async);
	ev_unref(loop);
	if (pthread_create(&worker, NULL, worker_main, NULL) != 0)
		return -1;
	started = true;
	return 0;
}

void cancel_submit(struct server *s)
{
	struct cancel_job *job = calloc(1, sizeof(*job));

	if (!job || !s->conn || !(job->cancel = PQgetCancel(s->conn))) {
		free(job);
		log_warning("could not prepare a cancel for server %d", s->id);
		return;
	}
	job->server = s;
	s->cancels_pending++;
	log_info("cancelling the query on server %d (backend pid %d)", s->id, s->backend_pid);
	pthread_mutex_lock(&lock);
	push(&todo, job);
	pthread_cond_signal(&wake);
	pthread_mutex_unlock(&lock);
}

void cancel_stop(void)
{
	if (!started)
		return;
	pthread_mutex_lock(&lock);
	stopping = true;
	pthread_cond_signal(&wake);
	pthread_mutex_unlock(&lock);
	pthread_join(worker, NULL);
	on_done(loop, &done_async, 0);
	started = false;
}
