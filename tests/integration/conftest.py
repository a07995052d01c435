"""Fixtures for pglease's integration tests.

cluster   session-scoped private PostgreSQL (tests/lib/pgcluster.sh), database "app",
          table items(id, val)
direct    psycopg connection straight to PostgreSQL (database app, autocommit), for checks
pglease   factory: pglease(databases=None, **settings) -> a started Daemon (see harness.py);
          stopped at teardown, which fails if it died early or a sanitizer reported
"""
import os
import signal
import time
import warnings

import pytest

import harness
from harness import Daemon

DEFAULT_TIME_LIMIT = 60

# Clients started in-process (psycopg) read libpq's environment too.
for _k in harness.LIBPQ_ENV:
    os.environ.pop(_k, None)


def pytest_configure(config):
    config.addinivalue_line("markers", "timeout(seconds): wall-clock limit for one test (default %d)"
                            % DEFAULT_TIME_LIMIT)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    if rep.failed:
        for d in getattr(item, "_pglease_daemons", []):
            rep.sections.append(("pglease log (port %d, pid %s)" % (d.port, d.proc.pid if d.proc else "-"),
                                 d.log_tail(120)))


@pytest.fixture(scope="session")
def pglease_bin():
    b = os.environ.get("PGLEASE_BIN") or os.path.join(harness.REPO, "pglease")
    if not (os.path.isfile(b) and os.access(b, os.X_OK)):
        pytest.fail("pglease binary %r not found or not executable (set PGLEASE_BIN)" % b)
    return b


@pytest.fixture(scope="session")
def cluster():
    with harness.app_cluster() as c:
        yield c


@pytest.fixture
def direct(cluster):
    conn = cluster.connect("app")
    yield conn
    conn.close()


@pytest.fixture(autouse=True)
def _time_limit(request):
    m = request.node.get_closest_marker("timeout")
    secs = m.args[0] if m else DEFAULT_TIME_LIMIT

    def expired(signum, frame):
        raise TimeoutError("test exceeded its %ss time limit" % secs)

    old = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, secs)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@pytest.fixture
def pglease(request, cluster, pglease_bin):
    daemons = []
    request.node._pglease_daemons = daemons

    def factory(databases=None, start=True, **settings):
        d = Daemon(pglease_bin, cluster, settings, databases)
        daemons.append(d)
        if start:
            d.start()
        return d

    yield factory

    problems = []
    for d in daemons:
        for p in d.stop():
            problems.append("%s\n--- log tail (port %d) ---\n%s" % (p, d.port, d.log_tail(120)))
        if d.sigkilled:
            warnings.warn("pglease (port %d) ignored SIGTERM for 10 s and was killed" % d.port)
        elif d.stop_seconds is not None and d.stop_seconds > 3:
            warnings.warn("pglease (port %d) took %.1f s to exit on SIGTERM" % (d.port, d.stop_seconds))
    # Let the backends of stopped daemons go away, so the next test sees a clean app database.
    # A backend stuck in a long query (e.g. pg_sleep of a killed client that pglease failed
    # to cancel) does not notice its client is gone: terminate it, so it cannot disturb
    # later tests. Whether the test itself passed was decided before this point.
    if daemons:
        try:
            with cluster.connect("app") as conn:
                deadline = time.monotonic() + 5
                while harness.app_backends(conn) and time.monotonic() < deadline:
                    time.sleep(0.05)
                for pid, *_ in harness.app_backends(conn):
                    conn.execute("select pg_terminate_backend(%s)", (pid,))
                deadline = time.monotonic() + 5
                while harness.app_backends(conn) and time.monotonic() < deadline:
                    time.sleep(0.05)
        except Exception:
            pass
    for d in daemons:
        d.cleanup()
    if problems:
        pytest.fail("\n\n".join(problems), pytrace=False)
