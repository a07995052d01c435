/*
 * listener.c — the sockets clients connect to: the Unix socket, and the
 * TCP ones listen_addr names.
 *
 * Under systemd socket activation the sockets are systemd's: pglease accepts
 * on them, but never unlinks the Unix one, so clients that connect while
 * pglease is down or restarting wait in its backlog for the next instance.
 * TCP sockets systemd passes are used too; listen_addr then opens nothing.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "client.h"
#include "daemon.h"
#include "listener.h"
#include "log.h"

#ifdef HAVE_LIBSYSTEMD
#include <systemd/sd-daemon.h>
#endif

/* The Unix socket first, then TCP ones. */
#define MAX_LISTENERS 16
struct listener {
	ev_io io;
	int fd;
	bool tcp;
};
static struct listener listeners[MAX_LISTENERS];
static int listener_count;
static ev_timer accept_pause;
static int listen_fd = -1, lock_fd = -1;   /* the Unix socket */
static bool socket_passed;      /* systemd's socket: not ours to unlink */
static char socket_path[sizeof(((struct sockaddr_un *)0)->sun_path)];
static char lock_path[sizeof(socket_path) + 8];

/*
 * Under socket activation systemd already runs one instance per socket, and
 * the socket's directory may not be ours to write: a lock file that cannot
 * be created is then only a warning. One held by another pglease is an error.
 */
static int take_lock(bool optional)
{
	char pid[32];

	lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
	if (lock_fd < 0 && optional) {
		log_warning("cannot open lock file %s: %s; going on (socket activation)", lock_path, strerror(errno));
		return 0;
	}
	if (lock_fd < 0) {
		log_error("cannot open lock file %s: %s", lock_path, strerror(errno));
		return -1;
	}
	if (flock(lock_fd, LOCK_EX | LOCK_NB) < 0) {
		ssize_t n = read(lock_fd, pid, sizeof(pid) - 1);
		pid[n > 0 ? n : 0] = '\0';
		pid[strcspn(pid, "\n")] = '\0';
		log_error("another pglease (pid %s) is already running on %s", *pid ? pid : "?", socket_path);
		close(lock_fd);
		lock_fd = -1;
		return -1;
	}
	int n = snprintf(pid, sizeof(pid), "%d\n", (int)getpid());
	if (ftruncate(lock_fd, 0) < 0 || pwrite(lock_fd, pid, n, 0) != n)
		log_warning("cannot write pid to %s", lock_path);
	return 0;
}

/* Too many open files: stop accepting for a moment instead of spinning. */
static void on_pause_end(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)l; (void)w; (void)revents;
	for (int i = 0; i < listener_count; i++)
		ev_io_start(loop, &listeners[i].io);
}

static void pause_accepts(void)
{
	for (int i = 0; i < listener_count; i++)
		ev_io_stop(loop, &listeners[i].io);
	ev_timer_set(&accept_pause, 1., 0.);
	ev_timer_start(loop, &accept_pause);
}

static void set_int_opt(int fd, int level, int name, int value, const char *what)
{
	if (setsockopt(fd, level, name, &value, sizeof(value)) < 0)
		log_warning("setsockopt %s on a client socket: %s", what, strerror(errno));
}

/* Small protocol messages go out at once; a dead peer is noticed by keepalive (tcp_keep*). */
static void tune_tcp(int fd)
{
	set_int_opt(fd, IPPROTO_TCP, TCP_NODELAY, 1, "TCP_NODELAY");
	if (!cfg->tcp_keepalive)
		return;
	set_int_opt(fd, SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE");
	if (cfg->tcp_keepidle > 0)
		set_int_opt(fd, IPPROTO_TCP, TCP_KEEPIDLE, cfg->tcp_keepidle, "TCP_KEEPIDLE");
	if (cfg->tcp_keepintvl > 0)
		set_int_opt(fd, IPPROTO_TCP, TCP_KEEPINTVL, cfg->tcp_keepintvl, "TCP_KEEPINTVL");
	if (cfg->tcp_keepcnt > 0)
		set_int_opt(fd, IPPROTO_TCP, TCP_KEEPCNT, cfg->tcp_keepcnt, "TCP_KEEPCNT");
}

static void on_accept(struct ev_loop *l, ev_io *w, int revents)
{
	struct listener *ls = w->data;

	(void)l; (void)revents;
	for (int i = 0; i < 64; i++) {
		struct sockaddr_storage peer;
		socklen_t len = sizeof(peer);
		int fd = accept4(ls->fd, (struct sockaddr *)&peer, &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			if (ls->tcp)
				tune_tcp(fd);
			client_accept(fd, ls->tcp, ls->tcp ? (struct sockaddr *)&peer : NULL, ls->tcp ? len : 0);
			continue;
		}
		if (errno == EMFILE || errno == ENFILE) {
			log_warning("accept: %s; pausing accepts for 1 s", strerror(errno));
			pause_accepts();
		}
		return;
	}
}

static int add_listener(int fd, bool tcp)
{
	if (listener_count == MAX_LISTENERS) {
		log_error("too many listening sockets (at most %d)", MAX_LISTENERS);
		return -1;
	}
	struct listener *ls = &listeners[listener_count++];
	ls->fd = fd;
	ls->tcp = tcp;
	ev_io_init(&ls->io, on_accept, fd, EV_READ);
	ls->io.data = ls;
	ev_io_start(loop, &ls->io);
	return 0;
}

/* "1.2.3.4" / "::1" and the port of a socket address; "?" for another family. */
static void addr_name(const struct sockaddr *a, char *host, size_t cap, int *port)
{
	const void *bin = NULL;
	int p = 0;

	if (a->sa_family == AF_INET) {
		bin = &((const struct sockaddr_in *)a)->sin_addr;
		p = ntohs(((const struct sockaddr_in *)a)->sin_port);
	} else if (a->sa_family == AF_INET6) {
		bin = &((const struct sockaddr_in6 *)a)->sin6_addr;
		p = ntohs(((const struct sockaddr_in6 *)a)->sin6_port);
	}
	if (!bin || !inet_ntop(a->sa_family, bin, host, (socklen_t)cap))
		snprintf(host, cap, "?");
	if (port)
		*port = p;
}

void listener_peer_name(const struct client *c, char *host, size_t cap, int *port)
{
	const struct sockaddr *peer = client_peer(c);

	if (peer) {
		addr_name(peer, host, cap, port);
		return;
	}
	snprintf(host, cap, "unix");
	if (port)
		*port = cfg->listen_port;
}

void listener_login_words(const struct client *c, const char *user, const char *database, char *out, size_t cap)
{
	char host[INET6_ADDRSTRLEN] = "[local]";

	if (client_peer(c))
		listener_peer_name(c, host, sizeof(host), NULL);
	snprintf(out, cap, "host \"%s\", user \"%s\", database \"%s\", %s", host, user, database,
		 client_on_tls(c) ? "SSL encryption" : "no encryption");
}

/* One TCP listener on host (numeric) or, for NULL, the wildcard of family. */
static int bind_tcp(int family, const char *host)
{
	struct sockaddr_storage a = { .ss_family = (sa_family_t)family };
	socklen_t len;
	char name[INET6_ADDRSTRLEN + 8];

	if (family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&a;
		in->sin_port = htons((uint16_t)cfg->listen_port);
		in->sin_addr.s_addr = htonl(INADDR_ANY);
		if (host && inet_pton(AF_INET, host, &in->sin_addr) != 1)
			return -1;
		len = sizeof(*in);
	} else {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&a;
		in6->sin6_port = htons((uint16_t)cfg->listen_port);
		in6->sin6_addr = in6addr_any;
		if (host && inet_pton(AF_INET6, host, &in6->sin6_addr) != 1)
			return -1;
		len = sizeof(*in6);
	}
	snprintf(name, sizeof(name), family == AF_INET6 ? "[%s]:%d" : "%s:%d",
		 host ? host : family == AF_INET6 ? "::" : "0.0.0.0", cfg->listen_port);
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int on = 1;
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0 ||
	    /* "*" binds both families: the IPv6 socket must leave IPv4 to the other one. */
	    (family == AF_INET6 && setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) < 0) ||
	    bind(fd, (struct sockaddr *)&a, len) < 0 || listen(fd, 4096) < 0) {
		log_error("cannot listen on %s (listen_addr): %s", name, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (add_listener(fd, true) < 0) {
		close(fd);
		return -1;
	}
	log_info("listening on %s", name);
	return 0;
}

/* listen_addr: "*" or comma-separated numeric addresses (the config loader checked them). */
static int open_tcp_listeners(void)
{
	const char *s = cfg->listen_addr;
	char one[INET6_ADDRSTRLEN + 1];

	while (*s) {
		s += strspn(s, " \t,");
		size_t n = strcspn(s, ",");
		size_t len = n;
		while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
			len--;
		if (len == 0)
			break;
		if (len >= sizeof(one))
			return -1;
		memcpy(one, s, len);
		one[len] = '\0';
		s += n;
		if (strcmp(one, "*") == 0) {
			if (bind_tcp(AF_INET, NULL) < 0 || bind_tcp(AF_INET6, NULL) < 0)
				return -1;
		} else if (bind_tcp(strchr(one, ':') ? AF_INET6 : AF_INET, one) < 0) {
			return -1;
		}
	}
	return 0;
}

static int bind_socket(void)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };

	memcpy(addr.sun_path, socket_path, strlen(socket_path) + 1);
	listen_fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (listen_fd < 0)
		return -1;
	unlink(socket_path);
	if (bind(listen_fd, (struct sockaddr *)&addr, sizeof(addr)) < 0)
		return -1;
	if (chmod(socket_path, (mode_t)cfg->unix_socket_mode) < 0)
		return -1;
	return listen(listen_fd, 4096);
}

#ifdef HAVE_LIBSYSTEMD
/*
 * The socket systemd passed (LISTEN_FDS): the one bound to our path, else
 * the only one passed if it is a listening Unix stream socket. -1: none.
 */
static int passed_socket(void)
{
	/* Not unset here: adopt_passed_tcp() reads LISTEN_FDS next; it unsets. */
	int n = sd_listen_fds(0);

	for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++)
		if (sd_is_socket_unix(fd, SOCK_STREAM, 1, socket_path, 0) > 0)
			return fd;
	if (n == 1 && sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1, NULL, 0) > 0) {
		log_warning("the socket passed by systemd is not bound to %s; using it anyway", socket_path);
		return SD_LISTEN_FDS_START;
	}
	for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++)
		if (sd_is_socket(fd, AF_UNIX, 0, -1) > 0) {
			log_warning("systemd passed %d sockets, none a listening Unix socket for %s; creating our own",
				    n, socket_path);
			break;
		}
	return -1;
}
/*
 * TCP sockets systemd passed (ListenStream=PORT or ADDR:PORT): accepted on
 * like listen_addr's. Returns how many, or -1.
 */
static int adopt_passed_tcp(void)
{
	int n = sd_listen_fds(1), found = 0;   /* the last reader: LISTEN_FDS is unset */

	for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++) {
		if (sd_is_socket(fd, AF_INET, SOCK_STREAM, 1) <= 0 && sd_is_socket(fd, AF_INET6, SOCK_STREAM, 1) <= 0)
			continue;
		int flags = fcntl(fd, F_GETFL);
		if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 ||
		    add_listener(fd, true) < 0)
			return -1;
		struct sockaddr_storage a;
		socklen_t len = sizeof(a);
		char host[INET6_ADDRSTRLEN] = "?";
		int port = 0;
		if (getsockname(fd, (struct sockaddr *)&a, &len) == 0)
			addr_name((struct sockaddr *)&a, host, sizeof(host), &port);
		log_info("socket activation: accepting TCP on %s port %d (fd %d)", host, port, fd);
		found++;
	}
	return found;
}
#else
static int passed_socket(void)
{
	return -1;
}

static int adopt_passed_tcp(void)
{
	return 0;
}
#endif

static int adopt_passed_socket(void)
{
	int fd = passed_socket();

	if (fd < 0)
		return -1;
	/* accept() must not block: the loop drains the backlog until EAGAIN. */
	int flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return -1;
	listen_fd = fd;
	socket_passed = true;
	return 0;
}

int listener_start(void)
{
	snprintf(socket_path, sizeof(socket_path), "%s/.s.PGSQL.%d", cfg->unix_socket_dir, cfg->listen_port);
	snprintf(lock_path, sizeof(lock_path), "%s.lock", socket_path);
	bool passed = adopt_passed_socket() == 0;

	if (take_lock(passed) < 0)
		return -1;
	if (passed) {
		log_info("socket activation: accepting on the socket passed by systemd (fd %d)", listen_fd);
	} else if (bind_socket() < 0) {
		log_error("cannot listen on %s: %s", socket_path, strerror(errno));
		return -1;
	}
	ev_timer_init(&accept_pause, on_pause_end, 1., 0.);
	if (add_listener(listen_fd, false) < 0)
		return -1;
	log_info("listening on %s", socket_path);
	int tcp_passed = adopt_passed_tcp();
	if (tcp_passed < 0)
		return -1;
	if (tcp_passed > 0 && *cfg->listen_addr)
		log_warning("listen_addr \"%s\" is ignored: systemd passed the TCP sockets", cfg->listen_addr);
	else if (open_tcp_listeners() < 0)
		return -1;
	return 0;
}

void listener_stop(void)
{
	ev_timer_stop(loop, &accept_pause);
	for (int i = 0; i < listener_count; i++) {
		ev_io_stop(loop, &listeners[i].io);
		close(listeners[i].fd);
	}
	listener_count = 0;
	if (listen_fd >= 0) {
		if (!socket_passed)
			unlink(socket_path);
		listen_fd = -1;
	}
	if (lock_fd >= 0) {
		unlink(lock_path);
		close(lock_fd);
		lock_fd = -1;
	}
}
