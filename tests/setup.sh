#!/usr/bin/env bash
# Installs what the tests need on a fresh Debian 12 machine (run as root, or with sudo rights):
# memcached 1.6.18 (the reference server), libmemcached-tools (memccapable), keepalived (the
# VRRP peer), the Python test packages, cargo-fuzz, helm and promtool (for the chart tests) and
# a Kubernetes control plane built from the Go module proxy (for the end-to-end tests). Skips
# whatever is already there.
#
# Two prerequisites it checks but does not install: a Rust toolchain, 1.88 or newer, with
# rustfmt and clippy (https://rustup.rs), and Go 1.21 or newer (https://go.dev/dl/), which
# fetches the Go toolchain that tests/controlplane/go.mod asks for from the module proxy.
set -euo pipefail
cd "$(dirname "$0")/.."

need() { echo "setup: $*" >&2; exit 1; }
command -v cargo >/dev/null || need "Rust is needed: install it with rustup (https://rustup.rs), then run this again"
rust_minor="$(rustc --version | sed -n 's/^rustc 1\.\([0-9]*\)\..*/\1/p')"
[ "${rust_minor:-0}" -ge 88 ] || need "Rust 1.88 or newer is needed (found $(rustc --version)): rustup update stable"
if ! cargo fmt --version >/dev/null 2>&1 || ! cargo clippy --version >/dev/null 2>&1; then
    command -v rustup >/dev/null || need "cargo fmt and cargo clippy are needed (rustfmt and clippy)"
    rustup component add rustfmt clippy
fi
command -v go >/dev/null ||
    need "Go 1.21 or newer is needed to build helm and the Kubernetes control plane: https://go.dev/dl/"
go_minor="$(go env GOVERSION | sed -n 's/^go1\.\([0-9]*\).*/\1/p')"
[ "${go_minor:-0}" -ge 21 ] || need "Go 1.21 or newer is needed (found $(go env GOVERSION)): https://go.dev/dl/"

sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
# memcached and memccapable; saslpasswd2 (sasl2-bin) and the SASL PLAIN mechanism
# (libsasl2-modules) for memcached -S, the reference of the authentication tests; openssl, curl,
# ip and unshare for the end-to-end control plane;
# keepalived as the VRRP peer of cache-node vrrp; for scripts/images.sh, readelf and objcopy
# (binutils), dpkg-deb and apt-get download (with fresh package lists), and skopeo, with which
# the packaging tests read the images as registries and runtimes do.
if ! command -v memcached >/dev/null || ! command -v memccapable >/dev/null ||
    ! command -v keepalived >/dev/null || ! command -v saslpasswd2 >/dev/null ||
    ! ls /usr/lib/*/sasl2/libplain.so >/dev/null 2>&1 ||
    ! command -v openssl >/dev/null || ! command -v curl >/dev/null ||
    ! command -v ip >/dev/null || ! command -v unshare >/dev/null ||
    ! command -v readelf >/dev/null || ! command -v objcopy >/dev/null ||
    ! command -v skopeo >/dev/null || ! apt-cache policy libc6 | grep -q 'Candidate: [0-9]'; then
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq --no-install-recommends memcached libmemcached-tools \
        sasl2-bin libsasl2-modules \
        openssl curl iproute2 util-linux keepalived binutils skopeo >/dev/null
fi
python3 -m pip install -q --disable-pip-version-check \
    -r tests/integration/requirements.txt -r tests/bench/requirements.txt \
    -r tests/manifests/requirements.txt
command -v cargo-fuzz >/dev/null || cargo install -q --locked cargo-fuzz

# helm, for tests/manifests: built once from the Go module proxy into a cache outside the repo,
# one folder per version (tests/manifests/helm-version), where the tests look for it. The
# ldflags are those of helm's release build: its version, and as default Kubernetes version the
# minor of the client-go it is built with (v0.37 → 1.37), as its Makefile does.
helm_version="$(cat tests/manifests/helm-version)"
helm_dir="${XDG_CACHE_HOME:-$HOME/.cache}/cachepair/tools/helm-$helm_version"
if [ ! -x "$helm_dir/helm" ]; then
    command -v go >/dev/null || { echo "setup: go is needed to build helm" >&2; exit 1; }
    helm_gomod="$(go mod download -json "helm.sh/helm/v3@$helm_version" |
        sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
    k8s_minor="$(sed -n 's/^[[:space:]]*k8s\.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "$helm_gomod")"
    [ -n "$k8s_minor" ] || { echo "setup: no k8s.io/client-go in $helm_gomod" >&2; exit 1; }
    rm -rf "$helm_dir.tmp"
    CGO_ENABLED=0 GOBIN="$helm_dir.tmp" go install -trimpath -ldflags "-w -s \
        -X helm.sh/helm/v3/internal/version.version=$helm_version \
        -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 \
        -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$k8s_minor \
        -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 \
        -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$k8s_minor" \
        "helm.sh/helm/v3/cmd/helm@$helm_version"
    rm -rf "$helm_dir" && mv "$helm_dir.tmp" "$helm_dir"
fi

# promtool, for the chart's alerting rules (tests/manifests/test_monitoring.py): built once from
# the Go module proxy like helm (Prometheus v3's module is tagged v0.3xx).
promtool_version="$(cat tests/manifests/promtool-version)"
promtool_dir="${XDG_CACHE_HOME:-$HOME/.cache}/cachepair/tools/promtool-$promtool_version"
if [ ! -x "$promtool_dir/promtool" ]; then
    rm -rf "$promtool_dir.tmp"
    CGO_ENABLED=0 GOBIN="$promtool_dir.tmp" go install -trimpath -ldflags "-w -s" \
        "github.com/prometheus/prometheus/cmd/promtool@$promtool_version"
    rm -rf "$promtool_dir" && mv "$promtool_dir.tmp" "$promtool_dir"
fi

# The Kubernetes control plane for the end-to-end tests (kube-apiserver, controller-manager,
# scheduler, kubectl, etcd): built once from the Go module proxy into a cache outside the repo,
# keyed by version (about 6 minutes on 2 cores the first time; nothing after).
tests/controlplane/build.sh >/dev/null
