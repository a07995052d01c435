"""Session state in transaction mode: reported settings follow their client from backend to
backend; state that cannot follow (LISTEN, SET of unreported settings, SQL PREPARE, temporary
tables, session advisory locks, WITH HOLD cursors) pins the client to its backend until it
leaves (or releases it: test_unpin.py), and the backend is reset before anyone else gets it.
LISTEN/NOTIFY in both modes."""
import re

import psycopg
import pytest

from harness import BackendHolder, backend_pid, move_client, wait_for, wire_pid
from pgwire import Wire, parse_fields

# One backend shared by everyone; a client that cannot get it gives up quickly.
ONE_BACKEND = dict(default_pool_size=1, pool_mode="transaction", query_wait_timeout=1)


def raw_client(d, **params):
    w = Wire(d.socket_path)
    w.startup(dict({"user": "postgres", "database": "app"}, **params))
    return w


def scalar(conn, sql):
    return conn.execute(sql).fetchone()[0]


def pinned_lines(d):
    return [l for l in d.log_text().splitlines() if " pinned to server " in l]


# (what client A does, a query whose answer shows the state, answer with it, answer without it)
STATES = {
    "set": (["SET work_mem = '7MB'"], "show work_mem", "7MB", None),
    "listen": (["LISTEN pinned_chan"], "select count(*) from pg_listening_channels()", 1, 0),
    "temp_table": (["CREATE TEMP TABLE a_temp (x int)"], "select to_regclass('pg_temp.a_temp') is not null",
                   True, False),
    "advisory_lock": (["SELECT pg_advisory_lock(4242)"],
                      "select count(*) from pg_locks where locktype = 'advisory' and objid = 4242 and granted",
                      1, 0),
    "prepare": (["PREPARE a_stmt AS SELECT 1"], "select count(*) from pg_prepared_statements", 1, 0),
    "with_hold_cursor": (["BEGIN", "DECLARE a_cur CURSOR WITH HOLD FOR SELECT 1", "COMMIT"],
                         "select count(*) from pg_cursors", 1, 0),
}


@pytest.mark.timeout(40)
@pytest.mark.parametrize("kind", sorted(STATES))
def test_client_b_never_sees_client_a_session_state(pglease, direct, kind):
    steps, probe, with_state, without = STATES[kind]
    if without is None:
        without = scalar(direct, probe)
    d = pglease(**ONE_BACKEND)
    a = d.connect()
    pid = scalar(a, "select pg_backend_pid()")
    for sql in steps:
        a.execute(sql)
    wait_for(lambda: pinned_lines(d), what="the pin logged")
    line = pinned_lines(d)[0]
    assert re.search(r"client \d+ \(app/postgres\) pinned to server \d+ \(backend pid %d\) by: " % pid, line), line

    # A keeps its backend and its state; B cannot have that backend while A is connected.
    b = d.connect()
    with pytest.raises(psycopg.OperationalError, match="query_wait_timeout"):
        b.execute(probe)
    assert scalar(a, probe) == with_state
    assert scalar(a, "select pg_backend_pid()") == pid

    # A leaves: the same backend, reset, serves the next client.
    a.close()
    c = d.connect()
    try:
        assert scalar(c, "select pg_backend_pid()") == pid
        assert scalar(c, probe) == without
        assert re.search(r"client \d+ \(app/postgres\) leaves server \d+ \(backend pid %d\), pinned: resetting" % pid,
                         d.log_text())
    finally:
        c.close()
    # The reset released the lock in PostgreSQL too, and no listener is left.
    assert scalar(direct, "select count(*) from pg_locks where locktype = 'advisory' and objid = 4242") == 0


def test_statements_that_only_look_like_session_state_do_not_pin(pglease):
    d = pglease(**ONE_BACKEND)
    a = d.connect()
    b = d.connect()
    try:
        for sql in ("select 'LISTEN x; SET work_mem = 1' as s",
                    "/* LISTEN x */ select 1 -- PREPARE p AS SELECT 1",
                    "select $$ CREATE TEMP TABLE t (a int) $$",
                    "select pg_advisory_xact_lock(7)",
                    "SET LOCAL work_mem = '3MB'",
                    "SET application_name = 'not_a_pin'",
                    "select set_config('work_mem', '2MB', true)"):
            a.execute(sql)
            # B gets the one backend at once: A is not holding it.
            assert scalar(b, "select 1") == 1
        assert pinned_lines(d) == []
    finally:
        a.close()
        b.close()


def test_reported_settings_follow_their_client_to_another_backend(pglease, direct):
    d = pglease(default_pool_size=2, pool_mode="transaction")
    a = d.connect()
    b = d.connect()
    holder = BackendHolder(d)
    try:
        default_tz = scalar(direct, "show timezone")
        a.execute("SET application_name = 'alpha_app'")
        a.execute("SET TimeZone = 'Asia/Tokyo'")
        a.execute("SET DateStyle = 'German'")
        a.execute("SET IntervalStyle = 'sql_standard'")
        assert a.info.parameter_status("application_name") == "alpha_app"
        # The holder takes A's backend in a transaction: A must move.
        first, second = move_client(holder, lambda: backend_pid(a))
        assert scalar(holder.conn, "show application_name") == "", "the holder on A's old backend"
        assert scalar(holder.conn, "show timezone") == default_tz
        assert scalar(a, "show application_name") == "alpha_app"
        assert scalar(a, "show timezone") == "Asia/Tokyo"
        assert scalar(a, "show datestyle") == "German, DMY"
        assert scalar(a, "show intervalstyle") == "sql_standard"
        assert scalar(a, "select date '2024-03-01'::text") == "01.03.2024"
        # B, on A's new backend, sees none of it; nor on the old one, once the holder has
        # taken the new one and let the old one go.
        assert backend_pid(b) == second
        assert scalar(b, "show application_name") == ""
        assert scalar(b, "show timezone") == default_tz
        holder.take(second)
        assert backend_pid(b) == first
        for _ in range(4):
            assert scalar(b, "show application_name") == ""
            assert scalar(b, "show datestyle") == "ISO, MDY"
            assert scalar(a, "show datestyle") == "German, DMY"
        assert backend_pid(a) == first
        assert pinned_lines(d) == []
        # RESET goes back to the backend default, and that follows A to another backend too.
        a.execute("RESET application_name")
        move_client(holder, lambda: backend_pid(a))
        assert scalar(a, "show application_name") == ""
        assert scalar(a, "show timezone") == "Asia/Tokyo"
    finally:
        holder.close()
        a.close()
        b.close()


def test_client_encoding_set_with_set_names_follows_the_client(pglease):
    d = pglease(**ONE_BACKEND)
    a = raw_client(d)
    b = raw_client(d)
    try:
        assert a.query("SET NAMES 'LATIN1'")["error"] is None
        assert a.params["client_encoding"] == "LATIN1"
        # One backend: B really runs on A's backend between A's transactions.
        assert wire_pid(a) == wire_pid(b)
        for _ in range(2):
            r = b.query("select chr(233), current_setting('client_encoding')")
            assert r["rows"][0] == [b"\xc3\xa9", b"UTF8"]
            r = a.query("select chr(233), current_setting('client_encoding')")
            assert r["rows"][0] == [b"\xe9", b"LATIN1"]
        assert pinned_lines(d) == []
    finally:
        a.terminate()
        b.terminate()


def test_session_state_ignore_does_not_pin(pglease):
    d = pglease(session_state="ignore", **ONE_BACKEND)
    a = d.connect()
    b = d.connect()
    try:
        a.execute("SET work_mem = '7MB'")
        a.execute("LISTEN ignored_chan")
        a.execute("UNLISTEN *")
        assert scalar(b, "select pg_backend_pid()") == scalar(a, "select pg_backend_pid()")
        assert pinned_lines(d) == []
        # Reported settings are still tracked.
        a.execute("SET application_name = 'still_tracked'")
        assert scalar(b, "show application_name") == ""
        assert scalar(a, "show application_name") == "still_tracked"
    finally:
        a.close()
        b.close()


def read_notification(w, timeout=10.0):
    """The next NotificationResponse: (channel, payload); ParameterStatus/Notice may come first."""
    while True:
        mtype, body = w.read_message(timeout)
        if mtype == b"A":
            channel, payload = body[4:].split(b"\0")[:2]
            return channel.decode(), payload.decode()
        assert mtype in (b"S", b"N"), (mtype, body)


@pytest.mark.parametrize("mode", ["session", "transaction"])
def test_notify_reaches_an_idle_listener(pglease, direct, mode):
    d = pglease(default_pool_size=2, pool_mode=mode)
    w = raw_client(d)
    other = d.connect()
    try:
        assert w.query("LISTEN chan_%s" % mode)["error"] is None
        for i in range(3):
            # Others keep working through the pool while the listener sits idle.
            assert scalar(other, "select %d" % i) == i
            direct.execute("NOTIFY chan_%s, 'payload %d'" % (mode, i))
            assert read_notification(w) == ("chan_%s" % mode, "payload %d" % i)
        # A notification sent from another pooled client arrives too.
        other.execute("NOTIFY chan_%s, 'from the pool'" % mode)
        assert read_notification(w) == ("chan_%s" % mode, "from the pool")
        # Notifications that queue up while the listener is busy are delivered after its query.
        r = w.query("select pg_notify('chan_%s', 'own'), pg_sleep(0.2)" % mode)
        assert r["error"] is None
        assert [m for m in r["msgs"] if m[0] == b"A"] or read_notification(w) == ("chan_%s" % mode, "own")
        if mode == "transaction":
            assert len(pinned_lines(d)) == 1
    finally:
        w.terminate()
        other.close()


def test_pinned_listener_receives_notify_sent_while_it_waits_for_nothing(pglease, direct):
    """Transaction mode, one backend: the listener is pinned, so its backend is never idle in
    the pool where a notification would be taken for garbage."""
    d = pglease(default_pool_size=1, pool_mode="transaction")
    w = raw_client(d)
    try:
        assert w.query("LISTEN lonely")["error"] is None
        for i in range(5):
            direct.execute("NOTIFY lonely, '%d'" % i)
        got = [read_notification(w) for _ in range(5)]
        assert got == [("lonely", str(i)) for i in range(5)]
        assert w.query("select 1")["rows"] == [[b"1"]]
    finally:
        w.terminate()


def test_extended_protocol_statement_pins(pglease):
    d = pglease(**ONE_BACKEND)
    a = d.connect()
    b = d.connect()
    try:
        # psycopg sends parameterised queries with Parse/Bind/Execute.
        a.execute("SELECT pg_advisory_lock(%s)", (99,))
        wait_for(lambda: pinned_lines(d), what="the pin logged")
        assert "session advisory lock" in pinned_lines(d)[0]
        with pytest.raises(psycopg.OperationalError, match="query_wait_timeout"):
            b.execute("select 1")
    finally:
        a.close()
        b.close()


def test_pinned_line_shows_the_statement_from_its_first_token(pglease):
    d = pglease(**ONE_BACKEND)
    a = d.connect()
    try:
        a.execute("/* hello */ select 1; LISTEN   \"Mixed Case\"  -- trailing")
        wait_for(lambda: pinned_lines(d), what="the pin logged")
        assert pinned_lines(d)[0].endswith('by: LISTEN "Mixed Case" -- trailing (LISTEN)'), pinned_lines(d)[0]
    finally:
        a.close()


def test_reset_of_a_startup_setting_is_replayed_on_the_next_transaction(pglease, direct):
    """After the client's own RESET the backend's value is unknown to pglease: the next
    transaction starts from RESET ALL and the client's settings, so it sees its startup value
    again (as RESET does on a direct connection), and B never sees it."""
    default_wm = scalar(direct, "show work_mem")
    d = pglease(default_pool_size=1, pool_mode="transaction")
    a = d.connect(options="-c work_mem=5MB")
    b = d.connect()
    try:
        assert scalar(a, "show work_mem") == "5MB"
        a.execute("RESET work_mem")
        assert scalar(a, "show work_mem") == "5MB"
        a.execute("begin")
        a.execute("RESET ALL")
        a.execute("rollback")
        assert scalar(b, "show work_mem") == default_wm
        assert scalar(a, "show work_mem") == "5MB"
        a.execute("DISCARD ALL")
        assert scalar(a, "show work_mem") == "5MB"
        assert scalar(b, "show work_mem") == default_wm
        assert pinned_lines(d) == []
    finally:
        a.close()
        b.close()


def test_statements_longer_than_a_buffer_are_followed_across_reads(pglease):
    """A Query of 200 kB reaches pglease in many reads: the watcher keeps its state between
    them, a LISTEN after it still pins, and keywords inside its string do not."""
    d = pglease(**ONE_BACKEND)
    a = d.connect()
    b = d.connect()
    try:
        filler = "LISTEN nope; " * 16000
        a.execute("select length('%s') /* LISTEN no */" % filler)
        assert scalar(b, "select 1") == 1
        assert pinned_lines(d) == []
        a.execute("select length('%s'); LISTEN big_chan" % filler)
        wait_for(lambda: pinned_lines(d), what="the pin logged")
        assert "LISTEN" in pinned_lines(d)[0] and pinned_lines(d)[0].endswith("(LISTEN)")
        with pytest.raises(psycopg.OperationalError, match="query_wait_timeout"):
            b.execute("select 1")
    finally:
        a.close()
        b.close()


@pytest.mark.timeout(40)
@pytest.mark.parametrize("filler", [0, 200000], ids=["small", "parse-longer-than-a-buffer"])
def test_named_prepared_statement_that_pins(pglease, filler):
    """Named statements go through the prepared-statement layer (rewritten, accumulated when
    large): the watcher still sees their text, so the client is pinned before its lease ends."""
    d = pglease(**ONE_BACKEND)
    a = d.connect()
    b = d.connect()
    try:
        pad = "/* %s */ " % ("x" * filler) if filler else ""
        a.execute(pad + "SELECT pg_advisory_lock(%s)", (77,), prepare=True)
        wait_for(lambda: pinned_lines(d), what="the pin logged")
        assert "session advisory lock" in pinned_lines(d)[0]
        with pytest.raises(psycopg.OperationalError, match="query_wait_timeout"):
            b.execute("select 1")
    finally:
        a.close()
        b.close()
    c = d.connect()
    try:
        assert scalar(c, "select count(*) from pg_locks where locktype = 'advisory' and objid = 77") == 0
    finally:
        c.close()
