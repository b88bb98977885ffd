#!/usr/bin/env bash
# Runs a test suite RUNS times in a row (default 20) with a busy loop on every core beside it:
# timing-dependent tests (the start-up rule, failover, the shutdown hand-over, VRRP takeovers)
# must hold on a starved machine, as on a busy CI runner or laptop. Stops at the first failure.
#   tests/stress.sh [RUNS [CARGO TEST ARGS...]]
#   tests/stress.sh 20                                   # the replication suite (the default)
#   tests/stress.sh 5 --workspace --exclude e2e          # every Rust test but the end-to-end ones
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-20}"
shift || true
suite=("$@")
[ ${#suite[@]} -gt 0 ] || suite=(-p cache-node --test replication)
cargo test -q "${suite[@]}" --no-run
hogs=()
trap 'kill "${hogs[@]}" 2>/dev/null || true' EXIT
for _ in $(seq "$(nproc)"); do
    (while :; do :; done) &
    hogs+=($!)
done
for i in $(seq "$runs"); do
    echo "== cargo test ${suite[*]}: run $i of $runs, beside $(nproc) busy loops"
    cargo test -q "${suite[@]}"
done
echo "cargo test ${suite[*]}: $runs runs in a row passed under load"
