"""Client startup parameters are applied on whichever backend the client leases: with one
shared backend, interleaved clients each see their own settings; a client moved to another
backend takes them along."""
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
