#!/usr/bin/env bash
# `make run`: a throwaway PostgreSQL cluster plus ./pglease in the foreground.
#
# State lives in .run/ at the repo root (git-ignored) and is reused by the
# next run. As root the cluster runs as user "postgres"; when that user
# cannot write .run/ (e.g. the repo is under /root), /tmp/pglease-run is used.
# Ctrl-C (or SIGTERM, or pglease exiting) stops pglease and the cluster.
#
# env: PGLEASE_BIN (default ./pglease), PG_PORT (5432), PGLEASE_PORT (6432)
# shellcheck disable=SC2317  # cleanup and stop_pglease are called from traps
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
PGCLUSTER=$REPO/tests/lib/pgcluster.sh
PGLEASE_BIN=${PGLEASE_BIN:-$REPO/pglease}
PG_PORT=${PG_PORT:-5432}
PGLEASE_PORT=${PGLEASE_PORT:-6432}
CONFIG=$REPO/.run/pglease.ini

BASE=""          # holds pg/ (the cluster) and sock/ (pglease's socket dir)
PGLEASE_PID=""
CLUSTER_STARTED=0

say() { echo "run-local: $*" >&2; }
die() { say "$*"; exit 1; }

# Can the user the cluster runs as create files in $1?
cluster_user_can_write() {
  if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$1" && runuser -u postgres -- test -w "$1"
  else
    test -w "$1"
  fi
}

choose_base() {
  mkdir -p "$REPO/.run/pg"
  if cluster_user_can_write "$REPO/.run/pg"; then
    BASE=$REPO/.run
  else
    BASE=/tmp/pglease-run
    say "user postgres cannot write $REPO/.run; using $BASE instead"
    mkdir -p "$BASE/pg"
    chmod 0755 "$BASE"
  fi
}

# From $BASE: as root pg_ctl runs as postgres, who may not be able to enter
# the current directory (and says so).
pgcluster() { (cd "$BASE" && "$PGCLUSTER" "$@"); }

start_cluster() {
  # A cluster left running by an earlier, killed run is stopped first.
  pgcluster stop "$BASE/pg"
  CLUSTER_STARTED=1         # set first: a Ctrl-C during start still stops it
  pgcluster start "$BASE/pg" "$PG_PORT"
}

ensure_app_db() {
  local exists
  exists=$(psql -h "$BASE/pg" -p "$PG_PORT" -U postgres -d postgres -XtAq \
    -c "select 1 from pg_database where datname = 'app'")
  [ "$exists" = 1 ] || createdb -h "$BASE/pg" -p "$PG_PORT" -U postgres app
}

write_config() {
  mkdir -p "$BASE/sock"
  chmod 0755 "$BASE/sock"
  cat >"$CONFIG" <<EOF
; written by tests/lib/run-local.sh; rewritten on every \`make run\`
[pglease]
listen_port = $PGLEASE_PORT
unix_socket_dir = $BASE/sock
auth_type = trust
pool_mode = transaction
default_pool_size = 10
min_pool_size = 0
max_client_conn = 100
log_level = info

[databases]
app = host=$BASE/pg port=$PG_PORT dbname=app
* = host=$BASE/pg port=$PG_PORT
EOF
}

print_banner() {
  cat >&2 <<EOF

  pglease is starting on $BASE/sock/.s.PGSQL.$PGLEASE_PORT (config $CONFIG)
  Connect through it with:

      psql -h $BASE/sock -p $PGLEASE_PORT -U postgres app

  PostgreSQL itself: psql -h $BASE/pg -p $PG_PORT -U postgres app
  Press Ctrl-C to stop pglease and the cluster.

EOF
}

stop_pglease() {
  [ -n "$PGLEASE_PID" ] || return 0
  kill -TERM "$PGLEASE_PID" 2>/dev/null || true
  local _
  for _ in $(seq 50); do
    kill -0 "$PGLEASE_PID" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$PGLEASE_PID" 2>/dev/null; then
    say "pglease did not exit after SIGTERM; killing it"
    kill -KILL "$PGLEASE_PID" 2>/dev/null || true
  fi
  wait "$PGLEASE_PID" 2>/dev/null || true
  PGLEASE_PID=""
}

cleanup() {
  local rc=$?
  trap '' INT TERM          # a second Ctrl-C must not cut the cleanup short
  stop_pglease
  if [ "$CLUSTER_STARTED" -eq 1 ]; then
    say "stopping PostgreSQL"
    pgcluster stop "$BASE/pg" || true
  fi
  exit "$rc"
}

main() {
  [ -x "$PGLEASE_BIN" ] || die "no pglease binary at $PGLEASE_BIN (run make first)"
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  choose_base
  start_cluster
  ensure_app_db
  write_config
  print_banner
  # Started in the background so our traps run at once; `wait` returns when
  # pglease exits or a signal arrives.
  "$PGLEASE_BIN" "$CONFIG" &
  PGLEASE_PID=$!
  local rc=0
  wait "$PGLEASE_PID" || rc=$?
  PGLEASE_PID=""
  say "pglease exited with status $rc"
  exit "$rc"
}

main "$@"
