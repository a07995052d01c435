/*
 * auth.h — client authentication: the method a client gets, the password
 * exchange as PostgreSQL speaks it, and the files it checks against.
 *
 * The files (auth_file, auth_hba_file) belong to a config:
 *   auth_files_load()     read both files a config names; NULL + "FILE:LINE: ..." errors
 *   auth_files_install()  make them the running ones (with the config they were loaded for)
 *   auth_files_free()
 *
 * One client (login.c hands it over once its startup packet is parsed):
 *   auth_start()     decide the method (auth_type, or the first matching hba
 *                    line) and run it: trust and peer go straight back to
 *                    login.c; md5 and scram-sha-256 run their exchange here
 *   auth_input()     a client with an exchange in progress has bytes (login_readable)
 *   auth_pending()   is an exchange (or a failure delay) in progress for it
 *   auth_release()   the client is freed: drop its state, cancel what it waits for
 *
 * Process:
 *   auth_init()      the mock-secret key and the failure-delay timer (before the loop runs)
 *   auth_shutdown()  at exit: the running files, the derived-secret cache
 */
#ifndef PGLEASE_AUTH_H
#define PGLEASE_AUTH_H

#include <stdbool.h>

#include "check.h"
#include "config.h"

struct client;
struct startup;
struct auth_files;

MUST_CHECK struct auth_files *auth_files_load(const struct config *c, char **errors);
void auth_files_install(struct auth_files *files);
void auth_files_free(struct auth_files *files);

MUST_CHECK int auth_init(void);
void auth_shutdown(void);

/* May take over *st (leaving it empty): the caller frees *st after, as always. */
void auth_start(struct client *c, struct startup *st);
void auth_input(struct client *c);
bool auth_pending(const struct client *c);
void auth_release(struct client *c);

#endif
