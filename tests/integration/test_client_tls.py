"""Clients over TCP with TLS: pglease's own certificate (client_tls_*), made with openssl at
test time, verified by psql, psycopg and pgbench with sslmode=verify-full against 127.0.0.1;
plain TCP refused when TLS is required; client certificates for verify-full; a certificate
swap on RELOAD. The backend link stays plain (the Unix socket): what is tested is the
client side of the relay."""
import ctypes
import os
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import threading
import time
import uuid

import psycopg
import pytest

import harness
from harness import clean_env, kill9, read_lines_until, spawn_client, wait_backend_state, wait_for
import pgwire
from pgwire import Wire, read_fatal
from tlsmat import make_ca, make_cert, make_server_cert

POOL = 3


@pytest.fixture(scope="module")
def certs():
    d = harness.make_tmpdir("pglease-it-ctls.")
    make_ca(d, "ca")
    make_ca(d, "other_ca")
    make_server_cert(d, "ca")
    make_server_cert(d, "other_ca", name="server2")
    make_cert(d, "ca", "client", "postgres")
    make_cert(d, "ca", "mallory", "mallory")
    make_cert(d, "other_ca", "stranger", "postgres")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def tls_daemon(pglease, certs, sslmode="require", pool_size=POOL, **settings):
    s = dict(listen_addr="127.0.0.1", client_tls_sslmode=sslmode,
             client_tls_key_file=os.path.join(certs, "server.key"),
             client_tls_cert_file=os.path.join(certs, "server.crt"),
             client_tls_ca_file=os.path.join(certs, "ca.crt"),
             default_pool_size=pool_size)
    s.update(settings)
    return pglease(**s)


def tcp_dsn(d, certs, sslmode="verify-full", ca="ca", host="localhost", **kw):
    args = dict(host=host, hostaddr="127.0.0.1", port=d.port, dbname="app", user="postgres",
                sslmode=sslmode, connect_timeout=10)
    if sslmode.startswith("verify"):
        args["sslrootcert"] = os.path.join(certs, "%s.crt" % ca)
    args.update(kw)
    return harness.conninfo(**args)


def tcp_connect(d, certs, **kw):
    return psycopg.connect(tcp_dsn(d, certs, **kw), autocommit=True, prepare_threshold=None)


def show_clients(d):
    with d.connect("pglease") as a:
        cur = a.execute("SHOW CLIENTS")
        names = [c.name for c in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]


def row_of(d, conn):
    """conn's row in SHOW CLIENTS, found by its local TCP port."""
    port = conn.pgconn.socket and socket.socket(fileno=os.dup(conn.pgconn.socket)).getsockname()[1]
    rows = [r for r in show_clients(d) if r["addr"] == "127.0.0.1" and r["port"] == port]
    assert len(rows) == 1, "no SHOW CLIENTS row for local port %s: %r" % (port, show_clients(d))
    return rows[0]


def tls_wire(d, certs, cert=None):
    """A raw TCP client that negotiated TLS (verifying pglease against ca.crt), optionally with a client cert."""
    w = Wire(("127.0.0.1", d.port))
    w.send(pgwire.ssl_request())
    assert w.read_byte() == b"S"
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.crt"))
    if cert:
        ctx.load_cert_chain(os.path.join(certs, cert + ".crt"), os.path.join(certs, cert + ".key"))
    w.sock = ctx.wrap_socket(w.sock, server_hostname="localhost")
    return w


def refused_with(w, sqlstate, message):
    try:
        w.send(pgwire.startup_packet({"user": "postgres", "database": "app"}))
        f = read_fatal(w)
        assert (f.get("S"), f.get("C"), f.get("M")) == ("FATAL", sqlstate, message), f
        assert w.wait_closed(5)
    finally:
        w.close()


def test_psycopg_verify_full_over_tcp_reports_tls(pglease, certs):
    d = tls_daemon(pglease, certs)
    with tcp_connect(d, certs) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("select current_database()").fetchone()[0] == "app"
        row = row_of(d, conn)
        assert row["tls"].startswith("TLSv1.3/TLS_"), row
        assert row["database"] == "app" and row["user"] == "postgres"
    # The Unix-socket console client itself shows no TLS and addr "unix".
    assert all(r["tls"] is None for r in show_clients(d) if r["addr"] == "unix")


def test_psql_verify_full_over_tcp(pglease, certs):
    d = tls_daemon(pglease, certs)
    r = subprocess.run(["psql", "-X", "-A", "-t", "-c", "select 'psql over ' || 'tls'", "-c", "\\conninfo",
                        tcp_dsn(d, certs)], capture_output=True, text=True, timeout=30, env=clean_env())
    assert r.returncode == 0, r.stderr
    assert "psql over tls" in r.stdout
    assert "SSL connection (protocol: TLSv1.3" in r.stdout, r.stdout


def test_wrong_root_ca_fails_with_a_clear_error(pglease, certs):
    d = tls_daemon(pglease, certs)
    with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
        tcp_connect(d, certs, ca="other_ca")
    wait_for(lambda: "could not accept SSL connection" in d.log_text(), what="the refused handshake in the log")
    with tcp_connect(d, certs) as conn:   # the daemon is fine
        assert conn.execute("select 1").fetchone()[0] == 1


def test_plain_tcp_refused_when_tls_required(pglease, certs):
    d = tls_daemon(pglease, certs, sslmode="require")
    message = 'no pg_hba.conf entry for host "127.0.0.1", user "postgres", database "app", no encryption'
    with pytest.raises(psycopg.OperationalError, match="FATAL:  " + message.replace('"', '.')):
        tcp_connect(d, certs, sslmode="disable")
    refused_with(Wire(("127.0.0.1", d.port)), "28000", message)
    # Through TLS the same client is served.
    w = tls_wire(d, certs)
    try:
        w.startup({"user": "postgres", "database": "app"})
        assert w.scalar("select 'raw tls'") == "raw tls"
    finally:
        w.terminate()


def test_plain_tcp_served_when_tls_preferred(pglease, certs):
    d = tls_daemon(pglease, certs, sslmode="prefer")
    with tcp_connect(d, certs, sslmode="disable") as conn:
        assert not conn.pgconn.ssl_in_use
        assert conn.execute("select 41 + 1").fetchone()[0] == 42
        row = row_of(d, conn)
        assert row["tls"] is None
    with tcp_connect(d, certs, sslmode="prefer") as conn:
        assert conn.pgconn.ssl_in_use


def test_unix_socket_ssl_request_gets_N(pglease, certs):
    d = tls_daemon(pglease, certs, sslmode="require")
    w = Wire(d.socket_path)
    try:
        w.send(pgwire.ssl_request())
        assert w.read_byte() == b"N"
        w.startup({"user": "postgres", "database": "app"})
        assert w.scalar("select 'unix, no tls'") == "unix, no tls"
    finally:
        w.terminate()


def fatal_fields(w):
    mtype, body = w.read_message()
    assert mtype == b"E", (mtype, body)
    return pgwire.parse_fields(body)


def test_bytes_after_ssl_request_are_refused(pglease, certs):
    d = tls_daemon(pglease, certs, sslmode="prefer")
    w = Wire(("127.0.0.1", d.port))
    try:
        w.send(pgwire.ssl_request() + pgwire.startup_packet({"user": "postgres", "database": "app"}))
        assert w.read_byte() == b"S"
        f = fatal_fields(w)   # in plain text: no TLS was started
        assert f["C"] == "08P01" and f["M"] == "received unencrypted data after SSL request"
        assert w.wait_closed(5)
    finally:
        w.close()


def test_ssl_request_over_tcp_with_tls_disabled_gets_N(pglease, certs):
    d = tls_daemon(pglease, certs, sslmode="disable")
    w = Wire(("127.0.0.1", d.port))
    try:
        w.send(pgwire.ssl_request())
        assert w.read_byte() == b"N"
        w.startup({"user": "postgres", "database": "app"})
        assert w.scalar("select 'plain tcp'") == "plain tcp"
    finally:
        w.terminate()


@pytest.mark.timeout(120)
def test_pgbench_over_tls_with_more_clients_than_backends(pglease, certs, cluster):
    d = tls_daemon(pglease, certs, pool_size=3)
    init = subprocess.run(["pgbench", "-i", "-q", "-s", "1", cluster.dsn("app", user="postgres")],
                          capture_output=True, text=True, timeout=60, env=clean_env())
    assert init.returncode == 0, init.stderr
    try:
        r = subprocess.run(["pgbench", "-n", "-c", "20", "-j", "2", "-t", "30", "-S", tcp_dsn(d, certs)],
                           capture_output=True, text=True, timeout=100, env=clean_env())
        assert r.returncode == 0, r.stdout + r.stderr
        assert "number of failed transactions: 0" in r.stdout or "failed" not in r.stdout, r.stdout
        assert "number of transactions actually processed: 600/600" in r.stdout, r.stdout
        # A new connection (and TLS handshake) per transaction: 200 handshakes, 10 at a time.
        r = subprocess.run(["pgbench", "-n", "-C", "-c", "10", "-j", "2", "-t", "20", "-S", tcp_dsn(d, certs)],
                           capture_output=True, text=True, timeout=100, env=clean_env())
        assert r.returncode == 0, r.stdout + r.stderr
        assert "number of transactions actually processed: 200/200" in r.stdout, r.stdout
    finally:
        with cluster.connect("app") as c:
            c.execute("drop table if exists pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers")


@pytest.mark.timeout(120)
def test_large_result_and_copy_over_tls_are_byte_exact(pglease, certs):
    d = tls_daemon(pglease, certs)
    with tcp_connect(d, certs) as conn:
        # ~40 MB in one result.
        rows = conn.execute("select i, repeat(md5(i::text), 40) from generate_series(1, 30000) i").fetchall()
        assert len(rows) == 30000
        assert all(v == (__import__("hashlib").md5(str(i).encode()).hexdigest() * 40) for i, v in rows)
        conn.execute("drop table if exists tls_copy")
        conn.execute("create table tls_copy (i int, v text)")
        try:
            payload = "".join("%d\t%s\n" % (i, "x%dy" % i * 50) for i in range(100000)).encode()
            with conn.cursor() as cur:
                with cur.copy("copy tls_copy from stdin") as cp:
                    for k in range(0, len(payload), 65536):
                        cp.write(payload[k:k + 65536])
                out = bytearray()
                with cur.copy("copy (select * from tls_copy order by i) to stdout") as cp:
                    for chunk in cp:
                        out += chunk
            assert len(payload) > 10_000_000
            assert bytes(out) == payload
        finally:
            conn.execute("drop table tls_copy")


def test_killed_client_mid_transaction_over_tls_rolls_back_and_backend_is_reused(pglease, certs, direct):
    d = tls_daemon(pglease, certs, pool_size=1)
    m = "tls-kill-%s" % uuid.uuid4().hex[:8]
    p = spawn_client(tcp_dsn(d, certs), ["begin", "insert into items(val) values ('%s')" % m])
    try:
        lines = read_lines_until(p, "READY")
        assert lines[1:3] == ["OK", "OK"], lines
        hit = wait_backend_state(direct, lambda r: r[1] == "idle in transaction" and r[3],
                                 what="the client's backend idle in transaction")
        pid = hit[0][0]
        row = [r for r in show_clients(d) if r["backend_pid"] == pid]
        assert len(row) == 1 and row[0]["tls"] and row[0]["addr"] == "127.0.0.1", row
        kill9(p)
    finally:
        kill9(p)
    wait_backend_state(direct, lambda r: r[0] == pid and r[1] == "idle", what="the backend rolled back and idle")
    assert direct.execute("select count(*) from items where val = %s", (m,)).fetchone()[0] == 0
    with tcp_connect(d, certs) as conn:
        assert conn.pgconn.ssl_in_use
        assert conn.execute("select pg_backend_pid()").fetchone()[0] == pid


def test_certificate_swap_on_reload(pglease, certs):
    d = tls_daemon(pglease, certs)
    old = tcp_connect(d, certs)
    try:
        assert old.execute("select 1").fetchone()[0] == 1
        d.settings["client_tls_cert_file"] = os.path.join(certs, "server2.crt")
        d.settings["client_tls_key_file"] = os.path.join(certs, "server2.key")
        d.reload()
        wait_for(lambda: "certificate %s loaded" % os.path.join(certs, "server2.crt") in d.log_text(),
                 what="the new certificate in the log")
        with tcp_connect(d, certs, ca="other_ca") as new:
            assert new.execute("select 'new cert'").fetchone()[0] == "new cert"
        with pytest.raises(psycopg.OperationalError, match="certificate verify failed"):
            tcp_connect(d, certs, ca="ca")
        # The connection made before keeps its session (and its certificate).
        assert old.execute("select 'still here'").fetchone()[0] == "still here"
        # A broken certificate on reload keeps the running one.
        d.settings["client_tls_cert_file"] = os.path.join(certs, "missing.crt")
        d.reload()
        wait_for(lambda: "keeps the running certificate" in d.log_text(), what="the refused certificate in the log")
        assert "missing.crt" in d.log_text()
        with tcp_connect(d, certs, ca="other_ca") as new:
            assert new.execute("select 2").fetchone()[0] == 2
    finally:
        old.close()


def test_verify_full_client_certificates(pglease, certs):
    d = tls_daemon(pglease, certs, sslmode="verify-full")
    good = dict(sslcert=os.path.join(certs, "client.crt"), sslkey=os.path.join(certs, "client.key"))
    with tcp_connect(d, certs, **good) as conn:
        assert conn.execute("select 'cert ok'").fetchone()[0] == "cert ok"
    with pytest.raises(psycopg.OperationalError, match='certificate authentication failed for user "postgres"'):
        tcp_connect(d, certs, sslcert=os.path.join(certs, "mallory.crt"), sslkey=os.path.join(certs, "mallory.key"))
    refused_with(tls_wire(d, certs, cert="mallory"), "28000", 'certificate authentication failed for user "postgres"')
    # A certificate from another CA, and none at all, fail the handshake.
    with pytest.raises(psycopg.OperationalError, match="alert unknown ca"):
        tcp_connect(d, certs, sslcert=os.path.join(certs, "stranger.crt"), sslkey=os.path.join(certs, "stranger.key"))
    with pytest.raises(psycopg.OperationalError, match="alert certificate required"):
        tcp_connect(d, certs, sslcert="/nonexistent", sslkey="/nonexistent")
    # Plain TCP is refused as under require.
    refused_with(Wire(("127.0.0.1", d.port)), "28000",
                 'no pg_hba.conf entry for host "127.0.0.1", user "postgres", database "app", no encryption')


def pidfd_getfd(pid, fd):
    """A copy of another process's descriptor (pidfd_open + pidfd_getfd, Linux 5.6; needs ptrace rights)."""
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(pid)
    try:
        r = libc.syscall(438, pidfd, fd, 0)   # SYS_pidfd_getfd
        if r < 0:
            raise OSError(ctypes.get_errno(), "pidfd_getfd")
        return r
    finally:
        os.close(pidfd)


def test_accepted_tcp_sockets_have_nodelay_and_keepalive(pglease, certs):
    d = tls_daemon(pglease, certs, sslmode="prefer", tcp_keepidle=77)
    with tcp_connect(d, certs, sslmode="disable") as conn:
        with socket.socket(fileno=os.dup(conn.pgconn.socket)) as mine:
            local = mine.getsockname()
        found = None
        for name in os.listdir("/proc/%d/fd" % d.pid):
            try:
                fd = pidfd_getfd(d.pid, int(name))
            except OSError as e:
                pytest.skip("cannot copy pglease's descriptors (%s)" % e) if e.errno == 1 else None
                continue
            try:
                s = socket.socket(fileno=fd)
            except OSError:
                os.close(fd)
                continue
            with s:
                try:
                    if s.family == socket.AF_INET and s.getpeername() == local:
                        found = (s.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY),
                                 s.getsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE),
                                 s.getsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE))
                except OSError:
                    pass
        assert found is not None, "pglease's socket for our connection not found"
        assert found[0] != 0 and found[1] != 0 and found[2] == 77, found


def queries_of_exactly(total, tag):
    """Query messages ('select N -- padding') whose bytes add up to exactly total; (bytes, count)."""
    msgs, size, i = [], 0, 0
    while total - size > 0:
        left = total - size
        overhead = len(pgwire.query_msg("select %d -- " % i))
        pad = min(2000, left - overhead) if left - overhead >= 2000 + 40 else left - overhead
        assert pad >= 0
        m = pgwire.query_msg("select %d -- %s" % (i, (tag * pad)[:pad]))
        msgs.append(m)
        size += len(m)
        i += 1
    data = b"".join(msgs)
    assert len(data) == total
    return data, len(msgs)


def test_bytes_left_inside_openssl_are_read_without_new_socket_data(pglease, certs):
    """The client's buffer fills while it waits for a backend, so the last TLS record is read only
    in part: the rest sits decrypted inside OpenSSL, where epoll cannot see it. When the lease
    comes, pglease must read it without any new bytes arriving on the socket."""
    d = tls_daemon(pglease, certs, pool_size=1)
    holder = tcp_connect(d, certs)
    holder.autocommit = False
    holder.execute("select 1")                     # holds the only backend
    w = tls_wire(d, certs)
    try:
        w.startup({"user": "postgres", "database": "app"})
        first = pgwire.query_msg("select 'first' -- " + "p" * (100 - 24))
        assert len(first) == 100
        w.send(first)                              # one TLS record: the client starts waiting
        wait_for(lambda: any(r["state"] == "waiting" for r in show_clients(d)), what="the client waiting")
        data, n = queries_of_exactly(32768, "q")   # two full 16 KiB records; the buffer takes 32668 bytes
        w.send(data)
        time.sleep(0.5)                            # pglease reads until its buffer is full
        holder.commit()
        for k in range(n + 1):
            r = w.collect_until_ready(timeout=10)
            assert r["error"] is None, r["error"]
        assert w.scalar("select 'after'") == "after"
    finally:
        w.terminate()
        holder.close()


def test_a_slow_reader_over_tls_gets_its_whole_result(pglease, certs):
    """pglease's SSL_write meets a full socket (WANT_WRITE) and resumes from a moved buffer."""
    d = tls_daemon(pglease, certs)
    w = tls_wire(d, certs)
    try:
        w.startup({"user": "postgres", "database": "app"})
        w.send(pgwire.query_msg("select i, repeat('z', 200) from generate_series(1, 40000) i"))
        time.sleep(1.5)                            # ~9 MB wait in the socket, OpenSSL and pglease's buffers
        r = w.collect_until_ready(timeout=60)
        assert r["error"] is None
        assert len(r["rows"]) == 40000
        assert [int(row[0]) for row in r["rows"]] == list(range(1, 40001))
        assert all(row[1] == b"z" * 200 for row in r["rows"])
        assert w.scalar("select 'next'") == "next"
    finally:
        w.terminate()


def stalled_in_handshake(d):
    """A TCP client that asked for TLS, got 'S', and never sends its ClientHello."""
    w = Wire(("127.0.0.1", d.port))
    w.send(pgwire.ssl_request())
    assert w.read_byte() == b"S"
    return w


def bytes_until_closed(w, timeout=10.0):
    """Everything the server sends until it closes the connection."""
    got = b""
    w.sock.settimeout(timeout)
    while True:
        try:
            chunk = w.sock.recv(65536)
        except ConnectionResetError:
            return got
        if not chunk:
            return got
        got += chunk


def test_a_handshake_that_never_comes_is_ended_by_client_login_timeout(pglease, certs):
    d = tls_daemon(pglease, certs, client_login_timeout=1)
    w = stalled_in_handshake(d)
    try:
        assert bytes_until_closed(w, 5) == b""
        assert "client_login_timeout" in d.log_text()
        with tcp_connect(d, certs) as conn:
            assert conn.execute("select 1").fetchone()[0] == 1
    finally:
        w.close()


def test_shutdown_with_a_client_in_its_handshake(pglease, certs):
    d = tls_daemon(pglease, certs)
    w = stalled_in_handshake(d)
    try:
        d.signal(signal.SIGTERM)
        # Its FATAL 57P01 cannot be said mid-handshake, and must not go out in plain text.
        assert bytes_until_closed(w, 10) == b""
        assert d.wait_exit(10) == 0
    finally:
        w.close()


def test_protocols_and_ciphers_are_applied(pglease, certs):
    d = tls_daemon(pglease, certs, client_tls_protocols="tlsv1.2", client_tls_ciphers="ECDHE-RSA-AES128-GCM-SHA256")
    with tcp_connect(d, certs) as conn:
        assert row_of(d, conn)["tls"] == "TLSv1.2/ECDHE-RSA-AES128-GCM-SHA256"
    # A client that insists on TLS 1.3 finds no common protocol.
    with pytest.raises(psycopg.OperationalError, match="SSL error"):
        tcp_connect(d, certs, ssl_min_protocol_version="TLSv1.3")


@pytest.mark.parametrize("key,value,message", [
    ("client_tls_cert_file", "/nonexistent.crt", 'client_tls_cert_file "/nonexistent.crt": cannot load the certificate'),
    ("client_tls_key_file", "/nonexistent.key", 'client_tls_key_file "/nonexistent.key": cannot load the private key'),
    ("client_tls_ca_file", "/nonexistent-ca.crt", 'client_tls_ca_file "/nonexistent-ca.crt": cannot load the CA certificates'),
    ("client_tls_key_file", "client.key", "does not match client_tls_cert_file"),
    ("client_tls_ciphers", "NO-SUCH-CIPHER", 'client_tls_ciphers "NO-SUCH-CIPHER"'),
], ids=["cert", "key", "ca", "mismatch", "ciphers"])
def test_tls_files_that_do_not_load_stop_the_start(pglease, certs, key, value, message):
    if not value.startswith("/") and key.endswith("_file"):
        value = os.path.join(certs, value)
    d = tls_daemon(pglease, certs, start=False, **{key: value})
    d.write_config()
    r = subprocess.run([d.binary, d.config_path], capture_output=True, text=True, timeout=20, env=clean_env(),
                       stdin=subprocess.DEVNULL)
    assert r.returncode != 0
    assert message in r.stderr, r.stderr
    assert not os.path.exists(d.socket_path), "nothing listens when TLS cannot be set up"
    r = subprocess.run([d.binary, "--check", d.config_path], capture_output=True, text=True, timeout=20,
                       env=clean_env(), stdin=subprocess.DEVNULL)
    assert r.returncode == 1 and message in r.stderr, "--check loads the TLS files too: %r" % r.stderr


def test_garbage_instead_of_a_client_hello_fails_the_handshake_only(pglease, certs):
    d = tls_daemon(pglease, certs)
    w = Wire(("127.0.0.1", d.port))
    try:
        w.send(pgwire.ssl_request())
        assert w.read_byte() == b"S"
        w.send(pgwire.startup_packet({"user": "postgres", "database": "app"}))   # plain text, too late
        bytes_until_closed(w, 5)                   # an alert at most; then closed
    finally:
        w.close()
    wait_for(lambda: "could not accept SSL connection" in d.log_text(), what="the failed handshake in the log")
    with tcp_connect(d, certs) as conn:
        assert conn.execute("select 'still serving'").fetchone()[0] == "still serving"


@pytest.mark.parametrize("request_packet, minor", [(pgwire.ssl_request, 5679), (pgwire.gssenc_request, 5680)])
def test_a_second_negotiation_inside_tls_is_refused_as_postgresql_does(pglease, certs, request_packet, minor):
    """PostgreSQL takes an SSLRequest or GSSENCRequest that comes once TLS is up for a startup
    packet of protocol 1234.5679 (1234.5680) and refuses it; pglease answered 'N' inside TLS."""
    d = tls_daemon(pglease, certs)
    w = tls_wire(d, certs)
    try:
        w.send(request_packet())
        f = read_fatal(w)
        assert (f.get("S"), f.get("C"), f.get("M")) == \
            ("FATAL", "0A000", "unsupported frontend protocol 1234.%d: server supports 3.0 to 3.0" % minor), f
        assert w.wait_closed(5)
    finally:
        w.close()
    with tcp_connect(d, certs) as c:   # others are unaffected
        assert c.execute("select 1").fetchone() == (1,)
