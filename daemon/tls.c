/*
 * tls.c — TLS for clients. See tls.h.
 *
 * One SSL_CTX is current; a connection's SSL takes a reference to it, so a
 * reload that builds a new one frees the old context only when its last
 * connection is freed. The handshake runs on the loop: SSL_accept on a
 * non-blocking socket says which readiness it waits for, and the client's
 * watchers follow (pool/client.c's tls_read_wants_write keeps the write
 * watcher on).
 */
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "client.h"
#include "daemon.h"
#include "listener.h"
#include "log.h"
#include "tls.h"

static SSL_CTX *current;

/* The newest OpenSSL error as text, the queue cleared. */
static const char *ssl_error_text(char *buf, size_t cap)
{
	unsigned long e = ERR_peek_last_error();

	if (e)
		ERR_error_string_n(e, buf, cap);
	else
		snprintf(buf, cap, "unknown error");
	ERR_clear_error();
	return buf;
}

static int set_protocols(SSL_CTX *ctx, const char *spec)
{
	static const struct { unsigned bit; int version; long no; } protos[] = {
		{ TLS_PROTO_10, TLS1_VERSION, SSL_OP_NO_TLSv1 },
		{ TLS_PROTO_11, TLS1_1_VERSION, SSL_OP_NO_TLSv1_1 },
		{ TLS_PROTO_12, TLS1_2_VERSION, SSL_OP_NO_TLSv1_2 },
		{ TLS_PROTO_13, TLS1_3_VERSION, SSL_OP_NO_TLSv1_3 },
	};
	const char *why;
	unsigned bits = config_parse_tls_protocols(spec, &why);
	int lo = 0, hi = 0;

	if (!bits)
		return -1;   /* the config loader already refused it */
	for (size_t i = 0; i < sizeof(protos) / sizeof(*protos); i++) {
		if (!(bits & protos[i].bit))
			continue;
		lo = lo ? lo : protos[i].version;
		hi = protos[i].version;
	}
	if (!SSL_CTX_set_min_proto_version(ctx, lo) || !SSL_CTX_set_max_proto_version(ctx, hi))
		return -1;
	/* A list with a gap ("tlsv1.0,tlsv1.2") leaves the missing ones out. */
	for (size_t i = 0; i < sizeof(protos) / sizeof(*protos); i++)
		if (!(bits & protos[i].bit))
			SSL_CTX_set_options(ctx, protos[i].no);
	return 0;
}

/* Everything from cfg, or NULL with the reason logged (the key and file named). */
static SSL_CTX *build_context(void)
{
	char err[256];
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());

	if (!ctx) {
		log_error("client TLS: cannot create a context: %s", ssl_error_text(err, sizeof(err)));
		return NULL;
	}
	SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	/* No session cache: no state shared between connections beyond the context. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	SSL_CTX_set_num_tickets(ctx, 0);
	if (set_protocols(ctx, cfg->client_tls_protocols) < 0) {
		log_error("client_tls_protocols \"%s\": %s", cfg->client_tls_protocols, ssl_error_text(err, sizeof(err)));
		goto fail;
	}
	if (strcmp(cfg->client_tls_ciphers, "default") != 0 &&
	    !SSL_CTX_set_cipher_list(ctx, cfg->client_tls_ciphers)) {
		log_error("client_tls_ciphers \"%s\": %s", cfg->client_tls_ciphers, ssl_error_text(err, sizeof(err)));
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cfg->client_tls_cert_file) != 1) {
		log_error("client_tls_cert_file \"%s\": cannot load the certificate: %s", cfg->client_tls_cert_file,
			  ssl_error_text(err, sizeof(err)));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, cfg->client_tls_key_file, SSL_FILETYPE_PEM) != 1 &&
	    ERR_GET_REASON(ERR_peek_last_error()) != X509_R_KEY_VALUES_MISMATCH) {
		log_error("client_tls_key_file \"%s\": cannot load the private key: %s", cfg->client_tls_key_file,
			  ssl_error_text(err, sizeof(err)));
		goto fail;
	}
	/* A key that loaded but belongs to another certificate is named as such. */
	if (SSL_CTX_check_private_key(ctx) != 1) {
		log_error("client_tls_key_file \"%s\" does not match client_tls_cert_file \"%s\": %s",
			  cfg->client_tls_key_file, cfg->client_tls_cert_file, ssl_error_text(err, sizeof(err)));
		goto fail;
	}
	if (*cfg->client_tls_ca_file) {
		if (SSL_CTX_load_verify_locations(ctx, cfg->client_tls_ca_file, NULL) != 1) {
			log_error("client_tls_ca_file \"%s\": cannot load the CA certificates: %s",
				  cfg->client_tls_ca_file, ssl_error_text(err, sizeof(err)));
			goto fail;
		}
		STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(cfg->client_tls_ca_file);
		if (names)
			SSL_CTX_set_client_CA_list(ctx, names);
	}
	if (cfg->client_tls_sslmode >= TLS_VERIFY_CA)
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
	return ctx;
fail:
	SSL_CTX_free(ctx);
	return NULL;
}

int tls_init(void)
{
	if (cfg->client_tls_sslmode == TLS_DISABLE)
		return 0;
	current = build_context();
	if (!current)
		return -1;
	log_info("client TLS: %s, certificate %s", (const char *[]){ "disable", "allow", "prefer", "require",
		 "verify-ca", "verify-full" }[cfg->client_tls_sslmode], cfg->client_tls_cert_file);
	return 0;
}

void tls_reload(void)
{
	if (cfg->client_tls_sslmode == TLS_DISABLE) {
		if (current)
			log_info("client TLS: disabled by the reload; current TLS connections keep theirs");
		SSL_CTX_free(current);
		current = NULL;
		return;
	}
	SSL_CTX *next = build_context();
	if (!next) {
		log_error(current ? "client TLS: the reload keeps the running certificate for new connections"
				  : "client TLS: no certificate loaded; TLS is not offered");
		return;
	}
	SSL_CTX_free(current);   /* connections made from it hold their own references */
	current = next;
	log_info("client TLS: certificate %s loaded for new connections", cfg->client_tls_cert_file);
}

void tls_free(void)
{
	SSL_CTX_free(current);
	current = NULL;
}

bool tls_offered(const struct client *c)
{
	return c->tcp && !c->tls && current && cfg->client_tls_sslmode != TLS_DISABLE;
}

int tls_accept(struct client *c)
{
	SSL *ssl = SSL_new(current);

	if (!ssl || SSL_set_fd(ssl, c->fd) != 1) {
		SSL_free(ssl);
		ERR_clear_error();
		return -1;
	}
	SSL_set_accept_state(ssl);
	/* The relay retries a write from a buffer that may have moved, and takes partial writes. */
	SSL_set_mode(ssl, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_ENABLE_PARTIAL_WRITE);
	c->tls = ssl;
	c->tls_handshaking = true;
	return 0;
}

int tls_handshake(struct client *c)
{
	char err[256];

	c->tls_read_wants_write = false;
	ERR_clear_error();
	int n = SSL_do_handshake(c->tls);
	if (n == 1) {
		c->tls_handshaking = false;
		client_want_write(c, c->out != NULL);
		log_debug("client %u: TLS %s/%s", c->id, SSL_get_version(c->tls), SSL_get_cipher_name(c->tls));
		return 1;
	}
	switch (SSL_get_error(c->tls, n)) {
	case SSL_ERROR_WANT_READ:
		client_want_write(c, false);
		return 0;
	case SSL_ERROR_WANT_WRITE:
		c->tls_read_wants_write = true;
		client_want_write(c, true);
		return 0;
	default: {
		long verify = SSL_get_verify_result(c->tls);
		if (verify != X509_V_OK)
			client_close(c, "could not accept SSL connection: certificate verify failed: %s",
				     X509_verify_cert_error_string(verify));
		else
			client_close(c, "could not accept SSL connection: %s", ssl_error_text(err, sizeof(err)));
		ERR_clear_error();
		return -1;
	}
	}
}

/* The client certificate's CN, as PostgreSQL reads it (clientcert=verify-full); false when there is none. */
static bool peer_common_name(const struct client *c, char *cn, size_t cap)
{
	X509 *cert = SSL_get1_peer_certificate(c->tls);
	bool ok = false;

	if (cert) {
		X509_NAME *name = X509_get_subject_name(cert);
		int len = name ? X509_NAME_get_text_by_NID(name, NID_commonName, cn, (int)cap) : -1;
		/* An embedded NUL would let "alice\0evil" pass as "alice". */
		ok = len > 0 && (size_t)len < cap && strlen(cn) == (size_t)len;
		X509_free(cert);
	}
	return ok;
}

bool tls_login_allowed(struct client *c, const char *user, const char *database)
{
	enum tls_mode mode = cfg->client_tls_sslmode;
	char msg[700], what[600], cn[256];

	if (!c->tcp || mode < TLS_REQUIRE)
		return true;
	if (!client_on_tls(c)) {
		/* PostgreSQL's words when only hostssl lines would match. */
		listener_login_words(c, user, database, what, sizeof(what));
		snprintf(msg, sizeof(msg), "no pg_hba.conf entry for %s", what);
		client_fatal(c, "28000", msg, NULL);
		return false;
	}
	if (mode == TLS_VERIFY_FULL && (!peer_common_name(c, cn, sizeof(cn)) || strcmp(cn, user) != 0)) {
		log_info("client %u: certificate CN \"%s\" is not the user name \"%s\" (client_tls_sslmode verify-full)",
			 c->id, cn, user);
		snprintf(msg, sizeof(msg), "certificate authentication failed for user \"%s\"", user);
		client_fatal(c, "28000", msg, NULL);
		return false;
	}
	return true;
}

int tls_cert_end_point(X509 *cert, uint8_t *out, size_t cap)
{
	int md_nid = NID_undef;
	unsigned len = 0;

	if (!cert || !OBJ_find_sigid_algs(X509_get_signature_nid(cert), &md_nid, NULL))
		return -1;
	/* RFC 5929 section 4.1: MD5 and SHA-1 are replaced by SHA-256. */
	if (md_nid == NID_md5 || md_nid == NID_sha1)
		md_nid = NID_sha256;
	const EVP_MD *md = EVP_get_digestbynid(md_nid);
	if (!md || (size_t)EVP_MD_get_size(md) > cap || X509_digest(cert, md, out, &len) != 1)
		return -1;
	return (int)len;
}

int tls_server_end_point(const struct client *c, uint8_t *out, size_t cap)
{
	if (!client_on_tls(c))
		return 0;
	/* Our certificate as this connection's SSL_CTX had it (not a reload's newer one). */
	return tls_cert_end_point(SSL_get_certificate(c->tls), out, cap);
}
