"""psycopg 3 scenarios for the client matrix.

usage: psycopg_scenarios.py CASE CONNINFO
Prints what the client saw, one line per fact, so that a run straight against
PostgreSQL and runs through pglease can be compared line by line. Nothing
printed may depend on backend PIDs or time. Exits non-zero on an unexpected error.

Only the prepare-threshold-0 case lets psycopg prepare named statements; the others
turn that off (prepare_threshold=None) so that each case tests one thing.
"""
import hashlib
import os
import sys
import threading
import time

import psycopg
from psycopg.types.numeric import Int8


def out(*parts):
    print(*parts, flush=True)


def note_backend(pid):
    """Where a step ran, for test_matrix to check that the shuffler really moved the client
    (written to $MATRIX_PIDS, never printed: the output must not depend on PIDs)."""
    path = os.environ.get("MATRIX_PIDS")
    if path:
        with open(path, "a") as f:
            f.write("%d\n" % pid)


class Shuffler:
    """A second connection that holds a transaction open every other step, so that in
    transaction mode the first connection's next transaction gets another backend:
    whatever it relies on (a named statement) must then follow it there. Each step's
    backend goes to note_backend(), and test_matrix checks that it changed."""

    def __init__(self, dsn):
        self.conn = psycopg.connect(dsn, autocommit=True, prepare_threshold=None)
        self.holding = False

    def step(self, i):
        if self.holding:
            self.conn.execute("commit")
            self.holding = False
        elif i % 2 == 0:
            self.conn.execute("begin")
            self.conn.execute("select 1")
            self.holding = True

    def close(self):
        if self.holding:
            self.conn.execute("commit")
        self.conn.close()


def case_prepare_threshold_0(dsn):
    # Every parametrized query becomes a named server-side statement at once.
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=0) as c:
        c.execute("drop table if exists m_psy_prep")
        c.execute("create table m_psy_prep (id int primary key, v text)")
        sh = Shuffler(dsn)
        for i in range(40):
            sh.step(i)
            c.execute("insert into m_psy_prep values (%s, %s)", (i, "v%d" % i))
            r = c.execute("select count(*), sum(id), pg_backend_pid() from m_psy_prep where id <= %s",
                          (i,)).fetchone()
            note_backend(r[2])
            out("step", i, r[:2])
        sh.close()
        out("final", c.execute("select count(*), sum(id) from m_psy_prep").fetchone())


def case_pipeline(dsn):
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as c:
        c.execute("drop table if exists m_psy_pipe")
        c.execute("create table m_psy_pipe (id int primary key, v text)")
        curs = []
        with c.pipeline() as p:
            for i in range(200):
                curs.append(c.execute("insert into m_psy_pipe values (%s, %s) returning id * 2", (i, "x" * (i % 50))))
                if i % 25 == 24:
                    p.sync()
        out("returned", sum(cur.fetchone()[0] for cur in curs))
        # An error in the middle of a pipeline: everything up to the next Sync is skipped.
        try:
            with c.pipeline() as p:
                c.execute("insert into m_psy_pipe values (%s, 'a')", (1000,))
                p.sync()
                c.execute("insert into m_psy_pipe values (%s, 'dup')", (1,))
                c.execute("insert into m_psy_pipe values (%s, 'skipped')", (1001,))
                p.sync()
        except psycopg.Error as e:
            out("pipeline error", e.sqlstate)
        with c.pipeline():
            a = c.execute("select count(*) from m_psy_pipe")
            b = c.execute("select count(*) from m_psy_pipe where id >= 1000")
        out("after", a.fetchone(), b.fetchone())


def rows_for_copy(n):
    return [(i, "row %d \t tab \\ backslash \n newline" % i, i * 1.5 if i % 7 else None) for i in range(n)]


def case_copy_text(dsn):
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as c:
        c.execute("drop table if exists m_psy_copy")
        c.execute("create table m_psy_copy (id int, t text, f float8)")
        with c.cursor() as cur:
            with cur.copy("copy m_psy_copy from stdin") as cp:
                for r in rows_for_copy(20000):
                    cp.write_row(r)
            h = hashlib.sha256()
            n = 0
            with cur.copy("copy (select * from m_psy_copy order by id) to stdout") as cp:
                for block in cp:
                    h.update(block)
                    n += len(block)
            out("copy out bytes", n, h.hexdigest())
        out("count", c.execute("select count(*), sum(id), count(f) from m_psy_copy").fetchone())


def case_copy_binary(dsn):
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as c:
        c.execute("drop table if exists m_psy_copyb")
        c.execute("create table m_psy_copyb (id int8, t text, b bytea, f float8)")
        with c.cursor() as cur:
            with cur.copy("copy m_psy_copyb from stdin (format binary)") as cp:
                cp.set_types(["int8", "text", "bytea", "float8"])
                for i in range(20000):
                    cp.write_row((i, "t%d" % i, bytes([i % 256]) * (i % 300), i / 3))
            h = hashlib.sha256()
            n = 0
            with cur.copy("copy (select * from m_psy_copyb order by id) to stdout (format binary)") as cp:
                cp.set_types(["int8", "text", "bytea", "float8"])
                for row in cp.rows():
                    h.update(repr((row[0], row[1], bytes(row[2]), row[3])).encode())
                    n += 1
            out("copy out rows", n, h.hexdigest())
        out("count", c.execute("select count(*), sum(length(b)) from m_psy_copyb").fetchone())


def case_binary_results(dsn):
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as c:
        with c.cursor(binary=True) as cur:
            cur.execute("""select 42::int4, 1234567890123::int8, 3.25::float8, 12345.678901::numeric,
                           'héllo'::text, '\\x00ff10'::bytea, '2024-02-29 12:34:56.789+00'::timestamptz,
                           array[1,2,null,4]::int4[], '{"a": [1, 2]}'::jsonb, true, null::text,
                           '11111111-2222-3333-4444-555555555555'::uuid""")
            out("row", cur.fetchone())
            cur.execute("select g, repeat('z', g), g::numeric / 7 from generate_series(1, 3000) g")
            rows = cur.fetchall()
            out("rows", len(rows), hashlib.sha256(repr(rows).encode()).hexdigest())
            cur.execute("select %b::bytea, %s::int8[]", (bytes(range(256)), [Int8(1), Int8(-2), None]))
            out("params", cur.fetchone())


def case_cancel(dsn):
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as c:
        t = threading.Timer(1.0, c.cancel)
        t.start()
        t0 = time.monotonic()
        try:
            c.execute("select pg_sleep(30)")
            out("not cancelled")
        except psycopg.errors.QueryCanceled as e:
            out("cancelled", e.sqlstate, time.monotonic() - t0 < 20)
        t.join()
        out("after", c.execute("select 'usable'").fetchone())
        # Cancel inside an explicit transaction: the transaction is aborted, then rolled back.
        c.execute("begin")
        t = threading.Timer(1.0, c.cancel)
        t.start()
        try:
            c.execute("select pg_sleep(30)")
        except psycopg.errors.QueryCanceled as e:
            out("cancelled in txn", e.sqlstate, c.info.transaction_status.name)
        t.join()
        c.execute("rollback")
        out("after rollback", c.info.transaction_status.name, c.execute("select 2").fetchone())


def case_notifies(dsn):
    with psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as listener, psycopg.connect(dsn, autocommit=True, prepare_threshold=None) as talker:
        listener.execute("listen m_psy_chan")
        # Other transactions in between: in transaction mode the listener must keep its backend.
        for i in range(5):
            talker.execute("select %s::int", (i,))
        for i in range(3):
            talker.execute("select pg_notify('m_psy_chan', %s)", ("payload %d" % i,))
        # psycopg 3.1's notifies() has no timeout: take deliveries through a handler,
        # polling with a query (notifications arrive with any message from the backend).
        got = []
        listener.add_notify_handler(lambda n: got.append((n.channel, n.payload)))
        deadline = time.monotonic() + 10
        while len(got) < 3 and time.monotonic() < deadline:
            listener.execute("select 1")
            time.sleep(0.05)
        out("notifies", got)
        listener.execute("unlisten m_psy_chan")
        out("listener still usable", listener.execute("select 1").fetchone())


CASES = {
    "prepare-threshold-0": case_prepare_threshold_0,
    "pipeline": case_pipeline,
    "copy-text": case_copy_text,
    "copy-binary": case_copy_binary,
    "binary-results": case_binary_results,
    "cancel": case_cancel,
    "notifies": case_notifies,
}

if __name__ == "__main__":
    CASES[sys.argv[1]](sys.argv[2])
