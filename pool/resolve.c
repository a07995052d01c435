/*
 * resolve.c — the host names of a pool's conninfo, resolved off the loop.
 *
 * Each entry of the comma-separated host list becomes one entry of the
 * hostaddr list: the first address of a name, or an empty entry for a
 * socket directory or a numeric address (libpq needs no DNS for those).
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "resolve.h"
#include "worker.h"

struct resolve_job {
	struct job job;          /* first: the worker hands this back */
	char *hosts;
	char hostaddr[1024];
	char error[512];
	resolve_cb cb;
	void *arg;
};

/* Numeric addresses as getaddrinfo() reads them (an IPv6 scope, "fe80::1%eth0", too): no DNS. */
static bool is_name(const char *host)
{
	struct addrinfo hints = { .ai_flags = AI_NUMERICHOST }, *res;

	if (!*host || host[0] == '/' || host[0] == '@')
		return false;
	if (getaddrinfo(host, NULL, &hints, &res) != 0)
		return true;
	freeaddrinfo(res);
	return false;
}

bool resolve_needed(const char *host_list, const char *hostaddr)
{
	char entry[256];

	if (!host_list || (hostaddr && *hostaddr))
		return false;
	for (const char *p = host_list; *p;) {
		size_t n = strcspn(p, ",");
		snprintf(entry, sizeof(entry), "%.*s", (int)n, p);
		if (is_name(entry))
			return true;
		p += n + (p[n] == ',');
	}
	return false;
}

/* The first address of host as text, or an error. */
static int lookup(const char *host, char *out, size_t cap, char *error, size_t ecap)
{
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM };
	struct addrinfo *res = NULL;
	int rc = getaddrinfo(host, NULL, &hints, &res);

	if (rc != 0) {
		snprintf(error, ecap, "could not translate host name \"%s\" to address: %s", host, gai_strerror(rc));
		return -1;
	}
	void *addr = res->ai_family == AF_INET ? (void *)&((struct sockaddr_in *)res->ai_addr)->sin_addr
					       : (void *)&((struct sockaddr_in6 *)res->ai_addr)->sin6_addr;
	inet_ntop(res->ai_family, addr, out, (socklen_t)cap);
	freeaddrinfo(res);
	return 0;
}

static void run(struct job *job)
{
	struct resolve_job *rj = (struct resolve_job *)job;
	char entry[256], addr[64];
	size_t len = 0;

	/* One entry per host entry, empty ones too (libpq counts "a," and ",a" as two hosts). */
	const char *p = rj->hosts;
	for (bool first = true; !*rj->error; first = false) {
		size_t n = strcspn(p, ",");
		snprintf(entry, sizeof(entry), "%.*s", (int)n, p);
		addr[0] = '\0';
		if (is_name(entry))
			lookup(entry, addr, sizeof(addr), rj->error, sizeof(rj->error));
		len += (size_t)snprintf(rj->hostaddr + len, sizeof(rj->hostaddr) - len, "%s%s", first ? "" : ",", addr);
		if (len >= sizeof(rj->hostaddr))
			snprintf(rj->error, sizeof(rj->error), "host list too long");
		if (!p[n])
			break;
		p += n + 1;
	}
}

static void done(struct job *job)
{
	struct resolve_job *rj = (struct resolve_job *)job;

	rj->cb(rj->arg, *rj->error ? NULL : rj->hostaddr, *rj->error ? rj->error : NULL);
	free(rj->hosts);
	free(rj);
}

int resolve_start(const char *host_list, resolve_cb cb, void *arg)
{
	struct resolve_job *rj = calloc(1, sizeof(*rj));

	if (!rj || !(rj->hosts = strdup(host_list))) {
		free(rj);
		return -1;
	}
	rj->job.run = run;
	rj->job.done = done;
	rj->cb = cb;
	rj->arg = arg;
	worker_submit(&rj->job);
	return 0;
}
