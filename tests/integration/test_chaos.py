"""Faults under load: backends terminated and clients killed while pgbench runs.

pglease must stay up, keep serving, report nothing under the sanitizers (the
fixture checks the log), and end with every backend idle and clean."""
import random
import subprocess
import time

import pytest

from harness import DIRECT_APPNAME, app_backends, clean_env, kill9, locks_held_by_app_backends, wait_for

POOL = 6
SCRIPT = ("begin;\n"
          "update items set val = val where id = (select min(id) from items);\n"
          "select pg_sleep(0.005 * random());\n"
          "commit;\n")


def _pgbench(d, script, clients, seconds):
    return subprocess.Popen(["pgbench", "-n", "-f", str(script), "-c", str(clients), "-j", "2", "-T", str(seconds),
                             "-h", d.dir, "-p", str(d.port), "-U", "postgres", "app"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL,
                            env=clean_env())


@pytest.mark.timeout(60)
def test_terminated_backends_and_killed_clients_under_load(pglease, cluster, direct, tmp_path):
    direct.execute("insert into items(val) values ('chaos')")
    d = pglease(databases={"app": cluster.conninfo("app", user="postgres")},
                default_pool_size=POOL, min_pool_size=2, server_drain_timeout=1, query_wait_timeout=10)
    script = tmp_path / "chaos.sql"
    script.write_text(SCRIPT)
    rnd = random.Random(7)
    load = [_pgbench(d, script, 12, 6)]
    deadline = time.monotonic() + 6
    while time.monotonic() < deadline:
        time.sleep(0.4)
        direct.execute("select pg_terminate_backend(pid) from pg_stat_activity "
                       "where datname = 'app' and application_name <> %s order by random() limit 1",
                       (DIRECT_APPNAME,))
        if rnd.random() < 0.4:
            kill9(load[-1])
            load.append(_pgbench(d, script, 6, 2))
    for p in load:
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            kill9(p)
    d.check_alive()
    assert d.psql("-Atc", "select 'still serving'").stdout.strip() == "still serving"

    def settled():
        rows = app_backends(direct)
        return rows if rows and all(r[1] == "idle" for r in rows) and not locks_held_by_app_backends(direct) else None
    wait_for(settled, 15, what=lambda: "idle app backends without locks (have %r)" % (app_backends(direct),))
    assert len(app_backends(direct)) <= POOL
    assert "server connection lost" in d.log_text(), "no lease was hit by a termination: the test did nothing"
