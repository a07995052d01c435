"""A small asyncio PostgreSQL v3 client, message level, for the torture test.

Frontend messages are built as bytes (the builders below, plus pgwire's from
tests/integration); a Conn sends a batch and reads backend messages until the
expected number of ReadyForQuery, answering CopyInResponse with the payload it
was given and optionally sending a CancelRequest when a NoticeResponse
arrives. Replies are normalised (normalize()) so that a reply through pglease
and the same reply from PostgreSQL compare equal when they mean the same.
"""
import asyncio
import os
import re
import struct
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import pgwire  # noqa: E402  (tests/integration/pgwire.py)
from pgwire import message, parse_data_row, parse_fields  # noqa: E402,F401

SYNC = message(b"S")
FLUSH = message(b"H")
COPY_DONE = message(b"c")


# ---------------------------------------------------------------- frontend messages
def Q(sql):
    return message(b"Q", sql.encode() + b"\0")


def P(name, sql, types=()):
    return message(b"P", name.encode() + b"\0" + sql.encode() + b"\0" + struct.pack("!H", len(types)) +
                   b"".join(struct.pack("!I", t) for t in types))


def B(stmt="", params=(), param_formats=(), result_formats=(), portal=""):
    """params: bytes or None each, already in their format (text or binary)."""
    body = portal.encode() + b"\0" + stmt.encode() + b"\0"
    body += struct.pack("!H", len(param_formats)) + b"".join(struct.pack("!H", f) for f in param_formats)
    body += struct.pack("!H", len(params))
    for p in params:
        body += struct.pack("!i", -1) if p is None else struct.pack("!I", len(p)) + p
    body += struct.pack("!H", len(result_formats)) + b"".join(struct.pack("!H", f) for f in result_formats)
    return message(b"B", body)


def E(portal="", max_rows=0):
    return message(b"E", portal.encode() + b"\0" + struct.pack("!I", max_rows))


def D(kind, name=""):
    return message(b"D", kind + name.encode() + b"\0")


def C(kind, name=""):
    return message(b"C", kind + name.encode() + b"\0")


def copy_data(data):
    return message(b"d", data)


def copy_fail(reason):
    return message(b"f", reason.encode() + b"\0")


# ---------------------------------------------------------------- describing frontend bytes
def split_messages(data):
    out, i = [], 0
    while i + 5 <= len(data):
        (ln,) = struct.unpack("!I", data[i + 1:i + 5])
        out.append((data[i:i + 1], data[i + 5:i + 1 + ln]))
        i += 1 + ln
    return out


def _cstr(body, pos):
    end = body.index(b"\0", pos)
    return body[pos:end].decode("utf-8", "replace"), end + 1


def describe_frontend(data, limit=400):
    """Frontend bytes as a short readable list, for failure reports."""
    parts = []
    for t, body in split_messages(data):
        try:
            if t == b"Q":
                parts.append("Query %r" % _cstr(body, 0)[0][:limit])
            elif t == b"P":
                name, pos = _cstr(body, 0)
                sql, pos = _cstr(body, pos)
                parts.append("Parse %r %r" % (name, sql[:limit]))
            elif t == b"B":
                portal, pos = _cstr(body, 0)
                stmt, pos = _cstr(body, pos)
                (nf,) = struct.unpack("!H", body[pos:pos + 2])
                fmts = struct.unpack("!%dH" % nf, body[pos + 2:pos + 2 + 2 * nf])
                pos += 2 + 2 * nf
                (np_,) = struct.unpack("!H", body[pos:pos + 2])
                pos += 2
                params = []
                for _ in range(np_):
                    (ln,) = struct.unpack("!i", body[pos:pos + 4])
                    pos += 4
                    params.append(None if ln < 0 else body[pos:pos + ln])
                    pos += max(ln, 0)
                (nr,) = struct.unpack("!H", body[pos:pos + 2])
                rf = struct.unpack("!%dH" % nr, body[pos + 2:pos + 2 + 2 * nr])
                parts.append("Bind portal=%r stmt=%r pfmt=%s params=%r rfmt=%s" % (portal, stmt, list(fmts), params, list(rf)))
            elif t == b"E":
                portal, pos = _cstr(body, 0)
                parts.append("Execute %r max_rows=%d" % (portal, struct.unpack("!I", body[pos:pos + 4])[0]))
            elif t in (b"D", b"C"):
                parts.append("%s %s %r" % ("Describe" if t == b"D" else "Close", chr(body[0]), _cstr(body, 1)[0]))
            elif t == b"S":
                parts.append("Sync")
            elif t == b"H":
                parts.append("Flush")
            elif t == b"d":
                parts.append("CopyData %r" % body[:60])
            elif t == b"c":
                parts.append("CopyDone")
            elif t == b"f":
                parts.append("CopyFail")
            else:
                parts.append("%r %r" % (t, body[:60]))
        except (ValueError, struct.error):
            parts.append("%r (unparsed) %r" % (t, body[:60]))
    return parts


# ---------------------------------------------------------------- normalising replies
_STMT_NAME = re.compile(r'prepared statement "[^"]*"')


def _norm_error(t, body):
    f = parse_fields(body)
    msg = f.get("M", "")
    if f.get("C") in ("26000", "42P05", "08P01"):
        # pglease's server-side names (pgl_N) may stand where the client's name was
        msg = _STMT_NAME.sub('prepared statement "?"', msg)
    return (t.decode(), f.get("S", ""), f.get("C", ""), msg)


def _norm_row_description(body):
    (n,) = struct.unpack("!H", body[:2])
    pos, cols = 2, []
    for _ in range(n):
        end = body.index(b"\0", pos)
        name = body[pos:end].decode("utf-8", "replace")
        pos = end + 1
        _table_oid, attnum, type_oid, typlen, typmod, fmt = struct.unpack("!IhIhih", body[pos:pos + 18])
        pos += 18
        # table OIDs differ between the pooled and the mirror database
        cols.append((name, attnum, type_oid, typlen, typmod, fmt))
    return ("T", tuple(cols))


def normalize_one(t, body):
    if t == b"K":
        return ("K",)
    if t == b"A":                       # the notifying backend's PID differs: left out
        chan, rest = body[4:].split(b"\0", 1)
        payload = rest.split(b"\0", 1)[0]
        return ("A", chan.decode(), payload.decode())
    if t in (b"E", b"N"):
        return _norm_error(t, body)
    if t == b"S":
        name, value = pgwire.parse_parameter_status(body)
        return ("S", name, value)
    if t == b"T":
        return _norm_row_description(body)
    if t == b"D":
        return ("D", tuple(parse_data_row(body)))
    if t == b"C":
        return ("C", body.rstrip(b"\0").decode())
    if t == b"Z":
        return ("Z", body[:1].decode())
    if t in (b"EOF", b"TIMEOUT"):
        return (t.decode(), body.decode())
    return (t.decode("latin-1"), body)


def normalize(msgs):
    """Normalised replies. The order of consecutive ParameterStatus messages carries no meaning (the
    protocol does not define it), so each run of them is sorted."""
    out, run = [], []
    for t, b in msgs:
        m = normalize_one(t, b)
        if m[0] == "S":
            run.append(m)
            continue
        out += sorted(run) + [m]
        run = []
    return out + sorted(run)


def normalize_login(msgs):
    """Login replies: ParameterStatus order is not part of the protocol, so they are sorted."""
    out, params = [], []
    for t, b in msgs:
        if t == b"S":
            params.append(normalize_one(t, b))
        else:
            out.append(normalize_one(t, b))
    return out + sorted(params)


# ---------------------------------------------------------------- the connection
class LoginFailed(Exception):
    def __init__(self, msgs):
        self.msgs = msgs
        super().__init__("login failed: %r" % (normalize(msgs),))


class Conn:
    """One raw client connection to a Unix socket (pglease's or PostgreSQL's)."""

    def __init__(self, path, read_timeout=60.0):
        self.path = path
        self.read_timeout = read_timeout
        self.reader = self.writer = None
        self.key = None          # (pid, secret) from BackendKeyData
        self.params = {}
        self.status = None
        self.closed = False
        Conn.open_conns.add(self)

    open_conns = set()          # every Conn not yet closed, to close them all after a stuck run

    async def open(self, startup):
        self.reader, self.writer = await asyncio.open_unix_connection(self.path, limit=1 << 20)
        self.writer.write(pgwire.startup_packet(startup))
        msgs = []
        while True:
            t, body = await self.read_msg()
            msgs.append((t, body))
            if t in (b"EOF", b"TIMEOUT") or (t == b"E"):
                self.kill()
                raise LoginFailed(msgs)
            if t == b"Z":
                return msgs

    def _note(self, t, body):
        if t == b"S":
            k, v = pgwire.parse_parameter_status(body)
            self.params[k] = v
        elif t == b"K":
            self.key = pgwire.parse_backend_key_data(body)
        elif t == b"Z":
            self.status = body[:1]

    async def read_msg(self, timeout=None):
        """(type, body); (b"EOF", b"") when the peer closed, (b"TIMEOUT", b"") after timeout."""
        timeout = self.read_timeout if timeout is None else timeout
        try:
            head = await asyncio.wait_for(self.reader.readexactly(5), timeout)
            t = head[:1]
            (ln,) = struct.unpack("!I", head[1:5])
            body = await asyncio.wait_for(self.reader.readexactly(ln - 4), timeout)
        except (asyncio.IncompleteReadError, ConnectionError):
            self.closed = True
            return b"EOF", b""
        except asyncio.TimeoutError:
            return b"TIMEOUT", ("no reply in %.0f s" % timeout).encode()
        self._note(t, body)
        return t, body

    def write(self, data):
        if data and not self.closed:
            self.writer.write(data)

    async def exchange(self, data, nz, copy=None, on_notice=None, until=None, on_error=None):
        """Send data, read until nz ReadyForQuery (or a message of type `until`, or a FATAL, EOF or
        timeout). A CopyInResponse is answered with `copy`; on_notice(conn) is awaited on the
        first NoticeResponse (to send a cancel at a moment the query surely runs)."""
        self.write(data)
        msgs, seen_z = [], 0
        if nz == 0 and until is None:
            await self.drain()
            return msgs
        while True:
            t, body = await self.read_msg()
            msgs.append((t, body))
            if t in (b"EOF", b"TIMEOUT"):
                return msgs
            if t == b"G" and copy is not None:
                self.write(copy)
                on_error = None
            elif t == b"E" and on_error is not None:
                self.write(on_error)
                on_error = None
            elif t == b"N" and on_notice is not None:
                cb, on_notice = on_notice, None
                await cb(self)
            elif t == b"E" and parse_fields(body).get("S") in ("FATAL", "PANIC"):
                return msgs
            elif t == b"Z":
                seen_z += 1
                if seen_z >= nz and until is None:
                    return msgs
            if until is not None and t in (until, b"Z"):
                return msgs

    async def drain(self):
        try:
            await self.writer.drain()
        except ConnectionError:
            self.closed = True

    async def cancel(self):
        """Send a CancelRequest with this connection's key to the same socket."""
        pid, secret = self.key
        r, w = await asyncio.open_unix_connection(self.path)
        w.write(pgwire.cancel_request(pid, secret))
        await w.drain()
        try:
            await asyncio.wait_for(r.read(), 10)
        except (asyncio.TimeoutError, ConnectionError):
            pass
        w.close()

    def kill(self):
        """Close the socket without Terminate (bytes already written still go out)."""
        if self.writer is not None and not self.writer.is_closing():
            self.writer.close()
        self.closed = True
        Conn.open_conns.discard(self)

    async def terminate(self):
        if not self.closed:
            self.write(message(b"X"))
            await self.drain()
        self.kill()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        except (asyncio.TimeoutError, ConnectionError, AttributeError):
            pass

    async def simple(self, sql):
        """A simple query: ([column names], [rows as str]), or raises with the error fields."""
        msgs = await self.exchange(Q(sql), 1)
        cols, rows = [], []
        for t, body in msgs:
            if t == b"T":
                cols = [c[0] for c in _norm_row_description(body)[1]]
            elif t == b"D":
                rows.append([None if v is None else v.decode() for v in parse_data_row(body)])
            elif t == b"E" or t in (b"EOF", b"TIMEOUT"):
                raise RuntimeError("%s failed: %r" % (sql, normalize([(t, body)])))
        return cols, rows
