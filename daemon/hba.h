/*
 * hba.h — auth_hba_file: per-client authentication rules in pg_hba.conf
 * syntax.
 *
 *   hba_load()   read and parse a file
 *   hba_parse()  parse a text (path only names it in errors)
 *   hba_match()  the first rule that matches a client, or NULL
 *   hba_free()
 *
 * A line is
 *
 *   local      DATABASE USER                METHOD
 *   host       DATABASE USER ADDRESS        METHOD
 *   host       DATABASE USER IP-ADDRESS IP-MASK METHOD
 *
 * with hostssl / hostnossl like host. DATABASE and USER are comma-separated
 * lists of names (double quotes keep a keyword or a comma as a name; "" in
 * quotes is a literal "), or the keyword all; DATABASE also takes sameuser
 * and replication (pglease serves no replication connections, so that one
 * never matches). ADDRESS is an IPv4 or IPv6 address with /bits, or all.
 * METHOD is trust, peer (local only), md5, scram-sha-256 or reject.
 * '#' starts a comment. What pg_hba.conf has beyond that (+group, @file,
 * samerole, host names, samehost/samenet, other methods, options after the
 * method) is refused with an error naming FILE:LINE, like every error.
 */
#ifndef PGLEASE_HBA_H
#define PGLEASE_HBA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "check.h"

enum hba_conn { HBA_LOCAL, HBA_HOST, HBA_HOSTSSL, HBA_HOSTNOSSL };
enum hba_method { HBA_TRUST, HBA_PEER, HBA_MD5, HBA_SCRAM, HBA_REJECT };

struct hba_names {
	bool all;
	bool sameuser;      /* database list: the database named like the user */
	bool replication;   /* database list: never matches here */
	char **names;
	int count;
};

struct hba_rule {
	int line;
	enum hba_conn conn;
	struct hba_names databases, users;
	bool any_address;   /* "all", and every local line */
	int family;         /* AF_INET or AF_INET6 */
	uint8_t addr[16], mask[16];  /* addr already masked */
	enum hba_method method;
};

struct hba {
	struct hba_rule *rules;
	int count;
};

/* What a rule is matched against. addr: the peer address of a TCP client. */
struct hba_client {
	bool local;         /* Unix socket */
	bool ssl;
	const char *database, *user;
	const struct sockaddr *addr;
};

/* NULL on failure: *errors is the error text, or NULL when memory ran out. */
MUST_CHECK struct hba *hba_load(const char *path, char **errors);
MUST_CHECK struct hba *hba_parse(const char *path, const char *text, size_t len, char **errors);
const struct hba_rule *hba_match(const struct hba *hba, const struct hba_client *client);
void hba_free(struct hba *hba);
const char *hba_method_name(enum hba_method method);

#endif
