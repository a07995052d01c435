#!/usr/bin/env bash
# Builds pglease as of commit REV, for the B side of an A/B benchmark, and
# prints the binary's path (the only thing on stdout):
#
#   PGLEASE_B_BIN=$(tests/bench/build-rev.sh b0a4339) tests/bench/bench.sh
#   make bench-ab REV=b0a4339        # the same, after building ./pglease (A)
#
# The tree comes from `git archive` into build/rev-<12-digit hash>/ (a plain
# copy: no worktree to register, nothing in .git changes), and is built there
# with its own Makefile; a second call for the same commit reuses it.
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 REV   (a commit, tag or branch)" >&2; exit 2; }
REPO=$(cd "$(dirname "$0")/../.." && pwd)
rev=$(git -C "$REPO" rev-parse --verify --quiet "$1^{commit}") \
  || { echo "build-rev: '$1' is not a commit of $REPO" >&2; exit 1; }
dir=$REPO/build/rev-${rev:0:12}

if [ ! -f "$dir/.extracted" ]; then
  rm -rf "$dir"; mkdir -p "$dir"
  git -C "$REPO" archive "$rev" | tar -x -C "$dir"
  echo "$rev" >"$dir/.extracted"        # a half-extracted tree is redone next time
fi
echo "build-rev: building $1 ($rev) in $dir" >&2
make -C "$dir" --no-print-directory pglease >&2
echo "$dir/pglease"
