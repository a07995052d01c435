"""Limits across pools (README "Limits"): max_db_connections / max_user_connections checked against what
PostgreSQL itself sees (pg_stat_activity sampled while many more clients than backends run), client caps
(FATAL 53300 as PostgreSQL words its own limits), the reserve, the [users] section, and a reload."""
import threading
import time

import psycopg
import pytest

import pgwire
from harness import wait_for
from pgwire import Wire

USERS = ("alice", "bob")


@pytest.fixture(scope="module")
def roles(cluster):
    """Two login roles and a second database, made once; pglease reaches them over trust."""
    with cluster.connect("postgres") as conn:
        for u in USERS:
            if not conn.execute("select 1 from pg_roles where rolname = %s", (u,)).fetchone():
                conn.execute("create role %s login" % u)
        if not conn.execute("select 1 from pg_database where datname = 'app2'").fetchone():
            conn.execute("create database app2")
    return USERS


class Sampler:
    """Counts pglease's backends (users alice and bob) in pg_stat_activity every few ms, by database and user."""

    def __init__(self, cluster):
        self.conn = cluster.connect("postgres")
        self.max_by_db = {}
        self.max_by_user = {}
        self.seen_users = set()
        self.samples = 0
        self.stop_flag = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def count(self):
        rows = self.conn.execute(
            "select datname, usename, count(*) from pg_stat_activity "
            "where usename = any(%s) and backend_type = 'client backend' group by 1, 2", (list(USERS),)).fetchall()
        by_db, by_user = {}, {}
        for db, user, n in rows:
            by_db[db] = by_db.get(db, 0) + n
            by_user[user] = by_user.get(user, 0) + n
        return by_db, by_user

    def run(self):
        while not self.stop_flag.is_set():
            by_db, by_user = self.count()
            for k, v in by_db.items():
                self.max_by_db[k] = max(self.max_by_db.get(k, 0), v)
            for k, v in by_user.items():
                self.max_by_user[k] = max(self.max_by_user.get(k, 0), v)
                self.seen_users.add(k)
            self.samples += 1
            time.sleep(0.005)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop_flag.set()
        self.thread.join(10)
        self.conn.close()


def run_clients(d, specs, transactions=6, sleep=0.05):
    """specs: [(dbname, user)] one client each; every client runs `transactions` short transactions."""
    errors = []

    def client(dbname, user):
        try:
            with d.connect(dbname, user=user) as c:
                for _ in range(transactions):
                    with c.transaction():
                        c.execute("select pg_sleep(%s)", (sleep,))
        except Exception as e:  # noqa: BLE001 - collected and asserted below
            errors.append("%s/%s: %s" % (dbname, user, e))

    threads = [threading.Thread(target=client, args=s) for s in specs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


def backends(cluster, **where):
    cond = " and ".join("%s = %%s" % k for k in where) or "true"
    with cluster.connect("postgres") as conn:
        return conn.execute("select count(*) from pg_stat_activity where backend_type = 'client backend' and "
                            "usename = any(%s) and " + cond, [list(USERS)] + list(where.values())).fetchone()[0]


def test_max_db_connections_across_two_pools(pglease, cluster, roles):
    d = pglease(databases={"app": cluster.conninfo("app", max_db_connections=3)}, default_pool_size=3)
    with Sampler(cluster) as s:
        # alice's pool fills the cap, then sits idle.
        run_clients(d, [("app", "alice")] * 6, transactions=3)
        wait_for(lambda: backends(cluster, usename="alice") == 3, what="alice's 3 idle backends")
        # bob's clients must be served: alice's idle backends are closed to make room.
        run_clients(d, [("app", "bob")] * 8)
        assert backends(cluster, usename="bob") >= 1
        assert backends(cluster, usename="alice") < 3, "no idle backend of alice's pool was closed for bob"
        # Both pools busy at once, many more clients than backends: both are served.
        run_clients(d, [("app", "alice")] * 6 + [("app", "bob")] * 6)
    assert s.samples > 50, s.samples
    assert s.max_by_db.get("app") == 3, s.max_by_db
    assert s.seen_users == set(USERS)
    assert "closed to make room for pool app/bob" in d.log_text()


def test_max_user_connections_across_two_databases(pglease, cluster, roles):
    d = pglease(databases={"app": cluster.conninfo("app"), "app2": cluster.conninfo("app2")},
                default_pool_size=3, max_user_connections=2)
    with Sampler(cluster) as s:
        run_clients(d, [("app", "alice")] * 5 + [("app2", "alice")] * 5 + [("app", "bob")] * 3)
    assert s.max_by_user.get("alice") == 2, s.max_by_user
    # bob is not alice: his own pool may use its whole size.
    assert s.max_by_user.get("bob", 0) <= 3
    assert backends(cluster, usename="alice") <= 2


def fatal_of(d, dbname, user):
    """The login's ErrorResponse fields, read off the wire (libpq keeps no SQLSTATE for a failed connect)."""
    w = Wire(d.socket_path)
    try:
        w.send(pgwire.startup_packet({"user": user, "database": dbname}))
        msgs = w.read_until((b"E", b"Z"), timeout=10)
        assert msgs[0][0] == b"R", msgs     # AuthenticationOk first, as from PostgreSQL
        assert msgs[-1][0] == b"E", msgs
        assert w.wait_closed(5)
        return pgwire.parse_fields(msgs[-1][1])
    finally:
        w.close()


def test_client_caps_refuse_the_next_login_with_53300(pglease, cluster, roles):
    d = pglease(databases={"app": cluster.conninfo("app", max_db_client_connections=2),
                           "app2": cluster.conninfo("app2")},
                default_pool_size=2, start=False)
    d.users = {"bob": "max_user_client_connections=1"}
    d.start()
    a1 = d.connect("app", user="alice")
    a2 = d.connect("app", user="alice")
    try:
        e = fatal_of(d, "app", "alice")
        assert (e["S"], e["C"], e["M"]) == ("FATAL", "53300", 'too many connections for database "app"'), e
        b1 = d.connect("app2", user="bob")
        try:
            e = fatal_of(d, "app2", "bob")
            assert (e["S"], e["C"], e["M"]) == ("FATAL", "53300", 'too many connections for role "bob"'), e
            with pytest.raises(psycopg.OperationalError, match='too many connections for role "bob"'):
                d.connect("app2", user="bob").close()
            # The others are unaffected.
            assert a1.execute("select 1").fetchone()[0] == 1
            assert b1.execute("select 2").fetchone()[0] == 2
            with d.connect("app2", user="alice") as other:
                assert other.execute("select 3").fetchone()[0] == 3
        finally:
            b1.close()
        # A freed place is taken again.
        a2.close()
        wait_for(lambda: _can_login(d, "app", "alice"), what="a login after a client left")
        assert a1.execute("select 4").fetchone()[0] == 4
    finally:
        a1.close()
        a2.close()


def _can_login(d, dbname, user):
    try:
        with d.connect(dbname, user=user) as c:
            return c.execute("select 1").fetchone()[0] == 1
    except psycopg.OperationalError:
        return False


def test_reserve_opens_after_the_timeout_and_is_given_back(pglease, cluster, roles):
    d = pglease(databases={"app": cluster.conninfo("app", pool_size=1)}, reserve_pool_size=2,
                reserve_pool_timeout=0.5, query_wait_timeout=30)
    hold = threading.Event()
    errors = []

    def holder():
        try:
            with d.connect("app", user="alice") as c:
                with c.transaction():
                    c.execute("select 1")
                    hold.wait(20)
        except Exception as e:  # noqa: BLE001
            errors.append(str(e))

    threads = [threading.Thread(target=holder) for _ in range(6)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    with Sampler(cluster) as s:
        wait_for(lambda: backends(cluster, usename="alice") == 3, timeout=10, what="the reserve's 2 extra backends")
        opened_after = time.monotonic() - t0
        time.sleep(0.5)
        hold.set()
        for t in threads:
            t.join(30)
        # Each extra backend is closed as soon as it comes free with no client waiting.
        wait_for(lambda: backends(cluster, usename="alice") == 1, timeout=10, what="the reserve given back")
    assert not errors, errors
    assert s.max_by_user.get("alice") == 3, s.max_by_user
    assert opened_after >= 0.4, opened_after
    assert "reserve backend" in d.log_text()


def temp_table_survives_another_clients_transaction(d, user):
    """c1 makes a temp table; c2 then holds a transaction. In transaction mode (session_state=ignore) c2 takes
    the backend c1 just freed (the hottest idle one) and c1 is served by another: its temp table is gone."""
    with d.connect("app", user=user) as c1, d.connect("app", user=user) as c2:
        c1.execute("create temp table t (x int)")
        c2.execute("begin")
        c2.execute("select pg_backend_pid()")
        try:
            c1.execute("insert into t values (1)")
            return c1.execute("select count(*) from t").fetchone()[0] == 1
        except psycopg.errors.UndefinedTable:
            return False
        finally:
            c2.execute("rollback")


def test_users_section_pool_mode_session_over_a_transaction_database(pglease, cluster, roles):
    # session_state=ignore: in transaction mode a temp table does not keep its backend.
    d = pglease(databases={"app": cluster.conninfo("app", pool_size=2)}, session_state="ignore",
                admin_users="postgres", start=False)
    d.users = {"bob": "pool_mode=session pool_size=3"}
    d.start()
    # The premise: alice (the database's transaction mode) loses her temp table.
    assert not temp_table_survives_another_clients_transaction(d, "alice")
    # bob's [users] pool_mode=session keeps his session on his backend.
    assert temp_table_survives_another_clients_transaction(d, "bob")
    with psycopg.connect(d.dsn("pglease"), autocommit=True) as adm:
        cur = adm.execute("SHOW POOLS")
        cols = [c.name for c in cur.description]
        rows = {r[1]: dict(zip(cols, r)) for r in cur.fetchall() if r[0] == "app"}
    assert rows["bob"]["pool_mode"] == "session" and rows["bob"]["pool_size"] == 3, rows["bob"]
    assert rows["alice"]["pool_mode"] == "transaction" and rows["alice"]["pool_size"] == 2, rows["alice"]


def test_reload_changes_a_cap(pglease, cluster, roles):
    d = pglease(databases={"app": cluster.conninfo("app", max_db_connections=1)}, default_pool_size=4,
                admin_users="postgres")
    with Sampler(cluster) as s:
        run_clients(d, [("app", "alice")] * 6, transactions=3)
    assert s.max_by_db.get("app") == 1, s.max_by_db
    d.databases = {"app": cluster.conninfo("app", max_db_connections=3)}
    d.write_config()
    d.reload()
    with Sampler(cluster) as s:
        run_clients(d, [("app", "alice")] * 6, transactions=5, sleep=0.1)
    assert s.max_by_db.get("app") == 3, s.max_by_db
    with psycopg.connect(d.dsn("pglease"), autocommit=True) as adm:
        cur = adm.execute("SHOW DATABASES")
        cols = [c.name for c in cur.description]
        row = [dict(zip(cols, r)) for r in cur.fetchall() if r[0] == "app"][0]
    assert row["max_connections"] == 3, row
    # Lowered again: idle backends above the new cap close at once.
    d.databases = {"app": cluster.conninfo("app", max_db_connections=2)}
    d.write_config()
    d.reload()
    wait_for(lambda: backends(cluster, datname="app") <= 2, what="idle backends above the lowered cap closed")


def test_reload_applies_a_users_entry(pglease, cluster, roles):
    d = pglease(databases={"app": cluster.conninfo("app")}, default_pool_size=5, admin_users="postgres")
    with d.connect("app", user="alice") as c:
        c.execute("select 1")

    def alice_row():
        with psycopg.connect(d.dsn("pglease"), autocommit=True) as adm:
            cur = adm.execute("SHOW POOLS")
            cols = [col.name for col in cur.description]
            return [dict(zip(cols, r)) for r in cur.fetchall() if r[:2] == ("app", "alice")][0]

    assert alice_row()["pool_size"] == 5
    d.users = {"alice": "pool_size=2 max_user_connections=1"}
    d.write_config()
    d.reload()
    row = alice_row()
    assert (row["pool_size"], row["max_user_connections"]) == (2, 1), row
    with Sampler(cluster) as s:
        run_clients(d, [("app", "alice")] * 4, transactions=3)
    assert s.max_by_user.get("alice") == 1, s.max_by_user
    with psycopg.connect(d.dsn("pglease"), autocommit=True) as adm:
        cur = adm.execute("SHOW USERS")
        cols = [col.name for col in cur.description]
        users = {r[0]: dict(zip(cols, r)) for r in cur.fetchall()}
    assert users["alice"]["pool_size"] == 2 and users["alice"]["pool_mode"] is None, users
    assert (users["alice"]["max_user_connections"], users["alice"]["current_connections"]) == (1, 1), users
    # postgres (the harness's readiness check) has a pool but no entry: listed after the entries
    assert users["postgres"]["pool_size"] is None and users["postgres"]["max_user_connections"] == 0, users


def test_cap_holds_while_backends_are_killed(pglease, cluster, roles):
    """The hard case: two busy pools at a shared cap while PostgreSQL terminates their backends."""
    d = pglease(databases={"app": cluster.conninfo("app", max_db_connections=3)}, default_pool_size=3)
    stop = threading.Event()
    kills = []

    def killer():
        with cluster.connect("postgres") as conn:
            while not stop.is_set():
                r = conn.execute("select pg_terminate_backend(pid) from pg_stat_activity where usename = any(%s) "
                                 "and datname = 'app' order by random() limit 1", (list(USERS),)).fetchall()
                kills.extend(r)
                time.sleep(0.15)

    failures = []

    def client(user):
        for _ in range(15):
            try:
                with d.connect("app", user=user) as c:
                    for _ in range(3):
                        with c.transaction():
                            c.execute("select pg_sleep(0.02)")
            except psycopg.OperationalError as e:
                failures.append(str(e))  # a backend killed under a lease: FATAL 08006 to that client only

    with Sampler(cluster) as s:
        k = threading.Thread(target=killer)
        k.start()
        threads = [threading.Thread(target=client, args=(u,)) for u in USERS for _ in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        stop.set()
        k.join(10)
    assert len(kills) > 10, kills
    assert s.max_by_db.get("app", 0) <= 3, s.max_by_db
    assert s.seen_users == set(USERS)
    assert all("terminat" in f or "server closed the connection" in f or "08006" in f or "lost" in f
               for f in failures), failures[:5]
    # Served again afterwards, within the cap.
    run_clients(d, [("app", "alice")] * 4 + [("app", "bob")] * 4, transactions=2)
    assert backends(cluster, datname="app") <= 3


def test_concurrent_logins_past_a_client_cap_exactly_the_cap_gets_in(pglease, cluster, roles):
    d = pglease(databases={"app": cluster.conninfo("app", max_db_client_connections=5)}, default_pool_size=2)
    release = threading.Event()
    ready = threading.Barrier(21)
    outcomes = []

    def login():
        ready.wait(10)
        try:
            with d.connect("app", user="alice") as c:
                outcomes.append("in")
                c.execute("select 1")
                release.wait(20)
        except psycopg.OperationalError as e:
            outcomes.append(str(e))

    threads = [threading.Thread(target=login) for _ in range(20)]
    for t in threads:
        t.start()
    ready.wait(10)
    wait_for(lambda: len(outcomes) == 20, timeout=20, what="every login answered")
    release.set()
    for t in threads:
        t.join(30)
    refused = [o for o in outcomes if o != "in"]
    assert outcomes.count("in") == 5, outcomes
    assert all('too many connections for database "app"' in o for o in refused), refused[:3]


def test_a_cap_of_one_is_shared_by_two_busy_pools(pglease, cluster, roles):
    """Neither pool can give the other a backend and keep one: they take turns, the longer wait first. Each pool's
    load alone outlasts query_wait_timeout, so the pool that waits first would time out without turns."""
    d = pglease(databases={"app": cluster.conninfo("app", max_db_connections=1)}, default_pool_size=2,
                query_wait_timeout=4)
    t0 = time.monotonic()
    with Sampler(cluster) as s:
        run_clients(d, [("app", "alice")] * 3 + [("app", "bob")] * 3, transactions=60, sleep=0.03)
    took = time.monotonic() - t0
    assert s.max_by_db.get("app") == 1, s.max_by_db
    assert s.seen_users == set(USERS)
    assert took > 6, "each pool alone needs 60 * 3 * 0.03 s: %.1f s" % took
    assert d.log_text().count("closed to make room for pool") >= 4, "the pools did not take turns"


def test_a_lowered_cap_closes_idle_backends_of_a_retired_pool_too(pglease, cluster, roles):
    """A reload that changes pool_mode retires the pool (its clients stay); a later lower cap still applies to it."""
    d = pglease(databases={"app": cluster.conninfo("app", max_db_connections=3)}, default_pool_size=3)
    run_clients(d, [("app", "alice")] * 6, transactions=3)
    wait_for(lambda: backends(cluster, usename="alice") == 3, what="3 idle backends")
    with d.connect("app", user="alice") as stays:
        d.databases = {"app": cluster.conninfo("app", max_db_connections=3, pool_mode="session")}
        d.write_config()
        d.reload()
        assert "pool_mode changed to session" in d.log_text()
        assert backends(cluster, usename="alice") == 3, "the retired pool keeps its backends while a client stays"
        d.databases = {"app": cluster.conninfo("app", max_db_connections=1, pool_mode="session")}
        d.write_config()
        d.reload()
        wait_for(lambda: backends(cluster, usename="alice") <= 1, what="idle backends above the lowered cap closed")
        assert stays.execute("select 1").fetchone()[0] == 1
    with d.connect("app", user="bob") as c:
        assert c.execute("select 2").fetchone()[0] == 2
