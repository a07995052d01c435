"""TCP, TLS and password authentication together, as a remote application meets them:
SCRAM-SHA-256-PLUS bound to pglease's certificate (libpq's channel_binding=require), hostssl /
hostnossl / host rules with PostgreSQL's wording for each encryption state, auth_query over TLS,
many TLS+SCRAM logins on a small pool with backends switching, and a client that vanishes in the
middle of its SASL exchange."""
import os
import shutil
import ssl
import struct
import threading

import psycopg
import pytest

import harness
import pgwire
from harness import wait_for
from pgwire import ScramClient, Wire
from tlsmat import make_ca, make_server_cert

PASSWORD = "tls and scram"
POOL = 2


@pytest.fixture(scope="module")
def certs():
    d = harness.make_tmpdir("pglease-it-tlsauth.")
    make_ca(d, "ca")
    make_server_cert(d, "ca")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def start(pglease, certs, cluster, users=None, hba=None, secret="verifier", **settings):
    """TCP on 127.0.0.1 with TLS offered (prefer: plain TCP is left to the hba rules) and SCRAM
    against an auth_file holding postgres's secret (a SCRAM verifier, or the plain password)."""
    s = dict(listen_addr="127.0.0.1", client_tls_sslmode="prefer",
             client_tls_key_file=os.path.join(certs, "server.key"),
             client_tls_cert_file=os.path.join(certs, "server.crt"),
             auth_type="scram-sha-256", auth_file="users.txt", auth_failure_delay="0",
             default_pool_size=POOL)
    if hba is not None:
        s.update(auth_type="hba", auth_hba_file="hba.conf")
    s.update(settings)
    d = pglease(start=False, **s)
    if users is None:
        users = {"postgres": harness.scram_verifier(cluster, PASSWORD) if secret == "verifier" else PASSWORD}
    with open(os.path.join(d.dir, "users.txt"), "w") as f:
        f.writelines('"%s" "%s"\n' % kv for kv in users.items())
    if hba is not None:
        with open(os.path.join(d.dir, "hba.conf"), "w") as f:
            f.write(hba)
    d.ready_env = {"PGPASSWORD": PASSWORD}
    d.start()
    return d


def tcp_dsn(d, certs, sslmode="verify-full", **kw):
    args = dict(host="localhost", hostaddr="127.0.0.1", port=d.port, dbname="app", user="postgres",
                password=PASSWORD, sslmode=sslmode, sslrootcert=os.path.join(certs, "ca.crt"),
                connect_timeout=10)
    args.update(kw)
    return harness.conninfo(**args)


def connect(dsn):
    return psycopg.connect(dsn, autocommit=True, prepare_threshold=None)


def refusal(dsn):
    with pytest.raises(psycopg.OperationalError) as info:
        connect(dsn)
    return info.value


def tls_wire(d, certs):
    """A raw client over TCP that negotiated TLS with pglease (verified against ca.crt)."""
    w = Wire(("127.0.0.1", d.port))
    w.send(pgwire.ssl_request())
    assert w.read_byte() == b"S"
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.crt"))
    w.sock = ctx.wrap_socket(w.sock, server_hostname="localhost")
    return w


def login_fatal(d, certs, password=PASSWORD, user="postgres", dbname="app", tls=True):
    """(SQLSTATE, message) of the FATAL a raw login gets (SCRAM without binding when asked), over
    TLS or plain TCP; psycopg and psql report the same words but not the SQLSTATE."""
    w = tls_wire(d, certs) if tls else Wire(("127.0.0.1", d.port))
    sc = ScramClient(user, password)
    try:
        w.send(pgwire.startup_packet({"user": user, "database": dbname}))
        while True:
            mtype, body = w.read_message(timeout=15)
            if mtype == b"E":
                f = pgwire.parse_fields(body)
                assert f["S"] == "FATAL", f
                return f["C"], f["M"]
            assert mtype == b"R", (mtype, body)
            code, data = struct.unpack("!I", body[:4])[0], body[4:]
            assert code != 0, "logged in"
            if code == 10:
                first = sc.first()
                w.send(pgwire.message(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first))
            elif code == 11:
                w.send(pgwire.message(b"p", sc.final(data)))
    finally:
        w.close()


@pytest.mark.parametrize("secret", ["verifier", "plain"])
def test_scram_sha_256_plus_with_channel_binding_required(pglease, certs, cluster, secret):
    """libpq with channel_binding=require accepts only SCRAM-SHA-256-PLUS: the login succeeds
    over TLS, which proves pglease offered -PLUS and bound the exchange to its own certificate
    (a wrong tls-server-end-point hash fails the proof)."""
    d = start(pglease, certs, cluster, secret=secret)
    with connect(tcp_dsn(d, certs, channel_binding="require")) as c:
        assert c.pgconn.ssl_in_use
        assert c.execute("select current_user").fetchone()[0] == "postgres"
    # The premise: where no binding is possible, the same client refuses to log in.
    err = refusal(tcp_dsn(d, certs, sslmode="disable", channel_binding="require"))
    assert "channel binding" in str(err), err
    err = refusal(d.dsn(password=PASSWORD, channel_binding="require"))
    assert "channel binding" in str(err), err


def test_wrong_password_over_tls(pglease, certs, cluster):
    d = start(pglease, certs, cluster)
    assert login_fatal(d, certs, password="not it") == \
        ("28P01", 'password authentication failed for user "postgres"')
    assert 'password authentication failed for user "postgres"' in str(refusal(tcp_dsn(d, certs, password="no")))
    # An unknown user is told the same, over TLS too.
    assert login_fatal(d, certs, user="nobody_here") == \
        ("28P01", 'password authentication failed for user "nobody_here"')


HBA = """\
local    all  all                    scram-sha-256
hostssl  app  all       127.0.0.1/32 scram-sha-256
hostnossl app postgres  127.0.0.1/32 reject
"""


def test_hostssl_and_hostnossl_lines(pglease, certs, cluster):
    d = start(pglease, certs, cluster, hba=HBA)
    with connect(tcp_dsn(d, certs)) as c:
        assert c.pgconn.ssl_in_use
        assert c.execute("select 1").fetchone()[0] == 1
    assert login_fatal(d, certs, tls=False) == \
        ("28000", 'pg_hba.conf rejects connection for host "127.0.0.1", user "postgres", database "app", '
                  'no encryption')
    # No line for another database: PostgreSQL's words name the encryption in use.
    assert login_fatal(d, certs, dbname="postgres") == \
        ("28000", 'no pg_hba.conf entry for host "127.0.0.1", user "postgres", database "postgres", '
                  'SSL encryption')


def test_plain_host_line_is_skipped_by_a_tls_client(pglease, certs, cluster):
    """hostnossl matches only plain TCP; host matches both."""
    hba = ("local all all scram-sha-256\n"
           "hostnossl all all 127.0.0.1/32 scram-sha-256\n")
    d = start(pglease, certs, cluster, hba=hba)
    with connect(tcp_dsn(d, certs, sslmode="disable")) as c:
        assert not c.pgconn.ssl_in_use
    assert login_fatal(d, certs) == \
        ("28000", 'no pg_hba.conf entry for host "127.0.0.1", user "postgres", database "app", SSL encryption')


@pytest.fixture
def looked_up_role(cluster):
    role = "tlsaq_user"
    with cluster.connect("postgres") as c:
        c.execute("drop role if exists %s" % role)
        c.execute("set password_encryption = 'scram-sha-256'")
        c.execute("create role %s login password '%s'" % (role, PASSWORD))
    yield role
    with cluster.connect("postgres") as c:
        c.execute("select pg_terminate_backend(pid) from pg_stat_activity where usename = %s", (role,))
        c.execute("drop role if exists %s" % role)


def test_auth_query_user_over_tls_with_channel_binding(pglease, certs, cluster, looked_up_role):
    """A role only PostgreSQL knows logs in over TLS with SCRAM-SHA-256-PLUS: its verifier comes
    from auth_query, its backend is its own pool's."""
    d = start(pglease, certs, cluster, auth_user="postgres")
    with connect(tcp_dsn(d, certs, user=looked_up_role, channel_binding="require")) as c:
        assert c.execute("select current_user").fetchone()[0] == looked_up_role
    assert login_fatal(d, certs, user=looked_up_role, password="wrong") == \
        ("28P01", 'password authentication failed for user "%s"' % looked_up_role)


def test_many_tls_scram_logins_share_a_small_pool(pglease, certs, cluster):
    """40 clients, each logging in over TLS with SCRAM-SHA-256-PLUS three times, on a pool of 2:
    every login and query succeeds, and the clients really share (switch between) the two
    backends."""
    d = start(pglease, certs, cluster, secret="plain")
    dsn = tcp_dsn(d, certs, channel_binding="require")
    pids, errors, lock = [], [], threading.Lock()

    def client():
        try:
            for _ in range(3):
                with connect(dsn) as c:
                    pid = c.execute("select pg_backend_pid()").fetchone()[0]
                    with lock:
                        pids.append(pid)
        except Exception as e:  # noqa: BLE001 - reported below
            with lock:
                errors.append(repr(e))

    threads = [threading.Thread(target=client) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors[:3]
    assert len(pids) == 120
    assert 1 <= len(set(pids)) <= POOL, "more backends than the pool holds: %r" % sorted(set(pids))
    # 120 sessions on at most 2 backends: consecutive sessions landed on backends others had used.
    assert len(pids) > len(set(pids))


def read_message(w):
    mtype, body = w.read_message(timeout=10)
    return mtype, body


def test_client_gone_in_the_middle_of_sasl_over_tls(pglease, certs, cluster):
    """A TLS client that leaves after AuthenticationSASL (which must offer -PLUS first) or after
    its SASLInitialResponse leaves nothing behind, and others log in meanwhile."""
    d = start(pglease, certs, cluster)
    for stage in ("after-offer", "after-first"):
        w = Wire(("127.0.0.1", d.port))
        w.send(pgwire.ssl_request())
        assert w.read_byte() == b"S"
        ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.crt"))
        w.sock = ctx.wrap_socket(w.sock, server_hostname="localhost")
        w.send(pgwire.startup_packet({"user": "postgres", "database": "app"}))
        mtype, body = read_message(w)
        assert mtype == b"R" and struct.unpack("!I", body[:4])[0] == 10, (mtype, body)
        mechanisms = [m for m in body[4:].split(b"\0") if m]
        assert mechanisms == [b"SCRAM-SHA-256-PLUS", b"SCRAM-SHA-256"], mechanisms
        if stage == "after-first":
            first = b"p=tls-server-end-point,,n=,r=abcdefghijklmnopqrstuvwx"
            mech = b"SCRAM-SHA-256-PLUS\0"
            w.send(pgwire.message(b"p", mech + struct.pack("!i", len(first)) + first))
            mtype, body = read_message(w)
            assert mtype == b"R" and struct.unpack("!I", body[:4])[0] == 11, (mtype, body)
        w.close()
        with connect(tcp_dsn(d, certs)) as c:
            assert c.execute("select 1").fetchone()[0] == 1

    def login_clients():
        with d.connect("pglease", password=PASSWORD) as a:
            cur = a.execute("SHOW CLIENTS")
            names = [col.name for col in cur.description]
            return [r for r in (dict(zip(names, row)) for row in cur.fetchall()) if r["state"] == "login"]
    wait_for(lambda: not login_clients(), what="no client left in its login")
