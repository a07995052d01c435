"""Run a program under the system call restrictions of pglease.service.

usage: seccomp_exec.py FILTER.json -- PROGRAM ARGS...

FILTER.json (written by test_sandbox.py from the unit and systemd-analyze):
  {"allow": [syscall names], "families": [address family numbers]}

The filter mirrors what systemd builds for the unit's SystemCallFilter=,
SystemCallArchitectures=native, RestrictAddressFamilies= and
MemoryDenyWriteExecute=, with one difference: where systemd answers EPERM
(SystemCallErrorNumber=EPERM), this filter kills the process, so that a
system call the unit forbids cannot go unnoticed in a test. Loading it sets
no_new_privs, as NoNewPrivileges=yes does. Uses libseccomp through ctypes.
"""
import ctypes
import errno
import json
import os
import sys

ACT_KILL_PROCESS = 0x80000000
ACT_ALLOW = 0x7FFF0000
CMP_EQ, CMP_MASKED_EQ = 4, 7
PROT_WRITE, PROT_EXEC = 0x2, 0x4


def act_errno(e):
    return 0x00050000 | (e & 0xFFFF)


class ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_init.argtypes = [ctypes.c_uint32]
lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                       ctypes.c_uint, ctypes.POINTER(ArgCmp)]
lib.seccomp_load.argtypes = [ctypes.c_void_p]


def rule(ctx, action, nr, *cmps):
    arr = (ArgCmp * max(len(cmps), 1))(*[ArgCmp(*c) for c in cmps])
    rc = lib.seccomp_rule_add_array(ctx, action, nr, len(cmps), arr)
    if rc < 0:
        sys.exit("seccomp_exec: rule for syscall %d: %s" % (nr, os.strerror(-rc)))


def build(spec):
    ctx = lib.seccomp_init(ACT_KILL_PROCESS)
    special = {"socket", "mmap", "mprotect", "pkey_mprotect", "shmat"}
    for name in spec["allow"]:
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr < 0 or name in special:
            continue            # not on this architecture, or handled below
        rule(ctx, ACT_ALLOW, nr)
    res = lib.seccomp_syscall_resolve_name
    for fam in spec["families"]:
        rule(ctx, ACT_ALLOW, res(b"socket"), (0, CMP_EQ, fam, 0))
    # Families outside the list fail as under systemd; glibc probes netlink.
    for fam in (16, 17):       # AF_NETLINK, AF_PACKET
        if fam not in spec["families"]:
            rule(ctx, act_errno(errno.EAFNOSUPPORT), res(b"socket"), (0, CMP_EQ, fam, 0))
    # MemoryDenyWriteExecute=: no mapping both writable and executable, no
    # mapping made executable later.
    wx = PROT_WRITE | PROT_EXEC
    for ok in (0, PROT_WRITE, PROT_EXEC):
        rule(ctx, ACT_ALLOW, res(b"mmap"), (2, CMP_MASKED_EQ, wx, ok))
    rule(ctx, ACT_ALLOW, res(b"mprotect"), (2, CMP_MASKED_EQ, PROT_EXEC, 0))
    rule(ctx, ACT_ALLOW, res(b"pkey_mprotect"), (2, CMP_MASKED_EQ, PROT_EXEC, 0))
    return ctx


def main():
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        spec = json.load(f)
    ctx = build(spec)
    rc = lib.seccomp_load(ctx)
    if rc < 0:
        sys.exit("seccomp_exec: seccomp_load: %s" % os.strerror(-rc))
    os.execv(sys.argv[3], sys.argv[3:])


if __name__ == "__main__":
    main()
