"""The admin console: the special database "pglease", over psql and psycopg (simple and extended protocol)."""
import subprocess
import threading
import time

import psycopg
import pytest

from harness import app_pids, wait_for


def admin(d, **kw):
    """A psycopg connection to the console; autocommit (the console has no transactions)."""
    return psycopg.connect(d.dsn("pglease", **kw), autocommit=True)


def show(conn, what, prepare=False):
    cur = conn.execute("SHOW " + what, prepare=prepare)
    cols = [c.name for c in cur.description]
    return [dict(zip(cols, r)) for r in cur.fetchall()]


def pool_row(conn, db="app", prepare=False):
    rows = [r for r in show(conn, "POOLS", prepare) if r["database"] == db]
    assert len(rows) == 1, rows
    return rows[0]


def test_psql_show_commands(pglease):
    d = pglease()
    for what in ["POOLS", "CLIENTS", "SERVERS", "STATS", "DATABASES", "CONFIG", "VERSION"]:
        r = d.psql("-c", "show %s;" % what.lower(), dbname="pglease")
        assert r.returncode == 0, (what, r.stderr)
    r = d.psql("-c", "SHOW VERSION", dbname="pglease")
    assert r.stdout.strip().startswith("pglease ")


def test_show_pools_columns_simple_and_extended(pglease):
    d = pglease()
    with d.connect() as c:
        c.execute("select 1")
    with admin(d) as a:
        simple = pool_row(a)
        extended = pool_row(a, prepare=True)
        # binary=False with prepare_threshold=0 is the path JDBC-like drivers take.
    with psycopg.connect(d.dsn("pglease"), autocommit=True, prepare_threshold=0) as a2:
        again = pool_row(a2)
    for row in (simple, extended, again):
        for col in ["cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used", "sv_login", "maxwait",
                    "maxwait_us", "pool_mode", "oldest_lease"]:
            assert col in row
        assert row["pool_mode"] == "transaction"
        assert row["sv_idle"] + row["sv_used"] >= 1
        assert isinstance(row["cl_waiting"], int)


def test_show_config_lists_keys_values_defaults(pglease):
    d = pglease(lease_warn_after=7)
    with admin(d) as a:
        rows = {r["key"]: r for r in show(a, "CONFIG")}
    assert rows["lease_warn_after"]["value"] == "7"
    assert rows["lease_warn_after"]["default"] == "0"
    assert rows["pool_mode"]["value"] == "transaction"
    assert rows["listen_port"]["value"] == str(d.port)
    assert "metrics_listen" in rows and "admin_users" in rows and "stats_users" in rows


def test_unknown_command_gets_syntax_error_with_hint(pglease):
    d = pglease()
    with admin(d) as a:
        with pytest.raises(psycopg.errors.SyntaxError) as e:
            a.execute("SELECT 1")
        assert "unknown admin console command" in str(e.value)
        assert "SHOW POOLS" in e.value.diag.message_hint
        with pytest.raises(psycopg.errors.SyntaxError):
            a.execute("SHOW NONSENSE", prepare=True)
        # the connection is still usable after the error (extended: skipped to Sync)
        assert show(a, "VERSION", prepare=True)[0]["version"].startswith("pglease")
    r = d.psql("-c", "show frobs", dbname="pglease")
    assert r.returncode != 0 and "unknown SHOW command" in r.stderr and "HINT" in r.stderr


def test_non_admin_refused_and_stats_user_may_only_show(pglease):
    d = pglease(stats_users="watcher", admin_users="boss")
    # Another OS user than pglease's own, so the same-uid rule does not apply.
    r = d.psql("-c", "show pools", dbname="pglease", user="nobody_here", os_user="postgres")
    assert r.returncode != 0
    assert "not allowed to use the pglease admin console" in r.stderr
    r = d.psql("-c", "show pools", dbname="pglease", user="watcher", os_user="postgres")
    assert r.returncode == 0, r.stderr
    r = d.psql("-c", "pause", dbname="pglease", user="watcher", os_user="postgres")
    assert r.returncode != 0 and "permission denied" in r.stderr
    r = d.psql("-c", "resume", dbname="pglease", user="boss", os_user="postgres")
    assert r.returncode == 0, r.stderr


# Run as another OS user. libpq hides a login failure's SQLSTATE, so the startup is spoken raw.
SQLSTATE_PROBE = r"""
import socket, struct, sys, psycopg
sock_path, user, command, dsn = sys.argv[1:5]
s = socket.socket(socket.AF_UNIX)
s.connect(sock_path)
body = struct.pack("!I", 3 << 16) + b"user\0" + user.encode() + b"\0database\0pglease\0\0"
s.sendall(struct.pack("!I", len(body) + 4) + body)
head = s.recv(5)
if head[:1] == b"E":
    rest = s.recv(4096)
    fields = dict((f[:1], f[1:]) for f in rest.split(b"\0") if f)
    print(fields[b"C"].decode())
    sys.exit()
s.close()
try:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(command, prepare=True)
    print("ok")
except psycopg.Error as e:
    print(e.sqlstate)
"""


def sqlstate_as_other_uid(d, user, command):
    """The SQLSTATE psycopg sees when another OS user (not pglease's uid) runs command on the console."""
    r = subprocess.run(["runuser", "-u", "postgres", "--", "/usr/bin/python3", "-c", SQLSTATE_PROBE,
                        d.socket_path, user, command, d.dsn("pglease", user=user)], capture_output=True, text=True, timeout=30,
                       cwd="/tmp")
    return r.stdout.strip() or r.stderr


def test_permission_sqlstates(pglease):
    d = pglease(stats_users="watcher")
    assert sqlstate_as_other_uid(d, "watcher", "SHOW STATS") == "ok"
    assert sqlstate_as_other_uid(d, "watcher", "PAUSE") == "42501"
    assert sqlstate_as_other_uid(d, "watcher", "SHUTDOWN") == "42501"
    assert sqlstate_as_other_uid(d, "stranger", "SHOW POOLS") == "28000"
    assert d.alive()


@pytest.mark.timeout(60)
def test_pause_waits_for_leases_then_resume_releases_waiters(pglease):
    d = pglease()
    holder = d.connect(autocommit=False)
    holder.execute("select 1")            # a transaction is open: the lease is held
    with admin(d) as a:
        done = threading.Event()
        err = []

        def pause():
            try:
                with admin(d) as a2:
                    a2.execute("PAUSE app")
            except Exception as e:  # noqa: BLE001
                err.append(e)
            done.set()

        t = threading.Thread(target=pause)
        t.start()
        time.sleep(0.7)
        assert not done.is_set(), "PAUSE returned while a lease was still held"
        holder.commit()
        assert done.wait(10), "PAUSE did not return after the lease ended"
        t.join()
        assert not err, err
        assert pool_row(a)["paused"] == 1

        # a new query waits while paused
        got = []
        waiter = threading.Thread(target=lambda: got.append(d.psql("-c", "select 42").stdout.strip()))
        waiter.start()
        wait_for(lambda: pool_row(a)["cl_waiting"] == 1, what="a waiting client")
        time.sleep(0.3)
        assert not got
        a.execute("RESUME")
        waiter.join(10)
        assert got == ["42"]
    holder.close()


def db_row(conn, name):
    rows = [r for r in show(conn, "DATABASES") if r["name"] == name]
    assert len(rows) == 1, rows
    return rows[0]


def pool_rows(conn, db):
    return [r for r in show(conn, "POOLS") if r["database"] == db]


def query_in_thread(d, dbname, sql):
    got = []
    t = threading.Thread(target=lambda: got.append(d.psql("-c", sql, dbname=dbname).stdout.strip()))
    t.start()
    return t, got


# The paused databases are remembered by name: a pool made later for one starts paused.
@pytest.mark.timeout(60)
def test_pause_of_a_database_without_a_pool_holds_its_first_pool(pglease, cluster):
    d = pglease(databases={"app": cluster.conninfo("app"), "later": cluster.conninfo("app")})
    with admin(d) as a:
        assert pool_rows(a, "later") == []               # the premise: no pool yet
        a.execute("PAUSE later")
        assert db_row(a, "later")["paused"] == 1 and db_row(a, "app")["paused"] == 0
        t, got = query_in_thread(d, "later", "select 42")
        wait_for(lambda: [r["cl_waiting"] for r in pool_rows(a, "later")] == [1], what="a waiting client of later")
        assert pool_rows(a, "later")[0]["paused"] == 1
        assert pool_rows(a, "app")[0]["paused"] == 0
        assert d.psql("-c", "select 1").stdout.strip() == "1"   # other databases are served
        time.sleep(0.3)
        assert not got
        a.execute("RESUME later")
        t.join(10)
        assert got == ["42"]
        assert pool_rows(a, "later")[0]["paused"] == 0 and db_row(a, "later")["paused"] == 0


@pytest.mark.timeout(60)
def test_pause_outlives_a_pool_removed_when_unused(pglease):
    d = pglease(server_idle_timeout=0.5)
    with admin(d) as a:
        assert pool_rows(a, "app")                       # made by the start-up check
        a.execute("PAUSE app")
        wait_for(lambda: pool_rows(a, "app") == [], timeout=15, what="the unused pool removed")
        t, got = query_in_thread(d, "app", "select 43")
        wait_for(lambda: [r["cl_waiting"] for r in pool_rows(a, "app")] == [1], what="a waiting client")
        assert pool_rows(a, "app")[0]["paused"] == 1
        a.execute("RESUME app")
        t.join(10)
        assert got == ["43"]


def test_resume_of_one_database_while_all_are_paused_is_refused(pglease, cluster):
    d = pglease(databases={"app": cluster.conninfo("app"), "other": cluster.conninfo("app")})
    with admin(d) as a:
        a.execute("PAUSE")
        assert db_row(a, "app")["paused"] == 1 and db_row(a, "other")["paused"] == 1
        assert pool_rows(a, "app")[0]["paused"] == 1
        with pytest.raises(psycopg.errors.ObjectNotInPrerequisiteState):
            a.execute("RESUME app")
        assert db_row(a, "app")["paused"] == 1
        a.execute("RESUME")
        assert db_row(a, "app")["paused"] == 0 and db_row(a, "other")["paused"] == 0
        assert pool_rows(a, "app")[0]["paused"] == 0
    assert d.psql("-c", "select 2", dbname="other").stdout.strip() == "2"


def test_reconnect_changes_backend_pids(pglease, direct):
    d = pglease(min_pool_size=2, default_pool_size=2)
    with d.connect() as c:
        c.execute("select 1")
    wait_for(lambda: len(app_pids(direct)) == 2, what="2 backends")
    before = app_pids(direct)
    with admin(d) as a:
        a.execute("RECONNECT app")
    wait_for(lambda: len(app_pids(direct)) == 2 and not (app_pids(direct) & before), what="new backends")
    with d.connect() as c:
        pid = c.execute("select pg_backend_pid()").fetchone()[0]
    assert pid not in before


def test_kill_drops_clients_and_backends(pglease, direct):
    d = pglease()
    victim = d.connect(autocommit=False)
    victim.execute("select 1")
    old = app_pids(direct)
    assert old
    with admin(d) as a:
        a.execute("KILL app")
        with pytest.raises(psycopg.OperationalError):
            victim.execute("select 1")
        wait_for(lambda: not (app_pids(direct) & old), what="backends closed")
        assert pool_row(a)["paused"] == 1
        a.execute("RESUME app")
    r = d.psql("-c", "select 7")
    assert r.stdout.strip() == "7", r.stderr
    victim.close()


def test_kill_needs_database_and_unknown_database(pglease):
    d = pglease()
    with admin(d) as a:
        with pytest.raises(psycopg.errors.SyntaxError):
            a.execute("KILL")
        with pytest.raises(psycopg.errors.InvalidCatalogName):
            a.execute("PAUSE nosuchdb")


def test_show_clients_and_servers(pglease):
    d = pglease()
    holder = d.connect(autocommit=False)
    holder.execute("select 1")
    with admin(d, application_name="console") as a:
        clients = show(a, "CLIENTS")
        servers = show(a, "SERVERS", prepare=True)
    leased = [c for c in clients if c["state"] == "active"]
    assert len(leased) == 1 and leased[0]["lease_age"] is not None and leased[0]["backend_pid"]
    assert any(c["database"] == "pglease" and c["application_name"] == "console" for c in clients)
    active = [s for s in servers if s["state"] == "active"]
    assert len(active) == 1 and active[0]["remote_pid"] == leased[0]["backend_pid"]
    holder.close()


def test_reload_and_shutdown_call_the_daemon(pglease):
    d = pglease()
    r = d.psql("-c", "RELOAD", dbname="pglease")
    assert r.returncode == 0, r.stderr
    wait_for(lambda: "reloaded " in d.log_tail(50), what="the reload in the log")
    r = d.psql("-c", "SHUTDOWN", dbname="pglease")
    wait_for(lambda: not d.alive(), what="pglease to exit")
    d.stopped_by_us = True


# ---- the extended protocol, message by message (what JDBC and other drivers send)
import struct  # noqa: E402

import pgwire  # noqa: E402


def describe_msg(kind, name=""):
    return pgwire.message(b"D", kind + name.encode() + b"\0")


def close_msg(kind, name=""):
    return pgwire.message(b"C", kind + name.encode() + b"\0")


def console_wire(d):
    w = pgwire.Wire(d.socket_path)
    w.startup({"user": "postgres", "database": "pglease", "application_name": "wire"})
    return w


def types(msgs):
    return [m[0] for m in msgs]


def test_extended_protocol_message_flow(pglease):
    d = pglease()
    w = console_wire(d)
    assert w.params["client_encoding"] == "UTF8" and w.params["server_version"]
    w.send(pgwire.parse_msg("SHOW VERSION", "s1") + describe_msg(b"S", "s1") + pgwire.bind_msg("p1", "s1") +
           describe_msg(b"P", "p1") + pgwire.execute_msg("p1") + close_msg(b"P", "p1") + close_msg(b"S", "s1") +
           pgwire.sync_msg())
    r = w.collect_until_ready()
    assert r["error"] is None
    assert types(r["msgs"]) == [b"1", b"t", b"T", b"2", b"T", b"D", b"C", b"3", b"3", b"Z"]
    assert r["rows"][0][0].startswith(b"pglease ")
    assert r["msgs"][6][1] == b"SHOW\0"
    # a non-SHOW command describes as NoData
    w.send(pgwire.parse_msg("RECONNECT") + describe_msg(b"S") + pgwire.bind_msg() + pgwire.execute_msg() +
           pgwire.sync_msg())
    r = w.collect_until_ready()
    assert types(r["msgs"]) == [b"1", b"t", b"n", b"2", b"C", b"Z"]
    assert r["msgs"][4][1] == b"RECONNECT\0"
    w.terminate()


def test_extended_protocol_error_skips_to_sync(pglease):
    d = pglease()
    w = console_wire(d)
    w.send(pgwire.parse_msg("SHOW NOTHING") + pgwire.bind_msg() + describe_msg(b"P") + pgwire.execute_msg() +
           pgwire.sync_msg())
    r = w.collect_until_ready()
    assert types(r["msgs"]) == [b"E", b"Z"]
    assert r["error"]["C"] == "42601" and "SHOW POOLS" in r["error"]["H"]
    # an unknown statement or portal, and a format code that does not exist, are errors too
    w.send(pgwire.bind_msg("", "nosuch") + pgwire.sync_msg())
    r = w.collect_until_ready()
    assert r["error"]["C"] == "26000"
    bad_format = pgwire.message(b"B", b"\0\0" + struct.pack("!HHHH", 0, 0, 1, 2))
    w.send(pgwire.parse_msg("SHOW POOLS") + bad_format + pgwire.sync_msg())
    r = w.collect_until_ready()
    assert types(r["msgs"]) == [b"1", b"E", b"Z"] and r["error"]["C"] == "22023"
    # binary results are served
    binary = pgwire.message(b"B", b"\0\0" + struct.pack("!HHHH", 0, 0, 1, 1))
    w.send(pgwire.parse_msg("SHOW POOLS") + binary + describe_msg(b"P") + pgwire.execute_msg() + pgwire.sync_msg())
    r = w.collect_until_ready()
    assert types(r["msgs"])[:3] == [b"1", b"2", b"T"] and types(r["msgs"])[-2:] == [b"C", b"Z"]
    # and the connection goes on
    assert w.scalar("SHOW VERSION").startswith("pglease")
    w.terminate()


def test_empty_query_and_simple_errors_keep_session(pglease):
    d = pglease()
    w = console_wire(d)
    r = w.query("")
    assert types(r["msgs"]) == [b"I", b"Z"]
    r = w.query("FROB")
    assert r["error"]["C"] == "42601" and r["status"] == b"I"
    assert w.scalar("show version;").startswith("pglease")
    w.terminate()


def test_large_show_clients_reply_is_streamed(pglease):
    d = pglease(max_client_conn=400)
    conns = [pgwire.Wire(d.socket_path) for _ in range(300)]
    for c in conns:
        c.startup({"user": "postgres", "database": "app", "application_name": "x" * 60})
    w = console_wire(d)
    r = w.query("SHOW CLIENTS")
    assert r["error"] is None
    assert len(r["rows"]) >= 301
    w.terminate()
    for c in conns:
        c.terminate()


def test_malformed_and_unknown_messages_are_fatal_08P01(pglease):
    d = pglease()
    w = console_wire(d)
    w.send(pgwire.message(b"Q", b"SHOW POOLS"))        # no terminating NUL
    fields = pgwire.read_fatal(w)
    assert fields["S"] == "FATAL" and fields["C"] == "08P01"
    w.close()
    w = console_wire(d)
    w.send(pgwire.message(b"F", b"\0\0\0\0"))
    fields = pgwire.read_fatal(w)
    assert fields["C"] == "08P01" and "invalid frontend message type" in fields["M"]
    w.close()
    assert d.psql("-c", "show version", dbname="pglease").returncode == 0


def test_pinned_client_is_shown(pglease):
    d = pglease()
    pinned = d.connect()
    pinned.execute("LISTEN chan")
    plain = d.connect()
    plain.execute("select 1")
    with admin(d) as a:
        rows = {r["id"]: r for r in show(a, "CLIENTS") if r["database"] == "app"}
        assert sorted(r["pinned"] for r in rows.values()) == [0, 1]
        assert pool_row(a)["cl_pinned"] == 1
    pinned.close()
    with admin(d) as a:
        wait_for(lambda: pool_row(a)["cl_pinned"] == 0, what="the pin to end with its client")
    plain.close()


def test_binary_results_and_driver_sets(pglease):
    """Drivers ask for binary results (pgjdbc does for int8/float8 once a statement is named)
    and send session SETs as they connect; pglease's own settings are not changeable here."""
    d = pglease()
    with d.connect() as c:
        for _ in range(3):
            c.execute("select 1")
    with admin(d) as a:
        text = {r["database"]: r for r in show(a, "STATS")}
        cur = a.execute("SHOW STATS", binary=True)
        cols = [col.name for col in cur.description]
        binary = {r[0]: dict(zip(cols, r)) for r in cur.fetchall()}
        assert binary["app"]["total_xact_count"] == text["app"]["total_xact_count"] >= 3
        assert isinstance(binary["app"]["avg_xact_time"], int)
        assert show(a, "POOLS")[0]["database"]
        a.execute("SET extra_float_digits = 3")
        a.execute("set application_name = 'PostgreSQL JDBC Driver'")
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="RELOAD"):
            a.execute("SET default_pool_size = 50")
        pools = [r for r in a.execute("SHOW POOLS", binary=True).fetchall()]
        assert pools and isinstance(pools[0][2], int)
