/*
 * startup.h — parsing the first packet a client sends.
 *
 *   startup_parse()  classify and parse one startup-phase packet
 *   startup_free()
 *
 * Pure: no sockets, no loop, so every malformed input can be unit-tested.
 */
#ifndef PGLEASE_STARTUP_H
#define PGLEASE_STARTUP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "params.h"

enum startup_kind {
	STARTUP_INCOMPLETE,  /* need more bytes */
	STARTUP_SSL,         /* SSLRequest: answer 'N' */
	STARTUP_GSSENC,      /* GSSENCRequest: answer 'N' */
	STARTUP_CANCEL,      /* CancelRequest */
	STARTUP_V3,          /* StartupMessage, protocol 3.x */
	STARTUP_BAD,         /* refuse with sqlstate/message */
};

#define STARTUP_MAX_PQ_OPTIONS 8

struct startup {
	enum startup_kind kind;
	uint32_t packet_len;
	uint32_t minor;             /* requested 3.x minor version */
	char *user;
	char *database;
	struct param_set params;    /* session settings, incl. options -c: the value each ends with */
	struct param_set sequence;  /* a list: every setting in the order PostgreSQL applies them (options, then keys) */
	char *pq_options[STARTUP_MAX_PQ_OPTIONS]; /* unrecognised _pq_.* names */
	int pq_option_count;
	uint32_t cancel_pid, cancel_key;
	const char *sqlstate;       /* STARTUP_BAD */
	char message[160];
	bool old_protocol;          /* STARTUP_BAD for protocol 1 or 2: answered in that protocol's format */
};

/* Parse data[0, n). Fills *s; on STARTUP_V3 the caller owns the strings. */
void startup_parse(const uint8_t *data, size_t n, struct startup *s);
void startup_free(struct startup *s);

#endif
