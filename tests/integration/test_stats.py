"""Statistics: SHOW STATS counters after known workloads, and lease_warn_after."""
import os
import re
import threading
import time

import psycopg
import pytest

from harness import kill9, read_lines_until, spawn_client, wait_for
from test_metrics import free_tcp_port, sample, scrape


def stats(d, db="app"):
    with psycopg.connect(d.dsn("pglease"), autocommit=True) as a:
        cur = a.execute("SHOW STATS")
        cols = [c.name for c in cur.description]
        rows = [dict(zip(cols, r)) for r in cur.fetchall() if r[0] == db]
    assert len(rows) == 1, rows
    return rows[0]


def waiting(d, db="app"):
    with psycopg.connect(d.dsn("pglease"), autocommit=True) as a:
        cur = a.execute("SHOW POOLS")
        cols = [c.name for c in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall() if r[0] == db][0]["cl_waiting"]


def test_transactions_and_queries_counted_exactly(pglease):
    d = pglease()
    assert d.psql("-c", "select 1").returncode == 0
    before = stats(d)
    n = 5
    for i in range(n):
        r = d.psql("-c", "select %d" % i)
        assert r.returncode == 0, r.stderr
    # one explicit transaction of three statements is one transaction, three queries
    r = d.psql("-c", "begin", "-c", "select 1", "-c", "commit")
    assert r.returncode == 0, r.stderr
    after = stats(d)
    assert after["total_xact_count"] - before["total_xact_count"] == n + 1
    assert after["total_query_count"] - before["total_query_count"] == n + 3
    assert after["total_received"] > before["total_received"]
    assert after["total_sent"] > before["total_sent"]
    assert after["total_lease_count"] - before["total_lease_count"] == n + 1
    assert after["exits_transaction_done"] - before["exits_transaction_done"] == n + 1
    assert after["total_xact_time"] > before["total_xact_time"]


def test_extended_protocol_queries_counted(pglease):
    d = pglease()
    with d.connect() as c:
        c.execute("select 1")
        before = stats(d)
        for i in range(4):
            c.execute("select %s::int", (i,))
    after = stats(d)
    assert after["total_query_count"] - before["total_query_count"] == 4
    assert after["total_xact_count"] - before["total_xact_count"] == 4



def test_killed_client_mid_transaction_counts_one_rollback_on_exit(pglease):
    d = pglease()
    assert d.psql("-c", "select 1").returncode == 0
    before = stats(d)
    p = spawn_client(d.dsn(), ["begin", "select 1"])
    read_lines_until(p, "READY")
    kill9(p)
    wait_for(lambda: stats(d)["exit_rollbacks"] == before["exit_rollbacks"] + 1, what="a rollback on exit")
    after = stats(d)
    assert after["exits_client_gone"] == before["exits_client_gone"] + 1
    assert after["servers_discarded"] == before["servers_discarded"]


def test_wait_counted_when_pool_is_full(pglease):
    d = pglease(default_pool_size=1)
    holder = d.connect(autocommit=False)
    holder.execute("select 1")
    before = stats(d)
    out = []
    t = threading.Thread(target=lambda: out.append(d.psql("-c", "select 5").stdout.strip()))
    t.start()
    wait_for(lambda: waiting(d) == 1, what="a client waiting for the one backend")
    time.sleep(0.3)
    holder.commit()
    t.join(10)
    assert out == ["5"]
    after = stats(d)
    assert after["total_wait_count"] == before["total_wait_count"] + 1
    assert after["total_wait_time"] - before["total_wait_time"] >= 300000   # microseconds, at least the sleep
    holder.close()


def test_backend_terminated_under_a_lease_counts_as_lost(pglease, direct):
    d = pglease()
    c = d.connect(autocommit=False)
    pid = c.execute("select pg_backend_pid()").fetchone()[0]
    before = stats(d)
    direct.execute("select pg_terminate_backend(%s)", (pid,))
    with pytest.raises(psycopg.OperationalError):
        c.execute("select 1")
    c.close()
    wait_for(lambda: stats(d)["servers_lost"] == before["servers_lost"] + 1, what="a lost server")
    after = stats(d)
    assert after["servers_closed"] == before["servers_closed"] + 1
    assert after["exits_server_lost"] == before["exits_server_lost"] + 1


@pytest.mark.timeout(30)
def test_lease_warn_after_logs_each_long_lease_once(pglease):
    d = pglease(lease_warn_after="0.3")
    c = d.connect(autocommit=False)
    c.execute("select 1")
    time.sleep(1.5)   # several maintenance ticks past the limit
    c.commit()
    lines = [l for l in d.log_text().splitlines() if "lease_warn_after" in l]
    assert len(lines) == 1, lines
    assert "app/postgres" in lines[0] and "lease held for" in lines[0]
    assert stats(d)["lease_warnings"] == 1
    # a short lease afterwards is not reported
    c.execute("select 1")
    c.commit()
    c.close()
    assert len([l for l in d.log_text().splitlines() if "lease_warn_after" in l]) == 1


def test_lease_warn_after_off_by_default(pglease):
    d = pglease()
    c = d.connect(autocommit=False)
    c.execute("select 1")
    time.sleep(0.5)
    c.commit()
    c.close()
    assert "lease_warn_after" not in d.log_text()


@pytest.mark.timeout(30)
def test_lease_warn_after_each_of_several_leases_once(pglease):
    d = pglease(lease_warn_after="0.3")
    a = d.connect(autocommit=False, application_name="first")
    a.execute("select 1")
    time.sleep(0.6)
    b = d.connect(autocommit=False, application_name="second")
    b.execute("select 1")
    time.sleep(1.0)
    a.commit()
    b.commit()
    lines = [l for l in d.log_text().splitlines() if "lease_warn_after" in l]
    assert len(lines) == 2, lines
    assert stats(d)["lease_warnings"] == 2
    a.close()
    b.close()


README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def documented_exit_labels():
    """The reasons README.md lists under "What the counters count", in order."""
    text = open(README).read()
    m = re.search(r"\*\*Exits\*\* by reason \(([^)]*)\)", text)
    assert m, "README.md has no **Exits** by reason (...) list"
    return re.findall(r"`(\w+)`", m.group(1))


def test_kill_counts_a_leased_client_as_killed_and_columns_are_documented(pglease):
    port = free_tcp_port()
    d = pglease(metrics_listen="127.0.0.1:%d" % port)
    victim = d.connect(autocommit=False)
    victim.execute("select 1")            # a transaction is open: the lease is held
    with psycopg.connect(d.dsn("pglease"), autocommit=True) as a:
        cur = a.execute("SHOW POOLS")
        pools = [dict(zip([c.name for c in cur.description], r)) for r in cur.fetchall()]
        assert [p["cl_leased"] for p in pools if p["database"] == "app"] == [1]   # the premise
        before = stats(d)
        a.execute("KILL app")
    with pytest.raises(psycopg.OperationalError):
        victim.execute("select 1")
    victim.close()
    wait_for(lambda: stats(d)["exits_killed"] == before["exits_killed"] + 1, what="the KILL counted")
    after = stats(d)
    assert after["exits_shutdown"] == before["exits_shutdown"]
    assert after["exits_client_gone"] == before["exits_client_gone"]

    # SHOW STATS has one exits_<reason> column per documented reason, in the README's order, and
    # /metrics the same reasons; "timeout" (nothing ends a lease by a timeout yet) is in neither.
    documented = documented_exit_labels()
    assert "killed" in documented and "timeout" not in documented
    assert [k[len("exits_"):] for k in after if k.startswith("exits_")] == documented
    text = scrape(port)
    labels = re.findall(r'^pglease_lease_exits_total\{database="app",user="postgres",reason="(\w+)"\}', text, re.M)
    assert labels == documented
    lab = dict(database="app", user="postgres")
    assert sample(text, "pglease_lease_exits_total", reason="killed", **lab) == after["exits_killed"] == 1
    assert sample(text, "pglease_lease_exits_total", reason="shutdown", **lab) == 0
