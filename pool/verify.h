/*
 * verify.h — the invariants of pool/README.md and daemon/README.md, executable.
 *
 *   pool_verify()        check every list and the objects on it; abort() on a violation
 *   pool_verify_find()   the same check, returning the first violation instead (unit tests)
 *
 * Run between loop iterations (daemon/main.c installs it when built with
 * -DPGLEASE_VERIFY, as the sanitizer build is, or when PGLEASE_VERIFY=1 is
 * set at start), where no handler is half done. Inside a handler the
 * invariants need not hold.
 */
#ifndef PGLEASE_VERIFY_H
#define PGLEASE_VERIFY_H

void pool_verify(void);
/* NULL when every invariant holds, else a line naming the invariant and the objects (static storage). */
const char *pool_verify_find(void);

#endif
