/*
 * admin_parse.c — the admin console's command language.
 *
 * The grammar is tiny: VERB [WORD] or SHOW WHAT. Words are split on
 * blanks; a trailing ';' (with blanks around it) is dropped.
 */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "admin_parse.h"

enum arg_rule { ARG_NONE, ARG_OPTIONAL, ARG_REQUIRED };

static const struct verb_def {
	const char *word, *show;    /* show: the word after SHOW, or NULL */
	enum admin_verb verb;
	enum arg_rule arg;
} verbs[] = {
	{ "SHOW", "POOLS", ADMIN_SHOW_POOLS, ARG_NONE },
	{ "SHOW", "CLIENTS", ADMIN_SHOW_CLIENTS, ARG_NONE },
	{ "SHOW", "SERVERS", ADMIN_SHOW_SERVERS, ARG_NONE },
	{ "SHOW", "STATS", ADMIN_SHOW_STATS, ARG_NONE },
	{ "SHOW", "DATABASES", ADMIN_SHOW_DATABASES, ARG_NONE },
	{ "SHOW", "CONFIG", ADMIN_SHOW_CONFIG, ARG_NONE },
	{ "SHOW", "USERS", ADMIN_SHOW_USERS, ARG_NONE },
	{ "SHOW", "VERSION", ADMIN_SHOW_VERSION, ARG_NONE },
	{ "PAUSE", NULL, ADMIN_PAUSE, ARG_OPTIONAL },
	{ "RESUME", NULL, ADMIN_RESUME, ARG_OPTIONAL },
	{ "RELOAD", NULL, ADMIN_RELOAD, ARG_NONE },
	{ "RECONNECT", NULL, ADMIN_RECONNECT, ARG_OPTIONAL },
	{ "KILL", NULL, ADMIN_KILL, ARG_REQUIRED },
	{ "SHUTDOWN", NULL, ADMIN_SHUTDOWN, ARG_NONE },
};
#define N_VERBS ((int)(sizeof(verbs) / sizeof(*verbs)))

#define MAX_WORDS 4
#define WORD_MAX 128

struct words {
	char w[MAX_WORDS][WORD_MAX];
	int n;
	bool too_many, too_long, open_quote;
};

/* One word at *sp: bare up to a blank, or "quoted" with "" for a quote. */
static void take_word(const char **sp, char *out, struct words *ws)
{
	const char *s = *sp;
	size_t n = 0;
	bool quoted = *s == '"';

	s += quoted;
	while (*s && (quoted || !isspace((unsigned char)*s))) {
		if (quoted && *s == '"' && s[1] != '"') {
			s++;
			quoted = false;
			break;
		}
		s += quoted && *s == '"';
		if (n + 1 < WORD_MAX)
			out[n++] = *s;
		else
			ws->too_long = true;
		s++;
	}
	ws->open_quote |= quoted;
	out[n] = '\0';
	*sp = s;
}

static void split(const char *text, struct words *ws)
{
	char buf[4096];
	size_t len = snprintf(buf, sizeof(buf), "%s", text);

	if (len >= sizeof(buf))
		ws->too_long = true, len = sizeof(buf) - 1;
	while (len && (isspace((unsigned char)buf[len - 1]) || buf[len - 1] == ';'))
		buf[--len] = '\0';
	const char *s = buf;
	for (;;) {
		while (isspace((unsigned char)*s))
			s++;
		if (!*s)
			return;
		if (ws->n == MAX_WORDS) {
			ws->too_many = true;
			return;
		}
		take_word(&s, ws->w[ws->n++], ws);
	}
}

static const struct verb_def *find_verb(const struct words *ws, bool *verb_known)
{
	*verb_known = false;
	for (int i = 0; i < N_VERBS; i++) {
		if (strcasecmp(ws->w[0], verbs[i].word) != 0)
			continue;
		*verb_known = true;
		if (!verbs[i].show)
			return &verbs[i];
		if (ws->n >= 2 && strcasecmp(ws->w[1], verbs[i].show) == 0)
			return &verbs[i];
	}
	return NULL;
}

static bool check_args(const struct verb_def *v, const struct words *ws, struct admin_cmd *cmd,
		       char *err, size_t cap)
{
	int args = ws->n - (v->show ? 2 : 1);

	if (args > (v->arg == ARG_NONE ? 0 : 1)) {
		snprintf(err, cap, "too many arguments for %s%s%s", v->word, v->show ? " " : "", v->show ? v->show : "");
		return false;
	}
	if (args == 0 && v->arg == ARG_REQUIRED) {
		snprintf(err, cap, "%s needs a database name", v->word);
		return false;
	}
	if (args == 1 && strlen(ws->w[ws->n - 1]) >= ADMIN_NAME_MAX) {
		snprintf(err, cap, "database name too long (at most %d bytes)", ADMIN_NAME_MAX - 1);
		return false;
	}
	cmd->verb = v->verb;
	snprintf(cmd->arg, sizeof(cmd->arg), "%s", args ? ws->w[ws->n - 1] : "");
	return true;
}

/* "SET [SESSION|LOCAL] name ..." : the name, lower-cased; its value does not matter here. */
static bool parse_set(const char *text, struct admin_cmd *cmd)
{
	const char *s = text;
	size_t n = 0;

	while (isspace((unsigned char)*s))
		s++;
	if (strncasecmp(s, "set", 3) != 0 || !isspace((unsigned char)s[3]))
		return false;
	for (s += 3; isspace((unsigned char)*s); s++)
		;
	for (const char *w = s; (strncasecmp(w, "session", 7) == 0 || strncasecmp(w, "local", 5) == 0); w = s) {
		size_t wl = (*w | 0x20) == 's' ? 7 : 5;
		if (!isspace((unsigned char)w[wl]))
			break;
		for (s = w + wl; isspace((unsigned char)*s); s++)
			;
	}
	while ((isalnum((unsigned char)s[n]) || s[n] == '_' || s[n] == '.') && n + 1 < sizeof(cmd->arg)) {
		cmd->arg[n] = (char)tolower((unsigned char)s[n]);
		n++;
	}
	cmd->arg[n] = '\0';
	cmd->verb = ADMIN_SET;
	return n > 0;
}

bool admin_parse(const char *text, struct admin_cmd *cmd, char *err, size_t cap)
{
	struct words ws = { .n = 0 };
	bool verb_known;

	*cmd = (struct admin_cmd){ ADMIN_EMPTY, "" };
	if (parse_set(text, cmd))
		return true;
	*cmd = (struct admin_cmd){ ADMIN_EMPTY, "" };
	split(text, &ws);
	if (ws.open_quote || ws.too_long) {
		snprintf(err, cap, ws.open_quote ? "unterminated quoted name" : "command too long");
		return false;
	}
	if (ws.n == 0)
		return true;
	const struct verb_def *v = find_verb(&ws, &verb_known);
	if (!v && verb_known)
		snprintf(err, cap, "unknown SHOW command: \"%s\"", ws.n > 1 ? ws.w[1] : "");
	else if (!v)
		snprintf(err, cap, "unknown admin console command: \"%s\"", ws.w[0]);
	if (!v)
		return false;
	if (ws.too_many) {
		snprintf(err, cap, "too many arguments for %s", v->word);
		return false;
	}
	return check_args(v, &ws, cmd, err, cap);
}

const char *admin_cmd_name(enum admin_verb verb)
{
	if (verb == ADMIN_SET)
		return "SET";
	for (int i = 0; i < N_VERBS; i++)
		if (verbs[i].verb == verb)
			return verbs[i].word;
	return "";
}

bool admin_cmd_is_show(enum admin_verb verb)
{
	return verb >= ADMIN_SHOW_POOLS && verb <= ADMIN_SHOW_VERSION;
}
