/*
 * test_worker.c — Criterion tests for base/worker.c: jobs run on the worker
 * thread in the order submitted, their done() runs on the loop's thread and
 * only from the loop, done() may submit more work, and worker_stop() runs
 * every job still queued (and its done()) before it returns.
 */
#include <criterion/criterion.h>
#include <ev.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdbool.h>
#include <unistd.h>

#include "worker.h"

/* The loop the worker hands finished jobs back on. */
static struct ev_loop *loop;

static int start_worker(void)
{
	return worker_start(loop);
}

#define JOBS 8

struct record {
	pthread_t main_thread;
	int ran[JOBS * 2], run_count;
	int done[JOBS * 2], done_count;
	int want_done;                  /* ev_break once this many done() have run */
	bool run_on_main, done_off_main;
	sem_t gate;                     /* the first job waits here when gated */
	bool gated;
};

static struct record rec;

struct tjob {
	struct job job;                 /* first: the worker hands this back */
	int id;
	bool chain;                     /* done() submits the next job */
};

static struct tjob jobs[JOBS * 2];

static void on_run(struct job *job)
{
	struct tjob *t = (struct tjob *)job;

	if (t->id == 0 && rec.gated)
		sem_wait(&rec.gate);
	/* Only the worker thread runs jobs, one at a time: no lock needed for these. */
	rec.run_on_main |= pthread_equal(pthread_self(), rec.main_thread);
	rec.ran[rec.run_count++] = t->id;
}

static void on_done(struct job *job)
{
	struct tjob *t = (struct tjob *)job;

	rec.done_off_main |= !pthread_equal(pthread_self(), rec.main_thread);
	rec.done[rec.done_count++] = t->id;
	if (t->chain && t->id + 1 < JOBS * 2)
		worker_submit(&jobs[t->id + 1].job);
	if (rec.done_count == rec.want_done)
		ev_break(loop, EVBREAK_ALL);
}

static void on_deadline(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)w; (void)revents;
	ev_break(l, EVBREAK_ALL);
}

static void setup(void)
{
	loop = ev_default_loop(0);
	rec = (struct record){ .main_thread = pthread_self() };
	sem_init(&rec.gate, 0, 0);
	for (int i = 0; i < JOBS * 2; i++)
		jobs[i] = (struct tjob){ .job = { .run = on_run, .done = on_done }, .id = i };
}

TestSuite(worker, .init = setup);

/* Run the loop until want done() callbacks have run, or 5 s have passed. */
static void run_loop_until(int want)
{
	ev_timer deadline;

	rec.want_done = want;
	ev_timer_init(&deadline, on_deadline, 5., 0.);
	ev_timer_start(loop, &deadline);     /* also what keeps the loop running: the worker's watcher does not */
	ev_run(loop, 0);
	ev_timer_stop(loop, &deadline);
}

static void assert_in_order(const int *ids, int n)
{
	for (int i = 0; i < n; i++)
		cr_assert_eq(ids[i], i, "position %d holds job %d", i, ids[i]);
}

Test(worker, jobs_run_off_the_loop_and_are_done_on_it_in_order)
{
	cr_assert_eq(start_worker(), 0);
	for (int i = 0; i < JOBS; i++)
		worker_submit(&jobs[i].job);
	run_loop_until(JOBS);
	cr_assert_eq(rec.done_count, JOBS, "the deadline passed with %d of %d done", rec.done_count, JOBS);
	cr_assert_eq(rec.run_count, JOBS);
	assert_in_order(rec.ran, JOBS);
	assert_in_order(rec.done, JOBS);
	cr_assert_not(rec.run_on_main, "run() must not run on the loop's thread");
	cr_assert_not(rec.done_off_main, "done() must run on the loop's thread");
	worker_stop();
	cr_assert_eq(rec.done_count, JOBS, "nothing is done twice");
}

Test(worker, done_waits_for_the_loop)
{
	cr_assert_eq(start_worker(), 0);
	worker_submit(&jobs[0].job);
	/* The job has run once the worker thread is idle again; give it the time to. */
	for (int i = 0; i < 500 && rec.run_count == 0; i++)
		usleep(1000);
	cr_assert_eq(rec.run_count, 1);
	usleep(5000);
	cr_assert_eq(rec.done_count, 0, "done() ran without the loop");
	run_loop_until(1);
	cr_assert_eq(rec.done_count, 1);
	worker_stop();
}

Test(worker, done_may_submit_more_work)
{
	cr_assert_eq(start_worker(), 0);
	for (int i = 0; i < JOBS; i++)
		jobs[i].chain = true;
	worker_submit(&jobs[0].job);
	run_loop_until(JOBS + 1);
	cr_assert_eq(rec.done_count, JOBS + 1, "%d done", rec.done_count);
	assert_in_order(rec.done, JOBS + 1);
	worker_stop();
}

Test(worker, stop_finishes_every_queued_job_and_its_done)
{
	cr_assert_eq(start_worker(), 0);
	rec.gated = true;                /* job 0 blocks, so the others are still queued at stop */
	for (int i = 0; i < JOBS; i++)
		worker_submit(&jobs[i].job);
	cr_assert_eq(rec.done_count, 0);
	sem_post(&rec.gate);
	worker_stop();                   /* the loop never ran */
	cr_assert_eq(rec.run_count, JOBS, "%d of %d jobs ran", rec.run_count, JOBS);
	cr_assert_eq(rec.done_count, JOBS, "%d of %d done() ran", rec.done_count, JOBS);
	assert_in_order(rec.ran, JOBS);
	assert_in_order(rec.done, JOBS);
	cr_assert_not(rec.done_off_main, "worker_stop() runs the done() callbacks on its caller's thread");
}

Test(worker, the_worker_alone_does_not_keep_the_loop_running, .timeout = 2)
{
	cr_assert_eq(start_worker(), 0);
	/* No other watcher: ev_run() returns at once instead of waiting on the worker's. */
	ev_run(loop, 0);
	worker_stop();
}

Test(worker, stop_without_start_is_harmless)
{
	worker_stop();
	cr_assert_eq(rec.done_count, 0);
}
