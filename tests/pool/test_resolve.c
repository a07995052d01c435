/*
 * test_resolve.c — Criterion tests for pool/resolve.c: which libpq host
 * lists need DNS, and the hostaddr list a lookup hands back, one entry per
 * host entry (libpq refuses lists of different lengths).
 *
 * No test needs a DNS server: "localhost" comes from /etc/hosts, and a
 * name with a label over 63 bytes is refused by the resolver before any
 * query is sent.
 */
#include <criterion/criterion.h>
#include <ev.h>
#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "env.h"
#include "resolve.h"
#include "worker.h"

/* ---- which host lists need DNS ---- */

Test(resolve_needed, socket_directories_and_numeric_addresses_do_not)
{
	static const char *const lists[] = {
		"/var/run/postgresql", "/tmp,/var/run/postgresql", "127.0.0.1", "::1", "fe80::1%1",
		"10.0.0.1,::1,/tmp", "@abstract", "", ",", "/tmp,,127.0.0.1",
		"1.2.3",                        /* inet_aton() reads it as 1.2.0.3, and so does libpq */
	};

	for (size_t i = 0; i < sizeof(lists) / sizeof(*lists); i++)
		cr_assert_not(resolve_needed(lists[i], NULL), "<%s>", lists[i]);
	cr_assert_not(resolve_needed(NULL, NULL), "no host at all");
}

Test(resolve_needed, any_name_in_the_list_does)
{
	static const char *const lists[] = {
		"localhost", "db.example.com", "/tmp,db", "10.0.0.1,db", "db,10.0.0.1", ",db", "db,",
		"10.0.0.1.5", "1.2.3.x",
	};

	for (size_t i = 0; i < sizeof(lists) / sizeof(*lists); i++)
		cr_assert(resolve_needed(lists[i], NULL), "<%s>", lists[i]);
}

Test(resolve_needed, not_when_the_conninfo_gives_hostaddr_itself)
{
	cr_assert_not(resolve_needed("db.example.com", "10.0.0.1"));
	cr_assert(resolve_needed("db.example.com", ""), "an empty hostaddr is no hostaddr");
}

/* ---- lookups on the worker ---- */

struct answer {
	int calls;
	char *hostaddr;
	char error[512];
};

static void on_resolved(void *arg, char *hostaddr, const char *error)
{
	struct answer *a = arg;

	a->calls++;
	cr_assert((hostaddr == NULL) != (error == NULL), "exactly one of hostaddr and error");
	a->hostaddr = hostaddr ? strdup(hostaddr) : NULL;
	snprintf(a->error, sizeof(a->error), "%s", error ? error : "");
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
	cr_assert_eq(worker_start(loop), 0);
}

static void teardown(void)
{
	worker_stop();
}

TestSuite(resolve, .init = setup, .fini = teardown);

static struct answer resolve(const char *hosts)
{
	struct answer a = { 0 };
	ev_timer deadline;

	cr_assert_eq(resolve_start(hosts, on_resolved, &a), 0);
	ev_timer_init(&deadline, on_deadline, 5., 0.);
	ev_timer_start(loop, &deadline);
	ev_run(loop, 0);
	ev_timer_stop(loop, &deadline);
	cr_assert_eq(a.calls, 1, "the callback runs once, on the loop (calls: %d)", a.calls);
	return a;
}

static bool is_loopback(const char *addr, size_t len)
{
	return (len == 9 && strncmp(addr, "127.0.0.1", 9) == 0) || (len == 3 && strncmp(addr, "::1", 3) == 0);
}

/* Entries of a comma-separated list, as libpq counts them: n commas make n + 1. */
static int entries(const char *list)
{
	int n = 1;

	for (; *list; list++)
		n += *list == ',';
	return n;
}

Test(resolve, a_name_becomes_its_address)
{
	struct answer a = resolve("localhost");

	cr_assert_str_eq(a.error, "");
	cr_assert(is_loopback(a.hostaddr, strlen(a.hostaddr)), "<%s>", a.hostaddr);
	free(a.hostaddr);
}

Test(resolve, other_entries_stay_empty_in_their_place)
{
	struct answer a = resolve("/tmp,localhost,10.1.2.3,::1");
	const char *addr = a.hostaddr + 1;
	size_t len;

	cr_assert_str_eq(a.error, "");
	cr_assert_eq(entries(a.hostaddr), 4, "<%s>", a.hostaddr);
	cr_assert_eq(a.hostaddr[0], ',', "<%s>", a.hostaddr);
	len = strcspn(addr, ",");
	cr_assert(is_loopback(addr, len), "<%s>", a.hostaddr);
	cr_assert_str_eq(addr + len, ",,", "<%s>", a.hostaddr);
	free(a.hostaddr);
}

Test(resolve, an_empty_last_entry_keeps_its_place)
{
	/* host=localhost, : libpq counts two hosts, and refuses a hostaddr list of one. */
	struct answer a = resolve("localhost,");

	cr_assert_str_eq(a.error, "");
	cr_assert_eq(entries(a.hostaddr), 2, "<%s>", a.hostaddr);
	cr_assert_eq(a.hostaddr[strlen(a.hostaddr) - 1], ',', "<%s>", a.hostaddr);
	free(a.hostaddr);
}

/* What libpq makes of host and the hostaddr pglease hands it: no connection is made (nothing is polled). */
static char *libpq_verdict(const char *host, const char *hostaddr)
{
	const char *const keys[] = { "host", "hostaddr", "port", "dbname", NULL };
	const char *const values[] = { host, hostaddr, "1", "x", NULL };
	PGconn *conn = PQconnectStartParams(keys, values, 0);
	char *msg = strdup(PQerrorMessage(conn));

	PQfinish(conn);
	return msg;
}

Test(resolve, libpq_takes_the_answer_with_its_host_list)
{
	static const char *const lists[] = { "/nonexistent,localhost", "localhost,", "localhost,/nonexistent,localhost" };

	for (size_t i = 0; i < sizeof(lists) / sizeof(*lists); i++) {
		struct answer a = resolve(lists[i]);
		char *mismatch = libpq_verdict(lists[i], "127.0.0.1");
		char *verdict = libpq_verdict(lists[i], a.hostaddr);
		cr_assert(strstr(mismatch, "could not match"), "premise: libpq checks the counts: <%s>", mismatch);
		cr_assert_null(strstr(verdict, "could not match"), "<%s> <%s>: %s", lists[i], a.hostaddr, verdict);
		free(mismatch);
		free(verdict);
		free(a.hostaddr);
	}
}

Test(resolve, an_empty_first_entry_keeps_its_place)
{
	struct answer a = resolve(",localhost");

	cr_assert_eq(entries(a.hostaddr), 2, "<%s>", a.hostaddr);
	cr_assert_eq(a.hostaddr[0], ',', "<%s>", a.hostaddr);
	free(a.hostaddr);
}

Test(resolve, a_name_that_cannot_be_resolved_is_an_error_naming_it)
{
	char host[128], want[256];

	memset(host, 'x', 70);
	strcpy(host + 70, ".invalid");
	snprintf(want, sizeof(want), "could not translate host name \"%s\" to address: ", host);
	struct answer a = resolve(host);
	cr_assert_null(a.hostaddr);
	cr_assert_eq(strncmp(a.error, want, strlen(want)), 0, "<%s>", a.error);
	cr_assert_gt(strlen(a.error), strlen(want), "the resolver's reason follows");
}

Test(resolve, a_host_list_too_long_for_the_answer_is_an_error)
{
	static char hosts[4096];
	size_t len = 0;

	/* 300 names of localhost: their addresses fill more than the 1 KiB answer. */
	for (int i = 0; i < 300; i++)
		len += (size_t)snprintf(hosts + len, sizeof(hosts) - len, "%slocalhost", i ? "," : "");
	struct answer a = resolve(hosts);
	cr_assert_null(a.hostaddr);
	cr_assert_str_eq(a.error, "host list too long");
}
