#!/usr/bin/env bash
# Builds the cache-node and operator images without a container daemon:
#   target/images/cache-node-<version>.oci.tar   cachepair/cache-node:<version>
#   target/images/operator-<version>.oci.tar     cachepair/operator:<version>
# the names the chart (image.repository) and the CachePair default (spec.image) use.
#
# Each is the final stage of docker/<name>.Dockerfile (same entrypoint, command, user 65532,
# ports and labels, read from the Dockerfile) on a distroless-like base assembled from Debian's
# packages (libc6, libgcc-s1, ca-certificates; no shell), with the binary from
# `cargo build --release`. Needs apt-get, dpkg-deb, python3, readelf and objcopy (binutils);
# no root, no Docker daemon, no network beyond the Debian mirror (packages cached in
# ~/.cache/cachepair/debs). See scripts/images.py for the layout.
#
# Load them into a cluster:
#   kind load image-archive target/images/cache-node-0.1.0.oci.tar    (and operator-0.1.0.oci.tar)
#   k3s ctr images import target/images/cache-node-0.1.0.oci.tar
#   podman load -i target/images/cache-node-0.1.0.oci.tar
#   skopeo copy oci-archive:target/images/cache-node-0.1.0.oci.tar docker://REGISTRY/cachepair/cache-node:0.1.0
#
# Options: --no-build (use the release binaries as they are), --out DIR, --prefix PREFIX
# (repository prefix instead of cachepair), image names (cache-node, operator: default both).
# SOURCE_DATE_EPOCH (default: the last commit's time) sets every timestamp; VERSION and
# REVISION override the Dockerfiles' ARGs as --build-arg would.
set -euo pipefail
cd "$(dirname "$0")/.."

build=1
args=()
for a in "$@"; do
    case "$a" in
        --no-build) build=0 ;;
        *) args+=("$a") ;;
    esac
done
if [ "$build" = 1 ]; then
    # One package at a time: built together, cargo would unify their dependencies' features,
    # and the benchmarks' `cargo build --release -p cache-node` would then build it again.
    cargo build --release --locked -p cache-node --bin cache-node
    cargo build --release --locked -p operator --bin cachepair-operator
fi
exec python3 scripts/images.py "${args[@]}"
