#!/usr/bin/env bash
# Smoke test of the e2e control plane and the project's CRD:
#   up.sh in a temporary state dir; /version is v1.37.2; crds/cachepair.yaml
#   applies (server-side) and becomes Established; a CachePair with an empty
#   spec is accepted with its defaults filled in; invalid ones are rejected
#   with messages naming the field; down.sh.
#
# Usage: smoke.sh [path/to/cachepair.yaml]
#   (default: crds/cachepair.yaml of the repository this script is in)
#   CACHEPAIR_KEEP_STATE=1 keeps the state dir (logs) after the run.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
crd="${1:-$repo/crds/cachepair.yaml}"
[[ -f "$crd" ]] || { echo "smoke.sh: no CRD at $crd" >&2; exit 2; }

state="$(mktemp -d "${TMPDIR:-/tmp}/cachepair-cp.XXXXXX")"
cleanup() {
    "$here/down.sh" "$state" || true
    if [[ "${CACHEPAIR_KEEP_STATE:-}" == 1 ]]; then
        echo "smoke: state kept in $state"
    else
        rm -rf "$state"
    fi
}
trap cleanup EXIT

passed=0
failed=0
ok() {
    echo "ok: $*"
    passed=$((passed + 1))
}
fail() {
    echo "FAIL: $*"
    failed=$((failed + 1))
}

"$here/up.sh" "$state"
# shellcheck source=/dev/null
source "$state/env.sh"
k() { "$CACHEPAIR_K8S_BIN/kubectl" --request-timeout=10s "$@"; }

echo "--- kubectl get --raw /version"
version_json="$(k get --raw /version)"
echo "$version_json"
if grep -q '"gitVersion": *"v1.37.2"' <<<"$version_json"; then
    ok "apiserver reports v1.37.2"
else
    fail "apiserver does not report v1.37.2"
fi
echo "--- kubectl version"
k version || true

echo "--- kubectl apply --server-side -f $crd"
if out="$(k apply --server-side -f "$crd" 2>&1)"; then
    echo "$out"
    ok "CRD applied"
else
    echo "$out"
    fail "CRD rejected by the API server"
fi

echo "--- wait until crd/cachepairs.cachepair.io is Established"
# Polled rather than `kubectl wait`: just after the create the CRD may have no conditions
# yet, and kubectl wait then fails at once instead of waiting.
established=""
for _ in $(seq 1 60); do
    established="$(k get crd cachepairs.cachepair.io \
        -o jsonpath='{.status.conditions[?(@.type=="Established")].status}' 2>/dev/null || true)"
    [ "$established" = True ] && break
    sleep 0.5
done
if [ "$established" = True ]; then
    ok "CRD Established"
else
    k get crd cachepairs.cachepair.io -o yaml || true
    fail "CRD not Established"
fi
# Discovery of the new API can lag behind Established by a moment.
for _ in $(seq 1 20); do
    k api-resources --api-group=cachepair.io 2>/dev/null | grep -q cachepairs && break
    sleep 0.5
done

echo "--- a valid CachePair: spec: {}"
if out="$(k apply -f - 2>&1 <<'EOF'
apiVersion: cachepair.io/v1alpha1
kind: CachePair
metadata:
  name: demo
  namespace: default
spec: {}
EOF
)"; then
    echo "$out"
    ok "valid CachePair accepted"
else
    echo "$out"
    fail "valid CachePair rejected"
fi
echo "--- kubectl get cp demo -o yaml"
if cp_yaml="$(k get cp demo -o yaml 2>&1)"; then
    echo "$cp_yaml"
    if grep -qE '^ +memoryMB: 64$' <<<"$cp_yaml"; then
        ok "defaults filled in (memoryMB: 64)"
    else
        fail "memoryMB: 64 not defaulted"
    fi
else
    echo "$cp_yaml"
    fail "kubectl get cp demo"
fi

# reject <name> <field> <spec-json>: the API server must refuse it, naming <field>.
reject() {
    local name="$1" field="$2" spec="$3" out
    echo "--- an invalid CachePair $name: spec: $spec"
    if out="$(k apply -f - 2>&1 <<EOF
{"apiVersion": "cachepair.io/v1alpha1", "kind": "CachePair",
 "metadata": {"name": "$name", "namespace": "default"}, "spec": $spec}
EOF
)"; then
        echo "$out"
        fail "$name accepted"
        return
    fi
    echo "API server says: $out"
    if grep -qF "$field" <<<"$out"; then
        ok "$name rejected, naming $field"
    else
        fail "$name rejected, but the message does not name $field"
    fi
}
reject bad-memory spec.memoryMB '{"memoryMB": 0}'
reject bad-mode spec.replication.mode '{"replication": {"mode": "fast"}}'
reject bad-vrrp spec.exposure.vrrp.nodes \
    '{"exposure": {"vrrp": {"virtualIP": "192.0.2.10", "interface": "eth0", "routerID": 51, "nodes": ["n1", "n1"]}}}'

echo "--- kubectl get cp"
k get cp -A || true

echo "smoke: $passed passed, $failed failed"
((failed == 0))
