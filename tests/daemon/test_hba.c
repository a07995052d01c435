/*
 * test_hba.c — Criterion tests for daemon/hba.c (auth_hba_file).
 *
 * Rules are parsed from texts written here and matched against clients
 * built here (Unix, TCP with and without TLS, IPv4, IPv6 and IPv4-mapped
 * IPv6 addresses). Each error compares the whole "FILE:LINE: message".
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "hba.h"
#include "../lib/alloc_fail.h"

static struct hba *parse(const char *text)
{
	char *errors = NULL;
	struct hba *hba = hba_parse("hba.conf", text, strlen(text), &errors);

	cr_assert_not_null(hba, "%s", errors ? errors : "out of memory");
	return hba;
}

static void assert_error(const char *text, const char *want)
{
	char *errors = NULL;
	struct hba *hba = hba_parse("hba.conf", text, strlen(text), &errors);

	cr_assert_null(hba, "accepted: %s", text);
	cr_assert_not_null(errors);
	cr_assert_str_eq(errors, want, "for: %s", text);
	free(errors);
}

struct addr {
	struct sockaddr_storage ss;
};

static const struct sockaddr *ip(struct addr *a, const char *text)
{
	memset(a, 0, sizeof(*a));
	if (strchr(text, ':')) {
		struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;

		s6->sin6_family = AF_INET6;
		cr_assert_eq(inet_pton(AF_INET6, text, &s6->sin6_addr), 1);
	} else {
		struct sockaddr_in *s4 = (struct sockaddr_in *)&a->ss;

		s4->sin_family = AF_INET;
		cr_assert_eq(inet_pton(AF_INET, text, &s4->sin_addr), 1);
	}
	return (const struct sockaddr *)&a->ss;
}

/* The line of the matching rule, 0 for none; its method in *method. */
static int tcp(const struct hba *hba, bool ssl, const char *db, const char *user,
	       const char *addr, enum hba_method *method)
{
	struct addr a;
	struct hba_client c = { false, ssl, db, user, ip(&a, addr) };
	const struct hba_rule *r = hba_match(hba, &c);

	if (r && method)
		*method = r->method;
	return r ? r->line : 0;
}

static int local(const struct hba *hba, const char *db, const char *user)
{
	struct hba_client c = { true, false, db, user, NULL };
	const struct hba_rule *r = hba_match(hba, &c);

	return r ? r->line : 0;
}

Test(hba, first_matching_line_decides)
{
	struct hba *hba = parse(
		"# TYPE  DATABASE  USER  ADDRESS  METHOD\n"
		"local   all       postgres        peer\n"                     /* 2 */
		"local   app       all             md5   # a comment\n"        /* 3 */
		"hostssl all       all   10.0.0.0/8 scram-sha-256\n"          /* 4 */
		"hostnossl all     all   10.0.0.0/8 reject\n"                 /* 5 */
		"host    app,\"all\" alice,bob 192.168.1.0 255.255.255.0 md5\n" /* 6 */
		"host    sameuser  all   ::1/128 trust\n"                      /* 7 */
		"host    all       all   2001:db8::/32 scram-sha-256\n"        /* 8 */
		"\n"
		"host    all       all   all reject\n");                       /* 10 */
	enum hba_method m = HBA_TRUST;

	cr_assert_eq(hba->count, 8);
	cr_assert_eq(local(hba, "app", "postgres"), 2);
	cr_assert_eq(local(hba, "app", "alice"), 3);
	cr_assert_eq(local(hba, "other", "alice"), 0);
	cr_assert_eq(tcp(hba, true, "x", "y", "10.1.2.3", &m), 4);
	cr_assert_eq(m, HBA_SCRAM);
	cr_assert_eq(tcp(hba, false, "x", "y", "10.1.2.3", &m), 5);
	cr_assert_eq(m, HBA_REJECT);
	/* address + mask; a quoted "all" is a database named all */
	cr_assert_eq(tcp(hba, false, "app", "bob", "192.168.1.77", &m), 6);
	cr_assert_eq(m, HBA_MD5);
	cr_assert_eq(tcp(hba, false, "all", "alice", "192.168.1.77", NULL), 6);
	cr_assert_eq(tcp(hba, false, "other", "alice", "192.168.1.77", NULL), 10);
	cr_assert_eq(tcp(hba, false, "app", "carol", "192.168.1.77", NULL), 10);
	cr_assert_eq(tcp(hba, false, "app", "alice", "192.168.2.77", NULL), 10);
	/* sameuser */
	cr_assert_eq(tcp(hba, false, "alice", "alice", "::1", &m), 7);
	cr_assert_eq(m, HBA_TRUST);
	cr_assert_eq(tcp(hba, false, "alice", "bob", "::1", NULL), 10);
	cr_assert_eq(tcp(hba, true, "x", "y", "2001:db8:1::5", NULL), 8);
	cr_assert_eq(tcp(hba, true, "x", "y", "2001:db9::5", NULL), 10);
	/* an IPv4 client seen as IPv4-mapped IPv6 still matches an IPv4 rule */
	cr_assert_eq(tcp(hba, true, "x", "y", "::ffff:10.9.9.9", NULL), 4);
	hba_free(hba);
}

Test(hba, ipv4_client_and_ipv6_rule)
{
	struct hba *hba = parse("host all all ::ffff:127.0.0.0/104 md5\n");

	cr_assert_eq(tcp(hba, false, "d", "u", "127.0.0.1", NULL), 1);
	cr_assert_eq(tcp(hba, false, "d", "u", "128.0.0.1", NULL), 0);
	cr_assert_eq(local(hba, "d", "u"), 0);
	hba_free(hba);
}

Test(hba, cidr_edges)
{
	struct hba *hba = parse("host all all 0.0.0.0/0 md5\nhost all all ::/0 trust\n");
	struct hba *exact = parse("host all all 10.0.0.1/32 md5\n");

	cr_assert_eq(tcp(hba, false, "d", "u", "255.255.255.255", NULL), 1);
	cr_assert_eq(tcp(hba, false, "d", "u", "fe80::1", NULL), 2);
	cr_assert_eq(tcp(exact, false, "d", "u", "10.0.0.1", NULL), 1);
	cr_assert_eq(tcp(exact, false, "d", "u", "10.0.0.2", NULL), 0);
	hba_free(hba);
	hba_free(exact);
}

Test(hba, quoting_and_lists)
{
	struct hba *hba = parse("local \"my db\",\"a,b\", \"say \"\"x\"\"\" all trust\n");

	cr_assert_eq(local(hba, "my db", "u"), 1);
	cr_assert_eq(local(hba, "a,b", "u"), 1);
	cr_assert_eq(local(hba, "say \"x\"", "u"), 1);
	cr_assert_eq(local(hba, "a", "u"), 0);
	hba_free(hba);
}

Test(hba, replication_never_matches)
{
	struct hba *hba = parse("local replication all trust\n");

	cr_assert_eq(local(hba, "replication", "u"), 0);
	hba_free(hba);
}

Test(hba, errors_name_file_and_line)
{
	assert_error("local all all trust\nlocal all\n",
		     "hba.conf:2: end of line before user specification\n");
	assert_error("hostgssenc all all all md5\n", "hba.conf:1: invalid connection type \"hostgssenc\"\n");
	assert_error("local all all password\n",
		     "hba.conf:1: authentication method \"password\" is not supported\n");
	assert_error("local all all \"trust\"\n",
		     "hba.conf:1: authentication method \"trust\" is not supported\n");
	assert_error("host all all 10.0.0.0/8 peer\n",
		     "hba.conf:1: peer authentication is only supported on local sockets\n");
	assert_error("local all +admins trust\n", "hba.conf:1: group membership (\"+admins\") is not supported\n");
	assert_error("local @dbs all trust\n", "hba.conf:1: including a file (\"@dbs\") is not supported\n");
	assert_error("local samerole all trust\n",
		     "hba.conf:1: \"samerole\" is not supported (roles are not known to pglease)\n");
	assert_error("host all all example.com md5\n",
		     "hba.conf:1: host names are not supported (\"example.com\"): use an IP address\n");
	assert_error("host all all samenet md5\n", "hba.conf:1: \"samenet\" is not supported\n");
	assert_error("host all all 10.0.0.0/33 md5\n", "hba.conf:1: invalid CIDR mask in address \"10.0.0.0/33\"\n");
	assert_error("host all all ::/129 md5\n", "hba.conf:1: invalid CIDR mask in address \"::/129\"\n");
	assert_error("host all all 10.0.0.0/ md5\n", "hba.conf:1: invalid CIDR mask in address \"10.0.0.0/\"\n");
	assert_error("host all all 10.0.0.300/8 md5\n", "hba.conf:1: invalid IP address \"10.0.0.300\"\n");
	assert_error("host all all 10.0.0.0 md5\n",
		     "hba.conf:1: invalid IP mask \"md5\" for address \"10.0.0.0\"\n");
	assert_error("host all all 10.0.0.0 ffff:: md5\n",
		     "hba.conf:1: invalid IP mask \"ffff::\" for address \"10.0.0.0\"\n");
	assert_error("host all all 10.0.0.0 255.0.0.0\n",
		     "hba.conf:1: end of line before authentication method\n");
	assert_error("host all all\n", "hba.conf:1: end of line before IP address\n");
	assert_error("local all all md5 map=x\n",
		     "hba.conf:1: authentication options are not supported (\"map=x\")\n");
	assert_error("local all all md5,trust\n",
		     "hba.conf:1: multiple values specified for authentication method\n");
	assert_error("local,host all all md5\n",
		     "hba.conf:1: multiple values specified for connection type\n");
	/* a blank after a comma continues the list: "a, all" are both databases */
	assert_error("local a, all trust\n", "hba.conf:1: end of line before authentication method\n");
	assert_error("local a,,b all trust\n", "hba.conf:1: empty name in a list\n");
	assert_error("local a, # x\n", "hba.conf:1: list ends with a comma\n");
	assert_error("local \"db all trust\n", "hba.conf:1: unterminated quoted string\n");
	/* several lines, each reported */
	assert_error("bad\nlocal all all trust\nlocal all all nope\n",
		     "hba.conf:1: invalid connection type \"bad\"\n"
		     "hba.conf:3: authentication method \"nope\" is not supported\n");
}

Test(hba, list_with_blank_after_comma)
{
	struct hba *hba = parse("local a, b all trust\n");

	cr_assert_eq(local(hba, "b", "u"), 1);
	hba_free(hba);
}

Test(hba, nul_byte)
{
	static const char text[] = "local all all tr\0ust\n";
	char *errors = NULL;

	cr_assert_null(hba_parse("hba.conf", text, sizeof(text) - 1, &errors));
	cr_assert_str_eq(errors, "hba.conf:1: NUL byte in the line\n");
	free(errors);
}

Test(hba, load_from_disk)
{
	char path[] = "/tmp/pglease-hba-XXXXXX", *errors = NULL;
	int fd = mkstemp(path);
	struct hba *hba;

	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "local all all trust\r\n", 21), 21);
	close(fd);
	hba = hba_load(path, &errors);
	cr_assert_not_null(hba, "%s", errors);
	cr_assert_eq(local(hba, "d", "u"), 1);
	cr_assert_str_eq(hba_method_name(hba->rules[0].method), "trust");
	hba_free(hba);
	unlink(path);
	cr_assert_null(hba_load(path, &errors));
	free(errors);
}

/* Every allocation in turn fails: NULL without an error text, or the file loads whole. */
Test(hba, out_of_memory_at_each_allocation)
{
	static const char good[] = "local all all peer\nhost a,b,c x,y 10.0.0.0/8 md5\n"
				   "hostssl all all ::1/128 scram-sha-256\n";
	bool loaded = false;
	int k;

	if (!ALLOC_FAIL_AVAILABLE)
		cr_skip_test("allocation failure needs the non-sanitizer build");
	for (k = 1; k < 300 && !loaded; k++) {
		char *errors = (char *)1;
		struct hba *hba;

		alloc_fail_arm(k);
		hba = hba_parse("hba.conf", good, strlen(good), &errors);
		alloc_fail_disarm();
		cr_assert_null(errors, "at allocation %d", k);
		loaded = hba != NULL;
		if (hba)
			cr_assert_eq(hba->count, 3);
		hba_free(hba);
	}
	cr_assert(loaded);
	cr_assert_gt(k, 8, "only %d allocations to fail", k - 1);  /* the failures were really met */
}
