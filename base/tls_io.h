/*
 * tls_io.h — one OpenSSL record-layer call with the meaning of the socket
 * call it replaces, for the two sides of the relay (pool/client.c over the
 * client's TLS session, pool/server.c over libpq's).
 *
 *   tls_io_recv()  SSL_read as recv(): >0 bytes; 0 the peer closed; -1 and errno
 *   tls_io_send()  SSL_write as send(): >0 bytes taken; -1 and errno
 *
 * errno EAGAIN means "call again when *wait's socket event comes": a TLS
 * read may need the socket writable (a renegotiation or key update the
 * peer started) and a write readable, which is the opposite of what epoll
 * is asked for, so the caller keeps that wait and swaps its interest.
 * Any other failure is EIO (read) or EPIPE (write): the peer is gone.
 */
#ifndef PGLEASE_TLS_IO_H
#define PGLEASE_TLS_IO_H

#include <stddef.h>
#include <sys/types.h>

#include <openssl/ssl.h>

enum tls_wait { TLS_WAIT_NONE, TLS_WAIT_READ, TLS_WAIT_WRITE };

ssize_t tls_io_recv(SSL *ssl, void *buf, size_t len, enum tls_wait *wait);
ssize_t tls_io_send(SSL *ssl, const void *data, size_t len, enum tls_wait *wait);

#endif
