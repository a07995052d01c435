"""The listening socket: one pglease per socket, stale sockets replaced; --help and --version."""
import os
import signal
import subprocess

from harness import clean_env


def _run(binary, *args, timeout=10):
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=timeout,
                          env=clean_env(), stdin=subprocess.DEVNULL)


def test_second_pglease_on_the_same_socket_is_refused(pglease, pglease_bin):
    d = pglease()
    r = _run(pglease_bin, d.config_path)
    assert r.returncode != 0
    assert "another pglease (pid %d) is already running" % d.pid in r.stderr
    # the first one is untouched and keeps serving
    assert os.path.exists(d.socket_path)
    assert d.psql("-Atc", "select 1").stdout.strip() == "1"


def test_stale_socket_left_by_a_crash_is_replaced(pglease, pglease_bin):
    d = pglease()
    os.kill(d.pid, signal.SIGKILL)
    d.proc.wait(timeout=10)
    d.stopped_by_us = True
    assert os.path.exists(d.socket_path), "a killed pglease leaves its socket behind"
    d.stopped_by_us = False
    d.start()
    assert d.psql("-Atc", "select 2").stdout.strip() == "2"


def test_help_and_version(pglease_bin):
    r = _run(pglease_bin, "--help")
    assert r.returncode == 0
    assert "pglease --check CONFIG" in r.stdout
    r = _run(pglease_bin, "--version")
    assert r.returncode == 0
    assert r.stdout.startswith("pglease ")
    r = _run(pglease_bin, "--no-such-flag")
    assert r.returncode == 2
    assert "Usage" in r.stderr
