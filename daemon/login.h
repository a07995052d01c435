/*
 * login.h — a new client's startup packets and authentication.
 *
 *   login_readable()  a CLIENT_LOGIN client's socket has bytes (called by pool/client.c)
 */
#ifndef PGLEASE_LOGIN_H
#define PGLEASE_LOGIN_H

struct client;

void login_readable(struct client *c);

#endif
