/*
 * test_auth.c — Criterion tests for daemon/auth.c: the files a config
 * names (auth_file, auth_hba_file: found relative to the config, errors
 * with FILE:LINE, all or nothing), and a client's md5 exchange, its
 * failure delay and its release, on a real loop with socketpairs (no
 * PostgreSQL: the pool of "app" is paused, tests/lib/client_pair.h).
 * SCRAM end to end, and the words against PostgreSQL's own, are in
 * tests/integration/test_client_auth.py.
 */
#include <criterion/criterion.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../lib/client_pair.h"
#include "admin.h"
#include "auth.h"
#include "client.h"
#include "login.h"
#include "md5auth.h"
#include "pool.h"
#include "proto.h"
#include "worker.h"

static void release(struct client *c)
{
	admin_free(c);
	auth_release(c);
}

static const struct client_frontend front_end = {
	.login_readable = login_readable,
	.admin_readable = admin_on_readable,
	.admin_writable = admin_on_writable,
	.released = release,
};

static char dir[64];

static void write_file(const char *name, const char *text)
{
	char path[128];

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fputs(text, f);
	fclose(f);
}

/* A config file in dir naming users.txt (relative: found beside the config). */
static struct config *config_in_dir(const char *settings)
{
	char path[128], *errors = NULL;

	snprintf(path, sizeof(path), "%s/pglease.ini", dir);
	FILE *f = fopen(path, "w");
	cr_assert_not_null(f);
	fprintf(f, "[pglease]\n%s\n" PAIR_INI_DATABASES, settings);
	fclose(f);
	struct config *c = config_load(path, &errors);
	cr_assert_not_null(c, "%s", errors ? errors : "");
	return c;
}

static void setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/pglease-auth-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static void teardown(void)
{
	char cmd[128];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	cr_assert_eq(system(cmd), 0);
}

TestSuite(auth, .init = setup, .fini = teardown, .timeout = 10);

/* ---- the files */

Test(auth, files_are_found_beside_the_config)
{
	write_file("users.txt", "\"alice\" \"pw\"\n");
	write_file("hba.conf", "local all all md5\n");
	struct config *c = config_in_dir("auth_type = hba\nauth_file = users.txt\nauth_hba_file = hba.conf");
	char *errors = NULL;
	struct auth_files *f = auth_files_load(c, &errors);

	cr_assert_not_null(f, "%s", errors ? errors : "");
	cr_assert_null(errors);
	auth_files_free(f);
	config_free(c);
}

Test(auth, every_broken_file_is_reported_and_nothing_is_loaded)
{
	write_file("users.txt", "\"alice\" \"pw\"\n\"alice\" \"again\"\n");
	write_file("hba.conf", "local all all md5\nlocal all all password\n");
	struct config *c = config_in_dir("auth_type = hba\nauth_file = users.txt\nauth_hba_file = hba.conf");
	char *errors = NULL, want_users[128], want_hba[128];

	cr_assert_null(auth_files_load(c, &errors));
	cr_assert_not_null(errors);
	snprintf(want_users, sizeof(want_users), "%s/users.txt:2: ", dir);
	snprintf(want_hba, sizeof(want_hba), "%s/hba.conf:2: ", dir);
	cr_assert_not_null(strstr(errors, want_users), "%s", errors);
	cr_assert_not_null(strstr(errors, want_hba), "%s", errors);
	free(errors);
	config_free(c);
}

Test(auth, a_missing_file_is_an_error)
{
	struct config *c = config_in_dir("auth_type = md5\nauth_file = nowhere.txt");
	char *errors = NULL;

	cr_assert_null(auth_files_load(c, &errors));
	cr_assert_not_null(strstr(errors, "nowhere.txt"), "%s", errors);
	free(errors);
	config_free(c);
}

/* ---- a client's md5 exchange */

static const char *const alice_app[] = { "user", "alice", "database", "app", NULL };
static const char *const ghost_app[] = { "user", "ghost", "database", "app", NULL };

/* The running config and files: md5 against users.txt, with this failure delay. */
static void start_md5(const char *delay)
{
	char ini[512], path[128], *errors = NULL;

	write_file("users.txt", "\"alice\" \"alice pw\"\n");
	snprintf(path, sizeof(path), "%s/users.txt", dir);
	snprintf(ini, sizeof(ini), "[pglease]\nauth_type = md5\nauth_file = %s\nauth_failure_delay = %s\n"
		 PAIR_INI_DATABASES, path, delay);
	pair_start(ini);
	client_set_frontend(&front_end);
	cr_assert_eq(auth_init(), 0);
	struct auth_files *f = auth_files_load(cfg, &errors);
	cr_assert_not_null(f, "%s", errors ? errors : "");
	auth_files_install(f);
}

/* The peer sends a startup packet and reads the AuthenticationMD5Password; its salt goes to salt. */
static void md5_challenged(int peer, const char *const *who, struct wire *w, uint8_t salt[4])
{
	struct bytes b = { .len = 0 };

	put_startup(&b, PROTO_V3, who);
	peer_send(peer, b.data, b.len);
	wire_read(peer, w);   /* a user missing from auth_file is answered one loop turn later */
	struct msg m = wire_expect(w, 'R');
	cr_assert_eq(m.len, 12, "AuthenticationMD5Password is a code and a 4-byte salt");
	cr_assert_eq(get32(m.body), 5);
	memcpy(salt, m.body + 4, 4);
}

static void hex(const uint8_t *d, size_t n, char *out)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", d[i]);
}

/* What libpq answers: "md5" + hex(md5(hex(md5(password + user)) + salt)). */
static void send_md5(int peer, const char *user, const char *password, const uint8_t salt[4])
{
	char inner[MD5_SECRET_LEN + 1], text[40 + 4], response[36];
	uint8_t digest[16];
	unsigned int len;
	struct bytes b = { .len = 0 };

	cr_assert_eq(md5_secret(password, user, inner), 0);
	memcpy(text, inner + 3, 32);
	memcpy(text + 32, salt, 4);
	cr_assert(EVP_Digest(text, 36, digest, &len, EVP_md5(), NULL));
	memcpy(response, "md5", 3);
	hex(digest, 16, response + 3);
	put_msg(&b, 'p', response, 36);
	peer_send(peer, b.data, b.len);
}

static void assert_fatal(struct wire *w, const char *sqlstate, const char *message)
{
	struct msg m = wire_expect(w, 'E');

	assert_error(&m, "FATAL", sqlstate, message, NULL);
	cr_assert(w->eof, "the connection was not closed after FATAL");
}

Test(auth, md5_right_password_is_welcomed)
{
	start_md5("0");
	struct pool *p = pair_pool("alice");
	int peer;
	struct client *c = pair_accept(&peer);
	static struct wire w;
	uint8_t salt[4];

	md5_challenged(peer, alice_app, &w, salt);
	send_md5(peer, "alice", "alice pw", salt);
	wire_read(peer, &w);
	struct msg m = wire_expect(&w, 'R');
	cr_assert_eq(get32(m.body), 0, "not AuthenticationOk");
	cr_assert_eq(c->pool, p);
	cr_assert_null(c->auth, "the exchange's state outlived it");
}

Test(auth, md5_salts_differ)
{
	start_md5("0");
	int peer1, peer2;
	static struct wire w1, w2;
	uint8_t s1[4], s2[4];

	pair_accept(&peer1);
	pair_accept(&peer2);
	md5_challenged(peer1, alice_app, &w1, s1);
	md5_challenged(peer2, alice_app, &w2, s2);
	cr_assert_neq(memcmp(s1, s2, 4), 0, "two logins got the same salt");
}

Test(auth, wrong_password_and_unknown_user_get_the_same_fatal)
{
	start_md5("0");
	int peer1, peer2;
	struct client *c1 = pair_accept(&peer1), *c2 = pair_accept(&peer2);
	static struct wire w1, w2;
	uint8_t salt[4];

	md5_challenged(peer1, alice_app, &w1, salt);
	send_md5(peer1, "alice", "wrong", salt);
	wire_read(peer1, &w1);
	assert_fatal(&w1, "28P01", "password authentication failed for user \"alice\"");
	cr_assert_eq(c1->state, CLIENT_CLOSED);
	md5_challenged(peer2, ghost_app, &w2, salt);
	send_md5(peer2, "ghost", "ghost pw", salt);
	wire_read(peer2, &w2);
	assert_fatal(&w2, "28P01", "password authentication failed for user \"ghost\"");
	cr_assert_eq(c2->state, CLIENT_CLOSED);
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
	nanosleep(&ts, NULL);
}

/* The failure delay holds the failed client; another logs in meanwhile; then the FATAL comes. */
Test(auth, failure_delay_holds_only_the_failed_client)
{
	start_md5("0.3");
	pair_pool("alice");
	int bad_peer, good_peer;
	struct client *bad = pair_accept(&bad_peer), *good = pair_accept(&good_peer);
	static struct wire bw, gw;
	uint8_t salt[4];

	md5_challenged(bad_peer, alice_app, &bw, salt);
	send_md5(bad_peer, "alice", "wrong", salt);
	wire_read(bad_peer, &bw);
	cr_assert_eq(bw.at, bw.len, "answered before the delay");
	cr_assert_eq(bad->state, CLIENT_LOGIN);
	peer_send(bad_peer, "junk", 4);   /* ignored while held */
	md5_challenged(good_peer, alice_app, &gw, salt);
	send_md5(good_peer, "alice", "alice pw", salt);
	wire_read(good_peer, &gw);
	cr_assert_eq(get32(wire_expect(&gw, 'R').body), 0, "the good login waited for the delay");
	cr_assert_neq(good->state, CLIENT_LOGIN);
	for (int i = 0; i < 40 && bad->state == CLIENT_LOGIN; i++) {
		sleep_ms(25);
		pair_spin();
	}
	wire_read(bad_peer, &bw);
	assert_fatal(&bw, "28P01", "password authentication failed for user \"alice\"");
}

Test(auth, client_leaving_during_the_delay_is_freed)
{
	start_md5("0.2");
	int peer;
	struct client *c = pair_accept(&peer);
	static struct wire w;
	uint8_t salt[4];

	md5_challenged(peer, alice_app, &w, salt);
	send_md5(peer, "alice", "wrong", salt);
	wire_read(peer, &w);
	cr_assert_eq(c->state, CLIENT_LOGIN);
	close(peer);
	pair_spin();
	cr_assert_eq(c->state, CLIENT_CLOSED);
	client_reap();   /* frees it, and its place on the delayed list */
	sleep_ms(250);
	pair_spin();     /* the timer finds nobody: nothing to touch */
	cr_assert_eq(login_clients.count, 0);
}

Test(auth, empty_password_message_is_refused_as_postgresql_does)
{
	start_md5("0");
	int peer;
	pair_accept(&peer);
	static struct wire w;
	uint8_t salt[4];
	struct bytes b = { .len = 0 };

	md5_challenged(peer, alice_app, &w, salt);
	put_msg(&b, 'p', "", 1);
	peer_send(peer, b.data, b.len);
	wire_read(peer, &w);
	assert_fatal(&w, "28P01", "empty password returned by client");
}

Test(auth, another_message_type_is_a_protocol_violation)
{
	start_md5("0");
	int peer;
	pair_accept(&peer);
	static struct wire w;
	uint8_t salt[4];
	struct bytes b = { .len = 0 };

	md5_challenged(peer, alice_app, &w, salt);
	put_query(&b, "select 1");
	peer_send(peer, b.data, b.len);
	wire_read(peer, &w);
	assert_fatal(&w, "08P01", "expected password response, got message type 81");
}

/* A reload that shortens the delay: a later failure may be due first, and is answered first. */
Test(auth, shorter_delay_after_a_reload_is_kept)
{
	start_md5("0.6");
	int slow_peer, fast_peer;
	struct client *slow = pair_accept(&slow_peer), *fast = pair_accept(&fast_peer);
	static struct wire sw, fw;
	uint8_t salt[4];
	char ini[512];

	md5_challenged(slow_peer, alice_app, &sw, salt);
	send_md5(slow_peer, "alice", "wrong", salt);
	wire_read(slow_peer, &sw);
	snprintf(ini, sizeof(ini), "[pglease]\nauth_type = md5\nauth_file = %s/users.txt\nauth_failure_delay = 0.1\n"
		 PAIR_INI_DATABASES, dir);
	pair_start(ini);   /* the running config changes; the files stay */
	md5_challenged(fast_peer, alice_app, &fw, salt);
	send_md5(fast_peer, "alice", "wrong", salt);
	for (int i = 0; i < 40 && fast->state == CLIENT_LOGIN; i++) {
		sleep_ms(10);
		pair_spin();
	}
	cr_assert_eq(fast->state, CLIENT_CLOSED, "the shorter delay waited for the longer one");
	cr_assert_eq(slow->state, CLIENT_LOGIN, "the longer delay was cut short");
	wire_read(fast_peer, &fw);
	assert_fatal(&fw, "28P01", "password authentication failed for user \"alice\"");
}

/* ---- TCP clients: hba host lines, the address in the words, no peer */

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>

/* A client accepted on a loopback TCP connection; *peer is the other end. */
static struct client *tcp_accept(int *peer)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof(sa);
	int lfd = socket(AF_INET, SOCK_STREAM, 0);

	cr_assert_geq(lfd, 0);
	cr_assert_eq(bind(lfd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(lfd, 1), 0);
	cr_assert_eq(getsockname(lfd, (struct sockaddr *)&sa, &len), 0);
	*peer = socket(AF_INET, SOCK_STREAM, 0);
	cr_assert_eq(connect(*peer, (struct sockaddr *)&sa, sizeof(sa)), 0);
	struct sockaddr_storage from;
	socklen_t from_len = sizeof(from);
	int fd = accept4(lfd, (struct sockaddr *)&from, &from_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
	cr_assert_geq(fd, 0);
	close(lfd);
	fcntl(*peer, F_SETFL, O_NONBLOCK);
	client_accept(fd, true, (struct sockaddr *)&from, from_len);
	return list_entry(list_last(&login_clients), struct client, node);
}

static void start_hba(const char *rules)
{
	char ini[512], *errors = NULL;

	write_file("hba.conf", rules);
	snprintf(ini, sizeof(ini), "[pglease]\nauth_type = hba\nauth_hba_file = %s/hba.conf\nauth_failure_delay = 0\n"
		 PAIR_INI_DATABASES, dir);
	pair_start(ini);
	client_set_frontend(&front_end);
	cr_assert_eq(auth_init(), 0);
	struct auth_files *f = auth_files_load(cfg, &errors);
	cr_assert_not_null(f, "%s", errors ? errors : "");
	auth_files_install(f);
}

static void fatal_for(int peer, const char *const *who, const char *sqlstate, const char *message)
{
	static struct wire w;
	struct bytes b = { .len = 0 };

	memset(&w, 0, sizeof(w));
	put_startup(&b, PROTO_V3, who);
	peer_send(peer, b.data, b.len);
	for (int i = 0; i < 50 && !w.eof; i++) {
		wire_read(peer, &w);
		if (!w.eof)
			sleep_ms(5);
	}
	assert_fatal(&w, sqlstate, message);
}

Test(auth, tcp_client_matches_host_lines_not_local_ones)
{
	start_hba("local all all trust\nhost all alice 127.0.0.1/32 reject\n");
	int peer1, peer2;

	tcp_accept(&peer1);
	fatal_for(peer1, alice_app, "28000",
		  "pg_hba.conf rejects connection for host \"127.0.0.1\", user \"alice\", database \"app\", no encryption");
	tcp_accept(&peer2);
	fatal_for(peer2, ghost_app, "28000",
		  "no pg_hba.conf entry for host \"127.0.0.1\", user \"ghost\", database \"app\", no encryption");
}

Test(auth, unix_client_matches_local_lines_not_host_ones)
{
	start_hba("host all all 0.0.0.0/0 trust\nlocal all alice reject\n");
	int peer1, peer2;

	pair_accept(&peer1);
	fatal_for(peer1, alice_app, "28000",
		  "pg_hba.conf rejects connection for host \"[local]\", user \"alice\", database \"app\", no encryption");
	pair_accept(&peer2);
	fatal_for(peer2, ghost_app, "28000",
		  "no pg_hba.conf entry for host \"[local]\", user \"ghost\", database \"app\", no encryption");
}

Test(auth, peer_is_refused_on_tcp)
{
	pair_start("[pglease]\nauth_type = peer\n" PAIR_INI_DATABASES);
	client_set_frontend(&front_end);
	cr_assert_eq(auth_init(), 0);
	int peer;

	tcp_accept(&peer);
	fatal_for(peer, alice_app, "28000", "peer authentication failed for user \"alice\"");
}
