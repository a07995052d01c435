"""Prepared statements under contention (transaction mode, more clients than backends).

A client that prepares a statement (PQprepare: a named Parse and a Sync) while
every backend is held in a transaction must not need a backend: when the pool
has already parsed that exact statement, pglease answers from its registry.
The case that starved before: one thread drives several connections, and a
blocking PQprepare on one of them waits for a backend held by another of its
own connections mid-transaction (pgbench -M prepared -j 1)."""
import re
import subprocess
import time

import psycopg
import pytest
from psycopg import pq

from harness import clean_env

SQL = b"select $1::int + 1"


def prepare(conn, name, sql=SQL):
    """libpq's blocking PQprepare; returns the result status."""
    res = conn.pgconn.prepare(name, sql)
    return res.status, res.error_message.decode()


def exec_prepared(conn, name, value):
    res = conn.pgconn.exec_prepared(name, [str(value).encode()])
    assert res.status == pq.ExecStatus.TUPLES_OK, res.error_message
    return int(res.get_value(0, 0))


def test_prepare_of_a_known_statement_needs_no_backend(pglease):
    d = pglease(default_pool_size=1, query_wait_timeout=3, log_level="debug")
    first, holder, preparer = d.connect(), d.connect(), d.connect()
    try:
        assert prepare(first, b"p1")[0] == pq.ExecStatus.COMMAND_OK
        pid = first.execute("select pg_backend_pid()").fetchone()[0]
        holder.execute("begin")
        # Premise: the holder has the pool's only backend, in a transaction.
        assert holder.execute("select pg_backend_pid()").fetchone()[0] == pid
        t0 = time.monotonic()
        status, error = prepare(preparer, b"mine")
        assert status == pq.ExecStatus.COMMAND_OK, error
        assert time.monotonic() - t0 < 2, "the prepare waited for a backend"
        holder.execute("commit")
        assert exec_prepared(preparer, b"mine", 41) == 42
        assert "prepared mine without a lease" in d.log_text()
    finally:
        for c in (first, holder, preparer):
            c.close()


def test_prepare_of_an_unknown_statement_still_reports_its_error(pglease):
    """A statement no backend has parsed goes to a backend: its error comes at the Parse, as direct."""
    d = pglease(default_pool_size=1)
    a = d.connect()
    try:
        status, error = prepare(a, b"bad", b"select from_nowhere(")
        assert status == pq.ExecStatus.FATAL_ERROR and "syntax error" in error
        status, error = prepare(a, b"bad", SQL)
        assert status == pq.ExecStatus.COMMAND_OK, error
        # The same name again fails as it does direct (42P05), even though the text is known.
        status, error = prepare(a, b"bad", SQL)
        assert status == pq.ExecStatus.FATAL_ERROR and "already exists" in error
        assert exec_prepared(a, b"bad", 1) == 2
    finally:
        a.close()


def test_two_names_for_one_statement_in_one_batch(pglease):
    """Parse s1, Parse s1 again, Sync: the second fails with 42P05 as direct, not answered from the registry."""
    d = pglease(default_pool_size=1)
    a, b = d.connect(), d.connect()
    try:
        assert prepare(a, b"x")[0] == pq.ExecStatus.COMMAND_OK
        b.pgconn.enter_pipeline_mode()
        b.pgconn.send_prepare(b"y", SQL)
        b.pgconn.send_prepare(b"y", SQL)
        b.pgconn.pipeline_sync()
        statuses = []
        while True:
            b.pgconn.consume_input()
            res = b.pgconn.get_result()
            if res is None:
                continue
            statuses.append(res.status)
            if res.status == pq.ExecStatus.PIPELINE_SYNC:
                break
        assert statuses[0] == pq.ExecStatus.COMMAND_OK
        assert statuses[1] == pq.ExecStatus.FATAL_ERROR
        b.pgconn.exit_pipeline_mode()
    finally:
        a.close()
        b.close()


@pytest.mark.timeout(120)
@pytest.mark.parametrize("clients,pool", [(2, 1), (14, 3)])
def test_pgbench_prepared_one_thread_more_clients_than_backends(pglease, cluster, direct, clients, pool):
    r = subprocess.run(["pgbench", "-i", "-q", "-h", cluster.dir, "-p", str(cluster.port), "-U", "postgres", "app"],
                       capture_output=True, text=True, timeout=60, env=clean_env())
    assert r.returncode == 0, r.stderr
    try:
        d = pglease(databases={"app": cluster.conninfo("app", pool_size=pool)}, query_wait_timeout=15, log_level="debug")
        r = subprocess.run(["pgbench", "-n", "-M", "prepared", "-c", str(clients), "-j", "1", "-t", "50",
                            "-h", d.dir, "-p", str(d.port), "-U", "postgres", "app"],
                           capture_output=True, text=True, timeout=100, env=clean_env())
        assert r.returncode == 0, "pgbench failed:\n%s\n%s" % (r.stdout, r.stderr[-2000:])
        m = re.search(r"number of transactions actually processed: (\d+)/(\d+)", r.stdout)
        assert m and int(m.group(1)) == clients * 50, r.stdout
        assert direct.execute("select count(*) from pgbench_history").fetchone()[0] == clients * 50
        # Premise: clients outnumbered backends, and prepares were answered without one.
        assert "without a lease" in d.log_text()
    finally:
        with cluster.connect() as c:
            c.execute("drop table if exists pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history")
