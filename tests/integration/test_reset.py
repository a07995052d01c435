"""RESET, RESET ALL, SET ... TO DEFAULT and DISCARD ALL land on the client's startup settings,
as on a direct connection, with the same replies and the same ParameterStatus messages.

pglease applies a client's startup settings on a pooled backend with SQL, so on the backend
they are SET-level values and RESET would return the pool's default; pglease follows such
statements with its own restore (pool/reset.c). Every scenario here is run on a direct
connection and through pglease with the same startup settings, and the message streams
(command tags, rows, errors, ParameterStatus, transaction status) must be identical."""
import os
import struct
import subprocess

import pytest

from harness import clean_env
from pgwire import Wire, parse_data_row, parse_fields, parse_parameter_status

MODES = ["session", "transaction"]

STARTUP = {"DateStyle": "Postgres, MDY", "TimeZone": "Asia/Tokyo",
           "application_name": "reset_app", "options": "-c work_mem=5MB -c extra_float_digits=2"}


def direct_path(cluster):
    return os.path.join(cluster.dir, ".s.PGSQL.%d" % cluster.port)


def connect(path, **params):
    w = Wire(path)
    w.startup(dict({"user": "postgres", "database": "app"}, **params))
    return w


def row_description(body):
    (n,) = struct.unpack("!H", body[:2])
    names, pos = [], 2
    for _ in range(n):
        end = body.index(b"\0", pos)
        names.append(body[pos:end].decode())
        pos = end + 1 + 18
    return names


def normalize(msgs):
    """What a client can observe of one exchange, message by message."""
    out = []
    for mtype, body in msgs:
        t = mtype.decode()
        if t == "C":
            out.append(("C", body.rstrip(b"\0").decode()))
        elif t == "T":
            out.append(("T", row_description(body)))
        elif t == "D":
            out.append(("D", [None if c is None else c.decode() for c in parse_data_row(body)]))
        elif t in ("E", "N"):
            f = parse_fields(body)
            out.append((t, f.get("S"), f.get("C"), f.get("M"), f.get("P")))
        elif t == "S":
            out.append(("S",) + parse_parameter_status(body))
        elif t == "Z":
            out.append(("Z", body.decode()))
        else:
            out.append((t,))
    return out


@pytest.mark.parametrize("mode", MODES)
def test_errors_after_a_rewritten_reset_point_into_the_clients_text(pglease, cluster, mode):
    """The restore pglease inserts moves the text after it: error positions are given back as
    positions in what the client sent (psql draws its caret from them)."""
    d = pglease(pool_mode=mode)
    steps = ["RESET datestyle; select nosuchcol",
             "RESET datestyle; RESET timezone; select 1 +",
             "RESET ALL; select 'caf\u00e9', nosuchcol",
             "RESET work_mem; SELECT 1; select * from nosuchtable",
             "select nosuchcol; RESET datestyle",
             # past column 100 the position keeps its number of digits, and the message its length
             "RESET datestyle; select 1 as first_column_with_a_longish_name,"
             " 2 as second_column_with_a_longish_name, nosuchcol",
             "SET datestyle = 'SQL, DMY'; RESET datestyle; SHOW datestyle; select 1/0, nosuchcol"]
    same_as_direct(cluster, d.socket_path, steps)


@pytest.mark.parametrize("mode", MODES)
def test_copy_in_a_query_with_a_reset(pglease, cluster, direct, mode):
    """COPY FROM STDIN after a RESET in the same Query: the client's CopyData reaches the backend
    (nothing waits for the reply), and the rest of the Query sees the startup value."""
    direct.execute("CREATE TABLE IF NOT EXISTS reset_copy (t text)")
    d = pglease(pool_mode=mode)
    sql = "SET datestyle = 'SQL, DMY'; RESET datestyle; COPY reset_copy FROM STDIN; SHOW datestyle"

    def run(w):
        w.send(b"Q" + struct.pack("!I", len(sql) + 5) + sql.encode() + b"\0")
        first = w.read_until((b"G",))
        w.send(b"d" + struct.pack("!I", 4 + 4) + b"abc\n" + b"c" + struct.pack("!I", 4))
        return sorted_reports(normalize(first + w.collect_until_ready()["msgs"]))

    pair = Pair(cluster, d.socket_path)
    try:
        want, got = run(pair.direct), run(pair.pooled)
        assert got == want
        assert ("D", ["Postgres, MDY"]) in got
        pair.run("SHOW datestyle")
        assert direct.execute("select count(*) from reset_copy").fetchone()[0] == 2
    finally:
        pair.close()
        direct.execute("DROP TABLE reset_copy")


@pytest.mark.parametrize("mode", MODES)
def test_many_pipelined_queries_with_resets(pglease, cluster, mode):
    """More Queries with resets in flight than pglease follows at once: the later ones wait for
    replies, and everything is answered in order, as direct."""
    d = pglease(pool_mode=mode)
    batch = []
    for i in range(3 * 4):
        batch += ["SET datestyle = 'SQL, DMY'; RESET datestyle; SHOW datestyle",
                  "SET timezone = 'UTC'", "RESET timezone; SHOW timezone; select %d" % i]
    batch += ["DISCARD ALL", "SHOW timezone"]

    def run(w):
        w.send(b"".join(b"Q" + struct.pack("!I", len(q) + 5) + q.encode() + b"\0" for q in batch))
        return [sorted_reports(normalize(w.collect_until_ready()["msgs"])) for _ in batch]

    pair = Pair(cluster, d.socket_path)
    try:
        assert run(pair.pooled) == run(pair.direct)
        pair.check_reported()
    finally:
        pair.close()


def sorted_reports(msgs):
    """PostgreSQL reports changed settings in its own order; after DISCARD ALL pglease reports
    those it restored after the others. Runs of ParameterStatus are compared as sets."""
    out, run = [], []
    for m in msgs + [None]:
        if m is not None and m[0] == "S":
            run.append(m)
            continue
        out.extend(sorted(run))
        run = []
        if m is not None:
            out.append(m)
    return out


def exchange(w, sql):
    return sorted_reports(normalize(w.query(sql)["msgs"]))


REPORTED = ("DateStyle", "TimeZone", "application_name", "IntervalStyle", "client_encoding",
            "standard_conforming_strings", "default_transaction_read_only")


class Pair:
    """The same client twice: on a direct connection and through pglease, with the same
    startup settings. Each statement runs on both and must be answered the same."""

    def __init__(self, cluster, via, startup=STARTUP):
        self.direct = connect(direct_path(cluster), **startup)
        self.pooled = connect(via, **startup)

    def run(self, sql):
        want, got = exchange(self.direct, sql), exchange(self.pooled, sql)
        assert got == want, "%r:\n direct:  %r\n pglease: %r" % (sql, want, got)
        return got

    def check_reported(self):
        for name in REPORTED:
            assert self.pooled.params.get(name) == self.direct.params.get(name), name

    def close(self):
        self.direct.close()
        self.pooled.close()


def same_as_direct(cluster, via, steps, startup=STARTUP):
    pair = Pair(cluster, via, startup)
    try:
        for sql in steps:
            pair.run(sql)
        pair.check_reported()
    finally:
        pair.close()


def show_steps(*names):
    return ["SHOW %s" % n for n in names]


ALL_SHOWN = show_steps("datestyle", "timezone", "application_name", "work_mem", "extra_float_digits")


@pytest.mark.parametrize("mode", MODES)
def test_reset_in_separate_statements(pglease, cluster, mode):
    d = pglease(pool_mode=mode)
    steps = ["SET datestyle = 'SQL, DMY'", "RESET datestyle", "SHOW datestyle",
             "SET TimeZone = 'UTC'", "SET application_name = 'changed'", "SET work_mem = '9MB'",
             "RESET timezone", "RESET application_name", "RESET work_mem"] + ALL_SHOWN + [
             "SET datestyle = 'German'", "SET datestyle TO DEFAULT", "SHOW datestyle",
             "SET TIME ZONE 'UTC'", "SET TIME ZONE LOCAL", "SHOW timezone",
             "SET timezone = 'UTC'", "RESET TIME ZONE", "SHOW timezone",
             # A RESET of what is already the startup value changes nothing, and reports nothing.
             "RESET datestyle", "SHOW datestyle"]
    same_as_direct(cluster, d.socket_path, steps)


@pytest.mark.parametrize("mode", MODES)
def test_reset_inside_one_query_string(pglease, cluster, mode):
    d = pglease(pool_mode=mode)
    steps = ["SET datestyle = 'SQL, DMY'; RESET datestyle; SHOW datestyle",
             "SET datestyle = 'SQL, DMY'; RESET datestyle; SET datestyle = 'German'; SHOW datestyle",
             "RESET datestyle; SELECT 1 AS one; /* RESET work_mem */ SHOW datestyle; SHOW work_mem",
             "SET work_mem = '1MB'; RESET work_mem; SHOW work_mem;",
             "SET datestyle = 'SQL, DMY'",
             # An error before the RESET: the rest of the string never runs, as direct.
             "select 1/0; RESET datestyle",
             "SHOW datestyle",
             "SET datestyle = 'SQL, DMY'; reset\n  DateStyle ; select 'RESET datestyle' as text",
             "SHOW datestyle",
             "SET datestyle = 'SQL, DMY'; RESET ALL; SHOW datestyle; SHOW timezone; SHOW work_mem",
             "SET application_name = 'x'; RESET \"application_name\"; SHOW application_name",
             "SET LOCAL datestyle = 'German'; SET LOCAL datestyle TO DEFAULT; SHOW datestyle",
             "BEGIN; SET datestyle = 'German'; SET LOCAL datestyle TO DEFAULT; SHOW datestyle; COMMIT; "
             "SHOW datestyle",
             # The restore is not run when the RESET itself fails.
             "RESET no_such_setting; SHOW datestyle",
             "RESET ALL; DISCARD ALL",
             ] + ALL_SHOWN
    same_as_direct(cluster, d.socket_path, steps)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("statement", ["RESET ALL", "DISCARD ALL", "discard all;", "RESET ALL;"])
def test_reset_all_and_discard_all(pglease, cluster, mode, statement):
    d = pglease(pool_mode=mode)
    steps = ["SET datestyle = 'SQL, DMY'", "SET TimeZone = 'UTC'", "SET application_name = 'changed'",
             "SET IntervalStyle = 'iso_8601'", statement] + ALL_SHOWN + ["SHOW intervalstyle",
             # Unchanged settings: nothing to report.
             statement] + ALL_SHOWN
    same_as_direct(cluster, d.socket_path, steps)


@pytest.mark.parametrize("mode", MODES)
def test_reset_rolled_back_and_in_failed_transactions(pglease, cluster, mode):
    d = pglease(pool_mode=mode)
    steps = ["SET datestyle = 'SQL, DMY'",
             "BEGIN", "RESET datestyle", "SHOW datestyle", "ROLLBACK", "SHOW datestyle",
             "BEGIN; RESET ALL; SHOW datestyle", "ROLLBACK", "SHOW datestyle",
             "BEGIN", "SAVEPOINT a", "RESET datestyle", "ROLLBACK TO a", "SHOW datestyle", "RESET datestyle",
             "COMMIT", "SHOW datestyle",
             "SET datestyle = 'SQL, DMY'",
             # DISCARD ALL refuses to run in a transaction block: nothing is reset.
             "BEGIN", "DISCARD ALL", "ROLLBACK", "SHOW datestyle",
             "BEGIN", "select 1/0", "RESET datestyle", "DISCARD ALL", "ROLLBACK", "SHOW datestyle",
             "SET datestyle = 'SQL, DMY'; DISCARD ALL", "SHOW datestyle",
             "BEGIN", "RESET datestyle", "COMMIT", "SHOW datestyle"]
    same_as_direct(cluster, d.socket_path, steps)


@pytest.mark.parametrize("mode", MODES)
def test_pipelined_queries_around_a_discard_all(pglease, cluster, mode):
    """Queries sent before DISCARD ALL's reply came: the replies still come in order, and those
    after it see the restored settings."""
    d = pglease(pool_mode=mode)
    batch = ["SET datestyle = 'SQL, DMY'", "DISCARD ALL", "SHOW datestyle", "RESET ALL", "SHOW timezone",
             "SET timezone = 'UTC'; RESET timezone; SHOW timezone"]

    def run(w):
        for sql in batch:
            w.send(b"Q" + struct.pack("!I", len(sql) + 5) + sql.encode() + b"\0")
        return [sorted_reports(normalize(w.collect_until_ready()["msgs"])) for _ in batch]

    direct = connect(direct_path(cluster), **STARTUP)
    via = connect(d.socket_path, **STARTUP)
    try:
        assert run(via) == run(direct)
        assert via.params["DateStyle"] == direct.params["DateStyle"] == "Postgres, MDY"
    finally:
        direct.close()
        via.close()


PSQL_SCRIPT = """
SET datestyle = 'SQL, DMY';
SET timezone = 'UTC';
SET application_name = 'changed';
RESET datestyle;
RESET timezone;
RESET application_name;
SHOW datestyle;
SHOW timezone;
SHOW application_name;
SHOW work_mem;
SELECT '2001-02-03 04:05:06+00'::timestamptz;
SET datestyle = 'SQL, DMY' \\; RESET datestyle \\; SHOW datestyle;
SET datestyle = 'SQL, DMY' \\; RESET ALL \\; SHOW datestyle;
DISCARD ALL;
SHOW timezone;
SHOW datestyle;
"""


@pytest.mark.parametrize("mode", MODES)
def test_psql_with_pgdatestyle_pgtz_and_pgoptions(pglease, cluster, mode):
    """libpq sends PGDATESTYLE and PGTZ as startup settings, PGOPTIONS as options, and psql
    its application_name: RESET returns to each, through pglease as direct."""
    d = pglease(pool_mode=mode)
    env = {"PGDATESTYLE": "Postgres, MDY", "PGTZ": "Asia/Tokyo", "PGOPTIONS": "-c work_mem=6MB"}

    got = d.psql(input=PSQL_SCRIPT, env=env)
    want = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-h", cluster.dir, "-p", str(cluster.port),
                           "-U", "postgres", "app"], input=PSQL_SCRIPT, capture_output=True, text=True,
                          timeout=30, cwd="/tmp", env=clean_env(**env))
    assert got.returncode == 0 and want.returncode == 0, (got.stderr, want.stderr)
    assert got.stdout == want.stdout
    want = want.stdout
    assert "Postgres, MDY\nAsia/Tokyo\npsql\n6MB\n" in want


@pytest.mark.parametrize("mode", MODES)
def test_psycopg_parameter_status_after_reset(pglease, cluster, mode):
    """psycopg's view of the reported settings (conn.info.parameter_status) after RESET, with
    settings given as options and as startup parameters, as direct."""
    d = pglease(pool_mode=mode)
    kw = dict(options="-c timezone=Asia/Tokyo -c DateStyle=Postgres,YMD", application_name="psy_app")
    with cluster.connect(**kw) as want, d.connect(**kw) as got:
        for conn in (want, got):
            conn.execute("SET timezone = 'UTC'")
            conn.execute("SET datestyle = 'SQL, DMY'")
            conn.execute("SET application_name = 'x'")
            assert conn.info.parameter_status("TimeZone") == "UTC"
        for sql in ("RESET timezone", "RESET ALL", "DISCARD ALL"):
            for conn in (want, got):
                conn.execute("SET timezone = 'UTC'; SET datestyle = 'ISO'; SET application_name = 'y'")
                conn.execute(sql)
            for name in ("TimeZone", "DateStyle", "application_name"):
                assert got.info.parameter_status(name) == want.info.parameter_status(name), (sql, name)
            assert got.execute("SHOW timezone").fetchone() == want.execute("SHOW timezone").fetchone()
        assert got.info.parameter_status("TimeZone") == "Asia/Tokyo"
        assert got.info.parameter_status("application_name") == "psy_app"


def pid_of(w):
    return int(w.scalar("select pg_backend_pid()"))


def test_transaction_mode_reset_on_another_backend_and_others_unaffected(pglease, cluster):
    """Two backends, three clients: A's RESET runs on a backend other than the one its SET ran
    on, lands on A's startup values there, with the replies a direct connection gives; the
    clients without startup settings sharing those backends see the server's defaults."""
    d = pglease(pool_mode="transaction", default_pool_size=2)
    names = ("datestyle", "timezone", "work_mem", "application_name")
    ref = connect(direct_path(cluster))
    defaults = [ref.scalar("SHOW %s" % n) for n in names]
    ref.close()
    a = Pair(cluster, d.socket_path)
    holder = connect(d.socket_path)
    b = connect(d.socket_path)
    try:
        first = pid_of(a.pooled)
        a.run("SET datestyle = 'SQL, DMY'")
        # The holder takes A's backend (the last one freed) in a transaction: A must move.
        exchange(holder, "BEGIN")
        assert pid_of(holder) == first
        assert [holder.scalar("SHOW %s" % n) for n in names] == defaults
        second = pid_of(a.pooled)
        assert second != first
        for sql in ("SHOW datestyle", "RESET datestyle", "SHOW datestyle",
                    "SET timezone = 'UTC'; RESET ALL; SHOW timezone; SHOW work_mem",
                    "SET datestyle = 'German'", "DISCARD ALL", "SHOW datestyle", "SHOW application_name"):
            a.run(sql)
        assert pid_of(a.pooled) == second
        # B shares the second backend with A (the holder keeps the first).
        assert pid_of(b) == second
        assert [b.scalar("SHOW %s" % n) for n in names] == defaults
        exchange(holder, "COMMIT")
        # Both backends have served A now; neither shows B or the holder A's settings.
        for _ in range(3):
            a.run("SET datestyle = 'SQL, DMY'; RESET datestyle")
            assert [b.scalar("SHOW %s" % n) for n in names] == defaults
            assert [holder.scalar("SHOW %s" % n) for n in names] == defaults
            a.run("SHOW datestyle")
        a.check_reported()
    finally:
        a.close()
        holder.close()
        b.close()
