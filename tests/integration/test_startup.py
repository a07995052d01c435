"""Startup protocol at the raw socket level: SSL/GSSENC refusal, protocol versions,
malformed and oversized packets, login timeout. After every bad input the daemon
must keep serving other clients."""
import struct
import time

import pytest

import pgwire
from pgwire import Wire, read_fatal


def assert_still_serving(d):
    d.check_alive()
    r = d.psql("-c", "select 1")
    assert r.returncode == 0 and r.stdout.strip() == "1", "pglease stopped serving: %s" % r.stderr
    w = Wire(d.socket_path)
    try:
        w.startup({"user": "postgres", "database": "app"})
        assert w.scalar("select 2") == "2"
    finally:
        w.terminate()


def expect_fatal_and_close(w, sqlstate, timeout=10):
    fields = read_fatal(w, timeout)
    assert fields.get("S") == "FATAL", fields
    assert fields.get("C") == sqlstate, fields
    assert fields.get("M"), fields
    assert w.wait_closed(5), "server did not close the connection after FATAL"
    return fields


APP = {"user": "postgres", "database": "app"}


@pytest.mark.parametrize("requests", [["ssl"], ["gssenc"], ["gssenc", "ssl"]], ids=["ssl", "gssenc", "gssenc_then_ssl"])
def test_encryption_requests_are_answered_N_then_startup_proceeds(pglease, requests):
    d = pglease()
    w = Wire(d.socket_path)
    try:
        for req in requests:
            w.send(pgwire.ssl_request() if req == "ssl" else pgwire.gssenc_request())
            assert w.read_byte() == b"N"
        msgs = w.startup(APP)
        assert msgs[0][0] == b"R" and struct.unpack("!I", msgs[0][1][:4])[0] == 0, "expected AuthenticationOk"
        assert w.status == b"I"
        assert w.scalar("select 'after ' || 'encryption refusal'") == "after encryption refusal"
    finally:
        w.terminate()


def test_startup_reports_parameters_key_and_ready(pglease):
    d = pglease()
    w = Wire(d.socket_path)
    try:
        msgs = w.startup(dict(APP, client_encoding="UTF8", application_name="startup-check"))
        types = [m[0] for m in msgs]
        assert types[0] == b"R"
        assert types[-1] == b"Z" and w.status == b"I"
        assert b"K" in types, "no BackendKeyData"
        for name in ("server_version", "server_encoding", "client_encoding", "DateStyle", "TimeZone",
                     "integer_datetimes", "standard_conforming_strings"):
            assert name in w.params, "no ParameterStatus for %s (got %r)" % (name, w.params)
        assert w.params["client_encoding"] == "UTF8"
        assert w.params["server_version"].startswith("15")
        assert w.scalar("select current_database()") == "app"
    finally:
        w.terminate()


def test_minor_protocol_version_gets_negotiate_protocol_version(pglease):
    d = pglease()
    w = Wire(d.socket_path)
    try:
        msgs = w.startup(APP, version=(3 << 16) | 5)
        types = [m[0] for m in msgs]
        assert b"v" in types, "no NegotiateProtocolVersion for protocol 3.5 (got %r)" % types
        v = msgs[types.index(b"v")][1]
        newest, _unknown = pgwire.parse_negotiate_protocol_version(v)
        # As PostgreSQL sends it, and libpq reads it: the full version code (196608 for 3.0),
        # though the protocol documentation describes the bare minor number.
        assert newest == 3 << 16, "NegotiateProtocolVersion offered %r" % newest
        assert types.index(b"v") < types.index(b"Z")
        assert w.status == b"I"
        assert w.scalar("select 'negotiated'") == "negotiated"
    finally:
        w.terminate()
    assert_still_serving(d)


def test_unknown_protocol_options_are_listed_in_negotiate_protocol_version(pglease):
    d = pglease()
    w = Wire(d.socket_path)
    try:
        msgs = w.startup(dict(APP, **{"_pq_.frobnicate": "on"}))
        types = [m[0] for m in msgs]
        assert b"v" in types, "no NegotiateProtocolVersion for a _pq_ option (got %r)" % types
        _newest, unknown = pgwire.parse_negotiate_protocol_version(msgs[types.index(b"v")][1])
        assert unknown == ["_pq_.frobnicate"]
        assert w.scalar("select 'ok'") == "ok"
    finally:
        w.terminate()


def test_protocol_2_startup_is_refused_in_its_own_format(pglease):
    # As PostgreSQL answers it: protocol 2's ErrorResponse, 'E' and a line of text.
    d = pglease()
    w = Wire(d.socket_path)
    want = b"EFATAL:  unsupported frontend protocol 2.0: server supports 3.0 to 3.0\n\0"
    try:
        w.send(pgwire.startup_packet(APP, version=pgwire.PROTOCOL_2_0))
        assert w.recv_exact(len(want)) == want
        assert w.wait_closed(5), "server did not close the connection after FATAL"
    finally:
        w.close()
    assert_still_serving(d)


@pytest.mark.parametrize("length", [0, 4, 7])
def test_startup_length_below_8_is_refused_with_08P01(pglease, length):
    d = pglease()
    w = Wire(d.socket_path)
    try:
        w.send(struct.pack("!II", length, pgwire.PROTOCOL_3_0))
        expect_fatal_and_close(w, "08P01")
    finally:
        w.close()
    assert_still_serving(d)


@pytest.mark.parametrize("length", [10001, 1 << 20, 0x7FFFFFFF, 0xFFFFFFFF])
def test_startup_length_above_10000_is_refused_without_waiting_for_body(pglease, length):
    d = pglease(client_login_timeout=30)
    w = Wire(d.socket_path)
    try:
        w.send(struct.pack("!II", length, pgwire.PROTOCOL_3_0))
        t0 = time.monotonic()
        expect_fatal_and_close(w, "08P01", timeout=5)
        assert time.monotonic() - t0 < 5
    finally:
        w.close()
    assert_still_serving(d)


def test_startup_packet_over_10000_bytes_is_refused_with_08P01(pglease):
    d = pglease()
    pkt = pgwire.startup_packet(dict(APP, application_name="x" * 10100))
    assert len(pkt) > 10000
    w = Wire(d.socket_path)
    try:
        w.try_send(pkt)
        expect_fatal_and_close(w, "08P01")
    finally:
        w.close()
    assert_still_serving(d)


def test_startup_packet_of_9000_bytes_is_accepted(pglease):
    d = pglease()
    pkt = pgwire.startup_packet(dict(APP, application_name="y" * 8900))
    assert 8900 < len(pkt) <= 10000
    w = Wire(d.socket_path)
    try:
        w.send(pkt[:-len(b"\0")])  # everything but the terminator, in two writes
        time.sleep(0.05)
        w.send(b"\0")
        w.read_until((b"Z",))
        assert w.status == b"I", "startup did not complete"
        assert w.scalar("select 9000") == "9000"
    finally:
        w.terminate()


# Garbage, and the SQLSTATE PostgreSQL refuses it with: a protocol version it does not
# speak is 0A000 (feature_not_supported), a broken packet 08P01.
GARBAGE = {
    "http": (b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n", "08P01"),
    "unknown_version": (struct.pack("!II", 16, 0x12345678) + b"user\0pg\0", "0A000"),
    "unterminated_params": (struct.pack("!II", 16, pgwire.PROTOCOL_3_0) + b"user\0postg", "08P01"),
    "binary": (bytes([0, 0, 0, 12, 0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3, 4]), "0A000"),
}


@pytest.mark.parametrize("name", sorted(GARBAGE))
def test_garbage_startup_is_refused(pglease, name):
    d = pglease()
    packet, sqlstate = GARBAGE[name]
    w = Wire(d.socket_path)
    try:
        w.try_send(packet)
        expect_fatal_and_close(w, sqlstate)
    finally:
        w.close()
    assert_still_serving(d)


def test_unknown_database_gets_fatal_3D000(pglease):
    d = pglease()
    w = Wire(d.socket_path)
    try:
        w.send(pgwire.startup_packet({"user": "postgres", "database": "nosuch"}))
        fields = expect_fatal_and_close(w, "3D000")
        assert fields["M"] == 'database "nosuch" does not exist'
    finally:
        w.close()
    assert_still_serving(d)


STALLS = {
    "nothing": b"",
    "partial_length": b"\0\0",
    "header_without_body": struct.pack("!II", 40, pgwire.PROTOCOL_3_0),
    "after_ssl_refusal": pgwire.ssl_request(),
}


@pytest.mark.parametrize("name", sorted(STALLS))
def test_client_that_never_finishes_startup_is_dropped_after_login_timeout(pglease, name):
    d = pglease(client_login_timeout=1)
    w = Wire(d.socket_path)
    try:
        t0 = time.monotonic()
        if STALLS[name]:
            w.send(STALLS[name])
        if name == "after_ssl_refusal":
            assert w.read_byte() == b"N"
        # The stalled client must not block anyone else meanwhile.
        with d.connect() as c:
            assert c.execute("select 1").fetchone()[0] == 1
        assert w.wait_closed(8), "stalled client (%s) still connected %.1fs after connecting" % (
            name, time.monotonic() - t0)
        elapsed = time.monotonic() - t0
        assert elapsed >= 0.8, "dropped after %.2fs, before client_login_timeout=1" % elapsed
    finally:
        w.close()
    assert_still_serving(d)


def test_many_bad_clients_in_a_row_do_not_disturb_a_connected_client(pglease):
    d = pglease()
    with d.connect() as c:
        for name, (data, _sqlstate) in sorted(GARBAGE.items()):
            w = Wire(d.socket_path)
            try:
                w.try_send(data)
                read_fatal(w)
                assert w.wait_closed(5)
            finally:
                w.close()
            assert c.execute("select %s::text", (name,)).fetchone()[0] == name
    assert_still_serving(d)


def test_query_in_the_same_write_as_the_startup_packet_is_answered(pglease):
    """The startup packet is consumed whole; the Query right behind it is framed from its end."""
    d = pglease()
    w = Wire(d.socket_path)
    try:
        w.send(pgwire.startup_packet(APP) + pgwire.query_msg("select 'behind the startup packet'"))
        login = w.read_until((b"Z",))
        assert login[-1][0] == b"Z", login
        r = w.collect_until_ready()
        assert r["error"] is None, r["error"]
        assert r["rows"] == [[b"behind the startup packet"]]
        assert w.scalar("select 2") == "2"
    finally:
        w.terminate()
