#!/usr/bin/env bash
# Runs every test of the project: lint, unit and integration tests, black-box tests against
# memcached 1.6.18, the Kubernetes packaging tests, the end-to-end tests against a real control
# plane, a short smoke run of each fuzz target and of the benchmark tooling.
# Installs its dependencies first (tests/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n== %s\n' "$*"; }

step "dependencies"
tests/setup.sh

step "format and lints"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings

step "unit and Rust integration tests"
cargo test --workspace --exclude e2e

step "the replication suite again, with a busy loop on every core beside it"
tests/stress.sh 1

step "black-box tests (memccapable, pymemcache, differential against memcached 1.6.18);" \
    "Kubernetes packaging (helm lint and template, deploy/, CRD samples, Dockerfiles, the images)"
# The images the packaging and end-to-end tests use (release binaries, reused by the benchmarks).
scripts/images.sh
cargo build -p cache-node
python3 -m pytest -q tests/integration tests/manifests

step "end-to-end: the operator against a real control plane (v1.37.2), pods as processes" \
    "run from the images built above"
cargo build -p cache-node -p operator -p kubectl-cachepair
cargo test -p e2e --test e2e

step "fuzz smoke runs"
FUZZ_SECONDS="${FUZZ_SECONDS:-20}" tests/fuzz-smoke.sh

step "benchmark smoke run (correctness of the tooling, not a measurement)"
python3 tests/bench/compare.py --build --quick
python3 tests/bench/compare.py --quick --tls
python3 tests/bench/memory.py --quick
python3 tests/bench/replication.py --quick
python3 tests/bench/vrrp.py --quick
python3 tests/bench/failover_vrrp.py --quick

echo
echo "all tests passed"
