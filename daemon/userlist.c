/*
 * userlist.c — auth_file in PgBouncer's userlist format. See userlist.h.
 *
 * The file holds passwords: what is freed is wiped first. Entries are
 * kept sorted by user name, so a lookup is a binary search.
 */
#include <assert.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "authfile.h"
#include "md5auth.h"
#include "userlist.h"

struct userlist {
	struct user_secret *users;
	int count, cap;
};

static const char scram_prefix[] = "SCRAM-SHA-256$";

static void free_entry(struct user_secret *u)
{
	if (u->secret)
		OPENSSL_cleanse(u->secret, strlen(u->secret));
	free(u->secret);
	free(u->user);
	OPENSSL_cleanse(&u->scram, sizeof(u->scram));
}

void userlist_free(struct userlist *list)
{
	if (!list)
		return;
	for (int i = 0; i < list->count; i++)
		free_entry(&list->users[i]);
	free(list->users);
	free(list);
}

/*
 * A field in double quotes starting at *p ('"'), with "" for a literal
 * quote. Returns the field (allocated) and moves *p past the closing
 * quote; NULL with *why set when the field is malformed or memory ran out.
 */
static char *read_quoted(const char **p, const char *end, const char **why)
{
	const char *s = *p + 1;
	size_t n = 0;
	char *out = malloc(end - s + 1);

	*why = NULL;
	if (!out)
		return NULL;
	for (;;) {
		if (s == end) {
			*why = "unterminated quoted field";
			break;
		}
		if (*s == '\0') {
			*why = "NUL byte in a quoted field";
			break;
		}
		if (*s == '"' && (s + 1 == end || s[1] != '"')) {
			out[n] = '\0';
			*p = s + 1;
			return out;
		}
		out[n++] = *s;
		s += *s == '"' ? 2 : 1;
	}
	free(out);
	return NULL;
}

static const char *skip_blank(const char *p, const char *end)
{
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	return p;
}

static void classify(struct user_secret *u, struct authfile_errors *errs)
{
	if (strncmp(u->secret, scram_prefix, sizeof(scram_prefix) - 1) == 0) {
		u->kind = SECRET_SCRAM;
		if (scram_secret_parse(u->secret, &u->scram) < 0)
			authfile_error(errs, u->line, "invalid SCRAM-SHA-256 secret for user \"%s\"",
				       u->user);
	} else {
		u->kind = md5_secret_valid(u->secret) ? SECRET_MD5 : SECRET_PLAIN;
	}
}

static int append(struct userlist *list, const struct user_secret *u)
{
	if (list->count == list->cap) {
		int cap = list->cap ? list->cap * 2 : 16;
		struct user_secret *users = realloc(list->users, cap * sizeof(*users));

		if (!users)
			return -1;
		list->users = users;
		list->cap = cap;
	}
	list->users[list->count++] = *u;
	return 0;
}

/* A field, with an error about the line when it is missing or malformed. */
static char *read_field(const char **p, const char *end, const char *what, int line,
			struct authfile_errors *errs)
{
	const char *why;
	char *field;

	if (*p == end || **p != '"') {
		authfile_error(errs, line, "expected %s in double quotes", what);
		return NULL;
	}
	field = read_quoted(p, end, &why);
	if (!field && why)
		authfile_error(errs, line, "%s", why);
	else if (!field)
		errs->oom = true;
	return field;
}

static void parse_line(struct userlist *list, const char *line, size_t len, int lineno,
		       struct authfile_errors *errs)
{
	const char *p = skip_blank(line, line + len), *end = line + len;
	struct user_secret u = { .line = lineno };

	if (p == end || *p == '#' || *p == ';')
		return;
	u.user = read_field(&p, end, "a user name", lineno, errs);
	if (!u.user)
		return;
	p = skip_blank(p, end);
	u.secret = read_field(&p, end, "a secret after the user name", lineno, errs);
	if (u.secret && !*u.user) {
		authfile_error(errs, lineno, "empty user name");
	} else if (u.secret) {
		classify(&u, errs);
		if (append(list, &u) == 0)
			return;  /* the list owns the strings now */
		errs->oom = true;
	}
	free_entry(&u);
}

static int by_user(const void *a, const void *b)
{
	const struct user_secret *x = a, *y = b;
	int c = strcmp(x->user, y->user);

	return c ? c : (x->line > y->line) - (x->line < y->line);
}

static int by_user_name(const void *a, const void *b)
{
	return strcmp(((const struct user_secret *)a)->user, ((const struct user_secret *)b)->user);
}

static void sort_and_check_duplicates(struct userlist *list, struct authfile_errors *errs)
{
	if (list->count > 1)
		qsort(list->users, list->count, sizeof(*list->users), by_user);
	for (int i = 1; i < list->count; i++)
		if (strcmp(list->users[i - 1].user, list->users[i].user) == 0)
			authfile_error(errs, list->users[i].line,
				       "user \"%s\" is listed twice (first on line %d)",
				       list->users[i].user, list->users[i - 1].line);
}

static struct userlist *finish(struct userlist *list, struct authfile_errors *errs,
			       char **errors)
{
	char *text = authfile_finish(errs);

	if (text || errs->oom) {
		userlist_free(list);
		list = NULL;
	}
	if (errors)
		*errors = text;
	else
		free(text);
	return list;
}

struct userlist *userlist_parse(const char *path, const char *text, size_t len, char **errors)
{
	struct authfile_errors errs = { .path = path };
	struct authfile_lines lines = { text, text + len, 0 };
	struct userlist *list = calloc(1, sizeof(*list));
	const char *line;
	size_t n;

	if (!list)
		errs.oom = true;
	while (list && !errs.oom && authfile_line(&lines, &line, &n))
		parse_line(list, line, n, lines.lineno, &errs);
	if (list && !errs.oom)
		sort_and_check_duplicates(list, &errs);
	return finish(list, &errs, errors);
}

struct userlist *userlist_load(const char *path, char **errors)
{
	struct authfile_errors errs = { .path = path };
	struct userlist *list;
	char *text;
	size_t len;

	if (authfile_read(path, &text, &len, &errs) < 0)
		return finish(NULL, &errs, errors);
	list = userlist_parse(path, text, len, errors);
	OPENSSL_cleanse(text, len);
	free(text);
	return list;
}

const struct user_secret *userlist_find(const struct userlist *list, const char *user)
{
	struct user_secret key = { .user = (char *)user };

	if (!list || list->count == 0)
		return NULL;
	return bsearch(&key, list->users, list->count, sizeof(*list->users), by_user_name);
}

int userlist_count(const struct userlist *list)
{
	return list ? list->count : 0;
}

const struct user_secret *userlist_at(const struct userlist *list, int i)
{
	assert(i >= 0 && i < list->count);
	return &list->users[i];
}
