"""Backends over TLS: a second private cluster with ssl=on that takes TCP connections only
through hostssl (no plain host line), its certificate signed by a CA made with openssl at
test time. pglease connects with sslmode=verify-full and relays through libpq's OpenSSL
session; everything the plain tests check must hold here too."""
import re
import subprocess
import threading
import time
import uuid

import psycopg
import pytest

from harness import (TlsCluster, app_backends, app_cluster, clean_env, kill9, read_lines_until, spawn_client,
                     wait_backend_state, wait_for, wait_pool_size)
import pgwire
from pgwire import Wire
from tlsmat import make_ca, make_server_cert

POOL = 2


@pytest.fixture(scope="module")
def tls_cluster():
    with app_cluster(TlsCluster) as c:
        yield c


@pytest.fixture
def tls_direct(tls_cluster):
    conn = tls_cluster.connect("app")
    yield conn
    conn.close()


def tls_pool(pglease, tls_cluster, pool_size=POOL, **settings):
    settings = dict(dict(default_pool_size=pool_size, min_pool_size=pool_size, server_drain_timeout=1), **settings)
    return pglease(databases={"app": tls_cluster.tls_conninfo(user="postgres")}, **settings)


def ssl_of_own_backend(conn):
    return conn.execute("select ssl, version from pg_stat_ssl where pid = pg_backend_pid()").fetchone()


def test_plain_tcp_is_refused_by_the_test_cluster(tls_cluster):
    """The cluster really demands TLS on TCP: what passes below went through TLS."""
    with pytest.raises(psycopg.OperationalError, match="no encryption|SSL off"):
        psycopg.connect(tls_cluster.tls_conninfo(sslmode="disable", user="postgres", connect_timeout=5))


def test_verify_full_connects_over_tls(pglease, tls_cluster, tls_direct):
    d = tls_pool(pglease, tls_cluster)
    with d.connect() as c:
        ssl, version = ssl_of_own_backend(c)
        assert ssl is True and version.startswith("TLS"), (ssl, version)
        assert c.execute("select 'through tls'").fetchone()[0] == "through tls"
    rows = tls_direct.execute("select count(*) from pg_stat_ssl s join pg_stat_activity a using (pid) "
                              "where a.datname = 'app' and a.backend_type = 'client backend' "
                              "and s.ssl and a.pid <> pg_backend_pid()").fetchone()[0]
    assert rows == POOL
    with psycopg.connect(d.dsn("pglease"), autocommit=True) as admin:
        cur = admin.execute("SHOW SERVERS")
        cols = [col.name for col in cur.description]
        servers = [dict(zip(cols, r)) for r in cur.fetchall()]
    assert len(servers) == POOL and all(s["tls"] and s["tls"].startswith("TLS") for s in servers), servers


def test_wrong_ca_fails_with_a_clear_error_to_the_client(pglease, tls_cluster):
    d = pglease(databases={"app": tls_cluster.tls_conninfo(user="postgres"),
                           "badca": tls_cluster.tls_conninfo(ca="other_ca", user="postgres")},
                default_pool_size=1, query_wait_timeout=5)
    with pytest.raises(psycopg.OperationalError, match="SSL error: certificate verify failed"):
        psycopg.connect(d.dsn("badca"), autocommit=True)
    assert "certificate verify failed" in d.log_text()
    # The pool that trusts the right CA is unaffected.
    with d.connect() as c:
        assert ssl_of_own_backend(c)[0] is True


def test_gss_encryption_demanded_is_refused_clearly(pglease, tls_cluster):
    """gssencmode=require cannot be met (pglease cannot relay GSS encryption, and this cluster
    has none): the client gets libpq's error, nothing hangs."""
    d = pglease(databases={"app": tls_cluster.tls_conninfo(user="postgres"),
                           "gss": tls_cluster.tls_conninfo(user="postgres", gssencmode="require")},
                default_pool_size=1, query_wait_timeout=5)
    with pytest.raises(psycopg.OperationalError, match="GSS"):
        psycopg.connect(d.dsn("gss"), autocommit=True)


@pytest.mark.timeout(150)
def test_pgbench_select_only_through_tls_backends_with_more_clients_than_backends(pglease, tls_cluster,
                                                                                   tls_direct):
    r = subprocess.run(["pgbench", "-i", "-q", "-s", "1", "-h", tls_cluster.dir, "-p", str(tls_cluster.port),
                        "-U", "postgres", "app"], capture_output=True, text=True, timeout=120, env=clean_env())
    assert r.returncode == 0, r.stderr
    clients, tx = 10, 300
    d = tls_pool(pglease, tls_cluster, pool_size=3, max_client_conn=clients + 5, query_wait_timeout=60)
    r = subprocess.run(["pgbench", "-n", "-S", "-c", str(clients), "-j", "2", "-t", str(tx),
                        "-h", d.dir, "-p", str(d.port), "-U", "postgres", "app"],
                       capture_output=True, text=True, timeout=130, env=clean_env())
    assert r.returncode == 0, "pgbench failed (%d):\n%s\n%s" % (r.returncode, r.stdout, r.stderr)
    m = re.search(r"number of transactions actually processed: (\d+)/(\d+)", r.stdout)
    assert m and int(m.group(1)) == clients * tx == int(m.group(2)), r.stdout
    assert len(app_backends(tls_direct)) <= 3
    # Clients outnumbered backends: leases switched backends between clients, all over TLS.
    assert tls_direct.execute("select bool_and(s.ssl), count(*) from pg_stat_ssl s join pg_stat_activity a "
                              "using (pid) where a.datname = 'app' and a.backend_type = 'client backend' "
                              "and a.pid <> pg_backend_pid()").fetchone() == (True, 3)


def marker():
    return "tls-" + uuid.uuid4().hex


def wait_clean_and_same(tls_direct, pids_before, m):
    def clean():
        rows = app_backends(tls_direct)
        return rows if len(rows) == POOL and all(r[1] == "idle" for r in rows) else None
    wait_for(clean, 10, what=lambda: "app backends idle (have %r)" % (app_backends(tls_direct),))
    assert {r[0] for r in app_backends(tls_direct)} == pids_before, "backend was replaced instead of reused"
    assert tls_direct.execute("select count(*) from items where val = %s", (m,)).fetchone()[0] == 0


def test_killed_client_in_transaction_rolls_back_and_keeps_the_tls_backend(pglease, tls_cluster, tls_direct):
    d = tls_pool(pglease, tls_cluster)
    before = wait_pool_size(tls_direct, POOL)
    m = marker()
    p = spawn_client(d.dsn(), ["begin", "insert into items(val) values ('%s')" % m])
    try:
        lines = read_lines_until(p, "READY")
        assert lines[1:3] == ["OK", "OK"], lines
        wait_backend_state(tls_direct, lambda r: r[1] == "idle in transaction" and r[3],
                           what="the client's backend idle in transaction")
        kill9(p)
    finally:
        kill9(p)
    wait_clean_and_same(tls_direct, before, m)
    with d.connect() as c:
        assert ssl_of_own_backend(c)[0] is True
        assert c.execute("select pg_backend_pid()").fetchone()[0] in before


def test_killed_client_with_query_in_flight_is_drained_cancelled_over_tls(pglease, tls_cluster, tls_direct):
    """The exit door's raw drain reads through the TLS session, its cancel reaches PostgreSQL,
    and libpq's ROLLBACK afterwards finds the TLS stream where the drain left it."""
    d = tls_pool(pglease, tls_cluster)
    before = wait_pool_size(tls_direct, POOL)
    m = marker()
    p = spawn_client(d.dsn(), ["begin", "insert into items(val) values ('%s')" % m, "select pg_sleep(60)"])
    try:
        wait_backend_state(tls_direct, lambda r: r[1] == "active" and "pg_sleep(60)" in r[2],
                           what="pg_sleep(60) running")
        kill9(p)
    finally:
        kill9(p)
    t0 = time.monotonic()
    wait_clean_and_same(tls_direct, before, m)
    assert time.monotonic() - t0 < 15


def test_cancel_of_pg_sleep_over_tls(pglease, tls_cluster, tls_direct):
    d = tls_pool(pglease, tls_cluster)
    with d.connect() as c:
        result = {}

        def run():
            try:
                c.execute("select pg_sleep(20)")
            except Exception as e:
                result["error"] = e
        t = threading.Thread(target=run, daemon=True)
        t.start()
        wait_backend_state(tls_direct, lambda r: r[1] == "active" and "pg_sleep(20)" in r[2],
                           what="pg_sleep(20) running")
        t0 = time.monotonic()
        c.cancel()
        t.join(10)
        assert not t.is_alive()
        assert isinstance(result.get("error"), psycopg.errors.QueryCanceled), result
        assert time.monotonic() - t0 < 5
        assert c.execute("select 'usable'").fetchone()[0] == "usable"


@pytest.mark.timeout(90)
def test_copy_and_large_results_over_tls(pglease, tls_cluster):
    d = tls_pool(pglease, tls_cluster)
    m = marker()
    rows = 20000
    line = "x" * 300
    with d.connect() as c:
        with c.cursor() as cur:
            with cur.copy("copy items (val) from stdin") as cp:
                for i in range(rows):
                    cp.write_row(("%s-%d-%s" % (m, i, line),))
        assert c.execute("select count(*) from items where val like %s", (m + "-%",)).fetchone()[0] == rows
        out = bytearray()
        with c.cursor() as cur:
            with cur.copy("copy (select val from items where val like %s order by id) to stdout",
                          (m + "-%",)) as cp:
                for chunk in cp:
                    out += chunk
        assert out.count(b"\n") == rows and len(out) > 6_000_000
        # Several MB in one result set, and the pool still answers after it.
        big = c.execute("select repeat('y', 1000) || g from generate_series(1, 8000) g").fetchall()
        assert len(big) == 8000 and big[-1][0] == "y" * 1000 + "8000"
        size = c.execute("select sum(length(val)) from items where val like %s", (m + "-%",)).fetchone()[0]
        assert size == sum(len("%s-%d-%s" % (m, i, line)) for i in range(rows))
        c.execute("delete from items where val like %s", (m + "-%",))
        assert ssl_of_own_backend(c)[0] is True


def read_notification(w, timeout=10.0):
    while True:
        mtype, body = w.read_message(timeout)
        if mtype == b"A":
            channel, payload = body[4:].split(b"\0")[:2]
            return channel.decode(), payload.decode()
        assert mtype in (b"S", b"N"), (mtype, body)


def test_notify_to_an_idle_listener_over_tls(pglease, tls_cluster, tls_direct):
    """The backend speaks while its client waits for nothing: the relay's read through TLS."""
    d = tls_pool(pglease, tls_cluster, pool_mode="transaction")
    w = Wire(d.socket_path)
    w.startup({"user": "postgres", "database": "app"})
    try:
        assert w.query("LISTEN tls_chan")["error"] is None
        for i in range(3):
            tls_direct.execute("NOTIFY tls_chan, 'payload %d'" % i)
            assert read_notification(w) == ("tls_chan", "payload %d" % i)
        # A long payload spans TLS records of its own.
        tls_direct.execute("select pg_notify('tls_chan', repeat('z', 7000))")
        assert read_notification(w) == ("tls_chan", "z" * 7000)
        assert w.query("select 1")["rows"] == [[b"1"]]
    finally:
        w.terminate()


def test_idle_tls_backend_that_speaks_is_closed_and_replaced(pglease, tls_cluster, tls_direct):
    """An idle pooled backend's FATAL (terminated) arrives through TLS: the idle watch sees it."""
    d = tls_pool(pglease, tls_cluster)
    before = wait_pool_size(tls_direct, POOL)
    victim = sorted(before)[0]
    tls_direct.execute("select pg_terminate_backend(%s)", (victim,))
    # Its FATAL 57P01 (the backend ended while idle), or the EOF behind it.
    wait_for(lambda: "the backend ended while idle: FATAL 57P01" in d.log_text() or
             "closed by the backend while idle" in d.log_text(), 10,
             what="the idle watch to notice the terminated backend")
    after = wait_pool_size(tls_direct, POOL)
    assert victim not in after
    with d.connect() as c:
        assert ssl_of_own_backend(c)[0] is True


class SlowWire(Wire):
    """Reads a little at a time, so pglease's buffer for it stays nearly full."""

    def _fill(self, deadline):
        time.sleep(0.0002)
        self.sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = self.sock.recv(1499)
        if not chunk:
            raise EOFError("connection closed by server")
        self.buf += chunk


@pytest.mark.timeout(90)
def test_replies_to_a_slow_reader_end_whole_over_tls(pglease, tls_cluster):
    """A client that reads late keeps its buffer in pglease nearly full, so reads from the
    backend stop part-way through a TLS record: OpenSSL keeps the decrypted rest, which epoll
    cannot see (pool/server.c feeds a read event for it). Instrumented, one run of this test
    cut some thirty records so; every reply must still arrive whole and in order."""
    d = tls_pool(pglease, tls_cluster, pool_size=1)
    w = SlowWire(d.socket_path)
    w.startup({"user": "postgres", "database": "app"})
    try:
        # Replies of odd sizes (one short TLS record each), asked for at once and read late:
        # the client's socket fills, then pglease's buffer, and the records stop lining up
        # with the buffer's room. Each round's last reply may be the one cut.
        for round in range(25):
            # ... and the round's last reply ends in a record of nearly 8 kB (PostgreSQL flushes
            # 8 kB at a time), likely to be cut while the buffer is nearly full.
            sizes = [3000 + 37 * i + round for i in range(80)] + [8192 * 20 + 7800 + round]
            w.send(b"".join(pgwire.query_msg("select repeat('q', %d)" % n) for n in sizes))
            time.sleep(0.1)
            for n in sizes:
                r = w.collect_until_ready(timeout=5)
                assert r["error"] is None and r["rows"] == [[b"q" * n]]
    finally:
        w.terminate()


def test_health_check_runs_through_libpq_over_tls(pglease, tls_cluster, tls_direct):
    """An idle TLS backend past server_check_delay is checked (libpq, on the shared session)
    before its next lease, and the relay goes on through the same session after it."""
    tls_direct.execute("drop sequence if exists tls_checks")
    tls_direct.execute("create sequence tls_checks")
    d = tls_pool(pglease, tls_cluster, pool_size=1, server_check_delay=0.3,
                 server_check_query="select nextval('tls_checks')")
    with d.connect() as c:
        pid = c.execute("select pg_backend_pid()").fetchone()[0]
        for _ in range(3):
            time.sleep(0.5)
            assert c.execute("select pg_backend_pid()").fetchone()[0] == pid
    assert tls_direct.execute("select last_value, is_called from tls_checks").fetchone() == (3, True)


def test_named_prepared_statements_move_between_tls_backends(pglease, tls_cluster):
    """Transaction mode's prepared-statement layer (pglease's own Parse sent raw, its replies
    cut) over TLS: the same statement on both backends of the pool."""
    d = tls_pool(pglease, tls_cluster, pool_size=2)
    with d.connect() as a, d.connect() as b:
        a.execute("begin")  # holds one backend, so b's statements go to the other
        pa = a.execute("select pg_backend_pid()").fetchone()[0]
        for i in range(5):
            assert b.execute("select %s::int + 1, pg_backend_pid()", (i,), prepare=True).fetchone()[0] == i + 1
        pb = b.execute("select pg_backend_pid()").fetchone()[0]
        a.execute("commit")
        b.execute("begin")
        held = b.execute("select pg_backend_pid()").fetchone()[0]
        for i in range(5):
            got = a.execute("select %s::int + 1, pg_backend_pid()", (i,), prepare=True).fetchone()
            assert got[0] == i + 1 and got[1] != held
        b.execute("commit")
        assert pa != pb and held in (pa, pb)


def test_session_mode_over_tls(pglease, tls_cluster):
    d = tls_pool(pglease, tls_cluster, pool_mode="session")
    with d.connect() as c:
        c.execute("set work_mem = '7MB'")
        assert c.execute("show work_mem").fetchone()[0] == "7MB"
        assert ssl_of_own_backend(c)[0] is True
    with d.connect() as c:
        assert c.execute("show work_mem").fetchone()[0] == "4MB", "server_reset_query ran over TLS"
