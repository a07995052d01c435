/*
 * hba.c — auth_hba_file in pg_hba.conf syntax. See hba.h.
 *
 * A line is cut into tokens first (quotes, commas, comments), each token
 * knowing its field and whether it was quoted (a quoted "all" is a name,
 * not the keyword); then the fields are read as PostgreSQL reads them.
 * The first rule that matches a client decides, as in PostgreSQL.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authfile.h"
#include "hba.h"

struct token {
	char *text;     /* points into the line's copy */
	bool quoted;
	int field;
};

struct line {
	char *buf;                  /* the line as written */
	char *out;                  /* the tokens, unquoted, each ending in NUL */
	size_t out_len;
	struct token *tokens;
	int count, cap, fields;
	int lineno;
	struct authfile_errors *errs;
	bool bad;                   /* an error was reported for this line */
};

static const char *const method_names[] = {
	[HBA_TRUST] = "trust", [HBA_PEER] = "peer", [HBA_MD5] = "md5",
	[HBA_SCRAM] = "scram-sha-256", [HBA_REJECT] = "reject",
};

const char *hba_method_name(enum hba_method method)
{
	return method_names[method];
}

__attribute__((format(printf, 2, 3)))
static void line_error(struct line *l, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (!l->bad)  /* one error a line: the first says what is wrong */
		authfile_error(l->errs, l->lineno, "%s", msg);
	l->bad = true;
}

/* ---- tokens */

static bool blank(char c)
{
	return c == ' ' || c == '\t';
}

static int push_token(struct line *l, char *text, bool quoted)
{
	if (l->count == l->cap) {
		int cap = l->cap ? l->cap * 2 : 8;
		struct token *t = realloc(l->tokens, cap * sizeof(*t));

		if (!t) {
			l->errs->oom = true;
			return -1;
		}
		l->tokens = t;
		l->cap = cap;
	}
	l->tokens[l->count++] = (struct token){ text, quoted, l->fields };
	return 0;
}

/*
 * One token from buf[*i]: unquoted characters up to a blank, ',' or '#';
 * quoted ones up to the closing quote. Copied unquoted to l->out; returns
 * the character that ended it (0 at the end).
 */
static char cut_token(struct line *l, size_t *i, size_t n, bool *quoted)
{
	char *buf = l->buf, *w = l->out + l->out_len, end;
	bool in_quote = false;

	*quoted = false;
	while (*i < n) {
		char c = buf[*i];

		if (in_quote && c == '"' && *i + 1 < n && buf[*i + 1] == '"') {
			*w++ = '"';
			*i += 2;
		} else if (c == '"') {
			in_quote = !in_quote;
			*quoted = true;
			(*i)++;
		} else if (!in_quote && (blank(c) || c == ',' || c == '#')) {
			break;
		} else {
			*w++ = c;
			(*i)++;
		}
	}
	if (in_quote)
		line_error(l, "unterminated quoted string");
	end = *i < n ? buf[*i] : 0;
	*w++ = '\0';
	l->out_len = w - l->out;
	return end;
}

static void skip_blanks(const char *buf, size_t *i, size_t n)
{
	while (*i < n && blank(buf[*i]))
		(*i)++;
}

/* A field: tokens separated by commas (blanks allowed after a comma). */
static int cut_field(struct line *l, size_t *i, size_t n)
{
	for (;;) {
		char *start = l->out + l->out_len;
		bool quoted;
		char end = cut_token(l, i, n, &quoted);

		if (l->bad)
			return -1;
		if (!*start && !quoted) {
			line_error(l, "empty name in a list");
			return -1;
		}
		if (push_token(l, start, quoted) < 0)
			return -1;
		if (end != ',')
			return 0;
		(*i)++;
		skip_blanks(l->buf, i, n);
		if (*i == n || l->buf[*i] == '#') {
			line_error(l, "list ends with a comma");
			return -1;
		}
	}
}

static int tokenize(struct line *l, size_t n)
{
	size_t i = 0;

	if (memchr(l->buf, '\0', n)) {
		line_error(l, "NUL byte in the line");
		return -1;
	}
	for (;;) {
		skip_blanks(l->buf, &i, n);
		if (i == n || l->buf[i] == '#')
			return 0;
		if (cut_field(l, &i, n) < 0)
			return -1;
		l->fields++;
	}
}

/* ---- fields */

/* The tokens of field f: [*first, *first + count). */
static int field_tokens(const struct line *l, int f, int *first)
{
	int count = 0;

	*first = -1;
	for (int i = 0; i < l->count; i++)
		if (l->tokens[i].field == f) {
			if (*first < 0)
				*first = i;
			count++;
		}
	return count;
}

/* A field that must be one token. */
static const struct token *single(struct line *l, int f, const char *what)
{
	int first, count = field_tokens(l, f, &first);

	if (count == 0) {
		line_error(l, "end of line before %s", what);
		return NULL;
	}
	if (count > 1) {
		line_error(l, "multiple values specified for %s", what);
		return NULL;
	}
	return &l->tokens[first];
}

static bool keyword(const struct token *t, const char *word)
{
	return !t->quoted && strcmp(t->text, word) == 0;
}

static int add_name(struct line *l, struct hba_names *names, const char *text)
{
	char **more = realloc(names->names, (names->count + 1) * sizeof(*more));

	if (more)
		names->names = more;
	if (!more || !(names->names[names->count] = strdup(text))) {
		l->errs->oom = true;
		return -1;
	}
	names->count++;
	return 0;
}

static int read_names(struct line *l, int f, bool is_db, struct hba_names *names)
{
	const char *what = is_db ? "database" : "user";
	int first, count = field_tokens(l, f, &first);

	if (count == 0) {
		line_error(l, "end of line before %s specification", what);
		return -1;
	}
	for (int i = first; i < first + count; i++) {
		const struct token *t = &l->tokens[i];

		if (keyword(t, "all"))
			names->all = true;
		else if (is_db && keyword(t, "sameuser"))
			names->sameuser = true;
		else if (is_db && keyword(t, "replication"))
			names->replication = true;
		else if (is_db && (keyword(t, "samerole") || keyword(t, "samegroup")))
			line_error(l, "\"%s\" is not supported (roles are not known to pglease)", t->text);
		else if (!t->quoted && t->text[0] == '+')
			line_error(l, "group membership (\"%s\") is not supported", t->text);
		else if (!t->quoted && t->text[0] == '@')
			line_error(l, "including a file (\"%s\") is not supported", t->text);
		else if (add_name(l, names, t->text) < 0)
			return -1;
		if (l->bad)
			return -1;
	}
	return 0;
}

static int read_conn(struct line *l, struct hba_rule *r)
{
	static const char *const words[] = {
		[HBA_LOCAL] = "local", [HBA_HOST] = "host",
		[HBA_HOSTSSL] = "hostssl", [HBA_HOSTNOSSL] = "hostnossl",
	};
	const struct token *t = single(l, 0, "connection type");

	if (!t)
		return -1;
	for (int i = 0; i < 4; i++)
		if (keyword(t, words[i])) {
			r->conn = (enum hba_conn)i;
			return 0;
		}
	line_error(l, "invalid connection type \"%s\"", t->text);
	return -1;
}

/* ---- addresses */

static int parse_ip(const char *text, uint8_t addr[16])
{
	memset(addr, 0, 16);
	if (inet_pton(AF_INET, text, addr) == 1)
		return AF_INET;
	if (inet_pton(AF_INET6, text, addr) == 1)
		return AF_INET6;
	return 0;
}

static int mask_from_bits(const char *text, int family, uint8_t mask[16])
{
	int max = family == AF_INET ? 32 : 128, bits = 0;

	if (!*text || strlen(text) > 3)
		return -1;
	for (const char *p = text; *p; p++) {
		if (*p < '0' || *p > '9')
			return -1;
		bits = bits * 10 + (*p - '0');
	}
	if (bits > max)
		return -1;
	memset(mask, 0, 16);
	for (int i = 0; i < bits; i++)
		mask[i / 8] |= (uint8_t)(0x80 >> (i % 8));
	return 0;
}

/* "addr/bits": the address field alone. */
static int read_cidr(struct line *l, struct hba_rule *r, const struct token *t)
{
	char copy[64];
	char *slash;

	if (strlen(t->text) >= sizeof(copy)) {
		line_error(l, "invalid IP address \"%s\"", t->text);
		return -1;
	}
	strcpy(copy, t->text);
	slash = strchr(copy, '/');
	*slash = '\0';
	r->family = parse_ip(copy, r->addr);
	if (!r->family) {
		line_error(l, "invalid IP address \"%s\"", copy);
		return -1;
	}
	if (mask_from_bits(slash + 1, r->family, r->mask) < 0) {
		line_error(l, "invalid CIDR mask in address \"%s\"", t->text);
		return -1;
	}
	return 0;
}

/* The address field, and the mask field after it when the address has no /bits. Returns fields used. */
static int read_address(struct line *l, struct hba_rule *r)
{
	const struct token *t = single(l, 3, "IP address"), *m;
	uint8_t mask[16];

	if (!t)
		return -1;
	if (keyword(t, "all")) {
		r->any_address = true;
		return 1;
	}
	if (keyword(t, "samehost") || keyword(t, "samenet")) {
		line_error(l, "\"%s\" is not supported", t->text);
		return -1;
	}
	if (strchr(t->text, '/'))
		return read_cidr(l, r, t) < 0 ? -1 : 1;
	r->family = parse_ip(t->text, r->addr);
	if (!r->family) {
		line_error(l, "host names are not supported (\"%s\"): use an IP address", t->text);
		return -1;
	}
	m = single(l, 4, "netmask");
	if (!m)
		return -1;
	if (parse_ip(m->text, mask) != r->family) {
		line_error(l, "invalid IP mask \"%s\" for address \"%s\"", m->text, t->text);
		return -1;
	}
	memcpy(r->mask, mask, 16);
	return 2;
}

static int read_method(struct line *l, struct hba_rule *r, int f)
{
	const struct token *t = single(l, f, "authentication method");
	int first;

	if (!t)
		return -1;
	for (int i = 0; i < (int)(sizeof(method_names) / sizeof(*method_names)); i++)
		if (keyword(t, method_names[i]))
			r->method = (enum hba_method)i;
	if (!keyword(t, method_names[r->method])) {
		line_error(l, "authentication method \"%s\" is not supported", t->text);
		return -1;
	}
	if (r->method == HBA_PEER && r->conn != HBA_LOCAL) {
		line_error(l, "peer authentication is only supported on local sockets");
		return -1;
	}
	if (field_tokens(l, f + 1, &first) > 0) {
		line_error(l, "authentication options are not supported (\"%s\")",
			   l->tokens[first].text);
		return -1;
	}
	return 0;
}

/* ---- rules */

static void free_names(struct hba_names *n)
{
	for (int i = 0; i < n->count; i++)
		free(n->names[i]);
	free(n->names);
}

static void free_rule(struct hba_rule *r)
{
	free_names(&r->databases);
	free_names(&r->users);
}

void hba_free(struct hba *hba)
{
	if (!hba)
		return;
	for (int i = 0; i < hba->count; i++)
		free_rule(&hba->rules[i]);
	free(hba->rules);
	free(hba);
}

static int read_rule(struct line *l, struct hba_rule *r)
{
	int used = 0;

	if (read_conn(l, r) < 0 || read_names(l, 1, true, &r->databases) < 0 ||
	    read_names(l, 2, false, &r->users) < 0)
		return -1;
	if (r->conn == HBA_LOCAL)
		r->any_address = true;
	else if ((used = read_address(l, r)) < 0)
		return -1;
	for (int i = 0; i < 16; i++)
		r->addr[i] &= r->mask[i];
	return read_method(l, r, 3 + used);
}

static int append_rule(struct hba *hba, const struct hba_rule *r, int *cap)
{
	if (hba->count == *cap) {
		int more = *cap ? *cap * 2 : 16;
		struct hba_rule *rules = realloc(hba->rules, more * sizeof(*rules));

		if (!rules)
			return -1;
		hba->rules = rules;
		*cap = more;
	}
	hba->rules[hba->count++] = *r;
	return 0;
}

static void parse_line(struct hba *hba, int *cap, const char *text, size_t n, int lineno,
		       struct authfile_errors *errs)
{
	struct line l = { .lineno = lineno, .errs = errs };
	struct hba_rule r = { .line = lineno };

	/* a token is at most its text; each adds a NUL, and takes at least one byte or a quote pair */
	l.buf = malloc(n + 1);
	l.out = malloc(2 * n + 2);
	if (!l.buf || !l.out) {
		errs->oom = true;
		free(l.buf);
		free(l.out);
		return;
	}
	memcpy(l.buf, text, n);
	l.buf[n] = '\0';
	if (tokenize(&l, n) == 0 && l.fields > 0) {
		if (read_rule(&l, &r) == 0 && !errs->oom && append_rule(hba, &r, cap) == 0)
			r = (struct hba_rule){ 0 };  /* the list owns the names now */
		else if (!l.bad)
			errs->oom = true;
	}
	free_rule(&r);
	free(l.tokens);
	free(l.buf);
	free(l.out);
}

static struct hba *finish(struct hba *hba, struct authfile_errors *errs, char **errors)
{
	char *text = authfile_finish(errs);

	if (text || errs->oom) {
		hba_free(hba);
		hba = NULL;
	}
	if (errors)
		*errors = text;
	else
		free(text);
	return hba;
}

struct hba *hba_parse(const char *path, const char *text, size_t len, char **errors)
{
	struct authfile_errors errs = { .path = path };
	struct authfile_lines lines = { text, text + len, 0 };
	struct hba *hba = calloc(1, sizeof(*hba));
	const char *line;
	int cap = 0;
	size_t n;

	if (!hba)
		errs.oom = true;
	while (hba && !errs.oom && authfile_line(&lines, &line, &n))
		parse_line(hba, &cap, line, n, lines.lineno, &errs);
	return finish(hba, &errs, errors);
}

struct hba *hba_load(const char *path, char **errors)
{
	struct authfile_errors errs = { .path = path };
	struct hba *hba;
	char *text;
	size_t len;

	if (authfile_read(path, &text, &len, &errs) < 0)
		return finish(NULL, &errs, errors);
	hba = hba_parse(path, text, len, errors);
	free(text);
	return hba;
}

/* ---- matching */

static bool conn_matches(const struct hba_rule *r, const struct hba_client *c)
{
	switch (r->conn) {
	case HBA_LOCAL:
		return c->local;
	case HBA_HOST:
		return !c->local;
	case HBA_HOSTSSL:
		return !c->local && c->ssl;
	case HBA_HOSTNOSSL:
		return !c->local && !c->ssl;
	}
	return false;
}

static bool name_listed(const struct hba_names *n, const char *name)
{
	for (int i = 0; i < n->count; i++)
		if (strcmp(n->names[i], name) == 0)
			return true;
	return false;
}

static bool database_matches(const struct hba_names *n, const struct hba_client *c)
{
	return n->all || (n->sameuser && strcmp(c->database, c->user) == 0) ||
	       name_listed(n, c->database);
}

/* The client's address as 16 bytes in the rule's family; false when it has none there. */
static bool client_bytes(const struct sockaddr *sa, int family, uint8_t out[16])
{
	static const uint8_t v4_mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff };

	memset(out, 0, 16);
	if (!sa)
		return false;
	if (sa->sa_family == AF_INET) {
		const uint8_t *a = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;

		if (family == AF_INET)
			memcpy(out, a, 4);
		else
			memcpy(out, v4_mapped, 12), memcpy(out + 12, a, 4);
		return true;
	}
	if (sa->sa_family == AF_INET6) {
		const uint8_t *a = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;

		if (family == AF_INET6)
			memcpy(out, a, 16);
		else if (memcmp(a, v4_mapped, 12) == 0)
			memcpy(out, a + 12, 4);
		else
			return false;
		return true;
	}
	return false;
}

static bool address_matches(const struct hba_rule *r, const struct hba_client *c)
{
	uint8_t a[16];

	if (r->any_address)
		return true;
	if (!client_bytes(c->addr, r->family, a))
		return false;
	for (int i = 0; i < 16; i++)
		if ((a[i] & r->mask[i]) != r->addr[i])
			return false;
	return true;
}

const struct hba_rule *hba_match(const struct hba *hba, const struct hba_client *c)
{
	for (int i = 0; i < hba->count; i++) {
		const struct hba_rule *r = &hba->rules[i];

		if (conn_matches(r, c) && address_matches(r, c) &&
		    database_matches(&r->databases, c) &&
		    (r->users.all || name_listed(&r->users, c->user)))
			return r;
	}
	return NULL;
}
