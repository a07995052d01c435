"""Queries and transactions through pglease with psql and psycopg, both pool modes."""
import threading
import time
import uuid

import psycopg
import pytest

from harness import app_backends


def marker():
    return "m-" + uuid.uuid4().hex


def count_val(direct, val):
    return direct.execute("select count(*) from items where val = %s", (val,)).fetchone()[0]


def test_psql_select_through_pglease(pglease):
    d = pglease()
    r = d.psql("-c", "select 40 + 2")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "42"


@pytest.mark.parametrize("pool_mode", ["transaction", "session"])
def test_psycopg_commit_is_visible_and_rollback_is_not(pglease, direct, pool_mode):
    d = pglease(pool_mode=pool_mode)
    committed, rolled_back = marker(), marker()
    with d.connect(autocommit=False) as c:
        c.execute("insert into items(val) values (%s)", (committed,))
        c.commit()
        c.execute("insert into items(val) values (%s)", (rolled_back,))
        assert c.execute("select count(*) from items where val = %s", (rolled_back,)).fetchone()[0] == 1
        c.rollback()
        assert c.execute("select count(*) from items where val = %s", (rolled_back,)).fetchone()[0] == 0
    assert count_val(direct, committed) == 1
    assert count_val(direct, rolled_back) == 0


@pytest.mark.parametrize("pool_mode", ["transaction", "session"])
def test_psql_script_commit_visible_rollback_not(pglease, direct, pool_mode):
    d = pglease(pool_mode=pool_mode)
    committed, rolled_back = marker(), marker()
    script = """
begin;
insert into items(val) values ('%s');
commit;
begin;
insert into items(val) values ('%s');
rollback;
select count(*) from items where val in ('%s', '%s');
""" % (committed, rolled_back, committed, rolled_back)
    r = d.psql("-v", "ON_ERROR_STOP=1", input=script)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "1"
    assert count_val(direct, committed) == 1
    assert count_val(direct, rolled_back) == 0


def test_multi_statement_simple_query_returns_every_result(pglease, direct):
    d = pglease()
    m = marker()
    with d.connect() as c:
        # No parameters: psycopg sends one simple-protocol Query with three statements.
        cur = c.execute("insert into items(val) values ('%s'); select 1 as a; select count(*) from items where val = '%s'"
                        % (m, m))
        results = []
        while True:
            if cur.description is not None:
                results.append(cur.fetchall())
            if not cur.nextset():
                break
        assert results == [[(1,)], [(1,)]]
        assert c.execute("select 'still here'").fetchone()[0] == "still here"
    assert count_val(direct, m) == 1


def test_multi_statement_query_is_one_implicit_transaction(pglease, direct):
    d = pglease()
    m = marker()
    with d.connect() as c:
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("insert into items(val) values ('%s'); select 1/0" % m)
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert c.execute("select 2").fetchone()[0] == 2
    assert count_val(direct, m) == 0


@pytest.mark.parametrize("pool_mode", ["transaction", "session"])
def test_error_inside_transaction_then_rollback(pglease, direct, pool_mode):
    d = pglease(pool_mode=pool_mode)
    m = marker()
    with d.connect() as c:
        c.execute("begin")
        c.execute("insert into items(val) values (%s)", (m,))
        with pytest.raises(psycopg.errors.DivisionByZero):
            c.execute("select 1/0")
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.INERROR
        with pytest.raises(psycopg.errors.InFailedSqlTransaction):
            c.execute("select 1")
        c.execute("rollback")
        assert c.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert c.execute("select 3").fetchone()[0] == 3
    assert count_val(direct, m) == 0


def test_psql_error_in_transaction_reports_error_and_rolls_back(pglease, direct):
    d = pglease()
    m = marker()
    script = "begin;\ninsert into items(val) values ('%s');\nselect 1/0;\nselect 5;\nrollback;\nselect 7;\n" % m
    r = d.psql("-v", "ON_ERROR_STOP=0", input=script)
    assert r.returncode == 0, r.stderr
    assert "division by zero" in r.stderr
    assert "current transaction is aborted" in r.stderr
    assert r.stdout.strip().splitlines()[-1] == "7"
    assert count_val(direct, m) == 0


def test_extended_protocol_with_parameters(pglease):
    d = pglease()
    with d.connect() as c:
        for i in range(20):
            assert c.execute("select %s::int + %s::int, %s::text", (i, 1, "x" * i)).fetchone() == (i + 1, "x" * i)


def test_copy_in_and_out_through_pglease(pglease, direct):
    d = pglease()
    m = marker()
    with d.connect() as c:
        with c.cursor() as cur:
            with cur.copy("copy items(val) from stdin") as cp:
                for i in range(100):
                    cp.write_row(("%s-%d" % (m, i),))
            out = []
            with cur.copy("copy (select val from items where val like %s order by id) to stdout", (m + "-%",)) as cp:
                for row in cp.rows():
                    out.append(row[0])
        assert len(out) == 100
        assert c.execute("select 1").fetchone()[0] == 1
    assert direct.execute("select count(*) from items where val like %s", (m + "-%",)).fetchone()[0] == 100


def test_transaction_mode_shares_one_backend_between_clients(pglease):
    d = pglease(default_pool_size=1)
    with d.connect() as a, d.connect() as b:
        pids = set()
        for _ in range(3):
            pids.add(a.execute("select pg_backend_pid()").fetchone()[0])
            pids.add(b.execute("select pg_backend_pid()").fetchone()[0])
        assert len(pids) == 1


def test_transaction_mode_second_client_waits_until_transaction_ends(pglease):
    d = pglease(default_pool_size=1, query_wait_timeout=10)
    with d.connect() as a, d.connect() as b:
        a.execute("begin")
        pid_a = a.execute("select pg_backend_pid()").fetchone()[0]
        result = {}

        def run_b():
            try:
                result["pid"] = b.execute("select pg_backend_pid()").fetchone()[0]
                result["t"] = time.monotonic()
            except Exception as e:  # reported below
                result["error"] = e

        t = threading.Thread(target=run_b, daemon=True)
        t.start()
        time.sleep(0.5)
        assert t.is_alive(), "client B got a backend while A's transaction held the only one: %r" % result
        committed_at = time.monotonic()
        a.execute("commit")
        t.join(10)
        assert not t.is_alive(), "client B still waiting after A committed"
        assert "error" not in result, result
        assert result["pid"] == pid_a
        assert result["t"] >= committed_at


def test_session_mode_keeps_backend_and_session_state(pglease, direct):
    d = pglease(pool_mode="session", default_pool_size=2)
    with d.connect() as a, d.connect() as b:
        a.execute("create temp table sess_tmp(x int)")
        a.execute("set work_mem = '3MB'")
        pid = a.execute("select pg_backend_pid()").fetchone()[0]
        assert b.execute("select pg_backend_pid()").fetchone()[0] != pid
        for _ in range(3):
            b.execute("select 1")
            assert a.execute("select pg_backend_pid()").fetchone()[0] == pid
            assert a.execute("show work_mem").fetchone()[0] == "3MB"
            a.execute("insert into sess_tmp values (1)")
        assert a.execute("select count(*) from sess_tmp").fetchone()[0] == 3


def test_session_mode_runs_reset_query_when_client_leaves(pglease):
    d = pglease(pool_mode="session", default_pool_size=1, server_reset_query="DISCARD ALL")
    with d.connect() as a:
        pid = a.execute("select pg_backend_pid()").fetchone()[0]
        a.execute("create temp table leftover(x int)")
        a.execute("set statement_timeout = '123s'")
        a.execute("prepare leftover_stmt as select 1")
    with d.connect() as b:
        assert b.execute("select pg_backend_pid()").fetchone()[0] == pid, "backend was not reused"
        assert b.execute("show statement_timeout").fetchone()[0] == "0"
        assert b.execute("select count(*) from pg_class where relname = 'leftover' and relpersistence = 't'"
                         ).fetchone()[0] == 0
        assert b.execute("select count(*) from pg_prepared_statements").fetchone()[0] == 0


def test_more_clients_than_backends_all_complete(pglease, direct):
    d = pglease(default_pool_size=2)
    m = marker()
    errors = []
    peak = [0]
    stop = threading.Event()

    def sample():
        with d.cluster.connect() as s:
            while not stop.is_set():
                peak[0] = max(peak[0], len(app_backends(s)))
                time.sleep(0.01)

    def worker(n):
        try:
            with d.connect(autocommit=False) as c:
                for i in range(10):
                    c.execute("insert into items(val) values (%s)", (m,))
                    c.execute("select pg_sleep(0.005)")
                    c.commit()
        except Exception as e:
            errors.append(e)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    workers = [threading.Thread(target=worker, args=(n,), daemon=True) for n in range(8)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(30)
    stop.set()
    sampler.join(5)
    assert not errors, errors
    assert count_val(direct, m) == 80
    assert 1 <= peak[0] <= 2, "app backends peaked at %d with default_pool_size=2" % peak[0]


def test_unknown_database_is_refused_by_psql(pglease):
    d = pglease()
    r = d.psql("-c", "select 1", dbname="nosuch")
    assert r.returncode != 0
    assert 'database "nosuch" does not exist' in r.stderr
    assert d.psql("-c", "select 1").stdout.strip() == "1"


def test_client_user_is_used_when_conninfo_has_none_and_pools_are_per_user(pglease, cluster, direct):
    direct.execute("do $$ begin if not exists (select 1 from pg_roles where rolname = 'alice') then "
                   "create role alice login; end if; end $$")
    direct.execute("grant select on items to alice")
    d = pglease(default_pool_size=1, query_wait_timeout=3)
    with d.connect() as pg, d.connect(user="alice") as alice:
        pg.execute("begin")
        pg.execute("select 1")  # holds the only backend of the (app, postgres) pool
        assert alice.execute("select current_user").fetchone()[0] == "alice"
        assert alice.execute("select count(*) >= 0 from items").fetchone()[0] is True
        users = sorted(r[0] for r in direct.execute(
            "select usename from pg_stat_activity where datname = 'app' and pid <> pg_backend_pid() "
            "and backend_type = 'client backend' and coalesce(application_name, '') <> 'pgtest_direct'").fetchall())
        assert users == ["alice", "postgres"], users
        pg.execute("commit")


def test_wildcard_database_entry_serves_unlisted_names(pglease, cluster):
    d = pglease(databases={"*": "host=%s port=%d" % (cluster.dir, cluster.port)})
    r = d.psql("-c", "select current_database()", dbname="app")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "app"
    r = d.psql("-c", "select current_database()", dbname="postgres")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "postgres"
