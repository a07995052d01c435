/*
 * fuzz_userlist.c — libFuzzer target: userlist_parse() (auth_file) on
 * arbitrary text. It must either load, and then find every user it holds,
 * or fail with an error text whose lines name the file ("f:").
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "userlist.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *errors = NULL;
	struct userlist *list = userlist_parse("f", (const char *)data, size, &errors);

	if (list) {
		if (errors)
			abort();
		/* every user held is found by its name, with a secret of a known kind */
		for (int i = 0; i < userlist_count(list); i++) {
			const struct user_secret *u = userlist_at(list, i);

			if (userlist_find(list, u->user) != u || !*u->user ||
			    (u->kind == SECRET_SCRAM && u->scram.iterations < 1))
				abort();
		}
		userlist_free(list);
		return 0;
	}
	if (!errors || strncmp(errors, "f:", 2) != 0 || errors[strlen(errors) - 1] != '\n')
		abort();
	free(errors);
	return 0;
}
