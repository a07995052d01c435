"""pglease --check CONFIG: exit 0 on a good config, 1 with FILE:LINE on a bad one."""
import os
import subprocess

from harness import clean_env

GOOD = """\
[pglease]
listen_port = 6432
unix_socket_dir = {dir}
unix_socket_mode = 0777
auth_type = trust
pool_mode = transaction
default_pool_size = 20
min_pool_size = 0
max_client_conn = 100
query_wait_timeout = 120
server_connect_timeout = 15
client_login_timeout = 60
server_check_delay = 30
server_idle_timeout = 600
server_lifetime = 3600
server_drain_timeout = 5
server_reset_query = DISCARD ALL
server_check_query = select 1
log_level = info
[databases]
app = host=/tmp/pgdir port=5432 dbname=app pool_size=5 pool_mode=session
other = host=/tmp/pgdir port=5432 dbname=other user=someone
"""


def check(pglease_bin, path):
    return subprocess.run([pglease_bin, "--check", path], capture_output=True, text=True, timeout=30,
                          env=clean_env(), stdin=subprocess.DEVNULL)


def test_check_accepts_a_good_config_without_starting(pglease_bin, tmp_path):
    p = tmp_path / "good.ini"
    p.write_text(GOOD.format(dir=tmp_path))
    r = check(pglease_bin, str(p))
    assert r.returncode == 0, r.stdout + r.stderr
    assert not os.path.exists(tmp_path / ".s.PGSQL.6432"), "--check opened the listening socket"


def test_check_rejects_unknown_key_naming_file_and_line(pglease_bin, tmp_path):
    lines = GOOD.format(dir=tmp_path).splitlines()
    lines.insert(7, "no_such_setting = 1")  # becomes line 8
    p = tmp_path / "unknown.ini"
    p.write_text("\n".join(lines) + "\n")
    r = check(pglease_bin, str(p))
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "%s:8" % p in out, out
    assert "no_such_setting" in out, out


def test_check_rejects_bad_value_naming_file_and_line(pglease_bin, tmp_path):
    text = GOOD.format(dir=tmp_path).replace("pool_mode = transaction", "pool_mode = sometimes")
    p = tmp_path / "badvalue.ini"
    p.write_text(text)
    line = text.splitlines().index("pool_mode = sometimes") + 1
    r = check(pglease_bin, str(p))
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert "%s:%d" % (p, line) in out, out


def test_check_rejects_missing_file(pglease_bin, tmp_path):
    r = check(pglease_bin, str(tmp_path / "missing.ini"))
    assert r.returncode == 1, r.stdout + r.stderr
