/*
 * admin.h — the admin console: the special database "pglease".
 *
 *   admin_is_console()   is this database name the console
 *   admin_login()        an authenticated client asked for the console: check access, welcome
 *   admin_on_readable() / admin_on_writable()  its socket events (pool/client.c calls them through the front-end hooks)
 *   admin_maintain()     periodic: answer PAUSE once the paused pools' leases have ended
 *   admin_user()         the user a console client logged in as (NULL for other clients)
 *   admin_free()         release a closed client's console state
 *   admin_set_actions()  what RELOAD and SHUTDOWN call (main.c installs them)
 *
 * A console client never leases a backend: it speaks its own small protocol
 * handler (simple and extended query protocol) and sits on admin_clients.
 */
#ifndef PGLEASE_ADMIN_H
#define PGLEASE_ADMIN_H

#include <stdbool.h>
#include <ev.h>

#include "daemon.h"
#include "list.h"

struct client;
struct startup;

#define ADMIN_DBNAME "pglease"

bool admin_is_console(const char *dbname);
void admin_login(struct client *c, struct startup *st);
void admin_on_readable(struct client *c);
void admin_on_writable(struct client *c);
void admin_maintain(ev_tstamp now);
const char *admin_user(const struct client *c);
void admin_free(struct client *c);

/* The process-level actions the console triggers (daemon.h), installed by main.c. */
struct admin_actions {
	int (*reload)(void);
	void (*shutdown)(enum shutdown_kind kind);
};
void admin_set_actions(const struct admin_actions *actions);

#endif
