#!/usr/bin/env bash
# Installs the Debian packages a make target needs, when they are missing.
# usage: deps.sh build|run|test|bench
# As root it runs apt-get; otherwise it prints the exact apt-get line and fails.
set -euo pipefail

build_pkgs="gcc make pkg-config libpq-dev libssl-dev libev-dev libinih-dev libsystemd-dev libmicrohttpd-dev"
run_pkgs="$build_pkgs postgresql postgresql-client"
test_pkgs="$run_pkgs openssl clang libclang-rt-14-dev libcriterion-dev python3-psycopg python3-pytest procps util-linux systemd
  openjdk-17-jdk-headless libpostgresql-jdbc-java libjunixsocket-java libjunixsocket-jni"
# node and npm for the client matrix: Debian's, unless some node is already on PATH.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  test_pkgs="$test_pkgs nodejs npm"
fi
bench_pkgs="$test_pkgs pgbouncer"

case "${1:-build}" in
  build) wanted=$build_pkgs ;;
  run)   wanted=$run_pkgs ;;
  test)  wanted=$test_pkgs ;;
  bench) wanted=$bench_pkgs ;;
  *) echo "usage: $0 build|run|test|bench" >&2; exit 2 ;;
esac

missing=()
for p in $wanted; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

line="apt-get install -y ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "pglease: missing packages; run as root:" >&2
  echo "  apt-get update && $line" >&2
  exit 1
fi
echo "pglease: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" >/dev/null
