"""The timeouts that bound what a client holds (pool/timeout.c), against real PostgreSQL:
query_timeout cancels and the client stays; idle_transaction_timeout and transaction_timeout
end the client, roll back and reuse the backend; client_idle_timeout closes only clients without
a lease; client_stall_timeout frees the backend of a client stopped mid-message while another
client on a pool of one is served; SHOW STATS and /metrics name the timeout that fired."""
import struct
import threading
import time
import uuid

import psycopg
import pytest

import pgwire
from harness import closed_with, wait_for
from pgwire import Wire, read_fatal
from test_metrics import free_tcp_port, sample, scrape


def stats(d, db="app"):
    with psycopg.connect(d.dsn("pglease"), autocommit=True) as a:
        cur = a.execute("SHOW STATS")
        cols = [c.name for c in cur.description]
        rows = [dict(zip(cols, r)) for r in cur.fetchall() if r[0] == db]
    assert len(rows) == 1, rows
    return rows[0]


def pool_of(pglease, n, **settings):
    settings.setdefault("default_pool_size", n)
    return pglease(**settings)


def pid(conn):
    """The backend's PID as PostgreSQL reports it (not pglease's client id in conn.info)."""
    return conn.execute("select pg_backend_pid()").fetchone()[0]


def rows_with(direct, tag):
    return direct.execute("select count(*) from items where val = %s", (tag,)).fetchone()[0]


def wire_client(d):
    w = Wire(d.socket_path)
    w.startup({"user": "postgres", "database": "app"})
    return w


# ---- query_timeout ----

def test_query_timeout_cancels_and_the_connection_stays_on_its_backend(pglease):
    d = pool_of(pglease, 1, query_timeout=1)
    with d.connect() as c:
        before = pid(c)
        t0 = time.monotonic()
        with pytest.raises(psycopg.errors.QueryCanceled) as e:
            c.execute("select pg_sleep(10)")
        took = time.monotonic() - t0
        assert e.value.sqlstate == "57014"
        assert "canceling statement due to user request" in str(e.value)
        assert 0.9 < took < 3.0, took
        assert pid(c) == before
        assert c.execute("select 41 + 1").fetchone()[0] == 42
    st = stats(d)
    assert (st["query_timeouts"], st["exits_timeout_query"]) == (1, 0), st


def test_query_timeout_counts_each_request_of_a_pipeline_on_its_own(pglease):
    """Three queries sent in one write run 2.1 s in all, each 0.7 s: none is past query_timeout."""
    d = pool_of(pglease, 1, query_timeout=1)
    w = wire_client(d)
    w.send(pgwire.query_msg("select pg_sleep(0.7)") * 3)
    for _ in range(3):
        r = w.collect_until_ready()
        assert r["error"] is None, r["error"]
    w.terminate()
    assert stats(d)["query_timeouts"] == 0


def test_query_timeout_does_not_count_the_time_a_copy_waits_for_its_data(pglease, direct):
    """A COPY fed for 1.5 s, then 0.5 s of work after its CopyDone (a deferred trigger at commit):
    past query_timeout from its start, not from its end of data."""
    direct.execute("create table if not exists slowcopy (v text)")
    direct.execute("create or replace function slowcopy_trigger() returns trigger language plpgsql as "
                   "$$ begin perform pg_sleep(0.5); return null; end $$")
    direct.execute("drop trigger if exists slowcopy_slow on slowcopy")
    direct.execute("create constraint trigger slowcopy_slow after insert on slowcopy deferrable initially "
                   "deferred for each row execute function slowcopy_trigger()")
    d = pool_of(pglease, 1, query_timeout=1, client_stall_timeout=5)
    w = wire_client(d)
    w.send(pgwire.query_msg("copy slowcopy (v) from stdin"))
    assert w.read_until((b"G",))[-1][0] == b"G"
    w.send(pgwire.copy_data_msg(b"one\n"))
    time.sleep(1.5)
    w.send(pgwire.message(b"c"))
    r = w.collect_until_ready()
    assert r["error"] is None, r["error"]
    w.terminate()
    assert stats(d)["query_timeouts"] == 0


def test_query_timeout_in_session_mode_keeps_the_session(pglease):
    d = pool_of(pglease, 1, query_timeout=1, pool_mode="session")
    with d.connect() as c:
        c.execute("set application_name = 'kept'")
        before = pid(c)
        with pytest.raises(psycopg.errors.QueryCanceled):
            c.execute("select pg_sleep(10)")
        assert pid(c) == before
        assert c.execute("show application_name").fetchone()[0] == "kept"


def test_query_timeout_in_a_transaction_block_leaves_it_failed_until_rollback(pglease, direct):
    d = pool_of(pglease, 1, query_timeout=1)
    tag = "qt-" + uuid.uuid4().hex
    with d.connect() as c:
        c.execute("begin")
        c.execute("insert into items (val) values (%s)", (tag,))
        before = pid(c)
        with pytest.raises(psycopg.errors.QueryCanceled):
            c.execute("select pg_sleep(10)")
        with pytest.raises(psycopg.errors.InFailedSqlTransaction) as e:
            c.execute("select 1")
        assert e.value.sqlstate == "25P02"
        c.execute("rollback")
        assert pid(c) == before
        assert c.execute("select 2").fetchone()[0] == 2
    assert rows_with(direct, tag) == 0


def test_query_timeout_ten_clients_on_a_pool_of_two(pglease):
    d = pool_of(pglease, 2, query_timeout=1, query_wait_timeout=30)
    results = []

    def run():
        try:
            with d.connect() as c:
                try:
                    c.execute("select pg_sleep(8)")
                    results.append("not cancelled")
                    return
                except psycopg.errors.QueryCanceled:
                    pass
                results.append(c.execute("select 'ok'").fetchone()[0])
        except Exception as e:  # noqa: BLE001 - reported below
            results.append(repr(e))

    threads = [threading.Thread(target=run) for _ in range(10)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(40)
    assert results == ["ok"] * 10, results
    # five rounds of about a second each on two backends: never the 8 s of a sleep
    assert time.monotonic() - t0 < 20
    st = stats(d)
    assert (st["query_timeouts"], st["exits_timeout_query"]) == (10, 0), st


def test_query_timeout_when_the_cancel_cannot_take_ends_the_lease(pglease):
    """A real uncancellable query: the client reads none of a huge result, so pglease stops
    reading the backend, which blocks writing to it; PostgreSQL acts on a cancel only between
    rows, never while blocked on a client write. After server_drain_timeout the lease leaves by
    the exit door (timeout/query) and the pool's one backend serves the next client."""
    d = pool_of(pglease, 1, query_timeout=1, server_drain_timeout=1)
    w = wire_client(d)
    # small series (a function scan materializes its whole series first, and would be cancelled then):
    # rows flow at once, and fill pglease's buffer and the sockets within milliseconds
    w.send(pgwire.query_msg("select repeat('x', 1000) from generate_series(1, 10000) a, generate_series(1, 10000) b"))
    t0 = time.monotonic()
    # the client reads nothing meanwhile (reading would let the backend go on, and see the cancel)
    wait_for(lambda: stats(d)["exits_timeout_query"] == 1, timeout=8,
             what=lambda: "exits_timeout_query; log: %s" % [l for l in d.log_text().splitlines()
                                                           if "admin" not in l and "(-/-)" not in l])
    assert time.monotonic() - t0 < 5
    assert w.wait_closed(timeout=10)
    assert "timeout/query" in d.log_text()
    with d.connect() as c:
        assert c.execute("select 3").fetchone()[0] == 3


# ---- idle_transaction_timeout ----

def test_idle_transaction_timeout_rolls_back_and_reuses_the_backend(pglease, direct):
    d = pool_of(pglease, 1, idle_transaction_timeout=1)
    tag = "it-" + uuid.uuid4().hex
    c = d.connect()
    c.execute("begin")
    c.execute("insert into items (val) values (%s)", (tag,))
    held = pid(c)
    # the premise: the backend is idle in a transaction that holds the row
    assert direct.execute("select state from pg_stat_activity where pid = %s", (held,)).fetchone()[0] == \
        "idle in transaction"
    seen = closed_with(d, c, "25P03")
    assert "terminating connection due to idle-in-transaction timeout" in seen, seen
    c.close()
    assert rows_with(direct, tag) == 0
    with d.connect() as c2:
        assert pid(c2) == held
    st = stats(d)
    assert (st["exits_timeout_idle_transaction"], st["exit_rollbacks"]) == (1, 1), st


def test_idle_transaction_timeout_spares_busy_and_idle_clients(pglease):
    d = pool_of(pglease, 2, idle_transaction_timeout=1)
    with d.connect() as busy, d.connect() as idle:
        busy.execute("begin")
        busy.execute("select pg_sleep(2)")   # running, not idle: not ended
        for _ in range(4):                   # statements less than a second apart
            busy.execute("select 1")
            time.sleep(0.4)
        busy.execute("commit")
        time.sleep(1.5)                      # outside a transaction: not ended
        assert idle.execute("select 1").fetchone()[0] == 1
        assert busy.execute("select 1").fetchone()[0] == 1
    assert stats(d)["exits_timeout_idle_transaction"] == 0


# ---- transaction_timeout ----

def test_transaction_timeout_ends_a_busy_transaction_and_reuses_the_backend(pglease, direct):
    d = pool_of(pglease, 1, transaction_timeout=1.5)
    tag = "tt-" + uuid.uuid4().hex
    c = d.connect()
    c.execute("begin")
    c.execute("insert into items (val) values (%s)", (tag,))
    held = pid(c)
    t0 = time.monotonic()
    with pytest.raises(psycopg.OperationalError) as e:
        while time.monotonic() - t0 < 10:
            c.execute("select pg_sleep(0.2)")
    assert "terminating connection due to transaction timeout" in str(e.value), str(e.value)
    assert time.monotonic() - t0 < 3
    c.close()
    assert rows_with(direct, tag) == 0
    with d.connect() as c2:
        assert pid(c2) == held
    assert stats(d)["exits_timeout_transaction"] == 1


def test_transaction_timeout_cancels_a_long_statement_then_reuses_the_backend(pglease):
    d = pool_of(pglease, 1, transaction_timeout=1)
    c = d.connect()
    held = pid(c)
    t0 = time.monotonic()
    with pytest.raises(psycopg.OperationalError) as e:
        c.execute("select pg_sleep(10)")
    assert "25P04" in d.log_text() and "transaction timeout" in str(e.value), str(e.value)
    assert time.monotonic() - t0 < 4
    c.close()
    with d.connect() as c2:
        assert pid(c2) == held


# ---- client_idle_timeout ----

def test_client_idle_timeout_closes_only_clients_without_a_lease(pglease):
    d = pool_of(pglease, 2, client_idle_timeout=1)
    idle = d.connect()
    holder = d.connect()
    holder.execute("begin")
    holder.execute("select 1")
    seen = closed_with(d, idle, "57P05")
    assert "terminating connection due to idle-session timeout" in seen, seen
    idle.close()
    time.sleep(0.5)
    assert holder.execute("select 2").fetchone()[0] == 2
    holder.execute("commit")
    holder.close()
    # a client that keeps talking is never idle that long
    with d.connect() as busy:
        for _ in range(5):
            assert busy.execute("select 1").fetchone()[0] == 1
            time.sleep(0.4)
    assert stats(d)["client_idle_timeouts"] == 1


# ---- client_stall_timeout ----

def test_a_stalled_client_frees_the_backend_while_another_is_served(pglease):
    d = pool_of(pglease, 1, client_stall_timeout=1)
    w = wire_client(d)
    body = b"select 1 /* " + b"x" * 200 + b" */\0"
    w.send(b"Q" + struct.pack("!I", 4 + len(body)) + body[:20])   # half a Query, then nothing
    time.sleep(0.3)
    t0 = time.monotonic()
    with d.connect() as other:   # waits for the one backend the staller holds
        assert other.execute("select 7").fetchone()[0] == 7
        took = time.monotonic() - t0
        assert 0.4 < took < 3, took   # the premise: it did wait for the staller's backend
    err = read_fatal(w)
    assert err["C"] == "08P01", err
    assert "client_stall_timeout" in err["M"], err
    w.close()
    assert stats(d)["exits_timeout_stall"] == 1


def test_more_stalled_clients_than_backends_cannot_starve_the_pool(pglease, direct):
    """Four clients stall on a pool of two, then a well-behaved one comes: the stalled ones are
    ended two by two (a waiter's clock starts with its lease) and it is served after them."""
    d = pool_of(pglease, 2, client_stall_timeout=1)
    stalled = []
    for _ in range(4):
        w = wire_client(d)
        w.send(b"Q" + struct.pack("!I", 64) + b"select")
        stalled.append(w)
    time.sleep(0.2)
    t0 = time.monotonic()
    with d.connect() as good:
        assert good.execute("select 8").fetchone()[0] == 8
    took = time.monotonic() - t0
    assert 1.0 < took < 5.0, took
    for w in stalled:
        assert read_fatal(w)["C"] == "08P01"
        w.close()
    assert stats(d)["exits_timeout_stall"] == 4
    assert len(direct.execute("select pid from pg_stat_activity where datname = 'app' and pid <> "
                              "pg_backend_pid()").fetchall()) <= 2


def test_a_client_stalled_inside_copy_is_rolled_back_and_its_backend_reused(pglease, direct):
    d = pool_of(pglease, 1, client_stall_timeout=1)
    tag = "cs-" + uuid.uuid4().hex
    w = wire_client(d)
    held = int(w.scalar("select pg_backend_pid()"))
    w.send(pgwire.query_msg("copy items (val) from stdin"))
    assert w.read_until((b"G",))[-1][0] == b"G"
    w.send(pgwire.copy_data_msg((tag + "\n").encode()))
    err = read_fatal(w)
    assert err["C"] == "08P01", err
    w.close()
    with d.connect() as c:
        assert pid(c) == held
    assert rows_with(direct, tag) == 0


@pytest.mark.timeout(60)
def test_a_slow_copy_that_keeps_sending_is_not_stalled(pglease, direct):
    d = pool_of(pglease, 1, client_stall_timeout=2)
    tag = "slow-" + uuid.uuid4().hex
    # raw messages: psycopg's copy would buffer the rows and send them at the end
    w = wire_client(d)
    w.send(pgwire.query_msg("copy items (val) from stdin"))
    assert w.read_until((b"G",))[-1][0] == b"G"
    for _ in range(6):          # a row a second for three times the timeout
        w.send(pgwire.copy_data_msg((tag + "\n").encode()))
        time.sleep(1)
    w.send(pgwire.message(b"c"))
    r = w.collect_until_ready()
    assert r["error"] is None and r["status"] == b"I", r
    w.terminate()
    assert rows_with(direct, tag) == 6
    assert stats(d)["exits_timeout_stall"] == 0


def test_client_stall_timeout_zero_is_off(pglease):
    d = pool_of(pglease, 1, client_stall_timeout=0)
    w = wire_client(d)
    w.send(b"Q" + struct.pack("!I", 100) + b"select")
    time.sleep(1.5)
    assert not w.wait_closed(timeout=0.5)
    w.send(b" 1" + b" " * (100 - 4 - len(b"select 1") - 1) + b"\0")
    r = w.collect_until_ready()
    assert r["error"] is None and r["rows"] == [[b"1"]], r


# ---- the reasons, in SHOW STATS and /metrics ----

def test_exit_reasons_in_show_stats_and_metrics(pglease):
    port = free_tcp_port()
    d = pool_of(pglease, 2, idle_transaction_timeout=1, client_stall_timeout=1, query_timeout=1,
                metrics_listen="127.0.0.1:%d" % port)
    c = d.connect()
    c.execute("begin")
    closed_with(d, c, "25P03")
    c.close()
    w = wire_client(d)
    w.send(b"Q" + struct.pack("!I", 50) + b"sel")
    read_fatal(w)
    w.close()
    with d.connect() as q:
        with pytest.raises(psycopg.errors.QueryCanceled):
            q.execute("select pg_sleep(5)")
    st = stats(d)
    assert (st["exits_timeout_idle_transaction"], st["exits_timeout_stall"], st["query_timeouts"]) == (1, 1, 1), st
    text = scrape(port)
    assert sample(text, "pglease_lease_exits_total", database="app", reason="timeout_idle_transaction") == 1
    assert sample(text, "pglease_lease_exits_total", database="app", reason="timeout_stall") == 1
    assert sample(text, "pglease_lease_exits_total", database="app", reason="timeout_query") == 0
    assert sample(text, "pglease_lease_exits_total", database="app", reason="timeout_transaction") == 0
    assert sample(text, "pglease_query_timeouts_total", database="app") == 1
    assert "timeout/idle_transaction" in d.log_text() and "timeout/stall" in d.log_text()
