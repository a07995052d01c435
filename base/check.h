/*
 * check.h — MUST_CHECK: a function whose failure its caller must handle.
 *
 * On the functions that return -1, NULL (or another documented failure
 * value) when they fail: out of memory, a peer gone, a text that does not
 * fit. Ignoring such a result is a compile error (-Werror), and a cast to
 * void does not silence it: the caller decides what the failure means
 * (README.md, "Out of memory").
 */
#ifndef PGLEASE_CHECK_H
#define PGLEASE_CHECK_H

#define MUST_CHECK __attribute__((warn_unused_result))

#endif
