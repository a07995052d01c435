"""query_wait_timeout: a client that cannot get a backend in time gets FATAL 53300 with a
pool snapshot and is disconnected; a client whose backend frees up in time proceeds."""
import threading
import time

import psycopg

import pgwire
from pgwire import Wire, read_fatal


def test_waiting_client_gets_fatal_53300_with_pool_snapshot_after_query_wait_timeout(pglease):
    d = pglease(default_pool_size=1, query_wait_timeout=1)
    holder = d.connect()
    try:
        holder.execute("begin")
        holder.execute("select 1")
        w = Wire(d.socket_path)
        try:
            # The startup may or may not need a backend; either way the error must come.
            w.send(pgwire.startup_packet({"user": "postgres", "database": "app"}))
            t0 = time.monotonic()
            msgs = w.read_until((b"Z",), timeout=10)
            if msgs[-1][0] == b"Z":
                t0 = time.monotonic()
                w.send(pgwire.query_msg("select 1"))
                fields = read_fatal(w, timeout=10)
            else:
                fields = pgwire.parse_fields(msgs[-1][1])
            elapsed = time.monotonic() - t0
            assert fields.get("S") == "FATAL", fields
            assert fields.get("C") == "53300", fields
            msg = fields.get("M", "") + " " + fields.get("D", "")
            assert "query_wait_timeout" in msg, fields
            for word in ("size", "active", "idle", "waiting"):
                assert word in msg, "pool snapshot lacks %r: %r" % (word, fields)
            assert 0.8 <= elapsed <= 6, "error came after %.2fs with query_wait_timeout=1" % elapsed
            assert w.wait_closed(5), "connection not closed after the query_wait_timeout error"
        finally:
            w.close()
        # The holder is unaffected.
        assert holder.execute("select 2").fetchone()[0] == 2
        holder.execute("commit")
    finally:
        holder.close()
    with d.connect() as c:
        assert c.execute("select 3").fetchone()[0] == 3


def test_psycopg_client_sees_query_wait_timeout_error(pglease):
    d = pglease(default_pool_size=1, query_wait_timeout=1)
    with d.connect() as holder:
        holder.execute("begin")
        holder.execute("select 1")
        t0 = time.monotonic()
        try:
            with d.connect() as c:
                c.execute("select 1")
        except psycopg.OperationalError as e:
            assert "query_wait_timeout" in str(e), str(e)
            if e.sqlstate is not None:
                assert e.sqlstate == "53300"
        else:
            raise AssertionError("second client got a backend while the only one was held")
        assert time.monotonic() - t0 < 8
        holder.execute("commit")


def test_waiting_client_proceeds_when_backend_frees_before_timeout(pglease):
    d = pglease(default_pool_size=1, query_wait_timeout=3)
    with d.connect() as holder, d.connect() as waiter:
        holder.execute("begin")
        holder.execute("select 1")
        out = {}

        def run():
            try:
                out["v"] = waiter.execute("select 'served'").fetchone()[0]
            except Exception as e:
                out["e"] = e

        t = threading.Thread(target=run, daemon=True)
        t.start()
        time.sleep(1.0)
        assert t.is_alive(), "waiter was served while the only backend was held: %r" % out
        holder.execute("commit")
        t.join(10)
        assert not t.is_alive()
        assert out.get("v") == "served", out
