"""auth_user + auth_query (pool/authq.c) against the private PostgreSQL.

Two halves:

- The lookup itself, driven now through build/authq_driver (tests/integration/authq_driver.c:
  pglease's own loop, pools and backends from libpglease.a, one command a line; the
  ASan build's driver when PGLEASE_BIN is the ASan pglease). Real roles with SCRAM and md5
  secrets, VALID UNTIL in the past, the future and 'infinity' in a database whose DateStyle
  and TimeZone are far from UTC, NULL passwords, the cache, a SECURITY DEFINER function,
  PostgreSQL stopped and started, 30 concurrent lookups on a pool of 2 with the loop free.
- The login path (a user absent from auth_file logs in with SCRAM/md5 through daemon/auth.c).
"""
import json
import os
import queue
import subprocess
import threading
import time

import psycopg
import pytest

import harness

DB = "aqdb"            # the [databases] name the driver asks for
PGDB = "authq_db"      # the PostgreSQL database behind it


def driver_bin():
    pglease = os.environ.get("PGLEASE_BIN") or os.path.join(harness.REPO, "pglease")
    name = "authq_driver-asan" if pglease.endswith("-asan") else "authq_driver"
    path = os.path.join(harness.REPO, "build", name)
    if not os.access(path, os.X_OK):
        pytest.fail("%s not built (make build/%s)" % (path, name))
    return path


class Driver:
    """authq_driver on a config file: commands in, JSON lines out."""

    def __init__(self, cluster, **settings):
        self.dir = harness.make_tmpdir("pglease-authq.")
        self.config = os.path.join(self.dir, "pglease.ini")
        self.settings = {"auth_user": "postgres", "query_wait_timeout": "10", "server_drain_timeout": "2",
                         "log_level": "info"}
        self.settings.update({k: str(v) for k, v in settings.items()})
        self.databases = {DB: cluster.conninfo(PGDB), "app": cluster.conninfo("app")}
        self.write()
        self.errpath = os.path.join(self.dir, "stderr")
        self.err = open(self.errpath, "wb")
        self.proc = subprocess.Popen([driver_bin(), self.config], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.err, env=harness.clean_env(), text=True, bufsize=1)
        self.lines = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()
        assert self.next(10) == {"ready": True}

    def write(self):
        text = "[pglease]\n" + "".join("%s = %s\n" % kv for kv in self.settings.items())
        text += "\n[databases]\n" + "".join("%s = %s\n" % kv for kv in self.databases.items())
        with open(self.config, "w") as f:
            f.write(text)

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))
        self.lines.put(None)

    def next(self, timeout=20):
        try:
            msg = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("no answer from authq_driver in %ss; stderr:\n%s" % (timeout, self.stderr()))
        assert msg is not None, "authq_driver exited; stderr:\n%s" % self.stderr()
        return msg

    def send(self, line):
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def lookup(self, *users, db=DB, timeout=20):
        """{user: answer} (the last answer per user), after every one came."""
        self.send("lookup %s %s" % (db, " ".join(users)))
        answers = {}
        while True:
            msg = self.next(timeout)
            if msg.get("done"):
                return answers
            answers[msg["user"]] = msg

    def one(self, user, **kw):
        return self.lookup(user, **kw)[user]

    def servers(self, pool="%s/postgres" % DB):
        self.send("servers")
        return [s for s in self.next()["servers"] if s["pool"] == pool]

    def reload(self, **settings):
        self.settings.update({k: str(v) for k, v in settings.items()})
        self.write()
        self.send("reload")
        assert self.next() == {"reloaded": 0}

    def stderr(self):
        with open(self.errpath, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def close(self):
        self.proc.stdin.close()
        rc = self.proc.wait(timeout=20)
        self.err.close()
        text = self.stderr()
        assert rc == 0, "authq_driver exited with %s; stderr:\n%s" % (rc, text)
        for marker in harness.SANITIZER_MARKERS + (harness.VERIFY_MARKER,):
            assert marker not in text, "authq_driver stderr:\n%s" % text
        return text


@pytest.fixture(scope="module")
def roles(cluster):
    """The database with a DateStyle and TimeZone far from UTC, its roles, and a call counter."""
    with cluster.connect("postgres") as conn:
        conn.execute("drop database if exists %s" % PGDB)
        conn.execute("create database %s" % PGDB)
        conn.execute("alter database %s set datestyle = 'SQL, DMY'" % PGDB)
        conn.execute("alter database %s set timezone = 'Asia/Kathmandu'" % PGDB)
        for r in ("aq_scram", "aq_md5", "aq_past", "aq_soon_past", "aq_soon_future", "aq_future", "aq_infinity",
                  "aq_nopw", "aq_cache", "aq_late", "aq_auth") + tuple("aq_many_%d" % i for i in range(30)):
            conn.execute("drop role if exists %s" % r)
        conn.execute("create role aq_scram login password 'scram-pw'")
        conn.execute("set password_encryption = 'md5'")
        conn.execute("create role aq_md5 login password 'md5-pw'")
        conn.execute("reset password_encryption")
        conn.execute("create role aq_past login password 'pw' valid until '2001-02-03 04:05:06+00'")
        conn.execute("create role aq_future login password 'pw' valid until '2999-01-01 00:00:00+00'")
        conn.execute("create role aq_infinity login password 'pw' valid until 'infinity'")
        conn.execute("create role aq_nopw login")
        conn.execute("create role aq_cache login password 'first'")
        for i in range(30):
            conn.execute("create role aq_many_%d login password 'pw%d'" % (i, i))
        # A role that may only run the lookup function (the README's recommended setup).
        conn.execute("create role aq_auth login")
    with cluster.connect(PGDB) as conn:
        conn.execute("create sequence aq_calls")
        conn.execute("""
            create function pgl_lookup(in i_username text, out uname text, out phash text, out vuntil timestamptz)
            returns record language sql security definer set search_path = pg_catalog as
            $$ select usename::text, passwd, valuntil from pg_shadow where usename = i_username $$""")
        conn.execute("revoke all on function pgl_lookup(text) from public")
        conn.execute("grant execute on function pgl_lookup(text) to aq_auth")
    yield cluster


def secret_of(cluster, role):
    with cluster.connect("postgres") as conn:
        return conn.execute("select rolpassword from pg_authid where rolname = %s", (role,)).fetchone()[0]


def calls(cluster):
    with cluster.connect(PGDB) as conn:
        return conn.execute("select last_value from aq_calls").fetchone()[0]


COUNTED = "SELECT usename, passwd, valuntil FROM pg_shadow WHERE usename=$1 AND nextval('aq_calls') > 0"


@pytest.fixture
def driver(roles):
    made = []

    def factory(**settings):
        d = Driver(roles, **settings)
        made.append(d)
        return d

    yield factory
    for d in made:
        if d.proc.poll() is None:
            d.close()


# ---------------------------------------------------------------- the lookup, through the driver

def test_a_scram_and_an_md5_role_are_found_with_their_secrets(roles, driver):
    d = driver()
    a = d.lookup("aq_scram", "aq_md5")
    assert a["aq_scram"]["status"] == "found"
    assert a["aq_scram"]["secret"].startswith("SCRAM-SHA-256$")
    assert a["aq_scram"]["secret"] == secret_of(roles, "aq_scram")
    assert a["aq_md5"]["secret"] == secret_of(roles, "aq_md5")
    assert a["aq_md5"]["secret"].startswith("md5")
    assert not a["aq_scram"]["expired"] and not a["aq_md5"]["expired"]
    d.close()


def test_valid_until_is_honoured_whatever_the_datestyle_and_timezone(roles, driver):
    with roles.connect("postgres") as conn:
        # Seconds around now: a misread time zone (Kathmandu is UTC+5:45) or day/month order would flip them.
        conn.execute("drop role if exists aq_soon_past")
        conn.execute("drop role if exists aq_soon_future")
        conn.execute("create role aq_soon_past login password 'pw'")
        conn.execute("create role aq_soon_future login password 'pw'")
        past = conn.execute("select (now() - interval '30 seconds')::text").fetchone()[0]
        future = conn.execute("select (now() + interval '120 seconds')::text").fetchone()[0]
        conn.execute("alter role aq_soon_past valid until '%s'" % past)
        conn.execute("alter role aq_soon_future valid until '%s'" % future)
    d = driver()
    a = d.lookup("aq_past", "aq_soon_past", "aq_soon_future", "aq_future", "aq_infinity", "aq_scram")
    assert {u: (x["status"], x["expired"]) for u, x in a.items()} == {
        "aq_past": ("found", True), "aq_soon_past": ("found", True), "aq_soon_future": ("found", False),
        "aq_future": ("found", False), "aq_infinity": ("found", False), "aq_scram": ("found", False)}
    d.close()


def test_a_missing_role_and_a_role_without_password_are_no_user(roles, driver):
    d = driver()
    a = d.lookup("aq_nobody_at_all", "aq_nopw")
    assert a["aq_nobody_at_all"]["status"] == "no_user"
    assert a["aq_nopw"]["status"] == "no_user"
    d.close()


def test_a_two_column_query_works(roles, driver):
    d = driver(auth_query="SELECT usename, passwd FROM pg_shadow WHERE usename=$1")
    a = d.one("aq_past")
    assert a["status"] == "found" and not a["expired"], "no expiry without the third column"
    d.close()


def test_found_users_are_cached_for_the_ttl_and_misses_never(roles, driver):
    d = driver(auth_query=COUNTED, auth_query_cache_ttl=1)
    first = d.one("aq_cache")
    n = calls(roles)
    with roles.connect("postgres") as conn:
        conn.execute("alter role aq_cache password 'second'")
    cached = d.one("aq_cache")
    assert cached["secret"] == first["secret"], "within the TTL the old secret is used"
    assert calls(roles) == n, "no query for a cached user"
    time.sleep(1.2)
    fresh = d.one("aq_cache")
    assert fresh["secret"] == secret_of(roles, "aq_cache") != first["secret"], "after the TTL the new one"
    assert calls(roles) == n + 1

    with roles.connect("postgres") as conn:
        conn.execute("drop role if exists aq_late")
    assert d.one("aq_late")["status"] == "no_user"
    with roles.connect("postgres") as conn:
        conn.execute("create role aq_late login password 'pw'")
    assert d.one("aq_late")["status"] == "found", "a miss is not cached"
    d.close()


def test_a_reload_flushes_the_cache(roles, driver):
    d = driver(auth_query=COUNTED, auth_query_cache_ttl=600)
    d.one("aq_scram")
    n = calls(roles)
    d.one("aq_scram")
    assert calls(roles) == n
    d.reload()
    d.one("aq_scram")
    assert calls(roles) == n + 1
    d.close()


def test_concurrent_lookups_for_one_user_share_one_query(roles, driver):
    d = driver(auth_query=COUNTED, auth_query_cache_ttl=0)
    n = calls(roles)
    d.send("lookup %s %s" % (DB, " ".join(["aq_scram"] * 10)))
    answers = []
    while True:
        msg = d.next()
        if msg.get("done"):
            break
        answers.append(msg)
    assert len(answers) == 10 and all(a["status"] == "found" for a in answers)
    assert calls(roles) == n + 1
    d.close()


def test_a_security_definer_function_run_by_an_unprivileged_auth_user(roles, driver):
    d = driver(auth_user="aq_auth", auth_query="SELECT uname, phash, vuntil FROM pgl_lookup($1)")
    a = d.lookup("aq_scram", "aq_past", "aq_nobody_at_all")
    assert a["aq_scram"]["secret"] == secret_of(roles, "aq_scram")
    assert a["aq_past"]["expired"]
    # The function returns one row of NULLs for a role that does not exist: a NULL secret is no user.
    assert a["aq_nobody_at_all"]["status"] == "no_user"
    states = [s["state"] for s in d.servers("%s/aq_auth" % DB)]
    # Three lookups at once asked for up to three backends; the first up may have served them all.
    assert "idle" in states and "auth_query" not in states, states
    d.close()


def test_an_auth_user_that_may_not_read_pg_shadow_fails_clearly(roles, driver):
    d = driver(auth_user="aq_auth")
    a = d.one("aq_scram")
    assert a["status"] == "failed"
    assert "permission denied" in a["error"] and "42501" in a["error"], a["error"]
    assert [s["state"] for s in d.servers("%s/aq_auth" % DB)] == ["idle"], "the backend is reused"
    d.close()


def test_the_lent_backend_shows_as_auth_query_and_comes_back_idle(roles, driver):
    d = driver(auth_query="SELECT usename, passwd, valuntil FROM pg_shadow, pg_sleep(1) WHERE usename=$1")
    d.send("lookup %s aq_scram" % DB)
    deadline = time.monotonic() + 5
    while [s["state"] for s in d.servers()] != ["auth_query"]:
        assert time.monotonic() < deadline, d.servers()
        time.sleep(0.05)
    assert d.next()["status"] == "found"
    assert d.next() == {"done": True}
    assert [s["state"] for s in d.servers()] == ["idle"]
    d.close()


def test_a_backend_terminated_under_a_lookup_is_replaced_by_an_idle_one(roles, driver):
    slow = "SELECT usename, passwd, valuntil FROM pg_shadow, pg_sleep(1) WHERE usename=$1"
    d = driver(auth_query=slow, min_pool_size=2, auth_query_cache_ttl=0)
    assert d.one("aq_scram")["status"] == "found"
    harness.wait_for(lambda: [s["state"] for s in d.servers()] == ["idle", "idle"], what="two idle backends")
    d.send("lookup %s aq_md5" % DB)
    harness.wait_for(lambda: "auth_query" in [s["state"] for s in d.servers()], what="a lent backend")
    lent = [s for s in d.servers() if s["state"] == "auth_query"][0]
    with roles.connect("postgres") as conn:
        assert conn.execute("select pg_terminate_backend(%s)", (lent["pid"],)).fetchone()[0]
    a = d.next()
    assert a["user"] == "aq_md5" and a["status"] == "found", a
    assert d.next() == {"done": True}
    assert lent["id"] not in [s["id"] for s in d.servers()]
    d.close()


@pytest.mark.timeout(90)
def test_thirty_lookups_on_a_pool_of_two_all_answer_and_the_loop_stays_free(roles, driver):
    slow = "SELECT usename, passwd, valuntil FROM pg_shadow, pg_sleep(0.1) WHERE usename=$1"
    d = driver(auth_query=slow, default_pool_size=2)
    users = ["aq_many_%d" % i for i in range(30)]
    d.send("lookup %s %s" % (DB, " ".join(users)))
    t0 = time.monotonic()
    d.send("ping")
    answers, pong_at, most = {}, None, 0
    d.send("servers")
    while True:
        msg = d.next()
        if msg.get("pong"):
            pong_at = time.monotonic() - t0
        elif "servers" in msg:
            mine = [s for s in msg["servers"] if s["pool"] == "%s/postgres" % DB]
            most = max(most, len(mine))
        elif msg.get("done"):
            break
        else:
            answers[msg["user"]] = msg
    elapsed = time.monotonic() - t0
    assert sorted(answers) == sorted(users)
    assert all(a["status"] == "found" for a in answers.values())
    assert pong_at is not None and pong_at < 0.5, "the loop answered a ping after %s s" % pong_at
    assert elapsed >= 1.4, "30 x 0.1 s on 2 backends cannot take %.2f s" % elapsed
    assert most <= 2
    with roles.connect("postgres") as conn:
        n = conn.execute("select count(*) from pg_stat_activity where datname = %s and usename = 'postgres'",
                         (PGDB,)).fetchone()[0]
    assert n <= 2, "pool_size 2 holds"
    d.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("fail_fast", [0, 1])
def test_postgresql_stopped_fails_clearly_and_lookups_work_once_it_is_back(roles, driver, fail_fast):
    # A lookup during an outage waits for PostgreSQL as a login does (up to query_wait_timeout, then the
    # connect error), or fails at once with server_down_fail_fast.
    d = driver(auth_query_cache_ttl=0, server_down_fail_fast=fail_fast, query_wait_timeout=2)
    assert d.one("aq_scram")["status"] == "found"
    subprocess.run([harness.PGCLUSTER, "stop", roles.dir], env=harness.clean_env(), check=True, timeout=120)
    try:
        t0 = time.monotonic()
        a = d.one("aq_scram")
        took = time.monotonic() - t0
        assert a["status"] == "failed", a
        assert "auth_query" in a["error"] and ("connect" in a["error"] or "lost" in a["error"]), a["error"]
        assert took < 1.5 if fail_fast else 1.8 < took < 4, took
    finally:
        subprocess.run([harness.PGCLUSTER, "start", roles.dir, str(roles.port)], env=harness.clean_env(),
                       check=True, timeout=180)
    deadline = time.monotonic() + 15
    while True:
        a = d.one("aq_scram")
        if a["status"] == "found" or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert a["status"] == "found", a
    d.close()


# ---------------------------------------------------------------- the login path (daemon/auth.c)



ADMIN, ADMIN_PW = "pgl_admin", "admin-pw"


def login_daemon(pglease, roles, **settings):
    """pglease with SCRAM logins; auth_file holds only the console's admin, every other user is looked up."""
    s = dict(auth_type="scram-sha-256", auth_user="postgres", auth_query_cache_ttl="1", admin_users=ADMIN)
    s.update(settings)
    d = pglease(databases={"app": roles.conninfo("app")}, start=False, **s)
    userlist = os.path.join(d.dir, "userlist.txt")
    with open(userlist, "w") as f:
        f.write('"%s" "%s"\n' % (ADMIN, ADMIN_PW))
    d.settings["auth_file"] = userlist
    d.start(wait=False)
    harness.wait_for(lambda: os.path.exists(d.socket_path), what="pglease's socket")
    return d


def login(d, user, password):
    return psycopg.connect(d.dsn(user=user, password=password), autocommit=True)


def refused(d, user, password):
    with pytest.raises(psycopg.OperationalError) as e:
        login(d, user, password).close()
    return str(e.value)


def test_login_a_scram_role_absent_from_auth_file_logs_in(pglease, roles):
    d = login_daemon(pglease, roles)
    with login(d, "aq_scram", "scram-pw") as conn:
        assert conn.execute("select current_user").fetchone()[0] == "aq_scram"


def test_login_an_expired_role_is_refused_as_a_wrong_password(pglease, roles):
    d = login_daemon(pglease, roles)
    msg = refused(d, "aq_past", "pw")
    assert 'password authentication failed for user "aq_past"' in msg


def test_login_a_missing_role_and_a_role_without_password_get_the_same_message(pglease, roles):
    d = login_daemon(pglease, roles)
    assert 'password authentication failed for user "aq_nobody_at_all"' in refused(d, "aq_nobody_at_all", "x")
    assert 'password authentication failed for user "aq_nopw"' in refused(d, "aq_nopw", "x")


def test_login_a_password_change_applies_after_the_ttl(pglease, roles):
    with roles.connect("postgres") as conn:
        conn.execute("alter role aq_cache password 'one'")
    d = login_daemon(pglease, roles, auth_query_cache_ttl="2")
    login(d, "aq_cache", "one").close()
    with roles.connect("postgres") as conn:
        conn.execute("alter role aq_cache password 'two'")
    login(d, "aq_cache", "one").close()   # cached
    time.sleep(2.2)
    login(d, "aq_cache", "two").close()
    assert "password authentication failed" in refused(d, "aq_cache", "one")


@pytest.mark.timeout(120)
def test_login_postgresql_stopped_is_a_clear_error_and_logins_come_back(pglease, roles):
    d = login_daemon(pglease, roles, auth_query_cache_ttl="0")
    subprocess.run([harness.PGCLUSTER, "stop", roles.dir], env=harness.clean_env(), check=True, timeout=120)
    try:
        msg = refused(d, "aq_scram", "scram-pw")
        assert "password authentication failed" not in msg, "an outage is not a wrong password: " + msg
        assert "could not look up the user: authentication is unavailable" in msg, msg
    finally:
        subprocess.run([harness.PGCLUSTER, "start", roles.dir, str(roles.port)], env=harness.clean_env(),
                       check=True, timeout=180)
    harness.wait_for(lambda: _can_login(d, "aq_scram", "scram-pw"), 20, what="logins after the restart")


def _can_login(d, user, password):
    try:
        login(d, user, password).close()
        return True
    except psycopg.OperationalError:
        return False


@pytest.mark.timeout(120)
def test_login_thirty_new_users_on_a_pool_of_two_while_the_console_answers(pglease, roles):
    d = login_daemon(pglease, roles, default_pool_size="2")
    errors = []

    def one(i):
        try:
            with login(d, "aq_many_%d" % i, "pw%d" % i) as conn:
                conn.execute("select 1")
        except Exception as e:   # noqa: BLE001 - collected for the assertion
            errors.append(e)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    console = dict(user=ADMIN, dbname="pglease", env={"PGPASSWORD": ADMIN_PW})
    t0 = time.monotonic()
    r = d.psql("-c", "show servers", **console)
    assert r.returncode == 0, r.stderr
    assert time.monotonic() - t0 < 5, "the console answered while 30 logins were looked up"
    for t in threads:
        t.join(60)
    assert not errors, errors
    r = d.psql("-c", "show servers", **console)
    rows = [l for l in r.stdout.splitlines() if "|postgres|app|" in l]
    assert rows and all("|idle|" in l for l in rows), r.stdout
