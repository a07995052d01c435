/*
 * log.c — leveled logging to stderr, one line per message.
 *
 * A whole line is formatted first and written with one write() so that lines
 * from the cancel thread never interleave with the loop's.
 */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/time.h>

#include "log.h"

static enum log_level current_level = LOG_INFO;
static const char *level_names[] = { "ERROR", "WARNING", "INFO", "DEBUG" };

void log_set_level(enum log_level level)
{
	current_level = level;
}

bool log_enabled(enum log_level level)
{
	return level <= current_level;
}

static int format_prefix(char *buf, size_t size, enum log_level level)
{
	struct timeval tv;
	struct tm tm;

	gettimeofday(&tv, NULL);
	gmtime_r(&tv.tv_sec, &tm);
	int n = (int)strftime(buf, size, "%Y-%m-%d %H:%M:%S", &tm);
	return n + snprintf(buf + n, size - n, ".%03d UTC [%d] %s: ",
			    (int)(tv.tv_usec / 1000), (int)getpid(), level_names[level]);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char line[2048];
	va_list ap;

	if (!log_enabled(level))
		return;
	int n = format_prefix(line, sizeof(line), level);
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	n = (m < 0) ? n : n + m;
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	ssize_t ignored = write(STDERR_FILENO, line, n);
	(void)ignored;
}
