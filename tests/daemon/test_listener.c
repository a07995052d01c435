/*
 * test_listener.c — Criterion tests for daemon/listener.c in a temporary
 * directory: the socket's name and mode, the lock file and its pid, a
 * second pglease refused without touching the first one's socket, a stale
 * socket replaced, accepted connections becoming clients, and the cleanup.
 * TCP listeners (listen_addr): accepted sockets are TCP clients with their
 * peer address, TCP_NODELAY and keepalive; a bind failure stops the start.
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
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

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
				.max_client_conn = 10, .client_login_timeout = 60, .listen_addr = (char *)"",
				.tcp_keepalive = 1 };
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

/* A TCP port nothing listens on (bound and released). */
static int free_tcp_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

static int connect_tcp(int family, const char *host, int port)
{
	struct sockaddr_storage a = { .ss_family = (sa_family_t)family };
	socklen_t len;
	int fd = socket(family, SOCK_STREAM, 0);

	if (family == AF_INET) {
		((struct sockaddr_in *)&a)->sin_port = htons((uint16_t)port);
		inet_pton(AF_INET, host, &((struct sockaddr_in *)&a)->sin_addr);
		len = sizeof(struct sockaddr_in);
	} else {
		((struct sockaddr_in6 *)&a)->sin6_port = htons((uint16_t)port);
		inet_pton(AF_INET6, host, &((struct sockaddr_in6 *)&a)->sin6_addr);
		len = sizeof(struct sockaddr_in6);
	}
	return connect(fd, (struct sockaddr *)&a, len) == 0 ? fd : (close(fd), -1);
}

static void run_once(void)
{
	ev_timer deadline;

	ev_timer_init(&deadline, on_deadline, 0.05, 0.);
	ev_timer_start(loop, &deadline);
	ev_run(loop, EVRUN_ONCE);
	ev_timer_stop(loop, &deadline);
}

static int opt(int fd, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);

	cr_assert_eq(getsockopt(fd, level, name, &v, &len), 0);
	return v;
}

Test(listener, tcp_clients_on_every_address_with_their_peer_nodelay_and_keepalive)
{
	conf.listen_port = free_tcp_port();
	conf.listen_addr = (char *)"*";
	conf.tcp_keepidle = 42;
	cr_assert_eq(listener_start(), 0);
	int v4 = connect_tcp(AF_INET, "127.0.0.1", conf.listen_port);
	int v6 = connect_tcp(AF_INET6, "::1", conf.listen_port);
	cr_assert_geq(v4, 0);
	cr_assert_geq(v6, 0, "\"*\" listens on IPv6 too");
	run_once();
	run_once();
	cr_assert_eq(login_clients.count, 2);
	struct list_node *pos, *tmp;
	int families = 0;
	list_for_each_safe(pos, tmp, &login_clients) {
		struct client *c = list_entry(pos, struct client, node);
		const struct sockaddr *peer = client_peer(c);
		char host[64];
		int port;
		cr_assert(c->tcp);
		cr_assert_not_null(peer);
		listener_peer_name(c, host, sizeof(host), &port);
		cr_assert(strcmp(host, "127.0.0.1") == 0 || strcmp(host, "::1") == 0, "peer %s", host);
		cr_assert_gt(port, 0);
		families |= peer->sa_family == AF_INET ? 1 : peer->sa_family == AF_INET6 ? 2 : 4;
		cr_assert_eq(opt(c->fd, IPPROTO_TCP, TCP_NODELAY), 1, "TCP_NODELAY on accepted sockets");
		cr_assert_eq(opt(c->fd, SOL_SOCKET, SO_KEEPALIVE), 1);
		cr_assert_eq(opt(c->fd, IPPROTO_TCP, TCP_KEEPIDLE), 42);
	}
	cr_assert_eq(families, 3);
	close(v4);
	close(v6);
}

Test(listener, unix_clients_have_no_peer_address)
{
	cr_assert_eq(listener_start(), 0);
	int a = connect_to(sock_path);
	run_once();
	cr_assert_eq(login_clients.count, 1);
	struct client *c = list_entry(list_first(&login_clients), struct client, node);
	char host[64];
	int port;
	cr_assert(!c->tcp);
	cr_assert_null(client_peer(c));
	listener_peer_name(c, host, sizeof(host), &port);
	cr_assert_str_eq(host, "unix");
	close(a);
}

Test(listener, a_tcp_address_that_cannot_be_bound_stops_the_start)
{
	conf.listen_port = free_tcp_port();
	conf.listen_addr = (char *)"127.0.0.1, 192.0.2.1";   /* TEST-NET-1: not ours */
	cr_assert_eq(listener_start(), -1);
}

Test(listener, an_address_in_use_stops_the_start)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(a);
	int busy = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_eq(bind(busy, (struct sockaddr *)&a, sizeof(a)), 0);
	cr_assert_eq(listen(busy, 1), 0);
	cr_assert_eq(getsockname(busy, (struct sockaddr *)&a, &len), 0);
	conf.listen_port = ntohs(a.sin_port);
	conf.listen_addr = (char *)"127.0.0.1";
	cr_assert_eq(listener_start(), -1);
	close(busy);
}
