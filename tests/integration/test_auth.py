"""Client admission: peer authentication and max_client_conn."""
import os

import psycopg
import pytest

import pgwire
from harness import wait_for
from pgwire import Wire, read_fatal

APP = {"user": "postgres", "database": "app"}


def test_peer_auth_accepts_os_user_matching_requested_user(pglease):
    d = pglease(auth_type="peer")
    r = d.psql("-c", "select current_user", user="postgres", os_user="postgres")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "postgres"


def test_peer_auth_rejects_os_user_not_matching_requested_user(pglease):
    assert os.geteuid() == 0, "this test connects as root asking for user postgres"
    d = pglease(auth_type="peer")
    r = d.psql("-c", "select 1", user="postgres")
    assert r.returncode != 0
    assert 'peer authentication failed for user "postgres"' in r.stderr
    # and it keeps serving the right OS user
    r = d.psql("-c", "select 1", user="postgres", os_user="postgres")
    assert r.returncode == 0, r.stderr


def test_peer_auth_refusal_is_fatal_28000(pglease):
    d = pglease(auth_type="peer")
    w = Wire(d.socket_path)
    try:
        w.send(pgwire.startup_packet(APP))
        fields = read_fatal(w)
        assert fields["S"] == "FATAL"
        assert fields["C"] == "28000"
        assert fields["M"] == 'peer authentication failed for user "postgres"'
        assert w.wait_closed(5)
    finally:
        w.close()


def test_trust_auth_accepts_root_as_postgres(pglease):
    d = pglease(auth_type="trust")
    r = d.psql("-c", "select current_user", user="postgres")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "postgres"


def _connect_eventually(d, timeout=5):
    """Connect, retrying briefly: the daemon may still be counting a client that just left."""
    def attempt():
        try:
            return d.connect()
        except psycopg.OperationalError:
            return None
    return wait_for(attempt, timeout, interval=0.1, what="a connection slot")


def test_max_client_conn_exceeded_is_fatal_53300(pglease):
    d = pglease(max_client_conn=2)
    held = [_connect_eventually(d), _connect_eventually(d)]
    try:
        w = Wire(d.socket_path)
        try:
            w.try_send(pgwire.startup_packet(APP))
            fields = read_fatal(w)
            assert fields["S"] == "FATAL"
            assert fields["C"] == "53300"
            assert "max_client_conn" in fields["M"]
            assert w.wait_closed(5)
        finally:
            w.close()
        with pytest.raises(psycopg.OperationalError, match="max_client_conn"):
            d.connect()
        # The held clients are unaffected.
        for c in held:
            assert c.execute("select 1").fetchone()[0] == 1
    finally:
        held.pop().close()
    # A freed slot can be used again.
    c = _connect_eventually(d)
    try:
        assert c.execute("select 2").fetchone()[0] == 2
    finally:
        c.close()
        for h in held:
            h.close()
