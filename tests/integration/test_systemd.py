"""systemd integration: sd_notify messages and socket activation (needs a build with libsystemd)."""
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest

from harness import PY, app_backends, clean_env, wait_for


def built_with_systemd(binary):
    r = subprocess.run(["ldd", binary], capture_output=True, text=True)
    return "libsystemd" in r.stdout


@pytest.fixture
def systemd_build(pglease_bin):
    if not built_with_systemd(pglease_bin):
        pytest.skip("pglease built without libsystemd")


class NotifySocket:
    """The datagram socket systemd would listen on ($NOTIFY_SOCKET); collects what pglease says."""

    def __init__(self, directory):
        self.path = os.path.join(directory, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.1)
        self.messages = []

    def poll(self):
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except (socket.timeout, BlockingIOError):
                return self.messages

    def wait(self, pred, timeout=10, what="a notify message"):
        return wait_for(lambda: [m for m in self.poll() if pred(m)], timeout, what=lambda: "%s (got %r)"
                        % (what, self.messages))

    def close(self):
        self.sock.close()


@pytest.fixture
def notify(tmp_path):
    d = "/tmp/pglease-notify.%d" % os.getpid()
    os.makedirs(d, exist_ok=True)
    n = NotifySocket(d)
    yield n
    n.close()
    shutil.rmtree(d, ignore_errors=True)


@pytest.mark.timeout(60)
def test_ready_status_reloading_stopping(pglease, cluster, direct, notify, systemd_build):
    d = pglease(start=False, min_pool_size=2,
                databases={"app": cluster.conninfo("app", user="postgres")})
    d.env["NOTIFY_SOCKET"] = notify.path
    d.start()
    notify.wait(lambda m: m == "READY=1", what="READY=1")
    notify.wait(lambda m: m.startswith("STATUS=clients "), what="STATUS=")
    # READY came once min_pool_size backends were open (they stay: server_idle_timeout is 600 s).
    assert len(app_backends(direct)) >= 2
    conn = d.connect()
    conn.execute("begin")
    notify.wait(lambda m: m.startswith("STATUS=clients 1, leases 1, waiting 0"), what="STATUS with a lease")
    conn.execute("commit")
    conn.close()
    first = len(notify.poll())
    d.reload()
    msgs = notify.wait(lambda m: m.startswith("RELOADING=1"), what="RELOADING=1")
    fields = dict(l.split("=", 1) for l in msgs[-1].splitlines())
    assert int(fields["MONOTONIC_USEC"]) > 0
    assert abs(int(fields["MONOTONIC_USEC"]) - time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000) < 30e6
    wait_for(lambda: "READY=1" in notify.poll()[first + 1:], what="READY=1 after the reload")
    d.signal(signal.SIGTERM)
    assert d.wait_exit(10) == 0
    notify.wait(lambda m: m == "STOPPING=1", what="STOPPING=1")


@pytest.mark.timeout(60)
def test_ready_is_not_blocked_by_a_backend_that_is_down(pglease, cluster, notify, systemd_build):
    down = cluster.conninfo("app", user="postgres").replace("port=%d" % cluster.port, "port=1")
    d = pglease(start=False, min_pool_size=2, server_connect_timeout=3, databases={"app": down})
    d.env["NOTIFY_SOCKET"] = notify.path
    d.start(wait=False)
    notify.wait(lambda m: m == "READY=1", timeout=10, what="READY=1 despite the backend being down")
    assert d.alive()


@pytest.mark.timeout(60)
def test_ready_is_not_blocked_by_a_backend_that_never_answers(pglease, cluster, notify, systemd_build):
    mute = socket.socket(socket.AF_INET, socket.SOCK_STREAM)   # accepts (backlog), never answers
    mute.bind(("127.0.0.1", 0))
    mute.listen(16)
    try:
        hung = "host=127.0.0.1 port=%d dbname=app user=postgres" % mute.getsockname()[1]
        d = pglease(start=False, min_pool_size=1, server_connect_timeout=2, databases={"app": hung})
        d.env["NOTIFY_SOCKET"] = notify.path
        t0 = time.monotonic()
        d.start(wait=False)
        notify.wait(lambda m: m == "READY=1", timeout=10, what="READY=1 despite a backend that hangs")
        assert time.monotonic() - t0 >= 1.5, "READY should wait for the connect to settle"
        assert d.alive()
    finally:
        mute.close()


@pytest.mark.timeout(60)
def test_watchdog_pings(pglease, notify, systemd_build):
    d = pglease(start=False)
    d.env.update(NOTIFY_SOCKET=notify.path, WATCHDOG_USEC="400000")
    d.wrapper = ["sh", "-c", 'WATCHDOG_PID=$$; export WATCHDOG_PID; exec "$0" "$@"']
    d.start()
    t0 = time.monotonic()
    notify.wait(lambda m: m == "READY=1", what="READY=1")
    wait_for(lambda: notify.poll().count("WATCHDOG=1") >= 4, timeout=5, what="4 watchdog pings")
    assert "systemd watchdog: pinging every 0.2 s" in d.log_text()
    assert time.monotonic() - t0 < 5


# ---- socket activation

def test_systemd_socket_activate_serves_psql(pglease, systemd_build):
    if not shutil.which("systemd-socket-activate"):
        pytest.skip("systemd-socket-activate not installed")
    d = pglease(start=False)
    d.wrapper = ["systemd-socket-activate", "-l", d.socket_path]
    d.start()
    assert d.psql("-c", "select 42").stdout.strip() == "42"
    assert "socket activation: accepting on the socket passed by systemd (fd 3)" in d.log_text()
    d.signal(signal.SIGTERM)
    assert d.wait_exit(10) == 0
    assert os.path.exists(d.socket_path), "pglease must not unlink a socket it did not create"


def test_systemd_socket_activate_passes_a_tcp_socket_too(pglease, systemd_build):
    if not shutil.which("systemd-socket-activate"):
        pytest.skip("systemd-socket-activate not installed")
    d = pglease(start=False, listen_addr="127.0.0.1")
    d.wrapper = ["systemd-socket-activate", "-l", d.socket_path, "-l", "127.0.0.1:%d" % d.port]
    d.start()
    assert d.psql("-c", "select 42").stdout.strip() == "42"
    r = subprocess.run(["psql", "-X", "-A", "-t", "-c", "select 'over tcp'",
                        "host=127.0.0.1 port=%d dbname=app user=postgres sslmode=disable" % d.port],
                       capture_output=True, text=True, timeout=30, env=clean_env())
    assert r.returncode == 0 and r.stdout.strip() == "over tcp", r.stderr
    log = d.log_text()
    assert "socket activation: accepting on the socket passed by systemd (fd 3)" in log
    assert "socket activation: accepting TCP on 127.0.0.1 port %d (fd 4)" % d.port in log
    assert 'listen_addr "127.0.0.1" is ignored: systemd passed the TCP sockets' in log


# Stands in for systemd: hands the listening socket to pglease as fd 3 with LISTEN_FDS/LISTEN_PID.
LAUNCHER = r"""
import os, sys
fd = int(sys.argv[1])
if fd != 3:
    os.dup2(fd, 3)
    os.close(fd)
os.environ["LISTEN_FDS"] = "1"
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.argv[2], sys.argv[2:])
"""


@pytest.mark.timeout(90)
def test_client_connecting_while_pglease_is_down_is_served_by_the_next_one(pglease, systemd_build):
    d = pglease(start=False)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(d.socket_path)
    os.chmod(d.socket_path, 0o777)
    listener.listen(64)
    fd = listener.fileno()
    d.wrapper = [PY, "-c", LAUNCHER, str(fd)]
    d.pass_fds = (fd,)
    try:
        d.start()
        assert d.psql("-c", "select 1").stdout.strip() == "1"
        busy = d.connect(autocommit=False)
        busy.execute("select 1")
        d.signal(signal.SIGTERM)
        # pglease is draining, then down: this client's connection waits in the socket's backlog.
        result = {}
        waiting = threading.Thread(target=lambda: result.update(r=d.psql("-c", "select 'queued'", timeout=60)))
        waiting.start()
        time.sleep(1.0)
        assert waiting.is_alive(), "the client should be waiting, not refused: %r" % result
        busy.commit()
        busy.close()
        assert d.wait_exit(10) == 0
        assert os.path.exists(d.socket_path)
        time.sleep(0.5)
        assert waiting.is_alive(), "the client should still be waiting: %r" % result
        d.logf.close()
        d.start(wait=False)
        waiting.join(30)
        assert not waiting.is_alive()
        assert result["r"].returncode == 0, result["r"].stderr
        assert result["r"].stdout.strip() == "queued"
    finally:
        listener.close()
