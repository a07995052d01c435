/*
 * test_config_docs.c — the documents list the same [pglease] keys as
 * conf/config.c's key table: README.md's configuration table (key and
 * default) and the sample conf/pglease.ini (every key, set to its default).
 * A key added to the table but not documented, a documented key that no
 * longer exists, or a default that drifted fails here.
 */
#include <criterion/criterion.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

#define MAX_DOC_KEYS 128

struct doc_key {
	char name[64];
	char value[512];    /* README: the default column (or the "in pglease" one); sample: the value set */
	bool matched;
};

struct doc {
	const char *path;
	struct doc_key keys[MAX_DOC_KEYS];
	int count;
};

/* The repository's root, found from this source file's path, wherever make runs. */
static void repo_path(char *out, size_t cap, const char *rel)
{
	const char *me = __FILE__, *cut = strstr(me, "tests/conf/");

	snprintf(out, cap, "%.*s%s", (int)(cut ? cut - me : 0), me, rel);
}

static void trim(char *s)
{
	size_t n = strlen(s);
	size_t start = strspn(s, " \t");

	while (n > start && strchr(" \t\r\n", s[n - 1]))
		n--;
	memmove(s, s + start, n - start);
	s[n - start] = '\0';
}

static void add_key(struct doc *d, const char *name, size_t name_len, const char *value, size_t value_len)
{
	struct doc_key *k = &d->keys[d->count];

	cr_assert_lt(d->count, MAX_DOC_KEYS, "%s: too many keys", d->path);
	cr_assert_lt(name_len, sizeof(k->name));
	cr_assert_lt(value_len, sizeof(k->value));
	memcpy(k->name, name, name_len);
	k->name[name_len] = '\0';
	memcpy(k->value, value, value_len);
	k->value[value_len] = '\0';
	trim(k->value);
	d->count++;
}

/* A row of the table under "| key | default | meaning |": | `name` | default | meaning | */
static bool readme_row(struct doc *d, const char *line)
{
	const char *name, *name_end, *cell, *cell_end;

	if (strncmp(line, "| `", 3) != 0)
		return false;
	name = line + 3;
	if (!(name_end = strchr(name, '`')) || strncmp(name_end, "` |", 3) != 0)
		return false;
	cell = name_end + 3;
	if (!(cell_end = strchr(cell, '|')))
		return false;
	add_key(d, name, (size_t)(name_end - name), cell, (size_t)(cell_end - cell));
	return true;
}

static void read_readme(struct doc *d)
{
	char line[1024];
	bool in_table = false;
	FILE *f = fopen(d->path, "r");

	cr_assert_not_null(f, "%s", d->path);
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "| key | default | meaning |", 27) == 0) {
			cr_assert_not(in_table || d->count, "%s: a second key table", d->path);
			in_table = true;
			continue;
		}
		if (in_table && strncmp(line, "|---", 4) == 0)
			continue;
		if (in_table && !readme_row(d, line))
			in_table = false;
	}
	fclose(f);
	cr_assert_gt(d->count, 0, "%s: no \"| key | default | meaning |\" table found", d->path);
}

/* Uncommented "name = value" lines of the [pglease] section. */
static void read_sample(struct doc *d)
{
	char line[1024];
	bool in_section = false;
	FILE *f = fopen(d->path, "r");

	cr_assert_not_null(f, "%s", d->path);
	while (fgets(line, sizeof(line), f)) {
		trim(line);
		if (line[0] == '[') {
			in_section = strcmp(line, "[pglease]") == 0;
			continue;
		}
		char *eq = strchr(line, '=');
		if (!in_section || !eq || line[0] == ';' || line[0] == '#')
			continue;
		char *comment = strstr(eq, " ;");
		if (comment)
			*comment = '\0';
		size_t name_len = (size_t)(eq - line);
		while (name_len && line[name_len - 1] == ' ')
			name_len--;
		add_key(d, line, name_len, eq + 1, strlen(eq + 1));
	}
	fclose(f);
	cr_assert_gt(d->count, 0, "%s: no keys in [pglease]", d->path);
}

static struct doc_key *find(struct doc *d, const char *name)
{
	struct doc_key *hit = NULL;

	for (int i = 0; i < d->count; i++) {
		if (strcmp(d->keys[i].name, name) != 0)
			continue;
		cr_expect_null(hit, "%s: key \"%s\" listed twice", d->path, name);
		hit = &d->keys[i];
	}
	return hit;
}

/* README defaults: as written in the file, a note in parentheses may follow; an empty one reads "(empty...)". */
static bool readme_default_ok(const char *cell, const char *def)
{
	size_t n = strlen(def);

	if (!*def)
		return strncmp(cell, "(empty", 6) == 0;
	return strncmp(cell, def, n) == 0 && (cell[n] == '\0' || strncmp(cell + n, " (", 2) == 0);
}

/* Every key of the table is in d once with an acceptable value, and d has no other key. */
static void check_doc(struct doc *d, bool (*value_ok)(const char *value, const char *def), const char *what)
{
	char value[256];
	const char *def;
	struct config *c = config_load("/dev/null", NULL);
	int missing = 0, wrong = 0, unknown = 0;

	cr_assert_not_null(c, "an empty config loads with every default");
	for (int i = 0; i < config_key_count(); i++) {
		const char *name = config_key_show(c, i, &def, value, sizeof(value));
		struct doc_key *k = find(d, name);
		if (!k) {
			cr_expect_fail("%s: [pglease] key \"%s\" of conf/config.c is missing", d->path, name);
			missing++;
			continue;
		}
		k->matched = true;
		if (!value_ok(k->value, def)) {
			cr_expect_fail("%s: \"%s\" %s \"%s\", but its default is \"%s\"", d->path, name, what, k->value, def);
			wrong++;
		}
	}
	for (int i = 0; i < d->count; i++) {
		if (d->keys[i].matched)
			continue;
		cr_expect_fail("%s: key \"%s\" is not in conf/config.c's key table", d->path, d->keys[i].name);
		unknown++;
	}
	config_free(c);
	cr_assert_eq(missing + wrong + unknown, 0, "%s: %d missing, %d with a wrong default, %d unknown", d->path,
		     missing, wrong, unknown);
}

static bool same_value(const char *value, const char *def)
{
	return strcmp(value, def) == 0;
}

Test(config_docs, readme_key_table_matches_the_key_table)
{
	static struct doc d;
	char path[4096];

	repo_path(path, sizeof(path), "README.md");
	d.path = path;
	read_readme(&d);
	check_doc(&d, readme_default_ok, "has the default");
}

Test(config_docs, sample_config_sets_every_key_to_its_default)
{
	static struct doc d;
	char path[4096];

	repo_path(path, sizeof(path), "conf/pglease.ini");
	d.path = path;
	read_sample(&d);
	check_doc(&d, same_value, "is set to");
}

/*
 * README's "Moving from PgBouncer" table lists exactly the PgBouncer settings
 * config.c answers with what replaces them, and none of them is a key of ours.
 */
Test(config_docs, readme_pgbouncer_table_matches_config)
{
	static struct doc d;
	char path[4096], line[1024], value[256];
	const char *def;
	bool in_table = false;

	repo_path(path, sizeof(path), "README.md");
	d.path = path;
	FILE *f = fopen(path, "r");
	cr_assert_not_null(f, "%s", path);
	while (fgets(line, sizeof(line), f)) {
		if (strncmp(line, "| PgBouncer key | in pglease |", 30) == 0) {
			in_table = true;
			continue;
		}
		if (in_table && strncmp(line, "|---", 4) == 0)
			continue;
		if (in_table && !readme_row(&d, line))
			in_table = false;
	}
	fclose(f);
	cr_assert_eq(d.count, config_pgbouncer_key_count(), "%s: %d PgBouncer keys listed, config.c answers %d",
		     path, d.count, config_pgbouncer_key_count());
	for (int i = 0; i < d.count; i++)
		cr_expect_not_null(config_pgbouncer_instead(d.keys[i].name), "%s: \"%s\" is not answered by config.c",
				   path, d.keys[i].name);
	struct config *c = config_load("/dev/null", NULL);
	cr_assert_not_null(c);
	for (int i = 0; i < config_key_count(); i++)
		cr_expect_null(config_pgbouncer_instead(config_key_show(c, i, &def, value, sizeof(value))),
			       "a key of ours is listed as one pglease does not have");
	config_free(c);
}
