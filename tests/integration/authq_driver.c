/*
 * authq_driver.c — drives pool/authq.c against a real PostgreSQL, before the
 * front end asks it at login (tests/integration/test_auth_query.py).
 *
 * usage: authq_driver CONFIG   (the same INI file pglease reads)
 *
 * It runs pglease's own loop, pools and backends (libpglease.a) and takes
 * one command a line on stdin, answering with one JSON object a line:
 *
 *   lookup DB USER...   one lookup per USER, all at once: {"user", "status",
 *                       "expired", "secret" | "error"} per answer as it comes,
 *                       then {"done": N} once every one was answered
 *   servers             {"servers": [{"pool", "state", "id", "pid"}, ...]}
 *   ping                {"pong": true}, answered at once (the loop is free)
 *   reload              the config file read again, as SIGHUP does: {"reloaded": 0|-1}
 *
 * pool_verify() runs after every loop iteration; EOF closes everything and exits 0.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ev.h>

#include "authq.h"
#include "config.h"
#include "env.h"
#include "log.h"
#include "pool.h"
#include "reload.h"
#include "server.h"
#include "verify.h"

struct asked {
	char *user;
	int *left;
};

static char line[4096];
static size_t line_len;
static int lookups_left;

static void json_string(const char *s)
{
	putchar('"');
	for (; *s; s++) {
		if (*s == '"' || *s == '\\')
			printf("\\%c", *s);
		else if ((unsigned char)*s < 0x20)
			printf("\\u%04x", *s);
		else
			putchar(*s);
	}
	putchar('"');
}

static void on_answer(void *arg, const struct authq_answer *a)
{
	struct asked *q = arg;
	static const char *const names[] = { "found", "no_user", "failed" };

	printf("{\"user\": ");
	json_string(q->user);
	printf(", \"status\": \"%s\", \"expired\": %s", names[a->status], a->expired ? "true" : "false");
	if (a->status == AUTHQ_FOUND) {
		printf(", \"secret\": ");
		json_string(a->secret);
	}
	if (a->status == AUTHQ_FAILED) {
		printf(", \"error\": ");
		json_string(a->error);
	}
	printf("}\n");
	if (--*q->left == 0)
		printf("{\"done\": true}\n");
	fflush(stdout);
	free(q->user);
	free(q);
}

static void lookup(char *args)
{
	char *save = NULL, *db = strtok_r(args, " ", &save), *user;
	int started = 0;

	lookups_left = 0;
	while (db && (user = strtok_r(NULL, " ", &save))) {
		struct asked *q = calloc(1, sizeof(*q));
		q->user = strdup(user);
		q->left = &lookups_left;
		lookups_left++;
		if (!authq_lookup(db, user, on_answer, q)) {
			printf("{\"user\": ");
			json_string(user);
			printf(", \"status\": \"not_started\"}\n");
			lookups_left--;
			free(q->user);
			free(q);
			continue;
		}
		started++;
	}
	if (!started)
		printf("{\"done\": true}\n");
}

static void servers(void)
{
	struct list_node *pos, *tmp, *spos, *stmp;
	bool first = true;

	printf("{\"servers\": [");
	list_for_each_safe(pos, tmp, &all_pools) {
		struct pool *p = list_entry(pos, struct pool, node);
		struct list *lists[] = { &p->connecting, &p->idle, &p->leased, &p->cleaning, &p->authq };
		for (size_t i = 0; i < sizeof(lists) / sizeof(*lists); i++)
			list_for_each_safe(spos, stmp, lists[i]) {
				struct server *s = list_entry(spos, struct server, node);
				printf("%s{\"pool\": \"%s/%s\", \"state\": \"%s\", \"id\": %d, \"pid\": %d}", first ? "" : ", ",
				       p->dbname, p->user, server_state_name(s->state), s->id, s->backend_pid);
				first = false;
			}
	}
	printf("]}\n");
}

static void command(char *text)
{
	if (strncmp(text, "lookup ", 7) == 0)
		lookup(text + 7);
	else if (strcmp(text, "servers") == 0)
		servers();
	else if (strcmp(text, "ping") == 0)
		printf("{\"pong\": true}\n");
	else if (strcmp(text, "reload") == 0)
		printf("{\"reloaded\": %d}\n", reload_apply());
	else
		printf("{\"error\": \"unknown command\"}\n");
	fflush(stdout);
}

static void close_everything(void)
{
	struct list_node *pos, *tmp;

	list_for_each_safe(pos, tmp, &all_pools)
		pool_close_servers(list_entry(pos, struct pool, node), "driver exiting");
}

static void on_stdin(struct ev_loop *l, ev_io *w, int revents)
{
	(void)revents;
	ssize_t n = read(w->fd, line + line_len, sizeof(line) - 1 - line_len);
	if (n <= 0) {
		ev_io_stop(l, w);
		ev_break(l, EVBREAK_ALL);
		return;
	}
	line_len += (size_t)n;
	char *nl;
	while ((nl = memchr(line, '\n', line_len))) {
		*nl = '\0';
		command(line);
		line_len -= (size_t)(nl + 1 - line);
		memmove(line, nl + 1, line_len);
	}
}

static void on_tick(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)l;
	(void)w;
	(void)revents;
	pool_maintain(ev_now(loop));
}

static void on_prepare(struct ev_loop *l, ev_prepare *w, int revents)
{
	(void)l;
	(void)w;
	(void)revents;
	server_reap();
	pool_verify();
}

int main(int argc, char **argv)
{
	char *errors = NULL;

	if (argc != 2) {
		fprintf(stderr, "usage: %s CONFIG\n", argv[0]);
		return 2;
	}
	struct config *c = config_load(argv[1], &errors);
	if (!c) {
		fprintf(stderr, "%s", errors ? errors : "cannot load the config\n");
		return 1;
	}
	cfg = c;
	log_set_level(c->log_level);
	loop = ev_default_loop(EVFLAG_AUTO);
	ev_io in;
	ev_timer tick;
	ev_prepare prep;
	ev_io_init(&in, on_stdin, 0, EV_READ);
	ev_io_start(loop, &in);
	ev_timer_init(&tick, on_tick, 0.2, 0.2);
	ev_timer_start(loop, &tick);
	ev_prepare_init(&prep, on_prepare);
	ev_prepare_start(loop, &prep);
	printf("{\"ready\": true}\n");
	fflush(stdout);
	ev_run(loop, 0);
	close_everything();
	server_reap();
	pool_free_all();
	reload_free_all();   /* cfg, and any config a reload replaced */
	return 0;
}
