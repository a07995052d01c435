"""pgbench through pglease in transaction mode: every transaction processed, never more
backends than the pool size."""
import re
import subprocess
import threading
import time

import pytest

from harness import app_backends, clean_env

CLIENTS, JOBS, TX, POOL = 20, 2, 200, 5


@pytest.fixture(scope="module")
def pgbench_tables(cluster):
    r = subprocess.run(["pgbench", "-i", "-q", "-s", "1", "-h", cluster.dir, "-p", str(cluster.port),
                        "-U", "postgres", "app"], capture_output=True, text=True, timeout=120, env=clean_env())
    assert r.returncode == 0, r.stderr
    yield
    with cluster.connect() as c:
        c.execute("drop table if exists pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history")


class BackendSampler:
    def __init__(self, cluster):
        self.cluster = cluster
        self.samples = []
        self.stop = threading.Event()
        self.error = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        try:
            with self.cluster.connect() as c:
                while not self.stop.is_set():
                    self.samples.append(len(app_backends(c)))
                    time.sleep(0.02)
        except Exception as e:
            self.error = e

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join(10)


@pytest.mark.timeout(170)
@pytest.mark.parametrize("mode", ["simple", "extended"])
def test_pgbench_through_pglease_processes_every_transaction_within_pool_size(pglease, cluster, direct,
                                                                               pgbench_tables, mode):
    d = pglease(databases={"app": cluster.conninfo("app", pool_size=POOL)}, pool_mode="transaction",
                max_client_conn=CLIENTS + 10, query_wait_timeout=60)
    history_before = direct.execute("select count(*) from pgbench_history").fetchone()[0]
    with BackendSampler(cluster) as sampler:
        r = subprocess.run(["pgbench", "-n", "-M", mode, "-c", str(CLIENTS), "-j", str(JOBS), "-t", str(TX),
                            "-h", d.dir, "-p", str(d.port), "-U", "postgres", "app"],
                           capture_output=True, text=True, timeout=150, env=clean_env())
    assert sampler.error is None, sampler.error
    assert r.returncode == 0, "pgbench failed (%d):\n%s\n%s" % (r.returncode, r.stdout, r.stderr)
    m = re.search(r"number of transactions actually processed: (\d+)/(\d+)", r.stdout)
    assert m, r.stdout
    assert int(m.group(1)) == CLIENTS * TX, r.stdout
    assert int(m.group(2)) == CLIENTS * TX, r.stdout
    failed = re.search(r"number of failed transactions: (\d+)", r.stdout)
    assert failed is None or int(failed.group(1)) == 0, r.stdout
    # Each tpcb-like transaction inserts one history row.
    assert direct.execute("select count(*) from pgbench_history").fetchone()[0] - history_before == CLIENTS * TX
    assert sampler.samples and max(sampler.samples) >= 1, "sampler saw no pglease backends at all"
    assert max(sampler.samples) <= POOL, "up to %d app backends with pool_size=%d" % (max(sampler.samples), POOL)
