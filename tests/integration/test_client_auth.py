"""Client authentication: md5 and SCRAM-SHA-256 against auth_file, hba rules,
reloads of both files, the failure delay, and the exchange on the wire.

Over the Unix socket (libpq speaks SCRAM and md5 there as over TCP). The
words and SQLSTATEs are PostgreSQL 15's (auth.c, auth-sasl.c, auth-scram.c).
A raw SCRAM client (RFC 5802 with hashlib/hmac) drives the exchange where a
test needs to stop in the middle or send what libpq never would.
"""
import base64
import hashlib
import hmac
import os
import re
import signal
import struct
import threading
import time

import psycopg
import pytest

import pgwire
from harness import wait_for
from pgwire import ScramClient, Wire, read_fatal

PASSWORD = "s3cret pw"
BAD_PASSWORD_MSG = 'password authentication failed for user "%s"'


# ---------------------------------------------------------------- helpers
def write(d, name, text):
    with open(os.path.join(d.dir, name), "w") as f:
        f.write(text)


def userlist(**users):
    return "".join('"%s" "%s"\n' % (u, s.replace('"', '""')) for u, s in users.items())


def md5_secret(password, user):
    return "md5" + hashlib.md5((password + user).encode()).hexdigest()


def start(pglease, users=None, hba=None, ready_password=PASSWORD, ready_os_user=None, **settings):
    """A pglease whose auth_file (users.txt) and auth_hba_file (hba.conf) are written first."""
    if users is not None:
        settings.setdefault("auth_file", "users.txt")
    if hba is not None:
        settings.setdefault("auth_hba_file", "hba.conf")
    d = pglease(start=False, **settings)
    if users is not None:
        write(d, "users.txt", users)
    if hba is not None:
        write(d, "hba.conf", hba)
    if ready_password is not None:
        d.ready_env = {"PGPASSWORD": ready_password}
    d.ready_os_user = ready_os_user
    d.start()
    return d


def psql(d, password, user="postgres", dbname="app", sql="select current_user"):
    env = {} if password is None else {"PGPASSWORD": password}
    return d.psql("-c", sql, user=user, dbname=dbname, env=env)


def connect_error(d, password, user="postgres", dbname="app"):
    with pytest.raises(psycopg.OperationalError) as info:
        psycopg.connect(d.dsn(dbname, user=user, password=password))
    return info.value


def wire_auth(d, password, user="postgres", dbname="app"):
    """Log in with the raw client (md5 or SCRAM as asked): None once logged in, else the ErrorResponse's fields."""
    w = wire_login(d, user, dbname)
    sc = ScramClient(user, password or "")
    try:
        while True:
            mtype, body = w.read_message(timeout=15)
            if mtype == b"E":
                return pgwire.parse_fields(body)
            if mtype == b"Z":
                return None
            if mtype != b"R":
                continue
            code, data = struct.unpack("!I", body[:4])[0], body[4:]
            if code in (5, 10, 11):
                assert password is not None, "asked for a password (code %d)" % code
            if code == 5:
                inner = hashlib.md5((password + user).encode()).hexdigest()
                w.send(password_msg(b"md5" + hashlib.md5(inner.encode() + data).hexdigest().encode() + b"\0"))
            elif code == 10:
                w.send(sasl_initial("SCRAM-SHA-256", sc.first()))
            elif code == 11:
                w.send(password_msg(sc.final(data)))
    finally:
        w.close()


def fatal_of(d, password, user="postgres", dbname="app"):
    """(SQLSTATE, message) of the FATAL a login gets; psycopg's login fails with the same words."""
    f = wire_auth(d, password, user, dbname)
    assert f and f["S"] == "FATAL", f
    if password is not None:
        assert f["M"] in str(connect_error(d, password, user, dbname))
    return f["C"], f["M"]


def auth_request(w):
    """The first Authentication message after the startup packet: (code, data)."""
    mtype, body = w.read_message()
    assert mtype == b"R", (mtype, body)
    return struct.unpack("!I", body[:4])[0], body[4:]


def sasl_mechanisms(data):
    return [m.decode() for m in data.split(b"\0") if m]


def password_msg(data):
    return pgwire.message(b"p", data)


def sasl_initial(mech, data):
    payload = mech.encode() + b"\0"
    payload += struct.pack("!i", -1) if data is None else struct.pack("!i", len(data)) + data
    return password_msg(payload)


def wire_login(d, user="postgres", dbname="app"):
    w = Wire(d.socket_path)
    w.send(pgwire.startup_packet({"user": user, "database": dbname}))
    return w


def login_clients(d):
    """Clients SHOW CLIENTS lists in state login (the console's own connection is admin)."""
    r = psql(d, PASSWORD, dbname="pglease", sql="show clients")
    assert r.returncode == 0, r.stderr
    return [line for line in r.stdout.splitlines() if "|login|" in line]


# ---------------------------------------------------------------- SCRAM
def test_scram_with_a_plain_secret(pglease):
    d = start(pglease, userlist(postgres=PASSWORD), auth_type="scram-sha-256")
    r = psql(d, PASSWORD)
    assert r.returncode == 0 and r.stdout.strip() == "postgres", r.stderr
    with psycopg.connect(d.dsn(password=PASSWORD)) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    w = wire_login(d)
    try:
        code, data = auth_request(w)
        assert code == 10, "expected AuthenticationSASL"
        # no channel binding on a Unix socket: SCRAM-SHA-256 only
        assert sasl_mechanisms(data) == ["SCRAM-SHA-256"]
    finally:
        w.close()


def test_scram_exchange_on_the_wire(pglease):
    d = start(pglease, userlist(postgres=PASSWORD), auth_type="scram-sha-256")
    w = wire_login(d)
    try:
        assert auth_request(w)[0] == 10
        sc = ScramClient("postgres", PASSWORD)
        w.send(sasl_initial("SCRAM-SHA-256", sc.first()))
        code, server_first = auth_request(w)
        assert code == 11, "expected AuthenticationSASLContinue"
        assert re.match(rb"r=[^,]+,s=[A-Za-z0-9+/=]+,i=4096$", server_first), server_first
        w.send(password_msg(sc.final(server_first)))
        code, server_final = auth_request(w)
        assert code == 12, "expected AuthenticationSASLFinal"
        assert server_final == b"v=" + base64.b64encode(sc.server_sig)
        code, _ = auth_request(w)
        assert code == 0, "expected AuthenticationOk"
        w.read_until((b"Z",))
        assert w.scalar("select current_user") == "postgres"
    finally:
        w.close()


def test_scram_without_initial_response_gets_an_empty_challenge(pglease):
    d = start(pglease, userlist(postgres=PASSWORD), auth_type="scram-sha-256")
    w = wire_login(d)
    try:
        auth_request(w)
        sc = ScramClient("postgres", PASSWORD)
        w.send(sasl_initial("SCRAM-SHA-256", None))
        assert auth_request(w) == (11, b"")
        w.send(password_msg(sc.first()))
        code, server_first = auth_request(w)
        assert code == 11
        w.send(password_msg(sc.final(server_first)))
        assert auth_request(w)[0] == 12
        assert auth_request(w)[0] == 0
    finally:
        w.close()


def scram_verifier(direct, role, password):
    direct.execute("set password_encryption = 'scram-sha-256'")
    direct.execute("drop role if exists %s" % role)
    direct.execute("create role %s login password '%s'" % (role, password))
    direct.execute("grant all on table items to %s" % role)
    return direct.execute("select rolpassword from pg_authid where rolname = %s", (role,)).fetchone()[0]


def test_scram_with_a_verifier_made_by_postgresql(pglease, direct):
    verifier = scram_verifier(direct, "auth_v", "verifier pw")
    assert verifier.startswith("SCRAM-SHA-256$4096:")
    d = start(pglease, userlist(postgres=PASSWORD, auth_v=verifier), auth_type="scram-sha-256")
    r = psql(d, "verifier pw", user="auth_v")
    assert r.returncode == 0 and r.stdout.strip() == "auth_v", r.stderr
    assert fatal_of(d, "wrong", user="auth_v") == ("28P01", BAD_PASSWORD_MSG % "auth_v")


# ---------------------------------------------------------------- md5
def test_md5_with_a_plain_secret(pglease):
    d = start(pglease, userlist(postgres=PASSWORD), auth_type="md5")
    r = psql(d, PASSWORD)
    assert r.returncode == 0, r.stderr
    w = wire_login(d)
    try:
        code, salt = auth_request(w)
        assert code == 5 and len(salt) == 4, "expected AuthenticationMD5Password with a 4-byte salt"
    finally:
        w.close()


def test_md5_with_an_md5_secret(pglease):
    d = start(pglease, userlist(postgres=md5_secret(PASSWORD, "postgres")), auth_type="md5")
    r = psql(d, PASSWORD)
    assert r.returncode == 0, r.stderr
    assert fatal_of(d, "nope") == ("28P01", BAD_PASSWORD_MSG % "postgres")


def test_md5_method_with_a_scram_secret_uses_scram(pglease, direct):
    verifier = scram_verifier(direct, "auth_m", "m pw")
    d = start(pglease, userlist(postgres=PASSWORD, auth_m=verifier), auth_type="md5")
    r = psql(d, "m pw", user="auth_m")
    assert r.returncode == 0, r.stderr
    w = wire_login(d, user="auth_m")
    try:
        assert auth_request(w)[0] == 10, "PostgreSQL's rule: a SCRAM secret turns md5 into SCRAM"
    finally:
        w.close()


def test_scram_method_with_an_md5_secret_fails_as_a_wrong_password(pglease):
    d = start(pglease, userlist(postgres=PASSWORD, m5=md5_secret("pw5", "m5")), auth_type="scram-sha-256",
              auth_failure_delay=0)
    assert fatal_of(d, "pw5", user="m5") == ("28P01", BAD_PASSWORD_MSG % "m5")
    assert "no valid SCRAM secret" in d.log_text()


def test_md5_empty_password_message_is_refused(pglease):
    d = start(pglease, userlist(postgres=PASSWORD), auth_type="md5", auth_failure_delay=0)
    w = wire_login(d)
    try:
        assert auth_request(w)[0] == 5
        w.send(password_msg(b"\0"))
        f = read_fatal(w)
        assert (f["S"], f["C"], f["M"]) == ("FATAL", "28P01", "empty password returned by client")
    finally:
        w.close()


# ---------------------------------------------------------------- failures
@pytest.mark.parametrize("method", ["scram-sha-256", "md5"])
def test_wrong_password_and_unknown_user_get_the_same_fatal(pglease, method):
    d = start(pglease, userlist(postgres=PASSWORD), auth_type=method, auth_failure_delay=0)
    assert fatal_of(d, "wrong") == ("28P01", BAD_PASSWORD_MSG % "postgres")
    assert fatal_of(d, "wrong", user="nobody_here") == ("28P01", BAD_PASSWORD_MSG % "nobody_here")
    r = psql(d, "wrong")
    assert r.returncode != 0
    assert BAD_PASSWORD_MSG % "postgres" in r.stderr


def test_unknown_user_runs_the_whole_scram_exchange(pglease):
    """No enumeration: an unknown user gets a salt (the same each time) and fails only at the proof."""
    d = start(pglease, userlist(postgres=PASSWORD), auth_type="scram-sha-256", auth_failure_delay=0)
    salts = []
    for _ in range(2):
        w = wire_login(d, user="ghost")
        try:
            assert auth_request(w)[0] == 10
            sc = ScramClient("ghost", "guess")
            w.send(sasl_initial("SCRAM-SHA-256", sc.first()))
            code, server_first = auth_request(w)
            assert code == 11
            salts.append(dict(kv.split("=", 1) for kv in server_first.decode().split(","))["s"])
            w.send(password_msg(sc.final(server_first)))
            f = read_fatal(w)
            assert (f["C"], f["M"]) == ("28P01", BAD_PASSWORD_MSG % "ghost")
        finally:
            w.close()
    assert salts[0] == salts[1]


def test_protocol_errors_during_sasl_are_08P01(pglease):
    d = start(pglease, userlist(postgres=PASSWORD), auth_type="scram-sha-256")
    cases = [
        (pgwire.query_msg("select 1"), "expected SASL response, got message type 81"),
        (sasl_initial("SCRAM-SHA-1", b"n,,n=,r=abc"), "client selected an invalid SASL authentication mechanism"),
        (sasl_initial("SCRAM-SHA-256", b"x,,n=,r=abc"), "malformed SCRAM message"),
        (sasl_initial("SCRAM-SHA-256", b""), "malformed SCRAM message"),
        (password_msg(b"SCRAM-SHA-256"), "invalid string in message"),
        (b"p" + struct.pack("!I", 70000), "invalid message length"),
    ]
    for msg, words in cases:
        w = wire_login(d)
        try:
            assert auth_request(w)[0] == 10
            w.send(msg)
            f = read_fatal(w)
            assert (f["S"], f["C"], f["M"]) == ("FATAL", "08P01", words), (msg, f)
            assert w.wait_closed(5)
        finally:
            w.close()
    assert psql(d, PASSWORD).returncode == 0


# ---------------------------------------------------------------- hba
HBA = """\
# first match wins
local   app      rejected  scram-sha-256
local   all      rejected  reject
local   app      trusted   trust
local   pglease,app  postgres  scram-sha-256
local   app      md5user   md5
"""


def test_hba_reject_and_no_matching_line(pglease, direct):
    d = start(pglease, userlist(postgres=PASSWORD, rejected="r"), HBA, auth_type="hba", auth_failure_delay=0)
    # line 2 never decides for app: line 1 matched first
    assert fatal_of(d, "wrong", user="rejected") == ("28P01", BAD_PASSWORD_MSG % "rejected")
    assert fatal_of(d, "r", user="rejected", dbname="otherdb") == (
        "28000", 'pg_hba.conf rejects connection for host "[local]", user "rejected", database "otherdb", no encryption')
    assert fatal_of(d, "x", user="stranger") == (
        "28000", 'no pg_hba.conf entry for host "[local]", user "stranger", database "app", no encryption')


def test_hba_methods_per_line(pglease, direct):
    direct.execute("drop role if exists trusted")
    direct.execute("create role trusted login")
    direct.execute("drop role if exists md5user")
    direct.execute("create role md5user login")
    d = start(pglease, userlist(postgres=PASSWORD, md5user="mpw"), HBA, auth_type="hba")
    r = psql(d, None, user="trusted")
    assert r.returncode == 0 and r.stdout.strip() == "trusted", r.stderr
    assert psql(d, "mpw", user="md5user").returncode == 0
    w = wire_login(d, user="md5user")
    try:
        assert auth_request(w)[0] == 5
    finally:
        w.close()


def test_hba_peer_line(pglease):
    d = start(pglease, userlist(postgres=PASSWORD), "local all postgres peer\n", auth_type="hba",
              ready_password=None, ready_os_user="postgres")
    r = d.psql("-c", "select current_user", user="postgres", os_user="postgres")
    assert r.returncode == 0 and r.stdout.strip() == "postgres", r.stderr
    r = d.psql("-c", "select 1", user="postgres")   # as root
    assert r.returncode != 0 and 'peer authentication failed for user "postgres"' in r.stderr


def test_hba_first_match_order(pglease):
    d = start(pglease, userlist(postgres=PASSWORD), "local all postgres trust\nlocal all all reject\n",
              auth_type="hba", ready_password=None)
    assert psql(d, None).returncode == 0
    write(d, "hba.conf", "local all all reject\nlocal all postgres trust\n")
    d.reload()
    code, msg = fatal_of(d, None)
    assert code == "28000" and msg.startswith("pg_hba.conf rejects connection")


# ---------------------------------------------------------------- reload
def test_reload_with_a_broken_auth_file_keeps_the_old_one(pglease):
    d = start(pglease, userlist(postgres=PASSWORD), auth_type="scram-sha-256")
    write(d, "users.txt", '"postgres" "newpw"\n"broken "line\n')
    before = d.reload_count()
    d.signal(signal.SIGHUP)
    wait_for(lambda: d.reload_count() > before, 10, what="the reload's log line")
    log = d.log_text()
    assert "reload of %s failed" % d.config_path in log
    assert re.search(r"users\.txt:2: ", log), log
    assert psql(d, PASSWORD).returncode == 0
    assert psql(d, "newpw").returncode != 0


def test_reload_with_a_broken_hba_file_keeps_config_and_files(pglease):
    """Atomic: a broken hba file keeps the old userlist and config too."""
    d = start(pglease, userlist(postgres=PASSWORD), "local all all scram-sha-256\n", auth_type="hba")
    write(d, "users.txt", userlist(postgres="newpw"))
    write(d, "hba.conf", "local all all trust\nhost all all 10.0.0.1 md5\n")
    d.settings["auth_failure_delay"] = "0"
    d.reload()
    log = d.log_text()
    assert re.search(r"hba\.conf:2: ", log), log
    assert psql(d, PASSWORD).returncode == 0
    assert psql(d, None).returncode != 0
    r = psql(d, PASSWORD, dbname="pglease", sql="show config")
    assert "auth_failure_delay|1|" in r.stdout, r.stdout


def test_reload_applies_a_changed_password_to_new_logins(pglease):
    d = start(pglease, userlist(postgres=PASSWORD), auth_type="scram-sha-256", auth_failure_delay=0)
    held = psycopg.connect(d.dsn(password=PASSWORD), autocommit=True)
    try:
        write(d, "users.txt", userlist(postgres="changed"))
        d.reload()
        assert psql(d, "changed").returncode == 0
        assert fatal_of(d, PASSWORD) == ("28P01", BAD_PASSWORD_MSG % "postgres")
        assert held.execute("select 1").fetchone() == (1,)   # logged in before: unaffected
    finally:
        held.close()


def test_bad_auth_file_stops_startup(pglease):
    d = pglease(start=False, auth_type="md5", auth_file="users.txt")
    write(d, "users.txt", '"alice" "pw"\n"alice" "again"\n')
    d.start(wait=False)
    assert d.wait_exit(10) != 0
    assert re.search(r"users\.txt:2: ", d.log_text()), d.log_text()


# ---------------------------------------------------------------- failure delay
@pytest.mark.timeout(60)
def test_failure_delay_holds_the_attacker_not_the_others(pglease):
    d = start(pglease, userlist(postgres=PASSWORD), auth_type="scram-sha-256", auth_failure_delay=2)
    bad = {}

    def attacker():
        t0 = time.monotonic()
        bad["fatal"] = fatal_of(d, "wrong")
        bad["took"] = time.monotonic() - t0

    threads = [threading.Thread(target=attacker) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    with psycopg.connect(d.dsn(password=PASSWORD)) as conn:
        assert conn.execute("select 1").fetchone() == (1,)
    good = time.monotonic() - t0
    for t in threads:
        t.join()
    assert bad["fatal"] == ("28P01", BAD_PASSWORD_MSG % "postgres")
    assert bad["took"] >= 1.9, bad
    assert good < 1.0, "a good login waited %.2f s behind delayed failures" % good


def test_client_leaving_during_the_delay_is_freed(pglease):
    d = start(pglease, userlist(postgres=PASSWORD), auth_type="md5", auth_failure_delay=3, admin_users="postgres")
    w = wire_login(d)
    code, salt = auth_request(w)
    w.send(password_msg(b"md5" + b"0" * 32 + b"\0"))
    time.sleep(0.3)
    assert len(login_clients(d)) == 1
    w.close()
    wait_for(lambda: not login_clients(d), 5, what="the delayed client to be freed")


# ---------------------------------------------------------------- load
@pytest.mark.timeout(120)
def test_fifty_concurrent_scram_logins_on_a_pool_of_three(pglease, cluster):
    d = start(pglease, userlist(postgres=PASSWORD), auth_type="scram-sha-256",
              databases={"app": cluster.conninfo("app", pool_size=3)})
    results, errors = [], []

    def one():
        try:
            with psycopg.connect(d.dsn(password=PASSWORD), autocommit=True) as conn:
                with conn.transaction():
                    pid = conn.execute("select pg_backend_pid()").fetchone()[0]
                    conn.execute("select pg_sleep(0.05)")
                results.append(pid)
        except Exception as e:   # collected, asserted below
            errors.append(repr(e))

    threads = [threading.Thread(target=one) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[:3]
    assert len(results) == 50
    assert 1 <= len(set(results)) <= 3, set(results)
    # one PBKDF2 for the whole storm (the readiness check's login made it)
    assert d.log_text().count('SCRAM keys for "postgres" derived') == 1


def test_client_leaving_mid_sasl_leaks_nothing(pglease):
    d = start(pglease, userlist(postgres=PASSWORD), auth_type="scram-sha-256", admin_users="postgres")
    for _ in range(5):
        w = wire_login(d)
        assert auth_request(w)[0] == 10
        sc = ScramClient("postgres", PASSWORD)
        w.send(sasl_initial("SCRAM-SHA-256", sc.first()))
        assert auth_request(w)[0] == 11
        w.close()
    w = wire_login(d, user="ghost")   # gone while its secret is still being looked up
    w.close()
    # gone while the new password's keys are derived (the reload dropped the old ones)
    write(d, "users.txt", userlist(postgres="new pw"))
    d.reload()
    for _ in range(5):
        w = wire_login(d)
        w.close()
    wait_for(lambda: not login_clients_with(d, "new pw"), 5, what="the abandoned logins to be freed")
    assert psql(d, "new pw").returncode == 0


def login_clients_with(d, password):
    r = psql(d, password, dbname="pglease", sql="show clients")
    assert r.returncode == 0, r.stderr
    return [line for line in r.stdout.splitlines() if "|login|" in line]


def test_console_login_authenticates_then_needs_admin_users(pglease):
    d = start(pglease, userlist(postgres=PASSWORD, carol="cpw"), auth_type="scram-sha-256",
              admin_users="postgres", auth_failure_delay=0)
    r = psql(d, PASSWORD, dbname="pglease", sql="show version")
    assert r.returncode == 0 and "pglease" in r.stdout, r.stderr
    assert fatal_of(d, "wrong", dbname="pglease") == ("28P01", BAD_PASSWORD_MSG % "postgres")
    # not pglease's own OS user (that one is always an admin), and not in admin_users
    r = d.psql("-c", "show version", user="carol", dbname="pglease", os_user="postgres", env={"PGPASSWORD": "cpw"})
    assert r.returncode != 0
    assert "not allowed to use the pglease admin console" in r.stderr, r.stderr


# ---------------------------------------------------------------- PostgreSQL's own words
@pytest.fixture
def pg_hba_lines(direct):
    """Put lines at the top of the private cluster's pg_hba.conf (for users only these tests use); restored after."""
    path = direct.execute("show hba_file").fetchone()[0]
    with open(path) as f:
        original = f.read()

    def install(lines):
        with open(path, "w") as f:
            f.write(lines + original)
        direct.execute("select pg_reload_conf()")
        time.sleep(0.5)   # the postmaster reloads on SIGHUP, asynchronously

    yield install
    with open(path, "w") as f:
        f.write(original)
    direct.execute("select pg_reload_conf()")
    time.sleep(0.3)


def pg_socket(cluster):
    return os.path.join(cluster.dir, ".s.PGSQL.%d" % cluster.port)


def fatal_on(path, user, dbname, steps):
    """Start a login at path and send each step (bytes, or a function of the last Authentication data) after
    each Authentication request; return (S, C, M) of the ErrorResponse."""
    w = Wire(path)
    try:
        w.send(pgwire.startup_packet({"user": user, "database": dbname}))
        steps = list(steps)
        while True:
            mtype, body = w.read_message()
            if mtype == b"E":
                f = pgwire.parse_fields(body)
                return f["S"], f["C"], f["M"]
            assert mtype == b"R", (mtype, body)
            data = body[4:]
            assert steps, "asked for more than the test sends: %r" % body
            step = steps.pop(0)
            w.send(step(data) if callable(step) else step)
    finally:
        w.close()


def test_words_match_postgresql(pglease, cluster, direct, pg_hba_lines):
    direct.execute("set password_encryption = 'scram-sha-256'")
    direct.execute("drop role if exists cmp_scram")
    direct.execute("create role cmp_scram login password 'right'")
    verifier = direct.execute("select rolpassword from pg_authid where rolname = 'cmp_scram'").fetchone()[0]
    direct.execute("set password_encryption = 'md5'")
    direct.execute("drop role if exists cmp_md5")
    direct.execute("create role cmp_md5 login password 'right'")
    md5 = direct.execute("select rolpassword from pg_authid where rolname = 'cmp_md5'").fetchone()[0]
    rules = ("local all cmp_scram scram-sha-256\nlocal all cmp_ghost scram-sha-256\n"
             "local all cmp_md5 md5\nlocal all cmp_reject reject\n")
    pg_hba_lines(rules)
    d = start(pglease, userlist(postgres=PASSWORD, cmp_scram=verifier, cmp_md5=md5, cmp_reject="x"),
              "local all postgres scram-sha-256\n" + rules, auth_type="hba", auth_failure_delay=0)

    def scram_login(password):
        sc = ScramClient("", password)
        return [sasl_initial("SCRAM-SHA-256", sc.first()), lambda server_first: password_msg(sc.final(server_first))]

    cases = [
        ("cmp_scram", "app", scram_login("wrong")),
        ("cmp_ghost", "app", scram_login("wrong")),
        ("cmp_reject", "app", []),
        ("cmp_md5", "app", [password_msg(b"md5" + b"0" * 32 + b"\0")]),
        ("cmp_md5", "app", [password_msg(b"\0")]),
        ("cmp_md5", "app", [password_msg(b"abc")]),
        ("cmp_md5", "app", [pgwire.query_msg("select 1")]),
        ("cmp_scram", "app", [pgwire.query_msg("select 1")]),
        ("cmp_scram", "app", [sasl_initial("SCRAM-SHA-1", b"n,,n=,r=abc")]),
        ("cmp_scram", "app", [password_msg(b"SCRAM-SHA-256")]),
        ("cmp_scram", "app", [password_msg(b"SCRAM-SHA-256\0\0\0")]),
        ("cmp_scram", "app", [password_msg(b"SCRAM-SHA-256\0" + struct.pack("!i", 5) + b"n,,")]),
        ("cmp_scram", "app", [password_msg(b"SCRAM-SHA-256\0" + struct.pack("!i", 2) + b"n,,")]),
        ("cmp_scram", "app", [sasl_initial("SCRAM-SHA-256", b"")]),
        ("cmp_scram", "app", [sasl_initial("SCRAM-SHA-256", b"n,,n=,r=a\0b")]),
        ("cmp_scram", "app", [sasl_initial("SCRAM-SHA-256", b"x,,n=,r=abc")]),
    ]
    for user, dbname, steps in cases:
        want = fatal_on(pg_socket(cluster), user, dbname, steps)
        got = fatal_on(d.socket_path, user, dbname, steps)
        assert got == want, (user, steps)
    # the reject line's words, with the database pglease's client asked for
    assert fatal_on(d.socket_path, "cmp_reject", "app", []) == (
        "FATAL", "28000", 'pg_hba.conf rejects connection for host "[local]", user "cmp_reject", database "app", no encryption')


@pytest.mark.parametrize("user", ["postgres", "nobody_here"])
def test_sasl_initial_response_sent_with_the_startup_packet(pglease, user):
    """Bytes that arrive before the request (in the startup packet's write) are answered too."""
    d = start(pglease, userlist(postgres=PASSWORD), auth_type="scram-sha-256", auth_failure_delay=0)
    sc = ScramClient(user, PASSWORD)
    w = Wire(d.socket_path)
    try:
        w.send(pgwire.startup_packet({"user": user, "database": "app"}) + sasl_initial("SCRAM-SHA-256", sc.first()))
        assert auth_request(w)[0] == 10
        code, server_first = auth_request(w)
        assert code == 11
        w.send(password_msg(sc.final(server_first)))
        if user == "postgres":
            assert auth_request(w)[0] == 12
            assert auth_request(w)[0] == 0
        else:
            f = read_fatal(w)
            assert (f["C"], f["M"]) == ("28P01", BAD_PASSWORD_MSG % user)
    finally:
        w.close()


def scram_salt(d, user):
    w = wire_login(d, user=user)
    try:
        assert auth_request(w)[0] == 10
        w.send(sasl_initial("SCRAM-SHA-256", ScramClient(user, "x").first()))
        code, server_first = auth_request(w)
        assert code == 11
        return dict(kv.split("=", 1) for kv in server_first.decode().split(","))["s"]
    finally:
        w.close()


def test_salt_does_not_tell_a_listed_user_from_a_missing_one(pglease):
    """A plain-text secret's salt is made like the mock's: removing the user from auth_file changes nothing visible."""
    d = start(pglease, userlist(postgres=PASSWORD, other="o"), auth_type="scram-sha-256")
    listed = scram_salt(d, "other")
    write(d, "users.txt", userlist(postgres=PASSWORD, other="changed"))
    d.reload()
    assert scram_salt(d, "other") == listed, "a reload changed a listed user's salt"
    write(d, "users.txt", userlist(postgres=PASSWORD))
    d.reload()
    assert scram_salt(d, "other") == listed, "a missing user's salt differs from the one it had when listed"
    assert scram_salt(d, "postgres") != listed
