/*
 * fuzz_hba.c — libFuzzer target: hba_parse() (auth_hba_file) on arbitrary
 * text, then hba_match() for a few fixed clients. A loaded file has
 * only rules of known kinds whose addresses are already masked; a refused
 * one has an error text whose lines name the file.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "hba.h"

static void check_rules(const struct hba *hba)
{
	for (int i = 0; i < hba->count; i++) {
		const struct hba_rule *r = &hba->rules[i];

		if (r->method > HBA_REJECT || r->conn > HBA_HOSTNOSSL || r->line < 1 ||
		    (r->method == HBA_PEER && r->conn != HBA_LOCAL))
			abort();
		for (int b = 0; b < 16; b++)
			if (r->addr[b] & ~r->mask[b])
				abort();
	}
}

static void match_some(const struct hba *hba)
{
	struct sockaddr_in v4 = { .sin_family = AF_INET };
	struct sockaddr_in6 v6 = { .sin6_family = AF_INET6 };
	const struct hba_rule *r;

	inet_pton(AF_INET, "10.1.2.3", &v4.sin_addr);
	inet_pton(AF_INET6, "::ffff:10.1.2.3", &v6.sin6_addr);
	struct hba_client clients[] = {
		{ true, false, "db", "user", NULL },
		{ false, true, "db", "db", (struct sockaddr *)&v4 },
		{ false, false, "all", "user", (struct sockaddr *)&v6 },
	};
	for (size_t i = 0; i < sizeof(clients) / sizeof(*clients); i++) {
		r = hba_match(hba, &clients[i]);
		if (r && (r < hba->rules || r >= hba->rules + hba->count))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *errors = NULL;
	struct hba *hba = hba_parse("f", (const char *)data, size, &errors);

	if (hba) {
		if (errors)
			abort();
		check_rules(hba);
		match_some(hba);
		hba_free(hba);
		return 0;
	}
	if (!errors || strncmp(errors, "f:", 2) != 0 || errors[strlen(errors) - 1] != '\n')
		abort();
	free(errors);
	return 0;
}
