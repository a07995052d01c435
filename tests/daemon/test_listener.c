/*
 * test_listener.c — Criterion tests for daemon/listener.c in a temporary
 * directory: the socket's name and mode, the lock file and its pid, a
 * second pglease refused without touching the first one's socket, a stale
 * socket replaced, accepted connections becoming clients, and the cleanup.
 * (Socket activation is covered by tests/integration/test_systemd.py.)
 */
#include <criterion/criterion.h>
#include <ev.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "env.h"
#include "client.h"
#include "config.h"
#include "listener.h"
#include "log.h"

static struct config conf;
static char dir[64], sock_path[128], lock_path[140];

static void setup(void)
{
	log_set_level(LOG_ERROR);
	loop = ev_default_loop(0);
	snprintf(dir, sizeof(dir), "/tmp/pglease-listener-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	conf = (struct config){ .unix_socket_dir = dir, .listen_port = 7777, .unix_socket_mode = 0770,
				.max_client_conn = 10, .client_login_timeout = 60 };
	cfg = &conf;
	snprintf(sock_path, sizeof(sock_path), "%s/.s.PGSQL.7777", dir);
	snprintf(lock_path, sizeof(lock_path), "%s.lock", sock_path);
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_PID");
}

static void teardown(void)
{
	listener_stop();
	unlink(sock_path);
	unlink(lock_path);
	rmdir(dir);
}

TestSuite(listener, .init = setup, .fini = teardown);

static int connect_to(const char *path)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);

	memcpy(sa.sun_path, path, strlen(path) + 1);
	return connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0 ? fd : (close(fd), -1);
}

Test(listener, the_socket_is_named_as_postgres_names_it_with_the_configured_mode)
{
	struct stat st;
	char pid[32] = "";

	cr_assert_eq(listener_start(), 0);
	cr_assert_eq(stat(sock_path, &st), 0);
	cr_assert(S_ISSOCK(st.st_mode));
	cr_assert_eq(st.st_mode & 0777, 0770);
	FILE *f = fopen(lock_path, "r");
	cr_assert_not_null(f);
	cr_assert_not_null(fgets(pid, sizeof(pid), f));
	fclose(f);
	cr_assert_eq(atoi(pid), getpid(), "the lock file names the running pglease");
}

static void on_deadline(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)w, (void)revents;
	ev_break(l, EVBREAK_ONE);
}

Test(listener, a_connection_becomes_a_client_logging_in)
{
	ev_timer deadline;

	cr_assert_eq(listener_start(), 0);
	int a = connect_to(sock_path), b = connect_to(sock_path);
	cr_assert_geq(a, 0);
	cr_assert_geq(b, 0);
	ev_timer_init(&deadline, on_deadline, 0.05, 0.);
	ev_timer_start(loop, &deadline);
	ev_run(loop, EVRUN_ONCE);
	ev_timer_stop(loop, &deadline);
	cr_assert_eq(login_clients.count, 2, "one accept event takes the whole backlog");
	cr_assert_eq(client_count, 2);
	close(a);
	close(b);
}

Test(listener, a_second_pglease_is_refused_and_leaves_the_socket_alone)
{
	int held = open(lock_path, O_RDWR | O_CREAT, 0600);
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int other = socket(AF_UNIX, SOCK_STREAM, 0);

	/* The first pglease: its socket, and its lock held (flock: per open file). */
	memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
	cr_assert_eq(bind(other, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(other, 4), 0);
	cr_assert_eq(flock(held, LOCK_EX | LOCK_NB), 0);
	cr_assert_eq(write(held, "12345\n", 6), 6);
	cr_assert_eq(listener_start(), -1);
	int c = connect_to(sock_path);
	cr_assert_geq(c, 0, "the first one's socket still accepts");
	close(c);
	close(other);
	close(held);
}

Test(listener, a_stale_socket_is_replaced)
{
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	int dead = socket(AF_UNIX, SOCK_STREAM, 0);

	memcpy(sa.sun_path, sock_path, strlen(sock_path) + 1);
	cr_assert_eq(bind(dead, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(dead);                       /* a crashed pglease: the file is left, nobody listens */
	cr_assert_lt(connect_to(sock_path), 0, "premise: the stale socket refuses connections");
	cr_assert_eq(listener_start(), 0);
	int c = connect_to(sock_path);
	cr_assert_geq(c, 0);
	close(c);
}

Test(listener, stop_removes_the_socket_and_the_lock)
{
	cr_assert_eq(listener_start(), 0);
	listener_stop();
	cr_assert_neq(access(sock_path, F_OK), 0);
	cr_assert_neq(access(lock_path, F_OK), 0);
	listener_stop();                   /* twice is harmless */
}

Test(listener, a_directory_that_does_not_exist_is_an_error)
{
	conf.unix_socket_dir = "/nonexistent/pglease-dir";
	cr_assert_eq(listener_start(), -1);
}
