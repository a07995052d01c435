"""A pin lasts only while the session state that caused it exists.

In transaction mode a client that creates session state is pinned to its backend. When a
transaction of a pinned client may have released that state (UNLISTEN, DROP, DEALLOCATE, CLOSE,
pg_advisory_unlock, a pg_try_advisory_lock that failed, ...), pglease asks the backend, at the
next clean boundary, whether any is left; if none is, the client is unpinned and its backend goes
back to the pool. State no query can see (a SET of an unreported setting, ...) keeps the client
pinned until it leaves, as before.
"""
import threading
import time

import psycopg
import pytest

from harness import wait_for
import pgwire
from pgwire import Wire, query_msg

# One backend for three clients; a client that cannot get it gives up after 3 s.
ONE_BACKEND = dict(default_pool_size=1, pool_mode="transaction", query_wait_timeout=3, log_level="debug")
LOCK_KEY = 815001

# (statements that pin, statements that release what they made)
RELEASES = {
    "advisory_lock": (["select pg_advisory_lock(%d)" % LOCK_KEY], ["select pg_advisory_unlock(%d)" % LOCK_KEY]),
    # Someone else holds the lock: the try-lock returns false, pins, and holds nothing.
    "failed_try_lock": (["select pg_try_advisory_lock(%d)" % LOCK_KEY], []),
    "listen": (["LISTEN unpin_chan", "LISTEN unpin_other"], ["UNLISTEN *"]),
    "temp_table": (["CREATE TEMP TABLE unpin_t (x int)", "insert into unpin_t values (1)"], ["DROP TABLE unpin_t"]),
    "prepare": (["PREPARE unpin_p AS SELECT 1", "EXECUTE unpin_p"], ["DEALLOCATE unpin_p"]),
    "with_hold_cursor": (["BEGIN", "DECLARE unpin_c CURSOR WITH HOLD FOR SELECT 1", "COMMIT", "FETCH 1 FROM unpin_c"],
                         ["CLOSE unpin_c"]),
}


def scalar(conn, sql):
    return conn.execute(sql).fetchone()[0]


def console_rows(d, command, db="app"):
    with psycopg.connect(d.dsn("pglease"), autocommit=True) as a:
        cur = a.execute(command)
        cols = [c.name for c in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall() if r[0] == db]


def stats(d):
    rows = console_rows(d, "SHOW STATS")
    assert len(rows) == 1, rows
    return rows[0]


def cl_waiting(d):
    return console_rows(d, "SHOW POOLS")[0]["cl_waiting"]


def log_lines(d, text):
    return [l for l in d.log_text().splitlines() if text in l]


def unpinned_lines(d):
    return log_lines(d, " unpinned from server ")


def app_advisory_locks(direct, key):
    return scalar(direct, "select count(*) from pg_locks where locktype = 'advisory' and objid = %d "
                          "and pid <> pg_backend_pid()" % key)


class Waiter(threading.Thread):
    """Runs one query on its own connection; the main thread checks it waited and then got served."""

    def __init__(self, conn, sql):
        super().__init__(daemon=True)
        self.conn, self.sql = conn, sql
        self.result = self.error = None

    def run(self):
        try:
            self.result = scalar(self.conn, self.sql)
        except Exception as e:  # noqa: BLE001 - reported by the main thread
            self.error = e

    def outcome(self, timeout=10.0):
        self.join(timeout)
        assert not self.is_alive(), "the waiting client was never served"
        if self.error:
            raise self.error
        return self.result


@pytest.mark.timeout(60)
@pytest.mark.parametrize("kind", sorted(RELEASES))
def test_a_client_that_releases_its_state_is_unpinned(pglease, direct, kind):
    """Three clients, one backend: each in turn pins, makes the next one wait, and releases; the
    waiting client is then served on the same backend, so the pin ended with the state."""
    pin_steps, release_steps = RELEASES[kind]
    if kind == "failed_try_lock":
        assert scalar(direct, "select pg_try_advisory_lock(%d)" % LOCK_KEY) is True
    d = pglease(**ONE_BACKEND)
    clients = [d.connect() for _ in range(3)]
    pids = []
    try:
        for i, me in enumerate(clients):
            for sql in pin_steps:
                me.execute(sql)
            pid = scalar(me, "select pg_backend_pid()")
            pids.append(pid)
            nxt = clients[(i + 1) % len(clients)]
            waiter = Waiter(nxt, "select pg_backend_pid()")
            if release_steps:
                # The premise: me still holds the one backend, so the next client queues for it.
                waiter.start()
                wait_for(lambda: cl_waiting(d) == 1, what="the next client to wait for the backend")
                for sql in release_steps:
                    me.execute(sql)
            else:
                # A failed try-lock holds nothing: the backend is free again at once.
                waiter.start()
            assert waiter.outcome() == pid
        assert len(set(pids)) == 1, pids
        st = stats(d)
        assert (st["pins"], st["unpins"]) == (3, 3), st
        lines = unpinned_lines(d)
        assert len(lines) == 3, lines
        assert all("no session state left" in l and "(backend pid %d)" % pids[0] in l for l in lines), lines
        # Nothing is left behind on the backend the clients shared.
        assert scalar(clients[0], "select count(*) from pg_listening_channels()") == 0
        assert scalar(clients[0], "select count(*) from pg_prepared_statements where from_sql") == 0
        assert scalar(clients[0], "select count(*) from pg_cursors") == 0
        assert scalar(clients[0], "select to_regclass('pg_temp.unpin_t') is null") is True
        assert scalar(clients[0], "select count(*) from pg_locks where locktype = 'advisory' "
                                  "and pid = pg_backend_pid()") == 0
    finally:
        for c in clients:
            c.close()
        if kind == "failed_try_lock":
            direct.execute("select pg_advisory_unlock_all()")


@pytest.mark.timeout(60)
def test_a_lock_still_held_keeps_its_client_pinned(pglease, direct):
    d = pglease(default_pool_size=2, pool_mode="transaction", query_wait_timeout=3, log_level="debug")
    a, b = d.connect(), d.connect()
    try:
        a.execute("select pg_advisory_lock(%d)" % LOCK_KEY)
        a_pid = scalar(a, "select pg_backend_pid()")
        # A releases a lock it never had: the probe runs and finds LOCK_KEY still held.
        assert scalar(a, "select pg_advisory_unlock(%d)" % (LOCK_KEY + 1)) is False
        wait_for(lambda: log_lines(d, "session state is left"), what="the probe's verdict logged")
        assert "(backend pid %d)" % a_pid in log_lines(d, "session state is left")[0]
        assert scalar(a, "select pg_backend_pid()") == a_pid

        # B gets the other backend and cannot take the lock: it never leaked to B's backend.
        b_pid = scalar(b, "select pg_backend_pid()")
        assert b_pid != a_pid
        assert scalar(b, "select pg_try_advisory_lock(%d)" % LOCK_KEY) is False
        # B holds nothing, so it is unpinned at once: a third client shares B's backend.
        with d.connect() as c:
            assert scalar(c, "select pg_backend_pid()") == b_pid
        st = stats(d)
        assert (st["pins"], st["unpins"]) == (2, 1), st
        assert app_advisory_locks(direct, LOCK_KEY) == 1

        # A leaves: its backend is reset before reuse, and the lock goes with the reset.
        a.close()
        wait_for(lambda: app_advisory_locks(direct, LOCK_KEY) == 0, what="the lock released by the reset")
        assert log_lines(d, "pinned: resetting it before reuse")
        assert scalar(b, "select pg_try_advisory_lock(%d)" % LOCK_KEY) is True
        assert scalar(b, "select pg_advisory_unlock(%d)" % LOCK_KEY) is True
    finally:
        a.close()
        b.close()


@pytest.mark.timeout(60)
def test_a_pin_no_probe_can_lift_lasts_until_the_client_leaves(pglease, direct):
    """LISTEN alone could be probed; a SET of an unreported setting cannot: once both, releasing
    words change nothing, and no probe runs."""
    default_wm = scalar(direct, "show work_mem")
    d = pglease(**ONE_BACKEND)
    a, b = d.connect(), d.connect()
    try:
        a.execute("LISTEN lasting_chan")
        a.execute("SET work_mem = '7MB'")
        a.execute("UNLISTEN *")
        a.execute("select pg_advisory_unlock_all()")
        a.execute("DISCARD TEMP")
        with pytest.raises(psycopg.OperationalError, match="query_wait_timeout"):
            b.execute("select 1")
        assert scalar(a, "show work_mem") == "7MB"
        st = stats(d)
        assert (st["pins"], st["unpins"]) == (1, 0), st
        assert log_lines(d, "(SET of a setting that is not reported; until it leaves)")
        assert unpinned_lines(d) == [] and log_lines(d, "session state is left") == []
    finally:
        a.close()
    with d.connect() as c:
        assert scalar(c, "show work_mem") == default_wm
    b.close()


def raw_client(d):
    w = Wire(d.socket_path)
    w.startup({"user": "postgres", "database": "app"})
    return w


def read_notification(w, timeout=10.0):
    while True:
        mtype, body = w.read_message(timeout)
        if mtype == b"A":
            channel, payload = body[4:].split(b"\0")[:2]
            return channel.decode(), payload.decode()
        assert mtype in (b"S", b"N"), (mtype, body)


@pytest.mark.timeout(60)
def test_a_listener_still_listening_stays_pinned_and_gets_its_notifications(pglease, direct):
    d = pglease(**ONE_BACKEND)
    w = raw_client(d)
    b = d.connect()
    try:
        assert w.query("LISTEN kept_chan; LISTEN dropped_chan")["error"] is None
        assert w.query("UNLISTEN dropped_chan")["error"] is None
        wait_for(lambda: log_lines(d, "session state is left"), what="the probe's verdict logged")
        with pytest.raises(psycopg.OperationalError, match="query_wait_timeout"):
            b.execute("select 1")
        direct.execute("NOTIFY kept_chan, 'after the probe'")
        assert read_notification(w) == ("kept_chan", "after the probe")
        assert w.query("select 1")["rows"] == [[b"1"]]
        assert stats(d)["unpins"] == 0
    finally:
        w.terminate()
        b.close()


def probe_waiting_on(locker):
    """The probe is blocked behind the locker's lock on pg_class (locker can still look; inside
    its transaction pg_stat_activity is a snapshot, so take a fresh one)."""
    locker.execute("select pg_stat_clear_snapshot()")
    return locker.execute("select count(*) from pg_stat_activity where wait_event_type = 'Lock' "
                          "and query like '%pg_listening_channels%'").fetchone()[0] == 1


@pytest.mark.timeout(60)
@pytest.mark.parametrize("left", [False, True], ids=["unpinned", "still-pinned"])
def test_bytes_sent_while_the_probe_runs_wait_for_it(pglease, cluster, left):
    """The probe is held up by a lock on pg_class while the client sends its next query and
    another client queues for the one backend. Unpinned: the waiting client is served first,
    then the new query in a lease of its own. Still pinned: the query goes to the same backend."""
    d = pglease(default_pool_size=1, pool_mode="transaction", query_wait_timeout=4, server_drain_timeout=5,
                log_level="debug")
    w = raw_client(d)
    other = d.connect()
    locker = cluster.connect("app", autocommit=False)
    try:
        assert w.query("LISTEN probe_chan" + ("; LISTEN kept_chan" if left else ""))["error"] is None
        w_pid = int(w.scalar("select pg_backend_pid()"))
        locker.execute("lock table pg_catalog.pg_class in access exclusive mode")
        r = w.query("UNLISTEN probe_chan")
        assert r["error"] is None and r["status"] == b"I"
        wait_for(lambda: probe_waiting_on(locker), what="the probe to wait for the lock")
        waiter = Waiter(other, "select clock_timestamp()::text || ' ' || pg_backend_pid()")
        waiter.start()
        wait_for(lambda: cl_waiting(d) == 1, what="the other client to queue")
        w.send(query_msg("select clock_timestamp()::text || ' ' || pg_backend_pid()"))
        time.sleep(0.3)
        assert probe_waiting_on(locker)
        locker.rollback()
        at_w, pid_w = w.collect_until_ready()["rows"][0][0].decode().rsplit(" ", 1)
        if left:
            # The relay went on with the bytes that came meanwhile; the other client still waits.
            assert int(pid_w) == w_pid
            with pytest.raises(psycopg.OperationalError, match="query_wait_timeout"):
                waiter.outcome(10)
            assert stats(d)["unpins"] == 0
        else:
            at_other, pid_other = waiter.outcome().rsplit(" ", 1)
            assert int(pid_other) == int(pid_w) == w_pid
            assert at_other < at_w, "the waiting client was served first"
            assert stats(d)["unpins"] == 1
        assert w.query("select 2")["rows"] == [[b"2"]]
    finally:
        locker.close()
        w.terminate()
        other.close()


@pytest.mark.timeout(60)
def test_a_failed_lock_attempt_unpins(pglease, direct):
    """pg_advisory_lock cancelled by lock_timeout holds nothing: the error makes the probe run."""
    assert scalar(direct, "select pg_try_advisory_lock(%d)" % LOCK_KEY) is True
    d = pglease(**ONE_BACKEND)
    a, b = d.connect(options="-c lock_timeout=100"), d.connect()
    try:
        with pytest.raises(psycopg.errors.LockNotAvailable):
            a.execute("select pg_advisory_lock(%d)" % LOCK_KEY)
        assert scalar(b, "select 1") == 1
        assert stats(d)["unpins"] == 1
    finally:
        a.close()
        b.close()
        direct.execute("select pg_advisory_unlock_all()")


@pytest.mark.timeout(60)
def test_on_commit_drop_unpins_at_commit(pglease):
    d = pglease(**ONE_BACKEND)
    a, b = d.connect(), d.connect()
    try:
        a.execute("begin")
        a.execute("CREATE TEMP TABLE gone_at_commit (x int) ON COMMIT DROP")
        a.execute("insert into gone_at_commit values (1)")
        a.execute("commit")
        assert scalar(b, "select 1") == 1
        assert stats(d)["unpins"] == 1
    finally:
        a.close()
        b.close()


@pytest.mark.timeout(60)
def test_a_probe_that_cannot_get_a_lock_gives_up_and_the_client_stays_pinned(pglease, cluster):
    """The probe waits for a lock at most server_drain_timeout: then it fails, the client keeps
    its pin and its backend (pglease would close a backend whose query takes twice that)."""
    d = pglease(default_pool_size=1, pool_mode="transaction", query_wait_timeout=3, server_drain_timeout=1,
                log_level="debug")
    w = raw_client(d)
    locker = cluster.connect("app", autocommit=False)
    try:
        assert w.query("LISTEN gives_up")["error"] is None
        pid = int(w.scalar("select pg_backend_pid()"))
        locker.execute("lock table pg_catalog.pg_class in access exclusive mode")
        assert w.query("UNLISTEN gives_up")["error"] is None
        wait_for(lambda: log_lines(d, "the session state probe on server"), what="the probe to give up")
        assert "lock timeout" in log_lines(d, "the session state probe on server")[0]
        locker.rollback()
        assert int(w.scalar("select pg_backend_pid()")) == pid
        assert [l for l in log_lines(d, ") closed: ") if " server " in l] == []
        assert stats(d)["unpins"] == 0
        # The next release is probed again, and the pin goes.
        assert w.query("UNLISTEN *")["error"] is None
        wait_for(lambda: unpinned_lines(d), what="the unpin")
        assert stats(d)["unpins"] == 1
    finally:
        locker.close()
        w.terminate()


@pytest.mark.timeout(60)
def test_a_release_pipelined_with_the_pin_unpins(pglease):
    """CREATE TEMP and DROP in one write: the DROP (which alone could never pin) is still seen."""
    d = pglease(**ONE_BACKEND)
    w = raw_client(d)
    b = d.connect()
    try:
        w.send(query_msg("CREATE TEMP TABLE piped (a int)") + query_msg("DROP TABLE piped"))
        for _ in range(2):
            r = w.collect_until_ready()
            assert r["error"] is None and r["status"] == b"I"
        assert scalar(b, "select 1") == 1
        st = stats(d)
        assert (st["pins"], st["unpins"]) == (1, 1), st
    finally:
        w.terminate()
        b.close()


@pytest.mark.timeout(90)
def test_a_release_right_after_a_cancel_still_unpins(pglease):
    """A pinned client cancels a query and at once releases its state. The release's boundary can come
    before pglease's cancel job reports back (a late cancel would hit the probe, so the probe waits): the
    probe must run once the cancel went out, even if the client then sends nothing (found by the torture
    test; pinned for good about half the time before)."""
    d = pglease(default_pool_size=2)
    for i in range(8):
        w = Wire(d.socket_path)
        w.startup({"user": "postgres", "database": "app"})
        w.query("select pg_advisory_lock(%d)" % (LOCK_KEY + 100 + i))
        w.send(query_msg("do $$ begin raise notice 'sleeping'; perform pg_sleep(5); end $$"))
        w.read_until((b"N",))
        x = Wire(d.socket_path)
        x.send(pgwire.cancel_request(*w.key))
        x.close()
        r = w.collect_until_ready(10)
        assert r["error"] and r["error"]["C"] == "57014", r
        w.query("select pg_advisory_unlock_all()")
        wait_for(lambda: stats(d)["unpins"] == i + 1, timeout=5,
                 what="round %d: the client unpinned after its release" % i)
        w.terminate()
    assert stats(d)["unpins"] == 8
