"""Protocol-level named prepared statements in transaction mode.

The raw-protocol tests send the same bytes to PostgreSQL directly and through
pglease, forcing pglease's client onto the pool's other backend at each
"switch" (checked: the client's pg_backend_pid() changes), and require the
same replies in the same order (errors compared by SQLSTATE, since pglease's
server-side names may appear in their text).
"""
import os
import re
import struct
import subprocess
import threading
import time

import pytest

import pgwire
from harness import BackendHolder, backend_pid, clean_env, move_client, wire_pid
from pgwire import Wire

APP = {"user": "postgres", "database": "app"}


# ---------------------------------------------------------------- messages
def parse(name, sql, types=()):
    return pgwire.message(b"P", name.encode() + b"\0" + sql.encode() + b"\0" +
                          struct.pack("!H", len(types)) + b"".join(struct.pack("!I", t) for t in types))


def bind(stmt, params=(), portal=""):
    body = portal.encode() + b"\0" + stmt.encode() + b"\0" + struct.pack("!H", 0) + struct.pack("!H", len(params))
    for p in params:
        if p is None:
            body += struct.pack("!i", -1)
        else:
            p = p if isinstance(p, bytes) else str(p).encode()
            body += struct.pack("!I", len(p)) + p
    return pgwire.message(b"B", body + struct.pack("!H", 0))


def describe(kind, name):
    return pgwire.message(b"D", kind + name.encode() + b"\0")


def close(kind, name):
    return pgwire.message(b"C", kind + name.encode() + b"\0")


def execute(portal=""):
    return pgwire.execute_msg(portal)


SYNC = pgwire.sync_msg()


def query(sql):
    return pgwire.query_msg(sql)


def run(bind_name, params=()):
    return bind(bind_name, params) + execute() + SYNC


# ---------------------------------------------------------------- comparing with PostgreSQL
def normalized(msgs):
    out = []
    for t, body in msgs:
        if t == b"E":
            out.append(("E", pgwire.parse_fields(body).get("C")))
        elif t == b"D":
            out.append(("D", tuple(pgwire.parse_data_row(body))))
        elif t in (b"C", b"Z"):
            out.append((t.decode(), body))
        elif t in (b"N", b"S"):
            continue
        else:
            out.append((t.decode(), None))
    return out


def ready_count(data):
    """ReadyForQuery replies owed for data: one per Sync and per Query."""
    n, i = 0, 0
    while i < len(data):
        (ln,) = struct.unpack("!I", data[i + 1:i + 5])
        n += data[i:i + 1] in (b"S", b"Q")
        i += 1 + ln
    return n


def read_replies(w, n_ready):
    msgs = []
    for _ in range(n_ready):
        msgs += w.read_until((b"Z",), timeout=30)
        while msgs[-1][0] != b"Z":
            msgs += w.read_until((b"Z",), timeout=30)
    return msgs


class Switcher:
    """Moves the test client to the pool's other backend (the pool has two): a BackendHolder
    takes the backend the client is on before releasing the one it held, so until the next
    switch the client can only lease the other one. Every move is checked (the client reports
    another pg_backend_pid()) and counted."""

    def __init__(self, d):
        self.holder = BackendHolder(d)
        self.moves = []

    def switch(self, w):
        self.moves.append(move_client(self.holder, lambda: wire_pid(w)))

    def close(self):
        self.holder.close()


class Probe:
    """What the Switcher sends on the client's own connection (two pg_backend_pid() queries),
    sent the same way to PostgreSQL directly so that both conversations stay the same."""

    def switch(self, w):
        wire_pid(w)
        wire_pid(w)


def idle_after(msgs):
    return bool(msgs) and msgs[-1] == (b"Z", b"I")


def play(path, steps, switcher):
    """steps: bytes (read up to their last ReadyForQuery), (bytes, ReadyForQuery count), (bytes,
    ReadyForQuery count, one more message type to read, as a Flush makes it come), or "switch" (the
    client must be idle then: outside a transaction, nothing owed). Returns the normalized replies,
    without the switcher's queries."""
    w = Wire(path)
    w.startup(APP)
    out = []
    idle = True
    try:
        for step in steps:
            if step == "switch":
                assert idle, "a switch at step %d, where the client cannot leave its backend" % len(out)
                switcher.switch(w)
                continue
            data, n_ready, *then = step if isinstance(step, tuple) else (step, ready_count(step))
            w.send(data)
            msgs = read_replies(w, n_ready)
            if then:
                msgs += w.read_until(tuple(then), timeout=10)
            idle = idle_after(msgs)
            out.append(normalized(msgs))
    finally:
        w.terminate()
    return out


def direct_path(cluster):
    return os.path.join(cluster.dir, ".s.PGSQL.%d" % cluster.port)


def same_as_postgres(pglease, cluster, steps, **settings):
    d = pglease(databases={"app": cluster.conninfo("app", user="postgres", pool_size=2)},
                pool_mode="transaction", min_pool_size=2, **settings)
    expected = play(direct_path(cluster), steps, Probe())
    sw = Switcher(d)
    try:
        got = play(d.socket_path, steps, sw)
    finally:
        sw.close()
    assert len(sw.moves) == steps.count("switch")
    assert got == expected
    return got


SCENARIOS = {
    "reuse on another backend": [
        parse("s1", "select $1::int + 1") + SYNC, "switch",
        run("s1", [41]), "switch",
        describe(b"S", "s1") + run("s1", [1]),
    ],
    "parse bind execute in one batch, then elsewhere": [
        parse("a", "select 'a'") + bind("a") + execute() + parse("b", "select 'b'") + SYNC, "switch",
        run("b") + run("a"),
    ],
    "close statement then use": [
        parse("s1", "select 1") + SYNC, "switch",
        close(b"S", "s1") + SYNC, "switch",
        run("s1"),
        parse("s1", "select 2") + run("s1"),
    ],
    "close unknown and portal": [
        close(b"S", "nope") + close(b"P", "nope") + SYNC,
    ],
    "deallocate all": [
        parse("s1", "select 1") + parse("s2", "select 2") + SYNC, "switch",
        query("DEALLOCATE ALL"), "switch",
        run("s1"),
        parse("s1", "select 3") + run("s1"),
    ],
    "discard all": [
        parse("s1", "select 1") + SYNC,
        query("discard all"), "switch",
        run("s1"),
        parse("s1", "select 4") + SYNC + run("s1"),
    ],
    "failed parse leaves nothing": [
        parse("s1", "selec 1") + SYNC, "switch",
        run("s1"),
        parse("s1", "select 5") + SYNC, "switch",
        run("s1"),
    ],
    "error mid-pipeline skips the rest of the batch": [
        parse("ok", "select 1") + bind("ok") + execute() + parse("bad", "select 1/0") + bind("bad") + execute() +
         parse("skipped", "select 2") + close(b"S", "ok") + describe(b"S", "ok") + SYNC +
         parse("later", "select 3") + run("later"), "switch",
        run("skipped"),
        run("ok"),
    ],
    "same failing text twice in one pipeline": [
        parse("f1", "selec 1") + SYNC + parse("f2", "selec 1") + SYNC + parse("g1", "select 1") + SYNC +
        parse("g2", "select 1") + SYNC + run("g2"),
        "switch",
        run("f1") + run("f2") + run("g1"),
    ],
    "name in use": [
        parse("s1", "select 1") + SYNC, "switch",
        parse("s1", "select 2") + SYNC + run("s1"),
    ],
    "same text under two names and types": [
        parse("x", "select $1") + parse("y", "select $1", [23]) + parse("z", "select $1", [23]) + SYNC,
        "switch",
        describe(b"S", "x") + describe(b"S", "y") + run("z", [7]) + run("y", [8]),
    ],
    "deallocate name": [
        parse("Mixed_Name", "select 1") + parse("s2", "select 2") + SYNC, "switch",
        query("DEALLOCATE mixed_name"), query('deallocate prepare "Mixed_Name"'), "switch",
        run("Mixed_Name"),
        query("deallocate s2;"),
        run("s2"),
        parse("s2", "select 22") + SYNC + run("s2"),
        query("deallocate nothing_here"),
    ],
    "deallocate name through the extended protocol": [
        parse("e1", "select 1") + parse("e2", "select 2") + SYNC, "switch",
        parse("", "deallocate e1") + bind("") + execute() + SYNC, "switch",
        parse("", "DEALLOCATE e2") + bind("") + execute() + run("e2") + run("e1"),
        parse("", "deallocate e2") + bind("") + execute() + SYNC,
        query("begin") + query("select 1/0"),
        parse("e3", "select 3") + SYNC,
        query("rollback"),
        parse("e3", "select 3") + SYNC, "switch",
        parse("", "deallocate e3") + bind("") + execute() + SYNC + run("e3"),
    ],
    "deallocate name in a transaction, and in a failed one": [
        parse("d1", "select 1") + parse("d2", "select 2") + SYNC, "switch",
        query("begin"), query("deallocate d1"), query("commit"), "switch",
        query("begin") + query("select 1/0"), query("deallocate d2"), query("rollback"), "switch",
        run("d1") + run("d2"),
    ],
    # A DEALLOCATE that fails or is skipped leaves the client's name, on the backend that has the
    # statement (rewritten to DEALLOCATE pgl_n) and on one that lacks it (throwaway statement).
    "deallocate name through the extended protocol, failing or skipped": [
        parse("x1", "select 1") + parse("x2", "select 2") + SYNC,
        query("begin") + query("select 1/0"),
        parse("", "deallocate x1") + bind("") + execute() + SYNC,
        query("rollback"), "switch",
        query("begin") + query("select 1/0"),
        parse("", "deallocate x2") + bind("") + execute() + SYNC,
        query("rollback"),
        parse("", "select 1/0") + bind("") + execute() + parse("", "deallocate x1") + bind("") + execute() + SYNC,
        "switch",
        parse("", "select 1/0") + bind("") + execute() + parse("", "deallocate x2") + bind("") + execute() + SYNC,
        run("x1") + run("x2"),
    ],
    "deallocate name in a failed transaction, on the backend that has it": [
        parse("h1", "select 1") + SYNC,
        query("begin") + query("select 1/0"), query("deallocate h1"), query("rollback"),
        run("h1"),
    ],
    "extended COPY FROM STDIN with a named statement": [
        parse("cp", "copy items(val) from stdin") + SYNC, "switch",
        # the Sync sent before the copy data is ignored by the backend: one ReadyForQuery
        (bind("cp") + execute() + SYNC + pgwire.copy_data_msg(b"prep-copy\n") + pgwire.message(b"c") + SYNC, 1),
        "switch",
        (run("cp") + pgwire.copy_data_msg(b"prep-copy2\n") + pgwire.message(b"c") + SYNC, 1),
        parse("after", "select count(*) >= 2 from items where val like 'prep-copy%'") + SYNC + run("after"),
    ],
    "flush then sync": [
        parse("f", "select 9") + pgwire.message(b"H"),
        run("f"),
    ],
    "inside a transaction block": [
        query("begin") + parse("t", "select 1") + SYNC,
        run("t") + query("select 1/0") + run("t") + query("rollback"), "switch",
        run("t"),
    ],
}

# Several Sync segments in one write, an error in an earlier one: PostgreSQL skips the rest of
# that segment only, and the later segments see what the earlier ones really did.
FAIL = parse("", "select 1/0") + bind("") + execute()
PIPELINES = {
    # pglease's own Parse before a Bind (the backend lacks the statement) is skipped with its
    # segment; the next segments' Binds still run, and a Parse of the name still finds it in use.
    "injected parse skipped, later segments bind": [
        parse("s2", "select $1::int + 1") + SYNC, "switch",
        FAIL + bind("s2", [1]) + execute() + SYNC + run("s2", [2]) + parse("s2", "select 2") + SYNC,
        run("s2", [3]),
    ],
    "injected parse skipped, a later segment describes and re-parses": [
        parse("s2", "select $1::int + 1") + SYNC, "switch",
        FAIL + describe(b"S", "s2") + SYNC + parse("s2", "select 'other'") + SYNC + describe(b"S", "s2") +
        run("s2", [4]),
    ],
    "injected parse skipped in two segments": [
        parse("s2", "select $1::int + 1") + SYNC, "switch",
        FAIL + bind("s2", [1]) + execute() + SYNC + FAIL + run("s2", [2]) + run("s2", [3]), "switch",
        run("s2", [4]),
    ],
    "injected parse ran, the next segment's skipped": [
        parse("s2", "select $1::int + 1") + SYNC, "switch",
        run("s2", [1]) + FAIL + run("s2", [2]) + run("s2", [3]), "switch",
        FAIL + run("s2", [4]) + FAIL + run("s2", [5]) + run("s2", [6]),
    ],
    # The client's own named Parse skipped: the name does not exist in the next segment.
    "named parse skipped, the name parsed again later": [
        parse("x", "select 'first'") + SYNC,
        parse("", "selec 1") + parse("S3", "select 'skipped'") + SYNC + parse("S3", "select 'second'") + SYNC +
        run("S3"), "switch",
        run("S3"),
    ],
    "named parse skipped, the name bound later": [
        parse("", "selec 1") + parse("S5", "select 5") + SYNC + run("S5") + describe(b"S", "S5") + SYNC +
        close(b"S", "S5") + SYNC + parse("S5", "select 55") + SYNC + run("S5"),
    ],
    # The waiting Parse is the last message of the write (with a Flush, or with nothing after it).
    "named parse waits at the end of a write": [
        (FAIL + parse("X", "select 'x'") + SYNC + parse("X", "select 'x2'") + pgwire.message(b"H"), 1, b"1"),
        SYNC + run("X"),
        (parse("Y", "select 'y'") + SYNC + parse("Y", "select 'y2'"), 1),
        SYNC + run("Y"), "switch",
        run("X") + run("Y"),
    ],
    "named parse ran, the name parsed again later": [
        parse("S4", "select 4") + SYNC + parse("S4", "select 44") + SYNC + run("S4"), "switch",
        run("S4"),
    ],
    "failing named parse, the same one again later": [
        parse("f", "selec 1") + SYNC + parse("f", "selec 1") + SYNC + parse("f", "select 1") + SYNC + run("f"),
        "switch", run("f"),
    ],
    "close skipped, the name used later": [
        parse("c1", "select 1") + SYNC, "switch",
        FAIL + close(b"S", "c1") + SYNC + run("c1") + parse("c1", "select 2") + SYNC,
        "switch", run("c1"),
    ],
    "close ran, the name parsed again later": [
        parse("c1", "select 1") + SYNC, "switch",
        close(b"S", "c1") + SYNC + run("c1") + parse("c1", "select 2") + SYNC + run("c1"),
    ],
    "deallocate through the extended protocol skipped, the name used later": [
        parse("e1", "select 1") + SYNC,
        FAIL + parse("", "deallocate e1") + bind("") + execute() + SYNC + run("e1"), "switch",
        FAIL + parse("", "deallocate e1") + bind("") + execute() + SYNC + run("e1") +
        parse("", "deallocate e1") + bind("") + execute() + SYNC + run("e1"),
    ],
    "deallocate query behind one that aborts the transaction": [
        parse("d1", "select 1") + parse("d2", "select 2") + SYNC,
        query("begin") + query("select 1/0") + query("deallocate d1") + query("rollback"), "switch",
        query("begin") + query("select 1/0") + query("deallocate d2") + query("rollback"),
        run("d1") + run("d2"),
    ],
}


@pytest.mark.parametrize("name", sorted(PIPELINES))
def test_pipelined_segments_match_postgres(pglease, cluster, name):
    same_as_postgres(pglease, cluster, PIPELINES[name])


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_replies_match_postgres(pglease, cluster, name):
    same_as_postgres(pglease, cluster, SCENARIOS[name])


def test_lru_eviction_bounds_each_backend(pglease, cluster):
    steps = [parse("p%d" % i, "select %d" % i) + SYNC for i in range(5)]
    steps += [run("p%d" % i) for i in (0, 4, 1, 3, 2, 0)]
    got = same_as_postgres(pglease, cluster, steps, max_prepared_statements=2)
    assert [m for m in got[5] if m[0] == "D"] == [("D", (b"0",))]
    d = pglease(databases={"app": cluster.conninfo("app", user="postgres", pool_size=1)},
                pool_mode="transaction", max_prepared_statements=2)
    w = Wire(d.socket_path)
    w.startup(APP)
    try:
        for data in steps:
            w.send(data)
            assert ("E", "26000") not in normalized(read_replies(w, ready_count(data)))
        r = w.query("select name from pg_prepared_statements order by 1")
        names = [row[0].decode() for row in r["rows"]]
        assert len(names) == 2 and all(n.startswith("pgl_") for n in names), names
    finally:
        w.terminate()


def test_statements_shared_between_clients_on_one_backend(pglease, cluster):
    d = pglease(databases={"app": cluster.conninfo("app", user="postgres", pool_size=1)}, pool_mode="transaction")
    ws = [Wire(d.socket_path) for _ in range(3)]
    try:
        for i, w in enumerate(ws):
            w.startup(APP)
            w.send(parse("mine%d" % i, "select $1::int * 2") + run("mine%d" % i, [i]))
            msgs = normalized(read_replies(w, 1))
            assert ("D", (str(2 * i).encode(),)) in msgs
        r = ws[0].query("select count(*) from pg_prepared_statements")
        assert r["rows"] == [[b"1"]]
    finally:
        for w in ws:
            w.terminate()


@pytest.mark.timeout(120)
def test_large_parse_and_bind(pglease, cluster):
    big_sql = "select length($1::bytea) as n /* %s */" % ("x" * 2_000_000)
    raw = os.urandom(16 * 1024 * 1024)
    blob = b"\\x" + raw.hex().encode()       # a 32 MB Bind parameter, in bytea's text form
    steps = [
        # a busy backend makes pglease wait with rewritten bytes still to send
        query("select pg_sleep(0.3)") + parse("big", big_sql) + SYNC, "switch",
        query("select pg_sleep(0.3)") + bind("big", [blob]) + execute() + SYNC, "switch",
        parse("", "select $1::bytea = $1::bytea") + bind("", [blob]) + execute() + SYNC,
        run("big", [b"abc"]),
    ]
    got = same_as_postgres(pglease, cluster, steps)
    assert ("D", (str(len(raw)).encode(),)) in got[1], got[1][:4]


def test_deallocate_parse_split_before_its_parameter_types(pglease, cluster):
    """An unnamed Parse of DEALLOCATE whose last bytes (its parameter type count) come in a later read
    waits until it is whole: it was rewritten from the bytes that had come, and the scan ran past the
    end of what the client had sent."""
    dealloc = parse("", "deallocate s1")

    def conversation(path):
        w = Wire(path)
        w.startup(APP)
        out = []
        try:
            for step in (parse("s1", "select 1") + SYNC, query("begin")):
                w.send(step)
                out.append(normalized(read_replies(w, ready_count(step))))
            # In a transaction the lease holds, so the relay reads the two pieces apart.
            w.send(dealloc[:-2])
            time.sleep(0.3)
            w.send(dealloc[-2:] + bind("") + execute() + SYNC)
            out.append(normalized(read_replies(w, 1)))
            w.send(query("commit") + run("s1"))
            out.append(normalized(read_replies(w, 2)))
        finally:
            w.terminate()
        return out

    d = pglease(databases={"app": cluster.conninfo("app", user="postgres", pool_size=2)}, pool_mode="transaction")
    expected = conversation(direct_path(cluster))
    assert expected[2] == [("1", None), ("2", None), ("C", b"DEALLOCATE\0"), ("Z", b"T")]
    assert ("E", "26000") in expected[3]
    assert conversation(d.socket_path) == expected
    d.check_alive()


def test_max_prepared_statements_0_relays_names_untouched(pglease, cluster):
    d = pglease(databases={"app": cluster.conninfo("app", user="postgres", pool_size=1)},
                pool_mode="transaction", max_prepared_statements=0)
    w = Wire(d.socket_path)
    w.startup(APP)
    try:
        w.send(parse("raw", "select 1") + SYNC)
        read_replies(w, 1)
        r = w.query("select name from pg_prepared_statements")
        assert r["rows"] == [[b"raw"]]
        w.query("deallocate all")
    finally:
        w.terminate()


def test_session_mode_relays_names_untouched(pglease, cluster):
    d = pglease(databases={"app": cluster.conninfo("app", user="postgres", pool_size=1)}, pool_mode="session")
    w = Wire(d.socket_path)
    w.startup(APP)
    try:
        w.send(parse("sess", "select 1") + SYNC)
        read_replies(w, 1)
        assert w.query("select name from pg_prepared_statements")["rows"] == [[b"sess"]]
    finally:
        w.terminate()


# ---------------------------------------------------------------- real clients
@pytest.mark.timeout(60)
def test_psycopg_prepared_across_backends(pglease, cluster, direct):
    """Six connections contend for two backends, so each one's named statements are used on
    both (checked per connection)."""
    import psycopg
    d = pglease(databases={"app": cluster.conninfo("app", user="postgres", pool_size=2)}, pool_mode="transaction")
    errors = []
    pids = {}
    start = threading.Barrier(6, timeout=20)

    def worker(n):
        try:
            with psycopg.connect(d.dsn("app", user="postgres"), autocommit=True, prepare_threshold=0) as conn:
                mine = pids.setdefault(n, [])
                start.wait()
                for i in range(60):
                    assert conn.execute("select %s::int + %s::int", (n, i)).fetchone()[0] == n + i
                    assert conn.execute("select %s::text || 'x'", (str(i),)).fetchone()[0] == "%dx" % i
                    mine.append(conn.execute("select pg_backend_pid()").fetchone()[0])
                    with conn.transaction():
                        conn.execute("select %s::int", (i,))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(repr(e))

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(50)
    assert not errors, errors[:3]
    assert sorted(pids) == list(range(6))
    assert all(len(set(p)) == 2 for p in pids.values()), [sorted(set(p)) for p in pids.values()]


@pytest.mark.timeout(60)
def test_psycopg_cache_overflow_deallocates_by_name(pglease, cluster):
    """psycopg drops statements beyond prepared_max with DEALLOCATE name."""
    import psycopg
    d = pglease(databases={"app": cluster.conninfo("app", user="postgres", pool_size=2)}, pool_mode="transaction")
    with BackendHolder(d) as holder, \
            psycopg.connect(d.dsn("app", user="postgres"), autocommit=True, prepare_threshold=0) as conn:
        conn.prepared_max = 2
        moves = []
        for i in range(30):
            if i % 3 == 0:      # move the connection to the other backend now and then
                moves.append(move_client(holder, lambda: backend_pid(conn)))
            q = "select %%s::int + %d" % (i % 5)
            assert conn.execute(q, (i,)).fetchone()[0] == i + i % 5
        assert len(moves) == 10
        assert conn.execute("select count(*) from pg_prepared_statements "
                            "where name not like 'pgl%%'").fetchone()[0] == 0


@pytest.fixture(scope="module")
def pgbench_tables(cluster):
    r = subprocess.run(["pgbench", "-i", "-q", "-s", "1", "-h", cluster.dir, "-p", str(cluster.port),
                        "-U", "postgres", "app"], capture_output=True, text=True, timeout=120, env=clean_env())
    assert r.returncode == 0, r.stderr
    yield
    with __import__("psycopg").connect(cluster.dsn("app")) as c:
        c.execute("drop table if exists pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history")


# One pgbench thread per client: pgbench 15 prepares with a blocking PQprepare(), which would
# stall a thread's other clients while they hold backends mid-transaction (with any pooler).
@pytest.mark.timeout(170)
def test_pgbench_prepared_in_transaction_mode(pglease, cluster, direct, pgbench_tables):
    clients, tx = 12, 150
    d = pglease(databases={"app": cluster.conninfo("app", pool_size=3)}, pool_mode="transaction",
                max_client_conn=clients + 10, query_wait_timeout=60)
    before = direct.execute("select count(*) from pgbench_history").fetchone()[0]
    r = subprocess.run(["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", str(clients), "-t", str(tx),
                        "-h", d.dir, "-p", str(d.port), "-U", "postgres", "app"],
                       capture_output=True, text=True, timeout=150, env=clean_env())
    assert r.returncode == 0, "pgbench failed (%d):\n%s\n%s" % (r.returncode, r.stdout, r.stderr)
    m = re.search(r"number of transactions actually processed: (\d+)/(\d+)", r.stdout)
    assert m and int(m.group(1)) == clients * tx, r.stdout
    assert direct.execute("select count(*) from pgbench_history").fetchone()[0] - before == clients * tx


def test_client_gone_mid_pipeline_leaves_a_usable_cache(pglease, cluster):
    d = pglease(databases={"app": cluster.conninfo("app", user="postgres", pool_size=1)}, pool_mode="transaction")
    a = Wire(d.socket_path)
    a.startup(APP)
    a.send(parse("g", "select pg_sleep(0.2), 'gone'") + SYNC)
    read_replies(a, 1)
    a.send(bind("g") + execute() + parse("h", "select 'h'") + bind("h") + execute())    # no Sync
    a.close()
    b = Wire(d.socket_path)
    b.startup(APP)
    try:
        for _ in range(2):
            b.send(parse("mine", "select pg_sleep(0.2), 'gone'") + run("mine") + close(b"S", "mine") + SYNC)
            msgs = normalized(read_replies(b, 2))
            assert ("D", (b"", b"gone")) in msgs, msgs
            b.send(parse("h2", "select 'h'") + run("h2") + close(b"S", "h2") + SYNC)
            assert ("D", (b"h",)) in normalized(read_replies(b, 2))
    finally:
        b.terminate()


# ---------------------------------------------------------------- randomized, against PostgreSQL
# The division fails at Execute: random() keeps the planner from folding it at Bind, which would
# depend on each backend's plan cache (custom or generic plan), not on the protocol.
SQLS = ["select $1::int + 1", "select $1::int * 2", "selec $1", "select 10 / ($1::int - 5 + (random() * 0)::int)"]


def random_steps(rng, n):
    """Batches of extended messages (each read to its ReadyForQuery), Queries, and backend switches."""
    names = ["a", "b", "c"]
    steps = []
    for _ in range(n):
        r = rng.random()
        if r < 0.15:
            steps.append("switch")
            continue
        if r < 0.25:
            steps.append(query(rng.choice(["deallocate all", "discard all", "select 1",
                                           "deallocate %s" % rng.choice(names)])))
            continue
        batch = b""
        for _ in range(rng.randint(1, 4)):
            k, name = rng.random(), rng.choice(names)
            if k < 0.35:
                batch += parse(name, rng.choice(SQLS))
            elif k < 0.7:
                batch += bind(name, [rng.choice([1, 5, 7])]) + execute()
            elif k < 0.8:
                batch += describe(b"S", name)
            elif k < 0.9:
                batch += close(b"S", name)
            else:
                batch += parse("", rng.choice(SQLS)) + bind("", [5]) + execute()
        steps.append(batch + SYNC)
    return steps


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", range(int(os.environ.get("PREP_SEEDS", "12"))))
def test_random_conversations_match_postgres(pglease, cluster, seed):
    import random
    steps = random_steps(random.Random(seed), 120)
    assert "switch" in steps
    same_as_postgres(pglease, cluster, steps, max_prepared_statements=2 if seed % 2 else 200)


def message_starts(data):
    starts, i = [], 0
    while i < len(data):
        starts.append(i)
        i += 1 + struct.unpack("!I", data[i + 1:i + 5])[0]
    return starts


def random_pipeline_steps(rng, n):
    """Like random_steps(), but each batch is 2-4 Sync segments in one write, an error in some."""
    steps = []
    for step in random_steps(rng, n):
        if step == "switch" or step[:1] == b"Q":
            steps.append(step)
            continue
        batch = b""
        for _ in range(rng.randint(2, 4)):
            segment = random_steps(rng, 1)[0]
            while segment == "switch" or segment[:1] == b"Q":
                segment = random_steps(rng, 1)[0]
            if rng.random() < 0.4:      # an error inside: the rest of the segment is skipped
                at = rng.choice(message_starts(segment))
                segment = segment[:at] + FAIL + segment[at:]
            batch += segment
        steps.append(batch)
    return steps


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", range(int(os.environ.get("PREP_SEEDS", "12"))))
def test_random_pipelines_match_postgres(pglease, cluster, seed):
    import random
    steps = random_pipeline_steps(random.Random(2000 + seed), 60)
    assert "switch" in steps
    same_as_postgres(pglease, cluster, steps, max_prepared_statements=2 if seed % 2 else 200)


def play_many(path, steps, n_clients, switcher):
    """Like play(), each step (client index, bytes) sent by one of n_clients connections; at
    (None, "switch") the switcher moves client 0 (and so the others, which are confined to the
    same backend by the switcher's hold) to the other backend."""
    ws = [Wire(path) for _ in range(n_clients)]
    out = []
    try:
        for w in ws:
            w.startup(APP)
        for i, data in steps:
            if data == "switch":
                switcher.switch(ws[0])
                continue
            ws[i].send(data)
            out.append(normalized(read_replies(ws[i], ready_count(data))))
    finally:
        for w in ws:
            w.terminate()
    return out


@pytest.mark.timeout(120)
@pytest.mark.parametrize("seed", range(int(os.environ.get("PREP_SEEDS", "12"))))
def test_random_clients_sharing_statements_match_postgres(pglease, cluster, seed):
    """Three clients, two backends taken in turns: statements are shared, evicted and
    re-prepared under each other, and used on a backend that has not seen them yet."""
    import random
    rng = random.Random(1000 + seed)
    steps = [(None, s) if s == "switch" else (rng.randrange(3), s) for s in random_steps(rng, 150)]
    d = pglease(databases={"app": cluster.conninfo("app", user="postgres", pool_size=2)},
                pool_mode="transaction", min_pool_size=2, max_prepared_statements=2 if seed % 2 else 200)
    expected = play_many(direct_path(cluster), steps, 3, Probe())
    sw = Switcher(d)
    try:
        got = play_many(d.socket_path, steps, 3, sw)
    finally:
        sw.close()
    assert len(sw.moves) == sum(1 for _, s in steps if s == "switch") > 0
    assert got == expected
