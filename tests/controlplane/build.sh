#!/usr/bin/env bash
# Build the e2e control plane from the Go module proxy:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (k8s.io/kubernetes v1.37.2)
#   etcd                                                              (go.etcd.io/etcd/server/v3 v3.7.0)
# into a cache directory outside the repository, keyed by version:
#   ${CACHEPAIR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cachepair}/k8s-v1.37.2-etcd-v3.7.0/bin/
# A binary that already exists there is not built again. The bin directory is
# printed on the last line of output (for `bin="$(build.sh | tail -n1)"`).
#
# The versions here must match go.mod (checked below).
set -euo pipefail

K8S_VERSION=v1.37.2
ETCD_VERSION=v3.7.0

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache_root="${CACHEPAIR_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/cachepair}"
out_dir="$cache_root/k8s-${K8S_VERSION}-etcd-${ETCD_VERSION}"
bin_dir="$out_dir/bin"

log() { printf 'build.sh: %s\n' "$*" >&2; }

# go.mod must pin exactly the versions this script stamps into the binaries.
grep -Eq "^[[:space:]]*k8s\.io/kubernetes ${K8S_VERSION//./\\.}\$" "$here/go.mod" ||
    { log "go.mod does not require k8s.io/kubernetes ${K8S_VERSION}"; exit 1; }
grep -Eq "^[[:space:]]*go\.etcd\.io/etcd/server/v3 ${ETCD_VERSION//./\\.}\$" "$here/go.mod" ||
    { log "go.mod does not require go.etcd.io/etcd/server/v3 ${ETCD_VERSION}"; exit 1; }

# name  package
targets=(
    "etcd go.etcd.io/etcd/server/v3"
    "kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver"
    "kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager"
    "kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler"
    "kubectl k8s.io/kubernetes/cmd/kubectl"
)

missing=()
for t in "${targets[@]}"; do
    name="${t%% *}"
    [[ -x "$bin_dir/$name" ]] || missing+=("$t")
done
if ((${#missing[@]} == 0)); then
    log "all binaries already built in $bin_dir; nothing to do"
    echo "$bin_dir"
    exit 0
fi

mkdir -p "$bin_dir"

# The release's own build (hack/lib/version.sh) stamps these into both
# k8s.io/component-base/version and k8s.io/client-go/pkg/version. The module
# proxy gives no git commit; the build date is the release's tag time, so the
# result does not depend on when it was built.
k8s_minor="${K8S_VERSION#v1.}"
k8s_minor="${k8s_minor%%.*}"
build_date="$(cd "$here" && GOWORK=off go list -m \
    -f '{{with .Time}}{{.UTC.Format "2006-01-02T15:04:05Z"}}{{end}}' k8s.io/kubernetes)"
build_date="${build_date:-1970-01-01T00:00:00Z}"
k8s_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    k8s_ldflags+=" -X ${pkg}.gitVersion=${K8S_VERSION}"
    k8s_ldflags+=" -X ${pkg}.gitMajor=1"
    k8s_ldflags+=" -X ${pkg}.gitMinor=${k8s_minor}"
    k8s_ldflags+=" -X ${pkg}.gitCommit=unknown"
    k8s_ldflags+=" -X ${pkg}.gitTreeState=clean"
    k8s_ldflags+=" -X ${pkg}.buildDate=${build_date}"
done
etcd_ldflags="-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=unknown"

export CGO_ENABLED=0 GOWORK=off
# go.sum is complete (go mod tidy with tools.go), so the default -mod=readonly
# is enough and nothing is rewritten by a build.
export GOFLAGS="${GOFLAGS:-} -mod=readonly"

times_file="$out_dir/build-times.txt"
total_start=$(date +%s)
for t in "${missing[@]}"; do
    name="${t%% *}"
    pkg="${t#* }"
    if [[ "$name" == etcd ]]; then ldflags="$etcd_ldflags"; else ldflags="$k8s_ldflags"; fi
    log "building $name ($pkg) ..."
    start=$(date +%s)
    tmp="$bin_dir/.$name.tmp.$$"
    # Built into a temporary name and renamed, so an interrupted build never
    # leaves a binary that a later run would take as finished.
    if ! (cd "$here" && go build -p 2 -trimpath -ldflags "$ldflags" -o "$tmp" "$pkg"); then
        rm -f "$tmp"
        log "building $name failed"
        exit 1
    fi
    mv -f "$tmp" "$bin_dir/$name"
    secs=$(($(date +%s) - start))
    log "built $name in ${secs}s"
    printf '%s\t%ss\t%s\t%s\n' "$name" "$secs" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" "$(go env GOVERSION)" >>"$times_file"
done
log "built ${#missing[@]} binaries in $(($(date +%s) - total_start))s (times in $times_file)"
echo "$bin_dir"
