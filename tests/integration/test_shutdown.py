"""SIGTERM drains (leases finish within shutdown_timeout), SIGINT or a second SIGTERM is fast."""
import os
import signal
import time

import psycopg
import pytest

from harness import closed_with, wait_for


def committed(direct, val):
    return direct.execute("select count(*) from items where val = %s", (val,)).fetchone()[0]


def refused(d):
    r = d.psql("-c", "select 1", timeout=10)
    return r.returncode != 0


@pytest.mark.timeout(60)
def test_sigterm_lets_transactions_finish_and_refuses_new_clients(pglease, direct):
    d = pglease(shutdown_timeout=30)
    busy = d.connect(autocommit=False)
    busy.execute("insert into items (val) values ('graceful-commit')")
    idle = d.connect()
    idle.execute("select 1")
    d.signal(signal.SIGTERM)
    # The idle client is closed at once, with the reason.
    assert "pglease is shutting down" in closed_with(d, idle)
    # New connections are refused: the socket is gone.
    assert not os.path.exists(d.socket_path)
    assert refused(d)
    # The transaction in progress runs to its end, and commits.
    busy.execute("insert into items (val) values ('graceful-commit')")
    assert d.alive()
    busy.commit()
    assert d.wait_exit(10) == 0
    assert committed(direct, "graceful-commit") == 2
    with pytest.raises(psycopg.OperationalError):
        busy.execute("select 1")
    log = d.log_text()
    assert "graceful shutdown: not accepting connections" in log
    assert "every client has finished" in log


@pytest.mark.timeout(60)
def test_shutdown_timeout_rolls_back_what_is_left(pglease, direct):
    d = pglease(shutdown_timeout=1)
    busy = d.connect(autocommit=False)
    busy.execute("insert into items (val) values ('timeout-rollback')")
    t0 = time.monotonic()
    d.signal(signal.SIGTERM)
    time.sleep(0.3)
    assert d.alive(), "pglease must wait for the lease up to shutdown_timeout"
    assert d.wait_exit(10) == 0
    assert time.monotonic() - t0 >= 0.9
    with pytest.raises(psycopg.OperationalError) as e:
        busy.execute("commit")
    assert committed(direct, "timeout-rollback") == 0
    assert "shutdown_timeout (1 s) expired with 1 clients left" in d.log_text()


@pytest.mark.timeout(60)
def test_session_mode_sessions_run_to_their_end(pglease):
    d = pglease(pool_mode="session", shutdown_timeout=30)
    s = d.connect()
    s.execute("select 1")
    d.signal(signal.SIGTERM)
    time.sleep(0.3)
    assert s.execute("select 2").fetchone()[0] == 2
    assert d.alive()
    s.close()
    assert d.wait_exit(10) == 0


@pytest.mark.timeout(60)
def test_sigint_is_fast(pglease, direct):
    d = pglease(shutdown_timeout=60)
    busy = d.connect(autocommit=False)
    busy.execute("insert into items (val) values ('sigint-rollback')")
    d.signal(signal.SIGINT)
    assert d.wait_exit(5) == 0
    with pytest.raises(psycopg.OperationalError):
        busy.execute("commit")
    assert committed(direct, "sigint-rollback") == 0
    assert "fast shutdown" in d.log_text()


@pytest.mark.timeout(60)
def test_second_sigterm_is_fast(pglease, direct):
    d = pglease(shutdown_timeout=60)
    busy = d.connect(autocommit=False)
    busy.execute("insert into items (val) values ('second-sigterm')")
    d.signal(signal.SIGTERM)
    time.sleep(0.5)
    assert d.alive()
    d.signal(signal.SIGTERM)
    assert d.wait_exit(5) == 0
    with pytest.raises(psycopg.OperationalError):
        busy.execute("commit")
    assert committed(direct, "second-sigterm") == 0
    assert "second graceful shutdown request, now fast" in d.log_text()


def test_sigterm_without_clients_exits_at_once(pglease):
    d = pglease()
    d.signal(signal.SIGTERM)
    assert d.wait_exit(5) == 0
    assert "graceful shutdown: no clients" in d.log_text()
