#!/usr/bin/python3
"""A 1 GiB result through pglease: pglease's memory must stay flat.

usage: large_result.py [PGLEASE_BIN] [GIB]
Starts a private PostgreSQL and a pglease (transaction mode), then a raw client
asks for GIB GiB of rows (8 KiB each). The client first reads nothing for 3 s
(the result is pending: pglease must stop reading the backend), then reads and
discards everything as fast as it can. pglease's VmRSS and RssAnon are sampled
every 100 ms: before the query, while pending, while streaming, and after.
Prints one table; exits 1 if RSS grew by more than LIMIT_KB or the result was short.
"""
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))

import harness  # noqa: E402
import pgwire   # noqa: E402

ROW = 8192
LIMIT_KB = 32 * 1024


def status_kb(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon"):
                out[k] = int(v.split()[0])
    return out


class Sampler(threading.Thread):
    def __init__(self, pid):
        super().__init__(daemon=True)
        self.pid, self.phase, self.peaks, self.stop = pid, "before", {}, False

    def run(self):
        while not self.stop:
            s = status_kb(self.pid)
            p = self.peaks.setdefault(self.phase, {"VmRSS": 0, "RssAnon": 0})
            for k in p:
                p[k] = max(p[k], s[k])
            time.sleep(0.1)


def stream(w):
    got = 0
    tail = b""
    buf = bytearray(1 << 20)
    view = memoryview(buf)
    w.sock.settimeout(120)
    while True:
        n = w.sock.recv_into(view)
        if n == 0:
            raise SystemExit("pglease closed the connection after %d bytes" % got)
        got += n
        tail = (tail + bytes(view[max(0, n - 6):n]))[-6:]
        if tail == pgwire.message(b"Z", b"I"):
            return got


def main():
    binary = os.path.abspath(sys.argv[1]) if len(sys.argv) > 1 else os.path.join(harness.REPO, "pglease")
    gib = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
    rows = int(gib * (1 << 30) / ROW)
    cluster = harness.Cluster()
    d = None
    try:
        cluster.start()
        with cluster.connect("postgres") as c:
            c.execute("create database app")
        d = harness.Daemon(binary, cluster, {"default_pool_size": "1", "log_level": "warning"}, None)
        d.start()
        w = pgwire.Wire(d.socket_path, timeout=30)
        w.startup({"user": "postgres", "database": "app"})
        sampler = Sampler(d.pid)
        sampler.start()
        time.sleep(1)
        sampler.phase = "pending 3 s"
        t0 = time.monotonic()
        w.send(pgwire.query_msg("select repeat('x', %d) from generate_series(1, %d)" % (ROW, rows)))
        time.sleep(3)
        sampler.phase = "streaming"
        got = stream(w)
        secs = time.monotonic() - t0 - 3
        sampler.phase = "after"
        time.sleep(1)
        sampler.stop = True
        sampler.join()
        w.terminate()
    finally:
        if d:
            d.stop()
            d.cleanup()
        cluster.stop()
    base = sampler.peaks["before"]
    print("large_result: %.2f GiB result (%d rows of %d bytes), %d bytes received in %.1f s (%.0f MB/s)"
          % (gib, rows, ROW, got, secs, got / secs / 1e6))
    print("%-14s %12s %12s" % ("phase (peak)", "VmRSS kB", "RssAnon kB"))
    for ph in ("before", "pending 3 s", "streaming", "after"):
        p = sampler.peaks.get(ph, {})
        print("%-14s %12s %12s" % (ph, p.get("VmRSS", "-"), p.get("RssAnon", "-")))
    growth = max(p["VmRSS"] for p in sampler.peaks.values()) - base["VmRSS"]
    print("peak VmRSS growth: %d kB (limit %d kB)" % (growth, LIMIT_KB))
    ok = got >= rows * ROW and growth <= LIMIT_KB
    print("large_result:", "PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
