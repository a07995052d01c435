/*
 * daemon.h — process-wide state: the loop and the running config, and the
 * process-level actions that signals and the admin console both trigger.
 *
 *   daemon_reload()    re-read the config file (SIGHUP, RELOAD); 0 when applied
 *   daemon_shutdown()  stop pglease (SIGTERM graceful, SIGINT fast, SHUTDOWN)
 */
#ifndef PGLEASE_DAEMON_H
#define PGLEASE_DAEMON_H

#include "env.h"

enum shutdown_kind {
	SHUTDOWN_GRACEFUL,   /* stop accepting; leases finish up to shutdown_timeout */
	SHUTDOWN_FAST,       /* roll back and close now */
};

int daemon_reload(void);
void daemon_shutdown(enum shutdown_kind kind);

#endif
