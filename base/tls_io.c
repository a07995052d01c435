/*
 * tls_io.c — SSL_read/SSL_write with recv()/send()'s meaning (tls_io.h).
 */
#include <errno.h>
#include <limits.h>
#include <stdbool.h>

#include <openssl/err.h>

#include "tls_io.h"

static int clamp(size_t len)
{
	return len > INT_MAX ? INT_MAX : (int)len;
}

/* A failed call's wait, or false when the failure is final. */
static bool must_wait(int err, enum tls_wait *wait)
{
	*wait = err == SSL_ERROR_WANT_READ ? TLS_WAIT_READ : err == SSL_ERROR_WANT_WRITE ? TLS_WAIT_WRITE
										   : TLS_WAIT_NONE;
	return *wait != TLS_WAIT_NONE;
}

ssize_t tls_io_recv(SSL *ssl, void *buf, size_t len, enum tls_wait *wait)
{
	ERR_clear_error();
	errno = 0;
	int n = SSL_read(ssl, buf, clamp(len));
	if (n > 0) {
		*wait = TLS_WAIT_NONE;
		return n;
	}
	int err = SSL_get_error(ssl, n);
	if (must_wait(err, wait)) {
		errno = EAGAIN;
		return -1;
	}
	ERR_clear_error();
	/* close_notify, or the peer hanging up without one: both are a close. */
	if (err == SSL_ERROR_ZERO_RETURN || (err == SSL_ERROR_SYSCALL && errno == 0))
		return 0;
	errno = EIO;
	return -1;
}

ssize_t tls_io_send(SSL *ssl, const void *data, size_t len, enum tls_wait *wait)
{
	ERR_clear_error();
	int n = SSL_write(ssl, data, clamp(len));
	if (n > 0) {
		*wait = TLS_WAIT_NONE;
		return n;
	}
	if (must_wait(SSL_get_error(ssl, n), wait)) {
		errno = EAGAIN;
		return -1;
	}
	ERR_clear_error();
	errno = EPIPE;
	return -1;
}
