"""The listening sockets: one pglease per socket, stale sockets replaced; TCP with listen_addr;
--help and --version."""
import os
import signal
import socket
import subprocess

import psycopg

from harness import clean_env


def _run(binary, *args, timeout=10):
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout,
                          env=clean_env(), stdin=subprocess.DEVNULL)


def test_second_pglease_on_the_same_socket_is_refused(pglease, pglease_bin):
    d = pglease()
    r = _run(pglease_bin, d.config_path)
    assert r.returncode != 0
    assert "another pglease (pid %d) is already running" % d.pid in r.stderr
    # the first one is untouched and keeps serving
    assert os.path.exists(d.socket_path)
    assert d.psql("-Atc", "select 1").stdout.strip() == "1"


def test_stale_socket_left_by_a_crash_is_replaced(pglease, pglease_bin):
    d = pglease()
    os.kill(d.pid, signal.SIGKILL)
    d.proc.wait(timeout=10)
    d.stopped_by_us = True
    assert os.path.exists(d.socket_path), "a killed pglease leaves its socket behind"
    d.stopped_by_us = False
    d.start()
    assert d.psql("-Atc", "select 2").stdout.strip() == "2"


def test_help_and_version(pglease_bin):
    r = _run(pglease_bin, "--help")
    assert r.returncode == 0
    assert "pglease --check CONFIG" in r.stdout
    r = _run(pglease_bin, "--version")
    assert r.returncode == 0
    assert r.stdout.startswith("pglease ")
    r = _run(pglease_bin, "--no-such-flag")
    assert r.returncode == 2
    assert "Usage" in r.stderr


# ---- TCP (listen_addr)

def tcp_psql(host, port, sql="select inet_client_addr() is not null"):
    return subprocess.run(["psql", "-X", "-A", "-t", "-c", sql,
                           "host=%s port=%d dbname=app user=postgres sslmode=disable connect_timeout=5" % (host, port)],
                          capture_output=True, text=True, timeout=30, env=clean_env())


def test_listen_addr_star_serves_ipv4_and_ipv6_beside_the_unix_socket(pglease):
    d = pglease(listen_addr="*")
    for host in ("127.0.0.1", "::1"):
        r = tcp_psql(host, d.port, "select 'tcp ok'")
        assert r.returncode == 0 and r.stdout.strip() == "tcp ok", (host, r.stderr)
    assert d.psql("-Atc", "select 'unix ok'").stdout.strip() == "unix ok"
    log = d.log_text()
    assert "listening on 0.0.0.0:%d" % d.port in log and "listening on [::]:%d" % d.port in log


def test_no_listen_addr_means_no_tcp(pglease):
    d = pglease()
    r = tcp_psql("127.0.0.1", d.port)
    assert r.returncode != 0 and "refused" in r.stderr


def test_show_clients_shows_the_tcp_peer(pglease):
    d = pglease(listen_addr="127.0.0.1")
    with psycopg.connect("host=127.0.0.1 port=%d dbname=app user=postgres sslmode=disable" % d.port,
                         autocommit=True) as conn:
        with socket.socket(fileno=os.dup(conn.pgconn.socket)) as s:
            local_port = s.getsockname()[1]
        with d.connect("pglease") as a:
            cur = a.execute("SHOW CLIENTS")
            names = [c.name for c in cur.description]
            rows = [dict(zip(names, r)) for r in cur.fetchall()]
    tcp = [r for r in rows if r["addr"] == "127.0.0.1"]
    assert len(tcp) == 1 and tcp[0]["port"] == local_port and tcp[0]["tls"] is None, rows
    assert any(r["addr"] == "unix" and r["database"] == "pglease" for r in rows)


def test_an_address_that_cannot_be_bound_stops_the_start_naming_it(pglease, pglease_bin):
    d = pglease(start=False, listen_addr="127.0.0.1, 192.0.2.1")
    d.write_config()
    r = _run(pglease_bin, d.config_path)
    assert r.returncode != 0
    assert "cannot listen on 192.0.2.1:%d (listen_addr): Cannot assign requested address" % d.port in r.stderr


def test_peer_auth_is_refused_over_tcp(pglease):
    d = pglease(listen_addr="127.0.0.1", auth_type="peer")
    r = tcp_psql("127.0.0.1", d.port)
    assert r.returncode != 0
    assert 'peer authentication failed for user "postgres"' in r.stderr


def test_reload_of_listen_addr_needs_a_restart(pglease):
    d = pglease(listen_addr="127.0.0.1")
    d.settings["listen_addr"] = "*"
    d.reload()
    assert 'listen_addr changed from "127.0.0.1" to "*": restart pglease to apply it' in d.log_text()
    assert tcp_psql("::1", d.port).returncode != 0, "the running listeners are kept until a restart"
    assert tcp_psql("127.0.0.1", d.port).returncode == 0
