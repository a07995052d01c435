/*
 * authfile.c — reading auth files and reporting their errors. See authfile.h.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "authfile.h"

struct authfile_error {
	int line;
	int seq;      /* keeps errors of one line in the order they were found */
	char *text;
};

void authfile_error(struct authfile_errors *errs, int line, const char *fmt, ...)
{
	char *msg = NULL, *text = NULL;
	va_list ap;
	int r;

	if (errs->oom)
		return;
	if (errs->count == errs->cap) {
		int cap = errs->cap ? errs->cap * 2 : 8;
		struct authfile_error *list = realloc(errs->list, cap * sizeof(*list));

		if (!list) {
			errs->oom = true;
			return;
		}
		errs->list = list;
		errs->cap = cap;
	}
	va_start(ap, fmt);
	r = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (r >= 0)
		r = line > 0 ? asprintf(&text, "%s:%d: %s", errs->path, line, msg)
			     : asprintf(&text, "%s: %s", errs->path, msg);
	free(r >= 0 ? msg : NULL);
	if (r < 0) {
		errs->oom = true;
		return;
	}
	errs->list[errs->count] = (struct authfile_error){ line, errs->count, text };
	errs->count++;
}

static int error_order(const void *a, const void *b)
{
	const struct authfile_error *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return (x->seq > y->seq) - (x->seq < y->seq);
}

char *authfile_finish(struct authfile_errors *errs)
{
	size_t total = 1, at = 0;
	char *text = NULL;

	if (errs->count > 1)
		qsort(errs->list, errs->count, sizeof(*errs->list), error_order);
	for (int i = 0; i < errs->count; i++)
		total += strlen(errs->list[i].text) + 1;
	if (errs->count > 0 && !errs->oom && (text = malloc(total)) != NULL) {
		for (int i = 0; i < errs->count; i++) {
			size_t n = strlen(errs->list[i].text);

			memcpy(text + at, errs->list[i].text, n);
			text[at + n] = '\n';
			at += n + 1;
		}
		text[at] = '\0';
	} else if (errs->count > 0) {
		errs->oom = true;
	}
	for (int i = 0; i < errs->count; i++)
		free(errs->list[i].text);
	free(errs->list);
	errs->list = NULL;
	errs->count = errs->cap = 0;
	return errs->oom ? (free(text), NULL) : text;
}

int authfile_read(const char *path, char **text, size_t *len, struct authfile_errors *errs)
{
	FILE *fp = fopen(path, "r");
	size_t cap = 0, n = 0;
	char *buf = NULL;

	if (!fp) {
		authfile_error(errs, 0, "cannot open: %s", strerror(errno));
		return -1;
	}
	for (;;) {
		if (n + 1 >= cap) {
			char *more = cap < AUTHFILE_MAX ? realloc(buf, cap ? cap * 2 : 4096) : NULL;

			if (!more) {
				if (cap < AUTHFILE_MAX)
					errs->oom = true;
				else
					authfile_error(errs, 0, "file is larger than %u bytes", AUTHFILE_MAX);
				break;
			}
			buf = more;
			cap = cap ? cap * 2 : 4096;
		}
		size_t got = fread(buf + n, 1, cap - n - 1, fp);

		n += got;
		if (got == 0) {
			if (ferror(fp))
				authfile_error(errs, 0, "cannot read: %s", strerror(errno));
			else {
				fclose(fp);
				buf[n] = '\0';
				*text = buf;
				*len = n;
				return 0;
			}
			break;
		}
	}
	fclose(fp);
	free(buf);
	return -1;
}

bool authfile_line(struct authfile_lines *r, const char **line, size_t *len)
{
	const char *nl;

	if (r->p >= r->end)
		return false;
	nl = memchr(r->p, '\n', r->end - r->p);
	*line = r->p;
	*len = (nl ? nl : r->end) - r->p;
	r->p += *len + (nl != NULL);
	r->lineno++;
	if (*len > 0 && (*line)[*len - 1] == '\r')
		(*len)--;
	return true;
}
