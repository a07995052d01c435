"""SIGHUP: the config file is read again and applied to the running pools, atomically."""
import os
import select
import signal
import subprocess
import time

import psycopg
import pytest

from harness import app_backends, closed_with, clean_env, read_lines_until, spawn_client, wait_for, kill9

PGBENCH_SCRIPT = """\
BEGIN;
INSERT INTO items (val) VALUES ('reload-bench');
SELECT count(*) FROM items WHERE id < 10;
COMMIT;
"""


def run_pgbench(d, seconds, clients=8):
    script = os.path.join(d.dir, "bench.sql")
    with open(script, "w") as f:
        f.write(PGBENCH_SCRIPT)
    return subprocess.Popen(["pgbench", "-n", "-f", script, "-c", str(clients), "-j", "2", "-T", str(seconds),
                             "-h", d.dir, "-p", str(d.port), "-U", "postgres", "app"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())


def show(d, setting, dbname="app"):
    r = d.psql("-c", "show %s" % setting, dbname=dbname)
    assert r.returncode == 0, r.stderr
    return r.stdout.strip()


def lines_for(proc, seconds):
    """What proc prints within seconds."""
    out, deadline = b"", time.monotonic() + seconds
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], max(0, deadline - time.monotonic()))
        if r:
            chunk = os.read(proc.stdout.fileno(), 4096)
            if not chunk:
                break
            out += chunk
    return out.decode().splitlines()


def app_pids(direct):
    return {r[0] for r in app_backends(direct)}


@pytest.mark.timeout(60)
def test_reloads_under_pgbench_fail_no_transaction(pglease, cluster):
    d = pglease(default_pool_size=4, databases={"app": cluster.conninfo("app", options="-c work_mem=1111kB")})
    bench = run_pgbench(d, 6)
    time.sleep(1)
    d.settings["default_pool_size"] = "6"
    d.reload()
    time.sleep(1)
    d.databases["app"] = cluster.conninfo("app", options="-c work_mem=2222kB")
    d.reload()
    time.sleep(1)
    d.write_config(d.config_text() + "this line is not an ini line\n")
    before = d.reload_count()
    d.signal(signal.SIGHUP)
    wait_for(lambda: d.reload_count() > before, what="the failed reload's log line")
    out, err = bench.communicate(timeout=30)
    assert bench.returncode == 0, out + err
    assert "error" not in err.lower(), err
    processed = [l for l in out.splitlines() if "number of transactions actually processed" in l]
    assert processed and int(processed[0].split(":")[1].split()[0]) > 0, out
    failed = [l for l in out.splitlines() if "number of failed transactions" in l]
    assert not failed or failed[0].split(":")[1].split()[0] == "0", out
    log = d.log_text()
    assert "reloaded %s: 0 databases added, 0 removed, 0 changed" % d.config_path in log
    assert "reloaded %s: 0 databases added, 0 removed, 1 changed" % d.config_path in log
    assert "reload of %s failed" % d.config_path in log
    assert show(d, "work_mem") == "2222kB"


def test_broken_file_is_logged_with_line_and_the_old_config_keeps_serving(pglease, cluster):
    d = pglease(databases={"app": cluster.conninfo("app", options="-c work_mem=1111kB")})
    d.databases["app"] = cluster.conninfo("app", options="-c work_mem=2222kB")
    d.databases["other"] = cluster.conninfo("app")
    d.settings["default_pool_size"] = "not-a-number"
    d.reload()
    log = d.log_text()
    assert "reload of %s failed; the running configuration is kept" % d.config_path in log
    lines = [l for l in log.splitlines() if "default_pool_size" in l and d.config_path + ":" in l]
    assert lines, log
    assert lines[0].split(d.config_path + ":")[1].split(":")[0].isdigit(), lines[0]
    assert show(d, "work_mem") == "1111kB"
    r = d.psql("-c", "select 1", dbname="other")
    assert r.returncode != 0 and "does not exist" in r.stderr


def test_new_database_appears(pglease, cluster):
    d = pglease()
    r = d.psql("-c", "select 1", dbname="fresh")
    assert r.returncode != 0 and "does not exist" in r.stderr
    d.databases["fresh"] = cluster.conninfo("app")
    d.reload()
    assert "1 databases added, 0 removed, 0 changed" in d.log_text()
    r = d.psql("-c", "select current_database()", dbname="fresh")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "app"


@pytest.mark.timeout(60)
def test_removed_database_closes_after_its_lease(pglease, cluster, direct):
    d = pglease(databases={"app": cluster.conninfo("app"),
                           "gone": cluster.conninfo("app", application_name="gone_pool")})
    leased = d.connect("gone", autocommit=False)
    leased.execute("insert into items (val) values ('removed-db-commit')")
    idle = d.connect("gone")
    idle.execute("select 1")
    del d.databases["gone"]
    d.reload()
    assert "0 databases added, 1 removed, 0 changed" in d.log_text()
    # The idle client is told why at once.
    assert "was removed from the pglease configuration" in closed_with(d, idle)
    # The leased one finishes its transaction, then is closed.
    leased.execute("select 1")
    leased.commit()
    with pytest.raises(psycopg.OperationalError):
        leased.execute("select 1")
    leased.close()
    idle.close()
    assert direct.execute("select count(*) from items where val = 'removed-db-commit'").fetchone()[0] == 1
    wait_for(lambda: not direct.execute(
        "select pid from pg_stat_activity where application_name = 'gone_pool'").fetchall(),
        what="the removed database's backends to close")
    r = d.psql("-c", "select 1", dbname="gone")
    assert r.returncode != 0 and "does not exist" in r.stderr
    assert d.psql("-c", "select 1").returncode == 0


@pytest.mark.timeout(60)
def test_changed_conninfo_retires_old_backends_as_leases_end(pglease, cluster, direct):
    d = pglease(databases={"app": cluster.conninfo("app", options="-c work_mem=1111kB")})
    leased = d.connect(autocommit=False)
    leased_pid = leased.execute("select pg_backend_pid()").fetchone()[0]
    other = d.connect()
    other.execute("select 1")
    before = app_pids(direct)
    assert leased_pid in before and len(before) == 2
    d.databases["app"] = cluster.conninfo("app", options="-c work_mem=2222kB")
    d.reload()
    assert "0 databases added, 0 removed, 1 changed" in d.log_text()
    # Idle old backends go now, the leased one stays until its lease ends.
    wait_for(lambda: app_pids(direct) & before == {leased_pid}, what="idle old backends to close")
    assert leased.execute("show work_mem").fetchone()[0] == "1111kB"
    leased.commit()
    wait_for(lambda: not (app_pids(direct) & before), what="the old leased backend to close")
    assert other.execute("show work_mem").fetchone()[0] == "2222kB"
    leased.close()
    other.close()


@pytest.mark.timeout(60)
def test_pool_size_change_applies_at_once(pglease, cluster):
    d = pglease(databases={"app": cluster.conninfo("app", pool_size=2)})
    clients = [spawn_client(d.dsn(), ["begin", "select 1"]) for _ in range(2)]
    try:
        for c in clients:
            read_lines_until(c, "READY")
        clients.append(spawn_client(d.dsn(), ["begin", "select 1"]))
        # logged in, and waiting for a backend: its "begin" has no answer
        lines = lines_for(clients[2], 3.0)
        assert lines and lines[0].startswith("PID") and "OK" not in lines, lines
        d.databases["app"] = cluster.conninfo("app", pool_size=3)
        d.reload()
        read_lines_until(clients[2], "READY", timeout=5)
    finally:
        for c in clients:
            kill9(c)


def test_restart_only_settings_are_kept(pglease):
    d = pglease()
    port = d.settings["listen_port"]
    d.settings["listen_port"] = str(int(port) + 1)
    d.reload()
    assert "listen_port changed from %s to %d: restart pglease to apply it" % (port, int(port) + 1) in d.log_text()
    d.settings["listen_port"] = port
    assert d.psql("-c", "select 1").returncode == 0


@pytest.mark.timeout(60)
def test_removed_session_mode_database_ends_sessions_at_transaction_end(pglease, cluster, direct):
    d = pglease(databases={"app": cluster.conninfo("app"),
                           "gone": cluster.conninfo("app", application_name="gone_session", pool_mode="session")})
    between = d.connect("gone")
    between.execute("select 1")        # holds its session's backend, not in a transaction
    inside = d.connect("gone", autocommit=False)
    inside.execute("insert into items (val) values ('removed-session-commit')")
    del d.databases["gone"]
    d.reload()
    assert "was removed from the pglease configuration" in closed_with(d, between)
    inside.commit()
    with pytest.raises(psycopg.OperationalError):
        inside.execute("select 1")
    assert direct.execute("select count(*) from items where val = 'removed-session-commit'").fetchone()[0] == 1
    wait_for(lambda: not direct.execute(
        "select pid from pg_stat_activity where application_name = 'gone_session'").fetchall(),
        what="the removed database's backends to close")
    between.close()
    inside.close()


@pytest.mark.timeout(60)
def test_pool_mode_change_applies_to_new_clients(pglease, cluster):
    d = pglease(query_wait_timeout=2, databases={"app": cluster.conninfo("app", pool_size=1)})
    old = d.connect()
    old.execute("select 1")
    d.databases["app"] = cluster.conninfo("app", pool_size=1, pool_mode="session")
    d.reload()
    assert "pool_mode changed to session; current clients keep transaction mode" in d.log_text()
    # New clients get a session-mode pool of one backend: a second session waits, then times out.
    first = d.connect()
    first.execute("select 1")
    second = d.connect()
    with pytest.raises(psycopg.OperationalError) as e:
        second.execute("select 1")
    assert "query_wait_timeout" in str(e.value)
    # The client from before the reload still has its transaction-mode pool.
    assert old.execute("select 2").fetchone()[0] == 2
    old.close()
    wait_for(lambda: "removed: retired and empty" in d.log_text(), what="the retired pool to go")
    first.close()
    second.close()
