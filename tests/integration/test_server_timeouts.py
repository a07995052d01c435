"""Backend lifecycle knobs: server_idle_timeout closes idle backends above min_pool_size,
server_lifetime recycles old idle backends but never one under a lease."""
import time

from harness import app_backends, wait_for, wait_pool_size


def user_pool(pglease, cluster, **settings):
    return pglease(databases={"app": cluster.conninfo("app", user="postgres")}, **settings)


def open_backends(d, n):
    """Make the pool open n backends by holding n transactions at once."""
    conns = [d.connect() for _ in range(n)]
    try:
        for c in conns:
            c.execute("begin")
            c.execute("select 1")
        pids = {c.execute("select pg_backend_pid()").fetchone()[0] for c in conns}
        for c in conns:
            c.execute("commit")
    finally:
        for c in conns:
            c.close()
    assert len(pids) == n
    return pids


def test_server_idle_timeout_closes_idle_backends_down_to_min_pool_size(pglease, cluster, direct):
    d = user_pool(pglease, cluster, default_pool_size=3, min_pool_size=1, server_idle_timeout=1)
    pids = open_backends(d, 3)
    assert pids <= {r[0] for r in app_backends(direct)}
    left = wait_for(lambda: len(app_backends(direct)) == 1 and app_backends(direct), 10,
                    what=lambda: "idle backends closed down to min_pool_size=1 (have %r)" % app_backends(direct))
    time.sleep(2.0)  # past the timeout again: min_pool_size must be kept
    assert [r[0] for r in app_backends(direct)] == [r[0] for r in left]
    with d.connect() as c:
        assert c.execute("select 1").fetchone()[0] == 1


def test_server_lifetime_recycles_idle_backend(pglease, cluster, direct):
    d = user_pool(pglease, cluster, default_pool_size=1, min_pool_size=1, server_lifetime=1)
    first = wait_pool_size(direct, 1)
    wait_for(lambda: (lambda p: len(p) == 1 and not (p & first))({r[0] for r in app_backends(direct)}), 10,
             what=lambda: "backend %r replaced after server_lifetime=1 (have %r)" % (first, app_backends(direct)))
    with d.connect() as c:
        assert c.execute("select 1").fetchone()[0] == 1


def test_server_lifetime_never_closes_a_leased_backend(pglease, cluster, direct):
    d = user_pool(pglease, cluster, default_pool_size=1, min_pool_size=1, server_lifetime=1)
    wait_pool_size(direct, 1)
    with d.connect() as c:
        c.execute("begin")
        pid = c.execute("select pg_backend_pid()").fetchone()[0]
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert c.execute("select pg_backend_pid()").fetchone()[0] == pid
            time.sleep(0.2)
        c.execute("commit")


def test_unused_pool_is_removed_after_server_idle_timeout(pglease, cluster):
    """A "*" entry makes a pool per database name; unused ones must not pile up."""
    d = pglease(server_idle_timeout=1, databases={"app": cluster.conninfo("app"), "*": cluster.conninfo(None)})
    assert d.psql("-Atc", "select current_database()", dbname="postgres").stdout.strip() == "postgres"
    wait_for(lambda: "pool postgres/postgres removed" in d.log_text(), 10, what="the unused pool's removal")
    # the name still works: the pool comes back on demand
    assert d.psql("-Atc", "select 1", dbname="postgres").stdout.strip() == "1"
