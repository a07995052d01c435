"""Client startup parameters are applied on whichever backend the client leases: with one
shared backend, interleaved clients each see their own settings; a client moved to another
backend takes them along. At login the client sees what a direct connection with the same
startup packet sees: the settings in PostgreSQL's order, spelling and refusals."""
import os

import psycopg
import pytest

import pgwire
from harness import BackendHolder, backend_pid, move_client
from pgwire import Wire

ONE_BACKEND = dict(default_pool_size=1, pool_mode="transaction")


def raw_client(d, **params):
    w = Wire(d.socket_path)
    w.startup(dict({"user": "postgres", "database": "app"}, **params))
    return w


def test_application_name_and_options_follow_each_client_on_shared_backend(pglease):
    d = pglease(**ONE_BACKEND)
    a = d.connect(application_name="alpha", options="-c work_mem=5MB -c search_path=sp_alpha,public")
    b = d.connect(application_name="beta", options="-c work_mem=7MB -c search_path=sp_beta,public")
    try:
        pids = set()
        for _ in range(3):
            for c, name, wm, sp in ((a, "alpha", "5MB", "sp_alpha,public"), (b, "beta", "7MB", "sp_beta,public")):
                pids.add(c.execute("select pg_backend_pid()").fetchone()[0])
                assert c.execute("show application_name").fetchone()[0] == name
                assert c.execute("show work_mem").fetchone()[0] == wm
                # set via options, PostgreSQL keeps the text as given (no space added)
                assert c.execute("show search_path").fetchone()[0].replace(" ", "") == sp
        assert len(pids) == 1, "clients did not share the single backend: %r" % pids
    finally:
        a.close()
        b.close()


def test_startup_settings_follow_the_client_to_another_backend(pglease, direct):
    default_wm = direct.execute("show work_mem").fetchone()[0]
    d = pglease(default_pool_size=2, min_pool_size=2, pool_mode="transaction")
    a = d.connect(application_name="mover", options="-c work_mem=5MB -c search_path=sp_mover,public")
    try:
        with BackendHolder(d) as holder:
            seen = set()
            for _ in range(3):
                old, new = move_client(holder, lambda: backend_pid(a))
                seen.add(new)
                # The backend A left, now the holder's, is back to the defaults.
                assert holder.conn.execute("show work_mem").fetchone()[0] == default_wm
                assert holder.conn.execute("show application_name").fetchone()[0] == ""
                assert a.execute("show application_name").fetchone()[0] == "mover"
                assert a.execute("show work_mem").fetchone()[0] == "5MB"
                assert a.execute("show search_path").fetchone()[0].replace(" ", "") == "sp_mover,public"
            assert len(seen) == 2, seen
    finally:
        a.close()


def test_settings_apply_inside_explicit_transactions_too(pglease):
    d = pglease(**ONE_BACKEND)
    a = d.connect(options="-c work_mem=5MB")
    b = d.connect(options="-c work_mem=7MB")
    try:
        for _ in range(2):
            for c, wm in ((a, "5MB"), (b, "7MB")):
                c.execute("begin")
                assert c.execute("show work_mem").fetchone()[0] == wm
                assert c.execute("select current_setting('work_mem')").fetchone()[0] == wm
                c.execute("commit")
    finally:
        a.close()
        b.close()


def test_timezone_and_datestyle_startup_parameters_follow_each_client(pglease):
    d = pglease(**ONE_BACKEND)
    a = raw_client(d, TimeZone="Asia/Tokyo", DateStyle="German, DMY", application_name="tz_a")
    b = raw_client(d, TimeZone="America/New_York", DateStyle="ISO, MDY", application_name="tz_b")
    try:
        pids = set()
        for _ in range(3):
            pids.add(a.scalar("select pg_backend_pid()"))
            assert a.scalar("show timezone") == "Asia/Tokyo"
            assert a.scalar("show datestyle") == "German, DMY"
            assert a.scalar("select date '2024-03-01'") == "01.03.2024"
            assert a.scalar("show application_name") == "tz_a"
            pids.add(b.scalar("select pg_backend_pid()"))
            assert b.scalar("show timezone") == "America/New_York"
            assert b.scalar("show datestyle") == "ISO, MDY"
            assert b.scalar("select date '2024-03-01'") == "2024-03-01"
            assert b.scalar("show application_name") == "tz_b"
        assert len(pids) == 1, pids
    finally:
        a.terminate()
        b.terminate()


def test_libpq_environment_settings_follow_each_client(pglease, monkeypatch):
    """libpq sends PGTZ / PGDATESTYLE as startup parameters named "timezone" / "datestyle"."""
    d = pglease(**ONE_BACKEND)
    monkeypatch.setenv("PGTZ", "Europe/Paris")
    monkeypatch.setenv("PGDATESTYLE", "SQL, DMY")
    a = d.connect()
    monkeypatch.setenv("PGTZ", "UTC")
    monkeypatch.setenv("PGDATESTYLE", "ISO, YMD")
    b = d.connect()
    monkeypatch.delenv("PGTZ")
    monkeypatch.delenv("PGDATESTYLE")
    try:
        for _ in range(2):
            assert a.execute("show timezone").fetchone()[0] == "Europe/Paris"
            assert a.execute("show datestyle").fetchone()[0] == "SQL, DMY"
            assert b.execute("show timezone").fetchone()[0] == "UTC"
            assert b.execute("show datestyle").fetchone()[0] == "ISO, YMD"
        assert a.execute("select pg_backend_pid()").fetchone()[0] == b.execute("select pg_backend_pid()").fetchone()[0]
    finally:
        a.close()
        b.close()


def test_client_encoding_follows_each_client(pglease):
    d = pglease(**ONE_BACKEND)
    latin = raw_client(d, client_encoding="LATIN1")
    utf8 = raw_client(d, client_encoding="UTF8")
    try:
        assert latin.params.get("client_encoding") == "LATIN1"
        assert utf8.params.get("client_encoding") == "UTF8"
        for _ in range(3):
            r = latin.query("select chr(233), current_setting('client_encoding')")
            assert r["error"] is None, r["error"]
            assert r["rows"][0] == [b"\xe9", b"LATIN1"]
            r = utf8.query("select chr(233), current_setting('client_encoding')")
            assert r["error"] is None, r["error"]
            assert r["rows"][0] == [b"\xc3\xa9", b"UTF8"]
        assert latin.scalar("select pg_backend_pid()") == utf8.scalar("select pg_backend_pid()")
    finally:
        latin.terminate()
        utf8.terminate()


def test_psycopg_client_encoding_roundtrips_text(pglease):
    d = pglease(**ONE_BACKEND)
    a = d.connect(client_encoding="LATIN1")
    b = d.connect(client_encoding="UTF8")
    try:
        for _ in range(2):
            assert a.execute("select %s::text || chr(233)", ("caf",)).fetchone()[0] == "café"
            assert a.execute("show client_encoding").fetchone()[0] == "LATIN1"
            assert b.execute("select %s::text || chr(8364)", ("euro ",)).fetchone()[0] == "euro €"
            assert b.execute("show client_encoding").fetchone()[0] == "UTF8"
    finally:
        a.close()
        b.close()


def test_client_without_a_setting_sees_server_default_after_another_client_set_it(pglease, direct):
    """A client that sent no work_mem/application_name must not inherit the previous
    client's startup values on the shared backend."""
    default_wm = direct.execute("show work_mem").fetchone()[0]
    d = pglease(**ONE_BACKEND)
    a = d.connect(application_name="leaky", options="-c work_mem=9MB")
    b = d.connect()
    try:
        assert a.execute("show work_mem").fetchone()[0] == "9MB"
        pid = a.execute("select pg_backend_pid()").fetchone()[0]
        assert b.execute("select pg_backend_pid()").fetchone()[0] == pid
        assert b.execute("show application_name").fetchone()[0] == ""
        wm = b.execute("show work_mem").fetchone()[0]
        assert wm != "9MB", "client B inherited client A's work_mem"
        assert wm == default_wm
    finally:
        a.close()
        b.close()


def test_session_mode_client_gets_its_startup_settings_on_a_reused_backend(pglease):
    d = pglease(default_pool_size=1, pool_mode="session")
    with d.connect(application_name="first", options="-c work_mem=5MB") as a:
        pid = a.execute("select pg_backend_pid()").fetchone()[0]
        assert a.execute("show work_mem").fetchone()[0] == "5MB"
    with d.connect(application_name="second", options="-c work_mem=6MB") as b:
        assert b.execute("select pg_backend_pid()").fetchone()[0] == pid
        assert b.execute("show application_name").fetchone()[0] == "second"
        assert b.execute("show work_mem").fetchone()[0] == "6MB"


# ---- the login reply is the one a direct connection with the same startup packet gets ----

def packet(pairs):
    """A startup packet from (name, value) pairs, in order, duplicates kept."""
    body = pgwire.struct.pack("!I", pgwire.PROTOCOL_3_0)
    for k, v in pairs:
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return pgwire.struct.pack("!I", len(body) + 4) + body


SHOWN = ("TimeZone", "DateStyle", "IntervalStyle", "application_name", "client_encoding", "search_path",
         "work_mem", "standard_conforming_strings")


def login_seen(path, pairs, show=True):
    """What a client sees: the login messages in order (ParameterStatus as one dict, notices and errors
    by their fields), then, if it got in, SHOW of the settings."""
    w = Wire(path)
    try:
        w.send(packet([("user", "postgres"), ("database", "app")] + pairs))
        msgs = []
        while not msgs or msgs[-1][0] not in ("Z", "E"):
            try:
                t, body = w.read_message()
            except EOFError:
                break
            if t in (b"N", b"E"):
                f = pgwire.parse_fields(body)
                msgs.append((t.decode(), {k: f.get(k) for k in "SCMDH"}))
            else:
                msgs.append((t.decode(), pgwire.parse_parameter_status(body) if t == b"S" else None))
        seen = dict(messages=[m for m in msgs if m[0] != "S"], params=dict(m[1] for m in msgs if m[0] == "S"))
        if msgs[-1:] and msgs[-1][0] == "Z":
            if show:
                seen["show"] = {name: shown(w, name) for name in SHOWN}
            w.terminate()
        return seen
    finally:
        w.close()


def shown(w, name):
    try:
        r = w.query("show " + name)
    except (OSError, EOFError):
        return "connection closed"
    if r["error"]:
        return {k: r["error"].get(k) for k in "SCM"}
    return r["rows"][0][0].decode()


def direct_path(cluster):
    return os.path.join(cluster.dir, ".s.PGSQL.%d" % cluster.port)


LOGIN_CASES = {
    # a key wins over options whatever their order in the packet; options -c apply in order
    "key_after_options": [("options", "-c TimeZone=UTC -c DateStyle=SQL,DMY"), ("TimeZone", "Asia/Tokyo")],
    "key_before_options": [("TimeZone", "Asia/Tokyo"), ("options", "-c TimeZone=UTC -c TimeZone=Europe/Paris")],
    "same_key_twice": [("TimeZone", "Asia/Tokyo"), ("timezone", "UTC")],
    "only_the_last_options": [("options", "-c TimeZone=Bogus/X"), ("options", "-c DateStyle=German")],
    # PostgreSQL's spelling, not the client's
    "datestyle_spelling": [("options", "-c DateStyle=ISO,DMY")],
    "datestyle_lower_case": [("DateStyle", "sql, dmy")],
    "datestyle_part_merges": [("options", "-c DateStyle=SQL"), ("DateStyle", "DMY")],
    "timezone_case": [("TimeZone", "asia/tokyo")],
    "timezone_offset": [("TimeZone", "+9")],
    "intervalstyle_case": [("IntervalStyle", "ISO_8601")],
    "boolean_spelling": [("standard_conforming_strings", "yes")],
    "client_encoding_utf8": [("client_encoding", "utf8")],
    "client_encoding_latin1": [("client_encoding", "latin1")],
    "application_name_over_63_bytes": [("application_name", "a" * 40 + "b" * 40)],
    "application_name_non_ascii": [("application_name", "caf\u00e9\tbar")],
    "application_name_twice": [("options", "-c application_name=" + "o" * 70), ("application_name", "key")],
    # settings the server does not report are not reported
    "search_path_option": [("options", "-c search_path=public")],
    "work_mem_and_search_path": [("options", "-c work_mem=5MB -c search_path=alt,public"), ("TimeZone", "UTC")],
    # refused as PostgreSQL refuses them: the first bad one in PostgreSQL's order
    "invalid_timezone": [("TimeZone", "Nowhere/Bogus")],
    "invalid_timezone_in_overridden_option": [("options", "-c TimeZone=Bogus/X"), ("TimeZone", "UTC")],
    "invalid_datestyle_has_detail": [("DateStyle", "bogus"), ("TimeZone", "Bogus/X")],
    "invalid_intervalstyle_has_hint": [("options", "-c IntervalStyle=bogus")],
    "invalid_work_mem": [("options", "-c work_mem=lots")],
    "unknown_parameter": [("options", "-c no_such_setting=1")],
    "internal_parameter": [("is_superuser", "off")],
}


@pytest.mark.parametrize("case", sorted(LOGIN_CASES))
def test_login_reply_and_settings_match_a_direct_connection(pglease, cluster, case):
    pairs = LOGIN_CASES[case]
    d = pglease(**ONE_BACKEND)
    want = login_seen(direct_path(cluster), pairs)
    got = login_seen(d.socket_path, pairs)
    assert got == want, "startup %r:\n direct  %r\n pglease %r" % (pairs, want, got)
    # and once more: the second client with the same settings is answered from what the first learnt
    assert login_seen(d.socket_path, pairs) == want
    d.check_alive()


@pytest.mark.parametrize("case", ["key_after_options", "timezone_case", "application_name_over_63_bytes",
                                  "invalid_timezone", "work_mem_and_search_path"])
def test_login_reply_matches_a_direct_connection_in_session_mode(pglease, cluster, case):
    pairs = LOGIN_CASES[case]
    d = pglease(default_pool_size=1, pool_mode="session")
    want = login_seen(direct_path(cluster), pairs)
    for _ in range(2):
        got = login_seen(d.socket_path, pairs)
        assert got == want, "startup %r:\n direct  %r\n pglease %r" % (pairs, want, got)


def test_datestyle_part_merges_into_the_servers_default_not_into_another_clients(pglease, cluster):
    """The check may run on a backend that carries another client's DateStyle: a part ("DMY")
    must still merge into the server's default, as at a direct login."""
    d = pglease(**ONE_BACKEND)
    a = raw_client(d, DateStyle="SQL, MDY")
    try:
        pid = a.scalar("select pg_backend_pid()")
        assert a.scalar("show datestyle") == "SQL, MDY"
        want = login_seen(direct_path(cluster), [("DateStyle", "DMY")])
        assert want["params"]["DateStyle"] == "ISO, DMY"
        b = Wire(d.socket_path)
        b.startup({"user": "postgres", "database": "app", "DateStyle": "DMY"})
        try:
            assert b.params["DateStyle"] == "ISO, DMY", b.params
            assert b.scalar("select pg_backend_pid()") == pid, "the premise: one backend, A's settings on it"
            assert b.scalar("show datestyle") == "ISO, DMY"
        finally:
            b.terminate()
    finally:
        a.terminate()


def test_query_sent_with_the_startup_packet_runs_after_the_check_with_the_settings(pglease, cluster):
    """A client may send its first Query right behind the startup packet: it waits for the check,
    then runs on the same lease under the client's settings."""
    pairs = [("options", "-c DateStyle=SQL"), ("DateStyle", "DMY"), ("TimeZone", "asia/tokyo")]
    d = pglease(**ONE_BACKEND)
    before = stats(d)["total_lease_count"]
    w = Wire(d.socket_path)
    try:
        w.send(packet([("user", "postgres"), ("database", "app")] + pairs) +
               pgwire.query_msg("select current_setting('DateStyle'), current_setting('TimeZone'), "
                                "date '2024-03-01'"))
        login = w.read_until((b"Z",))
        assert login[-1][0] == b"Z", login
        assert w.params["DateStyle"] == "SQL, DMY" and w.params["TimeZone"] == "Asia/Tokyo", w.params
        r = w.collect_until_ready()
        assert r["error"] is None, r["error"]
        assert r["rows"] == [[b"SQL, DMY", b"Asia/Tokyo", b"01/03/2024"]]
        assert w.scalar("select 1") == "1"
    finally:
        w.terminate()
    assert stats(d)["total_lease_count"] - before == 2, "the check's lease did not carry the first Query"


def test_login_settings_checked_once_per_pool(pglease):
    """A backend checks a list of startup settings once; later logins with the same list, and logins
    with only a plain application_name, take no backend."""
    d = pglease(**ONE_BACKEND)
    plain = [("application_name", "app_%d" % i) for i in range(5)]
    settings = [("client_encoding", "utf8"), ("TimeZone", "asia/tokyo")]

    def leases():
        return stats(d)["total_lease_count"]

    def log_in(pairs):
        seen = login_seen(d.socket_path, pairs, show=False)
        assert seen["messages"][-1][0] == "Z", seen
        return seen

    log_in([])
    start = leases()
    for p in plain:
        assert log_in([p])["params"]["application_name"] == p[1]
    assert leases() == start, "a plain application_name took a backend at login"
    first = log_in(settings)
    assert first["params"]["TimeZone"] == "Asia/Tokyo" and first["params"]["client_encoding"] == "UTF8"
    assert leases() == start + 1, "the first login with new settings did not have a backend check them"
    for _ in range(5):
        assert log_in(settings + [("application_name", "again")])["params"] == dict(first["params"],
                                                                                    application_name="again")
    assert leases() == start + 1, "the same settings were checked again"


def stats(d, db="app"):
    with psycopg.connect(d.dsn("pglease"), autocommit=True) as a:
        cur = a.execute("SHOW STATS")
        cols = [c.name for c in cur.description]
        rows = [dict(zip(cols, r)) for r in cur.fetchall() if r[0] == db]
    assert len(rows) == 1, rows
    return rows[0]
