/*
 * tls.h — TLS for clients: pglease's SSL_CTX, the handshake on the loop,
 * and what authentication needs to know about a client's TLS session.
 *
 *   tls_init()            at start: build the context from cfg (client_tls_*); -1 when a file does not load
 *   tls_reload()          after a reload swapped cfg: a new context for new connections (the old one is kept on error)
 *   tls_free()            at exit
 *   tls_offered()         is this client offered TLS on an SSLRequest (TCP, sslmode != disable, a context)
 *   tls_accept()          'S' was sent: start the handshake (driven by tls_handshake() from the login hook)
 *   tls_handshake()       one step of SSL_accept; 1 done, 0 waiting for the socket, -1 failed (client closed)
 *   tls_login_allowed()   after the StartupMessage: sslmode require/verify-* and verify-full's CN; refuses with FATAL
 *   tls_server_end_point() RFC 5929 tls-server-end-point data for SCRAM-SHA-256-PLUS
 *
 * The pool layer does the record I/O itself (pool/client.c reads and
 * writes through c->tls once c->tls_handshaking is false) and frees the
 * SSL with the client; each SSL holds a reference to the SSL_CTX it was
 * made from, so a reload's new certificate applies to new connections
 * while current ones keep theirs.
 */
#ifndef PGLEASE_TLS_H
#define PGLEASE_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "check.h"

struct client;
struct config;

MUST_CHECK int tls_init(void);
void tls_reload(void);
void tls_free(void);
bool tls_offered(const struct client *c);
MUST_CHECK int tls_accept(struct client *c);
int tls_handshake(struct client *c);
MUST_CHECK bool tls_login_allowed(struct client *c, const char *user, const char *database);

/*
 * The hash of OUR certificate on c's connection (RFC 5929 tls-server-end-point:
 * the certificate's signature digest, SHA-256 when that is MD5 or SHA-1) into
 * out: its length, 0 when c is not on TLS, -1 on error (cap too small, no certificate).
 */
MUST_CHECK int tls_server_end_point(const struct client *c, uint8_t *out, size_t cap);

/* The same for a certificate in DER form (unit tests, and the above's work). */
struct x509_st;
MUST_CHECK int tls_cert_end_point(struct x509_st *cert, uint8_t *out, size_t cap);

#endif
