"""server_check_delay: a backend is checked before a lease only when it has sat unused that long."""
import re
import subprocess
import time

CHECK = "select nextval('pglease_checks')"


def _checks(direct):
    return direct.execute("select last_value, is_called from pglease_checks").fetchone()


def _setup_sequence(direct):
    direct.execute("drop sequence if exists pglease_checks")
    direct.execute("create sequence pglease_checks")


def test_backend_unused_past_check_delay_is_checked_once(pglease, direct):
    _setup_sequence(direct)
    d = pglease(default_pool_size=1, server_check_delay=1.5, server_check_query=CHECK)
    c = d.connect()
    c.execute("select 1")
    assert _checks(direct) == (1, False), "a fresh backend needs no check"
    time.sleep(2.0)
    c.execute("select 1")
    assert _checks(direct) == (1, True), "the idle backend was checked before its next lease"
    c.execute("select 1")
    assert _checks(direct) == (1, True), "a backend just used is not checked again"
    c.close()


def test_backend_passed_between_waiting_clients_is_not_checked_every_lease(pglease, direct, tmp_path):
    """Under sustained load a backend goes from client to client without idling."""
    _setup_sequence(direct)
    d = pglease(default_pool_size=1, server_check_delay=0.3, server_check_query=CHECK)
    script = tmp_path / "select.sql"
    script.write_text("select 1;\n")
    r = subprocess.run(["pgbench", "-n", "-f", str(script), "-c", "8", "-j", "2", "-T", "2",
                        "-h", d.dir, "-p", str(d.port), "-U", "postgres", "app"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    leases = int(re.search(r"number of transactions actually processed: (\d+)", r.stdout).group(1))
    value, called = _checks(direct)
    checks = value if called else 0
    assert leases > 500, "too little work to tell: %d" % leases
    assert checks <= 2, "%d health checks for %d leases of a busy backend" % (checks, leases)
