/*
 * login.h — a new client's startup packets and authentication.
 *
 *   login_readable()  a CLIENT_LOGIN client's socket has bytes (called by pool/client.c)
 *   login_finish()    an authenticated client joins its pool or the console (auth.c)
 *   login_peer()      peer authentication (auth.c, for auth_type peer or an hba peer line)
 */
#ifndef PGLEASE_LOGIN_H
#define PGLEASE_LOGIN_H

struct client;
struct startup;

void login_readable(struct client *c);
/* auth.c's verdicts: authenticated (join the pool or the console; *st stays the caller's) ... */
void login_finish(struct client *c, struct startup *st);
/* ... or the peer check, on the worker thread (takes over *st). */
void login_peer(struct client *c, struct startup *st);

#endif
