"""Backend connect failures reach the waiting clients with libpq's text and an SQLSTATE."""
import pgwire
from pgwire import Wire, read_fatal


def _login_error(d, database):
    w = Wire(d.socket_path)
    try:
        w.send(pgwire.startup_packet({"user": "postgres", "database": database}))
        fields = read_fatal(w)
        assert w.wait_closed(5)
        return fields
    finally:
        w.close()


def test_backend_fatal_at_connect_is_passed_on_with_its_sqlstate(pglease, cluster):
    d = pglease(databases={"app": cluster.conninfo("app"), "gone": cluster.conninfo("no_such_db")})
    fields = _login_error(d, "gone")
    assert fields["S"] == "FATAL"
    assert fields["C"] == "3D000"
    assert 'database "no_such_db" does not exist' in fields["M"]
    assert "pglease: backend connection failed" not in fields["M"]
    assert "backend connection failed" in d.log_text()
    # other pools are unaffected
    assert d.psql("-Atc", "select 1").stdout.strip() == "1"


def test_unresolvable_backend_host_fails_with_08001_without_blocking(pglease, cluster):
    d = pglease(databases={"app": cluster.conninfo("app"),
                           "nowhere": "host=no-such-host.invalid port=5432 dbname=app"})
    fields = _login_error(d, "nowhere")
    assert fields["C"] == "08001"
    assert 'could not translate host name "no-such-host.invalid"' in fields["M"]
    assert d.psql("-Atc", "select 1").stdout.strip() == "1"


def test_unreachable_backend_socket_fails_with_08001(pglease, cluster, tmp_path):
    d = pglease(databases={"app": cluster.conninfo("app"),
                           "dead": "host=%s port=1 dbname=app" % tmp_path})
    fields = _login_error(d, "dead")
    assert fields["C"] == "08001"
    assert "No such file or directory" in fields["M"] or "could not connect" in fields["M"]
    assert d.psql("-Atc", "select 1").stdout.strip() == "1"


def test_a_socket_then_a_host_name_connects_through_the_socket(pglease, cluster):
    # libpq counts two hosts, so the resolved hostaddr list must have two entries (",127.0.0.1"):
    # with one, libpq refused every connect ("could not match 2 host names to 1 hostaddr values").
    d = pglease(databases={"app": cluster.conninfo("app"),
                           "both": cluster.conninfo("app", host="%s,localhost" % cluster.dir)})
    assert d.psql("-Atc", "select 1", dbname="both").stdout.strip() == "1"
    assert "could not match" not in d.log_text()
