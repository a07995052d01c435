#!/usr/bin/env bash
# A private PostgreSQL cluster: initdb into a directory, Unix socket only.
# PostgreSQL refuses to run as root, so as root the cluster runs as the
# unprivileged system user "postgres" (created by Debian's postgresql package).
#
# usage: pgcluster.sh start DIR [PORT]   -> socket DIR/.s.PGSQL.PORT, superuser "postgres"
#        pgcluster.sh stop DIR
#        PGCLUSTER_OPTS="-c ssl=on ..." pgcluster.sh start ...  (server options added last, so they win)
#        pgcluster.sh bindir                (prints PostgreSQL's server bin dir)
set -euo pipefail

pg_bindir() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
  [ -n "$d" ] || { echo "pgcluster: no PostgreSQL server found (apt-get install postgresql)" >&2; exit 1; }
  echo "$d"
}

as_pg() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  local dir=$1 port=${2:-5432} bin
  bin=$(pg_bindir)
  mkdir -p "$dir"
  [ "$(id -u)" -eq 0 ] && chown postgres: "$dir"
  if ! as_pg test -w "$dir"; then
    echo "pgcluster: user postgres cannot write $dir (is a parent directory private?)" >&2
    exit 1
  fi
  if [ ! -f "$dir/data/PG_VERSION" ]; then
    as_pg "$bin/initdb" -D "$dir/data" -U postgres -A trust -E UTF8 --locale=C.UTF-8 -N >"$dir/initdb.log" 2>&1 \
      || { cat "$dir/initdb.log" >&2; exit 1; }
  fi
  as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/postgresql.log" -w -t 60 \
    -o "-c listen_addresses='' -k $dir -p $port -c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=300 ${PGCLUSTER_OPTS:-}" \
    start >/dev/null
}

stop() {
  local dir=$1 bin
  bin=$(pg_bindir)
  [ -f "$dir/data/postmaster.pid" ] || return 0
  as_pg "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null || true
}

case "${1:-}" in
  start) start "$2" "${3:-5432}" ;;
  stop) stop "$2" ;;
  bindir) pg_bindir ;;
  *) echo "usage: $0 start DIR [PORT] | stop DIR | bindir" >&2; exit 2 ;;
esac
