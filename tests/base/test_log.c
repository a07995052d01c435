/*
 * test_log.c — Criterion tests for base/log.c: which levels pass, the line's
 * shape, a long message cut to one line, log_debug() costing nothing when
 * off, and lines from two threads never interleaving (one write() each).
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* What log lines reach stderr while fn runs. */
static char *captured(void (*fn)(void))
{
	static char out[1 << 17];
	char path[] = "/tmp/pglease-test-log-XXXXXX";
	int fd = mkstemp(path);
	int saved = dup(STDERR_FILENO);

	cr_assert_geq(fd, 0);
	unlink(path);
	dup2(fd, STDERR_FILENO);
	fn();
	dup2(saved, STDERR_FILENO);
	close(saved);
	ssize_t n = pread(fd, out, sizeof(out) - 1, 0);
	close(fd);
	cr_assert_geq(n, 0);
	out[n] = '\0';
	return out;
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; *s; s++)
		n += *s == '\n';
	return n;
}

static void one_of_each(void)
{
	log_error("e %d", 1);
	log_warning("w %s", "2");
	log_info("i");
	log_debug("d");
}

Test(log, info_is_the_default_level)
{
	const char *out = captured(one_of_each);

	cr_assert(strstr(out, "ERROR: e 1\n"), "%s", out);
	cr_assert(strstr(out, "WARNING: w 2\n"));
	cr_assert(strstr(out, "INFO: i\n"));
	cr_assert_null(strstr(out, "DEBUG"));
	cr_assert_eq(count_lines(out), 3);
	cr_assert(log_enabled(LOG_INFO));
	cr_assert_not(log_enabled(LOG_DEBUG));
}

Test(log, each_level_lets_through_itself_and_what_is_more_severe)
{
	static const struct { enum log_level level; int lines; const char *last; } cases[] = {
		{ LOG_ERROR, 1, "ERROR: e 1\n" },
		{ LOG_WARNING, 2, "WARNING: w 2\n" },
		{ LOG_INFO, 3, "INFO: i\n" },
		{ LOG_DEBUG, 4, "DEBUG: d\n" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(*cases); i++) {
		log_set_level(cases[i].level);
		const char *out = captured(one_of_each);
		cr_assert_eq(count_lines(out), cases[i].lines, "level %d:\n%s", cases[i].level, out);
		size_t len = strlen(out), tail = strlen(cases[i].last);
		cr_assert_str_eq(out + len - tail, cases[i].last, "level %d", cases[i].level);
	}
}

static void one_line(void)
{
	log_warning("backend %d gone", 42);
}

Test(log, a_line_is_utc_time_pid_level_message)
{
	const char *out = captured(one_line);
	char want[128];
	regex_t re;

	snprintf(want, sizeof(want),
		 "^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2}\\.[0-9]{3} UTC \\[%d\\] WARNING: backend 42 gone\n$",
		 (int)getpid());
	cr_assert_eq(regcomp(&re, want, REG_EXTENDED | REG_NOSUB), 0);
	cr_assert_eq(regexec(&re, out, 0, NULL, 0), 0, "<%s>", out);
	regfree(&re);
}

static void long_line(void)
{
	static char big[5000];

	memset(big, 'x', sizeof(big) - 1);
	log_info("%s", big);
}

Test(log, a_long_message_is_cut_to_one_line)
{
	const char *out = captured(long_line);
	size_t len = strlen(out);

	cr_assert_eq(len, 2047, "one line of the 2048-byte buffer, newline included: %zu", len);
	cr_assert_eq(out[len - 1], '\n');
	cr_assert_eq(out[len - 2], 'x');
	cr_assert_eq(count_lines(out), 1);
}

static int evaluated;

static int side_effect(void)
{
	return ++evaluated;
}

static void debug_with_side_effect(void)
{
	log_debug("count %d", side_effect());
}

Test(log, log_debug_does_not_evaluate_its_arguments_when_off)
{
	const char *out = captured(debug_with_side_effect);

	cr_assert_str_eq(out, "");
	cr_assert_eq(evaluated, 0, "the hot path pays for formatting arguments of a dropped line");
	log_set_level(LOG_DEBUG);
	out = captured(debug_with_side_effect);
	cr_assert_eq(evaluated, 1);
	cr_assert(strstr(out, "DEBUG: count 1\n"));
}

#define THREAD_LINES 300

static void *chatter(void *arg)
{
	const char *word = arg;

	for (int i = 0; i < THREAD_LINES; i++)
		log_info("%s %04d %s", word, i, word);
	return NULL;
}

static void two_threads(void)
{
	pthread_t a, b;

	pthread_create(&a, NULL, chatter, "alpha-alpha-alpha-alpha-alpha-alpha");
	pthread_create(&b, NULL, chatter, "omega-omega-omega-omega-omega-omega");
	pthread_join(a, NULL);
	pthread_join(b, NULL);
}

Test(log, lines_from_two_threads_never_interleave)
{
	char *out = captured(two_threads);
	int lines = 0;

	for (char *save = NULL, *line = strtok_r(out, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		const char *msg = strstr(line, "INFO: ");
		char first[64], second[64];
		int n;
		cr_assert_not_null(msg, "<%s>", line);
		cr_assert_eq(sscanf(msg, "INFO: %63s %d %63s", first, &n, second), 3, "<%s>", line);
		cr_assert_str_eq(first, second, "<%s>", line);
		lines++;
	}
	cr_assert_eq(lines, 2 * THREAD_LINES);
}
