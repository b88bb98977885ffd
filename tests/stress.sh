#!/usr/bin/env bash
# Runs the replication suite RUNS times in a row (default 20) with a busy loop on every core
# beside it: the start-up rule, failover and the shutdown hand-over must hold on a starved
# machine, as on a busy CI runner or laptop. Stops at the first failure.
#   tests/stress-replication.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-20}"
cargo test -q -p cache-node --test replication --no-run
hogs=()
trap 'kill "${hogs[@]}" 2>/dev/null || true' EXIT
for _ in $(seq "$(nproc)"); do
    (while :; do :; done) &
    hogs+=($!)
done
for i in $(seq "$runs"); do
    echo "== replication suite, run $i of $runs, beside $(nproc) busy loops"
    cargo test -q -p cache-node --test replication
done
echo "replication suite: $runs runs in a row passed under load"
