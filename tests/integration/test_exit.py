"""Clients that vanish (SIGKILL / socket closed, no Terminate) while holding a lease:
the transaction is rolled back through the pool's exit door and the same backend goes
back to the pool clean, without a reconnect. Everything is checked directly in PostgreSQL."""
import time
import uuid

import pytest

import pgwire
from harness import (app_backends, kill9, locks_held_by_app_backends, read_lines_until, spawn_client,
                     wait_backend_state, wait_for, wait_pool_size)
from pgwire import Wire

POOL = 2


def fixed_pool(pglease, cluster, pool_mode="transaction"):
    d = pglease(databases={"app": cluster.conninfo("app", user="postgres")}, pool_mode=pool_mode,
                default_pool_size=POOL, min_pool_size=POOL, server_drain_timeout=1)
    return d


def marker():
    return "exit-" + uuid.uuid4().hex


def assert_clean_and_reused(d, direct, pids_before, m):
    """The killed client's work is rolled back and the pool is back to the same idle backends."""
    def clean():
        rows = app_backends(direct)
        busy = [r for r in rows if r[1] != "idle"]
        locks = locks_held_by_app_backends(direct)
        if busy or locks or len(rows) != POOL:
            return None
        return rows
    wait_for(clean, 10, what=lambda: "app backends idle with no locks (have %r, locks %r)"
             % (app_backends(direct), locks_held_by_app_backends(direct)))
    assert direct.execute("select count(*) from items where val = %s", (m,)).fetchone()[0] == 0, \
        "the killed client's insert was committed"
    assert locks_held_by_app_backends(direct) == []
    assert {r[0] for r in app_backends(direct)} == pids_before, "backend was replaced instead of reused"
    # The pool still works, on the same backends, with no transaction left open.
    with d.connect() as a, d.connect() as b:
        a.execute("begin")
        b.execute("begin")
        pa = a.execute("select pg_backend_pid()").fetchone()[0]
        pb = b.execute("select pg_backend_pid()").fetchone()[0]
        assert {pa, pb} == pids_before
        for c in (a, b):
            assert c.execute("select count(*) from items where val = %s", (m,)).fetchone()[0] == 0
            c.execute("commit")
    assert {r[0] for r in app_backends(direct)} == pids_before


@pytest.mark.parametrize("pool_mode", ["transaction", "session"])
def test_killed_client_idle_in_transaction_rolls_back_and_keeps_backend(pglease, cluster, direct, pool_mode):
    d = fixed_pool(pglease, cluster, pool_mode)
    before = wait_pool_size(direct, POOL)
    m = marker()
    p = spawn_client(d.dsn(), ["begin", "insert into items(val) values ('%s')" % m])
    try:
        lines = read_lines_until(p, "READY")
        assert lines[1:3] == ["OK", "OK"], lines
        wait_backend_state(direct, lambda r: r[1] == "idle in transaction" and r[3],
                           what="the client's backend idle in transaction")
        kill9(p)
    finally:
        kill9(p)
    assert_clean_and_reused(d, direct, before, m)


def test_killed_client_in_failed_transaction_rolls_back_and_keeps_backend(pglease, cluster, direct):
    d = fixed_pool(pglease, cluster)
    before = wait_pool_size(direct, POOL)
    m = marker()
    p = spawn_client(d.dsn(), ["begin", "insert into items(val) values ('%s')" % m, "select 1/0"])
    try:
        lines = read_lines_until(p, "READY")
        assert lines[1:4] == ["OK", "OK", "ERR 22012"], lines
        wait_backend_state(direct, lambda r: r[1] == "idle in transaction (aborted)",
                           what="the client's backend in an aborted transaction")
        kill9(p)
    finally:
        kill9(p)
    assert_clean_and_reused(d, direct, before, m)


@pytest.mark.timeout(60)
def test_killed_client_with_query_in_flight_is_drained_cancelled_and_rolled_back(pglease, cluster, direct):
    d = fixed_pool(pglease, cluster)
    before = wait_pool_size(direct, POOL)
    m = marker()
    p = spawn_client(d.dsn(), ["begin", "insert into items(val) values ('%s')" % m, "select pg_sleep(60)"])
    try:
        wait_backend_state(direct, lambda r: r[1] == "active" and "pg_sleep(60)" in r[2],
                           what="pg_sleep(60) running")
        kill9(p)
    finally:
        kill9(p)
    t0 = time.monotonic()
    assert_clean_and_reused(d, direct, before, m)
    # drain 1 s, cancel, rollback: well before the 60 s sleep would have ended.
    assert time.monotonic() - t0 < 15


def test_client_gone_after_extended_messages_without_sync_rolls_back_and_keeps_backend(pglease, cluster, direct):
    d = fixed_pool(pglease, cluster)
    before = wait_pool_size(direct, POOL)
    m = marker()
    w = Wire(d.socket_path)
    try:
        w.startup({"user": "postgres", "database": "app"})
        r = w.query("begin")
        assert r["status"] == b"T"
        w.send(pgwire.parse_msg("insert into items(val) values ('%s')" % m) + pgwire.bind_msg()
               + pgwire.execute_msg())
        # no Sync: the backend has done the insert, the client's replies are still owed
        wait_backend_state(direct, lambda r: r[3], what="the insert to have taken a transaction id")
    finally:
        w.close()
    assert_clean_and_reused(d, direct, before, m)


def test_client_gone_inside_copy_from_stdin_rolls_back_and_keeps_backend(pglease, cluster, direct):
    d = fixed_pool(pglease, cluster)
    before = wait_pool_size(direct, POOL)
    m = marker()
    w = Wire(d.socket_path)
    try:
        w.startup({"user": "postgres", "database": "app"})
        assert w.query("begin")["status"] == b"T"
        w.send(pgwire.query_msg("copy items(val) from stdin"))
        msgs = w.read_until((b"G",))
        assert msgs[-1][0] == b"G", "no CopyInResponse: %r" % msgs[-1:]
        w.send(pgwire.copy_data_msg(("%s\n" % m).encode() * 3))
        wait_backend_state(direct, lambda r: r[1] == "active" and "copy items" in r[2],
                           what="COPY in progress")
    finally:
        w.close()
    assert_clean_and_reused(d, direct, before, m)


def test_client_gone_in_the_middle_of_a_message_leaves_a_working_pool(pglease, cluster, direct):
    """A half-sent message cannot be resynchronised: the backend may be replaced, but
    nothing may be committed, nothing left locked, and the pool must be back to full size."""
    d = fixed_pool(pglease, cluster)
    wait_pool_size(direct, POOL)
    m = marker()
    w = Wire(d.socket_path)
    try:
        w.startup({"user": "postgres", "database": "app"})
        assert w.query("begin")["status"] == b"T"
        assert w.query("insert into items(val) values ('%s')" % m)["status"] == b"T"
        full = pgwire.query_msg("select '%s'" % ("z" * 1000))
        w.send(full[:200])  # header says ~1000 bytes; send 200
        time.sleep(0.2)
    finally:
        w.close()

    def settled():
        rows = app_backends(direct)
        return len(rows) == POOL and all(r[1] == "idle" for r in rows) and not locks_held_by_app_backends(direct)
    wait_for(settled, 10, what="pool back to %d idle backends without locks" % POOL)
    assert direct.execute("select count(*) from items where val = %s", (m,)).fetchone()[0] == 0
    with d.connect() as a, d.connect() as b:
        a.execute("begin")
        b.execute("begin")
        assert a.execute("select 1").fetchone()[0] == 1
        assert b.execute("select 1").fetchone()[0] == 1
        a.execute("commit")
        b.execute("commit")
