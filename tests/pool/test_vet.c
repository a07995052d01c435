/*
 * test_vet.c — Criterion tests for pool/vet.c: which startup settings a
 * backend must check, the query that checks them, reading its answer, and
 * the per-pool cache.
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "params.h"
#include "vet.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/lsan_interface.h>
#endif

static void leak_check(void)
{
#if defined(__SANITIZE_ADDRESS__)
	if (__lsan_do_recoverable_leak_check())
		abort();
#endif
}

TestSuite(vet, .fini = leak_check);

static struct param_set list_of(const char *const *pairs)
{
	struct param_set l = PARAMS_EMPTY;

	for (; *pairs; pairs += 2)
		cr_assert_eq(params_append(&l, pairs[0], pairs[1]), 0);
	return l;
}

static struct param_set set_of(const char *const *pairs)
{
	struct param_set s = PARAMS_EMPTY;

	for (; *pairs; pairs += 2)
		cr_assert_eq(params_put(&s, pairs[0], pairs[1]), 0);
	return s;
}

static void assert_key(const char *const *sequence, const char *const *want)
{
	struct param_set seq = list_of(sequence), key = PARAMS_EMPTY, expected = list_of(want);

	cr_assert_eq(vet_key(&seq, &key), 0);
	cr_assert(params_equal(&key, &expected), "key differs");
	params_free(&seq);
	params_free(&key);
	params_free(&expected);
}

Test(vet, a_plain_application_name_needs_no_backend)
{
	assert_key((const char *const[]){ "application_name", "psql", NULL }, (const char *const[]){ NULL });
	/* 63 printable bytes are kept as they are */
	char name63[64];
	memset(name63, 'x', 63);
	name63[63] = '\0';
	assert_key((const char *const[]){ "application_name", name63, NULL }, (const char *const[]){ NULL });
	/* everything else goes, in order */
	assert_key((const char *const[]){ "client_encoding", "utf8", "application_name", "psql", "TimeZone", "UTC", NULL },
		   (const char *const[]){ "client_encoding", "utf8", "TimeZone", "UTC", NULL });
}

Test(vet, one_unusual_application_name_takes_them_all)
{
	char name64[65];
	memset(name64, 'x', 64);
	name64[64] = '\0';
	const char *const long_one[] = { "application_name", name64, "Application_Name", "short", NULL };
	assert_key(long_one, long_one);
	const char *const tab[] = { "application_name", "a\tb", NULL };
	assert_key(tab, tab);
	const char *const non_ascii[] = { "application_name", "caf\xc3\xa9", NULL };
	assert_key(non_ascii, non_ascii);
}

Test(vet, sql_puts_reported_ones_back_then_sets_locally_in_order_then_shows)
{
	struct param_set key = list_of((const char *const[]){
		"DateStyle", "SQL", "work_mem", "5MB", "datestyle", "DMY", "server_version", "1", NULL });
	struct param_set base = set_of((const char *const[]){
		"DateStyle", "ISO, MDY", "TimeZone", "UTC", "server_version", "15.2", NULL });
	char *sql = vet_sql(&key, &base);

	cr_assert_not_null(sql);
	cr_assert_str_eq(sql,
		"SELECT pg_catalog.set_config($q0$datestyle$q0$, $q0$ISO, MDY$q0$, true);"
		"SELECT pg_catalog.set_config($q0$DateStyle$q0$, $q0$SQL$q0$, true);"
		"SELECT pg_catalog.set_config($q0$work_mem$q0$, $q0$5MB$q0$, true);"
		"SELECT pg_catalog.set_config($q0$datestyle$q0$, $q0$DMY$q0$, true);"
		"SELECT pg_catalog.set_config($q0$server_version$q0$, $q0$1$q0$, true);"
		"SELECT pg_catalog.current_setting($q0$datestyle$q0$), pg_catalog.current_setting($q0$server_version$q0$);");
	free(sql);
	params_free(&key);
	params_free(&base);
}

Test(vet, sql_without_reported_settings_still_answers_a_row)
{
	struct param_set key = list_of((const char *const[]){ "search_path", "a$q0$b", NULL });
	struct param_set base = set_of((const char *const[]){ "TimeZone", "UTC", NULL });
	char *sql = vet_sql(&key, &base);

	cr_assert_str_eq(sql, "SELECT pg_catalog.set_config($q0$search_path$q0$, $q1$a$q0$b$q1$, true);SELECT 1;");
	free(sql);
	params_free(&key);
	params_free(&base);
}

static PGresult *row_of(const char *const *values, int n)
{
	PGresult *res = PQmakeEmptyPGresult(NULL, PGRES_TUPLES_OK);
	PGresAttDesc attrs[8];

	memset(attrs, 0, sizeof(attrs));
	for (int i = 0; i < n; i++) {
		attrs[i].name = (char *)"current_setting";
		attrs[i].typid = 25;
		attrs[i].typlen = -1;
		attrs[i].atttypmod = -1;
	}
	cr_assert(PQsetResultAttrs(res, n, attrs));
	for (int i = 0; i < n; i++)
		cr_assert(PQsetvalue(res, 0, i, (char *)values[i], (int)strlen(values[i])));
	return res;
}

Test(vet, canonical_values_are_read_by_name_order)
{
	struct param_set key = list_of((const char *const[]){
		"TimeZone", "asia/tokyo", "work_mem", "5MB", "DateStyle", "iso,dmy", NULL });
	struct param_set base = set_of((const char *const[]){ "DateStyle", "ISO, MDY", "TimeZone", "UTC", NULL });
	PGresult *res = row_of((const char *const[]){ "ISO, DMY", "Asia/Tokyo" }, 2);
	struct vet_answer a = { PARAMS_EMPTY, NULL, 0 };

	cr_assert_eq(vet_canonical(&key, &base, res, &a), 0);
	cr_assert_str_eq(params_get(&a.canonical, "DateStyle"), "ISO, DMY");
	cr_assert_str_eq(params_get(&a.canonical, "TimeZone"), "Asia/Tokyo");
	cr_assert_null(params_get(&a.canonical, "work_mem"), "not reported: not read");
	vet_answer_free(&a);
	PQclear(res);

	/* an answer of another shape is refused */
	res = row_of((const char *const[]){ "ISO, DMY" }, 1);
	cr_assert_eq(vet_canonical(&key, &base, res, &a), -1);
	vet_answer_free(&a);
	PQclear(res);
	cr_assert_eq(vet_canonical(&key, &base, NULL, &a), -1);
	vet_answer_free(&a);
	params_free(&key);
	params_free(&base);
}

static struct vet_answer answer_of(const char *timezone, const char *notice)
{
	struct vet_answer a = { PARAMS_EMPTY, NULL, 0 };

	cr_assert_eq(params_put(&a.canonical, "timezone", timezone), 0);
	if (notice) {
		a.notices_len = (uint32_t)strlen(notice);
		a.notices = malloc(a.notices_len);
		memcpy(a.notices, notice, a.notices_len);
	}
	return a;
}

Test(vet, cache_finds_what_was_added_and_keeps_a_copy)
{
	struct vet_cache cache = { 0 };
	struct param_set k1 = list_of((const char *const[]){ "TimeZone", "asia/tokyo", NULL });
	struct param_set k2 = list_of((const char *const[]){ "TimeZone", "asia/tokyo", "TimeZone", "utc", NULL });
	struct vet_answer a = answer_of("Asia/Tokyo", "N-bytes");

	cr_assert_null(vet_cache_find(&cache, &k1));
	cr_assert_eq(vet_cache_add(&cache, &k1, &a), 0);
	vet_answer_free(&a);
	const struct vet_answer *got = vet_cache_find(&cache, &k1);
	cr_assert_not_null(got);
	cr_assert_str_eq(params_get(&got->canonical, "TimeZone"), "Asia/Tokyo");
	cr_assert_eq(got->notices_len, 7);
	cr_assert_eq(memcmp(got->notices, "N-bytes", 7), 0);
	cr_assert_null(vet_cache_find(&cache, &k2), "another list is another key");
	vet_cache_clear(&cache);
	cr_assert_null(vet_cache_find(&cache, &k1));
	cr_assert_eq(cache.count, 0);
	params_free(&k1);
	params_free(&k2);
}

Test(vet, cache_drops_the_least_recently_used)
{
	struct vet_cache cache = { 0 };
	struct param_set keys[VET_CACHE_MAX + 1];
	char value[16];

	for (int i = 0; i <= VET_CACHE_MAX; i++) {
		snprintf(value, sizeof(value), "v%d", i);
		keys[i] = list_of((const char *const[]){ "work_mem", value, NULL });
		struct vet_answer a = answer_of(value, NULL);
		cr_assert_eq(vet_cache_add(&cache, &keys[i], &a), 0);
		vet_answer_free(&a);
		/* keep the first one in use: the second is then the oldest */
		if (i == VET_CACHE_MAX - 1)
			cr_assert_not_null(vet_cache_find(&cache, &keys[0]));
	}
	cr_assert_eq(cache.count, VET_CACHE_MAX);
	cr_assert_not_null(vet_cache_find(&cache, &keys[0]));
	cr_assert_null(vet_cache_find(&cache, &keys[1]));
	cr_assert_not_null(vet_cache_find(&cache, &keys[VET_CACHE_MAX]));
	vet_cache_clear(&cache);
	for (int i = 0; i <= VET_CACHE_MAX; i++)
		params_free(&keys[i]);
}

Test(vet, a_long_key_is_not_cached)
{
	struct vet_cache cache = { 0 };
	char value[VET_KEY_CACHE_MAX];
	memset(value, 'x', sizeof(value) - 1);
	value[sizeof(value) - 1] = '\0';
	struct param_set key = list_of((const char *const[]){ "search_path", value, NULL });
	struct vet_answer a = answer_of("UTC", NULL);

	cr_assert_eq(vet_cache_add(&cache, &key, &a), 0);
	cr_assert_null(vet_cache_find(&cache, &key));
	vet_answer_free(&a);
	params_free(&key);
}
