/*
 * userlist.h — auth_file: user names and their secrets, in PgBouncer's
 * userlist format.
 *
 *   userlist_load()   read and parse a file
 *   userlist_parse()  parse a text (path only names it in errors)
 *   userlist_find()   a user's entry, or NULL
 *   userlist_count() / userlist_at()  the entries, in user-name order
 *   userlist_free()
 *
 * The format, one user per line:
 *
 *   "user" "secret" [anything, ignored]
 *
 * Both fields are in double quotes; "" inside a field is one literal ".
 * Blank lines and lines starting with ';' or '#' are ignored. The secret
 * is a plain password, an md5 secret ("md5" + 32 lowercase hex digits) or
 * a SCRAM verifier ("SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>"),
 * told apart as PostgreSQL tells them apart; a text that starts as a
 * SCRAM verifier but is not a valid one is an error rather than a
 * password. Errors name FILE:LINE as the INI loader's do; a user listed
 * twice is an error. A loaded list is immutable.
 */
#ifndef PGLEASE_USERLIST_H
#define PGLEASE_USERLIST_H

#include <stddef.h>

#include "check.h"
#include "scram.h"

enum secret_kind { SECRET_PLAIN, SECRET_MD5, SECRET_SCRAM };

struct user_secret {
	char *user;
	char *secret;               /* as written in the file */
	enum secret_kind kind;
	struct scram_secret scram;  /* kind SECRET_SCRAM: the verifier, parsed */
	int line;
};

struct userlist;

/*
 * NULL on failure: *errors is the error text (lines "FILE:LINE: message"),
 * or NULL when memory ran out. errors may be NULL.
 */
MUST_CHECK struct userlist *userlist_load(const char *path, char **errors);
MUST_CHECK struct userlist *userlist_parse(const char *path, const char *text, size_t len,
					   char **errors);
const struct user_secret *userlist_find(const struct userlist *list, const char *user);
int userlist_count(const struct userlist *list);
/* The i-th entry in user-name order, 0 <= i < userlist_count(). */
const struct user_secret *userlist_at(const struct userlist *list, int i);
void userlist_free(struct userlist *list);

#endif
