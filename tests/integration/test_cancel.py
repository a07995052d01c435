"""Cancel requests: pglease's BackendKeyData maps to the backend the client currently
leases, and never to a query of another client."""
import os
import random
import socket
import signal
import subprocess
import threading
import time

import psycopg

import pgwire
from harness import clean_env, wait_backend_state
from pgwire import Wire


class Running:
    """Run one statement on conn in a thread; remember its result or exception and timing."""

    def __init__(self, conn, sql):
        self.conn, self.sql = conn, sql
        self.result = self.error = None
        self.t0 = self.t1 = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        self.t0 = time.monotonic()
        try:
            self.result = self.conn.execute(self.sql).fetchall()
        except Exception as e:
            self.error = e
        self.t1 = time.monotonic()

    def join(self, timeout=15):
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "%r still running after %ss" % (self.sql, timeout)
        return self


def wait_sleeping(direct, seconds):
    token = "pg_sleep(%s)" % seconds
    return wait_backend_state(direct, lambda r: r[1] == "active" and token in r[2], what="%s running" % token)


def test_cancel_interrupts_running_query_and_connection_stays_usable(pglease, direct):
    d = pglease(default_pool_size=2)
    with d.connect() as c:
        q = Running(c, "select pg_sleep(20)")
        wait_sleeping(direct, 20)
        t = time.monotonic()
        c.cancel()
        q.join(10)
        assert isinstance(q.error, psycopg.errors.QueryCanceled), repr(q.error)
        assert q.t1 - t < 5
        assert c.execute("select 'usable'").fetchone()[0] == "usable"


def test_cancel_interrupts_running_query_in_session_mode(pglease, direct):
    d = pglease(default_pool_size=2, pool_mode="session")
    with d.connect() as c:
        q = Running(c, "select pg_sleep(20)")
        wait_sleeping(direct, 20)
        c.cancel()
        q.join(10)
        assert isinstance(q.error, psycopg.errors.QueryCanceled), repr(q.error)
        assert c.execute("select 1").fetchone()[0] == 1


def test_cancel_inside_transaction_aborts_only_that_transaction(pglease, direct):
    d = pglease(default_pool_size=2)
    with d.connect() as c:
        c.execute("begin")
        q = Running(c, "select pg_sleep(20)")
        wait_sleeping(direct, 20)
        c.cancel()
        q.join(10)
        assert isinstance(q.error, psycopg.errors.QueryCanceled), repr(q.error)
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        c.execute("rollback")
        assert c.execute("select 1").fetchone()[0] == 1


def test_stale_cancel_key_never_cancels_another_clients_query(pglease, direct):
    d = pglease(default_pool_size=1)
    a = d.connect()
    b = d.connect()
    try:
        pid_a = a.execute("select pg_backend_pid()").fetchone()[0]  # A's lease ends here
        q = Running(b, "select pg_backend_pid(), pg_sleep(2)")
        wait_sleeping(direct, 2)
        a.cancel()  # A is idle: its key must not reach B's query on the same backend
        q.join(10)
        assert q.error is None, "B's query was hit by A's cancel: %r" % q.error
        assert q.result[0][0] == pid_a, "B did not run on the backend A had used"
        assert q.t1 - q.t0 >= 1.8
        # Sanity: A's cancel does work on A's own query (so the above is a real check).
        q2 = Running(a, "select pg_sleep(10)")
        wait_sleeping(direct, 10)
        a.cancel()
        q2.join(10)
        assert isinstance(q2.error, psycopg.errors.QueryCanceled), repr(q2.error)
        assert b.execute("select 1").fetchone()[0] == 1
    finally:
        a.close()
        b.close()


def test_cancel_with_unknown_key_is_ignored(pglease, direct):
    d = pglease(default_pool_size=2)
    with d.connect() as c:
        q = Running(c, "select pg_sleep(1.5)")
        wait_sleeping(direct, 1.5)
        for _ in range(3):
            w = Wire(d.socket_path)
            try:
                w.send(pgwire.cancel_request(random.randrange(1, 1 << 31), random.randrange(0, 1 << 32)))
                assert w.wait_closed(5), "cancel connection not closed"
            finally:
                w.close()
        q.join(10)
        assert q.error is None, "a bogus cancel key cancelled a query: %r" % q.error
    assert d.psql("-c", "select 1").stdout.strip() == "1"


def test_psql_sigint_cancels_running_query(pglease, direct):
    d = pglease(default_pool_size=2)
    p = subprocess.Popen(d.psql_cmd("-c", "select pg_sleep(30)"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, env=clean_env(), cwd="/tmp")
    try:
        wait_sleeping(direct, 30)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=10)
        assert p.returncode != 0
        assert "canceling statement due to user request" in err, err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    assert d.psql("-c", "select 1").stdout.strip() == "1"


def test_cancel_of_a_client_waiting_for_a_backend_ends_its_request(pglease, direct):
    """With every backend held, a client's query waits in the queue; its cancel must end it
    (57014, as a cancelled statement ends direct) at once, the statement must never run, and the
    connection stays usable afterwards."""
    d = pglease(default_pool_size=1, query_wait_timeout=30)
    holder, waiter = d.connect(), d.connect()
    try:
        holder.execute("begin")
        holder.execute("select 1")
        q = Running(waiter, "insert into items (val) values ('cancelled while waiting') returning id")
        wait_for_waiting(d)
        t = time.monotonic()
        waiter.cancel()
        q.join(10)
        assert isinstance(q.error, psycopg.errors.QueryCanceled), repr(q.error)
        assert q.t1 - t < 5, "the cancel did not end the wait"
        holder.execute("commit")
        assert waiter.execute("select 'usable'").fetchone()[0] == "usable"
        assert direct.execute("select count(*) from items where val = 'cancelled while waiting'").fetchone()[0] == 0
    finally:
        holder.close()
        waiter.close()


def wait_for_waiting(d, timeout=10):
    """Premise: pglease has a client in its wait queue (SHOW POOLS cl_waiting)."""
    admin = psycopg.connect(d.dsn("pglease"), autocommit=True)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            cur = admin.execute("SHOW POOLS")
            cols = [c.name for c in cur.description]
            rows = [dict(zip(cols, r)) for r in cur.fetchall()]
            if any(int(r["cl_waiting"]) > 0 for r in rows if r["database"] == "app"):
                return
            time.sleep(0.05)
        raise AssertionError("no client waiting: %r" % rows)
    finally:
        admin.close()


def test_cancel_connection_stays_open_until_the_cancel_reached_postgresql(pglease, cluster):
    """PostgreSQL closes a CancelRequest's connection only after it signalled the backend, and
    libpq's PQcancel waits for that close: a client that goes on afterwards cannot have its next
    statement cancelled. With the postmaster stopped the cancel cannot be delivered, so the
    connection must stay open, through pglease as direct (premise checked on direct first)."""
    d = pglease(default_pool_size=1)
    postmaster = int(open(os.path.join(cluster.dir, "data", "postmaster.pid")).readline())
    direct_path = os.path.join(cluster.dir, ".s.PGSQL.%d" % cluster.port)
    for path in (direct_path, d.socket_path):
        w = Wire(path)
        w.startup({"user": "postgres", "database": "app"})
        w.send(pgwire.query_msg("do $$ begin raise notice 'sleeping'; perform pg_sleep(3); end $$"))
        w.read_until((b"N",))
        os.kill(postmaster, signal.SIGSTOP)
        try:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(1.0)
            s.connect(path)
            s.sendall(pgwire.cancel_request(*w.key))
            try:
                closed_early = s.recv(1) == b""
            except socket.timeout:
                closed_early = False
        finally:
            os.kill(postmaster, signal.SIGCONT)
        assert not closed_early, "%s closed the cancel connection before the cancel was delivered" % path
        assert s.recv(1) == b"", "the cancel connection was not closed once delivered"
        s.close()
        r = w.collect_until_ready(10)
        assert r["error"] and r["error"]["C"] == "57014", r
        w.terminate()
