"""Prometheus metrics on metrics_listen (TCP and Unix socket), compared with SHOW STATS."""
import os
import re
import socket
import urllib.error
import urllib.request

import psycopg
import pytest

from harness import wait_for


def free_tcp_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def scrape(port, path="/metrics"):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path), timeout=10) as r:
        assert r.status == 200
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        return r.read().decode()


def sample(text, name, **labels):
    """The value of one series; labels must match exactly the ones given (others ignored)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        got = dict(re.findall(r'(\w+)="((?:[^"\\\\]|\\\\.)*)"', line.split("}")[0]))
        if all(got.get(k) == v for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError("no series %s%r in:\n%s" % (name, labels, text))


def show_stats(d):
    with psycopg.connect(d.dsn("pglease"), autocommit=True) as a:
        cur = a.execute("SHOW STATS")
        cols = [c.name for c in cur.description]
        return [dict(zip(cols, r)) for r in cur.fetchall() if r[0] == "app"][0]


def test_metrics_match_show_stats(pglease):
    port = free_tcp_port()
    d = pglease(metrics_listen="127.0.0.1:%d" % port)
    for i in range(3):
        assert d.psql("-c", "select %d" % i).returncode == 0
    # A pin, lifted when the probe after UNLISTEN finds nothing left (the client stays
    # connected until then: one that leaves during the probe is reset instead).
    with d.connect() as c:
        c.execute("LISTEN metrics_chan")
        c.execute("UNLISTEN *")
        wait_for(lambda: show_stats(d)["unpins"] == 1, what="the unpin counted")
    st = show_stats(d)
    assert (st["pins"], st["unpins"]) == (1, 1), st
    text = scrape(port)
    lab = dict(database="app", user="postgres")
    assert "# TYPE pglease_transactions_total counter" in text
    assert "# HELP pglease_transactions_total " in text
    assert sample(text, "pglease_transactions_total", **lab) == st["total_xact_count"]
    assert sample(text, "pglease_queries_total", **lab) == st["total_query_count"]
    assert sample(text, "pglease_received_bytes_total", **lab) == st["total_received"]
    assert sample(text, "pglease_sent_bytes_total", **lab) == st["total_sent"]
    assert sample(text, "pglease_exit_rollbacks_total", **lab) == st["exit_rollbacks"]
    assert sample(text, "pglease_pins_total", **lab) == st["pins"]
    assert sample(text, "pglease_unpins_total", **lab) == st["unpins"]
    assert sample(text, "pglease_lease_exits_total", reason="transaction_done", **lab) == st["exits_transaction_done"]
    assert sample(text, "pglease_servers", state="idle", **lab) >= 1
    # every counter family ends in _total
    for m in re.finditer(r"# TYPE (\S+) counter", text):
        assert m.group(1).endswith("_total"), m.group(1)


def test_metrics_unknown_path_is_404(pglease):
    port = free_tcp_port()
    pglease(metrics_listen="127.0.0.1:%d" % port)
    with pytest.raises(urllib.error.HTTPError) as e:
        scrape(port, "/nope")
    assert e.value.code == 404


def test_metrics_on_unix_socket(pglease, tmp_path):
    path = os.path.join(str(tmp_path), "metrics.sock")
    d = pglease(metrics_listen=path)
    assert d.psql("-c", "select 1").returncode == 0
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(10)
    s.connect(path)
    s.sendall(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    s.close()
    head, body = data.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.0 200") or head.startswith(b"HTTP/1.1 200"), head
    assert sample(body.decode(), "pglease_transactions_total", database="app", user="postgres") >= 1


def test_metrics_listen_invalid_is_a_config_error(pglease_bin, tmp_path):
    import subprocess
    cfg = tmp_path / "bad.ini"
    cfg.write_text("[pglease]\nmetrics_listen = localhost:9187\n[databases]\n")
    r = subprocess.run([pglease_bin, "--check", str(cfg)], capture_output=True, text=True)
    assert r.returncode == 1
    assert ":2: [pglease] metrics_listen: invalid value \"localhost:9187\"" in r.stderr


def test_many_scrapes_while_clients_work(pglease):
    port = free_tcp_port()
    d = pglease(metrics_listen="127.0.0.1:%d" % port)
    with d.connect() as c:
        for i in range(20):
            c.execute("select 1")
            assert "pglease_leases_total" in scrape(port)
