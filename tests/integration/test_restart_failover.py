"""PostgreSQL restarts, outages and a promote-based switchover, as pglease's clients see them.

Each test runs its own private cluster(s) (never the session's shared one), which it stops,
restarts and promotes. The figures (how long a waiting client waited, how many idle clients
saw an error) are printed; run with -s to see them.
"""
import os
import shutil
import subprocess
import threading
import time

import psycopg
import pytest

import harness
from harness import Cluster, clean_env, make_tmpdir, free_port, wait_for

POOL = 4          # backends per pool: far fewer than the clients
IDLE_CLIENTS = 20


def pg_bin(tool):
    d = subprocess.run([harness.PGCLUSTER, "bindir"], capture_output=True, text=True, check=True).stdout.strip()
    return os.path.join(d, tool)


def as_postgres(argv):
    return (["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []) + argv


def pg_ctl(cluster, *args, timeout=120):
    cmd = as_postgres([pg_bin("pg_ctl"), "-D", os.path.join(cluster.dir, "data"), "-w", "-t", "60",
                       "-l", os.path.join(cluster.dir, "postgresql.log")] + list(args))
    subprocess.run(cmd, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True,
                   timeout=timeout)


def stop(cluster):
    pg_ctl(cluster, "-m", "fast", "stop")


def start(cluster):
    cluster.start()


@pytest.fixture
def pg():
    """A private primary with the app database."""
    with harness.app_cluster() as c:
        yield c


@pytest.fixture
def standby(pg):
    """A streaming standby of pg (pg_basebackup -R), on its own socket directory and port."""
    s = Cluster.__new__(Cluster)
    s.dir = make_tmpdir("pglease-it-standby.")
    s.port = free_port(s.dir)
    s.started = False
    if os.getuid() == 0:
        shutil.chown(s.dir, "postgres")
    subprocess.run(as_postgres([pg_bin("pg_basebackup"), "-R", "-D", os.path.join(s.dir, "data"),
                                "-h", pg.dir, "-p", str(pg.port), "-U", "postgres", "-X", "stream"]),
                   env=clean_env(), capture_output=True, text=True, check=True, timeout=120)
    try:
        s.start()
        yield s
    finally:
        s.stop()


def pooled(d, n, **kw):
    return [d.connect(**kw) for _ in range(n)]


def backend_pids(conns):
    return [c.execute("select pg_backend_pid()").fetchone()[0] for c in conns]


def run_all(conns, sql):
    """Each connection runs sql at once (threads): its row, or the exception it got."""
    out = [None] * len(conns)

    def one(i):
        try:
            out[i] = conns[i].execute(sql).fetchone()
        except Exception as e:  # noqa: BLE001 - what a client sees is the result
            out[i] = e
    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(conns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


class Timed(threading.Thread):
    """One client's statement in the background: its result (or error) and how long it took."""

    def __init__(self, conn_factory, sql):
        super().__init__()
        self.conn_factory, self.sql = conn_factory, sql
        self.result = self.error = None
        self.seconds = None

    def run(self):
        t0 = time.monotonic()
        try:
            with self.conn_factory() as conn:
                self.result = conn.execute(self.sql).fetchone()
        except Exception as e:  # noqa: BLE001
            self.error = e
        self.seconds = time.monotonic() - t0


def errors(results):
    return [r for r in results if isinstance(r, Exception)]


@pytest.mark.timeout(120)
def test_restart_is_invisible_to_idle_clients(pglease, pg):
    d = pglease(databases={"app": pg.conninfo("app", pool_size=POOL)})
    conns = pooled(d, IDLE_CLIENTS)
    try:
        before = set(backend_pids(conns))
        assert len(before) <= POOL
        pg_ctl(pg, "-m", "fast", "restart")
        after = run_all(conns, "select pg_backend_pid()")
        failed = errors(after)
        print("\nrestart: %d of %d idle clients saw an error" % (len(failed), IDLE_CLIENTS))
        assert not failed, failed
        new = {r[0] for r in after}
        # The premise: the restart really replaced every backend the clients had used.
        assert not (new & before), (before, new)
        assert "the backend ended while idle" in d.log_text() or "closed by the backend while idle" in d.log_text()
    finally:
        for c in conns:
            c.close()


@pytest.mark.timeout(120)
def test_a_query_during_an_outage_waits_for_postgresql(pglease, pg):
    d = pglease(databases={"app": pg.conninfo("app", pool_size=POOL)}, query_wait_timeout=30)
    with pg.connect("app") as direct:
        direct.execute("create role other login")
        direct.execute("grant all on items, items_id_seq to other")
    idle = pooled(d, 8)
    try:
        backend_pids(idle)
        stop(pg)
        t0 = time.monotonic()
        waiting = Timed(lambda: psycopg.connect(d.dsn(), autocommit=True),
                        "insert into items (val) values ('during outage') returning id")
        waiting.start()
        # A new login with a startup setting the pool has not checked needs a backend to log in.
        login = Timed(lambda: psycopg.connect(d.dsn(options="-c work_mem=7MB"), autocommit=True),
                      "select current_setting('work_mem')")
        login.start()
        # A user whose pool does not exist yet: no backend's settings to answer its login from.
        new_user = Timed(lambda: psycopg.connect(d.dsn(user="other"), autocommit=True), "select current_user")
        new_user.start()
        time.sleep(2.0)
        assert waiting.is_alive() and login.is_alive() and new_user.is_alive(), \
            "they wait, rather than fail, while PostgreSQL is down"
        start(pg)
        up = time.monotonic() - t0
        waiting.join(30)
        login.join(30)
        new_user.join(30)
        print("\noutage: write waited %.2f s, login waited %.2f s, new user's login %.2f s "
              "(PostgreSQL back after %.2f s)" % (waiting.seconds, login.seconds, new_user.seconds, up))
        assert waiting.error is None, waiting.error
        assert login.error is None, login.error
        assert new_user.error is None, new_user.error
        assert login.result == ("7MB",)
        assert new_user.result == ("other",)
        assert waiting.seconds >= 2.0
        assert waiting.seconds < up + 1.5, "served within the 0.5 s retry pause (plus the 0.2 s tick) once PostgreSQL is back"
        results = run_all(idle, "select 1")
        assert not errors(results), results
    finally:
        for c in idle:
            c.close()


def refused_after_stop(conn, pg):
    """conn works, PostgreSQL stops, conn's next query fails: (seconds it took, the error's ExceptionInfo)."""
    conn.execute("select 1")
    stop(pg)
    t0 = time.monotonic()
    with pytest.raises(psycopg.OperationalError) as e:
        conn.execute("select 1")
    return time.monotonic() - t0, e


@pytest.mark.timeout(90)
def test_server_down_fail_fast_refuses_at_once(pglease, pg):
    d = pglease(databases={"app": pg.conninfo("app", pool_size=POOL)}, server_down_fail_fast=1)
    conn = d.connect()
    try:
        took, e = refused_after_stop(conn, pg)
        print("\nfail-fast: refused after %.3f s: %s" % (took, e.value))
        assert took < 1.0
        # The connect error itself (it names PostgreSQL's socket, not pglease's); psycopg may lose the
        # SQLSTATE of a FATAL that comes with the close.
        assert pg.dir in str(e.value), str(e.value)
        assert e.value.sqlstate in (None, "08001", "57P03"), e.value.sqlstate
        # A new client is refused too (within the retry pause), before any login wait.
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(d.dsn(), autocommit=True).execute("select 1")
        start(pg)

        def serves():
            try:
                with psycopg.connect(d.dsn(), autocommit=True) as c:
                    return c.execute("select 1").fetchone() == (1,)
            except psycopg.OperationalError:
                return False
        wait_for(serves, timeout=10, what="pglease serving again after PostgreSQL came back")
    finally:
        conn.close()


@pytest.mark.timeout(180)
def test_promote_based_switchover_is_followed(pglease, pg, standby):
    info = harness.conninfo(host="%s,%s" % (pg.dir, standby.dir), port="%d,%d" % (pg.port, standby.port),
                            dbname="app", target_session_attrs="read-write", pool_size=POOL)
    d = pglease(databases={"app": info}, query_wait_timeout=30)
    where = "select pg_is_in_recovery(), current_setting('port')::int"
    conns = pooled(d, 10)
    try:
        for r in run_all(conns, "insert into items (val) values ('before') returning id"):
            assert not isinstance(r, Exception), r
        assert {c.execute(where).fetchone() for c in conns} == {(False, pg.port)}
        stop(pg)
        writer = Timed(lambda: psycopg.connect(d.dsn(), autocommit=True),
                       "insert into items (val) values ('during switchover') "
                       "returning pg_is_in_recovery(), current_setting('port')::int")
        writer.start()
        time.sleep(1.0)
        assert writer.is_alive(), "a write during the switchover waits for a primary"
        t_promote = time.monotonic()
        pg_ctl(standby, "promote")
        promoted = time.monotonic() - t_promote
        writer.join(30)
        after = run_all(conns, "insert into items (val) values ('after') "
                               "returning pg_is_in_recovery(), current_setting('port')::int")
        failed = errors(after)
        print("\nswitchover: writer waited %.2f s (promote took %.2f s); %d of %d idle clients saw an error"
              % (writer.seconds, promoted, len(failed), len(conns)))
        assert writer.error is None, writer.error
        assert writer.result == (False, standby.port)
        assert not failed, failed
        assert set(after) == {(False, standby.port)}, "every write landed on the new primary"
    finally:
        for c in conns:
            c.close()


@pytest.mark.timeout(90)
def test_an_outage_longer_than_query_wait_timeout_ends_with_the_connect_error(pglease, pg):
    d = pglease(databases={"app": pg.conninfo("app", pool_size=POOL)}, query_wait_timeout=2)
    conn = d.connect()
    try:
        took, e = refused_after_stop(conn, pg)
        assert 1.8 < took < 4, took
        assert "query_wait_timeout: the server could not be reached within 2 s" in str(e.value), str(e.value)
        assert pg.dir in str(e.value), "the connect error itself is given"
    finally:
        conn.close()
        start(pg)


@pytest.mark.timeout(90)
def test_a_restart_inside_a_transaction_is_a_clear_error(pglease, pg):
    d = pglease(databases={"app": pg.conninfo("app", pool_size=POOL)})
    inside = d.connect()
    idle = d.connect()
    try:
        idle.execute("select 1")
        inside.execute("begin")
        inside.execute("insert into items (val) values ('in flight')")
        pg_ctl(pg, "-m", "fast", "restart")
        with pytest.raises(psycopg.OperationalError) as e:
            inside.execute("commit")
        assert "terminating connection due to administrator command" in str(e.value) or \
            "server connection lost" in str(e.value), str(e.value)
        assert idle.execute("select 1").fetchone() == (1,), "the idle client next to it sees nothing"
        with pg.connect("app") as direct:
            assert direct.execute("select count(*) from items where val = 'in flight'").fetchone() == (0,)
    finally:
        inside.close()
        idle.close()
