/*
 * authfile.h — what the auth_file (userlist.c) and auth_hba_file (hba.c)
 * loaders share: reading a file whole, walking its lines, and collecting
 * "FILE:LINE: message" errors as the INI loader (conf/config.c) reports them.
 *
 *   authfile_read()   the whole file into memory (bounded by AUTHFILE_MAX)
 *   authfile_line()   the next line, without its "\n" or "\r\n"
 *   authfile_error()  add an error about a line (0: the file as a whole)
 *   authfile_finish() the errors as one text, sorted by line; frees the list
 *
 * Running out of memory is remembered (errs->oom), not fatal: the loaders
 * then return NULL with no error text, and their caller reports it.
 */
#ifndef PGLEASE_AUTHFILE_H
#define PGLEASE_AUTHFILE_H

#include <stdbool.h>
#include <stddef.h>

#include "check.h"

#define AUTHFILE_MAX (64u << 20)

struct authfile_error;

struct authfile_errors {
	const char *path;
	struct authfile_error *list;
	int count, cap;
	bool oom;
};

struct authfile_lines {
	const char *p, *end;
	int lineno;
};

/* 0 and the text (NUL-terminated, *len without the NUL), or -1 with an error added. */
MUST_CHECK int authfile_read(const char *path, char **text, size_t *len,
			     struct authfile_errors *errs);
/* false at the end of the text */
bool authfile_line(struct authfile_lines *r, const char **line, size_t *len);
__attribute__((format(printf, 3, 4)))
void authfile_error(struct authfile_errors *errs, int line, const char *fmt, ...);
/* NULL when there were no errors, or when out of memory (errs->oom) */
char *authfile_finish(struct authfile_errors *errs);

#endif
