/*
 * test_stats.c — Criterion tests for the Prometheus text format of pool/stats.c.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "stats.h"

static struct stats_sample one(void)
{
	struct stats_sample s = {
		.database = "app", .user = "postgres", .pool_mode = "transaction",
		.cl_active = 2, .cl_waiting = 1, .sv_idle = 3, .pool_size = 20, .maxwait = 1.5,
	};
	s.st.stream.xacts = 42;
	s.st.stream.queries = 50;
	s.st.wait_time_us = 2500000;
	s.st.exits[EXIT_CLIENT_GONE] = 7;
	s.st.exit_rollbacks = 3;
	s.st.pins = 4;
	s.st.unpins = 2;
	return s;
}

Test(stats, prometheus_families_and_values)
{
	struct stats_sample s = one();
	char *text = stats_prometheus(&s, 1, 5, 1);

	cr_assert_not_null(text);
	cr_assert(strstr(text, "# HELP pglease_transactions_total "));
	cr_assert(strstr(text, "# TYPE pglease_transactions_total counter\n"));
	cr_assert(strstr(text, "pglease_transactions_total{database=\"app\",user=\"postgres\"} 42\n"));
	cr_assert(strstr(text, "pglease_queries_total{database=\"app\",user=\"postgres\"} 50\n"));
	cr_assert(strstr(text, "pglease_wait_seconds_total{database=\"app\",user=\"postgres\"} 2.5\n"));
	cr_assert(strstr(text, "pglease_exit_rollbacks_total{database=\"app\",user=\"postgres\"} 3\n"));
	cr_assert(strstr(text, "# TYPE pglease_pins_total counter\n"));
	cr_assert(strstr(text, "pglease_pins_total{database=\"app\",user=\"postgres\"} 4\n"));
	cr_assert(strstr(text, "pglease_unpins_total{database=\"app\",user=\"postgres\"} 2\n"));
	cr_assert(strstr(text, "pglease_lease_exits_total{database=\"app\",user=\"postgres\",reason=\"client_gone\"} 7\n"));
	cr_assert(strstr(text, "pglease_clients{database=\"app\",user=\"postgres\",state=\"waiting\"} 1\n"));
	cr_assert(strstr(text, "pglease_servers{database=\"app\",user=\"postgres\",state=\"idle\"} 3\n"));
	cr_assert(strstr(text, "pglease_max_wait_seconds{database=\"app\",user=\"postgres\"} 1.5\n"));
	cr_assert(strstr(text, "pglease_client_connections 5\n"));
	cr_assert(strstr(text, "# TYPE pglease_pool_size gauge\n"));
	free(text);
}

/* Each family's HELP/TYPE once, counters named *_total, text ends in a newline. */
Test(stats, prometheus_structure)
{
	struct stats_sample s[2] = { one(), one() };
	s[1].database = "other";
	char *text = stats_prometheus(s, 2, 0, 0);
	char *save = NULL;

	cr_assert_not_null(text);
	cr_assert_eq(text[strlen(text) - 1], '\n');
	int types = 0;
	for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		if (strncmp(line, "# TYPE ", 7) != 0)
			continue;
		types++;
		char name[128], kind[32];
		cr_assert_eq(sscanf(line, "# TYPE %127s %31s", name, kind), 2);
		if (strcmp(kind, "counter") == 0)
			cr_assert(strlen(name) > 6 && strcmp(name + strlen(name) - 6, "_total") == 0, "%s", name);
	}
	cr_assert_geq(types, 20);
	free(text);
}

Test(stats, no_pools_still_valid)
{
	char *text = stats_prometheus(NULL, 0, 0, 0);

	cr_assert_not_null(text);
	cr_assert(strstr(text, "pglease_client_connections 0\n"));
	free(text);
}

Test(stats, label_escaping)
{
	char out[64];

	stats_escape_label("a\"b\\c\nd", out, sizeof(out));
	cr_assert_str_eq(out, "a\\\"b\\\\c\\nd");
	stats_escape_label("0123456789", out, 6);
	cr_assert_eq(strlen(out), 3);
}

Test(stats, escaped_labels_in_output)
{
	struct stats_sample s = one();
	s.database = "we\"ird";
	char *text = stats_prometheus(&s, 1, 0, 0);

	cr_assert(strstr(text, "pglease_transactions_total{database=\"we\\\"ird\",user=\"postgres\"} 42\n"));
	free(text);
}

/* The labels are SHOW STATS' exits_* columns and /metrics' reason=: spelled as documented, in this order. */
Test(stats, exit_reason_labels)
{
	static const char *const want[] = {
		"transaction_done", "client_gone", "client_protocol", "server_lost",
		"setup_failed", "killed", "shutdown", "timeout_query", "timeout_idle_transaction",
		"timeout_transaction", "timeout_stall", "other",
	};
	struct stats_sample s = one();
	char *text, *at, series[200];

	cr_assert_eq(STATS_EXIT_REASONS, sizeof(want) / sizeof(*want));
	for (int i = 0; i < STATS_EXIT_REASONS; i++) {
		cr_assert_str_eq(stats_exit_reason_names[i], want[i]);
		s.st.exits[i] = 100 + i;
	}
	text = stats_prometheus(&s, 1, 0, 0);
	cr_assert_not_null(text);
	at = text;
	for (int i = 0; i < STATS_EXIT_REASONS; i++) {
		snprintf(series, sizeof(series),
			 "pglease_lease_exits_total{database=\"app\",user=\"postgres\",reason=\"%s\"} %d\n", want[i], 100 + i);
		cr_assert_not_null(at = strstr(at, series), "%s missing or out of order", series);
	}
	free(text);
}
