#!/usr/bin/python3
"""The torture test: a seeded random workload through pglease, every reply checked against
PostgreSQL. See tests/torture/README.md.

usage: torture.py [--bin PGLEASE] [--seconds N] [--seed S] [--skip KIND,...] [--no-pgbench] ...
"""
import argparse
import asyncio
import os
import random
import re
import struct
import subprocess
import sys
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

from harness import REPO, Cluster, Daemon, clean_env, wait_for  # noqa: E402
import programs  # noqa: E402
from pgproto import Conn, LoginFailed, describe_frontend, normalize, normalize_login, parse_data_row  # noqa: E402
from pgwire import parse_fields  # noqa: E402

DIRECT_APPNAME = "pgtest_direct"     # harness's name for checking connections
# pglease's query_timeout and client_stall_timeout in the run: no other statement of the workload runs
# that long; a stalled client may first wait for a backend (up to query_wait_timeout), then its clock starts.
QUERY_TIMEOUT = 4
QUERY_TIMEOUT_SLACK = 3
STALL_TIMEOUT = 2
STALL_SLACK = 35
VERIFY_ON = "pool_verify: invariants checked after every loop iteration"   # daemon/main.c says so at start


# ---------------------------------------------------------------- the ledger
class Ledger:
    """Rows a client was told were committed, learnt from the replies it got: ids returned by
    INSERT/DELETE ... RETURNING id and the ids of a COPY FROM that completed, pending until the
    transaction they belong to ends with ReadyForQuery 'I' without an error or a ROLLBACK."""

    def __init__(self, committed=None):
        self.committed = set() if committed is None else committed
        self.pending = []          # ("add"|"del", id) in order
        self.savepoints = []       # len(pending) at each SAVEPOINT
        self.rows = []
        self.error = False
        self.last_tag = None
        self.copy_in = False

    @staticmethod
    def _id(v):
        if len(v) == 4 and not v.isdigit():
            return struct.unpack("!i", v)[0]
        return int(v)

    def feed(self, msgs, copy_ids=()):
        for t, body in msgs:
            if t in (b"T", b"s"):
                self.rows = []
            elif t == b"D":
                cols = parse_data_row(body)
                if cols and cols[0] is not None:
                    self.rows.append(cols[0])
            elif t == b"G":
                self.copy_in = True
            elif t == b"C":
                tag = body.rstrip(b"\0").decode()
                if tag.startswith("INSERT"):
                    self.pending += [("add", self._id(v)) for v in self.rows]
                elif tag.startswith("DELETE"):
                    self.pending += [("del", self._id(v)) for v in self.rows]
                elif tag.startswith("COPY") and self.copy_in:
                    self.pending += [("add", i) for i in copy_ids]
                    self.copy_in = False
                elif tag == "SAVEPOINT":
                    self.savepoints.append(len(self.pending))
                elif tag == "RELEASE" and self.savepoints:
                    self.savepoints.pop()
                self.last_tag = tag
                self.rows = []
            elif t == b"E":
                self.error = True
                self.rows = []
            elif t == b"Z":
                status = body[:1]
                if status == b"I":
                    if not self.error and self.last_tag != "ROLLBACK":
                        for what, i in self.pending:
                            (self.committed.add if what == "add" else self.committed.discard)(i)
                    self.pending, self.savepoints = [], []
                elif status == b"T" and self.last_tag == "ROLLBACK" and self.savepoints:
                    del self.pending[self.savepoints[-1]:]       # ROLLBACK TO SAVEPOINT
                self.error, self.last_tag, self.copy_in, self.rows = False, None, False, []

    def killed(self):
        self.pending, self.savepoints, self.rows = [], [], []
        self.error, self.last_tag, self.copy_in = False, None, False


# ---------------------------------------------------------------- reporting differences
def short(m, width=160):
    s = repr(m)
    return s if len(s) <= width else s[:width - 5] + " ...)"


def first_difference(expected, got):
    n = 0
    while n < min(len(expected), len(got)) and expected[n] == got[n]:
        n += 1
    return n


def signature(expected, got):
    """What a difference looks like with numbers and names blurred, to count distinct failures."""
    n = first_difference(expected, got)
    e = expected[n] if n < len(expected) else None
    g = got[n] if n < len(got) else None
    if e and g and e[0] == g[0] == "S":
        if e[1] != g[1]:
            return "ParameterStatus %s from pglease where PostgreSQL sends %s" % (g[1], e[1])
        if e[2].replace(" ", "") == g[2].replace(" ", ""):
            return "ParameterStatus %s spelled differently (%r for %r)" % (e[1], g[2], e[2])
        return "ParameterStatus %s has another value" % e[1]
    pick = lambda m: short(m, 90) if m else "(end)"
    return re.sub(r"\d+", "#", "expected %s, got %s" % (pick(e), pick(g)))


def diff_text(expected, got):
    n = first_difference(expected, got)
    lines = ["  first difference at reply message #%d (expected %d messages, got %d)" % (n, len(expected), len(got))]
    lo = max(0, n - 3)
    for label, seq in (("expected (PostgreSQL)", expected), ("got (pglease)", got)):
        lines.append("  %s:" % label)
        if lo:
            lines.append("      ... %d equal messages" % lo)
        for k in range(lo, min(len(seq), n + 6)):
            lines.append("    %s %3d %s" % ("*" if k == n else " ", k, short(seq[k])))
        if len(seq) > n + 6:
            lines.append("      ... %d more" % (len(seq) - n - 6))
    return "\n".join(lines)


# ---------------------------------------------------------------- the run
class Torture:
    def __init__(self, args, cfg, daemon, cluster):
        self.args, self.cfg, self.d, self.cluster = args, cfg, daemon, cluster
        self.seed = cfg["seed"]
        self.pg_path = os.path.join(cluster.dir, ".s.PGSQL.%d" % cluster.port)
        self.failures = []
        self.pin_failures = 0
        self.latency = []          # (seconds, client, session, op index, op name)
        self.sessions = self.ops = self.actions = self.messages = 0
        self.ledgers = {}          # client -> (pooled Ledger, direct Ledger)
        self.where = {}            # client -> current position, for a stuck run
        self.console = None
        self.console_lock = asyncio.Lock()
        self.stop_clients = False
        self.diverged = set()      # clients whose replies differed: their tables differ too
        self.op_counts = {}
        self.stalls = self.query_timeouts = 0

    # -- failures
    def fail(self, kind, text, ci=None, j=None, opi=None, sig=None, quiet=False):
        self.failures.append(dict(kind=kind, text=text, ci=ci, j=j, opi=opi, sig=sig or kind))
        if quiet:
            return
        head = "FAIL [%s] seed=%s" % (kind, self.seed)
        if ci is not None:
            head += " client=%d (%s) session=%s op=%s" % (ci, self.cfg["kinds"][ci], j, opi)
        print("%s\n%s\n" % (head, text), flush=True)

    # -- console
    async def show(self, what):
        async with self.console_lock:
            cols, rows = await self.console.simple("SHOW %s" % what)
        return [dict(zip(cols, r)) for r in rows]

    # -- one action on both sides
    async def run_action(self, conn, act, pooled):
        async def notice_cb(c):
            await c.cancel()
        started = []

        async def running_cb(c):
            started.append(time.monotonic())
        # query_timeout: pglease cancels its side itself; PostgreSQL's side is cancelled here
        cancel = act.cancel or (act.query_timeout and not pooled)
        on_notice = notice_cb if cancel else running_cb if act.query_timeout else None
        t0 = time.monotonic()
        msgs = await conn.exchange(act.data, act.nz, copy=act.copy, on_notice=on_notice,
                                   until=act.until, on_error=act.on_error)
        if act.query_timeout and pooled and started:
            # from the NOTICE (the statement surely runs on a backend: a wait for the lease is not counted)
            t0 = started[0]
        return msgs, time.monotonic() - t0

    async def stall(self, ci, j, opi, op, pooled, direct, act):
        """Half a message, then silence: pglease must end the client with FATAL 08P01 within
        client_stall_timeout (plus the maintenance tick and slack); PostgreSQL's side is just closed."""
        pooled.write(act.data)
        await pooled.drain()
        direct.kill()
        t0 = time.monotonic()
        msgs = []
        while True:
            t, body = await pooled.read_msg(self.cfg["stall_timeout"] + STALL_SLACK)
            msgs.append((t, body))
            if t in (b"EOF", b"TIMEOUT") or t == b"E":
                break
        dt = time.monotonic() - t0
        self.stalls += 1
        err = parse_fields(msgs[-1][1]) if msgs[-1][0] == b"E" else {}
        if err.get("C") != "08P01" or dt < self.cfg["stall_timeout"] - 0.5:
            self.fail("stall", "%s: expected FATAL 08P01 after client_stall_timeout %g s; after %.1f s got %s"
                      % (op.name, self.cfg["stall_timeout"], dt, [short(m, 100) for m in normalize(msgs)]),
                      ci, j, opi, "stall: %s" % (err.get("C") or msgs[-1][0].decode()))
        pooled.kill()

    def check_query_timeout(self, ci, j, opi, op, dt):
        """pglease's cancel came after query_timeout, not long after (the tick, the cancel's round trip)."""
        self.query_timeouts += 1
        qt = self.cfg["query_timeout"]
        if not qt - 0.3 <= dt <= qt + QUERY_TIMEOUT_SLACK:
            self.fail("query_timeout", "%s: 57014 through pglease after %.1f s (query_timeout %g s)" % (op.name, dt, qt),
                      ci, j, opi, "query_timeout: cancelled after %.0f s" % dt)

    @staticmethod
    async def login(conn, startup):
        """(logged in, normalised login replies)."""
        try:
            return True, normalize_login(await conn.open(startup))
        except LoginFailed as e:
            return False, normalize(e.msgs)
        except OSError as e:
            return False, [("connect failed", str(e))]

    async def run_session(self, ci, j, sess):
        """Run one program on both sides; False when its replies diverged (the client stops)."""
        label = "client %d session %d" % (ci, j)
        pooled = [Conn(self.d.socket_path, self.args.read_timeout) for _ in range(sess.nconns)]
        direct = [Conn(self.pg_path, self.args.read_timeout) for _ in range(sess.nconns)]
        lp0, ld0 = self.ledgers.setdefault(ci, (Ledger(), Ledger()))
        # one ledger per connection (each has its own transaction), one set of committed rows per client
        lp = [Ledger(lp0.committed) for _ in range(sess.nconns)]
        ld = [Ledger(ld0.committed) for _ in range(sess.nconns)]
        startup_direct = dict(sess.startup, database="mirror")

        def close_all():
            for c in pooled + direct:
                c.kill()

        for k in range(sess.nconns):
            self.where[ci] = "%s: login" % label
            rp, rd = await asyncio.gather(self.login(pooled[k], sess.startup), self.login(direct[k], startup_direct))
            self.messages += len(rd[1])
            if rp != rd:
                # a login failure both sides share (a bad setting) is no difference, but ends the program
                self.fail("login", "startup %r\n%s" % (sess.startup, diff_text(rd[1], rp[1])), ci, j, "login",
                          "login: " + signature(rd[1], rp[1]))
            if rp != rd or not rp[0]:
                close_all()
                return True     # no data diverged: the client goes on

        think = random.Random("think:%s:%d:%d" % (self.seed, ci, j))
        for opi, op in enumerate(sess.ops):
            self.ops += 1
            kind = op.name.split(" (")[0].split(" round")[0]
            self.op_counts[kind] = self.op_counts.get(kind, 0) + 1
            for ai, act in enumerate(op.actions):
                self.where[ci] = "%s: op %d %s, action %d %s" % (label, opi, op.name, ai,
                                                                 describe_frontend(act.data)[:3])
                if act.stall:
                    await self.stall(ci, j, opi, op, pooled[act.conn], direct[act.conn], act)
                    lp[act.conn].killed()
                    ld[act.conn].killed()
                    continue
                if act.kill:
                    for c in (pooled[act.conn], direct[act.conn]):
                        await c.drain()
                        c.kill()
                    lp[act.conn].killed()
                    ld[act.conn].killed()
                    continue
                (mp, dt), (md, _) = await asyncio.gather(self.run_action(pooled[act.conn], act, True),
                                                         self.run_action(direct[act.conn], act, False))
                if act.query_timeout and normalize(mp) == normalize(md):
                    self.check_query_timeout(ci, j, opi, op, dt)
                self.actions += 1
                got, exp = normalize(mp), normalize(md)
                if ci in self.args.trace:
                    print("TRACE client %d session %d op %d %s action %d conn %s (%.3f s)\n    sent: %s\n    got: %s"
                          % (ci, j, opi, op.name, ai, "AB"[act.conn], dt, describe_frontend(act.data),
                             [short(m, 100) for m in got][:40]), flush=True)
                self.messages += len(exp)
                if act.timed:
                    self.latency.append((dt, ci, j, opi, op.name))
                    if dt > self.args.bound:
                        self.fail("latency", "%s took %.1f s through pglease (bound %.0f s); sent %s"
                                  % (op.name, dt, self.args.bound, describe_frontend(act.data)), ci, j, opi,
                                  "latency over %.0f s" % self.args.bound)
                lp[act.conn].feed(mp, act.copy_ids)
                ld[act.conn].feed(md, act.copy_ids)
                if got != exp:
                    self.diverged.add(ci)
                    self.fail("reply", "op %s, action %d/%d on connection %s; sent:\n    %s\n%s"
                              % (op.name, ai + 1, len(op.actions), "AB"[act.conn],
                                 "\n    ".join(describe_frontend(act.data)), diff_text(exp, got)), ci, j, opi,
                              "reply (%s): %s" % (op.name.split(" (")[0], signature(exp, got)))
                    close_all()
                    return False
                r = think.random()
                await asyncio.sleep(0 if r < 0.5 else r * 0.01 if r < 0.95 else 0.05)
        if sess.killed:
            return True
        # no pin without state: a transaction-mode client whose model holds no session state
        state = sess.ops[-1].state if sess.ops else frozenset()
        if sess.kind in ("txn", "grouped") and not state and not self.args.no_pin_check:
            self.where[ci] = "%s: pin check" % label
            for k, c in enumerate(pooled):
                # pglease probes a pin after relaying the ReadyForQuery of a release: give it a moment
                deadline = time.monotonic() + self.args.pin_wait
                while True:
                    row = [r for r in await self.show("CLIENTS") if r.get("id") == str(c.key[0])]
                    if (row and row[0].get("pinned") == "0") or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.05)
                if not row or row[0].get("pinned") != "0":
                    self.pin_failures += 1
                    self.fail("pinned", "connection %s holds no session state (model) but %.0f s after its last reply "
                              "SHOW CLIENTS says %r; "
                              "ops: %s" % ("AB"[k], self.args.pin_wait, row[0] if row else "not listed", [o.name for o in sess.ops]),
                              ci, j, len(sess.ops) - 1, "pinned without session state",
                              quiet=self.pin_failures > 5)
        for k in range(sess.nconns):
            if pooled[k].params != direct[k].params:
                diffs = {n: (direct[k].params.get(n), pooled[k].params.get(n))
                         for n in set(pooled[k].params) | set(direct[k].params)
                         if pooled[k].params.get(n) != direct[k].params.get(n)}
                self.fail("parameters", "final ParameterStatus values differ (name: (postgres, pglease)): %r" % diffs,
                          ci, j, "end", "parameters: " + ", ".join(sorted(diffs)))
                close_all()
                return True     # the session ends anyway; no data diverged
        self.where[ci] = "%s: terminate" % label
        await asyncio.gather(*(c.terminate() for c in pooled + direct))
        return True

    async def client(self, ci):
        kind = self.cfg["kinds"][ci]
        j = 0
        while time.monotonic() < self.deadline and not self.stop_clients:
            sess = programs.make_session(self.seed, ci, j, kind, self.args.skip)
            try:
                ok = await self.run_session(ci, j, sess)
            except Exception:  # noqa: BLE001 - a driver bug is a failure too, with its trace
                self.fail("driver", traceback.format_exc(), ci, j)
                ok = False
            self.sessions += 1
            j += 1
            if not ok:
                break
        self.where[ci] = "done after %d sessions" % j

    async def pgbench(self):
        secs = max(5, int(self.args.seconds * 0.85))
        cmd = ["pgbench", "-n", "-M", "prepared", "-c", "8", "-j", "1", "-T", str(secs), "-h", self.d.dir,
               "-p", str(self.d.port), "-U", "postgres", "tx"]
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE,
                                                    stderr=asyncio.subprocess.PIPE, env=clean_env(), cwd="/tmp")
        try:
            out, err = await asyncio.wait_for(proc.communicate(), secs + 60)
        except asyncio.TimeoutError:
            proc.kill()
            out, err = await proc.communicate()
            self.fail("pgbench", "pgbench -c 8 -j 1 -T %d did not finish within %d s (killed)\n%s%s"
                      % (secs, secs + 60, out.decode()[-1500:], err.decode()[-1500:]))
            return
        out, err = out.decode(), err.decode()
        m = re.search(r"number of failed transactions: (\d+)", out)
        tx = re.search(r"number of transactions actually processed: (\d+)", out)
        self.pgbench_tx = int(tx.group(1)) if tx else 0
        if proc.returncode != 0 or (m and int(m.group(1)) != 0) or not tx:
            self.fail("pgbench", "%s exited %d\n%s\n%s" % (" ".join(cmd), proc.returncode, out[-2000:], err[-3000:]))

    async def run(self):
        self.console = Conn(self.d.socket_path, 30)
        await self.console.open({"user": "postgres", "database": "pglease"})
        self.t0 = time.monotonic()
        self.deadline = self.t0 + self.args.seconds
        self.pgbench_tx = None
        jobs = [self.client(ci) for ci in range(self.cfg["clients"])]
        if not self.args.no_pgbench:
            jobs.append(self.pgbench())
        limit = self.args.seconds + 150
        try:
            await asyncio.wait_for(asyncio.gather(*jobs), limit)
        except asyncio.TimeoutError:
            stuck = ["  client %d: %s" % (ci, w) for ci, w in sorted(self.where.items()) if not w.startswith("done")]
            self.fail("stuck", "the run did not finish %d s after its end; where the clients are:\n%s"
                      % (limit - self.args.seconds, "\n".join(stuck)))
            for c in list(Conn.open_conns):
                if c is not self.console:
                    c.kill()
        self.wall = time.monotonic() - self.t0
        await self.check_pglease_idle()
        await self.console.terminate()

    async def check_pglease_idle(self):
        """No lease is leaked: every client gone, no backend leased or being cleaned."""
        last = None
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            clients = [c for c in await self.show("CLIENTS") if c.get("state") != "admin"]
            servers = [s for s in await self.show("SERVERS") if s.get("state") in ("active", "cleaning")]
            pools = [p for p in await self.show("POOLS")
                     if any(p.get(k) not in ("0", None) for k in ("cl_active", "cl_waiting", "sv_active", "sv_cleaning",
                                                                  "cl_leased", "cl_pinned"))]
            last = (clients, servers, pools)
            if not clients and not servers and not pools:
                return
            await asyncio.sleep(0.2)
        self.fail("leak", "15 s after the last client left, pglease still shows\n  clients: %r\n  servers: %r\n  pools: %r"
                  % last)


# ---------------------------------------------------------------- setup and final checks
def setup_databases(cluster, nclients):
    """pooled and mirror made alike: schema alt, a table per client; pgbench's tables in pooled."""
    with cluster.connect("postgres") as c:
        c.execute("create database pooled")
        c.execute("create database mirror")
    for db in ("pooled", "mirror"):
        with cluster.connect(db) as c:
            c.execute("create schema alt")
            for ci in range(nclients):
                c.execute("create table t%d (id int primary key, v text not null, n int, b bytea)" % ci)
    r = subprocess.run(["pgbench", "-i", "-q", "-s", "1", "-h", cluster.dir, "-p", str(cluster.port),
                                      "-U", "postgres", "pooled"], capture_output=True, text=True, timeout=120,
                                     env=clean_env())
    if r.returncode != 0:
        raise RuntimeError("pgbench -i failed: %s" % r.stderr)


def other_backends(conn, db):
    return conn.execute("select pid, state, left(query, 80), application_name from pg_stat_activity "
                        "where datname = %s and pid <> pg_backend_pid() and backend_type = 'client backend' "
                        "and coalesce(application_name, '') <> %s", (db, DIRECT_APPNAME)).fetchall()


def final_checks(t, cluster):
    pooled = cluster.connect("pooled")
    mirror = cluster.connect("mirror")
    try:
        # killed direct clients may still be finishing a pg_sleep before PostgreSQL notices them gone
        try:
            wait_for(lambda: not other_backends(mirror, "mirror"), timeout=15, what="mirror clients to leave")
        except AssertionError as e:
            t.fail("direct", str(e))
        rows = other_backends(pooled, "pooled")
        idle_tx = [r for r in rows if (r[1] or "").startswith("idle in transaction")]
        if idle_tx:
            t.fail("idle in transaction", "pooled backends idle in transaction after the run: %r" % idle_tx)
        locks = pooled.execute("select l.pid, l.objid, l.mode from pg_locks l where l.locktype = 'advisory'").fetchall()
        if locks:
            t.fail("advisory lock", "advisory locks still held after the run (pid, key, mode): %r; backends: %r"
                   % (locks, rows))
        bad = 0
        for ci in range(t.cfg["clients"]):
            lp, ld = t.ledgers.get(ci, (Ledger(), Ledger()))
            got_p = pooled.execute("select id, v, n, b from t%d order by id" % ci).fetchall()
            got_m = mirror.execute("select id, v, n, b from t%d order by id" % ci).fetchall()
            ids_p = {r[0] for r in got_p}
            problems = []
            if ids_p != lp.committed:
                problems.append("pooled table t%d vs the rows its client was told were committed: missing %s, "
                                "unexpected %s" % (ci, sorted(lp.committed - ids_p)[:20], sorted(ids_p - lp.committed)[:20]))
            if {r[0] for r in got_m} != ld.committed:
                problems.append("mirror table t%d vs its direct client's ledger (test bug?): missing %s, unexpected %s"
                                % (ci, sorted(ld.committed - {r[0] for r in got_m})[:20],
                                   sorted({r[0] for r in got_m} - ld.committed)[:20]))
            if got_p != got_m and ci not in t.diverged:
                diff = [r for r in got_p if r not in got_m][:5] + [("mirror",)] + [r for r in got_m if r not in got_p][:5]
                problems.append("table t%d differs between pooled and mirror: %r" % (ci, diff))
            if problems:
                bad += 1
                if bad <= 5:
                    t.fail("ledger", "\n".join(problems), ci)
        t.rows_checked = sum(len(lg[0].committed) for lg in t.ledgers.values())
        if not t.args.no_pgbench:
            # TPC-B keeps every balance sum equal to the history's, whatever committed
            sums = pooled.execute("select (select sum(abalance) from pgbench_accounts), (select sum(tbalance) from "
                                  "pgbench_tellers), (select sum(bbalance) from pgbench_branches), (select "
                                  "coalesce(sum(delta), 0) from pgbench_history), (select count(*) from "
                                  "pgbench_history)").fetchone()
            if len(set(sums[:4])) != 1 or (t.pgbench_tx and sums[4] < t.pgbench_tx):
                t.fail("pgbench data", "balances (accounts, tellers, branches, history) %r, history rows %d, "
                       "pgbench reported %r transactions" % (sums[:4], sums[4], t.pgbench_tx))
    finally:
        pooled.close()
        mirror.close()


def save_logs(seed, d, cluster):
    """Keep pglease's and PostgreSQL's logs of a failed run for the investigation."""
    out = "/tmp/torture-%s" % seed
    os.makedirs(out, exist_ok=True)
    if d is not None:
        with open(os.path.join(out, "pglease.log"), "w") as f:
            f.write(d.final_log if d.final_log is not None else d.log_text())
    try:
        with open(os.path.join(cluster.dir, "postgresql.log"), "rb") as src, \
                open(os.path.join(out, "postgresql.log"), "wb") as dst:
            dst.write(src.read())
    except OSError:
        pass
    print("torture: logs kept in %s" % out, flush=True)


def config_from_seed(seed, args):
    rng = random.Random("config:%s" % seed)
    n = args.clients or rng.randint(30, 50)
    backends = args.backends or rng.randint(2, 4)
    n_grouped = rng.randint(1, 3) if "grouped" not in args.skip else 0
    n_session = rng.randint(3, 6) if "session" not in args.skip else 0
    kinds = ["grouped"] * n_grouped + ["session"] * n_session
    kinds += ["txn"] * (n - len(kinds))
    return dict(seed=seed, clients=n, backends=backends, session_pool=rng.randint(2, 3), kinds=kinds,
                max_prepared=rng.choice([200, 200, 4]), query_timeout=QUERY_TIMEOUT, stall_timeout=STALL_TIMEOUT)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("PGLEASE_BIN") or os.path.join(REPO, "pglease"))
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("TORTURE_SECONDS", 60)))
    ap.add_argument("--seed", default=os.environ.get("SEED") or None)
    ap.add_argument("--clients", type=int, default=0, help="default: 30-50 from the seed")
    ap.add_argument("--backends", type=int, default=0, help="transaction pool size; default: 2-4 from the seed")
    ap.add_argument("--bound", type=float, default=15.0, help="latency bound per operation through pglease (s)")
    ap.add_argument("--read-timeout", type=float, default=60.0)
    ap.add_argument("--skip", default="", help="comma-separated op kinds or actors to leave out (e.g. reset,grouped,kill)")
    ap.add_argument("--no-pgbench", action="store_true")
    ap.add_argument("--no-pin-check", action="store_true")
    ap.add_argument("--pin-wait", type=float, default=3.0, help="seconds the pin check waits for pglease's probe")
    ap.add_argument("--trace", default="", help="comma-separated client numbers whose every action is printed")
    args = ap.parse_args()
    args.skip = [s for s in args.skip.split(",") if s]
    args.trace = {int(c) for c in args.trace.split(",") if c}
    seed = args.seed or str(random.SystemRandom().randrange(1, 10 ** 9))
    cfg = config_from_seed(seed, args)
    extra = []
    if args.skip:
        extra.append("--skip %s" % ",".join(args.skip))
    for flag in ("no_pgbench", "no_pin_check"):
        if getattr(args, flag):
            extra.append("--" + flag.replace("_", "-"))
    for k in ("clients", "backends"):
        if getattr(args, k):
            extra.append("--%s %d" % (k, getattr(args, k)))
    replay = "make %s SEED=%s SECONDS=%g%s" % ("torture-asan" if "asan" in os.path.basename(args.bin) else "torture",
                                                seed, args.seconds,
                                                ' TORTURE_ARGS="%s"' % " ".join(extra) if extra else "")
    print("torture: seed=%s seconds=%g bin=%s clients=%d (grouped %d, session %d) backends=%d session_pool=%d "
          "max_prepared_statements=%d%s" % (seed, args.seconds, args.bin, cfg["clients"], cfg["kinds"].count("grouped"),
                                            cfg["kinds"].count("session"), cfg["backends"], cfg["session_pool"],
                                            cfg["max_prepared"], " " + " ".join(extra) if extra else ""), flush=True)
    t_start = time.monotonic()
    cluster = Cluster()
    d = None
    t = None
    problems = []
    try:
        cluster.start()
        setup_databases(cluster, cfg["clients"])
        databases = {
            "tx": cluster.conninfo("pooled", pool_size=cfg["backends"]),
            "sess": cluster.conninfo("pooled", pool_size=cfg["session_pool"], pool_mode="session"),
        }
        d = Daemon(args.bin, cluster, dict(query_wait_timeout=30, max_client_conn=400, default_pool_size=cfg["backends"],
                                           max_prepared_statements=cfg["max_prepared"],
                                           query_timeout=cfg["query_timeout"],
                                           client_stall_timeout=cfg["stall_timeout"]), databases)
        # pool_verify() after every loop iteration, whichever build (pool/verify.c).
        d.env["PGLEASE_VERIFY"] = "1"
        d.start(wait=False)
        wait_for(lambda: d.check_alive() or (os.path.exists(d.socket_path) and
                                             d.psql("-c", "select 1", dbname="tx", timeout=10).returncode == 0),
                 timeout=20, what="pglease to answer on database tx")
        t = Torture(args, cfg, d, cluster)
        t.rows_checked = 0
        asyncio.run(t.run())
        final_checks(t, cluster)
    except Exception:  # noqa: BLE001
        problems.append("the run itself failed:\n" + traceback.format_exc())
    finally:
        if d is not None:
            problems += d.stop()
            if d.final_log is not None and VERIFY_ON not in d.final_log:
                problems.append("pglease did not say it verifies its invariants (%r missing from its log)" % VERIFY_ON)
            if problems and d.final_log:
                problems.append("pglease log tail:\n" + "\n".join(d.final_log.splitlines()[-60:]))
        if problems or (t and t.failures):
            save_logs(seed, d, cluster)
        if d is not None:
            d.cleanup()
        cluster.stop()
    for p in problems:
        print("FAIL [daemon] seed=%s %s" % (seed, p), flush=True)
    failures = (t.failures if t else []) + [dict(kind="daemon", text=p) for p in problems]
    if t:
        lat = sorted(t.latency)
        worst = lat[-1] if lat else (0, None, None, None, "")
        p99 = lat[int(len(lat) * 0.99)][0] if lat else 0
        print("torture summary: seed=%s clients=%d (grouped %d, session %d) backends=%d session_pool=%d "
              "sessions=%d ops=%d actions_compared=%d messages_compared=%d committed_rows_checked=%d "
              "pgbench_tx=%s latency_p99=%.3fs latency_max=%.3fs (client %s op %s) run=%.1fs wall=%.1fs"
              % (seed, cfg["clients"], cfg["kinds"].count("grouped"), cfg["kinds"].count("session"), cfg["backends"],
                 cfg["session_pool"], t.sessions, t.ops, t.actions, t.messages, t.rows_checked, t.pgbench_tx,
                 p99, worst[0], worst[1], worst[4], getattr(t, "wall", 0), time.monotonic() - t_start), flush=True)
        print("torture ops: %s" % ", ".join("%s %d" % kv for kv in sorted(t.op_counts.items())), flush=True)
        print("torture timeouts: %d queries cancelled by query_timeout, %d stalled clients ended" %
              (t.query_timeouts, t.stalls), flush=True)
        if t.pin_failures > 5:
            print("(%d pin-check failures in all, 5 shown)" % t.pin_failures)
    if failures:
        sigs = {}
        for f in failures:
            sigs.setdefault(f.get("sig") or f["kind"], []).append(f)
        print("torture: distinct failures (count, first client/session/op, what):")
        for sig, fs in sorted(sigs.items(), key=lambda kv: -len(kv[1])):
            f = fs[0]
            print("  %4d  client %s session %s op %s  %s" % (len(fs), f.get("ci"), f.get("j"), f.get("opi"), sig))
        kinds = {}
        for f in failures:
            kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
        print("torture: FAILED seed=%s: %s\nreplay: %s" % (seed, ", ".join("%s x%d" % kv for kv in sorted(kinds.items())),
                                                           replay))
        print("torture: 0 passed, 1 failed")
        return 1
    print("torture: 1 passed, 0 failed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
