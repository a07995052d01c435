"""The client matrix: real PostgreSQL clients (psql, pgbench, psycopg 3, node-postgres,
pgjdbc) run the same scenario straight against PostgreSQL ("direct"), through pglease
in transaction mode and through pglease in session mode, all over the Unix socket. A
scenario prints what the client saw; every other run must print exactly what the direct
run printed.

Two modes run over TCP + TLS (sslmode=verify-full against a test CA, the host name
checked) + SCRAM-SHA-256 (a password):
  direct-tls  straight against a second PostgreSQL that takes TCP only through
              `hostssl ... scram-sha-256` (TlsCluster): checks the scenarios' own TLS
              plumbing; after each run PostgreSQL's log must show every connection of the
              run authorized over TLS by scram-sha-256;
  tls         through a pglease in transaction mode that listens on 127.0.0.1 with
              client_tls_sslmode=require and auth_type=scram-sha-256.
test_refused checks their premises: a wrong password and a certificate from an unknown CA are refused.

Test ids are CLIENT-CASE-MODE, e.g. test_matrix[node-pg-cursor-batches-transaction].
The direct run of a case is a test of its own (the scenario must work at all) and its
output is kept for the two pglease runs.
"""
import hashlib
import os
import re
import shutil
import subprocess
import tempfile

import pytest

import harness
from harness import clean_env

HERE = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.join(HERE, "node")
JDBC_SRC = os.path.join(HERE, "jdbc", "Scenarios.java")
JDBC_BUILD = os.path.join(harness.REPO, "build", "clients", "jdbc")
JDBC_JARS = ["/usr/share/java/postgresql.jar", "/usr/share/java/junixsocket-common.jar"]
JNI_DIR = "/usr/lib/x86_64-linux-gnu/jni"

MODES = ["direct", "transaction", "session", "direct-tls", "tls"]
TLS_MODES = ("direct-tls", "tls")
PASSWORD = "matrix secret 1"
# Several backends, so that in transaction mode consecutive transactions of one
# client can land on different backends (the scenarios' shufflers make sure they do,
# and SHUFFLED checks it).
# Session mode needs a backend per client (the node pool has 20, pgbench 6).
PGLEASE_SETTINGS = {"transaction": dict(default_pool_size=4, min_pool_size=2),
                    "session": dict(default_pool_size=24, min_pool_size=2)}
PGLEASE_SETTINGS["tls"] = PGLEASE_SETTINGS["transaction"]

RESET_SQL = """
do $$ declare t text; begin
  for t in select tablename from pg_tables
           where schemaname = 'public' and (tablename like 'm\\_%' or tablename like 'pgbench\\_%') loop
    execute format('drop table %I', t);
  end loop;
end $$"""


class Target:
    """Where a scenario connects: PostgreSQL itself or a pglease. host is a socket directory,
    or with ca (a PEM CA file) a host name: TCP + TLS with sslmode=verify-full, and password."""

    def __init__(self, host, port, dbname="app", ca=None, password=None):
        self.host, self.port, self.dbname = host, port, dbname
        self.ca, self.password = ca, password

    def dsn(self):
        tls = dict(sslmode="verify-full", sslrootcert=self.ca, password=self.password) if self.ca else {}
        return harness.conninfo(host=self.host, port=self.port, dbname=self.dbname, user="postgres",
                                connect_timeout=10, **tls)

    def libpq_args(self):
        return ["-h", self.host, "-p", str(self.port), "-U", "postgres"]

    def env(self):
        """The transport settings for clients that take them from the environment: libpq's
        (psql, pgbench) and, read by the scenarios themselves, node-postgres's and pgjdbc's."""
        if not self.ca:
            return {}
        return {"PGSSLMODE": "verify-full", "PGSSLROOTCERT": self.ca, "PGPASSWORD": self.password}


def run(cmd, timeout=120, input=None, cwd=None, env=None, target=None):
    e = clean_env()
    if target:
        e.update(target.env())
    if env:
        e.update(env)
    r = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, cwd=cwd or "/tmp", env=e)
    return r


def must(r, what):
    if r.returncode != 0:
        raise AssertionError("%s failed (exit %d)\nstdout:\n%s\nstderr:\n%s" % (what, r.returncode, r.stdout, r.stderr))
    return r.stdout


# ---------------------------------------------------------------- psql
PSQL_COPY = r"""
drop table if exists m_psql_copy;
create table m_psql_copy (id int, t text, n numeric);
\copy m_psql_copy from '{dir}/in.csv' with (format csv)
select count(*), sum(id), sum(n), max(length(t)) from m_psql_copy;
\copy (select * from m_psql_copy order by id) to '{dir}/out-{mode}.csv' with (format csv)
\copy m_psql_copy from '{dir}/bad.csv' with (format csv)
select count(*) from m_psql_copy;
\copy m_psql_copy (id, t) from stdin
100001	from stdin one
100002	from stdin two
\.
select count(*), sum(id) from m_psql_copy;
\copy (select id, t from m_psql_copy where id > 100000 order by id) to stdout
"""

PSQL_GSET = r"""
select 21 as a, 'word' as b \gset
select :a * 2 as doubled, :'b' || '-suffix' as s;
select count(*) as n, sum(g) as total from generate_series(1, :a) g \gset m_
\echo n=:m_n total=:m_total
\if :{?m_n}
\echo m_n is defined
\endif
begin;
select txid_current() is not null as in_txn \gset
select :'in_txn' as got;
commit;
select 'x' as v from generate_series(1, 2) \gset
\echo after failed gset
"""

PSQL_ERRORS = r"""
drop table if exists m_psql_err;
create table m_psql_err (id int primary key);
select 1/0;
select 'after error';
begin;
insert into m_psql_err values (1);
select nosuchcol from m_psql_err;
insert into m_psql_err values (2);
commit;
select count(*) from m_psql_err;
\set ON_ERROR_ROLLBACK on
begin;
insert into m_psql_err values (3);
insert into m_psql_err values (3);
insert into m_psql_err values (4);
commit;
\set ON_ERROR_ROLLBACK off
select array_agg(id order by id) from m_psql_err;
insert into m_psql_err values (5), (5);
select 'last';
"""

PSQL_MULTI = r"""
drop table if exists m_psql_multi;
create table m_psql_multi (id int primary key);
select 1 as a \; select 2 as b \; insert into m_psql_multi values (1), (2);
begin \; insert into m_psql_multi values (3) \; commit;
insert into m_psql_multi values (10) \; select 1/0 \; insert into m_psql_multi values (11);
select array_agg(id order by id) from m_psql_multi;
begin;
insert into m_psql_multi values (20) \; select count(*) from m_psql_multi;
rollback;
select array_agg(id order by id) from m_psql_multi;
"""


def psql_script(target, script, on_error_stop, tmp, mode):
    cmd = ["psql", "-X", "-v", "ON_ERROR_STOP=%d" % on_error_stop] + target.libpq_args() + [target.dbname]
    r = run(cmd, input=script.replace("{dir}", tmp).replace("{mode}", mode), target=target)
    return "exit %d\n--- stdout\n%s--- stderr\n%s" % (r.returncode, r.stdout, r.stderr)


def psql_copy(target, tmp, mode):
    with open(os.path.join(tmp, "in.csv"), "w") as f:
        for i in range(5000):
            f.write('%d,"line %d, with ""quotes"" and, commas",%d.%02d\n' % (i, i, i, i % 100))
    with open(os.path.join(tmp, "bad.csv"), "w") as f:
        f.write("1,ok,1\n2,ok,2\nthree,bad,3\n")
    text = psql_script(target, PSQL_COPY, 0, tmp, mode)
    with open(os.path.join(tmp, "out-%s.csv" % mode), "rb") as f:
        data = f.read()
    return text + "--- out.csv %d bytes sha256 %s\n" % (len(data), hashlib.sha256(data).hexdigest())


def psql_gset(target, tmp, mode):
    return psql_script(target, PSQL_GSET, 0, tmp, mode)


def psql_errors_continue(target, tmp, mode):
    return psql_script(target, PSQL_ERRORS, 0, tmp, mode)


def psql_errors_stop(target, tmp, mode):
    return psql_script(target, PSQL_ERRORS, 1, tmp, mode)


def psql_multi(target, tmp, mode):
    text = psql_script(target, PSQL_MULTI, 0, tmp, mode)
    # -c with several statements: one simple Query message.
    cmd = ["psql", "-X", "-c", "select 1 as x; select 2 as y; select count(*) from m_psql_multi"] \
        + target.libpq_args() + [target.dbname]
    r = run(cmd, target=target)
    return text + "--- -c exit %d\n%s%s" % (r.returncode, r.stdout, r.stderr)


# ---------------------------------------------------------------- pgbench
PGBENCH_CLIENTS, PGBENCH_TXNS = 6, 60


def pgbench(protocol):
    def scenario(target, tmp, mode):
        must(run(["pgbench", "-i", "-s", "1", "-q"] + target.libpq_args() + [target.dbname], target=target),
             "pgbench -i")
        r = run(["pgbench", "-n", "-M", protocol, "-c", str(PGBENCH_CLIENTS), "-j", "2", "-t", str(PGBENCH_TXNS)]
                + target.libpq_args() + [target.dbname], timeout=180, target=target)
        must(r, "pgbench -M %s" % protocol)
        lines = [l for l in r.stdout.splitlines()
                 if l.startswith(("number of transactions actually processed", "number of failed transactions",
                                  "transaction type", "query mode", "number of clients"))]
        with harness.psycopg.connect(target.dsn(), autocommit=True) as c:
            facts = c.execute("""
                select (select count(*) from pgbench_history),
                       (select sum(abalance) from pgbench_accounts) = (select coalesce(sum(delta), 0) from pgbench_history),
                       (select sum(tbalance) from pgbench_tellers) = (select coalesce(sum(delta), 0) from pgbench_history),
                       (select sum(bbalance) from pgbench_branches) = (select coalesce(sum(delta), 0) from pgbench_history),
                       (select count(*) from pgbench_accounts)""").fetchone()
        return "exit 0\n" + "\n".join(lines) + "\nhistory rows, balances consistent (accounts, tellers, branches), accounts: %r\n" % (facts,)
    return scenario


# ---------------------------------------------------------------- shufflers
# Cases whose scenario moves its client to another backend at every step with a
# shuffler (a second connection holding the client's last backend in a transaction),
# and notes each step's backend (pg_backend_pid()) in $MATRIX_PIDS.
SHUFFLED = {"psycopg-prepare-threshold-0", "node-pg-named-statements", "jdbc-prepare-threshold"}


def pids_path(tmp, mode):
    return os.path.join(tmp, "pids-%s" % mode)


def scenario_env(tmp, mode):
    return {"MATRIX_PIDS": pids_path(tmp, mode)} if tmp else None


def check_shuffled(tmp, mode):
    """In transaction mode the client must really have changed backend at every step; direct
    and in session mode it keeps its one backend."""
    with open(pids_path(tmp, mode)) as f:
        pids = [int(line) for line in f]
    assert len(pids) >= 2, "the scenario noted %d backends" % len(pids)
    moves = sum(1 for x, y in zip(pids, pids[1:]) if x != y)
    want = len(pids) - 1 if mode in ("transaction", "tls") else 0
    assert moves == want, "%s: the client changed backend %d times in %d steps, want %d: %r" \
        % (mode, moves, len(pids), want, pids)


# ---------------------------------------------------------------- psycopg
def psycopg_case(name):
    def scenario(target, tmp, mode):
        r = run([harness.PY, os.path.join(HERE, "psycopg_scenarios.py"), name, target.dsn()],
                env=scenario_env(tmp, mode))  # the transport settings are in the DSN
        return "exit %d\n%s%s" % (r.returncode, r.stdout, r.stderr)
    return scenario


# ---------------------------------------------------------------- node-postgres
def node_case(name):
    def scenario(target, tmp, mode):
        r = run(["node", os.path.join(NODE_DIR, "scenarios.js"), name, target.host, str(target.port), target.dbname],
                cwd=NODE_DIR, env=scenario_env(tmp, mode), target=target)
        return "exit %d\n%s%s" % (r.returncode, r.stdout, r.stderr)
    return scenario


# ---------------------------------------------------------------- pgjdbc
def jdbc_case(name):
    def scenario(target, tmp, mode):
        cp = ":".join([JDBC_BUILD] + JDBC_JARS)
        r = run(["java", "-Djava.library.path=" + JNI_DIR, "-cp", cp, "Scenarios", name, target.host,
                 str(target.port), target.dbname], env=scenario_env(tmp, mode), target=target)
        return "exit %d\n%s%s" % (r.returncode, r.stdout, r.stderr)
    return scenario


CASES = {
    "psql-copy": psql_copy,
    "psql-gset": psql_gset,
    "psql-errors-continue": psql_errors_continue,
    "psql-errors-stop": psql_errors_stop,
    "psql-multi-statement": psql_multi,
    "pgbench-simple": pgbench("simple"),
    "pgbench-extended": pgbench("extended"),
    "pgbench-prepared": pgbench("prepared"),
    "psycopg-prepare-threshold-0": psycopg_case("prepare-threshold-0"),
    "psycopg-pipeline": psycopg_case("pipeline"),
    "psycopg-copy-text": psycopg_case("copy-text"),
    "psycopg-copy-binary": psycopg_case("copy-binary"),
    "psycopg-binary-results": psycopg_case("binary-results"),
    "psycopg-cancel": psycopg_case("cancel"),
    "psycopg-notifies": psycopg_case("notifies"),
    "node-pg-named-statements": node_case("named-statements"),
    "node-pg-cursor-batches": node_case("cursor-batches"),
    "node-pg-pool-hammer": node_case("pool-hammer"),
    "node-pg-pool-hammer-named": node_case("pool-hammer-named"),
    "jdbc-prepare-threshold": jdbc_case("prepare-threshold"),
    "jdbc-fetch-size": jdbc_case("fetch-size"),
    "jdbc-batch": jdbc_case("batch"),
}

# What legitimately differs between runs: where the client connected.
def normalize(text, target):
    text = text.replace(target.host, "<host>").replace(str(target.port), "<port>")
    text = re.sub(r"\bpid \d+\b", "pid <n>", text)
    # psycopg 3.1 may warn, depending on timing, when a pipeline ends on an error.
    return re.sub(r"(?m)^error ignored terminating <psycopg.Pipeline .*\n", "", text)


@pytest.fixture(scope="session")
def node_modules():
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "pg-cursor")):
        must(run(["npm", "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, timeout=300), "npm ci")


@pytest.fixture(scope="session")
def jdbc_classes():
    os.makedirs(JDBC_BUILD, exist_ok=True)
    must(run(["javac", "-d", JDBC_BUILD, "-cp", ":".join(JDBC_JARS), JDBC_SRC], timeout=180), "javac")


@pytest.fixture
def scratch():
    d = tempfile.mkdtemp(prefix="pglease-clients.", dir="/tmp")
    os.chmod(d, 0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


_direct_output = {}


def reset_db(cluster):
    """Each run starts from no scenario tables, so that every run prints the same notices."""
    with cluster.connect("app") as c:
        c.execute(RESET_SQL)


def direct_output(case, cluster, scratch):
    if case not in _direct_output:
        target = Target(cluster.dir, cluster.port)
        reset_db(cluster)
        _direct_output[case] = normalize(CASES[case](target, scratch, "direct"), target)
        if case in SHUFFLED:
            check_shuffled(scratch, "direct")
    return _direct_output[case]


# ---------------------------------------------------------------- TCP + TLS + SCRAM
@pytest.fixture(scope="session")
def tls_cluster():
    """PostgreSQL taking TCP only through `hostssl all all 127.0.0.1/32 scram-sha-256`, role
    postgres with PASSWORD as a SCRAM verifier, each connection's TLS and method logged.
    Its CA and server certificate (SAN DNS:localhost, IP:127.0.0.1) serve the tls mode's pglease too."""
    with harness.app_cluster(harness.TlsCluster, hostssl_method="scram-sha-256", password=PASSWORD,
                             log_connections=True) as c:
        yield c


def check_tls_scram(tls_cluster, log_offset, output):
    """The premise of a direct-tls run: every connection the scenario made was authorized over TLS
    by scram-sha-256 (connections never authorized, as psycopg's cancel requests, do not count)."""
    conns = [c for c in tls_cluster.connections_since(log_offset) if c["authorized"]]
    assert conns, "PostgreSQL logged no TCP connection of the scenario:\n" + output
    bad = [c for c in conns if not (c["ssl"] and c["ssl"].startswith("protocol=TLS") and c["method"] == "scram-sha-256")]
    assert not bad, "connections not made over TLS with scram-sha-256: %r" % bad
    return conns




def pglease_tls(pglease, cluster, tls_cluster, password, ca):
    """A pglease in transaction mode in front of the Unix-socket cluster that takes clients on
    127.0.0.1:listen_port over TLS (tls_cluster's server certificate) with SCRAM-SHA-256 against
    an auth_file holding the postgres user's verifier (of PASSWORD). Returns (daemon, target), the
    target's clients logging in with password and trusting CA ca."""
    auth_file = os.path.join(tls_cluster.certs, "userlist.txt")
    if not os.path.exists(auth_file):
        with open(auth_file, "w") as f:
            f.write('"postgres" "%s"\n' % harness.scram_verifier(cluster, PASSWORD))
    tls = dict(listen_addr="127.0.0.1", client_tls_sslmode="require",
               client_tls_cert_file=os.path.join(tls_cluster.certs, "server.crt"),
               client_tls_key_file=os.path.join(tls_cluster.certs, "server.key"),
               auth_type="scram-sha-256", auth_file=auth_file)
    d = pglease(start=False, pool_mode="transaction", **dict(PGLEASE_SETTINGS["tls"], **tls))
    d.client_env = {"PGPASSWORD": PASSWORD}  # for the harness's own Unix-socket readiness check
    d.start()
    return d, Target("localhost", d.port, ca=tls_cluster.ca_file(ca), password=password)


def run_case(case, mode, request, cluster, pglease, scratch, password=PASSWORD, ca="ca"):
    """Runs case in mode (not direct), the TLS modes' clients logging in with password and
    trusting CA ca; returns the normalized output."""
    if mode == "direct-tls":
        tls_cluster = request.getfixturevalue("tls_cluster")
        reset_db(tls_cluster)
        target = Target("localhost", tls_cluster.port, ca=tls_cluster.ca_file(ca), password=password)
        offset = tls_cluster.log_size()
        got = CASES[case](target, scratch, mode)
        if (password, ca) == (PASSWORD, "ca"):
            conns = check_tls_scram(tls_cluster, offset, got)
            if os.environ.get("MATRIX_SHOW_CONNECTIONS"):
                print("\n%s: %d connections, e.g. %r" % (case, len(conns), conns[0]))
        return normalize(got, target)
    if mode == "tls":
        _, target = pglease_tls(pglease, cluster, request.getfixturevalue("tls_cluster"), password, ca)
    else:
        d = pglease(pool_mode=mode, **PGLEASE_SETTINGS[mode])
        target = Target(d.dir, d.port)
    reset_db(cluster)
    return normalize(CASES[case](target, scratch, mode), target)


def need_client(case, request):
    if case.startswith("node-"):
        request.getfixturevalue("node_modules")
    if case.startswith("jdbc-"):
        request.getfixturevalue("jdbc_classes")


@pytest.mark.timeout(240)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", list(CASES))
def test_matrix(case, mode, request, cluster, pglease, scratch):
    need_client(case, request)
    expected = direct_output(case, cluster, scratch)
    assert expected.startswith("exit 0") or case == "psql-errors-stop", \
        "the scenario fails against PostgreSQL itself:\n" + expected
    if mode == "direct":
        return
    got = run_case(case, mode, request, cluster, pglease, scratch)
    assert got == expected
    if case in SHUFFLED:
        check_shuffled(scratch, mode)


# One short case per client, for test_refused.
REFUSED_CASES = ["psql-gset", "pgbench-simple", "psycopg-binary-results", "node-pg-cursor-batches", "jdbc-batch"]
# What each client says when the server's certificate is not signed by the CA it trusts.
UNKNOWN_CA = {"psql": "certificate verify failed", "pgbench": "certificate verify failed",
              "psycopg": "certificate verify failed", "node": "unable to verify the first certificate",
              "jdbc": "unable to find valid certification path"}


@pytest.mark.timeout(120)
@pytest.mark.parametrize("mode", TLS_MODES)
@pytest.mark.parametrize("why", ["wrong-password", "unknown-ca"])
@pytest.mark.parametrize("case", REFUSED_CASES)
def test_refused(case, why, mode, request, cluster, pglease, scratch):
    """The TLS modes' premises: their clients get in by the password, so a wrong one is refused
    (by PostgreSQL or pglease, with PostgreSQL's words); and they check the server's certificate,
    so one they cannot trace to their CA is refused."""
    need_client(case, request)
    args = dict(password="not " + PASSWORD) if why == "wrong-password" else dict(ca="other_ca")
    try:
        got = run_case(case, mode, request, cluster, pglease, scratch, **args)
    except AssertionError as e:  # pgbench's scenario raises when pgbench -i fails
        got = str(e)
    assert not got.startswith("exit 0"), got
    want = 'password authentication failed for user "postgres"' if why == "wrong-password" \
        else UNKNOWN_CA[case.split("-")[0]]
    assert want in got, got


@pytest.mark.timeout(120)
def test_jdbc_admin_console(request, cluster, pglease):
    """pgjdbc talks to the admin console with the extended protocol (PgBouncer's refuses it)."""
    request.getfixturevalue("jdbc_classes")
    d = pglease()
    with d.connect() as c:
        c.execute("select 1")
    got = jdbc_case("admin-console")(Target(d.dir, d.port, "pglease"), None, "transaction")
    assert got.startswith("exit 0"), got
    lines = got.splitlines()
    pools = [l for l in lines if l.startswith("show pools")]
    assert len(pools) == 3 and all(l.endswith("app rows 1") for l in pools), got
    assert "cl_active" in pools[0] and "sv_idle" in pools[0] and "cl_pinned" in pools[0], got
    assert "version starts with pglease: true" in lines, got
    assert "unknown command: 42601" in lines, got
    assert "stats has total_xact_count: true" in lines, got
