/*
 * admin_parse.h — the admin console's command language (pure).
 *
 *   admin_parse()       one command text into a struct admin_cmd
 *   admin_cmd_name()    the verb as shown in CommandComplete ("SHOW", "PAUSE", ...)
 *   ADMIN_HINT          the list of commands, for the HINT of an unknown one
 *
 * Case-insensitive, one command per text, an optional trailing ';'. A
 * database argument is a bare word or a "double-quoted" name.
 */
#ifndef PGLEASE_ADMIN_PARSE_H
#define PGLEASE_ADMIN_PARSE_H

#include <stdbool.h>
#include <stddef.h>

enum admin_verb {
	ADMIN_EMPTY,            /* nothing but blanks and ';' */
	ADMIN_SHOW_POOLS, ADMIN_SHOW_CLIENTS, ADMIN_SHOW_SERVERS, ADMIN_SHOW_STATS,
	ADMIN_SHOW_DATABASES, ADMIN_SHOW_CONFIG, ADMIN_SHOW_USERS, ADMIN_SHOW_VERSION,
	ADMIN_PAUSE, ADMIN_RESUME, ADMIN_RELOAD, ADMIN_RECONNECT, ADMIN_KILL, ADMIN_SHUTDOWN,
	ADMIN_SET,              /* SET name ...: drivers send session settings at connect (arg: the name) */
};

#define ADMIN_NAME_MAX 64

struct admin_cmd {
	enum admin_verb verb;
	char arg[ADMIN_NAME_MAX];   /* the database, or "" for all; SET: the setting's name */
};

#define ADMIN_HINT "Commands: SHOW POOLS | CLIENTS | SERVERS | STATS | DATABASES | CONFIG | USERS | VERSION; " \
	"PAUSE [db]; RESUME [db]; RECONNECT [db]; KILL db; RELOAD; SHUTDOWN."

/* true when text is a command; else false with a message (SQLSTATE 42601) in err. */
bool admin_parse(const char *text, struct admin_cmd *cmd, char *err, size_t cap);
const char *admin_cmd_name(enum admin_verb verb);
/* SHOW commands only read; the others need admin rights. */
bool admin_cmd_is_show(enum admin_verb verb);

#endif
