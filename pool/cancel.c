/*
 * cancel.c — delivering CancelRequests to backends without blocking the loop.
 *
 * A job carries its own PGcancel copy, so the worker thread never touches
 * the server; the server is not freed while its cancels are pending.
 */
#include <assert.h>
#include <stdlib.h>

#include "cancel.h"
#include "client.h"
#include "lease.h"
#include "log.h"
#include "server.h"
#include "worker.h"

struct cancel_job {
	struct job job;          /* first: the worker hands this back */
	struct server *server;
	struct client *requester;  /* closed once the cancel went out, or NULL */
	PGcancel *cancel;
	char error[256];
	int ok;
};

static void run(struct job *job)
{
	struct cancel_job *cj = (struct cancel_job *)job;

	cj->ok = PQcancel(cj->cancel, cj->error, sizeof(cj->error));
}

static void done(struct job *job)
{
	struct cancel_job *cj = (struct cancel_job *)job;
	struct server *s = cj->server;

	if (!cj->ok)
		log_warning("cancel for server %d (backend pid %d) failed: %s", s->id, s->backend_pid, cj->error);
	PQfreeCancel(cj->cancel);
	if (cj->requester) {
		cj->requester->jobs_pending--;
		client_close(cj->requester, "cancel request handled");
	}
	free(cj);
	assert(s->cancels_pending > 0);
	s->cancels_pending--;
	lease_cancel_done(s);
	client_cancel_delivered(s);
}

void cancel_submit(struct server *s)
{
	cancel_submit_for(s, NULL);
}

void cancel_submit_for(struct server *s, struct client *requester)
{
	struct cancel_job *cj = calloc(1, sizeof(*cj));

	/* Only a leased backend, or one behind the exit door, has a query to cancel (invariant 4). */
	assert(s->state == SERVER_LEASED || s->state == SERVER_CLEANING);
	/* The requester is a CancelRequest connection, closed once its cancel went out. */
	assert(!requester || requester->state == CLIENT_LOGIN);
	if (!cj || !s->conn || !(cj->cancel = PQgetCancel(s->conn))) {
		free(cj);
		log_warning("could not prepare a cancel for server %d", s->id);
		if (requester)
			client_close(requester, "cancel request could not be prepared");
		return;
	}
	cj->job.run = run;
	cj->job.done = done;
	cj->server = s;
	cj->requester = requester;
	if (requester)
		requester->jobs_pending++;
	s->cancels_pending++;
	log_info("cancelling the query on server %d (backend pid %d)", s->id, s->backend_pid);
	worker_submit(&cj->job);
}
