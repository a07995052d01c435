/*
 * startup.c — parsing the first packet a client sends.
 *
 * The length and version are checked before anything else is read, the
 * way PostgreSQL's postmaster does, so garbage is refused early and an
 * absurd length never makes us wait for (or buffer) more bytes.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto.h"
#include "startup.h"

/* What a packet's pieces are taken as: -1 refused as invalid, PIECE_OOM out of memory (53200). */
#define PIECE_OOM (-3)

static void refuse(struct startup *s, const char *sqlstate, const char *fmt, unsigned a, unsigned b)
{
	s->kind = STARTUP_BAD;
	s->sqlstate = sqlstate;
	snprintf(s->message, sizeof(s->message), fmt, a, b);
}

/* Backend command-line switches in "options": -c name=value and --name=value. */
static int add_option_setting(struct startup *s, char *arg)
{
	char *eq = strchr(arg, '=');

	if (!eq)
		return -1;
	*eq = '\0';
	for (char *p = arg; *p; p++)
		if (*p == '-')
			*p = '_';
	if (!params_valid_name(arg))
		return -1;
	return params_append(&s->sequence, arg, eq + 1) < 0 ? PIECE_OOM : 0;
}

/* Split like PostgreSQL's pg_split_opts: whitespace separates, backslash escapes. */
static int next_word(const char **src, char *word, size_t cap)
{
	const char *p = *src;
	size_t n = 0;

	while (*p == ' ' || *p == '\t' || *p == '\n')
		p++;
	if (!*p)
		return 0;
	while (*p && *p != ' ' && *p != '\t' && *p != '\n') {
		if (*p == '\\' && p[1])
			p++;
		if (n + 1 >= cap)
			return -1;
		word[n++] = *p++;
	}
	word[n] = '\0';
	*src = p;
	return 1;
}

static int parse_options(struct startup *s, const char *options)
{
	char word[1024];
	bool want_c_arg = false;
	int r;

	while ((r = next_word(&options, word, sizeof(word))) > 0) {
		if (want_c_arg) {
			want_c_arg = false;
			r = add_option_setting(s, word);
		} else if (strcmp(word, "-c") == 0) {
			want_c_arg = true;
		} else if (strncmp(word, "-c", 2) == 0) {
			r = add_option_setting(s, word + 2);
		} else if (strncmp(word, "--", 2) == 0) {
			r = add_option_setting(s, word + 2);
		} else {
			r = -1;
		}
		if (r < 0)
			return r;
	}
	return (r < 0 || want_c_arg) ? -1 : 0;
}

static int add_pq_option(struct startup *s, const char *name)
{
	assert(s->pq_option_count >= 0);
	if (s->pq_option_count >= STARTUP_MAX_PQ_OPTIONS)
		return -1;
	if (!(s->pq_options[s->pq_option_count] = strdup(name)))
		return PIECE_OOM;
	s->pq_option_count++;
	return 0;
}

/* A name given twice: the last one wins, as in PostgreSQL. */
static int replace_string(char **field, const char *value)
{
	free(*field);
	*field = strdup(value);
	return *field ? 0 : PIECE_OOM;
}

static bool replication_off(const char *value)
{
	static const char *const off[] = { "false", "off", "no", "0", "f", "n" };

	for (size_t i = 0; i < sizeof(off) / sizeof(*off); i++)
		if (strcasecmp(value, off[i]) == 0)
			return true;
	return false;
}

/* A key of the packet; "options" is only noted: the last one given is the one PostgreSQL applies. */
static int take_pair(struct startup *s, const char *name, const char *value, const char **options,
		     struct param_set *keys)
{
	if (strcmp(name, "user") == 0)
		return replace_string(&s->user, value);
	if (strcmp(name, "database") == 0)
		return replace_string(&s->database, value);
	if (strcmp(name, "options") == 0) {
		*options = value;
		return 0;
	}
	if (strcmp(name, "replication") == 0)
		return replication_off(value) ? 0 : -2;
	if (strncmp(name, "_pq_.", 5) == 0)
		return add_pq_option(s, name);
	if (!params_valid_name(name))
		return -1;
	return params_append(keys, name, value) < 0 ? PIECE_OOM : 0;
}

/*
 * PostgreSQL applies the settings in "options" first, then the other keys
 * in packet order (process_startup_options()): a key wins over an option,
 * and a later one over an earlier one.
 */
static int order_settings(struct startup *s, const char *options, const struct param_set *keys)
{
	int r = options ? parse_options(s, options) : 0;

	if (r < 0)
		return r;
	/* Names were checked (params_valid_name()): what fails now is memory. */
	for (const char *n = params_first(keys); n; n = params_next(keys, n))
		if (params_append(&s->sequence, n, params_value(n)) < 0)
			return PIECE_OOM;
	for (const char *n = params_first(&s->sequence); n; n = params_next(&s->sequence, n))
		if (params_put(&s->params, n, params_value(n)) < 0)
			return PIECE_OOM;
	return 0;
}

enum pairs_read { PAIRS_OK, PAIRS_BAD_LAYOUT, PAIRS_REPLICATION, PAIRS_BAD_SETTING, PAIRS_OOM };

/* The name/value pairs after the version, ending with an empty name. */
static enum pairs_read read_pairs(struct startup *s, const char *p, const char *end, const char **options,
				  struct param_set *keys)
{
	assert(p <= end);
	while (p < end && *p) {
		const char *name = p;
		const char *value = memchr(name, '\0', end - name);
		const char *value_end = value ? memchr(value + 1, '\0', end - value - 1) : NULL;
		if (!value_end)
			return PAIRS_BAD_LAYOUT;
		int r = take_pair(s, name, value + 1, options, keys);
		if (r == -2)
			return PAIRS_REPLICATION;
		if (r == PIECE_OOM)
			return PAIRS_OOM;
		if (r < 0)
			return PAIRS_BAD_SETTING;
		p = value_end + 1;
	}
	return (p != end - 1 || *p) ? PAIRS_BAD_LAYOUT : PAIRS_OK;
}

static void parse_pairs(struct startup *s, const char *p, const char *end)
{
	const char *options = NULL;
	struct param_set keys = PARAMS_EMPTY;
	enum pairs_read r = read_pairs(s, p, end, &options, &keys);
	int ordered = r == PAIRS_OK ? order_settings(s, options, &keys) : 0;

	if (ordered < 0)
		r = ordered == PIECE_OOM ? PAIRS_OOM : PAIRS_BAD_SETTING;
	params_free(&keys);
	switch (r) {
	case PAIRS_OK:
		return;
	case PAIRS_BAD_LAYOUT:
		return refuse(s, "08P01", "invalid startup packet layout: expected terminator as last byte", 0, 0);
	case PAIRS_REPLICATION:
		return refuse(s, "0A000", "replication connections are not supported by pglease", 0, 0);
	case PAIRS_BAD_SETTING:
		return refuse(s, "08P01", "invalid startup parameter or option", 0, 0);
	case PAIRS_OOM:
		return refuse(s, "53200", "out of memory", 0, 0);
	}
}

static void parse_v3(struct startup *s, const uint8_t *data)
{
	/* The whole packet is here (startup_parse()): the pairs run from after the version to its end. */
	assert(s->packet_len >= 8 && s->packet_len <= STARTUP_MAX_LEN);
	s->kind = STARTUP_V3;
	parse_pairs(s, (const char *)data + 8, (const char *)data + s->packet_len);
	if (s->kind != STARTUP_V3)
		return;
	if (!s->user || !*s->user)
		return refuse(s, "28000", "no PostgreSQL user name specified in startup packet", 0, 0);
	if (!s->database || !*s->database) {
		free(s->database);
		if (!(s->database = strdup(s->user)))
			return refuse(s, "53200", "out of memory", 0, 0);
	}
}

static void classify(struct startup *s, const uint8_t *data)
{
	uint32_t version = be32(data + 4);

	if (version == PROTO_SSL_REQUEST && s->packet_len == 8)
		s->kind = STARTUP_SSL;
	else if (version == PROTO_GSSENC_REQUEST && s->packet_len == 8)
		s->kind = STARTUP_GSSENC;
	else if (version == PROTO_CANCEL_REQUEST && s->packet_len == 16) {
		s->kind = STARTUP_CANCEL;
		s->cancel_pid = be32(data + 8);
		s->cancel_key = be32(data + 12);
	} else if ((version >> 16) == 3) {
		s->minor = version & 0xffff;
		parse_v3(s, data);
	} else {
		/* PostgreSQL's SQLSTATE for a version it does not speak: feature_not_supported. */
		refuse(s, "0A000", "unsupported frontend protocol %u.%u: server supports 3.0 to 3.0",
		       version >> 16, version & 0xffff);
		s->old_protocol = (version >> 16) < 3;
	}
}

void startup_parse(const uint8_t *data, size_t n, struct startup *s)
{
	memset(s, 0, sizeof(*s));
	if (n < 4) {
		s->kind = STARTUP_INCOMPLETE;
		return;
	}
	s->packet_len = be32(data);
	if (s->packet_len < 8 || s->packet_len > STARTUP_MAX_LEN)
		return refuse(s, "08P01", "invalid length of startup packet", 0, 0);
	if (n < s->packet_len) {
		s->kind = STARTUP_INCOMPLETE;
		return;
	}
	classify(s, data);
}

void startup_free(struct startup *s)
{
	free(s->user);
	free(s->database);
	params_free(&s->params);
	params_free(&s->sequence);
	for (int i = 0; i < s->pq_option_count; i++)
		free(s->pq_options[i]);
	s->user = s->database = NULL;
	s->pq_option_count = 0;
}
