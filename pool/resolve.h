/*
 * resolve.h — the host names of a pool's conninfo, resolved off the loop.
 *
 *   resolve_needed()  does a libpq host list name a host that needs DNS?
 *   resolve_start()   resolve it on the worker thread; the callback runs on
 *                     the loop with a libpq hostaddr list, or an error
 *
 * libpq resolves host names synchronously inside PQconnectStartParams()
 * and PQconnectPoll(). Handing libpq a hostaddr for each named host keeps
 * DNS off the loop, while host still names the server for libpq (password
 * files, TLS, error messages).
 */
#ifndef PGLEASE_RESOLVE_H
#define PGLEASE_RESOLVE_H

#include <stdbool.h>

#include "check.h"

typedef void (*resolve_cb)(void *arg, char *hostaddr, const char *error);

bool resolve_needed(const char *host_list, const char *hostaddr);
MUST_CHECK int resolve_start(const char *host_list, resolve_cb cb, void *arg);

#endif
