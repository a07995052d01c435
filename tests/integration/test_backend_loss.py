"""Backends terminated under pglease (pg_terminate_backend): idle ones are noticed and
replaced; a client whose leased backend dies gets an error instead of hanging, and other
clients are unaffected."""
import subprocess
import threading
import time

import psycopg
import pytest

from harness import app_backends, clean_env, wait_backend_state, wait_for, wait_pool_size

POOL = 2


def fixed_pool(pglease, cluster, pool_mode="transaction"):
    return pglease(databases={"app": cluster.conninfo("app", user="postgres")}, pool_mode=pool_mode,
                   default_pool_size=POOL, min_pool_size=POOL)


def terminate(direct, pid):
    assert direct.execute("select pg_terminate_backend(%s)", (pid,)).fetchone()[0] is True


def run_with_timeout(fn, timeout=10.0):
    """Run fn in a thread; ('ok', value) or ('error', exception). Fails if it hangs."""
    out = {}

    def target():
        try:
            out["ok"] = fn()
        except BaseException as e:
            out["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(timeout)
    assert not t.is_alive(), "client hung for %.0fs after its backend was terminated" % timeout
    return ("ok", out["ok"]) if "ok" in out else ("error", out["error"])


class Bystander:
    """Another client working through pglease the whole time; must never see an error."""

    def __init__(self, d):
        self.conn = d.connect()
        self.errors = []
        self.count = 0
        self.stop_evt = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.stop_evt.is_set():
            try:
                assert self.conn.execute("select %s::int", (self.count,)).fetchone()[0] == self.count
                self.count += 1
            except Exception as e:
                self.errors.append(e)
                return
            time.sleep(0.01)

    def __enter__(self):
        self.thread.start()
        wait_for(lambda: self.count > 0 or self.errors, 10, what="bystander running")
        return self

    def __exit__(self, *exc):
        self.stop_evt.set()
        self.thread.join(10)
        self.conn.close()

    def assert_unaffected(self, since):
        wait_for(lambda: self.count > since + 5 or self.errors, 10, what="bystander progress")
        assert not self.errors, "bystander client got errors: %r" % self.errors


def test_terminated_idle_backend_is_logged_and_replaced(pglease, cluster, direct):
    d = fixed_pool(pglease, cluster)
    before = wait_pool_size(direct, POOL)
    victim = min(before)
    log_before = len(d.log_text())
    terminate(direct, victim)

    def replaced():
        rows = app_backends(direct)
        pids = {r[0] for r in rows}
        return pids if len(rows) == POOL and victim not in pids and all(r[1] == "idle" for r in rows) else None
    after = wait_for(replaced, 10, what=lambda: "backend %d replaced (have %r)" % (victim, app_backends(direct)))
    assert len(after - before) == 1, (before, after)
    wait_for(lambda: str(victim) in d.log_text()[log_before:], 5,
             what="a log line naming the lost backend's pid %d" % victim)

    # Clients keep working, on the live backends only.
    with d.connect() as a, d.connect() as b:
        a.execute("begin")
        b.execute("begin")
        pids = {a.execute("select pg_backend_pid()").fetchone()[0], b.execute("select pg_backend_pid()").fetchone()[0]}
        a.execute("commit")
        b.execute("commit")
    assert pids == after
    for _ in range(5):
        r = d.psql("-c", "select 1")
        assert r.returncode == 0, r.stderr


def test_terminated_idle_backend_is_never_handed_to_a_client(pglease, cluster, direct):
    """Terminate both idle backends and immediately run queries: none may fail."""
    d = fixed_pool(pglease, cluster)
    before = wait_pool_size(direct, POOL)
    for pid in before:
        terminate(direct, pid)
    wait_for(lambda: not (before & {r[0] for r in app_backends(direct)}), 10, what="old backends gone")
    time.sleep(0.2)
    for i in range(5):
        r = d.psql("-c", "select %d" % i)
        assert r.returncode == 0, "query after backends were terminated failed: %s" % r.stderr
        assert r.stdout.strip() == str(i)
    assert wait_pool_size(direct, POOL).isdisjoint(before)


def test_terminated_backend_leased_in_transaction_errors_client_without_hanging(pglease, cluster, direct):
    d = fixed_pool(pglease, cluster)
    wait_pool_size(direct, POOL)
    a = d.connect()
    try:
        a.execute("begin")
        a.execute("select 1")
        pid = a.execute("select pg_backend_pid()").fetchone()[0]
        with Bystander(d) as by:
            n = by.count
            terminate(direct, pid)
            kind, val = run_with_timeout(lambda: a.execute("select 1").fetchone())
            assert kind == "error", "statement on a terminated backend succeeded: %r" % (val,)
            assert isinstance(val, psycopg.OperationalError), repr(val)
            by.assert_unaffected(n)
    finally:
        a.close()
    # The pool recovers to full size and new clients work.
    wait_for(lambda: len(app_backends(direct)) == POOL and pid not in {r[0] for r in app_backends(direct)}, 10,
             what="pool back to %d backends" % POOL)
    with d.connect() as c:
        assert c.execute("select 1").fetchone()[0] == 1


def test_terminated_backend_leased_in_transaction_makes_psql_exit_with_error(pglease, cluster, direct):
    d = fixed_pool(pglease, cluster)
    wait_pool_size(direct, POOL)
    p = subprocess.Popen(d.psql_cmd("-v", "ON_ERROR_STOP=1"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, env=clean_env(), cwd="/tmp")
    try:
        p.stdin.write("begin;\nselect 1;\n")
        p.stdin.flush()
        rows = wait_backend_state(direct, lambda r: r[1] == "idle in transaction", what="psql in a transaction")
        with Bystander(d) as by:
            n = by.count
            terminate(direct, rows[0][0])
            try:
                out, err = p.communicate("select 2;\n", timeout=10)
            except subprocess.TimeoutExpired:
                pytest.fail("psql hung after its backend was terminated")
            by.assert_unaffected(n)
        assert p.returncode != 0, "psql succeeded after its backend was terminated: %r" % out
        assert err.strip(), "psql exited without an error message"
        assert "2" not in out.split()
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_terminated_backend_of_session_mode_client_errors_client_without_hanging(pglease, cluster, direct):
    d = fixed_pool(pglease, cluster, pool_mode="session")
    wait_pool_size(direct, POOL)
    a = d.connect()
    try:
        pid = a.execute("select pg_backend_pid()").fetchone()[0]
        with Bystander(d) as by:
            n = by.count
            terminate(direct, pid)
            kind, val = run_with_timeout(lambda: a.execute("select 1").fetchone())
            assert kind == "error", "statement on a terminated backend succeeded: %r" % (val,)
            assert isinstance(val, psycopg.OperationalError), repr(val)
            by.assert_unaffected(n)
    finally:
        a.close()
    wait_for(lambda: len(app_backends(direct)) == POOL and pid not in {r[0] for r in app_backends(direct)}, 10,
             what="pool back to %d backends" % POOL)
    with d.connect() as c:
        assert c.execute("select 1").fetchone()[0] == 1
