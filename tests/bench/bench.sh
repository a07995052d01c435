#!/usr/bin/env bash
# `make bench`: pglease against PgBouncer and direct PostgreSQL.
#
#  1. A private PostgreSQL cluster under /tmp, `pgbench -i -s 10` into "bench".
#  2. PgBouncer and pglease in front of it, both transaction pooling with
#     10 server connections per pool.
#  3. Memory per idle client: 1000 logged-in clients, each leased once, sit
#     idle on each pooler; (RssAnon after - before) / clients.
#  4. Throughput: pgbench -S for each workload; every round runs each target
#     in turn (direct, pgbouncer, pglease[, pglease_b]; reversed in even
#     rounds) so drift and running order hit them all alike. For the
#     poolers, their CPU time per transaction. `-M prepared` through
#     PgBouncer 1.18 in transaction mode is expected to fail (it has no
#     prepared-statement support): reported as "fails k/N", not as a failed
#     run. (Later rounds may pass by accident: every pgbench client names the
#     same statement P_0, and failed rounds leave it on each server connection.)
#  5. A table on stdout, and results.txt / results.json in build/bench/.
#  6. A 1 GiB result through pglease, its RSS sampled (large_result.txt).
#
# A/B: with PGLEASE_B_BIN set, a second pglease binary (e.g. an older commit's,
# from tests/bench/build-rev.sh) is the fourth target, pglease_b: the same
# config on its own socket, measured in the same rounds, reported beside
# pglease (A) with the ratios A/B of TPS and of CPU per transaction.
#
# Performance floors are reported as PASS/BELOW; they never fail the run.
# The exit status is non-zero only when something did not work.
#
# env: BENCH_SECONDS (15)  BENCH_ROUNDS (3)  BENCH_IDLE_CLIENTS (1000)  BENCH_OUT (build/bench)
#      BENCH_TARGETS ("direct pgbouncer pglease", plus "pglease_b" when PGLEASE_B_BIN is set)
#      PGLEASE_BIN (./pglease)  PGLEASE_B_BIN (unset: no B)
#      BENCH_LARGE_RESULT_GIB (1; 0 skips step 6)
#      BENCH_TLS (0; 1: the poolers reach PostgreSQL over TCP 127.0.0.1 with TLS, PgBouncer with
#                 server_tls_sslmode = require, pglease with sslmode=require; the cluster has ssl=on,
#                 a self-signed certificate made at start, and only hostssl for TCP; `direct` stays
#                 on the Unix socket. Results go to build/bench-tls unless BENCH_OUT is set)
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
PGCLUSTER=$REPO/tests/lib/pgcluster.sh
IDLE_CLIENTS_PY=$REPO/tests/bench/idle_clients.py
PY=/usr/bin/python3
PGBOUNCER_BIN=${PGBOUNCER_BIN:-/usr/sbin/pgbouncer}
PGLEASE_BIN=${PGLEASE_BIN:-$REPO/pglease}
PGLEASE_B_BIN=${PGLEASE_B_BIN:-}

BENCH_SECONDS=${BENCH_SECONDS:-15}
BENCH_ROUNDS=${BENCH_ROUNDS:-3}
BENCH_TARGETS=${BENCH_TARGETS:-direct pgbouncer pglease${PGLEASE_B_BIN:+ pglease_b}}
BENCH_IDLE_CLIENTS=${BENCH_IDLE_CLIENTS:-1000}
BENCH_TLS=${BENCH_TLS:-0}
OUT=${BENCH_OUT:-$REPO/build/bench$([ "$BENCH_TLS" = 1 ] && echo -tls)}

WORKLOADS=("simple 10" "simple 100" "extended 10" "prepared 10" "prepared 100")   # pgbench -M mode, -c clients
POOL_SIZE=10
POOLER_MAX_CLIENTS=$((BENCH_IDLE_CLIENTS + 200))
FD_LIMIT=$((BENCH_IDLE_CLIENTS * 2 + 1000 > 4096 ? BENCH_IDLE_CLIENTS * 2 + 1000 : 4096))
DB=bench
PGUSER_NAME=postgres
CLK_TCK=$(getconf CLK_TCK)

# Floors: pglease/pgbouncer TPS at a workload, and idle-client memory.
FLOOR_RATIO_SIMPLE_10=1.0
FLOOR_RATIO_SIMPLE_100=1.3
FLOOR_IDLE_KIB=0.5

TMP=""                      # everything temporary lives here
CLUSTER_STARTED=0
FAILED=0                    # set when a run or a pooler did not work
IDLE_PID=""
declare -A SOCK PORT PID WRAPPER_PID
declare -A BIN=([pglease]=$PGLEASE_BIN [pglease_b]=$PGLEASE_B_BIN)   # the pglease targets' binaries
declare -A TPS CPU_US       # key "workload-index target" -> space-separated per-round values
declare -A FAILS            # key "workload-index target" -> rounds in which pgbench failed as expected
declare -A MEM              # key "target field"

say() { echo "bench: $*" >&2; }
die() { say "$*"; exit 1; }
is_root() { [ "$(id -u)" -eq 0 ]; }
as_pg() { if is_root; then runuser -u postgres -- "$@"; else "$@"; fi; }
has_target() { [[ " $BENCH_TARGETS " == *" $1 "* ]]; }
wl_mode() { local mode clients; read -r mode clients <<<"${WORKLOADS[$1]}"; echo "$mode"; }
wl_clients() { local mode clients; read -r mode clients <<<"${WORKLOADS[$1]}"; echo "$clients"; }
wl_name() { echo "-M $(wl_mode "$1") -c $(wl_clients "$1")"; }

# ---------------------------------------------------------------- setup ---

check_inputs() {
  local t
  for t in $BENCH_TARGETS; do
    case $t in direct|pgbouncer|pglease|pglease_b) ;; *) die "unknown target '$t' in BENCH_TARGETS" ;; esac
  done
  if has_target pglease && [ ! -x "$PGLEASE_BIN" ]; then
    die "no pglease binary at $PGLEASE_BIN (run make, or BENCH_TARGETS='direct pgbouncer')"
  fi
  if has_target pglease_b && [ ! -x "$PGLEASE_B_BIN" ]; then
    die "target pglease_b needs PGLEASE_B_BIN, an executable pglease (tests/bench/build-rev.sh REV builds one); it is '$PGLEASE_B_BIN'"
  fi
  if has_target pglease && has_target pglease_b && cmp -s "$PGLEASE_BIN" "$PGLEASE_B_BIN"; then
    say "note: A ($PGLEASE_BIN) and B ($PGLEASE_B_BIN) are the same binary: an A/A run"
  fi
  if has_target pgbouncer && [ ! -x "$PGBOUNCER_BIN" ]; then
    die "no PgBouncer at $PGBOUNCER_BIN (apt-get install pgbouncer)"
  fi
  ulimit -n "$FD_LIMIT" 2>/dev/null || die "cannot raise the open-files limit to $FD_LIMIT (ulimit -Hn is $(ulimit -Hn))"
}

make_tmp() {
  TMP=$(mktemp -d /tmp/pglease-bench.XXXXXX)
  chmod 0755 "$TMP"                               # user postgres must get in
  mkdir -p "$TMP/pg" "$TMP/pgbouncer" "$TMP/pglease" "$TMP/pglease_b" "$TMP/pgbench" "$OUT"
  is_root && chown postgres: "$TMP/pgbouncer"
  SOCK[direct]=$TMP/pg;           PORT[direct]=5432
  SOCK[pgbouncer]=$TMP/pgbouncer; PORT[pgbouncer]=6433
  SOCK[pglease]=$TMP/pglease;     PORT[pglease]=6432
  SOCK[pglease_b]=$TMP/pglease_b; PORT[pglease_b]=6434
}

# pg_ctl runs as postgres when we are root; run it from a directory it can enter.
pgcluster() { (cd "$TMP" && "$PGCLUSTER" "$@"); }

start_cluster() {
  say "starting PostgreSQL in $TMP/pg"
  CLUSTER_STARTED=1
  pgcluster start "$TMP/pg" "${PORT[direct]}"
  if [ "$BENCH_TLS" = 1 ]; then restart_cluster_with_tls; fi
}

# BENCH_TLS=1: a self-signed certificate (sslmode=require checks none), ssl=on, TCP on
# 127.0.0.1 through hostssl only, so a pooler that would not encrypt is refused.
restart_cluster_with_tls() {
  local data=$TMP/pg/data
  say "restarting PostgreSQL with ssl=on, hostssl on 127.0.0.1:${PORT[direct]}"
  openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -keyout "$data/server.key" -out "$data/server.crt" >/dev/null 2>&1 || die "openssl could not make a certificate"
  chmod 0600 "$data/server.key"
  if is_root; then chown postgres: "$data/server.key" "$data/server.crt"; fi
  printf 'local all all trust\nhostssl all all 127.0.0.1/32 trust\n' >"$data/pg_hba.conf"
  pgcluster stop "$TMP/pg"
  PGCLUSTER_OPTS="-c listen_addresses=127.0.0.1 -c ssl=on" pgcluster start "$TMP/pg" "${PORT[direct]}"
}

# backend_conninfo POOLER [DBNAME]: how a pooler reaches PostgreSQL.
backend_conninfo() {
  local extra=${2:+ dbname=$2}
  if [ "$BENCH_TLS" != 1 ]; then
    echo "host=${SOCK[direct]} port=${PORT[direct]}$extra"
  elif [ "$1" = pgbouncer ]; then
    echo "host=127.0.0.1 port=${PORT[direct]}$extra"
  else
    echo "host=127.0.0.1 port=${PORT[direct]}$extra sslmode=require"
  fi
}

init_bench_db() {
  say "pgbench -i -s 10 into database $DB"
  createdb -h "${SOCK[direct]}" -p "${PORT[direct]}" -U "$PGUSER_NAME" "$DB"
  pgbench -h "${SOCK[direct]}" -p "${PORT[direct]}" -U "$PGUSER_NAME" -i -s 10 -q "$DB" \
    >"$TMP/pgbench/init.log" 2>&1 || { cat "$TMP/pgbench/init.log" >&2; die "pgbench -i failed"; }
  psql -h "${SOCK[direct]}" -p "${PORT[direct]}" -U "$PGUSER_NAME" -XqAt -c "vacuum analyze" "$DB"
}

# ------------------------------------------------------------- poolers ---

write_pgbouncer_config() {
  local dir=${SOCK[pgbouncer]}
  printf '"%s" ""\n' "$PGUSER_NAME" >"$dir/users.txt"
  cat >"$dir/pgbouncer.ini" <<EOF
; PgBouncer for tests/bench/bench.sh: Unix socket only, trust, transaction pooling.
[databases]
$DB = $(backend_conninfo pgbouncer "$DB")
* = $(backend_conninfo pgbouncer)

[pgbouncer]
listen_addr =
listen_port = ${PORT[pgbouncer]}
unix_socket_dir = $dir
auth_type = trust
auth_file = $dir/users.txt
pool_mode = transaction
default_pool_size = $POOL_SIZE
max_client_conn = $POOLER_MAX_CLIENTS
logfile = $dir/pgbouncer.log
pidfile = $dir/pgbouncer.pid
log_connections = 0
log_disconnections = 0
log_stats = 0
$(if [ "$BENCH_TLS" = 1 ]; then echo "server_tls_sslmode = require"; fi)
EOF
  if is_root; then chown postgres: "$dir"/*; fi
}

# write_pglease_config TARGET: pglease and pglease_b differ only in socket dir and port.
write_pglease_config() {
  local t=$1 dir=${SOCK[$1]}
  cat >"$dir/pglease.ini" <<EOF
; $t for tests/bench/bench.sh
[pglease]
listen_port = ${PORT[$t]}
unix_socket_dir = $dir
auth_type = trust
pool_mode = transaction
default_pool_size = $POOL_SIZE
min_pool_size = 0
max_client_conn = $POOLER_MAX_CLIENTS
log_level = warning

[databases]
$DB = $(backend_conninfo "$t" "$DB")
* = $(backend_conninfo "$t")
EOF
}

# PgBouncer will not run as root; runuser forks, so its own pid comes from the
# pidfile. runuser's PAM session resets the open-files limit: raise it again.
start_pgbouncer() {
  local dir=${SOCK[pgbouncer]}
  write_pgbouncer_config
  # shellcheck disable=SC2016  # expanded by that sh
  as_pg sh -c 'ulimit -n "$1" && exec "$2" "$3"' sh "$FD_LIMIT" "$PGBOUNCER_BIN" "$dir/pgbouncer.ini" \
    >"$dir/stderr.log" 2>&1 </dev/null &
  WRAPPER_PID[pgbouncer]=$!
  wait_for_file "$dir/pgbouncer.pid" "${WRAPPER_PID[pgbouncer]}" \
    || { pooler_log pgbouncer >&2; die "PgBouncer did not start"; }
  PID[pgbouncer]=$(cat "$dir/pgbouncer.pid")
  wait_ready pgbouncer
  check_fd_limit pgbouncer
}

# start_pglease TARGET: pglease (A, PGLEASE_BIN) or pglease_b (B, PGLEASE_B_BIN).
start_pglease() {
  local t=$1 dir=${SOCK[$1]}
  write_pglease_config "$t"
  "${BIN[$t]}" "$dir/pglease.ini" >"$dir/$t.log" 2>&1 </dev/null &
  PID[$t]=$!
  WRAPPER_PID[$t]=${PID[$t]}
  wait_ready "$t"
  check_fd_limit "$t"
}

# Warn when a pooler cannot hold the idle clients plus its server connections.
check_fd_limit() {
  local n
  n=$(awk '/^Max open files/ { print $4 }' "/proc/${PID[$1]}/limits")
  if [ "$n" != unlimited ] && [ "$n" -lt $((BENCH_IDLE_CLIENTS + 100)) ]; then
    say "warning: $1 may open only $n files; the idle-client test needs $((BENCH_IDLE_CLIENTS + 100))"
  fi
}

# wait_for_file FILE PID: until FILE exists (10 s), failing early if PID is gone.
wait_for_file() {
  local _
  for _ in $(seq 100); do
    [ -s "$1" ] && return 0
    kill -0 "$2" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# Ready once `select 1` works through it (10 s).
wait_ready() {
  local t=$1 _
  for _ in $(seq 100); do
    if ! kill -0 "${PID[$t]}" 2>/dev/null; then
      pooler_log "$t" >&2; die "$t exited during startup"
    fi
    run_sql "$t" "select 1" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  pooler_log "$t" >&2
  die "$t does not answer on ${SOCK[$t]}/.s.PGSQL.${PORT[$t]}"
}

run_sql() {
  psql -h "${SOCK[$1]}" -p "${PORT[$1]}" -U "$PGUSER_NAME" -XqAt -c "$2" "$DB"
}

pooler_log() {
  local f
  for f in "${SOCK[$1]}"/*.log; do
    [ -s "$f" ] && { echo "--- $f (last 30 lines)"; tail -n 30 "$f"; }
  done
  return 0
}

pooler_alive() {
  [ "$1" = direct ] && return 0
  kill -0 "${PID[$1]}" 2>/dev/null
}

stop_process() {
  local pid=$1 _
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 50); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  say "pid $pid ignored SIGTERM; killing it"
  kill -KILL "$pid" 2>/dev/null || true
}

stop_pooler() {
  [ -n "${PID[$1]:-}" ] || return 0
  stop_process "${PID[$1]}"
  wait "${WRAPPER_PID[$1]}" 2>/dev/null || true
  PID[$1]=""
}

# ------------------------------------------------------------ measuring ---

# CPU clock ticks (utime + stime) of a process, its threads and its children.
cpu_ticks() {
  local pid=$1 stat total=0 child
  stat=$(cat "/proc/$pid/stat" 2>/dev/null) || { echo 0; return; }
  stat=${stat##*) }               # drop "pid (comm) "; utime, stime are fields 12, 13
  # shellcheck disable=SC2086  # split into fields on purpose
  set -- $stat
  total=$(( ${12} + ${13} ))
  # shellcheck disable=SC2013  # the children files hold space-separated pids
  for child in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do
    total=$(( total + $(cpu_ticks "$child") ))
  done
  echo "$total"
}

# A "Key:   N kB" line of a /proc file, in kB ("" when absent).
proc_kb() {
  awk -v k="$2:" '$1 == k { print $2; exit }' "$1" 2>/dev/null || true
}

pooler_targets() {
  local t
  for t in pgbouncer pglease pglease_b; do
    if has_target "$t"; then echo "$t"; fi
  done
}

# run_pgbench TARGET WORKLOAD ROUND: one pgbench run; records TPS and CPU.
run_pgbench() {
  local t=$1 w=$2 r=$3 log ticks0=0 ticks1=0 tps txns
  log=$TMP/pgbench/w$w-$t-r$r.log
  if ! pooler_alive "$t"; then
    say "$t is not running; skipping $(wl_name "$w") round $r"; FAILED=1; return 0
  fi
  [ "$t" = direct ] || ticks0=$(cpu_ticks "${PID[$t]}")
  if ! timeout --foreground -k 5 $((BENCH_SECONDS + 60)) \
      pgbench -h "${SOCK[$t]}" -p "${PORT[$t]}" -U "$PGUSER_NAME" -n -S -j 2 \
        -M "$(wl_mode "$w")" -c "$(wl_clients "$w")" -T "$BENCH_SECONDS" "$DB" >"$log" 2>&1; then
    if expected_failure "$t" "$w"; then
      FAILS["$w $t"]=$(( ${FAILS["$w $t"]:-0} + 1 ))
      say "$(printf '%-22s round %d  %-9s %10s (%s)' "$(wl_name "$w")" "$r" "$t" fails \
        "$(grep -m1 -o 'prepared statement .* does not exist' "$log" || tail -n 1 "$log")")"
      return 0
    fi
    say "pgbench failed against $t ($(wl_name "$w"), round $r); output in $OUT/logs:"
    tail -n 5 "$log" >&2
    if ! pooler_alive "$t"; then say "$t has exited:"; pooler_log "$t" >&2; fi
    FAILED=1; return 0
  fi
  [ "$t" = direct ] || ticks1=$(cpu_ticks "${PID[$t]}")
  tps=$(sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p' "$log")
  txns=$(sed -n 's/^number of transactions actually processed: \([0-9]*\).*/\1/p' "$log")
  if [ -z "$tps" ] || [ -z "$txns" ] || [ "$txns" -eq 0 ]; then
    say "cannot parse pgbench output $log"; FAILED=1; return 0
  fi
  TPS["$w $t"]+="$tps "
  if [ "$t" != direct ]; then
    CPU_US["$w $t"]+="$(awk -v d=$((ticks1 - ticks0)) -v hz="$CLK_TCK" -v n="$txns" \
      'BEGIN { printf "%.3f", d / hz / n * 1e6 }') "
  fi
  say "$(printf '%-22s round %d  %-9s %10.0f tps' "$(wl_name "$w")" "$r" "$t" "$tps")"
}

# PgBouncer before 1.21 cannot run -M prepared in transaction mode.
expected_failure() {
  [ "$1" = pgbouncer ] && [ "$(wl_mode "$2")" = prepared ]
}

# The targets in round r's order: every other round reversed, so whatever
# running order does (a warmer cache, a neighbour's load) falls on each side.
round_targets() {
  local r=$1 t out=""
  for t in $BENCH_TARGETS; do
    if [ $((r % 2)) -eq 0 ]; then out="$t $out"; else out="$out $t"; fi
  done
  echo "$out"
}

run_throughput() {
  local r w t
  for r in $(seq "$BENCH_ROUNDS"); do
    for w in "${!WORKLOADS[@]}"; do
      for t in $(round_targets "$r"); do
        run_pgbench "$t" "$w" "$r"
      done
    done
  done
}

# Wait until the idle-client program prints READY (or dies); 120 s.
wait_idle_ready() {
  local out=$1 _
  for _ in $(seq 1200); do
    grep -q '^READY' "$out" 2>/dev/null && return 0
    kill -0 "$IDLE_PID" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}

# measure_idle TARGET: RssAnon / Pss_Anon of the pooler before and with N idle clients.
measure_idle() {
  local t=$1 pid=${PID[$1]} out=$TMP/pgbench/idle-$1.log n=$BENCH_IDLE_CLIENTS
  MEM["$t rss0"]=$(proc_kb "/proc/$pid/status" RssAnon)
  MEM["$t pss0"]=$(proc_kb "/proc/$pid/smaps_rollup" Pss_Anon)
  say "opening $n idle clients on $t"
  "$PY" "$IDLE_CLIENTS_PY" "${SOCK[$t]}" "${PORT[$t]}" "$DB" "$PGUSER_NAME" "$n" >"$out" 2>&1 </dev/null &
  IDLE_PID=$!
  if ! wait_idle_ready "$out"; then
    say "idle clients on $t did not all get in:"; tail -n 5 "$out" >&2
    stop_idle_clients; FAILED=1; return 0
  fi
  sleep 1
  MEM["$t rss1"]=$(proc_kb "/proc/$pid/status" RssAnon)
  MEM["$t pss1"]=$(proc_kb "/proc/$pid/smaps_rollup" Pss_Anon)
  stop_idle_clients
  sleep 1                        # let the pooler see the disconnects
}

stop_idle_clients() {
  [ -n "$IDLE_PID" ] || return 0
  stop_process "$IDLE_PID"
  wait "$IDLE_PID" 2>/dev/null || true
  IDLE_PID=""
}

run_idle_memory() {
  local t
  for t in $(pooler_targets); do measure_idle "$t"; done
}

# ------------------------------------------------------------ reporting ---

median() {
  printf '%s\n' "$@" | awk 'NF' | sort -g |
    awk '{ a[NR] = $1 } END { if (NR == 0) exit; if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}

# The per-round lists are space-separated numbers, split on purpose.
# shellcheck disable=SC2086
med() { median ${TPS["$1 $2"]:-}; }
# shellcheck disable=SC2086
med_cpu() { median ${CPU_US["$1 $2"]:-}; }

# ratio A B -> A/B with 2 decimals, "" when either is missing.
ratio() {
  [ -n "$1" ] && [ -n "$2" ] || return 0
  awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b }'
}

# KiB per idle client from "before" and "after" kB values.
per_client_kib() {
  [ -n "$1" ] && [ -n "$2" ] || return 0
  awk -v a="$1" -v b="$2" -v n="$BENCH_IDLE_CLIENTS" 'BEGIN { printf "%.3f", (b - a) / n }'
}

# verdict VALUE FLOOR ge|le
verdict() {
  [ -n "$1" ] || { echo "n/a"; return; }
  awk -v v="$1" -v f="$2" -v op="$3" 'BEGIN { ok = (op == "ge") ? v >= f : v <= f; print ok ? "PASS" : "BELOW" }'
}

print_throughput_table() {
  local w d b l
  printf 'Throughput: pgbench -S -n -j 2, %ss x %s rounds, median TPS; pooler CPU in us per transaction\n' \
    "$BENCH_SECONDS" "$BENCH_ROUNDS"
  if has_target pglease_b; then
    printf 'A = pglease    %s\nB = pglease_b  %s\n' "$PGLEASE_BIN" "$PGLEASE_B_BIN"
  fi
  printf '%-18s %10s %10s %10s %10s %10s %10s %10s' \
    workload direct pgbouncer pglease lease/bncr lease/dir "cpu bncr" "cpu lease"
  if has_target pglease_b; then printf ' %10s %10s %10s %10s' pglease_b "A/B tps" "cpu B" "A/B cpu"; fi
  printf '\n'
  for w in "${!WORKLOADS[@]}"; do
    d=$(med "$w" direct); b=$(med "$w" pgbouncer); l=$(med "$w" pglease)
    [ -z "${FAILS["$w pgbouncer"]:-}" ] || b=""        # no ratio against a target that failed
    printf '%-18s %10s %10s %10s %10s %10s %10s %10s' "$(wl_name "$w")" \
      "$(tps_cell "$w" direct)" "$(tps_cell "$w" pgbouncer)" "$(tps_cell "$w" pglease)" "$(dash "$(ratio "$l" "$b")")" \
      "$(dash "$(ratio "$l" "$d")")" "$(num2 "$(med_cpu "$w" pgbouncer)")" "$(num2 "$(med_cpu "$w" pglease)")"
    if has_target pglease_b; then
      printf ' %10s %10s %10s %10s' "$(tps_cell "$w" pglease_b)" "$(dash "$(ab_tps "$w")")" \
        "$(num2 "$(med_cpu "$w" pglease_b)")" "$(dash "$(ab_cpu "$w")")"
    fi
    printf '\n'
  done
}

# A/B ratios of a workload: pglease over pglease_b, of median TPS and of median CPU per transaction.
ab_tps() { ratio "$(med "$1" pglease)" "$(med "$1" pglease_b)"; }
ab_cpu() { ratio "$(med_cpu "$1" pglease)" "$(med_cpu "$1" pglease_b)"; }

num0() { if [ -n "$1" ]; then printf '%.0f' "$1"; else echo -; fi; }
# A target's median TPS, or "fails k/N" when pgbench failed there (as expected) in k of N rounds.
tps_cell() { if [ -n "${FAILS["$1 $2"]:-}" ]; then echo "fails ${FAILS["$1 $2"]}/$BENCH_ROUNDS"; else num0 "$(med "$1" "$2")"; fi; }
num2() { if [ -n "$1" ]; then printf '%.2f' "$1"; else echo -; fi; }
dash() { echo "${1:--}"; }

print_memory_table() {
  local t
  printf '\nMemory with %s idle clients (each leased once), kB of the pooler process\n' "$BENCH_IDLE_CLIENTS"
  printf '%-10s %12s %12s %14s %12s %12s %14s\n' pooler "RssAnon 0" "RssAnon N" "KiB/client" "Pss_Anon 0" "Pss_Anon N" "KiB/client"
  for t in $(pooler_targets); do
    printf '%-10s %12s %12s %14s %12s %12s %14s\n' "$t" \
      "$(dash "${MEM["$t rss0"]:-}")" "$(dash "${MEM["$t rss1"]:-}")" "$(dash "$(idle_kib "$t" rss)")" \
      "$(dash "${MEM["$t pss0"]:-}")" "$(dash "${MEM["$t pss1"]:-}")" "$(dash "$(idle_kib "$t" pss)")"
  done
}

idle_kib() { per_client_kib "${MEM["$1 ${2}0"]:-}" "${MEM["$1 ${2}1"]:-}"; }

print_floors() {
  local r10 r100 kib
  r10=$(ratio "$(med 0 pglease)" "$(med 0 pgbouncer)")
  r100=$(ratio "$(med 1 pglease)" "$(med 1 pgbouncer)")
  kib=$(idle_kib pglease rss)
  printf '\nFloors (reported, not enforced)\n'
  floor_line "pglease/pgbouncer TPS, $(wl_name 0)" ">= $FLOOR_RATIO_SIMPLE_10" "$r10" "$(verdict "$r10" "$FLOOR_RATIO_SIMPLE_10" ge)"
  floor_line "pglease/pgbouncer TPS, $(wl_name 1)" ">= $FLOOR_RATIO_SIMPLE_100" "$r100" "$(verdict "$r100" "$FLOOR_RATIO_SIMPLE_100" ge)"
  floor_line "pglease KiB RssAnon per idle client" "<= $FLOOR_IDLE_KIB" "$kib" "$(verdict "$kib" "$FLOOR_IDLE_KIB" le)"
}

floor_line() { printf '  %-42s %-8s %8s  %s\n' "$1" "$2" "$(dash "$3")" "$4"; }

# JSON value: a number, or null when empty.
jnum() { if [ -n "$1" ]; then echo "$1"; else echo null; fi; }
# shellcheck disable=SC2086
jlist() { local v; v=$(printf '%s,' $1); echo "[${v%,}]"; }
# JSON string
jstr() { local v=${1//\\/\\\\}; printf '"%s"' "${v//\"/\\\"}"; }

# The targets with an entry in results.json: always the first three, pglease_b only in an A/B run.
json_targets() { echo direct pgbouncer pglease; if has_target pglease_b; then echo pglease_b; fi; }

write_json() {
  local w t sep=""
  {
    printf '{\n  "seconds": %s, "rounds": %s, "targets": "%s", "clk_tck": %s,\n' \
      "$BENCH_SECONDS" "$BENCH_ROUNDS" "$BENCH_TARGETS" "$CLK_TCK"
    if has_target pglease_b; then
      printf '  "pglease_bin": %s, "pglease_b_bin": %s,\n' "$(jstr "$PGLEASE_BIN")" "$(jstr "$PGLEASE_B_BIN")"
    fi
    printf '  "workloads": [\n'
    for w in "${!WORKLOADS[@]}"; do
      printf '%s    {"name": "%s", "mode": "%s", "clients": %s' "$sep" "$(wl_name "$w")" "$(wl_mode "$w")" "$(wl_clients "$w")"
      for t in $(json_targets); do
        printf ',\n     "%s": {"tps_median": %s, "tps": %s, "fails": %s' "$t" "$(jnum "$(med "$w" "$t")")" \
          "$(jlist "${TPS["$w $t"]:-}")" "${FAILS["$w $t"]:-0}"
        [ "$t" = direct ] || printf ', "cpu_us_per_txn_median": %s, "cpu_us_per_txn": %s' \
          "$(jnum "$(med_cpu "$w" "$t")")" "$(jlist "${CPU_US["$w $t"]:-}")"
        printf '}'
      done
      printf ',\n     "pglease_over_pgbouncer": %s, "pglease_over_direct": %s' \
        "$(jnum "$(ratio "$(med "$w" pglease)" "$(med "$w" pgbouncer)")")" \
        "$(jnum "$(ratio "$(med "$w" pglease)" "$(med "$w" direct)")")"
      if has_target pglease_b; then
        printf ',\n     "pglease_over_pglease_b": %s, "pglease_cpu_over_pglease_b": %s' \
          "$(jnum "$(ab_tps "$w")")" "$(jnum "$(ab_cpu "$w")")"
      fi
      printf '}'
      sep=$',\n'
    done
    printf '\n  ],\n  "idle_clients": {"count": %s' "$BENCH_IDLE_CLIENTS"
    for t in $(json_targets); do
      [ "$t" = direct ] && continue
      printf ',\n    "%s": {"rss_anon_kb_before": %s, "rss_anon_kb_after": %s, "rss_anon_kib_per_client": %s, "pss_anon_kb_before": %s, "pss_anon_kb_after": %s, "pss_anon_kib_per_client": %s}' "$t" \
        "$(jnum "${MEM["$t rss0"]:-}")" "$(jnum "${MEM["$t rss1"]:-}")" "$(jnum "$(idle_kib "$t" rss)")" \
        "$(jnum "${MEM["$t pss0"]:-}")" "$(jnum "${MEM["$t pss1"]:-}")" "$(jnum "$(idle_kib "$t" pss)")"
    done
    printf '},\n  "failed": %s\n}\n' "$([ "$FAILED" -eq 0 ] && echo false || echo true)"
  } >"$OUT/results.json"
}

report() {
  {
    print_throughput_table
    print_memory_table
    print_floors
  } | tee "$OUT/results.txt"
  write_json
  say "results in $OUT/results.txt and $OUT/results.json; logs in $OUT/logs/"
}

# 6. pglease's memory while a 1 GiB result streams through it (its own cluster);
# B's too in an A/B run (large_result_b.txt).
run_large_result() {
  local gib=${BENCH_LARGE_RESULT_GIB:-1}
  [ "$gib" = 0 ] && return 0
  if has_target pglease; then large_result pglease "$gib" "$OUT/large_result.txt"; fi
  if has_target pglease_b; then large_result pglease_b "$gib" "$OUT/large_result_b.txt"; fi
}

# large_result TARGET GIB FILE
large_result() {
  say "$2 GiB result through $1 (tests/bench/large_result.py)"
  "$PY" "$REPO/tests/bench/large_result.py" "${BIN[$1]}" "$2" | tee "$3" || FAILED=1
}

# -------------------------------------------------------------- cleanup ---

save_logs() {
  [ -n "$TMP" ] && [ -d "$TMP" ] || return 0
  rm -rf "$OUT/logs"; mkdir -p "$OUT/logs"
  cp "$TMP"/pgbench/*.log "$OUT/logs/" 2>/dev/null || true
  cp "$TMP"/pgbouncer/*.log "$TMP"/pglease/*.log "$TMP"/pglease_b/*.log "$OUT/logs/" 2>/dev/null || true
  cp "$TMP"/pg/postgresql.log "$OUT/logs/" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap '' INT TERM
  stop_idle_clients
  stop_pooler pglease_b
  stop_pooler pglease
  stop_pooler pgbouncer
  [ "$CLUSTER_STARTED" -eq 1 ] && { pgcluster stop "$TMP/pg" || true; }
  save_logs
  [ -n "$TMP" ] && rm -rf "$TMP"
  exit "$rc"
}

main() {
  check_inputs
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  make_tmp
  start_cluster
  init_bench_db
  has_target pgbouncer && start_pgbouncer
  has_target pglease && start_pglease pglease
  has_target pglease_b && start_pglease pglease_b
  run_idle_memory
  run_throughput
  report
  run_large_result
  if [ "$FAILED" -ne 0 ]; then
    say "some runs failed (see above and $OUT/logs/)"
    exit 1
  fi
}

main "$@"
