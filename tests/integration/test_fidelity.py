"""Protocol fidelity through pglease (transaction mode unless stated): pipelining,
COPY in both directions and formats, portals with row limits, binary formats,
Describe, backpressure on slow readers, and messages of any legal size."""
import hashlib
import os
import socket
import struct
import threading
import time
import uuid

import psycopg
import pytest

import harness
import pgwire
from harness import app_backends, wait_for, wait_pool_size
from pgwire import Wire, message, parse_data_row, parse_fields


def marker():
    return "f_" + uuid.uuid4().hex[:12]


def raw_client(d, timeout=30.0):
    w = Wire(d.socket_path, timeout=timeout)
    w.startup({"user": "postgres", "database": "app"})
    return w


def parse_msg(sql, name="", param_oids=()):
    return message(b"P", name.encode() + b"\0" + sql.encode() + b"\0"
                   + struct.pack("!H", len(param_oids)) + b"".join(struct.pack("!I", o) for o in param_oids))


def bind_msg(portal="", stmt="", params=(), param_formats=(), result_formats=()):
    body = portal.encode() + b"\0" + stmt.encode() + b"\0"
    body += struct.pack("!H", len(param_formats)) + b"".join(struct.pack("!H", f) for f in param_formats)
    body += struct.pack("!H", len(params))
    for p in params:
        body += struct.pack("!i", -1) if p is None else struct.pack("!i", len(p)) + p
    body += struct.pack("!H", len(result_formats)) + b"".join(struct.pack("!H", f) for f in result_formats)
    return message(b"B", body)


def describe_msg(kind, name=""):
    return message(b"D", kind + name.encode() + b"\0")


def close_msg(kind, name=""):
    return message(b"C", kind + name.encode() + b"\0")


def read_through_ready(w, count=1, timeout=30.0):
    """Read messages through the count-th ReadyForQuery; returns [(type, body)]."""
    msgs = []
    deadline = time.monotonic() + timeout
    while count:
        mtype, body = w.read_message(max(0.0, deadline - time.monotonic()))
        msgs.append((mtype, body))
        if mtype == b"Z":
            count -= 1
    return msgs


def rss_kb(pid, key="VmRSS"):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise AssertionError("no %s for pid %d" % (key, pid))


def backend_pid_via(d):
    with d.connect() as c:
        return c.execute("select pg_backend_pid()").fetchone()[0]


# ---------------------------------------------------------------- pipelining
def test_psycopg_pipeline_many_statements_several_syncs(pglease, direct):
    d = pglease(default_pool_size=1)
    t = marker()
    direct.execute("create table %s (id int primary key, v text)" % t)
    with d.connect() as c:
        curs = []
        with c.pipeline() as p:
            for i in range(500):
                curs.append(c.execute("insert into %s values (%%s, %%s) returning id" % t, (i, str(i))))
                if i % 37 == 36:
                    p.sync()
            tail = c.execute("select count(*) from %s" % t)
        assert [cur.fetchone()[0] for cur in curs] == list(range(500))
        assert tail.fetchone()[0] == 500
        assert c.execute("select 1").fetchone()[0] == 1
    assert direct.execute("select count(*), sum(id) from %s" % t).fetchone() == (500, sum(range(500)))


@pytest.mark.timeout(60)
def test_raw_pipeline_lease_ends_after_every_owed_ready_for_query(pglease, direct):
    """50 Parse/Bind/Execute/Sync sent before reading anything, an error at #25: every
    Sync gets its ReadyForQuery, and a second client on the only backend is served
    only after the last of them."""
    d = pglease(default_pool_size=1)
    seq = marker()
    direct.execute("create sequence %s" % seq)
    w = raw_client(d)
    batch = b""
    for i in range(50):
        sql = "select 1/0" if i == 25 else "select nextval('%s'), pg_sleep(0.01)" % seq
        batch += parse_msg(sql) + bind_msg() + describe_msg(b"P") + pgwire.execute_msg() + pgwire.sync_msg()
    w.send(batch)
    # The second client asks while the pipeline is still running on the only backend.
    def pipeline_running():
        return any("nextval" in (r[2] or "") and r[1] == "active" for r in app_backends(direct))
    wait_for(pipeline_running, 10, 0.01, what="the pipeline running")
    second = {}

    def other():
        with d.connect() as c:
            second["v"] = c.execute("select nextval('%s')" % seq).fetchone()[0]
    th = threading.Thread(target=other)
    th.start()
    msgs = read_through_ready(w, 50)
    th.join(20)
    assert not th.is_alive()
    types = [m[0] for m in msgs]
    assert types.count(b"Z") == 50
    assert types.count(b"E") == 1
    assert types.count(b"1") == 50 and types.count(b"C") == 49
    values = [int(parse_data_row(b)[0]) for t_, b in msgs if t_ == b"D"]
    assert values == list(range(1, 50))
    err = [parse_fields(b) for t_, b in msgs if t_ == b"E"][0]
    assert err["C"] == "22012"
    # Every Z said idle: the error ended only its own implicit transaction.
    assert all(b == b"I" for t_, b in msgs if t_ == b"Z")
    assert second["v"] == 50
    assert w.scalar("select 'still fine'") == "still fine"
    w.terminate()


# ---------------------------------------------------------------- COPY
def text_copy_data(rows, width):
    pad = "p" * width
    return "".join("%d\t%s%d\n" % (i, pad, i) for i in range(rows)).encode()


def binary_copy_data(rows, width):
    out = [b"PGCOPY\n\xff\r\n\0", struct.pack("!ii", 0, 0)]
    pad = b"\xa5" * width
    for i in range(rows):
        payload = pad + struct.pack("!q", i)
        out.append(struct.pack("!hiqi", 2, 8, i, len(payload)) + payload)
    out.append(struct.pack("!h", -1))
    return b"".join(out)


COPY_SIZES = {"tiny": (3, 5), "1MB": (10000, 90), "100MB": (100000, 1000)}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fmt", ["text", "binary"])
@pytest.mark.parametrize("size", list(COPY_SIZES))
def test_copy_in_and_out(pglease, direct, fmt, size):
    d = pglease(default_pool_size=1)
    t = marker()
    rows, width = COPY_SIZES[size]
    direct.execute("create unlogged table %s (id int8, v %s)" % (t, "text" if fmt == "text" else "bytea"))
    data = text_copy_data(rows, width) if fmt == "text" else binary_copy_data(rows, width)
    opts = "" if fmt == "text" else " (format binary)"
    with d.connect() as c:
        with c.cursor() as cur:
            with cur.copy("copy %s from stdin%s" % (t, opts)) as cp:
                for off in range(0, len(data), 1 << 16):
                    cp.write(data[off:off + (1 << 16)])
            assert cur.rowcount == rows
            h, n = hashlib.sha256(), 0
            with cur.copy("copy (select * from %s order by id) to stdout%s" % (t, opts)) as cp:
                for block in cp:
                    h.update(block)
                    n += len(block)
        assert c.execute("select 'after copy'").fetchone()[0] == "after copy"
    assert n == len(data)
    assert h.hexdigest() == hashlib.sha256(data).hexdigest()
    assert direct.execute("select count(*), sum(id) from %s" % t).fetchone() == (rows, sum(range(rows)))
    direct.execute("drop table %s" % t)


def test_copy_in_many_tiny_messages(pglease, direct):
    """Thousands of 1-byte CopyData messages in one burst: message headers straddle the
    end of pglease's read buffer (pgbench -i writes rows like this)."""
    d = pglease(default_pool_size=1)
    t = marker()
    direct.execute("create table %s (v text)" % t)
    w = raw_client(d)
    w.send(pgwire.query_msg("copy %s from stdin" % t))
    assert w.read_until((b"G",))[-1][0] == b"G"
    lines = 20000
    w.send(b"".join(pgwire.copy_data_msg(ch) for _ in range(lines) for ch in (b"a", b"b", b"\n"))
           + message(b"c"))
    r = w.collect_until_ready(30)
    assert r["error"] is None, r["error"]
    assert r["status"] == b"I"
    w.terminate()
    assert direct.execute("select count(*) from %s where v = 'ab'" % t).fetchone()[0] == lines


def test_copy_in_bad_row_in_the_middle(pglease, direct):
    d = pglease(default_pool_size=1)
    t = marker()
    direct.execute("create table %s (id int, v text)" % t)
    pid = backend_pid_via(d)
    with d.connect() as c:
        with pytest.raises(psycopg.errors.InvalidTextRepresentation) as e:
            with c.cursor().copy("copy %s from stdin" % t) as cp:
                cp.write(b"".join(b"%d\tgood\n" % i for i in range(5000)))
                cp.write(b"notanumber\tbad\n")
                cp.write(b"".join(b"%d\tgood\n" % i for i in range(5000, 10000)))
        assert "line 5001" in (e.value.diag.context or "")
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert c.execute("select pg_backend_pid()").fetchone()[0] == pid
    assert direct.execute("select count(*) from %s" % t).fetchone()[0] == 0


def start_copy_and_vanish(d, table, cut_mid_message):
    w = raw_client(d)
    w.send(pgwire.query_msg("copy %s from stdin" % table))
    assert w.read_until((b"G",))[-1][0] == b"G"
    w.send(pgwire.copy_data_msg(b"".join(b"%d\n" % i for i in range(10000))))
    if cut_mid_message:
        w.send(pgwire.copy_data_msg(b"10000\n100")[:7])
    w.close()


def test_copy_out_fails_in_the_middle(pglease):
    d = pglease(default_pool_size=1)
    pid = backend_pid_via(d)
    w = raw_client(d)
    r = w.query("copy (select 1 / (50000 - g) from generate_series(1, 60000) g) to stdout")
    types = [m[0] for m in r["msgs"]]
    assert types[0] == b"H" and types[-2:] == [b"E", b"Z"]
    assert types.count(b"d") == 49999 and b"c" not in types
    assert r["error"]["C"] == "22012" and r["status"] == b"I"
    assert w.scalar("select pg_backend_pid()") == str(pid)
    w.terminate()


def test_client_vanishes_in_the_middle_of_copy_from(pglease, direct):
    """Gone between CopyData messages: pglease sends CopyFail, the backend rolls back
    and is reused (same pid), nothing was committed."""
    d = pglease(default_pool_size=1)
    t = marker()
    direct.execute("create table %s (id int)" % t)
    pid = backend_pid_via(d)
    start_copy_and_vanish(d, t, cut_mid_message=False)
    assert wait_pool_size(direct, 1) == {pid}
    assert backend_pid_via(d) == pid
    assert direct.execute("select count(*) from %s" % t).fetchone()[0] == 0


def test_client_vanishes_mid_copy_data_message(pglease, direct):
    """Gone halfway through a CopyData message: the stream cannot be finished, so the
    backend is discarded; still nothing is committed and the pool serves on."""
    d = pglease(default_pool_size=1)
    t = marker()
    direct.execute("create table %s (id int)" % t)
    pid = backend_pid_via(d)
    start_copy_and_vanish(d, t, cut_mid_message=True)
    wait_for(lambda: pid not in harness.app_pids(direct), 10, what="the cut backend to go")
    assert direct.execute("select count(*) from %s" % t).fetchone()[0] == 0
    assert backend_pid_via(d) != pid


def test_copy_done_arrives_late(pglease, direct):
    d = pglease(default_pool_size=1)
    t = marker()
    direct.execute("create table %s (id int)" % t)
    w = raw_client(d)
    w.send(pgwire.query_msg("copy %s from stdin" % t))
    assert w.read_until((b"G",))[-1][0] == b"G"
    w.send(pgwire.copy_data_msg(b"1\n2\n"))
    time.sleep(3)
    w.send(pgwire.copy_data_msg(b"3\n"))
    time.sleep(1)
    w.send(message(b"c"))
    r = w.collect_until_ready(20)
    assert r["error"] is None and r["status"] == b"I"
    tags = [b for t_, b in r["msgs"] if t_ == b"C"]
    assert tags == [b"COPY 3\0"]
    w.terminate()
    assert direct.execute("select sum(id) from %s" % t).fetchone()[0] == 6


def test_copy_in_through_extended_protocol(pglease, direct):
    """COPY started by Execute ends with CopyDone then Sync; a CopyFail'd one likewise.
    Either way the lease ends cleanly and the backend is reused."""
    d = pglease(default_pool_size=1)
    t = marker()
    direct.execute("create table %s (id int)" % t)
    pid = backend_pid_via(d)
    w = raw_client(d)
    w.send(parse_msg("copy %s from stdin" % t) + bind_msg() + pgwire.execute_msg())
    assert [m[0] for m in w.read_until((b"G",))] == [b"1", b"2", b"G"]
    w.send(pgwire.copy_data_msg(b"1\n2\n3\n") + message(b"c") + pgwire.sync_msg())
    msgs = read_through_ready(w)
    assert [m[0] for m in msgs] == [b"C", b"Z"] and msgs[0][1] == b"COPY 3\0" and msgs[1][1] == b"I"
    w.send(parse_msg("copy %s from stdin" % t) + bind_msg() + pgwire.execute_msg())
    assert w.read_until((b"G",))[-1][0] == b"G"
    w.send(pgwire.copy_data_msg(b"4\n") + message(b"f", b"client changed its mind\0") + pgwire.sync_msg())
    msgs = read_through_ready(w)
    assert [m[0] for m in msgs] == [b"E", b"Z"] and parse_fields(msgs[0][1])["C"] == "57014"
    w.terminate()
    assert backend_pid_via(d) == pid
    assert direct.execute("select count(*), sum(id) from %s" % t).fetchone() == (3, 6)


# ---------------------------------------------------------------- portals and formats
def test_execute_with_row_limit_portal_suspended(pglease):
    d = pglease(default_pool_size=1)
    w = raw_client(d)
    # Unnamed portal in the implicit transaction, then a named one in an explicit transaction.
    w.send(parse_msg("select g from generate_series(1, 25) g") + bind_msg()
           + pgwire.execute_msg("", 10) + pgwire.execute_msg("", 10) + pgwire.execute_msg("", 10)
           + pgwire.sync_msg())
    msgs = read_through_ready(w)
    types = [m[0] for m in msgs]
    assert types == [b"1", b"2"] + [b"D"] * 10 + [b"s"] + [b"D"] * 10 + [b"s"] + [b"D"] * 5 + [b"C", b"Z"]
    assert [int(parse_data_row(b)[0]) for t_, b in msgs if t_ == b"D"] == list(range(1, 26))
    assert w.query("begin")["status"] == b"T"
    w.send(parse_msg("select g from generate_series(1, 7) g", "st") + bind_msg("cur", "st")
           + pgwire.execute_msg("cur", 3) + pgwire.sync_msg())
    msgs = read_through_ready(w)
    assert [m[0] for m in msgs] == [b"1", b"2", b"D", b"D", b"D", b"s", b"Z"]
    assert msgs[-1][1] == b"T"
    # The portal survives the Sync inside the transaction.
    w.send(pgwire.execute_msg("cur", 0) + pgwire.sync_msg())
    msgs = read_through_ready(w)
    assert [m[0] for m in msgs] == [b"D"] * 4 + [b"C", b"Z"]
    assert w.query("commit")["status"] == b"I"
    w.terminate()


def test_binary_parameters_and_results(pglease):
    d = pglease()
    w = raw_client(d)
    blob = bytes(range(256)) * 4
    w.send(parse_msg("select $1::int4 + 1, $2::bytea, $3::int8 * 2, $4::text", "", (23, 17, 20, 25))
           + bind_msg("", "", [struct.pack("!i", 41), blob, struct.pack("!q", -(1 << 40)), None],
                      param_formats=[1], result_formats=[1])
           + describe_msg(b"P") + pgwire.execute_msg() + pgwire.sync_msg())
    msgs = read_through_ready(w)
    assert [m[0] for m in msgs] == [b"1", b"2", b"T", b"D", b"C", b"Z"]
    row = parse_data_row(msgs[3][1])
    assert row == [struct.pack("!i", 42), blob, struct.pack("!q", -(1 << 41)), None]
    # RowDescription says binary (format code 1) for every column.
    body = msgs[2][1]
    (n,) = struct.unpack("!H", body[:2])
    pos, formats = 2, []
    for _ in range(n):
        pos = body.index(b"\0", pos) + 1
        formats.append(struct.unpack("!h", body[pos + 16:pos + 18])[0])
        pos += 18
    assert formats == [1, 1, 1, 1]
    w.terminate()


def test_describe_statement_and_portal(pglease):
    d = pglease()
    w = raw_client(d)
    w.send(parse_msg("select $1::int4 as a, $2::text as b", "ds") + describe_msg(b"S", "ds")
           + bind_msg("", "ds", [b"5", b"x"]) + describe_msg(b"P") + pgwire.execute_msg()
           + close_msg(b"S", "ds") + pgwire.sync_msg())
    msgs = read_through_ready(w)
    assert [m[0] for m in msgs] == [b"1", b"t", b"T", b"2", b"T", b"D", b"C", b"3", b"Z"]
    (np,) = struct.unpack("!H", msgs[1][1][:2])
    assert struct.unpack("!%dI" % np, msgs[1][1][2:]) == (23, 25)
    assert b"a\0" in msgs[2][1] and b"b\0" in msgs[2][1]
    assert parse_data_row(msgs[5][1]) == [b"5", b"x"]
    # A statement-less Describe of an unknown name is an error, and the stream goes on.
    w.send(describe_msg(b"S", "nosuch") + pgwire.sync_msg())
    msgs = read_through_ready(w)
    assert msgs[0][0] == b"E" and parse_fields(msgs[0][1])["C"] == "26000"
    assert w.scalar("select 'ok'") == "ok"
    w.terminate()


# ---------------------------------------------------------------- size and backpressure
@pytest.mark.timeout(120)
def test_slow_reader_bounds_pglease_memory(pglease, direct):
    """~200 MB result to a client that reads slowly: pglease must stop reading the
    backend rather than buffer the result."""
    d = pglease(default_pool_size=1)
    w = raw_client(d, timeout=60)
    w.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    base = rss_kb(d.pid)
    rows, width = 200 * 1024, 1000
    w.send(pgwire.query_msg("select repeat('x', %d) from generate_series(1, %d)" % (width, rows)))
    time.sleep(2)   # read nothing: the backend fills pglease's buffers and the sockets
    peak = rss_kb(d.pid)
    # The backend is still busy sending: nobody read its output.
    assert [r[1] for r in app_backends(direct)] == ["active"]
    got = n = 0
    tail = b""
    w.sock.settimeout(60)
    t_next = time.monotonic()
    while True:
        chunk = w.sock.recv(1 << 20)
        assert chunk, "pglease closed the connection"
        got += len(chunk)
        tail = (tail + chunk)[-6:]
        if time.monotonic() >= t_next:   # sample now and then while we trickle
            peak = max(peak, rss_kb(d.pid))
            t_next = time.monotonic() + 0.2
            if n < 10:
                time.sleep(0.2)
                n += 1
        if tail == pgwire.message(b"Z", b"I"):
            break
    peak = max(peak, rss_kb(d.pid))
    expected = rows * (1 + 4 + 2 + 4 + width)
    assert got > expected
    assert peak - base < 16 * 1024, "pglease RSS grew %d kB while a 200 MB result was pending" % (peak - base)
    w.buf = b""
    assert w.scalar("select 'after'") == "after"
    w.terminate()


@pytest.mark.timeout(120)
def test_64mb_value_in_parameter_and_result(pglease):
    d = pglease()
    big = os.urandom(64 * 1024 * 1024 - 1024)
    with d.connect() as c:
        r = c.execute("select length(%b::bytea), md5(%b::bytea)", (big, big)).fetchone()
        assert r == (len(big), hashlib.md5(big).hexdigest())
        v = c.execute("select repeat('y', 64 * 1024 * 1024 - 64)").fetchone()[0]
        assert len(v) == 64 * 1024 * 1024 - 64 and v.count("y") == len(v)
        v = c.execute("select %b::bytea", (big,), binary=True).fetchone()[0]
        assert v == big
        assert c.execute("select 'after'").fetchone()[0] == "after"
