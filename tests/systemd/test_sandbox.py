"""pglease does its work under pglease.service's own system call sandbox.

systemd is not PID 1 in the test container, so the unit itself cannot be
started here. What systemd would enforce with seccomp is reproduced instead
(seccomp_exec.py): the unit's SystemCallFilter= (expanded by the installed
systemd-analyze), SystemCallArchitectures=native, RestrictAddressFamilies=,
MemoryDenyWriteExecute= and NoNewPrivileges=. pglease then serves clients
of a real PostgreSQL, reaches a TCP and a host-name backend, forwards a
cancel, takes SIGHUP and shuts down on SIGTERM; a forbidden system call
kills it (SIGSYS), which fails the test.
"""
import ctypes
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "integration"))
import harness  # noqa: E402

ANALYZE = shutil.which("systemd-analyze")
FAMILIES = {"AF_UNIX": 1, "AF_INET": 2, "AF_INET6": 10}


def libseccomp_missing():
    try:
        ctypes.CDLL("libseccomp.so.2")
        return False
    except OSError:
        return True


pytestmark = pytest.mark.skipif(
    ANALYZE is None or libseccomp_missing(),
    reason="!!! systemd-analyze or libseccomp NOT FOUND: pglease was NOT run under "
           "the unit's system call filter !!!")


def unit_values(key):
    text = (REPO / "systemd" / "pglease.service.in").read_text()
    return re.findall(r"^%s=(.*)$" % key, text, re.M)


def syscall_groups():
    out = subprocess.run([ANALYZE, "syscall-filter", "--no-pager"], capture_output=True,
                         text=True, check=True).stdout
    groups, cur = {}, None
    for line in out.splitlines():
        s = line.strip()
        if not s or s.startswith("#"):
            continue
        if not line.startswith(" ") and s.startswith("@"):
            cur = groups.setdefault(s, [])
        elif cur is not None:
            cur.append(s.split()[0])
    return groups


def expand(groups, names):
    out = set()
    for n in names:
        out |= expand(groups, groups[n]) if n.startswith("@") else {n}
    return out


def allowed_syscalls():
    """What SystemCallFilter= lines allow: the union of the allow lists, minus every ~ list."""
    groups, allow, deny = syscall_groups(), set(), set()
    for value in unit_values("SystemCallFilter"):
        if value.startswith("~"):
            deny |= expand(groups, value[1:].split())
        else:
            allow |= expand(groups, value.split())
    assert allow, "the unit has no SystemCallFilter= allow list"
    return sorted(allow - deny)


@pytest.fixture
def sandboxed(tmp_path):
    assert unit_values("SystemCallArchitectures") == ["native"]
    assert unit_values("MemoryDenyWriteExecute") == ["yes"]
    families = [FAMILIES[f] for f in " ".join(unit_values("RestrictAddressFamilies")).split()]
    spec = tmp_path / "filter.json"
    spec.write_text(json.dumps({"allow": allowed_syscalls(), "families": families}))
    os.chmod(tmp_path, 0o755)
    wrapper = tmp_path / "pglease-sandboxed"
    pglease = os.environ.get("PGLEASE_BIN") or str(REPO / "pglease")
    wrapper.write_text("#!/bin/sh\nexec %s %s %s -- %s \"$@\"\n"
                       % (harness.PY, Path(__file__).parent / "seccomp_exec.py", spec, pglease))
    wrapper.chmod(0o755)
    return str(wrapper)


def test_pglease_works_under_the_units_syscall_filter(sandboxed):
    cluster = harness.Cluster()
    d = None
    try:
        cluster.start()
        with cluster.connect("postgres") as c:
            c.execute("create database app")
        d = harness.Daemon(sandboxed, cluster, {"server_connect_timeout": "3"}, {
            "app": cluster.conninfo("app"),
            "tcp": "host=127.0.0.1 port=1 dbname=x",          # AF_INET, refused
            "named": "host=localhost port=1 dbname=x",        # resolved on the worker thread
        })
        d.start()
        with d.connect("app", autocommit=False) as c:
            c.execute("create temp table t (x int)")
            c.execute("insert into t select generate_series(1, 1000)")
            assert c.execute("select sum(x) from t").fetchone()[0] == 500500
            c.rollback()
        run_cancel(d)
        for db in ("tcp", "named"):
            r = d.psql("-c", "select 1", dbname=db)
            assert r.returncode != 0 and "refused" in r.stderr, r.stderr
        os.kill(d.pid, signal.SIGHUP)
        time.sleep(0.3)
        d.check_alive()
        r = d.psql("-c", "select 41 + 1")
        assert r.stdout.strip() == "42", r.stderr
        d.proc.send_signal(signal.SIGTERM)
        rc = d.proc.wait(timeout=30)
        assert rc == 0, "pglease exited with %r (-%d is SIGSYS: a forbidden system call)\n%s" % (
            rc, signal.SIGSYS, d.log_tail())
    finally:
        if d:
            d.stop()
            d.cleanup()
        cluster.stop()


def run_cancel(d):
    """A CancelRequest, sent on by pglease's worker thread, ends a running query."""
    with d.connect("app") as c:
        errors = []

        def sleeper():
            try:
                c.execute("select pg_sleep(30)")
            except psycopg.errors.QueryCanceled as e:
                errors.append(e)

        t = threading.Thread(target=sleeper)
        t.start()
        time.sleep(0.5)
        c.cancel()
        t.join(timeout=20)
        assert errors, "the query was not cancelled"
