"""Helpers shared by the integration tests: the private cluster, the pglease
daemon under test, polling, and checks made directly against PostgreSQL."""
import contextlib
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import psycopg

from tlsmat import make_ca, make_server_cert

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
PGCLUSTER = os.path.join(REPO, "tests", "lib", "pgcluster.sh")
PY = "/usr/bin/python3"
DIRECT_APPNAME = "pgtest_direct"
SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error:")
# pool_verify() (pool/verify.c; on in the sanitizer build and with PGLEASE_VERIFY=1) logs this, then aborts.
VERIFY_MARKER = "pool_verify: invariant violated"

# libpq environment variables would change where our clients connect.
LIBPQ_ENV = [k for k in os.environ if k.startswith("PG") and not k.startswith("PGLEASE")]


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in LIBPQ_ENV}
    env.update(extra)
    return env


def make_tmpdir(prefix):
    d = tempfile.mkdtemp(prefix=prefix, dir="/tmp")
    os.chmod(d, 0o755)  # user postgres must reach sockets in it
    return d


def tcp_port_free(port):
    """Nothing listens on port over IPv4 or IPv6 (a test may also open TCP listeners on it)."""
    for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
        s = socket.socket(family, socket.SOCK_STREAM)
        try:
            s.bind((host, port))
        except OSError:
            return False
        finally:
            s.close()
    return True


def free_port(directory):
    """A port with no socket (or lock) in directory, free on TCP too (listen_addr tests)."""
    while True:
        port = random.randint(20000, 60000)
        base = os.path.join(directory, ".s.PGSQL.%d" % port)
        if not os.path.exists(base) and not os.path.exists(base + ".lock") and tcp_port_free(port):
            return port


def wait_for(pred, timeout=10.0, interval=0.05, what="condition"):
    """Poll pred() until it returns a truthy value; return it. Fail with the last value on timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        last = pred()
        if last:
            return last
        if time.monotonic() >= deadline:
            if callable(what):
                what = what()
            raise AssertionError("timed out after %.1fs waiting for %s (last: %r)" % (timeout, what, last))
        time.sleep(interval)


def conninfo(**kw):
    parts = []
    for k, v in kw.items():
        if v is None:
            continue
        v = str(v)
        if v == "" or any(c in v for c in " '\\"):
            v = "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"
        parts.append("%s=%s" % (k, v))
    return " ".join(parts)


# ---------------------------------------------------------------- cluster
class Cluster:
    def __init__(self):
        self.dir = make_tmpdir("pglease-it-pg.")
        self.port = free_port(self.dir)
        self.started = False

    def start(self):
        r = subprocess.run([PGCLUSTER, "start", self.dir, str(self.port)], env=clean_env(),
                           capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            raise RuntimeError("pgcluster start failed: %s%s" % (r.stdout, r.stderr))
        self.started = True

    def stop(self):
        if self.started:
            subprocess.run([PGCLUSTER, "stop", self.dir], env=clean_env(),
                           capture_output=True, text=True, timeout=120)
        shutil.rmtree(self.dir, ignore_errors=True)

    def conninfo(self, dbname="app", **pglease_keys):
        """A [databases] value pointing at this cluster, plus pglease keys (pool_size=, pool_mode=) or libpq keys."""
        kw = dict(host=self.dir, port=self.port, dbname=dbname)
        kw.update(pglease_keys)
        return conninfo(**kw)

    def dsn(self, dbname="app", **kw):
        args = dict(host=self.dir, port=self.port, dbname=dbname, user="postgres",
                    application_name=DIRECT_APPNAME, connect_timeout=10)
        args.update(kw)
        return conninfo(**args)

    def connect(self, dbname="app", autocommit=True, **kw):
        return psycopg.connect(self.dsn(dbname, **kw), autocommit=autocommit)

    def create_app(self):
        """The database every test pools, with the table the tests write to."""
        with self.connect("postgres") as conn:
            conn.execute("create database app")
        with self.connect("app") as conn:
            conn.execute("create table items (id bigserial primary key, val text not null)")

    def psql(self, *args, dbname="app", input=None, timeout=60):
        cmd = ["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
               "-h", self.dir, "-p", str(self.port), "-U", "postgres"] + list(args) + [dbname]
        return subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                              env=clean_env(PGAPPNAME=DIRECT_APPNAME))


@contextlib.contextmanager
def app_cluster(cls=None, **kw):
    """A private cluster (Cluster, or cls with kw) started with the app database; stopped on leaving."""
    c = (cls or Cluster)(**kw)
    try:
        c.start()
        c.create_app()
        yield c
    finally:
        c.stop()


# ---------------------------------------------------------------- TLS material and a TLS-only cluster
def make_tls_material():
    """A fresh directory with a test CA (ca.crt), a second unrelated CA (other_ca.crt) and a server
    certificate signed by ca (server.crt, server.key; CN and SAN localhost, SAN IP 127.0.0.1).
    The caller removes it (shutil.rmtree)."""
    d = make_tmpdir("pglease-it-tls.")
    make_ca(d, "ca")
    make_ca(d, "other_ca")
    make_server_cert(d, "ca")
    return d


def scram_verifier(cluster, password):
    """The SCRAM-SHA-256 verifier PostgreSQL makes of password (what pg_authid.rolpassword holds),
    made with a throwaway role so that no role of the cluster changes."""
    role = "pglease_verifier_%d" % random.randint(0, 1 << 30)
    with cluster.connect("postgres") as c:
        c.execute("set password_encryption = 'scram-sha-256'")
        c.execute("create role %s password '%s'" % (role, password.replace("'", "''")))
        try:
            v = c.execute("select rolpassword from pg_authid where rolname = %s", (role,)).fetchone()[0]
        finally:
            c.execute("drop role %s" % role)
    assert v.startswith("SCRAM-SHA-256$"), v
    return v


class TlsCluster(Cluster):
    """A cluster that listens on 127.0.0.1 with ssl=on; TCP only through hostssl (no plain host
    line), authenticated by hostssl_method. The Unix socket stays trust, for the tests' checks.
    With password, role postgres gets that password as a SCRAM verifier. With log_connections,
    PostgreSQL logs each connection's TLS and authentication method (connections_since())."""

    def __init__(self, hostssl_method="trust", password=None, log_connections=False):
        super().__init__()
        self.hostssl_method, self.password, self.log_connections = hostssl_method, password, log_connections
        self.certs = None

    def start(self):
        super().start()  # initdb, Unix socket only
        data = os.path.join(self.dir, "data")
        self.certs = make_tls_material()
        for name in ("server.crt", "server.key"):
            subprocess.run(["install", "-m", "0600", "-o", "postgres", os.path.join(self.certs, name),
                            os.path.join(data, name)], check=True)
        with open(os.path.join(data, "pg_hba.conf"), "w") as f:
            f.write("local all all trust\nhostssl all all 127.0.0.1/32 %s\n" % self.hostssl_method)
        subprocess.run([PGCLUSTER, "stop", self.dir], env=clean_env(), capture_output=True, timeout=120)
        opts = "-c listen_addresses=127.0.0.1 -c ssl=on"
        if self.log_connections:
            opts += " -c log_connections=on -c log_line_prefix=%p:"
        r = subprocess.run([PGCLUSTER, "start", self.dir, str(self.port)], env=clean_env(PGCLUSTER_OPTS=opts),
                           capture_output=True, text=True, timeout=180)
        if r.returncode != 0:
            raise RuntimeError("pgcluster restart with ssl=on failed: %s%s" % (r.stdout, r.stderr))
        if self.password is not None:
            with self.connect("postgres") as c:
                c.execute("set password_encryption = 'scram-sha-256'")
                c.execute("alter role postgres password '%s'" % self.password.replace("'", "''"))

    def ca_file(self, ca="ca"):
        return os.path.join(self.certs, "%s.crt" % ca)

    def tls_conninfo(self, ca="ca", **kw):
        args = dict(host="localhost", port=self.port, dbname="app", sslmode="verify-full",
                    sslrootcert=self.ca_file(ca))
        args.update(kw)
        return conninfo(**args)

    def log_size(self):
        return os.path.getsize(os.path.join(self.dir, "postgresql.log"))

    def connections_since(self, offset):
        """TCP connections PostgreSQL logged after log offset offset (needs log_connections):
        [{"pid", "ssl" (the "SSL enabled (...)" text or None), "method" (or None), "authorized"}]."""
        with open(os.path.join(self.dir, "postgresql.log"), "rb") as f:
            f.seek(offset)
            text = f.read().decode("utf-8", "replace")
        conns = {}
        for line in text.splitlines():
            pid, _, msg = line.partition(":")
            if msg.startswith("LOG:  connection received: host=") and "[local]" not in msg:
                conns[pid] = dict(pid=int(pid), ssl=None, method=None, authorized=False)
            c = conns.get(pid)
            if c is None:
                continue
            m = re.search(r"connection authenticated: .* method=(\S+)", msg)
            if m:
                c["method"] = m.group(1)
            if msg.startswith("LOG:  connection authorized:"):
                c["authorized"] = True
                m = re.search(r"SSL enabled \(([^)]*)\)", msg)
                c["ssl"] = m.group(1) if m else None
        return list(conns.values())

    def stop(self):
        super().stop()
        if self.certs:
            shutil.rmtree(self.certs, ignore_errors=True)


# ---------------------------------------------------------------- daemon
class DaemonError(AssertionError):
    pass


class Daemon:
    """One pglease process under test, with its own socket directory, config and log."""

    DEFAULTS = {
        "auth_type": "trust",
        "pool_mode": "transaction",
        "unix_socket_mode": "0777",
        "query_wait_timeout": "10",
        "server_drain_timeout": "1",
        "log_level": "info",
    }

    def __init__(self, binary, cluster, settings, databases):
        self.binary = binary
        self.cluster = cluster
        self.dir = make_tmpdir("pglease-it.")
        self.port = free_port(self.dir)
        self.config_path = os.path.join(self.dir, "pglease.ini")
        self.log_path = os.path.join(self.dir, "pglease.log")
        self.socket_path = os.path.join(self.dir, ".s.PGSQL.%d" % self.port)
        self.settings = dict(self.DEFAULTS)
        self.settings.update({k: (None if v is None else str(v)) for k, v in settings.items()})
        self.settings["listen_port"] = str(self.port)
        self.settings["unix_socket_dir"] = self.dir
        if databases is None:
            databases = {"app": cluster.conninfo("app")}
        self.databases = databases
        self.users = {}      # [users] entries: name -> "key=value ..." (PgBouncer's per-user settings)
        self.proc = None
        self.logf = None
        self.final_log = None
        self.stopped_by_us = False
        self.stop_seconds = None
        self.sigkilled = False
        self.env = {}        # extra environment (NOTIFY_SOCKET, ...)
        self.wrapper = []    # argv before pglease's own (e.g. a shell that sets WATCHDOG_PID=$$)
        self.pass_fds = ()
        self.client_env = {}  # extra environment of the clients the harness runs itself (PGPASSWORD, ...)
        self.ready_env = {}  # for the readiness psql (PGPASSWORD when clients need a password)
        self.ready_os_user = None  # ... run as this OS user (peer authentication)

    # -- config and process
    def config_text(self):
        lines = ["[pglease]"]
        for k, v in self.settings.items():
            if v is not None:
                lines.append("%s = %s" % (k, v))
        lines.append("")
        lines.append("[databases]")
        for k, v in self.databases.items():
            lines.append("%s = %s" % (k, v))
        if self.users:
            lines.append("")
            lines.append("[users]")
            for k, v in self.users.items():
                lines.append("%s = %s" % (k, v))
        return "\n".join(lines) + "\n"

    def write_config(self, text=None):
        with open(self.config_path, "w") as f:
            f.write(self.config_text() if text is None else text)

    def start(self, ready_timeout=15.0, wait=True):
        self.write_config()
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.wrapper + [self.binary, self.config_path], stdin=subprocess.DEVNULL,
                                     stdout=self.logf, stderr=subprocess.STDOUT, env=clean_env(**self.env),
                                     start_new_session=True, pass_fds=self.pass_fds)
        self.stopped_by_us = False
        if wait:
            self.wait_ready(ready_timeout)

    def signal(self, sig):
        self.check_alive()
        self.proc.send_signal(sig)

    def wait_exit(self, timeout=15.0):
        """Wait for pglease to exit (after a signal the test sent); returns its exit status."""
        self.stopped_by_us = True
        return self.proc.wait(timeout=timeout)

    def reload_count(self):
        text = self.log_text()
        return text.count(": reloaded ") + text.count("reload of ")

    def reload(self, timeout=10.0):
        """Rewrite the config from settings/databases, SIGHUP, and wait until the reload is logged."""
        before = self.reload_count()
        self.write_config()
        self.signal(signal.SIGHUP)
        wait_for(lambda: self.reload_count() > before, timeout, what="the reload's log line")

    @property
    def pid(self):
        return self.proc.pid

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def check_alive(self):
        if not self.alive():
            raise DaemonError("pglease exited unexpectedly (status %r); log tail:\n%s"
                              % (self.proc.returncode if self.proc else None, self.log_tail()))

    def wait_ready(self, timeout):
        deadline = time.monotonic() + timeout
        last = ""
        os_user = "postgres" if self.settings.get("auth_type") == "peer" else self.ready_os_user
        while True:
            self.check_alive()
            if os.path.exists(self.socket_path):
                r = self.psql("-c", "select 1", timeout=10, os_user=os_user, env=self.ready_env)
                if r.returncode == 0 and r.stdout.strip() == "1":
                    return
                last = r.stderr
            if time.monotonic() > deadline:
                raise DaemonError("pglease not ready after %.0fs (socket %s exists: %s; last psql error: %s)\nlog tail:\n%s"
                                  % (timeout, self.socket_path, os.path.exists(self.socket_path), last, self.log_tail()))
            time.sleep(0.05)

    def stop(self):
        """Stop the daemon; returns a list of problems (died early, sanitizer reports)."""
        problems = []
        if self.proc is None:
            return problems
        if self.proc.poll() is not None and not self.stopped_by_us:
            problems.append("pglease died unexpectedly during the test (exit status %r)" % self.proc.returncode)
        if self.proc.poll() is None:
            t0 = time.monotonic()
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
                self.sigkilled = True
            self.stop_seconds = time.monotonic() - t0
        self.stopped_by_us = True
        if self.logf:
            self.logf.close()
            self.logf = None
        text = self.log_text()
        self.final_log = text
        for marker in SANITIZER_MARKERS:
            if marker in text:
                problems.append("pglease log contains %r (sanitizer report)" % marker)
                break
        if VERIFY_MARKER in text:
            line = next(l for l in text.splitlines() if VERIFY_MARKER in l)
            problems.append("pglease found its state inconsistent: %s" % line)
        return problems

    def cleanup(self):
        if self.final_log is None:
            try:
                self.final_log = self.log_text()
            except OSError:
                self.final_log = ""
        shutil.rmtree(self.dir, ignore_errors=True)

    def log_text(self):
        if self.final_log is not None:
            return self.final_log
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def log_tail(self, n=80):
        try:
            lines = self.log_text().splitlines()
        except OSError:
            return "(no log)"
        return "\n".join(lines[-n:])

    # -- clients
    def dsn(self, dbname="app", **kw):
        args = dict(host=self.dir, port=self.port, dbname=dbname, user="postgres", connect_timeout=10)
        args.update(kw)
        return conninfo(**args)

    def connect(self, dbname="app", autocommit=True, **kw):
        # prepare_threshold=None: psycopg would otherwise use named prepared
        # statements after 5 executions, which transaction pooling does not promise.
        return psycopg.connect(self.dsn(dbname, **kw), autocommit=autocommit, prepare_threshold=None)

    def psql_cmd(self, *args, user="postgres", dbname="app"):
        return ["psql", "-X", "-q", "-A", "-t", "-h", self.dir, "-p", str(self.port),
                "-U", user] + list(args) + [dbname]

    def psql(self, *args, user="postgres", dbname="app", input=None, timeout=30, os_user=None, env=None):
        cmd = self.psql_cmd(*args, user=user, dbname=dbname)
        if os_user:
            cmd = ["runuser", "-u", os_user, "--"] + cmd
        e = clean_env(PGCONNECT_TIMEOUT="10", **self.client_env)
        if env:
            e.update(env)
        return subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, env=e,
                              cwd="/tmp")


# ---------------------------------------------------------------- direct checks
APP_BACKENDS_SQL = """
select pid, state, query, backend_xid is not null as has_xid
from pg_stat_activity
where datname = %s and backend_type = 'client backend'
  and pid <> pg_backend_pid() and coalesce(application_name, '') <> %s
order by pid
"""


def app_backends(direct, dbname="app"):
    """Backends of dbname other than our own direct checking connections: [(pid, state, query, has_xid)]."""
    return direct.execute(APP_BACKENDS_SQL, (dbname, DIRECT_APPNAME)).fetchall()


def app_pids(direct, dbname="app"):
    return {r[0] for r in app_backends(direct, dbname)}


def locks_held_by_app_backends(direct, dbname="app"):
    return direct.execute(
        """select l.pid, l.locktype, l.mode, l.relation::regclass::text
           from pg_locks l join pg_stat_activity a on a.pid = l.pid
           where a.datname = %s and l.pid <> pg_backend_pid()
             and coalesce(a.application_name, '') <> %s""",
        (dbname, DIRECT_APPNAME)).fetchall()


def wait_pool_size(direct, n, timeout=10.0):
    """Wait until exactly n idle backends exist for app; return their pid set."""
    def check():
        rows = app_backends(direct)
        if len(rows) == n and all(r[1] == "idle" for r in rows):
            return {r[0] for r in rows}
        return None
    return wait_for(check, timeout, what=lambda: "%d idle app backends (have %r)" % (n, app_backends(direct)))


def wait_backend_state(direct, predicate, timeout=10.0, what="backend state"):
    def check():
        rows = app_backends(direct)
        hit = [r for r in rows if predicate(r)]
        return hit or None
    return wait_for(check, timeout, what=lambda: "%s (app backends: %r)" % (what, app_backends(direct)))


# ---------------------------------------------------------------- moving a client to another backend
def backend_pid(conn):
    """The PostgreSQL backend a psycopg connection's statement runs on (through pglease: the
    backend it leases for this statement, not pglease's BackendKeyData in conn.info)."""
    return conn.execute("select pg_backend_pid()", prepare=False).fetchone()[0]


class BackendHolder:
    """Holds one backend of a pglease pool in an open transaction, so that no other client can
    lease it. Uncontended, pglease reuses idle backends last-in first-out and a client nearly
    always gets its own backend back: a test that needs a client on another backend must take
    the client's backend away. take(pid) takes backend pid *before* letting go of the one held
    until then, so the client can be on neither; move_client() checks that it really moved."""

    def __init__(self, d, dbname="app", **connect_kw):
        self.d, self.dbname, self.connect_kw = d, dbname, connect_kw
        self.spare = []      # connections outside a transaction
        self.conn = None     # the connection holding self.pid in a transaction
        self.pid = None

    def _connection(self):
        return self.spare.pop() if self.spare else self.d.connect(self.dbname, **self.connect_kw)

    def take(self, pid, attempts=3):
        """Hold backend pid (idle now): open transactions until one lands on it; only then end
        the transactions that landed elsewhere and the one held before."""
        misses = []
        try:
            for _ in range(attempts):
                conn = self._connection()
                conn.execute("begin")
                got = backend_pid(conn)
                if got == pid:
                    break
                misses.append((conn, got))
            else:
                raise AssertionError("could not take backend %d: transactions landed on %r"
                                     % (pid, [got for _, got in misses]))
        finally:
            for c, _ in misses:
                c.execute("rollback")
                self.spare.append(c)
        self.release()
        self.conn, self.pid = conn, pid
        return pid

    def release(self):
        if self.conn is not None:
            self.conn.execute("rollback")
            self.spare.append(self.conn)
        self.conn = self.pid = None

    def close(self):
        self.release()
        for c in self.spare:
            c.close()
        self.spare = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def move_client(holder, client_pid):
    """Move a client to another backend and prove it: client_pid() asks the client itself which
    backend it is on (select pg_backend_pid() through pglease); the holder takes that backend;
    the client must then report another. Returns (old, new)."""
    old = client_pid()
    holder.take(old)
    new = client_pid()
    assert new != old, "the client is still on backend %d, which the holder took" % old
    return old, new


def wire_pid(w):
    """client_pid for a raw pgwire client."""
    return int(w.scalar("select pg_backend_pid()"))


# ---------------------------------------------------------------- client subprocesses
CLIENT_SCRIPT = r"""
import sys, time, psycopg
conn = psycopg.connect(sys.argv[1], autocommit=True, prepare_threshold=None)
print("PID", conn.info.backend_pid, flush=True)
for stmt in sys.argv[2:]:
    try:
        conn.execute(stmt)
        print("OK", flush=True)
    except psycopg.Error as e:
        print("ERR", e.sqlstate, flush=True)
print("READY", flush=True)
time.sleep(600)
"""


def spawn_client(dsn, statements):
    """A psycopg client in its own process: runs statements (autocommit, so 'begin' is explicit),
    prints OK/ERR per statement, then READY, then sleeps holding the connection."""
    return subprocess.Popen([PY, "-c", CLIENT_SCRIPT, dsn] + list(statements), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=clean_env())


def read_lines_until(proc, marker, timeout=15.0):
    """Read proc's stdout lines until one equals marker; returns all lines read."""
    deadline = time.monotonic() + timeout
    lines = []
    fd = proc.stdout.fileno()
    buf = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError("client did not print %r in %.0fs; got %r; stderr: %r"
                                 % (marker, timeout, lines, _nonblocking_read(proc.stderr)))
        r, _, _ = select.select([fd], [], [], remaining)
        if not r:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            raise AssertionError("client exited before %r; got %r; stderr: %r"
                                 % (marker, lines, proc.stderr.read().decode(errors="replace")))
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            line = line.decode().strip()
            lines.append(line)
            if line == marker:
                return lines


def _nonblocking_read(f):
    try:
        r, _, _ = select.select([f], [], [], 0)
        return os.read(f.fileno(), 65536).decode(errors="replace") if r else ""
    except Exception:
        return ""


def closed_with(d, conn, sqlstate="57P01"):
    """Wait until pglease logs closing conn's client with sqlstate; return what the client then sees
    (its error and the notices libpq made of a FATAL that arrived while it was idle)."""
    line = "client %d (" % conn.info.backend_pid
    wait_for(lambda: [l for l in d.log_text().splitlines() if line in l and sqlstate in l], timeout=5,
             what="pglease to close client %d" % conn.info.backend_pid)
    notices = []
    conn.add_notice_handler(lambda diag: notices.append(diag.message_primary or ""))
    try:
        conn.execute("select 1")
    except psycopg.OperationalError as e:
        return str(e) + " " + " ".join(notices)
    raise AssertionError("the connection still works")


def kill9(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
