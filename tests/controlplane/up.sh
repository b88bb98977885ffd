#!/usr/bin/env bash
# Start a Kubernetes control plane on loopback for the e2e tests:
#   etcd, kube-apiserver, kube-controller-manager, kube-scheduler.
# No kubelet, no kube-proxy, no DNS, no containers.
#
# Usage: up.sh <state-dir>
#
# Everything lives in <state-dir>: certificates (pki/), etcd's data (etcd/),
# kubeconfigs, logs (logs/), PIDs (pids/) and env.sh, a file to `source` that
# sets KUBECONFIG, the ports and the bin directory. The admin kubeconfig is
# <state-dir>/admin.kubeconfig (group system:masters). Every listener is on
# 127.0.0.1, on ports picked free at start. Stop with down.sh <state-dir>.
#
# A state dir that down.sh stopped can be started again: certificates and
# etcd's data are kept; new free ports are picked.
#
# Environment:
#   CACHEPAIR_K8S_BIN   directory with the binaries (default: what build.sh
#                       prints; build.sh builds them first if they are missing)
#   CACHEPAIR_UP_TIMEOUT  seconds to wait for each component (default 60)
#
# The controllers keep Kubernetes' defaults (a node is marked NotReady 50 s after
# its last Lease renewal): the tests measure what clients see on a default cluster.
set -euo pipefail

if (($# != 1)); then
    echo "usage: $0 <state-dir>" >&2
    exit 2
fi

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$1"
state="$(cd "$1" && pwd)"
timeout_s="${CACHEPAIR_UP_TIMEOUT:-60}"

SERVICE_CIDR=10.0.0.0/24
SERVICE_IP=10.0.0.1 # first address of SERVICE_CIDR: the `kubernetes` Service
SA_ISSUER=https://kubernetes.default.svc

log() { printf 'up.sh: %s\n' "$*" >&2; }
die() {
    log "$*"
    exit 1
}

# --- binaries ---------------------------------------------------------------
if [[ -n "${CACHEPAIR_K8S_BIN:-}" ]]; then
    bin="$CACHEPAIR_K8S_BIN"
else
    bin="$("$here/build.sh" | tail -n1)"
fi
for b in etcd kube-apiserver kube-controller-manager kube-scheduler kubectl; do
    [[ -x "$bin/$b" ]] || die "missing $bin/$b (run build.sh)"
done

# --- refuse to start twice ---------------------------------------------------
pid_dir="$state/pids"
log_dir="$state/logs"
pki="$state/pki"
mkdir -p "$pid_dir" "$log_dir" "$pki"
for f in "$pid_dir"/*.pid; do
    [[ -e "$f" ]] || continue
    pid="$(cat "$f")"
    if [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null &&
        tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF "$state/"; then
        die "a control plane is already running in $state ($(basename "$f" .pid), pid $pid); run down.sh first"
    fi
    rm -f "$f"
done

started=0
cleanup_on_failure() {
    local rc=$?
    if ((rc != 0 && started)); then
        log "start failed (exit $rc); last lines of the logs:"
        for f in "$log_dir"/*.log; do
            [[ -e "$f" ]] || continue
            printf '==> %s <==\n' "$f" >&2
            tail -n 15 "$f" >&2 || true
        done
        "$here/down.sh" "$state" >&2 || true
    fi
}
trap cleanup_on_failure EXIT

# --- free ports ----------------------------------------------------------------
# Below the kernel's ephemeral range (32768+) so that no outgoing connection
# takes one between picking and binding; checked against every socket in use.
ss -Htan >/dev/null || die "ss (iproute2) is needed to pick free ports"
picked=" "
# pick_port <var>: set <var> to a free port not picked before.
pick_port() {
    local p i
    for ((i = 0; i < 200; i++)); do
        p=$((20000 + RANDOM % 12000))
        [[ "$picked" != *" $p "* ]] || continue
        if [[ -z "$(ss -Htan "( sport = :$p )")" && -z "$(ss -Huan "( sport = :$p )")" ]]; then
            picked+="$p "
            printf -v "$1" '%s' "$p"
            return 0
        fi
    done
    die "no free port found"
}
pick_port ETCD_CLIENT_PORT
pick_port ETCD_PEER_PORT
pick_port APISERVER_PORT
pick_port KCM_PORT
pick_port SCHEDULER_PORT
APISERVER_URL="https://127.0.0.1:$APISERVER_PORT"
ETCD_URL="http://127.0.0.1:$ETCD_CLIENT_PORT"

# --- certificates ------------------------------------------------------------
# A CA, the apiserver's serving certificate and one client certificate for
# each user. Kept across restarts of the same state dir.
ossl() { openssl "$@" 2>>"$log_dir/openssl.log"; }

# new_ca <name> <CN>
new_ca() {
    [[ -s "$pki/$1.crt" ]] && return 0
    ossl genrsa -out "$pki/$1.key" 2048
    ossl req -x509 -new -nodes -key "$pki/$1.key" -sha256 -days 3650 \
        -subj "/CN=$2" -out "$pki/$1.crt"
}
# The cluster CA signs the serving certificate and every client certificate.
# The front-proxy CA signs only the certificate the apiserver shows when it
# proxies to an aggregated API (no such API here; it keeps the request-header
# authentication of every component configured, and the logs quiet).
log "certificates in $pki"
new_ca ca cachepair-e2e-ca
new_ca front-proxy-ca cachepair-e2e-front-proxy-ca

# issue <name> <subject> <extfile-contents> [<ca>]
issue() {
    local name="$1" subj="$2" ext="$3" ca="${4:-ca}"
    [[ -s "$pki/$name.crt" ]] && return 0
    ossl genrsa -out "$pki/$name.key" 2048
    ossl req -new -key "$pki/$name.key" -subj "$subj" -out "$pki/$name.csr"
    printf '%s\n' "$ext" >"$pki/$name.ext"
    ossl x509 -req -in "$pki/$name.csr" -CA "$pki/$ca.crt" -CAkey "$pki/$ca.key" \
        -CAcreateserial -days 3650 -sha256 -extfile "$pki/$name.ext" -out "$pki/$name.crt"
    rm -f "$pki/$name.csr"
}
client_ext="basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"

issue apiserver "/CN=kube-apiserver" "basicConstraints=CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,DNS:localhost,IP:$SERVICE_IP,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
issue admin "/O=system:masters/CN=cachepair-admin" "$client_ext"
issue kube-controller-manager "/CN=system:kube-controller-manager" "$client_ext"
issue kube-scheduler "/CN=system:kube-scheduler" "$client_ext"
issue apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "$client_ext"
issue front-proxy-client "/CN=front-proxy-client" "$client_ext" front-proxy-ca

if [[ ! -s "$pki/service-account.key" ]]; then
    ossl genrsa -out "$pki/service-account.key" 2048
    ossl rsa -in "$pki/service-account.key" -pubout -out "$pki/service-account.pub"
fi
chmod 600 "$pki"/*.key

# --- kubeconfigs ---------------------------------------------------------------
# write_kubeconfig <file> <user> <cert-name>
write_kubeconfig() {
    local file="$1" user="$2" cert="$3"
    cat >"$file" <<EOF
apiVersion: v1
kind: Config
clusters:
- name: cachepair-e2e
  cluster:
    server: $APISERVER_URL
    certificate-authority-data: $(base64 -w0 <"$pki/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 <"$pki/$cert.crt")
    client-key-data: $(base64 -w0 <"$pki/$cert.key")
contexts:
- name: cachepair-e2e
  context:
    cluster: cachepair-e2e
    user: $user
current-context: cachepair-e2e
EOF
    chmod 600 "$file"
}
write_kubeconfig "$state/admin.kubeconfig" cachepair-admin admin
write_kubeconfig "$state/kube-controller-manager.kubeconfig" system:kube-controller-manager kube-controller-manager
write_kubeconfig "$state/kube-scheduler.kubeconfig" system:kube-scheduler kube-scheduler

# --- processes -------------------------------------------------------------------
# start <name> <binary> <args...>: detached (own session, no inherited fds),
# output to logs/<name>.log, PID to pids/<name>.pid.
start() {
    local name="$1"
    shift
    setsid "$@" </dev/null >>"$log_dir/$name.log" 2>&1 &
    echo $! >"$pid_dir/$name.pid"
    started=1
    log "started $name (pid $!)"
}

alive() { kill -0 "$(cat "$pid_dir/$1.pid")" 2>/dev/null; }

# wait_for <what> <component> <command...>: run the command every 0.5 s until it
# succeeds, the component dies, or the timeout passes.
wait_for() {
    local what="$1" comp="$2"
    shift 2
    local deadline=$((SECONDS + timeout_s))
    until "$@" >/dev/null 2>&1; do
        alive "$comp" || die "$comp exited while waiting for $what (see $log_dir/$comp.log)"
        ((SECONDS < deadline)) || die "timed out after ${timeout_s}s waiting for $what"
        sleep 0.5
    done
    log "ready: $what"
}

# kubectl's discovery cache goes into the state dir, not ~/.kube.
export KUBECACHEDIR="$state/kubectl-cache"
kubectl_admin() { "$bin/kubectl" --kubeconfig "$state/admin.kubeconfig" --request-timeout=5s "$@"; }

mkdir -p "$state/etcd"
chmod 700 "$state/etcd"
start etcd "$bin/etcd" \
    --name cachepair-e2e \
    --data-dir "$state/etcd" \
    --listen-client-urls "$ETCD_URL" \
    --advertise-client-urls "$ETCD_URL" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster "cachepair-e2e=http://127.0.0.1:$ETCD_PEER_PORT" \
    --initial-cluster-state new \
    --unsafe-no-fsync \
    --log-level warn
wait_for "etcd $ETCD_URL/health" etcd \
    curl -fsS --max-time 2 --noproxy '*' "$ETCD_URL/health"

start kube-apiserver "$bin/kube-apiserver" \
    --bind-address 127.0.0.1 \
    --advertise-address 127.0.0.1 \
    --endpoint-reconciler-type none \
    --secure-port "$APISERVER_PORT" \
    --cert-dir "$state/apiserver-certs" \
    --tls-cert-file "$pki/apiserver.crt" \
    --tls-private-key-file "$pki/apiserver.key" \
    --client-ca-file "$pki/ca.crt" \
    --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
    --requestheader-client-ca-file "$pki/front-proxy-ca.crt" \
    --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User \
    --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$pki/front-proxy-client.crt" \
    --proxy-client-key-file "$pki/front-proxy-client.key" \
    --etcd-servers "$ETCD_URL" \
    --service-cluster-ip-range "$SERVICE_CIDR" \
    --service-account-issuer "$SA_ISSUER" \
    --service-account-key-file "$pki/service-account.pub" \
    --service-account-signing-key-file "$pki/service-account.key" \
    --authorization-mode Node,RBAC \
    --allow-privileged=true \
    --profiling=false \
    --v 1
wait_for "kube-apiserver $APISERVER_URL/readyz" kube-apiserver \
    kubectl_admin get --raw /readyz

common_component_flags=(
    --bind-address 127.0.0.1
    --leader-elect=false
    --profiling=false
    --v 1
)
start kube-controller-manager "$bin/kube-controller-manager" \
    "${common_component_flags[@]}" \
    --secure-port "$KCM_PORT" \
    --cert-dir "$state/kube-controller-manager-certs" \
    --flex-volume-plugin-dir "$state/flexvolume" \
    --kubeconfig "$state/kube-controller-manager.kubeconfig" \
    --authentication-kubeconfig "$state/kube-controller-manager.kubeconfig" \
    --authorization-kubeconfig "$state/kube-controller-manager.kubeconfig" \
    --client-ca-file "$pki/ca.crt" \
    --controllers '*' \
    --use-service-account-credentials=true \
    --service-account-private-key-file "$pki/service-account.key" \
    --root-ca-file "$pki/ca.crt" \
    --cluster-signing-cert-file "$pki/ca.crt" \
    --cluster-signing-key-file "$pki/ca.key" \
    --service-cluster-ip-range "$SERVICE_CIDR"
start kube-scheduler "$bin/kube-scheduler" \
    "${common_component_flags[@]}" \
    --secure-port "$SCHEDULER_PORT" \
    --cert-dir "$state/kube-scheduler-certs" \
    --kubeconfig "$state/kube-scheduler.kubeconfig" \
    --authentication-kubeconfig "$state/kube-scheduler.kubeconfig" \
    --authorization-kubeconfig "$state/kube-scheduler.kubeconfig" \
    --client-ca-file "$pki/ca.crt"

healthz() { curl -fsSk --max-time 2 --noproxy '*' "https://127.0.0.1:$1/healthz"; }
wait_for "kube-controller-manager :$KCM_PORT/healthz" kube-controller-manager healthz "$KCM_PORT"
wait_for "kube-scheduler :$SCHEDULER_PORT/healthz" kube-scheduler healthz "$SCHEDULER_PORT"
wait_for "namespace default" kube-apiserver kubectl_admin get namespace default
wait_for "serviceaccount default/default" kube-controller-manager \
    kubectl_admin -n default get serviceaccount default

# --- env.sh --------------------------------------------------------------------
cat >"$state/env.sh" <<EOF
# Written by up.sh; source it to use this control plane.
export KUBECONFIG='$state/admin.kubeconfig'
export KUBECACHEDIR='$state/kubectl-cache'
export CACHEPAIR_K8S_BIN='$bin'
export CACHEPAIR_CP_STATE='$state'
export CACHEPAIR_APISERVER_URL='$APISERVER_URL'
export CACHEPAIR_APISERVER_PORT=$APISERVER_PORT
export CACHEPAIR_ETCD_URL='$ETCD_URL'
export CACHEPAIR_ETCD_PEER_PORT=$ETCD_PEER_PORT
export CACHEPAIR_KCM_PORT=$KCM_PORT
export CACHEPAIR_SCHEDULER_PORT=$SCHEDULER_PORT
export CACHEPAIR_CA_CRT='$pki/ca.crt'
export CACHEPAIR_CA_KEY='$pki/ca.key'
EOF

trap - EXIT
log "control plane up: $APISERVER_URL (etcd $ETCD_URL, kube-controller-manager :$KCM_PORT, kube-scheduler :$SCHEDULER_PORT)"
log "use: source $state/env.sh   (or KUBECONFIG=$state/admin.kubeconfig)"
