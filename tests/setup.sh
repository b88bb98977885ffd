#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian 12 machine (run as root, or with sudo rights):
# memcached 1.6.18 (the reference server), libmemcached-tools (memccapable), the Python test
# packages and cargo-fuzz. Skips whatever is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if ! command -v memcached >/dev/null || ! command -v memccapable >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends memcached libmemcached-tools >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check \
    -r tests/integration/requirements.txt -r tests/bench/requirements.txt
command -v cargo-fuzz >/dev/null || cargo install -q --locked cargo-fuzz
