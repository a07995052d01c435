"""Malformed messages after login: FATAL 08P01 for the sender, a clean backend for the pool."""
import struct
import uuid

import pytest

import pgwire
from harness import app_backends, wait_for, wait_pool_size
from pgwire import Wire, read_fatal

POOL = 2
APP = {"user": "postgres", "database": "app"}


def _pool(pglease, cluster):
    return pglease(databases={"app": cluster.conninfo("app", user="postgres")},
                   default_pool_size=POOL, min_pool_size=POOL)


BAD = {
    "unknown type": pgwire.message(b"y", b"junk"),
    "password message after login": pgwire.message(b"p", b"secret\0"),
    "length below 4": b"Q" + struct.pack("!I", 2),
    "length above 1 GB": b"Q" + struct.pack("!I", 0x7FFFFFFF),
}
EXPECTED = {
    "unknown type": "invalid frontend message type 121",
    "password message after login": "invalid frontend message type 112",
    "length below 4": 'invalid message length 2 for message type "Q"',
    "length above 1 GB": 'invalid message length 2147483647 for message type "Q"',
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_message_in_a_transaction_is_fatal_08P01_and_backend_is_reused(pglease, cluster, direct, case):
    d = _pool(pglease, cluster)
    before = wait_pool_size(direct, POOL)
    m = "proto-" + uuid.uuid4().hex
    w = Wire(d.socket_path)
    try:
        w.startup(APP)
        assert w.query("begin")["status"] == b"T"
        assert w.query("insert into items(val) values ('%s')" % m)["status"] == b"T"
        # a valid query and the bad message in one write: the valid one still goes through
        w.send(pgwire.query_msg("select 1") + BAD[case])
        msgs = w.read_until((b"Z",))
        assert msgs[-1] == (b"Z", b"T")
        fields = read_fatal(w)
        assert fields["C"] == "08P01"
        assert fields["M"] == EXPECTED[case]
        assert w.wait_closed(5)
    finally:
        w.close()
    # The exit door's ROLLBACK runs after the client is gone: wait for it, then check what it left.
    wait_for(lambda: "rolled back after its lease ended (client protocol violation)" in d.log_text(),
             what="the rollback of the lease's transaction")
    assert wait_pool_size(direct, POOL) == before, "the backend was replaced instead of cleaned"
    assert direct.execute("select count(*) from items where val = %s", (m,)).fetchone()[0] == 0
    assert d.psql("-Atc", "select 1").stdout.strip() == "1"


def test_nothing_sent_after_a_malformed_message_reaches_the_backend(pglease, cluster, direct):
    """The bad message is the end of the session: later messages, even valid ones, are not run."""
    d = _pool(pglease, cluster)
    before = wait_pool_size(direct, POOL)
    m = "after-bad-" + uuid.uuid4().hex
    w = Wire(d.socket_path)
    try:
        w.startup(APP)
        # A sleeping backend and a 4 MB query keep pglease's sends to it blocked, with
        # replies owed, when it meets the bad message; the insert comes after that.
        big = pgwire.query_msg("select length('%s')" % ("x" * (4 << 20)))
        w.send(pgwire.query_msg("select pg_sleep(0.5)") + big + BAD["unknown type"])
        w.send(pgwire.query_msg("insert into items(val) values ('%s')" % m))
        msgs = w.read_until((b"Z",))
        assert msgs[-1] == (b"Z", b"I")
        msgs = w.read_until((b"Z",))
        assert msgs[-1] == (b"Z", b"I")
        assert read_fatal(w)["C"] == "08P01"
        assert w.wait_closed(5)
    finally:
        w.close()
    assert wait_pool_size(direct, POOL) == before
    assert direct.execute("select count(*) from items where val = %s", (m,)).fetchone()[0] == 0, \
        "a message sent after the malformed one was executed"
