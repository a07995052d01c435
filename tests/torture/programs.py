"""Random client programs for the torture test, deterministic from (seed, client, session).

A program (Session) is a startup packet, a list of operations and how it ends
(Terminate, or the socket just closed). An operation is a list of Actions,
each a batch of frontend bytes and how to read its replies. The same program
runs through pglease and directly against PostgreSQL; the driver compares the
replies. The generator keeps a small model of what the client did (its
session state, the statement names it believes exist, the ids it used) only
to choose sensible next steps and to know when the client holds no session
state; correctness comes from PostgreSQL's own replies, never from the model.

Every client touches only its own table t<client>, its own advisory lock keys,
its own LISTEN channel and its own temporary tables, so its results do not
depend on the other clients.
"""
import random
import struct
from dataclasses import dataclass, field

from pgproto import B, C, COPY_DONE, D, E, FLUSH, P, Q, SYNC, copy_data, copy_fail


# ---------------------------------------------------------------- program structure
@dataclass
class Action:
    data: bytes = b""
    nz: int = 1                  # ReadyForQuery replies to read
    copy: bytes = None           # sent when CopyInResponse arrives
    copy_ids: tuple = ()         # ids the copy inserts (for the ledger)
    cancel: bool = False         # send a CancelRequest at the first NoticeResponse
    until: bytes = None          # stop reading at this message type instead
    conn: int = 0                # which of the program's connections
    timed: bool = True           # counts against the latency bound
    kill: bool = False           # close the socket without Terminate (data, if any, is sent first)
    on_error: bytes = None       # sent if an ErrorResponse comes before CopyInResponse (a Sync the copy owed)
    query_timeout: bool = False  # pglease's query_timeout cancels it; PostgreSQL directly gets a CancelRequest
    stall: bool = False          # data is half a message: pglease must end the client within client_stall_timeout


@dataclass
class Op:
    name: str
    actions: list
    state: frozenset = frozenset()   # the model's session state after the op


@dataclass
class Session:
    kind: str                    # "txn" (transaction pool), "session" (session pool), "grouped"
    startup: dict
    ops: list = field(default_factory=list)
    nconns: int = 1
    killed: bool = False         # the last op closes the socket(s)


# ---------------------------------------------------------------- values and statements
WORDS = ["alpha", "beta", "gamma", "delta", "épsilon", "zeta", "eta", "θeta", "iota", "kappa", "x y", "o'neil"]
TIMEZONES = ["UTC", "Asia/Tokyo", "America/New_York", "Europe/Paris", "Australia/Adelaide", "Asia/Kolkata"]
DATESTYLES = ["ISO, MDY", "ISO, DMY", "SQL, DMY", "SQL, MDY", "German, DMY", "Postgres, MDY", "Postgres, YMD"]
INTERVALSTYLES = ["postgres", "postgres_verbose", "sql_standard", "iso_8601"]
SEARCH_PATHS = ["alt, public", "public, alt", '"$user", public']

SHARED_TEXTS = [
    ("select $1::int + 1 as plus_one", ["int4"]),
    ("select $1::int * 2 as twice, $2::text as label", ["int4", "text"]),
    ("select 10 / ($1::int - 5 + (random() * 0)::int) as q", ["int4"]),     # fails at Execute for 5
    ("select $1::bytea as raw, length($1::bytea) as len", ["bytea"]),
    ("selec $1", ["int4"]),                                                 # fails at Parse
    ("select g, repeat('z', $1::int) from generate_series(1, 3) g", ["int4"]),
    ("select $1::text::date as d, $1::text::date + 1 as next", ["date"]),
    ("select $1::int as n, 'a'::text || $1::int as s", ["int4"]),
]


def client_texts(table):
    return [
        ("insert into %s(id, v, n, b) values ($1, $2, $3, $4) returning id" % table, ["id", "text", "int4", "bytea"]),
        ("select id, v, n, b from %s where id >= $1 order by id limit 20" % table, ["int4"]),
        ("update %s set n = n + $1 where id >= $2" % table, ["int4", "int4"]),
        ("delete from %s where id = $1 returning id" % table, ["used"]),
        ("select count(*), coalesce(sum(n), 0) from %s where n > $1" % table, ["int4"]),
    ]


VALUE_EXPRS = [
    "select 1", "select 1.5::float8 * 3 as f", "select null::text as nothing", "select array[1, 2, 3] as arr",
    "select '2024-03-05 13:14:15+02'::timestamptz as ts", "select date '2024-03-05' as d",
    "select interval '1 day 02:03:04.5' as iv", "select '13:14'::time as t",
    "select 'a' || repeat('b', 3000) as long_text", "select E'\\\\x00ff'::bytea as bin",
    "select g, md5(g::text) from generate_series(1, 400) g",
    "select current_setting('TimeZone') as tz, current_setting('DateStyle') as ds",
    "select current_setting('IntervalStyle') as ivs, current_setting('application_name') as app",
    "select current_setting('search_path') as sp, current_setting('work_mem') as wm",
    "select to_char('2024-03-05 13:14:15+00'::timestamptz, 'YYYY-MM-DD HH24:MI TZ') as local",
    "select $$dollar ' quoted$$ as dq, 'set temp listen' as words",
    "select 'x'::text as \"Mixed Case\", 2 as \"two\"",
    "",
]

FAILING = [
    "select 1/0", "select * from no_such_table", "selec 1", "select 'abc'::int", "select missing_column",
    "do $$ begin raise exception 'planned failure' using errcode = 'P0001'; end $$",
]


def bytea_text(b):
    return b"\\x" + b.hex().encode()


class Gen:
    """Generates one Session for (seed, client, session index)."""

    def __init__(self, seed, ci, j, kind, skip=()):
        self.rng = random.Random("torture:%s:%d:%d" % (seed, ci, j))
        self.ci, self.j, self.kind, self.skip = ci, j, kind, set(skip)
        self.table = "t%d" % ci
        self.next_id = j * 100000 + 1
        self.used = []                # ids this session inserted (committed or not)
        self.state = set()            # session state the client holds (model)
        self.names = {}               # statement name -> (sql, types) the client believes prepared
        # Per session, not per client: a direct backend that was just told to Terminate (or whose
        # client vanished) may still hold its locks and LISTEN while the next session starts.
        self.channel = "ch_%d_%d" % (ci, j)
        self.lock_base = 1000000000 + ci * 1000000 + j * 100
        self.temps = 0
        self.texts = SHARED_TEXTS + client_texts(self.table)

    # -- values
    def fresh_ids(self, n):
        ids = list(range(self.next_id, self.next_id + n))
        self.next_id += n
        self.used += ids
        return ids

    def some_id(self):
        if self.used and self.rng.random() < 0.8:
            return self.rng.choice(self.used)
        return self.next_id + 50000

    def word(self):
        return self.rng.choice(WORDS)

    def row_values(self, i):
        return (i, "%s-%d" % (self.word(), i), self.rng.randint(-5, 100), bytes(self.rng.randrange(256) for _ in range(self.rng.randint(0, 6))))

    def sql_literal(self, s):
        return "'" + s.replace("'", "''") + "'"

    def insert_sql(self, n=None, dup=False):
        n = n or self.rng.randint(1, 3)
        ids = self.fresh_ids(n)
        if dup and self.used[:-n]:
            ids[-1] = self.rng.choice(self.used[:-n])
        rows = []
        for i in ids:
            i, v, num, b = self.row_values(i)
            rows.append("(%d, %s, %d, '\\x%s')" % (i, self.sql_literal(v), num, b.hex()))
        tail = " on conflict do nothing" if self.rng.random() < 0.15 else ""
        return "insert into %s(id, v, n, b) values %s%s returning id" % (self.table, ", ".join(rows), tail)

    def select_sql(self):
        r = self.rng.random()
        if r < 0.35:
            lo = self.j * 100000
            return "select id, v, n, b from %s where id >= %d order by id" % (self.table, lo)
        if r < 0.5:
            return "select count(*), coalesce(sum(n), 0), coalesce(max(id), 0) from %s" % self.table
        return self.rng.choice(VALUE_EXPRS)

    def update_sql(self):
        return "update %s set n = n + %d, v = v || '+' where id >= %d" % (self.table, self.rng.randint(1, 9), self.some_id())

    def delete_sql(self):
        return "delete from %s where id = %d returning id" % (self.table, self.some_id())

    def failing_sql(self):
        if self.used and self.rng.random() < 0.3:
            return self.insert_sql(1, dup=True)
        return self.rng.choice(FAILING)

    def any_stmt(self):
        r = self.rng.random()
        if r < 0.3:
            return self.insert_sql()
        if r < 0.7:
            return self.select_sql()
        if r < 0.8:
            return self.update_sql()
        if r < 0.88:
            return self.delete_sql()
        return self.failing_sql()

    def params_for(self, types, binary):
        """Bind parameters for types, each in text or (when binary) mostly binary format."""
        out, fmts = [], []
        for t in types:
            fmt = 1 if binary and t != "date" and self.rng.random() < 0.8 else 0
            fmts.append(fmt)
            if t in ("id", "used", "int4"):
                if t == "id":
                    n = self.fresh_ids(1)[0] if self.rng.random() < 0.9 or not self.used else self.rng.choice(self.used)
                elif t == "used":
                    n = self.some_id()
                else:
                    n = self.rng.choice([1, 2, 5, 7, 40, -3, 0])
                out.append(struct.pack("!i", n) if fmt else str(n).encode())
            elif t == "text":
                out.append(("%s-%d" % (self.word(), self.rng.randint(0, 99))).encode())
            elif t == "bytea":
                b = bytes(self.rng.randrange(256) for _ in range(self.rng.randint(0, 8)))
                out.append(b if fmt else bytea_text(b))
            elif t == "date":
                out.append(self.rng.choice([b"2024-03-05", b"05/03/2024", b"3/5/2024", b"5.3.2024"]))
        return out, fmts

    def bind_exec(self, name, sql, types, portal="", max_rows=0, describe=False):
        writes = sql.startswith(("insert", "delete"))
        binary = self.rng.random() < 0.4
        params, fmts = self.params_for(types, binary)
        rfmt = [] if writes or self.rng.random() < 0.5 else [1]
        data = B(name, params, fmts, rfmt, portal)
        if describe:
            data += D(b"P", portal)
        return data + E(portal, max_rows)

    def take_lock(self, key, mode):
        """The model's session advisory locks: "lock:KEY:MODE:COUNT" (they are reentrant)."""
        held = [x for x in self.state if x.startswith("lock:%d:%s:" % (key, mode))]
        count = int(held[0].rsplit(":", 1)[1]) if held else 0
        self.state -= set(held)
        self.state.add("lock:%d:%s:%d" % (key, mode, count + 1))

    # -- ops that start and end outside a transaction
    def op_simple(self):
        return Op("simple", [Action(Q(self.any_stmt()))])

    def op_multi(self):
        stmts = [self.any_stmt() or "select 2" for _ in range(self.rng.randint(2, 5))]
        if self.rng.random() < 0.2:
            stmts.insert(self.rng.randrange(len(stmts)), "set local TimeZone = 'Asia/Tokyo'")
        return Op("multi-statement", [Action(Q("; ".join(stmts)))])

    def op_unnamed(self):
        sql, types = self.rng.choice(self.texts)
        data = P("", sql) + (D(b"S") if self.rng.random() < 0.4 else b"")
        data += self.bind_exec("", sql, types, describe=self.rng.random() < 0.5)
        if self.rng.random() < 0.2:
            data += FLUSH
        return Op("extended unnamed", [Action(data + SYNC)])

    def named_step(self, avoid=(), touched=None):
        """One random message group on the client's statement names, none of `avoid`; the names it
        uses are added to `touched`."""
        names = [n for n in ("s1", "s2", "S3", "q") if n not in avoid]
        if not names:
            return P("", "select 'no name left'") + B() + E()
        r = self.rng.random()
        name = self.rng.choice(names)
        if touched is not None and (r < 0.35 or r >= 0.8):
            touched.add(name)
        if r < 0.35:
            sql, types = self.rng.choice(self.texts)
            if name not in self.names:
                self.names[name] = (sql, types)
            data = P(name, sql)
            if self.rng.random() < 0.3:
                data += D(b"S", name)
            return data
        if r < 0.7:
            usable = sorted(n for n in self.names if n not in avoid)
            if usable and self.rng.random() < 0.85:
                name = self.rng.choice(usable)
                sql, types = self.names[name]
            else:
                sql, types = self.rng.choice(self.texts)
            if touched is not None:
                touched.add(name)
            return self.bind_exec(name, sql, types, describe=self.rng.random() < 0.3)
        if r < 0.8:
            if touched is not None:
                touched.add(name)
            return D(b"S", name)
        self.names.pop(name, None)
        return C(b"S", name)

    def op_named(self):
        r = self.rng.random()
        if r < 0.12:
            which = self.rng.choice(["deallocate all", "deallocate %s" % self.rng.choice(["s1", "s2", "q", "nothing"]),
                                     "deallocate prepare \"S3\""])
            if which == "deallocate all":
                self.names.clear()
            else:
                for n in ("s1", "s2", "q", "S3"):
                    if which.endswith(" " + n) or which.endswith('"%s"' % n):
                        self.names.pop(n, None)
            if self.rng.random() < 0.5:
                return Op("deallocate", [Action(Q(which))])
            return Op("deallocate (extended)", [Action(P("", which) + B() + E() + SYNC)])
        data = b"".join(self.named_step() for _ in range(self.rng.randint(1, 4)))
        return Op("named statements", [Action(data + SYNC)])

    def op_pipeline(self):
        """Several Syncs in one write, an error inside half of them. A statement name may be used
        again in a later segment of the pipeline: whether the earlier segment ran decides what it
        means there (pool/README.md, "Pipelines"). With "pipeline-names" skipped, a name used in a
        segment is not used again in a later one."""
        segs = self.rng.randint(2, 4)
        data = b""
        avoid = set()
        failing_seg = self.rng.randrange(segs) if self.rng.random() < 0.5 else None
        for seg in range(segs):
            touched = set()
            n = self.rng.randint(1, 3)
            for pos in range(n):
                if seg == failing_seg and pos == n // 2:      # an error inside: the rest of the segment is skipped
                    sql = self.failing_sql()
                    data += P("", sql) + B() + E()
                k = self.rng.random()
                if k < 0.45:
                    sql, types = self.rng.choice(self.texts)
                    data += P("", sql) + self.bind_exec("", sql, types)
                elif k < 0.75:
                    data += self.named_step(avoid, touched)
                else:
                    sql = self.any_stmt() or "select 3"
                    data += P("", sql) + B() + E()
            data += SYNC
            if "pipeline-names" in self.skip:
                avoid |= touched
        return Op("pipeline", [Action(data, nz=segs)])

    def op_portal(self):
        """Row-limited Execute (PortalSuspended) inside a transaction, named and unnamed portals."""
        n = self.rng.randint(3, 12)
        sql = "select g, 'row ' || g from generate_series(1, %d) g" % n
        if self.rng.random() < 0.4:
            sql = "select id, v, n from %s order by id" % self.table
        portal = self.rng.choice(["", "cur"])
        k = self.rng.randint(1, 4)
        acts = [Action(Q("begin"))]
        acts.append(Action(P("", sql) + B("", portal=portal, result_formats=self.rng.choice([[], [1]])) + D(b"P", portal) +
                           E(portal, k) + SYNC))
        for _ in range(self.rng.randint(1, 4)):
            acts.append(Action(E(portal, k) + (E(portal, k) if self.rng.random() < 0.3 else b"") + SYNC))
        if self.rng.random() < 0.3:
            acts.append(Action(C(b"P", portal) + SYNC))
            acts.append(Action(E(portal, 1) + SYNC))           # 34000 now
        acts.append(Action(Q(self.rng.choice(["commit", "rollback", "end"]))))
        if self.rng.random() < 0.3:                              # outside: the portal died with its transaction
            acts.append(Action(E(portal, 1) + SYNC))
        return Op("portal with row limit", acts)

    def copy_rows(self, fmt, bad=False):
        n = self.rng.randint(1, 6)
        ids = self.fresh_ids(n)
        rows = [self.row_values(i) for i in ids]
        if fmt == "binary":
            out = b"PGCOPY\n\xff\r\n\0" + struct.pack("!ii", 0, 0)
            for i, v, num, b in rows:
                vb = v.encode()
                out += struct.pack("!h", 4) + struct.pack("!ii", 4, i) + struct.pack("!i", len(vb)) + vb
                out += struct.pack("!ii", 4, num) + struct.pack("!i", len(b)) + b
            if bad:
                out += struct.pack("!h", 4) + struct.pack("!ii", 2, 7)    # an int4 of 2 bytes
            out += struct.pack("!h", -1)
            chunks = [out[i:i + 37] for i in range(0, len(out), 37)]
        else:
            lines = []
            for i, v, num, b in rows:
                if fmt == "csv":
                    lines.append('%d,"%s",%d,\\x%s\n' % (i, v.replace('"', '""'), num, b.hex()))
                else:
                    lines.append("%d\t%s\t%d\t\\\\x%s\n" % (i, v, num, b.hex()))
            if bad:
                lines.insert(self.rng.randrange(len(lines) + 1), "not-a-number\tx\t1\t\\\\x00\n" if fmt == "text"
                             else "not-a-number,x,1,\\x00\n")
            chunks = [l.encode() for l in lines]
        return ids, b"".join(copy_data(c) for c in chunks)

    def copy_in_actions(self):
        fmt = self.rng.choice(["text", "csv", "binary"])
        r = self.rng.random()
        bad, fail = r < 0.15, 0.15 <= r < 0.25
        ids, payload = self.copy_rows(fmt, bad)
        opts = {"text": "", "csv": " with (format csv)", "binary": " with (format binary)"}[fmt]
        sql = "copy %s(id, v, n, b) from stdin%s" % (self.table, opts)
        end = copy_fail("client changed its mind") if fail else COPY_DONE
        if self.rng.random() < 0.5:
            return [Action(Q(sql), copy=payload + end, copy_ids=tuple(ids))], fmt
        pre_sync = self.rng.random() < 0.5      # a Sync before the data is ignored by the backend
        data = P("", sql) + B() + E() + (SYNC if pre_sync else FLUSH)
        return [Action(data, copy=payload + end + SYNC, copy_ids=tuple(ids),
                       on_error=None if pre_sync else SYNC)], fmt + " extended"

    def op_copy_in(self):
        acts, how = self.copy_in_actions()
        return Op("copy in (%s)" % how, acts)

    def copy_out_actions(self):
        fmt = self.rng.choice(["", " with (format csv, header)", " with (format binary)"])
        src = self.rng.choice(["(select * from %s order by id)" % self.table, "(select id, v from %s order by id)" % self.table,
                               "(select g, g * 2 from generate_series(1, 50) g)"])
        sql = "copy %s to stdout%s" % (src, fmt)
        if self.rng.random() < 0.5:
            return [Action(Q(sql))]
        return [Action(P("", sql) + B() + E() + SYNC)]

    def op_copy_out(self):
        return Op("copy out", self.copy_out_actions())

    def sleep_cancel_action(self):
        sql = "do $$ begin raise notice 'sleeping'; perform pg_sleep(5); end $$"
        if self.rng.random() < 0.5:
            return Action(Q(sql), cancel=True, timed=False)
        return Action(P("", sql) + B() + E() + SYNC, cancel=True, timed=False)

    def op_cancel(self):
        return Op("cancel pg_sleep", [self.sleep_cancel_action()])

    def query_timeout_action(self):
        """A statement longer than the torture's query_timeout: pglease cancels it itself (the
        mirror is cancelled by the driver at its NOTICE); both must answer 57014 alike."""
        sql = "do $$ begin raise notice 'sleeping'; perform pg_sleep(60); end $$"
        if self.rng.random() < 0.5:
            return Action(Q(sql), query_timeout=True, timed=False)
        return Action(P("", sql) + B() + E() + SYNC, query_timeout=True, timed=False)

    def op_query_timeout(self):
        if self.rng.random() < 0.5:
            return Op("query_timeout", [self.query_timeout_action(), Action(Q(self.select_sql()))])
        # inside a transaction block: failed (25P02) until the ROLLBACK, as PostgreSQL leaves it
        return Op("query_timeout (in a transaction)",
                  [Action(Q("begin")), Action(Q(self.insert_sql())), self.query_timeout_action(),
                   Action(Q(self.select_sql())), Action(Q("rollback")), Action(Q(self.select_sql()))])

    def op_stall(self):
        """The last op: the client stops in the middle of a message while holding a backend."""
        r = self.rng.random()
        if r < 0.5:
            q = Q(self.insert_sql())
            return Op("stalled mid-message", [Action(q[:self.rng.randint(1, len(q) - 1)], stall=True)])
        ids, payload = self.copy_rows("text")
        acts = [Action(Q("begin")), Action(Q(self.insert_sql())),
                Action(Q("copy %s(id, v, n, b) from stdin" % self.table), nz=0, until=b"G")]
        if r < 0.75:
            acts.append(Action(payload[:len(payload) // 2 + 1], stall=True))
            return Op("stalled mid-copy", acts)
        acts.append(Action(payload, stall=True))       # whole CopyData messages, no CopyDone
        return Op("stalled inside copy", acts)

    def op_sleep(self):
        return Op("short sleep", [Action(Q("select pg_sleep(%.2f)" % self.rng.choice([0.01, 0.05, 0.1])), timed=False)])

    def op_empty(self):
        return Op("empty query", [Action(Q(self.rng.choice(["", ";", " -- nothing"])))])

    # -- explicit transactions
    def tx_inner(self):
        r = self.rng.random()
        if r < 0.25:
            return [Action(Q(self.insert_sql()))]
        if r < 0.35:
            sql, types = client_texts(self.table)[0]
            return [Action(P("", sql) + self.bind_exec("", sql, types) + SYNC)]
        if r < 0.5:
            return [Action(Q(self.select_sql()))]
        if r < 0.56:
            return [Action(Q(self.update_sql()))]
        if r < 0.6:
            return [Action(Q(self.delete_sql()))]
        if r < 0.66:
            return [Action(Q(self.failing_sql()))]
        if r < 0.7:
            return [Action(Q("savepoint sp")), Action(Q(self.insert_sql())),
                    Action(Q(self.rng.choice(["rollback to savepoint sp", "release sp", "rollback to sp"])))]
        if r < 0.74:
            acts, _ = self.copy_in_actions()
            return acts
        if r < 0.77:
            return self.copy_out_actions()
        if r < 0.8 and "cancel" not in self.skip:
            return [self.sleep_cancel_action()]
        if r < 0.84:
            return [Action(Q("select pg_advisory_xact_lock(%d)" % (self.lock_base + 50)))]
        if r < 0.88:
            return [Action(Q("set local %s" % self.rng.choice(["TimeZone = 'Asia/Kolkata'", "DateStyle = 'SQL, DMY'",
                                                                 "work_mem = '3MB'", "IntervalStyle = iso_8601"]))),
                    Action(Q(self.rng.choice(VALUE_EXPRS[4:8] + VALUE_EXPRS[11:14])))]
        if r < 0.92:
            return [Action(Q("notify %s, 'in tx %d'" % (self.channel, self.rng.randint(0, 9))))]
        if r < 0.96:
            n = self.rng.randint(2, 6)
            return [Action(Q("declare c1 cursor for select g from generate_series(1, %d) g" % n)),
                    Action(Q("fetch %d from c1" % self.rng.randint(1, 3))), Action(Q("fetch all from c1")),
                    Action(Q("close c1"))]
        return [Action(Q(self.rng.choice(["select 1; select 2", "begin", "show transaction_isolation"])))]

    def op_transaction(self):
        acts = [Action(Q(self.rng.choice(["begin", "start transaction", "begin isolation level repeatable read"])))]
        for _ in range(self.rng.randint(1, 4)):
            acts += self.tx_inner()
        r = self.rng.random()
        end = "commit" if r < 0.6 else "rollback" if r < 0.85 else "end"
        if self.rng.random() < 0.2:
            acts.append(Action(Q(self.failing_sql())))
        acts.append(Action(Q(end)))
        return Op("transaction (%s)" % end, acts)

    def op_kill(self):
        """The last op: the client goes away mid-transaction, without Terminate."""
        acts = [Action(Q("begin")), Action(Q(self.insert_sql()))]
        r = self.rng.random()
        if r < 0.3:
            how = "idle in transaction"
        elif r < 0.5:
            sql, types = client_texts(self.table)[0]
            acts.append(Action(P("", sql) + self.bind_exec("", sql, types), nz=0))        # no Sync
            how = "mid-pipeline"
        elif r < 0.7:
            acts.append(Action(Q("select pg_sleep(%s)" % self.rng.choice(["0.3", "2"])), nz=0, timed=False))
            how = "while a query runs"
        elif r < 0.85:
            ids, payload = self.copy_rows("text")
            acts.append(Action(Q("copy %s(id, v, n, b) from stdin" % self.table), nz=0, until=b"G"))
            acts.append(Action(payload[:len(payload) // 2 + 1], nz=0))
            how = "mid-copy"
        else:
            acts = [Action(Q(self.insert_sql())), Action(Q("select 1"), nz=0)]
            how = "with a query in flight, no transaction"
        acts.append(Action(kill=True))
        return Op("killed %s" % how, acts)

    # -- session state: pin and release
    def op_state(self):
        """Create session state (pins in transaction mode) or release some."""
        # a SET pins until the client leaves (README: pins that cannot be checked), DISCARD ALL or not
        held = sorted(x for x in self.state if not x.startswith("setting:"))
        if held and self.rng.random() < 0.6:
            what = self.rng.choice(held)
            kind, arg = what.split(":", 1)
            if "discard" not in self.skip and self.rng.random() < 0.15:
                sql = "discard all"
                self.state = {x for x in self.state if x.startswith("setting:")}
                self.names.clear()
            elif kind == "lock":
                if self.rng.random() < 0.3:
                    sql = "select pg_advisory_unlock_all()"
                    self.state -= {s for s in self.state if s.startswith("lock:")}
                else:
                    # advisory locks count: each lock taken needs its own unlock, of its own mode
                    key, mode, count = arg.split(":")
                    sql = "select pg_advisory_unlock%s(%s)" % ("_shared" if mode == "shared" else "", key)
                    self.state.discard(what)
                    if int(count) > 1:
                        self.state.add("lock:%s:%s:%d" % (key, mode, int(count) - 1))
            elif kind == "listen":
                sql = self.rng.choice(["unlisten %s" % arg, "unlisten *"])
                self.state.discard(what)
            else:
                sql = self.rng.choice(["drop table %s" % arg, "discard temp"])
                if sql == "discard temp":
                    self.state -= {s for s in self.state if s.startswith("temp:")}
                else:
                    self.state.discard(what)
            return Op("release %s" % kind, [Action(Q(sql))], frozenset(self.state))
        r = self.rng.random()
        if r < 0.35:
            key = self.lock_base + self.rng.randint(0, 3)
            fn = self.rng.choice(["pg_advisory_lock", "pg_try_advisory_lock", "pg_advisory_lock_shared"])
            self.take_lock(key, "shared" if fn.endswith("shared") else "exclusive")
            return Op("advisory lock", [Action(Q("select %s(%d)" % (fn, key)))], frozenset(self.state))
        if r < 0.6:
            self.state.add("listen:%s" % self.channel)
            acts = [Action(Q("listen %s" % self.channel))]
            acts.append(Action(Q("notify %s, 'hello %d'" % (self.channel, self.rng.randint(0, 99)))))
            if self.rng.random() < 0.5:
                acts.append(Action(Q("select pg_notify('%s', 'via function')" % self.channel)))
            return Op("listen", acts, frozenset(self.state))
        if r < 0.85:
            self.temps += 1
            name = "tmp_%d_%d" % (self.ci, self.temps)
            self.state.add("temp:%s" % name)
            acts = [Action(Q("create temp table %s (x int, y text)" % name)),
                    Action(Q("insert into %s select g, 'v' || g from generate_series(1, 5) g" % name)),
                    Action(Q("select count(*), max(y) from %s" % name))]
            return Op("temp table", acts, frozenset(self.state))
        if r < 0.93:
            self.state.add("setting:search_path")
            return Op("set search_path", [Action(Q("set search_path = %s" % self.rng.choice(SEARCH_PATHS))),
                                          Action(Q("show search_path"))], frozenset(self.state))
        # a session lock taken inside a transaction survives its rollback
        key = self.lock_base + 10
        self.take_lock(key, "exclusive")
        acts = [Action(Q("begin")), Action(Q("select pg_advisory_lock(%d)" % key)), Action(Q("rollback")),
                Action(Q("select count(*) from pg_locks where locktype = 'advisory' and objid = %d "
                         "and pid = pg_backend_pid()" % key))]
        return Op("advisory lock in a rolled back transaction", acts, frozenset(self.state))

    # -- settings
    def op_settings(self):
        r = self.rng.random()
        if r < 0.2:
            sql = self.rng.choice(["set TimeZone = '%s'" % self.rng.choice(TIMEZONES),
                                   "set time zone '%s'" % self.rng.choice(TIMEZONES),
                                   "select set_config('TimeZone', '%s', false)" % self.rng.choice(TIMEZONES)])
        elif r < 0.35:
            sql = "set DateStyle = '%s'" % self.rng.choice(DATESTYLES)
        elif r < 0.45:
            sql = "set IntervalStyle = %s" % self.rng.choice(INTERVALSTYLES)
        elif r < 0.55:
            sql = "set application_name = 'app_%d_%d'" % (self.ci, self.rng.randint(0, 9))
        elif r < 0.75 and "reset" not in self.skip:
            sql = "reset %s" % self.rng.choice(["TimeZone", "DateStyle", "IntervalStyle", "application_name", "all"])
        elif r < 0.8 and "reset" not in self.skip:
            sql = "set TimeZone to default"
        else:
            sql = "set %s" % self.rng.choice(["DateStyle = 'ISO, MDY'", "TimeZone = 'UTC'", "IntervalStyle = postgres"])
        acts = [Action(Q(sql))]
        if self.rng.random() < 0.3:
            acts = [Action(Q(sql + "; " + self.rng.choice(VALUE_EXPRS[4:8])))]
        acts.append(self.show_settings())
        return Op("settings", acts)

    def show_settings(self):
        return Action(Q("select current_setting('TimeZone'), current_setting('DateStyle'), "
                        "current_setting('IntervalStyle'), current_setting('application_name'), "
                        "current_setting('search_path'), current_setting('work_mem'), "
                        "'2024-03-05 13:14:15+00'::timestamptz, date '2024-03-05', interval '1 day 02:03:04'"))

    def op_discard(self):
        self.state = {x for x in self.state if x.startswith("setting:")}
        self.names.clear()
        return Op("discard all", [Action(Q("discard all")), self.show_settings()], frozenset(self.state))

    # -- the program
    MENU = [
        ("simple", 10), ("multi", 6), ("unnamed", 8), ("named", 10), ("pipeline", 6), ("portal", 4),
        ("copy_in", 4), ("copy_out", 3), ("cancel", 2), ("sleep", 1), ("empty", 1), ("transaction", 12),
        ("state", 6), ("settings", 6), ("discard", 1), ("query_timeout", 1),
    ]

    def startup(self, database):
        params = {"user": "postgres", "database": database}
        opts = []
        if self.rng.random() < 0.5:
            params["application_name"] = "tort_%d_%d" % (self.ci, self.j)
        if "startup" in self.skip:
            return params
        if self.rng.random() < 0.3:
            params["TimeZone"] = self.rng.choice(TIMEZONES)
        if self.rng.random() < 0.2:
            params["DateStyle"] = self.rng.choice(DATESTYLES)
        if self.rng.random() < 0.3:
            opts.append("-c TimeZone=%s" % self.rng.choice(TIMEZONES))
        if self.rng.random() < 0.25:
            opts.append("-c DateStyle=%s" % self.rng.choice(DATESTYLES).replace(" ", ""))
        if self.rng.random() < 0.2:
            opts.append("-c IntervalStyle=%s" % self.rng.choice(INTERVALSTYLES))
        if self.rng.random() < 0.15:
            opts.append("-c work_mem=%dMB" % self.rng.randint(2, 9))
        if self.rng.random() < 0.1:
            opts.append("-c search_path=alt,public")
        if opts:
            params["options"] = " ".join(opts)
        return params

    def session(self, database, nops):
        s = Session(self.kind, self.startup(database))
        kinds = [k for k, _ in self.MENU if k not in self.skip]
        weights = [w for k, w in self.MENU if k not in self.skip]
        for _ in range(nops):
            k = self.rng.choices(kinds, weights)[0]
            op = getattr(self, "op_" + k)()
            if k not in ("state", "discard"):
                op.state = frozenset(self.state)
            s.ops.append(op)
        if "stall" not in self.skip and self.rng.random() < 0.05:
            op = self.op_stall()
            op.state = frozenset(self.state)
            s.ops.append(op)
            s.killed = True
        elif "kill" not in self.skip and self.rng.random() < 0.12:
            op = self.op_kill()
            op.state = frozenset(self.state)
            s.ops.append(op)
            s.killed = True
        return s

    # -- the grouped client: pgbench -j 1's pattern
    def grouped(self, database):
        """Two connections in one task: A holds a transaction open while B prepares (Parse + Sync) a
        statement A already prepared, and waits for B's reply before going on with A."""
        s = Session("grouped", {"user": "postgres", "database": database}, nconns=2)
        sql, types = self.rng.choice([client_texts(self.table)[0], SHARED_TEXTS[1], SHARED_TEXTS[0]])
        s.ops.append(Op("A prepares", [Action(P("gs", sql) + SYNC, conn=0)]))
        for r in range(1, self.rng.randint(2, 5)):
            acts = [Action(Q("begin"), conn=0), Action(Q(self.insert_sql()), conn=0),
                    Action(self.bind_exec("gs", sql, types) + SYNC, conn=0),
                    Action(P("gs%d" % r, sql) + SYNC, conn=1),                   # B, while A holds its backend
                    Action(Q(self.rng.choice(["commit", "rollback"])), conn=0),
                    Action(self.bind_exec("gs%d" % r, sql, types) + C(b"S", "gs%d" % r) + SYNC, conn=1)]
            s.ops.append(Op("grouped round %d" % r, acts))
        return s


def make_session(seed, ci, j, kind, skip=()):
    g = Gen(seed, ci, j, kind, skip)
    if kind == "grouped":
        return g.grouped("tx")
    if kind == "session":
        return g.session("sess", g.rng.randint(4, 12))
    return g.session("tx", g.rng.randint(5, 25))
