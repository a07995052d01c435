/*
 * pause.c — the set of paused database names (see pause.h).
 */
#include <stdlib.h>
#include <string.h>

#include "pause.h"

static char **names;
static int count;
static bool everything;
bool pause_any;

static void note_any(void)
{
	pause_any = everything || count > 0;
}

bool pause_all(void)
{
	return everything;
}

bool pause_covers(const char *dbname)
{
	if (everything)
		return true;
	for (int i = 0; i < count; i++)
		if (strcmp(names[i], dbname) == 0)
			return true;
	return false;
}

/* 0, or -1 when out of memory. */
int pause_add(const char *dbname)
{
	if (!*dbname) {
		everything = true;
		note_any();
		return 0;
	}
	if (pause_covers(dbname) && !everything)
		return 0;
	char **grown = realloc(names, (count + 1) * sizeof(*names));
	if (!grown)
		return -1;
	names = grown;
	if (!(names[count] = strdup(dbname)))
		return -1;
	count++;
	note_any();
	return 0;
}

void pause_remove(const char *dbname)
{
	for (int i = 0; i < count; i++) {
		if (*dbname && strcmp(names[i], dbname) != 0)
			continue;
		free(names[i]);
		names[i--] = names[--count];
	}
	if (!*dbname)
		everything = false;
	if (!count) {
		free(names);
		names = NULL;
	}
	note_any();
}
