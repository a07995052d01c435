/*
 * alloc_fail.h — allocation failure on demand, for out-of-memory unit tests.
 *
 * Included by one test file each (it defines malloc, realloc and calloc for
 * the whole test binary). Every allocation of the process goes through
 * these, glibc's strdup included; while alloc_fail_at is set, the
 * alloc_fail_at-th allocation counted from alloc_fail_arm() returns NULL.
 * AddressSanitizer owns malloc: under it nothing is interposed and
 * ALLOC_FAIL_AVAILABLE is 0 (skip the test).
 */
#ifndef PGLEASE_TEST_ALLOC_FAIL_H
#define PGLEASE_TEST_ALLOC_FAIL_H

#include <stdbool.h>
#include <stddef.h>

#if defined(__SANITIZE_ADDRESS__)
#define ALLOC_FAIL_AVAILABLE 0
#else
#define ALLOC_FAIL_AVAILABLE 1

extern void *__libc_malloc(size_t n);
extern void *__libc_realloc(void *p, size_t n);
extern void *__libc_calloc(size_t n, size_t size);

static int alloc_fail_at, alloc_count;

/* The n-th allocation from now fails; alloc_count counts them until alloc_fail_disarm(). */
static inline void alloc_fail_arm(int n)
{
	alloc_count = 0;
	alloc_fail_at = n;
}

static inline void alloc_fail_disarm(void)
{
	alloc_fail_at = 0;
}

static bool alloc_fails(void)
{
	return alloc_fail_at && ++alloc_count == alloc_fail_at;
}

void *malloc(size_t n)
{
	return alloc_fails() ? NULL : __libc_malloc(n);
}

void *realloc(void *p, size_t n)
{
	return alloc_fails() ? NULL : __libc_realloc(p, n);
}

void *calloc(size_t n, size_t size)
{
	return alloc_fails() ? NULL : __libc_calloc(n, size);
}
#endif

#endif
