/*
 * listener.c — the Unix socket clients connect to.
 *
 * Under systemd socket activation the socket is systemd's: pglease accepts
 * on it, but never unlinks it, so clients that connect while pglease is
 * down or restarting wait in its backlog for the next instance.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
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

static ev_io accept_io;
static ev_timer accept_pause;
static int listen_fd = -1, lock_fd = -1;
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
	ev_io_start(loop, &accept_io);
}

static void on_accept(struct ev_loop *l, ev_io *w, int revents)
{
	(void)l; (void)w; (void)revents;
	for (int i = 0; i < 64; i++) {
		int fd = accept4(listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			client_accept(fd);
			continue;
		}
		if (errno == EMFILE || errno == ENFILE) {
			log_warning("accept: %s; pausing accepts for 1 s", strerror(errno));
			ev_io_stop(loop, &accept_io);
			ev_timer_set(&accept_pause, 1., 0.);
			ev_timer_start(loop, &accept_pause);
		}
		return;
	}
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
	int n = sd_listen_fds(1);

	for (int fd = SD_LISTEN_FDS_START; fd < SD_LISTEN_FDS_START + n; fd++)
		if (sd_is_socket_unix(fd, SOCK_STREAM, 1, socket_path, 0) > 0)
			return fd;
	if (n == 1 && sd_is_socket_unix(SD_LISTEN_FDS_START, SOCK_STREAM, 1, NULL, 0) > 0) {
		log_warning("the socket passed by systemd is not bound to %s; using it anyway", socket_path);
		return SD_LISTEN_FDS_START;
	}
	if (n > 0)
		log_warning("systemd passed %d sockets, none a listening Unix socket for %s; creating our own",
			    n, socket_path);
	return -1;
}
#else
static int passed_socket(void)
{
	return -1;
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
	ev_io_init(&accept_io, on_accept, listen_fd, EV_READ);
	ev_timer_init(&accept_pause, on_pause_end, 1., 0.);
	ev_io_start(loop, &accept_io);
	log_info("listening on %s", socket_path);
	return 0;
}

void listener_stop(void)
{
	if (listen_fd >= 0) {
		ev_io_stop(loop, &accept_io);
		ev_timer_stop(loop, &accept_pause);
		close(listen_fd);
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
