#!/usr/bin/python3
"""Open N client connections through a pooler and keep them idle.

usage: idle_clients.py HOST PORT DBNAME USER N

Each connection logs in, runs one `select 1` (so it has been leased once) and
then sits idle. When all are done it prints "READY N" on stdout and waits
until it gets SIGTERM or SIGINT; the connections close when it exits.
"""
import resource
import signal
import sys

import psycopg


def raise_fd_limit(wanted):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= wanted:
        return
    new = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
    if new < wanted:
        sys.exit(f"idle_clients: need {wanted} file descriptors, hard limit is {hard}")


def open_clients(host, port, dbname, user, count):
    conns = []
    for i in range(count):
        try:
            conns.append(psycopg.connect(host=host, port=port, dbname=dbname, user=user,
                                         autocommit=True, connect_timeout=30))
        except psycopg.Error as e:
            sys.exit(f"idle_clients: connection {i + 1} of {count} failed: {e}")
    return conns


def lease_each_once(conns):
    for i, conn in enumerate(conns):
        try:
            conn.execute("select 1").fetchone()
        except psycopg.Error as e:
            sys.exit(f"idle_clients: select 1 on connection {i + 1} failed: {e}")


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    host, port, dbname, user, count = sys.argv[1:5] + [int(sys.argv[5])]
    raise_fd_limit(count + 64)
    conns = open_clients(host, port, dbname, user, count)
    lease_each_once(conns)
    print(f"READY {len(conns)}", flush=True)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    while True:
        signal.pause()


if __name__ == "__main__":
    main()
