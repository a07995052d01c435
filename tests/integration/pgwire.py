"""Raw PostgreSQL v3 wire protocol over a Unix socket, for the protocol-level tests.

Only what the tests need: build startup/SSL/GSSENC/cancel packets and a few
frontend messages, read backend messages, parse ErrorResponse and friends.
"""
import base64
import hashlib
import hmac
import os
import socket
import struct
import time

PROTOCOL_3_0 = 3 << 16            # 196608
PROTOCOL_2_0 = 2 << 16            # 0x00020000
SSL_REQUEST_CODE = 80877103
GSSENC_REQUEST_CODE = 80877104
CANCEL_REQUEST_CODE = 80877102


# ---------------------------------------------------------------- packets
def startup_packet(params, version=PROTOCOL_3_0):
    body = struct.pack("!I", version)
    for k, v in params.items():
        body += k.encode() + b"\0" + v.encode() + b"\0"
    body += b"\0"
    return struct.pack("!I", len(body) + 4) + body


def ssl_request():
    return struct.pack("!II", 8, SSL_REQUEST_CODE)


def gssenc_request():
    return struct.pack("!II", 8, GSSENC_REQUEST_CODE)


def cancel_request(pid, key):
    return struct.pack("!IIII", 16, CANCEL_REQUEST_CODE, pid & 0xFFFFFFFF, key & 0xFFFFFFFF)


def message(mtype, body=b""):
    return mtype + struct.pack("!I", len(body) + 4) + body


def query_msg(sql):
    return message(b"Q", sql.encode() + b"\0")


def terminate_msg():
    return message(b"X")


def parse_msg(sql, name=""):
    return message(b"P", name.encode() + b"\0" + sql.encode() + b"\0" + struct.pack("!H", 0))


def bind_msg(portal="", stmt=""):
    return message(b"B", portal.encode() + b"\0" + stmt.encode() + b"\0" + struct.pack("!HHH", 0, 0, 0))


def execute_msg(portal="", max_rows=0):
    return message(b"E", portal.encode() + b"\0" + struct.pack("!I", max_rows))


def sync_msg():
    return message(b"S")


def copy_data_msg(data):
    return message(b"d", data)


# ---------------------------------------------------------------- parsing
def parse_fields(body):
    """ErrorResponse / NoticeResponse body -> {field-code-char: value}."""
    fields = {}
    pos = 0
    while pos < len(body) and body[pos] != 0:
        code = chr(body[pos])
        end = body.index(b"\0", pos + 1)
        fields[code] = body[pos + 1:end].decode("utf-8", "replace")
        pos = end + 1
    return fields


def parse_parameter_status(body):
    name, value, _ = body.split(b"\0", 2)
    return name.decode(), value.decode()


def parse_backend_key_data(body):
    return struct.unpack("!II", body[:8])


def parse_data_row(body):
    (n,) = struct.unpack("!H", body[:2])
    pos = 2
    cols = []
    for _ in range(n):
        (ln,) = struct.unpack("!i", body[pos:pos + 4])
        pos += 4
        if ln < 0:
            cols.append(None)
        else:
            cols.append(body[pos:pos + ln])
            pos += ln
    return cols


def parse_negotiate_protocol_version(body):
    newest, n = struct.unpack("!II", body[:8])
    names = body[8:].split(b"\0")[:n]
    return newest, [x.decode() for x in names]


class ProtocolError(AssertionError):
    pass


class Wire:
    """A raw client connection to a Unix socket path, or over TCP to a (host, port) tuple."""

    def __init__(self, path, timeout=10.0):
        self.path = path
        family = socket.AF_UNIX if isinstance(path, str) else socket.AF_INET6 if ":" in path[0] else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""
        self.params = {}
        self.key = None
        self.status = None

    # -- low level
    def send(self, data):
        self.sock.sendall(data)

    def try_send(self, data):
        """Send, tolerating the peer having closed already (it may refuse early)."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError):
            return False

    def _fill(self, deadline):
        while True:
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise socket.timeout("timed out waiting for data from %s" % self.path)
            if remaining is not None:
                self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                raise EOFError("connection closed by server (%d buffered bytes)" % len(self.buf))
            self.buf += chunk
            return

    def recv_exact(self, n, timeout=10.0):
        deadline = time.monotonic() + timeout
        while len(self.buf) < n:
            self._fill(deadline)
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_byte(self, timeout=10.0):
        return self.recv_exact(1, timeout)

    def read_message(self, timeout=10.0):
        """(type byte, body). Raises EOFError on close, socket.timeout on timeout."""
        deadline = time.monotonic() + timeout
        while len(self.buf) < 5:
            self._fill(deadline)
        mtype = self.buf[:1]
        (ln,) = struct.unpack("!I", self.buf[1:5])
        if ln < 4 or ln > 64 * 1024 * 1024:
            raise ProtocolError("bad message length %d for type %r" % (ln, mtype))
        while len(self.buf) < 1 + ln:
            self._fill(deadline)
        body = self.buf[5:1 + ln]
        self.buf = self.buf[1 + ln:]
        return mtype, body

    def wait_closed(self, timeout=10.0):
        """True if the server closes the socket within timeout (any data is discarded)."""
        deadline = time.monotonic() + timeout
        self.buf = b""
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            self.sock.settimeout(remaining)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return True
            except socket.timeout:
                return False
            if not chunk:
                return True

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    # -- higher level
    def read_until(self, types, timeout=10.0):
        """Read messages until one whose type is in `types` (or an ErrorResponse). Returns the list."""
        deadline = time.monotonic() + timeout
        msgs = []
        while True:
            mtype, body = self.read_message(max(0.0, deadline - time.monotonic()))
            msgs.append((mtype, body))
            self._note(mtype, body)
            if mtype in types or mtype == b"E":
                return msgs

    def _note(self, mtype, body):
        if mtype == b"S":
            k, v = parse_parameter_status(body)
            self.params[k] = v
        elif mtype == b"K":
            self.key = parse_backend_key_data(body)
        elif mtype == b"Z":
            self.status = body[:1]

    def startup(self, params, version=PROTOCOL_3_0, timeout=10.0):
        """Send a startup packet; read to ReadyForQuery or ErrorResponse.
        Returns the list of messages. Raises ProtocolError if an ErrorResponse came."""
        self.send(startup_packet(params, version))
        msgs = self.read_until((b"Z",), timeout)
        if msgs[-1][0] == b"E":
            raise ProtocolError("startup failed: %r" % parse_fields(msgs[-1][1]))
        if msgs[0][0] not in (b"R", b"v"):
            raise ProtocolError("unexpected first startup reply %r" % (msgs[0],))
        return msgs

    def query(self, sql, timeout=30.0):
        """Simple query; returns dict(rows=[[bytes|None]...], error=fields|None, status=b'I'|b'T'|b'E', msgs=[...])."""
        self.send(query_msg(sql))
        return self.collect_until_ready(timeout)

    def collect_until_ready(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        rows, error, msgs = [], None, []
        while True:
            mtype, body = self.read_message(max(0.0, deadline - time.monotonic()))
            msgs.append((mtype, body))
            self._note(mtype, body)
            if mtype == b"D":
                rows.append(parse_data_row(body))
            elif mtype == b"E":
                error = parse_fields(body)
                if error.get("S") in ("FATAL", "PANIC"):
                    return dict(rows=rows, error=error, status=None, msgs=msgs)
            elif mtype == b"Z":
                return dict(rows=rows, error=error, status=body[:1], msgs=msgs)

    def scalar(self, sql, timeout=30.0):
        r = self.query(sql, timeout)
        if r["error"]:
            raise ProtocolError("query %r failed: %r" % (sql, r["error"]))
        v = r["rows"][0][0]
        return None if v is None else v.decode("utf-8", "replace")

    def terminate(self):
        self.try_send(terminate_msg())
        self.close()


def read_fatal(w, timeout=10.0):
    """Read messages until an ErrorResponse; return its fields. Fails on EOF before it."""
    deadline = time.monotonic() + timeout
    seen = []
    while True:
        try:
            mtype, body = w.read_message(max(0.0, deadline - time.monotonic()))
        except EOFError:
            raise ProtocolError("connection closed without an ErrorResponse (saw %r)" % [m[0] for m in seen])
        seen.append((mtype, body))
        if mtype == b"E":
            return parse_fields(body)


class ScramClient:
    """The client side of SCRAM-SHA-256 without channel binding."""

    def __init__(self, user, password):
        self.password = password
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.first_bare = "n=,r=" + self.nonce

    def first(self):
        return ("n,," + self.first_bare).encode()

    def final(self, server_first):
        attrs = dict(kv.split("=", 1) for kv in server_first.decode().split(","))
        assert attrs["r"].startswith(self.nonce)
        salt, iters = base64.b64decode(attrs["s"]), int(attrs["i"])
        salted = hashlib.pbkdf2_hmac("sha256", self.password.encode(), salt, iters)
        client_key = hmac.new(salted, b"Client Key", "sha256").digest()
        stored = hashlib.sha256(client_key).digest()
        without_proof = "c=biws,r=" + attrs["r"]
        auth_msg = ",".join([self.first_bare, server_first.decode(), without_proof]).encode()
        sig = hmac.new(stored, auth_msg, "sha256").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        server_key = hmac.new(salted, b"Server Key", "sha256").digest()
        self.server_sig = hmac.new(server_key, auth_msg, "sha256").digest()
        return (without_proof + ",p=" + base64.b64encode(proof).decode()).encode()
