#!/usr/bin/env bash
# Regenerates the CachePair CRD from the Rust types into every place that ships it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo run -q -p operator --bin crdgen > crds/cachepair.yaml
cp crds/cachepair.yaml charts/cachepair-operator/crds/cachepair.yaml
cp crds/cachepair.yaml deploy/crd.yaml
echo "crds/cachepair.yaml, charts/cachepair-operator/crds/cachepair.yaml, deploy/crd.yaml regenerated"
