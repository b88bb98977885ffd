#!/usr/bin/env bash
# Runs every cargo-fuzz target of cache-node for FUZZ_SECONDS (default 20) each, starting from
# the committed seed corpus. Longer runs: FUZZ_SECONDS=600 tests/fuzz-smoke.sh
set -euo pipefail
cd "$(dirname "$0")/../cache-node/fuzz"
seconds="${FUZZ_SECONDS:-20}"
toolchain=nightly
if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    # cargo-fuzz needs unstable flags; stable accepts them when told it is bootstrapping.
    toolchain=stable
    export RUSTC_BOOTSTRAP=1
fi
for target in $(cargo +"$toolchain" fuzz list); do
    echo "-- fuzz target $target (${seconds}s)"
    mkdir -p "corpus/$target"
    dict=()
    [ -f "dict/$target.dict" ] && dict=(-dict="dict/$target.dict")
    cargo +"$toolchain" fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 "${dict[@]}"
done
